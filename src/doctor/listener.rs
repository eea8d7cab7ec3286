//! Doctor checks through the running service's own listener: it answers on this host
//! (`https`), the routing server the PBX in force calls is held by the service itself
//! (`routing`, from the service's `/healthz`), and `[server] public_url` reaches it
//! (`public_url`).
//!
//! Read-only, and quiet in the service's log: one `GET /healthz` on loopback (where the
//! service shows its full health detail) and one through `public_url`. The routing ports
//! are never connected to: a fake call would make the service log a warning, and a port
//! that answers proves nothing about who holds it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use super::{CheckFuture, Context, Finding};
use crate::config::{Config, PbxType};

/// How long each request may take.
const WAIT: Duration = Duration::from_secs(5);

/// `https`, `routing` and `public_url`, in that order.
pub fn service(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Ok(config) = &ctx.config else {
            return Vec::new();
        };
        let config = config.clone();
        tokio::task::spawn_blocking(move || findings(&config))
            .await
            .unwrap_or_default()
    })
}

fn findings(config: &Config) -> Vec<Finding> {
    let base = loopback_base(config);
    let mut out = Vec::new();
    let health = match get_health(&agent(false), &format!("{base}/healthz")) {
        Ok(health) => {
            out.push(Finding::ok(
                "https",
                format!(
                    "the service answers on {base} (version {})",
                    health["version"].as_str().unwrap_or("?")
                ),
            ));
            health
        }
        Err(e) => {
            out.push(Finding::warn(
                "https",
                format!(
                    "nothing answers on {base} ({e}): is the service running? (systemctl status appliance)"
                ),
            ));
            // Routing and public_url are the running service's: nothing more to learn.
            return out;
        }
    };
    out.extend(routing(config, &health));
    out.extend(public_url(config));
    out
}

/// Where the service's listener is reached from this host: `[server] listen`, with an
/// unspecified address (all interfaces) replaced by loopback.
pub fn loopback_base(config: &Config) -> String {
    let addr = config.listen_addr();
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if config.server.plain_http {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// An HTTP client; `verify: false` accepts any certificate (the loopback address is never
/// the certificate's name; the `tls` check judges the certificate itself).
fn agent(verify: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!verify)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .user_agent(format!("appliance-doctor/{}", crate::VERSION))
        .build()
        .new_agent()
}

/// `GET url`, which must answer with the appliance's health JSON.
fn get_health(agent: &ureq::Agent, url: &str) -> Result<Value, String> {
    let mut reply = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = reply.status().as_u16();
    let body: Value = reply
        .body_mut()
        .read_json()
        .map_err(|_| format!("HTTP {status}, not the appliance's health answer"))?;
    if body["version"].is_string() && body["status"].is_string() {
        Ok(body)
    } else {
        Err(format!("HTTP {status}, not the appliance's health answer"))
    }
}

/// The routing server of the PBX the service uses, as the service itself reports it.
fn routing(config: &Config, health: &Value) -> Vec<Finding> {
    let kind = health["pbx_detail"]["type"]
        .as_str()
        .and_then(PbxType::parse);
    let (server, name, configured) = match kind {
        Some(PbxType::Asterisk) => ("agi", "FastAGI", config.routing.agi_addr()),
        Some(PbxType::Freeswitch) => ("esl", "outbound event socket", config.routing.esl_addr()),
        None => return Vec::new(),
    };
    let status = &health["routing"][server];
    let text = |key: &str| status[key].as_str().unwrap_or("").to_string();
    let (state, listen) = (text("state"), text("listen"));
    let finding = match state.as_str() {
        "listening" if configured.port() != 0 && listen != configured.to_string() => Finding::warn(
            "routing",
            format!(
                "the service's {name} server listens on {listen}, but the configuration now says {configured}: restart the service to apply it"
            ),
        ),
        "listening" => Finding::ok(
            "routing",
            match kind {
                Some(PbxType::Asterisk) => format!(
                    "the service's FastAGI server holds {listen}: the dialplan's AGI(agi://{listen}/route,...) reaches it"
                ),
                _ => format!(
                    "the service's outbound event socket server holds {listen}: the dialplan's socket {listen} async full reaches it"
                ),
            },
        ),
        "unavailable" => Finding::fail(
            "routing",
            format!(
                "the service cannot listen on {listen} for its {name} server ({}): another program holds the port? (ss -ltnp 'sport = :{}'); until then the PBX routes incoming calls alone",
                text("detail"),
                configured.port()
            ),
        ),
        "" => Finding::warn(
            "routing",
            "the service did not show its routing state in /healthz",
        ),
        other => Finding::fail("routing", format!("the service's {name} server is {other}")),
    };
    vec![finding]
}

/// `public_url` reaches an appliance of this version, with a certificate Flowlu trusts.
fn public_url(config: &Config) -> Vec<Finding> {
    let Some(base) = config.public_url() else {
        return vec![Finding::warn(
            "public_url",
            "[server] public_url is not set: Flowlu cannot reach the appliance",
        )];
    };
    let url = format!("{base}/healthz");
    let finding = match get_health(&agent(true), &url) {
        Ok(health) => match health["version"].as_str() {
            Some(crate::VERSION) => {
                Finding::ok("public_url", format!("{base} reaches the service"))
            }
            other => Finding::warn(
                "public_url",
                format!(
                    "{base} reaches an appliance of version {}, this one is {}: another host?",
                    other.unwrap_or("?"),
                    crate::VERSION
                ),
            ),
        },
        Err(verified) => match get_health(&agent(false), &url) {
            Ok(_) => Finding::warn(
                "public_url",
                format!(
                    "{base} reaches the service, but its certificate is not trusted ({verified}): Flowlu refuses it; use a CA-issued certificate (--acme)"
                ),
            ),
            Err(e) => Finding::fail(
                "public_url",
                format!(
                    "{base} does not reach the service ({e}): Flowlu cannot either; check DNS, port forwarding and the firewall"
                ),
            ),
        },
    };
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_interfaces_are_probed_on_loopback() {
        let mut config = Config::defaults();
        config.server.listen = "0.0.0.0:8443".into();
        assert_eq!(loopback_base(&config), "https://127.0.0.1:8443");
        config.server.listen = "[::]:8443".into();
        assert_eq!(loopback_base(&config), "https://[::1]:8443");
        config.server.listen = "127.0.0.2:80".into();
        config.server.plain_http = true;
        assert_eq!(loopback_base(&config), "http://127.0.0.2:80");
    }

    fn health(kind: &str, state: &str, listen: &str) -> Value {
        serde_json::json!({
            "pbx_detail": {"type": kind},
            "routing": {"agi": {"state": state, "listen": listen, "detail": "cannot listen on x: Address in use"}},
        })
    }

    #[test]
    fn routing_is_judged_by_the_services_own_state() {
        use super::super::Status;
        let config = Config::defaults();
        let f = routing(&config, &health("asterisk", "listening", "127.0.0.1:4573"));
        assert_eq!(f[0].status, Status::Ok, "{f:?}");
        assert!(f[0].detail.contains("agi://127.0.0.1:4573/route"), "{f:?}");
        let f = routing(
            &config,
            &health("asterisk", "unavailable", "127.0.0.1:4573"),
        );
        assert_eq!(f[0].status, Status::Fail, "{f:?}");
        assert!(f[0].detail.contains("Address in use"), "{f:?}");
        let f = routing(&config, &health("asterisk", "listening", "127.0.0.1:4999"));
        assert_eq!(f[0].status, Status::Warn, "{f:?}");
        assert!(routing(&config, &serde_json::json!({})).is_empty());
    }
}
