//! The agent: reconcilers that make the host match the control plane's decisions.
//!
//! The instance reconciler reads instances whose observed status differs from the desired one
//! and drives the compute driver, reporting each step back with a compare-and-set on the
//! status (so it never overwrites a change the API made meanwhile). It runs whenever the API
//! wakes it and every second, and on start it re-drives whatever a crash interrupted: an
//! instance left `Starting` is started again (drivers' starts are idempotent), one left
//! `Stopping` is stopped again. Instances the store no longer holds are destroyed on the host.
//!
//! Restart policy (documented in docs/architecture.md): what the store says is `Running` is
//! started again if the driver does not have it running (the `sim` driver loses its model on a
//! restart, so this restarts those); a guest the `qemu` driver still runs is adopted, after a
//! check that it is on its VPC's current network. A guest that stopped on its own is recorded
//! Stopped (with a `SystemFailure.Stop` event when it did not shut down itself).

pub mod network;

use feitian_compute::{Driver, InstanceSpec, Observed};
use feitian_meta::ecs::{self as db, Instance};
use feitian_meta::{network as netdb, MetaError, Store};
use network::NetworkAgent;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct InstanceReconciler {
    pub store: Store,
    pub driver: Arc<dyn Driver>,
    pub wake: Arc<Notify>,
    /// Host networking, for drivers that run real guests (`None` for `sim`).
    pub net: Option<Arc<NetworkAgent>>,
    inflight: Mutex<HashSet<String>>,
    /// Set at shutdown: no more passes, so guests stopped for it are not taken for crashed.
    halted: std::sync::atomic::AtomicBool,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl InstanceReconciler {
    pub fn new(store: Store, driver: Arc<dyn Driver>, wake: Arc<Notify>, net: Option<Arc<NetworkAgent>>) -> Arc<Self> {
        Arc::new(InstanceReconciler {
            store,
            driver,
            wake,
            net,
            inflight: Mutex::new(HashSet::new()),
            halted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Stops every guest the host runs (the shutdown policy: see [`network`]). The store is
    /// left as it is, so the next start boots again what should run.
    pub async fn stop_all(&self) {
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
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

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| Err(MetaError::Invalid(format!("store task failed: {e}"))))
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
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    /// One pass: start work on every instance that needs it, and clean up what the store no
    /// longer holds.
    async fn pass(self: Arc<Self>, adopt: bool) -> Result<(), MetaError> {
        if self.halted.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut work = self.db(|s| s.read(db::instances_to_reconcile)).await?;
        if adopt {
            // After a restart: whatever should run but the driver does not run is started;
            // what it does run is adopted, once its network is checked (a start of a running
            // guest changes nothing when the guest is on its network).
            for i in self.db(|s| s.read(db::instances_wanted_running)).await? {
                if i.status != "Running" || work.iter().any(|w| w.id == i.id) {
                    continue;
                }
                if self.driver.observe(&i.id) != Observed::Running {
                    work.push(i);
                } else if self.net.is_some() && self.inflight.lock().insert(i.id.clone()) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let checked = match me.spec(&i).await {
                            Ok(spec) => me.driver.start(&spec).await.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = checked {
                            tracing::warn!(instance = %i.id, error = %e, "cannot adopt the running guest");
                        }
                        me.inflight.lock().remove(&i.id);
                    });
                }
            }
        } else {
            // A guest whose process ended on its own (powered off inside, or its QEMU died):
            // the instance is Stopped, as on Alibaba Cloud after a shutdown from within.
            for i in self.db(|s| s.read(db::instances_wanted_running)).await? {
                if i.status == "Running"
                    && i.reboots == 0
                    && !self.inflight.lock().contains(&i.id)
                    && self.driver.observe(&i.id) != Observed::Running
                {
                    // A guest that shut down says so on its console; otherwise its process
                    // died under it, which Alibaba Cloud reports as a system event.
                    let shut_down = self
                        .driver
                        .console_output(&i.id)
                        .is_some_and(|c| c.contains(feitian_compute::image::SHUTDOWN_LINE));
                    let event = (!shut_down).then(|| crash_event(&i));
                    if shut_down {
                        tracing::info!(instance = %i.id, "the guest shut down from inside; the instance is now Stopped");
                    } else {
                        tracing::warn!(instance = %i.id, "the guest's process ended without a shutdown; the instance is now Stopped (event SystemFailure.Stop)");
                    }
                    let id = i.id.clone();
                    self.db(move |s| {
                        s.write(|tx| {
                            // Only if the API did not move it meanwhile (compare-and-set).
                            if db::advance(tx, &id, "Running", "Stopped", None, false)? {
                                db::set_lifecycle(tx, &id, "Stopped", "Stopped", 0)?;
                                if let Some(e) = &event {
                                    db::insert_event(tx, e)?;
                                }
                            }
                            Ok::<_, MetaError>(())
                        })
                    })
                    .await?;
                }
            }
        }
        for inst in work {
            if !self.inflight.lock().insert(inst.id.clone()) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let id = inst.id.clone();
                if let Err(e) = me.step(inst).await {
                    tracing::warn!(instance = %id, error = %e, "instance step failed; will retry");
                }
                me.inflight.lock().remove(&id);
                me.wake.notify_one();
            });
        }
        let known = self.driver.known();
        if !known.is_empty() {
            let existing: HashSet<String> = self.db(move |s| s.read(|tx| db::existing_instances(tx, &known))).await?;
            for id in self.driver.known() {
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

    async fn spec(&self, inst: &Instance) -> Result<InstanceSpec, MetaError> {
        let (mut spec, eni_id) = self.stored_spec(inst).await?;
        if let Some(net) = &self.net {
            net.attach(&mut spec, &eni_id).await?;
        }
        Ok(spec)
    }

    /// The spec as the store has it, and the id of its network interface.
    async fn stored_spec(&self, inst: &Instance) -> Result<(InstanceSpec, String), MetaError> {
        let i = inst.clone();
        self.db(move |s| {
            s.read(|tx| {
                let eni = db::enis_of_instance(tx, &i.id)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| MetaError::Invalid(format!("{} has no network interface", i.id)))?;
                let vsw = netdb::get_vswitch(tx, i.account_id, &i.vswitch_id)?
                    .ok_or_else(|| MetaError::Invalid(format!("{} has no vSwitch", i.id)))?;
                let net = feitian_vpc::cidr::parse(&vsw.cidr_block)
                    .map_err(|_| MetaError::Invalid("bad vSwitch block".into()))?;
                let keys = db::public_keys_of(tx, &i)?;
                let system_disk_gib = db::disks_of_instance(tx, &i.id)?
                    .into_iter()
                    .find(|d| d.disk_type == "system")
                    .map_or(0, |d| d.size_gib.max(0) as u64);
                let eni_id = eni.id.clone();
                Ok((
                    InstanceSpec {
                        id: i.id.clone(),
                        host_name: i.host_name.clone(),
                        cpu: i.cpu as u32,
                        memory_mib: i.memory_mib as u32,
                        image_id: i.image_id.clone(),
                        system_disk_gib,
                        mac: eni.mac,
                        private_ip: eni.primary_ip,
                        gateway: feitian_vpc::cidr::gateway(net).to_string(),
                        prefix_len: net.prefix_len(),
                        vpc_id: i.vpc_id.clone(),
                        user_data: i.user_data.clone(),
                        public_keys: keys,
                        netns: None,
                        tap: None,
                    },
                    eni_id,
                ))
            })
        })
        .await
    }

    async fn advance(
        &self,
        id: &str,
        from: &'static str,
        to: &'static str,
        started: bool,
        reboot_done: bool,
    ) -> Result<bool, MetaError> {
        let id = id.to_owned();
        let at = started.then(now);
        self.db(move |s| s.write(|tx| db::advance(tx, &id, from, to, at.as_deref(), reboot_done))).await
    }

    fn halted(&self) -> bool {
        self.halted.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn forced(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_owned();
        self.db(move |s| s.read(|tx| db::forced_stop(tx, &id))).await
    }

    async fn clear_forced(&self, id: &str) -> Result<(), MetaError> {
        let id = id.to_owned();
        self.db(move |s| s.write(|tx| db::set_forced_stop(tx, &id, false))).await
    }

    /// Brings one instance one state closer to what is desired.
    async fn step(&self, inst: Instance) -> Result<(), MetaError> {
        let failed = |e: feitian_compute::DriverError| MetaError::Invalid(e.to_string());
        match (inst.status.as_str(), inst.desired.as_str()) {
            ("Pending", "Stopped") => {
                self.advance(&inst.id, "Pending", "Stopped", false, false).await?;
            }
            ("Pending", "Running") | ("Starting", "Running") | ("Stopped", "Running") | ("Running", "Running")
                if inst.reboots == 0 =>
            {
                let from = if inst.status == "Starting" { "Starting" } else { inst.status.as_str() };
                if from != "Starting" {
                    let from: &'static str = match from {
                        "Pending" => "Pending",
                        "Stopped" => "Stopped",
                        _ => "Running",
                    };
                    if !self.advance(&inst.id, from, "Starting", false, false).await? {
                        return Ok(());
                    }
                }
                let spec = self.spec(&inst).await?;
                if self.halted() {
                    // Shutting down: no new guest may start after stop_all looked.
                    return Ok(());
                }
                match self.driver.start(&spec).await {
                    Ok(()) => {
                        self.advance(&inst.id, "Starting", "Running", true, false).await?;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %inst.id, error = %e, "start failed; the instance stays Stopped");
                        let id = inst.id.clone();
                        self.db(move |s| s.write(|tx| db::set_lifecycle(tx, &id, "Stopped", "Stopped", 0))).await?;
                    }
                }
            }
            ("Stopping", "Running") => {
                // A reboot: stop, then start.
                let spec = self.spec(&inst).await?;
                if self.halted() {
                    return Ok(());
                }
                let force = self.forced(&inst.id).await?;
                self.driver.reboot(&spec, force).await.map_err(failed)?;
                self.clear_forced(&inst.id).await?;
                if self.advance(&inst.id, "Stopping", "Starting", false, true).await? {
                    self.advance(&inst.id, "Starting", "Running", true, false).await?;
                }
            }
            ("Running", "Stopped") | ("Stopping", "Stopped") | ("Starting", "Stopped") => {
                if inst.status != "Stopping" {
                    let from: &'static str = if inst.status == "Running" { "Running" } else { "Starting" };
                    if !self.advance(&inst.id, from, "Stopping", false, false).await? {
                        return Ok(());
                    }
                }
                let force = self.forced(&inst.id).await?;
                match self.driver.stop(&inst.id, force).await {
                    Ok(()) | Err(feitian_compute::DriverError::Unknown(_)) => {}
                    Err(e) => return Err(failed(e)),
                }
                self.clear_forced(&inst.id).await?;
                self.advance(&inst.id, "Stopping", "Stopped", false, false).await?;
            }
            (status, desired) => {
                tracing::debug!(instance = %inst.id, status, desired, reboots = inst.reboots, "nothing to do");
            }
        }
        Ok(())
    }
}

/// The system event for an instance whose process ended without its guest shutting down.
fn crash_event(i: &Instance) -> db::InstanceEvent {
    let at = now();
    // Event ids carry the region's code like the instance's own id (`i-bp…` → `e-bp…`).
    let code: String = i.id.trim_start_matches("i-").chars().take(2).collect();
    db::InstanceEvent {
        id: feitian_meta::ids::resource_id("e", &code),
        account_id: i.account_id,
        region_id: i.region_id.clone(),
        instance_id: i.id.clone(),
        event_type: "SystemFailure.Stop".into(),
        cycle_status: "Executed".into(),
        reason:
            "The instance's virtual machine process ended without the guest shutting down; the instance was stopped."
                .into(),
        publish_time: at.clone(),
        finish_time: at.clone(),
        created_at: at,
    }
}
