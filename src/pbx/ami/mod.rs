//! Asterisk Manager Interface (AMI): the codec, the connection and its commands, and the
//! mapping of AMI events to normalized events.
//!
//! - [`codec`]: pure `check`/`parse` over a byte buffer (fuzzed, benchmarked).
//! - `login`: connect, banner, MD5-challenge login with plaintext fallback.
//! - `client`: ActionID correlation, event lists, keep-alive, resync.
//! - `commands`: the handle's commands as AMI actions; the session event filters.
//! - [`events`]: AMI event → normalized event.

pub(crate) mod client;
pub mod codec;
pub(crate) mod commands;
pub mod events;
pub(crate) mod login;
