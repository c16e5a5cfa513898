//! VPC, API version 2016-04-28. Every action is registered in [`register`], by name.

pub mod regions;

use feitian_api::Registry;
use feitian_region::Catalog;
use std::sync::Arc;

pub const PRODUCT: &str = "vpc";
pub const VERSION: &str = "2016-04-28";

/// What VPC handlers share.
pub struct Vpc {
    pub catalog: Arc<Catalog>,
}

/// Registers every VPC action.
pub fn register(r: &mut Registry, vpc: Arc<Vpc>) {
    let v = vpc.clone();
    r.add(PRODUCT, VERSION, "DescribeRegions", move |_ctx, p| {
        let out = regions::describe_regions(&v.catalog, &p);
        async move { out }
    });
    let v = vpc;
    r.add(PRODUCT, VERSION, "DescribeZones", move |_ctx, p| {
        let out = regions::describe_zones(&v.catalog, &p);
        async move { out }
    });
}
