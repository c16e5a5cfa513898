//! Store work from async code. Every store call blocks (a query, an fsync at commit), so an
//! async caller must not make it on a runtime worker: these methods run it on tokio's
//! blocking pool and are the one way async code reaches the store. A task that panicked (or
//! was cancelled at shutdown) comes back as [`MetaError::TaskFailed`], which callers' error
//! conversions treat as an internal error.
//!
//! The futures own a clone of the store (cheap: shared connections), so they borrow nothing
//! and can be spawned. The work starts when the future is first polled; once started it runs
//! to its end even if the future is dropped, so a client that goes away cannot cut a
//! transaction in half.

use crate::{MetaError, Store};
use rusqlite::Transaction;
use std::future::Future;

impl Store {
    /// Runs `f` with the store on the blocking pool: for work that spans more than one
    /// transaction, or must finish on the pool whatever the caller does meanwhile.
    pub fn call<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<MetaError> + Send + 'static,
    {
        let store = self.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .unwrap_or_else(|e| Err(E::from(MetaError::TaskFailed(e.to_string()))))
        }
    }

    /// [`Store::read`] on the blocking pool.
    pub fn read_async<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<MetaError> + Send + 'static,
    {
        self.call(move |s| s.read(f))
    }

    /// [`Store::write`] on the blocking pool.
    pub fn write_async<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<MetaError> + Send + 'static,
    {
        self.call(move |s| s.write(f))
    }

    /// [`Store::write_grouped`] on the blocking pool.
    pub fn write_grouped_async<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<MetaError> + Send + 'static,
    {
        self.call(move |s| s.write_grouped(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(tx: &Transaction<'_>) -> Result<i64, MetaError> {
        Ok(tx.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?)
    }

    #[tokio::test]
    async fn each_way_reaches_the_store() {
        let s = Store::open_in_memory().unwrap();
        s.call(|s| s.create_account("a")).await.unwrap();
        assert_eq!(s.read_async(count).await.unwrap(), 1);
        s.write_async(|tx| Ok::<_, MetaError>(tx.execute("DELETE FROM accounts", [])?)).await.unwrap();
        assert_eq!(s.read_async(count).await.unwrap(), 0);
        let e = s.write_grouped_async(|_| Err::<(), _>(MetaError::Invalid("no".into()))).await;
        assert!(matches!(e, Err(MetaError::Invalid(m)) if m == "no"));
    }

    #[tokio::test]
    async fn a_panicking_task_is_an_error() {
        let s = Store::open_in_memory().unwrap();
        let e = s.read_async(|_| -> Result<(), MetaError> { panic!("store work went wrong") }).await;
        assert!(matches!(e, Err(MetaError::TaskFailed(_))), "{e:?}");
        // The store is still usable: the panic rolled its transaction back.
        assert_eq!(s.read_async(count).await.unwrap(), 0);
    }
}
