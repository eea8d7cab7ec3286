//! The one integration-test binary: starts the appliance in-process on 127.0.0.1:0 (or
//! the compiled binary, for the smoke and CLI tests) and fakes every outside party as a
//! small port-0 server that records what it receives.

mod acme;
mod admission;
mod browser;
mod c2c;
mod call_events;
mod callbacks;
mod calls_table;
mod cli;
mod crash;
mod crm_entities;
mod crm_rules;
mod delivery;
mod doctor;
mod fake_flowlu;
mod fake_pbx;
mod fake_receiver;
mod flowlu_forms;
mod flowlu_iframe;
mod flowlu_pbx;
mod flowlu_support;
mod flowlu_tokens;
mod harness;
mod metrics;
mod ops;
mod outbox_cli;
mod pbx_ami;
mod pbx_ami_calls;
mod pbx_esl;
mod pbx_health;
mod pbx_owner;
mod pty;
mod recordings;
mod recordings_publish;
mod routing;
mod server;
mod settings_page;
mod smoke;
mod webhook;
mod webhook_calls;
mod webhook_lists;
mod wizard;
