//! Bulk transfer through the gateway: every byte arrives, in order.

use std::time::Duration;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::support::*;

/// Deterministic pseudo-random bytes (xorshift64*), so a reordered or lost block changes the hash.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_mib_are_echoed_both_ways_byte_exact_through_a_tls_session() {
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
    let gw = Gateway::start(&manifests, port, &[]);

    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("echo.example.com").unwrap();
    let stream = TlsConnector::from(tls.client.clone()).connect(name, tcp).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let data = pattern(LEN, 0x5eed);
    let sent_hash = Sha256::digest(&data);
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(256 * 1024) {
            wr.write_all(chunk).await.unwrap();
        }
        // close_notify and FIN: the backend sees the end and finishes its echo.
        wr.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("read after {total} bytes: {e}"),
            }
        }
        (total, hasher.finalize())
    });
    let (total, got_hash) = tokio::time::timeout(Duration::from_secs(240), async {
        writer.await.unwrap();
        reader.await.unwrap()
    })
    .await
    .expect("64 MiB echo did not finish");
    assert_eq!(total, LEN, "{}", gw.log());
    assert_eq!(got_hash, sent_hash);
}
