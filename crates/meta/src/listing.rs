//! The listing scan shared by ListObjects and ListMultipartUploads: rows in key order within
//! a prefix's index range, one row per common prefix (the rest of a group is jumped over with
//! a new query, never read), in batches.

use crate::MetaError;
use rusqlite::{params, Row, Transaction};

/// Rows fetched per query while listing.
pub(crate) const SCAN_BATCH: usize = 1000;

/// Where a listing query starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
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
pub(crate) fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
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
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
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

/// A table a listing reads: keys in column `object_key`, one bucket's rows at a time.
pub(crate) struct Listed {
    pub table: &'static str,
    pub cols: &'static str,
    /// `ORDER BY` this (the key first).
    pub order: &'static str,
}

/// One batch for [`scan`]: `bucket`'s rows of `listed` from `from`, below `upper`, in order,
/// at most `limit`.
pub(crate) fn fetch<T>(
    tx: &Transaction<'_>,
    listed: &Listed,
    bucket: &str,
    from: &Resume,
    upper: Option<&str>,
    limit: usize,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, MetaError> {
    let Listed { table, cols, order } = listed;
    let (cond, a, b) = from.condition();
    let upper_cond = if upper.is_some() { "AND object_key < ?5" } else { "AND ?5 IS NULL" };
    let mut st = tx.prepare_cached(&format!(
        "SELECT {cols} FROM {table} WHERE bucket = ?1 AND {cond} {upper_cond} ORDER BY {order} LIMIT ?4"
    ))?;
    let rows = st.query_map(params![bucket, a, b, limit as i64, upper], map)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The listing loop shared by objects and uploads: fetches rows in key order in batches
/// from `start`, within the prefix's index range, and keeps one row per common prefix,
/// jumping past the rest of each group with a new query.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan<T>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
