//! `appliance backup FILE [--force]`: an online copy of the database (see `db::backup`).

use std::path::Path;
use std::process::ExitCode;

use super::{Cli, absolute, fail};
use crate::db::backup;

pub fn run(cli: &Cli, file: &Path, force: bool) -> ExitCode {
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    let source = config.database_path();
    match backup::backup(&source, &absolute(file), force) {
        Ok(info) => {
            println!(
                "backup: {} ({} bytes, schema version {}) from {}",
                info.path.display(),
                info.bytes,
                info.schema_version,
                source.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}
