//! What the Kubernetes API server would reject: the Gateway API v1.6.1 CRD OpenAPI schemas
//! (patterns, lengths, ranges, enums) and their CEL rules, plus the core/v1 and discovery/v1
//! name and port checks. Each check appends `(field path, message)`; the loader turns them
//! into errors naming the file and object.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::api::{
    AllowedRoutes, BackendRef, EndpointSliceDocument, GatewayClassSpec, GatewaySpec, LabelSelector,
    ParentReference, ReferenceGrantSpec, ServiceSpec, TlsRouteSpec,
};
use crate::policy::{
    BackendPolicySpec, ListenerPolicySpec, PolicyBackendReference, PolicyTargetReference,
    ProbeType, ProxyProtocolMode, RelayMode, UnmatchedAction, UnmatchedClients,
};
use crate::resources::RouteVersion;

/// Collected `(path, message)` findings for one object.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<(String, String)>,
    pub warnings: Vec<(String, String)>,
}

impl Findings {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push((path.into(), msg.into()));
    }
    fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push((path.into(), msg.into()));
    }
}

// === formats (names: crate::names) ===

use crate::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_label_chars, is_qualified_name,
};

/// Gateway API `Hostname`: 1..253 characters, pattern
/// `^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`. With
/// `reject_ip` (the TLSRoute v1 CEL rule), an IP address is also rejected.
pub(crate) fn hostname_problem(h: &str, reject_ip: bool) -> Option<String> {
    if h.is_empty() || h.len() > 253 {
        return Some(format!("{h:?} must be 1 to 253 characters"));
    }
    let rest = h.strip_prefix("*.").unwrap_or(h);
    if rest.split('.').any(|l| !is_label_chars(l)) {
        if h.chars().any(|c| c.is_ascii_uppercase()) {
            return Some(format!("{h:?} must be lowercase (RFC 1123 subdomain)"));
        }
        if h == "*" {
            return Some(format!(
                "{h:?} is not a valid hostname: a bare \"*\" is not allowed, use a leading \"*.\""
            ));
        }
        return Some(format!(
            "{h:?} is not a valid hostname: lowercase RFC 1123 labels, with \"*\" only as a \
             leading \"*.\""
        ));
    }
    if reject_ip && h.parse::<IpAddr>().is_ok() {
        return Some(format!("{h:?} is an IP address; hostnames must be DNS names"));
    }
    None
}

/// Gateway API `Group`: empty or an RFC 1123 subdomain, at most 253 characters.
fn is_group(s: &str) -> bool {
    s.is_empty() || is_dns1123_subdomain(s)
}

/// Gateway API `Kind`: `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`, 1..63 characters.
fn is_kind(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Gateway API `SectionName`: an RFC 1123 subdomain shape, 1..253 characters.
fn is_section_name(s: &str) -> bool {
    is_dns1123_subdomain(s)
}

/// Gateway API v1.6.1 `ProtocolType`: 1..255 characters matching
/// `^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$`.
/// The first alternative is a bare token (`TLS`, `HTTP`, also `INVALID`: an unknown protocol is
/// admitted and reported on the listener, not rejected). The second is anchored at the end
/// only, as in the CRD, so the API server admits any string whose last `/` is followed by
/// alphanumerics and preceded by a lowercase letter or digit (`example.com/Proto`, but also
/// `Foo.example.com/Proto`, whose suffix `oo.example.com/Proto` matches).
fn is_protocol(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let b = s.as_bytes();
    let token = b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    let prefixed = s.rsplit_once('/').is_some_and(|(domain, name)| {
        !name.is_empty()
            && name.bytes().all(|c| c.is_ascii_alphanumeric())
            && domain.bytes().last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    token || prefixed
}

fn check_port(f: &mut Findings, path: String, port: i64) {
    if !(1..=65535).contains(&port) {
        f.err(path, format!("port {port} is out of range 1..65535"));
    }
}

fn check_len<T>(f: &mut Findings, path: &str, items: &[T], min: usize, max: usize) {
    if items.len() < min || items.len() > max {
        let what = if min == max {
            format!("exactly {min}")
        } else if min == 0 {
            format!("at most {max}")
        } else {
            format!("{min} to {max}")
        };
        f.err(path, format!("must have {what} entries, found {}", items.len()));
    }
}

/// Name rules per kind (`metadata.name`), as the API server validates them.
pub(crate) fn check_object_name(kind: &str, name: &str) -> Option<String> {
    let ok = match kind {
        "Service" => is_dns1035_label(name),
        "Namespace" => is_dns1123_label(name),
        _ => is_dns1123_subdomain(name),
    };
    (!ok).then(|| {
        let rule = match kind {
            "Service" => {
                "an RFC 1035 label (lowercase letters, digits and '-', starting with a \
                          letter, at most 63 characters)"
            }
            "Namespace" => {
                "an RFC 1123 label (lowercase letters, digits and '-', at most 63 \
                            characters)"
            }
            _ => {
                "an RFC 1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 \
                  characters)"
            }
        };
        format!("{name:?} must be {rule}")
    })
}

fn check_namespace_ref(f: &mut Findings, path: String, ns: &Option<String>) {
    if let Some(ns) = ns
        && !is_dns1123_label(ns)
    {
        f.err(path, format!("{ns:?} is not a valid namespace name (RFC 1123 label)"));
    }
}

fn check_group_kind(f: &mut Findings, path: &str, group: &Option<String>, kind: &Option<String>) {
    if let Some(g) = group
        && !is_group(g)
    {
        f.err(format!("{path}.group"), format!("{g:?} is not a valid API group"));
    }
    if let Some(k) = kind
        && !is_kind(k)
    {
        f.err(format!("{path}.kind"), format!("{k:?} is not a valid kind"));
    }
}

fn check_object_ref_name(f: &mut Findings, path: String, name: &str) {
    if name.is_empty() || name.len() > 253 {
        f.err(path, "must be 1 to 253 characters");
    }
}

// === GatewayClass ===

pub(crate) fn gateway_class(spec: &GatewayClassSpec, f: &mut Findings) {
    // `GatewayController`: `domain/path`, 1..253 characters.
    let ok = spec.controller_name.split_once('/').is_some_and(|(d, p)| {
        spec.controller_name.len() <= 253 && is_dns1123_subdomain(d) && !p.is_empty()
    });
    if !ok {
        f.err(
            "spec.controllerName",
            format!("{:?} must be a domain-prefixed path (DOMAIN/PATH)", spec.controller_name),
        );
    }
}

// === Gateway ===

pub(crate) fn gateway(spec: &GatewaySpec, f: &mut Findings) {
    if spec.gateway_class_name.is_empty() || spec.gateway_class_name.len() > 253 {
        f.err("spec.gatewayClassName", "must be 1 to 253 characters");
    }
    check_len(f, "spec.listeners", &spec.listeners, 1, 64);
    check_len(f, "spec.addresses", &spec.addresses, 0, 16);
    listeners(&spec.listeners, f);
    if let Some(ns) = spec.allowed_listeners.as_ref().and_then(|a| a.namespaces.as_ref()) {
        let p = "spec.allowedListeners.namespaces";
        if let Some(from) = &ns.from
            && !matches!(from.as_str(), "All" | "Selector" | "Same" | "None")
        {
            f.err(
                format!("{p}.from"),
                format!("{from:?} must be one of All, Selector, Same, None"),
            );
        }
        if let Some(sel) = &ns.selector {
            label_selector(sel, &format!("{p}.selector"), f);
        }
    }
    gateway_rest(spec, f);
}

/// `ListenerSet` (v1): a parentRef to a Gateway and 1..64 listeners validated as a Gateway's.
pub(crate) fn listener_set(spec: &crate::api::ListenerSetSpec, f: &mut Findings) {
    let p = &spec.parent_ref;
    check_group_kind(f, "spec.parentRef", &p.group, &p.kind);
    check_namespace_ref(f, "spec.parentRef.namespace".into(), &p.namespace);
    check_object_ref_name(f, "spec.parentRef.name".into(), &p.name);
    check_len(f, "spec.listeners", &spec.listeners, 1, 64);
    listeners(&spec.listeners, f);
}

/// The listener rules shared by Gateways and ListenerSets (`spec.listeners`).
fn listeners(listeners: &[crate::api::Listener], f: &mut Findings) {
    let spec_listeners = listeners;
    let mut names = BTreeSet::new();
    let mut triples = BTreeMap::new();
    for (i, l) in spec_listeners.iter().enumerate() {
        let p = format!("spec.listeners[{i}]");
        if !is_section_name(&l.name) {
            f.err(format!("{p}.name"), format!("{:?} is not a valid listener name", l.name));
        }
        // CEL: "Listener name must be unique within the Gateway".
        if !names.insert(l.name.as_str()) {
            f.err(format!("{p}.name"), format!("listener name {:?} is not unique", l.name));
        }
        check_port(f, format!("{p}.port"), l.port);
        // An unknown protocol that matches the pattern is admitted: compile gives that listener
        // `Accepted=False/UnsupportedProtocol`.
        if !is_protocol(&l.protocol) {
            f.err(format!("{p}.protocol"), format!("{:?} is not a valid protocol", l.protocol));
        }
        if let Some(h) = &l.hostname
            && let Some(problem) = hostname_problem(h, false)
        {
            f.err(format!("{p}.hostname"), problem);
        }
        let proto = l.protocol.as_str();
        // CEL: "hostname must not be specified for protocols ['TCP', 'UDP']".
        if matches!(proto, "TCP" | "UDP") && l.hostname.is_some() {
            f.err(format!("{p}.hostname"), format!("must not be set for protocol {proto}"));
        }
        // CEL: "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']".
        if matches!(proto, "HTTP" | "TCP" | "UDP") && l.tls.is_some() {
            f.err(format!("{p}.tls"), format!("must not be set for protocol {proto}"));
        }
        // CEL: "tls mode must be set for protocol TLS" / "tls must be specified for protocols
        // ['HTTPS', 'TLS']". The CRD defaults an absent `tls.mode` to Terminate inside a present
        // `tls` block, so only a missing block is rejected.
        if matches!(proto, "HTTPS" | "TLS") && l.tls.is_none() {
            let msg = if proto == "TLS" {
                "a TLS listener must set tls.mode (Passthrough or Terminate)"
            } else {
                "an HTTPS listener must set tls (mode Terminate with certificateRefs)"
            };
            f.err(format!("{p}.tls"), msg);
        }
        if let Some(tls) = &l.tls {
            let mode = tls.mode.as_deref().unwrap_or("Terminate");
            if !matches!(mode, "Terminate" | "Passthrough") {
                f.err(
                    format!("{p}.tls.mode"),
                    format!("{mode:?} must be one of Terminate, Passthrough"),
                );
            }
            // CEL: "tls mode must be Terminate for protocol HTTPS".
            if proto == "HTTPS" && mode != "Terminate" {
                f.err(format!("{p}.tls.mode"), "must be Terminate for protocol HTTPS");
            }
            // CEL: "certificateRefs or options must be specified when mode is Terminate".
            if mode == "Terminate" && tls.certificate_refs.is_empty() && tls.options.is_empty() {
                f.err(
                    format!("{p}.tls"),
                    "certificateRefs or options must be specified when mode is Terminate \
                     (tls.mode defaults to Terminate)",
                );
            }
            check_len(f, &format!("{p}.tls.certificateRefs"), &tls.certificate_refs, 0, 64);
            if tls.options.len() > 16 {
                f.err(format!("{p}.tls.options"), "must have at most 16 entries");
            }
            for (j, c) in tls.certificate_refs.iter().enumerate() {
                let cp = format!("{p}.tls.certificateRefs[{j}]");
                check_group_kind(f, &cp, &c.group, &c.kind);
                check_object_ref_name(f, format!("{cp}.name"), &c.name);
                check_namespace_ref(f, format!("{cp}.namespace"), &c.namespace);
            }
        }
        if let Some(ar) = &l.allowed_routes {
            allowed_routes(ar, &format!("{p}.allowedRoutes"), f);
        }
        // CEL: "Combination of port, protocol and hostname must be unique for each listener".
        let key = (l.port, l.protocol.clone(), l.hostname.clone());
        if let Some(first) = triples.insert(key, i) {
            f.err(
                p.clone(),
                format!(
                    "port, protocol and hostname must be unique; listener {:?} has the same \
                     combination",
                    spec_listeners[first].name
                ),
            );
        }
    }
}

fn gateway_rest(spec: &GatewaySpec, f: &mut Findings) {
    if let Some(infra) = &spec.infrastructure {
        // CRD: at most 8 labels and 8 annotations; keys are qualified names, label values at
        // most 63 characters, annotation values at most 4096.
        for (what, map, max_value) in
            [("labels", &infra.labels, 63), ("annotations", &infra.annotations, 4096)]
        {
            if map.len() > 8 {
                f.err(format!("spec.infrastructure.{what}"), "must have at most 8 entries");
            }
            for (k, v) in map {
                if !is_qualified_name(k) {
                    f.err(
                        format!("spec.infrastructure.{what}[{k}]"),
                        format!("{k:?} is not a valid key (an optional DNS prefix and '/', then a name of at most 63 characters)"),
                    );
                }
                if v.len() > max_value {
                    f.err(
                        format!("spec.infrastructure.{what}[{k}]"),
                        format!("value must be at most {max_value} characters"),
                    );
                }
            }
        }
        if let Some(p) = &infra.parameters_ref {
            let path = "spec.infrastructure.parametersRef";
            check_group_kind(f, path, &Some(p.group.clone()), &Some(p.kind.clone()));
            check_object_ref_name(f, format!("{path}.name"), &p.name);
        }
    }

    let mut seen = BTreeSet::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let p = format!("spec.addresses[{i}]");
        let ty = a.type_.as_deref().unwrap_or("IPAddress");
        let Some(value) = a.value.as_deref() else {
            // `value` is required except for the experimental empty-value dynamic assignment.
            continue;
        };
        if value.is_empty() || value.len() > 253 {
            f.err(format!("{p}.value"), "must be 1 to 253 characters");
        }
        // CEL: "IPAddress values must be an IP address" / "Hostname value must only contain
        // valid characters (matching ^(\*\.)?[a-z0-9]...)".
        match ty {
            "IPAddress" if value.parse::<IpAddr>().is_err() => {
                f.err(format!("{p}.value"), format!("{value:?} must be an IP address"));
            }
            "Hostname" if hostname_problem(value, false).is_some() => {
                f.err(format!("{p}.value"), format!("{value:?} must be a valid hostname"));
            }
            _ => {}
        }
        // CEL: "IPAddress values must be unique" / "Hostname values must be unique".
        if !seen.insert((ty, value)) {
            f.err(format!("{p}.value"), format!("{ty} value {value:?} must be unique"));
        }
    }
}

fn allowed_routes(ar: &AllowedRoutes, p: &str, f: &mut Findings) {
    if let Some(ns) = &ar.namespaces {
        if let Some(from) = &ns.from
            && !matches!(from.as_str(), "All" | "Selector" | "Same")
        {
            f.err(
                format!("{p}.namespaces.from"),
                format!("{from:?} must be one of All, Selector, Same"),
            );
        }
        if let Some(sel) = &ns.selector {
            label_selector(sel, &format!("{p}.namespaces.selector"), f);
        }
        if ns.from.as_deref() == Some("Selector") && ns.selector.is_none() {
            f.warn(
                format!("{p}.namespaces.selector"),
                "from: Selector without a selector: no namespace is selected",
            );
        }
    }
    check_len(f, &format!("{p}.kinds"), &ar.kinds, 0, 8);
    for (i, k) in ar.kinds.iter().enumerate() {
        check_group_kind(f, &format!("{p}.kinds[{i}]"), &k.group, &Some(k.kind.clone()));
    }
}

fn label_selector(sel: &LabelSelector, p: &str, f: &mut Findings) {
    for (i, e) in sel.match_expressions.iter().enumerate() {
        let ep = format!("{p}.matchExpressions[{i}]");
        match e.operator.as_str() {
            "In" | "NotIn" if e.values.is_empty() => {
                f.err(format!("{ep}.values"), format!("must be non-empty for {}", e.operator));
            }
            "Exists" | "DoesNotExist" if !e.values.is_empty() => {
                f.err(format!("{ep}.values"), format!("must be empty for {}", e.operator));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => f.err(
                format!("{ep}.operator"),
                format!("{op:?} must be one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
    }
}

// === TLSRoute ===

pub(crate) fn tls_route(spec: &TlsRouteSpec, version: RouteVersion, f: &mut Findings) {
    check_len(f, "spec.parentRefs", &spec.parent_refs, 0, 32);
    for (i, r) in spec.parent_refs.iter().enumerate() {
        parent_ref(r, &format!("spec.parentRefs[{i}]"), f);
    }
    parent_ref_uniqueness(&spec.parent_refs, version, f);

    let (min_hosts, max_hosts) = match version {
        RouteVersion::V1 => (1, 1024),
        RouteVersion::V1alpha3 => (1, 16),
        RouteVersion::V1alpha2 => (0, 16),
    };
    if spec.hostnames.is_empty() && min_hosts > 0 {
        f.err(
            "spec.hostnames",
            format!("is required in TLSRoute {}: at least one hostname", version.as_str()),
        );
    } else {
        check_len(f, "spec.hostnames", &spec.hostnames, min_hosts, max_hosts);
    }
    for (i, h) in spec.hostnames.iter().enumerate() {
        // The "no IP address" CEL rule exists on v1 only.
        if let Some(problem) = hostname_problem(h, version == RouteVersion::V1) {
            f.err(format!("spec.hostnames[{i}]"), problem);
        } else if h.parse::<IpAddr>().is_ok() {
            f.warn(
                format!("spec.hostnames[{i}]"),
                format!("{h:?} is an IP address; no ClientHello SNI can match it"),
            );
        }
    }

    match version {
        RouteVersion::V1 | RouteVersion::V1alpha3 => check_len(f, "spec.rules", &spec.rules, 1, 1),
        RouteVersion::V1alpha2 => check_len(f, "spec.rules", &spec.rules, 1, 16),
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        if let Some(n) = &rule.name
            && !is_section_name(n)
        {
            f.err(format!("{rp}.name"), format!("{n:?} is not a valid rule name"));
        }
        check_len(f, &format!("{rp}.backendRefs"), &rule.backend_refs, 1, 16);
        for (j, b) in rule.backend_refs.iter().enumerate() {
            backend_ref(b, &format!("{rp}.backendRefs[{j}]"), f);
        }
        if let Some(matches) = &rule.matches {
            if version == RouteVersion::V1alpha2 {
                f.warn(
                    format!("{rp}.matches"),
                    "`matches[].snis` is not part of the Gateway API; an API server drops this \
                     field. sniway routes these SNIs to this rule's backends (extension)",
                );
                for (j, m) in matches.iter().enumerate() {
                    if m.snis.is_empty() {
                        f.err(format!("{rp}.matches[{j}].snis"), "must list at least one SNI");
                    }
                    for (k, h) in m.snis.iter().enumerate() {
                        if let Some(problem) = hostname_problem(h, true) {
                            f.err(format!("{rp}.matches[{j}].snis[{k}]"), problem);
                        }
                    }
                }
            } else {
                f.warn(format!("{rp}.matches"), "unknown field, ignored");
            }
        }
    }
}

/// `HTTPRoute` (v1): the fields sniway reads.
pub(crate) fn http_route(spec: &crate::api::HttpRouteSpec, f: &mut Findings) {
    check_len(f, "spec.parentRefs", &spec.parent_refs, 0, 32);
    for (i, r) in spec.parent_refs.iter().enumerate() {
        parent_ref(r, &format!("spec.parentRefs[{i}]"), f);
    }
    parent_ref_uniqueness(&spec.parent_refs, RouteVersion::V1, f);
    check_len(f, "spec.hostnames", &spec.hostnames, 0, 16);
    for (i, h) in spec.hostnames.iter().enumerate() {
        if let Some(problem) = hostname_problem(h, false) {
            f.err(format!("spec.hostnames[{i}]"), problem);
        }
    }
}

fn parent_ref(r: &ParentReference, p: &str, f: &mut Findings) {
    check_group_kind(f, p, &r.group, &r.kind);
    check_namespace_ref(f, format!("{p}.namespace"), &r.namespace);
    check_object_ref_name(f, format!("{p}.name"), &r.name);
    if let Some(s) = &r.section_name
        && !is_section_name(s)
    {
        f.err(format!("{p}.sectionName"), format!("{s:?} is not a valid section name"));
    }
    if let Some(port) = r.port {
        check_port(f, format!("{p}.port"), port);
    }
}

/// CEL on `parentRefs`: references to the same parent must be told apart. The standard channel
/// (v1) requires a distinct `sectionName` on each; the experimental channel (which alone serves
/// v1alpha2 and v1alpha3) counts the `(sectionName, port)` pair.
fn parent_ref_uniqueness(refs: &[ParentReference], version: RouteVersion, f: &mut Findings) {
    let mut by_parent: BTreeMap<(String, String, String, String), Vec<usize>> = BTreeMap::new();
    for (i, r) in refs.iter().enumerate() {
        let key = (
            r.group.clone().unwrap_or_else(|| crate::GATEWAY_GROUP.into()),
            r.kind.clone().unwrap_or_else(|| "Gateway".into()),
            r.namespace.clone().unwrap_or_default(),
            r.name.clone(),
        );
        by_parent.entry(key).or_default().push(i);
    }
    for idxs in by_parent.values().filter(|v| v.len() > 1) {
        let mut seen = BTreeSet::new();
        for &i in idxs {
            let r = &refs[i];
            let p = format!("spec.parentRefs[{i}]");
            let distinct = match version {
                RouteVersion::V1 => {
                    r.section_name.is_some() && seen.insert((r.section_name.clone(), None))
                }
                _ => {
                    (r.section_name.is_some() || r.port.is_some())
                        && seen.insert((r.section_name.clone(), r.port))
                }
            };
            if !distinct {
                let msg = match version {
                    RouteVersion::V1 => {
                        "sectionName must be set and unique when parentRefs has several \
                         references to the same parent"
                    }
                    _ => {
                        "sectionName or port must be set, and the combination unique, when \
                         parentRefs has several references to the same parent"
                    }
                };
                f.err(p, msg);
            }
        }
    }
}

fn backend_ref(b: &BackendRef, p: &str, f: &mut Findings) {
    check_group_kind(f, p, &b.group, &b.kind);
    check_namespace_ref(f, format!("{p}.namespace"), &b.namespace);
    check_object_ref_name(f, format!("{p}.name"), &b.name);
    if let Some(port) = b.port {
        check_port(f, format!("{p}.port"), port);
    }
    let is_service = b.group.as_deref().unwrap_or("").is_empty()
        && b.kind.as_deref().unwrap_or("Service") == "Service";
    // CEL: "Must have port for Service reference".
    if is_service && b.port.is_none() {
        f.err(format!("{p}.port"), "is required for a Service reference");
    }
    if let Some(w) = b.weight
        && !(0..=1_000_000).contains(&w)
    {
        f.err(format!("{p}.weight"), format!("{w} is out of range 0..1000000"));
    }
    if b.filters.is_some() {
        f.warn(format!("{p}.filters"), "unknown field, ignored");
    }
}

// === ReferenceGrant ===

// === ListenerPolicy (sniway.io/v1alpha1, deploy/crds) ===

/// What the generated CRD schema rejects beyond types and duration patterns (which the types
/// check while deserializing): 1..16 targetRefs, each a Gateway API
/// `LocalPolicyTargetReferenceWithSectionName`.
pub(crate) fn listener_policy(spec: &ListenerPolicySpec, f: &mut Findings) {
    target_refs(&spec.target_refs, f);
    if let Some(pp) = &spec.proxy_protocol {
        check_len(f, "spec.proxyProtocol.trustedCIDRs", &pp.trusted_cidrs, 0, 64);
        for (i, c) in pp.trusted_cidrs.iter().enumerate() {
            if let Err(e) = c.parse::<sniway_model::settings::Cidr>() {
                f.err(format!("spec.proxyProtocol.trustedCIDRs[{i}]"), e);
            }
        }
        if pp.mode != ProxyProtocolMode::Off && pp.trusted_cidrs.is_empty() {
            f.err(
                "spec.proxyProtocol.trustedCIDRs",
                format!(
                    "is required with mode {:?}: name the load balancers whose header is \
                     believed (0.0.0.0/0 and ::/0 trust every peer)",
                    pp.mode
                ),
            );
        }
    }
    for (field, u) in [("noSni", &spec.no_sni), ("noMatch", &spec.no_match)] {
        if let Some(u) = u {
            unmatched(u, &format!("spec.{field}"), f);
        }
    }
    if spec.relay == Some(RelayMode::Kernel) {
        f.warn("spec.relay", KERNEL_RELAY);
    }
}

/// The warning for `relay: Kernel`.
const KERNEL_RELAY: &str = "Kernel is accepted and carried, but connections relay with Splice until the in-kernel \
     relay exists";

fn unmatched(u: &UnmatchedClients, p: &str, f: &mut Findings) {
    match (&u.action, &u.backend_ref) {
        (UnmatchedAction::Backend, None) => {
            f.err(format!("{p}.backendRef"), "is required with action Backend")
        }
        (UnmatchedAction::Backend, Some(b)) => policy_backend_ref(b, &format!("{p}.backendRef"), f),
        (a, Some(_)) => f.warn(
            format!("{p}.backendRef"),
            format!("is ignored with action {a:?} (only Backend relays to it)"),
        ),
        (_, None) => {}
    }
}

fn policy_backend_ref(b: &PolicyBackendReference, p: &str, f: &mut Findings) {
    check_group_kind(f, p, &b.group, &b.kind);
    check_namespace_ref(f, format!("{p}.namespace"), &b.namespace);
    check_object_ref_name(f, format!("{p}.name"), &b.name);
    if let Some(port) = b.port {
        check_port(f, format!("{p}.port"), i64::from(port));
    }
    let is_service = b.group.as_deref().unwrap_or("").is_empty()
        && b.kind.as_deref().unwrap_or("Service") == "Service";
    if is_service && b.port.is_none() {
        f.err(format!("{p}.port"), "is required for a Service reference");
    }
}

/// A policy's `spec.targetRefs`: 1..16 Gateway API `LocalPolicyTargetReferenceWithSectionName`.
fn target_refs(refs: &[PolicyTargetReference], f: &mut Findings) {
    check_len(f, "spec.targetRefs", refs, 1, 16);
    for (i, t) in refs.iter().enumerate() {
        let p = format!("spec.targetRefs[{i}]");
        if !is_group(&t.group) {
            f.err(format!("{p}.group"), format!("{:?} is not a valid API group", t.group));
        }
        if !is_kind(&t.kind) {
            f.err(format!("{p}.kind"), format!("{:?} is not a valid kind", t.kind));
        }
        check_object_ref_name(f, format!("{p}.name"), &t.name);
        if let Some(s) = &t.section_name
            && !is_section_name(s)
        {
            f.err(format!("{p}.sectionName"), format!("{s:?} is not a valid section name"));
        }
    }
}

/// `BackendPolicy`: what the generated CRD schema rejects (ranges, required fields), plus the
/// combinations that make no sense (`tls` without `type: TLS`, `verify` without CA).
pub(crate) fn backend_policy(spec: &BackendPolicySpec, f: &mut Findings) {
    target_refs(&spec.target_refs, f);
    if let Some(a) = spec.failover.as_ref().and_then(|x| x.attempts)
        && !(1..=10).contains(&a)
    {
        f.err("spec.failover.attempts", format!("{a} is out of range 1..10"));
    }
    if spec.connect_timeout.is_some_and(|d| d.0.is_zero()) {
        f.err("spec.connectTimeout", "must be longer than 0s");
    }
    let hc = spec.health_check.as_ref();
    if let Some(a) = hc.and_then(|h| h.active.as_ref()) {
        let p = "spec.healthCheck.active";
        for (n, v) in [
            ("healthyThreshold", a.healthy_threshold),
            ("unhealthyThreshold", a.unhealthy_threshold),
        ] {
            if let Some(v) = v
                && !(1..=100).contains(&v)
            {
                f.err(format!("{p}.{n}"), format!("{v} is out of range 1..100"));
            }
        }
        for (n, v) in [("interval", a.interval), ("timeout", a.timeout)] {
            if v.is_some_and(|d| d.0.is_zero()) {
                f.err(format!("{p}.{n}"), "must be longer than 0s");
            }
        }
        match (a.type_, &a.tls) {
            (ProbeType::Tcp, Some(_)) => f.err(format!("{p}.tls"), "is only allowed with type TLS"),
            (ProbeType::Tls, Some(t)) => {
                if let Some(sni) = &t.sni {
                    if let Some(problem) = hostname_problem(sni, true) {
                        f.err(format!("{p}.tls.sni"), problem);
                    } else if sni.starts_with('*') {
                        f.err(
                            format!("{p}.tls.sni"),
                            format!("{sni:?} is a wildcard, not a server name"),
                        );
                    }
                }
                check_len(f, &format!("{p}.tls.caCertificateRefs"), &t.ca_certificate_refs, 0, 8);
                for (i, r) in t.ca_certificate_refs.iter().enumerate() {
                    let rp = format!("{p}.tls.caCertificateRefs[{i}]");
                    if !r.group.as_deref().unwrap_or("").is_empty() || r.kind != "ConfigMap" {
                        f.err(
                            format!("{rp}.kind"),
                            format!(
                                "{:?} is not supported: a CA certificate reference names a \
                                 ConfigMap (group \"\") holding {}",
                                r.kind,
                                crate::policy::CA_CERT_KEY
                            ),
                        );
                    }
                    if !is_dns1123_subdomain(&r.name) {
                        f.err(
                            format!("{rp}.name"),
                            format!("{:?} is not a valid ConfigMap name", r.name),
                        );
                    }
                }
                if t.verify == Some(true) && t.ca_certificate_refs.is_empty() {
                    f.err(
                        format!("{p}.tls.caCertificateRefs"),
                        "is required with verify: true (the check trusts no system roots)",
                    );
                }
                if t.verify == Some(true) && t.sni.is_none() {
                    f.err(
                        format!("{p}.tls.sni"),
                        "is required with verify: true (the name the certificate is verified for)",
                    );
                }
            }
            _ => {}
        }
    }
    if spec.relay == Some(RelayMode::Kernel) {
        f.warn("spec.relay", KERNEL_RELAY);
    }
}

pub(crate) fn reference_grant(spec: &ReferenceGrantSpec, f: &mut Findings) {
    check_len(f, "spec.from", &spec.from, 1, 16);
    check_len(f, "spec.to", &spec.to, 1, 16);
    for (i, e) in spec.from.iter().enumerate() {
        let p = format!("spec.from[{i}]");
        check_group_kind(f, &p, &Some(e.group.clone()), &Some(e.kind.clone()));
        if !is_dns1123_label(&e.namespace) {
            f.err(format!("{p}.namespace"), format!("{:?} is not a valid namespace", e.namespace));
        }
    }
    for (i, e) in spec.to.iter().enumerate() {
        let p = format!("spec.to[{i}]");
        check_group_kind(f, &p, &Some(e.group.clone()), &Some(e.kind.clone()));
        if let Some(n) = &e.name {
            check_object_ref_name(f, format!("{p}.name"), n);
        }
    }
}

// === core and discovery ===

/// `ServiceImport` (KEP-1645 CRD): type `ClusterSetIP` or `Headless`, ports 1..65535.
pub(crate) fn service_import(spec: &crate::api::ServiceImportSpec, f: &mut Findings) {
    if let Some(t) = &spec.type_
        && !matches!(t.as_str(), "ClusterSetIP" | "Headless")
    {
        f.err("spec.type", format!("{t:?} must be ClusterSetIP or Headless"));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        check_port(f, format!("spec.ports[{i}].port"), p.port);
    }
    for (i, ip) in spec.ips.iter().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            f.err(format!("spec.ips[{i}]"), format!("{ip:?} is not an IP address"));
        }
    }
}

pub(crate) fn service(spec: &ServiceSpec, f: &mut Findings) {
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        f.err(
            "spec.type",
            format!("{ty:?} must be ClusterIP, NodePort, LoadBalancer or ExternalName"),
        );
    }
    if ty == "ExternalName" {
        match &spec.external_name {
            Some(n) if is_dns1123_subdomain(&n.to_ascii_lowercase()) => {}
            Some(n) => f.err("spec.externalName", format!("{n:?} must be a DNS name")),
            None => f.err("spec.externalName", "is required for type ExternalName"),
        }
    }
    if let Some(ip) = &spec.cluster_ip
        && !ip.is_empty()
        && ip != "None"
        && ip.parse::<IpAddr>().is_err()
    {
        f.err("spec.clusterIP", format!("{ip:?} must be an IP address, \"None\" or empty"));
    }
    let mut names = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        check_port(f, format!("spec.ports[{i}].port"), p.port);
        if spec.ports.len() > 1 && p.name.as_deref().unwrap_or("").is_empty() {
            f.err(format!("spec.ports[{i}].name"), "is required when a Service has several ports");
        }
        if let Some(n) = &p.name
            && !names.insert(n.as_str())
        {
            f.err(format!("spec.ports[{i}].name"), format!("{n:?} is not unique"));
        }
    }
}

pub(crate) fn endpoint_slice(doc: &EndpointSliceDocument, f: &mut Findings) {
    if !matches!(doc.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
        f.err("addressType", format!("{:?} must be IPv4, IPv6 or FQDN", doc.address_type));
    }
    for (i, e) in doc.endpoints.iter().enumerate() {
        check_len(f, &format!("endpoints[{i}].addresses"), &e.addresses, 1, 100);
    }
    for (i, p) in doc.ports.iter().enumerate() {
        if let Some(port) = p.port {
            check_port(f, format!("ports[{i}].port"), port);
        }
    }
}
