//! The settings page's "Flowlu accounts on this appliance" section (issue 12): shown only
//! to the account that owns the PBX (the operator's own account), whose admins may admit
//! more accounts here (form `accounts-admit`), as `appliance accounts admit` does.
//! Revoking stays on the command line.

use serde::Serialize;

use super::actions::{Fields, Outcome, field};
use crate::app::State;
use crate::db::DbError;
use crate::flowlu::{admission, store};
use crate::http::HttpError;

#[derive(Debug, Default, Serialize)]
pub struct AccountsView {
    /// False for every account but the PBX owner: it sees no other account's name.
    pub shown: bool,
    pub admitted: Vec<String>,
}

/// True when `id`'s account owns the PBX (marked, or the earliest admitted).
fn is_operator(conn: &rusqlite::Connection, id: i64) -> Result<bool, DbError> {
    let Some(integration) = store::integration(conn, id)? else {
        return Ok(false);
    };
    Ok(admission::is_admitted(conn, &integration.domain)?
        && admission::pbx_owner(conn, true)?.as_deref() == Some(integration.domain.as_str()))
}

pub fn view(conn: &rusqlite::Connection, id: i64) -> Result<AccountsView, DbError> {
    if !is_operator(conn, id)? {
        return Ok(AccountsView::default());
    }
    Ok(AccountsView {
        shown: true,
        admitted: admission::list(conn)?
            .into_iter()
            .map(|a| a.domain)
            .collect(),
    })
}

/// `accounts-admit`: admits the typed account; only the PBX owner's admins may.
pub async fn admit(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let domain = match admission::normalize(&state.config.flowlu, field(fields, "domain")) {
        Ok(domain) => domain,
        Err(why) => {
            log::info!("integration {id}: account not admitted: {why}");
            let why = super::view::tf(
                lang,
                "invalid_account_domain",
                &[
                    ("domain", field(fields, "domain").trim()),
                    ("allowed", &state.config.flowlu.allowed_domains.join(", ")),
                ],
            );
            return Ok(Outcome::invalid(lang, why));
        }
    };
    let admitted = state
        .db
        .run(move |c| {
            if !is_operator(c, id)? {
                return Ok(None);
            }
            let added = admission::admit(c, &domain, "settings")?;
            if added {
                log::info!("integration {id} admitted {domain} on the settings page");
            }
            Ok::<_, DbError>(Some(added))
        })
        .await?;
    Ok(match admitted {
        None => Outcome::forbidden(lang, "accounts_not_owner"),
        Some(true) => Outcome::ok(lang, "accounts_admitted"),
        Some(false) => Outcome::ok(lang, "accounts_already"),
    })
}
