//! Cloud disks: the status vocabulary both sides speak, what an instance's guest is given of
//! its disks, what the control plane wants of each disk's volume, and the host's volume store.
//!
//! A disk's bytes live in a *volume* named by the disk's id (a RAF on Pangu in the real
//! service; see docs/disks.md). The control plane records a decision (a new disk is
//! `Creating`, an attach is `Attaching` …) in one store transaction; the host's disk
//! reconciler makes or changes the volume, hot-plugs it through the compute driver, and
//! reports each move as a compare-and-set on the status, as instances do.

use crate::snapshot::PinInfo;
use crate::Fut;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What `DescribeDisks` shows a disk as (the API's spellings, `In_use` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DiskStatus {
    Creating,
    Available,
    Attaching,
    #[serde(rename = "In_use")]
    InUse,
    Detaching,
    ReIniting,
}

impl DiskStatus {
    pub const ALL: &'static [DiskStatus] = &[
        DiskStatus::Creating,
        DiskStatus::Available,
        DiskStatus::Attaching,
        DiskStatus::InUse,
        DiskStatus::Detaching,
        DiskStatus::ReIniting,
    ];

    /// The API's (and the store's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskStatus::Creating => "Creating",
            DiskStatus::Available => "Available",
            DiskStatus::Attaching => "Attaching",
            DiskStatus::InUse => "In_use",
            DiskStatus::Detaching => "Detaching",
            DiskStatus::ReIniting => "ReIniting",
        }
    }

    /// From the API's spelling (exact, as the API compares it).
    pub fn parse(s: &str) -> Option<DiskStatus> {
        DiskStatus::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for DiskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of the frozen volume holding an image's root disk, the parent of every system
/// disk made from that image (copy-on-write: a new system disk costs nothing per image byte).
pub fn image_volume_name(image_id: &str) -> String {
    format!("img-{image_id}")
}

/// One disk as an instance's guest gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskPlan {
    /// The volume's name: the disk's id.
    pub volume: String,
    pub size_gib: u64,
    /// `/dev/xvda` for the system disk, `/dev/xvdb`… for data disks.
    pub device: String,
    /// What the guest reads as the disk's serial number: the disk's id, so a guest can find
    /// its disks by `/dev/disk/by-id` whatever order they were plugged in.
    pub serial: String,
    /// Nothing is attached read-only yet (shared disks would be).
    pub read_only: bool,
    /// The disk's category (`cloud_essd` …) and performance level (`PL1` …, empty unless
    /// ESSD): its server enforces the category's published IOPS and throughput.
    pub category: String,
    pub performance_level: String,
}

/// What the control plane wants of one disk's volume, and where the disk stands: the disk
/// reconciler's work list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskTarget {
    pub id: String,
    /// What clients see now.
    pub status: DiskStatus,
    /// The instance the disk is attached to (or being attached to, or detached from).
    pub instance_id: Option<String>,
    /// The size the disk has in the API.
    pub size_gib: u64,
    /// The size the host last reported its volume at; 0: the volume is not made yet.
    pub volume_gib: u64,
    /// The volume a new (or re-initialised) volume starts from: the image's, for system
    /// disks; `None`: empty.
    pub parent: Option<String>,
    /// How the guest gets it, when attached.
    pub plan: DiskPlan,
    /// The snapshot a new volume is filled from (`CreateDisk` with `SnapshotId`): once made,
    /// the host writes the snapshot's blocks ([`ControlPlane::restore_plan`](crate::ControlPlane))
    /// before it reports the volume ready.
    #[serde(default)]
    pub restore_from: Option<String>,
}

/// The host's volumes: where disks' bytes live. The disk reconciler is the only caller, and
/// calls each volume one step at a time; every method is idempotent, so a step a crash
/// interrupted is simply done again.
pub trait VolumeService: Send + Sync + 'static {
    /// Makes the volume `name` of `size_bytes`, empty or as a copy-on-write child of
    /// `parent`. An existing volume is kept (and grown to `size_bytes` if smaller).
    fn create(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()>;
    /// Grows the volume to `size_bytes` (never shrinks it).
    fn resize(&self, name: String, size_bytes: u64) -> Fut<'_, ()>;
    /// Drops the volume's contents: it becomes empty, or `parent`'s again, of `size_bytes`.
    fn reinit(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()>;
    /// Deletes the volume; a missing one is not an error.
    fn delete(&self, name: String) -> Fut<'_, ()>;
    /// Whether the volume exists.
    fn exists(&self, name: String) -> Fut<'_, bool>;

    // Snapshots (docs/snapshots.md, "Pins and compaction").

    /// Pins the volume's contents now for snapshot `snapshot_id` (guarantee 1: taken by the
    /// disk's writer between two batches; the pinned blocks are durable and kept from
    /// compaction until released). Idempotent: pinning again returns the existing pin.
    fn pin(&self, name: String, snapshot_id: String) -> Fut<'_, PinInfo>;
    /// The ranges ([`RANGE_BYTES`](crate::snapshot::RANGE_BYTES)) of a pin to read:
    /// `since: Some(seq)`, those whose change sequence is at or after `seq`; `None`, every
    /// range holding data at the instant (its own or its parents'). Ascending.
    fn pinned_ranges(&self, name: String, snapshot_id: String, since: Option<u64>) -> Fut<'_, Vec<u64>>;
    /// `len` bytes from `offset` as they were at the pin's instant.
    fn read_pinned(&self, name: String, snapshot_id: String, offset: u64, len: u64) -> Fut<'_, Bytes>;
    /// Writes `(offset, bytes)` pieces into a volume no guest uses (a disk being made from a
    /// snapshot), durably before it returns. Idempotent (the same bytes again).
    fn write_blocks(&self, name: String, writes: Vec<(u64, Bytes)>) -> Fut<'_, ()>;
    /// Releases the pin; a missing pin (or volume) is not an error.
    fn release_pin(&self, name: String, snapshot_id: String) -> Fut<'_, ()>;
}

/// GiB, in bytes.
pub const GIB: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_text() {
        for &s in DiskStatus::ALL {
            assert_eq!(DiskStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(DiskStatus::parse("in_use"), None);
        assert_eq!(DiskStatus::parse("InUse"), None);
        assert_eq!(image_volume_name("m-1"), "img-m-1");
    }
}
