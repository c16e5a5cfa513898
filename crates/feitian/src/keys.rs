//! AccessKey lookups for the edge, from the control-plane store with a short-lived cache.
//!
//! Hits are cached for [`TTL`] so that steady traffic does not touch the database; a miss
//! always asks the store, so a key created by `feitian accesskey create` (another process,
//! same data directory) works at once.

use feitian_api::{ApiError, Caller, Credential, KeyStore};
use feitian_meta::account::AccessKeyStatus;
use feitian_meta::Store;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(10);

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
