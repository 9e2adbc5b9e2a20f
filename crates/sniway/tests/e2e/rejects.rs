//! ClientHellos however they arrive, and every way a connection is refused: nothing is ever
//! written back (no TLS alert), the connection is just closed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sniway_testkit::{frame, handshake_bytes, rustls_client_hello};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

async fn one_backend(extra: &[&str]) -> (Tls, Gateway, sniway::demo::backend::TlsBackend) {
    let tls = Tls::new();
    let foo_backend = tls.backend("foo", &["foo.example.com"], BackendReply::Demo).await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("foo", "gw", &["foo.example.com"], &[("foo", 1)]),
        service("foo", 443, foo_backend.addr),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, extra);
    (tls, gw, foo_backend)
}

/// Completes a real rustls handshake and HTTP exchange, but sends the ClientHello with `send`,
/// so the test decides how its bytes are cut into TCP segments and TLS records.
fn exchange_with_hello_sent_by(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
    send: impl FnOnce(&mut std::net::TcpStream, &[u8]),
) -> String {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    send(&mut sock, &hello);
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    stream.write_all(format!("GET / HTTP/1.1\r\nhost: {sni}\r\n\r\n").as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = stream.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).into_owned()
}

/// Cuts a TLS handshake record stream into records carrying at most `size` payload bytes each.
fn reframe(records: &[u8], size: usize) -> Vec<u8> {
    frame(&handshake_bytes(records), size)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hello_sent_one_byte_per_segment_is_routed_and_the_handshake_completes() {
    let (tls, gw, _foo) = one_backend(&[]).await;
    let (addr, config) = (gw.addr, tls.client.clone());
    let resp = tokio::task::spawn_blocking(move || {
        exchange_with_hello_sent_by(addr, config, "foo.example.com", |sock, hello| {
            for b in hello {
                sock.write_all(std::slice::from_ref(b)).unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    })
    .await
    .unwrap();
    assert!(resp.ends_with("foo answered foo.example.com\n"), "{resp}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hello_spread_over_many_tls_records_is_routed_and_the_handshake_completes() {
    let (tls, gw, _foo) = one_backend(&[]).await;
    for size in [1, 7, 100] {
        let (addr, config) = (gw.addr, tls.client.clone());
        let resp = tokio::task::spawn_blocking(move || {
            exchange_with_hello_sent_by(addr, config, "foo.example.com", |sock, hello| {
                sock.write_all(&reframe(hello, size)).unwrap();
            })
        })
        .await
        .unwrap();
        assert!(
            resp.ends_with("foo answered foo.example.com\n"),
            "records of {size}: {resp}\n{}",
            gw.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hello_larger_than_one_segment_is_routed() {
    let (tls, gw, _foo) = one_backend(&[]).await;
    let mut config = (*tls.client).clone();
    config.alpn_protocols =
        (0..64).map(|i| format!("sniway-test-protocol-{i:04}").into_bytes()).collect();
    let config = Arc::new(config);
    let hello = rustls_client_hello(&config, "foo.example.com");
    assert!(hello.len() > 1500, "hello is only {} bytes", hello.len());
    let answer = sniway::demo::client::https_get(
        gw.addr,
        "foo.example.com",
        config,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    assert_eq!(answer.body, "foo answered foo.example.com");
}

async fn assert_closed_with_nothing_written(gw: &Gateway, bytes: &[u8], what: &str) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let (got, closed) = read_all_until_closed(&mut s, Duration::from_secs(20)).await;
    assert!(closed, "{what}: the gateway did not close the connection\n{}", gw.log());
    assert!(got.is_empty(), "{what}: the gateway wrote {got:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn non_tls_bytes_are_closed_with_nothing_written() {
    let (_tls, gw, _foo) = one_backend(&[]).await;
    assert_closed_with_nothing_written(
        &gw,
        b"GET / HTTP/1.1\r\nhost: foo.example.com\r\n\r\n",
        "HTTP",
    )
    .await;
    assert_closed_with_nothing_written(&gw, b"SSH-2.0-OpenSSH_9.2\r\n", "SSH").await;
    // An SSLv2-style hello: two-byte header with the high bit set, then msg type 1.
    assert_closed_with_nothing_written(&gw, &[0x80, 0x2e, 0x01, 0x00, 0x02], "SSLv2").await;
    // A handshake record whose hello length overflows what a ClientHello may be.
    assert_closed_with_nothing_written(
        &gw,
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff],
        "oversized",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmatched_or_missing_sni_is_closed_without_an_alert() {
    let (tls, gw, _foo) = one_backend(&[]).await;
    assert_closed_with_nothing_written(
        &gw,
        &tls.client_hello("nomatch.example.com"),
        "unmatched SNI",
    )
    .await;
    // A rustls client connecting to an IP address sends no SNI at all.
    assert_closed_with_nothing_written(&gw, &tls.client_hello("127.0.0.1"), "no SNI").await;
    // A real client sees the connection end, not a TLS alert.
    let err = sniway::demo::client::https_get(
        gw.addr,
        "nomatch.example.com",
        tls.client.clone(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(!text.contains("AlertReceived"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hello_that_stalls_past_the_deadline_is_closed() {
    let (tls, gw, _foo) = one_backend(&["--hello-timeout", "300ms"]).await;
    let hello = tls.client_hello("foo.example.com");
    assert_closed_with_nothing_written(&gw, &hello[..10], "stalled hello").await;
}
