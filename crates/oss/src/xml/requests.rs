//! The request bodies `oss2` sends, parsed and checked.
//!
//! - `CompleteMultipartUpload` (`oss2.xml_utils.to_complete_upload_request`):
//!   `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"…"</ETag></Part>…`.
//!   Parts must be listed in strictly ascending order (`InvalidPartOrder`, duplicates
//!   included); each must name an uploaded part with the same ETag (`InvalidPart`); every part
//!   but the last must be at least 100 KB (`EntityTooSmall`). ([`parse_complete_multipart_upload`],
//!   then [`match_parts`].) `oss2` sends no body at all with `x-oss-complete-all: yes`; that
//!   case never reaches this parser.
//! - `Delete` (`to_batch_delete_objects_request`): `<Delete><Quiet>false</Quiet><Object><Key>…`
//!   with 1–1000 objects; `oss2` also sends `Content-MD5`, checked with
//!   [`crate::etag::verify_content_md5`]. Keys arrive as plain text even when the request has
//!   `encoding-type=url` (that parameter only encodes the answer).
//! - `CreateBucketConfiguration` (`to_put_bucket_config`): optional `StorageClass` and
//!   `DataRedundancyType`; `oss2` sends no body when no configuration is given.
//!
//! Any body that is not well-formed XML, has the wrong root, misses a mandatory element or has
//! an unreadable number is `MalformedXML` — never a panic.

use std::collections::HashMap;

use super::{parse_document, Element};
use crate::errors::OssError;
use crate::etag;
use crate::model::{DataRedundancyType, PartSummary, StorageClass};

/// Most objects one Delete may name.
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// Smallest size of any part but the last (OSS: 100 KB).
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Part numbers run from 1 to this.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Reads UploadPart's `partNumber` query parameter: an integer from 1 to 10,000, else
/// `InvalidArgument`.
pub fn parse_part_number(value: &str) -> Result<u32, OssError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => Err(OssError::invalid_argument(
            "partNumber",
            value,
            "Part number must be an integer between 1 and 10000, inclusive.",
        )),
    }
}

/// One `<Part>` of a CompleteMultipartUpload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePart {
    pub part_number: u32,
    /// As sent (usually quoted).
    pub etag: String,
}

/// Parses a CompleteMultipartUpload body and checks the order of its parts.
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletePart>, OssError> {
    let root = parse_document(body)?;
    expect_root(&root, "CompleteMultipartUpload")?;
    let mut parts = Vec::new();
    for p in root.children_named("Part") {
        let number = p.child("PartNumber").ok_or_else(OssError::malformed_xml)?;
        let part_number = number.text.trim().parse::<u32>().map_err(|_| OssError::malformed_xml())?;
        let etag = p.child("ETag").ok_or_else(OssError::malformed_xml)?.text.trim().to_owned();
        parts.push(CompletePart { part_number, etag });
    }
    if parts.is_empty() {
        return Err(OssError::malformed_xml());
    }
    if parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(OssError::invalid_part_order());
    }
    Ok(parts)
}

/// What the completion check needs of a stored part.
pub trait StoredPart {
    fn part_number(&self) -> u32;
    fn etag(&self) -> &str;
    fn size(&self) -> u64;
}

impl<T: StoredPart + ?Sized> StoredPart for &T {
    fn part_number(&self) -> u32 {
        (**self).part_number()
    }
    fn etag(&self) -> &str {
        (**self).etag()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

impl StoredPart for PartSummary {
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

/// Matches the parts a client lists (already order-checked) to the stored ones and returns
/// the stored parts that make the object, in order. Parts uploaded but not listed are simply
/// not part of the object.
pub fn match_parts<'u, U: StoredPart>(requested: &[CompletePart], uploaded: &'u [U]) -> Result<Vec<&'u U>, OssError> {
    let by_number: HashMap<u32, &U> = uploaded.iter().map(|u| (u.part_number(), u)).collect();
    let mut chosen = Vec::with_capacity(requested.len());
    for r in requested {
        let stored = by_number.get(&r.part_number).filter(|s| etag::same(s.etag(), &r.etag)).ok_or_else(|| {
            OssError::invalid_part(
                "One or more of the specified parts could not be found or the specified entity tag \
                     might not have matched the part's entity tag.",
            )
            .with_detail("PartNumber", r.part_number.to_string())
            .with_detail("ETag", r.etag.clone())
        })?;
        chosen.push(*stored);
    }
    if let Some((_, init)) = chosen.split_last() {
        if let Some(small) = init.iter().find(|p| p.size() < MIN_PART_SIZE) {
            return Err(OssError::entity_too_small()
                .with_detail("PartNumber", small.part_number().to_string())
                .with_detail("ProposedSize", small.size().to_string())
                .with_detail("MinSizeAllowed", MIN_PART_SIZE.to_string()));
        }
    }
    Ok(chosen)
}

/// One object named in a Delete body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteObject {
    pub key: String,
    pub version_id: Option<String>,
}

/// A parsed Delete (DeleteMultipleObjects) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Quiet mode: the answer lists nothing. Defaults to false.
    pub quiet: bool,
    pub objects: Vec<DeleteObject>,
}

/// Parses a Delete body: 1–1000 objects, each with a `Key`; `Quiet` `true`/`false` if present.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, OssError> {
    let root = parse_document(body)?;
    expect_root(&root, "Delete")?;
    let quiet = match root.child("Quiet").map(|q| q.text.trim()) {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(OssError::malformed_xml()),
    };
    let mut objects = Vec::new();
    for o in root.children_named("Object") {
        if objects.len() == MAX_DELETE_OBJECTS {
            return Err(OssError::malformed_xml());
        }
        let key = o.child("Key").ok_or_else(OssError::malformed_xml)?.text.clone();
        let version_id = o.child("VersionId").map(|v| v.text.trim().to_owned()).filter(|v| !v.is_empty());
        objects.push(DeleteObject { key, version_id });
    }
    if objects.is_empty() {
        return Err(OssError::malformed_xml());
    }
    Ok(DeleteRequest { quiet, objects })
}

/// A parsed CreateBucketConfiguration (PutBucket body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateBucketConfiguration {
    pub storage_class: StorageClass,
    pub data_redundancy_type: DataRedundancyType,
}

/// Parses a PutBucket body; an empty (or all-whitespace) body means the defaults (Standard,
/// LRS). Unknown elements are ignored; unknown values of known ones are `InvalidArgument`.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<CreateBucketConfiguration, OssError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateBucketConfiguration::default());
    }
    let root = parse_document(body)?;
    expect_root(&root, "CreateBucketConfiguration")?;
    let mut config = CreateBucketConfiguration::default();
    if let Some(c) = root.child("StorageClass").map(|e| e.text.trim()).filter(|t| !t.is_empty()) {
        config.storage_class = StorageClass::parse(c)?;
    }
    if let Some(d) = root.child("DataRedundancyType").map(|e| e.text.trim()).filter(|t| !t.is_empty()) {
        config.data_redundancy_type = DataRedundancyType::parse(d)?;
    }
    Ok(config)
}

/// Parses a PutBucketStorageCapacity body (`PUT ?qos`, oss2's `to_put_bucket_user_qos`):
/// `<BucketUserQos><StorageCapacity>N</StorageCapacity></BucketUserQos>`, N in GB, -1 for
/// no limit. Another root is `MalformedXML`; a missing, non-integer or out-of-range N
/// (below -1, or more GB than a 64-bit byte count holds) is `InvalidArgument`.
pub fn parse_bucket_user_qos(body: &[u8]) -> Result<i64, OssError> {
    let root = parse_document(body)?;
    expect_root(&root, "BucketUserQos")?;
    let text = root.child("StorageCapacity").map(|e| e.text.trim()).unwrap_or("");
    match text.parse::<i64>() {
        Ok(n) if (-1..=feitian_meta::bucket::MAX_STORAGE_CAPACITY).contains(&n) => Ok(n),
        _ => Err(OssError::invalid_argument(
            "StorageCapacity",
            text,
            "StorageCapacity must be -1 (no limit) or a whole number of GB from 0.",
        )),
    }
}

fn expect_root(root: &Element, name: &str) -> Result<(), OssError> {
    if root.name == name {
        Ok(())
    } else {
        Err(OssError::malformed_xml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_capacity_is_minus_one_or_whole_gigabytes() {
        let body = |n: &str| format!("<BucketUserQos><StorageCapacity>{n}</StorageCapacity></BucketUserQos>");
        for (text, want) in [("-1", -1), ("0", 0), (" 1 ", 1), ("10240", 10240), ("8589934591", 8589934591)] {
            assert_eq!(parse_bucket_user_qos(body(text).as_bytes()).unwrap(), want, "{text}");
        }
        for bad in ["-2", "1.5", "", "None", "ten", "8589934592", "99999999999999999999"] {
            let e = parse_bucket_user_qos(body(bad).as_bytes()).unwrap_err();
            assert_eq!((e.status, e.code), (400, "InvalidArgument"), "{bad}");
        }
        let e = parse_bucket_user_qos(b"<BucketUserQos></BucketUserQos>").unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        for malformed in [&b"<Other><StorageCapacity>1</StorageCapacity></Other>"[..], b"<BucketUserQos>", b""] {
            assert_eq!(parse_bucket_user_qos(malformed).unwrap_err().code, "MalformedXML");
        }
    }
    use chrono::TimeZone;

    /// What oss2 2.19.1 sends for two parts (printed as bytes, no XML declaration):
    /// python -c "from oss2 import xml_utils as x; from oss2.models import PartInfo;
    ///   print(x.to_complete_upload_request([PartInfo(1,'E1'), PartInfo(2,'E2')]))"
    const OSS2_COMPLETE: &[u8] = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"E1\"</ETag></Part>\
        <Part><PartNumber>2</PartNumber><ETag>\"E2\"</ETag></Part></CompleteMultipartUpload>";

    fn stored(n: u32, etag: &str, size: u64) -> PartSummary {
        PartSummary {
            part_number: n,
            last_modified: chrono::Utc.timestamp_opt(0, 0).unwrap(),
            etag: etag.into(),
            size,
            crc64: 0,
        }
    }

    #[test]
    fn complete_body_from_oss2() {
        let parts = parse_complete_multipart_upload(OSS2_COMPLETE).unwrap();
        assert_eq!(
            parts,
            vec![
                CompletePart { part_number: 1, etag: "\"E1\"".into() },
                CompletePart { part_number: 2, etag: "\"E2\"".into() }
            ]
        );
        let with_decl = [b"<?xml version='1.0' encoding='utf-8'?>\n".as_slice(), OSS2_COMPLETE].concat();
        assert_eq!(parse_complete_multipart_upload(&with_decl).unwrap().len(), 2);
    }

    #[test]
    fn complete_order_and_shape() {
        let body = |parts: &str| format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>");
        let part = |n: &str| format!("<Part><PartNumber>{n}</PartNumber><ETag>\"E\"</ETag></Part>");
        let e = parse_complete_multipart_upload(body(&(part("2") + &part("1"))).as_bytes()).unwrap_err();
        assert_eq!((e.status, e.code), (400, "InvalidPartOrder"));
        let e = parse_complete_multipart_upload(body(&(part("1") + &part("1"))).as_bytes()).unwrap_err();
        assert_eq!(e.code, "InvalidPartOrder");
        assert!(parse_complete_multipart_upload(body(&(part("1") + &part("3"))).as_bytes()).is_ok());
        assert!(parse_complete_multipart_upload(body(&part(" 7 ")).as_bytes()).is_ok());
        for bad in [
            body(""),
            body(&part("x")),
            body(&part("-1")),
            body(&part("99999999999")),
            body("<Part><ETag>\"E\"</ETag></Part>"),
            body("<Part><PartNumber>1</PartNumber></Part>"),
            "<Complete><Part><PartNumber>1</PartNumber><ETag>E</ETag></Part></Complete>".to_string(),
            "<CompleteMultipartUpload>".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_complete_multipart_upload(bad.as_bytes()).unwrap_err().code, "MalformedXML", "{bad}");
        }
    }

    #[test]
    fn part_numbers() {
        assert_eq!(parse_part_number("1"), Ok(1));
        assert_eq!(parse_part_number("10000"), Ok(10000));
        for bad in ["0", "10001", "-1", "", "1.0", " 1", "99999999999"] {
            let e = parse_part_number(bad).unwrap_err();
            assert_eq!((e.code, e.detail("ArgumentName")), ("InvalidArgument", Some("partNumber")), "{bad}");
        }
    }

    #[test]
    fn matching_parts() {
        let big = MIN_PART_SIZE;
        let uploaded = vec![stored(1, "\"AA\"", big), stored(2, "\"BB\"", big), stored(3, "\"CC\"", 1)];
        let req = |v: &[(u32, &str)]| -> Vec<CompletePart> {
            v.iter().map(|(n, e)| CompletePart { part_number: *n, etag: e.to_string() }).collect()
        };
        let chosen = match_parts(&req(&[(1, "\"aa\""), (3, "CC")]), &uploaded).unwrap();
        assert_eq!(chosen.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 3]);
        // Missing part, wrong ETag.
        let e = match_parts(&req(&[(1, "\"AA\""), (4, "\"DD\"")]), &uploaded).unwrap_err();
        assert_eq!((e.status, e.code, e.detail("PartNumber")), (400, "InvalidPart", Some("4")));
        let e = match_parts(&req(&[(2, "\"XX\"")]), &uploaded).unwrap_err();
        assert_eq!(e.code, "InvalidPart");
        // A small part that is not last.
        let e = match_parts(&req(&[(3, "\"CC\""), (4, "\"DD\"")]), &[stored(3, "\"CC\"", 1), stored(4, "\"DD\"", 1)])
            .unwrap_err();
        assert_eq!((e.status, e.code, e.detail("PartNumber")), (400, "EntityTooSmall", Some("3")));
        // A single small part is fine.
        assert!(match_parts(&req(&[(3, "\"CC\"")]), &uploaded).is_ok());
    }

    #[test]
    fn delete_body_from_oss2() {
        // python -c "from oss2 import xml_utils as x; print(x.to_batch_delete_objects_request(['a', 'b<c'], False))"
        let body =
            b"<Delete><Quiet>false</Quiet><Object><Key>a</Key></Object><Object><Key>b&lt;c</Key></Object></Delete>";
        let d = parse_delete(body).unwrap();
        assert!(!d.quiet);
        assert_eq!(d.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec!["a", "b<c"]);
        let d = parse_delete(
            b"<Delete><Quiet>true</Quiet><Object><Key> sp </Key><VersionId>v1</VersionId></Object></Delete>",
        )
        .unwrap();
        assert!(d.quiet);
        assert_eq!(d.objects, vec![DeleteObject { key: " sp ".into(), version_id: Some("v1".into()) }]);
        assert!(!parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>").unwrap().quiet);
    }

    #[test]
    fn delete_limits_and_shape() {
        let objs = |n: usize| (0..n).map(|i| format!("<Object><Key>k{i}</Key></Object>")).collect::<String>();
        assert_eq!(parse_delete(format!("<Delete>{}</Delete>", objs(1000)).as_bytes()).unwrap().objects.len(), 1000);
        for bad in [
            format!("<Delete>{}</Delete>", objs(1001)),
            "<Delete></Delete>".into(),
            "<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>".into(),
            "<Delete><Object></Object></Delete>".into(),
            "<Remove><Object><Key>k</Key></Object></Remove>".into(),
            "<Delete><Object><Key>k</Key></Object>".into(),
        ] {
            let e = parse_delete(bad.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.code), (400, "MalformedXML"), "{bad}");
        }
    }

    #[test]
    fn create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b"").unwrap(), CreateBucketConfiguration::default());
        assert_eq!(parse_create_bucket_configuration(b" \n").unwrap(), CreateBucketConfiguration::default());
        // python -c "from oss2 import xml_utils as x; from oss2.models import BucketCreateConfig;
        //   print(x.to_put_bucket_config(BucketCreateConfig('IA', 'ZRS')))"
        let c = parse_create_bucket_configuration(
            b"<CreateBucketConfiguration><StorageClass>IA</StorageClass>\
              <DataRedundancyType>ZRS</DataRedundancyType></CreateBucketConfiguration>",
        )
        .unwrap();
        assert_eq!(
            c,
            CreateBucketConfiguration {
                storage_class: StorageClass::IA,
                data_redundancy_type: DataRedundancyType::ZRS
            }
        );
        let c = parse_create_bucket_configuration(b"<CreateBucketConfiguration/>").unwrap();
        assert_eq!(c, CreateBucketConfiguration::default());
        let e = parse_create_bucket_configuration(
            b"<CreateBucketConfiguration><StorageClass>Gold</StorageClass></CreateBucketConfiguration>",
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        assert_eq!(parse_create_bucket_configuration(b"<Other/>").unwrap_err().code, "MalformedXML");
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration>").unwrap_err().code, "MalformedXML");
    }

    #[test]
    fn garbage_never_panics() {
        let seeds: [&[u8]; 3] = [
            OSS2_COMPLETE,
            b"<Delete><Quiet>false</Quiet><Object><Key>a</Key></Object></Delete>",
            b"<CreateBucketConfiguration><StorageClass>IA</StorageClass></CreateBucketConfiguration>",
        ];
        let mut seed: u32 = 99;
        for body in seeds {
            for i in 0..=body.len() {
                let _ = parse_complete_multipart_upload(&body[..i]);
                let _ = parse_delete(&body[..i]);
                let _ = parse_create_bucket_configuration(&body[..i]);
            }
            for _ in 0..1000 {
                let mut b = body.to_vec();
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (seed as usize >> 8) % b.len();
                b[i] = (seed >> 16) as u8;
                let _ = parse_complete_multipart_upload(&b);
                let _ = parse_delete(&b);
                let _ = parse_create_bucket_configuration(&b);
            }
        }
    }
}
