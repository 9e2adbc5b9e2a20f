//! ListenerPolicy attachment (GEP-713, direct policy attachment): which listeners each policy
//! reaches, the settings each listener ends up with, and each policy's status.
//!
//! - A targetRef `{group: gateway.networking.k8s.io, kind: Gateway, name}` in the policy's own
//!   namespace reaches every listener of that Gateway; with `sectionName`, that listener only.
//! - Field by field, the more specific target wins: a listener target over a Gateway target.
//! - Between equally specific targets of one listener, the older policy wins the field
//!   (`creationTimestamp`, then `namespace/name`, as for Gateways and routes).
//! - Status, one ancestor entry per targetRef:
//!   - `Accepted=False/TargetNotFound`: another group or kind, no such Gateway (or one of a
//!     class not served), or no such listener for `sectionName`;
//!   - `Accepted=False/Conflicted` when any field the policy sets through this targetRef is
//!     overridden on any listener it reaches by an older policy attached as specifically; the
//!     message lists the fields, the listeners and the winners. The fields it did not lose still
//!     apply (each field is resolved on its own), as the message says;
//!   - `Accepted=True/Accepted` otherwise, including when a more specific policy overrides some
//!     of its fields (that is the intended layering, not a conflict);
//!   - with `noSni` or `noMatch` of `action: Backend`, a second condition `ResolvedRefs`: True,
//!     or False with the reason a TLSRoute backendRef would get (`InvalidKind`,
//!     `RefNotPermitted`, `BackendNotFound`); the listener's default then refuses its clients.
//! - `noSni`/`noMatch` `backendRef` is resolved once per policy, exactly like a TLSRoute
//!   backendRef (Service or ServiceImport; another namespace needs a ReferenceGrant from
//!   `ListenerPolicy` of group `sniway.io`), into a route of one backend in
//!   `ListenerTable.defaults`, identified as `<policy namespace>/<policy name>#0` for `noSni`
//!   and `#1` for `noMatch`. The listener whose policy wins the `noSni` (`noMatch`) field gets
//!   that policy's default route.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use sniway_model::settings::{AcceptProxyProtocol, Cidr, ProxyProtocolMode, Unmatched};
use sniway_model::{DefaultRoutes, ListenerSettings, Route, RouteId};

use crate::GATEWAY_GROUP;
use crate::backend::{Backends, Referrer, TargetKey};
use crate::compile::age;
use crate::gateway::GatewayState;
use crate::policy::{AncestorRef, ListenerPolicySpec, PolicyAncestorStatus, PolicyStatus};
use crate::policy::{PolicyBackendReference, UnmatchedAction, UnmatchedClients};
use crate::resources::{Object, Resources};
use crate::status::ObjectStatus;
use crate::status::conditions::{CONTROLLER_NAME, Cond, reasons, types};

/// Copies one field of a policy into the settings; `false` when the policy does not set it.
type Setter = fn(&ListenerPolicySpec, &mut ListenerSettings) -> bool;

fn put<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let set = value.is_some();
    if set {
        *slot = value;
    }
    set
}

fn dur(d: Option<crate::policy::GatewayDuration>) -> Option<Duration> {
    d.map(|d| d.0)
}

fn unmatched(u: Option<&UnmatchedClients>) -> Option<Unmatched> {
    u.map(|u| match u.action {
        UnmatchedAction::Close => Unmatched::Close,
        UnmatchedAction::Alert => Unmatched::Alert,
        UnmatchedAction::Backend => Unmatched::Backend,
    })
}

/// The PROXY protocol setting of a policy (CIDRs were validated by the loader).
fn accept_proxy(p: &crate::policy::ListenerProxyProtocol) -> AcceptProxyProtocol {
    AcceptProxyProtocol {
        mode: match p.mode {
            crate::policy::ProxyProtocolMode::Off => ProxyProtocolMode::Off,
            crate::policy::ProxyProtocolMode::Optional => ProxyProtocolMode::Optional,
            crate::policy::ProxyProtocolMode::Required => ProxyProtocolMode::Required,
        },
        trusted_cidrs: p.trusted_cidrs.iter().filter_map(|c| c.parse::<Cidr>().ok()).collect(),
    }
}

/// Every field a ListenerPolicy sets, by its path under `spec`.
const FIELDS: [(&str, Setter); 14] = [
    ("timeouts.hello", |p, s| {
        put(&mut s.hello_timeout, dur(p.timeouts.as_ref().and_then(|t| t.hello)))
    }),
    ("timeouts.handshake", |p, s| {
        put(&mut s.handshake_timeout, dur(p.timeouts.as_ref().and_then(|t| t.handshake)))
    }),
    ("timeouts.idle", |p, s| {
        put(&mut s.idle_timeout, dur(p.timeouts.as_ref().and_then(|t| t.idle)))
    }),
    ("timeouts.halfClose", |p, s| {
        put(&mut s.half_close_timeout, dur(p.timeouts.as_ref().and_then(|t| t.half_close)))
    }),
    ("timeouts.maxLifetime", |p, s| {
        put(&mut s.max_lifetime, dur(p.timeouts.as_ref().and_then(|t| t.max_lifetime)))
    }),
    ("keepalive.idle", |p, s| {
        put(&mut s.keepalive_idle, dur(p.keepalive.as_ref().and_then(|k| k.idle)))
    }),
    ("keepalive.interval", |p, s| {
        put(&mut s.keepalive_interval, dur(p.keepalive.as_ref().and_then(|k| k.interval)))
    }),
    ("keepalive.count", |p, s| {
        put(&mut s.keepalive_count, p.keepalive.as_ref().and_then(|k| k.count))
    }),
    ("limits.connections", |p, s| {
        put(&mut s.max_connections, p.limits.as_ref().and_then(|l| l.connections))
    }),
    ("limits.connectionsPerClient", |p, s| {
        put(
            &mut s.max_connections_per_client,
            p.limits.as_ref().and_then(|l| l.connections_per_client),
        )
    }),
    ("proxyProtocol", |p, s| {
        put(&mut s.proxy_protocol, p.proxy_protocol.as_ref().map(accept_proxy))
    }),
    ("noSni", |p, s| put(&mut s.no_sni, unmatched(p.no_sni.as_ref()))),
    ("noMatch", |p, s| put(&mut s.no_match, unmatched(p.no_match.as_ref()))),
    ("relay", |p, s| put(&mut s.relay, p.relay.map(crate::backend_policy::relay))),
];

/// The rule index of a ListenerPolicy's default route for clients without SNI.
pub const NO_SNI_RULE: usize = 0;
/// The rule index of a ListenerPolicy's default route for unmatched names.
pub const NO_MATCH_RULE: usize = 1;

/// What attachment produced.
pub(crate) struct Attached {
    /// Settings per (Gateway state index, listener index); absent: no policy reaches it.
    pub settings: BTreeMap<(usize, usize), ListenerSettings>,
    /// Default routes per (Gateway state index, listener index).
    pub defaults: BTreeMap<(usize, usize), DefaultRoutes>,
    /// The backend objects listener defaults refer to, with the Gateway (state index).
    pub default_targets: Vec<(usize, TargetKey)>,
    /// Every ListenerPolicy, sorted by `namespace/name`.
    pub statuses: Vec<ObjectStatus<PolicyStatus>>,
    /// Notes about default backends (no endpoints, ...).
    pub warnings: Vec<String>,
}

/// A policy's default routes, resolved: `[noSni, noMatch]`, each with the object it reaches.
type Defaults = [Option<(Arc<Route>, Option<TargetKey>)>; 2];

/// Where a targetRef leads: its Gateway (state index) and the listeners it reaches, or why it
/// reaches nothing.
type Target = Result<(usize, Vec<usize>), String>;

/// A field a policy lost: (field, listener, winning policy).
type Lost = (&'static str, String, String);

/// One targetRef reaching one listener.
#[derive(Clone, Copy)]
struct Hit {
    policy: usize,
    target: usize,
    /// A listener target (`sectionName`) rather than a whole Gateway.
    specific: bool,
}

/// Resolves every ListenerPolicy against the served Gateways.
pub(crate) fn attach(
    res: &Resources,
    states: &[GatewayState<'_>],
    by_key: &BTreeMap<(&str, &str), usize>,
    backends: &Backends<'_>,
    now: &str,
) -> Attached {
    let mut policies: Vec<&Object<ListenerPolicySpec>> = res.listener_policies.iter().collect();
    policies
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));

    // Default backends, once per policy.
    let mut warnings = Vec::new();
    let mut refs_problems: Vec<Option<Vec<(&'static str, String)>>> = Vec::new();
    let mut own_defaults: Vec<Defaults> = Vec::new();
    for p in &policies {
        let mut problems = None;
        let mut out: Defaults = [None, None];
        for (slot, (field, rule, u)) in
            [("noSni", NO_SNI_RULE, &p.spec.no_sni), ("noMatch", NO_MATCH_RULE, &p.spec.no_match)]
                .into_iter()
                .enumerate()
        {
            let Some(UnmatchedClients { action: UnmatchedAction::Backend, backend_ref: Some(b) }) =
                u
            else {
                continue;
            };
            let from = Referrer {
                group: crate::policy::POLICY_GROUP,
                kind: "ListenerPolicy",
                namespace: &p.meta.namespace,
            };
            let resolved = backends.resolve_from(from, &backend_ref(b));
            let here =
                format!("{}: ListenerPolicy {}: spec.{field}.backendRef", p.source, p.meta.key());
            warnings.extend(resolved.warnings.into_iter().map(|w| format!("{here}: {w}")));
            let ps: &mut Vec<_> = problems.get_or_insert_with(Vec::new);
            ps.extend(resolved.problem.map(|(r, m)| (r, format!("spec.{field}: {m}"))));
            let id =
                RouteId { namespace: p.meta.namespace.clone(), name: p.meta.name.clone(), rule };
            out[slot] = Some((Arc::new(Route::new(id, vec![resolved.backend])), resolved.target));
        }
        refs_problems.push(problems);
        own_defaults.push(out);
    }

    // targetRef -> Ok(gateway, listeners reached) or Err(why not found).
    let mut resolved: Vec<Vec<Target>> = Vec::new();
    let mut hits: BTreeMap<(usize, usize), Vec<Hit>> = BTreeMap::new();
    for (pi, p) in policies.iter().enumerate() {
        let ns = p.meta.namespace.as_str();
        let mut per_target = Vec::new();
        for (ti, t) in p.spec.target_refs.iter().enumerate() {
            let r = resolve(res, states, by_key, ns, t);
            if let Ok((g, listeners)) = &r {
                for &li in listeners {
                    hits.entry((*g, li)).or_default().push(Hit {
                        policy: pi,
                        target: ti,
                        specific: t.section_name.is_some(),
                    });
                }
            }
            per_target.push(r);
        }
        resolved.push(per_target);
    }

    // Field by field per listener: most specific, then oldest.
    let mut settings = BTreeMap::new();
    let mut defaults = BTreeMap::new();
    let mut default_targets = Vec::new();
    // (policy, target) -> [(field, listener, winner)]
    let mut lost: BTreeMap<(usize, usize), Vec<Lost>> = BTreeMap::new();
    // (policy, target) that took at least one field somewhere.
    let mut won = std::collections::BTreeSet::new();
    for (&(g, li), hs) in &hits {
        let mut s = ListenerSettings::default();
        for (field, set) in FIELDS {
            let mut scratch = ListenerSettings::default();
            let mut setting: Vec<Hit> = hs
                .iter()
                .copied()
                .filter(|h| set(&policies[h.policy].spec, &mut scratch))
                .collect();
            let Some(best) = setting.iter().map(|h| h.specific).max() else { continue };
            setting.retain(|h| h.specific == best);
            setting.sort_by(|a, b| age(&policies[a.policy].meta, &policies[b.policy].meta));
            let winner = setting[0];
            set(&policies[winner.policy].spec, &mut s);
            won.insert((winner.policy, winner.target));
            let slot = match field {
                "noSni" => Some(0),
                "noMatch" => Some(1),
                _ => None,
            };
            if let Some(slot) = slot
                && let Some((route, target)) = &own_defaults[winner.policy][slot]
            {
                let d: &mut DefaultRoutes = defaults.entry((g, li)).or_default();
                if slot == 0 {
                    d.no_sni = Some(route.clone());
                } else {
                    d.no_match = Some(route.clone());
                }
                if let Some(t) = target {
                    default_targets.push((g, t.clone()));
                }
            }
            for h in &setting[1..] {
                if h.policy != winner.policy {
                    let listener = format!(
                        "{} of Gateway {}",
                        states[g].listeners[li].spec.name,
                        states[g].key()
                    );
                    lost.entry((h.policy, h.target)).or_default().push((
                        field,
                        listener,
                        policies[winner.policy].meta.key(),
                    ));
                }
            }
        }
        settings.insert((g, li), s);
    }

    let statuses = policies
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let ancestors = p
                .spec
                .target_refs
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    let cond = match &resolved[pi][ti] {
                        Err(why) => {
                            Cond::no(types::ACCEPTED, reasons::TARGET_NOT_FOUND, why.clone())
                        }
                        Ok((g, listeners)) => match lost.get(&(pi, ti)) {
                            Some(l) => conflicted(l, won.contains(&(pi, ti))),
                            None => {
                                let names: Vec<&str> = listeners
                                    .iter()
                                    .map(|&li| states[*g].listeners[li].spec.name.as_str())
                                    .collect();
                                Cond::yes(
                                    types::ACCEPTED,
                                    reasons::ACCEPTED,
                                    format!(
                                        "applies to listener(s) {} of Gateway {}",
                                        names.join(", "),
                                        states[*g].key()
                                    ),
                                )
                            }
                        },
                    };
                    let mut conditions = vec![cond.stamp(p.meta.generation, now)];
                    if let Some(problems) = &refs_problems[pi] {
                        conditions
                            .push(Cond::resolved_refs(problems).stamp(p.meta.generation, now));
                    }
                    PolicyAncestorStatus {
                        ancestor_ref: AncestorRef {
                            group: t.group.clone(),
                            kind: t.kind.clone(),
                            namespace: Some(p.meta.namespace.clone()),
                            name: t.name.clone(),
                            section_name: t.section_name.clone(),
                        },
                        controller_name: CONTROLLER_NAME.into(),
                        conditions,
                    }
                })
                .collect();
            ObjectStatus {
                key: p.meta.key(),
                object: p.raw.clone(),
                status: Some(PolicyStatus { ancestors }),
            }
        })
        .collect();
    Attached { settings, defaults, default_targets, statuses, warnings }
}

/// A policy's backendRef as a route's, weight 1.
fn backend_ref(b: &PolicyBackendReference) -> crate::api::BackendRef {
    crate::api::BackendRef {
        group: b.group.clone(),
        kind: b.kind.clone(),
        name: b.name.clone(),
        namespace: b.namespace.clone(),
        port: b.port.map(i64::from),
        weight: Some(1),
        filters: None,
    }
}

/// The listeners a targetRef reaches, or why it reaches none.
fn resolve(
    res: &Resources,
    states: &[GatewayState<'_>],
    by_key: &BTreeMap<(&str, &str), usize>,
    ns: &str,
    t: &crate::policy::PolicyTargetReference,
) -> Target {
    if t.group != GATEWAY_GROUP || t.kind != "Gateway" {
        return Err(format!(
            "target kind {} ({:?}) is not supported: a ListenerPolicy targets Gateways \
             ({GATEWAY_GROUP})",
            t.kind, t.group
        ));
    }
    let Some(&g) = by_key.get(&(ns, t.name.as_str())) else {
        return Err(
            match res.gateways.iter().find(|g| g.meta.namespace == ns && g.meta.name == t.name) {
                Some(g) => format!(
                    "Gateway {ns}/{} has class {:?}, not the served class",
                    t.name, g.spec.gateway_class_name
                ),
                None => format!("Gateway {ns}/{} is not in the input", t.name),
            },
        );
    };
    let listeners = &states[g].listeners;
    match &t.section_name {
        None => Ok((g, (0..listeners.len()).filter(|&i| listeners[i].set.is_none()).collect())),
        Some(s) => match listeners.iter().position(|l| l.set.is_none() && l.spec.name == *s) {
            Some(li) => Ok((g, vec![li])),
            None => Err(format!("Gateway {ns}/{} has no listener named {s}", t.name)),
        },
    }
}

/// `Accepted=False/Conflicted` naming every lost field, where, and to whom.
fn conflicted(lost: &[Lost], applies_some: bool) -> Cond {
    // (listener, winner) -> fields, in first-seen order.
    let mut groups: Vec<((&str, &str), Vec<&str>)> = Vec::new();
    for (field, listener, winner) in lost {
        let key = (listener.as_str(), winner.as_str());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, fields)) => fields.push(field),
            None => groups.push((key, vec![field])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|((listener, winner), fields)| {
            format!("{} on listener {listener} taken by ListenerPolicy {winner}", fields.join(", "))
        })
        .collect();
    Cond::no(
        types::ACCEPTED,
        reasons::CONFLICTED,
        format!(
            "overridden by an older policy with an equally specific target: {}; {}",
            parts.join("; "),
            if applies_some {
                "the fields not listed apply"
            } else {
                "nothing of this policy applies through this target"
            }
        ),
    )
}
