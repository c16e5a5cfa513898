//! Security groups compiled to nftables: the data-plane twin of the evaluator in
//! `feitian-secgroup` (`eval.rs`). Pure: this module builds a script and does no I/O; the
//! caller feeds it to `nft -f -` inside the VPC's namespace.
//!
//! # Where packets meet the rules
//! A VPC is one namespace holding a Linux bridge; every NIC is a port (a tap) of it. Two
//! tables enforce the groups:
//!
//! - `table bridge feitian_guard` (anti-spoofing), at the bridge's `prerouting` hook, so
//!   before br_netfilter hands the frame to the IP hooks: a frame entering from a port must
//!   carry the port's MAC, and be ARP naming the port's MAC and address, or IPv4 from the
//!   port's address. Anything else from a port (other addresses, IPv6, VLAN tags) is dropped.
//!   Frames from interfaces that are not ports are not guarded.
//! - `table inet feitian_sg` (the groups), at the `forward` hook. Bridged NIC-to-NIC IPv4
//!   reaches it through br_netfilter (`net.bridge.bridge-nf-call-iptables=1`), routed traffic
//!   to and from outside the VPC reaches it directly. Stateful filtering has to live here:
//!   conntrack does not run in the bridge family without `nf_conntrack_bridge`.
//!
//! Because the guard pins each port to its address, the filter can tell ports apart by
//! address alone: a packet whose source is a port's address is that port's egress, a packet
//! whose destination is a port's address is that port's ingress.
//!
//! # The shape of the filter
//! ```text
//! chain forward:   established/related accept, invalid drop, IPv6 drop,
//!                  ip saddr vmap { port ip : jump eg_<nic> }   egress of the source port
//!                  ip daddr vmap { port ip : goto in_<nic> }   ingress of the destination port
//!                  (policy accept: a destination outside the VPC has no ingress to pass)
//! chain eg_<nic>:  the NIC's egress rules in evaluation order; drop → drop,
//!                  accept → return (on to the destination's ingress); no match → return
//! chain in_<nic>:  the NIC's ingress rules in evaluation order; then intra-group access
//!                  (`ip saddr @grp_<group> accept` per shared Accept group); then drop
//! set grp_<group>: the addresses of a group's members, for group peers and intra-group
//! ```
//!
//! Evaluation order is the evaluator's: the union of the NIC's groups' rules in one
//! direction, priority ascending, drop before accept at equal priority, authorization order
//! otherwise; first match decides. A rule that can never match (a group peer naming a
//! missing group or the wrong owner, member-side narrowing that excludes this NIC, real
//! ports on a protocol without ports) is left out and a `#` comment says so: leaving out a
//! rule that matches nothing can't change which rule matches first.
//!
//! Where the world doesn't let the NIC be evaluated (the evaluator would return an error:
//! unknown NIC or group) or the port is inconsistent (address differs from the NIC's, an
//! address or interface shared by two ports, a malformed MAC or interface name), the port
//! fails closed: all forwarded traffic from and to its address is dropped. (An interface
//! whose name can't even be written in the script can't be guarded either; feitian's tap
//! names never are such.)

use feitian_secgroup::{Direction, Group, Nic, Peer, Policy, Protocol, Rule, World};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The inet table holding the security groups.
pub const TABLE_FILTER: &str = "feitian_sg";
/// The bridge table holding the anti-spoofing guard.
pub const TABLE_GUARD: &str = "feitian_guard";

/// One interface attached to a VPC's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The NIC's id in the [`World`]: its groups filter this port's traffic.
    pub nic_id: String,
    /// The NIC's primary private address; must equal the [`Nic`]'s.
    pub ip: Ipv4Addr,
    /// `00:16:3e:xx:xx:xx`.
    pub mac: String,
    /// The port's interface in the VPC's namespace (the tap).
    pub ifname: String,
}

impl Port {
    pub fn new<A: Into<Ipv4Addr>>(nic_id: &str, ip: A, mac: &str, ifname: &str) -> Port {
        Port { nic_id: nic_id.into(), ip: ip.into(), mac: mac.into(), ifname: ifname.into() }
    }
}

/// The nftables script, for `nft -f -` inside the VPC's namespace, that atomically replaces
/// feitian's tables there with ones enforcing `world`'s groups for `ports`.
///
/// Each table is first created (a no-op if it exists), then deleted, then defined: one
/// transaction that works whether or not the tables are there, so the script is idempotent
/// and traffic never sees a half-loaded ruleset.
pub fn ruleset(world: &World, ports: &[Port]) -> String {
    let plans = plan(world, ports);
    let mut sets = MemberSets::default();
    let chains: Vec<Option<PortChains>> =
        plans.iter().map(|p| p.refused.is_none().then(|| port_chains(world, p, &mut sets))).collect();

    let mut s = Script::default();
    s.line(0, "# feitian security groups. Generated; the whole ruleset is replaced on every change.");
    filter_table(&mut s, world, &plans, &chains, &sets);
    s.blank();
    guard_table(&mut s, &plans);
    s.0
}

/// The script that removes feitian's tables (for teardown), tolerant of their absence.
pub fn teardown() -> String {
    let mut s = Script::default();
    for (family, table) in [("inet", TABLE_FILTER), ("bridge", TABLE_GUARD)] {
        s.line(0, &format!("table {family} {table} {{}}"));
        s.line(0, &format!("delete table {family} {table}"));
    }
    s.0
}

// --- planning: names and consistency ----------------------------------------------------

/// One port, checked, with the names of its chains.
struct PortPlan<'a> {
    port: &'a Port,
    /// The sanitized, unique suffix of its chain names.
    name: String,
    /// The MAC in canonical form, or `None` if malformed.
    mac: Option<String>,
    /// Whether `ifname` can be written in the script (else the guard can't see the port).
    ifname_ok: bool,
    /// The NIC, when the port is consistent with the world.
    nic: Option<&'a Nic>,
    /// Why the port fails closed, if it does.
    refused: Option<String>,
}

fn plan<'a>(world: &'a World, ports: &'a [Port]) -> Vec<PortPlan<'a>> {
    let mut by_ip: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut by_ifname: BTreeMap<&str, usize> = BTreeMap::new();
    for p in ports {
        *by_ip.entry(p.ip).or_default() += 1;
        *by_ifname.entry(p.ifname.as_str()).or_default() += 1;
    }
    let mut taken = BTreeSet::new();
    ports
        .iter()
        .map(|port| {
            let name = unique_name(&port.nic_id, &mut taken);
            let mac = canonical_mac(&port.mac);
            let ifname_ok = valid_ifname(&port.ifname);
            let nic = world.nics.get(&port.nic_id);
            let refused = if by_ip.get(&port.ip).copied().unwrap_or(0) > 1 {
                Some(format!("address {} is on more than one port", port.ip))
            } else if by_ifname.get(port.ifname.as_str()).copied().unwrap_or(0) > 1 {
                Some(format!("interface {:?} is given to more than one port", port.ifname))
            } else if !ifname_ok {
                Some(format!("interface name {:?} is not a valid interface name", port.ifname))
            } else if mac.is_none() {
                Some(format!("MAC {:?} is malformed", port.mac))
            } else {
                match nic {
                    None => Some(format!("no network interface {} in the world", port.nic_id)),
                    Some(n) if n.ip != port.ip => Some(format!("the port's address is not the NIC's ({})", n.ip)),
                    Some(n) => n
                        .groups
                        .iter()
                        .find(|g| !world.groups.contains_key(*g))
                        .map(|g| format!("the NIC is in group {g}, which does not exist")),
                }
            };
            PortPlan { port, name, mac, ifname_ok, nic: nic.filter(|_| refused.is_none()), refused }
        })
        .collect()
}

/// `[A-Za-z0-9_]` of `id` (other characters become `_`), at most 48 of them, and a numeric
/// suffix when two ids sanitize alike.
fn unique_name(id: &str, taken: &mut BTreeSet<String>) -> String {
    let base = sanitize(id);
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

fn sanitize(id: &str) -> String {
    let s: String = id.chars().take(48).map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "_".to_string()
    } else {
        s
    }
}

/// Six hex octets separated by `:`, lowercased; `None` otherwise.
fn canonical_mac(mac: &str) -> Option<String> {
    let octets: Vec<&str> = mac.split(':').collect();
    let ok = octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| mac.to_ascii_lowercase())
}

/// What Linux accepts and nft can quote: 1–15 bytes, no `/`, `:`, quotes, whitespace or
/// control characters.
fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b'"' | b'\\' | b'\''))
}

// --- the groups' member sets --------------------------------------------------------------

/// The groups whose member sets the rules reference, and the sets' names.
#[derive(Default)]
struct MemberSets {
    names: BTreeMap<String, String>,
    taken: BTreeSet<String>,
}

impl MemberSets {
    /// `@grp_<group>`, declaring the set if it's the first reference.
    fn reference(&mut self, group_id: &str) -> String {
        if let Some(n) = self.names.get(group_id) {
            return format!("@{n}");
        }
        let name = unique_name(&format!("grp_{group_id}"), &mut self.taken);
        self.names.insert(group_id.to_string(), name.clone());
        format!("@{name}")
    }
}

/// The addresses of `group_id`'s members, read from the world as it is now: a NIC that
/// joins later is in the next ruleset.
fn members(world: &World, group_id: &str) -> BTreeSet<Ipv4Addr> {
    world.nics.values().filter(|n| n.groups.iter().any(|g| g == group_id)).map(|n| n.ip).collect()
}

// --- per-port chains --------------------------------------------------------------------

/// The bodies of one port's chains, one nft statement (or `#` comment) per line.
struct PortChains {
    egress: Vec<String>,
    ingress: Vec<String>,
}

fn port_chains(world: &World, plan: &PortPlan, sets: &mut MemberSets) -> PortChains {
    let groups = plan.nic.map(|n| member_groups(world, n)).unwrap_or_default();
    let ip = plan.port.ip;
    let mut egress = compile_direction(world, &groups, Direction::Egress, ip, sets);
    if egress.is_empty() {
        egress.push("# no egress rules: default allow".to_string());
    }
    let mut ingress = compile_direction(world, &groups, Direction::Ingress, ip, sets);
    // Intra-group access: lowest priority of all, after every rule.
    for g in groups.iter().filter(|g| g.inner_policy == Policy::Accept) {
        let set = sets.reference(&g.id);
        ingress.push(format!("ip saddr {set} accept comment {}", comment(&format!("intra-group {}", g.id))));
    }
    ingress.push(format!("drop comment {}", comment("default deny ingress")));
    PortChains { egress, ingress }
}

/// The NIC's groups, each once, in its own order (as the evaluator takes them). Only called
/// for NICs whose groups all exist.
fn member_groups<'w>(world: &'w World, nic: &Nic) -> Vec<&'w Group> {
    let mut out: Vec<&Group> = Vec::with_capacity(nic.groups.len());
    for g in nic.groups.iter().filter_map(|id| world.groups.get(id)) {
        if !out.iter().any(|seen| seen.id == g.id) {
            out.push(g);
        }
    }
    out
}

/// One direction's rules of `groups`, in evaluation order, as chain lines.
fn compile_direction(
    world: &World,
    groups: &[&Group],
    direction: Direction,
    local_ip: Ipv4Addr,
    sets: &mut MemberSets,
) -> Vec<String> {
    let mut rules: Vec<(&Group, usize, &Rule)> = groups
        .iter()
        .flat_map(|g| g.rules.iter().enumerate().map(move |(i, r)| (*g, i, r)))
        .filter(|(_, _, r)| r.direction == direction)
        .collect();
    // Stable, like the evaluator's: equal keys keep group order, then authorization order.
    rules.sort_by_key(|(_, _, r)| (r.priority, policy_rank(r.policy)));
    rules
        .into_iter()
        .map(|(g, index, rule)| {
            let label = format!("{} rule {index}: priority {} {}", g.id, rule.priority, rule.policy.as_api());
            match rule_match(world, g, rule, local_ip, sets) {
                Ok(m) => {
                    let verdict = match (direction, rule.policy) {
                        (_, Policy::Drop) => "drop",
                        (Direction::Ingress, Policy::Accept) => "accept",
                        // Egress accepted: on to the destination's ingress checks.
                        (Direction::Egress, Policy::Accept) => "return",
                    };
                    let m = if m.is_empty() { String::new() } else { format!("{m} ") };
                    format!("{m}{verdict} comment {}", comment(&label))
                }
                // Ids reach `why`: one line, or they could end the comment.
                Err(why) => one_line(&format!("# skipped {label}: {why}")),
            }
        })
        .collect()
}

/// Drop sorts before accept at equal priority.
fn policy_rank(p: Policy) -> u8 {
    match p {
        Policy::Drop => 0,
        Policy::Accept => 1,
    }
}

/// The match part of one rule at the interface whose address is `local_ip`, or why it can
/// never match there.
fn rule_match(
    world: &World,
    owner_group: &Group,
    rule: &Rule,
    local_ip: Ipv4Addr,
    sets: &mut MemberSets,
) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();

    // Member-side narrowing: this chain only sees packets whose local end is `local_ip`.
    if let Some(net) = rule.local_cidr {
        if !net.contains(&local_ip) {
            return Err(format!("{} {} does not cover {local_ip}", local_cidr_param(rule.direction), net.trunc()));
        }
    }

    let remote = match rule.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    match &rule.peer {
        Peer::Cidr(net) => {
            let net = net.trunc();
            match net.prefix_len() {
                0 => {}
                32 => parts.push(format!("ip {remote} {}", net.addr())),
                _ => parts.push(format!("ip {remote} {net}")),
            }
        }
        Peer::Group { group_id, owner_account, owner_id } => {
            let Some(named) = world.groups.get(group_id) else {
                return Err(format!("group {group_id} does not exist"));
            };
            // As the evaluator: a named owner must own the group; without one, the group
            // must belong to the rule's own account.
            let owner_ok = if owner_account.is_some() || owner_id.is_some() {
                [owner_account, owner_id].into_iter().flatten().any(|o| *o == named.owner)
            } else {
                named.owner == owner_group.owner
            };
            if !owner_ok {
                return Err(format!("group {group_id} is not owned by the account the rule names"));
            }
            parts.push(format!("ip {remote} {}", sets.reference(group_id)));
        }
    }

    let dport = rule.port_range.bounds();
    let sport = rule.source_port_range.and_then(|r| r.bounds());
    if dport.is_none() && sport.is_none() {
        match rule.protocol {
            Protocol::All => {}
            p => parts.push(format!("meta l4proto {}", p.as_api())),
        }
    } else {
        // Real ports: only packets that have ports (tcp, udp) can match.
        let header = match rule.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::All => {
                parts.push("meta l4proto { tcp, udp }".to_string());
                "th"
            }
            p @ (Protocol::Icmp | Protocol::Gre) => return Err(format!("{p} packets have no ports")),
        };
        if let Some(r) = sport {
            parts.push(format!("{header} sport {}", ports(r)));
        }
        if let Some(r) = dport {
            parts.push(format!("{header} dport {}", ports(r)));
        }
    }
    Ok(parts.join(" "))
}

fn local_cidr_param(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "DestCidrIp",
        Direction::Egress => "SourceCidrIp",
    }
}

fn ports((from, to): (u16, u16)) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    }
}

/// An nft comment: quoted, printable ASCII without quotes, at most 120 bytes (nft allows 128).
fn comment(text: &str) -> String {
    let clean: String = one_line(text).chars().filter(|c| *c != '"' && *c != '\\').take(120).collect();
    format!("\"{clean}\"")
}

/// `text` as one printable-ASCII line (other characters become `?`).
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

// --- the tables ---------------------------------------------------------------------------

fn filter_table(s: &mut Script, world: &World, plans: &[PortPlan], chains: &[Option<PortChains>], sets: &MemberSets) {
    s.line(0, &format!("table inet {TABLE_FILTER} {{}}"));
    s.line(0, &format!("delete table inet {TABLE_FILTER}"));
    s.line(0, &format!("table inet {TABLE_FILTER} {{"));

    for (group_id, name) in &sets.names {
        let members: Vec<String> = members(world, group_id).iter().map(Ipv4Addr::to_string).collect();
        s.line(1, &format!("# members of {}", one_line(group_id)));
        s.line(1, &format!("set {name} {{"));
        s.line(2, "type ipv4_addr");
        // An empty group is an empty set, which matches nothing (an empty anonymous set
        // would be a syntax error).
        if !members.is_empty() {
            s.line(2, &format!("elements = {{ {} }}", members.join(", ")));
        }
        s.line(1, "}");
        s.blank();
    }

    s.line(1, "chain forward {");
    s.line(2, "type filter hook forward priority filter; policy accept;");
    s.line(2, "ct state established,related accept");
    s.line(2, "ct state invalid drop");
    s.line(2, "# IPv6 is not modelled: ports may neither send nor receive it.");
    s.line(2, "meta nfproto ipv6 drop");
    // Every port keys both maps; a refused one maps to drop.
    let key = |p: &PortPlan, chain: &str| match p.refused {
        None => format!("{} : {chain}_{}", p.port.ip, p.name),
        Some(_) => format!("{} : drop", p.port.ip),
    };
    let egress: Vec<String> = plans.iter().map(|p| key(p, "jump eg")).collect();
    let ingress: Vec<String> = plans.iter().map(|p| key(p, "goto in")).collect();
    for p in plans {
        if let Some(why) = &p.refused {
            s.line(2, &format!("# {} ({}) fails closed: {}", one_line(&p.port.nic_id), p.port.ip, one_line(why)));
        }
    }
    vmap(s, "ip saddr", &dedup(egress));
    vmap(s, "ip daddr", &dedup(ingress));
    s.line(1, "}");

    for (p, c) in plans.iter().zip(chains) {
        let Some(c) = c else { continue };
        s.blank();
        s.line(1, &format!("# {} ({}): egress", one_line(&p.port.nic_id), p.port.ip));
        s.line(1, &format!("chain eg_{} {{", p.name));
        c.egress.iter().for_each(|l| s.line(2, l));
        s.line(1, "}");
        s.line(1, &format!("# {} ({}): ingress", one_line(&p.port.nic_id), p.port.ip));
        s.line(1, &format!("chain in_{} {{", p.name));
        c.ingress.iter().for_each(|l| s.line(2, l));
        s.line(1, "}");
    }
    s.line(0, "}");
}

/// Two ports sharing an address give the same `ip : drop` element twice; nft would refuse
/// the duplicate key.
fn dedup(elements: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    elements.into_iter().filter(|e| seen.insert(e.clone())).collect()
}

/// `<selector> vmap { … }`, one element per line; nothing at all when there are no elements
/// (an empty anonymous map is a syntax error).
fn vmap(s: &mut Script, selector: &str, elements: &[String]) {
    if elements.is_empty() {
        return;
    }
    s.line(2, &format!("{selector} vmap {{"));
    let last = elements.len() - 1;
    for (i, e) in elements.iter().enumerate() {
        s.line(3, &if i < last { format!("{e},") } else { e.clone() });
    }
    s.line(2, "}");
}

fn guard_table(s: &mut Script, plans: &[PortPlan]) {
    s.line(0, &format!("table bridge {TABLE_GUARD} {{}}"));
    s.line(0, &format!("delete table bridge {TABLE_GUARD}"));
    s.line(0, &format!("table bridge {TABLE_GUARD} {{"));
    s.line(1, "chain prerouting {");
    // Bridge `filter` is -200: before br_netfilter (0) passes the frame to the IP hooks, so
    // a spoofed packet never reaches conntrack or the security groups.
    s.line(2, "type filter hook prerouting priority filter; policy accept;");
    s.line(2, "# Frames from interfaces that are not ports (the bridge itself: the gateway) pass.");
    let mut shared: BTreeMap<&str, usize> = BTreeMap::new();
    for p in plans {
        *shared.entry(p.port.ifname.as_str()).or_default() += 1;
        if !p.ifname_ok {
            let why = format!("{} is left unguarded: {:?} can't be named", p.port.nic_id, p.port.ifname);
            s.line(2, &format!("# {}", one_line(&why)));
        }
    }
    let guarded = |p: &&PortPlan| p.ifname_ok && shared.get(p.port.ifname.as_str()) == Some(&1);
    let mut elements: Vec<String> =
        plans.iter().filter(guarded).map(|p| format!("\"{}\" : goto port_{}", p.port.ifname, p.name)).collect();
    // An interface claimed by two ports can't be guarded for either: nothing from it passes.
    elements.extend(
        shared.iter().filter(|(name, n)| **n > 1 && valid_ifname(name)).map(|(name, _)| format!("\"{name}\" : drop")),
    );
    vmap(s, "iifname", &elements);
    s.line(1, "}");

    for p in plans.iter().filter(guarded) {
        s.blank();
        s.line(1, &format!("# {} on {}", one_line(&p.port.nic_id), p.port.ifname));
        s.line(1, &format!("chain port_{} {{", p.name));
        match &p.mac {
            Some(mac) => {
                let ip = p.port.ip;
                s.line(2, &format!("ether saddr != {mac} drop"));
                s.line(
                    2,
                    &format!(
                        "ether type arp arp htype 1 arp ptype 0x0800 arp hlen 6 arp plen 4 \
                         arp saddr ether {mac} arp saddr ip {ip} accept"
                    ),
                );
                s.line(2, &format!("ether type ip ip saddr {ip} accept"));
            }
            None => s.line(2, "# malformed MAC: nothing from this port is let in"),
        }
        s.line(2, "drop");
        s.line(1, "}");
    }
    s.line(0, "}");
}

/// A script being written: lines indented with tabs.
#[derive(Default)]
struct Script(String);

impl Script {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.0.push('\t');
        }
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_secgroup::vectors::{self, Scenario};
    use feitian_secgroup::{validate, NicType, PortRange, RuleInput};

    fn world_of(s: &Scenario) -> World {
        match s.world() {
            Ok(w) => w,
            Err(e) => panic!("{}: {e}", s.name),
        }
    }

    /// A port per NIC, as the data-plane test makes them.
    fn ports_of(w: &World) -> Vec<Port> {
        w.nics
            .values()
            .enumerate()
            .map(|(k, n)| Port {
                nic_id: n.id.clone(),
                ip: n.ip,
                mac: format!("00:16:3E:00:00:{:02x}", k + 1),
                ifname: format!("p{k}"),
            })
            .collect()
    }

    fn compiled(s: &Scenario) -> String {
        let w = world_of(s);
        ruleset(&w, &ports_of(&w))
    }

    /// The lines of a block (`chain x`, `set y`), trimmed, without its own braces.
    fn body(script: &str, header: &str) -> Vec<String> {
        let mut lines = script.lines().map(str::trim).skip_while(|l| *l != format!("{header} {{"));
        assert!(lines.next().is_some(), "no {header} in\n{script}");
        let mut depth = 1;
        let mut out = Vec::new();
        for l in lines {
            depth += usize::from(l.ends_with('{'));
            depth -= usize::from(l == "}");
            if depth == 0 {
                break;
            }
            out.push(l.to_string());
        }
        out
    }

    fn rule(direction: Direction, input: RuleInput) -> Rule {
        match validate(direction, &input) {
            Ok(r) => r,
            Err(e) => panic!("test rule: {e}"),
        }
    }

    fn world(groups: Vec<Group>, nics: Vec<(&str, [u8; 4], &[&str])>) -> World {
        let mut w = World::new();
        for g in groups {
            w.add_group(g);
        }
        for (id, ip, groups) in nics {
            w.add_nic(Nic {
                id: id.into(),
                owner: "A".into(),
                ip: Ipv4Addr::from(ip),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            });
        }
        w
    }

    fn group(id: &str, inner: Policy, rules: Vec<Rule>) -> Group {
        Group { id: id.into(), owner: "A".into(), inner_policy: inner, rules }
    }

    #[test]
    fn each_table_is_replaced_in_one_transaction() {
        let s = compiled(&vectors::three_groups());
        for (family, table) in [("inet", TABLE_FILTER), ("bridge", TABLE_GUARD)] {
            let create = s.find(&format!("table {family} {table} {{}}\n")).expect("create");
            let delete = s.find(&format!("delete table {family} {table}\n")).expect("delete");
            let define = s.find(&format!("table {family} {table} {{\n")).expect("define");
            assert!(create < delete && delete < define, "{family} {table}");
        }
        assert!(s.contains("type filter hook forward priority filter; policy accept;"));
        assert!(s.contains("type filter hook prerouting priority filter; policy accept;"));
        // Deterministic: the same world gives the same script.
        assert_eq!(s, compiled(&vectors::three_groups()));
    }

    #[test]
    fn three_groups_compile_to_intra_group_sets() {
        let s = compiled(&vectors::three_groups());
        assert_eq!(body(&s, "set grp_group2"), ["type ipv4_addr", "elements = { 192.168.1.1, 192.168.1.2 }"]);
        assert_eq!(body(&s, "set grp_group3"), ["type ipv4_addr", "elements = { 192.168.1.2, 192.168.1.3 }"]);
        // group1's inner policy is Drop and no rule names it: no set.
        assert!(!s.contains("grp_group1"));
        assert_eq!(
            body(&s, "chain in_ecs2"),
            [
                "ip saddr @grp_group2 accept comment \"intra-group group2\"",
                "ip saddr @grp_group3 accept comment \"intra-group group3\"",
                "drop comment \"default deny ingress\"",
            ]
        );
        assert_eq!(body(&s, "chain eg_ecs1"), ["# no egress rules: default allow"]);
        let forward = body(&s, "chain forward");
        let first = |needle: &str| forward.iter().position(|l| l.contains(needle)).expect(needle);
        assert!(first("established,related accept") < first("invalid drop"));
        assert!(first("invalid drop") < first("ip saddr vmap"));
        assert!(first("ip saddr vmap") < first("ip daddr vmap"));
        assert!(forward.contains(&"192.168.1.3 : jump eg_ecs3".to_string()));
        assert!(forward.contains(&"192.168.1.3 : goto in_ecs3".to_string()));
    }

    #[test]
    fn rules_follow_the_evaluators_order() {
        let s = compiled(&vectors::priority_order());
        let order: Vec<String> = body(&s, "chain in_p1")
            .iter()
            .filter_map(|l| l.split_once("comment \"").map(|(_, c)| c.trim_end_matches('"').to_string()))
            .collect();
        assert_eq!(
            order,
            [
                "sg-p rule 1: priority 1 drop",
                "sg-p rule 4: priority 1 accept",
                "sg-q rule 0: priority 2 drop",
                "sg-q rule 1: priority 3 drop",
                "sg-p rule 5: priority 4 accept",
                "sg-p rule 0: priority 5 accept",
                "sg-p rule 3: priority 10 drop",
                "sg-p rule 2: priority 10 accept",
                "intra-group sg-p",
                "intra-group sg-q",
                "default deny ingress",
            ]
        );
        assert!(s.contains("ip saddr 203.0.113.0/24 tcp dport 80 drop"));
        // 0.0.0.0/0 matches every address: no address match at all.
        assert!(s.contains("\ttcp dport 8080 accept"));
    }

    #[test]
    fn egress_drops_drop_and_accepts_return() {
        let s = compiled(&vectors::egress_five_tuple());
        assert_eq!(
            body(&s, "chain eg_eni_172_16_1_0"),
            ["ip daddr 10.0.0.1 tcp sport 22 tcp dport 1-65535 drop comment \"sg-five-tuple rule 0: priority 1 drop\""]
        );
        // SourceCidrIp 172.16.1.0/32 narrows the rule away from the other member.
        let other = body(&s, "chain eg_eni_172_16_1_1");
        assert_eq!(other.len(), 1);
        assert!(other[0].starts_with("# skipped sg-five-tuple rule 0"), "{other:?}");
        assert!(other[0].contains("SourceCidrIp 172.16.1.0/32 does not cover 172.16.1.1"));

        let s = compiled(&vectors::egress_to_group());
        assert_eq!(
            body(&s, "chain eg_w1"),
            ["ip daddr @grp_sg_cache tcp dport 6379 drop comment \"sg-front rule 0: priority 1 drop\""]
        );

        let accept = rule(
            Direction::Egress,
            RuleInput {
                ip_protocol: Some("udp"),
                port_range: Some("53/53"),
                dest_cidr_ip: Some("10.0.0.0/8"),
                ..RuleInput::default()
            },
        );
        let w = world(vec![group("sg-a", Policy::Accept, vec![accept])], vec![("a", [192, 168, 0, 1], &["sg-a"])]);
        let s = ruleset(&w, &ports_of(&w));
        assert_eq!(
            body(&s, "chain eg_a"),
            ["ip daddr 10.0.0.0/8 udp dport 53 return comment \"sg-a rule 0: priority 1 accept\""]
        );
    }

    #[test]
    fn group_peers_check_the_owner_and_empty_groups_match_nothing() {
        let s = compiled(&vectors::cross_account());
        assert_eq!(body(&s, "set grp_sg_b"), ["type ipv4_addr", "elements = { 192.168.4.2, 192.168.4.3 }"]);
        let a1 = body(&s, "chain in_a1");
        assert!(a1[0].starts_with("ip saddr @grp_sg_b tcp dport 22 accept"), "{a1:?}");
        assert!(a1[1].starts_with("# skipped sg-a rule 1") && a1[1].contains("not owned"), "{a1:?}");
        assert!(!s.contains("@grp_sg_c tcp"));

        let from_empty = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("22/22"),
                source_group_id: Some("sg-empty"),
                ..RuleInput::default()
            },
        );
        let from_missing = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("23/23"),
                source_group_id: Some("sg-gone"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![
                group("sg-a", Policy::Drop, vec![from_empty, from_missing]),
                group("sg-empty", Policy::Accept, vec![]),
            ],
            vec![("a", [192, 168, 0, 1], &["sg-a"])],
        );
        let s = ruleset(&w, &ports_of(&w));
        // A named set may be empty (an empty anonymous one would not even parse).
        assert_eq!(body(&s, "set grp_sg_empty"), ["type ipv4_addr"]);
        let a = body(&s, "chain in_a");
        assert!(a[0].starts_with("ip saddr @grp_sg_empty tcp dport 22 accept"), "{a:?}");
        assert!(a[1].starts_with("# skipped") && a[1].contains("sg-gone does not exist"), "{a:?}");
        assert_eq!(a[2], "drop comment \"default deny ingress\"");
        assert!(!s.contains("{ }"));
    }

    #[test]
    fn protocols_and_ports() {
        let mut all_with_ports = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("all"),
                port_range: Some("-1/-1"),
                source_cidr_ip: Some("10.1.2.3"),
                ..RuleInput::default()
            },
        );
        // Not something the API accepts, but the evaluator gives it a meaning: tcp and udp
        // packets within the ports.
        all_with_ports.port_range = PortRange::new(100, 200).expect("range");
        let mut icmp_with_ports = all_with_ports.clone();
        icmp_with_ports.protocol = Protocol::Icmp;
        let gre = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("GRE"),
                port_range: Some("-1/-1"),
                source_cidr_ip: Some("10.0.0.0/8"),
                policy: Some("drop"),
                nic_type: Some("internet"),
                ..RuleInput::default()
            },
        );
        assert_eq!(gre.nic_type, NicType::Internet);
        let sport = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("udp"),
                port_range: Some("1000/2000"),
                source_port_range: Some("53/53"),
                source_cidr_ip: Some("0.0.0.0/0"),
                dest_cidr_ip: Some("192.168.0.0/24"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![group("sg-a", Policy::Drop, vec![all_with_ports, icmp_with_ports, gre, sport])],
            vec![("a", [192, 168, 0, 1], &["sg-a"])],
        );
        let s = ruleset(&w, &ports_of(&w));
        let a = body(&s, "chain in_a");
        assert!(a[0].starts_with("ip saddr 10.0.0.0/8 meta l4proto gre drop"), "{a:?}");
        assert!(a[1].starts_with("ip saddr 10.1.2.3 meta l4proto { tcp, udp } th dport 100-200 accept"), "{a:?}");
        assert!(a[2].starts_with("# skipped") && a[2].contains("icmp packets have no ports"), "{a:?}");
        assert!(a[3].starts_with("udp sport 53 udp dport 1000-2000 accept"), "{a:?}");
        // Inner policy Drop: no intra-group line.
        assert_eq!(a[4], "drop comment \"default deny ingress\"");
    }

    #[test]
    fn names_are_sanitized_and_unique() {
        let w = world(
            vec![group("sg-x", Policy::Accept, vec![]), group("sg_x", Policy::Accept, vec![])],
            vec![
                ("eni-a", [192, 168, 0, 1], &["sg-x"]),
                ("eni_a", [192, 168, 0, 2], &["sg_x"]),
                ("eni.a", [192, 168, 0, 3], &["sg-x"]),
                ("i-\"quoted\" é", [192, 168, 0, 4], &["sg-x"]),
            ],
        );
        let ports = ports_of(&w);
        let s = ruleset(&w, &ports);
        // BTreeMap order of the ids: "eni-a", "eni.a", "eni_a", "i-…".
        for chain in ["eg_eni_a", "eg_eni_a_2", "eg_eni_a_3", "eg_i__quoted___", "in_eni_a_3", "port_eni_a_2"] {
            assert!(s.contains(&format!("chain {chain} {{")), "{chain} in\n{s}");
        }
        assert!(s.contains("set grp_sg_x {") && s.contains("set grp_sg_x_2 {"));
        assert!(s.contains("intra-group sg_x\""));
        // Every name is plain: letters, digits and underscores.
        for line in s.lines().filter(|l| l.trim_start().starts_with("chain ") || l.trim_start().starts_with("set ")) {
            let name = line.split_whitespace().nth(1).unwrap_or("");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
        }
        // Ids reach the script only in `#` comments (to the end of the line) and in quoted
        // comments, which they can't break out of.
        for line in s.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let quotes = line.matches('"').count();
            assert!(quotes == 0 || (quotes == 2 && line.contains("comment \"")) || line.contains(" : "), "{line}");
        }
        assert!(s.is_ascii());
        assert!(s.contains("ether saddr != 00:16:3e:00:00:01 drop"), "MACs are lowercased");
    }

    #[test]
    fn inconsistent_ports_fail_closed() {
        let w = world(
            vec![group("sg-a", Policy::Accept, vec![])],
            vec![
                ("good", [192, 168, 0, 1], &["sg-a"]),
                ("lost", [192, 168, 0, 2], &["sg-missing"]),
                ("moved", [192, 168, 0, 3], &["sg-a"]),
                ("twin1", [192, 168, 0, 4], &["sg-a"]),
                ("twin2", [192, 168, 0, 4], &["sg-a"]),
                ("badmac", [192, 168, 0, 6], &["sg-a"]),
                ("badif", [192, 168, 0, 7], &["sg-a"]),
            ],
        );
        let port = Port::new::<[u8; 4]>;
        let ports = vec![
            port("good", [192, 168, 0, 1], "00:16:3e:00:00:01", "t1"),
            port("lost", [192, 168, 0, 2], "00:16:3e:00:00:02", "t2"),
            port("moved", [192, 168, 0, 33], "00:16:3e:00:00:03", "t3"),
            port("twin1", [192, 168, 0, 4], "00:16:3e:00:00:04", "t4"),
            port("twin2", [192, 168, 0, 4], "00:16:3e:00:00:05", "t5"),
            port("badmac", [192, 168, 0, 6], "00:16:3e:00:00", "t6"),
            port("badif", [192, 168, 0, 7], "00:16:3e:00:00:07", "t\"7 ; drop"),
            port("ghost", [192, 168, 0, 8], "00:16:3e:00:00:08", "t8"),
        ];
        let s = ruleset(&w, &ports);
        let forward = body(&s, "chain forward");
        assert!(forward.contains(&"192.168.0.1 : jump eg_good,".to_string()), "{forward:?}");
        for ip in ["192.168.0.2", "192.168.0.33", "192.168.0.4", "192.168.0.6", "192.168.0.7", "192.168.0.8"] {
            let drops = forward.iter().filter(|l| l.trim_end_matches(',') == format!("{ip} : drop")).count();
            assert_eq!(drops, 2, "{ip} fails closed both ways, once per map: {forward:?}");
        }
        for id in ["lost", "moved", "twin1", "twin2", "badmac", "badif", "ghost"] {
            assert!(!s.contains(&format!("chain eg_{id} ")), "{id} has no chains");
        }
        // The guard still pins what it can; the bad MAC's port lets nothing in.
        assert_eq!(body(&s, "chain port_badmac"), ["# malformed MAC: nothing from this port is let in", "drop"]);
        assert!(s.contains("\"t2\" : goto port_lost"));
        assert!(!s.contains("\"t\"7"), "an unquotable interface name never reaches the script");
        assert!(s.contains("# badif is left unguarded"));
    }

    #[test]
    fn no_ports_no_maps() {
        let w = world_of(&vectors::three_groups());
        let s = ruleset(&w, &[]);
        assert!(!s.contains("vmap"), "an empty anonymous map would not parse:\n{s}");
        assert!(s.contains(&format!("table inet {TABLE_FILTER} {{\n")));
        assert!(s.contains(&format!("table bridge {TABLE_GUARD} {{\n")));
    }

    #[test]
    fn guard_pins_mac_and_address() {
        let s = compiled(&vectors::three_groups());
        assert_eq!(
            body(&s, "chain port_ecs1"),
            [
                "ether saddr != 00:16:3e:00:00:01 drop",
                "ether type arp arp htype 1 arp ptype 0x0800 arp hlen 6 arp plen 4 \
                 arp saddr ether 00:16:3e:00:00:01 arp saddr ip 192.168.1.1 accept",
                "ether type ip ip saddr 192.168.1.1 accept",
                "drop",
            ]
        );
        assert!(body(&s, "chain prerouting").contains(&"\"p2\" : goto port_ecs3".to_string()));
    }

    #[test]
    fn teardown_tolerates_absent_tables() {
        assert_eq!(
            teardown(),
            "table inet feitian_sg {}\ndelete table inet feitian_sg\n\
             table bridge feitian_guard {}\ndelete table bridge feitian_guard\n"
        );
    }
}
