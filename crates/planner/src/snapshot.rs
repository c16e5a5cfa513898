//! Snapshots: the snapshot reconciler's work list (every `progressing` snapshot with its
//! volume, pin and base), the pins the host must release, and how the host's snapshot
//! reports are recorded (docs/snapshots.md). Each report is a compare-and-set in the store
//! (`feitian_meta::snapshot`): a report about a deleted snapshot, or one no longer
//! `progressing`, changes nothing. A snapshot's end moves the images made of it on
//! (`feitian_meta::image::settle`) in the same transaction.

use feitian_agent_api::snapshot::{PinRef, SnapshotTarget};
use feitian_agent_api::Report;
use feitian_meta::image;
use feitian_meta::snapshot::{self as db, Commit};
use feitian_meta::{MetaError, Transaction};

/// Snapshots the host has work on.
pub fn to_reconcile(tx: &Transaction<'_>) -> Result<Vec<SnapshotTarget>, MetaError> {
    db::to_reconcile(tx)
}

/// Pins the host must release.
pub fn pins_to_release(tx: &Transaction<'_>) -> Result<Vec<PinRef>, MetaError> {
    db::pins_to_release(tx)
}

/// Records a snapshot report in the caller's transaction (`at`: the control plane's clock,
/// which stamps a pin's `CreationTime`); `true` if it changed anything, `None` for a report
/// that is not about snapshots.
pub fn record(tx: &Transaction<'_>, report: &Report, at: &str) -> Result<Option<bool>, MetaError> {
    Ok(Some(match report {
        Report::SnapshotPinned { id, pin } => db::pinned(tx, id, *pin, at)?,
        Report::SnapshotProgress { id, percent } => db::progress(tx, id, *percent)?,
        Report::SnapshotClaimed { id, blocks } => db::claim(tx, id, blocks)?,
        Report::SnapshotUploaded(upload) => match db::commit(tx, upload, at)? {
            Commit::Done => {
                // An image waiting for this snapshot may be complete now.
                image::settle(tx, &upload.id, at)?;
                true
            }
            Commit::BaseGone => {
                // The base's row was cleared: the next pass uploads in full.
                tracing::info!(snapshot = %upload.id, "a snapshot's base was deleted before its commit: uploading it in full");
                true
            }
            Commit::BlocksBeingSwept(blocks) => {
                tracing::info!(snapshot = %upload.id, blocks = blocks.len(), "a snapshot names blocks being swept: it will be uploaded again");
                false
            }
            Commit::Gone | Commit::NotProgressing | Commit::BaseMismatch => false,
        },
        Report::SnapshotFailed { id, error } => {
            let moved = db::fail(tx, id, error, at)?;
            if moved {
                tracing::warn!(snapshot = %id, %error, "a snapshot failed");
                // An image made of it fails with it.
                image::settle(tx, id, at)?;
            }
            moved
        }
        Report::PinReleased { snapshot_id } => db::pin_released(tx, snapshot_id)?,
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use crate::Planner;
    use feitian_agent_api::snapshot::{PinInfo, PinRef, RangeBlock, SnapshotStatus, SnapshotTarget, SnapshotUpload};
    use feitian_agent_api::{ControlPlane, DiskStatus, Report};
    use feitian_meta::disk::{insert_disk, Disk, DiskType};
    use feitian_meta::quota::Quotas;
    use feitian_meta::snapshot::{self as db, NewSnapshot, SnapshotType};
    use feitian_meta::{MetaError, Store};

    const REGION: &str = "cn-hangzhou";

    /// A store with a disk and a `progressing` snapshot of it: (store, account, disk, snapshot).
    fn setup() -> (Store, u64, String, String) {
        let store = Store::open_in_memory().unwrap();
        let account = store.create_account("a").unwrap().id;
        let (disk_id, snap_id) = store
            .write(|tx| {
                let scope = store.scope(account);
                let disk_id = scope.register(tx, "disk", "d", REGION, "bp")?;
                let d = Disk {
                    id: disk_id.clone(),
                    account_id: account,
                    region_id: REGION.into(),
                    zone_id: "cn-hangzhou-i".into(),
                    instance_id: String::new(),
                    name: String::new(),
                    description: String::new(),
                    category: "cloud_essd".into(),
                    size_gib: 20,
                    disk_type: DiskType::Data,
                    device: String::new(),
                    image_id: String::new(),
                    status: DiskStatus::Available,
                    delete_with_instance: false,
                    created_at: "t".into(),
                    performance_level: "PL1".into(),
                    portable: true,
                    delete_auto_snapshot: true,
                    enable_auto_snapshot: true,
                    attached_at: "t".into(),
                    detached_at: "t".into(),
                };
                insert_disk(tx, &d)?;
                let id = scope.register(tx, "snapshot", "s", REGION, "bp")?;
                let new = NewSnapshot {
                    id,
                    disk: &d,
                    name: String::new(),
                    description: String::new(),
                    snapshot_type: SnapshotType::User,
                    retention_days: None,
                    at: "created".into(),
                };
                let s = db::create(tx, &Quotas::default(), &new).map_err(|e| MetaError::Invalid(e.to_string()))?;
                Ok::<_, MetaError>((disk_id, s.id))
            })
            .unwrap();
        (store, account, disk_id, snap_id)
    }

    fn status(store: &Store, account: u64, id: &str) -> Option<(SnapshotStatus, i64)> {
        store.read(|tx| db::get(tx, account, id)).unwrap().map(|s| (s.status, s.progress))
    }

    #[tokio::test]
    async fn the_five_reports_move_a_snapshot_through_its_life() {
        let (store, account, disk, id) = setup();
        let planner = Planner::new(store.clone());
        let pin = PinInfo { next_seq: 7, size_bytes: 20 << 30 };
        assert_eq!(
            planner.snapshots_to_reconcile().await.unwrap(),
            vec![SnapshotTarget { id: id.clone(), volume: disk.clone(), pinned: None, base: None }]
        );
        assert!(planner.report(Report::SnapshotPinned { id: id.clone(), pin }).await.unwrap());
        assert!(!planner.report(Report::SnapshotPinned { id: id.clone(), pin }).await.unwrap(), "pinned once");
        let row = store.read(|tx| db::get(tx, account, &id)).unwrap().unwrap();
        assert_ne!(row.creation_time, "created", "CreationTime is the pin's time, on the control plane's clock");
        assert_eq!(planner.snapshots_to_reconcile().await.unwrap()[0].pinned, Some(pin));
        assert!(planner.report(Report::SnapshotProgress { id: id.clone(), percent: 50 }).await.unwrap());
        assert_eq!(status(&store, account, &id), Some((SnapshotStatus::Progressing, 50)));
        let upload = SnapshotUpload {
            id: id.clone(),
            base: None,
            ranges: vec![RangeBlock { range: 0, block: Some("ab".repeat(32)) }],
            read_bytes: 1 << 20,
            stored_bytes: 1 << 20,
        };
        assert!(planner.report(Report::SnapshotUploaded(upload.clone())).await.unwrap());
        assert_eq!(status(&store, account, &id), Some((SnapshotStatus::Accomplished, 100)));
        assert!(!planner.report(Report::SnapshotUploaded(upload)).await.unwrap(), "committed once");
        assert!(!planner.report(Report::SnapshotFailed { id: id.clone(), error: "late".into() }).await.unwrap());
        assert_eq!(planner.snapshots_to_reconcile().await.unwrap(), vec![]);
        assert_eq!(
            planner.pins_to_release().await.unwrap(),
            vec![PinRef { volume: disk.clone(), snapshot_id: id.clone() }]
        );
        assert!(planner.report(Report::PinReleased { snapshot_id: id.clone() }).await.unwrap());
        assert!(!planner.report(Report::PinReleased { snapshot_id: id.clone() }).await.unwrap());
        assert_eq!(planner.pins_to_release().await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_failure_releases_the_pin_and_reports_on_a_deleted_snapshot_change_nothing() {
        let (store, account, disk, id) = setup();
        let planner = Planner::new(store.clone());
        assert!(planner.report(Report::SnapshotFailed { id: id.clone(), error: "volume gone".into() }).await.unwrap());
        assert_eq!(status(&store, account, &id), Some((SnapshotStatus::Failed, 0)));
        assert_eq!(planner.pins_to_release().await.unwrap(), vec![PinRef { volume: disk, snapshot_id: id.clone() }]);
        store.write(|tx| db::delete(tx, &id, "t")).unwrap();
        let pin = PinInfo { next_seq: 1, size_bytes: 1 };
        assert!(!planner.report(Report::SnapshotPinned { id: id.clone(), pin }).await.unwrap());
        assert!(!planner.report(Report::SnapshotProgress { id: id.clone(), percent: 5 }).await.unwrap());
        let upload = SnapshotUpload { id: id.clone(), base: None, ranges: vec![], read_bytes: 0, stored_bytes: 0 };
        assert!(!planner.report(Report::SnapshotUploaded(upload)).await.unwrap());
        assert!(!planner.report(Report::SnapshotFailed { id: id.clone(), error: "x".into() }).await.unwrap());
        assert_eq!(status(&store, account, &id), None);
    }
}
