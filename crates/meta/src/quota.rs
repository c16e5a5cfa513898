//! Per-account quotas (table `account_quotas` for the overrides).
//!
//! A quota caps what one account holds in one region (buckets: in the OSS region). Its
//! limit is the account's override if one is set (`feitian account quota NAME key=value`),
//! else the deployment's default (`[quotas]` in the configuration file, kept in the
//! [`Store`](crate::Store) by `feitian up`). A create checks the limit against what the
//! account holds in the same store transaction that inserts the new rows, so two concurrent
//! creates can never both pass a check that only one of them fits: SQLite runs one writer at
//! a time, and the check reads what the other writer committed.
//!
//! | key | what it caps (per account and region) | the code a refused create answers |
//! |---|---|---|
//! | `instances` | instances | `QuotaExceed.ElasticQuota` (403) |
//! | `vcpus` | vCPUs of the account's instances | `QuotaExceed.ElasticQuota` (403) |
//! | `disks` | disks (system and data) | `QuotaExceed.Disk` (403) |
//! | `disk_capacity_gib` | GiB of the account's disks (system and data) | `QuotaExceed.DiskCapacity` (400) |
//! | `snapshots` | snapshots (the snapshot service's creates) | `QuotaExceed.Snapshot` (403) |
//! | `images` | custom images (the image service's creates) | `QuotaExceed.Image` (403) |
//! | `eips` | EIPs | `QuotaExceeded.Eip` (400) |
//! | `vpcs` | VPCs | `QuotaExceeded.Vpc` (400) |
//! | `security_groups` | security groups | `QuotaExceed.SecurityGroup` (400) |
//! | `key_pairs` | SSH key pairs | `QuotaExceed.KeyPair` (400) |
//! | `buckets` | OSS buckets | `TooManyBuckets` (400) |
//!
//! The codes are the services' (their errors are built where the creates are); this module
//! holds the numbers. Snapshots and images have their slots before their services exist, so
//! that those services only have to check them.

use crate::MetaError;
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;
use std::fmt;

/// One quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quota {
    Instances,
    Vcpus,
    Disks,
    DiskCapacityGib,
    Snapshots,
    Images,
    Eips,
    Vpcs,
    SecurityGroups,
    KeyPairs,
    Buckets,
}

impl Quota {
    pub const ALL: [Quota; 11] = [
        Quota::Instances,
        Quota::Vcpus,
        Quota::Disks,
        Quota::DiskCapacityGib,
        Quota::Snapshots,
        Quota::Images,
        Quota::Eips,
        Quota::Vpcs,
        Quota::SecurityGroups,
        Quota::KeyPairs,
        Quota::Buckets,
    ];

    /// The spelling of the configuration file, the CLI and the table.
    pub fn key(self) -> &'static str {
        match self {
            Quota::Instances => "instances",
            Quota::Vcpus => "vcpus",
            Quota::Disks => "disks",
            Quota::DiskCapacityGib => "disk_capacity_gib",
            Quota::Snapshots => "snapshots",
            Quota::Images => "images",
            Quota::Eips => "eips",
            Quota::Vpcs => "vpcs",
            Quota::SecurityGroups => "security_groups",
            Quota::KeyPairs => "key_pairs",
            Quota::Buckets => "buckets",
        }
    }

    pub fn parse(key: &str) -> Option<Quota> {
        Quota::ALL.into_iter().find(|q| q.key() == key)
    }

    /// The default when the configuration says nothing: the real service's default where it
    /// publishes one (VPCs 10, EIPs 20, custom images 100, buckets 100 per region), else a
    /// number a private cloud of one machine can hold.
    pub fn builtin_default(self) -> u64 {
        match self {
            Quota::Instances => 200,
            Quota::Vcpus => 800,
            // Room for every instance's system disk and a few data disks each.
            Quota::Disks => 1000,
            Quota::DiskCapacityGib => 32 * 1024,
            Quota::Snapshots => 1000,
            Quota::Images => 100,
            Quota::Eips => 20,
            Quota::Vpcs => 10,
            Quota::SecurityGroups => 100,
            Quota::KeyPairs => 500,
            Quota::Buckets => 100,
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Parses `key=value` (the CLI's form); `value` is a count (GiB for `disk_capacity_gib`).
pub fn parse_setting(s: &str) -> Result<(Quota, u64), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not key=value"))?;
    let q = Quota::parse(k.trim()).ok_or_else(|| format!("{k:?} is not a quota ({})", keys()))?;
    let n = v.trim().parse::<u64>().map_err(|_| format!("{v:?} is not a whole number"))?;
    check_value(q, n)?;
    Ok((q, n))
}

/// Every key, for messages.
pub fn keys() -> String {
    Quota::ALL.map(Quota::key).join(", ")
}

/// Values are stored as SQLite integers (signed 64-bit).
fn check_value(q: Quota, n: u64) -> Result<(), String> {
    if n > i64::MAX as u64 {
        return Err(format!("{q} = {n} is too large"));
    }
    Ok(())
}

/// The deployment's defaults: one limit per quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    limits: BTreeMap<Quota, u64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { limits: Quota::ALL.into_iter().map(|q| (q, q.builtin_default())).collect() }
    }
}

impl Quotas {
    /// The built-in defaults with `settings` (key → value, as the configuration file's
    /// `[quotas]` table has them) applied; an unknown key is an error.
    pub fn with_settings<'a>(settings: impl IntoIterator<Item = (&'a str, u64)>) -> Result<Quotas, String> {
        let mut out = Quotas::default();
        for (k, v) in settings {
            let q = Quota::parse(k).ok_or_else(|| format!("quotas.{k} is not a quota ({})", keys()))?;
            check_value(q, v)?;
            out.limits.insert(q, v);
        }
        Ok(out)
    }

    pub fn get(&self, q: Quota) -> u64 {
        self.limits.get(&q).copied().unwrap_or_else(|| q.builtin_default())
    }
}

/// Whether `wanted` more fit under `limit` beside `used`.
pub fn fits(limit: u64, used: u64, wanted: u64) -> bool {
    used.checked_add(wanted).is_some_and(|total| total <= limit)
}

/// The account's overrides.
pub fn overrides(tx: &Transaction<'_>, account_id: u64) -> Result<BTreeMap<Quota, u64>, MetaError> {
    let rows = crate::query::all(
        tx,
        "SELECT name, value FROM account_quotas WHERE account_id = ?1",
        params![account_id as i64],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )?;
    // A name this build does not know (a newer build's) is not this build's to enforce.
    Ok(rows.into_iter().filter_map(|(k, v)| Some((Quota::parse(&k)?, v.max(0) as u64))).collect())
}

/// Sets (`Some`) or removes (`None`: back to the default) an account's override.
pub fn set_override(tx: &Transaction<'_>, account_id: u64, q: Quota, value: Option<u64>) -> Result<(), MetaError> {
    match value {
        Some(v) => {
            check_value(q, v).map_err(MetaError::Invalid)?;
            tx.execute(
                "INSERT INTO account_quotas (account_id, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value",
                params![account_id as i64, q.key(), v as i64],
            )?;
        }
        None => {
            tx.execute(
                "DELETE FROM account_quotas WHERE account_id = ?1 AND name = ?2",
                params![account_id as i64, q.key()],
            )?;
        }
    }
    Ok(())
}

/// The account's limit for `q`: its override, else the default.
pub fn limit(tx: &Transaction<'_>, defaults: &Quotas, account_id: u64, q: Quota) -> Result<u64, MetaError> {
    let v: Option<i64> = rusqlite::OptionalExtension::optional(tx.query_row(
        "SELECT value FROM account_quotas WHERE account_id = ?1 AND name = ?2",
        params![account_id as i64, q.key()],
        |r| r.get(0),
    ))?;
    Ok(v.map_or_else(|| defaults.get(q), |v| v.max(0) as u64))
}

/// Every limit of the account, with whether it is an override.
pub fn effective(
    tx: &Transaction<'_>,
    defaults: &Quotas,
    account_id: u64,
) -> Result<Vec<(Quota, u64, bool)>, MetaError> {
    let over = overrides(tx, account_id)?;
    Ok(Quota::ALL
        .into_iter()
        .map(|q| match over.get(&q) {
            Some(v) => (q, *v, true),
            None => (q, defaults.get(q), false),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn keys_round_trip_and_settings_parse() {
        for q in Quota::ALL {
            assert_eq!(Quota::parse(q.key()), Some(q));
        }
        assert_eq!(parse_setting("vcpus=16"), Ok((Quota::Vcpus, 16)));
        assert_eq!(parse_setting(" eips = 3 "), Ok((Quota::Eips, 3)));
        assert!(parse_setting("vcpu=16").is_err(), "a misspelt key");
        assert!(parse_setting("vcpus=-1").is_err());
        assert!(parse_setting("vcpus").is_err());
        assert!(parse_setting(&format!("vcpus={}", u64::MAX)).is_err());
        let d = Quotas::with_settings([("instances", 5)]).unwrap();
        assert_eq!((d.get(Quota::Instances), d.get(Quota::Vpcs)), (5, 10));
        assert!(Quotas::with_settings([("instance", 5)]).is_err());
    }

    #[test]
    fn fits_is_inclusive_and_never_overflows() {
        assert!(fits(10, 8, 2));
        assert!(!fits(10, 8, 3));
        assert!(fits(0, 0, 0));
        assert!(!fits(0, 0, 1));
        assert!(!fits(u64::MAX, u64::MAX, 1));
    }

    #[test]
    fn an_override_wins_until_removed() {
        let s = Store::open_in_memory().unwrap();
        let d = Quotas::with_settings([("eips", 7)]).unwrap();
        s.write(|tx| {
            assert_eq!(limit(tx, &d, 1, Quota::Eips)?, 7);
            set_override(tx, 1, Quota::Eips, Some(2))?;
            set_override(tx, 1, Quota::Eips, Some(3))?;
            assert_eq!(limit(tx, &d, 1, Quota::Eips)?, 3);
            assert_eq!(limit(tx, &d, 2, Quota::Eips)?, 7, "another account keeps the default");
            let all = effective(tx, &d, 1)?;
            assert!(all.contains(&(Quota::Eips, 3, true)));
            assert!(all.contains(&(Quota::Vpcs, 10, false)));
            set_override(tx, 1, Quota::Eips, None)?;
            assert_eq!(limit(tx, &d, 1, Quota::Eips)?, 7);
            Ok::<_, MetaError>(())
        })
        .unwrap();
    }
}
