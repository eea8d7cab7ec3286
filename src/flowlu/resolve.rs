//! Name resolution for the Flowlu client: ureq's own resolver looks the host up again for
//! every request, even one that goes out on a kept-alive connection, and (with a timeout
//! configured, as ours is) starts a thread for each lookup. Under a stream of call events
//! that was a thread start and a `getaddrinfo` per event. This one answers IP literals
//! without a lookup and keeps a host's addresses for [`KEEP`]: a changed DNS record is
//! followed within that time, and a lookup that fails is never kept.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long looked-up addresses are used before the host is looked up again.
const KEEP: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(super) struct CachingResolver {
    inner: DefaultResolver,
    /// "host:port" → the addresses and when they were looked up.
    cache: Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return self.inner.resolve(uri, config, timeout);
        };
        let Some(key) = DefaultResolver::host_and_port(scheme, authority) else {
            return self.inner.resolve(uri, config, timeout);
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = key.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        if let (Ok(ip), Some(port)) = (host.parse::<IpAddr>(), port) {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        if let Some((addrs, at)) = self.lock().get(&key)
            && at.elapsed() < KEEP
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.lock().insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

impl CachingResolver {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ResolvedSocketAddrs, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup_and_names_are_kept() {
        let resolver = CachingResolver::default();
        let config = Config::default();
        let resolve = |uri: &str| {
            let uri: Uri = uri.parse().unwrap();
            let timeout = NextTimeout {
                after: ureq::unversioned::transport::time::Duration::NotHappening,
                reason: ureq::Timeout::Resolve,
                per_read: None,
                per_write: None,
            };
            resolver.resolve(&uri, &config, timeout)
        };
        let list = |a: ResolvedSocketAddrs| a.iter().copied().collect::<Vec<SocketAddr>>();
        let v4 = list(resolve("http://127.0.0.1:8080/x").unwrap());
        assert_eq!(v4, ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let v6 = list(resolve("https://[::1]/x").unwrap());
        assert_eq!(v6, ["[::1]:443".parse::<SocketAddr>().unwrap()]);
        assert!(resolver.lock().is_empty(), "literals are not looked up");
        let named = list(resolve("http://localhost:8080/x").unwrap());
        assert!(
            named
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
        assert!(resolver.lock().contains_key("localhost:8080"));
        assert_eq!(list(resolve("http://localhost:8080/y").unwrap()), named);
    }
}
