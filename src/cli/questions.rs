//! The interactive `--init` (stdin is a terminal): detect the local PBX, offer the
//! credentials its config files hold, test the login, then ask for the public URL, TLS
//! and data directory. Flags given on the command line become the defaults.

use std::path::Path;

use tokio::runtime::Runtime;

use super::init::{
    AcmeAnswers, Answers, FREEPBX_AGENT_CHANNEL, FREEPBX_CONTEXT, TlsChoice, hostname, login_test,
};
use super::{Cli, absolute, prompt, wizard};
use crate::config::{self, PbxType};
use crate::pbx::ProbeResult;

type Io<T> = std::io::Result<T>;

pub(super) fn ask(cli: &Cli, mut a: Answers, runtime: &Runtime) -> Io<Answers> {
    let args = &cli.init_args;
    eprintln!("Setting up the appliance. Press Enter to accept the value in brackets.");

    eprintln!("Looking for a PBX on this host...");
    let ami = runtime.block_on(wizard::detect(PbxType::Asterisk, &args.detect_ami));
    let esl = runtime.block_on(wizard::detect(PbxType::Freeswitch, &args.detect_esl));
    let mut detected_addr: Option<String> = None;
    let mut detected = None;
    if ami {
        eprintln!("  found Asterisk (AMI) on {}", args.detect_ami);
        detected = Some(PbxType::Asterisk);
        detected_addr = Some(args.detect_ami.clone());
    }
    if esl {
        eprintln!("  found FreeSWITCH (event socket) on {}", args.detect_esl);
        if detected.is_none() {
            detected = Some(PbxType::Freeswitch);
            detected_addr = Some(args.detect_esl.clone());
        }
    }
    if !ami && !esl {
        eprintln!(
            "  nothing answers on {} (AMI) or {} (event socket)",
            args.detect_ami, args.detect_esl
        );
    }
    let default_kind = a.pbx.or(detected).map_or("asterisk", PbxType::as_str);
    let kind = prompt::choose(
        "PBX type",
        &["asterisk", "freeswitch", "none"],
        default_kind,
    )?;
    a.pbx = PbxType::parse(&kind);
    if let Some(pbx) = a.pbx {
        // Where it was found is the best default, unless flags said otherwise.
        if a.pbx_port == 0
            && detected == Some(pbx)
            && let Some((host, port)) = detected_addr.as_deref().and_then(wizard::split_addr)
        {
            a.pbx_host = host;
            a.pbx_port = port;
        }
        a.freepbx = pbx == PbxType::Asterisk && args.freepbx_conf.exists();
        if a.freepbx {
            eprintln!(
                "  found FreePBX ({}): agents ring through its dialplan",
                args.freepbx_conf.display()
            );
            a.agent_channel = prompt::ask(
                "Agent channel ({ext}: the extension)",
                FREEPBX_AGENT_CHANNEL,
            )?;
            a.context = prompt::ask("Context the answered agent continues in", FREEPBX_CONTEXT)?;
        } else {
            (a.agent_channel, a.context) = (String::new(), String::new());
        }
        offer_credentials(cli, &mut a, pbx)?;
        loop {
            ask_connection(&mut a, pbx)?;
            eprintln!("Testing the PBX login...");
            let result = runtime.block_on(login_test(&a));
            match &result {
                Some(ProbeResult::Ok(detail)) => eprintln!("  OK: {detail}"),
                Some(ProbeResult::Down(detail)) => {
                    eprintln!("  the PBX is not reachable: {detail}")
                }
                Some(ProbeResult::AuthFailed(detail)) => {
                    eprintln!("  the PBX refused the credentials: {detail}")
                }
                Some(ProbeResult::ChallengeRefused(detail)) => {
                    eprintln!("  the secret was not sent: {detail}")
                }
                Some(ProbeResult::UnsupportedVersion(detail)) => {
                    eprintln!("  the PBX is too old to track: {detail}")
                }
                None => {}
            }
            let ok = matches!(result, Some(ProbeResult::Ok(_)));
            a.login_test = result;
            if ok {
                break;
            }
            if prompt::choose(
                "Change the PBX settings and test again?",
                &["yes", "no"],
                "yes",
            )? == "no"
            {
                // Kept knowingly: as --pbx-optional.
                a.pbx_optional = true;
                break;
            }
        }
    }

    a.cdr = Some(super::init_cdr::ask(cli, a.pbx)?);

    let url_default = if a.public_url.is_empty() {
        format!("https://{}:8443", hostname())
    } else {
        a.public_url.clone()
    };
    a.public_url = prompt::ask(
        "Public HTTPS URL Flowlu will use for this appliance",
        &url_default,
    )?;
    a.listen = prompt::ask("Listen address", &a.listen)?;
    ask_tls(&mut a)?;
    let dir = prompt::ask("Data directory", &a.data_dir.display().to_string())?;
    a.data_dir = absolute(Path::new(&dir));
    if a.admit.is_empty() {
        let domain = prompt::ask(
            "Flowlu account to admit, e.g. company.flowlu.com (empty: print a claim code)",
            "",
        )?;
        if !domain.trim().is_empty() {
            a.admit.push(domain.trim().to_string());
        }
    }
    Ok(a)
}

/// Offers the credentials found in manager.conf / event_socket.conf.xml.
fn offer_credentials(cli: &Cli, a: &mut Answers, pbx: PbxType) -> Io<()> {
    if !a.pbx_secret.is_empty() {
        return Ok(()); // given as a flag
    }
    let path = match pbx {
        PbxType::Asterisk => &cli.init_args.manager_conf,
        PbxType::Freeswitch => &cli.init_args.event_socket_conf,
    };
    let found = match wizard::read_credentials(pbx, path) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("  no credentials to offer ({why})");
            return Ok(());
        }
    };
    for candidate in found {
        let question = match pbx {
            PbxType::Asterisk => format!(
                "Use AMI user \"{}\" from {}?",
                candidate.user,
                path.display()
            ),
            PbxType::Freeswitch => {
                format!("Use the event socket password from {}?", path.display())
            }
        };
        if prompt::choose(&question, &["yes", "no"], "yes")? == "yes" {
            a.pbx_user = candidate.user;
            a.pbx_secret = candidate.secret;
            if a.pbx_port == 0
                && let Some(port) = candidate.port
            {
                a.pbx_port = port;
            }
            break;
        }
    }
    Ok(())
}

fn ask_connection(a: &mut Answers, pbx: PbxType) -> Io<()> {
    a.pbx_host = prompt::ask("PBX host", &a.pbx_host)?;
    let default_port = if a.pbx_port == 0 {
        pbx.default_port()
    } else {
        a.pbx_port
    };
    loop {
        let port = prompt::ask("PBX port", &default_port.to_string())?;
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {
                a.pbx_port = p;
                break;
            }
            _ => eprintln!("  please enter a port number from 1 to 65535"),
        }
    }
    if pbx == PbxType::Asterisk {
        let user = if a.pbx_user.is_empty() {
            "appliance"
        } else {
            &a.pbx_user
        };
        a.pbx_user = prompt::ask("AMI user name (manager.conf)", user)?;
        a.pbx_secret = prompt::ask_secret("AMI secret", &a.pbx_secret)?;
    } else {
        let default = if a.pbx_secret.is_empty() {
            "ClueCon"
        } else {
            &a.pbx_secret
        };
        a.pbx_secret = prompt::ask_secret("Event socket password", default)?;
    }
    Ok(())
}

fn ask_tls(a: &mut Answers) -> Io<()> {
    let current = match a.tls {
        TlsChoice::Files { .. } => "files",
        TlsChoice::SelfSigned => "self-signed",
        TlsChoice::Acme(_) => "acme",
        TlsChoice::PlainHttp => "proxy",
    };
    eprintln!(
        "TLS certificate:\n  files        certificate and key files you already have\n  \
         acme         obtained from Let's Encrypt (or another ACME CA) and renewed automatically\n  \
         self-signed  for testing only: browsers and Flowlu will not trust it\n  \
         proxy        a reverse proxy terminates TLS and forwards plain HTTP"
    );
    let choice = prompt::choose(
        "TLS certificate",
        &["files", "acme", "self-signed", "proxy"],
        current,
    )?;
    a.tls = match choice.as_str() {
        "files" => TlsChoice::Files {
            cert: prompt::ask("Certificate chain (PEM)", "/etc/appliance/cert.pem")?.into(),
            key: prompt::ask("Private key (PEM)", "/etc/appliance/key.pem")?.into(),
        },
        "acme" => {
            let previous = match std::mem::replace(&mut a.tls, TlsChoice::SelfSigned) {
                TlsChoice::Acme(previous) => previous,
                _ => AcmeAnswers::default(),
            };
            TlsChoice::Acme(ask_acme(a, previous)?)
        }
        "proxy" => TlsChoice::PlainHttp,
        _ => TlsChoice::SelfSigned,
    };
    Ok(())
}

fn ask_acme(a: &Answers, previous: AcmeAnswers) -> Io<AcmeAnswers> {
    let url_host = url::Url::parse(&a.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let domain_default = if previous.domain.is_empty() {
        url_host.clone()
    } else {
        previous.domain.clone()
    };
    let domain = loop {
        let domain = prompt::ask("Domain name to certify", &domain_default)?;
        if config::is_dns_name(&domain) {
            break domain;
        }
        eprintln!("  please enter a DNS name such as pbx.example.com (not an IP address)");
    };
    let email = prompt::ask(
        "Contact e-mail for expiry notices (optional)",
        &previous.email,
    )?;
    eprintln!(
        "Challenge:\n  http-01      the CA fetches http://{domain}/.well-known/... on port 80 \
         (the appliance answers on [acme] http_listen)\n  \
         tls-alpn-01  the CA connects to {domain}:443 (the appliance must listen on, or be \
         forwarded from, port 443)"
    );
    let challenge_default = if previous.challenge.is_empty() {
        "http-01"
    } else {
        &previous.challenge
    };
    let challenge = prompt::choose("Challenge", &["http-01", "tls-alpn-01"], challenge_default)?;
    let defaults = config::Config::defaults();
    let directory_default = if previous.directory.is_empty() {
        defaults.acme.directory_url
    } else {
        previous.directory
    };
    let directory = prompt::ask("ACME directory URL", &directory_default)?;
    Ok(AcmeAnswers {
        domain: if domain == url_host {
            String::new()
        } else {
            domain
        },
        email,
        challenge,
        directory,
    })
}
