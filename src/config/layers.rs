//! Merging the configuration layers: embedded defaults < file < environment < flags.
//!
//! The embedded example file is also the schema: a key exists exactly when the example
//! has it, and its type is the example value's type. So an unknown key or a value of the
//! wrong type is caught generically, and every error names the key and where it came from.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, EXAMPLE};

/// Where one key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the built-in default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// The source of every key, so validation errors can say where a bad value came from.
#[derive(Debug, Clone, Default)]
pub struct Sources(HashMap<String, Source>);

impl Sources {
    pub fn get(&self, key: &str) -> &Source {
        self.0.get(key).unwrap_or(&Source::Default)
    }

    pub(super) fn error(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.get(key).to_string(),
            message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration file at {path}; create one with `appliance --init`")]
    Missing { path: PathBuf },
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` in {origin}")]
    UnknownKey { key: String, origin: String },
    #[error("configuration key `{key}` in {origin}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        origin: String,
        expected: String,
        found: String,
    },
    #[error("configuration key `{key}` (from {origin}) {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

/// A command-line flag that sets one key, e.g. `--listen` sets `server.listen`.
#[derive(Debug, Clone)]
pub struct Flag {
    pub key: &'static str,
    pub name: &'static str,
    pub value: Value,
}

/// What to merge. `main` fills it from the process; tests fill it by hand.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The config file. `None` means defaults, environment and flags only.
    pub path: Option<PathBuf>,
    /// Environment variables to consider (only `APPLIANCE_<SECTION>__<KEY>` are used).
    pub env: Vec<(String, String)>,
    pub flags: Vec<Flag>,
}

impl LoadOptions {
    pub fn defaults_only() -> LoadOptions {
        LoadOptions::default()
    }

    /// The file at `path` plus this process's environment.
    pub fn from_process(path: PathBuf, flags: Vec<Flag>) -> LoadOptions {
        LoadOptions {
            path: Some(path),
            env: std::env::vars().collect(),
            flags,
        }
    }
}

/// Merges every layer and validates the result.
pub fn load(opts: &LoadOptions) -> Result<(Config, Sources), ConfigError> {
    let defaults: Table = toml::from_str(EXAMPLE).expect("the embedded example is valid TOML");
    let mut merged = defaults.clone();
    let mut sources = Sources::default();

    if let Some(path) = &opts.path {
        let file = read_file(path)?;
        merge_file(&defaults, &mut merged, &mut sources, path, file)?;
    }
    apply_env(&defaults, &mut merged, &mut sources, &opts.env)?;
    for flag in &opts.flags {
        let (section, key) = flag.key.split_once('.').expect("flag keys are section.key");
        let origin = Source::Flag(flag.name.to_string());
        let expected = schema_value(&defaults, section, key)
            .unwrap_or_else(|| panic!("flag {} names unknown key {}", flag.name, flag.key));
        check_type(flag.key, &origin, expected, &flag.value)?;
        set(&mut merged, section, key, flag.value.clone());
        sources.0.insert(flag.key.to_string(), origin);
    }

    let mut config: Config = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            key: "(config)".into(),
            origin: "merged configuration".into(),
            message: e.to_string(),
        })?;
    config.origin = opts.path.clone();
    config.validate(&sources)?;
    Ok((config, sources))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

fn schema_value<'a>(defaults: &'a Table, section: &str, key: &str) -> Option<&'a Value> {
    defaults.get(section)?.as_table()?.get(key)
}

fn set(merged: &mut Table, section: &str, key: &str, value: Value) {
    merged
        .get_mut(section)
        .and_then(Value::as_table_mut)
        .expect("sections come from the defaults")
        .insert(key.to_string(), value);
}

fn merge_file(
    defaults: &Table,
    merged: &mut Table,
    sources: &mut Sources,
    path: &Path,
    file: Table,
) -> Result<(), ConfigError> {
    let origin = Source::File(path.to_path_buf());
    for (section, body) in file {
        let Some(table) = body.as_table() else {
            return Err(ConfigError::UnknownKey {
                key: section,
                origin: origin.to_string(),
            });
        };
        for (key, value) in table {
            let full = format!("{section}.{key}");
            let Some(expected) = schema_value(defaults, &section, key) else {
                return Err(ConfigError::UnknownKey {
                    key: full,
                    origin: origin.to_string(),
                });
            };
            check_type(&full, &origin, expected, value)?;
            set(merged, &section, key, value.clone());
            sources.0.insert(full, origin.clone());
        }
    }
    Ok(())
}

fn apply_env(
    defaults: &Table,
    merged: &mut Table,
    sources: &mut Sources,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("APPLIANCE_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue; // e.g. APPLIANCE_CONFIG, read by clap
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let full = format!("{section}.{key}");
        let origin = Source::Env(name.clone());
        let Some(expected) = schema_value(defaults, &section, &key) else {
            return Err(ConfigError::UnknownKey {
                key: full,
                origin: origin.to_string(),
            });
        };
        let value = coerce_env(&full, &origin, expected, raw)?;
        set(merged, &section, &key, value);
        sources.0.insert(full, origin);
    }
    Ok(())
}

/// Environment values are strings; read them as the type the key has in the defaults.
fn coerce_env(
    key: &str,
    origin: &Source,
    expected: &Value,
    raw: &str,
) -> Result<Value, ConfigError> {
    let wrong = |what: &str| ConfigError::WrongType {
        key: key.to_string(),
        origin: origin.to_string(),
        expected: what.to_string(),
        found: format!("{raw:?}"),
    };
    let value = match expected {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| wrong("an integer"))?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| wrong("a number"))?),
        Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => return Err(wrong("true or false")),
        },
        Value::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: Table = toml::from_str(&format!("v = {trimmed}"))
                    .map_err(|_| wrong("a TOML array or a comma-separated list"))?;
                doc["v"].clone()
            } else {
                let items = trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect();
                Value::Array(items)
            }
        }
        _ => return Err(wrong("a supported value")),
    };
    check_type(key, origin, expected, &value)?;
    Ok(value)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

fn check_type(
    key: &str,
    origin: &Source,
    expected: &Value,
    value: &Value,
) -> Result<(), ConfigError> {
    let wrong = |expected: String, found: &Value| ConfigError::WrongType {
        key: key.to_string(),
        origin: origin.to_string(),
        expected,
        found: found.to_string(),
    };
    if std::mem::discriminant(expected) != std::mem::discriminant(value) {
        return Err(wrong(type_name(expected).to_string(), value));
    }
    if let (Value::Array(schema), Value::Array(items)) = (expected, value) {
        let element = schema
            .first()
            .cloned()
            .unwrap_or(Value::String(String::new()));
        for item in items {
            if std::mem::discriminant(&element) != std::mem::discriminant(item) {
                let what = format!(
                    "a list of {}s",
                    type_name(&element).trim_start_matches("a ")
                );
                return Err(wrong(what, value));
            }
        }
    }
    Ok(())
}
