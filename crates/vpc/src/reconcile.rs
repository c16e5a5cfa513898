//! The network reconciler: drives what the control plane decided toward the host, then
//! writes back what it observed. Today feitian has no host data plane yet (bridges,
//! namespaces and nftables come with the real-instances issue), so realizing a VPC or a
//! vSwitch needs no host work and the reconciler moves them from `Pending` to `Available`.
//! It runs on every change (woken by the services) and every second, so a restart finishes
//! whatever a crash left `Pending`.

use crate::Network;
use feitian_meta::network as db;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(net: Arc<Network>) {
    loop {
        let store = net.store.clone();
        let done =
            tokio::task::spawn_blocking(move || store.write::<_, feitian_meta::MetaError>(db::activate_pending)).await;
        match done {
            Ok(Ok(ids)) if !ids.is_empty() => tracing::debug!(?ids, "network objects are Available"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "network reconciler: store failed; retrying"),
            Err(e) => tracing::error!(error = %e, "network reconciler task failed"),
        }
        tokio::select! {
            _ = net.wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
}
