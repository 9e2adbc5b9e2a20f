//! sniway's data plane: TLS passthrough and TLS termination, by SNI.
//!
//! ```text
//! listener.rs    bind, accept (permit per connection, back-off on EMFILE), stop on shutdown
//!   conn.rs      one connection: detect -> lookup -> by the listener's mode:
//!                  Passthrough: connect -> replay + relay
//!                  Terminate:   handshake -> connect -> plaintext relay
//!   detect.rs    the ClientHello, however it arrives, into a bounded buffer under a deadline
//!   upstream.rs  backend by weight, endpoint round-robin, connect under a timeout, the replay
//!                sent as soon as the connection exists
//!   relay.rs     both ways, half-close aware, no buffer while idle
//!   splice.rs    bulk bursts socket -> pipe -> socket, pooled pipes
//!   terminate.rs rustls config per listener (certificate by SNI, shared ticketer), handshake
//!                over the buffered hello, plaintext relay with close_notify half-close
//! error.rs       ProxyError (the proxy), ConnError (one connection; says which side failed)
//! ```
//!
//! The routing table is read through an atomic pointer ([`arc_swap::ArcSwap`]): no lock on the
//! accept or lookup path. A connection looks up the table that was current when it was accepted;
//! swapping in a new table never touches established connections (issue 2, item 4: "the table is
//! read through an atomic pointer, and an idle connection holds no buffer beyond what the kernel
//! holds"). A Terminate listener's certificate set sits behind its own atomic pointer
//! ([`sniway_model::TerminateConfig::certificates`]): storing a new set changes the certificate
//! for new handshakes only.
//!
//! Connection lifecycle:
//!
//! 1. Accept, holding one of `max_connections` permits (beyond it, clients wait in the backlog).
//! 2. Detect: read until the ClientHello is complete, invalid, or `hello_timeout` passes.
//! 3. Look up the SNI in the table loaded at accept: listener, then route; no fall-through. The
//!    listener found decides the mode, so Passthrough and Terminate listeners share a socket
//!    (Mixed), told apart by hostname.
//! 4. Terminate only: complete the TLS handshake within `handshake_timeout`, the buffered hello
//!    first (see [`terminate`]).
//! 5. Choose a backend by weight and an endpoint round-robin; connect under `connect_timeout`.
//! 6. Passthrough: replay every byte read so far (usually sent whole right after the connect),
//!    then relay both ways until both directions have ended. Terminate: relay plaintext both
//!    ways, half-close mapped to close_notify.
//!
//! Any failure before step 4 closes the client socket without writing a byte. A failed handshake
//! may get a TLS alert from rustls; a backend failure after the handshake gets a close_notify. On
//! shutdown the listening sockets close first, then live connections get up to the drain period,
//! then the rest are cut and counted in the log.
//!
//! Known limits, left to later issues: health checks and failover across backends, PROXY
//! protocol, metrics (errors carry a stable [`ConnError::reason`] for them), client
//! certificates.
#![warn(missing_docs)]

pub mod access_log;
mod conn;
pub mod detect;
pub mod error;
mod listener;
pub mod relay;
mod splice;
pub mod terminate;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sniway_model::RoutingTable;
use tokio::sync::{Semaphore, watch};

pub use error::{ConnError, ProxyError, Side};
pub use relay::Transferred;

/// Data-plane settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Deadline for the whole ClientHello, from accept (issue 2: "under a deadline (default
    /// 10 s)").
    pub hello_timeout: Duration,
    /// Deadline for resolving and connecting to a backend.
    pub connect_timeout: Duration,
    /// Deadline for the TLS handshake on a Terminate listener, from the end of detection.
    pub handshake_timeout: Duration,
    /// Connections served at once; beyond it, accepting waits for one to end.
    pub max_connections: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 100_000,
        }
    }
}

/// State shared by the accept loops and connection tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current routing table.
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// Settings.
    pub config: ProxyConfig,
    /// One permit per live connection; `max_connections` in all. Also how drain counts what is
    /// left.
    pub permits: Arc<Semaphore>,
    /// Turns true when the drain deadline passes: connections still open end at once.
    pub cut: watch::Receiver<bool>,
}

/// A bound, not yet serving, proxy.
#[derive(Debug)]
pub struct Proxy {
    bound: Vec<listener::Bound>,
    table: Arc<ArcSwap<RoutingTable>>,
    config: ProxyConfig,
}

impl Proxy {
    /// Binds one listening socket per [`sniway_model::SocketTable`] in `table` (`SO_REUSEADDR`;
    /// for the IPv6 unspecified address, dual-stack off so `0.0.0.0` and `::` can coexist;
    /// backlog 4096). Port 0 binds an ephemeral port. The error names the address that failed.
    pub async fn bind(table: Arc<RoutingTable>, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let bound =
            table.sockets.iter().map(|s| listener::bind(s.addr)).collect::<Result<Vec<_>, _>>()?;
        for b in &bound {
            tracing::info!(configured = %b.configured, local = %b.local, "listening");
        }
        Ok(Proxy { bound, table: Arc::new(ArcSwap::new(table)), config })
    }

    /// For each socket: (the address configured in the table, the address actually bound).
    pub fn local_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.bound.iter().map(|b| (b.configured, b.local)).collect()
    }

    /// The handle through which a new table is swapped in atomically. Connections accepted after
    /// a `store` use the new table; earlier ones are unaffected. Sockets are bound once, by
    /// [`Proxy::bind`]: a new table's sockets that were not bound then are not served.
    pub fn table(&self) -> Arc<ArcSwap<RoutingTable>> {
        Arc::clone(&self.table)
    }

    /// Serves until `shutdown` resolves, then stops accepting (closing the listening sockets) and
    /// waits up to `drain` for live connections to end; connections still open then are cut, and
    /// their number logged.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
        drain: Duration,
    ) -> Result<(), ProxyError> {
        let Proxy { bound, table, config } = self;
        let max = config.max_connections.clamp(1, u32::MAX as usize).min(Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (cut_tx, cut_rx) = watch::channel(false);
        let shared = Arc::new(Shared { table, config, permits: Arc::clone(&permits), cut: cut_rx });

        let loops: Vec<_> = bound
            .into_iter()
            .map(|b| tokio::spawn(listener::accept_loop(b, Arc::clone(&shared), stop_rx.clone())))
            .collect();
        drop(stop_rx);

        shutdown.await;
        stop_tx.send_replace(true);
        for l in loops {
            if let Err(e) = l.await {
                tracing::error!(error = %e, "accept loop ended abnormally");
            }
        }
        let live = max - permits.available_permits();
        tracing::info!(live, ?drain, "stopped accepting; draining connections");

        // Every permit back means every connection task has ended.
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        // (A waiting `acquire_many` holds the permits it has gathered so far; `is_ok()` drops it,
        // returning them, before the cut connections are counted.)
        let drained = tokio::time::timeout(drain, permits.acquire_many(all)).await.is_ok();
        if drained {
            tracing::info!("drained");
        } else {
            let cut = max - permits.available_permits();
            tracing::warn!(cut, ?drain, "drain deadline passed; cutting connections");
            cut_tx.send_replace(true);
            // Cut tasks end at their next poll; wait briefly so their sockets are closed before
            // returning.
            let _ = tokio::time::timeout(CUT_GRACE, permits.acquire_many(all)).await;
        }
        Ok(())
    }
}

/// How long `run` waits for cut connections to close their sockets after the drain deadline.
const CUT_GRACE: Duration = Duration::from_secs(1);
