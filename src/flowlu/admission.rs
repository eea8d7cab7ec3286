//! Which Flowlu accounts this appliance serves: the operator's allow-list of account
//! host names (`flowlu_admissions`), the one-time claim code, and who owns the PBX.
//!
//! `[flowlu] allowed_domains` ([`super::domain`]) says which Flowlu *platforms* we ever
//! talk to (`flowlu.com`, `flowlu.ru`); an admission says which *accounts* on them
//! (`company.flowlu.com`) may open the settings page. The iframe POST of an account that
//! is not admitted is refused before anything is stored or sent for it.
//!
//! Accounts are admitted by the operator: `appliance accounts admit <domain>`,
//! `appliance --init --admit <domain>`, the claim code `--init` prints (typed into the
//! refusal page by the first admin), or, later, by an admin of the PBX owner's account
//! on the settings page.
//!
//! The PBX connection belongs to one admitted account: the one marked `pbx_owner`
//! (`appliance accounts pbx-owner`, or the account that first saved the PBX on the
//! settings page), else, when a PBX is configured, the earliest admitted account.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::domain::{allowed_suffix, is_host_name};
use super::store::{self, now};
use crate::config::FlowluConfig;
use crate::db::DbError;
use crate::secret::constant_time_eq;

/// How long a claim code printed by `--init` (or `accounts claim-code`) stays valid.
pub const CLAIM_CODE_TTL_SECS: i64 = 24 * 3600;

/// Letters and digits of a claim code (no 0/O, 1/I): 5 bits each.
const CLAIM_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters in a claim code: 100 random bits.
const CLAIM_LEN: usize = 20;

/// One admitted account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub domain: String,
    /// Marked as the PBX owner (see [`pbx_owner`] for the unmarked case).
    pub pbx_owner: bool,
    /// upgrade, init, cli, claim, settings or renamed.
    pub source: String,
    pub admitted_at: i64,
}

/// Reads an account host as the operator may type it (`https://Company.flowlu.com/`)
/// and checks it is a host under `[flowlu] allowed_domains`.
pub fn normalize(config: &FlowluConfig, input: &str) -> Result<String, String> {
    let host = input.trim().to_ascii_lowercase();
    let host = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(&host)
        .trim_end_matches('/');
    if !is_host_name(host) {
        return Err(format!(
            "{input:?} is not a Flowlu account address such as company.flowlu.com"
        ));
    }
    if allowed_suffix(host, &config.allowed_domains).is_none() {
        return Err(format!(
            "{host} is not under a Flowlu domain this appliance serves ([flowlu] \
             allowed_domains = {:?})",
            config.allowed_domains
        ));
    }
    Ok(host.to_string())
}

pub fn is_admitted(conn: &Connection, domain: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM flowlu_admissions WHERE domain = ?1",
            [domain],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Admits `domain` (already [`normalize`]d). False when it already was.
pub fn admit(conn: &Connection, domain: &str, source: &str) -> Result<bool, DbError> {
    let added = conn.execute(
        "INSERT INTO flowlu_admissions (domain, source, admitted_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (domain) DO NOTHING",
        params![domain, source, now()],
    )?;
    Ok(added == 1)
}

/// Every admitted account, earliest first.
pub fn list(conn: &Connection) -> Result<Vec<Admission>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT domain, pbx_owner, source, admitted_at FROM flowlu_admissions
         ORDER BY admitted_at, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Admission {
            domain: r.get(0)?,
            pbx_owner: r.get::<_, i64>(1)? == 1,
            source: r.get(2)?,
            admitted_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Withdraws `domain`'s admission. Its integrations keep their settings and mapping (so
/// admitting it again restores them) but lose their channel (a new webhook secret, so
/// Flowlu can no longer reach us for it) and their OAuth tokens (so we can no longer act
/// for it). `None` when it was not admitted; else how many integrations were cut off.
pub fn revoke(conn: &mut Connection, domain: &str) -> Result<Option<usize>, DbError> {
    let tx = conn.transaction()?;
    if tx.execute("DELETE FROM flowlu_admissions WHERE domain = ?1", [domain])? == 0 {
        return Ok(None);
    }
    let ids: Vec<i64> = tx
        .prepare("SELECT id FROM flowlu_integrations WHERE domain = ?1")?
        .query_map([domain], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        store::set_telephony_uuid(&tx, *id, None)?;
        tx.execute("DELETE FROM flowlu_tokens WHERE integration_id = ?1", [id])?;
        tx.execute(
            "UPDATE flowlu_integrations SET token_user_id = NULL WHERE id = ?1",
            [id],
        )?;
    }
    tx.commit()?;
    Ok(Some(ids.len()))
}

/// Makes `domain` the PBX owner. False when it is not admitted.
pub fn set_pbx_owner(conn: &mut Connection, domain: &str) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if !is_admitted(&tx, domain)? {
        return Ok(false);
    }
    tx.execute("UPDATE flowlu_admissions SET pbx_owner = 0", [])?;
    tx.execute(
        "UPDATE flowlu_admissions SET pbx_owner = 1 WHERE domain = ?1",
        [domain],
    )?;
    tx.commit()?;
    Ok(true)
}

/// The account that owns the PBX connection: the marked one; else, when a PBX is
/// `configured` (config file or settings page), the earliest admitted account; else
/// nobody (the first admitted account to save one becomes the owner).
pub fn pbx_owner(conn: &Connection, configured: bool) -> Result<Option<String>, DbError> {
    let marked: Option<String> = conn
        .query_row(
            "SELECT domain FROM flowlu_admissions WHERE pbx_owner = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if marked.is_some() || !configured {
        return Ok(marked);
    }
    Ok(list(conn)?.into_iter().next().map(|a| a.domain))
}

/// Marks `domain` as the PBX owner if no account is marked yet (the first save of a PBX
/// nobody owned). One statement, so two first saves cannot both win.
pub fn take_pbx_if_unowned(conn: &Connection, domain: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_admissions SET pbx_owner = 1 WHERE domain = ?1
         AND NOT EXISTS (SELECT 1 FROM flowlu_admissions WHERE pbx_owner = 1)",
        [domain],
    )?;
    Ok(())
}

/// An admitted account's subdomain was renamed in Flowlu (confirmed with its token): the
/// admission moves with it, so the old name (which a stranger may register later) no
/// longer gets in.
pub fn rename(conn: &Connection, old: &str, new: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_admissions SET domain = ?2, source = 'renamed' WHERE domain = ?1
         AND NOT EXISTS (SELECT 1 FROM flowlu_admissions WHERE domain = ?2)",
        params![old, new],
    )?;
    Ok(())
}

fn claim_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

/// Creates a new claim code (replacing any pending one) valid for
/// [`CLAIM_CODE_TTL_SECS`], and returns it for printing: only its hash is stored.
pub fn new_claim_code(conn: &Connection) -> Result<String, DbError> {
    let mut bytes = [0u8; CLAIM_LEN];
    rand::fill(&mut bytes[..]);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| CLAIM_ALPHABET[(b & 31) as usize] as char)
        .collect();
    let code = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    conn.execute(
        "INSERT INTO flowlu_claim_code (id, code_hash, expires_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET code_hash = excluded.code_hash,
             expires_at = excluded.expires_at",
        params![claim_hash(&code), now() + CLAIM_CODE_TTL_SECS],
    )?;
    Ok(code)
}

/// True while an unused, unexpired claim code exists.
pub fn claim_pending(conn: &Connection) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM flowlu_claim_code WHERE id = 1 AND expires_at > ?1",
            [now()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// What typing a claim code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The code was right: `domain` is admitted and the code is used up.
    Admitted,
    /// Wrong code (the pending one stays valid).
    Wrong,
    /// No code is pending (never made, used, or expired).
    NonePending,
}

/// Checks `code` against the pending claim code and, when it matches, admits `domain`
/// and deletes the code, in one transaction: a code admits one account, once.
pub fn redeem(conn: &mut Connection, code: &str, domain: &str) -> Result<Claim, DbError> {
    let tx = conn.transaction()?;
    let stored: Option<String> = tx
        .query_row(
            "SELECT code_hash FROM flowlu_claim_code WHERE id = 1 AND expires_at > ?1",
            [now()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(stored) = stored else {
        return Ok(Claim::NonePending);
    };
    if !constant_time_eq(stored.as_bytes(), claim_hash(code).as_bytes()) {
        return Ok(Claim::Wrong);
    }
    tx.execute("DELETE FROM flowlu_claim_code", [])?;
    admit(&tx, domain, "claim")?;
    tx.commit()?;
    Ok(Claim::Admitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_accepts_typed_addresses_and_refuses_others() {
        let config = crate::config::Config::defaults().flowlu;
        assert_eq!(
            normalize(&config, " https://Acme.Flowlu.com/ ").unwrap(),
            "acme.flowlu.com"
        );
        for bad in [
            "flowlu.com",
            "evil.com",
            "acme.flowlu.com:443",
            "1.2.3.4",
            "",
        ] {
            assert!(normalize(&config, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_upgrade_admits_connected_accounts_and_keeps_the_pbx_owner() {
        use crate::db::migrate::{MIGRATIONS, migrate};
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let before = MIGRATIONS.iter().position(|m| m.version == 10).unwrap();
        migrate(&mut conn, &MIGRATIONS[..before]).unwrap();
        // 1: a channel; 2: a token only; 3: opened once, never verified; 4: the PBX saver.
        for (id, domain, uuid, created) in [
            (1, "one.flowlu.com", Some("uuid-1"), 30),
            (2, "two.flowlu.com", None, 10),
            (3, "three.flowlu.com", None, 5),
            (4, "four.flowlu.com", Some("uuid-4"), 40),
        ] {
            crate::db::add_test_integration(&conn, id).unwrap();
            conn.execute(
                "UPDATE flowlu_integrations SET domain = ?2, telephony_uuid = ?3,
                     created_at = ?4 WHERE id = ?1",
                params![id, domain, uuid, created],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO flowlu_tokens (integration_id, user_id, domain, app_version,
                 access_token, refresh_token, expires_at, fast_hash, updated_at)
             VALUES (2, 'u', 'two.flowlu.com', '1', 'a', 'r', 0, 'h', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO pbx_settings (id, kind, host, port, username, secret,
                 owner_integration_id, updated_at)
             VALUES (1, 'asterisk', 'h', 5038, 'u', 's', 4, 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        let admitted: Vec<(String, bool, String)> = list(&conn)
            .unwrap()
            .into_iter()
            .map(|a| (a.domain, a.pbx_owner, a.source))
            .collect();
        let row = |d: &str, owner| (d.to_string(), owner, "upgrade".to_string());
        assert_eq!(
            admitted,
            [
                row("two.flowlu.com", false),
                row("one.flowlu.com", false),
                row("four.flowlu.com", true),
            ]
        );
    }

    #[test]
    fn admissions_owner_and_claim_code() {
        let (_dir, db) = crate::db::test_db();
        db.with_conn(|c| {
            assert_eq!(pbx_owner(c, true)?, None);
            assert!(admit(c, "a.flowlu.com", "cli")?);
            assert!(!admit(c, "a.flowlu.com", "cli")?);
            admit(c, "b.flowlu.com", "cli")?;
            // Configured PBX, nobody marked: the earliest admitted account owns it.
            assert_eq!(pbx_owner(c, true)?.as_deref(), Some("a.flowlu.com"));
            assert_eq!(pbx_owner(c, false)?, None);
            take_pbx_if_unowned(c, "b.flowlu.com")?;
            take_pbx_if_unowned(c, "a.flowlu.com")?;
            assert_eq!(pbx_owner(c, false)?.as_deref(), Some("b.flowlu.com"));
            assert!(set_pbx_owner(c, "a.flowlu.com")?);
            assert!(!set_pbx_owner(c, "x.flowlu.com")?);
            assert_eq!(pbx_owner(c, true)?.as_deref(), Some("a.flowlu.com"));

            assert_eq!(redeem(c, "AAAA", "c.flowlu.com")?, Claim::NonePending);
            let code = new_claim_code(c)?;
            assert_eq!(code.len(), 24, "{code}");
            assert!(claim_pending(c)?);
            assert_eq!(redeem(c, "AAAA-BBBB", "c.flowlu.com")?, Claim::Wrong);
            assert!(!is_admitted(c, "c.flowlu.com")?);
            let typed = code.to_lowercase().replace('-', " ");
            assert_eq!(redeem(c, &typed, "c.flowlu.com")?, Claim::Admitted);
            assert!(is_admitted(c, "c.flowlu.com")?);
            assert_eq!(redeem(c, &code, "d.flowlu.com")?, Claim::NonePending);
            assert!(!claim_pending(c)?);

            assert_eq!(revoke(c, "a.flowlu.com")?, Some(0));
            assert_eq!(revoke(c, "a.flowlu.com")?, None);
            let domains: Vec<String> = list(c)?.into_iter().map(|a| a.domain).collect();
            assert_eq!(domains, ["b.flowlu.com", "c.flowlu.com"]);
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
