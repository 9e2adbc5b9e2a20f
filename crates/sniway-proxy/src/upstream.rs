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
//! away), the next endpoint of the same backend is tried once with the time that remains.
//! Health checking and failover across backends are not done here (a later issue).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sniway_model::{Backend, Route};
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
}

/// Picks a backend of `route` by weight and connects to one of its endpoints.
pub async fn connect(route: &Route, connect_timeout: Duration) -> Result<Connected, ConnError> {
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
        Backend::Endpoints { name, addrs, cursor } => {
            if addrs.is_empty() {
                return Err(ConnError::NoEndpoints { backend: name.clone() });
            }
            let first = cursor.next(addrs.len());
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
        match connect_one(addr, deadline).await {
            Ok(stream) => {
                return Ok(Connected { stream, addr, backend: name.clone() });
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

async fn connect_one(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    // Latency over batching: the client's and backend's TLS stacks already write whole records.
    stream.set_nodelay(true)?;
    Ok(stream)
}
