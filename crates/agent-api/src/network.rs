//! VPC networks: what one VPC's network on a host holds.

use feitian_secgroup::World;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One VPC's network as a host must realize it. The host's agent turns it into its own
/// objects (namespaces, a bridge, taps, nftables); the plan names none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcPlan {
    pub vpc_id: String,
    /// Each vSwitch's gateway address with the vSwitch's prefix length.
    pub gateways: Vec<Ipv4Net>,
    /// The instances' interfaces attached to the VPC's network.
    pub nics: Vec<NicAttachment>,
    /// Public address → private address (EIPs and instances' public IPs).
    pub nat: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// The security groups of the interfaces, and the groups their rules name as peers.
    pub security: World,
    /// What the metadata service answers, by the asking instance's private address.
    pub metadata: BTreeMap<Ipv4Addr, InstanceMetadata>,
}

/// One interface on a VPC's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicAttachment {
    /// Its id, as in [`VpcPlan::security`]'s interfaces.
    pub nic_id: String,
    pub ip: Ipv4Addr,
    /// `00:16:3e:xx:xx:xx`.
    pub mac: String,
}

/// What an instance may learn about itself from the metadata service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMetadata {
    pub instance_id: String,
    pub hostname: String,
    pub region_id: String,
    pub zone_id: String,
    pub private_ipv4: String,
    /// Empty when the instance has no EIP or public IP.
    pub eipv4: String,
    pub mac: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub vpc_cidr_block: String,
    pub vswitch_cidr_block: String,
    pub image_id: String,
    pub instance_type: String,
    pub owner_account_id: String,
    pub serial_number: String,
    pub gateway: String,
    /// OpenSSH public keys (the key pair's).
    pub public_keys: Vec<String>,
    /// The UserData, decoded; `None` when there is none.
    pub user_data: Option<Vec<u8>>,
}
