//! The error a refused rule gets, with the code the real ECS API uses for the same mistake.
//!
//! Sources, all public: the ECS 2014-05-26 API reference pages of `AuthorizeSecurityGroup`,
//! `AuthorizeSecurityGroupEgress`, `RevokeSecurityGroup` and `ModifySecurityGroupRule`
//! (their "Error codes" tables, current and 2019–2020 editions), and error responses of
//! the real service quoted in public issue trackers. The misspellings (`Discription`,
//! `Paramter`, `Missmatch`) are the service's own and are kept on purpose: clients match
//! codes byte for byte.

use std::fmt;

/// The codes this crate returns. Each says where it comes from.
pub mod codes {
    /// A mandatory parameter (`IpProtocol`) is absent. The common ECS code; its message
    /// follows the one `feitian-api` uses for every other missing parameter.
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    /// `IpProtocol` is not tcp/udp/icmp/gre/all. Authorize and AuthorizeEgress tables: "The parameter
    /// IpProtocol must be specified with case insensitive TCP, UDP, ICMP, GRE or All."
    pub const IP_PROTOCOL_NOT_SUPPORTED: &str = "InvalidIpProtocol.ValueNotSupported";
    /// `PortRange` absent. Current Authorize and AuthorizeEgress tables: "The specified parameter
    /// PortRange must set."
    pub const PORT_RANGE_MISSING: &str = "InvalidPortRange.Malformed";
    /// `PortRange` present but not valid for the protocol. The real service answers this
    /// code both for a malformed range (`18082`) and for a protocol mismatch (`all` with
    /// `1/65535`), as quoted in public issues (alibaba/terraform-provider#346,
    /// WeBankPartners/wecube-plugins-alicloud#93); also in every Authorize table.
    pub const PORT_RANGE_INVALID: &str = "InvalidParam.PortRange";
    /// `SourcePortRange` present but not valid for the protocol (Authorize and AuthorizeEgress tables).
    pub const SOURCE_PORT_RANGE_INVALID: &str = "InvalidSourcePortRange.Malformed";
    /// `Policy` not accept/drop (Authorize and AuthorizeEgress tables).
    pub const POLICY_MALFORMED: &str = "InvalidPolicy.Malformed";
    /// `Priority` not a number (Authorize and AuthorizeEgress tables list both Priority codes without
    /// saying which is which; feitian uses `Malformed` for "not a number"...).
    pub const PRIORITY_MALFORMED: &str = "InvalidPriority.Malformed";
    /// ...and `ValueNotSupported` for a number outside 1..=100.
    pub const PRIORITY_NOT_SUPPORTED: &str = "InvalidPriority.ValueNotSupported";
    /// `NicType` not internet/intranet (Authorize and AuthorizeEgress tables).
    pub const NIC_TYPE_NOT_SUPPORTED: &str = "InvalidNicType.ValueNotSupported";
    /// `SourceCidrIp` not an IPv4 address or CIDR (Authorize and AuthorizeEgress tables). IPv6 values
    /// get this too: feitian has no IPv6 rules (the real `Ipv6SourceCidrIp` is separate).
    pub const SOURCE_CIDR_MALFORMED: &str = "InvalidSourceCidrIp.Malformed";
    /// `DestCidrIp` not an IPv4 address or CIDR (Authorize and AuthorizeEgress tables).
    pub const DEST_CIDR_MALFORMED: &str = "InvalidDestCidrIp.Malformed";
    /// `SourceCidrIp` equals `DestCidrIp`. Authorize and AuthorizeEgress tables: "The specified
    /// SourceCidrIp should be different from the DestCidrIp." (sic: `Paramter`).
    pub const CIDR_CONFLICT: &str = "InvalidParamter.Conflict";
    /// Ingress without `SourceCidrIp` or `SourceGroupId` (current AuthorizeSecurityGroup
    /// table; an older `MissingParameter`/403 row exists too, feitian uses this one).
    pub const MISSING_SOURCE: &str = "MissingParameter.Source";
    /// Egress without `DestCidrIp` or `DestGroupId` (current AuthorizeSecurityGroupEgress).
    pub const MISSING_DEST: &str = "MissingParameter.Dest";
    /// A group-to-group ingress rule with `NicType=internet`: "NicType is required or
    /// NicType expects intranet." (403 in the Authorize table).
    pub const SOURCE_GROUP_NIC_TYPE: &str = "InvalidSourceGroupId.Mismatch";
    /// The egress twin of [`SOURCE_GROUP_NIC_TYPE`] (403 in the AuthorizeEgress table).
    pub const DEST_GROUP_NIC_TYPE: &str = "InvalidDestGroupId.Mismatch";
    /// `DestGroupId` on an ingress rule, or `SourceGroupId` on an egress rule.
    /// ModifySecurityGroupRule table: "The specified SourceGroupId or DestGroupId does not
    /// match the direction of the rule." (sic: `Missmatch`). Authorize's tables have no row
    /// for it because the old single-rule form has no such parameter; the code is the
    /// service's own word for exactly this mistake.
    pub const GROUP_DIRECTION: &str = "InvalidSourceOrDestGroupId.DirectionMissmatch";
    /// `Description` too long/short or starting with `http(s)://`. Authorize and
    /// AuthorizeEgress tables: "The specified security group rule description is not valid." (sic).
    pub const DESCRIPTION_MALFORMED: &str = "InvalidSecurityGroupDiscription.Malformed";
}

/// A refused rule: the HTTP status, the Alibaba `Code` and a message naming the parameter,
/// the offending value (shortened) and what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl RuleError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> RuleError {
        RuleError { code, message: message.into(), status }
    }

    /// The common 400 shape: `The specified parameter "X" is not valid: <value>: <why>.`
    pub(crate) fn invalid(code: &'static str, param: &str, value: &str, why: impl fmt::Display) -> RuleError {
        RuleError::new(
            400,
            code,
            format!("The specified parameter \"{param}\" is not valid: \"{}\": {why}.", shown(value)),
        )
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for RuleError {}

/// A client value as it may be echoed in a message: at most 64 characters, so a megabyte
/// of input doesn't come back as a megabyte of error (cut on a char boundary, never a
/// byte one, so unicode can't panic it).
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_cuts_long_and_unicode_values_safely() {
        assert_eq!(shown("tcp"), "tcp");
        let long = "é".repeat(1000);
        let s = shown(&long);
        assert_eq!(s.chars().count(), 65);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn display_names_code_and_status() {
        let e = RuleError::invalid(codes::POLICY_MALFORMED, "Policy", "allow", "use accept or drop");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.to_string(),
            "InvalidPolicy.Malformed (400): The specified parameter \"Policy\" is not valid: \"allow\": use accept or drop."
        );
    }
}
