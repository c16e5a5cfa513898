//! The system bucket (docs/snapshots.md, "The system bucket") on a real Pangu: made once and
//! found again, objects put, found, read and deleted through the in-process calls; no
//! request reaches it (it is private to an account without keys), and the calls refuse a
//! bucket that is not a system bucket.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use feitian_api::ObjectService;
use feitian_meta::bucket;
use feitian_meta::{MetaError, Store};
use feitian_oss::blobs::Blobs;
use feitian_oss::service::Oss;
use feitian_oss::system::{system_bucket_name, SYSTEM_ACCOUNT};

mod common;
use common::{region, NoKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_objects_are_stored_read_and_deleted_and_no_request_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let pangu = common::pangu(&store, dir.path()).await;
    let oss = Oss::new(store.clone(), Arc::new(NoKeys), region(), Blobs::new(pangu, store.clone()));

    let name = oss.ensure_system_bucket().await.unwrap();
    assert_eq!(name, system_bucket_name("cn-hangzhou"));
    // A second start finds it again.
    assert_eq!(oss.ensure_system_bucket().await.unwrap(), name);
    let system = store.account_by_name(SYSTEM_ACCOUNT).unwrap().expect("the system account");
    let b = store.read::<_, MetaError>(|tx| bucket::get_bucket(tx, &name)).unwrap().expect("the bucket");
    assert_eq!((b.account_id, b.acl.as_str()), (system.id, "private"));

    let big = Bytes::from((0..(1u32 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let small = Bytes::from_static(b"a small block");
    assert!(!oss.system_has(&name, "blocks/big").await.unwrap());
    oss.system_put(&name, "blocks/big", big.clone()).await.unwrap();
    oss.system_put(&name, "blocks/small", small.clone()).await.unwrap();
    // Idempotent: the same key again.
    oss.system_put(&name, "blocks/small", small.clone()).await.unwrap();
    assert!(oss.system_has(&name, "blocks/big").await.unwrap());
    assert_eq!(oss.system_get(&name, "blocks/big").await.unwrap(), Some(big));
    assert_eq!(oss.system_get(&name, "blocks/small").await.unwrap(), Some(small));
    assert_eq!(oss.system_get(&name, "blocks/none").await.unwrap(), None);

    // An anonymous request (no key is the system account's) is refused.
    let req = Request::builder()
        .method("GET")
        .uri(format!("/{name}/blocks/small"))
        .header("host", "oss-cn-hangzhou.aliyuncs.com")
        .body(Body::empty())
        .unwrap();
    let resp = oss.handle(req, String::new()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    assert!(oss.system_delete(&name, "blocks/small").await.unwrap());
    assert!(!oss.system_delete(&name, "blocks/small").await.unwrap());
    assert!(!oss.system_has(&name, "blocks/small").await.unwrap());
    assert!(oss.system_has(&name, "blocks/big").await.unwrap());

    // The calls are for system buckets only.
    store.create_account("user").unwrap();
    assert_eq!(oss.system_put("mine", "k", Bytes::from_static(b"x")).await.unwrap_err().status, 500);
    assert_eq!(oss.system_has("feitian-system-elsewhere", "k").await.unwrap_err().status, 500);
}
