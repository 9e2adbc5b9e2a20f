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
//! Within a backend, endpoints are taken round-robin through the table's shared cursor.
//!
//! Connecting: the whole phase (DNS resolution and connect attempts) runs under one
//! `connect_timeout`, so a client waits at most its hello deadline plus this. If the first
//! endpoint fails before the deadline (typically "connection refused" from a pod that just went
//! away), the next endpoint of the same backend is tried once with the time that remains. The
//! first bytes for the backend (a passthrough connection's replay) go out as soon as the
//! connection exists (`connect_one`).
//! Health checking and failover across backends are not done here (a later issue).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustix::io::Errno;
use sniway_model::{Backend, Route};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ConnError;

/// At most this many endpoints are tried per connection.
pub const MAX_ATTEMPTS: usize = 2;

/// A connected backend stream.
#[derive(Debug)]
pub struct Connected {
    /// The stream, with TCP_NODELAY set.
    pub stream: TcpStream,
    /// The endpoint it is connected to.
    pub addr: SocketAddr,
    /// The backend's display name.
    pub backend: String,
    /// How many of the first bytes asked for were sent while connecting.
    pub sent: usize,
}

/// Picks a backend of `route` by weight, connects to one of its endpoints and sends what of
/// `first` the new socket takes at once ([`Connected::sent`]; see `connect_one`).
pub async fn connect(
    route: &Route,
    cursor: &std::sync::atomic::AtomicUsize,
    connect_timeout: Duration,
    first: &[u8],
) -> Result<Connected, ConnError> {
    let total = route.total_weight();
    let picked = match total {
        0 => None,
        total => route.pick(fastrand::u64(0..total)),
    };
    let Some(wb) = picked else {
        return Err(ConnError::NoBackend { route: route.id.to_string() });
    };
    let deadline = Instant::now() + connect_timeout;
    let (name, candidates) = match &wb.backend {
        Backend::Invalid { name, reason } => {
            return Err(ConnError::InvalidBackend {
                backend: name.clone(),
                reason: reason.clone(),
            });
        }
        Backend::Endpoints { name, addrs } => {
            if addrs.is_empty() {
                return Err(ConnError::NoEndpoints { backend: name.clone() });
            }
            let first = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % addrs.len();
            let candidates: Vec<SocketAddr> = (0..addrs.len().min(MAX_ATTEMPTS))
                .map(|i| addrs[(first + i) % addrs.len()])
                .collect();
            (name, candidates)
        }
        Backend::Dns { name, host, port } => {
            let resolved =
                tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), *port)))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolution timed out"))
                    .and_then(|r| r);
            let addrs = match resolved {
                Ok(addrs) => addrs.take(MAX_ATTEMPTS).collect::<Vec<_>>(),
                Err(source) => return Err(ConnError::Resolve { host: host.clone(), source }),
            };
            if addrs.is_empty() {
                return Err(ConnError::NoEndpoints { backend: name.clone() });
            }
            (name, addrs)
        }
    };
    let mut last = None;
    for addr in candidates {
        match connect_one(addr, deadline, first).await {
            Ok((stream, sent)) => {
                return Ok(Connected { stream, addr, backend: name.clone(), sent });
            }
            Err(source) => {
                tracing::debug!(backend = %name, %addr, error = %source, "connect failed");
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
) -> io::Result<(TcpStream, usize)> {
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    // Latency over batching: the client's and backend's TLS stacks already write whole records.
    socket.set_tcp_nodelay(true)?;
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
