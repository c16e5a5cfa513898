//! The Alibaba Cloud error envelope: an HTTP status, a `Code`, a `Message` and a hint.
//!
//! Every failure a client can cause is one of these, with the status and code the real
//! service uses. A 5xx is reserved for feitian's own faults (`InternalError`), and each one
//! is a bug.

use std::borrow::Cow;

/// How much of a client's own value an error message repeats (a name, a version, a method):
/// enough to recognise it, never the whole of a megabyte.
pub const ECHO_MAX: usize = 256;

/// How much of the string to sign `SignatureDoesNotMatch` repeats. Every real request's fits
/// (the largest, a `RunInstances` with 32 KiB of base64 `UserData`, makes about 40 KiB), so
/// `aliyun-python-sdk-core` can still compare it with its own; a longer one is cut, and the SDK
/// then passes `SignatureDoesNotMatch` through instead of `InvalidAccessKeySecret`.
pub const STRING_TO_SIGN_ECHO_MAX: usize = 64 * 1024;

/// The longest `Message` or `Recommend` an error carries, whatever built it: the backstop for
/// an echo that forgot [`echo`].
pub const MESSAGE_MAX: usize = STRING_TO_SIGN_ECHO_MAX + 1024;

/// `s` if it is at most [`ECHO_MAX`] bytes, else its first bytes (on a character boundary)
/// and how many were left out. Use it (or [`echo_within`]) for any client value an error repeats.
pub fn echo(s: &str) -> Cow<'_, str> {
    echo_within(s, ECHO_MAX)
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…(N more bytes)` after a cut.
pub fn echo_within(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} more bytes)", &s[..end], s.len() - end))
}

fn bounded(s: String) -> String {
    if s.len() <= MESSAGE_MAX {
        s
    } else {
        echo_within(&s, MESSAGE_MAX).into_owned()
    }
}

/// An error as the client sees it. `RequestId` and `HostId` are added when it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: Cow<'static, str>,
    pub message: String,
    /// What to do next, in plain words (the real service puts a diagnosis link here).
    pub recommend: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// A new error; a `message` over [`MESSAGE_MAX`] bytes is cut.
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: bounded(message.into()), recommend: None }
    }

    /// Adds the hint; one over [`MESSAGE_MAX`] bytes is cut.
    pub fn recommend(mut self, hint: impl Into<String>) -> Self {
        self.recommend = Some(bounded(hint.into()));
        self
    }

    // --- request shape -------------------------------------------------------------------

    pub fn missing_parameter(name: &str) -> Self {
        let name = echo(name);
        Self::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    /// `InvalidParameter`, naming the parameter (cut to [`ECHO_MAX`]: names come from the
    /// client) and why (which must quote client values through [`echo`]).
    pub fn invalid_parameter(name: &str, why: impl std::fmt::Display) -> Self {
        let name = echo(name);
        Self::new(400, "InvalidParameter", format!("The specified parameter \"{name}\" is not valid: {why}."))
    }

    /// A sub-coded invalid parameter such as `InvalidParameter.PortRange`.
    pub fn invalid(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn invalid_action(action: &str, version: &str) -> Self {
        let (action, version) = (echo(action), echo(version));
        Self::new(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
            .recommend(format!("{action} is not an action of API version {version}; check the action name's spelling and the product's Version"))
    }

    pub fn invalid_version(version: &str) -> Self {
        let version = echo(version);
        Self::new(400, "InvalidVersion", "Specified parameter Version is not valid.")
            .recommend(format!("{version:?} is not an API version feitian serves: ECS 2014-05-26, VPC 2016-04-28"))
    }

    // --- authentication ------------------------------------------------------------------

    pub fn incomplete_signature(what: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards. {what}"),
        )
    }

    pub fn signature_does_not_match(string_to_sign: &str) -> Self {
        // aliyun-python-sdk-core compares the part after the first ':' with its own string to
        // sign, to tell a wrong secret from a signing bug: keep this exact shape. Bounded: a
        // 1 MiB request must not get 1 MiB back (see STRING_TO_SIGN_ECHO_MAX).
        let string_to_sign = echo_within(string_to_sign, STRING_TO_SIGN_ECHO_MAX);
        Self::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        )
        .recommend("check the AccessKeySecret; feitian up printed it and wrote it to DATA_DIR/credentials.json")
    }

    pub fn access_key_not_found() -> Self {
        Self::new(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.").recommend(
            "use the AccessKeyId that feitian up printed, or create one with `feitian accesskey create --account NAME`",
        )
    }

    pub fn access_key_disabled() -> Self {
        Self::new(400, "InvalidAccessKeyId.Inactive", "Specified access key is disabled.")
    }

    pub fn nonce_used() -> Self {
        Self::new(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            .recommend("send a fresh SignatureNonce (or x-acs-signature-nonce) with every request")
    }

    pub fn timestamp_expired() -> Self {
        Self::new(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.").recommend(
            "the request's Timestamp (or x-acs-date) must be within 15 minutes of the server's clock, in UTC",
        )
    }

    pub fn timestamp_format() -> Self {
        Self::new(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
            .recommend("use ISO 8601 in UTC, like 2026-11-22T08:00:00Z")
    }

    pub fn unsupported_signature_method(method: &str) -> Self {
        let method = echo(method);
        Self::new(400, "InvalidSignatureMethod", format!("Specified signature method {method:?} is not supported."))
            .recommend("use SignatureMethod=HMAC-SHA1 (V1) or the ACS3-HMAC-SHA256 Authorization header (V3)")
    }

    // --- resources and state -------------------------------------------------------------

    pub fn idempotent_mismatch() -> Self {
        Self::new(
            400,
            "IdempotentParameterMismatch",
            "The request uses the same client token as a previous, but non-identical request.",
        )
    }

    pub fn throttling() -> Self {
        Self::new(400, "Throttling.User", "Request was denied due to user flow control.")
    }

    /// The whole service is at a limit (not one caller): try again later.
    pub fn service_unavailable(why: &str) -> Self {
        Self::new(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
            .recommend(why.to_owned())
    }

    pub fn request_too_large(limit: usize) -> Self {
        Self::new(413, "RequestTooLarge", format!("The request body is larger than {limit} bytes."))
    }

    /// feitian's own fault. Logged with the detail; the client sees a generic message.
    pub fn internal() -> Self {
        Self::new(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }
}

impl From<feitian_meta::MetaError> for ApiError {
    fn from(e: feitian_meta::MetaError) -> Self {
        use feitian_meta::MetaError as M;
        match e {
            M::IdempotencyMismatch => ApiError::idempotent_mismatch(),
            M::Invalid(m) => ApiError::new(400, "InvalidParameter", m),
            // Anything else (the database, a failed store task) is feitian's fault.
            other => {
                tracing::error!(error = %other, "control-plane store failed");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_on_character_boundaries() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(200); // 400 bytes
        let cut = echo(&long);
        assert!(cut.starts_with(&"é".repeat(128)));
        assert!(cut.ends_with("…(144 more bytes)"), "{cut}");
        assert_eq!(echo_within("abcdef", 3), "abc…(3 more bytes)");
    }

    #[test]
    fn signature_does_not_match_keeps_its_shape_and_is_bounded() {
        // A real request's string to sign is echoed whole, after the first ':'.
        let sts = "GET&%2F&AccessKeyId%3Dx%26Action%3DDescribeRegions";
        let e = ApiError::signature_does_not_match(sts);
        assert_eq!(e.message.split_once(':').unwrap().1, sts);
        let real = format!("POST&%2F&UserData%3D{}", "A".repeat(40 * 1024));
        let e = ApiError::signature_does_not_match(&real);
        assert_eq!(e.message.split_once(':').unwrap().1, real);
        // A megabyte is cut to STRING_TO_SIGN_ECHO_MAX: the SDK then sees a mismatch.
        let huge = "x".repeat(1024 * 1024);
        let e = ApiError::signature_does_not_match(&huge);
        assert!(e.message.len() < STRING_TO_SIGN_ECHO_MAX + 200, "{}", e.message.len());
        assert!(e.message.ends_with(&format!("…({} more bytes)", huge.len() - STRING_TO_SIGN_ECHO_MAX)));
        assert_ne!(e.message.split_once(':').unwrap().1, huge);
    }

    #[test]
    fn client_values_in_messages_are_bounded() {
        let huge = "v".repeat(100_000);
        for e in [
            ApiError::invalid_version(&huge),
            ApiError::invalid_action(&huge, &huge),
            ApiError::unsupported_signature_method(&huge),
            ApiError::invalid_parameter(&huge, "given more than once"),
            ApiError::missing_parameter(&huge),
            // The backstop, for a message built without echo().
            ApiError::new(400, "X", huge.clone()).recommend(huge.clone()),
        ] {
            let len = e.message.len() + e.recommend.as_deref().map_or(0, str::len);
            assert!(len <= 2 * MESSAGE_MAX + 64, "{}: {len}", e.code);
            if e.code != "X" {
                assert!(len < 2048, "{}: {len}", e.code);
            }
        }
    }
}
