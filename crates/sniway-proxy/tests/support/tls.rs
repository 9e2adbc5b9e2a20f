//! TLS test helpers: a test CA issuing certificates (rcgen), Terminate listeners built by hand,
//! rustls clients, a TLS backend and a raw TLS record reader.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sniway_model::{
    CertificateSet, HostIndex, HostPattern, ListenerId, ListenerMode, ListenerTable, Route,
    ServedCertificate, TerminateConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{WAIT, connect};

/// The ring provider, as the gateway uses it.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority for tests.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    /// The CA certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate for `names` (DNS SANs), as the gateway serves it: chain and key.
    pub fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, Arc<CertifiedKey>) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        let der = cert.der().clone();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider().key_provider.load_private_key(private).expect("load leaf key");
        (der.clone(), Arc::new(CertifiedKey::new(vec![der], signing)))
    }

    /// A leaf as the model's served certificate, named `source`.
    pub fn served(
        &self,
        source: &str,
        names: &[&str],
    ) -> (CertificateDer<'static>, ServedCertificate) {
        let (der, key) = self.leaf(names);
        let served = ServedCertificate {
            source: source.into(),
            dns_names: names.iter().map(|n| HostPattern::parse(n)).collect(),
            key,
        };
        (der, served)
    }

    /// A rustls server configuration for a TLS backend serving `names`.
    pub fn backend_config(&self, names: &[&str]) -> (CertificateDer<'static>, Arc<ServerConfig>) {
        let (der, key) = self.leaf(names);
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Always(key)));
        (der, Arc::new(config))
    }
}

#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Always {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
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
    });
    (listener, cfg)
}

/// A rustls client trusting `ca` (TLS 1.3 and 1.2, tickets kept in memory).
pub fn client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    client_config_versions(ca, rustls::DEFAULT_VERSIONS)
}

/// A rustls client trusting `ca`, limited to `versions`.
pub fn client_config_versions(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("add CA");
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A rustls client that accepts any certificate (signatures still checked), to see which
/// certificate the gateway presents when it does not match the name.
pub fn client_config_any_certificate() -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.dangerous().set_certificate_verifier(Arc::new(AnyCertificate(provider())));
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// The bytes of the ClientHello a rustls client sends for `sni`.
pub fn rustls_client_hello(config: &Arc<ClientConfig>, sni: &str) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write hello");
    }
    out
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

/// The (content type, first byte of the fragment) of each complete TLS record in `bytes`.
pub fn record_kinds(bytes: &[u8]) -> Vec<(u8, Option<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let end = (5 + len).min(rest.len());
        out.push((rest[0], rest.get(5).copied().filter(|_| len > 0)));
        rest = &rest[end..];
    }
    out
}
