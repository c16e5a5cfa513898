//! `DescribeRegions` and `DescribeZones` (ECS 2014-05-26).

use crate::instance_types;
use feitian_api::region::{language, require_region};
use feitian_api::{ApiError, Params};
use feitian_region::{Catalog, Language, Region};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRegionsResponse {
    pub regions: Regions,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Regions {
    pub region: Vec<RegionItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionItem {
    pub region_id: String,
    pub local_name: String,
    pub region_endpoint: String,
    pub status: &'static str,
}

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
            status: "available",
        })
        .collect();
    Ok(DescribeRegionsResponse { regions: Regions { region } })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeZonesResponse {
    pub zones: Zones,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Zones {
    pub zone: Vec<ZoneItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ZoneItem {
    pub zone_id: String,
    pub local_name: String,
    pub zone_type: &'static str,
    #[serde(flatten)]
    pub detail: Option<ZoneDetail>,
}

/// What can be created in a zone; left out with `Verbose=false`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ZoneDetail {
    pub available_resource_creation: ResourceTypes,
    pub available_disk_categories: DiskCategories,
    pub available_volume_categories: VolumeCategories,
    pub available_instance_types: InstanceTypes,
    pub available_dedicated_host_types: DedicatedHostTypes,
    pub dedicated_host_generations: DedicatedHostGenerations,
    pub available_resources: AvailableResources,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceTypes {
    pub resource_types: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskCategories {
    pub disk_categories: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeCategories {
    pub volume_categories: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypes {
    pub instance_types: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DedicatedHostTypes {
    pub dedicated_host_type: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DedicatedHostGenerations {
    pub dedicated_host_generation: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AvailableResources {
    pub resources_info: Vec<ResourcesInfo>,
}

/// The real API spells these inner lists in lower camel case (`supportedInstanceType`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourcesInfo {
    pub io_optimized: bool,
    pub system_disk_categories: Supported<SystemDisk>,
    pub data_disk_categories: Supported<DataDisk>,
    pub network_types: Supported<Network>,
    pub instance_types: Supported<InstanceType>,
    pub instance_type_families: Supported<InstanceTypeFamily>,
    pub instance_generations: Supported<InstanceGeneration>,
}

/// A `{ "supportedX": [...] }` wrapper; `K` names the key.
pub struct Supported<K> {
    pub values: Vec<&'static str>,
    _key: std::marker::PhantomData<K>,
}

pub trait SupportedKey {
    const KEY: &'static str;
}

macro_rules! supported_key {
    ($($t:ident => $k:literal),* $(,)?) => {$(
        pub struct $t;
        impl SupportedKey for $t { const KEY: &'static str = $k; }
    )*};
}

supported_key! {
    SystemDisk => "supportedSystemDiskCategory",
    DataDisk => "supportedDataDiskCategory",
    Network => "supportedNetworkCategory",
    InstanceType => "supportedInstanceType",
    InstanceTypeFamily => "supportedInstanceTypeFamily",
    InstanceGeneration => "supportedInstanceGeneration",
}

impl<K> Supported<K> {
    fn new(values: Vec<&'static str>) -> Self {
        Supported { values, _key: std::marker::PhantomData }
    }
}

impl<K: SupportedKey> Serialize for Supported<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(K::KEY, &self.values)?;
        m.end()
    }
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
