//! The [`LogStore`] of a real RAF: Pangu's volume registry (in the master) and its files.
//!
//! A thin translation: every call is the `Pangu` client's `volume_*` call of the same name,
//! and an [`Appender`] is a Pangu [`FileWriter`]. A segment's appends are cached (answered
//! once written on every replica of the chunk; durable at `sync` or seal: see
//! `docs/disks.md`); a checkpoint's are durable. Fencing is Pangu's: `volume_acquire` seals the earlier writers'
//! segments before it answers, and every registry change carries the epoch.

use bytes::Bytes;
use feitian_pangu::chunk::Durability;
use feitian_pangu::client::{FileWriter, Pangu, PanguError};
use feitian_pangu::master::FileId as PanguFile;
use feitian_pangu::master_client::MasterClientError;
use feitian_pangu::volume::{VolumeError, VolumeLease, VolumePin};

use crate::store::{Appender, CheckpointRef, FileId, Lease, LogStore, PinRef, SegmentRef, StoreError, StoreFuture};

/// RAF volumes on a Pangu cluster.
#[derive(Clone)]
pub struct PanguStore {
    pangu: Pangu,
}

impl PanguStore {
    pub fn new(pangu: Pangu) -> PanguStore {
        PanguStore { pangu }
    }

    /// The Pangu handle, for the calls the engine does not make (delete, list).
    pub fn pangu(&self) -> &Pangu {
        &self.pangu
    }
}

pub fn store_error(e: PanguError) -> StoreError {
    match e {
        PanguError::Master(MasterClientError::Volume(v)) => match v {
            VolumeError::StaleEpoch { .. } => StoreError::StaleEpoch,
            VolumeError::NoSuchVolume(n) | VolumeError::ParentUnknown(n) => StoreError::NotFound(n),
            VolumeError::VolumeFrozen(_) => StoreError::Frozen,
            VolumeError::VolumeExists(n) => StoreError::Exists(n),
            other => StoreError::Refused(other.to_string()),
        },
        // A segment compaction dropped while a read raced it (the engine retries).
        PanguError::Master(MasterClientError::NoSuchFile(f)) => StoreError::NotFound(format!("file {f}")),
        // Appending to a file an acquire sealed: this writer was fenced.
        PanguError::Master(MasterClientError::FileSealed(_)) => StoreError::StaleEpoch,
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn lease(l: VolumeLease) -> Lease {
    Lease {
        epoch: l.epoch,
        size_bytes: l.size_bytes,
        parent: l.parent,
        frozen: l.frozen,
        checkpoint: l.checkpoint.map(|c| CheckpointRef {
            file: FileId(c.file.0),
            covers_seq: c.covers_seq,
            covers_offset: c.covers_offset,
        }),
        segments: l
            .segments
            .into_iter()
            .map(|s| SegmentRef { seq: s.seq, file: FileId(s.file.0), len: s.len })
            .collect(),
        pins: l.pins.into_iter().map(pin_ref).collect(),
    }
}

fn pin_ref(p: VolumePin) -> PinRef {
    PinRef { name: p.name, file: FileId(p.file.0), next_seq: p.next_seq, size_bytes: p.size_bytes }
}

/// A segment's or checkpoint's writer. `seal` consumes Pangu's writer, so it is kept in an
/// `Option`: after a seal the appender refuses everything.
struct PanguAppender {
    file: FileId,
    len: u64,
    writer: Option<FileWriter>,
}

impl PanguAppender {
    fn new(w: FileWriter) -> PanguAppender {
        PanguAppender { file: FileId(w.id().0), len: w.len(), writer: Some(w) }
    }
}

fn sealed(file: FileId) -> StoreError {
    StoreError::Refused(format!("file {} is sealed", file.0))
}

impl Appender for PanguAppender {
    fn file(&self) -> FileId {
        self.file
    }

    fn append(&mut self, data: Bytes) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let w = self.writer.as_mut().ok_or_else(|| sealed(self.file))?;
            let at = w.append(data).await.map_err(store_error)?;
            self.len = w.len();
            Ok(at)
        })
    }

    fn sync(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let w = self.writer.as_mut().ok_or_else(|| sealed(self.file))?;
            w.sync().await.map_err(store_error)
        })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn seal(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let w = self.writer.take().ok_or_else(|| sealed(self.file))?;
            self.len = w.seal().await.map_err(store_error)?;
            Ok(())
        })
    }
}

impl LogStore for PanguStore {
    fn acquire<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease> {
        Box::pin(async move { self.pangu.volume_acquire(name).await.map(lease).map_err(store_error) })
    }

    fn describe<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease> {
        Box::pin(async move { self.pangu.volume_describe(name).await.map(lease).map_err(store_error) })
    }

    fn create<'a>(&'a self, name: &'a str, size: u64, parent: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pangu.volume_create(name, size, parent).await.map_err(store_error) })
    }

    fn new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, (u64, Box<dyn Appender>)> {
        Box::pin(async move {
            let (seq, mut w) = self.pangu.volume_new_segment(name, epoch).await.map_err(store_error)?;
            w.set_durability(Durability::Cached);
            Ok((seq, Box::new(PanguAppender::new(w)) as Box<dyn Appender>))
        })
    }

    fn new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, Box<dyn Appender>> {
        Box::pin(async move {
            let w = self.pangu.volume_new_checkpoint_file(name, epoch).await.map_err(store_error)?;
            Ok(Box::new(PanguAppender::new(w)) as Box<dyn Appender>)
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
            self.pangu
                .volume_set_checkpoint(name, epoch, PanguFile(file.0), covers_seq, covers_offset)
                .await
                .map_err(store_error)
        })
    }

    fn add_pin<'a>(&'a self, name: &'a str, epoch: u64, pin: &'a PinRef) -> StoreFuture<'a, PinRef> {
        Box::pin(async move {
            self.pangu
                .volume_add_pin(name, epoch, &pin.name, PanguFile(pin.file.0), pin.next_seq, pin.size_bytes)
                .await
                .map(pin_ref)
                .map_err(store_error)
        })
    }

    fn release_pin<'a>(&'a self, name: &'a str, pin: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pangu.volume_release_pin(name, pin).await.map_err(store_error) })
    }

    fn drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pangu.volume_drop_segments(name, epoch, seqs).await.map_err(store_error) })
    }

    /// Pangu's resize carries no epoch: growing is the control plane's decision, taken once
    /// (the registry refuses to shrink), whoever writes the volume.
    fn resize<'a>(&'a self, name: &'a str, _epoch: u64, size: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pangu.volume_resize(name, size).await.map_err(store_error) })
    }

    fn freeze<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pangu.volume_freeze(name, epoch).await.map_err(store_error) })
    }

    fn read(&self, file: FileId, offset: u64, len: u64) -> StoreFuture<'_, Bytes> {
        Box::pin(async move { self.pangu.read(PanguFile(file.0), offset, len).await.map_err(store_error) })
    }

    fn read_many(&self, file: FileId, ranges: Vec<(u64, u64)>) -> StoreFuture<'_, Vec<Bytes>> {
        Box::pin(async move { self.pangu.read_many(PanguFile(file.0), &ranges).await.map_err(store_error) })
    }
}
