//! The Alibaba Cloud error envelope: an HTTP status, a `Code`, a `Message` and a hint.
//!
//! Every failure a client can cause is one of these, with the status and code the real
//! service uses. A 5xx is reserved for feitian's own faults (`InternalError`), and each one
//! is a bug.

use std::borrow::Cow;

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
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), recommend: None }
    }

    pub fn recommend(mut self, hint: impl Into<String>) -> Self {
        self.recommend = Some(hint.into());
        self
    }

    // --- request shape -------------------------------------------------------------------

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    /// `InvalidParameter`, naming the parameter and why.
    pub fn invalid_parameter(name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(400, "InvalidParameter", format!("The specified parameter \"{name}\" is not valid: {why}."))
    }

    /// A sub-coded invalid parameter such as `InvalidParameter.PortRange`.
    pub fn invalid(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn invalid_action(action: &str, version: &str) -> Self {
        Self::new(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
            .recommend(format!("{action} is not an action of API version {version}; check the action name's spelling and the product's Version"))
    }

    pub fn invalid_version(version: &str) -> Self {
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
        // sign, to tell a wrong secret from a signing bug: keep this exact shape.
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
