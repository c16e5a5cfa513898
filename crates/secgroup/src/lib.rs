//! Security groups as pure logic: rule validation and the packet evaluator. No I/O, no
//! async, no state beyond the values passed in.
//!
//! The semantics are those of `shared/spec/security-groups.md`, completed (and, where they
//! disagree, corrected) by the public Alibaba Cloud ECS documentation.
//!
//! # What is here
//! - [`validate()`]: the raw strings of one `AuthorizeSecurityGroup[Egress]` rule to a
//!   [`Rule`], or a [`RuleError`] with the status and code the real ECS API gives
//!   ([`error::codes`] lists each code and its public source).
//! - [`Rule::same_rule`]: rule identity, for idempotent authorize and field-based revoke.
//! - [`Rule::to_fields`]: a rule in `DescribeSecurityGroupAttribute`'s vocabulary.
//! - [`ingress`], [`egress`], [`connection`], [`connection_allowed`]: what the first packet
//!   of a connection meets, with the reason ([`Decision`], [`Reason`]).
//! - [`vectors`]: the spec's test vectors as data, for these tests and the data-plane ones.
//!
//! # What is modelled
//! - Ingress and egress rules over tcp, udp, icmp, gre and "all"; destination port ranges;
//!   optional source port ranges; CIDR peers and group peers (including cross-account
//!   grants by owner account or owner id); the member-side narrowing of five-tuple rules
//!   (ingress `DestCidrIp`, egress `SourceCidrIp`).
//! - Evaluation order: the union of an interface's groups, priority ascending, drop before
//!   accept at equal priority, first match decides; then intra-group access (a shared
//!   group with `InnerAccessPolicy=Accept`, lowest priority of all) for ingress, default
//!   deny for ingress, default allow for egress. Group membership is read at evaluation
//!   time, so a rule naming a group covers members that join later.
//! - Statefulness, by construction: only a connection's first packet is evaluated.
//!
//! # What is not
//! - IPv6 (`Ipv6SourceCidrIp`, `Ipv6DestCidrIp`, `icmpv6`), prefix lists, port lists,
//!   IANA protocol numbers, advanced ("enterprise") groups and their defaults.
//! - `NicType` in matching: feitian's groups are VPC groups, where one rule set governs an
//!   interface's private and public traffic. It is validated, stored and echoed only.
//! - ICMP type/code: the API has no way to name them (`-1/-1` only).
//! - Quotas, group existence, ownership checks at authorize time, VPC boundaries: those
//!   need state, so they belong to the service layer.

pub mod error;
pub mod eval;
pub mod rule;
pub mod validate;
pub mod vectors;

pub use error::{codes, RuleError};
pub use eval::{
    connection, connection_allowed, egress, ingress, Decision, Endpoint, EvalError, Group, Nic, Packet, Reason,
    Verdict, World,
};
pub use rule::{
    Direction, NicType, Peer, Policy, PortRange, PortRangeError, Protocol, Rule, RuleFields, PRIORITY_DEFAULT,
    PRIORITY_MAX, PRIORITY_MIN,
};
pub use validate::{validate, RuleInput, DESCRIPTION_MAX_CHARS, DESCRIPTION_MIN_CHARS};
