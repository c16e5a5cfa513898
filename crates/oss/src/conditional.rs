//! Conditional GET/HEAD: `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`.
//!
//! OSS's outcomes (GetObject, HeadObject, "Conditional download"):
//! - `If-Modified-Since`: proceed if the object was modified after the date (or the date is
//!   invalid), else **304**;
//! - `If-Unmodified-Since`: proceed if the date is the same as or later than the
//!   modification time, else **412** `PreconditionFailed`;
//! - `If-Match`: proceed if the ETag matches, else **412**;
//! - `If-None-Match`: proceed if it does not match, else **304**.
//!
//! OSS does not document how the four combine; feitian uses RFC 9110 §13.2.2's order, which
//! is what S3 documents too:
//! 1. `If-Match` present: failing → 412. Passing, it makes `If-Unmodified-Since` moot.
//! 2. Otherwise `If-Unmodified-Since` (when it parses): failing → 412.
//! 3. `If-None-Match` present: matching → 304. Present at all, it makes `If-Modified-Since`
//!    moot.
//! 4. Otherwise `If-Modified-Since` (when it parses, and is not in the future): not modified
//!    since → 304.
//!
//! So `If-Match` true + `If-Unmodified-Since` false → 200, and `If-None-Match` false +
//! `If-Modified-Since` true → 304, as S3 documents.
//!
//! Times compare at whole seconds (HTTP dates have no fraction). ETags compare without their
//! quotes and, since OSS ETags are hexadecimal, without regard to case: a client that
//! computed a lowercase MD5 itself still matches. `If-Match` uses the strong comparison
//! (a `W/` tag never matches); `If-None-Match` the weak one. `*` matches any existing object.
//!
//! `CopyObject`'s and `UploadPartCopy`'s `x-oss-copy-source-if-*` headers are the same four
//! conditions on the source, with the same outcomes: the CopyObject reference says a failing
//! `x-oss-copy-source-if-match` / `-if-unmodified-since` is 412 and a failing
//! `-if-none-match` / `-if-modified-since` is 304 ([`evaluate_copy_source`]).

use chrono::{DateTime, Utc};

use crate::dates::{parse_http_date, truncate_to_second};
use crate::errors::OssError;

/// The four conditional headers of one request, as received (raw header values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preconditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
}

/// The object the conditions are judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validators<'a> {
    /// The ETag as served, with or without its quotes.
    pub etag: &'a str,
    pub last_modified: DateTime<Utc>,
}

/// What the conditions decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve the object (200/206).
    Proceed,
    /// 304, headers only.
    NotModified,
    /// 412 `PreconditionFailed`; names the header that failed.
    PreconditionFailed(&'static str),
}

impl Decision {
    /// `Ok` to proceed, or the error to answer with (304 renders without a body).
    pub fn into_result(self) -> Result<(), OssError> {
        match self {
            Decision::Proceed => Ok(()),
            Decision::NotModified => Err(OssError::not_modified()),
            Decision::PreconditionFailed(header) => Err(OssError::precondition_failed(header)),
        }
    }
}

/// Evaluates a GET's or HEAD's conditions. `now` decides whether an `If-Modified-Since` lies in
/// the future (RFC 9110: such a date is invalid and ignored).
pub fn evaluate(p: &Preconditions<'_>, v: &Validators<'_>, now: DateTime<Utc>) -> Decision {
    let last_modified = truncate_to_second(v.last_modified);
    match p.if_match {
        Some(list) => {
            if !etag_list_matches(list, v.etag, Comparison::Strong) {
                return Decision::PreconditionFailed("If-Match");
            }
        }
        None => {
            if let Some(since) = p.if_unmodified_since.and_then(parse_http_date) {
                if last_modified > since {
                    return Decision::PreconditionFailed("If-Unmodified-Since");
                }
            }
        }
    }
    match p.if_none_match {
        Some(list) => {
            if etag_list_matches(list, v.etag, Comparison::Weak) {
                return Decision::NotModified;
            }
        }
        None => {
            if let Some(since) = p.if_modified_since.and_then(parse_http_date) {
                if since <= truncate_to_second(now) && last_modified <= since {
                    return Decision::NotModified;
                }
            }
        }
    }
    Decision::Proceed
}

/// The same conditions on a copy source (`x-oss-copy-source-if-match`, `-if-none-match`,
/// `-if-modified-since`, `-if-unmodified-since`, passed in as the four fields): 412 naming
/// the copy-source header for `-if-match` / `-if-unmodified-since`, 304 for `-if-none-match`
/// / `-if-modified-since`, as the CopyObject reference documents.
pub fn evaluate_copy_source(p: &Preconditions<'_>, v: &Validators<'_>, now: DateTime<Utc>) -> Decision {
    match evaluate(p, v, now) {
        Decision::PreconditionFailed("If-Match") => Decision::PreconditionFailed("x-oss-copy-source-if-match"),
        Decision::PreconditionFailed(_) => Decision::PreconditionFailed("x-oss-copy-source-if-unmodified-since"),
        other => other,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether a header's list of entity tags (`"A", W/"B"`, or `*`) matches `etag`.
fn etag_list_matches(list: &str, etag: &str, cmp: Comparison) -> bool {
    let ours = unquote(etag);
    list.split(',').map(str::trim).filter(|t| !t.is_empty()).any(|tag| {
        if tag == "*" {
            return true;
        }
        let (weak, tag) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        if weak && cmp == Comparison::Strong {
            return false;
        }
        unquote(tag).eq_ignore_ascii_case(ours)
    })
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ETAG: &str = "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"";
    const BEFORE: &str = "Sat, 05 Dec 2015 11:10:28 GMT";
    const AT: &str = "Sat, 05 Dec 2015 11:10:29 GMT";
    const AFTER: &str = "Sat, 05 Dec 2015 11:10:30 GMT";

    fn v() -> Validators<'static> {
        // Written at 11:10:29.700; served as Last-Modified: …11:10:29.
        let lm = Utc.with_ymd_and_hms(2015, 12, 5, 11, 10, 29).unwrap() + chrono::Duration::milliseconds(700);
        Validators { etag: ETAG, last_modified: lm }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()
    }

    fn eval(p: Preconditions<'_>) -> Decision {
        evaluate(&p, &v(), now())
    }

    #[test]
    fn each_header_alone() {
        assert_eq!(eval(Preconditions::default()), Decision::Proceed);

        assert_eq!(eval(Preconditions { if_match: Some(ETAG), ..Default::default() }), Decision::Proceed);
        assert_eq!(
            eval(Preconditions { if_match: Some("\"0000\""), ..Default::default() }),
            Decision::PreconditionFailed("If-Match")
        );

        assert_eq!(eval(Preconditions { if_none_match: Some(ETAG), ..Default::default() }), Decision::NotModified);
        assert_eq!(eval(Preconditions { if_none_match: Some("\"0000\""), ..Default::default() }), Decision::Proceed);

        assert_eq!(eval(Preconditions { if_modified_since: Some(BEFORE), ..Default::default() }), Decision::Proceed);
        assert_eq!(eval(Preconditions { if_modified_since: Some(AT), ..Default::default() }), Decision::NotModified);
        assert_eq!(eval(Preconditions { if_modified_since: Some(AFTER), ..Default::default() }), Decision::NotModified);

        assert_eq!(
            eval(Preconditions { if_unmodified_since: Some(BEFORE), ..Default::default() }),
            Decision::PreconditionFailed("If-Unmodified-Since")
        );
        assert_eq!(eval(Preconditions { if_unmodified_since: Some(AT), ..Default::default() }), Decision::Proceed);
        assert_eq!(eval(Preconditions { if_unmodified_since: Some(AFTER), ..Default::default() }), Decision::Proceed);
    }

    #[test]
    fn precedence_is_rfc_9110s() {
        // If-Match true overrides a failing If-Unmodified-Since: 200.
        let p = Preconditions { if_match: Some(ETAG), if_unmodified_since: Some(BEFORE), ..Default::default() };
        assert_eq!(eval(p), Decision::Proceed);
        // If-None-Match holds (no match) but If-Modified-Since would not: If-None-Match
        // decides, 200. S3's documented case — If-None-Match fails (the tag matches) while
        // If-Modified-Since holds — is 304.
        let p = Preconditions { if_none_match: Some("\"0000\""), if_modified_since: Some(AT), ..Default::default() };
        assert_eq!(eval(p), Decision::Proceed);
        let p = Preconditions { if_none_match: Some(ETAG), if_modified_since: Some(BEFORE), ..Default::default() };
        assert_eq!(eval(p), Decision::NotModified);
        // 412 beats 304.
        let p = Preconditions { if_match: Some("\"0000\""), if_none_match: Some(ETAG), ..Default::default() };
        assert_eq!(eval(p), Decision::PreconditionFailed("If-Match"));
        let p = Preconditions { if_unmodified_since: Some(BEFORE), if_modified_since: Some(AT), ..Default::default() };
        assert_eq!(eval(p), Decision::PreconditionFailed("If-Unmodified-Since"));
        // Both date headers holding.
        let p = Preconditions { if_unmodified_since: Some(AT), if_modified_since: Some(BEFORE), ..Default::default() };
        assert_eq!(eval(p), Decision::Proceed);
    }

    #[test]
    fn etag_lists_and_forms() {
        for ok in [
            "*",
            ETAG,
            "5EB63BBBE01EEED093CB22BB8F5ACDC3",
            "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"",
            "\"x\", \"5EB63BBBE01EEED093CB22BB8F5ACDC3\"",
            " \"x\" ,, * ",
        ] {
            assert_eq!(eval(Preconditions { if_match: Some(ok), ..Default::default() }), Decision::Proceed, "{ok}");
            assert_eq!(
                eval(Preconditions { if_none_match: Some(ok), ..Default::default() }),
                Decision::NotModified,
                "{ok}"
            );
        }
        // A weak tag never satisfies If-Match, but does If-None-Match.
        let weak = "W/\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"";
        assert_eq!(
            eval(Preconditions { if_match: Some(weak), ..Default::default() }),
            Decision::PreconditionFailed("If-Match")
        );
        assert_eq!(eval(Preconditions { if_none_match: Some(weak), ..Default::default() }), Decision::NotModified);
        // An empty If-Match matches nothing.
        assert_eq!(
            eval(Preconditions { if_match: Some(""), ..Default::default() }),
            Decision::PreconditionFailed("If-Match")
        );
    }

    #[test]
    fn invalid_and_future_dates_are_ignored() {
        for bad in ["yesterday", "", "Sat, 05 Dec 2015 11:10:29", "Mon, 01 Jan 2035 00:00:00 GMT"] {
            assert_eq!(eval(Preconditions { if_modified_since: Some(bad), ..Default::default() }), Decision::Proceed);
        }
        assert_eq!(
            eval(Preconditions { if_unmodified_since: Some("garbage"), ..Default::default() }),
            Decision::Proceed
        );
        // Other date forms work.
        let p = Preconditions { if_modified_since: Some("Saturday, 05-Dec-15 11:10:29 GMT"), ..Default::default() };
        assert_eq!(eval(p), Decision::NotModified);
        let p = Preconditions { if_modified_since: Some("Sat Dec  5 11:10:29 2015"), ..Default::default() };
        assert_eq!(eval(p), Decision::NotModified);
    }

    #[test]
    fn results_and_copy_source() {
        assert_eq!(Decision::Proceed.into_result(), Ok(()));
        assert_eq!(Decision::NotModified.into_result().unwrap_err().status, 304);
        let e = Decision::PreconditionFailed("If-Match").into_result().unwrap_err();
        assert_eq!((e.status, e.code, e.detail("Condition")), (412, "PreconditionFailed", Some("If-Match")));

        let p = Preconditions { if_none_match: Some(ETAG), ..Default::default() };
        assert_eq!(evaluate_copy_source(&p, &v(), now()), Decision::NotModified);
        let p = Preconditions { if_modified_since: Some(AT), ..Default::default() };
        assert_eq!(evaluate_copy_source(&p, &v(), now()), Decision::NotModified);
        let p = Preconditions { if_unmodified_since: Some(BEFORE), ..Default::default() };
        assert_eq!(
            evaluate_copy_source(&p, &v(), now()),
            Decision::PreconditionFailed("x-oss-copy-source-if-unmodified-since")
        );
        let p = Preconditions { if_match: Some("\"0\""), ..Default::default() };
        assert_eq!(evaluate_copy_source(&p, &v(), now()), Decision::PreconditionFailed("x-oss-copy-source-if-match"));
        let p = Preconditions { if_match: Some(ETAG), ..Default::default() };
        assert_eq!(evaluate_copy_source(&p, &v(), now()), Decision::Proceed);
    }
}
