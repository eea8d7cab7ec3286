//! Wiring: builds the shared state from a validated [`Config`] and runs the server and
//! background workers until shutdown.
//!
//! [`run`] is what `main` calls and what integration tests call in-process on
//! `127.0.0.1:0`; it owns no global state, so several appliances can run in one test.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::acme;
use crate::config::{Config, PbxConfig};
use crate::db::{Db, DbError};
use crate::engine::{EngineHandle, EngineInbox};
use crate::flowlu::events::{Accounts, EventTransport};
use crate::flowlu::tokens::{self, Credentials};
use crate::flowlu::{Flowlu, FlowluError, pbx_settings};
use crate::http::Pages;
use crate::metrics::Metrics;
use crate::outbox::{BoxFuture, Outbox, Reply, RetryPolicy, SendError};
use crate::pbx::{ConnectionSettings, PbxEvents, PbxHandle, StatusBoard, Supervisor};
use crate::routing::{Decider, RoutingSettings, RoutingStatus};
use crate::secret::Secret;
use crate::tls::{self, ReloadableCert, TlsError};

/// Everything a request handler or worker may touch. Shared as [`State`].
pub struct AppState {
    /// The configuration the service started with. Sections a reload applies
    /// (`crate::reload::LIVE`) are read from [`AppState::current`] instead.
    pub config: Arc<Config>,
    /// The configuration in force, replaced by each reload (`crate::reload`).
    pub live: watch::Sender<Arc<Config>>,
    pub db: Db,
    pub pbx: StatusBoard,
    /// The PBX connection settings in force (`None`: not configured). The settings page
    /// publishes changes here; the PBX connection supervisor follows them.
    pub pbx_settings: watch::Sender<Option<ConnectionSettings>>,
    /// Commands to the PBX (click-to-call, redirect, employees); fails fast while down.
    pub pbx_handle: PbxHandle,
    /// The normalized PBX events, taken once by their consumer (the call tracker); until
    /// one takes them, [`serve`] logs and discards them so the PBX connection never stalls.
    pub pbx_events: Mutex<Option<PbxEvents>>,
    /// The PBX connection supervisor, started by [`serve`].
    pub pbx_supervisor: Mutex<Option<Supervisor>>,
    pub pages: Pages,
    /// The Flowlu handle: client, `[flowlu]`, settings-session key, per-integration locks.
    pub flowlu: Arc<Flowlu>,
    /// Reloads the TLS certificate from disk (SIGHUP, certificate renewal).
    pub tls: Option<Arc<ReloadableCert>>,
    /// Prometheus instruments (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Durable delivery of call events to Flowlu.
    pub outbox: Outbox,
    /// The call engine (click-to-call, routing questions, live-call queries).
    pub engine: EngineHandle,
    /// Its receiving side, taken by [`serve_with`].
    pub engine_inbox: Mutex<Option<EngineInbox>>,
    /// The routing servers' state, for `/healthz`.
    pub routing: RoutingStatus,
    /// A decider for the routing servers installed before [`serve_with`] runs (tests);
    /// otherwise they ask Flowlu through the call engine.
    pub routing_decider: Mutex<Option<Arc<dyn Decider>>>,
    /// Webhook requests being acted on (duplicates wait for their answer).
    pub webhook: crate::http::webhook::Inflight,
    /// Durable delivery of result callbacks (the admin's own endpoints).
    pub callbacks: crate::callbacks::Callbacks,
    /// The click-to-call URL's per-key rate limit.
    pub c2c: crate::http::c2c::Limiter,
    /// The settings page's redirect-after-POST view tokens (in memory only).
    pub settings_views: crate::http::settings::views::Views,
    /// Call recordings' links (publishing them, serving them).
    pub recordings: crate::recordings::Recordings,
    /// The settings page's in-memory state: the history import (one at a time), the
    /// last iframe POST's framing.
    pub settings_live: crate::http::settings::Live,
}

pub type State = Arc<AppState>;

impl AppState {
    /// The configuration in force: the start-up one with every reload's live sections.
    pub fn current(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }

    /// What the call engine (and the back-fill) works with.
    pub fn engine_deps(&self) -> crate::engine::Deps {
        crate::engine::Deps {
            db: self.db.clone(),
            outbox: self.outbox.clone(),
            callbacks: self.callbacks.clone(),
            metrics: self.metrics.clone(),
            recordings: self.recordings.clone(),
            config: self.config.clone(),
            live: self.live.subscribe(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr} for {what}: {source}{hint}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
        hint: &'static str,
    },
}

/// The sockets the appliance serves on, bound before anything touches the disk.
pub struct Listeners {
    /// The HTTPS (or plain HTTP) listener for browsers and Flowlu.
    pub main: TcpListener,
    /// The ACME http-01 responder's listener (`[acme] http_listen`), when configured.
    pub acme_http: Option<TcpListener>,
}

/// Binds `[acme] http_listen` when ACME with the http-01 challenge is configured.
pub async fn bind_acme_http(config: &Config) -> Result<Option<TcpListener>, RunError> {
    if !config.acme.enabled || config.acme.challenge() != crate::config::AcmeChallenge::Http01 {
        return Ok(None);
    }
    let addr = &config.acme.http_listen;
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(source) => Err(RunError::Bind {
            what: "the ACME http-01 challenge",
            addr: addr.clone(),
            hint: if source.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need CAP_NET_BIND_SERVICE: see README, \"Ports below 1024\")"
            } else {
                ""
            },
            source,
        }),
    }
}

/// Opens what the appliance needs and checks it is usable, without serving anything.
/// Every start-up problem (TLS files, database, data directory) surfaces here.
pub async fn prepare(config: Config) -> Result<(State, Option<TlsAcceptor>), RunError> {
    let (tls_acceptor, tls_reloader) = if config.server.plain_http {
        (None, None)
    } else {
        let (cert, key) = (
            config.server.tls_cert.as_ref(),
            config.server.tls_key.as_ref(),
        );
        if config.acme.enabled
            && let Err(e) = tls::load_certified_key(cert, key)
        {
            // ACME replaces it within moments; a placeholder lets the service start (and
            // survives a crash between writing a renewed key and its certificate).
            log::warn!("{e}; serving a self-signed placeholder until ACME issues a certificate");
            let hosts: Vec<String> = config.acme_domain().into_iter().collect();
            tls::write_self_signed_pair(cert, key, &hosts)?;
        }
        let (server_config, reloader) = tls::server_config(cert, key)?;
        (Some(TlsAcceptor::from(server_config)), Some(reloader))
    };
    let path = config.database_path();
    let (db, session_key, saved_pbx) = tokio::task::spawn_blocking(move || {
        let db = Db::open(&path)?;
        let (key, saved) = db.with_conn(|c| {
            Ok::<_, DbError>((crate::flowlu::load_session_key(c)?, pbx_settings::load(c)?))
        })?;
        Ok::<_, DbError>((db, key, saved))
    })
    .await
    .expect("database open task")?;
    // PBX settings saved from the settings page take precedence over [pbx].
    let (pbx_config, pbx_now) = match saved_pbx {
        Some(saved) => {
            log::info!(
                "PBX connection from the settings page: {} at {}:{}",
                saved.settings.kind.as_str(),
                saved.settings.host,
                saved.settings.port
            );
            let s = &saved.settings;
            let as_config = PbxConfig {
                kind_name: s.kind.as_str().to_string(),
                host: s.host.clone(),
                port: s.port,
                user: s.user.clone(),
                secret: s.secret.clone(),
                ..config.pbx.clone()
            };
            (as_config, Some(saved.settings))
        }
        None => (
            config.pbx.clone(),
            ConnectionSettings::from_config(&config.pbx),
        ),
    };
    let (pbx_settings, _) = watch::channel(pbx_now);
    let policy = RetryPolicy::from_config(&config.outbox);
    let max_in_flight = config.outbox.max_in_flight as usize;
    let outbox_db = db.clone();
    let callbacks_worker = crate::callbacks::Callbacks::new(db.clone(), &config.callbacks);
    let pbx = StatusBoard::new(&pbx_config);
    let (pbx_handle, pbx_events, pbx_supervisor) = crate::pbx::channel(&config.pbx, pbx.clone());
    let (engine, engine_inbox) = crate::engine::channel(pbx_handle.clone(), pbx.clone());
    let config = Arc::new(config);
    let live = watch::channel(config.clone()).0;
    let recordings = crate::recordings::Recordings::new(db.clone(), live.subscribe());
    // Flowlu's handle owns the outbox (tokens arriving release held deliveries), whose
    // transport asks Flowlu's handle for tokens: the transport holds it weakly.
    let flowlu = Arc::new_cyclic(|weak| {
        let client = crate::flowlu::client::Client::new(&config.flowlu);
        let outbox = Outbox::new(
            outbox_db,
            Arc::new(EventTransport::new(
                db.clone(),
                client.clone(),
                config.flowlu.clone(),
                Arc::new(FlowluAccounts(weak.clone())),
            )),
            policy,
            max_in_flight,
        );
        Flowlu::new(
            client,
            &config.flowlu,
            config.public_url(),
            db.clone(),
            outbox,
            session_key,
        )
    });
    let state = Arc::new(AppState {
        engine,
        engine_inbox: Mutex::new(Some(engine_inbox)),
        webhook: Default::default(),
        c2c: Default::default(),
        settings_views: Default::default(),
        settings_live: Default::default(),
        outbox: flowlu.outbox.clone(),
        pbx,
        pbx_settings,
        pbx_handle,
        pbx_events: Mutex::new(Some(pbx_events)),
        pbx_supervisor: Mutex::new(Some(pbx_supervisor)),
        flowlu,
        live,
        config,
        db,
        pages: Pages::new(),
        tls: tls_reloader,
        metrics: Arc::new(Metrics::new()),
        routing: RoutingStatus::default(),
        routing_decider: Mutex::new(None),
        callbacks: callbacks_worker,
        recordings,
    });
    state
        .outbox
        .on_delivered(Box::new(state.metrics.delivery_observer()));
    Ok((state, tls_acceptor))
}

/// The outbox transport's token upkeep and CRM requests, through Flowlu's handle (weak:
/// that handle owns the outbox that owns the transport).
struct FlowluAccounts(std::sync::Weak<Flowlu>);

impl FlowluAccounts {
    fn flowlu(&self) -> Result<Arc<Flowlu>, FlowluError> {
        self.0
            .upgrade()
            .ok_or_else(|| FlowluError::Unavailable("shutting down".into()))
    }
}

impl Accounts for FlowluAccounts {
    fn access_token(&self, id: i64) -> BoxFuture<'_, Result<Credentials, FlowluError>> {
        Box::pin(async move {
            let flowlu = self.flowlu()?;
            tokens::access_token(&flowlu, id).await
        })
    }

    fn force_refresh(
        &self,
        id: i64,
        rejected: Secret,
    ) -> BoxFuture<'_, Result<Credentials, FlowluError>> {
        Box::pin(async move {
            let flowlu = self.flowlu()?;
            tokens::force_refresh(&flowlu, id, &rejected).await
        })
    }

    fn deliver_crm<'a>(
        &'a self,
        creds: &'a Credentials,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        Box::pin(async move {
            let flowlu = self
                .flowlu()
                .map_err(|e| SendError::Network(e.to_string()))?;
            crate::flowlu::crm::send::deliver(&flowlu, creds, kind, event_id, body).await
        })
    }
}

/// Runs the appliance on `listener` until `shutdown` resolves, then drains in-flight
/// requests (at most `server.shutdown_grace_secs`) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let acme_http = bind_acme_http(&config).await?;
    let listeners = Listeners {
        main: listener,
        acme_http,
    };
    run_with(config, listeners, shutdown).await
}

/// [`run`] with every listener bound by the caller.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (state, tls) = prepare(config).await?;
    serve_with(state, listeners, tls, shutdown).await;
    Ok(())
}

/// Serves an already prepared appliance on one listener (see [`serve_with`]).
pub async fn serve(
    state: State,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let listeners = Listeners {
        main: listener,
        acme_http: None,
    };
    serve_with(state, listeners, tls, shutdown).await;
}

/// Serves an already prepared appliance, with its background workers (token refresh,
/// ACME renewal and the http-01 responder), until `shutdown` resolves; the workers are
/// stopped after the server has drained.
pub async fn serve_with(
    state: State,
    listeners: Listeners,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let listener = listeners.main;
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    // The numbering-plan metadata is parsed, and each plan's patterns compiled, on first
    // use (~130 ms, then a few ms per country): do it now, off the runtime, for the
    // accounts' default countries, rather than in front of the first call's `call.init`.
    let db = state.db.clone();
    tokio::spawn(async move {
        let countries = db
            .run(|c| crate::flowlu::store::default_countries(c))
            .await
            .unwrap_or_else(|e| {
                log::warn!("numbering plans not warmed up: {e}");
                Vec::new()
            });
        let _ = tokio::task::spawn_blocking(move || crate::calls::phone::warm_up(&countries)).await;
    });
    if state.config.acme.enabled
        && let Some(reloader) = state.tls.clone()
    {
        let challenges = Arc::new(acme::Challenges::new(reloader.alpn_challenges()));
        if let Some(http) = listeners.acme_http {
            workers.push(tokio::spawn(acme::serve_http01(
                http,
                challenges.clone(),
                stopped.clone(),
            )));
        }
        workers.push(tokio::spawn(acme::renewal_task(
            state.config.clone(),
            challenges,
            reloader,
            stopped.clone(),
        )));
    }
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        log::info!(
            "appliance {} serving {scheme}://{addr} (PBX: {})",
            crate::VERSION,
            state.pbx.get().state.as_str()
        );
    }
    workers.push(tokio::spawn(crate::flowlu::tokens::run_refresher(
        state.flowlu.clone(),
        stopped.clone(),
    )));
    let outbox = state.outbox.clone();
    let outbox_stop = stopped.clone();
    workers.push(tokio::spawn(async move {
        outbox.run(until_stopped(outbox_stop)).await
    }));
    let live = state.live.subscribe();
    workers.push(tokio::spawn(crate::housekeeping::run(
        state.db.clone(),
        move || live.borrow().outbox.keep_delivered(),
        stopped.clone(),
    )));
    let callbacks = state.callbacks.clone();
    let callbacks_stop = stopped.clone();
    workers.push(tokio::spawn(async move {
        callbacks.run(until_stopped(callbacks_stop)).await
    }));
    let (stop_pbx, pbx_stopped) = tokio::sync::oneshot::channel::<()>();
    let supervisor = state.pbx_supervisor.lock().expect("pbx lock").take();
    if let Some(supervisor) = supervisor {
        // Stopped after the server has drained; it logs off cleanly.
        workers.push(tokio::spawn(supervisor.run(
            state.pbx_settings.subscribe(),
            async {
                let _ = pbx_stopped.await;
            },
        )));
    }
    let events = state.pbx_events.lock().expect("pbx lock").take();
    let inbox = state.engine_inbox.lock().expect("engine lock").take();
    if let (Some(events), Some(inbox)) = (events, inbox) {
        workers.push(tokio::spawn(crate::engine::run(
            state.engine_deps(),
            inbox,
            events,
            Box::new(crate::cdr::backfill::Seen::default()),
            until_stopped(stopped.clone()),
        )));
    }
    workers.push(tokio::spawn(serve_routing(state.clone(), stopped.clone())));
    crate::http::serve(listener, state, tls, shutdown).await;
    let _ = stop.send(true);
    let _ = stop_pbx.send(());
    for mut worker in workers {
        // Workers stop at their next await point once told; file replacements never
        // span one, so aborting a straggler is safe.
        if tokio::time::timeout(WORKER_STOP_GRACE, &mut worker)
            .await
            .is_err()
        {
            log::warn!("a background worker did not stop within {WORKER_STOP_GRACE:?}");
            worker.abort();
            let _ = worker.await;
        }
    }
}

/// Answers the dialplan's routing questions until `stop`, on the server of the PBX type in
/// force (following the settings page's changes). A port in use is logged and shown in
/// /healthz; the rest of the appliance keeps serving.
async fn serve_routing(state: State, stop: watch::Receiver<bool>) {
    let decider: Arc<dyn Decider> = state
        .routing_decider
        .lock()
        .expect("routing lock")
        .take()
        .unwrap_or_else(|| {
            Arc::new(crate::engine::route::CrmDecider::new(
                state.engine_deps(),
                state.engine.clone(),
                state.pbx_settings.subscribe(),
            ))
        });
    let (settings, status) = (
        RoutingSettings::from_config(&state.config),
        state.routing.clone(),
    );
    let mut pbx_settings = state.pbx_settings.subscribe();
    drop(state);
    let kind_of = |s: &Option<ConnectionSettings>| s.as_ref().map(|s| s.kind);
    let (kinds, kind) = watch::channel(kind_of(&pbx_settings.borrow_and_update()));
    let follow = async move {
        while pbx_settings.changed().await.is_ok() {
            let now = kind_of(&pbx_settings.borrow_and_update());
            kinds.send_if_modified(|kind| std::mem::replace(kind, now) != now);
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = crate::routing::serve_all(settings, decider, status, kind, until_stopped(stop)) => {}
        () = follow => {}
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// How long a background worker may take to finish after shutdown.
const WORKER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
