//! The per-disk NBD server: one export per unix socket.
//!
//! - `proto`: the wire format and the protocol's decisions (pure).
//! - `handshake`: drives the fixed-newstyle negotiation over a socket.
//! - `transmit`: the transmission phase: requests run concurrently, replies go out as they
//!   complete.
//! - `server`: the socket, who may connect, and one live connection at a time.

mod handshake;
pub mod proto;
mod server;
mod transmit;

pub use server::{NbdServer, ServerConfig, ServerError};
