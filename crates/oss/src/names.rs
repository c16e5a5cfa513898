//! Bucket names, object keys, and where a request points: which bucket and which key.
//!
//! # Bucket names
//! OSS's rules: 3–63 characters; lowercase letters, digits and `-`; first and last character a
//! letter or a digit. Anything else is `InvalidBucketName`. (`oss2.utils.is_valid_bucket_name`
//! checks the same rules client-side, but only to choose between virtual-hosted and IP-style
//! URLs, so a server must still refuse bad names itself.)
//!
//! # Object keys
//! OSS's rules: UTF-8, 1–1023 *bytes*, not starting with `/` or `\`. Nothing else is refused:
//! OSS does not forbid control characters, `..` segments, `//`, or a trailing `/`, so neither
//! does feitian (`InvalidObjectName` only for the three rules above).
//!
//! Keys are **opaque strings**, not paths. `a/../b`, `a/./b`, `a//b` and `b` are four different
//! objects; a key is never normalised, never resolved, and the storage layer must never map a
//! key onto a filesystem path (objects live in Pangu files named by ids, and keys live only in
//! the metadata store). That is what makes traversal-shaped keys harmless, rather than any
//! filtering here. For the same reason the request path is never dot-segment-normalised before
//! [`RequestTarget::parse`] sees it.
//!
//! # Request targets
//! `oss2` addresses a bucket in one of two ways (`oss2.api._UrlMaker`):
//! - virtual-hosted: `Host: <bucket>.<endpoint>`, path `/<key>`;
//! - path-style, used for IP and `localhost` endpoints and with `is_path_style=True`:
//!   `Host: <endpoint>`, path `/<bucket>/<key>`.
//!
//! The key is percent-encoded in the path (`oss2` encodes even `/`, as `%2F`, unless told
//! `slash_safe`), so the split into bucket and key happens on the raw path and only the key is
//! decoded. `+` is a literal plus in a path, not a space.

use percent_encoding::percent_decode_str;

use crate::errors::OssError;

/// Longest key in bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// Checks a bucket name against OSS's rules (`InvalidBucketName`).
pub fn validate_bucket_name(name: &str) -> Result<(), OssError> {
    if is_valid_bucket_name(name) {
        Ok(())
    } else {
        Err(OssError::invalid_bucket_name(name))
    }
}

/// Whether `name` is a valid bucket name (3–63 of `[a-z0-9-]`, letter or digit at both ends).
pub fn is_valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge(c) || c == b'-')
        && b.first().is_some_and(|&c| edge(c))
        && b.last().is_some_and(|&c| edge(c))
}

/// Checks an object key against OSS's rules (`InvalidObjectName`, with the real messages).
pub fn validate_object_key(key: &str) -> Result<(), OssError> {
    if key.is_empty() {
        return Err(OssError::invalid_object_name("The Object name can not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(OssError::invalid_object_name("The Length of Object name must be less than 1024"));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(OssError::invalid_object_name("The specified object is not valid."));
    }
    Ok(())
}

/// Decodes a percent-encoded key and checks it: invalid UTF-8 after decoding is
/// `InvalidObjectName` (keys are UTF-8). Malformed escapes (`%zz`) are kept literally, as
/// lenient servers do.
pub fn decode_object_key(encoded: &str) -> Result<String, OssError> {
    let key = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| OssError::invalid_object_name("The specified object is not valid."))?
        .into_owned();
    validate_object_key(&key)?;
    Ok(key)
}

/// How the request named its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// `Host: bucket.endpoint`, path `/key`.
    VirtualHosted,
    /// `Host: endpoint`, path `/bucket/key`.
    PathStyle,
}

/// What a request addresses: the service (no bucket: `ListBuckets`), a bucket (no key), or an
/// object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub style: AddressingStyle,
}

impl RequestTarget {
    /// Reads the target from the `Host` header and the raw request path (as sent, still
    /// percent-encoded; a `?query` is ignored). `endpoints` are the service host names this
    /// region answers to, such as `oss-cn-hangzhou.aliyuncs.com` or feitian's own
    /// `oss.feitian.internal`, without ports.
    ///
    /// The host is virtual-hosted when it is `<bucket>.<endpoint>` for a configured endpoint,
    /// or looks like a public OSS one (`<bucket>.oss-<region>[-internal].aliyuncs.com`).
    /// Any other host — an IP, `localhost`, an endpoint itself, an unknown name — is
    /// path-style, which is what `oss2` sends to such hosts.
    ///
    /// Errors: `InvalidBucketName` for a bucket that breaks the naming rules,
    /// `InvalidObjectName` for a key that does (including a path like `/bucket//x`, whose key
    /// would start with `/`).
    pub fn parse(host: Option<&str>, path: &str, endpoints: &[&str]) -> Result<RequestTarget, OssError> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let path = path.strip_prefix('/').unwrap_or(path);
        match host.and_then(|h| virtual_host_bucket(h, endpoints)) {
            Some(bucket) => {
                validate_bucket_name(&bucket)?;
                let key = if path.is_empty() { None } else { Some(decode_object_key(path)?) };
                Ok(RequestTarget { bucket: Some(bucket), key, style: AddressingStyle::VirtualHosted })
            }
            None => {
                if path.is_empty() {
                    return Ok(RequestTarget { bucket: None, key: None, style: AddressingStyle::PathStyle });
                }
                let (bucket, rest) = match path.split_once('/') {
                    Some((b, rest)) => (b, rest),
                    None => (path, ""),
                };
                validate_bucket_name(bucket)?;
                let key = if rest.is_empty() { None } else { Some(decode_object_key(rest)?) };
                Ok(RequestTarget { bucket: Some(bucket.to_owned()), key, style: AddressingStyle::PathStyle })
            }
        }
    }
}

/// The bucket named by a virtual-hosted `Host`, if it is one. Host names are case-insensitive,
/// so the bucket part is lowercased (a bucket name is lowercase anyway).
fn virtual_host_bucket(host: &str, endpoints: &[&str]) -> Option<String> {
    let host = strip_port(host.trim()).to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    for endpoint in endpoints {
        let endpoint = strip_port(endpoint).to_ascii_lowercase();
        if endpoint.is_empty() {
            continue;
        }
        if let Some(prefix) = host.strip_suffix(endpoint.as_str()).and_then(|p| p.strip_suffix('.')) {
            if !prefix.is_empty() {
                return Some(prefix.to_owned());
            }
        }
    }
    // <bucket>.oss-<region>[-internal|-accelerate…].aliyuncs.com
    let rest = host.strip_suffix(".aliyuncs.com")?;
    let (bucket, region) = rest.rsplit_once('.')?;
    if region.starts_with("oss-") && !bucket.is_empty() {
        return Some(bucket.to_owned());
    }
    None
}

/// The region a public OSS host name names: `oss-cn-shanghai.aliyuncs.com`,
/// `bkt.oss-cn-shanghai.aliyuncs.com` and `oss-cn-shanghai-internal.aliyuncs.com` are
/// `cn-shanghai`. `None` for any other host, and for the region-less global endpoints
/// (`oss-accelerate`, `oss-accelerate-overseas`). The service refuses a region that is not
/// its own, so that a request meant for another region is never answered from this one.
pub fn oss_host_region(host: &str) -> Option<String> {
    let host = strip_port(host.trim()).to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let rest = host.strip_suffix(".aliyuncs.com")?;
    let label = rest.rsplit_once('.').map_or(rest, |(_, last)| last);
    let region = label.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    if region.is_empty() || region.starts_with("accelerate") {
        return None;
    }
    Some(region.to_owned())
}

/// `host:port` → `host`, `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: &[&str] = &["oss-cn-hangzhou.aliyuncs.com", "oss.feitian.internal:8080"];

    fn target(host: &str, path: &str) -> Result<RequestTarget, OssError> {
        RequestTarget::parse(Some(host), path, EPS)
    }

    #[test]
    fn regions_of_oss_hosts() {
        let r = |h: &str| oss_host_region(h);
        assert_eq!(r("oss-cn-shanghai.aliyuncs.com").as_deref(), Some("cn-shanghai"));
        assert_eq!(r("bkt.oss-cn-shanghai.aliyuncs.com:80").as_deref(), Some("cn-shanghai"));
        assert_eq!(r("BKT.OSS-CN-Hangzhou-Internal.aliyuncs.com.").as_deref(), Some("cn-hangzhou"));
        for none in [
            "oss-accelerate.aliyuncs.com",
            "b.oss-accelerate-overseas.aliyuncs.com",
            "ecs.cn-shanghai.aliyuncs.com",
            "oss-.aliyuncs.com",
            "oss.feitian.internal:8080",
            "127.0.0.1:8080",
            "oss-cn-shanghai.aliyuncs.com.evil.example",
        ] {
            assert_eq!(r(none), None, "{none}");
        }
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "a-b", "0ab", "ab0", "examplebucket1", "test-bucket-2021", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "ab", &"a".repeat(64), "Abc", "a_b", "-ab", "ab-", "a.b", "a b", "ab\u{e9}", "aliyun-oss-bucket-"]
        {
            let e = validate_bucket_name(bad).unwrap_err();
            assert_eq!((e.status, e.code), (400, "InvalidBucketName"), "{bad}");
        }
    }

    #[test]
    fn object_keys() {
        for ok in ["a", "a/b", "a/../b", "..", ".", "a//b", "dir/", " space ", "tab\there", "new\nline", "é", "a\\b"] {
            assert!(validate_object_key(ok).is_ok(), "{ok:?}");
        }
        assert!(validate_object_key(&"x".repeat(1023)).is_ok());
        // 1023 bytes is the limit, not 1023 characters.
        assert!(validate_object_key(&"é".repeat(512)).is_err());
        for bad in ["", "/a", "\\a", &"x".repeat(1024)] {
            let e = validate_object_key(bad).unwrap_err();
            assert_eq!((e.status, e.code), (400, "InvalidObjectName"), "{bad:?}");
        }
    }

    #[test]
    fn traversal_shaped_keys_stay_distinct_and_unresolved() {
        let t = target("127.0.0.1:9000", "/bkt/a%2F..%2Fb").unwrap();
        assert_eq!(t.key.as_deref(), Some("a/../b"));
        let t = target("127.0.0.1:9000", "/bkt/a/../b").unwrap();
        assert_eq!(t.key.as_deref(), Some("a/../b"));
        let t = target("127.0.0.1:9000", "/bkt/..").unwrap();
        assert_eq!(t.key.as_deref(), Some(".."));
    }

    #[test]
    fn path_style() {
        let t = target("127.0.0.1:9000", "/").unwrap();
        assert_eq!(t, RequestTarget { bucket: None, key: None, style: AddressingStyle::PathStyle });
        let t = target("localhost", "").unwrap();
        assert_eq!(t.bucket, None);
        for p in ["/bkt", "/bkt/", "/bkt?acl", "/bkt/?uploads"] {
            let t = target("127.0.0.1", p).unwrap();
            assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("bkt"), None), "{p}");
        }
        let t = target("oss-cn-hangzhou.aliyuncs.com", "/bkt/dir%2Ffile%20name+x.txt?versionId=1").unwrap();
        assert_eq!(t.bucket.as_deref(), Some("bkt"));
        assert_eq!(t.key.as_deref(), Some("dir/file name+x.txt"));
        assert_eq!(t.style, AddressingStyle::PathStyle);
        // oss2 with slash_safe leaves '/' unencoded.
        let t = target("127.0.0.1", "/bkt/a/b/c").unwrap();
        assert_eq!(t.key.as_deref(), Some("a/b/c"));
    }

    #[test]
    fn virtual_hosted() {
        let t = target("bkt.oss-cn-hangzhou.aliyuncs.com", "/").unwrap();
        assert_eq!(t, RequestTarget { bucket: Some("bkt".into()), key: None, style: AddressingStyle::VirtualHosted });
        let t = target("BKT.OSS-CN-HANGZHOU.ALIYUNCS.COM:443", "/%E4%B8%AD%E6%96%87.txt").unwrap();
        assert_eq!(t.bucket.as_deref(), Some("bkt"));
        assert_eq!(t.key.as_deref(), Some("中文.txt"));
        let t = target("bkt.oss.feitian.internal:8080", "/k").unwrap();
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("bkt"), Some("k")));
        // Any public OSS region, even one not configured.
        let t = target("bkt.oss-us-west-1-internal.aliyuncs.com", "/k").unwrap();
        assert_eq!(t.bucket.as_deref(), Some("bkt"));
        assert_eq!(t.style, AddressingStyle::VirtualHosted);
        // The endpoint alone is path-style.
        let t = target("oss.feitian.internal", "/bkt/k").unwrap();
        assert_eq!(t.style, AddressingStyle::PathStyle);
        // Not a bucket: ecs.aliyuncs.com has no oss- label.
        let t = target("ecs.aliyuncs.com", "/bkt/k").unwrap();
        assert_eq!(t.style, AddressingStyle::PathStyle);
    }

    #[test]
    fn bad_targets() {
        assert_eq!(target("127.0.0.1", "/Bad_Bucket/k").unwrap_err().code, "InvalidBucketName");
        assert_eq!(target("a.b.oss-cn-hangzhou.aliyuncs.com", "/k").unwrap_err().code, "InvalidBucketName");
        assert_eq!(target("127.0.0.1", "/bkt//k").unwrap_err().code, "InvalidObjectName");
        assert_eq!(target("127.0.0.1", "/bkt/%5Ck").unwrap_err().code, "InvalidObjectName");
        assert_eq!(target("127.0.0.1", "/bkt/%FF%FE").unwrap_err().code, "InvalidObjectName");
        assert_eq!(target("bkt.oss-cn-hangzhou.aliyuncs.com", "//k").unwrap_err().code, "InvalidObjectName");
        let long = format!("/bkt/{}", "x".repeat(1024));
        assert_eq!(target("127.0.0.1", &long).unwrap_err().code, "InvalidObjectName");
    }

    #[test]
    fn malformed_escapes_are_literal_and_nothing_panics() {
        let t = target("127.0.0.1", "/bkt/100%zz%").unwrap();
        assert_eq!(t.key.as_deref(), Some("100%zz%"));
        let inputs =
            ["", "/", "//", "///", "%", "/%", "/b%", "/bkt/%", "[::1]:80", "[::1", ":", "bkt.:1", ".aliyuncs.com"];
        for h in inputs {
            for p in inputs {
                let _ = RequestTarget::parse(Some(h), p, EPS);
                let _ = RequestTarget::parse(None, p, &[]);
            }
        }
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("host:80"), "host");
    }
}
