//! Starting the dialplan-facing servers: [`serve_all`] binds `[routing] agi_listen`
//! (Asterisk FastAGI) and `[routing] esl_listen` (FreeSWITCH outbound event socket), serves
//! both until shutdown, and publishes each one's state for `/healthz` ([`RoutingStatus`]).
//!
//! Only the server of the PBX type in force runs: FastAGI for Asterisk, the outbound
//! socket for FreeSWITCH, neither while no PBX is configured; so an Asterisk host never
//! holds the FreeSWITCH port, nor the other way round. The type follows the PBX settings
//! (`[pbx] type`, or the PBX saved on the settings page): when it changes, the other
//! server stops and this one starts, without a restart.
//!
//! A port that cannot be bound (in use, no permission) does not stop the appliance: call
//! events, click-to-call and the settings page matter more than routing, and without it
//! every incoming call simply takes the PBX's own routing (the dialplan's AGI or socket
//! fails and the dialplan goes on). The failure is logged as an error, `/healthz` reports
//! that server `unavailable` with the reason (and `degraded` when it is the one the
//! configured PBX uses), and the bind is retried every `rebind_every`, so the server comes
//! up by itself once the port is free.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Decider, agi, esl_outbound};
use crate::config::{Config, PbxType};

/// How often a server that could not bind its port tries again.
pub const REBIND_EVERY: Duration = Duration::from_secs(10);

/// What [`serve_all`] needs, taken from the configuration by [`RoutingSettings::from_config`]
/// (tests build it directly, with port 0 and short timings).
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub agi_listen: SocketAddr,
    pub esl_listen: SocketAddr,
    /// `[routing] decision_timeout`.
    pub limit: Duration,
    /// The FreeSWITCH dial string template, `{ext}` standing for the extension.
    pub freeswitch_dial: String,
    /// How long FreeSWITCH gets for each step of the outbound socket conversation.
    pub esl_io_timeout: Duration,
    pub rebind_every: Duration,
}

impl RoutingSettings {
    pub fn from_config(config: &Config) -> RoutingSettings {
        // `[pbx] agent_channel` is written for the configured PBX; an Asterisk template
        // would not dial on FreeSWITCH.
        let freeswitch_dial = match config.pbx.kind() {
            Some(PbxType::Asterisk) => "user/{ext}",
            _ => config.pbx.agent_channel(PbxType::Freeswitch),
        };
        RoutingSettings {
            agi_listen: config.routing.agi_addr(),
            esl_listen: config.routing.esl_addr(),
            limit: config.routing.decision_timeout(),
            freeswitch_dial: freeswitch_dial.to_string(),
            esl_io_timeout: esl_outbound::IO_TIMEOUT,
            rebind_every: REBIND_EVERY,
        }
    }

    fn esl_options(&self) -> esl_outbound::Options {
        esl_outbound::Options {
            io_timeout: self.esl_io_timeout,
            ..esl_outbound::Options::new(self.limit, &self.freeswitch_dial)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Not started (no decider installed yet) or stopped.
    NotStarted,
    Listening,
    /// Its port could not be bound: calls take the PBX's own routing; retrying.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    pub state: ServerState,
    /// The address listened on (the bound one, so port 0 shows the real port), or the
    /// one that could not be bound.
    pub listen: Option<String>,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ServerStatus {
    fn not_started() -> ServerStatus {
        ServerStatus {
            state: ServerState::NotStarted,
            listen: None,
            detail: None,
        }
    }
}

/// The routing servers' state as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingHealth {
    /// The Asterisk FastAGI server.
    pub agi: ServerStatus,
    /// The FreeSWITCH outbound event socket server.
    pub esl: ServerStatus,
}

impl RoutingHealth {
    /// True when the server the PBX of type `pbx` uses (either, while no type is set)
    /// cannot listen.
    pub fn degraded(&self, pbx: Option<PbxType>) -> bool {
        let down = |s: &ServerStatus| s.state == ServerState::Unavailable;
        match pbx {
            Some(PbxType::Asterisk) => down(&self.agi),
            Some(PbxType::Freeswitch) => down(&self.esl),
            None => down(&self.agi) || down(&self.esl),
        }
    }
}

/// Publishes [`RoutingHealth`]; cheap to clone.
#[derive(Clone)]
pub struct RoutingStatus {
    tx: Arc<watch::Sender<RoutingHealth>>,
}

impl Default for RoutingStatus {
    fn default() -> RoutingStatus {
        let (tx, _) = watch::channel(RoutingHealth {
            agi: ServerStatus::not_started(),
            esl: ServerStatus::not_started(),
        });
        RoutingStatus { tx: Arc::new(tx) }
    }
}

impl RoutingStatus {
    pub fn get(&self) -> RoutingHealth {
        self.tx.borrow().clone()
    }

    /// Where the FastAGI server listens, while it does (the bound port when 0 was asked).
    pub fn agi_addr(&self) -> Option<SocketAddr> {
        listening_on(&self.tx.borrow().agi)
    }

    /// Where the outbound event socket server listens, while it does.
    pub fn esl_addr(&self) -> Option<SocketAddr> {
        listening_on(&self.tx.borrow().esl)
    }

    fn set(&self, server: Server, status: ServerStatus) {
        self.tx.send_modify(|h| match server {
            Server::Agi => h.agi = status,
            Server::Esl => h.esl = status,
        });
    }
}

fn listening_on(status: &ServerStatus) -> Option<SocketAddr> {
    match status.state {
        ServerState::Listening => status.listen.as_deref()?.parse().ok(),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Server {
    Agi,
    Esl,
}

impl Server {
    fn addr(self, settings: &RoutingSettings) -> SocketAddr {
        match self {
            Server::Agi => settings.agi_listen,
            Server::Esl => settings.esl_listen,
        }
    }

    /// Whether this server is the one a PBX of type `pbx` talks to.
    fn serves(self, pbx: Option<PbxType>) -> bool {
        matches!(
            (self, pbx),
            (Server::Agi, Some(PbxType::Asterisk)) | (Server::Esl, Some(PbxType::Freeswitch))
        )
    }

    fn what(self) -> &'static str {
        match self {
            Server::Agi => "the Asterisk FastAGI server ([routing] agi_listen)",
            Server::Esl => "the FreeSWITCH outbound event socket server ([routing] esl_listen)",
        }
    }
}

/// Serves the routing server of the PBX type `pbx` says (none while it says `None`) with
/// `decider` until `shutdown`, switching servers when the type changes and keeping
/// `status` current. Never fails: a port that cannot be bound is reported and retried
/// (see the module documentation).
pub async fn serve_all(
    settings: RoutingSettings,
    decider: Arc<dyn Decider>,
    status: RoutingStatus,
    pbx: watch::Receiver<Option<PbxType>>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop) = watch::channel(false);
    let agi = serve_while_used(
        Server::Agi,
        &settings,
        decider.clone(),
        &status,
        pbx.clone(),
        stop.clone(),
    );
    let esl = serve_while_used(Server::Esl, &settings, decider, &status, pbx, stop);
    let stopper = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(agi, esl, stopper);
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Runs `server` whenever the PBX type in force uses it, until `stop`.
async fn serve_while_used(
    server: Server,
    settings: &RoutingSettings,
    decider: Arc<dyn Decider>,
    status: &RoutingStatus,
    mut pbx: watch::Receiver<Option<PbxType>>,
    stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            used = async { pbx.wait_for(|kind| server.serves(*kind)).await.is_ok() } => {
                if !used {
                    // Nobody can change the type any more: idle until stopped.
                    return stopped(stop).await;
                }
            }
            () = stopped(stop.clone()) => return,
        }
        let (off, off_rx) = watch::channel(false);
        let mut unused = pbx.clone();
        let until_unused = async {
            let changed = async {
                let gone = unused.wait_for(|kind| !server.serves(*kind)).await.is_err();
                if gone {
                    // The type can no longer change: serve until stopped.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = changed => {}
                () = stopped(stop.clone()) => {}
            }
            let _ = off.send(true);
        };
        tokio::join!(
            keep_serving(server, settings, decider.clone(), status, off_rx),
            until_unused
        );
        if *stop.borrow() {
            return;
        }
        log::info!(
            "routing: {} stopped: the configured PBX no longer uses it",
            server.what()
        );
    }
}

async fn keep_serving(
    server: Server,
    settings: &RoutingSettings,
    decider: Arc<dyn Decider>,
    status: &RoutingStatus,
    stop: watch::Receiver<bool>,
) {
    let addr = server.addr(settings);
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(addr).to_string();
                log::info!("routing: {} listening on {local}", server.what());
                status.set(
                    server,
                    ServerStatus {
                        state: ServerState::Listening,
                        listen: Some(local),
                        detail: None,
                    },
                );
                match server {
                    Server::Agi => {
                        agi::serve(listener, decider, settings.limit, stopped(stop)).await
                    }
                    Server::Esl => {
                        let options = settings.esl_options();
                        esl_outbound::serve(listener, decider, options, stopped(stop)).await
                    }
                }
                status.set(server, ServerStatus::not_started());
                return;
            }
            Err(e) => {
                let detail = format!("cannot listen on {addr}: {e}");
                if failures == 0 {
                    log::error!(
                        "routing: {}: {detail}; incoming calls take the PBX's own routing \
                         until it can (retrying every {:?})",
                        server.what(),
                        settings.rebind_every
                    );
                } else {
                    log::debug!("routing: {}: still {detail}", server.what());
                }
                failures += 1;
                status.set(
                    server,
                    ServerStatus {
                        state: ServerState::Unavailable,
                        listen: Some(addr.to_string()),
                        detail: Some(detail),
                    },
                );
                tokio::select! {
                    () = tokio::time::sleep(settings.rebind_every) => {}
                    () = stopped(stop.clone()) => {
                        status.set(server, ServerStatus::not_started());
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
