//! Snapshots: what the control plane wants of a disk's snapshots, what the host reports back,
//! and the two host-side stores a snapshot's data passes through (the disk's volume, pinned
//! at the snapshot's instant, and the region's block objects). The contract is
//! `docs/snapshots.md`; its guarantee numbers are cited below.
//!
//! ```text
//!  control plane                                   the disk's host (snapshot reconciler)
//!  CreateSnapshot: row `progressing`, 0 %          VolumeService::pin           (guarantee 1)
//!    ── SnapshotTarget { pinned: None } ──▶        ── Report::SnapshotPinned ──▶ CreationTime
//!    ── SnapshotTarget { pinned: Some } ──▶        reads each range changed since the base
//!                                                  (VolumeService::pinned_ranges / read_pinned),
//!                                                  SHA-256, ── Report::SnapshotClaimed ──▶
//!                                                  (references held for the upload), then
//!                                                  BlockStore::put unless it `has` it,
//!                                                  ── Report::SnapshotProgress ──▶
//!                                                  ── Report::SnapshotUploaded ──▶ one transaction:
//!                                                     manifest = base's + the ranges sent,
//!                                                     references taken, `accomplished`
//!  pins_to_release ──▶                             VolumeService::release_pin ── PinReleased ──▶
//! ```
//!
//! A range is 1 MiB of the disk ([`RANGE_BYTES`]); a range that reads as zeros is stored as
//! nothing. Block objects are named by the hex SHA-256 of their bytes, so a put is idempotent
//! and a block two snapshots share is one object; the control plane counts references and
//! deletes what nothing names (guarantee 4).

use crate::Fut;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The unit a snapshot stores: 1 MiB of the disk's logical space.
pub const RANGE_BYTES: u64 = 1 << 20;

/// A snapshot's status as `DescribeSnapshots` shows it (the API's lower-case spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    Progressing,
    Accomplished,
    Failed,
}

impl SnapshotStatus {
    pub const ALL: &'static [SnapshotStatus] =
        &[SnapshotStatus::Progressing, SnapshotStatus::Accomplished, SnapshotStatus::Failed];

    /// The API's (and the store's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Progressing => "progressing",
            SnapshotStatus::Accomplished => "accomplished",
            SnapshotStatus::Failed => "failed",
        }
    }

    /// From the API's spelling (exact).
    pub fn parse(s: &str) -> Option<SnapshotStatus> {
        SnapshotStatus::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pin holds: the volume's size and the log's next sequence number at the instant
/// (a later snapshot uploads the ranges whose change sequence is at or after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    pub next_seq: u64,
    pub size_bytes: u64,
}

/// The snapshot a new one is incremental to: the disk's newest `accomplished` snapshot when
/// the new one was created, and the `next_seq` of its pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBase {
    pub snapshot_id: String,
    pub next_seq: u64,
}

/// One `progressing` snapshot: the snapshot reconciler's work list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTarget {
    pub id: String,
    /// The disk's volume (named by the disk's id).
    pub volume: String,
    /// `None` until the host reported the pin ([`Report::SnapshotPinned`](crate::Report)).
    pub pinned: Option<PinInfo>,
    /// `None`: a full snapshot (every range holding data is uploaded).
    pub base: Option<SnapshotBase>,
}

/// One range of a snapshot as the host read it at the instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeBlock {
    /// Range index: the range starts at `range * RANGE_BYTES`.
    pub range: u64,
    /// The hex SHA-256 of its bytes (the block object's name); `None`: it reads as zeros.
    pub block: Option<String>,
}

/// A block an upload names: its hash and its length (1 MiB, or less for a disk's last range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockClaim {
    pub hash: String,
    pub bytes: u64,
}

/// What the host uploaded for a snapshot, reported once every block object it names is
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotUpload {
    pub id: String,
    /// The base the ranges are relative to, as the target named it: the control plane
    /// refuses the upload (and clears the base, so the host uploads in full) if that base
    /// is gone.
    pub base: Option<String>,
    /// Every range read: for a base, those changed since it (the others are the base's);
    /// for a full snapshot, every range holding data.
    pub ranges: Vec<RangeBlock>,
    /// Bytes read from the volume (the ranges read, 1 MiB each, the last one cut to size).
    pub read_bytes: u64,
    /// Bytes of block objects this upload stored (those the region did not have yet).
    pub stored_bytes: u64,
}

/// A pin the host should release: its snapshot committed, failed or was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRef {
    pub volume: String,
    pub snapshot_id: String,
}

/// The region's block objects, as the host's uploader sees them (the system bucket of
/// `docs/snapshots.md`). Deleting is the control plane's job (it owns the counts).
pub trait BlockStore: Send + Sync + 'static {
    /// Whether the object named `hash` is stored.
    fn has(&self, hash: String) -> Fut<'_, bool>;
    /// Stores `data` as `hash` (idempotent: the name is the hash of the bytes).
    fn put(&self, hash: String, data: Bytes) -> Fut<'_, ()>;
    /// The object's bytes; `None` if it is not stored.
    fn get(&self, hash: String) -> Fut<'_, Option<Bytes>>;
}
