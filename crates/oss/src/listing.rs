//! The pure cores of the listing operations: ListObjects (V1 and V2), ListBuckets,
//! ListMultipartUploads and ListParts. Each takes the request's query parameters and an
//! iterator of entries **sorted ascending by key (bytes, i.e. UTF-8 order)** and returns one
//! page; rendering is [`crate::xml::answers`]'s job.
//!
//! # The model
//! A listing is a sequence of *entries* in key order. With a delimiter, every key that has the
//! delimiter after the prefix is folded into one entry, its *common prefix* (up to and
//! including the first delimiter after the prefix), placed where its first key would be.
//! Then:
//! - the marker (`marker`, `start-after`, the decoded `continuation-token`, `key-marker`) is
//!   **exclusive**: entries whose name is ≤ the marker are skipped — a common prefix too, so
//!   paging with a `NextMarker` that is a common prefix resumes after the whole group;
//! - `max-keys` counts entries, **common prefixes included** (OSS: "the sum of objects and
//!   directories cannot exceed max-keys");
//! - `IsTruncated` is true exactly when another entry exists after the page, and `NextMarker`
//!   (V1) / `NextContinuationToken` (V2) name the page's last entry.
//!
//! # Parameters
//! `oss2` sends every parameter even when empty (`prefix=&delimiter=&marker=`), so an empty
//! value means "not given". `max-keys` is 1–1000, default 100 (uploads and parts: 1–1000,
//! default 1000); anything else, and `encoding-type` other than `url`, is `InvalidArgument`.
//! Prefixes and markers longer than a key can be (1023 bytes) are `InvalidArgument` too.
//!
//! # Continuation tokens
//! V2's tokens are opaque to clients; feitian's is the URL-safe base64 (no padding) of the
//! last entry's name, so it survives `encoding-type=url` unchanged and needs no server state.
//! A token that does not decode to UTF-8 is `InvalidArgument`. A token takes precedence over
//! `start-after`, as in S3.

use base64::Engine;

use crate::errors::OssError;
use crate::model::{BucketSummary, ObjectSummary, PartSummary, UploadSummary};

/// Default and largest `max-keys` of ListObjects and ListBuckets.
pub const DEFAULT_MAX_KEYS: usize = 100;
pub const MAX_KEYS_LIMIT: usize = 1000;
/// Default and largest `max-uploads` / `max-parts`.
pub const DEFAULT_MAX_UPLOADS: usize = 1000;
pub const DEFAULT_MAX_PARTS: usize = 1000;
/// Longest accepted prefix, marker or delimiter (a key is at most 1023 bytes).
const MAX_PARAM_BYTES: usize = 1023;

/// Anything listable: it has a key (a bucket's name, an object's key).
pub trait Listed {
    fn key(&self) -> &str;
}

impl<T: Listed + ?Sized> Listed for &T {
    fn key(&self) -> &str {
        (**self).key()
    }
}

impl Listed for str {
    fn key(&self) -> &str {
        self
    }
}

impl Listed for String {
    fn key(&self) -> &str {
        self
    }
}

impl Listed for ObjectSummary {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Listed for BucketSummary {
    fn key(&self) -> &str {
        &self.name
    }
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub contents: Vec<T>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The name of the last entry returned, when truncated.
    pub next_marker: Option<String>,
}

impl<T> Page<T> {
    /// Entries returned: contents plus common prefixes (V2's `KeyCount`).
    pub fn key_count(&self) -> usize {
        self.contents.len() + self.common_prefixes.len()
    }
}

/// Lists `items` (sorted by key): those starting with `prefix`, after `marker` (exclusive),
/// folded by `delimiter` (empty: no folding), at most `max` entries.
///
/// The iterator is consumed only as far as needed: up to the first key past the prefix, or
/// one entry past the page.
pub fn list<T: Listed>(
    items: impl IntoIterator<Item = T>,
    prefix: &str,
    delimiter: &str,
    marker: &str,
    max: usize,
) -> Page<T> {
    let mut page = Page { contents: Vec::new(), common_prefixes: Vec::new(), is_truncated: false, next_marker: None };
    let mut last: Option<String> = None;
    for item in items {
        let key = item.key();
        if key <= marker {
            continue;
        }
        if !key.starts_with(prefix) {
            if key > prefix {
                // Sorted input: every later key is past the prefix's range too.
                break;
            }
            continue;
        }
        match common_prefix(key, prefix, delimiter) {
            Some(cp) => {
                if cp <= marker || page.common_prefixes.last().is_some_and(|p| p == cp) {
                    continue;
                }
                if page.key_count() >= max {
                    page.is_truncated = true;
                    break;
                }
                page.common_prefixes.push(cp.to_owned());
                last = Some(cp.to_owned());
            }
            None => {
                if page.key_count() >= max {
                    page.is_truncated = true;
                    break;
                }
                last = Some(key.to_owned());
                page.contents.push(item);
            }
        }
    }
    if page.is_truncated {
        page.next_marker = last;
    }
    page
}

/// The common prefix `key` folds into: `prefix` + text up to and including the first
/// `delimiter` after it. `None` without a delimiter or when the key has none after the prefix.
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

// --- parameters ----------------------------------------------------------------------------

/// The query parameters of one request, first occurrence of each name winning.
struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Query { pairs: pairs.into_iter().collect() }
    }

    /// The value of `name` when given and non-empty.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).filter(|v| !v.is_empty())
    }

    /// A string parameter bounded by [`MAX_PARAM_BYTES`]; empty when absent.
    fn text(&self, name: &str) -> Result<String, OssError> {
        let v = self.get(name).unwrap_or("");
        if v.len() > MAX_PARAM_BYTES {
            return Err(OssError::invalid_argument(name, v, &format!("The length of {name} must be less than 1024.")));
        }
        Ok(v.to_owned())
    }

    /// An integer in `1..=max`, `default` when absent.
    fn count(&self, name: &str, default: usize, max: usize) -> Result<usize, OssError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(OssError::invalid_argument(
                    name,
                    v,
                    &format!("Argument {name} must be an integer between 1 and {max}."),
                )),
            },
        }
    }

    /// `encoding-type`: `url` or absent.
    fn url_encoded(&self) -> Result<bool, OssError> {
        match self.get("encoding-type") {
            None => Ok(false),
            Some("url") => Ok(true),
            Some(v) => Err(OssError::invalid_argument("encoding-type", v, "The encoding-type parameter must be url.")),
        }
    }
}

/// ListObjects (`GET /?prefix&delimiter&marker&max-keys&encoding-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListObjectsV1Request {
    pub prefix: String,
    pub delimiter: String,
    pub marker: String,
    pub max_keys: usize,
    pub url_encoded: bool,
}

impl ListObjectsV1Request {
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OssError> {
        let q = Query::new(pairs);
        Ok(ListObjectsV1Request {
            prefix: q.text("prefix")?,
            delimiter: q.text("delimiter")?,
            marker: q.text("marker")?,
            max_keys: q.count("max-keys", DEFAULT_MAX_KEYS, MAX_KEYS_LIMIT)?,
            url_encoded: q.url_encoded()?,
        })
    }

    /// This request's page of `items` (sorted by key).
    pub fn page<T: Listed>(&self, items: impl IntoIterator<Item = T>) -> Page<T> {
        list(items, &self.prefix, &self.delimiter, &self.marker, self.max_keys)
    }
}

/// ListObjectsV2 (`GET /?list-type=2&prefix&delimiter&continuation-token&start-after&fetch-owner
/// &max-keys&encoding-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListObjectsV2Request {
    pub prefix: String,
    pub delimiter: String,
    pub start_after: String,
    /// The token as the client sent it (echoed in the answer).
    pub continuation_token: Option<String>,
    pub max_keys: usize,
    pub fetch_owner: bool,
    pub url_encoded: bool,
    /// Where the page starts (exclusive): the decoded token, else `start_after`.
    after: String,
}

impl ListObjectsV2Request {
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OssError> {
        let q = Query::new(pairs);
        let start_after = q.text("start-after")?;
        let continuation_token = q.get("continuation-token").map(str::to_owned);
        let after = match &continuation_token {
            Some(t) => decode_continuation_token(t)?,
            None => start_after.clone(),
        };
        Ok(ListObjectsV2Request {
            prefix: q.text("prefix")?,
            delimiter: q.text("delimiter")?,
            start_after,
            continuation_token,
            max_keys: q.count("max-keys", DEFAULT_MAX_KEYS, MAX_KEYS_LIMIT)?,
            fetch_owner: q.get("fetch-owner").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            url_encoded: q.url_encoded()?,
            after,
        })
    }

    /// The key after which this page starts (exclusive). Callers with an indexed store seek
    /// here before iterating.
    pub fn after(&self) -> &str {
        &self.after
    }

    /// This request's page of `items` (sorted by key).
    pub fn page<T: Listed>(&self, items: impl IntoIterator<Item = T>) -> Page<T> {
        list(items, &self.prefix, &self.delimiter, &self.after, self.max_keys)
    }
}

/// The V2 token naming `last` (the last entry of a truncated page).
pub fn encode_continuation_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// The entry name inside a V2 token; `InvalidArgument` for anything feitian did not issue.
pub fn decode_continuation_token(token: &str) -> Result<String, OssError> {
    let invalid =
        || OssError::invalid_argument("continuation-token", token, "The continuation token provided is incorrect");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// ListBuckets (`GET /?prefix&marker&max-keys` on the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBucketsRequest {
    pub prefix: String,
    pub marker: String,
    pub max_keys: usize,
    /// Whether any of the paging parameters was given: the answer then echoes them.
    pub paged: bool,
}

impl ListBucketsRequest {
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OssError> {
        let q = Query::new(pairs);
        let paged = ["prefix", "marker", "max-keys"].iter().any(|n| q.get(n).is_some());
        Ok(ListBucketsRequest {
            prefix: q.text("prefix")?,
            marker: q.text("marker")?,
            max_keys: q.count("max-keys", DEFAULT_MAX_KEYS, MAX_KEYS_LIMIT)?,
            paged,
        })
    }

    /// This request's page of `buckets` (sorted by name).
    pub fn page<T: Listed>(&self, buckets: impl IntoIterator<Item = T>) -> Page<T> {
        list(buckets, &self.prefix, "", &self.marker, self.max_keys)
    }
}

// --- multipart uploads ---------------------------------------------------------------------

/// Anything listable as an upload: a key and an upload id.
pub trait ListedUpload {
    fn key(&self) -> &str;
    fn upload_id(&self) -> &str;
}

impl<T: ListedUpload + ?Sized> ListedUpload for &T {
    fn key(&self) -> &str {
        (**self).key()
    }
    fn upload_id(&self) -> &str {
        (**self).upload_id()
    }
}

impl ListedUpload for UploadSummary {
    fn key(&self) -> &str {
        &self.key
    }
    fn upload_id(&self) -> &str {
        &self.upload_id
    }
}

/// ListMultipartUploads (`GET /?uploads&prefix&delimiter&key-marker&upload-id-marker
/// &max-uploads&encoding-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUploadsRequest {
    pub prefix: String,
    pub delimiter: String,
    pub key_marker: String,
    /// Only meaningful with a `key_marker` (ignored otherwise, as in S3).
    pub upload_id_marker: String,
    pub max_uploads: usize,
    pub url_encoded: bool,
}

/// One page of uploads. `NextKeyMarker` and `NextUploadIdMarker` are always rendered (`oss2`
/// requires both elements): the last entry's key and upload id, empty when the page is empty
/// (and the upload id empty when the last entry is a common prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsPage<T> {
    pub uploads: Vec<T>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: String,
    pub next_upload_id_marker: String,
}

impl ListUploadsRequest {
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OssError> {
        let q = Query::new(pairs);
        let key_marker = q.text("key-marker")?;
        let upload_id_marker = if key_marker.is_empty() { String::new() } else { q.text("upload-id-marker")? };
        Ok(ListUploadsRequest {
            prefix: q.text("prefix")?,
            delimiter: q.text("delimiter")?,
            key_marker,
            upload_id_marker,
            max_uploads: q.count("max-uploads", DEFAULT_MAX_UPLOADS, DEFAULT_MAX_UPLOADS)?,
            url_encoded: q.url_encoded()?,
        })
    }

    /// This request's page of `uploads`, sorted by (key, upload id) — feitian's upload ids
    /// must therefore sort in creation order for a key's uploads to list oldest first.
    pub fn page<T: ListedUpload>(&self, uploads: impl IntoIterator<Item = T>) -> UploadsPage<T> {
        let mut page = UploadsPage {
            uploads: Vec::new(),
            common_prefixes: Vec::new(),
            is_truncated: false,
            next_key_marker: String::new(),
            next_upload_id_marker: String::new(),
        };
        let (km, im) = (self.key_marker.as_str(), self.upload_id_marker.as_str());
        for u in uploads {
            let key = u.key();
            // After the marker: a later key, or the marker's key with a later upload id.
            let after = key > km || (key == km && !km.is_empty() && !im.is_empty() && u.upload_id() > im);
            if !after {
                continue;
            }
            if !key.starts_with(self.prefix.as_str()) {
                if key > self.prefix.as_str() {
                    break;
                }
                continue;
            }
            let count = page.uploads.len() + page.common_prefixes.len();
            match common_prefix(key, &self.prefix, &self.delimiter) {
                Some(cp) => {
                    if cp <= km || page.common_prefixes.last().is_some_and(|p| p == cp) {
                        continue;
                    }
                    if count >= self.max_uploads {
                        page.is_truncated = true;
                        break;
                    }
                    page.common_prefixes.push(cp.to_owned());
                    page.next_key_marker = cp.to_owned();
                    page.next_upload_id_marker.clear();
                }
                None => {
                    if count >= self.max_uploads {
                        page.is_truncated = true;
                        break;
                    }
                    page.next_key_marker = key.to_owned();
                    page.next_upload_id_marker = u.upload_id().to_owned();
                    page.uploads.push(u);
                }
            }
        }
        page
    }
}

// --- parts ---------------------------------------------------------------------------------

/// Anything listable as a part.
pub trait ListedPart {
    fn part_number(&self) -> u32;
}

impl<T: ListedPart + ?Sized> ListedPart for &T {
    fn part_number(&self) -> u32 {
        (**self).part_number()
    }
}

impl ListedPart for PartSummary {
    fn part_number(&self) -> u32 {
        self.part_number
    }
}

/// ListParts (`GET /key?uploadId&part-number-marker&max-parts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPartsRequest {
    /// Exclusive; 0 (the default) lists from the first part.
    pub part_number_marker: u32,
    pub max_parts: usize,
    pub url_encoded: bool,
}

/// One page of parts. `NextPartNumberMarker` is always rendered (`oss2` requires it): the last
/// part number returned, or the request's marker when the page is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsPage<T> {
    pub parts: Vec<T>,
    pub is_truncated: bool,
    pub next_part_number_marker: u32,
}

impl ListPartsRequest {
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OssError> {
        let q = Query::new(pairs);
        let part_number_marker = match q.get("part-number-marker") {
            None => 0,
            Some(v) => v.parse::<u32>().map_err(|_| {
                OssError::invalid_argument(
                    "part-number-marker",
                    v,
                    "part-number-marker must be a non-negative integer.",
                )
            })?,
        };
        Ok(ListPartsRequest {
            part_number_marker,
            max_parts: q.count("max-parts", DEFAULT_MAX_PARTS, DEFAULT_MAX_PARTS)?,
            url_encoded: q.url_encoded()?,
        })
    }

    /// This request's page of `parts` (sorted by part number).
    pub fn page<T: ListedPart>(&self, parts: impl IntoIterator<Item = T>) -> PartsPage<T> {
        let mut page =
            PartsPage { parts: Vec::new(), is_truncated: false, next_part_number_marker: self.part_number_marker };
        for p in parts {
            if p.part_number() <= self.part_number_marker {
                continue;
            }
            if page.parts.len() >= self.max_parts {
                page.is_truncated = true;
                break;
            }
            page.next_part_number_marker = p.part_number();
            page.parts.push(p);
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn names<T: Listed>(p: &Page<T>) -> Vec<&str> {
        p.contents.iter().map(|c| c.key()).collect()
    }

    const TREE: &[&str] = &[
        "a.txt",
        "dir/",
        "dir/a",
        "dir/b",
        "dir/sub/c",
        "dir/sub/d",
        "dir2/x",
        "e.txt",
        "fun/movie/001.avi",
        "fun/movie/007.avi",
        "fun/test.jpg",
        "oss.jpg",
    ];

    #[test]
    fn flat_listing_and_paging() {
        let all = keys(TREE);
        let p = list(&all, "", "", "", 1000);
        assert_eq!(p.contents.len(), all.len());
        assert!(!p.is_truncated);
        assert_eq!(p.next_marker, None);

        // Page through 5 at a time; the marker is exclusive and nothing repeats or is lost.
        let mut seen = Vec::new();
        let mut marker = String::new();
        loop {
            let p = list(&all, "", "", &marker, 5);
            seen.extend(p.contents.iter().map(|s| s.to_string()));
            if !p.is_truncated {
                break;
            }
            marker = p.next_marker.clone().unwrap();
            assert_eq!(&marker, seen.last().unwrap());
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn exactly_full_page_is_not_truncated() {
        let all = keys(&["a", "b", "c"]);
        let p = list(&all, "", "", "", 3);
        assert!(!p.is_truncated);
        let p = list(&all, "", "", "", 2);
        assert!(p.is_truncated);
        assert_eq!(p.next_marker.as_deref(), Some("b"));
    }

    #[test]
    fn delimiter_folds_and_counts_against_max_keys() {
        let all = keys(TREE);
        let p = list(&all, "", "/", "", 100);
        assert_eq!(names(&p), vec!["a.txt", "e.txt", "oss.jpg"]);
        assert_eq!(p.common_prefixes, vec!["dir/", "dir2/", "fun/"]);

        let p = list(&all, "fun/", "/", "", 100);
        assert_eq!(names(&p), vec!["fun/test.jpg"]);
        assert_eq!(p.common_prefixes, vec!["fun/movie/"]);

        // "dir/" (a key) folds into its own common prefix.
        let p = list(&all, "dir/", "/", "", 100);
        assert_eq!(names(&p), vec!["dir/", "dir/a", "dir/b"]);
        assert_eq!(p.common_prefixes, vec!["dir/sub/"]);

        // max-keys 2: "a.txt", "dir/" — truncated, NextMarker is the common prefix.
        let p = list(&all, "", "/", "", 2);
        assert_eq!(names(&p), vec!["a.txt"]);
        assert_eq!(p.common_prefixes, vec!["dir/"]);
        assert!(p.is_truncated);
        assert_eq!(p.next_marker.as_deref(), Some("dir/"));
        // …and resuming from it skips the whole group.
        let p = list(&all, "", "/", "dir/", 2);
        assert_eq!(p.common_prefixes, vec!["dir2/"]);
        assert_eq!(names(&p), vec!["e.txt"]);
        assert_eq!(p.next_marker.as_deref(), Some("e.txt"));
        let p = list(&all, "", "/", "e.txt", 2);
        assert_eq!(p.common_prefixes, vec!["fun/"]);
        assert_eq!(names(&p), vec!["oss.jpg"]);
        assert!(!p.is_truncated);
    }

    #[test]
    fn paging_with_delimiter_at_every_size_sees_everything_once() {
        let all = keys(TREE);
        let whole = list(&all, "", "/", "", 1000);
        for size in 1..=8 {
            let (mut c, mut cps) = (Vec::new(), Vec::new());
            let mut marker = String::new();
            for _ in 0..100 {
                let p = list(&all, "", "/", &marker, size);
                assert!(p.key_count() <= size);
                c.extend(p.contents.iter().map(|s| s.to_string()));
                cps.extend(p.common_prefixes.clone());
                if !p.is_truncated {
                    break;
                }
                marker = p.next_marker.unwrap();
            }
            assert_eq!(c, whole.contents.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "size {size}");
            assert_eq!(cps, whole.common_prefixes, "size {size}");
        }
    }

    #[test]
    fn marker_inside_a_group_and_arbitrary_markers() {
        let all = keys(TREE);
        // A marker that is no key: listing starts after it.
        let p = list(&all, "", "", "dir/b0", 3);
        assert_eq!(names(&p), vec!["dir/sub/c", "dir/sub/d", "dir2/x"]);
        // A marker inside a folded group skips the group (its prefix sorts before the marker).
        let p = list(&all, "", "/", "dir/a", 100);
        assert_eq!(p.common_prefixes, vec!["dir2/", "fun/"]);
        // Marker past everything.
        let p = list(&all, "", "", "zzz", 100);
        assert_eq!(p.key_count(), 0);
        assert!(!p.is_truncated);
    }

    #[test]
    fn prefix_stops_early_and_multichar_delimiters_work() {
        let all = keys(&["a--b--c", "a--d", "b"]);
        let p = list(&all, "a", "--", "", 10);
        assert_eq!(p.common_prefixes, vec!["a--"]);
        let p = list(&all, "a--", "--", "", 10);
        assert_eq!(names(&p), vec!["a--d"]);
        assert_eq!(p.common_prefixes, vec!["a--b--"]);
        // The iterator is not consumed past the prefix's range.
        let mut consumed = 0;
        let it = all.iter().inspect(|_| consumed += 1);
        let _ = list(it, "a", "", "", 10);
        assert_eq!(consumed, 3); // "a--b--c", "a--d", then "b" ends it
        assert_eq!(common_prefix("abc", "abcd", "/"), None);
        assert_eq!(common_prefix("é/x", "é", "/"), Some("é/"));
    }

    #[test]
    fn v1_parameters() {
        let r = ListObjectsV1Request::from_query([
            ("prefix", ""),
            ("delimiter", ""),
            ("marker", ""),
            ("max-keys", "100"),
            ("encoding-type", "url"),
        ])
        .unwrap();
        assert_eq!(
            r,
            ListObjectsV1Request {
                prefix: String::new(),
                delimiter: String::new(),
                marker: String::new(),
                max_keys: 100,
                url_encoded: true
            }
        );
        let r = ListObjectsV1Request::from_query([]).unwrap();
        assert_eq!((r.max_keys, r.url_encoded), (100, false));
        for (k, v) in [
            ("max-keys", "0"),
            ("max-keys", "1001"),
            ("max-keys", "-1"),
            ("max-keys", "ten"),
            ("encoding-type", "base64"),
        ] {
            let e = ListObjectsV1Request::from_query([(k, v)]).unwrap_err();
            assert_eq!((e.status, e.code, e.detail("ArgumentName")), (400, "InvalidArgument", Some(k)), "{k}={v}");
        }
        let long = "x".repeat(1024);
        assert_eq!(ListObjectsV1Request::from_query([("prefix", long.as_str())]).unwrap_err().code, "InvalidArgument");
        let r = ListObjectsV1Request::from_query([("max-keys", "1000"), ("max-keys", "5")]).unwrap();
        assert_eq!(r.max_keys, 1000);
    }

    #[test]
    fn v2_tokens_and_start_after() {
        let all = keys(TREE);
        let r = ListObjectsV2Request::from_query([
            ("list-type", "2"),
            ("prefix", ""),
            ("delimiter", ""),
            ("continuation-token", ""),
            ("start-after", "dir/sub/c"),
            ("fetch-owner", "false"),
            ("max-keys", "2"),
            ("encoding-type", "url"),
        ])
        .unwrap();
        assert_eq!(r.continuation_token, None);
        assert!(!r.fetch_owner);
        let p = r.page(&all);
        assert_eq!(names(&p), vec!["dir/sub/d", "dir2/x"]);
        let token = encode_continuation_token(p.next_marker.as_deref().unwrap());
        // The token wins over start-after.
        let r = ListObjectsV2Request::from_query([
            ("continuation-token", token.as_str()),
            ("start-after", "a"),
            ("max-keys", "2"),
            ("fetch-owner", "true"),
        ])
        .unwrap();
        assert!(r.fetch_owner);
        assert_eq!(r.after(), "dir2/x");
        assert_eq!(names(&r.page(&all)), vec!["e.txt", "fun/movie/001.avi"]);

        for key in ["", "a", "中文/ key+?&=%", "dir/"] {
            let t = encode_continuation_token(key);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(decode_continuation_token(&t).unwrap(), key);
        }
        for bad in ["!!", "a", "_w"] {
            let e = ListObjectsV2Request::from_query([("continuation-token", bad)]).unwrap_err();
            assert_eq!((e.code, e.detail("ArgumentName")), ("InvalidArgument", Some("continuation-token")), "{bad}");
        }
    }

    fn bucket(name: &str) -> BucketSummary {
        use chrono::TimeZone;
        BucketSummary {
            name: name.into(),
            creation_date: chrono::Utc.timestamp_opt(0, 0).unwrap(),
            location: "oss-cn-hangzhou".into(),
            region: "cn-hangzhou".into(),
            extranet_endpoint: String::new(),
            intranet_endpoint: String::new(),
            storage_class: crate::model::StorageClass::Standard,
        }
    }

    #[test]
    fn buckets() {
        let all: Vec<BucketSummary> = ["alpha", "beta", "beta2", "gamma"].iter().map(|n| bucket(n)).collect();
        let r = ListBucketsRequest::from_query([("prefix", "beta"), ("max-keys", "1")]).unwrap();
        assert!(r.paged);
        let p = r.page(&all);
        assert_eq!(names(&p), vec!["beta"]);
        assert!(p.is_truncated);
        assert_eq!(p.next_marker.as_deref(), Some("beta"));
        let r = ListBucketsRequest::from_query([("prefix", "beta"), ("marker", "beta")]).unwrap();
        assert_eq!(names(&r.page(&all)), vec!["beta2"]);
        let r = ListBucketsRequest::from_query([("prefix", ""), ("marker", ""), ("max-keys", "")]).unwrap();
        assert!(!r.paged);
        assert_eq!(r.page(&all).contents.len(), 4);
    }

    fn upload(key: &str, id: &str) -> UploadSummary {
        use chrono::TimeZone;
        UploadSummary { key: key.into(), upload_id: id.into(), initiated: chrono::Utc.timestamp_opt(0, 0).unwrap() }
    }

    #[test]
    fn uploads() {
        let all = vec![
            upload("a", "01"),
            upload("a", "02"),
            upload("b/x", "03"),
            upload("b/y", "04"),
            upload("c", "05"),
            upload("c", "06"),
        ];
        let r = ListUploadsRequest::from_query([]).unwrap();
        assert_eq!(r.max_uploads, 1000);
        let p = r.page(&all);
        assert_eq!(p.uploads.len(), 6);
        assert!(!p.is_truncated);
        assert_eq!((p.next_key_marker.as_str(), p.next_upload_id_marker.as_str()), ("c", "06"));

        // Paging by two, with both markers.
        let r = ListUploadsRequest::from_query([("max-uploads", "2")]).unwrap();
        let p = r.page(&all);
        assert!(p.is_truncated);
        assert_eq!((p.next_key_marker.as_str(), p.next_upload_id_marker.as_str()), ("a", "02"));
        let r = ListUploadsRequest::from_query([("max-uploads", "3"), ("key-marker", "a"), ("upload-id-marker", "01")])
            .unwrap();
        let p = r.page(&all);
        let ids: Vec<&str> = p.uploads.iter().map(|u| u.upload_id.as_str()).collect();
        assert_eq!(ids, vec!["02", "03", "04"]);
        // key-marker alone skips every upload of that key.
        let r = ListUploadsRequest::from_query([("key-marker", "a")]).unwrap();
        assert_eq!(r.page(&all).uploads[0].upload_id, "03");
        // upload-id-marker alone is ignored.
        let r = ListUploadsRequest::from_query([("upload-id-marker", "03")]).unwrap();
        assert_eq!(r.upload_id_marker, "");
        assert_eq!(r.page(&all).uploads.len(), 6);

        // Delimiter folds keys; a common prefix as the last entry clears the upload-id marker.
        let r = ListUploadsRequest::from_query([("delimiter", "/"), ("max-uploads", "3")]).unwrap();
        let p = r.page(&all);
        assert_eq!(p.uploads.len(), 2);
        assert_eq!(p.common_prefixes, vec!["b/"]);
        assert!(p.is_truncated);
        assert_eq!((p.next_key_marker.as_str(), p.next_upload_id_marker.as_str()), ("b/", ""));
        let r = ListUploadsRequest::from_query([("delimiter", "/"), ("key-marker", "b/")]).unwrap();
        let p = r.page(&all);
        assert_eq!(p.uploads.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), vec!["c", "c"]);
        assert!(p.common_prefixes.is_empty());

        let e = ListUploadsRequest::from_query([("max-uploads", "1001")]).unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        let empty: Vec<UploadSummary> = Vec::new();
        let p = ListUploadsRequest::from_query([]).unwrap().page(&empty);
        assert_eq!((p.next_key_marker.as_str(), p.next_upload_id_marker.as_str()), ("", ""));
    }

    fn part(n: u32) -> PartSummary {
        use chrono::TimeZone;
        PartSummary {
            part_number: n,
            last_modified: chrono::Utc.timestamp_opt(0, 0).unwrap(),
            etag: String::new(),
            size: 1,
            crc64: 0,
        }
    }

    #[test]
    fn parts() {
        let all: Vec<PartSummary> = [1, 2, 3, 5, 8].into_iter().map(part).collect();
        let r = ListPartsRequest::from_query([("part-number-marker", ""), ("max-parts", "2")]).unwrap();
        let p = r.page(&all);
        assert_eq!(p.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2]);
        assert!(p.is_truncated);
        assert_eq!(p.next_part_number_marker, 2);
        let r = ListPartsRequest::from_query([("part-number-marker", "2"), ("max-parts", "3")]).unwrap();
        let p = r.page(&all);
        assert_eq!(p.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![3, 5, 8]);
        assert!(!p.is_truncated);
        assert_eq!(p.next_part_number_marker, 8);
        // oss2's PartIterator starts from marker '0'.
        let r = ListPartsRequest::from_query([("part-number-marker", "0")]).unwrap();
        assert_eq!(r.page(&all).parts.len(), 5);
        let r = ListPartsRequest::from_query([("part-number-marker", "9")]).unwrap();
        let p = r.page(&all);
        assert_eq!((p.parts.len(), p.next_part_number_marker, p.is_truncated), (0, 9, false));
        for bad in [("part-number-marker", "-1"), ("part-number-marker", "x"), ("max-parts", "0")] {
            assert_eq!(ListPartsRequest::from_query([bad]).unwrap_err().code, "InvalidArgument");
        }
    }

    #[test]
    fn garbage_parameters_never_panic() {
        let vals = ["", "0", "1", "1000", "1001", "-", "\u{0}", "é", "18446744073709551616", "url", "true"];
        let names = [
            "prefix",
            "delimiter",
            "marker",
            "max-keys",
            "encoding-type",
            "continuation-token",
            "start-after",
            "fetch-owner",
            "key-marker",
            "upload-id-marker",
            "max-uploads",
            "part-number-marker",
            "max-parts",
        ];
        let all = keys(TREE);
        for n in names {
            for v in vals {
                if let Ok(r) = ListObjectsV1Request::from_query([(n, v)]) {
                    let _ = r.page(&all);
                }
                if let Ok(r) = ListObjectsV2Request::from_query([(n, v)]) {
                    let _ = r.page(&all);
                }
                let _ = ListBucketsRequest::from_query([(n, v)]);
                let _ = ListUploadsRequest::from_query([(n, v)]);
                let _ = ListPartsRequest::from_query([(n, v)]);
            }
        }
    }
}
