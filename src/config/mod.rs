//! Configuration: the typed settings every other module reads.
//!
//! Owns the key names (`[server] listen`, `[pbx] host`, ...), their defaults (the embedded
//! `assets/config.example.toml`, the same file we ship), and validation after merging.
//! How the layers are merged lives in [`layers`]; nothing here reads files or the
//! environment directly.

mod c2c;
mod callbacks;
mod calls;
mod cdr;
mod checks;
mod delivery;
mod duration;
mod layers;
mod recordings;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub use c2c::C2cConfig;
pub use callbacks::CallbacksConfig;
pub use calls::CallsConfig;
pub use cdr::{CDR_SOURCES, CdrConfig};
use checks::check_public_url;
pub use checks::is_dns_name;
pub use delivery::{OutboxConfig, RoutingConfig};
pub use duration::{format_duration, parse_duration};
pub use layers::{ConfigError, Flag, LoadOptions, Source, Sources, load};
pub use recordings::RecordingsConfig;
pub use webhook::WebhookConfig;

/// The commented example config, shipped as `/etc/appliance/config.toml.example` and
/// embedded here as the defaults.
pub const EXAMPLE: &str = include_str!("../../assets/config.example.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub pbx: PbxConfig,
    pub flowlu: FlowluConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub outbox: OutboxConfig,
    pub routing: RoutingConfig,
    pub calls: CallsConfig,
    pub recordings: RecordingsConfig,
    pub acme: AcmeConfig,
    pub metrics: MetricsConfig,
    pub webhook: WebhookConfig,
    pub callbacks: CallbacksConfig,
    /// `[c2c]`: the click-to-call URL (issue 8).
    pub c2c: C2cConfig,
    /// `[cdr]`: the PBX's own call records (issue 14).
    pub cdr: CdrConfig,
    /// Where the config came from (not a key; filled in by [`load`]).
    #[serde(skip)]
    pub origin: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub plain_http: bool,
    pub trusted_proxies: Vec<String>,
    /// Clients (IP addresses or CIDR ranges) that see the detail of `/healthz` and `/`
    /// and may read `/metrics` without the token.
    pub trusted_networks: Vec<String>,
    pub max_body_bytes: u64,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: u64,
    /// Connections at once from one client address (IPv6: one /64); 0: no such cap.
    pub max_connections_per_client: u64,
    /// Addresses (IPs or CIDR ranges) not held to `max_connections_per_client`.
    pub per_client_exempt: Vec<String>,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PbxType {
    Asterisk,
    Freeswitch,
}

impl PbxType {
    pub fn as_str(self) -> &'static str {
        match self {
            PbxType::Asterisk => "asterisk",
            PbxType::Freeswitch => "freeswitch",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            PbxType::Asterisk => 5038,
            PbxType::Freeswitch => 8021,
        }
    }

    pub fn parse(s: &str) -> Option<PbxType> {
        match s {
            "asterisk" => Some(PbxType::Asterisk),
            "freeswitch" => Some(PbxType::Freeswitch),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    /// "", "asterisk" or "freeswitch"; see [`PbxConfig::kind`].
    #[serde(rename = "type")]
    pub kind_name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub secret: Secret,
    /// Empty: the protocol default; see [`PbxConfig::agent_channel`].
    pub agent_channel: String,
    pub context: String,
    pub transfer_context: String,
    pub dialplan: String,
    pub ring_secs: u64,
    pub keepalive_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub auth_retry_ms: u64,
    pub timeout_ms: u64,
    /// How often the PBX's endpoint lists are asked again while connected.
    pub endpoints_refresh_ms: u64,
    /// Send the AMI secret in clear text to a manager that refuses the MD5 challenge.
    pub allow_plain_login: bool,
}

impl PbxConfig {
    /// The configured PBX type, `None` while not configured.
    pub fn kind(&self) -> Option<PbxType> {
        PbxType::parse(&self.kind_name)
    }

    /// The agent channel template for `kind`, `{ext}` standing for the extension.
    pub fn agent_channel(&self, kind: PbxType) -> &str {
        match (self.agent_channel.as_str(), kind) {
            ("", PbxType::Asterisk) => "PJSIP/{ext}",
            ("", PbxType::Freeswitch) => "user/{ext}",
            (template, _) => template,
        }
    }

    /// The context the answered agent leg continues in.
    pub fn context(&self, kind: PbxType) -> &str {
        match (self.context.as_str(), kind) {
            ("", PbxType::Asterisk) => "from-internal",
            ("", PbxType::Freeswitch) => "default",
            (context, _) => context,
        }
    }

    /// The context redirected and transferred calls go to.
    pub fn transfer_context(&self, kind: PbxType) -> &str {
        match self.transfer_context.as_str() {
            "" => self.context(kind),
            context => context,
        }
    }

    /// The port to connect to, with 0 meaning the protocol default.
    pub fn effective_port(&self) -> u16 {
        match (self.port, self.kind()) {
            (0, Some(kind)) => kind.default_port(),
            (port, _) => port,
        }
    }
}

/// `[flowlu]`: which Flowlu hosts we call and how; see `src/flowlu/`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowluConfig {
    pub allowed_domains: Vec<String>,
    pub base_url_override: String,
    pub allow_plain_http_crm: bool,
    pub frame_ancestors: Vec<String>,
    pub request_timeout_secs: u64,
    pub refresh_before_secs: u64,
    pub expires_at_utc_offset_minutes: i64,
    pub client_secret: Secret,
    pub session_minutes: u64,
}

impl FlowluConfig {
    /// `base_url_override` without a trailing slash, or `None` when not set.
    pub fn base_url_override(&self) -> Option<&str> {
        let url = self.base_url_override.trim_end_matches('/');
        (!url.is_empty()).then_some(url)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

/// `[acme]`: certificates from an ACME CA, renewed by the running service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    pub enabled: bool,
    pub directory_url: String,
    pub email: String,
    pub domain: String,
    pub challenge: String,
    pub http_listen: String,
    pub renew_days: u64,
    pub ca_file: String,
}

/// The ACME challenge types the appliance can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

impl AcmeChallenge {
    pub fn parse(s: &str) -> Option<AcmeChallenge> {
        match s {
            "http-01" => Some(AcmeChallenge::Http01),
            "tls-alpn-01" => Some(AcmeChallenge::TlsAlpn01),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl AcmeConfig {
    /// The validated challenge type.
    pub fn challenge(&self) -> AcmeChallenge {
        AcmeChallenge::parse(&self.challenge).expect("validated by load")
    }
}

/// `[metrics]`: who may read `GET /metrics` besides loopback clients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub token: Secret,
}

impl Config {
    /// The embedded defaults, exactly as shipped in the example file (not validated:
    /// the defaults alone lack the TLS files a real run needs).
    pub fn defaults() -> Config {
        toml::from_str(EXAMPLE).expect("the embedded example deserializes")
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("validated by load")
    }

    /// The data directory, with the empty default resolved for this user.
    pub fn data_dir(&self) -> PathBuf {
        if self.storage.data_dir.is_empty() {
            default_data_dir()
        } else {
            PathBuf::from(&self.storage.data_dir)
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir().join("appliance.db")
    }

    /// `public_url` without a trailing slash, or `None` when not set.
    pub fn public_url(&self) -> Option<&str> {
        let url = self.server.public_url.trim_end_matches('/');
        (!url.is_empty()).then_some(url)
    }

    /// The name ACME certifies: `[acme] domain`, else the host of `public_url`.
    pub fn acme_domain(&self) -> Option<String> {
        if !self.acme.domain.trim().is_empty() {
            return Some(self.acme.domain.trim().to_ascii_lowercase());
        }
        let url = url::Url::parse(self.public_url()?).ok()?;
        match url.host()? {
            url::Host::Domain(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The merged configuration as TOML with every secret shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    fn validate(&self, sources: &Sources) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        let s = &self.server;
        if s.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "server.listen",
                format!("{:?} is not an address:port such as 0.0.0.0:8443", s.listen),
            );
        }
        if !s.public_url.is_empty()
            && let Err(why) = check_public_url(&s.public_url)
        {
            return bad("server.public_url", why);
        }
        if !s.plain_http {
            if s.tls_cert.is_empty() {
                return bad(
                    "server.tls_cert",
                    "is required unless server.plain_http = true".into(),
                );
            }
            if s.tls_key.is_empty() {
                return bad(
                    "server.tls_key",
                    "is required unless server.plain_http = true".into(),
                );
            }
        }
        for (key, nets) in [
            ("server.trusted_proxies", &s.trusted_proxies),
            ("server.trusted_networks", &s.trusted_networks),
        ] {
            if let Some(net) = nets.iter().find(|n| parse_net(n).is_none()) {
                return bad(key, format!("{net:?} is not an IP address or CIDR range"));
            }
        }
        for net in &s.per_client_exempt {
            if parse_net(net).is_none() {
                return bad(
                    "server.per_client_exempt",
                    format!("{net:?} is not an IP address or CIDR range"),
                );
            }
        }
        if s.max_body_bytes < 1024 {
            return bad("server.max_body_bytes", "must be at least 1024".into());
        }
        for (key, value) in [
            (
                "server.header_read_timeout_secs",
                s.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", s.idle_timeout_secs),
            ("server.max_connections", s.max_connections),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        let p = &self.pbx;
        if !p.kind_name.is_empty() && p.kind().is_none() {
            return bad(
                "pbx.type",
                format!(
                    "{:?} is not one of \"asterisk\", \"freeswitch\" (or empty)",
                    p.kind_name
                ),
            );
        }
        if p.kind().is_some() && p.host.trim().is_empty() {
            return bad("pbx.host", "must be set when pbx.type is set".into());
        }
        self.validate_flowlu(sources)?;
        if !p.agent_channel.is_empty() && !p.agent_channel.contains("{ext}") {
            return bad(
                "pbx.agent_channel",
                format!("{:?} must contain {{ext}}", p.agent_channel),
            );
        }
        for (key, value) in [
            ("pbx.agent_channel", &p.agent_channel.replace("{ext}", "")),
            ("pbx.context", &p.context),
            ("pbx.transfer_context", &p.transfer_context),
            ("pbx.dialplan", &p.dialplan),
        ] {
            if value.contains(|c: char| c.is_whitespace() || c.is_control() || ",{}'\"".contains(c))
            {
                return bad(
                    key,
                    "must not contain spaces, quotes, commas or braces".to_string(),
                );
            }
        }
        if p.dialplan.is_empty() {
            return bad(
                "pbx.dialplan",
                "must not be empty (FreeSWITCH uses XML)".into(),
            );
        }
        for (key, value) in [
            ("pbx.ring_secs", p.ring_secs),
            ("pbx.keepalive_ms", p.keepalive_ms),
            ("pbx.reconnect_min_ms", p.reconnect_min_ms),
            ("pbx.reconnect_max_ms", p.reconnect_max_ms),
            ("pbx.auth_retry_ms", p.auth_retry_ms),
            ("pbx.timeout_ms", p.timeout_ms),
            ("pbx.endpoints_refresh_ms", p.endpoints_refresh_ms),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if p.reconnect_max_ms < p.reconnect_min_ms {
            return bad(
                "pbx.reconnect_max_ms",
                format!(
                    "must not be below pbx.reconnect_min_ms ({})",
                    p.reconnect_min_ms
                ),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return bad(
                "log.level",
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            );
        }
        self.validate_outbox(sources)?;
        self.validate_routing(sources)?;
        self.validate_calls(sources)?;
        self.validate_webhook(sources)?;
        self.validate_callbacks(sources)?;
        self.validate_c2c(sources)?;
        self.validate_cdr(sources)?;
        if !self.storage.data_dir.is_empty() && !Path::new(&self.storage.data_dir).is_absolute() {
            return bad("storage.data_dir", "must be an absolute path".into());
        }
        self.validate_recordings(sources)?;
        self.validate_acme(sources)
    }

    fn validate_acme(&self, sources: &Sources) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        let a = &self.acme;
        if AcmeChallenge::parse(&a.challenge).is_none() {
            return bad(
                "acme.challenge",
                format!(
                    "{:?} is not one of \"http-01\", \"tls-alpn-01\"",
                    a.challenge
                ),
            );
        }
        if a.http_listen.parse::<SocketAddr>().is_err() {
            return bad(
                "acme.http_listen",
                format!(
                    "{:?} is not an address:port such as 0.0.0.0:80",
                    a.http_listen
                ),
            );
        }
        if !a.email.is_empty() && !a.email.contains('@') {
            return bad(
                "acme.email",
                format!("{:?} is not an e-mail address", a.email),
            );
        }
        if !a.domain.is_empty() && !is_dns_name(&a.domain) {
            return bad(
                "acme.domain",
                format!("{:?} is not a DNS name such as pbx.example.com", a.domain),
            );
        }
        if !a.enabled {
            return Ok(());
        }
        if self.server.plain_http {
            return bad(
                "acme.enabled",
                "cannot be true with server.plain_http = true (the proxy holds the certificate)"
                    .into(),
            );
        }
        match url::Url::parse(&a.directory_url) {
            Ok(u) if u.scheme() == "https" => {}
            _ => {
                return bad(
                    "acme.directory_url",
                    format!("{:?} is not an https:// URL", a.directory_url),
                );
            }
        }
        if a.renew_days == 0 {
            return bad("acme.renew_days", "must be at least 1".into());
        }
        if self.acme_domain().is_none() {
            return bad(
                "acme.domain",
                "must be set (or server.public_url must name a DNS host) when acme.enabled = true"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Parses `10.0.0.1` or `10.0.0.0/8` (and IPv6 forms) into a network.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// True when this process runs as root (system-wide paths apply).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "appliance")
}

/// `/etc/appliance/config.toml` for root, else the user's config directory.
pub fn default_config_path() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/etc/appliance/config.toml");
    }
    match project_dirs() {
        Some(dirs) => dirs.config_dir().join("config.toml"),
        None => PathBuf::from("appliance.toml"),
    }
}

/// `/var/lib/appliance` for root, else the user's data directory.
pub fn default_data_dir() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/appliance");
    }
    match project_dirs() {
        Some(dirs) => dirs.data_dir().to_path_buf(),
        None => PathBuf::from("appliance-data"),
    }
}

#[cfg(test)]
mod tests;
