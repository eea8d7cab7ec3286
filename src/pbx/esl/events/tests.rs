use super::*;
use crate::pbx::CALL_ID_VAR_FS;
use crate::pbx::esl::codec::{event_of, parse_all};

fn mapped(fixture: &str) -> Vec<Event> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/freeswitch")
        .join(fixture);
    let mut mapper = Mapper::new();
    let mut out = Vec::new();
    for env in parse_all(&std::fs::read(path).unwrap()).unwrap() {
        if let Some(ev) = event_of(&env).unwrap() {
            mapper.map(&ev, &mut out);
        }
    }
    assert_eq!(mapper.live_legs(), 0, "every leg of {fixture} hung up");
    out.into_iter().map(|e| e.event).collect()
}

const A: &str = "18ebf15d-9f85-4dbe-9930-3ef17129f2ea";
const B: &str = "1647fda3-c854-48b6-bdf1-4c087ad41e9a";
const C: &str = "7b1a7148-a50a-4459-af1f-9176abd06da0";
const D: &str = "38a66762-fe93-4f50-acb2-b4aaf06f95fe";

#[test]
fn header_name_matches_the_variable() {
    assert_eq!(CALL_ID_HEADER, format!("variable_{CALL_ID_VAR_FS}"));
}

#[test]
fn loopback_click_to_call_maps_to_the_expected_sequence() {
    let leg =
        |id: &str, name: &str, origin, state, exten: &str, context: &str, peer: &str| Channel {
            id: id.into(),
            call: A.into(),
            name: name.into(),
            exten: exten.into(),
            context: context.into(),
            origin,
            state,
            local: true,
            peer: Some(peer.into()),
            ..Channel::default()
        };
    let crm = |c: Channel| Channel {
        caller_number: "100".into(),
        caller_name: "CRM".into(),
        call_id: Some("crm-42".into()),
        ..c
    };
    let pstn = |c: Channel| Channel {
        caller_number: "agents".into(),
        caller_name: "Outbound Call".into(),
        ..c
    };
    let hung = |id: &str| Event::HungUp {
        channel: id.into(),
        cause: 16,
        cause_text: "NORMAL_CLEARING".into(),
    };
    let expected = vec![
        Event::ChannelCreated(crm(leg(
            A,
            "loopback/100-a",
            Origin::Outbound,
            ChannelState::Down,
            "100",
            "agents",
            B,
        ))),
        Event::DialBegin {
            caller: None,
            callee: A.into(),
            dial_string: "100".into(),
            exten: String::new(),
        },
        Event::ChannelCreated(crm(leg(
            B,
            "loopback/100-b",
            Origin::Inbound,
            ChannelState::Ring,
            "100",
            "agents",
            A,
        ))),
        Event::DialEnd {
            caller: None,
            callee: A.into(),
            status: DialStatus::Answer,
        },
        Event::Answered { channel: A.into() },
        Event::Answered { channel: B.into() },
        Event::RecordingStarted {
            channel: A.into(),
            path: format!(
                "/work/peers/freeswitch/var/lib/freeswitch/recordings/crm-79990001122-{A}.wav"
            ),
        },
        Event::ChannelCreated(pstn(leg(
            C,
            "loopback/79990001122-a",
            Origin::Outbound,
            ChannelState::Down,
            "79990001122",
            "pstn-sim",
            A,
        ))),
        Event::DialBegin {
            caller: Some(A.into()),
            callee: C.into(),
            dial_string: "79990001122".into(),
            exten: String::new(),
        },
        Event::ChannelCreated(pstn(leg(
            D,
            "loopback/79990001122-b",
            Origin::Inbound,
            ChannelState::Ring,
            "79990001122",
            "pstn-sim",
            C,
        ))),
        Event::Ringing { channel: C.into() },
        Event::Ringing { channel: D.into() },
        Event::DialEnd {
            caller: Some(A.into()),
            callee: C.into(),
            status: DialStatus::Answer,
        },
        Event::Answered { channel: C.into() },
        Event::Answered { channel: D.into() },
        Event::Bridged {
            channel: A.into(),
            bridge: A.into(),
            peer: Some(C.into()),
        },
        Event::Bridged {
            channel: C.into(),
            bridge: A.into(),
            peer: Some(A.into()),
        },
        hung(D),
        Event::Unbridged {
            channel: A.into(),
            bridge: A.into(),
            peer: Some(C.into()),
        },
        Event::Unbridged {
            channel: C.into(),
            bridge: A.into(),
            peer: Some(A.into()),
        },
        hung(B),
        hung(A),
        hung(C),
    ];
    let events = mapped("originate-plain-mid-call-show-channels.txt");
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (i, (got, want)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i}");
    }
}

#[test]
fn uuid_transfer_is_reported_as_a_blind_transfer_and_the_race_loser_as_cancel() {
    let customer = "7d6c21f6-179a-40a5-880d-cec95344ae9e";
    let first_agent = "09b10917-e635-4eb4-9ec6-f434efb3f76c";
    let lost_race = "762d2d1b-964f-449c-8310-fd30eafaa55d";
    let new_agent = "e164ba20-eb77-4950-9bfd-65e7959ae06c";
    let events = mapped("sip-uuid-transfer.txt");
    let pos = |want: &Event| {
        events
            .iter()
            .position(|e| e == want)
            .unwrap_or_else(|| panic!("{want:?} missing from {events:#?}"))
    };
    let cancel = pos(&Event::DialEnd {
        caller: Some(customer.into()),
        callee: lost_race.into(),
        status: DialStatus::Cancel,
    });
    let first_bridge = pos(&Event::Bridged {
        channel: customer.into(),
        bridge: customer.into(),
        peer: Some(first_agent.into()),
    });
    let transfer = pos(&Event::Transferred(Transfer {
        kind: TransferKind::Blind,
        success: true,
        transferer: None,
        transferee: Some(customer.into()),
        second_transferer: None,
        target: None,
        exten: Some("1001".into()),
        context: Some("agents-sip".into()),
        bridge: None,
        orig_bridge: None,
        second_bridge: None,
    }));
    let second_bridge = pos(&Event::Bridged {
        channel: new_agent.into(),
        bridge: customer.into(),
        peer: Some(customer.into()),
    });
    assert!(
        first_bridge < transfer && transfer < second_bridge && cancel < transfer,
        "{cancel} {first_bridge} {transfer} {second_bridge}: {events:#?}"
    );
    // The new leg to 1001 belongs to the same call: the call keeps its identity.
    let created = events
        .iter()
        .find_map(|e| match e {
            Event::ChannelCreated(c) if c.id == new_agent => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.call, customer);
    assert_eq!(created.peer.as_deref(), Some(customer));
    assert!(!created.local);
    let inbound = events
        .iter()
        .find_map(|e| match e {
            Event::ChannelCreated(c) if c.id == customer => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(inbound.origin, Origin::Inbound);
    assert_eq!(inbound.state, ChannelState::Ring);
    assert_eq!(inbound.caller_number, "79161234567");
    assert_eq!(inbound.exten, "74950000000");
    assert_eq!(inbound.context, "public");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Transferred(_)))
            .count(),
        1,
        "exactly one transfer"
    );
}

#[test]
fn busy_agent_and_unanswered_agent_end_their_dial() {
    let events = mapped("agent-busy.txt");
    assert!(events.contains(&Event::DialEnd {
        caller: None,
        callee: "d89f6489-f915-476b-9cb5-36996861d8b4".into(),
        status: DialStatus::Busy,
    }));
    assert!(events.contains(&Event::HungUp {
        channel: "d89f6489-f915-476b-9cb5-36996861d8b4".into(),
        cause: 17,
        cause_text: "USER_BUSY".into(),
    }));
    let events = mapped("sip-click-to-call-noanswer.txt");
    let agent = "bdd9fd50-b2cb-4e72-bbf8-f3594bbd970c";
    let created = match &events[0] {
        Event::ChannelCreated(c) => c.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(created.endpoint.as_deref(), Some("1001"));
    assert_eq!(created.exten, "1001");
    assert_eq!(created.call_id.as_deref(), Some("crm-45"));
    assert!(events.contains(&Event::Ringing {
        channel: agent.into()
    }));
    assert!(events.contains(&Event::DialEnd {
        caller: None,
        callee: agent.into(),
        status: DialStatus::NoAnswer,
    }));
    assert!(events.contains(&Event::HungUp {
        channel: agent.into(),
        cause: 19,
        cause_text: "NO_ANSWER".into(),
    }));
}

#[test]
fn registrations_come_from_sofia_events() {
    let events = mapped("sip-register-unregister.txt");
    assert_eq!(
        events,
        vec![
            Event::Registration {
                extension: "1001".into(),
                online: false,
                contact: Some("\"\" <sip:1001-0x55a85cd614a0@127.0.0.1:5103>".into()),
            },
            Event::Registration {
                extension: "1001".into(),
                online: true,
                contact: Some("\"\" <sip:1001-0x564532e4c4a0@127.0.0.1:5103>".into()),
            },
        ]
    );
}

#[test]
fn json_and_plain_events_map_alike() {
    let plain = mapped("sip-click-to-call.txt");
    let json = mapped("sip-click-to-call-json.txt");
    let kinds = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(kinds(&plain), kinds(&json));
    assert!(
        json.iter()
            .any(|e| matches!(e, Event::RecordingStarted { .. }))
    );
}

#[test]
fn snapshots_read_show_channels_as_json() {
    assert_eq!(snapshot("{\"row_count\": 0}\n").unwrap(), vec![]);
    // The row layout of `show channels as json` (the columns of the recorded CSV reply).
    let body = r#"{"row_count":1,"rows":[{"uuid":"dccfb9ad-c57f-4297-868f-bf615353679b","direction":"inbound","created":"2026-11-23 06:50:01","created_epoch":"1795416601","name":"sofia/external/79161234567@127.0.0.1","state":"CS_EXECUTE","cid_name":"Customer","cid_num":"79161234567","ip_addr":"127.0.0.1","dest":"74950000000","application":"bridge","application_data":"user/1000@127.0.0.1,user/1001@127.0.0.1","dialplan":"XML","context":"public","callstate":"EARLY","call_uuid":"","presence_id":""}]}"#;
    let rows = snapshot(body).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "dccfb9ad-c57f-4297-868f-bf615353679b");
    assert_eq!(rows[0].call, rows[0].id);
    assert_eq!(rows[0].state, ChannelState::Ring);
    assert_eq!(rows[0].application, "bridge");
    assert!(snapshot("-ERR no reply").is_err());
}

/// The recorded `fixture`'s events, with the two `CHANNEL_CREATE`s of the loopback pair
/// named `pair` (`loopback/100`) swapped when `swap` (FreeSWITCH sends them in either
/// order); everything else as recorded.
fn mapped_with_creates(fixture: &str, pair: &str, swap: bool) -> Vec<Event> {
    let mut events = recorded_events(fixture);
    let create = |half: &str| {
        let name = format!("{pair}-{half}");
        events
            .iter()
            .position(|e| e.name() == "CHANNEL_CREATE" && e.headers.str("Channel-Name") == name)
            .unwrap()
    };
    let (a, b) = (create("a"), create("b"));
    assert!(a < b, "recorded with -a first");
    if swap {
        events.swap(a, b);
    }
    let (mapper, out) = map_all(&events);
    assert_eq!(mapper.live_legs(), 0);
    out
}

fn recorded_events(fixture: &str) -> Vec<EslEvent> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/freeswitch")
        .join(fixture);
    parse_all(&std::fs::read(path).unwrap())
        .unwrap()
        .iter()
        .filter_map(|env| event_of(env).unwrap())
        .collect()
}

fn map_all(events: &[EslEvent]) -> (Mapper, Vec<Event>) {
    let mut mapper = Mapper::new();
    let mut out = Vec::new();
    for ev in events {
        mapper.map(ev, &mut out);
    }
    (mapper, out.into_iter().map(|e| e.event).collect())
}

#[test]
fn a_loopback_b_half_announced_first_still_joins_its_a_partners_call() {
    let recorded = mapped_with_creates("customer-busy.txt", "loopback/100", false);
    let swapped = mapped_with_creates("customer-busy.txt", "loopback/100", true);
    let calls = |events: &[Event]| -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChannelCreated(c) => Some((c.name.clone(), c.call.clone())),
                _ => None,
            })
            .collect()
    };
    let b = calls(&recorded)
        .into_iter()
        .find(|(name, _)| name == "loopback/100-b")
        .unwrap();
    let a = calls(&recorded)
        .into_iter()
        .find(|(name, _)| name == "loopback/100-a")
        .unwrap();
    assert_eq!(a.1, b.1, "the -b half is in its -a partner's call");
    assert_eq!(
        swapped, recorded,
        "the same events, whichever half came first"
    );
}

#[test]
fn a_held_b_half_is_released_when_it_hangs_up_unpaired() {
    let mut events = recorded_events("customer-busy.txt");
    // The -a half never announced (only its -b): nothing is lost, only unpaired.
    events.retain(|e| {
        !(e.name() == "CHANNEL_CREATE" && e.headers.str("Channel-Name") == "loopback/100-a")
    });
    let (mapper, out) = map_all(&events);
    assert!(mapper.held.is_none());
    assert!(out.iter().any(|e| matches!(e,
        Event::ChannelCreated(c) if c.name == "loopback/100-b")));
    assert!(out.iter().any(|e| matches!(e, Event::HungUp { .. })));
}

#[test]
fn a_callcenter_queue_on_a_leg_is_reported_once_per_name() {
    let event = |name: &str, id: &str, queue: Option<&str>| {
        let mut headers = crate::pbx::fields::Fields::default();
        headers.push("Event-Name", name);
        headers.push("Unique-ID", id);
        headers.push("Channel-Name", "sofia/internal/1000@127.0.0.1");
        headers.push("Call-Direction", "outbound");
        if let Some(q) = queue {
            headers.push("variable_cc_queue", q);
        }
        crate::pbx::esl::codec::Event {
            headers,
            body: None,
        }
    };
    let mut mapper = Mapper::new();
    let mut out = Vec::new();
    // mod_callcenter originates the agent with cc_queue set; the caller gets it later.
    for ev in [
        event("CHANNEL_CREATE", "agent", Some("support@default")),
        event("CHANNEL_ANSWER", "agent", Some("support@default")),
        event("CHANNEL_PROGRESS", "caller", None),
        event("CHANNEL_BRIDGE", "caller", Some("support@default")),
        event("CHANNEL_UNBRIDGE", "caller", Some("support@default")),
        event("CHANNEL_HANGUP_COMPLETE", "caller", Some("sales@default")),
    ] {
        mapper.map(&ev, &mut out);
    }
    let queued: Vec<(String, String)> = out
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Queued { channel, queue } => Some((channel, queue)),
            _ => None,
        })
        .collect();
    let pair = |c: &str, q: &str| (c.to_string(), q.to_string());
    assert_eq!(
        queued,
        vec![
            pair("agent", "support@default"),
            pair("caller", "support@default"),
            pair("caller", "sales@default"),
        ]
    );
}

#[test]
fn a_leg_through_a_sofia_gateway_is_named_after_the_gateway() {
    // An outbound leg via gateway `provider1` (FreeSWITCH names the channel after the
    // profile and the number; the calling user's presence id comes along).
    let body = "Event-Name: CHANNEL_CREATE\nUnique-ID: 5f0c3a57-8d8e-4f43-9c43-5a2bbd0c7d11\nChannel-Call-UUID: 5f0c3a57-8d8e-4f43-9c43-5a2bbd0c7d11\nChannel-Name: sofia/external/79161234567\nCall-Direction: outbound\nChannel-State: CS_INIT\nChannel-Presence-ID: 1000%40127.0.0.1\nCaller-Destination-Number: 79161234567\nCaller-Context: default\nvariable_sip_profile_name: gateway\nvariable_sip_gateway_name: provider1\n\n";
    let ev = crate::pbx::esl::codec::parse_event_plain(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    Mapper::new().map(&ev, &mut out);
    let created = out
        .iter()
        .find_map(|e| match &e.event {
            Event::ChannelCreated(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a channel");
    assert_eq!(created.endpoint.as_deref(), Some("provider1"));
}
