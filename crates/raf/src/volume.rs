//! The engine: one open volume ([`Raf`]), its reads, writes and lifecycle.
//!
//! `open` acquires the volume (fencing any earlier writer), rebuilds its index from the
//! checkpoint and the log after it, loads its frozen parents the same way (read-only,
//! through `describe`), and starts three tasks: the writer (group commit,
//! [`crate::writer`]), the checkpointer (a checkpoint after every
//! [`Config::checkpoint_every`] bytes of log) and the background compactor.
//!
//! Reads look the range up under the state lock and read the pieces from the store after
//! releasing it. A write is answered only after its record is durable and the index
//! updated, so a read that starts after a write was acknowledged sees it. A read that
//! races with compaction dropping a segment it was about to read finds the file gone and
//! looks the range up again (the index then points at the moved copy).
//!
//! Dropping a `Raf` without `close` is a crash: its tasks are aborted where they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::changes::Changes;
use crate::checkpoint::Position;
use crate::compact::{self, CompactionReport};
use crate::config::Config;
use crate::error::RafError;
use crate::flow::TokenBucket;
use crate::index::{Index, BLOCK};
use crate::layers::{self, Layer};
use crate::pin::{self, Held};
use crate::record::MAX_RECORD_BLOCKS;
use crate::replay::{self, SegmentInfo};
use crate::store::{LogStore, PinRef, StoreError};
use crate::writer::{self, GuestOp, GuestReq, MoveReq, SyncReq};

/// How often a read looks its range up again after finding a segment dropped under it.
const READ_ATTEMPTS: usize = 3;

/// A volume's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The volume's size.
    pub logical_bytes: u64,
    /// Bytes of data the index maps (what the log must keep).
    pub live_bytes: u64,
    /// Bytes in the log's segments.
    pub log_bytes: u64,
    pub segments: usize,
    pub extents: usize,
}

/// What changes while the volume is open, under one lock.
pub(crate) struct State {
    pub index: Index,
    /// When each 1 MiB range last changed (`changes`), for incremental snapshots.
    pub changes: Changes,
    pub size: u64,
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub next_seq: u64,
    /// The end of the log as applied to the index.
    pub position: Position,
    pub since_checkpoint: u64,
    /// Set when an append failed: no more writes.
    pub failed: Option<StoreError>,
    /// The volume's pins, by name, with the segments each keeps from compaction.
    pub pins: BTreeMap<String, Held>,
}

impl State {
    /// Whether a pin (registered, or being taken) names a block in `segment`.
    pub fn pinned(&self, segment: u64) -> bool {
        self.pins.values().any(|h| h.segments.contains(&segment))
    }
}

/// What the volume's tasks share.
pub(crate) struct Shared {
    pub store: Arc<dyn LogStore>,
    pub name: String,
    pub epoch: u64,
    pub config: Config,
    pub state: Mutex<State>,
    pub parents: Vec<Layer>,
    /// Holds the position the registry's checkpoint covers; one checkpoint at a time.
    pub checkpoint_lock: tokio::sync::Mutex<Position>,
    pub checkpoint_due: Notify,
    pub compaction_lock: tokio::sync::Mutex<()>,
    /// One pin taken or released at a time (so pinning one name twice at once pins once).
    pub pin_lock: tokio::sync::Mutex<()>,
    pub compaction_bucket: Mutex<TokenBucket>,
    pub moves: mpsc::Sender<MoveReq>,
    /// Flushes of the log, answered by the writer.
    pub syncs: mpsc::Sender<SyncReq>,
    /// Tokio's clock, so tests can pause it.
    started: tokio::time::Instant,
}

impl Shared {
    pub fn failed(&self) -> Option<StoreError> {
        self.state.lock().failed.clone()
    }

    /// Makes every append acknowledged so far durable (through the writer, which syncs
    /// the current segment). With the writer gone, its last act was to seal that segment,
    /// which is durable unless it failed.
    pub async fn sync_log(&self) -> Result<(), RafError> {
        let (tx, rx) = oneshot::channel();
        let answered = match self.syncs.send(tx).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        match answered {
            Some(result) => result,
            None => match self.failed() {
                Some(err) => Err(RafError::Failed(err)),
                None => Ok(()),
            },
        }
    }

    /// Time since the volume was opened (the token bucket's clock).
    pub fn clock(&self) -> Duration {
        self.started.elapsed()
    }
}

struct Tasks {
    writer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// An open volume. Share it behind an `Arc`: every operation takes `&self`.
pub struct Raf {
    shared: Arc<Shared>,
    guests: Mutex<Option<mpsc::Sender<GuestReq>>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Option<Tasks>>,
}

impl Raf {
    /// Opens `name` for writing: the earlier writer, if any, is fenced.
    pub async fn open(store: Arc<dyn LogStore>, name: &str, config: Config) -> Result<Raf, RafError> {
        let lease = store.acquire(name).await?;
        let loaded = replay::load(&*store, &lease).await?;
        let parents = layers::load_parents(&*store, lease.parent.clone()).await?;
        // Every pin's segments are kept from compaction before it can run.
        let mut pins = BTreeMap::new();
        for pin in &lease.pins {
            let held = pin::load(&*store, pin).await?;
            pins.insert(pin.name.clone(), Held { pin: Some(pin.clone()), segments: held.index.segments().collect() });
        }
        let (guest_tx, guest_rx) = mpsc::channel(config.queue_depth.max(1));
        let (move_tx, move_rx) = mpsc::channel(8);
        let (sync_tx, sync_rx) = mpsc::channel(config.queue_depth.max(1));
        let c = &config.compaction;
        let bucket = TokenBucket::new(c.bytes_per_sec, c.burst_bytes.max(c.chunk_bytes), Duration::ZERO);
        let shared = Arc::new(Shared {
            store,
            name: name.to_string(),
            epoch: lease.epoch,
            state: Mutex::new(State {
                index: loaded.index,
                changes: loaded.changes,
                size: lease.size_bytes,
                segments: loaded.segments,
                next_seq: loaded.next_seq,
                position: loaded.position,
                since_checkpoint: 0,
                failed: None,
                pins,
            }),
            parents,
            checkpoint_lock: tokio::sync::Mutex::new(loaded.covered),
            checkpoint_due: Notify::new(),
            compaction_lock: tokio::sync::Mutex::new(()),
            pin_lock: tokio::sync::Mutex::new(()),
            compaction_bucket: Mutex::new(bucket),
            moves: move_tx,
            syncs: sync_tx,
            started: tokio::time::Instant::now(),
            config,
        });
        let (shutdown, _) = watch::channel(false);
        let writer = tokio::spawn(writer::run(shared.clone(), guest_rx, move_rx, sync_rx));
        let mut background = vec![tokio::spawn(checkpointer(shared.clone(), shutdown.subscribe()))];
        if let Some(every) = shared.config.compaction.interval {
            background.push(tokio::spawn(compactor(shared.clone(), every, shutdown.subscribe())));
        }
        Ok(Raf {
            shared,
            guests: Mutex::new(Some(guest_tx)),
            shutdown,
            tasks: Mutex::new(Some(Tasks { writer, background })),
        })
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The epoch this writer holds.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    pub fn size(&self) -> u64 {
        self.shared.state.lock().size
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, RafError> {
        self.check_range(offset, len)?;
        let mut attempt = 1;
        loop {
            match self.try_read(offset, len).await {
                Err(RafError::Store(StoreError::NotFound(_))) if attempt < READ_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    async fn try_read(&self, offset: u64, len: u64) -> Result<Bytes, RafError> {
        let first = offset / BLOCK;
        let mut reads = Vec::new();
        let holes = {
            let state = self.shared.state.lock();
            let file_of = |seq| state.segments.get(&seq).map(|s| s.file);
            layers::lookup(&state.index, file_of, (first, len / BLOCK), &mut reads)?
        };
        layers::through_parents(&self.shared.parents, holes, &mut reads)?;
        layers::fetch(&*self.shared.store, first, len, &reads).await
    }

    /// Writes `data` at `offset`; returns once it is on every replica and visible (durable
    /// after the next [`Raf::flush`]).
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), RafError> {
        self.check_range(offset, data.len() as u64)?;
        let piece = u64::from(MAX_RECORD_BLOCKS) * BLOCK;
        let mut ops = Vec::new();
        let mut at = 0u64;
        while at < data.len() as u64 {
            let n = (data.len() as u64 - at).min(piece);
            let lba = (offset + at) / BLOCK;
            ops.push(GuestOp::Write { lba, data: data.slice(at as usize..(at + n) as usize) });
            at += n;
        }
        self.submit(ops).await
    }

    /// Makes `len` bytes at `offset` read as zeros, storing no data (write-zeroes).
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), RafError> {
        self.check_range(offset, len)?;
        let mut ops = Vec::new();
        let mut lba = offset / BLOCK;
        let mut left = len / BLOCK;
        while left > 0 {
            let n = left.min(u64::from(u32::MAX));
            ops.push(GuestOp::Zero { lba, nblocks: n as u32 });
            lba += n;
            left -= n;
        }
        self.submit(ops).await
    }

    /// Discards `len` bytes at `offset`: their space leaves the live count and they read
    /// as zeros (also on a clone: the parent's blocks are shadowed).
    pub async fn trim(&self, offset: u64, len: u64) -> Result<(), RafError> {
        self.write_zeroes(offset, len).await
    }

    /// Makes every write acknowledged before it durable: the writer syncs the log's
    /// current segment once for all the flushes waiting (`docs/disks.md`, guarantee 2).
    pub async fn flush(&self) -> Result<(), RafError> {
        if self.guests.lock().is_none() {
            return Err(RafError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.syncs.send(tx).await.map_err(|_| RafError::Closed)?;
        rx.await.map_err(|_| RafError::Closed)?
    }

    async fn submit(&self, ops: Vec<GuestOp>) -> Result<(), RafError> {
        if ops.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.guests.lock().clone() else { return Err(RafError::Closed) };
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            let (done, rx) = oneshot::channel();
            tx.send(GuestReq { op, done }).await.map_err(|_| RafError::Closed)?;
            answers.push(rx);
        }
        // Holding the sender would keep the writer from seeing a close.
        drop(tx);
        for rx in answers {
            rx.await.map_err(|_| RafError::Closed)??;
        }
        Ok(())
    }

    /// Grows the volume to `size` bytes.
    pub async fn resize(&self, size: u64) -> Result<(), RafError> {
        let current = self.size();
        if size % BLOCK != 0 {
            return Err(RafError::Unaligned { offset: 0, len: size });
        }
        if size < current {
            return Err(RafError::Shrink { size: current, requested: size });
        }
        self.shared.store.resize(&self.shared.name, self.shared.epoch, size).await?;
        let mut state = self.shared.state.lock();
        state.size = state.size.max(size);
        Ok(())
    }

    /// The volume's counters.
    pub fn stats(&self) -> Stats {
        let state = self.shared.state.lock();
        Stats {
            logical_bytes: state.size,
            live_bytes: state.index.total_live_bytes(),
            log_bytes: state.segments.values().map(|s| s.len).sum(),
            segments: state.segments.len(),
            extents: state.index.extent_count(),
        }
    }

    /// The sequence number the next record will get: an instant in the volume's stream of
    /// records, to ask [`Raf::changed_since`] about later.
    pub fn next_seq(&self) -> u64 {
        self.shared.state.lock().next_seq
    }

    /// The 1 MiB ranges (of [`crate::changes::RANGE_BLOCKS`] blocks) that guest writes or
    /// trims touched since the instant `next_seq` was taken, in order.
    pub fn changed_since(&self, next_seq: u64) -> Vec<u64> {
        self.shared.state.lock().changes.changed_since(next_seq).collect()
    }

    /// Pins the volume's contents now as the pin `name` (a snapshot id): the instant is
    /// between two of the writer's batches, every write acknowledged before it is in the
    /// pin, the pinned blocks are durable, and compaction keeps them until
    /// [`Raf::release_pin`] (`docs/snapshots.md`, guarantee 1 and "Pins and compaction").
    /// Idempotent: pinning a name that has a pin answers that pin.
    pub async fn pin(&self, name: &str) -> Result<PinRef, RafError> {
        if self.guests.lock().is_none() {
            return Err(RafError::Closed);
        }
        pin::take(&self.shared, name).await
    }

    /// Releases the pin `name` (its file and registration go; the next compaction reclaims
    /// what only it held). A pin that is not there is released already.
    pub async fn release_pin(&self, name: &str) -> Result<(), RafError> {
        pin::release(&self.shared, name).await
    }

    /// The volume's pins, by name.
    pub fn pins(&self) -> Vec<PinRef> {
        self.shared.state.lock().pins.values().filter_map(|h| h.pin.clone()).collect()
    }

    /// Runs one compaction pass now.
    pub async fn compact(&self) -> Result<CompactionReport, RafError> {
        compact::compact(&self.shared).await
    }

    /// Writes a checkpoint now.
    pub async fn checkpoint(&self) -> Result<(), RafError> {
        compact::write_checkpoint(&self.shared).await
    }

    /// Stops taking writes, finishes those queued, seals the log and writes a checkpoint.
    pub async fn close(&self) -> Result<(), RafError> {
        // The background tasks finish what they are doing (a compaction pass needs the
        // writer), then the writer drains the queue and seals the segment.
        let _ = self.shutdown.send(true);
        let tasks = self.tasks.lock().take();
        if let Some(tasks) = tasks {
            for task in tasks.background {
                let _ = task.await;
            }
            drop(self.guests.lock().take());
            let _ = tasks.writer.await;
        }
        drop(self.guests.lock().take());
        if let Some(err) = self.shared.failed() {
            return Err(RafError::Failed(err));
        }
        compact::write_checkpoint(&self.shared).await
    }

    /// Closes the volume and freezes it: from now on it can only be a clone's parent.
    pub async fn freeze(&self) -> Result<(), RafError> {
        self.close().await?;
        self.shared.store.freeze(&self.shared.name, self.shared.epoch).await?;
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), RafError> {
        layers::check_range(offset, len, self.size())
    }
}

impl Drop for Raf {
    fn drop(&mut self) {
        if let Some(tasks) = self.tasks.lock().take() {
            tasks.writer.abort();
            for task in tasks.background {
                task.abort();
            }
        }
    }
}

/// Writes a checkpoint whenever the writer says enough log has accumulated.
async fn checkpointer(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.checkpoint_due.notified() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(err) = compact::write_checkpoint(&shared).await {
            tracing::warn!(volume = %shared.name, %err, "checkpoint failed");
        }
    }
}

/// Runs a compaction pass every `every`.
async fn compactor(shared: Arc<Shared>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match compact::compact(&shared).await {
            Ok(report) if !report.dropped.is_empty() => {
                tracing::debug!(volume = %shared.name, ?report, "compacted");
            }
            Ok(_) => {}
            Err(RafError::Store(StoreError::StaleEpoch)) => return,
            Err(err) => tracing::warn!(volume = %shared.name, %err, "compaction failed"),
        }
    }
}
