//! What a host has to give guests: its CPUs and memory, as the host measures them.

use serde::{Deserialize, Serialize};

/// A host's capacity, measured by its agent at the moment of asking. The control plane
/// admits an instance against it (with what the store says the host's guests were promised);
/// the host never decides admission itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapacity {
    /// Logical CPUs the host can run guests on.
    pub vcpus: u32,
    /// The host's memory in all (`MemTotal`).
    pub memory_mib: u64,
    /// Memory free for new work right now (`MemAvailable`): what running guests already
    /// touched is not in it.
    pub memory_available_mib: u64,
}
