//! OSS records: buckets, objects, multipart uploads, and the extents of Pangu files that
//! hold their bytes.

use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// A run of bytes in a Pangu file: where a piece of an object (or of a part) lives. An
/// object's bytes are its extents concatenated in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The Pangu file id.
    pub file: u64,
    /// The first byte in that file.
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub account_id: u64,
    pub region_id: String,
    pub acl: String,
    pub storage_class: String,
    pub created_at: String,
}

const COLS: &str = "name, account_id, region_id, acl, storage_class, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        name: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        acl: r.get(3)?,
        storage_class: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// Inserts a bucket; `false` when the name is taken (by anyone).
pub fn insert_bucket(tx: &Transaction<'_>, b: &Bucket) -> Result<bool, MetaError> {
    let n = tx.execute(
        &format!("INSERT INTO buckets ({COLS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM buckets WHERE name = ?1)"),
        params![b.name, b.account_id as i64, b.region_id, b.acl, b.storage_class, b.created_at],
    )?;
    Ok(n == 1)
}

/// A bucket by name, whoever owns it (access is decided by the caller from owner and ACL).
pub fn get_bucket(tx: &Transaction<'_>, name: &str) -> Result<Option<Bucket>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {COLS} FROM buckets WHERE name = ?1"), [name], row).optional()?)
}

/// An account's buckets whose names start with `prefix` and sort after `marker`, at most `max`.
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

// --- objects -------------------------------------------------------------------------------

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

fn headers_at(r: &Row<'_>, at: usize) -> rusqlite::Result<ObjectHeaders> {
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

/// Who owns a run of extents.
#[derive(Clone, Copy)]
enum Holder {
    Object(i64),
    Part(i64),
}

impl Holder {
    fn column(self) -> &'static str {
        match self {
            Holder::Object(_) => "object_id",
            Holder::Part(_) => "part_id",
        }
    }

    fn id(self) -> i64 {
        match self {
            Holder::Object(id) | Holder::Part(id) => id,
        }
    }
}

fn extent_row(r: &Row<'_>) -> rusqlite::Result<Extent> {
    Ok(Extent { file: r.get::<_, i64>(0)? as u64, offset: r.get::<_, i64>(1)? as u64, len: r.get::<_, i64>(2)? as u64 })
}

fn extents_of(tx: &Transaction<'_>, holder: Holder) -> Result<Vec<Extent>, MetaError> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT file, file_offset, len FROM oss_extents WHERE {} = ?1 ORDER BY seq",
        holder.column()
    ))?;
    let rows = st.query_map([holder.id()], extent_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Appends `extents` to what `holder` already has.
fn add_extents(tx: &Transaction<'_>, holder: Holder, extents: &[Extent]) -> Result<(), MetaError> {
    let col = holder.column();
    let next: i64 = tx
        .prepare_cached(&format!("SELECT COALESCE(MAX(seq) + 1, 0) FROM oss_extents WHERE {col} = ?1"))?
        .query_row([holder.id()], |r| r.get(0))?;
    let mut st = tx.prepare_cached(&format!(
        "INSERT INTO oss_extents ({col}, seq, file, file_offset, len) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    for (i, e) in extents.iter().enumerate() {
        st.execute(params![holder.id(), next + i as i64, e.file as i64, e.offset as i64, e.len as i64])?;
    }
    Ok(())
}

/// Removes and returns everything `holder` has.
fn take_extents(tx: &Transaction<'_>, holder: Holder) -> Result<Vec<Extent>, MetaError> {
    let extents = extents_of(tx, holder)?;
    tx.prepare_cached(&format!("DELETE FROM oss_extents WHERE {} = ?1", holder.column()))?.execute([holder.id()])?;
    Ok(extents)
}

fn object_id(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<i64>, MetaError> {
    Ok(tx
        .prepare_cached("SELECT id FROM oss_objects WHERE bucket = ?1 AND object_key = ?2")?
        .query_row([bucket, key], |r| r.get(0))
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

fn insert_object_row(tx: &Transaction<'_>, o: &Object) -> Result<i64, MetaError> {
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
    Ok(tx.last_insert_rowid())
}

/// Removes an object's row and returns its extents (`None` when there is no such object).
fn remove_object(tx: &Transaction<'_>, bucket: &str, key: &str) -> Result<Option<Vec<Extent>>, MetaError> {
    let Some(id) = object_id(tx, bucket, key)? else { return Ok(None) };
    let extents = take_extents(tx, Holder::Object(id))?;
    tx.prepare_cached("DELETE FROM oss_objects WHERE id = ?1")?.execute([id])?;
    Ok(Some(extents))
}

/// Makes `o` the object at its key, made of `extents`, replacing any object there. Returns
/// the replaced object's extents (to release once this transaction commits).
pub fn put_object(tx: &Transaction<'_>, o: &Object, extents: &[Extent]) -> Result<Vec<Extent>, MetaError> {
    let old = remove_object(tx, &o.bucket, &o.key)?.unwrap_or_default();
    let id = insert_object_row(tx, o)?;
    add_extents(tx, Holder::Object(id), extents)?;
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
pub fn append_object(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    extents: &[Extent],
    new: &Appended,
) -> Result<bool, MetaError> {
    let Some(id) = object_id(tx, bucket, key)? else { return Ok(false) };
    add_extents(tx, Holder::Object(id), extents)?;
    tx.prepare_cached("UPDATE oss_objects SET size = ?2, crc64 = ?3, etag = ?4, last_modified_ms = ?5 WHERE id = ?1")?
        .execute(params![id, new.size as i64, new.crc64 as i64, new.etag, new.last_modified_ms])?;
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
        |from, upper, limit| {
            let (cond, a, b) = from.condition();
            let upper_cond = if upper.is_some() { "AND object_key < ?5" } else { "AND ?5 IS NULL" };
            let mut st = tx.prepare_cached(&format!(
                "SELECT {OBJECT_COLS} FROM oss_objects WHERE bucket = ?1 AND {cond} {upper_cond} \
                 ORDER BY object_key LIMIT ?4"
            ))?;
            let rows =
                st.query_map(params![bucket, a, b, limit as i64, upper], object_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        },
    )
}

// --- multipart uploads ---------------------------------------------------------------------

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
pub fn put_part(tx: &Transaction<'_>, upload_id: &str, p: &Part, extents: &[Extent]) -> Result<Vec<Extent>, MetaError> {
    let mut old = Vec::new();
    if let Some(id) = part_id(tx, upload_id, p.part_number)? {
        old = take_extents(tx, Holder::Part(id))?;
        tx.prepare_cached("DELETE FROM oss_parts WHERE id = ?1")?.execute([id])?;
    }
    tx.prepare_cached(&format!("INSERT INTO oss_parts (upload_id, {PART_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?
        .execute(params![upload_id, p.part_number, p.size as i64, p.etag, p.crc64 as i64, p.last_modified_ms])?;
    add_extents(tx, Holder::Part(tx.last_insert_rowid()), extents)?;
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
    let mut freed = remove_object(tx, &o.bucket, &o.key)?.unwrap_or_default();
    let object = insert_object_row(tx, o)?;
    let mut seq = 0i64;
    for &n in part_numbers {
        let part = part_id(tx, upload_id, n)?
            .ok_or_else(|| MetaError::Invalid(format!("part {n} of upload {upload_id} does not exist")))?;
        let ids: Vec<i64> = tx
            .prepare_cached("SELECT id FROM oss_extents WHERE part_id = ?1 ORDER BY seq")?
            .query_map([part], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut mv =
            tx.prepare_cached("UPDATE oss_extents SET object_id = ?1, part_id = NULL, seq = ?2 WHERE id = ?3")?;
        for id in ids {
            mv.execute(params![object, seq, id])?;
            seq += 1;
        }
    }
    freed.extend(remove_upload(tx, upload_id)?);
    Ok(freed)
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
        |from, upper, limit| {
            let (cond, a, b) = from.condition();
            let upper_cond = if upper.is_some() { "AND object_key < ?5" } else { "AND ?5 IS NULL" };
            let mut st = tx.prepare_cached(&format!(
                "SELECT {UPLOAD_COLS} FROM oss_uploads WHERE bucket = ?1 AND {cond} {upper_cond} \
                 ORDER BY object_key, upload_id LIMIT ?4"
            ))?;
            let rows =
                st.query_map(params![bucket, a, b, limit as i64, upper], upload_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        },
    )
}

// --- listing -------------------------------------------------------------------------------

/// Rows fetched per query while listing.
const SCAN_BATCH: usize = 1000;

/// Where a listing query starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    /// Keys after this one.
    After(String),
    /// This key and later ones.
    At(String),
    /// (key, upload id) pairs after this one.
    AfterPair(String, String),
}

impl Resume {
    fn key(&self) -> &str {
        match self {
            Resume::After(k) | Resume::At(k) | Resume::AfterPair(k, _) => k,
        }
    }

    /// The SQL condition (over `object_key`, `upload_id`; parameters ?2 and ?3, the latter
    /// unused by the first two) and the two values to bind.
    fn condition(&self) -> (&'static str, &str, &str) {
        match self {
            Resume::After(k) => ("object_key > ?2", k, ""),
            Resume::At(k) => ("object_key >= ?2", k, ""),
            Resume::AfterPair(k, id) => ("(object_key, upload_id) > (?2, ?3)", k, id),
        }
    }
}

/// The common prefix `key` folds into (as `feitian_oss::listing::common_prefix`).
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

/// The least string greater than every string starting with `prefix` (UTF-8 order, which
/// is code-point order), or `None` when there is none (empty prefix, or only U+10FFFF).
/// `[prefix, prefix_end(prefix))` is then exactly the keys starting with `prefix`: an index
/// range.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The listing loop shared by objects and uploads: fetches rows in key order in batches
/// from `start`, within the prefix's index range, and keeps one row per common prefix,
/// jumping past the rest of each group with a new query.
#[allow(clippy::too_many_arguments)]
fn scan<T>(
    prefix: &str,
    delimiter: &str,
    marker: &str,
    start: Resume,
    max_entries: usize,
    key: impl Fn(&T) -> &str,
    resume_after: impl Fn(&T) -> Resume,
    mut fetch: impl FnMut(&Resume, Option<&str>, usize) -> Result<Vec<T>, MetaError>,
) -> Result<Vec<T>, MetaError> {
    let upper = prefix_end(prefix);
    let mut from = if start.key() < prefix { Resume::At(prefix.to_owned()) } else { start };
    let mut out = Vec::new();
    while out.len() < max_entries {
        let limit = (max_entries - out.len()).min(SCAN_BATCH);
        let rows = fetch(&from, upper.as_deref(), limit)?;
        let fetched = rows.len();
        // Some(next start) once a group was met: the rest of the batch is inside it.
        let mut jump: Option<Option<Resume>> = None;
        for row in rows {
            let k = key(&row);
            if !k.starts_with(prefix) {
                return Ok(out);
            }
            if let Some(cp) = common_prefix(k, prefix, delimiter) {
                let skip = cp <= marker;
                jump = Some(prefix_end(cp).map(Resume::At));
                if !skip {
                    out.push(row);
                }
                break;
            }
            from = resume_after(&row);
            out.push(row);
        }
        match jump {
            Some(Some(next)) => from = next,
            Some(None) => break,
            None if fetched < limit => break,
            None => {}
        }
    }
    Ok(out)
}

// --- for the byte store's garbage collection -------------------------------------------------

/// Whether any object or part has bytes in Pangu file `file`.
pub fn file_is_referenced(tx: &Transaction<'_>, file: u64) -> Result<bool, MetaError> {
    Ok(tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM oss_extents WHERE file = ?1)")?
        .query_row([file as i64], |r| r.get(0))?)
}

/// Every Pangu file some object or part has bytes in, ascending, each once.
pub fn referenced_files(tx: &Transaction<'_>) -> Result<Vec<u64>, MetaError> {
    let mut files: Vec<u64> = tx
        .prepare_cached("SELECT DISTINCT file FROM oss_extents")?
        .query_map([], |r| r.get::<_, i64>(0))?
        .map(|f| f.map(|f| f as u64))
        .collect::<Result<_, _>>()?;
    files.sort_unstable();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn store_with_bucket(name: &str) -> Store {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let b = Bucket {
            name: name.into(),
            account_id: a.id,
            region_id: "cn-hangzhou".into(),
            acl: "private".into(),
            storage_class: "Standard".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
        };
        s.write::<_, MetaError>(|tx| insert_bucket(tx, &b)).unwrap();
        s
    }

    fn ext(file: u64, offset: u64, len: u64) -> Extent {
        Extent { file, offset, len }
    }

    fn object(bucket: &str, key: &str, size: u64) -> Object {
        Object {
            bucket: bucket.into(),
            key: key.into(),
            size,
            etag: "\"E\"".into(),
            crc64: u64::MAX - 1,
            object_type: "Normal".into(),
            headers: ObjectHeaders {
                content_type: "text/plain".into(),
                cache_control: Some("no-cache".into()),
                user_meta: "{\"a\":\"b\"}".into(),
                ..ObjectHeaders::default()
            },
            acl: "default".into(),
            storage_class: "Standard".into(),
            last_modified_ms: 1_700_000_000_123,
        }
    }

    fn w<T>(s: &Store, f: impl FnOnce(&Transaction<'_>) -> Result<T, MetaError>) -> T {
        s.write(f).unwrap()
    }

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

    #[test]
    fn scan_jumps_past_groups_without_reading_them() {
        let mut keys: Vec<String> = (0..5000).map(|i| format!("dir/{i:05}")).collect();
        keys.extend(["e".to_string(), "f/1".to_string(), "f/2".to_string()]);
        let (mut calls, mut rows_read) = (0, 0);
        let out = scan(
            "",
            "/",
            "",
            Resume::After(String::new()),
            10,
            |k: &String| k.as_str(),
            |k: &String| Resume::After(k.clone()),
            |from, upper, limit| {
                calls += 1;
                let rows: Vec<String> = keys
                    .iter()
                    .filter(|k| match from {
                        Resume::After(a) => k.as_str() > a.as_str(),
                        Resume::At(a) => k.as_str() >= a.as_str(),
                        Resume::AfterPair(..) => unreachable!(),
                    })
                    .filter(|k| upper.is_none_or(|u| k.as_str() < u))
                    .take(limit)
                    .cloned()
                    .collect();
                rows_read += rows.len();
                Ok(rows)
            },
        )
        .unwrap();
        assert_eq!(out, vec!["dir/00000", "e", "f/1"]);
        // One query per group and one to find the end; never the 5,000 keys of dir/.
        assert_eq!(calls, 3);
        assert!(rows_read <= 20, "{rows_read}");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a"), Some("b".into()));
        assert_eq!(prefix_end("a/"), Some("a0".into()));
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}"), Some("x\u{E000}".into()));
        // Every key with the prefix sorts below the end, bytewise too.
        for (p, k) in [("a", "a\u{10FFFF}\u{10FFFF}"), ("é", "é\u{10FFFF}"), ("x\u{D7FF}", "x\u{D7FF}\u{FFFF}")] {
            let end = prefix_end(p).unwrap();
            assert!(k.as_bytes() < end.as_bytes(), "{p:?}");
        }
    }

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
