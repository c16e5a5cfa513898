//! RAF on a real Pangu cluster, under the faults `docs/disks.md` promises to survive, and
//! its space accounting.
//!
//! The cluster is a master in this process (on an in-memory control-plane store) and three
//! chunkservers in *child processes*, replication 3. A chunkserver process is this test
//! binary run again as its ignored test `chunkserver_process`, so a test can `kill -9` one
//! (`Child::kill` sends SIGKILL) and start it again on the same directory, with no other
//! binary to build. A child also exits when its stdin closes, so children never outlive the
//! test process, even one that panics or is killed itself. The harness is
//! `feitian_pangu::test_support` (shared with `crates/disk/tests/raf_nbd.rs`).
//!
//! Every test here can fail: each compares what it reads with a model of what was
//! acknowledged, byte for byte, or the master's own counters with what the fault must cause.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use feitian_pangu::master::FileId as PanguFile;
use feitian_pangu::test_support::{self, live, Cluster};
use feitian_raf::pangu::PanguStore;
use feitian_raf::{CompactionConfig, Config, LogStore, Raf, RafError, StoreError};
use parking_lot::Mutex;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const BLOCK: u64 = 4 * KIB;
/// Pangu's chunk size in these tests (64 MiB in production): small, so that a few MiB of
/// log span several chunks and a lost server leaves some of them short of a replica.
const CHUNK: u64 = 4 * MIB;

/// The chunkserver child (`feitian_pangu::test_support`): a Pangu node that lives until its
/// stdin closes (or SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chunkserver process the other tests start and kill -9; not a test by itself"]
async fn chunkserver_process() {
    test_support::chunkserver_child().await;
}

/// A master and three chunkserver processes (one rack each), replication 3, all live.
async fn start_cluster() -> Cluster {
    Cluster::start(3, CHUNK).await
}

/// What these tests ask of the cluster about RAF volumes.
trait Volumes {
    fn store(&self) -> Arc<PanguStore>;
    /// Every file of a volume (segments and checkpoint) by its registry entry.
    async fn volume_files(&self, name: &str) -> Vec<PanguFile>;
    /// The bytes a closed volume keeps in Pangu: the sealed length of every file it has.
    async fn volume_bytes(&self, name: &str) -> u64;
    /// Bytes of chunk files on the chunkservers' disks.
    fn disk_bytes(&self) -> u64;
}

impl Volumes for Cluster {
    fn store(&self) -> Arc<PanguStore> {
        Arc::new(PanguStore::new(self.pangu()))
    }

    async fn volume_files(&self, name: &str) -> Vec<PanguFile> {
        let lease = self.pangu().volume_describe(name).await.expect("describe");
        let mut files: Vec<PanguFile> = lease.segments.iter().map(|s| s.file).collect();
        files.extend(lease.checkpoint.map(|c| c.file));
        files
    }

    async fn volume_bytes(&self, name: &str) -> u64 {
        let mut total = 0;
        for file in self.volume_files(name).await {
            let layout = self.master.layout(file).expect("a volume file exists");
            total += layout.sealed_len.expect("a closed volume's files are sealed");
        }
        total
    }

    fn disk_bytes(&self) -> u64 {
        let mut total = 0;
        for dir in self.dirs() {
            for entry in std::fs::read_dir(dir).expect("chunk dir").flatten() {
                if entry.file_name().to_string_lossy().ends_with(".chunk") {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        total
    }
}

/// The engine's settings here: segments of two chunks, manual compaction at full speed.
fn config() -> Config {
    Config {
        segment_bytes: 2 * CHUNK,
        batch_bytes: MIB,
        checkpoint_every: 64 * MIB,
        queue_depth: 64,
        compaction: CompactionConfig {
            interval: None,
            live_fraction: 0.5,
            bytes_per_sec: GIB,
            burst_bytes: 64 * MIB,
            min_share: 0.1,
            chunk_bytes: MIB,
        },
    }
}

/// Deterministic bytes for `seed` (xorshift).
fn pattern(len: u64, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len as usize + 8);
    while (v.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len as usize);
    Bytes::from(v)
}

/// A small deterministic generator for offsets and lengths.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Reads the whole volume in 1 MiB pieces and compares it with `model`.
async fn assert_reads(raf: &Raf, model: &[u8], when: &str) {
    let step = MIB as usize;
    for (i, want) in model.chunks(step).enumerate() {
        let offset = (i * step) as u64;
        let got = raf.read(offset, want.len() as u64).await.unwrap_or_else(|e| panic!("{when}: read at {offset}: {e}"));
        if got[..] != want[..] {
            let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{when}: byte {} differs from what was acknowledged", offset + at as u64);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_killed_mid_stream_fails_no_write_and_repair_restores_three_replicas() {
    const TASKS: u64 = 8;
    const REGION: u64 = 4 * MIB;
    const SIZE: u64 = TASKS * REGION;
    /// Write sizes: 4 KiB pages and larger, up to 256 KiB.
    const SIZES: [u64; 5] = [4 * KIB, 8 * KIB, 64 * KIB, 128 * KIB, 256 * KIB];
    const PER_TASK: u64 = 3 * MIB;
    const KILL_AFTER: u64 = 8 * MIB;

    let mut c = start_cluster().await;
    let store = c.store();
    store.create("d-kill", SIZE, None).await.expect("create");
    let raf = Arc::new(Raf::open(store.clone(), "d-kill", config()).await.expect("open"));
    let model = Arc::new(Mutex::new(vec![0u8; SIZE as usize]));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));

    // Eight writers, each in its own region (so the model is exact), 4 KiB to 256 KiB.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (raf, model, acked) = (raf.clone(), model.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(t + 1);
            let mut written = 0;
            let mut n = 0;
            while written < PER_TASK {
                let len = SIZES[dice.next(SIZES.len() as u64) as usize];
                let offset = t * REGION + dice.next((REGION - len) / BLOCK + 1) * BLOCK;
                let data = pattern(len, t << 32 | n);
                raf.write(offset, data.clone()).await.map_err(|e| format!("write {n} of task {t} at {offset}: {e}"))?;
                model.lock()[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                acked.fetch_add(len, std::sync::atomic::Ordering::SeqCst);
                written += len;
                n += 1;
            }
            Ok::<u64, String>(n)
        }));
    }
    // A chunkserver dies (SIGKILL) once part of the stream is acknowledged.
    while acked.load(std::sync::atomic::Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = acked.load(std::sync::atomic::Ordering::SeqCst);
    c.kill9(1);
    let mut writes = 0;
    for task in tasks {
        writes += task.await.expect("writer task").expect("no write fails when one replica dies");
    }
    eprintln!("{writes} writes, chunkserver 1 killed after {} MiB acknowledged", killed_at / MIB);

    let model = model.lock().clone();
    assert_reads(&raf, &model, "after the kill").await;
    raf.close().await.expect("close");
    drop(raf);
    let raf = Raf::open(store.clone(), "d-kill", config()).await.expect("reopen with a server down");
    assert_reads(&raf, &model, "after a reopen").await;
    raf.close().await.expect("close");

    // The master sees the loss, then, once the server is back, copies what it missed.
    c.wait("the loss to be seen", Duration::from_secs(10), |s| live(s) == 2 && s.under_replicated > 0).await;
    let before = c.master.status().repair.copies_done;
    let start = Instant::now();
    c.spawn(1);
    let s = c
        .wait("three replicas of every chunk", Duration::from_secs(30), |s| {
            live(s) == 3 && s.under_replicated == 0 && s.unsealed == 0 && s.repair.in_flight == 0
        })
        .await;
    let repair_time = start.elapsed();
    assert_eq!(s.unrecoverable, 0);
    assert!(s.repair.copies_done > before, "the missed chunks were copied: {s:?}");
    for file in c.volume_files("d-kill").await {
        for chunk in c.master.layout(file).expect("layout").chunks {
            assert_eq!(chunk.replicas.len(), 3, "{chunk:?}");
        }
    }
    eprintln!(
        "repair: {} copies, {} bytes, {:?} from the restart (heartbeat timeout 1.5 s, 256 MiB/s per server)",
        s.repair.copies_done - before,
        s.repair.bytes_copied,
        repair_time
    );
    let raf = Raf::open(store, "d-kill", config()).await.expect("reopen");
    assert_reads(&raf, &model, "after the repair").await;
    raf.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_writer_is_refused_and_changes_nothing_the_new_one_reads() {
    const SIZE: u64 = 16 * MIB;
    let c = start_cluster().await;
    let store = c.store();
    store.create("d-fence", SIZE, None).await.expect("create");
    let a = Arc::new(Raf::open(store.clone(), "d-fence", config()).await.expect("open A"));
    let mut model = vec![0u8; SIZE as usize];
    let first = pattern(MIB, 1);
    a.write(0, first.clone()).await.expect("A writes");
    model[..MIB as usize].copy_from_slice(&first);

    // A keeps writing block after block while B acquires the volume.
    let stream = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..1024u64 {
                let offset = 2 * MIB + i * BLOCK;
                match a.write(offset, pattern(BLOCK, 100 + i)).await {
                    Ok(()) => acked.push(i),
                    Err(e) => return (acked, Some(e)),
                }
            }
            (acked, None)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = Raf::open(store.clone(), "d-fence", config()).await.expect("open B");
    assert_eq!(b.epoch(), a.epoch() + 1);
    let (acked, refused) = stream.await.expect("A's stream");
    let refused = refused.expect("A's writes after B's acquire are refused");
    assert!(!acked.is_empty(), "A wrote some blocks before B came");
    eprintln!("A: {} blocks acknowledged, then: {refused}", acked.len());
    for &i in &acked {
        let offset = (2 * MIB + i * BLOCK) as usize;
        model[offset..offset + BLOCK as usize].copy_from_slice(&pattern(BLOCK, 100 + i));
    }

    // Everything A tries from now on is refused: writes, trims, flushes, a checkpoint, close.
    let stale = |r: Result<(), RafError>| match r {
        Err(RafError::Store(StoreError::StaleEpoch)) | Err(RafError::Failed(StoreError::StaleEpoch)) => {}
        other => panic!("a fenced writer must be refused as stale, got {other:?}"),
    };
    stale(a.write(0, pattern(MIB, 2)).await);
    stale(a.write(8 * MIB, pattern(64 * KIB, 3)).await);
    stale(a.trim(0, MIB).await);
    stale(a.flush().await);

    // B reads exactly what A was acknowledged, and writes on.
    assert_reads(&b, &model, "B after the fence").await;
    let third = pattern(MIB, 4);
    b.write(4 * MIB, third.clone()).await.expect("B writes");
    model[4 * MIB as usize..5 * MIB as usize].copy_from_slice(&third);
    stale(a.write(4 * MIB, pattern(MIB, 5)).await);
    assert!(a.close().await.is_err(), "a fenced writer cannot close (checkpoint) its volume");
    b.close().await.expect("B closes");

    let c2 = Raf::open(store, "d-fence", config()).await.expect("reopen");
    assert_reads(&c2, &model, "a later reopen").await;
    c2.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_one_replica_is_never_served_and_is_repaired() {
    const SIZE: u64 = 16 * MIB;
    let c = start_cluster().await;
    let store = c.store();
    store.create("d-rot", SIZE, None).await.expect("create");
    let raf = Raf::open(store.clone(), "d-rot", config()).await.expect("open");
    let data = pattern(6 * MIB, 7);
    raf.write(MIB, data.clone()).await.expect("write");
    raf.close().await.expect("close");
    drop(raf);
    let mut model = vec![0u8; SIZE as usize];
    model[MIB as usize..7 * MIB as usize].copy_from_slice(&data);

    // Flip one byte in the middle of the first chunk of the first segment, in the replica
    // a reader tries first.
    let lease = c.store().pangu().volume_describe("d-rot").await.expect("describe");
    let segment = lease.segments[0].file;
    let chunk = c.master.layout(segment).expect("layout").chunks[0].clone();
    let replica = chunk.replicas[0].clone();
    let path = c.dir_of(replica.server.0).join(format!("{}.chunk", chunk.id));
    let mut bytes = std::fs::read(&path).expect("the replica's chunk file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).expect("corrupt the replica");
    let reported = c.master.status().repair.corrupt_reported;

    // Every byte RAF returns is right (the reader moved on to a good replica) ...
    let raf = Raf::open(store.clone(), "d-rot", config()).await.expect("reopen");
    assert_reads(&raf, &model, "with a corrupt replica").await;
    // ... and the master was told, and has the replica copied afresh. (The report is counted
    // before the replica is marked and its copy planned: waiting for the count alone can see
    // "nothing under-replicated, nothing in flight" in between.)
    let s = c
        .wait("the corrupt replica's repair", Duration::from_secs(30), |s| {
            s.repair.corrupt_reported > reported
                && s.repair.copies_done >= 1
                && s.under_replicated == 0
                && s.repair.in_flight == 0
        })
        .await;
    assert!(s.repair.copies_done >= 1, "{s:?}");
    let fixed = std::fs::read(&path).expect("the repaired replica");
    assert_eq!(fixed[at], bytes[at] ^ 0x10, "the repaired replica holds the right byte again");
    assert_reads(&raf, &model, "after the repair").await;
    raf.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_crashed_mid_stream_keeps_every_acknowledged_write() {
    const TASKS: u64 = 8;
    const REGION: u64 = 2 * MIB;
    const SIZE: u64 = TASKS * REGION;
    let c = start_cluster().await;
    let store = c.store();
    store.create("d-crash", SIZE, None).await.expect("create");
    let raf = Arc::new(Raf::open(store.clone(), "d-crash", config()).await.expect("open"));

    // Per block: the write last acknowledged, and the one in flight (either may be read
    // after the crash; nothing else may).
    #[derive(Default, Clone, Copy)]
    struct Block {
        acked: Option<u64>,
        pending: Option<u64>,
    }
    let blocks = Arc::new(Mutex::new(HashMap::<u64, Block>::new()));
    let content = |write: u64, block: u64| pattern(BLOCK, write << 20 | block);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (raf, blocks) = (raf.clone(), blocks.clone());
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(t + 11);
            for n in 0u64.. {
                let count = 1 + dice.next(16);
                let first = t * REGION / BLOCK + dice.next(REGION / BLOCK - count + 1);
                let id = t << 32 | n;
                let mut data = Vec::with_capacity((count * BLOCK) as usize);
                {
                    let mut b = blocks.lock();
                    for blk in first..first + count {
                        data.extend_from_slice(&content(id, blk));
                        b.entry(blk).or_default().pending = Some(id);
                    }
                }
                if raf.write(first * BLOCK, Bytes::from(data)).await.is_err() {
                    return;
                }
                let mut b = blocks.lock();
                for blk in first..first + count {
                    let e = b.entry(blk).or_default();
                    e.acked = Some(id);
                    e.pending = None;
                }
            }
        }));
    }
    // Let the stream run, then crash: the tasks stop where they are and the engine is
    // dropped without close (its writer and background tasks are aborted mid-append).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        assert!(task.await.expect_err("aborted").is_cancelled());
    }
    let Ok(raf) = Arc::try_unwrap(raf) else { panic!("the engine has no other owner") };
    drop(raf);
    let blocks = blocks.lock().clone();
    let acked = blocks.values().filter(|b| b.acked.is_some()).count();
    let pending = blocks.values().filter(|b| b.pending.is_some()).count();
    eprintln!("crash: {acked} blocks acknowledged, {pending} in flight");
    assert!(acked > 100 && pending > 0, "the crash came mid-stream: {acked} acknowledged, {pending} in flight");

    let raf = Raf::open(store.clone(), "d-crash", config()).await.expect("reopen after the crash");
    let mut image = Vec::with_capacity(SIZE as usize);
    for i in 0..SIZE / MIB {
        image.extend_from_slice(&raf.read(i * MIB, MIB).await.expect("read"));
    }
    let zero = Bytes::from(vec![0u8; BLOCK as usize]);
    for blk in 0..SIZE / BLOCK {
        let got = &image[(blk * BLOCK) as usize..((blk + 1) * BLOCK) as usize];
        let b = blocks.get(&blk).copied().unwrap_or_default();
        let acked = b.acked.map_or(zero.clone(), |w| content(w, blk));
        let ok = got == &acked[..] || b.pending.is_some_and(|w| got == &content(w, blk)[..]);
        assert!(ok, "block {blk} reads neither its acknowledged write nor the one in flight");
    }
    // The new writer goes on where the crashed one stopped.
    raf.write(0, pattern(BLOCK, 9)).await.expect("write after the crash");
    raf.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_read_of_a_fragmented_volume_does_not_stall() {
    // Blocks written by 16 concurrent writers in interleaved strides land in the log out of
    // order, so one 8 MiB read (an NBD request may be 32 MiB) maps to a thousand or more
    // pieces of log. Issued all at once, they opened more connections to one chunkserver
    // than it serves (512), and the rest waited out the client's idle timeout: 18 s for a
    // 16 MiB read that takes 0.4 s in 1 MiB pieces.
    const SIZE: u64 = 8 * MIB;
    const WRITERS: u64 = 16;
    let c = start_cluster().await;
    let store = c.store();
    store.create("d-frag", SIZE, None).await.expect("create");
    let raf = Arc::new(Raf::open(store.clone(), "d-frag", config()).await.expect("open"));
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let raf = raf.clone();
        tasks.push(tokio::spawn(async move {
            for blk in (t..SIZE / BLOCK).step_by(WRITERS as usize) {
                raf.write(blk * BLOCK, pattern(BLOCK, blk)).await.expect("write");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let extents = raf.stats().extents;
    assert!(extents > 1000, "the volume is fragmented: {extents} extents");
    let start = Instant::now();
    let image = tokio::time::timeout(Duration::from_secs(5), raf.read(0, SIZE))
        .await
        .unwrap_or_else(|_| panic!("reading {extents} extents took over 5 s"))
        .expect("read");
    eprintln!("one {} MiB read of {extents} extents: {:?}", SIZE / MIB, start.elapsed());
    for blk in 0..SIZE / BLOCK {
        let got = &image[(blk * BLOCK) as usize..((blk + 1) * BLOCK) as usize];
        assert_eq!(got, &pattern(BLOCK, blk)[..], "block {blk}");
    }
    raf.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_follows_live_data_through_overwrites_compaction_and_trim() {
    // docs/disks.md: a 20 GiB disk with 1 GiB written takes about 1 GiB of log. Here the
    // volume is 20 GiB and WRITTEN is smaller (CI time); the assertions are ratios.
    const SIZE: u64 = 20 * GIB;
    const WRITTEN: u64 = 64 * MIB;
    const PIECE: u64 = MIB;
    /// The pieces are spread evenly over the whole volume.
    const STRIDE: u64 = SIZE / (WRITTEN / PIECE);
    let c = start_cluster().await;
    let store = c.store();
    store.create("d-space", SIZE, None).await.expect("create");

    let fill = |raf: Arc<Raf>, round: u64| async move {
        // Scattered over the 20 GiB: 1 MiB pieces, STRIDE apart, each round the same places.
        for i in 0..WRITTEN / PIECE {
            raf.write(i * STRIDE, pattern(PIECE, round << 16 | i)).await.expect("write");
        }
    };
    let raf = Arc::new(Raf::open(store.clone(), "d-space", config()).await.expect("open"));
    fill(raf.clone(), 0).await;
    raf.close().await.expect("close");
    let written = c.volume_bytes("d-space").await;
    eprintln!("space: {} MiB written to a 20 GiB volume use {written} bytes of log", WRITTEN / MIB);
    assert!((WRITTEN..WRITTEN + WRITTEN / 10).contains(&written), "{written}");

    // Ten overwrites, then compaction: under twice the live data.
    let raf = Arc::new(Raf::open(store.clone(), "d-space", config()).await.expect("reopen"));
    for round in 1..=10 {
        fill(raf.clone(), round).await;
    }
    let before = raf.stats();
    let old = c.store().pangu().volume_describe("d-space").await.expect("describe").segments;
    let report = raf.compact().await.expect("compact");
    let after = raf.stats();
    raf.close().await.expect("close");
    let compacted = c.volume_bytes("d-space").await;
    eprintln!(
        "space: after ten overwrites {} bytes of log, {compacted} after compaction ({} segments dropped, {} bytes moved)",
        before.log_bytes,
        report.dropped.len(),
        report.bytes_copied
    );
    assert!(before.log_bytes > 10 * WRITTEN, "{before:?}");
    assert_eq!(after.live_bytes, WRITTEN);
    assert!(compacted < 2 * WRITTEN, "{compacted} bytes for {WRITTEN} live");
    // The dropped segments' files are gone from Pangu, not just from the registry.
    assert!(!report.dropped.is_empty());
    for segment in old.iter().filter(|s| report.dropped.contains(&s.seq)) {
        assert!(c.master.layout(segment.file).is_err(), "segment {} was dropped: its file is deleted", segment.seq);
    }

    // Trim half (the first half of the pieces, as a guest deleting files), compact: that
    // half's space is freed, up to the newest segment (never compacted) and the segments
    // holding both halves. (Trimming every other piece instead leaves each segment about
    // half live, and the 50% threshold keeps those over it: 45 MiB for 32 MiB live.)
    let raf = Raf::open(store.clone(), "d-space", config()).await.expect("reopen");
    for i in 0..WRITTEN / PIECE / 2 {
        raf.trim(i * STRIDE, PIECE).await.expect("trim");
    }
    assert_eq!(raf.stats().live_bytes, WRITTEN / 2);
    raf.compact().await.expect("compact");
    raf.close().await.expect("close");
    let trimmed = c.volume_bytes("d-space").await;
    eprintln!("space: after trimming half and compacting, {trimmed} bytes");
    assert!(trimmed < WRITTEN / 2 + WRITTEN / 8, "{trimmed} bytes for {} live", WRITTEN / 2);

    // What the volume reads is still exactly the last round, with the trimmed half zero.
    let raf = Raf::open(store, "d-space", config()).await.expect("reopen");
    for i in 0..WRITTEN / PIECE {
        let want =
            if i < WRITTEN / PIECE / 2 { Bytes::from(vec![0u8; PIECE as usize]) } else { pattern(PIECE, 10 << 16 | i) };
        assert_eq!(raf.read(i * STRIDE, PIECE).await.expect("read"), want, "piece {i}");
    }
    raf.close().await.expect("close");

    // And the chunkservers' disks follow: the dropped files' replicas are collected.
    let registry = c.volume_bytes("d-space").await;
    let start = Instant::now();
    while c.disk_bytes() > 3 * registry + 3 * CHUNK {
        assert!(start.elapsed() < Duration::from_secs(20), "chunk files: {} bytes for {registry}", c.disk_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("space: {} bytes of chunk files on the three servers for {registry} bytes of log", c.disk_bytes());
}

/// docs/snapshots.md, guarantee 1, on real chunkservers: a pin taken while guests write is
/// one instant. Four writers each own 1 MiB and write 16 KiB pieces one after another; the
/// pin holds, for every block, its content after some prefix of its writer's writes between
/// those acknowledged when the pin was asked for and those begun when it answered (a write
/// in flight at the instant is in or out, block by block, as after a crash). Then the
/// volume is overwritten and compacted, and the pin still reads the same bytes; released,
/// its space is reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_taken_under_concurrent_writes_is_one_instant_and_outlives_compaction() {
    const WRITERS: u64 = 4;
    const REGION: u64 = MIB;
    const PIECE: u64 = 16 * KIB;
    let c = start_cluster().await;
    let store = c.store();
    let size = WRITERS * REGION;
    store.create("d-pin", size, None).await.expect("create");
    let raf = Arc::new(Raf::open(store.clone(), "d-pin", config()).await.expect("open"));

    // Per writer: (piece index in its region, seed) of every write begun, and how many were
    // acknowledged. Writes begin in order and are acknowledged in order (one at a time).
    type Log = Arc<Mutex<(Vec<(u64, u64)>, usize)>>;
    let logs: Vec<Log> = (0..WRITERS).map(|_| Arc::new(Mutex::new((Vec::new(), 0)))).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (raf, log, stop) = (raf.clone(), logs[w as usize].clone(), stop.clone());
            tokio::spawn(async move {
                let mut dice = Dice(w + 11);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let piece = dice.next(REGION / PIECE);
                    let seed = w << 32 | n;
                    log.lock().0.push((piece, seed));
                    raf.write(w * REGION + piece * PIECE, pattern(PIECE, seed)).await.expect("write");
                    log.lock().1 += 1;
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked: Vec<usize> = logs.iter().map(|l| l.lock().1).collect();
    let pin = raf.pin("s-under-writes").await.expect("pin");
    let begun: Vec<usize> = logs.iter().map(|l| l.lock().0.len()).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(acked.iter().all(|&a| a > 0), "the writers were writing: {acked:?}");
    assert!(logs.iter().zip(&begun).all(|(l, &b)| l.lock().0.len() > b), "and went on after the pin");

    let view = feitian_raf::PinnedView::open(store.clone(), "d-pin", "s-under-writes").await.expect("view");
    assert_eq!(view.pin(), &pin);
    let pinned = view.read(0, size).await.expect("read the pin");
    for w in 0..WRITERS as usize {
        let log = logs[w].lock().0.clone();
        for block in 0..REGION / BLOCK {
            let piece = block * BLOCK / PIECE;
            let within = ((block * BLOCK) % PIECE) as usize;
            let content = |seed: Option<u64>| match seed {
                Some(seed) => pattern(PIECE, seed).slice(within..within + BLOCK as usize),
                None => Bytes::from(vec![0u8; BLOCK as usize]),
            };
            // The block after the acknowledged prefix, and each write to it begun by the answer.
            let before = log[..acked[w]].iter().rev().find(|(p, _)| *p == piece).map(|&(_, s)| s);
            let mut allowed = vec![content(before)];
            allowed.extend(log[acked[w]..begun[w]].iter().filter(|(p, _)| *p == piece).map(|&(_, s)| content(Some(s))));
            let at = (w as u64 * REGION + block * BLOCK) as usize;
            let got = &pinned[at..at + BLOCK as usize];
            assert!(allowed.iter().any(|a| a[..] == *got), "writer {w} block {block}: not its content at the instant");
        }
    }

    // Overwritten and compacted, the pin reads the same; the volume reads the new bytes.
    for i in 0..size / MIB {
        raf.write(i * MIB, pattern(MIB, 1 << 40 | i)).await.expect("overwrite");
    }
    raf.compact().await.expect("compact");
    let view = feitian_raf::PinnedView::open(store.clone(), "d-pin", "s-under-writes").await.expect("view");
    assert!(view.read(0, size).await.expect("read the pin after compaction") == pinned);
    raf.release_pin("s-under-writes").await.expect("release");
    let held = raf.stats().log_bytes;
    raf.compact().await.expect("compact after release");
    let freed = raf.stats().log_bytes;
    eprintln!("pins: {held} bytes of log while pinned, {freed} after the release and a compaction");
    assert!(freed < held, "{freed} after release, {held} before");
    for i in 0..size / MIB {
        assert_eq!(raf.read(i * MIB, MIB).await.expect("read"), pattern(MIB, 1 << 40 | i));
    }
    raf.close().await.expect("close");
}
