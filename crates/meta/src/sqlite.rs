//! The SQLite engine of the store: the only file with SQLite-specific SQL (pragmas, the
//! connections, transactions and group commit, applying migrations). The tables' queries live
//! in the modules named for them.

use crate::migrations::MIGRATIONS;
use crate::quota::Quotas;
use crate::{now, MetaError};
use parking_lot::Mutex;
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
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
    /// The deployment's quota defaults (`[quotas]` of the configuration file); accounts'
    /// overrides are rows (see [`crate::quota`]).
    quotas: Arc<parking_lot::RwLock<Arc<Quotas>>>,
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
            quotas: Arc::new(parking_lot::RwLock::new(Arc::new(Quotas::default()))),
        })
    }

    /// Sets the quota defaults every clone of this store enforces from now on.
    pub fn set_quotas(&self, quotas: Quotas) {
        *self.quotas.write() = Arc::new(quotas);
    }

    /// The quota defaults in force.
    pub fn quotas(&self) -> Arc<Quotas> {
        self.quotas.read().clone()
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
        assert_eq!(rec.status, crate::account::AccessKeyStatus::Active);
        assert_eq!(rec.account.name, "root");
    }

    #[test]
    fn the_capacity_migration_counts_what_buckets_already_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        // A database as the release before migration 12 left it, with objects and parts.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 < 12) {
            c.execute_batch(sql).unwrap();
            c.execute("INSERT INTO schema_migrations VALUES (?1, ?2, 'x')", params![version, name]).unwrap();
        }
        c.execute_batch(
            "INSERT INTO accounts VALUES (1, 'a', 'x');
             INSERT INTO buckets (name, account_id, region_id, acl, storage_class, created_at) VALUES
                 ('full', 1, 'r', 'private', 'Standard', 'x'), ('empty', 1, 'r', 'private', 'Standard', 'x');
             INSERT INTO oss_objects (bucket, object_key, size, etag, crc64, object_type, content_type, user_meta, acl,
                 storage_class, last_modified_ms) VALUES
                 ('full', 'a', 100, 'e', 0, 'Normal', 't', '{}', 'default', 'Standard', 0),
                 ('full', 'b', 23, 'e', 0, 'Normal', 't', '{}', 'default', 'Standard', 0);
             INSERT INTO oss_uploads (upload_id, bucket, object_key, content_type, user_meta, acl, storage_class,
                 initiated_ms) VALUES ('U', 'full', 'm', 't', '{}', 'default', 'Standard', 0);
             INSERT INTO oss_parts (upload_id, part_number, size, etag, crc64, last_modified_ms) VALUES
                 ('U', 1, 1000, 'e', 0, 0), ('U', 2, 7, 'e', 0, 0);",
        )
        .unwrap();
        drop(c);
        let s = Store::open(&path).unwrap();
        let used = |b: &str| s.read::<_, MetaError>(|tx| crate::bucket::used_bytes(tx, b)).unwrap();
        assert_eq!((used("full"), used("empty")), (1130, 0));
        let capacity = s.read::<_, MetaError>(|tx| crate::bucket::storage_capacity(tx, "full")).unwrap();
        assert_eq!(capacity, Some(-1), "existing buckets get no limit");
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
