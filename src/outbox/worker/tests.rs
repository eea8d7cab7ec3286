use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::outbox::{BoxFuture, NewEvent, State, enqueue, list, purge, release_held, replay, show};

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Result<Reply, SendError>>>,
    sent: Mutex<Vec<(i64, String, String)>>,
    /// When each of `sent` was sent.
    sent_at: Mutex<Vec<Instant>>,
    hold: Mutex<Option<String>>,
    refresh_fails: AtomicBool,
    refreshes: AtomicUsize,
}

impl Fake {
    fn answer(&self, status: u16) {
        self.script.lock().unwrap().push_back(Ok(Reply {
            status,
            retry_after: None,
            body: format!("answer {status}"),
        }));
    }
    fn sent_ids(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }
}

impl Transport for Fake {
    fn readiness(&self, _: i64) -> BoxFuture<'_, Readiness> {
        let r = match self.hold.lock().unwrap().clone() {
            Some(why) => Readiness::Hold(why),
            None => Readiness::Ready,
        };
        Box::pin(async move { r })
    }
    fn rate_limit(&self, _: i64) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async { None })
    }
    fn send<'a>(
        &'a self,
        integration: i64,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        self.sent_at.lock().unwrap().push(Instant::now());
        self.sent.lock().unwrap().push((
            integration,
            event_id.to_string(),
            String::from_utf8(body.to_vec()).unwrap(),
        ));
        let answer = self.script.lock().unwrap().pop_front().unwrap_or(Ok(Reply {
            status: 200,
            retry_after: None,
            body: "{}".into(),
        }));
        Box::pin(async move { answer })
    }
    fn refresh(&self, _: i64) -> BoxFuture<'_, Result<(), String>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let r = if self.refresh_fails.load(Ordering::SeqCst) {
            Err("refresh token rejected".into())
        } else {
            Ok(())
        };
        Box::pin(async move { r })
    }
}

fn policy(schedule_ms: &[u64]) -> RetryPolicy {
    RetryPolicy {
        schedule: schedule_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        jitter_percent: 0,
        throttle_floor: Duration::from_millis(1),
        retry_after_max: Duration::from_secs(1),
        hold_recheck: Duration::from_secs(3600),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    db: Db,
    fake: Arc<Fake>,
    outbox: Outbox,
}

/// Inserts a bare Flowlu account row so outbox rows can refer to it.
pub(crate) fn make_integration(db: &Db, id: i64) {
    db.with_conn(|c| Ok::<_, crate::db::DbError>(crate::db::add_test_integration(c, id)?))
        .unwrap();
}

fn setup(schedule_ms: &[u64]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("a.db")).unwrap();
    for id in [1, 7] {
        make_integration(&db, id);
    }
    let fake = Arc::new(Fake::default());
    let outbox = Outbox::new(db.clone(), fake.clone(), policy(schedule_ms), 4);
    Setup {
        _dir: dir,
        db,
        fake,
        outbox,
    }
}

fn add(db: &Db, integration: i64, call: &str, n: usize) -> i64 {
    db.with_conn(|c| {
        let ev = NewEvent {
            integration_id: integration,
            call_key: call.into(),
            event_id: format!("{call}-{n}"),
            kind: "call.state".into(),
            payload: json!({"event": "call.state", "event_id": format!("{call}-{n}"), "n": n}),
        };
        Ok::<_, crate::db::DbError>(enqueue(c, &ev)?)
    })
    .unwrap()
}

fn rows(db: &Db) -> Vec<crate::outbox::Row> {
    let mut rows = db
        .with_conn(|c| Ok::<_, crate::db::DbError>(list(c, None, None, 100)?))
        .unwrap();
    rows.reverse();
    rows
}

/// Steps until nothing is due, waiting for short retry delays; bounded.
async fn drain(o: &Outbox, db: &Db) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        o.step().await;
        let pending_due = rows(db)
            .iter()
            .any(|r| r.state == State::Pending && r.next_attempt_at <= now_ms() + 50);
        if !pending_due {
            return;
        }
        assert!(Instant::now() < deadline, "outbox did not drain");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn delivers_and_records_the_attempt() {
    let s = setup(&[1]);
    let id = add(&s.db, 1, "c1", 1);
    assert_eq!(s.outbox.step().await, 1);
    assert_eq!(s.outbox.step().await, 0);
    let sent = s.fake.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&sent[0].2).unwrap();
    assert_eq!(body["event_id"], "c1-1");
    let (row, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, id)?))
            .unwrap()
            .unwrap();
    assert_eq!(row.state, State::Delivered);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(200));
    assert_eq!(attempts[0].attempt, 1);
}

#[tokio::test]
async fn one_call_is_delivered_in_order_and_does_not_block_others() {
    let s = setup(&[1, 1, 1]);
    for n in 1..=3 {
        add(&s.db, 1, "a", n);
    }
    add(&s.db, 1, "b", 1);
    s.fake.answer(503); // a-1 fails once
    s.outbox.step().await;
    // a-2 and a-3 wait behind a-1; b-1 went through.
    assert_eq!(s.fake.sent_ids(), vec!["a-1", "b-1"]);
    drain(&s.outbox, &s.db).await;
    assert_eq!(s.fake.sent_ids(), vec!["a-1", "b-1", "a-1", "a-2", "a-3"]);
    assert!(rows(&s.db).iter().all(|r| r.state == State::Delivered));
}

#[tokio::test]
async fn a_refused_event_fails_without_blocking_its_call() {
    let s = setup(&[1]);
    add(&s.db, 1, "a", 1);
    add(&s.db, 1, "a", 2);
    s.fake.answer(422);
    drain(&s.outbox, &s.db).await;
    let r = rows(&s.db);
    assert_eq!(r[0].state, State::Failed);
    assert!(r[0].last_error.as_deref().unwrap().contains("422"));
    assert_eq!(r[1].state, State::Delivered);
}

#[tokio::test]
async fn the_schedule_runs_out_into_failed() {
    let s = setup(&[1, 1]);
    add(&s.db, 1, "a", 1);
    for _ in 0..3 {
        s.fake.answer(500);
    }
    drain(&s.outbox, &s.db).await;
    let r = rows(&s.db);
    assert_eq!(r[0].state, State::Failed);
    assert_eq!(r[0].attempts, 3);
    assert!(
        r[0].last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 3")
    );
    // Replay puts it back at the start of the schedule; now it is accepted.
    let n =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(replay(c, &[], Some(1))?))
            .unwrap();
    assert_eq!(n, 1);
    drain(&s.outbox, &s.db).await;
    assert_eq!(rows(&s.db)[0].state, State::Delivered);
    assert_eq!(s.fake.sent_ids().len(), 4);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_at_once() {
    let s = setup(&[1]);
    let id = add(&s.db, 1, "a", 1);
    s.fake.answer(401);
    assert_eq!(s.outbox.step().await, 1);
    assert_eq!(s.fake.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(s.fake.sent_ids(), vec!["a-1", "a-1"]);
    let (row, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, id)?))
            .unwrap()
            .unwrap();
    assert_eq!(row.state, State::Delivered);
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(401), Some(200)]);
}

#[tokio::test]
async fn a_failed_refresh_holds_the_event_without_failing_it() {
    let s = setup(&[1]);
    add(&s.db, 1, "a", 1);
    s.fake.answer(401);
    s.fake.refresh_fails.store(true, Ordering::SeqCst);
    s.outbox.step().await;
    let r = rows(&s.db);
    assert_eq!(r[0].state, State::Pending);
    assert_eq!(r[0].attempts, 0);
    assert!(
        r[0].next_attempt_at > now_ms() + 60_000,
        "held for hold_recheck"
    );
    // Fresh tokens arrive (the iframe POST): released, delivered.
    s.db.with_conn(|c| Ok::<_, crate::db::DbError>(release_held(c, 1)?))
        .unwrap();
    drain(&s.outbox, &s.db).await;
    assert_eq!(rows(&s.db)[0].state, State::Delivered);
}

#[tokio::test]
async fn accounts_on_hold_keep_their_events() {
    let s = setup(&[1]);
    add(&s.db, 1, "a", 1);
    *s.fake.hold.lock().unwrap() = Some("needs reconnect".into());
    s.outbox.step().await;
    assert!(s.fake.sent_ids().is_empty());
    let r = rows(&s.db);
    assert_eq!(r[0].state, State::Pending);
    assert!(
        r[0].last_error
            .as_deref()
            .unwrap()
            .contains("needs reconnect")
    );
    *s.fake.hold.lock().unwrap() = None;
    s.db.with_conn(|c| Ok::<_, crate::db::DbError>(release_held(c, 1)?))
        .unwrap();
    drain(&s.outbox, &s.db).await;
    assert_eq!(s.fake.sent_ids(), vec!["a-1"]);
}

#[tokio::test]
async fn network_errors_are_retried_and_stored() {
    let s = setup(&[1, 1]);
    let id = add(&s.db, 1, "a", 1);
    s.fake
        .script
        .lock()
        .unwrap()
        .push_back(Err(SendError::Network("connection refused".into())));
    drain(&s.outbox, &s.db).await;
    let (row, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, id)?))
            .unwrap()
            .unwrap();
    assert_eq!(row.state, State::Delivered);
    assert_eq!(attempts[0].status, None);
    assert_eq!(attempts[0].error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn the_run_loop_drains_everything_and_stops() {
    let s = setup(&[1]);
    for call in ["a", "b", "c"] {
        for n in 1..=5 {
            add(&s.db, 7, call, n);
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let o = s.outbox.clone();
        tokio::spawn(async move {
            o.run(async {
                let _ = rx.await;
            })
            .await
        })
    };
    s.outbox.wake();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&s.db).iter().any(|r| r.state != State::Delivered) {
        assert!(Instant::now() < deadline, "not drained");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(()).unwrap();
    worker.await.unwrap();
    // Per call, in order.
    let ids = s.fake.sent_ids();
    for call in ["a", "b", "c"] {
        let mine: Vec<_> = ids
            .iter()
            .filter(|i| i.starts_with(call))
            .cloned()
            .collect();
        let expected: Vec<_> = (1..=5).map(|n| format!("{call}-{n}")).collect();
        assert_eq!(mine, expected);
    }
}

#[tokio::test]
async fn deliver_now_returns_the_answer() {
    let s = setup(&[1]);
    let id = add(&s.db, 1, "a", 1);
    s.fake.script.lock().unwrap().push_back(Ok(Reply {
        status: 200,
        retry_after: None,
        body: r#"{"route":{"extension":"101"}}"#.into(),
    }));
    let reply = s
        .outbox
        .deliver_now(id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(reply.body.contains("101"));
    // Already delivered: nothing left to do.
    assert!(
        s.outbox
            .deliver_now(id, Duration::from_secs(1))
            .await
            .is_none()
    );
    assert_eq!(s.outbox.step().await, 0);
}

#[tokio::test]
async fn purge_removes_only_finished_rows() {
    let s = setup(&[1]);
    add(&s.db, 1, "a", 1);
    add(&s.db, 1, "b", 1);
    s.fake.answer(200);
    s.fake.answer(404);
    s.outbox.step().await;
    add(&s.db, 1, "c", 1); // pending
    let future = now_ms() + 1000;
    let n =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(purge(c, future, false)?))
            .unwrap();
    assert_eq!(n, 1, "only the delivered row");
    let n =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(purge(c, future, true)?))
            .unwrap();
    assert_eq!(n, 1, "then the failed one");
    let left = rows(&s.db);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, State::Pending);
}

#[tokio::test]
async fn releasing_an_account_does_not_cut_retry_delays_short() {
    let s = setup(&[3_600_000]);
    add(&s.db, 1, "a", 1);
    s.fake.answer(503);
    s.outbox.step().await;
    let before = rows(&s.db)[0].next_attempt_at;
    let released =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(release_held(c, 1)?))
            .unwrap();
    assert_eq!(released, 0);
    assert_eq!(rows(&s.db)[0].next_attempt_at, before);
    assert_eq!(s.outbox.step().await, 0);
}

#[tokio::test]
async fn a_429_pauses_the_whole_account_until_retry_after() {
    let s = setup(&[1, 1, 1]);
    // Account 1: call a, and call b with two events; account 7: call c.
    add(&s.db, 1, "a", 1);
    let b1 = add(&s.db, 1, "b", 1);
    add(&s.db, 1, "b", 2);
    add(&s.db, 7, "c", 1);
    let retry_after = Duration::from_millis(300);
    s.fake.script.lock().unwrap().push_back(Ok(Reply {
        status: 429,
        retry_after: Some(retry_after),
        body: "slow down".into(),
    }));
    // One pass: a-1 gets the 429; b-1, leased with it, is put back unsent; c-1 (the
    // other account) goes out.
    assert_eq!(s.outbox.step().await, 3);
    assert_eq!(s.fake.sent_ids(), vec!["a-1", "c-1"]);
    let throttled_at = s.fake.sent_at.lock().unwrap()[0];
    let (_, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, b1)?))
            .unwrap()
            .unwrap();
    assert!(attempts.is_empty(), "b-1 was not attempted: {attempts:?}");
    // New events of the paused account wait too; the other account's still flow.
    add(&s.db, 1, "d", 1);
    add(&s.db, 7, "c", 2);
    drain(&s.outbox, &s.db).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&s.db).iter().any(|r| r.state != State::Delivered) {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}",
            rows(&s.db)
        );
        s.outbox.step().await;
        tokio::task::yield_now().await;
    }
    let sent: Vec<(i64, String, Instant)> = {
        let sent = s.fake.sent.lock().unwrap();
        let at = s.fake.sent_at.lock().unwrap();
        sent.iter()
            .zip(at.iter())
            .map(|(s, at)| (s.0, s.1.clone(), *at))
            .collect()
    };
    let ids: Vec<&str> = sent.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(ids.len(), 7, "a-1 twice, every other event once: {ids:?}");
    for (integration, id, at) in &sent[1..] {
        if *integration == 1 {
            assert!(
                *at >= throttled_at + retry_after,
                "{id} was sent before Retry-After passed"
            );
        }
    }
    // The other account did not wait: c-2 went out before account 1 resumed.
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    let first_resumed = sent
        .iter()
        .skip(1)
        .position(|s| s.0 == 1)
        .map(|p| p + 1)
        .unwrap();
    assert!(pos("c-2") < first_resumed, "{ids:?}");
    assert!(pos("b-1") < pos("b-2"), "{ids:?}");
    // Nothing lost; a-1's two attempts are stored.
    let a1 = rows(&s.db).iter().find(|r| r.event_id == "a-1").unwrap().id;
    let (_, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, a1)?))
            .unwrap()
            .unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(429), Some(200)]
    );
}

#[test]
fn a_batch_stores_outcomes_then_leases_the_next_rows_and_reads_each_account_once() {
    let s = setup(&[1]);
    let first = add(&s.db, 1, "a", 1);
    add(&s.db, 1, "a", 2);
    add(&s.db, 1, "b", 1);
    add(&s.db, 7, "c", 1);
    let mut conn = s.db.dedicated().unwrap();
    let mut loads = Vec::new();
    let flushed = store::flush(&mut conn, &[], 10, LEASE_MS, "[]", |_, id| {
        loads.push(id);
        id * 10
    })
    .unwrap();
    let leased = |f: &Flushed<i64>| {
        f.leases
            .iter()
            .map(|l| l.event_id.clone())
            .collect::<Vec<_>>()
    };
    // a-2 waits behind a-1, which is leased; accounts 1 and 7 are read once each.
    assert_eq!(leased(&flushed), vec!["a-1", "b-1", "c-1"]);
    assert_eq!(flushed.accounts, vec![(1, 10), (7, 70)]);
    assert_eq!(loads, vec![1, 7]);
    // Leased rows are not leased again.
    let again = store::flush(&mut conn, &[], 10, LEASE_MS, "[]", |_, _| 0).unwrap();
    assert!(again.leases.is_empty());
    // Storing a-1's delivery makes a-2 the call's head in the same transaction.
    let attempt = Attempt {
        attempt: 0,
        started_at: now_ms(),
        duration_ms: 1,
        status: Some(200),
        error: None,
        response_body: Some("{}".into()),
    };
    let ops = [Op::Record {
        id: first,
        attempt,
        update: Update::Delivered,
    }];
    let next = store::flush(&mut conn, &ops, 10, LEASE_MS, "[]", |_, _| 0).unwrap();
    assert_eq!(leased(&next), vec!["a-2"]);
    let (row, _, attempts) =
        s.db.with_conn(|c| Ok::<_, crate::db::DbError>(show(c, first)?))
            .unwrap()
            .unwrap();
    assert_eq!(row.state, State::Delivered);
    assert_eq!(attempts.len(), 1);
    // A paused account's rows stay where they are.
    add(&s.db, 7, "c", 2);
    let paused = store::flush(&mut conn, &[], 10, LEASE_MS, "[7]", |_, _| 0).unwrap();
    assert!(
        paused.leases.is_empty(),
        "c-2 waits behind c-1 and account 7 is paused"
    );
}
