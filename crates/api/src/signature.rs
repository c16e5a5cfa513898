//! Alibaba Cloud request signatures, as pure functions (no sockets, no clocks).
//!
//! Two schemes reach the edge:
//! - **V1** (RPC "signature version 1.0", `SignatureMethod=HMAC-SHA1`): every parameter but
//!   `Signature`, sorted and percent-encoded, forms
//!   `METHOD&%2F&encode(canonical query)`, signed with HMAC-SHA1 under `secret + "&"`, base64.
//!   Used by `aliyun-python-sdk-core`, the Go SDK, Packer and the aliyun CLI.
//! - **V3** (`Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`): a
//!   canonical request (method, path, sorted query, the signed headers, the payload's
//!   SHA-256) hashed with SHA-256 and signed with HMAC-SHA256 under the secret, hex. Used by
//!   the `alibabacloud_*` SDKs.
//!
//! Both encode with RFC 3986: only `A-Z a-z 0-9 - _ . ~` stay as they are.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Every byte but the RFC 3986 unreserved ones is escaped.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes as both signature versions require (space is `%20`, `*` is `%2A`, `~` stays).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The canonical query string: pairs sorted by key (then value), each side encoded, `&`-joined.
/// Pairs named `skip` (the signature itself, for V1) are left out.
pub fn canonical_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, skip: Option<&str>) -> String {
    let mut v: Vec<(&str, &str)> = pairs.into_iter().filter(|(k, _)| Some(*k) != skip).collect();
    v.sort_unstable();
    let mut out = String::with_capacity(v.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() * 2);
    for (i, (k, val)) in v.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(val));
    }
    out
}

/// V1: the string to sign for `method` and the request's parameters (query and form).
pub fn v1_string_to_sign<'a>(method: &str, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let canonical = canonical_query(params, Some("Signature"));
    format!("{method}&%2F&{}", percent_encode(&canonical))
}

/// V1: the base64 HMAC-SHA1 of `string_to_sign` under `secret + "&"`.
pub fn v1_sign(secret: &str, string_to_sign: &str) -> String {
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret.as_bytes());
    key.push(b'&');
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The only V3 algorithm feitian accepts.
pub const ACS3_HMAC_SHA256: &str = "ACS3-HMAC-SHA256";

/// The parts of a V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization<'a> {
    pub algorithm: &'a str,
    pub access_key_id: &'a str,
    /// Lowercase header names, in the order given (`;`-separated in the header).
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `ALGO Credential=AK,SignedHeaders=h1;h2,Signature=hex`. `None` when any part is
/// missing or the shape is wrong (the caller answers `IncompleteSignature`).
pub fn parse_v3_authorization(header: &str) -> Option<V3Authorization<'_>> {
    let (algorithm, rest) = header.trim().split_once(' ')?;
    let (mut ak, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => ak = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => sig = Some(v.trim()),
            _ => return None,
        }
    }
    let (ak, signed, sig) = (ak?, signed?, sig?);
    if ak.is_empty() || signed.is_empty() || sig.is_empty() {
        return None;
    }
    Some(V3Authorization { algorithm, access_key_id: ak, signed_headers: signed.split(';').collect(), signature: sig })
}

/// The inputs of a V3 canonical request.
pub struct V3Request<'a> {
    pub method: &'a str,
    /// The request path as sent (already percent-encoded), `/` for RPC.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: Vec<(&'a str, &'a str)>,
    /// `(lowercase name, values)` for every signed header, in any order.
    pub signed_headers: Vec<(&'a str, Vec<&'a str>)>,
    /// Hex SHA-256 of the body, as the client declared it in `x-acs-content-sha256`.
    pub payload_hash: &'a str,
}

/// V3: the canonical request.
pub fn v3_canonical_request(r: &V3Request<'_>) -> String {
    let path = if r.path.is_empty() { "/" } else { r.path };
    let query = canonical_query(r.query.iter().copied(), None);
    let mut headers: Vec<(&str, Vec<&str>)> = r.signed_headers.clone();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut canonical_headers = String::new();
    let mut names = Vec::with_capacity(headers.len());
    for (name, values) in &headers {
        let mut vals: Vec<&str> = values.iter().map(|v| v.trim()).collect();
        vals.sort_unstable();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&vals.join(","));
        canonical_headers.push('\n');
        names.push(*name);
    }
    format!("{}\n{}\n{}\n{}\n{}\n{}", r.method, path, query, canonical_headers, names.join(";"), r.payload_hash)
}

/// V3: `ACS3-HMAC-SHA256\nhex(sha256(canonical_request))`.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!("{ACS3_HMAC_SHA256}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// V3: hex HMAC-SHA256 of the string to sign under the secret.
pub fn v3_sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two signatures in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/e+f"), "a%20b%2Ac~d%2Fe%2Bf");
        assert_eq!(percent_encode("2026-11-22T03:04:05Z"), "2026-11-22T03%3A04%3A05Z");
        assert_eq!(percent_encode("杭"), "%E6%9D%AD");
    }

    /// The worked example of the public "signature mechanism" page for RPC V1 (DescribeRegions,
    /// secret `testsecret`), which every V1 client reproduces.
    #[test]
    fn v1_matches_the_documented_example() {
        let params = [
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ];
        let sts = v1_string_to_sign("GET", params);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(v1_sign("testsecret", &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn v1_ignores_the_signature_parameter() {
        let a = v1_string_to_sign("POST", [("A", "1"), ("Signature", "x")]);
        let b = v1_string_to_sign("POST", [("A", "1")]);
        assert_eq!(a, b);
    }

    #[test]
    fn v3_authorization_parses() {
        let h = "ACS3-HMAC-SHA256 Credential=LTAI,SignedHeaders=host;x-acs-action,Signature=abcd";
        let a = parse_v3_authorization(h).unwrap();
        assert_eq!(a.algorithm, ACS3_HMAC_SHA256);
        assert_eq!(a.access_key_id, "LTAI");
        assert_eq!(a.signed_headers, vec!["host", "x-acs-action"]);
        assert_eq!(a.signature, "abcd");
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=LTAI,Signature=ab").is_none());
        assert!(parse_v3_authorization("garbage").is_none());
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=,SignedHeaders=h,Signature=x").is_none());
    }

    /// The canonical request layout of the public V3 documentation; the signature is the one the
    /// official Python SDK's signer produces for this exact input.
    #[test]
    fn v3_canonical_request_and_signature() {
        let body_hash = sha256_hex(b"");
        let r = V3Request {
            method: "POST",
            path: "/",
            query: vec![
                ("RegionId", "cn-hangzhou"),
                ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
            ],
            signed_headers: vec![
                ("x-acs-action", vec!["RunInstances"]),
                ("host", vec!["ecs.cn-hangzhou.aliyuncs.com"]),
                ("x-acs-version", vec!["2014-05-26"]),
                ("x-acs-date", vec!["2023-10-26T10:22:32Z"]),
                ("x-acs-signature-nonce", vec!["3156853299f313e23d1673dc12e1703d"]),
                ("x-acs-content-sha256", vec![body_hash.as_str()]),
            ],
            payload_hash: &body_hash,
        };
        let cr = v3_canonical_request(&r);
        let expected = format!(
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-hangzhou\nhost:ecs.cn-hangzhou.aliyuncs.com\nx-acs-action:RunInstances\nx-acs-content-sha256:{h}\nx-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n{h}",
            h = body_hash
        );
        assert_eq!(cr, expected);
        let sts = v3_string_to_sign(&cr);
        assert!(sts.starts_with("ACS3-HMAC-SHA256\n"));
        assert_eq!(sts.len(), "ACS3-HMAC-SHA256\n".len() + 64);
        // The value alibabacloud_tea_openapi's get_authorization computes for the same input.
        assert_eq!(
            v3_sign("YourAccessKeySecret", &sts),
            "db70e0aa6b6c8d412dd8d818ac19454d4c11e2cc91a091120bca1cf8fedd3912"
        );
        assert_ne!(v3_sign("other", &sts), v3_sign("YourAccessKeySecret", &sts));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
