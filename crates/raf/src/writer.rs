//! Group commit: the one task that appends to a volume's log.
//!
//! Guest writes and compaction's moves queue to this task, which packs what is waiting
//! into one record each and all of them into one append (bounded by
//! [`Config::batch_bytes`](crate::Config)), rolls the segment when the append would take
//! it past its size, and, once the append is acknowledged (on every replica, where it
//! survives the death of any process), applies the records to the index in log order and
//! only then answers each request. So a write is acknowledged only when it is on every
//! replica and visible.
//!
//! Flushes queue here too ([`SyncReq`]): after the batch in hand is appended, one sync of
//! the current segment answers every flush that was waiting, so concurrent flushes share
//! it (group commit of fsyncs). Earlier segments were sealed when the log rolled, and a
//! seal is durable, so the current segment is all a flush needs. `docs/disks.md` says why
//! this is safe with QEMU's reconnecting NBD client.
//!
//! Guests come first: compaction's moves get what guest writes leave of an append, but
//! never less than their minimum share ([`crate::flow::compaction_share`]).
//!
//! An append that fails leaves the end of the segment unknown (the store may have kept
//! some of it), so the writer fails every later request: the volume must be opened again,
//! which seals the segment at what survived and replays it. The usual cause is being
//! fenced by a newer writer, for which this is the right answer anyway.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Position;
use crate::error::RafError;
use crate::flow::compaction_share;
use crate::index::{Location, BLOCK};
use crate::record::{self, Kind};
use crate::replay::{apply, SegmentInfo};
use crate::store::{Appender, StoreError};
use crate::volume::Shared;

/// A guest's change to the volume: one record.
pub(crate) enum GuestOp {
    Write { lba: u64, data: Bytes },
    Zero { lba: u64, nblocks: u32 },
}

pub(crate) struct GuestReq {
    pub op: GuestOp,
    pub done: oneshot::Sender<Result<(), RafError>>,
}

/// Compaction's copy of live blocks, to be moved only where still live at `from`.
pub(crate) struct MoveReq {
    pub lba: u64,
    pub from: Location,
    pub data: Bytes,
    /// Answers the blocks actually moved.
    pub done: oneshot::Sender<Result<u64, RafError>>,
}

impl GuestOp {
    /// The bytes its record takes in the append.
    fn bytes(&self) -> u64 {
        let data = match self {
            GuestOp::Write { data, .. } => data.len() as u64,
            GuestOp::Zero { .. } => 0,
        };
        record::HEADER_LEN as u64 + data
    }
}

enum Item {
    Guest(GuestReq),
    Move(MoveReq),
}

/// A flush of the log: answered once every append acknowledged before it is durable.
pub(crate) type SyncReq = oneshot::Sender<Result<(), RafError>>;

/// The writer task: runs until the guest queue closes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut guests: mpsc::Receiver<GuestReq>,
    mut moves: mpsc::Receiver<MoveReq>,
    mut syncs: mpsc::Receiver<SyncReq>,
) {
    let mut writer = Writer { shared, appender: None, segment: 0, dirty: false };
    let mut next_guest: Option<GuestReq> = None;
    let mut next_move: Option<MoveReq> = None;
    let mut waiting: Vec<SyncReq> = Vec::new();
    let mut moves_open = true;
    loop {
        if next_guest.is_none() && next_move.is_none() && waiting.is_empty() {
            tokio::select! {
                biased;
                g = guests.recv() => match g {
                    Some(g) => next_guest = Some(g),
                    None => break,
                },
                s = syncs.recv() => waiting.extend(s),
                m = moves.recv(), if moves_open => match m {
                    Some(m) => next_move = Some(m),
                    None => moves_open = false,
                },
            }
            continue;
        }
        let config = &writer.shared.config;
        let limit = config.batch_bytes;
        if next_move.is_none() && moves_open {
            next_move = moves.try_recv().ok();
        }
        // Room is kept for compaction's floor when it has work waiting.
        let floor = compaction_share(limit, u64::MAX, config.compaction.min_share);
        let guest_cap = if next_move.is_some() { limit - floor } else { limit };
        let mut items = Vec::new();
        let mut guest_bytes = 0u64;
        while let Some(g) = next_guest.take().or_else(|| guests.try_recv().ok()) {
            let b = g.op.bytes();
            if !items.is_empty() && guest_bytes + b > guest_cap {
                next_guest = Some(g);
                break;
            }
            guest_bytes += b;
            items.push(Item::Guest(g));
        }
        let share = compaction_share(limit, guest_bytes, config.compaction.min_share);
        let mut move_bytes = 0u64;
        let mut took_move = false;
        while let Some(m) = next_move.take().or_else(|| if moves_open { moves.try_recv().ok() } else { None }) {
            let b = m.data.len() as u64;
            // One move per append at least, so a small floor still makes progress.
            if (took_move || share == 0) && move_bytes + b > share {
                next_move = Some(m);
                break;
            }
            took_move = true;
            move_bytes += b;
            items.push(Item::Move(m));
        }
        while let Ok(s) = syncs.try_recv() {
            waiting.push(s);
        }
        writer.commit(items).await;
        if !waiting.is_empty() {
            let synced = writer.sync().await;
            for s in waiting.drain(..) {
                let _ = s.send(synced.clone());
            }
        }
    }
    // Pending moves are answered by dropping them; the guest queue is closed and empty.
    drop(next_move);
    writer.finish().await;
}

struct Writer {
    shared: Arc<Shared>,
    appender: Option<Box<dyn Appender>>,
    segment: u64,
    /// Appends were acknowledged since the segment was last synced.
    dirty: bool,
}

impl Writer {
    /// Appends `items` as one append and answers them.
    async fn commit(&mut self, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        if let Some(err) = self.shared.failed() {
            return fail_all(items, &RafError::Failed(err));
        }
        let epoch = self.shared.epoch;
        let first_seq = self.shared.state.lock().next_seq;
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let seq = first_seq + i as u64;
            let (kind, lba, nblocks, data): (Kind, u64, u32, &[u8]) = match item {
                Item::Guest(GuestReq { op: GuestOp::Write { lba, data }, .. }) => {
                    (Kind::Write, *lba, (data.len() as u64 / BLOCK) as u32, data)
                }
                Item::Guest(GuestReq { op: GuestOp::Zero { lba, nblocks }, .. }) => (Kind::Zero, *lba, *nblocks, &[]),
                Item::Move(m) => (Kind::Move { from: m.from }, m.lba, (m.data.len() as u64 / BLOCK) as u32, &m.data),
            };
            let data_at = record::encode(&mut buf, kind, epoch, seq, lba, nblocks, data);
            placed.push((kind, lba, nblocks, data_at as u64));
        }
        let batch_len = buf.len() as u64;
        let start = match self.append(Bytes::from(buf)).await {
            Ok(start) => start,
            Err(err) => {
                tracing::warn!(volume = %self.shared.name, %err, "append failed; the volume takes no more writes");
                self.shared.state.lock().failed = Some(err.clone());
                return fail_all(items, &RafError::Failed(err));
            }
        };
        let mut moved = Vec::with_capacity(items.len());
        let checkpoint_due = {
            let mut guard = self.shared.state.lock();
            let state = &mut *guard;
            for (i, &(kind, lba, nblocks, data_at)) in placed.iter().enumerate() {
                let at = Location { segment: self.segment, offset: start + data_at };
                let seq = first_seq + i as u64;
                moved.push(apply((&mut state.index, &mut state.changes), kind, (lba, nblocks), at, seq));
            }
            let len = self.appender.as_ref().map_or(0, |a| a.len());
            if let Some(seg) = state.segments.get_mut(&self.segment) {
                seg.len = len;
            }
            state.position = Position { segment: self.segment, offset: len };
            state.next_seq = first_seq + placed.len() as u64;
            state.since_checkpoint += batch_len;
            state.since_checkpoint >= self.shared.config.checkpoint_every
        };
        if checkpoint_due {
            self.shared.checkpoint_due.notify_one();
        }
        for (item, n) in items.into_iter().zip(moved) {
            match item {
                Item::Guest(g) => {
                    let _ = g.done.send(Ok(()));
                }
                Item::Move(m) => {
                    let _ = m.done.send(Ok(n));
                }
            }
        }
    }

    /// Appends to the current segment, rolling to a new one first when needed.
    async fn append(&mut self, data: Bytes) -> Result<u64, StoreError> {
        let len = data.len() as u64;
        let full =
            self.appender.as_ref().is_some_and(|a| !a.is_empty() && a.len() + len > self.shared.config.segment_bytes);
        if full {
            self.seal().await?;
        }
        if self.appender.is_none() {
            let (seq, appender) = self.shared.store.new_segment(&self.shared.name, self.shared.epoch).await?;
            let mut state = self.shared.state.lock();
            state.segments.insert(seq, SegmentInfo { file: appender.file(), len: 0, sealed: false });
            state.position = Position { segment: seq, offset: 0 };
            self.segment = seq;
            self.appender = Some(appender);
        }
        let start = match self.appender.as_mut() {
            Some(a) => a.append(data).await?,
            None => return Err(StoreError::Unavailable("no segment to append to".into())),
        };
        self.dirty = true;
        Ok(start)
    }

    /// Makes every append acknowledged so far durable. A sync that fails leaves the
    /// volume failed, as a failed append does: what the replicas kept is decided by the
    /// next open.
    async fn sync(&mut self) -> Result<(), RafError> {
        if let Some(err) = self.shared.failed() {
            return Err(RafError::Failed(err));
        }
        let Some(a) = self.appender.as_mut().filter(|_| self.dirty) else { return Ok(()) };
        match a.sync().await {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(volume = %self.shared.name, %err, "sync failed; the volume takes no more writes");
                self.shared.state.lock().failed = Some(err.clone());
                Err(RafError::Failed(err))
            }
        }
    }

    async fn seal(&mut self) -> Result<(), StoreError> {
        if let Some(mut a) = self.appender.take() {
            a.seal().await?;
            // A sealed segment is durable.
            self.dirty = false;
            if let Some(seg) = self.shared.state.lock().segments.get_mut(&self.segment) {
                seg.len = a.len();
                seg.sealed = true;
            }
        }
        Ok(())
    }

    /// On close: the current segment is sealed, so the registry knows its final length.
    async fn finish(&mut self) {
        if self.shared.failed().is_some() {
            return;
        }
        if let Err(err) = self.seal().await {
            tracing::warn!(volume = %self.shared.name, %err, "sealing the last segment on close failed");
            self.shared.state.lock().failed = Some(err);
        }
    }
}

fn fail_all(items: Vec<Item>, err: &RafError) {
    for item in items {
        match item {
            Item::Guest(g) => {
                let _ = g.done.send(Err(err.clone()));
            }
            Item::Move(m) => {
                let _ = m.done.send(Err(err.clone()));
            }
        }
    }
}
