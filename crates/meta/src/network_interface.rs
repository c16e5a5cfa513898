//! Network interfaces (table `network_interfaces`) and the private addresses they hold in
//! their vSwitch (table `private_ips`). An instance has one primary interface, created with
//! it; its security groups are memberships of the interface (see
//! [`security_group`](crate::security_group)).

use crate::query::{all, in_list, owned_where_in};
use crate::resource::forget_resource;
use crate::MetaError;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

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

pub(crate) const ENI_COLS: &str =
    "id, account_id, region_id, zone_id, vpc_id, vswitch_id, instance_id, primary_ip, mac, created_at";

pub(crate) fn eni_row(r: &Row<'_>) -> rusqlite::Result<NetworkInterface> {
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

// --- interfaces -----------------------------------------------------------------------------

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

pub fn enis_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<NetworkInterface>, MetaError> {
    all(
        tx,
        &format!("SELECT {ENI_COLS} FROM network_interfaces WHERE instance_id = ?1 ORDER BY created_at, id"),
        [instance_id],
        eni_row,
    )
}

/// The interfaces of any of these instances, in creation order.
pub(crate) fn enis_of_instances(tx: &Transaction<'_>, ids: &[&str]) -> Result<Vec<NetworkInterface>, MetaError> {
    all(
        tx,
        &format!(
            "SELECT {ENI_COLS} FROM network_interfaces WHERE instance_id IN ({}) ORDER BY created_at, id",
            in_list(ids.len())
        ),
        params_from_iter(ids.iter()),
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

/// The instances (ids, `""` for none) of this account's interfaces with these primary
/// addresses.
pub(crate) fn instances_at(tx: &Transaction<'_>, account_id: u64, ips: &[String]) -> Result<Vec<String>, MetaError> {
    owned_where_in(tx, "network_interfaces", "instance_id", account_id, "primary_ip", ips)
}

pub fn mac_in_use(tx: &Transaction<'_>, mac: &str) -> Result<bool, MetaError> {
    Ok(tx.query_row("SELECT COUNT(*) > 0 FROM network_interfaces WHERE mac = ?1", [mac], |r| r.get(0))?)
}

/// Removes an interface with the addresses it holds (its group memberships go first: see
/// [`leave_all_groups`](crate::security_group::leave_all_groups)).
pub(crate) fn delete_eni(tx: &Transaction<'_>, eni_id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM private_ips WHERE holder_id = ?1", [eni_id])?;
    tx.execute("DELETE FROM network_interfaces WHERE id = ?1", [eni_id])?;
    forget_resource(tx, eni_id)
}

// --- addresses ------------------------------------------------------------------------------

/// Addresses already taken in a vSwitch.
pub fn taken_addresses(tx: &Transaction<'_>, vswitch_id: &str) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT ip_address FROM private_ips WHERE vswitch_id = ?1", [vswitch_id], |r| r.get(0))
}

/// How many addresses of a vSwitch are taken (by network interfaces).
pub fn used_addresses(tx: &Transaction<'_>, vswitch_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM private_ips WHERE vswitch_id = ?1", [vswitch_id], |r| r.get(0))?;
    Ok(n as u64)
}

/// Takes an address for a holder; `false` if someone holds it already.
pub fn take_address(tx: &Transaction<'_>, vswitch_id: &str, ip: &str, holder: &str) -> Result<bool, MetaError> {
    let n = tx.execute(
        "INSERT INTO private_ips (vswitch_id, ip_address, holder_id) SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM private_ips WHERE vswitch_id = ?1 AND ip_address = ?2)",
        params![vswitch_id, ip, holder],
    )?;
    Ok(n == 1)
}
