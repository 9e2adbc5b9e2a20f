//! The data plane's state for one routing table, built when the table is installed.
//!
//! The model ([`sniway_model::RoutingTable`]) is plain routing data. What serving it needs on
//! top is built here, once per table: the rustls server configuration of each Terminate listener,
//! each listener's timeouts and limits (its policy merged with the proxy's defaults), the
//! balancing state and the metric handles of each (listener, route, backend). The tree mirrors
//! the model's (socket, listeners by hostname, routes by hostname, weighted backends), so a
//! lookup walks one structure.
//!
//! What must outlive a table is kept in the [`Registry`], keyed by identity: a listener's open
//! connections (its limits) by [`ListenerId`], a backend's open connections and round-robin
//! position by its name. A new table that keeps a listener or a backend finds the same state;
//! the registry holds it weakly, so state nothing uses any more is freed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sniway_model::settings::{ProxyProtocolVersion, Unmatched};
use sniway_model::{
    Backend, HostIndex, ListenerId, ListenerMode, ListenerSettings, ListenerTable, Route, RouteId,
    RoutingTable, SocketTable, normalize,
};

use sniway_model::BackendSettings;

use crate::health::{BackendHealth, EndpointState, HealthMetrics};
use crate::metrics::{BackendMetrics, Metrics, PathLabels, PathMetrics, SocketMetrics};
use crate::proxy_protocol::Accept;
use crate::resolve::Resolver;
use crate::{Keepalive, ProxyConfig};

/// A routing table with the data plane's state for it.
pub(crate) struct Installed {
    /// The table, as given.
    pub table: Arc<RoutingTable>,
    /// One per socket of the table, in the same order.
    pub sockets: Vec<LiveSocket>,
}

impl Installed {
    /// Builds the state for `table`.
    pub fn build(
        table: Arc<RoutingTable>,
        config: &ProxyConfig,
        metrics: &Metrics,
        registry: &Registry,
    ) -> Installed {
        registry.next_generation();
        let sockets =
            table.sockets.iter().map(|s| LiveSocket::build(s, config, metrics, registry)).collect();
        registry.prune();
        Installed { table, sockets }
    }

    /// The index of the socket configured as `addr`.
    pub fn socket_index(&self, addr: SocketAddr) -> Option<usize> {
        self.sockets.iter().position(|s| s.addr == addr)
    }
}

/// One listening socket's listeners.
pub(crate) struct LiveSocket {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Listeners by hostname, most specific first.
    pub listeners: HostIndex<Arc<LiveListener>>,
    /// The ClientHello deadline: the longest of its listeners' (the listener is not known until
    /// the hello is read).
    pub hello_timeout: Duration,
    /// Keep-alive set on the listening socket, inherited by accepted connections; the
    /// proxy's default.
    pub keepalive: Option<Keepalive>,
    /// Metric handles.
    pub metrics: SocketMetrics,
    /// PROXY protocol acceptance: the strictest of the listeners' modes, the union of their
    /// trusted networks.
    pub proxy_protocol: Accept,
    /// The listener whose `noSni` and `noMatch` apply to a client that names no listener of the
    /// socket: the one without hostname, else the only one; `None` (close) otherwise.
    pub unmatched: Option<Arc<LiveListener>>,
}

/// What a lookup found.
pub(crate) enum Found<'a> {
    /// A listener and a route.
    Route(&'a Arc<LiveListener>, &'a Arc<LiveRoute>),
    /// A listener without a route for the name (no fall-through).
    NoRoute(&'a Arc<LiveListener>),
    /// No listener takes the name.
    NoListener,
}

impl LiveSocket {
    fn build(
        s: &SocketTable,
        config: &ProxyConfig,
        metrics: &Metrics,
        registry: &Registry,
    ) -> LiveSocket {
        let mut listeners = HostIndex::new();
        let mut hello_timeout = None::<Duration>;
        let entries = s.listeners.entries();
        let mut unmatched = None;
        for (host, l) in &entries {
            let live = Arc::new(LiveListener::build(l, config, metrics, registry));
            hello_timeout =
                Some(hello_timeout.map_or(live.hello_timeout, |h| h.max(live.hello_timeout)));
            if host.is_none() || entries.len() == 1 {
                unmatched = Some(Arc::clone(&live));
            }
            listeners.insert_first(host.as_ref(), live);
        }
        let proxy_protocol =
            Accept::merge(entries.iter().map(|(_, l)| l.settings.proxy_protocol.as_ref()));
        LiveSocket {
            addr: s.addr,
            listeners,
            hello_timeout: hello_timeout.unwrap_or(config.hello_timeout),
            keepalive: config.keepalive,
            metrics: SocketMetrics::new(metrics, s.addr.to_string()),
            proxy_protocol,
            unmatched,
        }
    }

    /// The listener and route for a server name as sent in the ClientHello (any case, optional
    /// trailing dot), as [`SocketTable::lookup`] finds them. An IP-literal name never matches.
    pub fn lookup(&self, server_name: &str) -> Found<'_> {
        let name = normalize(server_name);
        if name.is_empty() || name.parse::<IpAddr>().is_ok() {
            return Found::NoListener;
        }
        match self.listeners.lookup(&name) {
            None => Found::NoListener,
            Some(l) => match l.routes.lookup(&name) {
                Some(r) => Found::Route(l, r),
                None => Found::NoRoute(l),
            },
        }
    }
}

/// How a listener serves its connections.
pub(crate) enum Mode {
    /// Relay the encrypted bytes.
    Passthrough,
    /// Complete the handshake with this configuration, or refuse when it could not be built.
    Terminate(Result<Arc<rustls::ServerConfig>, String>, Arc<sniway_model::TerminateConfig>),
}

/// A listener with its effective settings.
pub(crate) struct LiveListener {
    /// `namespace/gateway/listener`, for labels and logs.
    pub label: String,
    /// How it serves.
    pub mode: Mode,
    /// Routes by hostname.
    pub routes: HostIndex<Arc<LiveRoute>>,
    /// ClientHello deadline.
    pub hello_timeout: Duration,
    /// TLS handshake deadline (Terminate).
    pub handshake_timeout: Duration,
    /// Idle timeout; zero: none.
    pub idle_timeout: Duration,
    /// Half-close timeout; zero: none.
    pub half_close_timeout: Duration,
    /// Maximum lifetime; zero: unlimited.
    pub max_lifetime: Duration,
    /// Keep-alive for this listener's client and backend sockets.
    pub keepalive: Option<Keepalive>,
    /// Open connections at once; zero: unlimited.
    pub max_connections: u32,
    /// Open connections at once per client address; zero: unlimited.
    pub max_per_client: u32,
    /// State kept across tables.
    pub state: Arc<ListenerState>,
    /// What a client without a usable server name gets.
    pub no_sni: Unmatched,
    /// What a server name that no route takes gets.
    pub no_match: Unmatched,
    /// The default route for `no_sni: Backend`.
    pub default_no_sni: Option<Arc<LiveRoute>>,
    /// The default route for `no_match: Backend`.
    pub default_no_match: Option<Arc<LiveRoute>>,
}

impl LiveListener {
    fn build(
        l: &ListenerTable,
        config: &ProxyConfig,
        metrics: &Metrics,
        registry: &Registry,
    ) -> LiveListener {
        let label = l.id.to_string();
        let ListenerSettings {
            hello_timeout,
            handshake_timeout,
            idle_timeout,
            half_close_timeout,
            max_lifetime,
            keepalive_idle,
            keepalive_interval,
            keepalive_count,
            max_connections,
            max_connections_per_client,
            // Per socket: merged by `LiveSocket::build`.
            proxy_protocol: _,
            no_sni,
            no_match,
            // Served by a later change (the relay choice).
            relay: _,
        } = l.settings.clone();
        let keepalive =
            merge_keepalive(config.keepalive, keepalive_idle, keepalive_interval, keepalive_count);
        let mode = match &l.mode {
            ListenerMode::Passthrough => Mode::Passthrough,
            ListenerMode::Terminate(cfg) => Mode::Terminate(
                crate::terminate::server_config(cfg).map_err(|e| {
                    tracing::error!(listener = %label, error = %e, "TLS configuration not built");
                    e.to_string()
                }),
                Arc::clone(cfg),
            ),
            _ => Mode::Terminate(
                Err("mode not served".into()),
                Arc::new(sniway_model::TerminateConfig::new(Default::default())),
            ),
        };
        let mut routes = HostIndex::new();
        for (host, r) in l.routes.entries() {
            routes.insert_first(
                host.as_ref(),
                Arc::new(LiveRoute::build(&label, r, config, metrics, registry)),
            );
        }
        let default = |r: &Option<Arc<Route>>| {
            r.as_ref().map(|r| Arc::new(LiveRoute::build(&label, r, config, metrics, registry)))
        };
        let default_no_sni = default(&l.defaults.no_sni);
        let default_no_match = default(&l.defaults.no_match);
        LiveListener {
            no_sni: no_sni.unwrap_or_default(),
            no_match: no_match.unwrap_or_default(),
            default_no_sni,
            default_no_match,
            state: registry.listener(&l.id),
            label,
            mode,
            routes,
            hello_timeout: hello_timeout.unwrap_or(config.hello_timeout),
            handshake_timeout: handshake_timeout.unwrap_or(config.handshake_timeout),
            idle_timeout: idle_timeout.unwrap_or(config.idle_timeout),
            half_close_timeout: half_close_timeout.unwrap_or(config.half_close_timeout),
            max_lifetime: max_lifetime.unwrap_or(config.max_lifetime),
            keepalive,
            max_connections: max_connections.unwrap_or(config.max_listener_connections),
            max_per_client: max_connections_per_client.unwrap_or(config.max_client_connections),
        }
    }
}

/// The default keep-alive with the fields a policy sets; an idle time of zero turns it off.
fn merge_keepalive(
    default: Option<Keepalive>,
    idle: Option<Duration>,
    interval: Option<Duration>,
    count: Option<u32>,
) -> Option<Keepalive> {
    if idle.is_none() && interval.is_none() && count.is_none() {
        return default;
    }
    let base = default.unwrap_or(Keepalive::DEFAULT);
    let k = Keepalive {
        idle: idle.unwrap_or(base.idle),
        interval: interval.unwrap_or(base.interval),
        count: count.unwrap_or(base.count),
    };
    (!k.idle.is_zero()).then_some(k)
}

/// A route rule's backends with their state.
pub(crate) struct LiveRoute {
    /// Which rule.
    pub id: RouteId,
    /// Sum of the weights of the primary (non-fallback) backends; 0 refuses every connection.
    pub total_weight: u64,
    /// Backends in the model's order.
    pub backends: Vec<LiveBackend>,
    /// Labels for connections that reach no backend (every weight 0).
    pub unrouted: PathLabels,
}

impl LiveRoute {
    fn build(
        listener: &str,
        r: &Route,
        config: &ProxyConfig,
        metrics: &Metrics,
        registry: &Registry,
    ) -> LiveRoute {
        let route = r.id.to_string();
        let backends = r
            .backends
            .iter()
            .map(|wb| {
                let name = wb.backend.name();
                let target = match &wb.backend {
                    Backend::Endpoints { addrs, .. } => Target::Endpoints(addrs.clone()),
                    Backend::Dns { host, port, .. } => {
                        Target::Dns { host: host.clone(), port: *port }
                    }
                    Backend::Invalid { reason, .. } => Target::Invalid(reason.clone()),
                };
                let labels = PathLabels {
                    listener: listener.to_string(),
                    route: route.clone(),
                    backend: name.to_string(),
                };
                let state = registry.backend(name, metrics);
                let endpoints = registry.endpoints(&state, &wb.settings, &target);
                LiveBackend {
                    weight: wb.weight,
                    target,
                    endpoints,
                    settings: Arc::clone(&wb.settings),
                    max_connections: wb
                        .settings
                        .max_connections
                        .unwrap_or(config.max_backend_connections),
                    state,
                    path: PathMetrics::new(metrics, labels),
                    proxy_protocol: wb.settings.proxy_protocol.unwrap_or_default(),
                }
            })
            .collect();
        let total_weight =
            r.backends.iter().filter(|b| !b.settings.fallback).map(|b| u64::from(b.weight)).sum();
        LiveRoute {
            id: r.id.clone(),
            total_weight,
            backends,
            unrouted: PathLabels { listener: listener.to_string(), route, backend: String::new() },
        }
    }

    /// The index of the backend for a uniform roll in `0..total_weight`; weight-0 and fallback
    /// backends are never picked.
    pub fn pick(&self, roll: u64) -> Option<usize> {
        let weights = self.backends.iter().map(|b| if b.settings.fallback { 0 } else { b.weight });
        sniway_model::table::pick_weighted(weights, roll)
    }
}

/// Where a backend's connections go.
pub(crate) enum Target {
    /// Fixed endpoint addresses (empty: refused).
    Endpoints(Vec<SocketAddr>),
    /// A DNS name resolved when connecting.
    Dns {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
    },
    /// An unresolved reference: its share of connections is refused.
    Invalid(String),
}

/// A backend of a route.
pub(crate) struct LiveBackend {
    /// Its share.
    pub weight: u32,
    /// Where to connect.
    pub target: Target,
    /// The states of the fixed endpoints (`Target::Endpoints`), in the same order.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// The backend's policy.
    pub settings: Arc<BackendSettings>,
    /// Open connections at once; zero: unlimited.
    pub max_connections: u32,
    /// State kept across tables.
    pub state: Arc<BackendState>,
    /// Metric handles of (listener, route, this backend).
    pub path: Arc<PathMetrics>,
    /// The PROXY protocol header sent to it.
    pub proxy_protocol: ProxyProtocolVersion,
}

/// A listener's state across tables.
#[derive(Debug, Default)]
pub(crate) struct ListenerState {
    /// Connections routed to this listener and open now.
    pub active: AtomicUsize,
    /// Open connections per client address, kept only while a per-client limit applies.
    pub clients: Mutex<HashMap<IpAddr, u32>>,
}

/// A backend's state across tables.
#[derive(Debug)]
pub(crate) struct BackendState {
    /// Display name.
    pub name: String,
    /// Connections to it open now.
    pub active: AtomicUsize,
    /// Round-robin position over its endpoints.
    pub cursor: AtomicUsize,
    /// Metric handles.
    pub metrics: BackendMetrics,
    /// Its endpoints' health, and its active checker.
    pub health: BackendHealth,
}

/// State that outlives tables, by identity.
pub(crate) struct Registry {
    listeners: Mutex<HashMap<ListenerId, Weak<ListenerState>>>,
    backends: Mutex<HashMap<String, Weak<BackendState>>>,
    /// The table being built (counts installs), to forget endpoints a new table drops.
    generation: AtomicU64,
    /// The shared DNS resolver.
    pub resolver: Resolver,
    health: Arc<HealthMetrics>,
}

impl Registry {
    /// An empty registry.
    pub fn new(resolver: Resolver, metrics: &Metrics) -> Registry {
        Registry {
            listeners: Mutex::default(),
            backends: Mutex::default(),
            generation: AtomicU64::new(0),
            resolver,
            health: HealthMetrics::new(metrics),
        }
    }

    fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The endpoint states of `target` for the table being built, and what the table says
    /// about the backend; starts its active checker when its policy asks for one.
    fn endpoints(
        &self,
        state: &Arc<BackendState>,
        settings: &Arc<BackendSettings>,
        target: &Target,
    ) -> Vec<Arc<EndpointState>> {
        let generation = self.generation.load(Ordering::Acquire);
        let (dns, endpoints) = match target {
            Target::Endpoints(addrs) => (None, state.health.fixed(addrs, generation)),
            Target::Dns { host, port } => (Some((host.clone(), *port)), Vec::new()),
            Target::Invalid(_) => (None, Vec::new()),
        };
        state.health.update(settings, dns);
        crate::health::ensure_checker(Arc::downgrade(state), &state.health, &self.resolver);
        endpoints
    }

    fn live_backends(&self) -> Vec<Arc<BackendState>> {
        let map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().filter_map(Weak::upgrade).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Brings the endpoint health gauges up to date.
    pub fn refresh_health(&self) {
        for b in self.live_backends() {
            b.health.refresh();
        }
    }

    /// Every backend's endpoints and their health.
    pub fn health_view(&self) -> serde_json::Value {
        let list = self
            .live_backends()
            .iter()
            .map(|b| serde_json::json!({ "backend": b.name, "endpoints": b.health.view() }))
            .collect();
        serde_json::Value::Array(list)
    }

    /// The state of listener `id`, shared with earlier tables that have it.
    fn listener(&self, id: &ListenerId) -> Arc<ListenerState> {
        let mut map = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(id).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(ListenerState::default());
        map.insert(id.clone(), Arc::downgrade(&s));
        s
    }

    /// The state of the backend named `name`, shared with earlier tables that have it.
    fn backend(&self, name: &str, metrics: &Metrics) -> Arc<BackendState> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(name).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(BackendState {
            name: name.to_string(),
            active: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            metrics: BackendMetrics::new(metrics, name),
            health: BackendHealth::new(name, Arc::clone(&self.health)),
        });
        map.insert(name.to_string(), Arc::downgrade(&s));
        s
    }

    /// Forgets state that no table or connection uses any more.
    fn prune(&self) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, w| w.strong_count() > 0);
        self.backends.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, w| w.strong_count() > 0);
        let generation = self.generation.load(Ordering::Acquire);
        for b in self.live_backends() {
            b.health.prune(generation);
        }
    }
}

/// Counts a connection on its listener while alive, within the listener's limits.
pub(crate) struct ListenerGuard {
    state: Arc<ListenerState>,
    /// The client address, when counted per client.
    client: Option<IpAddr>,
}

impl ListenerGuard {
    /// Counts a connection from `client` on `l`, or says which limit refuses it.
    pub fn acquire(l: &LiveListener, client: IpAddr) -> Result<ListenerGuard, crate::Limit> {
        let state = Arc::clone(&l.state);
        let n = state.active.fetch_add(1, Ordering::AcqRel);
        let mut guard = ListenerGuard { state, client: None };
        if l.max_connections > 0 && n >= l.max_connections as usize {
            return Err(crate::Limit::Listener);
        }
        if l.max_per_client == 0 {
            return Ok(guard);
        }
        let mut clients = guard.state.clients.lock().unwrap_or_else(|p| p.into_inner());
        let count = clients.entry(client).or_insert(0);
        if *count >= l.max_per_client {
            if *count == 0 {
                clients.remove(&client);
            }
            return Err(crate::Limit::Client);
        }
        *count += 1;
        drop(clients);
        guard.client = Some(client);
        Ok(guard)
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut clients = self.state.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = clients.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&ip);
                }
            }
        }
    }
}

/// Counts a connection on its backend and path while alive, within the backend's limit.
pub(crate) struct BackendGuard {
    state: Arc<BackendState>,
    path: Arc<PathMetrics>,
}

impl BackendGuard {
    /// Counts a connection to `b`, or refuses it beyond `max` (zero: unlimited).
    pub fn acquire(b: &LiveBackend, max: u32) -> Result<BackendGuard, crate::Limit> {
        let n = b.state.active.fetch_add(1, Ordering::AcqRel);
        b.path.active.inc();
        let guard = BackendGuard { state: Arc::clone(&b.state), path: Arc::clone(&b.path) };
        if max > 0 && n >= max as usize {
            return Err(crate::Limit::Backend);
        }
        Ok(guard)
    }

    /// The path's metric handles.
    pub fn path(&self) -> &Arc<PathMetrics> {
        &self.path
    }
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::AcqRel);
        self.path.active.dec();
    }
}
