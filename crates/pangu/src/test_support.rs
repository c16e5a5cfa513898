//! A Pangu cluster for other crates' integration tests (feature `test-support`): a master in
//! the test process and chunkservers in *child processes*, so a test can `kill -9` one
//! (`Child::kill` sends SIGKILL) and start it again on the same directory.
//!
//! A chunkserver child is the test binary itself, run again as its ignored test
//! [`CHILD_TEST`] with the cluster's address, directory, rack and secret in its environment;
//! no other binary has to be built. Every test binary that starts a [`Cluster`] declares that
//! entry point, whose body is [`chunkserver_child`]:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! #[ignore = "the chunkserver process the other tests start and kill -9; not a test by itself"]
//! async fn chunkserver_process() {
//!     feitian_pangu::test_support::chunkserver_child().await;
//! }
//! ```
//!
//! A child also exits when its stdin (held by the parent) closes, so children never outlive
//! the test process, even one that panics or is killed itself; dropping a [`Cluster`] kills
//! and reaps its children and removes their directories.
//!
//! This is test code: a setup step that fails panics, which fails the calling test with the
//! step's name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feitian_meta::Store;
use tokio::sync::oneshot;

use crate::auth::Keyring;
use crate::chunkserver::{flow_for_repair_rate, DEFAULT_FLOW};
use crate::client::Pangu;
use crate::master::{self, Master, MasterConfig, MasterStatus};
use crate::node::{self, NodeConfig};

/// The name of the ignored test each test binary declares as the chunkserver child.
pub const CHILD_TEST: &str = "chunkserver_process";

/// What a child is told (unset when the binary runs as a normal test).
const ENV_MASTER: &str = "FEITIAN_TEST_CHUNKSERVER_MASTER";
const ENV_DIR: &str = "FEITIAN_TEST_CHUNKSERVER_DIR";
const ENV_RACK: &str = "FEITIAN_TEST_CHUNKSERVER_RACK";
const ENV_SECRET: &str = "FEITIAN_TEST_CHUNKSERVER_SECRET";

const MIB: u64 = 1024 * 1024;

/// The body of [`CHILD_TEST`]: a Pangu node that lives until its stdin closes (or SIGKILL).
/// Run without the cluster's environment (as a plain ignored test), it says so and returns.
pub async fn chunkserver_child() {
    let vars = [ENV_MASTER, ENV_DIR, ENV_RACK, ENV_SECRET].map(std::env::var);
    let [Ok(master), Ok(dir), Ok(rack), Ok(secret)] = vars else {
        eprintln!("{CHILD_TEST} only runs as a child of a test that starts a Cluster");
        return;
    };
    let config = NodeConfig {
        master,
        dir: PathBuf::from(dir),
        rack,
        listen: "127.0.0.1:0".parse().expect("address"),
        advertise: None,
        capacity_bytes: 1 << 34,
        // Repair copies at up to 256 MiB/s per server: fast enough for a test, yet paced.
        flow: flow_for_repair_rate(256 * MIB).unwrap_or(DEFAULT_FLOW),
        heartbeat: Duration::from_millis(200),
        scrub: None,
        secret: Keyring::parse(&secret).expect("the cluster secret"),
    };
    let _node = node::start(config, std::future::pending()).await.expect("the chunkserver starts");
    // The parent holds our stdin: when it goes (however it dies), so do we.
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
    std::process::exit(0);
}

/// A chunkserver child process; dropping it kills and reaps it.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// SIGKILL: no shutdown, no last heartbeat, connections reset.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9 the chunkserver");
        self.child.wait().expect("reap the chunkserver");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master in this process (on an in-memory control-plane store, serving HTTP on a
/// loopback port) and chunkserver `i` in a child process with its own directory, on rack
/// `rack-i`.
pub struct Cluster {
    pub master: Arc<Master>,
    master_addr: String,
    secret: String,
    // Declared before `dirs`: the children die before their directories are removed.
    servers: Vec<Option<ServerProcess>>,
    dirs: Vec<tempfile::TempDir>,
    _stop_master: oneshot::Sender<()>,
}

impl Cluster {
    /// A master and `servers` chunkserver processes (one rack each), replication `servers`,
    /// chunks of `chunk_size`, all live. Health is quick: a server silent for 1.5 s is dead,
    /// and the master plans every 100 ms.
    pub async fn start(servers: usize, chunk_size: u64) -> Cluster {
        let store = Store::open_in_memory().expect("store");
        let mut config = MasterConfig::new(servers);
        config.chunk_size = chunk_size;
        config.heartbeat_timeout = Duration::from_millis(1500);
        config.tick = Duration::from_millis(100);
        let master = Master::open(store, config).expect("master");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let master_addr = listener.local_addr().expect("address").to_string();
        let router = master::router(master.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (stop_master, stopped) = oneshot::channel::<()>();
        tokio::spawn(master.clone().run(async move {
            let _ = stopped.await;
        }));
        let secret = master.config().secret.to_text();
        let mut c =
            Cluster { master, master_addr, secret, servers: Vec::new(), dirs: Vec::new(), _stop_master: stop_master };
        for i in 0..servers {
            c.dirs.push(tempfile::tempdir().expect("temp dir"));
            c.servers.push(None);
            c.spawn(i);
        }
        c.wait("every chunkserver live", Duration::from_secs(30), |s| live(s) == servers).await;
        c
    }

    /// Starts chunkserver `i` (again) on its directory: a restart keeps its identity.
    pub fn spawn(&mut self, i: usize) {
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
            .env(ENV_MASTER, &self.master_addr)
            .env(ENV_DIR, self.dirs[i].path())
            .env(ENV_RACK, format!("rack-{i}"))
            .env(ENV_SECRET, &self.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a chunkserver process");
        self.servers[i] = Some(ServerProcess { child });
    }

    /// SIGKILLs chunkserver `i` and reaps it.
    pub fn kill9(&mut self, i: usize) {
        self.servers[i].take().expect("a running chunkserver").kill9();
    }

    /// A file client of this cluster, in process with its master.
    pub fn pangu(&self) -> Pangu {
        Pangu::in_process(self.master.clone())
    }

    /// Polls the master's status until `ok`, or fails the test at `deadline`.
    pub async fn wait(&self, what: &str, deadline: Duration, ok: impl Fn(&MasterStatus) -> bool) -> MasterStatus {
        let start = Instant::now();
        loop {
            let s = self.master.status();
            if ok(&s) {
                return s;
            }
            assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Chunkserver `i`'s directory (its replicas, identity and token).
    pub fn dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    /// Every chunkserver's directory, in server order.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path())
    }

    /// The directory of the chunkserver the master knows as `server`.
    pub fn dir_of(&self, server: u64) -> &Path {
        let s = self.master.status();
        let view = s.servers.iter().find(|v| v.id == server).expect("a known server");
        let i: usize = view.rack.trim_start_matches("rack-").parse().expect("rack-i");
        self.dir(i)
    }
}

/// How many chunkservers the master counts as live.
pub fn live(s: &MasterStatus) -> usize {
    s.servers.iter().filter(|v| v.live).count()
}

/// A master (its namespace in a store under `dir`) and one chunkserver beside it in the
/// same process, its replicas under `dir/chunks`, as `feitian up` starts them (replication
/// 1): for tests and benchmarks that need a real Pangu but no faults. Their tasks end with
/// the runtime. Returns the master and the chunkserver's directory.
pub async fn single_node(dir: &Path) -> (Arc<Master>, PathBuf) {
    let chunks = dir.join("chunks");
    std::fs::create_dir_all(&chunks).expect("the chunk directory");
    let store = Store::open(&dir.join("meta.db")).expect("the master's store");
    let master = Master::open(store, MasterConfig::new(1)).expect("master");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let master_addr = listener.local_addr().expect("address").to_string();
    let never = std::future::pending::<()>;
    tokio::spawn(crate::serve::serve(listener, master::router(master.clone()), crate::serve::DEFAULT_LIMITS, never()));
    tokio::spawn(master.clone().run(never()));
    let node = NodeConfig {
        master: master_addr,
        dir: chunks.clone(),
        rack: "local".into(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        advertise: None,
        capacity_bytes: 1 << 40,
        flow: DEFAULT_FLOW,
        heartbeat: Duration::from_secs(1),
        scrub: None,
        secret: master.config().secret.clone(),
    };
    node::start_beside(&master, node, never()).await.expect("the chunkserver");
    (master, chunks)
}
