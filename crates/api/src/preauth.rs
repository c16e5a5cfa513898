//! The budget of RPC request-body bytes held before their requests are authenticated.
//!
//! A V1 request may carry its `AccessKeyId` and `Signature` in a form body, and the signature
//! covers every form parameter, so such a body must be read whole before anything about the
//! caller is known. Without a bound, clients that announce 1 MiB bodies and stop one byte
//! short pin a mebibyte each for as long as their connections last. So every RPC body larger
//! than [`SMALL_BODY`] draws on this budget before it is read: its `Content-Length` up front,
//! or chunk by chunk when it is chunked. The bytes are given back once the request is
//! authenticated (from then on they belong to an account) or answered.
//!
//! Bodies of at most [`SMALL_BODY`] bytes (nearly every RPC request: a form of parameters)
//! are not drawn from the budget; the connection cap bounds them (512 connections × 16 KiB
//! = 8 MiB at the defaults). So a flood of large bodies, even from many addresses, cannot
//! make real clients' requests wait for room.
//!
//! | the client's share (`per_client`) | the whole budget (`total`) | the request              |
//! |-----------------------------------|----------------------------|--------------------------|
//! | has room                          | has room                   | reads its body           |
//! | has no room                       | any                        | `503` at once            |
//! | has room                          | has no room                | waits for room, at most  |
//! |                                   |                            | `wait`; then `503`       |
//!
//! A client that fills its own share is refused at once: waiting would let one address hold
//! connections it cannot use. The body-idle timeout (in `serve`) bounds how long a stalled
//! body keeps its bytes.

use crate::serve::ClientKey;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The largest announced body read without drawing on the budget.
pub const SMALL_BODY: u64 = 16 * 1024;

pub struct Budget {
    total: usize,
    per_client: usize,
    used: Mutex<Used>,
    freed: Notify,
}

#[derive(Default)]
struct Used {
    total: usize,
    clients: HashMap<ClientKey, usize>,
}

/// Why bytes could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// The client's own share is full.
    Client,
    /// The budget stayed full for the whole wait.
    Total,
}

impl Budget {
    pub fn new(total: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Budget {
            total,
            per_client: per_client.min(total),
            used: Mutex::new(Used::default()),
            freed: Notify::new(),
        })
    }

    /// An empty hold for `client`'s body.
    pub fn hold(self: &Arc<Self>, client: ClientKey) -> Held {
        Held { budget: self.clone(), client, bytes: 0 }
    }

    fn try_take(&self, client: ClientKey, n: usize) -> Result<bool, Shortage> {
        let mut u = self.used.lock();
        let mine = u.clients.get(&client).copied().unwrap_or(0);
        if mine + n > self.per_client {
            return Err(Shortage::Client);
        }
        if u.total + n > self.total {
            return Ok(false);
        }
        u.total += n;
        *u.clients.entry(client).or_default() += n;
        Ok(true)
    }

    fn give_back(&self, client: ClientKey, n: usize) {
        if n == 0 {
            return;
        }
        {
            let mut u = self.used.lock();
            u.total -= n;
            if let Some(mine) = u.clients.get_mut(&client) {
                *mine -= n;
                if *mine == 0 {
                    u.clients.remove(&client);
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// Bytes held now, in all.
    pub fn used(&self) -> usize {
        self.used.lock().total
    }
}

/// Bytes of one request's body; given back when dropped.
pub struct Held {
    budget: Arc<Budget>,
    client: ClientKey,
    bytes: usize,
}

impl Held {
    /// Takes `n` more bytes, waiting at most `wait` for the budget to have room.
    pub async fn grow(&mut self, n: usize, wait: Duration) -> Result<(), Shortage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.budget.try_take(self.client, n)? {
                self.bytes += n;
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Shortage::Total);
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.client, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from([127, 0, 0, last]))
    }

    #[tokio::test(start_paused = true)]
    async fn shares_and_waits() {
        let b = Budget::new(100, 60);
        let mut a1 = b.hold(key(1));
        a1.grow(50, Duration::ZERO).await.unwrap();
        // Over the client's own share: refused at once, whatever the wait.
        let mut a2 = b.hold(key(1));
        assert_eq!(a2.grow(20, Duration::from_secs(60)).await, Err(Shortage::Client));
        a2.grow(10, Duration::ZERO).await.unwrap();
        assert_eq!(b.used(), 60);
        // Another client: room in its share, not in the budget: waits, then gives up.
        let mut c = b.hold(key(2));
        c.grow(40, Duration::ZERO).await.unwrap();
        let mut d = b.hold(key(3));
        assert_eq!(d.grow(10, Duration::from_secs(5)).await, Err(Shortage::Total));
        assert_eq!(d.bytes(), 0);
        // Room made while waiting: it gets in.
        let waiter = tokio::spawn(async move { d.grow(10, Duration::from_secs(5)).await.map(|()| d) });
        tokio::task::yield_now().await;
        drop(a2);
        let d = waiter.await.unwrap().unwrap();
        assert_eq!(d.bytes(), 10);
        drop((a1, c, d));
        assert_eq!(b.used(), 0);
        assert!(b.used.lock().clients.is_empty());
    }
}
