//! The snapshot `compile` reads: every object of the kinds sniway cares about, validated, with
//! namespaces filled in. Files fill it today ([`crate::load`]); a Kubernetes watcher will fill
//! the same structure later.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{
    Endpoint, EndpointPort, GatewayClassSpec, GatewaySpec, HttpRouteSpec, ListenerSetSpec,
    ReferenceGrantSpec, ServiceImportSpec, ServiceSpec, TlsRouteSpec,
};
use crate::policy::{BackendPolicySpec, ListenerPolicySpec};

/// The metadata compile uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`; empty for cluster-scoped kinds.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `metadata.generation` (1 when absent, as on create).
    pub generation: i64,
    /// RFC 3339 creation time, when given. Absent sorts before any timestamp: every object in
    /// a file set counts as created at once, and ties fall to `namespace/name`.
    pub creation_timestamp: Option<String>,
}

impl Meta {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One object of kind `S`.
#[derive(Clone, Debug)]
pub struct Object<S> {
    /// `apiVersion` as written.
    pub api_version: String,
    /// Metadata.
    pub meta: Meta,
    /// The kind's content.
    pub spec: S,
    /// The object as given, with `metadata.namespace` filled in and `status` removed; echoed by
    /// `Compiled::status_list`. `Null` for kinds never echoed (and always for Secrets).
    pub raw: Value,
    /// Where it came from (`Source::name`), for messages.
    pub source: String,
}

/// TLSRoute API versions, each with its own limits (see the digest's version table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteVersion {
    /// `gateway.networking.k8s.io/v1`: 1..1024 hostnames, exactly 1 rule.
    V1,
    /// `v1alpha3`: 1..16 hostnames, exactly 1 rule.
    V1alpha3,
    /// `v1alpha2`: 0..16 hostnames (none = every SNI the listener allows), 1..16 rules.
    V1alpha2,
}

impl RouteVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteVersion::V1 => "v1",
            RouteVersion::V1alpha3 => "v1alpha3",
            RouteVersion::V1alpha2 => "v1alpha2",
        }
    }
}

/// A TLSRoute of any served version.
#[derive(Clone, Debug)]
pub struct TlsRoute {
    /// Which version it was written in.
    pub version: RouteVersion,
    /// The spec (`rules[].matches` only honoured for v1alpha2).
    pub spec: TlsRouteSpec,
}

/// EndpointSlice content.
#[derive(Clone, Debug)]
pub struct EndpointSlice {
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Ports.
    pub ports: Vec<EndpointPort>,
}

/// Secret content, kept for TLS termination. `Debug` never shows the data.
#[derive(Clone)]
pub struct Secret {
    /// Secret type.
    pub type_: Option<String>,
    /// Values, base64 already decoded where `data` was used.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Every object compile reads, in input order.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// GatewayClasses (cluster-scoped).
    pub gateway_classes: Vec<Object<GatewayClassSpec>>,
    /// Gateways (v1, v1beta1).
    pub gateways: Vec<Object<GatewaySpec>>,
    /// TLSRoutes (v1, v1alpha3, v1alpha2).
    pub tls_routes: Vec<Object<TlsRoute>>,
    /// ListenerSets (v1).
    pub listener_sets: Vec<Object<ListenerSetSpec>>,
    /// HTTPRoutes (v1, v1beta1): counted in `attachedRoutes`, never served.
    pub http_routes: Vec<Object<HttpRouteSpec>>,
    /// ReferenceGrants (v1, v1beta1).
    pub reference_grants: Vec<Object<ReferenceGrantSpec>>,
    /// Services.
    pub services: Vec<Object<ServiceSpec>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Object<EndpointSlice>>,
    /// Namespaces (their labels feed `allowedRoutes` selectors).
    pub namespaces: Vec<Object<()>>,
    /// Secrets (for TLS termination, a later feature).
    pub secrets: Vec<Object<Secret>>,
    /// ListenerPolicies (`sniway.io/v1alpha1`).
    pub listener_policies: Vec<Object<ListenerPolicySpec>>,
    /// BackendPolicies (`sniway.io/v1alpha1`).
    pub backend_policies: Vec<Object<BackendPolicySpec>>,
    /// ServiceImports (`multicluster.x-k8s.io/v1alpha1`).
    pub service_imports: Vec<Object<ServiceImportSpec>>,
    /// ConfigMaps: their `data` (CA certificates of TLS health checks).
    pub config_maps: Vec<Object<BTreeMap<String, String>>>,
}
