//! Instances: where each one stands, what a host needs to run it, and what hosts report.

use feitian_agent_api::{Desired, InstancePlan, InstanceStatus, InstanceTarget, NicPlan, Report};
use feitian_meta::disk::{self, DiskType};
use feitian_meta::instance::{self as db, Instance};
use feitian_meta::instance_event::{self, EventCycleStatus, InstanceEvent};
use feitian_meta::{key_pair, network_interface, vswitch, MetaError, Transaction};
use std::collections::{BTreeSet, HashSet};

fn target(i: &Instance, forced: &HashSet<String>) -> InstanceTarget {
    InstanceTarget {
        id: i.id.clone(),
        status: i.status,
        desired: i.desired,
        reboots: u32::try_from(i.reboots).unwrap_or(0),
        force_stop: forced.contains(&i.id),
    }
}

/// Instances whose status is not yet the desired one, or with a reboot pending. One to be
/// started whose disks' volumes are not all made yet waits (the disk reconciler makes them,
/// then nudges).
pub fn to_reconcile(tx: &Transaction<'_>) -> Result<Vec<InstanceTarget>, MetaError> {
    let forced = db::forced_stops(tx)?;
    let mut out = Vec::new();
    for i in db::instances_to_reconcile(tx)? {
        let starting = matches!(i.status, InstanceStatus::Pending | InstanceStatus::Stopped | InstanceStatus::Starting);
        if i.desired == Desired::Running && starting && disk::instance_waits_for_volumes(tx, &i.id)? {
            continue;
        }
        out.push(target(&i, &forced));
    }
    Ok(out)
}

/// Every instance that should be running.
pub fn wanted_running(tx: &Transaction<'_>) -> Result<Vec<InstanceTarget>, MetaError> {
    let forced = db::forced_stops(tx)?;
    Ok(db::instances_wanted_running(tx)?.iter().map(|i| target(i, &forced)).collect())
}

/// Which of `ids` still have an instance record.
pub fn existing(tx: &Transaction<'_>, ids: &[String]) -> Result<BTreeSet<String>, MetaError> {
    Ok(db::existing_instances(tx, ids)?.into_iter().collect())
}

/// Everything a host needs to run the instance; `None` if it no longer exists.
pub fn plan(tx: &Transaction<'_>, id: &str) -> Result<Option<InstancePlan>, MetaError> {
    let Some(i) = db::get_instance_any_owner(tx, id)? else { return Ok(None) };
    let eni = network_interface::enis_of_instance(tx, &i.id)?
        .into_iter()
        .next()
        .ok_or_else(|| MetaError::Invalid(format!("{} has no network interface", i.id)))?;
    let vsw = vswitch::get_vswitch(tx, i.account_id, &i.vswitch_id)?
        .ok_or_else(|| MetaError::Invalid(format!("{} has no vSwitch", i.id)))?;
    let net = feitian_cidr::parse(&vsw.cidr_block)
        .map_err(|_| MetaError::Invalid(format!("vSwitch {} has a bad block {}", vsw.id, vsw.cidr_block)))?;
    let ip = eni.primary_ip.parse().map_err(|_| MetaError::Invalid(format!("{} has no address", eni.id)))?;
    let system_disk_gib = disk::disks_of_instance(tx, &i.id)?
        .into_iter()
        .find(|d| d.disk_type == DiskType::System)
        .map_or(0, |d| d.size_gib.max(0) as u64);
    Ok(Some(InstancePlan {
        id: i.id.clone(),
        host_name: i.host_name.clone(),
        cpu: u32::try_from(i.cpu).unwrap_or(1),
        memory_mib: u32::try_from(i.memory_mib).unwrap_or(512),
        image_id: i.image_id.clone(),
        system_disk_gib,
        disks: crate::disk::of_instance(tx, &i.id)?,
        vpc_id: i.vpc_id.clone(),
        nic: NicPlan {
            id: eni.id,
            mac: eni.mac,
            ip,
            gateway: feitian_cidr::gateway(net),
            prefix_len: net.prefix_len(),
        },
        user_data: i.user_data.clone(),
        public_keys: key_pair::public_keys_of(tx, &i)?,
    }))
}

/// Records a host's report in the caller's transaction; `true` if it changed anything.
/// `at` is the control plane's clock.
pub fn record(tx: &Transaction<'_>, report: &Report, at: &str) -> Result<bool, MetaError> {
    if let Some(changed) = crate::disk::record(tx, report, at)? {
        return Ok(changed);
    }
    if let Some(changed) = crate::snapshot::record(tx, report, at)? {
        return Ok(changed);
    }
    match report {
        Report::Moved { id, from, to, started, reboot_done } => {
            db::advance(tx, id, *from, *to, started.then_some(at), *reboot_done)
        }
        Report::StartFailed { id, error } => {
            tracing::warn!(instance = %id, %error, "a host could not start the instance; it is now Stopped");
            db::set_lifecycle(tx, id, InstanceStatus::Stopped, Desired::Stopped, 0)?;
            Ok(true)
        }
        Report::StoppedOnItsOwn { id, crashed } => {
            // Only if the API did not move it meanwhile (compare-and-set).
            if !db::advance(tx, id, InstanceStatus::Running, InstanceStatus::Stopped, None, false)? {
                return Ok(false);
            }
            db::set_lifecycle(tx, id, InstanceStatus::Stopped, Desired::Stopped, 0)?;
            if *crashed {
                if let Some(i) = db::get_instance_any_owner(tx, id)? {
                    instance_event::insert_event(tx, &crash_event(&i, at))?;
                }
            }
            Ok(true)
        }
        Report::ForcedStopDone { id } => {
            db::set_forced_stop(tx, id, false)?;
            Ok(true)
        }
        // Recorded above, by `disk` and `snapshot`.
        Report::DiskMoved { .. }
        | Report::VolumeReady { .. }
        | Report::VolumeDeleted { .. }
        | Report::SnapshotPinned { .. }
        | Report::SnapshotProgress { .. }
        | Report::SnapshotClaimed { .. }
        | Report::SnapshotUploaded(_)
        | Report::SnapshotFailed { .. }
        | Report::PinReleased { .. } => Ok(false),
    }
}

/// The system event for an instance whose process ended without its guest shutting down.
fn crash_event(i: &Instance, at: &str) -> InstanceEvent {
    // Event ids carry the region's code like the instance's own id (`i-bp…` → `e-bp…`).
    let code: String = i.id.trim_start_matches("i-").chars().take(2).collect();
    InstanceEvent {
        id: feitian_meta::ids::resource_id("e", &code),
        account_id: i.account_id,
        region_id: i.region_id.clone(),
        instance_id: i.id.clone(),
        event_type: "SystemFailure.Stop".into(),
        cycle_status: EventCycleStatus::Executed,
        reason:
            "The instance's virtual machine process ended without the guest shutting down; the instance was stopped."
                .into(),
        publish_time: at.to_owned(),
        finish_time: at.to_owned(),
        created_at: at.to_owned(),
    }
}
