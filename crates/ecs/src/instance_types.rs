//! The instance type catalog: real type names with their vCPUs and memory.

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

/// `DescribeInstanceTypes`: the catalog, filtered by ids (`InstanceTypes.N`), family, and
/// CPU/memory bounds, paged by `NextToken`/`MaxResults`.
pub fn describe_instance_types(p: &feitian_api::Params) -> Result<serde_json::Value, feitian_api::ApiError> {
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
    let shown: Vec<serde_json::Value> = found
        .iter()
        .skip(page.offset as usize)
        .take(page.max_results as usize)
        .map(|t| {
            serde_json::json!({
                "InstanceTypeId": t.id,
                "InstanceTypeFamily": t.family,
                "CpuCoreCount": t.cpu_cores,
                "MemorySize": t.memory_gib,
                "CpuArchitecture": "X86",
                "InstanceCategory": if t.family.starts_with("ecs.t") { "Shared" } else { "General-purpose" },
                "InstanceFamilyLevel": if t.family.starts_with("ecs.t") { "CreditEntryLevel" } else { "EnterpriseLevel" },
                "EniQuantity": 2,
                "EniPrivateIpAddressQuantity": 6,
                "EniIpv6AddressQuantity": 0,
                "EniTotalQuantity": 2,
                "GPUAmount": 0,
                "GPUSpec": "",
                "GPUMemorySize": 0.0,
                "LocalStorageCategory": "",
                "DiskQuantity": 17,
                "InstanceBandwidthRx": 0,
                "InstanceBandwidthTx": 0,
                "InstancePpsRx": 0,
                "InstancePpsTx": 0,
                "NvmeSupport": "unsupported",
            })
        })
        .collect();
    let next = page.next_token(shown.len(), found.len() as u64).unwrap_or_default();
    Ok(serde_json::json!({"InstanceTypes": {"InstanceType": shown}, "NextToken": next}))
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
