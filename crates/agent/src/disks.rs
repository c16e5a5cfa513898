//! The disk reconciler: makes a host's volumes and attachments match what the control plane
//! decided about disks.
//!
//! It asks for the disks with work ([`ControlPlane::disks_to_reconcile`]) and brings each one
//! step closer, one disk at a time (a disk's steps never overlap):
//!
//! | the disk | the host does | then reports |
//! |---|---|---|
//! | its volume is not made (`volume_gib` 0) | `VolumeService::create` (a system disk from its image's volume); a disk made from a snapshot is then filled with the snapshot's blocks (`ControlPlane::restore_plan`, `BlockStore::get`, `VolumeService::write_blocks`, 32 MiB at a time) | `VolumeReady` |
//! | its volume is smaller than the disk | `VolumeService::resize`, then shows a running guest that has it the new size (`Driver::disk_grown`) | `VolumeReady` |
//! | `Creating` | (the volume above) | `Creating` → `Available`, or `Attaching` when created for an instance |
//! | `Attaching` | hot-plugs it if the instance runs (a stopped one gets it at its next start) | `Attaching` → `In_use` |
//! | `Detaching` | hot-unplugs it if the instance runs | `Detaching` → `Available` |
//! | `ReIniting` | `VolumeService::reinit` (empty, or its image's again; for `ResetDisk`, empty and then filled from the snapshot) | `ReIniting` → `In_use` (or `Available` for a detached disk) |
//!
//! and deletes the volumes of deleted disks ([`ControlPlane::volumes_to_delete`], then
//! `VolumeDeleted`). Every move is a compare-and-set on the status, so a report never
//! overwrites what the API decided meanwhile; every volume call is idempotent, so after a
//! crash the interrupted step is simply done again. It runs when nudged and every second.

use crate::AgentError;
use bytes::Bytes;
use feitian_agent_api::snapshot::RANGE_BYTES;
use feitian_agent_api::{
    BlockStore, ContractError, ControlPlane, DiskStatus, DiskTarget, Nudges, Report, VolumeService,
};
use feitian_compute::{Driver, Observed};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub struct DiskReconciler {
    control: Arc<dyn ControlPlane>,
    driver: Arc<dyn Driver>,
    volumes: Arc<dyn VolumeService>,
    /// The region's snapshot blocks, which disks made from snapshots are filled from.
    blocks: Arc<dyn BlockStore>,
    nudges: Nudges,
    /// Disks (and deleted volumes) with a step under way.
    inflight: Mutex<HashSet<String>>,
}

/// A disk's size in the volume service's unit.
fn bytes(gib: u64) -> u64 {
    gib.saturating_mul(feitian_agent_api::disk::GIB)
}

impl DiskReconciler {
    pub fn new(
        control: Arc<dyn ControlPlane>,
        driver: Arc<dyn Driver>,
        volumes: Arc<dyn VolumeService>,
        blocks: Arc<dyn BlockStore>,
        nudges: Nudges,
    ) -> Arc<Self> {
        Arc::new(DiskReconciler { control, driver, volumes, blocks, nudges, inflight: Mutex::new(HashSet::new()) })
    }

    /// Runs forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.clone().pass().await {
                tracing::warn!(error = %e, "disk reconciler pass failed; retrying");
            }
            tokio::select! {
                _ = self.nudges.disks() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    /// Claims `id` for one step; `false` if a step on it is under way.
    fn claim(&self, id: &str) -> bool {
        self.inflight.lock().insert(id.to_owned())
    }

    /// One pass: starts a step on every disk with work and every volume to delete.
    pub async fn pass(self: Arc<Self>) -> Result<(), AgentError> {
        for t in self.control.disks_to_reconcile().await? {
            if !self.claim(&t.id) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let id = t.id.clone();
                if let Err(e) = me.step(t).await {
                    tracing::warn!(disk = %id, error = %e, "disk step failed; will retry");
                }
                me.done(&id);
            });
        }
        for volume in self.control.volumes_to_delete().await? {
            if !self.claim(&volume) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let deleted = match me.volumes.delete(volume.clone()).await {
                    Ok(()) => me.control.report(Report::VolumeDeleted { id: volume.clone() }).await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = deleted {
                    tracing::warn!(volume = %volume, error = %e, "cannot delete the volume of a deleted disk; will retry");
                }
                me.done(&volume);
            });
        }
        Ok(())
    }

    /// A step on `id` ended: another may start, now (a disk's next step often follows).
    fn done(&self, id: &str) {
        self.inflight.lock().remove(id);
        self.nudges.disks_changed();
    }

    async fn moved(&self, id: &str, from: DiskStatus, to: DiskStatus) -> Result<bool, AgentError> {
        Ok(self.control.report(Report::DiskMoved { id: id.to_owned(), from, to }).await?)
    }

    /// Whether the disk's instance runs on this host now.
    fn instance_runs(&self, t: &DiskTarget) -> Option<String> {
        t.instance_id.clone().filter(|i| self.driver.observe(i) == Observed::Running)
    }

    /// Fills a new disk's volume with the snapshot it is made from, a batch of ranges at a
    /// time. The control plane holds the blocks until the volume is reported ready, so every
    /// block named is there; one that is not is an error to retry (and a bug to report).
    async fn fill(&self, t: &DiskTarget) -> Result<(), AgentError> {
        const BATCH: usize = 32;
        let plan = self.control.restore_plan(t.id.clone()).await?;
        for batch in plan.chunks(BATCH) {
            let mut writes: Vec<(u64, Bytes)> = Vec::with_capacity(batch.len());
            for r in batch {
                let Some(hash) = &r.block else { continue };
                let data = self.blocks.get(hash.clone()).await.map_err(AgentError::Volume)?.ok_or_else(|| {
                    AgentError::Volume(ContractError::Unavailable(format!(
                        "block {hash} of disk {}'s snapshot is missing from the block store",
                        t.id
                    )))
                })?;
                writes.push((r.range * RANGE_BYTES, data));
            }
            self.volumes.write_blocks(t.id.clone(), writes).await.map_err(AgentError::Volume)?;
        }
        tracing::info!(disk = %t.id, ranges = plan.len(), "disk filled from its snapshot");
        Ok(())
    }

    /// Brings one disk one step closer to what is decided.
    async fn step(&self, t: DiskTarget) -> Result<(), AgentError> {
        if t.volume_gib == 0 {
            self.volumes.create(t.id.clone(), bytes(t.size_gib), t.parent.clone()).await.map_err(AgentError::Volume)?;
            if t.restore_from.is_some() {
                self.fill(&t).await?;
            }
            self.control.report(Report::VolumeReady { id: t.id.clone(), gib: t.size_gib }).await?;
            // Instances wait for their volumes before they start.
            self.nudges.instances_changed();
        } else if t.volume_gib < t.size_gib {
            self.volumes.resize(t.id.clone(), bytes(t.size_gib)).await.map_err(AgentError::Volume)?;
            // Online resize: the guest sees the new size without a reboot. Before the report,
            // so that a failure is retried (the resize itself is idempotent).
            if let Some(instance) = self.instance_runs(&t) {
                if self.driver.attached_disks(&instance).contains(&t.id) {
                    self.driver.disk_grown(&instance, &t.id, bytes(t.size_gib)).await?;
                }
            }
            self.control.report(Report::VolumeReady { id: t.id.clone(), gib: t.size_gib }).await?;
        }
        match t.status {
            DiskStatus::Creating => {
                let to = if t.instance_id.is_some() { DiskStatus::Attaching } else { DiskStatus::Available };
                self.moved(&t.id, DiskStatus::Creating, to).await?;
            }
            DiskStatus::Attaching => {
                if let Some(instance) = self.instance_runs(&t) {
                    self.driver.attach_disk(&instance, &t.plan).await?;
                }
                self.moved(&t.id, DiskStatus::Attaching, DiskStatus::InUse).await?;
            }
            DiskStatus::Detaching => {
                if let Some(instance) = self.instance_runs(&t) {
                    self.driver.detach_disk(&instance, &t.id).await?;
                }
                self.moved(&t.id, DiskStatus::Detaching, DiskStatus::Available).await?;
            }
            DiskStatus::ReIniting => {
                // The API re-initialises (or resets to a snapshot) only disks no running guest
                // has: nothing reads it now. A reset makes the volume empty, then fills it.
                self.volumes
                    .reinit(t.id.clone(), bytes(t.size_gib), t.parent.clone())
                    .await
                    .map_err(AgentError::Volume)?;
                if t.restore_from.is_some() {
                    self.fill(&t).await?;
                }
                self.control.report(Report::VolumeReady { id: t.id.clone(), gib: t.size_gib }).await?;
                let to = if t.instance_id.is_some() { DiskStatus::InUse } else { DiskStatus::Available };
                self.moved(&t.id, DiskStatus::ReIniting, to).await?;
            }
            DiskStatus::Available | DiskStatus::InUse => {}
        }
        Ok(())
    }
}
