//! `appliance generate completions <shell>` and `appliance generate man [--dir DIR]`: what
//! the .deb ships (the pages themselves are in `manpages.rs`), generated from the clap definitions so they never drift from the binary.

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
    /// The man page appliance(1) (roff) on stdout; with --dir, every page (appliance(1),
    /// one per command, appliance.toml(5)) as files in DIR.
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
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
        What::Man { dir: Some(dir) } => {
            return match super::manpages::write_to(dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(
                    1,
                    format!("cannot write the man pages to {}: {e}", dir.display()),
                ),
            };
        }
        What::Man { dir: None } => match super::manpages::pages() {
            Ok(pages) => out = pages.into_iter().next().map(|p| p.roff).unwrap_or_default(),
            Err(e) => return fail(1, format!("cannot render the man page: {e}")),
        },
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, format!("cannot write to stdout: {e}")),
    }
}
