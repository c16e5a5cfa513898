//! Helpers every service uses around the store: `ClientToken` idempotency, timestamps.

use crate::{ApiError, Ctx, Params};
use feitian_meta::{Store, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Now, as the APIs write times (`2026-11-22T08:00:00Z`).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `ClientToken`: at most 64 ASCII characters.
pub fn client_token(p: &Params) -> Result<Option<String>, ApiError> {
    match p.opt_str("ClientToken") {
        Some(t) if t.len() > 64 || !t.is_ascii() => {
            Err(ApiError::invalid_parameter("ClientToken", "use at most 64 ASCII characters"))
        }
        t => Ok(t.map(str::to_owned)),
    }
}

/// Runs a create in one write transaction, at most once per `ClientToken`: the answer is
/// stored with the token (as JSON) and returned as it was for a repeat with the same
/// parameters.
pub fn create_once<T: Serialize + DeserializeOwned>(
    store: &Store,
    ctx: &Ctx,
    p: &Params,
    token: Option<String>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(token) = token else { return store.write(f) };
    let reply = store.idempotent::<ApiError>(ctx.caller.account_id, &ctx.action, &token, p.business(), |tx| {
        let answer = f(tx)?;
        serde_json::to_string(&answer).map_err(|e| {
            tracing::error!(error = %e, "an answer does not serialize");
            ApiError::internal()
        })
    })?;
    serde_json::from_str(&reply).map_err(|e| {
        tracing::error!(error = %e, "a stored ClientToken answer does not read back");
        ApiError::internal()
    })
}
