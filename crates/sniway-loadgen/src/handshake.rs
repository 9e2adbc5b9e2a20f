//! Terminated TLS: full handshakes per second through a gateway that terminates TLS, with rustls
//! as the client (this scenario measures the gateway's handshake, so the client must speak TLS).
//! Each connection: TCP connect, a full TLS 1.3 handshake (resumption off), 64 B echoed by the
//! plaintext backend behind the gateway, close.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::procstat;
use crate::scenario::{Common, cpu_fields, drive};

/// Client configuration trusting the certificate in `ca_pem`, with session resumption off so
/// that every connection is a full handshake.
pub fn client_config(ca_pem: &[u8]) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| io::Error::other(format!("certificate PEM: {e}")))?;
        roots.add(cert).map_err(|e| io::Error::other(format!("certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Full handshakes at `concurrency`, up to `connections` or `--seconds`.
pub async fn handshakes(c: Common, ca_pem: Vec<u8>, concurrency: usize, connections: u64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("scenario".into(), "tls-handshake".into());
    m.insert("target".into(), c.label.clone().into());
    let config = match client_config(&ca_pem) {
        Ok(cfg) => cfg,
        Err(e) => {
            m.insert("error".into(), e.to_string().into());
            return Value::Object(m);
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let Ok(name) = ServerName::try_from(c.sni[0].clone()) else {
        m.insert("error".into(), "bad --sni".into());
        return Value::Object(m);
    };
    let deadline = Instant::now() + Duration::from_secs_f64(c.seconds);
    let cpu0 = procstat::cpu_us(&c.proxy_pid);
    let target = c.target;
    let op = move |_: u64| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect(target).await?;
            tcp.set_nodelay(true)?;
            let mut tls = connector.connect(name, tcp).await?;
            let out = [0x3cu8; 64];
            let mut back = [0u8; 64];
            tls.write_all(&out).await?;
            tls.read_exact(&mut back).await?;
            if back != out {
                return Err(io::Error::other("echo mismatch"));
            }
            Ok(())
        }
    };
    let driven = drive(concurrency, connections, deadline, op).await;
    let cpu = procstat::cpu_us(&c.proxy_pid).saturating_sub(cpu0);
    m.insert("concurrency".into(), concurrency.into());
    let done = driven.record(&mut m);
    cpu_fields(&mut m, &c, cpu, "handshake", done as f64);
    Value::Object(m)
}
