//! Unit tests of calls joining calls ([`super::joins`]) and of what is not a call of its
//! own: feature codes, pickups, attended transfers seen only as a bridge, and incoming
//! calls forwarded to an outside number.

use super::tests::{agent_out, at, customer_in, hangup, leg, run, tracker};
use super::*;
use crate::calls::CallStatus;

#[test]
fn a_feature_code_alone_is_never_reported() {
    for (dialled, reported) in [
        ("*97", None),
        ("#21", None),
        ("101", Some((Direction::Internal, "101"))),
        (
            "+7 916 123-45-67",
            Some((Direction::Outgoing, "+79161234567")),
        ),
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
                        dialled,
                    ),
                ),
                at(
                    2,
                    Event::Answered {
                        channel: "a".into(),
                    },
                ),
                at(9, hangup("a", 16)),
            ],
        );
        let Some((direction, phone)) = reported else {
            assert_eq!(updates, vec![], "{dialled}");
            assert_eq!(t.live_calls(), 0, "{dialled}: forgotten at its end");
            continue;
        };
        let first = &updates[0];
        assert_eq!(first.emit, vec![Emit::Init], "{dialled}");
        assert_eq!(first.call.direction, direction, "{dialled}");
        assert_eq!(first.call.phone, phone, "{dialled}");
        let last = updates.last().unwrap();
        assert_eq!(last.emit, vec![Emit::Completed]);
        assert_eq!(last.call.answered_at, None, "the PBX answering is no talk");
    }
}

/// A customer's call rings 101; 102 dials a pickup code and gets it. `pbx` says how the
/// PBX shows the pickup: Asterisk answers the caller's dial with the picker's channel
/// (and bridges them, without naming peers); FreeSWITCH's `intercept` only bridges the
/// picker with the caller, naming the peer.
fn pickup(asterisk: bool) -> (Tracker, Vec<Update>) {
    let mut t = tracker();
    let mut events = vec![
        at(10, customer_in("c", "L1")),
        at(10, agent_out("t", "L1", "PJSIP/101-00000002")),
        at(
            11,
            Event::Ringing {
                channel: "t".into(),
            },
        ),
        at(
            14,
            leg(
                "p",
                "L2",
                "PJSIP/102-00000003",
                Origin::Inbound,
                "agents",
                "*8",
            ),
        ),
        at(
            14,
            Event::Answered {
                channel: "p".into(),
            },
        ),
    ];
    if asterisk {
        events.push(at(
            15,
            Event::DialEnd {
                caller: Some("c".into()),
                callee: "p".into(),
                status: DialStatus::Answer,
            },
        ));
    }
    for (channel, peer) in [("c", "p"), ("p", "c")] {
        events.push(at(
            15,
            Event::Bridged {
                channel: channel.into(),
                bridge: "B1".into(),
                peer: (!asterisk).then(|| peer.into()),
            },
        ));
    }
    events.extend([
        at(15, hangup("t", 26)),
        at(40, hangup("c", 16)),
        at(40, hangup("p", 16)),
    ]);
    let updates = run(&mut t, events);
    (t, updates)
}

#[test]
fn the_employee_who_picks_up_a_ringing_call_is_the_one_who_talked() {
    for asterisk in [true, false] {
        let (t, updates) = pickup(asterisk);
        let kinds: Vec<(Emit, Option<String>)> = updates
            .iter()
            .map(|u| (u.emit[0], u.call.extension.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Emit::Init, None),
                (Emit::State, Some("101".into())),
                (Emit::Connected, Some("102".into())),
                (Emit::Completed, Some("102".into())),
            ],
            "asterisk: {asterisk}"
        );
        let id = &updates[0].call.id;
        assert!(updates.iter().all(|u| &u.call.id == id), "one call only");
        let done = &updates[3].call;
        assert_eq!(done.direction, Direction::Incoming);
        assert_eq!(done.status, Some(CallStatus::Answered));
        assert_eq!((done.wait, done.duration), (Some(5), Some(25)));
        assert_eq!(t.live_calls(), 0);
    }
}

#[test]
fn an_incoming_call_forwarded_outside_and_answered_there_was_answered() {
    let mut t = tracker();
    let updates = run(
        &mut t,
        vec![
            at(10, customer_in("c", "L1")),
            // The PBX's own answer (an IVR, a greeting) is no talk.
            at(
                10,
                Event::Answered {
                    channel: "c".into(),
                },
            ),
            at(12, agent_out("t", "L1", "PJSIP/101-00000002")),
            at(
                12,
                Event::Ringing {
                    channel: "t".into(),
                },
            ),
            at(
                32,
                Event::DialEnd {
                    caller: Some("c".into()),
                    callee: "t".into(),
                    status: DialStatus::NoAnswer,
                },
            ),
            at(32, hangup("t", 19)),
            // 101's no-answer forward: the PBX dials the employee's mobile on the trunk.
            at(
                32,
                leg(
                    "f",
                    "L1",
                    "PJSIP/trunk-00000003",
                    Origin::Outbound,
                    "from-internal",
                    "79990001122",
                ),
            ),
            at(
                36,
                Event::Answered {
                    channel: "f".into(),
                },
            ),
            // The caller is connected with it (FreeSWITCH names the peer; Asterisk
            // answers the caller's dial, then bridges).
            at(
                36,
                Event::Bridged {
                    channel: "c".into(),
                    bridge: "B".into(),
                    peer: Some("f".into()),
                },
            ),
            at(60, hangup("f", 16)),
            at(60, hangup("c", 16)),
        ],
    );
    let kinds: Vec<(Emit, Option<String>)> = updates
        .iter()
        .map(|u| (u.emit[0], u.call.extension.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Emit::Init, None),
            (Emit::State, Some("101".into())),
            (Emit::Connected, Some("101".into())),
            (Emit::Completed, Some("101".into())),
        ]
    );
    let done = &updates[3].call;
    assert_eq!(done.status, Some(CallStatus::Answered));
    assert_eq!(done.phone, "79161234567", "the caller, not the mobile");
    assert_eq!((done.wait, done.duration), (Some(26), Some(24)));
}

#[test]
fn a_consultation_leg_bridged_with_the_customer_is_an_attended_transfer() {
    // What FreeSWITCH shows: 101 talks to the customer, calls 102, and transfers; 101's
    // two legs hang up and the customer is bridged with 102's leg, peer named.
    let mut t = tracker();
    let updates = run(
        &mut t,
        vec![
            at(10, customer_in("c", "L1")),
            at(10, agent_out("a", "L1", "PJSIP/101-00000002")),
            at(
                12,
                Event::Answered {
                    channel: "a".into(),
                },
            ),
            at(
                20,
                leg(
                    "b",
                    "L2",
                    "PJSIP/101-00000003",
                    Origin::Inbound,
                    "agents",
                    "102",
                ),
            ),
            at(20, agent_out("x", "L2", "PJSIP/102-00000004")),
            at(
                22,
                Event::Answered {
                    channel: "x".into(),
                },
            ),
            at(30, hangup("a", 16)),
            at(30, hangup("b", 16)),
            at(
                30,
                Event::Bridged {
                    channel: "c".into(),
                    bridge: "X1".into(),
                    peer: Some("x".into()),
                },
            ),
            at(50, hangup("x", 16)),
            at(50, hangup("c", 16)),
        ],
    );
    let seen: Vec<(Emit, Direction, Option<String>)> = updates
        .iter()
        .map(|u| (u.emit[0], u.call.direction, u.call.extension.clone()))
        .collect();
    let ext = |e: &str| Some(e.to_string());
    assert_eq!(
        seen,
        vec![
            (Emit::Init, Direction::Incoming, None),
            (Emit::Connected, Direction::Incoming, ext("101")),
            (Emit::Init, Direction::Internal, ext("101")),
            (Emit::Connected, Direction::Internal, ext("101")),
            (Emit::State, Direction::Incoming, ext("102")),
            (Emit::Completed, Direction::Internal, ext("101")),
            (Emit::Completed, Direction::Incoming, ext("102")),
        ]
    );
    let internal = &updates[5].call;
    assert_eq!(
        internal.ended_at,
        Some(30_000),
        "the consultation ends at the transfer"
    );
    let customer = &updates[6].call;
    assert_eq!(customer.status, Some(CallStatus::Answered));
    assert_eq!(customer.duration, Some(38));
}

#[test]
fn a_queue_agent_leg_originated_on_its_own_joins_the_caller_it_is_bridged_with() {
    // FreeSWITCH mod_callcenter / fifo: the caller waits (answered by the queue, music on
    // hold); the queue originates 101 as a call of its own and bridges it to the caller.
    let mut t = tracker();
    let updates = run(
        &mut t,
        vec![
            at(10, customer_in("c", "Y")),
            at(
                10,
                Event::Answered {
                    channel: "c".into(),
                },
            ),
            at(15, agent_out("a", "X", "PJSIP/101-00000002")),
            // mod_callcenter's `cc_queue` on the agent leg it originates.
            at(
                15,
                Event::Queued {
                    channel: "a".into(),
                    queue: "support@default".into(),
                },
            ),
            at(
                15,
                Event::Ringing {
                    channel: "a".into(),
                },
            ),
            at(
                18,
                Event::Answered {
                    channel: "a".into(),
                },
            ),
            at(
                18,
                Event::Bridged {
                    channel: "a".into(),
                    bridge: "a".into(),
                    peer: Some("c".into()),
                },
            ),
            at(48, hangup("c", 16)),
            at(48, hangup("a", 16)),
        ],
    );
    let seen: Vec<(Emit, Option<String>)> = updates
        .iter()
        .map(|u| (u.emit[0], u.call.extension.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Emit::Init, None),
            (Emit::Connected, Some("101".into())),
            (Emit::Completed, Some("101".into())),
        ]
    );
    let done = &updates[2].call;
    assert_eq!(done.direction, Direction::Incoming);
    assert_eq!(done.status, Some(CallStatus::Answered));
    assert_eq!((done.wait, done.duration), (Some(8), Some(30)));
    assert_eq!(
        done.queue.as_deref(),
        Some("support@default"),
        "the queue's name"
    );
    assert_eq!(t.live_calls(), 0);
}

/// chan_sip's SIP `Replaces` pickup: 201 calls 202; 203's phone sends an INVITE that
/// replaces 202's ringing dialog: a channel of its own (created Down, ringing in for
/// 201, answered at once) that Asterisk then dials in 202's place for the caller.
#[test]
fn a_pickup_channel_the_pbx_dials_in_the_ringing_legs_place_joins_that_call() {
    use super::origin_tests::{calling_in, dial, down, ringing, up};
    let mut t = tracker();
    let updates = run(
        &mut t,
        vec![
            at(1, down("a", "L1", "SIP/201-00000001", "office", "202")),
            at(1, calling_in("a")),
            at(1, dial("a", "b")),
            at(1, down("b", "L1", "SIP/202-00000002", "office", "s")),
            at(2, ringing("b")),
            at(4, down("p", "L2", "SIP/203-00000003", "office", "201")),
            at(4, calling_in("p")),
            at(4, up("p")),
            at(
                4,
                Event::DialEnd {
                    caller: Some("a".into()),
                    callee: "b".into(),
                    status: DialStatus::Cancel,
                },
            ),
            at(4, hangup("b", 26)),
            at(4, dial("a", "p")),
            at(
                4,
                Event::DialEnd {
                    caller: Some("a".into()),
                    callee: "p".into(),
                    status: DialStatus::Answer,
                },
            ),
            at(20, hangup("p", 16)),
            at(20, hangup("a", 16)),
        ],
    );
    let ids: std::collections::HashSet<&str> = updates.iter().map(|u| u.call.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one call: {updates:#?}");
    let kinds: Vec<Emit> = updates.iter().flat_map(|u| u.emit.clone()).collect();
    assert_eq!(kinds[0], Emit::Init);
    assert!(kinds.contains(&Emit::Connected));
    let done = &updates.last().unwrap().call;
    assert_eq!(updates.last().unwrap().emit, vec![Emit::Completed]);
    assert_eq!(done.direction, Direction::Internal);
    assert_eq!(done.status, Some(CallStatus::Answered));
    assert_eq!(
        done.extension.as_deref(),
        Some("203"),
        "who picked up talked"
    );
    assert_eq!(t.live_calls(), 0);
}
