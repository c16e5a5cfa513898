//! The OSS service on the edge port: authentication, access by owner and ACL, and the bucket
//! actions. Object actions (Put/Get/Head/Delete/Copy/Append, multipart) come with the
//! Pangu-backed object storage; until then they answer `NotImplemented` rather than pretend.

use crate::errors::OssError;
use crate::model::{Acl, BucketSummary, DataRedundancyType, Owner, StorageClass};
use crate::names::RequestTarget;
use crate::{listing, xml};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use chrono::{DateTime, Utc};
use feitian_api::auth::{Caller, KeyStore};
use feitian_api::oss_signature::OssRequest;
use feitian_api::{oss_auth, ApiError, ObjectFuture, ObjectService};
use feitian_meta::oss::{self as db, Bucket};
use feitian_meta::{MetaError, Store};
use feitian_region::Region;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Buckets per account, the real default.
pub const MAX_BUCKETS: usize = 100;
/// The largest request body a bucket action reads (configurations are small).
const MAX_CONFIG_BODY: usize = 64 * 1024;

/// A successful answer: status, extra headers, XML body (possibly empty).
type Answer = (StatusCode, Vec<(&'static str, String)>, String);

pub struct Oss {
    pub store: Store,
    pub keys: Arc<dyn KeyStore>,
    pub region: Region,
    sequence: AtomicU32,
}

impl Oss {
    pub fn new(store: Store, keys: Arc<dyn KeyStore>, region: Region) -> Arc<Self> {
        Arc::new(Oss { store, keys, region, sequence: AtomicU32::new(0) })
    }

    fn endpoint(&self) -> String {
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
struct Req {
    method: Method,
    target: RequestTarget,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Req {
    fn has(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
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
        "InvalidArgument" => OssError::new(400, "InvalidArgument", e.message),
        _ if e.status >= 500 => OssError::internal_error(),
        _ => OssError::new(400, "InvalidRequest", e.message),
    }
}

fn from_meta(e: MetaError) -> OssError {
    tracing::error!(error = %e, "control-plane store failed");
    OssError::internal_error()
}

fn owner(caller_account: u64) -> Owner {
    Owner { id: caller_account.to_string(), display_name: caller_account.to_string() }
}

fn created(b: &Bucket) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&b.created_at).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
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

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, OssError> + Send + 'static,
    ) -> Result<T, OssError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.unwrap_or_else(|_| Err(OssError::internal_error()))
    }

    /// The bucket, if the caller may act on it as `need` says.
    async fn bucket(&self, name: &str, caller: Option<&Caller>, need: Need) -> Result<Bucket, OssError> {
        let n = name.to_owned();
        let b = self
            .db(move |s| s.read(|tx| db::get_bucket(tx, &n).map_err(from_meta)))
            .await?
            .ok_or_else(|| OssError::no_such_bucket(name))?;
        let owner = caller.is_some_and(|c| c.account_id == b.account_id);
        let allowed = owner
            || match need {
                Need::Owner => false,
                Need::Read => b.acl == "public-read" || b.acl == "public-read-write",
            };
        if !allowed {
            return Err(OssError::access_denied(if caller.is_none() {
                "You have no right to access this bucket: the request is anonymous and the bucket is not public."
            } else {
                "You have no right to access this bucket."
            }));
        }
        Ok(b)
    }

    async fn serve(&self, r: Req, body: Body, caller: Option<Caller>) -> Result<Answer, OssError> {
        let Some(bucket) = r.target.bucket.clone() else {
            return match r.method {
                Method::GET => self.list_buckets(&r, caller.as_ref()).await,
                _ => Err(OssError::method_not_allowed()),
            };
        };
        if r.target.key.is_some() {
            return Err(OssError::not_implemented(
                "object actions are not served yet (they come with the Pangu-backed object storage)",
            ));
        }
        match r.method {
            Method::PUT if r.has("acl") => self.put_bucket_acl(&r, &bucket, caller.as_ref()).await,
            Method::PUT => self.put_bucket(&r, body, &bucket, caller.as_ref()).await,
            Method::GET if r.has("acl") => {
                let b = self.bucket(&bucket, caller.as_ref(), Need::Owner).await?;
                Ok((
                    StatusCode::OK,
                    vec![],
                    xml::answers::access_control_policy(&owner(b.account_id), Acl::parse_bucket(&b.acl)?),
                ))
            }
            Method::GET if r.has("bucketInfo") => {
                let b = self.bucket(&bucket, caller.as_ref(), Need::Owner).await?;
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
                Ok((StatusCode::OK, vec![], xml::answers::bucket_info(&info)))
            }
            Method::GET if r.has("location") => {
                let b = self.bucket(&bucket, caller.as_ref(), Need::Owner).await?;
                Ok((StatusCode::OK, vec![], xml::answers::location_constraint(&format!("oss-{}", b.region_id))))
            }
            Method::GET => {
                self.bucket(&bucket, caller.as_ref(), Need::Read).await?;
                Err(OssError::not_implemented(
                    "listing objects is not served yet (it comes with the Pangu-backed object storage)",
                ))
            }
            Method::DELETE => {
                self.bucket(&bucket, caller.as_ref(), Need::Owner).await?;
                let n = bucket.clone();
                // No object can exist yet, so an existing bucket is always empty.
                self.db(move |s| s.write(|tx| db::delete_bucket(tx, &n).map_err(from_meta))).await?;
                Ok((StatusCode::NO_CONTENT, vec![], String::new()))
            }
            _ => Err(OssError::method_not_allowed()),
        }
    }

    async fn list_buckets(&self, r: &Req, caller: Option<&Caller>) -> Result<Answer, OssError> {
        let caller =
            caller.ok_or_else(|| OssError::access_denied("Anonymous access is forbidden for this operation."))?.clone();
        let req = listing::ListBucketsRequest::from_query(r.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let (prefix, marker) = (req.prefix.clone(), req.marker.clone());
        let buckets = self
            .db(move |s| {
                s.read(|tx| db::list_buckets(tx, caller.account_id, &prefix, &marker, 1001).map_err(from_meta))
            })
            .await?;
        let summaries = buckets.iter().map(|b| self.summary(b)).collect::<Result<Vec<_>, _>>()?;
        let page = req.page(summaries.iter());
        Ok((StatusCode::OK, vec![], xml::answers::list_all_my_buckets(&owner(caller.account_id), &req, &page)))
    }

    async fn put_bucket(&self, r: &Req, body: Body, bucket: &str, caller: Option<&Caller>) -> Result<Answer, OssError> {
        let caller =
            caller.ok_or_else(|| OssError::access_denied("Anonymous access is forbidden for this operation."))?.clone();
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
        };
        let acl_given = r.header("x-oss-acl").is_some();
        self.db(move |s| {
            s.write(|tx| {
                if let Some(existing) = db::get_bucket(tx, &b.name).map_err(from_meta)? {
                    if existing.account_id != b.account_id {
                        return Err(OssError::bucket_already_exists(&b.name));
                    }
                    // Creating one's own bucket again succeeds (and sets the ACL if given).
                    if acl_given {
                        db::set_bucket_acl(tx, &b.name, &b.acl).map_err(from_meta)?;
                    }
                    return Ok(());
                }
                let mine = db::list_buckets(tx, b.account_id, "", "", MAX_BUCKETS as u64).map_err(from_meta)?;
                if mine.len() >= MAX_BUCKETS {
                    return Err(OssError::too_many_buckets());
                }
                if !db::insert_bucket(tx, &b).map_err(from_meta)? {
                    return Err(OssError::bucket_already_exists(&b.name));
                }
                Ok(())
            })
        })
        .await?;
        Ok((StatusCode::OK, vec![("location", format!("/{bucket}"))], String::new()))
    }

    async fn put_bucket_acl(&self, r: &Req, bucket: &str, caller: Option<&Caller>) -> Result<Answer, OssError> {
        self.bucket(bucket, caller, Need::Owner).await?;
        let acl = Acl::parse_bucket(
            r.header("x-oss-acl")
                .ok_or_else(|| OssError::new(400, "MissingArgument", "Missing the x-oss-acl header."))?,
        )?;
        let n = bucket.to_owned();
        self.db(move |s| s.write(|tx| db::set_bucket_acl(tx, &n, acl.as_str()).map_err(from_meta))).await?;
        Ok((StatusCode::OK, vec![], String::new()))
    }
}

#[derive(Clone, Copy)]
enum Need {
    /// Bucket configuration: the owner only.
    Owner,
    /// Reading: the owner, or anyone when the bucket is public-read(-write).
    Read,
}

fn respond(request_id: &str, head: bool, result: Result<Answer, OssError>, host_id: &str) -> Response<Body> {
    let (status, extra, body, err) = match result {
        Ok((s, h, b)) => (s, h, b, None),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(request_id, code = e.code, "OSS request failed on feitian's side");
            }
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = if e.has_body() { e.to_xml(request_id, host_id) } else { String::new() };
            (status, vec![("x-oss-ec", e.code.to_owned())], body, Some(e))
        }
    };
    let mut resp = Response::new(if head { Body::empty() } else { Body::from(body.clone()) });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("AliyunOSS"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-oss-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&crate::dates::format_http_date(Utc::now())) {
        h.insert(header::DATE, v);
    }
    if !body.is_empty() {
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
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
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
        let eps: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        let target = RequestTarget::parse(host.as_deref(), parts.uri.path(), &eps);
        let params: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
            .collect();
        let keys = self.keys.clone();
        let me = Oss {
            store: self.store.clone(),
            keys: self.keys.clone(),
            region: self.region.clone(),
            sequence: AtomicU32::new(0),
        };
        Box::pin(async move {
            let result = async {
                let target = target?;
                let caller = {
                    let r = OssRequest {
                        method: parts.method.as_str(),
                        bucket: target.bucket.as_deref(),
                        key: target.key.as_deref().unwrap_or(""),
                        params: &params,
                        headers: &headers,
                    };
                    oss_auth::authenticate(keys.as_ref(), &r, Utc::now()).map_err(from_api)?
                };
                me.serve(Req { method: parts.method.clone(), target, params, headers }, body, caller).await
            }
            .await;
            respond(&request_id, head, result, &host_id)
        })
    }
}

impl From<MetaError> for OssError {
    fn from(e: MetaError) -> Self {
        from_meta(e)
    }
}
