//! `blocked` (migration 14) against its definition, and the lease queries' plans.

use rusqlite::Connection;
use serde_json::json;

use super::*;
use crate::outbox::NewEvent;

fn open() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::Db::open(&dir.path().join("a.db")).unwrap();
    let conn = db.dedicated().unwrap();
    for id in [1, 2] {
        crate::db::add_test_integration(&conn, id).unwrap();
    }
    (dir, conn)
}

fn ids(conn: &Connection, head: &str) -> Vec<i64> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT o.id FROM outbox o WHERE {head} ORDER BY o.id"
        ))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn the_blocked_flag_selects_exactly_the_heads_through_every_change_of_state() {
    let (_dir, conn) = open();
    let mut rng = Lcg(17);
    let mut n = 0;
    for step in 0..1500 {
        let pending = ids(&conn, "o.state = 'pending'");
        let finished = ids(&conn, "o.state != 'pending'");
        let pick = |rng: &mut Lcg, v: &[i64]| v[rng.below(v.len() as u64) as usize];
        match rng.below(10) {
            // New events of a few calls of two accounts.
            0..=3 => {
                n += 1;
                let ev = NewEvent {
                    integration_id: 1 + rng.below(2) as i64,
                    call_key: format!("call-{}", rng.below(6)),
                    event_id: format!("e{n}"),
                    kind: "call.state".into(),
                    payload: json!({}),
                };
                enqueue(&conn, &ev).unwrap();
            }
            // Delivered or failed: a head usually, any pending row sometimes.
            4..=6 if !pending.is_empty() => {
                let heads = ids(&conn, HEAD_BY_SCAN);
                let id = if rng.below(4) == 0 {
                    pick(&mut rng, &pending)
                } else {
                    pick(&mut rng, &heads)
                };
                let state = if rng.below(3) == 0 {
                    "failed"
                } else {
                    "delivered"
                };
                conn.execute(
                    "UPDATE outbox SET state = ?2, finished_at = 1 WHERE id = ?1",
                    params![id, state],
                )
                .unwrap();
            }
            // `appliance outbox replay`: one failed row, or all of them.
            7 => {
                let failed = ids(&conn, "o.state = 'failed'");
                if rng.below(3) == 0 || failed.is_empty() {
                    replay(&conn, &[], None).unwrap();
                } else {
                    replay(&conn, &[pick(&mut rng, &failed)], None).unwrap();
                }
            }
            // Rows deleted: finished ones by a purge, a pending one by hand.
            8 if !finished.is_empty() => {
                purge(&conn, 2, rng.below(2) == 0).unwrap();
            }
            9 if !pending.is_empty() => {
                conn.execute(
                    "DELETE FROM outbox WHERE id = ?1",
                    [pick(&mut rng, &pending)],
                )
                .unwrap();
            }
            _ => {}
        }
        assert_eq!(
            ids(&conn, HEAD),
            ids(&conn, HEAD_BY_SCAN),
            "after step {step}"
        );
    }
    assert!(n > 400, "the sequence exercised enough rows: {n}");
}

#[test]
fn the_migration_sets_blocked_for_rows_already_queued() {
    let (_dir, conn) = open();
    for (call, n) in [("a", 1), ("a", 2), ("b", 1), ("a", 3)] {
        let ev = NewEvent {
            integration_id: 1,
            call_key: call.into(),
            event_id: format!("{call}{n}"),
            kind: "call.state".into(),
            payload: json!({}),
        };
        enqueue(&conn, &ev).unwrap();
    }
    // As a database from before migration 14 would be, then its UPDATE again.
    conn.execute("UPDATE outbox SET blocked = 0", []).unwrap();
    let sql = include_str!("../../db/migrations/0014_outbox_ready.sql");
    let update = &sql[sql.find("UPDATE outbox SET blocked = 1").unwrap()..];
    conn.execute_batch(&update[..=update.find(';').unwrap()])
        .unwrap();
    assert_eq!(ids(&conn, HEAD), ids(&conn, HEAD_BY_SCAN));
    assert_eq!(ids(&conn, HEAD).len(), 2);
}

fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    rows.join("\n")
}

#[test]
fn leasing_reads_the_heads_index_not_every_pending_row() {
    let (_dir, conn) = open();
    for (only_init, index) in [(true, "outbox_ready_init"), (false, "outbox_ready")] {
        // The index is named in the query: SQLite refuses the query if it does not fit.
        let sql = due_heads_sql(only_init)
            .replace("?1", "5")
            .replace("?2", "8")
            .replace("?3", "'[]'");
        let plan = plan(&conn, &sql);
        assert!(plan.contains(&format!("{index} ")), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    let lease_end = plan(
        &conn,
        "SELECT min(leased_until) FROM outbox INDEXED BY outbox_leased
         WHERE leased_until IS NOT NULL AND leased_until > 5 AND state = 'pending'",
    );
    assert!(lease_end.contains("outbox_leased"), "{lease_end}");
}
