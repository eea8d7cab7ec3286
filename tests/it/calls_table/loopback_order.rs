//! FreeSWITCH announcing a loopback pair's `-b` half before its `-a` (issue 13, problem
//! 5): the recorded click-to-call with the two `CHANNEL_CREATE`s swapped, through the
//! fake event socket, the adapter and the tracker, is the same one call as recorded.

use super::freeswitch::fs_customer_busy;
use super::{LOOPBACK, check, click, run_on};
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use appliance::config::Config;

#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_b_half_announced_first_is_still_one_call() {
    let create = |half: &'static str| -> [&'static str; 2] { ["Event-Name: CHANNEL_CREATE", half] };
    for swapped in [false, true] {
        let mut script = EslScript::new("customer-busy");
        if swapped {
            script = script.swap_events(
                &create("Channel-Name: loopback/100-a\n"),
                &create("Channel-Name: loopback/100-b\n"),
            );
        }
        let fake = FakeEsl::start(vec![script]).await;
        let (call, emits, others) = run_on(
            "freeswitch",
            fake,
            click("crm-42", "100", "79990000486", LOOPBACK),
            &Config::defaults().calls,
        )
        .await;
        assert_eq!(others, 0, "swapped {swapped}: no phantom call");
        check(
            &format!("fs customer busy, swapped {swapped}"),
            (call, emits),
            fs_customer_busy(),
        );
    }
}
