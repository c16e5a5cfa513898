//! Authentication: who signed this request, and is it fresh?
//!
//! The edge hands over the request's parts; this module finds the AccessKey, checks the
//! timestamp window and the signature (V1 or V3, see [`crate::signature`]), and only then
//! records the nonce, so that a forged request cannot burn a client's nonce.
//!
//! Nonces are remembered in memory for twice the timestamp window (two rotating
//! generations), which is as long as a replay could still pass the timestamp check. A
//! restart forgets them: a request captured before a restart could be replayed once within
//! its 15 minutes. Documented in docs/protocol.md.

use crate::signature as sig;
use crate::ApiError;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far a request's timestamp may be from the server's clock, either way.
pub const TIMESTAMP_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

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

pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    nonces: NonceCache,
}

impl Authenticator {
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        Authenticator { keys, nonces: NonceCache::new(Duration::from_secs(2 * TIMESTAMP_WINDOW.num_seconds() as u64)) }
    }

    /// Authenticates one request at time `now`.
    pub fn authenticate(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
        if req.is_v3() {
            self.v3(req, now)
        } else {
            self.v1(req, now)
        }
    }

    fn credential(&self, access_key_id: &str) -> Result<Credential, ApiError> {
        let cred = self.keys.lookup(access_key_id)?.ok_or_else(ApiError::access_key_not_found)?;
        if !cred.active {
            return Err(ApiError::access_key_disabled());
        }
        Ok(cred)
    }

    fn v1(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
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
                return Err(ApiError::incomplete_signature(format!("SignatureVersion {v:?} is not 1.0.")));
            }
        }
        let nonce = need("SignatureNonce")?;
        let timestamp = need("Timestamp")?;
        let cred = self.credential(access_key_id)?;
        check_timestamp(timestamp, now)?;
        let pairs = req.query.iter().chain(req.form.iter()).map(|(k, v)| (k.as_str(), v.as_str()));
        let sts = sig::v1_string_to_sign(req.method, pairs);
        if !sig::constant_time_eq(&sig::v1_sign(&cred.secret, &sts), signature) {
            return Err(ApiError::signature_does_not_match(&sts));
        }
        self.nonces.claim(access_key_id, nonce)?;
        Ok(cred.caller)
    }

    fn v3(&self, req: &Incoming<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
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
        let payload_hash = need("x-acs-content-sha256")?;
        let cred = self.credential(auth.access_key_id)?;
        check_timestamp(timestamp, now)?;
        let mut signed_headers = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let values: Vec<&str> = req.headers.get_all(*name).iter().filter_map(|v| v.to_str().ok()).collect();
            if values.is_empty() {
                return Err(ApiError::incomplete_signature(format!("The signed header {name} is not in the request.")));
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
        self.nonces.claim(auth.access_key_id, nonce)?;
        Ok(cred.caller)
    }
}

fn check_timestamp(ts: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
    let t = DateTime::parse_from_rfc3339(ts).map_err(|_| ApiError::timestamp_format())?.with_timezone(&Utc);
    if (now - t).abs() > TIMESTAMP_WINDOW {
        return Err(ApiError::timestamp_expired());
    }
    Ok(())
}

/// Nonces seen recently, in two generations that rotate every `ttl / 2`: an entry lives
/// between `ttl / 2` and `ttl`. Sharded to keep lock contention low.
struct NonceCache {
    shards: Vec<Mutex<Generations>>,
    half: Duration,
}

struct Generations {
    current: HashSet<String>,
    previous: HashSet<String>,
    rotated: Instant,
}

const SHARDS: usize = 32;

impl NonceCache {
    fn new(ttl: Duration) -> Self {
        let now = Instant::now();
        NonceCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Generations { current: HashSet::new(), previous: HashSet::new(), rotated: now }))
                .collect(),
            half: ttl / 2,
        }
    }

    /// Records the nonce; `SignatureNonceUsed` if this AccessKey sent it before.
    fn claim(&self, access_key_id: &str, nonce: &str) -> Result<(), ApiError> {
        let key = format!("{access_key_id}\u{0}{nonce}");
        let shard = fxhash(key.as_bytes()) as usize % SHARDS;
        let mut g = self.shards[shard].lock();
        if g.rotated.elapsed() >= self.half {
            g.previous = std::mem::take(&mut g.current);
            if g.rotated.elapsed() >= 2 * self.half {
                g.previous.clear();
            }
            g.rotated = Instant::now();
        }
        if g.previous.contains(&key) || !g.current.insert(key) {
            return Err(ApiError::nonce_used());
        }
        Ok(())
    }
}

/// A small, fast, non-cryptographic hash for picking a shard (FNV-1a).
fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
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

    fn run(a: &Authenticator, q: &[(String, String)], headers: &HeaderMap) -> Result<Caller, ApiError> {
        let req = Incoming { method: "GET", path: "/", query: q, form: &[], headers, body: b"" };
        a.authenticate(&req, now())
    }

    #[test]
    fn v1_accepts_once_then_rejects_replay() {
        let a = Authenticator::new(Arc::new(OneKey));
        let h = HeaderMap::new();
        let q = v1_query("AK", "secret", "n1", "2026-11-22T08:01:00Z");
        assert_eq!(run(&a, &q, &h).unwrap().account_id, 1000000000000001);
        assert_eq!(run(&a, &q, &h).unwrap_err().code, "SignatureNonceUsed");
    }

    #[test]
    fn v1_errors() {
        let a = Authenticator::new(Arc::new(OneKey));
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
        let a = Authenticator::new(Arc::new(OneKey));
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
    fn nonce_generations_expire() {
        let c = NonceCache::new(Duration::from_millis(40));
        c.claim("a", "n").unwrap();
        assert!(c.claim("a", "n").is_err());
        assert!(c.claim("b", "n").is_ok(), "nonces are per AccessKey");
        std::thread::sleep(Duration::from_millis(90));
        c.claim("a", "n").unwrap();
    }
}
