//! Disks made from snapshots (docs/snapshots.md guarantee 6): the source snapshot of a disk
//! (`disk_sources`), and what its new volume is filled with (`disk_restores`: the snapshot's
//! manifest copied when the disk is created, one reference per row on its block). The
//! references keep every block the fill reads, whatever happens to the snapshot meanwhile;
//! they are dropped (a block left with none is dead, for the sweeper) when the host reports
//! the volume ready, or when the disk is deleted first.
//!
//! The fill is a copy: the disk's volume holds the snapshot's bytes once it is `Available`.
//! (Reading holes through to the block objects until they are written, the contract's
//! lazy restore, is not built: a disk made from a snapshot costs a read of its data first.)

use crate::snapshot::{self, Snapshot};
use crate::MetaError;
use feitian_agent_api::snapshot::RangeBlock;
use rusqlite::{params, OptionalExtension, Transaction};

/// Records that disk `disk_id` is made from `s` (accomplished): its source, its fill (the
/// manifest now) and one reference per range on the range's block; counts the disk among
/// what was made from the snapshot (`Usage`, `SnapshotCreatedDisk`).
pub fn begin(tx: &Transaction<'_>, disk_id: &str, s: &Snapshot) -> Result<(), MetaError> {
    tx.execute("INSERT INTO disk_sources (disk_id, snapshot_id) VALUES (?1, ?2)", params![disk_id, s.id])?;
    hold(tx, disk_id, s)?;
    snapshot::note_use(tx, &s.id, 1, 0)
}

/// `ResetDisk`: disk `disk_id`'s volume is made anew from `s` (one of its own snapshots,
/// accomplished): its fill becomes `s`'s manifest, held as in [`begin`] (a fill still
/// pending from before is dropped first, at `at`).
pub fn begin_reset(tx: &Transaction<'_>, disk_id: &str, s: &Snapshot, at: &str) -> Result<(), MetaError> {
    finish(tx, disk_id, at)?;
    hold(tx, disk_id, s)
}

/// The fill's rows and references.
fn hold(tx: &Transaction<'_>, disk_id: &str, s: &Snapshot) -> Result<(), MetaError> {
    for (range, hash) in snapshot::manifest(tx, &s.id)? {
        let range = i64::try_from(range).map_err(|_| MetaError::Invalid(format!("range {range} is too large")))?;
        tx.execute(
            "INSERT INTO disk_restores (disk_id, range_index, hash, snapshot_id) VALUES (?1, ?2, ?3, ?4)",
            params![disk_id, range, hash, s.id],
        )?;
        tx.execute("UPDATE snapshot_blocks SET refs = refs + 1, dead_at = NULL WHERE hash = ?1", [&hash])?;
    }
    Ok(())
}

/// The snapshot disk `disk_id` was made from, if any.
pub fn source_of(tx: &Transaction<'_>, disk_id: &str) -> Result<Option<String>, MetaError> {
    Ok(tx.query_row("SELECT snapshot_id FROM disk_sources WHERE disk_id = ?1", [disk_id], |r| r.get(0)).optional()?)
}

/// The disks made from snapshot `snapshot_id`.
pub fn disks_made_from(tx: &Transaction<'_>, snapshot_id: &str) -> Result<Vec<String>, MetaError> {
    let mut st = tx.prepare_cached("SELECT disk_id FROM disk_sources WHERE snapshot_id = ?1 ORDER BY disk_id")?;
    let rows = st.query_map([snapshot_id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

/// The snapshot disk `disk_id`'s volume is still to be filled from, if any.
pub fn pending(tx: &Transaction<'_>, disk_id: &str) -> Result<Option<String>, MetaError> {
    Ok(tx
        .query_row("SELECT snapshot_id FROM disk_restores WHERE disk_id = ?1 LIMIT 1", [disk_id], |r| r.get(0))
        .optional()?)
}

/// What disk `disk_id`'s volume is filled with, by range (empty when nothing is left).
pub fn plan(tx: &Transaction<'_>, disk_id: &str) -> Result<Vec<RangeBlock>, MetaError> {
    let mut st =
        tx.prepare_cached("SELECT range_index, hash FROM disk_restores WHERE disk_id = ?1 ORDER BY range_index")?;
    let rows = st
        .query_map([disk_id], |r| Ok(RangeBlock { range: r.get::<_, i64>(0)?.max(0) as u64, block: Some(r.get(1)?) }))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The fill is done (or the disk is gone): its references are dropped, blocks left with none
/// marked dead at `at`. Idempotent.
pub fn finish(tx: &Transaction<'_>, disk_id: &str, at: &str) -> Result<(), MetaError> {
    snapshot::drop_references(tx, snapshot::Holders::Fill, disk_id, at)
}

/// A deleted disk: its fill's references go, and so does its source (the snapshot no longer
/// counts it among the disks made from it).
pub fn forget_disk(tx: &Transaction<'_>, disk_id: &str, at: &str) -> Result<(), MetaError> {
    finish(tx, disk_id, at)?;
    if let Some(source) = source_of(tx, disk_id)? {
        snapshot::note_use(tx, &source, -1, 0)?;
        tx.execute("DELETE FROM disk_sources WHERE disk_id = ?1", [disk_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{insert_disk, Disk};
    use crate::quota::Quotas;
    use crate::snapshot::{block, commit, create, dead_blocks, delete, pinned, Commit, NewSnapshot, SnapshotType};
    use crate::testing::{self, w};
    use crate::Store;
    use feitian_agent_api::snapshot::{PinInfo, SnapshotUpload};

    fn disk(s: &Store, account: u64) -> Disk {
        let d = Disk { attached_at: testing::CREATED.into(), ..testing::data_disk(s, account) };
        w(s, |tx| insert_disk(tx, &d));
        d
    }

    fn hash(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn refs(s: &Store, c: char) -> Option<(u64, bool)> {
        s.read(|tx| block(tx, &hash(c))).unwrap().map(|b| (b.refs, b.dead_at.is_some()))
    }

    #[test]
    fn a_disk_made_from_a_snapshot_holds_its_blocks_until_filled_or_deleted() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let id = testing::register(&s, account, "snapshot", "s");
        let new = NewSnapshot {
            id,
            disk: &d,
            name: "snap".into(),
            description: String::new(),
            snapshot_type: SnapshotType::User,
            retention_days: None,
            at: "t0".into(),
        };
        let snap = s.write(|tx| create(tx, &Quotas::default(), &new)).unwrap();
        assert!(w(&s, |tx| pinned(tx, &snap.id, PinInfo { next_seq: 3, size_bytes: 20 << 30 }, "t1")));
        let upload = SnapshotUpload {
            id: snap.id.clone(),
            base: None,
            ranges: vec![
                RangeBlock { range: 0, block: Some(hash('a')) },
                RangeBlock { range: 7, block: Some(hash('b')) },
                RangeBlock { range: 9, block: Some(hash('a')) },
            ],
            read_bytes: 0,
            stored_bytes: 0,
        };
        assert_eq!(w(&s, |tx| commit(tx, &upload, "t2")), Commit::Done);
        let snap = s.read(|tx| crate::snapshot::get(tx, account, &snap.id)).unwrap().unwrap();

        let restored = disk(&s, account);
        w(&s, |tx| begin(tx, &restored.id, &snap));
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (Some((4, false)), Some((2, false))));
        assert_eq!(s.read(|tx| source_of(tx, &restored.id)).unwrap(), Some(snap.id.clone()));
        assert_eq!(s.read(|tx| disks_made_from(tx, &snap.id)).unwrap(), vec![restored.id.clone()]);
        assert_eq!(s.read(|tx| pending(tx, &restored.id)).unwrap(), Some(snap.id.clone()));
        let plan = s.read(|tx| plan(tx, &restored.id)).unwrap();
        assert_eq!(plan.iter().map(|r| r.range).collect::<Vec<_>>(), vec![0, 7, 9]);
        assert_eq!(plan[1].block, Some(hash('b')));
        let used = s.read(|tx| crate::snapshot::get(tx, account, &snap.id)).unwrap().unwrap();
        assert_eq!((used.usage.as_str(), used.disks_created), ("disk", 1));

        // The snapshot goes first: the fill still has every block.
        assert!(w(&s, |tx| delete(tx, &snap.id, "t3")));
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (Some((2, false)), Some((1, false))));
        assert!(s.read(|tx| dead_blocks(tx, 10)).unwrap().is_empty());
        // Filled: the references go, and what nothing else names is dead.
        w(&s, |tx| finish(tx, &restored.id, "t4"));
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (Some((0, true)), Some((0, true))));
        assert_eq!(s.read(|tx| pending(tx, &restored.id)).unwrap(), None);
        w(&s, |tx| finish(tx, &restored.id, "t5"));
        assert_eq!(refs(&s, 'a'), Some((0, true)), "finishing twice changes nothing");
        // Deleting the disk forgets its source.
        w(&s, |tx| crate::disk::delete_disk(tx, &restored.id, "t6"));
        assert_eq!(s.read(|tx| source_of(tx, &restored.id)).unwrap(), None);
    }
}
