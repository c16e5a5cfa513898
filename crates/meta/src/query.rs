//! The query shapes the resource modules share: a page of a filtered list with its total, every
//! row of a query, counts. Table and column names come from the callers' constants, never from
//! input; values are always bound.

use crate::filter::Filter;
use crate::MetaError;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Row, Transaction};

/// One page of a filtered list, in creation order, and the total count.
pub(crate) fn page<T>(
    tx: &Transaction<'_>,
    table: &str,
    cols: &str,
    f: &Filter,
    offset: u64,
    limit: u64,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, u64), MetaError> {
    let w = f.where_sql();
    let total: i64 =
        tx.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE {w}"), params_from_iter(f.args()), |r| r.get(0))?;
    let mut args = f.args();
    args.push((limit.min(i64::MAX as u64) as i64).into());
    args.push((offset.min(i64::MAX as u64) as i64).into());
    let mut st =
        tx.prepare_cached(&format!("SELECT {cols} FROM {table} WHERE {w} ORDER BY created_at, id LIMIT ? OFFSET ?"))?;
    let rows = st.query_map(params_from_iter(args), map)?.collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total as u64))
}

/// Every row `sql` finds.
pub(crate) fn all<T>(
    tx: &Transaction<'_>,
    sql: &str,
    args: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, MetaError> {
    let mut st = tx.prepare_cached(sql)?;
    let rows = st.query_map(args, map)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// `n` placeholders for an `IN (…)` list.
pub(crate) fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `column` of an account's rows of `table` whose `key` is any of `values`.
pub(crate) fn owned_where_in(
    tx: &Transaction<'_>,
    table: &'static str,
    column: &'static str,
    account_id: u64,
    key: &'static str,
    values: &[String],
) -> Result<Vec<String>, MetaError> {
    let sql = format!("SELECT {column} FROM {table} WHERE account_id = ? AND {key} IN ({})", in_list(values.len()));
    let mut args: Vec<Value> = vec![(account_id as i64).into()];
    args.extend(values.iter().map(|s| Value::from(s.clone())));
    all(tx, &sql, params_from_iter(args), |r| r.get(0))
}

/// Any row of `table` whose `column` equals `value`, for dependency checks (fixed names only).
pub fn count_where(
    tx: &Transaction<'_>,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"), [value], |r| r.get(0))?;
    Ok(n as u64)
}

/// Counts rows of `table` matching a filter.
pub fn count(tx: &Transaction<'_>, table: &'static str, f: &Filter) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {}", f.where_sql()),
        params_from_iter(f.args()),
        |r| r.get(0),
    )?;
    Ok(n as u64)
}
