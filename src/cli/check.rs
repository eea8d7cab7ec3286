//! `appliance check-config`: validate the merged configuration and the files it names.

use std::process::ExitCode;

use super::{Cli, fail};
use crate::tls;

pub fn run(cli: &Cli) -> ExitCode {
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    if !config.server.plain_http
        && let Err(e) = tls::load_certified_key(
            config.server.tls_cert.as_ref(),
            config.server.tls_key.as_ref(),
        )
    {
        return fail(2, e);
    }
    let data_dir = config.data_dir();
    if !data_dir.is_dir() {
        return fail(
            2,
            format!(
                "data directory {} does not exist (create it, or run `appliance --init`)",
                data_dir.display()
            ),
        );
    }
    let overridden = saved_pbx_note(&config);
    if let Some(note) = &overridden {
        // A TOML comment: the output stays a valid configuration.
        println!("# {note}");
    }
    print!("{}", config.to_redacted_toml());
    if let Some(note) = &overridden {
        eprintln!("appliance: note: {note}");
    }
    eprintln!(
        "appliance: configuration {} is valid",
        cli.config_path().display()
    );
    ExitCode::SUCCESS
}

/// When the PBX saved on the settings page (it takes precedence over `[pbx]`) is in the
/// database: which one it is, never its secret.
fn saved_pbx_note(config: &crate::Config) -> Option<String> {
    let (saved, from) = crate::doctor::pbx_in_force(config)?;
    if from != "the settings page" {
        return None;
    }
    let configured = match crate::pbx::ConnectionSettings::from_config(&config.pbx) {
        Some(c) => format!("{} at {}", c.kind.as_str(), c.addr()),
        None => "no PBX".to_string(),
    };
    Some(format!(
        "[pbx] below is overridden: the service uses the PBX saved on the settings page \
         ({} at {}{}), not [pbx] ({configured}); change it on the settings page",
        saved.kind.as_str(),
        saved.addr(),
        if saved.user.is_empty() {
            String::new()
        } else {
            format!(", user {}", saved.user)
        },
    ))
}
