//! Cloud disks (table `disks`), the host's progress on their volumes (table `disk_volumes`:
//! the size the host last reported each volume at; no row before it exists), and the volumes
//! of deleted disks the host has still to delete (table `disk_volume_deletions`).
//!
//! A disk row is the API's view (status, size, attachment); what the host has made is kept
//! apart, so the host's work never rewrites a row the API decided. The host's status reports
//! are compare-and-sets ([`advance`]), so a report never overwrites what the API changed
//! meanwhile.

use crate::filter::Filter;
use crate::query::{all, page};
use crate::resource::forget_resource;
use crate::status::{column, status_enum};
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

pub use feitian_agent_api::DiskStatus;

status_enum! {
    /// What a disk is to its instance (`DescribeDisks`' `Type`).
    pub enum DiskType as "disk type" {
        System = "system",
        Data = "data",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub zone_id: String,
    /// Empty when the disk is not attached.
    pub instance_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub size_gib: i64,
    pub disk_type: DiskType,
    /// Empty when the disk is not attached.
    pub device: String,
    /// The image a system disk was made from (its volume's parent).
    pub image_id: String,
    pub status: DiskStatus,
    pub delete_with_instance: bool,
    pub created_at: String,
    /// `PL0`…`PL3` for `cloud_essd`, else empty.
    pub performance_level: String,
    pub portable: bool,
    pub delete_auto_snapshot: bool,
    pub enable_auto_snapshot: bool,
    pub attached_at: String,
    pub detached_at: String,
}

const DISK_COLS: &str = "id, account_id, region_id, zone_id, instance_id, name, description, category, size_gib, disk_type, device, image_id, status, delete_with_instance, created_at, performance_level, portable, delete_auto_snapshot, enable_auto_snapshot, attached_at, detached_at";

fn disk_row(r: &Row<'_>) -> rusqlite::Result<Disk> {
    Ok(Disk {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        zone_id: r.get(3)?,
        instance_id: r.get(4)?,
        name: r.get(5)?,
        description: r.get(6)?,
        category: r.get(7)?,
        size_gib: r.get(8)?,
        disk_type: r.get(9)?,
        device: r.get(10)?,
        image_id: r.get(11)?,
        status: column(r, 12, "disk status", DiskStatus::parse)?,
        delete_with_instance: r.get(13)?,
        created_at: r.get(14)?,
        performance_level: r.get(15)?,
        portable: r.get(16)?,
        delete_auto_snapshot: r.get(17)?,
        enable_auto_snapshot: r.get(18)?,
        attached_at: r.get(19)?,
        detached_at: r.get(20)?,
    })
}

pub fn insert_disk(tx: &Transaction<'_>, d: &Disk) -> Result<(), MetaError> {
    tx.execute(
        &format!(
            "INSERT INTO disks ({DISK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ),
        params![
            d.id,
            d.account_id as i64,
            d.region_id,
            d.zone_id,
            d.instance_id,
            d.name,
            d.description,
            d.category,
            d.size_gib,
            d.disk_type,
            d.device,
            d.image_id,
            d.status.as_str(),
            d.delete_with_instance,
            d.created_at,
            d.performance_level,
            d.portable,
            d.delete_auto_snapshot,
            d.enable_auto_snapshot,
            d.attached_at,
            d.detached_at,
        ],
    )?;
    Ok(())
}

/// Writes back what the API may change of a disk (everything but its identity and owner).
pub fn update_disk(tx: &Transaction<'_>, d: &Disk) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE disks SET instance_id = ?2, name = ?3, description = ?4, size_gib = ?5, device = ?6, status = ?7,
            delete_with_instance = ?8, delete_auto_snapshot = ?9, enable_auto_snapshot = ?10, attached_at = ?11,
            detached_at = ?12
         WHERE id = ?1",
        params![
            d.id,
            d.instance_id,
            d.name,
            d.description,
            d.size_gib,
            d.device,
            d.status.as_str(),
            d.delete_with_instance,
            d.delete_auto_snapshot,
            d.enable_auto_snapshot,
            d.attached_at,
            d.detached_at,
        ],
    )?;
    Ok(())
}

/// An account's disk, by id.
pub fn get_disk(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Disk>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {DISK_COLS} FROM disks WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            disk_row,
        )
        .optional()?)
}

/// A disk whoever owns it (for the host's reports).
pub fn get_disk_any_owner(tx: &Transaction<'_>, id: &str) -> Result<Option<Disk>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {DISK_COLS} FROM disks WHERE id = ?1"), [id], disk_row).optional()?)
}

pub fn disks_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<Disk>, MetaError> {
    all(tx, &format!("SELECT {DISK_COLS} FROM disks WHERE instance_id = ?1 ORDER BY device"), [instance_id], disk_row)
}

pub fn list_disks(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Disk>, u64), MetaError> {
    page(tx, "disks", DISK_COLS, f, offset, limit, disk_row)
}

/// GiB of an account's disks in a region, every category together (the `disk_capacity_gib`
/// quota).
pub fn capacity_used_gib(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let gib: i64 = tx.query_row(
        "SELECT COALESCE(SUM(size_gib), 0) FROM disks WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(gib.max(0) as u64)
}

/// How many disks an account holds in a region (the `disks` quota).
pub fn count_disks(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM disks WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

pub fn set_disk_status_for_instance(
    tx: &Transaction<'_>,
    instance_id: &str,
    status: DiskStatus,
) -> Result<(), MetaError> {
    tx.execute("UPDATE disks SET status = ?2 WHERE instance_id = ?1", params![instance_id, status.as_str()])?;
    Ok(())
}

/// Deletes a disk's row now and leaves its volume for the host to delete. Its snapshots
/// stay, but for its automatic ones when it says `DeleteAutoSnapshot`.
pub fn delete_disk(tx: &Transaction<'_>, id: &str, at: &str) -> Result<(), MetaError> {
    let auto: Option<bool> =
        tx.query_row("SELECT delete_auto_snapshot FROM disks WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    if auto == Some(true) {
        crate::snapshot::delete_auto_of_disk(tx, id, at)?;
    }
    crate::disk_restore::forget_disk(tx, id, at)?;
    tx.execute("DELETE FROM disks WHERE id = ?1", [id])?;
    tx.execute("DELETE FROM disk_volumes WHERE disk_id = ?1", [id])?;
    crate::auto_snapshot_policy::forget_disk(tx, id)?;
    forget_resource(tx, id)?;
    tx.execute(
        "INSERT INTO disk_volume_deletions (volume, deleted_at) VALUES (?1, ?2) ON CONFLICT (volume) DO NOTHING",
        params![id, at],
    )?;
    Ok(())
}

/// What becomes of an instance's disks when it is deleted: those that go with it are deleted
/// (their volumes queued for the host), the others detached and `Available`.
pub(crate) fn release_disks_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<(), MetaError> {
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let at = at.as_str();
    for d in disks_of_instance(tx, instance_id)? {
        if d.delete_with_instance {
            delete_disk(tx, &d.id, at)?;
        } else {
            tx.execute(
                "UPDATE disks SET instance_id = '', device = '', status = ?2, detached_at = ?3 WHERE id = ?1",
                params![d.id, DiskStatus::Available.as_str(), at],
            )?;
        }
    }
    Ok(())
}

// --- the host's side ------------------------------------------------------------------------

/// Disks the host has work on, with the size of their volume (0: not made yet): a
/// transitional status, or a volume not of the disk's size.
pub fn disks_to_reconcile(tx: &Transaction<'_>) -> Result<Vec<(Disk, u64)>, MetaError> {
    let cols: Vec<String> = DISK_COLS.split(", ").map(|c| format!("d.{c}")).collect();
    all(
        tx,
        &format!(
            "SELECT {}, COALESCE(v.gib, 0) FROM disks d LEFT JOIN disk_volumes v ON v.disk_id = d.id
             WHERE d.status IN ('Creating', 'Attaching', 'Detaching', 'ReIniting') OR COALESCE(v.gib, 0) < d.size_gib
             ORDER BY d.created_at, d.id",
            cols.join(", ")
        ),
        [],
        |r| Ok((disk_row(r)?, r.get::<_, i64>(21)?.max(0) as u64)),
    )
}

/// Volumes of deleted disks the host has still to delete.
pub fn volumes_to_delete(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT volume FROM disk_volume_deletions ORDER BY deleted_at, volume", [], |r| r.get(0))
}

/// The host deleted the volume.
pub fn volume_deleted(tx: &Transaction<'_>, volume: &str) -> Result<bool, MetaError> {
    Ok(tx.execute("DELETE FROM disk_volume_deletions WHERE volume = ?1", [volume])? == 1)
}

/// The host's volume for the disk exists now at `gib` (a report for a deleted disk changes
/// nothing; sizes only grow).
pub fn volume_ready(tx: &Transaction<'_>, id: &str, gib: u64) -> Result<bool, MetaError> {
    let gib = i64::try_from(gib).map_err(|_| MetaError::Invalid(format!("{gib} GiB is too large")))?;
    Ok(tx.execute(
        "INSERT INTO disk_volumes (disk_id, gib) SELECT id, ?2 FROM disks WHERE id = ?1
         ON CONFLICT (disk_id) DO UPDATE SET gib = MAX(disk_volumes.gib, excluded.gib)",
        params![id, gib],
    )? == 1)
}

/// The host's report: moves the status from `from` to `to` only if nobody changed it
/// meanwhile; `true` if it moved. Leaving `Detaching` ends the attachment (at `at`); reaching
/// `In_use` stamps the attach time.
pub fn advance(tx: &Transaction<'_>, id: &str, from: DiskStatus, to: DiskStatus, at: &str) -> Result<bool, MetaError> {
    let n = tx.execute(
        "UPDATE disks SET status = ?3,
            instance_id = CASE WHEN ?2 = 'Detaching' THEN '' ELSE instance_id END,
            device = CASE WHEN ?2 = 'Detaching' THEN '' ELSE device END,
            detached_at = CASE WHEN ?2 = 'Detaching' THEN ?4 ELSE detached_at END,
            attached_at = CASE WHEN ?2 = 'Attaching' THEN ?4 ELSE attached_at END
         WHERE id = ?1 AND status = ?2",
        params![id, from.as_str(), to.as_str(), at],
    )?;
    Ok(n == 1)
}

/// Whether an instance has a disk whose volume is not made yet (it cannot start before).
pub fn instance_waits_for_volumes(tx: &Transaction<'_>, instance_id: &str) -> Result<bool, MetaError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM disks d LEFT JOIN disk_volumes v ON v.disk_id = d.id
             WHERE d.instance_id = ?1 AND v.disk_id IS NULL LIMIT 1",
            [instance_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{assert_sql_round_trips, assert_text_round_trips};
    use crate::testing;

    #[test]
    fn disk_statuses_round_trip() {
        assert_text_round_trips(DiskStatus::ALL, DiskStatus::as_str, DiskStatus::parse);
        assert_sql_round_trips(DiskType::ALL, DiskType::as_str, DiskType::parse);
    }

    fn disk(s: &crate::Store, account: u64, n: usize, status: DiskStatus) -> Disk {
        Disk {
            id: testing::register(s, account, "disk", "d"),
            account_id: account,
            region_id: testing::REGION.into(),
            zone_id: testing::ZONE.into(),
            instance_id: format!("i-{n}"),
            name: String::new(),
            description: String::new(),
            category: "cloud_essd".into(),
            size_gib: 20,
            disk_type: if n.is_multiple_of(2) { DiskType::System } else { DiskType::Data },
            device: "/dev/xvda".into(),
            image_id: "img".into(),
            status,
            delete_with_instance: n.is_multiple_of(2),
            created_at: testing::CREATED.into(),
            performance_level: "PL1".into(),
            portable: !n.is_multiple_of(2),
            delete_auto_snapshot: true,
            enable_auto_snapshot: false,
            attached_at: String::new(),
            detached_at: String::new(),
        }
    }

    #[test]
    fn a_disk_row_keeps_its_status() {
        let (s, account) = testing::store();
        for (n, &status) in DiskStatus::ALL.iter().enumerate() {
            let d = disk(&s, account, n, status);
            s.write(|tx| insert_disk(tx, &d)).unwrap();
            assert_eq!(s.read(|tx| disks_of_instance(tx, &d.instance_id)).unwrap(), vec![d.clone()]);
            assert_eq!(s.read(|tx| get_disk(tx, account, &d.id)).unwrap(), Some(d.clone()));
            assert_eq!(s.read(|tx| get_disk(tx, account + 1, &d.id)).unwrap(), None, "another account's");
            s.write(|tx| set_disk_status_for_instance(tx, &d.instance_id, DiskStatus::Detaching)).unwrap();
            assert_eq!(s.read(|tx| disks_of_instance(tx, &d.instance_id)).unwrap()[0].status, DiskStatus::Detaching);
            s.write(|tx| release_disks_of_instance(tx, &d.instance_id)).unwrap();
            let left = s
                .read(|tx| list_disks(tx, &Filter::owned(account, testing::REGION).eq("id", Some(&d.id)), 0, 1))
                .unwrap()
                .0;
            let queued = s.read(volumes_to_delete).unwrap();
            match d.delete_with_instance {
                true => {
                    assert!(left.is_empty());
                    assert!(queued.contains(&d.id), "its volume is left for the host to delete");
                }
                false => {
                    assert_eq!(
                        (left[0].status, left[0].instance_id.as_str(), left[0].device.as_str()),
                        (DiskStatus::Available, "", "")
                    );
                    assert!(!queued.contains(&d.id));
                }
            }
        }
    }

    #[test]
    fn host_reports_are_compare_and_set() {
        let (s, account) = testing::store();
        let d = disk(&s, account, 1, DiskStatus::Detaching);
        s.write(|tx| insert_disk(tx, &d)).unwrap();
        assert_eq!(s.read(disks_to_reconcile).unwrap().len(), 1);
        assert!(s.read(|tx| instance_waits_for_volumes(tx, "i-1")).unwrap());
        assert!(!s.write(|tx| advance(tx, &d.id, DiskStatus::Attaching, DiskStatus::InUse, "t")).unwrap());
        assert!(s.write(|tx| advance(tx, &d.id, DiskStatus::Detaching, DiskStatus::Available, "t")).unwrap());
        let now = s.read(|tx| get_disk(tx, account, &d.id)).unwrap().unwrap();
        assert_eq!((now.instance_id.as_str(), now.device.as_str(), now.detached_at.as_str()), ("", "", "t"));
        // Still listed: its volume is not made.
        assert_eq!(s.read(disks_to_reconcile).unwrap().len(), 1);
        assert!(s.write(|tx| volume_ready(tx, &d.id, 20)).unwrap());
        assert!(s.write(|tx| volume_ready(tx, &d.id, 10)).unwrap());
        assert_eq!(s.read(disks_to_reconcile).unwrap(), vec![], "never shrinks");
        s.write(|tx| update_disk(tx, &Disk { size_gib: 30, status: DiskStatus::Available, ..now.clone() })).unwrap();
        assert_eq!(s.read(disks_to_reconcile).unwrap()[0].1, 20, "a grown disk's volume is behind");
        s.write(|tx| delete_disk(tx, &d.id, "t")).unwrap();
        assert!(!s.write(|tx| volume_ready(tx, &d.id, 20)).unwrap(), "a deleted disk has no volume to report");
        assert_eq!(s.read(volumes_to_delete).unwrap(), vec![d.id.clone()]);
        assert!(s.write(|tx| volume_deleted(tx, &d.id)).unwrap());
        assert!(!s.write(|tx| volume_deleted(tx, &d.id)).unwrap());
    }
}
