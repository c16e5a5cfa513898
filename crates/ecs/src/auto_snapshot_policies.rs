//! Automatic snapshot policies (ECS 2014-05-26): CreateAutoSnapshotPolicy,
//! ModifyAutoSnapshotPolicyEx, DeleteAutoSnapshotPolicy, ApplyAutoSnapshotPolicy,
//! CancelAutoSnapshotPolicy, DescribeAutoSnapshotPolicyEx. What a policy means in time is
//! [`crate::snapshot_schedule`]; acting on it is [`crate::auto_snapshot_scheduler`]; the
//! contract is `docs/snapshots.md`, "Automatic snapshot policies".
//!
//! These actions' parameters are lowerCamelCase in the SDKs (`regionId`, `timePoints`,
//! `diskIds`), except DescribeAutoSnapshotPolicyEx's; both spellings of every name are read,
//! through [`crate::param_case`], applied once in [`register`] before any handler runs.

use crate::auto_snapshot_policy_view::{AutoSnapshotPolicies, DescribeAutoSnapshotPolicyExResponse, PolicyItem};
use crate::snapshot_schedule::{parse_retention, parse_time_points, parse_weekdays, render_set, ScheduleError};
use crate::{disks, param_case, Ecs, PRODUCT, VERSION};
use feitian_api::answers::Empty;
use feitian_api::paging::Page;
use feitian_api::region::require_region;
use feitian_api::service::now;
use feitian_api::{validate, ApiError, Ctx, Params, Registry};
use feitian_meta::auto_snapshot_policy::{self as policy, CreateError, Policy};
use feitian_meta::{disk, tag, Filter, Transaction};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// Policies an account may hold per region (the real service's default quota).
pub const MAX_POLICIES: u64 = 100;

/// Disks one Apply or Cancel may name.
const MAX_DISKS: usize = 1000;

/// The registry's kind of a policy (`TagResources ResourceType=snapshotpolicy`).
pub const KIND: &str = "auto_snapshot_policy";

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidAutoSnapshotPolicyId.NotFound", "The specified AutoSnapshotPolicyId does not exist.")
}

fn disk_not_found(id: &str) -> ApiError {
    ApiError::new(404, "InvalidDiskId.NotFound", "The specified disk does not exist.")
        .recommend(format!("{id} is not a disk of this account in this region"))
}

fn schedule_error(e: ScheduleError) -> ApiError {
    ApiError::invalid(e.code(), e.to_string())
}

/// `autoSnapshotPolicyName`: the disk names' rules (2 to 128 characters, starting with a
/// letter, then letters, digits, `.`, `_`, `-`, `:`, not `http://` or `https://`).
fn check_name(v: &str) -> Result<(), ApiError> {
    disks::check_name(v, "InvalidAutoSnapshotPolicyName.Malformed").map_err(|e| {
        ApiError::invalid(
            e.code,
            "The specified automatic snapshot policy name is not valid: 2 to 128 characters, starting with a letter, then letters, digits, '.', '_', '-' or ':'.",
        )
    })
}

/// `CopiedSnapshotsRetentionDays`: -1 (forever, stored as `None`) or 1 to 65535.
fn copied_retention(p: &Params) -> Result<Option<Option<i64>>, ApiError> {
    match p.opt_int("CopiedSnapshotsRetentionDays", -1, 65535)? {
        None => Ok(None),
        Some(-1) => Ok(Some(None)),
        Some(0) => Err(ApiError::invalid_parameter("CopiedSnapshotsRetentionDays", "use -1 or 1 to 65535")),
        Some(n) => Ok(Some(Some(n))),
    }
}

/// `TargetCopyRegions`, kept as given (nothing is copied between regions yet).
fn target_copy_regions(p: &Params) -> Result<Option<String>, ApiError> {
    Ok(p.opt_str_max("TargetCopyRegions", 1024)?.map(str::to_owned))
}

/// What the schedule parameters say, each only when given.
struct ScheduleParams {
    time_points: Option<String>,
    weekdays: Option<String>,
    retention: Option<Option<i64>>,
}

fn schedule_params(p: &Params) -> Result<ScheduleParams, ApiError> {
    Ok(ScheduleParams {
        time_points: p
            .opt_str("TimePoints")
            .map(|v| parse_time_points(v).map(|s| render_set(&s)))
            .transpose()
            .map_err(schedule_error)?,
        weekdays: p
            .opt_str("RepeatWeekdays")
            .map(|v| parse_weekdays(v).map(|s| render_set(&s)))
            .transpose()
            .map_err(schedule_error)?,
        retention: p
            .opt_str("RetentionDays")
            .map(|v| parse_retention(v).map(|r| r.map(i64::from)))
            .transpose()
            .map_err(schedule_error)?,
    })
}

/// `AssociationType`: feitian applies policies to disks only.
fn check_association(p: &Params) -> Result<(), ApiError> {
    match p.opt_str("AssociationType") {
        None | Some("AssociatedWithDisk") => Ok(()),
        Some(_) => Err(ApiError::invalid_parameter("AssociationType", "only AssociatedWithDisk is supported")),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAutoSnapshotPolicyResponse {
    pub auto_snapshot_policy_id: String,
}

/// Registers the actions; each reads its parameters in PascalCase whichever way they came.
pub fn register(r: &mut Registry, ecs: Arc<Ecs>) {
    fn add<T, Fut>(r: &mut Registry, ecs: &Arc<Ecs>, action: &'static str, handler: fn(Arc<Ecs>, Ctx, Params) -> Fut)
    where
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        let e = ecs.clone();
        r.add(PRODUCT, VERSION, action, move |ctx, p| {
            let e = e.clone();
            let p = param_case::to_pascal(&p);
            async move { handler(e, ctx, p?).await }
        });
    }
    add(r, &ecs, "CreateAutoSnapshotPolicy", Ecs::create_auto_snapshot_policy);
    add(r, &ecs, "ModifyAutoSnapshotPolicyEx", Ecs::modify_auto_snapshot_policy_ex);
    add(r, &ecs, "DeleteAutoSnapshotPolicy", Ecs::delete_auto_snapshot_policy);
    add(r, &ecs, "ApplyAutoSnapshotPolicy", Ecs::apply_auto_snapshot_policy);
    add(r, &ecs, "CancelAutoSnapshotPolicy", Ecs::cancel_auto_snapshot_policy);
    add(r, &ecs, "DescribeAutoSnapshotPolicyEx", Ecs::describe_auto_snapshot_policy_ex);
}

/// The caller's policy `id` in `region`.
fn get_policy(tx: &Transaction<'_>, account: u64, region: &str, id: &str) -> Result<Policy, ApiError> {
    policy::get(tx, account, id)?.filter(|p| p.region_id == region).ok_or_else(not_found)
}

/// Every named disk must be the caller's, in `region`.
fn check_disks(tx: &Transaction<'_>, account: u64, region: &str, ids: &[String]) -> Result<(), ApiError> {
    for id in ids {
        if disk::get_disk(tx, account, id)?.is_none_or(|d| d.region_id != region) {
            return Err(disk_not_found(id));
        }
    }
    Ok(())
}

/// `diskIds`: a JSON array (or a comma list) of 1 to [`MAX_DISKS`] ids.
fn disk_ids(p: &Params) -> Result<Vec<String>, ApiError> {
    p.required_str("DiskIds")?;
    let mut ids = validate::id_list(p, "DiskIds", MAX_DISKS)?;
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(ApiError::invalid_parameter("diskIds", "name at least one disk"));
    }
    Ok(ids)
}

impl Ecs {
    pub async fn create_auto_snapshot_policy(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<CreateAutoSnapshotPolicyResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let name = p.opt_str("AutoSnapshotPolicyName").map(str::to_owned);
        name.as_deref().map(check_name).transpose()?;
        p.required_str("TimePoints")?;
        p.required_str("RepeatWeekdays")?;
        p.required_str("RetentionDays")?;
        let s = schedule_params(&p)?;
        let enable_copy = p.opt_bool("EnableCrossRegionCopy")?.unwrap_or(false);
        let targets = target_copy_regions(&p)?;
        let copied = copied_retention(&p)?;
        check_association(&p)?;
        let tags = validate::tags(&p)?;
        validate::dry_run(&p)?;
        self.store
            .call(move |store| {
                store.write(|tx| {
                    let account = ctx.caller.account_id;
                    let id = store.scope(account).register(tx, KIND, "sp", &region.id, &region.id_code)?;
                    let at = now();
                    let row = Policy {
                        id,
                        account_id: account,
                        region_id: region.id.clone(),
                        name: name.unwrap_or_default(),
                        time_points: s.time_points.unwrap_or_default(),
                        repeat_weekdays: s.weekdays.unwrap_or_default(),
                        retention_days: s.retention.flatten(),
                        enable_cross_region_copy: enable_copy,
                        target_copy_regions: targets.unwrap_or_default(),
                        copied_retention_days: copied.flatten(),
                        // A new policy does not fire for the past.
                        checked_at: at.clone(),
                        created_at: at,
                    };
                    policy::create(tx, &row, MAX_POLICIES).map_err(|e| match e {
                        CreateError::QuotaExceeded { max, held } => ApiError::new(
                            403,
                            "QuotaExceed.AutoSnapshotPolicy",
                            "The number of automatic snapshot policies exceeds the quota.",
                        )
                        .recommend(format!("this account may hold {max} policies in {} and holds {held}", region.id)),
                        CreateError::Meta(e) => e.into(),
                    })?;
                    tag::set_tags(tx, &row.id, &tags)?;
                    Ok(CreateAutoSnapshotPolicyResponse { auto_snapshot_policy_id: row.id })
                })
            })
            .await
    }

    pub async fn modify_auto_snapshot_policy_ex(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("AutoSnapshotPolicyId")?.to_owned();
        let name = p.opt_str("AutoSnapshotPolicyName").map(str::to_owned);
        name.as_deref().map(check_name).transpose()?;
        let s = schedule_params(&p)?;
        let enable_copy = p.opt_bool("EnableCrossRegionCopy")?;
        let targets = target_copy_regions(&p)?;
        let copied = copied_retention(&p)?;
        validate::dry_run(&p)?;
        self.store
            .write_async(move |tx| {
                let mut row = get_policy(tx, ctx.caller.account_id, &region, &id)?;
                let rescheduled = s.time_points.is_some() || s.weekdays.is_some();
                row.name = name.unwrap_or(row.name);
                row.time_points = s.time_points.unwrap_or(row.time_points);
                row.repeat_weekdays = s.weekdays.unwrap_or(row.repeat_weekdays);
                row.retention_days = s.retention.unwrap_or(row.retention_days);
                row.enable_cross_region_copy = enable_copy.unwrap_or(row.enable_cross_region_copy);
                row.target_copy_regions = targets.unwrap_or(row.target_copy_regions);
                row.copied_retention_days = copied.unwrap_or(row.copied_retention_days);
                policy::update(tx, &row)?;
                if rescheduled {
                    // A new schedule starts now: its time points already past never fire.
                    policy::set_checked(tx, &row.id, &now())?;
                }
                Ok(Empty {})
            })
            .await
    }

    pub async fn delete_auto_snapshot_policy(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("AutoSnapshotPolicyId")?.to_owned();
        validate::dry_run(&p)?;
        self.store
            .write_async(move |tx| {
                let row = get_policy(tx, ctx.caller.account_id, &region, &id)?;
                policy::delete(tx, &row.id)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn apply_auto_snapshot_policy(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.required_str("AutoSnapshotPolicyId")?.to_owned();
        let ids = disk_ids(&p)?;
        validate::dry_run(&p)?;
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                let row = get_policy(tx, account, &region, &id)?;
                check_disks(tx, account, &region, &ids)?;
                policy::apply(tx, &row.id, &ids, &now())?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn cancel_auto_snapshot_policy(self: Arc<Self>, ctx: Ctx, p: Params) -> Result<Empty, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let id = p.opt_str("AutoSnapshotPolicyId").map(str::to_owned);
        let ids = disk_ids(&p)?;
        validate::dry_run(&p)?;
        self.store
            .write_async(move |tx| {
                let account = ctx.caller.account_id;
                check_disks(tx, account, &region, &ids)?;
                let ids = match id {
                    // Only the disks that follow that policy stop following it.
                    Some(id) => {
                        let row = get_policy(tx, account, &region, &id)?;
                        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                        let following = policy::policies_of_disks(tx, &refs)?;
                        ids.into_iter().filter(|d| following.get(d) == Some(&row.id)).collect()
                    }
                    None => ids,
                };
                policy::cancel(tx, &ids)?;
                Ok(Empty {})
            })
            .await
    }

    pub async fn describe_auto_snapshot_policy_ex(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeAutoSnapshotPolicyExResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.id.clone();
        let page = Page::from_params(&p, 10, 100)?;
        let tags = validate::tag_filter(&p)?;
        validate::dry_run(&p)?;
        self.store
            .read_async(move |tx| {
                let tag_args: Vec<(&str, Option<&str>)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                let f = Filter::owned(ctx.caller.account_id, &region)
                    .eq("id", p.opt_str("AutoSnapshotPolicyId"))
                    .eq("name", p.opt_str("AutoSnapshotPolicyName"))
                    .tags(&tag_args);
                let (rows, total) = policy::list(tx, &f, page.offset(), page.limit())?;
                let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                let counts = policy::disk_counts(tx, &ids)?;
                let mut all_tags = tag::tags_of(tx, &ids)?;
                let items = rows
                    .into_iter()
                    .map(|r| {
                        let n = counts.get(&r.id).copied().unwrap_or(0);
                        let t = all_tags.remove(&r.id).unwrap_or_default();
                        PolicyItem::new(r, n, t.into_iter().collect())
                    })
                    .collect();
                Ok(DescribeAutoSnapshotPolicyExResponse {
                    paging: page.info(total),
                    auto_snapshot_policies: AutoSnapshotPolicies { auto_snapshot_policy: items },
                })
            })
            .await
    }
}
