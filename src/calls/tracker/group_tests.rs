//! Unit tests of the queue or ring group a call went through ([`super::groups`]).

use super::tests::{agent_out, at, customer_in, hangup, leg, run, tracker};
use super::*;

fn dial(caller: &str, callee: &str, exten: &str) -> Event {
    Event::DialBegin {
        caller: Some(caller.into()),
        callee: callee.into(),
        dial_string: String::new(),
        exten: exten.into(),
    }
}

fn answered(channel: &str) -> Event {
    Event::Answered {
        channel: channel.into(),
    }
}

/// A customer's call on L1 rings 101 and 102 (each dialled by the caller from `exten`,
/// `parallel` or one after the other), 102 answers; `before` comes first.
fn ring_two(exten: &str, parallel: bool, before: Vec<PbxEvent>) -> Vec<Update> {
    let mut events = vec![at(10, customer_in("c", "L1"))];
    events.extend(before);
    events.push(at(10, agent_out("a1", "L1", "PJSIP/101-00000002")));
    events.push(at(10, dial("c", "a1", exten)));
    if !parallel {
        events.push(at(12, hangup("a1", 19)));
    }
    events.push(at(12, agent_out("a2", "L1", "PJSIP/102-00000003")));
    events.push(at(12, dial("c", "a2", exten)));
    events.push(at(15, answered("a2")));
    if parallel {
        events.push(at(15, hangup("a1", 26)));
    }
    events.push(at(40, hangup("a2", 16)));
    events.push(at(40, hangup("c", 16)));
    run(&mut tracker(), events)
}

#[test]
fn a_channel_ringing_several_phones_at_once_is_a_ring_group() {
    let updates = ring_two("600", true, vec![]);
    let kinds: Vec<Emit> = updates.iter().flat_map(|u| u.emit.clone()).collect();
    assert_eq!(kinds, vec![Emit::Init, Emit::Connected, Emit::Completed]);
    assert_eq!(updates[0].call.queue, None, "not known at call.init");
    for u in &updates[1..] {
        assert_eq!(u.call.queue.as_deref(), Some("600"), "{:?}", u.emit);
        assert_eq!(u.call.extension.as_deref(), Some("102"));
    }
}

#[test]
fn no_ring_group_without_parallel_ringing_or_a_group_number() {
    // Rang one after the other (a hunt, a follow-me): no group.
    assert_eq!(
        ring_two("600", false, vec![]).last().unwrap().call.queue,
        None
    );
    // The DID itself rings both phones: the line already says it.
    let did = ring_two("74950000000", true, vec![]);
    assert_eq!(did.last().unwrap().call.line, "74950000000");
    assert_eq!(did.last().unwrap().call.queue, None);
    // No number (FreePBX's macro-dial runs at `s`; FreeSWITCH says nothing).
    for exten in ["s", ""] {
        assert_eq!(
            ring_two(exten, true, vec![]).last().unwrap().call.queue,
            None,
            "{exten:?}"
        );
    }
}

#[test]
fn a_queue_the_pbx_names_wins_over_its_extension_and_sends_no_event() {
    let queued = at(
        10,
        Event::Queued {
            channel: "c".into(),
            queue: "sales".into(),
        },
    );
    let updates = ring_two("400", true, vec![queued]);
    let kinds: Vec<Emit> = updates.iter().flat_map(|u| u.emit.clone()).collect();
    assert_eq!(kinds, vec![Emit::Init, Emit::Connected, Emit::Completed]);
    let done = &updates.last().unwrap().call;
    assert_eq!(done.queue.as_deref(), Some("sales"));
    assert_eq!(done.status, Some(crate::calls::CallStatus::Answered));
}

#[test]
fn a_wrapper_dialling_the_phone_it_stands_for_is_no_group() {
    // c dials Local/201@from-internal;1 from 201; its ;2 half dials PJSIP/201 from 201:
    // two legs ring for 201, but each dialling channel rings one.
    let updates = run(
        &mut tracker(),
        vec![
            at(10, customer_in("c", "L1")),
            at(
                10,
                leg(
                    "l1",
                    "L1",
                    "Local/201@from-internal-00000001;1",
                    Origin::Outbound,
                    "from-internal",
                    "201",
                ),
            ),
            at(10, dial("c", "l1", "201")),
            at(
                10,
                leg(
                    "l2",
                    "L1",
                    "Local/201@from-internal-00000001;2",
                    Origin::Inbound,
                    "from-internal",
                    "201",
                ),
            ),
            at(10, agent_out("p", "L1", "PJSIP/201-00000002")),
            at(10, dial("l2", "p", "201")),
            at(14, answered("p")),
            at(30, hangup("p", 16)),
            at(30, hangup("l2", 16)),
            at(30, hangup("l1", 16)),
            at(30, hangup("c", 16)),
        ],
    );
    let done = &updates.last().unwrap().call;
    assert_eq!(done.extension.as_deref(), Some("201"));
    assert_eq!(done.queue, None);
}

#[test]
fn a_freepbx_ring_group_is_named_by_the_context_the_caller_enters() {
    // FreePBX: the caller runs ext-group at 600, then macro-dial at `s` dials 101 and
    // 102 at once (or, with a hunt strategy, one after the other).
    for parallel in [true, false] {
        let entered = at(
            10,
            Event::RingGroup {
                channel: "c".into(),
                group: "600".into(),
            },
        );
        let updates = ring_two("s", parallel, vec![entered]);
        let kinds: Vec<Emit> = updates.iter().flat_map(|u| u.emit.clone()).collect();
        assert_eq!(kinds, vec![Emit::Init, Emit::Connected, Emit::Completed]);
        let done = &updates.last().unwrap().call;
        assert_eq!(done.queue.as_deref(), Some("600"), "parallel {parallel}");
        assert_eq!(done.extension.as_deref(), Some("102"));
    }
}
