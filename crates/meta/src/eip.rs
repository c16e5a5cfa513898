//! Elastic IP addresses (table `eips`): public addresses from the deployment's pool, shared
//! by all accounts with instances' own public IPs, associated with an instance or a network
//! interface.

use crate::filter::Filter;
use crate::query::{all, in_list, owned_where_in, page};
use crate::resource::forget_resource;
use crate::status::status_enum;
use crate::MetaError;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

status_enum! {
    /// What `DescribeEipAddresses` shows an EIP as.
    pub enum EipStatus as "EIP status" {
        Associating = "Associating",
        Unassociating = "Unassociating",
        InUse = "InUse",
        Available = "Available",
        Releasing = "Releasing",
    }
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
    pub status: EipStatus,
    pub instance_id: String,
    pub instance_type: String,
    pub private_ip: String,
    pub created_at: String,
}

const EIP_COLS: &str = "id, account_id, region_id, ip_address, bandwidth, internet_charge_type, isp, name, description, status, instance_id, instance_type, private_ip, created_at";

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
    let sql = format!("SELECT {EIP_COLS} FROM eips WHERE instance_id IN ({})", in_list(ids.len()));
    all(tx, &sql, params_from_iter(ids.iter()), eip_row)
}

/// The instances (ids, `""` for none) that this account's EIPs with these addresses are
/// associated with.
pub(crate) fn instances_behind(
    tx: &Transaction<'_>,
    account_id: u64,
    ips: &[String],
) -> Result<Vec<String>, MetaError> {
    owned_where_in(tx, "eips", "instance_id", account_id, "ip_address", ips)
}

pub fn update_eip(tx: &Transaction<'_>, e: &Eip) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE eips SET status = ?2, instance_id = ?3, instance_type = ?4, private_ip = ?5, name = ?6, description = ?7, bandwidth = ?8 WHERE id = ?1",
        params![e.id, e.status, e.instance_id, e.instance_type, e.private_ip, e.name, e.description, e.bandwidth],
    )?;
    Ok(())
}

/// Unassociates the EIPs of an instance that is going away: they stay the account's.
pub(crate) fn unassociate_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE eips SET status = ?2, instance_id = '', instance_type = '', private_ip = '' WHERE instance_id = ?1",
        params![instance_id, EipStatus::Available],
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
    all(tx, "SELECT ip_address FROM eips UNION SELECT public_ip FROM instances WHERE public_ip <> ''", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn eip_statuses_round_trip() {
        assert_sql_round_trips(EipStatus::ALL, EipStatus::as_str, EipStatus::parse);
    }

    #[test]
    fn an_eip_row_keeps_its_status() {
        let (s, account) = testing::store();
        for (n, &status) in EipStatus::ALL.iter().enumerate() {
            let e = Eip {
                id: testing::register(&s, account, "eip", "eip"),
                account_id: account,
                region_id: testing::REGION.into(),
                ip_address: format!("203.0.113.{n}"),
                bandwidth: 5,
                internet_charge_type: "PayByBandwidth".into(),
                isp: "BGP".into(),
                name: String::new(),
                description: String::new(),
                status,
                instance_id: format!("i-{n}"),
                instance_type: "EcsInstance".into(),
                private_ip: String::new(),
                created_at: testing::CREATED.into(),
            };
            s.write(|tx| insert_eip(tx, &e)).unwrap();
            assert_eq!(s.read(|tx| get_eip(tx, account, &e.id)).unwrap(), Some(e.clone()));
            s.write(|tx| unassociate_instance(tx, &e.instance_id)).unwrap();
            let after = s.read(|tx| get_eip(tx, account, &e.id)).unwrap().unwrap();
            assert_eq!((after.status, after.instance_id.as_str()), (EipStatus::Available, ""));
        }
    }
}
