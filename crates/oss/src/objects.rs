//! The object actions: PutObject, GetObject, HeadObject, GetObjectMeta, DeleteObject,
//! DeleteMultipleObjects, CopyObject, AppendObject, Put/GetObjectAcl, and ListObjects (V1
//! and V2).
//!
//! Every write follows one order, so that bad input never leaves a partial object visible:
//! the bytes go to the byte store first ([`Blobs`](crate::blobs::Blobs)), then **one**
//! metadata transaction makes them an object ([`Oss::commit`]); if that transaction fails,
//! the new bytes are released, and once it commits, the bytes it replaced are.

use axum::body::Body;
use axum::http::StatusCode;
use chrono::Utc;
use feitian_api::auth::Caller;
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::extent::Extent;
use feitian_meta::object::{self, Appended, Object, ObjectHeaders};

use crate::access::stored_acl;
use crate::access::Need;
use crate::blobs::Written;
use crate::conditional::{self, Preconditions, Validators};
use crate::dates::{format_http_date, from_unix_millis};
use crate::errors::OssError;
use crate::grant::Grant;
use crate::listing::{ListObjectsV1Request, ListObjectsV2Request};
use crate::metadata::{self, MetadataDirective};
use crate::model::{Acl, ObjectSummary, ObjectType, StorageClass};
use crate::range::{self, RangeBehavior, RangeDecision};
use crate::service::{check, owner, stored_class, Answer, Oss, Req};
use crate::{crc64, etag, names, xml};

/// The largest object PutObject, CopyObject and AppendObject make, and the largest part.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The largest DeleteMultipleObjects body read (1,000 keys of up to 1,023 bytes, escaped).
const MAX_DELETE_BODY: usize = 8 * 1024 * 1024;

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// What a request that creates an object says about it besides its bytes.
pub(crate) struct WriteSpec {
    pub headers: ObjectHeaders,
    /// `x-oss-object-acl`, `default` when absent.
    pub acl: Acl,
    /// `x-oss-storage-class`; the bucket's when absent.
    pub class: Option<StorageClass>,
}

impl WriteSpec {
    pub fn from_request(r: &Req) -> Result<Self, OssError> {
        Ok(WriteSpec {
            headers: metadata::from_request(&r.headers)?,
            acl: Acl::parse_object(r.header("x-oss-object-acl").unwrap_or("default").trim())?,
            class: r.header("x-oss-storage-class").map(|c| StorageClass::parse(c.trim())).transpose()?,
        })
    }

    /// The storage class an object made in bucket `b` gets.
    pub fn class_in(&self, b: &Bucket) -> Result<StorageClass, OssError> {
        match self.class {
            Some(c) => Ok(c),
            None => stored_class(&b.storage_class),
        }
    }
}

/// What an empty body or an empty copy stores: nothing.
pub(crate) fn nothing_written() -> Written {
    Written { extents: Vec::new(), len: 0, md5: etag::md5(b""), crc64: 0 }
}

/// The object as ListObjects shows it.
fn summary(o: &Object) -> Result<ObjectSummary, OssError> {
    Ok(ObjectSummary {
        key: o.key.clone(),
        last_modified: from_unix_millis(o.last_modified_ms),
        etag: o.etag.clone(),
        size: o.size,
        object_type: ObjectType::parse(&o.object_type).ok_or_else(OssError::internal_error)?,
        storage_class: stored_class(&o.storage_class)?,
    })
}

/// GET/HEAD conditions; a 304 carries the object's validators.
fn check_preconditions(r: &Req, o: &Object) -> Result<(), OssError> {
    let p = Preconditions {
        if_match: r.header("if-match"),
        if_none_match: r.header("if-none-match"),
        if_modified_since: r.header("if-modified-since"),
        if_unmodified_since: r.header("if-unmodified-since"),
    };
    let last_modified = from_unix_millis(o.last_modified_ms);
    conditional::evaluate(&p, &Validators { etag: &o.etag, last_modified }, Utc::now()).into_result().map_err(|e| {
        if e.status == 304 {
            e.with_header("etag", o.etag.clone()).with_header("last-modified", format_http_date(last_modified))
        } else {
            e
        }
    })
}

/// CopyObject's and UploadPartCopy's conditions on the source (`x-oss-copy-source-if-*`).
pub(crate) fn check_copy_source(r: &Req, o: &Object) -> Result<(), OssError> {
    let p = Preconditions {
        if_match: r.header("x-oss-copy-source-if-match"),
        if_none_match: r.header("x-oss-copy-source-if-none-match"),
        if_modified_since: r.header("x-oss-copy-source-if-modified-since"),
        if_unmodified_since: r.header("x-oss-copy-source-if-unmodified-since"),
    };
    let v = Validators { etag: &o.etag, last_modified: from_unix_millis(o.last_modified_ms) };
    conditional::evaluate_copy_source(&p, &v, Utc::now()).into_result()
}

/// AppendObject's rules: only an appendable object (or none yet) can be appended to, and
/// only at its end. `PositionNotEqualToLength` tells the length in
/// `x-oss-next-append-position` (`oss2` reads it).
pub(crate) fn check_append(current: Option<&Object>, position: u64) -> Result<(), OssError> {
    let length = match current {
        None => 0,
        Some(o) if o.object_type != ObjectType::Appendable.as_str() => return Err(OssError::object_not_appendable()),
        Some(o) => o.size,
    };
    if position != length {
        return Err(
            OssError::position_not_equal_to_length().with_header("x-oss-next-append-position", length.to_string())
        );
    }
    Ok(())
}

/// AppendObject's `position`.
fn parse_position(value: Option<&str>) -> Result<u64, OssError> {
    let v = value.ok_or_else(|| OssError::missing_argument("position"))?;
    v.parse().map_err(|_| OssError::invalid_argument("position", v, "Position must be a non-negative integer."))
}

/// The answer to a successful copy: the document and the headers `oss2` reads.
fn copied(etag: String, crc: u64, last_modified_ms: i64) -> Answer {
    Answer::xml(StatusCode::OK, xml::answers::copy_object_result(&etag, from_unix_millis(last_modified_ms)))
        .header("etag", etag)
        .header("x-oss-hash-crc64ecma", crc64::header_value(crc))
}

impl Oss {
    /// The bucket and the object at `key` (with its extents when asked), read together, if
    /// the caller may act on them as `need` says.
    pub(crate) async fn object_for(
        &self,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
        need: Need,
        with_extents: bool,
    ) -> Result<(Bucket, Option<(Object, Vec<Extent>)>), OssError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let (bucket, found) = self
            .store
            .read_async(move |tx| {
                let bucket = bucket::get_bucket(tx, &b)?.ok_or_else(|| OssError::no_such_bucket(&b))?;
                let found = if with_extents {
                    object::get_object_with_extents(tx, &b, &k)?
                } else {
                    object::get_object(tx, &b, &k)?.map(|o| (o, Vec::new()))
                };
                Ok::<_, OssError>((bucket, found))
            })
            .await?;
        check(&bucket, found.as_ref().map(|(o, _)| o.acl.as_str()), caller, need)?;
        Ok((bucket, found))
    }

    pub(crate) async fn put_object(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let spec = WriteSpec::from_request(r)?;
        let content_md5 = r.header("content-md5").map(etag::parse_content_md5).transpose()?;
        let forbid = metadata::forbid_overwrite(r.header("x-oss-forbid-overwrite"));
        let expected = r.content_length()?;
        if expected.is_some_and(|n| n > MAX_OBJECT_SIZE) {
            return Err(OssError::entity_too_large());
        }
        let (b, existing) = self.object_for(bucket, key, caller, Need::Write, false).await?;
        if forbid && existing.is_some() {
            return Err(OssError::file_already_exists());
        }
        let grant = Grant::new(&b, caller);
        let written = self.store_body(body, expected, MAX_OBJECT_SIZE, content_md5).await?;
        let o = Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: written.len,
            etag: etag::simple(&written.md5),
            crc64: written.crc64,
            object_type: ObjectType::Normal.as_str().to_owned(),
            headers: spec.headers.clone(),
            acl: spec.acl.as_str().to_owned(),
            storage_class: spec.class_in(&b)?.as_str().to_owned(),
            last_modified_ms: now_ms(),
        };
        let answer = Answer::empty(StatusCode::OK)
            .header("etag", o.etag.clone())
            .header("x-oss-hash-crc64ecma", crc64::header_value(o.crc64))
            .header("content-md5", etag::content_md5(&written.md5));
        self.commit_object(grant, o, written.extents, forbid).await?;
        Ok(answer)
    }

    /// Makes `o` (with the bytes of `fresh`) the object at its key in one transaction,
    /// unless `forbid` and one exists (`FileAlreadyExists`) or what `grant` allowed no
    /// longer holds (`NoSuchBucket`, `AccessDenied`: see [`Grant::recheck`]); the bytes it
    /// replaced are released once that commits, `fresh` if it fails.
    async fn commit_object(&self, grant: Grant, o: Object, fresh: Vec<Extent>, forbid: bool) -> Result<(), OssError> {
        let extents = fresh.clone();
        self.commit(fresh, move |tx| {
            grant.recheck(tx, Some(&o.key))?;
            if forbid && object::get_object(tx, &o.bucket, &o.key)?.is_some() {
                return Err(OssError::file_already_exists());
            }
            Ok(((), object::put_object(tx, &o, &extents)?))
        })
        .await
    }

    /// GetObject, or HeadObject when `head`.
    pub(crate) async fn get_object(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
        head: bool,
    ) -> Result<Answer, OssError> {
        let (_, found) = self.object_for(bucket, key, caller, Need::Read, !head).await?;
        if !head {
            metadata::check_overrides_allowed(&r.params, caller.is_none())?;
        }
        let (o, extents) = found.ok_or_else(|| OssError::no_such_key(key))?;
        check_preconditions(r, &o)?;
        let mut headers = metadata::object_headers(&o);
        if head {
            return Ok(Answer::empty(StatusCode::OK)
                .with_headers(headers)
                .header("content-length", o.size.to_string()));
        }
        let behavior = RangeBehavior::from_header(r.header("x-oss-range-behavior"));
        let decision = range::evaluate(r.header("range"), behavior, o.size)
            .map_err(|e| e.with_header("content-range", range::unsatisfied_content_range(o.size)))?;
        metadata::apply_overrides(&mut headers, &r.params);
        let (status, span, content_range) = match decision {
            RangeDecision::Whole => (StatusCode::OK, 0..o.size, None),
            RangeDecision::Partial(br) => {
                (StatusCode::PARTIAL_CONTENT, br.first..br.last + 1, Some(br.content_range(o.size)))
            }
        };
        let length = span.end - span.start;
        let body = if length == 0 { Body::empty() } else { self.blobs.read(extents, span) };
        let mut answer =
            Answer::stream(status, body).with_headers(headers).header("content-length", length.to_string());
        if let Some(cr) = content_range {
            answer = answer.header("content-range", cr);
        }
        Ok(answer)
    }

    /// GetObjectMeta (`HEAD ?objectMeta`): the basic validators only.
    pub(crate) async fn get_object_meta(
        &self,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let (_, found) = self.object_for(bucket, key, caller, Need::Read, false).await?;
        let (o, _) = found.ok_or_else(|| OssError::no_such_key(key))?;
        Ok(Answer::empty(StatusCode::OK)
            .header("content-length", o.size.to_string())
            .header("etag", o.etag.clone())
            .header("last-modified", format_http_date(from_unix_millis(o.last_modified_ms)))
            .header("x-oss-hash-crc64ecma", crc64::header_value(o.crc64)))
    }

    /// DeleteObject: 204 whether or not the object existed.
    pub(crate) async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let (b, _) = self.object_for(bucket, key, caller, Need::Write, false).await?;
        let grant = Grant::new(&b, caller);
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.commit(Vec::new(), move |tx| {
            grant.recheck(tx, Some(&k))?;
            Ok(((), object::delete_object(tx, &b, &k)?.unwrap_or_default()))
        })
        .await?;
        Ok(Answer::empty(StatusCode::NO_CONTENT))
    }

    /// DeleteMultipleObjects (`POST /?delete`): all in one transaction; every key named is
    /// reported deleted, existing or not (as OSS does).
    pub(crate) async fn delete_multiple_objects(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let b = self.bucket(bucket, caller, Need::Write).await?;
        let grant = Grant::new(&b, caller);
        let url = r.url_encoded()?;
        let claimed = r
            .header("content-md5")
            .ok_or_else(|| OssError::invalid_request("Missing required header for this request: Content-MD5."))?;
        let body = axum::body::to_bytes(body, MAX_DELETE_BODY).await.map_err(|_| OssError::malformed_xml())?;
        etag::verify_content_md5(claimed, &etag::md5(&body))?;
        let req = xml::requests::parse_delete(&body)?;
        for o in &req.objects {
            names::validate_object_key(&o.key)?;
            metadata::check_version_id(o.version_id.as_deref())?;
        }
        let keys: Vec<String> = req.objects.into_iter().map(|o| o.key).collect();
        let name = b.name.clone();
        let deleted = self
            .commit(Vec::new(), move |tx| {
                let mut freed = Vec::new();
                for k in &keys {
                    // The same bucket, and (an object's own ACL may forbid what the bucket's
                    // allows) each key still writable by this caller.
                    grant.recheck(tx, Some(k))?;
                    freed.extend(object::delete_object(tx, &name, k)?.unwrap_or_default());
                }
                Ok((keys, freed))
            })
            .await?;
        Ok(Answer::xml(StatusCode::OK, xml::answers::delete_result(&deleted, req.quiet, url)))
    }

    /// CopyObject (`PUT` with `x-oss-copy-source`). Onto itself it changes only the metadata
    /// (no bytes are copied), as OSS does in unversioned buckets.
    pub(crate) async fn copy_object(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let (src_bucket, src_key) = metadata::parse_copy_source(r.header("x-oss-copy-source").unwrap_or(""))?;
        let directive = MetadataDirective::from_header(r.header("x-oss-metadata-directive"))?;
        let spec = WriteSpec::from_request(r)?;
        let acl_given = r.header("x-oss-object-acl").is_some();
        let forbid = metadata::forbid_overwrite(r.header("x-oss-forbid-overwrite"));
        let same = src_bucket == bucket && src_key == key;

        let (_, src) = self.object_for(&src_bucket, &src_key, caller, Need::Read, !same).await?;
        let (source, source_extents) = src.ok_or_else(|| OssError::no_such_key(&src_key))?;
        check_copy_source(r, &source)?;
        let (b, existing) = self.object_for(bucket, key, caller, Need::Write, false).await?;
        let grant = Grant::new(&b, caller);
        let headers = match directive {
            MetadataDirective::Replace => spec.headers.clone(),
            MetadataDirective::Copy => source.headers.clone(),
        };
        let now = now_ms();

        if same {
            // Metadata only: the ACL stays unless given; the storage class may change.
            let acl = if acl_given { spec.acl.as_str().to_owned() } else { source.acl.clone() };
            let class = match spec.class {
                Some(c) => c.as_str().to_owned(),
                None => source.storage_class.clone(),
            };
            let (bn, kn) = (bucket.to_owned(), key.to_owned());
            self.commit(Vec::new(), move |tx| {
                grant.recheck(tx, Some(&kn))?;
                if !object::update_object_metadata(tx, &bn, &kn, &headers, &acl, &class, now)? {
                    return Err(OssError::no_such_key(&kn));
                }
                Ok(((), Vec::new()))
            })
            .await?;
            return Ok(copied(source.etag, source.crc64, now));
        }

        if forbid && existing.is_some() {
            return Err(OssError::file_already_exists());
        }
        let written =
            if source.size == 0 { nothing_written() } else { self.blobs.copy(&source_extents, 0..source.size).await? };
        let o = Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: written.len,
            etag: etag::simple(&written.md5),
            crc64: written.crc64,
            object_type: ObjectType::Normal.as_str().to_owned(),
            headers,
            acl: spec.acl.as_str().to_owned(),
            storage_class: spec.class_in(&b)?.as_str().to_owned(),
            last_modified_ms: now,
        };
        let answer = copied(o.etag.clone(), o.crc64, now);
        self.commit_object(grant, o, written.extents, forbid).await?;
        Ok(answer)
    }

    /// AppendObject (`POST ?append&position=N`). The first append creates the object with
    /// the request's metadata; later ones only add bytes.
    pub(crate) async fn append_object(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let position = parse_position(r.param("position"))?;
        let spec = WriteSpec::from_request(r)?;
        let content_md5 = r.header("content-md5").map(etag::parse_content_md5).transpose()?;
        let expected = r.content_length()?;
        let (b, existing) = self.object_for(bucket, key, caller, Need::Write, false).await?;
        check_append(existing.as_ref().map(|(o, _)| o), position)?;
        let grant = Grant::new(&b, caller);
        let room = MAX_OBJECT_SIZE.saturating_sub(position);
        if expected.is_some_and(|n| n > room) {
            return Err(OssError::entity_too_large());
        }
        let written = self.store_body(body, expected, room, content_md5).await?;
        let first = Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: written.len,
            etag: etag::appendable(written.crc64),
            crc64: written.crc64,
            object_type: ObjectType::Appendable.as_str().to_owned(),
            headers: spec.headers.clone(),
            acl: spec.acl.as_str().to_owned(),
            storage_class: spec.class_in(&b)?.as_str().to_owned(),
            last_modified_ms: now_ms(),
        };
        let (len, crc) = (written.len, written.crc64);
        let extents = written.extents.clone();
        let (size, crc, etag) = self
            .commit(written.extents, move |tx| {
                grant.recheck(tx, Some(&first.key))?;
                let current = object::get_object(tx, &first.bucket, &first.key)?;
                check_append(current.as_ref(), position)?;
                match current {
                    None => {
                        let freed = object::put_object(tx, &first, &extents)?;
                        Ok(((first.size, first.crc64, first.etag), freed))
                    }
                    Some(o) => {
                        let crc = crc64::combine(o.crc64, crc, len);
                        let new = Appended {
                            size: o.size + len,
                            crc64: crc,
                            etag: etag::appendable(crc),
                            last_modified_ms: first.last_modified_ms,
                        };
                        object::append_object(tx, &first.bucket, &first.key, &extents, &new)?;
                        Ok(((new.size, new.crc64, new.etag), Vec::new()))
                    }
                }
            })
            .await?;
        Ok(Answer::empty(StatusCode::OK)
            .header("etag", etag)
            .header("x-oss-next-append-position", size.to_string())
            .header("x-oss-hash-crc64ecma", crc64::header_value(crc)))
    }

    pub(crate) async fn put_object_acl(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let grant = Grant::new(&self.bucket(bucket, caller, Need::Owner).await?, caller);
        let acl = Acl::parse_object(
            r.header("x-oss-object-acl").ok_or_else(|| OssError::missing_argument("x-oss-object-acl"))?.trim(),
        )?;
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.commit(Vec::new(), move |tx| {
            grant.same_bucket(tx)?;
            if !object::set_object_acl(tx, &b, &k, acl.as_str())? {
                return Err(OssError::no_such_key(&k));
            }
            Ok(((), Vec::new()))
        })
        .await?;
        Ok(Answer::empty(StatusCode::OK))
    }

    pub(crate) async fn get_object_acl(
        &self,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let (b, found) = self.object_for(bucket, key, caller, Need::Owner, false).await?;
        let (o, _) = found.ok_or_else(|| OssError::no_such_key(key))?;
        Ok(Answer::xml(StatusCode::OK, xml::answers::access_control_policy(&owner(b.account_id), stored_acl(&o.acl)?)))
    }

    /// ListObjects (V1) and ListObjectsV2 (`list-type=2`). The store returns at most one
    /// entry past the page (and one key per common prefix), so a page costs a few index
    /// seeks however large the bucket.
    pub(crate) async fn list_objects(
        &self,
        r: &Req,
        bucket: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let b = self.bucket(bucket, caller, Need::Read).await?;
        let query = || r.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let o = owner(b.account_id);
        if r.param("list-type") == Some("2") {
            let req = ListObjectsV2Request::from_query(query())?;
            let rows = self.scan_objects(bucket, &req.prefix, &req.delimiter, req.after(), req.max_keys).await?;
            let page = req.page(rows.iter());
            Ok(Answer::xml(StatusCode::OK, xml::answers::list_bucket_result_v2(bucket, &req, &page, &o)))
        } else {
            let req = ListObjectsV1Request::from_query(query())?;
            let rows = self.scan_objects(bucket, &req.prefix, &req.delimiter, &req.marker, req.max_keys).await?;
            let page = req.page(rows.iter());
            Ok(Answer::xml(StatusCode::OK, xml::answers::list_bucket_result_v1(bucket, &req, &page, &o)))
        }
    }

    /// Enough of the bucket's listing for a page of `max_keys` entries after `after`.
    async fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        after: &str,
        max_keys: usize,
    ) -> Result<Vec<ObjectSummary>, OssError> {
        let (b, p, d, a) = (bucket.to_owned(), prefix.to_owned(), delimiter.to_owned(), after.to_owned());
        let rows = self.store.read_async(move |tx| object::list_objects(tx, &b, &p, &d, &a, max_keys + 1)).await?;
        rows.iter().map(summary).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(object_type: ObjectType, size: u64) -> Object {
        Object {
            bucket: "b".into(),
            key: "k".into(),
            size,
            etag: "\"E\"".into(),
            crc64: 0,
            object_type: object_type.as_str().into(),
            headers: ObjectHeaders::default(),
            acl: "default".into(),
            storage_class: "Standard".into(),
            last_modified_ms: 0,
        }
    }

    #[test]
    fn append_rules() {
        assert_eq!(check_append(None, 0), Ok(()));
        let e = check_append(None, 5).unwrap_err();
        assert_eq!((e.status, e.code), (409, "PositionNotEqualToLength"));
        assert_eq!(e.headers, vec![("x-oss-next-append-position", "0".to_string())]);

        let a = object(ObjectType::Appendable, 7);
        assert_eq!(check_append(Some(&a), 7), Ok(()));
        let e = check_append(Some(&a), 6).unwrap_err();
        assert_eq!(e.headers, vec![("x-oss-next-append-position", "7".to_string())]);

        for t in [ObjectType::Normal, ObjectType::Multipart] {
            let e = check_append(Some(&object(t, 7)), 7).unwrap_err();
            assert_eq!((e.status, e.code), (409, "ObjectNotAppendable"));
        }
    }

    #[test]
    fn positions() {
        assert_eq!(parse_position(Some("0")), Ok(0));
        assert_eq!(parse_position(Some("123")), Ok(123));
        assert_eq!(parse_position(None).unwrap_err().code, "MissingArgument");
        for bad in ["", "-1", "x", "1.5", "99999999999999999999999"] {
            let e = parse_position(Some(bad)).unwrap_err();
            assert_eq!((e.code, e.detail("ArgumentName")), ("InvalidArgument", Some("position")), "{bad}");
        }
    }

    #[test]
    fn summaries_and_copies() {
        let s = summary(&object(ObjectType::Multipart, 3)).unwrap();
        assert_eq!((s.object_type, s.size, s.storage_class), (ObjectType::Multipart, 3, StorageClass::Standard));
        let mut bad = object(ObjectType::Normal, 1);
        bad.object_type = "Weird".into();
        assert_eq!(summary(&bad).unwrap_err().status, 500);

        let a = copied("\"E\"".into(), 42, 1_449_313_829_000);
        assert_eq!(a.status, StatusCode::OK);
        let h: Vec<(&str, &str)> = a.headers.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        assert_eq!(h, vec![("etag", "\"E\""), ("x-oss-hash-crc64ecma", "42")]);

        let w = nothing_written();
        assert_eq!((w.len, etag::simple(&w.md5), w.crc64), (0, "\"D41D8CD98F00B204E9800998ECF8427E\"".into(), 0));
    }
}
