//! The objects the controller has seen, as raw JSON, fed by the watchers.
//!
//! Each watch stream (one per kind, one per referenced Secret or ConfigMap) owns a set of objects. A re-list
//! (`Init`, `InitApply`..., `InitDone`) builds the stream's new set aside and swaps it in at
//! `InitDone`, so a half-listed kind is never served; the store is [`Store::ready`] once every
//! stream has completed its first list.

use std::collections::{BTreeMap, BTreeSet};

use kube_client::api::DynamicObject;
use kube_client::runtime::watcher::Event;
use serde_json::Value;

use crate::kinds::{self, Kind};

/// One watch stream.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    /// Every object of a kind (by kind name, e.g. `Gateway`).
    Kind(&'static str),
    /// One Secret, by namespace and name, and the number of its watcher (events of a stopped
    /// watcher still queued when the Secret is referenced again are told apart).
    Secret(String, String, u64),
    /// One ConfigMap (a BackendPolicy's CA certificates), as for Secrets.
    ConfigMap(String, String, u64),
}

impl StreamId {
    /// A stream of one object of `kind` (Secret or ConfigMap).
    fn named(kind: Kind, namespace: &str, name: &str, watcher: u64) -> StreamId {
        if kind.kind == kinds::CONFIG_MAP.kind {
            StreamId::ConfigMap(namespace.into(), name.into(), watcher)
        } else {
            StreamId::Secret(namespace.into(), name.into(), watcher)
        }
    }

    /// `(kind, namespace, name)` of a stream of one object.
    fn object(&self) -> Option<(&'static str, &str, &str)> {
        match self {
            StreamId::Kind(_) => None,
            StreamId::Secret(ns, n, _) => Some((kinds::SECRET.kind, ns, n)),
            StreamId::ConfigMap(ns, n, _) => Some((kinds::CONFIG_MAP.kind, ns, n)),
        }
    }
}

/// An object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Kind name (`Gateway`).
    pub kind: &'static str,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// `namespace/name`, or `name` for cluster-scoped objects (as `ObjectStatus::key`).
    pub fn path(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// What an event changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing (a repeat, or a list still being built).
    None,
    /// Only `status` or server-managed metadata: no recompile needed, only a status check.
    Status,
    /// Something a compile reads.
    Spec,
}

impl Change {
    fn max(self, other: Change) -> Change {
        match (self, other) {
            (Change::Spec, _) | (_, Change::Spec) => Change::Spec,
            (Change::Status, _) | (_, Change::Status) => Change::Status,
            _ => Change::None,
        }
    }
}

#[derive(Default)]
struct StreamState {
    kind: Option<Kind>,
    objects: BTreeMap<(String, String), Value>,
    building: Option<BTreeMap<(String, String), Value>>,
    listed: bool,
    /// Observed only (see [`Store::observe`]): never compiled, changes count as status.
    observed: bool,
}

/// The raw objects of every stream.
#[derive(Default)]
pub struct Store {
    streams: BTreeMap<StreamId, StreamState>,
}

/// The object as stored: `apiVersion` and `kind` set from the table (list items of built-in
/// kinds come without them), `metadata.managedFields` dropped.
pub fn normalize(kind: &Kind, obj: DynamicObject) -> Option<((String, String), Value)> {
    let mut v = serde_json::to_value(obj).ok()?;
    let map = v.as_object_mut()?;
    map.insert("apiVersion".into(), Value::String(kind.api_version()));
    map.insert("kind".into(), Value::String(kind.kind.to_string()));
    let meta = map.get_mut("metadata")?.as_object_mut()?;
    meta.remove("managedFields");
    let name = meta.get("name")?.as_str()?.to_string();
    let ns = if kind.namespaced {
        meta.get("namespace").and_then(Value::as_str).unwrap_or_default().to_string()
    } else {
        String::new()
    };
    Some(((ns, name), v))
}

/// The object without what a compile never reads: `status`, `metadata.resourceVersion` and
/// `metadata.managedFields`.
fn compiled_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
    }
    v
}

fn diff(old: Option<&Value>, new: Option<&Value>) -> Change {
    match (old, new) {
        (None, None) => Change::None,
        (Some(a), Some(b)) if a == b => Change::None,
        (Some(a), Some(b)) if compiled_part(a) == compiled_part(b) => Change::Status,
        _ => Change::Spec,
    }
}

fn diff_sets(
    old: &BTreeMap<(String, String), Value>,
    new: &BTreeMap<(String, String), Value>,
) -> Change {
    let keys: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
    keys.into_iter().fold(Change::None, |c, k| c.max(diff(old.get(k), new.get(k))))
}

impl Store {
    /// A store expecting one stream per kind of `kinds`.
    pub fn new(kinds: &[Kind]) -> Store {
        let mut s = Store::default();
        for k in kinds {
            s.streams.insert(
                StreamId::Kind(k.kind),
                StreamState { kind: Some(*k), ..Default::default() },
            );
        }
        s
    }

    /// Expects a stream of `kind` whose objects are observed, not compiled (the provisioned
    /// Deployments, whose availability only feeds status): they are left out of
    /// [`Store::objects`] but in [`Store::view`], and their changes are at most
    /// [`Change::Status`].
    pub fn observe(&mut self, kind: Kind) {
        self.streams.insert(
            StreamId::Kind(kind.kind),
            StreamState { kind: Some(kind), observed: true, ..Default::default() },
        );
    }

    /// Expects the stream of one Secret (its objects count once it has listed).
    pub fn add_secret(&mut self, namespace: &str, name: &str, watcher: u64) {
        self.add_named(kinds::SECRET, namespace, name, watcher);
    }

    /// Forgets a Secret's stream and its object.
    pub fn remove_secret(&mut self, namespace: &str, name: &str) -> Change {
        self.remove_named(kinds::SECRET, namespace, name)
    }

    /// Expects the stream of one object of `kind` (Secret or ConfigMap), counted once listed.
    pub fn add_named(&mut self, kind: Kind, namespace: &str, name: &str, watcher: u64) {
        self.streams
            .entry(StreamId::named(kind, namespace, name, watcher))
            .or_insert_with(|| StreamState { kind: Some(kind), ..Default::default() });
    }

    /// Forgets the stream of one object of `kind` and its object.
    pub fn remove_named(&mut self, kind: Kind, namespace: &str, name: &str) -> Change {
        let ids: Vec<StreamId> = self
            .streams
            .keys()
            .filter(|id| id.object() == Some((kind.kind, namespace, name)))
            .cloned()
            .collect();
        let mut change = Change::None;
        for id in ids {
            if self.streams.remove(&id).is_some_and(|s| !s.objects.is_empty()) {
                change = Change::Spec;
            }
        }
        change
    }

    /// Applies one watcher event to its stream.
    pub fn apply(&mut self, id: &StreamId, event: Event<DynamicObject>) -> Change {
        let observed = self.streams.get(id).is_some_and(|s| s.observed);
        let change = self.apply_inner(id, event);
        if observed && change == Change::Spec { Change::Status } else { change }
    }

    fn apply_inner(&mut self, id: &StreamId, event: Event<DynamicObject>) -> Change {
        let Some(st) = self.streams.get_mut(id) else { return Change::None };
        let Some(kind) = st.kind else { return Change::None };
        match event {
            Event::Init => {
                st.building = Some(BTreeMap::new());
                Change::None
            }
            Event::InitApply(obj) => {
                if let Some((k, v)) = normalize(&kind, obj) {
                    st.building.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                Change::None
            }
            Event::InitDone => {
                let new = st.building.take().unwrap_or_default();
                let change = diff_sets(&st.objects, &new);
                st.objects = new;
                if !st.listed {
                    st.listed = true;
                    return Change::Spec;
                }
                change
            }
            Event::Apply(obj) => {
                let Some((k, v)) = normalize(&kind, obj) else { return Change::None };
                let change = diff(st.objects.get(&k), Some(&v));
                st.objects.insert(k, v);
                if st.listed { change } else { Change::None }
            }
            Event::Delete(obj) => {
                let Some((k, _)) = normalize(&kind, obj) else { return Change::None };
                let change = diff(st.objects.get(&k), None);
                st.objects.remove(&k);
                if st.listed { change } else { Change::None }
            }
        }
    }

    /// Every stream has completed its first list.
    pub fn ready(&self) -> bool {
        self.streams.values().all(|s| s.listed)
    }

    /// Every stored object that a compile reads (observed streams left out), stream by stream.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectKey, &Value)> {
        self.all_objects(false)
    }

    fn all_objects(&self, observed: bool) -> impl Iterator<Item = (ObjectKey, &Value)> {
        let streams = self.streams.values().filter(move |s| observed || !s.observed);
        streams.filter_map(|s| s.kind.map(|k| (k, s))).flat_map(|(k, s)| {
            s.objects.iter().map(move |((ns, name), v)| {
                (ObjectKey { kind: k.kind, namespace: ns.clone(), name: name.clone() }, v)
            })
        })
    }

    /// The stored objects of the given kinds, keyed.
    pub fn view(&self, kinds: &[Kind]) -> BTreeMap<ObjectKey, Value> {
        self.all_objects(true)
            .filter(|(k, _)| kinds.iter().any(|kind| kind.kind == k.kind))
            .map(|(k, v)| (k, v.clone()))
            .collect()
    }

    /// The Secrets that listeners reference: `spec.listeners[].tls.certificateRefs[]` of every
    /// Gateway and ListenerSet, kind `Secret` in the core group (the defaults), namespace
    /// defaulting to the referrer's.
    pub fn secret_refs(&self) -> BTreeSet<(String, String)> {
        // Only Gateways of a class of ours, and ListenerSets attached to one: another
        // controller's Secrets are none of our business.
        let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        let classes: BTreeSet<String> = self
            .objects()
            .filter(|(k, o)| {
                k.kind == kinds::GATEWAY_CLASS.kind
                    && text(o, "/spec/controllerName").as_deref()
                        == Some(sniway_compile::CONTROLLER_NAME)
            })
            .map(|(k, _)| k.name)
            .collect();
        let gateways: BTreeSet<(String, String)> = self
            .objects()
            .filter(|(k, o)| {
                k.kind == kinds::GATEWAY.kind
                    && text(o, "/spec/gatewayClassName").is_some_and(|c| classes.contains(&c))
            })
            .map(|(k, _)| (k.namespace, k.name))
            .collect();
        let ours = |key: &ObjectKey, obj: &Value| {
            if key.kind == kinds::GATEWAY.kind {
                return gateways.contains(&(key.namespace.clone(), key.name.clone()));
            }
            let parent_ns =
                text(obj, "/spec/parentRef/namespace").unwrap_or_else(|| key.namespace.clone());
            key.kind == kinds::LISTENER_SET.kind
                && text(obj, "/spec/parentRef/name")
                    .is_some_and(|n| gateways.contains(&(parent_ns, n)))
        };
        let mut out = BTreeSet::new();
        for (key, obj) in self.objects() {
            if !ours(&key, obj) {
                continue;
            }
            let listeners = obj.pointer("/spec/listeners").and_then(Value::as_array);
            for l in listeners.into_iter().flatten() {
                let refs = l.pointer("/tls/certificateRefs").and_then(Value::as_array);
                for r in refs.into_iter().flatten() {
                    let text = |f: &str| r.get(f).and_then(Value::as_str);
                    let group = text("group").unwrap_or("");
                    let kind = text("kind").unwrap_or("Secret");
                    let Some(name) = text("name") else { continue };
                    if group.is_empty() && kind == "Secret" {
                        let ns = text("namespace").unwrap_or(&key.namespace);
                        out.insert((ns.to_string(), name.to_string()));
                    }
                }
            }
        }
        out
    }

    /// The ConfigMaps that BackendPolicies' TLS health checks name
    /// (`spec.healthCheck.active.tls.caCertificateRefs[]` of kind `ConfigMap`, group `""`), in
    /// the policy's namespace.
    pub fn config_map_refs(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (key, obj) in self.objects() {
            if key.kind != kinds::BACKEND_POLICY.kind {
                continue;
            }
            let refs = obj.pointer("/spec/healthCheck/active/tls/caCertificateRefs");
            for r in refs.and_then(Value::as_array).into_iter().flatten() {
                let text = |f: &str| r.get(f).and_then(Value::as_str);
                if text("group").unwrap_or("").is_empty()
                    && text("kind") == Some("ConfigMap")
                    && let Some(name) = text("name")
                {
                    out.insert((key.namespace.clone(), name.to_string()));
                }
            }
        }
        out
    }

    /// The Secret streams expected now.
    pub fn secret_streams(&self) -> BTreeSet<(String, String)> {
        self.named_streams(kinds::SECRET)
    }

    /// The streams of one object of `kind` expected now.
    pub fn named_streams(&self, kind: Kind) -> BTreeSet<(String, String)> {
        self.streams
            .keys()
            .filter_map(|id| match id.object() {
                Some((k, ns, n)) if k == kind.kind => Some((ns.to_string(), n.to_string())),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, label: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "a", "labels": {"l": label},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"ports": [{"port": 1}]},
        }))
        .unwrap()
    }

    fn names(store: &Store) -> Vec<String> {
        store.objects().map(|(k, _)| k.name).collect()
    }

    #[test]
    fn a_relist_is_served_only_once_complete() {
        let id = StreamId::Kind("Service");
        let mut store = Store::new(&[kinds::SERVICE]);
        assert!(!store.ready());
        store.apply(&id, Event::Init);
        store.apply(&id, Event::InitApply(svc("x", "1")));
        assert!(names(&store).is_empty(), "a half-built list is not served");
        assert_eq!(store.apply(&id, Event::InitDone), Change::Spec);
        assert!(store.ready());
        let (_, x) = store.objects().next().unwrap();
        assert_eq!(x["kind"], "Service");
        assert_eq!(x["apiVersion"], "v1");
        assert!(x["metadata"].get("managedFields").is_none());

        // A re-list: the old set is served until InitDone swaps the new one in.
        store.apply(&id, Event::Init);
        store.apply(&id, Event::InitApply(svc("y", "1")));
        assert_eq!(names(&store), ["x"]);
        assert_eq!(store.apply(&id, Event::InitDone), Change::Spec);
        assert_eq!(names(&store), ["y"]);
    }

    #[test]
    fn a_status_only_change_needs_no_compile() {
        let id = StreamId::Kind("Service");
        let mut store = Store::new(&[kinds::SERVICE]);
        store.apply(&id, Event::Init);
        store.apply(&id, Event::InitDone);
        assert_eq!(store.apply(&id, Event::Apply(svc("x", "1"))), Change::Spec);
        assert_eq!(store.apply(&id, Event::Apply(svc("x", "1"))), Change::None);
        let mut with_status = svc("x", "1");
        with_status.data["status"] = json!({"loadBalancer": {}});
        with_status.metadata.resource_version = Some("9".into());
        assert_eq!(store.apply(&id, Event::Apply(with_status)), Change::Status);
        assert_eq!(store.apply(&id, Event::Apply(svc("x", "2"))), Change::Spec);
        assert_eq!(store.apply(&id, Event::Delete(svc("x", "2"))), Change::Spec);
    }

    #[test]
    fn observed_objects_are_viewed_not_compiled_and_change_only_status() {
        let id = StreamId::Kind("Deployment");
        let mut store = Store::new(&[kinds::SERVICE]);
        store.observe(kinds::DEPLOYMENT);
        let svc_id = StreamId::Kind("Service");
        store.apply(&svc_id, Event::Init);
        store.apply(&svc_id, Event::InitDone);
        assert!(!store.ready(), "waits for the observed stream's list too");
        store.apply(&id, Event::Init);
        assert_eq!(store.apply(&id, Event::InitDone), Change::Status);
        assert!(store.ready());
        let dep: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "a"}, "spec": {"replicas": 1},
        }))
        .unwrap();
        assert_eq!(store.apply(&id, Event::Apply(dep)), Change::Status);
        assert_eq!(store.objects().count(), 0);
        let view = store.view(&[kinds::DEPLOYMENT]);
        assert_eq!(view.keys().map(|k| k.path()).collect::<Vec<_>>(), ["a/d"]);
        assert_eq!(view.values().next().unwrap()["kind"], "Deployment");
    }

    #[test]
    fn events_of_a_stopped_secret_watcher_are_ignored() {
        let mut store = Store::new(&[]);
        store.add_secret("a", "s", 1);
        assert!(!store.ready(), "waits for the Secret's list");
        store.remove_secret("a", "s");
        store.add_secret("a", "s", 2);
        let old = StreamId::Secret("a".into(), "s".into(), 1);
        store.apply(&old, Event::Init);
        assert_eq!(store.apply(&old, Event::InitDone), Change::None);
        assert!(!store.ready());
        let new = StreamId::Secret("a".into(), "s".into(), 2);
        store.apply(&new, Event::Init);
        store.apply(&new, Event::InitDone);
        assert!(store.ready());
    }

    #[test]
    fn listeners_of_our_gateways_reference_secrets_in_their_own_namespace_by_default() {
        let mut store = Store::new(&[kinds::GATEWAY_CLASS, kinds::GATEWAY]);
        let list = |store: &mut Store, kind: &'static str, objects: Vec<Value>| {
            let id = StreamId::Kind(kind);
            store.apply(&id, Event::Init);
            for o in objects {
                store.apply(&id, Event::InitApply(serde_json::from_value(o).unwrap()));
            }
            store.apply(&id, Event::InitDone);
        };
        let class = |name: &str, controller: &str| json!({"metadata": {"name": name}, "spec": {"controllerName": controller}});
        list(
            &mut store,
            "GatewayClass",
            vec![
                class("ours", sniway_compile::CONTROLLER_NAME),
                class("theirs", "example.com/other"),
            ],
        );
        list(
            &mut store,
            "Gateway",
            vec![
                json!({
                    "metadata": {"name": "g", "namespace": "infra"},
                    "spec": {"gatewayClassName": "ours", "listeners": [
                        {"tls": {"certificateRefs": [{"name": "a"}, {"name": "b", "namespace": "certs"},
                                                     {"name": "c", "group": "example.com", "kind": "Vault"}]}},
                        {"name": "no-tls"},
                    ]},
                }),
                json!({
                    "metadata": {"name": "other", "namespace": "infra"},
                    "spec": {"gatewayClassName": "theirs", "listeners": [
                        {"tls": {"certificateRefs": [{"name": "not-ours"}]}},
                    ]},
                }),
            ],
        );
        let refs: Vec<(String, String)> = store.secret_refs().into_iter().collect();
        assert_eq!(
            refs,
            [("certs".to_string(), "b".to_string()), ("infra".to_string(), "a".to_string())]
        );
    }

    #[test]
    fn backend_policies_name_ca_config_maps_in_their_own_namespace() {
        let mut store = Store::new(&[kinds::BACKEND_POLICY]);
        let id = StreamId::Kind("BackendPolicy");
        store.apply(&id, Event::Init);
        let policy = json!({
            "metadata": {"name": "p", "namespace": "apps"},
            "spec": {"healthCheck": {"active": {"type": "TLS", "tls": {"caCertificateRefs": [
                {"kind": "ConfigMap", "name": "ca"},
                {"group": "", "kind": "ConfigMap", "name": "ca-2"},
                {"kind": "Secret", "name": "not-a-config-map"},
            ]}}}},
        });
        store.apply(&id, Event::InitApply(serde_json::from_value(policy).unwrap()));
        store.apply(&id, Event::InitDone);
        let refs: Vec<(String, String)> = store.config_map_refs().into_iter().collect();
        assert_eq!(refs, [("apps".into(), "ca".into()), ("apps".into(), "ca-2".into())]);
        // Their streams are apart from Secrets'.
        store.add_named(kinds::CONFIG_MAP, "apps", "ca", 1);
        assert_eq!(store.named_streams(kinds::CONFIG_MAP).len(), 1);
        assert!(store.secret_streams().is_empty());
        assert!(!store.ready(), "waits for the ConfigMap's list");
        assert_eq!(store.remove_named(kinds::CONFIG_MAP, "apps", "ca"), Change::None);
        assert!(store.ready());
    }
}
