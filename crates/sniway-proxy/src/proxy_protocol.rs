//! The PROXY protocol (HAProxy, "The PROXY protocol", versions 1 and 2): accepted from a load
//! balancer in front of a listener, and sent to backends. Headers are parsed and built with the
//! `ppp` crate.
//!
//! # Accepting
//!
//! The header precedes the ClientHello, so which listener a connection is for is not known while
//! it is read: the mode is per socket, the strictest of its listeners' (`Required` over
//! `Optional` over `Off`), and the trusted networks are the union of theirs ([`Accept::merge`]).
//!
//! - `Off`: nothing is read; the first bytes are the client's.
//! - `Required`: a peer outside the trusted networks is closed before anything is read; a
//!   connection that does not start with a header is closed.
//! - `Optional`: a connection whose first byte starts a header (`P` of v1's `PROXY`, `\r` of
//!   v2's signature; neither can start a TLS record or a PostgreSQL request) must carry a valid
//!   header from a trusted peer, or it is closed; any other first byte is a direct client.
//!
//! The header is read exactly: the queued bytes are peeked, and only the bytes that belong to the
//! header are consumed (all of those peeked while the header is incomplete, exactly its length
//! once it is complete), so the bytes after it stay in the socket for the ClientHello reader,
//! which neither copies nor skips anything. The header, the PostgreSQL preamble and the
//! ClientHello share the one hello deadline. A v1 header is at most 107 bytes (the
//! specification's bound); a v2 header is refused above [`MAX_V2_HEADER`] bytes (the TLVs load
//! balancers send are far smaller).
//!
//! What a header says: a `PROXY` command with TCP over IPv4 or IPv6 gives the client's address
//! (an IPv4-mapped IPv6 source is taken as its IPv4 address), which replaces the socket's peer
//! everywhere after (access log, per-client limits, logs, the header sent on). The v2 `LOCAL`
//! command ("the connection endpoints are the sender and the receiver"), v1 `UNKNOWN`, v2
//! `AF_UNSPEC` and `AF_UNIX` give no usable client address: the socket's peer is used, as the
//! specification asks of receivers.
//!
//! # Sending
//!
//! A backend whose policy asks for it gets a header before any other byte (before the
//! PostgreSQL `SSLRequest` and the replayed ClientHello, and in the same segment when the
//! socket takes it): the client's address (from the accepted header when there was one) and the
//! gateway's address that the client connected to. v2 carries `PP2_TYPE_AUTHORITY` (the SNI)
//! and `PP2_TYPE_ALPN` (the first protocol the client offered; on Terminate listeners the one
//! negotiated) when there are such values. When the two addresses are of different families (a
//! client address from a header over a gateway socket of the other family), the IPv4 one is
//! written as an IPv4-mapped IPv6 address and the header is `TCP6` / `AF_INET6`: the
//! specification asks that both addresses be of the advertised family, and recommends `UNKNOWN`
//! only "when it is not possible to correctly fill the PROXY line" (as HAProxy does).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};

use ppp::HeaderResult;
use ppp::PartialResult;
use sniway_model::settings::{AcceptProxyProtocol, Cidr, ProxyProtocolMode, ProxyProtocolVersion};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::error::ConnError;

/// Largest v2 header accepted (16-byte fixed part, addresses and TLVs).
pub const MAX_V2_HEADER: usize = 4096;

/// Bytes peeked at once while reading a header.
const PEEK: usize = 256;

/// A socket's PROXY protocol acceptance: its listeners' settings merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    /// The strictest mode of the socket's listeners.
    pub mode: ProxyProtocolMode,
    /// Every listener's trusted networks.
    pub trusted: Vec<Cidr>,
}

impl Accept {
    /// Merges the listeners' settings (`None`: off).
    pub fn merge<'a>(listeners: impl IntoIterator<Item = Option<&'a AcceptProxyProtocol>>) -> Self {
        let rank = |m: ProxyProtocolMode| match m {
            ProxyProtocolMode::Off => 0,
            ProxyProtocolMode::Optional => 1,
            ProxyProtocolMode::Required => 2,
        };
        let mut out = Accept::default();
        for p in listeners.into_iter().flatten() {
            if rank(p.mode) > rank(out.mode) {
                out.mode = p.mode;
            }
            if p.mode != ProxyProtocolMode::Off {
                for c in &p.trusted_cidrs {
                    if !out.trusted.contains(c) {
                        out.trusted.push(*c);
                    }
                }
            }
        }
        out
    }

    /// Whether a header from `peer` is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }
}

/// A header accepted from a load balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// 1 or 2.
    pub version: u8,
    /// The client's address; `None` for `LOCAL`, `UNKNOWN` and non-IP families (the socket's
    /// peer stands).
    pub client: Option<SocketAddr>,
}

/// Reads the PROXY header at the start of `io` as `accept` says, consuming exactly its bytes.
/// `Ok(None)`: no header (mode off, or an optional header absent).
pub async fn read_header(
    io: &mut TcpStream,
    peer: SocketAddr,
    accept: &Accept,
) -> Result<Option<Received>, ConnError> {
    let required = match accept.mode {
        ProxyProtocolMode::Off => return Ok(None),
        ProxyProtocolMode::Optional => false,
        ProxyProtocolMode::Required => true,
    };
    let trusted = accept.trusts(peer.ip());
    if required && !trusted {
        return Err(ConnError::ProxyUntrusted { peer: peer.ip() });
    }
    // Header bytes consumed so far, when it arrives in pieces.
    let mut head: Vec<u8> = Vec::new();
    let mut scratch = [0u8; PEEK];
    loop {
        let n = io.peek(&mut scratch).await.map_err(ConnError::HelloRead)?;
        if n == 0 {
            return Err(ConnError::HelloEof { read: head.len() });
        }
        if head.is_empty() && !matches!(scratch[0], b'P' | b'\r') {
            return if required { Err(ConnError::ProxyHeaderMissing) } else { Ok(None) };
        }
        if !trusted {
            return Err(ConnError::ProxyUntrusted { peer: peer.ip() });
        }
        let before = head.len();
        head.extend_from_slice(&scratch[..n]);
        match parse(&head)? {
            None => {
                // Every byte peeked belongs to the header: take them and wait for the rest.
                consume(io, &mut scratch[..n]).await?;
            }
            Some((received, len)) => {
                // The header ends within the bytes just peeked: take exactly its rest.
                consume(io, &mut scratch[..len - before]).await?;
                return Ok(Some(received));
            }
        }
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` while it is incomplete (every byte so far
/// may start one), the header and its length once complete. Bytes after it are not looked at.
pub fn parse(buf: &[u8]) -> Result<Option<(Received, usize)>, ConnError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    const V1_MAX: usize = 107;
    let bad = |e: String| Err(ConnError::ProxyHeader(e));
    if buf.first() == Some(&b'P') {
        // v1 is a line: judged once its end is there (the parser would take a prefix that ends
        // within a field for a bad field).
        let n = buf.len().min(V1_PREFIX.len());
        if buf[..n] != V1_PREFIX[..n] {
            return bad("not a PROXY protocol header".into());
        }
        match buf.iter().position(|&b| b == b'\n') {
            None if buf.len() < V1_MAX => return Ok(None),
            None => return bad(format!("v1 line longer than {V1_MAX} bytes")),
            Some(_) => {}
        }
    }
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        let declared = match &parsed {
            HeaderResult::V2(Err(ppp::v2::ParseError::Partial(_, len))) => 16 + len,
            _ => 0,
        };
        if buf.len().max(declared) > MAX_V2_HEADER {
            return bad(format!("longer than {MAX_V2_HEADER} bytes"));
        }
        return Ok(None);
    }
    let (received, len) = match parsed {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            (Received { version: 1, client }, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => None,
            };
            if h.len() > MAX_V2_HEADER {
                return bad(format!("longer than {MAX_V2_HEADER} bytes"));
            }
            (Received { version: 2, client }, h.len())
        }
        HeaderResult::V1(Err(e)) => return bad(format!("v1: {e}")),
        HeaderResult::V2(Err(e)) => return bad(format!("v2: {e}")),
    };
    let client = received.client.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
    Ok(Some((Received { client, ..received }, len)))
}

/// Reads exactly `buf.len()` bytes that a peek has shown are queued.
async fn consume(io: &mut TcpStream, buf: &mut [u8]) -> Result<(), ConnError> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ConnError::HelloEof { read: 0 }),
        Err(e) => Err(ConnError::HelloRead(e)),
    }
}

/// The header to send to a backend: `client` and `local` (the gateway's address the client
/// connected to), with the v2 authority and ALPN TLVs. Empty for [`ProxyProtocolVersion::Off`].
pub fn header(
    version: ProxyProtocolVersion,
    client: SocketAddr,
    local: SocketAddr,
    authority: Option<&str>,
    alpn: Option<&[u8]>,
) -> Vec<u8> {
    let (src, dst) = same_family(client, local);
    match version {
        ProxyProtocolVersion::Off => Vec::new(),
        ProxyProtocolVersion::V1 => ppp::v1::Addresses::from((src, dst)).to_string().into_bytes(),
        ProxyProtocolVersion::V2 => {
            let build = || -> std::io::Result<Vec<u8>> {
                let mut b = ppp::v2::Builder::with_addresses(
                    ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                    ppp::v2::Protocol::Stream,
                    (src, dst),
                );
                if let Some(a) = authority.filter(|a| !a.is_empty()) {
                    b = b.write_tlv(ppp::v2::Type::Authority, a.as_bytes())?;
                }
                if let Some(p) = alpn.filter(|p| !p.is_empty()) {
                    b = b.write_tlv(ppp::v2::Type::ALPN, p)?;
                }
                b.build()
            };
            // TLV values are a host name (at most 255 bytes) and one ALPN protocol (at most 255
            // bytes): far below the format's 64 KiB, so building cannot fail.
            build().unwrap_or_default()
        }
    }
}

/// Both addresses in one family: IPv4-mapped addresses as IPv4, and when the families still
/// differ, the IPv4 one mapped into IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() { (a, b) } else { (v6(a), v6(b)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Every proper prefix of a header is incomplete, the whole header is complete with its
    /// length whatever follows it, and the client address is read from it.
    fn every_prefix(header: &[u8], client: Option<&str>, version: u8) {
        for n in 0..header.len() {
            assert!(matches!(parse(&header[..n]), Ok(None)), "prefix of {n} bytes");
        }
        let mut more = header.to_vec();
        more.extend_from_slice(&[0x16, 0x03, 0x01, 0x00]);
        for bytes in [header, &more] {
            let (r, len) = parse(bytes).expect("valid").expect("complete");
            assert_eq!(len, header.len());
            assert_eq!(r.version, version);
            assert_eq!(r.client, client.map(|c| c.parse().unwrap()));
        }
    }

    #[test]
    fn headers_are_complete_exactly_at_their_end_and_incomplete_before() {
        every_prefix(
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n",
            Some("192.0.2.7:40000"),
            1,
        );
        every_prefix(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n", Some("[2001:db8::7]:1"), 1);
        every_prefix(b"PROXY UNKNOWN\r\n", None, 1);
        let v2 = header(
            ProxyProtocolVersion::V2,
            addr("192.0.2.7:40000"),
            addr("198.51.100.1:443"),
            Some("a.example"),
            Some(b"h2"),
        );
        every_prefix(&v2, Some("192.0.2.7:40000"), 2);
        let mapped = header(
            ProxyProtocolVersion::V2,
            addr("[::ffff:192.0.2.7]:1"),
            addr("[::1]:2"),
            None,
            None,
        );
        every_prefix(&mapped, Some("192.0.2.7:1"), 2);
        let local = ppp::v2::Builder::new(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::AddressFamily::IPv4 | ppp::v2::Protocol::Stream,
        )
        .write_payload([0u8; 12].as_slice())
        .unwrap()
        .build()
        .unwrap();
        every_prefix(&local, None, 2);
    }

    #[test]
    fn malformed_headers_are_refused_as_soon_as_they_show_it() {
        for bad in [
            &b"PROXZ"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 01 2\r\n",
            b"PROXY TCP5 1.1.1.1 1.1.1.1 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert!(parse(&long).is_err());
        let huge = [ppp::v2::PROTOCOL_PREFIX, &[0x21, 0x11, 0xff, 0xff]].concat();
        assert!(parse(&huge).is_err(), "a declared length above the limit");
    }

    #[test]
    fn the_strictest_mode_wins_and_trusted_networks_add_up() {
        let p = |mode, nets: &[&str]| AcceptProxyProtocol {
            mode,
            trusted_cidrs: nets.iter().map(|n| n.parse().unwrap()).collect(),
        };
        let a = p(ProxyProtocolMode::Optional, &["10.0.0.0/8"]);
        let b = p(ProxyProtocolMode::Required, &["192.168.0.0/16"]);
        let off = p(ProxyProtocolMode::Off, &["0.0.0.0/0"]);
        let m = Accept::merge([Some(&a), None, Some(&b), Some(&off)]);
        assert_eq!(m.mode, ProxyProtocolMode::Required);
        assert!(m.trusts("10.1.1.1".parse().unwrap()));
        assert!(m.trusts("192.168.3.4".parse().unwrap()));
        assert!(!m.trusts("8.8.8.8".parse().unwrap()), "an Off listener's networks do not count");
        assert_eq!(Accept::merge([None, None]).mode, ProxyProtocolMode::Off);
    }

    #[test]
    fn v1_headers_carry_both_addresses_in_one_family() {
        let h = header(
            ProxyProtocolVersion::V1,
            addr("192.0.2.7:40000"),
            addr("127.0.0.1:443"),
            None,
            None,
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n");
        let h = header(
            ProxyProtocolVersion::V1,
            addr("192.0.2.7:40000"),
            addr("[::1]:443"),
            None,
            None,
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 40000 443\r\n");
        let h = header(
            ProxyProtocolVersion::V1,
            addr("[::ffff:192.0.2.7]:1"),
            addr("127.0.0.1:2"),
            None,
            None,
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n");
        assert!(
            header(ProxyProtocolVersion::Off, addr("1.2.3.4:1"), addr("1.2.3.4:2"), None, None)
                .is_empty()
        );
    }

    #[test]
    fn v2_headers_carry_the_authority_and_alpn_tlvs() {
        let h = header(
            ProxyProtocolVersion::V2,
            addr("[2001:db8::7]:40000"),
            addr("[2001:db8::1]:443"),
            Some("db.example.test"),
            Some(b"postgresql"),
        );
        let parsed = ppp::v2::Header::try_from(h.as_slice()).unwrap();
        assert_eq!(parsed.command, ppp::v2::Command::Proxy);
        assert_eq!(parsed.len(), h.len());
        match parsed.addresses {
            ppp::v2::Addresses::IPv6(a) => {
                assert_eq!(a.source_address, "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap());
                assert_eq!((a.source_port, a.destination_port), (40000, 443));
            }
            other => panic!("{other:?}"),
        }
        let tlvs: Vec<(u8, Vec<u8>)> =
            parsed.tlvs().map(|t| t.unwrap()).map(|t| (t.kind, t.value.to_vec())).collect();
        assert_eq!(
            tlvs,
            vec![
                (ppp::v2::Type::Authority.into(), b"db.example.test".to_vec()),
                (ppp::v2::Type::ALPN.into(), b"postgresql".to_vec()),
            ]
        );
        let bare =
            header(ProxyProtocolVersion::V2, addr("192.0.2.7:1"), addr("127.0.0.1:2"), None, None);
        assert_eq!(bare.len(), 16 + 12, "no TLV without an authority or ALPN");
    }
}
