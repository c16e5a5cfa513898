//! vSwitches (table `vswitches`): a VPC's subnets, one zone each. Created `Pending`, made
//! `Available` by the network reconciler. The addresses taken in one are in
//! [`network_interface`](crate::network_interface).

use crate::filter::Filter;
use crate::query::{all, page};
use crate::resource::forget_resource;
use crate::status::status_enum;
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

status_enum! {
    /// What `DescribeVSwitches` shows a vSwitch as.
    pub enum VSwitchStatus as "vSwitch status" {
        Pending = "Pending",
        Available = "Available",
    }
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
    pub status: VSwitchStatus,
    pub created_at: String,
}

const VSW_COLS: &str = "id, account_id, region_id, vpc_id, zone_id, cidr_block, name, description, status, created_at";

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
    all(tx, &format!("SELECT {VSW_COLS} FROM vswitches WHERE vpc_id = ?1 ORDER BY created_at, id"), [vpc_id], vsw_row)
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

/// Marks every `Pending` vSwitch `Available`; returns the ids changed.
pub fn activate_pending_vswitches(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    let found = all(tx, "SELECT id FROM vswitches WHERE status = ?1", [VSwitchStatus::Pending], |r| r.get(0))?;
    tx.execute(
        "UPDATE vswitches SET status = ?2 WHERE status = ?1",
        params![VSwitchStatus::Pending, VSwitchStatus::Available],
    )?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn vswitch_statuses_round_trip() {
        assert_sql_round_trips(VSwitchStatus::ALL, VSwitchStatus::as_str, VSwitchStatus::parse);
    }

    #[test]
    fn a_vswitch_row_keeps_its_status() {
        let (s, account) = testing::store();
        let vpc = testing::insert_vpc(&s, account);
        let mut ids = Vec::new();
        for &status in VSwitchStatus::ALL {
            let v = VSwitch { status, ..testing::vswitch(&s, account, &vpc.id) };
            s.write(|tx| insert_vswitch(tx, &v)).unwrap();
            assert_eq!(s.read(|tx| get_vswitch(tx, account, &v.id)).unwrap(), Some(v.clone()));
            ids.push(v);
        }
        let pending: Vec<String> =
            ids.iter().filter(|v| v.status == VSwitchStatus::Pending).map(|v| v.id.clone()).collect();
        assert_eq!(s.write(activate_pending_vswitches).unwrap(), pending);
        assert!(s
            .read(|tx| vswitches_of_vpc(tx, &vpc.id))
            .unwrap()
            .iter()
            .all(|v| v.status == VSwitchStatus::Available));
    }
}
