//! `appliance generate completions <shell>` and `appliance generate man`: print what the
//! .deb ships, generated from the clap definitions so they never drift from the binary.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand, ValueEnum};

use super::{Cli, fail};

#[derive(Debug, Subcommand)]
pub enum What {
    /// Shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// The man page (roff), section 1.
    Man,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(what: &What) -> ExitCode {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    match what {
        What::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, "appliance", &mut out);
        }
        What::Man => {
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                return fail(1, format!("cannot render the man page: {e}"));
            }
        }
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, format!("cannot write to stdout: {e}")),
    }
}
