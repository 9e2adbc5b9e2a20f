//! TLSRoute attachment: which listeners each parentRef selects, whether they allow the route,
//! which hostnames survive intersection, and the route parent's `Accepted` condition.

use std::collections::BTreeMap;

use sniway_model::{HostPattern, intersect};

use crate::api::ParentReference;
use crate::gateway::GatewayState;
use crate::resources::{Object, TlsRoute};
use crate::status::conditions::{Cond, reasons, types};

/// One routing entry of a route: a rule index and the hostname it answers (`None` = every
/// name the listener allows, a v1alpha2 route without hostnames).
pub(crate) type Entry = (usize, Option<HostPattern>);

/// The route's entries before listener intersection.
///
/// v1 and v1alpha3: every hostname to the single rule. v1alpha2: each rule answers the route's
/// hostnames (or every name when there are none), except rules using the `matches[].snis`
/// extension, which answer those SNIs (narrowed by the route's hostnames when it has some).
pub(crate) fn entries(route: &TlsRoute) -> Vec<Entry> {
    let hosts: Vec<HostPattern> =
        route.spec.hostnames.iter().map(|h| HostPattern::parse(h)).collect();
    let mut out = Vec::new();
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let snis: Vec<HostPattern> = rule
            .matches
            .iter()
            .flatten()
            .flat_map(|m| m.snis.iter())
            .map(|s| HostPattern::parse(s))
            .collect();
        if snis.is_empty() {
            if hosts.is_empty() {
                out.push((i, None));
            } else {
                out.extend(hosts.iter().map(|h| (i, Some(h.clone()))));
            }
        } else if hosts.is_empty() {
            out.extend(snis.into_iter().map(|s| (i, Some(s))));
        } else {
            for s in &snis {
                for h in &hosts {
                    if let Some(x) = intersect(Some(h), Some(s)) {
                        out.push((i, x));
                    }
                }
            }
        }
    }
    out
}

/// What one parentRef achieved on its Gateway.
pub(crate) struct Attachment {
    /// The parent's `Accepted` condition.
    pub accepted: Cond,
    /// Listener index -> entries with intersected hostnames (empty unless accepted).
    pub listeners: Vec<(usize, Vec<Entry>)>,
}

/// Attaches `route` through `pref` to `gw`.
///
/// Gateway API v1.6.1 `ParentReference` godoc and conformance (digest sections 3 and 5):
/// `sectionName` and `port` select listeners (both must match when both are set); a listener
/// must allow the route's namespace and kind; at least one route hostname must intersect the
/// listener hostname. The first failing step names the reason: `NoMatchingParent`,
/// `NotAllowedByListeners`, `NoMatchingListenerHostname`.
pub(crate) fn attach(
    route: &Object<TlsRoute>,
    pref: &ParentReference,
    gw: &GatewayState<'_>,
    route_entries: &[Entry],
    ns_labels: &BTreeMap<String, String>,
    set: Option<usize>,
) -> Attachment {
    let selected: Vec<usize> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.set == set)
        .filter(|(_, l)| pref.section_name.as_ref().is_none_or(|s| *s == l.spec.name))
        .filter(|(_, l)| pref.port.is_none_or(|p| p == l.spec.port))
        .map(|(i, _)| i)
        .collect();
    let fail = |reason, message: String| Attachment {
        accepted: Cond::no(types::ACCEPTED, reason, message),
        listeners: vec![],
    };
    if selected.is_empty() {
        let what = match (&pref.section_name, pref.port) {
            (Some(s), Some(p)) => format!("no listener named {s} on port {p}"),
            (Some(s), None) => format!("no listener named {s}"),
            (None, Some(p)) => format!("no listener on port {p}"),
            (None, None) => "the Gateway has no listeners".to_string(),
        };
        return fail(reasons::NO_MATCHING_PARENT, format!("Gateway {}: {what}", gw.key()));
    }
    let mut refusals = Vec::new();
    let mut allowed = Vec::new();
    for i in selected {
        let l = &gw.listeners[i];
        if !l.supports_tls_route() {
            refusals.push(format!("listener {} does not support TLSRoute", l.spec.name));
        } else if !l.allows_namespace(&route.meta.namespace, ns_labels) {
            refusals.push(format!(
                "listener {} does not allow routes from namespace {}",
                l.spec.name, route.meta.namespace
            ));
        } else {
            allowed.push(i);
        }
    }
    if allowed.is_empty() {
        return fail(
            reasons::NOT_ALLOWED_BY_LISTENERS,
            format!("Gateway {}: {}", gw.key(), refusals.join("; ")),
        );
    }
    let mut listeners = Vec::new();
    for i in allowed {
        let lh = gw.listeners[i].hostname.as_ref();
        let hits: Vec<Entry> = route_entries
            .iter()
            .filter_map(|(rule, h)| intersect(lh, h.as_ref()).map(|x| (*rule, x)))
            .collect();
        if !hits.is_empty() {
            listeners.push((i, hits));
        }
    }
    if listeners.is_empty() {
        return fail(
            reasons::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no hostname of the route intersects a listener hostname of Gateway {}",
                gw.key()
            ),
        );
    }
    let names: Vec<&str> =
        listeners.iter().map(|(i, _)| gw.listeners[*i].spec.name.as_str()).collect();
    Attachment {
        accepted: Cond::yes(
            types::ACCEPTED,
            reasons::ACCEPTED,
            format!("attached to listener(s) {} of Gateway {}", names.join(", "), gw.key()),
        ),
        listeners,
    }
}

/// The listeners of `gw` an HTTPRoute attaches to through `pref`: selected by `sectionName`
/// and `port`, supporting HTTPRoute, allowing the route's namespace, and with a hostname
/// intersecting the route's (none = any). sniway serves no HTTPRoute; they only count in
/// `attachedRoutes` of HTTP and HTTPS listeners (conformance GatewayModifyListeners).
pub(crate) fn http_listeners(
    route: &Object<crate::api::HttpRouteSpec>,
    pref: &ParentReference,
    gw: &GatewayState<'_>,
    ns_labels: &BTreeMap<String, String>,
    set: Option<usize>,
) -> Vec<usize> {
    let hosts: Vec<HostPattern> =
        route.spec.hostnames.iter().map(|h| HostPattern::parse(h)).collect();
    gw.listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.set == set)
        .filter(|(_, l)| pref.section_name.as_ref().is_none_or(|s| *s == l.spec.name))
        .filter(|(_, l)| pref.port.is_none_or(|p| p == l.spec.port))
        .filter(|(_, l)| l.supports_kind(crate::gateway::HTTP_ROUTE))
        .filter(|(_, l)| l.allows_namespace(&route.meta.namespace, ns_labels))
        .filter(|(_, l)| {
            hosts.is_empty()
                || hosts.iter().any(|h| intersect(l.hostname.as_ref(), Some(h)).is_some())
        })
        .map(|(i, _)| i)
        .collect()
}
