//! What the OSS integration tests share: a real Pangu in this process.

use std::time::Duration;

use feitian_api::{ApiError, Credential, KeyStore};
use feitian_meta::Store;
use feitian_pangu::chunkserver::DEFAULT_FLOW;
use feitian_pangu::client::Pangu;
use feitian_pangu::master::{self, Master, MasterConfig};
use feitian_pangu::node::{self, NodeConfig};
use feitian_region::Region;

/// A master and one chunkserver (files under `dir`), the master's namespace in `store`.
pub async fn pangu(store: &Store, dir: &std::path::Path) -> Pangu {
    let mut config = MasterConfig::new(1);
    config.tick = Duration::from_millis(100);
    let master = Master::open(store.clone(), config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = master::router(master.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::spawn(master.clone().run(std::future::pending()));
    let _node = node::start_beside(
        &master,
        NodeConfig {
            master: addr,
            dir: dir.to_path_buf(),
            rack: "r".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            capacity_bytes: 1 << 32,
            flow: DEFAULT_FLOW,
            heartbeat: Duration::from_millis(100),
            scrub: None,
            secret: master.config().secret.clone(),
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    Pangu::in_process(master)
}

/// No keys: requests are anonymous (the tests' buckets are public-read-write).
#[allow(dead_code)] // not every test file uses it
pub struct NoKeys;
impl KeyStore for NoKeys {
    fn lookup(&self, _: &str) -> Result<Option<Credential>, ApiError> {
        Ok(None)
    }
}

/// The region the tests' OSS serves.
#[allow(dead_code)]
pub fn region() -> Region {
    Region {
        id: "cn-hangzhou".into(),
        local_name: "华东1（杭州）".into(),
        english_name: "China (Hangzhou)".into(),
        id_code: "bp".into(),
        zones: Vec::new(),
    }
}
