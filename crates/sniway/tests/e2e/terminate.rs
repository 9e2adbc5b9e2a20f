//! Terminate and Mixed listeners through the real binary: the gateway completes the handshake
//! with the listener's certificate and forwards plaintext over TCP.

use std::process::Stdio;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::*;

/// A gateway with one Terminate listener for `tls.example.com` in front of `backend`.
fn terminating_gateway(tls: &Tls, backend: std::net::SocketAddr, string_data: bool) -> Gateway {
    let leaf = tls.pki.leaf(&["tls.example.com"]).unwrap();
    let port = free_port();
    let manifests = [
        tls_gateway(
            "gw",
            port,
            &[("tls-terminate", "tls.example.com", "Terminate", Some("gw-cert"))],
        ),
        tls_secret("gw-cert", &leaf, string_data),
        route("term", "gw", &["tls.example.com"], &[("plain", 1)]),
        service("plain", 443, backend),
    ]
    .concat();
    Gateway::start(&manifests, port, &[])
}

async fn tls_connect(gw: &Gateway, tls: &Tls, sni: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(tls.client.clone()).connect(name, tcp),
    )
    .await
    .expect("handshake timed out")
    .unwrap_or_else(|e| panic!("handshake with the gateway for {sni}: {e}\n{}", gw.log()))
}

fn peer_cn(s: &TlsStream<TcpStream>) -> Option<String> {
    s.get_ref().1.peer_certificates()?.first().and_then(sniway::demo::client::subject_cn)
}

#[tokio::test(flavor = "multi_thread")]
async fn rustls_verifies_the_gateway_chain_and_the_backend_sees_plaintext() {
    let tls = Tls::new();
    for string_data in [false, true] {
        let backend = plain_backend(None).await;
        let gw = terminating_gateway(&tls, backend.addr, string_data);
        let mut s = tls_connect(&gw, &tls, "tls.example.com").await;
        assert_eq!(peer_cn(&s).as_deref(), Some("tls.example.com"));
        s.write_all(b"PING\n").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PING\n");
        let first = backend.first_bytes.lock().unwrap().clone();
        assert_eq!(first, vec![b"PING\n".to_vec()], "the backend must see plaintext, no TLS");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_s_client_verifies_the_gateway_chain_for_the_sni() {
    let tls = Tls::new();
    let backend = plain_backend(None).await;
    let gw = terminating_gateway(&tls, backend.addr, false);
    let dir = TempDir::new("openssl-term");
    let ca = tls.ca_file(&dir);
    let session = openssl_exchange(
        gw.addr,
        "tls.example.com",
        Some(&ca),
        "hello through the gateway",
        "hello through the gateway",
    )
    .await;
    let (echoed, seen) = (session.replied, session.output);
    assert!(echoed, "no echo through the terminated session:\n{seen}\n{}", gw.log());
    assert!(seen.contains("CN = tls.example.com") || seen.contains("CN=tls.example.com"), "{seen}");
    assert!(seen.contains("Verify return code: 0 (ok)"), "{seen}");
    assert_eq!(backend.first_bytes.lock().unwrap().as_slice(), [b"hello through th".to_vec()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_and_terminate_listeners_share_one_port_told_apart_by_sni() {
    let tls = Tls::new();
    let tls_backend = tls.backend("abc", &["abc.example.com"], BackendReply::Echo).await;
    let plain = plain_backend(None).await;
    let gw_leaf = tls.pki.leaf(&["tls.example.com"]).unwrap();
    let port = free_port();
    let manifests = [
        tls_gateway(
            "mixed",
            port,
            &[
                ("tls-terminate", "tls.example.com", "Terminate", Some("gw-cert")),
                ("tls-passthrough", "abc.example.com", "Passthrough", None),
            ],
        ),
        tls_secret("gw-cert", &gw_leaf, false),
        route("terminated", "mixed", &["tls.example.com"], &[("plain", 1)]),
        route("passed", "mixed", &["abc.example.com"], &[("abc", 1)]),
        service("plain", 443, plain.addr),
        service("abc", 443, tls_backend.addr),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    // Passed through: the backend's own certificate; the echo comes from the TLS backend.
    let mut s = tls_connect(&gw, &tls, "abc.example.com").await;
    assert_eq!(peer_cn(&s).as_deref(), Some("abc.example.com"));
    s.write_all(b"abc\n").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"abc\n");
    // Terminated: the gateway's certificate; the plain backend sees plaintext.
    let mut s = tls_connect(&gw, &tls, "tls.example.com").await;
    assert_eq!(peer_cn(&s).as_deref(), Some("tls.example.com"));
    s.write_all(b"tls\n").await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"tls\n");
    assert_eq!(plain.first_bytes.lock().unwrap().as_slice(), [b"tls\n".to_vec()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_sni_on_a_terminate_listener_is_closed_without_an_alert() {
    let tls = Tls::new();
    let backend = plain_backend(None).await;
    let gw = terminating_gateway(&tls, backend.addr, false);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&tls.client_hello("wrong.example.com")).await.unwrap();
    let (got, closed) = read_all_until_closed(&mut s, Duration::from_secs(20)).await;
    assert!(closed, "not closed\n{}", gw.log());
    assert!(got.is_empty(), "the gateway wrote {} bytes (alert or ServerHello)", got.len());
    assert!(backend.first_bytes.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_1_0_only_client_is_refused() {
    let tls = Tls::new();
    let backend = plain_backend(None).await;
    let gw = terminating_gateway(&tls, backend.addr, false);
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &gw.addr.to_string(), "-servername", "tls.example.com"])
        .args(["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("openssl");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a TLS 1.0 session was established:\n{text}");
    // The session summary names the attempted protocol even on failure; what matters is that no
    // certificate was sent and no cipher agreed.
    assert!(text.contains("no peer certificate available"), "{text}");
    assert!(text.contains("Cipher is (NONE)") || text.contains("Cipher    : 0000"), "{text}");
    assert!(backend.first_bytes.lock().unwrap().is_empty(), "the backend got bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_mib_are_echoed_byte_exact_through_a_terminated_session() {
    const LEN: usize = 64 * 1024 * 1024;
    let tls = Tls::new();
    let backend = plain_backend(None).await;
    let gw = terminating_gateway(&tls, backend.addr, false);
    let s = tls_connect(&gw, &tls, "tls.example.com").await;
    let (total, sent, got) = echo_checksum(s, LEN).await;
    assert_eq!(total, LEN, "{}", gw.log());
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_speaks_first_backend_greets_a_terminated_client_that_has_sent_nothing() {
    let tls = Tls::new();
    let backend = plain_backend(Some("Gateway API Test TCP Server\n")).await;
    let gw = terminating_gateway(&tls, backend.addr, false);
    let s = tls_connect(&gw, &tls, "tls.example.com").await;
    let mut lines = BufReader::new(s).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("no greeting: the gateway waited for client data before connecting the backend")
        .unwrap();
    assert_eq!(greeting.as_deref(), Some("Gateway API Test TCP Server"));
}

/// The Gateway API TLS routing guide's example (`examples/tls-routing/`) as shipped, with only
/// its ports and loopback endpoints moved to free ones: foo.example.com is passed through to a
/// TLS backend, bar.example.com is terminated with the example Secret's certificate.
#[tokio::test(flavor = "multi_thread")]
async fn the_tls_routing_guide_example_passes_foo_through_and_terminates_bar() {
    let tls = Tls::new();
    let foo = tls.backend("foo", &["foo.example.com"], BackendReply::Demo).await;
    let bar = plain_backend(None).await;
    let (passthrough_port, terminate_port) = (free_port(), free_port());
    let dir = format!("{}/../../examples/tls-routing", env!("CARGO_MANIFEST_DIR"));
    let mut manifests = String::new();
    for f in [
        "gateway.yaml",
        "secret.yaml",
        "services.yaml",
        "tls-route.yaml",
        "tls-route-terminate.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        manifests.push_str("---\n");
        manifests.push_str(&text);
    }
    let manifests = manifests
        .replace("port: 443\n    tls:", &format!("port: {passthrough_port}\n    tls:"))
        .replace("port: 8443\n    tls:", &format!("port: {terminate_port}\n    tls:"))
        .replace("9441", &foo.addr.port().to_string())
        .replace("9480", &bar.addr.port().to_string());
    let gw = Gateway::start(&manifests, terminate_port, &[]);
    let passthrough = gw.at([127, 0, 0, 1], passthrough_port);
    let answer = sniway::demo::client::https_get(
        passthrough,
        "foo.example.com",
        tls.client.clone(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    assert_eq!(answer.body, "foo answered foo.example.com");

    let work = TempDir::new("tls-routing");
    let secret = std::fs::read_to_string(format!("{dir}/secret.yaml")).unwrap();
    let crt_b64 = secret.lines().find_map(|l| l.trim().strip_prefix("tls.crt: ")).unwrap();
    use base64::Engine;
    let crt = base64::engine::general_purpose::STANDARD.decode(crt_b64).unwrap();
    let ca = work.write("bar.crt", std::str::from_utf8(&crt).unwrap());
    let terminate_addr = gw.addr;
    let session = openssl_exchange(
        terminate_addr,
        "bar.example.com",
        Some(&ca),
        "bar over plain tcp",
        "bar over plain tcp",
    )
    .await;
    let (echoed, seen) = (session.replied, session.output);
    assert!(echoed, "{seen}\n{}", gw.log());
    assert!(seen.contains("CN = bar.example.com"), "{seen}");
    assert_eq!(bar.first_bytes.lock().unwrap().as_slice(), [b"bar over plain t".to_vec()]);
}
