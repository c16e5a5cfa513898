//! Automatic snapshot policies (table `auto_snapshot_policies`) and the disks they apply to
//! (`auto_snapshot_policy_disks`: one policy per disk, so applying another replaces it, as
//! on Alibaba Cloud). The API's rules (names, time points, quota) are the service's; this
//! module keeps the rows, and the scheduler's progress (`checked_at`: the end of the last
//! window the scheduler looked at, so a policy never fires twice for one time point and a
//! new policy does not fire for the past).
//!
//! Disks and policies are joined on read, so a policy counts only disks that still exist;
//! a deleted disk's row is also removed by [`forget_disk`] (called by `disk::delete_disk`).

use crate::filter::Filter;
use crate::query::{all, in_list, page};
use crate::quota::fits;
use crate::resource::forget_resource;
use crate::MetaError;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};
use std::collections::BTreeMap;

/// One policy row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub name: String,
    /// Hours in UTC+8, as the API shows them: a JSON array of strings (`["1","22"]`).
    pub time_points: String,
    /// Days 1 (Monday) to 7, as a JSON array of strings.
    pub repeat_weekdays: String,
    /// `None`: kept forever (the API's -1).
    pub retention_days: Option<i64>,
    pub enable_cross_region_copy: bool,
    /// As given (a JSON array as a string, or empty).
    pub target_copy_regions: String,
    /// `None`: forever (-1).
    pub copied_retention_days: Option<i64>,
    pub created_at: String,
    /// The end of the scheduler's last window.
    pub checked_at: String,
}

const COLS: &str = "id, account_id, region_id, name, time_points, repeat_weekdays, retention_days, enable_cross_region_copy, target_copy_regions, copied_retention_days, created_at, checked_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Policy> {
    Ok(Policy {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)?.max(0) as u64,
        region_id: r.get(2)?,
        name: r.get(3)?,
        time_points: r.get(4)?,
        repeat_weekdays: r.get(5)?,
        retention_days: r.get(6)?,
        enable_cross_region_copy: r.get(7)?,
        target_copy_regions: r.get(8)?,
        copied_retention_days: r.get(9)?,
        created_at: r.get(10)?,
        checked_at: r.get(11)?,
    })
}

/// Why a policy cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account may hold {max} automatic snapshot policies in the region and holds {held}")]
    QuotaExceeded { max: u64, held: u64 },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// How many policies an account holds in a region.
pub fn count(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM auto_snapshot_policies WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Records a new policy (its id registered by the caller in the same transaction) if the
/// account holds fewer than `max` in the region.
pub fn create(tx: &Transaction<'_>, p: &Policy, max: u64) -> Result<(), CreateError> {
    let held = count(tx, p.account_id, &p.region_id)?;
    if !fits(max, held, 1) {
        return Err(CreateError::QuotaExceeded { max, held });
    }
    tx.execute(
        &format!(
            "INSERT INTO auto_snapshot_policies ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            p.id,
            p.account_id as i64,
            p.region_id,
            p.name,
            p.time_points,
            p.repeat_weekdays,
            p.retention_days,
            p.enable_cross_region_copy,
            p.target_copy_regions,
            p.copied_retention_days,
            p.created_at,
            p.checked_at,
        ],
    )
    .map_err(MetaError::from)?;
    Ok(())
}

/// An account's policy, by id.
pub fn get(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Policy>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLS} FROM auto_snapshot_policies WHERE id = ?1 AND account_id = ?2"),
            params![id, account_id as i64],
            row,
        )
        .optional()?)
}

/// One page of a filtered list (DescribeAutoSnapshotPolicyEx), in creation order, and the
/// total.
pub fn list(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Policy>, u64), MetaError> {
    page(tx, "auto_snapshot_policies", COLS, f, offset, limit, row)
}

/// Every policy of every account (the scheduler's pass).
pub fn all_policies(tx: &Transaction<'_>) -> Result<Vec<Policy>, MetaError> {
    all(tx, &format!("SELECT {COLS} FROM auto_snapshot_policies ORDER BY created_at, id"), [], row)
}

/// Writes what `ModifyAutoSnapshotPolicyEx` may change (everything but identity, owner,
/// creation and the scheduler's progress).
pub fn update(tx: &Transaction<'_>, p: &Policy) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE auto_snapshot_policies SET name = ?2, time_points = ?3, repeat_weekdays = ?4, retention_days = ?5,
            enable_cross_region_copy = ?6, target_copy_regions = ?7, copied_retention_days = ?8
         WHERE id = ?1",
        params![
            p.id,
            p.name,
            p.time_points,
            p.repeat_weekdays,
            p.retention_days,
            p.enable_cross_region_copy,
            p.target_copy_regions,
            p.copied_retention_days,
        ],
    )?;
    Ok(())
}

/// The scheduler looked at the policy's window up to `at`.
pub fn set_checked(tx: &Transaction<'_>, id: &str, at: &str) -> Result<(), MetaError> {
    tx.execute("UPDATE auto_snapshot_policies SET checked_at = ?2 WHERE id = ?1", params![id, at])?;
    Ok(())
}

/// Deletes a policy: its row, its tags and registry entry, and its disks' applications (they
/// follow no policy afterwards). `false` if there was none.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, MetaError> {
    let n = tx.execute("DELETE FROM auto_snapshot_policies WHERE id = ?1", [id])?;
    if n == 0 {
        return Ok(false);
    }
    tx.execute("DELETE FROM auto_snapshot_policy_disks WHERE policy_id = ?1", [id])?;
    forget_resource(tx, id)?;
    Ok(true)
}

/// Applies the policy to the disks, replacing whatever policy each followed.
pub fn apply(tx: &Transaction<'_>, policy_id: &str, disk_ids: &[String], at: &str) -> Result<(), MetaError> {
    for d in disk_ids {
        tx.execute("DELETE FROM auto_snapshot_policy_disks WHERE disk_id = ?1", [d])?;
        tx.execute(
            "INSERT INTO auto_snapshot_policy_disks (disk_id, policy_id, applied_at) VALUES (?1, ?2, ?3)",
            params![d, policy_id, at],
        )?;
    }
    Ok(())
}

/// The disks follow no policy any more.
pub fn cancel(tx: &Transaction<'_>, disk_ids: &[String]) -> Result<(), MetaError> {
    for d in disk_ids {
        tx.execute("DELETE FROM auto_snapshot_policy_disks WHERE disk_id = ?1", [d])?;
    }
    Ok(())
}

/// A disk is gone: it follows nothing.
pub fn forget_disk(tx: &Transaction<'_>, disk_id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM auto_snapshot_policy_disks WHERE disk_id = ?1", [disk_id])?;
    Ok(())
}

/// The ids of the existing disks the policy applies to, in id order.
pub fn disks_of(tx: &Transaction<'_>, policy_id: &str) -> Result<Vec<String>, MetaError> {
    all(
        tx,
        "SELECT a.disk_id FROM auto_snapshot_policy_disks a JOIN disks d ON d.id = a.disk_id
         WHERE a.policy_id = ?1 ORDER BY a.disk_id",
        [policy_id],
        |r| r.get(0),
    )
}

/// How many existing disks each of the policies applies to (`DiskNums`); a policy with none
/// is absent.
pub fn disk_counts(tx: &Transaction<'_>, policy_ids: &[&str]) -> Result<BTreeMap<String, u64>, MetaError> {
    if policy_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = format!(
        "SELECT a.policy_id, COUNT(*) FROM auto_snapshot_policy_disks a JOIN disks d ON d.id = a.disk_id
         WHERE a.policy_id IN ({}) GROUP BY a.policy_id",
        in_list(policy_ids.len())
    );
    let args: Vec<Value> = policy_ids.iter().map(|s| Value::from(s.to_string())).collect();
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st
        .query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(rows)
}

/// The policy each of the disks follows, for those that follow one (DescribeDisks'
/// `AutoSnapshotPolicyId`).
pub fn policies_of_disks(tx: &Transaction<'_>, disk_ids: &[&str]) -> Result<BTreeMap<String, String>, MetaError> {
    if disk_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = format!(
        "SELECT disk_id, policy_id FROM auto_snapshot_policy_disks WHERE disk_id IN ({})",
        in_list(disk_ids.len())
    );
    let args: Vec<Value> = disk_ids.iter().map(|s| Value::from(s.to_string())).collect();
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st
        .query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{delete_disk, insert_disk, Disk};
    use crate::tag::{set_tags, tags_of};
    use crate::testing::{self, w};
    use crate::Store;

    fn disk(s: &Store, account: u64) -> Disk {
        let d = Disk { delete_auto_snapshot: false, ..testing::data_disk(s, account) };
        w(s, |tx| insert_disk(tx, &d));
        d
    }

    fn policy(s: &Store, account: u64, name: &str) -> Policy {
        Policy {
            id: testing::register(s, account, "auto_snapshot_policy", "sp"),
            account_id: account,
            region_id: testing::REGION.into(),
            name: name.into(),
            time_points: r#"["1"]"#.into(),
            repeat_weekdays: r#"["1","7"]"#.into(),
            retention_days: Some(3),
            enable_cross_region_copy: false,
            target_copy_regions: String::new(),
            copied_retention_days: None,
            created_at: testing::CREATED.into(),
            checked_at: testing::CREATED.into(),
        }
    }

    #[test]
    fn create_reads_back_and_keeps_to_the_quota() {
        let (s, a) = testing::store();
        let p1 = policy(&s, a, "one");
        w(&s, |tx| create(tx, &p1, 2).map_err(|e| MetaError::Invalid(e.to_string())));
        assert_eq!(s.read(|tx| get(tx, a, &p1.id)).unwrap(), Some(p1.clone()));
        let p2 = policy(&s, a, "two");
        w(&s, |tx| create(tx, &p2, 2).map_err(|e| MetaError::Invalid(e.to_string())));
        let p3 = policy(&s, a, "three");
        let e = s.write(|tx| Ok::<_, MetaError>(create(tx, &p3, 2))).unwrap();
        assert!(matches!(e, Err(CreateError::QuotaExceeded { max: 2, held: 2 })), "{e:?}");
        assert_eq!(s.read(|tx| count(tx, a, testing::REGION)).unwrap(), 2);
        // Another account sees none of them.
        let other = s.create_account("b").unwrap().id;
        assert_eq!(s.read(|tx| get(tx, other, &p1.id)).unwrap(), None);
        let (rows, total) = s.read(|tx| list(tx, &Filter::owned(a, testing::REGION), 0, 10)).unwrap();
        assert_eq!(total, 2);
        // Listed by id (random), so compared as a set.
        let mut names: Vec<&str> = rows.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(s.read(all_policies).unwrap().len(), 2);
    }

    #[test]
    fn update_changes_the_schedule_but_not_the_progress() {
        let (s, a) = testing::store();
        let mut p = policy(&s, a, "one");
        w(&s, |tx| create(tx, &p, 100).map_err(|e| MetaError::Invalid(e.to_string())));
        p.name = "renamed".into();
        p.time_points = r#"["2","3"]"#.into();
        p.retention_days = None;
        p.checked_at = "ignored".into();
        w(&s, |tx| update(tx, &p));
        w(&s, |tx| set_checked(tx, &p.id, "2024-02-01T00:00:00Z"));
        let got = s.read(|tx| get(tx, a, &p.id)).unwrap().unwrap();
        assert_eq!(got.name, "renamed");
        assert_eq!(got.time_points, r#"["2","3"]"#);
        assert_eq!(got.retention_days, None);
        assert_eq!(got.checked_at, "2024-02-01T00:00:00Z");
    }

    #[test]
    fn one_policy_per_disk_and_counts_follow_the_disks() {
        let (s, a) = testing::store();
        let p1 = policy(&s, a, "one");
        let p2 = policy(&s, a, "two");
        for p in [&p1, &p2] {
            w(&s, |tx| create(tx, p, 100).map_err(|e| MetaError::Invalid(e.to_string())));
        }
        let d1 = disk(&s, a);
        let d2 = disk(&s, a);
        w(&s, |tx| apply(tx, &p1.id, &[d1.id.clone(), d2.id.clone()], "t"));
        let counts = s.read(|tx| disk_counts(tx, &[&p1.id, &p2.id])).unwrap();
        assert_eq!(counts.get(&p1.id), Some(&2));
        assert_eq!(counts.get(&p2.id), None);
        // Applying another replaces it.
        w(&s, |tx| apply(tx, &p2.id, std::slice::from_ref(&d2.id), "t"));
        assert_eq!(s.read(|tx| disks_of(tx, &p1.id)).unwrap(), vec![d1.id.clone()]);
        assert_eq!(s.read(|tx| disks_of(tx, &p2.id)).unwrap(), vec![d2.id.clone()]);
        let of = s.read(|tx| policies_of_disks(tx, &[&d1.id, &d2.id, "d-none"])).unwrap();
        assert_eq!(of.get(&d1.id), Some(&p1.id));
        assert_eq!(of.get(&d2.id), Some(&p2.id));
        assert_eq!(of.len(), 2);
        // Cancelling and deleting the disk both leave nothing behind.
        w(&s, |tx| cancel(tx, std::slice::from_ref(&d1.id)));
        assert!(s.read(|tx| disks_of(tx, &p1.id)).unwrap().is_empty());
        w(&s, |tx| delete_disk(tx, &d2.id, "t"));
        assert!(s.read(|tx| disks_of(tx, &p2.id)).unwrap().is_empty());
        assert!(s.read(|tx| policies_of_disks(tx, &[&d2.id])).unwrap().is_empty());
    }

    #[test]
    fn delete_takes_the_tags_registry_and_applications() {
        let (s, a) = testing::store();
        let p = policy(&s, a, "one");
        w(&s, |tx| create(tx, &p, 100).map_err(|e| MetaError::Invalid(e.to_string())));
        w(&s, |tx| set_tags(tx, &p.id, &[("k".into(), "v".into())]));
        let d = disk(&s, a);
        w(&s, |tx| apply(tx, &p.id, std::slice::from_ref(&d.id), "t"));
        assert!(w(&s, |tx| delete(tx, &p.id)));
        assert!(!w(&s, |tx| delete(tx, &p.id)));
        assert_eq!(s.read(|tx| get(tx, a, &p.id)).unwrap(), None);
        assert!(s.read(|tx| tags_of(tx, &[&p.id])).unwrap().is_empty());
        assert!(s.read(|tx| s.scope(a).get(tx, "auto_snapshot_policy", &p.id)).unwrap().is_none());
        assert!(s.read(|tx| policies_of_disks(tx, &[&d.id])).unwrap().is_empty());
    }
}
