//! `appliance doctor`: runs [`crate::doctor`]'s checks and prints the report.

use std::process::ExitCode;

use super::{Cli, fail};
use crate::doctor::{self, Context, Status};

pub fn run(cli: &Cli) -> ExitCode {
    let ctx = Context::new(cli.config_path(), cli.load_config());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    let findings = runtime.block_on(doctor::run(&ctx));
    print!("{}", doctor::report(&findings));
    if doctor::worst(&findings) == Status::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
