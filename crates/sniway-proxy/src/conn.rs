//! One client connection, from accept to close: detect the hello, look up the listener and route,
//! apply the limits, then by the listener's mode either connect to a backend, replay the buffered
//! bytes and relay (Passthrough), or complete the TLS handshake, connect and relay plaintext
//! (Terminate). Every connection ends in exactly one of: a hello failure (before a route), a
//! limit, a failure on its path (listener, route, backend), or a close after relaying; each is
//! counted, logged at debug, and written to the access log when it is on.
//!
//! Every refusal up to that decision closes the client socket with nothing written (digest
//! `gateway-api-tls.md` §3: "close the socket without writing"; the conformance suite treats a TLS
//! alert as a failure). The close is a FIN, or a RST when the client sent bytes that were not
//! read; a hello that is not complete at its deadline is closed with a RST, as every deadline
//! ends a connection (the handshake deadline and the relay's too). On a Terminate listener, a
//! handshake that fails afterwards may end with rustls' alert, and a backend that cannot be
//! reached after the handshake gets the client a close_notify.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sniway_model::settings::Unmatched;
use sniway_wire::ServerName;
use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::access_log::Record;
use crate::detect::{self, Detected};
use crate::error::{ConnError, Limit, Side};
use crate::health::EndpointGuard;
use crate::live::{
    BackendGuard, Found, Installed, ListenerGuard, LiveListener, LiveRoute, LiveSocket, Mode,
};
use crate::metrics::{
    HandshakeLabels, LimitLabels, ListenerReasonLabels, PathLabels, PathMetrics, PathReasonLabels,
    PostgresLabels, ProxyHeaderLabels, SocketReasonLabels, UnmatchedLabels,
};
use crate::postgres;
use crate::proxy_protocol;
use crate::relay::{self, Replay, Transferred};
use crate::terminate::{self, Prefixed};
use crate::upstream::{self, Connected};
use crate::watchdog::{Cut, Deadlines, Watchdog, cut_signal};
use crate::{Inner, listener};

/// What the accept loop hands to a connection task.
pub(crate) struct Accepted {
    /// The client socket.
    pub stream: TcpStream,
    /// The socket's peer: the client, or a load balancer that sends a PROXY protocol header.
    pub client: SocketAddr,
    /// The gateway's socket address that accepted it.
    pub local: SocketAddr,
    /// The table current when the connection was accepted; the lookup uses it even if a new
    /// table is installed while the hello is being read.
    pub installed: Arc<Installed>,
    /// Index of this socket in `installed.sockets`, precomputed once per table by the accept
    /// loop; `None` when the table no longer serves this socket.
    pub socket: Option<usize>,
    /// The connection's share of the global limit.
    pub permit: OwnedSemaphorePermit,
    /// Accept time.
    pub start: Instant,
}

/// The access log's fields beyond what the connection keeps anyway (the listener, route and
/// backend names of a routed connection are its metric labels). Allocated only when the log is
/// on, so a connection without it carries one empty pointer.
#[derive(Debug)]
struct LogFields {
    client: SocketAddr,
    local: SocketAddr,
    /// The listener, for a connection refused before it had a backend.
    listener: Option<Box<str>>,
    /// The route, likewise.
    route: Option<Box<str>>,
    sni: Option<Box<str>>,
    /// The client's ALPN offer.
    alpn: Vec<Vec<u8>>,
    endpoint: Option<SocketAddr>,
    hello: Option<Duration>,
    connect: Option<Duration>,
}

impl LogFields {
    fn new(client: SocketAddr, local: SocketAddr) -> Box<LogFields> {
        Box::new(LogFields {
            client,
            local,
            listener: None,
            route: None,
            sni: None,
            alpn: Vec::new(),
            endpoint: None,
            hello: None,
            connect: None,
        })
    }
}

type Log = Option<Box<LogFields>>;

/// A connection past its limits, on its way to or in the relay.
struct Session {
    start: Instant,
    _permit: OwnedSemaphorePermit,
    _listener: ListenerGuard,
    backend: BackendGuard,
    _endpoint: EndpointGuard,
    log: Log,
}

/// Serves one connection to the end.
///
/// A task's future is as large as its largest state, and a passthrough connection spends its life
/// in the relay. So everything before the relay (hello deadline and buffer, lookup, connect, TLS
/// handshake) runs in one boxed future that is freed before the relay starts, and the Terminate
/// relay (rustls state) is boxed too; the state a long-lived passthrough connection keeps is its
/// two sockets, its guards and the relay's own state.
pub(crate) fn serve(accepted: Accepted, inner: Arc<Inner>) -> impl Future<Output = ()> + Send {
    // Built before the task's future, so the future captures a pointer, not the accepted state.
    let setup = Box::pin(prepare(accepted, Arc::clone(&inner)));
    async move {
        // Each step's state lives in its own block, so none of it is kept across the relay.
        let relay = {
            let mut cut = cut_signal(inner.cut.subscribe());
            let ready = tokio::select! {
                biased;
                r = setup => r,
                () = &mut cut => {
                    tracing::debug!(reason = "drained", "cut before relaying");
                    None
                }
            };
            match ready {
                Some(Ready::Passthrough(p)) => p.run(cut, inner),
                Some(Ready::Terminate(t)) => t.run(cut, inner),
                None => return,
            }
        };
        relay.await;
    }
}

/// A connection's relay, boxed: as large as its own state only.
type Relay = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection ready to relay. Short-lived: it is moved into the relay's box at once, so the
/// passthrough variant is not boxed on its own (that would be one more allocation per connection).
#[allow(clippy::large_enum_variant)]
enum Ready {
    Passthrough(Passthrough),
    Terminate(Box<Terminated>),
}

/// A passthrough connection ready to relay.
struct Passthrough {
    client: TcpStream,
    backend: TcpStream,
    /// Every byte read from the client so far, replayed to the backend first.
    replay: Replay,
    /// Bytes of the gateway's own (a PROXY protocol header) at the start of the replay: not the
    /// client's, so not counted as received from it.
    ahead: u64,
    deadlines: Deadlines,
    session: Session,
}

impl Passthrough {
    fn run(self, cut: Cut, inner: Arc<Inner>) -> Relay {
        let Passthrough { client, backend, replay, ahead, deadlines, session } = self;
        let mut watchdog = Watchdog::new(deadlines, Some(cut));
        Box::pin(async move {
            let path = session.backend.path();
            let mut skip = ahead;
            let meter = |up: u64, down| {
                let own = up.min(skip);
                skip -= own;
                path.moved(up - own, down)
            };
            let (mut t, result) =
                relay::relay(&client, &backend, replay, &mut watchdog, meter).await;
            t.client_to_backend = t.client_to_backend.saturating_sub(ahead);
            finish(&inner, &session, t, result);
        })
    }
}

/// A terminated connection, handshake done and backend connected, ready to relay plaintext.
struct Terminated {
    tls: TlsStream<Prefixed<TcpStream>>,
    backend: TcpStream,
    deadlines: Deadlines,
    session: Session,
}

impl Terminated {
    fn run(self: Box<Self>, cut: Cut, inner: Arc<Inner>) -> Relay {
        let Terminated { mut tls, mut backend, deadlines, session } = *self;
        let mut watchdog = Watchdog::new(deadlines, Some(cut));
        Box::pin(async move {
            let path = session.backend.path();
            let meter = |up, down| path.moved(up, down);
            let (t, result) = terminate::relay(&mut tls, &mut backend, &mut watchdog, meter).await;
            if result.is_err() {
                for s in [tls.get_ref().0.get_ref(), &backend] {
                    relay::abort_on_close(s);
                }
            }
            finish(&inner, &session, t, result);
        })
    }
}

/// Everything before the relay: the hello, the lookup, the limits, the backend, the connect (and
/// for Terminate the handshake). Every way it fails is accounted for here.
async fn prepare(accepted: Accepted, inner: Arc<Inner>) -> Option<Ready> {
    let inner = &*inner;
    let Accepted { mut stream, client: peer, local, installed, socket, permit, start } = accepted;
    let mut log: Log = inner.access_log.is_some().then(|| LogFields::new(peer, local));
    let Some(sock) = socket.and_then(|i| installed.sockets.get(i)) else {
        let e = ConnError::NoListener { sni: String::new() };
        unrouted(inner, None, peer, local, start, &e, log);
        return None;
    };
    // TCP_NODELAY: inherited from the listening socket on Linux (listener.rs); elsewhere set here.
    if !cfg!(target_os = "linux")
        && let Err(e) = stream.set_nodelay(true)
    {
        tracing::debug!(error = %e, "setting TCP_NODELAY on the client socket");
    }

    let preface =
        detect::read_preface(&mut stream, sock.hello_timeout, peer, &sock.proxy_protocol).await;
    let detected = match preface {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, ConnError::HelloTimeout(_)) {
                // A deadline ends the connection with a reset, as in the relay.
                relay::abort_on_close(&stream);
            }
            unrouted(inner, Some(sock), peer, local, start, &e, log);
            return None;
        }
    };
    // From here on the client is the one a PROXY header names, when there was one.
    let client = preface_counted(inner, sock, peer, &detected);
    let hello_time = start.elapsed();
    sock.metrics.hello_duration.observe(hello_time.as_secs_f64());
    if let Some(l) = &mut log {
        l.client = client;
        l.hello = Some(hello_time);
        l.alpn = detected.hello.alpn.clone();
    }
    let (listener, route) = match lookup(sock, &detected, &mut log, &inner.metrics) {
        Ok(found) => found,
        Err(e) => {
            if matches!(e, ConnError::UnrecognizedName { .. }) {
                send_alert(&mut stream).await;
            }
            unrouted(inner, Some(sock), client, local, start, &e, log);
            return None;
        }
    };
    tracing::trace!(listener = %listener.label, route = %route.id, "routed");
    let listener_guard = match ListenerGuard::acquire(&listener, client.ip()) {
        Ok(g) => g,
        Err(limit) => {
            limited(inner, &sock.metrics.address, Some(&listener), limit, start, log);
            return None;
        }
    };
    // A listener whose keep-alive differs from its socket's sets its own on the connection.
    if listener.keepalive != sock.keepalive {
        let _ = listener::set_keepalive(SockRef::from(&stream), listener.keepalive);
    }
    let deadlines = Deadlines::new(
        listener.idle_timeout,
        listener.half_close_timeout,
        listener.max_lifetime,
        start,
    );
    // The table (through `sock`) is kept until the relay starts, never by the relay.
    let routed = Routed { inner, sock, listener: &listener, route: &route, start };
    let origin = Origin { client, local };
    match &listener.mode {
        Mode::Passthrough => {
            // Only the bytes are kept for the replay; the parsed hello is not needed any more.
            let Detected { hello, buffered, postgres, .. } = detected;
            let (chosen, backend, mut log) = routed.choose(log)?;
            // The gateway's own bytes go first: the PROXY header, then PostgreSQL's SSLRequest.
            let alpn = hello.alpn.first().map(Vec::as_slice);
            let version = route.backends[chosen].proxy_protocol;
            let mut own = origin.header(version, server_name(&hello), alpn);
            drop(hello);
            if postgres.ssl {
                own.extend_from_slice(&postgres::SSL_REQUEST);
            }
            // What the connect sends at once: the gateway's bytes (PostgreSQL, whose hello waits
            // for the backend's answer), or those and the hello in one buffer.
            let (replay_buf, ahead) = if postgres.ssl || own.is_empty() {
                (buffered, 0)
            } else {
                let ahead = own.len();
                own.extend_from_slice(&buffered);
                drop(buffered);
                (std::mem::take(&mut own), ahead)
            };
            let first: &[u8] = if postgres.ssl { &own } else { &replay_buf };
            // The replay starts with the connect: usually all of it goes out there.
            let connected = routed.connect(chosen, first, &mut log).await;
            let connected = match connected {
                Ok(c) => c,
                Err(e) => return routed.fail(backend.path(), &e, log),
            };
            let (backend, log) = routed.settle(backend, &connected, log)?;
            let Connected { stream: mut backend_stream, sent, endpoint, .. } = connected;
            let replay = if postgres.ssl {
                let unsent = &own[sent.min(own.len())..];
                let timeout = inner.config.connect_timeout;
                if let Err(e) =
                    postgres::negotiate_backend(&mut backend_stream, unsent, timeout).await
                {
                    return routed.fail(backend.path(), &e, log);
                }
                Replay { buf: replay_buf, sent: 0 }
            } else {
                Replay { buf: replay_buf, sent }
            };
            let session = Session {
                start,
                _permit: permit,
                _listener: listener_guard,
                backend,
                _endpoint: endpoint,
                log,
            };
            Some(Ready::Passthrough(Passthrough {
                client: stream,
                backend: backend_stream,
                replay,
                ahead: ahead as u64,
                deadlines,
                session,
            }))
        }
        Mode::Terminate(config, certificates) => {
            let config = match config {
                Ok(c) => Arc::clone(c),
                Err(e) => {
                    let e = ConnError::TlsConfig(rustls::Error::General(e.clone()));
                    return routed.fail_unpicked(&e, log);
                }
            };
            // No certificate: refused before rustls writes anything.
            if certificates.certificates.load().0.is_empty() {
                let e = ConnError::NoCertificate { listener: listener.label.clone() };
                return routed.fail_unpicked(&e, log);
            }
            let t = Box::pin(routed.terminate(stream, detected, config, &origin, log)).await?;
            let (tls, backend_stream, backend, endpoint, log) = t;
            let session = Session {
                start,
                _permit: permit,
                _listener: listener_guard,
                backend,
                _endpoint: endpoint,
                log,
            };
            Some(Ready::Terminate(Box::new(Terminated {
                tls,
                backend: backend_stream,
                deadlines,
                session,
            })))
        }
    }
}

/// The listener and route for the hello's server name; for a client that names none (or an IP
/// address), or a name no route takes, what the listener's `noSni` or `noMatch` says (counted):
/// its default route, or an error (`UnrecognizedName` when it asks for an alert).
fn lookup(
    sock: &LiveSocket,
    detected: &Detected,
    log: &mut Log,
    metrics: &crate::Metrics,
) -> Result<(Arc<LiveListener>, Arc<LiveRoute>), ConnError> {
    let sni = match &detected.hello.server_name {
        ServerName::Host(h) => h.as_str(),
        ServerName::None => return unmatched(sock, None, NO_SNI, ConnError::NoSni, log, metrics),
        ServerName::Invalid => {
            return unmatched(sock, None, NO_SNI, ConnError::InvalidSni, log, metrics);
        }
    };
    if let Some(l) = log {
        l.sni = Some(sni.into());
    }
    let found = sock.lookup(sni);
    if let (Some(l), Found::Route(listener, _) | Found::NoRoute(listener)) = (log.as_mut(), &found)
    {
        l.listener = Some(listener.label.as_str().into());
    }
    match found {
        Found::Route(l, r) => {
            if let Some(lg) = log {
                lg.route = Some(r.id.to_string().into());
            }
            Ok((Arc::clone(l), Arc::clone(r)))
        }
        Found::NoRoute(l) => {
            let e = ConnError::NoRoute { listener: l.label.clone(), sni: sni.to_string() };
            unmatched(sock, Some(l), NO_MATCH, e, log, metrics)
        }
        Found::NoListener => {
            let e = ConnError::NoListener { sni: sni.to_string() };
            let name = sni.strip_suffix('.').unwrap_or(sni);
            let kind = if name.parse::<std::net::IpAddr>().is_ok() { NO_SNI } else { NO_MATCH };
            unmatched(sock, None, kind, e, log, metrics)
        }
    }
}

/// `kind` label of a client that sent no usable server name.
const NO_SNI: &str = "no_sni";
/// `kind` label of a server name that no route takes.
const NO_MATCH: &str = "no_match";

/// A client no route takes: `listener` (or the socket's listener for such clients) decides by
/// its `noSni` or `noMatch`. Close gives `close` back; Alert an `UnrecognizedName`; Backend its
/// default route, or `close` when it has none.
fn unmatched(
    sock: &LiveSocket,
    listener: Option<&Arc<LiveListener>>,
    kind: &'static str,
    close: ConnError,
    log: &mut Log,
    metrics: &crate::Metrics,
) -> Result<(Arc<LiveListener>, Arc<LiveRoute>), ConnError> {
    let listener = listener.or(sock.unmatched.as_ref());
    let (action, default) = match listener {
        None => (Unmatched::Close, None),
        Some(l) if kind == NO_SNI => (l.no_sni, l.default_no_sni.as_ref()),
        Some(l) => (l.no_match, l.default_no_match.as_ref()),
    };
    let (label, result) = match (action, listener, default) {
        (Unmatched::Backend, Some(l), Some(r)) => ("backend", Ok((Arc::clone(l), Arc::clone(r)))),
        (Unmatched::Alert, Some(_), _) => ("alert", Err(ConnError::UnrecognizedName { kind })),
        _ => ("close", Err(close)),
    };
    let labels = UnmatchedLabels {
        address: sock.metrics.address.clone(),
        listener: listener.map(|l| l.label.clone()).unwrap_or_default(),
        kind,
        action: label,
    };
    metrics.unmatched.get_or_create(&labels).inc();
    if let (Some(lg), Some(l)) = (log.as_mut(), listener) {
        lg.listener = Some(l.label.as_str().into());
        if let Ok((_, r)) = &result {
            lg.route = Some(r.id.to_string().into());
        }
    }
    result
}

/// The fatal TLS alert `unrecognized_name` (RFC 6066 §3, alert 112), as a TLS 1.2 record (RFC
/// 8446 §5.1: the legacy record version of everything but the first ClientHello).
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Sends the alert, then closes the write side; bounded in time.
async fn send_alert(stream: &mut TcpStream) {
    let sent = tokio::time::timeout(CLOSE_TIMEOUT, async {
        stream.write_all(&UNRECOGNIZED_NAME_ALERT).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("unrecognized_name alert not sent");
    }
}

/// The host name the client asked for, as sent.
fn server_name(hello: &sniway_wire::ClientHello) -> Option<&str> {
    match &hello.server_name {
        ServerName::Host(h) => Some(h),
        _ => None,
    }
}

/// Counts what came before the hello (a PROXY header, a PostgreSQL request) and gives the
/// client's address: the header's, or the socket's peer.
fn preface_counted(
    inner: &Inner,
    sock: &LiveSocket,
    peer: SocketAddr,
    detected: &Detected,
) -> SocketAddr {
    let address = || sock.metrics.address.clone();
    let m = &inner.metrics;
    if detected.postgres.gssenc {
        m.postgres_requests
            .get_or_create(&PostgresLabels { address: address(), request: "gssenc" })
            .inc();
    }
    if detected.postgres.ssl {
        m.postgres_requests
            .get_or_create(&PostgresLabels { address: address(), request: "ssl" })
            .inc();
    }
    let Some(received) = detected.proxied else { return peer };
    let labels = ProxyHeaderLabels {
        address: address(),
        version: if received.version == 1 { "v1" } else { "v2" },
        command: if received.client.is_some() { "proxy" } else { "local" },
    };
    m.proxy_headers.get_or_create(&labels).inc();
    let client = received.client.unwrap_or(peer);
    tracing::debug!(%peer, %client, version = received.version, "PROXY protocol header accepted");
    client
}

/// Where a connection comes from, for the PROXY protocol header sent to its backend.
struct Origin {
    /// The client's address (a PROXY header's, when one was accepted).
    client: SocketAddr,
    /// The gateway's address the connection was accepted on.
    local: SocketAddr,
}

impl Origin {
    /// The header for a backend that wants `version` (with the server name the client asked
    /// for, and an ALPN protocol); empty for none.
    fn header(
        &self,
        version: sniway_model::settings::ProxyProtocolVersion,
        sni: Option<&str>,
        alpn: Option<&[u8]>,
    ) -> Vec<u8> {
        proxy_protocol::header(version, self.client, self.local, sni, alpn)
    }
}

/// A connection with its listener and route chosen.
struct Routed<'a> {
    inner: &'a Inner,
    sock: &'a LiveSocket,
    listener: &'a LiveListener,
    route: &'a LiveRoute,
    start: Instant,
}

impl<'a> Routed<'a> {
    /// Picks a backend by weight and counts the connection on it, within its limit.
    fn choose(&self, log: Log) -> Option<(usize, BackendGuard, Log)> {
        let inner = self.inner;
        let route = self.route;
        let picked = match route.total_weight {
            0 => None,
            total => route.pick(fastrand::u64(0..total)),
        };
        let Some(index) = picked else {
            let e = ConnError::NoBackend { route: route.id.to_string() };
            return self.fail_unpicked(&e, log);
        };
        let b = &route.backends[index];
        b.path.connections.inc();
        match BackendGuard::acquire(b, b.max_connections) {
            Ok(g) => Some((index, g, log)),
            Err(limit) => {
                let labels = LimitLabels {
                    address: self.sock.metrics.address.clone(),
                    listener: self.listener.label.clone(),
                    limit: limit.as_str(),
                };
                inner.metrics.limited.get_or_create(&labels).inc();
                self.fail(&b.path, &ConnError::Limit(limit), log)
            }
        }
    }

    /// Connects to the chosen backend (or, failing over, another of the route), sending what of
    /// `first` goes out at once.
    async fn connect(
        &self,
        chosen: usize,
        first: &[u8],
        log: &mut Log,
    ) -> Result<Connected, ConnError> {
        let started = Instant::now();
        let keepalive = self.listener.keepalive;
        let connected = upstream::connect(self.inner, self.route, chosen, first, keepalive).await;
        let c = match connected {
            Ok(c) => c,
            Err(e) => {
                if let (Some(l), ConnError::Connect { addr, .. }) = (log.as_mut(), &e) {
                    l.endpoint = Some(*addr);
                }
                return Err(e);
            }
        };
        let b = &self.route.backends[c.backend].state;
        tracing::debug!(backend = %b.name, endpoint = %c.addr, "connected");
        if let Some(l) = log {
            l.endpoint = Some(c.addr);
            l.connect = Some(started.elapsed());
        }
        Ok(c)
    }

    /// The guard of the backend that took the connection: the chosen one's, or after a
    /// failover to another backend, that one's (within its limit), the chosen one's path
    /// counting the connection as closed by `failover`.
    fn settle(&self, guard: BackendGuard, c: &Connected, log: Log) -> Option<(BackendGuard, Log)> {
        let b = &self.route.backends[c.backend];
        if Arc::ptr_eq(guard.path(), &b.path) {
            return Some((guard, log));
        }
        guard.path().closed(&self.inner.metrics, "failover");
        drop(guard);
        b.path.connections.inc();
        match BackendGuard::acquire(b, b.max_connections) {
            Ok(g) => Some((g, log)),
            Err(limit) => {
                let labels = LimitLabels {
                    address: self.sock.metrics.address.clone(),
                    listener: self.listener.label.clone(),
                    limit: limit.as_str(),
                };
                self.inner.metrics.limited.get_or_create(&labels).inc();
                self.fail(&b.path, &ConnError::Limit(limit), log)
            }
        }
    }

    /// Terminate: handshake with the listener's certificates over the buffered hello and the
    /// socket, then choose a backend and connect at once (a server-speaks-first backend greets
    /// before the client writes).
    async fn terminate(
        &self,
        stream: TcpStream,
        detected: Detected,
        config: Arc<rustls::ServerConfig>,
        origin: &Origin,
        log: Log,
    ) -> Option<(TlsStream<Prefixed<TcpStream>>, TcpStream, BackendGuard, EndpointGuard, Log)> {
        let Detected { hello, buffered, .. } = detected;
        // Only the server name is kept (moved, not copied), for a PROXY header.
        let sniway_wire::ClientHello { server_name, .. } = hello;
        let listener = &self.listener.label;
        let handshake =
            terminate::handshake(config, stream, buffered, self.listener.handshake_timeout).await;
        let mut tls = match handshake {
            Ok(tls) => tls,
            Err(e) => {
                let reason = match e {
                    ConnError::TlsHandshakeTimeout(_) => "timeout",
                    _ => "error",
                };
                let labels = ListenerReasonLabels { listener: listener.clone(), reason };
                self.inner.metrics.handshake_failures.get_or_create(&labels).inc();
                return self.fail_unpicked(&e, log);
            }
        };
        let resumed = {
            let (_, session) = tls.get_ref();
            let resumed = matches!(session.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
            tracing::debug!(
                version = ?session.protocol_version(),
                suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
                resumed,
                "handshake complete"
            );
            resumed
        };
        let labels = HandshakeLabels {
            listener: listener.clone(),
            resumed: if resumed { "true" } else { "false" },
        };
        self.inner.metrics.handshakes.get_or_create(&labels).inc();
        let (chosen, backend, mut log) = match self.choose(log) {
            Some(chosen) => chosen,
            None => {
                // close_notify, then FIN, with nothing else written; bounded in time.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
                return None;
            }
        };
        // The PROXY header, when the backend wants one, with the ALPN protocol negotiated.
        let sni = match &server_name {
            ServerName::Host(h) => Some(h.as_str()),
            _ => None,
        };
        let version = self.route.backends[chosen].proxy_protocol;
        let header = origin.header(version, sni, tls.get_ref().1.alpn_protocol());
        let connected = match self.connect(chosen, &header, &mut log).await {
            Ok(c) => send_rest(c, &header, self.inner.config.connect_timeout).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(c) => match self.settle(backend, &c, log) {
                Some((backend, log)) => Some((tls, c.stream, backend, c.endpoint, log)),
                None => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
                    None
                }
            },
            Err(e) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
                self.fail(backend.path(), &e, log)
            }
        }
    }

    /// A routed connection that ends before relaying, on the chosen backend's path.
    fn fail<T>(&self, path: &PathMetrics, e: &ConnError, log: Log) -> Option<T> {
        path.closed(&self.inner.metrics, e.reason());
        self.end(e, log, &path.labels);
        None
    }

    /// A routed connection that ends before a backend was chosen.
    fn fail_unpicked<T>(&self, e: &ConnError, log: Log) -> Option<T> {
        let PathLabels { listener, route, backend } = self.route.unrouted.clone();
        let labels = PathReasonLabels { listener, route, backend, reason: e.reason() };
        self.inner.metrics.closed.get_or_create(&labels).inc();
        self.end(e, log, &self.route.unrouted);
        None
    }

    fn end(&self, e: &ConnError, log: Log, path: &PathLabels) {
        let (reason, side) = (e.reason(), e.side());
        tracing::debug!(
            listener = %self.listener.label, route = %self.route.id, reason,
            side = side.as_str(), error = %e, "refused"
        );
        if let Some(log) = log {
            let t = Transferred::default();
            write_record(self.inner, &log, Some(path), self.start, t, reason, ended_by(side));
        }
    }
}

/// Longest wait for the close_notify to go out when a terminated connection ends before relaying.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes what of `first` the connect did not send, within `timeout`.
async fn send_rest(
    mut c: Connected,
    first: &[u8],
    timeout: Duration,
) -> Result<Connected, ConnError> {
    let rest = &first[c.sent.min(first.len())..];
    if !rest.is_empty() {
        match tokio::time::timeout(timeout, c.stream.write_all(rest)).await {
            Ok(Ok(())) => c.sent = first.len(),
            Ok(Err(e)) => return Err(ConnError::BackendIo(e)),
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "writing timed out");
                return Err(ConnError::BackendIo(e));
            }
        }
    }
    Ok(c)
}

/// A connection refused before it had a route (the hello, or no listener or route for it).
fn unrouted(
    inner: &Inner,
    sock: Option<&LiveSocket>,
    client: SocketAddr,
    local: SocketAddr,
    start: Instant,
    e: &ConnError,
    log: Log,
) {
    let (reason, side) = (e.reason(), e.side());
    tracing::debug!(%client, %local, reason, side = side.as_str(), error = %e, "refused");
    if let (Some(sock), Some(hello)) = (sock, e.hello_reason()) {
        let labels = SocketReasonLabels { address: sock.metrics.address.clone(), reason: hello };
        inner.metrics.hello_failures.get_or_create(&labels).inc();
    }
    write_log(inner, log, start, Transferred::default(), reason, ended_by(side));
}

/// A connection closed at once because a limit was reached.
fn limited(
    inner: &Inner,
    address: &str,
    listener: Option<&LiveListener>,
    limit: Limit,
    start: Instant,
    log: Log,
) {
    let listener_label = listener.map(|l| l.label.clone()).unwrap_or_default();
    tracing::debug!(%address, listener = %listener_label, limit = limit.as_str(), "limit reached; closed");
    let labels = LimitLabels {
        address: address.to_string(),
        listener: listener_label,
        limit: limit.as_str(),
    };
    inner.metrics.limited.get_or_create(&labels).inc();
    let reason = ConnError::Limit(limit).reason();
    write_log(inner, log, start, Transferred::default(), reason, "gateway");
}

/// The accept loop's report of a connection refused by the global limit.
pub(crate) fn refused_at_accept(
    inner: &Inner,
    installed: &Installed,
    socket: Option<usize>,
    client: SocketAddr,
    local: SocketAddr,
    start: Instant,
) {
    let address = match socket.and_then(|i| installed.sockets.get(i)) {
        Some(s) => s.metrics.address.clone(),
        None => local.to_string(),
    };
    let log = inner.access_log.is_some().then(|| LogFields::new(client, local));
    limited(inner, &address, None, Limit::Global, start, log);
}

/// Counts and logs the end of a relayed connection.
fn finish(inner: &Inner, session: &Session, t: Transferred, result: Result<(), ConnError>) {
    let path = session.backend.path();
    let (reason, by) = match &result {
        Ok(()) => ("completed", t.first_to_finish.map_or("gateway", ended_by)),
        Err(e) => (e.reason(), ended_by(e.side())),
    };
    path.closed(&inner.metrics, reason);
    path.duration.observe(session.start.elapsed().as_secs_f64());
    let Transferred { client_to_backend: up, backend_to_client: down, .. } = t;
    match &result {
        Ok(()) => {
            tracing::debug!(backend = %path.labels.backend, up, down, ended_by = by, "closed")
        }
        Err(e) => tracing::debug!(
            backend = %path.labels.backend, up, down, reason, side = e.side().as_str(),
            error = %e, "relay ended"
        ),
    }
    if let Some(log) = &session.log {
        write_record(inner, log, Some(&path.labels), session.start, t, reason, by);
    }
}

/// Who ended a connection, for the access log.
fn ended_by(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Backend => "backend",
        Side::Config => "gateway",
    }
}

fn write_log(
    inner: &Inner,
    log: Log,
    start: Instant,
    t: Transferred,
    reason: &'static str,
    by: &'static str,
) {
    if let Some(log) = log {
        write_record(inner, &log, None, start, t, reason, by);
    }
}

fn write_record(
    inner: &Inner,
    f: &LogFields,
    path: Option<&PathLabels>,
    start: Instant,
    t: Transferred,
    reason: &'static str,
    ended_by: &'static str,
) {
    let Some(access_log) = &inner.access_log else { return };
    let total = start.elapsed();
    let rec = Record {
        start: SystemTime::now() - total,
        client: f.client,
        local: f.local,
        listener: path.map(|p| p.listener.as_str()).or(f.listener.as_deref()),
        sni: f.sni.as_deref(),
        alpn: &f.alpn,
        route: path.map(|p| p.route.as_str()).or(f.route.as_deref()),
        backend: path.map(|p| p.backend.as_str()).filter(|b| !b.is_empty()),
        endpoint: f.endpoint,
        bytes_from_client: t.client_to_backend,
        bytes_to_client: t.backend_to_client,
        hello: f.hello,
        connect: f.connect,
        total,
        reason,
        ended_by,
    };
    access_log.log(&rec);
}
