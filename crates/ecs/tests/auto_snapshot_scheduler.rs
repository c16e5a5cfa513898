//! The automatic snapshot scheduler against the real store, with an injected clock walked
//! across more than a week (issue 16, done-when 2): snapshots at the policy's UTC+8 hours of
//! its weekdays only, none while the disk's previous one progresses, none for a disk with
//! `EnableAutoSnapshot=false`, and expired ones deleted after `RetentionDays` while -1 keeps
//! them.

use chrono::{DateTime, Duration, Utc};
use feitian_agent_api::snapshot::{PinInfo, SnapshotUpload};
use feitian_ecs::auto_snapshot_scheduler::{tick, TickReport};
use feitian_meta::auto_snapshot_policy::{self as policy, Policy};
use feitian_meta::disk::{insert_disk, Disk, DiskStatus, DiskType};
use feitian_meta::snapshot::{self, Commit, SnapshotType};
use feitian_meta::{MetaError, Store};
use feitian_region::Catalog;

const REGION: &str = "cn-hangzhou";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn disk(s: &Store, account: u64, enable_auto_snapshot: bool) -> Disk {
    let id = s.write(|tx| s.scope(account).register(tx, "disk", "d", REGION, "bp")).unwrap();
    let d = Disk {
        id,
        account_id: account,
        region_id: REGION.into(),
        zone_id: "cn-hangzhou-i".into(),
        instance_id: "i-1".into(),
        name: String::new(),
        description: String::new(),
        category: "cloud_essd".into(),
        size_gib: 20,
        disk_type: DiskType::Data,
        device: "/dev/xvdb".into(),
        image_id: String::new(),
        status: DiskStatus::InUse,
        delete_with_instance: false,
        created_at: "2026-01-01T00:00:00Z".into(),
        performance_level: "PL1".into(),
        portable: true,
        delete_auto_snapshot: false,
        enable_auto_snapshot,
        attached_at: "2026-01-01T00:00:00Z".into(),
        detached_at: String::new(),
    };
    s.write(|tx| insert_disk(tx, &d)).unwrap();
    d
}

fn new_policy(s: &Store, account: u64, hours: &str, days: &str, retention: Option<i64>, at: DateTime<Utc>) -> Policy {
    let id = s.write(|tx| s.scope(account).register(tx, "auto_snapshot_policy", "sp", REGION, "bp")).unwrap();
    let p = Policy {
        id,
        account_id: account,
        region_id: REGION.into(),
        name: "p".into(),
        time_points: hours.into(),
        repeat_weekdays: days.into(),
        retention_days: retention,
        enable_cross_region_copy: false,
        target_copy_regions: String::new(),
        copied_retention_days: None,
        created_at: stamp(at),
        checked_at: stamp(at),
    };
    s.write(|tx| policy::create(tx, &p, 100).map_err(|e| MetaError::Invalid(e.to_string()))).unwrap();
    p
}

/// What the host does with a new snapshot: pins it and commits an (empty) upload.
fn finish(s: &Store, id: &str) {
    s.write(|tx| -> Result<(), MetaError> {
        assert!(snapshot::pinned(tx, id, PinInfo { next_seq: 1, size_bytes: 20 << 30 }, "t")?);
        // A base that expired meanwhile is cleared by the first commit; the host then
        // uploads in full.
        for _ in 0..2 {
            let row = snapshot::get_any_owner(tx, id)?.unwrap();
            let upload = SnapshotUpload {
                id: id.into(),
                base: row.base.map(|b| b.snapshot_id),
                ranges: vec![],
                read_bytes: 0,
                stored_bytes: 0,
            };
            match snapshot::commit(tx, &upload, "t")? {
                Commit::Done => return Ok(()),
                Commit::BaseGone => continue,
                other => panic!("{other:?}"),
            }
        }
        panic!("{id} did not commit")
    })
    .unwrap();
}

/// The disk's snapshots: `(name, type)`, by name.
fn snapshots_of(s: &Store, disk_id: &str) -> Vec<(String, SnapshotType)> {
    let mut out: Vec<(String, SnapshotType)> = s
        .read(|tx| {
            let ids = tx
                .prepare("SELECT id FROM snapshots WHERE disk_id = ?1")?
                .query_map([disk_id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut rows = Vec::new();
            for id in ids {
                rows.push(snapshot::get_any_owner(tx, &id)?.unwrap());
            }
            Ok::<_, MetaError>(rows)
        })
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.snapshot_type))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn names(s: &Store, disk_id: &str) -> Vec<String> {
    snapshots_of(s, disk_id).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn a_week_of_ticks_takes_and_expires_the_right_snapshots() {
    let s = Store::open_in_memory().unwrap();
    let catalog = Catalog::default();
    let account = s.create_account("a").unwrap().id;
    let on = disk(&s, account, true);
    let off = disk(&s, account, false);
    let forever = disk(&s, account, true);
    // Monday 2026-12-07 00:00 UTC+8.
    let start = utc("2026-12-06T16:00:00Z");
    // 01:00 and 13:00 UTC+8 on Mondays and Wednesdays, kept 2 days.
    let p = new_policy(&s, account, r#"["1","13"]"#, r#"["1","3"]"#, Some(2), start);
    s.write(|tx| policy::apply(tx, &p.id, &[on.id.clone(), off.id.clone()], "t")).unwrap();
    // 00:00 UTC+8 every day, kept forever.
    let q = new_policy(&s, account, r#"["0"]"#, r#"["1","2","3","4","5","6","7"]"#, None, start);
    s.write(|tx| policy::apply(tx, &q.id, std::slice::from_ref(&forever.id), "t")).unwrap();

    let mut now = start;
    let mut all = TickReport::default();
    let mut held_back = None;
    // Ten-minute ticks for eight days.
    while now < start + Duration::days(8) {
        now += Duration::minutes(10);
        let r = tick(&s, &catalog, now).unwrap();
        for (disk_id, id) in &r.created {
            // The Wednesday 01:00 snapshot of `on` stays progressing for two hours.
            let local = now + Duration::hours(8);
            if disk_id == &on.id && local.format("%Y%m%d %H").to_string() == "20261209 01" {
                held_back = Some((id.clone(), now + Duration::hours(2)));
            } else {
                finish(&s, id);
            }
        }
        if let Some((id, until)) = held_back.clone() {
            if now >= until {
                finish(&s, &id);
                held_back = None;
            }
        }
        all.created.extend(r.created);
        all.skipped_busy.extend(r.skipped_busy);
        all.skipped_other.extend(r.skipped_other);
        all.expired.extend(r.expired);
        // Mid-week: the Monday snapshots are still there on Tuesday, one per time point.
        if now == utc("2026-12-08T04:00:00Z") {
            assert_eq!(names(&s, &on.id), ["auto_20261207_1", "auto_20261207_13"]);
        }
    }

    // `on` fired at Mon 01 and 13, Wed 01 and 13, Mon 01 and 13 a week later; the 2-day
    // retention deleted Monday's by Wednesday and Wednesday's by Friday.
    let taken: Vec<&String> = all.created.iter().filter(|(d, _)| d == &on.id).map(|(_, id)| id).collect();
    assert_eq!(taken.len(), 6, "{all:?}");
    assert_eq!(names(&s, &on.id), ["auto_20261214_1", "auto_20261214_13"]);
    // None for the disabled disk: skipped at each of the six firings.
    assert!(names(&s, &off.id).is_empty());
    assert_eq!(all.skipped_other.iter().filter(|d| *d == &off.id).count(), 6);
    // Kept forever: eight midnights (Tue 8th to Tue 15th; Mon 7th's is at `start`, which the
    // new policy does not fire for), all still there, all `auto`.
    let kept = snapshots_of(&s, &forever.id);
    assert_eq!(kept.len(), 8, "{kept:?}");
    assert!(kept.iter().all(|(n, t)| n.starts_with("auto_") && *t == SnapshotType::Auto));
    assert_eq!(kept[0].0, "auto_20261208_0");
    assert_eq!(all.expired.len(), 4);
    assert!(all.skipped_busy.is_empty(), "no time point fell while a snapshot progressed: {all:?}");
}

#[test]
fn a_disk_whose_snapshot_progresses_skips_the_firing() {
    let s = Store::open_in_memory().unwrap();
    let catalog = Catalog::default();
    let account = s.create_account("a").unwrap().id;
    let d = disk(&s, account, true);
    let start = utc("2026-12-06T15:30:00Z"); // Sunday 23:30 UTC+8.
    let p = new_policy(&s, account, r#"["0","1"]"#, r#"["1"]"#, Some(1), start);
    s.write(|tx| policy::apply(tx, &p.id, std::slice::from_ref(&d.id), "t")).unwrap();
    // Midnight: one snapshot, left progressing.
    let r = tick(&s, &catalog, utc("2026-12-06T16:00:30Z")).unwrap();
    assert_eq!(r.created.len(), 1);
    // 01:00: skipped, because the midnight one still progresses; the window closes anyway.
    let r = tick(&s, &catalog, utc("2026-12-06T17:00:30Z")).unwrap();
    assert!(r.created.is_empty());
    assert_eq!(r.skipped_busy, vec![d.id.clone()]);
    finish(&s, &r_created_id(&s, &d.id));
    // Nothing more on Monday: the 01:00 point is not taken late.
    let r = tick(&s, &catalog, utc("2026-12-06T18:00:00Z")).unwrap();
    assert!(r.created.is_empty());
    assert_eq!(names(&s, &d.id), ["auto_20261207_0"]);
    // A day after it was recorded, it expires; a clock that goes back changes nothing.
    let r = tick(&s, &catalog, utc("2026-12-07T16:00:29Z")).unwrap();
    assert!(r.expired.is_empty());
    let r = tick(&s, &catalog, utc("2026-12-07T16:00:30Z")).unwrap();
    assert_eq!(r.expired.len(), 1);
    assert!(names(&s, &d.id).is_empty());
    let r = tick(&s, &catalog, utc("2026-12-06T16:00:30Z")).unwrap();
    assert_eq!(r, TickReport::default());
}

/// The disk's one snapshot's id.
fn r_created_id(s: &Store, disk_id: &str) -> String {
    s.read(|tx| {
        Ok::<_, MetaError>(tx.query_row("SELECT id FROM snapshots WHERE disk_id = ?1", [disk_id], |r| r.get(0))?)
    })
    .unwrap()
}

/// Ticks whose window holds no time point write nothing (the policy's row is as it was), and
/// the time point after them still fires exactly once.
#[test]
fn quiet_ticks_leave_the_policy_row_alone() {
    let s = Store::open_in_memory().unwrap();
    let catalog = Catalog::default();
    let account = s.create_account("a").unwrap().id;
    let d = disk(&s, account, true);
    let start = utc("2026-12-06T14:00:00Z"); // Sunday 22:00 UTC+8.
    let p = new_policy(&s, account, r#"["0"]"#, r#"["1"]"#, None, start);
    s.write(|tx| policy::apply(tx, &p.id, std::slice::from_ref(&d.id), "t")).unwrap();
    let row = |s: &Store| s.read(|tx| policy::get(tx, account, &p.id)).unwrap().unwrap();
    let before = row(&s);
    for m in [1, 30, 61, 119] {
        let r = tick(&s, &catalog, start + Duration::minutes(m)).unwrap();
        assert_eq!(r, TickReport::default());
        assert_eq!(row(&s), before, "a quiet tick at +{m} min wrote the policy");
    }
    // Monday 00:00 UTC+8 falls in the next window: one snapshot, and the window closes.
    let r = tick(&s, &catalog, utc("2026-12-06T16:00:10Z")).unwrap();
    assert_eq!(r.created.len(), 1);
    assert_eq!(row(&s).checked_at, "2026-12-06T16:00:10Z");
    let r = tick(&s, &catalog, utc("2026-12-06T16:00:40Z")).unwrap();
    assert!(r.created.is_empty(), "the same time point fired twice: {r:?}");
}
