//! The instance metadata service at 100.100.100.200, one listener inside each VPC namespace.
//!
//! A request is answered about the instance whose private address sent it, and only about
//! that one: the listener lives in the VPC's own namespace, and the bridge's anti-spoofing
//! guard ([`crate::sg`]) lets a NIC send only from its own address, so the source address is
//! proof of who asks. Paths and answers follow Alibaba Cloud's metadata service: plain text,
//! directories list their entries one per line (subdirectories end in `/`), an unknown path
//! is a 404. The hardened mode's token (`PUT /latest/api/token`) is issued and accepted, and
//! not required, as in the service's default "normal" mode.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub use feitian_agent_api::InstanceMetadata;

/// Every instance of one VPC, by private address. The agent replaces it as the store changes.
pub type Directory = Arc<RwLock<HashMap<Ipv4Addr, InstanceMetadata>>>;

fn text(body: impl Into<String>) -> Response {
    ([("content-type", "text/plain")], body.into()).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [("content-type", "text/plain")], "404 - Not Found\n").into_response()
}

/// The answer for `path` (below `/latest/`) about `m`.
fn answer(m: &InstanceMetadata, path: &str) -> Response {
    let path = path.trim_end_matches('/');
    let leaf = |v: &str| if v.is_empty() { not_found() } else { text(v) };
    match path {
        "" => text("meta-data/\nuser-data\n"),
        "user-data" => match &m.user_data {
            Some(u) if !u.is_empty() => ([("content-type", "application/octet-stream")], u.clone()).into_response(),
            _ => not_found(),
        },
        "meta-data" => {
            let mut entries = vec![
                "dns-conf/",
                "hostname",
                "image-id",
                "instance/",
                "instance-id",
                "mac",
                "network-type",
                "network/",
                "owner-account-id",
                "private-ipv4",
                "region-id",
                "serial-number",
                "vpc-cidr-block",
                "vpc-id",
                "vswitch-cidr-block",
                "vswitch-id",
                "zone-id",
            ];
            if !m.eipv4.is_empty() {
                entries.push("eipv4");
            }
            if !m.public_keys.is_empty() {
                entries.push("public-keys/");
            }
            entries.sort_unstable();
            text(entries.join("\n") + "\n")
        }
        "meta-data/instance-id" => leaf(&m.instance_id),
        "meta-data/hostname" => leaf(&m.hostname),
        "meta-data/region-id" => leaf(&m.region_id),
        "meta-data/zone-id" => leaf(&m.zone_id),
        "meta-data/private-ipv4" => leaf(&m.private_ipv4),
        "meta-data/eipv4" => leaf(&m.eipv4),
        "meta-data/mac" => leaf(&m.mac),
        "meta-data/vpc-id" => leaf(&m.vpc_id),
        "meta-data/vswitch-id" => leaf(&m.vswitch_id),
        "meta-data/vpc-cidr-block" => leaf(&m.vpc_cidr_block),
        "meta-data/vswitch-cidr-block" => leaf(&m.vswitch_cidr_block),
        "meta-data/image-id" => leaf(&m.image_id),
        "meta-data/owner-account-id" => leaf(&m.owner_account_id),
        "meta-data/serial-number" => leaf(&m.serial_number),
        "meta-data/network-type" => text("vpc"),
        "meta-data/instance" => text("instance-type\n"),
        "meta-data/instance/instance-type" => leaf(&m.instance_type),
        "meta-data/dns-conf" => text("nameservers\n"),
        "meta-data/dns-conf/nameservers" => not_found(),
        "meta-data/network" => text("interfaces/\n"),
        "meta-data/network/interfaces" => text("macs/\n"),
        "meta-data/network/interfaces/macs" => text(format!("{}/\n", m.mac)),
        "meta-data/public-keys" if !m.public_keys.is_empty() => {
            text((0..m.public_keys.len()).map(|i| format!("{i}/\n")).collect::<String>())
        }
        _ => {
            if let Some(rest) = path.strip_prefix("meta-data/network/interfaces/macs/") {
                return interface(m, rest);
            }
            if let Some(rest) = path.strip_prefix("meta-data/public-keys/") {
                let (index, tail) = rest.split_once('/').unwrap_or((rest, ""));
                if let Some(key) = index.parse::<usize>().ok().and_then(|i| m.public_keys.get(i)) {
                    return match tail {
                        "" => text("openssh-key\n"),
                        "openssh-key" => text(format!("{}\n", key.trim_end())),
                        _ => not_found(),
                    };
                }
            }
            not_found()
        }
    }
}

fn interface(m: &InstanceMetadata, rest: &str) -> Response {
    let (mac, field) = rest.split_once('/').unwrap_or((rest, ""));
    if !mac.eq_ignore_ascii_case(&m.mac) {
        return not_found();
    }
    match field {
        "" => text("gateway\nnetmask\nprimary-ip-address\nvpc-cidr-block\nvpc-id\nvswitch-cidr-block\nvswitch-id\n"),
        "gateway" => leaf_or_404(&m.gateway),
        "primary-ip-address" => leaf_or_404(&m.private_ipv4),
        "vpc-id" => leaf_or_404(&m.vpc_id),
        "vswitch-id" => leaf_or_404(&m.vswitch_id),
        "vpc-cidr-block" => leaf_or_404(&m.vpc_cidr_block),
        "vswitch-cidr-block" => leaf_or_404(&m.vswitch_cidr_block),
        "netmask" => match m.vswitch_cidr_block.parse::<ipnet::Ipv4Net>() {
            Ok(n) => text(n.netmask().to_string()),
            Err(_) => not_found(),
        },
        _ => not_found(),
    }
}

fn leaf_or_404(v: &str) -> Response {
    if v.is_empty() {
        not_found()
    } else {
        text(v)
    }
}

async fn handle(
    State(dir): State<Directory>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ip = match peer.ip() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(_) => return StatusCode::FORBIDDEN.into_response(),
    };
    let Some(me) = dir.read().get(&ip).cloned() else {
        // Not an instance of this VPC (or not yet known): nothing to tell.
        return (StatusCode::FORBIDDEN, "403 - Forbidden\n").into_response();
    };
    let path = uri.path();
    if method == Method::PUT && path.trim_end_matches('/') == "/latest/api/token" {
        let ttl = headers
            .get("x-aliyun-ecs-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        return match ttl {
            Some(1..=21600) => text(uuid::Uuid::new_v4().simple().to_string()),
            _ => (
                StatusCode::BAD_REQUEST,
                "400 - Bad Request: X-aliyun-ecs-metadata-token-ttl-seconds must be 1-21600\n",
            )
                .into_response(),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    match path.strip_prefix("/latest/").or_else(|| (path == "/latest").then_some("")) {
        Some(rest) => answer(&me, rest),
        None if path == "/" => text("latest\n"),
        None => not_found(),
    }
}

/// Binds the metadata address inside namespace `ns` (it must already hold 100.100.100.200).
pub fn bind_in(ns: &str) -> Result<std::net::TcpListener, crate::cmd::NetError> {
    crate::cmd::in_netns(ns, || {
        let l = std::net::TcpListener::bind((crate::host::METADATA_IP, 80))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// Serves `listener` until the task is dropped or aborted.
pub async fn serve(listener: std::net::TcpListener, dir: Directory) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().fallback(handle).with_state(dir);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    fn me() -> InstanceMetadata {
        InstanceMetadata {
            instance_id: "i-1".into(),
            hostname: "web".into(),
            mac: "00:16:3e:00:00:01".into(),
            vswitch_cidr_block: "192.168.1.0/24".into(),
            public_keys: vec!["ssh-ed25519 AAAA k".into()],
            user_data: Some(b"#!/bin/sh\n".to_vec()),
            ..Default::default()
        }
    }

    async fn body(r: Response) -> (StatusCode, String) {
        let s = r.status();
        (s, String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn answers_about_itself() {
        let m = me();
        assert_eq!(body(answer(&m, "meta-data/instance-id")).await, (StatusCode::OK, "i-1".into()));
        assert_eq!(body(answer(&m, "meta-data/hostname/")).await.1, "web");
        assert_eq!(body(answer(&m, "meta-data/public-keys/0/openssh-key")).await.1, "ssh-ed25519 AAAA k\n");
        assert_eq!(body(answer(&m, "meta-data/public-keys/")).await.1, "0/\n");
        assert_eq!(body(answer(&m, "user-data")).await.1, "#!/bin/sh\n");
        assert_eq!(
            body(answer(&m, "meta-data/network/interfaces/macs/00:16:3e:00:00:01/netmask")).await.1,
            "255.255.255.0"
        );
        assert_eq!(answer(&m, "meta-data/eipv4").status(), StatusCode::NOT_FOUND);
        assert_eq!(answer(&m, "meta-data/public-keys/1/openssh-key").status(), StatusCode::NOT_FOUND);
        assert_eq!(answer(&m, "meta-data/nothing").status(), StatusCode::NOT_FOUND);
        let listing = body(answer(&m, "meta-data")).await.1;
        assert!(listing.contains("instance-id\n") && listing.contains("public-keys/\n"));
        assert!(!listing.contains("eipv4"));
        let none = InstanceMetadata { user_data: None, ..m };
        assert_eq!(answer(&none, "user-data").status(), StatusCode::NOT_FOUND);
    }
}
