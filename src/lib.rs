//! appliance: connects an Asterisk or FreeSWITCH PBX on this host to Flowlu CRM.
//!
//! Module map (data flows left to right):
//!
//! ```text
//!  Flowlu iframe / webhook_url ──► http ──► flowlu (calls Flowlu's REST API)
//!                                    │
//!  PBX (AMI / ESL) ──► pbx ──► calls (pure state machine) ──► outbox ──► Flowlu hook
//!                                    │                          │
//!                                    └────────► db ◄────────────┘
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
//!   blocking-pool helper every async caller uses.
//! - [`flowlu`]: everything Flowlu-specific: the settings iframe's context, the domain
//!   allow-list, `flowlu::admission` (issue 12: which accounts the operator admitted, the
//!   one-time claim code, which account owns the PBX), REST calls (user lookup, channel registration, token refresh), OAuth
//!   token upkeep, and the tables for accounts, users, tokens, settings and extensions;
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
//!   codecs, a supervisor that keeps one connection logged in (following
//!   `state.pbx_settings`), the command handle (`PbxHandle`), the normalized event stream
//!   (`PbxEvents`) for the call tracker, and the connection state for `/healthz`.
//! - [`routing`]: the dialplan's question "who takes this incoming call?": the Asterisk
//!   FastAGI and FreeSWITCH outbound event socket servers (`routing::serve_all`), the
//!   dialplan snippets, and the `Decider` contract the call engine implements.
//! - [`calls`]: the call record, its table, and the tracker: PBX events in, calls out;
//!   `calls::phone`, the one normalization of customer numbers (E.164).
//! - [`engine`]: the task that owns the tracker: PBX events → calls → one transaction of
//!   call rows and outbox events; click-to-call, routing decisions, call metrics.
//! - [`cdr`]: the PBX's own call records (CDR: FreePBX/MySQL, Asterisk and FreeSWITCH
//!   CSV, SQLite, XML): back-fill of the calls missed while stopped or disconnected, and
//!   `history import`; grouped and classified with the tracker's rules.
//! - [`outbox`]: durable, ordered, at-least-once delivery of call events to Flowlu.
//! - [`housekeeping`]: the hourly sweep of delivered events older than
//!   `[outbox] keep_delivered` (and of the CRM-rule records they leave behind).
//! - [`callbacks`]: result callbacks: each finished call's record, signed (HMAC-SHA256),
//!   delivered durably to the admin's own HTTPS endpoints (queued with `call.completed`).
//! - [`recordings`]: call recordings as unguessable, revocable (optionally expiring) URLs
//!   for Flowlu, and the rule of which files may ever be served (`GET /recordings/<token>`
//!   is in [`http`]).
//! - [`app`]: wires the pieces together; [`app::run`] is the in-process entry point.
//! - [`reload`]: `systemctl reload` (SIGHUP): the configuration's live sections re-read.
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
pub mod reload;
pub mod routing;
pub mod sdnotify;
pub mod secret;
pub mod sysuser;
pub mod tls;

pub use app::run;
pub use config::Config;

/// The version printed by `--version`, `/healthz` and `health.check`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
