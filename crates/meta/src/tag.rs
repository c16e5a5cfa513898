//! Tags (table `tags`): key-value pairs on any resource of the registry, from `TagResources`
//! and the `Tag.N` parameters of create calls. Describe filters on tags are built by
//! [`Filter::tags`](crate::Filter::tags).

use crate::query::in_list;
use crate::MetaError;
use rusqlite::{params, params_from_iter, Transaction};
use std::collections::BTreeMap;

/// A resource's tags, `(key, value)`, sorted by key.
pub type Tags = Vec<(String, String)>;

/// Sets (adds or overwrites) tags on a resource.
pub fn set_tags(tx: &Transaction<'_>, resource_id: &str, tags: &[(String, String)]) -> Result<(), MetaError> {
    for (k, v) in tags {
        tx.execute("DELETE FROM tags WHERE resource_id = ?1 AND tag_key = ?2", params![resource_id, k])?;
        tx.execute(
            "INSERT INTO tags (resource_id, tag_key, tag_value) VALUES (?1, ?2, ?3)",
            params![resource_id, k, v],
        )?;
    }
    Ok(())
}

pub fn remove_tags(tx: &Transaction<'_>, resource_id: &str, keys: &[String]) -> Result<(), MetaError> {
    for k in keys {
        tx.execute("DELETE FROM tags WHERE resource_id = ?1 AND tag_key = ?2", params![resource_id, k])?;
    }
    Ok(())
}

/// Removes every tag of a resource (which is going away).
pub(crate) fn delete_all_tags(tx: &Transaction<'_>, resource_id: &str) -> Result<(), MetaError> {
    tx.execute("DELETE FROM tags WHERE resource_id = ?1", [resource_id])?;
    Ok(())
}

pub fn tag_count(tx: &Transaction<'_>, resource_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM tags WHERE resource_id = ?1", [resource_id], |r| r.get(0))?;
    Ok(n as u64)
}

/// The tags of each of `ids`, sorted by key.
pub fn tags_of(tx: &Transaction<'_>, ids: &[&str]) -> Result<BTreeMap<String, Tags>, MetaError> {
    let mut out: BTreeMap<String, Tags> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT resource_id, tag_key, tag_value FROM tags WHERE resource_id IN ({}) ORDER BY tag_key",
        in_list(ids.len())
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(ids.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    for row in rows {
        let (id, k, v) = row?;
        out.entry(id).or_default().push((k, v));
    }
    Ok(out)
}
