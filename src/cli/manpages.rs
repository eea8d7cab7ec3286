//! The man pages the .deb ships, generated from the clap definitions and the example
//! configuration so they never drift from the binary: `appliance(1)` with FILES,
//! ENVIRONMENT, EXIT STATUS, SIGNALS and SEE ALSO, one page per (non-hidden) subcommand
//! (`appliance-run(1)`, `appliance-outbox-list(1)`, ...), and `appliance.toml(5)` for the
//! configuration file.
//!
//! Every page a page names (its subcommands, SEE ALSO) is one of these: the test below
//! and `packaging/test-deb` check it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;

/// One page: its file name (e.g. `appliance-run.1`) and roff text.
pub struct Page {
    pub file: String,
    pub roff: Vec<u8>,
}

/// Every page, `appliance.1` first.
pub fn pages() -> std::io::Result<Vec<Page>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    command_pages(&cmd, true, &mut out)?;
    out.push(Page {
        file: "appliance.toml.5".into(),
        roff: config_page(),
    });
    Ok(out)
}

/// Writes every page into `dir` (section subdirectories are the packager's business).
pub fn write_to(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for page in pages()? {
        let path = dir.join(&page.file);
        std::fs::write(&path, &page.roff)?;
        written.push(path);
    }
    Ok(written)
}

fn command_pages(cmd: &clap::Command, top: bool, out: &mut Vec<Page>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("appliance {}", crate::VERSION));
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut roff)?;
    }
    let subcommands: Vec<&clap::Command> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subcommands.is_empty() {
        man.render_subcommands_section(&mut roff)?;
    }
    if top {
        roff.write_all(TOP_SECTIONS.as_bytes())?;
    }
    let mut see_also: Vec<String> = Vec::new();
    if !top {
        see_also.push("appliance(1)".into());
    }
    see_also.extend(
        subcommands
            .iter()
            .map(|s| format!("{name}-{}(1)", s.get_name())),
    );
    see_also.push("appliance.toml(5)".into());
    writeln!(roff, ".SH \"SEE ALSO\"")?;
    writeln!(roff, "{}", bold_refs(&see_also))?;
    out.push(Page {
        file: format!("{name}.1"),
        roff,
    });
    for sub in subcommands {
        command_pages(sub, false, out)?;
    }
    Ok(())
}

fn bold_refs(refs: &[String]) -> String {
    refs.iter()
        .map(|r| {
            let (page, section) = r.split_once('(').unwrap_or((r, ""));
            format!("\\fB{}\\fR({section}", page.replace('-', "\\-"))
        })
        .collect::<Vec<_>>()
        .join(",\n")
}

/// FILES, ENVIRONMENT, EXIT STATUS and SIGNALS of `appliance(1)`.
const TOP_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/appliance/config.toml\fR
The configuration (run as root; otherwise \fI~/.config/appliance/config.toml\fR), see \fBappliance.toml\fR(5). Written by \fBappliance \-\-init\fR, mode 0640 root:appliance.
.TP
\fI/etc/appliance/config.toml.example\fR
Every key with its default and a comment.
.TP
\fI/var/lib/appliance/appliance.db\fR
The SQLite database: Flowlu accounts and tokens, calls, the delivery queue (outbox), the PBX saved on the settings page. Copy it safely with \fBappliance backup\fR.
.TP
\fI/var/lib/appliance/tls/\fR
The self-signed or ACME certificate and key, when \fB\-\-init\fR made them.
.TP
\fI/lib/systemd/system/appliance.service\fR
The systemd unit; local changes belong in a drop-in (\fBsystemctl edit appliance\fR).
.SH ENVIRONMENT
.TP
\fBAPPLIANCE_CONFIG\fR
The configuration file, like \fB\-\-config\fR.
.TP
\fBAPPLIANCE_\fISECTION\fB__\fIKEY\fR
Overrides one configuration key, e.g. \fBAPPLIANCE_PBX__HOST=10.0.0.5\fR or \fBAPPLIANCE_PBX__SECRET\fR (keeps a secret out of \fBps\fR); lists are comma-separated.
.TP
\fBRUST_LOG\fR
Log filter (e.g. \fBappliance=debug\fR); overrides \fB[log] level\fR, dependencies included.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd: when it names stderr, log lines carry syslog priorities and no timestamp (\fBjournalctl \-u appliance \-p warning\fR).
.TP
\fBNOTIFY_SOCKET\fR
Set by systemd: readiness (\fBREADY=1\fR) and \fBSTOPPING=1\fR are sent there.
.SH "EXIT STATUS"
.TP
\fB0\fR
Success (\fBrun\fR: stopped by SIGTERM or SIGINT; \fBdoctor\fR: no check failed).
.TP
\fB1\fR
A runtime failure: port in use, unusable database or TLS files, a refused overwrite, a failed PBX login in \fB\-\-init\fR (without \fB\-\-pbx\-optional\fR), a failed \fBdoctor\fR check.
.TP
\fB2\fR
Bad usage or an invalid configuration (the unit does not restart on it).
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, let requests in flight finish (\fB[server] shutdown_grace_secs\fR), stop the workers, exit 0.
.TP
\fBSIGHUP\fR
Reload (\fBsystemctl reload appliance\fR): the TLS certificate, and the configuration keys that apply without a restart (see \fBappliance.toml\fR(5), RELOAD); an invalid file is logged and the running configuration kept.
"#;

/// `appliance.toml(5)`: how the file is read, then the example configuration itself
/// (every key, its default and its comment).
fn config_page() -> Vec<u8> {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH APPLIANCE.TOML 5 \"\" \"appliance {}\"\n",
        crate::VERSION
    ));
    out.push_str(
        r#".SH NAME
appliance.toml \- configuration of the Flowlu telephony appliance
.SH SYNOPSIS
\fI/etc/appliance/config.toml\fR
.SH DESCRIPTION
A TOML file read by \fBappliance\fR(1) at start-up. Every key has a default (the example below is embedded in the binary as the defaults), so the file holds only what differs. Precedence, lowest to highest: the defaults, this file, environment variables \fBAPPLIANCE_\fISECTION\fB__\fIKEY\fR, command-line flags. Unknown keys and invalid values are refused at start-up with the key named (exit status 2). \fBappliance check\-config\fR prints the merged result, secrets as ***.
.SH RELOAD
\fBsystemctl reload appliance\fR (SIGHUP) re-reads the file. Applied while running: \fB[log] level\fR, \fB[calls]\fR, \fB[outbox]\fR, \fB[recordings]\fR, \fB[webhook]\fR and \fB[c2c]\fR, and the TLS certificate files' contents. Every other section (\fB[server]\fR, \fB[pbx]\fR, \fB[flowlu]\fR, \fB[storage]\fR, \fB[routing]\fR, \fB[acme]\fR, \fB[metrics]\fR, \fB[callbacks]\fR) needs \fBsystemctl restart appliance\fR: a reload logs which of them changed and keeps them as they were. A file that does not load is logged as an error and changes nothing.
.SH EXAMPLE
Every key with its default:
.PP
.nf
"#,
    );
    for line in crate::config::EXAMPLE.lines() {
        let escaped = line.replace('\\', "\\e");
        if escaped.starts_with('.') || escaped.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&escaped);
        out.push('\n');
    }
    out.push_str(
        ".fi\n.SH \"SEE ALSO\"\n\\fBappliance\\fR(1), \\fBappliance\\-check\\-config\\fR(1)\n",
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `name(N)` a page refers to, in its SEE ALSO and subcommand lists.
    fn references(roff: &str) -> Vec<String> {
        let text = roff
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "");
        let mut refs = Vec::new();
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some((name, rest)) = word.split_once('(')
                && name.starts_with("appliance")
                && let Some(section) = rest.strip_suffix(')')
                && section.len() == 1
            {
                refs.push(format!("{name}.{section}"));
            }
        }
        refs
    }

    #[test]
    fn every_page_named_is_shipped() {
        let pages = pages().unwrap();
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        for expected in [
            "appliance.1",
            "appliance-run.1",
            "appliance-check-config.1",
            "appliance-doctor.1",
            "appliance-backup.1",
            "appliance-outbox.1",
            "appliance-outbox-list.1",
            "appliance.toml.5",
        ] {
            assert!(
                files.contains(&expected),
                "{expected} missing from {files:?}"
            );
        }
        assert!(!files.iter().any(|f| f.contains("generate")), "hidden");
        for page in &pages {
            let text = String::from_utf8_lossy(&page.roff);
            let refs = references(&text);
            assert!(
                !refs.is_empty() || page.file.ends_with(".5"),
                "{}",
                page.file
            );
            for r in refs {
                assert!(
                    files.contains(&r.as_str()),
                    "{} names {r}, not shipped",
                    page.file
                );
            }
        }
        let top = String::from_utf8_lossy(&pages[0].roff);
        for section in [
            "FILES",
            "ENVIRONMENT",
            "\"EXIT STATUS\"",
            "SIGNALS",
            "\"SEE ALSO\"",
        ] {
            assert!(top.contains(&format!(".SH {section}")), "{section}");
        }
        assert!(top.contains("appliance\\-run(1)") || top.contains("appliance-run(1)"));
        let config = String::from_utf8_lossy(&pages.last().unwrap().roff);
        assert!(
            config.contains("agent_channel = \"\""),
            "the example is in it"
        );
        assert!(config.contains(".SH RELOAD"));
    }
}
