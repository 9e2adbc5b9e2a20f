//! A rustls client that asks a backend, through the gateway, who it is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What came back from one request.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP response body.
    pub body: String,
    /// The presented leaf certificate's subject CN, if any.
    pub certificate_cn: Option<String>,
}

/// A client configuration trusting only `ca`.
pub fn client_config(ca: CertificateDer<'static>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to `gateway` with SNI `sni`, verifies the chain against the CA in `config`, sends
/// `GET /` and returns the body and the certificate's CN.
pub async fn https_get(
    gateway: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Answer> {
    tokio::time::timeout(timeout, async move {
        let tcp = TcpStream::connect(gateway).await.context("connecting to the gateway")?;
        let name = ServerName::try_from(sni.to_string())?;
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS handshake through the gateway")?;
        let certificate_cn =
            tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| subject_cn(c));
        let req = format!("GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        // The backend closes after its reply; a peer that drops without close_notify still
        // delivered everything we need.
        match tls.read_to_end(&mut resp).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        let resp = String::from_utf8_lossy(&resp);
        let Some((head, body)) = resp.split_once("\r\n\r\n") else {
            bail!("no HTTP response from the backend");
        };
        if !head.starts_with("HTTP/1.1 200") {
            bail!("backend answered {head}");
        }
        Ok(Answer { body: body.trim_end().to_string(), certificate_cn })
    })
    .await
    .context("timed out")?
}

/// The subject CN of a DER certificate, found by scanning for the commonName attribute
/// (OID 2.5.4.3) in the subject; enough to tell the demo's certificates apart.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let der = cert.as_ref();
    // The issuer comes before the subject in TBSCertificate; the last CN is the subject's.
    let pos = der.windows(CN_OID.len()).rposition(|w| w == CN_OID)?;
    let rest = der.get(pos + CN_OID.len()..)?;
    let (_tag, len) = (rest.first()?, usize::from(*rest.get(1)?));
    let value = rest.get(2..2 + len)?;
    String::from_utf8(value.to_vec()).ok()
}
