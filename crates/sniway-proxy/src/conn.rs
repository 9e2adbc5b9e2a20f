//! One client connection, from accept to close: detect the hello, look up the route, connect to a
//! backend, replay the buffered bytes, relay.
//!
//! Every refusal closes the client socket with nothing written (digest `gateway-api-tls.md` §3:
//! "close the socket without writing"; the conformance suite treats a TLS alert as a failure). The
//! close is a FIN, or a RST when the client sent bytes that were not read.

use std::sync::Arc;

use sniway_model::{ListenerMode, Lookup, Route, RoutingTable};
use sniway_wire::ServerName;
use tokio::net::TcpStream;

use crate::detect::{self, Detected};
use crate::error::ConnError;
use crate::relay::{self, Transferred};
use crate::upstream::{self, Connected};
use crate::{ProxyConfig, Shared};

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
pub(crate) async fn serve(accepted: Accepted, shared: Arc<Shared>) {
    let Accepted { mut stream, table, socket } = accepted;
    let config = &shared.config;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY on the client socket");
    }

    let (detected, backend) = match route_and_connect(&mut stream, table, socket, config).await {
        Ok(ok) => ok,
        Err(e) => {
            tracing::debug!(reason = e.reason(), side = e.side().as_str(), error = %e, "refused");
            return;
        }
    };
    let Connected { stream: backend_stream, addr, backend } = backend;
    // Only the bytes are kept for the relay; the parsed hello is not needed any more.
    let Detected { hello, buffered } = detected;
    drop(hello);
    tracing::debug!(%backend, endpoint = %addr, "connected");

    let (t, result) = relay::relay(&stream, &backend_stream, buffered).await;
    let Transferred { client_to_backend: up, backend_to_client: down } = t;
    match result {
        Ok(()) => tracing::debug!(%backend, up, down, "closed"),
        Err(e) => tracing::debug!(
            %backend, up, down, reason = e.reason(), side = e.side().as_str(), error = %e,
            "relay failed"
        ),
    }
}

/// Everything up to a connected backend. The table is dropped once the backend is chosen, so a
/// long-lived connection does not keep a replaced table alive.
async fn route_and_connect(
    stream: &mut TcpStream,
    table: Arc<RoutingTable>,
    socket: Option<usize>,
    config: &ProxyConfig,
) -> Result<(Detected, Connected), ConnError> {
    let detected = detect::read_hello(stream, config.hello_timeout).await?;
    let sni = match &detected.hello.server_name {
        ServerName::Host(h) => h.as_str(),
        ServerName::None => return Err(ConnError::NoSni),
        ServerName::Invalid => return Err(ConnError::InvalidSni),
    };
    tracing::trace!(sni, bytes = detected.buffered.len(), "ClientHello");
    let route = find_route(&table, socket, sni)?;
    let connected = upstream::connect(&route, config.connect_timeout).await?;
    Ok((detected, connected))
}

fn find_route(
    table: &RoutingTable,
    socket: Option<usize>,
    sni: &str,
) -> Result<Arc<Route>, ConnError> {
    let no_listener = || ConnError::NoListener { sni: sni.to_string() };
    let socket = socket.and_then(|i| table.sockets.get(i)).ok_or_else(no_listener)?;
    match socket.lookup(sni) {
        Lookup::Route { listener, route } => match listener.mode {
            ListenerMode::Passthrough => Ok(Arc::clone(route)),
            _ => Err(ConnError::UnsupportedMode { listener: listener.id.to_string() }),
        },
        Lookup::NoRoute { listener } => {
            Err(ConnError::NoRoute { listener: listener.id.to_string(), sni: sni.to_string() })
        }
        Lookup::NoListener => Err(no_listener()),
    }
}
