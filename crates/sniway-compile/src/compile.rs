//! `compile`: the snapshot to a routing table and statuses, in ordered phases. Pure: no I/O,
//! no clock (the caller passes `now`), no async.
//!
//! 1. Gateways: pick those sniway serves, classify listeners, find conflicts (`gateway.rs`).
//! 2. Sockets: place accepted listeners on (address, port), oldest Gateway first.
//! 3. Routes: resolve backends (`backend.rs`), attach each parentRef (`route.rs`), count
//!    attached routes.
//! 4. Table: per socket, listeners in precedence order; per listener, routes in precedence
//!    order (`HostIndex::insert_first`: the first insert of a hostname wins).
//! 5. Status: Gateway and route conditions (`status/`); policy status comes from attaching
//!    ListenerPolicies after step 2 (`policy_attach.rs`), their settings and default routes go
//!    into step 4; BackendPolicies are attached before step 3 (`backend_policy.rs`), their
//!    settings ride on every backend resolved in step 3, and their status names the Gateways
//!    whose routes use each target.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use sniway_model::{
    CertificateSet, HostIndex, HostPattern, ListenerId, ListenerMode, ListenerTable, Route,
    RouteId, RoutingTable, SocketTable, TerminateConfig,
};

use crate::GATEWAY_GROUP;
use crate::backend::Backends;
use crate::certificate::Certificates;
use crate::gateway::{self, GatewayState, Served};
use crate::gateway_class;
use crate::listener_set;
use crate::policy::PolicyStatus;
use crate::resources::{Meta, Object, Resources, TlsRoute};
use crate::route;
use crate::status::conditions::{CONTROLLER_NAME, Cond, reasons, types};
use crate::status::{
    GatewayClassStatus, GatewayStatus, GatewayStatusAddress, ListenerSetStatus, ListenerStatus,
    ObjectStatus, ParentRefStatus, RouteGroupKind, RouteParentStatus, RouteStatus,
};

/// Which Gateways compile serves. A GatewayClass is sniway's when its `spec.controllerName`
/// is [`CONTROLLER_NAME`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Manifests from files (`sniway run`/`check`). A Gateway is served when its GatewayClass
    /// in the input is sniway's, or when the input holds no GatewayClass of that name (seed
    /// manifests ship none; one warning per such class); with `gateway_class`, only Gateways
    /// of that class. A Gateway whose class names another controller is not served.
    File {
        /// Serve only Gateways of this class (`--gateway-class`).
        gateway_class: Option<String>,
    },
    /// A snapshot of a cluster (the controller's watches). Only Gateways whose GatewayClass
    /// exists and is sniway's are served; with `gateway: Some((namespace, name))` only that
    /// Gateway (a data plane serving one Gateway).
    Cluster {
        /// The one Gateway to serve, as `(namespace, name)`.
        gateway: Option<(String, String)>,
    },
}

impl Default for Mode {
    fn default() -> Self {
        Mode::File { gateway_class: None }
    }
}

/// How to compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Address for Gateways without `spec.addresses` of type IPAddress (`0.0.0.0` = all
    /// interfaces).
    pub default_bind: IpAddr,
    /// Which Gateways to serve.
    pub mode: Mode,
    /// IP addresses a Gateway may request in `spec.addresses` (GatewayStaticAddresses). `None`:
    /// any IP address (file mode: a bind failure reports an unusable one, see
    /// [`crate::apply_bind_failures`]). `Some(set)`: an IPAddress outside the set makes the
    /// Gateway `Programmed=False/AddressNotUsable` (a controller passes the addresses its
    /// load balancer can take).
    pub usable_addresses: Option<BTreeSet<IpAddr>>,
    /// The Gateways' `spec.addresses` belong to something in front of this data plane (the
    /// Service a controller provisioned carries them): every listener binds `default_bind`, and
    /// the addresses are still checked for status.
    pub addresses_elsewhere: bool,
    /// RFC 3339 time stamped as every condition's `lastTransitionTime`.
    pub now: String,
}

impl Default for CompileOptions {
    /// All interfaces, file mode serving every Gateway, any address, the Unix epoch.
    fn default() -> Self {
        Self {
            default_bind: IpAddr::from([0, 0, 0, 0]),
            mode: Mode::default(),
            usable_addresses: None,
            addresses_elsewhere: false,
            now: "1970-01-01T00:00:00Z".into(),
        }
    }
}

/// The result of a compile.
#[derive(Debug)]
pub struct Compiled {
    /// What the data plane serves.
    pub table: RoutingTable,
    /// Notes for the user: shadowed hostnames, missing endpoints, foreign parents, extensions.
    pub warnings: Vec<String>,
    /// Every GatewayClass, sorted by name; `status` is `None` for classes of another
    /// controller.
    pub gateway_classes: Vec<ObjectStatus<GatewayClassStatus>>,
    /// Every Gateway, sorted by `namespace/name`; `status` is `None` for Gateways not served
    /// (see [`Mode`]).
    ///
    /// `status.addresses` holds the addresses sniway binds (its `spec.addresses` of type
    /// IPAddress, else `default_bind`). A controller that provisions a Service for the Gateway
    /// replaces it with the addresses it learns from that Service before writing the status
    /// (see [`Compiled::set_gateway_addresses`]); the conditions do not depend on it.
    pub gateways: Vec<ObjectStatus<GatewayStatus>>,
    /// Every ListenerSet, sorted by `namespace/name`; `status` is `None` when its parent is not
    /// a Gateway sniway serves.
    pub listener_sets: Vec<ObjectStatus<ListenerSetStatus>>,
    /// Every TLSRoute, sorted by `namespace/name`.
    pub routes: Vec<ObjectStatus<RouteStatus>>,
    /// Every ListenerPolicy, sorted by `namespace/name`.
    pub policies: Vec<ObjectStatus<PolicyStatus>>,
    /// Every BackendPolicy, sorted by `namespace/name`.
    pub backend_policies: Vec<ObjectStatus<PolicyStatus>>,
}

impl Compiled {
    /// Replaces `status.addresses` of the served Gateway `namespace/name` (e.g. with the
    /// load balancer addresses of the Service a controller provisioned for it). Returns whether
    /// such a served Gateway exists.
    pub fn set_gateway_addresses(
        &mut self,
        namespace: &str,
        name: &str,
        addresses: Vec<GatewayStatusAddress>,
    ) -> bool {
        let key = format!("{namespace}/{name}");
        match self.gateways.iter_mut().find(|g| g.key == key).and_then(|g| g.status.as_mut()) {
            Some(st) => {
                st.addresses = addresses;
                true
            }
            None => false,
        }
    }

    /// A `v1` `List` of every GatewayClass, Gateway, ListenerSet, TLSRoute, ListenerPolicy and
    /// BackendPolicy (in that order, each sorted by name), each object echoed as given
    /// (apiVersion, kind, metadata with namespace filled in, spec) plus `.status`, as
    /// `kubectl get -o yaml` would show it.
    pub fn status_list(&self) -> Value {
        let items: Vec<Value> = self
            .gateway_classes
            .iter()
            .map(ObjectStatus::to_value)
            .chain(self.gateways.iter().map(ObjectStatus::to_value))
            .chain(self.listener_sets.iter().map(ObjectStatus::to_value))
            .chain(self.routes.iter().map(ObjectStatus::to_value))
            .chain(self.policies.iter().map(ObjectStatus::to_value))
            .chain(self.backend_policies.iter().map(ObjectStatus::to_value))
            .collect();
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": { "resourceVersion": "" },
            "items": items,
        })
    }
}

/// Oldest first: `creationTimestamp` (absent = as old as any other absent one), then
/// `namespace/name` (Gateway API conflict resolution, e.g. `HTTPRoute` rule precedence).
pub(crate) fn age(a: &Meta, b: &Meta) -> Ordering {
    (&a.creation_timestamp, &a.namespace, &a.name).cmp(&(
        &b.creation_timestamp,
        &b.namespace,
        &b.name,
    ))
}

/// Labels of a namespace: its Namespace object's labels, plus `kubernetes.io/metadata.name`,
/// which the API server always sets. A namespace without an object has only that label.
pub(crate) fn namespace_labels(res: &Resources, ns: &str) -> BTreeMap<String, String> {
    let mut labels = res
        .namespaces
        .iter()
        .find(|n| n.meta.name == ns)
        .map(|n| n.meta.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    labels
}

/// One route entry waiting to be inserted into a listener's index.
struct Pending<'r> {
    meta: &'r Meta,
    source: &'r str,
    rule: usize,
    host: Option<HostPattern>,
    route: Arc<Route>,
}

/// Compiles a snapshot into a routing table and statuses.
pub fn compile(res: &Resources, opts: &CompileOptions) -> Compiled {
    let mut warnings = Vec::new();

    // 1. Gateways, sorted by namespace/name for status output; classes by name.
    let mut all_gateways: Vec<&Object<crate::api::GatewaySpec>> = res.gateways.iter().collect();
    all_gateways
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let class_statuses = gateway_class::statuses(res, opts);
    // Gateways not served, with the reason (for warnings about routes naming them).
    let not_served = gateway_class::select(res, &all_gateways, &opts.mode, &mut warnings);
    let serves = |g: &Object<crate::api::GatewaySpec>| {
        !not_served.contains_key(&(g.meta.namespace.clone(), g.meta.name.clone()))
    };
    let certs = Certificates::new(res);
    let mut states: Vec<GatewayState<'_>> = all_gateways
        .iter()
        .filter(|g| serves(g))
        .map(|g| GatewayState::new(g, opts, &certs))
        .collect();
    let by_key: BTreeMap<(&str, &str), usize> = states
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.obj.meta.namespace.as_str(), g.obj.meta.name.as_str()), i))
        .collect();

    // ListenerSets join their Gateways before sockets are placed.
    let set_verdicts = listener_set::merge(res, &mut states, &by_key, &certs, &mut warnings);
    // A parentRef to a Gateway or ListenerSet -> (Gateway state, ListenerSet index), or why
    // sniway writes no status for it.
    let parent = |pref: &crate::api::ParentReference,
                  route_ns: &str|
     -> Result<(usize, Option<usize>), String> {
        let group = pref.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let kind = pref.kind.as_deref().unwrap_or("Gateway");
        let ns = pref.namespace.as_deref().unwrap_or(route_ns);
        match (group, kind) {
            (GATEWAY_GROUP, "Gateway") => by_key
                .get(&(ns, pref.name.as_str()))
                .map(|&g| (g, None))
                .ok_or_else(|| match not_served.get(&(ns.to_string(), pref.name.clone())) {
                    Some(why) => format!(
                        "Gateway {ns}/{} is not served by sniway ({why}); no status written \
                             for it",
                        pref.name
                    ),
                    None => format!(
                        "Gateway {ns}/{} is not in the input; no status written for it",
                        pref.name
                    ),
                }),
            (GATEWAY_GROUP, "ListenerSet") => {
                let found = res
                    .listener_sets
                    .iter()
                    .position(|l| l.meta.namespace == ns && l.meta.name == pref.name);
                match found.map(|i| (i, &set_verdicts[i])) {
                    Some((i, listener_set::Verdict::Merged { gateway })) => Ok((*gateway, Some(i))),
                    Some(_) => Err(format!(
                        "ListenerSet {ns}/{} is not attached to a Gateway sniway serves; no \
                         status written for it",
                        pref.name
                    )),
                    None => Err(format!(
                        "ListenerSet {ns}/{} is not in the input; no status written for it",
                        pref.name
                    )),
                }
            }
            _ => Err(format!(
                "parent kind {kind} ({group}) is not managed by sniway; no status written for it"
            )),
        }
    };

    // 2. Sockets, oldest Gateway first.
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by(|&a, &b| age(&states[a].obj.meta, &states[b].obj.meta));
    gateway::assign_sockets(&mut states, &order);
    for st in &states {
        for l in st.listeners.iter().filter(|l| l.valid() && !l.serves()) {
            warnings.push(format!(
                "{}: Gateway {}: listener {} is {}: accepted for status, not served; sniway has \
                 no HTTP data plane",
                st.obj.source,
                st.key(),
                l.spec.name,
                l.spec.protocol
            ));
        }
    }
    let backend_policies = crate::backend_policy::attach(res);
    let backends = Backends::new(res, backend_policies.settings.clone());
    let mut attached = crate::policy_attach::attach(res, &states, &by_key, &backends, &opts.now);
    warnings.append(&mut attached.warnings);
    // Backend objects -> the served Gateways that use them (BackendPolicy ancestors).
    let mut users: BTreeMap<crate::backend::TargetKey, BTreeSet<(String, String)>> =
        BTreeMap::new();
    for (g, key) in &attached.default_targets {
        let m = &states[*g].obj.meta;
        users.entry(key.clone()).or_default().insert((m.namespace.clone(), m.name.clone()));
    }

    // 3. Routes.
    let mut routes: Vec<&Object<TlsRoute>> = res.tls_routes.iter().collect();
    routes
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let mut pending: BTreeMap<(usize, usize), Vec<Pending<'_>>> = BTreeMap::new();
    let mut route_statuses = Vec::new();
    for r in &routes {
        let here = format!("{}: TLSRoute {}", r.source, r.meta.key());
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        let mut targets = Vec::new();
        let rules: Vec<Arc<Route>> = r
            .spec
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(ri, rule)| {
                let backends = rule
                    .backend_refs
                    .iter()
                    .map(|b| {
                        let resolved = backends.resolve(&r.meta.namespace, b);
                        warnings
                            .extend(resolved.warnings.into_iter().map(|w| format!("{here}: {w}")));
                        problems.extend(resolved.problem);
                        targets.extend(resolved.target);
                        resolved.backend
                    })
                    .collect();
                let id = RouteId {
                    namespace: r.meta.namespace.clone(),
                    name: r.meta.name.clone(),
                    rule: ri,
                };
                Arc::new(Route::new(id, backends))
            })
            .collect();
        // Gateway API `RouteConditionResolvedRefs`: False when any reference is invalid; the
        // first invalid reference names the reason, the message lists all of them.
        let resolved = Cond::resolved_refs(&problems);

        let entries = route::entries(&r.spec);
        let labels = namespace_labels(res, &r.meta.namespace);
        let mut parents = Vec::new();
        for (pi, pref) in r.spec.spec.parent_refs.iter().enumerate() {
            let group = pref.group.clone().unwrap_or_else(|| GATEWAY_GROUP.into());
            let kind = pref.kind.clone().unwrap_or_else(|| "Gateway".into());
            let (g, set) = match parent(pref, &r.meta.namespace) {
                Ok(p) => p,
                Err(why) => {
                    warnings.push(format!("{here}: spec.parentRefs[{pi}]: {why}"));
                    continue;
                }
            };
            for t in &targets {
                let m = &states[g].obj.meta;
                users.entry(t.clone()).or_default().insert((m.namespace.clone(), m.name.clone()));
            }
            let att = route::attach(r, pref, &states[g], &entries, &labels, set);
            for (li, hits) in att.listeners {
                let gw_key = states[g].key();
                let l = &mut states[g].listeners[li];
                l.attached.insert(r.meta.key());
                if l.accepted() && !l.has_certificates() {
                    warnings.push(format!(
                        "{here}: listener {} of Gateway {gw_key} has no usable certificate; the \
                         route is attached but not served there",
                        l.spec.name
                    ));
                }
                if l.serves() {
                    let slot = pending.entry((g, li)).or_default();
                    for (rule, host) in hits {
                        slot.push(Pending {
                            meta: &r.meta,
                            source: &r.source,
                            rule,
                            host,
                            route: rules[rule].clone(),
                        });
                    }
                }
            }
            let generation = r.meta.generation;
            parents.push(RouteParentStatus {
                parent_ref: ParentRefStatus {
                    group,
                    kind,
                    namespace: pref.namespace.clone(),
                    name: pref.name.clone(),
                    section_name: pref.section_name.clone(),
                    port: pref.port,
                },
                controller_name: CONTROLLER_NAME.into(),
                conditions: vec![
                    att.accepted.stamp(generation, &opts.now),
                    resolved.stamp(generation, &opts.now),
                ],
            });
        }
        route_statuses.push(ObjectStatus {
            key: r.meta.key(),
            object: r.raw.clone(),
            status: Some(RouteStatus { parents }),
        });
    }

    // HTTPRoutes: counted in attachedRoutes of HTTP and HTTPS listeners, never served, no
    // status written (sniway has no HTTP data plane).
    let mut http_routes: Vec<&Object<crate::api::HttpRouteSpec>> = res.http_routes.iter().collect();
    http_routes
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    for r in http_routes {
        let labels = namespace_labels(res, &r.meta.namespace);
        let mut counted = Vec::new();
        for pref in &r.spec.parent_refs {
            let Ok((g, set)) = parent(pref, &r.meta.namespace) else { continue };
            for li in route::http_listeners(r, pref, &states[g], &labels, set) {
                let key = states[g].key();
                let l = &mut states[g].listeners[li];
                l.attached.insert(format!("HTTPRoute {}", r.meta.key()));
                counted.push(format!("{key}/{}", l.spec.name));
            }
        }
        if !counted.is_empty() {
            warnings.push(format!(
                "{}: HTTPRoute {}: counted in attachedRoutes of {}; not served and no status \
                 written (sniway has no HTTP data plane)",
                r.source,
                r.meta.key(),
                counted.join(", ")
            ));
        }
    }

    // 4. Table.
    let mut sockets: BTreeMap<SocketAddr, Vec<(usize, usize)>> = BTreeMap::new();
    for &g in &order {
        for li in 0..states[g].listeners.len() {
            let l = &states[g].listeners[li];
            if l.serves() && states[g].usable() {
                for sock in states[g].sockets(li) {
                    sockets.entry(sock).or_default().push((g, li));
                }
            }
        }
    }
    let mut table = RoutingTable::default();
    for (addr, mut members) in sockets {
        // Listener precedence (Gateway API `Listener.hostname`): exact, then longer wildcard,
        // then none. Stable sort keeps older Gateways first among equals.
        members.sort_by(|a, b| {
            let spec = |(g, li): &(usize, usize)| {
                states[*g].listeners[*li]
                    .hostname
                    .as_ref()
                    .map_or(sniway_model::Specificity::Any, HostPattern::specificity)
            };
            spec(b).cmp(&spec(a))
        });
        let mut listeners = HostIndex::new();
        for (g, li) in members {
            let gw = &states[g];
            let l = &gw.listeners[li];
            let id = ListenerId {
                namespace: gw.obj.meta.namespace.clone(),
                gateway: gw.obj.meta.name.clone(),
                listener: match l.set {
                    None => l.spec.name.clone(),
                    Some(i) => {
                        let ls = &res.listener_sets[i].meta;
                        format!("{}/{}/{}", ls.namespace, ls.name, l.spec.name)
                    }
                },
            };
            let mut items = pending.remove(&(g, li)).unwrap_or_default();
            // Route precedence: oldest route first, then namespace/name, then rule order; the
            // index itself prefers exact over wildcard and longer suffixes at lookup time.
            items.sort_by(|a, b| age(a.meta, b.meta).then(a.rule.cmp(&b.rule)));
            let mut routes = HostIndex::new();
            let mut owner: BTreeMap<Option<HostPattern>, (String, usize)> = BTreeMap::new();
            for p in items {
                let who = (p.meta.key(), p.rule);
                if let Some(first) = owner.get(&p.host) {
                    if *first != who {
                        warnings.push(format!(
                            "{}: TLSRoute {} rule {}: hostname {} on listener {id} is already routed \
                             by TLSRoute {} rule {}, which takes precedence",
                            p.source,
                            who.0,
                            who.1,
                            p.host.as_ref().map_or("(any)".to_string(), ToString::to_string),
                            first.0,
                            first.1
                        ));
                    }
                    continue;
                }
                // A terminated name no certificate covers gets the default certificate, which
                // a client verifying the name rejects.
                if let (Some(HostPattern::Exact(name)), Some(c)) = (&p.host, &l.certificates)
                    && !c.served.is_empty()
                    && !c.served.iter().any(|c| c.covers(name))
                {
                    warnings.push(format!(
                        "{}: TLSRoute {} hostname {name} on listener {id}: no certificate of the \
                         listener covers it; the default certificate ({}) is presented",
                        p.source, who.0, c.served[0].source
                    ));
                }
                owner.insert(p.host.clone(), who);
                routes.insert_first(p.host.as_ref(), p.route);
            }
            let mode = match (&l.served, &l.certificates) {
                (Served::Terminate, Some(c)) => {
                    let served = c
                        .served
                        .iter()
                        .map(|c| sniway_model::ServedCertificate {
                            source: c.source.clone(),
                            dns_names: c.dns_names.clone(),
                            key: Arc::clone(&c.key),
                        })
                        .collect();
                    ListenerMode::Terminate(Arc::new(TerminateConfig::new(CertificateSet(served))))
                }
                _ => ListenerMode::Passthrough,
            };
            let lt = ListenerTable {
                id,
                hostname: l.hostname.clone(),
                mode,
                settings: attached.settings.remove(&(g, li)).unwrap_or_default(),
                routes,
                defaults: attached.defaults.remove(&(g, li)).unwrap_or_default(),
            };
            let host = lt.hostname.clone();
            listeners.insert_first(host.as_ref(), Arc::new(lt));
        }
        let socket = SocketTable { addr, listeners };
        socket_warnings(&socket, &mut warnings);
        table.sockets.push(socket);
    }

    // 5. Gateway status.
    let mut gateway_statuses = Vec::new();
    for g in &all_gateways {
        let Some(&gi) = by_key.get(&(g.meta.namespace.as_str(), g.meta.name.as_str())) else {
            gateway_statuses.push(ObjectStatus {
                key: g.meta.key(),
                object: g.raw.clone(),
                status: None,
            });
            continue;
        };
        let st = &states[gi];
        let generation = st.obj.meta.generation;
        let stamp =
            |c: Vec<Cond>| c.iter().map(|c| c.stamp(generation, &opts.now)).collect::<Vec<_>>();
        let addresses = if st.programmed() {
            let uniq: BTreeSet<IpAddr> = st.bind.iter().copied().collect();
            uniq.into_iter()
                .map(|ip| GatewayStatusAddress { type_: "IPAddress".into(), value: ip.to_string() })
                .collect()
        } else {
            vec![]
        };
        let listeners = listener_statuses(st, None, generation, &opts.now);
        let sets = set_verdicts
            .iter()
            .enumerate()
            .filter(
                |(_, v)| matches!(v, listener_set::Verdict::Merged { gateway } if *gateway == gi),
            )
            .filter(|(i, _)| st.listeners.iter().any(|l| l.set == Some(*i) && l.valid()))
            .count();
        let targeted = res.listener_sets.iter().enumerate().any(|(i, ls)| {
            let p = &ls.spec.parent_ref;
            !matches!(set_verdicts[i], listener_set::Verdict::Foreign)
                && p.name == st.obj.meta.name
                && p.namespace.as_deref().unwrap_or(&ls.meta.namespace) == st.obj.meta.namespace
        });
        let attached_listener_sets = (st.obj.spec.allowed_listeners.is_some() || targeted)
            .then(|| i32::try_from(sets).unwrap_or(i32::MAX));
        gateway_statuses.push(ObjectStatus {
            key: st.key(),
            object: st.obj.raw.clone(),
            status: Some(GatewayStatus {
                addresses,
                conditions: stamp(st.conditions()),
                listeners,
                attached_listener_sets,
            }),
        });
    }

    // ListenerSet status, sorted by namespace/name; listener conditions carry the set's
    // generation.
    let mut set_order: Vec<usize> = (0..res.listener_sets.len()).collect();
    set_order.sort_by(|&a, &b| {
        let (a, b) = (&res.listener_sets[a].meta, &res.listener_sets[b].meta);
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    let listener_set_statuses = set_order
        .into_iter()
        .map(|i| {
            let ls = &res.listener_sets[i];
            let verdict = &set_verdicts[i];
            let state = match verdict {
                listener_set::Verdict::Merged { gateway } => Some(&states[*gateway]),
                _ => None,
            };
            let status =
                (!matches!(verdict, listener_set::Verdict::Foreign)).then(|| ListenerSetStatus {
                    conditions: listener_set::conditions(ls, verdict, state, i)
                        .iter()
                        .map(|c| c.stamp(ls.meta.generation, &opts.now))
                        .collect(),
                    listeners: state.map_or(vec![], |st| {
                        listener_statuses(st, Some(i), ls.meta.generation, &opts.now)
                    }),
                });
            ObjectStatus { key: ls.meta.key(), object: ls.raw.clone(), status }
        })
        .collect();

    Compiled {
        table,
        warnings,
        gateway_classes: class_statuses,
        gateways: gateway_statuses,
        listener_sets: listener_set_statuses,
        routes: route_statuses,
        policies: attached.statuses,
        backend_policies: backend_policies.statuses(&users, &opts.now),
    }
}

/// Warnings about ListenerPolicy settings a socket cannot honour as written:
/// - `proxyProtocol` is per port (the header comes before the ClientHello, so the listener is
///   not known yet): the socket takes the strictest mode and the union of trusted CIDRs;
/// - `noSni` applies only on a listener a client without SNI can reach: the socket's listener
///   without hostname or, with none, its only listener.
fn socket_warnings(socket: &SocketTable, warnings: &mut Vec<String>) {
    let listeners: Vec<&Arc<ListenerTable>> =
        socket.listeners.entries().into_iter().map(|(_, l)| l).collect();
    let modes: BTreeSet<String> = listeners
        .iter()
        .map(|l| match &l.settings.proxy_protocol {
            None => "Off".to_string(),
            Some(p) => {
                let cidrs: Vec<String> = p.trusted_cidrs.iter().map(ToString::to_string).collect();
                format!("{:?} [{}]", p.mode, cidrs.join(", "))
            }
        })
        .collect();
    if modes.len() > 1 {
        let each: Vec<String> = listeners
            .iter()
            .map(|l| {
                let m = l.settings.proxy_protocol.as_ref().map_or("Off".into(), |p| {
                    let cidrs: Vec<String> =
                        p.trusted_cidrs.iter().map(ToString::to_string).collect();
                    format!("{:?} from [{}]", p.mode, cidrs.join(", "))
                });
                format!("{} {m}", l.id)
            })
            .collect();
        warnings.push(format!(
            "socket {}: listeners disagree on proxyProtocol ({}); the PROXY header comes before \
             the ClientHello, so the port takes the strictest mode and trusts every listed CIDR",
            socket.addr,
            each.join("; ")
        ));
    }
    let catch_all = listeners.iter().find(|l| l.hostname.is_none());
    for l in &listeners {
        let Some(action) = l.settings.no_sni else { continue };
        if action == sniway_model::settings::Unmatched::Close {
            continue;
        }
        let reaches = match catch_all {
            Some(c) => Arc::ptr_eq(c, l),
            None => listeners.len() == 1,
        };
        if !reaches {
            let who = match catch_all {
                Some(c) => format!("go to listener {} (no hostname)", c.id),
                None => "are closed (several listeners, none without hostname)".into(),
            };
            warnings.push(format!(
                "listener {}: noSni {action:?} never applies: on socket {} clients without SNI \
                 {who}",
                l.id, socket.addr
            ));
        }
    }
}

/// Status entries of the listeners of `st` declared by `set` (`None`: the Gateway's own),
/// stamped with the declaring object's generation.
fn listener_statuses(
    st: &GatewayState<'_>,
    set: Option<usize>,
    generation: i64,
    now: &str,
) -> Vec<ListenerStatus> {
    st.listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.set == set)
        .map(|(li, l)| ListenerStatus {
            name: l.spec.name.clone(),
            supported_kinds: l
                .supported_kinds
                .iter()
                .map(|(group, kind)| RouteGroupKind { group: group.clone(), kind: kind.clone() })
                .collect(),
            attached_routes: i32::try_from(l.attached.len()).unwrap_or(i32::MAX),
            conditions: l
                .conditions()
                .into_iter()
                .map(|c| {
                    // A listener of a Gateway that cannot be served at all (its addresses or
                    // parameters) is not programmed, whatever its own state.
                    if !st.usable() && c.type_ == types::PROGRAMMED && c.status == "True" {
                        Cond::no(
                            types::PROGRAMMED,
                            reasons::INVALID,
                            format!("Gateway {} is not programmed (see its conditions)", st.key()),
                        )
                    } else {
                        c
                    }
                })
                .map(|c| c.stamp(generation, now))
                .collect(),
            sockets: if l.serves() && st.usable() { st.sockets(li) } else { vec![] },
        })
        .collect()
}
