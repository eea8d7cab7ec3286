//! Customer numbers as the PBX dials them: E.164 digits without the `+`
//! (`+7 (999) 000-11-22`, `8 999 000 11 22` and `79990001122` all become `79990001122`
//! for an account whose default country code is 7).
//!
//! Pure and self-contained: [`normalize`] is the whole interface, so that a full
//! numbering-plan library can replace the rules below without touching its callers. The
//! rules are deliberately small:
//! - formatting is dropped (spaces, `-`, `.`, `/`, brackets, a `tel:` prefix); a leading
//!   `+` or `00` marks a number written internationally;
//! - letters (vanity numbers, `ext.`), `*`, `#` or anything else are refused;
//! - a number written nationally gets the default country code: for 7 a leading trunk
//!   `8` (or a leading `7` on 11 digits) is the country code already, for 1 a leading `1`
//!   on 11 digits; elsewhere a leading trunk `0` is dropped (Italy, San Marino and the
//!   Vatican keep it, as their numbering plans do), and digits that already start with
//!   the country code and are long enough are taken as written internationally;
//! - the result has 8 to 15 digits (E.164's maximum); numbers under country codes 1
//!   and 7 exactly 11.

/// Why a number cannot be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the number is empty")]
    Empty,
    #[error("the number contains letters")]
    Letters,
    #[error("the number contains {0:?}")]
    Character(char),
    #[error("the number is too short ({0} digits)")]
    TooShort(usize),
    #[error("the number is too long ({0} digits; at most 15)")]
    TooLong(usize),
    #[error("the default country code {0:?} is not 1 to 3 digits")]
    Country(String),
}

/// Countries whose national trunk `0` stays in the international number.
const KEEPS_ZERO: &[&str] = &["39", "378", "379"];

/// The number as E.164 digits (no `+`). `default_country` (digits, may be empty) is used
/// for numbers written without a country code; without one such numbers are taken as
/// already carrying it.
pub fn normalize(raw: &str, default_country: &str) -> Result<String, PhoneError> {
    let country = default_country.trim().trim_start_matches('+');
    if !country.is_empty()
        && (country.len() > 3
            || !country.bytes().all(|b| b.is_ascii_digit())
            || country.starts_with('0'))
    {
        return Err(PhoneError::Country(default_country.to_string()));
    }
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
    let e164 = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if country == "7" && digits.len() > 11 && digits.starts_with("810") {
        // The old Russian international prefix, 8-10.
        digits[3..].to_string()
    } else {
        national(&digits, country)
    };
    check_length(e164)
}

/// A number written without `+` / `00`, under `country`.
fn national(digits: &str, country: &str) -> String {
    match country {
        "" => digits.to_string(),
        "7" => match digits.len() {
            11 if digits.starts_with('8') || digits.starts_with('7') => {
                format!("7{}", &digits[1..])
            }
            _ => format!("7{digits}"),
        },
        "1" if digits.len() == 11 && digits.starts_with('1') => digits.to_string(),
        "1" => format!("1{digits}"),
        _ if digits.starts_with('0') && !KEEPS_ZERO.contains(&country) => {
            format!("{country}{}", &digits[1..])
        }
        _ if digits.starts_with(country) && digits.len() >= country.len() + 8 => digits.to_string(),
        _ => format!("{country}{digits}"),
    }
}

fn check_length(e164: String) -> Result<String, PhoneError> {
    let n = e164.len();
    let fixed = e164.starts_with('1') || e164.starts_with('7');
    match n {
        _ if n > 15 || (fixed && n > 11) => Err(PhoneError::TooLong(n)),
        _ if n < 8 || (fixed && n < 11) => Err(PhoneError::TooShort(n)),
        _ => Ok(e164),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_numbers_in_every_usual_form_are_the_same() {
        for raw in [
            "+7 (999) 000-11-22",
            "89990001122",
            "79990001122",
            "8 999 000 11 22",
            "999 000-11-22",
            "+79990001122",
            "007 999 000 11 22",
            "tel:+7-999-000-11-22",
            "8-10-7-999-000-11-22",
            " 7.999.000.11.22 ",
        ] {
            assert_eq!(normalize(raw, "7"), Ok("79990001122".into()), "{raw}");
        }
        assert_eq!(normalize("+7 999 000 11 22", ""), Ok("79990001122".into()));
        assert_eq!(normalize("79990001122", ""), Ok("79990001122".into()));
    }

    #[test]
    fn other_countries_follow_their_trunk_prefix() {
        assert_eq!(normalize("07911 123456", "44"), Ok("447911123456".into()));
        assert_eq!(normalize("7911 123456", "44"), Ok("447911123456".into()));
        assert_eq!(normalize("447911123456", "44"), Ok("447911123456".into()));
        assert_eq!(normalize("030 1234567", "49"), Ok("49301234567".into()));
        assert_eq!(normalize("(212) 555-0100", "1"), Ok("12125550100".into()));
        assert_eq!(normalize("1 212 555 0100", "1"), Ok("12125550100".into()));
        assert_eq!(normalize("06 1234 5678", "39"), Ok("390612345678".into()));
        assert_eq!(
            normalize("+44 20 7946 0958", "7"),
            Ok("442079460958".into())
        );
        assert_eq!(
            normalize("0044 20 7946 0958", "+7"),
            Ok("442079460958".into())
        );
    }

    #[test]
    fn letters_odd_characters_and_wrong_lengths_are_refused() {
        assert_eq!(normalize("1-800-FLOWERS", "1"), Err(PhoneError::Letters));
        assert_eq!(
            normalize("+7 999 000 11 22 ext. 5", "7"),
            Err(PhoneError::Letters)
        );
        assert_eq!(normalize("Привет", "7"), Err(PhoneError::Letters));
        assert_eq!(normalize("aПр", "7"), Err(PhoneError::Letters));
        assert_eq!(normalize("*100#", "7"), Err(PhoneError::Character('*')));
        assert_eq!(
            normalize("++79990001122", "7"),
            Err(PhoneError::Character('+'))
        );
        assert_eq!(
            normalize("799+90001122", "7"),
            Err(PhoneError::Character('+'))
        );
        assert_eq!(normalize("7999\r\n", "7"), Err(PhoneError::TooShort(5)));
        assert_eq!(
            normalize("a\r\nAction: Hangup", "7"),
            Err(PhoneError::Letters)
        );
        assert_eq!(normalize("  ", "7"), Err(PhoneError::Empty));
        assert_eq!(normalize("- ( )", "7"), Err(PhoneError::Empty));
        assert_eq!(normalize("12345", "7"), Err(PhoneError::TooShort(6)));
        assert_eq!(normalize("12345", "44"), Err(PhoneError::TooShort(7)));
        assert_eq!(normalize("12345", ""), Err(PhoneError::TooShort(5)));
        assert_eq!(normalize("899900011223", "7"), Err(PhoneError::TooLong(13)));
        assert_eq!(normalize("+7999000112", "7"), Err(PhoneError::TooShort(10)));
        assert_eq!(
            normalize("+44 1234 5678 9012 345", "7"),
            Err(PhoneError::TooLong(17))
        );
        assert_eq!(
            normalize("79990001122", "abc"),
            Err(PhoneError::Country("abc".into()))
        );
        assert_eq!(
            normalize("79990001122", "0044"),
            Err(PhoneError::Country("0044".into()))
        );
    }
}
