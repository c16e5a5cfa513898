//! Object bytes on a real Pangu (a master and one chunkserver in this process): what is
//! reclaimed and, above all, what never is.

use std::time::Duration;

use axum::body::{Body, Bytes};
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::extent::Extent;
use feitian_meta::object::{self, Object, ObjectHeaders};
use feitian_meta::{MetaError, Store};
use feitian_oss::blobs::{Blobs, Timing};
use feitian_pangu::master::FileId;
use futures_util::StreamExt;

mod common;
use common::pangu;

fn bytes(len: usize, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

/// Makes an object that references `extents`.
fn reference(store: &Store, key: &str, extents: &[Extent]) {
    let account = store.create_account(&format!("a-{key}")).unwrap();
    store
        .write(|tx| {
            let bucket = format!("b-{key}");
            bucket::insert_bucket(
                tx,
                &Bucket {
                    name: bucket.clone(),
                    account_id: account.id,
                    region_id: "cn-hangzhou".into(),
                    acl: "private".into(),
                    storage_class: "Standard".into(),
                    created_at: "2026-11-22T00:00:00Z".into(),
                    generation: 0,
                },
            )?;
            let o = Object {
                bucket,
                key: key.into(),
                size: extents.iter().map(|e| e.len).sum(),
                etag: "\"X\"".into(),
                crc64: 0,
                object_type: "Normal".into(),
                headers: ObjectHeaders { content_type: "application/octet-stream".into(), ..Default::default() },
                acl: "default".into(),
                storage_class: "Standard".into(),
                last_modified_ms: 0,
            };
            object::put_object(tx, &o, extents)?;
            Ok::<_, MetaError>(())
        })
        .unwrap();
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_unreferenced_unread_files_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let pangu = pangu(&store, dir.path()).await;
    let timing = Timing { grace: Duration::ZERO, settle: Duration::ZERO, every: Duration::from_millis(50) };
    let blobs = Blobs::with_timing(pangu.clone(), store.clone(), timing);
    let has = |file: u64| {
        let pangu = pangu.clone();
        async move { pangu.files().await.unwrap().contains(&FileId(file)) }
    };

    let (a, b) = (bytes(1 << 20, 1), bytes(1 << 20, 2));
    let wa = blobs.write_bytes(a.clone()).await.unwrap();
    let wb = blobs.write_bytes(b.clone()).await.unwrap();
    let small = blobs.write_bytes(bytes(100, 3)).await.unwrap();
    assert_eq!((wa.len, small.len), (1 << 20, 100));
    assert_eq!(blobs.read_all(&wb.extents, 0..wb.len).await.unwrap(), b);
    let (fa, fb, fp) = (wa.extents[0].file, wb.extents[0].file, small.extents[0].file);
    assert!(fa != fb && fp != fa && fp != fb, "large bodies get files of their own, small ones the pack");

    // b is referenced by an object: releasing it frees nothing; a is not: it goes.
    reference(&store, "kept", &wb.extents);
    blobs.release(wa.extents.clone());
    blobs.release(wb.extents.clone());
    wait_until("the unreferenced file to go", || async { !has(fa).await }).await;
    // The pack file in use is never reclaimed, even with nothing in it referenced.
    blobs.release(small.extents.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(has(fb).await && has(fp).await);
    assert_eq!(blobs.read_all(&wb.extents, 0..wb.len).await.unwrap(), b);

    // A file being read is not reclaimed until the read ends.
    let c = bytes(3 << 20, 4);
    let wc = blobs.write_bytes(c.clone()).await.unwrap();
    let fc = wc.extents[0].file;
    let mut body = blobs.read(wc.extents.clone(), 0..wc.len).into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    blobs.release(wc.extents.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(has(fc).await, "a file was reclaimed under a reader");
    let mut got = first.to_vec();
    while let Some(piece) = body.next().await {
        got.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(got, c);
    drop(body);
    wait_until("the read file to go once read", || async { !has(fc).await }).await;

    // At start, the sweep deletes files no object references (writes a crash cut off).
    let orphan = blobs.write_bytes(bytes(1 << 20, 5)).await.unwrap().extents[0].file;
    let fresh = Blobs::new(pangu.clone(), store.clone());
    assert!(fresh.sweep().await.unwrap() >= 1);
    assert!(!has(orphan).await && has(fb).await);
    assert_eq!(fresh.read_all(&wb.extents, 0..wb.len).await.unwrap(), b);
    // An empty body needs no file at all.
    assert!(blobs.write(Body::empty(), Some(0), 10).await.unwrap().extents.is_empty());
}
