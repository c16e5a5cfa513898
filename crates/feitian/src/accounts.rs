//! `feitian account …` and `feitian accesskey …`: work on the data directory directly,
//! whether or not `feitian up` is running on it (SQLite arbitrates).

use anyhow::Context;
use feitian_meta::account::{AccessKey, AccessKeyStatus};
use feitian_meta::Store;
use std::path::Path;

pub const DB_FILE: &str = "meta.db";
/// The root key pair, written on the first start (0600).
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// Opens the store of a data directory, creating the directory (mode 0700) if needed.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        set_mode(data_dir, 0o700)?;
    }
    let path = data_dir.join(DB_FILE);
    let store = Store::open(&path)?;
    set_mode(&path, 0o600)?;
    Ok(store)
}

pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// The one form in which feitian shows a key pair, and writes `credentials.json`.
pub fn key_json(key: &AccessKey) -> String {
    serde_json::json!({"access_key_id": key.id, "access_key_secret": key.secret}).to_string()
}

pub fn create_account(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    let account = store.create_account(name)?;
    let key = store.create_access_key(name)?;
    eprintln!("created account {} ({}); its AccessKey pair, shown only now:", account.name, account.id);
    println!("{}", key_json(&key));
    Ok(())
}

pub fn create_key(data_dir: &Path, account: &str) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    let key = store.create_access_key(account)?;
    eprintln!("created an AccessKey pair for account {account}, shown only now:");
    println!("{}", key_json(&key));
    Ok(())
}

pub fn list_accounts(data_dir: &Path) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    for a in store.accounts()? {
        println!("{}\t{}\t{}", a.name, a.id, a.created_at);
    }
    Ok(())
}

/// `feitian accesskey list`: id, account, status, creation time; never a secret.
pub fn list_keys(data_dir: &Path, account: Option<&str>) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    if let Some(name) = account {
        if store.account_by_name(name)?.is_none() {
            return Err(feitian_meta::MetaError::AccountNotFound(name.to_owned()).into());
        }
    }
    for k in store.access_keys(account)? {
        println!("{}\t{}\t{}\t{}", k.id, k.account_name, k.status, k.created_at);
    }
    Ok(())
}

/// `feitian accesskey disable|enable ID`: the running edge honours it within a second.
pub fn set_key_status(data_dir: &Path, id: &str, status: AccessKeyStatus) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    let key = store.set_access_key_status(id, status)?;
    let what = if status == AccessKeyStatus::Active { "enabled" } else { "disabled" };
    eprintln!("{what} AccessKey {} of account {}", key.id, key.account_name);
    Ok(())
}

/// `feitian accesskey delete ID`: for good; the running edge answers NotFound within a second.
pub fn delete_key(data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    let key = store.delete_access_key(id)?;
    eprintln!("deleted AccessKey {} of account {}", key.id, key.account_name);
    let creds = data_dir.join(CREDENTIALS_FILE);
    if std::fs::read_to_string(&creds).is_ok_and(|c| c.contains(&format!("\"{}\"", key.id))) {
        eprintln!("note: {} still holds this key; it no longer works", creds.display());
    }
    Ok(())
}

/// `feitian account quota NAME [key=value …]`: sets the given overrides (`key=default`
/// removes one), then shows every quota of the account: its limit and where it comes from.
pub fn quota(data_dir: &Path, name: &str, settings: &[String], config: Option<&Path>) -> anyhow::Result<()> {
    use feitian_meta::quota::{self, Quota};
    let defaults = crate::config::Config::load(config)?.quotas()?;
    let mut changes = Vec::new();
    for s in settings {
        match s.split_once('=') {
            Some((k, "default")) => {
                let q = Quota::parse(k.trim())
                    .ok_or_else(|| anyhow::anyhow!("{k:?} is not a quota ({})", quota::keys()))?;
                changes.push((q, None));
            }
            _ => {
                let (q, v) = quota::parse_setting(s).map_err(anyhow::Error::msg)?;
                changes.push((q, Some(v)));
            }
        }
    }
    let store = open_store(data_dir)?;
    let account =
        store.account_by_name(name)?.ok_or_else(|| feitian_meta::MetaError::AccountNotFound(name.to_owned()))?;
    let rows = store.write(|tx| {
        for (q, v) in &changes {
            quota::set_override(tx, account.id, *q, *v)?;
        }
        quota::effective(tx, &defaults, account.id)
    })?;
    for (q, v, overridden) in rows {
        println!("{q}\t{v}\t{}", if overridden { "account" } else { "default" });
    }
    Ok(())
}
