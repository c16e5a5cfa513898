//! Instance system events (table `instance_events`): what happened to an instance that nobody
//! asked for (`DescribeInstanceHistoryEvents`), e.g. its guest's process ended on its own.

use crate::filter::Filter;
use crate::query::page;
use crate::status::status_enum;
use crate::MetaError;
use rusqlite::{params, Row, Transaction};

status_enum! {
    /// Where an event is in its life (the API's `EventCycleStatus`).
    pub enum EventCycleStatus as "event cycle status" {
        Scheduled = "Scheduled",
        Avoided = "Avoided",
        Executing = "Executing",
        Executed = "Executed",
        Canceled = "Canceled",
        Failed = "Failed",
        Inquiring = "Inquiring",
    }
}

/// A system event of an instance (`DescribeInstanceHistoryEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub instance_id: String,
    /// `SystemFailure.Stop`, …
    pub event_type: String,
    /// Where it is in its life.
    pub cycle_status: EventCycleStatus,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn event_cycle_statuses_round_trip() {
        assert_sql_round_trips(EventCycleStatus::ALL, EventCycleStatus::as_str, EventCycleStatus::parse);
    }

    #[test]
    fn an_event_row_keeps_its_cycle_status() {
        let (s, account) = testing::store();
        for (n, &cycle_status) in EventCycleStatus::ALL.iter().enumerate() {
            let e = InstanceEvent {
                id: format!("e-{n}"),
                account_id: account,
                region_id: testing::REGION.into(),
                instance_id: "i-1".into(),
                event_type: "SystemFailure.Stop".into(),
                cycle_status,
                reason: String::new(),
                publish_time: testing::CREATED.into(),
                finish_time: testing::CREATED.into(),
                created_at: testing::CREATED.into(),
            };
            s.write(|tx| insert_event(tx, &e)).unwrap();
            let f = Filter::owned(account, testing::REGION).any_of("cycle_status", &[cycle_status.as_str()]);
            assert_eq!(s.read(|tx| list_events(tx, &f, 0, 10)).unwrap(), (vec![e], 1));
        }
    }
}
