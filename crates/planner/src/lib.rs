//! The control plane's side of the host contract ([`feitian_agent_api`]).
//!
//! The API services record decisions in the store; this crate turns the store into what a
//! host must do, and what hosts report back into the store:
//!
//! - [`instance`]: each instance's [`InstanceTarget`] (where it stands, what is desired) and
//!   [`InstancePlan`] (everything needed to run it), and how a host's [`Report`] is recorded
//!   (compare-and-set status moves, guests that stopped on their own, with their events).
//! - [`disk`]: each disk's [`DiskTarget`] (its volume and attachment), the disks in an
//!   instance's plan, and how disk reports are recorded.
//! - [`network`]: each VPC's [`VpcPlan`] (gateways, interfaces, EIP translations, the
//!   security-group world, metadata), and that world alone for
//!   `feitian security-group evaluate`.
//! - [`snapshot`]: the snapshot reconciler's work list, the pins to release, and how
//!   snapshot reports are recorded.
//!
//! [`Planner`] serves them to agents as the [`ControlPlane`] trait; in process, the agent
//! holds it directly. Every call is one store transaction, run off the async threads.

pub mod disk;
pub mod instance;
pub mod network;
pub mod snapshot;

use feitian_agent_api::snapshot::{PinRef, RangeBlock, SnapshotTarget};
use feitian_agent_api::{ContractError, ControlPlane, DiskTarget, Fut, InstancePlan, InstanceTarget, Report, VpcPlan};
use feitian_meta::{MetaError, Store};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The control plane, as hosts see it.
pub struct Planner {
    store: Store,
}

impl Planner {
    pub fn new(store: Store) -> Arc<Planner> {
        Arc::new(Planner { store })
    }
}

/// A store failure, as a host sees it: the control plane cannot answer now; try again.
fn unavailable(e: MetaError) -> ContractError {
    tracing::warn!(error = %e, "the control plane cannot answer a host: store failed");
    ContractError::Unavailable(e.to_string())
}

/// Now, as the store keeps times (`2026-11-22T08:00:00Z`).
fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl ControlPlane for Planner {
    fn instances_to_reconcile(&self) -> Fut<'_, Vec<InstanceTarget>> {
        Box::pin(async move { self.store.read_async(instance::to_reconcile).await.map_err(unavailable) })
    }

    fn instances_wanted_running(&self) -> Fut<'_, Vec<InstanceTarget>> {
        Box::pin(async move { self.store.read_async(instance::wanted_running).await.map_err(unavailable) })
    }

    fn existing_instances(&self, ids: Vec<String>) -> Fut<'_, BTreeSet<String>> {
        Box::pin(
            async move { self.store.read_async(move |tx| instance::existing(tx, &ids)).await.map_err(unavailable) },
        )
    }

    fn instance_plan(&self, id: String) -> Fut<'_, Option<InstancePlan>> {
        Box::pin(async move { self.store.read_async(move |tx| instance::plan(tx, &id)).await.map_err(unavailable) })
    }

    fn vpcs(&self) -> Fut<'_, Vec<String>> {
        Box::pin(async move { self.store.read_async(network::vpcs).await.map_err(unavailable) })
    }

    fn vpc_plan(&self, vpc_id: String) -> Fut<'_, Option<VpcPlan>> {
        Box::pin(async move { self.store.read_async(move |tx| network::plan(tx, &vpc_id)).await.map_err(unavailable) })
    }

    fn disks_to_reconcile(&self) -> Fut<'_, Vec<DiskTarget>> {
        Box::pin(async move { self.store.read_async(disk::to_reconcile).await.map_err(unavailable) })
    }

    fn restore_plan(&self, disk_id: String) -> Fut<'_, Vec<RangeBlock>> {
        Box::pin(async move {
            self.store.read_async(move |tx| feitian_meta::disk_restore::plan(tx, &disk_id)).await.map_err(unavailable)
        })
    }

    fn volumes_to_delete(&self) -> Fut<'_, Vec<String>> {
        Box::pin(async move { self.store.read_async(feitian_meta::disk::volumes_to_delete).await.map_err(unavailable) })
    }

    fn snapshots_to_reconcile(&self) -> Fut<'_, Vec<SnapshotTarget>> {
        Box::pin(async move { self.store.read_async(snapshot::to_reconcile).await.map_err(unavailable) })
    }

    fn pins_to_release(&self) -> Fut<'_, Vec<PinRef>> {
        Box::pin(async move { self.store.read_async(snapshot::pins_to_release).await.map_err(unavailable) })
    }

    fn report(&self, report: Report) -> Fut<'_, bool> {
        Box::pin(async move {
            let at = now();
            self.store.write_async(move |tx| instance::record(tx, &report, &at)).await.map_err(unavailable)
        })
    }
}
