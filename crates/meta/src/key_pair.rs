//! SSH key pairs (table `key_pairs`): named per account and region, public halves only.
//! Instances name theirs (`instances.key_pair_name`); tags of a key pair hang off a derived
//! resource id (the ECS service's `tag_id`).

use crate::instance::Instance;
use crate::query::all;
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub account_id: u64,
    pub region_id: String,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: String,
}

const KP_COLS: &str = "account_id, region_id, name, fingerprint, public_key, created_at";

fn kp_row(r: &Row<'_>) -> rusqlite::Result<KeyPair> {
    Ok(KeyPair {
        account_id: r.get::<_, i64>(0)? as u64,
        region_id: r.get(1)?,
        name: r.get(2)?,
        fingerprint: r.get(3)?,
        public_key: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub fn insert_key_pair(tx: &Transaction<'_>, k: &KeyPair) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO key_pairs ({KP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![k.account_id as i64, k.region_id, k.name, k.fingerprint, k.public_key, k.created_at],
    )?;
    Ok(())
}

/// The OpenSSH public keys an instance is given (its key pair's, if it still exists).
pub fn public_keys_of(tx: &Transaction<'_>, i: &Instance) -> Result<Vec<String>, MetaError> {
    if i.key_pair_name.is_empty() {
        return Ok(vec![]);
    }
    Ok(get_key_pair(tx, i.account_id, &i.region_id, &i.key_pair_name)?.map(|k| vec![k.public_key]).unwrap_or_default())
}

pub fn get_key_pair(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    name: &str,
) -> Result<Option<KeyPair>, MetaError> {
    Ok(tx
        .query_row(
            &format!("SELECT {KP_COLS} FROM key_pairs WHERE account_id = ?1 AND region_id = ?2 AND name = ?3"),
            params![account_id as i64, region_id, name],
            kp_row,
        )
        .optional()?)
}

pub fn list_key_pairs(
    tx: &Transaction<'_>,
    account_id: u64,
    region_id: &str,
    name_like: Option<&str>,
    fingerprint: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<KeyPair>, u64), MetaError> {
    // Names may be given with `*` wildcards, as the API allows.
    let pattern = name_like.map(|n| n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").replace('*', "%"));
    let cond = "account_id = ?1 AND region_id = ?2 AND (?3 IS NULL OR name LIKE ?3 ESCAPE '\\') AND (?4 IS NULL OR fingerprint = ?4)";
    let total: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM key_pairs WHERE {cond}"),
        params![account_id as i64, region_id, pattern, fingerprint],
        |r| r.get(0),
    )?;
    let rows = all(
        tx,
        &format!("SELECT {KP_COLS} FROM key_pairs WHERE {cond} ORDER BY created_at, name LIMIT ?5 OFFSET ?6"),
        params![account_id as i64, region_id, pattern, fingerprint, limit as i64, offset as i64],
        kp_row,
    )?;
    Ok((rows, total as u64))
}

pub fn delete_key_pair(tx: &Transaction<'_>, account_id: u64, region_id: &str, name: &str) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM key_pairs WHERE account_id = ?1 AND region_id = ?2 AND name = ?3",
        params![account_id as i64, region_id, name],
    )?;
    Ok(())
}
