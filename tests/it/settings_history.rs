//! The settings page's call history card (issue 14): importing the last N days from the
//! PBX's records in the background, one import at a time, its progress, the last runs,
//! and only for the account that owns the PBX.

use std::time::Duration;

use appliance::flowlu::store::IncomingRouting;

use crate::call_events::setup;
use crate::cdr_backfill::{append_csv, cdr_config, fixture_ms, fixture_rows};
use crate::fake_flowlu::Reply;
use crate::fake_pbx::Fake;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::flowlu_support::{Ctx, Rig, notice_of, session_of};
use crate::harness::eventually;

/// The text of the element with `id` (up to its first `<`).
fn text_of(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let Some(start) = page.find(&marker) else {
        return String::new();
    };
    let start = page[start..].find('>').unwrap() + start + 1;
    let end = page[start..].find('<').unwrap() + start;
    page[start..end].to_string()
}

fn pending_heads(r: &Rig) -> Vec<i64> {
    let db = r.app.db();
    let mut stmt = db
        .prepare(
            "SELECT min(id) FROM outbox WHERE state = 'pending' AND kind = 'call.init'
             GROUP BY call_key",
        )
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The PBX-owning account of `call_events::setup`, restarted with `[cdr]` reading a
/// Master.csv that holds `scenarios` as calls made an hour ago (never seen live), and
/// `edit` applied. Returns the rig, the account id, its event hook and the CSV's dir.
pub(crate) async fn owner_with_records(
    scenarios: &[&str],
    edit: impl FnOnce(&mut appliance::Config) + Send + 'static,
) -> (Rig, i64, String, tempfile::TempDir, Fake) {
    let fake: Fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    let hour_ago = appliance::outbox::now_ms() - 3_600_000;
    let shift = (hour_ago - fixture_ms("2026-11-23 06:46:08")) / 1000;
    for scenario in scenarios {
        append_csv(&csv, &fixture_rows(scenario), shift);
    }
    let Rig { app, fake: flowlu } = r;
    let app = app
        .restart_with(move |c| {
            cdr_config(c, &csv);
            edit(c);
        })
        .await;
    (Rig { app, fake: flowlu }, id, hook, dir, fake)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pbx_owner_imports_the_last_days_once_with_progress_on_the_page() {
    let scenarios = [
        "sip-inbound-answered",
        "sip-inbound-missed",
        "sip-agent-to-agent",
    ];
    // A refused first attempt waits an hour: the import stays "running".
    let (r, _id, hook, _dir, _pbx) = owner_with_records(&scenarios, |c| {
        c.outbox.retry_schedule = vec!["1h".into()];
    })
    .await;
    assert_eq!(
        r.count("SELECT count(*) FROM calls"),
        0,
        "nothing back-filled"
    );
    r.fake.set_reply(&hook, Reply::status(503));

    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let s = session_of(&page.body);
    assert_eq!(text_of(&page.body, "history-last-import"), "never");
    assert!(
        page.body
            .contains("<option value=\"30\">the last 30 days</option>")
    );

    let junk = r.act("history-import", &s, &[("days", "3")]).await;
    assert_eq!(junk.status, 422, "{}", junk.body);
    assert_eq!(r.count("SELECT count(*) FROM cdr_runs"), 0);

    let started = r.act("history-import", &s, &[("days", "1")]).await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(
        notice_of(&started.body)
            .unwrap()
            .contains("The import started"),
        "{}",
        started.body
    );
    // The calls are queued; Flowlu answers 503, so none is sent yet.
    eventually(20, "three calls queued, none sent", async || {
        let page = r.act("history-status", &s, &[]).await;
        (text_of(&page.body, "history-progress") == "0 of 3 calls sent to Flowlu"
            && pending_heads(&r).len() == 3
            && r.fake.count(&hook) >= 3)
            .then_some(page)
    })
    .await;
    // A second click while it runs says so and starts nothing.
    let again = r.act("history-import", &s, &[("days", "30")]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let notice = notice_of(&again.body).unwrap();
    assert!(notice.contains("already running"), "{notice}");
    assert!(notice.contains("0 of 3"), "{notice}");
    assert_eq!(r.count("SELECT count(*) FROM cdr_runs"), 1);
    assert!(
        again.body.contains("id=\"history-status\""),
        "the page refreshes while it runs"
    );

    // Flowlu answers again: every call is sent, and the card says what was imported.
    r.fake.clear_reply(&hook);
    for head in pending_heads(&r) {
        r.app
            .state
            .outbox
            .deliver_now(head, Duration::from_secs(10))
            .await;
    }
    let done = eventually(20, "all imported calls sent", async || {
        let page = r.act("history-status", &s, &[]).await;
        (text_of(&page.body, "history-progress") == "3 of 3 calls sent to Flowlu").then_some(page)
    })
    .await;
    let last = text_of(&done.body, "history-last-import");
    assert!(last.ends_with("UTC · calls found: 3 · sent: 3"), "{last}");
    assert!(
        !done.body.contains("id=\"history-status\""),
        "no more refreshing once done"
    );
    // Importing again sends nothing twice.
    let second = r.act("history-import", &s, &[("days", "7")]).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let page = eventually(20, "the second import finished", async || {
        let page = r.act("history-status", &s, &[]).await;
        let nothing = "Flowlu already has every call of the period: nothing to send.";
        (text_of(&page.body, "history-progress") == nothing).then_some(page)
    })
    .await;
    assert!(
        text_of(&page.body, "history-last-import").ends_with("calls found: 3 · sent: 0"),
        "{}",
        page.body
    );
    assert_eq!(
        r.fake
            .requests_to(&hook)
            .iter()
            .filter(|q| q.json()["event"] == "call.completed")
            .count(),
        3
    );

    // Another admitted account sees the card but may not start an import.
    r.app.admit("other.flowlu.com");
    r.fake.add_user("tok-2", "u2", "Olga", "olga@example.com");
    let other = r
        .open(&Ctx::new("acc-2", "other.flowlu.com", "tok-2"))
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(other.body.contains("id=\"history-not-owner\""));
    assert!(!other.body.contains("id=\"history-import\""));
    let refused = r
        .act("history-import", &session_of(&other.body), &[("days", "1")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(r.count("SELECT count(*) FROM cdr_runs"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_call_record_source_the_card_says_so_and_imports_nothing() {
    let r = crate::flowlu_support::rig(|_| {}).await;
    r.fake.add_user("tok", "7", "Ann", "ann@example.com");
    let page = r.open(&Ctx::new("100", "acme.flowlu.com", "tok")).await;
    assert!(page.body.contains("id=\"history-not-configured\""));
    let s = session_of(&page.body);
    let refused = r.act("history-import", &s, &[("days", "7")]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(notice_of(&refused.body).unwrap().contains("[cdr] source"));
    assert_eq!(r.count("SELECT count(*) FROM cdr_runs"), 0);
}
