//! Security groups (table `security_groups`), their rules (`security_group_rules`) and which
//! network interfaces are members (`eni_security_groups`, in the order they joined). Rules are
//! stored as the API's own field strings; validating and evaluating them is
//! `feitian-secgroup`'s job.

use crate::filter::Filter;
use crate::network_interface::{eni_row, NetworkInterface, ENI_COLS};
use crate::query::{all, in_list, page};
use crate::resource::forget_resource;
use crate::MetaError;
use feitian_secgroup::{validate, Direction, Rule, RuleInput};
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

impl SgRule {
    /// The stored rule as the evaluator's [`Rule`]. Stored rules were validated on the way in,
    /// so an error here means the row was changed behind the service's back.
    pub fn rule(&self) -> Result<Rule, MetaError> {
        fn opt(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        let bad = |why: String| MetaError::Invalid(format!("stored rule {} no longer validates: {why}", self.id));
        let direction =
            Direction::parse(&self.direction).ok_or_else(|| bad(format!("direction {:?}", self.direction)))?;
        let priority = self.priority.to_string();
        let input = RuleInput {
            ip_protocol: opt(&self.ip_protocol),
            port_range: opt(&self.port_range),
            source_port_range: opt(&self.source_port_range),
            policy: opt(&self.policy),
            priority: Some(&priority),
            nic_type: opt(&self.nic_type),
            source_cidr_ip: opt(&self.source_cidr),
            dest_cidr_ip: opt(&self.dest_cidr),
            source_group_id: opt(&self.source_group_id),
            dest_group_id: opt(&self.dest_group_id),
            source_group_owner_account: opt(&self.source_group_owner_account),
            source_group_owner_id: opt(&self.source_group_owner_id),
            dest_group_owner_account: opt(&self.dest_group_owner_account),
            dest_group_owner_id: opt(&self.dest_group_owner_id),
            description: opt(&self.description),
        };
        validate(direction, &input).map_err(|e| bad(e.to_string()))
    }

    /// A validated rule as it is stored: the API's own field strings.
    pub fn from_rule(rule: &Rule, id: String, group_id: &str, created_at: String) -> SgRule {
        let f = rule.to_fields();
        SgRule {
            id,
            security_group_id: group_id.to_owned(),
            direction: f.direction,
            ip_protocol: f.ip_protocol,
            port_range: f.port_range,
            source_port_range: f.source_port_range,
            policy: f.policy,
            priority: i64::from(rule.priority),
            nic_type: f.nic_type,
            source_cidr: f.source_cidr_ip,
            dest_cidr: f.dest_cidr_ip,
            source_group_id: f.source_group_id,
            source_group_owner_account: f.source_group_owner_account,
            source_group_owner_id: f.source_group_owner_id,
            dest_group_id: f.dest_group_id,
            dest_group_owner_account: f.dest_group_owner_account,
            dest_group_owner_id: f.dest_group_owner_id,
            description: f.description,
            created_at,
        }
    }
}

const SG_COLS: &str = "id, account_id, region_id, vpc_id, name, description, sg_type, inner_policy, created_at";
const RULE_COLS: &str = "id, security_group_id, direction, ip_protocol, port_range, source_port_range, policy, priority, nic_type, source_cidr, dest_cidr, source_group_id, source_group_owner_account, source_group_owner_id, dest_group_id, dest_group_owner_account, dest_group_owner_id, description, created_at";

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

// --- groups ---------------------------------------------------------------------------------

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
    forget_resource(tx, id)
}

// --- rules ----------------------------------------------------------------------------------

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

// --- memberships ----------------------------------------------------------------------------

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

/// `(interface, group)` for every group of these interfaces, by interface, in join order.
pub(crate) fn groups_of_enis(tx: &Transaction<'_>, eni_ids: &[String]) -> Result<Vec<(String, String)>, MetaError> {
    all(
        tx,
        &format!(
            "SELECT eni_id, security_group_id FROM eni_security_groups WHERE eni_id IN ({}) ORDER BY eni_id, position",
            in_list(eni_ids.len())
        ),
        params_from_iter(eni_ids.iter()),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The instances (ids, `""` for none) of this account's interfaces that are members of a group.
pub(crate) fn instances_in_group(
    tx: &Transaction<'_>,
    account_id: u64,
    group_id: &str,
) -> Result<Vec<String>, MetaError> {
    all(
        tx,
        "SELECT n.instance_id FROM network_interfaces n JOIN eni_security_groups m ON m.eni_id = n.id WHERE n.account_id = ?1 AND m.security_group_id = ?2",
        params![account_id as i64, group_id],
        |r| r.get(0),
    )
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

/// Takes an interface out of every group (it is going away).
pub(crate) fn leave_all_groups(tx: &Transaction<'_>, eni_id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM eni_security_groups WHERE eni_id = ?1", [eni_id])?;
    Ok(())
}
