//! The settings page's delivery log (issue 15): failed and latest events with their last
//! answer, "send again" for one event, scoped to the page's own account.

use appliance::outbox::State;

use crate::delivery::{add, connected, states};
use crate::fake_flowlu::Reply;
use crate::flowlu_support::{Ctx, Rig, notice_of, session_of};
use crate::harness::eventually;

fn outbox_id(r: &Rig, event_id: &str) -> i64 {
    r.app
        .db()
        .query_row(
            "SELECT id FROM outbox WHERE event_id = ?1",
            [event_id],
            |row| row.get(0),
        )
        .unwrap()
}

fn state_of(r: &Rig, event_id: &str) -> State {
    states(r)
        .into_iter()
        .find(|(id, _)| id == event_id)
        .map(|(_, s)| s)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delivery_log_lists_failures_and_sends_one_again_for_its_own_account_only() {
    let (r, id, hook) = connected().await;
    // A second admitted account, with a failed event of its own.
    r.app.admit("other.flowlu.com");
    r.fake.add_user("tok-2", "u2", "Olga", "olga@example.com");
    let _ = r
        .session(&Ctx::new("acc-2", "other.flowlu.com", "tok-2"))
        .await;
    let other = r.integration_id("acc-2");
    add(&r, other, "theirs", "call.completed", 1);

    // Ours: one refused by Flowlu (422), one delivered.
    r.fake.queue_reply(&hook, Reply::status(422));
    add(&r, id, "c1", "call.completed", 1);
    eventually(20, "the event failed", async || {
        (state_of(&r, "c1-1") == State::Failed).then_some(())
    })
    .await;
    add(&r, id, "c2", "call.init", 1);
    eventually(20, "the second event delivered", async || {
        (state_of(&r, "c2-1") == State::Delivered).then_some(())
    })
    .await;
    // The other account's event failed with an error text that quotes a secret.
    let theirs = outbox_id(&r, "theirs-1");
    r.app
        .db()
        .execute(
            "UPDATE outbox SET state = 'failed', attempts = 3, last_status = NULL,
                    last_error = 'error sending request for url (https://other.flowlu.com/hook?api_key=S3cretS3cretS3cret0042)'
             WHERE id = ?1",
            [theirs],
        )
        .unwrap();
    // And one of ours too, to see the page never shows a secret it quotes.
    add(&r, id, "c3", "call.completed", 1);
    let c3 = outbox_id(&r, "c3-1");
    eventually(20, "c3 delivered", async || {
        (state_of(&r, "c3-1") == State::Delivered).then_some(())
    })
    .await;
    r.app
        .db()
        .execute(
            "UPDATE outbox SET state = 'failed', last_status = NULL,
                    last_error = 'error sending request for url (https://acme.flowlu.com/hook?api_key=S3cretS3cretS3cret0042)'
             WHERE id = ?1",
            [c3],
        )
        .unwrap();

    let ctx = Ctx::new("acc-1", "acme.flowlu.com", "tok-1");
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let s = session_of(&page.body);
    let ours = outbox_id(&r, "c1-1");
    let log = &page.body[page.body.find("id=\"events-failures\"").unwrap()..];
    let log = &log[..log.find("</table>").unwrap()];
    assert!(log.contains(&format!("id=\"resend-{ours}\"")), "{log}");
    assert!(log.contains("<code>c1</code>"), "{log}");
    assert!(log.contains("HTTP 422"), "the last answer: {log}");
    assert!(
        !log.contains(&format!("resend-{theirs}")),
        "only its own: {log}"
    );
    assert!(
        !log.contains("c2"),
        "a delivered event is no failure: {log}"
    );
    let recent = &page.body[page.body.find("id=\"events-recent\"").unwrap()..];
    let recent = &recent[..recent.find("</table>").unwrap()];
    assert!(recent.contains("<code>c2</code>"), "{recent}");
    assert!(recent.contains("delivered"), "{recent}");
    assert!(!recent.contains("theirs"), "{recent}");
    assert!(
        !page.body.contains("S3cretS3cret"),
        "a secret quoted in an error is masked"
    );
    assert!(!page.body.contains("tok-1"), "never the account's token");
    assert!(
        page.body
            .contains("<a href=\"#delivery-log\" id=\"summary-failed\">Failed: 2</a>"),
        "the summary's failed count links to the log: {}",
        page.body
    );

    // Another account's event id: 404, and it stays failed, unsent.
    let sent_before = r.fake.count(&hook);
    let refused = r
        .act("events-resend", &s, &[("event", &theirs.to_string())])
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(state_of(&r, "theirs-1"), State::Failed);
    let unknown = r.act("events-resend", &s, &[("event", "999999")]).await;
    assert_eq!(unknown.status, 404);
    let junk = r.act("events-resend", &s, &[("event", "x")]).await;
    assert_eq!(junk.status, 422, "{}", junk.body);
    // Without a valid session: 403, nothing changes (the form's CSRF protection).
    let forged = r
        .post_form(
            "/integration/settings/events-resend",
            &[("session", "v1.forged"), ("event", &ours.to_string())],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(state_of(&r, "c1-1"), State::Failed);
    assert_eq!(r.fake.count(&hook), sent_before);

    // Its own failed event: redirect to the page, queued again, delivered.
    let resent = r
        .act(
            "events-resend",
            &s,
            &[("event", &ours.to_string()), ("lang", "ru")],
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(
        notice_of(&resent.body).as_deref(),
        Some("Событие снова поставлено в очередь.")
    );
    eventually(20, "the event delivered", async || {
        (state_of(&r, "c1-1") == State::Delivered).then_some(())
    })
    .await;
    assert_eq!(state_of(&r, "c3-1"), State::Failed, "only the one named");
    assert_eq!(state_of(&r, "theirs-1"), State::Failed);
    // Sent again once it is no longer failed: a conflict, nothing sent.
    let sent = r.fake.count(&hook);
    let again = r
        .act("events-resend", &s, &[("event", &ours.to_string())])
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        notice_of(&again.body)
            .unwrap()
            .contains("not failed any more")
    );
    assert_eq!(r.fake.count(&hook), sent);
}
