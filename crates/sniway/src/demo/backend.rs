//! Built-in backends: real rustls servers (or plain TCP servers) on loopback that say who they
//! are. `sniway demo` routes to them, and the end-to-end tests use them as the far side of the
//! gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::pki::Leaf;

/// What a backend does with the decrypted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP request gets a `200` naming the backend and the SNI it saw; any other input is
    /// answered line by line as `NAME (SNI): LINE`.
    Demo,
    /// Every byte is echoed back unchanged; the write side is closed when the client closes.
    Echo,
}

/// A running backend; stopped when dropped.
pub struct TlsBackend {
    /// Name used in replies.
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, ring provider) for one certificate.
pub fn server_config(leaf: &Leaf) -> Result<Arc<ServerConfig>> {
    let (chain, key) = leaf.for_rustls();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("loading the backend certificate")?;
    Ok(Arc::new(config))
}

/// Starts a TLS backend named `name` on `bind` (port 0 picks a free port).
pub async fn start(name: &str, bind: SocketAddr, leaf: &Leaf, reply: Reply) -> Result<TlsBackend> {
    let acceptor = TlsAcceptor::from(server_config(leaf)?);
    spawn(name, bind, Some(acceptor), reply).await
}

/// Starts a plain TCP backend (no TLS) named `name` on `bind`, for terminated routes.
pub async fn start_plain(name: &str, bind: SocketAddr, reply: Reply) -> Result<TlsBackend> {
    spawn(name, bind, None, reply).await
}

async fn spawn(
    name: &str,
    bind: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    reply: Reply,
) -> Result<TlsBackend> {
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding backend {name} on {bind}"))?;
    let addr = listener.local_addr()?;
    let backend_name: Arc<str> = name.into();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let name = backend_name.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(tcp, acceptor, &name, reply).await {
                    tracing::debug!(backend = %name, error = %e, "backend connection ended");
                }
            });
        }
    });
    Ok(TlsBackend { name: name.to_string(), addr, task })
}

async fn serve(
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    name: &str,
    reply: Reply,
) -> Result<()> {
    tcp.set_nodelay(true)?;
    let Some(acceptor) = acceptor else {
        return answer(tcp, name, "over plain TCP", reply).await;
    };
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .context("handshake timed out")??;
    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
    answer(tls, name, &sni, reply).await
}

/// Answers one connection; `sni` is what the backend saw of the name (for replies).
async fn answer<S: AsyncRead + AsyncWrite>(
    stream: S,
    name: &str,
    sni: &str,
    reply: Reply,
) -> Result<()> {
    let (rd, mut wr) = tokio::io::split(stream);
    match reply {
        Reply::Echo => {
            let mut rd = rd;
            tokio::io::copy(&mut rd, &mut wr).await?;
            wr.shutdown().await?;
        }
        Reply::Demo => {
            let mut rd = BufReader::new(rd);
            let mut first = String::new();
            if rd.read_line(&mut first).await? == 0 {
                return Ok(());
            }
            if looks_like_http(&first) {
                // Drain the request head, then answer once and close.
                let mut line = String::new();
                while rd.read_line(&mut line).await? > 0 && line != "\r\n" && line != "\n" {
                    line.clear();
                }
                let body = format!("{name} answered {sni}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {name}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                wr.write_all(resp.as_bytes()).await?;
                wr.shutdown().await?;
                // Let the client read the reply before the socket goes away.
                let mut sink = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(1), rd.read(&mut sink)).await;
                return Ok(());
            }
            let mut line = first;
            loop {
                let text = line.trim_end_matches(['\r', '\n']);
                wr.write_all(format!("{name} ({sni}): {text}\n").as_bytes()).await?;
                line.clear();
                if rd.read_line(&mut line).await? == 0 {
                    break;
                }
            }
            wr.shutdown().await?;
        }
    }
    Ok(())
}

fn looks_like_http(line: &str) -> bool {
    let line = line.trim_end();
    let method = ["GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH "]
        .iter()
        .any(|m| line.starts_with(m));
    method && (line.ends_with(" HTTP/1.1") || line.ends_with(" HTTP/1.0"))
}
