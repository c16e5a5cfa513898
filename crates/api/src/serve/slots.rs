//! The edge's connection table: how many connections are open, from which client, and which
//! of them may be closed to make room for a new one.
//!
//! | the new connection's client has | all clients have      | the new connection                         |
//! |---------------------------------|-----------------------|--------------------------------------------|
//! | fewer than the per-client cap   | fewer than the cap    | is admitted                                |
//! | the per-client cap              | any number            | takes the slot of that client's connection |
//! |                                 |                       | idle longest; refused if none is idle      |
//! | fewer than the per-client cap   | the global cap        | takes the slot of the connection idle      |
//! |                                 |                       | longest, anyone's; refused if none is idle |
//!
//! A connection is *idle* while no request is in flight on it: before its first request,
//! between requests, and while a request head is still arriving (a slowloris socket is idle).
//! A connection inside a request is never closed to make room; the body-idle timeout bounds
//! how long a client can keep it there without sending. So sockets that hold slots without
//! completing a request cannot keep a real client (or a `/healthz` probe) out: the newest
//! arrival takes the slot of the oldest idler.
//!
//! Clients are counted by address: an IPv4 address, or an IPv6 /64 (one host usually has a
//! whole /64). Plain data under a lock: no sockets here.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Who a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        let v4 = |a: std::net::Ipv4Addr| ClientKey(u128::from(a.to_ipv6_mapped()));
        match ip {
            IpAddr::V4(a) => v4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(m) => v4(m),
                None => ClientKey(u128::from(a) & !u128::from(u64::MAX)),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client is at the per-client cap, every one of its connections inside a request.
    Client,
    /// Every slot is taken, every connection inside a request.
    Total,
}

/// The signal that tells a connection its slot was given away.
#[derive(Default)]
pub struct Evict {
    fired: AtomicBool,
    notify: Notify,
}

impl Evict {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Completes once the slot was given away.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}

pub struct Table {
    max_total: usize,
    max_per_client: usize,
    inner: Mutex<Inner>,
    emptied: Notify,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Orders idleness: a connection that went idle earlier has a smaller stamp.
    next_stamp: u64,
    conns: HashMap<u64, Entry>,
    clients: HashMap<ClientKey, Client>,
    /// Every idle connection, by the stamp of when it went idle.
    idle: BTreeMap<u64, u64>,
}

struct Entry {
    client: ClientKey,
    idle_since: Option<u64>,
    in_flight: usize,
    evict: Arc<Evict>,
}

#[derive(Default)]
struct Client {
    open: usize,
    idle: BTreeMap<u64, u64>,
}

impl Inner {
    fn set_idle(&mut self, id: u64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let Some(e) = self.conns.get_mut(&id) else { return };
        e.idle_since = Some(stamp);
        self.idle.insert(stamp, id);
        if let Some(c) = self.clients.get_mut(&e.client) {
            c.idle.insert(stamp, id);
        }
    }

    fn set_busy(&mut self, id: u64) {
        let Some(e) = self.conns.get_mut(&id) else { return };
        if let Some(stamp) = e.idle_since.take() {
            self.idle.remove(&stamp);
            if let Some(c) = self.clients.get_mut(&e.client) {
                c.idle.remove(&stamp);
            }
        }
    }

    /// Forgets a connection; its `Evict` when it was still here.
    fn remove(&mut self, id: u64) -> Option<Arc<Evict>> {
        self.set_busy(id);
        let e = self.conns.remove(&id)?;
        if let Some(c) = self.clients.get_mut(&e.client) {
            c.open -= 1;
            if c.open == 0 {
                self.clients.remove(&e.client);
            }
        }
        Some(e.evict)
    }
}

impl Table {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Table {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            inner: Mutex::new(Inner::default()),
            emptied: Notify::new(),
        })
    }

    /// Admits a new connection from `client`, closing an idle one to make room if it must.
    pub fn admit(self: &Arc<Self>, client: ClientKey) -> Result<Slot, Refusal> {
        let mut g = self.inner.lock();
        let open_here = g.clients.get(&client).map_or(0, |c| c.open);
        let victim = if open_here >= self.max_per_client {
            let oldest = g.clients.get(&client).and_then(|c| c.idle.first_key_value()).map(|(_, id)| *id);
            Some(oldest.ok_or(Refusal::Client)?)
        } else if g.conns.len() >= self.max_total {
            Some(g.idle.first_key_value().map(|(_, id)| *id).ok_or(Refusal::Total)?)
        } else {
            None
        };
        if let Some(evict) = victim.and_then(|id| g.remove(id)) {
            evict.fire();
        }
        let id = g.next_id;
        g.next_id += 1;
        let evict = Arc::new(Evict::default());
        g.conns.insert(id, Entry { client, idle_since: None, in_flight: 0, evict: evict.clone() });
        g.clients.entry(client).or_default().open += 1;
        g.set_idle(id);
        Ok(Slot { table: self.clone(), id, evict })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Completes when no connection is open.
    pub async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection's place in the table; dropping it frees the place.
pub struct Slot {
    table: Arc<Table>,
    id: u64,
    evict: Arc<Evict>,
}

impl Slot {
    /// A request started on this connection: it may not be closed to make room.
    pub fn begin(&self) {
        let mut g = self.table.inner.lock();
        let Some(e) = g.conns.get_mut(&self.id) else { return };
        e.in_flight += 1;
        if e.in_flight == 1 {
            g.set_busy(self.id);
        }
    }

    /// A request ended (its answer was sent, or abandoned).
    pub fn end(&self) {
        let mut g = self.table.inner.lock();
        let Some(e) = g.conns.get_mut(&self.id) else { return };
        e.in_flight = e.in_flight.saturating_sub(1);
        if e.in_flight == 0 {
            g.set_idle(self.id);
        }
    }

    /// Whether the slot was given to another connection (this one must close).
    pub fn evict(&self) -> &Evict {
        &self.evict
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let empty = {
            let mut g = self.table.inner.lock();
            g.remove(self.id);
            g.conns.is_empty()
        };
        if empty {
            self.table.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn client_keys() {
        let v4 = ClientKey::of("10.1.2.3".parse().unwrap());
        assert_eq!(v4, ClientKey::of("::ffff:10.1.2.3".parse().unwrap()));
        assert_ne!(v4, ClientKey::of("10.1.2.4".parse().unwrap()));
        // One IPv6 /64 is one client.
        assert_eq!(ClientKey::of("2001:db8::1".parse().unwrap()), ClientKey::of("2001:db8::ffff:2".parse().unwrap()));
        assert_ne!(ClientKey::of("2001:db8::1".parse().unwrap()), ClientKey::of("2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn per_client_cap_takes_the_clients_oldest_idler() {
        let t = Table::new(10, 2);
        let a = t.admit(key(1)).unwrap();
        let b = t.admit(key(1)).unwrap();
        // Both idle: the third takes the oldest one's slot.
        let c = t.admit(key(1)).unwrap();
        assert!(a.evict().fired() && !b.evict().fired());
        assert_eq!(t.open(), 2);
        drop(a); // an evicted slot's drop frees nothing twice
        assert_eq!(t.open(), 2);
        // Both inside a request: refused.
        b.begin();
        c.begin();
        assert_eq!(t.admit(key(1)).err(), Some(Refusal::Client));
        // Another client is not affected.
        let d = t.admit(key(2)).unwrap();
        // A request ends: that connection is idle again and can make room.
        c.end();
        let _e = t.admit(key(1)).unwrap();
        assert!(c.evict().fired() && !b.evict().fired() && !d.evict().fired());
    }

    #[test]
    fn global_cap_takes_the_oldest_idler_of_anyone() {
        let t = Table::new(3, 3);
        let a = t.admit(key(1)).unwrap();
        let b = t.admit(key(2)).unwrap();
        let c = t.admit(key(3)).unwrap();
        b.begin();
        b.end(); // b went idle after a and c: a is the oldest idler
        let _d = t.admit(key(4)).unwrap();
        assert!(a.evict().fired() && !b.evict().fired() && !c.evict().fired());
        b.begin();
        c.begin();
        let e = t.admit(key(5)).unwrap(); // takes d's slot: the only idle one
        e.begin();
        assert_eq!(t.admit(key(6)).err(), Some(Refusal::Total));
        assert_eq!(t.open(), 3);
    }

    #[tokio::test]
    async fn emptied_when_the_last_slot_goes() {
        let t = Table::new(4, 4);
        let a = t.admit(key(1)).unwrap();
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.emptied().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.unwrap().unwrap();
    }
}
