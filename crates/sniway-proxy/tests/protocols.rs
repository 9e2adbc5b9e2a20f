//! What comes before and around the ClientHello, end to end on loopback: PostgreSQL's
//! `SSLRequest` and `GSSENCRequest`, PROXY protocol headers accepted from a load balancer and
//! sent to backends, and clients that name no route (noSni, noMatch: Close, Alert, Backend).
//!
//! The backends here are real TCP servers that speak the backend's side: a PostgreSQL-like
//! server that answers `SSLRequest` with a chosen byte, and a server that parses the PROXY header
//! it receives (with `ppp`) and reports what it says on its first line.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sniway_model::settings::{
    AcceptProxyProtocol, BackendSettings, ProxyProtocolMode, ProxyProtocolVersion, Unmatched,
};
use sniway_model::{
    Backend, DefaultRoutes, ListenerSettings, ListenerTable, Route, RoutingTable, WeightedBackend,
};
use sniway_proxy::ProxyConfig;
use sniway_proxy::postgres::{GSSENC_REQUEST, SSL_REQUEST};
use sniway_testkit::{HelloBuilder, hello};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === tables ===

fn table(listeners: Vec<Arc<ListenerTable>>) -> Arc<RoutingTable> {
    Arc::new(RoutingTable { sockets: vec![mk_socket("127.0.0.1:0", listeners)] })
}

/// A backend that gets a PROXY header of `version`.
fn with_proxy(name: &str, addr: SocketAddr, version: ProxyProtocolVersion) -> WeightedBackend {
    let mut wb = mk_endpoints(name, &[addr]);
    wb.settings = Arc::new(BackendSettings { proxy_protocol: Some(version), ..Default::default() });
    wb
}

fn accepting(mode: ProxyProtocolMode, nets: &[&str]) -> ListenerSettings {
    ListenerSettings {
        proxy_protocol: Some(AcceptProxyProtocol {
            mode,
            trusted_cidrs: nets.iter().map(|n| n.parse().expect("network")).collect(),
        }),
        ..Default::default()
    }
}

// === backends ===

/// What a backend expects before the client's bytes.
#[derive(Clone, Copy)]
struct Expect {
    /// A PROXY header.
    proxy: bool,
    /// PostgreSQL's SSLRequest, answered with this byte (the server closes unless it is `S`).
    postgres: Option<u8>,
}

/// A backend that reads what `expect` says, then writes
/// `NAME src=CLIENT authority=SNI alpn=PROTO\n` (`-` for what it did not get) and echoes.
async fn backend(name: &str, expect: Expect) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            tokio::spawn(serve_backend(s, name.clone(), expect));
        }
    });
    addr
}

async fn serve_backend(mut s: TcpStream, name: String, expect: Expect) {
    let mut report = (String::from("-"), String::from("-"), String::from("-"));
    if expect.proxy {
        match read_proxy_header(&mut s).await {
            Some(r) => report = r,
            None => return,
        }
    }
    if let Some(answer) = expect.postgres {
        let mut req = [0u8; 8];
        if s.read_exact(&mut req).await.is_err() || req != SSL_REQUEST {
            let _ = s.write_all(b"not an SSLRequest\n").await;
            return;
        }
        let _ = s.write_all(&[answer]).await;
        if answer != b'S' {
            return;
        }
    }
    let (src, authority, alpn) = report;
    let line = format!("{name} src={src} authority={authority} alpn={alpn}\n");
    let (mut r, mut w) = s.split();
    if w.write_all(line.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// Reads a PROXY header one byte at a time (so nothing after it is consumed) and gives its
/// source address, authority and ALPN.
async fn read_proxy_header(s: &mut TcpStream) -> Option<(String, String, String)> {
    let mut buf = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).await.is_err() {
            return None;
        }
        buf.push(b[0]);
        // A v1 line is only judged once complete.
        if buf[0] == b'P' && b[0] != b'\n' {
            continue;
        }
        let parsed = ppp::HeaderResult::parse(&buf);
        if ppp::PartialResult::is_incomplete(&parsed) {
            assert!(buf.len() < 1024, "header too long");
            continue;
        }
        return Some(match parsed {
            ppp::HeaderResult::V1(Ok(h)) => {
                let src = match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        format!("{}:{}", a.source_address, a.source_port)
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        format!("[{}]:{}", a.source_address, a.source_port)
                    }
                    ppp::v1::Addresses::Unknown => "unknown".into(),
                };
                (src, "-".into(), "-".into())
            }
            ppp::HeaderResult::V2(Ok(h)) => {
                let src = match h.addresses {
                    ppp::v2::Addresses::IPv4(a) => {
                        format!("{}:{}", a.source_address, a.source_port)
                    }
                    ppp::v2::Addresses::IPv6(a) => {
                        format!("[{}]:{}", a.source_address, a.source_port)
                    }
                    _ => "unspec".into(),
                };
                let (mut authority, mut alpn) = (String::from("-"), String::from("-"));
                for tlv in h.tlvs() {
                    let tlv = tlv.expect("valid TLV");
                    let value = String::from_utf8_lossy(&tlv.value).into_owned();
                    if tlv.kind == u8::from(ppp::v2::Type::Authority) {
                        authority = value;
                    } else if tlv.kind == u8::from(ppp::v2::Type::ALPN) {
                        alpn = value;
                    }
                }
                (src, authority, alpn)
            }
            other => panic!("backend got a bad PROXY header: {other:?}"),
        });
    }
}

const PLAIN: Expect = Expect { proxy: false, postgres: None };
const PROXIED: Expect = Expect { proxy: true, postgres: None };

// === clients ===

/// Writes `bytes` in two parts split at `at`, each on its own (TCP_NODELAY: separate segments
/// unless the stack coalesces them; the result must not depend on it).
async fn write_split(s: &mut TcpStream, bytes: &[u8], at: usize) {
    s.write_all(&bytes[..at]).await.expect("write");
    s.flush().await.expect("flush");
    tokio::task::yield_now().await;
    s.write_all(&bytes[at..]).await.expect("write");
}

/// Sends the hello for `sni` (after `before`) and returns the backend's report line, checking
/// that the backend got the hello unchanged.
async fn report_after(addr: SocketAddr, before: &[u8], sni: &str) -> String {
    let mut s = connect(addr).await;
    let h = hello(sni);
    let mut all = before.to_vec();
    all.extend_from_slice(&h);
    s.write_all(&all).await.expect("write");
    let line = read_line(&mut s).await;
    assert_eq!(read_exact(&mut s, h.len()).await, h, "the backend got the hello unchanged");
    line
}

fn v1_header(src: &str, dst: &str) -> Vec<u8> {
    let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    ppp::v1::Addresses::from((src, dst)).to_string().into_bytes()
}

fn v2_header(src: &str, dst: &str) -> Vec<u8> {
    let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .write_tlv(ppp::v2::Type::NoOp, b"padding")
    .expect("tlv")
    .build()
    .expect("v2 header")
}

fn v2_local() -> Vec<u8> {
    ppp::v2::Builder::new(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
    )
    .build()
    .expect("v2 local header")
}

// === PostgreSQL ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_ssl_request_is_answered_s_and_the_backend_gets_its_own_before_the_hello() {
    let pg = backend("pg", Expect { proxy: false, postgres: Some(b'S') }).await;
    let other = backend("other", PLAIN).await;
    let p = start(table(vec![mk_listener_with(
        None,
        vec![
            (Some("db.example.test"), mk_route("db", vec![mk_endpoints("pg", &[pg])])),
            (Some("app.example.test"), mk_route("app", vec![mk_endpoints("other", &[other])])),
        ],
        Default::default(),
        Default::default(),
    )]))
    .await;
    // Every split of the request, then the hello once `S` came back.
    for at in 1..SSL_REQUEST.len() {
        let mut s = connect(p.addr).await;
        write_split(&mut s, &SSL_REQUEST, at).await;
        assert_eq!(read_exact(&mut s, 1).await, b"S", "split at {at}");
        let h = hello("db.example.test");
        s.write_all(&h).await.expect("hello");
        assert_eq!(read_line(&mut s).await, "pg src=- authority=- alpn=-");
        assert_eq!(read_exact(&mut s, h.len()).await, h);
    }
    // Routing by SNI is unchanged, and a plain TLS client on the same socket is untouched.
    assert_eq!(
        report_after(p.addr, &[], "app.example.test").await,
        "other src=- authority=- alpn=-"
    );
    let text = p.proxy.metrics_text();
    assert!(
        text.contains("sniway_postgres_requests_total{address=\"127.0.0.1:0\",request=\"ssl\"} 7"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_17_direct_tls_is_plain_passthrough() {
    let pg = backend("pg", PLAIN).await;
    let p = start(mk_table(vec![(
        Some("db.example.test"),
        mk_route("db", vec![mk_endpoints("pg", &[pg])]),
    )]))
    .await;
    let mut s = connect(p.addr).await;
    let h = HelloBuilder::minimal().sni(b"db.example.test").alpn(&[b"postgresql"]).records();
    s.write_all(&h).await.expect("hello");
    assert_eq!(read_line(&mut s).await, "pg src=- authority=- alpn=-");
    assert_eq!(read_exact(&mut s, h.len()).await, h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gssenc_request_is_answered_n_and_may_be_followed_by_an_ssl_request() {
    let pg = backend("pg", Expect { proxy: false, postgres: Some(b'S') }).await;
    let p = start(mk_table(vec![(None, mk_route("db", vec![mk_endpoints("pg", &[pg])]))])).await;
    for at in 1..GSSENC_REQUEST.len() {
        let mut s = connect(p.addr).await;
        write_split(&mut s, &GSSENC_REQUEST, at).await;
        assert_eq!(read_exact(&mut s, 1).await, b"N", "split at {at}");
        s.write_all(&SSL_REQUEST).await.expect("ssl request");
        assert_eq!(read_exact(&mut s, 1).await, b"S");
        let h = hello("db.example.test");
        s.write_all(&h).await.expect("hello");
        assert_eq!(read_line(&mut s).await, "pg src=- authority=- alpn=-");
        assert_eq!(read_exact(&mut s, h.len()).await, h);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_answers_n_to_the_ssl_request_closes_the_client() {
    let pg = backend("pg", Expect { proxy: false, postgres: Some(b'N') }).await;
    let p = start(mk_table(vec![(None, mk_route("db", vec![mk_endpoints("pg", &[pg])]))])).await;
    let mut s = connect(p.addr).await;
    s.write_all(&SSL_REQUEST).await.expect("ssl request");
    assert_eq!(read_exact(&mut s, 1).await, b"S");
    s.write_all(&hello("db.example.test")).await.expect("hello");
    assert_closed_silently(&mut s).await;
    let text = p.proxy.metrics_text();
    assert!(text.contains("reason=\"postgres_backend\"} 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_exact_request_bytes_start_the_postgres_exchange() {
    let pg = backend("pg", PLAIN).await;
    let table = mk_table(vec![(None, mk_route("db", vec![mk_endpoints("pg", &[pg])]))]);
    let config = ProxyConfig { hello_timeout: Duration::from_secs(3600), ..Default::default() };
    let p = start_with(table, config, Duration::from_secs(5)).await;
    let mut near_misses = Vec::new();
    for i in 0..8 {
        let mut b = SSL_REQUEST;
        b[i] ^= 0x01;
        near_misses.push(b.to_vec());
    }
    // A startup message without TLS, and a request followed by bytes before its answer.
    near_misses.push(vec![0, 0, 0, 9, 0, 3, 0, 0, 0]);
    let mut early = SSL_REQUEST.to_vec();
    early.extend_from_slice(&hello("db.example.test"));
    near_misses.push(early);
    for bytes in near_misses {
        let mut s = connect(p.addr).await;
        s.write_all(&bytes).await.expect("write");
        // Closed with nothing written (no `S`): with a one-hour deadline, only a refusal can
        // close it within the wait.
        assert_closed_silently(&mut s).await;
    }
}

// === PROXY protocol: accepting ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_header_gives_the_client_address_to_the_header_sent_on() {
    let b = backend("b", PROXIED).await;
    let p = start(table(vec![mk_listener_with(
        None,
        vec![(None, mk_route("r", vec![with_proxy("b", b, ProxyProtocolVersion::V2)]))],
        accepting(ProxyProtocolMode::Required, &["127.0.0.0/8"]),
        Default::default(),
    )]))
    .await;
    let v1 = v1_header("192.0.2.7:40000", "198.51.100.1:443");
    let v2 = v2_header("[2001:db8::7]:40001", "[2001:db8::1]:443");
    for (header, src) in [(&v1, "192.0.2.7:40000"), (&v2, "[2001:db8::7]:40001")] {
        // Every split of the header; the hello follows in the same write as the header's tail,
        // so a header reader that took more than the header would break the hello.
        for at in 1..header.len() {
            let mut s = connect(p.addr).await;
            let h = hello("app.example.test");
            let mut all = header.clone();
            all.extend_from_slice(&h);
            write_split(&mut s, &all, at).await;
            let line = read_line(&mut s).await;
            assert_eq!(line, format!("b src={src} authority=app.example.test alpn=-"), "at {at}");
            assert_eq!(read_exact(&mut s, h.len()).await, h);
        }
    }
    let text = p.proxy.metrics_text();
    assert!(text.contains("version=\"v1\",command=\"proxy\"}"), "{text}");
    assert!(text.contains("version=\"v2\",command=\"proxy\"}"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_local_header_keeps_the_peer_address() {
    let b = backend("b", PROXIED).await;
    let p = start(table(vec![mk_listener_with(
        None,
        vec![(None, mk_route("r", vec![with_proxy("b", b, ProxyProtocolVersion::V1)]))],
        accepting(ProxyProtocolMode::Required, &["127.0.0.1"]),
        Default::default(),
    )]))
    .await;
    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    let h = hello("app.example.test");
    let mut all = v2_local();
    all.extend_from_slice(&h);
    s.write_all(&all).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("b src={me} authority=- alpn=-"));
    assert_eq!(read_exact(&mut s, h.len()).await, h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_from_untrusted_peers_and_missing_required_headers_are_refused() {
    let b = backend("b", PROXIED).await;
    let route = || vec![(None, mk_route("r", vec![with_proxy("b", b, ProxyProtocolVersion::V1)]))];
    let start_accepting = |mode, nets: &'static [&'static str]| {
        let t =
            table(vec![mk_listener_with(None, route(), accepting(mode, nets), Default::default())]);
        let config = ProxyConfig { hello_timeout: Duration::from_secs(3600), ..Default::default() };
        start_with(t, config, Duration::from_secs(5))
    };
    let header = v1_header("192.0.2.7:40000", "198.51.100.1:443");
    let with_header = [header.as_slice(), &hello("app.example.test")].concat();
    let bare = hello("app.example.test");

    // Required, trusted peer, no header.
    let p = start_accepting(ProxyProtocolMode::Required, &["127.0.0.0/8"]).await;
    let mut s = connect(p.addr).await;
    s.write_all(&bare).await.expect("write");
    assert_closed_silently(&mut s).await;
    // Required, untrusted peer: closed before anything is read, header or not.
    let p = start_accepting(ProxyProtocolMode::Required, &["10.0.0.0/8"]).await;
    for bytes in [&with_header, &bare] {
        let mut s = connect(p.addr).await;
        let _ = s.write_all(bytes).await;
        assert_closed_silently(&mut s).await;
    }
    let text = p.proxy.metrics_text();
    assert!(text.contains("reason=\"proxy_untrusted\"} 2"), "{text}");
    // Optional, untrusted peer: a header closes, no header is a direct client.
    let p = start_accepting(ProxyProtocolMode::Optional, &["10.0.0.0/8"]).await;
    let mut s = connect(p.addr).await;
    s.write_all(&with_header).await.expect("write");
    assert_closed_silently(&mut s).await;
    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    s.write_all(&bare).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("b src={me} authority=- alpn=-"));
    // Optional, trusted peer: a header is read, its absence is a direct client.
    let p = start_accepting(ProxyProtocolMode::Optional, &["127.0.0.1"]).await;
    assert_eq!(
        report_after(p.addr, &header, "app.example.test").await,
        "b src=192.0.2.7:40000 authority=- alpn=-"
    );
    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    s.write_all(&bare).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("b src={me} authority=- alpn=-"));
    // A malformed header from a trusted peer.
    let mut s = connect(p.addr).await;
    s.write_all(b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n").await.expect("write");
    assert_closed_silently(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_deadline_covers_the_proxy_header_and_the_postgres_preamble() {
    let b = backend("b", PLAIN).await;
    let t = table(vec![mk_listener_with(
        None,
        vec![(None, mk_route("r", vec![mk_endpoints("b", &[b])]))],
        accepting(ProxyProtocolMode::Required, &["127.0.0.1"]),
        Default::default(),
    )]);
    let config = ProxyConfig { hello_timeout: Duration::from_millis(300), ..Default::default() };
    let p = start_with(t, config, Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    let mut s = connect(p.addr).await;
    // Half a header, then a complete one and an SSLRequest: the deadline runs from accept.
    s.write_all(b"PROXY TCP4 192.0.2.7 ").await.expect("write");
    assert_closed_silently(&mut s).await;
    let mut s = connect(p.addr).await;
    let header = v1_header("192.0.2.7:40000", "198.51.100.1:443");
    s.write_all(&[header.as_slice(), &SSL_REQUEST].concat()).await.expect("write");
    assert_eq!(read_exact(&mut s, 1).await, b"S");
    assert_closed_silently(&mut s).await;
    assert!(started.elapsed() < WAIT, "closed by the hello deadline");
    let text = p.proxy.metrics_text();
    assert!(text.contains("reason=\"timeout\"} 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limits_count_the_address_from_the_proxy_header() {
    let b = backend("b", PLAIN).await;
    let mut settings = accepting(ProxyProtocolMode::Required, &["127.0.0.1"]);
    settings.max_connections_per_client = Some(1);
    let p = start(table(vec![mk_listener_with(
        None,
        vec![(None, mk_route("r", vec![mk_endpoints("b", &[b])]))],
        settings,
        Default::default(),
    )]))
    .await;
    let open = |src: &'static str| {
        let addr = p.addr;
        async move {
            let mut s = connect(addr).await;
            let header = v1_header(src, "198.51.100.1:443");
            s.write_all(&[header.as_slice(), &hello("a.example.test")].concat())
                .await
                .expect("write");
            s
        }
    };
    // Two clients behind the one load balancer each get their connection.
    let mut a = open("192.0.2.1:1000").await;
    assert_eq!(read_line(&mut a).await, "b src=- authority=- alpn=-");
    let mut b2 = open("192.0.2.2:1000").await;
    assert_eq!(read_line(&mut b2).await, "b src=- authority=- alpn=-");
    // A second connection of the first client is over its limit.
    let mut a2 = open("192.0.2.1:1001").await;
    assert_closed_silently(&mut a2).await;
}

// === PROXY protocol: sending ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_get_v1_or_v2_headers_with_the_sni_and_first_alpn_before_anything_else() {
    let v1 = backend("v1", PROXIED).await;
    let v2 = backend("v2", PROXIED).await;
    let pg = backend("pg", Expect { proxy: true, postgres: Some(b'S') }).await;
    let p = start(mk_table(vec![
        (
            Some("one.example.test"),
            mk_route("one", vec![with_proxy("v1", v1, ProxyProtocolVersion::V1)]),
        ),
        (
            Some("two.example.test"),
            mk_route("two", vec![with_proxy("v2", v2, ProxyProtocolVersion::V2)]),
        ),
        (
            Some("db.example.test"),
            mk_route("db", vec![with_proxy("pg", pg, ProxyProtocolVersion::V2)]),
        ),
    ]))
    .await;
    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    let h = hello("one.example.test");
    s.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("v1 src={me} authority=- alpn=-"));
    assert_eq!(read_exact(&mut s, h.len()).await, h);

    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    let h = HelloBuilder::minimal().sni(b"two.example.test").alpn(&[b"h2", b"http/1.1"]).records();
    s.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("v2 src={me} authority=two.example.test alpn=h2"));
    assert_eq!(read_exact(&mut s, h.len()).await, h);

    // PostgreSQL: the header, then SSLRequest, then the hello.
    let mut s = connect(p.addr).await;
    let me = s.local_addr().expect("local");
    s.write_all(&SSL_REQUEST).await.expect("write");
    assert_eq!(read_exact(&mut s, 1).await, b"S");
    let h = hello("db.example.test");
    s.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut s).await, format!("pg src={me} authority=db.example.test alpn=-"));
    assert_eq!(read_exact(&mut s, h.len()).await, h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_counted_from_the_client_leave_out_the_gateways_own_header() {
    let b = backend("b", PROXIED).await;
    let p = start(mk_table(vec![(
        None,
        mk_route("r", vec![with_proxy("b", b, ProxyProtocolVersion::V1)]),
    )]))
    .await;
    let h = hello("a.example.test");
    {
        let mut s = connect(p.addr).await;
        s.write_all(&h).await.expect("write");
        read_line(&mut s).await;
        assert_eq!(read_exact(&mut s, h.len()).await, h);
        s.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await.expect("end").expect("read");
    }
    let expected = format!(
        "sniway_received_bytes_total{{listener=\"default/gw/any\",route=\"default/r#0\",backend=\"b\"}} {}",
        h.len()
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = p.proxy.metrics_text();
        if text.contains(&expected) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{expected} not in\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_listeners_answer_the_postgres_request_and_send_the_header_before_plaintext() {
    use support::tls::{Served, mk_terminate_listener};
    let ca = sniway_testkit::TestCa::new("test CA");
    let b = backend("b", PROXIED).await;
    let (_der, cert) = ca.served("default/db", &["db.example.test"]);
    let (l, _cfg) = mk_terminate_listener(
        Some("db.example.test"),
        vec![(None, mk_route("r", vec![with_proxy("b", b, ProxyProtocolVersion::V2)]))],
        vec![cert],
    );
    let p = start(table(vec![l])).await;
    let mut tcp = connect(p.addr).await;
    let me = tcp.local_addr().expect("local");
    tcp.write_all(&SSL_REQUEST).await.expect("ssl request");
    assert_eq!(read_exact(&mut tcp, 1).await, b"S");
    let connector = tokio_rustls::TlsConnector::from(sniway_testkit::client_config(&ca.der()));
    let name = rustls::pki_types::ServerName::try_from("db.example.test").expect("name");
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    // The backend got the header (no ALPN negotiated), then plaintext without a preamble.
    assert_eq!(read_line(&mut tls).await, format!("b src={me} authority=db.example.test alpn=-"));
    tls.write_all(b"select 1\n").await.expect("write");
    assert_eq!(read_line(&mut tls).await, "select 1");
}

// === clients that name no route ===

fn unmatched_settings(no_sni: Unmatched, no_match: Unmatched) -> ListenerSettings {
    ListenerSettings { no_sni: Some(no_sni), no_match: Some(no_match), ..Default::default() }
}

fn default_route(name: &str, addr: SocketAddr) -> Option<Arc<Route>> {
    let id =
        sniway_model::RouteId { namespace: "infra".into(), name: format!("edge#{name}"), rule: 0 };
    Some(Arc::new(Route::new(id, vec![mk_weighted(1, Backend::endpoints(name, vec![addr]))])))
}

/// Asserts that the proxy writes exactly the unrecognized_name alert, then ends the stream.
async fn assert_alerted(s: &mut TcpStream) {
    assert_eq!(read_exact(s, 7).await, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(WAIT, s.read(&mut rest)).await.expect("end in time").unwrap_or(0);
    assert_eq!(n, 0, "nothing after the alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_and_no_match_clients_get_their_listeners_action() {
    let app = backend("app", PLAIN).await;
    let legacy = backend("legacy", PLAIN).await;
    let fallback = backend("fallback", PLAIN).await;
    let route =
        || vec![(Some("app.example.test"), mk_route("app", vec![mk_endpoints("app", &[app])]))];
    let no_sni = HelloBuilder::minimal().records();
    let ip_sni = hello("127.0.0.1");

    // Close, the default: nothing written.
    let p =
        start(table(vec![mk_listener_with(None, route(), Default::default(), Default::default())]))
            .await;
    for bytes in [&no_sni, &ip_sni, &hello("other.example.test")] {
        let mut s = connect(p.addr).await;
        s.write_all(bytes).await.expect("write");
        assert_closed_silently(&mut s).await;
    }
    let text = p.proxy.metrics_text();
    assert!(
        text.contains("listener=\"default/gw/any\",kind=\"no_sni\",action=\"close\"} 2"),
        "{text}"
    );
    assert!(text.contains("kind=\"no_match\",action=\"close\"} 1"), "{text}");

    // Alert.
    let p = start(table(vec![mk_listener_with(
        None,
        route(),
        unmatched_settings(Unmatched::Alert, Unmatched::Alert),
        Default::default(),
    )]))
    .await;
    for bytes in [&no_sni, &ip_sni, &hello("other.example.test")] {
        let mut s = connect(p.addr).await;
        s.write_all(bytes).await.expect("write");
        assert_alerted(&mut s).await;
    }
    let text = p.proxy.metrics_text();
    assert!(text.contains("kind=\"no_sni\",action=\"alert\"} 2"), "{text}");
    assert!(text.contains("kind=\"no_match\",action=\"alert\"} 1"), "{text}");

    // Backend: each kind to its default backend, passthrough (the hello arrives unchanged).
    let defaults = DefaultRoutes {
        no_sni: default_route("noSni", legacy),
        no_match: default_route("noMatch", fallback),
    };
    let p = start(table(vec![mk_listener_with(
        None,
        route(),
        unmatched_settings(Unmatched::Backend, Unmatched::Backend),
        defaults,
    )]))
    .await;
    let mut s = connect(p.addr).await;
    s.write_all(&no_sni).await.expect("write");
    assert_eq!(read_line(&mut s).await, "legacy src=- authority=- alpn=-");
    assert_eq!(read_exact(&mut s, no_sni.len()).await, no_sni);
    assert_eq!(
        report_after(p.addr, &[], "other.example.test").await,
        "fallback src=- authority=- alpn=-"
    );
    assert_eq!(report_after(p.addr, &[], "app.example.test").await, "app src=- authority=- alpn=-");
    let text = p.proxy.metrics_text();
    assert!(text.contains("kind=\"no_sni\",action=\"backend\"} 1"), "{text}");
    assert!(text.contains("kind=\"no_match\",action=\"backend\"} 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_that_decides_is_the_one_matched_else_the_one_without_hostname() {
    let a = backend("a", PLAIN).await;
    let any = backend("any", PLAIN).await;
    let t = table(vec![
        // A listener for *.example.test whose routes take only a.example.test: alert on others.
        mk_listener_with(
            Some("*.example.test"),
            vec![(Some("a.example.test"), mk_route("a", vec![mk_endpoints("a", &[a])]))],
            unmatched_settings(Unmatched::Close, Unmatched::Alert),
            Default::default(),
        ),
        // The listener without hostname decides for names no listener takes, and for no SNI.
        mk_listener_with(
            None,
            vec![(Some("z.example.org"), mk_route("z", vec![mk_endpoints("any", &[any])]))],
            unmatched_settings(Unmatched::Backend, Unmatched::Close),
            DefaultRoutes { no_sni: default_route("noSni", any), no_match: None },
        ),
    ]);
    let p = start(t).await;
    let mut s = connect(p.addr).await;
    s.write_all(&hello("b.example.test")).await.expect("write");
    assert_alerted(&mut s).await;
    let mut s = connect(p.addr).await;
    s.write_all(&hello("b.example.net")).await.expect("write");
    assert_closed_silently(&mut s).await;
    let no_sni = HelloBuilder::minimal().records();
    let mut s = connect(p.addr).await;
    s.write_all(&no_sni).await.expect("write");
    assert_eq!(read_line(&mut s).await, "any src=- authority=- alpn=-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_hostname_listeners_and_none_without_a_client_without_sni_is_closed() {
    let a = backend("a", PLAIN).await;
    let l = |host| {
        mk_listener_with(
            Some(host),
            vec![(None, mk_route("a", vec![mk_endpoints("a", &[a])]))],
            unmatched_settings(Unmatched::Alert, Unmatched::Alert),
            Default::default(),
        )
    };
    let p = start(table(vec![l("a.example.test"), l("b.example.test")])).await;
    let mut s = connect(p.addr).await;
    s.write_all(&HelloBuilder::minimal().records()).await.expect("write");
    assert_closed_silently(&mut s).await;
    let text = p.proxy.metrics_text();
    assert!(text.contains("listener=\"\",kind=\"no_sni\",action=\"close\"} 1"), "{text}");
}
