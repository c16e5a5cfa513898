//! From the raw strings of `AuthorizeSecurityGroup[Egress]` / `RevokeSecurityGroup[Egress]`
//! to a [`Rule`], or the API error the real service gives for the same input.
//!
//! Conventions, for every field:
//! - an empty string is the same as an absent parameter (SDKs send `Foo=` for unset
//!   optional fields, and the real service treats it as unset);
//! - nothing is trimmed or guessed: ` tcp` is not a protocol;
//! - no input panics, whatever its size or content: values echoed in messages are cut to
//!   64 characters, numbers are parsed with their length capped.

use crate::error::{codes, RuleError};
use crate::rule::{
    Direction, NicType, Peer, Policy, PortRange, Protocol, Rule, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN,
};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Shortest `Description` accepted, in characters (Unicode scalar values).
///
/// The public docs of every current rule action say "1 to 512 characters"; the project
/// spec says 2–256 and no `http(s)://` prefix, which is the rule for a *group's*
/// description. The spec yields to the public docs where they disagree, so the length is
/// theirs; the prefix rule, on which the docs are silent, is kept from the spec.
pub const DESCRIPTION_MIN_CHARS: usize = 1;
/// Longest `Description` accepted, in characters. See [`DESCRIPTION_MIN_CHARS`].
pub const DESCRIPTION_MAX_CHARS: usize = 512;

/// The request parameters of one rule, as the client sent them (`None` = absent).
///
/// The same struct serves both directions; which fields mean what depends on the
/// direction given to [`validate()`]. Field names follow the API parameter names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleInput<'a> {
    pub ip_protocol: Option<&'a str>,
    pub port_range: Option<&'a str>,
    pub source_port_range: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub nic_type: Option<&'a str>,
    pub source_cidr_ip: Option<&'a str>,
    pub dest_cidr_ip: Option<&'a str>,
    pub source_group_id: Option<&'a str>,
    pub dest_group_id: Option<&'a str>,
    pub source_group_owner_account: Option<&'a str>,
    pub source_group_owner_id: Option<&'a str>,
    pub dest_group_owner_account: Option<&'a str>,
    pub dest_group_owner_id: Option<&'a str>,
    pub description: Option<&'a str>,
}

impl<'a> RuleInput<'a> {
    /// The present fields as API `(name, value)` pairs, in a fixed order: what a client
    /// would put in the query string of `AuthorizeSecurityGroup[Egress]`. Integration
    /// tests use it to send the [`crate::vectors`] rules through the real API.
    pub fn params(&self) -> Vec<(&'static str, &'a str)> {
        [
            ("IpProtocol", self.ip_protocol),
            ("PortRange", self.port_range),
            ("SourcePortRange", self.source_port_range),
            ("Policy", self.policy),
            ("Priority", self.priority),
            ("NicType", self.nic_type),
            ("SourceCidrIp", self.source_cidr_ip),
            ("DestCidrIp", self.dest_cidr_ip),
            ("SourceGroupId", self.source_group_id),
            ("DestGroupId", self.dest_group_id),
            ("SourceGroupOwnerAccount", self.source_group_owner_account),
            ("SourceGroupOwnerId", self.source_group_owner_id),
            ("DestGroupOwnerAccount", self.dest_group_owner_account),
            ("DestGroupOwnerId", self.dest_group_owner_id),
            ("Description", self.description),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// Checks one rule of `direction` and returns it in stored form, or the first problem as
/// the API error the real service would give.
///
/// Decisions beyond the spec's text, each following the public docs:
/// - the peer is the CIDR if one is given, else the group (the CIDR wins, and the group's
///   owner fields are then ignored, as the docs say);
/// - a CIDR with host bits set (`10.0.0.1/24`) is accepted and stored as its network
///   (`10.0.0.0/24`); a single address is stored as `/32`;
/// - `SourceCidrIp` equal to `DestCidrIp` is refused (`InvalidParamter.Conflict`);
/// - a group peer makes the rule intranet; an explicit `NicType=internet` with a group
///   peer is refused (`InvalidSourceGroupId.Mismatch` / `InvalidDestGroupId.Mismatch`,
///   403), as the docs say "the NicType parameter can be set only to intranet";
/// - whether the named group exists, belongs to the caller or another account, or is the
///   rule's own group is for the service layer, which owns that state.
pub fn validate(direction: Direction, input: &RuleInput) -> Result<Rule, RuleError> {
    let protocol = protocol(input.ip_protocol)?;
    let port_range = port_range(protocol, input.port_range)?;
    let source_port_range = source_port_range(protocol, input.source_port_range)?;
    let policy = policy(input.policy)?;
    let priority = priority(input.priority)?;
    let nic_type = nic_type(input.nic_type)?;
    let description = description(input.description)?;
    let sides = Sides::of(direction, input);

    if let Some(wrong) = given(sides.wrong_group_id) {
        return Err(RuleError::invalid(
            codes::GROUP_DIRECTION,
            sides.wrong_group_param,
            wrong,
            format_args!("an {} rule takes {} instead", direction.as_api(), sides.group_param),
        ));
    }

    let source_cidr = cidr(input.source_cidr_ip, "SourceCidrIp", codes::SOURCE_CIDR_MALFORMED)?;
    let dest_cidr = cidr(input.dest_cidr_ip, "DestCidrIp", codes::DEST_CIDR_MALFORMED)?;
    if let (Some(s), Some(d)) = (source_cidr, dest_cidr) {
        if s == d {
            return Err(RuleError::new(
                400,
                codes::CIDR_CONFLICT,
                format!("The specified SourceCidrIp should be different from the DestCidrIp: both are \"{s}\"."),
            ));
        }
    }
    let (peer_cidr, local_cidr) = match direction {
        Direction::Ingress => (source_cidr, dest_cidr),
        Direction::Egress => (dest_cidr, source_cidr),
    };

    let peer = match (peer_cidr, given(sides.group_id)) {
        (Some(net), _) => Peer::Cidr(net),
        (None, Some(group_id)) => Peer::Group {
            group_id: group_id.to_string(),
            owner_account: given(sides.owner_account).map(str::to_string),
            owner_id: given(sides.owner_id).map(str::to_string),
        },
        (None, None) => {
            return Err(RuleError::new(
                400,
                sides.missing_code,
                format!("Either {} or {} must be specified.", sides.cidr_param, sides.group_param),
            ))
        }
    };

    let nic_type = match (&peer, nic_type) {
        (Peer::Group { .. }, Some(NicType::Internet)) => {
            return Err(RuleError::new(
                403,
                sides.nic_type_code,
                format!(
                    "NicType is required or NicType expects intranet: a rule naming {} without {} is always intranet.",
                    sides.group_param, sides.cidr_param
                ),
            ))
        }
        (Peer::Group { .. }, _) => NicType::Intranet,
        (Peer::Cidr(_), given) => given.unwrap_or_default(),
    };

    Ok(Rule {
        direction,
        protocol,
        port_range,
        source_port_range,
        policy,
        priority,
        nic_type,
        peer,
        local_cidr,
        description,
    })
}

/// The direction-dependent half of a rule's parameters, named so the checks above read
/// the same for both directions.
struct Sides<'a> {
    cidr_param: &'static str,
    group_param: &'static str,
    group_id: Option<&'a str>,
    owner_account: Option<&'a str>,
    owner_id: Option<&'a str>,
    wrong_group_param: &'static str,
    wrong_group_id: Option<&'a str>,
    missing_code: &'static str,
    nic_type_code: &'static str,
}

impl<'a> Sides<'a> {
    fn of(direction: Direction, input: &RuleInput<'a>) -> Sides<'a> {
        match direction {
            Direction::Ingress => Sides {
                cidr_param: "SourceCidrIp",
                group_param: "SourceGroupId",
                group_id: input.source_group_id,
                owner_account: input.source_group_owner_account,
                owner_id: input.source_group_owner_id,
                wrong_group_param: "DestGroupId",
                wrong_group_id: input.dest_group_id,
                missing_code: codes::MISSING_SOURCE,
                nic_type_code: codes::SOURCE_GROUP_NIC_TYPE,
            },
            Direction::Egress => Sides {
                cidr_param: "DestCidrIp",
                group_param: "DestGroupId",
                group_id: input.dest_group_id,
                owner_account: input.dest_group_owner_account,
                owner_id: input.dest_group_owner_id,
                wrong_group_param: "SourceGroupId",
                wrong_group_id: input.source_group_id,
                missing_code: codes::MISSING_DEST,
                nic_type_code: codes::DEST_GROUP_NIC_TYPE,
            },
        }
    }
}

/// `Some` only for a present, non-empty value.
fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fn protocol(value: Option<&str>) -> Result<Protocol, RuleError> {
    let Some(s) = given(value) else {
        return Err(RuleError::new(
            400,
            codes::MISSING_PARAMETER,
            "The input parameter \"IpProtocol\" that is mandatory for processing this request is not supplied.",
        ));
    };
    Protocol::parse(s).ok_or_else(|| {
        RuleError::invalid(
            codes::IP_PROTOCOL_NOT_SUPPORTED,
            "IpProtocol",
            s,
            "it must be TCP, UDP, ICMP, GRE or ALL (case-insensitive)",
        )
    })
}

fn port_range(protocol: Protocol, value: Option<&str>) -> Result<PortRange, RuleError> {
    let Some(s) = given(value) else {
        return Err(RuleError::new(
            400,
            codes::PORT_RANGE_MISSING,
            "The specified parameter \"PortRange\" must be set: a/b for tcp and udp, -1/-1 for icmp, gre and all.",
        ));
    };
    PortRange::parse_for(protocol, s).map_err(|why| {
        RuleError::invalid(
            codes::PORT_RANGE_INVALID,
            "PortRange",
            s,
            format_args!("{why} ({} rule)", protocol.as_api()),
        )
    })
}

fn source_port_range(protocol: Protocol, value: Option<&str>) -> Result<Option<PortRange>, RuleError> {
    given(value)
        .map(|s| {
            PortRange::parse_for(protocol, s).map_err(|why| {
                RuleError::invalid(
                    codes::SOURCE_PORT_RANGE_INVALID,
                    "SourcePortRange",
                    s,
                    format_args!("{why} ({} rule)", protocol.as_api()),
                )
            })
        })
        .transpose()
}

fn policy(value: Option<&str>) -> Result<Policy, RuleError> {
    given(value)
        .map(|s| {
            Policy::parse(s)
                .ok_or_else(|| RuleError::invalid(codes::POLICY_MALFORMED, "Policy", s, "it must be accept or drop"))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

fn priority(value: Option<&str>) -> Result<u8, RuleError> {
    let Some(s) = given(value) else {
        return Ok(PRIORITY_DEFAULT);
    };
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::invalid(
            codes::PRIORITY_MALFORMED,
            "Priority",
            s,
            "it must be an integer from 1 to 100",
        ));
    }
    // A number, but maybe negative, zero, too big or too long for any integer type: all
    // of those are the same "value not supported".
    let out_of_range = || {
        RuleError::invalid(codes::PRIORITY_NOT_SUPPORTED, "Priority", s, "it must be from 1 (evaluated first) to 100")
    };
    if digits.len() != s.len() || digits.len() > 3 {
        return Err(out_of_range());
    }
    match digits.parse::<u8>() {
        Ok(p) if (PRIORITY_MIN..=PRIORITY_MAX).contains(&p) => Ok(p),
        _ => Err(out_of_range()),
    }
}

fn nic_type(value: Option<&str>) -> Result<Option<NicType>, RuleError> {
    given(value)
        .map(|s| {
            NicType::parse(s).ok_or_else(|| {
                RuleError::invalid(codes::NIC_TYPE_NOT_SUPPORTED, "NicType", s, "it must be internet or intranet")
            })
        })
        .transpose()
}

fn description(value: Option<&str>) -> Result<Option<String>, RuleError> {
    let Some(s) = given(value) else {
        return Ok(None);
    };
    let bad = |why: &str| RuleError::invalid(codes::DESCRIPTION_MALFORMED, "Description", s, why);
    // Count at most MAX+1 characters: enough to decide, and cheap on huge input.
    let chars = s.chars().take(DESCRIPTION_MAX_CHARS + 1).count();
    if !(DESCRIPTION_MIN_CHARS..=DESCRIPTION_MAX_CHARS).contains(&chars) {
        return Err(bad(&format!("it must be {DESCRIPTION_MIN_CHARS} to {DESCRIPTION_MAX_CHARS} characters long")));
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Err(bad("it must not start with http:// or https://"));
    }
    Ok(Some(s.to_string()))
}

/// An IPv4 CIDR (`10.0.0.0/8`, host bits allowed and cleared) or a single IPv4 address
/// (stored as `/32`). IPv6, masks above 32 and anything else are the field's `Malformed`.
fn cidr(value: Option<&str>, param: &str, code: &'static str) -> Result<Option<Ipv4Net>, RuleError> {
    let Some(s) = given(value) else {
        return Ok(None);
    };
    let parsed =
        if s.contains('/') { s.parse::<Ipv4Net>().ok() } else { s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from) };
    parsed.map(|net| Some(net.trunc())).ok_or_else(|| {
        RuleError::invalid(
            code,
            param,
            s,
            "it must be an IPv4 address or CIDR block, such as 10.0.0.0/8 or 192.168.1.7",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp22<'a>() -> RuleInput<'a> {
        RuleInput {
            ip_protocol: Some("tcp"),
            port_range: Some("22/22"),
            source_cidr_ip: Some("10.0.0.0/8"),
            ..RuleInput::default()
        }
    }

    fn err(direction: Direction, input: RuleInput) -> RuleError {
        match validate(direction, &input) {
            Ok(rule) => panic!("expected an error, got {rule:?}"),
            Err(e) => e,
        }
    }

    fn ok(direction: Direction, input: RuleInput) -> Rule {
        match validate(direction, &input) {
            Ok(rule) => rule,
            Err(e) => panic!("expected a rule, got {e}"),
        }
    }

    #[test]
    fn minimal_ingress_rule_gets_the_defaults() {
        let r = ok(Direction::Ingress, tcp22());
        assert_eq!(r.direction, Direction::Ingress);
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(r.port_range, PortRange::single(22).expect("22"));
        assert_eq!(r.source_port_range, None);
        assert_eq!(r.policy, Policy::Accept);
        assert_eq!(r.priority, 1);
        assert_eq!(r.nic_type, NicType::Intranet);
        assert_eq!(r.peer, Peer::Cidr("10.0.0.0/8".parse().expect("net")));
        assert_eq!(r.local_cidr, None);
        assert_eq!(r.description, None);
    }

    #[test]
    fn protocol_is_case_insensitive_in_and_lowercase_on_the_request_side() {
        for spelling in ["TCP", "tcp", "Tcp", "tCP"] {
            let r = ok(Direction::Ingress, RuleInput { ip_protocol: Some(spelling), ..tcp22() });
            assert_eq!(r.protocol.as_api(), "tcp");
        }
        let r = ok(Direction::Ingress, RuleInput { ip_protocol: Some("ALL"), port_range: Some("-1/-1"), ..tcp22() });
        assert_eq!(r.protocol.as_api(), "all");
    }

    #[test]
    fn bad_protocols() {
        let e = err(Direction::Ingress, RuleInput { ip_protocol: None, ..tcp22() });
        assert_eq!((e.code, e.status), ("MissingParameter", 400));
        for bad in ["sctp", "6", "icmpv6", " tcp", "tcp ", "ｔｃｐ"] {
            let e = err(Direction::Ingress, RuleInput { ip_protocol: Some(bad), ..tcp22() });
            assert_eq!(e.code, "InvalidIpProtocol.ValueNotSupported", "{bad}");
        }
    }

    #[test]
    fn port_ranges() {
        let with =
            |p: &'static str, r: &'static str| RuleInput { ip_protocol: Some(p), port_range: Some(r), ..tcp22() };
        for (p, r) in [("tcp", "200/1"), ("tcp", "0/1"), ("udp", "1/65536"), ("tcp", "22"), ("tcp", "-1/-1")] {
            let e = err(Direction::Ingress, with(p, r));
            assert_eq!((e.code, e.status), ("InvalidParam.PortRange", 400), "{p} {r}");
        }
        for p in ["icmp", "gre", "all"] {
            let e = err(Direction::Ingress, with(p, "1/2"));
            assert_eq!(e.code, "InvalidParam.PortRange", "{p} 1/2");
            assert_eq!(ok(Direction::Ingress, with(p, "-1/-1")).port_range, PortRange::ANY);
        }
        assert_eq!(ok(Direction::Ingress, with("udp", "1/65535")).port_range.bounds(), Some((1, 65535)));
        let e = err(Direction::Ingress, RuleInput { port_range: None, ..tcp22() });
        assert_eq!(e.code, "InvalidPortRange.Malformed");
        let e = err(Direction::Ingress, RuleInput { port_range: Some(""), ..tcp22() });
        assert_eq!(e.code, "InvalidPortRange.Malformed");
    }

    #[test]
    fn source_port_ranges() {
        let r = ok(
            Direction::Egress,
            RuleInput {
                source_cidr_ip: None,
                dest_cidr_ip: Some("10.0.0.1"),
                source_port_range: Some("22/22"),
                ..tcp22()
            },
        );
        assert_eq!(r.source_port_range, PortRange::single(22));
        let e = err(Direction::Ingress, RuleInput { source_port_range: Some("9/8"), ..tcp22() });
        assert_eq!(e.code, "InvalidSourcePortRange.Malformed");
        let e = err(
            Direction::Ingress,
            RuleInput {
                ip_protocol: Some("icmp"),
                port_range: Some("-1/-1"),
                source_port_range: Some("22/22"),
                ..tcp22()
            },
        );
        assert_eq!(e.code, "InvalidSourcePortRange.Malformed");
        let r = ok(Direction::Ingress, RuleInput { source_port_range: Some(""), ..tcp22() });
        assert_eq!(r.source_port_range, None);
    }

    #[test]
    fn policies() {
        let with = |p| RuleInput { policy: Some(p), ..tcp22() };
        assert_eq!(ok(Direction::Ingress, with("Drop")).policy, Policy::Drop);
        assert_eq!(ok(Direction::Ingress, with("ACCEPT")).policy, Policy::Accept);
        assert_eq!(ok(Direction::Ingress, with("")).policy, Policy::Accept);
        for bad in ["allow", "deny", "reject", "accept "] {
            assert_eq!(err(Direction::Ingress, with(bad)).code, "InvalidPolicy.Malformed");
        }
    }

    #[test]
    fn priority_bounds() {
        let with = |p| RuleInput { priority: Some(p), ..tcp22() };
        assert_eq!(ok(Direction::Ingress, with("1")).priority, 1);
        assert_eq!(ok(Direction::Ingress, with("100")).priority, 100);
        assert_eq!(ok(Direction::Ingress, with("050")).priority, 50);
        assert_eq!(ok(Direction::Ingress, with("")).priority, 1);
        for bad in ["0", "101", "255", "256", "-1", "99999999999999999999999999", "0000"] {
            let e = err(Direction::Ingress, with(bad));
            assert_eq!((e.code, e.status), ("InvalidPriority.ValueNotSupported", 400), "{bad}");
        }
        for bad in ["one", "1.5", " 1", "+1", "-", "１"] {
            let e = err(Direction::Ingress, with(bad));
            assert_eq!(e.code, "InvalidPriority.Malformed", "{bad}");
        }
    }

    #[test]
    fn nic_types() {
        let with = |n| RuleInput { nic_type: Some(n), ..tcp22() };
        assert_eq!(ok(Direction::Ingress, with("internet")).nic_type, NicType::Internet);
        assert_eq!(ok(Direction::Ingress, with("Intranet")).nic_type, NicType::Intranet);
        assert_eq!(err(Direction::Ingress, with("public")).code, "InvalidNicType.ValueNotSupported");
    }

    #[test]
    fn cidrs_and_single_addresses() {
        let with = |c| RuleInput { source_cidr_ip: Some(c), ..tcp22() };
        let peer = |c| ok(Direction::Ingress, with(c)).peer;
        assert_eq!(peer("192.168.1.7"), Peer::Cidr("192.168.1.7/32".parse().expect("net")));
        assert_eq!(peer("10.0.0.1/24"), Peer::Cidr("10.0.0.0/24".parse().expect("net")));
        assert_eq!(peer("0.0.0.0/0"), Peer::Cidr("0.0.0.0/0".parse().expect("net")));
        for bad in ["10.0.0.0/33", "10.0.0", "::/0", "2001:db8::1", "10.0.0.0/", "x", "10.0.0.0/8 ", "256.0.0.1"] {
            let e = err(Direction::Ingress, with(bad));
            assert_eq!((e.code, e.status), ("InvalidSourceCidrIp.Malformed", 400), "{bad}");
        }
        let e = err(Direction::Ingress, RuleInput { dest_cidr_ip: Some("nope"), ..tcp22() });
        assert_eq!(e.code, "InvalidDestCidrIp.Malformed");
        let e = err(Direction::Egress, RuleInput { source_cidr_ip: None, dest_cidr_ip: Some("fe80::1"), ..tcp22() });
        assert_eq!(e.code, "InvalidDestCidrIp.Malformed");
    }

    #[test]
    fn ingress_dest_cidr_and_egress_source_cidr_narrow_the_member_side() {
        let r = ok(Direction::Ingress, RuleInput { dest_cidr_ip: Some("192.168.1.7"), ..tcp22() });
        assert_eq!(r.local_cidr, Some("192.168.1.7/32".parse().expect("net")));
        let r = ok(
            Direction::Egress,
            RuleInput { source_cidr_ip: Some("172.16.1.0/32"), dest_cidr_ip: Some("10.0.0.1/32"), ..tcp22() },
        );
        assert_eq!(r.local_cidr, Some("172.16.1.0/32".parse().expect("net")));
        assert_eq!(r.peer, Peer::Cidr("10.0.0.1/32".parse().expect("net")));
        let e = err(Direction::Ingress, RuleInput { dest_cidr_ip: Some("10.9.9.9/8"), ..tcp22() });
        assert_eq!(e.code, "InvalidParamter.Conflict");
    }

    #[test]
    fn cidr_wins_over_group_and_drops_its_owner() {
        let r = ok(
            Direction::Ingress,
            RuleInput {
                source_group_id: Some("sg-web"),
                source_group_owner_account: Some("B"),
                nic_type: Some("internet"),
                ..tcp22()
            },
        );
        assert_eq!(r.peer, Peer::Cidr("10.0.0.0/8".parse().expect("net")));
        assert_eq!(r.nic_type, NicType::Internet, "a CIDR rule keeps its NicType");
        let r = ok(
            Direction::Egress,
            RuleInput {
                source_cidr_ip: None,
                dest_cidr_ip: Some("10.0.0.1"),
                dest_group_id: Some("sg-web"),
                ..tcp22()
            },
        );
        assert_eq!(r.peer, Peer::Cidr("10.0.0.1/32".parse().expect("net")));
    }

    #[test]
    fn group_peers_are_intranet() {
        let group = RuleInput {
            source_cidr_ip: None,
            source_group_id: Some("sg-web"),
            source_group_owner_account: Some("B"),
            source_group_owner_id: Some(""),
            ..tcp22()
        };
        let r = ok(Direction::Ingress, group);
        assert_eq!(r.peer, Peer::Group { group_id: "sg-web".into(), owner_account: Some("B".into()), owner_id: None });
        assert_eq!(r.nic_type, NicType::Intranet);
        let r = ok(Direction::Ingress, RuleInput { nic_type: Some("intranet"), ..group });
        assert_eq!(r.nic_type, NicType::Intranet);
        let e = err(Direction::Ingress, RuleInput { nic_type: Some("internet"), ..group });
        assert_eq!((e.code, e.status), ("InvalidSourceGroupId.Mismatch", 403));
        let e = err(
            Direction::Egress,
            RuleInput { source_cidr_ip: None, dest_group_id: Some("sg-db"), nic_type: Some("internet"), ..tcp22() },
        );
        assert_eq!((e.code, e.status), ("InvalidDestGroupId.Mismatch", 403));
    }

    #[test]
    fn a_peer_is_required() {
        let none = RuleInput { source_cidr_ip: None, ..tcp22() };
        let e = err(Direction::Ingress, none);
        assert_eq!((e.code, e.status), ("MissingParameter.Source", 400));
        assert!(e.message.contains("SourceCidrIp") && e.message.contains("SourceGroupId"));
        let e = err(Direction::Egress, none);
        assert_eq!((e.code, e.status), ("MissingParameter.Dest", 400));
        // An egress rule's SourceCidrIp narrows the member side; it is not the peer.
        let e = err(Direction::Egress, tcp22());
        assert_eq!(e.code, "MissingParameter.Dest");
        // Nor is an ingress rule's DestCidrIp.
        let e = err(Direction::Ingress, RuleInput { source_cidr_ip: None, dest_cidr_ip: Some("10.0.0.1"), ..tcp22() });
        assert_eq!(e.code, "MissingParameter.Source");
    }

    #[test]
    fn group_ids_must_match_the_direction() {
        let e = err(Direction::Ingress, RuleInput { dest_group_id: Some("sg-db"), ..tcp22() });
        assert_eq!((e.code, e.status), ("InvalidSourceOrDestGroupId.DirectionMissmatch", 400));
        assert!(e.message.contains("DestGroupId"));
        let e = err(
            Direction::Egress,
            RuleInput {
                source_cidr_ip: None,
                dest_cidr_ip: Some("10.0.0.1"),
                source_group_id: Some("sg-web"),
                ..tcp22()
            },
        );
        assert_eq!(e.code, "InvalidSourceOrDestGroupId.DirectionMissmatch");
        // An empty value is an absent one.
        ok(Direction::Ingress, RuleInput { dest_group_id: Some(""), ..tcp22() });
    }

    #[test]
    fn descriptions() {
        let with = |d| RuleInput { description: Some(d), ..tcp22() };
        assert_eq!(ok(Direction::Ingress, with("a")).description.as_deref(), Some("a"));
        assert_eq!(ok(Direction::Ingress, with("")).description, None);
        let max = "界".repeat(DESCRIPTION_MAX_CHARS);
        assert!(ok(Direction::Ingress, with(&max)).description.is_some(), "counted in characters");
        let over = "x".repeat(DESCRIPTION_MAX_CHARS + 1);
        let e = err(Direction::Ingress, with(&over));
        assert_eq!((e.code, e.status), ("InvalidSecurityGroupDiscription.Malformed", 400));
        assert!(e.message.len() < 300, "the value is not echoed in full");
        for bad in ["http://x", "https://example.com/rule"] {
            assert_eq!(err(Direction::Ingress, with(bad)).code, "InvalidSecurityGroupDiscription.Malformed");
        }
        assert!(ok(Direction::Ingress, with("see http://x")).description.is_some());
    }

    #[test]
    fn params_lists_present_fields_by_api_name() {
        let input = RuleInput { policy: Some("drop"), ..tcp22() };
        assert_eq!(
            input.params(),
            vec![("IpProtocol", "tcp"), ("PortRange", "22/22"), ("Policy", "drop"), ("SourceCidrIp", "10.0.0.0/8"),]
        );
    }

    /// Every field gets every nasty value, in both directions: nothing may panic, and every
    /// error is a 4xx with a bounded message.
    #[test]
    fn never_panics() {
        let huge = "9".repeat(1 << 16);
        let huge_unicode = "界".repeat(1 << 14);
        let nasty: Vec<&str> = vec![
            "",
            " ",
            "/",
            "//",
            "-/-",
            "-1/-1",
            "1/1",
            "65535/65535",
            "0/0",
            "4294967296/1",
            "-9223372036854775808/1",
            "1/-",
            "\u{0}",
            "é",
            "👍/👍",
            "10.0.0.0/8",
            "10.0.0.0/99999999999999999999",
            "1.2.3.4/-1",
            "::1",
            "tcp",
            "ALL",
            "drop",
            "internet",
            "http://",
            &huge,
            &huge_unicode,
        ];
        let mut checked = 0usize;
        for field in 0..15 {
            for value in &nasty {
                for direction in [Direction::Ingress, Direction::Egress] {
                    let mut input = RuleInput {
                        ip_protocol: Some("udp"),
                        port_range: Some("53/53"),
                        source_cidr_ip: Some("10.0.0.0/8"),
                        dest_cidr_ip: Some("10.0.0.1"),
                        ..RuleInput::default()
                    };
                    let slot = match field {
                        0 => &mut input.ip_protocol,
                        1 => &mut input.port_range,
                        2 => &mut input.source_port_range,
                        3 => &mut input.policy,
                        4 => &mut input.priority,
                        5 => &mut input.nic_type,
                        6 => &mut input.source_cidr_ip,
                        7 => &mut input.dest_cidr_ip,
                        8 => &mut input.source_group_id,
                        9 => &mut input.dest_group_id,
                        10 => &mut input.source_group_owner_account,
                        11 => &mut input.source_group_owner_id,
                        12 => &mut input.dest_group_owner_account,
                        13 => &mut input.dest_group_owner_id,
                        _ => &mut input.description,
                    };
                    *slot = Some(value);
                    if let Err(e) = validate(direction, &input) {
                        assert!((400..500).contains(&e.status), "{e}");
                        assert!(e.message.len() < 1024, "message bounded: {}", e.code);
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 15 * nasty.len() * 2);
    }
}
