//! TLS test helpers: the model's view of the kit's test CA, Terminate listeners built by hand,
//! rustls connections, a TLS backend and a reader to end of stream. The CA and the rustls client
//! configurations come from `sniway-testkit`.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use sniway_model::{
    CertificateSet, HostIndex, HostPattern, ListenerId, ListenerMode, ListenerTable, Route,
    ServedCertificate, TerminateConfig,
};
use sniway_testkit::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{WAIT, connect};

/// The model's view of a test CA's leaves.
pub trait Served {
    /// A leaf for `names` as the model's served certificate, named `source`.
    fn served(&self, source: &str, names: &[&str]) -> (CertificateDer<'static>, ServedCertificate);
}

impl Served for TestCa {
    fn served(&self, source: &str, names: &[&str]) -> (CertificateDer<'static>, ServedCertificate) {
        let (der, key) = self.leaf(names);
        let served = ServedCertificate {
            source: source.into(),
            dns_names: names.iter().map(|n| HostPattern::parse(n)).collect(),
            key,
        };
        (der, served)
    }
}

/// A Terminate listener serving `certs` (the first is the default), with routes by hostname.
pub fn mk_terminate_listener(
    hostname: Option<&str>,
    routes: Vec<(Option<&str>, Arc<Route>)>,
    certs: Vec<ServedCertificate>,
) -> (Arc<ListenerTable>, Arc<TerminateConfig>) {
    mk_terminate_listener_with(hostname, routes, TerminateConfig::new(CertificateSet(certs)))
}

/// A Terminate listener with the given settings.
pub fn mk_terminate_listener_with(
    hostname: Option<&str>,
    routes: Vec<(Option<&str>, Arc<Route>)>,
    cfg: TerminateConfig,
) -> (Arc<ListenerTable>, Arc<TerminateConfig>) {
    let mut idx = HostIndex::new();
    for (h, r) in routes {
        assert!(idx.insert_first(h.map(HostPattern::parse).as_ref(), r), "duplicate route host");
    }
    let cfg = Arc::new(cfg);
    let listener = Arc::new(ListenerTable {
        id: ListenerId {
            namespace: "default".into(),
            gateway: "gw".into(),
            listener: format!("terminate-{}", hostname.unwrap_or("any")),
        },
        hostname: hostname.map(HostPattern::parse),
        mode: ListenerMode::Terminate(Arc::clone(&cfg)),
        settings: Default::default(),
        routes: idx,
        defaults: Default::default(),
    });
    (listener, cfg)
}

/// Connects to `addr` and completes a TLS handshake for `sni`, within [`WAIT`].
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: &Arc<ClientConfig>,
) -> TlsStream<TcpStream> {
    try_tls_connect(addr, sni, config).await.expect("TLS handshake")
}

/// As [`tls_connect`], returning the handshake error.
pub async fn try_tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = connect(addr).await;
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.expect("handshake in time")
}

/// The leaf certificate the server presented.
pub fn peer_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().expect("server certificates")[0].clone().into_owned()
}

/// A TLS backend (its own certificate from `config`) that writes `NAME\n` after the handshake,
/// then echoes.
pub async fn tls_backend(name: &str, config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let name = format!("{name}\n");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let name = name.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else { return };
                let (mut r, mut w) = tokio::io::split(tls);
                if w.write_all(name.as_bytes()).await.is_err() || w.flush().await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Reads from `s` until end of stream or reset and returns the bytes; fails if the peer has not
/// closed within `WAIT`.
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "not closed within {WAIT:?}; got {out:?}");
    out
}
