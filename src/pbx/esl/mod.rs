//! FreeSWITCH inbound event socket (ESL): the codec, the connection and its commands, and
//! the mapping of FreeSWITCH events to normalized events.
//!
//! - [`codec`]: pure `check`/`parse` over a byte buffer, event-plain and event-json bodies
//!   (fuzzed, benchmarked).
//! - `client`: connect, `auth`, subscription, FIFO reply correlation, `bgapi` jobs,
//!   keep-alive, resync.
//! - `commands`: the handle's commands as `api`/`bgapi` commands.
//! - [`events`]: FreeSWITCH event → normalized event.

pub(crate) mod client;
pub mod codec;
pub(crate) mod commands;
pub mod events;
