//! The scheduler of automatic snapshot policies: at each tick it takes the snapshots the
//! policies call for and deletes the snapshots whose retention is over. The clock is an
//! argument ([`tick`]) or an injected function ([`run`]), so tests drive a week in
//! milliseconds (issue 16, done-when 2).
//!
//! A tick, for each policy, looks at the window since its previous tick (`checked_at`, the
//! policy's creation at first, so a new policy never fires for the past) and asks
//! [`Schedule::last_firing`] for the newest time point in it. If there is one, each disk the
//! policy applies to gets one `auto` snapshot (named by [`auto_snapshot_name`], with the
//! policy's `RetentionDays`), recorded as `CreateSnapshot` records one, except that a disk is
//! skipped, as on Alibaba Cloud, when its automatic snapshots are disabled
//! (`EnableAutoSnapshot=false`), when it cannot be snapshotted now (never attached, or in a
//! transitional status), or when its previous snapshot is still being made. Then the window
//! closes (`checked_at` = now), in the same transaction as the snapshots, so a crash never
//! fires a time point twice nor loses one. A window with no time point in it stays open (the
//! row is not written): the next tick's longer window holds the same time points, so the
//! answer is the same, and a quiet scheduler writes nothing (half a minute's churn on every
//! policy otherwise). Changing a policy's schedule closes its window at the change
//! (`ModifyAutoSnapshotPolicyEx`), so a new time point never fires for the past.
//!
//! Expiry: every finished snapshot with a retention (the policies', and a user's
//! `CreateSnapshot` with `RetentionDays`, as on Alibaba Cloud) is deleted once `RetentionDays`
//! have passed since it was recorded (the store's record time, which the scheduler's clock
//! wrote for its own snapshots), through `snapshot::delete`, so its block references are
//! dropped. A snapshot a disk or an image was made from is kept.

use crate::snapshot_schedule::{auto_snapshot_name, expired, parse_time_points, parse_weekdays, Schedule};
use crate::snapshots::check_disk;
use crate::Ecs;
use chrono::{DateTime, Utc};
use feitian_meta::auto_snapshot_policy::{self as policy, Policy};
use feitian_meta::snapshot::{self, CreateError, NewSnapshot, SnapshotType};
use feitian_meta::{disk, MetaError, Store, Transaction};
use feitian_region::Catalog;
use std::sync::Arc;
use std::time::Duration;

/// How often [`run`] ticks: time points are whole hours, so half a minute is prompt enough.
pub const TICK: Duration = Duration::from_secs(30);

/// A clock the scheduler reads (the system's in production, a test's otherwise).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system's clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// `(disk, snapshot)` for each snapshot taken.
    pub created: Vec<(String, String)>,
    /// Disks skipped because their previous snapshot is still progressing.
    pub skipped_busy: Vec<String>,
    /// Disks skipped because automatic snapshots are disabled for them, they cannot be
    /// snapshotted now, or the snapshot quota is reached.
    pub skipped_other: Vec<String>,
    /// Snapshots deleted because their retention was over.
    pub expired: Vec<String>,
}

/// How the store writes times.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The policy's schedule, as stored (written by the API after validation; a row that does
/// not parse is logged and never fires).
fn schedule_of(p: &Policy) -> Option<Schedule> {
    match (parse_time_points(&p.time_points), parse_weekdays(&p.repeat_weekdays)) {
        (Ok(hours), Ok(weekdays)) => Some(Schedule { hours, weekdays }),
        _ => {
            tracing::warn!(policy = %p.id, "an automatic snapshot policy's schedule does not parse; it does not fire");
            None
        }
    }
}

/// One tick at `now`: snapshots for the policies that fire, then expiry.
pub fn tick(store: &Store, catalog: &Catalog, now: DateTime<Utc>) -> Result<TickReport, MetaError> {
    let mut report = TickReport::default();
    for listed in store.read(policy::all_policies)? {
        store.write(|tx| {
            // Read again in the transaction: the policy may have changed or gone meanwhile.
            match policy::get(tx, listed.account_id, &listed.id)? {
                Some(p) => fire(tx, store, catalog, &p, now, &mut report),
                None => Ok(()),
            }
        })?;
    }
    store.write(|tx| expire(tx, now, &mut report))?;
    Ok(report)
}

/// One policy's window `(checked_at, now]`, in the caller's transaction.
fn fire(
    tx: &Transaction<'_>,
    store: &Store,
    catalog: &Catalog,
    p: &Policy,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> Result<(), MetaError> {
    let checked = parse_time(&p.checked_at).unwrap_or(now);
    if now <= checked {
        // The clock went back (or stood still): never reopen a window already looked at.
        return Ok(());
    }
    let at = stamp(now);
    if let Some(firing) = schedule_of(p).and_then(|s| s.last_firing(checked, now)) {
        let code = catalog.region(&p.region_id).map(|r| r.id_code.clone()).unwrap_or_default();
        for disk_id in policy::disks_of(tx, &p.id)? {
            let Some(d) = disk::get_disk_any_owner(tx, &disk_id)? else { continue };
            if !d.enable_auto_snapshot || check_disk(&d).is_err() {
                report.skipped_other.push(disk_id);
                continue;
            }
            if snapshot::progressing_of_disk(tx, &d.id)?.is_some() {
                report.skipped_busy.push(disk_id);
                continue;
            }
            let id = store.scope(d.account_id).register(tx, "snapshot", "s", &d.region_id, &code)?;
            let new = NewSnapshot {
                id,
                disk: &d,
                name: auto_snapshot_name(firing),
                description: String::new(),
                snapshot_type: SnapshotType::Auto,
                retention_days: p.retention_days,
                at: at.clone(),
            };
            match snapshot::create(tx, &store.quotas(), &new) {
                Ok(s) => report.created.push((disk_id, s.id)),
                Err(CreateError::DiskBusy(_)) => {
                    forget_id(tx, &new.id)?;
                    report.skipped_busy.push(disk_id);
                }
                Err(CreateError::QuotaExceeded { max, held }) => {
                    forget_id(tx, &new.id)?;
                    tracing::info!(disk = %disk_id, policy = %p.id, max, held, "snapshot quota reached: the automatic snapshot is skipped");
                    report.skipped_other.push(disk_id);
                }
                Err(CreateError::Meta(e)) => return Err(e),
            }
        }
        policy::set_checked(tx, &p.id, &at)?;
    }
    Ok(())
}

/// An id registered for a snapshot that was not made.
fn forget_id(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    feitian_meta::resource::forget_resource(tx, id)
}

/// Deletes the snapshots whose retention is over at `now`.
fn expire(tx: &Transaction<'_>, now: DateTime<Utc>, report: &mut TickReport) -> Result<(), MetaError> {
    let at = stamp(now);
    for s in snapshot::retained(tx)? {
        let Some(created) = parse_time(&s.created_at) else { continue };
        let days = u32::try_from(s.retention_days).unwrap_or(u32::MAX);
        if expired(created, Some(days), now) && snapshot::delete(tx, &s.id, &at)? {
            report.expired.push(s.id);
        }
    }
    Ok(())
}

/// Ticks every [`TICK`] with `clock`, and nudges the hosts when snapshots were taken (their
/// reconcilers pin and upload them). Runs until the task is dropped.
pub async fn run(ecs: Arc<Ecs>, clock: Clock) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = clock();
        let catalog = ecs.catalog.clone();
        match ecs.store.call(move |store| tick(store, &catalog, now)).await {
            Ok(report) => {
                if !report.created.is_empty() {
                    tracing::info!(snapshots = report.created.len(), "automatic snapshots taken");
                    ecs.nudges.snapshots_changed();
                }
                if !report.expired.is_empty() {
                    tracing::info!(snapshots = report.expired.len(), "expired snapshots deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the automatic snapshot scheduler's tick failed; it tries again"),
        }
    }
}
