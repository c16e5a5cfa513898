//! The common `RegionId`, `ZoneId` and `AcceptLanguage` parameters, checked against the
//! deployment's catalog with the real error codes.

use crate::{ApiError, Params};
use feitian_region::{Catalog, Language, Region, Zone};

/// `AcceptLanguage`: `zh-CN` (default), `en-US`; `ja` is served in English.
pub fn language(p: &Params) -> Result<Language, ApiError> {
    match p.opt_str("AcceptLanguage") {
        None => Ok(Language::Chinese),
        Some(l) if l.eq_ignore_ascii_case("zh-CN") || l.eq_ignore_ascii_case("zh") => Ok(Language::Chinese),
        Some(l) if l.eq_ignore_ascii_case("en-US") || l.eq_ignore_ascii_case("en") || l.eq_ignore_ascii_case("ja") => {
            Ok(Language::English)
        }
        Some(l) => Err(ApiError::invalid_parameter(
            "AcceptLanguage",
            format!("{:?} is not one of zh-CN, en-US, ja", crate::error::echo(l)),
        )),
    }
}

/// The region named by the required `RegionId`.
pub fn require_region<'c>(catalog: &'c Catalog, p: &Params) -> Result<&'c Region, ApiError> {
    let id = p.required_str("RegionId")?;
    catalog.region(id).ok_or_else(|| {
        let known: Vec<&str> = catalog.regions.iter().map(|r| r.id.as_str()).collect();
        ApiError::new(404, "InvalidRegionId.NotFound", "The specified RegionId does not exist.")
            .recommend(format!("this feitian serves {}", known.join(", ")))
    })
}

/// The zone named by `ZoneId` (required when `required`) within `region`.
pub fn zone<'r>(region: &'r Region, p: &Params, required: bool) -> Result<Option<&'r Zone>, ApiError> {
    let id = if required { Some(p.required_str("ZoneId")?) } else { p.opt_str("ZoneId") };
    match id {
        None => Ok(None),
        Some(id) => region.zone(id).map(Some).ok_or_else(|| {
            let known: Vec<&str> = region.zones.iter().map(|z| z.id.as_str()).collect();
            ApiError::new(404, "InvalidZoneId.NotFound", "The specified zone does not exist.").recommend(format!(
                "zones of {}: {}",
                region.id,
                known.join(", ")
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn region_zone_language() {
        let c = Catalog::default();
        assert_eq!(require_region(&c, &p(&[("RegionId", "cn-hangzhou")])).unwrap().id, "cn-hangzhou");
        assert_eq!(require_region(&c, &p(&[])).unwrap_err().code, "MissingParameter");
        assert_eq!(require_region(&c, &p(&[("RegionId", "mars-1")])).unwrap_err().code, "InvalidRegionId.NotFound");
        let r = c.default_region();
        assert!(zone(r, &p(&[]), false).unwrap().is_none());
        assert_eq!(zone(r, &p(&[("ZoneId", "cn-hangzhou-h")]), true).unwrap().unwrap().id, "cn-hangzhou-h");
        assert_eq!(zone(r, &p(&[("ZoneId", "x")]), false).unwrap_err().code, "InvalidZoneId.NotFound");
        // The second region of the default: its own zones only.
        let sh = require_region(&c, &p(&[("RegionId", "cn-shanghai")])).unwrap();
        assert_eq!(zone(sh, &p(&[("ZoneId", "cn-shanghai-l")]), true).unwrap().unwrap().id, "cn-shanghai-l");
        let e = zone(sh, &p(&[("ZoneId", "cn-hangzhou-h")]), true).unwrap_err();
        assert_eq!(e.code, "InvalidZoneId.NotFound");
        assert_eq!(zone(r, &p(&[("ZoneId", "cn-shanghai-e")]), true).unwrap_err().code, "InvalidZoneId.NotFound");
        let e = require_region(&c, &p(&[("RegionId", "cn-beijing")])).unwrap_err();
        assert!(e.recommend.as_deref().is_some_and(|r| r.contains("cn-hangzhou, cn-shanghai")), "{e:?}");
        assert_eq!(language(&p(&[("AcceptLanguage", "en-US")])).unwrap(), Language::English);
        assert_eq!(language(&p(&[])).unwrap(), Language::Chinese);
        assert!(language(&p(&[("AcceptLanguage", "klingon")])).is_err());
    }
}
