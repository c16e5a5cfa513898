//! `feitian up`'s configuration file (TOML). Everything has a default; the file only says
//! what differs.
//!
//! ```toml
//! [[regions]]
//! id = "cn-hangzhou"
//! local_name = "华东1（杭州）"
//! english_name = "China (Hangzhou)"
//! id_code = "bp"
//! zones = [ { id = "cn-hangzhou-h", local_name = "华东 1 可用区 H", english_name = "Hangzhou Zone H" } ]
//! ```

use anyhow::Context;
use feitian_region::{Catalog, Region};
use serde::Deserialize;
use std::path::Path;

pub const DEFAULT_EIP_POOL: &str = "198.18.0.0/16";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The regions this deployment serves; the default catalog (cn-hangzhou) when empty.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Where EIPs and public IPs come from (default 198.18.0.0/16, a range reserved for
    /// benchmarking and never routed on the internet). The pool exists only inside feitian's
    /// own network namespaces.
    pub eip_pool: Option<String>,
}

impl Config {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("the configuration file {} is not valid", path.display()))
    }

    pub fn eip_pool(&self) -> anyhow::Result<ipnet::Ipv4Net> {
        let raw = self.eip_pool.as_deref().unwrap_or(DEFAULT_EIP_POOL);
        let net: ipnet::Ipv4Net = raw.parse().with_context(|| format!("eip_pool {raw:?} is not a CIDR block"))?;
        if net.prefix_len() > 30 {
            anyhow::bail!("eip_pool {raw} is too small: use a /30 or larger block");
        }
        Ok(net.trunc())
    }

    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        let catalog =
            if self.regions.is_empty() { Catalog::default() } else { Catalog { regions: self.regions.clone() } };
        catalog.validate().context("the region catalog of the configuration is not valid")?;
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_custom_regions() {
        let c = Config::load(None).unwrap().catalog().unwrap();
        assert_eq!(c.default_region().id, "cn-hangzhou");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feitian.toml");
        std::fs::write(
            &path,
            r#"
[[regions]]
id = "cn-beijing"
local_name = "华北2（北京）"
english_name = "China (Beijing)"
id_code = "2z"
zones = [ { id = "cn-beijing-a", local_name = "北京 可用区 A", english_name = "Beijing Zone A" } ]
"#,
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap().catalog().unwrap();
        assert_eq!(c.regions.len(), 1);
        assert_eq!(c.region("cn-beijing").unwrap().zones[0].id, "cn-beijing-a");
        std::fs::write(&path, "[[regions]]\nid = \"x\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }
}
