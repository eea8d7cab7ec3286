//! Who the client is when a reverse proxy sits in front of us.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed only in plain-HTTP mode and
//! only from a peer listed in `server.trusted_proxies`; anyone else could forge them.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

use crate::config::{ServerConfig, parse_net};

#[derive(Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    pub fn from_config(server: &ServerConfig) -> TrustedProxies {
        if !server.plain_http {
            return TrustedProxies::default();
        }
        TrustedProxies {
            nets: server
                .trusted_proxies
                .iter()
                .filter_map(|s| parse_net(s))
                .collect(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address and scheme for a request that arrived from `peer`.
    pub fn client(
        &self,
        peer: SocketAddr,
        scheme: &'static str,
        headers: &HeaderMap,
    ) -> (IpAddr, &'static str) {
        let peer_ip = canonical(peer.ip());
        if !self.trusts(peer_ip) {
            return (peer_ip, scheme);
        }
        // Walk the chain from the right: the first address we do not trust is the client.
        let mut client = peer_ip;
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().parse::<IpAddr>().ok())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        for ip in chain.into_iter().rev() {
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => "https",
            Some("http") => "http",
            _ => scheme,
        };
        (client, scheme)
    }
}

/// `::ffff:1.2.3.4` is `1.2.3.4`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(plain: bool, proxies: &[&str]) -> ServerConfig {
        let mut c = crate::config::Config::defaults().server;
        c.plain_http = plain;
        c.trusted_proxies = proxies.iter().map(|s| s.to_string()).collect();
        c
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let p = TrustedProxies::from_config(&server(true, &["10.0.0.1"]));
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(p.client(peer, "http", &h), (peer.ip(), "http"));
    }

    #[test]
    fn headers_are_ignored_when_serving_tls_directly() {
        let p = TrustedProxies::from_config(&server(false, &["10.0.0.1"]));
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(p.client(peer, "https", &h).0, peer.ip());
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let p = TrustedProxies::from_config(&server(true, &["10.0.0.0/8"]));
        let peer: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            p.client(peer, "http", &h),
            ("1.2.3.4".parse().unwrap(), "https")
        );
        // Garbage in the header: fall back to the peer.
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(
            p.client(peer, "http", &h).0,
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
