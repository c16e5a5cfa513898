//! The host contract: the one seam between the control plane and the hosts.
//!
//! The control plane decides; a host's agent does. Everything that crosses between them is
//! a type of this crate, so the agent needs nothing of the store or of the API services, and
//! the same agent runs in the control plane's process (today) or on another machine (later):
//!
//! ```text
//!  control plane (crates/planner)                       a host (crates/agent)
//!  reads the store, computes plans ── ControlPlane ──▶  asks for its plans, drives the
//!  records what hosts report       ◀── Report ───────   compute driver and host network,
//!  answers the API (crates/ecs)    ── HostApi ──────▶   reports back; serves consoles
//!                                  ── Nudges ───────▶   "your plans changed"
//! ```
//!
//! - [`disk`]: cloud disks: their statuses ([`DiskStatus`]), what a guest gets of each
//!   ([`DiskPlan`]), what the host must do to a disk's volume ([`DiskTarget`]), and the host's
//!   volume store as a trait ([`VolumeService`]).
//! - [`host`]: what a host has to give guests ([`HostCapacity`]), for admission.
//! - [`instance`]: the instance lifecycle both sides speak ([`InstanceStatus`], [`Desired`]),
//!   what the control plane wants of an instance ([`InstanceTarget`]) and everything a host
//!   needs to run it ([`InstancePlan`]).
//! - [`network`]: what one VPC's network on a host holds ([`VpcPlan`]): its gateways, the
//!   interfaces attached to it, the EIP translations, the security groups as
//!   `feitian_secgroup` types, and what the metadata service tells each instance.
//! - [`report`]: what a host tells the control plane ([`Report`]): status moves by
//!   compare-and-set, guests that stopped on their own, finished forced stops, disk moves and
//!   volumes made or deleted.
//! - [`snapshot`]: disk snapshots: what the control plane wants of each ([`SnapshotTarget`]),
//!   what the host uploads ([`SnapshotUpload`]) and the region's block objects as a trait
//!   ([`BlockStore`]); docs/snapshots.md is the contract.
//! - [`transport`]: the two directions as traits ([`ControlPlane`], [`HostApi`]) and the
//!   wake-ups ([`Nudges`]).
//!
//! # Transports
//! Today both sides run in one process: the agent holds the planner itself as its
//! `Arc<dyn ControlPlane>`, and the ECS service holds the agent as its `Arc<dyn HostApi>`.
//! Every type that crosses is plain data with serde derives, and every call is async and
//! fallible ([`ContractError`]), so a network transport is one more implementation of each
//! trait (a client on one side, a server calling the real implementation on the other),
//! with neither side changed. `tests` below hold each type to a JSON round trip.

pub mod disk;
pub mod host;
pub mod instance;
pub mod network;
pub mod report;
pub mod snapshot;
pub mod transport;

pub use disk::{image_volume_name, DiskPlan, DiskStatus, DiskTarget, VolumeService};
pub use host::HostCapacity;
pub use instance::{Desired, InstancePlan, InstanceStatus, InstanceTarget, NicPlan};
pub use network::{InstanceMetadata, NicAttachment, VpcPlan};
pub use report::Report;
pub use snapshot::{
    BlockClaim, BlockStore, PinInfo, PinRef, RangeBlock, SnapshotBase, SnapshotStatus, SnapshotTarget, SnapshotUpload,
};
pub use transport::{ContractError, ControlPlane, Fut, HostApi, Nudges};

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_secgroup::{Group, Nic, Policy, World};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let text = serde_json::to_string(v).expect("serializes");
        let back: T = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(&back, v, "{text}");
    }

    #[test]
    fn everything_that_crosses_survives_the_wire() {
        let nic = NicPlan {
            id: "eni-1".into(),
            mac: "00:16:3e:00:00:01".into(),
            ip: Ipv4Addr::new(192, 168, 1, 10),
            gateway: Ipv4Addr::new(192, 168, 1, 253),
            prefix_len: 24,
        };
        let disk_plan = DiskPlan {
            volume: "d-1".into(),
            size_gib: 40,
            device: "/dev/xvda".into(),
            serial: "d-1".into(),
            read_only: false,
            category: "cloud_essd".into(),
            performance_level: "PL1".into(),
        };
        round_trip(&DiskTarget {
            id: "d-1".into(),
            status: DiskStatus::Attaching,
            instance_id: Some("i-1".into()),
            size_gib: 40,
            volume_gib: 20,
            parent: Some(image_volume_name("m-1")),
            plan: disk_plan.clone(),
            restore_from: Some("s-1".into()),
        });
        round_trip(&InstancePlan {
            id: "i-1".into(),
            host_name: "web".into(),
            cpu: 2,
            memory_mib: 4096,
            image_id: "m-1".into(),
            system_disk_gib: 40,
            disks: vec![disk_plan.clone()],
            vpc_id: "vpc-1".into(),
            nic,
            user_data: "IyEvYmluL3No".into(),
            public_keys: vec!["ssh-ed25519 AAAA".into()],
        });
        round_trip(&InstanceTarget {
            id: "i-1".into(),
            status: InstanceStatus::Stopping,
            desired: Desired::Running,
            reboots: 1,
            force_stop: true,
        });
        let mut security = World::new();
        security.add_group(Group { id: "sg-1".into(), owner: "1".into(), inner_policy: Policy::Accept, rules: vec![] });
        let ip = Ipv4Addr::new(192, 168, 1, 10);
        security.add_nic(Nic { id: "eni-1".into(), owner: "1".into(), ip, groups: vec!["sg-1".into()] });
        round_trip(&VpcPlan {
            vpc_id: "vpc-1".into(),
            gateways: vec!["192.168.1.253/24".parse().expect("net")],
            nics: vec![NicAttachment { nic_id: "eni-1".into(), ip, mac: "00:16:3e:00:00:01".into() }],
            nat: BTreeMap::from([(Ipv4Addr::new(198, 18, 0, 5), ip)]),
            security,
            metadata: BTreeMap::from([(
                ip,
                InstanceMetadata { instance_id: "i-1".into(), user_data: Some(vec![0, 1, 255]), ..Default::default() },
            )]),
        });
        for r in [
            Report::Moved {
                id: "i-1".into(),
                from: InstanceStatus::Pending,
                to: InstanceStatus::Starting,
                started: false,
                reboot_done: false,
            },
            Report::StartFailed { id: "i-1".into(), error: "no image".into() },
            Report::StoppedOnItsOwn { id: "i-1".into(), crashed: true },
            Report::ForcedStopDone { id: "i-1".into() },
            Report::DiskMoved { id: "d-1".into(), from: DiskStatus::Detaching, to: DiskStatus::Available },
            Report::VolumeReady { id: "d-1".into(), gib: 40 },
            Report::VolumeDeleted { id: "d-1".into() },
            Report::SnapshotPinned { id: "s-1".into(), pin: PinInfo { next_seq: 7, size_bytes: 1 << 30 } },
            Report::SnapshotProgress { id: "s-1".into(), percent: 42 },
            Report::SnapshotClaimed {
                id: "s-1".into(),
                blocks: vec![BlockClaim { hash: "cd".repeat(32), bytes: 4096 }],
            },
            Report::SnapshotUploaded(SnapshotUpload {
                id: "s-2".into(),
                base: Some("s-1".into()),
                ranges: vec![
                    RangeBlock { range: 3, block: Some("ab".repeat(32)) },
                    RangeBlock { range: 9, block: None },
                ],
                read_bytes: 2 << 20,
                stored_bytes: 1 << 20,
            }),
            Report::SnapshotFailed { id: "s-1".into(), error: "volume gone".into() },
            Report::PinReleased { snapshot_id: "s-1".into() },
        ] {
            round_trip(&r);
        }
        round_trip(&SnapshotTarget {
            id: "s-2".into(),
            volume: "d-1".into(),
            pinned: Some(PinInfo { next_seq: 9, size_bytes: 1 << 30 }),
            base: Some(SnapshotBase { snapshot_id: "s-1".into(), next_seq: 7 }),
        });
        round_trip(&PinRef { volume: "d-1".into(), snapshot_id: "s-1".into() });
        for &s in SnapshotStatus::ALL {
            assert_eq!(SnapshotStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        round_trip(&ContractError::Unavailable("store".into()));
        round_trip(&HostCapacity { vcpus: 8, memory_mib: 32768, memory_available_mib: 20000 });
    }
}
