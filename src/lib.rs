//! appliance: connects an Asterisk or FreeSWITCH PBX on this host to Flowlu CRM.
//!
//! Data flows in from Flowlu (iframe, webhook: `http` → `flowlu`) and from the PBX
//! (`pbx` → `calls`, driven by `engine`), through one SQLite database (`db`), and out
//! to Flowlu through the durable `outbox`.
//!
//! Module map: which module may import which (`crate::X`), top layer first. A module
//! imports only modules on lower layers, except that `app` and `http` (layer 7) import
//! each other (`http`'s handlers take `app`'s `State`). `AppState` is known to `app`,
//! `http` and `cli` only; every subsystem below them is built from the handles it uses.
//! `tests/it/layers.rs` reads `src/` and this table: it fails on an import the table
//! does not list (naming the file and the `use`) and on an arrow no file uses.
//!
//! ```text
//! 8  cli           → app doctor cdr flowlu reload outbox pbx recordings config redact db
//!                    sdnotify secret sysuser tls util
//! 7  app           → http cdr engine housekeeping callbacks flowlu calls metrics routing
//!                    acme outbox pbx recordings config db secret tls
//! 7  doctor        → cdr flowlu pbx config db secret sysuser tls
//! 7  http          → app cdr engine callbacks flowlu calls metrics routing outbox pbx
//!                    recordings config redact db secret tls util
//! 6  cdr           → engine callbacks calls pbx config db secret util
//! 5  engine        → callbacks flowlu calls metrics routing outbox pbx recordings config
//!                    db secret util
//! 5  housekeeping  → flowlu outbox config db util
//! 4  callbacks     → calls outbox config redact db secret util
//! 4  flowlu        → calls outbox pbx config redact db secret util
//! 3  calls         → pbx config db secret
//! 3  metrics       → pbx config
//! 3  reload        → outbox config
//! 3  routing       → pbx config
//! 2  acme          → config tls
//! 2  outbox        → config db util
//! 2  pbx           → config secret
//! 2  recordings    → config db secret
//! 1  config        → secret util
//! 1  redact        → secret
//! 0  db            (imports nothing of the crate)
//! 0  sdnotify      (imports nothing of the crate)
//! 0  secret        (imports nothing of the crate)
//! 0  sysuser       (imports nothing of the crate)
//! 0  tls           (imports nothing of the crate)
//! 0  util          (imports nothing of the crate)
//!
//! ```
//!
//! - [`cli`]: command-line surface (clap): `run`, `--init` (the setup wizard),
//!   `check-config`, `doctor`, `backup`, `accounts` (admitted Flowlu accounts), `outbox`,
//!   `recordings revoke`, and the hidden `generate` (completions, man pages);
//!   `cli::logging`, the log format (journald's priorities under systemd) and the live
//!   log level.
//! - [`config`]: layered configuration (embedded defaults, TOML file, `APPLIANCE_*`
//!   environment, flags), validated once after merging.
//! - [`db`]: SQLite through an r2d2 pool; PRAGMAs, migrations and the one
//!   blocking-pool helper every async caller uses; `Db::write`, the writer thread the
//!   call engine and the outbox worker share (one connection, group commit).
//! - [`flowlu`]: everything Flowlu-specific: the settings iframe's context, the domain
//!   allow-list, `flowlu::admission` (issue 12: which accounts the operator admitted, the
//!   one-time claim code, which account owns the PBX), REST calls (user lookup, channel
//!   registration, token refresh; hosts resolved through `flowlu::resolve`'s cache), OAuth token upkeep (`flowlu::Flowlu`, the handle they
//!   share), and the tables for accounts, users, tokens, settings, extensions and the
//!   PBX connection saved from the settings page (`flowlu::pbx_settings`);
//!   `flowlu::crm` (issue 8): Flowlu's entity webhooks → a cache of CRM contacts'
//!   numbers and managers, and the call-handling rules' CRM requests (via the outbox).
//! - [`http`]: the HTTPS (or, behind a proxy, plain HTTP) server: accept loop, limits,
//!   routing, access log, who sees detail (`http::trust`: `[server] trusted_networks`,
//!   the metrics token), and the handlers browsers, Flowlu and operators call
//!   (including the Flowlu settings page, `http::settings`, whose forms redirect to a
//!   GET through in-memory view tokens, `http::settings::views`, with its delivery log,
//!   history import and framing check in `http::settings::{delivery, history, framing}`;
//!   and the Flowlu webhook,
//!   `http::webhook`: click-to-call, call lists, employees, redirect, health; and the
//!   click-to-call URL, `http::c2c`, which places calls through the webhook's call.make).
//! - [`pbx`]: the PBX adapters, Asterisk AMI and FreeSWITCH ESL behind one interface:
//!   codecs, a supervisor that keeps one connection logged in (following the PBX
//!   settings in force, a `watch` channel), the command handle (`PbxHandle`), the normalized event stream
//!   (`PbxEvents`) for the call tracker, the PBX's own employee/trunk endpoint lists
//!   (`pbx::endpoints`), and the connection state for `/healthz`.
//! - [`routing`]: the dialplan's question "who takes this incoming call?": the Asterisk
//!   FastAGI and FreeSWITCH outbound event socket servers (`routing::serve_all`), the
//!   dialplan snippets, and the `Decider` contract the call engine implements.
//! - [`calls`]: the call record, its table, and the tracker: PBX events in, calls out;
//!   `calls::phone`, the one normalization of customer numbers (E.164).
//! - [`engine`]: the task that owns the tracker: PBX events → calls → one transaction of
//!   call rows and outbox events; click-to-call, routing decisions, call metrics. Built
//!   from `engine::Deps`; the back-fill (`cdr`) plugs in as `engine::Backfill`.
//! - [`cdr`]: the PBX's own call records (CDR: FreePBX/MySQL, Asterisk and FreeSWITCH
//!   CSV, SQLite, XML): back-fill of the calls missed while stopped or disconnected, and
//!   `history import`; grouped and classified with the tracker's rules; the sources
//!   `--init` finds on the host; corrections reaching the result callbacks.
//! - [`outbox`]: durable, ordered, at-least-once delivery of call events to Flowlu.
//! - [`housekeeping`]: the hourly sweep of delivered events older than
//!   `[outbox] keep_delivered` (and of the CRM-rule records they leave behind).
//! - [`callbacks`]: result callbacks: each finished call's record, signed (HMAC-SHA256),
//!   delivered durably to the admin's own HTTPS endpoints (queued with `call.completed`).
//! - [`recordings`]: call recordings as unguessable, revocable (optionally expiring) URLs
//!   for Flowlu, and the rule of which files may ever be served (`GET /recordings/<token>`
//!   is in [`http`]).
//! - [`app`]: wires the pieces together; [`app::run`] is the in-process entry point.
//! - [`reload`]: `systemctl reload` (SIGHUP): the configuration's live sections re-read
//!   and published (`reload::Targets`: the live configuration, the outbox, the log level).
//! - [`redact`]: secrets in paths, URLs and messages become `***` before they are logged.
//! - [`util`]: small helpers several layers use (`now_ms`, `rfc3339`, `is_host_name`,
//!   `time_zone`).
//! - [`secret`]: the `Secret` type (prints `***`) and random tokens.
//! - [`tls`]: loading, checking and generating certificates; hot-reloadable server keys.
//! - [`acme`]: ACME (Let's Encrypt) issuance and background renewal into [`tls`].
//! - [`metrics`]: Prometheus instruments behind `GET /metrics` (OpenMetrics, or the 0.0.4
//!   text format in `metrics::text`).
//! - [`doctor`]: the checks `appliance doctor` runs and reports (the running service's
//!   own state through its `/healthz` on loopback).
//! - [`sdnotify`]: systemd readiness notification (`Type=notify`).
//! - [`sysuser`]: the `appliance` service account: lookup, access checks, handing files over.

pub mod acme;
pub mod app;
pub mod callbacks;
pub mod calls;
pub mod cdr;
pub mod cli;
pub mod config;
pub mod db;
pub mod doctor;
pub mod engine;
pub mod flowlu;
pub mod housekeeping;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod pbx;
pub mod recordings;
pub mod redact;
pub mod reload;
pub mod routing;
pub mod sdnotify;
pub mod secret;
pub mod sysuser;
pub mod tls;
pub mod util;

pub use app::run;
pub use config::Config;

/// The version printed by `--version`, `/healthz` and `health.check`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
