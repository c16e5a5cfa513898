//! The file client: create, append, read any committed range, seal, delete.
//!
//! # Appends and the replica rule
//!
//! A [`FileWriter`] appends to the file's last chunk on every replica at once, with the
//! CRC32C computed here (where the bytes are produced), and the append is acknowledged only
//! when every replica answered that it holds the bytes durably (each chunkserver fsyncs data
//! and metadata before answering: see [`crate::chunk`]). So every acknowledged byte is on
//! every replica of its chunk.
//!
//! When a replica fails mid-write (no answer, an I/O error, a refusal), the writer seals
//! the chunk at its acknowledged length on the replicas that still answer (cutting any
//! unacknowledged tail some of them took), tells the master (the failed replicas are marked
//! for replacement), gets a new chunk on a new replica set that avoids the servers that
//! failed, and sends the same bytes again there. Nothing acknowledged is lost: it is on
//! every surviving replica of the sealed chunk, and the repair loop copies it back to full
//! strength. A writer gives up after [`MAX_ATTEMPTS`] replica sets in a row fail one append.
//!
//! A writer may make its appends *cached* ([`FileWriter::set_durability`]): each replica
//! writes the bytes and their commit record without fsyncing them and answers (see "Cached
//! appends" in [`crate::chunk`]). An acknowledged byte is then on every replica still, in
//! its kernel's page cache, which outlives the death of any process; [`FileWriter::sync`]
//! makes it durable on every replica, and sealing a chunk (when it fills, when a replica
//! fails, when the file is sealed) does too. Volumes' logs are written so (`crates/raf`).
//!
//! # Reads
//!
//! A read maps the file range onto chunks with the master's layout and reads each piece
//! from one replica, live ones first. A replica that answers `ChunkCorrupt` is reported to
//! the master (which has it repaired) and the next one is tried; so a corrupt replica never
//! serves a byte, and a read succeeds while any good replica is reachable. Callers read only
//! ranges they know were acknowledged (the layer above records lengths after appends).
//!
//! # The master
//!
//! The client reaches the master only through [`MasterClient`] (the master in this process
//! today; see [`crate::master_client`] for a master across the network), and the
//! chunkservers through [`ChunkClients`], which gives the in-process data path to a
//! chunkserver running in this process.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::warn;

use crate::chunk::{checksum, ChunkId, Durability};
use crate::chunk_client::{ChunkClient, ChunkClientError, ChunkClients};
use crate::chunkserver::{ErrorCode, MAX_TRANSFER_BYTES};
use crate::master::{ChunkLocation, FileId, FileLayout, Master};
use crate::master_client::{MasterClient, MasterClientError};
use crate::parts::Parts;
use crate::placement::ServerId;
use crate::volume::{VolumeLease, VolumePin};

/// Replica sets one append may go through before the writer gives up.
pub const MAX_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PanguError {
    #[error(transparent)]
    Master(#[from] MasterClientError),
    #[error("append failed on {attempts} replica sets in a row; last errors: {errors}")]
    AppendFailed { attempts: usize, errors: String },
    #[error("no replica of chunk {chunk} could serve the read: {errors}")]
    Unavailable { chunk: ChunkId, errors: String },
    #[error("file {file}: bytes {offset}..{end} are not in the file")]
    OutOfRange { file: FileId, offset: u64, end: u64 },
}

/// A handle on the file system (cheap to clone).
#[derive(Clone)]
pub struct Pangu {
    master: Arc<dyn MasterClient>,
    chunks: ChunkClients,
}

impl Pangu {
    /// A handle that reaches the master through `master` and chunkservers through `chunks`.
    pub fn new(master: Arc<dyn MasterClient>, chunks: ChunkClients) -> Pangu {
        Pangu { master, chunks }
    }

    /// A handle on the master in this process, sharing its chunkserver clients (and so the
    /// chunkservers attached to it as in-process).
    pub fn in_process(master: Arc<Master>) -> Pangu {
        let chunks = master.chunk_clients().clone();
        Pangu::new(master, chunks)
    }

    /// A new, empty file and its (only) writer.
    pub async fn create(&self) -> Result<FileWriter, PanguError> {
        let file = self.master.create_file().await?;
        Ok(FileWriter::new_file(self.clone(), file))
    }

    // ---- volumes (see crate::volume) ---------------------------------------------------

    /// A new volume of `size_bytes`, a copy-on-write clone of the frozen `parent` if given.
    pub async fn volume_create(&self, name: &str, size_bytes: u64, parent: Option<&str>) -> Result<(), PanguError> {
        Ok(self.master.volume_create(name, size_bytes, parent).await?)
    }

    /// Takes the volume as its one writer: a new epoch, and its layout with every segment
    /// sealed (a previous writer can append no more).
    pub async fn volume_acquire(&self, name: &str) -> Result<VolumeLease, PanguError> {
        Ok(self.master.volume_acquire(name).await?)
    }

    /// The volume's layout, without taking it.
    pub async fn volume_describe(&self, name: &str) -> Result<VolumeLease, PanguError> {
        Ok(self.master.volume_describe(name).await?)
    }

    /// The volume's next segment: its number and the writer of its (new, empty) file.
    pub async fn volume_new_segment(&self, name: &str, epoch: u64) -> Result<(u64, FileWriter), PanguError> {
        let (seq, file) = self.master.volume_new_segment(name, epoch).await?;
        Ok((seq, FileWriter::new_file(self.clone(), file)))
    }

    /// The writer of a new checkpoint file of the volume; seal it, then install it with
    /// [`Pangu::volume_set_checkpoint`].
    pub async fn volume_new_checkpoint_file(&self, name: &str, epoch: u64) -> Result<FileWriter, PanguError> {
        let file = self.master.volume_new_checkpoint_file(name, epoch).await?;
        Ok(FileWriter::new_file(self.clone(), file))
    }

    /// Installs the sealed checkpoint `file`, covering the log up to `covers_offset` in
    /// segment `covers_seq`; the previous checkpoint file is deleted.
    pub async fn volume_set_checkpoint(
        &self,
        name: &str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> Result<(), PanguError> {
        Ok(self.master.volume_set_checkpoint(name, epoch, file, covers_seq, covers_offset).await?)
    }

    /// Registers the sealed checkpoint file `file` as the volume's pin `pin_name` (the index
    /// at the instant the log's next sequence number was `next_seq`, the volume then
    /// `size_bytes` long). Idempotent: a pin of that name already there is answered.
    pub async fn volume_add_pin(
        &self,
        name: &str,
        epoch: u64,
        pin_name: &str,
        file: FileId,
        next_seq: u64,
        size_bytes: u64,
    ) -> Result<VolumePin, PanguError> {
        Ok(self.master.volume_add_pin(name, epoch, pin_name, file, next_seq, size_bytes).await?)
    }

    /// Deletes the volume's pin `pin_name` and its file; a missing one is released already.
    pub async fn volume_release_pin(&self, name: &str, pin_name: &str) -> Result<(), PanguError> {
        Ok(self.master.volume_release_pin(name, pin_name).await?)
    }

    /// Deletes the volume's segments numbered `seqs`.
    pub async fn volume_drop_segments(&self, name: &str, epoch: u64, seqs: &[u64]) -> Result<(), PanguError> {
        Ok(self.master.volume_drop_segments(name, epoch, seqs).await?)
    }

    /// Grows the volume to `size_bytes`.
    pub async fn volume_resize(&self, name: &str, size_bytes: u64) -> Result<(), PanguError> {
        Ok(self.master.volume_resize(name, size_bytes).await?)
    }

    /// Seals the volume's open segments and freezes it for good.
    pub async fn volume_freeze(&self, name: &str, epoch: u64) -> Result<(), PanguError> {
        Ok(self.master.volume_freeze(name, epoch).await?)
    }

    /// Deletes the volume and every file it owns.
    pub async fn volume_delete(&self, name: &str) -> Result<(), PanguError> {
        Ok(self.master.volume_delete(name).await?)
    }

    /// Every volume's name.
    pub async fn volumes(&self) -> Result<Vec<String>, PanguError> {
        Ok(self.master.volumes().await?)
    }

    pub async fn delete(&self, file: FileId) -> Result<(), PanguError> {
        Ok(self.master.delete_file(file).await?)
    }

    /// Every file but volumes' (for the layer above's garbage collection).
    pub async fn files(&self) -> Result<Vec<FileId>, PanguError> {
        Ok(self.master.files().await?)
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, file: FileId, offset: u64, len: u64) -> Result<Bytes, PanguError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.checked_add(len).ok_or(PanguError::OutOfRange { file, offset, end: u64::MAX })?;
        let layout = self.master.layout(file).await?;
        let mut pieces = Vec::new();
        for (chunk, chunk_end) in layout.chunks.iter().zip(chunk_ends(&layout)) {
            let (from, to) = (offset.max(chunk.file_offset), end.min(chunk_end));
            if from < to {
                pieces.push((chunk, from - chunk.file_offset, to - from));
            }
        }
        let covered: u64 = pieces.iter().map(|p| p.2).sum();
        if covered != len {
            return Err(PanguError::OutOfRange { file, offset, end });
        }
        if let [(chunk, at, n)] = pieces[..] {
            if n <= MAX_TRANSFER_BYTES {
                return self.read_chunk(chunk, at, n).await;
            }
        }
        let mut out = BytesMut::with_capacity(len as usize);
        for (chunk, mut at, mut n) in pieces {
            while n > 0 {
                let step = n.min(MAX_TRANSFER_BYTES);
                out.extend_from_slice(&self.read_chunk(chunk, at, step).await?);
                at += step;
                n -= step;
            }
        }
        Ok(out.freeze())
    }

    /// Reads several ranges of `file` (each as [`Pangu::read`] would), asking each replica
    /// for all the ranges it holds at once: the master's layout is fetched once, and a chunk
    /// in this process serves its ranges in one call. The answers are in the order asked.
    pub async fn read_many(&self, file: FileId, ranges: &[(u64, u64)]) -> Result<Vec<Bytes>, PanguError> {
        if ranges.iter().all(|r| r.1 == 0) {
            return Ok(ranges.iter().map(|_| Bytes::new()).collect());
        }
        let layout = self.master.layout(file).await?;
        let ends = chunk_ends(&layout);
        // Per chunk: (range index, offset in the chunk, length) of each piece, cut so that
        // no batch of one chunk's pieces exceeds a transfer.
        let mut per_chunk: Vec<Vec<(usize, u64, u64)>> = vec![Vec::new(); layout.chunks.len()];
        for (r, &(offset, len)) in ranges.iter().enumerate() {
            let end = offset.checked_add(len).ok_or(PanguError::OutOfRange { file, offset, end: u64::MAX })?;
            let mut covered = 0;
            for (i, chunk) in layout.chunks.iter().enumerate() {
                let (from, to) = (offset.max(chunk.file_offset), end.min(ends[i]));
                let mut at = from;
                while at < to {
                    let step = (to - at).min(MAX_TRANSFER_BYTES);
                    per_chunk[i].push((r, at - chunk.file_offset, step));
                    covered += step;
                    at += step;
                }
            }
            if covered != len {
                return Err(PanguError::OutOfRange { file, offset, end });
            }
        }
        let mut parts: Vec<Vec<Bytes>> = vec![Vec::new(); ranges.len()];
        for (chunk, pieces) in layout.chunks.iter().zip(per_chunk) {
            let mut batch: Vec<(usize, u64, u64)> = Vec::new();
            let mut batch_bytes = 0;
            for piece in pieces.into_iter().chain(std::iter::once((usize::MAX, 0, 0))) {
                let last = piece.0 == usize::MAX;
                if !batch.is_empty() && (last || batch_bytes + piece.2 > MAX_TRANSFER_BYTES) {
                    let asked: Vec<(u64, u64)> = batch.iter().map(|p| (p.1, p.2)).collect();
                    let read = self.read_chunk_many(chunk, &asked).await?;
                    for (p, bytes) in batch.drain(..).zip(read) {
                        parts[p.0].push(bytes);
                    }
                    batch_bytes = 0;
                }
                if !last {
                    batch_bytes += piece.2;
                    batch.push(piece);
                }
            }
        }
        Ok(parts
            .into_iter()
            .map(|p| match <[Bytes; 1]>::try_from(p) {
                Ok([one]) => one,
                Err(p) => p.concat().into(),
            })
            .collect())
    }

    async fn read_chunk_many(&self, chunk: &ChunkLocation, ranges: &[(u64, u64)]) -> Result<Vec<Bytes>, PanguError> {
        if let [(offset, len)] = ranges {
            return Ok(vec![self.read_chunk(chunk, *offset, *len).await?]);
        }
        self.read_any_replica(chunk, |client| async move { client.read_many(chunk.id, ranges).await }).await
    }

    async fn read_chunk(&self, chunk: &ChunkLocation, offset: u64, len: u64) -> Result<Bytes, PanguError> {
        self.read_any_replica(chunk, |client| async move { client.read(chunk.id, offset, len).await }).await
    }

    /// Runs `read` on the chunk's replicas in order until one answers. A replica that
    /// answers `ChunkCorrupt` is reported to the master (which has it repaired); so a
    /// corrupt replica never serves a byte, and a read succeeds while a good one answers.
    async fn read_any_replica<T, F, Fut>(&self, chunk: &ChunkLocation, read: F) -> Result<T, PanguError>
    where
        F: Fn(ChunkClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChunkClientError>>,
    {
        let mut errors = Vec::new();
        for replica in &chunk.replicas {
            match read(self.chunks.get(&replica.addr)).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    if e.code() == Some(ErrorCode::ChunkCorrupt) {
                        if let Err(report) = self.master.report_corrupt(chunk.id, replica.server).await {
                            warn!(chunk = %chunk.id, server = %replica.addr, error = %report, "cannot report a corrupt replica to the master");
                        }
                    }
                    warn!(chunk = %chunk.id, server = %replica.addr, error = %e, "read from a replica failed; trying another");
                    errors.push(format!("{}: {e}", replica.addr));
                }
            }
        }
        if errors.is_empty() {
            errors.push("it has no healthy replica".to_owned());
        }
        Err(PanguError::Unavailable { chunk: chunk.id, errors: errors.join("; ") })
    }
}

struct Open {
    loc: ChunkLocation,
    /// The chunk's acknowledged length.
    len: u64,
    /// Cached appends were acknowledged on it since it was last synced.
    unsynced: bool,
}

/// The writer of one file: appends go to the end, in order. Dropping it without
/// [`FileWriter::seal`] leaves the last chunk to the master, which seals it at the length
/// every replica has.
pub struct FileWriter {
    pangu: Pangu,
    file: FileId,
    len: u64,
    open: Option<Open>,
    /// Servers that failed this writer: new chunks avoid them.
    avoid: Vec<ServerId>,
    durability: Durability,
}

impl FileWriter {
    /// The writer of `file`, new and empty.
    fn new_file(pangu: Pangu, file: FileId) -> FileWriter {
        FileWriter { pangu, file, len: 0, open: None, avoid: Vec::new(), durability: Durability::Durable }
    }

    /// Makes later appends cached (acknowledged once every replica has written them, durable
    /// after [`FileWriter::sync`] or the chunk's seal) or durable (the default).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Makes every cached append durable on every replica that still answers (at least
    /// one). A replica that cannot sync is dropped from the chunk like one that failed an
    /// append: the chunk is sealed (durably) on the others and the next append opens a new
    /// one. Chunks before the open one were sealed, so they are durable already.
    pub async fn sync(&mut self) -> Result<(), PanguError> {
        let Some(open) = self.open.as_ref().filter(|o| o.unsynced) else { return Ok(()) };
        let (id, len) = (open.loc.id, open.len);
        let syncs = open.loc.replicas.iter().map(|r| {
            let client = self.pangu.chunks.get(&r.addr);
            async move { (r.server, client.sync(id).await) }
        });
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (server, result) in futures_util::future::join_all(syncs).await {
            let problem = match result {
                Ok(n) if n == len => continue,
                Ok(n) => format!("replica reports length {n}, expected {len}"),
                Err(e) => describe(&e),
            };
            warn!(file = %self.file, chunk = %id, %server, error = %problem, "sync failed on a replica; sealing the chunk on the others");
            errors.push(format!("server {server}: {problem}"));
            failed.push(server);
        }
        if failed.is_empty() {
            if let Some(open) = self.open.as_mut() {
                open.unsynced = false;
            }
            return Ok(());
        }
        self.avoid.extend(failed.iter().copied());
        if self.seal_open(&failed).await? == 0 {
            return Err(PanguError::AppendFailed { attempts: 1, errors: errors.join("; ") });
        }
        Ok(())
    }

    pub fn id(&self) -> FileId {
        self.file
    }

    /// The acknowledged length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`; returns the file offset it starts at, once every byte is durable on
    /// every replica of its chunk.
    pub async fn append(&mut self, data: Bytes) -> Result<u64, PanguError> {
        self.append_parts(Parts::from(data)).await
    }

    /// Appends the concatenation of `data`'s buffers, as [`FileWriter::append`], without
    /// copying them into one first (an in-process chunkserver writes them as they are).
    pub async fn append_parts(&mut self, mut data: Parts) -> Result<u64, PanguError> {
        let start = self.len;
        while !data.is_empty() {
            if self.open.as_ref().is_some_and(|o| o.len >= o.loc.max_size) {
                self.seal_open(&[]).await?;
            }
            if self.open.is_none() {
                self.open_chunk().await?;
            }
            let room = self.open.as_ref().map(|o| o.loc.max_size - o.len).unwrap_or(0);
            let piece = data.split_to((data.len() as u64).min(room).min(MAX_TRANSFER_BYTES) as usize);
            self.append_piece(piece).await?;
        }
        Ok(start)
    }

    /// Seals the file at its acknowledged length and returns it.
    pub async fn seal(mut self) -> Result<u64, PanguError> {
        if self.open.is_some() {
            self.seal_open(&[]).await?;
        }
        self.pangu.master.seal_file(self.file, self.len).await?;
        Ok(self.len)
    }

    async fn open_chunk(&mut self) -> Result<(), PanguError> {
        let loc = self.pangu.master.allocate_chunk(self.file, &self.avoid).await?;
        self.open = Some(Open { loc, len: 0, unsynced: false });
        Ok(())
    }

    async fn append_piece(&mut self, mut piece: Parts) -> Result<(), PanguError> {
        // The end-to-end checksum, computed once, when a replica is across a transport.
        let mut crc = None;
        let n = piece.len() as u64;
        let mut errors = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if self.open.is_none() {
                self.open_chunk().await?;
            }
            let open = self.open.as_ref().expect("a chunk is open");
            let (id, at) = (open.loc.id, open.len);
            let clients: Vec<_> =
                open.loc.replicas.iter().map(|r| (r.server, self.pangu.chunks.get(&r.addr))).collect();
            if crc.is_none() && clients.iter().any(|(_, c)| !c.is_in_process()) {
                // A replica across a transport gets the bytes as one body: join the buffers
                // once, for every replica and every attempt.
                let whole = piece.to_bytes();
                crc = Some(checksum(&whole));
                piece = Parts::from(whole);
            }
            let durability = self.durability;
            let sends = clients.into_iter().map(|(server, client)| {
                let piece = piece.clone();
                async move { (server, client.append_from_writer(id, at, piece, crc, durability).await) }
            });
            let results = futures_util::future::join_all(sends).await;
            let failed: Vec<(ServerId, String)> = results
                .into_iter()
                .filter_map(|(s, r)| match r {
                    Ok(len) if len == at + n => None,
                    Ok(len) => Some((s, format!("replica reports length {len}, expected {}", at + n))),
                    Err(e) => Some((s, describe(&e))),
                })
                .collect();
            if failed.is_empty() {
                if let Some(open) = self.open.as_mut() {
                    open.len += n;
                    open.unsynced |= durability == Durability::Cached;
                }
                self.len += n;
                return Ok(());
            }
            for (s, e) in &failed {
                warn!(file = %self.file, chunk = %id, server = %s, attempt, error = %e, "append failed on a replica; sealing the chunk and moving on");
                errors.push(format!("server {s}: {e}"));
            }
            let bad: Vec<ServerId> = failed.iter().map(|(s, _)| *s).collect();
            self.avoid.extend(bad.iter().copied());
            self.seal_open(&bad).await?;
        }
        Err(PanguError::AppendFailed { attempts: MAX_ATTEMPTS, errors: errors.join("; ") })
    }

    /// Seals the open chunk at its acknowledged length on every replica not in `failed`
    /// (which makes it durable there); returns how many replicas it sealed.
    async fn seal_open(&mut self, failed: &[ServerId]) -> Result<usize, PanguError> {
        let Some(open) = self.open.take() else { return Ok(0) };
        let (id, len) = (open.loc.id, open.len);
        let seals = open.loc.replicas.iter().filter(|r| !failed.contains(&r.server)).map(|r| {
            let client = self.pangu.chunks.get(&r.addr);
            async move { (r.server, client.seal(id, Some(len)).await) }
        });
        let mut bad = failed.to_vec();
        let mut sealed = 0;
        for (s, r) in futures_util::future::join_all(seals).await {
            match r {
                Ok(_) => sealed += 1,
                Err(e) => {
                    warn!(chunk = %id, server = %s, error = %e, "cannot seal a replica; it will be replaced");
                    bad.push(s);
                    self.avoid.push(s);
                }
            }
        }
        self.pangu.master.chunk_sealed(id, len, &bad).await?;
        Ok(sealed)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            self.pangu.master.writer_gone(open.loc.id);
        }
    }
}

/// Where each chunk of `layout` ends in the file: at the next chunk's start, at its sealed
/// length, or (the open last chunk) at its maximum size.
fn chunk_ends(layout: &FileLayout) -> Vec<u64> {
    let chunks = &layout.chunks;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| match (chunks.get(i + 1), chunk.sealed_len) {
            (Some(next), _) => next.file_offset,
            (None, Some(sealed)) => chunk.file_offset + sealed,
            (None, None) => chunk.file_offset + chunk.max_size,
        })
        .collect()
}

fn describe(e: &ChunkClientError) -> String {
    e.to_string()
}
