//! A whole Pangu in one process: a master on the control-plane store and chunkserver nodes
//! on loopback, driven through the file client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_meta::Store;
use feitian_pangu::chunkserver::{flow_for_repair_rate, DEFAULT_FLOW};
use feitian_pangu::client::Pangu;
use feitian_pangu::master::{self, Master, MasterConfig, MasterStatus};
use feitian_pangu::node::{self, Node, NodeConfig};
use feitian_pangu::parts::{BlockCrcs, Parts};
use tokio::sync::oneshot;

struct Cluster {
    master: Arc<Master>,
    master_addr: String,
    nodes: Vec<(Node, Option<oneshot::Sender<()>>)>,
    dirs: Vec<tempfile::TempDir>,
}

fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

impl Cluster {
    async fn start(replication: usize, servers: usize, chunk_size: u64) -> Cluster {
        let store = Store::open_in_memory().unwrap();
        let mut config = MasterConfig::new(replication);
        config.chunk_size = chunk_size;
        config.heartbeat_timeout = Duration::from_millis(1500);
        config.tick = Duration::from_millis(100);
        let master = Master::open(store, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master_addr = listener.local_addr().unwrap().to_string();
        let router = master::router(master.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        tokio::spawn(master.clone().run(std::future::pending()));
        let mut c = Cluster { master, master_addr, nodes: Vec::new(), dirs: Vec::new() };
        for i in 0..servers {
            c.add_node(&format!("rack-{i}"), None).await;
        }
        c
    }

    async fn add_node(&mut self, rack: &str, dir: Option<usize>) -> usize {
        let path = match dir {
            Some(i) => self.dirs[i].path().to_path_buf(),
            None => {
                self.dirs.push(tempfile::tempdir().unwrap());
                self.dirs.last().unwrap().path().to_path_buf()
            }
        };
        let (tx, rx) = oneshot::channel::<()>();
        let config = NodeConfig {
            master: self.master_addr.clone(),
            dir: path,
            rack: rack.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            capacity_bytes: 1 << 34,
            flow: flow_for_repair_rate(256 << 20).unwrap_or(DEFAULT_FLOW),
            heartbeat: Duration::from_millis(200),
            scrub: None,
            secret: self.master.config().secret.clone(),
        };
        let node = node::start(config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        self.nodes.push((node, Some(tx)));
        self.nodes.len() - 1
    }

    fn stop(&mut self, i: usize) {
        if let Some(tx) = self.nodes[i].1.take() {
            let _ = tx.send(());
        }
    }

    /// A cluster of `servers` live chunkservers of 1 MiB chunks whose first one is also
    /// attached in process (as `feitian up` attaches its own), and a client.
    async fn start_with_local(replication: usize, servers: usize) -> (Cluster, Pangu) {
        let c = Cluster::start(replication, servers, 1 << 20).await;
        c.wait("the nodes", |s| s.servers.iter().filter(|x| x.live).count() == servers).await;
        c.master.attach_local(&c.nodes[0].0.addr, c.nodes[0].0.server.clone());
        let pangu = Pangu::in_process(c.master.clone());
        (c, pangu)
    }

    async fn wait(&self, what: &str, ok: impl Fn(&MasterStatus) -> bool) -> MasterStatus {
        for _ in 0..300 {
            let s = self.master.status();
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.master.status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_round_trip_across_chunks() {
    let c = Cluster::start(1, 1, 1 << 20).await;
    c.wait("the node", |s| s.servers.iter().filter(|x| x.live).count() == 1).await;
    let pangu = Pangu::in_process(c.master.clone());
    let mut w = pangu.create().await.unwrap();
    let body = data(3 * (1 << 20) + 12345, 1);
    assert_eq!(w.append(body.slice(..1000)).await.unwrap(), 0);
    assert_eq!(w.append(body.slice(1000..)).await.unwrap(), 1000);
    let file = w.id();
    assert_eq!(w.seal().await.unwrap(), body.len() as u64);
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    assert_eq!(pangu.read(file, 1_048_000, 5000).await.unwrap(), body.slice(1_048_000..1_053_000));
    assert!(pangu.read(file, body.len() as u64 - 1, 2).await.is_err());
    assert_eq!(c.master.layout(file).unwrap().chunks.len(), 4);
    pangu.delete(file).await.unwrap();
    assert!(pangu.read(file, 0, 1).await.is_err());
    // The replicas of the deleted file leave the server.
    c.wait("garbage collection", |s| s.servers[0].chunks == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_loss_mid_write_keeps_every_acknowledged_byte_and_repair_restores_three() {
    let mut c = Cluster::start(3, 3, 1 << 20).await;
    c.wait("three nodes", |s| s.servers.iter().filter(|x| x.live).count() == 3).await;
    let pangu = Pangu::in_process(c.master.clone());
    let mut w = pangu.create().await.unwrap();
    let body = data(5 << 20, 2);
    let step = 256 * 1024;
    let mut off = 0;
    while off < body.len() {
        if off == 2 << 20 {
            c.stop(1); // a replica dies mid-file, mid-chunk for the writer
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let end = (off + step).min(body.len());
        w.append(body.slice(off..end)).await.unwrap();
        off = end;
    }
    let file = w.id();
    w.seal().await.unwrap();
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    // The master notices: chunks are short of a replica, and no third server can take one.
    c.wait("the loss to be seen", |s| s.under_replicated > 0 && !s.servers[1].live).await;
    let short = c.master.layout(file).unwrap().chunks.iter().filter(|c| c.replicas.len() < 3).count();
    assert!(short > 0);
    // The dead server comes back with its data: the master tops every chunk up to three.
    c.add_node("rack-1", Some(1)).await;
    let s = c.wait("three replicas of everything", |s| s.under_replicated == 0 && s.unsealed == 0).await;
    assert_eq!(s.unrecoverable, 0);
    assert!(s.repair.copies_done > 0, "{s:?}");
    for chunk in c.master.layout(file).unwrap().chunks {
        assert_eq!(chunk.replicas.len(), 3, "{chunk:?}");
    }
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_never_served_and_is_repaired() {
    let c = Cluster::start(2, 2, 1 << 20).await;
    c.wait("two nodes", |s| s.servers.iter().filter(|x| x.live).count() == 2).await;
    let pangu = Pangu::in_process(c.master.clone());
    let mut w = pangu.create().await.unwrap();
    let body = data(300_000, 3);
    w.append(body.clone()).await.unwrap();
    let file = w.id();
    w.seal().await.unwrap();
    let chunk = c.master.layout(file).unwrap().chunks[0].clone();
    // Flip one byte in the first replica's data file.
    let first = &chunk.replicas[0];
    let i = c.nodes.iter().position(|(n, _)| n.addr == first.addr).unwrap();
    let path = c.dirs[i].path().join(format!("{}.chunk", chunk.id));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200_000] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    // The read still returns the right bytes (from the other replica) ...
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    // ... the master learnt of the corruption and has the replica copied afresh.
    let s = c.wait("the repair", |s| s.repair.copies_done >= 1 && s.under_replicated == 0).await;
    assert!(s.repair.corrupt_reported >= 1);
    let fixed = std::fs::read(&path).unwrap();
    assert_eq!(&fixed[..body.len()], &body[..]);
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_appended_as_their_concatenation_in_process_and_over_http() {
    // Replication 2: one replica in process (written from the parts as they are), one over
    // HTTP (sent as one body with the writer's checksum); parts straddle the 1 MiB chunks.
    let (c, pangu) = Cluster::start_with_local(2, 2).await;
    let mut w = pangu.create().await.unwrap();
    let body = data(3 * (1 << 20) + 4321, 9);
    let cuts = [0, 1, 70_000, 1_048_575, 1_048_577, 2_500_000, body.len()];
    let parts: Parts = cuts.windows(2).map(|c| body.slice(c[0]..c[1])).collect();
    assert_eq!(w.append_parts(parts).await.unwrap(), 0);
    let file = w.id();
    assert_eq!(w.seal().await.unwrap(), body.len() as u64);
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    // Both replicas of every chunk hold the same bytes.
    for chunk in c.master.layout(file).unwrap().chunks {
        let copies: Vec<Vec<u8>> =
            c.dirs.iter().map(|d| std::fs::read(d.path().join(format!("{}.chunk", chunk.id))).unwrap()).collect();
        assert_eq!(copies[0], copies[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_block_checksums_follow_the_bytes_into_each_chunk() {
    // The writer's block checksums, taken as the bytes arrived, are split with the bytes at
    // the 1 MiB chunks (whole blocks) and recorded by the in-process replica (debug builds
    // check them against the bytes); the file reads back, so every block verifies.
    let (c, pangu) = Cluster::start_with_local(1, 1).await;
    let mut w = pangu.create().await.unwrap();
    let body = data(3 * (1 << 20) + 4321, 11);
    let mut sums = BlockCrcs::new();
    let mut parts = Parts::new();
    for cut in [0, 1, 70_000, 1_048_575, 1_048_577, 2_500_000, body.len()].windows(2) {
        sums.update(&body[cut[0]..cut[1]]);
        parts.push(body.slice(cut[0]..cut[1]));
    }
    let parts = parts.with_block_crcs(sums.finish());
    assert!(parts.block_crcs().is_some());
    assert_eq!(w.append_parts(parts).await.unwrap(), 0);
    let file = w.id();
    assert_eq!(w.seal().await.unwrap(), body.len() as u64);
    assert_eq!(c.master.layout(file).unwrap().chunks.len(), 4);
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_path_checks_as_much_as_http() {
    let (c, pangu) = Cluster::start_with_local(1, 1).await;
    let mut w = pangu.create().await.unwrap();
    let body = data(1_500_000, 4);
    w.append(body.clone()).await.unwrap();
    let file = w.id();
    w.seal().await.unwrap();
    assert_eq!(pangu.read(file, 0, body.len() as u64).await.unwrap(), body);
    let chunk = c.master.layout(file).unwrap().chunks[0].clone();
    let path = c.dirs[0].path().join(format!("{}.chunk", chunk.id));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[70_000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    // The only replica is corrupt: the read fails rather than serve a wrong byte.
    assert!(pangu.read(file, 65_536, 10_000).await.is_err());
    assert!(c.master.status().repair.corrupt_reported >= 1);
    // And the replica, reported corrupt, serves nothing more until it is repaired.
    assert!(pangu.read(file, 0, 10).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_ranges_read_at_once_are_what_single_reads_return_and_skip_a_corrupt_replica() {
    // Two servers: the first in process (its ranges are one call), the second over HTTP.
    let (c, pangu) = Cluster::start_with_local(2, 2).await;
    let mut w = pangu.create().await.unwrap();
    let body = data(3 * (1 << 20) + 500_000, 9);
    w.append(body.clone()).await.unwrap();
    let file = w.id();
    w.seal().await.unwrap();
    let ranges = [
        (3 << 20, 400_000),
        (10, 4096),
        (1_048_000, 5000), // across a chunk boundary
        (0, 0),
        (2 << 20, 1 << 20),
        (10, 4096),
        (200_000, 70_000),
    ];
    let many = pangu.read_many(file, &ranges).await.unwrap();
    assert_eq!(many.len(), ranges.len());
    for (&(at, n), got) in ranges.iter().zip(&many) {
        assert_eq!(got, &body.slice(at as usize..(at + n) as usize), "range {at}+{n}");
    }
    assert!(pangu.read_many(file, &[(0, 10), (body.len() as u64 - 1, 2)]).await.is_err());

    // A flipped byte in the first replica of chunk 0: the ranges still read right, from
    // the other replica, and the master hears of it.
    let chunk = c.master.layout(file).unwrap().chunks[0].clone();
    let first = &chunk.replicas[0];
    let i = c.nodes.iter().position(|(n, _)| n.addr == first.addr).unwrap();
    let path = c.dirs[i].path().join(format!("{}.chunk", chunk.id));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[210_000] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let again = pangu.read_many(file, &ranges).await.unwrap();
    assert_eq!(again, many);
    let s = c.wait("the corruption report", |s| s.repair.corrupt_reported >= 1).await;
    assert!(s.repair.corrupt_reported >= 1);
}
