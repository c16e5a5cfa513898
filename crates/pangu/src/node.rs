//! A chunkserver node: the chunkserver service plus its life with a master. It registers
//! (keeping the id the master gave it in its data directory, in `server-id`), serves, and
//! heartbeats its full report every interval, deleting the replicas the master's answer
//! names. Used by `feitian chunkserver` and, in-process, by `feitian up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use crate::chunk::ChunkId;
use crate::chunkserver::{ChunkServer, ChunkServerConfig};
use crate::flow::FlowConfig;
use crate::master::{HeartbeatReply, HeartbeatRequest, RegisterReply, RegisterRequest};
use crate::placement::ServerId;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The master's `host:port`.
    pub master: String,
    pub dir: PathBuf,
    pub rack: String,
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The `host:port` others reach it at; the listening address when `None`.
    pub advertise: Option<String>,
    pub capacity_bytes: u64,
    pub flow: FlowConfig,
    pub heartbeat: Duration,
    /// How often every replica is re-verified (the scrub); `None`: never (reads still
    /// verify what they touch).
    pub scrub: Option<Duration>,
}

/// A started node.
pub struct Node {
    pub server: ChunkServer,
    pub addr: String,
    pub server_id: ServerId,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the chunk directory {}: {source}", dir.display())]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Open(#[from] crate::chunkserver::ChunkServerError),
}

/// Binds, registers (retrying until the master answers), opens the replicas, and serves
/// and heartbeats until `shutdown` resolves.
pub async fn start(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Node, NodeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen { addr: config.listen, source })?;
    let local = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.listen, source })?;
    let addr = config.advertise.clone().unwrap_or_else(|| local.to_string());
    std::fs::create_dir_all(&config.dir).map_err(|source| NodeError::Dir { dir: config.dir.clone(), source })?;
    let id_file = config.dir.join("server-id");
    let known = std::fs::read_to_string(&id_file).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let master = MasterLink::new(&config.master);
    let server_id = master.register(known, &addr, &config.rack).await;
    if known != Some(server_id) {
        write_id(&id_file, server_id).map_err(|source| NodeError::Dir { dir: config.dir.clone(), source })?;
    }
    let cs_config = ChunkServerConfig {
        dir: config.dir.clone(),
        server_id: ServerId(server_id),
        rack: config.rack.clone(),
        capacity_bytes: config.capacity_bytes,
        flow: config.flow,
    };
    let server = tokio::task::spawn_blocking(move || ChunkServer::open(cs_config))
        .await
        .map_err(|e| NodeError::Dir { dir: config.dir.clone(), source: std::io::Error::other(e) })??;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut serve_stop = stop_rx.clone();
    tokio::spawn(server.clone().serve_until(listener, async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    }));
    info!(server = server_id, %addr, rack = %config.rack, master = %config.master, "chunkserver serving");
    let beat =
        Heartbeat { master, server: server.clone(), addr: addr.clone(), rack: config.rack.clone(), id: server_id };
    if let Some(every) = config.scrub {
        tokio::spawn(scrub(server.clone(), every, stop_rx.clone()));
    }
    tokio::spawn(beat.run(config.heartbeat, stop_rx));
    Ok(Node { server, addr, server_id: ServerId(server_id) })
}

async fn scrub(server: ChunkServer, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let s = server.clone();
        if let Ok(found) = tokio::task::spawn_blocking(move || s.scrub()).await {
            for chunk in found {
                warn!(chunk = %chunk, "the scrub found a corrupt replica; the master will have it repaired");
            }
        }
    }
}

fn write_id(path: &std::path::Path, id: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

struct Heartbeat {
    master: MasterLink,
    server: ChunkServer,
    addr: String,
    rack: String,
    id: u64,
}

impl Heartbeat {
    async fn run(mut self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let server = self.server.clone();
            let Ok((status, chunks, corrupt)) = tokio::task::spawn_blocking(move || server.report()).await else {
                continue;
            };
            let req = HeartbeatRequest { server_id: self.id, addr: self.addr.clone(), status, chunks, corrupt };
            match self.master.post::<_, HeartbeatReply>("/pangu/v1/heartbeat", &req).await {
                Ok(reply) => self.delete(reply.delete).await,
                Err(Failure::Status(404)) => {
                    // The master lost track of this server (its namespace was reset, or it
                    // saw another address): register again under the same id if it can.
                    warn!(server = self.id, "the master does not know this chunkserver; registering again");
                    self.id = self.master.register(Some(self.id), &self.addr, &self.rack).await;
                }
                Err(e) => warn!(server = self.id, master = %self.master.addr, error = %e, "heartbeat failed"),
            }
        }
    }

    async fn delete(&self, ids: Vec<String>) {
        for id in ids {
            let Ok(chunk) = id.parse::<ChunkId>() else { continue };
            let server = self.server.clone();
            match tokio::task::spawn_blocking(move || server.delete_replica(chunk)).await {
                Ok(Ok(())) => info!(chunk = %chunk, "deleted a replica the master no longer wants"),
                Ok(Err(e)) => warn!(chunk = %chunk, error = %e, "cannot delete a replica"),
                Err(_) => {}
            }
        }
    }
}

#[derive(Debug)]
enum Failure {
    Status(u16),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "the master answered HTTP {s}"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

struct MasterLink {
    addr: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl MasterLink {
    fn new(addr: &str) -> MasterLink {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        MasterLink { addr: addr.to_owned(), http: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// Registers, retrying every second until the master answers. A stored id the master
    /// does not know (a fresh master) is replaced by a new one.
    async fn register(&self, known: Option<u64>, addr: &str, rack: &str) -> u64 {
        let mut server_id = known;
        let mut warned = false;
        loop {
            let req = RegisterRequest { server_id, addr: addr.to_owned(), rack: rack.to_owned() };
            match self.post::<_, RegisterReply>("/pangu/v1/register", &req).await {
                Ok(reply) => return reply.server_id,
                Err(Failure::Status(404)) if server_id.is_some() => {
                    warn!(old = ?server_id, "the master does not know this chunkserver's id; registering as a new server (its old replicas will be deleted as unknown)");
                    server_id = None;
                }
                Err(e) => {
                    if !warned {
                        warn!(master = %self.addr, error = %e, "cannot reach the pangu master yet; retrying every second");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn post<T: Serialize, R: DeserializeOwned>(&self, path: &str, body: &T) -> Result<R, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure::Other(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Other(e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| Failure::Other(e.to_string()))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(|e| Failure::Other(e.to_string()))?.to_bytes();
            if !status.is_success() {
                return Err(Failure::Status(status.as_u16()));
            }
            serde_json::from_slice(&bytes).map_err(|e| Failure::Other(e.to_string()))
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| Err(Failure::Other("no answer within 10 s".to_owned())))
    }
}
