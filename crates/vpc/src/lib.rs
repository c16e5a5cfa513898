//! VPC networking: the VPC API (2016-04-28) and the copies of its actions in the ECS API
//! (2014-05-26), which older clients such as Packer call. Every action is registered by
//! name in [`register_vpc_api`] and [`register_ecs_api`].

pub mod answers;
pub mod reconcile;
pub mod regions;
pub mod service;

use feitian_api::Registry;
pub use service::{Api, Network};
use std::sync::Arc;

pub const PRODUCT: &str = "vpc";
pub const VERSION: &str = "2016-04-28";

macro_rules! actions {
    ($r:expr, $net:expr, $product:expr, $version:expr, $api:expr, [$($name:literal => $method:ident),* $(,)?]) => {$(
        {
            let n = $net.clone();
            $r.add($product, $version, $name, move |ctx, p| n.clone().$method(ctx, p, $api));
        }
    )*};
}

/// Registers every action of the VPC API.
pub fn register_vpc_api(r: &mut Registry, net: Arc<Network>) {
    let n = net.clone();
    r.add(PRODUCT, VERSION, "DescribeRegions", move |_ctx, p| {
        let out = regions::describe_regions(&n.catalog, &p);
        async move { out }
    });
    let n = net.clone();
    r.add(PRODUCT, VERSION, "DescribeZones", move |_ctx, p| {
        let out = regions::describe_zones(&n.catalog, &p);
        async move { out }
    });
    actions!(r, net, PRODUCT, VERSION, Api::Vpc, [
        "CreateVpc" => create_vpc,
        "DescribeVpcs" => describe_vpcs,
        "DescribeVpcAttribute" => describe_vpc_attribute,
        "ModifyVpcAttribute" => modify_vpc_attribute,
        "DeleteVpc" => delete_vpc,
        "CreateVSwitch" => create_vswitch,
        "DescribeVSwitches" => describe_vswitches,
        "DescribeVSwitchAttributes" => describe_vswitch_attributes,
        "ModifyVSwitchAttribute" => modify_vswitch_attribute,
        "DeleteVSwitch" => delete_vswitch,
        "DescribeRouteTables" => describe_route_tables,
        "DescribeRouteTableList" => describe_route_table_list,
        "CreateRouteEntry" => create_route_entry,
        "DeleteRouteEntry" => delete_route_entry,
        "DescribeRouteEntryList" => describe_route_entry_list,
        "AllocateEipAddress" => allocate_eip_address,
        "AssociateEipAddress" => associate_eip_address,
        "UnassociateEipAddress" => unassociate_eip_address,
        "ReleaseEipAddress" => release_eip_address,
        "DescribeEipAddresses" => describe_eip_addresses,
    ]);
}

/// Registers the VPC actions that the ECS API (2014-05-26) also offers.
pub fn register_ecs_api(r: &mut Registry, net: Arc<Network>) {
    const ECS: &str = "ecs";
    const ECS_VERSION: &str = "2014-05-26";
    actions!(r, net, ECS, ECS_VERSION, Api::Ecs, [
        "CreateVpc" => create_vpc,
        "DescribeVpcs" => describe_vpcs,
        "ModifyVpcAttribute" => modify_vpc_attribute,
        "DeleteVpc" => delete_vpc,
        "CreateVSwitch" => create_vswitch,
        "DescribeVSwitches" => describe_vswitches,
        "ModifyVSwitchAttribute" => modify_vswitch_attribute,
        "DeleteVSwitch" => delete_vswitch,
        "DescribeRouteTables" => describe_route_tables,
        "CreateRouteEntry" => create_route_entry,
        "DeleteRouteEntry" => delete_route_entry,
        "AllocateEipAddress" => allocate_eip_address,
        "AssociateEipAddress" => associate_eip_address,
        "UnassociateEipAddress" => unassociate_eip_address,
        "ReleaseEipAddress" => release_eip_address,
        "DescribeEipAddresses" => describe_eip_addresses,
    ]);
}
