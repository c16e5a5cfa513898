//! What a host tells the control plane.
//!
//! Every report is applied by the control plane in one store transaction. Status moves are
//! compare-and-set: a move from `from` happens only if the instance is still `from`, so a host
//! never overwrites what the API changed meanwhile (a `StopInstance` that landed while the
//! guest was booting wins). Times are stamped by the control plane's clock, not the host's.

use crate::snapshot::{BlockClaim, PinInfo, SnapshotUpload};
use crate::{DiskStatus, InstanceStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The host moved an instance on: `from` → `to`, if it is still `from`.
    Moved {
        id: String,
        from: InstanceStatus,
        to: InstanceStatus,
        /// The guest has just booted: stamp the instance's start time.
        started: bool,
        /// One of the reboots asked for is done.
        reboot_done: bool,
    },
    /// A start failed: the instance stays `Stopped`, and is no longer wanted running.
    StartFailed { id: String, error: String },
    /// A guest that was `Running` stopped without being asked: it shut down from inside
    /// (`crashed: false`), or its virtual machine's process ended (`crashed: true`, which the
    /// control plane records as a `SystemFailure.Stop` event).
    StoppedOnItsOwn { id: String, crashed: bool },
    /// The forced stop (or reboot) asked for is done.
    ForcedStopDone { id: String },
    /// The host moved a disk on: `from` → `to`, if it is still `from`. A move from
    /// `Detaching` to `Available` also ends the disk's attachment.
    DiskMoved { id: String, from: DiskStatus, to: DiskStatus },
    /// The disk's volume exists now at `gib` (made, grown or re-initialised).
    VolumeReady { id: String, gib: u64 },
    /// The volume of a deleted disk is gone.
    VolumeDeleted { id: String },
    /// A snapshot's instant is taken (docs/snapshots.md guarantee 1): the control plane
    /// stamps its `CreationTime` and keeps the pin's sequence for later snapshots' bases.
    SnapshotPinned { id: String, pin: PinInfo },
    /// How far a snapshot's upload is, in percent (0 to 99; 100 comes with the commit).
    SnapshotProgress { id: String, percent: u8 },
    /// The blocks an upload is about to check and store (docs/snapshots.md, "Claims"): the
    /// control plane counts a reference on each for the snapshot before the host looks for
    /// the object, so no sweep deletes an object an upload found; `false` (nothing claimed)
    /// if one of them is being swept or the snapshot is no longer `progressing`: the host
    /// stops this attempt and tries again on a later pass.
    SnapshotClaimed { id: String, blocks: Vec<BlockClaim> },
    /// Every block object of a snapshot is stored: the control plane commits it in one
    /// transaction (manifest, references, `accomplished`), or answers `false` and clears
    /// the base if the base is gone (the host then uploads it in full).
    SnapshotUploaded(SnapshotUpload),
    /// A snapshot cannot be made (its disk's volume is gone, the volume service refused):
    /// it becomes `failed` with this reason.
    SnapshotFailed { id: String, error: String },
    /// The pin of a snapshot is released.
    PinReleased { snapshot_id: String },
}
