//! Chooses a backend for a connection and connects to it, failing over to other endpoints and
//! backends.
//!
//! Gateway API `BackendRef.weight` (digest `gateway-api-tls.md` §4): "Each backend gets
//! weight/sum; weights are not percentages", "0 means no traffic to that entry", and weighting
//! "applies per connection". For invalid or missing backends, or a Service with no endpoints:
//! "actively reject the connection. Rejections are weighted (80% invalid weight means 80% of
//! connections refused)". So the choice is a uniform roll over the sum of the weights of the
//! primary backends (those not marked `fallback` by a `BackendPolicy`), and landing on an
//! unusable backend refuses the connection rather than rolling again or failing over. A route
//! whose weights are all 0 refuses every connection.
//!
//! Within a backend, an endpoint is chosen by the backend's load balancer (`balance.rs`) among
//! its usable endpoints (not ejected, not failed by active checks; `health.rs`).
//!
//! Connecting tries at most `failover.attempts` endpoints (default 3), each within its backend's
//! `connectTimeout`, all within the chosen backend's attempts x `connectTimeout`. Refused,
//! unreachable and timed-out connects all fail over, in this order, each endpoint at most once:
//!
//! 1. another usable endpoint of the chosen backend;
//! 2. a usable endpoint of another primary backend of the route with weight above 0, in the
//!    route's order from the chosen one;
//! 3. once no usable primary endpoint is left (every one unhealthy, or tried by this
//!    connection), a usable endpoint of a fallback backend (whatever its weight), counted as
//!    fallback use; fallback backends give the traffic back as soon as a primary endpoint is
//!    usable again;
//! 4. with none, each primary backend whose policy says `whenAllUnhealthy: FailOpen` (the
//!    default) offers its unhealthy endpoints anyway; with `Refuse` it offers none, and a
//!    connection that found nothing is refused.
//!
//! Only backends sent the same PROXY protocol header as the chosen one (the same version, or
//! none) take over from it in steps 2 to 4, since the first bytes were prepared for it.
//!
//! The first bytes for the backend (a passthrough connection's buffered ClientHello) are sent on
//! each attempt's new socket as soon as it is connected (`connect_one`), so a failed attempt
//! costs the client nothing but time. Each attempt is counted per backend, with its time when it
//! succeeds and its reason when it fails; its result feeds the endpoint's passive health.
//! Backends named by DNS are resolved through the shared resolver (`resolve.rs`), which keeps
//! answers for their TTL; a name that does not resolve offers no endpoint (counted as a
//! `resolve` failure), and the order moves on to the next backend.
//!
//! On the common path (the first endpoint chosen is usable and accepts) a connect allocates
//! nothing and takes no lock beyond what the socket needs: the pick is atomic loads, and the
//! list of tried endpoints is only allocated after a failure.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustix::io::Errno;
use sniway_model::settings::WhenAllUnhealthy;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ConnError;
use crate::health::{EndpointGuard, EndpointState};
use crate::live::{LiveBackend, LiveRoute, Target};
use crate::metrics::{BackendLabels, BackendReasonLabels};
use crate::{Inner, Keepalive};

/// A connected backend stream.
#[derive(Debug)]
pub struct Connected {
    /// The stream, with TCP_NODELAY set.
    pub stream: TcpStream,
    /// The endpoint it is connected to.
    pub addr: SocketAddr,
    /// How many of the first bytes asked for were sent while connecting.
    pub sent: usize,
    /// The index in the route of the backend that took the connection.
    pub(crate) backend: usize,
    /// Counts the connection on its endpoint while it lives.
    pub(crate) endpoint: EndpointGuard,
}

/// Which endpoints a step of the failover order takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Usable ones only.
    Usable,
    /// Any (fail open).
    Any,
}

/// Connects a connection whose weighted choice fell on `route.backends[chosen]`, failing over
/// as the module says, and sends what of `first` the new socket takes at once
/// ([`Connected::sent`]).
pub(crate) async fn connect(
    inner: &Inner,
    route: &LiveRoute,
    chosen: usize,
    first: &[u8],
    keepalive: Option<Keepalive>,
) -> Result<Connected, ConnError> {
    let b = &route.backends[chosen];
    match &b.target {
        Target::Invalid(reason) => {
            return Err(ConnError::InvalidBackend {
                backend: b.state.name.clone(),
                reason: reason.clone(),
            });
        }
        Target::Endpoints(addrs) if addrs.is_empty() => {
            return Err(ConnError::NoEndpoints { backend: b.state.name.clone() });
        }
        _ => {}
    }
    let config = &inner.config;
    let attempts = b.settings.failover_attempts.unwrap_or(config.failover_attempts).max(1);
    let per_attempt = b.settings.connect_timeout.unwrap_or(config.connect_timeout);
    let deadline = Instant::now() + per_attempt.saturating_mul(attempts);
    let mut tried: Vec<(usize, SocketAddr)> = Vec::new();
    let mut last: Option<ConnError> = None;
    for _ in 0..attempts {
        let found = next(inner, route, chosen, &tried, deadline, &mut last).await;
        let Some((i, ep)) = found else { break };
        let backend = &route.backends[i];
        let timeout = backend.settings.connect_timeout.unwrap_or(config.connect_timeout);
        let until = (Instant::now() + timeout).min(deadline);
        backend.state.metrics.attempts.inc();
        if let Some(&(failed, _)) = tried.last() {
            let labels = BackendLabels { backend: route.backends[failed].state.name.clone() };
            inner.metrics.failovers.get_or_create(&labels).inc();
        }
        let started = Instant::now();
        match connect_one(ep.addr, until, first, keepalive).await {
            Ok((stream, sent)) => {
                ep.connect_succeeded();
                backend.state.metrics.connect_duration.observe(started.elapsed().as_secs_f64());
                if backend.settings.fallback {
                    let labels = BackendLabels { backend: backend.state.name.clone() };
                    inner.metrics.fallbacks.get_or_create(&labels).inc();
                }
                let addr = ep.addr;
                return Ok(Connected {
                    stream,
                    addr,
                    sent,
                    backend: i,
                    endpoint: EndpointGuard::new(ep),
                });
            }
            Err(source) => {
                let name = &backend.state.name;
                tracing::debug!(backend = %name, addr = %ep.addr, error = %source, "connect failed");
                failed(inner, name, failure_reason(&source));
                let passive = backend.settings.passive_health.unwrap_or(config.passive_health);
                ep.connect_failed(&passive);
                tried.push((i, ep.addr));
                last = Some(ConnError::Connect { addr: ep.addr, source });
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnError::Unhealthy { backend: b.state.name.clone() }))
}

fn failed(inner: &Inner, backend: &str, reason: &'static str) {
    let labels = BackendReasonLabels { backend: backend.to_string(), reason };
    inner.metrics.connect_failures.get_or_create(&labels).inc();
}

/// Whether `b` takes traffic as a primary (not a fallback, weight above 0).
fn primary(b: &LiveBackend) -> bool {
    !b.settings.fallback && b.weight > 0
}

/// The next endpoint to try, in the failover order.
async fn next(
    inner: &Inner,
    route: &LiveRoute,
    chosen: usize,
    tried: &[(usize, SocketAddr)],
    deadline: Instant,
    last: &mut Option<ConnError>,
) -> Option<(usize, Arc<EndpointState>)> {
    let n = route.backends.len();
    // The first bytes sent (a PROXY header, or none) are the chosen backend's: only backends that
    // take the same can take over.
    let version = route.backends[chosen].proxy_protocol;
    let same = move |i: &usize| route.backends[*i].proxy_protocol == version;
    let others = move || (1..n).map(move |k| (chosen + k) % n).filter(same);
    if let Some(ep) = endpoint_of(inner, route, chosen, tried, Health::Usable, deadline, last).await
    {
        return Some((chosen, ep));
    }
    for i in others().filter(|&i| primary(&route.backends[i])) {
        if let Some(ep) = endpoint_of(inner, route, i, tried, Health::Usable, deadline, last).await
        {
            return Some((i, ep));
        }
    }
    for i in (0..n).filter(same).filter(|&i| route.backends[i].settings.fallback) {
        if let Some(ep) = endpoint_of(inner, route, i, tried, Health::Usable, deadline, last).await
        {
            return Some((i, ep));
        }
    }
    for i in std::iter::once(chosen).chain(others().filter(|&i| primary(&route.backends[i]))) {
        let b = &route.backends[i];
        if b.settings.when_all_unhealthy.unwrap_or_default() == WhenAllUnhealthy::FailOpen
            && let Some(ep) = endpoint_of(inner, route, i, tried, Health::Any, deadline, last).await
        {
            return Some((i, ep));
        }
    }
    None
}

/// The addresses of `host`, within the connection's connect deadline.
async fn resolve(
    inner: &Inner,
    host: &str,
    port: u16,
    deadline: Instant,
) -> io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout_at(deadline, inner.registry.resolver.resolve(host, port)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "resolution timed out")),
    }
}

/// An endpoint of `route.backends[i]` not yet tried, by the backend's load balancer.
async fn endpoint_of(
    inner: &Inner,
    route: &LiveRoute,
    i: usize,
    tried: &[(usize, SocketAddr)],
    health: Health,
    deadline: Instant,
    last: &mut Option<ConnError>,
) -> Option<Arc<EndpointState>> {
    let b = &route.backends[i];
    let endpoints: Cow<'_, [Arc<EndpointState>]> = match &b.target {
        Target::Invalid(_) => return None,
        Target::Endpoints(_) => Cow::Borrowed(&b.endpoints),
        Target::Dns { host, port } => match resolve(inner, host, *port, deadline).await {
            Ok(addrs) => Cow::Owned(b.state.health.resolved(&addrs)),
            Err(source) => {
                tracing::debug!(backend = %b.state.name, %host, error = %source, "resolving failed");
                failed(inner, &b.state.name, "resolve");
                *last = Some(ConnError::Resolve { host: host.clone(), source });
                return None;
            }
        },
    };
    let lb = b.settings.load_balancer.unwrap_or_default();
    let eligible = |e: &EndpointState| {
        (health == Health::Any || e.usable()) && !tried.iter().any(|&(t, a)| t == i && a == e.addr)
    };
    crate::balance::pick(lb, &endpoints, &b.state.cursor, eligible)
        .map(|k| Arc::clone(&endpoints[k]))
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
