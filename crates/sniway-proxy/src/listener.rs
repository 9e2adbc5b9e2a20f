//! Listening sockets: binding, and the accept loop with its limit and back-off.
//!
//! One socket per distinct (address, port) in the routing table, each with its own accept loop
//! ([`Slot`]) that lives across tables until a table no longer has its address. The loop
//!
//! - accepts first and takes a connection permit after: beyond `max_connections` the new
//!   connection is closed at once and counted (`sniway_connections_limited_total{limit="global"}`).
//!   Waiting for a permit before accepting would let one socket's waiting loop hold the permit
//!   that frees up while other sockets' clients queue unserved, so no socket ever waits on
//!   another;
//! - on errors that concern one connection only (aborted or reset before accept) tries again at
//!   once; on any other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`...) logs and sleeps, from
//!   [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], so a full descriptor table cannot make it spin
//!   (Pingora `listening.rs`); it never exits on its own;
//! - stops when its slot is stopped, dropping (closing) the listening socket; connections it
//!   accepted go on.
//!
//! Accepted sockets inherit `TCP_NODELAY` and the keep-alive settings from the listening socket
//! on Linux, so both are set once here rather than once per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Inner;
use crate::conn::{self, Accepted};
use crate::error::ProxyError;
use crate::live::Installed;

use crate::Keepalive;

/// Listen backlog: connections the kernel queues while the loop backs off.
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

/// A socket of the proxy: its accept loop, or why it could not be bound.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The bound address, or the bind error.
    pub local: Result<SocketAddr, String>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Slot {
    /// A socket that could not be bound.
    pub fn failed(error: String) -> Slot {
        Slot { local: Err(error), stop: None, task: None }
    }

    /// Starts accepting on `bound`.
    pub fn spawn(bound: Bound, inner: Arc<Inner>) -> Slot {
        let (stop, rx) = watch::channel(false);
        let local = Ok(bound.local);
        let task = tokio::spawn(accept_loop(bound, inner, rx));
        Slot { local, stop: Some(stop), task: Some(task) }
    }

    /// Tells the accept loop to stop (it closes its socket at its next poll).
    pub fn stop(&self) {
        if let Some(s) = &self.stop {
            s.send_replace(true);
        }
    }

    /// Tells the accept loop to stop; the task to await for its socket to be closed.
    pub fn stop_later(&mut self) -> Option<JoinHandle<()>> {
        self.stop();
        self.task.take()
    }

    /// Stops the accept loop and waits until its socket is closed.
    pub async fn stop_and_wait(mut self) {
        self.stop();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "accept loop ended abnormally");
        }
    }
}

/// Binds `addr` with `SO_REUSEADDR` (so a restart does not wait for `TIME_WAIT` sockets), and, for
/// the IPv6 unspecified address, `IPV6_V6ONLY`, so `0.0.0.0:P` and `[::]:P` can both be bound.
/// `keepalive` is set on the socket for accepted connections to inherit.
pub(crate) fn bind(addr: SocketAddr, keepalive: Option<Keepalive>) -> Result<Bound, ProxyError> {
    let err = |source: io::Error| ProxyError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    set_keepalive(SockRef::from(&socket), keepalive).map_err(err)?;
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

/// Turns TCP keep-alive on with `keepalive`'s timings, or off.
pub(crate) fn set_keepalive(socket: SockRef<'_>, keepalive: Option<Keepalive>) -> io::Result<()> {
    match keepalive {
        None => socket.set_keepalive(false),
        Some(k) => {
            let ka = TcpKeepalive::new().with_time(k.idle).with_interval(k.interval);
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
            let ka = ka.with_retries(k.count);
            socket.set_tcp_keepalive(&ka)
        }
    }
}

/// Accepts connections on `bound` until `stop` turns true (or its sender is dropped), spawning a
/// task per connection.
async fn accept_loop(bound: Bound, inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let Bound { configured, local, listener } = bound;
    let mut backoff = BACKOFF_MIN;
    // The last table seen and this socket's index in it, so the index is computed once per table
    // rather than once per connection. Weak: a replaced table is not kept alive by this cache.
    let mut cache: (Weak<Installed>, Option<usize>) = (Weak::new(), None);
    loop {
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
        let start = Instant::now();

        let installed = inner.current.load_full();
        let socket = match &cache {
            (weak, index) if std::ptr::eq(weak.as_ptr(), Arc::as_ptr(&installed)) => *index,
            _ => {
                let index = installed.socket_index(configured);
                cache = (Arc::downgrade(&installed), index);
                index
            }
        };
        if let Some(s) = socket.and_then(|i| installed.sockets.get(i)) {
            s.metrics.accepted.inc();
        }
        let Ok(permit) = Arc::clone(&inner.permits).try_acquire_owned() else {
            conn::refused_at_accept(&inner, &installed, socket, client, local, start);
            drop(stream);
            continue;
        };
        let accepted = Accepted { stream, client, local, installed, socket, permit, start };
        tokio::spawn(conn::serve(accepted, Arc::clone(&inner)));
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
