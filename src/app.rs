//! Wiring: builds the shared state from a validated [`Config`] and runs the server and
//! background workers until shutdown.
//!
//! [`run`] is what `main` calls and what integration tests call in-process on
//! `127.0.0.1:0`; it owns no global state, so several appliances can run in one test.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, PbxConfig};
use crate::db::{Db, DbError, pbx_settings};
use crate::flowlu::Flowlu;
use crate::flowlu::events::EventTransport;
use crate::http::Pages;
use crate::outbox::{Outbox, RetryPolicy};
use crate::pbx::{ConnectionSettings, StatusBoard};
use crate::tls::{self, ReloadableCert, TlsError};

/// Everything a request handler or worker may touch. Shared as [`State`].
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub pbx: StatusBoard,
    /// The PBX connection settings in force (`None`: not configured). The settings page
    /// publishes changes here; the PBX connection supervisor follows them.
    pub pbx_settings: watch::Sender<Option<ConnectionSettings>>,
    pub pages: Pages,
    /// Flowlu client, settings-session key, per-integration locks.
    pub flowlu: Flowlu,
    /// Reloads the TLS certificate from disk (SIGHUP, certificate renewal).
    pub tls: Option<Arc<ReloadableCert>>,
    /// Durable delivery of call events to Flowlu.
    pub outbox: Outbox,
}

pub type State = Arc<AppState>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Opens what the appliance needs and checks it is usable, without serving anything.
/// Every start-up problem (TLS files, database, data directory) surfaces here.
pub async fn prepare(config: Config) -> Result<(State, Option<TlsAcceptor>), RunError> {
    let (tls_acceptor, tls_reloader) = if config.server.plain_http {
        (None, None)
    } else {
        let (server_config, reloader) = tls::server_config(
            config.server.tls_cert.as_ref(),
            config.server.tls_key.as_ref(),
        )?;
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
    let state = Arc::new_cyclic(|weak| AppState {
        outbox: Outbox::new(
            outbox_db,
            Arc::new(EventTransport::new(weak.clone())),
            policy,
            max_in_flight,
        ),
        pbx: StatusBoard::new(&pbx_config),
        pbx_settings,
        flowlu: Flowlu::new(&config.flowlu, session_key),
        config: Arc::new(config),
        db,
        pages: Pages::new(),
        tls: tls_reloader,
    });
    Ok((state, tls_acceptor))
}

/// Runs the appliance on `listener` until `shutdown` resolves, then drains in-flight
/// requests (at most `server.shutdown_grace_secs`) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (state, tls) = prepare(config).await?;
    serve(state, listener, tls, shutdown).await;
    Ok(())
}

/// Serves an already prepared appliance, with its background workers, until
/// `shutdown` resolves; the workers are stopped after the server has drained.
pub async fn serve(
    state: State,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        log::info!(
            "appliance {} serving {scheme}://{addr} (PBX: {})",
            crate::VERSION,
            state.pbx.get().state.as_str()
        );
    }
    let (stop, stopped) = watch::channel(false);
    let outbox = state.outbox.clone();
    let workers = vec![
        tokio::spawn(crate::flowlu::tokens::run_refresher(
            state.clone(),
            stopped.clone(),
        )),
        tokio::spawn(async move { outbox.run(until_stopped(stopped)).await }),
    ];
    crate::http::serve(listener, state, tls, shutdown).await;
    let _ = stop.send(true);
    for worker in workers {
        if tokio::time::timeout(WORKER_STOP_GRACE, worker)
            .await
            .is_err()
        {
            log::warn!("a background worker did not stop within {WORKER_STOP_GRACE:?}");
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// How long a background worker may take to finish after shutdown.
const WORKER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
