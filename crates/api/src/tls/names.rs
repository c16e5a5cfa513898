//! Which certificate a TLS client gets, and which tunnels the edge opens: pure decisions on
//! names, with no sockets or keys.
//!
//! The edge mints certificates on demand, so the names it accepts bound what a client can
//! make it mint: only syntactically valid DNS names under `aliyuncs.com` get a certificate
//! of their own; `localhost`, an IP address or no name at all get the edge's own one; every
//! other name is refused (the handshake fails). A `CONNECT` is answered only for a cloud host
//! name on port 443, and not for the Location service's: feitian does not serve it, and SDKs
//! (Packer's among them) fall back to their built-in endpoints at once when its tunnel is
//! refused, where an answered one would cost them a failed handshake or a wrong answer.

use thiserror::Error;

/// The longest DNS name accepted (RFC 1035), without a trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// The longest DNS label accepted.
pub const MAX_LABEL_LEN: usize = 63;
/// The cloud's domain: every product and bucket host name ends with it.
pub const CLOUD_DOMAIN: &str = ".aliyuncs.com";

/// Cloud hosts whose tunnels stay refused: the Location service's (endpoint discovery).
const NOT_TUNNELLED: [&str; 2] = ["location.aliyuncs.com", "location-readonly.aliyuncs.com"];

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the first byte of a connection says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tls,
    /// Plain HTTP (a request line starts with a method's letter); anything else is left to
    /// the HTTP parser to refuse.
    Http,
}

/// Sniffs a connection from its first byte. No plain HTTP request starts with 0x16, and every
/// TLS connection does (its ClientHello is a handshake record).
pub fn sniff(first: u8) -> Protocol {
    if first == TLS_HANDSHAKE_RECORD {
        Protocol::Tls
    } else {
        Protocol::Http
    }
}

/// The certificate a handshake is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// The edge's own: `localhost` and the listen address (no SNI, or an IP).
    Own,
    /// One for this cloud host name (lower case, no trailing dot).
    Cloud(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("not a valid DNS name")]
    Malformed,
    #[error("feitian serves only *.aliyuncs.com and localhost over TLS")]
    Foreign,
}

/// The certificate for a ClientHello's server name (SNI), or why there is none.
pub fn leaf_for(sni: Option<&str>) -> Result<Leaf, NameError> {
    let Some(sni) = sni else { return Ok(Leaf::Own) };
    if sni.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Leaf::Own);
    }
    let name = normalize(sni)?;
    if name == "localhost" {
        return Ok(Leaf::Own);
    }
    if is_cloud_name(&name) {
        Ok(Leaf::Cloud(name))
    } else {
        Err(NameError::Foreign)
    }
}

/// Whether a (normalized) name is a host under the cloud's domain.
fn is_cloud_name(name: &str) -> bool {
    name.strip_suffix(CLOUD_DOMAIN).is_some_and(|head| !head.is_empty())
}

/// A DNS name checked and lower-cased: letters, digits and inner hyphens in labels of
/// 1..=63 characters, 253 characters at most.
fn normalize(name: &str) -> Result<String, NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Malformed);
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(NameError::Malformed);
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// The cloud host a `CONNECT` authority (`host:443`) names, when the edge answers that tunnel
/// itself; `None` for every other target (refused, as no tunnel is ever forwarded).
pub fn tunnel_host(authority: &str) -> Option<String> {
    let (host, port) = authority.rsplit_once(':')?;
    if port != "443" {
        return None;
    }
    match leaf_for(Some(host)) {
        Ok(Leaf::Cloud(name)) if !NOT_TUNNELLED.contains(&name.as_str()) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_record_is_tls_and_a_method_is_http() {
        assert_eq!(sniff(0x16), Protocol::Tls);
        for first in [b'G', b'P', b'C', b'D', b'H', b'O', 0x00, 0x80, 0x15, 0x17] {
            assert_eq!(sniff(first), Protocol::Http, "{first:#x}");
        }
    }

    #[test]
    fn cloud_names_get_their_own_certificate() {
        for name in [
            "ecs-cn-hangzhou.aliyuncs.com",
            "ecs.cn-hangzhou.aliyuncs.com",
            "my-bucket.oss-cn-hangzhou.aliyuncs.com",
            "VPC.Aliyuncs.com.",
        ] {
            assert_eq!(leaf_for(Some(name)), Ok(Leaf::Cloud(name.trim_end_matches('.').to_ascii_lowercase())));
        }
    }

    #[test]
    fn no_name_an_address_or_localhost_get_the_edges_own() {
        for sni in [None, Some("127.0.0.1"), Some("::1"), Some("localhost"), Some("LocalHost.")] {
            assert_eq!(leaf_for(sni), Ok(Leaf::Own), "{sni:?}");
        }
    }

    #[test]
    fn other_names_are_refused() {
        for name in ["www.example.com", "aliyuncs.com", ".aliyuncs.com", "aliyuncs.com.evil.net", "evilaliyuncs.com"] {
            assert!(leaf_for(Some(name)).is_err(), "{name}");
        }
        assert_eq!(leaf_for(Some("www.example.com")), Err(NameError::Foreign));
    }

    #[test]
    fn malformed_names_are_refused_before_anything_is_minted() {
        let long_label = format!("{}.aliyuncs.com", "a".repeat(64));
        let long_name = format!("{}aliyuncs.com", "abcdefghi.".repeat(25));
        assert!(long_name.len() > MAX_NAME_LEN);
        for name in [
            long_label.as_str(),
            long_name.as_str(),
            "a_b.aliyuncs.com",
            "a..aliyuncs.com",
            "-a.aliyuncs.com",
            "a-.aliyuncs.com",
            "a b.aliyuncs.com",
            "é.aliyuncs.com",
            "*.aliyuncs.com",
            "",
        ] {
            assert_eq!(leaf_for(Some(name)), Err(NameError::Malformed), "{name}");
        }
        let longest_label = format!("{}.aliyuncs.com", "a".repeat(63));
        assert!(leaf_for(Some(&longest_label)).is_ok());
    }

    #[test]
    fn tunnels_are_opened_for_cloud_hosts_on_443_only() {
        assert_eq!(tunnel_host("ecs-cn-hangzhou.aliyuncs.com:443").as_deref(), Some("ecs-cn-hangzhou.aliyuncs.com"));
        assert_eq!(tunnel_host("Vpc.Aliyuncs.com:443").as_deref(), Some("vpc.aliyuncs.com"));
        for authority in [
            "location-readonly.aliyuncs.com:443",
            "Location.aliyuncs.com:443",
            "example.com:443",
            "ecs.aliyuncs.com:80",
            "ecs.aliyuncs.com",
            "localhost:443",
            "127.0.0.1:443",
            "[::1]:443",
        ] {
            assert_eq!(tunnel_host(authority), None, "{authority}");
        }
    }
}
