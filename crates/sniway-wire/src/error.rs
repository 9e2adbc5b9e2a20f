//! Why a byte stream is not a ClientHello we accept.

/// A definite verdict that the bytes at the start of a connection are not a ClientHello sniway
/// accepts. Every variant means: close the connection, write nothing (a TLS alert would be a
/// reply, and the Gateway API conformance suite counts one as a failure).
///
/// "Need more bytes" is not an error: [`parse_client_hello`](crate::parse_client_hello) returns
/// `Ok(None)` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The first bytes are not a TLS record (for example an HTTP request or an SSH banner).
    #[error("not TLS: the first bytes are not a TLS record")]
    NotTls,
    /// An SSL 2.0 (or SSLv2-compatible) CLIENT-HELLO; RFC 8446 §D.5 forbids accepting it.
    #[error("SSLv2 ClientHello, which is not supported")]
    SslV2,
    /// A handshake record whose `legacy_record_version` is outside 0x0300..=0x0304.
    #[error("unsupported TLS record version")]
    UnsupportedRecordVersion,
    /// A record other than handshake (alert, change_cipher_spec, application data, ...) arrived
    /// before the ClientHello was complete.
    #[error("non-handshake record before the ClientHello was complete")]
    NotHandshake,
    /// The first handshake message is not a ClientHello (RFC 8446 §4: msg_type 1).
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// A record declares more than 2^14 bytes of plaintext (RFC 8446 §5.1, `record_overflow`).
    #[error("TLS record longer than 2^14 bytes")]
    RecordOverflow,
    /// The ClientHello, with the records carrying it, would not fit in
    /// [`MAX_HELLO_LEN`](crate::MAX_HELLO_LEN) bytes.
    #[error("ClientHello larger than the accepted limit")]
    TooLarge,
    /// A structure inside the records or the ClientHello is inconsistent; the string names it.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}
