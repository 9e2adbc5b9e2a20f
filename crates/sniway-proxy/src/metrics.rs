//! Every metric sniway exposes, in one home: names, help texts, labels and buckets.
//!
//! Names follow the Prometheus conventions: the `sniway_` prefix, base units (`_seconds`,
//! `_bytes`), and `_total` on counters, which the OpenMetrics encoder appends (so a counter
//! registered as `sniway_connections_accepted` is exposed as `sniway_connections_accepted_total`).
//! The exposed names are listed in [`NAMES`].
//!
//! Label values are bounded by the configuration: socket addresses, listener, route and backend
//! names, and fixed reason words. A server name from a ClientHello or a client address never
//! becomes a label. Label sets of listeners, routes and backends that leave the configuration stay
//! in the exposition until the process restarts (counters must not go backwards while a series
//! exists); their number grows only with the names ever configured. The one exception is the
//! health gauge of a backend endpoint (`sniway_backend_endpoint_healthy`), removed when the
//! endpoint leaves the backend, since a stale health value would mislead.
//!
//! The data plane resolves the label sets of a table once, when the table is installed
//! ([`PathMetrics`], [`SocketMetrics`], [`BackendMetrics`]), so a connection only increments
//! atomics it already holds; only the rarer events (a refusal, a failure, a close) look their
//! label set up.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The exposed name of every metric, with its type, for documentation and tests.
pub const NAMES: &[(&str, &str)] = &[
    ("sniway_build_info", "info"),
    ("sniway_connections_accepted_total", "counter"),
    ("sniway_connections_open", "gauge"),
    ("sniway_connections_max", "gauge"),
    ("sniway_connections_limited_total", "counter"),
    ("sniway_hello_failures_total", "counter"),
    ("sniway_hello_duration_seconds", "histogram"),
    ("sniway_connections_total", "counter"),
    ("sniway_connections_active", "gauge"),
    ("sniway_connections_closed_total", "counter"),
    ("sniway_received_bytes_total", "counter"),
    ("sniway_sent_bytes_total", "counter"),
    ("sniway_connection_duration_seconds", "histogram"),
    ("sniway_backend_connect_attempts_total", "counter"),
    ("sniway_backend_connect_failures_total", "counter"),
    ("sniway_backend_connect_duration_seconds", "histogram"),
    ("sniway_tls_handshakes_total", "counter"),
    ("sniway_tls_handshake_failures_total", "counter"),
    ("sniway_reloads_total", "counter"),
    ("sniway_config_last_reload_successful", "gauge"),
    ("sniway_access_log_dropped_total", "counter"),
    ("sniway_backend_endpoint_healthy", "gauge"),
    ("sniway_backend_ejections_total", "counter"),
    ("sniway_backend_health_checks_total", "counter"),
    ("sniway_backend_failovers_total", "counter"),
    ("sniway_backend_fallback_connections_total", "counter"),
    ("sniway_unmatched_total", "counter"),
    ("sniway_proxy_protocol_headers_total", "counter"),
    ("sniway_postgres_requests_total", "counter"),
];

/// The exposed name of every metric of a controller that serves no data plane
/// (`sniway controller` provisioning data planes), with its type.
pub const CONTROLLER_NAMES: &[(&str, &str)] = &[
    ("sniway_build_info", "info"),
    ("sniway_controller_compiles_total", "counter"),
    ("sniway_controller_status_writes_total", "counter"),
    ("sniway_controller_provision_applies_total", "counter"),
];

/// `{address}`: a listening socket, as configured (`0.0.0.0:443`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    /// The configured address and port.
    pub address: String,
}

/// `{address, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketReasonLabels {
    /// The configured address and port.
    pub address: String,
    /// A fixed word (see the metric's help).
    pub reason: &'static str,
}

/// `{address, listener, limit}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The configured address and port.
    pub address: String,
    /// `namespace/gateway/listener`, empty for the global limit (reached before the hello).
    pub listener: String,
    /// `global`, `listener`, `client` or `backend`.
    pub limit: &'static str,
}

/// `{listener, route, backend}`: the path of a routed connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// `namespace/gateway/listener`.
    pub listener: String,
    /// `namespace/name#rule`.
    pub route: String,
    /// The backend's display name (`namespace/service:port`).
    pub backend: String,
}

/// `{listener, route, backend, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathReasonLabels {
    /// `namespace/gateway/listener`.
    pub listener: String,
    /// `namespace/name#rule`.
    pub route: String,
    /// The backend's display name.
    pub backend: String,
    /// Why the connection ended (see the metric's help).
    pub reason: &'static str,
}

/// `{listener}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `namespace/gateway/listener`.
    pub listener: String,
}

/// `{listener, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    /// `namespace/gateway/listener`.
    pub listener: String,
    /// A fixed word.
    pub reason: &'static str,
}

/// `{listener, resumed}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `namespace/gateway/listener`.
    pub listener: String,
    /// `true` for a resumed session.
    pub resumed: &'static str,
}

/// `{backend}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// The backend's display name.
    pub backend: String,
}

/// `{backend, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendReasonLabels {
    /// The backend's display name.
    pub backend: String,
    /// `refused`, `timeout`, `unreachable`, `resolve` or `error`.
    pub reason: &'static str,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// `{backend, endpoint}`: one endpoint of a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The backend's display name.
    pub backend: String,
    /// The endpoint's address and port.
    pub endpoint: String,
}

/// `{backend, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendResultLabels {
    /// The backend's display name.
    pub backend: String,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// `{address, listener, kind, action}`: a client no route took.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnmatchedLabels {
    /// The configured address and port.
    pub address: String,
    /// The listener whose policy applied; empty when none could be chosen.
    pub listener: String,
    /// `no_sni` or `no_match`.
    pub kind: &'static str,
    /// `close`, `alert` or `backend`.
    pub action: &'static str,
}

/// `{address, version}`: a PROXY protocol header accepted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyHeaderLabels {
    /// The configured address and port.
    pub address: String,
    /// `v1` or `v2`.
    pub version: &'static str,
    /// `proxy` (the client's address was taken) or `local` (no client address: the peer's).
    pub command: &'static str,
}

/// `{address, request}`: a PostgreSQL request before TLS.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PostgresLabels {
    /// The configured address and port.
    pub address: String,
    /// `ssl` (answered `S`) or `gssenc` (answered `N`).
    pub request: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to about 27 s (doubling): connect, hello and handshake times.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Connection lifetimes from 1 ms to about 36 h (factor 4).
fn lifetime() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 14))
}

/// `sniway_build_info{version}`, in every exposition.
fn register_build_info(r: &mut Registry) {
    r.register(
        "sniway_build",
        "sniway's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
}

/// `registry` in the OpenMetrics text format (which Prometheus reads).
fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A provisioning controller's metrics (it serves no connection) and their registry.
#[derive(Debug)]
pub struct ControllerMetrics {
    registry: Registry,
    compiles: Counter,
    status_writes: Family<ResultLabels, Counter>,
    provision_applies: Family<ResultLabels, Counter>,
}

impl ControllerMetrics {
    /// Registers every controller metric.
    pub fn new() -> ControllerMetrics {
        let mut registry = Registry::default();
        let m = ControllerMetrics {
            registry: Registry::default(),
            compiles: Counter::default(),
            status_writes: Family::default(),
            provision_applies: Family::default(),
        };
        let r = &mut registry;
        register_build_info(r);
        r.register(
            "sniway_controller_compiles",
            "Snapshots of the cluster compiled",
            m.compiles.clone(),
        );
        r.register(
            "sniway_controller_status_writes",
            "Object statuses written to the API server (success) or not (failure), as leader",
            m.status_writes.clone(),
        );
        r.register(
            "sniway_controller_provision_applies",
            "Data planes (a Gateway's provisioned objects) applied (success) or not (failure), \
             as leader",
            m.provision_applies.clone(),
        );
        ControllerMetrics { registry, ..m }
    }

    /// Counts a compile.
    pub fn compiled(&self) {
        self.compiles.inc();
    }

    /// Counts a status pass's writes.
    pub fn status_writes(&self, written: usize, failed: usize) {
        let count = |result, n: usize| {
            self.status_writes.get_or_create(&ResultLabels { result }).inc_by(n as u64);
        };
        count("success", written);
        count("failure", failed);
    }

    /// Counts a provisioning pass's applies.
    pub fn provision_applies(&self, applied: usize, failed: usize) {
        let count = |result, n: usize| {
            self.provision_applies.get_or_create(&ResultLabels { result }).inc_by(n as u64);
        };
        count("success", applied);
        count("failure", failed);
    }

    /// The exposition in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The data plane's metrics and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) accepted: Family<SocketLabels, Counter>,
    pub(crate) open: Gauge,
    pub(crate) max: Gauge,
    pub(crate) limited: Family<LimitLabels, Counter>,
    pub(crate) hello_failures: Family<SocketReasonLabels, Counter>,
    pub(crate) hello_duration: Histograms<SocketLabels>,
    pub(crate) connections: Family<PathLabels, Counter>,
    pub(crate) active: Family<PathLabels, Gauge>,
    pub(crate) closed: Family<PathReasonLabels, Counter>,
    pub(crate) received: Family<PathLabels, Counter>,
    pub(crate) sent: Family<PathLabels, Counter>,
    pub(crate) duration: Histograms<ListenerLabels>,
    pub(crate) connect_attempts: Family<BackendLabels, Counter>,
    pub(crate) connect_failures: Family<BackendReasonLabels, Counter>,
    pub(crate) connect_duration: Histograms<BackendLabels>,
    pub(crate) handshakes: Family<HandshakeLabels, Counter>,
    pub(crate) handshake_failures: Family<ListenerReasonLabels, Counter>,
    pub(crate) endpoint_healthy: Family<EndpointLabels, Gauge>,
    pub(crate) ejections: Family<EndpointLabels, Counter>,
    pub(crate) health_checks: Family<BackendResultLabels, Counter>,
    pub(crate) failovers: Family<BackendLabels, Counter>,
    pub(crate) fallbacks: Family<BackendLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    reload_ok: Gauge,
    access_log_dropped: Counter,
    pub(crate) unmatched: Family<UnmatchedLabels, Counter>,
    pub(crate) proxy_headers: Family<ProxyHeaderLabels, Counter>,
    pub(crate) postgres_requests: Family<PostgresLabels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            accepted: Family::default(),
            open: Gauge::default(),
            max: Gauge::default(),
            limited: Family::default(),
            hello_failures: Family::default(),
            hello_duration: Family::new_with_constructor(latency),
            connections: Family::default(),
            active: Family::default(),
            closed: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            duration: Family::new_with_constructor(lifetime),
            connect_attempts: Family::default(),
            connect_failures: Family::default(),
            connect_duration: Family::new_with_constructor(latency),
            handshakes: Family::default(),
            handshake_failures: Family::default(),
            endpoint_healthy: Family::default(),
            ejections: Family::default(),
            health_checks: Family::default(),
            failovers: Family::default(),
            fallbacks: Family::default(),
            reloads: Family::default(),
            reload_ok: Gauge::default(),
            access_log_dropped: Counter::default(),
            unmatched: Family::default(),
            proxy_headers: Family::default(),
            postgres_requests: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        register_build_info(r);
        r.register(
            "sniway_connections_accepted",
            "Connections accepted, per listening socket",
            m.accepted.clone(),
        );
        r.register(
            "sniway_connections_open",
            "Connections open, in every phase (the global limit counts these)",
            m.open.clone(),
        );
        r.register(
            "sniway_connections_max",
            "The global connection limit (--max-connections)",
            m.max.clone(),
        );
        r.register(
            "sniway_connections_limited",
            "Connections closed at once because a limit was reached: global, listener, client \
             (per client address) or backend",
            m.limited.clone(),
        );
        r.register(
            "sniway_hello_failures",
            "Connections closed before a route was chosen, by reason: timeout, not_tls, \
             malformed, oversized, no_sni, invalid_sni, no_route, closed (the client left \
             first), read_error, proxy_header (a malformed PROXY protocol header), \
             proxy_header_missing, proxy_untrusted, postgres_preamble",
            m.hello_failures.clone(),
        );
        r.register_with_unit(
            "sniway_hello_duration",
            "From accept to a complete ClientHello",
            Unit::Seconds,
            m.hello_duration.clone(),
        );
        r.register(
            "sniway_connections",
            "Connections routed to a backend, per listener, route and backend",
            m.connections.clone(),
        );
        r.register(
            "sniway_connections_active",
            "Routed connections open now, per listener, route and backend",
            m.active.clone(),
        );
        r.register(
            "sniway_connections_closed",
            "Routed connections ended, by reason: completed (both sides finished), client_io, \
             backend_io, idle_timeout, half_close_timeout, max_lifetime, drained, connect, \
             resolve, invalid_backend, no_endpoints, unhealthy, failover (counted on the \
             backend first chosen when another one served the connection), no_backend, \
             limit_backend, tls_handshake, tls_handshake_timeout, no_certificate, tls_config, \
             postgres_backend (the backend refused TLS in the PostgreSQL preamble)",
            m.closed.clone(),
        );
        r.register_with_unit(
            "sniway_received",
            "Bytes received from clients and passed on (for Terminate listeners, plaintext), \
             the ClientHello included",
            Unit::Bytes,
            m.received.clone(),
        );
        r.register_with_unit(
            "sniway_sent",
            "Bytes sent to clients from backends (for Terminate listeners, plaintext)",
            Unit::Bytes,
            m.sent.clone(),
        );
        r.register_with_unit(
            "sniway_connection_duration",
            "From accept to close, for routed connections, per listener",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "sniway_backend_connect_attempts",
            "Connection attempts to backend endpoints",
            m.connect_attempts.clone(),
        );
        r.register(
            "sniway_backend_connect_failures",
            "Failed connection attempts to backend endpoints, by reason: refused, timeout, \
             unreachable, resolve, error",
            m.connect_failures.clone(),
        );
        r.register_with_unit(
            "sniway_backend_connect_duration",
            "Time to connect to a backend endpoint (successful attempts)",
            Unit::Seconds,
            m.connect_duration.clone(),
        );
        r.register(
            "sniway_tls_handshakes",
            "TLS handshakes completed on Terminate listeners",
            m.handshakes.clone(),
        );
        r.register(
            "sniway_tls_handshake_failures",
            "TLS handshakes that failed on Terminate listeners, by reason: error, timeout",
            m.handshake_failures.clone(),
        );
        r.register(
            "sniway_reloads",
            "Configuration reloads, by result: success or failure (the previous table kept \
             serving)",
            m.reloads.clone(),
        );
        r.register(
            "sniway_config_last_reload_successful",
            "1 when the last reload succeeded (or none failed yet), 0 when it failed",
            m.reload_ok.clone(),
        );
        r.register(
            "sniway_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        r.register(
            "sniway_backend_endpoint_healthy",
            "1 while a backend endpoint takes new connections, 0 while it is ejected (failed \
             connects) or failed by active health checks",
            m.endpoint_healthy.clone(),
        );
        r.register(
            "sniway_backend_ejections",
            "Endpoints ejected after consecutive failed connects (passive health)",
            m.ejections.clone(),
        );
        r.register(
            "sniway_backend_health_checks",
            "Active health checks of backend endpoints, by result: success or failure",
            m.health_checks.clone(),
        );
        r.register(
            "sniway_backend_failovers",
            "Connect attempts made on another endpoint after a failed one, per backend of the \
             failed attempt",
            m.failovers.clone(),
        );
        r.register(
            "sniway_backend_fallback_connections",
            "Connections sent to a fallback backend because no primary endpoint of the route \
             was usable",
            m.fallbacks.clone(),
        );
        r.register(
            "sniway_unmatched",
            "Clients that sent no usable server name (kind no_sni) or one that no route takes \
             (no_match), by the action of the listener's policy: close, alert (TLS \
             unrecognized_name, then close) or backend (the listener's default backend)",
            m.unmatched.clone(),
        );
        r.register(
            "sniway_proxy_protocol_headers",
            "PROXY protocol headers accepted from load balancers, by version (v1, v2) and command \
             (proxy: the client's address taken; local: the peer's address kept)",
            m.proxy_headers.clone(),
        );
        r.register(
            "sniway_postgres_requests",
            "PostgreSQL requests before TLS: ssl (SSLRequest, answered S) and gssenc \
             (GSSENCRequest, answered N)",
            m.postgres_requests.clone(),
        );
        m.reload_ok.set(1);
        Metrics { registry, ..m }
    }

    /// The exposition in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }

    /// Counts a reload.
    pub fn reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.reload_ok.set(i64::from(success));
    }

    /// Brings the dropped access-log lines counter up to `total`.
    pub(crate) fn access_log_dropped(&self, total: u64) {
        let seen = self.access_log_dropped.get();
        if total > seen {
            self.access_log_dropped.inc_by(total - seen);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The handles a routed connection updates, resolved once per table for each (listener, route,
/// backend).
#[derive(Debug)]
pub(crate) struct PathMetrics {
    pub labels: PathLabels,
    /// `sniway_connections_closed_total{reason="completed"}`, the usual end, resolved ahead.
    completed: Counter,
    pub connections: Counter,
    pub active: Gauge,
    pub received: Counter,
    pub sent: Counter,
    pub duration: Histogram,
}

impl PathMetrics {
    pub fn new(m: &Metrics, labels: PathLabels) -> Arc<PathMetrics> {
        let listener = ListenerLabels { listener: labels.listener.clone() };
        let PathLabels { listener: l, route, backend } = labels.clone();
        let completed = PathReasonLabels { listener: l, route, backend, reason: "completed" };
        Arc::new(PathMetrics {
            completed: m.closed.get_or_create_owned(&completed),
            connections: m.connections.get_or_create_owned(&labels),
            active: m.active.get_or_create_owned(&labels),
            received: m.received.get_or_create_owned(&labels),
            sent: m.sent.get_or_create_owned(&labels),
            duration: m.duration.get_or_create_owned(&listener),
            labels,
        })
    }

    /// Counts bytes as they move: from the client, to the client.
    pub fn moved(&self, from_client: u64, to_client: u64) {
        self.received.inc_by(from_client);
        self.sent.inc_by(to_client);
    }

    /// Counts a routed connection's end.
    pub fn closed(&self, m: &Metrics, reason: &'static str) {
        if reason == "completed" {
            self.completed.inc();
            return;
        }
        let PathLabels { listener, route, backend } = self.labels.clone();
        m.closed.get_or_create(&PathReasonLabels { listener, route, backend, reason }).inc();
    }
}

/// A listening socket's handles.
#[derive(Debug)]
pub(crate) struct SocketMetrics {
    pub address: String,
    pub accepted: Counter,
    pub hello_duration: Histogram,
}

impl SocketMetrics {
    pub fn new(m: &Metrics, address: String) -> SocketMetrics {
        let labels = SocketLabels { address: address.clone() };
        SocketMetrics {
            accepted: m.accepted.get_or_create_owned(&labels),
            hello_duration: m.hello_duration.get_or_create_owned(&labels),
            address,
        }
    }
}

/// A backend's handles.
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    pub attempts: Counter,
    pub connect_duration: Histogram,
}

impl BackendMetrics {
    pub fn new(m: &Metrics, backend: &str) -> BackendMetrics {
        let labels = BackendLabels { backend: backend.to_string() };
        BackendMetrics {
            attempts: m.connect_attempts.get_or_create_owned(&labels),
            connect_duration: m.connect_duration.get_or_create_owned(&labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_metric_is_listed_with_its_exposed_name() {
        let m = Metrics::new();
        // Give every family one series so that its samples appear.
        let path =
            PathLabels { listener: "ns/gw/l".into(), route: "ns/r#0".into(), backend: "b".into() };
        let p = PathMetrics::new(&m, path);
        p.connections.inc();
        p.closed(&m, "completed");
        let s = SocketMetrics::new(&m, "127.0.0.1:443".into());
        s.accepted.inc();
        m.limited
            .get_or_create(&LimitLabels {
                address: "a".into(),
                listener: String::new(),
                limit: "global",
            })
            .inc();
        m.hello_failures
            .get_or_create(&SocketReasonLabels { address: "a".into(), reason: "timeout" })
            .inc();
        let b = BackendMetrics::new(&m, "b");
        b.attempts.inc();
        m.connect_failures
            .get_or_create(&BackendReasonLabels { backend: "b".into(), reason: "refused" })
            .inc();
        m.handshakes
            .get_or_create(&HandshakeLabels { listener: "l".into(), resumed: "false" })
            .inc();
        m.handshake_failures
            .get_or_create(&ListenerReasonLabels { listener: "l".into(), reason: "error" })
            .inc();
        m.reload(true);
        let e = EndpointLabels { backend: "b".into(), endpoint: "127.0.0.1:1".into() };
        m.endpoint_healthy.get_or_create(&e).set(1);
        m.ejections.get_or_create(&e).inc();
        m.health_checks
            .get_or_create(&BackendResultLabels { backend: "b".into(), result: "success" })
            .inc();
        m.failovers.get_or_create(&BackendLabels { backend: "b".into() }).inc();
        m.fallbacks.get_or_create(&BackendLabels { backend: "b".into() }).inc();
        m.unmatched
            .get_or_create(&UnmatchedLabels {
                address: "a".into(),
                listener: String::new(),
                kind: "no_sni",
                action: "close",
            })
            .inc();
        m.proxy_headers
            .get_or_create(&ProxyHeaderLabels {
                address: "a".into(),
                version: "v2",
                command: "proxy",
            })
            .inc();
        m.postgres_requests
            .get_or_create(&PostgresLabels { address: "a".into(), request: "ssl" })
            .inc();
        let text = m.encode();
        for (name, kind) in NAMES {
            let family = name.trim_end_matches("_total").trim_end_matches("_info");
            assert!(text.contains(&format!("# TYPE {family} {kind}")), "{name} ({kind}):\n{text}");
        }
        let declared = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(declared, NAMES.len(), "{text}");
        assert!(
            text.contains(
                "sniway_connections_total{listener=\"ns/gw/l\",route=\"ns/r#0\",backend=\"b\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn every_controller_metric_is_exposed_under_its_declared_name() {
        let m = ControllerMetrics::new();
        m.compiled();
        m.status_writes(3, 1);
        m.provision_applies(1, 0);
        let text = m.encode();
        for (name, kind) in CONTROLLER_NAMES {
            let family = name.trim_end_matches("_total").trim_end_matches("_info");
            assert!(text.contains(&format!("# TYPE {family} {kind}")), "{name} ({kind}):\n{text}");
        }
        let declared = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(declared, CONTROLLER_NAMES.len(), "{text}");
        assert!(text.contains("sniway_controller_compiles_total 1"), "{text}");
        assert!(
            text.contains("sniway_controller_status_writes_total{result=\"success\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sniway_controller_status_writes_total{result=\"failure\"} 1"),
            "{text}"
        );
    }
}
