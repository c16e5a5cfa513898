//! Answer shapes that more than one product gives: an empty answer, and `DescribeRegions` and
//! `DescribeZones`, which ECS (2014-05-26) and VPC (2016-04-28) both answer. Where the two
//! products differ, the field is an `Option` left out when absent: ECS's regions carry a
//! `Status` and its zones (unless `Verbose=false`) the resource lists of [`ZoneDetail`];
//! VPC's carry neither.

use serde::Serialize;

/// An answer with nothing but its `RequestId` (most modify, delete and associate actions).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Empty {}

// --- DescribeRegions --------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRegionsResponse {
    pub regions: Regions,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Regions {
    pub region: Vec<RegionItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionItem {
    pub region_id: String,
    pub local_name: String,
    pub region_endpoint: String,
    /// ECS only (`available`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

// --- DescribeZones ----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeZonesResponse {
    pub zones: Zones,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Zones {
    pub zone: Vec<ZoneItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ZoneItem {
    pub zone_id: String,
    pub local_name: String,
    pub zone_type: &'static str,
    /// ECS only, and left out there with `Verbose=false`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ZoneDetail>,
}

/// What can be created in a zone (ECS).
#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceTypes {
    pub resource_types: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskCategories {
    pub disk_categories: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeCategories {
    pub volume_categories: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypes {
    pub instance_types: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DedicatedHostTypes {
    pub dedicated_host_type: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DedicatedHostGenerations {
    pub dedicated_host_generation: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AvailableResources {
    pub resources_info: Vec<ResourcesInfo>,
}

/// The real API spells these inner lists in lower camel case (`supportedInstanceType`).
#[derive(Debug, Serialize)]
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
#[derive(Debug)]
pub struct Supported<K> {
    pub values: Vec<&'static str>,
    _key: std::marker::PhantomData<K>,
}

pub trait SupportedKey {
    const KEY: &'static str;
}

macro_rules! supported_key {
    ($($t:ident => $k:literal),* $(,)?) => {$(
        #[derive(Debug)]
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
    pub fn new(values: Vec<&'static str>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn product_differences_are_left_out_when_absent() {
        let region = |status| RegionItem {
            region_id: "cn-hangzhou".into(),
            local_name: "华东 1".into(),
            region_endpoint: "x.cn-hangzhou.aliyuncs.com".into(),
            status,
        };
        let r = serde_json::to_value(region(None)).unwrap();
        assert_eq!(
            r,
            json!({"RegionId": "cn-hangzhou", "LocalName": "华东 1", "RegionEndpoint": "x.cn-hangzhou.aliyuncs.com"})
        );
        assert_eq!(serde_json::to_value(region(Some("available"))).unwrap()["Status"], "available");
        let zone =
            ZoneItem { zone_id: "z".into(), local_name: "Z".into(), zone_type: "AvailabilityZone", detail: None };
        let z = serde_json::to_value(DescribeZonesResponse { zones: Zones { zone: vec![zone] } }).unwrap();
        assert_eq!(z, json!({"Zones": {"Zone": [{"ZoneId": "z", "LocalName": "Z", "ZoneType": "AvailabilityZone"}]}}));
    }

    #[test]
    fn supported_lists_keep_their_lower_camel_key() {
        let s: Supported<InstanceType> = Supported::new(vec!["ecs.g6.large"]);
        assert_eq!(serde_json::to_value(s).unwrap(), json!({"supportedInstanceType": ["ecs.g6.large"]}));
    }

    #[test]
    fn empty_is_an_empty_object() {
        assert_eq!(serde_json::to_value(Empty {}).unwrap(), json!({}));
        let reply = crate::Reply::new(Empty {}).to_json("R").unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&reply).unwrap(), json!({"RequestId": "R"}));
    }
}
