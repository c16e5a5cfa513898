//! Pins: a volume's contents at one instant, held until released, for a snapshot to read
//! at leisure (`docs/snapshots.md`, guarantees 1, 2 and 5, and "Pins and compaction").
//!
//! Taking one: the index, the change sequences and the log's position and next sequence
//! number are copied under the state lock. The writer applies each batch to the index under
//! that lock, all at once, and only then answers its writes, so the copy is the volume
//! between two batches: every write acknowledged before it is in it, none begun after it is
//! (a write whose batch was still being appended is in it or not, as after a crash). The
//! copy is encoded in the checkpoint format, written to a new file of the volume, the log
//! is synced (the pinned blocks must survive a power loss), and the file is registered as
//! the pin of its name (epoch-checked, like a checkpoint). A pin is a checkpoint file that
//! the registry will not delete and compaction will not undercut.
//!
//! Holding one: from the moment of the copy, the segments its index names are in the
//! engine's pins, so compaction neither picks nor drops them; an engine that opens the
//! volume later loads every registered pin's segments before its compaction can run.
//!
//! Reading one: [`PinnedView`], built from the registry alone (the pin's file, the volume's
//! segments, its frozen parents), so it works whether the volume is open for writing here,
//! elsewhere, or nowhere, and after any restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::changes::{self, Changes, RANGE_BLOCKS};
use crate::checkpoint::{self, Checkpoint};
use crate::compact;
use crate::error::RafError;
use crate::index::{Index, BLOCK};
use crate::layers::{self, Layer};
use crate::replay;
use crate::store::{FileId, LogStore, PinRef};
use crate::volume::Shared;

/// A pin the engine holds: the segments its index names, kept from compaction, and its
/// registration (`None` while it is being taken, or when registering it failed in a way
/// that leaves unknown whether the registry has it: its segments are kept all the same).
pub(crate) struct Held {
    pub pin: Option<PinRef>,
    pub segments: BTreeSet<u64>,
}

/// Reads a registered pin's index.
pub(crate) async fn load(store: &dyn LogStore, pin: &PinRef) -> Result<Checkpoint, RafError> {
    replay::read_checkpoint(store, pin.file).await
}

/// Takes the pin `name` (see the module docs), or answers the one it has.
pub(crate) async fn take(shared: &Shared, name: &str) -> Result<PinRef, RafError> {
    let _one_at_a_time = shared.pin_lock.lock().await;
    let (index, changes, next_seq, position, size) = {
        let mut state = shared.state.lock();
        if let Some(pin) = state.pins.get(name).and_then(|h| h.pin.clone()) {
            return Ok(pin);
        }
        if let Some(err) = &state.failed {
            return Err(RafError::Failed(err.clone()));
        }
        let segments = state.index.segments().collect();
        // Held from now on: a compaction pass that chose one of these segments before the
        // copy keeps it.
        state.pins.insert(name.to_owned(), Held { pin: None, segments });
        (state.index.clone(), state.changes.clone(), state.next_seq, state.position, state.size)
    };
    let bytes = checkpoint::encode(&index, &changes, next_seq, position);
    drop((index, changes));
    let written = async {
        let file = compact::write_index_file(shared, &bytes).await?;
        shared.sync_log().await?;
        Ok::<_, RafError>(file)
    };
    let file = match written.await {
        Ok(file) => file,
        Err(err) => {
            // Nothing was registered (a file written is a stray checkpoint file, which the
            // next acquire deletes).
            shared.state.lock().pins.remove(name);
            return Err(err);
        }
    };
    let want = PinRef { name: name.to_owned(), file, next_seq, size_bytes: size };
    // If this fails, the registry may or may not have the pin: its segments stay held (a
    // retry, or the next open, settles which).
    let pin = shared.store.add_pin(&shared.name, shared.epoch, &want).await?;
    let segments = if pin.file == file {
        None
    } else {
        // Registered before under this name (a retry after an answer was lost): that pin's
        // index is what to hold.
        Some(load(&*shared.store, &pin).await?.index.segments().collect())
    };
    let mut state = shared.state.lock();
    if let Some(held) = state.pins.get_mut(name) {
        held.pin = Some(pin.clone());
        if let Some(segments) = segments {
            held.segments = segments;
        }
    }
    Ok(pin)
}

/// Releases the pin `name`: the registry's first, then the segments it held.
pub(crate) async fn release(shared: &Shared, name: &str) -> Result<(), RafError> {
    let _one_at_a_time = shared.pin_lock.lock().await;
    shared.store.release_pin(&shared.name, name).await?;
    shared.state.lock().pins.remove(name);
    Ok(())
}

/// A pin, read-only: the volume as it was at the pin's instant.
pub struct PinnedView {
    store: Arc<dyn LogStore>,
    pin: PinRef,
    index: Index,
    changes: Changes,
    /// The volume's segments (those the pin names are all there: they are not dropped
    /// while it exists).
    files: HashMap<u64, FileId>,
    parents: Vec<Layer>,
}

impl PinnedView {
    /// The pin `name` of `volume`, from the registry (no lease: nothing is written).
    pub async fn open(store: Arc<dyn LogStore>, volume: &str, name: &str) -> Result<PinnedView, RafError> {
        let lease = store.describe(volume).await?;
        let pin = lease
            .pins
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| RafError::NoSuchPin { volume: volume.to_owned(), pin: name.to_owned() })?;
        let cp = load(&*store, &pin).await?;
        let files: HashMap<u64, FileId> = lease.segments.iter().map(|s| (s.seq, s.file)).collect();
        if let Some(missing) = cp.index.segments().find(|seq| !files.contains_key(seq)) {
            return Err(RafError::MissingSegment(missing));
        }
        let parents = layers::load_parents(&*store, lease.parent).await?;
        Ok(PinnedView { store, pin, index: cp.index, changes: cp.changes, files, parents })
    }

    /// The pin as registered (its instant's next sequence number and the size then).
    pub fn pin(&self) -> &PinRef {
        &self.pin
    }

    /// `len` bytes at `offset` as they were at the instant: holes read through the
    /// parents, and what no layer has reads as zeros.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, RafError> {
        layers::check_range(offset, len, self.pin.size_bytes)?;
        let first = offset / BLOCK;
        let mut reads = Vec::new();
        let holes = layers::lookup(&self.index, |seq| self.files.get(&seq).copied(), (first, len / BLOCK), &mut reads)?;
        layers::through_parents(&self.parents, holes, &mut reads)?;
        layers::fetch(&*self.store, first, len, &reads).await
    }

    /// The 1 MiB ranges to read, ascending: `Some(seq)`, those a guest record numbered
    /// `seq` or later (and before the instant) changed; `None`, every range in which the
    /// volume or one of its parents holds data (a superset of the non-zero ranges).
    pub fn ranges(&self, since: Option<u64>) -> Vec<u64> {
        let ranges: BTreeSet<u64> = match since {
            Some(seq) => self.changes.changed_since(seq).collect(),
            None => std::iter::once(&self.index)
                .chain(self.parents.iter().map(|p| &p.index))
                .flat_map(changes::data_ranges)
                .collect(),
        };
        let end = self.pin.size_bytes.div_ceil(RANGE_BLOCKS * BLOCK);
        ranges.into_iter().take_while(|&r| r < end).collect()
    }
}
