//! An in-memory `LogStore` with Pangu's guarantees, for the engine's tests.
//!
//! - An acknowledged append survives a crash of the processes (`kill -9`); it survives a
//!   power loss ([`MemStore::power_loss`]) only once a sync or a seal of its file followed.
//!   A power loss cuts every file at a random byte between its synced length and its end.
//! - An append is in flight between its call and its acknowledgement (the future yields a
//!   few times in between). Sealing the file meanwhile (as `acquire` does for a new
//!   writer, after the old one crashed or while it still runs) decides its fate at random:
//!   lost, kept whole, or cut at any byte. Its writer then gets an error.
//! - `acquire` bumps the epoch and seals every segment; every registry mutation with an
//!   older epoch is refused, and so is every append to a sealed file.
//!
//! The random choices come from a seeded generator, so a failing case can be replayed.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use feitian_raf::{
    Appender, CheckpointRef, CompactionConfig, Config, FileId, Lease, LogStore, PinRef, SegmentRef, StoreError,
    StoreFuture,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KIB: u64 = 1024;

/// Small segments, batches and checkpoint intervals, so that a few MiB of writes cross every
/// boundary; background compaction off (the tests call it).
pub fn config() -> Config {
    Config {
        segment_bytes: 256 * KIB,
        batch_bytes: 128 * KIB,
        checkpoint_every: 1024 * KIB,
        queue_depth: 64,
        compaction: CompactionConfig {
            interval: None,
            live_fraction: 0.5,
            bytes_per_sec: 1 << 30,
            burst_bytes: 1 << 20,
            min_share: 0.25,
            chunk_bytes: 64 * KIB,
        },
    }
}

#[derive(Default)]
struct File {
    data: Vec<u8>,
    sealed: bool,
    /// How much of `data` a power loss keeps for sure.
    synced: usize,
    /// The append in flight: its id and bytes.
    pending: Option<(u64, Bytes)>,
}

struct Volume {
    size: u64,
    epoch: u64,
    parent: Option<String>,
    frozen: bool,
    segments: BTreeMap<u64, FileId>,
    next_seq: u64,
    checkpoint: Option<CheckpointRef>,
    pins: BTreeMap<String, PinRef>,
}

struct Inner {
    volumes: HashMap<String, Volume>,
    files: HashMap<FileId, File>,
    next_file: u64,
    next_append: u64,
    appends: u64,
    /// Appends in flight at a seal: lost, kept whole, cut.
    fates: [u64; 3],
    syncs: u64,
    /// Bytes of acknowledged appends that power losses took.
    lost_bytes: u64,
    rng: StdRng,
}

/// What the store counts, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub appends: u64,
    pub fates: [u64; 3],
    pub files: usize,
    pub syncs: u64,
    pub lost_bytes: u64,
}

pub struct MemStore {
    inner: Mutex<Inner>,
    /// How many times an append yields while in flight.
    yields: usize,
    /// How many times a read yields.
    read_yields: usize,
}

impl MemStore {
    pub fn new(seed: u64, yields: usize, read_yields: usize) -> Arc<MemStore> {
        Arc::new(MemStore {
            inner: Mutex::new(Inner {
                volumes: HashMap::new(),
                files: HashMap::new(),
                next_file: 1,
                next_append: 1,
                appends: 0,
                fates: [0; 3],
                syncs: 0,
                lost_bytes: 0,
                rng: StdRng::seed_from_u64(seed),
            }),
            yields,
            read_yields,
        })
    }

    pub fn counters(&self) -> Counters {
        let inner = self.inner.lock();
        Counters {
            appends: inner.appends,
            fates: inner.fates,
            files: inner.files.len(),
            syncs: inner.syncs,
            lost_bytes: inner.lost_bytes,
        }
    }

    /// Every host loses power: appends in flight are lost, and each file keeps its synced
    /// bytes and a random part of what follows them (page cache written back or not).
    pub fn power_loss(&self) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        for f in inner.files.values_mut() {
            f.pending = None;
            let unsynced = f.data.len() - f.synced;
            let keep = f.synced + inner.rng.gen_range(0..=unsynced);
            inner.lost_bytes += (f.data.len() - keep) as u64;
            f.data.truncate(keep);
        }
    }

    /// The files of `name`'s root (segments and checkpoint).
    pub fn root_files(&self, name: &str) -> Vec<FileId> {
        let inner = self.inner.lock();
        let Some(v) = inner.volumes.get(name) else { return Vec::new() };
        v.segments.values().copied().chain(v.checkpoint.as_ref().map(|c| c.file)).collect()
    }

    /// Whether `file` still exists.
    pub fn has_file(&self, file: FileId) -> bool {
        self.inner.lock().files.contains_key(&file)
    }
}

impl Inner {
    fn new_file(&mut self) -> FileId {
        let id = FileId(self.next_file);
        self.next_file += 1;
        self.files.insert(id, File::default());
        id
    }

    /// Seals `file`, deciding the fate of an append in flight.
    fn seal(&mut self, file: FileId) {
        let fate = self.rng.gen_range(0..3u8);
        let cut = self.rng.gen::<u64>();
        let Some(f) = self.files.get_mut(&file) else { return };
        if let Some((_, data)) = f.pending.take() {
            self.fates[fate as usize] += 1;
            match fate {
                0 => {}
                1 => f.data.extend_from_slice(&data),
                _ => {
                    let keep = (cut % data.len().max(1) as u64) as usize;
                    f.data.extend_from_slice(&data[..keep]);
                }
            }
        }
        f.sealed = true;
        // A seal is durable.
        f.synced = f.data.len();
    }

    fn volume(&mut self, name: &str, epoch: u64) -> Result<&mut Volume, StoreError> {
        let v = self.volumes.get_mut(name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        if v.epoch != epoch {
            return Err(StoreError::StaleEpoch);
        }
        if v.frozen {
            return Err(StoreError::Frozen);
        }
        Ok(v)
    }

    fn lease(&self, name: &str) -> Result<Lease, StoreError> {
        let v = self.volumes.get(name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let segments = v
            .segments
            .iter()
            .map(|(&seq, &file)| SegmentRef {
                seq,
                file,
                len: self.files.get(&file).map_or(0, |f| f.data.len() as u64),
            })
            .collect();
        Ok(Lease {
            epoch: v.epoch,
            size_bytes: v.size,
            parent: v.parent.clone(),
            frozen: v.frozen,
            checkpoint: v.checkpoint.clone(),
            segments,
            pins: v.pins.values().cloned().collect(),
        })
    }
}

struct MemAppender {
    store: Arc<MemStore>,
    file: FileId,
    len: u64,
}

impl Appender for MemAppender {
    fn file(&self) -> FileId {
        self.file
    }

    fn append(&mut self, data: Bytes) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let id = {
                let mut inner = self.store.inner.lock();
                let id = inner.next_append;
                inner.next_append += 1;
                inner.appends += 1;
                let f =
                    inner.files.get_mut(&self.file).ok_or_else(|| StoreError::NotFound(format!("{:?}", self.file)))?;
                if f.sealed {
                    return Err(StoreError::StaleEpoch);
                }
                if f.pending.is_some() {
                    return Err(StoreError::Unavailable("an append is already in flight".into()));
                }
                f.pending = Some((id, data));
                id
            };
            for _ in 0..self.store.yields {
                tokio::task::yield_now().await;
            }
            let mut inner = self.store.inner.lock();
            let f = inner.files.get_mut(&self.file).ok_or_else(|| StoreError::NotFound(format!("{:?}", self.file)))?;
            match f.pending.take() {
                Some((pid, data)) if pid == id => {
                    let start = f.data.len() as u64;
                    f.data.extend_from_slice(&data);
                    self.len = f.data.len() as u64;
                    Ok(start)
                }
                other => {
                    f.pending = other;
                    // Sealed under us: whatever survived is not acknowledged.
                    Err(StoreError::StaleEpoch)
                }
            }
        })
    }

    fn sync(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            for _ in 0..self.store.yields {
                tokio::task::yield_now().await;
            }
            let mut inner = self.store.inner.lock();
            inner.syncs += 1;
            let f = inner.files.get_mut(&self.file).ok_or_else(|| StoreError::NotFound(format!("{:?}", self.file)))?;
            // Sealed meanwhile: the seal made everything there durable already.
            f.synced = f.data.len();
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn seal(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.store.inner.lock().seal(self.file);
            Ok(())
        })
    }
}

/// A handle that implements the trait (the appenders need the `Arc`).
#[derive(Clone)]
pub struct Store(pub Arc<MemStore>);

impl Store {
    pub fn new(seed: u64, yields: usize) -> Store {
        Store(MemStore::new(seed, yields, yields))
    }

    /// A store whose reads take `read_yields` turns of the scheduler.
    pub fn with_slow_reads(seed: u64, yields: usize, read_yields: usize) -> Store {
        Store(MemStore::new(seed, yields, read_yields))
    }

    pub fn dyn_store(&self) -> Arc<dyn LogStore> {
        Arc::new(self.clone())
    }
}

impl LogStore for Store {
    fn acquire<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let v = inner.volumes.get_mut(name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
            if v.frozen {
                return Err(StoreError::Frozen);
            }
            v.epoch += 1;
            let files: Vec<FileId> = v.segments.values().copied().collect();
            for f in files {
                inner.seal(f);
            }
            inner.lease(name)
        })
    }

    fn describe<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease> {
        Box::pin(async move { self.0.inner.lock().lease(name) })
    }

    fn create<'a>(&'a self, name: &'a str, size: u64, parent: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            if inner.volumes.contains_key(name) {
                return Err(StoreError::Exists(name.to_string()));
            }
            if let Some(p) = parent {
                let pv = inner.volumes.get(p).ok_or_else(|| StoreError::NotFound(p.to_string()))?;
                if !pv.frozen {
                    return Err(StoreError::Unavailable(format!("parent {p} is not frozen")));
                }
            }
            let volume = Volume {
                size,
                epoch: 0,
                parent: parent.map(str::to_string),
                frozen: false,
                segments: BTreeMap::new(),
                next_seq: 1,
                checkpoint: None,
                pins: BTreeMap::new(),
            };
            inner.volumes.insert(name.to_string(), volume);
            Ok(())
        })
    }

    fn new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, (u64, Box<dyn Appender>)> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            inner.volume(name, epoch)?;
            let file = inner.new_file();
            let v = inner.volume(name, epoch)?;
            let seq = v.next_seq;
            v.next_seq += 1;
            v.segments.insert(seq, file);
            let appender: Box<dyn Appender> = Box::new(MemAppender { store: self.0.clone(), file, len: 0 });
            Ok((seq, appender))
        })
    }

    fn new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, Box<dyn Appender>> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            inner.volume(name, epoch)?;
            let file = inner.new_file();
            let appender: Box<dyn Appender> = Box::new(MemAppender { store: self.0.clone(), file, len: 0 });
            Ok(appender)
        })
    }

    fn set_checkpoint<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let v = inner.volume(name, epoch)?;
            let old = v.checkpoint.replace(CheckpointRef { file, covers_seq, covers_offset });
            if let Some(old) = old {
                inner.files.remove(&old.file);
            }
            Ok(())
        })
    }

    fn add_pin<'a>(&'a self, name: &'a str, epoch: u64, pin: &'a PinRef) -> StoreFuture<'a, PinRef> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let v = inner.volume(name, epoch)?;
            if let Some(existing) = v.pins.get(&pin.name).cloned() {
                if existing.file != pin.file {
                    inner.files.remove(&pin.file);
                }
                return Ok(existing);
            }
            v.pins.insert(pin.name.clone(), pin.clone());
            Ok(pin.clone())
        })
    }

    fn release_pin<'a>(&'a self, name: &'a str, pin: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let Some(v) = inner.volumes.get_mut(name) else { return Ok(()) };
            if let Some(p) = v.pins.remove(pin) {
                inner.files.remove(&p.file);
            }
            Ok(())
        })
    }

    fn drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let v = inner.volume(name, epoch)?;
            let files: Vec<FileId> = seqs.iter().filter_map(|s| v.segments.remove(s)).collect();
            for f in files {
                inner.files.remove(&f);
            }
            Ok(())
        })
    }

    fn resize<'a>(&'a self, name: &'a str, epoch: u64, size: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            inner.volume(name, epoch)?.size = size;
            Ok(())
        })
    }

    fn freeze<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.0.inner.lock();
            let v = inner.volume(name, epoch)?;
            v.frozen = true;
            let files: Vec<FileId> = v.segments.values().copied().collect();
            for f in files {
                inner.seal(f);
            }
            Ok(())
        })
    }

    fn read(&self, file: FileId, offset: u64, len: u64) -> StoreFuture<'_, Bytes> {
        Box::pin(async move {
            // A read takes time too: compaction may drop the file meanwhile.
            for _ in 0..self.0.read_yields {
                tokio::task::yield_now().await;
            }
            let inner = self.0.inner.lock();
            let f = inner.files.get(&file).ok_or_else(|| StoreError::NotFound(format!("{file:?}")))?;
            let end = offset.checked_add(len).filter(|&e| e <= f.data.len() as u64);
            match end {
                Some(end) => Ok(Bytes::copy_from_slice(&f.data[offset as usize..end as usize])),
                None => Err(StoreError::Unavailable(format!("read past the end of {file:?}"))),
            }
        })
    }
}
