//! Snapshots (ECS 2014-05-26): CreateSnapshot, DescribeSnapshots, DeleteSnapshot,
//! ModifySnapshotAttribute, DescribeSnapshotLinks. The contract is `docs/snapshots.md`.
//!
//! `CreateSnapshot` records the snapshot (`progressing`, 0 %) in one transaction, nudges the
//! hosts, and then waits up to [`PIN_WAIT`] for the disk's host to report the pin, so that a
//! write the caller makes after the call returned is never in the snapshot (guarantee 2:
//! the one bounded wait in a house of "write and return"). If the host does not answer in
//! time the call still returns; the snapshot's instant, and its `CreationTime`, is when the
//! host pins it. The upload then runs on the host and moves the row through the planner.
//!
//! Calls without `RegionId` act on the snapshot or disk wherever the caller has it (as the
//! disk actions do); with one, it must be in that region.

use crate::answer::Paging;
use crate::disks::{self, check_description};
use crate::snapshot_view::{
    DescribeSnapshotLinksResponse, DescribeSnapshotsResponse, LinkItem, SnapshotItem, SnapshotLinks, Snapshots,
};
use crate::Ecs;
use feitian_api::answers::Empty;
use feitian_api::paging::{Page, TokenPage};
use feitian_api::region::require_region;
use feitian_api::service::{client_token, create_once, now};
use feitian_api::{validate, ApiError, Ctx, Params};
use feitian_meta::disk::{self, Disk, DiskStatus, DiskType};
use feitian_meta::snapshot::{self, CreateError, NewSnapshot, Snapshot, SnapshotStatus, SnapshotType};
use feitian_meta::{instance, tag, Filter, MetaError, Transaction};
use feitian_region::Region;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long `CreateSnapshot` waits for the host's pin (docs/snapshots.md guarantee 2).
pub const PIN_WAIT: Duration = Duration::from_secs(5);

/// How often the wait looks at the row.
const PIN_POLL: Duration = Duration::from_millis(20);

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidSnapshotId.NotFound", "The specified snapshot does not exist.")
}

/// `SnapshotName`: 2 to 128 characters, starting with a letter, then letters, digits, `.`,
/// `_`, `-`, `:`; not starting with `auto` (automatic snapshots' names), `http://` or
/// `https://`.
pub fn check_name(v: &str) -> Result<(), ApiError> {
    if v.starts_with("auto") {
        return Err(ApiError::invalid(
            "InvalidSnapshotName.Malformed",
            "The specified snapshot name is not valid: it cannot start with auto (reserved for automatic snapshots).",
        ));
    }
    disks::check_name(v, "InvalidSnapshotName.Malformed")
}

/// `RetentionDays`: 1 to 65536.
fn retention_days(p: &Params) -> Result<Option<i64>, ApiError> {
    p.opt_int("RetentionDays", 1, 65536)
}

/// Stored with its ClientToken, so it reads back too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSnapshotResponse {
    pub snapshot_id: String,
}

/// Whether the disk may be snapshotted: `In_use`, or `Available` once it was ever attached
/// (a disk never attached holds nothing a guest wrote).
pub(crate) fn check_disk(d: &Disk) -> Result<(), ApiError> {
    let ever_attached = d.disk_type == DiskType::System || !d.attached_at.is_empty() || !d.detached_at.is_empty();
    match d.status {
        DiskStatus::InUse => Ok(()),
        DiskStatus::Available if ever_attached => Ok(()),
        DiskStatus::Available => Err(ApiError::new(
            403,
            "IncorrectDiskStatus.NeverAttached",
            "The specified disk has never been attached to an instance.",
        )
        .recommend(format!("attach {} to an instance first: a snapshot holds what a guest wrote", d.id))),
        _ => Err(disks::incorrect_status(d, "In_use or Available")),
    }
}

/// `Filter.N.Key=CreationStartTime`, `Filter.N.Value=yyyy-MM-ddTHH:mmZ` (UTC): the store's
/// spelling of that minute, to compare with creation times.
fn creation_start(p: &Params) -> Result<Option<String>, ApiError> {
    let mut start = None;
    for (i, f) in p.list_of_maps("Filter", 10)?.into_iter().enumerate() {
        let key = f.get("Key").copied().unwrap_or("");
        let value = f.get("Value").copied().unwrap_or("");
        if key != "CreationStartTime" {
            return Err(ApiError::invalid_parameter(
                &format!("Filter.{}.Key", i + 1),
                "only CreationStartTime is known",
            ));
        }
        let minute = value.len() == 17 && value.ends_with('Z') && value.as_bytes().get(10) == Some(&b'T');
        let second = value.len() == 20 && value.ends_with('Z') && value.as_bytes().get(10) == Some(&b'T');
        start = Some(match (minute, second) {
            (true, _) => format!("{}:00Z", &value[..16]),
            (_, true) => value.to_owned(),
            _ => {
                return Err(ApiError::invalid_parameter(
                    &format!("Filter.{}.Value", i + 1),
                    "use yyyy-MM-ddTHH:mmZ (UTC)",
                ))
            }
        });
    }
    Ok(start)
}

/// One of a parameter's allowed values (`all`: no filter).
fn one_of(p: &Params, param: &str, allowed: &[&str], lower: bool) -> Result<Option<String>, ApiError> {
    let Some(v) = p.opt_str(param) else { return Ok(None) };
    let v = if lower { v.to_ascii_lowercase() } else { v.to_owned() };
    if v == "all" {
        return Ok(None);
    }
    if !allowed.contains(&v.as_str()) {
        return Err(ApiError::invalid_parameter(param, format!("use one of {} or all", allowed.join(", "))));
    }
    Ok(Some(v))
}

/// The ids of an account's disks attached to an instance now.
fn disks_of_instance(tx: &Transaction<'_>, account: u64, instance_id: &str) -> Result<Vec<String>, MetaError> {
    Ok(disk::disks_of_instance(tx, instance_id)?
        .into_iter()
        .filter(|d| d.account_id == account)
        .map(|d| d.id)
        .collect())
}

impl Ecs {
    /// The caller's snapshot `id` (in `region`, when the call named one).
    fn snapshot(
        &self,
        tx: &Transaction<'_>,
        account: u64,
        region: Option<&Region>,
        id: &str,
    ) -> Result<Snapshot, ApiError> {
        snapshot::get(tx, account, id)?.filter(|s| region.is_none_or(|r| r.id == s.region_id)).ok_or_else(not_found)
    }

    /// Waits until the host pinned the snapshot (or it left `progressing`, or is gone), at
    /// most [`PIN_WAIT`].
    pub(crate) async fn wait_for_pin(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + PIN_WAIT;
        loop {
            let row_id = id.to_owned();
            let waiting = self
                .store
                .read_async(move |tx| {
                    Ok::<_, MetaError>(
                        snapshot::get_any_owner(tx, &row_id)?
                            .is_some_and(|s| s.pin.is_none() && s.status == SnapshotStatus::Progressing),
                    )
                })
                .await;
            match waiting {
                Ok(true) if tokio::time::Instant::now() < deadline => tokio::time::sleep(PIN_POLL).await,
                Ok(true) => {
                    tracing::info!(snapshot = %id, "no pin from the disk's host in time: the snapshot's instant is when it pins");
                    return;
                }
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(snapshot = %id, error = %e, "cannot read the snapshot while waiting for its pin");
                    return;
                }
            }
        }
    }

    pub async fn create_snapshot(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<CreateSnapshotResponse, ApiError> {
        let region = self.opt_region(&p)?;
        let disk_id = p.required_str("DiskId")?.to_owned();
        let name = p.opt_str("SnapshotName").map(str::to_owned);
        name.as_deref().map(check_name).transpose()?;
        let description = p.opt_str("Description").map(str::to_owned);
        description.as_deref().map(check_description).transpose()?;
        let retention = retention_days(&p)?;
        p.opt_bool("InstantAccess")?;
        p.opt_int("InstantAccessRetentionDays", 1, 65535)?;
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        let token = client_token(&p)?;
        let me = self.clone();
        let out = self
            .store
            .call(move |store| {
                create_once(store, &ctx, &p, token, |tx| {
                    let account = ctx.caller.account_id;
                    let d = disk::get_disk(tx, account, &disk_id)?
                        .filter(|d| region.as_ref().is_none_or(|r| r.id == d.region_id))
                        .ok_or_else(disks::not_found)?;
                    check_disk(&d)?;
                    let code = me.catalog.region(&d.region_id).map(|r| r.id_code.clone()).unwrap_or_default();
                    let id = me.store.scope(account).register(tx, "snapshot", "s", &d.region_id, &code)?;
                    let new = NewSnapshot {
                        id,
                        disk: &d,
                        name: name.clone().unwrap_or_default(),
                        description: description.clone().unwrap_or_default(),
                        snapshot_type: SnapshotType::User,
                        retention_days: retention,
                        at: now(),
                    };
                    let s = snapshot::create(tx, &me.store.quotas(), &new).map_err(|e| match e {
                        CreateError::QuotaExceeded { max, held } => {
                            ApiError::new(403, "QuotaExceed.Snapshot", "The number of snapshots exceeds the quota.")
                                .recommend(format!(
                                    "this account may hold {max} snapshots in {} and holds {held}",
                                    d.region_id
                                ))
                        }
                        CreateError::DiskBusy(busy) => ApiError::new(
                            403,
                            "IncorrectDiskStatus.CreatingSnapshot",
                            "A snapshot of the specified disk is being created.",
                        )
                        .recommend(format!("wait until {busy} is accomplished or failed")),
                        CreateError::Meta(e) => e.into(),
                    })?;
                    tag::set_tags(tx, &s.id, &tags)?;
                    Ok(CreateSnapshotResponse { snapshot_id: s.id })
                })
            })
            .await?;
        self.nudges.snapshots_changed();
        self.wait_for_pin(&out.snapshot_id).await;
        Ok(out)
    }

    pub async fn describe_snapshots(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeSnapshotsResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let by_token = p.opt_str("NextToken").is_some() || p.opt_str("MaxResults").is_some();
        let page = Page::from_params(&p, 10, 100)?;
        let tpage = TokenPage::from_params(&p, 10, 100)?;
        let ids = validate::id_list(&p, "SnapshotIds", 100)?;
        let status = one_of(&p, "Status", &["progressing", "accomplished", "failed"], false)?;
        let kind = one_of(&p, "SnapshotType", &["auto", "user"], false)?;
        let source = one_of(&p, "SourceDiskType", &["system", "data"], true)?;
        let usage = one_of(&p, "Usage", &["image", "disk", "image_disk", "none"], false)?;
        let since = creation_start(&p)?;
        let tags = validate::tag_filter(&p)?;
        // What feitian has none of: a filter asking for one matches nothing.
        let none_match = p.opt_bool("Encrypted")? == Some(true)
            || p.opt_str("Category").is_some_and(|c| c.eq_ignore_ascii_case("flash"))
            || ["KMSKeyId", "ResourceGroupId"].iter().any(|k| p.opt_str(k).is_some());
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let tag_args: Vec<(&str, Option<&str>)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                let of_instance = match p.opt_str("InstanceId") {
                    Some(i) => Some(disks_of_instance(tx, account, i)?),
                    None => None,
                };
                let instance_disks: Vec<&str> = of_instance.iter().flatten().map(String::as_str).collect();
                let mut f = Filter::owned(account, &region.id)
                    .any_of("id", &ids)
                    .eq("disk_id", p.opt_str("DiskId"))
                    .any_of("disk_id", &instance_disks)
                    .eq("link_id", p.opt_str("SnapshotLinkId"))
                    .eq("name", p.opt_str("SnapshotName"))
                    .eq("status", status.as_deref())
                    .eq("snapshot_type", kind.as_deref())
                    .eq("source_disk_type", source.as_deref())
                    .eq("usage", usage.as_deref())
                    .at_least("creation_time", since.as_deref())
                    .tags(&tag_args);
                if none_match || of_instance.as_ref().is_some_and(Vec::is_empty) {
                    f = f.any_of("id", &["-"]);
                }
                let (offset, limit) =
                    if by_token { (tpage.offset, u64::from(tpage.max_results)) } else { (page.offset(), page.limit()) };
                let (rows, total) = snapshot::list(tx, &f, offset, limit)?;
                let mut items = Vec::new();
                for s in rows {
                    let tags = tag::tags_of(tx, &[s.id.as_str()])?.remove(&s.id).unwrap_or_default();
                    let full = snapshot::full_size(tx, &s.id)?;
                    items.push(SnapshotItem::new(s, full, tags.into_iter().collect()));
                }
                Ok(DescribeSnapshotsResponse {
                    paging: Paging::new(by_token, page, tpage, items.len(), total),
                    snapshots: Snapshots { snapshot: items },
                })
            })
            .await
    }

    pub async fn delete_snapshot(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let id = p.required_str("SnapshotId")?.to_owned();
        let force = p.opt_bool("Force")?.unwrap_or(false);
        validate::dry_run(&p)?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let s = me.snapshot(tx, ctx.caller.account_id, region.as_ref(), &id)?;
                // An image reads its disks through the snapshot: never deleted from under it.
                if s.images_created > 0 {
                    return Err(ApiError::new(
                        403,
                        "SnapshotCreatedImage",
                        "The snapshot has been used to create a custom image and cannot be deleted.",
                    )
                    .recommend("delete the images made from it first"));
                }
                if s.disks_created > 0 && !force {
                    return Err(ApiError::new(
                        403,
                        "SnapshotCreatedDisk",
                        "The snapshot has been used to create disks and cannot be deleted.",
                    )
                    .recommend("pass Force=true to delete it anyway"));
                }
                snapshot::delete(tx, &s.id, &now())?;
                Ok(Empty {})
            })
            .await?;
        // A progressing snapshot's pin is to be released.
        self.nudges.snapshots_changed();
        Ok(Empty {})
    }

    pub async fn modify_snapshot_attribute(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = self.opt_region(&p)?;
        let id = p.required_str("SnapshotId")?.to_owned();
        let name = p.opt_str("SnapshotName").map(str::to_owned);
        name.as_deref().map(check_name).transpose()?;
        // Here a description may be emptied (`Description=` given empty).
        let description = p.get("Description").map(str::to_owned);
        description.as_deref().filter(|d| !d.is_empty()).map(check_description).transpose()?;
        let retention = retention_days(&p)?;
        // Instant access is a feature feitian's snapshots do not have: nothing to disable.
        p.opt_bool("DisableInstantAccess")?;
        let me = self.clone();
        self.store
            .write_async(move |tx| {
                let s = me.snapshot(tx, ctx.caller.account_id, region.as_ref(), &id)?;
                snapshot::update_attributes(
                    tx,
                    &s.id,
                    name.as_deref().unwrap_or(&s.name),
                    description.as_deref().unwrap_or(&s.description),
                    retention.or(s.retention_days),
                    &now(),
                )?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn describe_snapshot_links(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeSnapshotLinksResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let by_token = p.opt_str("NextToken").is_some() || p.opt_str("MaxResults").is_some();
        let page = Page::from_params(&p, 10, 100)?;
        let tpage = TokenPage::from_params(&p, 10, 100)?;
        let disk_ids = validate::id_list(&p, "DiskIds", 100)?;
        let link_ids = validate::id_list(&p, "SnapshotLinkIds", 100)?;
        self.store
            .read_async(move |tx| {
                let account = ctx.caller.account_id;
                let mut disk_ids = disk_ids;
                if let Some(i) = p.opt_str("InstanceId") {
                    let of_instance = disks_of_instance(tx, account, i)?;
                    disk_ids = if disk_ids.is_empty() {
                        of_instance
                    } else {
                        disk_ids.into_iter().filter(|d| of_instance.contains(d)).collect()
                    };
                    if disk_ids.is_empty() {
                        // No disk of that instance: no chain, rather than every chain.
                        disk_ids.push("-".into());
                    }
                }
                let (offset, limit) =
                    if by_token { (tpage.offset, u64::from(tpage.max_results)) } else { (page.offset(), page.limit()) };
                let (rows, total) = snapshot::links(tx, account, &region.id, &disk_ids, &link_ids, offset, limit)?;
                let mut items = Vec::new();
                for l in rows {
                    let d = disk::get_disk(tx, account, &l.disk_id)?;
                    let (disk_name, instance_id) = d.map(|d| (d.name, d.instance_id)).unwrap_or_default();
                    let instance_name = match instance_id.as_str() {
                        "" => String::new(),
                        i => instance::get_instance(tx, account, i)?.map(|i| i.name).unwrap_or_default(),
                    };
                    items.push(LinkItem::new(l, disk_name, instance_id, instance_name));
                }
                Ok(DescribeSnapshotLinksResponse {
                    paging: Paging::new(by_token, page, tpage, items.len(), total),
                    snapshot_links: SnapshotLinks { snapshot_link: items },
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn snapshot_names() {
        assert!(check_name("before-upgrade").is_ok());
        assert!(check_name("快照一").is_ok());
        for bad in ["a", "autosnap", "auto", "http://x", "https://x", "1abc", &"x".repeat(129)] {
            assert_eq!(check_name(bad).unwrap_err().code, "InvalidSnapshotName.Malformed", "{bad}");
        }
    }

    #[test]
    fn creation_start_filters() {
        assert_eq!(creation_start(&params(&[])).unwrap(), None);
        let p = params(&[("Filter.1.Key", "CreationStartTime"), ("Filter.1.Value", "2026-12-07T20:40Z")]);
        assert_eq!(creation_start(&p).unwrap().as_deref(), Some("2026-12-07T20:40:00Z"));
        let p = params(&[("Filter.1.Key", "Other"), ("Filter.1.Value", "2026-12-07T20:40Z")]);
        assert_eq!(creation_start(&p).unwrap_err().code, "InvalidParameter");
        let p = params(&[("Filter.1.Key", "CreationStartTime"), ("Filter.1.Value", "yesterday")]);
        assert_eq!(creation_start(&p).unwrap_err().code, "InvalidParameter");
    }

    #[test]
    fn allowed_values_and_all() {
        let p = params(&[("SourceDiskType", "System"), ("Status", "all"), ("Usage", "tape")]);
        assert_eq!(one_of(&p, "SourceDiskType", &["system", "data"], true).unwrap().as_deref(), Some("system"));
        assert_eq!(one_of(&p, "Status", &["progressing"], false).unwrap(), None);
        assert_eq!(one_of(&p, "Usage", &["image"], false).unwrap_err().code, "InvalidParameter");
        assert_eq!(one_of(&p, "Absent", &["x"], false).unwrap(), None);
    }

    fn disk(status: DiskStatus, kind: DiskType, attached: &str, detached: &str) -> Disk {
        Disk {
            id: "d-1".into(),
            account_id: 1,
            region_id: "r".into(),
            zone_id: "z".into(),
            instance_id: String::new(),
            name: String::new(),
            description: String::new(),
            category: "cloud_essd".into(),
            size_gib: 20,
            disk_type: kind,
            device: String::new(),
            image_id: String::new(),
            status,
            delete_with_instance: false,
            created_at: "t".into(),
            performance_level: "PL1".into(),
            portable: true,
            delete_auto_snapshot: true,
            enable_auto_snapshot: true,
            attached_at: attached.into(),
            detached_at: detached.into(),
        }
    }

    #[test]
    fn which_disks_may_be_snapshotted() {
        assert!(check_disk(&disk(DiskStatus::InUse, DiskType::Data, "", "")).is_ok());
        assert!(check_disk(&disk(DiskStatus::Available, DiskType::Data, "t", "t")).is_ok());
        assert!(check_disk(&disk(DiskStatus::Available, DiskType::Data, "", "t")).is_ok());
        assert!(check_disk(&disk(DiskStatus::Available, DiskType::System, "", "")).is_ok());
        assert_eq!(
            check_disk(&disk(DiskStatus::Available, DiskType::Data, "", "")).unwrap_err().code,
            "IncorrectDiskStatus.NeverAttached"
        );
        assert_eq!(
            check_disk(&disk(DiskStatus::Creating, DiskType::Data, "", "")).unwrap_err().code,
            "IncorrectDiskStatus"
        );
        assert_eq!(
            check_disk(&disk(DiskStatus::Detaching, DiskType::Data, "t", "")).unwrap_err().code,
            "IncorrectDiskStatus"
        );
    }
}
