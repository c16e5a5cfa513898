//! `Range: bytes=…` for GetObject, with OSS's two behaviours.
//!
//! OSS documents ("Use HTTP Range requests to get OSS resources in segments", "HTTP status
//! code 416", GetObject):
//!
//! | object of 1000 bytes      | default                    | `x-oss-range-behavior: standard` |
//! |---------------------------|----------------------------|----------------------------------|
//! | `bytes=0-499`             | 206, bytes 0–499           | 206, bytes 0–499                 |
//! | `bytes=500-`, `bytes=-500`| 206                        | 206                              |
//! | `bytes=500-2000` (end out)| **200, whole object**      | 206, bytes 500–999               |
//! | `bytes=1000-2000` (start out) | **200, whole object**  | 416 `InvalidRange`               |
//! | `bytes=-2000` (suffix > size) | **200, whole object**  | 206, bytes 0–999 (*)             |
//! | `byte=0-499` (bad syntax) | 200, whole object          | 200, whole object                |
//! | `bytes=0-499,500-999`     | 206, first range only      | 416 `InvalidRange` (*)           |
//!
//! By default, then, a range that is not entirely inside the object is ignored. With
//! `standard` the rules are RFC 9110's: the end is clamped, and a range that starts past the
//! end (or a zero-length suffix, or any range of an empty object) is unsatisfiable.
//!
//! Decisions where the documents are silent or disagree (marked (*) above, and these):
//! - A suffix longer than the object, with `standard`: RFC 9110 §14.1.2 says the whole
//!   representation is the range; OSS documents only the default mode for it.
//! - *Syntax errors* (`byte=`, `bytes=a-b`, `bytes=5-3`, no digits) are ignored in both modes:
//!   RFC 9110 §14.2 says a server ignores a Range it cannot parse, and no OSS page says 416.
//! - *Several ranges*: the older GetObject/Range pages say OSS serves the first one only
//!   (`bytes=0-499,500-999` → 0–499); the newer 416 page lists "multiple ranges" as a cause of
//!   `InvalidRange`. feitian does both, by mode: first range by default, 416 with `standard`.
//!   The first range is then judged by the same rules as a single one.

use crate::errors::OssError;

/// Which Range rules apply: from the `x-oss-range-behavior` request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RangeBehavior {
    /// OSS's historical behaviour: anything not entirely satisfiable is ignored.
    #[default]
    Lenient,
    /// `x-oss-range-behavior: standard`: RFC 9110 semantics, 416 when unsatisfiable.
    Standard,
}

impl RangeBehavior {
    /// `standard` (any case) selects [`RangeBehavior::Standard`]; anything else, or no header,
    /// the default.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("standard") => RangeBehavior::Standard,
            _ => RangeBehavior::Lenient,
        }
    }
}

/// An inclusive byte range inside an object: `first..=last`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes, at least 1.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true; here because clippy expects it beside `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` header of a 206: `bytes 0-499/1000`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.first, self.last, size)
    }
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// 200 with the whole object (no Range, or one that is ignored).
    Whole,
    /// 206 with these bytes.
    Partial(ByteRange),
}

/// The `Content-Range` header of a 416: `bytes */1000`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// Decides what a GET with this `Range` header returns from an object of `size` bytes.
/// The only error is 416 `InvalidRange`, and only with [`RangeBehavior::Standard`].
pub fn evaluate(range: Option<&str>, behavior: RangeBehavior, size: u64) -> Result<RangeDecision, OssError> {
    let Some(header) = range else { return Ok(RangeDecision::Whole) };
    let Some(specs) = parse(header) else { return Ok(RangeDecision::Whole) };
    let standard = behavior == RangeBehavior::Standard;
    if specs.len() > 1 && standard {
        return Err(OssError::invalid_range());
    }
    let Some(first) = specs.first() else { return Ok(RangeDecision::Whole) };
    match resolve(*first, size, standard) {
        Some(r) => Ok(RangeDecision::Partial(r)),
        None if standard => Err(OssError::invalid_range()),
        None => Ok(RangeDecision::Whole),
    }
}

/// One `byte-range-spec` as written, before it meets the object's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` (a ≤ b) or `a-` (last = None).
    FromTo { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// The range against the object, or `None` when it does not fit. Lenient mode takes only
/// ranges entirely inside the object; standard mode clamps the end (RFC 9110 §14.1.2).
fn resolve(spec: Spec, size: u64, standard: bool) -> Option<ByteRange> {
    if size == 0 {
        return None;
    }
    let end = size - 1;
    match spec {
        Spec::FromTo { first, .. } if first > end => None,
        Spec::FromTo { first, last: None } => Some(ByteRange { first, last: end }),
        Spec::FromTo { first, last: Some(last) } if last <= end => Some(ByteRange { first, last }),
        Spec::FromTo { first, last: Some(_) } => standard.then_some(ByteRange { first, last: end }),
        Spec::Suffix(0) => None,
        Spec::Suffix(n) if n <= size => Some(ByteRange { first: size - n, last: end }),
        Spec::Suffix(_) => standard.then_some(ByteRange { first: 0, last: end }),
    }
}

/// Parses `bytes=spec[, spec…]` (unit case-insensitive, optional whitespace around commas
/// and the value). `None` for anything that is not that syntax.
fn parse(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for part in set.split(',') {
        let part = part.trim();
        if part.is_empty() {
            // RFC 9110 allows empty list elements ("bytes=0-1,,2-3").
            continue;
        }
        let (a, b) = part.split_once('-')?;
        let spec = match (a.is_empty(), b.is_empty()) {
            (true, true) => return None,
            (true, false) => Spec::Suffix(number(b)?),
            (false, true) => Spec::FromTo { first: number(a)?, last: None },
            (false, false) => {
                let (first, last) = (number(a)?, number(b)?);
                if first > last {
                    return None;
                }
                Spec::FromTo { first, last: Some(last) }
            }
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        None
    } else {
        Some(specs)
    }
}

/// ASCII digits only; values past `u64::MAX` saturate (they are past any object's end, and
/// saying so is more useful than calling the header malformed).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENIENT: RangeBehavior = RangeBehavior::Lenient;
    const STANDARD: RangeBehavior = RangeBehavior::Standard;

    fn partial(first: u64, last: u64) -> Result<RangeDecision, OssError> {
        Ok(RangeDecision::Partial(ByteRange { first, last }))
    }

    fn code(r: Result<RangeDecision, OssError>) -> (u16, &'static str) {
        let e = r.unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn documented_examples_for_a_1000_byte_object() {
        let size = 1000;
        for b in [LENIENT, STANDARD] {
            assert_eq!(evaluate(Some("bytes=0-499"), b, size), partial(0, 499));
            assert_eq!(evaluate(Some("bytes=500-999"), b, size), partial(500, 999));
            assert_eq!(evaluate(Some("bytes=-500"), b, size), partial(500, 999));
            assert_eq!(evaluate(Some("bytes=500-"), b, size), partial(500, 999));
            assert_eq!(evaluate(Some("bytes=0-"), b, size), partial(0, 999));
            assert_eq!(evaluate(Some("bytes=-1000"), b, size), partial(0, 999));
            assert_eq!(evaluate(Some("byte=0-499"), b, size), Ok(RangeDecision::Whole));
            assert_eq!(evaluate(None, b, size), Ok(RangeDecision::Whole));
        }
        // Default: anything not entirely inside is ignored.
        for h in ["bytes=0-1000", "bytes=500-2000", "bytes=1000-2000", "bytes=1000-", "bytes=-2000", "bytes=-0"] {
            assert_eq!(evaluate(Some(h), LENIENT, size), Ok(RangeDecision::Whole), "{h}");
        }
        // Standard: end clamped, start out of range is 416.
        assert_eq!(evaluate(Some("bytes=500-2000"), STANDARD, size), partial(500, 999));
        assert_eq!(evaluate(Some("bytes=0-1000"), STANDARD, size), partial(0, 999));
        assert_eq!(evaluate(Some("bytes=-2000"), STANDARD, size), partial(0, 999));
        for h in ["bytes=1000-2000", "bytes=1000-", "bytes=-0"] {
            assert_eq!(code(evaluate(Some(h), STANDARD, size)), (416, "InvalidRange"), "{h}");
        }
    }

    #[test]
    fn several_ranges() {
        assert_eq!(evaluate(Some("bytes=0-499,500-999"), LENIENT, 1000), partial(0, 499));
        assert_eq!(evaluate(Some("bytes=0-499, 500-999"), LENIENT, 1000), partial(0, 499));
        assert_eq!(evaluate(Some("bytes=2000-3000,0-1"), LENIENT, 1000), Ok(RangeDecision::Whole));
        assert_eq!(code(evaluate(Some("bytes=0-499,500-999"), STANDARD, 1000)), (416, "InvalidRange"));
    }

    #[test]
    fn empty_object() {
        assert_eq!(evaluate(Some("bytes=0-"), LENIENT, 0), Ok(RangeDecision::Whole));
        assert_eq!(evaluate(Some("bytes=-1"), LENIENT, 0), Ok(RangeDecision::Whole));
        assert_eq!(code(evaluate(Some("bytes=0-"), STANDARD, 0)), (416, "InvalidRange"));
        assert_eq!(code(evaluate(Some("bytes=-5"), STANDARD, 0)), (416, "InvalidRange"));
    }

    #[test]
    fn syntax_is_lenient_where_the_rfc_is_and_strict_elsewhere() {
        assert_eq!(evaluate(Some(" BYTES = 1-2 "), STANDARD, 10), partial(1, 2));
        assert_eq!(evaluate(Some("bytes=,1-2"), STANDARD, 10), partial(1, 2));
        for h in [
            "bytes=5-3",
            "bytes=-",
            "bytes=",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes= 1 - 2",
            "items=0-1",
            "0-1",
        ] {
            assert_eq!(evaluate(Some(h), STANDARD, 10), Ok(RangeDecision::Whole), "{h}");
        }
    }

    #[test]
    fn huge_numbers_saturate() {
        let h = "bytes=0-99999999999999999999999";
        assert_eq!(evaluate(Some(h), LENIENT, 10), Ok(RangeDecision::Whole));
        assert_eq!(evaluate(Some(h), STANDARD, 10), partial(0, 9));
        assert_eq!(code(evaluate(Some("bytes=99999999999999999999999-"), STANDARD, 10)), (416, "InvalidRange"));
        assert_eq!(evaluate(Some("bytes=-99999999999999999999999"), STANDARD, u64::MAX), partial(0, u64::MAX - 1));
    }

    #[test]
    fn headers() {
        let r = ByteRange { first: 0, last: 499 };
        assert_eq!(r.len(), 500);
        assert_eq!(r.content_range(1000), "bytes 0-499/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
        assert_eq!(RangeBehavior::from_header(Some("Standard")), STANDARD);
        assert_eq!(RangeBehavior::from_header(Some("legacy")), LENIENT);
        assert_eq!(RangeBehavior::from_header(None), LENIENT);
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet = ["bytes", "=", "-", ",", "0", "9", " ", "18446744073709551615", "x", "é"];
        let mut seed: u32 = 1;
        for _ in 0..5000 {
            let mut s = String::new();
            for _ in 0..6 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                s.push_str(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            for size in [0, 1, 10, u64::MAX] {
                for b in [LENIENT, STANDARD] {
                    if let Ok(RangeDecision::Partial(r)) = evaluate(Some(&s), b, size) {
                        assert!(r.first <= r.last && r.last < size, "{s} {size}");
                    }
                }
            }
        }
    }
}
