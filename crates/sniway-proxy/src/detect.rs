//! Reads the ClientHello from a new connection into a bounded buffer, under one deadline.
//!
//! The hello may arrive however the client and the network cut it: one byte per TCP segment, or
//! split over several TLS records (RFC 8446 §5.1: "Handshake messages MAY be coalesced into a
//! single TLSPlaintext record or fragmented across several records"). Post-quantum key shares
//! make hellos of 1.5 KiB and more common. So this module reads until the parser in
//! `sniway-wire` says the hello is complete or invalid, with three bounds:
//!
//! - size: the buffer grows by doubling from [`INITIAL_BUFFER`] up to [`BUFFER_LIMIT`]. The
//!   parser's own cap, [`sniway_wire::MAX_HELLO_LEN`], already counts the record headers and it
//!   reaches a verdict once that many bytes are buffered; the margin above it only holds bytes
//!   that arrive in the same reads, so the limit here is a backstop;
//! - time: one deadline for the whole hello, not per read, so a trickling client cannot extend it;
//! - EOF: the client closing before the hello is complete ends the connection.
//!
//! Every byte read is kept, in order, and replayed to the backend: the proxy never consumes or
//! rewrites the client's bytes.
//!
//! Two things may come before the hello, both under the same deadline ([`read_preface`]): a PROXY
//! protocol header from a load balancer, when the socket accepts one (read exactly by
//! [`crate::proxy_protocol`], so the hello reader starts at the hello's first byte), and
//! PostgreSQL's `SSLRequest` (answered `S`) or `GSSENCRequest` (answered `N`), recognised in
//! the hello's own read loop by their exact 8 bytes ([`crate::postgres`]); the request's bytes are
//! dropped from the buffer without a copy, since nothing may follow them before the answer.

use std::io::ErrorKind;
use std::time::Duration;

use std::net::SocketAddr;

use sniway_wire::ClientHello;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::error::ConnError;
use crate::postgres::{self, Preamble};
use crate::proxy_protocol::{self, Accept, Received};

/// First buffer size: enough for most hellos, including ones with a post-quantum key share.
pub const INITIAL_BUFFER: usize = 4 * 1024;

/// Largest buffer the detection phase may hold: the parser's cap (records and their headers)
/// plus room for bytes read together with the end of the hello.
pub const BUFFER_LIMIT: usize = sniway_wire::MAX_HELLO_LEN + 16 * 1024;

/// What the client sent first: its parsed hello and every byte read so far.
#[derive(Debug)]
pub struct Detected {
    /// The parsed hello.
    pub hello: ClientHello,
    /// All bytes read from the client, the hello first; replayed to the backend unchanged.
    pub buffered: Vec<u8>,
    /// The PROXY protocol header accepted before the hello, if any.
    pub proxied: Option<Received>,
    /// What PostgreSQL preamble the client sent before the hello.
    pub postgres: PostgresPreamble,
}

/// The PostgreSQL requests a client sent before its hello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostgresPreamble {
    /// It sent `SSLRequest` and was answered `S`: the backend expects the same exchange.
    pub ssl: bool,
    /// It sent `GSSENCRequest` and was answered `N`.
    pub gssenc: bool,
}

/// Reads the PROXY header (as `accept` says, `peer` being the socket's peer), any PostgreSQL
/// preamble, and the ClientHello, all within `timeout` from the call.
pub async fn read_preface(
    io: &mut TcpStream,
    timeout: Duration,
    peer: SocketAddr,
    accept: &Accept,
) -> Result<Detected, ConnError> {
    let all = async {
        let proxied = proxy_protocol::read_header(io, peer, accept).await?;
        let mut d = read_hello_unbounded(io).await?;
        d.proxied = proxied;
        Ok(d)
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(r) => r,
        Err(_elapsed) => Err(ConnError::HelloTimeout(timeout)),
    }
}

/// Reads until a complete ClientHello is buffered (after a PostgreSQL preamble, if any), the
/// input is found invalid, the client closes, or `timeout` passes since the call; no PROXY
/// header is read.
///
/// XXX: each read re-parses the whole buffer, so a client trickling one byte per segment costs
/// O(n²) parse work in the hello size; the size cap and the deadline bound it.
pub async fn read_hello(io: &mut TcpStream, timeout: Duration) -> Result<Detected, ConnError> {
    let unused = SocketAddr::from(([0, 0, 0, 0], 0));
    read_preface(io, timeout, unused, &Accept::default()).await
}

async fn read_hello_unbounded(io: &mut TcpStream) -> Result<Detected, ConnError> {
    // No buffer until the client has sent something: a connection that is opened and left silent
    // costs no userspace memory until its deadline.
    io.readable().await.map_err(ConnError::HelloRead)?;
    let mut buf = vec![0u8; INITIAL_BUFFER];
    let mut filled = 0;
    let mut postgres = PostgresPreamble::default();
    loop {
        if filled == buf.len() {
            let grown = (buf.len() * 2).min(BUFFER_LIMIT);
            if grown == filled {
                return Err(ConnError::HelloTooLarge { limit: BUFFER_LIMIT });
            }
            buf.resize(grown, 0);
        }
        // A short read clears the readiness (`relay::read_once`), so the relay that follows does
        // not start with a read that finds nothing.
        let n = match crate::relay::read_once(io, &mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                io.readable().await.map_err(ConnError::HelloRead)?;
                continue;
            }
            Err(e) => return Err(ConnError::HelloRead(e)),
        };
        if n == 0 {
            return Err(ConnError::HelloEof { read: filled });
        }
        filled += n;
        // The PostgreSQL preamble, only at the start and before `SSLRequest` was answered.
        if !postgres.ssl {
            match postgres::classify(&buf[..filled]) {
                Preamble::None => {}
                Preamble::Partial => continue,
                Preamble::Ssl { extra: 0 } => {
                    io.write_all(&[postgres::WILL_TLS]).await.map_err(ConnError::HelloRead)?;
                    postgres.ssl = true;
                    filled = 0;
                    continue;
                }
                Preamble::GssEnc { extra: 0 } if !postgres.gssenc => {
                    io.write_all(&[postgres::WONT]).await.map_err(ConnError::HelloRead)?;
                    postgres.gssenc = true;
                    filled = 0;
                    continue;
                }
                Preamble::GssEnc { extra: 0 } => {
                    return Err(ConnError::PostgresPreamble("a second GSSENCRequest"));
                }
                Preamble::Ssl { .. } | Preamble::GssEnc { .. } => {
                    return Err(ConnError::PostgresPreamble("bytes sent before the answer"));
                }
            }
        }
        match sniway_wire::parse_client_hello(&buf[..filled]) {
            Ok(Some(hello)) => {
                buf.truncate(filled);
                return Ok(Detected { hello, buffered: buf, proxied: None, postgres });
            }
            Ok(None) => {}
            Err(e) => return Err(ConnError::BadHello(e)),
        }
    }
}
