//! Regions and zones: what a feitian deployment offers, read from configuration.
//!
//! Pure data with validation; no I/O. The binary loads a [`Catalog`] from its configuration
//! file (or takes [`Catalog::default`]) and hands it to the services that answer
//! `DescribeRegions` / `DescribeZones` and validate `RegionId` / `ZoneId` parameters.
//!
//! On one machine a region is a partition of the API, not of the hardware: each region has its
//! own ids (carrying its [`Region::id_code`]), resources and quotas, while every region shares
//! the host, its Pangu and the object store of the *home* region, the catalog's first
//! ([`Catalog::default_region`]; `docs/regions.md`). The embedded default has two regions,
//! `cn-hangzhou` (home) and `cn-shanghai`, so that what works between regions (CopyImage) can
//! be used without a configuration file.

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
    /// Two regions with one code would make an id's region unreadable from the id.
    #[error("id_code {0:?} is used by two regions; give each region its own")]
    DuplicateIdCode(String),
}

impl Default for Catalog {
    /// The embedded default: `cn-hangzhou` (the home region) and `cn-shanghai`, each with
    /// four of its real zones.
    fn default() -> Self {
        // Zone names follow the console's pattern: `华东 1 可用区 H`, `Hangzhou Zone H`.
        let zones = |region: &str, local: &str, english: &str, letters: &[char]| -> Vec<Zone> {
            letters
                .iter()
                .map(|l| Zone {
                    id: format!("{region}-{}", l.to_ascii_lowercase()),
                    local_name: format!("{local} 可用区 {l}"),
                    english_name: format!("{english} Zone {l}"),
                })
                .collect()
        };
        Catalog {
            regions: vec![
                Region {
                    id: "cn-hangzhou".into(),
                    local_name: "华东1（杭州）".into(),
                    english_name: "China (Hangzhou)".into(),
                    id_code: "bp".into(),
                    zones: zones("cn-hangzhou", "华东 1", "Hangzhou", &['H', 'I', 'J', 'K']),
                },
                Region {
                    id: "cn-shanghai".into(),
                    local_name: "华东2（上海）".into(),
                    english_name: "China (Shanghai)".into(),
                    // Shanghai's real resource ids read `i-uf6…`, `vpc-uf6…`.
                    id_code: "uf".into(),
                    zones: zones("cn-shanghai", "华东 2", "Shanghai", &['E', 'F', 'G', 'L']),
                },
            ],
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
        let mut codes = std::collections::HashSet::new();
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
            if !codes.insert(r.id_code.as_str()) {
                return Err(CatalogError::DuplicateIdCode(r.id_code.clone()));
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

    /// The region a zone belongs to (zone ids are unique across regions).
    pub fn zone_region(&self, zone_id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.zone(zone_id).is_some())
    }

    /// The home region, the catalog's first: the one region whose OSS endpoint this
    /// deployment serves (its object store is shared by all regions), and the region a
    /// request that names none is taken to mean.
    pub fn default_region(&self) -> &Region {
        &self.regions[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_with_hangzhou_home_and_shanghai() {
        let c = Catalog::default();
        c.validate().unwrap();
        let ids: Vec<&str> = c.regions.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["cn-hangzhou", "cn-shanghai"]);
        assert_eq!(c.default_region().id, "cn-hangzhou");

        let r = c.region("cn-hangzhou").unwrap();
        assert_eq!(r.zones.len(), 4);
        assert_eq!(r.id_code, "bp");
        assert!(r.zone("cn-hangzhou-h").is_some());
        assert!(r.zone("cn-beijing-a").is_none());
        assert_eq!(r.endpoint("ecs"), "ecs.cn-hangzhou.aliyuncs.com");
        assert_eq!(r.zones[0].name(Language::Chinese), "华东 1 可用区 H");

        let s = c.region("cn-shanghai").unwrap();
        assert_eq!(s.id_code, "uf");
        assert_eq!(s.name(Language::Chinese), "华东2（上海）");
        assert_eq!(s.name(Language::English), "China (Shanghai)");
        let zones: Vec<&str> = s.zones.iter().map(|z| z.id.as_str()).collect();
        assert_eq!(zones, ["cn-shanghai-e", "cn-shanghai-f", "cn-shanghai-g", "cn-shanghai-l"]);
        assert_eq!(s.zones[3].name(Language::Chinese), "华东 2 可用区 L");
        assert_eq!(s.zones[3].name(Language::English), "Shanghai Zone L");
        assert_eq!(s.endpoint("vpc"), "vpc.cn-shanghai.aliyuncs.com");
        // A zone belongs to its own region only.
        assert!(s.zone("cn-hangzhou-h").is_none());
        assert!(r.zone("cn-shanghai-e").is_none());
        assert_eq!(c.zone_region("cn-shanghai-g").map(|r| r.id.as_str()), Some("cn-shanghai"));
        assert_eq!(c.zone_region("cn-hangzhou-k").map(|r| r.id.as_str()), Some("cn-hangzhou"));
        assert!(c.zone_region("cn-shanghai").is_none());
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

        let mut c = Catalog::default();
        c.regions[1].id_code = "bp".into();
        assert_eq!(c.validate(), Err(CatalogError::DuplicateIdCode("bp".into())));

        // Zone ids are unique across regions too, not only within one.
        let mut c = Catalog::default();
        c.regions[1].id = "cn-hangzhou-h".into();
        c.regions[1].zones = vec![Zone { id: "cn-hangzhou-h-x".into(), ..c.regions[1].zones[0].clone() }];
        c.validate().unwrap();
        let twin = Zone { id: "cn-hangzhou-h-x".into(), ..c.regions[0].zones[0].clone() };
        c.regions[0].zones.push(twin);
        assert!(matches!(c.validate(), Err(CatalogError::DuplicateZone(_))));
    }
}
