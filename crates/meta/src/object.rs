//! OSS objects (table `oss_objects`): one row per (bucket, key) with the headers it serves;
//! its bytes are its [extents](crate::extent), kept apart.

use crate::bucket::{charge, used_bytes, within_capacity};
use crate::extent::{add_extents, extents_of, take_extents, Extent, Holder};
use crate::listing::{fetch, scan, Listed, Resume};
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// The headers an object keeps and serves back (also what an upload in progress will give
/// its object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectHeaders {
    pub content_type: String,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    /// User metadata (`x-oss-meta-*`) as JSON text; the service owns its shape.
    pub user_meta: String,
}

/// One object's record (its bytes are its extents, kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// As served, with its quotes.
    pub etag: String,
    pub crc64: u64,
    /// `Normal`, `Multipart` or `Appendable`.
    pub object_type: String,
    pub headers: ObjectHeaders,
    /// `default` (the bucket's applies), `private`, `public-read` or `public-read-write`.
    pub acl: String,
    pub storage_class: String,
    pub last_modified_ms: i64,
}

const OBJECT_COLS: &str = "bucket, object_key, size, etag, crc64, object_type, content_type, cache_control, \
     content_disposition, content_encoding, content_language, expires, user_meta, acl, storage_class, last_modified_ms";

/// How ListObjects reads the table.
const LISTED: Listed = Listed { table: "oss_objects", cols: OBJECT_COLS, order: "object_key" };

pub(crate) fn headers_at(r: &Row<'_>, at: usize) -> rusqlite::Result<ObjectHeaders> {
    Ok(ObjectHeaders {
        content_type: r.get(at)?,
        cache_control: r.get(at + 1)?,
        content_disposition: r.get(at + 2)?,
        content_encoding: r.get(at + 3)?,
        content_language: r.get(at + 4)?,
        expires: r.get(at + 5)?,
        user_meta: r.get(at + 6)?,
    })
}

fn object_row(r: &Row<'_>) -> rusqlite::Result<Object> {
    object_at(r, 0)
}

/// An object whose [`OBJECT_COLS`] start at column `at`.
fn object_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Object> {
    Ok(Object {
        bucket: r.get(at)?,
        key: r.get(at + 1)?,
        size: r.get::<_, i64>(at + 2)? as u64,
        etag: r.get(at + 3)?,
        crc64: r.get::<_, i64>(at + 4)? as u64,
        object_type: r.get(at + 5)?,
        headers: headers_at(r, at + 6)?,
        acl: r.get(at + 13)?,
        storage_class: r.get(at + 14)?,
        last_modified_ms: r.get(at + 15)?,
    })
}

/// The object's row id and size.
fn object_id(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<(i64, i64)>, MetaError> {
    Ok(tx
        .prepare_cached("SELECT id, size FROM oss_objects WHERE bucket = ?1 AND object_key = ?2")?
        .query_row([bucket, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The object's record, if it exists.
pub fn get_object(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<Object>, MetaError> {
    Ok(tx
        .prepare_cached(&format!("SELECT {OBJECT_COLS} FROM oss_objects WHERE bucket = ?1 AND object_key = ?2"))?
        .query_row([bucket, key], object_row)
        .optional()?)
}

/// The object's record and its extents, in order, read together.
pub fn get_object_with_extents(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<(Object, Vec<Extent>)>, MetaError> {
    let found = tx
        .prepare_cached(&format!("SELECT id, {OBJECT_COLS} FROM oss_objects WHERE bucket = ?1 AND object_key = ?2"))?
        .query_row([bucket, key], |r| Ok((r.get::<_, i64>(0)?, object_at(r, 1)?)))
        .optional()?;
    match found {
        Some((id, o)) => Ok(Some((o, extents_of(tx, Holder::Object(id))?))),
        None => Ok(None),
    }
}

pub(crate) fn insert_object_row(tx: &Transaction<'_>, o: &Object) -> Result<i64, MetaError> {
    let h = &o.headers;
    tx.prepare_cached(&format!(
        "INSERT INTO oss_objects ({OBJECT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(params![
        o.bucket,
        o.key,
        o.size as i64,
        o.etag,
        o.crc64 as i64,
        o.object_type,
        h.content_type,
        h.cache_control,
        h.content_disposition,
        h.content_encoding,
        h.content_language,
        h.expires,
        h.user_meta,
        o.acl,
        o.storage_class,
        o.last_modified_ms,
    ])?;
    let id = tx.last_insert_rowid();
    charge(tx, &o.bucket, o.size as i64)?;
    Ok(id)
}

/// Removes an object's row and returns its extents (`None` when there is no such object).
pub(crate) fn remove_object(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<Vec<Extent>>, MetaError> {
    let Some((id, size)) = object_id(tx, bucket, key)? else { return Ok(None) };
    let extents = take_extents(tx, Holder::Object(id))?;
    tx.prepare_cached("DELETE FROM oss_objects WHERE id = ?1")?.execute([id])?;
    charge(tx, bucket, -size)?;
    Ok(Some(extents))
}

/// Makes `o` the object at its key, made of `extents`, replacing any object there. Returns
/// the replaced object's extents (to release once this transaction commits).
/// [`MetaError::StorageCapacityExceeded`] when the bucket would grow beyond its capacity
/// (an overwrite counts the difference); the caller then rolls the transaction back.
pub fn put_object(tx: &Transaction<'_>, o: &Object, extents: &[Extent]) -> Result<Vec<Extent>, MetaError> {
    let before = used_bytes(tx, &o.bucket)?;
    let old = remove_object(tx, &o.bucket, &o.key)?.unwrap_or_default();
    let id = insert_object_row(tx, o)?;
    add_extents(tx, Holder::Object(id), extents)?;
    within_capacity(tx, &o.bucket, before)?;
    Ok(old)
}

/// The new state of an object after an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub size: u64,
    pub crc64: u64,
    pub etag: String,
    pub last_modified_ms: i64,
}

/// Adds `extents` at the end of an existing object and records its new size, CRC, ETag and
/// time. `false` when there is no such object. (The service checks type and position.)
/// [`MetaError::StorageCapacityExceeded`] when the bucket would grow beyond its capacity.
pub fn append_object(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    extents: &[Extent],
    new: &Appended,
) -> Result<bool, MetaError> {
    let Some((id, old_size)) = object_id(tx, bucket, key)? else { return Ok(false) };
    let before = used_bytes(tx, bucket)?;
    add_extents(tx, Holder::Object(id), extents)?;
    tx.prepare_cached("UPDATE oss_objects SET size = ?2, crc64 = ?3, etag = ?4, last_modified_ms = ?5 WHERE id = ?1")?
        .execute(params![id, new.size as i64, new.crc64 as i64, new.etag, new.last_modified_ms])?;
    charge(tx, bucket, new.size as i64 - old_size)?;
    within_capacity(tx, bucket, before)?;
    Ok(true)
}

/// Replaces an object's headers, ACL and storage class in place (CopyObject onto itself);
/// the bytes and ETag stay. `false` when there is no such object.
pub fn update_object_metadata(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    headers: &ObjectHeaders,
    acl: &str,
    storage_class: &str,
    last_modified_ms: i64,
) -> Result<bool, MetaError> {
    let n = tx
        .prepare_cached(
            "UPDATE oss_objects SET content_type = ?3, cache_control = ?4, content_disposition = ?5, \
             content_encoding = ?6, content_language = ?7, expires = ?8, user_meta = ?9, acl = ?10, \
             storage_class = ?11, last_modified_ms = ?12 WHERE bucket = ?1 AND object_key = ?2",
        )?
        .execute(params![
            bucket,
            key,
            headers.content_type,
            headers.cache_control,
            headers.content_disposition,
            headers.content_encoding,
            headers.content_language,
            headers.expires,
            headers.user_meta,
            acl,
            storage_class,
            last_modified_ms,
        ])?;
    Ok(n == 1)
}

/// Sets an object's ACL; `false` when there is no such object.
pub fn set_object_acl(tx: &Transaction<'_>, bucket: &str, key: &str, acl: &str) -> Result<bool, MetaError> {
    let n = tx
        .prepare_cached("UPDATE oss_objects SET acl = ?3 WHERE bucket = ?1 AND object_key = ?2")?
        .execute(params![bucket, key, acl])?;
    Ok(n == 1)
}

/// Deletes an object; returns its extents (to release after commit), `None` if it did not
/// exist.
pub fn delete_object(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<Vec<Extent>>, MetaError> {
    remove_object(tx, bucket, key)
}

/// The objects of one ListObjects page, in key order: keys starting with `prefix` and after
/// `after` (exclusive). With a `delimiter`, only the **first** key of each common prefix is
/// returned (the rest of the group is skipped in the index, never read), and a group whose
/// common prefix is ≤ `after` is skipped whole, as the listing rules say. At most
/// `max_entries` rows; ask for one more than the page size to learn whether it is truncated.
pub fn list_objects(
    tx: &Transaction<'_>,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    after: &str,
    max_entries: usize,
) -> Result<Vec<Object>, MetaError> {
    scan(
        prefix,
        delimiter,
        after,
        Resume::After(after.to_owned()),
        max_entries,
        |o: &Object| o.key.as_str(),
        |o: &Object| Resume::After(o.key.clone()),
        |from, upper, limit| fetch(tx, &LISTED, bucket, from, upper, limit, object_row),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::bucket_is_empty;
    use crate::extent::referenced_files;
    use crate::listing::{common_prefix, SCAN_BATCH};
    use crate::testing::{ext, object, store_with_bucket, w};

    #[test]
    fn objects_put_get_overwrite_delete() {
        let s = store_with_bucket("b");
        let o = object("b", "k", 30);
        let old = w(&s, |tx| put_object(tx, &o, &[ext(1, 0, 10), ext(2, 5, 20)]));
        assert!(old.is_empty());
        let (got, extents) = w(&s, |tx| get_object_with_extents(tx, "b", "k")).unwrap();
        assert_eq!(got, o);
        assert_eq!(extents, vec![ext(1, 0, 10), ext(2, 5, 20)]);
        assert_eq!(w(&s, |tx| get_object(tx, "b", "k")), Some(o.clone()));
        assert_eq!(w(&s, |tx| get_object(tx, "b", "K")), None);

        // Overwriting hands back the old bytes.
        let o2 = Object { size: 5, etag: "\"F\"".into(), ..o.clone() };
        let old = w(&s, |tx| put_object(tx, &o2, &[ext(3, 0, 5)]));
        assert_eq!(old, vec![ext(1, 0, 10), ext(2, 5, 20)]);
        assert_eq!(w(&s, |tx| get_object_with_extents(tx, "b", "k")), Some((o2, vec![ext(3, 0, 5)])));

        assert!(!w(&s, |tx| bucket_is_empty(tx, "b")));
        assert_eq!(w(&s, |tx| delete_object(tx, "b", "k")), Some(vec![ext(3, 0, 5)]));
        assert_eq!(w(&s, |tx| delete_object(tx, "b", "k")), None);
        assert!(w(&s, |tx| bucket_is_empty(tx, "b")));
        assert!(w(&s, referenced_files).is_empty());
    }

    #[test]
    fn append_acl_and_metadata() {
        let s = store_with_bucket("b");
        let o = Object { object_type: "Appendable".into(), ..object("b", "log", 3) };
        w(&s, |tx| put_object(tx, &o, &[ext(1, 0, 3)]));
        let new = Appended { size: 7, crc64: 42, etag: "\"X\"".into(), last_modified_ms: 5 };
        assert!(w(&s, |tx| append_object(tx, "b", "log", &[ext(2, 0, 4)], &new)));
        assert!(!w(&s, |tx| append_object(tx, "b", "nothing", &[], &new)));
        let (got, extents) = w(&s, |tx| get_object_with_extents(tx, "b", "log")).unwrap();
        assert_eq!((got.size, got.crc64, got.etag.as_str(), got.last_modified_ms), (7, 42, "\"X\"", 5));
        assert_eq!(extents, vec![ext(1, 0, 3), ext(2, 0, 4)]);

        assert!(w(&s, |tx| set_object_acl(tx, "b", "log", "public-read")));
        assert!(!w(&s, |tx| set_object_acl(tx, "b", "none", "public-read")));
        let h = ObjectHeaders { content_type: "image/png".into(), user_meta: "{}".into(), ..Default::default() };
        assert!(w(&s, |tx| update_object_metadata(tx, "b", "log", &h, "private", "IA", 9)));
        let got = w(&s, |tx| get_object(tx, "b", "log")).unwrap();
        assert_eq!((got.headers, got.acl.as_str(), got.storage_class.as_str()), (h, "private", "IA"));
        assert_eq!((got.size, got.last_modified_ms), (7, 9));
        // A bad ACL never reaches the table.
        assert!(s.write::<_, MetaError>(|tx| set_object_acl(tx, "b", "log", "everyone")).is_err());
    }

    /// What a listing must return, computed the slow way.
    fn model(keys: &[String], prefix: &str, delimiter: &str, after: &str, max: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut last_cp: Option<String> = None;
        for k in keys.iter().filter(|k| k.as_str() > after && k.starts_with(prefix)) {
            match common_prefix(k, prefix, delimiter) {
                Some(cp) => {
                    if last_cp.as_deref() == Some(cp) || cp <= after {
                        last_cp = Some(cp.to_owned());
                        continue;
                    }
                    last_cp = Some(cp.to_owned());
                    out.push(k.clone());
                }
                None => out.push(k.clone()),
            }
            if out.len() == max {
                break;
            }
        }
        out
    }

    #[test]
    fn listing_matches_the_model() {
        let s = store_with_bucket("b");
        let mut keys: Vec<String> = Vec::new();
        for a in ["", "a", "a/", "a/b", "ab", "b/", "é/", "\u{10FFFF}"] {
            for b in ["", "x", "/y", "/z/w", "-", "a/c"] {
                keys.push(format!("{a}{b}"));
            }
        }
        keys.retain(|k| !k.is_empty());
        keys.sort();
        keys.dedup();
        w(&s, |tx| {
            for k in &keys {
                put_object(tx, &object("b", k, 1), &[])?;
            }
            Ok(())
        });
        let markers: Vec<String> = ["", "a", "a/", "a/b", "a/bz", "b", "é", "zz"]
            .iter()
            .map(|m| m.to_string())
            .chain(keys.iter().cloned())
            .collect();
        for prefix in ["", "a", "a/", "b", "é/", "\u{10FFFF}", "q"] {
            for delimiter in ["", "/", "a/", "-"] {
                for after in &markers {
                    for max in [1, 2, 3, 100] {
                        let got: Vec<String> = w(&s, |tx| list_objects(tx, "b", prefix, delimiter, after, max))
                            .into_iter()
                            .map(|o| o.key)
                            .collect();
                        assert_eq!(
                            got,
                            model(&keys, prefix, delimiter, after, max),
                            "{prefix:?} {delimiter:?} {after:?} {max}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_big_group_is_jumped_over() {
        let s = store_with_bucket("b");
        w(&s, |tx| {
            for i in 0..(SCAN_BATCH * 3) {
                put_object(tx, &object("b", &format!("dir/{i:05}"), 1), &[])?;
            }
            put_object(tx, &object("b", "dir0", 1), &[])?;
            put_object(tx, &object("b", "a", 1), &[])?;
            put_object(tx, &object("b", "z/1", 1), &[])?;
            Ok(())
        });
        let keys: Vec<String> = w(&s, |tx| list_objects(tx, "b", "", "/", "", 10)).into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["a", "dir/00000", "dir0", "z/1"]);
        let flat = w(&s, |tx| list_objects(tx, "b", "dir/", "", "dir/00010", 2500));
        assert_eq!(flat.len(), 2500);
        assert_eq!(flat[0].key, "dir/00011");
    }
}
