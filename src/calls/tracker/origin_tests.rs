//! Unit tests of who started a call ([`super::origin`]) and of Local / loopback channels
//! as wrappers, on hand-made event sequences.

use super::tests::{at, hangup, run};
use super::*;
use crate::calls::CallStatus;

fn rules(max_digits: u64) -> Tracker {
    let mut c = crate::config::Config::defaults().calls;
    c.extension_max_digits = max_digits;
    c.trunk_endpoints = vec!["carrier".into()];
    Tracker::new(&c)
}

/// A channel as Asterisk creates it: Down, origin a guess (`tentative`).
pub(super) fn down(id: &str, call: &str, name: &str, context: &str, exten: &str) -> Event {
    Event::ChannelCreated(Channel {
        id: id.into(),
        call: call.into(),
        name: name.into(),
        caller_number: "+31150010001".into(),
        exten: exten.into(),
        context: context.into(),
        origin: Origin::Outbound,
        state: ChannelState::Down,
        local: name.starts_with("Local/"),
        endpoint: crate::pbx::asterisk_endpoint(name),
        tentative: true,
        ..Channel::default()
    })
}

pub(super) fn calling_in(id: &str) -> Event {
    Event::CallingIn { channel: id.into() }
}

pub(super) fn dial(caller: &str, callee: &str) -> Event {
    Event::DialBegin {
        caller: Some(caller.into()),
        callee: callee.into(),
        dial_string: String::new(),
        exten: String::new(),
    }
}

pub(super) fn up(id: &str) -> Event {
    Event::Answered { channel: id.into() }
}

pub(super) fn ringing(id: &str) -> Event {
    Event::Ringing { channel: id.into() }
}

fn last(updates: &[Update]) -> &Call {
    &updates.last().expect("something was reported").call
}

#[test]
fn a_chan_sip_caller_created_down_is_the_party_who_started_the_call() {
    // chan_sip: the trunk's caller is created Down and only then rings in; the PBX
    // answers it itself (an IVR) and nobody else: missed, never outgoing or connected.
    let mut t = rules(9);
    let updates = run(
        &mut t,
        vec![
            at(
                1,
                down(
                    "c",
                    "L",
                    "SIP/carrier-00000009",
                    "from-trunk",
                    "+31150010004",
                ),
            ),
            at(1, calling_in("c")),
            at(2, up("c")),
            at(9, hangup("c", 16)),
        ],
    );
    let call = last(&updates);
    assert_eq!(call.direction, Direction::Incoming);
    assert_eq!(call.status, Some(CallStatus::Missed));
    assert_eq!(call.phone, "+31150010001");
    assert!(updates.iter().all(|u| !u.emit.contains(&Emit::Connected)));

    // An employee's phone created Down that dials: an internal call it placed.
    let mut t = rules(9);
    let updates = run(
        &mut t,
        vec![
            at(1, down("a", "L", "SIP/150010001-00000004", "office", "202")),
            at(1, dial("a", "b")),
            at(1, down("b", "L", "SIP/150010002-00000005", "office", "s")),
            at(2, ringing("b")),
            at(3, up("b")),
            at(9, hangup("b", 16)),
            at(9, hangup("a", 16)),
        ],
    );
    let call = last(&updates);
    assert_eq!(call.direction, Direction::Internal);
    assert_eq!(call.extension.as_deref(), Some("150010001"));
    assert_eq!(call.status, Some(CallStatus::Answered));
}

#[test]
fn a_channel_created_down_that_hangs_up_unexplained_is_nothing() {
    let mut t = rules(6);
    let updates = run(
        &mut t,
        vec![
            at(1, down("a", "L", "SIP/100-00000004", "office", "s")),
            at(2, hangup("a", 16)),
        ],
    );
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(t.live_calls(), 0);
}

/// A Local channel as Asterisk creates its halves (`;1` Down, `;2` Ring).
fn local(id: &str, call: &str, name: &str) -> Event {
    let exten = name
        .split_once('/')
        .and_then(|(_, r)| r.split_once('@'))
        .map_or("s", |(e, _)| e);
    let mut e = down(id, call, name, "ring-group", exten);
    if let Event::ChannelCreated(ch) = &mut e {
        ch.tentative = false;
        if name.ends_with(";2") {
            ch.origin = Origin::Inbound;
            ch.state = ChannelState::Ring;
        }
    }
    e
}

/// A customer on the trunk calls `exten`, and the PBX dials Local pair `pair` (halves
/// `l1`, `l2`) for it.
fn caller_dials_local(exten: &str, pair: &str) -> Vec<PbxEvent> {
    vec![
        at(
            1,
            down("c", "L", "SIP/carrier-00000001", "from-trunk", exten),
        ),
        at(1, calling_in("c")),
        at(1, local("l1", "L", &format!("{pair};1"))),
        at(1, local("l2", "L", &format!("{pair};2"))),
        at(1, dial("c", "l1")),
    ]
}

#[test]
fn local_halves_that_dial_a_phone_are_plumbing_not_employees() {
    // A customer calls ring group 401: Local/401@ring-group;2 dials SIP/150010002,
    // which answers. The Local halves ring and answer too, but the employee is 150010002.
    let mut t = rules(9);
    let updates = run(
        &mut t,
        [
            caller_dials_local("+31150010004", "Local/401@ring-group-00000002"),
            vec![
                at(1, down("p", "L", "SIP/150010002-00000005", "office", "s")),
                at(1, dial("l2", "p")),
                at(2, ringing("p")),
                at(2, ringing("l1")),
                at(5, up("p")),
                at(5, up("l2")),
                at(5, up("l1")),
                at(9, hangup("l1", 16)),
                at(9, hangup("l2", 16)),
                at(9, hangup("p", 16)),
                at(9, hangup("c", 16)),
            ],
        ]
        .concat(),
    );
    let call = last(&updates);
    assert_eq!(call.direction, Direction::Incoming);
    assert_eq!(call.status, Some(CallStatus::Answered));
    assert_eq!(call.extension.as_deref(), Some("150010002"));
    let named: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.call.extension.as_deref())
        .collect();
    assert!(!named.contains(&Some("401")), "{named:?}");
}

#[test]
fn a_forwarded_outside_leg_that_answers_but_is_never_connected_is_no_answer() {
    // A mobile's call acceptance: the forwarded leg picks up, the caller's own dial ends
    // NOANSWER, the caller is never bridged: missed. With the caller's dial answered
    // instead, it is answered.
    for (caller_dial, status) in [
        (DialStatus::NoAnswer, CallStatus::Missed),
        (DialStatus::Answer, CallStatus::Answered),
    ] {
        let mut t = rules(9);
        let mut outside = down("m", "L", "SIP/carrier-00000002", "from-trunk", "s");
        if let Event::ChannelCreated(ch) = &mut outside {
            ch.caller_number = String::new();
        }
        let updates = run(
            &mut t,
            [
                caller_dials_local("+31260010001", "Local/+31150010001@world-00000002"),
                vec![
                    at(1, outside),
                    at(1, dial("l2", "m")),
                    at(3, up("m")),
                    at(
                        20,
                        Event::DialEnd {
                            caller: Some("c".into()),
                            callee: "l1".into(),
                            status: caller_dial.clone(),
                        },
                    ),
                    at(21, hangup("m", 16)),
                    at(21, hangup("l2", 16)),
                    at(21, hangup("l1", 16)),
                    at(22, hangup("c", 16)),
                ],
            ]
            .concat(),
        );
        let call = last(&updates);
        assert_eq!(call.direction, Direction::Incoming, "{caller_dial:?}");
        assert_eq!(call.status, Some(status), "{caller_dial:?}");
        assert_eq!(call.phone, "+31150010001", "the caller, not the mobile");
    }
}

#[test]
fn an_originate_through_plumbing_is_placed_by_the_first_employee_it_rings() {
    // Click-to-dial on another platform: Originate Local/ID42@ctd;1, whose ;2 dials
    // Local/201@int (a wrapper for SIP/150010001), then, once 150010001 answered, the
    // customer. `busy`: the employee's phone is busy, nobody else is dialled: nothing.
    for busy in [false, true] {
        let mut t = rules(9);
        let mut events = vec![
            at(1, local("o1", "L", "Local/ID42@ctd-00000001;1")),
            at(1, local("o2", "L", "Local/ID42@ctd-00000001;2")),
            at(
                1,
                Event::DialBegin {
                    caller: None,
                    callee: "o1".into(),
                    dial_string: "ID42@ctd".into(),
                    exten: String::new(),
                },
            ),
            at(1, local("w1", "L", "Local/201@int-00000002;1")),
            at(1, local("w2", "L", "Local/201@int-00000002;2")),
            at(1, dial("o2", "w1")),
            at(1, down("p", "L", "SIP/150010001-00000003", "office", "s")),
            at(1, dial("w2", "p")),
            at(2, ringing("p")),
        ];
        if busy {
            events.extend([
                at(3, hangup("p", 17)),
                at(3, hangup("w2", 17)),
                at(3, hangup("w1", 17)),
                at(3, hangup("o2", 17)),
                at(3, hangup("o1", 17)),
            ]);
            assert!(run(&mut t, events).is_empty());
            assert_eq!(t.live_calls(), 0);
            continue;
        }
        events.extend([
            at(3, up("p")),
            at(3, up("w1")),
            at(3, up("o1")),
            at(4, local("c1", "L", "Local/+31260010001@world-00000004;1")),
            at(4, local("c2", "L", "Local/+31260010001@world-00000004;2")),
            at(4, dial("o1", "c1")),
            at(4, down("x", "L", "SIP/carrier-00000005", "world", "s")),
            at(4, dial("c2", "x")),
            at(5, ringing("x")),
            at(6, up("x")),
            at(9, hangup("x", 16)),
            at(9, hangup("c2", 16)),
            at(9, hangup("c1", 16)),
            at(9, hangup("p", 16)),
            at(9, hangup("w2", 16)),
            at(9, hangup("w1", 16)),
            at(9, hangup("o2", 16)),
            at(9, hangup("o1", 16)),
        ]);
        let updates = run(&mut t, events);
        assert_eq!(updates[0].emit, vec![Emit::Init]);
        let call = last(&updates);
        assert_eq!(call.direction, Direction::Outgoing);
        assert_eq!(
            call.extension.as_deref(),
            Some("150010001"),
            "not 201's wrapper"
        );
        assert_eq!(call.phone, "+31260010001");
        assert_eq!(call.status, Some(CallStatus::Answered));
        assert_eq!(call.answered_at, Some(6_000));
    }
}
