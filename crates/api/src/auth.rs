//! Authentication: who signed this request, and is it fresh?
//!
//! The edge hands over the request's parts; [`Authenticator::verify`] finds the AccessKey,
//! checks the timestamp window and the signature (V1 or V3, see [`crate::signature`]) and
//! returns a [`Verified`] request. Its nonce is claimed by [`Authenticator::claim`] only
//! after that *and* after the edge has validated every parameter (`Params`), so that neither
//! a forged request nor a refused one burns a nonce: the client can retry as it is.
//!
//! Replay protection, and why it is bounded:
//! - A request is valid while its timestamp is within [`TIMESTAMP_WINDOW`] (15 min) of now,
//!   either way. Its nonce is remembered until that timestamp leaves the window (so up to
//!   30 min for a timestamp 15 min ahead), in sets by the minute it may be forgotten: a set
//!   is dropped whole once its minute has passed, so memory goes back as soon as it can.
//! - A nonce is at most [`MAX_NONCE_LEN`] bytes and is kept as a 64-bit keyed hash
//!   (SipHash with a random key per process), so an entry costs the same whatever was sent,
//!   and nobody can make two nonces collide on purpose.
//! - The cache has a cap per AccessKey and a total cap ([`NonceLimits`]). At a cap a request
//!   is refused (`Throttling.User` for the key's own cap, `ServiceUnavailable` for the total)
//!   rather than a nonce forgotten early: forgetting would reopen the replay window.
//! - Nonces are not persisted. Instead a request signed before this process started (its
//!   timestamp before the start, to the second) is refused as expired: a request captured
//!   before a restart cannot be replayed after it, and no disk write is added to every
//!   request. The cost: a client whose clock is `d` seconds behind is refused for the first
//!   `d` seconds after a start. Documented in docs/protocol.md.

use crate::error::echo;
use crate::signature as sig;
use crate::ApiError;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

/// How far a request's timestamp may be from the server's clock, either way.
pub const TIMESTAMP_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// The longest nonce accepted, in bytes. The SDKs send 32 hex characters
/// (`aliyun-python-sdk-core`, the Tea SDKs, the Go SDK) or a 36-character UUID (the Java
/// SDK, the .NET Tea SDK); the real API documents no limit, and hand-written clients send
/// things like a UUID plus a time. 128 leaves that margin and refuses nonsense early.
pub const MAX_NONCE_LEN: usize = 128;

/// How many nonces the cache may hold (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceLimits {
    /// For one AccessKey: about 1,165 requests/s sustained over the 15-minute window (the
    /// `DescribeRegions` benchmark, 48,000 requests/s for 11 s, uses half of it).
    pub per_access_key: usize,
    /// For all keys together: the memory bound. An entry is a `u64` in a hash set, at most
    /// about 20 bytes with the set's spare room, so the default is at most about 45 MB.
    pub total: usize,
}

impl Default for NonceLimits {
    fn default() -> Self {
        NonceLimits { per_access_key: 1 << 20, total: 1 << 21 }
    }
}

/// An account: the owner of resources and the unit of isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account's numeric id (the API's `OwnerId`), 16 digits like the real ones.
    pub account_id: u64,
    pub account_name: String,
    pub access_key_id: String,
}

/// What the store knows of an AccessKey.
#[derive(Debug, Clone)]
pub struct Credential {
    pub secret: String,
    pub active: bool,
    pub caller: Caller,
}

/// Where AccessKeys come from (the control-plane store, in feitian).
pub trait KeyStore: Send + Sync + 'static {
    fn lookup(&self, access_key_id: &str) -> Result<Option<Credential>, ApiError>;
}

/// The request as the edge received it.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// Decoded form-body pairs (empty for other bodies).
    pub form: &'a [(String, String)],
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
}

impl Incoming<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().chain(self.form.iter()).find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the request is signed with V3 (an `Authorization: ACS3-…` header).
    pub fn is_v3(&self) -> bool {
        self.header("authorization").is_some_and(|h| h.trim_start().starts_with("ACS3-"))
    }
}

/// A request whose signature checked out; its nonce is not claimed yet. The only way to the
/// [`Caller`] is [`Authenticator::claim`].
#[must_use = "a verified request is authenticated only once its nonce is claimed"]
#[derive(Debug)]
pub struct Verified {
    caller: Caller,
    nonce: u64,
    /// When the nonce may be forgotten: its request's timestamp plus the window (Unix seconds).
    forget_after: i64,
    /// The `now` the request was verified at (Unix seconds).
    now: i64,
}

pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    nonces: NonceCache,
    /// Requests timestamped before this (Unix seconds: this process's start) are refused.
    not_before: i64,
}

impl Authenticator {
    /// With the default [`NonceLimits`], refusing requests signed before now (the start).
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        Self::with_limits(keys, NonceLimits::default(), Utc::now())
    }

    /// With `limits`, refusing requests timestamped before `started` (to the second).
    pub fn with_limits(keys: Arc<dyn KeyStore>, limits: NonceLimits, started: DateTime<Utc>) -> Self {
        Authenticator { keys, nonces: NonceCache::new(limits), not_before: started.timestamp() }
    }

    /// Authenticates one request at time `now`: [`verify`](Self::verify), then
    /// [`claim`](Self::claim) at once (for callers with no parameters to check in between).
    pub fn authenticate(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
        let verified = self.verify(req, now)?;
        self.claim(verified)
    }

    /// Checks the key, the timestamp and the signature at time `now`, without claiming the
    /// nonce.
    pub fn verify(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Verified, ApiError> {
        if req.is_v3() {
            self.v3(req, now)
        } else {
            self.v1(req, now)
        }
    }

    /// Claims the verified request's nonce: `SignatureNonceUsed` if its AccessKey sent it
    /// within the window, `Throttling.User` / `ServiceUnavailable` at the cache's caps.
    pub fn claim(&self, v: Verified) -> Result<Caller, ApiError> {
        self.nonces.claim(&v.caller.access_key_id, v.nonce, v.forget_after, v.now)?;
        Ok(v.caller)
    }

    fn credential(&self, access_key_id: &str) -> Result<Credential, ApiError> {
        let cred = self.keys.lookup(access_key_id)?.ok_or_else(ApiError::access_key_not_found)?;
        if !cred.active {
            return Err(ApiError::access_key_disabled());
        }
        Ok(cred)
    }

    fn check_timestamp(&self, ts: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
        let t = DateTime::parse_from_rfc3339(ts).map_err(|_| ApiError::timestamp_format())?.with_timezone(&Utc);
        if (now - t).abs() > TIMESTAMP_WINDOW {
            return Err(ApiError::timestamp_expired());
        }
        if t.timestamp() < self.not_before {
            return Err(ApiError::timestamp_expired().recommend(
                "the request was signed before feitian started: sign it again (if this persists, the client's clock is behind)",
            ));
        }
        Ok(t)
    }

    fn verified(&self, caller: Caller, nonce: &str, t: DateTime<Utc>, now: DateTime<Utc>) -> Verified {
        Verified {
            caller,
            nonce: self.nonces.hash(nonce),
            forget_after: (t + TIMESTAMP_WINDOW).timestamp(),
            now: now.timestamp(),
        }
    }

    fn v1(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Verified, ApiError> {
        let need =
            |name: &str| req.param(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::missing_parameter(name));
        let access_key_id = need("AccessKeyId")?;
        let signature = need("Signature")?;
        let method = need("SignatureMethod")?;
        if method != "HMAC-SHA1" {
            return Err(ApiError::unsupported_signature_method(method));
        }
        if let Some(v) = req.param("SignatureVersion") {
            if v != "1.0" {
                return Err(ApiError::incomplete_signature(format!("SignatureVersion {:?} is not 1.0.", echo(v))));
            }
        }
        let nonce = need("SignatureNonce")?;
        check_nonce("SignatureNonce", nonce)?;
        let timestamp = need("Timestamp")?;
        let cred = self.credential(access_key_id)?;
        let t = self.check_timestamp(timestamp, now)?;
        let pairs = req.query.iter().chain(req.form.iter()).map(|(k, v)| (k.as_str(), v.as_str()));
        let sts = sig::v1_string_to_sign(req.method, pairs);
        if !sig::constant_time_eq(&sig::v1_sign(&cred.secret, &sts), signature) {
            return Err(ApiError::signature_does_not_match(&sts));
        }
        Ok(self.verified(cred.caller, nonce, t, now))
    }

    fn v3(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Verified, ApiError> {
        let header = req.header("authorization").unwrap_or_default();
        let auth = sig::parse_v3_authorization(header).ok_or_else(|| {
            ApiError::incomplete_signature(
                "The Authorization header must be `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.",
            )
        })?;
        if auth.algorithm != sig::ACS3_HMAC_SHA256 {
            return Err(ApiError::unsupported_signature_method(auth.algorithm));
        }
        for required in
            ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"]
        {
            if !auth.signed_headers.contains(&required) {
                return Err(ApiError::incomplete_signature(format!("SignedHeaders must include {required}.")));
            }
        }
        let need =
            |name: &str| req.header(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::missing_parameter(name));
        let timestamp = need("x-acs-date")?;
        let nonce = need("x-acs-signature-nonce")?;
        check_nonce("x-acs-signature-nonce", nonce)?;
        let payload_hash = need("x-acs-content-sha256")?;
        let cred = self.credential(auth.access_key_id)?;
        let t = self.check_timestamp(timestamp, now)?;
        let mut signed_headers = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let values: Vec<&str> = req.headers.get_all(*name).iter().filter_map(|v| v.to_str().ok()).collect();
            if values.is_empty() {
                return Err(ApiError::incomplete_signature(format!(
                    "The signed header {} is not in the request.",
                    echo(name)
                )));
            }
            signed_headers.push((*name, values));
        }
        let canonical = sig::v3_canonical_request(&sig::V3Request {
            method: req.method,
            path: req.path,
            query: req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            signed_headers,
            payload_hash,
        });
        let sts = sig::v3_string_to_sign(&canonical);
        if !sig::constant_time_eq(&sig::v3_sign(&cred.secret, &sts), auth.signature) {
            return Err(ApiError::signature_does_not_match(&sts));
        }
        // The signature covers the declared hash; the body must be the one hashed.
        if !payload_hash.eq_ignore_ascii_case(&sig::sha256_hex(req.body)) {
            return Err(ApiError::new(
                400,
                "ContentSHA256NotMatched",
                "The x-acs-content-sha256 header does not match the request body.",
            ));
        }
        Ok(self.verified(cred.caller, nonce, t, now))
    }
}

fn check_nonce(name: &str, nonce: &str) -> Result<(), ApiError> {
    if nonce.len() > MAX_NONCE_LEN {
        return Err(ApiError::invalid_parameter(
            name,
            format!("longer than {MAX_NONCE_LEN} bytes (a nonce is a random string like a UUID)"),
        ));
    }
    Ok(())
}

/// The nonces each AccessKey sent within the window (see the module documentation).
struct NonceCache {
    keys: RwLock<HashMap<String, Arc<Mutex<KeyNonces>>>>,
    /// Nonces held over all keys.
    total: AtomicUsize,
    /// The last minute in which every key was swept (idle keys too).
    swept: AtomicI64,
    /// The last minute a cap was logged (once a minute: a flood must not flood the log).
    warned: AtomicI64,
    limits: NonceLimits,
    hasher: RandomState,
}

/// One AccessKey's nonces, by the minute (Unix seconds / 60) after which they may be
/// forgotten: a nonce whose window ends at second `s` is in the set of minute `s / 60`, which
/// is dropped once that whole minute has passed.
#[derive(Default)]
struct KeyNonces {
    by_minute: BTreeMap<i64, HashSet<u64>>,
    len: usize,
}

impl KeyNonces {
    /// Drops the sets of the minutes before `current`; returns how many nonces went.
    fn forget_before(&mut self, current: i64) -> usize {
        let mut gone = 0;
        while let Some(entry) = self.by_minute.first_entry() {
            if *entry.key() >= current {
                break;
            }
            gone += entry.remove().len();
        }
        self.len -= gone;
        gone
    }
}

impl NonceCache {
    fn new(limits: NonceLimits) -> Self {
        NonceCache {
            keys: RwLock::new(HashMap::new()),
            total: AtomicUsize::new(0),
            swept: AtomicI64::new(i64::MIN),
            warned: AtomicI64::new(i64::MIN),
            limits,
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, nonce: &str) -> u64 {
        self.hasher.hash_one(nonce.as_bytes())
    }

    fn key(&self, access_key_id: &str) -> Arc<Mutex<KeyNonces>> {
        if let Some(k) = self.keys.read().get(access_key_id) {
            return k.clone();
        }
        // Only keys whose signature checked out get here: the map is bounded by the store.
        self.keys.write().entry(access_key_id.to_owned()).or_default().clone()
    }

    /// Records `nonce` for the key until `forget_after` (Unix seconds), at `now`.
    fn claim(&self, access_key_id: &str, nonce: u64, forget_after: i64, now: i64) -> Result<(), ApiError> {
        // Forget what left the window, in whole minutes so that the memory goes back at once:
        // every key once a minute (idle ones too, or they would hold the total cap), this
        // key on each of its requests.
        let current = now.div_euclid(60);
        if self.swept.fetch_max(current, Ordering::Relaxed) < current {
            for k in self.keys.read().values() {
                let gone = k.lock().forget_before(current);
                self.total.fetch_sub(gone, Ordering::Relaxed);
            }
        }
        let key = self.key(access_key_id);
        let mut k = key.lock();
        let gone = k.forget_before(current);
        self.total.fetch_sub(gone, Ordering::Relaxed);
        if k.by_minute.values().any(|set| set.contains(&nonce)) {
            return Err(ApiError::nonce_used());
        }
        let first_this_minute = || self.warned.fetch_max(current, Ordering::Relaxed) < current;
        if k.len >= self.limits.per_access_key {
            if first_this_minute() {
                tracing::warn!(access_key_id, "nonce cache: this AccessKey is at its cap; refusing its requests");
            }
            return Err(ApiError::throttling().recommend(
                "this AccessKey sent more requests in the last 15 minutes than feitian remembers nonces for; slow down",
            ));
        }
        let cap = self.limits.total;
        if self.total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| (t < cap).then_some(t + 1)).is_err() {
            if first_this_minute() {
                tracing::warn!("nonce cache: at its total cap; refusing requests until nonces leave the window");
            }
            return Err(ApiError::service_unavailable(
                "feitian remembers as many request nonces as it may for the 15-minute window; retry shortly",
            ));
        }
        k.by_minute.entry(forget_after.div_euclid(60)).or_default().insert(nonce);
        k.len += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    struct OneKey;
    impl KeyStore for OneKey {
        fn lookup(&self, id: &str) -> Result<Option<Credential>, ApiError> {
            Ok(match id {
                "AK" | "OFF" => Some(Credential {
                    secret: "secret".into(),
                    active: id == "AK",
                    caller: Caller {
                        account_id: 1000000000000001,
                        account_name: "root".into(),
                        access_key_id: id.into(),
                    },
                }),
                _ => None,
            })
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn v1_query(ak: &str, secret: &str, nonce: &str, ts: &str) -> Vec<(String, String)> {
        let mut q: Vec<(String, String)> = [
            ("Action", "DescribeRegions"),
            ("Version", "2014-05-26"),
            ("AccessKeyId", ak),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", ts),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sts = sig::v1_string_to_sign("GET", q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        q.push(("Signature".into(), sig::v1_sign(secret, &sts)));
        q
    }

    /// An authenticator that started an hour before `now()`.
    fn auth() -> Authenticator {
        Authenticator::with_limits(Arc::new(OneKey), NonceLimits::default(), now() - chrono::Duration::hours(1))
    }

    fn run(a: &Authenticator, q: &[(String, String)], headers: &HeaderMap) -> Result<Caller, ApiError> {
        let req = Incoming { method: "GET", path: "/", query: q, form: &[], headers, body: b"" };
        a.authenticate(&req, now())
    }

    #[test]
    fn v1_accepts_once_then_rejects_replay() {
        let a = auth();
        let h = HeaderMap::new();
        let q = v1_query("AK", "secret", "n1", "2026-11-22T08:01:00Z");
        assert_eq!(run(&a, &q, &h).unwrap().account_id, 1000000000000001);
        assert_eq!(run(&a, &q, &h).unwrap_err().code, "SignatureNonceUsed");
    }

    #[test]
    fn v1_errors() {
        let a = auth();
        let h = HeaderMap::new();
        let code = |q: Vec<(String, String)>| run(&a, &q, &h).unwrap_err().code.to_string();
        assert_eq!(code(v1_query("AK", "wrong", "n2", "2026-11-22T08:00:00Z")), "SignatureDoesNotMatch");
        assert_eq!(code(v1_query("NOPE", "secret", "n3", "2026-11-22T08:00:00Z")), "InvalidAccessKeyId.NotFound");
        assert_eq!(code(v1_query("OFF", "secret", "n3", "2026-11-22T08:00:00Z")), "InvalidAccessKeyId.Inactive");
        assert_eq!(code(v1_query("AK", "secret", "n4", "2026-11-22T07:44:00Z")), "InvalidTimeStamp.Expired");
        assert_eq!(code(v1_query("AK", "secret", "n5", "2026-11-22T08:16:00Z")), "InvalidTimeStamp.Expired");
        assert_eq!(code(v1_query("AK", "secret", "n6", "yesterday")), "InvalidTimeStamp.Format");
        let mut q = v1_query("AK", "secret", "n7", "2026-11-22T08:00:00Z");
        q.retain(|(k, _)| k != "Signature");
        assert_eq!(code(q), "MissingParameter");
        // A forged request did not burn the nonce it carried.
        assert!(run(&a, &v1_query("AK", "secret", "n2", "2026-11-22T08:00:00Z"), &h).is_ok());
    }

    fn v3_headers(secret: &str, nonce: &str, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let hash = sig::sha256_hex(body);
        for (k, v) in [
            ("host", "127.0.0.1:9000"),
            ("x-acs-action", "DescribeRegions"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2026-11-22T08:00:05Z"),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-content-sha256", hash.as_str()),
        ] {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        let signed: Vec<(&str, Vec<&str>)> = h.iter().map(|(k, v)| (k.as_str(), vec![v.to_str().unwrap()])).collect();
        let cr = sig::v3_canonical_request(&sig::V3Request {
            method: "POST",
            path: "/",
            query: vec![("RegionId", "cn-hangzhou")],
            signed_headers: signed,
            payload_hash: &hash,
        });
        let s = sig::v3_sign(secret, &sig::v3_string_to_sign(&cr));
        let auth = format!(
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature={s}"
        );
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        h
    }

    #[test]
    fn v3_accepts_and_checks_body_and_nonce() {
        let a = auth();
        let q = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
        let go = |h: &HeaderMap, body: &[u8]| {
            let req = Incoming { method: "POST", path: "/", query: &q, form: &[], headers: h, body };
            a.authenticate(&req, now())
        };
        let h = v3_headers("secret", "v3n1", b"");
        assert!(go(&h, b"").is_ok());
        assert_eq!(go(&h, b"").unwrap_err().code, "SignatureNonceUsed");
        let h = v3_headers("wrong", "v3n2", b"");
        assert_eq!(go(&h, b"").unwrap_err().code, "SignatureDoesNotMatch");
        let h = v3_headers("secret", "v3n3", b"");
        assert_eq!(go(&h, b"tampered").unwrap_err().code, "ContentSHA256NotMatched");
        let mut h = v3_headers("secret", "v3n4", b"");
        h.insert(
            "authorization",
            HeaderValue::from_static("ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=00"),
        );
        assert_eq!(go(&h, b"").unwrap_err().code, "IncompleteSignature");
    }

    #[test]
    fn nonces_are_capped_in_length() {
        let a = auth();
        let h = HeaderMap::new();
        assert!(run(&a, &v1_query("AK", "secret", &"n".repeat(MAX_NONCE_LEN), "2026-11-22T08:00:00Z"), &h).is_ok());
        let e =
            run(&a, &v1_query("AK", "secret", &"n".repeat(MAX_NONCE_LEN + 1), "2026-11-22T08:00:00Z"), &h).unwrap_err();
        assert_eq!((e.code.as_ref(), e.status), ("InvalidParameter", 400));
        assert!(e.message.contains("SignatureNonce"), "{}", e.message);
        // A megabyte is refused before the key, the clock or the signature is looked at.
        let e = run(&a, &v1_query("NOPE", "x", &"n".repeat(1 << 20), "yesterday"), &h).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert!(e.message.len() < 1024);

        let q = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
        let long = "v".repeat(MAX_NONCE_LEN + 1);
        let h = v3_headers("secret", &long, b"");
        let req = Incoming { method: "POST", path: "/", query: &q, form: &[], headers: &h, body: b"" };
        let e = a.authenticate(&req, now()).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert!(e.message.contains("x-acs-signature-nonce"));
    }

    #[test]
    fn verify_does_not_claim_the_nonce() {
        let a = auth();
        let h = HeaderMap::new();
        let q = v1_query("AK", "secret", "checked-first", "2026-11-22T08:00:00Z");
        let req = Incoming { method: "GET", path: "/", query: &q, form: &[], headers: &h, body: b"" };
        // Verified, then refused for some other reason (a bad parameter): dropped unclaimed.
        drop(a.verify(&req, now()).unwrap());
        let v = a.verify(&req, now()).unwrap();
        assert_eq!(a.claim(v).unwrap().access_key_id, "AK");
        let v = a.verify(&req, now()).unwrap();
        assert_eq!(a.claim(v).unwrap_err().code, "SignatureNonceUsed");
    }

    #[test]
    fn a_nonce_is_remembered_until_its_own_timestamp_leaves_the_window() {
        let a = auth();
        let h = HeaderMap::new();
        let at = |minutes: i64| now() + chrono::Duration::minutes(minutes);
        // Signed 15 minutes ahead (the client's clock is fast): valid until now + 30 min.
        let q = v1_query("AK", "secret", "ahead", "2026-11-22T08:15:00Z");
        let go = |when| {
            let req = Incoming { method: "GET", path: "/", query: &q, form: &[], headers: &h, body: b"" };
            a.authenticate(&req, when)
        };
        assert!(go(at(0)).is_ok());
        // Two rotating generations of 15 minutes forgot it after 15 to 30 minutes; the
        // timestamp check would still let the replay through until minute 30.
        for m in [1, 14, 16, 29, 30] {
            assert_eq!(go(at(m)).unwrap_err().code, "SignatureNonceUsed", "minute {m}");
        }
        assert_eq!(go(at(31)).unwrap_err().code, "InvalidTimeStamp.Expired");
    }

    #[test]
    fn requests_signed_before_the_start_are_refused() {
        let a = Authenticator::with_limits(Arc::new(OneKey), NonceLimits::default(), now());
        let h = HeaderMap::new();
        let e = run(&a, &v1_query("AK", "secret", "old", "2026-11-22T07:59:59Z"), &h).unwrap_err();
        assert_eq!(e.code, "InvalidTimeStamp.Expired");
        assert!(e.recommend.unwrap().contains("before feitian started"));
        // The same second as the start is fine (timestamps are whole seconds).
        assert!(run(&a, &v1_query("AK", "secret", "new", "2026-11-22T08:00:00Z"), &h).is_ok());
    }

    #[test]
    fn the_cache_is_bounded_per_key_and_in_total() {
        let c = NonceCache::new(NonceLimits { per_access_key: 3, total: 5 });
        let t0 = now().timestamp();
        let until = t0 + TIMESTAMP_WINDOW.num_seconds();
        for n in 0..3 {
            c.claim("a", n, until, t0).unwrap();
        }
        assert_eq!(c.claim("a", 1, until, t0).unwrap_err().code, "SignatureNonceUsed");
        let e = c.claim("a", 99, until, t0).unwrap_err();
        assert_eq!((e.code.as_ref(), e.status), ("Throttling.User", 400));
        c.claim("b", 0, until, t0).unwrap(); // nonces are per AccessKey
        c.claim("b", 1, until, t0).unwrap();
        let e = c.claim("c", 0, until, t0).unwrap_err();
        assert_eq!((e.code.as_ref(), e.status), ("ServiceUnavailable", 503));
        assert_eq!(c.total.load(Ordering::Relaxed), 5);
        // Nothing is forgotten early: still refused a second before the window ends ...
        assert_eq!(c.claim("c", 0, until + 900, until - 1).unwrap_err().code, "ServiceUnavailable");
        // ... and once the minute holding them has passed, they are gone, memory and count.
        let later = (until.div_euclid(60) + 1) * 60;
        c.claim("c", 0, later + 900, later).unwrap();
        assert_eq!(c.total.load(Ordering::Relaxed), 1, "only the new one remains");
        c.claim("a", 1, later + 900, later).unwrap();
        assert!(c.keys.read()["a"].lock().by_minute.len() == 1);
    }
}
