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
//!     of its fields (that is the intended layering, not a conflict).

use std::collections::BTreeMap;
use std::time::Duration;

use sniway_model::ListenerSettings;

use crate::GATEWAY_GROUP;
use crate::compile::age;
use crate::gateway::GatewayState;
use crate::policy::{AncestorRef, ListenerPolicySpec, PolicyAncestorStatus, PolicyStatus};
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

/// Every field a ListenerPolicy sets, by its path under `spec`.
const FIELDS: [(&str, Setter); 10] = [
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
];

/// What attachment produced.
pub(crate) struct Attached {
    /// Settings per (Gateway state index, listener index); absent: no policy reaches it.
    pub settings: BTreeMap<(usize, usize), ListenerSettings>,
    /// Every ListenerPolicy, sorted by `namespace/name`.
    pub statuses: Vec<ObjectStatus<PolicyStatus>>,
}

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
    now: &str,
) -> Attached {
    let mut policies: Vec<&Object<ListenerPolicySpec>> = res.listener_policies.iter().collect();
    policies
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));

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
                    PolicyAncestorStatus {
                        ancestor_ref: AncestorRef {
                            group: t.group.clone(),
                            kind: t.kind.clone(),
                            namespace: Some(p.meta.namespace.clone()),
                            name: t.name.clone(),
                            section_name: t.section_name.clone(),
                        },
                        controller_name: CONTROLLER_NAME.into(),
                        conditions: vec![cond.stamp(p.meta.generation, now)],
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
    Attached { settings, statuses }
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
