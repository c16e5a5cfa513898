//! `DescribeRegions` and `DescribeZones` (ECS 2014-05-26). The answer shapes, shared with VPC's,
//! are in [`feitian_api::answers`].

use crate::instance_types;
use feitian_api::answers::{
    AvailableResources, DedicatedHostGenerations, DedicatedHostTypes, DescribeRegionsResponse, DescribeZonesResponse,
    DiskCategories, InstanceTypes, RegionItem, Regions, ResourceTypes, ResourcesInfo, Supported, VolumeCategories,
    ZoneDetail, ZoneItem, Zones,
};
use feitian_api::region::{language, require_region};
use feitian_api::{ApiError, Params};
use feitian_region::{Catalog, Language, Region};

fn check_charge_type(p: &Params) -> Result<(), ApiError> {
    match p.opt_str("InstanceChargeType") {
        None | Some("PrePaid") | Some("PostPaid") => Ok(()),
        Some(v) => Err(ApiError::invalid_parameter("InstanceChargeType", format!("{v:?} is not PrePaid or PostPaid"))),
    }
}

/// `DescribeRegions`: every region of the deployment. `RegionId` is not required here.
pub fn describe_regions(catalog: &Catalog, p: &Params) -> Result<DescribeRegionsResponse, ApiError> {
    let lang = language(p)?;
    check_charge_type(p)?;
    match p.opt_str("ResourceType") {
        None | Some("instance") | Some("disk") | Some("reservedinstance") | Some("scu") => {}
        Some(v) => {
            return Err(ApiError::invalid_parameter(
                "ResourceType",
                format!("{v:?} is not instance, disk, reservedinstance or scu"),
            ))
        }
    }
    let region = catalog
        .regions
        .iter()
        .map(|r| RegionItem {
            region_id: r.id.clone(),
            local_name: r.name(lang).to_owned(),
            region_endpoint: r.endpoint("ecs"),
            status: Some("available"),
        })
        .collect();
    Ok(DescribeRegionsResponse { regions: Regions { region } })
}

/// The disk categories feitian's storage offers.
const DISK_CATEGORIES: &[&str] = &["cloud_efficiency", "cloud_ssd", "cloud_essd"];

fn zone_detail() -> ZoneDetail {
    let types = instance_types::distinct(|t| t.id);
    ZoneDetail {
        available_resource_creation: ResourceTypes { resource_types: vec!["Instance", "Disk", "VSwitch"] },
        available_disk_categories: DiskCategories { disk_categories: DISK_CATEGORIES.to_vec() },
        available_volume_categories: VolumeCategories { volume_categories: vec![] },
        available_instance_types: InstanceTypes { instance_types: types.clone() },
        available_dedicated_host_types: DedicatedHostTypes { dedicated_host_type: vec![] },
        dedicated_host_generations: DedicatedHostGenerations { dedicated_host_generation: vec![] },
        available_resources: AvailableResources {
            resources_info: vec![ResourcesInfo {
                io_optimized: true,
                system_disk_categories: Supported::new(DISK_CATEGORIES.to_vec()),
                data_disk_categories: Supported::new(DISK_CATEGORIES.to_vec()),
                network_types: Supported::new(vec!["vpc"]),
                instance_types: Supported::new(types),
                instance_type_families: Supported::new(instance_types::distinct(|t| t.family)),
                instance_generations: Supported::new(instance_types::distinct(|t| t.generation)),
            }],
        },
    }
}

fn zones_of(region: &Region, lang: Language, verbose: bool) -> Vec<ZoneItem> {
    region
        .zones
        .iter()
        .map(|z| ZoneItem {
            zone_id: z.id.clone(),
            local_name: z.name(lang).to_owned(),
            zone_type: "AvailabilityZone",
            detail: verbose.then(zone_detail),
        })
        .collect()
}

/// `DescribeZones`: the zones of `RegionId`, with what can be created in each unless
/// `Verbose=false`.
pub fn describe_zones(catalog: &Catalog, p: &Params) -> Result<DescribeZonesResponse, ApiError> {
    let region = require_region(catalog, p)?;
    let lang = language(p)?;
    check_charge_type(p)?;
    match p.opt_str("SpotStrategy") {
        None | Some("NoSpot") | Some("SpotWithPriceLimit") | Some("SpotAsPriceGo") => {}
        Some(v) => {
            return Err(ApiError::invalid_parameter(
                "SpotStrategy",
                format!("{v:?} is not NoSpot, SpotWithPriceLimit or SpotAsPriceGo"),
            ))
        }
    }
    let verbose = p.opt_bool("Verbose")?.unwrap_or(true);
    Ok(DescribeZonesResponse { zones: Zones { zone: zones_of(region, lang, verbose) } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn regions_in_both_languages() {
        let c = Catalog::default();
        let r = serde_json::to_value(describe_regions(&c, &p(&[])).unwrap()).unwrap();
        assert_eq!(r["Regions"]["Region"][0]["RegionId"], "cn-hangzhou");
        assert_eq!(r["Regions"]["Region"][0]["Status"], "available");
        assert_eq!(r["Regions"]["Region"][0]["RegionEndpoint"], "ecs.cn-hangzhou.aliyuncs.com");
        let r = serde_json::to_value(describe_regions(&c, &p(&[("AcceptLanguage", "en-US")])).unwrap()).unwrap();
        assert_eq!(r["Regions"]["Region"][0]["LocalName"], "China (Hangzhou)");
        assert!(describe_regions(&c, &p(&[("InstanceChargeType", "Free")])).is_err());
    }

    #[test]
    fn zones_verbose_and_not() {
        let c = Catalog::default();
        let z = serde_json::to_value(describe_zones(&c, &p(&[("RegionId", "cn-hangzhou")])).unwrap()).unwrap();
        let first = &z["Zones"]["Zone"][0];
        assert_eq!(first["ZoneId"], "cn-hangzhou-h");
        assert_eq!(first["ZoneType"], "AvailabilityZone");
        let info = &first["AvailableResources"]["ResourcesInfo"][0];
        assert!(info["InstanceTypes"]["supportedInstanceType"].as_array().unwrap().iter().any(|v| v == "ecs.g6.large"));
        assert_eq!(info["NetworkTypes"]["supportedNetworkCategory"][0], "vpc");
        let z =
            serde_json::to_value(describe_zones(&c, &p(&[("RegionId", "cn-hangzhou"), ("Verbose", "false")])).unwrap())
                .unwrap();
        let first = z["Zones"]["Zone"][0].as_object().unwrap();
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(!first.contains_key("AvailableResources"));
        assert!(matches!(z["Zones"]["Zone"], Value::Array(ref a) if a.len() == 4));
        assert_eq!(describe_zones(&c, &p(&[])).err().unwrap().code, "MissingParameter");
        assert_eq!(describe_zones(&c, &p(&[("RegionId", "xx")])).err().unwrap().code, "InvalidRegionId.NotFound");
    }
}
