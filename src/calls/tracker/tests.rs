//! Unit tests of the tracker's rules on hand-made event sequences. The per-fixture table
//! (every recorded scenario through the real adapters) is in tests/it/calls_table.rs.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::calls::CallStatus;
use crate::pbx::Transfer;

pub(super) fn at(secs: u64, event: Event) -> PbxEvent {
    PbxEvent {
        at: UNIX_EPOCH + Duration::from_secs(secs),
        pbx_time: true,
        event,
    }
}

pub(super) fn leg(
    id: &str,
    call: &str,
    name: &str,
    origin: Origin,
    context: &str,
    exten: &str,
) -> Event {
    Event::ChannelCreated(Channel {
        id: id.into(),
        call: call.into(),
        name: name.into(),
        caller_number: if origin == Origin::Inbound && name.contains("trunk") {
            "79161234567".into()
        } else {
            String::new()
        },
        exten: exten.into(),
        context: context.into(),
        origin,
        state: ChannelState::Down,
        local: false,
        endpoint: crate::pbx::asterisk_endpoint(name),
        ..Channel::default()
    })
}

/// A customer calling in on the trunk (to the line 74950000000).
pub(super) fn customer_in(id: &str, call: &str) -> Event {
    leg(
        id,
        call,
        "PJSIP/trunk-00000001",
        Origin::Inbound,
        "from-trunk",
        "74950000000",
    )
}

/// The PBX ringing an employee's phone, `name` such as `PJSIP/101-00000002`.
pub(super) fn agent_out(id: &str, call: &str, name: &str) -> Event {
    leg(id, call, name, Origin::Outbound, "agents", "s")
}

pub(super) fn tracker() -> Tracker {
    Tracker::new(&crate::config::Config::defaults().calls)
}

pub(super) fn run(t: &mut Tracker, events: Vec<PbxEvent>) -> Vec<Update> {
    events.iter().flat_map(|e| t.handle(e)).collect()
}

pub(super) fn hangup(id: &str, cause: u16) -> Event {
    Event::HungUp {
        channel: id.into(),
        cause,
        cause_text: String::new(),
    }
}

#[test]
fn an_attended_transfer_reports_the_employee_who_finally_talked() {
    let mut t = tracker();
    let updates = run(
        &mut t,
        vec![
            // Customer calls in, 100 answers.
            at(10, customer_in("c", "L1")),
            at(10, agent_out("a100", "L1", "PJSIP/100-00000002")),
            at(
                12,
                Event::Answered {
                    channel: "a100".into(),
                },
            ),
            // 100 consults 101: an internal call of its own.
            at(
                20,
                leg(
                    "k100",
                    "L2",
                    "PJSIP/100-00000003",
                    Origin::Inbound,
                    "agents",
                    "101",
                ),
            ),
            at(20, agent_out("k101", "L2", "PJSIP/101-00000004")),
            at(
                22,
                Event::Answered {
                    channel: "k101".into(),
                },
            ),
            // 100 completes the transfer: the customer now talks to 101.
            at(
                30,
                Event::Transferred(Transfer {
                    kind: TransferKind::Attended,
                    success: true,
                    transferer: Some("a100".into()),
                    transferee: Some("c".into()),
                    second_transferer: Some("k100".into()),
                    target: Some("k101".into()),
                    exten: None,
                    context: None,
                    bridge: None,
                    orig_bridge: None,
                    second_bridge: None,
                }),
            ),
            at(30, hangup("a100", 16)),
            at(30, hangup("k100", 16)),
            at(60, hangup("c", 16)),
            at(60, hangup("k101", 16)),
        ],
    );
    let completed: Vec<&Call> = updates
        .iter()
        .filter(|u| u.emit == vec![Emit::Completed])
        .map(|u| &u.call)
        .collect();
    assert_eq!(
        completed.len(),
        2,
        "the consultation and the customer's call"
    );
    let consult = completed
        .iter()
        .find(|c| c.direction == Direction::Internal)
        .unwrap();
    assert_eq!(
        (consult.extension.as_deref(), consult.phone.as_str()),
        (Some("100"), "101")
    );
    let customer = completed
        .iter()
        .find(|c| c.direction == Direction::Incoming)
        .unwrap();
    assert_eq!(customer.status, Some(CallStatus::Answered));
    assert_eq!(customer.extension.as_deref(), Some("101"));
    assert_eq!(customer.phone, "79161234567");
    assert_eq!((customer.wait, customer.duration), (Some(2), Some(48)));
    assert_eq!(t.live_calls(), 0);
}

#[test]
fn an_originate_that_is_not_ours_is_reported_once_it_dials_someone() {
    // Another tool's click-to-call: the PBX rings 100, who answers; the dialplan then
    // dials the customer on the trunk (whose channel shows no number: the dial string
    // does).
    let mut t = tracker();
    let quiet = run(
        &mut t,
        vec![
            at(1, agent_out("x", "X", "PJSIP/100-00000009")),
            at(
                2,
                Event::Ringing {
                    channel: "x".into(),
                },
            ),
            at(
                4,
                Event::Answered {
                    channel: "x".into(),
                },
            ),
        ],
    );
    assert_eq!(quiet, vec![], "ringing an employee alone is not a call yet");
    let updates = run(
        &mut t,
        vec![
            at(
                5,
                leg(
                    "c",
                    "X",
                    "PJSIP/trunk-0000000b",
                    Origin::Outbound,
                    "agents",
                    "s",
                ),
            ),
            at(
                5,
                Event::DialBegin {
                    caller: Some("x".into()),
                    callee: "c".into(),
                    dial_string: "89161234567@trunk".into(),
                    exten: String::new(),
                },
            ),
            at(
                9,
                Event::Answered {
                    channel: "c".into(),
                },
            ),
            at(20, hangup("c", 16)),
            at(20, hangup("x", 16)),
        ],
    );
    let emits: Vec<Emit> = updates.iter().map(|u| u.emit[0]).collect();
    assert_eq!(emits, [Emit::Init, Emit::Connected, Emit::Completed]);
    let init = &updates[0].call;
    assert_eq!(
        (
            init.direction,
            init.phone.as_str(),
            init.extension.as_deref()
        ),
        (Direction::Outgoing, "89161234567", Some("100"))
    );
    assert_eq!(updates[2].call.status, Some(CallStatus::Answered));

    // One that dials a colleague is an internal call.
    let updates = run(
        &mut t,
        vec![
            at(
                30,
                leg(
                    "y",
                    "Y",
                    "PJSIP/100-0000000c",
                    Origin::Outbound,
                    "agents",
                    "s",
                ),
            ),
            at(
                31,
                Event::Answered {
                    channel: "y".into(),
                },
            ),
            at(
                31,
                leg(
                    "z",
                    "Y",
                    "PJSIP/101-0000000d",
                    Origin::Outbound,
                    "agents",
                    "s",
                ),
            ),
            at(
                31,
                Event::DialBegin {
                    caller: Some("y".into()),
                    callee: "z".into(),
                    dial_string: "101".into(),
                    exten: String::new(),
                },
            ),
        ],
    );
    assert_eq!(updates[0].emit, vec![Emit::Init]);
    assert_eq!(
        (updates[0].call.direction, updates[0].call.phone.as_str()),
        (Direction::Internal, "101")
    );

    // One that never dials anyone (a wake-up call, paging, an unanswered originate) is
    // never reported.
    let updates = run(
        &mut t,
        vec![
            at(
                40,
                leg(
                    "w",
                    "W",
                    "PJSIP/102-0000000e",
                    Origin::Outbound,
                    "agents",
                    "s",
                ),
            ),
            at(
                41,
                Event::Ringing {
                    channel: "w".into(),
                },
            ),
            at(60, hangup("w", 19)),
        ],
    );
    assert!(updates.is_empty());
}

#[test]
fn a_resync_closes_calls_that_ended_while_away_and_keeps_live_ones() {
    let mut t = tracker();
    run(
        &mut t,
        vec![
            at(
                1,
                leg(
                    "c1",
                    "A",
                    "PJSIP/trunk-00000001",
                    Origin::Inbound,
                    "from-trunk",
                    "1",
                ),
            ),
            at(
                1,
                leg(
                    "c2",
                    "B",
                    "PJSIP/trunk-00000002",
                    Origin::Inbound,
                    "from-trunk",
                    "2",
                ),
            ),
        ],
    );
    let snapshot = vec![ChannelSnapshot {
        id: "c2".into(),
        call: "B".into(),
        name: "PJSIP/trunk-00000002".into(),
        state: ChannelState::Ring,
        ..ChannelSnapshot::default()
    }];
    let updates = run(&mut t, vec![at(50, Event::Resync { channels: snapshot })]);
    assert_eq!(updates.len(), 1);
    let gone = &updates[0].call;
    assert_eq!(gone.status, Some(CallStatus::Missed));
    assert_eq!(gone.ended_at, Some(50_000));
    assert!(
        gone.hangup_cause
            .as_deref()
            .unwrap()
            .contains("PBX connection was down")
    );
    assert_eq!(t.live_calls(), 1);
}

#[test]
fn a_restored_call_is_closed_by_the_first_resync_unless_the_pbx_still_has_it() {
    let mut t = tracker();
    let mut call = Call {
        id: "c-restored".into(),
        integration_id: Some(1),
        crm_call_id: None,
        pbx_call: "P1".into(),
        direction: Direction::Incoming,
        phone: "79161234567".into(),
        line: String::new(),
        extension: Some("100".into()),
        user_id: None,
        state: CallState::Connected,
        status: None,
        started_at: 1_000,
        answered_at: Some(3_000),
        ended_at: None,
        duration: None,
        wait: None,
        hangup_cause: None,
        recording_path: None,
        backfilled: false,
        queue: None,
    };
    t.restore(call.clone());
    call.id = "c-still-up".into();
    call.pbx_call = "P2".into();
    t.restore(call);
    let snapshot = vec![ChannelSnapshot {
        id: "leg".into(),
        call: "P2".into(),
        name: "PJSIP/trunk-00000002".into(),
        state: ChannelState::Up,
        context: "from-trunk".into(),
        ..ChannelSnapshot::default()
    }];
    let updates = run(&mut t, vec![at(10, Event::Resync { channels: snapshot })]);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].call.id, "c-restored");
    assert_eq!(updates[0].call.status, Some(CallStatus::Answered));
    assert_eq!(updates[0].call.duration, Some(7));
    assert_eq!(t.call_of_channel("leg").unwrap().id, "c-still-up");
}

#[test]
fn busy_and_cancel_are_told_apart_for_outgoing_calls() {
    for (status, expected) in [
        (DialStatus::Busy, CallStatus::Busy),
        (DialStatus::NoAnswer, CallStatus::NoAnswer),
        (DialStatus::Cancel, CallStatus::Canceled),
        (DialStatus::Congestion, CallStatus::Failed),
    ] {
        let mut t = tracker();
        let updates = run(
            &mut t,
            vec![
                at(
                    1,
                    leg(
                        "a",
                        "L",
                        "PJSIP/100-00000001",
                        Origin::Inbound,
                        "agents",
                        "89161234567",
                    ),
                ),
                at(
                    1,
                    leg(
                        "c",
                        "L",
                        "PJSIP/trunk-00000002",
                        Origin::Outbound,
                        "agents",
                        "s",
                    ),
                ),
                at(
                    5,
                    Event::DialEnd {
                        caller: Some("a".into()),
                        callee: "c".into(),
                        status: status.clone(),
                    },
                ),
                at(5, hangup("c", 16)),
                at(6, hangup("a", 16)),
            ],
        );
        let last = updates.last().unwrap();
        assert_eq!(last.emit, vec![Emit::Completed]);
        assert_eq!(last.call.direction, Direction::Outgoing);
        assert_eq!(last.call.phone, "89161234567");
        assert_eq!(last.call.status, Some(expected), "{status:?}");
    }
}

#[test]
fn agent_busy_and_customer_channel_answer_queries() {
    let mut t = tracker();
    run(
        &mut t,
        vec![
            at(
                1,
                leg(
                    "c",
                    "L",
                    "PJSIP/trunk-00000001",
                    Origin::Inbound,
                    "from-trunk",
                    "1",
                ),
            ),
            at(1, agent_out("a", "L", "PJSIP/100-00000002")),
        ],
    );
    assert!(t.agent_busy("100"));
    assert!(!t.agent_busy("101"));
    let id = t.call_of_channel("a").unwrap().id.clone();
    assert_eq!(t.customer_channel(&id).as_deref(), Some("c"));
}

#[test]
fn the_outside_line_prefix_is_not_part_of_the_customers_number() {
    let mut calls = crate::config::Config::defaults().calls;
    calls.outbound_prefixes = vec!["9".into()];
    let mut t = Tracker::new(&calls);
    let updates = run(
        &mut t,
        vec![at(
            1,
            leg(
                "a",
                "L",
                "PJSIP/100-00000001",
                Origin::Inbound,
                "agents",
                "989161234567",
            ),
        )],
    );
    assert_eq!(updates[0].emit, vec![Emit::Init]);
    assert_eq!(updates[0].call.direction, Direction::Outgoing);
    assert_eq!(updates[0].call.phone, "89161234567");
    // Internal calls keep what was dialled, prefix-shaped or not.
    let updates = run(
        &mut t,
        vec![at(
            2,
            leg(
                "b",
                "M",
                "PJSIP/100-00000002",
                Origin::Inbound,
                "agents",
                "9101",
            ),
        )],
    );
    assert!(
        updates.is_empty(),
        "reported once the PBX dials 9101 for it"
    );
    let call = t.call_of_channel("b").unwrap();
    assert_eq!(
        (call.direction, call.phone.as_str()),
        (Direction::Internal, "9101")
    );
}

#[test]
fn a_call_starting_between_login_and_the_resync_list_is_kept_whole() {
    // Logged in; before the live-channel list is complete, a customer's channel appears
    // (Down, so not yet placed) and another starts ringing in. The list, taken before
    // them, names neither: they did not end while the connection was down.
    let connected = Event::Connected {
        pbx: crate::config::PbxType::Asterisk,
        server: "127.0.0.1:5038".into(),
    };
    let mut t = tracker();
    let mut updates = run(
        &mut t,
        vec![
            at(1, connected),
            at(2, customer_in("c1", "A")),
            at(2, customer_in("c2", "B")),
            at(
                2,
                Event::CallingIn {
                    channel: "c2".into(),
                },
            ),
            at(3, Event::Resync { channels: vec![] }),
        ],
    );
    assert!(
        updates.iter().all(|u| u.call.ended_at.is_none()),
        "{updates:?}"
    );
    updates.extend(run(
        &mut t,
        vec![
            at(
                4,
                Event::CallingIn {
                    channel: "c1".into(),
                },
            ),
            at(5, agent_out("a1", "A", "PJSIP/101-00000002")),
            at(
                5,
                Event::DialBegin {
                    caller: Some("c1".into()),
                    callee: "a1".into(),
                    dial_string: "101".into(),
                    exten: String::new(),
                },
            ),
            at(
                9,
                Event::DialEnd {
                    caller: Some("c1".into()),
                    callee: "a1".into(),
                    status: DialStatus::Answer,
                },
            ),
            at(
                9,
                Event::Answered {
                    channel: "a1".into(),
                },
            ),
            at(30, hangup("a1", 16)),
            at(30, hangup("c1", 16)),
            at(31, hangup("c2", 16)),
        ],
    ));
    let last = |pbx_call: &str| {
        updates
            .iter()
            .rev()
            .find(|u| u.call.pbx_call == pbx_call)
            .map(|u| u.call.clone())
            .unwrap()
    };
    let answered = last("A");
    assert_eq!(answered.status, Some(CallStatus::Answered), "{answered:?}");
    assert_eq!(answered.ended_at, Some(30_000));
    assert_eq!(answered.extension.as_deref(), Some("101"));
    let missed = last("B");
    assert_eq!(missed.ended_at, Some(31_000), "{missed:?}");
    for call in [answered, missed] {
        assert!(
            !call
                .hangup_cause
                .as_deref()
                .unwrap_or("")
                .contains("connection was down"),
            "{call:?}"
        );
    }
}
