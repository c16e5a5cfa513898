//! The SQLite engine of the store: the only file with SQLite-specific SQL.

use crate::migrations::MIGRATIONS;
use crate::{ids, validate_account_name, MetaError};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The control-plane store. Cheap to clone; every clone shares one connection, whose mutex
/// serializes writers (SQLite allows one at a time anyway). Other processes (the `feitian
/// account` commands) may write the same file concurrently: SQLite's locks and the busy
/// timeout take care of that.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Transactions waiting to share a commit ([`Store::write_grouped`]).
    queue: Arc<Mutex<Vec<GroupJob>>>,
    /// Read-only connections for `read`: WAL lets them run beside each other and beside the
    /// writer. Empty for an in-memory store (its data lives in the one connection).
    readers: Arc<Vec<Mutex<Connection>>>,
}

/// A transaction waiting for a group commit.
struct GroupJob {
    /// Runs the transaction's work; `true` if it succeeded (its result is in its slot).
    run: Box<dyn FnOnce(&Transaction<'_>) -> bool + Send>,
    /// Replaces a successful result with the commit's failure.
    fail: Box<dyn FnOnce(MetaError) + Send>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs `jobs` in one transaction, each in a savepoint, and commits once.
fn run_group(conn: &mut Connection, jobs: Vec<GroupJob>) {
    let finish = |jobs: Vec<(GroupJob, bool)>, error: Option<MetaError>| {
        let message = error.map(|e| e.to_string());
        for (job, ok) in jobs {
            if let (Some(m), true) = (&message, ok) {
                (job.fail)(MetaError::Invalid(format!("the group commit failed: {m}")));
            }
            job.done.store(true, std::sync::atomic::Ordering::Release);
        }
    };
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let message = e.to_string();
            for job in jobs {
                (job.fail)(MetaError::Invalid(format!("cannot begin a transaction: {message}")));
                job.done.store(true, std::sync::atomic::Ordering::Release);
            }
            return;
        }
    };
    let mut ran = Vec::with_capacity(jobs.len());
    let mut broken = None;
    for job in jobs {
        if broken.is_some() {
            (job.fail)(MetaError::Invalid("the group commit failed".into()));
            job.done.store(true, std::sync::atomic::Ordering::Release);
            continue;
        }
        if let Err(e) = tx.execute_batch("SAVEPOINT grouped") {
            broken = Some(MetaError::from(e));
            (job.fail)(MetaError::Invalid("cannot open a savepoint".into()));
            job.done.store(true, std::sync::atomic::Ordering::Release);
            continue;
        }
        let run = job.run;
        let ok = run(&tx);
        let end = if ok { "RELEASE grouped" } else { "ROLLBACK TO grouped; RELEASE grouped" };
        if let Err(e) = tx.execute_batch(end) {
            broken = Some(MetaError::from(e));
        }
        ran.push((GroupJob { run: Box::new(|_| false), ..job }, ok));
    }
    match broken {
        Some(e) => {
            drop(tx); // rolls everything back
            finish(ran, Some(e));
        }
        None => {
            let committed = tx.commit().map_err(MetaError::from);
            finish(ran, committed.err());
        }
    }
}

/// How many read connections a file-backed store opens.
const READERS: usize = 4;
/// Prepared statements kept per connection (Describe* filters make many shapes).
const STATEMENT_CACHE: usize = 256;

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

/// What authentication needs of an AccessKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub secret: String,
    pub active: bool,
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub id: String,
    pub kind: String,
    pub region_id: String,
    pub created_at: String,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn account_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Account> {
    Ok(Account { id: r.get::<_, i64>(at)? as u64, name: r.get(at + 1)?, created_at: r.get(at + 2)? })
}

static READ_TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, MetaError> {
        let open =
            || Connection::open(path).map_err(|source| MetaError::Open { path: path.display().to_string(), source });
        let mut store = Self::setup(open()?)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = open()?;
            c.busy_timeout(Duration::from_secs(10))?;
            c.pragma_update(None, "query_only", "ON")?;
            c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            readers.push(Mutex::new(c));
        }
        store.readers = Arc::new(readers);
        Ok(store)
    }

    /// A private in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, MetaError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Store, MetaError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets readers and the writer proceed together; FULL makes every commit durable
        // before it returns, so an answered request survives kill -9 and power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            queue: Arc::new(Mutex::new(Vec::new())),
            readers: Arc::new(Vec::new()),
        })
    }

    /// Runs `f` in one write transaction (taken at once, so writers never deadlock on
    /// upgrade), committing if it returns `Ok`.
    pub fn write<T, E: From<MetaError>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(MetaError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(MetaError::from)?;
        Ok(out)
    }

    /// Like [`Store::write`], but transactions submitted at the same time share one commit,
    /// so one fsync makes a whole group durable (group commit): the caller queues `f`, then
    /// whoever holds the writer next runs every queued transaction, each in its own
    /// savepoint (one that fails is rolled back alone and gets its own error), and commits
    /// once. Returns when `f`'s effects are durable (or failed). Blocking.
    pub fn write_grouped<T: Send + 'static, E: From<MetaError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let slot: Arc<Mutex<Option<Result<T, E>>>> = Arc::new(Mutex::new(None));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (run_slot, fail_slot) = (slot.clone(), slot.clone());
        self.queue.lock().push(GroupJob {
            run: Box::new(move |tx| {
                let out = f(tx);
                let ok = out.is_ok();
                *run_slot.lock() = Some(out);
                ok
            }),
            fail: Box::new(move |e| *fail_slot.lock() = Some(Err(E::from(e)))),
            done: done.clone(),
        });
        let mut conn = self.conn.lock();
        if !done.load(std::sync::atomic::Ordering::Acquire) {
            let jobs = std::mem::take(&mut *self.queue.lock());
            run_group(&mut conn, jobs);
        }
        drop(conn);
        let out = slot.lock().take();
        out.unwrap_or_else(|| Err(E::from(MetaError::Invalid("a grouped transaction was lost".into()))))
    }

    /// Runs `f` against a consistent snapshot of everything committed so far, on a read
    /// connection (a free one if any is free).
    pub fn read<T, E: From<MetaError>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        if self.readers.is_empty() {
            let mut conn = self.conn.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(MetaError::from)?;
            return f(&tx);
        }
        let mut conn = match self.readers.iter().find_map(|r| r.try_lock()) {
            Some(c) => c,
            None => {
                let n = READ_TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
                self.readers[n].lock()
            }
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(MetaError::from)?;
        f(&tx)
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64, MetaError> {
        self.read(|tx| Ok(tx.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0))?))
    }

    // --- accounts and keys ---------------------------------------------------------------

    pub fn create_account(&self, name: &str) -> Result<Account, MetaError> {
        validate_account_name(name)?;
        self.write(|tx| {
            let exists: bool =
                tx.query_row("SELECT COUNT(*) > 0 FROM accounts WHERE name = ?1", [name], |r| r.get(0))?;
            if exists {
                return Err(MetaError::AccountExists(name.to_owned()));
            }
            insert_account(tx, name)
        })
    }

    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>, MetaError> {
        self.read(|tx| {
            Ok(tx
                .query_row("SELECT id, name, created_at FROM accounts WHERE name = ?1", [name], |r| {
                    account_from_row(r, 0)
                })
                .optional()?)
        })
    }

    pub fn accounts(&self) -> Result<Vec<Account>, MetaError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached("SELECT id, name, created_at FROM accounts ORDER BY created_at, name")?;
            let rows = st.query_map([], |r| account_from_row(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// A new key pair for the named account.
    pub fn create_access_key(&self, account_name: &str) -> Result<AccessKey, MetaError> {
        self.write(|tx| {
            let account = tx
                .query_row("SELECT id, name, created_at FROM accounts WHERE name = ?1", [account_name], |r| {
                    account_from_row(r, 0)
                })
                .optional()?
                .ok_or_else(|| MetaError::AccountNotFound(account_name.to_owned()))?;
            insert_key(tx, account.id, &ids::access_key_id(), &ids::access_key_secret())
        })
    }

    /// Makes sure the root account exists with at least one key. With `wanted` (from the
    /// environment), that exact pair is the root's key, added if new. Returns the root
    /// account and the key created now, if any (to be shown once).
    pub fn ensure_root(&self, wanted: Option<(&str, &str)>) -> Result<(Account, Option<AccessKey>), MetaError> {
        self.write(|tx| {
            let root = match tx
                .query_row("SELECT id, name, created_at FROM accounts WHERE name = 'root'", [], |r| {
                    account_from_row(r, 0)
                })
                .optional()?
            {
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
                                "UPDATE access_keys SET secret = ?2, status = 'Active' WHERE id = ?1",
                                params![id, secret],
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

    pub fn lookup_access_key(&self, id: &str) -> Result<Option<KeyRecord>, MetaError> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT k.secret, k.status, a.id, a.name, a.created_at
                     FROM access_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = ?1",
                    [id],
                    |r| {
                        Ok(KeyRecord {
                            secret: r.get(0)?,
                            active: r.get::<_, String>(1)? == "Active",
                            account: account_from_row(r, 2)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// The resources of one account, and nothing else.
    pub fn scope(&self, account_id: u64) -> AccountScope {
        AccountScope { account_id }
    }

    // --- idempotency ---------------------------------------------------------------------

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
        "INSERT INTO access_keys (id, account_id, secret, status, created_at) VALUES (?1, ?2, ?3, 'Active', ?4)",
        params![id, account_id as i64, secret, now()],
    )?;
    Ok(AccessKey { id: id.to_owned(), secret: secret.to_owned(), account_id })
}

fn migrate(conn: &mut Connection) -> Result<(), MetaError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(MetaError::SchemaTooNew { found: current, known });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated between our read and our lock.
        let done: bool =
            tx.query_row("SELECT COUNT(*) > 0 FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, now()],
            )?;
            tracing::info!(version, name, "applied schema migration");
        }
        tx.commit()?;
    }
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
                |r| Ok(ResourceRow { id: r.get(0)?, kind: r.get(1)?, region_id: r.get(2)?, created_at: r.get(3)? }),
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
        {
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
                .query_map(params![self.account_id as i64, kind, region_id, limit as i64, offset as i64], |r| {
                    Ok(ResourceRow { id: r.get(0)?, kind: r.get(1)?, region_id: r.get(2)?, created_at: r.get(3)? })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_applied_once_and_reopen_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.last().unwrap().0);
        let (root, key) = s.ensure_root(None).unwrap();
        let key = key.expect("a first start creates the root key");
        drop(s);
        let s = Store::open(&path).unwrap();
        let (root2, key2) = s.ensure_root(None).unwrap();
        assert_eq!(root, root2);
        assert!(key2.is_none(), "the root key is created once");
        let rec = s.lookup_access_key(&key.id).unwrap().unwrap();
        assert_eq!(rec.secret, key.secret);
        assert!(rec.active);
        assert_eq!(rec.account.name, "root");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')", []).unwrap();
        drop(c);
        assert!(matches!(Store::open(&path), Err(MetaError::SchemaTooNew { found: 999, .. })));
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
    }

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

    #[test]
    fn grouped_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("m.db")).unwrap();
        s.write(|tx| tx.execute_batch("CREATE TABLE g (k INTEGER PRIMARY KEY)").map_err(MetaError::from)).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    s.write_grouped(move |tx| {
                        tx.execute("INSERT INTO g (k) VALUES (?1)", [i % 12])?;
                        Ok::<_, MetaError>(i)
                    })
                })
            })
            .collect();
        let results: Vec<Result<i64, MetaError>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Keys 0..12: twelve inserts win, four collide and fail alone.
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 12);
        let n: i64 =
            s.read(|tx| Ok::<_, MetaError>(tx.query_row("SELECT COUNT(*) FROM g", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 12);
        let e = s.write_grouped(|tx| {
            tx.execute("INSERT INTO g (k) VALUES (100)", [])?;
            Err::<(), _>(MetaError::Invalid("no".into()))
        });
        assert!(e.is_err());
        let n: i64 =
            s.read(|tx| Ok::<_, MetaError>(tx.query_row("SELECT COUNT(*) FROM g", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 12, "a failed grouped transaction leaves nothing");
    }
}
