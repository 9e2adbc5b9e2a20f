//! TLS termination for `tls.mode: Terminate` listeners: the rustls server configuration, the
//! handshake over the bytes already read by detection, and the plaintext relay.
//!
//! # Decision point
//!
//! Detection and lookup run first, exactly as for passthrough, so a name no listener or route
//! takes is refused before rustls sees a byte: nothing is written, no alert, no ServerHello. Only
//! then is the buffered ClientHello handed to rustls, through [`Prefixed`], which yields the
//! buffered bytes first and then reads the socket. A handshake that fails from there on (no shared
//! version or cipher suite, a client that aborts, the handshake deadline) may end with a TLS alert
//! from rustls; it is reported as [`ConnError::TlsHandshake`] or
//! [`ConnError::TlsHandshakeTimeout`].
//!
//! # Server configuration
//!
//! One [`rustls::ServerConfig`] per listener, built when the table is installed and kept with the
//! data plane's state for that table; a connection only clones the `Arc`. It uses the ring
//! provider, TLS 1.3 and 1.2 only (rustls' safe defaults), no client authentication, the
//! listener's ALPN list (empty by default: an ALPN offer from the client is not negotiated), and
//! no 0-RTT data.
//!
//! - Certificates: `Resolver` reads the listener's current [`sniway_model::CertificateSet`] at
//!   each handshake and picks by SNI ([`sniway_model::CertificateSet::select`]; the first
//!   certificate is the default). Storing a new set in `TerminateConfig::certificates` therefore
//!   affects new handshakes only; established connections keep the keys they negotiated.
//! - Session resumption is stateless: tickets encrypted under keys from one process-wide
//!   [`rustls::crypto::ring::Ticketer`] (rotated every 6 hours, each key accepted for 12), shared
//!   by every listener and every table, so a ticket survives a table swap. No server-side session
//!   cache (`NoServerSessionStorage`): TLS 1.2 clients without ticket support do a full handshake.
//!   TLS 1.3 clients get rustls' default of 2 tickets per connection.
//!
//! # Relay
//!
//! After the handshake the backend is connected at once, without waiting for client data (a
//! server-speaks-first backend greets first), then [`relay`] copies plaintext both ways:
//!
//! - client to backend without a copy buffer of its own: it writes straight from rustls' buffer of
//!   decrypted plaintext ([`AsyncBufRead::poll_fill_buf`]), and consumes what the backend took;
//!   while that write is blocked rustls stops reading the socket, so back-pressure reaches the
//!   client through TCP;
//! - backend to client as the TCP relay does: no buffer while the backend is idle, a
//!   [`RELAY_BUFFER`] buffer while data flows, released when a read would block; rustls encrypts
//!   into its own bounded send buffer, flushed whenever the backend has nothing more to give.
//!
//! So an idle terminated connection holds two sockets, a few counters and the rustls session
//! (keys and state, a few KiB), whose plaintext and ciphertext queues are empty between bursts;
//! its record read buffer is shrunk back to 4 KiB by rustls when it holds no partial record.
//!
//! Half-close: the client's `close_notify` (or its TCP FIN without one, which rustls reports as
//! an unexpected end of stream and is treated as an end of stream here, like a FIN in
//! passthrough) shuts down the backend's write side; the backend's FIN sends `close_notify` and a
//! FIN to the client. Each direction goes on until it ends too. An error in either direction ends
//! both at once; the caller closes both sockets with a reset.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::server::{ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sniway_model::TerminateConfig;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::error::{ConnError, Side};
use crate::relay::{RELAY_BUFFER, Transferred};
use crate::watchdog::Watchdog;

/// The rustls configuration for a Terminate listener, built once per listener when a table is
/// installed (never per connection).
pub fn server_config(
    cfg: &Arc<TerminateConfig>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    Ok(Arc::new(build_server_config(cfg)?))
}

fn build_server_config(cfg: &Arc<TerminateConfig>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(Arc::clone(cfg))));
    config.alpn_protocols = cfg.alpn.clone();
    config.ticketer = ticketer()?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.max_early_data_size = 0;
    Ok(config)
}

/// The process-wide session ticket encrypter.
fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(Arc::clone(t));
    }
    let made = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::clone(TICKETER.get_or_init(|| made)))
}

/// Picks the listener's certificate for each handshake from its current certificate set.
#[derive(Debug)]
struct Resolver(Arc<TerminateConfig>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.certificates.load();
        let chosen = set.select(hello.server_name())?;
        tracing::trace!(certificate = %chosen.source, "certificate chosen");
        Some(Arc::clone(&chosen.key))
    }
}

/// Completes the server handshake on `stream`, whose first bytes (the ClientHello and anything
/// read with it) were already read into `buffered`, within `timeout`. Past the deadline the
/// socket is set to close with a reset.
pub async fn handshake(
    server_config: Arc<rustls::ServerConfig>,
    stream: TcpStream,
    buffered: Vec<u8>,
    timeout: Duration,
) -> Result<TlsStream<Prefixed<TcpStream>>, ConnError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let mut accept = acceptor.accept(Prefixed::new(buffered, stream));
    match tokio::time::timeout(timeout, &mut accept).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(ConnError::TlsHandshake(e)),
        Err(_elapsed) => {
            // A deadline ends the connection with a reset, as in the relay.
            if let Some(io) = accept.get_ref() {
                crate::relay::abort_on_close(io.get_ref());
            }
            Err(ConnError::TlsHandshakeTimeout(timeout))
        }
    }
}

/// A stream that yields `prefix` before reading from the inner stream; writes go straight to the
/// inner stream. The prefix is freed once consumed.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `prefix`, then `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix, pos: 0, inner }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Relays plaintext between the TLS session with the client and the backend's TCP stream until
/// both directions have ended, either fails, or `watchdog` ends the connection. Returns the
/// plaintext bytes moved in any case; `meter` is told of every bytes moved as they move (client
/// to backend, backend to client).
pub async fn relay<C>(
    client: &mut C,
    backend: &mut TcpStream,
    watchdog: &mut Watchdog,
    mut meter: impl FnMut(u64, u64),
) -> (Transferred, Result<(), ConnError>)
where
    C: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut up = Up::default();
    let mut down = Down::default();
    let mut first = None;
    let result = poll_fn(|cx| {
        let (u0, d0) = (up.bytes, down.bytes);
        let up_poll = if up.done { Poll::Ready(Ok(())) } else { up.poll(cx, client, backend) };
        let down_poll = match up_poll {
            Poll::Ready(Err(_)) => Poll::Pending,
            _ if down.done => Poll::Ready(Ok(())),
            _ => down.poll(cx, client, backend),
        };
        let (du, dd) = (up.bytes - u0, down.bytes - d0);
        if du + dd > 0 {
            meter(du, dd);
        }
        if first.is_none() {
            first = match (up.eof, down.eof) {
                (true, _) => Some(Side::Client),
                (_, true) => Some(Side::Backend),
                _ => None,
            };
        }
        for p in [up_poll, down_poll] {
            if let Poll::Ready(Err(e)) = p {
                return Poll::Ready(Err(e));
            }
        }
        if up.done && down.done {
            return Poll::Ready(Ok(()));
        }
        watchdog.poll(cx, du + dd > 0, up.eof || down.eof).map(Err)
    })
    .await;
    let t = Transferred {
        client_to_backend: up.bytes,
        backend_to_client: down.bytes,
        first_to_finish: first,
    };
    (t, result)
}

/// Client to backend: from rustls' plaintext buffer straight to the backend socket.
#[derive(Debug, Default)]
struct Up {
    bytes: u64,
    /// The client's stream has ended; shutting down the backend's write side.
    eof: bool,
    done: bool,
}

impl Up {
    fn poll<C>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        backend: &mut TcpStream,
    ) -> Poll<Result<(), ConnError>>
    where
        C: AsyncBufRead + AsyncWrite + Unpin,
    {
        loop {
            if self.eof {
                match ready!(Pin::new(&mut *backend).poll_shutdown(cx)) {
                    Err(e) if e.kind() != io::ErrorKind::NotConnected => {
                        return Poll::Ready(Err(ConnError::BackendIo(e)));
                    }
                    _ => {}
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let data = match ready!(Pin::new(&mut *client).poll_fill_buf(cx)) {
                Ok([]) => {
                    self.eof = true;
                    continue;
                }
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    tracing::debug!("client closed without close_notify");
                    self.eof = true;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(ConnError::ClientIo(e))),
            };
            let n = match ready!(Pin::new(&mut *backend).poll_write(cx, data)) {
                Ok(0) => {
                    return Poll::Ready(Err(ConnError::BackendIo(io::ErrorKind::WriteZero.into())));
                }
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(ConnError::BackendIo(e))),
            };
            Pin::new(&mut *client).consume(n);
            self.bytes += n as u64;
        }
    }
}

/// Backend to client: a buffer only while the backend has data, encrypted into rustls' send
/// buffer, which is flushed whenever the backend has nothing more to give.
#[derive(Debug, Default)]
struct Down {
    bytes: u64,
    /// Held only while data flows: dropped when a read would block.
    buf: Option<Vec<u8>>,
    /// `buf[pos..len]` is read but not yet taken by rustls.
    pos: usize,
    len: usize,
    /// The backend's stream has ended; sending close_notify and FIN to the client.
    eof: bool,
    done: bool,
}

impl Down {
    fn poll<C>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        backend: &mut TcpStream,
    ) -> Poll<Result<(), ConnError>>
    where
        C: AsyncBufRead + AsyncWrite + Unpin,
    {
        loop {
            if let Some(buf) = &self.buf {
                while self.pos < self.len {
                    let n = match ready!(
                        Pin::new(&mut *client).poll_write(cx, &buf[self.pos..self.len])
                    ) {
                        Ok(0) => {
                            let e = io::ErrorKind::WriteZero.into();
                            return Poll::Ready(Err(ConnError::ClientIo(e)));
                        }
                        Ok(n) => n,
                        Err(e) => return Poll::Ready(Err(ConnError::ClientIo(e))),
                    };
                    self.pos += n;
                    self.bytes += n as u64;
                }
            }
            if self.eof {
                ready!(Pin::new(&mut *client).poll_shutdown(cx)).map_err(ConnError::ClientIo)?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if self.buf.is_none() {
                match backend.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ConnError::BackendIo(e))),
                    Poll::Pending => {
                        // Idle: push out what rustls holds, then wait for either side.
                        ready!(Pin::new(&mut *client).poll_flush(cx))
                            .map_err(ConnError::ClientIo)?;
                        return Poll::Pending;
                    }
                }
                self.buf = Some(vec![0u8; RELAY_BUFFER]);
            }
            let Some(buf) = self.buf.as_mut() else { continue };
            match backend.try_read(buf) {
                Ok(0) => {
                    self.buf = None;
                    self.eof = true;
                }
                Ok(n) => (self.pos, self.len) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Caught up: release the buffer before waiting again.
                    self.buf = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(ConnError::BackendIo(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sniway_model::CertificateSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn every_server_config_shares_the_process_ticketer_and_negotiates_no_alpn_or_early_data() {
        let a = Arc::new(TerminateConfig::new(CertificateSet::default()));
        let b = Arc::new(TerminateConfig::new(CertificateSet::default()));
        let a1 = server_config(&a).expect("config");
        let b1 = server_config(&b).expect("config");
        assert!(!Arc::ptr_eq(&a1, &b1));
        assert!(Arc::ptr_eq(&a1.ticketer, &b1.ticketer));
        assert!(a1.ticketer.enabled());
        assert!(a1.alpn_protocols.is_empty());
        assert_eq!(a1.max_early_data_size, 0);
    }

    #[tokio::test]
    async fn prefixed_reads_the_prefix_then_the_stream_and_writes_through() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut p = Prefixed::new(b"hello ".to_vec(), ours);
        theirs.write_all(b"world").await.expect("write");
        let mut buf = [0u8; 4];
        let n = p.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hell");
        let mut rest = [0u8; 7];
        p.read_exact(&mut rest).await.expect("read");
        assert_eq!(&rest, b"o world");
        assert!(p.prefix.is_empty() && p.prefix.capacity() == 0, "prefix freed");
        p.write_all(b"back").await.expect("write");
        let mut back = [0u8; 4];
        theirs.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"back");
    }
}
