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

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::http::Pages;
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
    /// Reloads the TLS certificate from disk (SIGHUP, certificate renewal).
    pub tls: Option<Arc<ReloadableCert>>,
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
    let db = tokio::task::spawn_blocking(move || Db::open(&path))
        .await
        .expect("database open task")?;
    let (pbx_settings, _) = watch::channel(ConnectionSettings::from_config(&config.pbx));
    let state = Arc::new(AppState {
        pbx: StatusBoard::new(&config.pbx),
        pbx_settings,
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

/// Serves an already prepared appliance.
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
    crate::http::serve(listener, state, tls, shutdown).await;
}
