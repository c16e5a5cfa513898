//! `feitian security-group evaluate`: asks the pure evaluator whether connections are
//! allowed in a VPC as the store describes it now, the same world the data plane is compiled
//! from. It needs no root and touches nothing but the store (read only).
//!
//! Input, one JSON object per line on stdin:
//! `{"vpc": "vpc-…", "src": "i-…" | "a.b.c.d", "dst": "i-…" | "a.b.c.d",
//!   "protocol": "tcp" | "udp" | "icmp" | "gre", "src_port": 22, "dst_port": 80}`
//! (ports optional). An instance stands for its primary interface; an address that is an
//! instance's in that VPC is that instance; any other address is outside every group.
//! Output, one line each: `{"allowed": true, "egress": "…", "ingress": "…"}` (a side is
//! `null` when that end is outside), or `{"error": "…"}`.

use crate::accounts::open_store;
use feitian_meta::network_interface;
use feitian_meta::MetaError;
use feitian_secgroup::{connection, Endpoint, Packet, Protocol, World};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Deserialize)]
struct Case {
    vpc: String,
    src: String,
    dst: String,
    protocol: String,
    src_port: Option<u16>,
    dst_port: Option<u16>,
}

fn endpoint(tx: &feitian_meta::Transaction<'_>, world: &World, who: &str) -> Result<(Endpoint, Ipv4Addr), String> {
    if let Ok(ip) = who.parse::<Ipv4Addr>() {
        return Ok(match world.nics_with_ip(ip).next() {
            Some(n) => (Endpoint::nic(&n.id), ip),
            None => (Endpoint::Outside(ip), ip),
        });
    }
    let eni = network_interface::enis_of_instance(tx, who)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{who} is neither an address nor an instance with a network interface"))?;
    let nic = world.nics.get(&eni.id).ok_or_else(|| format!("{who} is not in this VPC"))?;
    Ok((Endpoint::nic(&nic.id), nic.ip))
}

fn evaluate(store: &feitian_meta::Store, line: &str) -> serde_json::Value {
    let case: Case = match serde_json::from_str(line) {
        Ok(c) => c,
        Err(e) => return serde_json::json!({"error": format!("not a case: {e}")}),
    };
    let answer = store.read(|tx| {
        let world = feitian_planner::network::world(tx, &case.vpc)?;
        let out = (|| {
            let protocol =
                Protocol::parse(&case.protocol).ok_or_else(|| format!("unknown protocol {}", case.protocol))?;
            let (src, src_ip) = endpoint(tx, &world, &case.src)?;
            let (dst, dst_ip) = endpoint(tx, &world, &case.dst)?;
            let packet = Packet { protocol, src_ip, dst_ip, src_port: case.src_port, dst_port: case.dst_port };
            let v = connection(&world, &src, &dst, &packet).map_err(|e| e.to_string())?;
            Ok::<_, String>(serde_json::json!({
                "allowed": v.allowed(),
                "egress": v.egress.map(|d| format!("{} ({:?})", if d.allowed { "allow" } else { "deny" }, d.reason)),
                "ingress": v.ingress.map(|d| format!("{} ({:?})", if d.allowed { "allow" } else { "deny" }, d.reason)),
            }))
        })();
        Ok::<_, MetaError>(out.unwrap_or_else(|e| serde_json::json!({"error": e})))
    });
    answer.unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}

pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", evaluate(&store, &line))?;
        out.flush()?;
    }
    Ok(())
}
