//! What the disk benchmarks share: a Pangu master (its namespace in a store under a
//! directory) and one chunkserver beside it, as `feitian up` starts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use feitian_meta::Store;
use feitian_pangu::chunkserver::DEFAULT_FLOW;
use feitian_pangu::master::{self, Master, MasterConfig};
use feitian_pangu::node::{self, NodeConfig};
use feitian_pangu::serve::DEFAULT_LIMITS;

/// Starts the master and its chunkserver (replicas under `dir/chunks`); their tasks end with
/// the runtime. Returns the master and the chunkserver's directory.
pub async fn start(dir: &Path) -> anyhow::Result<(Arc<Master>, PathBuf)> {
    let chunks = dir.join("chunks");
    std::fs::create_dir_all(&chunks)?;
    let store = Store::open(&dir.join("meta.db"))?;
    let master = Master::open(store, MasterConfig::new(1))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let master_addr = listener.local_addr()?.to_string();
    let never = std::future::pending::<()>;
    tokio::spawn(feitian_pangu::serve::serve(listener, master::router(master.clone()), DEFAULT_LIMITS, never()));
    tokio::spawn(master.clone().run(never()));
    let node = NodeConfig {
        master: master_addr,
        dir: chunks.clone(),
        rack: "local".into(),
        listen: "127.0.0.1:0".parse()?,
        advertise: None,
        capacity_bytes: 1 << 40,
        flow: DEFAULT_FLOW,
        heartbeat: Duration::from_secs(1),
        scrub: None,
        secret: master.config().secret.clone(),
    };
    node::start_beside(&master, node, never()).await?;
    Ok((master, chunks))
}
