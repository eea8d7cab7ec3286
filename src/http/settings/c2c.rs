//! The settings page's click-to-call section (issue 8): switch the URL on or off, show
//! it with its key, rotate the key. Forms `c2c` and `c2c-rotate`, CSRF-protected by the
//! session token like every form of the page; the table is `http::c2c::store`'s.

use serde::Serialize;

use super::actions::Outcome;
use crate::app::State;
use crate::db::DbError;
use crate::http::HttpError;
use crate::http::c2c::store::{self, C2c};

/// What the section shows.
#[derive(Debug, Serialize)]
pub struct C2cView {
    pub enabled: bool,
    /// The URL to copy, with the key and placeholders; `None` before the first enable.
    pub url: Option<String>,
    pub has_public_url: bool,
}

pub fn view(state: &State, c2c: C2c) -> C2cView {
    let base = state.config.public_url();
    C2cView {
        enabled: c2c.enabled,
        url: c2c.key.map(|key| {
            format!(
                "{}/c2c?agent={{USER_ID}}&to={{PHONE}}&key={key}",
                base.unwrap_or("https://<appliance>")
            )
        }),
        has_public_url: base.is_some(),
    }
}

/// The account's settings, for the page.
pub fn load(conn: &rusqlite::Connection, id: i64) -> Result<C2c, DbError> {
    store::load(conn, id)
}

/// `c2c`: `enabled` is on or off.
pub async fn toggle(
    state: &State,
    id: i64,
    lang: &'static str,
    enabled: &str,
) -> Result<Outcome, HttpError> {
    let on = match enabled {
        "" | "0" | "false" | "off" => false,
        "1" | "true" | "on" => true,
        _ => {
            let why = super::view::tf(lang, "invalid_on_off", &[("field", "enabled")]);
            return Ok(Outcome::invalid(lang, why));
        }
    };
    let now = crate::util::now_ms();
    state
        .db
        .run(move |c| store::set_enabled(c, id, on, now))
        .await?;
    log::info!(
        "integration {id}: click-to-call URL switched {}",
        if on { "on" } else { "off" }
    );
    Ok(Outcome::ok(
        lang,
        if on {
            "click_call_enabled"
        } else {
            "click_call_disabled"
        },
    ))
}

/// `c2c-rotate`: a new key; the old one stops working now.
pub async fn rotate(state: &State, id: i64, lang: &'static str) -> Result<Outcome, HttpError> {
    let now = crate::util::now_ms();
    state.db.run(move |c| store::rotate(c, id, now)).await?;
    log::info!("integration {id}: click-to-call key rotated");
    Ok(Outcome::ok(lang, "click_call_rotated"))
}
