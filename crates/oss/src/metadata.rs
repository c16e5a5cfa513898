//! An object's metadata between the wire and the store: what a write keeps from its request
//! headers, the headers GetObject and HeadObject answer with, and the small request headers
//! of the object actions (`x-oss-copy-source`, `x-oss-metadata-directive`,
//! `x-oss-forbid-overwrite`, `versionId`).
//!
//! Kept: `Content-Type` (default `application/octet-stream`), `Cache-Control`,
//! `Content-Disposition`, `Content-Encoding`, `Content-Language`, `Expires`, and the user
//! metadata `x-oss-meta-*` (names lowercase, as OSS returns them; at most 8 KB of names and
//! values together). They are served back verbatim; GetObject's `response-*` query
//! parameters override them in that one answer, for signed requests only: OSS refuses them
//! on an anonymous GET (400 `InvalidRequest`), or anyone could have a public text object
//! served as inline HTML from the bucket's origin.

use std::borrow::Cow;
use std::collections::BTreeMap;

use feitian_meta::object::{Object, ObjectHeaders};

use crate::dates::{format_http_date, from_unix_millis};
use crate::errors::OssError;
use crate::{crc64, etag, names};

/// Response headers: names lowercase, values as sent.
pub type HeaderList = Vec<(Cow<'static, str>, String)>;

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Most bytes of user metadata (names and values) one object may carry.
pub const MAX_USER_META_BYTES: usize = 8 * 1024;
const USER_META_PREFIX: &str = "x-oss-meta-";

/// The stored headers a write request gives its object. `headers` are the request's, names
/// lowercase; the first of repeated headers counts.
pub fn from_request(headers: &[(String, String)]) -> Result<ObjectHeaders, OssError> {
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut meta = BTreeMap::new();
    let mut total = 0usize;
    for (k, v) in headers {
        let Some(name) = k.strip_prefix(USER_META_PREFIX).filter(|n| !n.is_empty()) else { continue };
        if meta.contains_key(name) {
            continue;
        }
        total += name.len() + v.len();
        meta.insert(name.to_owned(), v.clone());
    }
    if total > MAX_USER_META_BYTES {
        return Err(OssError::invalid_argument(
            "x-oss-meta-*",
            &total.to_string(),
            "Your metadata headers exceed the maximum allowed metadata size (8 KB).",
        ));
    }
    Ok(ObjectHeaders {
        content_type: get("content-type")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        cache_control: get("cache-control"),
        content_disposition: get("content-disposition"),
        content_encoding: get("content-encoding"),
        content_language: get("content-language"),
        expires: get("expires"),
        user_meta: encode_user_meta(&meta),
    })
}

/// User metadata as stored: a JSON object of name → value.
pub fn encode_user_meta(meta: &BTreeMap<String, String>) -> String {
    serde_json::to_string(meta).unwrap_or_else(|_| "{}".into())
}

/// Stored user metadata back as name → value (empty if unreadable, which only a hand-edited
/// database could produce).
pub fn decode_user_meta(stored: &str) -> BTreeMap<String, String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// The headers GetObject and HeadObject answer with, `Content-Length` and `Content-Range`
/// aside (they depend on the range served).
pub fn object_headers(o: &Object) -> HeaderList {
    let mut h: HeaderList = vec![
        ("content-type".into(), o.headers.content_type.clone()),
        ("etag".into(), o.etag.clone()),
        ("last-modified".into(), format_http_date(from_unix_millis(o.last_modified_ms))),
        ("accept-ranges".into(), "bytes".into()),
        ("x-oss-object-type".into(), o.object_type.clone()),
        ("x-oss-storage-class".into(), o.storage_class.clone()),
        ("x-oss-hash-crc64ecma".into(), crc64::header_value(o.crc64)),
    ];
    // An appendable object tells where the next append goes.
    if o.object_type == "Appendable" {
        h.push(("x-oss-next-append-position".into(), o.size.to_string()));
    }
    // A simple object's ETag is its MD5, which OSS also serves as Content-MD5.
    if o.object_type == "Normal" {
        if let Some(md5) = etag::md5_of(&o.etag) {
            h.push(("content-md5".into(), etag::content_md5(&md5)));
        }
    }
    let optional = [
        ("cache-control", &o.headers.cache_control),
        ("content-disposition", &o.headers.content_disposition),
        ("content-encoding", &o.headers.content_encoding),
        ("content-language", &o.headers.content_language),
        ("expires", &o.headers.expires),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            h.push((name.into(), v.clone()));
        }
    }
    for (name, value) in decode_user_meta(&o.headers.user_meta) {
        h.push((format!("{USER_META_PREFIX}{name}").into(), value));
    }
    h
}

/// GetObject's query parameters that override a stored header in the answer.
const OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

/// Refuses `response-*` query parameters on an anonymous request, as OSS does ("Request
/// specific response headers cannot be used for anonymous GET requests", 400
/// `InvalidRequest`).
pub fn check_overrides_allowed(params: &[(String, String)], anonymous: bool) -> Result<(), OssError> {
    if anonymous && params.iter().any(|(k, _)| OVERRIDES.iter().any(|(p, _)| p == k)) {
        return Err(OssError::invalid_request(
            "Request specific response headers cannot be used for anonymous GET requests.",
        ));
    }
    Ok(())
}

/// Applies `response-*` query parameters (non-empty ones) to an answer's headers.
pub fn apply_overrides(h: &mut HeaderList, params: &[(String, String)]) {
    for (param, header) in OVERRIDES {
        let Some(value) = params.iter().find(|(k, v)| k == param && !v.is_empty()).map(|(_, v)| v) else {
            continue;
        };
        match h.iter_mut().find(|(k, _)| k == header) {
            Some(slot) => slot.1 = value.clone(),
            None => h.push((header.into(), value.clone())),
        }
    }
}

/// `x-oss-metadata-directive` of CopyObject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataDirective {
    /// The default: the copy keeps the source's metadata.
    Copy,
    /// The copy takes the metadata in the request.
    Replace,
}

impl MetadataDirective {
    pub fn from_header(value: Option<&str>) -> Result<Self, OssError> {
        match value.map(str::trim) {
            None | Some("") => Ok(MetadataDirective::Copy),
            Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(MetadataDirective::Copy),
            Some(v) if v.eq_ignore_ascii_case("REPLACE") => Ok(MetadataDirective::Replace),
            Some(v) => Err(OssError::invalid_argument(
                "x-oss-metadata-directive",
                v,
                "The x-oss-metadata-directive you specified is not valid: use COPY or REPLACE.",
            )),
        }
    }
}

/// `x-oss-forbid-overwrite: true` (any case): refuse to replace an existing object.
pub fn forbid_overwrite(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A `versionId` names the current version only as `null` (buckets here are unversioned).
pub fn check_version_id(value: Option<&str>) -> Result<(), OssError> {
    match value {
        None | Some("null") => Ok(()),
        Some(v) => Err(OssError::no_such_version(v)),
    }
}

/// Reads `x-oss-copy-source`: `/bucket/key` with the key percent-encoded (`oss2` encodes
/// everything, `/` included), optionally followed by `?versionId=…`.
pub fn parse_copy_source(value: &str) -> Result<(String, String), OssError> {
    let invalid = || {
        OssError::invalid_argument(
            "x-oss-copy-source",
            value,
            "Copy Source must mention the source bucket and key: /sourcebucket/sourcekey.",
        )
    };
    let (path, query) = value.trim().split_once('?').unwrap_or((value.trim(), ""));
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or_else(invalid)?;
    if !names::is_valid_bucket_name(bucket) || key.is_empty() {
        return Err(invalid());
    }
    let key = names::decode_object_key(key)?;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "versionId" {
            check_version_id(Some(&v))?;
        }
    }
    Ok((bucket.to_owned(), key))
}

#[cfg(test)]
mod tests {
    use super::{check_overrides_allowed, OVERRIDES};

    #[test]
    fn response_overrides_need_a_signature() {
        let none: Vec<(String, String)> = vec![("x-oss-process".into(), String::new())];
        assert!(check_overrides_allowed(&none, true).is_ok());
        for (param, _) in OVERRIDES {
            for value in ["text/html", ""] {
                let p = vec![(param.to_string(), value.to_string())];
                let e = check_overrides_allowed(&p, true).unwrap_err();
                assert_eq!((e.status, e.code), (400, "InvalidRequest"), "{param}={value}");
                assert!(check_overrides_allowed(&p, false).is_ok(), "{param}, signed");
            }
        }
    }

    use super::*;

    fn hdrs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn object(h: ObjectHeaders) -> Object {
        Object {
            bucket: "b".into(),
            key: "k".into(),
            size: 11,
            etag: "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"".into(),
            crc64: 5981764153023615706,
            object_type: "Normal".into(),
            headers: h,
            acl: "default".into(),
            storage_class: "Standard".into(),
            // 2015-12-05T11:10:29.512Z
            last_modified_ms: 1_449_313_829_512,
        }
    }

    fn find<'a>(h: &'a HeaderList, name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn request_headers_are_kept() {
        let h = from_request(&hdrs(&[
            ("content-type", "text/plain"),
            ("cache-control", "no-cache"),
            ("content-disposition", "attachment; filename=a.txt"),
            ("content-encoding", "gzip"),
            ("content-language", "zh-CN"),
            ("expires", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("x-oss-meta-author", "me"),
            ("x-oss-meta-author", "someone else"),
            ("x-oss-meta-", "nameless"),
            ("x-oss-object-acl", "private"),
        ]))
        .unwrap();
        assert_eq!(h.content_type, "text/plain");
        assert_eq!(h.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(h.content_disposition.as_deref(), Some("attachment; filename=a.txt"));
        assert_eq!(h.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(h.content_language.as_deref(), Some("zh-CN"));
        assert_eq!(h.expires.as_deref(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(h.user_meta, "{\"author\":\"me\"}");
        let bare = from_request(&[]).unwrap();
        assert_eq!(bare.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(bare.user_meta, "{}");
        assert_eq!(bare.cache_control, None);
    }

    #[test]
    fn user_metadata_is_limited_to_8_kb() {
        let big = "x".repeat(MAX_USER_META_BYTES);
        assert!(from_request(&hdrs(&[("x-oss-meta-a", &big[1..])])).is_ok());
        let e = from_request(&hdrs(&[("x-oss-meta-a", &big[1..]), ("x-oss-meta-b", "1")])).unwrap_err();
        assert_eq!((e.status, e.code), (400, "InvalidArgument"));
    }

    #[test]
    fn answer_headers() {
        let stored = from_request(&hdrs(&[
            ("content-type", "text/plain"),
            ("content-language", "en"),
            ("x-oss-meta-b", "2"),
            ("x-oss-meta-a", "1"),
        ]))
        .unwrap();
        let h = object_headers(&object(stored));
        assert_eq!(find(&h, "content-type"), Some("text/plain"));
        assert_eq!(find(&h, "etag"), Some("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\""));
        assert_eq!(find(&h, "last-modified"), Some("Sat, 05 Dec 2015 11:10:29 GMT"));
        assert_eq!(find(&h, "accept-ranges"), Some("bytes"));
        assert_eq!(find(&h, "x-oss-object-type"), Some("Normal"));
        assert_eq!(find(&h, "x-oss-storage-class"), Some("Standard"));
        assert_eq!(find(&h, "x-oss-hash-crc64ecma"), Some("5981764153023615706"));
        assert_eq!(find(&h, "content-md5"), Some("XrY7u+Ae7tCTyyK7j1rNww=="));
        assert_eq!(find(&h, "content-language"), Some("en"));
        assert_eq!(find(&h, "cache-control"), None);
        assert_eq!(find(&h, "x-oss-meta-a"), Some("1"));
        assert_eq!(find(&h, "x-oss-meta-b"), Some("2"));
        // No Content-MD5 for objects whose ETag is not an MD5.
        let mut o = object(ObjectHeaders { content_type: "x/y".into(), user_meta: "{}".into(), ..Default::default() });
        o.object_type = "Multipart".into();
        o.etag = "\"72D27AFAC8E2FBD3662861B9D607A02C-2\"".into();
        assert_eq!(find(&object_headers(&o), "content-md5"), None);
        assert_eq!(find(&object_headers(&o), "x-oss-next-append-position"), None);
        o.object_type = "Appendable".into();
        assert_eq!(find(&object_headers(&o), "x-oss-next-append-position"), Some("11"));
    }

    #[test]
    fn response_overrides() {
        let mut h: HeaderList = vec![("content-type".into(), "text/plain".into())];
        apply_overrides(
            &mut h,
            &hdrs(&[
                ("response-content-type", "image/png"),
                ("response-content-disposition", "attachment"),
                ("response-expires", ""),
                ("response-unknown", "x"),
            ]),
        );
        assert_eq!(find(&h, "content-type"), Some("image/png"));
        assert_eq!(find(&h, "content-disposition"), Some("attachment"));
        assert_eq!(find(&h, "expires"), None);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn small_request_headers() {
        assert_eq!(MetadataDirective::from_header(None), Ok(MetadataDirective::Copy));
        assert_eq!(MetadataDirective::from_header(Some("COPY")), Ok(MetadataDirective::Copy));
        assert_eq!(MetadataDirective::from_header(Some("REPLACE")), Ok(MetadataDirective::Replace));
        assert_eq!(MetadataDirective::from_header(Some("MOVE")).unwrap_err().code, "InvalidArgument");
        assert!(forbid_overwrite(Some("true")));
        assert!(forbid_overwrite(Some("True")));
        assert!(!forbid_overwrite(Some("false")));
        assert!(!forbid_overwrite(None));
        assert_eq!(check_version_id(None), Ok(()));
        assert_eq!(check_version_id(Some("null")), Ok(()));
        assert_eq!(check_version_id(Some("CAEQ")).unwrap_err().code, "NoSuchVersion");
    }

    #[test]
    fn copy_sources() {
        // What oss2 sends: '/' + bucket + '/' + urlquote(key, '').
        assert_eq!(
            parse_copy_source("/src-bucket/dir%2Fa%20b%2Bc.txt").unwrap(),
            ("src-bucket".into(), "dir/a b+c.txt".into())
        );
        assert_eq!(parse_copy_source("src-bucket/k").unwrap(), ("src-bucket".into(), "k".into()));
        assert_eq!(parse_copy_source("/b1b/%E4%B8%AD%3F").unwrap(), ("b1b".into(), "中?".into()));
        assert_eq!(parse_copy_source("/bkt/k?versionId=null").unwrap(), ("bkt".into(), "k".into()));
        assert_eq!(parse_copy_source("/bkt/k?versionId=CAEQ").unwrap_err().code, "NoSuchVersion");
        for bad in ["", "/", "/bkt", "/bkt/", "/B_ad/k", "//k"] {
            let e = parse_copy_source(bad).unwrap_err();
            assert_eq!((e.code, e.detail("ArgumentName")), ("InvalidArgument", Some("x-oss-copy-source")), "{bad:?}");
        }
        assert_eq!(parse_copy_source("/bkt/%2Fk").unwrap_err().code, "InvalidObjectName");
    }
}
