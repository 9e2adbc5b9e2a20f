//! Every kind the controller reads or writes, in one home: the watchers are built from this
//! table, and `deploy/`'s RBAC is checked against it.

/// One API kind and what the controller does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Version served by the API server and read by sniway.
    pub version: &'static str,
    /// Kind name.
    pub kind: &'static str,
    /// Resource name in URLs and RBAC rules.
    pub plural: &'static str,
    /// Namespaced (else cluster-scoped).
    pub namespaced: bool,
    /// Verbs the controller needs on the resource itself.
    pub verbs: &'static [&'static str],
    /// Verbs the controller needs on the `status` subresource (empty: none).
    pub status_verbs: &'static [&'static str],
}

impl Kind {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const STATUS: &[&str] = &["get", "update", "patch"];
const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
/// Server-side apply of one object the controller names (no list, watch or delete).
const APPLY: &[&str] = &["get", "create", "update", "patch"];

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    status_verbs: &'static [&'static str],
) -> Kind {
    Kind { group, version, kind, plural, namespaced, verbs, status_verbs }
}

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// `GatewayClass` (cluster-scoped).
pub const GATEWAY_CLASS: Kind =
    kind(GATEWAY_GROUP, "v1", "GatewayClass", "gatewayclasses", false, READ, STATUS);
/// `Gateway`.
pub const GATEWAY: Kind = kind(GATEWAY_GROUP, "v1", "Gateway", "gateways", true, READ, STATUS);
/// `ListenerSet` (v1, Standard since Gateway API v1.5).
pub const LISTENER_SET: Kind =
    kind(GATEWAY_GROUP, "v1", "ListenerSet", "listenersets", true, READ, STATUS);
/// `TLSRoute`, read as v1: the API server converts objects created as v1alpha2 or v1alpha3.
pub const TLS_ROUTE: Kind = kind(GATEWAY_GROUP, "v1", "TLSRoute", "tlsroutes", true, READ, STATUS);
/// `HTTPRoute`: never served, only counted in the `attachedRoutes` of HTTP and HTTPS listeners.
pub const HTTP_ROUTE: Kind = kind(GATEWAY_GROUP, "v1", "HTTPRoute", "httproutes", true, READ, &[]);
/// `ReferenceGrant`.
pub const REFERENCE_GRANT: Kind =
    kind(GATEWAY_GROUP, "v1", "ReferenceGrant", "referencegrants", true, READ, &[]);
/// `Service`.
pub const SERVICE: Kind = kind("", "v1", "Service", "services", true, WRITE, &[]);
/// `EndpointSlice`.
pub const ENDPOINT_SLICE: Kind =
    kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, READ, &[]);
/// `Namespace` (cluster-scoped; labels feed `allowedRoutes` selectors).
pub const NAMESPACE: Kind = kind("", "v1", "Namespace", "namespaces", false, READ, &[]);
/// `Secret`: only those that listeners reference are watched, each by name.
pub const SECRET: Kind = kind("", "v1", "Secret", "secrets", true, READ, &[]);
/// `ListenerPolicy` (`sniway.io/v1alpha1`).
pub const LISTENER_POLICY: Kind =
    kind("sniway.io", "v1alpha1", "ListenerPolicy", "listenerpolicies", true, READ, STATUS);
/// `BackendPolicy` (`sniway.io/v1alpha1`).
pub const BACKEND_POLICY: Kind =
    kind("sniway.io", "v1alpha1", "BackendPolicy", "backendpolicies", true, READ, STATUS);
/// `ServiceImport` (`multicluster.x-k8s.io/v1alpha1`, Multi-Cluster Services API): backends of
/// routes; a cluster without the CRD has none.
pub const SERVICE_IMPORT: Kind =
    kind("multicluster.x-k8s.io", "v1alpha1", "ServiceImport", "serviceimports", true, READ, &[]);
/// `Lease`, for leader election.
pub const LEASE: Kind = kind("coordination.k8s.io", "v1", "Lease", "leases", true, WRITE, &[]);
/// `Deployment` provisioned per Gateway.
pub const DEPLOYMENT: Kind = kind("apps", "v1", "Deployment", "deployments", true, WRITE, &[]);
/// `ServiceAccount` provisioned per Gateway.
pub const SERVICE_ACCOUNT: Kind =
    kind("", "v1", "ServiceAccount", "serviceaccounts", true, WRITE, &[]);
/// `PodDisruptionBudget` provisioned per Gateway.
pub const POD_DISRUPTION_BUDGET: Kind =
    kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, WRITE, &[]);
/// `ConfigMap`: read when a Gateway's `spec.infrastructure.parametersRef` names one, and
/// watched by name when a BackendPolicy's TLS health check names one in `caCertificateRefs`.
pub const CONFIG_MAP: Kind = kind("", "v1", "ConfigMap", "configmaps", true, READ, &[]);

/// `ClusterRoleBinding`: the one binding the data planes' ServiceAccounts to their read-only
/// ClusterRole (`provision::DATAPLANE_BINDING`); deploy/ restricts the verbs to that name.
pub const CLUSTER_ROLE_BINDING: Kind = kind(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    false,
    APPLY,
    &[],
);

/// The kinds whose changes feed a compile.
pub const WATCHED: &[Kind] = &[
    GATEWAY_CLASS,
    GATEWAY,
    LISTENER_SET,
    TLS_ROUTE,
    HTTP_ROUTE,
    REFERENCE_GRANT,
    SERVICE,
    ENDPOINT_SLICE,
    NAMESPACE,
    LISTENER_POLICY,
    BACKEND_POLICY,
    SERVICE_IMPORT,
];

/// Every kind the controller touches, for RBAC.
pub const ALL: &[Kind] = &[
    GATEWAY_CLASS,
    GATEWAY,
    LISTENER_SET,
    TLS_ROUTE,
    HTTP_ROUTE,
    REFERENCE_GRANT,
    SERVICE,
    ENDPOINT_SLICE,
    NAMESPACE,
    SECRET,
    LISTENER_POLICY,
    BACKEND_POLICY,
    SERVICE_IMPORT,
    LEASE,
    DEPLOYMENT,
    SERVICE_ACCOUNT,
    POD_DISRUPTION_BUDGET,
    CONFIG_MAP,
    CLUSTER_ROLE_BINDING,
];
