//! The engine's behaviours one at a time, on the in-memory store: space after overwrites
//! and compaction, trims leaving the live count, group commit, resize, range checks,
//! freezing and clones, and background compaction under a busy guest.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_raf::{Config, Raf, RafError, StoreError};
use support::{config, Store};

const BLOCK: u64 = 4096;
const KIB: u64 = 1024;

fn fill(len: u64, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

async fn volume(store: &Store, name: &str, size: u64, config: Config) -> Raf {
    let s = store.dyn_store();
    s.create(name, size, None).await.expect("create");
    Raf::open(s, name, config).await.expect("open")
}

#[tokio::test]
async fn overwriting_ten_times_then_compacting_keeps_the_log_under_twice_the_data() {
    let store = Store::new(1, 1);
    let size = 1024 * KIB;
    let raf = volume(&store, "d", size, config()).await;
    let mut last = Bytes::new();
    for round in 0..10u8 {
        // In 64 KiB writes, as a guest rewriting a file would.
        last = fill(size, round);
        for at in (0..size).step_by(64 * 1024) {
            raf.write(at, last.slice(at as usize..(at + 64 * KIB) as usize)).await.expect("write");
        }
    }
    let before = raf.stats();
    assert_eq!(before.live_bytes, size);
    assert!(before.log_bytes >= 10 * size, "{before:?}");
    let report = raf.compact().await.expect("compact");
    assert!(!report.dropped.is_empty());
    let after = raf.stats();
    assert_eq!(after.live_bytes, size);
    assert!(after.log_bytes < 2 * size, "log {} for {} of data", after.log_bytes, size);
    assert_eq!(raf.read(0, size).await.expect("read"), last);
    raf.close().await.expect("close");
    // The dropped segments are gone from the store too, and the volume reopens from them.
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen");
    assert_eq!(raf.read(0, size).await.expect("read"), last);
    assert!(raf.stats().log_bytes < 2 * size);
    assert_eq!(store.0.root_files("d").len(), raf.stats().segments + 1);
}

#[tokio::test]
async fn trimmed_blocks_leave_the_live_count() {
    let store = Store::new(2, 0);
    let raf = volume(&store, "d", 64 * BLOCK, config()).await;
    raf.write(0, fill(64 * BLOCK, 1)).await.expect("write");
    assert_eq!(raf.stats().live_bytes, 64 * BLOCK);
    raf.trim(8 * BLOCK, 16 * BLOCK).await.expect("trim");
    assert_eq!(raf.stats().live_bytes, 48 * BLOCK);
    raf.write_zeroes(0, 4 * BLOCK).await.expect("write zeroes");
    assert_eq!(raf.stats().live_bytes, 44 * BLOCK);
    let data = raf.read(0, 64 * BLOCK).await.expect("read");
    let original = fill(64 * BLOCK, 1);
    let b = |n: u64| (n * BLOCK) as usize;
    assert!(data[..b(4)].iter().all(|&x| x == 0));
    assert_eq!(&data[b(4)..b(8)], &original[b(4)..b(8)]);
    assert!(data[b(8)..b(24)].iter().all(|&x| x == 0));
    assert_eq!(&data[b(24)..], &original[b(24)..]);
    raf.close().await.expect("close");
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen");
    assert_eq!(raf.stats().live_bytes, 44 * BLOCK);
}

#[tokio::test]
async fn concurrent_writes_share_appends() {
    let store = Store::new(3, 2);
    let raf = Arc::new(volume(&store, "d", 256 * BLOCK, config()).await);
    let before = store.0.counters().appends;
    let tasks: Vec<_> = (0..64u64)
        .map(|i| {
            let r = raf.clone();
            tokio::spawn(async move { r.write(i * 4 * BLOCK, fill(4 * BLOCK, i as u8)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("write");
    }
    let appends = store.0.counters().appends - before;
    // 64 writes of 16 KiB in batches of at most 128 KiB: 8 appends if perfectly packed.
    assert!(appends < 64, "{appends} appends for 64 concurrent writes");
    for i in 0..64u64 {
        assert_eq!(raf.read(i * 4 * BLOCK, 4 * BLOCK).await.expect("read"), fill(4 * BLOCK, i as u8));
    }
}

#[tokio::test]
async fn ranges_are_checked() {
    let store = Store::new(4, 0);
    let raf = volume(&store, "d", 16 * BLOCK, config()).await;
    assert!(matches!(raf.write(1, fill(BLOCK, 0)).await, Err(RafError::Unaligned { .. })));
    assert!(matches!(raf.read(0, 100).await, Err(RafError::Unaligned { .. })));
    assert!(matches!(raf.write(16 * BLOCK, fill(BLOCK, 0)).await, Err(RafError::OutOfRange { .. })));
    assert!(matches!(raf.trim(u64::MAX - 4095, BLOCK).await, Err(RafError::OutOfRange { .. })));
    assert_eq!(raf.read(0, 0).await.expect("empty read").len(), 0);
}

#[tokio::test]
async fn resize_grows_only_and_survives_reopen() {
    let store = Store::new(5, 0);
    let raf = volume(&store, "d", 16 * BLOCK, config()).await;
    assert!(matches!(raf.resize(8 * BLOCK).await, Err(RafError::Shrink { .. })));
    raf.resize(32 * BLOCK).await.expect("grow");
    raf.write(31 * BLOCK, fill(BLOCK, 9)).await.expect("write at the new end");
    raf.close().await.expect("close");
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen");
    assert_eq!(raf.size(), 32 * BLOCK);
    assert_eq!(raf.read(31 * BLOCK, BLOCK).await.expect("read"), fill(BLOCK, 9));
}

#[tokio::test]
async fn a_closed_volume_takes_no_writes() {
    let store = Store::new(6, 0);
    let raf = volume(&store, "d", 16 * BLOCK, config()).await;
    raf.write(0, fill(BLOCK, 1)).await.expect("write");
    raf.close().await.expect("close");
    assert_eq!(raf.write(0, fill(BLOCK, 2)).await, Err(RafError::Closed));
    assert_eq!(raf.flush().await, Err(RafError::Closed));
    assert_eq!(raf.read(0, BLOCK).await.expect("reads still work"), fill(BLOCK, 1));
}

#[tokio::test]
async fn a_clone_reads_its_parent_and_shadows_it() {
    let store = Store::new(7, 1);
    let s = store.dyn_store();
    let image = volume(&store, "img", 32 * BLOCK, config()).await;
    image.write(0, fill(32 * BLOCK, 5)).await.expect("write image");
    image.freeze().await.expect("freeze");
    assert!(matches!(Raf::open(s.clone(), "img", config()).await, Err(RafError::Store(StoreError::Frozen))));
    s.create("d", 64 * BLOCK, Some("img")).await.expect("clone");
    let raf = Raf::open(s.clone(), "d", config()).await.expect("open clone");
    assert_eq!(raf.stats().live_bytes, 0, "a clone costs nothing until written");
    let parent = fill(32 * BLOCK, 5);
    assert_eq!(raf.read(0, 32 * BLOCK).await.expect("read"), parent);
    assert!(raf.read(32 * BLOCK, 32 * BLOCK).await.expect("read").iter().all(|&b| b == 0));
    raf.trim(4 * BLOCK, 4 * BLOCK).await.expect("trim");
    raf.write(12 * BLOCK, fill(BLOCK, 77)).await.expect("write");
    raf.close().await.expect("close");
    let raf = Raf::open(s.clone(), "d", config()).await.expect("reopen clone");
    let data = raf.read(0, 16 * BLOCK).await.expect("read");
    assert_eq!(&data[..4 * BLOCK as usize], &parent[..4 * BLOCK as usize]);
    assert!(data[4 * BLOCK as usize..8 * BLOCK as usize].iter().all(|&b| b == 0), "the trim shadows the parent");
    assert_eq!(&data[12 * BLOCK as usize..13 * BLOCK as usize], &fill(BLOCK, 77)[..]);
    // The parent is untouched.
    let second = {
        s.create("d2", 32 * BLOCK, Some("img")).await.expect("second clone");
        Raf::open(s.clone(), "d2", config()).await.expect("open")
    };
    assert_eq!(second.read(0, 32 * BLOCK).await.expect("read"), parent);
}

#[tokio::test]
async fn background_compaction_progresses_under_a_busy_guest() {
    let store = Store::new(8, 1);
    let mut cfg = config();
    cfg.compaction.interval = Some(Duration::from_millis(5));
    cfg.compaction.bytes_per_sec = 64 * 1024 * 1024;
    let size = 512 * KIB;
    let raf = Arc::new(volume(&store, "d", size, cfg).await);
    // The guest rewrites the same blocks without pause; without compaction the log would
    // grow to the bytes written.
    let mut written = 0;
    let mut peak = 0;
    for round in 0..40u8 {
        for at in (0..size).step_by(128 * 1024) {
            raf.write(at, fill(128 * KIB, round)).await.expect("write");
            written += 128 * KIB;
        }
        peak = peak.max(raf.stats().log_bytes);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = raf.stats();
    assert!(stats.log_bytes < written / 2, "log {} after {} written (peak {})", stats.log_bytes, written, peak);
    assert_eq!(raf.read(0, size).await.expect("read"), {
        let mut last = Vec::new();
        for _ in 0..4 {
            last.extend_from_slice(&fill(128 * KIB, 39));
        }
        Bytes::from(last)
    });
    raf.close().await.expect("close");
}

#[tokio::test]
async fn reads_racing_compaction_never_go_back_in_time() {
    // Slow reads widen the window in which compaction drops a segment under a read.
    let store = Store::with_slow_reads(9, 2, 60);
    let size = 64 * BLOCK;
    let mut cfg = config();
    cfg.segment_bytes = 64 * KIB;
    cfg.batch_bytes = 32 * KIB;
    cfg.compaction.chunk_bytes = 16 * KIB;
    let raf = Arc::new(volume(&store, "d", size, cfg).await);
    // Each round writes version `round` into every block; `acked` is the newest round
    // whose writes were all acknowledged.
    let acked = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let block_of = |v: u8| Bytes::from(vec![v; BLOCK as usize]);
    for b in 0..64 {
        raf.write(b * BLOCK, block_of(0)).await.expect("write");
    }
    let writer = {
        let (raf, acked) = (raf.clone(), acked.clone());
        tokio::spawn(async move {
            for round in 1..=30u8 {
                for b in 0..64 {
                    raf.write(b * BLOCK, block_of(round)).await.expect("write");
                }
                acked.store(round, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let compactor = {
        let raf = raf.clone();
        tokio::spawn(async move {
            let mut dropped = 0;
            for _ in 0..200 {
                dropped += raf.compact().await.expect("compact").dropped.len();
                tokio::task::yield_now().await;
            }
            dropped
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
        let data = raf.read(0, size).await.expect("read");
        for (b, chunk) in data.chunks(BLOCK as usize).enumerate() {
            assert!(chunk.iter().all(|&x| x == chunk[0]), "block {b} is torn");
            assert!(chunk[0] >= floor, "block {b} reads version {} after {floor} was acknowledged", chunk[0]);
        }
        reads += 1;
    }
    writer.await.expect("writer");
    let dropped = compactor.await.expect("compactor");
    assert!(dropped > 0 && reads > 10, "dropped {dropped} segments over {reads} reads");
    assert_eq!(raf.read(0, size).await.expect("read"), Bytes::from(vec![30u8; size as usize]));
}

#[tokio::test(start_paused = true)]
async fn compaction_is_paced_by_its_token_bucket() {
    let store = Store::new(10, 0);
    let mut cfg = config();
    cfg.compaction.bytes_per_sec = 256 * KIB;
    cfg.compaction.burst_bytes = 64 * KIB;
    cfg.compaction.chunk_bytes = 64 * KIB;
    let raf = volume(&store, "d", 2048 * KIB, cfg).await;
    // Two regions written in turns, then the first one again: the segments of the turns
    // (three writes each) end up a third or two thirds live, and the first are moved.
    for at in (0..1024 * KIB).step_by(64 * 1024) {
        raf.write(at, fill(64 * KIB, 1)).await.expect("write");
        raf.write(1024 * KIB + at, fill(64 * KIB, 2)).await.expect("write");
    }
    for at in (0..1024 * KIB).step_by(64 * 1024) {
        raf.write(at, fill(64 * KIB, 3)).await.expect("write");
    }
    let start = tokio::time::Instant::now();
    let report = raf.compact().await.expect("compact");
    let took = start.elapsed();
    assert!(report.bytes_copied >= 256 * KIB, "{report:?}");
    // Beyond the burst, every byte waits for its token (on tokio's paused clock).
    let floor = Duration::from_secs_f64((report.bytes_copied - 64 * KIB) as f64 / (256 * KIB) as f64);
    assert!(took >= floor, "moved {} bytes in {took:?}, floor {floor:?}", report.bytes_copied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_readers_and_compaction_on_threads() {
    let store = Store::new(11, 1);
    let mut cfg = config();
    cfg.segment_bytes = 64 * KIB;
    cfg.compaction.interval = Some(Duration::from_millis(1));
    let raf = Arc::new(volume(&store, "d", 128 * BLOCK, cfg.clone()).await);
    // Each task owns 16 blocks and rewrites them; it checks its own last write reads back.
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let raf = raf.clone();
            tokio::spawn(async move {
                let base = t * 16 * BLOCK;
                for round in 0..40u8 {
                    let data = fill(16 * BLOCK, round.wrapping_add(t as u8));
                    raf.write(base, data.clone()).await.expect("write");
                    let read = raf.read(base, 16 * BLOCK).await.expect("read");
                    let differ = (0..16).find(|&b| read[b * 4096..(b + 1) * 4096] != data[b * 4096..(b + 1) * 4096]);
                    assert_eq!(
                        differ,
                        None,
                        "task {t} round {round}: block reads {:?}",
                        differ.map(|b| &read[b * 4096..b * 4096 + 8])
                    );
                    if round % 10 == 5 {
                        raf.trim(base, 4 * BLOCK).await.expect("trim");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    raf.close().await.expect("close");
    let raf = Raf::open(store.dyn_store(), "d", cfg).await.expect("reopen");
    for t in 0..8u64 {
        let data = raf.read(t * 16 * BLOCK, 16 * BLOCK).await.expect("read");
        assert_eq!(data, fill(16 * BLOCK, 39u8.wrapping_add(t as u8)));
    }
    assert_eq!(raf.stats().live_bytes, 128 * BLOCK);
}

#[tokio::test]
async fn changed_ranges_follow_guest_writes_and_trims_not_compaction_and_survive_reopening() {
    const MIB: u64 = 1024 * KIB;
    let store = Store::new(7, 1);
    let size = 8 * MIB;
    let raf = volume(&store, "d", size, config()).await;
    // Every range written, then every other piece again: the first round's segments are
    // half live, so compaction moves what is left of them.
    for (round, step) in [(0u8, 64 * KIB), (1, 128 * KIB)] {
        for at in (0..size).step_by(step as usize) {
            raf.write(at, fill(64 * KIB, round)).await.expect("write");
        }
    }
    let instant = raf.next_seq();
    assert!(raf.changed_since(instant).is_empty());
    // After the instant: a write inside range 2, a write across ranges 4 and 5, a trim of
    // range 7; then compaction moves blocks of every range.
    raf.write(2 * MIB + 8 * KIB, fill(4 * KIB, 9)).await.expect("write");
    raf.write(5 * MIB - 4 * KIB, fill(8 * KIB, 9)).await.expect("write");
    raf.trim(7 * MIB, MIB).await.expect("trim");
    let report = raf.compact().await.expect("compact");
    assert!(report.bytes_copied > 0, "{report:?}");
    assert_eq!(raf.changed_since(instant), vec![2, 4, 5, 7]);
    assert_eq!(raf.changed_since(0).len(), 8);

    // A crash (no close: replay from the last checkpoint and the log), then a clean close
    // and reopen (from the checkpoint alone): the same answer.
    raf.checkpoint().await.expect("checkpoint");
    raf.write(MIB, fill(4 * KIB, 10)).await.expect("write");
    drop(raf);
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen after a crash");
    assert_eq!(raf.changed_since(instant), vec![1, 2, 4, 5, 7]);
    raf.close().await.expect("close");
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen");
    assert_eq!(raf.changed_since(instant), vec![1, 2, 4, 5, 7]);
    raf.close().await.expect("close");
}
