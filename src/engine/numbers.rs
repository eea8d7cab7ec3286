//! Customer numbers on call rows: once a call belongs to an account, its customer number
//! is stored and reported in the one normalized form (`calls::phone::normalize` with the
//! account's default country), so the same customer is one number in `calls.list`
//! filters and in every Flowlu event, however the PBX or trunk wrote the caller ID.
//!
//! PBX-internal numbers stay as the PBX gave them: the other party of an internal call,
//! and any number the tracker takes for an extension (`Rules::is_extension`: all digits,
//! `[calls] extension_min_digits..=max` long, not a trunk endpoint). So does anything
//! that is not a dialable number (`anonymous`, a too short service number): the row
//! keeps what the PBX said rather than nothing.

use rusqlite::{Connection, OptionalExtension};

use crate::calls::tracker::Rules;
use crate::calls::{Call, Direction, phone};

/// Normalizes `call.phone` under its account's default country, when it is a
/// customer's number.
pub fn normalize_customer(
    conn: &Connection,
    call: &mut Call,
    rules: &Rules,
) -> rusqlite::Result<()> {
    let Some(integration) = call.integration_id else {
        return Ok(()); // no account, no default country yet
    };
    // Already normalized (a click-to-call; a call restored after a restart): kept, as the
    // account's country could read a foreign number's bare digits as a national one.
    if call.direction == Direction::Internal
        || call.phone.is_empty()
        || rules.is_extension(&call.phone)
        || phone::is_normalized(&call.phone)
    {
        return Ok(());
    }
    let country: String = conn
        .prepare_cached(
            "SELECT default_country_code FROM flowlu_settings WHERE integration_id = ?1",
        )?
        .query_row([integration], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    if let Ok(e164) = phone::normalize(&call.phone, &country) {
        call.phone = e164;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(country: &str) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::db::migrate::migrate(&mut c, crate::db::migrate::MIGRATIONS).unwrap();
        crate::db::add_test_integration(&c, 1).unwrap();
        c.execute(
            "INSERT INTO flowlu_settings (integration_id, default_country_code, updated_at)
             VALUES (1, ?1, 0)",
            [country],
        )
        .unwrap();
        c
    }

    fn call(direction: Direction, phone: &str, integration: Option<i64>) -> Call {
        Call {
            id: "c1".into(),
            integration_id: integration,
            pbx_call: "p".into(),
            phone: phone.into(),
            extension: Some("101".into()),
            ..Call::new(direction, 0)
        }
    }

    #[test]
    fn customer_numbers_of_an_account_are_normalized_extensions_are_not() {
        let c = db("7");
        // Extensions are 2 to 6 digits (the defaults).
        let ext = Rules::new(&crate::config::Config::defaults().calls);
        // (direction, as the PBX gave it, account, stored)
        let cases = [
            (Direction::Incoming, "89990001122", Some(1), "79990001122"),
            (Direction::Incoming, "+79990001122", Some(1), "79990001122"),
            (Direction::Outgoing, "9990001122", Some(1), "79990001122"),
            (
                Direction::Incoming,
                "+442079460958",
                Some(1),
                "442079460958",
            ),
            // Stored already (a call restored after a restart), foreign or not: an
            // Estonian mobile's 10 digits are not read as a Russian national number.
            (Direction::Incoming, "442079460958", Some(1), "442079460958"),
            (Direction::Outgoing, "3725123456", Some(1), "3725123456"),
            (Direction::Incoming, "9161234567", Some(1), "79161234567"),
            (Direction::Incoming, "79990001122", Some(1), "79990001122"),
            (Direction::Incoming, "89990001122", None, "89990001122"),
            (Direction::Internal, "1002", Some(1), "1002"),
            (Direction::Incoming, "1002", Some(1), "1002"),
            (Direction::Incoming, "", Some(1), ""),
            (Direction::Incoming, "0911", Some(1), "0911"),
            (Direction::Incoming, "12345678", Some(1), "12345678"),
        ];
        for (direction, raw, account, want) in cases {
            let mut call = call(direction, raw, account);
            normalize_customer(&c, &mut call, &ext).unwrap();
            assert_eq!(call.phone, want, "{direction:?} {raw:?} {account:?}");
        }
    }

    #[test]
    fn bare_foreign_digits_would_read_as_national() {
        // Why normalized numbers are not normalized again.
        assert_eq!(
            phone::normalize("3725123456", "7").as_deref(),
            Ok("73725123456")
        );
    }

    #[test]
    fn the_accounts_country_decides() {
        let c = db("44");
        let mut call = call(Direction::Incoming, "07911 123456", Some(1));
        normalize_customer(
            &c,
            &mut call,
            &Rules::new(&crate::config::Config::defaults().calls),
        )
        .unwrap();
        assert_eq!(call.phone, "447911123456");
    }
}
