//! Policy kinds of group `sniway.io` (version `v1alpha1`): the knobs the Gateway API has no
//! field for, attached the Gateway API way (GEP-713, direct policy attachment).
//!
//! The Rust types here are the source of the CRD YAML in `deploy/crds/` (see [`crate::crds`]);
//! a test fails when the file no longer matches them. The loader reads the same types from
//! manifests, and `compile` resolves them onto listeners (see `policy_attach.rs`).
//!
//! Implemented: `ListenerPolicy` (`targetRefs`, `timeouts`, `keepalive`, `limits`,
//! `proxyProtocol`, `noSni`, `noMatch`, `relay`) and `BackendPolicy` (`targetRefs`, `fallback`,
//! `connectTimeout`, `failover`, `loadBalancer`, `healthCheck`, `proxyProtocol`,
//! `maxConnections`, `relay`). `docs/policies.md` is the user's reference.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::status::Condition;

/// The policy API group.
pub const POLICY_GROUP: &str = "sniway.io";
/// The policy API version.
pub const POLICY_VERSION: &str = "v1alpha1";
/// The pattern of a Gateway API `Duration` (GEP-2257).
pub const DURATION_PATTERN: &str = "^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A Gateway API duration string (GEP-2257): one to four `<number><unit>` parts, each number of
/// at most 5 digits, units `h`, `m`, `s` or `ms` (`500ms`, `10s`, `1h30m`). Kept as the parsed
/// [`Duration`]; written back in the largest whole unit (`90s` stays `90s`, `60s` becomes `1m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GatewayDuration(pub Duration);

impl GatewayDuration {
    /// Parses a Gateway API duration string; `None` when it does not match
    /// [`DURATION_PATTERN`].
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let (mut i, mut parts, mut total) = (0, 0, Duration::ZERO);
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 5 {
                return None;
            }
            let n: u64 = s[start..i].parse().ok()?;
            let unit = match (b.get(i), b.get(i + 1)) {
                (Some(b'm'), Some(b's')) => {
                    i += 2;
                    Duration::from_millis(n)
                }
                (Some(b'h'), _) => {
                    i += 1;
                    Duration::from_secs(n * 3600)
                }
                (Some(b'm'), _) => {
                    i += 1;
                    Duration::from_secs(n * 60)
                }
                (Some(b's'), _) => {
                    i += 1;
                    Duration::from_secs(n)
                }
                _ => return None,
            };
            total += unit;
            parts += 1;
        }
        (1..=4).contains(&parts).then_some(GatewayDuration(total))
    }
}

impl fmt::Display for GatewayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sniway_model::settings::format_duration(self.0))
    }
}

impl Serialize for GatewayDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GatewayDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GatewayDuration::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a Gateway API duration (such as 500ms, 10s, 1h or 1h30m: up to 4 \
                 parts of at most 5 digits and a unit h, m, s or ms)"
            ))
        })
    }
}

impl JsonSchema for GatewayDuration {
    fn schema_name() -> Cow<'static, str> {
        "GatewayDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A Gateway API duration (GEP-2257), e.g. 500ms, 10s, 1h, 1h30m.",
        })
    }
}

/// `ListenerPolicy.spec`: what a listener does with its clients. Every setting is optional; an
/// unset field takes the data plane's default (a flag of `sniway run`).
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "sniway.io",
    version = "v1alpha1",
    kind = "ListenerPolicy",
    plural = "listenerpolicies",
    namespaced,
    status = "PolicyStatus",
    category = "sniway",
    doc = "What Gateway listeners do with their clients: timeouts, TCP keep-alive, connection limits, PROXY protocol, clients without or with an unmatched SNI, relay (GEP-713 direct policy attachment)."
)]
#[serde(rename_all = "camelCase")]
pub struct ListenerPolicySpec {
    /// The Gateways (optionally one listener each, by `sectionName`) in the policy's namespace
    /// that this policy applies to; 1 to 16 entries.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Timeouts of a connection on the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ListenerTimeouts>,
    /// TCP keep-alive on client connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Keepalive>,
    /// Connection limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Accepting a PROXY protocol header (v1 or v2) from a load balancer in front. Per port:
    /// a socket takes the strictest mode of its listeners and the union of their CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ListenerProxyProtocol>,
    /// What a ClientHello without `server_name` (or with an IP address) gets; default Close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_sni: Option<UnmatchedClients>,
    /// What a server name no route takes gets; default Close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_match: Option<UnmatchedClients>,
    /// How routes on the listener relay by default (`Kernel` is accepted and carried, but
    /// relayed as `Splice` until the in-kernel relay exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayMode>,
}

/// `spec.proxyProtocol` of a ListenerPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!has(self.mode) || self.mode == 'Off' || (has(self.trustedCIDRs) && size(self.trustedCIDRs) > 0)", "message": "trustedCIDRs is required with mode Optional or Required"}]))]
pub struct ListenerProxyProtocol {
    /// `Off` (default), `Optional` (a header from a trusted peer is read when present) or
    /// `Required` (every connection starts with a header from a trusted peer).
    #[serde(default)]
    pub mode: ProxyProtocolMode,
    /// Peers whose header is believed (`10.0.0.0/8`, `fd00::/8`, a bare address). Required
    /// (non-empty) with `Optional` and `Required`; write `0.0.0.0/0` and `::/0` to trust
    /// every peer.
    #[serde(default, rename = "trustedCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 49)))]
    pub trusted_cidrs: Vec<String>,
}

/// `proxyProtocol.mode` of a ListenerPolicy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ProxyProtocolMode {
    /// No header is read.
    #[default]
    Off,
    /// A header from a trusted peer is read when present.
    Optional,
    /// Every connection starts with a header from a trusted peer, or is closed.
    Required,
}

/// `spec.noSni` and `spec.noMatch` of a ListenerPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!has(self.action) || self.action != 'Backend' || has(self.backendRef)", "message": "backendRef is required with action Backend"}]))]
pub struct UnmatchedClients {
    /// `Close` (default), `Alert` (a fatal TLS `unrecognized_name` alert, then close) or
    /// `Backend` (relay to `backendRef`).
    #[serde(default)]
    pub action: UnmatchedAction,
    /// With `action: Backend`: where to relay, resolved as a TLSRoute backendRef (a Service or
    /// a ServiceImport; another namespace needs a ReferenceGrant from `ListenerPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<PolicyBackendReference>,
}

/// `noSni.action`, `noMatch.action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum UnmatchedAction {
    /// Close without writing.
    #[default]
    Close,
    /// A fatal TLS `unrecognized_name` alert (RFC 6066), then close.
    Alert,
    /// Relay to `backendRef`.
    Backend,
}

/// A backend reference of a policy: the Gateway API `BackendObjectReference`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBackendReference {
    /// API group; default `""` (core), or `multicluster.x-k8s.io` for a ServiceImport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        pattern(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub group: Option<String>,
    /// Kind; default `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"))]
    pub kind: Option<String>,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; default the policy's. Another namespace needs a ReferenceGrant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// The Service (or ServiceImport) port; required for a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// `spec.relay`: how connections' bytes are moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum RelayMode {
    /// `splice(2)` through a pipe.
    Splice,
    /// Copies through a user-space buffer.
    Copy,
    /// An in-kernel relay (accepted and carried; relayed as `Splice` until it exists).
    Kernel,
}

/// `BackendPolicy.spec`: how the gateway treats a backend (a Service or a ServiceImport).
/// Every setting is optional; an unset field takes the data plane's default.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "sniway.io",
    version = "v1alpha1",
    kind = "BackendPolicy",
    plural = "backendpolicies",
    namespaced,
    status = "PolicyStatus",
    category = "sniway",
    doc = "How the gateway treats a backend Service or ServiceImport: fallback, connect timeout and failover, balancing, health checks, PROXY protocol, connection limit, relay (GEP-713 direct policy attachment)."
)]
#[serde(rename_all = "camelCase")]
pub struct BackendPolicySpec {
    /// The Services (group `""`) or ServiceImports (group `multicluster.x-k8s.io`) in the
    /// policy's namespace that this policy applies to; 1 to 16 entries.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Receives connections only while every primary (non-fallback) endpoint of the route is
    /// unhealthy; use it with `weight: 0` in the route. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
    /// Deadline of each connect attempt; default `sniway run --connect-timeout` (5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<GatewayDuration>,
    /// Connect failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Endpoint selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
    /// Active and passive health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// The PROXY protocol header sent to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<BackendProxyProtocol>,
    /// Connections open at once to this backend; 0: unlimited (default
    /// `--max-backend-connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// How connections to this backend relay, over the listener's default (`Kernel` is
    /// accepted and carried, but relayed as `Splice` until the in-kernel relay exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayMode>,
}

/// `spec.failover`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Endpoints tried per connection (1 to 10; default 3), each within `connectTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: Option<u32>,
}

/// `spec.loadBalancer`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// `RoundRobin` (default), `LeastConnections` or `PowerOfTwoChoices`.
    #[serde(rename = "type")]
    pub type_: LoadBalancerType,
}

/// `loadBalancer.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum LoadBalancerType {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest open connections.
    LeastConnections,
    /// Of two endpoints chosen at random, the one with fewer open connections.
    PowerOfTwoChoices,
}

/// `spec.healthCheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Active checks of every endpoint; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveCheck>,
    /// Ejection after failed connects; on by default (3 failures, 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveCheck>,
    /// When every endpoint is unhealthy: `FailOpen` (default: use them anyway) or `Refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_all_unhealthy: Option<WhenAllUnhealthyMode>,
}

/// `healthCheck.active`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.type == 'TLS' || !has(self.tls)", "message": "tls is only allowed with type TLS"}]))]
pub struct ActiveCheck {
    /// `TCP` (a connect) or `TLS` (a ClientHello, expecting a ServerHello).
    #[serde(rename = "type")]
    pub type_: ProbeType,
    /// Time between checks of one endpoint; default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GatewayDuration>,
    /// Deadline of one check; default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GatewayDuration>,
    /// Consecutive passes that make an unhealthy endpoint healthy; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that make a healthy endpoint unhealthy; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: Option<u32>,
    /// With `type: TLS`: the ClientHello sent and what is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsProbe>,
}

/// `healthCheck.active.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ProbeType {
    /// A TCP connect.
    #[serde(rename = "TCP")]
    Tcp,
    /// A TLS ClientHello, expecting a ServerHello (with `verify`: a full handshake).
    #[serde(rename = "TLS")]
    Tls,
}

/// `healthCheck.active.tls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!has(self.verify) || !self.verify || (has(self.sni) && has(self.caCertificateRefs) && size(self.caCertificateRefs) > 0)", "message": "verify requires sni and caCertificateRefs"}]))]
pub struct TlsProbe {
    /// The server name sent (and verified with `verify`); absent: none is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub sni: Option<String>,
    /// Complete the handshake and verify the backend's certificate against
    /// `caCertificateRefs` (no system roots); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// ConfigMaps in the policy's namespace whose `ca.crt` holds trusted roots (PEM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub ca_certificate_refs: Vec<CaCertificateRef>,
}

/// A ConfigMap holding CA certificates under `ca.crt`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificateRef {
    /// API group; `""` (core), the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `ConfigMap`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the ConfigMap, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// `healthCheck.passive`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveCheck {
    /// Consecutive failed connects that eject an endpoint; 0: never; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// First ejection time, doubled on each repeated ejection up to 5m; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection_time: Option<GatewayDuration>,
}

/// `healthCheck.whenAllUnhealthy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum WhenAllUnhealthyMode {
    /// Use every endpoint as if healthy.
    FailOpen,
    /// Refuse the backend's share of connections.
    Refuse,
}

/// `spec.proxyProtocol` of a BackendPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendProxyProtocol {
    /// `Off` (default), `V1` (text) or `V2` (binary, with the authority and ALPN TLVs).
    pub version: ProxyProtocolVersion,
}

/// `proxyProtocol.version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ProxyProtocolVersion {
    /// No header.
    Off,
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// The key of a CA ConfigMap that holds the PEM roots.
pub const CA_CERT_KEY: &str = "ca.crt";
/// The ServiceImport group (Multi-Cluster Services API, KEP-1645).
pub const MULTICLUSTER_GROUP: &str = "multicluster.x-k8s.io";

/// `targetRefs[]`: Gateway API `LocalPolicyTargetReferenceWithSectionName`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group of the target (`gateway.networking.k8s.io`).
    #[schemars(
        length(max = 253),
        pattern(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub group: String,
    /// Kind of the target (`Gateway`).
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"))]
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A listener name of the target Gateway; absent: every listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub section_name: Option<String>,
}

/// `spec.timeouts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTimeouts {
    /// The whole ClientHello (and PROXY header), from accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<GatewayDuration>,
    /// The TLS handshake of a Terminate listener, after the ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<GatewayDuration>,
    /// No byte either way for this long ends the connection; `0s`: no idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<GatewayDuration>,
    /// One side finished sending, the other silent this long; `0s`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_close: Option<GatewayDuration>,
    /// Longest life of a connection from accept; `0s`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<GatewayDuration>,
}

/// `spec.keepalive`: TCP keep-alive on client connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keepalive {
    /// Idle time before the first probe; `0s` turns keep-alive off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<GatewayDuration>,
    /// Time between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GatewayDuration>,
    /// Unanswered probes before the connection is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// `spec.limits`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Connections open at once on the listener; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Connections open at once on the listener from one client address; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_client: Option<u32>,
}

/// Status of a policy, as for Gateway API policies (`PolicyStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per target (`targetRefs[]`), keyed by ancestorRef and controllerName.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// `status.ancestors[]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The Gateway (and listener, with `sectionName`) this entry is about.
    pub ancestor_ref: AncestorRef,
    /// `sniway.io/gateway-controller`.
    pub controller_name: String,
    /// `Accepted`.
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
}

/// A Gateway API `ParentReference` naming a policy's ancestor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace of the ancestor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the ancestor.
    pub name: String,
    /// Listener name, when the target named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// The CRD manifests of the policy kinds: `(file name, YAML)`, as `deploy/crds/` holds them,
/// sorted by file name.
pub fn crds() -> Vec<(String, String)> {
    use kube::CustomResourceExt;
    let mut out: Vec<(String, String)> = [BackendPolicy::crd(), ListenerPolicy::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            // Serializing a CustomResourceDefinition (plain data) cannot fail.
            let yaml = serde_yaml_ng::to_string(&crd).unwrap_or_default();
            (name, quote_yaml11_booleans(&yaml))
        })
        .collect();
    out.sort();
    out
}

/// Words a YAML 1.1 parser reads as booleans. kubectl reads manifests as YAML 1.1, so an enum
/// value `Off` written bare would reach the API server as `false`.
const YAML11_BOOLEANS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Quotes every bare scalar value (`key: Off`, `- Off`) that YAML 1.1 would read as a boolean;
/// the YAML stays the same document for a YAML 1.2 reader.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let split = line.rfind(": ").map(|i| i + 2).or_else(|| {
            let t = line.trim_start();
            t.starts_with("- ").then(|| line.len() - t.len() + 2)
        });
        match split {
            Some(i) if YAML11_BOOLEANS.contains(&&line[i..]) => {
                out.push_str(&line[..i]);
                out.push('\'');
                out.push_str(&line[i..]);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crd_value_reads_as_a_yaml_1_1_boolean() {
        for (name, yaml) in crds() {
            for line in yaml.lines() {
                let value = line.rsplit(": ").next().unwrap_or(line).trim_start_matches([' ', '-']);
                assert!(!YAML11_BOOLEANS.contains(&value.trim()), "{name}: {line}");
            }
            // Still the same document.
            let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
            assert!(v["spec"]["versions"].is_array(), "{name}");
        }
        assert_eq!(
            quote_yaml11_booleans("  - Off\n  default: Off\n  a: Offline\n"),
            "  - 'Off'\n  default: 'Off'\n  a: Offline\n"
        );
    }

    fn d(s: &str) -> Option<Duration> {
        GatewayDuration::parse(s).map(|d| d.0)
    }

    #[test]
    fn gateway_api_durations_parse_into_their_sum() {
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("10s"), Some(Duration::from_secs(10)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1h1m1s1ms"), Some(Duration::from_millis(3_661_001)));
        assert_eq!(d("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn strings_outside_the_gateway_api_pattern_are_not_durations() {
        for bad in ["", "10", "1.5s", "-1s", "123456s", "1d", "1h1m1s1ms1s", " 1s", "1S", "s"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_are_written_in_the_largest_whole_unit() {
        let v = serde_json::to_value(GatewayDuration::parse("60s").unwrap()).unwrap();
        assert_eq!(v, "1m");
    }
}
