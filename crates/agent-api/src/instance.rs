//! Instances: the lifecycle vocabulary both sides speak, what the control plane wants of an
//! instance, and what a host needs to run one.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// What an instance is, as `DescribeInstances` shows it. The control plane sets the
/// transitional status a client sees at once (`StopInstance` → `Stopping`); the host's agent
/// moves it on as the guest really starts and stops, by compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InstanceStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
}

impl InstanceStatus {
    pub const ALL: [InstanceStatus; 5] = [
        InstanceStatus::Pending,
        InstanceStatus::Starting,
        InstanceStatus::Running,
        InstanceStatus::Stopping,
        InstanceStatus::Stopped,
    ];

    /// The API's (and the store's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Pending => "Pending",
            InstanceStatus::Starting => "Starting",
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopping => "Stopping",
            InstanceStatus::Stopped => "Stopped",
        }
    }

    /// From the API's spelling (exact, as the API compares it).
    pub fn parse(s: &str) -> Option<InstanceStatus> {
        InstanceStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the control plane wants an instance to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Desired {
    Running,
    Stopped,
}

impl Desired {
    pub const ALL: [Desired; 2] = [Desired::Running, Desired::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "Running",
            Desired::Stopped => "Stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Desired> {
        Desired::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The status an instance has once it got there.
    pub fn status(self) -> InstanceStatus {
        match self {
            Desired::Running => InstanceStatus::Running,
            Desired::Stopped => InstanceStatus::Stopped,
        }
    }
}

impl std::fmt::Display for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the control plane wants of one instance, and where it stands: the agent's work list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTarget {
    pub id: String,
    /// What clients see now.
    pub status: InstanceStatus,
    pub desired: Desired,
    /// Reboots asked for and not yet done.
    pub reboots: u32,
    /// The pending stop (or reboot) is forced: power off without waiting for the guest.
    pub force_stop: bool,
}

/// Everything a host needs to run one instance. The agent is given the whole plan on every
/// start, so a host keeps nothing a restart could lose that the control plane does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub id: String,
    pub host_name: String,
    pub cpu: u32,
    pub memory_mib: u32,
    pub image_id: String,
    /// The system disk's size; the guest's root file system is grown to fill it.
    pub system_disk_gib: u64,
    /// The disks attached to it: the system disk first, then data disks by device.
    pub disks: Vec<crate::DiskPlan>,
    pub vpc_id: String,
    /// The primary network interface.
    pub nic: NicPlan,
    /// As the API took it (base64).
    pub user_data: String,
    /// OpenSSH public keys (the key pair's).
    pub public_keys: Vec<String>,
}

/// An instance's network interface as its guest configures it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicPlan {
    /// The interface's id (`eni-…`); the host names its tap after it.
    pub id: String,
    /// `00:16:3e:xx:xx:xx`.
    pub mac: String,
    pub ip: Ipv4Addr,
    /// The vSwitch's gateway.
    pub gateway: Ipv4Addr,
    /// The vSwitch's prefix length.
    pub prefix_len: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_text() {
        for s in InstanceStatus::ALL {
            assert_eq!(InstanceStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            // The wire form is the API's spelling too.
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for d in Desired::ALL {
            assert_eq!(Desired::parse(d.as_str()), Some(d));
            assert_eq!(d.status().as_str(), d.as_str());
        }
        assert_eq!(InstanceStatus::parse("running"), None);
        assert_eq!(InstanceStatus::parse("Deleted"), None);
        assert_eq!(Desired::parse("Starting"), None);
    }
}
