//! Cloud disks on a QEMU guest (see `docs/disks.md`): each disk is the NBD export of its
//! disk server, on a unix socket in the instance's directory, opened by QEMU's own NBD client
//! with a reconnect delay (a restarted feitian is reconnected to; the requests in flight are
//! replayed, which write-through makes safe), and shown to the guest as a virtio-blk device
//! whose serial is the disk's id without `d-` (as Alibaba's guests see it under
//! `/dev/disk/by-id/virtio-…`).
//!
//! The system disk is on QEMU's command line; data disks are hot-plugged over QMP
//! (`blockdev-add` + `device_add`), hot-unplugged (`device_del`, which the guest must
//! acknowledge, then `blockdev-del`), and grown online by the reconnect-then-`block_resize`
//! sequence that `docs/disks.md` explains (QEMU 7.2's NBD client cannot grow a node, but takes
//! the size the server advertises when it reconnects).

use super::qmp::Qmp;
use crate::DriverError;
use serde_json::{json, Value};
use std::time::Duration;

/// How long QEMU keeps a disk's requests waiting for its disk server to come back (a feitian
/// restart) before it fails them to the guest.
pub const RECONNECT_DELAY_SECS: u64 = 300;

/// How long a guest has to release a hot-unplugged disk.
pub const UNPLUG_LIMIT: Duration = Duration::from_secs(30);

/// virtio-blk carries at most 20 bytes of serial.
const SERIAL_MAX: usize = 20;

fn failed(what: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(what.to_string())
}

/// A disk as QEMU opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDisk {
    /// The disk's id (`d-…`).
    pub id: String,
    /// Its disk server's socket, as QEMU names it (relative to QEMU's working directory when
    /// confined).
    pub socket: String,
}

impl GuestDisk {
    /// The block node's name (QEMU allows letters, digits, `-`, `_`, starting with a letter).
    pub fn node(&self) -> String {
        format!("disk-{}", self.id)
    }

    /// The virtio device's id.
    pub fn device_id(&self) -> String {
        format!("vd-{}", self.id)
    }

    /// What the guest reads as the disk's serial number.
    pub fn serial(&self) -> String {
        let s = self.id.strip_prefix("d-").unwrap_or(&self.id);
        s.chars().take(SERIAL_MAX).collect()
    }

    /// The NBD block node (`-blockdev` on the command line, `blockdev-add` over QMP).
    pub fn blockdev(&self) -> Value {
        json!({
            "driver": "nbd",
            "node-name": self.node(),
            "server": { "type": "unix", "path": self.socket },
            "reconnect-delay": RECONNECT_DELAY_SECS,
            // The guest's discards reach the disk server as NBD trims (space is freed).
            "discard": "unmap",
        })
    }

    /// The virtio-blk device's properties (`-device` takes them comma-joined, `device_add` as
    /// an object). The system disk boots first.
    pub fn device(&self, bootindex: Option<u32>) -> Value {
        let mut d = json!({
            "driver": "virtio-blk-pci",
            "drive": self.node(),
            "id": self.device_id(),
            "serial": self.serial(),
        });
        if let Some(i) = bootindex {
            d["bootindex"] = json!(i);
        }
        d
    }

    /// The command-line arguments that attach the disk at boot.
    pub fn args(&self, bootindex: Option<u32>) -> Vec<String> {
        let dev = self.device(bootindex);
        let mut props = vec![dev["driver"].as_str().unwrap_or_default().to_owned()];
        if let Some(obj) = dev.as_object() {
            for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "driver") {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                props.push(format!("{k}={v}"));
            }
        }
        vec!["-blockdev".into(), self.blockdev().to_string(), "-device".into(), props.join(",")]
    }
}

/// Attaches `disk` to a running guest. Idempotent: a disk already attached is left as it is.
pub async fn hot_plug(qmp: &mut Qmp, disk: &GuestDisk) -> Result<(), DriverError> {
    if attached(qmp, disk).await? {
        return Ok(());
    }
    if !node_exists(qmp, &disk.node()).await? {
        qmp.execute("blockdev-add", Some(disk.blockdev())).await?;
    }
    qmp.execute("device_add", Some(disk.device(None))).await?;
    Ok(())
}

/// Detaches `disk` from a running guest: the guest is asked to release the device, and the
/// block node is removed once it did. Idempotent.
pub async fn hot_unplug(qmp: &mut Qmp, disk: &GuestDisk) -> Result<(), DriverError> {
    if attached(qmp, disk).await? {
        let dev = disk.device_id();
        qmp.execute("device_del", Some(json!({ "id": dev }))).await?;
        qmp.wait_event("DEVICE_DELETED", UNPLUG_LIMIT, |d| d.get("device").and_then(Value::as_str) == Some(&dev))
            .await
            .map_err(|e| failed(format!("the guest did not release disk {}: {e}", disk.id)))?;
    }
    if node_exists(qmp, &disk.node()).await? {
        qmp.execute("blockdev-del", Some(json!({ "node-name": disk.node() }))).await?;
    }
    Ok(())
}

/// Shows the guest its disk's new size, once the disk server advertises it: one read makes
/// QEMU reconnect (the server dropped the old connection) and learn the size, and
/// `block_resize` then raises virtio's config-change interrupt.
pub async fn grow_online(qmp: &mut Qmp, disk: &GuestDisk, new_size: u64) -> Result<(), DriverError> {
    let mut last = None;
    for _ in 0..50 {
        // A 4 KiB read of the first block: harmless, and it waits for the reconnect.
        let read = format!("qemu-io -d {}/virtio-backend \"read 0 4k\"", disk.device_id());
        qmp.execute("human-monitor-command", Some(json!({ "command-line": read }))).await?;
        match qmp.execute("block_resize", Some(json!({ "node-name": disk.node(), "size": new_size }))).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| failed("block_resize never succeeded")))
}

async fn attached(qmp: &mut Qmp, disk: &GuestDisk) -> Result<bool, DriverError> {
    let path = format!("/machine/peripheral/{}", disk.device_id());
    Ok(qmp.execute("qom-list", Some(json!({ "path": path }))).await.is_ok())
}

async fn node_exists(qmp: &mut Qmp, node: &str) -> Result<bool, DriverError> {
    let nodes = qmp.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await?;
    Ok(nodes.as_array().is_some_and(|a| a.iter().any(|n| n.get("node-name").and_then(Value::as_str) == Some(node))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> GuestDisk {
        GuestDisk { id: "d-bp1abcdefghijklmnopqr".into(), socket: "disk-d-bp1abcdefghijklmnopqr.sock".into() }
    }

    #[test]
    fn the_serial_is_the_id_without_its_prefix_cut_to_virtio_length() {
        assert_eq!(disk().serial(), "bp1abcdefghijklmnopq");
        assert_eq!(GuestDisk { id: "d-short".into(), socket: "s".into() }.serial(), "short");
    }

    #[test]
    fn command_line_names_the_node_the_device_uses() {
        let a = disk().args(Some(1));
        assert_eq!(a[0], "-blockdev");
        let node: Value = serde_json::from_str(&a[1]).unwrap();
        assert_eq!(node["driver"], "nbd");
        assert_eq!(node["server"]["path"], "disk-d-bp1abcdefghijklmnopqr.sock");
        assert_eq!(node["reconnect-delay"], RECONNECT_DELAY_SECS);
        assert_eq!(a[2], "-device");
        assert!(a[3].starts_with("virtio-blk-pci,"), "{}", a[3]);
        assert!(a[3].contains("drive=disk-d-bp1abcdefghijklmnopqr"), "{}", a[3]);
        assert!(a[3].contains("bootindex=1"), "{}", a[3]);
        assert!(a[3].contains("serial=bp1abcdefghijklmnopq"), "{}", a[3]);
    }
}
