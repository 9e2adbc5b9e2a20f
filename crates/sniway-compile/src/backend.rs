//! Backend resolution in file mode: a backendRef to Service endpoints, a DNS name, or an
//! invalid entry that keeps its weight so its share of connections is refused.
//!
//! Gateway API v1.6.1, `BackendRef` godoc: "When the BackendRef points to a Kubernetes Service,
//! implementations SHOULD honor the appProtocol field" and `port` "is the Service port"; an
//! unknown group/kind gives `ResolvedRefs=False/InvalidKind`, a missing object
//! `BackendNotFound`, a cross-namespace reference without a ReferenceGrant `RefNotPermitted`,
//! and "the Route Rule MUST return an error for the share of requests that would have been sent
//! to the invalid backend" (here: connections are refused).
//!
//! ServiceImport backends (`multicluster.x-k8s.io`, Extended support in the Gateway API, KEP-1645)
//! resolve like Services: `port` names a port of `spec.ports`, the endpoints are those of the
//! EndpointSlices labelled `multicluster.kubernetes.io/service-name: <name>` in the import's
//! namespace (their ports matched by the port's name), or `spec.ips` when there is none.
//!
//! Endpoint conditions, as kube-proxy reads them: an endpoint whose `ready` is true or unset is
//! used; when a backend has none, those with `serving: true` and `terminating: true` are used
//! (a warning says so), so connections still reach pods that are shutting down gracefully;
//! `ready: false` is excluded otherwise.
//!
//! Each resolved backend carries the settings of the BackendPolicy that targets its Service or
//! ServiceImport (`backend_policy.rs`), one shared `Arc` per target.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sniway_model::{Backend, BackendSettings, WeightedBackend};

use crate::GATEWAY_GROUP;
use crate::api::{BackendRef, ReferenceGrantSpec, ServiceImportSpec, ServiceSpec};
use crate::policy::MULTICLUSTER_GROUP;
use crate::reference_grant::{self, From, To};
use crate::resources::{EndpointSlice, Object, Resources};
use crate::status::conditions::reasons;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that ties an EndpointSlice to its ServiceImport (KEP-1645).
pub const IMPORT_NAME_LABEL: &str = "multicluster.kubernetes.io/service-name";

/// A backend object a policy can target: `(kind, namespace, name)`, kind `Service` or
/// `ServiceImport`.
pub(crate) type TargetKey = (&'static str, String, String);

/// Lookups built once per compile.
pub(crate) struct Backends<'r> {
    services: BTreeMap<(&'r str, &'r str), &'r Object<ServiceSpec>>,
    imports: BTreeMap<(&'r str, &'r str), &'r Object<ServiceImportSpec>>,
    slices: BTreeMap<(&'r str, &'r str), Vec<&'r Object<EndpointSlice>>>,
    import_slices: BTreeMap<(&'r str, &'r str), Vec<&'r Object<EndpointSlice>>>,
    grants: &'r [Object<ReferenceGrantSpec>],
    settings: BTreeMap<TargetKey, Arc<BackendSettings>>,
}

/// A resolved backendRef.
pub(crate) struct Resolved {
    pub backend: WeightedBackend,
    /// `(reason, message)` when the reference is invalid (`ResolvedRefs=False`).
    pub problem: Option<(&'static str, String)>,
    /// Notes for the user (no endpoints, extensions in use).
    pub warnings: Vec<String>,
    /// The Service or ServiceImport it leads to, when it exists.
    pub target: Option<TargetKey>,
}

/// Who holds a backendRef, for ReferenceGrants and messages.
#[derive(Clone, Copy)]
pub(crate) struct Referrer<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

impl<'r> Backends<'r> {
    pub(crate) fn new(
        res: &'r Resources,
        settings: BTreeMap<TargetKey, Arc<BackendSettings>>,
    ) -> Self {
        let services = res
            .services
            .iter()
            .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
            .collect();
        let imports = res
            .service_imports
            .iter()
            .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
            .collect();
        let mut slices: BTreeMap<_, Vec<_>> = BTreeMap::new();
        let mut import_slices: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for s in &res.endpoint_slices {
            if let Some(svc) = s.meta.labels.get(SERVICE_NAME_LABEL) {
                slices.entry((s.meta.namespace.as_str(), svc.as_str())).or_default().push(s);
            } else if let Some(imp) = s.meta.labels.get(IMPORT_NAME_LABEL) {
                import_slices.entry((s.meta.namespace.as_str(), imp.as_str())).or_default().push(s);
            }
        }
        Self { services, imports, slices, import_slices, grants: &res.reference_grants, settings }
    }

    /// Resolves one backendRef of a TLSRoute in `route_ns`.
    pub(crate) fn resolve(&self, route_ns: &str, r: &BackendRef) -> Resolved {
        let from = Referrer { group: GATEWAY_GROUP, kind: "TLSRoute", namespace: route_ns };
        self.resolve_from(from, r)
    }

    /// Resolves one backendRef held by `from` (a TLSRoute, or a ListenerPolicy's default
    /// backend).
    pub(crate) fn resolve_from(&self, from: Referrer<'_>, r: &BackendRef) -> Resolved {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let ns = r.namespace.as_deref().unwrap_or(from.namespace);
        // Validated by the loader: 0..=1_000_000 fits u32; default 1.
        let weight = u32::try_from(r.weight.unwrap_or(1)).unwrap_or(0);
        // Validated by the loader for Services: 1..=65535. Other kinds may omit it.
        let port = r.port.and_then(|p| u16::try_from(p).ok());
        let display = match port {
            Some(p) => format!("{ns}/{}:{p}", r.name),
            None => format!("{ns}/{}", r.name),
        };
        let invalid = |reason: &'static str, message: String| Resolved {
            backend: WeightedBackend::new(
                weight,
                Backend::Invalid { name: display.clone(), reason: reason.to_string() },
            ),
            problem: Some((reason, message)),
            warnings: vec![],
            target: None,
        };

        let import = match (group, kind) {
            ("", "Service") => false,
            (MULTICLUSTER_GROUP, "ServiceImport") => true,
            _ => {
                let gk =
                    if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
                return invalid(
                    reasons::INVALID_KIND,
                    format!(
                        "backendRef {display}: kind {gk} is not supported (core Service, or \
                         ServiceImport of {MULTICLUSTER_GROUP})"
                    ),
                );
            }
        };
        let kind: &'static str = if import { "ServiceImport" } else { "Service" };
        let from_ref = From { group: from.group, kind: from.kind, namespace: from.namespace };
        let to = To { group, kind, namespace: ns, name: &r.name };
        if !reference_grant::permits(self.grants, &from_ref, &to) {
            return invalid(
                reasons::REF_NOT_PERMITTED,
                format!(
                    "backendRef {display}: no ReferenceGrant in namespace {ns} allows {}s \
                     from namespace {} to refer to {kind} {}",
                    from.kind, from.namespace, r.name
                ),
            );
        }
        let Some(port) = port else {
            return invalid(
                reasons::BACKEND_NOT_FOUND,
                format!("backendRef {display}: a {kind} reference needs a port"),
            );
        };
        let target: TargetKey = (kind, ns.to_string(), r.name.clone());
        let settings = self.settings.get(&target).cloned().unwrap_or_default();
        let found = |backend: Backend, warnings: Vec<String>| Resolved {
            backend: WeightedBackend { weight, backend, settings: settings.clone() },
            problem: None,
            warnings,
            target: Some(target.clone()),
        };

        if import {
            let Some(imp) = self.imports.get(&(ns, r.name.as_str())) else {
                return invalid(
                    reasons::BACKEND_NOT_FOUND,
                    format!("backendRef {display}: ServiceImport {ns}/{} not found", r.name),
                );
            };
            let Some(imp_port) = imp.spec.ports.iter().find(|p| p.port == i64::from(port)) else {
                let have: Vec<String> = imp.spec.ports.iter().map(|p| p.port.to_string()).collect();
                return invalid(
                    reasons::BACKEND_NOT_FOUND,
                    format!(
                        "backendRef {display}: ServiceImport {ns}/{} has no port {port} (ports: \
                         [{}])",
                        r.name,
                        have.join(", ")
                    ),
                );
            };
            let port_name = imp_port.name.as_deref().unwrap_or("");
            let mut warnings = Vec::new();
            let addrs = match self.import_slices.get(&(ns, r.name.as_str())) {
                Some(slices) => endpoints(slices, port_name, &display, &mut warnings),
                None => imp
                    .spec
                    .ips
                    .iter()
                    .filter_map(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port))
                    .take(1)
                    .collect(),
            };
            if addrs.is_empty() {
                warnings.push(format!(
                    "backendRef {display}: ServiceImport {ns}/{} has no ready endpoints for port \
                     {port}; its share of connections is refused",
                    r.name
                ));
            }
            return found(Backend::endpoints(display, addrs), warnings);
        }

        let Some(svc) = self.services.get(&(ns, r.name.as_str())) else {
            // A Service name is an RFC 1035 label and never contains a dot, so a dotted name
            // cannot shadow a Service: sniway reads it as an external `host:port` (extension).
            if r.name.contains('.') {
                let warning = format!(
                    "backendRef {display}: no Service is named {:?}; sniway connects to the \
                     external host {}:{port} (a sniway extension, not Gateway API)",
                    r.name, r.name
                );
                let mut res = found(
                    Backend::Dns { name: display.clone(), host: r.name.clone(), port },
                    vec![warning],
                );
                // No Service to carry a policy.
                res.backend.settings = Arc::default();
                res.target = None;
                return res;
            }
            return invalid(
                reasons::BACKEND_NOT_FOUND,
                format!("backendRef {display}: Service {ns}/{} not found", r.name),
            );
        };

        let spec = &svc.spec;
        if spec.type_.as_deref() == Some("ExternalName") {
            let host = spec.external_name.clone().unwrap_or_default();
            return found(Backend::Dns { name: display, host, port }, vec![]);
        }

        // backendRef.port is the Service port (kube-proxy semantics).
        let Some(svc_port) = spec.ports.iter().find(|p| p.port == i64::from(port)) else {
            let have: Vec<String> = spec.ports.iter().map(|p| p.port.to_string()).collect();
            return invalid(
                reasons::BACKEND_NOT_FOUND,
                format!(
                    "backendRef {display}: Service {ns}/{} has no port {port} (ports: [{}])",
                    r.name,
                    have.join(", ")
                ),
            );
        };
        let port_name = svc_port.name.as_deref().unwrap_or("");

        let mut warnings = Vec::new();
        let addrs = match self.slices.get(&(ns, r.name.as_str())) {
            Some(slices) => endpoints(slices, port_name, &display, &mut warnings),
            None => match spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) {
                // No slices: the Service's virtual IP, as a client in the cluster would use it.
                Some(ip) => vec![SocketAddr::new(ip, port)],
                None => vec![],
            },
        };
        if addrs.is_empty() {
            warnings.push(format!(
                "backendRef {display}: Service {ns}/{} has no ready endpoints for port {port}; its \
                 share of connections is refused",
                r.name
            ));
        }
        found(Backend::endpoints(display, addrs), warnings)
    }
}

/// The addresses of `slices` for the port named `port_name` (kube-proxy: EndpointSlice ports
/// are named after Service ports): ready endpoints (`ready` true or unset); with none, those
/// `serving` and `terminating` (with a warning); `ready: false` otherwise excluded.
fn endpoints(
    slices: &[&Object<EndpointSlice>],
    port_name: &str,
    display: &str,
    warnings: &mut Vec<String>,
) -> Vec<SocketAddr> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        let Some(ep_port) =
            slice.spec.ports.iter().find(|p| p.name.as_deref().unwrap_or("") == port_name)
        else {
            continue;
        };
        let Some(ep_port) = ep_port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
        else {
            continue;
        };
        if slice.spec.address_type == "FQDN" {
            warnings.push(format!(
                "EndpointSlice {}: addressType FQDN is not supported; skipped",
                slice.meta.key()
            ));
            continue;
        }
        for ep in &slice.spec.endpoints {
            let c = ep.conditions.as_ref();
            let into = if c.and_then(|c| c.ready) != Some(false) {
                &mut ready
            } else if c.and_then(|c| c.serving) == Some(true)
                && c.and_then(|c| c.terminating) == Some(true)
            {
                &mut terminating
            } else {
                continue;
            };
            for a in &ep.addresses {
                match a.parse::<IpAddr>() {
                    Ok(ip) => into.push(SocketAddr::new(ip, ep_port)),
                    Err(_) => warnings.push(format!(
                        "EndpointSlice {}: address {a:?} is not an IP; skipped",
                        slice.meta.key()
                    )),
                }
            }
        }
    }
    if ready.is_empty() && !terminating.is_empty() {
        let list: Vec<String> = terminating.iter().map(ToString::to_string).collect();
        warnings.push(format!(
            "backendRef {display}: no ready endpoint; using the {} serving, terminating one(s) \
             ({}) until they are gone, as kube-proxy does",
            terminating.len(),
            list.join(", ")
        ));
        return terminating;
    }
    ready
}
