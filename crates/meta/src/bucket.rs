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
    use crate::testing::store_with_bucket;

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
