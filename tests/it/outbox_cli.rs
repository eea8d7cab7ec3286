//! `appliance outbox list|show|retry|purge` against a real database file.

use std::process::Command;

use appliance::db::Db;
use appliance::outbox::{NewEvent, enqueue};

use crate::smoke::{BIN, init};

fn outbox(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("outbox")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn list_show_retry_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let db = Db::open(&dir.path().join("data/appliance.db")).unwrap();
    db.with_conn(|c| {
        c.execute(
            "INSERT INTO flowlu_integrations (id, platform, account_id, app_id, domain,
                 app_version, placement_id, ratelimit, webhook_secret, created_at, updated_at)
             VALUES (3, 'flowlu.com', '3', 'app', 'test.flowlu.com', '1', 'p', 16, 's', 0, 0)",
            [],
        )?;
        for (n, call) in ["call-a", "call-b"].iter().enumerate() {
            enqueue(
                c,
                &NewEvent {
                    integration_id: 3,
                    call_key: call.to_string(),
                    event_id: format!("ev-{n}"),
                    kind: "call.completed".into(),
                    payload: serde_json::json!({"event": "call.completed", "event_id": format!("ev-{n}")}),
                },
            )?;
        }
        c.execute(
            "UPDATE outbox SET state = 'failed', finished_at = 1, last_error = 'HTTP 422' WHERE event_id = 'ev-1'",
            [],
        )?;
        Ok::<_, appliance::db::DbError>(())
    })
    .unwrap();

    let (code, out, _) = outbox(&config, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("call-a") && out.contains("call-b"), "{out}");
    let (code, out, _) = outbox(&config, &["list", "--state", "failed"]);
    assert_eq!(code, 0);
    assert!(out.contains("call-b") && !out.contains("call-a"), "{out}");
    assert!(out.contains("HTTP 422"), "{out}");
    let (code, _, err) = outbox(&config, &["list", "--state", "stuck"]);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = outbox(&config, &["show", "2"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ev-1") && out.contains("\"event\":\"call.completed\""),
        "{out}"
    );
    let (code, _, err) = outbox(&config, &["show", "999"]);
    assert_eq!(code, 1);
    assert!(err.contains("999"), "{err}");

    // Retry: only failed events move; the pending one is not a failed event.
    let (code, _, err) = outbox(&config, &["retry", "1"]);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = outbox(&config, &["retry", "--all-failed"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 event"), "{out}");
    let (_, out, _) = outbox(&config, &["list", "--state", "failed"]);
    assert!(!out.contains("call-b"), "{out}");

    // Purge never touches pending events.
    let (code, _, err) = outbox(&config, &["purge", "--older-than", "soon"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = outbox(&config, &["purge", "--older-than", "0s", "--failed"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 event"), "{out}");
    let (_, out, _) = outbox(&config, &["list"]);
    assert!(out.contains("call-a") && out.contains("call-b"), "{out}");
}
