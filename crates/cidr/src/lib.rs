//! CIDR rules of VPC networking, as pure functions.
//!
//! - A VPC's block is 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or a subnet of one of them,
//!   prefix /8 to /24.
//! - A vSwitch's block lies inside its VPC's, prefix /16 to /29, and overlaps no other
//!   vSwitch of that VPC.
//! - In a vSwitch the first address and the last three are reserved (public documentation;
//!   the spec's "three after the first" yields to it). The third-last, `x.x.x.253` in a /24,
//!   is the vSwitch's gateway.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The private ranges a VPC may use.
pub const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// The block a VPC gets when `CidrBlock` is not given.
pub const DEFAULT_VPC_CIDR: &str = "172.16.0.0/12";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `a.b.c.d/n`, or host bits set.
    Malformed,
    /// A VPC block outside the private ranges or with a prefix out of /8–/24.
    NotPrivate,
    /// A vSwitch block with a prefix out of /16–/29.
    BadSwitchPrefix,
    /// A vSwitch block not inside its VPC's.
    OutsideVpc,
    /// A vSwitch block overlapping another vSwitch's (its id).
    Overlaps(String),
}

/// Parses `a.b.c.d/n` exactly: host bits must be clear (the API refuses `10.0.0.1/8`).
pub fn parse(s: &str) -> Result<Ipv4Net, CidrError> {
    let net: Ipv4Net = s.trim().parse().map_err(|_| CidrError::Malformed)?;
    if net.trunc() != net || s.trim() != s {
        return Err(CidrError::Malformed);
    }
    Ok(net)
}

/// A VPC's block.
pub fn vpc_block(s: &str) -> Result<Ipv4Net, CidrError> {
    let net = parse(s)?;
    let allowed = PRIVATE_RANGES.iter().any(|r| r.parse::<Ipv4Net>().is_ok_and(|range| range.contains(&net)));
    if !allowed || !(8..=24).contains(&net.prefix_len()) {
        return Err(CidrError::NotPrivate);
    }
    Ok(net)
}

/// A vSwitch's block inside `vpc`, given the other vSwitches `(id, block)` of that VPC.
pub fn vswitch_block<'a>(
    s: &str,
    vpc: Ipv4Net,
    others: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Ipv4Net, CidrError> {
    let net = parse(s)?;
    if !(16..=29).contains(&net.prefix_len()) {
        return Err(CidrError::BadSwitchPrefix);
    }
    if !vpc.contains(&net) {
        return Err(CidrError::OutsideVpc);
    }
    for (id, other) in others {
        if let Ok(o) = parse(other) {
            if overlaps(net, o) {
                return Err(CidrError::Overlaps(id.to_owned()));
            }
        }
    }
    Ok(net)
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Addresses an instance may get: all but the first and the last three.
pub fn usable(net: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let first = u32::from(net.network());
    let last = u32::from(net.broadcast());
    (first + 1..=last.saturating_sub(3)).map(Ipv4Addr::from)
}

/// How many addresses instances can use in a block.
pub fn usable_count(net: Ipv4Net) -> u64 {
    (1u64 << (32 - net.prefix_len())).saturating_sub(4)
}

/// The vSwitch gateway: the third-last address (`.253` in a /24).
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.broadcast()) - 2)
}

/// Whether `ip` may be given to an instance in `net`.
pub fn is_usable(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    let (first, last, x) = (u32::from(net.network()), u32::from(net.broadcast()), u32::from(ip));
    x > first && x + 3 <= last
}

/// The route that forwards `dst` among `routes` (`(destination, payload)`): longest prefix
/// match.
pub fn longest_match<T>(routes: &[(Ipv4Net, T)], dst: Ipv4Addr) -> Option<&T> {
    routes.iter().filter(|(n, _)| n.contains(&dst)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn vpc_blocks() {
        assert_eq!(vpc_block("192.168.0.0/16").unwrap(), n("192.168.0.0/16"));
        assert_eq!(vpc_block("10.0.0.0/8").unwrap(), n("10.0.0.0/8"));
        assert_eq!(vpc_block("172.16.0.0/12").unwrap(), n("172.16.0.0/12"));
        assert_eq!(vpc_block("10.20.0.0/24").unwrap(), n("10.20.0.0/24"));
        assert_eq!(vpc_block("10.20.0.0/25"), Err(CidrError::NotPrivate));
        assert_eq!(vpc_block("8.8.8.0/24"), Err(CidrError::NotPrivate));
        assert_eq!(vpc_block("172.32.0.0/16"), Err(CidrError::NotPrivate));
        assert_eq!(vpc_block("10.0.0.1/8"), Err(CidrError::Malformed));
        assert_eq!(vpc_block("10.0.0.0"), Err(CidrError::Malformed));
        assert_eq!(vpc_block("10.0.0.0/33"), Err(CidrError::Malformed));
        assert_eq!(vpc_block(" 10.0.0.0/8"), Err(CidrError::Malformed));
        assert_eq!(vpc_block("ten/8"), Err(CidrError::Malformed));
    }

    #[test]
    fn vswitch_blocks() {
        let vpc = n("192.168.0.0/16");
        assert!(vswitch_block("192.168.1.0/24", vpc, []).is_ok());
        assert_eq!(vswitch_block("192.168.1.0/30", vpc, []), Err(CidrError::BadSwitchPrefix));
        assert_eq!(vswitch_block("10.0.1.0/24", vpc, []), Err(CidrError::OutsideVpc));
        assert_eq!(vswitch_block("192.168.0.0/15", vpc, []), Err(CidrError::BadSwitchPrefix));
        let others = [("vsw-a", "192.168.0.0/20")];
        assert_eq!(vswitch_block("192.168.1.0/24", vpc, others), Err(CidrError::Overlaps("vsw-a".into())));
        assert!(vswitch_block("192.168.16.0/24", vpc, others).is_ok());
        assert_eq!(vswitch_block("192.168.0.0/16", vpc, others), Err(CidrError::Overlaps("vsw-a".into())));
    }

    #[test]
    fn reserved_addresses_and_gateway() {
        let net = n("192.168.1.0/24");
        let u: Vec<Ipv4Addr> = usable(net).collect();
        assert_eq!(u.first(), Some(&Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(u.last(), Some(&Ipv4Addr::new(192, 168, 1, 252)));
        assert_eq!(u.len() as u64, usable_count(net));
        assert_eq!(usable_count(n("10.0.0.0/29")), 4);
        assert_eq!(gateway(net), Ipv4Addr::new(192, 168, 1, 253));
        assert!(!is_usable(net, Ipv4Addr::new(192, 168, 1, 0)));
        assert!(!is_usable(net, Ipv4Addr::new(192, 168, 1, 253)));
        assert!(is_usable(net, Ipv4Addr::new(192, 168, 1, 252)));
        assert!(!is_usable(net, Ipv4Addr::new(192, 168, 2, 5)));
    }

    /// The leased-line article's make-before-break switchover keeps every address of the /24
    /// reachable at every step, because forwarding is by longest prefix.
    #[test]
    fn make_before_break_keeps_the_destination_reachable() {
        let dst24 = n("10.1.1.0/24");
        let cover23 = n("10.1.0.0/23");
        let probe = Ipv4Addr::new(10, 1, 1, 77);
        let steps: Vec<Vec<(Ipv4Net, &str)>> = vec![
            vec![(dst24, "old")],
            vec![(dst24, "old"), (cover23, "new")],
            vec![(cover23, "new")],
            vec![(cover23, "new"), (dst24, "new")],
            vec![(dst24, "new")],
        ];
        let hops: Vec<&str> =
            steps.iter().map(|r| *longest_match(r, probe).expect("reachable at every step")).collect();
        assert_eq!(hops, vec!["old", "old", "new", "new", "new"]);
    }
}
