//! Image import and export (ECS 2014-05-26): ImportImage, ExportImage, and their tasks
//! (DescribeTasks, DescribeTaskAttribute, CancelTask). The contract is docs/snapshots.md,
//! "Image import and export": these calls check and record; the control plane's worker
//! (`feitian::image_tasks`) does the work and ends each task (`feitian_meta::image_task`).
//!
//! feitian has no RAM: the real service reads the caller's bucket through a role
//! (`AliyunECSImageImportDefaultRole`); here the bucket must be the caller's own, in the
//! region, and `RoleName` is accepted and ignored.

use crate::disks::check_description;
use crate::image_actions::{self, check_image_name, incorrect_status};
use crate::Ecs;
use feitian_api::answers::Empty;
use feitian_api::paging::Page;
use feitian_api::region::require_region;
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::disk::DiskType;
use feitian_meta::image::{self, Image, ImageDisk, ImageStatus};
use feitian_meta::image_task::{self as db, ImportSource, Task, TaskAction, TaskStatus};
use feitian_meta::{bucket, object, snapshot, tag, Transaction};
use feitian_region::Region;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The formats an import reads and an export writes (qemu-img does the work).
const FORMATS: &[&str] = &["raw", "qcow2", "vhd"];

fn bucket_not_found(name: &str) -> ApiError {
    ApiError::invalid("InvalidOSSBucket.NotFound", "The specified OSS bucket does not exist.")
        .recommend(format!("{name:?} is not a bucket of yours in this region (feitian reads your own buckets only)"))
}

/// The caller's bucket `name` in `region`.
fn own_bucket(tx: &Transaction<'_>, account: u64, region: &Region, name: &str) -> Result<(), ApiError> {
    match bucket::get_bucket(tx, name)? {
        Some(b) if b.account_id == account && b.region_id == region.id => Ok(()),
        _ => Err(bucket_not_found(name)),
    }
}

fn sources(p: &Params) -> Result<Vec<Source>, ApiError> {
    let mut out: Vec<Source> = Vec::new();
    for (i, m) in p.list_of_maps("DiskDeviceMapping", 17)?.into_iter().enumerate() {
        let n = i + 1;
        let get = |k: &str| m.get(k).copied().filter(|v| !v.is_empty());
        let bucket =
            get("OSSBucket").ok_or_else(|| ApiError::missing_parameter(&format!("DiskDeviceMapping.{n}.OSSBucket")))?;
        let object =
            get("OSSObject").ok_or_else(|| ApiError::missing_parameter(&format!("DiskDeviceMapping.{n}.OSSObject")))?;
        let format = match get("Format").map(str::to_ascii_lowercase) {
            None => String::new(),
            Some(f) if FORMATS.contains(&f.as_str()) => f,
            Some(f) => {
                return Err(ApiError::invalid("InvalidImageFormat.NotSupported", "The image format is not supported.")
                    .recommend(format!("DiskDeviceMapping.{n}.Format {f:?}: use RAW, QCOW2 or VHD")))
            }
        };
        let size_gib = match get("DiskImageSize").or_else(|| get("DiskImSize")) {
            None => 0,
            Some(v) => v.trim().parse::<i64>().ok().filter(|s| (1..=2048).contains(s)).ok_or_else(|| {
                ApiError::invalid("InvalidSize.ValueNotSupported", "The specified disk size is not supported.")
                    .recommend(format!("DiskDeviceMapping.{n}.DiskImageSize is a whole number of GiB, 1 to 2048"))
            })?,
        };
        let device = match get("Device") {
            Some(d) => d.to_owned(),
            None if i == 0 => "/dev/xvda".to_owned(),
            None => format!("/dev/xvd{}", (b'a' + i as u8) as char),
        };
        if out.iter().any(|s| s.device == device) {
            return Err(ApiError::invalid_parameter(
                &format!("DiskDeviceMapping.{n}.Device"),
                format!("{device} is given twice"),
            ));
        }
        out.push(Source { bucket: bucket.to_owned(), object: object.to_owned(), format, size_gib, device });
    }
    if out.is_empty() {
        return Err(ApiError::missing_parameter("DiskDeviceMapping.1.OSSObject")
            .recommend("name the object holding the disk file: DiskDeviceMapping.1.OSSBucket and .OSSObject"));
    }
    Ok(out)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportImageResponse {
    pub image_id: String,
    pub region_id: String,
    pub task_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportImageResponse {
    pub region_id: String,
    pub task_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTasksResponse {
    pub region_id: String,
    pub task_set: TaskSet,
    pub total_count: u64,
    pub page_number: u64,
    pub page_size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskSet {
    pub task: Vec<TaskItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskItem {
    pub task_id: String,
    pub task_action: String,
    pub task_status: String,
    pub resource_id: String,
    pub support_cancel: String,
    pub creation_time: String,
    pub finished_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTaskAttributeResponse {
    pub region_id: String,
    pub task_id: String,
    pub task_action: String,
    pub task_status: String,
    pub task_process: String,
    pub support_cancel: String,
    pub creation_time: String,
    pub finished_time: String,
    pub total_count: u64,
    pub success_count: u64,
    pub failed_count: u64,
    pub operation_progress_set: OperationProgressSet,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationProgressSet {
    pub operation_progress: Vec<OperationProgress>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationProgress {
    pub operation_status: String,
    pub error_code: String,
    pub error_msg: String,
    pub related_item_set: RelatedItemSet,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RelatedItemSet {
    pub related_item: Vec<RelatedItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RelatedItem {
    pub name: String,
    pub value: String,
}

fn item(t: &Task) -> TaskItem {
    TaskItem {
        task_id: t.id.clone(),
        task_action: t.action.as_str().into(),
        task_status: t.status.as_str().into(),
        resource_id: t.image_id.clone(),
        support_cancel: (t.status == TaskStatus::Processing).to_string(),
        creation_time: t.created_at.clone(),
        finished_time: t.finished_at.clone(),
    }
}

fn task_not_found() -> ApiError {
    ApiError::new(404, "InvalidTaskId.NotFound", "The specified task does not exist.")
        .recommend("DescribeTasks lists your import and export tasks in the region")
}

/// What an import is asked to make (ImportImage's parameters, or `feitian image import`'s).
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Platform` (the OS distribution the image says it holds).
    pub platform: String,
    pub tags: Vec<(String, String)>,
}

/// One disk of an import: an object of the caller's bucket (`bucket`, `object`), or, for
/// `feitian image import` on the same machine, a local file (`bucket` empty, `object` its
/// absolute path). `format` is `raw`, `qcow2`, `vhd` or empty (any of them).
#[derive(Debug, Clone)]
pub struct Source {
    pub bucket: String,
    pub object: String,
    pub format: String,
    pub size_gib: i64,
    pub device: String,
}

/// Records an import in the caller's transaction (docs/snapshots.md, "Image import and
/// export", 1): the image `Creating`, one snapshot per source, the task `Processing` and the
/// sources; the worker does the rest. The sources were checked by the caller.
pub fn record_import(
    store: &feitian_meta::Store,
    tx: &Transaction<'_>,
    account: u64,
    region: &Region,
    req: &ImportRequest,
    srcs: &[Source],
) -> Result<ImportImageResponse, ApiError> {
    let at = now();
    let scope = store.scope(account);
    let image_id = scope.register(tx, "image", "m", &region.id, &region.id_code)?;
    let task_id = scope.register(tx, "task", "t", &region.id, &region.id_code)?;
    let mut disks = Vec::new();
    for (i, s) in srcs.iter().enumerate() {
        let disk_type = if i == 0 { DiskType::System } else { DiskType::Data };
        let sid = scope.register(tx, "snapshot", "s", &region.id, &region.id_code)?;
        snapshot::create_imported(
            tx,
            &store.quotas(),
            &sid,
            account,
            &region.id,
            disk_type,
            s.size_gib,
            &format!("Created by ImportImage for {image_id}"),
            &at,
        )
        .map_err(|e| match e {
            snapshot::CreateError::QuotaExceeded { max, held } => {
                ApiError::new(403, "QuotaExceed.Snapshot", "The number of snapshots exceeds the quota.").recommend(
                    format!("an import takes one snapshot per disk; this account may hold {max} and holds {held}"),
                )
            }
            snapshot::CreateError::DiskBusy(_) => ApiError::internal(),
            snapshot::CreateError::Meta(e) => e.into(),
        })?;
        db::add_source(
            tx,
            &ImportSource {
                snapshot_id: sid.clone(),
                task_id: task_id.clone(),
                device: s.device.clone(),
                bucket: s.bucket.clone(),
                object: s.object.clone(),
                format: s.format.clone(),
                size_gib: s.size_gib,
            },
        )?;
        disks.push(ImageDisk { device: s.device.clone(), disk_type, snapshot_id: sid, size_gib: s.size_gib });
    }
    let platform = if req.platform.is_empty() { "Others Linux" } else { req.platform.as_str() };
    let name = req.name.clone().unwrap_or_else(|| image_id.clone());
    let img = Image {
        description: req.description.clone().unwrap_or_default(),
        os_name: format!("{platform} 64位"),
        os_name_en: format!("{platform} 64 bit"),
        platform: platform.to_owned(),
        size_gib: srcs.first().map_or(0, |s| s.size_gib),
        ..Image::new(&image_id, account, &region.id, &name, ImageStatus::Creating, &at)
    };
    image::create(tx, &store.quotas(), &img, &disks).map_err(|e| image_actions::create_error(&region.id, e))?;
    tag::set_tags(tx, &image_id, &req.tags)?;
    db::create(tx, &Task::new(&task_id, account, &region.id, TaskAction::ImportImage, &image_id, &at))?;
    Ok(ImportImageResponse { image_id, region_id: region.id.clone(), task_id })
}

impl Ecs {
    fn own_task(&self, tx: &Transaction<'_>, account: u64, region: &Region, id: &str) -> Result<Task, ApiError> {
        db::get(tx, id)?.filter(|t| t.account_id == account && t.region_id == region.id).ok_or_else(task_not_found)
    }

    pub async fn import_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ImportImageResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let name = p.opt_str("ImageName").filter(|v| !v.is_empty()).map(str::to_owned);
        name.as_deref().map(|n| check_image_name(n, "InvalidImageName.Malformed")).transpose()?;
        let description = p.opt_str("Description").filter(|v| !v.is_empty()).map(str::to_owned);
        description.as_deref().map(check_description).transpose()?;
        match p.opt_str("OSType").filter(|v| !v.is_empty()).map(str::to_ascii_lowercase).as_deref() {
            None | Some("linux") => {}
            Some("windows") => {
                return Err(ApiError::invalid("InvalidOSType.NotSupported", "Windows guests are not offered here.")
                    .recommend("import a Linux disk (OSType=linux)"))
            }
            Some(_) => return Err(ApiError::invalid_parameter("OSType", "use linux or windows")),
        }
        match p.opt_str("Architecture").filter(|v| !v.is_empty()) {
            None | Some("x86_64") => {}
            Some("i386") | Some("arm64") => {
                return Err(ApiError::invalid("InvalidArchitecture.NotSupported", "Only x86_64 images run here."))
            }
            Some(_) => return Err(ApiError::invalid_parameter("Architecture", "use x86_64, i386 or arm64")),
        }
        let platform = p.opt_str("Platform").filter(|v| !v.is_empty()).unwrap_or("").to_owned();
        let srcs = sources(&p)?;
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        self.store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    for s in &srcs {
                        own_bucket(tx, account, &region, &s.bucket)?;
                        if object::get_object(tx, &s.bucket, &s.object)?.is_none() {
                            return Err(ApiError::invalid(
                                "InvalidOSSObject.NotFound",
                                "The specified OSS object does not exist.",
                            )
                            .recommend(format!("upload the disk file to oss://{}/{} first", s.bucket, s.object)));
                        }
                    }
                    let req = ImportRequest {
                        name: name.clone(),
                        description: description.clone(),
                        platform: platform.clone(),
                        tags: tags.clone(),
                    };
                    record_import(store, tx, account, &region, &req, &srcs)
                })
            })
            .await
    }

    pub async fn export_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ExportImageResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let bucket_name = p.required_str("OSSBucket")?.to_owned();
        let prefix = p.opt_str("OSSPrefix").unwrap_or("").to_owned();
        if !prefix.is_empty() && (prefix.len() > 30 || !prefix.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(ApiError::invalid_parameter("OSSPrefix", "1 to 30 letters and digits"));
        }
        let format = p.opt_str("ImageFormat").filter(|v| !v.is_empty()).unwrap_or("raw").to_ascii_lowercase();
        if !FORMATS.contains(&format.as_str()) {
            return Err(ApiError::invalid("InvalidImageFormat.NotSupported", "The image format is not supported.")
                .recommend("ImageFormat: raw, qcow2 or vhd"));
        }
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let img = match image::get(tx, &id)? {
                    Some(i) if i.account_id == account && i.region_id == region.id => i,
                    Some(i) if i.region_id == region.id && image::shared_with(tx, &id, account)? => {
                        return Err(ApiError::new(403, "OperationDenied", "A shared image cannot be exported.")
                            .recommend("only its owner may export it"))
                    }
                    _ => return Err(image_actions::not_found()),
                };
                if img.status != ImageStatus::Available {
                    return Err(incorrect_status(&img, "Available"));
                }
                match bucket::get_bucket(tx, &bucket_name)? {
                    Some(b) if b.account_id == account && b.region_id == region.id => {}
                    _ => {
                        return Err(ApiError::invalid("OssBucket.NotFound", "The specified OSS bucket does not exist.")
                            .recommend(format!("{bucket_name:?} is not a bucket of yours in {}", region.id)))
                    }
                }
                let at = now();
                let task_id = me.store.scope(account).register(tx, "task", "t", &region.id, &region.id_code)?;
                let task = Task {
                    bucket: bucket_name.clone(),
                    object: format!("{prefix}{}_system.{format}", img.id),
                    format: format.clone(),
                    ..Task::new(&task_id, account, &region.id, TaskAction::ExportImage, &img.id, &at)
                };
                db::create(tx, &task)?;
                Ok(ExportImageResponse { region_id: region.id.clone(), task_id })
            })
            .await
    }

    pub async fn describe_tasks(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<DescribeTasksResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let page = Page::from_params(&p, 10, 100)?;
        let ids: Vec<String> = p
            .opt_str("TaskIds")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if ids.len() > 100 {
            return Err(ApiError::invalid_parameter("TaskIds", "at most 100 ids"));
        }
        let action = p.opt_str("TaskAction").filter(|v| !v.is_empty()).map(str::to_owned);
        let status = p.opt_str("TaskStatus").filter(|v| !v.is_empty()).map(str::to_owned);
        if let Some(s) = &status {
            if TaskStatus::parse(s).is_none() && !["Waiting", "Deleted", "Paused"].contains(&s.as_str()) {
                return Err(ApiError::invalid_parameter("TaskStatus", "use Finished, Processing, Failed or Cancelled"));
            }
        }
        let resources: Vec<String> = p.list("ResourceIds", 100)?.into_iter().map(str::to_owned).collect();
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let found: Vec<Task> = db::of_account(tx, ctx.caller.account_id, &region.id)?
                    .into_iter()
                    .rev()
                    .filter(|t| ids.is_empty() || ids.contains(&t.id))
                    .filter(|t| action.as_deref().is_none_or(|a| a == t.action.as_str()))
                    .filter(|t| status.as_deref().is_none_or(|s| s == t.status.as_str()))
                    .filter(|t| resources.is_empty() || resources.contains(&t.image_id))
                    .collect();
                let info = page.info(found.len() as u64);
                let task = found.iter().skip(page.offset() as usize).take(page.limit() as usize).map(item).collect();
                Ok::<_, ApiError>(DescribeTasksResponse {
                    region_id: region.id.clone(),
                    task_set: TaskSet { task },
                    total_count: info.total_count,
                    page_number: u64::from(info.page_number),
                    page_size: u64::from(info.page_size),
                })
            })
            .await
    }

    pub async fn describe_task_attribute(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeTaskAttributeResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("TaskId")?.to_owned();
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let t = me.own_task(tx, ctx.caller.account_id, &region, &id)?;
                let done = t.status == TaskStatus::Finished;
                let failed = matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled);
                let operation_status = match t.status {
                    TaskStatus::Finished => "Success",
                    TaskStatus::Processing => "Processing",
                    _ => "Failed",
                };
                Ok(DescribeTaskAttributeResponse {
                    region_id: region.id.clone(),
                    task_id: t.id.clone(),
                    task_action: t.action.as_str().into(),
                    task_status: t.status.as_str().into(),
                    task_process: format!("{}%", if done { 100 } else { t.progress }),
                    support_cancel: (t.status == TaskStatus::Processing).to_string(),
                    creation_time: t.created_at.clone(),
                    finished_time: t.finished_at.clone(),
                    total_count: 1,
                    success_count: u64::from(done),
                    failed_count: u64::from(failed),
                    operation_progress_set: OperationProgressSet {
                        operation_progress: vec![OperationProgress {
                            operation_status: operation_status.into(),
                            error_code: if failed { "TaskFailed".into() } else { String::new() },
                            error_msg: t.failure.clone(),
                            related_item_set: RelatedItemSet {
                                related_item: vec![RelatedItem { name: "ImageId".into(), value: t.image_id.clone() }],
                            },
                        }],
                    },
                })
            })
            .await
    }

    pub async fn cancel_task(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("TaskId")?.to_owned();
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let t = me.own_task(tx, ctx.caller.account_id, &region, &id)?;
                if !db::cancel(tx, &t.id, &now())? {
                    return Err(ApiError::invalid(
                        "IncorrectTaskStatus",
                        "The task cannot be cancelled in its status.",
                    )
                    .recommend(format!(
                        "{} is {}; only a Processing task can be cancelled",
                        t.id,
                        t.status.as_str()
                    )));
                }
                Ok(Empty {})
            })
            .await
    }
}
