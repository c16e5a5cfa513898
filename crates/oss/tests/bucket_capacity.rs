//! A bucket's storage capacity (`PUT ?qos`) is enforced when a write commits, through the
//! whole service on a real Pangu: a write that would take the bucket beyond it answers
//! `InsufficientStorageSpace` (403), leaves no object, and its bytes are reclaimed; of two
//! uploads racing for the last room, exactly one gets it.
//!
//! The capacity's unit is the GB, too big to fill with real bytes in a test. So most of it
//! is taken by an object recorded through the store's own API whose size is set and whose
//! bytes were never written (nothing reads it); the writes that cross the limit are real.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use feitian_api::ObjectService;
use feitian_meta::bucket::{self, Bucket, CAPACITY_UNIT};
use feitian_meta::object::{self, Object, ObjectHeaders};
use feitian_meta::{MetaError, Store};
use feitian_oss::blobs::{Blobs, Timing};
use feitian_oss::service::Oss;
use feitian_pangu::client::Pangu;

mod common;
use common::{region, NoKeys};

const MIB: u64 = 1 << 20;

fn request(method: &str, key: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("/full/{key}"))
        .header("host", "oss-cn-hangzhou.aliyuncs.com")
        .header("content-length", body.len().to_string())
        .body(Body::from(body))
        .unwrap()
}

async fn send(oss: &Arc<Oss>, req: Request<Body>) -> (StatusCode, String) {
    let resp = oss.handle(req, String::new()).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn put(oss: &Arc<Oss>, key: &str, len: u64) -> (StatusCode, String) {
    send(oss, request("PUT", key, vec![b'x'; len as usize])).await
}

async fn files(pangu: &Pangu) -> BTreeSet<u64> {
    pangu.files().await.unwrap().into_iter().map(|f| f.0).collect()
}

fn used(store: &Store) -> u64 {
    store.read::<_, MetaError>(|tx| bucket::used_bytes(tx, "full")).unwrap()
}

fn exists(store: &Store, key: &str) -> bool {
    store.read::<_, MetaError>(|tx| object::get_object(tx, "full", key)).unwrap().is_some()
}

fn refused(answer: &(StatusCode, String)) {
    assert_eq!(answer.0, StatusCode::FORBIDDEN, "{}", answer.1);
    assert!(answer.1.contains("<Code>InsufficientStorageSpace</Code>"), "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_capacity_are_refused_at_commit_and_their_bytes_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let pangu = common::pangu(&store, dir.path()).await;
    let timing = Timing { grace: Duration::ZERO, settle: Duration::ZERO, every: Duration::from_millis(50) };
    let blobs = Blobs::with_timing(pangu.clone(), store.clone(), timing);
    let oss = Oss::new(store.clone(), Arc::new(NoKeys), region(), blobs);
    let a = store.create_account("a").unwrap();
    let b = Bucket {
        name: "full".into(),
        account_id: a.id,
        region_id: "cn-hangzhou".into(),
        acl: "public-read-write".into(),
        storage_class: "Standard".into(),
        created_at: "2026-11-22T00:00:00Z".into(),
        generation: 0,
    };
    // 1 GB, of which all but 5 MiB is taken by a recorded object.
    let placeholder = Object {
        bucket: "full".into(),
        key: "placeholder".into(),
        size: CAPACITY_UNIT - 5 * MIB,
        etag: "\"P\"".into(),
        crc64: 0,
        object_type: "Normal".into(),
        headers: ObjectHeaders { content_type: "x".into(), user_meta: "{}".into(), ..Default::default() },
        acl: "default".into(),
        storage_class: "Standard".into(),
        last_modified_ms: 0,
    };
    store
        .write::<_, MetaError>(|tx| {
            bucket::insert_bucket(tx, &b)?;
            bucket::set_storage_capacity(tx, "full", 1)?;
            object::put_object(tx, &placeholder, &[])?;
            Ok(())
        })
        .unwrap();

    // 2 MiB fits; then 4 MiB does not (3 MiB are left), and leaves nothing behind.
    let ok = put(&oss, "two", 2 * MIB).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let kept = files(&pangu).await;
    refused(&put(&oss, "four", 4 * MIB).await);
    assert!(!exists(&store, "four"));
    assert_eq!(used(&store), CAPACITY_UNIT - 3 * MIB);

    // Two 2 MiB uploads race for the last 3 MiB: exactly one commits.
    let (x, y) = tokio::join!(put(&oss, "x", 2 * MIB), put(&oss, "y", 2 * MIB));
    let won: Vec<_> = [&x, &y].into_iter().filter(|r| r.0 == StatusCode::OK).collect();
    assert_eq!(won.len(), 1, "{x:?} {y:?}");
    for r in [&x, &y].into_iter().filter(|r| r.0 != StatusCode::OK) {
        refused(r);
    }
    assert_eq!(exists(&store, "x") as u8 + exists(&store, "y") as u8, 1);
    assert_eq!(used(&store), CAPACITY_UNIT - MIB);

    // An append and a multipart part are held to the same limit.
    let append = send(&oss, request("POST", "log?append&position=0", vec![b'a'; 2 * MIB as usize])).await;
    refused(&append);
    let init = send(&oss, request("POST", "mp?uploads", Vec::new())).await;
    assert_eq!(init.0, StatusCode::OK, "{}", init.1);
    let id = init.1.split("<UploadId>").nth(1).and_then(|t| t.split("</UploadId>").next()).unwrap().to_owned();
    let part =
        send(&oss, request("PUT", &format!("mp?partNumber=1&uploadId={id}"), vec![b'p'; 2 * MIB as usize])).await;
    refused(&part);
    // Exactly up to the capacity passes.
    let last = put(&oss, "last", MIB).await;
    assert_eq!(last.0, StatusCode::OK, "{}", last.1);
    assert_eq!(used(&store), CAPACITY_UNIT);
    refused(&put(&oss, "one-byte", 1).await);
    let empty = put(&oss, "empty", 0).await;
    assert_eq!(empty.0, StatusCode::OK, "an empty object takes no room: {}", empty.1);

    // A delete makes room again.
    let (status, text) = send(&oss, request("DELETE", "two", Vec::new())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let again = put(&oss, "four", 2 * MIB).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    // After this mix of accepted and refused writes, the counter is what a full SUM says.
    let summed: i64 = store
        .read::<_, MetaError>(|tx| {
            Ok(tx.query_row(
                "SELECT (SELECT COALESCE(SUM(size), 0) FROM oss_objects WHERE bucket = 'full') + \
                 (SELECT COALESCE(SUM(p.size), 0) FROM oss_parts p JOIN oss_uploads u ON u.upload_id = p.upload_id \
                  WHERE u.bucket = 'full')",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(used(&store), summed as u64);
    assert_eq!(used(&store), CAPACITY_UNIT);

    // Every refused write's file is reclaimed: eventually no file is left that neither
    // existed before the refusals nor holds an object's bytes, but for the one pack file
    // that small bodies (the refused byte) share, kept while it is open (blobs.rs). Four
    // refused writes of MiBs had files of their own.
    for _ in 0..200 {
        let referenced = referenced_files(&store);
        let now = files(&pangu).await;
        if now.iter().filter(|f| !kept.contains(f) && !referenced.contains(f)).count() <= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "refused writes' bytes were never reclaimed: {:?} beyond {:?} and {:?}",
        files(&pangu).await,
        kept,
        referenced_files(&store)
    );
}

/// The Pangu files some object's or part's extent points into.
fn referenced_files(store: &Store) -> BTreeSet<u64> {
    store
        .read::<_, MetaError>(|tx| {
            let mut st = tx.prepare("SELECT DISTINCT file FROM oss_extents")?;
            let files = st.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(files.into_iter().map(|f| f as u64).collect())
        })
        .unwrap()
}
