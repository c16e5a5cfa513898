//! `ClientToken` idempotency (table `client_tokens`): the first answer to an
//! `(account, action, token)` is kept with a digest of the request's parameters and returned
//! again for a repeat, so a client that retries a create never makes two.
//!
//! A token is remembered for [`CLIENT_TOKEN_TTL`] (24 hours) from its first answer, then it
//! is forgotten: the same token is a new request again. Alibaba's idempotence pages (ECS,
//! VPC, ROS) name no period; a retry comes within minutes, and 24 hours is what comparable
//! APIs keep (several AWS APIs: 8 to 36 hours). Expired rows are deleted by the writes that
//! record tokens, at most [`SWEEP_PER_WRITE`] per write (oldest first, by an index), so the
//! table holds about one day of tokens and no write does unbounded work.

use crate::{now, MetaError, Store};
use chrono::Utc;
use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

/// How long a `ClientToken` is remembered after its first answer.
pub const CLIENT_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(24);

/// How many expired rows one idempotent write deletes, at most.
pub const SWEEP_PER_WRITE: usize = 64;

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
        let cutoff = (Utc::now() - CLIENT_TOKEN_TTL).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        self.write(|tx| {
            forget_expired(tx, &cutoff, account_id, action, token)?;
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

/// Deletes this token's row if it is older than `cutoff` (it is then a new request), and up
/// to [`SWEEP_PER_WRITE`] other expired rows, oldest first. Times are stored as
/// `2026-11-22T08:00:00Z`, which sorts as text in time order.
fn forget_expired(
    tx: &Transaction<'_>,
    cutoff: &str,
    account_id: u64,
    action: &str,
    token: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM client_tokens WHERE account_id = ?1 AND action = ?2 AND token = ?3 AND created_at < ?4",
        params![account_id as i64, action, token, cutoff],
    )?;
    tx.execute(
        "DELETE FROM client_tokens WHERE (account_id, action, token) IN (
             SELECT account_id, action, token FROM client_tokens WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
        params![cutoff, SWEEP_PER_WRITE as i64],
    )?;
    Ok(())
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

    fn age(s: &Store, token: &str, created_at: &str) {
        s.write(|tx| {
            Ok::<_, MetaError>(
                tx.execute("UPDATE client_tokens SET created_at = ?2 WHERE token = ?1", params![token, created_at])?,
            )
        })
        .unwrap();
    }

    fn count(s: &Store) -> i64 {
        s.read(|tx| Ok::<_, MetaError>(tx.query_row("SELECT COUNT(*) FROM client_tokens", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn a_token_is_forgotten_after_its_ttl() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let mut n = 0;
        let mut create = |p: &[(&str, &str)]| {
            s.idempotent::<MetaError>(a.id, "CreateVpc", "tok", p.iter().copied(), |_| {
                n += 1;
                Ok(format!("vpc-{n}"))
            })
        };
        assert_eq!(create(&[("CidrBlock", "10.0.0.0/8")]).unwrap(), "vpc-1");
        // Just inside the window: still a repeat (and a mismatch is still refused).
        let inside = (Utc::now() - CLIENT_TOKEN_TTL + chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
        age(&s, "tok", &inside.to_string());
        assert_eq!(create(&[("CidrBlock", "10.0.0.0/8")]).unwrap(), "vpc-1");
        assert!(matches!(create(&[("CidrBlock", "192.168.0.0/16")]), Err(MetaError::IdempotencyMismatch)));
        // Past it: a new request, even with other parameters, and the old row is replaced.
        let outside = (Utc::now() - CLIENT_TOKEN_TTL - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
        age(&s, "tok", &outside.to_string());
        assert_eq!(create(&[("CidrBlock", "192.168.0.0/16")]).unwrap(), "vpc-2");
        assert_eq!(create(&[("CidrBlock", "192.168.0.0/16")]).unwrap(), "vpc-2");
        assert_eq!(count(&s), 1);
    }

    #[test]
    fn expired_rows_are_swept_a_bounded_number_per_write() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let old = 150;
        s.write(|tx| {
            for i in 0..old {
                tx.execute(
                    "INSERT INTO client_tokens (account_id, action, token, fingerprint, reply, created_at)
                     VALUES (?1, 'CreateVpc', ?2, 'f', 'r', '2026-01-01T00:00:00Z')",
                    params![a.id as i64, format!("old-{i}")],
                )?;
            }
            Ok::<_, MetaError>(())
        })
        .unwrap();
        let write = |t: &str| s.idempotent::<MetaError>(a.id, "CreateVpc", t, [], |_| Ok("x".into())).unwrap();
        write("new-1");
        assert_eq!(count(&s), (old - SWEEP_PER_WRITE + 1) as i64, "one write sweeps at most SWEEP_PER_WRITE");
        write("new-1"); // a repeat sweeps too
        write("new-2");
        assert_eq!(count(&s), 2, "only the live tokens remain");
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
