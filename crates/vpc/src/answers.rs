//! The answers of the VPC actions, in the shapes and with the field names of the official
//! models (`alibabacloud_vpc20160428` and, for the older copies, `alibabacloud_ecs20140526`).
//!
//! One handler answers both APIs. What both show is a plain struct; what only the VPC API
//! (2016-04-28) shows is an `…Extension` in an `Option` flattened into it, `None` (and so
//! absent) for the ECS API (2014-05-26), whose models do not know those keys.
//!
//! Create answers are also stored for `ClientToken` replays, so they read back too
//! (`Deserialize`); keys they no longer carry (the VPC API's `OrderId` of old) are ignored.

use feitian_api::answers::Empty;
use feitian_api::paging::PageInfo;
use serde::{Deserialize, Serialize};

/// Declares `{"<Key>": [item, …]}`, the object the APIs wrap every list in.
macro_rules! list {
    ($(#[$doc:meta])* $name:ident { $key:literal: $item:ty }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Serialize)]
        pub struct $name {
            #[serde(rename = $key)]
            pub items: Vec<$item>,
        }

        impl From<Vec<$item>> for $name {
            fn from(items: Vec<$item>) -> Self {
                $name { items }
            }
        }
    };
}

// --- pieces several answers use ---------------------------------------------------------------

/// A tag as the VPC API shows it (`Key`/`Value`; ECS's answers say `TagKey`/`TagValue`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

list!(Tags { "Tag": Tag });

impl From<Vec<(String, String)>> for Tags {
    fn from(tags: Vec<(String, String)>) -> Self {
        Tags { items: tags.into_iter().map(|(key, value)| Tag { key, value }).collect() }
    }
}

list!(VSwitchIds { "VSwitchId": String });

// --- VPCs -------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVpcResponse {
    pub vpc_id: String,
    #[serde(rename = "VRouterId")]
    pub vrouter_id: String,
    pub route_table_id: String,
    /// VPC API only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
}

pub type ModifyVpcAttributeResponse = Empty;
pub type DeleteVpcResponse = Empty;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeVpcsResponse {
    pub vpcs: Vpcs,
    #[serde(flatten)]
    pub page: PageInfo,
}

list!(Vpcs { "Vpc": VpcItem });

/// One of `Vpcs.Vpc[]`.
#[derive(Debug, Serialize)]
pub struct VpcItem {
    #[serde(flatten)]
    pub vpc: VpcAttributes,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<VpcListExtension>,
}

/// What `DescribeVpcs` and `DescribeVpcAttribute` show of a VPC.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributes {
    pub vpc_id: String,
    pub region_id: String,
    pub status: &'static str,
    pub vpc_name: String,
    pub creation_time: String,
    pub cidr_block: String,
    #[serde(rename = "VRouterId")]
    pub vrouter_id: String,
    pub description: String,
    pub is_default: bool,
    #[serde(rename = "VSwitchIds")]
    pub vswitch_ids: VSwitchIds,
    pub user_cidrs: UserCidrs,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<VpcExtension>,
}

list!(UserCidrs { "UserCidr": String });

/// A VPC's fields that only the VPC API shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcExtension {
    pub ipv6_cidr_block: &'static str,
    pub enabled_ipv6: bool,
    pub resource_group_id: &'static str,
    pub owner_id: u64,
    pub dhcp_options_set_id: &'static str,
    pub dhcp_options_set_status: &'static str,
    pub dns_hostname_status: &'static str,
    pub secondary_cidr_blocks: SecondaryCidrBlocks,
    pub tags: Tags,
}

list!(SecondaryCidrBlocks { "SecondaryCidrBlock": String });

/// What the VPC API's `DescribeVpcs` adds to each VPC.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcListExtension {
    pub cen_status: &'static str,
    pub router_table_ids: RouterTableIds,
    pub nat_gateway_ids: NatGatewayIds,
}

list!(RouterTableIds { "RouterTableIds": String });
list!(NatGatewayIds { "NatGatewayIds": String });

#[derive(Debug, Serialize)]
pub struct DescribeVpcAttributeResponse {
    #[serde(flatten)]
    pub vpc: VpcAttributes,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<VpcAttributeExtension>,
}

/// What the VPC API's `DescribeVpcAttribute` adds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributeExtension {
    pub classic_link_enabled: bool,
    pub support_ipv4_gateway: bool,
    pub ipv4_gateway_id: &'static str,
    pub cloud_resources: CloudResources,
}

list!(CloudResources { "CloudResourceSetType": CloudResource });

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudResource {
    pub resource_type: &'static str,
    pub resource_count: u64,
}

// --- vSwitches --------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateVSwitchResponse {
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
}

pub type ModifyVSwitchAttributeResponse = Empty;
pub type DeleteVSwitchResponse = Empty;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeVSwitchesResponse {
    #[serde(rename = "VSwitches")]
    pub vswitches: VSwitches,
    #[serde(flatten)]
    pub page: PageInfo,
}

list!(VSwitches { "VSwitch": VSwitchAttributes });

/// `DescribeVSwitchAttributes` shows a vSwitch as `DescribeVSwitches` does.
pub type DescribeVSwitchAttributesResponse = VSwitchAttributes;

/// A vSwitch, as `DescribeVSwitches` and `DescribeVSwitchAttributes` show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VSwitchAttributes {
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
    pub vpc_id: String,
    pub status: &'static str,
    pub cidr_block: String,
    pub zone_id: String,
    pub available_ip_address_count: u64,
    pub description: String,
    #[serde(rename = "VSwitchName")]
    pub vswitch_name: String,
    pub creation_time: String,
    pub is_default: bool,
    pub resource_group_id: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<VSwitchExtension>,
}

/// A vSwitch's fields that only the VPC API shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VSwitchExtension {
    pub ipv6_cidr_block: &'static str,
    pub enabled_ipv6: bool,
    pub network_acl_id: &'static str,
    pub share_type: &'static str,
    pub owner_id: u64,
    pub route_table: VSwitchRouteTable,
    pub tags: Tags,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VSwitchRouteTable {
    pub route_table_id: String,
    pub route_table_type: &'static str,
}

// --- route tables -----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRouteTablesResponse {
    pub route_tables: RouteTables,
    #[serde(flatten)]
    pub page: PageInfo,
}

list!(RouteTables { "RouteTable": RouteTableItem });

/// One of `RouteTables.RouteTable[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTableItem {
    pub route_table_id: String,
    pub route_table_type: String,
    #[serde(rename = "VRouterId")]
    pub vrouter_id: String,
    pub creation_time: String,
    pub resource_group_id: &'static str,
    pub route_entrys: RouteEntrys,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<RouteTableExtension>,
}

/// A route table's fields that only the VPC API's `DescribeRouteTables` shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTableExtension {
    pub status: &'static str,
    #[serde(rename = "VSwitchIds")]
    pub vswitch_ids: VSwitchIds,
}

list!(RouteEntrys { "RouteEntry": RouteEntryItem });

/// One of `RouteTables.RouteTable[].RouteEntrys.RouteEntry[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteEntryItem {
    pub route_table_id: String,
    pub destination_cidr_block: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub status: &'static str,
    pub instance_id: String,
    pub next_hop_type: String,
    pub next_hops: NextHops,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<RouteEntryExtension>,
}

/// A route entry's fields that only the VPC API's `DescribeRouteTables` shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteEntryExtension {
    pub route_entry_id: String,
    pub route_entry_name: String,
    pub description: String,
}

list!(NextHops { "NextHop": NextHop });

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NextHop {
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub enabled: u32,
    pub weight: u32,
    /// `DescribeRouteEntryList` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop_region_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRouteTableListResponse {
    pub router_table_list: RouterTableList,
    #[serde(flatten)]
    pub page: PageInfo,
}

list!(RouterTableList { "RouterTableListType": RouterTableListItem });

/// One of `RouterTableList.RouterTableListType[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouterTableListItem {
    pub vpc_id: String,
    pub router_id: String,
    pub router_type: &'static str,
    pub route_table_id: String,
    pub route_table_name: String,
    pub route_table_type: String,
    pub description: String,
    pub creation_time: String,
    pub status: &'static str,
    pub resource_group_id: &'static str,
    pub associate_type: &'static str,
    pub route_propagation_enable: bool,
    #[serde(rename = "VSwitchIds")]
    pub vswitch_ids: VSwitchIds,
    pub gateway_ids: GatewayIds,
    pub tags: Tags,
}

list!(GatewayIds { "GatewayIds": String });

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRouteEntryResponse {
    /// VPC API only: ECS's answer is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_entry_id: Option<String>,
}

pub type DeleteRouteEntryResponse = Empty;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRouteEntryListResponse {
    pub route_entrys: RouteEntryList,
    /// The offset of the next page as a number, "" after the last.
    pub next_token: String,
    pub total_count: u64,
}

list!(RouteEntryList { "RouteEntry": RouteEntryListItem });

/// One of `DescribeRouteEntryList`'s `RouteEntrys.RouteEntry[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteEntryListItem {
    pub route_entry_id: String,
    pub route_table_id: String,
    pub destination_cidr_block: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub status: &'static str,
    pub route_entry_name: String,
    pub description: String,
    pub ip_version: &'static str,
    pub gmt_modified: String,
    pub origin: &'static str,
    pub next_hops: NextHops,
}

// --- EIPs -------------------------------------------------------------------------------------

/// The VPC API's model also has `OrderId` (an Integer), which only subscription (PrePaid)
/// EIPs come with; feitian's are pay-as-you-go, so it is never there.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateEipAddressResponse {
    pub allocation_id: String,
    pub eip_address: String,
    /// VPC API only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
}

pub type AssociateEipAddressResponse = Empty;
pub type UnassociateEipAddressResponse = Empty;
pub type ReleaseEipAddressResponse = Empty;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeEipAddressesResponse {
    pub eip_addresses: EipAddresses,
    #[serde(flatten)]
    pub page: PageInfo,
}

list!(EipAddresses { "EipAddress": EipAddressItem });

/// One of `EipAddresses.EipAddress[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EipAddressItem {
    pub allocation_id: String,
    pub ip_address: String,
    pub status: &'static str,
    pub region_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub internet_charge_type: String,
    pub charge_type: &'static str,
    pub allocation_time: String,
    pub expired_time: &'static str,
    /// Mbit/s; a String in both APIs' models.
    pub bandwidth: String,
    pub eip_bandwidth: String,
    pub operation_locks: OperationLocks,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vpc_api: Option<EipAddressExtension>,
}

list!(OperationLocks { "LockReason": LockReason });

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LockReason {
    pub lock_reason: String,
}

/// An EIP's fields that only the VPC API shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EipAddressExtension {
    pub name: String,
    pub description: String,
    #[serde(rename = "ISP")]
    pub isp: String,
    pub private_ip_address: String,
    pub instance_region_id: String,
    pub mode: &'static str,
    pub netmode: &'static str,
    pub deletion_protection: bool,
    pub resource_group_id: &'static str,
    pub bandwidth_package_id: &'static str,
    pub bandwidth_package_type: &'static str,
    pub bandwidth_package_bandwidth: &'static str,
    #[serde(rename = "HDMonitorStatus")]
    pub hd_monitor_status: &'static str,
    pub second_limited: bool,
    pub service_managed: i32,
    pub tags: Tags,
}
