//! ECS, API version 2014-05-26.
//!
//! Handlers validate typed parameters and answer in the API's own field names; state lives
//! in the control-plane store. Every action is registered in [`register`], by name (the VPC
//! actions that ECS also offers are registered by `feitian-vpc`).

pub mod instance_types;
pub mod regions;
pub mod security_groups;

use feitian_api::Registry;
use feitian_meta::Store;
use feitian_region::Catalog;
use feitian_secgroup::Direction;
use std::sync::Arc;
use tokio::sync::Notify;

pub const PRODUCT: &str = "ecs";
pub const VERSION: &str = "2014-05-26";

/// What ECS handlers share.
pub struct Ecs {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// Wakes the reconcilers (compute, and the network data plane) after a change.
    pub wake: Arc<Notify>,
}

macro_rules! actions {
    ($r:expr, $ecs:expr, [$($name:literal => $method:ident $(($arg:expr))?),* $(,)?]) => {$(
        {
            let e = $ecs.clone();
            $r.add(PRODUCT, VERSION, $name, move |ctx, p| e.clone().$method(ctx, p $(, $arg)?));
        }
    )*};
}

/// Registers every ECS action.
pub fn register(r: &mut Registry, ecs: Arc<Ecs>) {
    let e = ecs.clone();
    r.add(PRODUCT, VERSION, "DescribeRegions", move |_ctx, p| {
        let out = regions::describe_regions(&e.catalog, &p);
        async move { out }
    });
    let e = ecs.clone();
    r.add(PRODUCT, VERSION, "DescribeZones", move |_ctx, p| {
        let out = regions::describe_zones(&e.catalog, &p);
        async move { out }
    });
    actions!(r, ecs, [
        "CreateSecurityGroup" => create_security_group,
        "DescribeSecurityGroups" => describe_security_groups,
        "DescribeSecurityGroupAttribute" => describe_security_group_attribute,
        "ModifySecurityGroupAttribute" => modify_security_group_attribute,
        "ModifySecurityGroupPolicy" => modify_security_group_policy,
        "DeleteSecurityGroup" => delete_security_group,
        "AuthorizeSecurityGroup" => authorize(Direction::Ingress),
        "AuthorizeSecurityGroupEgress" => authorize(Direction::Egress),
        "RevokeSecurityGroup" => revoke(Direction::Ingress),
        "RevokeSecurityGroupEgress" => revoke(Direction::Egress),
        "DescribeSecurityGroupReferences" => describe_security_group_references,
    ]);
}
