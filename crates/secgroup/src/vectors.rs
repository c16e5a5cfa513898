//! The spec's test vectors as data, shared by the evaluator's unit tests and the data-plane
//! tests (real packets through nftables), so both prove the same facts.
//!
//! A [`Scenario`] holds groups whose rules are kept as the raw API parameters
//! ([`RuleInput`], sendable as-is with [`RuleInput::params`] to
//! `AuthorizeSecurityGroup[Egress]`), the interfaces and their memberships, and
//! [`Case`]s: the first packet of a new connection and whether the connection must be
//! allowed. Statefulness is implied: every allowed case's replies must pass too, and a
//! data-plane test should check that they do.
//!
//! Addresses: members use 192.168.0.0/16 (and 172.16.1.0–1 where the guide names them);
//! "outside" peers use the documentation ranges 198.51.100.0/24 and 203.0.113.0/24, and
//! 10.0.0.1–2 in the egress five-tuple vector, as in the guide.

use crate::error::RuleError;
use crate::eval::{Endpoint, Group, Nic, Packet, World};
use crate::rule::{Direction, Policy};
use crate::validate::{validate, RuleInput};
use std::net::Ipv4Addr;

/// One self-contained world and what must hold in it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// Where the vector comes from and what it shows.
    pub summary: &'static str,
    pub groups: Vec<GroupSpec>,
    pub nics: Vec<Nic>,
    pub cases: Vec<Case>,
}

/// A group as a client would create it: `CreateSecurityGroup`, then
/// `ModifySecurityGroupPolicy(InnerAccessPolicy)`, then one authorize call per rule.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub id: &'static str,
    /// The owning account.
    pub owner: &'static str,
    pub inner_policy: Policy,
    /// In authorization order (a rule's index in [`Group::rules`] is its position here).
    pub rules: Vec<RuleSpec>,
}

/// One `AuthorizeSecurityGroup` (ingress) or `AuthorizeSecurityGroupEgress` call.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub direction: Direction,
    pub input: RuleInput<'static>,
}

/// A new connection and its expected fate.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// The connection's first packet; its addresses are the endpoints' addresses.
    pub packet: Packet,
    pub allowed: bool,
}

impl Scenario {
    /// The evaluator's world, with every rule put through [`validate()`] (so a vector can't
    /// hold a rule the API would refuse).
    pub fn world(&self) -> Result<World, RuleError> {
        let mut world = World::new();
        for g in &self.groups {
            let rules = g.rules.iter().map(|r| validate(r.direction, &r.input)).collect::<Result<Vec<_>, _>>()?;
            world.add_group(Group {
                id: g.id.to_string(),
                owner: g.owner.to_string(),
                inner_policy: g.inner_policy,
                rules,
            });
        }
        for n in &self.nics {
            world.add_nic(n.clone());
        }
        Ok(world)
    }
}

/// Every scenario below.
pub fn all() -> Vec<Scenario> {
    vec![
        three_groups(),
        sg_database(),
        egress_five_tuple(),
        intra_group_drop_with_accept_rule(),
        cross_account(),
        priority_order(),
        member_side_narrowing(),
        egress_to_group(),
    ]
}

/// The guide's worked case: ECS1↔ECS2 connected (Group2), ECS2↔ECS3 connected (Group3),
/// ECS1↔ECS3 isolated. Group1's `Drop` inner policy doesn't stop ECS1↔ECS2, because
/// Group2 (which they also share) accepts.
pub fn three_groups() -> Scenario {
    let ecs1 = At::nic("ecs1", [192, 168, 1, 1]);
    let ecs2 = At::nic("ecs2", [192, 168, 1, 2]);
    let ecs3 = At::nic("ecs3", [192, 168, 1, 3]);
    let outside = At::outside([198, 51, 100, 10]);
    Scenario {
        name: "three-groups",
        summary: "Guide chapter 1 worked case: membership alone decides who reaches whom.",
        groups: vec![
            group("group1", "A", Policy::Drop, vec![]),
            group("group2", "A", Policy::Accept, vec![]),
            group("group3", "A", Policy::Accept, vec![]),
        ],
        nics: vec![
            ecs1.member("A", &["group1", "group2"]),
            ecs2.member("A", &["group1", "group2", "group3"]),
            ecs3.member("A", &["group3"]),
        ],
        cases: vec![
            tcp("ECS1 -> ECS2 tcp/22 via Group2", &ecs1, &ecs2, 22, true),
            tcp("ECS2 -> ECS1 tcp/22 via Group2", &ecs2, &ecs1, 22, true),
            icmp("ECS1 -> ECS2 icmp via Group2", &ecs1, &ecs2, true),
            tcp("ECS2 -> ECS3 tcp/80 via Group3", &ecs2, &ecs3, 80, true),
            udp("ECS3 -> ECS2 udp/53 via Group3", &ecs3, &ecs2, 53, true),
            tcp("ECS1 -> ECS3 tcp/22 isolated", &ecs1, &ecs3, 22, false),
            icmp("ECS3 -> ECS1 icmp isolated", &ecs3, &ecs1, false),
            udp("ECS1 -> ECS3 udp/53 isolated", &ecs1, &ecs3, 53, false),
            tcp("outside -> ECS1 tcp/22 default deny", &outside, &ecs1, 22, false),
            tcp("ECS1 -> outside tcp/443 default allow", &ecs1, &outside, 443, true),
        ],
    }
}

/// sg-database: `drop tcp 3306 from 0.0.0.0/0 priority 100` plus
/// `accept tcp 3306 from SourceGroupId=sg-web priority 2`. Web members reach MySQL;
/// nobody else does, not even other members of sg-database (whose inner policy is
/// `Accept`): the explicit drop comes before intra-group access, which is last of all.
pub fn sg_database() -> Scenario {
    let web1 = At::nic("web1", [192, 168, 2, 10]);
    let web2 = At::nic("web2", [192, 168, 2, 11]);
    let db1 = At::nic("db1", [192, 168, 2, 20]);
    let db2 = At::nic("db2", [192, 168, 2, 21]);
    let other = At::nic("other1", [192, 168, 2, 30]);
    let outside = At::outside([203, 0, 113, 9]);
    Scenario {
        name: "sg-database",
        summary: "Guide: only sg-web reaches MySQL on sg-database; intra-group access is last.",
        groups: vec![
            group("sg-web", "A", Policy::Accept, vec![]),
            group(
                "sg-database",
                "A",
                Policy::Accept,
                vec![
                    ingress(RuleInput {
                        ip_protocol: Some("tcp"),
                        port_range: Some("3306/3306"),
                        source_cidr_ip: Some("0.0.0.0/0"),
                        policy: Some("drop"),
                        priority: Some("100"),
                        ..RuleInput::default()
                    }),
                    ingress(RuleInput {
                        ip_protocol: Some("tcp"),
                        port_range: Some("3306/3306"),
                        source_group_id: Some("sg-web"),
                        policy: Some("accept"),
                        priority: Some("2"),
                        ..RuleInput::default()
                    }),
                ],
            ),
            group("sg-other", "A", Policy::Accept, vec![]),
        ],
        nics: vec![
            web1.member("A", &["sg-web"]),
            web2.member("A", &["sg-web"]),
            db1.member("A", &["sg-database"]),
            db2.member("A", &["sg-database"]),
            other.member("A", &["sg-other"]),
        ],
        cases: vec![
            tcp("web1 -> db1 tcp/3306 granted to sg-web", &web1, &db1, 3306, true),
            tcp("web2 -> db2 tcp/3306 granted to sg-web", &web2, &db2, 3306, true),
            tcp("other1 -> db1 tcp/3306 dropped", &other, &db1, 3306, false),
            tcp("outside -> db1 tcp/3306 dropped", &outside, &db1, 3306, false),
            tcp("db2 -> db1 tcp/3306 drop beats intra-group", &db2, &db1, 3306, false),
            tcp("db2 -> db1 tcp/22 intra-group", &db2, &db1, 22, true),
            tcp("web1 -> db1 tcp/22 no rule, no shared group", &web1, &db1, 22, false),
            tcp("db1 -> web1 tcp/80 no rule on sg-web", &db1, &web1, 80, false),
        ],
    }
}

/// Egress five-tuple: `drop tcp src 172.16.1.0/32 srcport 22 -> 10.0.0.1/32` blocks that
/// flow (to any destination port) and nothing else.
pub fn egress_five_tuple() -> Scenario {
    let n1 = At::nic("eni-172-16-1-0", [172, 16, 1, 0]);
    let n2 = At::nic("eni-172-16-1-1", [172, 16, 1, 1]);
    let target = At::outside([10, 0, 0, 1]);
    let elsewhere = At::outside([10, 0, 0, 2]);
    Scenario {
        name: "egress-five-tuple",
        summary: "Guide: a five-tuple egress drop hits exactly its flow.",
        groups: vec![group(
            "sg-five-tuple",
            "A",
            Policy::Accept,
            vec![egress(RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("1/65535"),
                source_port_range: Some("22/22"),
                source_cidr_ip: Some("172.16.1.0/32"),
                dest_cidr_ip: Some("10.0.0.1/32"),
                policy: Some("drop"),
                priority: Some("1"),
                ..RuleInput::default()
            })],
        )],
        nics: vec![n1.member("A", &["sg-five-tuple"]), n2.member("A", &["sg-five-tuple"])],
        cases: vec![
            tcp_from("172.16.1.0:22 -> 10.0.0.1:80 tcp dropped", &n1, 22, &target, 80, false),
            tcp_from("172.16.1.0:22 -> 10.0.0.1:22 tcp dropped", &n1, 22, &target, 22, false),
            tcp_from("other source port passes", &n1, 2222, &target, 80, true),
            tcp_from("other destination passes", &n1, 22, &elsewhere, 80, true),
            tcp_from("other source address passes", &n2, 22, &target, 80, true),
            udp_from("udp on the same five-tuple passes", &n1, 22, &target, 80, true),
            icmp("icmp to the same address passes", &n1, &target, true),
        ],
    }
}

/// A group whose inner policy is `Drop`, with an explicit accept for its own members on
/// tcp/80: the rule lets that traffic through, everything else between members is denied.
pub fn intra_group_drop_with_accept_rule() -> Scenario {
    let a1 = At::nic("app1", [192, 168, 3, 1]);
    let a2 = At::nic("app2", [192, 168, 3, 2]);
    let outside = At::outside([198, 51, 100, 7]);
    Scenario {
        name: "intra-group-drop",
        summary: "InnerAccessPolicy=Drop; an explicit accept rule still lets its traffic through.",
        groups: vec![group(
            "sg-app",
            "A",
            Policy::Drop,
            vec![ingress(RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("80/80"),
                source_group_id: Some("sg-app"),
                ..RuleInput::default()
            })],
        )],
        nics: vec![a1.member("A", &["sg-app"]), a2.member("A", &["sg-app"])],
        cases: vec![
            tcp("app1 -> app2 tcp/80 explicit accept", &a1, &a2, 80, true),
            tcp("app2 -> app1 tcp/80 explicit accept", &a2, &a1, 80, true),
            tcp("app1 -> app2 tcp/22 inner drop", &a1, &a2, 22, false),
            icmp("app2 -> app1 icmp inner drop", &a2, &a1, false),
            tcp("outside -> app1 tcp/80 not a member", &outside, &a1, 80, false),
        ],
    }
}

/// Cross-account grant: account A's sg-a lets in account B's sg-b (named with
/// `SourceGroupOwnerAccount=B`) on tcp/22. `b2` stands for an instance that joined sg-b
/// after the rule was written: membership is read when the packet is evaluated. A grant
/// naming sg-c with the wrong owner (B, but sg-c is C's) matches nothing.
pub fn cross_account() -> Scenario {
    let a1 = At::nic("a1", [192, 168, 4, 1]);
    let b1 = At::nic("b1", [192, 168, 4, 2]);
    let b2 = At::nic("b2-joined-later", [192, 168, 4, 3]);
    let c1 = At::nic("c1", [192, 168, 4, 4]);
    let outside = At::outside([198, 51, 100, 7]);
    Scenario {
        name: "cross-account",
        summary: "Guide: SourceGroupId + SourceGroupOwnerAccount admits another account's group.",
        groups: vec![
            group(
                "sg-a",
                "A",
                Policy::Accept,
                vec![
                    ingress(RuleInput {
                        ip_protocol: Some("tcp"),
                        port_range: Some("22/22"),
                        source_group_id: Some("sg-b"),
                        source_group_owner_account: Some("B"),
                        ..RuleInput::default()
                    }),
                    ingress(RuleInput {
                        ip_protocol: Some("tcp"),
                        port_range: Some("80/80"),
                        source_group_id: Some("sg-c"),
                        source_group_owner_account: Some("B"),
                        ..RuleInput::default()
                    }),
                ],
            ),
            group("sg-b", "B", Policy::Accept, vec![]),
            group("sg-c", "C", Policy::Accept, vec![]),
        ],
        nics: vec![
            a1.member("A", &["sg-a"]),
            b1.member("B", &["sg-b"]),
            b2.member("B", &["sg-b"]),
            c1.member("C", &["sg-c"]),
        ],
        cases: vec![
            tcp("b1 -> a1 tcp/22 cross-account grant", &b1, &a1, 22, true),
            tcp("b2 (joined later) -> a1 tcp/22", &b2, &a1, 22, true),
            tcp("b1 -> a1 tcp/80 not granted", &b1, &a1, 80, false),
            tcp("c1 -> a1 tcp/80 wrong owner in the grant", &c1, &a1, 80, false),
            tcp("c1 -> a1 tcp/22 not sg-b", &c1, &a1, 22, false),
            tcp("outside -> a1 tcp/22", &outside, &a1, 22, false),
        ],
    }
}

/// Priority order across the union of an interface's groups: lower number first, drop
/// before accept at equal priority, whichever group the rules come from.
pub fn priority_order() -> Scenario {
    let p1 = At::nic("p1", [192, 168, 5, 1]);
    let blocked = At::outside([203, 0, 113, 5]);
    let elsewhere = At::outside([198, 51, 100, 7]);
    let rule = |port: &'static str, from: &'static str, policy: &'static str, priority: &'static str| {
        ingress(RuleInput {
            ip_protocol: Some("tcp"),
            port_range: Some(port),
            source_cidr_ip: Some(from),
            policy: Some(policy),
            priority: Some(priority),
            ..RuleInput::default()
        })
    };
    Scenario {
        name: "priority-order",
        summary: "Spec evaluation steps 2-3: priority ascending, drop before accept on ties.",
        groups: vec![
            group(
                "sg-p",
                "A",
                Policy::Accept,
                vec![
                    rule("80/80", "0.0.0.0/0", "accept", "5"),
                    rule("80/80", "203.0.113.0/24", "drop", "1"),
                    rule("443/443", "0.0.0.0/0", "accept", "10"),
                    rule("443/443", "0.0.0.0/0", "drop", "10"),
                    rule("8080/8080", "0.0.0.0/0", "accept", "1"),
                    rule("9000/9000", "0.0.0.0/0", "accept", "4"),
                ],
            ),
            group(
                "sg-q",
                "A",
                Policy::Accept,
                vec![rule("8080/8080", "0.0.0.0/0", "drop", "2"), rule("9000/9000", "0.0.0.0/0", "drop", "3")],
            ),
        ],
        nics: vec![p1.member("A", &["sg-p", "sg-q"])],
        cases: vec![
            tcp("drop/1 beats accept/5", &blocked, &p1, 80, false),
            tcp("accept/5 when drop/1 misses", &elsewhere, &p1, 80, true),
            tcp("drop before accept at priority 10", &elsewhere, &p1, 443, false),
            tcp("accept/1 in sg-p beats drop/2 in sg-q", &elsewhere, &p1, 8080, true),
            tcp("drop/3 in sg-q beats accept/4 in sg-p", &elsewhere, &p1, 9000, false),
        ],
    }
}

/// An ingress rule's `DestCidrIp` narrows the members it covers (the ingress half of the
/// five-tuple form).
pub fn member_side_narrowing() -> Scenario {
    let n1 = At::nic("n1", [192, 168, 6, 1]);
    let n2 = At::nic("n2", [192, 168, 6, 2]);
    let outside = At::outside([198, 51, 100, 7]);
    Scenario {
        name: "member-side-narrowing",
        summary: "Ingress DestCidrIp: the rule covers only the members inside it.",
        groups: vec![group(
            "sg-n",
            "A",
            Policy::Accept,
            vec![ingress(RuleInput {
                ip_protocol: Some("tcp"),
                port_range: Some("22/22"),
                source_cidr_ip: Some("0.0.0.0/0"),
                dest_cidr_ip: Some("192.168.6.1"),
                ..RuleInput::default()
            })],
        )],
        nics: vec![n1.member("A", &["sg-n"]), n2.member("A", &["sg-n"])],
        cases: vec![
            tcp("outside -> n1 tcp/22 inside DestCidrIp", &outside, &n1, 22, true),
            tcp("outside -> n2 tcp/22 outside DestCidrIp", &outside, &n2, 22, false),
        ],
    }
}

/// An egress rule naming a group (`DestGroupId`) filters traffic to that group's members
/// at the sender, even where the receiver would accept it.
pub fn egress_to_group() -> Scenario {
    let w1 = At::nic("w1", [192, 168, 7, 1]);
    let k1 = At::nic("k1", [192, 168, 7, 2]);
    let outside = At::outside([198, 51, 100, 7]);
    let from_web = |port: &'static str| {
        ingress(RuleInput {
            ip_protocol: Some("tcp"),
            port_range: Some(port),
            source_group_id: Some("sg-front"),
            ..RuleInput::default()
        })
    };
    Scenario {
        name: "egress-to-group",
        summary: "Egress DestGroupId: the sender's own drop wins over the receiver's accept.",
        groups: vec![
            group(
                "sg-front",
                "A",
                Policy::Accept,
                vec![egress(RuleInput {
                    ip_protocol: Some("tcp"),
                    port_range: Some("6379/6379"),
                    dest_group_id: Some("sg-cache"),
                    policy: Some("drop"),
                    ..RuleInput::default()
                })],
            ),
            group("sg-cache", "A", Policy::Accept, vec![from_web("6379/6379"), from_web("11211/11211")]),
        ],
        nics: vec![w1.member("A", &["sg-front"]), k1.member("A", &["sg-cache"])],
        cases: vec![
            tcp("w1 -> k1 tcp/6379 dropped at egress", &w1, &k1, 6379, false),
            tcp("w1 -> k1 tcp/11211 allowed both ways", &w1, &k1, 11211, true),
            tcp("w1 -> outside tcp/6379 not a member", &w1, &outside, 6379, true),
        ],
    }
}

// --- building blocks ------------------------------------------------------------------

/// An endpoint with its address, so cases can't disagree with the world about addresses.
#[derive(Debug, Clone)]
struct At {
    endpoint: Endpoint,
    ip: Ipv4Addr,
}

impl At {
    fn nic(id: &str, ip: [u8; 4]) -> At {
        At { endpoint: Endpoint::nic(id), ip: Ipv4Addr::from(ip) }
    }

    fn outside(ip: [u8; 4]) -> At {
        let ip = Ipv4Addr::from(ip);
        At { endpoint: Endpoint::Outside(ip), ip }
    }

    /// The interface this endpoint is, in `groups`. Only called on [`At::nic`] endpoints;
    /// an outside one would yield an interface with an empty id, which no case names.
    fn member(&self, owner: &str, groups: &[&str]) -> Nic {
        let id = match &self.endpoint {
            Endpoint::Nic(id) => id.clone(),
            Endpoint::Outside(_) => String::new(),
        };
        Nic { id, owner: owner.to_string(), ip: self.ip, groups: groups.iter().map(|g| g.to_string()).collect() }
    }
}

/// The client port of every case that doesn't care about it.
const EPHEMERAL: u16 = 40000;

fn case(name: &'static str, src: &At, dst: &At, packet: Packet, allowed: bool) -> Case {
    Case { name, src: src.endpoint.clone(), dst: dst.endpoint.clone(), packet, allowed }
}

fn tcp(name: &'static str, src: &At, dst: &At, port: u16, allowed: bool) -> Case {
    tcp_from(name, src, EPHEMERAL, dst, port, allowed)
}

fn tcp_from(name: &'static str, src: &At, sport: u16, dst: &At, dport: u16, allowed: bool) -> Case {
    case(name, src, dst, Packet::tcp(src.ip, sport, dst.ip, dport), allowed)
}

fn udp(name: &'static str, src: &At, dst: &At, port: u16, allowed: bool) -> Case {
    udp_from(name, src, EPHEMERAL, dst, port, allowed)
}

fn udp_from(name: &'static str, src: &At, sport: u16, dst: &At, dport: u16, allowed: bool) -> Case {
    case(name, src, dst, Packet::udp(src.ip, sport, dst.ip, dport), allowed)
}

fn icmp(name: &'static str, src: &At, dst: &At, allowed: bool) -> Case {
    case(name, src, dst, Packet::icmp(src.ip, dst.ip), allowed)
}

fn group(id: &'static str, owner: &'static str, inner_policy: Policy, rules: Vec<RuleSpec>) -> GroupSpec {
    GroupSpec { id, owner, inner_policy, rules }
}

fn ingress(input: RuleInput<'static>) -> RuleSpec {
    RuleSpec { direction: Direction::Ingress, input }
}

fn egress(input: RuleInput<'static>) -> RuleSpec {
    RuleSpec { direction: Direction::Egress, input }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{connection, connection_allowed, Reason};
    use std::collections::BTreeSet;

    fn world_of(s: &Scenario) -> World {
        match s.world() {
            Ok(w) => w,
            Err(e) => panic!("{}: a rule is refused: {e}", s.name),
        }
    }

    /// Every case of every scenario, through the evaluator.
    #[test]
    fn every_vector_holds() {
        let mut failures = Vec::new();
        for s in all() {
            let w = world_of(&s);
            for c in &s.cases {
                match connection_allowed(&w, &c.src, &c.dst, &c.packet) {
                    Ok(got) if got == c.allowed => {}
                    Ok(got) => failures.push(format!("{} / {}: expected {}, got {got}", s.name, c.name, c.allowed)),
                    Err(e) => failures.push(format!("{} / {}: {e}", s.name, c.name)),
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// The vectors are consistent data: unique names and ids, cases only name known
    /// interfaces, packets carry the endpoints' addresses, every interface's groups exist.
    #[test]
    fn vectors_are_well_formed() {
        let scenarios = all();
        let names: BTreeSet<_> = scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), scenarios.len());
        for s in &scenarios {
            let w = world_of(s);
            assert_eq!(w.nics.len(), s.nics.len(), "{}: duplicate interface id", s.name);
            assert_eq!(w.groups.len(), s.groups.len(), "{}: duplicate group id", s.name);
            assert!(!s.cases.is_empty());
            let case_names: BTreeSet<_> = s.cases.iter().map(|c| c.name).collect();
            assert_eq!(case_names.len(), s.cases.len(), "{}: duplicate case name", s.name);
            for n in w.nics.values() {
                assert!(!n.id.is_empty());
                for g in &n.groups {
                    assert!(w.groups.contains_key(g), "{}: {} in unknown {g}", s.name, n.id);
                }
            }
            for c in &s.cases {
                for (end, addr) in [(&c.src, c.packet.src_ip), (&c.dst, c.packet.dst_ip)] {
                    match end {
                        Endpoint::Nic(id) => {
                            assert_eq!(w.nics.get(id).map(|n| n.ip), Some(addr), "{} / {}", s.name, c.name)
                        }
                        Endpoint::Outside(ip) => assert_eq!(*ip, addr, "{} / {}", s.name, c.name),
                    }
                }
            }
        }
    }

    #[test]
    fn three_groups_reasons() {
        let s = three_groups();
        let w = world_of(&s);
        let c = &s.cases[0];
        let v = connection(&w, &c.src, &c.dst, &c.packet).expect("evaluates");
        assert_eq!(v.ingress.map(|d| d.reason), Some(Reason::IntraGroup("group2".into())));
        assert_eq!(v.egress.map(|d| d.reason), Some(Reason::DefaultAllowEgress));
    }

    #[test]
    fn sg_database_reasons() {
        let s = sg_database();
        let w = world_of(&s);
        let reason = |name: &str| {
            let c = s.cases.iter().find(|c| c.name == name).expect("case exists");
            connection(&w, &c.src, &c.dst, &c.packet).expect("evaluates").ingress.map(|d| d.reason)
        };
        assert_eq!(
            reason("web1 -> db1 tcp/3306 granted to sg-web"),
            Some(Reason::Rule { group_id: "sg-database".into(), index: 1, priority: 2, policy: Policy::Accept })
        );
        assert_eq!(
            reason("db2 -> db1 tcp/3306 drop beats intra-group"),
            Some(Reason::Rule { group_id: "sg-database".into(), index: 0, priority: 100, policy: Policy::Drop })
        );
        assert_eq!(reason("db2 -> db1 tcp/22 intra-group"), Some(Reason::IntraGroup("sg-database".into())));
    }

    /// The grant covers an instance that joins sg-b after the rule was authorized.
    #[test]
    fn cross_account_covers_later_members() {
        let s = cross_account();
        let mut w = world_of(&s);
        let c = s.cases.iter().find(|c| c.name == "b2 (joined later) -> a1 tcp/22").expect("case exists");
        let b2 = "b2-joined-later";
        if let Some(n) = w.nics.get_mut(b2) {
            n.groups.clear();
            n.groups.push("sg-c".into());
        }
        assert_eq!(connection_allowed(&w, &c.src, &c.dst, &c.packet), Ok(false));
        if let Some(n) = w.nics.get_mut(b2) {
            n.groups.push("sg-b".into());
        }
        assert_eq!(connection_allowed(&w, &c.src, &c.dst, &c.packet), Ok(true));
    }

    /// Stateful: replies of an allowed connection are not evaluated, even where a new
    /// connection the other way is denied.
    #[test]
    fn replies_are_not_new_connections() {
        let s = three_groups();
        let w = world_of(&s);
        let out = s.cases.iter().find(|c| c.name == "ECS1 -> outside tcp/443 default allow").expect("case exists");
        assert_eq!(connection_allowed(&w, &out.src, &out.dst, &out.packet), Ok(true));
        // The same packets as a *new* connection from outside would be refused.
        assert_eq!(connection_allowed(&w, &out.dst, &out.src, &out.packet.reply()), Ok(false));
    }

    #[test]
    fn vector_rules_are_sendable_to_the_api() {
        let s = sg_database();
        let db = s.groups.iter().find(|g| g.id == "sg-database").expect("group");
        assert_eq!(
            db.rules[1].input.params(),
            vec![
                ("IpProtocol", "tcp"),
                ("PortRange", "3306/3306"),
                ("Policy", "accept"),
                ("Priority", "2"),
                ("SourceGroupId", "sg-web"),
            ]
        );
    }
}
