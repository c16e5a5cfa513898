//! An async HTTP/1 client to one chunkserver ([`crate::chunkserver`]): typed methods for
//! its routes, keep-alive connections, and errors that tell a server's answer from a
//! transport failure.
//!
//! The distinction matters to the Pangu client: a [`ChunkClientError::Server`] answer
//! (`OffsetMismatch`, `ChunkSealed`, `ChunkCorrupt`…) comes from a live replica and says
//! what to do next, while a [`ChunkClientError::Transport`] failure (refused, reset, timed
//! out) means the replica should be treated as dead.
//!
//! Reads are checked end to end: the chunkserver sends the CRC32C of the bytes it verified,
//! and [`ChunkClient::read`] refuses bytes that do not match it
//! ([`ChunkClientError::BadResponse`]).
//!
//! [`ChunkClients`] hands out the client for an address: one pooled client per chunkserver,
//! or the in-process one for a chunkserver running in this process. The master and the file
//! clients of a process share one, so that both see the same in-process chunkservers.
//!
//! Every request is signed ([`crate::auth`]) with the client's [`Credentials`]: the cluster
//! secret, or (the master's orders) the target server's own key
//! ([`ChunkClient::with_credentials`]). An append is signed over its CRC32C header, never its
//! bytes: signing adds no pass over them. Calls to the in-process chunkserver are not
//! requests and need no signature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use crate::auth::{Credentials, RequestFacts, AUTHORIZATION};
use crate::chunk::{checksum, ChunkId, Durability};
use crate::chunkserver::{
    ChunkInfo, ChunkServer, CorruptChunk, ErrorBody, ErrorCode, LenResponse, ServerStatus, CRC32C_HEADER,
};
use crate::parts::Parts;

/// How long one request may take, connection included, before it counts as a transport
/// failure. Generous: an append of a large batch waits for two fsyncs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a chunkserver call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChunkClientError {
    /// The chunkserver answered with an error.
    #[error("chunkserver {server} answered {status}: {code:?}: {}", body.message)]
    Server { server: String, status: u16, code: ErrorCode, body: ErrorBody },
    /// The chunkserver could not be reached or did not answer in time: treat the replica
    /// as dead.
    #[error("chunkserver {server} is unreachable: {message}")]
    Transport { server: String, message: String },
    /// The chunkserver answered something that is not what the protocol says (including
    /// bytes that do not match their checksum).
    #[error("chunkserver {server} sent a bad response: {message}")]
    BadResponse { server: String, message: String },
}

impl ChunkClientError {
    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ChunkClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the replica should be treated as dead (no answer at all).
    pub fn is_transport(&self) -> bool {
        matches!(self, ChunkClientError::Transport { .. })
    }
}

pub type Result<T, E = ChunkClientError> = std::result::Result<T, E>;

/// A client to one chunkserver. Cheap to clone (clones share the connection pool).
#[derive(Clone, Debug)]
pub struct ChunkClient {
    /// `host:port`.
    server: String,
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// What its requests are signed with.
    credentials: Credentials,
    /// The same chunkserver, when it runs in this process: appends and reads then skip
    /// HTTP (the data path of `feitian up`'s embedded chunkserver); everything else, and
    /// every check, is the same.
    local: Option<ChunkServer>,
}

/// Pangu's HTTP client: keep-alive connections, dropped when idle before the server's header
/// timeout would close them (a request sent on a connection the server is closing fails).
pub(crate) fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(crate::serve::CLIENT_IDLE)
        .build(connector)
}

impl ChunkClient {
    /// A client to the chunkserver at `server` (`host:port`), signing with `credentials`.
    pub fn new(server: impl Into<String>, credentials: Credentials) -> ChunkClient {
        ChunkClient { server: server.into(), http: http_client(), timeout: DEFAULT_TIMEOUT, credentials, local: None }
    }

    /// A client to a chunkserver running in this process (`server` is its address).
    pub fn in_process(server: impl Into<String>, local: ChunkServer, credentials: Credentials) -> ChunkClient {
        ChunkClient { local: Some(local), ..ChunkClient::new(server, credentials) }
    }

    /// The same client (same connections) signing with other credentials: the master's
    /// orders to a server carry that server's key.
    pub fn with_credentials(mut self, credentials: Credentials) -> ChunkClient {
        self.credentials = credentials;
        self
    }

    fn local_error(&self, e: crate::chunkserver::ApiError) -> ChunkClientError {
        ChunkClientError::Server {
            server: self.server.clone(),
            status: e.status.as_u16(),
            code: e.body.code,
            body: e.body,
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ChunkClient {
        self.timeout = timeout;
        self
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `POST /chunks/{id}?max_size=N`.
    pub async fn create(&self, id: ChunkId, max_size: u64) -> Result<ChunkInfo> {
        self.json(Method::POST, &format!("/chunks/{id}?max_size={max_size}"), Bytes::new(), None).await
    }

    /// Appends `data` at `offset` (where the writer believes the chunk ends), with its
    /// CRC32C; returns the new length once the bytes are durable on this replica.
    pub async fn append(&self, id: ChunkId, offset: u64, data: Bytes) -> Result<u64> {
        let crc = checksum(&data);
        self.append_with_checksum(id, offset, data, crc).await
    }

    /// Whether this replica is the chunkserver inside this process (its appends and reads
    /// are calls, not requests).
    pub fn is_in_process(&self) -> bool {
        self.local.is_some()
    }

    /// An append from a file writer of the concatenation of `data`: `crc32c` is the
    /// writer's checksum of it, which a replica across a transport checks the bytes it
    /// received against (they travel as one body). The in-process replica writes the
    /// writer's own buffers and is given `None`: there is nothing between them to check (its
    /// block checksums, computed from those buffers, protect the bytes from there on). A
    /// remote replica given `None` gets the checksum computed here. `durability` says whether
    /// the replica fsyncs before it answers ([`Durability`]).
    pub async fn append_from_writer(
        &self,
        id: ChunkId,
        offset: u64,
        data: Parts,
        crc32c: Option<u32>,
        durability: Durability,
    ) -> Result<u64> {
        match (&self.local, crc32c) {
            (Some(local), None) => {
                local.append_trusted(id, offset, data, durability).await.map_err(|e| self.local_error(e))
            }
            (_, Some(crc)) => self.append_as(id, offset, data.to_bytes(), crc, durability).await,
            (None, None) => {
                let data = data.to_bytes();
                let crc = checksum(&data);
                self.append_as(id, offset, data, crc, durability).await
            }
        }
    }

    /// [`ChunkClient::append`] with a checksum the caller computed (where the data was
    /// produced, which is the point of an end-to-end checksum).
    pub async fn append_with_checksum(&self, id: ChunkId, offset: u64, data: Bytes, crc32c: u32) -> Result<u64> {
        self.append_as(id, offset, data, crc32c, Durability::Durable).await
    }

    async fn append_as(
        &self,
        id: ChunkId,
        offset: u64,
        data: Bytes,
        crc32c: u32,
        durability: Durability,
    ) -> Result<u64> {
        if let Some(local) = &self.local {
            let appended = local.append_checked(id, offset, data, crc32c, durability).await;
            return appended.map_err(|e| self.local_error(e));
        }
        let path = match durability {
            Durability::Durable => format!("/chunks/{id}/append?offset={offset}"),
            Durability::Cached => format!("/chunks/{id}/append?offset={offset}&cached=1"),
        };
        let answer: LenResponse = self.json(Method::POST, &path, data, Some(crc32c)).await?;
        Ok(answer.len)
    }

    /// Makes the replica's cached appends durable; returns its length.
    pub async fn sync(&self, id: ChunkId) -> Result<u64> {
        if let Some(local) = &self.local {
            return local.sync(id).await.map_err(|e| self.local_error(e));
        }
        let answer: LenResponse = self.json(Method::POST, &format!("/chunks/{id}/sync"), Bytes::new(), None).await?;
        Ok(answer.len)
    }

    /// Reads `len` verified bytes at `offset`, checked against the server's CRC32C.
    pub async fn read(&self, id: ChunkId, offset: u64, len: u64) -> Result<Bytes> {
        if let Some(local) = &self.local {
            let bytes = local.read_verified(id, offset, Some(len)).await.map_err(|e| self.local_error(e))?;
            if bytes.len() as u64 != len {
                return Err(self.bad(format!("asked for {len} bytes, got {}", bytes.len())));
            }
            return Ok(Bytes::from(bytes));
        }
        let path = format!("/chunks/{id}?offset={offset}&len={len}");
        let (headers, body) = self.call(Method::GET, &path, Bytes::new(), None).await?;
        let sent = headers
            .get(CRC32C_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| self.bad(format!("read answer without a valid {CRC32C_HEADER} header")))?;
        let actual = checksum(&body);
        if sent != actual {
            return Err(self.bad(format!("read bytes have CRC32C {actual:#010x}, the server sent {sent:#010x}")));
        }
        if body.len() as u64 != len {
            return Err(self.bad(format!("asked for {len} bytes, got {}", body.len())));
        }
        Ok(body)
    }

    /// Reads several ranges of the replica: in this process in one call (one hand-off to
    /// the blocking pool), across a transport as one request per range, concurrently.
    pub async fn read_many(&self, id: ChunkId, ranges: &[(u64, u64)]) -> Result<Vec<Bytes>> {
        let Some(local) = &self.local else {
            return futures_util::future::try_join_all(ranges.iter().map(|&(at, len)| self.read(id, at, len))).await;
        };
        let read = local.read_verified_many(id, ranges.to_vec()).await.map_err(|e| self.local_error(e))?;
        let mut out = Vec::with_capacity(read.len());
        for (bytes, &(_, len)) in read.into_iter().zip(ranges) {
            if bytes.len() as u64 != len {
                return Err(self.bad(format!("asked for {len} bytes, got {}", bytes.len())));
            }
            out.push(Bytes::from(bytes));
        }
        Ok(out)
    }

    /// Seals the chunk at `len` (`None`: at its current length); returns the sealed length.
    pub async fn seal(&self, id: ChunkId, len: Option<u64>) -> Result<u64> {
        let path = match len {
            Some(len) => format!("/chunks/{id}/seal?len={len}"),
            None => format!("/chunks/{id}/seal"),
        };
        let answer: LenResponse = self.json(Method::POST, &path, Bytes::new(), None).await?;
        Ok(answer.len)
    }

    /// Deletes the replica (deleting a missing one succeeds).
    pub async fn delete(&self, id: ChunkId) -> Result<()> {
        self.call(Method::DELETE, &format!("/chunks/{id}"), Bytes::new(), None).await?;
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<ChunkInfo>> {
        self.json(Method::GET, "/chunks", Bytes::new(), None).await
    }

    pub async fn corrupt(&self) -> Result<Vec<CorruptChunk>> {
        self.json(Method::GET, "/corrupt", Bytes::new(), None).await
    }

    pub async fn status(&self) -> Result<ServerStatus> {
        self.json(Method::GET, "/status", Bytes::new(), None).await
    }

    /// Has this chunkserver copy the sealed chunk `id` of length `len` from the chunkserver
    /// at `from` (`host:port`) and seal it; returns the sealed length. Source failures come
    /// back as `ReplicationSourceFailed`.
    pub async fn replicate(&self, id: ChunkId, from: &str, len: u64) -> Result<u64> {
        let path = format!("/chunks/{id}/replicate?from={from}&len={len}");
        let answer: LenResponse = self.json(Method::POST, &path, Bytes::new(), None).await?;
        Ok(answer.len)
    }

    async fn json<T: DeserializeOwned>(&self, method: Method, path: &str, body: Bytes, crc: Option<u32>) -> Result<T> {
        let (_, body) = self.call(method, path, body, crc).await?;
        serde_json::from_slice(&body).map_err(|e| self.bad(format!("cannot decode the answer: {e}")))
    }

    /// Sends one request; a non-2xx answer becomes `Server` (or `BadResponse` if its body
    /// is not an [`ErrorBody`]).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        crc: Option<u32>,
    ) -> Result<(hyper::HeaderMap, Bytes)> {
        let crc = crc.map(|c| c.to_string());
        let authorization = self.credentials.authorization(&RequestFacts {
            method: method.as_str(),
            path_and_query: path,
            content_length: body.len() as u64,
            crc32c: crc.as_deref().unwrap_or(""),
            sha256: "",
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server))
            .header(AUTHORIZATION, authorization);
        if let Some(crc) = crc {
            request = request.header(CRC32C_HEADER, crc);
        }
        let request = request.body(Full::new(body)).map_err(|e| self.bad(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| self.transport(format!("{e:?}")))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| self.transport(format!("reading the answer: {e}")))?;
            Ok::<_, ChunkClientError>((parts, body.to_bytes()))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.transport(format!("no answer within {:?}", self.timeout)))??;
        if parts.status.is_success() {
            return Ok((parts.headers, body));
        }
        Err(self.server_error(parts.status, &body))
    }

    fn server_error(&self, status: StatusCode, body: &[u8]) -> ChunkClientError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => {
                ChunkClientError::Server { server: self.server.clone(), status: status.as_u16(), code: body.code, body }
            }
            Err(_) => self.bad(format!("error {status} with a body that is not a chunkserver error")),
        }
    }

    fn transport(&self, message: String) -> ChunkClientError {
        ChunkClientError::Transport { server: self.server.clone(), message }
    }

    fn bad(&self, message: String) -> ChunkClientError {
        ChunkClientError::BadResponse { server: self.server.clone(), message }
    }
}

/// The chunkservers this process talks to, by address (cheap to clone; clones share).
#[derive(Clone)]
pub struct ChunkClients {
    inner: Arc<Pool>,
}

struct Pool {
    /// The cluster secret, which the clients sign with.
    credentials: Credentials,
    clients: Mutex<HashMap<String, ChunkClient>>,
    /// Chunkservers running in this process, by address.
    local: Mutex<HashMap<String, ChunkServer>>,
}

impl ChunkClients {
    /// Clients that sign with `credentials` (the cluster secret).
    pub fn new(credentials: Credentials) -> ChunkClients {
        ChunkClients { inner: Arc::new(Pool { credentials, clients: Mutex::default(), local: Mutex::default() }) }
    }

    /// The client for the chunkserver at `addr`: in-process if it runs here, else pooled.
    pub fn get(&self, addr: &str) -> ChunkClient {
        if let Some(local) = self.inner.local.lock().get(addr) {
            return ChunkClient::in_process(addr, local.clone(), self.inner.credentials.clone());
        }
        self.inner
            .clients
            .lock()
            .entry(addr.to_owned())
            .or_insert_with(|| ChunkClient::new(addr, self.inner.credentials.clone()))
            .clone()
    }

    /// Says that the chunkserver at `addr` runs in this process: appends to and reads from
    /// it skip HTTP.
    pub fn attach_local(&self, addr: &str, server: ChunkServer) {
        self.inner.local.lock().insert(addr.to_owned(), server);
    }
}
