//! Wire-test helpers: the fixture table, parse assertions and a PRNG. ClientHello builders and
//! record framing come from `sniway-testkit`.

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
