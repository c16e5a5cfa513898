//! `DescribeRegions` and `DescribeZones` (VPC 2016-04-28). VPC's answers are leaner than
//! ECS's: no status, no resource lists. The answer shapes, shared with ECS's, are in
//! [`feitian_api::answers`].

use feitian_api::answers::{DescribeRegionsResponse, DescribeZonesResponse, RegionItem, Regions, ZoneItem, Zones};
use feitian_api::region::{language, require_region};
use feitian_api::{ApiError, Params};
use feitian_region::Catalog;

pub fn describe_regions(catalog: &Catalog, p: &Params) -> Result<DescribeRegionsResponse, ApiError> {
    let lang = language(p)?;
    let region = catalog
        .regions
        .iter()
        .map(|r| RegionItem {
            region_id: r.id.clone(),
            local_name: r.name(lang).to_owned(),
            region_endpoint: r.endpoint("vpc"),
            status: None,
        })
        .collect();
    Ok(DescribeRegionsResponse { regions: Regions { region } })
}

pub fn describe_zones(catalog: &Catalog, p: &Params) -> Result<DescribeZonesResponse, ApiError> {
    let region = require_region(catalog, p)?;
    let lang = language(p)?;
    match p.opt_str("ZoneType") {
        None | Some("AvailabilityZone") => {}
        // Edge zones are a real zone type, of which feitian has none.
        Some("EdgeZone") => return Ok(DescribeZonesResponse { zones: Zones { zone: vec![] } }),
        Some(v) => {
            return Err(ApiError::invalid_parameter("ZoneType", format!("{v:?} is not AvailabilityZone or EdgeZone")))
        }
    }
    let zone = region
        .zones
        .iter()
        .map(|z| ZoneItem {
            zone_id: z.id.clone(),
            local_name: z.name(lang).to_owned(),
            zone_type: "AvailabilityZone",
            detail: None,
        })
        .collect();
    Ok(DescribeZonesResponse { zones: Zones { zone } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn regions_and_zones() {
        let c = Catalog::default();
        let r = serde_json::to_value(describe_regions(&c, &p(&[])).unwrap()).unwrap();
        assert_eq!(r["Regions"]["Region"][0]["RegionEndpoint"], "vpc.cn-hangzhou.aliyuncs.com");
        assert!(r["Regions"]["Region"][0].get("Status").is_none());
        let z = serde_json::to_value(describe_zones(&c, &p(&[("RegionId", "cn-hangzhou")])).unwrap()).unwrap();
        assert_eq!(z["Zones"]["Zone"].as_array().unwrap().len(), 4);
        let z = serde_json::to_value(
            describe_zones(&c, &p(&[("RegionId", "cn-hangzhou"), ("ZoneType", "EdgeZone")])).unwrap(),
        )
        .unwrap();
        assert_eq!(z["Zones"]["Zone"].as_array().unwrap().len(), 0);
        assert!(describe_zones(&c, &p(&[("RegionId", "cn-hangzhou"), ("ZoneType", "Moon")])).is_err());
    }
}
