//! The resource registry (table `resources`): every resource of every service, whatever its
//! kind, with its owner and region; and owners' names ([`account_name`]). Ownership checks go
//! through an [`AccountScope`], which only ever sees its own account's rows; services' tables
//! reference the registry's ids.

use crate::{ids, now, tag, MetaError, Store};
use rusqlite::{params, OptionalExtension, Row, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub id: String,
    pub kind: String,
    pub region_id: String,
    pub created_at: String,
}

fn resource_row(r: &Row<'_>) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow { id: r.get(0)?, kind: r.get(1)?, region_id: r.get(2)?, created_at: r.get(3)? })
}

impl Store {
    /// The resources of one account, and nothing else.
    pub fn scope(&self, account_id: u64) -> AccountScope {
        AccountScope { account_id }
    }
}

/// Registers a resource whose id the caller derives (named resources such as key pairs).
pub fn register_named(
    tx: &Transaction<'_>,
    id: &str,
    account_id: u64,
    kind: &str,
    region_id: &str,
    at: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO resources (id, account_id, kind, region_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, account_id as i64, kind, region_id, at],
    )?;
    Ok(())
}

/// The name of an account, by id (an owner as rules and answers name it).
pub fn account_name(tx: &Transaction<'_>, account_id: u64) -> Result<Option<String>, MetaError> {
    Ok(tx.query_row("SELECT name FROM accounts WHERE id = ?1", [account_id as i64], |r| r.get(0)).optional()?)
}

/// Removes a resource's ownership row and its tags.
pub fn forget_resource(tx: &Transaction<'_>, id: &str) -> Result<(), MetaError> {
    tag::delete_all_tags(tx, id)?;
    tx.execute("DELETE FROM resources WHERE id = ?1", [id])?;
    Ok(())
}

/// One account's view of the resource registry. There is no way to name another account's
/// resource through it: a foreign id is simply not found.
pub struct AccountScope {
    account_id: u64,
}

impl AccountScope {
    pub fn account_id(&self) -> u64 {
        self.account_id
    }

    /// Registers a new resource of this account inside the caller's transaction, with a fresh
    /// id in the real format.
    pub fn register(
        &self,
        tx: &Transaction<'_>,
        kind: &str,
        prefix: &str,
        region_id: &str,
        region_code: &str,
    ) -> Result<String, MetaError> {
        for _ in 0..8 {
            let id = ids::resource_id(prefix, region_code);
            let n = tx.execute(
                "INSERT INTO resources (id, account_id, kind, region_id, created_at)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM resources WHERE id = ?1)",
                params![id, self.account_id as i64, kind, region_id, now()],
            )?;
            if n == 1 {
                return Ok(id);
            }
        }
        Err(MetaError::Invalid("could not pick a free resource id".into()))
    }

    /// The resource, if it exists *and belongs to this account*. Takes the caller's
    /// transaction (the store's lock is not reentrant).
    pub fn get(&self, tx: &Transaction<'_>, kind: &str, id: &str) -> Result<Option<ResourceRow>, MetaError> {
        Ok(tx
            .query_row(
                "SELECT id, kind, region_id, created_at FROM resources WHERE id = ?1 AND account_id = ?2 AND kind = ?3",
                params![id, self.account_id as i64, kind],
                resource_row,
            )
            .optional()?)
    }

    /// This account's resources of `kind` in `region_id`, by id, `limit` from `offset`, and the
    /// total count.
    pub fn list(
        &self,
        tx: &Transaction<'_>,
        kind: &str,
        region_id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<ResourceRow>, u64), MetaError> {
        let total: i64 = tx.query_row(
            "SELECT COUNT(*) FROM resources WHERE account_id = ?1 AND kind = ?2 AND region_id = ?3",
            params![self.account_id as i64, kind, region_id],
            |r| r.get(0),
        )?;
        let mut st = tx.prepare_cached(
            "SELECT id, kind, region_id, created_at FROM resources
             WHERE account_id = ?1 AND kind = ?2 AND region_id = ?3 ORDER BY id LIMIT ?4 OFFSET ?5",
        )?;
        let rows = st
            .query_map(params![self.account_id as i64, kind, region_id, limit as i64, offset as i64], resource_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, total as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_cannot_see_anothers_resources() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        let b = s.create_account("b").unwrap();
        let id = s.write(|tx| s.scope(a.id).register(tx, "vpc", "vpc", "cn-hangzhou", "bp")).unwrap();
        assert!(id.starts_with("vpc-bp"));
        assert!(s.read::<_, MetaError>(|tx| s.scope(a.id).get(tx, "vpc", &id)).unwrap().is_some());
        assert!(s.read::<_, MetaError>(|tx| s.scope(b.id).get(tx, "vpc", &id)).unwrap().is_none());
        assert!(s.read::<_, MetaError>(|tx| s.scope(a.id).get(tx, "vswitch", &id)).unwrap().is_none());
        assert_eq!(s.read::<_, MetaError>(|tx| s.scope(a.id).list(tx, "vpc", "cn-hangzhou", 0, 10)).unwrap().1, 1);
        assert_eq!(
            s.read::<_, MetaError>(|tx| s.scope(b.id).list(tx, "vpc", "cn-hangzhou", 0, 10)).unwrap(),
            (vec![], 0)
        );
    }

    #[test]
    fn paging_lists() {
        let s = Store::open_in_memory().unwrap();
        let a = s.create_account("a").unwrap();
        for _ in 0..25 {
            s.write(|tx| s.scope(a.id).register(tx, "vpc", "vpc", "cn-hangzhou", "bp")).unwrap();
        }
        let (p1, total) = s.read::<_, MetaError>(|tx| s.scope(a.id).list(tx, "vpc", "cn-hangzhou", 0, 10)).unwrap();
        let (p3, _) = s.read::<_, MetaError>(|tx| s.scope(a.id).list(tx, "vpc", "cn-hangzhou", 20, 10)).unwrap();
        assert_eq!((p1.len(), p3.len(), total), (10, 5, 25));
        assert!(p1.windows(2).all(|w| w[0].id < w[1].id));
    }
}
