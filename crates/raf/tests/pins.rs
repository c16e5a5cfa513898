//! Pins on the in-memory store (`docs/snapshots.md`, "Pins and compaction"): a pin reads as
//! the volume at its instant whatever the volume does next (writes, trims, compaction, a
//! crash), a clone's pin reads its parent's blocks, pins are idempotent, the ranges changed
//! since an earlier pin are exactly those written after it, and a released pin's space is
//! reclaimed by the next compaction.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use feitian_raf::{PinnedView, Raf, RafError};
use support::{config, Store};

const BLOCK: u64 = 4096;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn fill(len: u64, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect::<Vec<u8>>())
}

async fn volume(store: &Store, name: &str, size: u64) -> Raf {
    let s = store.dyn_store();
    s.create(name, size, None).await.expect("create");
    Raf::open(s, name, config()).await.expect("open")
}

async fn view(store: &Store, volume: &str, pin: &str) -> PinnedView {
    PinnedView::open(store.dyn_store(), volume, pin).await.expect("open the pin")
}

/// Writes `data` at `offset` in 64 KiB writes.
async fn write(raf: &Raf, offset: u64, data: &Bytes) {
    for at in (0..data.len() as u64).step_by(64 * KIB as usize) {
        let end = (at + 64 * KIB).min(data.len() as u64);
        raf.write(offset + at, data.slice(at as usize..end as usize)).await.expect("write");
    }
}

#[tokio::test]
async fn a_pin_reads_the_instant_while_the_volume_moves_on() {
    let store = Store::new(11, 1);
    let size = 4 * MIB;
    let raf = volume(&store, "d", size).await;
    let first = fill(2 * MIB, 1);
    write(&raf, 0, &first).await;
    let pin = raf.pin("s-1").await.expect("pin");
    assert_eq!((pin.name.as_str(), pin.size_bytes, pin.next_seq), ("s-1", size, raf.next_seq()));
    // The volume moves on: an overwrite, a trim, a write where nothing was, a resize.
    write(&raf, 64 * KIB, &fill(256 * KIB, 2)).await;
    raf.trim(MIB, 128 * KIB).await.expect("trim");
    write(&raf, 3 * MIB, &fill(MIB, 3)).await;
    raf.resize(8 * MIB).await.expect("resize");

    let v = view(&store, "d", "s-1").await;
    let mut expected = first.to_vec();
    expected.resize(size as usize, 0);
    assert_eq!(v.read(0, size).await.expect("read the pin"), Bytes::from(expected.clone()));
    // The pin is as big as the volume was.
    assert!(matches!(v.read(size, BLOCK).await, Err(RafError::OutOfRange { .. })));
    // The live volume has the new bytes.
    let mut now = expected;
    now[64 * KIB as usize..320 * KIB as usize].copy_from_slice(&fill(256 * KIB, 2));
    now[MIB as usize..(MIB + 128 * KIB) as usize].fill(0);
    now[3 * MIB as usize..].copy_from_slice(&fill(MIB, 3));
    assert_eq!(raf.read(0, size).await.expect("read"), Bytes::from(now));
    assert_eq!(raf.pins(), vec![pin]);
    raf.close().await.expect("close");
}

#[tokio::test]
async fn a_pin_of_a_clone_reads_its_parents_blocks() {
    let store = Store::new(12, 1);
    let s = store.dyn_store();
    let image = volume(&store, "img", 2 * MIB).await;
    let base = fill(2 * MIB, 7);
    write(&image, 0, &base).await;
    image.freeze().await.expect("freeze");
    s.create("d", 4 * MIB, Some("img")).await.expect("clone");
    let raf = Raf::open(s, "d", config()).await.expect("open the clone");
    // The clone writes one piece and trims another of its parent's.
    let own = fill(128 * KIB, 8);
    write(&raf, 512 * KIB, &own).await;
    raf.trim(MIB, 64 * KIB).await.expect("trim");
    raf.pin("s-1").await.expect("pin");
    // Then overwrites the parent's blocks everywhere.
    write(&raf, 0, &fill(2 * MIB, 9)).await;

    let v = view(&store, "d", "s-1").await;
    let mut expected = base.to_vec();
    expected[512 * KIB as usize..640 * KIB as usize].copy_from_slice(&own);
    expected[MIB as usize..(MIB + 64 * KIB) as usize].fill(0);
    expected.resize(4 * MIB as usize, 0);
    assert_eq!(v.read(0, 4 * MIB).await.expect("read the pin"), Bytes::from(expected));
    // Every range with data, the parent's included; since the start, only the clone's own.
    assert_eq!(v.ranges(None), vec![0, 1]);
    assert_eq!(v.ranges(Some(0)), vec![0, 1]);
    raf.close().await.expect("close");
}

#[tokio::test]
async fn compaction_keeps_what_a_pin_holds_and_reclaims_it_after_release() {
    let store = Store::new(13, 1);
    let size = MIB;
    let raf = volume(&store, "d", size).await;
    let pinned = fill(size, 1);
    write(&raf, 0, &pinned).await;
    let pin = raf.pin("s-1").await.expect("pin");
    let mut last = Bytes::new();
    for round in 2..8u8 {
        last = fill(size, round);
        write(&raf, 0, &last).await;
    }
    let report = raf.compact().await.expect("compact");
    assert!(!report.dropped.is_empty(), "segments only the overwrites filled are reclaimed");
    // The pinned blocks are dead to the index but kept: the log holds both copies.
    let held = raf.stats();
    assert_eq!(held.live_bytes, size);
    assert!(held.log_bytes >= 2 * size, "{held:?}");
    assert_eq!(view(&store, "d", "s-1").await.read(0, size).await.expect("read the pin"), pinned);
    assert_eq!(raf.read(0, size).await.expect("read"), last);

    raf.release_pin("s-1").await.expect("release");
    assert!(!store.0.has_file(pin.file), "the pin's file is deleted");
    assert!(raf.pins().is_empty());
    assert!(matches!(PinnedView::open(store.dyn_store(), "d", "s-1").await, Err(RafError::NoSuchPin { .. })));
    // Releasing again is no error.
    raf.release_pin("s-1").await.expect("release again");
    let report = raf.compact().await.expect("compact");
    assert!(!report.dropped.is_empty());
    let after = raf.stats();
    assert!(after.log_bytes < held.log_bytes - size / 2, "{after:?} after {held:?}");
    assert!(after.log_bytes < 2 * size, "{after:?}");
    assert_eq!(raf.read(0, size).await.expect("read"), last);
    raf.close().await.expect("close");
}

#[tokio::test]
async fn a_pin_survives_a_crash_and_holds_its_segments_in_the_next_writer() {
    let store = Store::new(14, 1);
    let size = MIB;
    let raf = volume(&store, "d", size).await;
    let pinned = fill(size, 1);
    write(&raf, 0, &pinned).await;
    let pin = raf.pin("s-1").await.expect("pin");
    for round in 2..5u8 {
        write(&raf, 0, &fill(size, round)).await;
    }
    // A crash: no close.
    drop(raf);
    let raf = Raf::open(store.dyn_store(), "d", config()).await.expect("reopen");
    assert_eq!(raf.pins(), vec![pin.clone()]);
    for round in 5..8u8 {
        write(&raf, 0, &fill(size, round)).await;
    }
    // The new writer compacts; what the pin holds, loaded at open, stays.
    raf.compact().await.expect("compact");
    assert_eq!(view(&store, "d", "s-1").await.read(0, size).await.expect("read the pin"), pinned);
    // Pinning the name again, in the new writer, answers the pin.
    assert_eq!(raf.pin("s-1").await.expect("pin again"), pin);
    assert_eq!(raf.read(0, size).await.expect("read"), fill(size, 7));
    raf.close().await.expect("close");
    // A view works with no writer at all.
    assert_eq!(view(&store, "d", "s-1").await.read(0, size).await.expect("read the pin"), pinned);
}

#[tokio::test]
async fn pinning_a_name_twice_pins_once() {
    let store = Store::new(15, 2);
    let raf = Arc::new(volume(&store, "d", MIB).await);
    write(&raf, 0, &fill(256 * KIB, 1)).await;
    let files = store.0.counters().files;
    // At once, too: one file more, the pin's (nothing else writes meanwhile).
    let (a, b) = tokio::join!(raf.pin("s-1"), raf.pin("s-1"));
    let (a, b) = (a.expect("pin"), b.expect("pin"));
    assert_eq!(a, b);
    assert_eq!(store.0.counters().files, files + 1);
    assert_eq!(raf.pin("s-1").await.expect("pin again"), a);
    assert_eq!(store.0.counters().files, files + 1);
    write(&raf, 0, &fill(256 * KIB, 2)).await;
    assert_eq!(raf.pin("s-1").await.expect("pin after writes"), a);
    assert_eq!(raf.pins(), vec![a]);
    assert_eq!(view(&store, "d", "s-1").await.read(0, 256 * KIB).await.expect("read"), fill(256 * KIB, 1));
    raf.close().await.expect("close");
}

#[tokio::test]
async fn ranges_since_an_earlier_pin_are_those_written_after_it() {
    let store = Store::new(16, 1);
    let raf = volume(&store, "d", 16 * MIB).await;
    for range in [0u64, 1, 5] {
        raf.write(range * MIB + 8 * KIB, fill(4 * KIB, range as u8)).await.expect("write");
    }
    let a = raf.pin("s-a").await.expect("pin a");
    for range in [2u64, 5, 9] {
        raf.write(range * MIB, fill(8 * KIB, 40 + range as u8)).await.expect("write");
    }
    raf.trim(12 * MIB, 4 * KIB).await.expect("trim");
    // A compaction moves blocks without changing them: no range changes by it.
    raf.compact().await.expect("compact");
    let b = raf.pin("s-b").await.expect("pin b");
    raf.write(3 * MIB, fill(4 * KIB, 99)).await.expect("a write after the pin");
    let vb = view(&store, "d", "s-b").await;
    assert_eq!(vb.ranges(Some(a.next_seq)), vec![2, 5, 9, 12]);
    assert_eq!(vb.ranges(Some(b.next_seq)), Vec::<u64>::new());
    // Every range holding data (the trimmed one holds none).
    assert_eq!(vb.ranges(None), vec![0, 1, 2, 5, 9]);
    let va = view(&store, "d", "s-a").await;
    assert_eq!(va.ranges(None), vec![0, 1, 5]);
    assert_eq!(va.ranges(Some(0)), vec![0, 1, 5]);
    raf.close().await.expect("close");
}

#[tokio::test]
async fn a_closed_volume_takes_no_pin() {
    let store = Store::new(17, 0);
    let raf = volume(&store, "d", MIB).await;
    raf.close().await.expect("close");
    assert!(matches!(raf.pin("s-1").await, Err(RafError::Closed)));
    assert!(matches!(PinnedView::open(store.dyn_store(), "d", "s-1").await, Err(RafError::NoSuchPin { .. })));
}
