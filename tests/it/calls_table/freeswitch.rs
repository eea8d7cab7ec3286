//! The FreeSWITCH recordings of the call table ([`super`]): inbound, internal and
//! click-to-call over loopback and SIP.

use appliance::calls::{CallStatus, Direction};

use super::{Expect, LOOPBACK, USER, check, click, expect, run};

/// FreeSWITCH `sip-inbound-answered` (or its JSON twin), recorded in `recording`: 1000
/// took the customer's call to the DID.
pub(super) fn fs_inbound_answered(recording: &'static str) -> Expect {
    Expect {
        line: "74950000000",
        extension: Some("1000"),
        recording: Some(recording),
        cause: "16 NORMAL_CLEARING",
        times: Some((5, 7)),
        ..expect(Direction::Incoming, CallStatus::Answered, "79161234567")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_inbound_answered_missed_and_transferred() {
    // Plain: created 601.565206, 1000 answered 606.624572, hung up 613.184489.
    // JSON: created 621.384576, 1000 answered 626.464513, hung up 633.204497.
    for (fixture, recording) in [
        (
            "sip-inbound-answered",
            "inbound-74950000000-dccfb9ad-c57f-4297-868f-bf615353679b.wav",
        ),
        (
            "sip-inbound-answered-json",
            "inbound-74950000000-e2e76c2b-b9c9-4c57-b338-5231c0784114.wav",
        ),
    ] {
        let r = run("freeswitch", fixture, None).await;
        check(fixture, r, fs_inbound_answered(recording));
    }
    // Created 641.484495, everyone hung up at 661.029218 (NO_ANSWER).
    let r = run("freeswitch", "sip-inbound-missed", None).await;
    check(
        "fs missed",
        r,
        Expect {
            line: "74950000000",
            extension: Some("1001"),
            recording: Some(".wav"),
            cause: "NO_ANSWER",
            times: Some((20, 0)),
            ..expect(Direction::Incoming, CallStatus::Missed, "79161234567")
        },
    );
    // 1000 answers at 725.664490, uuid_transfer to 1001, which talks until 735.349953.
    let r = run("freeswitch", "sip-uuid-transfer", None).await;
    check(
        "fs transfer",
        r,
        Expect {
            line: "74950000000",
            extension: Some("1001"),
            recording: Some(".wav"),
            cause: "16 NORMAL_CLEARING",
            times: Some((3, 10)),
            state_after_connect: true,
            ..expect(Direction::Incoming, CallStatus::Answered, "79161234567")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_agent_to_agent_is_internal() {
    // 1001 answers at 765.584496 (created 762.524497), hung up 768.664499.
    let r = run("freeswitch", "sip-agent-to-agent", None).await;
    check(
        "fs internal",
        r,
        Expect {
            extension: Some("1000"),
            cause: "16 NORMAL_CLEARING",
            times: Some((3, 3)),
            ..expect(Direction::Internal, CallStatus::Answered, "1001")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_click_to_call() {
    // Plain: agent leg at 684.604802, customer answers 685.664497, end 687.646061.
    // JSON: agent leg at 699.684527, customer answers 700.764569, end 702.804526.
    for (fixture, recording) in [
        (
            "sip-click-to-call",
            "crm-79990001122-c2583ae7-7c42-4792-b09c-f8376c674584.wav",
        ),
        (
            "sip-click-to-call-json",
            "crm-79990001122-9508ee33-8817-421b-a465-7376d891a8ac.wav",
        ),
    ] {
        let r = run(
            "freeswitch",
            fixture,
            click("crm-43", "1000", "79990001122", USER),
        )
        .await;
        check(
            fixture,
            r,
            Expect {
                extension: Some("1000"),
                recording: Some(recording),
                cause: "16 NORMAL_CLEARING",
                times: Some((1, 2)),
                ..expect(Direction::Outgoing, CallStatus::Answered, "79990001122")
            },
        );
    }
    // The &bridge form: agent at 711.245031, customer answers 712.304518, end 714.325512.
    let r = run(
        "freeswitch",
        "sip-click-to-call-bridge",
        click("crm-44", "1000", "79990001122", USER),
    )
    .await;
    check(
        "fs bridge",
        r,
        Expect {
            extension: Some("1000"),
            cause: "16 NORMAL_CLEARING",
            times: Some((1, 2)),
            ..expect(Direction::Outgoing, CallStatus::Answered, "79990001122")
        },
    );
    // Loopback agents: 373.092332, customer 374.152337, end 376.132331.
    let r = run(
        "freeswitch",
        "originate-plain-mid-call-show-channels",
        click("crm-42", "100", "79990001122", LOOPBACK),
    )
    .await;
    check(
        "fs loopback",
        r,
        Expect {
            extension: Some("100"),
            recording: Some("crm-79990001122-18ebf15d-9f85-4dbe-9930-3ef17129f2ea.wav"),
            cause: "16 NORMAL_CLEARING",
            times: Some((1, 2)),
            ..expect(Direction::Outgoing, CallStatus::Answered, "79990001122")
        },
    );
    let r = run(
        "freeswitch",
        "api-blocking-ok",
        click("crm-42", "101", "79161234567", LOOPBACK),
    )
    .await;
    check(
        "fs blocking api",
        r,
        Expect {
            extension: Some("101"),
            recording: Some(".wav"),
            cause: "16 NORMAL_CLEARING",
            times: Some((1, 2)),
            ..expect(Direction::Outgoing, CallStatus::Answered, "79161234567")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_click_to_call_failures() {
    let r = run(
        "freeswitch",
        "agent-busy",
        click("crm-42", "102", "79990001122", LOOPBACK),
    )
    .await;
    check(
        "fs agent busy",
        r,
        Expect {
            extension: Some("102"),
            cause: "is busy",
            times: Some((0, 0)),
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    // 1001 rings from 798.664535 until NO_ANSWER at 813.004554.
    let r = run(
        "freeswitch",
        "sip-click-to-call-noanswer",
        click("crm-45", "1001", "79990001122", USER),
    )
    .await;
    check(
        "fs no answer",
        r,
        Expect {
            extension: Some("1001"),
            cause: "did not answer",
            times: Some((14, 0)),
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    let r = run(
        "freeswitch",
        "customer-busy",
        click("crm-42", "100", "79990000486", LOOPBACK),
    )
    .await;
    check("fs customer busy", r, fs_customer_busy());
}

/// FreeSWITCH `customer-busy`: 100's click-to-call to a busy customer.
pub(super) fn fs_customer_busy() -> Expect {
    Expect {
        extension: Some("100"),
        recording: Some(".wav"),
        cause: "17 USER_BUSY",
        times: Some((0, 0)),
        ..expect(Direction::Outgoing, CallStatus::Busy, "79990000486")
    }
}
