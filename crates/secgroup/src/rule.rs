//! A security-group rule as feitian stores it, after validation.
//!
//! A [`Rule`] comes from [`crate::validate()`]; its fields are public so the service layer
//! can load stored rules and tests can build them, but the parts that carry invariants
//! can't be invalid: a [`PortRange`] can't hold `200/1`, a CIDR is an IPv4 network.
//! Rendering back to the API's strings is [`Rule::to_fields`].

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which way the rule filters, seen from the group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Traffic arriving at a member (`AuthorizeSecurityGroup`).
    Ingress,
    /// Traffic leaving a member (`AuthorizeSecurityGroupEgress`).
    Egress,
}

impl Direction {
    /// The API's spelling, as `DescribeSecurityGroupAttribute` returns it in `Direction`.
    pub fn as_api(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// Parses the `Direction` filter of `DescribeSecurityGroupAttribute` (case-insensitive).
    /// `all` is a filter value, not a direction, so it is the caller's to handle.
    pub fn parse(s: &str) -> Option<Direction> {
        if s.eq_ignore_ascii_case("ingress") {
            Some(Direction::Ingress)
        } else if s.eq_ignore_ascii_case("egress") {
            Some(Direction::Egress)
        } else {
            None
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api())
    }
}

/// `IpProtocol`. The IANA-number form some regions accept and `ICMPv6` are not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Gre,
    /// Every protocol. Only a rule can say this; a packet always has one protocol.
    All,
}

impl Protocol {
    /// Parses the request value, case-insensitively (`TCP`, `tcp` and `Tcp` are one value;
    /// the public docs say so for every current ECS rule action).
    pub fn parse(s: &str) -> Option<Protocol> {
        const NAMES: [(&str, Protocol); 5] = [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("icmp", Protocol::Icmp),
            ("gre", Protocol::Gre),
            ("all", Protocol::All),
        ];
        NAMES.iter().find(|(name, _)| s.eq_ignore_ascii_case(name)).map(|&(_, p)| p)
    }

    /// Lowercase, the form the request docs use (`tcp`). Also what nftables wants.
    pub fn as_api(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Gre => "gre",
            Protocol::All => "all",
        }
    }

    /// Uppercase, the form `DescribeSecurityGroupAttribute` returns in `IpProtocol`: the
    /// official response examples and real responses captured in public repositories show
    /// `"IpProtocol": "TCP"` (see [`RuleFields::ip_protocol`]).
    pub fn as_describe(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
            Protocol::Gre => "GRE",
            Protocol::All => "ALL",
        }
    }

    /// Whether rules of this protocol carry real port ranges (tcp/udp) rather than `-1/-1`.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }

    /// Whether a rule of protocol `self` covers a packet of protocol `packet`.
    pub fn covers(self, packet: Protocol) -> bool {
        self == Protocol::All || self == packet
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api())
    }
}

/// `Policy` of a rule, and also a group's `InnerAccessPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum Policy {
    #[default]
    Accept,
    Drop,
}

impl Policy {
    /// Case-insensitive, as the API takes it (`accept`, `Accept`, `ACCEPT`).
    pub fn parse(s: &str) -> Option<Policy> {
        if s.eq_ignore_ascii_case("accept") {
            Some(Policy::Accept)
        } else if s.eq_ignore_ascii_case("drop") {
            Some(Policy::Drop)
        } else {
            None
        }
    }

    /// Lowercase, the request spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        }
    }

    /// Capitalised, as `DescribeSecurityGroupAttribute` returns both a rule's `Policy` and
    /// the group's `InnerAccessPolicy` (official response examples: `"Policy": "Accept"`).
    pub fn as_describe(self) -> &'static str {
        match self {
            Policy::Accept => "Accept",
            Policy::Drop => "Drop",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api())
    }
}

/// `NicType`. Stored and echoed, never used for matching: feitian models VPC groups, where
/// one rule set governs both private and public traffic and the docs fix NicType at intranet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum NicType {
    Internet,
    /// The default here: VPC-type groups default to (and only really have) intranet.
    #[default]
    Intranet,
}

impl NicType {
    pub fn parse(s: &str) -> Option<NicType> {
        if s.eq_ignore_ascii_case("internet") {
            Some(NicType::Internet)
        } else if s.eq_ignore_ascii_case("intranet") {
            Some(NicType::Intranet)
        } else {
            None
        }
    }

    pub fn as_api(self) -> &'static str {
        match self {
            NicType::Internet => "internet",
            NicType::Intranet => "intranet",
        }
    }
}

impl fmt::Display for NicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api())
    }
}

/// A `PortRange` or `SourcePortRange`: either real ports `a/b` with `1 <= a <= b <= 65535`
/// (tcp/udp) or "any", which the API spells `-1/-1` (icmp/gre/all).
///
/// The representation is private so an invalid range can't be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange(Ports);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ports {
    Any,
    Span(u16, u16),
}

/// Why a port-range string was refused; the validator turns it into an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRangeError {
    /// Not two integers separated by one `/`.
    Format,
    /// Two integers, but not `1 <= a <= b <= 65535` (tcp/udp).
    OutOfRange,
    /// `a > b`, e.g. `200/1`.
    Reversed,
    /// icmp/gre/all with anything but `-1/-1`.
    NotAny,
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRangeError::Format => "it must be two integers separated by \"/\", such as 22/22",
            PortRangeError::OutOfRange => "tcp and udp ports must be between 1 and 65535",
            PortRangeError::Reversed => "the start port must not be greater than the end port",
            PortRangeError::NotAny => "icmp, gre and all take exactly -1/-1",
        })
    }
}

impl PortRange {
    /// Every port; the API's `-1/-1`.
    pub const ANY: PortRange = PortRange(Ports::Any);

    /// `from/to` for tcp/udp; `None` unless `1 <= from <= to`.
    pub fn new(from: u16, to: u16) -> Option<PortRange> {
        (from >= 1 && from <= to).then_some(PortRange(Ports::Span(from, to)))
    }

    /// One port, `p/p`.
    pub fn single(port: u16) -> Option<PortRange> {
        PortRange::new(port, port)
    }

    /// `(from, to)`, or `None` for [`PortRange::ANY`].
    pub fn bounds(&self) -> Option<(u16, u16)> {
        match self.0 {
            Ports::Any => None,
            Ports::Span(a, b) => Some((a, b)),
        }
    }

    pub fn is_any(&self) -> bool {
        self.0 == Ports::Any
    }

    /// Whether a packet's port falls in the range. A packet without a port (icmp, gre, or a
    /// port the caller doesn't know) is only covered by "any".
    pub fn contains(&self, port: Option<u16>) -> bool {
        match (self.0, port) {
            (Ports::Any, _) => true,
            (Ports::Span(a, b), Some(p)) => a <= p && p <= b,
            (Ports::Span(..), None) => false,
        }
    }

    /// Parses the API string for a rule of `protocol`. Never panics: numbers that don't fit
    /// are [`PortRangeError::OutOfRange`], anything else odd is [`PortRangeError::Format`].
    pub fn parse_for(protocol: Protocol, s: &str) -> Result<PortRange, PortRangeError> {
        let (a, b) = s.split_once('/').ok_or(PortRangeError::Format)?;
        let a = parse_port_number(a)?;
        let b = parse_port_number(b)?;
        if !protocol.has_ports() {
            return if a == -1 && b == -1 { Ok(PortRange::ANY) } else { Err(PortRangeError::NotAny) };
        }
        let in_range = |n: i64| (1..=65535).contains(&n);
        if !in_range(a) || !in_range(b) {
            return Err(PortRangeError::OutOfRange);
        }
        if a > b {
            return Err(PortRangeError::Reversed);
        }
        // Both are within 1..=65535, so the conversions can't fail; map_err keeps it total.
        let a = u16::try_from(a).map_err(|_| PortRangeError::OutOfRange)?;
        let b = u16::try_from(b).map_err(|_| PortRangeError::OutOfRange)?;
        PortRange::new(a, b).ok_or(PortRangeError::OutOfRange)
    }
}

/// An optional `-` and 1–10 ASCII digits. Longer digit strings are surely out of range, and
/// capping the length keeps `i64` parsing from ever overflowing.
fn parse_port_number(s: &str) -> Result<i64, PortRangeError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortRangeError::Format);
    }
    if digits.len() > 10 {
        return Err(PortRangeError::OutOfRange);
    }
    let n: i64 = digits.parse().map_err(|_| PortRangeError::OutOfRange)?;
    Ok(if digits.len() == s.len() { n } else { -n })
}

/// The wire form is the API's string (`22/22`, `-1/-1`), read back through the same checks as
/// [`PortRange::new`], so a deserialized range is as valid as a parsed one.
impl TryFrom<String> for PortRange {
    type Error = PortRangeError;

    fn try_from(s: String) -> Result<PortRange, PortRangeError> {
        if s == "-1/-1" {
            return Ok(PortRange::ANY);
        }
        PortRange::parse_for(Protocol::Tcp, &s)
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ports::Any => f.write_str("-1/-1"),
            Ports::Span(a, b) => write!(f, "{a}/{b}"),
        }
    }
}

/// The other end of a rule: the source of an ingress rule, the destination of an egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// `SourceCidrIp` (ingress) / `DestCidrIp` (egress). Stored as the network
    /// (`10.0.0.1/24` becomes `10.0.0.0/24`), a single address as `/32`.
    Cidr(Ipv4Net),
    /// `SourceGroupId` (ingress) / `DestGroupId` (egress): every member of that group, as
    /// it is at the moment a packet is evaluated (members who join later are covered).
    Group {
        group_id: String,
        /// `SourceGroupOwnerAccount` / `DestGroupOwnerAccount` of a cross-account grant.
        owner_account: Option<String>,
        /// `SourceGroupOwnerId` / `DestGroupOwnerId` of a cross-account grant.
        owner_id: Option<String>,
    },
}

/// One validated rule of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// Destination ports of the packet, in both directions.
    pub port_range: PortRange,
    /// Source ports of the packet; `None` is any (the API's empty `SourcePortRange`).
    pub source_port_range: Option<PortRange>,
    pub policy: Policy,
    /// 1..=100, 1 is evaluated first.
    pub priority: u8,
    pub nic_type: NicType,
    /// Ingress: the source. Egress: the destination.
    pub peer: Peer,
    /// The member-side narrowing of a five-tuple rule. Ingress: `DestCidrIp`; egress:
    /// `SourceCidrIp`. `None` covers every member address.
    pub local_cidr: Option<Ipv4Net>,
    pub description: Option<String>,
}

/// The lowest-numbered (first-evaluated) priority.
pub const PRIORITY_MIN: u8 = 1;
/// The highest-numbered (last-evaluated) priority.
pub const PRIORITY_MAX: u8 = 100;
/// What an omitted `Priority` means.
pub const PRIORITY_DEFAULT: u8 = 1;

impl Rule {
    /// The identity of a rule for idempotent authorize and field-based revoke: equal on
    /// every field except `description`. CIDRs compare as networks and a `-1/-1` source
    /// port range equals an absent one, so spelling differences don't make two rules.
    pub fn same_rule(&self, other: &Rule) -> bool {
        self.same_rule_except_priority(other) && self.priority == other.priority
    }

    /// [`Rule::same_rule`] without `priority`. The public `RevokeSecurityGroup` docs name a
    /// rule by source, `PortRange`, `IpProtocol` and `Policy` only, so a revoke that omits
    /// `Priority` (which then defaults to 1) may be meant to hit a rule of another priority;
    /// the service layer decides which of the two identities it applies.
    pub fn same_rule_except_priority(&self, other: &Rule) -> bool {
        self.direction == other.direction
            && self.protocol == other.protocol
            && self.port_range == other.port_range
            && effective_ports(self.source_port_range) == effective_ports(other.source_port_range)
            && self.policy == other.policy
            && self.nic_type == other.nic_type
            && canonical_peer(&self.peer) == canonical_peer(&other.peer)
            && self.local_cidr.map(|n| n.trunc()) == other.local_cidr.map(|n| n.trunc())
    }

    /// The rule as `DescribeSecurityGroupAttribute` spells it (`Permissions.Permission[]`).
    pub fn to_fields(&self) -> RuleFields {
        let (peer_cidr, group_id, owner_account, owner_id) = match &self.peer {
            Peer::Cidr(net) => (net.trunc().to_string(), "", "", ""),
            Peer::Group { group_id, owner_account, owner_id } => (
                String::new(),
                group_id.as_str(),
                owner_account.as_deref().unwrap_or(""),
                owner_id.as_deref().unwrap_or(""),
            ),
        };
        let local = self.local_cidr.map(|n| n.trunc().to_string()).unwrap_or_default();
        let mut out = RuleFields {
            direction: self.direction.as_api().to_string(),
            ip_protocol: self.protocol.as_describe().to_string(),
            port_range: self.port_range.to_string(),
            source_port_range: self.source_port_range.map(|r| r.to_string()).unwrap_or_default(),
            policy: self.policy.as_describe().to_string(),
            priority: self.priority.to_string(),
            nic_type: self.nic_type.as_api().to_string(),
            description: self.description.clone().unwrap_or_default(),
            ..RuleFields::default()
        };
        match self.direction {
            Direction::Ingress => {
                out.source_cidr_ip = peer_cidr;
                out.source_group_id = group_id.to_string();
                out.source_group_owner_account = owner_account.to_string();
                out.source_group_owner_id = owner_id.to_string();
                out.dest_cidr_ip = local;
            }
            Direction::Egress => {
                out.dest_cidr_ip = peer_cidr;
                out.dest_group_id = group_id.to_string();
                out.dest_group_owner_account = owner_account.to_string();
                out.dest_group_owner_id = owner_id.to_string();
                out.source_cidr_ip = local;
            }
        }
        out
    }
}

/// `-1/-1` given for an icmp/gre/all rule means the same as no source port range.
fn effective_ports(r: Option<PortRange>) -> Option<PortRange> {
    r.filter(|r| !r.is_any())
}

fn canonical_peer(p: &Peer) -> Peer {
    match p {
        Peer::Cidr(net) => Peer::Cidr(net.trunc()),
        other => other.clone(),
    }
}

/// A rule in the API's output vocabulary: one string per field of
/// `DescribeSecurityGroupAttribute`'s `Permission`, `""` where the field is empty (the real
/// service returns empty strings, not absent keys). Group names and `CreateTime`,
/// `SecurityGroupRuleId` belong to the service layer, which knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleFields {
    /// `ingress` | `egress`.
    pub direction: String,
    /// Uppercase (`TCP`, `ALL`). The spec asks for lowercase out, but the public docs'
    /// response examples and real responses show uppercase, and the spec yields to them.
    pub ip_protocol: String,
    /// `a/b` or `-1/-1`.
    pub port_range: String,
    pub source_port_range: String,
    /// `Accept` | `Drop`.
    pub policy: String,
    /// Decimal, as a string: the current official SDK models declare `Priority` a string.
    pub priority: String,
    pub nic_type: String,
    pub source_cidr_ip: String,
    pub dest_cidr_ip: String,
    pub source_group_id: String,
    pub dest_group_id: String,
    pub source_group_owner_account: String,
    pub source_group_owner_id: String,
    pub dest_group_owner_account: String,
    pub dest_group_owner_id: String,
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vector_world_survives_the_wire() {
        // The host contract carries worlds between the control plane and the agents.
        for scenario in crate::vectors::all() {
            let world = scenario.world().expect("vector validates");
            let text = serde_json::to_string(&world).expect("serializes");
            let back: crate::World = serde_json::from_str(&text).expect("deserializes");
            assert_eq!(back, world, "{}", scenario.name);
        }
    }

    #[test]
    fn port_ranges_travel_as_api_strings_and_are_checked_on_the_way_in() {
        let r = PortRange::new(80, 443).expect("range");
        assert_eq!(serde_json::to_string(&r).expect("serializes"), "\"80/443\"");
        assert_eq!(serde_json::from_str::<PortRange>("\"-1/-1\"").expect("any"), PortRange::ANY);
        for bad in ["\"200/1\"", "\"0/5\"", "\"x\"", "\"1/70000\""] {
            assert!(serde_json::from_str::<PortRange>(bad).is_err(), "{bad}");
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    fn rule() -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            port_range: PortRange::single(22).expect("22"),
            source_port_range: None,
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            peer: Peer::Cidr(net("10.0.0.0/8")),
            local_cidr: None,
            description: None,
        }
    }

    #[test]
    fn protocol_parses_case_insensitively_and_renders_both_cases() {
        assert_eq!(Protocol::parse("TCP"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("tCp"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("All"), Some(Protocol::All));
        assert_eq!(Protocol::parse("icmpv6"), None);
        assert_eq!(Protocol::parse("6"), None);
        assert_eq!(Protocol::parse(""), None);
        assert_eq!(Protocol::parse("ＴＣＰ"), None);
        assert_eq!(Protocol::Gre.as_api(), "gre");
        assert_eq!(Protocol::Gre.as_describe(), "GRE");
    }

    #[test]
    fn policy_and_nic_type_parse_and_default() {
        assert_eq!(Policy::parse("DROP"), Some(Policy::Drop));
        assert_eq!(Policy::parse("allow"), None);
        assert_eq!(Policy::default(), Policy::Accept);
        assert_eq!(Policy::Drop.as_api(), "drop");
        assert_eq!(Policy::Drop.as_describe(), "Drop");
        assert_eq!(NicType::default(), NicType::Intranet);
        assert_eq!(NicType::parse("Internet"), Some(NicType::Internet));
    }

    #[test]
    fn port_ranges_parse_per_protocol() {
        let tcp = |s| PortRange::parse_for(Protocol::Tcp, s);
        assert_eq!(tcp("22/22").map(|r| r.to_string()), Ok("22/22".into()));
        assert_eq!(tcp("1/65535").map(|r| r.bounds()), Ok(Some((1, 65535))));
        assert_eq!(tcp("022/0022").map(|r| r.to_string()), Ok("22/22".into()));
        assert_eq!(tcp("200/1"), Err(PortRangeError::Reversed));
        assert_eq!(tcp("0/22"), Err(PortRangeError::OutOfRange));
        assert_eq!(tcp("1/65536"), Err(PortRangeError::OutOfRange));
        assert_eq!(tcp("-1/-1"), Err(PortRangeError::OutOfRange));
        assert_eq!(tcp("99999999999999999999999/1"), Err(PortRangeError::OutOfRange));
        assert_eq!(tcp("22"), Err(PortRangeError::Format));
        assert_eq!(tcp("22/22/22"), Err(PortRangeError::Format));
        assert_eq!(tcp("+1/2"), Err(PortRangeError::Format));
        assert_eq!(tcp(" 1/2"), Err(PortRangeError::Format));
        assert_eq!(tcp("/"), Err(PortRangeError::Format));
        assert_eq!(tcp("--1/2"), Err(PortRangeError::Format));
        assert_eq!(tcp("１/２"), Err(PortRangeError::Format));
        let icmp = |s| PortRange::parse_for(Protocol::Icmp, s);
        assert_eq!(icmp("-1/-1"), Ok(PortRange::ANY));
        assert_eq!(icmp("1/2"), Err(PortRangeError::NotAny));
        assert_eq!(PortRange::parse_for(Protocol::All, "1/65535"), Err(PortRangeError::NotAny));
        assert_eq!(PortRange::parse_for(Protocol::Gre, "-1/-1"), Ok(PortRange::ANY));
        assert_eq!(PortRange::ANY.to_string(), "-1/-1");
    }

    #[test]
    fn port_range_containment() {
        let r = PortRange::new(80, 90).expect("80/90");
        assert!(r.contains(Some(80)) && r.contains(Some(90)));
        assert!(!r.contains(Some(79)) && !r.contains(Some(91)) && !r.contains(None));
        assert!(PortRange::ANY.contains(None) && PortRange::ANY.contains(Some(1)));
        assert_eq!(PortRange::new(0, 1), None);
        assert_eq!(PortRange::new(5, 4), None);
    }

    #[test]
    fn identity_ignores_description_and_spelling_only() {
        let a = rule();
        let mut b = rule();
        b.description = Some("other words".into());
        b.peer = Peer::Cidr(net("10.1.2.3/8"));
        assert!(a.same_rule(&b), "description and host bits don't make a new rule");
        let mut c = rule();
        c.priority = 2;
        assert!(!a.same_rule(&c));
        assert!(a.same_rule_except_priority(&c));
        let mut d = rule();
        d.policy = Policy::Drop;
        assert!(!a.same_rule(&d));
        let mut e = rule();
        e.local_cidr = Some(net("192.168.0.1/32"));
        assert!(!a.same_rule(&e));
        let mut f = rule();
        f.source_port_range = PortRange::single(22);
        assert!(!a.same_rule(&f));

        let mut icmp = rule();
        icmp.protocol = Protocol::Icmp;
        icmp.port_range = PortRange::ANY;
        let mut icmp_any = icmp.clone();
        icmp_any.source_port_range = Some(PortRange::ANY);
        assert!(icmp.same_rule(&icmp_any));
    }

    #[test]
    fn fields_for_ingress_and_egress() {
        let mut r = rule();
        r.local_cidr = Some(net("192.168.1.7/32"));
        r.description = Some("ssh".into());
        let f = r.to_fields();
        assert_eq!(f.direction, "ingress");
        assert_eq!(f.ip_protocol, "TCP");
        assert_eq!(f.port_range, "22/22");
        assert_eq!(f.source_port_range, "");
        assert_eq!(f.policy, "Accept");
        assert_eq!(f.priority, "1");
        assert_eq!(f.nic_type, "intranet");
        assert_eq!(f.source_cidr_ip, "10.0.0.0/8");
        assert_eq!(f.dest_cidr_ip, "192.168.1.7/32");
        assert_eq!(f.source_group_id, "");
        assert_eq!(f.description, "ssh");

        let mut e = rule();
        e.direction = Direction::Egress;
        e.policy = Policy::Drop;
        e.source_port_range = PortRange::single(22);
        e.peer = Peer::Group { group_id: "sg-b".into(), owner_account: Some("B".into()), owner_id: None };
        e.local_cidr = Some(net("172.16.1.0/32"));
        let f = e.to_fields();
        assert_eq!(f.direction, "egress");
        assert_eq!(f.policy, "Drop");
        assert_eq!(f.source_port_range, "22/22");
        assert_eq!(f.dest_group_id, "sg-b");
        assert_eq!(f.dest_group_owner_account, "B");
        assert_eq!(f.dest_group_owner_id, "");
        assert_eq!(f.dest_cidr_ip, "");
        assert_eq!(f.source_cidr_ip, "172.16.1.0/32");
        assert_eq!(f.source_group_id, "");
    }
}
