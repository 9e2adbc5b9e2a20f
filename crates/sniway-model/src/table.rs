//! The routing table the data plane reads: per bound socket, listeners by hostname; per listener,
//! routes by hostname; per route, weighted backends with resolved endpoints.
//!
//! It is plain data, immutable once built: the data plane builds what it needs per table (TLS
//! configurations, balancer cursors, counters) when a table is installed, and a live connection
//! keeps what it started with, so installing a new table never touches it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::hostname::{HostPattern, normalize};
use crate::index::HostIndex;
use crate::settings::{BackendSettings, ListenerSettings};

/// Everything the data plane serves.
#[derive(Debug, Default, Serialize)]
pub struct RoutingTable {
    /// One entry per distinct (address, port) to listen on.
    pub sockets: Vec<SocketTable>,
}

/// The listeners sharing one bound (address, port), from one or more Gateways.
#[derive(Debug, Serialize)]
pub struct SocketTable {
    /// Address to bind; an unspecified IP (`0.0.0.0`, `::`) means all interfaces.
    pub addr: SocketAddr,
    /// Listeners by hostname (`None` = a listener without hostname), most specific first.
    pub listeners: HostIndex<Arc<ListenerTable>>,
}

/// How a listener treats the TLS stream.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub enum ListenerMode {
    /// Forward the encrypted bytes untouched, the buffered ClientHello first.
    Passthrough,
    /// Complete the handshake with the listener's certificates, then relay plaintext over TCP.
    Terminate(Arc<crate::tls::TerminateConfig>),
}

impl ListenerMode {
    /// `Passthrough` or `Terminate`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ListenerMode::Passthrough => "Passthrough",
            ListenerMode::Terminate(_) => "Terminate",
        }
    }
}

/// One Gateway listener as served on a socket.
#[derive(Debug, Serialize)]
pub struct ListenerTable {
    /// Which Gateway listener this is.
    pub id: ListenerId,
    /// The listener's hostname (`None` = any).
    pub hostname: Option<HostPattern>,
    /// How the stream is handled.
    pub mode: ListenerMode,
    /// Timeouts, keep-alive and limits set by policy; unset fields take the data plane's
    /// defaults.
    pub settings: ListenerSettings,
    /// Routes by intersected hostname (`None` = every name the listener allows).
    pub routes: HostIndex<Arc<Route>>,
    /// Where clients no route takes go, when the listener's policy says `action: Backend`.
    #[serde(skip_serializing_if = "DefaultRoutes::is_empty")]
    pub defaults: DefaultRoutes,
}

/// A listener's default backends (`ListenerPolicy` `noSni` and `noMatch` with
/// `action: Backend`), each as a route of one backend.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultRoutes {
    /// For a ClientHello without `server_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_sni: Option<Arc<Route>>,
    /// For a server name that no route takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_match: Option<Arc<Route>>,
}

impl DefaultRoutes {
    /// Neither default is set.
    pub fn is_empty(&self) -> bool {
        self.no_sni.is_none() && self.no_match.is_none()
    }
}

/// Names a Gateway listener: `namespace/gateway/listener`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId {
    /// Gateway namespace.
    pub namespace: String,
    /// Gateway name.
    pub gateway: String,
    /// Listener (section) name.
    pub listener: String,
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.gateway, self.listener)
    }
}

impl Serialize for ListenerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Names a route rule: `namespace/name` and the rule index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
    /// Index of the rule within `spec.rules`.
    pub rule: usize,
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.namespace, self.name, self.rule)
    }
}

impl Serialize for RouteId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A route rule's backends, chosen per connection by weight.
#[derive(Debug, Serialize)]
pub struct Route {
    /// Which route rule this is.
    pub id: RouteId,
    /// Backends with their weights; weight-0 entries are kept for visibility but never chosen.
    pub backends: Vec<WeightedBackend>,
}

impl Route {
    /// Builds a route.
    pub fn new(id: RouteId, backends: Vec<WeightedBackend>) -> Self {
        Self { id, backends }
    }

    /// Sum of all weights; 0 means every connection is refused.
    pub fn total_weight(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.weight)).sum()
    }

    /// Picks the backend for a connection, given a uniform random number in `0..total_weight()`.
    /// Weight-0 backends are never picked. `None` when the total weight is 0.
    pub fn pick(&self, roll: u64) -> Option<&WeightedBackend> {
        pick_weighted(self.backends.iter().map(|b| b.weight), roll).map(|i| &self.backends[i])
    }
}

/// The index chosen by a uniform `roll` in `0..sum(weights)`: each entry is chosen for `weight`
/// consecutive values of the roll, so with probability weight/sum; weight-0 entries never.
/// `None` when the roll is past the sum.
pub fn pick_weighted(weights: impl IntoIterator<Item = u32>, roll: u64) -> Option<usize> {
    let mut roll = roll;
    for (i, w) in weights.into_iter().enumerate() {
        let w = u64::from(w);
        if roll < w {
            return Some(i);
        }
        roll -= w;
    }
    None
}

/// A backend and its share of connections (Gateway API `weight`, default 1, 0 = no traffic).
#[derive(Debug, Serialize)]
pub struct WeightedBackend {
    /// Relative share: this weight over the route's total.
    pub weight: u32,
    /// Where connections go.
    pub backend: Backend,
    /// How the gateway treats the backend (its `BackendPolicy`); shared by every route that
    /// refers to the same backend.
    #[serde(skip_serializing_if = "is_default")]
    pub settings: Arc<BackendSettings>,
}

impl WeightedBackend {
    /// A backend with its weight and default settings.
    pub fn new(weight: u32, backend: Backend) -> Self {
        Self { weight, backend, settings: Arc::default() }
    }
}

fn is_default(s: &Arc<BackendSettings>) -> bool {
    **s == BackendSettings::default()
}

/// Where a backendRef leads.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Backend {
    /// Resolved addresses, balanced by the data plane.
    Endpoints {
        /// Display name, e.g. `default/secure-service:443`.
        name: String,
        /// Endpoint addresses; empty means the Service has no ready endpoints (refused).
        addrs: Vec<SocketAddr>,
    },
    /// A DNS name resolved when connecting (Service `type: ExternalName`, or an external host).
    Dns {
        /// Display name of the reference.
        name: String,
        /// Host to resolve.
        host: String,
        /// Port to connect to.
        port: u16,
    },
    /// A reference that could not be resolved. It keeps its weight, so its share of connections
    /// is refused, as the Gateway API requires.
    Invalid {
        /// Display name of the reference.
        name: String,
        /// Why it is invalid (the route's `ResolvedRefs` reason).
        reason: String,
    },
}

impl Backend {
    /// A backend with fixed endpoint addresses.
    pub fn endpoints(name: impl Into<String>, addrs: Vec<SocketAddr>) -> Self {
        Backend::Endpoints { name: name.into(), addrs }
    }

    /// The display name.
    pub fn name(&self) -> &str {
        match self {
            Backend::Endpoints { name, .. }
            | Backend::Dns { name, .. }
            | Backend::Invalid { name, .. } => name,
        }
    }
}

/// What a lookup found for a connection.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A listener and a route matched.
    Route {
        /// The listener chosen by the most specific hostname match.
        listener: &'a Arc<ListenerTable>,
        /// The route chosen within that listener.
        route: &'a Arc<Route>,
    },
    /// A listener matched but none of its routes: no fall-through to a less specific listener.
    NoRoute {
        /// The listener chosen.
        listener: &'a Arc<ListenerTable>,
    },
    /// No listener on this socket takes the name.
    NoListener,
}

impl RoutingTable {
    /// Indexes the sockets by address for the data plane.
    pub fn socket(&self, addr: SocketAddr) -> Option<&SocketTable> {
        self.sockets.iter().find(|s| s.addr == addr)
    }

    /// Number of route entries across all listeners (for logs).
    pub fn route_count(&self) -> usize {
        self.sockets.iter().flat_map(|s| s.listeners.entries()).map(|(_, l)| l.routes.len()).sum()
    }
}

impl SocketTable {
    /// Finds the listener and route for a server name as sent in the ClientHello (any case,
    /// optional trailing dot). An IP-literal name never matches.
    pub fn lookup(&self, server_name: &str) -> Lookup<'_> {
        let name = normalize(server_name);
        if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
            return Lookup::NoListener;
        }
        self.lookup_normalized(&name)
    }

    /// As [`SocketTable::lookup`], for a name already normalized.
    pub fn lookup_normalized(&self, name: &str) -> Lookup<'_> {
        match self.listeners.lookup(name) {
            None => Lookup::NoListener,
            Some(listener) => match listener.routes.lookup(name) {
                Some(route) => Lookup::Route { listener, route },
                None => Lookup::NoRoute { listener },
            },
        }
    }
}
