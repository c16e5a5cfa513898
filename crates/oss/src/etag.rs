//! ETags, and the `Content-MD5` check.
//!
//! - **Simple upload** (PutObject, and a copy of one): `"` + the MD5 of the content in
//!   **uppercase** hex + `"`, e.g. `"5EB63BBBE01EEED093CB22BB8F5ACDC3"`. OSS writes uppercase
//!   (every ETag in its documentation does); `oss2` strips the quotes and compares nothing
//!   else, but people compare against `hashlib.md5().hexdigest().upper()`.
//! - **Multipart** (CompleteMultipartUpload): `"` + uppercase hex MD5 of the concatenated
//!   binary MD5s of the parts, in part order, + `-` + the number of parts + `"`. OSS only says
//!   the value "is calculated by a specific rule"; this is the rule S3 uses and the one tools
//!   that verify multipart ETags expect. It is computable from the parts' stored ETags alone.
//! - **Appendable** (AppendObject): OSS says only that it is *not* the MD5 of the content. It
//!   must change with every append without rereading the object, so feitian derives it from the
//!   object's CRC-64, which is kept up to date anyway: `"` + 16 uppercase hex digits + `"`.
//!   Being 16 digits, not 32, it cannot be mistaken for an MD5.
//!
//! A `Content-MD5` header (base64 of the binary MD5) that does not decode to 16 bytes, or does
//! not match the body, is `InvalidDigest` (OSS uses the one code for both).

use base64::Engine;
use md5::{Digest, Md5};

use crate::errors::OssError;

/// An MD5 digest.
pub type Md5Digest = [u8; 16];

/// The MD5 of `data`.
pub fn md5(data: &[u8]) -> Md5Digest {
    Md5::digest(data).into()
}

/// `"HEX"` for a simple object whose content has this MD5.
pub fn simple(md5: &Md5Digest) -> String {
    format!("\"{}\"", upper_hex(md5))
}

/// `"HEX-N"` for a multipart object made of parts with these MD5s, in part-number order.
pub fn multipart(part_md5s: &[Md5Digest]) -> String {
    let mut h = Md5::new();
    for d in part_md5s {
        h.update(d);
    }
    let digest: Md5Digest = h.finalize().into();
    format!("\"{}-{}\"", upper_hex(&digest), part_md5s.len())
}

/// `"HEX16"` for an appendable object whose CRC-64 is `crc64`.
pub fn appendable(crc64: u64) -> String {
    format!("\"{crc64:016X}\"")
}

/// The ETag without its quotes (and without a `W/` prefix), as `oss2` reports it.
pub fn unquote(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(e)
}

/// Reads back the MD5 from a simple or part ETag (`"HEX"`, quotes optional, any case);
/// `None` for anything else (a multipart or appendable ETag, garbage).
pub fn md5_of(etag: &str) -> Option<Md5Digest> {
    let hex = unquote(etag).as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Whether two ETags name the same content: quotes ignored, hex case ignored. Used to match
/// the part ETags a client lists in CompleteMultipartUpload against the stored ones.
pub fn same(a: &str, b: &str) -> bool {
    unquote(a).eq_ignore_ascii_case(unquote(b))
}

/// Checks a `Content-MD5` header against the MD5 of the body received.
pub fn verify_content_md5(header: &str, body_md5: &Md5Digest) -> Result<(), OssError> {
    check_content_md5(&parse_content_md5(header)?, body_md5)
}

/// Reads a `Content-MD5` header (base64 of 16 bytes), so that a malformed one is refused
/// before the body is read.
pub fn parse_content_md5(header: &str) -> Result<Md5Digest, OssError> {
    let invalid = || OssError::invalid_digest("The Content-MD5 you specified was invalid.");
    let claimed = base64::engine::general_purpose::STANDARD.decode(header.trim()).map_err(|_| invalid())?;
    claimed.try_into().map_err(|_| invalid())
}

/// Checks a parsed `Content-MD5` against the MD5 of the body received.
pub fn check_content_md5(claimed: &Md5Digest, body_md5: &Md5Digest) -> Result<(), OssError> {
    if claimed != body_md5 {
        return Err(OssError::invalid_digest("The Content-MD5 you specified did not match what we received."));
    }
    Ok(())
}

/// The `Content-MD5` header value for a digest (base64), as answers carry it.
pub fn content_md5(md5: &Md5Digest) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

fn upper_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_etag_is_quoted_uppercase_md5() {
        // python -c "import hashlib; print(hashlib.md5(b'hello world').hexdigest().upper())"
        assert_eq!(simple(&md5(b"hello world")), "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"");
        assert_eq!(simple(&md5(b"")), "\"D41D8CD98F00B204E9800998ECF8427E\"");
    }

    #[test]
    fn multipart_etag() {
        // python -c "import hashlib; d=b''.join(hashlib.md5(p).digest() for p in [b'a'*5, b'b'*3]);
        //   print(hashlib.md5(d).hexdigest().upper() + '-2')"
        let parts = [md5(b"aaaaa"), md5(b"bbb")];
        assert_eq!(multipart(&parts), "\"72D27AFAC8E2FBD3662861B9D607A02C-2\"");
        // Same thing from the parts' ETags as stored.
        let from_etags: Vec<Md5Digest> = ["\"594F803B380A41396ED63DCA39503542\"", "08F8E0260C64418510CEFB2B06EEE5CD"]
            .iter()
            .map(|e| md5_of(e).unwrap())
            .collect();
        assert_eq!(from_etags, parts);
        assert_eq!(multipart(&from_etags), multipart(&parts));
    }

    #[test]
    fn appendable_etag_is_not_md5_shaped() {
        assert_eq!(appendable(0x995D_C9BB_DF19_39FA), "\"995DC9BBDF1939FA\"");
        assert_eq!(appendable(1), "\"0000000000000001\"");
        assert_eq!(md5_of(&appendable(7)), None);
    }

    #[test]
    fn parsing_and_comparing() {
        assert_eq!(unquote("\"ABC\""), "ABC");
        assert_eq!(unquote("W/\"ABC\""), "ABC");
        assert_eq!(unquote(" ABC "), "ABC");
        assert_eq!(unquote("\""), "\"");
        assert!(same("\"abc\"", "ABC"));
        assert!(!same("\"ABD\"", "ABC"));
        for bad in
            ["", "\"\"", "XYZ", "\"72D27AFAC8E2FBD3662861B9D607A02C-2\"", &"G".repeat(32), "é".repeat(16).as_str()]
        {
            assert_eq!(md5_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_md5() {
        let body = md5(b"hello world");
        // python -c "import oss2.utils as u; print(u.content_md5(b'hello world'))"
        assert_eq!(verify_content_md5("XrY7u+Ae7tCTyyK7j1rNww==", &body), Ok(()));
        // The MD5 of the empty body: well-formed, but not this body's.
        let e = verify_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==", &body).unwrap_err();
        assert_eq!((e.status, e.code), (400, "InvalidDigest"));
        assert!(e.message.contains("did not match"));
        for bad in ["", "not base64!", "AAAA", "XrY7u+Ae7tCTyyK7j1rNww"] {
            assert_eq!(verify_content_md5(bad, &body).unwrap_err().code, "InvalidDigest", "{bad}");
            assert_eq!(parse_content_md5(bad).unwrap_err().code, "InvalidDigest", "{bad}");
        }
        assert_eq!(parse_content_md5("XrY7u+Ae7tCTyyK7j1rNww=="), Ok(body));
        assert_eq!(super::content_md5(&body), "XrY7u+Ae7tCTyyK7j1rNww==");
    }
}
