//! AccessKey lookups for the edge, from the control-plane store with a short-lived cache.
//!
//! Hits are cached for [`TTL`] so that steady traffic does not read the database on every
//! request; a miss always asks the store, so a key created by `feitian accesskey create`
//! works at once. `feitian accesskey disable/enable/delete` run as another process on the
//! same data directory (no in-process notification reaches this cache), so the TTL is what
//! bounds how long a change takes: under a second. The price is one indexed read per active
//! key every half second, about what re-checking a version counter in the store would cost,
//! with nothing extra to keep in step on every key change.

use feitian_api::{ApiError, Caller, Credential, KeyStore};
use feitian_meta::account::AccessKeyStatus;
use feitian_meta::Store;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a hit is trusted: a disabled or deleted key is refused within this (plus one
/// store read) after the change commits.
const TTL: Duration = Duration::from_millis(500);

pub struct StoreKeys {
    store: Store,
    cache: RwLock<HashMap<String, (Credential, Instant)>>,
}

impl StoreKeys {
    pub fn new(store: Store) -> Self {
        StoreKeys { store, cache: RwLock::new(HashMap::new()) }
    }
}

impl KeyStore for StoreKeys {
    fn lookup(&self, access_key_id: &str) -> Result<Option<Credential>, ApiError> {
        if let Some((cred, at)) = self.cache.read().get(access_key_id) {
            if at.elapsed() < TTL {
                return Ok(Some(cred.clone()));
            }
        }
        let rec = self.store.lookup_access_key(access_key_id).map_err(|e| {
            tracing::error!(error = %e, "AccessKey lookup failed");
            ApiError::internal()
        })?;
        let Some(rec) = rec else {
            self.cache.write().remove(access_key_id);
            return Ok(None);
        };
        let cred = Credential {
            secret: rec.secret,
            active: rec.status == AccessKeyStatus::Active,
            caller: Caller {
                account_id: rec.account.id,
                account_name: rec.account.name,
                access_key_id: access_key_id.to_owned(),
            },
        };
        self.cache.write().insert(access_key_id.to_owned(), (cred.clone(), Instant::now()));
        Ok(Some(cred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_the_store_is_seen_once_the_ttl_passed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = Store::open(&path).unwrap();
        store.create_account("a").unwrap();
        let key = store.create_access_key("a").unwrap();
        let keys = StoreKeys::new(store);
        assert!(keys.lookup(&key.id).unwrap().unwrap().active);
        // Another process (as `feitian accesskey disable` is) changes the key.
        let other = Store::open(&path).unwrap();
        other.set_access_key_status(&key.id, AccessKeyStatus::Inactive).unwrap();
        std::thread::sleep(TTL + Duration::from_millis(20));
        assert!(!keys.lookup(&key.id).unwrap().unwrap().active, "disabled within the TTL");
        other.set_access_key_status(&key.id, AccessKeyStatus::Active).unwrap();
        std::thread::sleep(TTL + Duration::from_millis(20));
        assert!(keys.lookup(&key.id).unwrap().unwrap().active, "enabled again within the TTL");
        other.create_access_key("a").unwrap(); // root-less store: deleting a's only key is fine
        other.delete_access_key(&key.id).unwrap();
        std::thread::sleep(TTL + Duration::from_millis(20));
        assert!(keys.lookup(&key.id).unwrap().is_none(), "deleted within the TTL");
    }
}
