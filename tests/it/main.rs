//! The one integration-test binary: starts the appliance in-process on 127.0.0.1:0 (or
//! the compiled binary, for the smoke and CLI tests) and fakes every outside party as a
//! small port-0 server that records what it receives.

mod cli;
mod fake_pbx;
mod harness;
mod pbx_ami;
mod pbx_ami_calls;
mod pbx_esl;
mod pbx_health;
mod server;
mod smoke;
