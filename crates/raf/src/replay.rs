//! Rebuilding a volume's index on open: load its checkpoint, then replay the log after the
//! position the checkpoint covers. The same for the volume being opened and for its
//! frozen parents.
//!
//! Replay applies records exactly as the writer did when they were acknowledged (one
//! function, [`apply`], for both), in log order, so the index rebuilt is the index the
//! last writer had, plus whatever of its last in-flight append survived whole.

use std::collections::BTreeMap;

use crate::changes::Changes;
use crate::checkpoint::{self, Checkpoint, Position};
use crate::error::RafError;
use crate::index::{Index, Location, Target};
use crate::record::{self, Kind};
use crate::store::{FileId, Lease, LogStore};

/// A segment as the engine tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub file: FileId,
    pub len: u64,
    pub sealed: bool,
}

/// A volume's state rebuilt from the store.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub index: Index,
    pub changes: Changes,
    /// The seq the next record gets.
    pub next_seq: u64,
    /// The end of the log.
    pub position: Position,
    /// What the registry's checkpoint covers.
    pub covered: Position,
    pub segments: BTreeMap<u64, SegmentInfo>,
}

/// Applies record `seq`, whose blocks (if any) are at `at`, to the index and the change
/// sequences; returns the blocks it changed (a Move changes only those still where it
/// copied them from, and changes no range's contents).
pub(crate) fn apply(
    (index, changes): (&mut Index, &mut Changes),
    kind: Kind,
    (lba, nblocks): (u64, u32),
    at: Location,
    seq: u64,
) -> u64 {
    let n = u64::from(nblocks);
    match kind {
        Kind::Write => index.map(lba, n, Target::Data(at)),
        Kind::Zero => index.map(lba, n, Target::Zero),
        Kind::Move { from } => return index.remap_if(lba, n, from, at),
    }
    changes.record(lba, n, seq);
    n
}

/// Reads and decodes the checkpoint-format file `file` (a checkpoint or a pin).
pub(crate) async fn read_checkpoint(store: &dyn LogStore, file: FileId) -> Result<Checkpoint, RafError> {
    let header = store.read(file, 0, checkpoint::HEADER_LEN as u64).await?;
    let total = checkpoint::total_len(&header)?;
    let buf = store.read(file, 0, total).await?;
    Ok(checkpoint::decode(&buf)?)
}

/// Loads the volume `lease` describes.
pub(crate) async fn load(store: &dyn LogStore, lease: &Lease) -> Result<Loaded, RafError> {
    let (mut index, mut changes, mut next_seq, covered) = match &lease.checkpoint {
        Some(c) => {
            let cp = read_checkpoint(store, c.file).await?;
            if cp.covers != (Position { segment: c.covers_seq, offset: c.covers_offset }) {
                return Err(RafError::CheckpointMismatch);
            }
            (cp.index, cp.changes, cp.next_seq, cp.covers)
        }
        None => (Index::new(), Changes::new(), 0, Position { segment: 0, offset: 0 }),
    };
    let mut position = covered;
    let mut segments = BTreeMap::new();
    for seg in &lease.segments {
        segments.insert(seg.seq, SegmentInfo { file: seg.file, len: seg.len, sealed: true });
        if seg.seq < covered.segment {
            continue;
        }
        let start = if seg.seq == covered.segment { covered.offset } else { 0 };
        if start > seg.len {
            return Err(RafError::CheckpointMismatch);
        }
        if start < seg.len {
            let buf = store.read(seg.file, start, seg.len - start).await?;
            if (buf.len() as u64) != seg.len - start {
                return Err(RafError::ShortRead { want: seg.len - start, got: buf.len() as u64 });
            }
            for r in record::decode(&buf)?.records {
                if r.seq != next_seq {
                    return Err(RafError::SeqGap { segment: seg.seq, expected: next_seq, found: r.seq });
                }
                let at = Location { segment: seg.seq, offset: start + r.data_at as u64 };
                apply((&mut index, &mut changes), r.kind, (r.lba, r.nblocks), at, r.seq);
                next_seq += 1;
            }
        }
        position = Position { segment: seg.seq, offset: seg.len };
    }
    Ok(Loaded { index, changes, next_seq, position, covered, segments })
}
