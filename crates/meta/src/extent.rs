//! Where OSS bytes are (table `oss_extents`): runs of Pangu files, each owned by exactly one
//! object or one part of a multipart upload, in order. Completing an upload moves its parts'
//! extents to the object (no bytes are copied); the byte store's garbage collection asks
//! which files are still referenced.

use crate::query::all;
use crate::MetaError;
use rusqlite::{params, Row, Transaction};

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

/// Who owns a run of extents: an object's or a part's row id.
#[derive(Clone, Copy)]
pub(crate) enum Holder {
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

/// What `holder` has, in order.
pub(crate) fn extents_of(tx: &Transaction<'_>, holder: Holder) -> Result<Vec<Extent>, MetaError> {
    all(
        tx,
        &format!("SELECT file, file_offset, len FROM oss_extents WHERE {} = ?1 ORDER BY seq", holder.column()),
        [holder.id()],
        extent_row,
    )
}

/// Appends `extents` to what `holder` already has.
pub(crate) fn add_extents(tx: &Transaction<'_>, holder: Holder, extents: &[Extent]) -> Result<(), MetaError> {
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
pub(crate) fn take_extents(tx: &Transaction<'_>, holder: Holder) -> Result<Vec<Extent>, MetaError> {
    let extents = extents_of(tx, holder)?;
    tx.prepare_cached(&format!("DELETE FROM oss_extents WHERE {} = ?1", holder.column()))?.execute([holder.id()])?;
    Ok(extents)
}

/// Gives part `part`'s extents, in order, to object `object` from position `seq` on; returns
/// the position after them.
pub(crate) fn move_to_object(tx: &Transaction<'_>, part: i64, object: i64, mut seq: i64) -> Result<i64, MetaError> {
    let ids: Vec<i64> = all(tx, "SELECT id FROM oss_extents WHERE part_id = ?1 ORDER BY seq", [part], |r| r.get(0))?;
    let mut mv = tx.prepare_cached("UPDATE oss_extents SET object_id = ?1, part_id = NULL, seq = ?2 WHERE id = ?3")?;
    for id in ids {
        mv.execute(params![object, seq, id])?;
        seq += 1;
    }
    Ok(seq)
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
