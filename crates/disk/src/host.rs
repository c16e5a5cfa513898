//! A host's disks: the volumes it serves to its guests, and its side of the volume store.
//!
//! [`DiskHost`] opens a disk's RAF volume (acquiring it: any earlier writer is fenced) and
//! serves it on an NBD socket in the instance's directory, for that instance's QEMU only
//! (lesson 2 of `docs/disks.md`: a disk's server runs on the host of its instance). It is
//! also the host's [`VolumeService`]: it makes, grows, re-initialises and deletes volumes
//! for the disk reconciler. A volume being served is grown through its open engine, and its
//! connection is dropped so that QEMU reconnects and learns the new size.
//!
//! Operations on one volume (serve, stop, grow, delete) are serialised by a lock of that
//! volume's own; the map of served volumes is held only to look up, insert and remove, never
//! across a Pangu call. So a volume whose open is slow (its acquire waits for a chunkserver
//! to answer a seal) holds up nothing but itself: other guests' disks still start, stop and
//! grow.
//!
//! It also pins volumes for snapshots (`docs/snapshots.md`, "Pins and compaction"): a served
//! volume is pinned by its open engine, in order with its guest's writes; a volume no guest
//! uses is opened for the pin (acquired, fencing nobody: nothing else writes it) and closed
//! again, under its lock, so a serve that starts meanwhile waits for the pin and then opens
//! the volume as usual (the pin is in its lease). Pins are read through read-only views of
//! the registry, cached per pin until it is released; a view needs no writer, so an upload
//! reads the same whether the disk's guest runs, stopped, or moved meanwhile.
//!
//! The logical image volumes the control plane names (`img-<image id>`) map to the frozen
//! volumes this host imported ([`DiskHost::set_image_volume`]): the name of an imported
//! image's volume carries its content's digest, so a rebuilt image never reuses the volume of
//! an older one.

use crate::nbd::{NbdServer, ServerConfig, ServerError};
use crate::qos::Limits;
use crate::RafDevice;
use bytes::Bytes;
use feitian_agent_api::snapshot::PinInfo;
use feitian_agent_api::{ContractError, Fut, VolumeService};
use feitian_raf::pangu::PanguStore;
use feitian_raf::{Config, LogStore, PinRef, PinnedView, Raf, RafError, StoreError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("volume {volume}: {source}")]
    Raf { volume: String, source: RafError },
    #[error("volume {volume}: {source}")]
    Store { volume: String, source: StoreError },
    #[error("disk server of {volume}: {source}")]
    Server { volume: String, source: ServerError },
    #[error("volume {0} is being served to a guest: stop its instance first")]
    Busy(String),
    #[error("volume {0}: the host's disk service is shutting down")]
    Stopped(String),
}

struct Served {
    raf: Arc<Raf>,
    server: NbdServer,
    dir: PathBuf,
}

/// The disks of one host.
pub struct DiskHost {
    store: PanguStore,
    config: Config,
    served: parking_lot::Mutex<HashMap<String, Served>>,
    /// One lock per volume, for operations that must not interleave on it.
    volume_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by [`DiskHost::stop_all`]: nothing is served any more.
    stopped: std::sync::atomic::AtomicBool,
    /// Logical image volume (`img-<image id>`) → the frozen volume holding its bytes.
    images: parking_lot::Mutex<HashMap<String, String>>,
    /// Pins opened for reading, by (volume, pin name); dropped when released.
    views: parking_lot::Mutex<HashMap<(String, String), Arc<PinnedView>>>,
}

impl DiskHost {
    pub fn new(store: PanguStore, config: Config) -> Arc<DiskHost> {
        Arc::new(DiskHost {
            store,
            config,
            served: parking_lot::Mutex::new(HashMap::new()),
            volume_locks: parking_lot::Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            images: parking_lot::Mutex::new(HashMap::new()),
            views: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &PanguStore {
        &self.store
    }

    /// Says which frozen volume holds the bytes of the image volume the control plane calls
    /// `logical`.
    pub fn set_image_volume(&self, logical: &str, volume: &str) {
        self.images.lock().insert(logical.to_owned(), volume.to_owned());
    }

    /// The lock of `volume`'s operations.
    fn volume_lock(&self, volume: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.volume_locks.lock().entry(volume.to_owned()).or_default().clone()
    }

    fn resolve(&self, parent: Option<String>) -> Option<String> {
        parent.map(|p| self.images.lock().get(&p).cloned().unwrap_or(p))
    }

    /// Serves `volume` on `DIR/VOLUME.sock` to the QEMU running as `client_uid`, and returns
    /// the socket's path. Idempotent: a volume served already in `dir` is left as it is (one
    /// served elsewhere moves: its old server stops first).
    pub async fn serve(
        &self,
        volume: &str,
        dir: &Path,
        client_uid: u32,
        limits: Option<Limits>,
    ) -> Result<PathBuf, HostError> {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        let old = {
            let mut served = self.served.lock();
            if let Some(s) = served.get(volume) {
                if s.dir == dir {
                    return Ok(s.server.socket_path().to_owned());
                }
            }
            served.remove(volume)
        };
        if let Some(old) = old {
            close(volume, old).await;
        }
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HostError::Stopped(volume.to_owned()));
        }
        let store: Arc<dyn LogStore> = Arc::new(self.store.clone());
        let raf = Raf::open(store, volume, self.config.clone())
            .await
            .map_err(|source| HostError::Raf { volume: volume.to_owned(), source })?;
        let raf = Arc::new(raf);
        let config = ServerConfig { dir: dir.to_owned(), name: volume.to_owned(), client_uid, limits };
        let server = match NbdServer::start(config, Arc::new(RafDevice::new(raf.clone()))) {
            Ok(s) => s,
            Err(source) => {
                let _ = raf.close().await;
                return Err(HostError::Server { volume: volume.to_owned(), source });
            }
        };
        let path = server.socket_path().to_owned();
        let served = Served { raf, server, dir: dir.to_owned() };
        // A shutdown that began while the volume opened: it is not left serving.
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            close(volume, served).await;
            return Err(HostError::Stopped(volume.to_owned()));
        }
        self.served.lock().insert(volume.to_owned(), served);
        Ok(path)
    }

    /// Stops serving `volume` (its connection's requests in flight finish first) and closes
    /// it (a checkpoint). Idempotent.
    pub async fn stop(&self, volume: &str) {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        let old = self.served.lock().remove(volume);
        if let Some(old) = old {
            close(volume, old).await;
        }
    }

    /// Stops every server (feitian's shutdown; guests were stopped first); nothing is
    /// served after it.
    pub async fn stop_all(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<(String, Served)> = self.served.lock().drain().collect();
        for (volume, s) in all {
            close(&volume, s).await;
        }
    }

    /// Whether `volume` is being served.
    pub async fn is_served(&self, volume: &str) -> bool {
        self.served.lock().contains_key(volume)
    }

    /// The open engine of a served volume (tests, statistics).
    pub async fn raf(&self, volume: &str) -> Option<Arc<Raf>> {
        self.served.lock().get(volume).map(|s| s.raf.clone())
    }

    /// Grows `volume` to `size` bytes: through its engine when served (then its connection is
    /// dropped, so QEMU reconnects and reads the new size), in the registry otherwise.
    pub async fn grow(&self, volume: &str, size: u64) -> Result<(), HostError> {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        let raf = self.served.lock().get(volume).map(|s| s.raf.clone());
        if let Some(raf) = raf {
            if raf.size() < size {
                raf.resize(size).await.map_err(|source| HostError::Raf { volume: volume.to_owned(), source })?;
                // The volume's lock kept it served meanwhile.
                if let Some(s) = self.served.lock().get(volume) {
                    s.server.disconnect();
                }
            }
            return Ok(());
        }
        let lease = self.describe(volume).await?;
        if lease.size_bytes < size {
            self.store.resize(volume, lease.epoch, size).await.map_err(|source| store_err(volume, source))?;
        }
        Ok(())
    }

    /// Pins `volume`'s contents now as `pin` (a snapshot id): through its engine when
    /// served, else by opening it for the pin and closing it again. Idempotent.
    pub async fn pin(&self, volume: &str, pin: &str) -> Result<PinRef, HostError> {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        let raf_err = |source| HostError::Raf { volume: volume.to_owned(), source };
        let served = self.served.lock().get(volume).map(|s| s.raf.clone());
        if let Some(raf) = served {
            return raf.pin(pin).await.map_err(raf_err);
        }
        // Pinned already: no need to take the volume from anyone. (A volume that is not
        // there is refused, as the engine's open would be: its snapshot cannot be taken.)
        let lease = self.store.describe(volume).await.map_err(|e| raf_err(RafError::Store(e)))?;
        if let Some(existing) = lease.pins.into_iter().find(|p| p.name == pin) {
            return Ok(existing);
        }
        let store: Arc<dyn LogStore> = Arc::new(self.store.clone());
        let raf = Raf::open(store, volume, self.config.clone()).await.map_err(raf_err)?;
        let pinned = raf.pin(pin).await.map_err(raf_err);
        // The pin is registered (or not) whatever the close does: a close that fails leaves
        // a log the next open replays.
        if let Err(e) = raf.close().await {
            tracing::warn!(volume, error = %e, "closing the volume after a pin failed; the next open replays its log");
        }
        pinned
    }

    /// Writes `(offset, bytes)` pieces into `volume`, which no guest may be using (a disk
    /// being made from a snapshot): opened for the writes, flushed and closed.
    pub async fn write_blocks(&self, volume: &str, writes: Vec<(u64, Bytes)>) -> Result<(), HostError> {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        if self.served.lock().contains_key(volume) {
            return Err(HostError::Busy(volume.to_owned()));
        }
        let raf_err = |source| HostError::Raf { volume: volume.to_owned(), source };
        let store: Arc<dyn LogStore> = Arc::new(self.store.clone());
        let raf = Raf::open(store, volume, self.config.clone()).await.map_err(raf_err)?;
        let written = async {
            for (offset, data) in writes {
                raf.write(offset, data).await?;
            }
            raf.flush().await
        }
        .await
        .map_err(raf_err);
        if let Err(e) = raf.close().await {
            tracing::warn!(volume, error = %e, "closing the volume after writing into it failed; the next open replays its log");
        }
        written
    }

    /// The pin's read-only view, opened once.
    async fn view(&self, volume: &str, pin: &str) -> Result<Arc<PinnedView>, HostError> {
        let key = (volume.to_owned(), pin.to_owned());
        if let Some(v) = self.views.lock().get(&key) {
            return Ok(v.clone());
        }
        let store: Arc<dyn LogStore> = Arc::new(self.store.clone());
        let view = PinnedView::open(store, volume, pin)
            .await
            .map_err(|source| HostError::Raf { volume: volume.to_owned(), source })?;
        // Two readers that opened it at once keep the first.
        Ok(self.views.lock().entry(key).or_insert_with(|| Arc::new(view)).clone())
    }

    /// `len` bytes at `offset` of `volume` as they were at `pin`'s instant.
    pub async fn read_pinned(&self, volume: &str, pin: &str, offset: u64, len: u64) -> Result<Bytes, HostError> {
        let view = self.view(volume, pin).await?;
        view.read(offset, len).await.map_err(|source| HostError::Raf { volume: volume.to_owned(), source })
    }

    /// The 1 MiB ranges of `pin` to read (see [`PinnedView::ranges`]).
    pub async fn pinned_ranges(&self, volume: &str, pin: &str, since: Option<u64>) -> Result<Vec<u64>, HostError> {
        Ok(self.view(volume, pin).await?.ranges(since))
    }

    /// Releases `pin` of `volume` (through its engine when served, so its compaction can
    /// reclaim the pin's blocks at once). A pin or volume that is not there is released.
    pub async fn release_pin(&self, volume: &str, pin: &str) -> Result<(), HostError> {
        let lock = self.volume_lock(volume);
        let _one_at_a_time = lock.lock().await;
        self.views.lock().remove(&(volume.to_owned(), pin.to_owned()));
        let served = self.served.lock().get(volume).map(|s| s.raf.clone());
        match served {
            Some(raf) => {
                raf.release_pin(pin).await.map_err(|source| HostError::Raf { volume: volume.to_owned(), source })
            }
            None => self.store.release_pin(volume, pin).await.map_err(|source| store_err(volume, source)),
        }
    }

    async fn describe(&self, volume: &str) -> Result<feitian_raf::Lease, HostError> {
        self.store.describe(volume).await.map_err(|source| store_err(volume, source))
    }

    async fn create_volume(&self, name: &str, size: u64, parent: Option<String>) -> Result<(), HostError> {
        let parent = self.resolve(parent);
        match self.store.create(name, size, parent.as_deref()).await {
            Ok(()) => Ok(()),
            // Made by an earlier attempt that a crash interrupted: keep it, at least this big.
            Err(StoreError::Exists(_)) => self.grow(name, size).await,
            Err(source) => Err(store_err(name, source)),
        }
    }

    async fn delete_volume(&self, name: &str) -> Result<(), HostError> {
        self.stop(name).await;
        let deleted = match self.store.pangu().volume_delete(name).await {
            Ok(()) => Ok(()),
            Err(e) => match feitian_raf::pangu::store_error(e) {
                StoreError::NotFound(_) => Ok(()),
                source => Err(store_err(name, source)),
            },
        };
        if deleted.is_ok() {
            // Its pins went with it.
            self.views.lock().retain(|(v, _), _| v != name);
            // The volume is gone: its lock goes too, unless an operation holds it still.
            let mut locks = self.volume_locks.lock();
            if locks.get(name).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(name);
            }
        }
        deleted
    }
}

fn store_err(volume: &str, source: StoreError) -> HostError {
    HostError::Store { volume: volume.to_owned(), source }
}

async fn close(volume: &str, s: Served) {
    s.server.shutdown().await;
    if let Err(e) = s.raf.close().await {
        tracing::warn!(volume, error = %e, "closing the volume failed; the next open replays its log");
    }
}

/// A refusal when retrying cannot help; unavailable (the reconciler retries) otherwise.
fn message(e: HostError) -> ContractError {
    match &e {
        HostError::Busy(_)
        | HostError::Store { source: StoreError::Refused(_) | StoreError::Frozen, .. }
        | HostError::Raf {
            source:
                RafError::Shrink { .. }
                | RafError::NoSuchPin { .. }
                | RafError::OutOfRange { .. }
                | RafError::Unaligned { .. },
            ..
        }
        | HostError::Raf {
            source: RafError::Store(StoreError::NotFound(_) | StoreError::Frozen | StoreError::Refused(_)),
            ..
        } => ContractError::Refused(e.to_string()),
        _ => ContractError::Unavailable(e.to_string()),
    }
}

impl VolumeService for DiskHost {
    fn create(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        Box::pin(async move { self.create_volume(&name, size_bytes, parent).await.map_err(message) })
    }

    fn resize(&self, name: String, size_bytes: u64) -> Fut<'_, ()> {
        Box::pin(async move { self.grow(&name, size_bytes).await.map_err(message) })
    }

    /// Back to empty (or the image): the volume is made again. Only a volume no guest uses
    /// (ReInitDisk needs the instance stopped, and a stopped instance's disks are not
    /// served).
    fn reinit(&self, name: String, size_bytes: u64, parent: Option<String>) -> Fut<'_, ()> {
        Box::pin(async move {
            if self.is_served(&name).await {
                return Err(message(HostError::Busy(name)));
            }
            self.delete_volume(&name).await.map_err(message)?;
            self.create_volume(&name, size_bytes, parent).await.map_err(message)
        })
    }

    fn delete(&self, name: String) -> Fut<'_, ()> {
        Box::pin(async move { self.delete_volume(&name).await.map_err(message) })
    }

    fn pin(&self, name: String, snapshot_id: String) -> Fut<'_, PinInfo> {
        Box::pin(async move {
            let pin = DiskHost::pin(self, &name, &snapshot_id).await.map_err(message)?;
            Ok(PinInfo { next_seq: pin.next_seq, size_bytes: pin.size_bytes })
        })
    }

    fn pinned_ranges(&self, name: String, snapshot_id: String, since: Option<u64>) -> Fut<'_, Vec<u64>> {
        Box::pin(async move { DiskHost::pinned_ranges(self, &name, &snapshot_id, since).await.map_err(message) })
    }

    fn read_pinned(&self, name: String, snapshot_id: String, offset: u64, len: u64) -> Fut<'_, Bytes> {
        Box::pin(async move { DiskHost::read_pinned(self, &name, &snapshot_id, offset, len).await.map_err(message) })
    }

    fn write_blocks(&self, name: String, writes: Vec<(u64, Bytes)>) -> Fut<'_, ()> {
        Box::pin(async move { DiskHost::write_blocks(self, &name, writes).await.map_err(message) })
    }

    fn release_pin(&self, name: String, snapshot_id: String) -> Fut<'_, ()> {
        Box::pin(async move { DiskHost::release_pin(self, &name, &snapshot_id).await.map_err(message) })
    }

    fn exists(&self, name: String) -> Fut<'_, bool> {
        Box::pin(async move {
            match self.store.describe(&name).await {
                Ok(_) => Ok(true),
                Err(StoreError::NotFound(_)) => Ok(false),
                Err(source) => Err(message(store_err(&name, source))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_pangu::client::Pangu;
    use std::time::Duration;

    /// A host on a Pangu master with one chunkserver beside it, in `dir`.
    async fn host(dir: &Path) -> Arc<DiskHost> {
        let (master, _) = feitian_pangu::test_support::single_node(dir).await;
        DiskHost::new(PanguStore::new(Pangu::in_process(master)), Config::default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_held_up_on_one_volume_holds_up_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let host = host(tmp.path()).await;
        let socks = tmp.path().join("sockets");
        std::fs::create_dir_all(&socks).unwrap();
        let uid = current_uid();
        for v in ["d-a", "d-b"] {
            VolumeService::create(&*host, v.to_owned(), 1 << 30, None).await.unwrap();
        }
        // Something slow on d-a (as an open whose acquire waits for a chunkserver).
        let lock = host.volume_lock("d-a");
        let slow = lock.lock().await;
        let (h, dir) = (host.clone(), socks.clone());
        let serve_a = tokio::spawn(async move { h.serve("d-a", &dir, uid, None).await });
        // d-b starts, grows and stops meanwhile (a generous bound, only against a deadlock).
        let b = async {
            let path = host.serve("d-b", &socks, uid, None).await.unwrap();
            assert!(path.exists());
            host.grow("d-b", 2 << 30).await.unwrap();
            assert_eq!(host.raf("d-b").await.unwrap().size(), 2 << 30);
            host.stop("d-b").await;
        };
        tokio::time::timeout(Duration::from_secs(120), b).await.expect("d-b was held up by d-a");
        assert!(!serve_a.is_finished(), "d-a was served while its operation was held up");
        drop(slow);
        let path = serve_a.await.unwrap().unwrap();
        assert!(path.exists() && host.is_served("d-a").await);
        // After the shutdown nothing is served, and nothing can be.
        host.stop_all().await;
        assert!(!host.is_served("d-a").await);
        assert!(matches!(host.serve("d-b", &socks, uid, None).await, Err(HostError::Stopped(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pins_a_served_volume_through_its_engine_and_an_unserved_one_by_opening_it() {
        let tmp = tempfile::tempdir().unwrap();
        let host = host(tmp.path()).await;
        let socks = tmp.path().join("sockets");
        std::fs::create_dir_all(&socks).unwrap();
        let uid = current_uid();
        let size = 8 << 20;
        let data = |seed: u8| Bytes::from((0..(1u32 << 20)).map(|i| (i as u8) ^ seed | 1).collect::<Vec<u8>>());
        for v in ["d-served", "d-idle"] {
            VolumeService::create(&*host, v.to_owned(), size, None).await.unwrap();
        }
        host.serve("d-served", &socks, uid, None).await.unwrap();
        let served = host.raf("d-served").await.unwrap();
        served.write(0, data(1)).await.unwrap();
        let store: Arc<dyn LogStore> = Arc::new(host.store().clone());
        let idle = Raf::open(store.clone(), "d-idle", Config::default()).await.unwrap();
        idle.write(2 << 20, data(2)).await.unwrap();
        idle.close().await.unwrap();

        let p1 = VolumeService::pin(&*host, "d-served".into(), "s-1".into()).await.unwrap();
        assert_eq!(p1, PinInfo { next_seq: served.next_seq(), size_bytes: size });
        // The unserved volume is pinned while a guest's serve starts: one waits for the other.
        let (h, dir) = (host.clone(), socks.clone());
        let serving = tokio::spawn(async move { h.serve("d-idle", &dir, uid, None).await });
        let p2 = VolumeService::pin(&*host, "d-idle".into(), "s-2".into()).await.unwrap();
        assert_eq!(p2.size_bytes, size);
        serving.await.unwrap().unwrap();
        assert!(host.is_served("d-served").await && host.is_served("d-idle").await);
        // Both move on after their instants.
        served.write(0, data(3)).await.unwrap();
        let idle = host.raf("d-idle").await.unwrap();
        idle.write(2 << 20, data(4)).await.unwrap();
        idle.write(5 << 20, data(5)).await.unwrap();

        let read = |v: &'static str, pin: &'static str, at: u64| {
            VolumeService::read_pinned(&*host, v.into(), pin.into(), at, 1 << 20)
        };
        assert_eq!(read("d-served", "s-1", 0).await.unwrap(), data(1));
        assert_eq!(read("d-idle", "s-2", 2 << 20).await.unwrap(), data(2));
        assert!(read("d-idle", "s-2", 5 << 20).await.unwrap().iter().all(|&b| b == 0));
        let ranges = |v: &'static str, pin: &'static str, since| {
            VolumeService::pinned_ranges(&*host, v.into(), pin.into(), since)
        };
        assert_eq!(ranges("d-served", "s-1", None).await.unwrap(), vec![0]);
        assert_eq!(ranges("d-idle", "s-2", None).await.unwrap(), vec![2]);
        assert_eq!(ranges("d-idle", "s-2", Some(p2.next_seq)).await.unwrap(), Vec::<u64>::new());
        // Pinning again answers the same pins, served or not.
        assert_eq!(VolumeService::pin(&*host, "d-served".into(), "s-1".into()).await.unwrap(), p1);
        host.stop("d-idle").await;
        assert_eq!(VolumeService::pin(&*host, "d-idle".into(), "s-2".into()).await.unwrap(), p2);

        for (v, pin) in [("d-served", "s-1"), ("d-idle", "s-2")] {
            VolumeService::release_pin(&*host, v.into(), pin.into()).await.unwrap();
            assert!(matches!(read(v, pin, 0).await, Err(ContractError::Refused(_))), "{pin} is released");
            VolumeService::release_pin(&*host, v.into(), pin.into()).await.unwrap();
        }
        assert!(served.pins().is_empty());
        // A volume that is not there has no pin to take, and none to release.
        assert!(matches!(
            VolumeService::pin(&*host, "d-none".into(), "s-3".into()).await,
            Err(ContractError::Refused(_))
        ));
        VolumeService::release_pin(&*host, "d-none".into(), "s-3".into()).await.unwrap();
        host.stop_all().await;
    }

    fn current_uid() -> u32 {
        // SAFETY: getuid cannot fail and has no preconditions.
        unsafe { libc::getuid() }
    }
}
