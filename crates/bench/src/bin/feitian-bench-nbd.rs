//! `feitian-bench-nbd`: feitian's per-disk NBD server on its own, for `scripts/bench disk`
//! (bench/disk.py), which drives it with fio beside `qemu-nbd`.
//!
//! It serves one disk on `DIR/NAME.sock` until SIGTERM or SIGINT, unthrottled (no QoS
//! limits: the benchmark measures the server and its backend, not Alibaba's ceilings).
//! The backend is a flag; adding one is one arm of `open_backend`.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use feitian_disk::{BlockDevice, FileDevice, NbdServer, RafDevice, ServerConfig};
use feitian_pangu::client::Pangu;
use feitian_raf::pangu::PanguStore;
use feitian_raf::{LogStore, Raf, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Backend {
    /// `FileDevice`: the raw file at --path (pwrite, fdatasync on flush), as qemu-nbd serves it.
    File,
    /// A RAF volume (the product's disk) on a Pangu of one chunkserver beside its master, as
    /// `feitian up` runs it, with its store and chunks under the directory --path: every
    /// acknowledged write is written on its replica, and fsynced at the next flush.
    Raf,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "file")]
    backend: Backend,
    /// The backend's storage: for `file`, an existing raw image; for `raf`, an empty directory.
    #[arg(long)]
    path: PathBuf,
    /// Directory of the socket.
    #[arg(long)]
    socket_dir: PathBuf,
    /// Export name; the socket is SOCKET_DIR/NAME.sock.
    #[arg(long, default_value = "d-bench")]
    name: String,
    /// The uid allowed to connect besides root and ourselves.
    #[arg(long, default_value_t = 0)]
    client_uid: u32,
    /// For `raf`: the volume's size in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    size: u64,
}

async fn open_backend(a: &Args) -> anyhow::Result<Arc<dyn BlockDevice>> {
    Ok(match a.backend {
        Backend::File => Arc::new(FileDevice::open(&a.path).with_context(|| format!("open {}", a.path.display()))?),
        Backend::Raf => Arc::new(RafDevice::new(Arc::new(raf_volume(a).await?))),
    })
}

/// A master (its namespace in a store under `--path`) and one chunkserver beside it, as
/// `feitian up` starts them, and the volume `--name` on them.
async fn raf_volume(a: &Args) -> anyhow::Result<Raf> {
    let (master, _) = feitian_pangu::test_support::single_node(&a.path).await;
    let store = PanguStore::new(Pangu::in_process(master));
    match store.create(&a.name, a.size, None).await {
        Ok(()) | Err(StoreError::Exists(_)) => {}
        Err(e) => anyhow::bail!("cannot create volume {}: {e}", a.name),
    }
    Ok(Raf::open(Arc::new(store), &a.name, feitian_raf::Config::default()).await?)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let device = open_backend(&a).await?;
        let config =
            ServerConfig { dir: a.socket_dir.clone(), name: a.name.clone(), client_uid: a.client_uid, limits: None };
        let server = NbdServer::start(config, device)?;
        println!("{}", server.socket_path().display());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        server.shutdown().await;
        anyhow::Ok(())
    })
}
