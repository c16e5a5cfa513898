//! Regions and zones: what a feitian deployment offers, read from configuration.
//!
//! Pure data with validation; no I/O. The binary loads a [`Catalog`] from its configuration
//! file (or takes [`Catalog::default`]) and hands it to the services that answer
//! `DescribeRegions` / `DescribeZones` and validate `RegionId` / `ZoneId` parameters.

use serde::Deserialize;

/// One availability zone of a region.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The zone id as the API shows it, e.g. `cn-hangzhou-h`.
    pub id: String,
    /// The display name, e.g. `华东 1 可用区 H`.
    pub local_name: String,
    /// The English display name (`AcceptLanguage=en-US`), e.g. `Hangzhou Zone H`.
    pub english_name: String,
}

/// One region: the unit that the API's `RegionId` names.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region id, e.g. `cn-hangzhou`.
    pub id: String,
    /// The display name, e.g. `华东1（杭州）`.
    pub local_name: String,
    /// The English display name, e.g. `China (Hangzhou)`.
    pub english_name: String,
    /// Two lowercase letters or digits that resource ids of this region carry after their
    /// prefix, as the real ids do (`i-bp…` in Hangzhou).
    pub id_code: String,
    pub zones: Vec<Zone>,
}

/// The display language a request asks for (`AcceptLanguage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Chinese,
    English,
}

impl Zone {
    pub fn name(&self, lang: Language) -> &str {
        match lang {
            Language::Chinese => &self.local_name,
            Language::English => &self.english_name,
        }
    }
}

impl Region {
    pub fn name(&self, lang: Language) -> &str {
        match lang {
            Language::Chinese => &self.local_name,
            Language::English => &self.english_name,
        }
    }

    pub fn zone(&self, zone_id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == zone_id)
    }

    /// The endpoint host a product of this region answers on, as the real cloud names it
    /// (`ecs.cn-hangzhou.aliyuncs.com`).
    pub fn endpoint(&self, product: &str) -> String {
        format!("{product}.{}.aliyuncs.com", self.id)
    }
}

/// All regions of a deployment.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub regions: Vec<Region>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("the catalog has no region; configure at least one [[regions]] entry")]
    Empty,
    #[error("region {0:?} is listed twice")]
    DuplicateRegion(String),
    #[error("zone {0:?} is listed twice")]
    DuplicateZone(String),
    #[error("region {0:?} has no zone; give it at least one")]
    NoZones(String),
    #[error("region id {0:?} is not valid: use lowercase letters, digits and '-' (like cn-hangzhou)")]
    BadRegionId(String),
    #[error("zone id {zone:?} must start with its region id {region:?} followed by '-'")]
    BadZoneId { region: String, zone: String },
    #[error("id_code {0:?} must be exactly two lowercase letters or digits")]
    BadIdCode(String),
}

impl Default for Catalog {
    /// One region, `cn-hangzhou`, with four zones: the embedded default.
    fn default() -> Self {
        let zone = |suffix: &str, letter: &str| Zone {
            id: format!("cn-hangzhou-{suffix}"),
            local_name: format!("华东 1 可用区 {letter}"),
            english_name: format!("Hangzhou Zone {letter}"),
        };
        Catalog {
            regions: vec![Region {
                id: "cn-hangzhou".into(),
                local_name: "华东1（杭州）".into(),
                english_name: "China (Hangzhou)".into(),
                id_code: "bp".into(),
                zones: vec![zone("h", "H"), zone("i", "I"), zone("j", "J"), zone("k", "K")],
            }],
        }
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Catalog {
    /// Checks the rules the rest of feitian relies on: unique ids, zones named after their
    /// region, at least one zone per region.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.regions.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut regions = std::collections::HashSet::new();
        let mut zones = std::collections::HashSet::new();
        for r in &self.regions {
            if !valid_id(&r.id) {
                return Err(CatalogError::BadRegionId(r.id.clone()));
            }
            if !regions.insert(r.id.as_str()) {
                return Err(CatalogError::DuplicateRegion(r.id.clone()));
            }
            if r.id_code.len() != 2 || !r.id_code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                return Err(CatalogError::BadIdCode(r.id_code.clone()));
            }
            if r.zones.is_empty() {
                return Err(CatalogError::NoZones(r.id.clone()));
            }
            for z in &r.zones {
                let ok = z.id.strip_prefix(r.id.as_str()).and_then(|rest| rest.strip_prefix('-')).is_some_and(valid_id);
                if !ok {
                    return Err(CatalogError::BadZoneId { region: r.id.clone(), zone: z.id.clone() });
                }
                if !zones.insert(z.id.as_str()) {
                    return Err(CatalogError::DuplicateZone(z.id.clone()));
                }
            }
        }
        Ok(())
    }

    pub fn region(&self, region_id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id == region_id)
    }

    /// The region a deployment treats as home when a request names none.
    pub fn default_region(&self) -> &Region {
        &self.regions[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_hangzhou() {
        let c = Catalog::default();
        c.validate().unwrap();
        let r = c.region("cn-hangzhou").unwrap();
        assert_eq!(r.zones.len(), 4);
        assert!(r.zone("cn-hangzhou-h").is_some());
        assert!(r.zone("cn-beijing-a").is_none());
        assert_eq!(r.endpoint("ecs"), "ecs.cn-hangzhou.aliyuncs.com");
    }

    #[test]
    fn rejects_bad_catalogs() {
        let mut c = Catalog::default();
        c.regions[0].zones[0].id = "cn-beijing-a".into();
        assert!(matches!(c.validate(), Err(CatalogError::BadZoneId { .. })));

        let mut c = Catalog::default();
        let z = c.regions[0].zones[0].clone();
        c.regions[0].zones.push(z);
        assert!(matches!(c.validate(), Err(CatalogError::DuplicateZone(_))));

        let mut c = Catalog::default();
        c.regions[0].id_code = "B".into();
        assert!(matches!(c.validate(), Err(CatalogError::BadIdCode(_))));

        let mut c = Catalog::default();
        c.regions[0].zones.clear();
        assert!(matches!(c.validate(), Err(CatalogError::NoZones(_))));

        assert_eq!(Catalog { regions: vec![] }.validate(), Err(CatalogError::Empty));

        let mut c = Catalog::default();
        let r = c.regions[0].clone();
        c.regions.push(r);
        assert!(matches!(c.validate(), Err(CatalogError::DuplicateRegion(_))));
    }
}
