//! The property test: random sequences of writes, trims, flushes, crashes, reopens,
//! checkpoints and compactions against an in-memory model of the disk, on the in-memory
//! store (`support`), seeded so that a failure names the case that replays it.
//!
//! A seeded loop rather than `proptest`: the operations are async and interleave with the
//! engine's tasks, so shrinking would not replay reliably anyway, and a seed reproduces a
//! case exactly (the runtime is single-threaded and the store's random choices are seeded).
//!
//! Invariants checked:
//! - after every reopen each block reads its latest acknowledged content; a block written
//!   by a write in flight at the crash reads its old or its new content;
//! - after a power loss (the store keeps what was synced and a random part of the rest),
//!   each block reads the content it had at the last completed flush or one written since;
//!   a block not written since that flush reads exactly its flushed content;
//! - holes read zeros; a clone reads through its frozen parent, and its trims shadow it;
//! - the live bytes are exactly the blocks the volume itself maps to data;
//! - a stale writer (opened before another open) gets errors and changes nothing the new
//!   writer reads;
//! - a pin taken at a random step reads, at the end of the case (after whatever crashes,
//!   power losses, compactions and writers came since), exactly as the model did at that
//!   step.
//!
//! `RAF_PROPERTY_CASES` and `RAF_PROPERTY_SEED` override the number of cases and the first
//! seed (e.g. to replay one failing case).

mod support;

use std::sync::Arc;

use bytes::Bytes;
use feitian_raf::{CompactionConfig, Config, PinnedView, Raf, RafError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::Store;
use tokio::task::JoinHandle;

const BLOCK: u64 = 4096;
const BLOCKS: u64 = 48;
const PARENT_BLOCKS: u64 = 32;
const OPS: usize = 60;
/// Parent tags are below this, the clone's above: a tag says whose data a block holds.
const CHILD_TAGS: u64 = 1 << 32;

/// A block's content: its tag and number, so a block read from the wrong place shows.
fn block(tag: u64, lba: u64) -> Vec<u8> {
    if tag == 0 {
        return vec![0; BLOCK as usize];
    }
    let mut b = vec![(tag % 251) as u8; BLOCK as usize];
    b[..8].copy_from_slice(&tag.to_le_bytes());
    b[8..16].copy_from_slice(&lba.to_le_bytes());
    b
}

fn tag_of(data: &[u8], lba: u64) -> u64 {
    if data.iter().all(|&b| b == 0) {
        return 0;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&data[..8]);
    let tag = u64::from_le_bytes(t);
    assert_eq!(data, &block(tag, lba)[..], "block {lba} holds a damaged or misplaced block");
    tag
}

fn blocks(tag: u64, lba: u64, n: u64) -> Bytes {
    let mut out = Vec::with_capacity((n * BLOCK) as usize);
    for i in 0..n {
        out.extend_from_slice(&block(tag, lba + i));
    }
    Bytes::from(out)
}

fn config() -> Config {
    Config {
        segment_bytes: 64 * 1024,
        batch_bytes: 32 * 1024,
        checkpoint_every: 96 * 1024,
        queue_depth: 64,
        compaction: CompactionConfig {
            interval: None,
            live_fraction: 0.5,
            bytes_per_sec: 1 << 30,
            burst_bytes: 1 << 20,
            min_share: 0.25,
            chunk_bytes: 16 * 1024,
        },
    }
}

/// How often each interesting thing happened over all cases: the test checks that it
/// exercised what it claims to.
#[derive(Debug, Default)]
struct Coverage {
    crashes: u64,
    in_flight_writes: u64,
    in_flight_blocks_new: u64,
    in_flight_blocks_old: u64,
    compactions_that_dropped: u64,
    compactions_beside_writes: u64,
    stale_writers: u64,
    reopens: u64,
    power_losses: u64,
    syncs: u64,
    lost_bytes: u64,
    fates: [u64; 3],
    pins_checked: u64,
}

/// The model: for each block the contents it may read as (one unless writes were in
/// flight at a crash), and the contents it had since the last completed flush (what a
/// power loss may leave).
struct Model {
    blocks: Vec<Vec<u64>>,
    since_flush: Vec<Vec<u64>>,
}

impl Model {
    fn new(tags: Vec<Vec<u64>>) -> Model {
        Model { since_flush: tags.clone(), blocks: tags }
    }

    fn set(&mut self, lba: u64, n: u64, tag: u64) {
        for b in lba..lba + n {
            self.blocks[b as usize] = vec![tag];
            self.since_flush[b as usize].push(tag);
        }
    }

    fn allow(&mut self, lba: u64, n: u64, tag: u64) {
        for b in lba..lba + n {
            self.blocks[b as usize].push(tag);
            self.since_flush[b as usize].push(tag);
        }
    }

    /// A flush completed: everything the blocks hold now is durable.
    fn flushed(&mut self) {
        self.since_flush = self.blocks.clone();
    }

    /// The hosts lost power: each block may read anything it held since the last flush.
    fn power_lost(&mut self) {
        for (allowed, since) in self.blocks.iter_mut().zip(&self.since_flush) {
            for tag in since {
                if !allowed.contains(tag) {
                    allowed.push(*tag);
                }
            }
        }
    }

    fn live_bytes(&self) -> u64 {
        self.blocks.iter().filter(|t| t.len() == 1 && t[0] >= CHILD_TAGS).count() as u64 * BLOCK
    }
}

/// Reads the whole volume, checks every block against the model and makes the model
/// what was read.
async fn verify_all(raf: &Raf, model: &mut Model, what: &str) {
    verify_counting(raf, model, what, &mut Coverage::default()).await
}

/// [`verify_all`], counting the blocks of in-flight writes that read new and old.
async fn verify_counting(raf: &Raf, model: &mut Model, what: &str, cov: &mut Coverage) {
    let data = raf.read(0, BLOCKS * BLOCK).await.unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    for lba in 0..BLOCKS {
        let at = (lba * BLOCK) as usize;
        let tag = tag_of(&data[at..at + BLOCK as usize], lba);
        let allowed = &model.blocks[lba as usize];
        assert!(allowed.contains(&tag), "{what}: block {lba} reads tag {tag:#x}, allowed {allowed:x?}");
        if allowed.len() > 1 {
            if tag == allowed[0] {
                cov.in_flight_blocks_old += 1;
            } else {
                cov.in_flight_blocks_new += 1;
            }
        }
        model.blocks[lba as usize] = vec![tag];
    }
    // What a reopen found is durable: the open sealed the log.
    model.flushed();
    assert_eq!(raf.stats().live_bytes, model.live_bytes(), "{what}: live bytes");
}

/// A write issued before a crash: first block, blocks, tag, its task.
type InFlight = (u64, u64, u64, JoinHandle<Result<(), RafError>>);

/// Random disjoint ranges.
fn ranges(rng: &mut StdRng, count: usize) -> Vec<(u64, u64)> {
    let mut taken = vec![false; BLOCKS as usize];
    let mut out = Vec::new();
    for _ in 0..count {
        let lba = rng.gen_range(0..BLOCKS);
        let n = rng.gen_range(1..=8).min(BLOCKS - lba);
        if (lba..lba + n).any(|b| taken[b as usize]) {
            continue;
        }
        for b in lba..lba + n {
            taken[b as usize] = true;
        }
        out.push((lba, n));
    }
    out
}

async fn run_case(seed: u64, cov: &mut Coverage) {
    let mut rng = StdRng::seed_from_u64(seed);
    let store = Store::new(seed ^ 0x5EED, rng.gen_range(0..4));
    let s = store.dyn_store();
    let mut next_tag = CHILD_TAGS;
    let mut model = Model::new(vec![vec![0]; BLOCKS as usize]);

    // Half the cases are clones of a frozen parent holding random data.
    let clone = rng.gen_bool(0.5);
    if clone {
        s.create("img", PARENT_BLOCKS * BLOCK, None).await.expect("create parent");
        let parent = Raf::open(s.clone(), "img", config()).await.expect("open parent");
        for tag in 1..6u64 {
            let lba = rng.gen_range(0..PARENT_BLOCKS);
            let n = rng.gen_range(1..=8).min(PARENT_BLOCKS - lba);
            parent.write(lba * BLOCK, blocks(tag, lba, n)).await.expect("parent write");
            model.set(lba, n, tag);
        }
        parent.trim(0, BLOCK).await.expect("parent trim");
        model.set(0, 1, 0);
        parent.freeze().await.expect("freeze");
        s.create("d", BLOCKS * BLOCK, Some("img")).await.expect("create clone");
    } else {
        s.create("d", BLOCKS * BLOCK, None).await.expect("create");
    }
    let mut raf = Arc::new(Raf::open(s.clone(), "d", config()).await.expect("open"));
    verify_all(&raf, &mut model, "first open").await;
    // The step from which a pin is taken (its own generator: the other choices stay as
    // they were), and what the model said then.
    let pin_from = StdRng::seed_from_u64(seed ^ 0x9111).gen_range(0..OPS);
    let mut pinned: Option<Vec<u64>> = None;

    for step in 0..OPS {
        let what = format!("seed {seed} step {step}");
        if step >= pin_from && pinned.is_none() && model.blocks.iter().all(|t| t.len() == 1) {
            raf.pin("s-prop").await.unwrap_or_else(|e| panic!("{what}: pin: {e}"));
            pinned = Some(model.blocks.iter().map(|t| t[0]).collect());
        }
        match rng.gen_range(0..100) {
            // Concurrent writes to disjoint ranges, all acknowledged.
            0..=34 => {
                let mut tasks = Vec::new();
                let count = rng.gen_range(1..=4);
                for (lba, n) in ranges(&mut rng, count) {
                    let tag = next_tag;
                    next_tag += 1;
                    let r = raf.clone();
                    tasks.push(tokio::spawn(async move { r.write(lba * BLOCK, blocks(tag, lba, n)).await }));
                    model.set(lba, n, tag);
                }
                // Sometimes compaction copies blocks that these writes overwrite meanwhile.
                let compaction = rng.gen_bool(0.3).then(|| {
                    let r = raf.clone();
                    tokio::spawn(async move { r.compact().await })
                });
                for t in tasks {
                    t.await.expect("task").unwrap_or_else(|e| panic!("{what}: write: {e}"));
                }
                if let Some(c) = compaction {
                    let report = c.await.expect("task").unwrap_or_else(|e| panic!("{what}: compact: {e}"));
                    cov.compactions_beside_writes += u64::from(!report.dropped.is_empty());
                }
            }
            35..=44 => {
                let (lba, n) = ranges(&mut rng, 1)[0];
                raf.trim(lba * BLOCK, n * BLOCK).await.unwrap_or_else(|e| panic!("{what}: trim: {e}"));
                model.set(lba, n, 0);
            }
            45..=49 => {
                raf.flush().await.unwrap_or_else(|e| panic!("{what}: flush: {e}"));
                model.flushed();
            }
            50..=57 => {
                let report = raf.compact().await.unwrap_or_else(|e| panic!("{what}: compact: {e}"));
                cov.compactions_that_dropped += u64::from(!report.dropped.is_empty());
            }
            58..=61 => raf.checkpoint().await.unwrap_or_else(|e| panic!("{what}: checkpoint: {e}")),
            62..=69 => {
                let (lba, n) = ranges(&mut rng, 1)[0];
                let data = raf.read(lba * BLOCK, n * BLOCK).await.unwrap_or_else(|e| panic!("{what}: read: {e}"));
                for i in 0..n {
                    let at = (i * BLOCK) as usize;
                    let tag = tag_of(&data[at..at + BLOCK as usize], lba + i);
                    assert_eq!(vec![tag], model.blocks[(lba + i) as usize], "{what}: block {}", lba + i);
                }
            }
            // A clean close and reopen.
            70..=76 => {
                raf.close().await.unwrap_or_else(|e| panic!("{what}: close: {e}"));
                drop(raf);
                raf = Arc::new(Raf::open(s.clone(), "d", config()).await.expect("reopen"));
                cov.reopens += 1;
                verify_all(&raf, &mut model, &format!("{what}: after reopen")).await;
            }
            // A stale writer: another open fences this one.
            77..=81 => {
                let newer = Arc::new(Raf::open(s.clone(), "d", config()).await.expect("second open"));
                let (lba, n) = ranges(&mut rng, 1)[0];
                let tag = next_tag;
                next_tag += 1;
                let refused = raf.write(lba * BLOCK, blocks(tag, lba, n)).await;
                assert!(refused.is_err(), "{what}: a stale writer's write was accepted");
                assert!(raf.trim(0, BLOCK).await.is_err(), "{what}: a stale writer's trim was accepted");
                assert!(raf.flush().await.is_err(), "{what}: a stale writer's flush succeeded");
                // Whatever it still tries is refused or changes nothing the new writer sees.
                let _ = raf.compact().await;
                let _ = raf.checkpoint().await;
                let _ = raf.close().await;
                drop(raf);
                raf = newer;
                cov.stale_writers += 1;
                verify_all(&raf, &mut model, &format!("{what}: new writer")).await;
            }
            // A crash (of the processes, or a power loss of every host) with writes (and
            // maybe a compaction or checkpoint) in flight.
            crash => {
                let power = crash >= 94;
                let mut writes: Vec<InFlight> = Vec::new();
                let count = rng.gen_range(1..=4);
                for (lba, n) in ranges(&mut rng, count) {
                    let tag = next_tag;
                    next_tag += 1;
                    let r = raf.clone();
                    writes.push((
                        lba,
                        n,
                        tag,
                        tokio::spawn(async move { r.write(lba * BLOCK, blocks(tag, lba, n)).await }),
                    ));
                }
                let mut others = Vec::new();
                if rng.gen_bool(0.3) {
                    let r = raf.clone();
                    others.push(tokio::spawn(async move {
                        let _ = r.compact().await;
                    }));
                }
                if rng.gen_bool(0.3) {
                    let r = raf.clone();
                    others.push(tokio::spawn(async move {
                        let _ = r.checkpoint().await;
                    }));
                }
                for _ in 0..rng.gen_range(0..30) {
                    tokio::task::yield_now().await;
                }
                for t in &others {
                    t.abort();
                }
                for (lba, n, tag, task) in writes {
                    if task.is_finished() {
                        task.await.expect("task").unwrap_or_else(|e| panic!("{what}: write before the crash: {e}"));
                        model.set(lba, n, tag);
                    } else {
                        task.abort();
                        model.allow(lba, n, tag);
                        cov.in_flight_writes += 1;
                    }
                }
                // The aborted tasks hold the volume until the runtime drops them.
                for _ in 0..100 {
                    if Arc::strong_count(&raf) == 1 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                assert_eq!(Arc::strong_count(&raf), 1, "{what}: the crashed volume is still held");
                drop(raf);
                if power {
                    store.0.power_loss();
                    model.power_lost();
                    cov.power_losses += 1;
                }
                raf = Arc::new(Raf::open(s.clone(), "d", config()).await.expect("reopen after crash"));
                cov.crashes += 1;
                verify_counting(&raf, &mut model, &format!("{what}: after crash"), cov).await;
            }
        }
        if model.blocks.iter().all(|t| t.len() == 1) {
            assert_eq!(raf.stats().live_bytes, model.live_bytes(), "{what}: live bytes");
        }
    }
    raf.close().await.unwrap_or_else(|e| panic!("seed {seed}: final close: {e}"));
    drop(raf);
    let raf = Raf::open(s.clone(), "d", config()).await.expect("final open");
    verify_all(&raf, &mut model, &format!("seed {seed}: final open")).await;
    if let Some(tags) = pinned {
        let view = PinnedView::open(s.clone(), "d", "s-prop").await.expect("open the pin");
        let data = view.read(0, BLOCKS * BLOCK).await.unwrap_or_else(|e| panic!("seed {seed}: read the pin: {e}"));
        for (lba, &want) in tags.iter().enumerate() {
            let at = lba * BLOCK as usize;
            let tag = tag_of(&data[at..at + BLOCK as usize], lba as u64);
            assert_eq!(tag, want, "seed {seed}: block {lba} of the pin");
        }
        cov.pins_checked += 1;
    }
    raf.close().await.expect("close");
    let counters = store.0.counters();
    for (total, n) in cov.fates.iter_mut().zip(counters.fates) {
        *total += n;
    }
    cov.syncs += counters.syncs;
    cov.lost_bytes += counters.lost_bytes;
}

#[tokio::test]
async fn random_operations_keep_the_disk_consistent() {
    let cases: u64 = std::env::var("RAF_PROPERTY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let first: u64 = std::env::var("RAF_PROPERTY_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut cov = Coverage::default();
    for seed in first..first + cases {
        run_case(seed, &mut cov).await;
    }
    eprintln!("{cases} cases: {cov:?}");
    if cases >= 100 {
        // Every kind of event the invariants are about happened, many times.
        let counts = [
            cov.crashes,
            cov.in_flight_writes,
            cov.in_flight_blocks_new,
            cov.in_flight_blocks_old,
            cov.compactions_that_dropped,
            cov.compactions_beside_writes,
            cov.stale_writers,
            cov.reopens,
            cov.power_losses,
            cov.pins_checked,
            cov.syncs,
            cov.lost_bytes,
        ];
        assert!(counts.iter().chain(&cov.fates).all(|&n| n >= 10), "too little coverage: {cov:?}");
    }
}
