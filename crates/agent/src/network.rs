//! The network agent: drives each VPC's namespace on this host toward the control plane's
//! [`VpcPlan`] (taps for its instances' interfaces, vSwitch gateways, security groups, EIP
//! NAT) and serves the metadata service inside it.
//!
//! A VPC is realized on the host while it holds an instance, and removed with its last one.
//! Every pass asks for each VPC's whole plan and applies it only when the namespace it makes
//! differs from the last one applied (after a restart, the first pass applies everything:
//! every step is idempotent, and what a crash left behind is adopted or removed).
//!
//! Shutdown policy (`feitian up` stopping on SIGTERM or Ctrl-C): the instance reconciler
//! stops every guest first, then [`NetworkAgent::teardown`] removes every namespace, tap,
//! bridge and nftables table this feitian made, and its host route. The control plane still
//! says which instances should run, so the next `feitian up` boots them again.

use crate::AgentError;
use feitian_agent_api::{ControlPlane, InstancePlan, Nudges, VpcPlan};
use feitian_hostnet::host::{tap_name, HostNet, VpcNamespace};
use feitian_hostnet::metadata::{self, Directory};
use feitian_hostnet::sg::{self, Port};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Served {
    directory: Directory,
    task: tokio::task::JoinHandle<()>,
}

pub struct NetworkAgent {
    control: Arc<dyn ControlPlane>,
    host: Arc<HostNet>,
    nudges: Nudges,
    applied: Mutex<HashMap<String, VpcNamespace>>,
    served: Mutex<HashMap<String, Served>>,
    /// One host change at a time: `ip` and `nft` calls on one namespace must not interleave.
    busy: tokio::sync::Mutex<()>,
    /// Set by [`NetworkAgent::teardown`]: nothing may be made on the host any more.
    halted: AtomicBool,
}

fn err(e: feitian_hostnet::NetError) -> AgentError {
    AgentError::Network(e.to_string())
}

/// The namespace that realizes `plan` on this host: taps named after the interfaces, the
/// security groups compiled to nftables for them.
pub fn namespace(plan: &VpcPlan) -> VpcNamespace {
    let ports: Vec<Port> = plan.nics.iter().map(|n| Port::new(&n.nic_id, n.ip, &n.mac, &tap_name(&n.nic_id))).collect();
    VpcNamespace {
        vpc_id: plan.vpc_id.clone(),
        gateways: plan.gateways.clone(),
        security: sg::ruleset(&plan.security, &ports),
        ports,
        nat: plan.nat.clone(),
    }
}

impl NetworkAgent {
    pub fn new(control: Arc<dyn ControlPlane>, host: Arc<HostNet>, nudges: Nudges) -> Arc<NetworkAgent> {
        Arc::new(NetworkAgent {
            control,
            host,
            nudges,
            applied: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            busy: tokio::sync::Mutex::new(()),
            halted: AtomicBool::new(false),
        })
    }

    pub fn host(&self) -> &HostNet {
        &self.host
    }

    /// Runs host commands (`ip`, `nft`) off the async threads.
    async fn on_host<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HostNet) -> Result<T, feitian_hostnet::NetError> + Send + 'static,
    ) -> Result<T, AgentError> {
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || f(&host))
            .await
            .map_err(|e| AgentError::Network(format!("host network task failed: {e}")))?
            .map_err(err)
    }

    /// Sets up the public namespace and the host's route to the EIP pool.
    pub async fn start(&self) -> Result<(), AgentError> {
        self.on_host(|h| h.ensure_public()).await
    }

    /// Brings the instance's VPC up to date now (before the instance boots), and returns the
    /// namespace and tap its guest attaches to.
    pub async fn attach(&self, plan: &InstancePlan) -> Result<(String, String), AgentError> {
        self.sync_vpc(&plan.vpc_id).await?;
        Ok((self.host.vpc_ns(&plan.vpc_id), tap_name(&plan.nic.id)))
    }

    /// Asks for one VPC's plan and applies it if it changed.
    pub async fn sync_vpc(&self, vpc_id: &str) -> Result<(), AgentError> {
        let _guard = self.busy.lock().await;
        if self.halted.load(Ordering::SeqCst) {
            return Err(AgentError::Network("feitian is shutting down: the host network is being removed".into()));
        }
        let plan = self.control.vpc_plan(vpc_id.to_owned()).await?;
        self.apply(vpc_id, plan).await
    }

    async fn apply(&self, vpc_id: &str, plan: Option<VpcPlan>) -> Result<(), AgentError> {
        let Some(plan) = plan else {
            // No instance left: the VPC leaves the host.
            if self.applied.lock().remove(vpc_id).is_some() || self.host.realized_vpcs().iter().any(|v| v == vpc_id) {
                if let Some(s) = self.served.lock().remove(vpc_id) {
                    s.task.abort();
                }
                let id = vpc_id.to_owned();
                self.on_host(move |h| h.remove_vpc(&id)).await?;
                tracing::info!(vpc = %vpc_id, "VPC removed from the host");
            }
            return Ok(());
        };
        let ns = namespace(&plan);
        let before = self.applied.lock().get(vpc_id).cloned();
        if before.as_ref() != Some(&ns) {
            let n = ns.clone();
            self.on_host(move |h| h.update(before.as_ref(), &n)).await?;
            tracing::debug!(vpc = %vpc_id, ports = ns.ports.len(), nat = ns.nat.len(), "VPC applied on the host");
            self.applied.lock().insert(vpc_id.to_owned(), ns);
        }
        let metadata: HashMap<_, _> = plan.metadata.into_iter().collect();
        let existing = self.served.lock().get(vpc_id).map(|s| (s.directory.clone(), s.task.is_finished()));
        match existing {
            Some((dir, false)) => *dir.write() = metadata,
            _ => {
                let ns = self.host.vpc_ns(vpc_id);
                let listener = self.on_host(move |_| metadata::bind_in(&ns)).await?;
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
    pub async fn pass(&self) -> Result<(), AgentError> {
        if self.halted.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut all: BTreeSet<String> = self.control.vpcs().await?.into_iter().collect();
        all.extend(self.host.realized_vpcs());
        all.extend(self.applied.lock().keys().cloned());
        for vpc in all {
            if let Err(e) = self.sync_vpc(&vpc).await {
                tracing::warn!(vpc = %vpc, error = %e, "cannot bring the VPC's host network up to date; retrying");
            }
        }
        Ok(())
    }

    /// Runs forever: on every nudge and every second.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "network agent pass failed; retrying");
            }
            tokio::select! {
                _ = self.nudges.network() => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    /// Removes everything this feitian made on the host. Guests must be stopped first.
    pub async fn teardown(&self) -> Result<(), AgentError> {
        let _guard = self.busy.lock().await;
        self.halted.store(true, Ordering::SeqCst);
        for (_, s) in self.served.lock().drain() {
            s.task.abort();
        }
        self.applied.lock().clear();
        self.on_host(|h| h.teardown()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feitian_agent_api::NicAttachment;
    use std::net::Ipv4Addr;

    #[test]
    fn a_plan_becomes_this_hosts_namespace() {
        let ip = Ipv4Addr::new(192, 168, 1, 10);
        let mut security = feitian_secgroup::World::new();
        security.add_nic(feitian_secgroup::Nic { id: "eni-1".into(), owner: "1".into(), ip, groups: vec![] });
        let plan = VpcPlan {
            vpc_id: "vpc-1".into(),
            gateways: vec!["192.168.1.253/24".parse().expect("net")],
            nics: vec![NicAttachment { nic_id: "eni-1".into(), ip, mac: "00:16:3e:00:00:01".into() }],
            nat: [(Ipv4Addr::new(198, 18, 0, 2), ip)].into(),
            security,
            metadata: Default::default(),
        };
        let ns = namespace(&plan);
        assert_eq!(ns.vpc_id, "vpc-1");
        assert_eq!(ns.ports, vec![Port::new("eni-1", ip, "00:16:3e:00:00:01", &tap_name("eni-1"))]);
        assert_eq!(ns.nat, plan.nat);
        assert_eq!(ns.gateways, plan.gateways);
        // The security groups are compiled for exactly these ports.
        assert_eq!(ns.security, sg::ruleset(&plan.security, &ns.ports));
        assert!(ns.security.contains(&tap_name("eni-1")));
    }
}
