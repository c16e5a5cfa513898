//! Accounts and their access keys (tables `accounts`, `access_keys`): who may call, with which
//! key pair. The root account and its first key are made on the first start.

use crate::status::status_enum;
use crate::{ids, now, MetaError, Store};
use rusqlite::{params, OptionalExtension, Row, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: u64,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub account_id: u64,
}

status_enum! {
    /// Whether an AccessKey may sign requests.
    pub enum AccessKeyStatus as "AccessKey status" {
        Active = "Active",
        Inactive = "Inactive",
    }
}

/// An AccessKey as `feitian accesskey list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub id: String,
    pub account_id: u64,
    pub account_name: String,
    pub status: AccessKeyStatus,
    pub created_at: String,
}

/// The account whose last active key may not be disabled or deleted: it is the key
/// `feitian up` printed and wrote to `credentials.json`, and with none left the root account
/// (the operator's) could no longer call the API, while `feitian up` would not make a new
/// one either (it adds a key only to a root account with no key at all).
pub const ROOT_ACCOUNT: &str = "root";

/// What authentication needs of an AccessKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub secret: String,
    pub status: AccessKeyStatus,
    pub account: Account,
}

const ACCOUNT_COLS: &str = "id, name, created_at";

fn account_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Account> {
    Ok(Account { id: r.get::<_, i64>(at)? as u64, name: r.get(at + 1)?, created_at: r.get(at + 2)? })
}

/// An account by id, in the caller's transaction (the system account is nobody's to name).
pub fn get_account(tx: &Transaction<'_>, id: u64) -> Result<Option<Account>, MetaError> {
    let Ok(id) = i64::try_from(id) else { return Ok(None) };
    Ok(tx
        .query_row(
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1 AND name <> ?2"),
            params![id, SYSTEM_ACCOUNT],
            |r| account_at(r, 0),
        )
        .optional()?)
}

/// Account names: 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
pub fn validate_account_name(name: &str) -> Result<(), MetaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(MetaError::Invalid(format!(
            "account name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// The account that owns feitian's own resources (the system buckets of snapshot blocks,
/// docs/snapshots.md). It has no AccessKey and can get none, so no request is ever signed
/// for it; users cannot create an account of this name, and listings leave it out.
pub const SYSTEM_ACCOUNT: &str = "feitian.system";

fn account_named(tx: &Transaction<'_>, name: &str) -> Result<Option<Account>, MetaError> {
    Ok(tx
        .query_row(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?1"), [name], |r| account_at(r, 0))
        .optional()?)
}

impl Store {
    pub fn create_account(&self, name: &str) -> Result<Account, MetaError> {
        validate_account_name(name)?;
        if name == SYSTEM_ACCOUNT {
            return Err(MetaError::Invalid(format!("account name {name:?} is reserved for feitian itself")));
        }
        self.write(|tx| {
            if account_named(tx, name)?.is_some() {
                return Err(MetaError::AccountExists(name.to_owned()));
            }
            insert_account(tx, name)
        })
    }

    /// The system account ([`SYSTEM_ACCOUNT`]), made if it is missing.
    pub fn ensure_system_account(&self) -> Result<Account, MetaError> {
        self.write(|tx| match account_named(tx, SYSTEM_ACCOUNT)? {
            Some(a) => Ok(a),
            None => insert_account(tx, SYSTEM_ACCOUNT),
        })
    }

    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>, MetaError> {
        self.read(|tx| account_named(tx, name))
    }

    /// Users' accounts (not the system account).
    pub fn accounts(&self) -> Result<Vec<Account>, MetaError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE name <> ?1 ORDER BY created_at, name"
            ))?;
            let rows = st.query_map([SYSTEM_ACCOUNT], |r| account_at(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// A new key pair for the named account.
    pub fn create_access_key(&self, account_name: &str) -> Result<AccessKey, MetaError> {
        self.write(|tx| {
            if account_name == SYSTEM_ACCOUNT {
                return Err(MetaError::Invalid(format!(
                    "account {account_name:?} is feitian's own and gets no AccessKey"
                )));
            }
            let account =
                account_named(tx, account_name)?.ok_or_else(|| MetaError::AccountNotFound(account_name.to_owned()))?;
            insert_key(tx, account.id, &ids::access_key_id(), &ids::access_key_secret())
        })
    }

    /// Makes sure the root account exists with at least one key. With `wanted` (from the
    /// environment), that exact pair is the root's key, added if new. Returns the root
    /// account and the key created now, if any (to be shown once).
    pub fn ensure_root(&self, wanted: Option<(&str, &str)>) -> Result<(Account, Option<AccessKey>), MetaError> {
        self.write(|tx| {
            let root = match account_named(tx, "root")? {
                Some(a) => a,
                None => insert_account(tx, "root")?,
            };
            let created = match wanted {
                Some((id, secret)) => {
                    let existing: Option<(i64, String)> = tx
                        .query_row("SELECT account_id, secret FROM access_keys WHERE id = ?1", [id], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    match existing {
                        Some((acc, _)) if acc as u64 != root.id => {
                            return Err(MetaError::Invalid(format!("AccessKeyId {id} belongs to another account")))
                        }
                        Some((_, s)) if s == secret => None,
                        Some(_) => {
                            tx.execute(
                                "UPDATE access_keys SET secret = ?2, status = ?3 WHERE id = ?1",
                                params![id, secret, AccessKeyStatus::Active],
                            )?;
                            Some(AccessKey { id: id.to_owned(), secret: secret.to_owned(), account_id: root.id })
                        }
                        None => Some(insert_key(tx, root.id, id, secret)?),
                    }
                }
                None => {
                    let has_key: bool = tx.query_row(
                        "SELECT COUNT(*) > 0 FROM access_keys WHERE account_id = ?1",
                        [root.id as i64],
                        |r| r.get(0),
                    )?;
                    if has_key {
                        None
                    } else {
                        Some(insert_key(tx, root.id, &ids::access_key_id(), &ids::access_key_secret())?)
                    }
                }
            };
            Ok((root, created))
        })
    }

    /// The AccessKeys, of one account or of all, oldest first.
    pub fn access_keys(&self, account_name: Option<&str>) -> Result<Vec<AccessKeyInfo>, MetaError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached(&format!(
                "{KEY_INFO} WHERE ?1 IS NULL OR a.name = ?1 ORDER BY k.created_at, a.name, k.id"
            ))?;
            let rows = st.query_map([account_name], key_info_at)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Sets a key's status (`Inactive` refuses its requests, `Active` accepts them again).
    /// The root account's last active key cannot be made inactive ([`ROOT_ACCOUNT`]).
    pub fn set_access_key_status(&self, id: &str, status: AccessKeyStatus) -> Result<AccessKeyInfo, MetaError> {
        self.write(|tx| {
            let key = key_info(tx, id)?;
            if status == AccessKeyStatus::Inactive {
                refuse_last_root_key(tx, &key)?;
            }
            tx.execute("UPDATE access_keys SET status = ?2 WHERE id = ?1", params![id, status])?;
            Ok(AccessKeyInfo { status, ..key })
        })
    }

    /// Deletes a key for good: its requests then get `InvalidAccessKeyId.NotFound`. The root
    /// account's last active key cannot be deleted ([`ROOT_ACCOUNT`]).
    pub fn delete_access_key(&self, id: &str) -> Result<AccessKeyInfo, MetaError> {
        self.write(|tx| {
            let key = key_info(tx, id)?;
            refuse_last_root_key(tx, &key)?;
            tx.execute("DELETE FROM access_keys WHERE id = ?1", [id])?;
            Ok(key)
        })
    }

    pub fn lookup_access_key(&self, id: &str) -> Result<Option<KeyRecord>, MetaError> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT k.secret, k.status, a.id, a.name, a.created_at
                     FROM access_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = ?1",
                    [id],
                    |r| Ok(KeyRecord { secret: r.get(0)?, status: r.get(1)?, account: account_at(r, 2)? }),
                )
                .optional()?)
        })
    }
}

const KEY_INFO: &str = "SELECT k.id, a.id, a.name, k.status, k.created_at
     FROM access_keys k JOIN accounts a ON a.id = k.account_id";

fn key_info_at(r: &Row<'_>) -> rusqlite::Result<AccessKeyInfo> {
    Ok(AccessKeyInfo {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        account_name: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn key_info(tx: &Transaction<'_>, id: &str) -> Result<AccessKeyInfo, MetaError> {
    tx.query_row(&format!("{KEY_INFO} WHERE k.id = ?1"), [id], key_info_at)
        .optional()?
        .ok_or_else(|| MetaError::AccessKeyNotFound(id.to_owned()))
}

/// Refuses to take away the root account's last active key (see [`ROOT_ACCOUNT`]).
fn refuse_last_root_key(tx: &Transaction<'_>, key: &AccessKeyInfo) -> Result<(), MetaError> {
    if key.account_name != ROOT_ACCOUNT || key.status != AccessKeyStatus::Active {
        return Ok(());
    }
    let active: i64 = tx.query_row(
        "SELECT COUNT(*) FROM access_keys WHERE account_id = ?1 AND status = ?2",
        params![key.account_id as i64, AccessKeyStatus::Active],
        |r| r.get(0),
    )?;
    if active <= 1 {
        return Err(MetaError::LastRootKey(key.id.clone()));
    }
    Ok(())
}

fn insert_account(tx: &Transaction<'_>, name: &str) -> Result<Account, MetaError> {
    // Ids are random; retry on the (astronomically rare) collision instead of failing.
    for _ in 0..8 {
        let a = Account { id: ids::account_id(), name: name.to_owned(), created_at: now() };
        let n = tx.execute(
            "INSERT INTO accounts (id, name, created_at) SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
            params![a.id as i64, a.name, a.created_at],
        )?;
        if n == 1 {
            return Ok(a);
        }
    }
    Err(MetaError::Invalid("could not pick a free account id".into()))
}

fn insert_key(tx: &Transaction<'_>, account_id: u64, id: &str, secret: &str) -> Result<AccessKey, MetaError> {
    tx.execute(
        "INSERT INTO access_keys (id, account_id, secret, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, account_id as i64, secret, AccessKeyStatus::Active, now()],
    )?;
    Ok(AccessKey { id: id.to_owned(), secret: secret.to_owned(), account_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;

    #[test]
    fn access_key_statuses_round_trip() {
        assert_sql_round_trips(AccessKeyStatus::ALL, AccessKeyStatus::as_str, AccessKeyStatus::parse);
    }

    #[test]
    fn access_key_status_is_written_and_read() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("a").unwrap();
        let k = s.create_access_key("a").unwrap();
        for &status in AccessKeyStatus::ALL {
            s.write(|tx| {
                Ok::<_, MetaError>(
                    tx.execute("UPDATE access_keys SET status = ?2 WHERE id = ?1", params![k.id, status])?,
                )
            })
            .unwrap();
            assert_eq!(s.lookup_access_key(&k.id).unwrap().unwrap().status, status);
        }
        s.write(|tx| {
            Ok::<_, MetaError>(
                tx.execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE access_keys SET status = 'Gone'")?,
            )
        })
        .unwrap();
        assert!(s.lookup_access_key(&k.id).is_err(), "an unknown status is an error, not a key");
    }

    #[test]
    fn the_system_account_gets_no_key_and_is_neither_created_nor_listed_by_users() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("a").unwrap();
        let sys = s.ensure_system_account().unwrap();
        assert_eq!(s.ensure_system_account().unwrap(), sys, "made once");
        assert!(matches!(s.create_account(SYSTEM_ACCOUNT), Err(MetaError::Invalid(_))));
        assert!(matches!(s.create_access_key(SYSTEM_ACCOUNT), Err(MetaError::Invalid(_))));
        assert_eq!(s.accounts().unwrap().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(s.access_keys(Some(SYSTEM_ACCOUNT)).unwrap().is_empty());
    }

    #[test]
    fn root_key_from_environment() {
        let s = Store::open_in_memory().unwrap();
        let (_, k) = s.ensure_root(Some(("LTAIfixed", "sekret"))).unwrap();
        assert_eq!(k.unwrap().id, "LTAIfixed");
        let (_, k) = s.ensure_root(Some(("LTAIfixed", "sekret"))).unwrap();
        assert!(k.is_none());
        let (_, k) = s.ensure_root(Some(("LTAIfixed", "changed"))).unwrap();
        assert_eq!(k.unwrap().secret, "changed");
        assert_eq!(s.lookup_access_key("LTAIfixed").unwrap().unwrap().secret, "changed");
        s.create_account("other").unwrap();
        let other_key = s.create_access_key("other").unwrap();
        assert!(s.ensure_root(Some((&other_key.id, "x"))).is_err());
    }

    #[test]
    fn keys_are_disabled_enabled_and_deleted() {
        let s = Store::open_in_memory().unwrap();
        s.create_account("a").unwrap();
        let k = s.create_access_key("a").unwrap();
        let info = s.set_access_key_status(&k.id, AccessKeyStatus::Inactive).unwrap();
        assert_eq!((info.account_name.as_str(), info.status), ("a", AccessKeyStatus::Inactive));
        assert_eq!(s.lookup_access_key(&k.id).unwrap().unwrap().status, AccessKeyStatus::Inactive);
        // Another account's last key may go: only root's is kept.
        s.set_access_key_status(&k.id, AccessKeyStatus::Active).unwrap();
        assert_eq!(s.lookup_access_key(&k.id).unwrap().unwrap().status, AccessKeyStatus::Active);
        assert_eq!(s.access_keys(Some("a")).unwrap().len(), 1);
        s.delete_access_key(&k.id).unwrap();
        assert!(s.lookup_access_key(&k.id).unwrap().is_none());
        assert!(s.access_keys(Some("a")).unwrap().is_empty());
        for r in
            [s.delete_access_key(&k.id).map(drop), s.set_access_key_status(&k.id, AccessKeyStatus::Active).map(drop)]
        {
            assert!(matches!(r, Err(MetaError::AccessKeyNotFound(_))));
        }
    }

    #[test]
    fn the_root_accounts_last_active_key_stays() {
        let s = Store::open_in_memory().unwrap();
        let (_, first) = s.ensure_root(None).unwrap();
        let first = first.unwrap();
        for r in [
            s.set_access_key_status(&first.id, AccessKeyStatus::Inactive).map(drop),
            s.delete_access_key(&first.id).map(drop),
        ] {
            assert!(matches!(r, Err(MetaError::LastRootKey(_))), "{r:?}");
        }
        let second = s.create_access_key("root").unwrap();
        s.set_access_key_status(&first.id, AccessKeyStatus::Inactive).unwrap();
        // Now `second` is the last active one; the inactive first may be deleted.
        assert!(matches!(s.delete_access_key(&second.id), Err(MetaError::LastRootKey(_))));
        s.delete_access_key(&first.id).unwrap();
        assert!(matches!(
            s.set_access_key_status(&second.id, AccessKeyStatus::Inactive),
            Err(MetaError::LastRootKey(_))
        ));
        // Enabling is always allowed.
        assert_eq!(
            s.set_access_key_status(&second.id, AccessKeyStatus::Active).unwrap().status,
            AccessKeyStatus::Active
        );
        let all = s.access_keys(None).unwrap();
        assert_eq!(all.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), vec![second.id.as_str()]);
    }

    #[test]
    fn accounts_and_keys() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("team-a").unwrap();
        assert!(matches!(s.create_account("team-a"), Err(MetaError::AccountExists(_))));
        assert!(matches!(s.create_account("../x"), Err(MetaError::Invalid(_))));
        assert!(matches!(s.create_account(""), Err(MetaError::Invalid(_))));
        assert!(matches!(s.create_access_key("nobody"), Err(MetaError::AccountNotFound(_))));
        let k = s.create_access_key("team-a").unwrap();
        assert_eq!(s.lookup_access_key(&k.id).unwrap().unwrap().account.id, a.id);
        assert!(s.lookup_access_key("LTAInothere").unwrap().is_none());
        assert_eq!(s.account_by_name("team-a").unwrap().unwrap(), a);
        assert_eq!(s.accounts().unwrap().len(), 1);
        assert_eq!(s.read(|tx| crate::resource::account_name(tx, a.id)).unwrap().as_deref(), Some("team-a"));
    }
}
