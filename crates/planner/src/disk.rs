//! Disks: what the host must do to each disk's volume and attachment, what an instance's
//! guest gets of its disks, and how the host's disk reports are recorded.

use feitian_agent_api::{image_volume_name, DiskPlan, DiskStatus, DiskTarget, Report};
use feitian_meta::disk::{self as db, Disk, DiskType};
use feitian_meta::disk_restore;
use feitian_meta::{MetaError, Transaction};

/// How the guest gets the disk.
pub fn disk_plan(d: &Disk) -> DiskPlan {
    DiskPlan {
        volume: d.id.clone(),
        size_gib: d.size_gib.max(0) as u64,
        device: d.device.clone(),
        serial: d.id.clone(),
        read_only: false,
        category: d.category.clone(),
        performance_level: d.performance_level.clone(),
    }
}

/// The volume a disk's volume starts from: a system disk of a public image is a
/// copy-on-write child of the image's volume; a data disk, and a system disk of a custom
/// image (`m-…`: its bytes are the image's snapshot, filled in as a restore), start empty.
pub fn parent(d: &Disk) -> Option<String> {
    (d.disk_type == DiskType::System && !d.image_id.is_empty() && !feitian_meta::image::is_custom_id(&d.image_id))
        .then(|| image_volume_name(&d.image_id))
}

fn target(tx: &Transaction<'_>, (d, volume_gib): (Disk, u64)) -> Result<DiskTarget, MetaError> {
    // A fill is pending for a new disk made from a snapshot, or a disk being reset to one
    // (ResetDisk: the volume is made anew, empty, then filled).
    let restore_from =
        if volume_gib == 0 || d.status == DiskStatus::ReIniting { disk_restore::pending(tx, &d.id)? } else { None };
    let parent = if restore_from.is_some() && d.status == DiskStatus::ReIniting { None } else { parent(&d) };
    Ok(DiskTarget {
        plan: disk_plan(&d),
        parent,
        id: d.id,
        status: d.status,
        instance_id: (!d.instance_id.is_empty()).then_some(d.instance_id),
        size_gib: d.size_gib.max(0) as u64,
        volume_gib,
        restore_from,
    })
}

/// Disks the host has work on.
pub fn to_reconcile(tx: &Transaction<'_>) -> Result<Vec<DiskTarget>, MetaError> {
    db::disks_to_reconcile(tx)?.into_iter().map(|d| target(tx, d)).collect()
}

/// The disks an instance's guest gets: the system disk first, then data disks by device.
/// A disk being detached is left out, so a guest booting meanwhile does not get it back.
pub fn of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<DiskPlan>, MetaError> {
    let mut disks: Vec<Disk> =
        db::disks_of_instance(tx, instance_id)?.into_iter().filter(|d| d.status != DiskStatus::Detaching).collect();
    disks.sort_by(|a, b| {
        (a.disk_type != DiskType::System, &a.device).cmp(&(b.disk_type != DiskType::System, &b.device))
    });
    Ok(disks.iter().map(disk_plan).collect())
}

/// Records a disk report in the caller's transaction; `true` if it changed anything, `None`
/// for a report that is not about disks.
pub fn record(tx: &Transaction<'_>, report: &Report, at: &str) -> Result<Option<bool>, MetaError> {
    Ok(Some(match report {
        Report::DiskMoved { id, from, to } => db::advance(tx, id, *from, *to, at)?,
        Report::VolumeReady { id, gib } => {
            // A disk made from a snapshot is filled before its volume is reported ready: the
            // blocks it held for the fill are free now.
            feitian_meta::disk_restore::finish(tx, id, at)?;
            db::volume_ready(tx, id, *gib)?
        }
        Report::VolumeDeleted { id } => db::volume_deleted(tx, id)?,
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: DiskType, image: &str) -> Disk {
        Disk {
            id: "d-1".into(),
            account_id: 1,
            region_id: "r".into(),
            zone_id: "z".into(),
            instance_id: "i-1".into(),
            name: String::new(),
            description: String::new(),
            category: "cloud_essd".into(),
            size_gib: 40,
            disk_type: kind,
            device: "/dev/xvdb".into(),
            image_id: image.into(),
            status: DiskStatus::InUse,
            delete_with_instance: true,
            created_at: "t".into(),
            performance_level: "PL1".into(),
            portable: true,
            delete_auto_snapshot: true,
            enable_auto_snapshot: true,
            attached_at: "t".into(),
            detached_at: String::new(),
        }
    }

    #[test]
    fn system_disks_start_from_their_image_and_data_disks_empty() {
        let public = "debian_12_x64_20G_alibase_20261207.vhd";
        assert_eq!(parent(&row(DiskType::System, public)), Some(format!("img-{public}")));
        // A custom image's system disk starts empty: it is filled from the image's snapshot.
        assert_eq!(parent(&row(DiskType::System, "m-bp1custom")), None);
        assert_eq!(parent(&row(DiskType::Data, "")), None);
        let p = disk_plan(&row(DiskType::Data, ""));
        assert_eq!((p.volume.as_str(), p.serial.as_str(), p.size_gib, p.read_only), ("d-1", "d-1", 40, false));
        let store = feitian_meta::Store::open_in_memory().unwrap();
        let t = store.read(|tx| target(tx, (row(DiskType::Data, ""), 20))).unwrap();
        assert_eq!((t.instance_id.as_deref(), t.volume_gib, t.size_gib), (Some("i-1"), 20, 40));
        assert_eq!(t.restore_from, None);
        let t =
            store.read(|tx| target(tx, (Disk { instance_id: String::new(), ..row(DiskType::Data, "") }, 0))).unwrap();
        assert_eq!(t.instance_id, None);
    }
}
