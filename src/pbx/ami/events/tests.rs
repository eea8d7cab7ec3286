use super::*;
use crate::pbx::ami::codec::{parse, parse_all};

fn live_events(fixture: &str) -> Vec<Event> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk")
        .join(fixture);
    let mut out = Vec::new();
    for msg in parse_all(&std::fs::read(path).unwrap()).unwrap() {
        // The connection routes responses and list items (they carry an ActionID) to the
        // action that asked; only the rest is mapped.
        if msg.action_id().is_none() {
            map(&msg, &mut out);
        }
    }
    out.into_iter().map(|e| e.event).collect()
}

#[test]
fn a_chan_sip_caller_is_created_down_and_then_calls_in() {
    // Asterisk 13, chan_sip (cacofonisk's recording): Newchannel Down, Newstate Ring.
    let events = live_events("../independent/cacofonisk-ast13/simple__ab_success_a_hangup.txt");
    let caller = "195176c06ab8-1529936170.42";
    let Some(Event::ChannelCreated(ch)) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(
        (ch.id.as_str(), ch.state, ch.tentative, ch.local),
        (caller, ChannelState::Down, true, false)
    );
    assert_eq!(
        events.get(1),
        Some(&Event::CallingIn {
            channel: caller.into()
        })
    );
}

#[test]
fn agent_busy_maps_to_the_expected_sequence() {
    let local = |id: &str, name: &str, origin, state| {
        Event::ChannelCreated(Channel {
            id: id.into(),
            call: "1795413238.16".into(),
            name: name.into(),
            exten: "102".into(),
            context: "agents".into(),
            origin,
            state,
            local: true,
            endpoint: Some("102@agents".into()),
            tentative: state == ChannelState::Down,
            ..Channel::default()
        })
    };
    let expected = vec![
        local(
            "1795413238.16",
            "Local/102@agents-00000008;1",
            Origin::Outbound,
            ChannelState::Down,
        ),
        local(
            "1795413238.17",
            "Local/102@agents-00000008;2",
            Origin::Inbound,
            ChannelState::Ring,
        ),
        Event::CallTagged {
            channel: "1795413238.16".into(),
            call_id: "crm-42".into(),
        },
        Event::CallTagged {
            channel: "1795413238.17".into(),
            call_id: "crm-42".into(),
        },
        Event::DialBegin {
            caller: None,
            callee: "1795413238.16".into(),
            dial_string: "102@agents".into(),
            exten: String::new(),
        },
        Event::DeviceState {
            device: "Local/102@agents".into(),
            state: LineState::InCall,
        },
        Event::DialEnd {
            caller: None,
            callee: "1795413238.16".into(),
            status: DialStatus::Busy,
        },
        Event::HungUp {
            channel: "1795413238.17".into(),
            cause: 17,
            cause_text: "User busy".into(),
        },
        Event::HungUp {
            channel: "1795413238.16".into(),
            cause: 0,
            cause_text: "Unknown".into(),
        },
        Event::DeviceState {
            device: "Local/102@agents".into(),
            state: LineState::Online,
        },
        Event::DeviceState {
            device: "Local/102@agents".into(),
            state: LineState::Online,
        },
    ];
    assert_eq!(live_events("agent-busy.txt"), expected);
}

#[test]
fn click_to_call_over_sip_reports_ringing_answer_recording_bridge_and_hangup() {
    let events = live_events("sip-click-to-call.txt");
    let agent = "1795416477.37";
    let created = events
        .iter()
        .find_map(|e| match e {
            Event::ChannelCreated(c) if c.id == agent => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.name, "PJSIP/100-00000021");
    assert_eq!(created.endpoint.as_deref(), Some("100"));
    assert_eq!(created.caller_number, "100");
    assert!(!created.local);
    let pos = |want: &Event| {
        events
            .iter()
            .position(|e| e == want)
            .unwrap_or_else(|| panic!("{want:?} missing"))
    };
    let tagged = pos(&Event::CallTagged {
        channel: agent.into(),
        call_id: "crm-43".into(),
    });
    let ringing = pos(&Event::Ringing {
        channel: agent.into(),
    });
    let answered = pos(&Event::Answered {
        channel: agent.into(),
    });
    let recording = pos(&Event::RecordingStarted {
        channel: agent.into(),
        path: "/work/peers/asterisk/var/spool/asterisk/monitor/crm-79990001122-1795416477.37.wav"
            .into(),
    });
    let bridged = pos(&Event::Bridged {
        channel: agent.into(),
        bridge: "36b50e0b-1168-4118-93d8-ba5130e15c3f".into(),
        peer: None,
    });
    let hungup = pos(&Event::HungUp {
        channel: agent.into(),
        cause: 16,
        cause_text: "Normal Clearing".into(),
    });
    assert!(tagged < ringing && ringing < answered && answered < recording);
    assert!(recording < bridged && bridged < hungup);
    // The customer leg is a Local pair dialled by the agent's channel, answered.
    assert!(events.contains(&Event::DialEnd {
        caller: Some(agent.into()),
        callee: "1795416477.38".into(),
        status: DialStatus::Answer,
    }));
    // Only the two tracked variables of the ~40 VarSets come through.
    let tagged_or_recorded = events
        .iter()
        .filter(|e| matches!(e, Event::CallTagged { .. } | Event::RecordingStarted { .. }))
        .count();
    assert_eq!(tagged_or_recorded, 2);
}

#[test]
fn registrations_come_from_contact_and_peer_status() {
    let events = live_events("sip-register-unregister.txt");
    let regs: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Registration { .. }))
        .cloned()
        .collect();
    assert_eq!(
        regs,
        vec![
            Event::Registration {
                extension: "101".into(),
                online: false,
                contact: None
            },
            Event::Registration {
                extension: "101".into(),
                online: false,
                contact: Some("sip:101-0x5632ec79c4a0@127.0.0.1:5073".into()),
            },
            Event::Registration {
                extension: "101".into(),
                online: true,
                contact: Some("sip:101-0x55f35825e4a0@127.0.0.1:5073".into()),
            },
            Event::Registration {
                extension: "101".into(),
                online: true,
                contact: None
            },
            Event::Registration {
                extension: "101".into(),
                online: true,
                contact: Some("sip:101-0x55f35825e4a0@127.0.0.1:5073".into()),
            },
        ]
    );
    assert!(events.contains(&Event::DeviceState {
        device: "PJSIP/101".into(),
        state: LineState::Offline
    }));
}

#[test]
fn transfers_timestamps_and_channel_variables() {
    let blind = parse(
        b"Event: BlindTransfer\r\nResult: Success\r\nTransfererUniqueid: a.1\r\nTransfereeUniqueid: b.2\r\nBridgeUniqueid: br\r\nIsExternal: No\r\nContext: from-internal\r\nExtension: 101\r\nTimestamp: 1795413238.3139\r\n\r\n",
    );
    let mut out = Vec::new();
    map(&blind, &mut out);
    assert_eq!(
        out[0].event,
        Event::Transferred(Transfer {
            kind: TransferKind::Blind,
            success: true,
            transferer: Some("a.1".into()),
            transferee: Some("b.2".into()),
            second_transferer: None,
            target: None,
            exten: Some("101".into()),
            context: Some("from-internal".into()),
            bridge: Some("br".into()),
            orig_bridge: None,
            second_bridge: None,
        })
    );
    assert!(out[0].pbx_time);
    assert_eq!(timestamp(&blind), Some(1_795_413_238_313_900));

    let attended = parse(
        b"Event: AttendedTransfer\r\nResult: Success\r\nOrigTransfererUniqueid: host-1.5\r\nOrigBridgeUniqueid: b1\r\nSecondTransfererUniqueid: host-1.7\r\nTransfereeUniqueid: host-1.4\r\nTransferTargetUniqueid: host-1.8\r\nDestType: Bridge\r\nDestBridgeUniqueid: b2\r\n\r\n",
    );
    let mut out = Vec::new();
    map(&attended, &mut out);
    let Event::Transferred(t) = &out[0].event else {
        panic!()
    };
    assert_eq!(t.kind, TransferKind::Attended);
    assert_eq!(t.transferee.as_deref(), Some("host-1.4"));
    assert_eq!(t.target.as_deref(), Some("host-1.8"));
    assert_eq!(t.second_transferer.as_deref(), Some("host-1.7"));
    assert_eq!(t.bridge.as_deref(), Some("b2"));
    assert!(!out[0].pbx_time);

    let newchannel = parse(
        b"Event: Newchannel\r\nChannel: PJSIP/100-0000001a\r\nChannelState: 4\r\nUniqueid: pbx1-1795413238.16\r\nLinkedid: pbx1-1795413238.16\r\nChanVariable: OTHER=1\r\nChanVariable: CRM_CALL_ID=crm-7\r\n\r\n",
    );
    let mut out = Vec::new();
    map(&newchannel, &mut out);
    let Event::ChannelCreated(c) = &out[0].event else {
        panic!()
    };
    assert_eq!(c.id, "pbx1-1795413238.16");
    assert_eq!(c.call_id.as_deref(), Some("crm-7"));
    assert_eq!(c.origin, Origin::Inbound);
}

#[test]
fn core_show_channel_items_become_snapshots() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk/sip-inbound-answered.txt");
    let items: Vec<_> = parse_all(&std::fs::read(path).unwrap())
        .unwrap()
        .into_iter()
        .filter(|m| m.event() == Some("CoreShowChannel") && m.action_id() == Some("csc-talking"))
        .map(|m| snapshot(&m))
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].id, "1795416368.27");
    assert_eq!(items[0].name, "PJSIP/trunk-00000017");
    assert_eq!(items[0].state, ChannelState::Up);
    assert_eq!(items[0].endpoint.as_deref(), Some("trunk"));
    assert_eq!(
        items[0].bridge.as_deref(),
        Some("8979480e-36e5-4612-b3e0-864fd347e91a")
    );
    assert_eq!(items[1].call, "1795416368.27");
}

#[test]
fn queue_events_name_the_callers_queue_and_dial_begin_carries_the_extension() {
    // Recorded (Asterisk 13): the caller abandons queue 670100-540100.
    let events = live_events("../independent/cacofonisk-ast13/queue__queue_a_cancel.txt");
    let queued: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Queued { .. }))
        .collect();
    assert_eq!(
        queued,
        vec![&Event::Queued {
            channel: "40a7a1f2a669-1585318545.326".into(),
            queue: "670100-540100".into(),
        }]
    );
    // Recorded: 201 rings group 401 (two Local wrappers) from extension 401.
    let events = live_events("../independent/cacofonisk-ast13/simple__ab_callgroup.txt");
    let extens: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::DialBegin { exten, .. } => Some(exten.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(&extens[..2], &["401", "401"]);
    // QueueCallerJoin and AgentCalled as Asterisk documents them: the caller's Uniqueid.
    for (name, extra) in [
        ("QueueCallerJoin", "Position: 1\r\nCount: 1\r\n"),
        (
            "AgentCalled",
            "DestChannel: Local/101@from-queue-00000002;1\r\nDestUniqueid: 1795.9\r\n\
             Interface: Local/101@from-queue/n\r\nMemberName: Alice\r\n",
        ),
    ] {
        let raw = format!(
            "Event: {name}\r\nPrivilege: agent,all\r\nChannel: PJSIP/trunk-00000001\r\n\
             Uniqueid: 1795.1\r\nLinkedid: 1795.1\r\nQueue: sales\r\n{extra}\r\n"
        );
        let mut out = Vec::new();
        map(&parse(raw.as_bytes()), &mut out);
        let got: Vec<Event> = out.into_iter().map(|e| e.event).collect();
        assert_eq!(
            got,
            vec![Event::Queued {
                channel: "1795.1".into(),
                queue: "sales".into(),
            }],
            "{name}"
        );
    }
    let mut out = Vec::new();
    map(
        &parse(b"Event: QueueCallerJoin\r\nUniqueid: 1795.1\r\nQueue: \r\n\r\n"),
        &mut out,
    );
    assert!(out.is_empty(), "no queue name, nothing to say");
}

#[test]
fn freepbx_ring_groups_are_named_by_the_ext_group_context() {
    // Newexten as Asterisk documents it: the caller's channel steps into ext-group,600
    // (FreePBX's ring group 600); a Local/600@ext-group half is created there.
    let step = |context: &str, exten: &str| {
        format!(
            "Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/trunk-00000001\r\n\
             ChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: 79161234567\r\n\
             Uniqueid: 1795.1\r\nLinkedid: 1795.1\r\nContext: {context}\r\nExten: {exten}\r\n\
             Priority: 1\r\nApplication: Macro\r\nAppData: user-callerid,\r\n\r\n"
        )
    };
    let mapped = |raw: &str| {
        let mut out = Vec::new();
        map(&parse(raw.as_bytes()), &mut out);
        out.into_iter().map(|e| e.event).collect::<Vec<_>>()
    };
    assert_eq!(
        mapped(&step("ext-group", "600")),
        vec![Event::RingGroup {
            channel: "1795.1".into(),
            group: "600".into(),
        }]
    );
    // Elsewhere in the dialplan, or not at a number: nothing.
    assert!(mapped(&step("from-internal", "600")).is_empty());
    assert!(mapped(&step("ext-group", "s")).is_empty());
    assert!(mapped(&step("macro-dial", "s")).is_empty());
    let created = mapped(
        "Event: Newchannel\r\nChannel: Local/600@ext-group-00000003;2\r\nChannelState: 4\r\n\
         Uniqueid: 1795.3\r\nLinkedid: 1795.1\r\nContext: ext-group\r\nExten: 600\r\n\r\n",
    );
    assert!(matches!(&created[0], Event::ChannelCreated(_)));
    assert_eq!(
        created[1],
        Event::RingGroup {
            channel: "1795.3".into(),
            group: "600".into(),
        }
    );
}
