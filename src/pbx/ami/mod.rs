//! Asterisk Manager Interface (AMI): the codec, the connection and its commands, and the
//! mapping of AMI events to normalized events.
//!
//! - [`codec`]: pure `check`/`parse` over a byte buffer (fuzzed, benchmarked).
//! - `client`: connect, login, ActionID correlation, event lists, keep-alive, resync.
//! - `commands`: the handle's commands as AMI actions.
//! - [`events`]: AMI event → normalized event.

pub(crate) mod client;
pub mod codec;
pub(crate) mod commands;
pub mod events;
