//! Admission: whether the host can take an instance that is to run.
//!
//! The host measures what it has ([`HostCapacity`], through the host contract); the store
//! says what its guests were promised ([`Commitment`]). An instance is admitted when, with it,
//!
//! | resource | the promised total stays within |
//! |---|---|
//! | vCPUs | the host's CPUs × `vcpu_overcommit` |
//! | memory | (the host's memory (`MemTotal`) − `memory_reserve_mib`) × `memory_overcommit` |
//! | memory of guests not booted yet | (the memory free now (`MemAvailable`) − `memory_reserve_mib`) × `memory_overcommit` |
//!
//! By default memory is not overcommitted (`memory_overcommit` 1): a guest may touch all it
//! was given. A deployment whose guests idle (a developer's test cloud) may promise more than
//! the host has and take the risk of the kernel's OOM killer. The third line is for
//! a host whose memory something else took (other programs, the page cache pinned): what
//! runs already is in `MemAvailable`'s "used", so only the guests still to boot are added.
//! Otherwise the answer is `OperationDenied.NoStock` (403), as the real service answers when
//! a zone has no room for an instance type, and nothing is created.
//!
//! The check runs in the create's (or start's) store transaction, so two concurrent
//! creates cannot both take the last room: the second sees the first's commitment.

use feitian_agent_api::HostCapacity;
use feitian_api::ApiError;
use feitian_meta::instance::Commitment;

/// How much of a host may be promised (`[compute]` of the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// vCPUs promised per host CPU.
    pub vcpu_overcommit: f64,
    /// Memory kept for the host itself (and QEMU's own overhead).
    pub memory_reserve_mib: u64,
    /// Guest memory promised per MiB the host can give (1: none promised that it has not).
    pub memory_overcommit: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { vcpu_overcommit: 16.0, memory_reserve_mib: 1024, memory_overcommit: 1.0 }
    }
}

/// What one create (or start) asks of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
}

/// Why the host cannot take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    Vcpus { wanted: u64, promised: u64, budget: u64 },
    Memory { wanted: u64, promised: u64, budget: u64 },
    MemoryNow { wanted: u64, booting: u64, available: u64 },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Vcpus { wanted, promised, budget } => {
                write!(f, "the host has {budget} vCPUs to give ({promised} promised); {wanted} more do not fit")
            }
            Shortfall::Memory { wanted, promised, budget } => write!(
                f,
                "the host has {budget} MiB of memory to give ({promised} MiB promised); {wanted} MiB more do not fit"
            ),
            Shortfall::MemoryNow { wanted, booting, available } => write!(
                f,
                "the host has {available} MiB of memory free now ({booting} MiB of it wanted by guests still booting); \
                 {wanted} MiB more do not fit"
            ),
        }
    }
}

/// Whether the host admits `demand` beside `promised`.
pub fn admit(host: &HostCapacity, promised: &Commitment, demand: Demand, policy: &Policy) -> Result<(), Shortfall> {
    let vcpu_budget = (f64::from(host.vcpus) * policy.vcpu_overcommit).floor().max(0.0) as u64;
    if promised.vcpus.saturating_add(demand.vcpus) > vcpu_budget {
        return Err(Shortfall::Vcpus { wanted: demand.vcpus, promised: promised.vcpus, budget: vcpu_budget });
    }
    let scaled = |mib: u64| (mib as f64 * policy.memory_overcommit).floor().max(0.0) as u64;
    let memory_budget = scaled(host.memory_mib.saturating_sub(policy.memory_reserve_mib));
    if promised.memory_mib.saturating_add(demand.memory_mib) > memory_budget {
        return Err(Shortfall::Memory {
            wanted: demand.memory_mib,
            promised: promised.memory_mib,
            budget: memory_budget,
        });
    }
    let available = scaled(host.memory_available_mib.saturating_sub(policy.memory_reserve_mib));
    if promised.memory_not_started_mib.saturating_add(demand.memory_mib) > available {
        return Err(Shortfall::MemoryNow {
            wanted: demand.memory_mib,
            booting: promised.memory_not_started_mib,
            available,
        });
    }
    Ok(())
}

/// The refusal, as the real service words it.
pub fn no_stock(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        403,
        "OperationDenied.NoStock",
        "The requested resource is sold out in the specified zone; try other types of resources or other regions and zones.",
    )
    .recommend(format!("{why}; choose a smaller instance type, or stop or delete instances"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostCapacity = HostCapacity { vcpus: 4, memory_mib: 16384, memory_available_mib: 12288 };
    const POLICY: Policy = Policy { vcpu_overcommit: 2.0, memory_reserve_mib: 1024, memory_overcommit: 1.0 };

    fn promised(vcpus: u64, memory_mib: u64, not_started: u64) -> Commitment {
        Commitment { vcpus, memory_mib, memory_not_started_mib: not_started }
    }

    #[test]
    fn fits_up_to_each_budget_and_not_beyond() {
        let none = promised(0, 0, 0);
        assert_eq!(admit(&HOST, &none, Demand { vcpus: 8, memory_mib: 11264 }, &POLICY), Ok(()));
        assert!(matches!(
            admit(&HOST, &none, Demand { vcpus: 9, memory_mib: 1024 }, &POLICY),
            Err(Shortfall::Vcpus { budget: 8, .. })
        ));
        // 15 GiB to give in all, but 11 GiB free now.
        assert!(matches!(
            admit(&HOST, &none, Demand { vcpus: 1, memory_mib: 11265 }, &POLICY),
            Err(Shortfall::MemoryNow { available: 11264, .. })
        ));
        // Running guests are in MemAvailable already: only the promise total counts for them.
        let running = promised(2, 4096, 0);
        assert_eq!(admit(&HOST, &running, Demand { vcpus: 2, memory_mib: 11264 }, &POLICY), Ok(()));
        assert!(matches!(
            admit(&HOST, &running, Demand { vcpus: 2, memory_mib: 11265 }, &POLICY),
            Err(Shortfall::Memory { budget: 15360, promised: 4096, .. })
        ));
        // Guests still booting have not taken their memory yet: they count against what is free.
        let booting = promised(2, 4096, 4096);
        assert!(matches!(
            admit(&HOST, &booting, Demand { vcpus: 1, memory_mib: 8192 }, &POLICY),
            Err(Shortfall::MemoryNow { booting: 4096, .. })
        ));
        assert_eq!(admit(&HOST, &booting, Demand { vcpus: 1, memory_mib: 7168 }, &POLICY), Ok(()));
    }

    #[test]
    fn promises_beyond_the_host_refuse_everything_and_never_overflow() {
        let over = promised(u64::MAX, u64::MAX, u64::MAX);
        assert!(admit(&HOST, &over, Demand { vcpus: 1, memory_mib: 1 }, &POLICY).is_err());
        let tiny = HostCapacity { vcpus: 1, memory_mib: 512, memory_available_mib: 512 };
        assert!(matches!(
            admit(&tiny, &promised(0, 0, 0), Demand { vcpus: 1, memory_mib: 1 }, &POLICY),
            Err(Shortfall::Memory { budget: 0, .. })
        ));
        let fractional = Policy { vcpu_overcommit: 1.5, ..POLICY };
        let three = HostCapacity { vcpus: 3, ..HOST };
        assert_eq!(admit(&three, &promised(0, 0, 0), Demand { vcpus: 4, memory_mib: 0 }, &fractional), Ok(()));
        assert!(matches!(
            admit(&three, &promised(0, 0, 0), Demand { vcpus: 5, memory_mib: 0 }, &fractional),
            Err(Shortfall::Vcpus { budget: 4, .. })
        ));
    }

    #[test]
    fn memory_overcommit_scales_both_memory_budgets() {
        let double = Policy { memory_overcommit: 2.0, ..POLICY };
        let none = promised(0, 0, 0);
        // Free now: (12288 - 1024) × 2 = 22528; in all: (16384 - 1024) × 2 = 30720.
        assert_eq!(admit(&HOST, &none, Demand { vcpus: 1, memory_mib: 22528 }, &double), Ok(()));
        assert!(matches!(
            admit(&HOST, &none, Demand { vcpus: 1, memory_mib: 22529 }, &double),
            Err(Shortfall::MemoryNow { available: 22528, .. })
        ));
        assert!(matches!(
            admit(&HOST, &promised(0, 30000, 0), Demand { vcpus: 1, memory_mib: 721 }, &double),
            Err(Shortfall::Memory { budget: 30720, .. })
        ));
    }
}
