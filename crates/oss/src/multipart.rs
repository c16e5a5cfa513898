//! Multipart uploads: InitiateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads and ListParts.
//!
//! A part is stored like an object (bytes first, then one transaction records it); a part
//! uploaded again under the same number replaces the old one. Completing moves the chosen
//! parts' extents to the new object in the same transaction that drops the upload, so the
//! object appears whole or not at all, and no byte is copied. Its ETag is
//! `"<MD5 of the parts' binary MD5s>-<number of parts>"` and its CRC-64 the combination of the
//! parts' ([`completion`]).

use axum::body::Body;
use axum::http::StatusCode;
use feitian_api::auth::Caller;
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::extent::Extent;
use feitian_meta::object::{self, Object};
use feitian_meta::upload::{self, Part, Upload};

use crate::access::Need;
use crate::dates::from_unix_millis;
use crate::errors::OssError;
use crate::grant::Grant;
use crate::listing::{ListPartsRequest, ListUploadsRequest};
use crate::metadata;
use crate::model::{ObjectType, PartSummary, UploadSummary};
use crate::objects::{check_copy_source, nothing_written, now_ms, WriteSpec, MAX_OBJECT_SIZE};
use crate::range::{self, RangeBehavior, RangeDecision};
use crate::service::{check, Answer, Oss, Req};
use crate::xml::answers::url_encode_if;
use crate::xml::requests::{self, CompletePart, StoredPart};
use crate::{crc64, etag, xml};

/// The largest part.
pub const MAX_PART_SIZE: u64 = MAX_OBJECT_SIZE;
/// The largest CompleteMultipartUpload body read (10,000 parts).
const MAX_COMPLETE_BODY: usize = 4 * 1024 * 1024;

impl StoredPart for Part {
    fn part_number(&self) -> u32 {
        self.part_number
    }
    fn etag(&self) -> &str {
        &self.etag
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// What a completed object is, from the parts that make it (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub etag: String,
    pub crc64: u64,
    pub size: u64,
    pub part_numbers: Vec<u32>,
}

/// The completed object's ETag, CRC-64 and size. The parts' ETags are their MD5s (they were
/// made by UploadPart and UploadPartCopy); anything else is feitian's fault.
pub fn completion(parts: &[&Part]) -> Result<Completion, OssError> {
    let md5s = parts
        .iter()
        .map(|p| etag::md5_of(&p.etag).ok_or_else(OssError::internal_error))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Completion {
        etag: etag::multipart(&md5s),
        crc64: crc64::combine_parts(parts.iter().map(|p| (p.crc64, p.size))),
        size: parts.iter().map(|p| p.size).sum(),
        part_numbers: parts.iter().map(|p| p.part_number).collect(),
    })
}

/// The parts `x-oss-complete-all: yes` completes with: every uploaded one, in order.
fn all_of(parts: &[Part]) -> Result<Vec<CompletePart>, OssError> {
    if parts.is_empty() {
        return Err(OssError::invalid_part("The upload has no parts to complete with."));
    }
    Ok(parts.iter().map(|p| CompletePart { part_number: p.part_number, etag: p.etag.clone() }).collect())
}

/// The upload id of a request (`?uploadId=`).
fn upload_id(r: &Req) -> String {
    r.param("uploadId").unwrap_or("").to_owned()
}

impl Oss {
    /// The bucket and the upload `upload_id` of `key`, if the caller may act on them as
    /// `need` says (`NoSuchUpload` for an id unknown for this key).
    async fn upload_for(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        caller: Option<&Caller>,
        need: Need,
    ) -> Result<(Bucket, Upload), OssError> {
        let (b, k, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let (bucket, upload) = self
            .store
            .read_async(move |tx| {
                let bucket = bucket::get_bucket(tx, &b)?.ok_or_else(|| OssError::no_such_bucket(&b))?;
                Ok::<_, OssError>((bucket, upload::get_upload(tx, &b, &k, &id)?))
            })
            .await?;
        check(&bucket, None, caller, need)?;
        let upload = upload.ok_or_else(|| OssError::no_such_upload(upload_id))?;
        Ok((bucket, upload))
    }

    pub(crate) async fn initiate_multipart_upload(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let spec = WriteSpec::from_request(r)?;
        let url = r.url_encoded()?;
        let forbid = metadata::forbid_overwrite(r.header("x-oss-forbid-overwrite"));
        let (b, existing) = self.object_for(bucket, key, caller, Need::Write, false).await?;
        if forbid && existing.is_some() {
            return Err(OssError::file_already_exists());
        }
        let upload = Upload {
            upload_id: upload::new_upload_id(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            headers: spec.headers.clone(),
            acl: spec.acl.as_str().to_owned(),
            storage_class: spec.class_in(&b)?.as_str().to_owned(),
            initiated_ms: now_ms(),
        };
        let id = upload.upload_id.clone();
        let grant = Grant::new(&b, caller);
        self.store
            .write_async(move |tx| {
                grant.recheck(tx, Some(&upload.key))?;
                upload::insert_upload(tx, &upload)?;
                Ok::<_, OssError>(())
            })
            .await?;
        Ok(Answer::xml(StatusCode::OK, xml::answers::initiate_multipart_upload_result(bucket, key, &id, url)))
    }

    pub(crate) async fn upload_part(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let id = upload_id(r);
        let number = requests::parse_part_number(r.param("partNumber").unwrap_or(""))?;
        let content_md5 = r.header("content-md5").map(etag::parse_content_md5).transpose()?;
        let expected = r.content_length()?;
        if expected.is_some_and(|n| n > MAX_PART_SIZE) {
            return Err(OssError::entity_too_large());
        }
        let (b, _) = self.upload_for(bucket, key, &id, caller, Need::Write).await?;
        let grant = Grant::new(&b, caller);
        let written = self.store_body(body, expected, MAX_PART_SIZE, content_md5).await?;
        let part = Part {
            part_number: number,
            size: written.len,
            etag: etag::simple(&written.md5),
            crc64: written.crc64,
            last_modified_ms: now_ms(),
        };
        let answer = Answer::empty(StatusCode::OK)
            .header("etag", part.etag.clone())
            .header("x-oss-hash-crc64ecma", crc64::header_value(part.crc64))
            .header("content-md5", etag::content_md5(&written.md5));
        self.store_part(grant, key, id, part, written.extents).await?;
        Ok(answer)
    }

    /// Records a part whose bytes are stored (they are released if the upload is gone, or
    /// what `grant` allowed no longer holds).
    async fn store_part(
        &self,
        grant: Grant,
        key: &str,
        id: String,
        part: Part,
        extents: Vec<Extent>,
    ) -> Result<(), OssError> {
        let k = key.to_owned();
        let fresh = extents.clone();
        self.commit(fresh, move |tx| {
            let b = grant.recheck(tx, None)?;
            if upload::get_upload(tx, &b.name, &k, &id)?.is_none() {
                return Err(OssError::no_such_upload(&id));
            }
            Ok(((), upload::put_part(tx, &id, &part, &extents)?))
        })
        .await
    }

    /// UploadPartCopy: a part made of (a range of) an existing object.
    pub(crate) async fn upload_part_copy(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let id = upload_id(r);
        let number = requests::parse_part_number(r.param("partNumber").unwrap_or(""))?;
        let (src_bucket, src_key) = metadata::parse_copy_source(r.header("x-oss-copy-source").unwrap_or(""))?;
        let (b, _) = self.upload_for(bucket, key, &id, caller, Need::Write).await?;
        let grant = Grant::new(&b, caller);
        let (_, src) = self.object_for(&src_bucket, &src_key, caller, Need::Read, true).await?;
        let (source, extents) = src.ok_or_else(|| OssError::no_such_key(&src_key))?;
        check_copy_source(r, &source)?;
        // OSS copies the whole object when the range is absent or not satisfiable.
        let span = match r.header("x-oss-copy-source-range") {
            None => 0..source.size,
            Some(h) => match range::evaluate(Some(h), RangeBehavior::Lenient, source.size)? {
                RangeDecision::Whole => 0..source.size,
                RangeDecision::Partial(br) => br.first..br.last + 1,
            },
        };
        if span.end - span.start > MAX_PART_SIZE {
            return Err(OssError::entity_too_large());
        }
        let written = if span.is_empty() { nothing_written() } else { self.blobs.copy(&extents, span).await? };
        let part = Part {
            part_number: number,
            size: written.len,
            etag: etag::simple(&written.md5),
            crc64: written.crc64,
            last_modified_ms: now_ms(),
        };
        let answer = Answer::xml(
            StatusCode::OK,
            xml::answers::copy_part_result(&part.etag, from_unix_millis(part.last_modified_ms)),
        )
        .header("etag", part.etag.clone())
        .header("x-oss-hash-crc64ecma", crc64::header_value(part.crc64));
        self.store_part(grant, key, id, part, written.extents).await?;
        Ok(answer)
    }

    pub(crate) async fn complete_multipart_upload(
        &self,
        r: &Req,
        body: Body,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let id = upload_id(r);
        let url = r.url_encoded()?;
        let forbid = metadata::forbid_overwrite(r.header("x-oss-forbid-overwrite"));
        let complete_all = r.header("x-oss-complete-all").is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
        let (b, _) = self.upload_for(bucket, key, &id, caller, Need::Write).await?;
        let grant = Grant::new(&b, caller);
        let body = axum::body::to_bytes(body, MAX_COMPLETE_BODY).await.map_err(|_| OssError::malformed_xml())?;
        let listed = if complete_all {
            if !body.iter().all(u8::is_ascii_whitespace) {
                return Err(OssError::invalid_argument(
                    "x-oss-complete-all",
                    "yes",
                    "The request body must be empty when x-oss-complete-all is yes.",
                ));
            }
            None
        } else {
            Some(requests::parse_complete_multipart_upload(&body)?)
        };
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let now = now_ms();
        let (etag, crc) = self
            .commit(Vec::new(), move |tx| {
                // The same bucket, and the key (whose ACL may have changed since the upload
                // began) still writable by this caller.
                grant.recheck(tx, Some(&k))?;
                let upload = upload::get_upload(tx, &b, &k, &id)?.ok_or_else(|| OssError::no_such_upload(&id))?;
                let parts = upload::all_parts(tx, &id)?;
                let listed = match listed {
                    Some(l) => l,
                    None => all_of(&parts)?,
                };
                let chosen = requests::match_parts(&listed, &parts)?;
                if forbid && object::get_object(tx, &b, &k)?.is_some() {
                    return Err(OssError::file_already_exists());
                }
                let done = completion(&chosen)?;
                let o = Object {
                    bucket: b.clone(),
                    key: k.clone(),
                    size: done.size,
                    etag: done.etag.clone(),
                    crc64: done.crc64,
                    object_type: ObjectType::Multipart.as_str().to_owned(),
                    headers: upload.headers,
                    acl: upload.acl,
                    storage_class: upload.storage_class,
                    last_modified_ms: now,
                };
                let freed = upload::complete_upload(tx, &id, &o, &done.part_numbers)?;
                Ok(((done.etag, done.crc64), freed))
            })
            .await?;
        let location = format!("http://{bucket}.{}/{}", self.endpoint(), url_encode_if(key, true));
        Ok(Answer::xml(
            StatusCode::OK,
            xml::answers::complete_multipart_upload_result(&location, bucket, key, &etag, url),
        )
        .header("etag", etag)
        .header("x-oss-hash-crc64ecma", crc64::header_value(crc)))
    }

    pub(crate) async fn abort_multipart_upload(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let id = upload_id(r);
        let (b, _) = self.upload_for(bucket, key, &id, caller, Need::Write).await?;
        let grant = Grant::new(&b, caller);
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.commit(Vec::new(), move |tx| {
            grant.recheck(tx, None)?;
            if upload::get_upload(tx, &b, &k, &id)?.is_none() {
                return Err(OssError::no_such_upload(&id));
            }
            Ok(((), upload::abort_upload(tx, &id)?.unwrap_or_default()))
        })
        .await?;
        Ok(Answer::empty(StatusCode::NO_CONTENT))
    }

    /// ListMultipartUploads (`GET /?uploads`).
    pub(crate) async fn list_multipart_uploads(
        &self,
        r: &Req,
        bucket: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        self.bucket(bucket, caller, Need::Read).await?;
        let req = ListUploadsRequest::from_query(r.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let (b, q) = (bucket.to_owned(), req.clone());
        let rows = self
            .store
            .read_async(move |tx| {
                upload::list_uploads(
                    tx,
                    &b,
                    &q.prefix,
                    &q.delimiter,
                    &q.key_marker,
                    &q.upload_id_marker,
                    q.max_uploads + 1,
                )
            })
            .await?;
        let uploads: Vec<UploadSummary> = rows
            .into_iter()
            .map(|u| UploadSummary { key: u.key, upload_id: u.upload_id, initiated: from_unix_millis(u.initiated_ms) })
            .collect();
        let page = req.page(uploads.iter());
        Ok(Answer::xml(StatusCode::OK, xml::answers::list_multipart_uploads_result(bucket, &req, &page)))
    }

    /// ListParts (`GET /key?uploadId=`).
    pub(crate) async fn list_parts(
        &self,
        r: &Req,
        bucket: &str,
        key: &str,
        caller: Option<&Caller>,
    ) -> Result<Answer, OssError> {
        let id = upload_id(r);
        self.upload_for(bucket, key, &id, caller, Need::Read).await?;
        let req = ListPartsRequest::from_query(r.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let (uid, after, limit) = (id.clone(), req.part_number_marker, req.max_parts + 1);
        let rows = self.store.read_async(move |tx| upload::list_parts(tx, &uid, after, limit)).await?;
        let parts: Vec<PartSummary> = rows
            .into_iter()
            .map(|p| PartSummary {
                part_number: p.part_number,
                last_modified: from_unix_millis(p.last_modified_ms),
                etag: p.etag,
                size: p.size,
                crc64: p.crc64,
            })
            .collect();
        let page = req.page(parts.iter());
        Ok(Answer::xml(StatusCode::OK, xml::answers::list_parts_result(bucket, key, &id, &req, &page)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, data: &[u8]) -> Part {
        Part {
            part_number: n,
            size: data.len() as u64,
            etag: etag::simple(&etag::md5(data)),
            crc64: crc64::checksum(data),
            last_modified_ms: 0,
        }
    }

    #[test]
    fn completion_is_what_oss2_checks() {
        let (a, b) = (part(1, b"aaaaa"), part(3, b"bbb"));
        let done = completion(&[&a, &b]).unwrap();
        // The ETag rule of etag.rs (same parts as its test).
        assert_eq!(done.etag, "\"72D27AFAC8E2FBD3662861B9D607A02C-2\"");
        // oss2.utils.calc_obj_crc_from_parts == CRC of the concatenation.
        assert_eq!(done.crc64, crc64::checksum(b"aaaaabbb"));
        assert_eq!((done.size, done.part_numbers), (8, vec![1, 3]));

        let mut odd = part(2, b"x");
        odd.etag = "\"NOT-AN-MD5\"".into();
        assert_eq!(completion(&[&odd]).unwrap_err().status, 500);
    }

    #[test]
    fn complete_all_takes_every_part_in_order() {
        let parts = vec![part(1, b"a"), part(2, b"b")];
        let listed = all_of(&parts).unwrap();
        assert_eq!(listed.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2]);
        // Small non-last parts are still refused by the usual rule.
        let e = requests::match_parts(&listed, &parts).unwrap_err();
        assert_eq!(e.code, "EntityTooSmall");
        assert_eq!(all_of(&[]).unwrap_err().code, "InvalidPart");
    }
}
