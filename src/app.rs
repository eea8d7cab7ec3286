//! Wiring: builds the shared state from a validated [`Config`] and runs the server and
//! background workers until shutdown.
//!
//! [`run`] is what `main` calls and what integration tests call in-process on
//! `127.0.0.1:0`; it owns no global state, so several appliances can run in one test.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::http::Pages;
use crate::pbx::{ConnectionSettings, PbxEvents, PbxHandle, StatusBoard, Supervisor};
use crate::tls::{self, ReloadableCert, TlsError};

/// Everything a request handler or worker may touch. Shared as [`State`].
pub struct AppState {
    pub config: Arc<Config>,
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
    let pbx = StatusBoard::new(&config.pbx);
    let (pbx_handle, pbx_events, pbx_supervisor) = crate::pbx::channel(&config.pbx, pbx.clone());
    let state = Arc::new(AppState {
        pbx,
        pbx_settings,
        pbx_handle,
        pbx_events: Mutex::new(Some(pbx_events)),
        pbx_supervisor: Mutex::new(Some(pbx_supervisor)),
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

/// Serves an already prepared appliance: the HTTP server and, alongside it, the PBX
/// connection supervisor, both stopped by `shutdown`.
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
    let (stop_pbx, pbx_stopped) = tokio::sync::oneshot::channel::<()>();
    let supervisor = state.pbx_supervisor.lock().expect("pbx lock").take();
    let pbx_task = supervisor.map(|supervisor| {
        tokio::spawn(supervisor.run(state.pbx_settings.subscribe(), async {
            let _ = pbx_stopped.await;
        }))
    });
    if let Some(mut events) = state.pbx_events.lock().expect("pbx lock").take() {
        // No consumer took the events: log them so the connection never waits on a full
        // queue.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                log::debug!("PBX event: {:?}", event.event);
            }
        });
    }
    crate::http::serve(listener, state, tls, shutdown).await;
    let _ = stop_pbx.send(());
    if let Some(mut task) = pbx_task
        && tokio::time::timeout(Duration::from_secs(3), &mut task)
            .await
            .is_err()
    {
        task.abort();
        log::warn!("the PBX connection did not close within 3 s");
    }
}
