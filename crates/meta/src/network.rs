//! VPC networking records: VPCs, vSwitches, route tables and entries, EIPs, and tags.
//! Plain data plus the queries the VPC service needs; rules live in the service.

use crate::filter::Filter;
use crate::MetaError;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};
use std::collections::BTreeMap;

pub type Tags = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub is_default: bool,
    pub vrouter_id: String,
    pub route_table_id: String,
    pub user_cidrs: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VSwitch {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub vpc_id: String,
    pub vrouter_id: String,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub id: String,
    pub route_table_id: String,
    pub account_id: u64,
    pub destination: String,
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub kind: String,
    pub status: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub ip_address: String,
    pub bandwidth: i64,
    pub internet_charge_type: String,
    pub isp: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub instance_id: String,
    pub instance_type: String,
    pub private_ip: String,
    pub created_at: String,
}

const VPC_COLS: &str = "id, account_id, region_id, cidr_block, name, description, status, is_default, vrouter_id, route_table_id, user_cidrs, created_at";
const VSW_COLS: &str = "id, account_id, region_id, vpc_id, zone_id, cidr_block, name, description, status, created_at";
const RTB_COLS: &str = "id, account_id, region_id, vpc_id, vrouter_id, kind, name, description, created_at";
const RTE_COLS: &str = "id, route_table_id, account_id, destination, next_hop_type, next_hop_id, kind, status, name, description, created_at";
const EIP_COLS: &str = "id, account_id, region_id, ip_address, bandwidth, internet_charge_type, isp, name, description, status, instance_id, instance_type, private_ip, created_at";

fn vpc_row(r: &Row<'_>) -> rusqlite::Result<Vpc> {
    let cidrs: String = r.get(10)?;
    Ok(Vpc {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        cidr_block: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        status: r.get(6)?,
        is_default: r.get(7)?,
        vrouter_id: r.get(8)?,
        route_table_id: r.get(9)?,
        user_cidrs: cidrs.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        created_at: r.get(11)?,
    })
}

fn vsw_row(r: &Row<'_>) -> rusqlite::Result<VSwitch> {
    Ok(VSwitch {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        vpc_id: r.get(3)?,
        zone_id: r.get(4)?,
        cidr_block: r.get(5)?,
        name: r.get(6)?,
        description: r.get(7)?,
        status: r.get(8)?,
        created_at: r.get(9)?,
    })
}

fn rtb_row(r: &Row<'_>) -> rusqlite::Result<RouteTable> {
    Ok(RouteTable {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        vpc_id: r.get(3)?,
        vrouter_id: r.get(4)?,
        kind: r.get(5)?,
        name: r.get(6)?,
        description: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn rte_row(r: &Row<'_>) -> rusqlite::Result<RouteEntry> {
    Ok(RouteEntry {
        id: r.get(0)?,
        route_table_id: r.get(1)?,
        account_id: r.get::<_, i64>(2)? as u64,
        destination: r.get(3)?,
        next_hop_type: r.get(4)?,
        next_hop_id: r.get(5)?,
        kind: r.get(6)?,
        status: r.get(7)?,
        name: r.get(8)?,
        description: r.get(9)?,
        created_at: r.get(10)?,
    })
}

fn eip_row(r: &Row<'_>) -> rusqlite::Result<Eip> {
    Ok(Eip {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        ip_address: r.get(3)?,
        bandwidth: r.get(4)?,
        internet_charge_type: r.get(5)?,
        isp: r.get(6)?,
        name: r.get(7)?,
        description: r.get(8)?,
        status: r.get(9)?,
        instance_id: r.get(10)?,
        instance_type: r.get(11)?,
        private_ip: r.get(12)?,
        created_at: r.get(13)?,
    })
}

/// One page of a filtered list, in creation order, and the total count.
pub(crate) fn page<T>(
    tx: &Transaction<'_>,
    table: &str,
    cols: &str,
    f: &Filter,
    offset: u64,
    limit: u64,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, u64), MetaError> {
    let w = f.where_sql();
    let total: i64 =
        tx.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE {w}"), params_from_iter(f.args()), |r| r.get(0))?;
    let mut args = f.args();
    args.push((limit.min(i64::MAX as u64) as i64).into());
    args.push((offset.min(i64::MAX as u64) as i64).into());
    let mut st =
        tx.prepare_cached(&format!("SELECT {cols} FROM {table} WHERE {w} ORDER BY created_at, id LIMIT ? OFFSET ?"))?;
    let rows = st.query_map(params_from_iter(args), map)?.collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total as u64))
}

// --- VPCs -----------------------------------------------------------------------------------

pub fn insert_vpc(tx: &Transaction<'_>, v: &Vpc) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO vpcs ({VPC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            v.id,
            v.account_id as i64,
            v.region_id,
            v.cidr_block,
            v.name,
            v.description,
            v.status,
            v.is_default,
            v.vrouter_id,
            v.route_table_id,
            v.user_cidrs.join(","),
            v.created_at
        ],
    )?;
    Ok(())
}

pub fn get_vpc(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Vpc>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {VPC_COLS} FROM vpcs WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            vpc_row,
        )
        .optional()?)
}

pub fn list_vpcs(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Vpc>, u64), MetaError> {
    page(tx, "vpcs", VPC_COLS, f, offset, limit, vpc_row)
}

pub fn update_vpc(tx: &Transaction<'_>, v: &Vpc) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE vpcs SET name = ?2, description = ?3, status = ?4, user_cidrs = ?5, cidr_block = ?6 WHERE id = ?1",
        params![v.id, v.name, v.description, v.status, v.user_cidrs.join(","), v.cidr_block],
    )?;
    Ok(())
}

/// Deletes a VPC with its system route table, vRouter and their entries.
pub fn delete_vpc(tx: &Transaction<'_>, v: &Vpc) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM route_entries WHERE route_table_id IN (SELECT id FROM route_tables WHERE vpc_id = ?1)",
        [&v.id],
    )?;
    let tables: Vec<String> = {
        let mut st = tx.prepare_cached("SELECT id FROM route_tables WHERE vpc_id = ?1")?;
        let ids = st.query_map([&v.id], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
        ids
    };
    tx.execute("DELETE FROM route_tables WHERE vpc_id = ?1", [&v.id])?;
    tx.execute("DELETE FROM vpcs WHERE id = ?1", [&v.id])?;
    for id in tables.iter().chain([&v.id, &v.vrouter_id]) {
        forget_resource(tx, id)?;
    }
    Ok(())
}

/// Registers a resource whose id the caller derives (named resources such as key pairs).
pub fn register_named(
    tx: &Transaction<'_>,
    id: &str,
    account_id: u64,
    kind: &str,
    region_id: &str,
    at: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO resources (id, account_id, kind, region_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, account_id as i64, kind, region_id, at],
    )?;
    Ok(())
}

/// The name of an account, by id.
pub fn account_name(tx: &Transaction<'_>, account_id: u64) -> Result<Option<String>, MetaError> {
    Ok(tx.query_row("SELECT name FROM accounts WHERE id = ?1", [account_id as i64], |r| r.get(0)).optional()?)
}

/// Removes a resource's ownership row and its tags.
pub fn forget_resource(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM tags WHERE resource_id = ?1", [id])?;
    tx.execute("DELETE FROM resources WHERE id = ?1", [id])?;
    Ok(())
}

/// Marks every `Pending` VPC and vSwitch `Available`; returns the ids changed.
pub fn activate_pending(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    let mut ids = Vec::new();
    for table in ["vpcs", "vswitches"] {
        let mut st = tx.prepare_cached(&format!("SELECT id FROM {table} WHERE status = 'Pending'"))?;
        let found = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        tx.execute(&format!("UPDATE {table} SET status = 'Available' WHERE status = 'Pending'"), [])?;
        ids.extend(found);
    }
    Ok(ids)
}

// --- vSwitches ------------------------------------------------------------------------------

pub fn insert_vswitch(tx: &Transaction<'_>, v: &VSwitch) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO vswitches ({VSW_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            v.id,
            v.account_id as i64,
            v.region_id,
            v.vpc_id,
            v.zone_id,
            v.cidr_block,
            v.name,
            v.description,
            v.status,
            v.created_at
        ],
    )?;
    Ok(())
}

pub fn get_vswitch(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<VSwitch>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {VSW_COLS} FROM vswitches WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            vsw_row,
        )
        .optional()?)
}

pub fn list_vswitches(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<VSwitch>, u64), MetaError> {
    page(tx, "vswitches", VSW_COLS, f, offset, limit, vsw_row)
}

pub fn vswitches_of_vpc(tx: &Transaction<'_>, vpc_id: &str) -> Result<Vec<VSwitch>, MetaError> {
    let mut st =
        tx.prepare_cached(&format!("SELECT {VSW_COLS} FROM vswitches WHERE vpc_id = ?1 ORDER BY created_at, id"))?;
    let rows = st.query_map([vpc_id], vsw_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn update_vswitch(tx: &Transaction<'_>, v: &VSwitch) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE vswitches SET name = ?2, description = ?3, status = ?4 WHERE id = ?1",
        params![v.id, v.name, v.description, v.status],
    )?;
    Ok(())
}

pub fn delete_vswitch(tx: &Transaction<'_>, v: &VSwitch) -> Result<(), MetaError> {
    tx.execute("DELETE FROM vswitches WHERE id = ?1", [&v.id])?;
    forget_resource(tx, &v.id)
}

/// How many addresses of a vSwitch are taken (by network interfaces, later instances).
pub fn used_addresses(tx: &Transaction<'_>, vswitch_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM private_ips WHERE vswitch_id = ?1", [vswitch_id], |r| r.get(0))?;
    Ok(n as u64)
}

// --- route tables and entries ---------------------------------------------------------------

pub fn insert_route_table(tx: &Transaction<'_>, t: &RouteTable) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO route_tables ({RTB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            t.id,
            t.account_id as i64,
            t.region_id,
            t.vpc_id,
            t.vrouter_id,
            t.kind,
            t.name,
            t.description,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn get_route_table(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<RouteTable>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {RTB_COLS} FROM route_tables WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            rtb_row,
        )
        .optional()?)
}

pub fn list_route_tables(
    tx: &Transaction<'_>,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<RouteTable>, u64), MetaError> {
    page(tx, "route_tables", RTB_COLS, f, offset, limit, rtb_row)
}

pub fn insert_route_entry(tx: &Transaction<'_>, e: &RouteEntry) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO route_entries ({RTE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            e.id,
            e.route_table_id,
            e.account_id as i64,
            e.destination,
            e.next_hop_type,
            e.next_hop_id,
            e.kind,
            e.status,
            e.name,
            e.description,
            e.created_at
        ],
    )?;
    Ok(())
}

pub fn route_entries(tx: &Transaction<'_>, route_table_id: &str) -> Result<Vec<RouteEntry>, MetaError> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT {RTE_COLS} FROM route_entries WHERE route_table_id = ?1 ORDER BY kind DESC, destination"
    ))?;
    let rows = st.query_map([route_table_id], rte_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn delete_route_entry(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM route_entries WHERE id = ?1", [id])?;
    Ok(())
}

/// Route entries (of any table of the account) whose next hop is `next_hop_id`.
pub fn routes_via(tx: &Transaction<'_>, next_hop_id: &str) -> Result<u64, MetaError> {
    let n: i64 =
        tx.query_row("SELECT COUNT(*) FROM route_entries WHERE next_hop_id = ?1", [next_hop_id], |r| r.get(0))?;
    Ok(n as u64)
}

// --- EIPs -----------------------------------------------------------------------------------

pub fn insert_eip(tx: &Transaction<'_>, e: &Eip) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO eips ({EIP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            e.id,
            e.account_id as i64,
            e.region_id,
            e.ip_address,
            e.bandwidth,
            e.internet_charge_type,
            e.isp,
            e.name,
            e.description,
            e.status,
            e.instance_id,
            e.instance_type,
            e.private_ip,
            e.created_at
        ],
    )?;
    Ok(())
}

pub fn get_eip(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Eip>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {EIP_COLS} FROM eips WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            eip_row,
        )
        .optional()?)
}

pub fn list_eips(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Eip>, u64), MetaError> {
    page(tx, "eips", EIP_COLS, f, offset, limit, eip_row)
}

/// EIPs associated with any of these instances.
pub fn eips_of_instances(tx: &Transaction<'_>, ids: &[&str]) -> Result<Vec<Eip>, MetaError> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!("SELECT {EIP_COLS} FROM eips WHERE instance_id IN ({})", vec!["?"; ids.len()].join(", "));
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(ids.iter()), eip_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn update_eip(tx: &Transaction<'_>, e: &Eip) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE eips SET status = ?2, instance_id = ?3, instance_type = ?4, private_ip = ?5, name = ?6, description = ?7, bandwidth = ?8 WHERE id = ?1",
        params![e.id, e.status, e.instance_id, e.instance_type, e.private_ip, e.name, e.description, e.bandwidth],
    )?;
    Ok(())
}

pub fn delete_eip(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM eips WHERE id = ?1", [id])?;
    forget_resource(tx, id)
}

/// Every public address in use in the deployment: EIPs and instances' public IPs, of all
/// accounts (they share one pool).
pub fn public_addresses_in_use(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    let mut st =
        tx.prepare_cached("SELECT ip_address FROM eips UNION SELECT public_ip FROM instances WHERE public_ip <> ''")?;
    let rows = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

// --- tags -----------------------------------------------------------------------------------

/// Sets (adds or overwrites) tags on a resource.
pub fn set_tags(tx: &Transaction<'_>, resource_id: &str, tags: &[(String, String)]) -> Result<(), MetaError> {
    for (k, v) in tags {
        tx.execute("DELETE FROM tags WHERE resource_id = ?1 AND tag_key = ?2", params![resource_id, k])?;
        tx.execute(
            "INSERT INTO tags (resource_id, tag_key, tag_value) VALUES (?1, ?2, ?3)",
            params![resource_id, k, v],
        )?;
    }
    Ok(())
}

pub fn remove_tags(tx: &Transaction<'_>, resource_id: &str, keys: &[String]) -> Result<(), MetaError> {
    for k in keys {
        tx.execute("DELETE FROM tags WHERE resource_id = ?1 AND tag_key = ?2", params![resource_id, k])?;
    }
    Ok(())
}

pub fn tag_count(tx: &Transaction<'_>, resource_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM tags WHERE resource_id = ?1", [resource_id], |r| r.get(0))?;
    Ok(n as u64)
}

/// The tags of each of `ids`, sorted by key.
pub fn tags_of(tx: &Transaction<'_>, ids: &[&str]) -> Result<BTreeMap<String, Tags>, MetaError> {
    let mut out: BTreeMap<String, Tags> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT resource_id, tag_key, tag_value FROM tags WHERE resource_id IN ({}) ORDER BY tag_key",
        vec!["?"; ids.len()].join(", ")
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(ids.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    for row in rows {
        let (id, k, v) = row?;
        out.entry(id).or_default().push((k, v));
    }
    Ok(out)
}
