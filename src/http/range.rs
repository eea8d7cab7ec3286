//! The `Range` request header (RFC 9110 section 14), for one byte range.
//!
//! `bytes=a-b`, `bytes=a-` and `bytes=-n` are served as 206. Several ranges in one
//! request are answered with the whole file (200): the server may ignore `Range`, and
//! multipart/byteranges buys nothing for audio players, which ask for one range at a time.
//! A header that is not valid is ignored too, as the RFC asks.

/// What to send for a `Range` header on a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole representation (no header, an invalid one, or several ranges).
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

pub fn parse(header: &str, len: u64) -> Ranged {
    let Some((unit, set)) = header.trim().split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return Ranged::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    match (number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        // bytes=a-
        (Some(a), None) if last.is_empty() => {
            if a >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: a,
                    end: len - 1,
                }
            }
        }
        // bytes=a-b
        (Some(a), Some(b)) if a <= b => {
            if a >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: a,
                    end: b.min(len - 1),
                }
            }
        }
        _ => Ranged::Full,
    }
}

/// A run of ASCII digits; longer than u64 holds reads as u64::MAX (still a valid number).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), part(0, 99));
        assert_eq!(parse("bytes=0-0", 1000), part(0, 0));
        assert_eq!(parse("bytes=500-", 1000), part(500, 999));
        assert_eq!(parse("bytes=-100", 1000), part(900, 999));
        assert_eq!(parse("bytes=-5000", 1000), part(0, 999));
        assert_eq!(parse("bytes=990-2000", 1000), part(990, 999));
        assert_eq!(parse("Bytes = 1-2", 1000), part(1, 2));
        assert_eq!(parse("bytes=999-999", 1000), part(999, 999));
        assert_eq!(parse("bytes=0-99999999999999999999999", 1000), part(0, 999));
        assert_eq!(parse("bytes=0-1,", 1000), part(0, 1));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse("bytes=1000-", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=1000-2000", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=-1", 0), Ranged::Unsatisfiable);
        assert_eq!(
            parse("bytes=99999999999999999999999-", 1000),
            Ranged::Unsatisfiable
        );
    }

    #[test]
    fn invalid_or_multiple_ranges_mean_the_whole_file() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=0x10-",
            "bytes=0-1,5-9",
            "bytes=-1,0-1",
            "bytes=1-2-3",
            "bytes=0 -1",
        ] {
            assert_eq!(parse(header, 1000), Ranged::Full, "{header:?}");
        }
    }
}
