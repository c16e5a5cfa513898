//! Host networking for real instances. Everything lives in network namespaces feitian
//! creates; nothing here touches the host's own interfaces but one veth and the one route to
//! the EIP pool (see [`host`]).
//!
//! - [`host`]: namespaces, bridges, taps, the public namespace, EIP NAT, teardown.
//! - [`sg`]: security groups compiled to nftables (pure).
//! - [`metadata`]: the metadata service at 100.100.100.200.
//! - [`cmd`]: running `ip` and `nft`, entering namespaces.

pub mod cmd;
pub mod host;
pub mod metadata;
pub mod sg;

pub use cmd::NetError;
