//! Customer numbers as the PBX dials them and as every table stores them: E.164 digits
//! without the `+` (`+7 (999) 000-11-22`, `8 999 000 11 22` and `79990001122` all become
//! `79990001122` for an account whose default country code is 7).
//!
//! [`normalize`] is the whole interface; the numbering plans are Google's libphonenumber
//! metadata through the `phonenumber` crate (pure Rust, the metadata compiled in). This
//! module adds only what the crate leaves to its callers:
//! - the account's default country is a calling code (`flowlu_settings.default_country_code`,
//!   e.g. `7`); it is mapped to the code's main region in the metadata (7 → RU, 1 → US,
//!   44 → GB), whose national and international prefixes then apply (`8…` and `8-10…`
//!   in Russia, `0…` in the UK, `011…` in the US);
//! - only digits, formatting (spaces, `-`, `.`, `/`, brackets), one leading `+` and a
//!   `tel:` prefix are accepted: letters (vanity numbers, `ext.`), `*`, `#` or anything
//!   else are refused, where the crate would convert or drop them;
//! - without a default country, a number not written with `+`/`00` is read as already
//!   carrying its country code;
//! - the length must be one the numbering plan of the number's country code allows
//!   (too short and too long are told apart); whether the range is assigned today is
//!   not checked, so a new range still dials before the metadata knows it.
//!
//! Normalizing a normalized number gives it back unchanged (stored numbers can be
//! normalized again, e.g. when a call row is rewritten).

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

mod memo;

/// Why a number cannot be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the number is empty")]
    Empty,
    #[error("the number contains letters")]
    Letters,
    #[error("the number contains {0:?}")]
    Character(char),
    #[error("the number is too short ({0} digits with the country code)")]
    TooShort(usize),
    #[error("the number is too long ({0} digits with the country code)")]
    TooLong(usize),
    #[error("{0:?} is not a country calling code")]
    UnknownCountry(String),
    #[error("the default country code {0:?} is not a known country calling code")]
    Country(String),
}

/// Loads the numbering-plan metadata, which the crate parses on first use (~130 ms on a
/// small machine), and compiles the patterns of the numbering plans of `countries` (the
/// accounts' default calling codes), which the crate compiles on first use each (a few
/// ms): called once at start-up so that no call waits for either.
pub fn warm_up(countries: &[String]) {
    let _ = DATABASE.by_code(&7);
    for country in countries {
        let code = country.trim().trim_start_matches('+');
        let Some(plans) = code.parse().ok().and_then(|c: u16| DATABASE.by_code(&c)) else {
            continue;
        };
        for plan in plans {
            let d = plan.descriptors();
            let kinds = [d.fixed_line(), d.mobile(), d.toll_free(), d.voip(), d.uan()];
            for example in kinds.into_iter().flatten().filter_map(|k| k.example()) {
                // Written internationally and nationally: both ways a PBX shows a number.
                let _ = normalize(&format!("+{code}{example}"), country);
                let _ = normalize(example, country);
                let _ = is_normalized(&format!("{code}{example}"));
            }
        }
    }
}

/// The number as E.164 digits (no `+`). `default_country` (a calling code in digits,
/// optionally with `+`; may be empty) is used for numbers written without a country code.
pub fn normalize(raw: &str, default_country: &str) -> Result<String, PhoneError> {
    memo::normalized(raw, default_country, normalize_uncached)
}

fn normalize_uncached(raw: &str, default_country: &str) -> Result<String, PhoneError> {
    let region = region_of(default_country)?;
    let (plus, digits) = clean(raw)?;
    // Written internationally, or no default country to read it under: the crate reads
    // it from a `+` (`00…` is the IDD of most regions, but not of every default one).
    let international = if plus {
        Some(digits.as_str())
    } else if let Some(rest) = digits.strip_prefix("00") {
        Some(rest)
    } else if region.is_none() {
        Some(digits.as_str())
    } else {
        None
    };
    let parsed = match international {
        Some(d) => phonenumber::parse(None, format!("+{d}")),
        None => {
            let national = phonenumber::parse(region, &digits);
            // Digits that start with the default country code may be a number written
            // internationally without `+` (a stored, already normalized number, or a
            // trunk's caller ID): taken so when only that reading is a valid number.
            let code = default_country.trim().trim_start_matches('+');
            let national_valid = national.as_ref().is_ok_and(phonenumber::is_valid);
            match phonenumber::parse(None, format!("+{digits}")) {
                Ok(i) if digits.starts_with(code) && !national_valid && i.is_valid() => Ok(i),
                _ => national,
            }
        }
    };
    let number = match parsed {
        Ok(n) => n,
        Err(phonenumber::ParseError::InvalidCountryCode) => {
            let d = international.unwrap_or(&digits);
            return Err(PhoneError::UnknownCountry(
                d.chars().take(3).collect::<String>(),
            ));
        }
        Err(phonenumber::ParseError::TooLong) => return Err(PhoneError::TooLong(digits.len())),
        Err(_) => return Err(PhoneError::TooShort(digits.len())),
    };
    let code = number.code().value();
    let national = format!(
        "{}{}",
        "0".repeat(number.national().zeros() as usize),
        number.national().value()
    );
    let e164 = format!("{code}{national}");
    let lengths = possible_lengths(code);
    let n = national.len() as u16;
    if lengths.is_empty() || lengths.contains(&n) || number.is_valid() {
        return check_e164(e164);
    }
    // Not a length the country uses: too short or too long, by the nearest it does use.
    let below = lengths.iter().rev().find(|&&l| l < n);
    let above = lengths.iter().find(|&&l| l > n);
    match (below, above) {
        (Some(b), Some(a)) if n - b <= a - n => Err(PhoneError::TooLong(e164.len())),
        (_, Some(_)) => Err(PhoneError::TooShort(e164.len())),
        _ => Err(PhoneError::TooLong(e164.len())),
    }
}

/// True when `digits` already is a valid number in the form [`normalize`] gives (E.164
/// digits, no `+`). A number stored or dialled as normalized stays as it is even where the
/// default country would read its digits differently (`3725123456`, an Estonian mobile,
/// is 10 digits like a Russian national number).
pub fn is_normalized(digits: &str) -> bool {
    memo::is_normalized(digits, is_normalized_uncached)
}

fn is_normalized_uncached(digits: &str) -> bool {
    digits.len() <= 15
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && phonenumber::parse(None, format!("+{digits}"))
            .is_ok_and(|n| n.is_valid() && normalize(digits, "").as_deref() == Ok(digits))
}

/// True for a calling code `normalize` accepts as the default country (`7`, `+44`; empty
/// means none).
pub fn is_country_code(code: &str) -> bool {
    region_of(code).is_ok()
}

/// The region whose numbering plan a national number is read under.
fn region_of(default_country: &str) -> Result<Option<Id>, PhoneError> {
    let country = default_country.trim().trim_start_matches('+');
    if country.is_empty() {
        return Ok(None);
    }
    let bad = || PhoneError::Country(default_country.to_string());
    if country.len() > 3 || !country.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = country.parse().map_err(|_| bad())?;
    // The main country of the code comes first (7 → RU before KZ, 1 → US).
    let region = DATABASE
        .region(&code)
        .and_then(|ids| ids.first().map(|s| s.to_string()))
        .ok_or_else(bad)?;
    // "001" is the metadata's id for non-geographic codes (800, 808, 870…): no
    // national numbering plan to read a number under.
    region.parse::<Id>().map(Some).map_err(|_| bad())
}

/// The digits, and whether a leading `+` was written; refuses anything else.
fn clean(raw: &str) -> Result<(bool, String), PhoneError> {
    let mut text = raw.trim();
    if text
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("tel:"))
    {
        text = text[4..].trim_start();
    }
    let mut digits = String::with_capacity(text.len());
    let mut plus = false;
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() && !plus => plus = true,
            ' ' | '\u{a0}' | '\t' | '-' | '.' | '/' | '(' | ')' | '[' | ']' => {}
            c if c.is_alphabetic() => return Err(PhoneError::Letters),
            c => return Err(PhoneError::Character(c)),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    if digits.len() > 20 {
        return Err(PhoneError::TooLong(digits.len()));
    }
    Ok((plus, digits))
}

/// The lengths of subscribers' numbers (fixed line, mobile, VoIP) in any region of
/// calling code `code`. Rarer kinds with other lengths (Russia's 14-digit toll-free
/// numbers) pass when the metadata knows them as valid.
fn possible_lengths(code: u16) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for meta in DATABASE.by_code(&code).unwrap_or_default() {
        let d = meta.descriptors();
        let all = [d.fixed_line(), d.mobile(), d.voip()];
        for desc in all.into_iter().flatten() {
            out.extend_from_slice(desc.possible_length());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// E.164's own bounds, whatever the metadata says.
fn check_e164(e164: String) -> Result<String, PhoneError> {
    match e164.len() {
        n if n > 15 => Err(PhoneError::TooLong(n)),
        n if n < 7 => Err(PhoneError::TooShort(n)),
        _ => Ok(e164),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_takes_any_stored_country_and_changes_no_result() {
        // What an operator may have saved: codes with and without `+`, nonsense, none.
        let stored = ["7", "+44", "1", "", "abc", "999", "99999999999"].map(String::from);
        warm_up(&stored);
        for (raw, country, e164) in SAME {
            assert_eq!(
                normalize(raw, country).as_deref(),
                Ok(*e164),
                "{raw} under {country}"
            );
        }
    }

    /// (raw, default country, E.164 digits)
    const SAME: &[(&str, &str, &str)] = &[
        // Russia: every usual spelling of one mobile number.
        ("+7 (999) 000-11-22", "7", "79990001122"),
        ("89990001122", "7", "79990001122"),
        ("79990001122", "7", "79990001122"),
        ("8 999 000 11 22", "7", "79990001122"),
        ("999 000-11-22", "7", "79990001122"),
        ("+79990001122", "7", "79990001122"),
        ("007 999 000 11 22", "7", "79990001122"),
        ("tel:+7-999-000-11-22", "7", "79990001122"),
        ("8-10-7-999-000-11-22", "7", "79990001122"),
        (" 7.999.000.11.22 ", "7", "79990001122"),
        ("+7 999 000 11 22", "+7", "79990001122"),
        ("+7 999 000 11 22", "", "79990001122"),
        ("79990001122", "", "79990001122"),
        ("8 (495) 123-45-67", "7", "74951234567"),
        // Kazakhstan shares +7.
        ("8 701 123 4567", "7", "77011234567"),
        // United Kingdom: trunk 0.
        ("07911 123456", "44", "447911123456"),
        ("7911 123456", "44", "447911123456"),
        ("447911123456", "44", "447911123456"),
        ("+44 (0)20 7946 0958", "44", "442079460958"),
        // Germany.
        ("030 1234567", "49", "49301234567"),
        ("+49 30 1234567", "7", "49301234567"),
        // United States / NANP.
        ("(212) 555-0100", "1", "12125550100"),
        ("1 212 555 0100", "1", "12125550100"),
        ("011 44 20 7946 0958", "1", "442079460958"),
        // Italy keeps its leading 0.
        ("06 1234 5678", "39", "390612345678"),
        ("+39 06 1234 5678", "7", "390612345678"),
        // France, Spain, Ukraine, Brazil, India.
        ("01 23 45 67 89", "33", "33123456789"),
        ("612 34 56 78", "34", "34612345678"),
        ("050 123 4567", "380", "380501234567"),
        ("(11) 91234-5678", "55", "5511912345678"),
        ("098765 43210", "91", "919876543210"),
        // International spellings under another default country.
        ("+44 20 7946 0958", "7", "442079460958"),
        ("0044 20 7946 0958", "+7", "442079460958"),
    ];

    #[test]
    fn spellings_of_one_number_become_the_same_digits() {
        for (raw, country, want) in SAME {
            assert_eq!(
                normalize(raw, country).as_deref(),
                Ok(*want),
                "{raw:?} under {country:?}"
            );
        }
    }

    /// Stored numbers can be normalized again: read without a default country always,
    /// and under the account's country when they are that country's numbers (a foreign
    /// number's digits are not recognizable without their `+`; the engine keeps what
    /// does not normalize).
    #[test]
    fn normalizing_twice_changes_nothing() {
        for (raw, country, want) in SAME {
            let once = normalize(raw, country).unwrap();
            assert_eq!(normalize(&once, "").as_deref(), Ok(*want), "{raw:?}");
            let code = country.trim_start_matches('+');
            if !code.is_empty() && want.starts_with(code) {
                assert_eq!(normalize(&once, country).as_deref(), Ok(*want), "{raw:?}");
            }
        }
    }

    #[test]
    fn letters_odd_characters_and_wrong_lengths_are_refused() {
        let cases: &[(&str, &str, PhoneError)] = &[
            ("1-800-FLOWERS", "1", PhoneError::Letters),
            ("+7 999 000 11 22 ext. 5", "7", PhoneError::Letters),
            ("Привет", "7", PhoneError::Letters),
            ("a\r\nAction: Hangup", "7", PhoneError::Letters),
            ("*100#", "7", PhoneError::Character('*')),
            ("++79990001122", "7", PhoneError::Character('+')),
            ("799+90001122", "7", PhoneError::Character('+')),
            ("7999\r\n", "7", PhoneError::TooShort(4)),
            ("  ", "7", PhoneError::Empty),
            ("- ( )", "7", PhoneError::Empty),
            ("12345", "7", PhoneError::TooShort(6)),
            ("12345", "44", PhoneError::TooShort(7)),
            ("12345", "", PhoneError::TooShort(5)),
            ("+7999000112", "7", PhoneError::TooShort(10)),
            ("+799900011223", "7", PhoneError::TooLong(12)),
            ("+7 999 000 11 22 33 44", "7", PhoneError::TooLong(15)),
            ("8999000112233", "7", PhoneError::TooLong(13)),
            ("+44 1234 5678 9012 345", "7", PhoneError::TooLong(17)),
            ("+1 212 555 01000", "7", PhoneError::TooLong(12)),
            (
                "+999 1234 5678",
                "7",
                PhoneError::UnknownCountry("999".into()),
            ),
            ("79990001122", "abc", PhoneError::Country("abc".into())),
            ("79990001122", "0044", PhoneError::Country("0044".into())),
            ("79990001122", "999", PhoneError::Country("999".into())),
        ];
        for (raw, country, want) in cases {
            assert_eq!(
                normalize(raw, country).as_ref(),
                Err(want),
                "{raw:?} under {country:?}"
            );
        }
    }

    #[test]
    fn normalized_numbers_are_recognized() {
        for (_, _, want) in SAME {
            assert!(is_normalized(want), "{want}");
        }
        for raw in [
            "89990001122",
            "9161234567",
            "07911123456",
            "2125550100",
            "100",
            "",
        ] {
            assert!(!is_normalized(raw), "{raw}");
        }
        assert!(is_normalized("3725123456"));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            normalize("12345", "7").unwrap_err().to_string(),
            "the number is too short (6 digits with the country code)"
        );
    }
}
