//! The volume registry on a real in-process Pangu (a master on the control-plane store and
//! chunkserver nodes on loopback): one writer per volume, fenced by epochs and seals, and a
//! registry that survives a master restart and stays out of the file garbage collection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_meta::Store;
use feitian_pangu::chunkserver::DEFAULT_FLOW;
use feitian_pangu::client::{Pangu, PanguError};
use feitian_pangu::master::{self, Master, MasterConfig, MasterError, MasterStatus};
use feitian_pangu::master_client::MasterClientError;
use feitian_pangu::node::{self, Node, NodeConfig};
use feitian_pangu::volume::{VolumeError, VolumeFileKind};
use tokio::sync::oneshot;

const MIB: u64 = 1 << 20;

struct Cluster {
    store: Store,
    master: Arc<Master>,
    /// Stops the master's background loop.
    stop_master: Option<oneshot::Sender<()>>,
    nodes: Vec<(Node, Option<oneshot::Sender<()>>)>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `servers` chunkservers (one rack each), `replication`, 1 MiB chunks, all live.
    async fn start(replication: usize, servers: usize) -> Cluster {
        let store = Store::open_in_memory().unwrap();
        let mut config = MasterConfig::new(replication);
        config.chunk_size = MIB;
        config.heartbeat_timeout = Duration::from_millis(1500);
        config.tick = Duration::from_millis(100);
        let master = Master::open(store.clone(), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master_addr = listener.local_addr().unwrap().to_string();
        let router = master::router(master.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (stop_master, stopped) = oneshot::channel::<()>();
        tokio::spawn(master.clone().run(async move {
            let _ = stopped.await;
        }));
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..servers {
            let dir = tempfile::tempdir().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let config = NodeConfig {
                master: master_addr.clone(),
                dir: dir.path().to_path_buf(),
                rack: format!("rack-{i}"),
                listen: "127.0.0.1:0".parse().unwrap(),
                advertise: None,
                capacity_bytes: 1 << 34,
                flow: DEFAULT_FLOW,
                heartbeat: Duration::from_millis(200),
                scrub: None,
                secret: master.config().secret.clone(),
            };
            let node = node::start(config, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
            nodes.push((node, Some(tx)));
            dirs.push(dir);
        }
        let c = Cluster { store, master, stop_master: Some(stop_master), nodes, _dirs: dirs };
        c.wait("the nodes", |s| s.servers.iter().filter(|x| x.live).count() == servers).await;
        c
    }

    /// Stops chunkserver `i` (its listener and heartbeats).
    fn stop_node(&mut self, i: usize) {
        if let Some(tx) = self.nodes[i].1.take() {
            let _ = tx.send(());
        }
    }

    fn pangu(&self) -> Pangu {
        Pangu::in_process(self.master.clone())
    }

    async fn wait(&self, what: &str, ok: impl Fn(&MasterStatus) -> bool) -> MasterStatus {
        for _ in 0..300 {
            let s = self.master.status();
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.master.status());
    }
}

fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn volume_error<T>(r: Result<T, PanguError>) -> VolumeError {
    match r {
        Err(PanguError::Master(MasterClientError::Volume(e))) => e,
        Err(other) => panic!("expected a volume refusal, got {other:?}"),
        Ok(_) => panic!("expected a volume refusal, got success"),
    }
}

fn stale(name: &str, current: u64) -> VolumeError {
    VolumeError::StaleEpoch { volume: name.to_owned(), current }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_writer_fences_the_old_one_and_keeps_every_acknowledged_byte() {
    let c = Cluster::start(3, 3).await;
    let pangu = c.pangu();
    let name = "d-fence";
    pangu.volume_create(name, 64 * MIB, None).await.unwrap();

    // Writer A: a segment across chunks, ending mid-chunk.
    let a = pangu.volume_acquire(name).await.unwrap();
    assert_eq!((a.epoch, a.segments.len(), a.checkpoint), (1, 0, None));
    let (seq, mut wa) = pangu.volume_new_segment(name, a.epoch).await.unwrap();
    assert_eq!(seq, 0);
    let file = wa.id();
    let body = data((5 * MIB / 2) as usize, 1);
    for piece in body.chunks(256 * 1024) {
        wa.append(body.slice_ref(piece)).await.unwrap();
    }
    let acked = wa.len();
    assert_eq!(acked, body.len() as u64);
    let chunks_before = c.master.layout(file).unwrap().chunks.len();
    assert_eq!(chunks_before, 3);

    // Writer B takes the volume: A's segment is sealed at what A was acknowledged.
    let b = pangu.volume_acquire(name).await.unwrap();
    assert_eq!(b.epoch, 2);
    assert_eq!(b.segments.len(), 1);
    let segment = b.segments[0];
    assert_eq!((segment.seq, segment.file, segment.len, segment.sealed), (0, file, acked, true));

    // A's next append fails: no replica takes it, and it does not move to a new chunk.
    let more = data(64 * 1024, 2);
    assert!(wa.append(more.clone()).await.is_err(), "a fenced writer's append must fail");
    let layout = c.master.layout(file).unwrap();
    assert_eq!(layout.sealed_len, Some(acked));
    assert_eq!(layout.chunks.len(), chunks_before);
    for chunk in &layout.chunks {
        assert_eq!(chunk.replicas.len(), 3, "no replica was marked bad by the fence: {chunk:?}");
    }
    match c.master.allocate_chunk(file, &[]).await {
        Err(MasterError::FileSealed(f)) => assert_eq!(f, file),
        other => panic!("a sealed file takes no new chunk, got {other:?}"),
    }
    assert!(pangu.read(file, acked, 1).await.is_err());
    assert!(wa.seal().await.is_err());

    // Every registry change A tries with its epoch is refused.
    assert_eq!(volume_error(pangu.volume_new_segment(name, a.epoch).await), stale(name, 2));
    assert_eq!(volume_error(pangu.volume_new_checkpoint_file(name, a.epoch).await), stale(name, 2));
    assert_eq!(volume_error(pangu.volume_set_checkpoint(name, a.epoch, file, 0, 0).await), stale(name, 2));
    assert_eq!(volume_error(pangu.volume_drop_segments(name, a.epoch, &[0]).await), stale(name, 2));
    assert_eq!(volume_error(pangu.volume_freeze(name, a.epoch).await), stale(name, 2));

    // Everything A was acknowledged reads back.
    assert_eq!(pangu.read(file, 0, acked).await.unwrap(), body);

    // B writes on in a segment of its own, and checkpoints.
    let (seq, mut wb) = pangu.volume_new_segment(name, b.epoch).await.unwrap();
    assert_eq!(seq, 1);
    wb.append(more.clone()).await.unwrap();
    let mut cp = pangu.volume_new_checkpoint_file(name, b.epoch).await.unwrap();
    cp.append(data(4096, 3)).await.unwrap();
    let cp_file = cp.id();
    // Only a sealed checkpoint file is installed.
    assert_eq!(
        volume_error(pangu.volume_set_checkpoint(name, b.epoch, cp_file, 1, 0).await),
        VolumeError::NotACheckpoint { volume: name.into(), file: cp_file }
    );
    cp.seal().await.unwrap();
    assert_eq!(
        volume_error(pangu.volume_set_checkpoint(name, b.epoch, wb.id(), 1, 0).await),
        VolumeError::NotACheckpoint { volume: name.into(), file: wb.id() }
    );
    pangu.volume_set_checkpoint(name, b.epoch, cp_file, 1, 0).await.unwrap();
    pangu.volume_drop_segments(name, b.epoch, &[0]).await.unwrap();
    let now = pangu.volume_describe(name).await.unwrap();
    assert_eq!(now.epoch, 2);
    assert_eq!(now.checkpoint.map(|c| (c.file, c.covers_seq, c.covers_offset)), Some((cp_file, 1, 0)));
    assert_eq!(now.segments.iter().map(|s| s.seq).collect::<Vec<_>>(), [1]);
    assert!(pangu.read(file, 0, 1).await.is_err(), "a dropped segment's file is deleted");
    wb.seal().await.unwrap();
}

/// The old writer keeps appending while the new one acquires: whatever it was acknowledged,
/// up to its first error, is inside the new writer's lease and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_writer_appending_through_the_acquire_loses_nothing_acknowledged() {
    let c = Cluster::start(3, 3).await;
    let pangu = c.pangu();
    let name = "d-race";
    pangu.volume_create(name, 64 * MIB, None).await.unwrap();
    let a = pangu.volume_acquire(name).await.unwrap();
    let (_, mut wa) = pangu.volume_new_segment(name, a.epoch).await.unwrap();
    let file = wa.id();
    let body = data((8 * MIB) as usize, 4);
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (body, acked) = (body.clone(), acked.clone());
        tokio::spawn(async move {
            for piece in body.chunks(48 * 1024) {
                wa.append(body.slice_ref(piece)).await?;
                acked.store(wa.len(), Ordering::SeqCst);
            }
            Ok::<_, PanguError>(())
        })
    };
    while acked.load(Ordering::SeqCst) < MIB + MIB / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = pangu.volume_acquire(name).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), writer).await.expect("the old writer stops").unwrap();
    assert!(result.is_err(), "the old writer cannot have finished 8 MiB after being fenced");
    let acked = acked.load(Ordering::SeqCst);
    let segment = b.segments[0];
    assert!(segment.sealed);
    assert!(segment.len >= acked, "lease length {} < acknowledged {acked}", segment.len);
    assert_eq!(pangu.read(file, 0, segment.len).await.unwrap(), body.slice(..segment.len as usize));
    c.wait("no unsealed chunk", |s| s.unsealed == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_survive_a_master_restart() {
    let mut c = Cluster::start(1, 1).await;
    let pangu = c.pangu();
    pangu.volume_create("img-base", 8 * MIB, None).await.unwrap();
    let base = pangu.volume_acquire("img-base").await.unwrap();
    let (_, mut w) = pangu.volume_new_segment("img-base", base.epoch).await.unwrap();
    let body = data(300_000, 5);
    w.append(body.clone()).await.unwrap();
    let segment_file = w.id();
    pangu.volume_freeze("img-base", base.epoch).await.unwrap();
    drop(w);
    pangu.volume_create("d-clone", 16 * MIB, Some("img-base")).await.unwrap();
    let lease = pangu.volume_acquire("d-clone").await.unwrap();
    let mut cp = pangu.volume_new_checkpoint_file("d-clone", lease.epoch).await.unwrap();
    cp.append(data(4096, 6)).await.unwrap();
    let cp_file = cp.id();
    cp.seal().await.unwrap();
    pangu.volume_set_checkpoint("d-clone", lease.epoch, cp_file, 0, 0).await.unwrap();
    pangu.volume_resize("d-clone", 32 * MIB).await.unwrap();
    let before = (pangu.volume_describe("img-base").await.unwrap(), pangu.volume_describe("d-clone").await.unwrap());

    // A new master on the same store.
    if let Some(stop) = c.stop_master.take() {
        let _ = stop.send(());
    }
    let restarted = Master::open(c.store.clone(), c.master.config().clone()).unwrap();
    let pangu = Pangu::in_process(restarted.clone());
    assert_eq!(pangu.volumes().await.unwrap(), ["d-clone", "img-base"]);
    let after = (pangu.volume_describe("img-base").await.unwrap(), pangu.volume_describe("d-clone").await.unwrap());
    assert_eq!(after, before);
    let base = after.0;
    assert!(base.frozen);
    assert_eq!(base.segments.len(), 1);
    assert_eq!((base.segments[0].file, base.segments[0].len, base.segments[0].sealed), (segment_file, 300_000, true));
    let clone = after.1;
    assert_eq!((clone.epoch, clone.size_bytes, clone.parent.as_deref()), (1, 32 * MIB, Some("img-base")));
    assert!(pangu.files().await.unwrap().is_empty(), "volume files stay out of files()");
    // The fence survives: the old epoch is still refused, the frozen volume still frozen.
    assert_eq!(volume_error(pangu.volume_new_segment("d-clone", 0).await), stale("d-clone", 1));
    assert_eq!(volume_error(pangu.volume_acquire("img-base").await), VolumeError::VolumeFrozen("img-base".into()));
    assert_eq!(pangu.volume_acquire("d-clone").await.unwrap().epoch, 2);
    assert_eq!(pangu.read(segment_file, 0, body.len() as u64).await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_leave_out_volume_files_and_deleting_them_takes_the_volume() {
    let c = Cluster::start(1, 1).await;
    let pangu = c.pangu();
    let mut plain = pangu.create().await.unwrap();
    plain.append(data(1000, 7)).await.unwrap();
    let plain_file = plain.id();
    plain.seal().await.unwrap();
    pangu.volume_create("d-files", 4 * MIB, None).await.unwrap();
    let lease = pangu.volume_acquire("d-files").await.unwrap();
    let (_, mut seg) = pangu.volume_new_segment("d-files", lease.epoch).await.unwrap();
    seg.append(data(5000, 8)).await.unwrap();
    let cp = pangu.volume_new_checkpoint_file("d-files", lease.epoch).await.unwrap();
    assert_eq!(pangu.files().await.unwrap(), [plain_file]);
    // A layer above that deletes what it does not know (OSS's sweep) cannot take a disk's file.
    match pangu.delete(seg.id()).await {
        Err(PanguError::Master(MasterClientError::Volume(VolumeError::OwnedByVolume { file, volume }))) => {
            assert_eq!((file, volume.as_str()), (seg.id(), "d-files"));
        }
        other => panic!("expected OwnedByVolume, got {other:?}"),
    }
    pangu.volume_delete("d-files").await.unwrap();
    assert_eq!(pangu.volumes().await.unwrap(), Vec::<String>::new());
    for file in [seg.id(), cp.id()] {
        match pangu.read(file, 0, 1).await {
            Err(PanguError::Master(MasterClientError::NoSuchFile(f))) => assert_eq!(f, file),
            other => panic!("the volume's files are deleted with it, got {other:?}"),
        }
    }
    assert_eq!(volume_error(pangu.volume_acquire("d-files").await), VolumeError::NoSuchVolume("d-files".into()));
    // Its replicas leave the server; the plain file's stays.
    c.wait("garbage collection", |s| s.servers[0].chunks == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_file_never_installed_is_deleted_by_the_next_acquire() {
    let c = Cluster::start(1, 1).await;
    let pangu = c.pangu();
    let name = "d-crash";
    pangu.volume_create(name, 4 * MIB, None).await.unwrap();
    let first = pangu.volume_acquire(name).await.unwrap();
    let mut installed = pangu.volume_new_checkpoint_file(name, first.epoch).await.unwrap();
    installed.append(data(4096, 10)).await.unwrap();
    let installed_file = installed.id();
    installed.seal().await.unwrap();
    pangu.volume_set_checkpoint(name, first.epoch, installed_file, 0, 0).await.unwrap();
    // The writer dies between making a checkpoint file and installing it: one sealed, one
    // still open.
    let mut sealed = pangu.volume_new_checkpoint_file(name, first.epoch).await.unwrap();
    sealed.append(data(8192, 11)).await.unwrap();
    let sealed_file = sealed.id();
    sealed.seal().await.unwrap();
    let mut open = pangu.volume_new_checkpoint_file(name, first.epoch).await.unwrap();
    open.append(data(4096, 12)).await.unwrap();
    let open_file = open.id();
    drop(open);
    let checkpoint_files = || {
        let files = c.store.read(|tx| feitian_pangu::master::namespace::volume_files(tx, name)).unwrap();
        files.iter().filter(|f| f.kind == VolumeFileKind::Checkpoint).count()
    };
    assert_eq!(checkpoint_files(), 3);

    let next = pangu.volume_acquire(name).await.unwrap();
    assert_eq!(next.checkpoint.map(|c| c.file), Some(installed_file));
    assert_eq!(checkpoint_files(), 1);
    for file in [sealed_file, open_file] {
        assert!(c.master.layout(file).is_err(), "stray checkpoint file {file} is deleted");
    }
    assert_eq!(pangu.read(installed_file, 0, 4096).await.unwrap(), data(4096, 10));
    // Installing another checkpoint deletes the one it replaces.
    let mut newer = pangu.volume_new_checkpoint_file(name, next.epoch).await.unwrap();
    newer.append(data(4096, 13)).await.unwrap();
    let newer_file = newer.id();
    newer.seal().await.unwrap();
    pangu.volume_set_checkpoint(name, next.epoch, newer_file, 3, 4096).await.unwrap();
    assert!(c.master.layout(installed_file).is_err());
    assert_eq!(checkpoint_files(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_registered_once_kept_across_acquires_and_released() {
    let c = Cluster::start(1, 1).await;
    let pangu = c.pangu();
    let name = "d-pins";
    pangu.volume_create(name, 4 * MIB, None).await.unwrap();
    let first = pangu.volume_acquire(name).await.unwrap();
    let epoch = first.epoch;
    let sealed_file = |seed: u64| {
        let pangu = pangu.clone();
        async move {
            let mut w = pangu.volume_new_checkpoint_file(name, epoch).await.unwrap();
            w.append(data(4096, seed)).await.unwrap();
            let file = w.id();
            w.seal().await.unwrap();
            file
        }
    };
    // An unsealed file, or the current checkpoint, is no pin.
    let mut open = pangu.volume_new_checkpoint_file(name, first.epoch).await.unwrap();
    open.append(data(4096, 1)).await.unwrap();
    let refused = pangu.volume_add_pin(name, first.epoch, "s-1", open.id(), 7, 4 * MIB).await;
    assert!(matches!(refused, Err(PanguError::Master(MasterClientError::Volume(VolumeError::NotAPinFile { .. })))));
    drop(open);
    let current = sealed_file(2).await;
    pangu.volume_set_checkpoint(name, first.epoch, current, 0, 0).await.unwrap();
    assert!(pangu.volume_add_pin(name, first.epoch, "s-1", current, 7, 4 * MIB).await.is_err());

    let a = sealed_file(3).await;
    let pin = pangu.volume_add_pin(name, first.epoch, "s-1", a, 7, 4 * MIB).await.unwrap();
    assert_eq!((pin.name.as_str(), pin.file, pin.next_seq, pin.size_bytes), ("s-1", a, 7, 4 * MIB));
    // Pinning the name again answers the first pin; the file made for it goes.
    let b = sealed_file(4).await;
    assert_eq!(pangu.volume_add_pin(name, first.epoch, "s-1", b, 9, 8 * MIB).await.unwrap(), pin);
    assert!(c.master.layout(b).is_err(), "the unneeded pin file is deleted");
    // A stale writer cannot pin.
    let next = pangu.volume_acquire(name).await.unwrap();
    let stale = pangu.volume_add_pin(name, first.epoch, "s-2", a, 1, 4 * MIB).await;
    assert!(matches!(stale, Err(PanguError::Master(MasterClientError::Volume(VolumeError::StaleEpoch { .. })))));
    // The acquire kept the pin (it is no stray checkpoint), and the new writer sees it.
    assert_eq!(next.pins, vec![pin.clone()]);
    assert_eq!(pangu.volume_describe(name).await.unwrap().pins, vec![pin.clone()]);
    assert_eq!(pangu.read(a, 0, 4096).await.unwrap(), data(4096, 3));

    pangu.volume_release_pin(name, "s-1").await.unwrap();
    assert!(c.master.layout(a).is_err(), "a released pin's file is deleted");
    assert!(pangu.volume_describe(name).await.unwrap().pins.is_empty());
    // Releasing what is not there (any more) is no error.
    pangu.volume_release_pin(name, "s-1").await.unwrap();
    pangu.volume_release_pin("d-none", "s-1").await.unwrap();

    // Deleting the volume deletes its pins.
    let mut w = pangu.volume_new_checkpoint_file(name, next.epoch).await.unwrap();
    w.append(data(4096, 5)).await.unwrap();
    let c_file = w.id();
    w.seal().await.unwrap();
    pangu.volume_add_pin(name, next.epoch, "s-3", c_file, 11, 4 * MIB).await.unwrap();
    pangu.volume_delete(name).await.unwrap();
    assert!(c.master.layout(c_file).is_err(), "a deleted volume's pin file is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_need_a_frozen_parent_that_outlives_them() {
    let c = Cluster::start(1, 1).await;
    let pangu = c.pangu();
    pangu.volume_create("img-1", 8 * MIB, None).await.unwrap();
    assert_eq!(
        volume_error(pangu.volume_create("img-1", 8 * MIB, None).await),
        VolumeError::VolumeExists("img-1".into())
    );
    assert_eq!(volume_error(pangu.volume_create("d/x", 8 * MIB, None).await), VolumeError::InvalidName("d/x".into()));
    assert_eq!(volume_error(pangu.volume_create("d-x", 1000, None).await), VolumeError::InvalidSize(1000));
    assert_eq!(
        volume_error(pangu.volume_create("d-1", 8 * MIB, Some("img-none")).await),
        VolumeError::ParentUnknown("img-none".into())
    );
    assert_eq!(
        volume_error(pangu.volume_create("d-1", 8 * MIB, Some("img-1")).await),
        VolumeError::ParentNotFrozen("img-1".into())
    );
    let lease = pangu.volume_acquire("img-1").await.unwrap();
    // A frozen volume with an empty open segment: freeze seals it.
    let (_, w) = pangu.volume_new_segment("img-1", lease.epoch).await.unwrap();
    pangu.volume_freeze("img-1", lease.epoch).await.unwrap();
    let base = pangu.volume_describe("img-1").await.unwrap();
    assert!(base.frozen && base.segments.iter().all(|s| s.sealed));
    assert_eq!(base.segments[0].file, w.id());
    assert_eq!(volume_error(pangu.volume_acquire("img-1").await), VolumeError::VolumeFrozen("img-1".into()));
    assert_eq!(
        volume_error(pangu.volume_new_segment("img-1", lease.epoch).await),
        VolumeError::VolumeFrozen("img-1".into())
    );

    pangu.volume_create("d-1", 8 * MIB, Some("img-1")).await.unwrap();
    assert_eq!(
        volume_error(pangu.volume_resize("d-1", 4 * MIB).await),
        VolumeError::ShrinkRefused { volume: "d-1".into(), size_bytes: 8 * MIB, requested: 4 * MIB }
    );
    pangu.volume_resize("d-1", 12 * MIB).await.unwrap();
    assert_eq!(
        volume_error(pangu.volume_delete("img-1").await),
        VolumeError::VolumeInUse { volume: "img-1".into(), clone: "d-1".into() }
    );
    pangu.volume_delete("d-1").await.unwrap();
    pangu.volume_delete("img-1").await.unwrap();
    assert!(pangu.volumes().await.unwrap().is_empty());
}

/// A writer that died mid-append left bytes on some replicas only. Whichever replica the
/// acquire freezes, every replica ends sealed at the same length with the same bytes: when
/// the frozen one (the first) has the tail, the others are made copies of it; when another
/// has it, the tail is cut there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_append_ends_the_same_on_every_replica() {
    let c = Cluster::start(3, 3).await;
    let pangu = c.pangu();
    for (name, torn_on, kept) in [("d-torn-first", 0, true), ("d-torn-last", 2, false)] {
        pangu.volume_create(name, 64 * MIB, None).await.unwrap();
        let a = pangu.volume_acquire(name).await.unwrap();
        let (_, mut wa) = pangu.volume_new_segment(name, a.epoch).await.unwrap();
        let body = data(300_000, 14);
        wa.append(body.clone()).await.unwrap();
        let file = wa.id();
        let chunk = c.master.layout(file).unwrap().chunks[0].clone();
        // The tail of an append that reached one replica.
        let tail = data(5000, 15);
        let torn = &chunk.replicas[torn_on];
        c.master.chunk_client(&torn.addr).append(chunk.id, body.len() as u64, tail.clone()).await.unwrap();
        // The writer died: no seal, and no word to the master (which would otherwise seal
        // the chunk itself).
        std::mem::forget(wa);

        let b = pangu.volume_acquire(name).await.unwrap();
        let expected = if kept { [body, tail].concat() } else { body.to_vec() };
        let len = expected.len() as u64;
        assert_eq!((b.segments[0].len, b.segments[0].sealed), (len, true), "{name}");
        let layout = c.master.layout(file).unwrap();
        assert_eq!(layout.chunks[0].replicas.len(), 3, "{layout:?}");
        for replica in &layout.chunks[0].replicas {
            let client = c.master.chunk_client(&replica.addr);
            assert_eq!(client.read(chunk.id, 0, len).await.unwrap(), expected, "{name}: replica on {}", replica.addr);
            assert_eq!(client.seal(chunk.id, None).await.unwrap(), len, "{name}: sealed at the same length");
        }
    }
}

/// A replica's server is dead when the new writer acquires: the segment is sealed on the
/// live replicas without waiting for it, and the dead one is left to repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_seals_on_the_live_replicas_when_one_server_is_dead() {
    let mut c = Cluster::start(3, 3).await;
    let pangu = c.pangu();
    let name = "d-dead";
    pangu.volume_create(name, 64 * MIB, None).await.unwrap();
    let a = pangu.volume_acquire(name).await.unwrap();
    let (_, mut wa) = pangu.volume_new_segment(name, a.epoch).await.unwrap();
    let body = data(700_000, 16);
    wa.append(body.clone()).await.unwrap();
    let file = wa.id();
    let dead_addr = c.master.layout(file).unwrap().chunks[0].replicas[1].addr.clone();
    let i = c.nodes.iter().position(|(n, _)| n.addr == dead_addr).unwrap();
    c.stop_node(i);
    c.wait("the server to be seen dead", |s| s.servers.iter().filter(|x| x.live).count() == 2).await;

    let b = pangu.volume_acquire(name).await.unwrap();
    assert_eq!((b.segments[0].len, b.segments[0].sealed), (body.len() as u64, true));
    let replicas = &c.master.layout(file).unwrap().chunks[0].replicas;
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    assert!(replicas.iter().all(|r| r.addr != dead_addr));
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    assert!(wa.append(data(10, 17)).await.is_err());
}
