//! OSS buckets (table `buckets`). Bucket names are global across accounts, as on the real
//! service; who may use one is decided by the OSS service from its owner and ACL.

use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub account_id: u64,
    pub region_id: String,
    pub acl: String,
    pub storage_class: String,
    pub created_at: String,
    /// Which bucket of this name it is: set by [`insert_bucket`] from a counter that never
    /// repeats, so a bucket deleted and created again (by anyone) is a different bucket. A
    /// write records it when it is authorized and compares it when it commits.
    pub generation: i64,
}

const COLS: &str = "name, account_id, region_id, acl, storage_class, created_at, generation";

fn row(r: &Row<'_>) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        name: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        acl: r.get(3)?,
        storage_class: r.get(4)?,
        created_at: r.get(5)?,
        generation: r.get(6)?,
    })
}

/// Inserts a bucket with the next generation (`b.generation` is not read); `None` when the
/// name is taken (by anyone), else the generation it got.
pub fn insert_bucket(tx: &Transaction<'_>, b: &Bucket) -> Result<Option<i64>, MetaError> {
    if get_bucket(tx, &b.name)?.is_some() {
        return Ok(None);
    }
    let generation: i64 = tx.query_row("SELECT next FROM oss_bucket_generation", [], |r| r.get(0))?;
    tx.execute("UPDATE oss_bucket_generation SET next = next + 1", [])?;
    tx.execute(
        &format!("INSERT INTO buckets ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![b.name, b.account_id as i64, b.region_id, b.acl, b.storage_class, b.created_at, generation],
    )?;
    Ok(Some(generation))
}

/// A bucket by name, whoever owns it (access is decided by the caller from owner and ACL).
pub fn get_bucket(tx: &Transaction<'_>, name: &str) -> Result<Option<Bucket>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {COLS} FROM buckets WHERE name = ?1"), [name], row).optional()?)
}

/// An account's buckets whose names start with `prefix` and sort after `marker`, at most `max`.
/// How many buckets the account has (the `buckets` quota).
pub fn count_buckets(tx: &Transaction<'_>, account_id: u64) -> Result<u64, MetaError> {
    let n: i64 =
        tx.query_row("SELECT COUNT(*) FROM buckets WHERE account_id = ?1", params![account_id as i64], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

pub fn list_buckets(
    tx: &Transaction<'_>,
    account_id: u64,
    prefix: &str,
    marker: &str,
    max: u64,
) -> Result<Vec<Bucket>, MetaError> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT {COLS} FROM buckets WHERE account_id = ?1 AND substr(name, 1, length(?2)) = ?2 AND name > ?3 ORDER BY name LIMIT ?4"
    ))?;
    let rows =
        st.query_map(params![account_id as i64, prefix, marker, max as i64], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn set_bucket_acl(tx: &Transaction<'_>, name: &str, acl: &str) -> Result<(), MetaError> {
    tx.execute("UPDATE buckets SET acl = ?2 WHERE name = ?1", params![name, acl])?;
    Ok(())
}

pub fn delete_bucket(tx: &Transaction<'_>, name: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM buckets WHERE name = ?1", [name])?;
    Ok(())
}

/// How many bytes OSS's storage capacity unit, the GB, is.
pub const CAPACITY_UNIT: u64 = 1 << 30;

/// The largest storage capacity, in GB, whose bytes a signed 64-bit count can hold.
pub const MAX_STORAGE_CAPACITY: i64 = i64::MAX / CAPACITY_UNIT as i64;

/// A bucket's storage capacity in GB (-1: no limit); `None` when there is no such bucket.
pub fn storage_capacity(tx: &Transaction<'_>, name: &str) -> Result<Option<i64>, MetaError> {
    Ok(tx.query_row("SELECT storage_capacity FROM buckets WHERE name = ?1", [name], |r| r.get(0)).optional()?)
}

/// Sets a bucket's storage capacity in GB: -1 (no limit) or 0 to [`MAX_STORAGE_CAPACITY`].
/// Lowering it below what the bucket holds deletes nothing; it only refuses growth.
pub fn set_storage_capacity(tx: &Transaction<'_>, name: &str, capacity_gb: i64) -> Result<(), MetaError> {
    if !(-1..=MAX_STORAGE_CAPACITY).contains(&capacity_gb) {
        return Err(MetaError::Invalid(format!("storage capacity {capacity_gb} is out of range")));
    }
    tx.execute("UPDATE buckets SET storage_capacity = ?2 WHERE name = ?1", params![name, capacity_gb])?;
    Ok(())
}

/// The bytes a bucket holds: its objects and the parts of its uploads in progress, as the
/// writes in object.rs and upload.rs keep it (0 when there is no such bucket).
pub fn used_bytes(tx: &Transaction<'_>, name: &str) -> Result<u64, MetaError> {
    let n: Option<i64> = tx
        .prepare_cached("SELECT used_bytes FROM buckets WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Adds `delta` bytes to what the bucket holds. Every change to an object's or a part's
/// size calls this in the same transaction; [`within_capacity`] then judges the result.
pub(crate) fn charge(tx: &Transaction<'_>, bucket: &str, delta: i64) -> Result<(), MetaError> {
    if delta != 0 {
        tx.prepare_cached("UPDATE buckets SET used_bytes = used_bytes + ?2 WHERE name = ?1")?
            .execute(params![bucket, delta])?;
    }
    Ok(())
}

/// After a write that found the bucket holding `before` bytes: refused
/// ([`MetaError::StorageCapacityExceeded`]) if it made the bucket grow beyond its capacity.
/// A write that does not grow the bucket (a delete, an overwrite with fewer bytes) always
/// passes, so a bucket whose capacity was lowered below its contents can still be emptied.
/// Checked in the write's transaction: two writes racing for the last room are serialized
/// by the store, and the second sees the first's bytes.
pub(crate) fn within_capacity(tx: &Transaction<'_>, bucket: &str, before: u64) -> Result<(), MetaError> {
    let (capacity_gb, used): (i64, i64) = tx
        .prepare_cached("SELECT storage_capacity, used_bytes FROM buckets WHERE name = ?1")?
        .query_row([bucket], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((-1, 0));
    let used = used.max(0) as u64;
    if capacity_gb >= 0 && used > before && used > capacity_gb as u64 * CAPACITY_UNIT {
        return Err(MetaError::StorageCapacityExceeded { bucket: bucket.to_owned(), capacity_gb });
    }
    Ok(())
}

/// Whether the bucket holds no object and no multipart upload in progress (DeleteBucket).
pub fn bucket_is_empty(tx: &Transaction<'_>, bucket: &str) -> Result<bool, MetaError> {
    let used: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM oss_objects WHERE bucket = ?1) OR EXISTS (SELECT 1 FROM oss_uploads WHERE bucket = ?1)",
        )?
        .query_row([bucket], |r| r.get(0))?;
    Ok(!used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{self, Appended};
    use crate::testing::{object as object_row, store_with_bucket, w};
    use crate::upload::{self, Part, Upload};
    use crate::Store;

    fn upload_row(bucket: &str, key: &str, id: &str) -> Upload {
        Upload {
            upload_id: id.into(),
            bucket: bucket.into(),
            key: key.into(),
            headers: crate::object::ObjectHeaders {
                content_type: "x".into(),
                user_meta: "{}".into(),
                ..Default::default()
            },
            acl: "default".into(),
            storage_class: "Standard".into(),
            initiated_ms: 1,
        }
    }

    fn part(n: u32, size: u64) -> Part {
        Part { part_number: n, size, etag: format!("\"P{n}\""), crc64: 0, last_modified_ms: 2 }
    }

    /// What the bucket holds, summed the slow way: every object and every part in progress.
    fn summed(s: &Store, bucket: &str) -> u64 {
        let sql = "SELECT (SELECT COALESCE(SUM(size), 0) FROM oss_objects WHERE bucket = ?1) + \
                   (SELECT COALESCE(SUM(p.size), 0) FROM oss_parts p JOIN oss_uploads u ON u.upload_id = p.upload_id \
                    WHERE u.bucket = ?1)";
        s.read::<_, MetaError>(|tx| Ok(tx.query_row(sql, [bucket], |r| r.get::<_, i64>(0))? as u64)).unwrap()
    }

    fn used(s: &Store, bucket: &str) -> u64 {
        s.read::<_, MetaError>(|tx| used_bytes(tx, bucket)).unwrap()
    }

    fn appended(size: u64) -> Appended {
        Appended { size, crc64: 0, etag: "\"A\"".into(), last_modified_ms: 3 }
    }

    /// One write of a workload.
    type Step = dyn Fn(&Transaction<'_>) -> Result<(), MetaError>;

    #[test]
    fn the_usage_counter_agrees_with_a_full_sum_after_every_kind_of_write() {
        let s = store_with_bucket("b");
        // A second bucket, whose writes must not move the first one's counter.
        let owner = s.read::<_, MetaError>(|tx| get_bucket(tx, "b")).unwrap().unwrap();
        w(&s, |tx| insert_bucket(tx, &Bucket { name: "other".into(), ..owner.clone() }));
        let steps: Vec<(&str, Box<Step>)> = vec![
            ("put", Box::new(|tx| object::put_object(tx, &object_row("b", "k1", 100), &[]).map(drop))),
            ("put another", Box::new(|tx| object::put_object(tx, &object_row("b", "k2", 7), &[]).map(drop))),
            ("overwrite smaller", Box::new(|tx| object::put_object(tx, &object_row("b", "k1", 40), &[]).map(drop))),
            ("overwrite larger", Box::new(|tx| object::put_object(tx, &object_row("b", "k2", 70), &[]).map(drop))),
            ("append", Box::new(|tx| object::append_object(tx, "b", "k2", &[], &appended(95)).map(drop))),
            ("other bucket", Box::new(|tx| object::put_object(tx, &object_row("other", "k", 500), &[]).map(drop))),
            ("initiate", Box::new(|tx| upload::insert_upload(tx, &upload_row("b", "m", "U1")))),
            ("part 1", Box::new(|tx| upload::put_part(tx, "U1", &part(1, 30), &[]).map(drop))),
            ("part 2", Box::new(|tx| upload::put_part(tx, "U1", &part(2, 20), &[]).map(drop))),
            ("part 3", Box::new(|tx| upload::put_part(tx, "U1", &part(3, 9), &[]).map(drop))),
            ("part 2 again", Box::new(|tx| upload::put_part(tx, "U1", &part(2, 25), &[]).map(drop))),
            (
                "complete 1, 2 (3 dropped)",
                Box::new(|tx| upload::complete_upload(tx, "U1", &object_row("b", "m", 55), &[1, 2]).map(drop)),
            ),
            (
                "complete over an object",
                Box::new(|tx| {
                    upload::insert_upload(tx, &upload_row("b", "k1", "U2"))?;
                    upload::put_part(tx, "U2", &part(1, 11), &[])?;
                    upload::complete_upload(tx, "U2", &object_row("b", "k1", 11), &[1]).map(drop)
                }),
            ),
            (
                "abort",
                Box::new(|tx| {
                    upload::insert_upload(tx, &upload_row("b", "z", "U3"))?;
                    upload::put_part(tx, "U3", &part(1, 64), &[])?;
                    upload::abort_upload(tx, "U3").map(drop)
                }),
            ),
            (
                "in progress",
                Box::new(|tx| {
                    upload::insert_upload(tx, &upload_row("b", "y", "U4"))?;
                    upload::put_part(tx, "U4", &part(1, 13), &[]).map(drop)
                }),
            ),
            ("delete", Box::new(|tx| object::delete_object(tx, "b", "k2").map(drop))),
            ("delete missing", Box::new(|tx| object::delete_object(tx, "b", "nothing").map(drop))),
        ];
        for (name, step) in &steps {
            w(&s, |tx| step(tx));
            assert_eq!(used(&s, "b"), summed(&s, "b"), "after {name}");
            assert_eq!(used(&s, "other"), summed(&s, "other"), "after {name}");
        }
        // k1 (11) + m (55) + U4's part (13).
        assert_eq!(used(&s, "b"), 79);
        assert_eq!(used(&s, "other"), 500);
    }

    #[test]
    fn a_write_beyond_the_capacity_is_refused_and_changes_nothing() {
        const GB: u64 = CAPACITY_UNIT;
        let s = store_with_bucket("b");
        assert_eq!(s.read::<_, MetaError>(|tx| storage_capacity(tx, "b")).unwrap(), Some(-1));
        w(&s, |tx| set_storage_capacity(tx, "b", 1));
        assert_eq!(s.read::<_, MetaError>(|tx| storage_capacity(tx, "b")).unwrap(), Some(1));
        for bad in [-2, MAX_STORAGE_CAPACITY + 1] {
            assert!(matches!(s.write(|tx| set_storage_capacity(tx, "b", bad)), Err(MetaError::Invalid(_))));
        }
        let refused = |r: Result<(), MetaError>| {
            assert!(matches!(r, Err(MetaError::StorageCapacityExceeded { capacity_gb: 1, .. })), "{r:?}");
        };

        w(&s, |tx| object::put_object(tx, &object_row("b", "a", GB / 2), &[]).map(drop));
        // Exactly up to the capacity passes; one byte more does not.
        refused(s.write(|tx| object::put_object(tx, &object_row("b", "c", GB / 2 + 1), &[]).map(drop)));
        assert_eq!(used(&s, "b"), GB / 2);
        assert!(s.read::<_, MetaError>(|tx| object::get_object(tx, "b", "c")).unwrap().is_none());
        w(&s, |tx| object::put_object(tx, &object_row("b", "c", GB / 2), &[]).map(drop));
        assert_eq!(used(&s, "b"), GB);
        // Full: an append, a part and a larger overwrite are refused; an overwrite by no
        // more bytes, a delete and an empty object are not.
        refused(s.write(|tx| object::append_object(tx, "b", "a", &[], &appended(GB / 2 + 1)).map(drop)));
        w(&s, |tx| upload::insert_upload(tx, &upload_row("b", "m", "U")));
        refused(s.write(|tx| upload::put_part(tx, "U", &part(1, 1), &[]).map(drop)));
        refused(s.write(|tx| object::put_object(tx, &object_row("b", "a", GB / 2 + 1), &[]).map(drop)));
        assert_eq!(used(&s, "b"), GB);
        w(&s, |tx| object::put_object(tx, &object_row("b", "a", GB / 2), &[]).map(drop));
        w(&s, |tx| object::put_object(tx, &object_row("b", "empty", 0), &[]).map(drop));
        w(&s, |tx| object::put_object(tx, &object_row("b", "a", GB / 4), &[]).map(drop));
        assert_eq!(used(&s, "b"), GB / 2 + GB / 4);
        // The room freed is usable again, by a part as by an object.
        w(&s, |tx| upload::put_part(tx, "U", &part(1, GB / 4), &[]).map(drop));
        refused(s.write(|tx| object::put_object(tx, &object_row("b", "d", 1), &[]).map(drop)));
        // Capacity lowered below the contents: nothing is deleted, shrinking still passes,
        // growing does not.
        w(&s, |tx| set_storage_capacity(tx, "b", 0));
        let zero = |r: Result<(), MetaError>| {
            assert!(matches!(r, Err(MetaError::StorageCapacityExceeded { capacity_gb: 0, .. })), "{r:?}");
        };
        zero(s.write(|tx| object::put_object(tx, &object_row("b", "d", 1), &[]).map(drop)));
        w(&s, |tx| object::delete_object(tx, "b", "c").map(drop));
        w(&s, |tx| upload::abort_upload(tx, "U").map(drop));
        assert_eq!(used(&s, "b"), GB / 4);
        // No limit again.
        w(&s, |tx| set_storage_capacity(tx, "b", -1));
        w(&s, |tx| object::put_object(tx, &object_row("b", "huge", 5 * GB), &[]).map(drop));
        assert_eq!(used(&s, "b"), summed(&s, "b"));
    }

    #[test]
    fn a_bucket_created_again_is_another_generation() {
        let s = store_with_bucket("b");
        let first = s.read::<_, MetaError>(|tx| get_bucket(tx, "b")).unwrap().unwrap();
        let again = |b: &Bucket| s.write::<_, MetaError>(|tx| insert_bucket(tx, b)).unwrap();
        // The name is taken: nothing inserted, the generation unchanged.
        assert_eq!(again(&first), None);
        s.write::<_, MetaError>(|tx| delete_bucket(tx, "b")).unwrap();
        // Deleted and made again (the last generation handed out was the deleted one's):
        // never the same generation.
        let second = again(&first).unwrap();
        assert_ne!(second, first.generation);
        s.write::<_, MetaError>(|tx| delete_bucket(tx, "b")).unwrap();
        let third = again(&first).unwrap();
        assert!(third > second && third != first.generation);
        assert_eq!(s.read::<_, MetaError>(|tx| get_bucket(tx, "b")).unwrap().unwrap().generation, third);
    }
}
