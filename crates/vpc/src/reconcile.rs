//! The VPC reconciler: moves new VPCs and vSwitches from `Pending` to `Available`.
//!
//! A VPC or vSwitch needs nothing of a host until an instance uses it: a host realizes a
//! VPC's network (namespace, bridge, gateways) when its first instance arrives, from the
//! plan the control plane computes (`feitian-planner`). So the records settle as soon as
//! they are written, as on Alibaba Cloud a few seconds after creation. This runs in the
//! control plane on every change (woken by the service) and every second, so a restart
//! finishes whatever a crash left `Pending`.

use crate::Network;
use feitian_meta::{vpc, vswitch, MetaError};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(net: Arc<Network>) {
    loop {
        let done = net
            .store
            .write_async(|tx| {
                let mut ids = vpc::activate_pending_vpcs(tx)?;
                ids.extend(vswitch::activate_pending_vswitches(tx)?);
                Ok::<_, MetaError>(ids)
            })
            .await;
        match done {
            Ok(ids) if !ids.is_empty() => tracing::debug!(?ids, "network objects are Available"),
            Ok(_) => {}
            Err(e @ MetaError::TaskFailed(_)) => tracing::error!(error = %e, "network reconciler task failed"),
            Err(e) => tracing::warn!(error = %e, "network reconciler: store failed; retrying"),
        }
        tokio::select! {
            _ = net.wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
}
