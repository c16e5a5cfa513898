//! `ClientToken` idempotency (table `client_tokens`): the first answer to an
//! `(account, action, token)` is kept with a digest of the request's parameters and returned
//! again for a repeat, so a client that retries a create never makes two.

use crate::{now, MetaError, Store};
use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

impl Store {
    /// Runs `create` at most once per `(account, action, token)`. `params` are the request's
    /// business parameters: a repeat with the same token and the same parameters returns the
    /// first reply without running `create`; with other parameters it is
    /// [`MetaError::IdempotencyMismatch`]. `create` runs inside the same transaction that
    /// records the reply, so a crash leaves either both or neither.
    pub fn idempotent<'p, E: From<MetaError>>(
        &self,
        account_id: u64,
        action: &str,
        token: &str,
        params: impl IntoIterator<Item = (&'p str, &'p str)>,
        create: impl FnOnce(&Transaction<'_>) -> Result<String, E>,
    ) -> Result<String, E> {
        let fingerprint = fingerprint(params);
        self.write(|tx| {
            let seen: Option<(String, String)> = tx
                .query_row(
                    "SELECT fingerprint, reply FROM client_tokens WHERE account_id = ?1 AND action = ?2 AND token = ?3",
                    params![account_id as i64, action, token],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(MetaError::from)?;
            if let Some((fp, reply)) = seen {
                return if fp == fingerprint { Ok(reply) } else { Err(MetaError::IdempotencyMismatch.into()) };
            }
            let reply = create(tx)?;
            tx.execute(
                "INSERT INTO client_tokens (account_id, action, token, fingerprint, reply, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![account_id as i64, action, token, fingerprint, reply, now()],
            )
            .map_err(MetaError::from)?;
            Ok(reply)
        })
    }
}

/// A stable digest of sorted `(name, value)` pairs.
fn fingerprint<'p>(params: impl IntoIterator<Item = (&'p str, &'p str)>) -> String {
    let mut v: Vec<(&str, &str)> = params.into_iter().collect();
    v.sort_unstable();
    let mut h = Sha256::new();
    for (k, val) in v {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((val.len() as u64).to_le_bytes());
        h.update(val.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_idempotency() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let mut runs = 0;
        let mut create = |p: &[(&str, &str)]| {
            s.idempotent::<MetaError>(a.id, "CreateVpc", "tok", p.iter().copied(), |tx| {
                runs += 1;
                let id = s.scope(a.id).register(tx, "vpc", "vpc", "cn-hangzhou", "bp")?;
                Ok(id)
            })
        };
        let first = create(&[("CidrBlock", "10.0.0.0/8")]).unwrap();
        let again = create(&[("CidrBlock", "10.0.0.0/8")]).unwrap();
        assert_eq!(first, again);
        assert!(matches!(create(&[("CidrBlock", "192.168.0.0/16")]), Err(MetaError::IdempotencyMismatch)));
        assert_eq!(runs, 1);
        assert_eq!(s.read::<_, MetaError>(|tx| s.scope(a.id).list(tx, "vpc", "cn-hangzhou", 0, 10)).unwrap().1, 1);
    }

    #[test]
    fn a_failed_create_leaves_nothing() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let r = s.idempotent::<MetaError>(a.id, "CreateVpc", "t", [], |tx| {
            s.scope(a.id).register(tx, "vpc", "vpc", "cn-hangzhou", "bp")?;
            Err(MetaError::Invalid("validation failed after the insert".into()))
        });
        assert!(r.is_err());
        assert_eq!(s.read::<_, MetaError>(|tx| s.scope(a.id).list(tx, "vpc", "cn-hangzhou", 0, 10)).unwrap().1, 0);
        // The token was not consumed either.
        let ok = s.idempotent::<MetaError>(a.id, "CreateVpc", "t", [], |_| Ok("x".into())).unwrap();
        assert_eq!(ok, "x");
    }
}
