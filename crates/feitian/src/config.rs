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
    /// The storage kernel under OSS.
    #[serde(default)]
    pub pangu: PanguConfig,
    /// How instances run.
    #[serde(default)]
    pub compute: ComputeConfig,
}

/// `[compute]`: how instances run.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// `auto` (real VMs when this host can run them: root, QEMU, nftables, iproute2; the
    /// model otherwise), `qemu` (real VMs or refuse to start) or `sim` (the model). The
    /// environment variable `FEITIAN_COMPUTE_DRIVER` overrides it.
    pub driver: String,
    /// Where the built-in guest image is built and kept (default DATA_DIR/images). Several
    /// data directories may share one.
    pub images_dir: Option<std::path::PathBuf>,
    /// `auto` (KVM when a probe boot proves it works, TCG otherwise), `kvm` or `tcg`.
    pub accel: String,
    /// Seconds an ACPI shutdown may take before the guest is powered off.
    pub stop_grace_secs: u64,
    /// Seconds a boot may take to reach SSH before the instance is reported Running anyway.
    pub boot_timeout_secs: u64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            driver: "auto".to_owned(),
            images_dir: None,
            accel: "auto".to_owned(),
            stop_grace_secs: 30,
            boot_timeout_secs: 300,
        }
    }
}

impl ComputeConfig {
    /// The driver asked for, after the environment's override.
    pub fn driver(&self) -> anyhow::Result<String> {
        let d = std::env::var("FEITIAN_COMPUTE_DRIVER").ok().filter(|v| !v.is_empty()).unwrap_or(self.driver.clone());
        match d.as_str() {
            "auto" | "qemu" | "sim" => Ok(d),
            other => anyhow::bail!("compute.driver must be auto, qemu or sim, not {other:?}"),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.driver()?;
        if !matches!(self.accel.as_str(), "auto" | "kvm" | "tcg") {
            anyhow::bail!("compute.accel must be auto, kvm or tcg, not {:?}", self.accel);
        }
        if self.stop_grace_secs == 0 || self.boot_timeout_secs == 0 {
            anyhow::bail!("compute.stop_grace_secs and boot_timeout_secs must be above 0");
        }
        Ok(())
    }
}

/// `[pangu]`: the storage kernel. The defaults are the embedded single node: the master
/// and one chunkserver in the `feitian up` process, replication 1.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PanguConfig {
    /// Replicas per chunk: 1 on a single node, 3 for a cluster (then run at least three
    /// `feitian chunkserver`s, in different racks).
    pub replication: usize,
    /// Whether `feitian up` runs a chunkserver itself (its replicas under DATA_DIR/pangu).
    pub embedded_chunkserver: bool,
    /// The embedded chunkserver's failure domain.
    pub rack: String,
    /// The bytes the embedded chunkserver may store, in GiB.
    pub capacity_gib: u64,
    /// Re-replication ceiling per chunkserver, in MiB/s (the embedded one's; others take
    /// `--repair-rate-mib`).
    pub repair_rate_mib: u64,
    /// Seconds of silence after which a chunkserver counts as dead.
    pub heartbeat_timeout_secs: u64,
}

impl Default for PanguConfig {
    fn default() -> Self {
        PanguConfig {
            replication: 1,
            embedded_chunkserver: true,
            rack: "local".to_owned(),
            capacity_gib: 1024,
            repair_rate_mib: 64,
            heartbeat_timeout_secs: 5,
        }
    }
}

impl PanguConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=5).contains(&self.replication) {
            anyhow::bail!("pangu.replication must be 1 to 5, not {}", self.replication);
        }
        if self.repair_rate_mib == 0 || self.capacity_gib == 0 || self.heartbeat_timeout_secs == 0 {
            anyhow::bail!("pangu.repair_rate_mib, capacity_gib and heartbeat_timeout_secs must be above 0");
        }
        if self.replication > 1 && self.embedded_chunkserver {
            tracing::warn!(
                replication = self.replication,
                "replication above 1 with only the embedded chunkserver: writes wait for `feitian chunkserver`s to join"
            );
        }
        Ok(())
    }
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
