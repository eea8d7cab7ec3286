//! SQL for the `recording_links` table (migration 5). Only the SHA-256 of a link's token
//! is stored: the database, or a backup of it, hands out no working links.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest;

/// One published link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub call_id: String,
    /// Canonical path of the file when it was published.
    pub path: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

pub type TokenHash = [u8; 32];

/// `expires_at` of a link that never expires (`[recordings] url_ttl = "0s"`): it lives
/// as long as the file, until revoked.
pub const NEVER: i64 = i64::MAX;

/// Deletes the links of `call_id` (every call's with `None`): their URLs answer 404 from
/// then on. Returns how many.
pub fn revoke(conn: &Connection, call_id: Option<&str>) -> rusqlite::Result<usize> {
    match call_id {
        Some(call) => conn.execute("DELETE FROM recording_links WHERE call_id = ?1", [call]),
        None => conn.execute("DELETE FROM recording_links", []),
    }
}

pub fn token_hash(token: &str) -> TokenHash {
    sha2::Sha256::digest(token.as_bytes()).into()
}

pub fn insert(conn: &Connection, hash: &TokenHash, link: &Link) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO recording_links
            (token_hash, call_id, path, content_type, size, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            &hash[..],
            link.call_id,
            link.path,
            link.content_type,
            link.size,
            link.created_at,
            link.expires_at
        ],
    )?;
    Ok(())
}

/// The link whose token hashes to `hash`. The lookup compares hashes, not tokens, so its
/// timing tells a guesser nothing about any real token; the hash read back is compared
/// again in constant time.
pub fn find(conn: &Connection, hash: &TokenHash) -> rusqlite::Result<Option<Link>> {
    let row = conn
        .query_row(
            "SELECT token_hash, call_id, path, content_type, size, created_at, expires_at
             FROM recording_links WHERE token_hash = ?1",
            [&hash[..]],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    Link {
                        call_id: r.get(1)?,
                        path: r.get(2)?,
                        content_type: r.get(3)?,
                        size: r.get(4)?,
                        created_at: r.get(5)?,
                        expires_at: r.get(6)?,
                    },
                ))
            },
        )
        .optional()?;
    Ok(row.and_then(|(stored, link)| {
        crate::secret::constant_time_eq(&stored, &hash[..]).then_some(link)
    }))
}

/// Deletes links that expired before `before_ms`; returns how many.
pub fn sweep(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM recording_links WHERE expires_at < ?1",
        [before_ms],
    )
}

/// Links of one call (newest first), for operators and tests.
pub fn for_call(conn: &Connection, call_id: &str) -> rusqlite::Result<Vec<Link>> {
    let mut stmt = conn.prepare_cached(
        "SELECT call_id, path, content_type, size, created_at, expires_at
         FROM recording_links WHERE call_id = ?1 ORDER BY created_at DESC",
    )?;
    stmt.query_map([call_id], |r| {
        Ok(Link {
            call_id: r.get(0)?,
            path: r.get(1)?,
            content_type: r.get(2)?,
            size: r.get(3)?,
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate::migrate(&mut conn, crate::db::migrate::MIGRATIONS).unwrap();
        conn
    }

    fn link(call: &str, expires_at: i64) -> Link {
        Link {
            call_id: call.into(),
            path: "/var/spool/asterisk/monitor/a.wav".into(),
            content_type: "audio/wav".into(),
            size: 44,
            created_at: 1,
            expires_at,
        }
    }

    #[test]
    fn links_are_found_by_the_hash_of_their_token_only() {
        let conn = db();
        let token = crate::secret::random_token(32);
        insert(&conn, &token_hash(&token), &link("c1", 100)).unwrap();
        assert_eq!(
            find(&conn, &token_hash(&token)).unwrap(),
            Some(link("c1", 100))
        );
        assert_eq!(find(&conn, &token_hash("forged")).unwrap(), None);
        // The token itself is nowhere in the table.
        let stored: i64 = conn
            .query_row(
                "SELECT count(*) FROM recording_links WHERE call_id = ?1 OR path = ?1 \
                 OR token_hash = ?1",
                [&token],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, 0);
        assert_eq!(for_call(&conn, "c1").unwrap().len(), 1);
    }

    #[test]
    fn sweep_removes_only_links_expired_before_the_cut() {
        let conn = db();
        insert(&conn, &token_hash("a"), &link("c1", 100)).unwrap();
        insert(&conn, &token_hash("b"), &link("c2", 200)).unwrap();
        assert_eq!(sweep(&conn, 150).unwrap(), 1);
        assert_eq!(find(&conn, &token_hash("a")).unwrap(), None);
        assert!(find(&conn, &token_hash("b")).unwrap().is_some());
    }
}
