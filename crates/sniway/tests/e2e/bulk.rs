//! Bulk transfer through the gateway: every byte arrives, in order.

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_mib_are_echoed_both_ways_byte_exact_through_a_tls_session() {
    echo_64_mib_through_passthrough(&[]).await;
}

/// The same with splice(2) turned off: the copy path that is the fallback must be as exact.
#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_mib_are_echoed_byte_exact_with_splice_turned_off() {
    echo_64_mib_through_passthrough(&[("SNIWAY_RELAY", "copy")]).await;
}

async fn echo_64_mib_through_passthrough(env: &[(&str, &str)]) {
    const LEN: usize = 64 * 1024 * 1024;
    let tls = Tls::new();
    let echo = tls.backend("echo", &["echo.example.com"], BackendReply::Echo).await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("echo", "gw", &["echo.example.com"], &[("echo", 1)]),
        service("echo", 443, echo.addr),
    ]
    .concat();
    let gw = Gateway::start_with_env(&manifests, port, &[], env);

    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("echo.example.com").unwrap();
    let stream = TlsConnector::from(tls.client.clone()).connect(name, tcp).await.unwrap();
    let (total, sent, got) = echo_checksum(stream, LEN).await;
    assert_eq!(total, LEN, "{}", gw.log());
    assert_eq!(got, sent);
}
