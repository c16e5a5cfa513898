//! Volumes: the roots of random-access files (cloud disks, image bases) as the Pangu master
//! keeps them, and the rules it checks before changing one. Pure: types and functions, no
//! store or network (the master in [`crate::master`] does the I/O, its tables are in
//! [`crate::master::namespace`]).
//!
//! A volume is named by a string (`d-…` for a disk, `img-…` for an image base) and owns
//! Pangu files of two kinds ([`VolumeFileKind`]): log *segments*, numbered in order, and
//! *checkpoint* files, one of which is current and covers the log up to a position, and
//! *pins*: index copies named by a snapshot id, holding the volume's contents at one instant
//! until released (`docs/snapshots.md`, "Pins and compaction"). The
//! layer above (the RAF in `crates/disk`) gives those files their meaning; the master only
//! keeps the list, so that a disk's files are never mistaken for garbage and survive a
//! restart.
//!
//! # One writer: epochs
//!
//! A writer takes a volume by *acquiring* it, which bumps the volume's epoch. Every change a
//! writer asks for carries the epoch it got, and one that is not the current epoch is
//! refused ([`check_epoch`]): a writer that lost its volume to another can no longer add,
//! checkpoint, drop or freeze anything. Its appends to files it already has are refused
//! too: an acquire seals every unsealed segment (the chunkservers refuse appends to a sealed
//! chunk), and the master refuses new chunks and seals to files made under an older epoch.

use serde::{Deserialize, Serialize};

use crate::master::FileId;

/// The block size of volumes: sizes are multiples of it.
pub const BLOCK_BYTES: u64 = 4096;

/// The longest volume name.
pub const MAX_NAME_LEN: usize = 128;

/// What a volume's file is to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFileKind {
    /// A piece of the log, numbered (`seq`) in the order it was written.
    Segment,
    /// An index checkpoint; the volume's current one, or one a crash left unreferenced.
    Checkpoint,
    /// An index copy held for a snapshot, named by its id (made as a checkpoint file, then
    /// registered as a pin).
    Pin,
}

impl VolumeFileKind {
    /// The spelling kept in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFileKind::Segment => "segment",
            VolumeFileKind::Checkpoint => "checkpoint",
            VolumeFileKind::Pin => "pin",
        }
    }

    /// The kind spelt `s` in the store; `None` for anything else.
    pub fn parse(s: &str) -> Option<VolumeFileKind> {
        match s {
            "segment" => Some(VolumeFileKind::Segment),
            "checkpoint" => Some(VolumeFileKind::Checkpoint),
            "pin" => Some(VolumeFileKind::Pin),
            _ => None,
        }
    }
}

/// The current checkpoint: `file` holds the index of every record up to `covers_offset` in
/// segment `covers_seq` (opening replays the log after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCheckpoint {
    pub file: FileId,
    pub covers_seq: u64,
    pub covers_offset: u64,
}

/// One log segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSegment {
    pub seq: u64,
    pub file: FileId,
    /// Its length: final once `sealed` (an acquire seals every segment before it answers).
    /// For a segment still being written (a describe of a volume in use), the length of
    /// its sealed chunks: a prefix of what is there.
    pub len: u64,
    pub sealed: bool,
}

/// A pin: the volume's contents at one instant, held for the snapshot `name` until released.
/// `file` holds the index then (the RAF's checkpoint format); the log's next sequence number
/// and the volume's size then are kept beside it, so a pin is described without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePin {
    pub name: String,
    pub file: FileId,
    pub next_seq: u64,
    pub size_bytes: u64,
}

/// A volume's root as a writer (after an acquire) or a reader (a describe) gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLease {
    /// The epoch every change must carry (for a describe: the current one, not a lease).
    pub epoch: u64,
    pub size_bytes: u64,
    /// The frozen volume this one is a copy-on-write clone of: blocks never written here
    /// read from it.
    pub parent: Option<String>,
    pub frozen: bool,
    pub checkpoint: Option<VolumeCheckpoint>,
    /// In `seq` order.
    pub segments: Vec<VolumeSegment>,
    /// Its pins, by name. (Absent from an older master's answer: none.)
    #[serde(default)]
    pub pins: Vec<VolumePin>,
}

/// Why the master refused a change to a volume. Data, so that it crosses a transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum VolumeError {
    #[error("volume name {0:?} is not 1 to 128 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    #[error("volume size {0} is not a positive multiple of 4096 bytes")]
    InvalidSize(u64),
    #[error("no such volume {0:?}")]
    NoSuchVolume(String),
    #[error("volume {0:?} already exists")]
    VolumeExists(String),
    #[error("parent volume {0:?} does not exist")]
    ParentUnknown(String),
    #[error("parent volume {0:?} is not frozen: only a frozen volume can be cloned")]
    ParentNotFrozen(String),
    #[error("volume {0:?} is frozen")]
    VolumeFrozen(String),
    #[error("volume {volume:?} is at epoch {current}: the caller's lease is stale")]
    StaleEpoch { volume: String, current: u64 },
    #[error("volume {volume:?} is {size_bytes} bytes: it cannot shrink to {requested}")]
    ShrinkRefused { volume: String, size_bytes: u64, requested: u64 },
    #[error("volume {volume:?} is the parent of {clone:?}")]
    VolumeInUse { volume: String, clone: String },
    #[error("file {file} is not a sealed checkpoint file of volume {volume:?}")]
    NotACheckpoint { volume: String, file: FileId },
    #[error("file {file} is not a sealed checkpoint file of volume {volume:?}: it cannot become a pin")]
    NotAPinFile { volume: String, file: FileId },
    #[error("pin name {0:?} is not 1 to 128 letters, digits, '-', '_' or '.'")]
    InvalidPinName(String),
    #[error("file {file} belongs to volume {volume:?}: only the volume's calls change it")]
    OwnedByVolume { file: FileId, volume: String },
}

/// Checks a volume name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`, `_` or `.`
/// (disk and image ids are; anything else is a caller's bug).
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.to_owned()))
    }
}

/// Checks a pin's name (a snapshot id) by the rule of volume names.
pub fn check_pin_name(name: &str) -> Result<(), VolumeError> {
    check_name(name).map_err(|_| VolumeError::InvalidPinName(name.to_owned()))
}

/// Checks a volume size: a positive multiple of [`BLOCK_BYTES`].
pub fn check_size(size_bytes: u64) -> Result<(), VolumeError> {
    if size_bytes > 0 && size_bytes % BLOCK_BYTES == 0 {
        Ok(())
    } else {
        Err(VolumeError::InvalidSize(size_bytes))
    }
}

/// A change carrying `given` may go on when the volume is at epoch `current`.
pub fn check_epoch(volume: &str, current: u64, given: u64) -> Result<(), VolumeError> {
    if given == current {
        Ok(())
    } else {
        Err(VolumeError::StaleEpoch { volume: volume.to_owned(), current })
    }
}

/// A resize from `size_bytes` to `requested`: volumes only grow (a guest's file system
/// would lose what lies past a cut), and stay block-aligned.
pub fn check_resize(volume: &str, size_bytes: u64, requested: u64) -> Result<(), VolumeError> {
    check_size(requested)?;
    if requested < size_bytes {
        return Err(VolumeError::ShrinkRefused { volume: volume.to_owned(), size_bytes, requested });
    }
    Ok(())
}

/// The checkpoint files that are not the current checkpoint: a writer made them and died (or
/// lost the volume) before installing them. Nothing references them, so an acquire deletes
/// them.
pub fn stray_checkpoints(files: &[(FileId, VolumeFileKind)], current: Option<FileId>) -> Vec<FileId> {
    files
        .iter()
        .filter(|(file, kind)| *kind == VolumeFileKind::Checkpoint && Some(*file) != current)
        .map(|(file, _)| *file)
        .collect()
}

/// Whether a writer's call on a file made under epoch `file_epoch` may go on when the
/// volume is at `current` (and is or is not frozen): only the current writer's files of a
/// live volume take new chunks and seals.
pub fn file_writable(file_epoch: u64, current: u64, frozen: bool) -> bool {
    !frozen && file_epoch == current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_round_trip_through_their_spelling() {
        for kind in [VolumeFileKind::Segment, VolumeFileKind::Checkpoint, VolumeFileKind::Pin] {
            assert_eq!(VolumeFileKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(VolumeFileKind::parse("Segment"), None);
        assert_eq!(VolumeFileKind::parse(""), None);
    }

    #[test]
    fn names_are_ids() {
        for good in ["d-bp1abc", "img-0123456789abcdef", "a", "x.y_z", &"n".repeat(MAX_NAME_LEN)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "d/../x", "d x", "d-é", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(check_name(bad), Err(VolumeError::InvalidName(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn pin_names_follow_volume_names() {
        assert_eq!(check_pin_name("s-bp1abc"), Ok(()));
        assert_eq!(check_pin_name("s/x"), Err(VolumeError::InvalidPinName("s/x".into())));
        assert_eq!(check_pin_name(""), Err(VolumeError::InvalidPinName(String::new())));
    }

    #[test]
    fn sizes_are_whole_blocks() {
        assert_eq!(check_size(4096), Ok(()));
        assert_eq!(check_size(20 << 30), Ok(()));
        assert_eq!(check_size(0), Err(VolumeError::InvalidSize(0)));
        assert_eq!(check_size(4097), Err(VolumeError::InvalidSize(4097)));
    }

    #[test]
    fn only_the_current_epoch_passes() {
        assert_eq!(check_epoch("d-1", 3, 3), Ok(()));
        for stale in [0, 2, 4] {
            assert_eq!(check_epoch("d-1", 3, stale), Err(VolumeError::StaleEpoch { volume: "d-1".into(), current: 3 }));
        }
    }

    #[test]
    fn volumes_only_grow() {
        assert_eq!(check_resize("d-1", 8192, 8192), Ok(()));
        assert_eq!(check_resize("d-1", 8192, 1 << 30), Ok(()));
        assert_eq!(
            check_resize("d-1", 8192, 4096),
            Err(VolumeError::ShrinkRefused { volume: "d-1".into(), size_bytes: 8192, requested: 4096 })
        );
        assert_eq!(check_resize("d-1", 8192, 10_000), Err(VolumeError::InvalidSize(10_000)));
    }

    #[test]
    fn strays_are_the_checkpoints_not_installed() {
        let files = [
            (FileId(1), VolumeFileKind::Segment),
            (FileId(2), VolumeFileKind::Checkpoint),
            (FileId(3), VolumeFileKind::Segment),
            (FileId(4), VolumeFileKind::Checkpoint),
        ];
        assert_eq!(stray_checkpoints(&files, Some(FileId(4))), vec![FileId(2)]);
        assert_eq!(stray_checkpoints(&files, None), vec![FileId(2), FileId(4)]);
        assert_eq!(stray_checkpoints(&files[..1], None), Vec::<FileId>::new());
    }

    #[test]
    fn only_the_current_writer_of_a_live_volume_writes() {
        assert!(file_writable(5, 5, false));
        assert!(!file_writable(4, 5, false));
        assert!(!file_writable(5, 5, true));
    }

    #[test]
    fn refusals_cross_as_data() {
        let e = VolumeError::StaleEpoch { volume: "d-1".into(), current: 9 };
        let back: VolumeError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
