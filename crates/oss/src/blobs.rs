//! Object bytes on Pangu: streaming a request body into Pangu files, reading ranges back as
//! a streaming body, and freeing files no object or part uses any more.
//!
//! # Where bytes go
//!
//! - A body of at least [`PACK_LIMIT`] bytes gets a Pangu file of its own, appended in
//!   pieces of [`PIECE`] bytes as they arrive (the next piece is read from the client while
//!   the previous one is being made durable), then sealed. A piece is the body's frames as
//!   they came, never copied into one buffer: the in-process chunkserver writes them as they
//!   are, and the MD5 batcher ([`crate::md5batch`]) hashes the same buffers.
//! - A smaller one is packed: appended to the current shared *pack file*. Concurrent small
//!   writes are group-committed: one writer task takes every small body waiting, appends
//!   them as one piece (one round of fsyncs for all of them), and answers each with its
//!   extent. A pack file is sealed and replaced once it passes [`PACK_FILE_MAX`] bytes.
//!
//! Either way `write` returns only when every byte is durable on every replica, and the
//! caller then makes the object visible in one metadata transaction. Bytes written for a
//! request that then fails are never visible; the file (or the pack's dead bytes) is
//! reclaimed as below.
//!
//! # Reclaiming space
//!
//! Files are deleted when nothing references them: [`Blobs::release`] names files whose
//! extents a transaction dropped; a background pass deletes those no object or part still
//! references, unless the file is the current pack file, was written in the last
//! [`GRACE`] (a write whose object is about to be committed), is being read (a GET streaming
//! an object that was deleted or overwritten meanwhile finishes), or was released less than
//! [`SETTLE`] ago. At start, [`Blobs::sweep`]
//! deletes every unreferenced file (bytes of requests cut off by a crash). Pack files whose
//! objects are partly deleted keep their dead bytes until all their objects are gone
//! (compaction is not done yet).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use feitian_meta::extent::{self, Extent};
use feitian_meta::Store;
use feitian_pangu::client::{FileWriter, Pangu, PanguError};
use feitian_pangu::master::FileId;
use feitian_pangu::parts::{BlockCrcs, Parts};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::crc64::Crc64;
use crate::errors::OssError;
use crate::md5batch::Md5Batcher;

/// Bodies below this are packed into shared files.
pub const PACK_LIMIT: u64 = 256 * 1024;
/// A pack file is sealed and replaced past this size.
pub const PACK_FILE_MAX: u64 = 64 * 1024 * 1024;
/// The append size for large bodies (whole Pangu blocks).
pub const PIECE: usize = 8 * 1024 * 1024;
const BLOCK_BYTES: usize = feitian_pangu::chunk::BLOCK_SIZE as usize;
const _: () = assert!(PIECE % BLOCK_BYTES == 0);
/// How many bytes of a large body are handed to the MD5 batcher at a time.
const HASH_STEP: usize = 1024 * 1024;
/// The read size when streaming a body out.
const READ_PIECE: u64 = 4 * 1024 * 1024;
/// A file written this recently is never reclaimed.
pub const GRACE: Duration = Duration::from_secs(120);
/// A released file is reclaimed no sooner than this: a read that fetched its extents just
/// before the release has taken its lease by then.
const SETTLE: Duration = Duration::from_secs(10);
/// The most bytes one group commit appends to the pack file.
const GROUP_MAX: usize = 8 * 1024 * 1024;

/// What [`Blobs::write`] stored: where the bytes are, and their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The bytes, in order, once durable in Pangu.
    pub extents: Vec<Extent>,
    pub len: u64,
    /// For the ETag and `Content-MD5`.
    pub md5: [u8; 16],
    /// CRC-64/ECMA, for `x-oss-hash-crc64ecma`.
    pub crc64: u64,
}

type PackJob = (Bytes, oneshot::Sender<Result<Extent, String>>);

/// The object-bytes store over a Pangu client (cheap to clone).
#[derive(Clone)]
pub struct Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    pangu: Pangu,
    store: Store,
    pack: mpsc::Sender<PackJob>,
    /// Files being written or written lately: file → last write.
    recent: Mutex<HashMap<u64, Instant>>,
    /// The pack file in use.
    pack_file: Mutex<Option<u64>>,
    /// Files some transaction stopped referencing, to check, and since when.
    candidates: Mutex<HashMap<u64, Instant>>,
    /// Files being read now (a GET streaming, a copy): never reclaimed meanwhile.
    readers: Mutex<HashMap<u64, usize>>,
    timing: Timing,
}

/// When the reclaimer may delete a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A file written this recently is never reclaimed.
    pub grace: Duration,
    /// A released file is reclaimed no sooner than this.
    pub settle: Duration,
    /// How often the reclaimer runs.
    pub every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { grace: GRACE, settle: SETTLE, every: Duration::from_secs(5) }
    }
}

/// A read in progress on some files; dropping it ends the lease.
struct ReadLease {
    inner: Arc<Inner>,
    files: Vec<u64>,
}

impl ReadLease {
    fn new(inner: &Arc<Inner>, extents: &[Extent]) -> ReadLease {
        let mut files: Vec<u64> = extents.iter().map(|e| e.file).collect();
        files.sort_unstable();
        files.dedup();
        let mut readers = inner.readers.lock();
        for f in &files {
            *readers.entry(*f).or_default() += 1;
        }
        ReadLease { inner: Arc::clone(inner), files }
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let mut readers = self.inner.readers.lock();
        for f in &self.files {
            if let Some(n) = readers.get_mut(f) {
                *n -= 1;
                if *n == 0 {
                    readers.remove(f);
                }
            }
        }
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> OssError {
    error!(error = %e, "{what}");
    OssError::internal_error()
}

impl Blobs {
    /// The store over `pangu`; spawns the pack writer and the reclaimer (call inside a
    /// tokio runtime).
    pub fn new(pangu: Pangu, store: Store) -> Blobs {
        Blobs::with_timing(pangu, store, Timing::default())
    }

    /// [`Blobs::new`] with other reclaiming times (tests use short ones).
    pub fn with_timing(pangu: Pangu, store: Store, timing: Timing) -> Blobs {
        let (tx, rx) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            pangu,
            store,
            pack: tx,
            recent: Mutex::new(HashMap::new()),
            pack_file: Mutex::new(None),
            candidates: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            timing,
        });
        tokio::spawn(pack_writer(Arc::downgrade(&inner), rx));
        tokio::spawn(reclaimer(Arc::downgrade(&inner)));
        Blobs { inner }
    }

    /// Deletes every Pangu file no object or part references: bytes of writes a crash cut
    /// off before their object was committed. Call once at start, before serving.
    pub async fn sweep(&self) -> Result<usize, OssError> {
        let referenced: HashSet<u64> = self
            .inner
            .store
            .read_async(extent::referenced_files)
            .await
            .map_err(|e| internal("sweep", e))?
            .into_iter()
            .collect();
        let mut deleted = 0;
        for file in self.inner.pangu.files().await.map_err(|e| internal("sweep", e))? {
            if !referenced.contains(&file.0) {
                self.inner.pangu.delete(file).await.map_err(|e| internal("sweep", e))?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            info!(files = deleted, "reclaimed files of writes that never became objects");
        }
        Ok(deleted)
    }

    fn touch(&self, file: u64) {
        self.inner.recent.lock().insert(file, Instant::now());
    }

    /// Streams `body` into Pangu and returns once every byte is durable. `expected_len` is
    /// the request's Content-Length when it has one: a shorter body fails with
    /// `IncompleteBody` and nothing is kept. More than `max_len` bytes fail with
    /// `EntityTooLarge`. Small bodies are packed into shared files; large ones get files of
    /// their own.
    pub async fn write(&self, body: Body, expected_len: Option<u64>, max_len: u64) -> Result<Written, OssError> {
        if expected_len.is_some_and(|n| n > max_len) {
            return Err(OssError::entity_too_large());
        }
        let mut stream = body.into_data_stream();
        let mut intake = Intake { crc: Crc64::new(), total: 0, max_len, expected_len };
        let mut buf = BytesMut::new();
        let small = expected_len.is_some_and(|n| n < PACK_LIMIT);
        // Read until the body ends or proves large.
        let mut ended = false;
        while small || (buf.len() as u64) < PACK_LIMIT {
            match stream.next().await {
                Some(Ok(data)) => {
                    intake.take(&data)?;
                    buf.extend_from_slice(&data);
                }
                Some(Err(_)) => return Err(OssError::incomplete_body()),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            if expected_len.is_some_and(|n| n != intake.total) {
                return Err(OssError::incomplete_body());
            }
            if intake.total < PACK_LIMIT {
                let data = buf.freeze();
                let md5 = crate::etag::md5(&data);
                let extents = self.pack(data).await?;
                let (len, crc64) = intake.finish();
                return Ok(Written { extents, len, md5, crc64 });
            }
        }
        // A file of its own; appends run one piece behind the reading.
        let writer = self.inner.pangu.create().await.map_err(|e| internal("cannot create a file", e))?;
        let file = writer.id();
        self.touch(file.0);
        let (tx, rx) = mpsc::channel::<Parts>(2);
        let appender = tokio::spawn(append_all(writer, rx));
        // The MD5 is computed beside the appends, on the batcher's thread, from the same buffers.
        let mut md5 = Md5Batcher::global().open();
        let result: Result<(), OssError> = async {
            // Pieces of exactly PIECE bytes (the last one shorter), made of the body's frames
            // as they came (a frame across the boundary is split, not copied).
            let mut piece = Parts::new();
            // What the MD5 batcher gets next: it takes bytes in steps much smaller than a
            // piece, so that every upload has some waiting whenever it makes a pass.
            let mut hashing = Parts::new();
            // The blocks' CRC32Cs are taken here, frame by frame while each is in the cache,
            // and travel with the pieces (the file starts with this body, so its blocks are the
            // body's): the chunkserver does not read the bytes again to checksum them.
            let mut block_crcs = BlockCrcs::new();
            block_crcs.update(&buf);
            let mut pending = buf.freeze();
            loop {
                while !pending.is_empty() {
                    let room = PIECE - piece.len();
                    let part = pending.split_to(room.min(pending.len()));
                    hashing.push(part.clone());
                    piece.push(part);
                    if hashing.len() >= HASH_STEP {
                        md5.update_all(std::mem::take(&mut hashing).buffers().cloned()).await;
                    }
                    if piece.len() == PIECE {
                        let mut full = std::mem::take(&mut piece);
                        if let Some(crcs) = block_crcs.take(PIECE / BLOCK_BYTES) {
                            full = full.with_block_crcs(crcs);
                        }
                        if tx.send(full).await.is_err() {
                            return Ok(()); // the appender failed; its error is reported below
                        }
                    }
                }
                if ended {
                    break;
                }
                match stream.next().await {
                    Some(Ok(data)) => {
                        intake.take(&data)?;
                        block_crcs.update(&data);
                        pending = data;
                    }
                    Some(Err(_)) => return Err(OssError::incomplete_body()),
                    None => break,
                }
            }
            if expected_len.is_some_and(|n| n != intake.total) {
                return Err(OssError::incomplete_body());
            }
            md5.update_all(hashing.buffers().cloned()).await;
            if !piece.is_empty() {
                let _ = tx.send(piece.with_block_crcs(block_crcs.finish())).await;
            }
            Ok(())
        }
        .await;
        drop(tx);
        let appended = appender.await.map_err(|e| internal("appender", e)).and_then(|r| {
            r.map_err(|e| {
                error!(error = %e, "writing an object's bytes to pangu failed");
                OssError::internal_error()
            })
        });
        self.touch(file.0);
        let (total, crc64) = intake.finish();
        match (result, appended) {
            (Ok(()), Ok(len)) if len == total => {
                let md5 = md5.finish().await;
                Ok(Written { extents: vec![Extent { file: file.0, offset: 0, len }], len, md5, crc64 })
            }
            (Ok(()), Ok(len)) => {
                self.forget(file).await;
                Err(internal("short write", format!("{len} of {total} bytes appended")))
            }
            (Err(e), _) | (_, Err(e)) => {
                self.forget(file).await;
                Err(e)
            }
        }
    }

    async fn forget(&self, file: FileId) {
        if let Err(e) = self.inner.pangu.delete(file).await {
            warn!(file = %file, error = %e, "cannot delete the file of a failed write; the sweep will");
        }
    }

    async fn pack(&self, data: Bytes) -> Result<Vec<Extent>, OssError> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.inner.pack.send((data, tx)).await.map_err(|e| internal("pack writer gone", e))?;
        let extent = rx.await.map_err(|e| internal("pack writer gone", e))?.map_err(|e| internal("pack write", e))?;
        self.touch(extent.file);
        Ok(vec![extent])
    }

    /// Stores bytes already in memory (as `write`).
    pub async fn write_bytes(&self, data: Bytes) -> Result<Written, OssError> {
        let len = data.len() as u64;
        self.write(Body::from(data), Some(len), u64::MAX).await
    }

    /// Copies `range` of the bytes of `src` (extents concatenated) into new storage: for
    /// CopyObject and UploadPartCopy. The copy is independent of the source.
    pub async fn copy(&self, src: &[Extent], range: Range<u64>) -> Result<Written, OssError> {
        let len = range.end.saturating_sub(range.start);
        let body = self.read(src.to_vec(), range);
        self.write(body, Some(len), u64::MAX).await
    }

    /// A body streaming `range` of the bytes of `extents` (concatenated). A read failure
    /// after the head is sent ends the body with an error (the client sees a short body).
    pub fn read(&self, extents: Vec<Extent>, range: Range<u64>) -> Body {
        let pieces = pieces(&extents, range);
        let pangu = self.inner.pangu.clone();
        let lease = Arc::new(ReadLease::new(&self.inner, &extents));
        let stream = futures_util::stream::iter(pieces)
            .map(move |(file, offset, len)| {
                let pangu = pangu.clone();
                let _lease = Arc::clone(&lease);
                async move {
                    pangu.read(FileId(file), offset, len).await.map_err(|e: PanguError| {
                        error!(error = %e, "reading an object's bytes failed mid-body");
                        std::io::Error::other(e.to_string())
                    })
                }
            })
            .buffered(2);
        Body::from_stream(stream)
    }

    /// `range` of the bytes of `extents`, in memory (for small reads).
    pub async fn read_all(&self, extents: &[Extent], range: Range<u64>) -> Result<Bytes, OssError> {
        let _lease = ReadLease::new(&self.inner, extents);
        let mut out = BytesMut::with_capacity(range.end.saturating_sub(range.start) as usize);
        for (file, offset, len) in pieces(extents, range) {
            let bytes = self.inner.pangu.read(FileId(file), offset, len).await.map_err(|e| internal("read", e))?;
            out.extend_from_slice(&bytes);
        }
        Ok(out.freeze())
    }

    /// Says that `extents` are no longer used by what held them (call after the transaction
    /// that dropped them committed). Files that nothing references any more are deleted in
    /// the background.
    pub fn release(&self, extents: Vec<Extent>) {
        let now = Instant::now();
        let mut c = self.inner.candidates.lock();
        for e in extents {
            c.entry(e.file).or_insert(now);
        }
    }
}

/// A body as it arrives: counted against its limits, and its CRC-64 (the MD5 is taken of
/// what is stored: inline for small bodies, by the batcher for large ones).
struct Intake {
    crc: Crc64,
    total: u64,
    max_len: u64,
    expected_len: Option<u64>,
}

impl Intake {
    fn take(&mut self, data: &[u8]) -> Result<(), OssError> {
        self.total += data.len() as u64;
        if self.total > self.max_len || self.expected_len.is_some_and(|n| self.total > n) {
            return Err(OssError::entity_too_large());
        }
        self.crc.update(data);
        Ok(())
    }

    /// Length and CRC-64 of everything taken.
    fn finish(self) -> (u64, u64) {
        (self.total, self.crc.value())
    }
}

/// `range` of the concatenation of `extents` as (file, offset, len) reads of at most
/// [`READ_PIECE`] bytes.
fn pieces(extents: &[Extent], range: Range<u64>) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for e in extents {
        let (start, end) = (at, at + e.len);
        at = end;
        let (from, to) = (range.start.max(start), range.end.min(end));
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(READ_PIECE);
            out.push((e.file, e.offset + (pos - start), n));
            pos += n;
        }
    }
    out
}

async fn append_all(mut writer: FileWriter, mut rx: mpsc::Receiver<Parts>) -> Result<u64, PanguError> {
    while let Some(piece) = rx.recv().await {
        writer.append_parts(piece).await?;
    }
    writer.seal().await
}

/// The pack writer: group-commits small bodies into the current pack file.
async fn pack_writer(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<PackJob>) {
    let mut writer: Option<FileWriter> = None;
    while let Some(first) = rx.recv().await {
        let Some(me) = inner.upgrade() else { return };
        let mut jobs = vec![first];
        let mut size = jobs[0].0.len();
        while size < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.0.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if writer.as_ref().is_some_and(|w| w.len() >= PACK_FILE_MAX) {
            if let Some(w) = writer.take() {
                let id = w.id();
                if let Err(e) = w.seal().await {
                    warn!(file = %id, error = %e, "cannot seal a pack file");
                }
                me.recent.lock().insert(id.0, Instant::now());
                me.candidates.lock().insert(id.0, Instant::now());
            }
        }
        if writer.is_none() {
            match me.pangu.create().await {
                Ok(w) => {
                    *me.pack_file.lock() = Some(w.id().0);
                    writer = Some(w);
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (_, reply) in jobs {
                        let _ = reply.send(Err(msg.clone()));
                    }
                    continue;
                }
            }
        }
        let w = writer.as_mut().expect("a pack file is open");
        let group: Parts = jobs.iter().map(|(data, _)| data.clone()).collect();
        let file = w.id().0;
        me.recent.lock().insert(file, Instant::now());
        match w.append_parts(group).await {
            Ok(mut offset) => {
                me.recent.lock().insert(file, Instant::now());
                for (data, reply) in jobs {
                    let len = data.len() as u64;
                    let _ = reply.send(Ok(Extent { file, offset, len }));
                    offset += len;
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in jobs {
                    let _ = reply.send(Err(msg.clone()));
                }
                // Start a new pack file; this one is sealed by the master.
                writer = None;
                me.candidates.lock().insert(file, Instant::now());
            }
        }
    }
}

/// Deletes released files that nothing references, every few seconds.
async fn reclaimer(inner: std::sync::Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(me) => me.timing.every,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(me) = inner.upgrade() else { return };
        let now = Instant::now();
        let ready: Vec<u64> = {
            let pack = *me.pack_file.lock();
            let mut recent = me.recent.lock();
            let Timing { grace, settle, .. } = me.timing;
            recent.retain(|_, at| now.duration_since(*at) < grace);
            let readers = me.readers.lock();
            let candidates = me.candidates.lock();
            candidates
                .iter()
                .filter(|(f, since)| {
                    Some(**f) != pack
                        && !recent.contains_key(f)
                        && !readers.contains_key(f)
                        && now.duration_since(**since) >= settle
                })
                .map(|(f, _)| *f)
                .collect()
        };
        for file in ready {
            me.candidates.lock().remove(&file);
            let referenced = me.store.read_async(move |tx| extent::file_is_referenced(tx, file)).await;
            match referenced {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = me.pangu.delete(FileId(file)).await {
                        warn!(file, error = %e, "cannot delete an unreferenced file yet");
                        me.candidates.lock().insert(file, Instant::now());
                    }
                }
                Err(e) => {
                    warn!(file, error = %e, "cannot check a file's references");
                    me.candidates.lock().insert(file, Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_ranges_across_extents() {
        let e = [Extent { file: 1, offset: 10, len: 5 }, Extent { file: 2, offset: 0, len: 10 }];
        assert_eq!(pieces(&e, 0..15), vec![(1, 10, 5), (2, 0, 10)]);
        assert_eq!(pieces(&e, 3..7), vec![(1, 13, 2), (2, 0, 2)]);
        assert_eq!(pieces(&e, 5..6), vec![(2, 0, 1)]);
        assert!(pieces(&e, 7..7).is_empty());
        let big = [Extent { file: 3, offset: 0, len: 10 * READ_PIECE }];
        assert_eq!(pieces(&big, 1..READ_PIECE + 2), vec![(3, 1, READ_PIECE), (3, READ_PIECE + 1, 1)]);
    }
}
