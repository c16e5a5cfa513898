//! Instances (table `instances`, and `instance_forced_stops`): their attributes and their
//! lifecycle. The control plane writes the decision ([`set_lifecycle`]: the status a client
//! sees now and what the instance should become); the reconciler reports what really
//! happened ([`advance`], a compare-and-set on the status). Both statuses are the host
//! contract's enums (`feitian-agent-api`), stored as their API spelling.

use crate::filter::Filter;
use crate::query::{all, in_list, page};
use crate::resource::forget_resource;
use crate::{disk, eip, network_interface, security_group, status, tag, MetaError};
use feitian_agent_api::{Desired, InstanceStatus};
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    pub host_name: String,
    pub description: String,
    pub instance_type: String,
    pub cpu: i64,
    pub memory_mib: i64,
    pub image_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub key_pair_name: String,
    pub user_data: String,
    /// What the instance is.
    pub status: InstanceStatus,
    /// What the control plane wants it to become (a deleted instance has no row).
    pub desired: Desired,
    /// Reboots asked for and not yet done.
    pub reboots: i64,
    pub internet_charge_type: String,
    pub internet_bandwidth_out: i64,
    pub public_ip: String,
    pub deletion_protection: bool,
    pub serial_number: String,
    pub created_at: String,
    pub started_at: String,
}

const INST_COLS: &str = "id, account_id, region_id, zone_id, name, host_name, description, instance_type, cpu, memory_mib, image_id, vpc_id, vswitch_id, key_pair_name, user_data, status, desired, reboots, internet_charge_type, internet_bandwidth_out, public_ip, deletion_protection, serial_number, created_at, started_at";

fn inst_row(r: &Row<'_>) -> rusqlite::Result<Instance> {
    Ok(Instance {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        zone_id: r.get(3)?,
        name: r.get(4)?,
        host_name: r.get(5)?,
        description: r.get(6)?,
        instance_type: r.get(7)?,
        cpu: r.get(8)?,
        memory_mib: r.get(9)?,
        image_id: r.get(10)?,
        vpc_id: r.get(11)?,
        vswitch_id: r.get(12)?,
        key_pair_name: r.get(13)?,
        user_data: r.get(14)?,
        status: status::column(r, 15, "instance status", InstanceStatus::parse)?,
        desired: status::column(r, 16, "desired instance status", Desired::parse)?,
        reboots: r.get(17)?,
        internet_charge_type: r.get(18)?,
        internet_bandwidth_out: r.get(19)?,
        public_ip: r.get(20)?,
        deletion_protection: r.get(21)?,
        serial_number: r.get(22)?,
        created_at: r.get(23)?,
        started_at: r.get(24)?,
    })
}

// --- rows -----------------------------------------------------------------------------------

pub fn insert_instance(tx: &Transaction<'_>, i: &Instance) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO instances ({INST_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"),
        params![
            i.id,
            i.account_id as i64,
            i.region_id,
            i.zone_id,
            i.name,
            i.host_name,
            i.description,
            i.instance_type,
            i.cpu,
            i.memory_mib,
            i.image_id,
            i.vpc_id,
            i.vswitch_id,
            i.key_pair_name,
            i.user_data,
            i.status.as_str(),
            i.desired.as_str(),
            i.reboots,
            i.internet_charge_type,
            i.internet_bandwidth_out,
            i.public_ip,
            i.deletion_protection,
            i.serial_number,
            i.created_at,
            i.started_at
        ],
    )?;
    Ok(())
}

pub fn get_instance(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Instance>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {INST_COLS} FROM instances WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            inst_row,
        )
        .optional()?)
}

/// An instance of any account: for the control plane's side of the host contract, which
/// plans by instance id (hosts run every account's instances).
pub fn get_instance_any_owner(tx: &Transaction<'_>, id: &str) -> Result<Option<Instance>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {INST_COLS} FROM instances WHERE id = ?1"), [id], inst_row).optional()?)
}

pub fn list_instances(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Instance>, u64), MetaError> {
    page(tx, "instances", INST_COLS, f, offset, limit, inst_row)
}

/// Writes an instance's attributes (not its lifecycle: see [`set_lifecycle`], [`advance`]).
pub fn update_instance(tx: &Transaction<'_>, i: &Instance) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE instances SET name = ?2, host_name = ?3, description = ?4, public_ip = ?5, deletion_protection = ?6, user_data = ?7, key_pair_name = ?8, internet_bandwidth_out = ?9 WHERE id = ?1",
        params![
            i.id,
            i.name,
            i.host_name,
            i.description,
            i.public_ip,
            i.deletion_protection,
            i.user_data,
            i.key_pair_name,
            i.internet_bandwidth_out
        ],
    )?;
    Ok(())
}

/// Instances that name a deleted key pair keep their key but lose the name.
pub fn forget_key_pair_on_instances(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    name: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE instances SET key_pair_name = '' WHERE account_id = ?1 AND region_id = ?2 AND key_pair_name = ?3",
        params![account_id as i64, region_id, name],
    )?;
    Ok(())
}

/// Removes an instance and everything that lives and dies with it: its network interfaces,
/// their addresses and group memberships, the disks that go with it, its tags. Its EIPs stay
/// the account's, unassociated.
pub fn delete_instance(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    set_forced_stop(tx, id, false)?;
    for eni in network_interface::enis_of_instance(tx, id)? {
        security_group::leave_all_groups(tx, &eni.id)?;
        network_interface::delete_eni(tx, &eni.id)?;
    }
    disk::release_disks_of_instance(tx, id)?;
    eip::unassociate_instance(tx, id)?;
    tx.execute("DELETE FROM instances WHERE id = ?1", [id])?;
    forget_resource(tx, id)
}

// --- the lifecycle --------------------------------------------------------------------------

/// The control plane's decision: the status clients see now, what should become of the
/// instance, and reboots asked for.
pub fn set_lifecycle(
    tx: &Transaction<'_>,
    id: &str,
    status: InstanceStatus,
    desired: Desired,
    reboots: i64,
) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE instances SET status = ?2, desired = ?3, reboots = ?4 WHERE id = ?1",
        params![id, status.as_str(), desired.as_str(), reboots],
    )?;
    Ok(())
}

/// The reconciler's report: moves the status from `from` to `to` only if nobody changed it
/// meanwhile; `true` if it moved. `started` stamps the start time; `reboot_done` clears one
/// asked-for reboot.
pub fn advance(
    tx: &Transaction<'_>,
    id: &str,
    from: InstanceStatus,
    to: InstanceStatus,
    started: Option<&str>,
    reboot_done: bool,
) -> Result<bool, MetaError> {
    let n = tx.execute(
        "UPDATE instances SET status = ?3, started_at = COALESCE(?4, started_at), reboots = CASE WHEN ?5 AND reboots > 0 THEN reboots - 1 ELSE reboots END WHERE id = ?1 AND status = ?2",
        params![id, from.as_str(), to.as_str(), started, reboot_done],
    )?;
    Ok(n == 1)
}

/// Records whether the instance's pending stop (or reboot) is forced.
pub fn set_forced_stop(tx: &Transaction<'_>, id: &str, forced: bool) -> Result<(), MetaError> {
    if forced {
        tx.execute("INSERT OR IGNORE INTO instance_forced_stops (instance_id) VALUES (?1)", [id])?;
    } else {
        tx.execute("DELETE FROM instance_forced_stops WHERE instance_id = ?1", [id])?;
    }
    Ok(())
}

/// Whether the instance's pending stop (or reboot) is forced.
pub fn forced_stop(tx: &Transaction<'_>, id: &str) -> Result<bool, MetaError> {
    Ok(tx
        .query_row("SELECT 1 FROM instance_forced_stops WHERE instance_id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every instance whose pending stop (or reboot) is forced, in one query.
pub fn forced_stops(tx: &Transaction<'_>) -> Result<HashSet<String>, MetaError> {
    Ok(all(tx, "SELECT instance_id FROM instance_forced_stops", [], |r| r.get(0))?.into_iter().collect())
}

// --- quotas and admission ---------------------------------------------------------------------

/// What an account's instances in a region hold: (instances, vCPUs). Every instance counts,
/// stopped or not: a stopped instance keeps its place (as a pay-as-you-go instance stopped
/// with `KeepCharging` does).
pub fn account_usage(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<(u64, u64), MetaError> {
    let (n, cpus): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(cpu), 0) FROM instances WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n.max(0) as u64, cpus.max(0) as u64))
}

/// What the host has promised to guests, every account together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commitment {
    /// vCPUs of the guests that run or are to run.
    pub vcpus: u64,
    /// Memory of the guests that run or are to run.
    pub memory_mib: u64,
    /// The part of `memory_mib` whose guests have not booted yet: the host's free memory
    /// does not show it as used.
    pub memory_not_started_mib: u64,
}

/// The guests that hold (or are about to hold) the host's CPUs and memory: those wanted
/// running, and those still on their way down (Stopping, or Starting/Running under a stop).
/// A `CreateInstance`'s instance (Pending, wanted Stopped) holds nothing.
pub fn commitment(tx: &Transaction<'_>) -> Result<Commitment, MetaError> {
    let (cpus, mem, not_started): (i64, i64, i64) = tx.query_row(
        "SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory_mib), 0),
                COALESCE(SUM(CASE WHEN status IN (?3, ?4) THEN memory_mib ELSE 0 END), 0)
         FROM instances WHERE desired = ?1 OR status <> ?2 AND status <> ?3",
        params![
            Desired::Running.as_str(),
            InstanceStatus::Stopped.as_str(),
            InstanceStatus::Pending.as_str(),
            InstanceStatus::Starting.as_str()
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Commitment {
        vcpus: cpus.max(0) as u64,
        memory_mib: mem.max(0) as u64,
        memory_not_started_mib: not_started.max(0) as u64,
    })
}

// --- for the reconciler ---------------------------------------------------------------------

/// Instances whose observed state differs from the desired one (work for the reconciler).
pub fn instances_to_reconcile(tx: &Transaction<'_>) -> Result<Vec<Instance>, MetaError> {
    all(
        tx,
        &format!(
            "SELECT {INST_COLS} FROM instances WHERE desired <> status OR reboots > 0 OR status IN (?1, ?2, ?3) ORDER BY created_at, id"
        ),
        [InstanceStatus::Pending, InstanceStatus::Starting, InstanceStatus::Stopping].map(InstanceStatus::as_str),
        inst_row,
    )
}

/// Every instance that should be running (for a reconciler that adopts after a restart).
pub fn instances_wanted_running(tx: &Transaction<'_>) -> Result<Vec<Instance>, MetaError> {
    all(
        tx,
        &format!("SELECT {INST_COLS} FROM instances WHERE desired = ?1 ORDER BY id"),
        [Desired::Running.as_str()],
        inst_row,
    )
}

/// Which of `ids` have an instance record (any account), in one query per 500 ids.
pub fn existing_instances(tx: &Transaction<'_>, ids: &[String]) -> Result<HashSet<String>, MetaError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!("SELECT id FROM instances WHERE id IN ({})", in_list(chunk.len()));
        found.extend(all(tx, &sql, params_from_iter(chunk.iter()), |r| r.get::<_, String>(0))?);
    }
    Ok(found)
}

// --- for DescribeInstances ------------------------------------------------------------------

/// Instances of an account with any of these private addresses, in this group, or with any
/// of these EIPs (each filter applies when given).
pub fn instance_ids_matching(
    tx: &Transaction<'_>,
    account_id: u64,
    private_ips: &[String],
    group: Option<&str>,
    eips: &[String],
) -> Result<Vec<String>, MetaError> {
    let mut ids: Option<BTreeSet<String>> = None;
    let mut keep = |found: Vec<String>| {
        let found: BTreeSet<String> = found.into_iter().collect();
        ids = Some(match ids.take() {
            None => found,
            Some(prev) => prev.intersection(&found).cloned().collect(),
        });
    };
    if !private_ips.is_empty() {
        keep(network_interface::instances_at(tx, account_id, private_ips)?);
    }
    if let Some(g) = group {
        keep(security_group::instances_in_group(tx, account_id, g)?);
    }
    if !eips.is_empty() {
        keep(eip::instances_behind(tx, account_id, eips)?);
    }
    Ok(ids.map(|s| s.into_iter().filter(|i| !i.is_empty()).collect()).unwrap_or_default())
}

/// What a page of instances needs besides their rows, fetched in a few queries for the whole
/// page: interfaces, group memberships (in join order), tags, EIPs.
#[derive(Debug, Default)]
pub struct InstanceExtras {
    pub enis: HashMap<String, Vec<network_interface::NetworkInterface>>,
    pub groups: HashMap<String, Vec<String>>,
    pub tags: BTreeMap<String, tag::Tags>,
    pub eips: HashMap<String, eip::Eip>,
    /// The OS names (`OSName`, `OSNameEn`) of the custom images the instances were launched
    /// from, by image id (public images' are in the catalog).
    pub image_os: HashMap<String, (String, String)>,
}

pub fn instance_extras(tx: &Transaction<'_>, ids: &[&str]) -> Result<InstanceExtras, MetaError> {
    let mut x = InstanceExtras::default();
    if ids.is_empty() {
        return Ok(x);
    }
    let enis = network_interface::enis_of_instances(tx, ids)?;
    let eni_ids: Vec<String> = enis.iter().map(|e| e.id.clone()).collect();
    for e in enis {
        x.enis.entry(e.instance_id.clone()).or_default().push(e);
    }
    if !eni_ids.is_empty() {
        for (eni, g) in security_group::groups_of_enis(tx, &eni_ids)? {
            x.groups.entry(eni).or_default().push(g);
        }
    }
    x.tags = tag::tags_of(tx, ids)?;
    for e in eip::eips_of_instances(tx, ids)? {
        x.eips.insert(e.instance_id.clone(), e);
    }
    let sql = format!(
        "SELECT DISTINCT m.id, m.os_name, m.os_name_en FROM instances i JOIN images m ON m.id = i.image_id
         WHERE i.id IN ({})",
        crate::query::in_list(ids.len())
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(ids.iter()), |r| {
        Ok((r.get::<_, String>(0)?, (r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
    })?;
    for row in rows {
        let (id, names) = row?;
        x.image_os.insert(id, names);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_text_round_trips;
    use crate::testing;

    #[test]
    fn lifecycle_statuses_round_trip() {
        assert_text_round_trips(&InstanceStatus::ALL, InstanceStatus::as_str, InstanceStatus::parse);
        assert_text_round_trips(&Desired::ALL, Desired::as_str, Desired::parse);
    }

    #[test]
    fn what_holds_the_host_and_what_an_account_uses() {
        let (s, account) = testing::store();
        let id = testing::register(&s, account, "instance", "i");
        s.write(|tx| insert_instance(tx, &testing::instance(account, &id))).unwrap();
        // (status, desired) → whether it holds the host, and whether it has not booted yet.
        let cases = [
            (InstanceStatus::Pending, Desired::Running, true, true),
            (InstanceStatus::Pending, Desired::Stopped, false, false),
            (InstanceStatus::Starting, Desired::Running, true, true),
            (InstanceStatus::Running, Desired::Running, true, false),
            (InstanceStatus::Stopping, Desired::Stopped, true, false),
            (InstanceStatus::Stopping, Desired::Running, true, false),
            (InstanceStatus::Stopped, Desired::Stopped, false, false),
            (InstanceStatus::Starting, Desired::Stopped, true, true),
        ];
        for (status, desired, holds, booting) in cases {
            s.write(|tx| set_lifecycle(tx, &id, status, desired, 0)).unwrap();
            let c = s.read(commitment).unwrap();
            let want = Commitment {
                vcpus: if holds { 2 } else { 0 },
                memory_mib: if holds { 2048 } else { 0 },
                memory_not_started_mib: if booting { 2048 } else { 0 },
            };
            assert_eq!(c, want, "{status} wanted {desired}");
            // An account's usage counts it whatever its state.
            assert_eq!(s.read(|tx| account_usage(tx, account, testing::REGION)).unwrap(), (1, 2));
        }
        assert_eq!(s.read(|tx| account_usage(tx, account + 1, testing::REGION)).unwrap(), (0, 0));
        assert_eq!(s.read(|tx| account_usage(tx, account, "cn-elsewhere")).unwrap(), (0, 0));
    }

    #[test]
    fn an_instance_row_keeps_its_lifecycle() {
        let (s, account) = testing::store();
        let id = testing::register(&s, account, "instance", "i");
        let i = testing::instance(account, &id);
        s.write(|tx| insert_instance(tx, &i)).unwrap();
        assert_eq!(s.read(|tx| get_instance(tx, account, &id)).unwrap(), Some(i.clone()));
        for status in InstanceStatus::ALL {
            for desired in Desired::ALL {
                s.write(|tx| set_lifecycle(tx, &id, status, desired, 0)).unwrap();
                let got = s.read(|tx| get_instance(tx, account, &id)).unwrap().unwrap();
                assert_eq!((got.status, got.desired), (status, desired));
                let wanted = s.read(instances_wanted_running).unwrap().len();
                assert_eq!(wanted, usize::from(desired == Desired::Running));
                let settled = desired.status() == status;
                assert_eq!(s.read(instances_to_reconcile).unwrap().is_empty(), settled);
            }
        }
        s.write(|tx| set_lifecycle(tx, &id, InstanceStatus::Starting, Desired::Running, 0)).unwrap();
        assert!(!s
            .write(|tx| advance(tx, &id, InstanceStatus::Stopping, InstanceStatus::Running, None, false))
            .unwrap());
        assert!(s
            .write(|tx| advance(tx, &id, InstanceStatus::Starting, InstanceStatus::Running, Some("t"), false))
            .unwrap());
        let got = s.read(|tx| get_instance(tx, account, &id)).unwrap().unwrap();
        assert_eq!((got.status, got.started_at.as_str()), (InstanceStatus::Running, "t"));
    }

    #[test]
    fn an_unknown_status_in_a_row_is_an_error() {
        let (s, account) = testing::store();
        let id = testing::register(&s, account, "instance", "i");
        s.write(|tx| insert_instance(tx, &testing::instance(account, &id))).unwrap();
        s.write(|tx| Ok::<_, MetaError>(tx.execute("UPDATE instances SET status = 'Deleted' WHERE id = ?1", [&id])?))
            .unwrap();
        let e = s.read(|tx| get_instance(tx, account, &id)).unwrap_err();
        assert!(e.to_string().contains("\"Deleted\" is not a known instance status"), "{e}");
    }
}
