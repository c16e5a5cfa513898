//! What a packet meets: the evaluator of the spec's "Evaluation" section.
//!
//! For one network interface and one direction, the rules of all its groups are merged,
//! ordered by priority (1 first) with `drop` before `accept` at equal priority, and the
//! first rule that matches decides. If none matches, ingress falls back to intra-group
//! access (two interfaces sharing a group whose inner policy is `Accept`), and otherwise is
//! denied; egress is allowed.
//!
//! The evaluator looks at the *first* packet of a connection only. Security groups are
//! stateful: once that packet is allowed, every packet of the connection in either
//! direction passes (conntrack on the data plane), so replies are never evaluated. That is
//! why a reply may pass where a new connection the other way would not; see
//! [`Packet::reply`].

use crate::rule::{Direction, Peer, Policy, Protocol, Rule};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// A security group as the evaluator needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub id: String,
    /// The owning account. Cross-account rules name it in `SourceGroupOwnerAccount` or
    /// `SourceGroupOwnerId`; here an account is one string and either field may carry it.
    pub owner: String,
    /// `InnerAccessPolicy`: whether members reach each other without a rule.
    pub inner_policy: Policy,
    /// Both directions, in authorization order. A rule's index here is how a
    /// [`Reason::Rule`] names it.
    pub rules: Vec<Rule>,
}

/// A network interface and the groups it is a member of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Nic {
    pub id: String,
    pub owner: String,
    pub ip: Ipv4Addr,
    pub groups: Vec<String>,
}

/// Every group and interface that may be involved, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub groups: BTreeMap<String, Group>,
    pub nics: BTreeMap<String, Nic>,
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    /// Adds or replaces a group (by its id); returns the one replaced.
    pub fn add_group(&mut self, group: Group) -> Option<Group> {
        self.groups.insert(group.id.clone(), group)
    }

    /// Adds or replaces an interface (by its id); returns the one replaced.
    pub fn add_nic(&mut self, nic: Nic) -> Option<Nic> {
        self.nics.insert(nic.id.clone(), nic)
    }

    /// The interfaces holding `ip`. Usually one; the evaluator doesn't rely on it.
    pub fn nics_with_ip(&self, ip: Ipv4Addr) -> impl Iterator<Item = &Nic> {
        self.nics.values().filter(move |n| n.ip == ip)
    }
}

/// The first packet of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Tcp, Udp, Icmp or Gre. [`Protocol::All`] is refused with [`EvalError::AllProtocol`].
    pub protocol: Protocol,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// `None` for protocols without ports; then only port-agnostic rules can match.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl Packet {
    pub fn tcp(src_ip: Ipv4Addr, src_port: u16, dst_ip: Ipv4Addr, dst_port: u16) -> Packet {
        Packet::with_ports(Protocol::Tcp, src_ip, src_port, dst_ip, dst_port)
    }

    pub fn udp(src_ip: Ipv4Addr, src_port: u16, dst_ip: Ipv4Addr, dst_port: u16) -> Packet {
        Packet::with_ports(Protocol::Udp, src_ip, src_port, dst_ip, dst_port)
    }

    pub fn icmp(src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Packet {
        Packet { protocol: Protocol::Icmp, src_ip, dst_ip, src_port: None, dst_port: None }
    }

    fn with_ports(protocol: Protocol, src_ip: Ipv4Addr, src_port: u16, dst_ip: Ipv4Addr, dst_port: u16) -> Packet {
        Packet { protocol, src_ip, dst_ip, src_port: Some(src_port), dst_port: Some(dst_port) }
    }

    /// The same connection's packets going back. They pass once the connection is allowed
    /// (stateful groups), so they are not something to evaluate; this exists so callers and
    /// data-plane tests can name them.
    pub fn reply(&self) -> Packet {
        Packet {
            protocol: self.protocol,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An interface of the [`World`], by id: its groups filter the traffic.
    Nic(String),
    /// An address outside every group (the internet, another VPC, a host): no filter on
    /// its side, and it is never a member of a group.
    Outside(Ipv4Addr),
}

impl Endpoint {
    pub fn nic(id: &str) -> Endpoint {
        Endpoint::Nic(id.to_string())
    }
}

/// The verdict on one packet at one interface, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

/// Why a [`Decision`] came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The first matching rule: its group, its index in [`Group::rules`], its priority and
    /// policy.
    Rule { group_id: String, index: usize, priority: u8, policy: Policy },
    /// No rule matched; both interfaces are members of this group and its inner policy
    /// is `Accept`.
    IntraGroup(String),
    /// No rule matched and no shared `Accept` group: ingress is denied.
    DefaultDenyIngress,
    /// No rule matched: egress is allowed.
    DefaultAllowEgress,
}

/// Both halves of a connection check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// At the source interface; `None` when the source is outside.
    pub egress: Option<Decision>,
    /// At the destination interface; `None` when the destination is outside.
    pub ingress: Option<Decision>,
}

impl Verdict {
    /// A new connection needs both checks it is subject to.
    pub fn allowed(&self) -> bool {
        [&self.egress, &self.ingress].into_iter().flatten().all(|d| d.allowed)
    }
}

/// The world doesn't support the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// No interface with this id.
    UnknownNic(String),
    /// An interface names a group the world doesn't have: the world is inconsistent, and
    /// answering would guess at that group's rules.
    UnknownGroup { nic_id: String, group_id: String },
    /// A packet has one protocol; `All` only exists in rules.
    AllProtocol,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::UnknownNic(id) => write!(f, "no network interface {id}"),
            EvalError::UnknownGroup { nic_id, group_id } => {
                write!(f, "network interface {nic_id} is in group {group_id}, which does not exist")
            }
            EvalError::AllProtocol => f.write_str("a packet's protocol is tcp, udp, icmp or gre, never all"),
        }
    }
}

impl std::error::Error for EvalError {}

/// The egress check at interface `src_nic_id` for `packet`. The destination's interfaces,
/// if any, are found by `packet.dst_ip`.
pub fn egress(world: &World, src_nic_id: &str, packet: &Packet) -> Result<Decision, EvalError> {
    let nic = nic(world, src_nic_id)?;
    let remotes: Vec<&Nic> = world.nics_with_ip(packet.dst_ip).collect();
    evaluate(world, nic, Direction::Egress, packet, &remotes)
}

/// The ingress check at interface `dst_nic_id` for `packet`. The source's interfaces, if
/// any, are found by `packet.src_ip`.
pub fn ingress(world: &World, dst_nic_id: &str, packet: &Packet) -> Result<Decision, EvalError> {
    let nic = nic(world, dst_nic_id)?;
    let remotes: Vec<&Nic> = world.nics_with_ip(packet.src_ip).collect();
    evaluate(world, nic, Direction::Ingress, packet, &remotes)
}

/// Both checks a new connection from `src` to `dst` is subject to: egress at a source
/// interface, ingress at a destination interface. The endpoints, not the packet's
/// addresses, say which interfaces are involved; an [`Endpoint::Outside`] is a member of
/// no group even if its address equals an interface's.
pub fn connection(world: &World, src: &Endpoint, dst: &Endpoint, packet: &Packet) -> Result<Verdict, EvalError> {
    let src_nic = endpoint_nic(world, src)?;
    let dst_nic = endpoint_nic(world, dst)?;
    let egress = src_nic.map(|n| evaluate(world, n, Direction::Egress, packet, dst_nic.as_slice())).transpose()?;
    let ingress = dst_nic.map(|n| evaluate(world, n, Direction::Ingress, packet, src_nic.as_slice())).transpose()?;
    Ok(Verdict { egress, ingress })
}

/// Whether a new connection from `src` to `dst` starting with `packet` is allowed; its
/// replies then are too (stateful).
pub fn connection_allowed(world: &World, src: &Endpoint, dst: &Endpoint, packet: &Packet) -> Result<bool, EvalError> {
    connection(world, src, dst, packet).map(|v| v.allowed())
}

fn nic<'w>(world: &'w World, id: &str) -> Result<&'w Nic, EvalError> {
    world.nics.get(id).ok_or_else(|| EvalError::UnknownNic(id.to_string()))
}

fn endpoint_nic<'w>(world: &'w World, e: &Endpoint) -> Result<Option<&'w Nic>, EvalError> {
    match e {
        Endpoint::Nic(id) => nic(world, id).map(Some),
        Endpoint::Outside(_) => Ok(None),
    }
}

/// The decision at `nic` for `packet` travelling in `direction`; `remotes` are the
/// interfaces at the other end (empty for an outside address).
fn evaluate(
    world: &World,
    nic: &Nic,
    direction: Direction,
    packet: &Packet,
    remotes: &[&Nic],
) -> Result<Decision, EvalError> {
    if packet.protocol == Protocol::All {
        return Err(EvalError::AllProtocol);
    }
    let groups = member_groups(world, nic)?;
    let (remote_ip, local_ip) = match direction {
        Direction::Ingress => (packet.src_ip, packet.dst_ip),
        Direction::Egress => (packet.dst_ip, packet.src_ip),
    };

    // The union of the groups' rules in this direction. The sort is stable, so among rules
    // of one priority and policy the NIC's group order and authorization order decide;
    // that only changes which rule is reported, never the verdict.
    let mut rules: Vec<(&Group, usize, &Rule)> = groups
        .iter()
        .flat_map(|g| g.rules.iter().enumerate().map(move |(i, r)| (*g, i, r)))
        .filter(|(_, _, r)| r.direction == direction)
        .collect();
    rules.sort_by_key(|(_, _, r)| (r.priority, policy_rank(r.policy)));

    let ctx = Match { world, packet, remote_ip, local_ip, remotes };
    if let Some((g, index, r)) = rules.into_iter().find(|(g, _, r)| ctx.matches(g, r)) {
        return Ok(Decision {
            allowed: r.policy == Policy::Accept,
            reason: Reason::Rule { group_id: g.id.clone(), index, priority: r.priority, policy: r.policy },
        });
    }

    Ok(match direction {
        Direction::Egress => Decision { allowed: true, reason: Reason::DefaultAllowEgress },
        Direction::Ingress => match groups
            .iter()
            .find(|g| g.inner_policy == Policy::Accept && remotes.iter().any(|r| is_member(r, &g.id)))
        {
            Some(g) => Decision { allowed: true, reason: Reason::IntraGroup(g.id.clone()) },
            None => Decision { allowed: false, reason: Reason::DefaultDenyIngress },
        },
    })
}

/// The interface's groups, each once, in its own order.
fn member_groups<'w>(world: &'w World, nic: &Nic) -> Result<Vec<&'w Group>, EvalError> {
    let mut out: Vec<&Group> = Vec::with_capacity(nic.groups.len());
    for id in &nic.groups {
        let g = world
            .groups
            .get(id)
            .ok_or_else(|| EvalError::UnknownGroup { nic_id: nic.id.clone(), group_id: id.clone() })?;
        if !out.iter().any(|seen| seen.id == g.id) {
            out.push(g);
        }
    }
    Ok(out)
}

/// Drop sorts before accept at equal priority.
fn policy_rank(p: Policy) -> u8 {
    match p {
        Policy::Drop => 0,
        Policy::Accept => 1,
    }
}

fn is_member(nic: &Nic, group_id: &str) -> bool {
    nic.groups.iter().any(|g| g == group_id)
}

/// What a rule is matched against: one packet, seen from one interface.
struct Match<'a> {
    world: &'a World,
    packet: &'a Packet,
    /// The other end's address: the source for ingress, the destination for egress.
    remote_ip: Ipv4Addr,
    /// The interface's own end of the packet.
    local_ip: Ipv4Addr,
    remotes: &'a [&'a Nic],
}

impl Match<'_> {
    /// Whether `rule` of group `owner_group` covers the packet. NicType is not consulted:
    /// in a VPC one rule set governs all traffic of the interface.
    fn matches(&self, owner_group: &Group, rule: &Rule) -> bool {
        rule.protocol.covers(self.packet.protocol)
            && rule.port_range.contains(self.packet.dst_port)
            // An absent SourcePortRange is any; `-1/-1` also covers every packet.
            && rule
                .source_port_range
                .is_none_or(|r| r.contains(self.packet.src_port))
            && rule.local_cidr.is_none_or(|net| net.contains(&self.local_ip))
            && self.peer_matches(owner_group, &rule.peer)
    }

    fn peer_matches(&self, owner_group: &Group, peer: &Peer) -> bool {
        match peer {
            Peer::Cidr(net) => net.contains(&self.remote_ip),
            Peer::Group { group_id, owner_account, owner_id } => {
                // A rule naming a group that no longer exists matches nothing.
                let Some(named) = self.world.groups.get(group_id) else {
                    return false;
                };
                // With an owner given, the named group must belong to that account; without
                // one, the docs say the group is "managed by your account", i.e. the owner
                // of the rule's own group.
                let owner_ok = if owner_account.is_some() || owner_id.is_some() {
                    [owner_account, owner_id].into_iter().flatten().any(|o| *o == named.owner)
                } else {
                    named.owner == owner_group.owner
                };
                owner_ok && self.remotes.iter().any(|r| is_member(r, group_id))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate, RuleInput};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn rule(direction: Direction, input: RuleInput) -> Rule {
        match validate(direction, &input) {
            Ok(r) => r,
            Err(e) => panic!("test rule invalid: {e}"),
        }
    }

    fn group(id: &str, owner: &str, inner: Policy, rules: Vec<Rule>) -> Group {
        Group { id: id.into(), owner: owner.into(), inner_policy: inner, rules }
    }

    fn nic(id: &str, owner: &str, addr: &str, groups: &[&str]) -> Nic {
        Nic { id: id.into(), owner: owner.into(), ip: ip(addr), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    fn world(groups: Vec<Group>, nics: Vec<Nic>) -> World {
        let mut w = World::new();
        groups.into_iter().for_each(|g| {
            w.add_group(g);
        });
        nics.into_iter().for_each(|n| {
            w.add_nic(n);
        });
        w
    }

    #[test]
    fn empty_group_denies_ingress_and_allows_egress() {
        let w =
            world(vec![group("sg-a", "A", Policy::Drop, vec![])], vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"])]);
        let inbound = Packet::tcp(ip("198.51.100.1"), 40000, ip("192.168.0.1"), 22);
        assert_eq!(ingress(&w, "eni-a", &inbound), Ok(Decision { allowed: false, reason: Reason::DefaultDenyIngress }));
        assert_eq!(
            egress(&w, "eni-a", &inbound.reply()),
            Ok(Decision { allowed: true, reason: Reason::DefaultAllowEgress })
        );
    }

    #[test]
    fn matching_reports_the_rule() {
        let r = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("22/22"),
                source_cidr_ip: Some("0.0.0.0/0"),
                priority: Some("7"),
                ..RuleInput::default()
            },
        );
        let w =
            world(vec![group("sg-a", "A", Policy::Accept, vec![r])], vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"])]);
        let d = ingress(&w, "eni-a", &Packet::tcp(ip("198.51.100.1"), 40000, ip("192.168.0.1"), 22));
        assert_eq!(
            d,
            Ok(Decision {
                allowed: true,
                reason: Reason::Rule { group_id: "sg-a".into(), index: 0, priority: 7, policy: Policy::Accept }
            })
        );
        let d = ingress(&w, "eni-a", &Packet::tcp(ip("198.51.100.1"), 40000, ip("192.168.0.1"), 23));
        assert_eq!(d.map(|d| d.reason), Ok(Reason::DefaultDenyIngress));
        let d = ingress(&w, "eni-a", &Packet::udp(ip("198.51.100.1"), 40000, ip("192.168.0.1"), 22));
        assert_eq!(d.map(|d| d.allowed), Ok(false));
    }

    #[test]
    fn all_and_portless_rules() {
        let all = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("all"),
                port_range: Some("-1/-1"),
                source_cidr_ip: Some("10.0.0.0/8"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![group("sg-a", "A", Policy::Accept, vec![all])],
            vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"])],
        );
        for p in [
            Packet::tcp(ip("10.1.1.1"), 1, ip("192.168.0.1"), 65535),
            Packet::udp(ip("10.1.1.1"), 53, ip("192.168.0.1"), 53),
            Packet::icmp(ip("10.1.1.1"), ip("192.168.0.1")),
            Packet { protocol: Protocol::Gre, ..Packet::icmp(ip("10.1.1.1"), ip("192.168.0.1")) },
        ] {
            assert_eq!(ingress(&w, "eni-a", &p).map(|d| d.allowed), Ok(true), "{p:?}");
        }
        assert_eq!(
            ingress(&w, "eni-a", &Packet::icmp(ip("11.1.1.1"), ip("192.168.0.1"))).map(|d| d.allowed),
            Ok(false)
        );
        // A tcp rule with real ports never matches a packet whose port is unknown.
        let tcp = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("1/65535"),
                source_cidr_ip: Some("0.0.0.0/0"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![group("sg-a", "A", Policy::Accept, vec![tcp])],
            vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"])],
        );
        let portless = Packet { protocol: Protocol::Tcp, ..Packet::icmp(ip("10.1.1.1"), ip("192.168.0.1")) };
        assert_eq!(ingress(&w, "eni-a", &portless).map(|d| d.allowed), Ok(false));
    }

    #[test]
    fn owner_id_also_grants_cross_account() {
        let by_id = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("443/443"),
                source_group_id: Some("sg-b"),
                source_group_owner_id: Some("1000000000000002"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![
                group("sg-a", "1000000000000001", Policy::Accept, vec![by_id]),
                group("sg-b", "1000000000000002", Policy::Accept, vec![]),
            ],
            vec![
                nic("eni-a", "1000000000000001", "192.168.0.1", &["sg-a"]),
                nic("eni-b", "1000000000000002", "192.168.0.2", &["sg-b"]),
            ],
        );
        let p = Packet::tcp(ip("192.168.0.2"), 40000, ip("192.168.0.1"), 443);
        assert_eq!(connection_allowed(&w, &Endpoint::nic("eni-b"), &Endpoint::nic("eni-a"), &p), Ok(true));
    }

    #[test]
    fn group_rule_without_owner_means_the_rules_own_account() {
        let same_account = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("22/22"),
                source_group_id: Some("sg-b"),
                ..RuleInput::default()
            },
        );
        let mut w = world(
            vec![group("sg-a", "A", Policy::Accept, vec![same_account]), group("sg-b", "B", Policy::Accept, vec![])],
            vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"]), nic("eni-b", "B", "192.168.0.2", &["sg-b"])],
        );
        let p = Packet::tcp(ip("192.168.0.2"), 40000, ip("192.168.0.1"), 22);
        let go = |w: &World| connection_allowed(w, &Endpoint::nic("eni-b"), &Endpoint::nic("eni-a"), &p);
        assert_eq!(go(&w), Ok(false), "sg-b belongs to B, the rule names no owner");
        if let Some(g) = w.groups.get_mut("sg-b") {
            g.owner = "A".into();
        }
        assert_eq!(go(&w), Ok(true));
    }

    #[test]
    fn outside_endpoints_are_never_members() {
        let from_group = rule(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("22/22"),
                source_group_id: Some("sg-b"),
                ..RuleInput::default()
            },
        );
        let w = world(
            vec![group("sg-a", "A", Policy::Accept, vec![from_group]), group("sg-b", "A", Policy::Accept, vec![])],
            vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"]), nic("eni-b", "A", "192.168.0.2", &["sg-b"])],
        );
        let p = Packet::tcp(ip("192.168.0.2"), 40000, ip("192.168.0.1"), 22);
        assert_eq!(
            connection_allowed(&w, &Endpoint::Outside(ip("192.168.0.2")), &Endpoint::nic("eni-a"), &p),
            Ok(false)
        );
        // The address-based entry point finds eni-b by its address.
        assert_eq!(ingress(&w, "eni-a", &p).map(|d| d.allowed), Ok(true));
    }

    #[test]
    fn errors() {
        let w = world(vec![], vec![nic("eni-a", "A", "192.168.0.1", &["sg-missing"])]);
        let p = Packet::icmp(ip("192.168.0.2"), ip("192.168.0.1"));
        assert_eq!(ingress(&w, "eni-x", &p), Err(EvalError::UnknownNic("eni-x".into())));
        assert_eq!(
            ingress(&w, "eni-a", &p),
            Err(EvalError::UnknownGroup { nic_id: "eni-a".into(), group_id: "sg-missing".into() })
        );
        let w =
            world(vec![group("sg-a", "A", Policy::Accept, vec![])], vec![nic("eni-a", "A", "192.168.0.1", &["sg-a"])]);
        let all = Packet { protocol: Protocol::All, ..p };
        assert_eq!(egress(&w, "eni-a", &all), Err(EvalError::AllProtocol));
        assert!(EvalError::AllProtocol.to_string().contains("never all"));
        // Outside to outside involves no interface: nothing to check.
        assert_eq!(connection_allowed(&w, &Endpoint::Outside(p.src_ip), &Endpoint::Outside(p.dst_ip), &p), Ok(true));
    }

    #[test]
    fn a_group_listed_twice_counts_once() {
        let w = world(
            vec![group("sg-a", "A", Policy::Accept, vec![])],
            vec![nic("eni-a", "A", "192.168.0.1", &["sg-a", "sg-a"]), nic("eni-b", "A", "192.168.0.2", &["sg-a"])],
        );
        let p = Packet::icmp(ip("192.168.0.2"), ip("192.168.0.1"));
        assert_eq!(ingress(&w, "eni-a", &p).map(|d| d.reason), Ok(Reason::IntraGroup("sg-a".into())));
    }
}
