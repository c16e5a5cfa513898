//! Custom images (ECS 2014-05-26): CreateImage, DeleteImage, ModifyImageAttribute,
//! ModifyImageSharePermission, DescribeImageSharePermission, CopyImage, CancelCopyImage.
//! DescribeImages lists them beside the public catalog (`images.rs`). The contract is
//! docs/snapshots.md guarantee 7: an image is its disks' snapshots with a name
//! (`feitian_meta::image`).
//!
//! - `CreateImage` takes exactly one of `InstanceId` (every disk of the instance is
//!   snapshotted now, as CreateSnapshot does, and the image is `Creating` until each is
//!   accomplished), `SnapshotId` (the system disk, `Available` at once) or
//!   `DiskDeviceMapping.N` (one system disk, `/dev/xvda`, and data disks `/dev/xvdb`…).
//! - Sharing: the accounts of `AddAccount.N` see the image as `others` and may launch from
//!   it; only the owner changes, shares, copies or deletes it. Both lists empty is a no-op
//!   that succeeds whatever the image's status (Packer calls it so, on copies still
//!   `Creating`).
//! - `CopyImage` between the deployment's regions: the regions of one deployment share its
//!   store and system bucket, so a copy's snapshots name the same block objects (one more
//!   reference each) and the copy is `Available` when the call returns; `CancelCopyImage`
//!   then answers as Alibaba Cloud does for a finished copy (`IncorrectImageStatus`).

use crate::disks::{self, check_description};
use crate::images::{self, PublicImage};
use crate::instance_errors as inst_api;
use crate::snapshots::check_disk;
use crate::Ecs;
use feitian_agent_api::InstanceStatus;
use feitian_api::answers::Empty;
use feitian_api::paging::Page;
use feitian_api::region::require_region;
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::disk::{self, DiskStatus, DiskType};
use feitian_meta::image::{self as db, CreateError, Image, ImageDisk, ImageStatus};
use feitian_meta::snapshot::{self, NewSnapshot, Snapshot, SnapshotStatus, SnapshotType};
use feitian_meta::{account, instance, tag, Transaction};
use feitian_region::Region;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Accounts per `AddAccount.N` / `RemoveAccount.N` (the real limit).
const MAX_SHARE_ACCOUNTS: usize = 10;

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
        .recommend("DescribeImages with ImageOwnerAlias=self lists your images in the region")
}

/// `ImageName`/`DestinationImageName`/`ImageFamily`: 2 to 128 characters, starting with a
/// letter, then letters, digits, `.`, `_`, `-`, `:`; not starting with `aliyun`, `acs:`,
/// `http://` or `https://`.
pub fn check_image_name(v: &str, code: &'static str) -> Result<(), ApiError> {
    if v.starts_with("aliyun") || v.starts_with("acs:") {
        return Err(ApiError::invalid(code, "The specified name is not valid: it cannot start with aliyun or acs:."));
    }
    disks::check_name(v, code)
}

/// An optional name parameter, checked.
fn opt_name<'p>(p: &'p Params, param: &str, code: &'static str) -> Result<Option<&'p str>, ApiError> {
    let v = p.opt_str(param).filter(|v| !v.is_empty());
    v.map(|v| check_image_name(v, code)).transpose()?;
    Ok(v)
}

/// An optional description (empty means none: Terraform always sends one).
fn opt_description<'p>(p: &'p Params, param: &str) -> Result<Option<&'p str>, ApiError> {
    let v = p.opt_str(param).filter(|v| !v.is_empty());
    v.map(check_description).transpose()?;
    Ok(v)
}

pub(crate) fn create_error(region: &str, e: CreateError) -> ApiError {
    match e {
        CreateError::QuotaExceeded { max, held } => {
            ApiError::new(403, "QuotaExceed.Image", "The number of images exceeds the quota.")
                .recommend(format!("this account may hold {max} images in {region} and holds {held}"))
        }
        CreateError::NameTaken(name) => {
            ApiError::invalid("InvalidImageName.Duplicated", "The specified image name is already in use.")
                .recommend(format!("an image named {name:?} exists in {region}: pick another name or delete it"))
        }
        CreateError::Meta(e) => e.into(),
    }
}

fn snapshot_error(d: &str, e: snapshot::CreateError) -> ApiError {
    match e {
        snapshot::CreateError::QuotaExceeded { max, held } => {
            ApiError::new(403, "QuotaExceed.Snapshot", "The number of snapshots exceeds the quota.").recommend(format!(
                "an image of an instance takes one snapshot per disk; this account may hold {max} and holds {held}"
            ))
        }
        snapshot::CreateError::DiskBusy(busy) => ApiError::new(
            403,
            "IncorrectDiskStatus.CreatingSnapshot",
            "A snapshot of a disk of the instance is being created.",
        )
        .recommend(format!("wait until {busy} (of {d}) is accomplished or failed")),
        snapshot::CreateError::Meta(e) => e.into(),
    }
}

/// What the image says of its operating system: the public image its system disk descends
/// from, or the caller's `Platform`/`Architecture`.
struct Os {
    base_image: String,
    platform: String,
    os_name: String,
    os_name_en: String,
    family: String,
    architecture: String,
}

impl Os {
    fn of_public(i: &PublicImage) -> Os {
        Os {
            base_image: i.id.into(),
            platform: i.platform.into(),
            os_name: i.os_name.into(),
            os_name_en: i.os_name_en.into(),
            family: String::new(),
            architecture: "x86_64".into(),
        }
    }

    /// The OS of what a disk was made from (its image, public or custom), if known.
    fn of_image_id(tx: &Transaction<'_>, image_id: &str) -> Result<Option<Os>, ApiError> {
        if let Some(i) = images::find(image_id) {
            return Ok(Some(Os::of_public(i)));
        }
        Ok(db::get(tx, image_id)?.map(|i| Os {
            base_image: i.base_image,
            platform: i.platform,
            os_name: i.os_name,
            os_name_en: i.os_name_en,
            family: String::new(),
            architecture: i.architecture,
        }))
    }

    fn unknown() -> Os {
        Os {
            base_image: String::new(),
            platform: "Others Linux".into(),
            os_name: "Others Linux 64位".into(),
            os_name_en: "Others Linux 64 bit".into(),
            family: String::new(),
            architecture: "x86_64".into(),
        }
    }

    /// The caller's `Platform`/`Architecture` win over what was found.
    fn with_params(mut self, p: &Params) -> Result<Os, ApiError> {
        if let Some(pl) = p.opt_str("Platform").filter(|v| !v.is_empty()) {
            if pl != self.platform {
                self.os_name = format!("{pl} 64位");
                self.os_name_en = format!("{pl} 64 bit");
                self.platform = pl.to_owned();
            }
        }
        if let Some(a) = p.opt_str("Architecture").filter(|v| !v.is_empty()) {
            if a != "x86_64" && a != "i386" && a != "arm64" {
                return Err(ApiError::invalid_parameter("Architecture", "use x86_64, i386 or arm64"));
            }
            if a != "x86_64" {
                return Err(ApiError::invalid("InvalidArchitecture.NotSupported", "Only x86_64 images run here.")
                    .recommend("feitian's guests are x86_64"));
            }
            self.architecture = a.to_owned();
        }
        if let Some(f) = opt_name(p, "ImageFamily", "InvalidImageFamily.Malformed")? {
            self.family = f.to_owned();
        }
        Ok(self)
    }
}

/// One `DiskDeviceMapping.N` as asked.
struct Mapping {
    snapshot_id: String,
    size: Option<i64>,
    device: Option<String>,
    disk_type: Option<DiskType>,
}

fn mappings(p: &Params) -> Result<Vec<Mapping>, ApiError> {
    let mut out = Vec::new();
    for (i, m) in p.list_of_maps("DiskDeviceMapping", 17)?.into_iter().enumerate() {
        let n = i + 1;
        let snapshot_id = m
            .get("SnapshotId")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::missing_parameter(&format!("DiskDeviceMapping.{n}.SnapshotId"))
                    .recommend("each disk of an image is made from a snapshot here")
            })?
            .to_string();
        let size = m
            .get("Size")
            .map(|v| {
                v.trim().parse::<i64>().ok().filter(|s| (1..=32768).contains(s)).ok_or_else(|| {
                    ApiError::invalid("InvalidSize.ValueNotSupported", "The specified disk size is not supported.")
                        .recommend(format!("DiskDeviceMapping.{n}.Size is a whole number of GiB"))
                })
            })
            .transpose()?;
        let device = m.get("Device").filter(|v| !v.is_empty()).map(|v| v.to_string());
        if let Some(d) = &device {
            let ok = d.len() == 9
                && d.starts_with("/dev/xvd")
                && d.as_bytes().last().is_some_and(|c| c.is_ascii_lowercase());
            if !ok {
                return Err(ApiError::invalid_parameter(
                    &format!("DiskDeviceMapping.{n}.Device"),
                    "use /dev/xvda for the system disk and /dev/xvdb to /dev/xvdz for data disks",
                ));
            }
        }
        let disk_type = match m.get("DiskType").copied().filter(|v| !v.is_empty()) {
            None => None,
            Some("system") => Some(DiskType::System),
            Some("data") => Some(DiskType::Data),
            Some(_) => {
                return Err(ApiError::invalid_parameter(
                    &format!("DiskDeviceMapping.{n}.DiskType"),
                    "use system or data",
                ))
            }
        };
        out.push(Mapping { snapshot_id, size, device, disk_type });
    }
    Ok(out)
}

/// What CreateImage and CopyImage answer (stored with the ClientToken).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageIdResponse {
    pub image_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImageSharePermissionResponse {
    pub region_id: String,
    pub image_id: String,
    pub accounts: Accounts,
    pub share_groups: ShareGroups,
    pub total_count: u64,
    pub page_number: u64,
    pub page_size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Accounts {
    pub account: Vec<SharedAccount>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SharedAccount {
    pub aliyun_id: String,
    pub shared_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShareGroups {
    pub share_group: Vec<ShareGroup>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShareGroup {
    pub group: String,
}

/// Account ids of `AddAccount.N` / `RemoveAccount.N`.
fn account_ids(p: &Params, param: &str) -> Result<Vec<u64>, ApiError> {
    p.list(param, MAX_SHARE_ACCOUNTS)?
        .into_iter()
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::invalid_parameter(param, format!("{v:?} is not an account id"))
                    .recommend("share with the numeric account id (the OwnerId the other account's answers carry)")
            })
        })
        .collect()
}

impl Ecs {
    /// The caller's own image `id` in `region`.
    fn own_image(&self, tx: &Transaction<'_>, account: u64, region: &Region, id: &str) -> Result<Image, ApiError> {
        match db::get(tx, id)? {
            Some(i) if i.region_id == region.id && i.account_id == account => Ok(i),
            // Another account's image shared with the caller: it may use it, not change it.
            Some(i) if i.region_id == region.id && db::shared_with(tx, id, account)? => Err(ApiError::new(
                403,
                "OperationDenied",
                "The specified image is shared with you; only its owner may change it.",
            )),
            _ => Err(not_found()),
        }
    }

    pub async fn create_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ImageIdResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let name = opt_name(&p, "ImageName", "InvalidImageName.Malformed")?.map(str::to_owned);
        let description = opt_description(&p, "Description")?.unwrap_or("").to_owned();
        let version = p.opt_str("ImageVersion").unwrap_or("").to_owned();
        if version.chars().count() > 40 {
            return Err(ApiError::invalid("InvalidImageVersion.Malformed", "The image version is too long.")
                .recommend("at most 40 characters"));
        }
        let boot_mode = match p.opt_str("BootMode").filter(|v| !v.is_empty()) {
            None | Some("BIOS") => "BIOS",
            Some("UEFI") | Some("UEFI-Preferred") => {
                return Err(ApiError::invalid("InvalidBootMode.NotSupported", "Only BIOS boot is offered here.")
                    .recommend("feitian's guests boot BIOS-style"))
            }
            Some(_) => return Err(ApiError::invalid_parameter("BootMode", "use BIOS, UEFI or UEFI-Preferred")),
        };
        let instance_id = p.opt_str("InstanceId").filter(|v| !v.is_empty()).map(str::to_owned);
        let snapshot_id = p.opt_str("SnapshotId").filter(|v| !v.is_empty()).map(str::to_owned);
        let maps = mappings(&p)?;
        let sources =
            usize::from(instance_id.is_some()) + usize::from(snapshot_id.is_some()) + usize::from(!maps.is_empty());
        if sources == 0 {
            return Err(ApiError::missing_parameter("InstanceId")
                .recommend("make an image from an InstanceId, a SnapshotId or DiskDeviceMapping.N.SnapshotId"));
        }
        if sources > 1 {
            return Err(ApiError::invalid_parameter(
                "InstanceId",
                "give one of InstanceId, SnapshotId and DiskDeviceMapping.N, not several",
            ));
        }
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        let at = now();
        let (out, pending) = self
            .store
            .call(move |store| {
                let mut pending = Vec::new();
                let out = create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let id = store.scope(account).register(tx, "image", "m", &region.id, &region.id_code)?;
                    let name = name.clone().unwrap_or_else(|| id.clone());
                    let mut image = Image {
                        description: description.clone(),
                        version: version.clone(),
                        boot_mode: boot_mode.into(),
                        ..Image::new(&id, account, &region.id, &name, ImageStatus::Available, &at)
                    };
                    // Before any snapshot is taken: a name in use refuses the call with nothing made.
                    if db::name_taken(tx, account, &region.id, &image.name)? {
                        return Err(create_error(&region.id, CreateError::NameTaken(image.name.clone())));
                    }
                    let (os, disks) = if let Some(iid) = &instance_id {
                        let (os, disks, taken) = me.snapshot_instance(tx, account, &region, iid, &id, &at)?;
                        pending = taken;
                        image.source_instance_id = iid.clone();
                        if !pending.is_empty() {
                            image.status = ImageStatus::Creating;
                        }
                        (os, disks)
                    } else if let Some(sid) = &snapshot_id {
                        let s = own_snapshot(tx, account, &region, sid)?;
                        let os = os_of_snapshot(tx, &s)?;
                        let disk = ImageDisk {
                            device: "/dev/xvda".into(),
                            disk_type: DiskType::System,
                            snapshot_id: s.id.clone(),
                            size_gib: s.source_disk_gib,
                        };
                        (os, vec![disk])
                    } else {
                        mapped_disks(tx, account, &region, &maps)?
                    };
                    let os = os.with_params(&p)?;
                    image.size_gib = disks.iter().find(|d| d.disk_type == DiskType::System).map_or(0, |d| d.size_gib);
                    image.base_image = os.base_image;
                    image.platform = os.platform;
                    image.os_name = os.os_name;
                    image.os_name_en = os.os_name_en;
                    image.family = os.family;
                    image.architecture = os.architecture;
                    db::create(tx, &store.quotas(), &image, &disks).map_err(|e| create_error(&region.id, e))?;
                    tag::set_tags(tx, &id, &tags)?;
                    Ok(ImageIdResponse { image_id: id })
                })?;
                Ok::<_, ApiError>((out, pending))
            })
            .await?;
        if !pending.is_empty() {
            self.nudges.snapshots_changed();
            // Each disk's instant, as CreateSnapshot waits for it (docs/snapshots.md guarantee 2).
            for s in &pending {
                self.wait_for_pin(s).await;
            }
        }
        Ok(out)
    }

    /// Snapshots every disk of instance `iid` (Running or Stopped) for image `image_id`; the
    /// image's OS, its disks, and the snapshots taken (still progressing).
    fn snapshot_instance(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        region: &Region,
        iid: &str,
        image_id: &str,
        at: &str,
    ) -> Result<(Os, Vec<ImageDisk>, Vec<String>), ApiError> {
        let inst = instance::get_instance(tx, account, iid)?
            .filter(|i| i.region_id == region.id)
            .ok_or_else(inst_api::not_found)?;
        if inst.status != InstanceStatus::Running && inst.status != InstanceStatus::Stopped {
            return Err(inst_api::incorrect_status(inst.status, "Running or Stopped"));
        }
        let os = Os::of_image_id(tx, &inst.image_id)?.unwrap_or_else(Os::unknown);
        let mut attached: Vec<disk::Disk> =
            disk::disks_of_instance(tx, iid)?.into_iter().filter(|d| d.status == DiskStatus::InUse).collect();
        attached.sort_by(|a, b| {
            (a.disk_type != DiskType::System, &a.device).cmp(&(b.disk_type != DiskType::System, &b.device))
        });
        let mut disks = Vec::new();
        let mut taken = Vec::new();
        for d in &attached {
            check_disk(d)?;
            let sid = self.store.scope(account).register(tx, "snapshot", "s", &region.id, &region.id_code)?;
            let new = NewSnapshot {
                id: sid,
                disk: d,
                name: String::new(),
                description: format!("Created for image {image_id}"),
                snapshot_type: SnapshotType::User,
                retention_days: None,
                at: at.to_owned(),
            };
            let s = snapshot::create(tx, &self.store.quotas(), &new).map_err(|e| snapshot_error(&d.id, e))?;
            let device = if d.disk_type == DiskType::System { "/dev/xvda".to_owned() } else { d.device.clone() };
            disks.push(ImageDisk { device, disk_type: d.disk_type, snapshot_id: s.id.clone(), size_gib: d.size_gib });
            taken.push(s.id);
        }
        if !disks.iter().any(|d| d.disk_type == DiskType::System) {
            return Err(ApiError::new(403, "OperationDenied", "The instance has no system disk to make an image of."));
        }
        Ok((os, disks, taken))
    }

    pub async fn delete_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let force = p.opt_bool("Force")?.unwrap_or(false);
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                if images::find(&id).is_some() {
                    return Err(ApiError::new(403, "OperationDenied", "A public image cannot be deleted."));
                }
                // A custom image that does not exist: the request is ignored (the API's word).
                let image = match me.own_image(tx, account, &region, &id) {
                    Ok(i) => i,
                    Err(e) if e.code == "InvalidImageId.NotFound" => return Ok(Empty {}),
                    Err(e) => return Err(e),
                };
                if feitian_meta::image_task::exporting(tx, &image.id)? {
                    return Err(incorrect_status(&image, "not being exported (wait for its ExportImage task)"));
                }
                let using = db::instances_using(tx, &image.id)?;
                if using > 0 && !force {
                    return Err(ApiError::new(
                        403,
                        "ImageUsingByInstance",
                        "The specified image is in use by instances.",
                    )
                    .recommend(format!("{using} instance(s) were launched from it: delete them, or pass Force=true")));
                }
                db::delete(tx, &image.id)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn modify_image_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let name = opt_name(&p, "ImageName", "InvalidImageName.Malformed")?.map(str::to_owned);
        let description = opt_description(&p, "Description")?.map(str::to_owned);
        let family = opt_name(&p, "ImageFamily", "InvalidImageFamily.Malformed")?.map(str::to_owned);
        let status = match p.opt_str("Status").filter(|v| !v.is_empty()) {
            None => None,
            Some("Deprecated") => Some(ImageStatus::Deprecated),
            Some("Available") => Some(ImageStatus::Available),
            Some(_) => return Err(ApiError::invalid_parameter("Status", "use Deprecated or Available")),
        };
        match p.opt_str("BootMode").filter(|v| !v.is_empty()) {
            None | Some("BIOS") => {}
            Some(_) => {
                return Err(ApiError::invalid("InvalidBootMode.NotSupported", "Only BIOS boot is offered here."))
            }
        }
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut i = me.own_image(tx, account, &region, &id)?;
                if let Some(n) = name.filter(|n| *n != i.name) {
                    if db::name_taken(tx, account, &region.id, &n)? {
                        return Err(create_error(&region.id, CreateError::NameTaken(n)));
                    }
                    i.name = n;
                }
                if let Some(d) = description {
                    i.description = d;
                }
                if let Some(f) = family {
                    i.family = f;
                }
                if let Some(s) = status {
                    let movable = matches!(i.status, ImageStatus::Available | ImageStatus::Deprecated);
                    if !movable {
                        return Err(incorrect_status(&i, "Available or Deprecated"));
                    }
                    if s == ImageStatus::Deprecated && db::is_shared(tx, &i.id)? {
                        return Err(ApiError::new(
                            403,
                            "OperationDenied",
                            "A shared image cannot be deprecated: unshare it first.",
                        ));
                    }
                    i.status = s;
                }
                i.modified_at = now();
                db::update(tx, &i)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn modify_image_share_permission(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let add = account_ids(&p, "AddAccount")?;
        let remove = account_ids(&p, "RemoveAccount")?;
        if p.opt_bool("IsPublic")? == Some(true) {
            return Err(ApiError::new(403, "OperationDenied", "Community images are not offered here.")
                .recommend("share the image with accounts (AddAccount.N) instead"));
        }
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let image = me.own_image(tx, account, &region, &id)?;
                if add.is_empty() && remove.is_empty() {
                    // Packer calls it so for every image it made, even a copy still Creating.
                    return Ok(Empty {});
                }
                if !add.is_empty() && image.status != ImageStatus::Available {
                    return Err(incorrect_status(&image, "Available"));
                }
                for a in &add {
                    if *a == account {
                        return Err(ApiError::invalid_parameter("AddAccount", "an image is not shared with its owner"));
                    }
                    if account::get_account(tx, *a)?.is_none() {
                        return Err(ApiError::invalid(
                            "InvalidAccount.NotFound",
                            "The specified account does not exist.",
                        )
                        .recommend(format!("no account has id {a}")));
                    }
                }
                let at = now();
                for a in &add {
                    db::share(tx, &image.id, *a, &at)?;
                }
                for a in &remove {
                    db::unshare(tx, &image.id, *a)?;
                }
                Ok(Empty {})
            })
            .await
    }

    pub async fn describe_image_share_permission(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeImageSharePermissionResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let page = Page::from_params(&p, 10, 100)?;
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let image = me.own_image(tx, ctx.caller.account_id, &region, &id)?;
                let all = db::shares(tx, &image.id)?;
                let total = all.len() as u64;
                let account = all
                    .into_iter()
                    .skip(page.offset() as usize)
                    .take(page.limit() as usize)
                    .map(|(a, at)| SharedAccount { aliyun_id: a.to_string(), shared_time: at })
                    .collect();
                let info = page.info(total);
                Ok(DescribeImageSharePermissionResponse {
                    region_id: region.id.clone(),
                    image_id: image.id,
                    accounts: Accounts { account },
                    share_groups: ShareGroups { share_group: vec![] },
                    total_count: info.total_count,
                    page_number: u64::from(info.page_number),
                    page_size: u64::from(info.page_size),
                })
            })
            .await
    }

    pub async fn copy_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ImageIdResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        let dest_id = p.opt_str("DestinationRegionId").filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::missing_parameter("DestinationRegionId").recommend("the region to copy the image to")
        })?;
        let dest = self
            .catalog
            .region(dest_id)
            .ok_or_else(|| {
                ApiError::invalid("DestinationRegion.NotFound", "The specified destination region does not exist.")
                    .recommend(format!(
                        "regions here: {}",
                        self.catalog.regions.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
                    ))
            })?
            .clone();
        let name = opt_name(&p, "DestinationImageName", "InvalidImageName.Malformed")?.map(str::to_owned);
        let description = opt_description(&p, "DestinationDescription")?.map(str::to_owned);
        if p.opt_bool("Encrypted")? == Some(true) {
            return Err(ApiError::invalid("InvalidParameter.Encrypted", "Encrypted images are not offered here.")
                .recommend("copy without Encrypted"));
        }
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        self.store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let src = me.own_image(tx, account, &region, &id)?;
                    if src.status != ImageStatus::Available {
                        return Err(incorrect_status(&src, "Available"));
                    }
                    let at = now();
                    let new_id = store.scope(account).register(tx, "image", "m", &dest.id, &dest.id_code)?;
                    let mut disks = Vec::new();
                    for d in db::disks(tx, &src.id)? {
                        let s = snapshot::get_any_owner(tx, &d.snapshot_id)?
                            .filter(|s| s.status == SnapshotStatus::Accomplished)
                            .ok_or_else(|| incorrect_status(&src, "Available (its snapshots are gone)"))?;
                        snapshot::check_quota(tx, &store.quotas(), account, &dest.id)
                            .map_err(|e| snapshot_error(&d.device, e))?;
                        let sid = store.scope(account).register(tx, "snapshot", "s", &dest.id, &dest.id_code)?;
                        let copy = snapshot::copy(tx, &s, &sid, &dest.id, &format!("Copied for image {new_id}"), &at)?;
                        disks.push(ImageDisk { snapshot_id: copy.id, ..d });
                    }
                    let image = Image {
                        id: new_id.clone(),
                        region_id: dest.id.clone(),
                        // Unnamed, a copy keeps its source's name (unique in its own region).
                        name: name.clone().unwrap_or_else(|| src.name.clone()),
                        description: description.clone().unwrap_or_else(|| src.description.clone()),
                        status: ImageStatus::Available,
                        failure: String::new(),
                        copied_from: src.id.clone(),
                        copied_from_region: src.region_id.clone(),
                        created_at: at.clone(),
                        modified_at: at.clone(),
                        ..src.clone()
                    };
                    db::create(tx, &store.quotas(), &image, &disks).map_err(|e| create_error(&dest.id, e))?;
                    tag::set_tags(tx, &new_id, &tags)?;
                    Ok(ImageIdResponse { image_id: new_id })
                })
            })
            .await
    }

    /// DescribeImages: the public catalog and the custom images the caller sees in the
    /// region (its own as `self`, those shared with it as `others`), filtered and paged.
    pub async fn describe_images(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<images::DescribeImagesResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let q = images::Query::from_params(&p)?;
        let listed = self
            .store
            .read_async(move |tx| {
                let viewer = ctx.caller.account_id;
                let mut listed: Vec<images::Image> = images::PUBLIC.iter().map(images::Image::from).collect();
                let custom = db::visible(tx, viewer, &region.id)?;
                let ids: Vec<&str> = custom.iter().map(|i| i.id.as_str()).collect();
                let tags = tag::tags_of(tx, &ids)?;
                for i in &custom {
                    let disks = db::disks(tx, &i.id)?;
                    let creating = i.status == ImageStatus::Creating;
                    listed.push(images::Image::from(images::CustomListing {
                        image: i,
                        disks: &disks,
                        viewer,
                        progress: if creating { db::progress(tx, &i.id)? } else { 100 },
                        in_use: db::instances_using(tx, &i.id)? > 0,
                        shared: i.account_id == viewer && db::is_shared(tx, &i.id)?,
                        tags: tags.get(&i.id).map(Vec::as_slice).unwrap_or(&[]),
                    }));
                }
                Ok::<_, ApiError>((region.id.clone(), listed))
            })
            .await?;
        Ok(q.answer(&listed.0, listed.1))
    }

    pub async fn cancel_copy_image(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let id = p.required_str("ImageId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .read_async(move |tx| {
                let image = me.own_image(tx, ctx.caller.account_id, &region, &id)?;
                if image.copied_from.is_empty() {
                    return Err(ApiError::invalid(
                        "ImageCreatedNotFromCopy",
                        "The specified image was not made by CopyImage.",
                    ));
                }
                // A copy here is whole when CopyImage returns: there is nothing left to cancel.
                Err(incorrect_status(&image, "Creating (the copy is finished; delete the image to undo it)"))
            })
            .await
    }
}

/// `IncorrectImageStatus` (400), naming the status.
pub fn incorrect_status(i: &Image, wanted: &str) -> ApiError {
    ApiError::invalid("IncorrectImageStatus", "The current status of the image does not support this operation.")
        .recommend(format!("{} is {}; this needs it {wanted}", i.id, i.status.as_str()))
}

/// The caller's accomplished snapshot `id` in `region`.
fn own_snapshot(tx: &Transaction<'_>, account: u64, region: &Region, id: &str) -> Result<Snapshot, ApiError> {
    let s =
        snapshot::get(tx, account, id)?.filter(|s| s.region_id == region.id).ok_or_else(crate::snapshots::not_found)?;
    disks::restorable(&s)?;
    Ok(s)
}

/// The OS of the disk a snapshot was taken of (its image's), if the disk still says.
fn os_of_snapshot(tx: &Transaction<'_>, s: &Snapshot) -> Result<Os, ApiError> {
    let image_id = disk::get_disk_any_owner(tx, &s.disk_id)?.map(|d| d.image_id).unwrap_or_default();
    Ok(Os::of_image_id(tx, &image_id)?.unwrap_or_else(Os::unknown))
}

/// `DiskDeviceMapping.N`: exactly one system disk (`/dev/xvda` or `DiskType=system`), data
/// disks on distinct devices, sizes no smaller than their snapshots.
fn mapped_disks(
    tx: &Transaction<'_>,
    account: u64,
    region: &Region,
    maps: &[Mapping],
) -> Result<(Os, Vec<ImageDisk>), ApiError> {
    let mut disks: Vec<ImageDisk> = Vec::new();
    let mut os = None;
    let mut next_data = b'b';
    for (i, m) in maps.iter().enumerate() {
        let s = own_snapshot(tx, account, region, &m.snapshot_id)?;
        let system = match (m.disk_type, m.device.as_deref()) {
            (Some(t), _) => t == DiskType::System,
            (None, Some(d)) => d == "/dev/xvda",
            (None, None) => s.source_disk_type == DiskType::System && os.is_none(),
        };
        let size = m.size.unwrap_or(s.source_disk_gib);
        if size < s.source_disk_gib {
            return Err(ApiError::invalid(
                "InvalidSize.ValueNotSupported",
                "The disk size is smaller than its snapshot.",
            )
            .recommend(format!(
                "DiskDeviceMapping.{}.Size must be at least {} GiB",
                i + 1,
                s.source_disk_gib
            )));
        }
        let device = if system {
            if os.is_some() {
                return Err(ApiError::new(403, "OperationDenied", "An image has exactly one system disk snapshot."));
            }
            os = Some(os_of_snapshot(tx, &s)?);
            "/dev/xvda".to_owned()
        } else {
            match &m.device {
                Some(d) if d != "/dev/xvda" => d.clone(),
                _ => {
                    while disks.iter().any(|d| d.device == format!("/dev/xvd{}", next_data as char)) {
                        next_data += 1;
                    }
                    format!("/dev/xvd{}", next_data as char)
                }
            }
        };
        if disks.iter().any(|d| d.device == device) {
            return Err(ApiError::invalid_parameter(
                &format!("DiskDeviceMapping.{}.Device", i + 1),
                format!("{device} is given twice"),
            ));
        }
        let disk_type = if system { DiskType::System } else { DiskType::Data };
        disks.push(ImageDisk { device, disk_type, snapshot_id: s.id, size_gib: size });
    }
    let os = os.ok_or_else(|| {
        ApiError::new(403, "OperationDenied", "An image needs a system disk snapshot.")
            .recommend("map one snapshot to /dev/xvda (or DiskType=system)")
    })?;
    Ok((os, disks))
}
