//! Listening sockets: binding, and the accept loop with its back-pressure and back-off.
//!
//! One socket per distinct (address, port) in the routing table (issue: "One listening socket per
//! distinct (address, port)"). The accept loop
//!
//! - takes a connection permit *before* accepting, so beyond `max_connections` new connections
//!   wait in the kernel's backlog instead of consuming memory here (mini-redis `server.rs`);
//! - on errors that concern one connection only (aborted or reset before accept) tries again at
//!   once; on any other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`...) logs and sleeps, from
//!   [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], so a full descriptor table cannot make it spin
//!   (Pingora `listening.rs`); it never exits on its own;
//! - stops when the stop signal fires, dropping (closing) the listening socket.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sniway_model::RoutingTable;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::Shared;
use crate::conn::{self, Accepted};
use crate::error::{ConnError, ProxyError};

/// Listen backlog: connections the kernel queues while every permit is taken or the loop backs
/// off.
pub const BACKLOG: i32 = 4096;

/// First sleep after a resource error in accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest sleep after repeated resource errors in accept.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound listening socket.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address the routing table asked for; the key into each table's sockets.
    pub configured: SocketAddr,
    /// The address actually bound (differs for port 0).
    pub local: SocketAddr,
    /// The socket.
    pub listener: TcpListener,
}

/// Binds `addr` with `SO_REUSEADDR` (so a restart does not wait for `TIME_WAIT` sockets) and, for
/// the IPv6 unspecified address, `IPV6_V6ONLY`, so `0.0.0.0:P` and `[::]:P` can both be bound.
pub(crate) fn bind(addr: SocketAddr) -> Result<Bound, ProxyError> {
    let err = |source: io::Error| ProxyError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    // Accepted sockets inherit TCP_NODELAY from the listening socket on Linux: set once here
    // rather than once per connection.
    socket.set_tcp_nodelay(true).map_err(err)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    let listener = TcpListener::from_std(socket.into()).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok(Bound { configured: addr, local, listener })
}

/// Accepts connections on `bound` until `stop` turns true (or its sender is dropped), spawning a
/// task per connection.
pub(crate) async fn accept_loop(
    bound: Bound,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let Bound { configured, local, listener } = bound;
    let mut backoff = BACKOFF_MIN;
    // The last table seen and this socket's index in it, so the index is computed once per table
    // rather than once per connection. Weak: a replaced table is not kept alive by this cache.
    let mut cache: (Weak<RoutingTable>, Option<usize>) = (Weak::new(), None);
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            p = Arc::clone(&shared.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (stream, client) = match accepted {
            Ok(ok) => ok,
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(%local, error = %e, "accept: connection failed before accept");
                continue;
            }
            Err(e) => {
                tracing::warn!(%local, error = %e, ?backoff, "accept failed; backing off");
                drop(permit);
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;

        let table = shared.table.load_full();
        let socket = match &cache {
            (weak, index) if std::ptr::eq(weak.as_ptr(), Arc::as_ptr(&table)) => *index,
            _ => {
                let index = table.sockets.iter().position(|s| s.addr == configured);
                cache = (Arc::downgrade(&table), index);
                index
            }
        };

        let span = tracing::debug_span!("conn", %client, %local);
        let shared = Arc::clone(&shared);
        let mut cut = shared.cut.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let accepted = Accepted { stream, table, socket };
                tokio::select! {
                    () = conn::serve(accepted, Arc::clone(&shared)) => {}
                    Ok(_) = cut.wait_for(|c| *c) => {
                        let e = ConnError::Drained;
                        tracing::debug!(reason = e.reason(), side = e.side().as_str(), "cut");
                    }
                }
            }
            .instrument(span),
        );
    }
    tracing::debug!(%local, "stopped accepting");
}

/// Errors `accept` reports for one pending connection that failed before it was accepted; Linux
/// passes these on from the new socket (accept(2): "should ... treat them like EAGAIN by
/// retrying").
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::TimedOut
    )
}
