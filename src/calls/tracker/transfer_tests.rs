//! Unit tests of transfers on internal calls and of the Flowlu user following the
//! employee, on hand-made event sequences.

use super::origin_tests::{dial, down, ringing, up};
use super::tests::{at, hangup, run};
use super::*;
use crate::calls::CallStatus;
use crate::pbx::{Transfer, TransferKind};

fn blind(transferer: &str, transferee: &str, exten: &str) -> Event {
    Event::Transferred(Transfer {
        kind: TransferKind::Blind,
        success: true,
        transferer: Some(transferer.into()),
        transferee: Some(transferee.into()),
        second_transferer: None,
        target: None,
        exten: Some(exten.into()),
        context: None,
        bridge: None,
        orig_bridge: None,
        second_bridge: None,
    })
}

/// 100 calls 101, who answers and blind-transfers 100 to 102; `answers`: 102 picks up.
fn internal_blind(answers: bool) -> (Tracker, Vec<Update>) {
    let mut t = Tracker::new(&crate::config::Config::defaults().calls);
    let mut events = vec![
        at(1, down("a", "L", "SIP/100-00000001", "office", "101")),
        at(1, dial("a", "b")),
        at(1, down("b", "L", "SIP/101-00000002", "office", "s")),
        at(2, ringing("b")),
        at(3, up("b")),
        at(5, blind("b", "a", "102")),
        at(5, hangup("b", 16)),
        at(5, dial("a", "c")),
        at(5, down("c", "L", "SIP/102-00000003", "office", "s")),
        at(6, ringing("c")),
    ];
    if answers {
        events.extend([at(8, up("c")), at(20, hangup("c", 16))]);
    } else {
        events.push(at(20, hangup("c", 19)));
    }
    events.push(at(20, hangup("a", 16)));
    let updates = run(&mut t, events);
    (t, updates)
}

#[test]
fn an_internal_call_takes_the_blind_transfer_target_once_it_answers() {
    let (_, updates) = internal_blind(true);
    let call = &updates.last().unwrap().call;
    assert_eq!(call.direction, Direction::Internal);
    assert_eq!(call.extension.as_deref(), Some("102"));
    assert_eq!(call.status, Some(CallStatus::Answered));
    // A target that never answered never talked: the call stays 100's.
    let (_, updates) = internal_blind(false);
    assert!(
        updates
            .iter()
            .all(|u| u.call.extension.as_deref() == Some("100")),
        "{updates:?}"
    );
    assert_eq!(
        updates.last().unwrap().call.status,
        Some(CallStatus::Answered)
    );
}

#[test]
fn the_flowlu_user_is_dropped_when_the_employee_changes() {
    // A customer's call answered by 100 (user u100); a blind transfer lands on 102, who
    // has no Flowlu user: the call no longer carries u100.
    let mut t = Tracker::new(&crate::config::Config::defaults().calls);
    let mut c = down(
        "c",
        "L",
        "PJSIP/trunk-00000001",
        "from-trunk",
        "74950000000",
    );
    if let Event::ChannelCreated(ch) = &mut c {
        ch.caller_number = "79161234567".into();
    }
    let first = run(
        &mut t,
        vec![
            at(1, c),
            at(
                1,
                Event::CallingIn {
                    channel: "c".into(),
                },
            ),
            at(1, dial("c", "a")),
            at(1, down("a", "L", "PJSIP/100-00000002", "agents", "s")),
            at(3, up("a")),
        ],
    );
    let id = first[0].call.id.clone();
    t.set_owner(&id, 1, Some("u100".into()));
    assert_eq!(t.call(&id).unwrap().user_id.as_deref(), Some("u100"));
    let updates = run(
        &mut t,
        vec![
            at(5, blind("a", "c", "102")),
            at(5, hangup("a", 16)),
            at(5, dial("c", "b")),
            at(5, down("b", "L", "PJSIP/102-00000003", "agents", "s")),
            at(7, up("b")),
            at(9, hangup("b", 16)),
            at(9, hangup("c", 16)),
        ],
    );
    let moved = updates
        .iter()
        .find(|u| u.emit == vec![Emit::State])
        .expect("the transfer is reported");
    assert_eq!(moved.call.extension.as_deref(), Some("102"));
    assert_eq!(moved.call.user_id, None);
    assert_eq!(updates.last().unwrap().call.user_id, None);
}

fn bridge(channel: &str, bridge: &str, enter: bool) -> Event {
    let (channel, bridge) = (channel.into(), bridge.into());
    if enter {
        Event::Bridged {
            channel,
            bridge,
            peer: None,
        }
    } else {
        Event::Unbridged {
            channel,
            bridge,
            peer: None,
        }
    }
}

/// 100 calls 101 (call L1, bridged in B1), then calls 102 (the consultation, L2), which
/// rings.
fn consulting() -> Vec<PbxEvent> {
    vec![
        at(1, down("a", "L1", "SIP/100-00000001", "office", "101")),
        at(1, dial("a", "b")),
        at(1, down("b", "L1", "SIP/101-00000002", "office", "s")),
        at(2, ringing("b")),
        at(3, up("b")),
        at(3, bridge("a", "B1", true)),
        at(3, bridge("b", "B1", true)),
        at(5, down("a2", "L2", "SIP/100-00000003", "office", "102")),
        at(5, dial("a2", "c")),
        at(5, down("c", "L2", "SIP/102-00000004", "office", "s")),
        at(6, ringing("c")),
    ]
}

/// 100 calls 101 (call L1, bridge B1), then 102 (the consultation, L2, bridge B2) and
/// joins them. Early Asterisk 13's `AttendedTransfer` names only 100's two channels and
/// the bridges; by the time it comes 101 has already moved into B2 next to 102.
#[test]
fn an_attended_transfer_naming_only_the_transferers_channels_still_finds_the_target() {
    let mut t = Tracker::new(&crate::config::Config::defaults().calls);
    let mut events = consulting();
    events.extend([
        at(7, up("c")),
        at(7, bridge("a2", "B2", true)),
        at(7, bridge("c", "B2", true)),
        at(9, bridge("b", "B1", false)),
        at(9, bridge("a2", "B2", false)),
        at(9, bridge("b", "B2", true)),
        at(
            9,
            Event::Transferred(Transfer {
                kind: TransferKind::Attended,
                success: true,
                transferer: Some("a".into()),
                transferee: None,
                second_transferer: Some("a2".into()),
                target: None,
                exten: None,
                context: None,
                bridge: Some("B2".into()),
                orig_bridge: Some("B1".into()),
                second_bridge: Some("B2".into()),
            }),
        ),
        at(9, hangup("a2", 16)),
        at(9, hangup("a", 16)),
        at(20, hangup("b", 16)),
        at(20, hangup("c", 16)),
    ]);
    let updates = run(&mut t, events);
    let first: Vec<&Update> = updates.iter().filter(|u| u.call.pbx_call == "L1").collect();
    let kinds: Vec<Emit> = first.iter().flat_map(|u| u.emit.clone()).collect();
    assert_eq!(
        kinds,
        vec![Emit::Init, Emit::Connected, Emit::State, Emit::Completed]
    );
    let done = &first.last().unwrap().call;
    assert_eq!(
        done.extension.as_deref(),
        Some("102"),
        "the target talked last"
    );
    assert_eq!(done.status, Some(CallStatus::Answered));
    let consultation: Vec<&Update> = updates.iter().filter(|u| u.call.pbx_call == "L2").collect();
    assert_eq!(
        consultation.last().unwrap().emit,
        vec![Emit::Completed],
        "the consultation ends at the transfer"
    );
    assert_eq!(t.live_calls(), 0);
}

/// 100 calls 101 (L1), then calls 102 (L2) and completes the attended transfer while 102
/// still rings: Asterisk's "blonde" transfer names the transferee but no target, and 101
/// takes over the ringing dial. `answers`: 102 picks up.
fn blonde(answers: bool) -> Vec<Update> {
    let mut t = Tracker::new(&crate::config::Config::defaults().calls);
    let mut events = consulting();
    events.extend([
        at(
            8,
            Event::Transferred(Transfer {
                kind: TransferKind::Attended,
                success: true,
                transferer: Some("a".into()),
                transferee: Some("b".into()),
                second_transferer: Some("a2".into()),
                target: None,
                exten: None,
                context: None,
                bridge: Some("B1".into()),
                orig_bridge: Some("B1".into()),
                second_bridge: None,
            }),
        ),
        at(8, bridge("a", "B1", false)),
        at(8, hangup("a2", 16)),
        at(8, hangup("a", 16)),
    ]);
    if answers {
        events.extend([at(10, up("c")), at(30, hangup("c", 16))]);
    } else {
        events.push(at(10, hangup("c", 21)));
    }
    events.push(at(30, hangup("b", 16)));
    let updates = run(&mut t, events);
    assert_eq!(t.live_calls(), 0);
    updates
}

#[test]
fn a_blonde_transfer_on_an_internal_call_lands_on_the_target_once_it_answers() {
    let updates = blonde(true);
    let first: Vec<(Emit, Option<String>)> = updates
        .iter()
        .filter(|u| u.call.pbx_call == "L1")
        .flat_map(|u| u.emit.iter().map(|e| (*e, u.call.extension.clone())))
        .collect();
    let before = first[1].1.clone();
    assert_eq!(
        first,
        vec![
            (Emit::Init, before.clone()),
            (Emit::Connected, before),
            (Emit::State, Some("102".into())),
            (Emit::Completed, Some("102".into())),
        ],
        "no employee change while 102 only rings"
    );
}

#[test]
fn a_blonde_transfer_the_target_refuses_stays_with_its_employee() {
    let updates = blonde(false);
    let first: Vec<&Update> = updates.iter().filter(|u| u.call.pbx_call == "L1").collect();
    let kinds: Vec<Emit> = first.iter().flat_map(|u| u.emit.clone()).collect();
    assert_eq!(kinds, vec![Emit::Init, Emit::Connected, Emit::Completed]);
    let done = &first.last().unwrap().call;
    assert_eq!(done.extension, first[1].call.extension);
    assert_eq!(done.status, Some(CallStatus::Answered));
}
