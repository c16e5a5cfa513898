//! Cloud disks (ECS 2014-05-26): CreateDisk, DescribeDisks, AttachDisk, DetachDisk,
//! DeleteDisk, ResizeDisk, ReInitDisk, ModifyDiskAttribute; and the rules `RunInstances`
//! shares for its `DataDisk.N` (categories, performance levels, sizes, names, devices).
//!
//! The control plane decides; the host does. Each action is one store transaction that
//! records the decision and the status a client sees at once (`Creating`, `Attaching`,
//! `Detaching`, `ReIniting`), then nudges the host, whose disk reconciler
//! (`feitian-agent`'s `disks.rs`) makes the volume or plugs it and moves the status on.
//! An attach to a stopped instance is `In_use` at once: its guest gets the disk at its next
//! start. A deleted disk's row goes at once; the host deletes its volume after.
//!
//! Calls without `RegionId` (Terraform sends none on AttachDisk, DetachDisk, DeleteDisk and
//! ModifyDiskAttribute) act on the disk wherever the caller has it; with one, the disk must
//! be in that region.

use crate::answer::Paging;
use crate::disk_view::{DescribeDisksResponse, DiskItem, Disks};
use crate::instance_errors as inst_api;
use crate::Ecs;
use feitian_agent_api::InstanceStatus;
use feitian_api::answers::Empty;
use feitian_api::paging::{Page, TokenPage};
use feitian_api::region::{require_region, zone};
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::disk::{self, Disk, DiskStatus, DiskType};
use feitian_meta::instance::{self, Instance};
use feitian_meta::quota::{self, Quota};
use feitian_meta::{auto_snapshot_policy, tag, Filter, Transaction};
use feitian_region::Region;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The disk categories feitian offers, with the size range of each (GiB). ESSD's range
/// depends on its performance level ([`essd_range`]).
pub const CATEGORIES: [(&str, i64, i64); 4] =
    [("cloud", 5, 2000), ("cloud_efficiency", 20, 32768), ("cloud_ssd", 20, 32768), ("cloud_essd", 1, 65536)];

/// ESSD sizes by performance level: PL0 1–65536, PL1 20–, PL2 461–, PL3 1261–65536.
pub fn essd_range(level: &str) -> (i64, i64) {
    match level {
        "PL0" => (1, 65536),
        "PL2" => (461, 65536),
        "PL3" => (1261, 65536),
        _ => (20, 65536),
    }
}

/// At most this many data disks per instance (devices `/dev/xvdb` … `/dev/xvdq`).
pub const MAX_DATA_DISKS: usize = 16;

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidDiskId.NotFound", "The specified disk does not exist.")
}

pub fn incorrect_status(d: &Disk, wanted: &str) -> ApiError {
    ApiError::new(403, "IncorrectDiskStatus", "The current disk status does not support this operation.")
        .recommend(format!("{} is {}; this action needs it {wanted}", d.id, d.status))
}

pub fn snapshot_not_found() -> ApiError {
    ApiError::new(404, "InvalidSnapshotId.NotFound", "The specified snapshot does not exist.")
        .recommend("check the id with DescribeSnapshots (DataDisk.N.SnapshotId is not served yet: make the disk with CreateDisk SnapshotId and attach it)")
}

/// A disk's category, performance level and size, checked together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskShape {
    pub category: String,
    /// `PL0`…`PL3` for `cloud_essd`, else empty.
    pub performance_level: String,
    pub size_gib: i64,
}

/// The size range of a category (at a performance level, for ESSD).
pub fn size_range(category: &str, level: &str) -> Option<(i64, i64)> {
    if category == "cloud_essd" {
        return Some(essd_range(level));
    }
    CATEGORIES.iter().find(|(c, _, _)| *c == category).map(|&(_, min, max)| (min, max))
}

/// Checks a category (`code` is the caller's: `InvalidDiskCategory.ValueNotSupported` or
/// `InvalidDataDiskCategory.ValueNotSupported`), an optional performance level and a size.
pub fn shape(category: &str, level: Option<&str>, size_gib: i64, code: &'static str) -> Result<DiskShape, ApiError> {
    if size_range(category, "PL1").is_none() {
        let known: Vec<&str> = CATEGORIES.iter().map(|c| c.0).collect();
        let shown: String = category.chars().take(64).collect();
        return Err(ApiError::invalid(code, format!("The disk category {shown:?} is not supported."))
            .recommend(format!("use one of {}", known.join(", "))));
    }
    let performance_level = match (category, level) {
        ("cloud_essd", None) => "PL1".to_owned(),
        ("cloud_essd", Some(l @ ("PL0" | "PL1" | "PL2" | "PL3"))) => l.to_owned(),
        ("cloud_essd", Some(_)) => {
            return Err(ApiError::invalid(
                "InvalidPerformanceLevel.Malformed",
                "The specified PerformanceLevel is not valid: use PL0, PL1, PL2 or PL3.",
            ))
        }
        // Other categories have no performance levels; the real service ignores the parameter.
        _ => String::new(),
    };
    let (min, max) = size_range(category, &performance_level).unwrap_or((1, 65536));
    if !(min..=max).contains(&size_gib) {
        let code = if category == "cloud_essd" && size_gib <= max {
            "OperationDenied.PerformanceLevelNotMatch"
        } else {
            "InvalidDiskSize.NotSupported"
        };
        return Err(ApiError::invalid(code, "The specified disk size is not supported by the disk category.")
            .recommend(format!("{category} {performance_level} disks are {min} to {max} GiB")));
    }
    Ok(DiskShape { category: category.to_owned(), performance_level, size_gib })
}

/// `DiskName` (and `DataDisk.N.DiskName`): 2 to 128 characters, starting with a letter,
/// then letters, digits, `.`, `_`, `-`, `:`; not starting with `http://` or `https://`.
pub fn check_name(v: &str, code: &'static str) -> Result<(), ApiError> {
    let n = v.chars().count();
    let ok = (2..=128).contains(&n)
        && v.chars().next().is_some_and(char::is_alphabetic)
        && v.chars().all(|c| c.is_alphanumeric() || "._-:".contains(c))
        && !v.starts_with("http://")
        && !v.starts_with("https://");
    if !ok {
        return Err(ApiError::invalid(
            code,
            "The specified disk name is not valid: 2 to 128 characters, starting with a letter, then letters, digits, '.', '_', '-' or ':'.",
        ));
    }
    Ok(())
}

/// A disk's `Description`: 2 to 256 characters, not starting with `http://` or `https://`.
pub fn check_description(v: &str) -> Result<(), ApiError> {
    let n = v.chars().count();
    if !(2..=256).contains(&n) || v.starts_with("http://") || v.starts_with("https://") {
        return Err(ApiError::invalid(
            "InvalidDescription.Malformed",
            "The specified description is not valid: 2 to 256 characters, not starting with http:// or https://.",
        ));
    }
    Ok(())
}

fn opt_name(p: &Params, param: &str) -> Result<Option<String>, ApiError> {
    let v = p.opt_str(param);
    v.map(|v| check_name(v, "InvalidDiskName.Malformed")).transpose()?;
    Ok(v.map(str::to_owned))
}

fn opt_description(p: &Params, param: &str) -> Result<Option<String>, ApiError> {
    let v = p.opt_str(param);
    v.map(check_description).transpose()?;
    Ok(v.map(str::to_owned))
}

/// The first data-disk device an instance does not use (`/dev/xvdb`, `/dev/xvdc`, …).
pub fn next_device<'a>(taken: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    (b'b'..b'b' + MAX_DATA_DISKS as u8)
        .map(|c| format!("/dev/xvd{}", c as char))
        .find(|d| !taken.clone().into_iter().any(|t| t == d))
}

/// The account's disk quotas for `count` more disks of `gib` GiB in all, in the caller's
/// transaction.
pub fn check_disk_quotas(
    tx: &Transaction<'_>,
    quotas: &quota::Quotas,
    account: u64,
    region: &str,
    count: u64,
    gib: u64,
    category: &str,
) -> Result<(), ApiError> {
    let held = disk::count_disks(tx, account, region)?;
    let max = quota::limit(tx, quotas, account, Quota::Disks)?;
    if !quota::fits(max, held, count) {
        return Err(ApiError::new(403, "QuotaExceed.Disk", "The number of disks exceeds the quota.")
            .recommend(format!("this account may hold {max} disks in {region} and holds {held}")));
    }
    let used = disk::capacity_used_gib(tx, account, region)?;
    let max = quota::limit(tx, quotas, account, Quota::DiskCapacityGib)?;
    if !quota::fits(max, used, gib) {
        return Err(ApiError::invalid(
            "QuotaExceed.DiskCapacity",
            format!("The used capacity of disk type has exceeded the quota in the zone, {category}."),
        )
        .recommend(format!("this account may hold {max} GiB of disks in {region} and holds {used}")));
    }
    Ok(())
}

/// One `DataDisk.N` of RunInstances / CreateInstance, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDiskSpec {
    pub shape: DiskShape,
    pub name: String,
    pub description: String,
    /// As asked (`/dev/xvdb`…), or empty: the next free one.
    pub device: String,
    pub delete_with_instance: bool,
    /// `DataDisk.N.SnapshotId`: the disk is made from this snapshot (its size then at least
    /// the snapshot's: see [`resolve_snapshot`]).
    pub snapshot_id: Option<String>,
}

/// A data disk made from a snapshot: its size becomes at least the snapshot's, checked
/// against its category again (`snapshot` is the caller's, looked up by the handler).
pub fn resolve_snapshot(spec: &mut DataDiskSpec, s: &feitian_meta::snapshot::Snapshot) -> Result<(), ApiError> {
    restorable(s)?;
    let level = (!spec.shape.performance_level.is_empty()).then_some(spec.shape.performance_level.as_str());
    let size = spec.shape.size_gib.max(s.source_disk_gib);
    spec.shape = shape(&spec.shape.category, level, size, "InvalidDataDiskCategory.ValueNotSupported")?;
    Ok(())
}

/// ReInitDisk and ResetDisk: the disk's volume is made anew (`ReIniting` until the host has
/// done it), unless a snapshot of it is being made (`DiskCreatingSnapshot`). The new volume's
/// change sequences start over, so the disk's snapshots can no longer be a later snapshot's
/// base.
fn remake_volume(tx: &Transaction<'_>, d: &mut Disk) -> Result<(), ApiError> {
    if let Some(busy) = feitian_meta::snapshot::progressing_of_disk(tx, &d.id)? {
        return Err(ApiError::new(403, "DiskCreatingSnapshot", "A snapshot of the disk is being created.")
            .recommend(format!("wait until {busy} is accomplished or failed")));
    }
    d.status = DiskStatus::ReIniting;
    disk::update_disk(tx, d)?;
    feitian_meta::snapshot::break_chain(tx, &d.id)?;
    Ok(())
}

/// The system snapshot of custom image `image_id`, to re-initialise a system disk made from
/// it (`InvalidImageId.NotFound` once the image is deleted, as on Alibaba Cloud).
fn image_system_snapshot(tx: &Transaction<'_>, image_id: &str) -> Result<feitian_meta::snapshot::Snapshot, ApiError> {
    let disks = feitian_meta::image::disks(tx, image_id)?;
    let system = disks.iter().find(|d| d.disk_type == DiskType::System).ok_or_else(|| {
        crate::image_actions::not_found().recommend(format!("the image {image_id} this disk was made from is gone"))
    })?;
    let s = feitian_meta::snapshot::get_any_owner(tx, &system.snapshot_id)?.ok_or_else(crate::snapshots::not_found)?;
    restorable(&s)?;
    Ok(s)
}

/// A snapshot a disk can be made from: `accomplished` (else `InvalidSnapshotId.NotReady`).
pub(crate) fn restorable(s: &feitian_meta::snapshot::Snapshot) -> Result<(), ApiError> {
    if s.status != feitian_meta::snapshot::SnapshotStatus::Accomplished {
        return Err(ApiError::new(403, "InvalidSnapshotId.NotReady", "The specified snapshot is not ready yet.")
            .recommend("wait until DescribeSnapshots shows it accomplished"));
    }
    Ok(())
}

/// `DataDisk.N.*` (at most [`MAX_DATA_DISKS`]): `Size` or `SnapshotId` (or both: the larger
/// size wins, once the handler has looked the snapshot up), `Category` (default `cloud_efficiency`, as the real API), `PerformanceLevel`,
/// `DiskName`, `Description`, `Device`, `DeleteWithInstance` (default true), `Encrypted`.
pub fn data_disks(p: &Params) -> Result<Vec<DataDiskSpec>, ApiError> {
    let mut out: Vec<DataDiskSpec> = Vec::new();
    for (i, m) in p.list_of_maps("DataDisk", MAX_DATA_DISKS)?.into_iter().enumerate() {
        let n = i + 1;
        let snapshot_id = m.get("SnapshotId").filter(|s| !s.is_empty()).map(|s| s.to_string());
        let category = m.get("Category").copied().unwrap_or("cloud_efficiency");
        let size = match (m.get("Size"), &snapshot_id) {
            (Some(v), _) => v
                .trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid_parameter(&format!("DataDisk.{n}.Size"), "not an integer"))?,
            // The snapshot's size, once looked up; until then the category's smallest.
            (None, Some(_)) => size_range(category, m.get("PerformanceLevel").copied().unwrap_or("PL1"))
                .map(|(min, _)| min)
                .unwrap_or(1),
            (None, None) => {
                return Err(ApiError::missing_parameter(&format!("DataDisk.{n}.Size"))
                    .recommend("either SnapshotId or Size should be specified"))
            }
        };
        let shape =
            shape(category, m.get("PerformanceLevel").copied(), size, "InvalidDataDiskCategory.ValueNotSupported")?;
        let name = m.get("DiskName").copied().unwrap_or("");
        if !name.is_empty() {
            check_name(name, "InvalidDataDiskName.Malformed")?;
        }
        let description = m.get("Description").copied().unwrap_or("");
        if !description.is_empty() {
            check_description(description)?;
        }
        let flag = |field: &str, default: bool| -> Result<bool, ApiError> {
            match m.get(field) {
                None => Ok(default),
                Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
                Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
                Some(_) => Err(ApiError::invalid_parameter(&format!("DataDisk.{n}.{field}"), "neither true nor false")),
            }
        };
        if flag("Encrypted", false)? {
            return Err(ApiError::invalid("InvalidParameter.Encrypted", "feitian does not encrypt disks yet."));
        }
        let device = m.get("Device").copied().unwrap_or("").to_owned();
        if !device.is_empty() {
            let known = (b'b'..b'b' + MAX_DATA_DISKS as u8).any(|c| device == format!("/dev/xvd{}", c as char));
            if !known {
                return Err(ApiError::invalid(
                    "InvalidDataDiskDevice.Malformed",
                    "The specified data disk device is not valid.",
                )
                .recommend("use /dev/xvdb to /dev/xvdq, or omit Device"));
            }
            if out.iter().any(|d| d.device == device) {
                return Err(ApiError::invalid("InvalidDevice.InUse", "The specified device is given twice."));
            }
        }
        out.push(DataDiskSpec {
            shape,
            name: name.to_owned(),
            description: description.to_owned(),
            device,
            delete_with_instance: flag("DeleteWithInstance", true)?,
            snapshot_id,
        });
    }
    Ok(out)
}

/// The devices of `disks` in order: those asked for, the others in the first free slots.
pub fn assign_devices(disks: &[DataDiskSpec]) -> Vec<String> {
    let mut taken: Vec<String> = disks.iter().filter(|d| !d.device.is_empty()).map(|d| d.device.clone()).collect();
    disks
        .iter()
        .map(|d| {
            if !d.device.is_empty() {
                return d.device.clone();
            }
            let dev = next_device(taken.iter().map(String::as_str)).unwrap_or_default();
            taken.push(dev.clone());
            dev
        })
        .collect()
}

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDiskResponse {
    pub disk_id: String,
    pub order_id: String,
}

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResizeDiskResponse {
    pub order_id: String,
}

/// The bools a client may filter DescribeDisks by: (parameter, column).
const BOOL_FILTERS: [(&str, &str); 4] = [
    ("Portable", "portable"),
    ("DeleteWithInstance", "delete_with_instance"),
    ("DeleteAutoSnapshot", "delete_auto_snapshot"),
    ("EnableAutoSnapshot", "enable_auto_snapshot"),
];

impl Ecs {
    /// The region a call names, if it names one.
    pub(crate) fn opt_region(&self, p: &Params) -> Result<Option<Region>, ApiError> {
        match p.opt_str("RegionId") {
            Some(_) => Ok(Some(require_region(&self.catalog, p)?.clone())),
            None => Ok(None),
        }
    }

    /// The caller's disk `id` (in `region`, when the call named one).
    fn disk(&self, tx: &Transaction<'_>, account: u64, region: Option<&Region>, id: &str) -> Result<Disk, ApiError> {
        disk::get_disk(tx, account, id)?.filter(|d| region.is_none_or(|r| r.id == d.region_id)).ok_or_else(not_found)
    }

    /// The caller's instance `id`, in the disk's region.
    fn disk_instance(&self, tx: &Transaction<'_>, account: u64, d: &Disk, id: &str) -> Result<Instance, ApiError> {
        instance::get_instance(tx, account, id)?.filter(|i| i.region_id == d.region_id).ok_or_else(inst_api::not_found)
    }

    /// Nudges the host: disks changed (and instances' plans with them).
    fn disks_changed(&self) {
        self.nudges.disks_changed();
        self.nudges.instances_changed();
    }

    pub async fn create_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<CreateDiskResponse, ApiError> {
        // Without RegionId, the ZoneId's region (zone ids name their region), else the home one.
        let region = match self.opt_region(&p)? {
            Some(r) => r,
            None => p
                .opt_str("ZoneId")
                .and_then(|z| self.catalog.zone_region(z))
                .unwrap_or_else(|| self.catalog.default_region())
                .clone(),
        };
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        let instance_id = p.opt_str("InstanceId").map(str::to_owned);
        if zone_id.is_none() && instance_id.is_none() {
            return Err(ApiError::missing_parameter("ZoneId")
                .recommend("pass ZoneId, or InstanceId to create the disk attached to that instance"));
        }
        let size = p.opt_int("Size", 1, i64::MAX)?;
        // From a snapshot: at least the snapshot's size (the larger of the two, as the API
        // says); the disk's volume is filled with the snapshot's blocks before it is
        // `Available` (docs/snapshots.md guarantee 6).
        let source = match p.opt_str("SnapshotId") {
            Some(sid) => {
                let (account, sid) = (ctx.caller.account_id, sid.to_owned());
                let s = self
                    .store
                    .read_async(move |tx| feitian_meta::snapshot::get(tx, account, &sid))
                    .await?
                    .filter(|s| s.region_id == region.id)
                    .ok_or_else(crate::snapshots::not_found)?;
                restorable(&s)?;
                Some(s)
            }
            None => None,
        };
        let size = match (size, &source) {
            (Some(size), Some(s)) => size.max(s.source_disk_gib),
            (None, Some(s)) => s.source_disk_gib,
            (Some(size), None) => size,
            (None, None) => {
                return Err(
                    ApiError::missing_parameter("Size").recommend("either SnapshotId or Size should be specified")
                )
            }
        };
        let shape = shape(
            p.opt_str("DiskCategory").unwrap_or("cloud"),
            p.opt_str("PerformanceLevel"),
            size,
            "InvalidDiskCategory.ValueNotSupported",
        )?;
        let name = opt_name(&p, "DiskName")?;
        let description = opt_description(&p, "Description")?;
        if p.opt_bool("Encrypted")? == Some(true) {
            return Err(ApiError::invalid("InvalidParameter.Encrypted", "feitian does not encrypt disks yet.")
                .recommend("omit Encrypted or pass false"));
        }
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let mut zone_id = zone_id;
                    let mut device = String::new();
                    if let Some(i) = &instance_id {
                        let inst = instance::get_instance(tx, account, i)?
                            .filter(|x| x.region_id == region.id)
                            .ok_or_else(inst_api::not_found)?;
                        if ![InstanceStatus::Running, InstanceStatus::Stopped].contains(&inst.status) {
                            return Err(inst_api::incorrect_status(inst.status, "Running or Stopped"));
                        }
                        if zone_id.as_ref().is_some_and(|z| *z != inst.zone_id) {
                            return Err(not_same_zone());
                        }
                        zone_id = Some(inst.zone_id.clone());
                        device = me.free_device(tx, &inst.id)?;
                    }
                    let zone_id = zone_id.ok_or_else(|| ApiError::missing_parameter("ZoneId"))?;
                    check_disk_quotas(
                        tx,
                        &me.store.quotas(),
                        account,
                        &region.id,
                        1,
                        shape.size_gib as u64,
                        &shape.category,
                    )?;
                    let id = me.store.scope(account).register(tx, "disk", "d", &region.id, &region.id_code)?;
                    let created = now();
                    disk::insert_disk(
                        tx,
                        &Disk {
                            id: id.clone(),
                            account_id: account,
                            region_id: region.id.clone(),
                            zone_id,
                            instance_id: instance_id.clone().unwrap_or_default(),
                            name: name.clone().unwrap_or_default(),
                            description: description.clone().unwrap_or_default(),
                            category: shape.category.clone(),
                            size_gib: shape.size_gib,
                            disk_type: DiskType::Data,
                            device,
                            image_id: String::new(),
                            status: DiskStatus::Creating,
                            delete_with_instance: false,
                            created_at: created,
                            performance_level: shape.performance_level.clone(),
                            portable: true,
                            delete_auto_snapshot: true,
                            enable_auto_snapshot: true,
                            attached_at: String::new(),
                            detached_at: String::new(),
                        },
                    )?;
                    tag::set_tags(tx, &id, &tags)?;
                    if let Some(s) = &source {
                        // Again in this transaction: it may have been deleted meanwhile.
                        let s =
                            feitian_meta::snapshot::get(tx, account, &s.id)?.ok_or_else(crate::snapshots::not_found)?;
                        restorable(&s)?;
                        feitian_meta::disk_restore::begin(tx, &id, &s)?;
                    }
                    Ok(CreateDiskResponse { disk_id: id, order_id: String::new() })
                })
            })
            .await?;
        self.disks_changed();
        Ok(out)
    }

    /// The next free data-disk device of an instance.
    fn free_device(&self, tx: &Transaction<'_>, instance_id: &str) -> Result<String, ApiError> {
        let disks = disk::disks_of_instance(tx, instance_id)?;
        next_device(disks.iter().map(|d| d.device.as_str())).ok_or_else(|| {
            ApiError::new(403, "InstanceDiskNumber.LimitExceed", "The instance has as many data disks as it can hold.")
                .recommend(format!("an instance holds at most {MAX_DATA_DISKS} data disks"))
        })
    }

    pub async fn describe_disks(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<DescribeDisksResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let by_token = p.opt_str("NextToken").is_some() || p.opt_str("MaxResults").is_some();
        let page = Page::from_params(&p, 10, 100)?;
        let tpage = TokenPage::from_params(&p, 10, 500)?;
        let ids = validate::id_list(&p, "DiskIds", 100)?;
        let kind = match p.opt_str("DiskType").unwrap_or("all") {
            "all" => None,
            t @ ("system" | "data") => Some(t.to_owned()),
            other => {
                return Err(ApiError::invalid_parameter("DiskType", format!("{other:?} is not all, system or data")))
            }
        };
        let category = match p.opt_str("Category").unwrap_or("all") {
            "all" => None,
            c => Some(c.to_owned()),
        };
        let status = match p.opt_str("Status").unwrap_or("All") {
            "All" => None,
            s if DiskStatus::parse(s).is_some() => Some(s.to_owned()),
            other => return Err(ApiError::invalid_parameter("Status", format!("{other:?} is not a disk status"))),
        };
        let mut bools = Vec::new();
        for (param, col) in BOOL_FILTERS {
            bools.push((col, p.opt_bool(param)?));
        }
        // What feitian has none of: a filter asking for one matches nothing.
        let none_match = p.opt_bool("Encrypted")? == Some(true)
            || p.opt_bool("EnableAutomatedSnapshotPolicy")? == Some(true)
            || p.opt_bool("EnableShared")? == Some(true)
            || p.opt_str("DiskChargeType").is_some_and(|c| c != "PostPaid")
            || p.opt_str("MultiAttach").is_some_and(|m| m != "Disabled")
            || ["ResourceGroupId", "KMSKeyId", "LockReason"].iter().any(|k| p.opt_str(k).is_some());
        let zone_id = zone(&region, &p, false)?.map(|z| z.id.clone());
        let tags = validate::tag_filter(&p)?;
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let tag_args: Vec<(&str, Option<&str>)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                let mut f = Filter::owned(ctx.caller.account_id, &region.id)
                    .any_of("id", &ids)
                    .eq("instance_id", p.opt_str("InstanceId"))
                    .eq("disk_type", kind.as_deref())
                    .eq("category", category.as_deref())
                    .eq("status", status.as_deref())
                    .eq("zone_id", zone_id.as_deref())
                    .eq("name", p.opt_str("DiskName"))
                    .eq("performance_level", p.opt_str("PerformanceLevel"))
                    .tags(&tag_args);
                for (col, v) in bools {
                    f = f.eq_bool(col, v);
                }
                // Disks made from a snapshot (`disk_sources`).
                let made_from: Option<Vec<String>> = match p.opt_str("SnapshotId") {
                    Some(sid) => Some(feitian_meta::disk_restore::disks_made_from(tx, sid)?),
                    None => None,
                };
                if let Some(made) = &made_from {
                    let made: Vec<&str> = made.iter().map(String::as_str).collect();
                    f = f.any_of("id", if made.is_empty() { &["-"] } else { &made });
                }
                if none_match {
                    f = f.any_of("id", &["-"]);
                }
                // The disks that follow a policy ("-": none, so an unknown policy matches nothing).
                let following = match p.opt_str("AutoSnapshotPolicyId") {
                    Some(pid) => Some(auto_snapshot_policy::disks_of(tx, pid)?),
                    None => None,
                };
                if let Some(following) = &following {
                    let ids: Vec<&str> = following.iter().map(String::as_str).chain(["-"]).collect();
                    f = f.any_of("id", &ids);
                }
                let (offset, limit) =
                    if by_token { (tpage.offset, u64::from(tpage.max_results)) } else { (page.offset(), page.limit()) };
                let (rows, total) = disk::list_disks(tx, &f, offset, limit)?;
                let mut items = Vec::new();
                let ids: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
                let mut policies = auto_snapshot_policy::policies_of_disks(tx, &ids)?;
                for d in rows {
                    let tags = tag::tags_of(tx, &[d.id.as_str()])?.remove(&d.id).unwrap_or_default();
                    let source = feitian_meta::disk_restore::source_of(tx, &d.id)?;
                    let policy = policies.remove(&d.id);
                    let mut item = DiskItem::new(d, tags.into_iter().collect()).with_policy(policy);
                    item.source_snapshot_id = source.unwrap_or_default();
                    items.push(item);
                }
                Ok(DescribeDisksResponse {
                    paging: Paging::new(by_token, page, tpage, items.len(), total),
                    disks: Disks { disk: items },
                })
            })
            .await
    }

    pub async fn attach_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        let instance_id = p.required_str("InstanceId")?.to_owned();
        let delete_with_instance = p.opt_bool("DeleteWithInstance")?;
        if p.opt_bool("Bootable")? == Some(true) {
            return Err(ApiError::invalid(
                "InvalidParameter.Bootable",
                "feitian boots instances from their system disk only.",
            )
            .recommend("omit Bootable or pass false"));
        }
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut d = me.disk(tx, account, region.as_ref(), &disk_id)?;
                let inst = me.disk_instance(tx, account, &d, &instance_id)?;
                if d.status != DiskStatus::Available {
                    return Err(incorrect_status(&d, "Available"));
                }
                if !d.portable {
                    return Err(ApiError::new(403, "DiskNotPortable", "The specified disk is not portable."));
                }
                if d.zone_id != inst.zone_id {
                    return Err(not_same_zone()
                        .recommend(format!("{} is in {}, {} in {}", d.id, d.zone_id, inst.id, inst.zone_id)));
                }
                d.status = match inst.status {
                    InstanceStatus::Running => DiskStatus::Attaching,
                    // Its guest gets the disk at its next start.
                    InstanceStatus::Stopped => DiskStatus::InUse,
                    s => return Err(inst_api::incorrect_status(s, "Running or Stopped")),
                };
                d.device = me.free_device(tx, &inst.id)?;
                d.instance_id = inst.id;
                d.attached_at = now();
                if let Some(b) = delete_with_instance {
                    d.delete_with_instance = b;
                }
                disk::update_disk(tx, &d)?;
                Ok(Empty {})
            })
            .await?;
        self.disks_changed();
        Ok(Empty {})
    }

    pub async fn detach_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        let instance_id = p.required_str("InstanceId")?.to_owned();
        p.opt_bool("DeleteWithInstance")?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut d = me.disk(tx, account, region.as_ref(), &disk_id)?;
                let inst = me.disk_instance(tx, account, &d, &instance_id)?;
                if d.disk_type == DiskType::System {
                    return Err(ApiError::new(403, "DiskTypeViolation", "The specified disk is not a data disk.")
                        .recommend("a system disk stays with its instance: detach data disks only"));
                }
                if d.status != DiskStatus::InUse || d.instance_id != inst.id {
                    return Err(incorrect_status(&d, &format!("In_use on {}", inst.id)));
                }
                if ![InstanceStatus::Running, InstanceStatus::Stopped].contains(&inst.status) {
                    return Err(inst_api::incorrect_status(inst.status, "Running or Stopped"));
                }
                d.status = DiskStatus::Detaching;
                disk::update_disk(tx, &d)?;
                Ok(Empty {})
            })
            .await?;
        self.disks_changed();
        Ok(Empty {})
    }

    pub async fn delete_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let d = me.disk(tx, ctx.caller.account_id, region.as_ref(), &disk_id)?;
                if d.status != DiskStatus::Available {
                    return Err(incorrect_status(&d, "Available (detach it first)"));
                }
                disk::delete_disk(tx, &d.id, &now())?;
                Ok(Empty {})
            })
            .await?;
        self.disks_changed();
        Ok(Empty {})
    }

    pub async fn resize_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<ResizeDiskResponse, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        let new_size = p.opt_int("NewSize", 1, i64::MAX)?.ok_or_else(|| ApiError::missing_parameter("NewSize"))?;
        let online = match p.opt_str("Type").unwrap_or("offline") {
            "offline" => false,
            "online" => true,
            other => return Err(ApiError::invalid_parameter("Type", format!("{other:?} is not offline or online"))),
        };
        let token = client_token(&p)?;
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let mut d = me.disk(tx, account, region.as_ref(), &disk_id)?;
                    if ![DiskStatus::Available, DiskStatus::InUse].contains(&d.status) {
                        return Err(incorrect_status(&d, "Available or In_use"));
                    }
                    if new_size <= d.size_gib {
                        return Err(ApiError::new(
                            403,
                            "InvalidDiskSize.TooSmall",
                            "The specified new disk size is not larger than the current size.",
                        )
                        .recommend(format!("{} is {} GiB; disks only grow", d.id, d.size_gib)));
                    }
                    shape(
                        &d.category,
                        Some(&d.performance_level).filter(|l| !l.is_empty()).map(|s| s.as_str()),
                        new_size,
                        "InvalidDiskCategory.ValueNotSupported",
                    )?;
                    if online {
                        let running = match d.instance_id.as_str() {
                            "" => None,
                            i => instance::get_instance(tx, account, i)?.map(|i| i.status),
                        };
                        match running {
                            Some(InstanceStatus::Running) => {}
                            Some(s) => return Err(inst_api::incorrect_status(s, "Running (or resize offline)")),
                            None => {
                                return Err(incorrect_status(&d, "In_use on a running instance (or resize offline)"))
                            }
                        }
                    }
                    // Offline: the volume grows now; the guest sees the new size at its next start.
                    check_disk_quotas(
                        tx,
                        &me.store.quotas(),
                        account,
                        &d.region_id,
                        0,
                        (new_size - d.size_gib) as u64,
                        &d.category,
                    )?;
                    d.size_gib = new_size;
                    disk::update_disk(tx, &d)?;
                    Ok(ResizeDiskResponse { order_id: String::new() })
                })
            })
            .await?;
        self.disks_changed();
        Ok(out)
    }

    pub async fn reinit_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        p.opt_bool("AutoStartInstance")?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut d = me.disk(tx, account, region.as_ref(), &disk_id)?;
                if d.status != DiskStatus::InUse || d.instance_id.is_empty() {
                    return Err(incorrect_status(&d, "In_use"));
                }
                let inst = me.disk_instance(tx, account, &d, &d.instance_id.clone())?;
                if inst.status != InstanceStatus::Stopped {
                    return Err(inst_api::incorrect_status(inst.status, InstanceStatus::Stopped.as_str()));
                }
                // A system disk of a custom image goes back to the image's system snapshot
                // (a public image's is its frozen volume, the disk's parent).
                let source = if d.disk_type == DiskType::System && feitian_meta::image::is_custom_id(&d.image_id) {
                    Some(image_system_snapshot(tx, &d.image_id)?)
                } else {
                    None
                };
                remake_volume(tx, &mut d)?;
                if let Some(s) = source {
                    feitian_meta::disk_restore::begin_reset(tx, &d.id, &s, &now())?;
                }
                Ok(Empty {})
            })
            .await?;
        self.disks_changed();
        Ok(Empty {})
    }

    /// ResetDisk: the disk rolls back to one of its own snapshots (docs/snapshots.md guarantee
    /// 6). The disk is `In_use` on a `Stopped` instance, or `Available`; the volume is made
    /// anew and filled with the snapshot's blocks (`ReIniting` meanwhile); irreversible.
    pub async fn reset_disk(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        let snapshot_id = p.required_str("SnapshotId")?.to_owned();
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut d = me.disk(tx, account, region.as_ref(), &disk_id)?;
                let s = feitian_meta::snapshot::get(tx, account, &snapshot_id)?
                    .filter(|s| s.region_id == d.region_id)
                    .ok_or_else(crate::snapshots::not_found)?;
                match (d.status, d.instance_id.is_empty()) {
                    (DiskStatus::Available, true) => {}
                    (DiskStatus::InUse, false) => {
                        let inst = me.disk_instance(tx, account, &d, &d.instance_id.clone())?;
                        if inst.status != InstanceStatus::Stopped {
                            return Err(inst_api::incorrect_status(inst.status, InstanceStatus::Stopped.as_str()));
                        }
                    }
                    _ => return Err(incorrect_status(&d, "In_use or Available")),
                }
                if s.disk_id != d.id {
                    return Err(ApiError::new(
                        403,
                        "OperationDenied",
                        "The specified snapshot was not created from the specified disk.",
                    )
                    .recommend(format!(
                        "{} is a snapshot of {}; reset that disk, or make a new disk from it with CreateDisk",
                        s.id, s.disk_id
                    )));
                }
                restorable(&s)?;
                remake_volume(tx, &mut d)?;
                feitian_meta::disk_restore::begin_reset(tx, &d.id, &s, &now())?;
                Ok(Empty {})
            })
            .await?;
        self.disks_changed();
        Ok(Empty {})
    }

    pub async fn modify_disk_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let mut ids: Vec<String> = p.list("DiskIds", 100)?.into_iter().map(str::to_owned).collect();
        if let Some(id) = p.opt_str("DiskId") {
            ids.insert(0, id.to_owned());
        }
        if ids.is_empty() {
            return Err(ApiError::missing_parameter("DiskId").recommend("pass DiskId or DiskIds.N"));
        }
        let name = opt_name(&p, "DiskName")?;
        let description = opt_description(&p, "Description")?;
        let delete_with_instance = p.opt_bool("DeleteWithInstance")?;
        let delete_auto_snapshot = p.opt_bool("DeleteAutoSnapshot")?;
        let enable_auto_snapshot = p.opt_bool("EnableAutoSnapshot")?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut disks = Vec::new();
                for id in &ids {
                    disks.push(me.disk(tx, account, region.as_ref(), id)?);
                }
                for mut d in disks {
                    if let Some(n) = &name {
                        d.name = n.clone();
                    }
                    if let Some(v) = &description {
                        d.description = v.clone();
                    }
                    if let Some(b) = delete_with_instance {
                        d.delete_with_instance = b;
                    }
                    if let Some(b) = delete_auto_snapshot {
                        d.delete_auto_snapshot = b;
                    }
                    if let Some(b) = enable_auto_snapshot {
                        d.enable_auto_snapshot = b;
                    }
                    disk::update_disk(tx, &d)?;
                }
                Ok(Empty {})
            })
            .await
    }
}

fn not_same_zone() -> ApiError {
    ApiError::new(403, "ResourcesNotInSameZone", "The specified instance and disk are not in the same zone.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "InvalidDiskCategory.ValueNotSupported";

    #[test]
    fn categories_levels_and_sizes() {
        let s = shape("cloud_essd", None, 40, CODE).unwrap();
        assert_eq!((s.performance_level.as_str(), s.size_gib), ("PL1", 40));
        assert_eq!(shape("cloud_ssd", Some("PL2"), 40, CODE).unwrap().performance_level, "", "ignored outside ESSD");
        assert_eq!(shape("floppy", None, 40, CODE).unwrap_err().code, CODE);
        assert_eq!(shape("cloud_essd", Some("PL9"), 40, CODE).unwrap_err().code, "InvalidPerformanceLevel.Malformed");
        assert_eq!(
            shape("cloud_essd", Some("PL2"), 100, CODE).unwrap_err().code,
            "OperationDenied.PerformanceLevelNotMatch"
        );
        assert!(shape("cloud_essd", Some("PL2"), 461, CODE).is_ok());
        assert!(shape("cloud_essd", Some("PL0"), 1, CODE).is_ok());
        assert_eq!(shape("cloud_essd", None, 65537, CODE).unwrap_err().code, "InvalidDiskSize.NotSupported");
        for (c, min, max) in CATEGORIES.into_iter().filter(|c| c.0 != "cloud_essd") {
            assert!(shape(c, None, min, CODE).is_ok() && shape(c, None, max, CODE).is_ok(), "{c}");
            assert_eq!(shape(c, None, min - 1, CODE).unwrap_err().code, "InvalidDiskSize.NotSupported", "{c}");
            assert_eq!(shape(c, None, max + 1, CODE).unwrap_err().code, "InvalidDiskSize.NotSupported", "{c}");
        }
    }

    #[test]
    fn names_and_descriptions() {
        let code = "InvalidDiskName.Malformed";
        assert!(check_name("data-1", code).is_ok());
        assert!(check_name("数据盘", code).is_ok());
        for bad in ["a", "1abc", "http://x", "has space", &"x".repeat(129)] {
            assert_eq!(check_name(bad, code).unwrap_err().code, code, "{bad}");
        }
        assert!(check_description("ok").is_ok());
        for bad in ["x", "https://x.y", &"x".repeat(257)] {
            assert_eq!(check_description(bad).unwrap_err().code, "InvalidDescription.Malformed", "{bad}");
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn data_disks_of_a_create() {
        let p = params(&[
            ("DataDisk.1.Size", "40"),
            ("DataDisk.2.Size", "30"),
            ("DataDisk.2.Category", "cloud_essd"),
            ("DataDisk.2.Device", "/dev/xvdb"),
            ("DataDisk.2.DeleteWithInstance", "false"),
        ]);
        let d = data_disks(&p).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].shape.category.as_str(), d[0].delete_with_instance), ("cloud_efficiency", true));
        assert_eq!((d[1].shape.performance_level.as_str(), d[1].delete_with_instance), ("PL1", false));
        assert_eq!(assign_devices(&d), vec!["/dev/xvdc".to_string(), "/dev/xvdb".to_string()]);
        let code = |pairs: &[(&str, &str)]| data_disks(&params(pairs)).unwrap_err().code;
        assert_eq!(code(&[("DataDisk.1.Category", "cloud")]), "MissingParameter");
        assert_eq!(code(&[("DataDisk.1.Size", "x")]), "InvalidParameter");
        assert_eq!(code(&[("DataDisk.1.Size", "10")]), "InvalidDiskSize.NotSupported");
        assert_eq!(
            code(&[("DataDisk.1.Size", "40"), ("DataDisk.1.Category", "tape")]),
            "InvalidDataDiskCategory.ValueNotSupported"
        );
        // From a snapshot: no Size needed (the snapshot's, once looked up; the category's
        // smallest until then).
        let d =
            data_disks(&params(&[("DataDisk.1.SnapshotId", "s-1"), ("DataDisk.1.Category", "cloud_essd")])).unwrap();
        assert_eq!((d[0].snapshot_id.as_deref(), d[0].shape.size_gib), (Some("s-1"), 20));
        assert_eq!(
            code(&[("DataDisk.1.Size", "40"), ("DataDisk.1.Device", "/dev/sda")]),
            "InvalidDataDiskDevice.Malformed"
        );
        assert_eq!(code(&[("DataDisk.17.Size", "40")]), "InvalidParameter");
    }

    #[test]
    fn devices_fill_the_first_gap() {
        assert_eq!(next_device(["/dev/xvda"]).as_deref(), Some("/dev/xvdb"));
        assert_eq!(next_device(["/dev/xvda", "/dev/xvdb", "/dev/xvdd"]).as_deref(), Some("/dev/xvdc"));
        let all: Vec<String> = (b'b'..b'b' + MAX_DATA_DISKS as u8).map(|c| format!("/dev/xvd{}", c as char)).collect();
        assert_eq!(next_device(all.iter().map(String::as_str)), None);
    }
}
