//! The image task worker (docs/snapshots.md, "Image import and export"): does each
//! `Processing` ImportImage and ExportImage task the API recorded, one at a time, oldest
//! first, and ends it in the store (`feitian_meta::image_task`).
//!
//! - An import streams each source object to a scratch file, checks it with `qemu-img info`
//!   (the format given, the size allowed), converts it to raw, and stores it as a snapshot
//!   the way the host's uploader stores a disk: 1 MiB ranges, zeros left out, blocks named by
//!   their SHA-256 and claimed before they are looked for or stored, then one commit
//!   (`snapshot::commit`, which moves the image on with `image::settle`).
//! - An export writes the image's system snapshot into a sparse raw file from its block
//!   objects, converts it to the format asked for, and stores it in the owner's bucket.
//!
//! A task the worker cannot finish for a reason in its input fails with that reason; one it
//! cannot finish now (the store or the system bucket failing, blocks being swept) stays
//! `Processing` and is done again from its start on the next pass, which is also what
//! happens after `kill -9` (block objects already stored are found and not stored again).
//! Between batches the worker rereads the task, so a `CancelTask` stops it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_agent::snapshots::block_name;
use feitian_agent_api::snapshot::{BlockClaim, PinInfo, RangeBlock, SnapshotUpload, RANGE_BYTES};
use feitian_agent_api::BlockStore;
use feitian_meta::image::{self, ImageStatus};
use feitian_meta::image_task::{self as db, ImportSource, Task, TaskAction, TaskStatus};
use feitian_meta::snapshot::{self, Commit};
use feitian_meta::{MetaError, Store};
use feitian_oss::service::Oss;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::snapshots::SystemBlocks;

const GIB: u64 = 1 << 30;
/// Ranges per claim (and per progress report).
const BATCH: usize = 32;

/// Why a task did not finish.
#[derive(Debug)]
enum Stop {
    /// Its input is bad: the task fails with this reason.
    Bad(String),
    /// It is no longer `Processing` (cancelled): nothing more to do.
    Ended,
    /// It cannot go on now: it is done again on a later pass.
    Retry(anyhow::Error),
}

impl From<MetaError> for Stop {
    fn from(e: MetaError) -> Self {
        Stop::Retry(e.into())
    }
}

/// The worker.
pub struct ImageTasks {
    store: Store,
    oss: Arc<Oss>,
    blocks: Arc<SystemBlocks>,
    /// Where the scratch files go (under the data directory).
    scratch: PathBuf,
}

impl ImageTasks {
    pub fn new(store: Store, oss: Arc<Oss>, blocks: Arc<SystemBlocks>, data_dir: &Path) -> ImageTasks {
        ImageTasks { store, oss, blocks, scratch: data_dir.join("tmp").join("image-tasks") }
    }

    /// Works through the tasks every `every`, for ever.
    pub async fn run(self, every: Duration) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "the image task worker cannot read its tasks; retrying");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One pass over the `Processing` tasks; how many ended.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let tasks = self.store.read_async(db::processing).await?;
        let mut ended = 0;
        for t in tasks {
            let outcome = match t.action {
                TaskAction::ImportImage => self.import(&t).await,
                TaskAction::ExportImage => self.export(&t).await,
            };
            let _ = tokio::fs::remove_dir_all(self.scratch.join(&t.id)).await;
            match outcome {
                Ok(()) => ended += 1,
                Err(Stop::Bad(why)) => {
                    tracing::warn!(task = %t.id, %why, "an image task failed");
                    let (id, at) = (t.id.clone(), feitian_api::service::now());
                    self.store.write_async(move |tx| db::fail(tx, &id, &why, &at)).await?;
                    ended += 1;
                }
                Err(Stop::Ended) => ended += 1,
                Err(Stop::Retry(e)) => {
                    tracing::warn!(task = %t.id, error = %e, "an image task cannot go on now; it starts again later")
                }
            }
        }
        Ok(ended)
    }

    /// Whether the task is still `Processing`.
    async fn still(&self, id: &str) -> Result<(), Stop> {
        let id = id.to_owned();
        match self.store.read_async(move |tx| db::get(tx, &id)).await? {
            Some(t) if t.status == TaskStatus::Processing => Ok(()),
            _ => Err(Stop::Ended),
        }
    }

    async fn progress(&self, task: &str, snapshot_id: &str, task_pct: i64, snap_pct: u8) -> Result<(), Stop> {
        let (t, s) = (task.to_owned(), snapshot_id.to_owned());
        self.store
            .write_async(move |tx| {
                db::progress(tx, &t, task_pct)?;
                snapshot::progress(tx, &s, snap_pct)
            })
            .await?;
        Ok(())
    }

    async fn import(&self, t: &Task) -> Result<(), Stop> {
        let id = t.id.clone();
        let sources = self.store.read_async(move |tx| db::sources(tx, &id)).await?;
        let dir = self.scratch.join(&t.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| Stop::Retry(e.into()))?;
        let count = sources.len().max(1) as i64;
        for (n, src) in sources.iter().enumerate() {
            self.still(&t.id).await?;
            let sid = src.snapshot_id.clone();
            let done = self
                .store
                .read_async(move |tx| snapshot::get_any_owner(tx, &sid))
                .await?
                .is_some_and(|s| s.status == snapshot::SnapshotStatus::Accomplished);
            if !done {
                self.import_one(t, src, &dir, n as i64, count).await?;
            }
        }
        let (id, at) = (t.id.clone(), feitian_api::service::now());
        self.store.write_async(move |tx| db::finish(tx, &id, &at)).await?;
        tracing::info!(task = %t.id, image = %t.image_id, "an image import finished");
        Ok(())
    }

    async fn import_one(&self, t: &Task, src: &ImportSource, dir: &Path, n: i64, count: i64) -> Result<(), Stop> {
        // 1. The object, to a scratch file (a local file of `feitian image import` is read
        //    where it is).
        let local = src.bucket.is_empty();
        let input = if local { PathBuf::from(&src.object) } else { dir.join(format!("{}.in", src.snapshot_id)) };
        if local {
            if !input.is_file() {
                return Err(Stop::Bad(format!("{} is not a file the server can read", input.display())));
            }
        } else {
            let (_, body) = self.oss.owner_read(t.account_id, &src.bucket, &src.object).await.map_err(|e| {
                Stop::Bad(format!("cannot read oss://{}/{}: {} ({})", src.bucket, src.object, e.message, e.code))
            })?;
            let mut file = tokio::fs::File::create(&input).await.map_err(|e| Stop::Retry(e.into()))?;
            let mut data = body.into_data_stream();
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(|e| Stop::Retry(anyhow::anyhow!("reading the object: {e}")))?;
                file.write_all(&chunk).await.map_err(|e| Stop::Retry(e.into()))?;
            }
            file.sync_all().await.map_err(|e| Stop::Retry(e.into()))?;
        }

        // 2. What it is, and how large a disk it makes.
        let (format, virtual_size) = qemu_img_info(&input, &src.format).await?;
        let needed = virtual_size.div_ceil(GIB).max(1) as i64;
        if src.size_gib > 0 && needed > src.size_gib {
            return Err(Stop::Bad(format!(
                "oss://{}/{} is a disk of {virtual_size} bytes, larger than DiskImageSize {} GiB",
                src.bucket, src.object, src.size_gib
            )));
        }
        let size_gib = src.size_gib.max(needed);
        {
            let (s, image_id, at) = (src.clone(), t.image_id.clone(), feitian_api::service::now());
            let pin = PinInfo { next_seq: 0, size_bytes: size_gib as u64 * GIB };
            self.store
                .write_async(move |tx| {
                    db::set_size(tx, &s, &image_id, size_gib)?;
                    snapshot::pinned(tx, &s.snapshot_id, pin, &at)
                })
                .await?;
        }

        // 3. Raw, then stored range by range.
        let raw = dir.join(format!("{}.raw", src.snapshot_id));
        qemu_img(&["convert", "-q", "-f", &format, "-O", "raw", path_str(&input)?, path_str(&raw)?])
            .await
            .map_err(Stop::Bad)?;
        if !local {
            let _ = tokio::fs::remove_file(&input).await;
        }
        let mut file = tokio::fs::File::open(&raw).await.map_err(|e| Stop::Retry(e.into()))?;
        let len = file.metadata().await.map_err(|e| Stop::Retry(e.into()))?.len();
        let ranges = len.div_ceil(RANGE_BYTES);
        let mut manifest: BTreeMap<u64, String> = BTreeMap::new();
        let (mut read_bytes, mut stored_bytes) = (0u64, 0u64);
        let mut range = 0u64;
        while range < ranges {
            self.still(&t.id).await?;
            let mut batch: Vec<(u64, String, Bytes)> = Vec::new();
            while range < ranges && batch.len() < BATCH {
                // A hole of the (sparse) raw file reads as zeros: skip to its next data.
                match next_data(&file, range * RANGE_BYTES) {
                    None => {
                        range = ranges;
                        break;
                    }
                    Some(at) if at / RANGE_BYTES > range => {
                        range = at / RANGE_BYTES;
                        continue;
                    }
                    Some(_) => {}
                }
                let mut buf = vec![0u8; (len - range * RANGE_BYTES).min(RANGE_BYTES) as usize];
                file.seek(std::io::SeekFrom::Start(range * RANGE_BYTES)).await.map_err(|e| Stop::Retry(e.into()))?;
                file.read_exact(&mut buf).await.map_err(|e| Stop::Retry(e.into()))?;
                read_bytes += buf.len() as u64;
                if let Some(h) = block_name(&buf) {
                    batch.push((range, h, Bytes::from(buf)));
                }
                range += 1;
            }
            if !batch.is_empty() {
                stored_bytes += self.store_batch(&src.snapshot_id, &batch).await?;
                for (r, h, _) in batch {
                    manifest.insert(r, h);
                }
            }
            let share = |done: u64| (done * 100 / ranges.max(1)) as i64;
            let snap_pct = share(range).clamp(0, 99) as u8;
            self.progress(&t.id, &src.snapshot_id, (n * 100 + share(range)) / count, snap_pct).await?;
        }
        drop(file);
        let _ = tokio::fs::remove_file(&raw).await;

        // 4. One commit: the manifest, its references, `accomplished`, the image on.
        let upload = SnapshotUpload {
            id: src.snapshot_id.clone(),
            base: None,
            ranges: manifest.into_iter().map(|(range, h)| RangeBlock { range, block: Some(h) }).collect(),
            read_bytes,
            stored_bytes,
        };
        let at = feitian_api::service::now();
        let committed = self
            .store
            .write_async(move |tx| {
                let c = snapshot::commit(tx, &upload, &at)?;
                if c == Commit::Done {
                    image::settle(tx, &upload.id, &at)?;
                }
                Ok::<_, MetaError>(c)
            })
            .await?;
        match committed {
            Commit::Done => Ok(()),
            Commit::Gone | Commit::NotProgressing => Err(Stop::Ended),
            other => Err(Stop::Retry(anyhow::anyhow!("the commit of {} was refused: {other:?}", src.snapshot_id))),
        }
    }

    /// Claims a batch's blocks for snapshot `sid`, then stores those the system bucket
    /// lacks; the bytes stored.
    async fn store_batch(&self, sid: &str, batch: &[(u64, String, Bytes)]) -> Result<u64, Stop> {
        let claims: Vec<BlockClaim> =
            batch.iter().map(|(_, h, b)| BlockClaim { hash: h.clone(), bytes: b.len() as u64 }).collect();
        let s = sid.to_owned();
        if !self.store.write_async(move |tx| snapshot::claim(tx, &s, &claims)).await? {
            return Err(Stop::Retry(anyhow::anyhow!("a block of {sid} is being swept, or the snapshot ended")));
        }
        let mut stored = 0;
        for (_, h, b) in batch {
            if !self.blocks.has(h.clone()).await.map_err(|e| Stop::Retry(anyhow::anyhow!("{e}")))? {
                self.blocks.put(h.clone(), b.clone()).await.map_err(|e| Stop::Retry(anyhow::anyhow!("{e}")))?;
                stored += b.len() as u64;
            }
        }
        Ok(stored)
    }

    async fn export(&self, t: &Task) -> Result<(), Stop> {
        let image_id = t.image_id.clone();
        let (img, manifest, size) = self
            .store
            .read_async(move |tx| {
                let Some(img) = image::get(tx, &image_id)? else { return Ok(None) };
                let Some(system) = image::disks(tx, &img.id)?.into_iter().find(|d| d.disk_type.as_str() == "system")
                else {
                    return Ok(None);
                };
                let manifest = snapshot::manifest(tx, &system.snapshot_id)?;
                Ok::<_, MetaError>(Some((img, manifest, system.size_gib)))
            })
            .await?
            .ok_or_else(|| Stop::Bad(format!("the image {} is gone", t.image_id)))?;
        if img.status != ImageStatus::Available && img.status != ImageStatus::Deprecated {
            return Err(Stop::Bad(format!("the image {} is {}", img.id, img.status.as_str())));
        }
        let dir = self.scratch.join(&t.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| Stop::Retry(e.into()))?;
        let raw = dir.join("disk.raw");
        let mut file = tokio::fs::File::create(&raw).await.map_err(|e| Stop::Retry(e.into()))?;
        let len = size.max(0) as u64 * GIB;
        file.set_len(len).await.map_err(|e| Stop::Retry(e.into()))?;
        let total = manifest.len().max(1) as i64;
        for (n, (range, hash)) in manifest.iter().enumerate() {
            if n % BATCH == 0 {
                self.still(&t.id).await?;
                let (id, pct) = (t.id.clone(), (n as i64 * 90) / total);
                self.store.write_async(move |tx| db::progress(tx, &id, pct)).await?;
            }
            let data =
                self.blocks.get(hash.clone()).await.map_err(|e| Stop::Retry(anyhow::anyhow!("{e}")))?.ok_or_else(
                    || Stop::Retry(anyhow::anyhow!("the block {hash} is missing from the system bucket")),
                )?;
            file.seek(std::io::SeekFrom::Start(range * RANGE_BYTES)).await.map_err(|e| Stop::Retry(e.into()))?;
            file.write_all(&data).await.map_err(|e| Stop::Retry(e.into()))?;
        }
        file.sync_all().await.map_err(|e| Stop::Retry(e.into()))?;
        drop(file);
        let out = match t.format.as_str() {
            "raw" => raw.clone(),
            other => {
                let out = dir.join(format!("disk.{other}"));
                let fmt = if other == "vhd" { "vpc" } else { other };
                qemu_img(&["convert", "-q", "-f", "raw", "-O", fmt, path_str(&raw)?, path_str(&out)?])
                    .await
                    .map_err(|e| Stop::Retry(anyhow::anyhow!(e)))?;
                out
            }
        };
        self.still(&t.id).await?;
        self.oss.owner_put_file(t.account_id, &t.bucket, &t.object, &out).await.map_err(|e| {
            Stop::Bad(format!("cannot store oss://{}/{}: {} ({})", t.bucket, t.object, e.message, e.code))
        })?;
        let (id, at) = (t.id.clone(), feitian_api::service::now());
        self.store.write_async(move |tx| db::finish(tx, &id, &at)).await?;
        tracing::info!(task = %t.id, image = %t.image_id, object = %t.object, "an image export finished");
        Ok(())
    }
}

/// The offset of the first byte of data at or after `at` (`SEEK_DATA`), `None` when only a
/// hole follows; `Some(at)` when the file system cannot say (every byte counts as data).
fn next_data(file: &tokio::fs::File, at: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(at) else { return Some(at) };
    // SAFETY: lseek on a file descriptor the File owns; it moves that descriptor's offset,
    // which every read here sets again (seek before read).
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if r >= 0 {
        return Some(r as u64);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => None,
        _ => Some(at),
    }
}

fn path_str(p: &Path) -> Result<&str, Stop> {
    p.to_str().ok_or_else(|| Stop::Retry(anyhow::anyhow!("{} is not UTF-8", p.display())))
}

/// Runs qemu-img; its error output on failure.
async fn qemu_img(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img (apt-get install qemu-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!("qemu-img {}: {}", args[0], String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The file's format (qemu-img's name) and virtual size. `wanted` (the API's `raw`, `qcow2`,
/// `vhd`; empty: any of them) must be what the file is.
async fn qemu_img_info(path: &Path, wanted: &str) -> Result<(String, u64), Stop> {
    let probe = qemu_img(&["info", "--output=json", path_str(path)?]).await.map_err(Stop::Bad)?;
    let v: serde_json::Value =
        serde_json::from_str(&probe).map_err(|e| Stop::Bad(format!("qemu-img info gave no JSON: {e}")))?;
    let found = v["format"].as_str().unwrap_or("").to_owned();
    let size = v["virtual-size"].as_u64().unwrap_or(0);
    let api = match found.as_str() {
        "raw" => "raw",
        "qcow2" => "qcow2",
        "vpc" => "vhd",
        other => return Err(Stop::Bad(format!("the file is {other:?}, not RAW, QCOW2 or VHD"))),
    };
    if !wanted.is_empty() && wanted != api {
        return Err(Stop::Bad(format!(
            "the file is {}, not {} as Format says",
            api.to_uppercase(),
            wanted.to_uppercase()
        )));
    }
    if let Some(backing) = v["backing-filename"].as_str() {
        return Err(Stop::Bad(format!("the file names a backing file ({backing}); upload a standalone image")));
    }
    if size == 0 {
        return Err(Stop::Bad("the file holds an empty disk".into()));
    }
    Ok((found, size))
}
