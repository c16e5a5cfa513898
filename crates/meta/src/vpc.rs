//! VPCs (table `vpcs`). A VPC is created `Pending` with its vRouter and system route table
//! (see [`route_table`]); the network reconciler makes it `Available`.

use crate::filter::Filter;
use crate::query::page;
use crate::resource::forget_resource;
use crate::status::status_enum;
use crate::{route_table, MetaError};
use rusqlite::{params, OptionalExtension, Row, Transaction};

status_enum! {
    /// What `DescribeVpcs` shows a VPC as.
    pub enum VpcStatus as "VPC status" {
        Pending = "Pending",
        Available = "Available",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub status: VpcStatus,
    pub is_default: bool,
    pub vrouter_id: String,
    pub route_table_id: String,
    pub user_cidrs: Vec<String>,
    pub created_at: String,
}

const VPC_COLS: &str = "id, account_id, region_id, cidr_block, name, description, status, is_default, vrouter_id, route_table_id, user_cidrs, created_at";

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
    let tables = route_table::delete_route_tables_of_vpc(tx, &v.id)?;
    tx.execute("DELETE FROM vpcs WHERE id = ?1", [&v.id])?;
    for id in tables.iter().chain([&v.id, &v.vrouter_id]) {
        forget_resource(tx, id)?;
    }
    Ok(())
}

/// Marks every `Pending` VPC `Available`; returns the ids changed.
pub fn activate_pending_vpcs(tx: &Transaction<'_>) -> Result<Vec<String>, MetaError> {
    let mut st = tx.prepare_cached("SELECT id FROM vpcs WHERE status = ?1")?;
    let found = st.query_map([VpcStatus::Pending], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    tx.execute("UPDATE vpcs SET status = ?2 WHERE status = ?1", params![VpcStatus::Pending, VpcStatus::Available])?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn vpc_statuses_round_trip() {
        assert_sql_round_trips(VpcStatus::ALL, VpcStatus::as_str, VpcStatus::parse);
    }

    #[test]
    fn a_vpc_row_keeps_its_status() {
        let (s, account) = testing::store();
        for &status in VpcStatus::ALL {
            let v = Vpc { status, ..testing::vpc(&s, account) };
            s.write(|tx| insert_vpc(tx, &v)).unwrap();
            assert_eq!(s.read(|tx| get_vpc(tx, account, &v.id)).unwrap(), Some(v));
        }
        let pending = s
            .read(|tx| {
                list_vpcs(
                    tx,
                    &Filter::owned(account, testing::REGION).eq("status", Some(VpcStatus::Pending.as_str())),
                    0,
                    10,
                )
            })
            .unwrap();
        assert_eq!(pending.1, 1);
        assert_eq!(s.write(activate_pending_vpcs).unwrap(), vec![pending.0[0].id.clone()]);
        assert!(s
            .read(|tx| list_vpcs(tx, &Filter::owned(account, testing::REGION), 0, 10))
            .unwrap()
            .0
            .iter()
            .all(|v| v.status == VpcStatus::Available));
    }
}
