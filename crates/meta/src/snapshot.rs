//! Snapshots (table `snapshots`), their manifests (`snapshot_ranges`: range → block hash),
//! the reference counts of the region's block objects (`snapshot_blocks`) and the pins the
//! host must release (`snapshot_pin_releases`). The contract is `docs/snapshots.md`; this
//! module keeps its guarantees 2 to 5 on the store's side:
//!
//! - a snapshot is recorded `progressing` at 0 % with its base (the disk's newest
//!   `accomplished` snapshot that may still be chained to), and `CreationTime` becomes the
//!   pin's time when the host reports the pin ([`pinned`]);
//! - [`commit`] is one transaction: the manifest (the base's rows overlaid with the upload's
//!   ranges), one reference per manifest row, `accomplished` at 100 %, and the pin queued for
//!   release; an upload relative to a base that is gone is refused and the base cleared, so
//!   the host uploads in full;
//! - [`delete`] removes the rows and their references in one transaction; a block whose count
//!   reaches zero is marked dead (`dead_at`) there. The sweeper deletes dead objects in three
//!   steps ([`dead_blocks`], [`begin_sweep`], [`forget_block`]); a re-reference before
//!   [`begin_sweep`] clears the mark (the block lives on), and a commit naming a block whose
//!   sweep has begun is refused until the row is forgotten (the uploader stores it again), so
//!   no count ever names a deleted object.
//! - [`claim`]: before the host looks for a block object (and skips storing one it finds),
//!   the snapshot takes a reference on it (`snapshot_claims`), held until the snapshot
//!   commits, fails or is deleted; so an object an upload found cannot be swept before its
//!   commit names it. A claim of a block being swept is refused (the host tries later).
//!
//! Every host report is a compare-and-set: a report about a deleted snapshot, or one that is
//! no longer `progressing`, changes nothing.

use crate::disk::{Disk, DiskType};
use crate::filter::Filter;
use crate::query::{all, page};
use crate::quota::{self, Quota, Quotas};
use crate::resource::forget_resource;
use crate::status::{column, status_enum};
use crate::MetaError;
use feitian_agent_api::snapshot::{
    BlockClaim, PinInfo, PinRef, SnapshotBase, SnapshotTarget, SnapshotUpload, RANGE_BYTES,
};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};

pub use feitian_agent_api::snapshot::SnapshotStatus;

status_enum! {
    /// Who made a snapshot (`SnapshotType`): a user's `CreateSnapshot` or an automatic policy.
    pub enum SnapshotType as "snapshot type" {
        Auto = "auto",
        User = "user",
    }
}

/// One snapshot row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub disk_id: String,
    pub source_disk_gib: i64,
    pub source_disk_type: DiskType,
    pub source_category: String,
    pub name: String,
    pub description: String,
    pub snapshot_type: SnapshotType,
    pub status: SnapshotStatus,
    /// 0 to 100.
    pub progress: i64,
    /// Why it failed; empty otherwise.
    pub failure: String,
    pub created_at: String,
    /// The pin's time once pinned (the API's `CreationTime`), the record time before.
    pub creation_time: String,
    pub modified_at: String,
    pub retention_days: Option<i64>,
    pub link_id: String,
    pub base: Option<SnapshotBase>,
    pub pin: Option<PinInfo>,
    pub chainable: bool,
    pub read_bytes: u64,
    pub stored_bytes: u64,
    /// `none`, `disk`, `image` or `image_disk` (what was made from it).
    pub usage: String,
    pub disks_created: u64,
    pub images_created: u64,
}

const COLS: &str = "id, account_id, region_id, disk_id, source_disk_gib, source_disk_type, source_category, name, description, snapshot_type, status, progress, failure, created_at, creation_time, modified_at, retention_days, link_id, base_id, base_next_seq, pin_next_seq, pin_size_bytes, chainable, read_bytes, stored_bytes, usage, disks_created, images_created";

fn u64_of(v: i64) -> u64 {
    v.max(0) as u64
}

fn row(r: &Row<'_>) -> rusqlite::Result<Snapshot> {
    let base_id: Option<String> = r.get(18)?;
    let base_seq: Option<i64> = r.get(19)?;
    let pin_seq: Option<i64> = r.get(20)?;
    let pin_size: Option<i64> = r.get(21)?;
    Ok(Snapshot {
        id: r.get(0)?,
        account_id: u64_of(r.get(1)?),
        region_id: r.get(2)?,
        disk_id: r.get(3)?,
        source_disk_gib: r.get(4)?,
        source_disk_type: r.get(5)?,
        source_category: r.get(6)?,
        name: r.get(7)?,
        description: r.get(8)?,
        snapshot_type: r.get(9)?,
        status: column(r, 10, "snapshot status", SnapshotStatus::parse)?,
        progress: r.get(11)?,
        failure: r.get(12)?,
        created_at: r.get(13)?,
        creation_time: r.get(14)?,
        modified_at: r.get(15)?,
        retention_days: r.get(16)?,
        link_id: r.get(17)?,
        base: base_id.map(|snapshot_id| SnapshotBase { snapshot_id, next_seq: u64_of(base_seq.unwrap_or(0)) }),
        pin: pin_seq.map(|s| PinInfo { next_seq: u64_of(s), size_bytes: u64_of(pin_size.unwrap_or(0)) }),
        chainable: r.get(22)?,
        read_bytes: u64_of(r.get(23)?),
        stored_bytes: u64_of(r.get(24)?),
        usage: r.get(25)?,
        disks_created: u64_of(r.get(26)?),
        images_created: u64_of(r.get(27)?),
    })
}

fn i64_of(v: u64) -> Result<i64, MetaError> {
    i64::try_from(v).map_err(|_| MetaError::Invalid(format!("{v} is too large")))
}

/// The snapshot chain of a disk (`SnapshotLinkId`): one per disk, derived from its id.
pub fn link_id(disk_id: &str) -> String {
    format!("sl-{}", disk_id.strip_prefix("d-").unwrap_or(disk_id))
}

/// What a `CreateSnapshot` asks for.
#[derive(Debug, Clone)]
pub struct NewSnapshot<'a> {
    /// Registered by the caller in the same transaction.
    pub id: String,
    pub disk: &'a Disk,
    pub name: String,
    pub description: String,
    pub snapshot_type: SnapshotType,
    pub retention_days: Option<i64>,
    pub at: String,
}

/// Why a snapshot cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account may hold {max} snapshots in the region and holds {held}")]
    QuotaExceeded { max: u64, held: u64 },
    /// The disk already has a snapshot in progress (`IncorrectDiskStatus.CreatingSnapshot`).
    #[error("the disk's snapshot {0} is still progressing")]
    DiskBusy(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl From<rusqlite::Error> for CreateError {
    fn from(e: rusqlite::Error) -> Self {
        CreateError::Meta(e.into())
    }
}

/// How many snapshots an account holds in a region (the `snapshots` quota).
pub fn count_snapshots(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM snapshots WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(u64_of(n))
}

/// Whether one more snapshot fits the account's `snapshots` quota in the region.
pub fn check_quota(tx: &Transaction<'_>, quotas: &Quotas, account_id: u64, region_id: &str) -> Result<(), CreateError> {
    let held = count_snapshots(tx, account_id, region_id)?;
    let max = quota::limit(tx, quotas, account_id, Quota::Snapshots)?;
    if !quota::fits(max, held, 1) {
        return Err(CreateError::QuotaExceeded { max, held });
    }
    Ok(())
}

/// The disk's snapshot in progress, if any.
pub fn progressing_of_disk(tx: &Transaction<'_>, disk_id: &str) -> Result<Option<String>, MetaError> {
    Ok(tx
        .query_row("SELECT id FROM snapshots WHERE disk_id = ?1 AND status = 'progressing' LIMIT 1", [disk_id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The base a new snapshot of the disk is incremental to: its newest `accomplished`
/// snapshot that may still be chained to (the one pinned last).
fn newest_base(tx: &Transaction<'_>, disk_id: &str) -> Result<Option<SnapshotBase>, MetaError> {
    Ok(tx
        .query_row(
            "SELECT id, pin_next_seq FROM snapshots
             WHERE disk_id = ?1 AND status = 'accomplished' AND chainable AND pin_next_seq IS NOT NULL
             ORDER BY pin_next_seq DESC, creation_time DESC LIMIT 1",
            [disk_id],
            |r| Ok(SnapshotBase { snapshot_id: r.get(0)?, next_seq: u64_of(r.get(1)?) }),
        )
        .optional()?)
}

/// Records the snapshot an import fills (ImportImage: no source disk, so no host pins it;
/// the control plane's import worker stores its blocks and commits it), `progressing` at 0 %,
/// of a disk of `size_gib` (0 until the file is measured). Counts toward the quota.
#[allow(clippy::too_many_arguments)]
pub fn create_imported(
    tx: &Transaction<'_>,
    quotas: &Quotas,
    id: &str,
    account_id: u64,
    region_id: &str,
    disk_type: DiskType,
    size_gib: i64,
    description: &str,
    at: &str,
) -> Result<Snapshot, CreateError> {
    check_quota(tx, quotas, account_id, region_id)?;
    let s = Snapshot {
        id: id.to_owned(),
        account_id,
        region_id: region_id.to_owned(),
        disk_id: String::new(),
        source_disk_gib: size_gib,
        source_disk_type: disk_type,
        source_category: String::new(),
        name: String::new(),
        description: description.to_owned(),
        snapshot_type: SnapshotType::User,
        status: SnapshotStatus::Progressing,
        progress: 0,
        failure: String::new(),
        created_at: at.to_owned(),
        creation_time: at.to_owned(),
        modified_at: at.to_owned(),
        retention_days: None,
        link_id: String::new(),
        base: None,
        pin: None,
        chainable: false,
        read_bytes: 0,
        stored_bytes: 0,
        usage: "none".into(),
        disks_created: 0,
        images_created: 0,
    };
    insert(tx, &s)?;
    Ok(s)
}

/// An imported snapshot's disk size, once its file is measured.
pub fn set_source_size(tx: &Transaction<'_>, id: &str, size_gib: i64) -> Result<(), MetaError> {
    tx.execute("UPDATE snapshots SET source_disk_gib = ?2 WHERE id = ?1", params![id, size_gib])?;
    Ok(())
}

/// Records a new snapshot, `progressing` at 0 %, in the caller's transaction: checks the
/// account's `snapshots` quota and that the disk has no snapshot in progress, and takes the
/// disk's newest accomplished snapshot as its base.
pub fn create(tx: &Transaction<'_>, quotas: &Quotas, new: &NewSnapshot<'_>) -> Result<Snapshot, CreateError> {
    let d = new.disk;
    check_quota(tx, quotas, d.account_id, &d.region_id)?;
    if let Some(busy) = progressing_of_disk(tx, &d.id)? {
        return Err(CreateError::DiskBusy(busy));
    }
    let s = Snapshot {
        id: new.id.clone(),
        account_id: d.account_id,
        region_id: d.region_id.clone(),
        disk_id: d.id.clone(),
        source_disk_gib: d.size_gib,
        source_disk_type: d.disk_type,
        source_category: d.category.clone(),
        name: new.name.clone(),
        description: new.description.clone(),
        snapshot_type: new.snapshot_type,
        status: SnapshotStatus::Progressing,
        progress: 0,
        failure: String::new(),
        created_at: new.at.clone(),
        creation_time: new.at.clone(),
        modified_at: new.at.clone(),
        retention_days: new.retention_days,
        link_id: link_id(&d.id),
        base: newest_base(tx, &d.id)?,
        pin: None,
        chainable: true,
        read_bytes: 0,
        stored_bytes: 0,
        usage: "none".into(),
        disks_created: 0,
        images_created: 0,
    };
    insert(tx, &s)?;
    Ok(s)
}

fn insert(tx: &Transaction<'_>, s: &Snapshot) -> Result<(), MetaError> {
    tx.execute(
        &format!(
            "INSERT INTO snapshots ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"
        ),
        params![
            s.id,
            s.account_id as i64,
            s.region_id,
            s.disk_id,
            s.source_disk_gib,
            s.source_disk_type,
            s.source_category,
            s.name,
            s.description,
            s.snapshot_type,
            s.status.as_str(),
            s.progress,
            s.failure,
            s.created_at,
            s.creation_time,
            s.modified_at,
            s.retention_days,
            s.link_id,
            s.base.as_ref().map(|b| b.snapshot_id.clone()),
            s.base.as_ref().map(|b| i64_of(b.next_seq)).transpose()?,
            s.pin.map(|p| i64_of(p.next_seq)).transpose()?,
            s.pin.map(|p| i64_of(p.size_bytes)).transpose()?,
            s.chainable,
            i64_of(s.read_bytes)?,
            i64_of(s.stored_bytes)?,
            s.usage,
            i64_of(s.disks_created)?,
            i64_of(s.images_created)?,
        ],
    )?;
    Ok(())
}

/// An account's snapshot, by id.
pub fn get(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Snapshot>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLS} FROM snapshots WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            row,
        )
        .optional()?)
}

/// A snapshot whoever owns it (for the host's reports).
pub fn get_any_owner(tx: &Transaction<'_>, id: &str) -> Result<Option<Snapshot>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {COLS} FROM snapshots WHERE id = ?1"), [id], row).optional()?)
}

/// One page of a filtered list (DescribeSnapshots), in creation order, and the total.
pub fn list(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Snapshot>, u64), MetaError> {
    page(tx, "snapshots", COLS, f, offset, limit, row)
}

/// Writes what `ModifySnapshotAttribute` may change.
pub fn update_attributes(
    tx: &Transaction<'_>,
    id: &str,
    name: &str,
    description: &str,
    retention_days: Option<i64>,
    at: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE snapshots SET name = ?2, description = ?3, retention_days = ?4, modified_at = ?5 WHERE id = ?1",
        params![id, name, description, retention_days, at],
    )?;
    Ok(())
}

/// The disk's volume was made anew (its change sequences start over): none of its
/// snapshots may be a later snapshot's base.
pub fn break_chain(tx: &Transaction<'_>, disk_id: &str) -> Result<(), MetaError> {
    tx.execute("UPDATE snapshots SET chainable = FALSE WHERE disk_id = ?1", [disk_id])?;
    Ok(())
}

/// A disk or an image was made from the snapshot (`disks`/`images` +1) or let go of it
/// (-1): `Usage` follows, and `DeleteSnapshot` refuses while either is held.
pub fn note_use(tx: &Transaction<'_>, id: &str, disks: i64, images: i64) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE snapshots SET disks_created = MAX(disks_created + ?2, 0), images_created = MAX(images_created + ?3, 0)
         WHERE id = ?1",
        params![id, disks, images],
    )?;
    tx.execute(
        "UPDATE snapshots SET usage = CASE
            WHEN disks_created > 0 AND images_created > 0 THEN 'image_disk'
            WHEN images_created > 0 THEN 'image'
            WHEN disks_created > 0 THEN 'disk'
            ELSE 'none' END
         WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

// --- the host's side ------------------------------------------------------------------------

fn queue_pin_release(tx: &Transaction<'_>, snapshot_id: &str, volume: &str, at: &str) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO snapshot_pin_releases (snapshot_id, volume, queued_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (snapshot_id) DO NOTHING",
        params![snapshot_id, volume, at],
    )?;
    Ok(())
}

/// The snapshot reconciler's work list: every `progressing` snapshot with its volume, pin
/// and base.
pub fn to_reconcile(tx: &Transaction<'_>) -> Result<Vec<SnapshotTarget>, MetaError> {
    let rows = all(
        tx,
        // An import's snapshots (no source disk) are the control plane's, not a host's.
        &format!("SELECT {COLS} FROM snapshots WHERE status = 'progressing' AND disk_id <> '' ORDER BY created_at, id"),
        [],
        row,
    )?;
    Ok(rows.into_iter().map(|s| SnapshotTarget { id: s.id, volume: s.disk_id, pinned: s.pin, base: s.base }).collect())
}

/// Pins the host must release.
pub fn pins_to_release(tx: &Transaction<'_>) -> Result<Vec<PinRef>, MetaError> {
    all(tx, "SELECT volume, snapshot_id FROM snapshot_pin_releases ORDER BY queued_at, snapshot_id", [], |r| {
        Ok(PinRef { volume: r.get(0)?, snapshot_id: r.get(1)? })
    })
}

/// The host released the pin.
pub fn pin_released(tx: &Transaction<'_>, snapshot_id: &str) -> Result<bool, MetaError> {
    Ok(tx.execute("DELETE FROM snapshot_pin_releases WHERE snapshot_id = ?1", [snapshot_id])? == 1)
}

/// The host pinned the snapshot's instant at `at` (the control plane's clock): `CreationTime`
/// becomes `at`, and the pin is kept for the upload and for later snapshots' bases. Only a
/// `progressing` snapshot not pinned yet moves.
pub fn pinned(tx: &Transaction<'_>, id: &str, pin: PinInfo, at: &str) -> Result<bool, MetaError> {
    Ok(tx.execute(
        "UPDATE snapshots SET pin_next_seq = ?2, pin_size_bytes = ?3, creation_time = ?4, modified_at = ?4
         WHERE id = ?1 AND status = 'progressing' AND pin_next_seq IS NULL",
        params![id, i64_of(pin.next_seq)?, i64_of(pin.size_bytes)?, at],
    )? == 1)
}

/// The upload's progress (0 to 99: 100 comes with the commit); it only grows.
pub fn progress(tx: &Transaction<'_>, id: &str, percent: u8) -> Result<bool, MetaError> {
    let p = i64::from(percent.min(99));
    Ok(tx.execute(
        "UPDATE snapshots SET progress = ?2 WHERE id = ?1 AND status = 'progressing' AND progress < ?2",
        params![id, p],
    )? == 1)
}

/// The snapshot cannot be made: `failed`, and its pin (if the host took one) released.
pub fn fail(tx: &Transaction<'_>, id: &str, error: &str, at: &str) -> Result<bool, MetaError> {
    let Some(s) = get_any_owner(tx, id)? else { return Ok(false) };
    let moved = tx.execute(
        "UPDATE snapshots SET status = 'failed', failure = ?2, modified_at = ?3 WHERE id = ?1 AND status = 'progressing'",
        params![id, error, at],
    )? == 1;
    if moved {
        if !s.disk_id.is_empty() {
            queue_pin_release(tx, id, &s.disk_id, at)?;
        }
        drop_claims(tx, id, at)?;
    }
    Ok(moved)
}

/// Takes one reference per block an upload is about to check and store (docs/snapshots.md,
/// "Claims"): before the host looks for a block object, its count names it, so no sweep can
/// delete the object between the host finding it and the commit. Idempotent per snapshot
/// and block (a retried upload claims again at no cost). `false`, and nothing claimed, if
/// the snapshot is not `progressing` or one of the blocks is being swept (the host tries
/// again later: the sweep ends by forgetting the row).
pub fn claim(tx: &Transaction<'_>, id: &str, blocks: &[BlockClaim]) -> Result<bool, MetaError> {
    match get_any_owner(tx, id)? {
        Some(s) if s.status == SnapshotStatus::Progressing => {}
        _ => return Ok(false),
    }
    for b in blocks {
        check_hash(&b.hash)?;
        if block(tx, &b.hash)?.is_some_and(|row| row.sweeping) {
            return Ok(false);
        }
    }
    for b in blocks {
        let fresh = tx.execute(
            "INSERT INTO snapshot_claims (snapshot_id, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![id, b.hash],
        )? == 1;
        if fresh {
            tx.execute(
                "INSERT INTO snapshot_blocks (hash, refs, bytes, dead_at, sweeping) VALUES (?1, 1, ?2, NULL, FALSE)
                 ON CONFLICT (hash) DO UPDATE SET refs = snapshot_blocks.refs + 1, dead_at = NULL",
                params![b.hash, i64_of(b.bytes)?],
            )?;
        }
    }
    Ok(true)
}

/// Drops a snapshot's claims (it committed, failed or was deleted): one reference each, and
/// a block left with none is marked dead for the sweeper.
fn drop_claims(tx: &Transaction<'_>, id: &str, at: &str) -> Result<(), MetaError> {
    drop_references(tx, Holders::Claims, id, at)
}

/// Who holds references on blocks: one per row of the table, keyed by a snapshot or a disk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Holders {
    /// A snapshot's manifest (`snapshot_ranges`).
    Manifest,
    /// An upload's claims (`snapshot_claims`).
    Claims,
    /// A disk's fill from a snapshot (`disk_restores`).
    Fill,
}

impl Holders {
    /// (table, key column, block column).
    fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Holders::Manifest => ("snapshot_ranges", "snapshot_id", "block"),
            Holders::Claims => ("snapshot_claims", "snapshot_id", "hash"),
            Holders::Fill => ("disk_restores", "disk_id", "hash"),
        }
    }
}

/// Drops the references `key`'s rows of `holders` hold (one per row), marks the blocks left
/// with none dead at `at` (for the sweeper), and deletes the rows: guarantee 4's one way of
/// letting go of blocks.
pub(crate) fn drop_references(tx: &Transaction<'_>, holders: Holders, key: &str, at: &str) -> Result<(), MetaError> {
    let (table, key_col, block) = holders.table();
    tx.execute(
        &format!(
            "UPDATE snapshot_blocks
                SET refs = refs - (SELECT COUNT(*) FROM {table} h WHERE h.{key_col} = ?1 AND h.{block} = snapshot_blocks.hash)
              WHERE hash IN (SELECT {block} FROM {table} WHERE {key_col} = ?1)"
        ),
        [key],
    )?;
    tx.execute(
        &format!(
            "UPDATE snapshot_blocks SET dead_at = ?2
              WHERE refs = 0 AND dead_at IS NULL AND hash IN (SELECT {block} FROM {table} WHERE {key_col} = ?1)"
        ),
        params![key, at],
    )?;
    tx.execute(&format!("DELETE FROM {table} WHERE {key_col} = ?1"), [key])?;
    Ok(())
}

/// What became of an upload report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// The snapshot is `accomplished`, its manifest written and its references taken.
    Done,
    /// The snapshot was deleted meanwhile (its pin was queued for release then): nothing.
    Gone,
    /// It is not `progressing` (committed or failed already), or not pinned: nothing.
    NotProgressing,
    /// The upload's base is not the one the snapshot has now: nothing.
    BaseMismatch,
    /// The base was deleted before the commit: refused, and the base cleared so the host
    /// uploads in full.
    BaseGone,
    /// Some of the blocks are being deleted by the sweeper: refused; the host stores them
    /// again and reports anew.
    BlocksBeingSwept(Vec<String>),
}

/// A block's name: the hex SHA-256 of its bytes.
fn check_hash(h: &str) -> Result<(), MetaError> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(MetaError::Invalid(format!("{h:?} is not a block name (64 lower-case hex digits)")))
    }
}

/// A snapshot's manifest: each range holding data and its block, by range.
pub fn manifest(tx: &Transaction<'_>, id: &str) -> Result<BTreeMap<u64, String>, MetaError> {
    Ok(all(
        tx,
        "SELECT range_index, block FROM snapshot_ranges WHERE snapshot_id = ?1 ORDER BY range_index",
        [id],
        |r| Ok((u64_of(r.get(0)?), r.get::<_, String>(1)?)),
    )?
    .into_iter()
    .collect())
}

/// The bytes of a snapshot's contents (every range it names, shared or not): the API's
/// `FullSnapshotSizeInBytes`.
pub fn full_size(tx: &Transaction<'_>, id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        "SELECT COALESCE(SUM(b.bytes), 0) FROM snapshot_ranges r JOIN snapshot_blocks b ON b.hash = r.block
         WHERE r.snapshot_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    Ok(u64_of(n))
}

/// Commits an upload in one transaction (guarantee 5): the manifest is the base's rows
/// overlaid with the upload's ranges (`None` removes a range), each row takes one reference
/// on its block, the snapshot becomes `accomplished` at 100 %, and its pin is queued for
/// release.
pub fn commit(tx: &Transaction<'_>, upload: &SnapshotUpload, at: &str) -> Result<Commit, MetaError> {
    let Some(s) = get_any_owner(tx, &upload.id)? else { return Ok(Commit::Gone) };
    let Some(pin) = s.pin.filter(|_| s.status == SnapshotStatus::Progressing) else {
        return Ok(Commit::NotProgressing);
    };
    if s.base.as_ref().map(|b| b.snapshot_id.as_str()) != upload.base.as_deref() {
        return Ok(Commit::BaseMismatch);
    }
    let mut rows = match &s.base {
        None => BTreeMap::new(),
        Some(b) => match get_any_owner(tx, &b.snapshot_id)? {
            Some(base) if base.status == SnapshotStatus::Accomplished => manifest(tx, &base.id)?,
            _ => {
                tx.execute("UPDATE snapshots SET base_id = NULL, base_next_seq = NULL WHERE id = ?1", [&s.id])?;
                return Ok(Commit::BaseGone);
            }
        },
    };
    for r in &upload.ranges {
        match &r.block {
            Some(h) => {
                check_hash(h)?;
                rows.insert(r.range, h.clone());
            }
            None => {
                rows.remove(&r.range);
            }
        }
    }
    let hashes: BTreeSet<&str> = rows.values().map(String::as_str).collect();
    let mut swept = Vec::new();
    for h in &hashes {
        let sweeping: Option<bool> =
            tx.query_row("SELECT sweeping FROM snapshot_blocks WHERE hash = ?1", [h], |r| r.get(0)).optional()?;
        if sweeping == Some(true) {
            swept.push(h.to_string());
        }
    }
    if !swept.is_empty() {
        return Ok(Commit::BlocksBeingSwept(swept));
    }
    for (&range, h) in &rows {
        // The last range of a disk whose size is not a whole number of MiB is cut to size.
        let bytes = pin.size_bytes.saturating_sub(range.saturating_mul(RANGE_BYTES)).min(RANGE_BYTES);
        tx.execute(
            "INSERT INTO snapshot_blocks (hash, refs, bytes, dead_at, sweeping) VALUES (?1, 1, ?2, NULL, FALSE)
             ON CONFLICT (hash) DO UPDATE SET refs = snapshot_blocks.refs + 1, dead_at = NULL",
            params![h, i64_of(bytes)?],
        )?;
        tx.execute(
            "INSERT INTO snapshot_ranges (snapshot_id, range_index, block) VALUES (?1, ?2, ?3)",
            params![s.id, i64_of(range)?, h],
        )?;
    }
    tx.execute(
        "UPDATE snapshots SET status = 'accomplished', progress = 100, read_bytes = ?2, stored_bytes = ?3,
            modified_at = ?4
         WHERE id = ?1",
        params![s.id, i64_of(upload.read_bytes)?, i64_of(upload.stored_bytes)?, at],
    )?;
    if !s.disk_id.is_empty() {
        queue_pin_release(tx, &s.id, &s.disk_id, at)?;
    }
    // The manifest holds the references now (taken above, before the claims' go, so a
    // block named by both never passes through zero).
    drop_claims(tx, &s.id, at)?;
    Ok(Commit::Done)
}

/// A copy of accomplished snapshot `src` as a new snapshot `id` in `region_id` (CopyImage;
/// docs/snapshots.md guarantee 7): `accomplished` at once, its manifest `src`'s, one
/// reference per row on the same block objects (the regions of one deployment share its
/// system bucket: a copy stores no byte again). It is nobody's base (`chainable` false, no
/// pin) and counts toward the account's quota like any snapshot.
pub fn copy(
    tx: &Transaction<'_>,
    src: &Snapshot,
    id: &str,
    region_id: &str,
    description: &str,
    at: &str,
) -> Result<Snapshot, MetaError> {
    if src.status != SnapshotStatus::Accomplished {
        return Err(MetaError::Invalid(format!("snapshot {} is not accomplished", src.id)));
    }
    let s = Snapshot {
        id: id.to_owned(),
        region_id: region_id.to_owned(),
        name: String::new(),
        description: description.to_owned(),
        snapshot_type: SnapshotType::User,
        created_at: at.to_owned(),
        creation_time: at.to_owned(),
        modified_at: at.to_owned(),
        retention_days: None,
        base: None,
        pin: None,
        chainable: false,
        read_bytes: 0,
        stored_bytes: 0,
        usage: "none".into(),
        disks_created: 0,
        images_created: 0,
        ..src.clone()
    };
    insert(tx, &s)?;
    tx.execute(
        "INSERT INTO snapshot_ranges (snapshot_id, range_index, block)
         SELECT ?1, range_index, block FROM snapshot_ranges WHERE snapshot_id = ?2",
        params![id, src.id],
    )?;
    // The source's rows hold these blocks (refs > 0), so none is being swept.
    tx.execute(
        "UPDATE snapshot_blocks
            SET refs = refs + (SELECT COUNT(*) FROM snapshot_ranges r WHERE r.snapshot_id = ?1 AND r.block = snapshot_blocks.hash)
          WHERE hash IN (SELECT block FROM snapshot_ranges WHERE snapshot_id = ?1)",
        [id],
    )?;
    Ok(s)
}

/// Deletes a snapshot in one transaction (guarantee 4): its rows go, each manifest row's
/// reference is dropped, blocks reaching zero are marked dead (for the sweeper), its tags
/// and registry row go, and a `progressing` snapshot's pin is queued for release. `false`
/// if there was no such snapshot.
pub fn delete(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, MetaError> {
    let Some(s) = get_any_owner(tx, id)? else { return Ok(false) };
    drop_references(tx, Holders::Manifest, id, at)?;
    drop_claims(tx, id, at)?;
    tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
    forget_resource(tx, id)?;
    if s.status == SnapshotStatus::Progressing && !s.disk_id.is_empty() {
        queue_pin_release(tx, id, &s.disk_id, at)?;
    }
    Ok(true)
}

/// A deleted disk takes its automatic snapshots with it when it says so
/// (`DeleteAutoSnapshot`); its other snapshots stay, as on Alibaba Cloud.
pub fn delete_auto_of_disk(tx: &Transaction<'_>, disk_id: &str, at: &str) -> Result<(), MetaError> {
    let ids: Vec<String> =
        all(tx, "SELECT id FROM snapshots WHERE disk_id = ?1 AND snapshot_type = 'auto'", [disk_id], |r| r.get(0))?;
    for id in ids {
        delete(tx, &id, at)?;
    }
    Ok(())
}

/// A snapshot with a retention, for the scheduler's expiry: its id, record time and days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub id: String,
    pub created_at: String,
    pub retention_days: i64,
}

/// Every finished snapshot that has a retention and that nothing was made from (a snapshot
/// an image or disk uses outlives its retention, as on Alibaba Cloud).
pub fn retained(tx: &Transaction<'_>) -> Result<Vec<Retained>, MetaError> {
    all(
        tx,
        "SELECT id, created_at, retention_days FROM snapshots
         WHERE retention_days IS NOT NULL AND status <> 'progressing' AND disks_created = 0 AND images_created = 0
         ORDER BY created_at, id",
        [],
        |r| Ok(Retained { id: r.get(0)?, created_at: r.get(1)?, retention_days: r.get(2)? }),
    )
}

// --- block objects and the sweeper --------------------------------------------------------

/// A block object's count and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub hash: String,
    pub refs: u64,
    pub bytes: u64,
    /// When its count reached zero; `None` while it is named.
    pub dead_at: Option<String>,
    pub sweeping: bool,
}

fn block_row(r: &Row<'_>) -> rusqlite::Result<Block> {
    Ok(Block {
        hash: r.get(0)?,
        refs: u64_of(r.get(1)?),
        bytes: u64_of(r.get(2)?),
        dead_at: r.get(3)?,
        sweeping: r.get(4)?,
    })
}

/// One block's row.
pub fn block(tx: &Transaction<'_>, hash: &str) -> Result<Option<Block>, MetaError> {
    Ok(tx
        .query_row(
            "SELECT hash, refs, bytes, dead_at, sweeping FROM snapshot_blocks WHERE hash = ?1",
            [hash],
            block_row,
        )
        .optional()?)
}

/// Blocks nothing names (the oldest first, at most `limit`): the sweeper's work, including
/// those whose sweep began before a crash.
pub fn dead_blocks(tx: &Transaction<'_>, limit: u64) -> Result<Vec<Block>, MetaError> {
    all(
        tx,
        "SELECT hash, refs, bytes, dead_at, sweeping FROM snapshot_blocks WHERE refs = 0
         ORDER BY dead_at, hash LIMIT ?1",
        [i64_of(limit)?],
        block_row,
    )
}

/// The sweeper is about to delete the object: rechecks that nothing names it and marks it
/// `sweeping` (from now on a commit naming it is refused). `false`: it was named again, or is
/// gone; the sweeper must leave the object alone.
pub fn begin_sweep(tx: &Transaction<'_>, hash: &str) -> Result<bool, MetaError> {
    Ok(tx.execute("UPDATE snapshot_blocks SET sweeping = TRUE WHERE hash = ?1 AND refs = 0", [hash])? == 1)
}

/// The sweeper deleted the object: its row goes.
pub fn forget_block(tx: &Transaction<'_>, hash: &str) -> Result<bool, MetaError> {
    Ok(tx.execute("DELETE FROM snapshot_blocks WHERE hash = ?1 AND refs = 0 AND sweeping", [hash])? == 1)
}

/// Block objects in system bucket `bucket` that no row counts (`blocks/<hash>` keys with no
/// `snapshot_blocks` row): what an upload cut short left behind, when its snapshot was
/// deleted while a put was in flight and the block's row was swept before the put landed.
/// At most `limit` hashes.
pub fn orphan_blocks(tx: &Transaction<'_>, bucket: &str, limit: u64) -> Result<Vec<String>, MetaError> {
    all(
        tx,
        "SELECT substr(o.object_key, 8) FROM oss_objects o
          WHERE o.bucket = ?1 AND o.object_key LIKE 'blocks/%'
            AND NOT EXISTS (SELECT 1 FROM snapshot_blocks b WHERE b.hash = substr(o.object_key, 8))
          ORDER BY o.object_key LIMIT ?2",
        params![bucket, i64_of(limit)?],
        |r| r.get(0),
    )
}

/// Takes an orphan object for the sweeper: a row with no reference, already `sweeping`, so
/// a claim of the same bytes meanwhile is refused until [`forget_block`] (and then stores
/// them again) instead of finding the object about to be deleted. `false` if a row exists
/// (a claim got there first: it is not an orphan any more).
pub fn adopt_orphan(tx: &Transaction<'_>, hash: &str, at: &str) -> Result<bool, MetaError> {
    check_hash(hash)?;
    Ok(tx.execute(
        "INSERT INTO snapshot_blocks (hash, refs, bytes, dead_at, sweeping) VALUES (?1, 0, 0, ?2, TRUE)
         ON CONFLICT (hash) DO NOTHING",
        params![hash, at],
    )? == 1)
}

// --- snapshot chains (DescribeSnapshotLinks) ----------------------------------------------

/// One chain: a disk's snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_id: String,
    pub region_id: String,
    pub disk_id: String,
    pub source_disk_gib: i64,
    pub source_disk_type: String,
    pub total_count: u64,
    /// Bytes the chain's accomplished snapshots stored.
    pub total_bytes: u64,
}

/// One page of an account's chains in a region, optionally only those of `disk_ids` and
/// `link_ids` (empty: any), with the total.
pub fn links(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    disk_ids: &[String],
    link_ids: &[String],
    offset: u64,
    limit: u64,
) -> Result<(Vec<Link>, u64), MetaError> {
    let rows = all(
        tx,
        "SELECT link_id, region_id, disk_id, MAX(source_disk_gib), MAX(source_disk_type), COUNT(*),
                SUM(CASE WHEN status = 'accomplished' THEN stored_bytes ELSE 0 END)
         FROM snapshots WHERE account_id = ?1 AND region_id = ?2
         GROUP BY link_id, region_id, disk_id ORDER BY MIN(created_at), link_id",
        params![account_id as i64, region_id],
        |r| {
            Ok(Link {
                link_id: r.get(0)?,
                region_id: r.get(1)?,
                disk_id: r.get(2)?,
                source_disk_gib: r.get(3)?,
                source_disk_type: r.get(4)?,
                total_count: u64_of(r.get(5)?),
                total_bytes: u64_of(r.get(6)?),
            })
        },
    )?;
    let wanted: Vec<Link> = rows
        .into_iter()
        .filter(|l| disk_ids.is_empty() || disk_ids.contains(&l.disk_id))
        .filter(|l| link_ids.is_empty() || link_ids.contains(&l.link_id))
        .collect();
    let total = wanted.len() as u64;
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok((wanted.into_iter().skip(offset).take(limit).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{insert_disk, DiskStatus};
    use crate::status::assert_sql_round_trips;
    use crate::testing::{self, w};
    use crate::Store;
    use feitian_agent_api::snapshot::RangeBlock;

    fn disk(s: &Store, account: u64) -> Disk {
        let d = Disk {
            instance_id: "i-1".into(),
            device: "/dev/xvdb".into(),
            status: DiskStatus::InUse,
            attached_at: testing::CREATED.into(),
            ..testing::data_disk(s, account)
        };
        w(s, |tx| insert_disk(tx, &d));
        d
    }

    fn create_as(s: &Store, d: &Disk, kind: SnapshotType) -> Result<Snapshot, CreateError> {
        let id = testing::register(s, d.account_id, "snapshot", "s");
        s.write(|tx| {
            create(
                tx,
                &Quotas::default(),
                &NewSnapshot {
                    id,
                    disk: d,
                    name: "snap".into(),
                    description: String::new(),
                    snapshot_type: kind,
                    retention_days: None,
                    at: "t0".into(),
                },
            )
        })
    }

    fn hash(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn ranges(pairs: &[(u64, Option<char>)]) -> Vec<RangeBlock> {
        pairs.iter().map(|&(range, c)| RangeBlock { range, block: c.map(hash) }).collect()
    }

    fn upload(s: &Snapshot, pairs: &[(u64, Option<char>)]) -> SnapshotUpload {
        SnapshotUpload {
            id: s.id.clone(),
            base: s.base.as_ref().map(|b| b.snapshot_id.clone()),
            ranges: ranges(pairs),
            read_bytes: 7,
            stored_bytes: 5,
        }
    }

    /// Creates, pins (at `seq`) and commits a snapshot of `d` with `pairs`.
    fn snapshot(s: &Store, d: &Disk, seq: u64, pairs: &[(u64, Option<char>)]) -> Snapshot {
        let snap = create_as(s, d, SnapshotType::User).unwrap();
        let pin = PinInfo { next_seq: seq, size_bytes: 20 << 30 };
        assert!(w(s, |tx| pinned(tx, &snap.id, pin, "t1")));
        assert_eq!(w(s, |tx| commit(tx, &upload(&snap, pairs), "t2")), Commit::Done);
        snap
    }

    fn refs(s: &Store, c: char) -> Option<(u64, bool)> {
        s.read(|tx| block(tx, &hash(c))).unwrap().map(|b| (b.refs, b.dead_at.is_some()))
    }

    fn dead(s: &Store) -> Vec<String> {
        s.read(|tx| dead_blocks(tx, 100)).unwrap().into_iter().map(|b| b.hash).collect()
    }

    #[test]
    fn snapshot_types_round_trip() {
        assert_sql_round_trips(SnapshotType::ALL, SnapshotType::as_str, SnapshotType::parse);
        assert_eq!(link_id("d-bp1x"), "sl-bp1x");
    }

    #[test]
    fn a_create_checks_quota_and_progress_and_takes_the_newest_base() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let first = create_as(&s, &d, SnapshotType::User).unwrap();
        assert_eq!(
            (first.status, first.progress, first.base.clone(), first.pin),
            (SnapshotStatus::Progressing, 0, None, None)
        );
        assert_eq!(s.read(|tx| get(tx, account, &first.id)).unwrap(), Some(first.clone()));
        assert_eq!(s.read(|tx| get(tx, account + 1, &first.id)).unwrap(), None, "another account's");
        assert!(matches!(create_as(&s, &d, SnapshotType::User), Err(CreateError::DiskBusy(id)) if id == first.id));
        assert!(w(&s, |tx| pinned(tx, &first.id, PinInfo { next_seq: 10, size_bytes: 20 << 30 }, "t1")));
        assert_eq!(w(&s, |tx| commit(tx, &upload(&first, &[(0, Some('a'))]), "t2")), Commit::Done);
        let second = snapshot(&s, &d, 20, &[(1, Some('b'))]);
        assert_eq!(second.base, Some(SnapshotBase { snapshot_id: first.id.clone(), next_seq: 10 }));
        let third = create_as(&s, &d, SnapshotType::User).unwrap();
        assert_eq!(third.base.map(|b| (b.snapshot_id, b.next_seq)), Some((second.id.clone(), 20)), "the newest");
        w(&s, |tx| delete(tx, &third.id, "t"));
        w(&s, |tx| break_chain(tx, &d.id));
        assert_eq!(create_as(&s, &d, SnapshotType::User).unwrap().base, None, "a volume made anew starts a chain");
        let other = disk(&s, account);
        w(&s, |tx| quota::set_override(tx, account, Quota::Snapshots, Some(3)));
        assert!(matches!(
            create_as(&s, &other, SnapshotType::User),
            Err(CreateError::QuotaExceeded { max: 3, held: 3 })
        ));
    }

    #[test]
    fn host_reports_are_compare_and_set() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let snap = create_as(&s, &d, SnapshotType::User).unwrap();
        let pin = PinInfo { next_seq: 5, size_bytes: (3 << 20) + 100 };
        assert_eq!(w(&s, |tx| commit(tx, &upload(&snap, &[]), "t")), Commit::NotProgressing, "not pinned yet");
        assert!(w(&s, |tx| progress(tx, &snap.id, 40)));
        assert!(!w(&s, |tx| progress(tx, &snap.id, 30)), "progress only grows");
        assert!(w(&s, |tx| pinned(tx, &snap.id, pin, "pin-time")));
        assert!(!w(&s, |tx| pinned(tx, &snap.id, PinInfo { next_seq: 9, ..pin }, "later")), "pinned once");
        let now = s.read(|tx| get(tx, account, &snap.id)).unwrap().unwrap();
        assert_eq!((now.creation_time.as_str(), now.pin, now.progress), ("pin-time", Some(pin), 40));
        assert_eq!(
            s.read(to_reconcile).unwrap(),
            vec![SnapshotTarget { id: snap.id.clone(), volume: d.id.clone(), pinned: Some(pin), base: None }]
        );
        let mismatched = SnapshotUpload { base: Some("s-other".into()), ..upload(&snap, &[]) };
        assert_eq!(w(&s, |tx| commit(tx, &mismatched, "t")), Commit::BaseMismatch);
        let bad =
            SnapshotUpload { ranges: vec![RangeBlock { range: 0, block: Some("x".into()) }], ..upload(&snap, &[]) };
        assert!(s.write(|tx| commit(tx, &bad, "t")).is_err(), "a block name that is no hash");
        // The last range is cut to the disk's size.
        assert_eq!(w(&s, |tx| commit(tx, &upload(&snap, &[(0, Some('a')), (3, Some('b'))]), "t")), Commit::Done);
        let done = s.read(|tx| get(tx, account, &snap.id)).unwrap().unwrap();
        assert_eq!(
            (done.status, done.progress, done.read_bytes, done.stored_bytes),
            (SnapshotStatus::Accomplished, 100, 7, 5)
        );
        assert_eq!(s.read(|tx| block(tx, &hash('a'))).unwrap().unwrap().bytes, 1 << 20);
        assert_eq!(s.read(|tx| block(tx, &hash('b'))).unwrap().unwrap().bytes, 100);
        assert_eq!(s.read(to_reconcile).unwrap(), vec![]);
        assert_eq!(
            s.read(pins_to_release).unwrap(),
            vec![PinRef { volume: d.id.clone(), snapshot_id: snap.id.clone() }]
        );
        assert_eq!(w(&s, |tx| commit(tx, &upload(&snap, &[]), "t")), Commit::NotProgressing, "committed once");
        assert!(!w(&s, |tx| progress(tx, &snap.id, 50)));
        assert!(!w(&s, |tx| fail(tx, &snap.id, "late", "t")), "an accomplished snapshot does not fail");
        assert!(w(&s, |tx| pin_released(tx, &snap.id)));
        assert!(!w(&s, |tx| pin_released(tx, &snap.id)));

        let failing = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| fail(tx, &failing.id, "volume gone", "t")));
        let f = s.read(|tx| get(tx, account, &failing.id)).unwrap().unwrap();
        assert_eq!((f.status, f.failure.as_str()), (SnapshotStatus::Failed, "volume gone"));
        assert_eq!(s.read(pins_to_release).unwrap().len(), 1, "a failed snapshot's pin is released too");
        assert!(!w(&s, |tx| fail(tx, &failing.id, "again", "t")));

        // Reports about a deleted snapshot change nothing.
        assert!(w(&s, |tx| delete(tx, &failing.id, "t")));
        assert!(!w(&s, |tx| pinned(tx, &failing.id, pin, "t")));
        assert!(!w(&s, |tx| progress(tx, &failing.id, 10)));
        assert!(!w(&s, |tx| fail(tx, &failing.id, "x", "t")));
        assert_eq!(w(&s, |tx| commit(tx, &upload(&failing, &[]), "t")), Commit::Gone);
        assert!(!w(&s, |tx| delete(tx, &failing.id, "t")));
    }

    #[test]
    fn references_across_a_chain_of_three() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let s1 = snapshot(&s, &d, 10, &[(0, Some('a')), (1, Some('b')), (2, Some('c'))]);
        let s2 = snapshot(&s, &d, 20, &[(1, Some('d')), (2, None)]);
        let s3 = snapshot(&s, &d, 30, &[(3, Some('e')), (1, Some('b'))]);
        let m = |id: &str| -> Vec<(u64, String)> { s.read(|tx| manifest(tx, id)).unwrap().into_iter().collect() };
        assert_eq!(m(&s2.id), vec![(0, hash('a')), (1, hash('d'))], "the base's rows overlaid");
        assert_eq!(s.read(|tx| full_size(tx, &s2.id)).unwrap(), 2 << 20);
        assert_eq!(m(&s3.id), vec![(0, hash('a')), (1, hash('b')), (3, hash('e'))]);
        let counts = |s: &Store| ['a', 'b', 'c', 'd', 'e'].map(|c| refs(s, c));
        assert_eq!(
            counts(&s),
            [Some((3, false)), Some((2, false)), Some((1, false)), Some((1, false)), Some((1, false))]
        );
        assert!(w(&s, |tx| delete(tx, &s2.id, "t-del")));
        assert_eq!(
            counts(&s),
            [Some((2, false)), Some((2, false)), Some((1, false)), Some((0, true)), Some((1, false))],
            "deleting the middle one frees exactly what only it named"
        );
        assert_eq!(dead(&s), vec![hash('d')]);
        assert_eq!(m(&s2.id), vec![]);
        assert_eq!(m(&s1.id).len(), 3, "the others keep their rows");
        assert_eq!(s.read(pins_to_release).unwrap().len(), 3, "each commit queued its pin");
        assert!(w(&s, |tx| delete(tx, &s1.id, "t-del2")));
        assert_eq!(
            counts(&s),
            [Some((1, false)), Some((1, false)), Some((0, true)), Some((0, true)), Some((1, false))]
        );
        assert_eq!(dead(&s), vec![hash('d'), hash('c')], "oldest first");
        // s3 is now the base; a new snapshot names `c` again: the mark is cleared.
        let s4 = snapshot(&s, &d, 40, &[(2, Some('c'))]);
        assert_eq!(s4.base.map(|b| b.snapshot_id), Some(s3.id.clone()));
        assert_eq!(refs(&s, 'c'), Some((1, false)));
        assert_eq!(refs(&s, 'a'), Some((2, false)));
        assert!(!w(&s, |tx| begin_sweep(tx, &hash('c'))), "re-referenced before the sweep: left alone");
        assert_eq!(dead(&s), vec![hash('d')]);
        // The sweep of `d` begins: a commit naming it is refused until the row is forgotten.
        assert!(w(&s, |tx| begin_sweep(tx, &hash('d'))));
        assert_eq!(dead(&s), vec![hash('d')], "still listed, to finish after a crash");
        let s5 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| pinned(tx, &s5.id, PinInfo { next_seq: 50, size_bytes: 20 << 30 }, "t")));
        assert_eq!(
            w(&s, |tx| commit(tx, &upload(&s5, &[(5, Some('d'))]), "t")),
            Commit::BlocksBeingSwept(vec![hash('d')])
        );
        assert_eq!(s.read(|tx| get(tx, account, &s5.id)).unwrap().unwrap().status, SnapshotStatus::Progressing);
        assert!(w(&s, |tx| forget_block(tx, &hash('d'))));
        assert!(!w(&s, |tx| forget_block(tx, &hash('d'))));
        assert_eq!(w(&s, |tx| commit(tx, &upload(&s5, &[(5, Some('d'))]), "t")), Commit::Done);
        assert_eq!(refs(&s, 'd'), Some((1, false)), "stored again, counted anew");
        assert_eq!(dead(&s), Vec::<String>::new());
    }

    fn claims(cs: &[char]) -> Vec<BlockClaim> {
        cs.iter().map(|&c| BlockClaim { hash: hash(c), bytes: 1 << 20 }).collect()
    }

    #[test]
    fn claims_hold_blocks_an_upload_found_until_it_ends() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        // `a` is named by s1; s1 goes, so `a` is dead and would be swept.
        let s1 = snapshot(&s, &d, 10, &[(0, Some('a'))]);
        assert!(w(&s, |tx| delete(tx, &s1.id, "t")));
        assert_eq!(dead(&s), vec![hash('a')]);
        // An upload claims `a` (it will find the object and not store it) and `b`.
        let s2 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| pinned(tx, &s2.id, PinInfo { next_seq: 20, size_bytes: 20 << 30 }, "t")));
        assert!(w(&s, |tx| claim(tx, &s2.id, &claims(&['a', 'b']))));
        assert!(w(&s, |tx| claim(tx, &s2.id, &claims(&['a']))), "claiming again is idempotent");
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (Some((1, false)), Some((1, false))));
        assert!(dead(&s).is_empty());
        assert!(!w(&s, |tx| begin_sweep(tx, &hash('a'))), "a claimed block is not swept");
        // The commit moves the references to the manifest: no count passes through zero.
        assert_eq!(w(&s, |tx| commit(tx, &upload(&s2, &[(0, Some('a')), (1, Some('b'))]), "t")), Commit::Done);
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (Some((1, false)), Some((1, false))));
        assert!(!w(&s, |tx| claim(tx, &s2.id, &claims(&['c']))), "no claims once accomplished");
        assert_eq!(refs(&s, 'c'), None);

        // A failed or deleted upload drops its claims: what only it named is dead.
        let s3 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| claim(tx, &s3.id, &claims(&['a', 'c']))));
        assert_eq!((refs(&s, 'a'), refs(&s, 'c')), (Some((2, false)), Some((1, false))));
        assert!(w(&s, |tx| fail(tx, &s3.id, "gone", "t")));
        assert_eq!((refs(&s, 'a'), refs(&s, 'c')), (Some((1, false)), Some((0, true))));
        let s4 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| claim(tx, &s4.id, &claims(&['d']))));
        assert!(w(&s, |tx| delete(tx, &s4.id, "t")));
        assert_eq!(refs(&s, 'd'), Some((0, true)));
        assert_eq!(dead(&s), vec![hash('c'), hash('d')]);

        // A block being swept cannot be claimed (nothing is claimed then) until forgotten.
        assert!(w(&s, |tx| begin_sweep(tx, &hash('c'))));
        let s5 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(!w(&s, |tx| claim(tx, &s5.id, &claims(&['e', 'c']))));
        assert_eq!(refs(&s, 'e'), None, "all or nothing");
        assert!(w(&s, |tx| forget_block(tx, &hash('c'))));
        assert!(w(&s, |tx| claim(tx, &s5.id, &claims(&['e', 'c']))));
        assert_eq!(refs(&s, 'c'), Some((1, false)));
        assert!(s.write(|tx| claim(tx, &s5.id, &[BlockClaim { hash: "x".into(), bytes: 1 }])).is_err());
    }

    #[test]
    fn orphan_objects_are_found_and_adopted_for_the_sweeper_unless_claimed_first() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let bucket = crate::bucket::Bucket {
            name: "feitian-system-x".into(),
            account_id: account,
            region_id: testing::REGION.into(),
            acl: "private".into(),
            storage_class: "Standard".into(),
            created_at: "t".into(),
            generation: 0,
        };
        w(&s, |tx| crate::bucket::insert_bucket(tx, &bucket).map(drop));
        let object = |c: char| crate::object::Object {
            bucket: bucket.name.clone(),
            key: format!("blocks/{}", hash(c)),
            size: 1,
            etag: "\"e\"".into(),
            crc64: 0,
            object_type: "Normal".into(),
            headers: crate::object::ObjectHeaders {
                content_type: "x".into(),
                user_meta: "{}".into(),
                ..Default::default()
            },
            acl: "default".into(),
            storage_class: "Standard".into(),
            last_modified_ms: 0,
        };
        for c in ['a', 'b', 'c'] {
            w(&s, |tx| crate::object::put_object(tx, &object(c), &[]).map(drop));
        }
        // `a` is counted (a snapshot names it); `b` and `c` are not.
        snapshot(&s, &d, 10, &[(0, Some('a'))]);
        let orphans = |s: &Store| s.read(|tx| orphan_blocks(tx, "feitian-system-x", 10)).unwrap();
        assert_eq!(orphans(&s), vec![hash('b'), hash('c')]);
        // `c` is claimed by an upload before the sweeper adopts it: it is not an orphan then.
        let up = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| claim(tx, &up.id, &claims(&['c']))));
        assert!(!w(&s, |tx| adopt_orphan(tx, &hash('c'), "t")));
        assert!(w(&s, |tx| adopt_orphan(tx, &hash('b'), "t")));
        assert_eq!(orphans(&s), Vec::<String>::new());
        // Adopted as being swept: a claim of the same bytes waits for the row to go.
        assert!(!w(&s, |tx| claim(tx, &up.id, &claims(&['b']))));
        assert!(w(&s, |tx| forget_block(tx, &hash('b'))));
        assert!(w(&s, |tx| claim(tx, &up.id, &claims(&['b']))));
    }

    #[test]
    fn a_commit_whose_base_vanished_is_refused_and_goes_full() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let s1 = snapshot(&s, &d, 10, &[(0, Some('a'))]);
        let s2 = create_as(&s, &d, SnapshotType::User).unwrap();
        assert!(w(&s, |tx| pinned(tx, &s2.id, PinInfo { next_seq: 20, size_bytes: 20 << 30 }, "t")));
        assert!(w(&s, |tx| delete(tx, &s1.id, "t")));
        assert_eq!(w(&s, |tx| commit(tx, &upload(&s2, &[(1, Some('b'))]), "t")), Commit::BaseGone);
        let t = s.read(to_reconcile).unwrap();
        assert_eq!((t.len(), t[0].base.clone(), t[0].pinned.is_some()), (1, None, true), "the host re-uploads in full");
        assert_eq!(refs(&s, 'b'), None, "nothing was counted");
        let full = SnapshotUpload { base: None, ..upload(&s2, &[(0, Some('a')), (1, Some('b'))]) };
        assert_eq!(w(&s, |tx| commit(tx, &full, "t")), Commit::Done);
        assert_eq!(refs(&s, 'a'), Some((1, false)), "named again");
        let _ = account;
    }

    #[test]
    fn deleting_a_progressing_snapshot_queues_its_pin() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let snap = create_as(&s, &d, SnapshotType::User).unwrap();
        w(&s, |tx| crate::tag::set_tags(tx, &snap.id, &[("k".into(), "v".into())]));
        assert!(w(&s, |tx| pinned(tx, &snap.id, PinInfo { next_seq: 1, size_bytes: 1 << 30 }, "t")));
        assert!(w(&s, |tx| delete(tx, &snap.id, "t")));
        assert_eq!(
            s.read(pins_to_release).unwrap(),
            vec![PinRef { volume: d.id.clone(), snapshot_id: snap.id.clone() }]
        );
        assert_eq!(s.read(|tx| crate::tag::tag_count(tx, &snap.id)).unwrap(), 0, "its tags go with it");
        assert_eq!(s.read(to_reconcile).unwrap(), vec![]);
        assert_eq!(w(&s, |tx| commit(tx, &upload(&snap, &[(0, Some('a'))]), "t")), Commit::Gone);
        assert_eq!(refs(&s, 'a'), None);
        // An accomplished snapshot has no pin left to release.
        let done = snapshot(&s, &d, 2, &[]);
        assert!(w(&s, |tx| pin_released(tx, &done.id)));
        assert!(w(&s, |tx| delete(tx, &done.id, "t")));
        assert_eq!(s.read(pins_to_release).unwrap().len(), 1);
    }

    #[test]
    fn a_deleted_disk_takes_its_auto_snapshots_only_when_it_says_so() {
        let (s, account) = testing::store();
        for keep_auto in [false, true] {
            let d = disk(&s, account);
            w(&s, |tx| {
                tx.execute("UPDATE disks SET delete_auto_snapshot = ?2 WHERE id = ?1", params![d.id, !keep_auto])?;
                Ok(())
            });
            let user = snapshot(&s, &d, 1, &[(0, Some('a'))]);
            let auto = create_as(&s, &d, SnapshotType::Auto).unwrap();
            w(&s, |tx| crate::disk::delete_disk(tx, &d.id, "t"));
            assert!(s.read(|tx| get(tx, account, &user.id)).unwrap().is_some(), "a user's snapshot stays");
            assert_eq!(s.read(|tx| get(tx, account, &auto.id)).unwrap().is_some(), keep_auto);
        }
    }

    #[test]
    fn usage_follows_what_was_made_and_links_group_by_disk() {
        let (s, account) = testing::store();
        let d = disk(&s, account);
        let a = snapshot(&s, &d, 1, &[(0, Some('a'))]);
        let _b = snapshot(&s, &d, 2, &[(1, Some('b'))]);
        let other = disk(&s, account);
        let _c = create_as(&s, &other, SnapshotType::User).unwrap();
        let usage = |s: &Store| s.read(|tx| get(tx, account, &a.id)).unwrap().unwrap().usage;
        w(&s, |tx| note_use(tx, &a.id, 1, 0));
        assert_eq!(usage(&s), "disk");
        w(&s, |tx| note_use(tx, &a.id, 0, 1));
        assert_eq!(usage(&s), "image_disk");
        w(&s, |tx| note_use(tx, &a.id, -1, 0));
        assert_eq!(usage(&s), "image");
        w(&s, |tx| note_use(tx, &a.id, 0, -5));
        assert_eq!(usage(&s), "none");
        let (all_links, total) = s.read(|tx| links(tx, account, testing::REGION, &[], &[], 0, 10)).unwrap();
        assert_eq!(total, 2);
        let mut got: Vec<_> = all_links.iter().map(|l| (l.disk_id.clone(), l.total_count, l.total_bytes)).collect();
        got.sort();
        let mut want = vec![(d.id.clone(), 2, 10), (other.id.clone(), 1, 0)];
        want.sort();
        assert_eq!(got, want, "stored bytes of accomplished snapshots only");
        let (one, total) = s.read(|tx| links(tx, account, testing::REGION, &[], &[link_id(&other.id)], 0, 10)).unwrap();
        assert_eq!((one.len(), total, one[0].disk_id.clone()), (1, 1, other.id.clone()));
        let (page2, total) = s.read(|tx| links(tx, account, testing::REGION, &[], &[], 1, 1)).unwrap();
        assert_eq!((page2.len(), total), (1, 2));
        assert_eq!(s.read(|tx| links(tx, account + 1, testing::REGION, &[], &[], 0, 10)).unwrap().1, 0);
    }
}
