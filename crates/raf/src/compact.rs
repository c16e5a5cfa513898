//! Checkpoints and compaction: the two jobs that keep a volume's log short.
//!
//! A checkpoint writes the index out (to a new file, made current in the registry) with
//! the log position it covers. The snapshot is taken under the state lock, where the index
//! and the position always agree (the writer updates both at once after each append), so
//! it needs no pause of the writer. Checkpoints are written one at a time, each covering a
//! later position than the last, so a slow one never replaces a newer one.
//!
//! Compaction picks the sealed segments whose live fraction is at most the threshold,
//! copies their live blocks and hands them to the writer as Move records (applied only
//! where the index still points at the copy's source), writes a checkpoint that covers
//! the moves, and only then drops the segments: until that checkpoint is current, an open
//! replays from an older one and may still need them. The newest segment is never
//! dropped, so the covered position never names a segment whose seq the registry could
//! hand out again.
//!
//! Segments a pin names are never compacted while it exists (`docs/snapshots.md`, "Pins and
//! compaction"): not chosen, and not dropped if a pin taken during the pass names them. The
//! pin's blocks thus stay where its index says, and once it is released the next pass finds
//! whatever only it held dead, and reclaims it.
//!
//! Compaction's bytes are paced by a token bucket and share each append with guest writes
//! ([`crate::flow`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::checkpoint;
use crate::error::RafError;
use crate::index::{Target, BLOCK};
use crate::store::FileId;
use crate::volume::Shared;
use crate::writer::MoveReq;

/// Appends of a checkpoint file are at most this.
const CHECKPOINT_PIECE: usize = 4 * 1024 * 1024;
/// Moves in flight at once: enough to fill appends, few enough to bound memory.
const MOVE_WINDOW: usize = 8;

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments dropped from the log.
    pub dropped: Vec<u64>,
    /// Live bytes copied (some may have been overwritten meanwhile and not moved).
    pub bytes_copied: u64,
    /// Log bytes freed by the drop.
    pub bytes_freed: u64,
}

/// Writes a checkpoint covering everything applied so far (nothing if the current one
/// already does).
pub(crate) async fn write_checkpoint(shared: &Shared) -> Result<(), RafError> {
    let mut last = shared.checkpoint_lock.lock().await;
    let (index, changes, next_seq, covers) = {
        let mut state = shared.state.lock();
        if state.position == *last {
            return Ok(());
        }
        state.since_checkpoint = 0;
        (state.index.clone(), state.changes.clone(), state.next_seq, state.position)
    };
    let bytes = checkpoint::encode(&index, &changes, next_seq, covers);
    drop((index, changes));
    let file = write_index_file(shared, &bytes).await?;
    // The checkpoint stands in for the log up to `covers`, so that log must be durable
    // before the checkpoint is current (and before compaction drops what it replaces).
    shared.sync_log().await?;
    shared.store.set_checkpoint(&shared.name, shared.epoch, file, covers.segment, covers.offset).await?;
    *last = covers;
    Ok(())
}

/// Writes an encoded index (a checkpoint's or a pin's) to a new, sealed checkpoint file.
pub(crate) async fn write_index_file(shared: &Shared, bytes: &[u8]) -> Result<FileId, RafError> {
    let mut file = shared.store.new_checkpoint_file(&shared.name, shared.epoch).await?;
    for piece in bytes.chunks(CHECKPOINT_PIECE) {
        file.append(Bytes::copy_from_slice(piece)).await?;
    }
    file.seal().await?;
    Ok(file.file())
}

/// One compaction pass.
pub(crate) async fn compact(shared: &Shared) -> Result<CompactionReport, RafError> {
    let _one_at_a_time = shared.compaction_lock.lock().await;
    let config = &shared.config.compaction;
    // (seq, file, length) of each segment to rewrite.
    let victims: Vec<(u64, FileId, u64)> = {
        let state = shared.state.lock();
        let newest = state.segments.keys().next_back().copied();
        state
            .segments
            .iter()
            .filter(|(&seq, seg)| seg.sealed && Some(seq) != newest && !state.pinned(seq))
            .filter(|(&seq, seg)| state.index.live_bytes(seq) as f64 <= config.live_fraction * seg.len as f64)
            .map(|(&seq, seg)| (seq, seg.file, seg.len))
            .collect()
    };
    let mut report = CompactionReport::default();
    if victims.is_empty() {
        return Ok(report);
    }
    let chunk_blocks = (config.chunk_bytes / BLOCK).max(1);
    let mut in_flight: VecDeque<oneshot::Receiver<Result<u64, RafError>>> = VecDeque::new();
    for &(seq, file, _) in &victims {
        let extents = shared.state.lock().index.extents_in(seq);
        for e in extents {
            let Target::Data(loc) = e.target else { continue };
            let mut done = 0;
            while done < e.len {
                let n = (e.len - done).min(chunk_blocks);
                let from = loc.advance(done);
                let bytes = n * BLOCK;
                let wait = shared.compaction_bucket.lock().take(bytes, shared.clock());
                if wait > Duration::ZERO {
                    tokio::time::sleep(wait).await;
                }
                let data = shared.store.read(file, from.offset, bytes).await?;
                if data.len() as u64 != bytes {
                    return Err(RafError::ShortRead { want: bytes, got: data.len() as u64 });
                }
                if in_flight.len() >= MOVE_WINDOW {
                    wait_move(&mut in_flight).await?;
                }
                let (tx, rx) = oneshot::channel();
                let req = MoveReq { lba: e.start + done, from, data, done: tx };
                shared.moves.send(req).await.map_err(|_| RafError::Closed)?;
                in_flight.push_back(rx);
                report.bytes_copied += bytes;
                done += n;
            }
        }
    }
    while !in_flight.is_empty() {
        wait_move(&mut in_flight).await?;
    }
    write_checkpoint(shared).await?;
    // A segment still live (it should not be: nothing writes to a sealed segment) is kept.
    let (drop, freed): (Vec<u64>, u64) = {
        let state = shared.state.lock();
        // A pin taken since the victims were chosen may hold one (it copied the index before
        // the moves): that one stays, and goes at a pass after the pin's release.
        let drop: Vec<u64> =
            victims.iter().map(|v| v.0).filter(|&seq| state.index.live_bytes(seq) == 0 && !state.pinned(seq)).collect();
        let freed = victims.iter().filter(|v| drop.contains(&v.0)).map(|v| v.2).sum();
        (drop, freed)
    };
    if drop.is_empty() {
        return Ok(report);
    }
    shared.store.drop_segments(&shared.name, shared.epoch, &drop).await?;
    {
        let mut state = shared.state.lock();
        for seq in &drop {
            state.segments.remove(seq);
        }
    }
    report.dropped = drop;
    report.bytes_freed = freed;
    Ok(report)
}

async fn wait_move(in_flight: &mut VecDeque<oneshot::Receiver<Result<u64, RafError>>>) -> Result<(), RafError> {
    if let Some(rx) = in_flight.pop_front() {
        rx.await.map_err(|_| RafError::Closed)??;
    }
    Ok(())
}
