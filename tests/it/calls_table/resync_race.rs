//! A call that starts between the login and the end of the live-channel list (issue 13,
//! problem 8), through the fake AMI: the list, taken before the call existed, names none
//! of its channels, yet the call is not closed as "ended while the PBX connection was
//! down": its answer and hang-up still count.

use super::{ast_inbound_answered, check, run_on};
use crate::fake_pbx::ami::{FakeAmi, Script};
use appliance::config::Config;

#[tokio::test(flavor = "multi_thread")]
async fn a_call_starting_while_the_pbx_lists_its_channels_is_kept_whole() {
    // FullyBooted, SuccessfulAuth, the caller's Newchannel and its first dialplan steps
    // go out before the (idle) list is answered.
    let fake = FakeAmi::start(vec![
        Script::new("sip-inbound-answered")
            .events_first("CoreShowChannels", 12)
            .idle_resync(),
    ])
    .await;
    let (call, emits, others) = run_on("asterisk", fake, None, &Config::defaults().calls).await;
    assert_eq!(others, 0);
    check(
        "ast inbound answered, started during the resync",
        (call, emits),
        ast_inbound_answered(),
    );
}
