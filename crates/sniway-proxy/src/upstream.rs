//! Chooses a backend for a connection and connects to it.
//!
//! Gateway API `BackendRef.weight` (digest `gateway-api-tls.md` §4): "Each backend gets
//! weight/sum; weights are not percentages", "0 means no traffic to that entry", and weighting
//! "applies per connection". For invalid or missing backends, or a Service with no endpoints:
//! "actively reject the connection. Rejections are weighted (80% invalid weight means 80% of
//! connections refused)". So the choice is a uniform roll over the sum of the weights, and landing
//! on an unusable backend refuses the connection rather than rolling again. A route whose weights
//! are all 0 refuses every connection.
//!
//! Within a backend, endpoints are taken round-robin through the backend's cursor, which is kept
//! across tables (`live.rs`).
//!
//! Connecting: the whole phase (DNS resolution and connect attempts) runs under one
//! `connect_timeout`, so a client waits at most its hello deadline plus this. If the first
//! endpoint fails before the deadline (typically "connection refused" from a pod that just went
//! away), the next endpoint of the same backend is tried once with the time that remains. The
//! first bytes for the backend (a passthrough connection's replay) go out as soon as the
//! connection exists (`connect_one`). Each attempt is counted per backend, with its time when it
//! succeeds and its reason when it fails.
//! Health checking and failover across backends are not done here (a later issue).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustix::io::Errno;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Keepalive;
use crate::error::ConnError;
use crate::live::{BackendState, Target};
use crate::metrics::{BackendReasonLabels, Metrics};

/// At most this many endpoints are tried per connection.
pub const MAX_ATTEMPTS: usize = 2;

/// A connected backend stream.
#[derive(Debug)]
pub struct Connected {
    /// The stream, with TCP_NODELAY set.
    pub stream: TcpStream,
    /// The endpoint it is connected to.
    pub addr: SocketAddr,
    /// How many of the first bytes asked for were sent while connecting.
    pub sent: usize,
}

/// Connects to one endpoint of `target` (the backend `state`) and sends what of `first` the new
/// socket takes at once ([`Connected::sent`]; see `connect_one`).
pub(crate) async fn connect(
    target: &Target,
    state: &BackendState,
    connect_timeout: Duration,
    first: &[u8],
    keepalive: Option<Keepalive>,
    metrics: &Metrics,
) -> Result<Connected, ConnError> {
    let deadline = Instant::now() + connect_timeout;
    let name = &state.name;
    let fail = |reason: &'static str| {
        let labels = BackendReasonLabels { backend: name.clone(), reason };
        metrics.connect_failures.get_or_create(&labels).inc();
    };
    let candidates: Vec<SocketAddr> = match target {
        Target::Invalid(reason) => {
            return Err(ConnError::InvalidBackend {
                backend: name.clone(),
                reason: reason.clone(),
            });
        }
        Target::Endpoints(addrs) => {
            if addrs.is_empty() {
                return Err(ConnError::NoEndpoints { backend: name.clone() });
            }
            let first =
                state.cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % addrs.len();
            (0..addrs.len().min(MAX_ATTEMPTS)).map(|i| addrs[(first + i) % addrs.len()]).collect()
        }
        Target::Dns { host, port } => {
            let resolved =
                tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), *port)))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolution timed out"))
                    .and_then(|r| r);
            let addrs = match resolved {
                Ok(addrs) => addrs.take(MAX_ATTEMPTS).collect::<Vec<_>>(),
                Err(source) => {
                    fail("resolve");
                    return Err(ConnError::Resolve { host: host.clone(), source });
                }
            };
            if addrs.is_empty() {
                return Err(ConnError::NoEndpoints { backend: name.clone() });
            }
            addrs
        }
    };
    let mut last = None;
    for addr in candidates {
        state.metrics.attempts.inc();
        let started = Instant::now();
        match connect_one(addr, deadline, first, keepalive).await {
            Ok((stream, sent)) => {
                state.metrics.connect_duration.observe(started.elapsed().as_secs_f64());
                return Ok(Connected { stream, addr, sent });
            }
            Err(source) => {
                tracing::debug!(backend = %name, %addr, error = %source, "connect failed");
                fail(failure_reason(&source));
                let timed_out = source.kind() == io::ErrorKind::TimedOut;
                last = Some(ConnError::Connect { addr, source });
                if timed_out {
                    break;
                }
            }
        }
    }
    // `candidates` is never empty, so `last` is set.
    Err(last.unwrap_or_else(|| ConnError::NoEndpoints { backend: name.clone() }))
}

/// The `reason` label of a failed attempt.
fn failure_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable",
        _ => "error",
    }
}

/// Connects to `addr` and, once connected, sends what of `first` the socket takes at once.
///
/// A non-blocking connect reports `EINPROGRESS` even when the handshake completes within the call
/// (on loopback, and to any endpoint on the same host, the kernel has already processed the
/// SYN-ACK by the time `connect` returns). So the first bytes are sent straight away: if the send
/// succeeds the connection is established and the wait for writability, its pass through the
/// event loop and the `SO_ERROR` query are skipped; `EAGAIN` means the handshake is still under
/// way, and only then is it waited for. Either way no byte is sent before the connection exists.
async fn connect_one(
    addr: SocketAddr,
    deadline: Instant,
    first: &[u8],
    keepalive: Option<Keepalive>,
) -> io::Result<(TcpStream, usize)> {
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    // Latency over batching: the client's and backend's TLS stacks already write whole records.
    socket.set_tcp_nodelay(true)?;
    if keepalive.is_some() {
        crate::listener::set_keepalive(SockRef::from(&socket), keepalive)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::INPROGRESS.raw_os_error()) => {}
        Err(e) => return Err(e),
    }
    let mut sent = 0;
    if !first.is_empty() {
        match socket.send(first) {
            Ok(n) => sent = n,
            Err(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    let stream = TcpStream::from_std(socket.into())?;
    if sent == 0 {
        match tokio::time::timeout_at(deadline, stream.writable()).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, sent))
}
