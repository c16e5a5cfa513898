//! The storage kernel inside `feitian up` (the Pangu master, and by default one chunkserver)
//! and `feitian chunkserver`, which joins more.
//!
//! Every Pangu request is signed (`feitian_pangu::auth`). The first `feitian up` makes the
//! cluster secret, `DATA_DIR/pangu/cluster.key`, and the master's own key,
//! `DATA_DIR/pangu/master.key` (both 0600); a `feitian chunkserver` is given the cluster
//! secret's file with `--secret-file` (or `FEITIAN_PANGU_SECRET_FILE`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use feitian_meta::Store;
use feitian_pangu::auth::keyfile;
use feitian_pangu::chunkserver::flow_for_repair_rate;
use feitian_pangu::client::Pangu;
use feitian_pangu::master::{self, Master, MasterConfig};
use feitian_pangu::node::{self, NodeConfig};
use feitian_pangu::placement::ServerId;
use tokio::sync::watch;

use crate::config::PanguConfig;

/// How often chunkservers report to the master.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often the embedded chunkserver re-verifies every replica.
const SCRUB: Duration = Duration::from_secs(6 * 3600);
/// The environment variable `feitian chunkserver` reads the secret's path from, when
/// `--secret-file` is not given.
pub const SECRET_FILE_ENV: &str = "FEITIAN_PANGU_SECRET_FILE";

/// The cluster secret's file under a `feitian up`'s data directory.
pub fn secret_file(data_dir: &Path) -> PathBuf {
    data_dir.join("pangu").join("cluster.key")
}

/// A running storage kernel.
pub struct Storage {
    pub pangu: Pangu,
    /// Where chunkservers reach the master.
    pub master_addr: SocketAddr,
    pub embedded_chunkserver: Option<String>,
}

/// Starts the master on `listen` (its HTTP routes for chunkservers) and, unless configured
/// otherwise, one chunkserver in this process. Everything stops when `stop` turns true.
pub async fn start(
    config: &PanguConfig,
    store: Store,
    data_dir: &Path,
    listen: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Storage> {
    config.validate()?;
    let secret_file = secret_file(data_dir);
    let (secret, created) = keyfile::load_or_create_keyring(&secret_file)?;
    if created {
        tracing::info!(path = %secret_file.display(), "made the pangu cluster secret");
    }
    let issuer = keyfile::load_or_create_issuer(&data_dir.join("pangu").join("master.key"))?;
    let mut mc = MasterConfig::new(config.replication);
    mc.heartbeat_timeout = Duration::from_secs(config.heartbeat_timeout_secs);
    mc.secret = secret.clone();
    mc.issuer = issuer;
    let master: Arc<Master> = Master::open(store, mc).context("cannot load the pangu namespace")?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} for the pangu master; is another feitian using it? pick another with --pangu-listen")
    })?;
    let master_addr = listener.local_addr()?;
    let router = master::router(master.clone());
    tokio::spawn({
        let mut stop = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        feitian_pangu::serve::serve(listener, router, feitian_pangu::serve::DEFAULT_LIMITS, shutdown)
    });
    tokio::spawn({
        let mut stop = stop.clone();
        master.clone().run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    });
    let mut embedded = None;
    if config.embedded_chunkserver {
        let dir = data_dir.join("pangu").join("chunks");
        give_token(&master, &dir)?;
        let node = node::start_beside(
            &master,
            NodeConfig {
                master: master_addr.to_string(),
                dir,
                rack: config.rack.clone(),
                listen: "127.0.0.1:0".parse()?,
                advertise: None,
                capacity_bytes: config.capacity_gib << 30,
                flow: flow_for_repair_rate(config.repair_rate_mib << 20)?,
                heartbeat: HEARTBEAT,
                scrub: Some(SCRUB),
                secret: secret.clone(),
            },
            {
                let mut stop = stop.clone();
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                }
            },
        )
        .await
        .context("cannot start the embedded chunkserver")?;
        embedded = Some(node.addr.clone());
    }
    if embedded.is_none() {
        tracing::info!(
            "chunkservers join with `feitian chunkserver --master {master_addr} --secret-file {}` (or a copy of it)",
            secret_file.display()
        );
    }
    Ok(Storage { pangu: Pangu::in_process(master), master_addr, embedded_chunkserver: embedded })
}

/// The embedded chunkserver's data directory is this process's own, and this process is its
/// master: it is given its token here if it lacks the right one (it registered before servers
/// had tokens, or `master.key` was replaced), instead of registering as a new server, which
/// would throw its replicas away.
fn give_token(master: &Master, dir: &Path) -> anyhow::Result<()> {
    let id = std::fs::read_to_string(dir.join(node::ID_FILE)).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let Some(id) = id else { return Ok(()) };
    let token_file = dir.join(node::TOKEN_FILE);
    let token = master.server_token(ServerId(id));
    if keyfile::read_token(&token_file).ok().flatten().as_ref() != Some(&token) {
        keyfile::write_token(&token_file, &token)?;
        tracing::info!(server = id, "gave the embedded chunkserver its identity token");
    }
    Ok(())
}

/// `feitian chunkserver`: one more chunkserver for a master, until Ctrl-C or SIGTERM.
#[derive(clap::Args)]
pub struct ChunkserverArgs {
    /// The master's address (`feitian up` prints it; default 127.0.0.1:8101).
    #[arg(long, value_name = "ADDR")]
    pub master: String,
    /// Where this chunkserver keeps its replicas.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The failure domain: replicas of a chunk go to different racks.
    #[arg(long, value_name = "NAME")]
    pub rack: String,
    /// Where to serve chunk reads and writes.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The host:port others reach it at, if not the listening address.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// The bytes it may store, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = 1024)]
    pub capacity_gib: u64,
    /// The re-replication ceiling, in MiB/s.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub repair_rate_mib: u64,
    /// How often every replica is re-verified, in seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 6 * 3600)]
    pub scrub_interval_secs: u64,
    /// The cluster secret: a copy of the master's DATA_DIR/pangu/cluster.key, mode 0600
    /// [default: $FEITIAN_PANGU_SECRET_FILE].
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

pub fn run_chunkserver(a: ChunkserverArgs) -> anyhow::Result<()> {
    if a.capacity_gib == 0 || a.repair_rate_mib == 0 {
        anyhow::bail!("--capacity-gib and --repair-rate-mib must be above 0");
    }
    let Some(secret_file) = a.secret_file.clone().or_else(|| std::env::var_os(SECRET_FILE_ENV).map(PathBuf::from))
    else {
        anyhow::bail!(
            "a chunkserver needs the cluster secret: --secret-file FILE (or {SECRET_FILE_ENV}), a copy of the \
             master's DATA_DIR/pangu/cluster.key"
        );
    };
    let secret = keyfile::load_keyring(&secret_file)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        let node = node::start(
            NodeConfig {
                master: a.master.clone(),
                dir: a.data_dir.clone(),
                rack: a.rack.clone(),
                listen: a.listen,
                advertise: a.advertise,
                capacity_bytes: a.capacity_gib << 30,
                flow: flow_for_repair_rate(a.repair_rate_mib << 20)?,
                heartbeat: HEARTBEAT,
                scrub: (a.scrub_interval_secs > 0).then(|| Duration::from_secs(a.scrub_interval_secs)),
                secret,
            },
            {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            },
        )
        .await?;
        println!(
            "chunkserver {} serving at {} (rack {}, data {}), master {}",
            node.server_id,
            node.addr,
            a.rack,
            a.data_dir.display(),
            a.master
        );
        crate::signals::shutdown_signal().await;
        let _ = tx.send(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::Ok(())
    })
}
