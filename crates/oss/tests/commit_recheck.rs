//! A write's permission is asked again when it commits (`grant.rs`), through the whole
//! service on a real Pangu: a PutObject whose body is still streaming when its bucket is
//! deleted and the name created again by another account answers `NoSuchBucket`, writes no
//! object into the new bucket, and its bytes are reclaimed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use feitian_api::ObjectService;
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::object;
use feitian_meta::{MetaError, Store};
use feitian_oss::blobs::{Blobs, Timing};
use feitian_oss::service::Oss;
use feitian_pangu::client::Pangu;
use tokio::sync::{mpsc, oneshot};

mod common;
use common::{region, NoKeys};

fn public_bucket(account_id: u64) -> Bucket {
    Bucket {
        name: "race".into(),
        account_id,
        region_id: "cn-hangzhou".into(),
        acl: "public-read-write".into(),
        storage_class: "Standard".into(),
        created_at: "2026-11-22T00:00:00Z".into(),
        generation: 0,
    }
}

/// A request body fed by hand: `polled` fires when the service first reads it (it has then
/// authorized the request), and the bytes sent on the channel follow.
fn held_body() -> (Body, mpsc::Sender<Bytes>, oneshot::Receiver<()>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let (polled_tx, polled) = oneshot::channel();
    let mut polled_tx = Some(polled_tx);
    let stream = futures_util::stream::poll_fn(move |cx| {
        if let Some(t) = polled_tx.take() {
            let _ = t.send(());
        }
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::io::Error>))
    });
    (Body::from_stream(stream), tx, polled)
}

const LEN: usize = 4 << 20;

fn put(key: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method("PUT")
        .uri(format!("/race/{key}"))
        .header("host", "oss-cn-hangzhou.aliyuncs.com")
        .header("content-length", LEN.to_string())
        .body(body)
        .unwrap()
}

async fn files(pangu: &Pangu) -> BTreeSet<u64> {
    pangu.files().await.unwrap().into_iter().map(|f| f.0).collect()
}

/// Streams a 4 MiB PUT of `key`, running `meanwhile` after the service authorized it and
/// received its first mebibyte; returns the answer's status and body.
async fn put_while<F: FnOnce()>(oss: &Arc<Oss>, key: &str, meanwhile: F) -> (StatusCode, String) {
    let (body, tx, polled) = held_body();
    let answer = tokio::spawn(oss.handle(put(key, body), String::new()));
    polled.await.unwrap();
    tx.send(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    meanwhile();
    for _ in 1..4 {
        tx.send(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
    }
    drop(tx);
    let resp = answer.await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_does_not_commit_into_a_bucket_created_again_by_another_account() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let pangu = common::pangu(&store, dir.path()).await;
    let timing = Timing { grace: Duration::ZERO, settle: Duration::ZERO, every: Duration::from_millis(50) };
    let blobs = Blobs::with_timing(pangu.clone(), store.clone(), timing);
    let oss = Oss::new(store.clone(), Arc::new(NoKeys), region(), blobs);
    let (a, b) = (store.create_account("a").unwrap(), store.create_account("b").unwrap());
    store.write::<_, MetaError>(|tx| bucket::insert_bucket(tx, &public_bucket(a.id)).map(drop)).unwrap();

    // The control: held the same way, nothing changed meanwhile, it commits.
    let (status, text) = put_while(&oss, "control", || {}).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let kept = files(&pangu).await;

    // The bucket deleted (it is empty but for the control, which its owner deletes first)
    // and its name taken by b, with the same public-read-write ACL: only the bucket's
    // identity tells them apart.
    let swap = || {
        store
            .write::<_, MetaError>(|tx| {
                object::delete_object(tx, "race", "control")?;
                bucket::delete_bucket(tx, "race")?;
                bucket::insert_bucket(tx, &public_bucket(b.id))?;
                Ok(())
            })
            .unwrap();
    };
    let (status, text) = put_while(&oss, "planted", swap).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    for part in ["<Code>NoSuchBucket</Code>", "<RequestId>", "<HostId>", "<Message>"] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let (now_owner, planted) = store
        .read::<_, MetaError>(|tx| {
            Ok((bucket::get_bucket(tx, "race")?.unwrap().account_id, object::get_object(tx, "race", "planted")?))
        })
        .unwrap();
    assert_eq!(now_owner, b.id);
    assert!(planted.is_none(), "the upload committed into the new owner's bucket");

    // The refused upload's file is reclaimed (the control's went with its object): no file
    // is left that the control had not.
    for _ in 0..200 {
        if files(&pangu).await.is_subset(&kept) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the refused upload's bytes were never reclaimed: {:?} beyond {:?}", files(&pangu).await, kept);
}
