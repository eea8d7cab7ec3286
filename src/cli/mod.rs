//! The command line: clap definitions and dispatch to one module per command.
//!
//! Exit codes: 0 success, 1 a runtime failure (port in use, unusable database or TLS
//! files, refused overwrite), 2 bad usage or an invalid configuration.

mod accounts;
mod backup;
mod check;
mod doctor;
mod generate;
mod history;
mod init;
mod init_cdr;
pub mod logging;
mod manpages;
mod outbox;
mod prompt;
mod questions;
mod recordings;
mod run;
mod wizard;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigError, Flag, LoadOptions};

#[derive(Debug, Parser)]
#[command(
    name = "appliance",
    version,
    about = "Connects an Asterisk or FreeSWITCH PBX to Flowlu CRM",
    long_about = "Connects an Asterisk or FreeSWITCH PBX on this host to Flowlu CRM as a \
                  telephony MiniApp. With no command, runs the service (same as `run`).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Configuration file [default: /etc/appliance/config.toml as root, else
    /// ~/.config/appliance/config.toml]
    #[arg(long, global = true, env = "APPLIANCE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Set up a working configuration, database and certificate, then exit.
    #[arg(long)]
    pub init: bool,

    #[command(flatten)]
    pub init_args: InitArgs,

    #[command(flatten)]
    pub overrides: Overrides,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Run,
    /// Validate the configuration (and the files it names) and print it, secrets as ***.
    CheckConfig,
    /// Which Flowlu accounts this appliance serves: list, admit, revoke, pbx-owner,
    /// claim-code.
    Accounts {
        #[command(subcommand)]
        action: accounts::AccountsCommand,
    },
    /// Inspect and repair the delivery of call events to Flowlu.
    Outbox {
        #[command(subcommand)]
        action: outbox::OutboxCommand,
    },
    /// Revoke recording links sent to Flowlu.
    Recordings {
        #[command(subcommand)]
        action: recordings::RecordingsCommand,
    },
    /// Check the whole setup (config, database, certificate, PBX login, permissions) and
    /// print one line per check; exits 1 when any check fails.
    Doctor,
    /// The PBX's own call records: import a period's calls Flowlu does not have yet.
    History {
        #[command(subcommand)]
        action: history::HistoryCommand,
    },
    /// Write a consistent copy of the database to FILE (safe while the service runs).
    Backup {
        /// Where to write the copy (created mode 0600).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print shell completions or the man page (used to build the .deb).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: generate::What,
    },
}

/// Flags that override configuration keys for any command.
#[derive(Debug, Args, Default)]
pub struct Overrides {
    /// Listen address, e.g. 0.0.0.0:8443 (overrides [server] listen).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Data directory for the database and certificates (overrides [storage] data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace (overrides [log] level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PbxArg {
    Asterisk,
    Freeswitch,
    /// No PBX yet: configure it later in the settings page or the config file.
    None,
}

/// Flags for `--init`. Without a terminal (or with --non-interactive) nothing is asked:
/// anything not given takes its default.
#[derive(Debug, Args, Default)]
pub struct InitArgs {
    /// PBX type.
    #[arg(long, value_enum, requires = "init")]
    pub pbx: Option<PbxArg>,
    /// PBX host [default: 127.0.0.1].
    #[arg(long, requires = "init", value_name = "HOST")]
    pub pbx_host: Option<String>,
    /// PBX port [default: 5038 for Asterisk AMI, 8021 for FreeSWITCH ESL].
    #[arg(long, requires = "init", value_name = "PORT")]
    pub pbx_port: Option<u16>,
    /// AMI user name (Asterisk).
    #[arg(long, requires = "init", value_name = "USER")]
    pub pbx_user: Option<String>,
    /// AMI secret or ESL password (or set APPLIANCE_PBX__SECRET to keep it out of `ps`).
    #[arg(long, requires = "init", value_name = "SECRET", hide_env_values = true)]
    pub pbx_secret: Option<String>,
    /// Admit this Flowlu account, e.g. company.flowlu.com (repeatable); the first owns the
    /// PBX. Without it, --init prints a one-time claim code instead.
    #[arg(long, requires = "init", value_name = "DOMAIN")]
    pub admit: Vec<String>,
    /// Public HTTPS URL Flowlu reaches this appliance at, e.g. https://pbx.example.com:8443.
    #[arg(long, requires = "init", value_name = "URL")]
    pub public_url: Option<String>,
    /// PEM certificate chain to serve.
    #[arg(long, requires_all = ["init", "tls_key"], value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires_all = ["init", "tls_cert"], value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate into the data directory (for testing). This is
    /// the default when no certificate is given.
    #[arg(long, requires = "init", conflicts_with_all = ["tls_cert", "plain_http"])]
    pub self_signed: bool,
    /// Serve plain HTTP behind a TLS-terminating reverse proxy.
    #[arg(long, requires = "init", conflicts_with = "tls_cert")]
    pub plain_http: bool,
    /// Overwrite an existing configuration file.
    #[arg(long, requires = "init")]
    pub force: bool,
    /// Never prompt, even on a terminal.
    #[arg(long, requires = "init")]
    pub non_interactive: bool,
    /// Write the configuration even when the PBX login test fails (the PBX comes later;
    /// the service keeps retrying). Without it, a failed login exits 1 and writes nothing.
    #[arg(long, requires = "init")]
    pub pbx_optional: bool,
    /// Obtain the certificate from an ACME CA (Let's Encrypt) for the host of --public-url
    /// (or --acme-domain); the running service renews it.
    #[arg(long, requires = "init", conflicts_with_all = ["tls_cert", "plain_http", "self_signed"])]
    pub acme: bool,
    /// Contact e-mail for the ACME account.
    #[arg(long, requires = "acme", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// DNS name to certify [default: the host of --public-url].
    #[arg(long, requires = "acme", value_name = "DOMAIN")]
    pub acme_domain: Option<String>,
    /// ACME challenge: http-01 (port 80) or tls-alpn-01 (port 443).
    #[arg(long, requires = "acme", value_name = "TYPE", value_parser = ["http-01", "tls-alpn-01"])]
    pub acme_challenge: Option<String>,
    /// ACME directory URL [default: Let's Encrypt production].
    #[arg(long, requires = "acme", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Asterisk manager.conf to offer AMI credentials from.
    #[arg(
        long,
        requires = "init",
        value_name = "FILE",
        default_value = "/etc/asterisk/manager.conf"
    )]
    pub manager_conf: PathBuf,
    /// FreeSWITCH event_socket.conf.xml to offer the ESL password from.
    #[arg(
        long,
        requires = "init",
        value_name = "FILE",
        default_value = "/etc/freeswitch/autoload_configs/event_socket.conf.xml"
    )]
    pub event_socket_conf: PathBuf,
    /// FreePBX's configuration file: when it exists, the Asterisk is a FreePBX and its
    /// dialplan (from-internal) is proposed. Hidden: tests point it elsewhere.
    #[arg(
        long,
        requires = "init",
        value_name = "FILE",
        default_value = "/etc/freepbx.conf",
        hide = true
    )]
    pub freepbx_conf: PathBuf,
    /// The PBX's call records to back-fill from ([cdr]): auto (the first source found
    /// on this host that can be read), none, or a source (freepbx, mysql, asterisk-csv,
    /// asterisk-sqlite, freeswitch-csv, freeswitch-xml, freeswitch-sqlite).
    #[arg(long, requires = "init", value_name = "SOURCE", default_value = "auto",
          value_parser = cdr_choice)]
    pub cdr: String,
    /// Where the call record files are looked for (tests point it at a temp dir).
    #[arg(
        long,
        requires = "init",
        value_name = "DIR",
        default_value = "/",
        hide = true
    )]
    pub cdr_root: PathBuf,
    /// Where to look for a local Asterisk AMI.
    #[arg(
        long,
        requires = "init",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:5038"
    )]
    pub detect_ami: String,
    /// Where to look for a local FreeSWITCH event socket.
    #[arg(
        long,
        requires = "init",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8021"
    )]
    pub detect_esl: String,
}

fn cdr_choice(value: &str) -> Result<String, String> {
    if value == "auto" || value == "none" || crate::config::CDR_SOURCES.contains(&value) {
        return Ok(value.to_string());
    }
    Err(format!(
        "not auto, none or one of {}",
        crate::config::CDR_SOURCES.join(", ")
    ))
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.init {
        return init::run(&cli);
    }
    match &cli.command {
        None | Some(Command::Run) => run::run(&cli),
        Some(Command::CheckConfig) => check::run(&cli),
        Some(Command::Outbox { action }) => outbox::run(&cli, action),
        Some(Command::Accounts { action }) => accounts::run(&cli, action),
        Some(Command::Recordings { action }) => recordings::run(&cli, action),
        Some(Command::Doctor) => doctor::run(&cli),
        Some(Command::History { action }) => history::run(&cli, action),
        Some(Command::Backup { file, force }) => backup::run(&cli, file, *force),
        Some(Command::Generate { what }) => generate::run(what),
    }
}

impl Cli {
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(config::default_config_path)
    }

    /// Flags that override configuration keys.
    pub fn flags(&self) -> Vec<Flag> {
        let o = &self.overrides;
        let mut flags = Vec::new();
        if let Some(listen) = &o.listen {
            flags.push(Flag {
                key: "server.listen",
                name: "--listen",
                value: listen.clone().into(),
            });
        }
        if let Some(dir) = &o.data_dir {
            flags.push(Flag {
                key: "storage.data_dir",
                name: "--data-dir",
                value: absolute(dir).display().to_string().into(),
            });
        }
        if let Some(level) = &o.log_level {
            flags.push(Flag {
                key: "log.level",
                name: "--log-level",
                value: level.clone().into(),
            });
        }
        flags
    }

    /// The merged, validated configuration for this invocation.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        config::load(&LoadOptions::from_process(self.config_path(), self.flags())).map(|(c, _)| c)
    }
}

/// Makes a relative path absolute against the current directory.
pub fn absolute(path: &std::path::Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The database of the configuration, for the commands that work on it; the exit code
/// to return when either cannot be opened.
pub fn open_db(cli: &Cli) -> Result<crate::db::Db, ExitCode> {
    let config = cli.load_config().map_err(|e| fail(2, e))?;
    crate::db::Db::open(&config.database_path()).map_err(|e| fail(1, e))
}

/// Prints `appliance: <message>` to stderr and returns `code`.
pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("appliance: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn init_flags_need_init() {
        assert!(Cli::try_parse_from(["appliance", "--pbx", "asterisk"]).is_err());
        let cli = Cli::try_parse_from([
            "appliance",
            "--init",
            "--pbx",
            "asterisk",
            "--self-signed",
            "--config",
            "/tmp/x.toml",
        ])
        .unwrap();
        assert!(cli.init && cli.init_args.self_signed);
        assert!(
            Cli::try_parse_from([
                "appliance",
                "--init",
                "--self-signed",
                "--tls-cert",
                "a",
                "--tls-key",
                "b"
            ])
            .is_err()
        );
        let cli =
            Cli::try_parse_from(["appliance", "check-config", "--config", "/x.toml"]).unwrap();
        assert!(matches!(cli.command, Some(Command::CheckConfig)));
        assert_eq!(cli.config_path(), PathBuf::from("/x.toml"));
    }
}
