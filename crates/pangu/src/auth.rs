//! Who may call Pangu's services, and how a request proves it: the cluster secret,
//! per-server tokens, and signed requests. Pure: the clock and the nonce are arguments; key
//! files are in [`keyfile`], the axum glue in [`layer`].
//!
//! # Keys
//!
//! - The **cluster secret** (`DATA_DIR/pangu/cluster.key`, made by the first `feitian up`):
//!   32 random bytes that every member holds: the master, every chunkserver (`feitian
//!   chunkserver --secret-file`), every file client. A request signed with it is a member's.
//!   A [`Keyring`] may hold several (one per line of the file): the first signs, every one
//!   verifies, so a new secret is rolled in without stopping the cluster.
//! - A **server token** per chunkserver, `HMAC(master key, id)` ([`TokenIssuer`]): the master
//!   hands it to a server once, at its first registration; the server keeps it beside its
//!   `server-id`; the master recomputes it from `DATA_DIR/pangu/master.key`, which never
//!   leaves the master, instead of storing it. A server's requests are signed with
//!   `HMAC(cluster secret, token)` ([`Credentials::server`]), so speaking as a server takes
//!   both its token and the cluster secret.
//!
//! # Who signs with what
//!
//! | request                                                        | key ([`Principal`])       |
//! |----------------------------------------------------------------|---------------------------|
//! | chunk data: append, read, seal; list, corrupt, status          | cluster (or the server's) |
//! | the master's orders to a chunkserver: create, delete, replicate | that server's             |
//! | a new server's registration; the master's status               | cluster (or a server's)   |
//! | re-registration under a known id; heartbeats                   | that server's             |
//!
//! So a member that is not the master cannot make a chunkserver delete a replica or fetch
//! from a host, and nobody but a server (or the master, who can compute every token) can move
//! that server's address or report for it.
//!
//! # A signed request
//!
//! ```text
//! authorization: PANGU1-HMAC-SHA256 Key=<key id>,Timestamp=<unix ms>,Nonce=<hex>,Signature=<hex>
//! ```
//!
//! `Key` is `cluster` or `server-<id>`; `Signature` is the HMAC-SHA256 of [`string_to_sign`]:
//! the scheme, the key id, the method, the path with its query as sent, the timestamp, the
//! nonce, the body's length, and its checksum header: an append's `x-pangu-crc32c` or a JSON
//! body's `x-pangu-content-sha256`, one line each, joined by `\n`. The receiver checks the
//! body against that header: a chunkserver in the pass over the bytes that computes its
//! block checksums (so signing an append adds no pass over its bytes), the master before it
//! parses JSON. Everything is verified from the head alone, before the body is read.
//!
//! CRC32C is not a cryptographic hash: the signature keeps out anyone without the secret,
//! not an attacker on the path who rewrites a signed append in flight (nor one who reads it:
//! Pangu's traffic is not encrypted). `docs/security.md` says what that leaves.
//!
//! # Replays
//!
//! A timestamp more than [`WINDOW_MS`] from the verifier's clock is refused. Within the
//! window each verified signature is remembered until its timestamp leaves the window, and a
//! second request carrying it is refused; so a request is accepted at most once. Only
//! verified signatures are remembered, at most [`REPLAY_CAPACITY`] (8 bytes each): past that,
//! requests are refused as `Busy` (a retry later succeeds) rather than remembered in
//! unbounded memory. That takes more than 17,000 signed requests a second for 30 seconds.

pub mod keyfile;
pub mod layer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use sha2::Sha256;

use crate::placement::ServerId;

type HmacSha256 = Hmac<Sha256>;

/// The scheme, first in the `authorization` header and in the string to sign.
pub const SCHEME: &str = "PANGU1-HMAC-SHA256";
/// The header that carries the signature.
pub const AUTHORIZATION: &str = "authorization";
/// The hex SHA-256 of a JSON body (requests to the master).
pub const SHA256_HEADER: &str = "x-pangu-content-sha256";
/// How far a request's timestamp may be from the verifier's clock, either way: hosts of a
/// cluster keep their clocks within this (NTP does, by far).
pub const WINDOW_MS: u64 = 15_000;
/// The most signatures a verifier remembers (8 bytes each, about 10 MiB with the sets'
/// overhead).
pub const REPLAY_CAPACITY: usize = 1 << 19;
/// The longest `authorization` header looked at; a real one is about 170 bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 256;
/// The key id of the cluster secret.
pub const CLUSTER_KEY_ID: &str = "cluster";
const SERVER_KEY_PREFIX: &str = "server-";
const MAX_NONCE_LEN: usize = 32;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key must be 64 hex digits (32 bytes)")]
    BadKey,
    #[error("no key in the file")]
    Empty,
}

/// 32 secret bytes. Its `Debug` shows nothing of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// 32 bytes from the operating system's random source.
    pub fn generate() -> Secret {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    pub fn from_hex(text: &str) -> Result<Secret, KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::BadKey)?;
        Ok(Secret(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// An HMAC keyed with this secret.
    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts a 32-byte key")
    }

    /// `HMAC(self, label || data)` as a new secret: keys derived for one purpose each.
    fn derive(&self, label: &[u8], data: &[u8]) -> Secret {
        let mut mac = self.mac();
        mac.update(label);
        mac.update(data);
        Secret(mac.finalize().into_bytes().into())
    }
}

/// The cluster secret, or several during a rotation: the first signs, every one verifies.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Arc<[Secret]>,
}

impl Keyring {
    pub fn new(keys: Vec<Secret>) -> Result<Keyring, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Keyring { keys: keys.into() })
    }

    pub fn single(key: Secret) -> Keyring {
        Keyring { keys: Arc::new([key]) }
    }

    /// A fresh random secret.
    pub fn generate() -> Keyring {
        Keyring::single(Secret::generate())
    }

    /// One hex key per line; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Secret::from_hex)
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::new(keys)
    }

    /// The keys as [`Keyring::parse`] reads them, one per line.
    pub fn to_text(&self) -> String {
        self.keys.iter().map(|k| k.to_hex() + "\n").collect()
    }

    /// The key that signs.
    pub fn signing(&self) -> &Secret {
        &self.keys[0]
    }

    pub fn keys(&self) -> &[Secret] {
        &self.keys
    }
}

/// A chunkserver's proof of identity (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerToken(Secret);

impl ServerToken {
    pub fn from_hex(text: &str) -> Result<ServerToken, KeyError> {
        Secret::from_hex(text).map(ServerToken)
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

/// Makes servers' tokens from the master's own key: `HMAC(master key, id)`, so the master
/// stores none of them and can check any.
#[derive(Clone, Debug)]
pub struct TokenIssuer(Secret);

impl TokenIssuer {
    pub fn new(master_key: Secret) -> TokenIssuer {
        TokenIssuer(master_key)
    }

    pub fn generate() -> TokenIssuer {
        TokenIssuer(Secret::generate())
    }

    pub fn token(&self, id: ServerId) -> ServerToken {
        ServerToken(self.0.derive(b"feitian pangu server token v1\n", id.0.to_string().as_bytes()))
    }
}

/// The key a server signs with under one cluster key: both are needed to make it.
fn server_key(cluster: &Secret, token: &ServerToken) -> Secret {
    cluster.derive(b"feitian pangu server key v1\n", &token.0 .0)
}

/// What a request is signed with. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// The cluster secret: a member of the cluster.
    Cluster(Keyring),
    /// A server's identity: its own requests to the master, and the master's orders to it.
    Server { id: ServerId, key: Secret },
}

impl Credentials {
    pub fn cluster(keys: &Keyring) -> Credentials {
        Credentials::Cluster(keys.clone())
    }

    /// Speaking as server `id`, with its token under the cluster's signing key.
    pub fn server(id: ServerId, token: &ServerToken, cluster: &Keyring) -> Credentials {
        Credentials::Server { id, key: server_key(cluster.signing(), token) }
    }

    pub fn key_id(&self) -> String {
        match self {
            Credentials::Cluster(_) => CLUSTER_KEY_ID.to_owned(),
            Credentials::Server { id, .. } => format!("{SERVER_KEY_PREFIX}{}", id.0),
        }
    }

    fn key(&self) -> &Secret {
        match self {
            Credentials::Cluster(keys) => keys.signing(),
            Credentials::Server { key, .. } => key,
        }
    }

    /// The `authorization` header for `request`, now, with a random nonce.
    pub fn authorization(&self, request: &RequestFacts<'_>) -> String {
        self.authorization_at(request, now_ms(), rand::random())
    }

    /// The `authorization` header for `request` at `now_ms` with `nonce`.
    pub fn authorization_at(&self, request: &RequestFacts<'_>, now_ms: u64, nonce: u64) -> String {
        let key_id = self.key_id();
        let nonce = format!("{nonce:016x}");
        let mut mac = self.key().mac();
        mac.update(string_to_sign(&key_id, now_ms, &nonce, request).as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        format!("{SCHEME} Key={key_id},Timestamp={now_ms},Nonce={nonce},Signature={signature}")
    }
}

/// What a signature covers of a request besides its key, time and nonce.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The path and query exactly as sent (`/chunks/00000000000000ff?offset=0&len=10`).
    pub path_and_query: &'a str,
    /// The body's length (`Content-Length`; 0 without one).
    pub content_length: u64,
    /// The `x-pangu-crc32c` header ("" without one).
    pub crc32c: &'a str,
    /// The `x-pangu-content-sha256` header ("" without one).
    pub sha256: &'a str,
}

/// The string a request's signature is the HMAC-SHA256 of: its lines joined by `\n`, no
/// trailing newline.
pub fn string_to_sign(key_id: &str, timestamp_ms: u64, nonce: &str, r: &RequestFacts<'_>) -> String {
    format!(
        "{SCHEME}\n{key_id}\n{}\n{}\n{timestamp_ms}\n{nonce}\n{}\n{}\n{}",
        r.method, r.path_and_query, r.content_length, r.crc32c, r.sha256
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Who a verified request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A holder of the cluster secret.
    Cluster,
    /// Server `id` (or the master, speaking to that server).
    Server(ServerId),
}

/// Why a request was refused before it was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request is not signed (no authorization header)")]
    Missing,
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
    #[error("the request is signed with a key this server does not know")]
    UnknownKey,
    #[error("the request's timestamp is {skew_ms} ms from this server's clock; at most {WINDOW_MS} ms are accepted")]
    Expired { skew_ms: i64 },
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("the body is not the one signed (its checksum differs, or it is longer than allowed)")]
    BodyMismatch,
    #[error("this request was already received (a replay)")]
    Replayed,
    #[error("too many signed requests within the replay window; retry shortly")]
    Busy,
}

/// The fields of an `authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    key_id: &'a str,
    timestamp_ms: u64,
    nonce: &'a str,
    signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    fn parse(header: &'a [u8]) -> Result<Authorization<'a>, AuthError> {
        if header.len() > MAX_AUTHORIZATION_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let text = std::str::from_utf8(header).map_err(|_| AuthError::Malformed("not text"))?;
        let fields = text
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(AuthError::Malformed("not PANGU1-HMAC-SHA256"))?;
        let (mut key_id, mut timestamp, mut nonce, mut signature) = (None, None, None, None);
        for field in fields.split(',') {
            let (name, value) = field.trim().split_once('=').ok_or(AuthError::Malformed("a field without '='"))?;
            let slot = match name {
                "Key" => &mut key_id,
                "Timestamp" => &mut timestamp,
                "Nonce" => &mut nonce,
                "Signature" => &mut signature,
                _ => return Err(AuthError::Malformed("unknown field")),
            };
            if slot.replace(value).is_some() {
                return Err(AuthError::Malformed("a repeated field"));
            }
        }
        let missing = AuthError::Malformed("Key, Timestamp, Nonce and Signature are required");
        let (Some(key_id), Some(timestamp), Some(nonce), Some(signature)) = (key_id, timestamp, nonce, signature)
        else {
            return Err(missing);
        };
        let timestamp_ms = timestamp.parse().map_err(|_| AuthError::Malformed("Timestamp is not unix milliseconds"))?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed("Nonce must be 1 to 32 hex digits"));
        }
        let mut sig = [0u8; 32];
        hex::decode_to_slice(signature, &mut sig)
            .map_err(|_| AuthError::Malformed("Signature is not 64 hex digits"))?;
        Ok(Authorization { key_id, timestamp_ms, nonce, signature: sig })
    }
}

/// The server keys a verifier knows.
enum ServerKeys {
    /// A chunkserver's own, under each cluster key.
    Own { id: ServerId, keys: Vec<Secret> },
    /// The master's: any server's, from its token.
    Issuer(TokenIssuer),
}

/// Checks signed requests for one service and remembers the signatures it accepted.
pub struct Verifier {
    cluster: Keyring,
    servers: RwLock<ServerKeys>,
    replay: Mutex<ReplayCache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A chunkserver's: the cluster's requests, and the master's orders signed with the
    /// server's own token.
    pub fn chunkserver(cluster: Keyring, id: ServerId, token: &ServerToken) -> Verifier {
        let keys = own_keys(&cluster, token);
        Verifier::new(cluster, ServerKeys::Own { id, keys })
    }

    /// The master's: the cluster's requests, and every server's, whose tokens it makes.
    pub fn master(cluster: Keyring, issuer: TokenIssuer) -> Verifier {
        Verifier::new(cluster, ServerKeys::Issuer(issuer))
    }

    fn new(cluster: Keyring, servers: ServerKeys) -> Verifier {
        Verifier { cluster, servers: RwLock::new(servers), replay: Mutex::new(ReplayCache::new(REPLAY_CAPACITY)) }
    }

    /// A chunkserver that was given another id: the master's orders now come signed for it.
    pub fn set_identity(&self, id: ServerId, token: &ServerToken) {
        let keys = own_keys(&self.cluster, token);
        *self.servers.write() = ServerKeys::Own { id, keys };
    }

    /// Checks a request's `authorization` header against what it says of itself, at
    /// `now_ms`; on success remembers its signature, so that it is accepted once. Cheap
    /// first: the header's shape and the clock are checked before any HMAC.
    pub fn verify(
        &self,
        authorization: Option<&[u8]>,
        request: &RequestFacts<'_>,
        now_ms: u64,
    ) -> Result<Principal, AuthError> {
        let auth = Authorization::parse(authorization.ok_or(AuthError::Missing)?)?;
        let skew_ms = now_ms as i128 - auth.timestamp_ms as i128;
        if skew_ms.unsigned_abs() > WINDOW_MS as u128 {
            return Err(AuthError::Expired { skew_ms: skew_ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64 });
        }
        let to_sign = string_to_sign(auth.key_id, auth.timestamp_ms, auth.nonce, request);
        let matches = |key: &Secret| {
            let mut mac = key.mac();
            mac.update(to_sign.as_bytes());
            mac.verify_slice(&auth.signature).is_ok()
        };
        let principal = if auth.key_id == CLUSTER_KEY_ID {
            self.cluster.keys().iter().any(matches).then_some(Principal::Cluster)
        } else {
            let id = auth
                .key_id
                .strip_prefix(SERVER_KEY_PREFIX)
                .and_then(|n| n.parse::<u64>().ok())
                .map(ServerId)
                .ok_or(AuthError::UnknownKey)?;
            let ok = match &*self.servers.read() {
                ServerKeys::Own { id: own, keys } => {
                    if *own != id {
                        return Err(AuthError::UnknownKey);
                    }
                    keys.iter().any(matches)
                }
                ServerKeys::Issuer(issuer) => {
                    let token = issuer.token(id);
                    self.cluster.keys().iter().any(|k| matches(&server_key(k, &token)))
                }
            };
            ok.then_some(Principal::Server(id))
        };
        let principal = principal.ok_or(AuthError::BadSignature)?;
        let expires_ms = auth.timestamp_ms.saturating_add(WINDOW_MS);
        let tag = u64::from_le_bytes(auth.signature[..8].try_into().expect("8 of 32 bytes"));
        self.replay.lock().admit(tag, expires_ms, now_ms)?;
        Ok(principal)
    }
}

fn own_keys(cluster: &Keyring, token: &ServerToken) -> Vec<Secret> {
    cluster.keys().iter().map(|k| server_key(k, token)).collect()
}

/// The signatures accepted whose timestamps are still in the window, by the second their
/// window ends; bounded.
struct ReplayCache {
    seen: HashSet<u64>,
    by_expiry: BTreeMap<u64, Vec<u64>>,
    capacity: usize,
}

impl ReplayCache {
    fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: HashSet::new(), by_expiry: BTreeMap::new(), capacity }
    }

    /// Accepts `tag` once; it is forgotten after `expires_ms` (when a request carrying it
    /// would be refused as expired anyway).
    fn admit(&mut self, tag: u64, expires_ms: u64, now_ms: u64) -> Result<(), AuthError> {
        // Seconds whose every entry expired before now.
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().saturating_mul(1000) >= now_ms {
                break;
            }
            for tag in entry.remove() {
                self.seen.remove(&tag);
            }
        }
        if self.seen.contains(&tag) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::Busy);
        }
        self.seen.insert(tag);
        self.by_expiry.entry(expires_ms.div_ceil(1000)).or_default().push(tag);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}
