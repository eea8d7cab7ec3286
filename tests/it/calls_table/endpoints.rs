//! The PBX's own endpoint lists decide who is an employee before the digit rule does
//! (issue 13, item 2), through the fake PBX, the adapters and the tracker.
//!
//! The platform here numbers its extensions with 4 or more digits (`[calls]
//! extension_min_digits = 4`), so by the digit rule the recorded server's phones 100 and
//! 101 would be customers; on FreeSWITCH, with at most 3 (`extension_max_digits = 3`),
//! its users 1000 and 1001 would. The PBX's own answer (the recorded `PJSIPShowEndpoints`
//! of the same server, its recorded `list_users`) says they are phones: the calls come
//! out as they happened (README "SIP recordings": 100 / 1000 answered the customer's call
//! to the DID). Without that answer (the PBX refuses the actions) the same calls are
//! misread, which is what the list fixes.

use appliance::calls::{Call, Direction};
use appliance::config::Config;

use super::freeswitch::fs_inbound_answered;
use super::{ast_inbound_answered, check, run_on};
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::esl::{EslScript, FakeEsl};

#[tokio::test(flavor = "multi_thread")]
async fn the_pjsip_endpoint_list_makes_three_digit_phones_employees() {
    let mut calls = Config::defaults().calls;
    calls.extension_min_digits = 4;
    // No list: the fake answers PJSIPShowEndpoints and SIPpeers with the recorded
    // "Invalid/unknown command" errors (actions-responses).
    let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    misread(&run_on("asterisk", fake, None, &calls).await.0, "100");
    let fake = FakeAmi::start(vec![
        Script::new("sip-inbound-answered")
            .canned("PJSIPShowEndpoints", "sip-actions-registered", "eps-1", 1)
            .idle_resync(),
    ])
    .await;
    let (call, emits, others) = run_on("asterisk", fake, None, &calls).await;
    assert_eq!(others, 0);
    check(
        "ast inbound, PJSIP list",
        (call, emits),
        ast_inbound_answered(),
    );
}

/// By digits alone `ext` is no employee: the call is not the incoming call `ext` took.
fn misread(call: &Call, ext: &str) {
    assert_ne!(
        (call.direction, call.extension.as_deref()),
        (Direction::Incoming, Some(ext)),
        "by digits alone {ext} is no employee: {call:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_freeswitch_directory_makes_four_digit_users_employees() {
    let mut calls = Config::defaults().calls;
    calls.extension_max_digits = 3;
    let fake = FakeEsl::start(vec![
        EslScript::new("sip-inbound-answered").refuse("api list_users"),
    ])
    .await;
    misread(&run_on("freeswitch", fake, None, &calls).await.0, "1000");
    // The recorded list_users of the same switch (sip-actions-registered).
    let fake = FakeEsl::start(vec![EslScript::new("sip-inbound-answered").canned(
        "api list_users",
        "sip-actions-registered",
        1,
    )])
    .await;
    let (call, emits, others) = run_on("freeswitch", fake, None, &calls).await;
    assert_eq!(others, 0);
    let recording = "inbound-74950000000-dccfb9ad-c57f-4297-868f-bf615353679b.wav";
    check(
        "fs inbound, directory",
        (call, emits),
        fs_inbound_answered(recording),
    );
}
