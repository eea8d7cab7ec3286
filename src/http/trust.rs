//! Who may see the appliance's inner state: `/healthz` and `/` in full, `/metrics`.
//!
//! A client in `[server] trusted_networks` (default: loopback) that did not come through
//! a proxy, or one that offers `Authorization: Bearer <[metrics] token>`. Everyone else
//! learns only that the appliance runs, and which version (see `http::health`).

use hyper::header::{self, HeaderMap};

use super::Ctx;
use crate::config::{Config, parse_net};
use crate::secret::constant_time_eq;

/// True when the request comes straight from a trusted network. A request relayed by a
/// proxy on this host arrives from loopback too, so any forwarding header disqualifies.
pub fn from_trusted_network(config: &Config, ctx: &Ctx, headers: &HeaderMap) -> bool {
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    !proxied
        && config
            .server
            .trusted_networks
            .iter()
            .filter_map(|n| parse_net(n))
            .any(|net| net.contains(&ctx.client_ip))
}

/// `Some(true)` for the right bearer token, `Some(false)` for none or a wrong one, `None`
/// when no `[metrics] token` is configured.
pub fn bearer(config: &Config, headers: &HeaderMap) -> Option<bool> {
    let token = &config.metrics.token;
    if token.is_empty() {
        return None;
    }
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    Some(offered.is_some_and(|o| constant_time_eq(o.as_bytes(), token.expose().as_bytes())))
}

/// Trusted network or the metrics token.
pub fn sees_detail(config: &Config, ctx: &Ctx, headers: &HeaderMap) -> bool {
    from_trusted_network(config, ctx, headers) || bearer(config, headers) == Some(true)
}
