//! Status writing: what a compile computed, merged with what the objects carry, written only
//! where it differs.
//!
//! - Gateways, ListenerPolicies, BackendPolicies (and GatewayClasses, ListenerSets) own their
//!   whole status: it is
//!   written by server-side apply to the `status` subresource, field manager
//!   [`FIELD_MANAGER`], `force: true`.
//! - TLSRoute `status.parents` is an atomic list in the Gateway API v1.6.1 CRDs (no
//!   `x-kubernetes-list-type: map`), shared with other controllers: the route is read, every
//!   entry whose `controllerName` is not ours is kept, ours are replaced, and the status is
//!   `PUT` with the read `resourceVersion`, retried on 409 Conflict.
//!
//! A condition whose type and status are unchanged keeps its `lastTransitionTime` (Kubernetes
//! API conventions: "the last time the condition transitioned from one status to another").
//! Limits the API server enforces: at most 32 route parents (CRD `maxItems`), condition
//! messages at most 32768 bytes (`metav1.Condition`).

use std::collections::{BTreeMap, HashMap};

use kube_client::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};
use sniway_compile::status::ObjectStatus;
use sniway_compile::{CONTROLLER_NAME, Compiled};

use crate::kinds::{self, Kind};
use crate::store::ObjectKey;
use crate::watch::api_resource;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "sniway.io/gateway-controller";
/// `TLSRoute.status.parents` `maxItems`.
pub const MAX_PARENTS: usize = 32;
/// `metav1.Condition.message` `maxLength`.
pub const MAX_MESSAGE: usize = 32768;
/// Attempts of a read-modify-write that meets 409 Conflicts.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// The kinds whose status is written.
pub const STATUS_KINDS: &[Kind] = &[
    kinds::GATEWAY_CLASS,
    kinds::GATEWAY,
    kinds::LISTENER_SET,
    kinds::TLS_ROUTE,
    kinds::LISTENER_POLICY,
    kinds::BACKEND_POLICY,
];

/// How a kind's status is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// Server-side apply of the whole status.
    Apply,
    /// Read, merge our `status.parents` entries with the others', replace.
    Parents,
}

/// One status to write: the object, its desired status, how.
struct Desired {
    key: ObjectKey,
    kind: Kind,
    status: Value,
    method: Method,
}

fn desired_of<S: Serialize>(kind: Kind, method: Method, items: &[ObjectStatus<S>]) -> Vec<Desired> {
    items
        .iter()
        .filter_map(|o| {
            let status = serde_json::to_value(o.status.as_ref()?).ok()?;
            let (namespace, name) = match o.key.split_once('/') {
                Some((ns, n)) if kind.namespaced => (ns.to_string(), n.to_string()),
                _ => (String::new(), o.key.clone()),
            };
            Some(Desired {
                key: ObjectKey { kind: kind.kind, namespace, name },
                kind,
                status,
                method,
            })
        })
        .collect()
}

/// Every status a compile computed, with how to write it.
fn desired(compiled: &Compiled) -> Vec<Desired> {
    let mut out = desired_of(kinds::GATEWAY_CLASS, Method::Apply, &compiled.gateway_classes);
    out.extend(desired_of(kinds::GATEWAY, Method::Apply, &compiled.gateways));
    out.extend(desired_of(kinds::LISTENER_SET, Method::Apply, &compiled.listener_sets));
    out.extend(desired_of(kinds::TLS_ROUTE, Method::Parents, &compiled.routes));
    out.extend(desired_of(kinds::LISTENER_POLICY, Method::Apply, &compiled.policies));
    out.extend(desired_of(kinds::BACKEND_POLICY, Method::Apply, &compiled.backend_policies));
    out
}

/// Truncates `s` to at most `max` bytes, on a char boundary.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Every condition message within [`MAX_MESSAGE`].
fn limit_messages(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "message"
                    && let Value::String(s) = x
                {
                    truncate_utf8(s, MAX_MESSAGE);
                } else {
                    limit_messages(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(limit_messages),
        _ => {}
    }
}

fn is_condition(v: &Value) -> bool {
    v.get("type").is_some() && v.get("status").is_some() && v.get("lastTransitionTime").is_some()
}

/// The identity of a list entry matched across desired and current status: a listener by
/// `name`, a route parent by `parentRef` and `controllerName`, a policy ancestor by
/// `ancestorRef` and `controllerName`.
fn entry_id(v: &Value) -> Option<Value> {
    let field = ["name", "parentRef", "ancestorRef"].into_iter().find_map(|f| v.get(f))?;
    Some(json!([field, v.get("controllerName")]))
}

/// Copies `lastTransitionTime` from `current` into every condition of `desired` whose type and
/// status are unchanged.
pub fn carry_transition_times(desired: &mut Value, current: &Value) {
    match (desired, current) {
        (Value::Object(d), Value::Object(c)) => {
            for (k, dv) in d.iter_mut() {
                if let Some(cv) = c.get(k) {
                    carry_transition_times(dv, cv);
                }
            }
        }
        (Value::Array(d), Value::Array(c)) => {
            for dv in d.iter_mut() {
                if is_condition(dv) {
                    let same = c.iter().find(|cv| {
                        cv.get("type") == dv.get("type") && cv.get("status") == dv.get("status")
                    });
                    if let Some(t) = same.and_then(|cv| cv.get("lastTransitionTime"))
                        && let Some(m) = dv.as_object_mut()
                    {
                        m.insert("lastTransitionTime".into(), t.clone());
                    }
                } else if let Some(id) = entry_id(dv)
                    && let Some(cv) = c.iter().find(|cv| entry_id(cv).as_ref() == Some(&id))
                {
                    carry_transition_times(dv, cv);
                }
            }
        }
        _ => {}
    }
}

/// `v` without any `lastTransitionTime`, for comparing.
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, x)| (k.clone(), without_times(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

fn ours(entry: &Value) -> bool {
    entry.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER_NAME)
}

/// The route status to write over `current` (the route's current status): other controllers'
/// parents kept in place and first, ours replaced; at most [`MAX_PARENTS`] in all (ours
/// truncated). Returns the status and how many of ours were left out.
pub fn merge_route_parents(desired: &Value, current: Option<&Value>) -> (Value, usize) {
    let mut status = current.cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let current_parents: Vec<Value> = current
        .and_then(|c| c.get("parents"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut mine: Vec<Value> =
        desired.get("parents").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut mine_value = Value::Array(mine.clone());
    carry_transition_times(&mut mine_value, &Value::Array(current_parents.clone()));
    if let Value::Array(a) = mine_value {
        mine = a;
    }
    let mut parents: Vec<Value> = current_parents.into_iter().filter(|p| !ours(p)).collect();
    let room = MAX_PARENTS.saturating_sub(parents.len());
    let dropped = mine.len().saturating_sub(room);
    mine.truncate(room);
    parents.extend(mine);
    if let Some(m) = status.as_object_mut() {
        m.insert("parents".into(), Value::Array(parents));
    }
    (status, dropped)
}

/// The status to apply over `current`: desired, with unchanged conditions' times kept.
pub fn merge_owned(desired: &Value, current: Option<&Value>) -> Value {
    let mut d = desired.clone();
    if let Some(c) = current {
        carry_transition_times(&mut d, c);
    }
    d
}

/// The status to write over `current`, or `None` when it is already as desired (times
/// aside). A route none of whose parents are ours, before and now, is not ours to write.
fn plan(d: &Desired, current: Option<&Value>) -> Option<Value> {
    let target = match d.method {
        Method::Apply => merge_owned(&d.status, current),
        Method::Parents => {
            let none_ours = |v: Option<&Value>| {
                v.and_then(|s| s.get("parents"))
                    .and_then(Value::as_array)
                    .is_none_or(|a| !a.iter().any(ours))
            };
            if none_ours(Some(&d.status)) && none_ours(current) {
                return None;
            }
            merge_route_parents(&d.status, current).0
        }
    };
    (current.map(without_times) != Some(without_times(&target))).then_some(target)
}

/// What one pass wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Objects whose status was written.
    pub written: Vec<ObjectKey>,
    /// Objects whose status was already as desired.
    pub unchanged: usize,
    /// Objects whose write failed (logged; retried on the next pass).
    pub failed: Vec<ObjectKey>,
}

/// Writes statuses; remembers what it wrote so a view of the objects that predates its own
/// write does not cause the same write again.
pub struct StatusWriter {
    client: kube_client::Client,
    /// Per object: the status (without times) last written, and the object's status (without
    /// times) as seen when writing it.
    written: HashMap<ObjectKey, (Value, Option<Value>)>,
}

impl StatusWriter {
    /// A writer with the given client.
    pub fn new(client: kube_client::Client) -> StatusWriter {
        StatusWriter { client, written: HashMap::new() }
    }

    /// Forgets what was written (on becoming leader: everything that differs is written).
    pub fn forget(&mut self) {
        self.written.clear();
    }

    fn api(&self, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
        let ar = api_resource(kind);
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    /// Writes every status of `compiled` that differs from the objects' current status in
    /// `objects` (the store's view).
    pub async fn write(
        &mut self,
        compiled: &Compiled,
        objects: &BTreeMap<ObjectKey, Value>,
    ) -> WriteReport {
        let mut report = WriteReport::default();
        for mut d in desired(compiled) {
            limit_messages(&mut d.status);
            let Some(obj) = objects.get(&d.key) else { continue };
            let current = obj.get("status");
            let current_cmp = current.map(without_times);
            let Some(target) = plan(&d, current) else {
                report.unchanged += 1;
                continue;
            };
            let target_cmp = without_times(&target);
            if let Some((last, seen)) = self.written.get(&d.key)
                && *last == target_cmp
                && *seen == current_cmp
            {
                // Written already; the view predates the write.
                report.unchanged += 1;
                continue;
            }
            let result = match d.method {
                Method::Apply => self.apply(&d, target).await,
                Method::Parents => self.replace_parents(&d).await,
            };
            match result {
                Ok(true) => {
                    self.written.insert(d.key.clone(), (target_cmp, current_cmp));
                    report.written.push(d.key);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(object = ?d.key, error = %e, "status write failed");
                    report.failed.push(d.key);
                }
            }
        }
        report
    }

    /// Server-side apply of the whole status. Ok(false): the object is gone.
    async fn apply(&self, d: &Desired, status: Value) -> Result<bool, kube_client::Error> {
        let body = json!({
            "apiVersion": d.kind.api_version(),
            "kind": d.kind.kind,
            "status": status,
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .api(&d.kind, &d.key.namespace)
            .patch_status(&d.key.name, &pp, &Patch::Apply(&body))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Read, merge parents, replace with the read resourceVersion; again on 409 Conflict.
    async fn replace_parents(&self, d: &Desired) -> Result<bool, kube_client::Error> {
        let api = self.api(&d.kind, &d.key.namespace);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(mut obj) = api.get_opt(&d.key.name).await? else { return Ok(false) };
            let (status, dropped) = merge_route_parents(&d.status, obj.data.get("status"));
            if dropped > 0 {
                tracing::warn!(
                    route = %d.key.path(),
                    dropped,
                    "a route has more than {MAX_PARENTS} parents with status; ours beyond are left out"
                );
            }
            if obj.data.get("status").map(without_times) == Some(without_times(&status)) {
                return Ok(true);
            }
            obj.data["status"] = status;
            obj.metadata.managed_fields = None;
            match api.replace_status(&d.key.name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok(true),
                Err(kube_client::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(route = %d.key.path(), "status conflict; reading again");
                }
                Err(kube_client::Error::Api(s)) if s.code == 404 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, time: &str) -> Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "m",
               "observedGeneration": 1, "lastTransitionTime": time})
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time_and_a_changed_one_takes_the_new() {
        let current = json!({"conditions": [cond("Accepted", "True", "old"), cond("Programmed", "True", "old")],
                             "listeners": [{"name": "a", "conditions": [cond("Accepted", "True", "old")]}]});
        let desired = json!({"conditions": [cond("Accepted", "True", "new"), cond("Programmed", "False", "new")],
                             "listeners": [{"name": "a", "conditions": [cond("Accepted", "True", "new")]},
                                           {"name": "b", "conditions": [cond("Accepted", "True", "new")]}]});
        let merged = merge_owned(&desired, Some(&current));
        assert_eq!(merged["conditions"][0]["lastTransitionTime"], "old");
        assert_eq!(merged["conditions"][1]["lastTransitionTime"], "new");
        assert_eq!(merged["listeners"][0]["conditions"][0]["lastTransitionTime"], "old");
        assert_eq!(merged["listeners"][1]["conditions"][0]["lastTransitionTime"], "new");
    }

    fn parent(name: &str, controller: &str) -> Value {
        json!({"parentRef": {"name": name}, "controllerName": controller,
               "conditions": [cond("Accepted", "True", "t")]})
    }

    #[test]
    fn foreign_route_parents_are_kept_first_and_ours_replaced() {
        let current = json!({"parents": [parent("x", CONTROLLER_NAME), parent("y", "other.io/c")]});
        let desired = json!({"parents": [parent("z", CONTROLLER_NAME)]});
        let (merged, dropped) = merge_route_parents(&desired, Some(&current));
        assert_eq!(dropped, 0);
        assert_eq!(
            merged["parents"],
            json!([parent("y", "other.io/c"), parent("z", CONTROLLER_NAME)])
        );
    }

    #[test]
    fn route_parents_beyond_the_api_servers_limit_are_ours_left_out() {
        let theirs: Vec<Value> = (0..30).map(|i| parent(&format!("t{i}"), "other.io/c")).collect();
        let ours: Vec<Value> = (0..5).map(|i| parent(&format!("o{i}"), CONTROLLER_NAME)).collect();
        let (merged, dropped) =
            merge_route_parents(&json!({"parents": ours}), Some(&json!({"parents": theirs})));
        assert_eq!(dropped, 3);
        let parents = merged["parents"].as_array().unwrap();
        assert_eq!(parents.len(), MAX_PARENTS);
        assert_eq!(parents[31]["parentRef"]["name"], "o1");
    }

    fn route(status: Value) -> Desired {
        let key = ObjectKey { kind: "TLSRoute", namespace: "a".into(), name: "r".into() };
        Desired { key, kind: kinds::TLS_ROUTE, status, method: Method::Parents }
    }

    #[test]
    fn a_route_with_no_parent_of_ours_is_left_alone_until_one_is_ours() {
        let foreign = json!({"parents": [parent("y", "other.io/c")]});
        assert_eq!(plan(&route(json!({"parents": []})), Some(&foreign)), None);
        assert_eq!(plan(&route(json!({"parents": []})), None), None);
        // An entry of ours that is no longer wanted is removed.
        let with_ours =
            json!({"parents": [parent("y", "other.io/c"), parent("x", CONTROLLER_NAME)]});
        assert_eq!(plan(&route(json!({"parents": []})), Some(&with_ours)), Some(foreign.clone()));
        // Unchanged but for the time: nothing to write.
        let mut later = parent("x", CONTROLLER_NAME);
        later["conditions"][0]["lastTransitionTime"] = json!("later");
        assert_eq!(plan(&route(json!({"parents": [later]})), Some(&with_ours)), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(MAX_MESSAGE);
        truncate_utf8(&mut s, MAX_MESSAGE + 1);
        assert_eq!(s.len(), MAX_MESSAGE);
        let mut v = json!({"conditions": [{"message": "x".repeat(MAX_MESSAGE + 10)}]});
        limit_messages(&mut v);
        assert_eq!(v["conditions"][0]["message"].as_str().unwrap().len(), MAX_MESSAGE);
    }
}
