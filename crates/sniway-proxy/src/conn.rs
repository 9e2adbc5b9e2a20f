//! One client connection, from accept to close: detect the hello, look up the listener and route,
//! then by the listener's mode either connect to a backend, replay the buffered bytes and relay
//! (Passthrough), or complete the TLS handshake, connect and relay plaintext (Terminate).
//!
//! Every refusal up to that decision closes the client socket with nothing written (digest
//! `gateway-api-tls.md` §3: "close the socket without writing"; the conformance suite treats a TLS
//! alert as a failure). The close is a FIN, or a RST when the client sent bytes that were not
//! read. On a Terminate listener, a handshake that fails afterwards may end with rustls' alert,
//! and a backend that cannot be reached after the handshake gets the client a close_notify.

use std::sync::Arc;
use std::time::Duration;

use sniway_model::{ListenerMode, Lookup, Route, RoutingTable, TerminateConfig};
use sniway_wire::ServerName;
use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::detect::{self, Detected};
use crate::error::ConnError;
use crate::relay::{self, Replay, Transferred};
use crate::terminate;
use crate::upstream::{self, Connected};
use crate::{ProxyConfig, Shared};

/// Interim round-robin cursor, shared by every backend.
static CURSOR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What the accept loop hands to a connection task.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The client socket.
    pub stream: TcpStream,
    /// The table current when the connection was accepted; the lookup uses it even if a new
    /// table is swapped in while the hello is being read.
    pub table: Arc<RoutingTable>,
    /// Index of this socket's entry in `table.sockets`, precomputed once per table by the accept
    /// loop; `None` when the table no longer serves this socket.
    pub socket: Option<usize>,
}

/// Serves one connection to the end and logs how it ended.
///
/// A task's future is as large as its largest state, and a passthrough connection spends its life
/// in the relay. So everything before the relay (hello deadline and buffer, lookup, connect) and
/// the whole Terminate path (rustls state) run in one boxed future that is freed before the relay
/// starts; the state a long-lived passthrough connection keeps is its two sockets, the backend's
/// name and the relay's own state.
pub(crate) fn serve(
    accepted: Accepted,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    let setup = Box::pin(prepare(accepted, shared));
    async move {
        // Awaiting the box consumes it: its memory is freed here, before the relay.
        let Some(Passthrough { client, backend, replay, name }) = setup.await else { return };
        let (t, result) = relay::relay(&client, &backend, replay).await;
        log_end(&name, t, result);
    }
}

/// A passthrough connection ready to relay.
struct Passthrough {
    client: TcpStream,
    backend: TcpStream,
    /// Every byte read from the client so far, replayed to the backend first.
    replay: Replay,
    /// The backend's display name, for the log.
    name: String,
}

/// Everything before the relay: the hello, the lookup, then for Passthrough the connect (the
/// relay is left to the caller), for Terminate the whole connection.
async fn prepare(accepted: Accepted, shared: Arc<Shared>) -> Option<Passthrough> {
    let Accepted { mut stream, table, socket } = accepted;
    let config = &shared.config;
    // TCP_NODELAY: inherited from the listening socket on Linux (listener.rs); elsewhere set here.
    if !cfg!(target_os = "linux")
        && let Err(e) = stream.set_nodelay(true)
    {
        tracing::debug!(error = %e, "setting TCP_NODELAY on the client socket");
    }

    let (detected, route, mode) = match route(&mut stream, table, socket, config).await {
        Ok(ok) => ok,
        Err(e) => {
            refused(&e);
            return None;
        }
    };
    match mode {
        ListenerMode::Terminate(cfg) => {
            // Boxed as well: the rustls state would otherwise size every passthrough setup.
            Box::pin(terminate(stream, detected, &route, cfg, config)).await;
            None
        }
        // `find_route` refuses any mode this data plane does not serve.
        _ => {
            // Only the bytes are kept for the replay; the parsed hello is not needed any more.
            let Detected { hello, buffered } = detected;
            drop(hello);
            // The replay starts with the connect: usually all of it goes out there.
            let Connected { stream: backend, addr, backend: name, sent } =
                match upstream::connect(&route, &CURSOR, config.connect_timeout, &buffered).await {
                    Ok(c) => c,
                    Err(e) => {
                        refused(&e);
                        return None;
                    }
                };
            tracing::debug!(backend = %name, endpoint = %addr, "connected");
            let replay = Replay { buf: buffered, sent };
            Some(Passthrough { client: stream, backend, replay, name })
        }
    }
}

fn refused(e: &ConnError) {
    tracing::debug!(reason = e.reason(), side = e.side().as_str(), error = %e, "refused");
}

/// Terminate: handshake with the listener's certificates over the buffered hello and the socket,
/// connect at once (a server-speaks-first backend greets before the client writes), relay
/// plaintext.
async fn terminate(
    stream: TcpStream,
    detected: Detected,
    route: &Route,
    cfg: Arc<TerminateConfig>,
    config: &ProxyConfig,
) {
    let Detected { hello, buffered } = detected;
    drop(hello);
    let server_config = match terminate::server_config(&cfg) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    // `cfg` stays alive until the handshake is done: the certificate resolver holds it weakly.
    let handshake =
        terminate::handshake(server_config, stream, buffered, config.handshake_timeout).await;
    drop(cfg);
    let mut tls = match handshake {
        Ok(tls) => tls,
        Err(e) => {
            let (reason, side) = (e.reason(), e.side().as_str());
            tracing::debug!(reason, side, error = %e, "handshake failed");
            return;
        }
    };
    {
        let (_, session) = tls.get_ref();
        tracing::debug!(
            version = ?session.protocol_version(),
            suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
            resumed = matches!(session.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            "handshake complete"
        );
    }
    let Connected { stream: mut backend_stream, addr, backend, .. } =
        match upstream::connect(route, &CURSOR, config.connect_timeout, &[]).await {
            Ok(c) => c,
            Err(e) => {
                refused(&e);
                // close_notify, then FIN, with nothing else written; bounded in time.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
                return;
            }
        };
    tracing::debug!(%backend, endpoint = %addr, "connected");

    let (t, result) = terminate::relay(&mut tls, &mut backend_stream).await;
    if result.is_err() {
        // Propagate the abort: closing with linger 0 sends RST instead of FIN.
        for s in [tls.get_ref().0.get_ref(), &backend_stream] {
            let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
    log_end(&backend, t, result);
}

/// Longest wait for the close_notify to go out when a terminated connection ends before relaying.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

fn log_end(backend: &str, t: Transferred, result: Result<(), ConnError>) {
    let Transferred { client_to_backend: up, backend_to_client: down } = t;
    match result {
        Ok(()) => tracing::debug!(%backend, up, down, "closed"),
        Err(e) => tracing::debug!(
            %backend, up, down, reason = e.reason(), side = e.side().as_str(), error = %e,
            "relay failed"
        ),
    }
}

/// Everything up to the decision: the hello, the listener and the route. The table is dropped
/// here, so a long-lived connection does not keep a replaced table alive; only the route and the
/// listener's mode are kept.
async fn route(
    stream: &mut TcpStream,
    table: Arc<RoutingTable>,
    socket: Option<usize>,
    config: &ProxyConfig,
) -> Result<(Detected, Arc<Route>, ListenerMode), ConnError> {
    let detected = detect::read_hello(stream, config.hello_timeout).await?;
    let sni = match &detected.hello.server_name {
        ServerName::Host(h) => h.as_str(),
        ServerName::None => return Err(ConnError::NoSni),
        ServerName::Invalid => return Err(ConnError::InvalidSni),
    };
    tracing::trace!(sni, bytes = detected.buffered.len(), "ClientHello");
    let (route, mode) = find_route(&table, socket, sni)?;
    Ok((detected, route, mode))
}

/// The route for `sni` and the mode of the listener that took it. Each connection is decided by
/// its own listener: passthrough and terminate listeners share a socket freely.
fn find_route(
    table: &RoutingTable,
    socket: Option<usize>,
    sni: &str,
) -> Result<(Arc<Route>, ListenerMode), ConnError> {
    let no_listener = || ConnError::NoListener { sni: sni.to_string() };
    let socket = socket.and_then(|i| table.sockets.get(i)).ok_or_else(no_listener)?;
    match socket.lookup(sni) {
        Lookup::Route { listener, route } => match &listener.mode {
            ListenerMode::Passthrough => Ok((Arc::clone(route), ListenerMode::Passthrough)),
            ListenerMode::Terminate(cfg) => {
                if cfg.certificates.load().0.is_empty() {
                    return Err(ConnError::NoCertificate { listener: listener.id.to_string() });
                }
                Ok((Arc::clone(route), ListenerMode::Terminate(Arc::clone(cfg))))
            }
            _ => Err(ConnError::UnsupportedMode { listener: listener.id.to_string() }),
        },
        Lookup::NoRoute { listener } => {
            Err(ConnError::NoRoute { listener: listener.id.to_string(), sni: sni.to_string() })
        }
        Lookup::NoListener => Err(no_listener()),
    }
}
