//! Backend resolution in file mode: a backendRef to Service endpoints, a DNS name, or an
//! invalid entry that keeps its weight so its share of connections is refused.
//!
//! Gateway API v1.6.1, `BackendRef` godoc: "When the BackendRef points to a Kubernetes Service,
//! implementations SHOULD honor the appProtocol field" and `port` "is the Service port"; an
//! unknown group/kind gives `ResolvedRefs=False/InvalidKind`, a missing object
//! `BackendNotFound`, a cross-namespace reference without a ReferenceGrant `RefNotPermitted`,
//! and "the Route Rule MUST return an error for the share of requests that would have been sent
//! to the invalid backend" (here: connections are refused).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use sniway_model::{Backend, WeightedBackend};

use crate::GATEWAY_GROUP;
use crate::api::{BackendRef, ReferenceGrantSpec, ServiceSpec};
use crate::reference_grant::{self, From, To};
use crate::resources::{EndpointSlice, Object, Resources};
use crate::status::conditions::reasons;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Lookups built once per compile.
pub(crate) struct Backends<'r> {
    services: BTreeMap<(&'r str, &'r str), &'r Object<ServiceSpec>>,
    slices: BTreeMap<(&'r str, &'r str), Vec<&'r Object<EndpointSlice>>>,
    grants: &'r [Object<ReferenceGrantSpec>],
}

/// A resolved backendRef.
pub(crate) struct Resolved {
    pub backend: WeightedBackend,
    /// `(reason, message)` when the reference is invalid (`ResolvedRefs=False`).
    pub problem: Option<(&'static str, String)>,
    /// Notes for the user (no endpoints, extensions in use).
    pub warnings: Vec<String>,
}

impl<'r> Backends<'r> {
    pub(crate) fn new(res: &'r Resources) -> Self {
        let services = res
            .services
            .iter()
            .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
            .collect();
        let mut slices: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for s in &res.endpoint_slices {
            if let Some(svc) = s.meta.labels.get(SERVICE_NAME_LABEL) {
                slices.entry((s.meta.namespace.as_str(), svc.as_str())).or_default().push(s);
            }
        }
        Self { services, slices, grants: &res.reference_grants }
    }

    /// Resolves one backendRef of a TLSRoute in `route_ns`.
    pub(crate) fn resolve(&self, route_ns: &str, r: &BackendRef) -> Resolved {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let ns = r.namespace.as_deref().unwrap_or(route_ns);
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
        };

        if !(group.is_empty() && kind == "Service") {
            let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
            return invalid(
                reasons::INVALID_KIND,
                format!("backendRef {display}: kind {gk} is not supported (only core Service)"),
            );
        }
        let from = From { group: GATEWAY_GROUP, kind: "TLSRoute", namespace: route_ns };
        let to = To { group: "", kind: "Service", namespace: ns, name: &r.name };
        if !reference_grant::permits(self.grants, &from, &to) {
            return invalid(
                reasons::REF_NOT_PERMITTED,
                format!(
                    "backendRef {display}: no ReferenceGrant in namespace {ns} allows TLSRoutes \
                     from namespace {route_ns} to refer to Service {}",
                    r.name
                ),
            );
        }
        let Some(port) = port else {
            // Unreachable for valid input (the loader requires `port` on Service references).
            return invalid(reasons::BACKEND_NOT_FOUND, format!("backendRef {display}: no port"));
        };

        let Some(svc) = self.services.get(&(ns, r.name.as_str())) else {
            // A Service name is an RFC 1035 label and never contains a dot, so a dotted name
            // cannot shadow a Service: sniway reads it as an external `host:port` (extension).
            if r.name.contains('.') {
                return Resolved {
                    backend: WeightedBackend::new(
                        weight,
                        Backend::Dns { name: display.clone(), host: r.name.clone(), port },
                    ),
                    problem: None,
                    warnings: vec![format!(
                        "backendRef {display}: no Service is named {:?}; sniway connects to the \
                         external host {}:{port} (a sniway extension, not Gateway API)",
                        r.name, r.name
                    )],
                };
            }
            return invalid(
                reasons::BACKEND_NOT_FOUND,
                format!("backendRef {display}: Service {ns}/{} not found", r.name),
            );
        };

        let spec = &svc.spec;
        if spec.type_.as_deref() == Some("ExternalName") {
            let host = spec.external_name.clone().unwrap_or_default();
            return Resolved {
                backend: WeightedBackend::new(weight, Backend::Dns { name: display, host, port }),
                problem: None,
                warnings: vec![],
            };
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
            Some(slices) => {
                let mut addrs = Vec::new();
                for slice in slices {
                    // The slice port carrying this Service port is the one with the same name
                    // (kube-proxy: EndpointSlice ports are named after Service ports).
                    let Some(ep_port) = slice
                        .spec
                        .ports
                        .iter()
                        .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                    else {
                        continue;
                    };
                    let Some(ep_port) =
                        ep_port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
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
                        // kube-proxy routes to endpoints whose `ready` is true or unset.
                        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                            continue;
                        }
                        for a in &ep.addresses {
                            match a.parse::<IpAddr>() {
                                Ok(ip) => addrs.push(SocketAddr::new(ip, ep_port)),
                                Err(_) => warnings.push(format!(
                                    "EndpointSlice {}: address {a:?} is not an IP; skipped",
                                    slice.meta.key()
                                )),
                            }
                        }
                    }
                }
                addrs
            }
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
        Resolved {
            backend: WeightedBackend::new(weight, Backend::endpoints(display, addrs)),
            problem: None,
            warnings,
        }
    }
}
