//! The agent: makes one host match the plans the control plane gives it.
//!
//! It speaks only the host contract ([`feitian_agent_api`]): it asks the control plane for
//! its work ([`ControlPlane`]), drives the compute driver ([`feitian_compute::Driver`]) and
//! the host's network ([`network::NetworkAgent`]), and reports each step back
//! ([`Report`]). It never reads the store and imports no service, so the same agent runs on
//! any host once a network transport implements the contract's traits.
//!
//! The instance reconciler asks for the instances whose status differs from the desired one
//! and brings each one step closer, reporting every move as a compare-and-set on the status
//! (so it never overwrites a change the API made meanwhile). It runs when nudged and every
//! second, and on start it re-drives whatever a crash interrupted: an instance left
//! `Starting` is started again (drivers' starts are idempotent), one left `Stopping` is
//! stopped again. What the host still has of instances the control plane no longer holds is
//! destroyed.
//!
//! The disk reconciler ([`disks::DiskReconciler`]) does the same for disks: it makes, grows,
//! re-initialises and deletes their volumes through the contract's `VolumeService`, and
//! hot-plugs them through the compute driver.
//!
//! The snapshot reconciler ([`snapshots::SnapshotReconciler`]) takes the instants of disk
//! snapshots (pins, through `VolumeService`) and uploads their changed blocks to the region's
//! block store (`BlockStore`), reporting progress and the upload for the control plane to
//! commit (docs/snapshots.md).
//!
//! Restart policy (documented in docs/architecture.md): what should be `Running` is started
//! again if the driver does not have it running (the `sim` driver loses its model on a
//! restart, so this restarts those); a guest the `qemu` driver still runs is adopted, after a
//! check that it is on its VPC's current network. A guest that stopped on its own is reported
//! (`Report::StoppedOnItsOwn`, with `crashed` when it did not shut down itself).

pub mod disks;
pub mod network;
pub mod snapshots;

use feitian_agent_api::{
    ContractError, ControlPlane, Desired, Fut, HostApi, HostCapacity, InstanceStatus, InstanceTarget, Nudges, Report,
};
use feitian_compute::{Driver, DriverError, InstanceSpec, Observed};
use network::NetworkAgent;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What can stop one step of the agent; it is logged, and the step is tried again.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("host network: {0}")]
    Network(String),
    #[error("instance {0} no longer exists")]
    Gone(String),
    #[error("volume: {0}")]
    Volume(ContractError),
}

pub struct InstanceReconciler {
    control: Arc<dyn ControlPlane>,
    driver: Arc<dyn Driver>,
    nudges: Nudges,
    /// Host networking, for drivers that run real guests (`None` for `sim`).
    net: Option<Arc<NetworkAgent>>,
    inflight: Mutex<HashSet<String>>,
    /// Set at shutdown: no more passes, so guests stopped for it are not taken for crashed.
    halted: AtomicBool,
}

impl InstanceReconciler {
    pub fn new(
        control: Arc<dyn ControlPlane>,
        driver: Arc<dyn Driver>,
        nudges: Nudges,
        net: Option<Arc<NetworkAgent>>,
    ) -> Arc<Self> {
        Arc::new(InstanceReconciler {
            control,
            driver,
            nudges,
            net,
            inflight: Mutex::new(HashSet::new()),
            halted: AtomicBool::new(false),
        })
    }

    /// Stops every guest the host runs (the shutdown policy: see [`network`]). The control
    /// plane is told nothing, so the next start boots again what should run.
    pub async fn stop_all(&self) {
        self.halted.store(true, Ordering::SeqCst);
        // A start under way may still launch its guest (it checked before `halted` was set):
        // stop what runs until no step is in flight and nothing runs, or a minute has passed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let running: Vec<String> =
                self.driver.known().into_iter().filter(|id| self.driver.observe(id) == Observed::Running).collect();
            if running.is_empty() && self.inflight.lock().is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?running, "guests still run at shutdown; giving up on them");
                return;
            }
            let stops = running.iter().map(|id| async move {
                if let Err(e) = self.driver.stop(id, false).await {
                    tracing::warn!(instance = %id, error = %e, "cannot stop the guest at shutdown");
                }
            });
            futures_util::future::join_all(stops).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs forever.
    pub async fn run(self: Arc<Self>) {
        let mut first = true;
        loop {
            if let Err(e) = self.clone().pass(first).await {
                tracing::warn!(error = %e, "instance reconciler pass failed; retrying");
            }
            first = false;
            tokio::select! {
                _ = self.nudges.instances() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// One pass: start work on every instance that needs it, and clean up what the control
    /// plane no longer holds. `adopt` is set on the first pass after a start.
    pub async fn pass(self: Arc<Self>, adopt: bool) -> Result<(), AgentError> {
        if self.halted() {
            return Ok(());
        }
        let mut work = self.control.instances_to_reconcile().await?;
        let wanted = self.control.instances_wanted_running().await?;
        if adopt {
            // After a restart: whatever should run but the driver does not run is started;
            // what it does run is adopted, once its network is checked (a start of a running
            // guest changes nothing when the guest is on its network).
            for t in wanted {
                if t.status != InstanceStatus::Running || work.iter().any(|w| w.id == t.id) {
                    continue;
                }
                if self.driver.observe(&t.id) != Observed::Running {
                    work.push(t);
                } else if self.net.is_some() && self.inflight.lock().insert(t.id.clone()) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let checked = match me.spec(&t.id).await {
                            Ok(spec) => me.driver.start(&spec).await.map_err(AgentError::from),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = checked {
                            tracing::warn!(instance = %t.id, error = %e, "cannot adopt the running guest");
                        }
                        me.inflight.lock().remove(&t.id);
                    });
                }
            }
        } else {
            for t in wanted {
                self.notice_stopped_on_its_own(&t).await?;
            }
        }
        for target in work {
            if !self.inflight.lock().insert(target.id.clone()) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let id = target.id.clone();
                if let Err(e) = me.step(target).await {
                    tracing::warn!(instance = %id, error = %e, "instance step failed; will retry");
                }
                me.inflight.lock().remove(&id);
                me.nudges.instances_changed();
            });
        }
        let known = self.driver.known();
        if !known.is_empty() {
            let existing = self.control.existing_instances(known.clone()).await?;
            for id in known {
                if !existing.contains(&id) && !self.inflight.lock().contains(&id) {
                    tracing::info!(instance = %id, "destroying what the host still has of a deleted instance");
                    if let Err(e) = self.driver.destroy(&id).await {
                        tracing::warn!(instance = %id, error = %e, "destroy failed; will retry");
                    }
                }
            }
        }
        Ok(())
    }

    /// A guest whose process ended on its own (powered off inside, or its QEMU died): the
    /// control plane records the instance `Stopped`, as Alibaba Cloud does after a shutdown
    /// from within.
    async fn notice_stopped_on_its_own(&self, t: &InstanceTarget) -> Result<(), AgentError> {
        if t.status != InstanceStatus::Running
            || t.reboots != 0
            || self.inflight.lock().contains(&t.id)
            || self.driver.observe(&t.id) == Observed::Running
        {
            return Ok(());
        }
        // A guest that shut down says so on its console; otherwise its process died under
        // it, which Alibaba Cloud reports as a system event.
        let shut_down =
            self.driver.console_output(&t.id).is_some_and(|c| c.contains(feitian_compute::image::SHUTDOWN_LINE));
        if shut_down {
            tracing::info!(instance = %t.id, "the guest shut down from inside; the instance is now Stopped");
        } else {
            tracing::warn!(instance = %t.id, "the guest's process ended without a shutdown; the instance is now Stopped (event SystemFailure.Stop)");
        }
        // What the guest held on the host (its disks' servers) is let go, as after a
        // StopInstance: a stopped instance's disks can be re-initialised or attached elsewhere.
        // (Before the report: once Stopped, the instance may be started again at any time.)
        match self.driver.stop(&t.id, true).await {
            Ok(()) | Err(DriverError::Unknown(_)) => {}
            Err(e) => tracing::warn!(instance = %t.id, error = %e, "cannot release what the stopped guest held"),
        }
        self.control.report(Report::StoppedOnItsOwn { id: t.id.clone(), crashed: !shut_down }).await?;
        Ok(())
    }

    /// The driver's input for an instance, with its network attached on this host.
    async fn spec(&self, id: &str) -> Result<InstanceSpec, AgentError> {
        let plan = self.control.instance_plan(id.to_owned()).await?.ok_or_else(|| AgentError::Gone(id.to_owned()))?;
        match &self.net {
            Some(net) => {
                let (netns, tap) = net.attach(&plan).await?;
                Ok(InstanceSpec { plan, netns: Some(netns), tap: Some(tap) })
            }
            None => Ok(InstanceSpec { plan, netns: None, tap: None }),
        }
    }

    /// Reports a compare-and-set move; `true` if it happened.
    async fn moved(
        &self,
        id: &str,
        from: InstanceStatus,
        to: InstanceStatus,
        started: bool,
        reboot_done: bool,
    ) -> Result<bool, AgentError> {
        Ok(self.control.report(Report::Moved { id: id.to_owned(), from, to, started, reboot_done }).await?)
    }

    /// Brings one instance one state closer to what is desired.
    async fn step(&self, t: InstanceTarget) -> Result<(), AgentError> {
        use InstanceStatus as S;
        match (t.status, t.desired) {
            (S::Pending, Desired::Stopped) => {
                self.moved(&t.id, S::Pending, S::Stopped, false, false).await?;
            }
            (S::Pending | S::Starting | S::Stopped | S::Running, Desired::Running) if t.reboots == 0 => {
                if t.status != S::Starting && !self.moved(&t.id, t.status, S::Starting, false, false).await? {
                    return Ok(());
                }
                let spec = self.spec(&t.id).await?;
                if self.halted() {
                    // Shutting down: no new guest may start after stop_all looked.
                    return Ok(());
                }
                match self.driver.start(&spec).await {
                    Ok(()) => {
                        self.moved(&t.id, S::Starting, S::Running, true, false).await?;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %t.id, error = %e, "start failed; the instance stays Stopped");
                        self.control.report(Report::StartFailed { id: t.id.clone(), error: e.to_string() }).await?;
                    }
                }
            }
            (S::Stopping, Desired::Running) => {
                // A reboot: stop, then start.
                let spec = self.spec(&t.id).await?;
                if self.halted() {
                    return Ok(());
                }
                self.driver.reboot(&spec, t.force_stop).await?;
                if t.force_stop {
                    self.control.report(Report::ForcedStopDone { id: t.id.clone() }).await?;
                }
                if self.moved(&t.id, S::Stopping, S::Starting, false, true).await? {
                    self.moved(&t.id, S::Starting, S::Running, true, false).await?;
                }
            }
            (S::Running | S::Stopping | S::Starting, Desired::Stopped) => {
                if t.status != S::Stopping && !self.moved(&t.id, t.status, S::Stopping, false, false).await? {
                    return Ok(());
                }
                match self.driver.stop(&t.id, t.force_stop).await {
                    Ok(()) | Err(DriverError::Unknown(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                if t.force_stop {
                    self.control.report(Report::ForcedStopDone { id: t.id.clone() }).await?;
                }
                self.moved(&t.id, S::Stopping, S::Stopped, false, false).await?;
            }
            (status, desired) => {
                tracing::debug!(instance = %t.id, %status, %desired, reboots = t.reboots, "nothing to do");
            }
        }
        Ok(())
    }
}

/// The host's side of the contract the control plane calls: consoles.
pub struct HostAgent {
    driver: Arc<dyn Driver>,
}

impl HostAgent {
    pub fn new(driver: Arc<dyn Driver>) -> Arc<HostAgent> {
        Arc::new(HostAgent { driver })
    }
}

impl HostApi for HostAgent {
    fn console_output(&self, instance_id: String) -> Fut<'_, Option<String>> {
        Box::pin(async move { Ok(self.driver.console_output(&instance_id)) })
    }

    fn capacity(&self) -> Fut<'_, HostCapacity> {
        Box::pin(async move { self.driver.capacity().map_err(|e| ContractError::Unavailable(e.to_string())) })
    }
}
