//! The ClientHello fields a passthrough gateway routes on (RFC 8446 §4.1.2).
//!
//! ```text
//! struct {
//!     ProtocolVersion legacy_version = 0x0303;
//!     Random random;                                  32 bytes
//!     opaque legacy_session_id<0..32>;
//!     CipherSuite cipher_suites<2..2^16-2>;
//!     opaque legacy_compression_methods<1..2^8-1>;
//!     Extension extensions<8..2^16-1>;                absent in some TLS 1.2 hellos
//! } ClientHello;
//! ```
//!
//! Only the structure is checked; values are not (a cipher suite or version we do not know is
//! the backend's business, since the gateway never terminates these connections).

use std::net::Ipv4Addr;

use crate::{HelloError, reader::Reader, record};

/// `ExtensionType.server_name` (RFC 6066 §3).
const EXT_SERVER_NAME: u16 = 0;
/// `ExtensionType.application_layer_protocol_negotiation` (RFC 7301 §3.1).
const EXT_ALPN: u16 = 16;
/// `ExtensionType.supported_versions` (RFC 8446 §4.2.1).
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// `ExtensionType.encrypted_client_hello` (draft-ietf-tls-esni, codepoint 0xfe0d).
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// `NameType.host_name` (RFC 6066 §3).
const NAME_TYPE_HOST_NAME: u8 = 0;
/// `opaque legacy_session_id<0..32>` (RFC 8446 §4.1.2).
const MAX_SESSION_ID_LEN: usize = 32;
/// A DNS name is at most 255 octets on the wire (RFC 1035 §2.3.4); longer is not a host name.
const MAX_HOST_NAME_LEN: usize = 255;

/// What a ClientHello says about where the client wants to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name from the server_name extension (RFC 6066 §3).
    pub server_name: ServerName,
    /// Protocol names offered in the ALPN extension (RFC 7301 §3.1), in the client's order; empty
    /// if the extension is absent.
    pub alpn: Vec<Vec<u8>>,
    /// The `legacy_version` field (`client_version` before TLS 1.3).
    pub legacy_version: u16,
    /// Versions from the supported_versions extension (RFC 8446 §4.2.1), in the client's order;
    /// empty if the extension is absent.
    pub supported_versions: Vec<u16>,
    /// Whether an encrypted_client_hello extension (0xfe0d) is present. If so, `server_name` is
    /// the outer, public name; the real one is encrypted to the backend.
    pub has_ech: bool,
    /// How many bytes at the start of the parsed buffer the records carrying the hello occupy:
    /// the hello lies within `buf[..record_bytes]`, and anything after it is later data.
    pub record_bytes: usize,
}

/// The server name a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// No server_name extension, or one without a host_name entry.
    None,
    /// A host name as sent: ASCII letters, digits, `-`, `_` and `.`, not lowercased, a trailing
    /// dot kept.
    Host(String),
    /// A host_name entry that cannot name a host: empty, over 255 bytes, an IPv4 literal ("Literal
    /// IPv4 and IPv6 addresses are not permitted in HostName", RFC 6066 §3), an empty label, or
    /// bytes outside the characters above (non-ASCII included). It routes nowhere, but it is not
    /// a protocol error.
    Invalid,
}

/// Parses the TLS records at the start of `buf` (as read from a client socket so far).
///
/// - `Ok(None)`: incomplete, read more bytes. This is only returned while `buf.len()` is below
///   [`MAX_HELLO_LEN`](crate::MAX_HELLO_LEN), so a caller that buffers up to that many bytes
///   always reaches a verdict.
/// - `Ok(Some(hello))`: a complete ClientHello was found in `buf[..hello.record_bytes]`; bytes
///   after it are ignored.
/// - `Err(e)`: not TLS, malformed, SSLv2 or too large: close the connection. Errors are reported
///   as soon as the bytes so far show them (a byte for plain text, four for an SSLv2 header).
///
/// The hello may be split over any number of TLS records and `buf` may end anywhere; the result
/// only depends on the bytes, so feeding growing prefixes of a stream is the way to use it.
///
/// Each call walks every record header in `buf`, so its cost is linear in the number of records
/// (at most `MAX_HELLO_LEN / 6`, for one-byte records). Nothing is copied while the hello is
/// incomplete; a hello in one record is parsed in place, a fragmented one is copied once. Calling
/// this once per read is quadratic only for a client that sends many tiny records slowly, which
/// the cap and the caller's deadline bound.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    let Some(handshake) = record::first_handshake_message(buf)? else { return Ok(None) };
    let mut msg = Reader::new(&handshake.message);
    if msg.u8() != Some(record::HANDSHAKE_CLIENT_HELLO) {
        return Err(HelloError::NotClientHello);
    }
    let len = msg.u24().ok_or(HelloError::Malformed("handshake header"))?;
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| msg.take(len))
        .ok_or(HelloError::Malformed("handshake header"))?;
    parse_body(body, handshake.record_bytes).map(Some)
}

/// Parses a ClientHello body: the handshake message without its four-byte header.
fn parse_body(body: &[u8], record_bytes: usize) -> Result<ClientHello, HelloError> {
    use HelloError::Malformed;

    let mut r = Reader::new(body);
    let legacy_version = r.u16().ok_or(Malformed("legacy_version"))?;
    r.take(32).ok_or(Malformed("random"))?;
    let session_id = r.sub_u8().ok_or(Malformed("legacy_session_id"))?;
    if session_id.left() > MAX_SESSION_ID_LEN {
        return Err(Malformed("legacy_session_id"));
    }
    let cipher_suites = r.sub_u16().ok_or(Malformed("cipher_suites"))?;
    if cipher_suites.is_empty() || cipher_suites.left() % 2 != 0 {
        return Err(Malformed("cipher_suites"));
    }
    let compression = r.sub_u8().ok_or(Malformed("legacy_compression_methods"))?;
    if compression.is_empty() {
        return Err(Malformed("legacy_compression_methods"));
    }

    let mut hello = ClientHello {
        server_name: ServerName::None,
        alpn: Vec::new(),
        legacy_version,
        supported_versions: Vec::new(),
        has_ech: false,
        record_bytes,
    };
    // A TLS 1.2 hello may end here: "the presence of extensions can be detected by determining
    // whether there are bytes following the compression_methods" (RFC 5246 §7.4.1.2).
    if r.is_empty() {
        return Ok(hello);
    }
    let mut extensions = r.sub_u16().ok_or(Malformed("extensions"))?;
    if !r.is_empty() {
        return Err(Malformed("extensions length"));
    }

    let mut seen = Vec::new();
    while !extensions.is_empty() {
        let ext_type = extensions.u16().ok_or(Malformed("extension"))?;
        let mut data = extensions.sub_u16().ok_or(Malformed("extension"))?;
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            EXT_SUPPORTED_VERSIONS => hello.supported_versions = parse_supported_versions(data)?,
            EXT_ENCRYPTED_CLIENT_HELLO => hello.has_ech = true,
            // Unknown extensions are skipped: "servers MUST ignore unrecognized extensions"
            // (RFC 8446 §4.2), and GREASE values (RFC 8701) must pass.
            _ => {}
        }
        data.rest();
    }
    // "There MUST NOT be more than one extension of the same type in a given extension block"
    // (RFC 8446 §4.2). Sorting keeps this linear-ish however many extensions a peer sends.
    seen.sort_unstable();
    if seen.windows(2).any(|pair| pair.first() == pair.last()) {
        return Err(Malformed("duplicate extension"));
    }
    Ok(hello)
}

/// RFC 6066 §3:
///
/// ```text
/// struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
/// opaque HostName<1..2^16-1>;
/// struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
/// ```
///
/// "The ServerNameList MUST NOT contain more than one name of the same name_type." Entries of
/// other name types are skipped; all known encodings give them the same `opaque<1..2^16-1>`.
fn parse_server_name(mut data: Reader<'_>) -> Result<ServerName, HelloError> {
    use HelloError::Malformed;

    let mut list = data.sub_u16().ok_or(Malformed("server_name list"))?;
    if !data.is_empty() || list.is_empty() {
        return Err(Malformed("server_name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8().ok_or(Malformed("server_name entry"))?;
        let mut name = list.sub_u16().ok_or(Malformed("server_name entry"))?;
        if name_type == NAME_TYPE_HOST_NAME {
            if host.is_some() {
                return Err(Malformed("server_name list has two host_name entries"));
            }
            host = Some(name.rest());
        }
    }
    Ok(host.map_or(ServerName::None, classify_host_name))
}

/// Keeps a host name that could name a host; anything else is [`ServerName::Invalid`].
fn classify_host_name(name: &[u8]) -> ServerName {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if name.is_empty() || name.len() > MAX_HOST_NAME_LEN || !name.iter().all(allowed) {
        return ServerName::Invalid;
    }
    let Ok(name) = String::from_utf8(name.to_vec()) else { return ServerName::Invalid };
    // "HostName contains the fully qualified DNS hostname of the server ... without a trailing
    // dot" (RFC 6066 §3); some clients send one anyway and routing ignores it, so it is allowed.
    let bare = name.strip_suffix('.').unwrap_or(&name);
    if bare.split('.').any(str::is_empty) || bare.parse::<Ipv4Addr>().is_ok() {
        return ServerName::Invalid;
    }
    ServerName::Host(name)
}

/// RFC 7301 §3.1: `opaque ProtocolName<1..2^8-1>; ProtocolName protocol_name_list<2..2^16-1>`.
fn parse_alpn(mut data: Reader<'_>) -> Result<Vec<Vec<u8>>, HelloError> {
    use HelloError::Malformed;

    let mut list = data.sub_u16().ok_or(Malformed("alpn list"))?;
    if !data.is_empty() || list.is_empty() {
        return Err(Malformed("alpn list"));
    }
    let mut names = Vec::new();
    while !list.is_empty() {
        let mut name = list.sub_u8().ok_or(Malformed("alpn protocol name"))?;
        if name.is_empty() {
            return Err(Malformed("alpn protocol name"));
        }
        names.push(name.rest().to_vec());
    }
    Ok(names)
}

/// RFC 8446 §4.2.1, in a ClientHello: `ProtocolVersion versions<2..254>`.
fn parse_supported_versions(mut data: Reader<'_>) -> Result<Vec<u16>, HelloError> {
    use HelloError::Malformed;

    let mut list = data.sub_u8().ok_or(Malformed("supported_versions"))?;
    if !data.is_empty() || list.is_empty() || list.left() % 2 != 0 {
        return Err(Malformed("supported_versions"));
    }
    let mut versions = Vec::with_capacity(list.left() / 2);
    while let Some(version) = list.u16() {
        versions.push(version);
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_keep_their_case_and_trailing_dot() {
        assert_eq!(classify_host_name(b"Example.COM."), ServerName::Host("Example.COM.".into()));
        assert_eq!(classify_host_name(b"a_b-c.example"), ServerName::Host("a_b-c.example".into()));
    }

    #[test]
    fn names_that_cannot_be_hosts_are_invalid() {
        for name in [
            &b""[..],
            b".",
            b"a..b",
            b".a",
            b"127.0.0.1",
            b"127.0.0.1.",
            b"::1",
            b"[::1]",
            b"caf\xc3\xa9.example",
            b"a b",
            b"a\0b",
            &[b'a'; 256][..],
        ] {
            assert_eq!(classify_host_name(name), ServerName::Invalid, "{name:?}");
        }
        assert_eq!(classify_host_name(&[b'a'; 255]), ServerName::Host("a".repeat(255)));
    }
}
