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
