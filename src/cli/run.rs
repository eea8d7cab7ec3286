//! `appliance run`: load the configuration, bind, and serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::logging::init_logging;
use super::{Cli, fail};
use crate::app::{self, Listeners};
use crate::config::{Config, LoadOptions};
use crate::sdnotify;

pub fn run(cli: &Cli) -> ExitCode {
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    init_logging(&config);
    crate::db::limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("appliance")
        // SQLite and outgoing HTTPS run here (`Db::run`, the Flowlu client): enough for
        // every delivery in flight plus the database work around it, not the 512
        // threads a burst could otherwise start.
        .max_blocking_threads(crate::db::blocking_threads(config.outbox.max_in_flight))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    // What a reload (SIGHUP) reads again: the same file, environment and flags.
    let options = LoadOptions::from_process(cli.config_path(), cli.flags());
    runtime.block_on(serve(config, options))
}

async fn serve(config: Config, options: LoadOptions) -> ExitCode {
    let addr = config.listen_addr();
    // Bind before touching the database, so "port in use" changes nothing on disk.
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => return fail(1, format!("cannot listen on {addr}: {e}")),
    };
    let acme_http = match app::bind_acme_http(&config).await {
        Ok(listener) => listener,
        Err(e) => return fail(1, e),
    };
    let origin = config.origin.clone();
    let (state, tls) = match app::prepare(config).await {
        Ok(prepared) => prepared,
        Err(e) => return fail(1, e),
    };
    if let Some(path) = origin {
        log::info!("configuration: {}", path.display());
    }
    // SIGHUP (`systemctl reload`): the TLS certificate, then the configuration's live
    // sections (crate::reload). Installed before READY=1, so a reload never kills us.
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => return fail(1, format!("cannot install the SIGHUP handler: {e}")),
    };
    let reloading = state.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log::info!("SIGHUP: reloading");
            if let Some(reloader) = &reloading.tls {
                match reloader.reload() {
                    Ok(()) => log::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => log::error!("SIGHUP: keeping the old TLS certificate: {e}"),
                }
            }
            let (state, options) = (reloading.clone(), options.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let targets = crate::reload::Targets {
                    live: &state.live,
                    outbox: &state.outbox,
                    set_log_level: super::logging::set_level,
                };
                crate::reload::reload(&targets, &options)
            })
            .await;
        }
    });
    let listeners = Listeners {
        main: listener,
        acme_http,
    };
    // Handlers first: a SIGTERM right after READY=1 must stop us gracefully.
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(e) => return fail(1, format!("cannot install signal handlers: {e}")),
    };
    // Bound, database open, certificate loaded: connections are accepted from here on.
    sdnotify::notify_or_log("READY=1");
    app::serve_with(state, listeners, tls, shutdown).await;
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first one.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM received"),
            _ = int.recv() => log::info!("SIGINT received"),
        }
        sdnotify::notify_or_log("STOPPING=1");
    })
}
