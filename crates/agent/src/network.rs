//! The network agent: drives each VPC's namespace on this host toward the store (taps for
//! its instances' interfaces, vSwitch gateways, security groups, EIP NAT) and serves the
//! metadata service inside it.
//!
//! A VPC is realized on the host while it holds an instance, and removed with its last one.
//! Every pass computes each VPC's whole [`VpcPlan`] from the store and applies it only when it
//! differs from the last one applied (after a restart, the first pass applies everything:
//! every step is idempotent, and what a crash left behind is adopted or removed).
//!
//! Shutdown policy (`feitian up` stopping on SIGTERM or Ctrl-C): the instance reconciler
//! stops every guest first, then [`NetworkAgent::teardown`] removes every namespace, tap,
//! bridge and nftables table this feitian made, and its host route. The store still says
//! which instances should run, so the next `feitian up` boots them again.

use base64::Engine;
use feitian_compute::InstanceSpec;
use feitian_hostnet::host::{tap_name, HostNet, VpcPlan};
use feitian_hostnet::metadata::{self, Directory, InstanceMetadata};
use feitian_hostnet::sg::{self, Port};
use feitian_meta::ecs as db;
use feitian_meta::{network as netdb, MetaError, Store, Transaction};
use feitian_secgroup::{Group, Nic, Peer, Policy, World};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct Served {
    directory: Directory,
    task: tokio::task::JoinHandle<()>,
}

pub struct NetworkAgent {
    store: Store,
    host: Arc<HostNet>,
    pub wake: Arc<Notify>,
    applied: Mutex<HashMap<String, VpcPlan>>,
    served: Mutex<HashMap<String, Served>>,
    /// One host change at a time: `ip` and `nft` calls on one namespace must not interleave.
    busy: tokio::sync::Mutex<()>,
    /// Set by [`NetworkAgent::teardown`]: nothing may be made on the host any more.
    halted: std::sync::atomic::AtomicBool,
}

/// A VPC's plan and what its metadata service answers.
struct Desired {
    plan: VpcPlan,
    metadata: HashMap<Ipv4Addr, InstanceMetadata>,
}

fn err(e: feitian_hostnet::NetError) -> MetaError {
    MetaError::Invalid(e.to_string())
}

impl NetworkAgent {
    /// `wake` is notified by the services when they change what the host realizes.
    pub fn new(store: Store, host: Arc<HostNet>, wake: Arc<Notify>) -> Arc<NetworkAgent> {
        Arc::new(NetworkAgent {
            store,
            host,
            wake,
            applied: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            busy: tokio::sync::Mutex::new(()),
            halted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn host(&self) -> &HostNet {
        &self.host
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, &HostNet) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let store = self.store.clone();
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || f(&store, &host))
            .await
            .unwrap_or_else(|e| Err(MetaError::Invalid(format!("network task failed: {e}"))))
    }

    /// Sets up the public namespace and the host's route to the EIP pool.
    pub async fn start(&self) -> Result<(), MetaError> {
        self.blocking(|_, h| h.ensure_public().map_err(err)).await
    }

    /// Brings one VPC to the store's state now (before an instance in it boots), and fills in
    /// `spec`'s namespace and tap.
    pub async fn attach(&self, spec: &mut InstanceSpec, eni_id: &str) -> Result<(), MetaError> {
        self.sync_vpc(&spec.vpc_id).await?;
        spec.netns = Some(self.host.vpc_ns(&spec.vpc_id));
        spec.tap = Some(tap_name(eni_id));
        Ok(())
    }

    /// Reads one VPC's desired state and applies it if it changed.
    pub async fn sync_vpc(&self, vpc_id: &str) -> Result<(), MetaError> {
        let _guard = self.busy.lock().await;
        if self.halted.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(MetaError::Invalid("feitian is shutting down: the host network is being removed".into()));
        }
        let id = vpc_id.to_owned();
        let desired = self.blocking(move |s, _| s.read(|tx| desired(tx, &id))).await?;
        self.apply(vpc_id, desired).await
    }

    async fn apply(&self, vpc_id: &str, desired: Option<Desired>) -> Result<(), MetaError> {
        let Some(Desired { plan, metadata }) = desired else {
            // No instance left: the VPC leaves the host.
            if self.applied.lock().remove(vpc_id).is_some() || self.host.realized_vpcs().iter().any(|v| v == vpc_id) {
                if let Some(s) = self.served.lock().remove(vpc_id) {
                    s.task.abort();
                }
                let id = vpc_id.to_owned();
                self.blocking(move |_, h| h.remove_vpc(&id).map_err(err)).await?;
                tracing::info!(vpc = %vpc_id, "VPC removed from the host");
            }
            return Ok(());
        };
        let before = self.applied.lock().get(vpc_id).cloned();
        if before.as_ref() != Some(&plan) {
            let p = plan.clone();
            self.blocking(move |_, h| h.update(before.as_ref(), &p).map_err(err)).await?;
            tracing::debug!(vpc = %vpc_id, ports = plan.ports.len(), nat = plan.nat.len(), "VPC applied on the host");
            self.applied.lock().insert(vpc_id.to_owned(), plan);
        }
        let existing = self.served.lock().get(vpc_id).map(|s| (s.directory.clone(), s.task.is_finished()));
        match existing {
            Some((dir, false)) => *dir.write() = metadata,
            _ => {
                let ns = self.host.vpc_ns(vpc_id);
                let listener = tokio::task::spawn_blocking(move || metadata::bind_in(&ns))
                    .await
                    .map_err(|e| MetaError::Invalid(e.to_string()))?
                    .map_err(err)?;
                let directory: Directory = Arc::new(parking_lot::RwLock::new(metadata));
                let d = directory.clone();
                let vpc = vpc_id.to_owned();
                let task = tokio::spawn(async move {
                    if let Err(e) = metadata::serve(listener, d).await {
                        tracing::warn!(vpc = %vpc, error = %e, "metadata service stopped");
                    }
                });
                self.served.lock().insert(vpc_id.to_owned(), Served { directory, task });
            }
        }
        Ok(())
    }

    /// One pass over every VPC the host holds or should hold.
    pub async fn pass(&self) -> Result<(), MetaError> {
        if self.halted.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let wanted = self.blocking(|s, _| s.read(db::vpcs_with_instances)).await?;
        let mut all: BTreeSet<String> = wanted.into_iter().collect();
        all.extend(self.host.realized_vpcs());
        all.extend(self.applied.lock().keys().cloned());
        for vpc in all {
            if let Err(e) = self.sync_vpc(&vpc).await {
                tracing::warn!(vpc = %vpc, error = %e, "cannot bring the VPC's host network up to date; retrying");
            }
        }
        Ok(())
    }

    /// Runs forever: on every wake-up and every second.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "network agent pass failed; retrying");
            }
            tokio::select! {
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    /// Removes everything this feitian made on the host. Guests must be stopped first.
    pub async fn teardown(&self) -> Result<(), MetaError> {
        let _guard = self.busy.lock().await;
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, s) in self.served.lock().drain() {
            s.task.abort();
        }
        self.applied.lock().clear();
        self.blocking(|_, h| h.teardown().map_err(err)).await
    }
}

/// What one VPC's namespace should hold, or `None` when no instance is in it.
fn desired(tx: &Transaction<'_>, vpc_id: &str) -> Result<Option<Desired>, MetaError> {
    let enis: Vec<_> = db::enis_of_vpc(tx, vpc_id)?.into_iter().filter(|e| !e.instance_id.is_empty()).collect();
    let Some(first) = enis.first() else { return Ok(None) };
    let account = first.account_id;
    let vpc_cidr = netdb::get_vpc(tx, account, vpc_id)?.map(|v| v.cidr_block).unwrap_or_default();
    let mut gateways = Vec::new();
    let mut vswitch_cidrs = HashMap::new();
    for v in netdb::vswitches_of_vpc(tx, vpc_id)? {
        if let Ok(net) = feitian_vpc::cidr::parse(&v.cidr_block) {
            let gw = feitian_vpc::cidr::gateway(net);
            gateways.push(ipnet::Ipv4Net::new(gw, net.prefix_len()).map_err(|e| MetaError::Invalid(e.to_string()))?);
            vswitch_cidrs.insert(v.id.clone(), (v.cidr_block.clone(), gw.to_string()));
        }
    }
    let ids: Vec<&str> = enis.iter().map(|e| e.instance_id.as_str()).collect();
    let eips = netdb::eips_of_instances(tx, &ids)?;
    let mut plan = VpcPlan { vpc_id: vpc_id.to_owned(), gateways, ..Default::default() };
    let mut metadata = HashMap::new();
    for eni in &enis {
        let Ok(ip) = eni.primary_ip.parse::<Ipv4Addr>() else { continue };
        let Some(inst) = db::get_instance(tx, eni.account_id, &eni.instance_id)? else { continue };
        plan.ports.push(Port { nic_id: eni.id.clone(), ip, mac: eni.mac.clone(), ifname: tap_name(&eni.id) });
        let mut public = eips.iter().find(|e| e.instance_id == inst.id).map(|e| e.ip_address.clone());
        if public.is_none() && !inst.public_ip.is_empty() {
            public = Some(inst.public_ip.clone());
        }
        if let Some(p) = public.as_deref().and_then(|p| p.parse::<Ipv4Addr>().ok()) {
            plan.nat.insert(p, ip);
        }
        let keys = db::public_keys_of(tx, &inst)?;
        let (vsw_cidr, gw) = vswitch_cidrs.get(&eni.vswitch_id).cloned().unwrap_or_default();
        metadata.insert(
            ip,
            InstanceMetadata {
                instance_id: inst.id.clone(),
                hostname: inst.host_name.clone(),
                region_id: inst.region_id.clone(),
                zone_id: inst.zone_id.clone(),
                private_ipv4: eni.primary_ip.clone(),
                eipv4: public.unwrap_or_default(),
                mac: eni.mac.clone(),
                vpc_id: vpc_id.to_owned(),
                vswitch_id: eni.vswitch_id.clone(),
                vpc_cidr_block: vpc_cidr.clone(),
                vswitch_cidr_block: vsw_cidr,
                image_id: inst.image_id.clone(),
                instance_type: inst.instance_type.clone(),
                owner_account_id: inst.account_id.to_string(),
                serial_number: inst.serial_number.clone(),
                gateway: gw,
                public_keys: keys,
                // The store keeps UserData as the API took it: base64 (validated on the way in).
                user_data: base64::engine::general_purpose::STANDARD
                    .decode(inst.user_data.trim())
                    .ok()
                    .filter(|u| !u.is_empty()),
            },
        );
    }
    let world = vpc_world(tx, vpc_id)?;
    plan.security = sg::ruleset(&world, &plan.ports);
    Ok(Some(Desired { plan, metadata }))
}

/// The security-group world of one VPC: its instances' interfaces, the groups they are in,
/// and the groups those groups' rules name as peers (a group peer matches its members here).
/// The data plane is compiled from it, and `feitian security-group evaluate` asks the pure
/// evaluator about it.
pub fn vpc_world(tx: &Transaction<'_>, vpc_id: &str) -> Result<World, MetaError> {
    let mut world = World::new();
    let mut group_ids = BTreeSet::new();
    for eni in db::enis_of_vpc(tx, vpc_id)?.into_iter().filter(|e| !e.instance_id.is_empty()) {
        let Ok(ip) = eni.primary_ip.parse::<Ipv4Addr>() else { continue };
        let groups = db::groups_of_eni(tx, &eni.id)?;
        group_ids.extend(groups.iter().cloned());
        world.add_nic(Nic { id: eni.id.clone(), owner: eni.account_id.to_string(), ip, groups });
    }
    let mut pending: Vec<String> = group_ids.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    while let Some(gid) = pending.pop() {
        if !seen.insert(gid.clone()) {
            continue;
        }
        let Some(g) = db::get_security_group_any_owner(tx, &gid)? else { continue };
        if let Some(name) = netdb::account_name(tx, g.account_id)? {
            names.insert(name, g.account_id.to_string());
        }
        let mut rules = Vec::new();
        for r in db::rules_of(tx, &gid)? {
            match feitian_ecs::security_groups::stored_rule(&r) {
                Ok(rule) => {
                    if let Peer::Group { group_id, .. } = &rule.peer {
                        pending.push(group_id.clone());
                    }
                    rules.push(rule);
                }
                Err(_) => {
                    tracing::error!(rule = %r.id, "a stored rule does not validate; it is left out of the data plane")
                }
            }
        }
        let inner_policy = if g.inner_policy.eq_ignore_ascii_case("drop") { Policy::Drop } else { Policy::Accept };
        world.add_group(Group { id: g.id.clone(), owner: g.account_id.to_string(), inner_policy, rules });
    }
    // A cross-account rule may name the owner by account name; the world knows accounts by id.
    for g in world.groups.values_mut() {
        for r in &mut g.rules {
            if let Peer::Group { owner_account, owner_id, .. } = &mut r.peer {
                if let Some(id) = owner_account.as_ref().and_then(|n| names.get(n)) {
                    *owner_id = Some(id.clone());
                    *owner_account = None;
                }
            }
        }
    }
    Ok(world)
}
