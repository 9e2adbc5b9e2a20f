//! The Kubernetes and Gateway API object shapes sniway reads, as plain serde structs.
//!
//! Why not `k8s-openapi` and the `gateway-api` crate: together they pull in kube, schemars and
//! thousands of generated types (minutes of build time on a small machine), the `gateway-api`
//! crate is generated from Gateway API v1.5.1 and has no v1alpha2/v1alpha3 TLSRoute or v1beta1
//! ReferenceGrant in its standard module, and neither keeps the field paths we need for
//! `serde_ignored` warnings. These structs cover exactly the fields the Gateway API v1.6.1 CRDs
//! (and core/v1, discovery/v1) define for the kinds we read. Fields we accept but never use are
//! typed `Option<Value>` so that they are not reported as unknown.
//!
//! Integers are read as `i64` so that out-of-range values produce a validation error with a
//! field path (see `validate.rs`) instead of an opaque overflow error.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `metadata`, with the fields a manifest or `kubectl get -o yaml` output may carry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`; required in files (no `generateName` support).
    pub name: Option<String>,
    /// `metadata.namespace`; filled from `LoadOptions::default_namespace` when absent.
    pub namespace: Option<String>,
    /// Labels (used for Namespace selectors and EndpointSlice ownership).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (kept, unused).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.generation`; 1 when absent, as the API server sets it on create.
    pub generation: Option<i64>,
    /// RFC 3339 creation time, used for precedence ties; absent in most files.
    pub creation_timestamp: Option<String>,
    /// Accepted and ignored.
    pub generate_name: Option<Value>,
    /// Accepted and ignored.
    pub uid: Option<Value>,
    /// Accepted and ignored.
    pub resource_version: Option<Value>,
    /// Accepted and ignored.
    pub self_link: Option<Value>,
    /// Accepted and ignored.
    pub deletion_timestamp: Option<Value>,
    /// Accepted and ignored.
    pub deletion_grace_period_seconds: Option<Value>,
    /// Accepted and ignored.
    pub owner_references: Option<Value>,
    /// Accepted and ignored.
    pub finalizers: Option<Value>,
    /// Accepted and ignored.
    pub managed_fields: Option<Value>,
}

/// One object as found in a document: `apiVersion`, `kind`, `metadata`, `spec`. `status` is
/// accepted and ignored: it is ours to compute. (No `#[serde(flatten)]`: it would hide unknown
/// fields from `serde_ignored` and paths from `serde_path_to_error`.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document<S> {
    /// `group/version` or `version`.
    pub api_version: String,
    /// Kind name.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object's spec (required for Gateway API kinds; checked by the loader).
    pub spec: Option<S>,
    /// Ignored.
    pub status: Option<Value>,
}

/// An EndpointSlice: its fields sit at the top level.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceDocument {
    /// `discovery.k8s.io/v1`.
    pub api_version: String,
    /// `EndpointSlice`.
    pub kind: String,
    /// Object metadata; the `kubernetes.io/service-name` label names the Service.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Endpoints. The API server writes `endpoints: null` for a Service without ready pods;
    /// that reads as an empty list.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Ports; names match Service port names. `null` (allowed by the API) reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<EndpointPort>,
}

/// A list the API server may serialize as `null` (a nil Go slice): `null` reads as empty.
fn null_as_empty<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(de)?.unwrap_or_default())
}

/// A Secret: its fields sit at the top level. Its data is never printed (see `Debug`).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDocument {
    /// `v1`.
    pub api_version: String,
    /// `Secret`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Secret type, e.g. `kubernetes.io/tls`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Base64 values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Plain values (merged over `data` by the API server).
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
    /// Accepted and ignored.
    pub immutable: Option<bool>,
}

impl std::fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.data.keys().chain(self.string_data.keys()).collect();
        f.debug_struct("SecretDocument")
            .field("name", &self.metadata.name)
            .field("type", &self.type_)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

// === Gateway API ===

/// `GatewayClass.spec`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that manages Gateways of this class.
    pub controller_name: String,
    /// Accepted and ignored.
    pub parameters_ref: Option<Value>,
    /// Accepted and ignored.
    pub description: Option<String>,
}

/// `Gateway.spec`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass name.
    pub gateway_class_name: String,
    /// 1..64 listeners.
    pub listeners: Vec<Listener>,
    /// Requested addresses (max 16).
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    /// Infrastructure labels, annotations and parameters.
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Which ListenerSets may attach listeners (default: none).
    pub allowed_listeners: Option<AllowedListeners>,
    /// Accepted and ignored (Gateway-level TLS, Extended).
    pub tls: Option<Value>,
    /// Accepted and ignored (older name of `tls.backend`).
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<Value>,
}

/// `Gateway.spec.allowedListeners`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    /// Namespaces ListenerSets may come from.
    pub namespaces: Option<ListenerNamespaces>,
}

/// `allowedListeners.namespaces`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerNamespaces {
    /// `None` (default), `Same`, `Selector` or `All`.
    pub from: Option<String>,
    /// Namespace label selector for `Selector`.
    pub selector: Option<LabelSelector>,
}

/// `ListenerSet.spec` (`gateway.networking.k8s.io/v1`, GEP-1713).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway the listeners join.
    pub parent_ref: ParentGatewayReference,
    /// 1..64 listeners, as Gateway listeners (port required).
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `ListenerSet.spec.parentRef`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentGatewayReference {
    /// Default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Default `Gateway`.
    pub kind: Option<String>,
    /// Gateway name.
    pub name: String,
    /// Default: the ListenerSet's namespace.
    pub namespace: Option<String>,
}

/// `Gateway.spec.infrastructure`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels for resources created for the Gateway (max 8); a controller propagates them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations for resources created for the Gateway (max 8).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Implementation-specific parameters; sniway defines none (`Accepted=False/InvalidParameters`).
    pub parameters_ref: Option<LocalParametersReference>,
}

/// `spec.infrastructure.parametersRef`.
#[derive(Clone, Debug, Deserialize)]
pub struct LocalParametersReference {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name, in the Gateway's namespace.
    pub name: String,
}

/// `Gateway.spec.addresses[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (default), `Hostname`, `NamedAddress` or a domain-prefixed type.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The address.
    pub value: Option<String>,
}

/// `Gateway.spec.listeners[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway.
    pub name: String,
    /// Optional hostname (absent = any).
    pub hostname: Option<String>,
    /// 1..65535.
    pub port: i64,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`, a domain-prefixed protocol, or any other token the
    /// CRD pattern admits (compile reports it as unsupported on the listener).
    pub protocol: String,
    /// TLS settings.
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `listeners[].tls`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (the CRD default) or `Passthrough`.
    pub mode: Option<String>,
    /// Certificates for Terminate (max 64); ignored in Passthrough.
    #[serde(default)]
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Implementation-specific options (max 16).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Accepted and ignored (older experimental field).
    pub frontend_validation: Option<Value>,
}

/// A reference to a Secret (or another certificate holder).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// Default "".
    pub group: Option<String>,
    /// Default `Secret`.
    pub kind: Option<String>,
    /// Object name.
    pub name: String,
    /// Default: the Gateway's namespace.
    pub namespace: Option<String>,
}

/// `listeners[].allowedRoutes`; defaults to `{namespaces: {from: Same}}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespace filter.
    pub namespaces: Option<RouteNamespaces>,
    /// Kind filter (max 8); empty = the protocol's kinds.
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

/// `allowedRoutes.namespaces`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Selector` or `Same` (default).
    pub from: Option<String>,
    /// Namespace label selector for `Selector`.
    pub selector: Option<LabelSelector>,
}

/// A Kubernetes label selector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Every label must equal.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// `{group, kind}` in `allowedRoutes.kinds`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Route kind.
    pub kind: String,
}

/// `TLSRoute.spec` for v1, v1alpha3 and v1alpha2 (the loader applies each version's limits).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteSpec {
    /// Parents to attach to (max 32).
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// SNI hostnames; required in v1 and v1alpha3.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules: exactly 1 in v1 and v1alpha3, 1..16 in v1alpha2.
    #[serde(default)]
    pub rules: Vec<TlsRouteRule>,
    /// Experimental channel; accepted and ignored.
    pub use_default_gateways: Option<Value>,
}

/// `HTTPRoute.spec` (v1, v1beta1), the fields sniway reads: an HTTPRoute is never served (no
/// HTTP data plane), but conformance expects it counted in `attachedRoutes` of the HTTP and
/// HTTPS listeners it attaches to.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Parents to attach to (max 32).
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names (max 16; none = any).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Accepted and ignored.
    pub rules: Option<Value>,
    /// Accepted and ignored.
    pub use_default_gateways: Option<Value>,
}

/// `spec.parentRefs[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Default `Gateway`.
    pub kind: Option<String>,
    /// Default: the route's namespace.
    pub namespace: Option<String>,
    /// Parent name.
    pub name: String,
    /// Listener name.
    pub section_name: Option<String>,
    /// Listener port.
    pub port: Option<i64>,
}

/// `spec.rules[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// 1..16 backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Not part of the Gateway API: `matches[].snis`, read from v1alpha2 routes only (see the
    /// loader's warning).
    pub matches: Option<Vec<SniMatch>>,
}

/// The `matches[]` extension entry.
#[derive(Clone, Debug, Deserialize)]
pub struct SniMatch {
    /// Hostnames routed to this rule.
    #[serde(default)]
    pub snis: Vec<String>,
}

/// `rules[].backendRefs[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Default "" (core).
    pub group: Option<String>,
    /// Default `Service`.
    pub kind: Option<String>,
    /// Object name.
    pub name: String,
    /// Default: the route's namespace.
    pub namespace: Option<String>,
    /// The Service port; required for Services.
    pub port: Option<i64>,
    /// 0..1,000,000, default 1.
    pub weight: Option<i64>,
    /// Accepted and ignored (not defined for TLSRoute; tolerated for copied manifests).
    pub filters: Option<Value>,
}

/// `ReferenceGrant.spec`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReferenceGrantSpec {
    /// Who may refer (1..16).
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to (1..16).
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// `spec.from[]`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReferenceGrantFrom {
    /// Group of the referring kind ("" = core).
    pub group: String,
    /// Referring kind.
    pub kind: String,
    /// Namespace of the referrers.
    pub namespace: String,
}

/// `spec.to[]`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReferenceGrantTo {
    /// Group of the target kind ("" = core).
    pub group: String,
    /// Target kind.
    pub kind: String,
    /// One object, or every object of the kind when absent.
    pub name: Option<String>,
}

// === core/v1 and discovery/v1 ===

/// `Service.spec`, the fields kube-proxy's mapping needs plus those commonly present.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The virtual IP, `None` for headless.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Accepted and ignored.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Value>,
    /// DNS name for `ExternalName`.
    pub external_name: Option<String>,
    /// Service ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Accepted and ignored (endpoints come from EndpointSlices in file mode).
    pub selector: Option<Value>,
    /// Accepted and ignored.
    pub session_affinity: Option<Value>,
    /// Accepted and ignored.
    pub session_affinity_config: Option<Value>,
    /// Accepted and ignored.
    pub ip_families: Option<Value>,
    /// Accepted and ignored.
    pub ip_family_policy: Option<Value>,
    /// Accepted and ignored.
    pub internal_traffic_policy: Option<Value>,
    /// Accepted and ignored.
    pub external_traffic_policy: Option<Value>,
    /// Accepted and ignored.
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<Value>,
    /// Accepted and ignored.
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<Value>,
    /// Accepted and ignored.
    pub load_balancer_source_ranges: Option<Value>,
    /// Accepted and ignored.
    pub load_balancer_class: Option<Value>,
    /// Accepted and ignored.
    pub allocate_load_balancer_node_ports: Option<Value>,
    /// Accepted and ignored.
    pub health_check_node_port: Option<Value>,
    /// Accepted and ignored.
    pub publish_not_ready_addresses: Option<Value>,
    /// Accepted and ignored.
    pub traffic_distribution: Option<Value>,
}

/// `Service.spec.ports[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name; links the Service port to EndpointSlice ports.
    pub name: Option<String>,
    /// The Service port (what a backendRef's `port` names).
    pub port: i64,
    /// Container port, number or name (carried by EndpointSlices).
    pub target_port: Option<Value>,
    /// Accepted and ignored.
    pub protocol: Option<String>,
    /// Accepted and ignored.
    pub app_protocol: Option<String>,
    /// Accepted and ignored.
    pub node_port: Option<Value>,
}

/// One EndpointSlice endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// 1..100 addresses, all used.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness; absent `ready` means ready.
    pub conditions: Option<EndpointConditions>,
    /// Accepted and ignored.
    pub hostname: Option<Value>,
    /// Accepted and ignored.
    pub node_name: Option<Value>,
    /// Accepted and ignored.
    pub zone: Option<Value>,
    /// Accepted and ignored.
    pub target_ref: Option<Value>,
    /// Accepted and ignored.
    pub hints: Option<Value>,
    /// Accepted and ignored.
    pub deprecated_topology: Option<Value>,
}

/// `endpoints[].conditions`.
#[derive(Clone, Debug, Deserialize)]
pub struct EndpointConditions {
    /// `false` excludes the endpoint, as kube-proxy does.
    pub ready: Option<bool>,
    /// Accepted and ignored.
    pub serving: Option<bool>,
    /// Accepted and ignored.
    pub terminating: Option<bool>,
}

/// `ports[]` of an EndpointSlice.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Matches the Service port name ("" or absent for an unnamed port).
    pub name: Option<String>,
    /// The endpoint port.
    pub port: Option<i64>,
    /// Accepted and ignored.
    pub protocol: Option<String>,
    /// Accepted and ignored.
    pub app_protocol: Option<String>,
}

/// `ServiceImport.spec` (`multicluster.x-k8s.io/v1alpha1`, KEP-1645): a Service exported from
/// other clusters of a ClusterSet. Its endpoints are EndpointSlices labelled
/// `multicluster.kubernetes.io/service-name`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportSpec {
    /// The imported ports; a backendRef's `port` names one.
    #[serde(default)]
    pub ports: Vec<ServiceImportPort>,
    /// `ClusterSetIP` or `Headless`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The ClusterSet IPs, used when the import has no EndpointSlice.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Accepted and ignored.
    pub session_affinity: Option<Value>,
    /// Accepted and ignored.
    pub session_affinity_config: Option<Value>,
}

/// `ServiceImport.spec.ports[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportPort {
    /// Port name; links the port to EndpointSlice ports.
    pub name: Option<String>,
    /// The port number.
    pub port: i64,
    /// Accepted and ignored.
    pub protocol: Option<String>,
    /// Accepted and ignored.
    pub app_protocol: Option<String>,
}

/// A ConfigMap: its fields sit at the top level. Read for the CA certificates of TLS health
/// checks (`ca.crt`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapDocument {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Text values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Accepted and ignored.
    pub binary_data: Option<Value>,
    /// Accepted and ignored.
    pub immutable: Option<bool>,
}
