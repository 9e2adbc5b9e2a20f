//! Gateways and their listeners: what each listener is, whether it can be served, conflicts
//! within a Gateway and between Gateways sharing a socket, and the resulting conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use sniway_model::HostPattern;

use crate::GATEWAY_GROUP;
use crate::api::{GatewaySpec, LabelSelector, Listener};
use crate::certificate::{Certificates, ListenerCertificates};
use crate::resources::Object;
use crate::status::conditions::{Cond, reasons, types};

/// The kind every TLS listener carries in `supportedKinds`.
pub(crate) const TLS_ROUTE: &str = "TLSRoute";
/// The kind HTTP and HTTPS listeners carry in `supportedKinds`.
pub(crate) const HTTP_ROUTE: &str = "HTTPRoute";

/// How a listener would be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// `protocol: TLS`, `tls.mode: Passthrough`: served.
    Passthrough,
    /// `protocol: TLS`, `tls.mode: Terminate` (the CRD default): served with the certificates
    /// of its `certificateRefs`; needs at least one usable certificate.
    Terminate,
    /// `protocol: HTTP`: accepted for status (`supportedKinds: [HTTPRoute]`, `Programmed`),
    /// never served: sniway has no HTTP data plane. Gateway API conformance
    /// (GatewayListenerUnsupportedProtocol, GatewayModifyListeners, the suite's base Gateways)
    /// requires HTTP listeners to look supported in status for any implementation.
    Http,
    /// `protocol: HTTPS`: as `Http`, and its `certificateRefs` are resolved for status as a
    /// Terminate listener's are (GatewayInvalidTLSConfiguration, GatewaySecret*ReferenceGrant*).
    Https,
    /// TCP, UDP or a custom protocol: `Accepted=False/UnsupportedProtocol`.
    Unsupported,
}

impl Served {
    /// Route kinds the listener's protocol supports (Gateway API: "When unspecified or empty,
    /// the kinds of Routes selected are determined using the Listener protocol").
    fn route_kinds(self) -> &'static [&'static str] {
        match self {
            Served::Passthrough | Served::Terminate => &[TLS_ROUTE],
            Served::Http | Served::Https => &[HTTP_ROUTE],
            Served::Unsupported => &[],
        }
    }
}

/// One listener and what compile learned about it.
#[derive(Debug)]
pub(crate) struct ListenerState<'r> {
    pub spec: &'r Listener,
    pub hostname: Option<HostPattern>,
    pub served: Served,
    /// `supportedKinds`: `(group, kind)`.
    pub supported_kinds: Vec<(String, String)>,
    /// Kinds named in `allowedRoutes.kinds` that are not supported.
    pub invalid_kinds: Vec<String>,
    /// `Conflicted=True` reason and message.
    pub conflict: Option<(&'static str, String)>,
    /// `Accepted=False/PortUnavailable` message.
    pub port_unavailable: Option<String>,
    /// Routes attached (`namespace/name`), for `attachedRoutes`.
    pub attached: BTreeSet<String>,
    /// Terminate listeners: what `certificateRefs` resolved to.
    pub certificates: Option<ListenerCertificates>,
    /// `None` for the Gateway's own listeners; the ListenerSet's index in
    /// `Resources::listener_sets` for a listener it contributes.
    pub set: Option<usize>,
    /// Namespace of the object declaring the listener (`allowedRoutes.namespaces.from: Same`).
    pub owner_ns: String,
}

impl ListenerState<'_> {
    /// `Accepted=True`: a TLS, HTTP or HTTPS listener without conflict that has its port.
    pub(crate) fn accepted(&self) -> bool {
        self.served != Served::Unsupported
            && self.conflict.is_none()
            && self.port_unavailable.is_none()
    }

    /// Whether the listener has what its mode needs to complete handshakes: always for
    /// Passthrough, at least one usable certificate for Terminate.
    pub(crate) fn has_certificates(&self) -> bool {
        !matches!(self.served, Served::Terminate | Served::Https)
            || self.certificates.as_ref().is_some_and(|c| !c.served.is_empty())
    }

    /// Valid in the sense of the Gateway's `ListenersNotValid`, and `Programmed=True`:
    /// accepted, able to take routes, and with certificates when it terminates.
    pub(crate) fn valid(&self) -> bool {
        self.accepted() && !self.supported_kinds.is_empty() && self.has_certificates()
    }

    /// Valid and served by the data plane: a TLS listener (HTTP and HTTPS listeners are valid
    /// for status only; they bind no socket and have no table entry).
    pub(crate) fn serves(&self) -> bool {
        self.valid() && matches!(self.served, Served::Passthrough | Served::Terminate)
    }

    /// Whether `supportedKinds` holds TLSRoute.
    pub(crate) fn supports_tls_route(&self) -> bool {
        self.supports_kind(TLS_ROUTE)
    }

    /// Whether `supportedKinds` holds this kind of the Gateway API group.
    pub(crate) fn supports_kind(&self, kind: &str) -> bool {
        self.supported_kinds.iter().any(|(g, k)| g == GATEWAY_GROUP && k == kind)
    }

    /// `allowedRoutes.namespaces` (default `Same`) for a route in `route_ns`, given the labels of
    /// that namespace.
    pub(crate) fn allows_namespace(
        &self,
        route_ns: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns = self.spec.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
        match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
            "All" => true,
            "Selector" => ns.and_then(|n| n.selector.as_ref()).is_some_and(|s| selects(s, labels)),
            _ => self.owner_ns == route_ns,
        }
    }

    /// Listener conditions, Gateway API `ListenerConditionType` (digest section 5).
    pub(crate) fn conditions(&self) -> Vec<Cond> {
        let name = &self.spec.name;
        // A conflict is reported before an unsupported protocol: a TCP listener on an HTTP
        // listener's port is a ProtocolConflict (conformance ListenerSetProtocolConflict).
        let accepted = if let Some((reason, msg)) = &self.conflict {
            Cond::no(types::ACCEPTED, reason, msg.clone())
        } else if self.served == Served::Unsupported {
            Cond::no(
                types::ACCEPTED,
                reasons::UNSUPPORTED_PROTOCOL,
                format!(
                    "protocol {} is not supported: sniway serves TLS listeners (Passthrough and \
                     Terminate) and accepts HTTP and HTTPS listeners",
                    self.spec.protocol
                ),
            )
        } else if let Some(msg) = &self.port_unavailable {
            Cond::no(types::ACCEPTED, reasons::PORT_UNAVAILABLE, msg.clone())
        } else {
            Cond::yes(types::ACCEPTED, reasons::ACCEPTED, format!("listener {name} is accepted"))
        };
        let cert_problems = self.certificates.as_ref().map_or(&[][..], |c| c.problems.as_slice());
        let programmed = if self.valid() && !self.serves() {
            Cond::yes(
                types::PROGRAMMED,
                reasons::PROGRAMMED,
                format!("listener {name} is programmed"),
            )
        } else if self.valid() {
            let msg = match &self.certificates {
                Some(c) if !c.problems.is_empty() => format!(
                    "listener {name} is served with {} of {} certificates (see ResolvedRefs)",
                    c.served.len(),
                    c.served.len() + c.problems.len()
                ),
                _ => format!("listener {name} is served"),
            };
            Cond::yes(types::PROGRAMMED, reasons::PROGRAMMED, msg)
        } else if self.accepted() && !self.has_certificates() {
            Cond::no(
                types::PROGRAMMED,
                reasons::INVALID,
                format!("listener {name} has no usable certificate (see ResolvedRefs): not served"),
            )
        } else if self.accepted() {
            Cond::no(
                types::PROGRAMMED,
                reasons::INVALID,
                "no supported route kinds: nothing to serve",
            )
        } else if let Some((reason, msg)) = &self.conflict {
            // As ListenerSet conformance (ListenerSetHostnameConflict,
            // ListenerSetProtocolConflict) expects: the conflict reason on Programmed too.
            Cond::no(types::PROGRAMMED, reason, msg.clone())
        } else {
            Cond::no(
                types::PROGRAMMED,
                reasons::INVALID,
                format!("listener {name} is not accepted"),
            )
        };
        // Gateway API `ListenerConditionResolvedRefs`: False when any reference is invalid. The
        // first problem names the reason (certificates first, then route kinds); the message
        // lists all of them.
        let mut problems: Vec<(&'static str, String)> = cert_problems.to_vec();
        if !self.invalid_kinds.is_empty() {
            problems.push((
                reasons::INVALID_ROUTE_KINDS,
                format!(
                    "unsupported route kinds in allowedRoutes.kinds: {}",
                    self.invalid_kinds.join(", ")
                ),
            ));
        }
        let resolved = Cond::resolved_refs(&problems);
        let conflicted = match &self.conflict {
            Some((reason, msg)) => Cond::yes(types::CONFLICTED, reason, msg.clone()),
            None => Cond::no(types::CONFLICTED, reasons::NO_CONFLICTS, "no conflicts"),
        };
        vec![accepted, programmed, resolved, conflicted]
    }
}

/// Label selector semantics (`metav1.LabelSelector`): every `matchLabels` entry and every
/// expression must hold; an empty selector selects everything.
pub(crate) fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let v = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => v.is_some_and(|v| e.values.contains(v)),
                "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
}

/// One Gateway being compiled.
#[derive(Debug)]
pub(crate) struct GatewayState<'r> {
    pub obj: &'r Object<GatewaySpec>,
    /// Addresses to bind (its `spec.addresses` of type IPAddress, else the default).
    pub bind: Vec<IpAddr>,
    /// An address sniway cannot use (`Accepted=False/UnsupportedAddress`).
    pub address_problem: Option<String>,
    /// Requested IP addresses outside `CompileOptions::usable_addresses`
    /// (`Programmed=False/AddressNotUsable`).
    pub address_unusable: Option<String>,
    /// `Accepted=False/InvalidParameters`: an infrastructure parametersRef.
    pub invalid_parameters: Option<String>,
    pub listeners: Vec<ListenerState<'r>>,
}

impl<'r> GatewayState<'r> {
    /// Classifies listeners, computes kinds, resolves certificates, and finds conflicts within
    /// the Gateway.
    ///
    /// Addresses (GatewayStaticAddresses, GatewayAddressEmpty): an address of a type other than
    /// `IPAddress` is `Accepted=False/UnsupportedAddress`; an IP address outside
    /// `usable` (when given) is `Programmed=False/AddressNotUsable`; `type: IPAddress` without a
    /// value asks for an assigned address, which is `default_bind` (a controller reports the
    /// address it assigns through [`crate::Compiled::set_gateway_addresses`]).
    ///
    /// `spec.infrastructure.parametersRef`: sniway defines no parameters kind, so any reference
    /// is `Accepted=False/InvalidParameters` (conformance GatewayInvalidParametersRef).
    pub(crate) fn new(
        obj: &'r Object<GatewaySpec>,
        opts: &crate::CompileOptions,
        certs: &Certificates<'_>,
    ) -> Self {
        let usable = opts.usable_addresses.as_ref();
        let mut bind = Vec::new();
        let mut address_problem = None;
        let mut address_unusable = Vec::new();
        for a in &obj.spec.addresses {
            let ty = a.type_.as_deref().unwrap_or("IPAddress");
            match (ty, a.value.as_deref()) {
                ("IPAddress", None) => {}
                ("IPAddress", Some(v)) => match v.parse::<IpAddr>() {
                    Ok(ip) if usable.is_none_or(|u| u.contains(&ip)) => bind.push(ip),
                    Ok(ip) => address_unusable.push(ip.to_string()),
                    Err(_) => address_problem = Some(format!("{v:?} is not an IP address")),
                },
                (ty, v) => {
                    let v = v.map_or(String::new(), |v| format!("{v:?} "));
                    address_problem = Some(format!(
                        "address {v}of type {ty} is not supported: sniway binds IPAddress \
                         addresses only"
                    ));
                }
            }
        }
        if opts.addresses_elsewhere {
            bind.clear();
        }
        if bind.is_empty() {
            bind.push(opts.default_bind);
        }
        let address_unusable = (!address_unusable.is_empty()).then(|| {
            format!(
                "address {} cannot be used: not among the addresses this data plane can take",
                address_unusable.join(", ")
            )
        });
        let invalid_parameters =
            obj.spec.infrastructure.as_ref().and_then(|i| i.parameters_ref.as_ref()).map(|p| {
                format!(
                    "spec.infrastructure.parametersRef {}.{} {}: sniway defines no parameters kind",
                    p.kind, p.group, p.name
                )
            });
        let listeners = obj
            .spec
            .listeners
            .iter()
            .map(|l| listener_state(l, &obj.meta.namespace, "Gateway", None, certs))
            .collect();
        let mut gw = GatewayState {
            obj,
            bind,
            address_problem,
            address_unusable,
            invalid_parameters,
            listeners,
        };
        let own: Vec<usize> = (0..gw.listeners.len()).collect();
        gw.find_conflicts(&own);
        gw
    }

    /// Merges the listeners of an allowed ListenerSet (GEP-1713), after the Gateway's own and
    /// those of older ListenerSets: a listener that conflicts with one merged earlier (another
    /// protocol on its port, or the same port and hostname) loses, with `Conflicted=True` and
    /// `Accepted=False` (`ProtocolConflict` or `HostnameConflict`); the earlier one keeps its
    /// status. Conflicts among the set's own listeners follow the Gateway rule
    /// ([`GatewayState::new`]).
    pub(crate) fn add_listener_set(
        &mut self,
        set: usize,
        ls: &'r Object<crate::api::ListenerSetSpec>,
        certs: &Certificates<'_>,
    ) {
        let start = self.listeners.len();
        for l in &ls.spec.listeners {
            self.listeners.push(listener_state(
                l,
                &ls.meta.namespace,
                "ListenerSet",
                Some(set),
                certs,
            ));
        }
        for i in start..self.listeners.len() {
            let new = &self.listeners[i];
            if new.spec.protocol == "UDP" {
                continue;
            }
            let cls = class(new);
            let mut conflict = None;
            for o in &self.listeners[..start] {
                if o.conflict.is_some() || o.spec.port != new.spec.port || o.spec.protocol == "UDP"
                {
                    continue;
                }
                let owner = match o.set {
                    None => format!("listener {} of the Gateway", o.spec.name),
                    Some(_) => format!("listener {} of an earlier ListenerSet", o.spec.name),
                };
                if class(o) != cls {
                    conflict = Some((
                        reasons::PROTOCOL_CONFLICT,
                        format!(
                            "port {} is taken by {owner} with protocol {}",
                            new.spec.port, o.spec.protocol
                        ),
                    ));
                    break;
                }
                if o.spec.hostname == new.spec.hostname {
                    conflict = Some((
                        reasons::HOSTNAME_CONFLICT,
                        format!(
                            "port {} and hostname {} are taken by {owner}",
                            new.spec.port,
                            new.spec.hostname.as_deref().unwrap_or("(any)")
                        ),
                    ));
                    break;
                }
            }
            if let Some((reason, msg)) = conflict {
                let l = &mut self.listeners[i];
                if reason == reasons::PROTOCOL_CONFLICT {
                    l.supported_kinds.clear();
                    l.invalid_kinds.clear();
                }
                l.conflict = Some((reason, msg));
            }
        }
        let rest: Vec<usize> = (start..self.listeners.len())
            .filter(|&i| self.listeners[i].conflict.is_none())
            .collect();
        self.find_conflicts(&rest);
    }

    /// Gateway API `Listener` godoc on distinctness: listeners on one port must share a
    /// compatible protocol and differ by hostname. sniway cannot serve different protocols on
    /// one port (plain HTTP, HTTPS or TCP next to TLS), so each such listener gets
    /// `Conflicted=True` and `Accepted=False` with `ProtocolConflict`. UDP uses another
    /// transport and never conflicts with TCP-based protocols.
    ///
    /// TLS Passthrough and TLS Terminate listeners on one port are one protocol (the
    /// `TLSRouteModeMixed` feature, conformance `TLSRouteMixedTerminationSameNamespace`): they
    /// are told apart by hostname, so only two TLS listeners with the same hostname conflict
    /// (`HostnameConflict`), whatever their modes (the `tls` block never makes listeners
    /// distinct). Overlapping but different hostnames (`a.example.com`, `*.example.com`) are
    /// distinct: the most specific listener wins.
    fn find_conflicts(&mut self, among: &[usize]) {
        let mut by_port: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for &i in among {
            let l = &self.listeners[i];
            if l.spec.protocol != "UDP" {
                by_port.entry(l.spec.port).or_default().push(i);
            }
        }
        for (port, idxs) in by_port {
            let classes: BTreeSet<String> =
                idxs.iter().map(|&i| class(&self.listeners[i])).collect();
            if classes.len() > 1 {
                let list: Vec<&str> = classes.iter().map(String::as_str).collect();
                let msg = format!(
                    "port {port} has listeners with incompatible protocols: {}",
                    list.join(", ")
                );
                for &i in &idxs {
                    let l = &mut self.listeners[i];
                    l.conflict = Some((reasons::PROTOCOL_CONFLICT, msg.clone()));
                    l.supported_kinds.clear();
                    l.invalid_kinds.clear();
                }
                continue;
            }
            let mut by_host: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
            for &i in &idxs {
                by_host.entry(self.listeners[i].spec.hostname.clone()).or_default().push(i);
            }
            for (host, same) in by_host.into_iter().filter(|(_, v)| v.len() > 1) {
                let names: Vec<&str> =
                    same.iter().map(|&i| self.listeners[i].spec.name.as_str()).collect();
                let msg = format!(
                    "listeners {} share port {port} and hostname {}",
                    names.join(", "),
                    host.as_deref().unwrap_or("(any)")
                );
                for &i in &same {
                    self.listeners[i].conflict = Some((reasons::HOSTNAME_CONFLICT, msg.clone()));
                }
            }
        }
    }

    /// `namespace/name`.
    pub(crate) fn key(&self) -> String {
        self.obj.meta.key()
    }

    /// Gateway conditions (Gateway API `GatewayConditionType`, digest section 5).
    pub(crate) fn conditions(&self) -> Vec<Cond> {
        if let Some(problem) = &self.address_problem {
            return vec![
                Cond::no(types::ACCEPTED, reasons::UNSUPPORTED_ADDRESS, problem.clone()),
                Cond::no(types::PROGRAMMED, reasons::ADDRESS_NOT_USABLE, problem.clone()),
            ];
        }
        if let Some(problem) = &self.invalid_parameters {
            return vec![
                Cond::no(types::ACCEPTED, reasons::INVALID_PARAMETERS, problem.clone()),
                Cond::no(types::PROGRAMMED, reasons::INVALID, "the Gateway is not accepted"),
            ];
        }
        let own = || self.listeners.iter().filter(|l| l.set.is_none());
        let invalid: Vec<&str> =
            own().filter(|l| !l.valid()).map(|l| l.spec.name.as_str()).collect();
        let total = own().count();
        let accepted = if invalid.is_empty() {
            Cond::yes(types::ACCEPTED, reasons::ACCEPTED, "Gateway is accepted")
        } else if invalid.len() < total {
            Cond::yes(
                types::ACCEPTED,
                reasons::LISTENERS_NOT_VALID,
                format!(
                    "{} of {total} listeners are not valid: {}",
                    invalid.len(),
                    invalid.join(", ")
                ),
            )
        } else {
            Cond::no(
                types::ACCEPTED,
                reasons::LISTENERS_NOT_VALID,
                format!("no valid listeners: {}", invalid.join(", ")),
            )
        };
        let programmed = if let Some(problem) = &self.address_unusable {
            Cond::no(types::PROGRAMMED, reasons::ADDRESS_NOT_USABLE, problem.clone())
        } else if self.programmed() {
            let addrs: Vec<String> = self.bind.iter().map(IpAddr::to_string).collect();
            let msg = if self.listeners.iter().any(ListenerState::serves) {
                format!("serving on {}", addrs.join(", "))
            } else {
                format!("programmed on {}", addrs.join(", "))
            };
            Cond::yes(types::PROGRAMMED, reasons::PROGRAMMED, msg)
        } else {
            Cond::no(types::PROGRAMMED, reasons::INVALID, "no listener can be served")
        };
        vec![accepted, programmed]
    }

    /// Whether any listener is valid (`Programmed=True`; HTTP and HTTPS listeners count).
    pub(crate) fn programmed(&self) -> bool {
        self.usable() && self.listeners.iter().any(|l| l.set.is_none() && l.valid())
    }

    /// Whether the Gateway can be served at all: accepted addresses and parameters, and every
    /// requested address usable.
    pub(crate) fn usable(&self) -> bool {
        self.address_problem.is_none()
            && self.address_unusable.is_none()
            && self.invalid_parameters.is_none()
    }

    /// Sockets each listener binds.
    pub(crate) fn sockets(&self, listener: usize) -> Vec<SocketAddr> {
        // Validated by the loader: 1..=65535.
        let port = u16::try_from(self.listeners[listener].spec.port).unwrap_or(0);
        self.bind.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
    }
}

/// The protocol family a listener speaks on its port, for conflict detection: both TLS modes
/// are one family (the SNI picks the listener before the mode matters).
fn class(l: &ListenerState<'_>) -> String {
    match l.served {
        Served::Passthrough | Served::Terminate => "TLS".into(),
        Served::Http | Served::Https | Served::Unsupported => l.spec.protocol.clone(),
    }
}

pub(crate) fn listener_state<'r>(
    l: &'r Listener,
    gateway_ns: &str,
    from_kind: &str,
    set: Option<usize>,
    certs: &Certificates<'_>,
) -> ListenerState<'r> {
    let served = match (l.protocol.as_str(), l.tls.as_ref().and_then(|t| t.mode.as_deref())) {
        ("TLS", Some("Passthrough")) => Served::Passthrough,
        // The CRD defaults `tls.mode` to Terminate.
        ("TLS", _) => Served::Terminate,
        ("HTTP", _) => Served::Http,
        ("HTTPS", _) => Served::Https,
        _ => Served::Unsupported,
    };
    let protocol_kinds = served.route_kinds();
    let mut supported_kinds = Vec::new();
    let mut invalid_kinds = Vec::new();
    let requested = l.allowed_routes.as_ref().map(|a| a.kinds.as_slice()).unwrap_or(&[]);
    if requested.is_empty() {
        supported_kinds =
            protocol_kinds.iter().map(|k| (GATEWAY_GROUP.to_string(), (*k).to_string())).collect();
    } else if !protocol_kinds.is_empty() {
        // Gateway API `ListenerStatus.SupportedKinds`: "If this field is specified, and some of
        // the specified kinds are invalid, the listener MUST set ResolvedRefs to False with the
        // InvalidRouteKinds reason" and list only the valid ones.
        for k in requested {
            let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
            let pair = (group.to_string(), k.kind.clone());
            if group == GATEWAY_GROUP && protocol_kinds.contains(&k.kind.as_str()) {
                if !supported_kinds.contains(&pair) {
                    supported_kinds.push(pair);
                }
            } else {
                invalid_kinds.push(if group.is_empty() {
                    k.kind.clone()
                } else {
                    format!("{}.{group}", k.kind)
                });
            }
        }
    }
    let certificates = matches!(served, Served::Terminate | Served::Https).then(|| {
        let refs = l.tls.as_ref().map(|t| t.certificate_refs.as_slice()).unwrap_or(&[]);
        let mut c = certs.resolve(from_kind, gateway_ns, refs);
        if refs.is_empty() {
            // The CRD admits `options` instead of certificateRefs; sniway reads certificates
            // only from certificateRefs and reads no option.
            c.problems.push((
                reasons::INVALID_CERTIFICATE_REF,
                "tls.mode Terminate needs certificateRefs: sniway reads certificates only from \
                 Secrets referenced there (tls.options are not read)"
                    .into(),
            ));
        }
        c
    });
    ListenerState {
        spec: l,
        hostname: l.hostname.as_deref().map(HostPattern::parse),
        served,
        supported_kinds,
        invalid_kinds,
        conflict: None,
        port_unavailable: None,
        attached: BTreeSet::new(),
        certificates,
        set,
        owner_ns: gateway_ns.to_string(),
    }
}

/// Places served listeners (see [`ListenerState::serves`]) of every Gateway on sockets, oldest Gateway first
/// (`creationTimestamp`, then `namespace/name`).
///
/// File-mode rule (sniway's choice; the Gateway API leaves merging Gateways to
/// implementations): Gateways binding the same (address, port) share one socket and their
/// listeners are told apart by hostname. When two Gateways claim the same hostname there, the
/// older keeps it and the other listener gets `Accepted=False/PortUnavailable` naming it. The same
/// holds when a specific address and the unspecified address of its family overlap on one port,
/// since the kernel cannot bind both.
pub(crate) fn assign_sockets(gateways: &mut [GatewayState<'_>], order: &[usize]) {
    // socket -> [(hostname, gateway index, listener name)]
    let mut taken: BTreeMap<SocketAddr, Vec<(Option<HostPattern>, usize, String)>> =
        BTreeMap::new();
    for &g in order {
        if !gateways[g].usable() {
            continue;
        }
        for li in 0..gateways[g].listeners.len() {
            if !gateways[g].listeners[li].serves() {
                continue;
            }
            let host = gateways[g].listeners[li].hostname.clone();
            let mut problem = None;
            for sock in gateways[g].sockets(li) {
                for (other, users) in &taken {
                    let Some((_, og, _)) = users.iter().find(|(_, og, _)| *og != g) else {
                        continue;
                    };
                    let other_key = gateways[*og].key();
                    if *other == sock {
                        if let Some((_, og, ol)) =
                            users.iter().find(|(h, og, _)| *og != g && *h == host)
                        {
                            problem = Some(format!(
                                "{sock} with hostname {} is already served by listener {ol} of \
                                 Gateway {}, which is older",
                                host.as_ref().map_or("(any)".to_string(), ToString::to_string),
                                gateways[*og].key()
                            ));
                        }
                    } else if other.port() == sock.port()
                        && other.is_ipv4() == sock.is_ipv4()
                        && (other.ip().is_unspecified() || sock.ip().is_unspecified())
                    {
                        problem = Some(format!(
                            "{sock} overlaps {other}, bound by Gateway {other_key}, which is older"
                        ));
                    }
                }
            }
            match problem {
                Some(msg) => gateways[g].listeners[li].port_unavailable = Some(msg),
                None => {
                    let name = gateways[g].listeners[li].spec.name.clone();
                    for sock in gateways[g].sockets(li) {
                        taken.entry(sock).or_default().push((host.clone(), g, name.clone()));
                    }
                }
            }
        }
    }
}
