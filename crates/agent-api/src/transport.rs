//! The two directions of the contract, as traits, and the wake-ups.

use crate::snapshot::{PinRef, RangeBlock, SnapshotTarget};
use crate::{DiskTarget, HostCapacity, InstancePlan, InstanceTarget, Report, VpcPlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;

/// Why a call across the contract failed. The agent logs it and tries again on its next pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ContractError {
    /// The other side could not answer now (its store failed, the network is down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The other side refused the call as given.
    #[error("refused: {0}")]
    Refused(String),
}

pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ContractError>> + Send + 'a>>;

/// What a host's agent asks of the control plane: its plans, and where to report.
pub trait ControlPlane: Send + Sync + 'static {
    /// Instances whose status is not yet what is desired, or that have a reboot pending.
    fn instances_to_reconcile(&self) -> Fut<'_, Vec<InstanceTarget>>;
    /// Every instance that should be running (to adopt after a restart, and to notice
    /// guests that stopped on their own).
    fn instances_wanted_running(&self) -> Fut<'_, Vec<InstanceTarget>>;
    /// Which of `ids` the control plane still holds (the host destroys what it has of the
    /// others).
    fn existing_instances(&self, ids: Vec<String>) -> Fut<'_, BTreeSet<String>>;
    /// Everything needed to run one instance; `None` if it no longer exists.
    fn instance_plan(&self, id: String) -> Fut<'_, Option<InstancePlan>>;
    /// The VPCs this host should realize (those holding its instances).
    fn vpcs(&self) -> Fut<'_, Vec<String>>;
    /// One VPC's network on this host; `None` when the host should not hold it.
    fn vpc_plan(&self, vpc_id: String) -> Fut<'_, Option<VpcPlan>>;
    /// Disks whose volume or attachment the host must change: a transitional status, or a
    /// volume not (yet) of the disk's size.
    fn disks_to_reconcile(&self) -> Fut<'_, Vec<DiskTarget>>;
    /// Volumes of deleted disks that the host must delete.
    fn volumes_to_delete(&self) -> Fut<'_, Vec<String>>;
    /// Snapshots still `progressing` on this host's disks (docs/snapshots.md).
    fn snapshots_to_reconcile(&self) -> Fut<'_, Vec<SnapshotTarget>>;
    /// Pins whose snapshot committed, failed or was deleted: the host releases each and
    /// reports [`Report::PinReleased`](crate::Report).
    fn pins_to_release(&self) -> Fut<'_, Vec<PinRef>>;
    /// The ranges a disk made from a snapshot is filled with (the snapshot's manifest as it
    /// was when the disk was created: the disk holds references on those blocks until its
    /// volume is reported ready); empty for any other disk.
    fn restore_plan(&self, disk_id: String) -> Fut<'_, Vec<RangeBlock>>;
    /// Records a report; `true` if it changed anything (a compare-and-set that lost is
    /// `false`).
    fn report(&self, report: Report) -> Fut<'_, bool>;
}

/// What the control plane asks of a host directly.
pub trait HostApi: Send + Sync + 'static {
    /// An instance's serial console output so far; `None` if the host has none.
    fn console_output(&self, instance_id: String) -> Fut<'_, Option<String>>;
    /// The host's CPUs and memory, measured now (for admitting instances).
    fn capacity(&self) -> Fut<'_, HostCapacity>;
}

/// How the control plane tells hosts that their plans changed, so they act at once instead
/// of at their next periodic pass. In process it is a pair of `Notify`s; over a network a
/// transport would carry each nudge as a message. A nudge is a hint, never the plan itself:
/// a host that misses one still converges on its next pass.
#[derive(Clone, Default)]
pub struct Nudges {
    instances: Arc<Notify>,
    network: Arc<Notify>,
    disks: Arc<Notify>,
    snapshots: Arc<Notify>,
}

impl Nudges {
    /// Instances were created, changed state or were deleted.
    pub fn instances_changed(&self) {
        self.instances.notify_one();
    }

    /// Something a VPC's network holds changed (interfaces, security groups, EIPs).
    pub fn network_changed(&self) {
        self.network.notify_one();
    }

    /// Disks were created, changed state or were deleted.
    pub fn disks_changed(&self) {
        self.disks.notify_one();
    }
    /// Snapshots were created or deleted.
    pub fn snapshots_changed(&self) {
        self.snapshots.notify_one();
    }

    /// Instances and networks (disks have their own nudge).
    pub fn all_changed(&self) {
        self.instances_changed();
        self.network_changed();
    }

    /// Waits for the next [`Nudges::instances_changed`] (one sent while nobody waited is kept).
    pub async fn instances(&self) {
        self.instances.notified().await
    }

    /// Waits for the next [`Nudges::disks_changed`].
    pub async fn disks(&self) {
        self.disks.notified().await
    }

    /// Waits for the next [`Nudges::snapshots_changed`].
    pub async fn snapshots(&self) {
        self.snapshots.notified().await
    }
    /// Waits for the next [`Nudges::network_changed`].
    pub async fn network(&self) {
        self.network.notified().await
    }
}
