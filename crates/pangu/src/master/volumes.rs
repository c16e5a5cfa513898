//! The volume registry in the master: the roots of random-access files (see
//! [`crate::volume`] for what a volume is and the rules, [`super::namespace`] for its tables).
//!
//! Every change is one store transaction (so a volume's segment file and its registration
//! are made together, and no orphan file can exist), taken under `volume_ops` so that the
//! in-memory mirror the fence checks read ([`super::State::check_writer`]) follows the
//! store's order.
//!
//! # Acquire: how a stale writer is fenced
//!
//! 1. One transaction bumps the epoch. From its commit on, the master refuses the old
//!    writer's registry changes (they carry the old epoch) and its new chunks and chunk or
//!    file seals on files made under the old epoch.
//! 2. Chunk allocations already past that check are waited for, so every chunk the old
//!    writer can hold is in the namespace.
//! 3. Each unsealed segment's open chunk is sealed on its replicas: the first replica that
//!    answers is sealed where it stands (`seal` without a length). An append is
//!    acknowledged only once every replica took it, so from that moment no further append
//!    can be acknowledged, and every acknowledged byte is below that length. The other
//!    replicas are sealed at the same length (cutting an unacknowledged tail), or, when they
//!    cannot be (shorter: an append that reached some replicas only; sealed at another
//!    length by the old writer), made a copy of the first. A replica that does not answer
//!    is marked for replacement. Then the file is sealed.
//!
//! Measuring lengths first and sealing at their minimum (as the background sealer does
//! for a writer known to be gone) would not do here: the old writer may be alive, and an
//! append acknowledged between the measure and the seals would be cut.
//!
//! 4. Checkpoint files that are not the current checkpoint (a writer died between making one
//!    and installing it) are deleted. Pins are not checkpoint files: they stay, and the new
//!    writer finds them in its lease.
//!
//! # Pins
//!
//! A pin (`docs/snapshots.md`) is written by the volume's writer like a checkpoint, into a
//! checkpoint file, and registered by [`Master::volume_add_pin`], which turns that file into
//! the pin of its name in one transaction (epoch-checked, refused on a frozen volume: a
//! frozen volume has no writer to take one, and its contents never change anyway). Releasing
//! one carries no epoch: whoever holds the volume, a released pin is only blocks the writer
//! keeps a little longer than needed (until it opens the volume again), never blocks it
//! lacks. `volume_delete` deletes a volume's pins with its other files.

use std::time::Duration;

use tracing::{info, warn};

use super::namespace::{self as db, VolumeFileRow, VolumeRow};
use super::{now_text, FileId, FileMeta, Master, MasterError, State, VolumeFileMeta, VolumeMeta};
use crate::chunk::ChunkId;
use crate::placement::ServerId;
use crate::volume::{self, VolumeCheckpoint, VolumeError, VolumeFileKind, VolumeLease, VolumePin, VolumeSegment};

/// How often an acquire looks again at allocations in progress or a chunk being sealed by
/// the background loop.
const POLL: Duration = Duration::from_millis(20);

/// The volume, which must exist.
fn existing(tx: &feitian_meta::Transaction<'_>, name: &str) -> Result<VolumeRow, MasterError> {
    Ok(db::volume(tx, name)?.ok_or_else(|| VolumeError::NoSuchVolume(name.to_owned()))?)
}

/// The volume, which must exist and not be frozen.
fn live(tx: &feitian_meta::Transaction<'_>, name: &str) -> Result<VolumeRow, MasterError> {
    let v = existing(tx, name)?;
    if v.frozen {
        return Err(VolumeError::VolumeFrozen(name.to_owned()).into());
    }
    Ok(v)
}

/// The volume, for a change by its writer of `epoch`.
fn writer(tx: &feitian_meta::Transaction<'_>, name: &str, epoch: u64) -> Result<VolumeRow, MasterError> {
    let v = live(tx, name)?;
    volume::check_epoch(name, v.epoch, epoch)?;
    Ok(v)
}

/// The pin a volume file's row is, if it is one.
fn pin_of(f: &VolumeFileRow) -> Option<VolumePin> {
    let pin = f.pin.as_ref().filter(|_| f.kind == VolumeFileKind::Pin)?;
    Some(VolumePin {
        name: pin.name.clone(),
        file: FileId(f.file_id),
        next_seq: pin.next_seq,
        size_bytes: pin.size_bytes,
    })
}

/// A file's length as far as the master knows it, and whether that is final.
fn known_len(st: &State, file: FileId) -> (u64, bool) {
    let Some(f) = st.files.get(&file) else { return (0, false) };
    if let Some(len) = f.sealed_len {
        return (len, true);
    }
    let sealed_end = f
        .chunks
        .iter()
        .filter_map(|c| st.chunks.get(c))
        .filter_map(|c| c.sealed_len.map(|l| c.file_offset + l))
        .max()
        .unwrap_or(0);
    (sealed_end, false)
}

impl Master {
    /// A new volume of `size_bytes`, at epoch 0, a copy-on-write clone of `parent` if given
    /// (which must exist and be frozen).
    pub async fn volume_create(&self, name: &str, size_bytes: u64, parent: Option<&str>) -> Result<(), MasterError> {
        volume::check_name(name)?;
        volume::check_size(size_bytes)?;
        let (n, p) = (name.to_owned(), parent.map(str::to_owned));
        let _ops = self.volume_ops.lock().await;
        self.store
            .write_async(move |tx| {
                if let Some(p) = &p {
                    match db::volume(tx, p)? {
                        None => return Err(VolumeError::ParentUnknown(p.clone()).into()),
                        Some(v) if !v.frozen => return Err(VolumeError::ParentNotFrozen(p.clone()).into()),
                        Some(_) => {}
                    }
                }
                if !db::insert_volume(tx, &n, size_bytes, p.as_deref(), &now_text())? {
                    return Err(VolumeError::VolumeExists(n).into());
                }
                Ok::<_, MasterError>(())
            })
            .await?;
        self.state.lock().volumes.insert(name.to_owned(), VolumeMeta { epoch: 0, frozen: false });
        info!(volume = name, size_bytes, parent, "volume created");
        Ok(())
    }

    /// Makes the caller the volume's one writer: bumps the epoch, fences the previous writer
    /// (see the module docs) and answers the volume's layout with every segment sealed.
    pub async fn volume_acquire(&self, name: &str) -> Result<VolumeLease, MasterError> {
        let (epoch, row, files) = {
            let n = name.to_owned();
            let _ops = self.volume_ops.lock().await;
            let (epoch, row, files) = self
                .store
                .write_async(move |tx| {
                    let v = live(tx, &n)?;
                    let epoch = v.epoch + 1;
                    db::set_volume_epoch(tx, &n, epoch)?;
                    let files = db::volume_files(tx, &n)?;
                    Ok::<_, MasterError>((epoch, v, files))
                })
                .await?;
            if let Some(v) = self.state.lock().volumes.get_mut(name) {
                v.epoch = epoch;
            }
            (epoch, row, files)
        };
        info!(volume = name, epoch, "volume acquired; sealing the previous writer's segments");
        self.settle(&files, row.checkpoint.map(|c| c.file)).await?;
        let lease = self.volume_describe(name).await?;
        Ok(VolumeLease { epoch, ..lease })
    }

    /// The volume's layout, without taking it (readers of a frozen parent).
    pub async fn volume_describe(&self, name: &str) -> Result<VolumeLease, MasterError> {
        let n = name.to_owned();
        let (v, files) = self
            .store
            .read_async(move |tx| {
                let v = existing(tx, &n)?;
                let files = db::volume_files(tx, &n)?;
                Ok::<_, MasterError>((v, files))
            })
            .await?;
        let st = self.state.lock();
        let segments = files
            .iter()
            .filter(|f| f.kind == VolumeFileKind::Segment)
            .filter_map(|f| {
                let file = FileId(f.file_id);
                let (len, sealed) = known_len(&st, file);
                Some(VolumeSegment { seq: f.seq?, file, len, sealed })
            })
            .collect();
        let pins = files.iter().filter_map(pin_of).collect();
        Ok(VolumeLease {
            epoch: v.epoch,
            size_bytes: v.size_bytes,
            parent: v.parent,
            frozen: v.frozen,
            checkpoint: v.checkpoint,
            segments,
            pins,
        })
    }

    /// A new, empty file registered as the volume's next segment, in one transaction;
    /// answers its number and id.
    pub async fn volume_new_segment(&self, name: &str, epoch: u64) -> Result<(u64, FileId), MasterError> {
        self.new_volume_file(name, epoch, VolumeFileKind::Segment).await
    }

    /// A new, empty file registered as a checkpoint file of the volume (not yet its
    /// checkpoint: see [`Master::volume_set_checkpoint`]).
    pub async fn volume_new_checkpoint_file(&self, name: &str, epoch: u64) -> Result<FileId, MasterError> {
        Ok(self.new_volume_file(name, epoch, VolumeFileKind::Checkpoint).await?.1)
    }

    async fn new_volume_file(
        &self,
        name: &str,
        epoch: u64,
        kind: VolumeFileKind,
    ) -> Result<(u64, FileId), MasterError> {
        let n = name.to_owned();
        let replication = self.config.replication as u32;
        let _ops = self.volume_ops.lock().await;
        let (seq, file) = self
            .store
            .write_async(move |tx| {
                writer(tx, &n, epoch)?;
                let seq = match kind {
                    VolumeFileKind::Segment => Some(db::take_segment_seq(tx, &n)?),
                    VolumeFileKind::Checkpoint | VolumeFileKind::Pin => None,
                };
                let file_id = db::insert_file(tx, replication, &now_text())?;
                db::insert_volume_file(tx, &VolumeFileRow { file_id, volume: n, kind, seq, epoch, pin: None })?;
                Ok::<_, MasterError>((seq.unwrap_or(0), FileId(file_id)))
            })
            .await?;
        let mut st = self.state.lock();
        st.files.insert(file, FileMeta { sealed_len: None, chunks: Vec::new() });
        st.volume_files.insert(file, VolumeFileMeta { volume: name.to_owned(), epoch });
        Ok((seq, file))
    }

    /// Installs `file` (a sealed checkpoint file of this volume) as the checkpoint covering
    /// the log up to `covers_offset` in segment `covers_seq`; the previous checkpoint file is
    /// deleted.
    pub async fn volume_set_checkpoint(
        &self,
        name: &str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> Result<(), MasterError> {
        let n = name.to_owned();
        let _ops = self.volume_ops.lock().await;
        let old = self
            .store
            .write_async(move |tx| {
                let v = writer(tx, &n, epoch)?;
                let owned = db::volume_files(tx, &n)?
                    .iter()
                    .any(|f| f.file_id == file.0 && f.kind == VolumeFileKind::Checkpoint);
                let sealed = db::file(tx, file.0)?.is_some_and(|f| f.sealed_len.is_some());
                if !owned || !sealed {
                    return Err(VolumeError::NotACheckpoint { volume: n, file }.into());
                }
                db::set_volume_checkpoint(tx, &n, &VolumeCheckpoint { file, covers_seq, covers_offset })?;
                let old = v.checkpoint.map(|c| c.file).filter(|old| *old != file);
                if let Some(old) = old {
                    db::delete_file(tx, old.0)?;
                }
                Ok::<_, MasterError>(old)
            })
            .await?;
        if let Some(old) = old {
            self.state.lock().forget_file(old);
        }
        Ok(())
    }

    /// Registers `file` (a sealed checkpoint file of this volume, not its current checkpoint)
    /// as the pin `pin_name`, holding the index at the instant the log's next sequence number
    /// was `next_seq` and the volume `size_bytes` long. Idempotent: if the volume has a pin of
    /// that name already, that pin is answered (and `file`, not needed, is deleted).
    pub async fn volume_add_pin(
        &self,
        name: &str,
        epoch: u64,
        pin_name: &str,
        file: FileId,
        next_seq: u64,
        size_bytes: u64,
    ) -> Result<VolumePin, MasterError> {
        volume::check_pin_name(pin_name)?;
        let (n, pin) = (name.to_owned(), db::PinFields { name: pin_name.to_owned(), next_seq, size_bytes });
        let _ops = self.volume_ops.lock().await;
        let (pinned, unneeded) = self
            .store
            .write_async(move |tx| {
                let v = writer(tx, &n, epoch)?;
                let files = db::volume_files(tx, &n)?;
                if let Some(existing) = files.iter().filter_map(pin_of).find(|p| p.name == pin.name) {
                    let stray = existing.file != file
                        && v.checkpoint.map(|c| c.file) != Some(file)
                        && files.iter().any(|f| f.file_id == file.0 && f.kind == VolumeFileKind::Checkpoint);
                    if stray {
                        db::delete_file(tx, file.0)?;
                    }
                    return Ok((existing, stray.then_some(file)));
                }
                let sealed = db::file(tx, file.0)?.is_some_and(|f| f.sealed_len.is_some());
                let current = v.checkpoint.map(|c| c.file) == Some(file);
                if !sealed || current || !db::make_pin(tx, &n, file.0, &pin)? {
                    return Err(VolumeError::NotAPinFile { volume: n, file }.into());
                }
                Ok::<_, MasterError>((VolumePin { name: pin.name, file, next_seq, size_bytes }, None))
            })
            .await?;
        if let Some(f) = unneeded {
            self.state.lock().forget_file(f);
        }
        info!(volume = name, pin = pin_name, file = %pinned.file, "pin registered");
        Ok(pinned)
    }

    /// Deletes the pin `pin_name` of the volume and its file. A pin (or volume) that is not
    /// there is released already.
    pub async fn volume_release_pin(&self, name: &str, pin_name: &str) -> Result<(), MasterError> {
        let (n, p) = (name.to_owned(), pin_name.to_owned());
        let _ops = self.volume_ops.lock().await;
        let released = self
            .store
            .write_async(move |tx| {
                if db::volume(tx, &n)?.is_none() {
                    return Ok(None);
                }
                let pin = db::volume_files(tx, &n)?.iter().filter_map(pin_of).find(|pin| pin.name == p);
                if let Some(pin) = &pin {
                    db::delete_file(tx, pin.file.0)?;
                }
                Ok::<_, MasterError>(pin.map(|pin| pin.file))
            })
            .await?;
        if let Some(file) = released {
            self.state.lock().forget_file(file);
            info!(volume = name, pin = pin_name, "pin released");
        }
        Ok(())
    }

    /// Deletes the volume's segments numbered `seqs` (numbers it does not have are already
    /// gone: nothing to do).
    pub async fn volume_drop_segments(&self, name: &str, epoch: u64, seqs: &[u64]) -> Result<(), MasterError> {
        let (n, seqs) = (name.to_owned(), seqs.to_vec());
        let _ops = self.volume_ops.lock().await;
        let dropped = self
            .store
            .write_async(move |tx| {
                writer(tx, &n, epoch)?;
                let mut dropped = Vec::new();
                for f in db::volume_files(tx, &n)? {
                    if f.seq.is_some_and(|s| seqs.contains(&s)) {
                        db::delete_file(tx, f.file_id)?;
                        dropped.push(FileId(f.file_id));
                    }
                }
                Ok::<_, MasterError>(dropped)
            })
            .await?;
        let mut st = self.state.lock();
        for file in dropped {
            st.forget_file(file);
        }
        Ok(())
    }

    /// Grows the volume to `size_bytes` (shrinking is refused). A control-plane call, not a
    /// writer's: growing conflicts with nothing a writer does, and it learns the new size at
    /// its next acquire.
    pub async fn volume_resize(&self, name: &str, size_bytes: u64) -> Result<(), MasterError> {
        let n = name.to_owned();
        let _ops = self.volume_ops.lock().await;
        self.store
            .write_async(move |tx| {
                let v = live(tx, &n)?;
                volume::check_resize(&n, v.size_bytes, size_bytes)?;
                db::set_volume_size(tx, &n, size_bytes)?;
                Ok::<_, MasterError>(())
            })
            .await
    }

    /// Freezes the volume (an image base, to be cloned): its writer's open segments are
    /// sealed and it is never acquired or changed again. Calling it again (same epoch)
    /// finishes a freeze a crash interrupted.
    pub async fn volume_freeze(&self, name: &str, epoch: u64) -> Result<(), MasterError> {
        let (row, files) = {
            let n = name.to_owned();
            let _ops = self.volume_ops.lock().await;
            let (row, files) = self
                .store
                .write_async(move |tx| {
                    let v = existing(tx, &n)?;
                    volume::check_epoch(&n, v.epoch, epoch)?;
                    db::set_volume_frozen(tx, &n)?;
                    Ok::<_, MasterError>((v, db::volume_files(tx, &n)?))
                })
                .await?;
            if let Some(v) = self.state.lock().volumes.get_mut(name) {
                v.frozen = true;
            }
            (row, files)
        };
        self.settle(&files, row.checkpoint.map(|c| c.file)).await?;
        info!(volume = name, epoch, "volume frozen");
        Ok(())
    }

    /// Deletes the volume and every file it owns; refused while a clone has it as parent.
    pub async fn volume_delete(&self, name: &str) -> Result<(), MasterError> {
        let n = name.to_owned();
        let _ops = self.volume_ops.lock().await;
        let files = self
            .store
            .write_async(move |tx| {
                existing(tx, &n)?;
                if let Some(clone) = db::clones_of(tx, &n)?.into_iter().next() {
                    return Err(VolumeError::VolumeInUse { volume: n, clone }.into());
                }
                let files = db::volume_files(tx, &n)?;
                db::delete_volume(tx, &n)?;
                for f in &files {
                    db::delete_file(tx, f.file_id)?;
                }
                Ok::<_, MasterError>(files)
            })
            .await?;
        let mut st = self.state.lock();
        st.volumes.remove(name);
        for f in files {
            st.forget_file(FileId(f.file_id));
        }
        info!(volume = name, "volume deleted");
        Ok(())
    }

    /// Every volume's name, in order.
    pub fn volumes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.lock().volumes.keys().cloned().collect();
        names.sort();
        names
    }

    // ---- fencing -----------------------------------------------------------------------

    /// After an epoch change (acquire) or a freeze: seals every unsealed segment of `files`
    /// and deletes the checkpoint files other than `checkpoint`.
    async fn settle(&self, files: &[VolumeFileRow], checkpoint: Option<FileId>) -> Result<(), MasterError> {
        let ids: Vec<FileId> = files.iter().map(|f| FileId(f.file_id)).collect();
        self.wait_for_allocations(&ids).await;
        for f in files.iter().filter(|f| f.kind == VolumeFileKind::Segment) {
            self.fence_file(FileId(f.file_id)).await?;
        }
        let kinds: Vec<(FileId, VolumeFileKind)> = files.iter().map(|f| (FileId(f.file_id), f.kind)).collect();
        for stray in volume::stray_checkpoints(&kinds, checkpoint) {
            info!(file = %stray, "deleting a checkpoint file that was never installed");
            self.db(move |tx| db::delete_file(tx, stray.0)).await?;
            self.state.lock().forget_file(stray);
        }
        Ok(())
    }

    /// Waits until no chunk allocation is in progress on `files`. Called after the epoch
    /// moved, so no new one starts; those in progress end (their chunkserver calls time
    /// out), and their chunks are then in the namespace for [`Master::fence_file`] to seal.
    async fn wait_for_allocations(&self, files: &[FileId]) {
        while files.iter().any(|f| self.state.lock().allocating.contains_key(f)) {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Seals the file's open chunk (see the module docs) and then the file.
    async fn fence_file(&self, file: FileId) -> Result<(), MasterError> {
        let last = {
            let st = self.state.lock();
            let f = st.files.get(&file).ok_or(MasterError::NoSuchFile(file))?;
            if f.sealed_len.is_some() {
                return Ok(());
            }
            f.chunks.last().copied()
        };
        if let Some(chunk) = last {
            self.fence_chunk(chunk).await?;
        }
        let len = {
            let st = self.state.lock();
            match last.and_then(|c| st.chunks.get(&c).map(|meta| (c, meta))) {
                None => 0,
                Some((c, meta)) => meta.file_offset + meta.sealed_len.ok_or(MasterError::ChunkOpen(c))?,
            }
        };
        self.record_file_seal(file, len).await?;
        info!(file = %file, len, "sealed a volume segment");
        Ok(())
    }

    /// Seals an unsealed chunk whoever holds it: freeze one replica, match the others.
    async fn fence_chunk(&self, chunk: ChunkId) -> Result<(), MasterError> {
        // Take the chunk out of the background sealer's hands, or wait until it is done.
        let replicas = loop {
            {
                let mut guard = self.state.lock();
                let st = &mut *guard;
                let Some(c) = st.chunks.get(&chunk) else { return Ok(()) };
                if c.sealed_len.is_some() {
                    return Ok(());
                }
                if st.sealing.insert(chunk) {
                    let now = self.now();
                    let mut replicas: Vec<(bool, ServerId, String)> = c
                        .replicas
                        .iter()
                        .filter(|(_, healthy)| *healthy)
                        .filter_map(|(s, _)| {
                            st.servers.get(s).map(|srv| (!st.heartbeats.is_live(*s, now), *s, srv.addr.clone()))
                        })
                        .collect();
                    // Live servers first: the first to answer is the one frozen.
                    replicas.sort_by_key(|r| r.0);
                    break replicas;
                }
            }
            tokio::time::sleep(POLL).await;
        };
        let result = self.seal_replicas(chunk, &replicas).await;
        if result.is_err() {
            self.state.lock().sealing.remove(&chunk);
        }
        result
    }

    /// Seals `chunk` on `replicas` (dead ones flagged `true`, after the live ones).
    async fn seal_replicas(&self, chunk: ChunkId, replicas: &[(bool, ServerId, String)]) -> Result<(), MasterError> {
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        // Replicas on servers the heartbeats call dead are not waited for (they are replaced)
        // when a live one can be frozen: the old writer's appends need every replica, the
        // frozen one included, so they cannot be acknowledged whatever the dead ones do.
        let live = replicas.iter().filter(|r| !r.0).count();
        let replicas = if live > 0 {
            failed.extend(replicas[live..].iter().map(|r| r.1));
            &replicas[..live]
        } else {
            replicas
        };
        let mut rest = replicas.iter();
        let (source, len) = loop {
            let Some((_, s, addr)) = rest.next() else {
                return Err(MasterError::Fence { chunk, errors: errors.join("; ") });
            };
            match self.chunk_client(addr).seal(chunk, None).await {
                Ok(len) => break (addr.clone(), len),
                Err(e) => {
                    warn!(chunk = %chunk, server = %s, error = %e, "cannot freeze a replica of a volume's chunk");
                    errors.push(format!("{addr}: {e}"));
                    failed.push(*s);
                }
            }
        };
        for (_, s, addr) in rest {
            match self.chunk_client(addr).seal(chunk, Some(len)).await {
                Ok(_) => continue,
                Err(e) if e.is_transport() => {
                    warn!(chunk = %chunk, server = %s, error = %e, "cannot seal a replica of a volume's chunk");
                    failed.push(*s);
                    continue;
                }
                Err(e) => {
                    info!(chunk = %chunk, server = %s, len, error = %e, "a replica differs from the frozen one: copying it");
                }
            }
            let client = self.order_client(*s, addr).with_timeout(Duration::from_secs(3600));
            if let Err(e) = client.replicate(chunk, &source, len).await {
                warn!(chunk = %chunk, server = %s, error = %e, "cannot copy the frozen replica; it will be replaced");
                failed.push(*s);
            }
        }
        self.record_seal(chunk, len, &failed).await
    }
}
