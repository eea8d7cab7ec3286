//! Open connections by client address, so that one client cannot starve the rest.
//!
//! - At most `server.max_connections_per_client` connections at once from one address
//!   (IPv6: one /64, which a single host usually has whole); a connection beyond it is
//!   closed as soon as it is accepted. Addresses in `server.per_client_exempt` (by
//!   default loopback: a reverse proxy or monitoring on this host) and the trusted
//!   proxies (every client comes through them) are not counted.
//! - A connection is *unproven* until its first request's headers have arrived (the TLS
//!   handshake included). When every slot is taken and another client is waiting, the
//!   oldest unproven connection is closed to admit it; and a connection accepted while
//!   more than three quarters of the slots are taken gets only [`PRESSURE_TIMEOUT`] to
//!   send its first request.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The time to a first request for a connection accepted under pressure.
pub const PRESSURE_TIMEOUT: Duration = Duration::from_secs(3);

const UNPROVEN: u8 = 0;
const PROVEN: u8 = 1;
const CLOSING: u8 = 2;

/// One open connection's side of the registry.
pub struct Slot {
    state: AtomicU8,
    close: Notify,
}

impl Slot {
    /// Marks the connection as serving requests: it is never closed early any more.
    pub fn prove(&self) {
        let _ = self
            .state
            .compare_exchange(UNPROVEN, PROVEN, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Resolves when the connection must be closed: it was picked to make room, or (with
    /// `deadline`) it sent no request in time. Never resolves once the connection is proven.
    pub async fn closing(&self, deadline: Option<Duration>) {
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.close.notified() => {}
            () = timeout => {
                if self
                    .state
                    .compare_exchange(UNPROVEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Open connections, oldest first.
    open: BTreeMap<u64, Arc<Slot>>,
    per_client: HashMap<IpAddr, usize>,
}

pub struct Conns {
    inner: Mutex<Inner>,
    max: usize,
    per_client: usize,
    exempt: Vec<ipnet::IpNet>,
}

/// Counts one connection while it lives.
pub struct Guard {
    conns: Arc<Conns>,
    id: u64,
    key: Option<IpAddr>,
    pub slot: Arc<Slot>,
    /// Accepted while more than three quarters of the slots were taken.
    pub under_pressure: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut inner = self.conns.inner.lock().expect("not poisoned");
        inner.open.remove(&self.id);
        if let Some(key) = self.key
            && let Some(n) = inner.per_client.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_client.remove(&key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 (also mapped into IPv6) whole, IPv6 by /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Conns {
    /// `max`: `server.max_connections`; `per_client`: 0 for no per-client cap; `exempt`:
    /// address ranges not counted per client.
    pub fn new(max: usize, per_client: usize, exempt: Vec<ipnet::IpNet>) -> Arc<Conns> {
        Arc::new(Conns {
            inner: Mutex::new(Inner::default()),
            max,
            per_client,
            exempt,
        })
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.exempt.iter().any(|net| net.contains(&ip))
    }

    /// Counts a new connection from `ip`, or `None` when that client has its share open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Guard> {
        let key = (self.per_client > 0 && !self.is_exempt(ip)).then(|| client_key(ip));
        let mut inner = self.inner.lock().expect("not poisoned");
        if let Some(key) = key {
            let n = inner.per_client.entry(key).or_insert(0);
            if *n >= self.per_client {
                return None;
            }
            *n += 1;
        }
        let under_pressure = inner.open.len() * 4 >= self.max * 3;
        let id = inner.next;
        inner.next += 1;
        let slot = Arc::new(Slot {
            state: AtomicU8::new(UNPROVEN),
            close: Notify::new(),
        });
        inner.open.insert(id, slot.clone());
        Some(Guard {
            conns: self.clone(),
            id,
            key,
            slot,
            under_pressure,
        })
    }

    /// Closes the oldest unproven connection other than `waiting` (to admit it); false
    /// when every other open connection is serving requests.
    pub fn close_oldest_unproven(&self, waiting: &Guard) -> bool {
        let inner = self.inner.lock().expect("not poisoned");
        for (_, slot) in inner.open.iter().filter(|(id, _)| **id != waiting.id) {
            if slot
                .state
                .compare_exchange(UNPROVEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                slot.close.notify_one();
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_gets_its_share_and_the_count_follows_closing() {
        let conns = Conns::new(100, 2, vec!["127.0.0.0/8".parse().unwrap()]);
        let a = conns.admit(ip("192.0.2.1")).unwrap();
        let _b = conns.admit(ip("192.0.2.1")).unwrap();
        assert!(conns.admit(ip("192.0.2.1")).is_none());
        assert!(
            conns.admit(ip("::ffff:192.0.2.1")).is_none(),
            "mapped is the same"
        );
        assert!(conns.admit(ip("192.0.2.2")).is_some(), "another client");
        drop(a);
        assert!(conns.admit(ip("192.0.2.1")).is_some());
        // One IPv6 /64 is one client; exempt ranges are not counted.
        let _c = conns.admit(ip("2001:db8::1")).unwrap();
        let _d = conns.admit(ip("2001:db8::2")).unwrap();
        assert!(conns.admit(ip("2001:db8::ffff")).is_none());
        let local: Vec<Guard> = (0..10)
            .map(|_| conns.admit(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(local.len(), 10);
        assert!(Conns::new(100, 0, vec![]).admit(ip("192.0.2.1")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_unproven_connection_is_closed_first_and_proven_ones_never() {
        let conns = Conns::new(4, 0, vec![]);
        let first = conns.admit(ip("192.0.2.1")).unwrap();
        let second = conns.admit(ip("192.0.2.1")).unwrap();
        let third = conns.admit(ip("192.0.2.1")).unwrap();
        assert!(!third.under_pressure);
        let fourth = conns.admit(ip("192.0.2.1")).unwrap();
        assert!(fourth.under_pressure);
        first.slot.prove();
        assert!(conns.close_oldest_unproven(&fourth));
        // The second was picked: its closing() resolves; the proven first's never does.
        second.slot.closing(None).await;
        let proven = tokio::time::timeout(Duration::from_secs(60), first.slot.closing(None));
        assert!(proven.await.is_err());
        // A deadline closes an unproven connection, not a proven one.
        third.slot.closing(Some(PRESSURE_TIMEOUT)).await;
        let late = first.slot.closing(Some(PRESSURE_TIMEOUT));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), late)
                .await
                .is_err()
        );
        assert!(
            !conns.close_oldest_unproven(&fourth),
            "only the proven one and the waiting one are left"
        );
    }
}
