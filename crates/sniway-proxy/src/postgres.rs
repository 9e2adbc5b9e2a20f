//! PostgreSQL's TLS preamble, on both sides of the gateway.
//!
//! A PostgreSQL client (libpq before 17, and every libpq with the default
//! `sslnegotiation=postgres`) does not start with a ClientHello: it first sends an 8-byte
//! `SSLRequest` and waits for one byte, `S` (the server will speak TLS) or `N` (it will not),
//! before its ClientHello (PostgreSQL documentation, "Protocol Flow", §55.2.10 SSL Session
//! Encryption, and "Message Formats": `SSLRequest` is `Int32(8) Int32(80877103)`,
//! `GSSENCRequest` is `Int32(8) Int32(80877104)`). So on every TLS listener:
//!
//! - a connection whose first 8 bytes are exactly [`SSL_REQUEST`] is answered `S`, and its
//!   ClientHello is then read and routed by SNI as any other;
//! - one whose first 8 bytes are exactly [`GSSENC_REQUEST`] is answered `N` (the gateway does not
//!   speak GSSAPI encryption); the client may then send `SSLRequest` (libpq does, with
//!   `gssencmode=prefer`);
//! - any other bytes go to the ClientHello parser unchanged, with its errors: only these exact
//!   bytes trigger the exchange. The check costs one byte comparison for a TLS client
//!   (whose first byte is `0x16`).
//!
//! A client that sends anything after a request before reading the answer is closed: PostgreSQL
//! servers refuse such bytes too, since they were sent before encryption was agreed and may have
//! been injected (CVE-2021-23214).
//!
//! On a Passthrough listener the backend is a PostgreSQL server that expects the same preamble,
//! so after connecting the gateway sends `SSLRequest` itself, requires exactly `S` within
//! the connect timeout (`N`, an error message or the end of stream closes the client, which has
//! already been told `S`), then replays the ClientHello and relays. On a Terminate listener the
//! gateway ends TLS itself: the backend receives the plaintext PostgreSQL protocol, without a
//! preamble.
//!
//! PostgreSQL 17's direct TLS (`sslnegotiation=direct`) starts with a ClientHello offering the
//! ALPN protocol `postgresql`: it needs nothing here and is plain passthrough.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ConnError;

/// `SSLRequest`: length 8, request code 80877103 (`0x04d2162f`).
pub const SSL_REQUEST: [u8; 8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f];

/// `GSSENCRequest`: length 8, request code 80877104 (`0x04d21630`).
pub const GSSENC_REQUEST: [u8; 8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x30];

/// The server's answer that it will speak TLS.
pub const WILL_TLS: u8 = b'S';

/// The server's answer that it will not (speak GSSAPI encryption, here).
pub const WONT: u8 = b'N';

/// What the first bytes of a connection are, as far as the preamble goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preamble {
    /// A proper prefix of a request: read more.
    Partial,
    /// Exactly `SSLRequest`, with `extra` bytes after it.
    Ssl {
        /// Bytes received after the request.
        extra: usize,
    },
    /// Exactly `GSSENCRequest`, with `extra` bytes after it.
    GssEnc {
        /// Bytes received after the request.
        extra: usize,
    },
    /// Anything else (a ClientHello, or bytes for the hello parser to refuse).
    None,
}

/// Classifies the bytes received so far. Empty input is [`Preamble::Partial`].
pub fn classify(buf: &[u8]) -> Preamble {
    // Cheap exit for TLS (0x16) and everything else that cannot start a request.
    if buf.first().is_some_and(|&b| b != 0) {
        return Preamble::None;
    }
    let n = buf.len().min(8);
    let ssl = buf[..n] == SSL_REQUEST[..n];
    let gss = buf[..n] == GSSENC_REQUEST[..n];
    match (ssl, gss, buf.len() >= 8) {
        (false, false, _) => Preamble::None,
        (_, _, false) => Preamble::Partial,
        (true, _, true) => Preamble::Ssl { extra: buf.len() - 8 },
        (false, true, true) => Preamble::GssEnc { extra: buf.len() - 8 },
    }
}

/// The backend side: with `unsent` (the rest of what the gateway sends first: a PROXY header's
/// tail and `SSLRequest`) written, reads the backend's one-byte answer, which must be `S`, all
/// within `timeout`.
pub async fn negotiate_backend(
    backend: &mut TcpStream,
    unsent: &[u8],
    timeout: Duration,
) -> Result<(), ConnError> {
    let exchange = async {
        if !unsent.is_empty() {
            backend.write_all(unsent).await.map_err(|e| e.to_string())?;
        }
        let mut answer = [0u8; 1];
        match backend.read(&mut answer).await {
            Ok(0) => Err("closed instead of answering SSLRequest".to_string()),
            Ok(_) if answer[0] == WILL_TLS => Ok(()),
            Ok(_) if answer[0] == WONT => {
                Err("answered N to SSLRequest: TLS is not enabled on the server".to_string())
            }
            Ok(_) => Err(format!("answered {:#04x} to SSLRequest instead of S", answer[0])),
            Err(e) => Err(format!("reading the answer to SSLRequest: {e}")),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r.map_err(ConnError::PostgresBackend),
        Err(_) => {
            Err(ConnError::PostgresBackend(format!("no answer to SSLRequest within {timeout:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_request_bytes_are_recognised() {
        assert_eq!(classify(&[]), Preamble::Partial);
        for n in 1..8 {
            assert_eq!(classify(&SSL_REQUEST[..n]), Preamble::Partial, "{n}");
            assert_eq!(classify(&GSSENC_REQUEST[..n]), Preamble::Partial, "{n}");
        }
        assert_eq!(classify(&SSL_REQUEST), Preamble::Ssl { extra: 0 });
        assert_eq!(classify(&GSSENC_REQUEST), Preamble::GssEnc { extra: 0 });
        let mut more = SSL_REQUEST.to_vec();
        more.push(0x16);
        assert_eq!(classify(&more), Preamble::Ssl { extra: 1 });
        // A cancel request, a startup message, a TLS record: not the preamble.
        assert_eq!(classify(&[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e]), Preamble::None);
        assert_eq!(classify(&[0, 0, 0, 8, 0, 3, 0, 0]), Preamble::None);
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Preamble::None);
        assert_eq!(classify(&[0, 1]), Preamble::None);
    }
}
