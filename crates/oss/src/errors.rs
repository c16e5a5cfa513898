//! OSS errors as the client sees them: an HTTP status, a `Code` and a `Message`, rendered as
//! the `<Error>` XML body that `oss2` parses (`oss2.exceptions.make_exception`).
//!
//! `oss2` picks its exception class from the pair *(status, code)* (`NoSuchKey` is
//! `(404, "NoSuchKey")`, `PositionNotEqualToLength` is `(409, …)`), so both must be exactly
//! what the real service sends; otherwise the client raises a bare `ServerError` and code
//! that does `except oss2.exceptions.NoSuchKey` stops working. The statuses below follow
//! the OSS error-code pages and `oss2/exceptions.py`.
//!
//! A response to `HEAD` has no body, so `oss2` reads the error from the `x-oss-err` header
//! instead (base64 of the same XML): [`OssError::x_oss_err_header`] renders that.

use base64::Engine;

use crate::xml::XmlWriter;

/// An OSS error. `RequestId` and `HostId` are added when it is rendered, by whoever knows
/// them (the protocol layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct OssError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra elements of the `<Error>` body, in order, such as `BucketName`, `Key`,
    /// `ArgumentName`/`ArgumentValue` (which `oss2.exceptions.InvalidArgument` reads) or
    /// `Condition`.
    pub details: Vec<(&'static str, String)>,
    /// Response headers the error carries besides the usual ones: `Content-Range` on a 416,
    /// `x-oss-next-append-position` on `PositionNotEqualToLength`, the validators on a 304.
    pub headers: Vec<(&'static str, String)>,
}

impl OssError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OssError { status, code, message: message.into(), details: Vec::new(), headers: Vec::new() }
    }

    /// Adds one element to the `<Error>` body (after `HostId`).
    pub fn with_detail(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.details.push((name, value.into()));
        self
    }

    /// Adds a response header (see [`OssError::headers`]).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of the detail `name`, if present.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.details.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the response carries a body at all: `304 Not Modified` never does (RFC 9110),
    /// and neither does any answer to `HEAD` (use [`OssError::x_oss_err_header`] there).
    pub fn has_body(&self) -> bool {
        self.status != 304
    }

    /// The `<Error>` document, exactly the shape of the real service's:
    /// `<Error><Code/><Message/><RequestId/><HostId/>…details…</Error>`.
    pub fn to_xml(&self, request_id: &str, host_id: &str) -> String {
        let mut w = XmlWriter::document();
        w.open("Error");
        w.text_element("Code", self.code);
        w.text_element("Message", &self.message);
        w.text_element("RequestId", request_id);
        w.text_element("HostId", host_id);
        for (name, value) in &self.details {
            w.text_element(name, value);
        }
        w.close("Error");
        w.finish()
    }

    /// The `x-oss-err` response header for bodiless answers (HEAD): base64 of
    /// [`OssError::to_xml`]. `oss2` decodes it when the body is empty.
    pub fn x_oss_err_header(&self, request_id: &str, host_id: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_xml(request_id, host_id))
    }

    // --- buckets -------------------------------------------------------------------------

    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new(404, "NoSuchBucket", "The specified bucket does not exist.").with_detail("BucketName", bucket)
    }

    pub fn bucket_already_exists(bucket: &str) -> Self {
        Self::new(
            409,
            "BucketAlreadyExists",
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. \
             Please select a different name and try again.",
        )
        .with_detail("BucketName", bucket)
    }

    pub fn bucket_not_empty(bucket: &str) -> Self {
        Self::new(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
            .with_detail("BucketName", bucket)
    }

    pub fn invalid_bucket_name(bucket: &str) -> Self {
        Self::new(400, "InvalidBucketName", "The specified bucket is not valid.").with_detail("BucketName", bucket)
    }

    pub fn too_many_buckets() -> Self {
        Self::new(400, "TooManyBuckets", "You have attempted to create more buckets than allowed.")
    }

    // --- objects -------------------------------------------------------------------------

    pub fn no_such_key(key: &str) -> Self {
        Self::new(404, "NoSuchKey", "The specified key does not exist.").with_detail("Key", key)
    }

    /// `InvalidObjectName` with the real service's message for the cause (`why`).
    pub fn invalid_object_name(why: &str) -> Self {
        Self::new(400, "InvalidObjectName", why)
    }

    /// A `versionId` other than `null` in a bucket without versioning.
    pub fn no_such_version(version_id: &str) -> Self {
        Self::new(404, "NoSuchVersion", "The specified version does not exist.").with_detail("VersionId", version_id)
    }

    /// `x-oss-forbid-overwrite: true` and the key exists.
    pub fn file_already_exists() -> Self {
        Self::new(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")
    }

    pub fn object_not_appendable() -> Self {
        Self::new(409, "ObjectNotAppendable", "The object is not appendable")
    }

    /// `oss2.exceptions.PositionNotEqualToLength` reads the current length from the
    /// `x-oss-next-append-position` header, which the caller must set to `length`.
    pub fn position_not_equal_to_length() -> Self {
        Self::new(409, "PositionNotEqualToLength", "Position is not equal to file length")
    }

    pub fn entity_too_large() -> Self {
        Self::new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    }

    pub fn entity_too_small() -> Self {
        Self::new(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
    }

    /// `Content-MD5` unparsable or not the MD5 of the body (OSS uses one code for both).
    pub fn invalid_digest(why: &str) -> Self {
        Self::new(400, "InvalidDigest", why)
    }

    pub fn missing_content_length() -> Self {
        Self::new(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
    }

    pub fn incomplete_body() -> Self {
        Self::new(
            400,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        )
    }

    // --- multipart -----------------------------------------------------------------------

    pub fn no_such_upload(upload_id: &str) -> Self {
        Self::new(
            404,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
        .with_detail("UploadId", upload_id)
    }

    pub fn invalid_part(why: &str) -> Self {
        Self::new(400, "InvalidPart", why)
    }

    pub fn invalid_part_order() -> Self {
        Self::new(
            400,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        )
    }

    // --- reads ---------------------------------------------------------------------------

    /// 416; the response also carries `Content-Range: bytes */<size>`
    /// ([`crate::range::unsatisfied_content_range`]).
    pub fn invalid_range() -> Self {
        Self::new(416, "InvalidRange", "The requested range cannot be satisfied")
    }

    /// `condition` names the header that did not hold (`If-Match`, `If-Unmodified-Since`, …).
    pub fn precondition_failed(condition: &str) -> Self {
        Self::new(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
            .with_detail("Condition", condition)
    }

    /// 304: rendered with headers only, never a body ([`OssError::has_body`]). `oss2` maps
    /// any 304 to `NotModified` regardless of the code.
    pub fn not_modified() -> Self {
        Self::new(304, "NotModified", "Not Modified")
    }

    // --- authentication ------------------------------------------------------------------

    pub fn access_denied(why: &str) -> Self {
        Self::new(403, "AccessDenied", why)
    }

    pub fn signature_does_not_match() -> Self {
        Self::new(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
    }

    pub fn invalid_access_key_id(access_key_id: &str) -> Self {
        Self::new(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
            .with_detail("OSSAccessKeyId", access_key_id)
    }

    pub fn request_time_too_skewed() -> Self {
        Self::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
    }

    // --- request shape -------------------------------------------------------------------

    /// `InvalidArgument` naming the argument: `oss2.exceptions.InvalidArgument` exposes
    /// `ArgumentName`/`ArgumentValue` as `.name`/`.value`.
    pub fn invalid_argument(name: &str, value: &str, why: &str) -> Self {
        Self::new(400, "InvalidArgument", why).with_detail("ArgumentName", name).with_detail("ArgumentValue", value)
    }

    pub fn missing_argument(name: &str) -> Self {
        Self::new(400, "MissingArgument", format!("Missing Some Required Arguments: {name}"))
            .with_detail("ArgumentName", name)
    }

    pub fn malformed_xml() -> Self {
        Self::new(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
        )
    }

    pub fn invalid_request(why: &str) -> Self {
        Self::new(400, "InvalidRequest", why)
    }

    /// OSS answers 400 (not 501) here; `oss2` maps `(400, "NotImplemented")`.
    pub fn not_implemented(header: &str) -> Self {
        Self::new(400, "NotImplemented", "A header you provided implies functionality that is not implemented.")
            .with_detail("Header", header)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
    }

    /// A write that would take the bucket beyond its storage capacity (`PUT ?qos`). OSS
    /// documents no code for it; this is the code and status S3-style stores with bucket
    /// quotas answer (docs/decisions.md, "Bucket storage capacity").
    pub fn storage_capacity_exceeded(bucket: &str, capacity_gb: i64) -> Self {
        Self::new(
            403,
            "InsufficientStorageSpace",
            format!("The bucket {bucket} would exceed its storage capacity of {capacity_gb} GB."),
        )
        .with_detail("BucketName", bucket)
    }

    /// feitian's own fault; every occurrence is a bug.
    pub fn internal_error() -> Self {
        Self::new(500, "InternalError", "We encountered an internal error. Please try again.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_are_the_real_ones() {
        let cases: Vec<(OssError, u16, &str)> = vec![
            (OssError::no_such_bucket("b"), 404, "NoSuchBucket"),
            (OssError::no_such_key("k"), 404, "NoSuchKey"),
            (OssError::bucket_already_exists("b"), 409, "BucketAlreadyExists"),
            (OssError::bucket_not_empty("b"), 409, "BucketNotEmpty"),
            (OssError::storage_capacity_exceeded("b", 1), 403, "InsufficientStorageSpace"),
            (OssError::access_denied("x"), 403, "AccessDenied"),
            (OssError::signature_does_not_match(), 403, "SignatureDoesNotMatch"),
            (OssError::invalid_access_key_id("ak"), 403, "InvalidAccessKeyId"),
            (OssError::invalid_argument("n", "v", "w"), 400, "InvalidArgument"),
            (OssError::invalid_bucket_name("B"), 400, "InvalidBucketName"),
            (OssError::invalid_object_name("x"), 400, "InvalidObjectName"),
            (OssError::entity_too_large(), 400, "EntityTooLarge"),
            (OssError::entity_too_small(), 400, "EntityTooSmall"),
            (OssError::malformed_xml(), 400, "MalformedXML"),
            (OssError::invalid_part("x"), 400, "InvalidPart"),
            (OssError::invalid_part_order(), 400, "InvalidPartOrder"),
            (OssError::no_such_upload("u"), 404, "NoSuchUpload"),
            (OssError::no_such_version("v"), 404, "NoSuchVersion"),
            (OssError::invalid_range(), 416, "InvalidRange"),
            (OssError::precondition_failed("If-Match"), 412, "PreconditionFailed"),
            (OssError::request_time_too_skewed(), 403, "RequestTimeTooSkewed"),
            (OssError::missing_content_length(), 411, "MissingContentLength"),
            (OssError::invalid_digest("x"), 400, "InvalidDigest"),
            (OssError::object_not_appendable(), 409, "ObjectNotAppendable"),
            (OssError::position_not_equal_to_length(), 409, "PositionNotEqualToLength"),
            (OssError::file_already_exists(), 409, "FileAlreadyExists"),
            (OssError::not_implemented("If-Match"), 400, "NotImplemented"),
            (OssError::method_not_allowed(), 405, "MethodNotAllowed"),
            (OssError::internal_error(), 500, "InternalError"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status, e.code), (status, code));
        }
    }

    #[test]
    fn error_body_has_the_shape_oss2_parses() {
        let e = OssError::no_such_key("a<b>&c");
        let xml = e.to_xml("5C3D9175B6FC201293AD4890", "bucket.oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><RequestId>5C3D9175B6FC201293AD4890</RequestId>\
             <HostId>bucket.oss-cn-hangzhou.aliyuncs.com</HostId><Key>a&lt;b&gt;&amp;c</Key></Error>"
        );
    }

    #[test]
    fn x_oss_err_is_base64_of_the_body() {
        let e = OssError::no_such_key("k");
        let h = e.x_oss_err_header("R", "H");
        let decoded = base64::engine::general_purpose::STANDARD.decode(h).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), e.to_xml("R", "H"));
    }

    #[test]
    fn details_are_reachable_and_304_has_no_body() {
        let e = OssError::invalid_argument("max-keys", "0", "bad");
        assert_eq!(e.detail("ArgumentName"), Some("max-keys"));
        assert_eq!(e.detail("ArgumentValue"), Some("0"));
        assert!(e.has_body());
        assert!(!OssError::not_modified().has_body());
        let e = OssError::position_not_equal_to_length().with_header("x-oss-next-append-position", "7");
        assert_eq!(e.headers, vec![("x-oss-next-append-position", "7".to_string())]);
    }
}
