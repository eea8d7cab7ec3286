//! `--init`'s `[cdr]`: finds the PBX's call records on this host (`crate::cdr::detect`),
//! reads the proposed source once (its newest record), and writes its keys.

use std::path::Path;

use super::{Cli, prompt};
use crate::cdr::detect::{self, Proposal};
use crate::config::PbxType;

/// What `--init` found and chose.
#[derive(Debug, Clone, Default)]
pub(super) struct CdrAnswers {
    /// Every source found, each read once.
    pub found: Vec<Proposal>,
    /// The one to write (`None`: `[cdr] source` stays empty).
    pub chosen: Option<Proposal>,
    /// What `--cdr` asked for.
    pub wanted: String,
}

fn root(cli: &Cli) -> &Path {
    let root = cli.init_args.cdr_root.as_path();
    if root.as_os_str().is_empty() {
        Path::new("/")
    } else {
        root
    }
}

/// Without questions: `--cdr` decides (auto: the first found that can be read).
pub(super) fn detect(cli: &Cli, pbx: Option<PbxType>) -> CdrAnswers {
    let root = root(cli);
    let found = detect::propose(root, pbx);
    let wanted = cli.init_args.cdr.clone();
    let chosen = detect::choose(&found, &wanted, root);
    CdrAnswers {
        found,
        chosen,
        wanted,
    }
}

/// The wizard's question: lists what was found (and what one read showed), and offers
/// those sources or none, the first readable one (or `--cdr`'s) as the default.
pub(super) fn ask(cli: &Cli, pbx: Option<PbxType>) -> std::io::Result<CdrAnswers> {
    eprintln!("Looking for the PBX's call records (to back-fill missed calls)...");
    let mut a = detect(cli, pbx);
    if a.found.is_empty() {
        eprintln!("  none found (README, \"Call history and back-fill\", says how to enable them)");
        if a.chosen.is_none() {
            return Ok(a);
        }
    }
    for p in &a.found {
        eprintln!("  {} ({})", p.line(), p.candidate.why);
    }
    let mut choices: Vec<&str> = a.found.iter().map(|p| p.candidate.source).collect();
    if let Some(c) = &a.chosen
        && !choices.contains(&c.candidate.source)
    {
        choices.push(c.candidate.source);
    }
    choices.push("none");
    let default = a.chosen.as_ref().map_or("none", |p| p.candidate.source);
    let picked = prompt::choose("Back-fill calls from", &choices, default)?;
    a.chosen = match picked.as_str() {
        "none" => None,
        source => a
            .found
            .iter()
            .chain(a.chosen.iter())
            .find(|p| p.candidate.source == source)
            .cloned(),
    };
    Ok(a)
}

/// Writes the chosen source's keys into the config's `[cdr]`.
pub(super) fn render(doc: &mut toml_edit::DocumentMut, a: &CdrAnswers) {
    let Some(p) = &a.chosen else {
        return;
    };
    let c = &p.candidate;
    doc["cdr"]["source"] = toml_edit::value(c.source);
    if !c.path.is_empty() {
        doc["cdr"]["path"] = toml_edit::value(c.path.as_str());
    }
    if !c.timezone.is_empty() {
        doc["cdr"]["timezone"] = toml_edit::value(c.timezone.as_str());
    }
    if !c.freepbx_conf.is_empty() {
        doc["cdr"]["freepbx_conf"] = toml_edit::value(c.freepbx_conf.as_str());
        doc["cdr"]["amportal_conf"] = toml_edit::value(c.amportal_conf.as_str());
    }
}

/// The summary's lines about call records.
pub(super) fn summary(a: &CdrAnswers) -> Vec<String> {
    let mut lines = Vec::new();
    match &a.chosen {
        Some(p) => {
            lines.push(format!("Call records:  {} ([cdr] source)", p.line()));
            if p.read.is_err() {
                lines.push(
                    "               back-fill will fail until it can be read \
                     (appliance doctor shows why)"
                        .to_string(),
                );
            }
        }
        None if a.wanted == "none" => {
            lines.push("Call records:  not read (--cdr none)".to_string());
        }
        None if a.found.is_empty() => lines.push(
            "Call records:  none found: calls made while the appliance is stopped are not \
             back-filled (README, \"Call history and back-fill\"; then --cdr SOURCE or \
             [cdr] source)"
                .to_string(),
        ),
        None => {
            lines.push(
                "Call records:  found, but none can be read, so none is configured:".to_string(),
            );
            for p in &a.found {
                lines.push(format!("               {}", p.line()));
            }
        }
    }
    lines
}
