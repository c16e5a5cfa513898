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
    /// The regions this deployment serves, home first; the embedded default (cn-hangzhou,
    /// then cn-shanghai: `feitian_region::Catalog::default`) when empty. A list replaces the
    /// default entirely.
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
    /// What the edge port lets a client hold.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// Cloud disks.
    #[serde(default)]
    pub disks: DisksConfig,
    /// Per-account quotas' defaults (`instances = 50`, …; see `feitian_meta::quota` for the
    /// keys). `feitian account quota NAME key=value` overrides them for one account.
    #[serde(default)]
    pub quotas: std::collections::BTreeMap<String, u64>,
}

/// `[disks]`: cloud disks (`docs/disks.md`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct DisksConfig {
    /// Each disk's server holds it to the IOPS and throughput Alibaba publishes for its
    /// category, performance level and size (`crates/disk/src/qos.rs`); `false` serves every
    /// disk as fast as the host can.
    pub enforce_limits: bool,
}

impl Default for DisksConfig {
    fn default() -> DisksConfig {
        DisksConfig { enforce_limits: true }
    }
}

/// `[edge]`: the bounds of the edge port (RPC and OSS), so that clients that never
/// authenticate cannot exhaust it (see `feitian_api::serve`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Seconds a request head may take to arrive, from the connection's start or the end of
    /// the previous answer.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection with no request in flight may stay open with nothing arriving.
    pub keep_alive_idle_timeout_secs: u64,
    /// Seconds a request body may send nothing (answered 408), or an answer stay unread,
    /// before the connection closes.
    pub body_idle_timeout_secs: u64,
    /// Open connections in all (lowered to what the open-files limit allows).
    pub max_connections: usize,
    /// Open connections per client address (an IPv4 address, an IPv6 /64); a quarter of
    /// `max_connections` unless set.
    pub max_connections_per_client: Option<usize>,
    /// MiB of RPC request bodies held before their requests are authenticated, in all.
    pub pre_auth_body_budget_mib: usize,
    /// The same, per client address; a quarter of the budget unless set.
    pub pre_auth_body_per_client_mib: Option<usize>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        let d = feitian_api::serve::Limits::default();
        EdgeConfig {
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            keep_alive_idle_timeout_secs: d.keep_alive_idle_timeout.as_secs(),
            body_idle_timeout_secs: d.body_idle_timeout.as_secs(),
            max_connections: d.max_connections,
            max_connections_per_client: None,
            pre_auth_body_budget_mib: d.pre_auth_body_budget >> 20,
            pre_auth_body_per_client_mib: None,
        }
    }
}

impl EdgeConfig {
    fn per_client_connections(&self) -> usize {
        self.max_connections_per_client.unwrap_or((self.max_connections / 4).max(1))
    }

    fn per_client_budget_mib(&self) -> usize {
        self.pre_auth_body_per_client_mib.unwrap_or((self.pre_auth_body_budget_mib / 4).max(1))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.header_read_timeout_secs == 0
            || self.keep_alive_idle_timeout_secs == 0
            || self.body_idle_timeout_secs == 0
        {
            anyhow::bail!("edge timeouts must be above 0 seconds");
        }
        if self.keep_alive_idle_timeout_secs > self.header_read_timeout_secs {
            anyhow::bail!(
                "edge.keep_alive_idle_timeout_secs ({}) must not exceed edge.header_read_timeout_secs ({}): the wait for \
                 the next request head is also bounded by the header timeout",
                self.keep_alive_idle_timeout_secs,
                self.header_read_timeout_secs
            );
        }
        if self.max_connections == 0 || self.per_client_connections() == 0 {
            anyhow::bail!("edge.max_connections and max_connections_per_client must be above 0");
        }
        if self.per_client_connections() > self.max_connections {
            anyhow::bail!("edge.max_connections_per_client must not exceed edge.max_connections");
        }
        // One RPC body may be up to 1 MiB; a share smaller than that could never be used.
        if self.pre_auth_body_budget_mib == 0
            || self.per_client_budget_mib() == 0
            || self.per_client_budget_mib() > self.pre_auth_body_budget_mib
        {
            anyhow::bail!(
                "edge.pre_auth_body_per_client_mib must be 1 or more, and at most edge.pre_auth_body_budget_mib"
            );
        }
        if self.pre_auth_body_budget_mib > 1 << 20 {
            anyhow::bail!("edge.pre_auth_body_budget_mib is too large");
        }
        Ok(())
    }

    /// The limits the edge enforces.
    pub fn limits(&self) -> feitian_api::serve::Limits {
        use std::time::Duration;
        feitian_api::serve::Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            keep_alive_idle_timeout: Duration::from_secs(self.keep_alive_idle_timeout_secs),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_client: self.per_client_connections(),
            pre_auth_body_budget: self.pre_auth_body_budget_mib << 20,
            pre_auth_body_per_client: self.per_client_budget_mib() << 20,
        }
    }
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
    /// vCPUs promised to guests per host CPU (admission: an instance that would take more is
    /// refused with `OperationDenied.NoStock`).
    pub vcpu_overcommit: f64,
    /// MiB of the host's memory never promised to guests (the host itself, QEMU's overhead).
    pub memory_reserve_mib: u64,
    /// Guest memory promised per MiB the host can give: 1 (the default) promises none it does
    /// not have; more suits guests that idle (a test cloud), at the OOM killer's risk.
    pub memory_overcommit: f64,
    /// The host the `sim` driver models: its CPUs and memory (the `qemu` driver measures the
    /// real host instead).
    pub sim_vcpus: u32,
    pub sim_memory_mib: u64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            driver: "auto".to_owned(),
            images_dir: None,
            accel: "auto".to_owned(),
            stop_grace_secs: 30,
            boot_timeout_secs: 300,
            vcpu_overcommit: feitian_ecs::admission::Policy::default().vcpu_overcommit,
            memory_reserve_mib: feitian_ecs::admission::Policy::default().memory_reserve_mib,
            memory_overcommit: feitian_ecs::admission::Policy::default().memory_overcommit,
            sim_vcpus: feitian_compute::sim::DEFAULT_VCPUS,
            sim_memory_mib: feitian_compute::sim::DEFAULT_MEMORY_MIB,
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
        if !(self.vcpu_overcommit.is_finite() && self.vcpu_overcommit > 0.0 && self.vcpu_overcommit <= 64.0) {
            anyhow::bail!("compute.vcpu_overcommit must be above 0 and at most 64, not {}", self.vcpu_overcommit);
        }
        if !(self.memory_overcommit.is_finite() && self.memory_overcommit > 0.0 && self.memory_overcommit <= 8.0) {
            anyhow::bail!("compute.memory_overcommit must be above 0 and at most 8, not {}", self.memory_overcommit);
        }
        if self.sim_vcpus == 0 || self.sim_memory_mib == 0 {
            anyhow::bail!("compute.sim_vcpus and sim_memory_mib must be above 0");
        }
        Ok(())
    }

    /// How much of the host instances may be promised.
    pub fn admission(&self) -> feitian_ecs::admission::Policy {
        feitian_ecs::admission::Policy {
            vcpu_overcommit: self.vcpu_overcommit,
            memory_reserve_mib: self.memory_reserve_mib,
            memory_overcommit: self.memory_overcommit,
        }
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

    /// The quota defaults: the built-in ones with `[quotas]` applied.
    pub fn quotas(&self) -> anyhow::Result<feitian_meta::quota::Quotas> {
        feitian_meta::quota::Quotas::with_settings(self.quotas.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| anyhow::anyhow!("the configuration's [quotas]: {e}"))
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
        let ids: Vec<&str> = c.regions.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["cn-hangzhou", "cn-shanghai"]);
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
        // The file's list replaces the default: no Hangzhou, no Shanghai.
        assert_eq!(c.regions.len(), 1);
        assert_eq!(c.region("cn-beijing").unwrap().zones[0].id, "cn-beijing-a");
        std::fs::write(&path, "[[regions]]\nid = \"x\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }

    #[test]
    fn quotas_and_admission_sections() {
        use feitian_meta::quota::Quota;
        let d = Config::load(None).unwrap();
        assert_eq!(d.quotas().unwrap(), feitian_meta::quota::Quotas::default());
        d.compute.validate().unwrap();
        assert_eq!(d.compute.admission(), feitian_ecs::admission::Policy::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feitian.toml");
        std::fs::write(
            &path,
            "[quotas]\ninstances = 5\nbuckets = 0\n[compute]\nvcpu_overcommit = 2.5\nmemory_reserve_mib = 64\nsim_vcpus = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        let q = c.quotas().unwrap();
        assert_eq!((q.get(Quota::Instances), q.get(Quota::Buckets), q.get(Quota::Vpcs)), (5, 0, 10));
        c.compute.validate().unwrap();
        let p = c.compute.admission();
        assert_eq!((p.vcpu_overcommit, p.memory_reserve_mib, c.compute.sim_vcpus), (2.5, 64, 3));
        std::fs::write(&path, "[quotas]\ninstance = 5\n").unwrap();
        assert!(Config::load(Some(&path)).unwrap().quotas().is_err(), "a misspelt quota is an error");
        std::fs::write(&path, "[quotas]\ninstances = -5\n").unwrap();
        assert!(Config::load(Some(&path)).is_err(), "a negative limit does not parse");
        for bad in ["vcpu_overcommit = 0.0", "vcpu_overcommit = nan", "sim_memory_mib = 0", "memory_overcommit = 0.0"] {
            std::fs::write(&path, format!("[compute]\n{bad}\n")).unwrap();
            assert!(Config::load(Some(&path)).unwrap().compute.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn edge_section() {
        let d = Config::load(None).unwrap().edge;
        d.validate().unwrap();
        let (limits, defaults) = (d.limits(), feitian_api::serve::Limits::default());
        assert_eq!(
            (limits.max_connections, limits.max_connections_per_client),
            (defaults.max_connections, defaults.max_connections_per_client)
        );
        assert_eq!(
            (limits.pre_auth_body_budget, limits.pre_auth_body_per_client),
            (defaults.pre_auth_body_budget, defaults.pre_auth_body_per_client)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feitian.toml");
        std::fs::write(
            &path,
            "[edge]\nheader_read_timeout_secs = 5\nkeep_alive_idle_timeout_secs = 2\nmax_connections = 100\n",
        )
        .unwrap();
        let e = Config::load(Some(&path)).unwrap().edge;
        e.validate().unwrap();
        assert_eq!((e.header_read_timeout_secs, e.keep_alive_idle_timeout_secs, e.max_connections), (5, 2, 100));
        assert_eq!(e.body_idle_timeout_secs, d.body_idle_timeout_secs);
        assert_eq!(e.limits().max_connections_per_client, 25, "a quarter of max_connections unless set");
        std::fs::write(&path, "[edge]\nmax_conections = 100\n").unwrap();
        assert!(Config::load(Some(&path)).is_err(), "a misspelt key is an error");
        for bad in [
            "keep_alive_idle_timeout_secs = 30\nheader_read_timeout_secs = 20",
            "max_connections = 10\nmax_connections_per_client = 11",
            "body_idle_timeout_secs = 0",
            "pre_auth_body_per_client_mib = 0",
        ] {
            std::fs::write(&path, format!("[edge]\n{bad}\n")).unwrap();
            assert!(Config::load(Some(&path)).unwrap().edge.validate().is_err(), "{bad}");
        }
    }
}
