//! Multipart uploads in progress (table `oss_uploads`) and their parts (`oss_parts`).
//! Completing one makes its object from the parts' extents, moved, not copied.

use crate::bucket::{charge, used_bytes, within_capacity};
use crate::extent::{self, add_extents, take_extents, Extent, Holder};
use crate::listing::{fetch, scan, Listed, Resume};
use crate::object::{headers_at, insert_object_row, remove_object, Object, ObjectHeaders};
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    /// What the completed object will have.
    pub headers: ObjectHeaders,
    pub acl: String,
    pub storage_class: String,
    pub initiated_ms: i64,
}

const UPLOAD_COLS: &str = "upload_id, bucket, object_key, content_type, cache_control, content_disposition, \
     content_encoding, content_language, expires, user_meta, acl, storage_class, initiated_ms";

/// How ListMultipartUploads reads the table.
const LISTED: Listed = Listed { table: "oss_uploads", cols: UPLOAD_COLS, order: "object_key, upload_id" };

fn upload_row(r: &Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        upload_id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        headers: headers_at(r, 3)?,
        acl: r.get(10)?,
        storage_class: r.get(11)?,
        initiated_ms: r.get(12)?,
    })
}

/// A fresh upload id shaped like OSS's (32 uppercase hex digits) that sorts in creation
/// order: the time in nanoseconds, then 64 random bits.
pub fn new_upload_id() -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!("{nanos:016X}{:016X}", rand::random::<u64>())
}

pub fn insert_upload(tx: &Transaction<'_>, u: &Upload) -> Result<(), MetaError> {
    let h = &u.headers;
    tx.prepare_cached(&format!(
        "INSERT INTO oss_uploads ({UPLOAD_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        u.upload_id,
        u.bucket,
        u.key,
        h.content_type,
        h.cache_control,
        h.content_disposition,
        h.content_encoding,
        h.content_language,
        h.expires,
        h.user_meta,
        u.acl,
        u.storage_class,
        u.initiated_ms,
    ])?;
    Ok(())
}

/// The upload, if it exists **for this bucket and key** (an id used with another key is
/// unknown there, as on OSS).
pub fn get_upload(tx: &Transaction<'_>, bucket: &str, key: &str, upload_id: &str) -> Result<Option<Upload>, MetaError> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {UPLOAD_COLS} FROM oss_uploads WHERE upload_id = ?1 AND bucket = ?2 AND object_key = ?3"
        ))?
        .query_row([upload_id, bucket, key], upload_row)
        .optional()?)
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub part_number: u32,
    pub size: u64,
    /// As served, with its quotes.
    pub etag: String,
    pub crc64: u64,
    pub last_modified_ms: i64,
}

const PART_COLS: &str = "part_number, size, etag, crc64, last_modified_ms";

fn part_row(r: &Row<'_>) -> rusqlite::Result<Part> {
    Ok(Part {
        part_number: r.get::<_, i64>(0)? as u32,
        size: r.get::<_, i64>(1)? as u64,
        etag: r.get(2)?,
        crc64: r.get::<_, i64>(3)? as u64,
        last_modified_ms: r.get(4)?,
    })
}

fn part_id(tx: &Transaction<'_>, upload_id: &str, part_number: u32) -> Result<Option<i64>, MetaError> {
    Ok(tx
        .prepare_cached("SELECT id FROM oss_parts WHERE upload_id = ?1 AND part_number = ?2")?
        .query_row(params![upload_id, part_number], |r| r.get(0))
        .optional()?)
}

/// Records a part made of `extents`, replacing one uploaded before with the same number.
/// Returns the replaced part's extents (to release after commit).
/// A part's bytes count toward its bucket's storage capacity from when it is uploaded:
/// [`MetaError::StorageCapacityExceeded`] when the bucket would grow beyond it.
pub fn put_part(tx: &Transaction<'_>, upload_id: &str, p: &Part, extents: &[Extent]) -> Result<Vec<Extent>, MetaError> {
    let bucket = upload_bucket(tx, upload_id)?
        .ok_or_else(|| MetaError::Invalid(format!("upload {upload_id} does not exist")))?;
    let before = used_bytes(tx, &bucket)?;
    let mut old = Vec::new();
    let mut old_size = 0i64;
    if let Some(id) = part_id(tx, upload_id, p.part_number)? {
        old = take_extents(tx, Holder::Part(id))?;
        old_size = tx.prepare_cached("SELECT size FROM oss_parts WHERE id = ?1")?.query_row([id], |r| r.get(0))?;
        tx.prepare_cached("DELETE FROM oss_parts WHERE id = ?1")?.execute([id])?;
    }
    tx.prepare_cached(&format!("INSERT INTO oss_parts (upload_id, {PART_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?
        .execute(params![upload_id, p.part_number, p.size as i64, p.etag, p.crc64 as i64, p.last_modified_ms])?;
    add_extents(tx, Holder::Part(tx.last_insert_rowid()), extents)?;
    charge(tx, &bucket, p.size as i64 - old_size)?;
    within_capacity(tx, &bucket, before)?;
    Ok(old)
}

/// Parts numbered after `after`, in order, at most `limit`.
pub fn list_parts(tx: &Transaction<'_>, upload_id: &str, after: u32, limit: usize) -> Result<Vec<Part>, MetaError> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT {PART_COLS} FROM oss_parts WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3"
    ))?;
    let rows = st.query_map(params![upload_id, after, limit as i64], part_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Every part of an upload, in order (part numbers run to 10,000).
pub fn all_parts(tx: &Transaction<'_>, upload_id: &str) -> Result<Vec<Part>, MetaError> {
    list_parts(tx, upload_id, 0, 10_000)
}

/// Removes every part of an upload and the upload itself; returns all their extents.
fn remove_upload(tx: &Transaction<'_>, upload_id: &str) -> Result<Vec<Extent>, MetaError> {
    if let Some(bucket) = upload_bucket(tx, upload_id)? {
        let parts: i64 = tx
            .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM oss_parts WHERE upload_id = ?1")?
            .query_row([upload_id], |r| r.get(0))?;
        charge(tx, &bucket, -parts)?;
    }
    let mut freed = Vec::new();
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM oss_parts WHERE upload_id = ?1 ORDER BY part_number")?
        .query_map([upload_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        freed.extend(take_extents(tx, Holder::Part(id))?);
    }
    tx.prepare_cached("DELETE FROM oss_parts WHERE upload_id = ?1")?.execute([upload_id])?;
    tx.prepare_cached("DELETE FROM oss_uploads WHERE upload_id = ?1")?.execute([upload_id])?;
    Ok(freed)
}

/// Completes an upload: `o` becomes the object at its key, made of the parts numbered
/// `part_numbers` in that order (their extents move to the object; nothing is copied), and
/// the upload and its other parts are gone. Returns the extents no longer used — the
/// replaced object's and the unused parts' — to release after commit.
pub fn complete_upload(
    tx: &Transaction<'_>,
    upload_id: &str,
    o: &Object,
    part_numbers: &[u32],
) -> Result<Vec<Extent>, MetaError> {
    let before = used_bytes(tx, &o.bucket)?;
    let mut freed = remove_object(tx, &o.bucket, &o.key)?.unwrap_or_default();
    let object = insert_object_row(tx, o)?;
    let mut seq = 0i64;
    for &n in part_numbers {
        let part = part_id(tx, upload_id, n)?
            .ok_or_else(|| MetaError::Invalid(format!("part {n} of upload {upload_id} does not exist")))?;
        seq = extent::move_to_object(tx, part, object, seq)?;
    }
    freed.extend(remove_upload(tx, upload_id)?);
    // The parts were counted when uploaded; completing only drops the unused ones and the
    // replaced object, unless `o` claims more bytes than its parts hold.
    within_capacity(tx, &o.bucket, before)?;
    Ok(freed)
}

/// The bucket an upload in progress belongs to.
fn upload_bucket(tx: &Transaction<'_>, upload_id: &str) -> Result<Option<String>, MetaError> {
    Ok(tx
        .prepare_cached("SELECT bucket FROM oss_uploads WHERE upload_id = ?1")?
        .query_row([upload_id], |r| r.get(0))
        .optional()?)
}

/// Aborts an upload: returns the extents of its parts, `None` if there is no such upload.
pub fn abort_upload(tx: &Transaction<'_>, upload_id: &str) -> Result<Option<Vec<Extent>>, MetaError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM oss_uploads WHERE upload_id = ?1")?
        .query_row([upload_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Ok(None);
    }
    Ok(Some(remove_upload(tx, upload_id)?))
}

/// The uploads of one ListMultipartUploads page, in (key, upload id) order: keys starting
/// with `prefix`, after the markers (a later key, or `key_marker`'s own uploads after
/// `upload_id_marker` when both are given). With a `delimiter`, only the first upload of
/// each common prefix is returned, and groups whose common prefix is ≤ `key_marker` are
/// skipped. At most `max_entries` rows.
pub fn list_uploads(
    tx: &Transaction<'_>,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    key_marker: &str,
    upload_id_marker: &str,
    max_entries: usize,
) -> Result<Vec<Upload>, MetaError> {
    let start = if !key_marker.is_empty() && !upload_id_marker.is_empty() {
        Resume::AfterPair(key_marker.to_owned(), upload_id_marker.to_owned())
    } else {
        Resume::After(key_marker.to_owned())
    };
    scan(
        prefix,
        delimiter,
        key_marker,
        start,
        max_entries,
        |u: &Upload| u.key.as_str(),
        |u: &Upload| Resume::AfterPair(u.key.clone(), u.upload_id.clone()),
        |from, upper, limit| fetch(tx, &LISTED, bucket, from, upper, limit, upload_row),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::bucket_is_empty;
    use crate::extent::{file_is_referenced, referenced_files};
    use crate::object::{get_object, get_object_with_extents, put_object};
    use crate::testing::{ext, object, store_with_bucket, w};

    fn upload(bucket: &str, key: &str, id: &str) -> Upload {
        Upload {
            upload_id: id.into(),
            bucket: bucket.into(),
            key: key.into(),
            headers: ObjectHeaders { content_type: "text/plain".into(), user_meta: "{}".into(), ..Default::default() },
            acl: "default".into(),
            storage_class: "Standard".into(),
            initiated_ms: 1,
        }
    }

    fn part(n: u32, size: u64) -> Part {
        Part { part_number: n, size, etag: format!("\"P{n}\""), crc64: u64::from(n), last_modified_ms: 2 }
    }

    #[test]
    fn multipart_upload_complete() {
        let s = store_with_bucket("b");
        let u = upload("b", "big", "U1");
        w(&s, |tx| insert_upload(tx, &u));
        assert_eq!(w(&s, |tx| get_upload(tx, "b", "big", "U1")), Some(u.clone()));
        assert_eq!(w(&s, |tx| get_upload(tx, "b", "other", "U1")), None);
        assert!(!w(&s, |tx| bucket_is_empty(tx, "b")));

        assert!(w(&s, |tx| put_part(tx, "U1", &part(1, 10), &[ext(1, 0, 10)])).is_empty());
        // Uploading part 1 again replaces it.
        assert_eq!(w(&s, |tx| put_part(tx, "U1", &part(1, 10), &[ext(2, 0, 4), ext(2, 10, 6)])), vec![ext(1, 0, 10)]);
        w(&s, |tx| put_part(tx, "U1", &part(2, 5), &[ext(3, 0, 5)]));
        w(&s, |tx| put_part(tx, "U1", &part(3, 1), &[ext(4, 0, 1)]));
        assert_eq!(w(&s, |tx| all_parts(tx, "U1")).iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(w(&s, |tx| list_parts(tx, "U1", 1, 1)), vec![part(2, 5)]);
        assert_eq!(w(&s, referenced_files), vec![2, 3, 4]);
        assert!(w(&s, |tx| file_is_referenced(tx, 4)));
        assert!(!w(&s, |tx| file_is_referenced(tx, 1)));

        // An older object at the key is replaced; part 2 is not used.
        w(&s, |tx| put_object(tx, &object("b", "big", 1), &[ext(9, 0, 1)]));
        let o = Object { object_type: "Multipart".into(), size: 11, ..object("b", "big", 11) };
        let mut freed = w(&s, |tx| complete_upload(tx, "U1", &o, &[1, 3]));
        freed.sort_by_key(|e| e.file);
        assert_eq!(freed, vec![ext(3, 0, 5), ext(9, 0, 1)]);
        let (got, extents) = w(&s, |tx| get_object_with_extents(tx, "b", "big")).unwrap();
        assert_eq!(got, o);
        assert_eq!(extents, vec![ext(2, 0, 4), ext(2, 10, 6), ext(4, 0, 1)]);
        assert_eq!(w(&s, |tx| get_upload(tx, "b", "big", "U1")), None);
        assert!(w(&s, |tx| all_parts(tx, "U1")).is_empty());
        assert_eq!(w(&s, referenced_files), vec![2, 4]);
        // Completing a part that does not exist is refused (and the transaction rolls back).
        w(&s, |tx| insert_upload(tx, &upload("b", "k", "U2")));
        assert!(s.write(|tx| complete_upload(tx, "U2", &object("b", "k", 0), &[7])).is_err());
        assert!(w(&s, |tx| get_upload(tx, "b", "k", "U2")).is_some());
        assert!(w(&s, |tx| get_object(tx, "b", "k")).is_none());
    }

    #[test]
    fn multipart_upload_abort() {
        let s = store_with_bucket("b");
        w(&s, |tx| insert_upload(tx, &upload("b", "k", "U1")));
        w(&s, |tx| put_part(tx, "U1", &part(1, 1), &[ext(1, 0, 1)]));
        w(&s, |tx| put_part(tx, "U1", &part(2, 1), &[ext(2, 0, 1)]));
        assert_eq!(w(&s, |tx| abort_upload(tx, "U1")), Some(vec![ext(1, 0, 1), ext(2, 0, 1)]));
        assert_eq!(w(&s, |tx| abort_upload(tx, "U1")), None);
        assert!(w(&s, |tx| bucket_is_empty(tx, "b")));
        assert!(w(&s, referenced_files).is_empty());
    }

    #[test]
    fn listing_uploads() {
        let s = store_with_bucket("b");
        let ups = [("a", "01"), ("a", "02"), ("b/x", "03"), ("b/y", "04"), ("c", "05"), ("c", "06")];
        w(&s, |tx| {
            for (k, id) in ups {
                insert_upload(tx, &upload("b", k, id))?;
            }
            Ok(())
        });
        let ids = |prefix: &str, delimiter: &str, km: &str, im: &str, max: usize| -> Vec<String> {
            w(&s, |tx| list_uploads(tx, "b", prefix, delimiter, km, im, max)).into_iter().map(|u| u.upload_id).collect()
        };
        assert_eq!(ids("", "", "", "", 100), vec!["01", "02", "03", "04", "05", "06"]);
        assert_eq!(ids("", "", "", "", 2), vec!["01", "02"]);
        assert_eq!(ids("", "", "a", "01", 3), vec!["02", "03", "04"]);
        assert_eq!(ids("", "", "a", "", 100), vec!["03", "04", "05", "06"]);
        assert_eq!(ids("", "/", "", "", 100), vec!["01", "02", "03", "05", "06"]);
        assert_eq!(ids("", "/", "b/", "", 100), vec!["05", "06"]);
        assert_eq!(ids("b/", "", "", "", 100), vec!["03", "04"]);
        assert_eq!(ids("", "/", "b/x", "03", 100), vec!["05", "06"]);
    }

    #[test]
    fn upload_ids_look_real_and_sort_by_creation() {
        let a = new_upload_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_upload_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(a < b);
    }
}
