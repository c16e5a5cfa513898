//! `feitian image import FILE`: a disk file on this machine becomes a custom image, with a
//! progress bar, for people who have a disk file and no SDK script (issue 16).
//!
//! It is ImportImage without the upload: the command checks the file with `qemu-img info`,
//! records the import in the store exactly as the API does
//! (`feitian_ecs::image_tasks::record_import`, the source being the file's absolute path
//! instead of an OSS object), and follows the task the running `feitian up`'s worker does
//! (`image_tasks.rs`) until it ends. The server reads the file where it is, so the file must
//! stay until the import is done.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use feitian_ecs::image_tasks::{record_import, ImportRequest, Source};
use feitian_meta::image_task::{self, TaskStatus};
use indicatif::{ProgressBar, ProgressStyle};

use crate::accounts::open_store;
use crate::config::Config;

/// What the command was given.
pub struct ImportArgs<'a> {
    pub file: &'a Path,
    pub name: Option<String>,
    pub account: &'a str,
    pub region: Option<&'a str>,
    pub platform: Option<String>,
    pub config: Option<&'a Path>,
}

/// Whether a `feitian up` holds the data directory (its lock is taken).
fn server_running(data_dir: &Path) -> anyhow::Result<bool> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join("feitian.lock");
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else { return Ok(false) };
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if free {
        // SAFETY: as above; we release the lock we just took.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    Ok(!free)
}

/// The file's format as the API names it, from `qemu-img info`.
fn probe(file: &Path) -> anyhow::Result<(String, u64)> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(file)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run qemu-img (apt-get install qemu-utils): {e}"))?;
    if !out.status.success() {
        bail!("qemu-img cannot read {}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("qemu-img info gave no JSON")?;
    let format = match v["format"].as_str().unwrap_or("") {
        "raw" => "raw",
        "qcow2" => "qcow2",
        "vpc" => "vhd",
        other => bail!(
            "{} is {other:?}: feitian imports RAW, QCOW2 and VHD files (convert it with qemu-img)",
            file.display()
        ),
    };
    Ok((format.to_owned(), v["virtual-size"].as_u64().unwrap_or(0)))
}

pub fn import(data_dir: &Path, a: ImportArgs<'_>) -> anyhow::Result<()> {
    let file = std::fs::canonicalize(a.file).with_context(|| format!("cannot find {}", a.file.display()))?;
    let (format, size) = probe(&file)?;
    if !server_running(data_dir)? {
        bail!("no feitian is running on {}: start `feitian up` first (it does the import)", data_dir.display());
    }
    let config = Config::load(a.config)?;
    let catalog = config.catalog()?;
    let region = match a.region {
        Some(r) => catalog.region(r).with_context(|| format!("there is no region {r} here"))?.clone(),
        None => catalog.default_region().clone(),
    };
    let store = open_store(data_dir)?;
    store.set_quotas(config.quotas()?);
    let account = store
        .account_by_name(a.account)?
        .with_context(|| format!("there is no account {:?} (feitian account list)", a.account))?;
    let path = file.to_str().with_context(|| format!("{} is not a UTF-8 path", file.display()))?.to_owned();
    let req = ImportRequest {
        name: a.name.clone(),
        description: None,
        platform: a.platform.clone().unwrap_or_default(),
        tags: vec![],
    };
    let src =
        Source { bucket: String::new(), object: path, format: format.clone(), size_gib: 0, device: "/dev/xvda".into() };
    if let Some(n) = &req.name {
        feitian_ecs::image_actions::check_image_name(n, "InvalidImageName.Malformed")
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let out = store
        .write(|tx| record_import(&store, tx, account.id, &region, &req, std::slice::from_ref(&src)))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    eprintln!(
        "importing {} ({format}, a {:.1} GiB disk) as image {} in {} (task {})",
        file.display(),
        size as f64 / (1u64 << 30) as f64,
        out.image_id,
        region.id,
        out.task_id
    );

    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("converting and storing blocks");
    loop {
        let id = out.task_id.clone();
        let t = store.read(|tx| image_task::get(tx, &id))?.context("the task is gone")?;
        match t.status {
            TaskStatus::Processing => bar.set_position(t.progress.clamp(0, 100) as u64),
            TaskStatus::Finished => {
                bar.set_position(100);
                bar.finish_with_message("done");
                println!("{}", out.image_id);
                eprintln!("launch it with RunInstances ImageId={} in {}", out.image_id, region.id);
                return Ok(());
            }
            TaskStatus::Failed | TaskStatus::Cancelled => {
                bar.abandon_with_message(t.status.as_str());
                bail!("the import {} ended {}: {}", out.task_id, t.status.as_str(), t.failure);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
