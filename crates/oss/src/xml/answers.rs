//! The XML answers `oss2` parses, element for element.
//!
//! Each renderer names the `oss2.xml_utils` function that reads its output. Elements that
//! function reads with `_find_tag` are mandatory there (a missing one raises), so they are
//! always written, even when empty: `ExtranetEndpoint`/`IntranetEndpoint`/`StorageClass` in
//! ListBuckets, `Type` and `StorageClass` in every `Contents`, `NextKeyMarker` and
//! `NextUploadIdMarker` in ListMultipartUploads, `NextPartNumberMarker` in ListParts, `Owner`
//! and `AccessControlList/Grant` in BucketInfo. Element order follows the OSS API reference.
//!
//! Times are `2015-12-05T11:10:29.000Z` ([`crate::dates::format_iso8601`]); ETags are written
//! with their quotes (`oss2` strips them).
//!
//! With `encoding-type=url`, the answer carries `<EncodingType>url</EncodingType>` and the
//! documented fields — keys, prefixes, markers, delimiter, `StartAfter` — percent-encoded;
//! `oss2` decodes them with `unquote` (so a space must be `%20`, never `+`).

use std::borrow::{Borrow, Cow};

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::XmlWriter;
use crate::dates::format_iso8601;
use crate::listing::{
    encode_continuation_token, ListBucketsRequest, ListObjectsV1Request, ListObjectsV2Request, ListPartsRequest,
    ListUploadsRequest, Page, PartsPage, UploadsPage,
};
use crate::model::{Acl, BucketSummary, DataRedundancyType, ObjectSummary, Owner, PartSummary, UploadSummary};

/// Characters left as they are by `encoding-type=url`: RFC 3986's unreserved ones and `/`
/// (keeps keys readable; `unquote` decodes either way).
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// `s` percent-encoded when the answer is URL-encoded, as is otherwise.
pub fn url_encode_if(s: &str, url_encoded: bool) -> Cow<'_, str> {
    if url_encoded {
        utf8_percent_encode(s, URL_KEEP).into()
    } else {
        Cow::Borrowed(s)
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn owner(w: &mut XmlWriter, o: &Owner) {
    w.open("Owner");
    w.text_element("ID", &o.id);
    w.text_element("DisplayName", &o.display_name);
    w.close("Owner");
}

/// ListBuckets (GetService) — `oss2.xml_utils.parse_list_buckets`.
///
/// `Prefix`, `Marker` and `MaxKeys` are echoed when the request paged; `IsTruncated` and
/// `NextMarker` are written whenever they matter (a paged request, or a truncated page).
pub fn list_all_my_buckets<T: Borrow<BucketSummary>>(o: &Owner, req: &ListBucketsRequest, page: &Page<T>) -> String {
    let mut w = XmlWriter::document();
    w.open("ListAllMyBucketsResult");
    if req.paged {
        w.text_element("Prefix", &req.prefix);
        w.text_element("Marker", &req.marker);
        w.text_element("MaxKeys", &req.max_keys.to_string());
    }
    if req.paged || page.is_truncated {
        w.text_element("IsTruncated", bool_str(page.is_truncated));
        if let Some(next) = &page.next_marker {
            w.text_element("NextMarker", next);
        }
    }
    owner(&mut w, o);
    w.open("Buckets");
    for b in &page.contents {
        let b = b.borrow();
        w.open("Bucket");
        w.text_element("CreationDate", &format_iso8601(b.creation_date));
        w.text_element("ExtranetEndpoint", &b.extranet_endpoint);
        w.text_element("IntranetEndpoint", &b.intranet_endpoint);
        w.text_element("Location", &b.location);
        w.text_element("Name", &b.name);
        w.text_element("Region", &b.region);
        w.text_element("StorageClass", b.storage_class.as_str());
        w.close("Bucket");
    }
    w.close("Buckets");
    w.close("ListAllMyBucketsResult");
    w.finish()
}

fn contents(w: &mut XmlWriter, o: &ObjectSummary, url: bool, with_owner: Option<&Owner>) {
    w.open("Contents");
    w.text_element("Key", &url_encode_if(&o.key, url));
    w.text_element("LastModified", &format_iso8601(o.last_modified));
    w.text_element("ETag", &o.etag);
    w.text_element("Type", o.object_type.as_str());
    w.text_element("Size", &o.size.to_string());
    w.text_element("StorageClass", o.storage_class.as_str());
    if let Some(who) = with_owner {
        owner(w, who);
    }
    w.close("Contents");
}

fn common_prefixes(w: &mut XmlWriter, prefixes: &[String], url: bool) {
    for p in prefixes {
        w.open("CommonPrefixes");
        w.text_element("Prefix", &url_encode_if(p, url));
        w.close("CommonPrefixes");
    }
}

/// ListObjects (GetBucket) — `oss2.xml_utils.parse_list_objects`. V1 always shows owners.
pub fn list_bucket_result_v1<T: Borrow<ObjectSummary>>(
    bucket: &str,
    req: &ListObjectsV1Request,
    page: &Page<T>,
    o: &Owner,
) -> String {
    let url = req.url_encoded;
    let mut w = XmlWriter::document();
    w.open("ListBucketResult");
    w.text_element("Name", bucket);
    w.text_element("Prefix", &url_encode_if(&req.prefix, url));
    w.text_element("Marker", &url_encode_if(&req.marker, url));
    w.text_element("MaxKeys", &req.max_keys.to_string());
    w.text_element("Delimiter", &url_encode_if(&req.delimiter, url));
    if url {
        w.text_element("EncodingType", "url");
    }
    w.text_element("IsTruncated", bool_str(page.is_truncated));
    if let Some(next) = &page.next_marker {
        w.text_element("NextMarker", &url_encode_if(next, url));
    }
    for c in &page.contents {
        contents(&mut w, c.borrow(), url, Some(o));
    }
    common_prefixes(&mut w, &page.common_prefixes, url);
    w.close("ListBucketResult");
    w.finish()
}

/// ListObjectsV2 (GetBucketV2) — `oss2.xml_utils.parse_list_objects_v2`. Owners only with
/// `fetch-owner=true`; `KeyCount` counts contents and common prefixes.
pub fn list_bucket_result_v2<T: Borrow<ObjectSummary>>(
    bucket: &str,
    req: &ListObjectsV2Request,
    page: &Page<T>,
    o: &Owner,
) -> String {
    let url = req.url_encoded;
    let mut w = XmlWriter::document();
    w.open("ListBucketResult");
    w.text_element("Name", bucket);
    w.text_element("Prefix", &url_encode_if(&req.prefix, url));
    if !req.start_after.is_empty() {
        w.text_element("StartAfter", &url_encode_if(&req.start_after, url));
    }
    if let Some(t) = &req.continuation_token {
        w.text_element("ContinuationToken", &url_encode_if(t, url));
    }
    w.text_element("MaxKeys", &req.max_keys.to_string());
    w.text_element("Delimiter", &url_encode_if(&req.delimiter, url));
    if url {
        w.text_element("EncodingType", "url");
    }
    w.text_element("IsTruncated", bool_str(page.is_truncated));
    if let Some(next) = &page.next_marker {
        w.text_element("NextContinuationToken", &url_encode_if(&encode_continuation_token(next), url));
    }
    w.text_element("KeyCount", &page.key_count().to_string());
    for c in &page.contents {
        contents(&mut w, c.borrow(), url, req.fetch_owner.then_some(o));
    }
    common_prefixes(&mut w, &page.common_prefixes, url);
    w.close("ListBucketResult");
    w.finish()
}

/// Everything GetBucketInfo reports about one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo<'a> {
    pub summary: &'a BucketSummary,
    pub owner: &'a Owner,
    pub acl: Acl,
    pub data_redundancy_type: DataRedundancyType,
    pub comment: &'a str,
    /// `Enabled`/`Suspended`; `None` (element omitted) if versioning was never configured.
    pub versioning: Option<&'a str>,
}

/// GetBucketInfo — `oss2.xml_utils.parse_get_bucket_info`.
pub fn bucket_info(info: &BucketInfo<'_>) -> String {
    let b = info.summary;
    let mut w = XmlWriter::document();
    w.open("BucketInfo");
    w.open("Bucket");
    w.text_element("AccessMonitor", "Disabled");
    w.text_element("CreationDate", &format_iso8601(b.creation_date));
    w.text_element("ExtranetEndpoint", &b.extranet_endpoint);
    w.text_element("IntranetEndpoint", &b.intranet_endpoint);
    w.text_element("Location", &b.location);
    w.text_element("StorageClass", b.storage_class.as_str());
    w.text_element("TransferAcceleration", "Disabled");
    w.text_element("CrossRegionReplication", "Disabled");
    w.text_element("Name", &b.name);
    w.text_element("Region", &b.region);
    owner(&mut w, info.owner);
    w.open("AccessControlList");
    w.text_element("Grant", info.acl.as_str());
    w.close("AccessControlList");
    w.text_element("Comment", info.comment);
    w.text_element("DataRedundancyType", info.data_redundancy_type.as_str());
    if let Some(v) = info.versioning {
        w.text_element("Versioning", v);
    }
    w.open("ServerSideEncryptionRule");
    w.text_element("SSEAlgorithm", "None");
    w.close("ServerSideEncryptionRule");
    w.close("Bucket");
    w.close("BucketInfo");
    w.finish()
}

/// GetBucketLocation — `oss2.xml_utils.parse_get_bucket_location` (the root's text).
pub fn location_constraint(location: &str) -> String {
    let mut w = XmlWriter::document();
    w.text_element("LocationConstraint", location);
    w.finish()
}

/// GetBucketStorageCapacity (`GET ?qos`) — `parse_get_bucket_user_qos`.
pub fn bucket_user_qos(storage_capacity: i64) -> String {
    let mut w = XmlWriter::document();
    w.open("BucketUserQos");
    w.text_element("StorageCapacity", &storage_capacity.to_string());
    w.close("BucketUserQos");
    w.finish()
}

/// GetBucketAcl and GetObjectAcl — `parse_get_bucket_acl` / `parse_get_object_acl`.
pub fn access_control_policy(o: &Owner, acl: Acl) -> String {
    let mut w = XmlWriter::document();
    w.open("AccessControlPolicy");
    owner(&mut w, o);
    w.open("AccessControlList");
    w.text_element("Grant", acl.as_str());
    w.close("AccessControlList");
    w.close("AccessControlPolicy");
    w.finish()
}

/// InitiateMultipartUpload — `oss2.xml_utils.parse_init_multipart_upload`.
pub fn initiate_multipart_upload_result(bucket: &str, key: &str, upload_id: &str, url_encoded: bool) -> String {
    let mut w = XmlWriter::document();
    w.open("InitiateMultipartUploadResult");
    if url_encoded {
        w.text_element("EncodingType", "url");
    }
    w.text_element("Bucket", bucket);
    w.text_element("Key", &url_encode_if(key, url_encoded));
    w.text_element("UploadId", upload_id);
    w.close("InitiateMultipartUploadResult");
    w.finish()
}

/// CompleteMultipartUpload. `oss2` reads only the headers (`ETag`, `x-oss-hash-crc64ecma`),
/// but other clients read this body. `location` is the object's URL
/// (`http://bucket.endpoint/key`).
pub fn complete_multipart_upload_result(
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    url_encoded: bool,
) -> String {
    let mut w = XmlWriter::document();
    w.open("CompleteMultipartUploadResult");
    if url_encoded {
        w.text_element("EncodingType", "url");
    }
    w.text_element("Location", location);
    w.text_element("Bucket", bucket);
    w.text_element("Key", &url_encode_if(key, url_encoded));
    w.text_element("ETag", etag);
    w.close("CompleteMultipartUploadResult");
    w.finish()
}

/// ListMultipartUploads — `oss2.xml_utils.parse_list_multipart_uploads`.
pub fn list_multipart_uploads_result<T: Borrow<UploadSummary>>(
    bucket: &str,
    req: &ListUploadsRequest,
    page: &UploadsPage<T>,
) -> String {
    let url = req.url_encoded;
    let mut w = XmlWriter::document();
    w.open("ListMultipartUploadsResult");
    w.text_element("Bucket", bucket);
    if url {
        w.text_element("EncodingType", "url");
    }
    w.text_element("KeyMarker", &url_encode_if(&req.key_marker, url));
    w.text_element("UploadIdMarker", &req.upload_id_marker);
    w.text_element("NextKeyMarker", &url_encode_if(&page.next_key_marker, url));
    w.text_element("NextUploadIdMarker", &page.next_upload_id_marker);
    w.text_element("Delimiter", &url_encode_if(&req.delimiter, url));
    w.text_element("Prefix", &url_encode_if(&req.prefix, url));
    w.text_element("MaxUploads", &req.max_uploads.to_string());
    w.text_element("IsTruncated", bool_str(page.is_truncated));
    for u in &page.uploads {
        let u = u.borrow();
        w.open("Upload");
        w.text_element("Key", &url_encode_if(&u.key, url));
        w.text_element("UploadId", &u.upload_id);
        w.text_element("Initiated", &format_iso8601(u.initiated));
        w.close("Upload");
    }
    common_prefixes(&mut w, &page.common_prefixes, url);
    w.close("ListMultipartUploadsResult");
    w.finish()
}

/// ListParts — `oss2.xml_utils.parse_list_parts`. Each part also carries its
/// `HashCrc64ecma`, as OSS's does.
pub fn list_parts_result<T: Borrow<PartSummary>>(
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: &ListPartsRequest,
    page: &PartsPage<T>,
) -> String {
    let url = req.url_encoded;
    let mut w = XmlWriter::document();
    w.open("ListPartsResult");
    if url {
        w.text_element("EncodingType", "url");
    }
    w.text_element("Bucket", bucket);
    w.text_element("Key", &url_encode_if(key, url));
    w.text_element("UploadId", upload_id);
    w.text_element("PartNumberMarker", &req.part_number_marker.to_string());
    w.text_element("NextPartNumberMarker", &page.next_part_number_marker.to_string());
    w.text_element("MaxParts", &req.max_parts.to_string());
    w.text_element("IsTruncated", bool_str(page.is_truncated));
    for p in &page.parts {
        let p = p.borrow();
        w.open("Part");
        w.text_element("PartNumber", &p.part_number.to_string());
        w.text_element("LastModified", &format_iso8601(p.last_modified));
        w.text_element("ETag", &p.etag);
        w.text_element("HashCrc64ecma", &p.crc64.to_string());
        w.text_element("Size", &p.size.to_string());
        w.close("Part");
    }
    w.close("ListPartsResult");
    w.finish()
}

/// CopyObject and UploadPartCopy. `oss2` reads only the headers; other clients read this.
pub fn copy_object_result(etag: &str, last_modified: DateTime<Utc>) -> String {
    let mut w = XmlWriter::document();
    w.open("CopyObjectResult");
    w.text_element("ETag", etag);
    w.text_element("LastModified", &format_iso8601(last_modified));
    w.close("CopyObjectResult");
    w.finish()
}

/// UploadPartCopy. `oss2` reads only the `ETag` header; other clients read this.
pub fn copy_part_result(etag: &str, last_modified: DateTime<Utc>) -> String {
    let mut w = XmlWriter::document();
    w.open("CopyPartResult");
    w.text_element("LastModified", &format_iso8601(last_modified));
    w.text_element("ETag", etag);
    w.close("CopyPartResult");
    w.finish()
}

/// DeleteMultipleObjects — `oss2.xml_utils.parse_batch_delete_objects`. In quiet mode OSS
/// sends no body at all (`oss2` accepts an empty one), so this returns an empty string.
pub fn delete_result<K: AsRef<str>>(deleted: &[K], quiet: bool, url_encoded: bool) -> String {
    if quiet {
        return String::new();
    }
    let mut w = XmlWriter::document();
    w.open("DeleteResult");
    if url_encoded {
        w.text_element("EncodingType", "url");
    }
    for k in deleted {
        w.open("Deleted");
        w.text_element("Key", &url_encode_if(k.as_ref(), url_encoded));
        w.close("Deleted");
    }
    w.close("DeleteResult");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::list;
    use crate::model::{ObjectType, StorageClass};
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 12, 5, 11, 10, 29).unwrap()
    }

    fn me() -> Owner {
        Owner { id: "1234567890".into(), display_name: "1234567890".into() }
    }

    fn obj(key: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.into(),
            last_modified: t(),
            etag: "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"".into(),
            size: 11,
            object_type: ObjectType::Normal,
            storage_class: StorageClass::Standard,
        }
    }

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

    #[test]
    fn url_encoding_is_what_unquote_reverses() {
        assert_eq!(url_encode_if("a b+c/中?&=%~_.-", true), "a%20b%2Bc/%E4%B8%AD%3F%26%3D%25~_.-");
        assert_eq!(url_encode_if("a b", false), "a b");
        assert_eq!(url_encode_if("\r\n\u{1}", true), "%0D%0A%01");
    }

    #[test]
    fn list_objects_v1_document() {
        let objs = vec![obj("fun/a b.txt"), obj("fun/movie/1.avi"), obj("fun/z")];
        let req = ListObjectsV1Request::from_query([
            ("prefix", "fun/"),
            ("delimiter", "/"),
            ("max-keys", "2"),
            ("encoding-type", "url"),
        ])
        .unwrap();
        let page = req.page(&objs);
        let xml = list_bucket_result_v1("bkt", &req, &page, &me());
        assert_eq!(
            xml,
            format!(
                "{DECL}<ListBucketResult><Name>bkt</Name><Prefix>fun/</Prefix><Marker></Marker><MaxKeys>2</MaxKeys>\
                 <Delimiter>/</Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>\
                 <NextMarker>fun/movie/</NextMarker><Contents><Key>fun/a%20b.txt</Key>\
                 <LastModified>2015-12-05T11:10:29.000Z</LastModified><ETag>\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"</ETag>\
                 <Type>Normal</Type><Size>11</Size><StorageClass>Standard</StorageClass><Owner><ID>1234567890</ID>\
                 <DisplayName>1234567890</DisplayName></Owner></Contents><CommonPrefixes><Prefix>fun/movie/</Prefix>\
                 </CommonPrefixes></ListBucketResult>"
            )
        );
    }

    #[test]
    fn list_objects_v2_document() {
        let objs = vec![obj("a"), obj("b"), obj("c")];
        let req = ListObjectsV2Request::from_query([("max-keys", "2"), ("start-after", "0")]).unwrap();
        let page = req.page(&objs);
        let xml = list_bucket_result_v2("bkt", &req, &page, &me());
        assert!(xml.contains("<StartAfter>0</StartAfter>"));
        assert!(
            xml.contains(&format!("<NextContinuationToken>{}</NextContinuationToken>", encode_continuation_token("b")))
        );
        assert!(xml.contains("<KeyCount>2</KeyCount>"));
        assert!(!xml.contains("<Owner>"));
        assert!(!xml.contains("EncodingType"));
        let req = ListObjectsV2Request::from_query([("fetch-owner", "true")]).unwrap();
        let xml = list_bucket_result_v2("bkt", &req, &list(&objs, "", "", "", 10), &me());
        assert!(xml.contains("<Owner><ID>1234567890</ID>"));
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"));
        assert!(!xml.contains("NextContinuationToken"));
    }

    #[test]
    fn buckets_document() {
        let b = BucketSummary {
            name: "bkt".into(),
            creation_date: t(),
            location: "oss-cn-hangzhou".into(),
            region: "cn-hangzhou".into(),
            extranet_endpoint: "oss-cn-hangzhou.aliyuncs.com".into(),
            intranet_endpoint: "oss-cn-hangzhou-internal.aliyuncs.com".into(),
            storage_class: StorageClass::IA,
        };
        let req = ListBucketsRequest::from_query([]).unwrap();
        let page = req.page(std::slice::from_ref(&b));
        let xml = list_all_my_buckets(&me(), &req, &page);
        assert_eq!(
            xml,
            format!(
                "{DECL}<ListAllMyBucketsResult><Owner><ID>1234567890</ID><DisplayName>1234567890</DisplayName></Owner>\
                 <Buckets><Bucket><CreationDate>2015-12-05T11:10:29.000Z</CreationDate>\
                 <ExtranetEndpoint>oss-cn-hangzhou.aliyuncs.com</ExtranetEndpoint>\
                 <IntranetEndpoint>oss-cn-hangzhou-internal.aliyuncs.com</IntranetEndpoint>\
                 <Location>oss-cn-hangzhou</Location><Name>bkt</Name><Region>cn-hangzhou</Region>\
                 <StorageClass>IA</StorageClass></Bucket></Buckets></ListAllMyBucketsResult>"
            )
        );
        let req = ListBucketsRequest::from_query([("max-keys", "1"), ("prefix", "b")]).unwrap();
        let both = [b.clone(), BucketSummary { name: "bkt2".into(), ..b.clone() }];
        let xml = list_all_my_buckets(&me(), &req, &req.page(&both));
        assert!(xml.contains("<Prefix>b</Prefix><Marker></Marker><MaxKeys>1</MaxKeys><IsTruncated>true</IsTruncated><NextMarker>bkt</NextMarker>"));

        let info = BucketInfo {
            summary: &b,
            owner: &me(),
            acl: Acl::PublicRead,
            data_redundancy_type: DataRedundancyType::LRS,
            comment: "",
            versioning: None,
        };
        let xml = bucket_info(&info);
        for needle in [
            "<BucketInfo><Bucket>",
            "<CreationDate>2015-12-05T11:10:29.000Z</CreationDate>",
            "<Name>bkt</Name>",
            "<Owner><ID>1234567890</ID><DisplayName>1234567890</DisplayName></Owner>",
            "<AccessControlList><Grant>public-read</Grant></AccessControlList>",
            "<ServerSideEncryptionRule><SSEAlgorithm>None</SSEAlgorithm></ServerSideEncryptionRule>",
        ] {
            assert!(xml.contains(needle), "{needle}");
        }
        assert!(!xml.contains("Versioning"));
    }

    #[test]
    fn small_documents() {
        assert_eq!(
            location_constraint("oss-cn-hangzhou"),
            format!("{DECL}<LocationConstraint>oss-cn-hangzhou</LocationConstraint>")
        );
        assert_eq!(
            access_control_policy(&me(), Acl::Private),
            format!(
                "{DECL}<AccessControlPolicy><Owner><ID>1234567890</ID><DisplayName>1234567890</DisplayName></Owner>\
                 <AccessControlList><Grant>private</Grant></AccessControlList></AccessControlPolicy>"
            )
        );
        assert_eq!(
            initiate_multipart_upload_result("bkt", "a b", "0004B9894A22E5B1888A1E29F823****", false),
            format!(
                "{DECL}<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>a b</Key>\
                 <UploadId>0004B9894A22E5B1888A1E29F823****</UploadId></InitiateMultipartUploadResult>"
            )
        );
        assert!(initiate_multipart_upload_result("bkt", "a b", "u", true)
            .contains("<EncodingType>url</EncodingType><Bucket>bkt</Bucket><Key>a%20b</Key>"));
        assert_eq!(
            complete_multipart_upload_result("http://bkt.oss.example/k", "bkt", "k", "\"X-2\"", false),
            format!(
                "{DECL}<CompleteMultipartUploadResult><Location>http://bkt.oss.example/k</Location><Bucket>bkt</Bucket>\
                 <Key>k</Key><ETag>\"X-2\"</ETag></CompleteMultipartUploadResult>"
            )
        );
        assert_eq!(
            copy_object_result("\"E\"", t()),
            format!("{DECL}<CopyObjectResult><ETag>\"E\"</ETag><LastModified>2015-12-05T11:10:29.000Z</LastModified></CopyObjectResult>")
        );
        assert_eq!(
            copy_part_result("\"E\"", t()),
            format!("{DECL}<CopyPartResult><LastModified>2015-12-05T11:10:29.000Z</LastModified><ETag>\"E\"</ETag></CopyPartResult>")
        );
        assert_eq!(delete_result(&["a", "b c"], true, true), "");
        assert_eq!(
            delete_result(&["a", "b c"], false, true),
            format!(
                "{DECL}<DeleteResult><EncodingType>url</EncodingType><Deleted><Key>a</Key></Deleted>\
                 <Deleted><Key>b%20c</Key></Deleted></DeleteResult>"
            )
        );
        assert!(delete_result(&["<&>"], false, false).contains("<Key>&lt;&amp;&gt;</Key>"));
    }

    #[test]
    fn uploads_and_parts_documents() {
        let ups = vec![UploadSummary { key: "k 1".into(), upload_id: "U1".into(), initiated: t() }];
        let req = ListUploadsRequest::from_query([("encoding-type", "url")]).unwrap();
        let xml = list_multipart_uploads_result("bkt", &req, &req.page(&ups));
        assert_eq!(
            xml,
            format!(
                "{DECL}<ListMultipartUploadsResult><Bucket>bkt</Bucket><EncodingType>url</EncodingType><KeyMarker></KeyMarker>\
                 <UploadIdMarker></UploadIdMarker><NextKeyMarker>k%201</NextKeyMarker><NextUploadIdMarker>U1</NextUploadIdMarker>\
                 <Delimiter></Delimiter><Prefix></Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>\
                 <Upload><Key>k%201</Key><UploadId>U1</UploadId><Initiated>2015-12-05T11:10:29.000Z</Initiated></Upload>\
                 </ListMultipartUploadsResult>"
            )
        );
        let parts = vec![PartSummary { part_number: 1, last_modified: t(), etag: "\"E1\"".into(), size: 5, crc64: 42 }];
        let req = ListPartsRequest::from_query([]).unwrap();
        let xml = list_parts_result("bkt", "k", "U1", &req, &req.page(&parts));
        assert_eq!(
            xml,
            format!(
                "{DECL}<ListPartsResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>U1</UploadId>\
                 <PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>1</NextPartNumberMarker><MaxParts>1000</MaxParts>\
                 <IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber>\
                 <LastModified>2015-12-05T11:10:29.000Z</LastModified><ETag>\"E1\"</ETag><HashCrc64ecma>42</HashCrc64ecma>\
                 <Size>5</Size></Part></ListPartsResult>"
            )
        );
    }
}
