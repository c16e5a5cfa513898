//! A chunkserver node: the chunkserver service plus its life with a master. It registers
//! (keeping the id the master gave it in its data directory, in `server-id`, and its identity
//! token beside it, in `server-token`), serves, and heartbeats its full report every
//! interval, deleting the replicas the master's answer names. Used by `feitian chunkserver`
//! and, in-process, by `feitian up`.
//!
//! Every request to the master is signed ([`crate::auth`]): the first registration with the
//! cluster secret, everything after it (a registration under its id, heartbeats) with the
//! server's own key, made of its token and the cluster secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use crate::auth::keyfile::{self, KeyFileError};
use crate::auth::layer::sha256_hex;
use crate::auth::{Credentials, Keyring, RequestFacts, ServerToken, AUTHORIZATION, SHA256_HEADER};
use crate::chunk::ChunkId;
use crate::chunkserver::{ChunkServer, ChunkServerConfig};
use crate::flow::FlowConfig;
use crate::master::{HeartbeatReply, HeartbeatRequest, RegisterReply, RegisterRequest};
use crate::placement::ServerId;

/// The file beside `server-id` that holds the server's token.
pub const TOKEN_FILE: &str = "server-token";
/// The file that holds the id the master gave the server.
pub const ID_FILE: &str = "server-id";

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
    /// The cluster secret (the master's `DATA_DIR/pangu/cluster.key`).
    pub secret: Keyring,
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
    #[error(
        "listening on {0} (every address), the chunkserver needs an address others reach it at: --advertise HOST:PORT"
    )]
    NoAdvertise(SocketAddr),
    #[error("the master refused this chunkserver's registration (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error(transparent)]
    Key(#[from] KeyFileError),
}

/// Starts a chunkserver in the master's own process ([`start`]) and attaches it to the
/// master for in-process appends and reads (no loopback HTTP on the data path), then waits
/// (at most a second) for its first heartbeat, so that the first write finds a live server.
pub async fn start_beside(
    master: &std::sync::Arc<crate::master::Master>,
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Node, NodeError> {
    let node = start(config, shutdown).await?;
    master.attach_local(&node.addr, node.server.clone());
    for _ in 0..50 {
        if master.status().servers.iter().any(|s| s.live && s.addr == node.addr) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(node)
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
    if config.advertise.is_none() && local.ip().is_unspecified() {
        return Err(NodeError::NoAdvertise(local));
    }
    let addr = config.advertise.clone().unwrap_or_else(|| local.to_string());
    std::fs::create_dir_all(&config.dir).map_err(|source| NodeError::Dir { dir: config.dir.clone(), source })?;
    let known = read_identity(&config.dir)?;
    let master = MasterLink::new(&config.master, config.secret.clone());
    let identity = master.register(known.clone(), &addr, &config.rack).await?;
    if known.as_ref() != Some(&identity) {
        save_identity(&config.dir, &identity)?;
    }
    let server_id = identity.id.0;
    let cs_config = ChunkServerConfig {
        dir: config.dir.clone(),
        server_id: identity.id,
        rack: config.rack.clone(),
        capacity_bytes: config.capacity_bytes,
        flow: config.flow,
        secret: config.secret.clone(),
        token: identity.token.clone(),
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
    let beat = Heartbeat {
        master,
        server: server.clone(),
        addr: addr.clone(),
        rack: config.rack.clone(),
        dir: config.dir.clone(),
        identity,
    };
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

/// Who this server is to the master: its id and the token that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: ServerId,
    pub token: ServerToken,
}

/// The identity kept in `dir`, if any. An id without a token (kept before tokens existed)
/// proves nothing: the server registers as a new one (its replicas are then deleted as
/// unknown, and re-replicated from the others'), unless `feitian up` gave its embedded
/// chunkserver the token first.
pub fn read_identity(dir: &Path) -> Result<Option<Identity>, NodeError> {
    let id = std::fs::read_to_string(dir.join(ID_FILE)).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let Some(id) = id else { return Ok(None) };
    match keyfile::read_token(&dir.join(TOKEN_FILE))? {
        Some(token) => Ok(Some(Identity { id: ServerId(id), token })),
        None => {
            warn!(server = id, dir = %dir.display(), "this chunkserver has an id but no token to prove it; registering as a new server");
            Ok(None)
        }
    }
}

/// Keeps the identity in `dir`: the token first, so that an id on disk always has its
/// token.
pub fn save_identity(dir: &Path, identity: &Identity) -> Result<(), NodeError> {
    keyfile::write_token(&dir.join(TOKEN_FILE), &identity.token)?;
    write_id(&dir.join(ID_FILE), identity.id.0).map_err(|source| NodeError::Dir { dir: dir.to_owned(), source })
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
    dir: PathBuf,
    identity: Identity,
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
            let id = self.identity.id;
            let req = HeartbeatRequest { server_id: id.0, addr: self.addr.clone(), status, chunks, corrupt };
            let credentials = self.master.as_server(&self.identity);
            match self.master.post::<_, HeartbeatReply>("/pangu/v1/heartbeat", &req, &credentials).await {
                Ok(reply) => self.delete(reply.delete).await,
                Err(Failure::Status(404, _)) => {
                    // The master lost track of this server (its namespace was reset, or it
                    // saw another address): register again under the same id if it can.
                    warn!(server = %id, "the master does not know this chunkserver; registering again");
                    self.register_again().await;
                }
                Err(e) => warn!(server = %id, master = %self.master.addr, error = %e, "heartbeat failed"),
            }
        }
    }

    async fn register_again(&mut self) {
        let identity = match self.master.register(Some(self.identity.clone()), &self.addr, &self.rack).await {
            Ok(identity) => identity,
            Err(e) => return warn!(server = %self.identity.id, error = %e, "cannot register again"),
        };
        if identity != self.identity {
            if let Err(e) = save_identity(&self.dir, &identity) {
                warn!(server = %identity.id, error = %e, "cannot keep the new identity");
            }
            self.server.set_identity(identity.id, &identity.token);
            self.identity = identity;
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
    /// The master answered with this status and message.
    Status(u16, String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, message) => write!(f, "the master answered HTTP {s}: {message}"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

struct MasterLink {
    addr: String,
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Keyring,
}

impl MasterLink {
    fn new(addr: &str, secret: Keyring) -> MasterLink {
        MasterLink { addr: addr.to_owned(), http: crate::chunk_client::http_client(), secret }
    }

    fn as_server(&self, identity: &Identity) -> Credentials {
        Credentials::server(identity.id, &identity.token, &self.secret)
    }

    /// Registers, retrying every second until the master answers: under `known` (signed
    /// with its key) if given, else as a new server (signed with the cluster secret), which
    /// gets an id and a token. A known id the master does not know (a fresh master) is
    /// replaced by a new one. A refusal (a wrong secret or token, or a clock too far off) is
    /// an error: retrying would not change it.
    async fn register(&self, known: Option<Identity>, addr: &str, rack: &str) -> Result<Identity, NodeError> {
        let mut claim = known;
        let mut warned = false;
        loop {
            let req = RegisterRequest {
                server_id: claim.as_ref().map(|i| i.id.0),
                addr: addr.to_owned(),
                rack: rack.to_owned(),
            };
            let credentials = match &claim {
                Some(identity) => self.as_server(identity),
                None => Credentials::cluster(&self.secret),
            };
            match self.post::<_, RegisterReply>("/pangu/v1/register", &req, &credentials).await {
                Ok(reply) => {
                    let token = match (reply.token, &claim) {
                        (Some(hex), _) => ServerToken::from_hex(&hex).map_err(|e| NodeError::Refused {
                            status: 200,
                            message: format!("the master's token is unusable: {e}"),
                        })?,
                        (None, Some(identity)) => identity.token.clone(),
                        (None, None) => {
                            return Err(NodeError::Refused {
                                status: 200,
                                message: "the master gave a new server no token".to_owned(),
                            })
                        }
                    };
                    return Ok(Identity { id: ServerId(reply.server_id), token });
                }
                Err(Failure::Status(404, _)) if claim.is_some() => {
                    warn!(old = ?claim.as_ref().map(|i| i.id.0), "the master does not know this chunkserver's id; registering as a new server (its old replicas will be deleted as unknown)");
                    claim = None;
                }
                Err(Failure::Status(status @ (401 | 403), message)) => {
                    return Err(NodeError::Refused { status, message });
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

    async fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
        credentials: &Credentials,
    ) -> Result<R, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure::Other(e.to_string()))?;
        let sha256 = sha256_hex(&body);
        let authorization = credentials.authorization(&RequestFacts {
            method: "POST",
            path_and_query: path,
            content_length: body.len() as u64,
            crc32c: "",
            sha256: &sha256,
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .header(SHA256_HEADER, sha256)
            .header(AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Other(e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| Failure::Other(e.to_string()))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(|e| Failure::Other(e.to_string()))?.to_bytes();
            if !status.is_success() {
                let message = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                return Err(Failure::Status(status.as_u16(), message));
            }
            serde_json::from_slice(&bytes).map_err(|e| Failure::Other(e.to_string()))
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| Err(Failure::Other("no answer within 10 s".to_owned())))
    }
}
