//! sniway's data plane: TLS passthrough and TLS termination, by SNI.
//!
//! ```text
//! lib.rs         Proxy: install a table (reconcile sockets), readiness, shutdown and drain
//! live.rs        per-table state built at install: TLS configs, balancers, limits, metric handles
//! listener.rs    bind, accept (global limit after accept, back-off on EMFILE), stop per socket
//!   conn.rs      one connection: detect -> lookup (or the listener's noSni/noMatch) -> limits
//!                -> by the listener's mode:
//!                  Passthrough: connect -> replay + relay
//!                  Terminate:   handshake -> connect -> plaintext relay
//!   detect.rs    the ClientHello, however it arrives, into a bounded buffer under a deadline,
//!                after a PROXY protocol header and a PostgreSQL preamble when present
//!   proxy_protocol.rs  PROXY protocol v1/v2: accepted per socket (read exactly), sent per backend
//!   postgres.rs  PostgreSQL's SSLRequest/GSSENCRequest, both sides
//!   upstream.rs  backend by weight, endpoint by the backend's balancer, connect under a
//!                timeout per attempt, failover to other endpoints, backends and fallbacks, the
//!                replay sent as soon as each attempt's connection exists
//!   balance.rs   round-robin, least connections, power of two choices over usable endpoints
//!   health.rs    endpoint state across tables: passive ejection with backoff, active TCP and
//!                TLS checks (one task per backend)
//!   resolve.rs   the shared DNS resolver (hickory), answers kept for their TTL
//!   relay.rs     both ways, half-close aware, no buffer while idle
//!   watchdog.rs  idle, half-close and lifetime deadlines and the drain cut, one timer
//!   splice.rs    bulk bursts socket -> pipe -> socket, pooled pipes
//!   terminate.rs rustls config per listener (certificate by SNI, shared ticketer), handshake
//!                over the buffered hello, plaintext relay with close_notify half-close
//! error.rs       ProxyError (the proxy), ConnError (one connection; says which side failed)
//! metrics.rs     every metric's name, help and labels (Prometheus)
//! access_log.rs  one line per connection, text or JSON, written off the connection's path
//! ```
//!
//! # Live tables
//!
//! Every source of configuration (files, the Kubernetes API) hands the proxy a new compiled
//! [`RoutingTable`] through [`Proxy::install`]. Installing builds the per-table state the data
//! plane needs (rustls server configurations, balancers, limits and timeouts merged with the
//! defaults, metric handles), swaps it in through an atomic pointer ([`arc_swap::ArcSwap`]: no lock
//! on the accept or lookup path), and reconciles the listening sockets: a new (address, port) is
//! bound, a removed one stops accepting, an unchanged one keeps its socket. A bind failure fails
//! that socket only; it is reported, and retried at the next install. What must survive a new
//! table (connection counts for limits, the round-robin position, counters) is keyed by the
//! listener's and the backend's identity, not by table. A connection looks up the table that was
//! current when it was accepted and keeps only what it chose; a new table never touches an
//! established connection, whatever changed.
//!
//! Connection lifecycle:
//!
//! 1. Accept. Beyond the global connection limit the new connection is closed at once and
//!    counted; no socket waits for another's permit, so none can starve another.
//! 2. Detect: read until the ClientHello is complete, invalid, or `hello_timeout` passes. Before
//!    it, within the same deadline: a PROXY protocol header when the socket accepts one (its
//!    client address replaces the socket's peer from then on: access log, per-client limits,
//!    logs, the header sent on), and PostgreSQL's `SSLRequest` (answered `S`) or
//!    `GSSENCRequest` (answered `N`), recognised by their exact bytes.
//! 3. Look up the SNI in the table loaded at accept: listener, then route; no fall-through. The
//!    listener found decides the mode, so Passthrough and Terminate listeners share a socket
//!    (Mixed), told apart by hostname. A client without a usable server name, or with one no
//!    route takes, gets what the listener's `noSni` or `noMatch` says: close (the default), a
//!    TLS `unrecognized_name` alert, or the listener's default backend. The listener's limits
//!    (connections, per client address) apply here: beyond them the connection is closed at
//!    once.
//! 4. Terminate only: complete the TLS handshake within `handshake_timeout`, the buffered hello
//!    first (see [`terminate`]).
//! 5. Choose a backend by weight among the primaries (beyond its connection limit the connection
//!    is closed) and a usable endpoint by its balancer; connect under `connect_timeout`, failing
//!    over to other endpoints, other backends, then fallback backends (see [`upstream`]).
//! 6. Passthrough: a PROXY protocol header first when the backend's policy asks for one, then,
//!    for a PostgreSQL client, `SSLRequest` (the backend must answer `S`); then replay every
//!    byte read so far (usually sent whole right after the connect),
//!    then relay both ways until both directions have ended. Terminate: relay plaintext both
//!    ways, half-close mapped to close_notify. The idle, half-close and lifetime deadlines end a
//!    connection with a reset to both sides; the hello and handshake deadlines reset the client.
//! 7. Count it, and write its access log line.
//!
//! Any failure before step 4 closes the client socket without writing a byte (with a reset when
//! the hello deadline passed), but for the PostgreSQL answers already given and the
//! `unrecognized_name` alert a listener's policy asks for. A failed handshake
//! may get a TLS alert from rustls; a backend failure after the handshake gets a close_notify. On
//! shutdown the listening sockets close first, then live connections get up to the drain period,
//! then the rest are cut with a reset and counted in the log.
//!
//! Known limits, left to later issues: client certificates.
#![warn(missing_docs)]

pub mod access_log;
mod balance;
mod conn;
pub mod detect;
pub mod error;
mod health;
mod listener;
mod live;
pub mod metrics;
pub mod postgres;
pub mod proxy_protocol;
pub mod relay;
mod resolve;
mod splice;
pub mod terminate;
pub mod upstream;
pub mod watchdog;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sniway_model::RoutingTable;
use tokio::sync::{Semaphore, watch};

pub use access_log::AccessLog;
pub use error::{ConnError, Limit, ProxyError, Side};
pub use metrics::Metrics;
pub use relay::Transferred;

/// TCP keep-alive probing: after `idle` without traffic, a probe every `interval`, and the
/// connection is dropped after `count` unanswered probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Keepalive {
    /// The default: first probe after 2 minutes idle, then every 30 seconds, 5 unanswered
    /// probes drop the connection.
    pub const DEFAULT: Keepalive =
        Keepalive { idle: Duration::from_secs(120), interval: Duration::from_secs(30), count: 5 };
}

/// Data-plane defaults. A listener's policy overrides the per-listener ones
/// ([`sniway_model::ListenerSettings`]); zero durations and counts mean "none" or "unlimited"
/// where the field says so.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Deadline for the whole ClientHello, from accept.
    pub hello_timeout: Duration,
    /// Deadline of each connect attempt (DNS resolution included) to a backend endpoint; a
    /// backend's policy overrides it.
    pub connect_timeout: Duration,
    /// Endpoints tried per connection (at least 1), within `connect_timeout` each and this many
    /// times `connect_timeout` in all; a backend's policy overrides it.
    pub failover_attempts: u32,
    /// Passive health (ejection after consecutive failed connects) of backends whose policy sets
    /// none; `consecutive_failures` 0 turns it off.
    pub passive_health: sniway_model::settings::PassiveHealthCheck,
    /// The name server that resolves DNS backends (UDP, then TCP); `None`: the system's
    /// (`/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// Deadline for the TLS handshake on a Terminate listener, from the end of detection.
    pub handshake_timeout: Duration,
    /// No byte either way for this long ends a relayed connection; zero: never.
    pub idle_timeout: Duration,
    /// One side finished and the other silent this long ends the connection; zero: never.
    pub half_close_timeout: Duration,
    /// Longest life of a connection from accept; zero: unlimited.
    pub max_lifetime: Duration,
    /// TCP keep-alive on client and backend sockets; `None`: off.
    pub keepalive: Option<Keepalive>,
    /// Connections open at once in the whole process (every phase); beyond it, a new connection
    /// is closed at once.
    pub max_connections: usize,
    /// Default per-listener limit of open connections; zero: unlimited.
    pub max_listener_connections: u32,
    /// Per-backend limit of open connections (the same for every backend); zero: unlimited.
    pub max_backend_connections: u32,
    /// Default per-listener limit of open connections from one client address; zero: unlimited.
    pub max_client_connections: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            failover_attempts: 3,
            passive_health: health::DEFAULT_PASSIVE,
            dns_server: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            half_close_timeout: Duration::from_secs(300),
            max_lifetime: Duration::ZERO,
            keepalive: Some(Keepalive::DEFAULT),
            max_connections: 100_000,
            max_listener_connections: 0,
            max_backend_connections: 0,
            max_client_connections: 0,
        }
    }
}

/// What a listening socket of the current table is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketState {
    /// The (address, port) the table asks for.
    pub configured: SocketAddr,
    /// The address actually bound (differs for port 0), or why binding failed.
    pub bound: Result<SocketAddr, String>,
}

/// What [`Proxy::shutdown`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Connections open when accepting stopped.
    pub open: usize,
    /// Connections still open at the drain deadline, cut with a reset.
    pub cut: usize,
}

/// State shared by the proxy handle, the accept loops and the connection tasks.
pub(crate) struct Inner {
    /// Defaults.
    pub config: ProxyConfig,
    /// The current table with its per-table state.
    pub current: ArcSwap<live::Installed>,
    /// One permit per open connection; `max_connections` in all. Also how drain counts what is
    /// left.
    pub permits: Arc<Semaphore>,
    /// `max_connections`, as permits.
    pub max: usize,
    /// Turns true when the drain deadline passes: connections still open end at once.
    pub cut: watch::Sender<bool>,
    /// Metrics.
    pub metrics: Metrics,
    /// The access log, when enabled.
    pub access_log: Option<AccessLog>,
    /// State that survives tables, by identity.
    pub registry: live::Registry,
    /// Listening sockets by configured address.
    sockets: Mutex<BTreeMap<SocketAddr, listener::Slot>>,
    /// Set once shutdown starts: no install binds again, readiness turns false.
    draining: std::sync::atomic::AtomicBool,
    /// Accept loops of sockets that installs removed, until [`Proxy::settle`] has seen them end.
    removed: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The data plane: install tables, serve them, drain.
///
/// Cloning gives another handle to the same proxy.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy serving nothing yet; [`Proxy::install`] gives it a table.
    pub fn new(config: ProxyConfig, access_log: Option<AccessLog>) -> Proxy {
        let max = config.max_connections.clamp(1, u32::MAX as usize).min(Semaphore::MAX_PERMITS);
        let metrics = Metrics::new();
        metrics.max.set(i64::try_from(max).unwrap_or(i64::MAX));
        let registry = live::Registry::new(resolve::Resolver::new(config.dns_server), &metrics);
        let empty =
            live::Installed::build(Arc::new(RoutingTable::default()), &config, &metrics, &registry);
        let (cut, _) = watch::channel(false);
        Proxy {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(empty),
                permits: Arc::new(Semaphore::new(max)),
                max,
                cut,
                metrics,
                access_log,
                registry,
                config,
                sockets: Mutex::new(BTreeMap::new()),
                draining: std::sync::atomic::AtomicBool::new(false),
                removed: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Installs `table`: builds its per-table state, binds the sockets it adds (and those that
    /// failed before), swaps it in atomically, then stops accepting on the sockets it no longer
    /// has. Sockets in both tables keep serving and are never rebound. Returns the state of
    /// every socket of the new table; a socket that could not be bound fails alone.
    ///
    /// A removed socket is closed by its accept loop, shortly after this returns; await
    /// [`Proxy::settle`] before telling anyone that its address refuses connections.
    ///
    /// Must be called within a tokio runtime (accept loops are spawned on it).
    pub fn install(&self, table: Arc<RoutingTable>) -> Vec<SocketState> {
        let inner = &self.inner;
        let installed =
            live::Installed::build(table, &inner.config, &inner.metrics, &inner.registry);
        let wanted: BTreeMap<SocketAddr, Option<Keepalive>> =
            installed.sockets.iter().map(|s| (s.addr, s.keepalive)).collect();
        let draining = inner.draining.load(std::sync::atomic::Ordering::SeqCst);
        let mut sockets = inner.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = Vec::new();
        for (&addr, &keepalive) in &wanted {
            let retry = matches!(sockets.get(&addr), Some(s) if s.local.is_err());
            if draining || (sockets.contains_key(&addr) && !retry) {
                continue;
            }
            match listener::bind(addr, keepalive) {
                Ok(bound) => {
                    tracing::info!(configured = %addr, local = %bound.local, "listening");
                    fresh.push(bound);
                }
                Err(e) => {
                    tracing::error!(error = %e, "listener not bound; the others keep serving");
                    sockets.insert(addr, listener::Slot::failed(e.to_string()));
                }
            }
        }
        inner.current.store(Arc::new(installed));
        for bound in fresh {
            let addr = bound.configured;
            sockets.insert(addr, listener::Slot::spawn(bound, Arc::clone(inner)));
        }
        let mut removed = Vec::new();
        sockets.retain(|addr, slot| {
            let keep = wanted.contains_key(addr);
            if !keep {
                tracing::info!(configured = %addr, "no longer in the table; stopped accepting");
                removed.extend(slot.stop_later());
            }
            keep
        });
        inner.removed.lock().unwrap_or_else(|p| p.into_inner()).extend(removed);
        wanted.keys().map(|&addr| state_of(addr, sockets.get(&addr))).collect()
    }

    /// Waits until every socket that earlier installs removed is closed: from then on a
    /// connection to a removed address is refused (unless the address is bound again).
    pub async fn settle(&self) {
        let removed =
            std::mem::take(&mut *self.inner.removed.lock().unwrap_or_else(|p| p.into_inner()));
        for task in removed {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "accept loop ended abnormally");
            }
        }
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        Arc::clone(&self.inner.current.load().table)
    }

    /// The state of every socket of the current table, in address order.
    pub fn sockets(&self) -> Vec<SocketState> {
        let table = self.inner.current.load();
        let sockets = self.inner.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<SocketState> =
            table.sockets.iter().map(|s| state_of(s.addr, sockets.get(&s.addr))).collect();
        out.sort_by_key(|s| s.configured);
        out
    }

    /// Ready to serve: every socket of the current table is bound and the proxy is not
    /// draining. The error says why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.inner.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("draining: shutting down".into());
        }
        let failed: Vec<String> = self
            .sockets()
            .into_iter()
            .filter_map(|s| s.bound.err().map(|e| format!("{}: {e}", s.configured)))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("not listening on {}", failed.join("; ")))
        }
    }

    /// Connections open now, in every phase.
    pub fn open_connections(&self) -> usize {
        self.inner.max - self.inner.permits.available_permits()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Every backend's endpoints with their health, for the `/status` view: a list of
    /// `{backend, endpoints: [{address, healthy, connections, ejectedForMs?, failedConnects?,
    /// activeCheck?}]}`, in name order.
    pub fn backend_health(&self) -> serde_json::Value {
        self.inner.registry.health_view()
    }

    /// The metrics exposition, with the gauges read now.
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        m.open.set(i64::try_from(self.open_connections()).unwrap_or(i64::MAX));
        if let Some(log) = &self.inner.access_log {
            m.access_log_dropped(log.dropped());
        }
        self.inner.registry.refresh_health();
        m.encode()
    }

    /// Stops accepting on every socket, then waits up to `drain` for open connections to end;
    /// those still open then are cut with a reset. Further installs bind nothing.
    pub async fn shutdown(&self, drain: Duration) -> Drained {
        let inner = &self.inner;
        inner.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let slots: Vec<listener::Slot> = {
            let mut sockets = inner.sockets.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *sockets).into_values().collect()
        };
        for slot in slots {
            slot.stop_and_wait().await;
        }
        let open = self.open_connections();
        tracing::info!(open, ?drain, "stopped accepting; draining connections");
        // Every permit back means every connection task has ended.
        let all = u32::try_from(inner.max).unwrap_or(u32::MAX);
        // (A waiting `acquire_many` holds the permits it has gathered so far; `is_ok()` drops
        // it, returning them, before the cut connections are counted.)
        let drained = tokio::time::timeout(drain, inner.permits.acquire_many(all)).await.is_ok();
        if drained {
            tracing::info!(open, "drained: every connection ended");
            if let Some(log) = &inner.access_log {
                log.flush(CUT_GRACE);
            }
            return Drained { open, cut: 0 };
        }
        let cut = self.open_connections();
        tracing::warn!(cut, ?drain, "drain deadline passed; cutting the connections still open");
        inner.cut.send_replace(true);
        // Cut tasks end at their next poll; wait briefly so their sockets are closed (with a
        // reset) before returning.
        let _ = tokio::time::timeout(CUT_GRACE, inner.permits.acquire_many(all)).await;
        if let Some(log) = &inner.access_log {
            log.flush(CUT_GRACE);
        }
        Drained { open, cut }
    }
}

fn state_of(addr: SocketAddr, slot: Option<&listener::Slot>) -> SocketState {
    let bound = match slot {
        Some(s) => s.local.clone(),
        None => Err("not bound: shutting down".into()),
    };
    SocketState { configured: addr, bound }
}

/// How long `shutdown` waits for cut connections to close their sockets after the drain
/// deadline.
const CUT_GRACE: Duration = Duration::from_secs(1);
