//! ListenerSets (`gateway.networking.k8s.io/v1`, GEP-1713): listeners another object adds to
//! a Gateway that allows it (`spec.allowedListeners`, default none).
//!
//! Gateway API v1.6.1 (`apis/v1/listenerset_types.go`, conformance `ListenerSet*`):
//! - a ListenerSet whose Gateway does not allow its namespace is `Accepted=False/NotAllowed`
//!   and `Programmed=False/NotAllowed`; when its Gateway is not accepted,
//!   `ParentNotAccepted`;
//! - listeners merge after the Gateway's own, ListenerSets oldest first then by
//!   `namespace/name`; a listener conflicting with one merged earlier loses
//!   ([`GatewayState::add_listener_set`]);
//! - a set with no valid listener is `Accepted=False/ListenersNotValid` and
//!   `Programmed=False/ListenersNotValid`; with some, `Accepted=True` (`ListenersNotValid` when
//!   not all are valid) and `Programmed=True`;
//! - `certificateRefs` resolve from the ListenerSet's namespace, with ReferenceGrants from
//!   `ListenerSet`; `allowedRoutes.namespaces.from: Same` means the ListenerSet's namespace;
//! - routes attach with `parentRef.kind: ListenerSet` to its listeners only, and a Gateway
//!   parentRef reaches only the Gateway's own listeners;
//! - the Gateway's `status.attachedListenerSets` counts the accepted sets.
//!
//! Listener entries in the table are named `<set namespace>/<set name>/<listener>` under their
//! Gateway.

use std::collections::BTreeMap;

use crate::GATEWAY_GROUP;
use crate::api::ListenerSetSpec;
use crate::certificate::Certificates;
use crate::compile::{age, namespace_labels};
use crate::gateway::{GatewayState, selects};
use crate::resources::{Object, Resources};
use crate::status::conditions::{Cond, reasons, types};

/// What became of one ListenerSet.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Its parent is not a Gateway sniway serves: no status (the reason goes to warnings).
    Foreign,
    /// The Gateway does not allow it.
    NotAllowed(String),
    /// The Gateway is not accepted.
    ParentNotAccepted(String),
    /// Its listeners were merged into Gateway state `gateway`.
    Merged {
        /// Index into the compile's Gateway states.
        gateway: usize,
    },
}

/// Merges every allowed ListenerSet into its Gateway's state, in precedence order. Returns a
/// verdict per `res.listener_sets` index.
pub(crate) fn merge<'r>(
    res: &'r Resources,
    states: &mut [GatewayState<'r>],
    by_key: &BTreeMap<(&str, &str), usize>,
    certs: &Certificates<'_>,
    warnings: &mut Vec<String>,
) -> Vec<Verdict> {
    let mut verdicts = vec![Verdict::Foreign; res.listener_sets.len()];
    let mut order: Vec<usize> = (0..res.listener_sets.len()).collect();
    order.sort_by(|&a, &b| age(&res.listener_sets[a].meta, &res.listener_sets[b].meta));
    for i in order {
        let ls = &res.listener_sets[i];
        let here = format!("{}: ListenerSet {}", ls.source, ls.meta.key());
        let p = &ls.spec.parent_ref;
        let group = p.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let gw_ns = p.namespace.as_deref().unwrap_or(&ls.meta.namespace);
        if group != GATEWAY_GROUP || kind != "Gateway" {
            warnings.push(format!(
                "{here}: parent kind {kind} ({group}) is not a Gateway; no status written"
            ));
            continue;
        }
        let Some(&g) = by_key.get(&(gw_ns, p.name.as_str())) else {
            warnings.push(format!(
                "{here}: Gateway {gw_ns}/{} is not served by sniway; no status written",
                p.name
            ));
            continue;
        };
        let gw = &states[g];
        if !gw.usable() {
            verdicts[i] =
                Verdict::ParentNotAccepted(format!("Gateway {} is not accepted", gw.key()));
            continue;
        }
        let allowed = gw.obj.spec.allowed_listeners.as_ref().and_then(|a| a.namespaces.as_ref());
        let from = allowed.and_then(|n| n.from.as_deref()).unwrap_or("None");
        let ok = match from {
            "All" => true,
            "Same" => ls.meta.namespace == gw.obj.meta.namespace,
            "Selector" => allowed
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|s| selects(s, &namespace_labels(res, &ls.meta.namespace))),
            _ => false,
        };
        if !ok {
            verdicts[i] = Verdict::NotAllowed(format!(
                "Gateway {} does not allow ListenerSets from namespace {} \
                 (spec.allowedListeners.namespaces.from: {from})",
                gw.key(),
                ls.meta.namespace
            ));
            continue;
        }
        states[g].add_listener_set(i, ls, certs);
        verdicts[i] = Verdict::Merged { gateway: g };
    }
    verdicts
}

/// The set's conditions (`Accepted`, `Programmed`) from its verdict and, when merged, its
/// listeners' validity.
pub(crate) fn conditions(
    ls: &Object<ListenerSetSpec>,
    verdict: &Verdict,
    state: Option<&GatewayState<'_>>,
    set: usize,
) -> Vec<Cond> {
    let both = |reason: &'static str, msg: &str| {
        vec![
            Cond::no(types::ACCEPTED, reason, msg.to_string()),
            Cond::no(types::PROGRAMMED, reason, msg.to_string()),
        ]
    };
    match (verdict, state) {
        (Verdict::NotAllowed(msg), _) => both(reasons::NOT_ALLOWED, msg),
        (Verdict::ParentNotAccepted(msg), _) => both(reasons::PARENT_NOT_ACCEPTED, msg),
        (Verdict::Merged { .. }, Some(gw)) if !gw.programmed() => both(
            reasons::PARENT_NOT_ACCEPTED,
            &format!("Gateway {} has no valid listener of its own", gw.key()),
        ),
        (Verdict::Merged { .. }, Some(gw)) => {
            let mine: Vec<_> = gw.listeners.iter().filter(|l| l.set == Some(set)).collect();
            let invalid: Vec<&str> =
                mine.iter().filter(|l| !l.valid()).map(|l| l.spec.name.as_str()).collect();
            if invalid.len() == mine.len() {
                both(
                    reasons::LISTENERS_NOT_VALID,
                    &format!("no valid listeners: {}", invalid.join(", ")),
                )
            } else {
                let accepted = if invalid.is_empty() {
                    Cond::yes(
                        types::ACCEPTED,
                        reasons::ACCEPTED,
                        format!(
                            "ListenerSet {} is attached to Gateway {}",
                            ls.meta.key(),
                            gw.key()
                        ),
                    )
                } else {
                    Cond::yes(
                        types::ACCEPTED,
                        reasons::LISTENERS_NOT_VALID,
                        format!(
                            "{} of {} listeners are not valid: {}",
                            invalid.len(),
                            mine.len(),
                            invalid.join(", ")
                        ),
                    )
                };
                vec![
                    accepted,
                    Cond::yes(types::PROGRAMMED, reasons::PROGRAMMED, "listeners programmed"),
                ]
            }
        }
        (Verdict::Merged { .. } | Verdict::Foreign, _) => vec![],
    }
}
