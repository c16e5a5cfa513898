//! Cloud disks inside `feitian up`: the host's [`DiskHost`] on the embedded Pangu (its
//! volume store and disk servers), and each public image's root disk (the built-in image's,
//! the Debian 12 image's) as a frozen RAF volume that the system disks of its instances are
//! copy-on-write clones of (`docs/disks.md`).
//!
//! The image's volume is named after the image directory (which carries the digest of what
//! the image is built from), so a rebuilt image is imported beside the old one, which stays
//! the parent of the disks made from it. An import a crash interrupted (a volume not frozen)
//! is deleted and done again. Without a guest image (the `sim` driver) the image volume is an
//! empty frozen volume: system disks exist as RAFs, and no guest reads them.

use feitian_compute::image::{ImageLayout, ROOTFS_SIZE_MIB};
use feitian_compute::{DiskPlan, DiskServers, DriverError, DriverFuture};
use feitian_disk::qos::{Category, Limits};
use feitian_disk::DiskHost;
use feitian_pangu::client::Pangu;
use feitian_raf::pangu::PanguStore;
use feitian_raf::{LogStore, Raf, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes written per engine call while importing (the engine's group-commit batch).
const IMPORT_PIECE: usize = 4 << 20;
const BLOCK: usize = 4096;

/// The host's disks on `pangu`.
pub fn host(pangu: Pangu) -> Arc<DiskHost> {
    DiskHost::new(PanguStore::new(pangu), feitian_raf::Config::default())
}

/// Makes the volumes of the public images ready: the built-in image's (`base`) and the Debian
/// 12 image's (`debian`). With the `sim` driver (no `base`) both are the sim's empty volume;
/// with the `qemu` driver and no Debian image (its build failed, and was said), the Debian
/// image gets none, so its instances' system disks wait rather than boot an empty disk.
pub async fn prepare_images(
    host: &Arc<DiskHost>,
    base: Option<&ImageLayout>,
    debian: Option<&ImageLayout>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    prepare_image(host, base, feitian_ecs::images::FEITIAN_LINUX.id, out).await?;
    if base.is_none() || debian.is_some() {
        prepare_image(host, debian, feitian_ecs::images::DEBIAN_12.id, out).await?;
    }
    Ok(())
}

/// Makes the image volume of `image` (none: the sim's empty one) ready, and known to `host`
/// as the built-in image's. Before any disk is made. A damaged image is an error; a Pangu
/// that cannot take the volume yet (a cluster whose chunkservers have not joined: replication
/// 3 needs three) is not: the import is retried in the background, and system disks wait for
/// it (their volumes' parent is missing until then; the disk reconciler retries).
async fn prepare_image(
    host: &Arc<DiskHost>,
    image: Option<&ImageLayout>,
    builtin_image_id: &str,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let logical = feitian_agent_api::disk::image_volume_name(builtin_image_id);
    let raw = match image {
        Some(layout) => Some(raw_root_disk(host.store(), layout).await?),
        None => None,
    };
    match import(host.store(), raw.as_ref(), out).await {
        Ok(volume) => {
            host.set_image_volume(&logical, &volume);
            Ok(())
        }
        Err(e) => {
            writeln!(
                out,
                "image: cannot import the guest image into Pangu yet ({e:#}); retrying every 5 s \
                 (a cluster needs as many chunkservers as its replication); system disks wait for it"
            )?;
            let host = host.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    match import(host.store(), raw.as_ref(), &mut std::io::sink()).await {
                        Ok(volume) => {
                            tracing::info!(%volume, "imported the guest image");
                            host.set_image_volume(&logical, &volume);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "the guest image is not imported yet"),
                    }
                }
            });
            Ok(())
        }
    }
}

/// The image's volume name and its root disk as a raw file (`None`: already imported).
type RawImage = (String, Option<PathBuf>);

/// Reads the image's root disk (qcow2, never probed) into a raw file beside it, unless its
/// volume is imported already. Failing here means the image itself is bad.
async fn raw_root_disk(store: &PanguStore, layout: &ImageLayout) -> anyhow::Result<RawImage> {
    let name = image_volume(layout);
    if frozen_or_cleared(store, &name).await? {
        return Ok((name, None));
    }
    let raw = layout.dir.join("rootfs.raw.import");
    let convert = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
        .arg(layout.rootfs())
        .arg(&raw)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run qemu-img (apt-get install qemu-utils): {e}"))?;
    if !convert.status.success() {
        anyhow::bail!(
            "qemu-img cannot read the image's root disk {}: {}",
            layout.rootfs().display(),
            String::from_utf8_lossy(&convert.stderr).trim()
        );
    }
    Ok((name, Some(raw)))
}

/// One attempt at making the image volume: the raw root disk's blocks, or the sim's empty
/// volume. Returns the volume's name.
async fn import(store: &PanguStore, raw: Option<&RawImage>, out: &mut (dyn Write + Send)) -> anyhow::Result<String> {
    match raw {
        None => empty_image(store).await,
        Some((name, None)) => Ok(name.clone()),
        Some((name, Some(path))) => {
            if !frozen_or_cleared(store, name).await? {
                import_raw(store, name, path, out).await?;
            }
            let _ = std::fs::remove_file(path);
            Ok(name.clone())
        }
    }
}

/// The name of the frozen volume holding `layout`'s root disk.
pub fn image_volume(layout: &ImageLayout) -> String {
    let dir = layout.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("img-{dir}")
}

/// Whether `name` is a frozen volume; a volume left unfrozen by an interrupted import is
/// deleted (nothing can be its clone: only frozen volumes are parents).
async fn frozen_or_cleared(store: &PanguStore, name: &str) -> anyhow::Result<bool> {
    match store.describe(name).await {
        Ok(lease) if lease.frozen => Ok(true),
        Ok(_) => {
            store.pangu().volume_delete(name).await?;
            Ok(false)
        }
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("cannot read volume {name}: {e}")),
    }
}

async fn empty_image(store: &PanguStore) -> anyhow::Result<String> {
    let name = "img-sim-empty".to_owned();
    if frozen_or_cleared(store, &name).await? {
        return Ok(name);
    }
    store.create(&name, ROOTFS_SIZE_MIB << 20, None).await?;
    let raf = Raf::open(Arc::new(store.clone()), &name, feitian_raf::Config::default()).await?;
    raf.freeze().await?;
    Ok(name)
}

async fn import_raw(store: &PanguStore, name: &str, raw: &Path, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(raw)?;
    let len = file.metadata()?.len();
    let size = len.div_ceil(BLOCK as u64) * BLOCK as u64;
    writeln!(out, "image: importing the root disk ({} MiB) into RAF volume {name} (once)", size >> 20)?;
    out.flush()?;
    store.create(name, size.max(BLOCK as u64), None).await?;
    let raf = Raf::open(Arc::new(store.clone()), name, feitian_raf::Config::default()).await?;
    let mut buf = vec![0u8; IMPORT_PIECE];
    let (mut at, mut written) = (0u64, 0u64);
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        // Whole blocks (the last one padded with zeros); runs of non-zero blocks are written
        // as one call each.
        let n = n.div_ceil(BLOCK) * BLOCK;
        let mut i = 0;
        while i < n {
            if buf[i..i + BLOCK].iter().all(|&b| b == 0) {
                i += BLOCK;
                continue;
            }
            let start = i;
            while i < n && buf[i..i + BLOCK].iter().any(|&b| b != 0) {
                i += BLOCK;
            }
            raf.write(at + start as u64, bytes::Bytes::copy_from_slice(&buf[start..i])).await?;
            written += (i - start) as u64;
        }
        at += n as u64;
    }
    raf.freeze().await?;
    writeln!(out, "image: imported {} MiB of data", written >> 20)?;
    Ok(())
}

/// Reads until `buf` is full or the file ends; the tail of a short last read is zeroed.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf[n..].iter_mut().for_each(|b| *b = 0);
    Ok(n)
}

/// The host's disk servers as the `qemu` driver asks for them.
pub struct Servers {
    pub host: Arc<DiskHost>,
    /// `[disks] enforce_limits`.
    pub enforce_limits: bool,
}

impl Servers {
    /// The disk's published ceilings, when they are enforced. A category the limits table
    /// does not know is served unthrottled (and said so): the API validated it, so this is a
    /// table that lags the API, not a client's error.
    fn limits(&self, disk: &DiskPlan) -> Option<Limits> {
        if !self.enforce_limits {
            return None;
        }
        let level = Some(disk.performance_level.as_str()).filter(|l| !l.is_empty());
        match Category::parse(&disk.category, level) {
            Ok(c) => Some(c.limits(disk.size_gib)),
            Err(e) => {
                tracing::warn!(disk = %disk.volume, error = %e, "no published limits for this category; serving it unthrottled");
                None
            }
        }
    }
}

impl DiskServers for Servers {
    fn serve<'a>(&'a self, disk: &'a DiskPlan, dir: &'a Path, uid: u32) -> DriverFuture<'a, PathBuf> {
        Box::pin(async move {
            let limits = self.limits(disk);
            self.host.serve(&disk.volume, dir, uid, limits).await.map_err(|e| DriverError::Failed(e.to_string()))
        })
    }

    fn stop<'a>(&'a self, volume: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.host.stop(volume).await;
            Ok(())
        })
    }
}
