//! Terminate and Mixed listeners on loopback: rustls clients trusting a test CA, plain TCP
//! backends behind the gateway, and raw TLS bytes for what must be refused.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::HandshakeKind;
use sniway_model::{CertificateSet, RoutingTable, TerminateConfig};
use sniway_proxy::ProxyConfig;
use sniway_testkit::{
    HelloBuilder, TestCa, client_config, client_config_any_certificate, client_config_versions,
    record_kinds, rustls_client_hello,
};
use support::tls::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const HOST: &str = "tls.example.com";

/// One socket with the given listeners.
fn mk_table_of(listeners: Vec<Arc<sniway_model::ListenerTable>>) -> Arc<RoutingTable> {
    Arc::new(RoutingTable { sockets: vec![mk_socket("127.0.0.1:0", listeners)] })
}

/// A gateway with one Terminate listener for `HOST` (one certificate) to `backend`.
async fn terminate_gateway(
    ca: &TestCa,
    backend: SocketAddr,
    config: ProxyConfig,
) -> (Running, rustls::pki_types::CertificateDer<'static>, Arc<TerminateConfig>) {
    let (der, cert) = ca.served("default/tls-cert", &[HOST]);
    let (listener, cfg) = mk_terminate_listener(
        Some(HOST),
        vec![(None, mk_route("r", vec![mk_endpoints("b", &[backend])]))],
        vec![cert],
    );
    let p = start_with(mk_table_of(vec![listener]), config, Duration::from_secs(1)).await;
    (p, der, cfg)
}

/// A plain TCP backend that reads until end of stream, reports what it read, then answers
/// `got N\n` and closes.
async fn recording_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_err() {
                    return;
                }
                let reply = format!("got {}\n", got.len());
                let _ = tx.send(got);
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_verifies_and_the_certificate_is_chosen_by_sni() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("plain").await;
    let (der_a, a) = ca.served("default/a", &["a.example.com"]);
    let (der_b, b) = ca.served("default/b", &["b.example.com", "*.b.example.com"]);
    let (listener, _cfg) = mk_terminate_listener(
        Some("*.example.com"),
        vec![(None, mk_route("r", vec![mk_endpoints("plain", &[backend])]))],
        vec![a, b],
    );
    let p = start(mk_table_of(vec![listener])).await;

    // A fresh client configuration per connection: no resumption hides the certificate.
    for (sni, der) in
        [("a.example.com", &der_a), ("b.example.com", &der_b), ("x.b.example.com", &der_b)]
    {
        let mut tls = tls_connect(p.addr, sni, &client_config(&ca.der())).await;
        assert_eq!(&peer_leaf(&tls), der, "certificate for {sni}");
        assert_eq!(read_line(&mut tls).await, "plain");
    }

    // A name the listener routes but no certificate names: the first certificate is the default,
    // so a verifying client rejects it and a lenient one sees certificate `a`.
    let e = try_tls_connect(p.addr, "c.example.com", &client_config(&ca.der()))
        .await
        .expect_err("certificate not valid for c.example.com");
    assert!(e.to_string().contains("not valid for name"), "{e}");
    let tls = tls_connect(p.addr, "c.example.com", &client_config_any_certificate()).await;
    assert_eq!(peer_leaf(&tls), der_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_exactly_the_plaintext_and_half_close_keeps_the_reply() {
    let ca = TestCa::new("test CA");
    let (backend, mut seen) = recording_backend().await;
    let (p, _, _) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;

    let mut tls = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    tls.write_all(b"plaintext ").await.expect("write");
    tls.flush().await.expect("flush");
    tls.write_all(b"in two writes").await.expect("write");
    // close_notify, then FIN; the backend answers only after seeing the end of stream.
    tls.shutdown().await.expect("shutdown");
    let got = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("record");
    assert_eq!(got, b"plaintext in two writes", "{:?}", String::from_utf8_lossy(&got));
    assert_ne!(got[0], 0x16, "the backend saw a TLS record");
    assert_eq!(read_line(&mut tls).await, "got 23");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .expect("end in time")
        .expect("clean close_notify from the gateway");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_speaks_first_backend_greets_before_the_client_writes() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("hello from the backend").await;
    let (p, _, _) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;
    let mut tls = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    // Nothing written by the client.
    assert_eq!(read_line(&mut tls).await, "hello from the backend");
    tls.write_all(b"ping\n").await.expect("write");
    assert_eq!(read_line(&mut tls).await, "ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_one_socket_passes_one_name_through_and_terminates_another() {
    let gateway_ca = TestCa::new("gateway CA");
    let backend_ca = TestCa::new("backend CA");
    let (backend_der, backend_config) = backend_ca.backend_config(&["abc.example.com"]);
    let tls_backend = tls_backend("passed through", backend_config).await;
    let plain_backend = echo_backend("terminated").await;
    let (gateway_der, cert) = gateway_ca.served("default/gw-cert", &[HOST]);

    // The passthrough listener's wildcard also covers `tls.example.com`; the more specific
    // Terminate listener takes that name, whatever the modes.
    let passthrough = mk_listener(
        Some("*.example.com"),
        vec![(None, mk_route("pass", vec![mk_endpoints("tls", &[tls_backend])]))],
    );
    let (terminate, _) = mk_terminate_listener(
        Some(HOST),
        vec![(None, mk_route("term", vec![mk_endpoints("plain", &[plain_backend])]))],
        vec![cert],
    );
    let p = start(mk_table_of(vec![passthrough, terminate])).await;

    for _ in 0..3 {
        let mut tls =
            tls_connect(p.addr, "abc.example.com", &client_config(&backend_ca.der())).await;
        assert_eq!(peer_leaf(&tls), backend_der, "the backend's own certificate");
        assert_eq!(read_line(&mut tls).await, "passed through");

        let mut tls = tls_connect(p.addr, HOST, &client_config(&gateway_ca.der())).await;
        assert_eq!(peer_leaf(&tls), gateway_der, "the gateway's certificate");
        assert_eq!(read_line(&mut tls).await, "terminated");
        tls.write_all(b"echo me\n").await.expect("write");
        assert_eq!(read_line(&mut tls).await, "echo me");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_names_on_a_terminate_listener_are_closed_with_nothing_written() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("b").await;
    let (a, cert_a) = ca.served("default/a", &["a.example.com"]);
    drop(a);
    let (_, cert_b) = ca.served("default/b", &["*.example.com"]);
    // `tls.example.com` has a route; `*.example.com` takes other names but routes only
    // `a.example.com`; `empty.example.org` has no certificate at all.
    let (exact, _) = mk_terminate_listener(
        Some(HOST),
        vec![(None, mk_route("r", vec![mk_endpoints("b", &[backend])]))],
        vec![cert_a],
    );
    let (wild, _) = mk_terminate_listener(
        Some("*.example.com"),
        vec![(Some("a.example.com"), mk_route("ra", vec![mk_endpoints("b", &[backend])]))],
        vec![cert_b],
    );
    let (empty, _) = mk_terminate_listener(
        Some("empty.example.org"),
        vec![(None, mk_route("re", vec![mk_endpoints("b", &[backend])]))],
        vec![],
    );
    let p = start(mk_table_of(vec![exact, wild, empty])).await;
    let client = client_config(&ca.der());
    for sni in ["wrong.example.org", "b.example.com", "empty.example.org"] {
        let mut s = connect(p.addr).await;
        s.write_all(&rustls_client_hello(&client, sni)).await.expect("write hello");
        // No alert, no ServerHello: end of stream or reset with zero bytes.
        assert_closed_silently(&mut s).await;
    }
}

/// A TLS 1.0 ClientHello: legacy_version 0x0301, no supported_versions extension, CBC suites.
fn tls10_client_hello(sni: &str) -> Vec<u8> {
    HelloBuilder {
        legacy_version: 0x0301,
        random: std::array::from_fn(|i| (i as u8).wrapping_mul(13)),
        // ECDHE-ECDSA/RSA-AES128-SHA, AES128-SHA, AES256-SHA
        cipher_suites: vec![0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f, 0x00, 0x35],
        ..HelloBuilder::minimal()
    }
    .sni(sni.as_bytes())
    .ext(10, vec![0x00, 0x02, 0x00, 0x17]) // supported_groups: P-256
    .ext(11, vec![0x01, 0x00]) // ec_point_formats: uncompressed
    .records()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls10_only_client_gets_no_server_hello() {
    let ca = TestCa::new("test CA");
    let (backend, mut seen) = recording_backend().await;
    // One-hour deadlines: a close within the bounded wait can only be the handshake refusing
    // the TLS 1.0 hello.
    let hour = Duration::from_secs(3600);
    let config =
        ProxyConfig { hello_timeout: hour, handshake_timeout: hour, ..ProxyConfig::default() };
    let (p, _, _) = terminate_gateway(&ca, backend, config).await;
    let mut s = connect(p.addr).await;
    s.write_all(&tls10_client_hello(HOST)).await.expect("write hello");
    let answer = read_to_close(&mut s).await;
    let kinds = record_kinds(&answer);
    assert!(!kinds.contains(&(22, Some(2))), "ServerHello sent: {answer:?}");
    // At most a fatal alert (protocol_version), nothing else.
    assert!(kinds.iter().all(|(ty, _)| *ty == 21), "{kinds:?} in {answer:?}");
    assert!(seen.try_recv().is_err(), "the backend was reached");
}

/// FNV-1a over the stream's 64-bit words (the last partial word at the end), whatever the read
/// and write boundaries.
struct Checksum {
    hash: u64,
    partial: Vec<u8>,
}

impl Checksum {
    const PRIME: u64 = 0x0100_0000_01b3;

    fn new() -> Self {
        Checksum { hash: 0xcbf2_9ce4_8422_2325, partial: Vec::with_capacity(8) }
    }

    fn word(&mut self, w: &[u8]) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        self.hash = (self.hash ^ u64::from_le_bytes(b)).wrapping_mul(Self::PRIME);
    }

    fn update(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let take = (8 - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < 8 {
                return;
            }
            let w = std::mem::take(&mut self.partial);
            self.word(&w);
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(w);
        }
        self.partial.extend_from_slice(words.remainder());
    }

    fn finish(mut self) -> u64 {
        let w = std::mem::take(&mut self.partial);
        if !w.is_empty() {
            self.word(&w);
        }
        self.hash
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_echo_through_a_terminated_connection() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 61 * 1024; // not a multiple of the record or relay buffer size
    let ca = TestCa::new("test CA");
    let backend = echo_backend("echo").await;
    let (p, _, _) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;
    let mut tls = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    assert_eq!(read_line(&mut tls).await, "echo");

    let (mut r, mut w) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let mut sum = Checksum::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; CHUNK];
        let mut sent = 0;
        while sent < TOTAL {
            let n = CHUNK.min(TOTAL - sent);
            for b in &mut chunk[..n] {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            sum.update(&chunk[..n]);
            w.write_all(&chunk[..n]).await.expect("write");
            sent += n;
        }
        w.shutdown().await.expect("close_notify");
        sum.finish()
    });
    let read = async {
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        loop {
            let n = r.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            sum.update(&buf[..n]);
            got += n;
        }
        (got, sum.finish())
    };
    let (got, received) =
        tokio::time::timeout(Duration::from_secs(120), read).await.expect("echo in time");
    let sent = writer.await.expect("writer");
    assert_eq!(got, TOTAL);
    assert_eq!(received, sent, "checksum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_set_serves_new_handshakes_and_spares_established_ones() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("echo").await;
    let (p, der_old, cfg) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;

    let mut old = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    assert_eq!(peer_leaf(&old), der_old);
    assert_eq!(read_line(&mut old).await, "echo");

    let (der_new, new) = ca.served("default/tls-cert", &[HOST]);
    cfg.certificates.store(Arc::new(CertificateSet(vec![new])));

    let mut fresh = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    assert_eq!(peer_leaf(&fresh), der_new);
    assert_eq!(read_line(&mut fresh).await, "echo");

    // The established connection goes on with its session.
    old.write_all(b"still here\n").await.expect("write");
    assert_eq!(read_line(&mut old).await, "still here");
    fresh.write_all(b"new one\n").await.expect("write");
    assert_eq!(read_line(&mut fresh).await, "new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_handshake_deadline() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("echo").await;
    let config =
        ProxyConfig { handshake_timeout: Duration::from_millis(300), ..Default::default() };
    let (p, _, _) = terminate_gateway(&ca, backend, config).await;

    let mut s = connect(p.addr).await;
    let t = Instant::now();
    s.write_all(&rustls_client_hello(&client_config(&ca.der()), HOST)).await.expect("write");
    // The gateway answers the hello, then waits for a Finished that never comes.
    let answer = read_to_close(&mut s).await;
    let e = t.elapsed();
    assert!(record_kinds(&answer).contains(&(22, Some(2))), "a ServerHello first");
    assert!(e >= Duration::from_millis(250), "closed before the deadline, after {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_with_tickets_across_a_table_swap() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("echo").await;
    let (p, _, _) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;

    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let client = client_config_versions(&ca.der(), versions);
        let mut first = tls_connect(p.addr, HOST, &client).await;
        // Reading the greeting also takes in the TLS 1.3 tickets sent before it.
        assert_eq!(read_line(&mut first).await, "echo");
        assert_eq!(first.get_ref().1.handshake_kind(), Some(HandshakeKind::Full));
        drop(first);

        let mut second = tls_connect(p.addr, HOST, &client).await;
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
        assert_eq!(read_line(&mut second).await, "echo");

        // A new table builds a new server configuration for the listener; the ticket keys are
        // the process's, so the session still resumes.
        let (_, cert) = ca.served("default/tls-cert", &[HOST]);
        let (listener, _) = mk_terminate_listener(
            Some(HOST),
            vec![(None, mk_route("r", vec![mk_endpoints("b", &[backend])]))],
            vec![cert],
        );
        let mut table = Arc::try_unwrap(mk_table_of(vec![listener])).expect("fresh table");
        table.sockets[0].addr = p.proxy.table().sockets[0].addr;
        p.proxy.install(Arc::new(table));
        let mut third = tls_connect(p.addr, HOST, &client).await;
        assert_eq!(
            third.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "after the swap, {versions:?}"
        );
        assert_eq!(read_line(&mut third).await, "echo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_is_negotiated_only_when_configured() {
    let ca = TestCa::new("test CA");
    let backend = echo_backend("echo").await;
    let (_, plain) = ca.served("default/plain", &["plain.example.com"]);
    let (_, h2) = ca.served("default/h2", &["h2.example.com"]);
    let (l_plain, _) = mk_terminate_listener(
        Some("plain.example.com"),
        vec![(None, mk_route("r1", vec![mk_endpoints("b", &[backend])]))],
        vec![plain],
    );
    let mut cfg = TerminateConfig::new(CertificateSet(vec![h2]));
    cfg.alpn = vec![b"h2".to_vec()];
    let (l_h2, _) = mk_terminate_listener_with(
        Some("h2.example.com"),
        vec![(None, mk_route("r2", vec![mk_endpoints("b", &[backend])]))],
        cfg,
    );
    let p = start(mk_table_of(vec![l_plain, l_h2])).await;

    let mut client = (*client_config(&ca.der())).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = Arc::new(client);
    let tls = tls_connect(p.addr, "plain.example.com", &client).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let tls = tls_connect(p.addr, "h2.example.com", &client).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_after_the_handshake_gets_a_close_notify() {
    let ca = TestCa::new("test CA");
    let dead = dead_addr().await;
    let (p, _, _) = terminate_gateway(&ca, dead, ProxyConfig::default()).await;
    let mut tls = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    let mut buf = Vec::new();
    // read_to_end succeeds only on close_notify: a bare FIN is an unexpected end of stream.
    tokio::time::timeout(WAIT, tls.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("close_notify");
    assert!(buf.is_empty(), "{buf:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_first_sends_close_notify_and_still_receives() {
    let ca = TestCa::new("test CA");
    // Greets, closes its write side, then reads to the end and reports.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let backend = listener.local_addr().expect("addr");
    let (tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        s.write_all(b"bye\n").await.expect("greet");
        s.shutdown().await.expect("FIN");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        let _ = tx.send(got);
    });
    let (p, _, _) = terminate_gateway(&ca, backend, ProxyConfig::default()).await;

    let mut tls = tls_connect(p.addr, HOST, &client_config(&ca.der())).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut got))
        .await
        .expect("in time")
        .expect("close_notify after the greeting");
    assert_eq!(got, b"bye\n");
    tls.write_all(b"after the backend closed").await.expect("write");
    tls.shutdown().await.expect("shutdown");
    let got = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("record");
    assert_eq!(got, b"after the backend closed");
}
