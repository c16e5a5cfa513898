//! The OSS service on the edge port: authentication, access by owner and ACL, routing to the
//! actions, and rendering answers and errors. The bucket actions live here; the object
//! actions in [`crate::objects`] and the multipart ones in [`crate::multipart`].
//!
//! Routing follows the REST API: the method, whether a key is addressed, and the
//! subresource in the query (`?acl`, `?uploads`, `?uploadId`, `?append`, `?delete`, …).

use crate::access::{self, stored_acl, Need};
use crate::blobs::Blobs;
use crate::errors::OssError;
use crate::grant::Grant;
use crate::metadata::HeaderList;
use crate::model::{Acl, BucketSummary, DataRedundancyType, Owner, StorageClass};
use crate::names::{oss_host_region, RequestTarget};
use crate::{listing, xml};
use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use chrono::{DateTime, Utc};
use feitian_api::auth::{Caller, KeyStore};
use feitian_api::oss_signature::OssRequest;
use feitian_api::{oss_auth, ApiError, ObjectFuture, ObjectService};
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::extent::Extent;
use feitian_meta::quota::{self, Quota};
use feitian_meta::{MetaError, Store, Transaction};
use feitian_region::Region;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The largest request body a bucket action reads (configurations are small).
const MAX_CONFIG_BODY: usize = 64 * 1024;

/// What a successful answer carries besides its status and headers.
pub(crate) enum Payload {
    Empty,
    /// An XML document (an empty string is no body).
    Xml(String),
    /// Object bytes, streamed.
    Stream(Body),
}

/// A successful answer: status, extra headers, body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderList,
    pub body: Payload,
}

impl Answer {
    pub fn empty(status: StatusCode) -> Self {
        Answer { status, headers: Vec::new(), body: Payload::Empty }
    }

    pub fn xml(status: StatusCode, xml: String) -> Self {
        Answer { status, headers: Vec::new(), body: Payload::Xml(xml) }
    }

    pub fn stream(status: StatusCode, body: Body) -> Self {
        Answer { status, headers: Vec::new(), body: Payload::Stream(body) }
    }

    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_headers(mut self, headers: HeaderList) -> Self {
        self.headers.extend(headers);
        self
    }
}

pub struct Oss {
    pub store: Store,
    pub keys: Arc<dyn KeyStore>,
    pub region: Region,
    pub blobs: Blobs,
    sequence: AtomicU32,
}

impl Oss {
    pub fn new(store: Store, keys: Arc<dyn KeyStore>, region: Region, blobs: Blobs) -> Arc<Self> {
        Arc::new(Oss { store, keys, region, blobs, sequence: AtomicU32::new(0) })
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("oss-{}.aliyuncs.com", self.region.id)
    }

    fn request_id(&self) -> String {
        crate::request_id::format(
            Utc::now().timestamp() as u32,
            std::process::id(),
            self.sequence.fetch_add(1, Ordering::Relaxed),
        )
    }
}

/// An OSS request, decoded once.
pub(crate) struct Req {
    pub method: Method,
    pub target: RequestTarget,
    pub params: Vec<(String, String)>,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when the request has one (a chunked body has none).
    pub fn content_length(&self) -> Result<Option<u64>, OssError> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                OssError::invalid_argument("Content-Length", v, "The Content-Length you specified is not valid.")
            }),
        }
    }

    /// `encoding-type=url` asked for (anything else but nothing is `InvalidArgument`).
    pub fn url_encoded(&self) -> Result<bool, OssError> {
        match self.param("encoding-type") {
            None | Some("") => Ok(false),
            Some("url") => Ok(true),
            Some(v) => Err(OssError::invalid_argument("encoding-type", v, "The encoding-type parameter must be url.")),
        }
    }
}

/// Protocol-layer errors in OSS's terms.
fn from_api(e: ApiError) -> OssError {
    match e.code.as_ref() {
        "InvalidAccessKeyId" => OssError::new(403, "InvalidAccessKeyId", e.message),
        "SignatureDoesNotMatch" => {
            OssError::signature_does_not_match().with_detail("StringToSign", e.recommend.unwrap_or_default())
        }
        "RequestTimeTooSkewed" => OssError::request_time_too_skewed(),
        "AccessDenied" => OssError::access_denied(&e.message),
        "RequestNotReadyYet" => OssError::new(403, "RequestNotReadyYet", e.message),
        "InvalidArgument" => OssError::new(400, "InvalidArgument", e.message),
        _ if e.status >= 500 => OssError::internal_error(),
        _ => OssError::new(400, "InvalidRequest", e.message),
    }
}

pub(crate) fn from_meta(e: MetaError) -> OssError {
    if let MetaError::StorageCapacityExceeded { bucket, capacity_gb } = &e {
        return OssError::storage_capacity_exceeded(bucket, *capacity_gb);
    }
    tracing::error!(error = %e, "control-plane store failed");
    OssError::internal_error()
}

pub(crate) fn owner(account: u64) -> Owner {
    Owner { id: account.to_string(), display_name: account.to_string() }
}

fn created(b: &Bucket) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&b.created_at).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

/// A stored storage class back as the enum.
pub(crate) fn stored_class(s: &str) -> Result<StorageClass, OssError> {
    StorageClass::parse(s).map_err(|_| OssError::internal_error())
}

/// Bucket subresources feitian does not serve: refused rather than mistaken for a listing
/// or a PutBucket.
const UNSERVED_BUCKET_SUBRESOURCES: &[&str] = &[
    "lifecycle",
    "cors",
    "website",
    "referer",
    "logging",
    "policy",
    "tagging",
    "versioning",
    "versions",
    "encryption",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "inventory",
    "worm",
    "wormId",
    "requestPayment",
    "stat",
    "transferAcceleration",
    "accessPoint",
    "resourceGroup",
    "style",
    "cname",
    "live",
];

/// Object subresources feitian does not serve.
const UNSERVED_OBJECT_SUBRESOURCES: &[&str] =
    &["symlink", "tagging", "restore", "x-oss-process", "cleanRestoredObject", "retention", "legalHold"];

fn unserved(r: &Req, names: &[&str]) -> Result<(), OssError> {
    match names.iter().find(|n| r.has(n)) {
        Some(n) => Err(OssError::new(400, "NotImplemented", format!("feitian does not serve the {n} subresource."))),
        None => Ok(()),
    }
}

impl Oss {
    fn summary(&self, b: &Bucket) -> Result<BucketSummary, OssError> {
        Ok(BucketSummary {
            name: b.name.clone(),
            creation_date: created(b),
            location: format!("oss-{}", b.region_id),
            region: b.region_id.clone(),
            extranet_endpoint: format!("oss-{}.aliyuncs.com", b.region_id),
            intranet_endpoint: format!("oss-{}-internal.aliyuncs.com", b.region_id),
            storage_class: StorageClass::parse(&b.storage_class)?,
        })
    }

    /// Stores a request body (see [`Blobs::write`](crate::blobs::Blobs::write)) and checks
    /// it against the request's `Content-MD5`, if any; on a mismatch nothing is kept.
    pub(crate) async fn store_body(
        &self,
        body: Body,
        expected: Option<u64>,
        max_len: u64,
        content_md5: Option<crate::etag::Md5Digest>,
    ) -> Result<crate::blobs::Written, OssError> {
        let written = self.blobs.write(body, expected, max_len).await?;
        if let Some(claimed) = content_md5 {
            if let Err(e) = crate::etag::check_content_md5(&claimed, &written.md5) {
                self.blobs.release(written.extents);
                return Err(e);
            }
        }
        Ok(written)
    }

    /// Runs `f` in one write transaction after new bytes (`fresh`) were stored for it. If it
    /// fails, `fresh` is released (nothing refers to it); once it commits, the extents it
    /// returns — those the transaction replaced or dropped — are released. Both happen on the
    /// blocking task, so a client that goes away mid-request cannot leave either undone.
    pub(crate) async fn commit<T: Send + 'static>(
        &self,
        fresh: Vec<Extent>,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, Vec<Extent>), OssError> + Send + 'static,
    ) -> Result<T, OssError> {
        let blobs = self.blobs.clone();
        // Grouped: concurrent PUTs share one commit (one fsync of the journal).
        self.store
            .call(move |store| match store.write_grouped(f) {
                Ok((value, freed)) => {
                    if !freed.is_empty() {
                        blobs.release(freed);
                    }
                    Ok(value)
                }
                Err(e) => {
                    if !fresh.is_empty() {
                        blobs.release(fresh);
                    }
                    Err(e)
                }
            })
            .await
    }

    /// The bucket, whoever may use it (`NoSuchBucket` if there is none).
    pub(crate) async fn load_bucket(&self, name: &str) -> Result<Bucket, OssError> {
        let n = name.to_owned();
        self.store
            .read_async(move |tx| bucket::get_bucket(tx, &n).map_err(from_meta))
            .await?
            .ok_or_else(|| OssError::no_such_bucket(name))
    }

    /// The bucket, if the caller may act on it as `need` says (bucket-level: no object ACL).
    pub(crate) async fn bucket(&self, name: &str, caller: Option<&Caller>, need: Need) -> Result<Bucket, OssError> {
        let b = self.load_bucket(name).await?;
        check(&b, None, caller, need)?;
        Ok(b)
    }

    async fn serve(&self, r: Req, body: Body, caller: Option<Caller>) -> Result<Answer, OssError> {
        let Some(bucket) = r.target.bucket.clone() else {
            return match r.method {
                Method::GET => self.list_buckets(&r, caller.as_ref()).await,
                _ => Err(OssError::method_not_allowed()),
            };
        };
        if let Some(key) = r.target.key.clone() {
            return self.serve_object(&r, body, &bucket, &key, caller.as_ref()).await;
        }
        unserved(&r, UNSERVED_BUCKET_SUBRESOURCES)?;
        let caller = caller.as_ref();
        match r.method {
            Method::PUT if r.has("acl") => self.put_bucket_acl(&r, &bucket, caller).await,
            Method::PUT if r.has("qos") => self.put_bucket_storage_capacity(body, &bucket, caller).await,
            Method::PUT => self.put_bucket(&r, body, &bucket, caller).await,
            Method::GET if r.has("acl") => {
                let b = self.bucket(&bucket, caller, Need::Owner).await?;
                Ok(Answer::xml(
                    StatusCode::OK,
                    xml::answers::access_control_policy(&owner(b.account_id), Acl::parse_bucket(&b.acl)?),
                ))
            }
            Method::GET if r.has("bucketInfo") => {
                let b = self.bucket(&bucket, caller, Need::Owner).await?;
                let summary = self.summary(&b)?;
                let o = owner(b.account_id);
                let info = xml::answers::BucketInfo {
                    summary: &summary,
                    owner: &o,
                    acl: Acl::parse_bucket(&b.acl)?,
                    data_redundancy_type: DataRedundancyType::LRS,
                    comment: "",
                    versioning: None,
                };
                Ok(Answer::xml(StatusCode::OK, xml::answers::bucket_info(&info)))
            }
            Method::GET if r.has("qos") => {
                self.bucket(&bucket, caller, Need::Owner).await?;
                let n = bucket.clone();
                let capacity = self
                    .store
                    .read_async(move |tx| bucket::storage_capacity(tx, &n).map_err(from_meta))
                    .await?
                    .ok_or_else(|| OssError::no_such_bucket(&bucket))?;
                Ok(Answer::xml(StatusCode::OK, xml::answers::bucket_user_qos(capacity)))
            }
            Method::GET if r.has("location") => {
                let b = self.bucket(&bucket, caller, Need::Owner).await?;
                Ok(Answer::xml(StatusCode::OK, xml::answers::location_constraint(&format!("oss-{}", b.region_id))))
            }
            Method::GET if r.has("uploads") => self.list_multipart_uploads(&r, &bucket, caller).await,
            Method::GET => self.list_objects(&r, &bucket, caller).await,
            Method::POST if r.has("delete") => self.delete_multiple_objects(&r, body, &bucket, caller).await,
            Method::DELETE => {
                let grant = Grant::new(&self.bucket(&bucket, caller, Need::Owner).await?, caller);
                let n = bucket.clone();
                self.store
                    .write_async(move |tx| {
                        grant.same_bucket(tx)?;
                        if !bucket::bucket_is_empty(tx, &n)? {
                            return Err(OssError::bucket_not_empty(&n));
                        }
                        bucket::delete_bucket(tx, &n)?;
                        Ok(())
                    })
                    .await?;
                Ok(Answer::empty(StatusCode::NO_CONTENT))
            }
            _ => Err(OssError::method_not_allowed()),
        }
    }

    async fn serve_object(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        unserved(r, UNSERVED_OBJECT_SUBRESOURCES)?;
        crate::metadata::check_version_id(r.param("versionId"))?;
        let upload = r.has("uploadId");
        match r.method {
            Method::PUT if r.has("acl") => self.put_object_acl(r, bucket, key, caller).await,
            Method::PUT if upload && r.header("x-oss-copy-source").is_some() => {
                self.upload_part_copy(r, bucket, key, caller).await
            }
            Method::PUT if upload || r.has("partNumber") => self.upload_part(r, body, bucket, key, caller).await,
            Method::PUT if r.header("x-oss-copy-source").is_some() => self.copy_object(r, bucket, key, caller).await,
            Method::PUT => self.put_object(r, body, bucket, key, caller).await,
            Method::GET if r.has("acl") => self.get_object_acl(bucket, key, caller).await,
            Method::GET if upload => self.list_parts(r, bucket, key, caller).await,
            Method::GET => self.get_object(r, bucket, key, caller, false).await,
            Method::HEAD if r.has("objectMeta") => self.get_object_meta(bucket, key, caller).await,
            Method::HEAD => self.get_object(r, bucket, key, caller, true).await,
            Method::DELETE if upload => self.abort_multipart_upload(r, bucket, key, caller).await,
            Method::DELETE => self.delete_object(bucket, key, caller).await,
            Method::POST if r.has("uploads") => self.initiate_multipart_upload(r, bucket, key, caller).await,
            Method::POST if upload => self.complete_multipart_upload(r, body, bucket, key, caller).await,
            Method::POST if r.has("append") => self.append_object(r, body, bucket, key, caller).await,
            _ => Err(OssError::method_not_allowed()),
        }
    }

    async fn list_buckets(&self, r: &Req, caller: Option<&Caller>) -> Result<Answer, OssError> {
        let caller =
            caller.ok_or_else(|| OssError::access_denied("Anonymous access is forbidden for this operation."))?.clone();
        let req = listing::ListBucketsRequest::from_query(r.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let (prefix, marker) = (req.prefix.clone(), req.marker.clone());
        let buckets = self
            .store
            .read_async(move |tx| {
                bucket::list_buckets(tx, caller.account_id, &prefix, &marker, 1001).map_err(from_meta)
            })
            .await?;
        let summaries = buckets.iter().map(|b| self.summary(b)).collect::<Result<Vec<_>, _>>()?;
        let page = req.page(summaries.iter());
        Ok(Answer::xml(StatusCode::OK, xml::answers::list_all_my_buckets(&owner(caller.account_id), &req, &page)))
    }

    async fn put_bucket(&self, r: &Req, body: Body, bucket: &str, caller: Option<&Caller>) -> Result<Answer, OssError> {
        let caller =
            caller.ok_or_else(|| OssError::access_denied("Anonymous access is forbidden for this operation."))?.clone();
        if crate::system::is_reserved_bucket_name(bucket) {
            // feitian's own buckets (snapshot blocks): docs/snapshots.md, "The system bucket".
            return Err(OssError::invalid_bucket_name(bucket));
        }
        let acl = Acl::parse_bucket(r.header("x-oss-acl").unwrap_or("private"))?;
        let body = axum::body::to_bytes(body, MAX_CONFIG_BODY).await.map_err(|_| OssError::malformed_xml())?;
        let config = xml::requests::parse_create_bucket_configuration(&body)?;
        let b = Bucket {
            name: bucket.to_owned(),
            account_id: caller.account_id,
            region_id: self.region.id.clone(),
            acl: acl.as_str().to_owned(),
            storage_class: config.storage_class.as_str().to_owned(),
            created_at: feitian_api::service::now(),
            generation: 0,
        };
        let acl_given = r.header("x-oss-acl").is_some();
        let quotas = self.store.quotas();
        self.store
            .write_async(move |tx| {
                if let Some(existing) = bucket::get_bucket(tx, &b.name).map_err(from_meta)? {
                    if existing.account_id != b.account_id {
                        return Err(OssError::bucket_already_exists(&b.name));
                    }
                    // Creating one's own bucket again succeeds (and sets the ACL if given).
                    if acl_given {
                        bucket::set_bucket_acl(tx, &b.name, &b.acl).map_err(from_meta)?;
                    }
                    return Ok(());
                }
                let max = quota::limit(tx, &quotas, b.account_id, Quota::Buckets).map_err(from_meta)?;
                let mine = bucket::count_buckets(tx, b.account_id).map_err(from_meta)?;
                if !quota::fits(max, mine, 1) {
                    return Err(OssError::too_many_buckets());
                }
                if bucket::insert_bucket(tx, &b).map_err(from_meta)?.is_none() {
                    return Err(OssError::bucket_already_exists(&b.name));
                }
                Ok(())
            })
            .await?;
        Ok(Answer::empty(StatusCode::OK).header("location", format!("/{bucket}")))
    }

    async fn put_bucket_acl(&self, r: &Req, bucket: &str, caller: Option<&Caller>) -> Result<Answer, OssError> {
        let grant = Grant::new(&self.bucket(bucket, caller, Need::Owner).await?, caller);
        let acl = Acl::parse_bucket(
            r.header("x-oss-acl")
                .ok_or_else(|| OssError::new(400, "MissingArgument", "Missing the x-oss-acl header."))?,
        )?;
        let n = bucket.to_owned();
        self.store
            .write_async(move |tx| {
                grant.same_bucket(tx)?;
                bucket::set_bucket_acl(tx, &n, acl.as_str()).map_err(from_meta)
            })
            .await?;
        Ok(Answer::empty(StatusCode::OK))
    }

    /// PutBucketStorageCapacity (`PUT ?qos`), the owner's alone. It takes effect for the
    /// writes that commit after it; what the bucket holds already stays.
    async fn put_bucket_storage_capacity(
        &self,
        body: Body,
        bucket: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let grant = Grant::new(&self.bucket(bucket, caller, Need::Owner).await?, caller);
        let body = axum::body::to_bytes(body, MAX_CONFIG_BODY).await.map_err(|_| OssError::malformed_xml())?;
        let capacity = xml::requests::parse_bucket_user_qos(&body)?;
        let n = bucket.to_owned();
        self.store
            .write_async(move |tx| {
                grant.same_bucket(tx)?;
                bucket::set_storage_capacity(tx, &n, capacity).map_err(from_meta)
            })
            .await?;
        Ok(Answer::empty(StatusCode::OK))
    }
}

/// Whether `caller` may act on bucket `b` (and on an object with ACL `object_acl`) as `need`
/// says; `AccessDenied` otherwise.
pub(crate) fn check(b: &Bucket, object_acl: Option<&str>, caller: Option<&Caller>, need: Need) -> Result<(), OssError> {
    let is_owner = caller.is_some_and(|c| c.account_id == b.account_id);
    let object_acl = object_acl.map(stored_acl).transpose()?;
    if access::allows(is_owner, stored_acl(&b.acl)?, object_acl, need) {
        Ok(())
    } else {
        Err(access::denied(caller.is_none()))
    }
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).ok()
}

fn respond(request_id: &str, head: bool, result: Result<Answer, OssError>, host_id: &str) -> Response<Body> {
    let (status, extra, payload, err) = match result {
        Ok(a) => (a.status, a.headers, a.body, None),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(request_id, code = e.code, "OSS request failed on feitian's side");
            }
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = if e.has_body() { e.to_xml(request_id, host_id) } else { String::new() };
            let mut extra: HeaderList = vec![("x-oss-ec".into(), e.code.to_owned())];
            extra.extend(e.headers.iter().map(|(k, v)| (Cow::Borrowed(*k), v.clone())));
            (status, extra, Payload::Xml(body), Some(e))
        }
    };
    let is_xml = matches!(&payload, Payload::Xml(s) if !s.is_empty());
    let body = match payload {
        _ if head => Body::empty(),
        Payload::Empty => Body::empty(),
        Payload::Xml(s) => Body::from(s),
        Payload::Stream(b) => b,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("AliyunOSS"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-oss-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&crate::dates::format_http_date(Utc::now())) {
        h.insert(header::DATE, v);
    }
    if is_xml {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    }
    if head {
        if let Some(e) = &err {
            if let Ok(v) = HeaderValue::from_str(&e.x_oss_err_header(request_id, host_id)) {
                h.insert("x-oss-err", v);
            }
        }
    }
    for (k, v) in extra {
        // Values are stored as received, possibly UTF-8: sent back as the same bytes.
        if let (Some(k), Ok(v)) = (header_name(&k), HeaderValue::from_bytes(v.as_bytes())) {
            h.insert(k, v);
        }
    }
    resp
}

/// Most request-body bytes read and thrown away after an answer that did not need them.
const MAX_DRAIN: u64 = 8 * 1024 * 1024;
/// How long that may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The request body as the handlers see it, and a hold on what they leave of it. An answer
/// given before the body was read (an early error, a body nobody wanted) would otherwise
/// make the connection unusable: the server stops reading, and a client that reuses the
/// connection for its next request finds it closed (`RemoteDisconnected` in `oss2`).
struct Leftover {
    stream: Arc<std::sync::Mutex<axum::body::BodyDataStream>>,
    touched: Arc<std::sync::atomic::AtomicBool>,
}

fn share_body(body: Body) -> (Body, Leftover) {
    use futures_util::StreamExt;
    let stream = Arc::new(std::sync::Mutex::new(body.into_data_stream()));
    let touched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, t) = (stream.clone(), touched.clone());
    let view = futures_util::stream::poll_fn(move |cx| {
        t.store(true, Ordering::Relaxed);
        s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).poll_next_unpin(cx)
    });
    (Body::from_stream(view), Leftover { stream, touched })
}

impl Leftover {
    /// Reads and discards the rest of the body so that the connection can serve the next
    /// request. `false` when that is not done — too much, too slow, broken, or a client
    /// still waiting for `100 Continue` — and the connection must close after the answer.
    async fn drain(&self, expects_continue: bool) -> bool {
        use futures_util::StreamExt;
        if expects_continue && !self.touched.load(Ordering::Relaxed) {
            return false;
        }
        let work = async {
            let mut seen = 0u64;
            loop {
                let next = std::future::poll_fn(|cx| {
                    self.stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner).poll_next_unpin(cx)
                })
                .await;
                match next {
                    None => return true,
                    Some(Ok(chunk)) => {
                        seen += chunk.len() as u64;
                        if seen > MAX_DRAIN {
                            return false;
                        }
                    }
                    Some(Err(_)) => return false,
                }
            }
        };
        tokio::time::timeout(DRAIN_TIME, work).await.unwrap_or(false)
    }
}

/// A request header's value as text: visible ASCII as is, other bytes read as UTF-8 (user
/// metadata and `Content-Disposition` may carry it); `None` for anything else.
fn header_text(v: &HeaderValue) -> Option<String> {
    v.to_str().map(str::to_owned).ok().or_else(|| String::from_utf8(v.as_bytes().to_vec()).ok())
}

impl ObjectService for Oss {
    fn handle(&self, req: Request<Body>, _edge_request_id: String) -> ObjectFuture {
        let request_id = self.request_id();
        let host_id = self.endpoint();
        let endpoints = [self.endpoint(), format!("oss-{}-internal.aliyuncs.com", self.region.id)];
        let (parts, body) = req.into_parts();
        let host = parts.uri.host().map(str::to_owned).or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h).to_owned())
        });
        let head = parts.method == Method::HEAD;
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let (body, leftover) = share_body(body);
        let eps: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        let target = RequestTarget::parse(host.as_deref(), parts.uri.path(), &eps);
        let params: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| header_text(v).map(|v| (k.as_str().to_ascii_lowercase(), v)))
            .collect();
        // One object store serves every region, under the home region's endpoint only: a host
        // naming another region is refused (docs/regions.md), never answered as if it were home.
        let elsewhere = host.as_deref().and_then(oss_host_region).filter(|r| *r != self.region.id);
        let keys = self.keys.clone();
        let region_id = self.region.id.clone();
        let me = Oss {
            store: self.store.clone(),
            keys: self.keys.clone(),
            region: self.region.clone(),
            blobs: self.blobs.clone(),
            sequence: AtomicU32::new(0),
        };
        Box::pin(async move {
            let result = async {
                if let Some(named) = elsewhere {
                    return Err(not_this_region(&named, &region_id));
                }
                let target = target?;
                let caller = {
                    let r = OssRequest {
                        method: parts.method.as_str(),
                        bucket: target.bucket.as_deref(),
                        key: target.key.as_deref().unwrap_or(""),
                        params: &params,
                        headers: &headers,
                    };
                    oss_auth::authenticate(keys.as_ref(), &r, &region_id, Utc::now()).map_err(from_api)?
                };
                me.serve(Req { method: parts.method.clone(), target, params, headers }, body, caller).await
            }
            .await;
            let mut resp = respond(&request_id, head, result, &host_id);
            if !leftover.drain(expects_continue).await {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        })
    }
}

/// The answer to a request sent to the OSS endpoint of a region that is not the home one:
/// 403 `AccessDenied` naming the endpoint to use, as OSS answers a request sent to the wrong
/// region's endpoint (clients read the `Endpoint` element).
fn not_this_region(named: &str, home: &str) -> OssError {
    let endpoint = format!("oss-{home}.aliyuncs.com");
    OssError::access_denied(&format!(
        "This feitian serves OSS only in its home region {home}, not in {named}; its one object store \
         serves every region. Send the request to the endpoint {endpoint}."
    ))
    .with_detail("Endpoint", endpoint)
}

impl From<MetaError> for OssError {
    fn from(e: MetaError) -> Self {
        from_meta(e)
    }
}
