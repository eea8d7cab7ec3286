//! `appliance run`: load the configuration, bind, and serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::{Cli, fail};
use crate::app::{self, Listeners};
use crate::config::Config;
use crate::sdnotify;

pub fn run(cli: &Cli) -> ExitCode {
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("appliance")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
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
    if let Some(reloader) = state.tls.clone() {
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                match reloader.reload() {
                    Ok(()) => log::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => log::error!("SIGHUP: keeping the old TLS certificate: {e}"),
                }
            }
        });
    }
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

/// `RUST_LOG` wins when set; otherwise `[log] level` applies to our crate and `warn`
/// to dependencies (rustls and hyper are chatty at info).
pub fn init_logging(config: &Config) {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            builder.parse_filters(&spec);
        }
        _ => {
            builder.filter_level(log::LevelFilter::Warn);
            builder.parse_filters(&format!("appliance={}", config.log.level));
        }
    }
    builder.format_timestamp_millis();
    let logger = builder.build();
    let level = logger.filter();
    // Dependencies' lines (a URL ureq sends to) lose their secrets like ours do.
    if log::set_boxed_logger(Box::new(crate::http::RedactingLog(logger))).is_ok() {
        log::set_max_level(level);
    }
}
