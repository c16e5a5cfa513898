//! ECS records: security groups and their rules, key pairs, instances, network interfaces,
//! disks. Plain data plus the queries the ECS service needs; rules live in the service.

use crate::filter::Filter;
use crate::MetaError;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub sg_type: String,
    pub inner_policy: String,
    pub created_at: String,
}

/// A stored rule: the API's own field strings ("" when absent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SgRule {
    pub id: String,
    pub security_group_id: String,
    pub direction: String,
    pub ip_protocol: String,
    pub port_range: String,
    pub source_port_range: String,
    pub policy: String,
    pub priority: i64,
    pub nic_type: String,
    pub source_cidr: String,
    pub dest_cidr: String,
    pub source_group_id: String,
    pub source_group_owner_account: String,
    pub source_group_owner_id: String,
    pub dest_group_id: String,
    pub dest_group_owner_account: String,
    pub dest_group_owner_id: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub account_id: u64,
    pub region_id: String,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: String,
}

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
    /// What the instance is: Pending, Starting, Running, Stopping, Stopped.
    pub status: String,
    /// What the control plane wants: Running, Stopped or Deleted.
    pub desired: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub zone_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub instance_id: String,
    pub primary_ip: String,
    pub mac: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub zone_id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub size_gib: i64,
    pub disk_type: String,
    pub device: String,
    pub image_id: String,
    pub status: String,
    pub delete_with_instance: bool,
    pub created_at: String,
}

const SG_COLS: &str = "id, account_id, region_id, vpc_id, name, description, sg_type, inner_policy, created_at";
const RULE_COLS: &str = "id, security_group_id, direction, ip_protocol, port_range, source_port_range, policy, priority, nic_type, source_cidr, dest_cidr, source_group_id, source_group_owner_account, source_group_owner_id, dest_group_id, dest_group_owner_account, dest_group_owner_id, description, created_at";
const KP_COLS: &str = "account_id, region_id, name, fingerprint, public_key, created_at";
const INST_COLS: &str = "id, account_id, region_id, zone_id, name, host_name, description, instance_type, cpu, memory_mib, image_id, vpc_id, vswitch_id, key_pair_name, user_data, status, desired, reboots, internet_charge_type, internet_bandwidth_out, public_ip, deletion_protection, serial_number, created_at, started_at";
const ENI_COLS: &str =
    "id, account_id, region_id, zone_id, vpc_id, vswitch_id, instance_id, primary_ip, mac, created_at";
const DISK_COLS: &str = "id, account_id, region_id, zone_id, instance_id, name, description, category, size_gib, disk_type, device, image_id, status, delete_with_instance, created_at";

fn sg_row(r: &Row<'_>) -> rusqlite::Result<SecurityGroup> {
    Ok(SecurityGroup {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        vpc_id: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        sg_type: r.get(6)?,
        inner_policy: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn rule_row(r: &Row<'_>) -> rusqlite::Result<SgRule> {
    Ok(SgRule {
        id: r.get(0)?,
        security_group_id: r.get(1)?,
        direction: r.get(2)?,
        ip_protocol: r.get(3)?,
        port_range: r.get(4)?,
        source_port_range: r.get(5)?,
        policy: r.get(6)?,
        priority: r.get(7)?,
        nic_type: r.get(8)?,
        source_cidr: r.get(9)?,
        dest_cidr: r.get(10)?,
        source_group_id: r.get(11)?,
        source_group_owner_account: r.get(12)?,
        source_group_owner_id: r.get(13)?,
        dest_group_id: r.get(14)?,
        dest_group_owner_account: r.get(15)?,
        dest_group_owner_id: r.get(16)?,
        description: r.get(17)?,
        created_at: r.get(18)?,
    })
}

fn kp_row(r: &Row<'_>) -> rusqlite::Result<KeyPair> {
    Ok(KeyPair {
        account_id: r.get::<_, i64>(0)? as u64,
        region_id: r.get(1)?,
        name: r.get(2)?,
        fingerprint: r.get(3)?,
        public_key: r.get(4)?,
        created_at: r.get(5)?,
    })
}

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
        status: r.get(15)?,
        desired: r.get(16)?,
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

fn eni_row(r: &Row<'_>) -> rusqlite::Result<NetworkInterface> {
    Ok(NetworkInterface {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        zone_id: r.get(3)?,
        vpc_id: r.get(4)?,
        vswitch_id: r.get(5)?,
        instance_id: r.get(6)?,
        primary_ip: r.get(7)?,
        mac: r.get(8)?,
        created_at: r.get(9)?,
    })
}

fn disk_row(r: &Row<'_>) -> rusqlite::Result<Disk> {
    Ok(Disk {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        zone_id: r.get(3)?,
        instance_id: r.get(4)?,
        name: r.get(5)?,
        description: r.get(6)?,
        category: r.get(7)?,
        size_gib: r.get(8)?,
        disk_type: r.get(9)?,
        device: r.get(10)?,
        image_id: r.get(11)?,
        status: r.get(12)?,
        delete_with_instance: r.get(13)?,
        created_at: r.get(14)?,
    })
}

fn page<T>(
    tx: &Transaction<'_>,
    table: &str,
    cols: &str,
    f: &Filter,
    offset: u64,
    limit: u64,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, u64), MetaError> {
    crate::network::page(tx, table, cols, f, offset, limit, map)
}

fn all<T>(
    tx: &Transaction<'_>,
    sql: &str,
    args: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, MetaError> {
    let mut st = tx.prepare_cached(sql)?;
    let rows = st.query_map(args, map)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

// --- security groups ------------------------------------------------------------------------

pub fn insert_security_group(tx: &Transaction<'_>, g: &SecurityGroup) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO security_groups ({SG_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            g.id,
            g.account_id as i64,
            g.region_id,
            g.vpc_id,
            g.name,
            g.description,
            g.sg_type,
            g.inner_policy,
            g.created_at
        ],
    )?;
    Ok(())
}

/// A group of this account.
pub fn get_security_group(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<SecurityGroup>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {SG_COLS} FROM security_groups WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            sg_row,
        )
        .optional()?)
}

/// A group of any account: only for resolving cross-account peers, whose owner the caller
/// named explicitly.
pub fn get_security_group_any_owner(tx: &Transaction<'_>, id: &str) -> Result<Option<SecurityGroup>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {SG_COLS} FROM security_groups WHERE id = ?1"), [id], sg_row).optional()?)
}

pub fn list_security_groups(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<SecurityGroup>, u64), MetaError> {
    page(tx, "security_groups", SG_COLS, f, offset, limit, sg_row)
}

pub fn update_security_group(tx: &Transaction<'_>, g: &SecurityGroup) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE security_groups SET name = ?2, description = ?3, inner_policy = ?4 WHERE id = ?1",
        params![g.id, g.name, g.description, g.inner_policy],
    )?;
    Ok(())
}

pub fn delete_security_group(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM security_group_rules WHERE security_group_id = ?1", [id])?;
    tx.execute("DELETE FROM security_groups WHERE id = ?1", [id])?;
    crate::network::forget_resource(tx, id)
}

pub fn rules_of(tx: &Transaction<'_>, group_id: &str) -> Result<Vec<SgRule>, MetaError> {
    all(
        tx,
        &format!("SELECT {RULE_COLS} FROM security_group_rules WHERE security_group_id = ?1 ORDER BY created_at, id"),
        [group_id],
        rule_row,
    )
}

pub fn insert_rule(tx: &Transaction<'_>, r: &SgRule) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO security_group_rules ({RULE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
        params![
            r.id,
            r.security_group_id,
            r.direction,
            r.ip_protocol,
            r.port_range,
            r.source_port_range,
            r.policy,
            r.priority,
            r.nic_type,
            r.source_cidr,
            r.dest_cidr,
            r.source_group_id,
            r.source_group_owner_account,
            r.source_group_owner_id,
            r.dest_group_id,
            r.dest_group_owner_account,
            r.dest_group_owner_id,
            r.description,
            r.created_at
        ],
    )?;
    Ok(())
}

pub fn delete_rule(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM security_group_rules WHERE id = ?1", [id])?;
    Ok(())
}

/// Groups (other than `group_id` itself) whose rules name `group_id` as a peer.
pub fn groups_referencing(tx: &Transaction<'_>, group_id: &str) -> Result<Vec<SecurityGroup>, MetaError> {
    all(
        tx,
        &format!(
            "SELECT {SG_COLS} FROM security_groups WHERE id <> ?1 AND id IN (SELECT security_group_id FROM security_group_rules WHERE source_group_id = ?1 OR dest_group_id = ?1) ORDER BY id"
        ),
        [group_id],
        sg_row,
    )
}

/// Network interfaces that are members of a group.
pub fn members_of(tx: &Transaction<'_>, group_id: &str) -> Result<Vec<NetworkInterface>, MetaError> {
    all(
        tx,
        &format!("SELECT {ENI_COLS} FROM network_interfaces WHERE id IN (SELECT eni_id FROM eni_security_groups WHERE security_group_id = ?1) ORDER BY id"),
        [group_id],
        eni_row,
    )
}

/// The groups of a network interface, in the order they were joined.
pub fn groups_of_eni(tx: &Transaction<'_>, eni_id: &str) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT security_group_id FROM eni_security_groups WHERE eni_id = ?1 ORDER BY position", [eni_id], |r| {
        r.get(0)
    })
}

pub fn join_group(tx: &Transaction<'_>, eni_id: &str, group_id: &str) -> Result<(), MetaError> {
    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(position), 0) + 1 FROM eni_security_groups WHERE eni_id = ?1",
        [eni_id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO eni_security_groups (eni_id, security_group_id, position) VALUES (?1, ?2, ?3)",
        params![eni_id, group_id, next],
    )?;
    Ok(())
}

pub fn leave_group(tx: &Transaction<'_>, eni_id: &str, group_id: &str) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM eni_security_groups WHERE eni_id = ?1 AND security_group_id = ?2",
        params![eni_id, group_id],
    )?;
    Ok(())
}

// --- key pairs ------------------------------------------------------------------------------

pub fn insert_key_pair(tx: &Transaction<'_>, k: &KeyPair) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO key_pairs ({KP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![k.account_id as i64, k.region_id, k.name, k.fingerprint, k.public_key, k.created_at],
    )?;
    Ok(())
}

/// The OpenSSH public keys an instance is given (its key pair's, if it still exists).
pub fn public_keys_of(tx: &Transaction<'_>, i: &Instance) -> Result<Vec<String>, MetaError> {
    if i.key_pair_name.is_empty() {
        return Ok(vec![]);
    }
    Ok(get_key_pair(tx, i.account_id, &i.region_id, &i.key_pair_name)?.map(|k| vec![k.public_key]).unwrap_or_default())
}

pub fn get_key_pair(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    name: &str,
) -> Result<Option<KeyPair>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {KP_COLS} FROM key_pairs WHERE account_id = ?1 AND region_id = ?2 AND name = ?3"),
            params![account_id as i64, region_id, name],
            kp_row,
        )
        .optional()?)
}

pub fn list_key_pairs(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    name_like: Option<&str>,
    fingerprint: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<KeyPair>, u64), MetaError> {
    // Names may be given with `*` wildcards, as the API allows.
    let pattern = name_like.map(|n| n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").replace('*', "%"));
    let cond = "account_id = ?1 AND region_id = ?2 AND (?3 IS NULL OR name LIKE ?3 ESCAPE '\\') AND (?4 IS NULL OR fingerprint = ?4)";
    let total: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM key_pairs WHERE {cond}"),
        params![account_id as i64, region_id, pattern, fingerprint],
        |r| r.get(0),
    )?;
    let rows = all(
        tx,
        &format!("SELECT {KP_COLS} FROM key_pairs WHERE {cond} ORDER BY created_at, name LIMIT ?5 OFFSET ?6"),
        params![account_id as i64, region_id, pattern, fingerprint, limit as i64, offset as i64],
        kp_row,
    )?;
    Ok((rows, total as u64))
}

pub fn delete_key_pair(tx: &Transaction<'_>, account_id: u64, region_id: &str, name: &str) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM key_pairs WHERE account_id = ?1 AND region_id = ?2 AND name = ?3",
        params![account_id as i64, region_id, name],
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

// --- instances ------------------------------------------------------------------------------

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
            i.status,
            i.desired,
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

pub fn list_instances(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Instance>, u64), MetaError> {
    page(tx, "instances", INST_COLS, f, offset, limit, inst_row)
}

/// Instances whose observed state differs from the desired one (work for the reconciler).
pub fn instances_to_reconcile(tx: &Transaction<'_>) -> Result<Vec<Instance>, MetaError> {
    all(
        tx,
        &format!(
            "SELECT {INST_COLS} FROM instances WHERE desired <> status OR reboots > 0 OR status IN ('Pending', 'Starting', 'Stopping') ORDER BY created_at, id"
        ),
        [],
        inst_row,
    )
}

/// Which of `ids` have an instance record (any account), in one query per 500 ids.
pub fn existing_instances(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, MetaError> {
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!("SELECT id FROM instances WHERE id IN ({})", in_list(chunk.len()));
        found.extend(all(tx, &sql, params_from_iter(chunk.iter()), |r| r.get::<_, String>(0))?);
    }
    Ok(found)
}

/// Every instance that should be running (for a reconciler that adopts after a restart).
pub fn instances_wanted_running(tx: &Transaction<'_>) -> Result<Vec<Instance>, MetaError> {
    all(tx, &format!("SELECT {INST_COLS} FROM instances WHERE desired = 'Running' ORDER BY id"), [], inst_row)
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

/// The control plane's decision: the status clients see now, what should become of the
/// instance, and reboots asked for.
pub fn set_lifecycle(
    tx: &Transaction<'_>,
    id: &str,
    status: &str,
    desired: &str,
    reboots: i64,
) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE instances SET status = ?2, desired = ?3, reboots = ?4 WHERE id = ?1",
        params![id, status, desired, reboots],
    )?;
    Ok(())
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

/// The reconciler's report: moves the status from `from` to `to` only if nobody changed it
/// meanwhile; `true` if it moved. `started` stamps the start time; `reboot_done` clears one
/// asked-for reboot.
pub fn advance(
    tx: &Transaction<'_>,
    id: &str,
    from: &str,
    to: &str,
    started: Option<&str>,
    reboot_done: bool,
) -> Result<bool, MetaError> {
    let n = tx.execute(
        "UPDATE instances SET status = ?3, started_at = COALESCE(?4, started_at), reboots = CASE WHEN ?5 AND reboots > 0 THEN reboots - 1 ELSE reboots END WHERE id = ?1 AND status = ?2",
        params![id, from, to, started, reboot_done],
    )?;
    Ok(n == 1)
}

/// Removes an instance and everything that lives and dies with it: its network interfaces,
/// their addresses and group memberships, the disks that go with it, its tags.
pub fn delete_instance(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    set_forced_stop(tx, id, false)?;
    for eni in enis_of_instance(tx, id)? {
        tx.execute("DELETE FROM eni_security_groups WHERE eni_id = ?1", [&eni.id])?;
        tx.execute("DELETE FROM private_ips WHERE holder_id = ?1", [&eni.id])?;
        tx.execute("DELETE FROM network_interfaces WHERE id = ?1", [&eni.id])?;
        crate::network::forget_resource(tx, &eni.id)?;
    }
    for d in disks_of_instance(tx, id)? {
        if d.delete_with_instance {
            tx.execute("DELETE FROM disks WHERE id = ?1", [&d.id])?;
            crate::network::forget_resource(tx, &d.id)?;
        } else {
            tx.execute("UPDATE disks SET instance_id = '', status = 'Available' WHERE id = ?1", [&d.id])?;
        }
    }
    tx.execute("UPDATE eips SET status = 'Available', instance_id = '', instance_type = '', private_ip = '' WHERE instance_id = ?1", [id])?;
    tx.execute("DELETE FROM instances WHERE id = ?1", [id])?;
    crate::network::forget_resource(tx, id)
}

// --- network interfaces and addresses -------------------------------------------------------

pub fn insert_eni(tx: &Transaction<'_>, e: &NetworkInterface) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO network_interfaces ({ENI_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            e.id,
            e.account_id as i64,
            e.region_id,
            e.zone_id,
            e.vpc_id,
            e.vswitch_id,
            e.instance_id,
            e.primary_ip,
            e.mac,
            e.created_at
        ],
    )?;
    Ok(())
}

pub fn get_eni(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<NetworkInterface>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {ENI_COLS} FROM network_interfaces WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            eni_row,
        )
        .optional()?)
}

/// Instances of an account with any of these private addresses, in this group, or with any
/// of these EIPs (each filter applies when given).
pub fn instance_ids_matching(
    tx: &Transaction<'_>,
    account_id: u64,
    private_ips: &[String],
    group: Option<&str>,
    eips: &[String],
) -> Result<Vec<String>, MetaError> {
    let mut ids: Option<std::collections::BTreeSet<String>> = None;
    let mut keep = |found: Vec<String>| {
        let found: std::collections::BTreeSet<String> = found.into_iter().collect();
        ids = Some(match ids.take() {
            None => found,
            Some(prev) => prev.intersection(&found).cloned().collect(),
        });
    };
    if !private_ips.is_empty() {
        let sql = format!(
            "SELECT instance_id FROM network_interfaces WHERE account_id = ? AND primary_ip IN ({})",
            vec!["?"; private_ips.len()].join(", ")
        );
        let mut args: Vec<rusqlite::types::Value> = vec![(account_id as i64).into()];
        args.extend(private_ips.iter().map(|s| rusqlite::types::Value::from(s.clone())));
        keep(all(tx, &sql, params_from_iter(args), |r| r.get(0))?);
    }
    if let Some(g) = group {
        keep(all(
            tx,
            "SELECT n.instance_id FROM network_interfaces n JOIN eni_security_groups m ON m.eni_id = n.id WHERE n.account_id = ?1 AND m.security_group_id = ?2",
            params![account_id as i64, g],
            |r| r.get(0),
        )?);
    }
    if !eips.is_empty() {
        let sql = format!(
            "SELECT instance_id FROM eips WHERE account_id = ? AND ip_address IN ({})",
            vec!["?"; eips.len()].join(", ")
        );
        let mut args: Vec<rusqlite::types::Value> = vec![(account_id as i64).into()];
        args.extend(eips.iter().map(|s| rusqlite::types::Value::from(s.clone())));
        keep(all(tx, &sql, params_from_iter(args), |r| r.get(0))?);
    }
    Ok(ids.map(|s| s.into_iter().filter(|i| !i.is_empty()).collect()).unwrap_or_default())
}

/// What a page of instances needs besides their rows, fetched in a few queries for the whole
/// page: interfaces, group memberships (in join order), tags, EIPs.
#[derive(Debug, Default)]
pub struct InstanceExtras {
    pub enis: std::collections::HashMap<String, Vec<NetworkInterface>>,
    pub groups: std::collections::HashMap<String, Vec<String>>,
    pub tags: std::collections::BTreeMap<String, crate::network::Tags>,
    pub eips: std::collections::HashMap<String, crate::network::Eip>,
}

fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub fn instance_extras(tx: &Transaction<'_>, ids: &[&str]) -> Result<InstanceExtras, MetaError> {
    let mut x = InstanceExtras::default();
    if ids.is_empty() {
        return Ok(x);
    }
    let enis = all(
        tx,
        &format!(
            "SELECT {ENI_COLS} FROM network_interfaces WHERE instance_id IN ({}) ORDER BY created_at, id",
            in_list(ids.len())
        ),
        params_from_iter(ids.iter()),
        eni_row,
    )?;
    let eni_ids: Vec<String> = enis.iter().map(|e| e.id.clone()).collect();
    for e in enis {
        x.enis.entry(e.instance_id.clone()).or_default().push(e);
    }
    if !eni_ids.is_empty() {
        let rows: Vec<(String, String)> = all(
            tx,
            &format!(
                "SELECT eni_id, security_group_id FROM eni_security_groups WHERE eni_id IN ({}) ORDER BY eni_id, position",
                in_list(eni_ids.len())
            ),
            params_from_iter(eni_ids.iter()),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (eni, g) in rows {
            x.groups.entry(eni).or_default().push(g);
        }
    }
    x.tags = crate::network::tags_of(tx, ids)?;
    for e in crate::network::eips_of_instances(tx, ids)? {
        x.eips.insert(e.instance_id.clone(), e);
    }
    Ok(x)
}

pub fn enis_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<NetworkInterface>, MetaError> {
    all(
        tx,
        &format!("SELECT {ENI_COLS} FROM network_interfaces WHERE instance_id = ?1 ORDER BY created_at, id"),
        [instance_id],
        eni_row,
    )
}

/// The network interfaces of a VPC (the host's data plane holds one tap for each).
pub fn enis_of_vpc(tx: &Transaction<'_>, vpc_id: &str) -> Result<Vec<NetworkInterface>, MetaError> {
    all(tx, &format!("SELECT {ENI_COLS} FROM network_interfaces WHERE vpc_id = ?1 ORDER BY id"), [vpc_id], eni_row)
}

/// The VPCs that hold at least one network interface of an instance.
pub fn vpcs_with_instances(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT DISTINCT vpc_id FROM network_interfaces WHERE instance_id != '' ORDER BY vpc_id", [], |r| r.get(0))
}

/// Addresses already taken in a vSwitch.
pub fn taken_addresses(tx: &Transaction<'_>, vswitch_id: &str) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT ip_address FROM private_ips WHERE vswitch_id = ?1", [vswitch_id], |r| r.get(0))
}

/// Takes an address for a holder; `false` if someone holds it already.
pub fn take_address(tx: &Transaction<'_>, vswitch_id: &str, ip: &str, holder: &str) -> Result<bool, MetaError> {
    let n = tx.execute(
        "INSERT INTO private_ips (vswitch_id, ip_address, holder_id) SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM private_ips WHERE vswitch_id = ?1 AND ip_address = ?2)",
        params![vswitch_id, ip, holder],
    )?;
    Ok(n == 1)
}

pub fn mac_in_use(tx: &Transaction<'_>, mac: &str) -> Result<bool, MetaError> {
    Ok(tx.query_row("SELECT COUNT(*) > 0 FROM network_interfaces WHERE mac = ?1", [mac], |r| r.get(0))?)
}

// --- disks ----------------------------------------------------------------------------------

pub fn insert_disk(tx: &Transaction<'_>, d: &Disk) -> Result<(), MetaError> {
    tx.execute(
        &format!(
            "INSERT INTO disks ({DISK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            d.id,
            d.account_id as i64,
            d.region_id,
            d.zone_id,
            d.instance_id,
            d.name,
            d.description,
            d.category,
            d.size_gib,
            d.disk_type,
            d.device,
            d.image_id,
            d.status,
            d.delete_with_instance,
            d.created_at
        ],
    )?;
    Ok(())
}

pub fn disks_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<Disk>, MetaError> {
    all(tx, &format!("SELECT {DISK_COLS} FROM disks WHERE instance_id = ?1 ORDER BY device"), [instance_id], disk_row)
}

pub fn list_disks(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Disk>, u64), MetaError> {
    page(tx, "disks", DISK_COLS, f, offset, limit, disk_row)
}

pub fn set_disk_status_for_instance(tx: &Transaction<'_>, instance_id: &str, status: &str) -> Result<(), MetaError> {
    tx.execute("UPDATE disks SET status = ?2 WHERE instance_id = ?1", params![instance_id, status])?;
    Ok(())
}

/// Any row of `table` whose `column` equals `value`, for dependency checks (fixed names only).
pub fn count_where(
    tx: &Transaction<'_>,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"), [value], |r| r.get(0))?;
    Ok(n as u64)
}

/// Counts rows of `table` matching a filter.
pub fn count(tx: &Transaction<'_>, table: &'static str, f: &Filter) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {}", f.where_sql()),
        params_from_iter(f.args()),
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

// --- instance events ------------------------------------------------------------------------

/// A system event of an instance (`DescribeInstanceHistoryEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub instance_id: String,
    /// `SystemFailure.Stop`, …
    pub event_type: String,
    /// `Executed`, …
    pub cycle_status: String,
    pub reason: String,
    pub publish_time: String,
    pub finish_time: String,
    pub created_at: String,
}

const EVENT_COLS: &str =
    "id, account_id, region_id, instance_id, event_type, cycle_status, reason, publish_time, finish_time, created_at";

fn event_row(r: &Row<'_>) -> rusqlite::Result<InstanceEvent> {
    Ok(InstanceEvent {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        instance_id: r.get(3)?,
        event_type: r.get(4)?,
        cycle_status: r.get(5)?,
        reason: r.get(6)?,
        publish_time: r.get(7)?,
        finish_time: r.get(8)?,
        created_at: r.get(9)?,
    })
}

pub fn insert_event(tx: &Transaction<'_>, e: &InstanceEvent) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO instance_events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            e.id,
            e.account_id as i64,
            e.region_id,
            e.instance_id,
            e.event_type,
            e.cycle_status,
            e.reason,
            e.publish_time,
            e.finish_time,
            e.created_at
        ],
    )?;
    Ok(())
}

pub fn list_events(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<InstanceEvent>, u64), MetaError> {
    page(tx, "instance_events", EVENT_COLS, f, offset, limit, event_row)
}
