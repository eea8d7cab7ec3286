//! `[recordings]`: where the PBX writes call recordings, how long their URLs live, and how
//! long publishing waits for a recording to be complete.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources, parse_duration};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsConfig {
    /// The only directories recordings are ever served from (absolute paths).
    pub dirs: Vec<String>,
    /// How long a recording URL stays valid after the call.
    pub url_ttl: String,
    /// How long a recording's size must stay unchanged before it counts as complete.
    pub settle: String,
    /// How long publishing waits for a recording to appear and to become complete.
    pub max_wait: String,
}

impl RecordingsConfig {
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(PathBuf::from).collect()
    }

    pub fn url_ttl(&self) -> Duration {
        parse_duration(&self.url_ttl).expect("validated")
    }

    pub fn settle(&self) -> Duration {
        parse_duration(&self.settle).expect("validated")
    }

    pub fn max_wait(&self) -> Duration {
        parse_duration(&self.max_wait).expect("validated")
    }
}

/// True when `inner` is `outer` or lies below it, comparing path components (so
/// `/var/lib/app` is not inside `/var/lib/appliance`). Purely lexical.
pub fn path_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

fn has_dot_dot(path: &Path) -> bool {
    path.components().any(|c| c == Component::ParentDir)
}

impl Config {
    pub(super) fn validate_recordings(&self, sources: &Sources) -> Result<(), ConfigError> {
        let r = &self.recordings;
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        let data_dir = self.data_dir();
        for dir in &r.dirs {
            let path = Path::new(dir);
            if !path.is_absolute() {
                return bad(
                    "recordings.dirs",
                    format!("{dir:?} must be an absolute path"),
                );
            }
            if has_dot_dot(path) {
                return bad(
                    "recordings.dirs",
                    format!("{dir:?} must not contain \"..\""),
                );
            }
            if path.parent().is_none() {
                return bad(
                    "recordings.dirs",
                    "\"/\" would serve every file on the host; name the PBX's recording \
                     directory instead"
                        .into(),
                );
            }
            // The data directory holds the database (tokens) and the TLS key: never
            // servable, whichever way round the two are nested.
            if path_within(&data_dir, path) || path_within(path, &data_dir) {
                return bad(
                    "recordings.dirs",
                    format!(
                        "{dir:?} overlaps the data directory {} (database and keys)",
                        data_dir.display()
                    ),
                );
            }
        }
        let mut durations = Vec::new();
        for (key, value, min, max) in [
            (
                "recordings.url_ttl",
                &r.url_ttl,
                Duration::from_secs(60),
                Duration::from_secs(3650 * 86_400),
            ),
            (
                "recordings.settle",
                &r.settle,
                Duration::from_millis(10),
                Duration::from_secs(60),
            ),
            (
                "recordings.max_wait",
                &r.max_wait,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            ),
        ] {
            match parse_duration(value) {
                // url_ttl "0s": links never expire (they live as long as the file).
                Ok(d) if d.is_zero() && key == "recordings.url_ttl" => durations.push(d),
                Ok(d) if d >= min && d <= max => durations.push(d),
                Ok(_) => {
                    return bad(
                        key,
                        format!(
                            "must be between {} and {}{}",
                            super::format_duration(min),
                            super::format_duration(max),
                            if key == "recordings.url_ttl" {
                                ", or \"0s\" for links that never expire"
                            } else {
                                ""
                            }
                        ),
                    );
                }
                Err(why) => return bad(key, why),
            }
        }
        if durations[2] < durations[1] {
            return bad(
                "recordings.max_wait",
                format!("must not be shorter than recordings.settle ({})", r.settle),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(env: &[(&str, &str)]) -> Result<Config, String> {
        super::super::tests::load_env(
            "[storage]
data_dir = \"/var/lib/appliance\"
",
            env,
        )
    }

    #[test]
    fn defaults_name_the_standard_directories() {
        let c = load_with(&[]).unwrap();
        assert_eq!(
            c.recordings.dirs,
            [
                "/var/spool/asterisk/monitor",
                "/var/lib/freeswitch/recordings"
            ]
        );
        assert_eq!(c.recordings.url_ttl(), Duration::ZERO, "never expire");
        assert_eq!(c.recordings.settle(), Duration::from_secs(1));
        assert_eq!(c.recordings.max_wait(), Duration::from_secs(60));
        let c = load_with(&[
            ("APPLIANCE_RECORDINGS__DIRS", "/srv/rec, /mnt/calls"),
            ("APPLIANCE_RECORDINGS__URL_TTL", "30d"),
        ])
        .unwrap();
        assert_eq!(
            c.recordings.dirs(),
            [Path::new("/srv/rec"), Path::new("/mnt/calls")]
        );
        assert_eq!(c.recordings.url_ttl(), Duration::from_secs(30 * 86_400));
        assert!(load_with(&[("APPLIANCE_RECORDINGS__URL_TTL", "0s")]).is_ok());
        // No directories: nothing is ever served, which is a valid choice.
        assert!(load_with(&[("APPLIANCE_RECORDINGS__DIRS", "")]).is_ok());
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        for (var, value, key) in [
            ("APPLIANCE_RECORDINGS__DIRS", "monitor", "recordings.dirs"),
            ("APPLIANCE_RECORDINGS__DIRS", "/", "recordings.dirs"),
            (
                "APPLIANCE_RECORDINGS__DIRS",
                "/var/spool/../../etc",
                "recordings.dirs",
            ),
            ("APPLIANCE_RECORDINGS__DIRS", "/var/lib", "recordings.dirs"),
            (
                "APPLIANCE_RECORDINGS__DIRS",
                "/var/lib/appliance/rec",
                "recordings.dirs",
            ),
            ("APPLIANCE_RECORDINGS__URL_TTL", "7", "recordings.url_ttl"),
            ("APPLIANCE_RECORDINGS__URL_TTL", "10s", "recordings.url_ttl"),
            ("APPLIANCE_RECORDINGS__SETTLE", "1ms", "recordings.settle"),
            (
                "APPLIANCE_RECORDINGS__MAX_WAIT",
                "2h",
                "recordings.max_wait",
            ),
            (
                "APPLIANCE_RECORDINGS__MAX_WAIT",
                "500ms",
                "recordings.max_wait",
            ),
        ] {
            let e = load_with(&[(var, value)]).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{var}={value}: {e}");
            assert!(e.contains(var), "{e}");
        }
        // /var/lib/appliance-recordings is not inside /var/lib/appliance.
        assert!(load_with(&[("APPLIANCE_RECORDINGS__DIRS", "/var/lib/appliance-rec")]).is_ok());
    }
}
