//! The host side of VPC networking: namespaces, bridges, taps, the uplink to the public
//! namespace, EIP NAT and the host's one route to the EIP pool.
//!
//! Layout (all names carry a prefix unique to the data directory, so two feitians on one host
//! never touch each other's objects):
//!
//! ```text
//!  host (root namespace)                 PREFIX-pub                 PREFIX-vpc-…  (one per VPC)
//!  PREFIXh 169.254.0.1 ──veth── host0 169.254.0.2                 ┌ lo: 100.100.100.200 (metadata)
//!  route POOL via 169.254.0.2     v<hash> 169.254.1.1 ──veth── pub0 169.254.1.2, EIPs/32
//!                                 EIP/32 via 169.254.1.2            br0: vSwitch gateways (.253)
//!                                                                   └ taps t<hash>: one per NIC
//! ```
//!
//! The VPC namespace is the VPC's router: it bridges its NICs, answers as every vSwitch's
//! gateway, filters with the security groups (see [`crate::sg`]), and translates EIPs
//! (DNAT in, SNAT out). VPCs are separate namespaces, so overlapping CIDRs never meet. The
//! public namespace stands for the internet: it routes each EIP to its VPC and the rest back
//! to the host. Only addresses of the pool are routed from the host, and only into it.

use crate::cmd::{ip_in, netns_path, nft_in, run, run_with_input, sysctl_in, NetError};
use crate::sg;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

/// The metadata service's address inside every VPC.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
const HOST_SIDE: &str = "169.254.0.1";
const PUB_SIDE: &str = "169.254.0.2";
const PUB_UPLINK: &str = "169.254.1.1";
const VPC_UPLINK: &str = "169.254.1.2";
const NAT_TABLE: &str = "feitian_nat";

/// What one VPC's namespace should hold: the host's realization of the contract's
/// `VpcPlan` (taps named, security groups compiled to nftables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcNamespace {
    pub vpc_id: String,
    /// Each vSwitch's gateway address with the vSwitch's prefix length.
    pub gateways: Vec<Ipv4Net>,
    /// The NICs (taps) attached to the bridge.
    pub ports: Vec<sg::Port>,
    /// Public address → private address (EIPs and public IPs).
    pub nat: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// The security-group ruleset ([`sg::ruleset`]).
    pub security: String,
}

/// feitian's objects on this host.
pub struct HostNet {
    prefix: String,
    pool: Ipv4Net,
}

fn short_hash(s: &str, hex_len: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))[..hex_len].to_owned()
}

/// The tap name of a NIC: unique per VPC namespace and at most 15 characters.
pub fn tap_name(nic_id: &str) -> String {
    format!("t{}", short_hash(nic_id, 12))
}

impl HostNet {
    /// The objects of the feitian whose data directory is `data_dir`, with EIPs from `pool`.
    pub fn new(data_dir: &Path, pool: Ipv4Net) -> HostNet {
        let key = data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf());
        HostNet { prefix: format!("ft{}", short_hash(&key.to_string_lossy(), 6)), pool }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn public_ns(&self) -> String {
        format!("{}-pub", self.prefix)
    }

    pub fn vpc_ns(&self, vpc_id: &str) -> String {
        format!("{}-{vpc_id}", self.prefix)
    }

    fn host_veth(&self) -> String {
        format!("{}h", self.prefix)
    }

    fn uplink_name(vpc_id: &str) -> String {
        format!("v{}", short_hash(vpc_id, 10))
    }

    fn ns_exists(ns: &str) -> bool {
        netns_path(ns).exists()
    }

    fn add_ns(ns: &str) -> Result<(), NetError> {
        if !Self::ns_exists(ns) {
            run("ip", &["netns", "add", ns])?;
        }
        ip_in(ns, &["link", "set", "lo", "up"])?;
        Ok(())
    }

    fn link_exists(ns: Option<&str>, name: &str) -> bool {
        match ns {
            Some(ns) => ip_in(ns, &["link", "show", "dev", name]).is_ok(),
            None => run("ip", &["link", "show", "dev", name]).is_ok(),
        }
    }

    /// The public namespace, the host's veth into it and the host's route to the pool.
    /// Idempotent. A pool the host already routes elsewhere is refused before anything is
    /// made, so a refused start leaves nothing behind.
    pub fn ensure_public(&self) -> Result<(), NetError> {
        let ns = self.public_ns();
        let host = self.host_veth();
        let pool = self.pool.to_string();
        // Refuse to take over a route another program (or another feitian) put there.
        let existing = run("ip", &["-o", "route", "show", "exact", &pool])?;
        if !existing.trim().is_empty() && !existing.contains(&format!("dev {host} ")) {
            return Err(NetError::setup(format!(
                "the host already routes the EIP pool {pool} elsewhere ({}): give this feitian another eip_pool \
                 in its configuration",
                existing.trim()
            )));
        }
        Self::add_ns(&ns)?;
        sysctl_in(&ns, &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1"])?;
        if !Self::link_exists(None, &host) {
            run("ip", &["link", "add", &host, "type", "veth", "peer", "name", "host0", "netns", &ns])?;
        }
        run("ip", &["addr", "replace", &format!("{HOST_SIDE}/32"), "dev", &host])?;
        run("ip", &["link", "set", &host, "up"])?;
        ip_in(&ns, &["addr", "replace", &format!("{PUB_SIDE}/32"), "dev", "host0"])?;
        ip_in(&ns, &["link", "set", "host0", "up"])?;
        // Only the host is reachable from here: no default route, so nothing a guest sends can
        // leave through the host to an outside network.
        ip_in(&ns, &["route", "replace", &format!("{HOST_SIDE}/32"), "dev", "host0"])?;
        run("ip", &["route", "replace", &pool, "via", PUB_SIDE, "dev", &host, "onlink", "src", HOST_SIDE])?;
        // The host accepts nothing its guests open: they reach the host only through this
        // veth, and every service feitian offers them lives inside their own namespaces.
        run_with_input("nft", &["-f", "-"], Some(&host_guard_ruleset(&self.host_guard_table(), &host)))?;
        Ok(())
    }

    /// The root namespace's nftables table that keeps guests out of the host.
    fn host_guard_table(&self) -> String {
        format!("{}_host_guard", self.prefix)
    }

    /// Brings one VPC's namespace from `before` (what was applied last; `None` when unknown,
    /// e.g. after a restart) to `plan`, touching only the parts that changed.
    pub fn update(&self, before: Option<&VpcNamespace>, plan: &VpcNamespace) -> Result<(), NetError> {
        let Some(old) = before.filter(|_| Self::ns_exists(&self.vpc_ns(&plan.vpc_id))) else {
            return self.apply(plan);
        };
        let ns = self.vpc_ns(&plan.vpc_id);
        if old.security != plan.security {
            nft_in(&ns, &plan.security)?;
        }
        if old.gateways != plan.gateways {
            self.sync_addresses(&ns, "br0", &plan.gateways.iter().map(|g| g.to_string()).collect())?;
        }
        if old.ports != plan.ports {
            self.sync_taps(&ns, &plan.ports)?;
        }
        if old.nat != plan.nat {
            self.sync_uplink(&ns, plan)?;
            nft_in(&ns, &nat_ruleset(&plan.nat))?;
        }
        Ok(())
    }

    /// Brings one VPC's namespace to `plan`. Idempotent; removes what the plan no longer has.
    pub fn apply(&self, plan: &VpcNamespace) -> Result<(), NetError> {
        let ns = self.vpc_ns(&plan.vpc_id);
        let fresh = !Self::ns_exists(&ns);
        Self::add_ns(&ns)?;
        if fresh {
            sysctl_in(
                &ns,
                &[
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.bridge.bridge-nf-call-iptables=1",
                    // Strict reverse-path filtering: a packet from the public side can't claim
                    // an instance's address (the security groups tell NICs apart by address).
                    "net.ipv4.conf.default.rp_filter=1",
                    "net.ipv4.conf.all.rp_filter=1",
                ],
            )?;
        }
        // The security groups go in before any port can carry a packet.
        nft_in(&ns, &plan.security)?;
        if !Self::link_exists(Some(&ns), "br0") {
            ip_in(&ns, &["link", "add", "br0", "type", "bridge"])?;
        }
        ip_in(&ns, &["link", "set", "br0", "up"])?;
        ip_in(&ns, &["addr", "replace", &format!("{METADATA_IP}/32"), "dev", "lo"])?;
        self.sync_addresses(&ns, "br0", &plan.gateways.iter().map(|g| g.to_string()).collect())?;
        self.sync_taps(&ns, &plan.ports)?;
        self.sync_uplink(&ns, plan)?;
        nft_in(&ns, &nat_ruleset(&plan.nat))?;
        Ok(())
    }

    /// Removes a VPC's namespace and its uplink; the instances on it must be gone first (a
    /// process inside would keep the namespace alive).
    pub fn remove_vpc(&self, vpc_id: &str) -> Result<(), NetError> {
        let ns = self.vpc_ns(vpc_id);
        let pubns = self.public_ns();
        if Self::ns_exists(&pubns) {
            let up = Self::uplink_name(vpc_id);
            if Self::link_exists(Some(&pubns), &up) {
                ip_in(&pubns, &["link", "del", &up])?;
            }
        }
        if Self::ns_exists(&ns) {
            run("ip", &["netns", "del", &ns])?;
        }
        Ok(())
    }

    /// The VPCs whose namespaces exist on the host.
    pub fn realized_vpcs(&self) -> Vec<String> {
        let head = format!("{}-", self.prefix);
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(vpc) = name.strip_prefix(&head) {
                    if vpc != "pub" {
                        out.push(vpc.to_owned());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Removes everything of this feitian: every VPC namespace, the public one, the host's
    /// veth and with it the route. Instances must be stopped first.
    pub fn teardown(&self) -> Result<(), NetError> {
        for vpc in self.realized_vpcs() {
            self.remove_vpc(&vpc)?;
        }
        let host = self.host_veth();
        if Self::link_exists(None, &host) {
            run("ip", &["link", "del", &host])?;
        }
        let pubns = self.public_ns();
        if Self::ns_exists(&pubns) {
            run("ip", &["netns", "del", &pubns])?;
        }
        let guard = self.host_guard_table();
        run_with_input("nft", &["-f", "-"], Some(&format!("table inet {guard} {{}}\ndelete table inet {guard}\n")))?;
        Ok(())
    }

    /// What of this feitian is left on the host (for tests and `doctor`): namespaces and
    /// host links carrying the prefix.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.prefix) {
                    out.push(format!("namespace {name}"));
                }
            }
        }
        if Self::link_exists(None, &self.host_veth()) {
            out.push(format!("link {}", self.host_veth()));
        }
        let guard = self.host_guard_table();
        if run("nft", &["list", "table", "inet", &guard]).is_ok() {
            out.push(format!("nftables table inet {guard}"));
        }
        out
    }

    fn sync_addresses(&self, ns: &str, dev: &str, want: &BTreeSet<String>) -> Result<(), NetError> {
        let have = addresses(ns, dev)?;
        for a in want.difference(&have) {
            ip_in(ns, &["addr", "replace", a, "dev", dev])?;
        }
        for a in have.difference(want) {
            ip_in(ns, &["addr", "del", a, "dev", dev])?;
        }
        Ok(())
    }

    fn sync_taps(&self, ns: &str, ports: &[sg::Port]) -> Result<(), NetError> {
        let want: BTreeSet<&str> = ports.iter().map(|p| p.ifname.as_str()).collect();
        for p in ports {
            if !Self::link_exists(Some(ns), &p.ifname) {
                ip_in(ns, &["tuntap", "add", "dev", &p.ifname, "mode", "tap"])?;
            }
            ip_in(ns, &["link", "set", &p.ifname, "master", "br0", "up"])?;
        }
        for name in links(ns)? {
            if is_tap_name(&name) && !want.contains(name.as_str()) {
                ip_in(ns, &["link", "del", &name])?;
            }
        }
        Ok(())
    }

    fn sync_uplink(&self, ns: &str, plan: &VpcNamespace) -> Result<(), NetError> {
        let pubns = self.public_ns();
        let up = Self::uplink_name(&plan.vpc_id);
        if !Self::link_exists(Some(ns), "pub0") {
            if Self::link_exists(Some(&pubns), &up) {
                ip_in(&pubns, &["link", "del", &up])?;
            }
            ip_in(&pubns, &["link", "add", &up, "type", "veth", "peer", "name", "pub0", "netns", ns])?;
        }
        ip_in(&pubns, &["addr", "replace", &format!("{PUB_UPLINK}/32"), "dev", &up])?;
        ip_in(&pubns, &["link", "set", &up, "up"])?;
        ip_in(ns, &["link", "set", "pub0", "up"])?;
        let mut want: BTreeSet<String> = plan.nat.keys().map(|a| format!("{a}/32")).collect();
        want.insert(format!("{VPC_UPLINK}/32"));
        self.sync_addresses(ns, "pub0", &want)?;
        ip_in(ns, &["route", "replace", "default", "via", PUB_UPLINK, "dev", "pub0", "onlink"])?;
        // The public namespace routes each public address of this VPC to it.
        let routed = routes_via(&pubns, &up)?;
        let wanted: BTreeSet<String> = plan.nat.keys().map(|a| a.to_string()).collect();
        for a in wanted.difference(&routed) {
            ip_in(&pubns, &["route", "replace", &format!("{a}/32"), "via", VPC_UPLINK, "dev", &up, "onlink"])?;
        }
        for a in routed.difference(&wanted) {
            ip_in(&pubns, &["route", "del", &format!("{a}/32"), "dev", &up])?;
        }
        Ok(())
    }
}

fn is_tap_name(name: &str) -> bool {
    name.len() == 13 && name.starts_with('t') && name[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn json(out: &str) -> Result<serde_json::Value, NetError> {
    serde_json::from_str(if out.trim().is_empty() { "[]" } else { out })
        .map_err(|e| NetError::setup(format!("cannot read ip's JSON output: {e}")))
}

/// The IPv4 addresses (with prefix) on `dev` in `ns`.
fn addresses(ns: &str, dev: &str) -> Result<BTreeSet<String>, NetError> {
    let v = json(&ip_in(ns, &["-j", "-4", "addr", "show", "dev", dev])?)?;
    let mut out = BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                out.insert(format!("{ip}/{len}"));
            }
        }
    }
    Ok(out)
}

fn links(ns: &str) -> Result<Vec<String>, NetError> {
    let v = json(&ip_in(ns, &["-j", "link", "show"])?)?;
    Ok(v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(str::to_owned)).collect())
}

/// Host routes (`a.b.c.d`, no prefix) through `dev` in `ns`.
fn routes_via(ns: &str, dev: &str) -> Result<BTreeSet<String>, NetError> {
    let v = json(&ip_in(ns, &["-j", "-4", "route", "show", "dev", dev])?)?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["dst"].as_str())
        .filter(|d| d.parse::<Ipv4Addr>().is_ok())
        .map(str::to_owned)
        .collect())
}

/// The host's guard (root namespace, table `table`): nothing arriving from feitian's veth
/// `veth` may open a connection to the host or be forwarded by it; only replies to what the
/// host opened (an SSH session to a guest's EIP) come back. Idempotent: the table is replaced
/// whole.
pub fn host_guard_ruleset(table: &str, veth: &str) -> String {
    format!(
        "table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{\n\
         \x20 chain input {{\n    type filter hook input priority filter - 10; policy accept;\n\
         \x20   iifname \"{veth}\" ct state established,related accept\n\
         \x20   iifname \"{veth}\" drop\n  }}\n\
         \x20 chain forward {{\n    type filter hook forward priority filter - 10; policy accept;\n\
         \x20   iifname \"{veth}\" drop\n  }}\n}}\n"
    )
}

/// The NAT table of a VPC namespace: each public address DNATs to its private one, and the
/// private one leaves as its public one. A packet from a NIC with no public address never
/// leaves the VPC (as on Alibaba Cloud: no EIP, no NAT gateway, no internet).
pub fn nat_ruleset(nat: &BTreeMap<Ipv4Addr, Ipv4Addr>) -> String {
    let mut s = format!("table ip {NAT_TABLE} {{}}\ndelete table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n");
    let dnat: Vec<String> = nat.iter().map(|(p, v)| format!("{p} : {v}")).collect();
    let snat: Vec<String> = nat.iter().map(|(p, v)| format!("{v} : {p}")).collect();
    let privs: Vec<String> = nat.values().map(|v| v.to_string()).collect();
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
    if !dnat.is_empty() {
        s.push_str(&format!("    dnat to ip daddr map {{ {} }}\n", dnat.join(", ")));
    }
    s.push_str("  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    if !snat.is_empty() {
        s.push_str(&format!("    oifname \"pub0\" snat to ip saddr map {{ {} }}\n", snat.join(", ")));
    }
    s.push_str("  }\n  chain forward {\n    type filter hook forward priority filter + 10; policy accept;\n");
    if privs.is_empty() {
        s.push_str("    oifname \"pub0\" drop\n");
    } else {
        s.push_str(&format!("    oifname \"pub0\" ip saddr != {{ {} }} drop\n", privs.join(", ")));
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_and_are_recognised() {
        let t = tap_name("eni-abc");
        assert!(t.len() <= 15);
        assert!(is_tap_name(&t));
        assert!(!is_tap_name("br0"));
        assert!(!is_tap_name("pub0"));
    }

    #[test]
    fn nat_ruleset_maps_both_ways_and_keeps_the_rest_inside() {
        let mut nat = BTreeMap::new();
        nat.insert(Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(192, 168, 1, 10));
        let s = nat_ruleset(&nat);
        assert!(s.contains("198.18.0.5 : 192.168.1.10"));
        assert!(s.contains("192.168.1.10 : 198.18.0.5"));
        assert!(s.contains("ip saddr != { 192.168.1.10 } drop"));
        let empty = nat_ruleset(&BTreeMap::new());
        assert!(!empty.contains("map"));
        assert!(empty.contains("oifname \"pub0\" drop"));
    }

    #[test]
    fn the_host_guard_drops_what_guests_open_and_lets_replies_in() {
        let s = host_guard_ruleset("ftabc_host_guard", "ftabch");
        assert!(s.starts_with("table inet ftabc_host_guard {}\ndelete table inet ftabc_host_guard\n"));
        let established = s.find("iifname \"ftabch\" ct state established,related accept").expect("replies");
        let drop = s.find("iifname \"ftabch\" drop").expect("drop");
        assert!(established < drop, "replies are accepted before the drop");
        assert!(s.contains("hook input") && s.contains("hook forward"));
    }

    #[test]
    fn names_depend_on_the_data_dir() {
        let a = HostNet::new(Path::new("/nonexistent/a"), "198.18.0.0/16".parse().unwrap());
        let b = HostNet::new(Path::new("/nonexistent/b"), "198.18.0.0/16".parse().unwrap());
        assert_ne!(a.prefix(), b.prefix());
        assert!(a.vpc_ns("vpc-x").starts_with(a.prefix()));
        assert!(a.host_veth().len() <= 15);
    }
}
