//! `feitian up`: one process serving a whole single-node region.

use crate::accounts::{key_json, open_store, set_mode, CREDENTIALS_FILE};
use crate::config::Config;
use crate::keys::StoreKeys;
use anyhow::{bail, Context};
use feitian_api::{edge, serve, Authenticator, Edge, Registry};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Takes the data directory's lock so that two `feitian up` never share one directory.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("feitian.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another feitian is already running on {}; stop it first or pick another --data-dir", data_dir.display());
    }
    Ok(f)
}

fn root_key_from_env() -> anyhow::Result<Option<(String, String)>> {
    let id = std::env::var("FEITIAN_ROOT_ACCESS_KEY_ID").ok().filter(|s| !s.is_empty());
    let secret = std::env::var("FEITIAN_ROOT_ACCESS_KEY_SECRET").ok().filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(i), Some(s)) => Ok(Some((i, s))),
        (None, None) => Ok(None),
        _ => bail!("set both FEITIAN_ROOT_ACCESS_KEY_ID and FEITIAN_ROOT_ACCESS_KEY_SECRET, or neither"),
    }
}

/// File descriptors kept for everything but edge connections: the store, chunk files, the
/// chunkservers' and agents' sockets, refused connections being answered.
const FD_HEADROOM: u64 = 512;

/// Lowers `wanted` edge connections to what the open-files limit allows (raising the soft
/// limit toward the hard one first), so that a flood meets the connection cap, not `EMFILE`:
/// with no descriptor left, nothing can be accepted, `/healthz` included. `(connections,
/// the soft limit)`.
fn fit_connections(wanted: usize) -> (usize, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (wanted, libc::RLIM_INFINITY);
    }
    let need = wanted as u64 + FD_HEADROOM;
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        let raised = libc::rlimit { rlim_cur: need.min(lim.rlim_max), rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own; only the soft limit moves, within the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= need {
        return (wanted, lim.rlim_cur);
    }
    let fit = lim.rlim_cur.saturating_sub(FD_HEADROOM).max(lim.rlim_cur / 2).max(1);
    (usize::try_from(fit).unwrap_or(wanted).min(wanted), lim.rlim_cur)
}

/// The regions of the start banner, home first: `region cn-hangzhou (zones …)`, or
/// `regions cn-hangzhou (zones …) and cn-shanghai (zones …); OSS in cn-hangzhou` when there
/// are several (OSS answers in the home region only: docs/regions.md).
fn serving_regions(catalog: &feitian_region::Catalog) -> String {
    let each: Vec<String> = catalog
        .regions
        .iter()
        .map(|r| {
            let zones: Vec<&str> = r.zones.iter().map(|z| z.id.as_str()).collect();
            format!("{} (zones {})", r.id, zones.join(", "))
        })
        .collect();
    match each.as_slice() {
        [one] => format!("region {one}"),
        [init @ .., last] => {
            format!("regions {} and {last}; OSS in {}", init.join(", "), catalog.default_region().id)
        }
        [] => "no region".to_owned(),
    }
}

/// Wires every product into one registry.
pub fn registry(ecs: Arc<feitian_ecs::Ecs>, network: Arc<feitian_vpc::Network>) -> Registry {
    let mut r = Registry::default();
    feitian_ecs::register(&mut r, ecs);
    feitian_vpc::register_vpc_api(&mut r, network.clone());
    feitian_vpc::register_ecs_api(&mut r, network);
    r
}

pub fn run(data_dir: &Path, listen: &str, pangu_listen: &str, config: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let catalog = Arc::new(config.catalog()?);
    let eip_pool = config.eip_pool()?;
    let store = open_store(data_dir)?;
    store.set_quotas(config.quotas()?);
    let _lock = lock_data_dir(data_dir)?;
    let env_key = root_key_from_env()?;
    let (root, created) = store.ensure_root(env_key.as_ref().map(|(i, s)| (i.as_str(), s.as_str())))?;
    let creds_path = data_dir.join(CREDENTIALS_FILE);
    if let Some(key) = &created {
        let tmp = data_dir.join(".credentials.json.tmp");
        std::fs::write(&tmp, format!("{}\n", key_json(key)))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        set_mode(&tmp, 0o600)?;
        std::fs::rename(&tmp, &creds_path)?;
    }

    // The host contract, in process: the services nudge the host's agent when its plans
    // change; the agent asks the planner for them and reports back to it.
    let nudges = feitian_agent_api::Nudges::default();
    let planner: Arc<dyn feitian_agent_api::ControlPlane> = feitian_planner::Planner::new(store.clone());
    let network = Arc::new(feitian_vpc::Network {
        store: store.clone(),
        catalog: catalog.clone(),
        eip_pool,
        wake: Arc::new(tokio::sync::Notify::new()),
        nudges: nudges.clone(),
    });
    let ecs = Arc::new(feitian_ecs::Ecs {
        store: store.clone(),
        catalog: catalog.clone(),
        eip_pool,
        nudges: nudges.clone(),
        host: std::sync::OnceLock::new(),
        admission: config.compute.admission(),
    });
    let registry = registry(ecs.clone(), network.clone());
    let keys: Arc<dyn feitian_api::KeyStore> = Arc::new(StoreKeys::new(store.clone()));
    config.pangu.validate()?;
    config.compute.validate()?;
    config.edge.validate()?;
    let mut limits = config.edge.limits();
    let (fit, open_files) = fit_connections(limits.max_connections);
    if fit < limits.max_connections {
        println!(
            "edge: at most {fit} connections, not {}: the open-files limit is {open_files} (raise it with `ulimit -n`)",
            limits.max_connections
        );
        limits.max_connections = fit;
        limits.max_connections_per_client = limits.max_connections_per_client.min(fit);
    }

    // Made on the first start, reused after: the certificate clients trust must not change.
    let ca = crate::ca::load(data_dir)?;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}; is another program using it? pick another with --listen")
        })?;
        let addr = listener.local_addr()?;
        let tls = feitian_api::tls::TlsEdge::new(ca, &[addr.ip()]).context("cannot set up HTTPS on the edge")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let storage = crate::storage::start(&config.pangu, store.clone(), data_dir, pangu_listen, stop_rx).await?;
        let disk_host = crate::disks::host(storage.pangu.clone());
        let compute = {
            let mut out = std::io::stdout();
            let servers = Arc::new(crate::disks::Servers {
                host: disk_host.clone(),
                enforce_limits: config.disks.enforce_limits,
            });
            crate::compute::start(&config.compute, data_dir, eip_pool, planner.clone(), nudges.clone(), servers, &mut out)
                .await?
        };
        // Everything after the host networking was made: a failure here must still remove it.
        let mut started: Option<Arc<feitian_agent::InstanceReconciler>> = None;
        let served: anyhow::Result<()> = async {
            let _ = ecs.host.set(feitian_agent::HostAgent::new(compute.driver.clone()));
            {
                let mut out = std::io::stdout();
                let (base, debian) = (compute.image.as_ref(), compute.debian_image.as_ref());
                crate::disks::prepare_images(&disk_host, base, debian, &mut out).await?;
            }
            let blobs = feitian_oss::blobs::Blobs::new(storage.pangu.clone(), store.clone());
            blobs
                .sweep()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reclaim unreferenced object files: {}", e.message))?;
            let oss =
                feitian_oss::service::Oss::new(store.clone(), keys.clone(), catalog.default_region().clone(), blobs);
            let blocks = Arc::new(crate::snapshots::SystemBlocks::open(oss.clone()).await?);
            let image_tasks =
                crate::image_tasks::ImageTasks::new(store.clone(), oss.clone(), blocks.clone(), data_dir);
            let edge = Edge::with_objects(registry, Authenticator::new(keys), oss, &limits);
            let mut out = std::io::stdout().lock();
            writeln!(out, "feitian {} is serving {}", env!("CARGO_PKG_VERSION"), serving_regions(&catalog))?;
            writeln!(out, "endpoint: http://{addr}  (also an HTTP proxy for *.aliyuncs.com host names)")?;
            writeln!(
                out,
                "https:    https://{addr} on the same port (and CONNECT tunnels to *.aliyuncs.com:443), certificates from \
                 feitian's CA in {}",
                crate::ca::dir(data_dir).display()
            )?;
            writeln!(
                out,
                "          trust it: `feitian ca --export ca.pem`, then SSL_CERT_FILE=ca.pem (Go, aliyun CLI), \
                 REQUESTS_CA_BUNDLE=ca.pem (Python requests), NODE_EXTRA_CA_CERTS=ca.pem (Node)"
            )?;
            writeln!(out, "data dir: {}", data_dir.display())?;
            match &created {
                Some(key) => {
                    writeln!(
                        out,
                        "root account {}: AccessKey pair (shown once; also in {}):",
                        root.id,
                        creds_path.display()
                    )?;
                    writeln!(out, "{}", key_json(key))?;
                }
                None => writeln!(out, "root account {}: AccessKey pair in {}", root.id, creds_path.display())?,
            }
            writeln!(
                out,
                "storage: pangu master at {} (replication {}), {}",
                storage.master_addr,
                config.pangu.replication,
                match &storage.embedded_chunkserver {
                    Some(a) => format!("embedded chunkserver at {a}"),
                    None => format!(
                        "no embedded chunkserver (join some with `feitian chunkserver --master {} --secret-file {}`)",
                        storage.master_addr,
                        crate::storage::secret_file(data_dir).display()
                    ),
                }
            )?;
            writeln!(out, "{}", compute.summary)?;
            let policy = config.compute.admission();
            match compute.driver.capacity() {
                Ok(c) => writeln!(
                    out,
                    "admission: host of {} CPUs and {} MiB ({} MiB free now); guests get up to {} vCPUs (overcommit {}) \
                     and {} MiB ({} MiB kept for the host, overcommit {})",
                    c.vcpus,
                    c.memory_mib,
                    c.memory_available_mib,
                    (f64::from(c.vcpus) * policy.vcpu_overcommit).floor(),
                    policy.vcpu_overcommit,
                    (c.memory_mib.saturating_sub(policy.memory_reserve_mib) as f64 * policy.memory_overcommit).floor(),
                    policy.memory_reserve_mib,
                    policy.memory_overcommit
                )?,
                Err(e) => writeln!(out, "admission: the host cannot measure itself ({e}); no instance will be admitted")?,
            }
            out.flush()?;
            drop(out);
            tokio::spawn(feitian_vpc::reconcile::run(network));
            if let Some(net) = &compute.net {
                tokio::spawn(net.clone().run());
            }
            let volumes: Arc<dyn feitian_agent_api::VolumeService> = disk_host.clone();
            let disks = feitian_agent::disks::DiskReconciler::new(
                planner.clone(),
                compute.driver.clone(),
                volumes,
                blocks.clone(),
                nudges.clone(),
            );
            tokio::spawn(disks.run());
            tokio::spawn(image_tasks.run(std::time::Duration::from_secs(1)));
            tokio::spawn(crate::snapshots::run_sweeper(
                store.clone(),
                blocks.clone(),
                std::time::Duration::from_secs(5),
            ));
            let snapshots = feitian_agent::snapshots::SnapshotReconciler::new(
                planner.clone(),
                disk_host.clone(),
                blocks,
                nudges.clone(),
                feitian_agent::snapshots::UploadConfig::default(),
            );
            tokio::spawn(snapshots.run());
            tokio::spawn(feitian_ecs::auto_snapshot_scheduler::run(
                ecs.clone(),
                feitian_ecs::auto_snapshot_scheduler::system_clock(),
            ));
            let reconciler =
                feitian_agent::InstanceReconciler::new(planner, compute.driver.clone(), nudges, compute.net.clone());
            tokio::spawn(reconciler.clone().run());
            started = Some(reconciler);
            tracing::info!(%addr, ?limits, "serving");
            // Connections are capped and timed there (and TCP_NODELAY set).
            serve::serve_with_tls(
                listener,
                limits,
                Some(tls),
                move |req| edge::handle(edge.clone(), req),
                crate::signals::shutdown_signal(),
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        let _ = stop_tx.send(true);
        if let Some(net) = &compute.net {
            // The shutdown policy, also after a failed start: guests stop, then everything made
            // on the host goes.
            println!("stopping instances and removing host networking");
            if let Some(reconciler) = &started {
                reconciler.stop_all().await;
            }
            if let Err(e) = net.teardown().await {
                tracing::warn!(error = %e, "host networking was not fully removed");
            }
        }
        // Guests are stopped (QEMU first: docs/disks.md); then every volume is closed with a
        // checkpoint, so the next start replays little.
        disk_host.stop_all().await;
        served?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tracing::info!("stopped cleanly");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::serving_regions;
    use feitian_region::Catalog;

    #[test]
    fn the_banner_names_every_region_and_where_oss_is() {
        let mut c = Catalog::default();
        assert_eq!(
            serving_regions(&c),
            "regions cn-hangzhou (zones cn-hangzhou-h, cn-hangzhou-i, cn-hangzhou-j, cn-hangzhou-k) and \
             cn-shanghai (zones cn-shanghai-e, cn-shanghai-f, cn-shanghai-g, cn-shanghai-l); OSS in cn-hangzhou"
        );
        c.regions.truncate(1);
        c.regions[0].zones.truncate(1);
        assert_eq!(serving_regions(&c), "region cn-hangzhou (zones cn-hangzhou-h)");
    }
}
