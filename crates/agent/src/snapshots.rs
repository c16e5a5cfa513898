//! The snapshot reconciler: takes the instants of a host's disk snapshots and uploads their
//! blocks (docs/snapshots.md is the contract; its guarantee numbers are cited).
//!
//! It asks for the `progressing` snapshots ([`ControlPlane::snapshots_to_reconcile`]) and
//! works on each, one step at a time per snapshot:
//!
//! | the snapshot | the host does | then reports |
//! |---|---|---|
//! | not pinned | `VolumeService::pin` (the instant, guarantee 1) | `SnapshotPinned` |
//! | pinned | reads each range to upload at the instant (those changed since the base, or every range holding data), hashes it (SHA-256), claims the blocks (a batch at a time), stores each block object the region lacks | `SnapshotClaimed` per batch, `SnapshotProgress` now and then, then `SnapshotUploaded` |
//! | its volume is gone (the pin is refused) | nothing | `SnapshotFailed` |
//!
//! and releases the pins the control plane is done with ([`ControlPlane::pins_to_release`],
//! then `PinReleased`). The commit is the control plane's (one transaction, guarantee 5);
//! the host only reports once every block object it names is stored. Nothing here is lost
//! to a crash: a pin is in Pangu's registry, a stored block object is found again by its
//! name (so an upload cut short resumes at the cost of hashing what it already sent), and
//! every step is retried on the next pass until its report lands.

use crate::AgentError;
use bytes::Bytes;
use feitian_agent_api::snapshot::RANGE_BYTES;
use feitian_agent_api::{
    BlockClaim, BlockStore, ContractError, ControlPlane, Nudges, PinInfo, PinRef, RangeBlock, Report, SnapshotTarget,
    SnapshotUpload, VolumeService,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the uploads run.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Ranges read, hashed and stored at once, per snapshot.
    pub parallel: usize,
    /// Ranges per batch: read and hashed together, their blocks claimed in one report (so
    /// at most this many MiB are held in memory per upload).
    pub batch: usize,
    /// How often a running upload reports its progress.
    pub progress_every: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig { parallel: 4, batch: 32, progress_every: Duration::from_secs(1) }
    }
}

pub struct SnapshotReconciler {
    control: Arc<dyn ControlPlane>,
    volumes: Arc<dyn VolumeService>,
    blocks: Arc<dyn BlockStore>,
    nudges: Nudges,
    config: UploadConfig,
    /// Snapshots (and pins being released) with a step under way.
    inflight: Mutex<HashSet<String>>,
}

/// The name of a range's block object: the hex SHA-256 of its bytes; `None` for zeros.
pub fn block_name(data: &[u8]) -> Option<String> {
    if data.iter().all(|&b| b == 0) {
        return None;
    }
    Some(hex::encode(Sha256::digest(data)))
}

impl SnapshotReconciler {
    pub fn new(
        control: Arc<dyn ControlPlane>,
        volumes: Arc<dyn VolumeService>,
        blocks: Arc<dyn BlockStore>,
        nudges: Nudges,
        config: UploadConfig,
    ) -> Arc<Self> {
        Arc::new(SnapshotReconciler { control, volumes, blocks, nudges, config, inflight: Mutex::new(HashSet::new()) })
    }

    /// Runs forever: when nudged and every second.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.clone().pass().await {
                tracing::warn!(error = %e, "snapshot reconciler pass failed; retrying");
            }
            tokio::select! {
                _ = self.nudges.snapshots() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    /// Claims `key` for one step; `false` if a step on it is under way.
    fn claim(&self, key: &str) -> bool {
        self.inflight.lock().insert(key.to_owned())
    }

    fn done(&self, key: &str) {
        self.inflight.lock().remove(key);
    }

    /// One pass: starts a step on every snapshot with work and every pin to release.
    pub async fn pass(self: Arc<Self>) -> Result<(), AgentError> {
        for t in self.control.snapshots_to_reconcile().await? {
            if !self.claim(&t.id) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let id = t.id.clone();
                match me.step(t).await {
                    Ok(true) => me.nudges.snapshots_changed(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(snapshot = %id, error = %e, "snapshot step failed; will retry"),
                }
                me.done(&id);
            });
        }
        for p in self.control.pins_to_release().await? {
            let key = format!("pin:{}", p.snapshot_id);
            if !self.claim(&key) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.release(&p).await {
                    tracing::warn!(snapshot = %p.snapshot_id, error = %e, "cannot release the pin; will retry");
                }
                me.done(&key);
            });
        }
        Ok(())
    }

    async fn release(&self, p: &PinRef) -> Result<(), AgentError> {
        self.volumes.release_pin(p.volume.clone(), p.snapshot_id.clone()).await.map_err(AgentError::Volume)?;
        self.control.report(Report::PinReleased { snapshot_id: p.snapshot_id.clone() }).await?;
        Ok(())
    }

    /// Brings one snapshot one step on; `true` if another step follows at once.
    async fn step(&self, t: SnapshotTarget) -> Result<bool, AgentError> {
        let pin = match t.pinned {
            Some(pin) => pin,
            None => match self.volumes.pin(t.volume.clone(), t.id.clone()).await {
                Ok(pin) => {
                    self.control.report(Report::SnapshotPinned { id: t.id.clone(), pin }).await?;
                    // The upload is the next step: at once, not at the next pass.
                    return Ok(true);
                }
                Err(e) => return self.failed_if_refused(&t, e).await.map(|_| false),
            },
        };
        match self.upload(&t, pin).await {
            Ok(upload) => {
                let stored = upload.stored_bytes;
                if !self.control.report(Report::SnapshotUploaded(upload)).await? {
                    // The base is gone (or the snapshot deleted): the next target says.
                    tracing::info!(snapshot = %t.id, "upload not committed; the next pass uploads what is asked then");
                    return Ok(true);
                }
                tracing::info!(snapshot = %t.id, disk = %t.volume, stored_bytes = stored, "snapshot accomplished");
                Ok(false)
            }
            Err(e) => self.failed_if_refused(&t, e).await.map(|_| false),
        }
    }

    /// A refusal (the volume or its pin is gone) fails the snapshot; anything else is
    /// retried.
    async fn failed_if_refused(&self, t: &SnapshotTarget, e: ContractError) -> Result<(), AgentError> {
        match e {
            ContractError::Refused(why) => {
                tracing::warn!(snapshot = %t.id, disk = %t.volume, error = %why, "snapshot failed");
                self.control.report(Report::SnapshotFailed { id: t.id.clone(), error: why }).await?;
                Ok(())
            }
            e => Err(AgentError::Volume(e)),
        }
    }

    /// Reads, hashes and stores every range the snapshot needs (guarantee 3), a batch of
    /// [`UploadConfig::batch`] ranges at a time: the batch is read and hashed, its blocks
    /// claimed (docs/snapshots.md, "Claims"), then each block not stored yet is stored.
    async fn upload(&self, t: &SnapshotTarget, pin: PinInfo) -> Result<SnapshotUpload, ContractError> {
        let since = t.base.as_ref().map(|b| b.next_seq);
        let size = pin.size_bytes;
        let ranges: Vec<u64> = self
            .volumes
            .pinned_ranges(t.volume.clone(), t.id.clone(), since)
            .await?
            .into_iter()
            .filter(|r| r.saturating_mul(RANGE_BYTES) < size)
            .collect();
        let total = ranges.len().max(1) as u64;
        let parallel = self.config.parallel.max(1);
        let (mut read, mut stored) = (0u64, 0u64);
        let mut out = Vec::with_capacity(ranges.len());
        let mut last_report = Instant::now();
        for batch in ranges.chunks(self.config.batch.max(1)) {
            let reads = batch.iter().map(|&range| {
                let (volumes, volume, id) = (self.volumes.clone(), t.volume.clone(), t.id.clone());
                async move {
                    let offset = range * RANGE_BYTES;
                    let len = RANGE_BYTES.min(size - offset);
                    let data = volumes.read_pinned(volume, id, offset, len).await?;
                    let (data, block) = hash(data).await?;
                    Ok::<_, ContractError>((range, data, block))
                }
            });
            let hashed: Vec<(u64, Bytes, Option<String>)> =
                stream::iter(reads.collect::<Vec<_>>()).buffered(parallel).try_collect().await?;
            // Each distinct block once: a batch may hold the same bytes twice.
            let mut distinct: BTreeMap<String, Bytes> = BTreeMap::new();
            for (_, data, block) in &hashed {
                read += data.len() as u64;
                if let Some(name) = block {
                    distinct.entry(name.clone()).or_insert_with(|| data.clone());
                }
            }
            if !distinct.is_empty() {
                let blocks = distinct
                    .iter()
                    .map(|(hash, data)| BlockClaim { hash: hash.clone(), bytes: data.len() as u64 })
                    .collect();
                if !self.control.report(Report::SnapshotClaimed { id: t.id.clone(), blocks }).await? {
                    return Err(ContractError::Unavailable(
                        "the snapshot's blocks cannot be claimed now (a block is being swept, or the snapshot ended)"
                            .into(),
                    ));
                }
            }
            let stores = distinct.into_iter().map(|(name, data)| {
                let blocks = self.blocks.clone();
                async move {
                    if blocks.has(name.clone()).await? {
                        return Ok::<_, ContractError>(0);
                    }
                    let len = data.len() as u64;
                    blocks.put(name, data).await?;
                    Ok(len)
                }
            });
            let sizes: Vec<u64> =
                stream::iter(stores.collect::<Vec<_>>()).buffer_unordered(parallel).try_collect().await?;
            stored += sizes.iter().sum::<u64>();
            out.extend(hashed.into_iter().map(|(range, _, block)| RangeBlock { range, block }));
            if last_report.elapsed() >= self.config.progress_every {
                last_report = Instant::now();
                let percent = (out.len() as u64 * 100 / total).min(99) as u8;
                self.control.report(Report::SnapshotProgress { id: t.id.clone(), percent }).await?;
            }
        }
        Ok(SnapshotUpload {
            id: t.id.clone(),
            base: t.base.as_ref().map(|b| b.snapshot_id.clone()),
            ranges: out,
            read_bytes: read,
            stored_bytes: stored,
        })
    }
}

/// [`block_name`] off the async threads (a SHA-256 of 1 MiB takes milliseconds).
async fn hash(data: Bytes) -> Result<(Bytes, Option<String>), ContractError> {
    tokio::task::spawn_blocking(move || {
        let name = block_name(&data);
        (data, name)
    })
    .await
    .map_err(|e| ContractError::Unavailable(format!("hashing a block: {e}")))
}

#[cfg(test)]
mod tests {
    //! The reconciler's logic against in-memory doubles of its three collaborators (the real
    //! ones, RAF pins, the OSS system bucket and the planner's commit, are tested in their
    //! crates and together through the SDK in tests/sdk/test_snapshots.py).
    use super::*;
    use feitian_agent_api::{DiskTarget, Fut, InstancePlan, InstanceTarget, SnapshotBase, VpcPlan};
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::atomic::{AtomicU64, Ordering};

    const MIB: usize = 1 << 20;

    /// A volume as bytes, with a change sequence per range; pins are copies.
    #[derive(Default)]
    struct Vol {
        data: Vec<u8>,
        seqs: BTreeMap<u64, u64>,
        next_seq: u64,
        pins: HashMap<String, PinCopy>,
    }

    /// A pin of the double: the bytes, the change sequences and the next sequence.
    type PinCopy = (Vec<u8>, BTreeMap<u64, u64>, u64);

    #[derive(Default)]
    struct Volumes {
        vols: Mutex<HashMap<String, Vol>>,
        released: Mutex<Vec<String>>,
    }

    impl Volumes {
        fn write(&self, name: &str, offset: usize, bytes: &[u8]) {
            let mut vols = self.vols.lock();
            let v = vols.get_mut(name).unwrap();
            v.data[offset..offset + bytes.len()].copy_from_slice(bytes);
            let first = offset as u64 / RANGE_BYTES;
            let last = (offset + bytes.len() - 1) as u64 / RANGE_BYTES;
            for r in first..=last {
                v.seqs.insert(r, v.next_seq);
            }
            v.next_seq += 1;
        }
    }

    fn refused<T: Send + 'static>(what: &str) -> Fut<'static, T> {
        let what = what.to_owned();
        Box::pin(async move { Err(ContractError::Refused(what)) })
    }

    impl VolumeService for Volumes {
        fn create(&self, name: String, size_bytes: u64, _parent: Option<String>) -> Fut<'_, ()> {
            self.vols
                .lock()
                .insert(name, Vol { data: vec![0; size_bytes as usize], next_seq: 1, ..Default::default() });
            Box::pin(async { Ok(()) })
        }
        fn resize(&self, _: String, _: u64) -> Fut<'_, ()> {
            refused("not in these tests")
        }
        fn reinit(&self, _: String, _: u64, _: Option<String>) -> Fut<'_, ()> {
            refused("not in these tests")
        }
        fn delete(&self, name: String) -> Fut<'_, ()> {
            self.vols.lock().remove(&name);
            Box::pin(async { Ok(()) })
        }
        fn exists(&self, name: String) -> Fut<'_, bool> {
            let found = self.vols.lock().contains_key(&name);
            Box::pin(async move { Ok(found) })
        }
        fn pin(&self, name: String, snapshot_id: String) -> Fut<'_, PinInfo> {
            let mut vols = self.vols.lock();
            let Some(v) = vols.get_mut(&name) else { return refused("no such volume") };
            let copy = (v.data.clone(), v.seqs.clone(), v.next_seq);
            let pin = v.pins.entry(snapshot_id).or_insert(copy);
            let info = PinInfo { next_seq: pin.2, size_bytes: pin.0.len() as u64 };
            Box::pin(async move { Ok(info) })
        }
        fn pinned_ranges(&self, name: String, snapshot_id: String, since: Option<u64>) -> Fut<'_, Vec<u64>> {
            let vols = self.vols.lock();
            let Some(pin) = vols.get(&name).and_then(|v| v.pins.get(&snapshot_id)) else { return refused("no pin") };
            let ranges = pin.1.iter().filter(|(_, &s)| since.is_none_or(|since| s >= since)).map(|(&r, _)| r).collect();
            Box::pin(async move { Ok(ranges) })
        }
        fn read_pinned(&self, name: String, snapshot_id: String, offset: u64, len: u64) -> Fut<'_, Bytes> {
            let vols = self.vols.lock();
            let Some(pin) = vols.get(&name).and_then(|v| v.pins.get(&snapshot_id)) else { return refused("no pin") };
            let data = Bytes::copy_from_slice(&pin.0[offset as usize..(offset + len) as usize]);
            Box::pin(async move { Ok(data) })
        }
        fn write_blocks(&self, name: String, writes: Vec<(u64, Bytes)>) -> Fut<'_, ()> {
            for (offset, data) in writes {
                self.write(&name, offset as usize, &data);
            }
            Box::pin(async { Ok(()) })
        }
        fn release_pin(&self, name: String, snapshot_id: String) -> Fut<'_, ()> {
            if let Some(v) = self.vols.lock().get_mut(&name) {
                v.pins.remove(&snapshot_id);
            }
            self.released.lock().push(snapshot_id);
            Box::pin(async { Ok(()) })
        }
    }

    /// Blocks claimed so far (the control double records them; the block double checks them).
    type Claimed = Arc<Mutex<HashSet<String>>>;

    #[derive(Default)]
    struct Blocks {
        objects: Mutex<HashMap<String, Bytes>>,
        puts: AtomicU64,
        claimed: Claimed,
    }

    impl BlockStore for Blocks {
        fn has(&self, hash: String) -> Fut<'_, bool> {
            assert!(self.claimed.lock().contains(&hash), "looked for {hash} before claiming it");
            let found = self.objects.lock().contains_key(&hash);
            Box::pin(async move { Ok(found) })
        }
        fn put(&self, hash: String, data: Bytes) -> Fut<'_, ()> {
            assert!(self.claimed.lock().contains(&hash), "stored {hash} before claiming it");
            self.puts.fetch_add(1, Ordering::Relaxed);
            self.objects.lock().insert(hash, data);
            Box::pin(async { Ok(()) })
        }
        fn get(&self, hash: String) -> Fut<'_, Option<Bytes>> {
            let found = self.objects.lock().get(&hash).cloned();
            Box::pin(async move { Ok(found) })
        }
    }

    /// Records reports; hands out the pins to release it is given.
    #[derive(Default)]
    struct Control {
        reports: Mutex<Vec<Report>>,
        pins: Mutex<Vec<PinRef>>,
        accept_uploads: bool,
        refuse_claims: bool,
        claimed: Claimed,
    }

    impl ControlPlane for Control {
        fn instances_to_reconcile(&self) -> Fut<'_, Vec<InstanceTarget>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn instances_wanted_running(&self) -> Fut<'_, Vec<InstanceTarget>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn existing_instances(&self, _: Vec<String>) -> Fut<'_, BTreeSet<String>> {
            Box::pin(async { Ok(BTreeSet::new()) })
        }
        fn instance_plan(&self, _: String) -> Fut<'_, Option<InstancePlan>> {
            Box::pin(async { Ok(None) })
        }
        fn vpcs(&self) -> Fut<'_, Vec<String>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn vpc_plan(&self, _: String) -> Fut<'_, Option<VpcPlan>> {
            Box::pin(async { Ok(None) })
        }
        fn disks_to_reconcile(&self) -> Fut<'_, Vec<DiskTarget>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn volumes_to_delete(&self) -> Fut<'_, Vec<String>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn restore_plan(&self, _: String) -> Fut<'_, Vec<RangeBlock>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn snapshots_to_reconcile(&self) -> Fut<'_, Vec<SnapshotTarget>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn pins_to_release(&self) -> Fut<'_, Vec<PinRef>> {
            let pins = std::mem::take(&mut *self.pins.lock());
            Box::pin(async move { Ok(pins) })
        }
        fn report(&self, report: Report) -> Fut<'_, bool> {
            let accepted = match &report {
                Report::SnapshotUploaded(_) => self.accept_uploads,
                Report::SnapshotClaimed { blocks, .. } if !self.refuse_claims => {
                    self.claimed.lock().extend(blocks.iter().map(|b| b.hash.clone()));
                    true
                }
                Report::SnapshotClaimed { .. } => false,
                _ => true,
            };
            self.reports.lock().push(report);
            Box::pin(async move { Ok(accepted) })
        }
    }

    struct World {
        volumes: Arc<Volumes>,
        blocks: Arc<Blocks>,
        control: Arc<Control>,
        rec: Arc<SnapshotReconciler>,
    }

    fn world(accept_uploads: bool) -> World {
        world_with(accept_uploads, false)
    }

    fn world_with(accept_uploads: bool, refuse_claims: bool) -> World {
        let claimed = Claimed::default();
        let volumes = Arc::new(Volumes::default());
        let blocks = Arc::new(Blocks { claimed: claimed.clone(), ..Default::default() });
        let control = Arc::new(Control { accept_uploads, refuse_claims, claimed, ..Default::default() });
        let config = UploadConfig { parallel: 3, batch: 2, progress_every: Duration::ZERO };
        let rec = SnapshotReconciler::new(control.clone(), volumes.clone(), blocks.clone(), Nudges::default(), config);
        World { volumes, blocks, control, rec }
    }

    fn target(id: &str, pinned: Option<PinInfo>, base: Option<SnapshotBase>) -> SnapshotTarget {
        SnapshotTarget { id: id.into(), volume: "d-1".into(), pinned, base }
    }

    fn uploads(c: &Control) -> Vec<SnapshotUpload> {
        c.reports
            .lock()
            .iter()
            .filter_map(|r| match r {
                Report::SnapshotUploaded(u) => Some(u.clone()),
                _ => None,
            })
            .collect()
    }

    fn pinned(c: &Control, id: &str) -> PinInfo {
        c.reports
            .lock()
            .iter()
            .find_map(|r| match r {
                Report::SnapshotPinned { id: i, pin } if i == id => Some(*pin),
                _ => None,
            })
            .expect("a pin report")
    }

    fn name_of(bytes: &[u8]) -> Option<String> {
        Some(hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn zeros_have_no_block_and_data_is_named_by_its_sha256() {
        assert_eq!(block_name(&[0; 4096]), None);
        assert_eq!(block_name(&[]), None);
        let mut d = vec![0u8; 4096];
        d[4095] = 1;
        assert_eq!(block_name(&d), name_of(&d));
        assert_eq!(block_name(b"abc").unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[tokio::test]
    async fn a_first_snapshot_stores_every_range_with_data_and_a_second_only_what_changed() {
        let w = world(true);
        // 8 MiB and a half: the last range is short.
        w.volumes.create("d-1".into(), 8 * RANGE_BYTES + RANGE_BYTES / 2, None).await.unwrap();
        let a = vec![0xa5u8; MIB];
        let b: Vec<u8> = (0..MIB).map(|i| (i % 253) as u8).collect();
        w.volumes.write("d-1", 0, &a);
        w.volumes.write("d-1", 2 * MIB, &b);
        w.volumes.write("d-1", 3 * MIB, &vec![0; MIB]); // written, but zeros
        w.volumes.write("d-1", 8 * MIB + 100, b"tail");

        // Step one: the pin. Step two: the upload.
        assert!(w.rec.step(target("s-1", None, None)).await.unwrap());
        let pin1 = pinned(&w.control, "s-1");
        // A write after the instant never leaks in (the double's pin is a copy; the
        // reconciler must read the pin, not the volume).
        w.volumes.write("d-1", 0, &b);
        assert!(!w.rec.step(target("s-1", Some(pin1), None)).await.unwrap());
        let up = uploads(&w.control).pop().expect("an upload");
        let mut tail = vec![0u8; MIB / 2];
        tail[100..104].copy_from_slice(b"tail");
        assert_eq!(
            up.ranges,
            vec![
                RangeBlock { range: 0, block: name_of(&a) },
                RangeBlock { range: 2, block: name_of(&b) },
                RangeBlock { range: 3, block: None },
                RangeBlock { range: 8, block: name_of(&tail) },
            ]
        );
        assert_eq!(up.base, None);
        assert_eq!(up.read_bytes, 3 * RANGE_BYTES + RANGE_BYTES / 2);
        assert_eq!(up.stored_bytes, 2 * RANGE_BYTES + RANGE_BYTES / 2);
        assert_eq!(w.blocks.get(name_of(&a).unwrap()).await.unwrap().as_deref(), Some(&a[..]));
        assert_eq!(w.blocks.objects.lock().len(), 3);
        // Progress was reported (every range, with a zero interval), never 100 before the commit.
        let progress: Vec<u8> = w
            .control
            .reports
            .lock()
            .iter()
            .filter_map(|r| match r {
                Report::SnapshotProgress { percent, .. } => Some(*percent),
                _ => None,
            })
            .collect();
        assert_eq!(progress.len(), 2, "one per batch of two ranges");
        assert!(progress.iter().all(|&p| p <= 99), "{progress:?}");

        // The second snapshot: ranges 0 (changed above, after s-1's instant), 5 (new bytes
        // equal to range 2's: a hash and no upload) and 2 (now zeros).
        w.volumes.write("d-1", 5 * MIB, &b);
        w.volumes.write("d-1", 2 * MIB, &vec![0; MIB]);
        let base = SnapshotBase { snapshot_id: "s-1".into(), next_seq: pin1.next_seq };
        assert!(w.rec.step(target("s-2", None, Some(base.clone()))).await.unwrap());
        let pin2 = pinned(&w.control, "s-2");
        let puts = w.blocks.puts.load(Ordering::Relaxed);
        assert!(!w.rec.step(target("s-2", Some(pin2), Some(base))).await.unwrap());
        let up = uploads(&w.control).pop().expect("an upload");
        assert_eq!(up.base.as_deref(), Some("s-1"));
        assert_eq!(
            up.ranges,
            vec![
                RangeBlock { range: 0, block: name_of(&b) },
                RangeBlock { range: 2, block: None },
                RangeBlock { range: 5, block: name_of(&b) },
            ]
        );
        assert_eq!(up.read_bytes, 3 * RANGE_BYTES);
        // b was already stored (range 2 of the first snapshot): nothing new.
        assert_eq!((up.stored_bytes, w.blocks.puts.load(Ordering::Relaxed)), (0, puts));
    }

    #[tokio::test]
    async fn a_snapshot_whose_volume_is_gone_fails_and_an_unanswered_upload_is_retried() {
        let w = world(false);
        assert!(!w.rec.step(target("s-1", None, None)).await.unwrap());
        assert!(matches!(
            w.control.reports.lock().last(),
            Some(Report::SnapshotFailed { id, .. }) if id == "s-1"
        ));
        // An upload the control plane does not take (its base is gone) asks for another step.
        w.volumes.create("d-1".into(), 4 * RANGE_BYTES, None).await.unwrap();
        w.volumes.write("d-1", 0, b"x");
        assert!(w.rec.step(target("s-2", None, None)).await.unwrap());
        let pin = pinned(&w.control, "s-2");
        assert!(w.rec.step(target("s-2", Some(pin), None)).await.unwrap());
    }

    #[tokio::test]
    async fn an_upload_whose_claim_is_refused_stores_nothing_and_is_retried() {
        let w = world_with(true, true);
        w.volumes.create("d-1".into(), 4 * RANGE_BYTES, None).await.unwrap();
        w.volumes.write("d-1", 0, b"x");
        assert!(w.rec.step(target("s-1", None, None)).await.unwrap());
        let pin = pinned(&w.control, "s-1");
        assert!(w.rec.step(target("s-1", Some(pin), None)).await.is_err(), "retried on a later pass");
        assert_eq!(w.blocks.puts.load(Ordering::Relaxed), 0);
        assert!(uploads(&w.control).is_empty());
    }

    #[tokio::test]
    async fn released_pins_are_reported() {
        let w = world(true);
        w.volumes.create("d-1".into(), 4 * RANGE_BYTES, None).await.unwrap();
        assert!(w.rec.step(target("s-1", None, None)).await.unwrap());
        w.control.pins.lock().push(PinRef { volume: "d-1".into(), snapshot_id: "s-1".into() });
        w.rec.clone().pass().await.unwrap();
        for _ in 0..100 {
            if w.control
                .reports
                .lock()
                .iter()
                .any(|r| matches!(r, Report::PinReleased { snapshot_id } if snapshot_id == "s-1"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*w.volumes.released.lock(), vec!["s-1".to_string()]);
        assert!(w.volumes.vols.lock()["d-1"].pins.is_empty());
        assert!(w
            .control
            .reports
            .lock()
            .iter()
            .any(|r| matches!(r, Report::PinReleased { snapshot_id } if snapshot_id == "s-1")));
    }
}
