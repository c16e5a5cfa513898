//! The instance type catalog: real type names with their vCPUs and memory.

use serde::Serialize;

/// One instance type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub id: &'static str,
    pub family: &'static str,
    pub generation: &'static str,
    pub cpu_cores: u32,
    pub memory_gib: f32,
}

const fn t(
    id: &'static str,
    family: &'static str,
    generation: &'static str,
    cpu_cores: u32,
    memory_gib: f32,
) -> InstanceType {
    InstanceType { id, family, generation, cpu_cores, memory_gib }
}

/// Every type feitian offers, smallest first within each family.
pub const CATALOG: &[InstanceType] = &[
    t("ecs.t5-lc1m1.small", "ecs.t5", "ecs-3", 1, 1.0),
    t("ecs.t5-lc1m2.small", "ecs.t5", "ecs-3", 1, 2.0),
    t("ecs.t6-c1m1.large", "ecs.t6", "ecs-4", 2, 2.0),
    t("ecs.t6-c1m2.large", "ecs.t6", "ecs-4", 2, 4.0),
    t("ecs.g6.large", "ecs.g6", "ecs-4", 2, 8.0),
    t("ecs.g6.xlarge", "ecs.g6", "ecs-4", 4, 16.0),
    t("ecs.c6.large", "ecs.c6", "ecs-4", 2, 4.0),
    t("ecs.c6.xlarge", "ecs.c6", "ecs-4", 4, 8.0),
    t("ecs.r6.large", "ecs.r6", "ecs-4", 2, 16.0),
    t("ecs.g7.large", "ecs.g7", "ecs-5", 2, 8.0),
    t("ecs.c7.large", "ecs.c7", "ecs-5", 2, 4.0),
];

pub fn find(id: &str) -> Option<&'static InstanceType> {
    CATALOG.iter().find(|t| t.id == id)
}

/// Distinct values of a field, in catalog order.
pub fn distinct(f: impl Fn(&InstanceType) -> &'static str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in CATALOG {
        let v = f(t);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

pub fn not_found(id: &str) -> feitian_api::ApiError {
    feitian_api::ApiError::new(
        404,
        "InvalidInstanceType.NotFound",
        format!("The specified InstanceType {id:?} does not exist."),
    )
    .recommend(format!("types here: {}", CATALOG.iter().map(|t| t.id).collect::<Vec<_>>().join(", ")))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceTypesResponse {
    pub instance_types: InstanceTypes,
    /// "" on the last page.
    pub next_token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypes {
    pub instance_type: Vec<InstanceTypeItem>,
}

/// One type, as `InstanceTypes.InstanceType[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypeItem {
    pub instance_type_id: &'static str,
    pub instance_type_family: &'static str,
    pub cpu_core_count: u32,
    /// GiB.
    pub memory_size: f64,
    pub cpu_architecture: &'static str,
    pub instance_category: &'static str,
    pub instance_family_level: &'static str,
    pub eni_quantity: u32,
    pub eni_private_ip_address_quantity: u32,
    pub eni_ipv6_address_quantity: u32,
    pub eni_total_quantity: u32,
    #[serde(rename = "GPUAmount")]
    pub gpu_amount: u32,
    #[serde(rename = "GPUSpec")]
    pub gpu_spec: &'static str,
    #[serde(rename = "GPUMemorySize")]
    pub gpu_memory_size: f64,
    pub local_storage_category: &'static str,
    pub disk_quantity: u32,
    pub instance_bandwidth_rx: u32,
    pub instance_bandwidth_tx: u32,
    pub instance_pps_rx: u32,
    pub instance_pps_tx: u32,
    pub nvme_support: &'static str,
}

impl From<&InstanceType> for InstanceTypeItem {
    fn from(t: &InstanceType) -> Self {
        let shared = t.family.starts_with("ecs.t");
        InstanceTypeItem {
            instance_type_id: t.id,
            instance_type_family: t.family,
            cpu_core_count: t.cpu_cores,
            memory_size: f64::from(t.memory_gib),
            cpu_architecture: "X86",
            instance_category: if shared { "Shared" } else { "General-purpose" },
            instance_family_level: if shared { "CreditEntryLevel" } else { "EnterpriseLevel" },
            eni_quantity: 2,
            eni_private_ip_address_quantity: 6,
            eni_ipv6_address_quantity: 0,
            eni_total_quantity: 2,
            gpu_amount: 0,
            gpu_spec: "",
            gpu_memory_size: 0.0,
            local_storage_category: "",
            disk_quantity: 17,
            instance_bandwidth_rx: 0,
            instance_bandwidth_tx: 0,
            instance_pps_rx: 0,
            instance_pps_tx: 0,
            nvme_support: "unsupported",
        }
    }
}

/// `DescribeInstanceTypes`: the catalog, filtered by ids (`InstanceTypes.N`), family, and
/// CPU/memory bounds, paged by `NextToken`/`MaxResults`.
pub fn describe_instance_types(
    p: &feitian_api::Params,
) -> Result<DescribeInstanceTypesResponse, feitian_api::ApiError> {
    use feitian_api::paging::TokenPage;
    let ids = p.list("InstanceTypes", 10)?;
    let family = p.opt_str("InstanceTypeFamily");
    let min_cpu = p.opt_int("MinimumCpuCoreCount", 0, 1024)?;
    let max_cpu = p.opt_int("MaximumCpuCoreCount", 0, 1024)?;
    let mem =
        |name: &str| -> Result<Option<f32>, feitian_api::ApiError> {
            match p.opt_str(name) {
                None => Ok(None),
                Some(v) => v.parse::<f32>().ok().filter(|f| f.is_finite() && *f >= 0.0).map(Some).ok_or_else(|| {
                    feitian_api::ApiError::invalid_parameter(name, format!("{v:?} is not a size in GiB"))
                }),
            }
        };
    let (min_mem, max_mem) = (mem("MinimumMemorySize")?, mem("MaximumMemorySize")?);
    let page = TokenPage::from_params(p, 10, 1600)?;
    let found: Vec<&InstanceType> = CATALOG
        .iter()
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .filter(|t| family.is_none_or(|f| f == t.family))
        .filter(|t| {
            min_cpu.is_none_or(|c| i64::from(t.cpu_cores) >= c) && max_cpu.is_none_or(|c| i64::from(t.cpu_cores) <= c)
        })
        .filter(|t| min_mem.is_none_or(|m| t.memory_gib >= m) && max_mem.is_none_or(|m| t.memory_gib <= m))
        .collect();
    let instance_type: Vec<InstanceTypeItem> = found
        .iter()
        .skip(page.offset as usize)
        .take(page.max_results as usize)
        .map(|t| InstanceTypeItem::from(*t))
        .collect();
    let next_token = page.next_token(instance_type.len(), found.len() as u64).unwrap_or_default();
    Ok(DescribeInstanceTypesResponse { instance_types: InstanceTypes { instance_type }, next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for t in CATALOG {
            assert!(t.id.starts_with(t.family), "{} is not in family {}", t.id, t.family);
            assert!(t.cpu_cores > 0 && t.memory_gib > 0.0);
        }
        assert_eq!(distinct(|t| t.id).len(), CATALOG.len(), "type names are unique");
        assert_eq!(find("ecs.g6.large").unwrap().cpu_cores, 2);
        assert!(find("ecs.nope").is_none());
    }
}
