//! The last few thousand answers of [`normalize`](super::normalize) and
//! [`is_normalized`](super::is_normalized), which are pure functions of their arguments.
//!
//! The call engine normalizes a call's number each time it writes the call (several times
//! per call), and the crate parses and validates the number each time: about 20 µs, a
//! tenth of the engine's work per event under load. A call's number is the same each
//! time, so the answer is kept. Bounded: the table is emptied when it is full (a burst
//! of new numbers costs what it cost before, never unbounded memory).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::PhoneError;

/// Answers kept of each function (a few hundred KiB at most).
const KEPT: usize = 4096;
/// Longer arguments are computed, not kept: no number is this long (E.164 has at most
/// 15 digits), and a caller's arbitrary text must not fill memory 4096 times over.
const LONGEST: usize = 64;

type Normalized = HashMap<(String, String), Result<String, PhoneError>>;

fn table<T: Default>(cell: &'static OnceLock<Mutex<T>>) -> std::sync::MutexGuard<'static, T> {
    cell.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

pub(super) fn normalized(
    raw: &str,
    country: &str,
    compute: impl FnOnce(&str, &str) -> Result<String, PhoneError>,
) -> Result<String, PhoneError> {
    static TABLE: OnceLock<Mutex<Normalized>> = OnceLock::new();
    if raw.len() + country.len() > LONGEST {
        return compute(raw, country);
    }
    let key = (raw.to_string(), country.to_string());
    if let Some(found) = table(&TABLE).get(&key) {
        return found.clone();
    }
    // Computed without the lock: other callers are not held up by a slow number.
    let answer = compute(raw, country);
    let mut kept = table(&TABLE);
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(key, answer.clone());
    answer
}

pub(super) fn is_normalized(digits: &str, compute: impl FnOnce(&str) -> bool) -> bool {
    static TABLE: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    if digits.len() > LONGEST {
        return compute(digits);
    }
    if let Some(&found) = table(&TABLE).get(digits) {
        return found;
    }
    let answer = compute(digits);
    let mut kept = table(&TABLE);
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(digits.to_string(), answer);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_computed_once_and_the_table_stays_bounded() {
        let mut computed = 0;
        for _ in 0..3 {
            let got = normalized("memo-test-1", "7", |r, c| {
                computed += 1;
                Ok(format!("{c}{r}"))
            });
            assert_eq!(got.as_deref(), Ok("7memo-test-1"));
        }
        assert_eq!(computed, 1);
        // Errors are kept too.
        let err = || Err(PhoneError::Empty);
        assert_eq!(normalized("memo-test-2", "", |_, _| err()), err());
        assert_eq!(
            normalized("memo-test-2", "", |_, _| Ok("other".into())),
            err()
        );
        // Text longer than any number is computed each time, never kept.
        let long = "9".repeat(LONGEST + 1);
        let mut counted = 0;
        for _ in 0..2 {
            is_normalized(&long, |_| {
                counted += 1;
                false
            });
        }
        assert_eq!(counted, 2);
        // Many distinct numbers: never more than KEPT answers held.
        for i in 0..KEPT * 2 {
            is_normalized(&format!("memo-{i}"), |_| true);
        }
        let mut again = 0;
        is_normalized("memo-0", |_| {
            again += 1;
            false
        });
        // memo-0 was dropped when the table filled up, so it is computed again.
        assert_eq!(again, 1);
    }
}
