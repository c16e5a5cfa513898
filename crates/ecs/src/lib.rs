//! ECS, API version 2014-05-26.
//!
//! Handlers validate typed parameters and answer in the API's own field names; state lives
//! in the control-plane store. Every action is registered in [`register`], by name.

pub mod instance_types;
pub mod regions;

use feitian_api::Registry;
use feitian_region::Catalog;
use std::sync::Arc;

pub const PRODUCT: &str = "ecs";
pub const VERSION: &str = "2014-05-26";

/// What ECS handlers share.
pub struct Ecs {
    pub catalog: Arc<Catalog>,
}

/// Registers every ECS action.
pub fn register(r: &mut Registry, ecs: Arc<Ecs>) {
    let e = ecs.clone();
    r.add(PRODUCT, VERSION, "DescribeRegions", move |_ctx, p| {
        let out = regions::describe_regions(&e.catalog, &p);
        async move { out }
    });
    let e = ecs;
    r.add(PRODUCT, VERSION, "DescribeZones", move |_ctx, p| {
        let out = regions::describe_zones(&e.catalog, &p);
        async move { out }
    });
}
