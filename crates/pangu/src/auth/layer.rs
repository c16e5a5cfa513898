//! The axum side of [`super`]: a middleware that verifies a request's signature from its
//! head, before any handler runs and before its body is read, and hands the handler the
//! [`Principal`] as a request extension.
//!
//! A refused request is answered at once: its body is never read (hyper then closes the
//! connection rather than drain it), so an unauthenticated peer costs one parse and, at most,
//! a few HMACs of a few hundred bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{now_ms, AuthError, RequestFacts, Verifier, AUTHORIZATION, SHA256_HEADER};
use crate::chunkserver::wire::CRC32C_HEADER;

/// How a service refuses a request.
pub type Refuse = fn(AuthError) -> Response;

/// The middleware's state: whose signatures it checks and how it answers a refusal.
#[derive(Clone)]
pub struct Guard {
    pub verifier: Arc<Verifier>,
    pub refuse: Refuse,
    /// For services whose bodies are small JSON (the master): read the body, at most this
    /// many bytes, after the signature is verified, and check it against its signed
    /// `x-pangu-content-sha256`. `None`: the handler checks the body (a chunkserver's append
    /// against its signed `x-pangu-crc32c`) or ignores it.
    pub check_body_sha256: Option<usize>,
}

/// Verifies the request's signature, then (if the guard says so) its body's SHA-256, then
/// runs the handler with the [`Principal`] in the request's extensions.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let verified = {
        let headers = request.headers();
        let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        facts(request.method().as_str(), path, headers)
            .and_then(|facts| guard.verifier.verify(headers.get(AUTHORIZATION).map(|v| v.as_bytes()), &facts, now_ms()))
    };
    let principal = match verified {
        Ok(principal) => principal,
        Err(e) => return (guard.refuse)(e),
    };
    let mut request = match guard.check_body_sha256 {
        Some(limit) => match checked_body(request, limit).await {
            Ok(request) => request,
            Err(e) => return (guard.refuse)(e),
        },
        None => request,
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// What the signature covers, from the head. A signed request states its length: a
/// chunked body (no `Content-Length`) is refused, since its length could not be signed.
fn facts<'a>(method: &'a str, path_and_query: &'a str, headers: &'a HeaderMap) -> Result<RequestFacts<'a>, AuthError> {
    let text = |name: &str| -> Result<&'a str, AuthError> {
        match headers.get(name) {
            None => Ok(""),
            Some(v) => v.to_str().map_err(|_| AuthError::Malformed("a signed header is not text")),
        }
    };
    let content_length = match headers.get(CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(AuthError::Malformed("Content-Length is not a number"))?,
        None if headers.contains_key(TRANSFER_ENCODING) => {
            return Err(AuthError::Malformed("a signed request carries Content-Length, not a chunked body"))
        }
        None => 0,
    };
    Ok(RequestFacts {
        method,
        path_and_query,
        content_length,
        crc32c: text(CRC32C_HEADER)?,
        sha256: text(SHA256_HEADER)?,
    })
}

/// Reads the body (at most `limit` bytes) and checks it against its signed SHA-256; a body
/// without one must be empty.
async fn checked_body(request: Request, limit: usize) -> Result<Request, AuthError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| AuthError::BodyMismatch)?;
    let claimed = parts.headers.get(SHA256_HEADER).map(|v| v.as_bytes()).unwrap_or(b"");
    if claimed.is_empty() {
        if !bytes.is_empty() {
            return Err(AuthError::BodyMismatch);
        }
    } else if !hex::encode(Sha256::digest(&bytes)).as_bytes().eq_ignore_ascii_case(claimed) {
        return Err(AuthError::BodyMismatch);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The hex SHA-256 of a body, for [`SHA256_HEADER`].
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}
