//! Route tables and their entries (tables `route_tables`, `route_entries`). Every VPC has one
//! system table; each vSwitch adds a system entry for its block, and custom entries send a
//! destination to an instance or a network interface.

use crate::filter::Filter;
use crate::query::{all, page};
use crate::status::status_enum;
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

status_enum! {
    /// What `DescribeRouteEntryList` shows a route entry as.
    pub enum RouteEntryStatus as "route entry status" {
        Pending = "Pending",
        Available = "Available",
    }
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
    pub status: RouteEntryStatus,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

const RTB_COLS: &str = "id, account_id, region_id, vpc_id, vrouter_id, kind, name, description, created_at";
const RTE_COLS: &str = "id, route_table_id, account_id, destination, next_hop_type, next_hop_id, kind, status, name, description, created_at";

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

// --- tables ---------------------------------------------------------------------------------

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

/// Deletes a VPC's route tables and their entries; returns the tables' ids (to forget).
pub(crate) fn delete_route_tables_of_vpc(tx: &Transaction<'_>, vpc_id: &str) -> Result<Vec<String>, MetaError> {
    tx.execute(
        "DELETE FROM route_entries WHERE route_table_id IN (SELECT id FROM route_tables WHERE vpc_id = ?1)",
        [vpc_id],
    )?;
    let tables = all(tx, "SELECT id FROM route_tables WHERE vpc_id = ?1", [vpc_id], |r| r.get(0))?;
    tx.execute("DELETE FROM route_tables WHERE vpc_id = ?1", [vpc_id])?;
    Ok(tables)
}

// --- entries --------------------------------------------------------------------------------

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
    all(
        tx,
        &format!("SELECT {RTE_COLS} FROM route_entries WHERE route_table_id = ?1 ORDER BY kind DESC, destination"),
        [route_table_id],
        rte_row,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn route_entry_statuses_round_trip() {
        assert_sql_round_trips(RouteEntryStatus::ALL, RouteEntryStatus::as_str, RouteEntryStatus::parse);
    }

    #[test]
    fn a_route_entry_row_keeps_its_status() {
        let (s, account) = testing::store();
        let vpc = testing::insert_vpc(&s, account);
        for (n, &status) in RouteEntryStatus::ALL.iter().enumerate() {
            let e = RouteEntry {
                id: format!("rte-{n}"),
                route_table_id: vpc.route_table_id.clone(),
                account_id: account,
                destination: format!("10.{n}.0.0/16"),
                next_hop_type: "local".into(),
                next_hop_id: String::new(),
                kind: "System".into(),
                status,
                name: String::new(),
                description: String::new(),
                created_at: testing::CREATED.into(),
            };
            s.write(|tx| insert_route_entry(tx, &e)).unwrap();
            let read = s.read(|tx| route_entries(tx, &vpc.route_table_id)).unwrap();
            assert_eq!(read.iter().find(|r| r.id == e.id), Some(&e));
        }
        s.write(|tx| delete_route_tables_of_vpc(tx, &vpc.id)).unwrap();
        assert!(s.read(|tx| route_entries(tx, &vpc.route_table_id)).unwrap().is_empty());
    }
}
