//! Provisioning as the controller runs it: after each compile, every Gateway the compile serves
//! gets its data plane ([`provision::desired_with`], applied by [`provision::apply`]), the
//! ClusterRoleBinding of the data planes lists every provisioned ServiceAccount, and the objects
//! of Gateways gone or no longer ours are pruned ([`provision::prune`]). The status then follows
//! the data plane ([`dataplane_status`]): the Gateway's addresses are its Service's, and it is
//! `Programmed` only once its Deployment has an available replica.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sniway_compile::Compiled;
use sniway_compile::status::conditions::{reasons as reason, status as cstatus, types as type_};
use sniway_compile::status::{Condition, GatewayStatusAddress, ListenerStatus};
use tokio::sync::{mpsc, watch};

use crate::kinds;
use crate::provision::{self, ProvisionOptions, Provisioned, Pruned};
use crate::store::ObjectKey;

/// The label selector of the provisioned objects the controller watches (its Deployments).
pub fn managed_selector() -> String {
    format!("{}={}", provision::MANAGED_BY_LABEL, provision::APP)
}

/// `Programmed=False` reason of a Gateway whose data plane has no address yet.
pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
/// Gateway `Programmed=False`: a requested address was not given to the data plane.
pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";

/// The values of a Gateway's `spec.addresses` of type IPAddress (the default type).
fn requested_ips(gw: &Value) -> Vec<&str> {
    gw.pointer("/spec/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a.get("type").and_then(Value::as_str).unwrap_or("IPAddress") == "IPAddress")
        .filter_map(|a| a.get("value").and_then(Value::as_str))
        .collect()
}

/// One Gateway the compile serves, as provisioning sees it.
#[derive(Clone, Debug)]
pub struct Served<'a> {
    /// `namespace/name`.
    pub key: String,
    /// The Gateway object.
    pub gateway: &'a Value,
    /// The ListenerSets accepted on it.
    pub listener_sets: Vec<&'a Value>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn is_true(conditions: &[Condition], t: &str) -> bool {
    conditions.iter().any(|c| c.type_ == t && c.status == cstatus::TRUE)
}

/// The `namespace/name` of the Gateway a ListenerSet names as its parent.
fn listener_set_parent(set: &Value) -> Option<String> {
    let group = text(set, "/spec/parentRef/group").unwrap_or(kinds::GATEWAY_GROUP);
    let kind = text(set, "/spec/parentRef/kind").unwrap_or("Gateway");
    if group != kinds::GATEWAY_GROUP || kind != "Gateway" {
        return None;
    }
    let name = text(set, "/spec/parentRef/name")?;
    let ns = text(set, "/spec/parentRef/namespace").or_else(|| text(set, "/metadata/namespace"))?;
    Some(format!("{ns}/{name}"))
}

/// Every Gateway `compiled` serves, with the ListenerSets accepted on it, in key order.
pub fn served(compiled: &Compiled) -> Vec<Served<'_>> {
    let mut sets: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for ls in &compiled.listener_sets {
        let Some(st) = &ls.status else { continue };
        if !is_true(&st.conditions, type_::ACCEPTED) {
            continue;
        }
        if let Some(parent) = listener_set_parent(&ls.object) {
            sets.entry(parent).or_default().push(&ls.object);
        }
    }
    compiled
        .gateways
        .iter()
        .filter(|g| g.status.is_some())
        .map(|g| Served {
            key: g.key.clone(),
            gateway: &g.object,
            listener_sets: sets.remove(&g.key).unwrap_or_default(),
        })
        .collect()
}

/// A copy of `compiled`'s statuses (no table, no warnings), to amend for one status pass.
pub fn statuses_of(compiled: &Compiled) -> Compiled {
    Compiled {
        table: Default::default(),
        warnings: Vec::new(),
        gateway_classes: compiled.gateway_classes.clone(),
        gateways: compiled.gateways.clone(),
        listener_sets: compiled.listener_sets.clone(),
        routes: compiled.routes.clone(),
        policies: compiled.policies.clone(),
        backend_policies: compiled.backend_policies.clone(),
    }
}

/// The object `key` of the view, as `K`, if the Gateway of uid `owner` controls it.
fn owned<K: serde::de::DeserializeOwned>(
    objects: &BTreeMap<ObjectKey, Value>,
    key: ObjectKey,
    owner: &str,
    meta: impl Fn(&K) -> &ObjectMeta,
) -> Option<K> {
    let obj: K = serde_json::from_value(objects.get(&key)?.clone()).ok()?;
    (provision::owning_gateway(meta(&obj)) == Some(owner)).then_some(obj)
}

/// Turns every `Programmed=True` of `conditions` into `False` with `reason` and `message`.
fn demote(conditions: &mut [Condition], reason: &str, message: &str) {
    for c in conditions.iter_mut().filter(|c| c.type_ == type_::PROGRAMMED) {
        if c.status == cstatus::TRUE {
            c.status = cstatus::FALSE.to_string();
            c.reason = reason.to_string();
            c.message = message.to_string();
        }
    }
}

fn demote_listeners(listeners: &mut [ListenerStatus], reason: &str, message: &str) {
    for l in listeners {
        demote(&mut l.conditions, reason, message);
    }
}

/// A served Gateway's provisioned objects, as the store sees them.
struct DataPlane<'a> {
    ns: &'a str,
    /// The provisioned objects' name.
    name: String,
    /// Its Service, when the Gateway controls it.
    service: Option<Service>,
    /// Its Deployment, when the Gateway controls it.
    deployment: Option<Deployment>,
}

/// The data plane of Gateway `gw` in `objects`; `None` for a Gateway without namespace or name.
fn data_plane<'a>(gw: &'a Value, objects: &BTreeMap<ObjectKey, Value>) -> Option<DataPlane<'a>> {
    let ns = text(gw, "/metadata/namespace")?;
    let name = provision::object_name(text(gw, "/metadata/name")?);
    let uid = text(gw, "/metadata/uid").unwrap_or_default();
    let key =
        |kind: &'static str| ObjectKey { kind, namespace: ns.to_string(), name: name.clone() };
    let service = owned(objects, key(kinds::SERVICE.kind), uid, |s: &Service| &s.metadata);
    let deployment = owned(objects, key(kinds::DEPLOYMENT.kind), uid, |d: &Deployment| &d.metadata);
    Some(DataPlane { ns, name, service, deployment })
}

/// The served Gateways (`namespace/name`) whose provisioned Deployment or Service is not in
/// `objects` (the store's view) under their control: deleted or taken over by hand, or not yet
/// seen. The provisioner applies those again even when their desired objects did not change.
pub fn missing_dataplanes(
    compiled: &Compiled,
    objects: &BTreeMap<ObjectKey, Value>,
) -> BTreeSet<String> {
    let mut missing = BTreeSet::new();
    for s in served(compiled) {
        let gw = s.gateway;
        let Some(DataPlane { service, deployment, .. }) = data_plane(gw, objects) else {
            continue;
        };
        if service.is_none() || deployment.is_none() {
            missing.insert(s.key.clone());
        }
    }
    missing
}

/// Makes the statuses of `compiled` follow the data planes, for every Gateway it serves, from
/// the provisioned objects in `objects` (the store's view, with Services and Deployments):
///
/// - `status.addresses` are its Service's ([`provision::addresses`]: the load balancer's
///   ingress, else the external IPs, else the cluster IP); none while it has none;
/// - `Programmed` stays as compiled only once its Deployment has an available replica
///   ([`provision::available`]); until then every `Programmed=True` of the Gateway, its
///   listeners, and the ListenerSets accepted on it (and theirs) is `False`, reason `Pending`,
///   saying so; an available data plane without any address leaves the Gateway
///   `Programmed=False/AddressNotAssigned`; a Gateway no data plane can be built for is
///   `Programmed=False/Invalid`, saying why.
///
/// A `Programmed=False` the compile computed (with its own reason) is left as it is. Objects
/// not controlled by the Gateway (by uid) count as absent.
pub fn dataplane_status(
    compiled: &mut Compiled,
    objects: &BTreeMap<ObjectKey, Value>,
    opts: &ProvisionOptions,
) {
    struct Verdict {
        key: String,
        addresses: Vec<GatewayStatusAddress>,
        /// (reason, message) of a Programmed=False for the Gateway and its listeners.
        not_programmed: Option<(&'static str, String)>,
        /// Programmed=False for the Gateway only.
        gateway_only: Option<(&'static str, String)>,
    }
    let mut verdicts = Vec::new();
    for s in served(compiled) {
        let gw = s.gateway;
        let Some(DataPlane { ns, name, service, deployment }) = data_plane(gw, objects) else {
            continue;
        };
        let addresses: Vec<GatewayStatusAddress> = service
            .as_ref()
            .map(provision::addresses)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, value)| GatewayStatusAddress { type_: t.to_string(), value })
            .collect();
        let mut v =
            Verdict { key: s.key.clone(), addresses, not_programmed: None, gateway_only: None };
        if let Err(e) = provision::desired_with(gw, &s.listener_sets, opts) {
            v.not_programmed =
                Some((reason::INVALID, format!("no data plane can be provisioned: {e}")));
        } else {
            match &deployment {
                None => {
                    v.not_programmed = Some((
                        reason::PENDING,
                        format!("the data plane Deployment {ns}/{name} does not exist yet"),
                    ))
                }
                Some(d) if !provision::available(d) => {
                    v.not_programmed = Some((
                        reason::PENDING,
                        format!(
                            "the data plane Deployment {ns}/{name} has no available replica yet"
                        ),
                    ))
                }
                Some(_) if v.addresses.is_empty() => {
                    v.gateway_only = Some((
                        ADDRESS_NOT_ASSIGNED,
                        format!("the data plane Service {ns}/{name} has no address yet"),
                    ))
                }
                Some(_) => {
                    // Requested IP addresses the Service was not given (a load balancer that
                    // did not grant them) are not served (GatewayStaticAddresses).
                    let given: BTreeSet<&str> =
                        v.addresses.iter().map(|a| a.value.as_str()).collect();
                    let refused: Vec<&str> =
                        requested_ips(gw).into_iter().filter(|ip| !given.contains(ip)).collect();
                    if !refused.is_empty() {
                        v.gateway_only = Some((
                            ADDRESS_NOT_USABLE,
                            format!(
                                "address {} was not given to the data plane Service {ns}/{name}",
                                refused.join(", ")
                            ),
                        ))
                    }
                }
            }
        }
        verdicts.push(v);
    }
    for v in verdicts {
        let (ns, name) = v.key.split_once('/').unwrap_or_default();
        compiled.set_gateway_addresses(ns, name, v.addresses);
        let Some(g) = compiled.gateways.iter_mut().find(|g| g.key == v.key) else { continue };
        let Some(st) = g.status.as_mut() else { continue };
        if let Some((r, m)) = &v.gateway_only {
            demote(&mut st.conditions, r, m);
        }
        let Some((r, m)) = &v.not_programmed else { continue };
        demote(&mut st.conditions, r, m);
        demote_listeners(&mut st.listeners, r, m);
        for ls in &mut compiled.listener_sets {
            if listener_set_parent(&ls.object).as_deref() != Some(v.key.as_str()) {
                continue;
            }
            if let Some(st) = ls.status.as_mut()
                && is_true(&st.conditions, type_::ACCEPTED)
            {
                demote(&mut st.conditions, r, m);
                demote_listeners(&mut st.listeners, r, m);
            }
        }
    }
}

/// What one provisioning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionReport {
    /// Gateways (`namespace/name`) whose objects were applied.
    pub applied: Vec<String>,
    /// The ServiceAccounts (namespace, name) the data planes' binding was applied with, if it
    /// was applied.
    pub binding: Option<Vec<(String, String)>>,
    /// Objects pruned.
    pub pruned: Vec<Pruned>,
    /// What failed (logged; retried): Gateways by `namespace/name`, `ClusterRoleBinding`,
    /// `prune`.
    pub failed: Vec<String>,
}

/// The provisioner's memory between passes.
pub struct Provisioner {
    client: kube_client::Client,
    opts: ProvisionOptions,
    /// Per Gateway key: the hash of the objects last applied successfully.
    applied: HashMap<String, [u8; 32]>,
    /// The subjects of the binding as last applied successfully.
    bound: Option<BTreeSet<(String, String)>>,
    /// The live Gateway uids of the last successful prune.
    pruned_for: Option<BTreeSet<String>>,
}

fn hash(p: &Provisioned) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in [
        serde_json::to_vec(&p.service_account),
        serde_json::to_vec(&p.deployment),
        serde_json::to_vec(&p.service),
        serde_json::to_vec(&p.pod_disruption_budget),
    ] {
        h.update(v.unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

impl Provisioner {
    /// A provisioner writing with `client`.
    pub fn new(client: kube_client::Client, opts: ProvisionOptions) -> Provisioner {
        Provisioner { client, opts, applied: HashMap::new(), bound: None, pruned_for: None }
    }

    /// Forgets what was applied (on becoming leader: everything is applied once more).
    pub fn forget(&mut self) {
        self.applied.clear();
        self.bound = None;
        self.pruned_for = None;
    }

    /// Provisions every Gateway `compiled` serves: the binding first (with every data plane's
    /// ServiceAccount), then each Gateway's objects whose desired state changed since they were
    /// last applied (a Gateway whose ServiceAccount is not bound yet waits), then the prune of
    /// the objects of Gateways no longer served.
    pub async fn pass(
        &mut self,
        compiled: &Compiled,
        missing: &BTreeSet<String>,
    ) -> ProvisionReport {
        let mut report = ProvisionReport::default();
        let served = served(compiled);
        let mut live = BTreeSet::new();
        let mut desired = Vec::new();
        for s in &served {
            if let Some(uid) = text(s.gateway, "/metadata/uid") {
                live.insert(uid.to_string());
            }
            match provision::desired_with(s.gateway, &s.listener_sets, &self.opts) {
                Ok(p) => {
                    let h = hash(&p);
                    desired.push((s.key.clone(), p, h));
                }
                Err(e) => {
                    tracing::warn!(gateway = %s.key, error = %e, "no data plane can be provisioned")
                }
            }
        }
        let keys: BTreeSet<&str> = served.iter().map(|s| s.key.as_str()).collect();
        self.applied.retain(|k, _| keys.contains(k.as_str()));

        let subjects: BTreeSet<(String, String)> =
            desired.iter().map(|(_, p, _)| p.service_account_ref()).collect();
        if self.bound.as_ref() != Some(&subjects) {
            let list: Vec<(String, String)> = subjects.iter().cloned().collect();
            match provision::apply_dataplane_binding(&self.client, &list).await {
                Ok(_) => {
                    self.bound = Some(subjects);
                    report.binding = Some(list);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "applying the data planes' ClusterRoleBinding failed");
                    report.failed.push(kinds::CLUSTER_ROLE_BINDING.kind.to_string());
                }
            }
        }

        for (key, p, h) in &desired {
            if self.applied.get(key) == Some(h) && !missing.contains(key) {
                continue;
            }
            if !self.bound.as_ref().is_some_and(|b| b.contains(&p.service_account_ref())) {
                // Its pods could not read: wait for the binding.
                report.failed.push(key.clone());
                continue;
            }
            match provision::apply(&self.client, p).await {
                Ok(_) => {
                    self.applied.insert(key.clone(), *h);
                    report.applied.push(key.clone());
                }
                Err(e) => {
                    tracing::warn!(gateway = %key, error = %e, "provisioning the data plane failed");
                    report.failed.push(key.clone());
                }
            }
        }

        if self.pruned_for.as_ref() != Some(&live) {
            match provision::prune(&self.client, None, &live).await {
                Ok(pruned) => {
                    for p in &pruned {
                        tracing::info!(kind = p.kind, namespace = %p.namespace, name = %p.name, "pruned");
                    }
                    self.pruned_for = Some(live);
                    report.pruned = pruned;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning data planes failed");
                    report.failed.push("prune".to_string());
                }
            }
        }
        report
    }
}

/// Runs provisioning passes while leader, on every new compile, and again after a failure
/// (backoff from `retry_min` doubling up to `retry_max`), until `input` closes.
/// A compile and the Gateways whose data plane is missing from the store.
pub(crate) type ProvisionInput = (Arc<Compiled>, Arc<BTreeSet<String>>);

pub(crate) async fn provision_loop(
    mut provisioner: Provisioner,
    mut input: watch::Receiver<Option<ProvisionInput>>,
    mut leader: watch::Receiver<bool>,
    reports: Option<mpsc::UnboundedSender<ProvisionReport>>,
    retry_min: Duration,
    retry_max: Duration,
) {
    let mut was_leader = false;
    let mut delay = retry_min;
    loop {
        let is_leader = *leader.borrow_and_update();
        let mut failed = false;
        if is_leader {
            if !was_leader {
                provisioner.forget();
            }
            let latest = input.borrow_and_update().clone();
            if let Some((compiled, missing)) = latest {
                let report = provisioner.pass(&compiled, &missing).await;
                failed = !report.failed.is_empty();
                if let Some(r) = &reports {
                    let _ = r.send(report);
                }
            }
        }
        was_leader = is_leader;
        let wait = delay;
        delay = if failed { (delay * 2).min(retry_max) } else { retry_min };
        tokio::select! {
            r = input.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait), if failed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sniway_compile::{CompileOptions, Mode};

    fn compiled(objects: &[Value]) -> Compiled {
        let docs: Vec<(String, Value)> =
            objects.iter().enumerate().map(|(i, v)| (format!("doc {i}"), v.clone())).collect();
        let load = sniway_compile::LoadOptions { cluster: true, ..Default::default() };
        let loaded = sniway_compile::load_values(docs, &load).expect("loads");
        let opts = CompileOptions { mode: Mode::Cluster { gateway: None }, ..Default::default() };
        sniway_compile::compile(&loaded.resources, &opts)
    }

    fn class() -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "sniway"},
               "spec": {"controllerName": sniway_compile::CONTROLLER_NAME}})
    }

    fn gateway(name: &str, class: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": name, "namespace": "infra", "uid": format!("uid-{name}")},
               "spec": {"gatewayClassName": class, "listeners": [
                   {"name": "tls", "protocol": "TLS", "port": 8443, "tls": {"mode": "Passthrough"}}]}})
    }

    fn listener_set() -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
               "metadata": {"name": "more", "namespace": "infra"},
               "spec": {"parentRef": {"name": "gw"}, "listeners": [
                   {"name": "extra", "protocol": "TLS", "port": 9443, "tls": {"mode": "Passthrough"}}]}})
    }

    fn with_listener_sets(mut gw: Value) -> Value {
        gw["spec"]["allowedListeners"] = json!({"namespaces": {"from": "Same"}});
        gw
    }

    fn owner(uid: &str) -> Value {
        json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw",
                "uid": uid, "controller": true}])
    }

    fn view(deployment: Option<Value>, service: Option<Value>) -> BTreeMap<ObjectKey, Value> {
        let mut out = BTreeMap::new();
        let key = |kind| ObjectKey { kind, namespace: "infra".into(), name: "gw-sniway".into() };
        if let Some(d) = deployment {
            out.insert(key("Deployment"), d);
        }
        if let Some(s) = service {
            out.insert(key("Service"), s);
        }
        out
    }

    fn deployment(uid: &str, available: Option<i32>) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "gw-sniway", "namespace": "infra",
                                        "ownerReferences": owner(uid)}});
        if let Some(n) = available {
            d["status"] = json!({"availableReplicas": n});
        }
        d
    }

    fn service(uid: &str, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "gw-sniway", "namespace": "infra", "ownerReferences": owner(uid)},
               "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"]},
               "status": status})
    }

    fn programmed(conds: &[Condition]) -> (String, String) {
        let c = conds.iter().find(|c| c.type_ == type_::PROGRAMMED).expect("Programmed");
        (c.status.clone(), c.reason.clone())
    }

    fn gw_status(c: &Compiled) -> &sniway_compile::status::GatewayStatus {
        c.gateways.iter().find(|g| g.key == "infra/gw").and_then(|g| g.status.as_ref()).unwrap()
    }

    #[test]
    fn served_gateways_are_ours_with_their_accepted_listener_sets() {
        let c = compiled(&[
            class(),
            with_listener_sets(gateway("gw", "sniway")),
            gateway("theirs", "other"),
            listener_set(),
        ]);
        let s = served(&c);
        assert_eq!(s.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["infra/gw"]);
        assert_eq!(s[0].listener_sets.len(), 1);
        // Without allowedListeners the set is not accepted, and not provisioned.
        let c = compiled(&[class(), gateway("gw", "sniway"), listener_set()]);
        assert!(served(&c)[0].listener_sets.is_empty());
    }

    #[test]
    fn programmed_waits_for_an_available_replica_of_the_gateways_own_deployment() {
        let base =
            compiled(&[class(), with_listener_sets(gateway("gw", "sniway")), listener_set()]);
        assert_eq!(programmed(&gw_status(&base).conditions).0, "True");
        let opts = ProvisionOptions::default();
        let pending = |objects: &BTreeMap<ObjectKey, Value>| {
            let mut c = statuses_of(&base);
            dataplane_status(&mut c, objects, &opts);
            c
        };
        for objects in [
            view(None, None),
            view(Some(deployment("uid-gw", None)), None),
            view(Some(deployment("uid-gw", Some(0))), None),
            // Another (older) Gateway's Deployment of the same name.
            view(Some(deployment("uid-old", Some(1))), None),
        ] {
            let c = pending(&objects);
            let st = gw_status(&c);
            assert_eq!(programmed(&st.conditions), ("False".into(), "Pending".into()));
            let msg = &st.conditions.iter().find(|c| c.type_ == "Programmed").unwrap().message;
            assert!(msg.contains("infra/gw-sniway"), "{msg}");
            assert_eq!(programmed(&st.listeners[0].conditions).0, "False");
            let ls = c.listener_sets[0].status.as_ref().unwrap();
            assert_eq!(programmed(&ls.conditions), ("False".into(), "Pending".into()));
            assert_eq!(programmed(&ls.listeners[0].conditions).0, "False");
            // Accepted is untouched.
            assert!(is_true(&st.conditions, type_::ACCEPTED));
        }
        let ready = view(Some(deployment("uid-gw", Some(1))), Some(service("uid-gw", json!({}))));
        let c = pending(&ready);
        let st = gw_status(&c);
        assert_eq!(programmed(&st.conditions), ("True".into(), "Programmed".into()));
        assert_eq!(programmed(&st.listeners[0].conditions).0, "True");
        assert_eq!(st.addresses.len(), 1);
        assert_eq!(
            (st.addresses[0].type_.as_str(), st.addresses[0].value.as_str()),
            ("IPAddress", "10.96.0.9")
        );
    }

    #[test]
    fn addresses_follow_the_load_balancer_then_the_cluster_ip() {
        let base = compiled(&[class(), gateway("gw", "sniway")]);
        let opts = ProvisionOptions::default();
        let lb = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}});
        let mut c = statuses_of(&base);
        dataplane_status(
            &mut c,
            &view(Some(deployment("uid-gw", Some(1))), Some(service("uid-gw", lb))),
            &opts,
        );
        let got: Vec<(String, String)> =
            gw_status(&c).addresses.iter().map(|a| (a.type_.clone(), a.value.clone())).collect();
        assert_eq!(
            got,
            [
                ("IPAddress".to_string(), "203.0.113.7".to_string()),
                ("Hostname".to_string(), "lb.example.com".to_string())
            ]
        );
        // Available but no address at all: not programmed, and said so.
        let mut c = statuses_of(&base);
        dataplane_status(&mut c, &view(Some(deployment("uid-gw", Some(1))), None), &opts);
        let st = gw_status(&c);
        assert!(st.addresses.is_empty());
        assert_eq!(programmed(&st.conditions), ("False".into(), ADDRESS_NOT_ASSIGNED.into()));
        assert_eq!(programmed(&st.listeners[0].conditions).0, "True");
    }

    #[test]
    fn a_requested_address_the_service_was_not_given_is_not_usable() {
        let mut gw = gateway("gw", "sniway");
        gw["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "203.0.113.7"},
                                         {"value": "203.0.113.8"}]);
        let base = compiled(&[class(), gw]);
        let opts = ProvisionOptions::default();
        let with_ingress = |ips: &[&str]| {
            let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"loadBalancer": {"ingress": ingress}})
        };
        // The load balancer granted one of two.
        let mut c = statuses_of(&base);
        let lb = with_ingress(&["203.0.113.7"]);
        dataplane_status(
            &mut c,
            &view(Some(deployment("uid-gw", Some(1))), Some(service("uid-gw", lb))),
            &opts,
        );
        let st = gw_status(&c);
        assert_eq!(programmed(&st.conditions), ("False".into(), ADDRESS_NOT_USABLE.into()));
        let msg = st.conditions.iter().find(|c| c.type_ == "Programmed").unwrap().message.clone();
        assert!(msg.contains("203.0.113.8") && !msg.contains("203.0.113.7"), "{msg}");
        // Both granted: programmed.
        let mut c = statuses_of(&base);
        let lb = with_ingress(&["203.0.113.7", "203.0.113.8"]);
        dataplane_status(
            &mut c,
            &view(Some(deployment("uid-gw", Some(1))), Some(service("uid-gw", lb))),
            &opts,
        );
        assert_eq!(programmed(&gw_status(&c).conditions).0, "True");
    }

    #[test]
    fn a_gateway_no_data_plane_can_be_built_for_is_not_programmed_and_says_why() {
        let mut gw = gateway("gw", "sniway");
        gw["spec"]["listeners"][0]["port"] = json!(9901);
        let base = compiled(&[class(), gw]);
        let mut c = statuses_of(&base);
        dataplane_status(&mut c, &BTreeMap::new(), &ProvisionOptions::default());
        let st = gw_status(&c);
        assert_eq!(programmed(&st.conditions), ("False".into(), "Invalid".into()));
        let msg = &st.conditions.iter().find(|c| c.type_ == "Programmed").unwrap().message;
        assert!(msg.contains("admin port"), "{msg}");
    }

    #[test]
    fn a_gateway_of_another_class_is_left_alone() {
        let base = compiled(&[class(), gateway("gw", "other")]);
        let mut c = statuses_of(&base);
        dataplane_status(&mut c, &BTreeMap::new(), &ProvisionOptions::default());
        assert!(c.gateways[0].status.is_none());
    }
}
