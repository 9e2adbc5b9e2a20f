//! Bytes to facts: reads the ClientHello at the start of a TLS connection.
//!
//! ```text
//!   socket bytes so far ──► parse_client_hello ──► Ok(None)          read more (bounded)
//!   (caller's buffer)          │                   Ok(Some(hello))   route on hello.server_name,
//!                              │                                     replay buf to the backend
//!                              ▼                   Err(HelloError)   close, write nothing
//!                 record.rs: records → one handshake message
//!                 client_hello.rs: SNI, ALPN, versions, ECH
//! ```
//!
//! This crate does no I/O, keeps no state between calls and depends on no runtime: the data plane
//! owns the socket, the buffer and the deadline, and calls [`parse_client_hello`] on everything
//! read so far. It never writes a reply either; a passthrough gateway that cannot route a
//! connection closes it.
//!
//! What is checked is the structure (lengths, vectors, duplicates), enough that a truncated or
//! inconsistent hello is rejected rather than misread. Values such as cipher suites or key shares
//! are not interpreted: the backend terminates TLS and judges them.
#![warn(missing_docs)]

mod client_hello;
mod error;
mod reader;
mod record;

pub use client_hello::{ClientHello, ServerName, parse_client_hello};
pub use error::HelloError;

/// The most bytes sniway buffers for a ClientHello: the records carrying it, headers included,
/// must fit in this many bytes.
///
/// A handshake message may be up to 2^24 bytes (RFC 8446 §4), all of it peer-controlled memory
/// held before we know where the connection goes, so we accept far less. Typical hellos are
/// 200 to 2000 bytes; post-quantum key shares (X25519MLKEM768 adds 1184 bytes, and a client may
/// offer several) push them towards 16 KiB, which fits even when split into two-byte records.
pub const MAX_HELLO_LEN: usize = 64 * 1024;
