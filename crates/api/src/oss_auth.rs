//! Who signed an OSS request, if anyone: V1 (`Authorization: OSS ak:sig`, or a presigned URL
//! with `OSSAccessKeyId`/`Expires`/`Signature`) and V4 (`Authorization: OSS4-HMAC-SHA256 …`,
//! or a presigned URL with `x-oss-signature-version`/`x-oss-credential`/…). A request with
//! none of them is anonymous (`Ok(None)`): the OSS service then allows only what the bucket's
//! ACL allows everybody.
//!
//! Errors carry OSS's codes and statuses: `InvalidAccessKeyId` (403),
//! `SignatureDoesNotMatch` (403), `RequestTimeTooSkewed` (403), `AccessDenied` (403, expired
//! presigned URLs), `RequestNotReadyYet` (403, a presigned URL whose `x-oss-date` is more than
//! the skew ahead), `InvalidArgument` (400, malformed signature parts).
//!
//! V4 binds a signature to a scope, `date/region/product/aliyun_v4_request`; the scope must be
//! this feitian's: its date the date of `x-oss-date`, its region the region OSS serves here,
//! its product `oss` (a signature made for another region or product is refused before the
//! key is looked up, `InvalidArgument`). The payload hash `x-oss-content-sha256` must be
//! `UNSIGNED-PAYLOAD`, the only value OSS accepts (it answers any other, a body's real digest
//! included, `InvalidArgument`: OSS error 0002-00000214): OSS V4 does not sign bodies, so a
//! digest here would be a check that feitian, like OSS, never makes; refusing it means no
//! client can believe its body is covered when it is not. Bodies are covered by `Content-MD5`,
//! which is signed and checked.

use crate::auth::{Caller, KeyStore};
use crate::oss_signature::{self as sig, OssRequest};
use crate::signature::constant_time_eq;
use crate::ApiError;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// How far `Date` / `x-oss-date` may be from the server's clock.
pub const SKEW: chrono::Duration = chrono::Duration::minutes(15);

fn invalid_key() -> ApiError {
    ApiError::new(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
}

fn mismatch(string_to_sign: &str) -> ApiError {
    ApiError::new(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )
    .recommend(format!(
        "string to sign: {:?}",
        crate::error::echo_within(string_to_sign, crate::error::STRING_TO_SIGN_ECHO_MAX)
    ))
}

fn bad(what: &str) -> ApiError {
    ApiError::new(400, "InvalidArgument", format!("The {what} of the request's signature is not valid."))
}

fn skewed() -> ApiError {
    ApiError::new(
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    )
}

fn expired() -> ApiError {
    ApiError::new(403, "AccessDenied", "Request has expired.")
}

fn not_ready() -> ApiError {
    ApiError::new(403, "RequestNotReadyYet", "The request is not valid yet: its x-oss-date is in the future.")
}

/// The only payload hash OSS V4 accepts.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

fn param<'a>(r: &'a OssRequest<'_>, name: &str) -> Option<&'a str> {
    r.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn header<'a>(r: &'a OssRequest<'_>, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn secret(keys: &dyn KeyStore, ak: &str) -> Result<(String, Caller), ApiError> {
    let cred = keys.lookup(ak)?.ok_or_else(invalid_key)?;
    if !cred.active {
        return Err(invalid_key());
    }
    Ok((cred.secret, cred.caller))
}

/// `20261122T080000Z`.
fn parse_v4_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok().map(|t| Utc.from_utc_datetime(&t))
}

/// RFC 1123 (`Sun, 22 Nov 2026 08:00:00 GMT`), as OSS clients send `Date`.
fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Authenticates an OSS request at `now`, for OSS in `region` (V4 signatures are scoped to it).
pub fn authenticate(
    keys: &dyn KeyStore,
    r: &OssRequest<'_>,
    region: &str,
    now: DateTime<Utc>,
) -> Result<Option<Caller>, ApiError> {
    if let Some(auth) = header(r, "authorization") {
        if auth.starts_with("OSS4-HMAC-SHA256") {
            return v4_header(keys, r, auth, region, now).map(Some);
        }
        if auth.starts_with("OSS ") {
            return v1_header(keys, r, auth, now).map(Some);
        }
        return Err(bad("Authorization header"));
    }
    if param(r, "x-oss-signature-version").is_some() {
        return v4_presigned(keys, r, region, now).map(Some);
    }
    if param(r, "OSSAccessKeyId").is_some() || param(r, "Signature").is_some() {
        return v1_presigned(keys, r, now).map(Some);
    }
    Ok(None)
}

fn v1_header(keys: &dyn KeyStore, r: &OssRequest<'_>, auth: &str, now: DateTime<Utc>) -> Result<Caller, ApiError> {
    let (ak, signature) = sig::parse_v1_authorization(auth).ok_or_else(|| bad("Authorization header"))?;
    let date = header(r, "x-oss-date").or_else(|| header(r, "date")).ok_or_else(|| bad("Date header"))?;
    let t = parse_http_date(date).ok_or_else(|| bad("Date header"))?;
    if (now - t).abs() > SKEW {
        return Err(skewed());
    }
    let (secret, caller) = secret(keys, ak)?;
    let sts = sig::v1_string_to_sign(r, date);
    if !constant_time_eq(&sig::v1_sign(&secret, &sts), signature) {
        return Err(mismatch(&sts));
    }
    Ok(caller)
}

fn v1_presigned(keys: &dyn KeyStore, r: &OssRequest<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
    let ak = param(r, "OSSAccessKeyId").ok_or_else(|| bad("OSSAccessKeyId"))?;
    let expires = param(r, "Expires").ok_or_else(|| bad("Expires"))?;
    let signature = param(r, "Signature").ok_or_else(|| bad("Signature"))?;
    let at: i64 = expires.parse().map_err(|_| bad("Expires"))?;
    if now.timestamp() > at {
        return Err(expired());
    }
    let (secret, caller) = secret(keys, ak)?;
    let sts = sig::v1_string_to_sign(r, expires);
    if !constant_time_eq(&sig::v1_sign(&secret, &sts), signature) {
        return Err(mismatch(&sts));
    }
    Ok(caller)
}

fn v4_check(
    keys: &dyn KeyStore,
    r: &OssRequest<'_>,
    a: &sig::V4Authorization<'_>,
    datetime: &str,
    region: &str,
    exclude: Option<&str>,
) -> Result<Caller, ApiError> {
    if a.date.len() != 8 || !datetime.starts_with(a.date) {
        return Err(bad("credential date"));
    }
    if a.region != region {
        return Err(ApiError::new(
            400,
            "InvalidArgument",
            format!(
                "The signing region in credential is invalid: {:?}, this is {region}.",
                crate::error::echo_within(a.region, crate::error::ECHO_MAX)
            ),
        ));
    }
    if a.product != "oss" {
        return Err(ApiError::new(400, "InvalidArgument", "The signing product in credential must be oss."));
    }
    if let Some(payload) = header(r, "x-oss-content-sha256") {
        if payload != UNSIGNED_PAYLOAD {
            return Err(ApiError::new(
                400,
                "InvalidArgument",
                "The x-oss-content-sha256 only supports UNSIGNED-PAYLOAD.",
            ));
        }
    }
    let (secret, caller) = secret(keys, a.access_key_id)?;
    let canonical = sig::v4_canonical_request(r, &a.additional_headers, exclude);
    let sts = sig::v4_string_to_sign(&canonical, datetime, &sig::v4_scope(a.date, a.region, a.product));
    if !constant_time_eq(&sig::v4_sign(&secret, a.date, a.region, a.product, &sts), a.signature) {
        return Err(mismatch(&sts));
    }
    Ok(caller)
}

fn v4_header(
    keys: &dyn KeyStore,
    r: &OssRequest<'_>,
    auth: &str,
    region: &str,
    now: DateTime<Utc>,
) -> Result<Caller, ApiError> {
    let a = sig::parse_v4_authorization(auth).ok_or_else(|| bad("Authorization header"))?;
    let datetime = header(r, "x-oss-date").ok_or_else(|| bad("x-oss-date header"))?;
    let t = parse_v4_time(datetime).ok_or_else(|| bad("x-oss-date header"))?;
    if (now - t).abs() > SKEW {
        return Err(skewed());
    }
    v4_check(keys, r, &a, datetime, region, None)
}

fn v4_presigned(keys: &dyn KeyStore, r: &OssRequest<'_>, region: &str, now: DateTime<Utc>) -> Result<Caller, ApiError> {
    if param(r, "x-oss-signature-version") != Some("OSS4-HMAC-SHA256") {
        return Err(bad("x-oss-signature-version"));
    }
    let credential = param(r, "x-oss-credential").ok_or_else(|| bad("x-oss-credential"))?;
    let datetime = param(r, "x-oss-date").ok_or_else(|| bad("x-oss-date"))?;
    let expires: i64 = param(r, "x-oss-expires").and_then(|e| e.parse().ok()).ok_or_else(|| bad("x-oss-expires"))?;
    let signature = param(r, "x-oss-signature").ok_or_else(|| bad("x-oss-signature"))?;
    let t = parse_v4_time(datetime).ok_or_else(|| bad("x-oss-date"))?;
    // A URL starts being valid at its x-oss-date (less the clock skew allowed): one signed
    // for later is not yet usable (OSS error 0002-00000235), however long it is valid.
    if t - now > SKEW {
        return Err(not_ready());
    }
    if !(1..=7 * 24 * 3600).contains(&expires) || now > t + chrono::Duration::seconds(expires) {
        return Err(expired());
    }
    let extra = param(r, "x-oss-additional-headers").unwrap_or("");
    let header_line =
        format!("OSS4-HMAC-SHA256 Credential={credential}, AdditionalHeaders={extra}, Signature={signature}");
    let a = sig::parse_v4_authorization(&header_line).ok_or_else(|| bad("x-oss-credential"))?;
    v4_check(keys, r, &a, datetime, region, Some("x-oss-signature"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credential;

    struct Keys;
    impl KeyStore for Keys {
        fn lookup(&self, id: &str) -> Result<Option<Credential>, ApiError> {
            Ok((id == "ak").then(|| Credential {
                secret: "secret".into(),
                active: true,
                caller: Caller { account_id: 7, account_name: "a".into(), access_key_id: "ak".into() },
            }))
        }
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_http_date(s).unwrap()
    }

    #[test]
    fn v1_header_signed_by_oss2() {
        // The request and signature of oss_signature::tests::v1_matches_oss2.
        let sigv = include_str!("../testdata/oss_v1_sig.txt").trim();
        let mut headers = owned(&[
            ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("content-type", "text/plain"),
            ("x-oss-meta-author", "me"),
            ("x-oss-object-acl", "private"),
            ("date", "Sun, 22 Nov 2026 08:00:00 GMT"),
        ]);
        headers.push(("authorization".into(), format!("OSS ak:{sigv}")));
        let params = owned(&[("uploadId", "abc"), ("partNumber", "3"), ("max-keys", "10")]);
        let r = OssRequest {
            method: "PUT",
            bucket: Some("my-bucket"),
            key: "dir/a b.txt",
            params: &params,
            headers: &headers,
        };
        assert_eq!(
            authenticate(&Keys, &r, "cn-hangzhou", at("Sun, 22 Nov 2026 08:05:00 GMT")).unwrap().unwrap().account_id,
            7
        );
        assert_eq!(
            authenticate(&Keys, &r, "cn-hangzhou", at("Sun, 22 Nov 2026 09:00:00 GMT")).unwrap_err().code,
            "RequestTimeTooSkewed"
        );
        let tampered = OssRequest { key: "dir/other.txt", ..r };
        assert_eq!(
            authenticate(&Keys, &tampered, "cn-hangzhou", at("Sun, 22 Nov 2026 08:00:00 GMT")).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn v4_header_signed_by_oss2() {
        let sigv = include_str!("../testdata/oss_v4_sig.txt").trim();
        let headers = owned(&[
            ("content-type", "text/plain"),
            ("x-oss-date", "20261122T080000Z"),
            ("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-oss-meta-a", "b"),
            ("host", "my-bucket.oss-cn-hangzhou.aliyuncs.com"),
            (
                "authorization",
                &format!("OSS4-HMAC-SHA256 Credential=ak/20261122/cn-hangzhou/oss/aliyun_v4_request, Signature={sigv}"),
            ),
        ]);
        let params = owned(&[("uploadId", "abc/def"), ("partNumber", "3"), ("acl", "")]);
        let r = OssRequest {
            method: "PUT",
            bucket: Some("my-bucket"),
            key: "dir/a b+c.txt",
            params: &params,
            headers: &headers,
        };
        assert!(authenticate(&Keys, &r, "cn-hangzhou", at("Sun, 22 Nov 2026 08:01:00 GMT")).unwrap().is_some());
        let wrong = OssRequest { method: "GET", ..r };
        assert_eq!(
            authenticate(&Keys, &wrong, "cn-hangzhou", at("Sun, 22 Nov 2026 08:01:00 GMT")).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn anonymous_unknown_and_expired() {
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &[], headers: &[] };
        assert!(authenticate(&Keys, &r, "cn-hangzhou", Utc::now()).unwrap().is_none());
        let h = owned(&[("authorization", "OSS nobody:sig"), ("date", "Sun, 22 Nov 2026 08:00:00 GMT")]);
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &[], headers: &h };
        assert_eq!(
            authenticate(&Keys, &r, "cn-hangzhou", at("Sun, 22 Nov 2026 08:00:00 GMT")).unwrap_err().code,
            "InvalidAccessKeyId"
        );
        let p = owned(&[("OSSAccessKeyId", "ak"), ("Expires", "100"), ("Signature", "x")]);
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &p, headers: &[] };
        assert_eq!(authenticate(&Keys, &r, "cn-hangzhou", Utc::now()).unwrap_err().code, "AccessDenied");
        let h = owned(&[("authorization", "Bearer x")]);
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &[], headers: &h };
        assert_eq!(authenticate(&Keys, &r, "cn-hangzhou", Utc::now()).unwrap_err().code, "InvalidArgument");
    }

    #[test]
    fn v1_presigned_round_trip() {
        let expires = (Utc::now().timestamp() + 60).to_string();
        let r0 = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &[], headers: &[] };
        let s = sig::v1_sign("secret", &sig::v1_string_to_sign(&r0, &expires));
        let p = owned(&[("OSSAccessKeyId", "ak"), ("Expires", &expires), ("Signature", &s)]);
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &p, headers: &[] };
        assert!(authenticate(&Keys, &r, "cn-hangzhou", Utc::now()).unwrap().is_some());
        let r = OssRequest { method: "PUT", ..r };
        assert_eq!(authenticate(&Keys, &r, "cn-hangzhou", Utc::now()).unwrap_err().code, "SignatureDoesNotMatch");
    }

    /// A V4 request signed by feitian's own signer with the given scope, time and headers.
    fn v4_signed(
        scope_date: &str,
        region: &str,
        product: &str,
        datetime: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut headers = owned(&[("x-oss-date", datetime)]);
        headers.extend(owned(extra));
        let r = OssRequest { method: "PUT", bucket: Some("b"), key: "k", params: &[], headers: &headers };
        let canonical = sig::v4_canonical_request(&r, &[], None);
        let sts = sig::v4_string_to_sign(&canonical, datetime, &sig::v4_scope(scope_date, region, product));
        let signature = sig::v4_sign("secret", scope_date, region, product, &sts);
        headers.push((
            "authorization".into(),
            format!("OSS4-HMAC-SHA256 Credential=ak/{scope_date}/{region}/{product}/aliyun_v4_request, Signature={signature}"),
        ));
        headers
    }

    fn put(headers: &[(String, String)]) -> OssRequest<'_> {
        OssRequest { method: "PUT", bucket: Some("b"), key: "k", params: &[], headers }
    }

    #[test]
    fn v4_scope_must_be_this_region_this_product_this_date() {
        let now = at("Sun, 22 Nov 2026 08:01:00 GMT");
        let ok = v4_signed("20261122", "cn-hangzhou", "oss", "20261122T080000Z", &[]);
        assert!(authenticate(&Keys, &put(&ok), "cn-hangzhou", now).unwrap().is_some());
        // Validly signed, but for another region, another product, another day.
        let cases = [
            (v4_signed("20261122", "cn-beijing", "oss", "20261122T080000Z", &[]), "region"),
            (v4_signed("20261122", "cn-hangzhou", "ecs", "20261122T080000Z", &[]), "product"),
            (v4_signed("20261121", "cn-hangzhou", "oss", "20261122T080000Z", &[]), "credential date"),
        ];
        for (headers, what) in cases {
            let e = authenticate(&Keys, &put(&headers), "cn-hangzhou", now).unwrap_err();
            assert_eq!((e.status, e.code.as_ref()), (400, "InvalidArgument"), "{what}");
        }
        // The same request, served as another region: refused too.
        let e = authenticate(&Keys, &put(&ok), "cn-shanghai", now).unwrap_err();
        assert!(e.message.contains("region"), "{}", e.message);
    }

    #[test]
    fn v4_payload_hash_must_be_unsigned_payload() {
        let now = at("Sun, 22 Nov 2026 08:01:00 GMT");
        let ok = v4_signed(
            "20261122",
            "cn-hangzhou",
            "oss",
            "20261122T080000Z",
            &[("x-oss-content-sha256", "UNSIGNED-PAYLOAD")],
        );
        assert!(authenticate(&Keys, &put(&ok), "cn-hangzhou", now).unwrap().is_some());
        // A digest, even a correct one (of the empty body here), is signed but would never be
        // checked against the body: refused, as OSS refuses it.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for value in [empty, "0000", ""] {
            let h = v4_signed("20261122", "cn-hangzhou", "oss", "20261122T080000Z", &[("x-oss-content-sha256", value)]);
            let e = authenticate(&Keys, &put(&h), "cn-hangzhou", now).unwrap_err();
            assert_eq!((e.status, e.code.as_ref()), (400, "InvalidArgument"), "{value:?}");
            assert!(e.message.contains("x-oss-content-sha256"));
        }
    }

    /// A presigned V4 URL for `GET b/k`, dated `datetime`, valid `expires` seconds.
    fn presigned_v4(datetime: &str, expires: &str) -> Vec<(String, String)> {
        let date = &datetime[..8];
        let mut params = owned(&[
            ("x-oss-signature-version", "OSS4-HMAC-SHA256"),
            ("x-oss-credential", &format!("ak/{date}/cn-hangzhou/oss/aliyun_v4_request")),
            ("x-oss-date", datetime),
            ("x-oss-expires", expires),
        ]);
        let r = OssRequest { method: "GET", bucket: Some("b"), key: "k", params: &params, headers: &[] };
        let canonical = sig::v4_canonical_request(&r, &[], None);
        let sts = sig::v4_string_to_sign(&canonical, datetime, &sig::v4_scope(date, "cn-hangzhou", "oss"));
        params.push(("x-oss-signature".into(), sig::v4_sign("secret", date, "cn-hangzhou", "oss", &sts)));
        params
    }

    #[test]
    fn v4_presigned_urls_dated_in_the_future_are_not_ready_yet() {
        let now = at("Sun, 22 Nov 2026 08:00:00 GMT");
        let get = |p: &[(String, String)]| {
            authenticate(
                &Keys,
                &OssRequest { method: "GET", bucket: Some("b"), key: "k", params: p, headers: &[] },
                "cn-hangzhou",
                now,
            )
        };
        // Signed now, or a little ahead (within the skew): usable.
        assert!(get(&presigned_v4("20261122T080000Z", "60")).unwrap().is_some());
        assert!(get(&presigned_v4("20261122T081000Z", "60")).unwrap().is_some());
        // Dated beyond the skew, even with a week to run: not yet.
        for datetime in ["20261122T081600Z", "20261123T080000Z"] {
            let e = get(&presigned_v4(datetime, "604800")).unwrap_err();
            assert_eq!((e.status, e.code.as_ref()), (403, "RequestNotReadyYet"), "{datetime}");
        }
        // Past its time: expired, as before.
        assert_eq!(get(&presigned_v4("20261122T070000Z", "60")).unwrap_err().code, "AccessDenied");
    }
}
