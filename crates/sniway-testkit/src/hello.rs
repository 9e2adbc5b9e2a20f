//! ClientHello bytes and TLS record framing.
//!
//! [`HelloBuilder`] writes a ClientHello field by field, so a test can break exactly one rule or
//! shape the hello it needs (SNI, ALPN, supported_versions, padding, any other extension) and
//! cut it into records of any size. [`rustls_client_hello`] gives what a real client sends.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// Extension type `server_name` (RFC 6066).
pub const EXT_SERVER_NAME: u16 = 0;
/// Extension type `application_layer_protocol_negotiation` (RFC 7301).
pub const EXT_ALPN: u16 = 16;
/// Extension type `padding` (RFC 7685).
pub const EXT_PADDING: u16 = 21;
/// Extension type `supported_versions` (RFC 8446).
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Extension type `key_share` (RFC 8446).
pub const EXT_KEY_SHARE: u16 = 51;
/// Extension type `encrypted_client_hello` (draft-ietf-tls-esni).
pub const EXT_ECH: u16 = 0xfe0d;

/// The handshake bytes carried by a run of well-formed records (test input only).
pub fn handshake_bytes(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = records;
    while let [_, _, _, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        out.extend_from_slice(&tail[..len]);
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "input ends inside a record header");
    out
}

/// `handshake` framed as handshake records of at most `size` bytes each.
pub fn frame(handshake: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for fragment in handshake.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(fragment.len()).unwrap().to_be_bytes());
        out.extend_from_slice(fragment);
    }
    out
}

/// One TLS record of any content type.
pub fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![content_type, 3, 1];
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The (content type, first byte of the fragment) of each complete TLS record in `bytes`.
pub fn record_kinds(bytes: &[u8]) -> Vec<(u8, Option<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let end = (5 + len).min(rest.len());
        out.push((rest[0], rest.get(5).copied().filter(|_| len > 0)));
        rest = &rest[end..];
    }
    out
}

fn u8_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body);
    out
}

fn u16_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Builds ClientHellos field by field, so each test breaks exactly one rule.
///
/// [`Default`] is a TLS 1.3-style hello (32-byte session id, two suites, empty extensions
/// block); [`HelloBuilder::minimal`] the smallest valid one. Extensions are written in the
/// order they are added.
#[derive(Clone)]
pub struct HelloBuilder {
    /// `legacy_version`.
    pub legacy_version: u16,
    /// The 32 bytes of `random`.
    pub random: [u8; 32],
    /// `legacy_session_id` contents (without its length).
    pub session_id: Vec<u8>,
    /// Encoded `cipher_suites` vector contents (without its length).
    pub cipher_suites: Vec<u8>,
    /// `legacy_compression_methods` contents (without its length).
    pub compression: Vec<u8>,
    /// `None`: no extensions block at all (TLS 1.2 style).
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
    /// Bytes appended to the body after the extensions block.
    pub trailing: Vec<u8>,
}

impl Default for HelloBuilder {
    fn default() -> Self {
        Self {
            legacy_version: 0x0303,
            random: [0x11; 32],
            session_id: vec![0x5a; 32],
            cipher_suites: vec![0x13, 0x01, 0x13, 0x02],
            compression: vec![0],
            extensions: Some(Vec::new()),
            trailing: Vec::new(),
        }
    }
}

impl HelloBuilder {
    /// The smallest valid hello: TLS 1.2 legacy version, empty session id, one cipher suite
    /// (TLS_AES_128_GCM_SHA256), null compression, an empty extensions block.
    pub fn minimal() -> Self {
        Self {
            random: std::array::from_fn(|i| (i as u8).wrapping_mul(37)),
            session_id: Vec::new(),
            cipher_suites: vec![0x13, 0x01],
            ..Self::default()
        }
    }

    /// Adds an extension of any type with `data` as its body.
    pub fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions.get_or_insert_with(Vec::new).push((ext_type, data));
        self
    }

    /// server_name with one host_name entry.
    pub fn sni(self, name: &[u8]) -> Self {
        self.ext(EXT_SERVER_NAME, sni_list(&[(0, name)]))
    }

    /// ALPN with `names` in order.
    pub fn alpn(self, names: &[&[u8]]) -> Self {
        let list: Vec<u8> = names.iter().flat_map(|n| u8_prefixed(n)).collect();
        self.ext(EXT_ALPN, u16_prefixed(&list))
    }

    /// supported_versions with `versions` in order.
    pub fn supported_versions(self, versions: &[u16]) -> Self {
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.ext(EXT_SUPPORTED_VERSIONS, u8_prefixed(&list))
    }

    /// A padding extension (RFC 7685) of `len` zero bytes.
    pub fn padding(self, len: usize) -> Self {
        self.ext(EXT_PADDING, vec![0; len])
    }

    /// The ClientHello body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = self.legacy_version.to_be_bytes().to_vec();
        out.extend_from_slice(&self.random);
        out.extend(u8_prefixed(&self.session_id));
        out.extend(u16_prefixed(&self.cipher_suites));
        out.extend(u8_prefixed(&self.compression));
        if let Some(extensions) = &self.extensions {
            let mut block = Vec::new();
            for (ext_type, data) in extensions {
                block.extend_from_slice(&ext_type.to_be_bytes());
                block.extend(u16_prefixed(data));
            }
            out.extend(u16_prefixed(&block));
        }
        out.extend_from_slice(&self.trailing);
        out
    }

    /// The handshake message: type 1, uint24 length, body.
    pub fn message(&self) -> Vec<u8> {
        let body = self.body();
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut out = vec![1, len[1], len[2], len[3]];
        out.extend(body);
        out
    }

    /// The message in one record (or several, if over 2^14 bytes).
    pub fn records(&self) -> Vec<u8> {
        self.records_of(1 << 14)
    }

    /// The message in handshake records of at most `size` bytes each.
    pub fn records_of(&self, size: usize) -> Vec<u8> {
        frame(&self.message(), size)
    }
}

/// A server_name extension body from (name_type, name) entries.
pub fn sni_list(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let list: Vec<u8> = entries
        .iter()
        .flat_map(|(name_type, name)| {
            let mut entry = vec![*name_type];
            entry.extend(u16_prefixed(name));
            entry
        })
        .collect();
    u16_prefixed(&list)
}

/// A [minimal](HelloBuilder::minimal) ClientHello for `sni` in one record.
pub fn hello(sni: &str) -> Vec<u8> {
    HelloBuilder::minimal().sni(sni.as_bytes()).records()
}

/// A ClientHello the size of a post-quantum one and then some: an X25519MLKEM768 key share
/// (1216 bytes) and an X25519 one, plus padding up to about `total` bytes of handshake message.
pub fn large_hello(total: usize) -> HelloBuilder {
    let mut shares = Vec::new();
    for (group, len) in [(0x11ec_u16, 1216_usize), (0x001d, 32)] {
        shares.extend_from_slice(&group.to_be_bytes());
        shares.extend(u16_prefixed(&vec![0x42; len]));
    }
    let base = HelloBuilder::default()
        .sni(b"pq.example.com")
        .alpn(&[b"h2"])
        .supported_versions(&[0x0304])
        .ext(EXT_KEY_SHARE, u16_prefixed(&shares));
    let padding = total.saturating_sub(base.message().len() + 4);
    base.padding(padding)
}

/// The bytes of the ClientHello a rustls client with `config` sends first for `sni`.
pub fn rustls_client_hello(config: &Arc<ClientConfig>, sni: &str) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write hello");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_hello_is_laid_out_field_by_field() {
        let message = HelloBuilder::minimal().sni(b"a.example").padding(3).message();
        let sni = [0, 0, 0, 14, 0, 12, 0, 0, 9];
        let mut expected = vec![0x03, 0x03];
        expected.extend((0..32u8).map(|i| i.wrapping_mul(37)));
        expected.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0, 0, 25]);
        expected.extend_from_slice(&sni);
        expected.extend_from_slice(b"a.example");
        expected.extend_from_slice(&[0, 21, 0, 3, 0, 0, 0]);
        let len = u32::try_from(expected.len()).unwrap().to_be_bytes();
        assert_eq!(message[..4], [1, len[1], len[2], len[3]]);
        assert_eq!(message[4..], expected[..]);
    }

    #[test]
    fn framing_round_trips_at_every_record_size() {
        let message = large_hello(20_000).message();
        for size in [1, 7, 1 << 14] {
            let records = frame(&message, size);
            assert_eq!(handshake_bytes(&records), message, "size {size}");
            let kinds = record_kinds(&records);
            assert_eq!(kinds.len(), message.len().div_ceil(size), "size {size}");
            assert!(kinds.iter().all(|(kind, _)| *kind == 22));
        }
    }

    #[test]
    fn one_record_holds_a_small_hello() {
        let records = hello("a.example.com");
        assert_eq!(record_kinds(&records), [(22, Some(1))]);
        assert_eq!(records[5..], HelloBuilder::minimal().sni(b"a.example.com").message()[..]);
    }
}
