//! `feitian-bench-nbd`: feitian's per-disk NBD server on its own, for `scripts/bench disk`
//! (bench/disk.py), which drives it with fio beside `qemu-nbd`.
//!
//! It serves one disk on `DIR/NAME.sock` until SIGTERM or SIGINT, unthrottled (no QoS
//! limits: the benchmark measures the server and its backend, not Alibaba's ceilings).
//! The backend is a flag; adding one is one arm of `open_backend`.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use feitian_disk::{BlockDevice, FileDevice, NbdServer, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Backend {
    /// `FileDevice`: the raw file at --path (pwrite, fdatasync on flush), as qemu-nbd serves it.
    File,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "file")]
    backend: Backend,
    /// The backend's storage: for `file`, an existing raw image.
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
}

fn open_backend(a: &Args) -> anyhow::Result<Arc<dyn BlockDevice>> {
    Ok(match a.backend {
        Backend::File => Arc::new(FileDevice::open(&a.path).with_context(|| format!("open {}", a.path.display()))?),
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let device = open_backend(&a)?;
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
