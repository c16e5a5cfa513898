//! Instance system events (ECS 2014-05-26 `DescribeInstanceHistoryEvents`): what happened to
//! an instance that nobody asked for. feitian records one kind today, `SystemFailure.Stop`,
//! when an instance's virtual machine process ends without its guest shutting down; the
//! event is complete (`Executed`) when recorded.

use crate::Ecs;
use feitian_api::paging::{Page, PageInfo};
use feitian_api::region::require_region;
use feitian_api::{ApiError, Ctx, Params};
use feitian_meta::instance_event::{self, EventCycleStatus, InstanceEvent};
use feitian_meta::Filter;
use serde::Serialize;
use std::sync::Arc;

/// The event types of the API, with the numeric codes feitian gives them. The names are the
/// API's; Alibaba Cloud's own numeric codes are not in the public documentation at hand, so
/// these are feitian's numbering, stable from here on.
const EVENT_TYPES: &[(&str, u32)] = &[
    ("SystemMaintenance.Reboot", 1),
    ("SystemFailure.Reboot", 2),
    ("InstanceFailure.Reboot", 3),
    ("SystemMaintenance.Redeploy", 4),
    ("SystemFailure.Redeploy", 5),
    ("SystemMaintenance.Stop", 6),
    ("SystemFailure.Stop", 7),
    ("SystemFailure.Delete", 8),
    ("InstanceExpiration.Stop", 9),
    ("InstanceExpiration.Delete", 10),
    ("AccountUnbalanced.Stop", 11),
    ("AccountUnbalanced.Delete", 12),
];

/// Lifecycle states with their codes; the inactive ones are what a query returns by default.
const CYCLE_STATES: &[(EventCycleStatus, u32, bool)] = &[
    (EventCycleStatus::Scheduled, 1, false),
    (EventCycleStatus::Avoided, 2, true),
    (EventCycleStatus::Executing, 3, false),
    (EventCycleStatus::Executed, 4, true),
    (EventCycleStatus::Canceled, 5, true),
    (EventCycleStatus::Failed, 6, true),
    (EventCycleStatus::Inquiring, 7, false),
];

fn type_code(name: &str) -> u32 {
    EVENT_TYPES.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c)
}

fn cycle_code(status: EventCycleStatus) -> u32 {
    CYCLE_STATES.iter().find(|(s, _, _)| *s == status).map_or(0, |(_, c, _)| *c)
}

/// `names` (one parameter or its `.N` list form), each checked against `known`.
fn names<'p>(p: &'p Params, single: &str, list: &str, max: usize, known: &[&str]) -> Result<Vec<&'p str>, ApiError> {
    let mut out = p.list(list, max)?;
    if out.is_empty() {
        out.extend(p.opt_str(single));
    }
    for n in &out {
        if !known.contains(n) {
            return Err(ApiError::invalid_parameter(single, format!("{n:?} is not one of {}", known.join(", "))));
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceHistoryEventsResponse {
    pub instance_system_event_set: InstanceSystemEventSet,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceSystemEventSet {
    pub instance_system_event_type: Vec<InstanceSystemEvent>,
}

/// One event, as `InstanceSystemEventSet.InstanceSystemEventType[]` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceSystemEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub event_cycle_status: EventCycle,
    pub event_publish_time: String,
    pub not_before: String,
    pub event_finish_time: String,
    pub instance_id: String,
    pub resource_type: &'static str,
    pub reason: String,
    pub reason_code: &'static str,
    pub impact_level: &'static str,
    pub extended_attribute: ExtendedAttribute,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventType {
    pub code: u32,
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventCycle {
    pub code: u32,
    pub name: &'static str,
}

/// Details of some event types (disks, hosts, metrics); none of feitian's events has any.
#[derive(Debug, Serialize)]
pub struct ExtendedAttribute {}

impl From<InstanceEvent> for InstanceSystemEvent {
    fn from(e: InstanceEvent) -> Self {
        InstanceSystemEvent {
            event_id: e.id,
            event_type: EventType { code: type_code(&e.event_type), name: e.event_type },
            event_cycle_status: EventCycle { code: cycle_code(e.cycle_status), name: e.cycle_status.as_str() },
            not_before: e.publish_time.clone(),
            event_publish_time: e.publish_time,
            event_finish_time: e.finish_time,
            instance_id: e.instance_id,
            resource_type: "instance",
            reason: e.reason,
            reason_code: "",
            impact_level: "",
            extended_attribute: ExtendedAttribute {},
        }
    }
}

impl Ecs {
    /// `DescribeInstanceHistoryEvents`.
    pub async fn describe_instance_history_events(
        self: Arc<Self>,
        ctx: Ctx,
        p: Params,
    ) -> Result<DescribeInstanceHistoryEventsResponse, ApiError> {
        let region = require_region(&self.catalog, &p)?.clone();
        let page = Page::from_params(&p, 10, 100)?;
        let types: Vec<&str> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
        let states: Vec<&str> = CYCLE_STATES.iter().map(|(s, _, _)| s.as_str()).collect();
        let wanted_types: Vec<String> =
            names(&p, "EventType", "InstanceEventType", 30, &types)?.into_iter().map(str::to_owned).collect();
        let mut wanted_states: Vec<String> = names(&p, "EventCycleStatus", "InstanceEventCycleStatus", 7, &states)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if wanted_states.is_empty() {
            wanted_states = CYCLE_STATES
                .iter()
                .filter(|(_, _, inactive)| *inactive)
                .map(|(s, _, _)| s.as_str().to_owned())
                .collect();
        }
        let ids: Vec<String> = p.list("EventId", 100)?.into_iter().map(str::to_owned).collect();
        let instance = p.opt_str("InstanceId").map(str::to_owned);
        self.store
            .read_async(move |tx| {
                let t: Vec<&str> = wanted_types.iter().map(String::as_str).collect();
                let s: Vec<&str> = wanted_states.iter().map(String::as_str).collect();
                let i: Vec<&str> = ids.iter().map(String::as_str).collect();
                let f = Filter::owned(ctx.caller.account_id, &region.id)
                    .eq("instance_id", instance.as_deref())
                    .any_of("event_type", &t)
                    .any_of("cycle_status", &s)
                    .any_of("id", &i);
                let (rows, total) = instance_event::list_events(tx, &f, page.offset(), page.limit())?;
                let instance_system_event_type = rows.into_iter().map(InstanceSystemEvent::from).collect();
                Ok(DescribeInstanceHistoryEventsResponse {
                    instance_system_event_set: InstanceSystemEventSet { instance_system_event_type },
                    page: page.info(total),
                })
            })
            .await
    }
}
