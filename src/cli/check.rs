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
    print!("{}", config.to_redacted_toml());
    eprintln!(
        "appliance: configuration {} is valid",
        cli.config_path().display()
    );
    ExitCode::SUCCESS
}
