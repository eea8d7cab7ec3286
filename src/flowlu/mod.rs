//! Everything Flowlu-specific: the iframe context, which hosts we call, the REST calls we
//! make (user lookup, channel registration, token refresh), OAuth token upkeep, and the
//! tables that hold accounts, users, tokens, settings and the extension mapping.
//!
//! Every Flowlu path and field name lives in this module (see `docs/flowlu-contract.md`),
//! so adopting Flowlu's real OpenAPI files later changes this module and that document
//! only. It never renders pages (that is `http::settings`) and never talks to the PBX.
//!
//! Public API for the rest of the appliance:
//! - [`admission`]: which accounts (host names) the operator admitted, the one-time
//!   claim code, and which account owns the PBX connection.
//! - [`pbx_settings`]: the PBX connection saved from the settings page, and which
//!   account may change it.
//! - [`store`]: integrations by id or webhook secret, per-account [`store::settings`],
//!   the user <-> extension mapping ([`store::extension_for_user`],
//!   [`store::user_for_extension`], [`store::mappings`]).
//! - [`tokens::access_token`] / [`tokens::force_refresh`]: a valid access token for an
//!   integration, and one refresh after Flowlu answered 401.
//! - [`client::Client::post_json`] and [`paths::event_hook`]: sending call events;
//!   [`events::call_object`]: a call as every event and webhook answer shows it.
//! - [`webhook`]: the shapes of the requests Flowlu sends to our `webhook_url` and of our
//!   answers (the handler is `http::webhook`).
//! - [`crm`]: entity webhooks' payload, the contact cache, the call-handling rules and
//!   their CRM requests (contacts, leads, tasks).
//! - [`json::parse`]: the strict JSON reading (a key given twice is refused) of every
//!   body that comes from outside.

pub mod admission;
pub mod client;
pub mod context;
pub mod crm;
pub mod domain;
pub mod events;
pub mod json;
pub mod pbx_settings;
mod resolve;
pub mod setup;
pub mod store;
pub mod tokens;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::FlowluConfig;
use crate::db::{Db, DbError};
use crate::outbox::Outbox;

/// Flowlu's paths, in one place.
pub mod paths {
    /// `GET`: the user a Bearer token belongs to [doc].
    pub const USER_GET: &str = "/api/v1/module/core/user/get";
    /// `POST`: register the telephony channel [doc].
    pub const TELEPHONY_CREATE: &str = "/api/v1/module/telephony/telephony/create";
    /// `POST grant_type=refresh_token` [ours: Flowlu's article does not name it].
    pub const OAUTH_TOKEN: &str = "/oauth/token";

    /// `POST`: call events for a registered channel [doc].
    pub fn event_hook(account_id: &str, telephony_uuid: &str) -> String {
        format!("/external/telephony/hook/mini_app/{account_id}/{telephony_uuid}")
    }

    /// Our webhook path registered as `webhook_url` [ours].
    pub fn webhook(integration_id: i64, secret: &str) -> String {
        format!("/hooks/flowlu/{integration_id}/{secret}")
    }
}

/// The one error type of the Flowlu boundary. `http::error` maps it to statuses.
#[derive(Debug, thiserror::Error)]
pub enum FlowluError {
    /// The request body cannot be read as what it claims to be (400).
    #[error("{0}")]
    BadRequest(String),
    /// A body type the endpoint does not take (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A field is missing or has a value we do not accept (422).
    #[error("{0}")]
    Invalid(String),
    /// The domain is well-formed but under no `[flowlu] allowed_domains` suffix (422).
    #[error(
        "domain {0:?} is not under a Flowlu domain this appliance serves \
         ([flowlu] allowed_domains)"
    )]
    DomainNotAllowed(String),
    /// The account is not admitted to this appliance (403, nothing stored); see
    /// [`admission`].
    #[error(
        "this appliance is not set up for the Flowlu account {0}; ask its administrator \
         to admit it (appliance accounts admit {0})"
    )]
    NotAdmitted(String),
    /// Flowlu refused the token (HTTP 401/403, error code 11, invalid_grant).
    #[error("Flowlu refused the access token: {0}")]
    Rejected(String),
    /// Flowlu could not be reached, timed out, or answered 429/5xx or error code 13.
    #[error("Flowlu is unavailable: {0}")]
    Unavailable(String),
    /// No answer within `[flowlu] request_timeout_secs`.
    #[error("Flowlu did not answer in time: {0}")]
    TimedOut(String),
    /// Flowlu answered, but refused the request (other 4xx or error codes).
    #[error("Flowlu refused the request: {0}")]
    Api(String),
    /// Flowlu answered 2xx with something we cannot use.
    #[error("unexpected answer from Flowlu: {0}")]
    Protocol(String),
    /// `server.public_url` is empty, so no webhook URL can be registered.
    #[error(
        "server.public_url is not set: Flowlu needs the appliance's public HTTPS address \
         for the webhook URL; set it in the configuration and restart"
    )]
    NoPublicUrl,
    /// The integration's token could not be refreshed; an admin must reopen the settings
    /// page in Flowlu. Callers hold their work until then.
    #[error("integration {0} needs to be reconnected: reopen its settings in Flowlu")]
    NeedsReconnect(i64),
    /// No Flowlu user of the integration has given us a token yet.
    #[error("integration {0} has no OAuth token yet: open its settings in Flowlu")]
    NoToken(i64),
    #[error("no integration {0}")]
    UnknownIntegration(i64),
    /// The request conflicts with what is stored (e.g. an unconfirmed domain change).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for FlowluError {
    fn from(e: rusqlite::Error) -> Self {
        FlowluError::Db(DbError::from(e))
    }
}

/// The Flowlu side of the appliance: the HTTP client, `[flowlu]`, the database, the
/// outbox (to release an account's held deliveries once it can take them again), the
/// key that signs settings-page sessions, per-integration locks and the refresh
/// worker's wake-up. What [`tokens`], [`setup`] and [`crm::send`] work with.
pub struct Flowlu {
    pub client: client::Client,
    /// `[flowlu]` as the service started (a reload does not change it).
    pub config: FlowluConfig,
    /// `[server] public_url` without a trailing `/`; `None` when not set.
    public_url: Option<String>,
    db: Db,
    pub outbox: Outbox,
    session_key: Vec<u8>,
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Notified when new tokens arrive, so the refresh worker recomputes its schedule.
    pub refresh_wake: tokio::sync::Notify,
}

impl Flowlu {
    pub fn new(
        client: client::Client,
        config: &FlowluConfig,
        public_url: Option<&str>,
        db: Db,
        outbox: Outbox,
        session_key: Vec<u8>,
    ) -> Flowlu {
        assert!(session_key.len() >= 32, "session key too short");
        Flowlu {
            client,
            config: config.clone(),
            public_url: public_url.map(str::to_string),
            db,
            outbox,
            session_key,
            locks: Mutex::new(HashMap::new()),
            refresh_wake: tokio::sync::Notify::new(),
        }
    }

    /// `[server] public_url` (no trailing `/`), the base of the webhook URL we register.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// The HMAC key for settings-page session tokens (kept in the `meta` table).
    pub fn session_key(&self) -> &[u8] {
        &self.session_key
    }

    /// Serialises token refreshes and channel registration per integration, so two
    /// clicks or a refresh racing a 401 never do the same thing twice.
    pub fn lock(&self, integration_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("lock map poisoned")
            .entry(integration_id)
            .or_default()
            .clone()
    }
}

/// The `meta` key under which the settings-session HMAC key is stored (hex).
pub const SESSION_KEY_META: &str = "flowlu_session_key";

/// Loads (creating on first start) the settings-session key.
pub fn load_session_key(conn: &rusqlite::Connection) -> Result<Vec<u8>, DbError> {
    let hex_key = crate::db::Db::meta_get_or_init(conn, SESSION_KEY_META, || {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        hex::encode(key)
    })?;
    match hex::decode(&hex_key) {
        Ok(key) if key.len() >= 32 => Ok(key),
        _ => {
            // A damaged key only invalidates open settings pages: replace it.
            log::warn!("the stored settings-session key is unusable; generating a new one");
            conn.execute("DELETE FROM meta WHERE key = ?1", [SESSION_KEY_META])?;
            load_session_key(conn)
        }
    }
}
