//! Shared helpers: fixture table, record framing, a ClientHello builder and a PRNG.

use sniway_wire::{ClientHello, HelloError, ServerName, parse_client_hello};

/// A captured ClientHello and what it is known to say.
pub struct Fixture {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub server_name: ServerName,
    pub alpn: &'static [&'static str],
    pub legacy_version: u16,
    pub supported_versions: &'static [u16],
    pub records: usize,
}

macro_rules! fixture {
    ($file:literal) => {
        ($file, &include_bytes!(concat!("../data/", $file))[..])
    };
}

fn host(name: &str) -> ServerName {
    ServerName::Host(name.to_owned())
}

const TLS13_AND_DOWN: &[u16] = &[0x0304, 0x0303, 0x0302, 0x0301];

pub fn fixtures() -> Vec<Fixture> {
    let make = |(name, bytes): (&'static str, &'static [u8]),
                server_name: ServerName,
                alpn: &'static [&'static str],
                supported_versions: &'static [u16],
                records: usize| Fixture {
        name,
        bytes,
        server_name,
        alpn,
        legacy_version: 0x0303,
        supported_versions,
        records,
    };
    let h2: &[&str] = &["h2", "http/1.1"];
    vec![
        make(
            fixture!("curl-7.88-sni-capture.example.com.bin"),
            host("capture.example.com"),
            h2,
            TLS13_AND_DOWN,
            1,
        ),
        make(
            fixture!("curl-7.88-sni-capture.example.com-split-7-records.bin"),
            host("capture.example.com"),
            h2,
            TLS13_AND_DOWN,
            7,
        ),
        make(
            fixture!("openssl-3.0-sni-capture.example.com-alpn-h2.bin"),
            host("capture.example.com"),
            h2,
            TLS13_AND_DOWN,
            1,
        ),
        make(
            fixture!("openssl-3.0-sni-capture.example.com-62-alpn.bin"),
            host("capture.example.com"),
            MANY_ALPN,
            TLS13_AND_DOWN,
            1,
        ),
        make(
            fixture!("openssl-3.0-sni-capture.example.com-62-alpn-split-196-records.bin"),
            host("capture.example.com"),
            MANY_ALPN,
            TLS13_AND_DOWN,
            196,
        ),
        make(fixture!("openssl-3.0-no-sni.bin"), ServerName::None, &[], TLS13_AND_DOWN, 1),
        make(
            fixture!("openssl-3.0-sni-ip-literal.bin"),
            ServerName::Invalid,
            &[],
            TLS13_AND_DOWN,
            1,
        ),
        make(
            fixture!("openssl-3.0-tls12-sni-capture.example.com.bin"),
            host("capture.example.com"),
            &[],
            &[],
            1,
        ),
        make(
            fixture!("rustls-0.23-sni-capture.example.com-alpn-h2.bin"),
            host("capture.example.com"),
            h2,
            &[0x0304, 0x0303],
            1,
        ),
    ]
}

/// The ALPN list given to `openssl s_client -alpn` for the 62-protocol capture.
const MANY_ALPN: &[&str] = &[
    "h2",
    "http/1.1",
    "sniway-capture-protocol-01",
    "sniway-capture-protocol-02",
    "sniway-capture-protocol-03",
    "sniway-capture-protocol-04",
    "sniway-capture-protocol-05",
    "sniway-capture-protocol-06",
    "sniway-capture-protocol-07",
    "sniway-capture-protocol-08",
    "sniway-capture-protocol-09",
    "sniway-capture-protocol-10",
    "sniway-capture-protocol-11",
    "sniway-capture-protocol-12",
    "sniway-capture-protocol-13",
    "sniway-capture-protocol-14",
    "sniway-capture-protocol-15",
    "sniway-capture-protocol-16",
    "sniway-capture-protocol-17",
    "sniway-capture-protocol-18",
    "sniway-capture-protocol-19",
    "sniway-capture-protocol-20",
    "sniway-capture-protocol-21",
    "sniway-capture-protocol-22",
    "sniway-capture-protocol-23",
    "sniway-capture-protocol-24",
    "sniway-capture-protocol-25",
    "sniway-capture-protocol-26",
    "sniway-capture-protocol-27",
    "sniway-capture-protocol-28",
    "sniway-capture-protocol-29",
    "sniway-capture-protocol-30",
    "sniway-capture-protocol-31",
    "sniway-capture-protocol-32",
    "sniway-capture-protocol-33",
    "sniway-capture-protocol-34",
    "sniway-capture-protocol-35",
    "sniway-capture-protocol-36",
    "sniway-capture-protocol-37",
    "sniway-capture-protocol-38",
    "sniway-capture-protocol-39",
    "sniway-capture-protocol-40",
    "sniway-capture-protocol-41",
    "sniway-capture-protocol-42",
    "sniway-capture-protocol-43",
    "sniway-capture-protocol-44",
    "sniway-capture-protocol-45",
    "sniway-capture-protocol-46",
    "sniway-capture-protocol-47",
    "sniway-capture-protocol-48",
    "sniway-capture-protocol-49",
    "sniway-capture-protocol-50",
    "sniway-capture-protocol-51",
    "sniway-capture-protocol-52",
    "sniway-capture-protocol-53",
    "sniway-capture-protocol-54",
    "sniway-capture-protocol-55",
    "sniway-capture-protocol-56",
    "sniway-capture-protocol-57",
    "sniway-capture-protocol-58",
    "sniway-capture-protocol-59",
    "sniway-capture-protocol-60",
];

/// Parses and insists on a complete hello.
pub fn parse_complete(buf: &[u8]) -> ClientHello {
    match parse_client_hello(buf) {
        Ok(Some(hello)) => hello,
        other => panic!("expected a complete hello, got {other:?}"),
    }
}

/// Parses and insists on an error.
pub fn parse_err(buf: &[u8]) -> HelloError {
    match parse_client_hello(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The handshake bytes carried by a run of well-formed records (test input only).
pub fn handshake_bytes(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = records;
    while let [_, _, _, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        out.extend_from_slice(&tail[..len]);
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "fixture ends inside a record header");
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
#[derive(Clone)]
pub struct HelloBuilder {
    pub legacy_version: u16,
    pub session_id: Vec<u8>,
    /// Encoded `cipher_suites` vector contents (without its length).
    pub cipher_suites: Vec<u8>,
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
            session_id: vec![0x5a; 32],
            cipher_suites: vec![0x13, 0x01, 0x13, 0x02],
            compression: vec![0],
            extensions: Some(Vec::new()),
            trailing: Vec::new(),
        }
    }
}

pub const EXT_SERVER_NAME: u16 = 0;
pub const EXT_ALPN: u16 = 16;
pub const EXT_PADDING: u16 = 21;
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
pub const EXT_KEY_SHARE: u16 = 51;
pub const EXT_ECH: u16 = 0xfe0d;

impl HelloBuilder {
    pub fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions.get_or_insert_with(Vec::new).push((ext_type, data));
        self
    }

    /// server_name with one host_name entry.
    pub fn sni(self, name: &[u8]) -> Self {
        self.ext(EXT_SERVER_NAME, sni_list(&[(0, name)]))
    }

    pub fn alpn(self, names: &[&[u8]]) -> Self {
        let list: Vec<u8> = names.iter().flat_map(|n| u8_prefixed(n)).collect();
        self.ext(EXT_ALPN, u16_prefixed(&list))
    }

    pub fn supported_versions(self, versions: &[u16]) -> Self {
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.ext(EXT_SUPPORTED_VERSIONS, u8_prefixed(&list))
    }

    /// The ClientHello body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = self.legacy_version.to_be_bytes().to_vec();
        out.extend_from_slice(&[0x11; 32]);
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
        frame(&self.message(), 1 << 14)
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
    base.ext(EXT_PADDING, vec![0; padding])
}

/// xorshift64*: deterministic, dependency-free randomness for the robustness tests.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_be_bytes()[0]
    }
}
