//! A simulated Kubernetes API server, in process, for controller tests.
//!
//! It speaks HTTP/1.1 on `127.0.0.1` (a port of its own) and answers the requests `kube`'s
//! typed `Api` and `kube-runtime`'s watcher send, with the bodies, status codes and `Status`
//! objects a real API server answers with
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/>). Tests reach it through a
//! real `kube::Client` built from the kubeconfig it writes ([`ApiServer::kubeconfig`],
//! [`ApiServer::client`]).
//!
//! Served, for any resource (no discovery, no schemas):
//! - paths `/api/v1/...` and `/apis/GROUP/VERSION/...`, namespaced (`namespaces/NS/PLURAL`) and
//!   cluster-wide (`PLURAL`), with `/NAME` and `/NAME/SUBRESOURCE`;
//! - list (`kind: <Kind>List`, `metadata.resourceVersion`; `labelSelector`, `fieldSelector` on
//!   `metadata.name` and `metadata.namespace`; `limit` and `continue` are ignored: every item
//!   comes in one page);
//! - watch (`watch=true`, `resourceVersion`, `allowWatchBookmarks`, `timeoutSeconds`):
//!   newline-delimited `ADDED`, `MODIFIED`, `DELETED` and `BOOKMARK` events, replayed from the
//!   given resourceVersion; one that is too old gets an `ERROR` event carrying a 410 `Status`;
//! - get, create (`POST`), replace (`PUT`; 409 Conflict on a stale `metadata.resourceVersion`),
//!   delete, merge patch, server-side apply, and the `status` subresource for get, replace and
//!   patch. A status write never changes `metadata.generation`; a change outside `metadata` and
//!   `status` increments it. Writes to the main resource keep the stored `status`, as for every
//!   resource with a status subresource.
//! - one resourceVersion counter for everything; `uid` and `creationTimestamp` on create.
//!
//! Server-side apply is simplified: the applied configuration is merged into the object (maps
//! recursively, lists and scalars replaced), applying to a missing object creates it. Unlike
//! the real thing (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>) no field
//! ownership is tracked: a field the manager applied before and leaves out now is kept instead
//! of removed, lists are always atomic (no `listType=map` merging by key across managers), there
//! are no conflicts (so `force` changes nothing; it is recorded in the write log) and no
//! `managedFields`.
//!
//! The test side: [`ApiServer::apply`], [`ApiServer::remove`] and [`ApiServer::get`] act as
//! `kubectl` would (and emit watch events); [`ApiServer::writes`] is the log of every write
//! request for exact assertions; faults: [`ApiServer::end_watches`], [`ApiServer::fail_next`]
//! (500s) and [`ApiServer::expire_resource_versions`] (410 Gone).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};

/// How long [`ApiServer::wait_for_writes`] and friends wait before giving up (a deadline for a
/// failing test, never a synchronisation).
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// One write request, as received.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// URL path, without the query.
    pub path: String,
    /// `Content-Type` header (empty when absent).
    pub content_type: String,
    /// The body, parsed (JSON, or YAML for apply patches); `Null` when empty.
    pub body: Value,
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// `force` query parameter is `true`.
    pub force: bool,
    /// HTTP status code of the answer.
    pub code: u16,
}

/// One request of any kind, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// HTTP status code of the answer (200 for a watch that was started).
    pub code: u16,
}

impl RequestLine {
    /// A watch request (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        query_pairs(&self.query).iter().any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Res {
    group: String,
    plural: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    res: Res,
    namespace: Option<String>,
    name: String,
}

struct Watcher {
    res: Res,
    namespace: Option<String>,
    labels: Option<String>,
    fields: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct HistoryEvent {
    rv: u64,
    key: Key,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    /// Watches from a resourceVersion at or below this get 410 Gone.
    expired: u64,
    objects: BTreeMap<Key, Value>,
    kinds: HashMap<Res, (String, String)>,
    history: Vec<HistoryEvent>,
    watchers: Vec<Watcher>,
    faults: HashMap<String, (u16, u32)>,
    writes: Vec<Write>,
    requests: Vec<RequestLine>,
}

struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The simulated API server; stops when dropped.
pub struct ApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.inner.lock().watchers.clear();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

type Body = BoxBody<Bytes, Infallible>;

impl ApiServer {
    /// Starts a server on `127.0.0.1:0` and writes its kubeconfig (context `sim`, no
    /// credentials) to a file of its own under the temporary directory.
    pub async fn start() -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner { state: Mutex::new(State::default()), changed: Notify::new() });
        let kubeconfig = std::env::temp_dir().join(format!(
            "sniway-apiserver-{}-{}.kubeconfig",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&kubeconfig, kubeconfig_text(addr))?;
        let served = inner.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = served.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        Ok(ApiServer { inner, addr, kubeconfig, accept })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig file: cluster `sim` at `http://127.0.0.1:PORT`, current context `sim`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client built from the kubeconfig file, as against a real cluster.
    pub async fn client(
        &self,
    ) -> Result<kube_client::Client, Box<dyn std::error::Error + Send + Sync>> {
        use kube_client::config::{KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube_client::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube_client::Client::try_from(config)?)
    }

    /// Creates or updates an object as `kubectl apply` would: metadata and spec from `obj`,
    /// the stored `status` kept unless `obj` has one (then it is set, as another controller
    /// would). Emits a watch event. Returns the stored object. Namespaced objects without a
    /// namespace go to `default`; the resource (plural) is derived from the kind (see
    /// [`plural_of`]).
    pub fn apply(&self, obj: Value) -> Value {
        let mut st = self.inner.lock();
        let out = st.kubectl_apply(obj);
        drop(st);
        self.inner.changed.notify_waiters();
        out
    }

    /// Deletes an object as `kubectl delete` would; false when absent.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let key = key_of(api_version, kind, namespace, name);
        let mut st = self.inner.lock();
        let found = st.delete(&key).is_some();
        drop(st);
        self.inner.changed.notify_waiters();
        found
    }

    /// The stored object.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = key_of(api_version, kind, namespace, name);
        self.inner.lock().objects.get(&key).cloned()
    }

    /// Every write request so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.inner.lock().writes.clone()
    }

    /// Forgets the write log.
    pub fn clear_writes(&self) {
        self.inner.lock().writes.clear();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestLine> {
        self.inner.lock().requests.clone()
    }

    /// Waits until the write log has at least `n` entries (at most [`WAIT_LIMIT`]) and returns it.
    pub async fn wait_for_writes(&self, n: usize) -> Vec<Write> {
        self.wait_until(|st| (st.writes.len() >= n).then(|| st.writes.clone()))
            .await
            .unwrap_or_else(|| self.writes())
    }

    /// Waits until `pred` holds of the request log (at most [`WAIT_LIMIT`]); false on timeout.
    pub async fn wait_for_requests(&self, pred: impl Fn(&[RequestLine]) -> bool) -> bool {
        self.wait_until(|st| pred(&st.requests).then_some(())).await.is_some()
    }

    /// Waits until the stored object satisfies `pred` (at most [`WAIT_LIMIT`]) and returns it.
    pub async fn wait_for_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let key = key_of(api_version, kind, namespace, name);
        self.wait_until(|st| st.objects.get(&key).filter(|v| pred(v)).cloned()).await
    }

    /// Waits until `n` watches are open on paths of the resource `plural` (at most
    /// [`WAIT_LIMIT`]); false on timeout.
    pub async fn wait_for_watches(&self, plural: &str, n: usize) -> bool {
        self.wait_until(|st| {
            let open = st.watchers.iter().filter(|w| w.res.plural == plural && !w.tx.is_closed());
            (open.count() >= n).then_some(())
        })
        .await
        .is_some()
    }

    /// Open watches on the resource `plural`, with their field selectors.
    pub fn open_watches(&self, plural: &str) -> Vec<Option<String>> {
        let st = self.inner.lock();
        st.watchers
            .iter()
            .filter(|w| w.res.plural == plural && !w.tx.is_closed())
            .map(|w| w.fields.clone())
            .collect()
    }

    async fn wait_until<T>(&self, f: impl Fn(&State) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = f(&self.inner.lock()) {
                return Some(t);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Ends every open watch (the clients see the stream end and watch again).
    pub fn end_watches(&self) {
        self.inner.lock().watchers.clear();
        self.inner.changed.notify_waiters();
    }

    /// Answers the next `n` requests whose URL path is `path` with 500 InternalError.
    pub fn fail_next(&self, path: &str, n: u32) {
        self.fail_next_with(path, 500, n);
    }

    /// Answers the next `n` requests whose URL path is `path` with a `Status` of `code`
    /// (reason `Conflict` for 409, `NotFound` for 404, `InternalError` otherwise): another
    /// writer got there first, a resource is not served, etcd fails.
    pub fn fail_next_with(&self, path: &str, code: u16, n: u32) {
        self.inner.lock().faults.insert(path.to_string(), (code, n));
    }

    /// Makes every resourceVersion given out so far too old: watches from them get an `ERROR`
    /// event with a 410 Gone `Status`, as after etcd compaction; open watches are ended. The
    /// counter moves on, so a fresh list gives a usable resourceVersion.
    pub fn expire_resource_versions(&self) {
        let mut st = self.inner.lock();
        st.rv += 1;
        st.expired = st.rv - 1;
        st.history.clear();
        st.watchers.clear();
        drop(st);
        self.inner.changed.notify_waiters();
    }

    /// Sends a `BOOKMARK` event with the current resourceVersion to every open watch (the API
    /// server sends them only to watches with `allowWatchBookmarks`, and clients must accept
    /// them in any case).
    pub fn bookmark(&self) {
        let mut st = self.inner.lock();
        let rv = st.rv;
        let kinds = st.kinds.clone();
        st.watchers.retain(|w| {
            let (api_version, kind) =
                kinds.get(&w.res).cloned().unwrap_or_else(|| (String::new(), String::new()));
            let ev = json!({"type": "BOOKMARK", "object": {
                "apiVersion": api_version, "kind": kind,
                "metadata": {"resourceVersion": rv.to_string()}}});
            w.tx.send(line(&ev)).is_ok()
        });
    }

    /// The current resourceVersion counter.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }
}

fn kubeconfig_text(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\n\
         current-context: sim\nusers:\n- name: sim\n  user: {{}}\n"
    )
}

/// The resource name of a kind, as the API server's REST mapper would guess it: lower case,
/// plural (`Gateway` -> `gateways`, `GatewayClass` -> `gatewayclasses`, `ListenerPolicy` ->
/// `listenerpolicies`).
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Kinds that are cluster-scoped; every other kind is namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "GatewayClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
];

fn group_of(api_version: &str) -> String {
    api_version.split_once('/').map(|(g, _)| g.to_string()).unwrap_or_default()
}

fn key_of(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if CLUSTER_SCOPED.contains(&kind) {
        None
    } else {
        Some(namespace.unwrap_or("default").to_string())
    };
    Key {
        res: Res { group: group_of(api_version), plural: plural_of(kind) },
        namespace,
        name: name.to_string(),
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The API server's `creationTimestamp`: RFC 3339 UTC, whole seconds.
fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.round(k8s_openapi::jiff::Unit::Second).map_or_else(|_| now.to_string(), |t| t.to_string())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// The simplified server-side apply merge: maps recursively, everything else replaced.
fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied) {
        (Some(t), Value::Object(a)) => {
            for (k, v) in a {
                apply_merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = applied.clone(),
    }
}

fn without_meta_and_status(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).map(str::to_string)
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if let Some(map) = obj.as_object_mut() {
        let m = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if !m.is_object() {
            *m = Value::Object(Map::new());
        }
        if let Some(m) = m.as_object_mut() {
            m.insert(field.to_string(), value);
        }
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

// ---- selectors ----

fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = obj.get("metadata").and_then(|m| m.get("labels"));
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    split_selector(selector).iter().all(|req| {
        let req = req.trim();
        if req.is_empty() {
            return true;
        }
        if let Some((k, rest)) = req.split_once(" notin ") {
            let set = parse_set(rest);
            return get(k.trim()).is_none_or(|v| !set.contains(&v));
        }
        if let Some((k, rest)) = req.split_once(" in ") {
            let set = parse_set(rest);
            return get(k.trim()).is_some_and(|v| set.contains(&v));
        }
        if let Some((k, v)) = req.split_once("!=") {
            return get(k.trim()) != Some(v.trim());
        }
        if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            return get(k.trim()) == Some(v.trim());
        }
        if let Some(k) = req.strip_prefix('!') {
            return get(k.trim()).is_none();
        }
        get(req).is_some()
    })
}

/// Splits on commas outside parentheses.
fn split_selector(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(s: &str) -> Vec<&str> {
    s.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(str::trim).collect()
}

fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|r| !r.trim().is_empty()).all(|req| {
        let (k, v, neg) = if let Some((k, v)) = req.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            (k, v, false)
        } else {
            return false;
        };
        let actual = match k.trim() {
            "metadata.name" => meta(obj, "name"),
            "metadata.namespace" => meta(obj, "namespace"),
            _ => None,
        };
        (actual.as_deref() == Some(v.trim())) != neg
    })
}

fn selected(obj: &Value, labels: Option<&str>, fields: Option<&str>) -> bool {
    labels.is_none_or(|l| labels_match(obj, l)) && fields.is_none_or(|f| fields_match(obj, f))
}

// ---- state ----

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn learn(&mut self, res: &Res, obj: &Value) {
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        if let (Some(a), Some(k)) = (text("apiVersion"), text("kind")) {
            self.kinds.insert(res.clone(), (a, k));
        }
    }

    /// Stores `new` (or deletes when None) with a fresh resourceVersion and tells watchers.
    fn commit(&mut self, key: Key, new: Option<Value>) -> Option<Value> {
        let rv = self.next_rv();
        let old = self.objects.get(&key).cloned();
        let new = new.map(|mut v| {
            set_meta(&mut v, "resourceVersion", Value::String(rv.to_string()));
            v
        });
        match &new {
            Some(v) => {
                self.learn(&key.res, v);
                self.objects.insert(key.clone(), v.clone());
            }
            None => {
                self.objects.remove(&key);
            }
        }
        // A deleted object is reported with the deletion's resourceVersion.
        let reported_old = old.clone().map(|mut v| {
            if new.is_none() {
                set_meta(&mut v, "resourceVersion", Value::String(rv.to_string()));
            }
            v
        });
        let ev = HistoryEvent { rv, key, old: reported_old, new: new.clone() };
        self.watchers.retain(|w| match event_for(w, &ev) {
            Some(bytes) => w.tx.send(bytes).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.history.push(ev);
        new.or(old)
    }

    fn create(&mut self, key: Key, mut obj: Value) -> Value {
        self.uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uid);
        set_meta(&mut obj, "uid", Value::String(uid));
        set_meta(&mut obj, "creationTimestamp", Value::String(now_rfc3339()));
        set_meta(&mut obj, "generation", json!(1));
        set_meta(&mut obj, "name", Value::String(key.name.clone()));
        match &key.namespace {
            Some(ns) => set_meta(&mut obj, "namespace", Value::String(ns.clone())),
            None => {
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("namespace");
                }
            }
        }
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        self.commit(key, Some(obj)).unwrap_or(Value::Null)
    }

    /// A new version of the object: server-set metadata kept, generation bumped when anything
    /// outside metadata and status changed.
    fn update(&mut self, key: Key, old: &Value, mut obj: Value) -> Value {
        for field in ["uid", "creationTimestamp", "name", "namespace"] {
            match old.get("metadata").and_then(|m| m.get(field)) {
                Some(v) => set_meta(&mut obj, field, v.clone()),
                None => {
                    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(field);
                    }
                }
            }
        }
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bumped = without_meta_and_status(old) != without_meta_and_status(&obj);
        set_meta(&mut obj, "generation", json!(if bumped { generation + 1 } else { generation }));
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        if &obj == old {
            return old.clone();
        }
        self.commit(key, Some(obj)).unwrap_or(Value::Null)
    }

    fn delete(&mut self, key: &Key) -> Option<Value> {
        if !self.objects.contains_key(key) {
            return None;
        }
        self.commit(key.clone(), None)
    }

    fn kubectl_apply(&mut self, obj: Value) -> Value {
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let name = meta(&obj, "name").unwrap_or_default();
        let ns = meta(&obj, "namespace");
        let key = key_of(&api_version, &kind, ns.as_deref(), &name);
        match self.objects.get(&key).cloned() {
            None => self.create(key, obj),
            Some(old) => {
                let mut new = obj;
                if new.get("status").is_none()
                    && let (Some(s), Some(m)) = (old.get("status"), new.as_object_mut())
                {
                    m.insert("status".into(), s.clone());
                }
                self.update(key, &old, new)
            }
        }
    }
}

/// The watch event line `w` should see for `ev`, if any: selectors are checked against the old
/// and the new object, so an object leaving a selection is reported deleted.
fn event_for(w: &Watcher, ev: &HistoryEvent) -> Option<Bytes> {
    if w.res != ev.key.res {
        return None;
    }
    if w.namespace.is_some() && w.namespace != ev.key.namespace {
        return None;
    }
    let sel = |v: Option<&'_ Value>| -> bool {
        v.is_some_and(|v| selected(v, w.labels.as_deref(), w.fields.as_deref()))
    };
    let old = ev.old.as_ref().filter(|v| sel(Some(v)));
    let new = ev.new.as_ref().filter(|v| sel(Some(v)));
    let (ty, obj) = match (old, new) {
        (None, Some(n)) => ("ADDED", n.clone()),
        (Some(_), Some(n)) => ("MODIFIED", n.clone()),
        (Some(o), None) => {
            let mut o = o.clone();
            if ev.new.is_some() {
                set_meta(&mut o, "resourceVersion", Value::String(ev.rv.to_string()));
            }
            ("DELETED", o)
        }
        (None, None) => return None,
    };
    Some(line(&json!({"type": ty, "object": obj})))
}

// ---- HTTP ----

struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) =
        if namespaced { (Some(percent_decode(rest[1])), &rest[2..]) } else { (None, rest) };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(percent_decode(n)), None),
        [p, n, s] => (p, Some(percent_decode(n)), Some(s.to_string())),
        _ => return None,
    };
    if plural.is_empty() {
        return None;
    }
    Some(Target { group, version, plural: plural.to_string(), namespace, name, sub })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn failure(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(code, &status_body(code, reason, message))
}

async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let params: HashMap<String, String> = query_pairs(&query).into_iter().collect();
    let write = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else if content_type.starts_with("application/apply-patch+yaml") {
        serde_yaml_ng::from_slice(&bytes).unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };

    let (resp, code) = {
        let mut st = inner.lock();
        let fault = st.faults.get_mut(&path).filter(|(_, n)| *n > 0).map(|(code, n)| {
            *n -= 1;
            *code
        });
        let resp = if let Some(code) = fault {
            match code {
                409 => failure(409, "Conflict", "injected fault: the object has been modified"),
                404 => failure(
                    404,
                    "NotFound",
                    "injected fault: the server could not find the requested resource",
                ),
                code => failure(code, "InternalError", "injected fault"),
            }
        } else if !bytes.is_empty() && body.is_null() {
            failure(400, "BadRequest", "the body could not be decoded")
        } else {
            match parse_path(&path) {
                None => {
                    failure(404, "NotFound", "the server could not find the requested resource")
                }
                Some(t) => serve(&mut st, &method, &t, &params, &content_type, body.clone()),
            }
        };
        let code = resp.status().as_u16();
        st.requests.push(RequestLine {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            code,
        });
        if write {
            st.writes.push(Write {
                method: method.to_string(),
                path: path.clone(),
                content_type,
                body,
                field_manager: params.get("fieldManager").cloned(),
                force: params.get("force").is_some_and(|f| f == "true"),
                code,
            });
        }
        (resp, code)
    };
    let _ = code;
    inner.changed.notify_waiters();
    resp
}

fn serve(
    st: &mut State,
    method: &Method,
    t: &Target,
    params: &HashMap<String, String>,
    content_type: &str,
    body: Value,
) -> Response<Body> {
    let res = Res { group: t.group.clone(), plural: t.plural.clone() };
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let Some(name) = t.name.clone() else {
        return match *method {
            Method::GET if watch => start_watch(st, res, t, params),
            Method::GET => list(st, &res, t, params),
            Method::POST => {
                let name = match meta(&body, "name") {
                    Some(n) => n,
                    None => match meta(&body, "generateName") {
                        Some(prefix) => format!("{prefix}{:05x}", st.rv + 1),
                        None => return failure(422, "Invalid", "metadata.name: Required value"),
                    },
                };
                let key = Key { res, namespace: t.namespace.clone(), name };
                if st.objects.contains_key(&key) {
                    let msg = format!("{} \"{}\" already exists", t.plural, key.name);
                    return failure(409, "AlreadyExists", &msg);
                }
                let mut obj = body;
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                respond(201, &st.create(key, obj))
            }
            _ => failure(405, "MethodNotAllowed", "the server does not allow this method"),
        };
    };
    let key = Key { res, namespace: t.namespace.clone(), name: name.clone() };
    let not_found = || failure(404, "NotFound", &format!("{} \"{}\" not found", t.plural, name));
    let status_sub = match t.sub.as_deref() {
        None => false,
        Some("status") => true,
        Some(_) => {
            return failure(404, "NotFound", "the server could not find the requested resource");
        }
    };
    let current = st.objects.get(&key).cloned();
    match *method {
        Method::GET => match current {
            Some(obj) => respond(200, &obj),
            None => not_found(),
        },
        Method::DELETE => match st.delete(&key) {
            Some(obj) => respond(200, &obj),
            None => not_found(),
        },
        Method::PUT => {
            let Some(old) = current else { return not_found() };
            if let Some(rv) = meta(&body, "resourceVersion")
                && Some(rv) != meta(&old, "resourceVersion")
            {
                let msg = format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                     please apply your changes to the latest version and try again",
                    t.plural, name
                );
                return failure(409, "Conflict", &msg);
            }
            let new = with_part(&old, body, status_sub);
            respond(200, &st.update(key, &old, new))
        }
        Method::PATCH => {
            let apply = content_type.starts_with("application/apply-patch+yaml");
            if apply && params.get("fieldManager").is_none_or(String::is_empty) {
                return failure(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is \
                     required for apply patch",
                );
            }
            let merge = content_type.starts_with("application/merge-patch+json")
                || content_type.starts_with("application/strategic-merge-patch+json");
            if !apply && !merge {
                return failure(415, "UnsupportedMediaType", "unsupported patch type");
            }
            if let Some(rv) = meta(&body, "resourceVersion")
                && current.is_some()
                && Some(&rv) != current.as_ref().and_then(|c| meta(c, "resourceVersion")).as_ref()
            {
                return failure(409, "Conflict", "the object has been modified");
            }
            let patch = |target: &mut Value| {
                if apply {
                    let mut b = body.clone();
                    if let Some(m) = b.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    apply_merge(target, &b)
                } else {
                    merge_patch(target, &body)
                }
            };
            match current {
                Some(old) => {
                    let mut patched = old.clone();
                    patch(&mut patched);
                    let new = with_part(&old, patched, status_sub);
                    respond(200, &st.update(key, &old, new))
                }
                None if apply && !status_sub => {
                    let mut obj = Value::Object(Map::new());
                    patch(&mut obj);
                    respond(201, &st.create(key, obj))
                }
                None => not_found(),
            }
        }
        _ => failure(405, "MethodNotAllowed", "the server does not allow this method"),
    }
}

/// `old` with either its `status` (status subresource) or everything else (main resource)
/// taken from `new`.
fn with_part(old: &Value, new: Value, status_sub: bool) -> Value {
    let mut out = if status_sub { old.clone() } else { new.clone() };
    let status = if status_sub { new.get("status").cloned() } else { old.get("status").cloned() };
    if let Some(m) = out.as_object_mut() {
        match status {
            Some(s) => {
                m.insert("status".into(), s);
            }
            None => {
                m.remove("status");
            }
        }
    }
    out
}

fn list(st: &mut State, res: &Res, t: &Target, params: &HashMap<String, String>) -> Response<Body> {
    let labels = params.get("labelSelector").map(String::as_str);
    let fields = params.get("fieldSelector").map(String::as_str);
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|(k, v)| {
            &k.res == res
                && (t.namespace.is_none() || k.namespace == t.namespace)
                && selected(v, labels, fields)
        })
        .map(|(_, v)| v.clone())
        .collect();
    let kind = st.kinds.get(res).map(|(_, k)| format!("{k}List")).unwrap_or_else(|| "List".into());
    let api_version =
        if t.group.is_empty() { t.version.clone() } else { format!("{}/{}", t.group, t.version) };
    respond(
        200,
        &json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    )
}

fn start_watch(
    st: &mut State,
    res: Res,
    t: &Target,
    params: &HashMap<String, String>,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    let w = Watcher {
        res,
        namespace: t.namespace.clone(),
        labels: params.get("labelSelector").cloned(),
        fields: params.get("fieldSelector").cloned(),
        tx,
    };
    let from = params.get("resourceVersion").map(String::as_str).unwrap_or("");
    let timeout = params.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok());
    match from {
        "" | "0" => {
            // "Start at most recent": every current object as ADDED, then changes.
            for (k, v) in &st.objects {
                if k.res == w.res
                    && (w.namespace.is_none() || k.namespace == w.namespace)
                    && selected(v, w.labels.as_deref(), w.fields.as_deref())
                {
                    let _ = w.tx.send(line(&json!({"type": "ADDED", "object": v})));
                }
            }
            st.watchers.push(w);
        }
        rv => {
            let rv: u64 = match rv.parse() {
                Ok(rv) => rv,
                Err(_) => return failure(400, "BadRequest", "invalid resourceVersion"),
            };
            if rv <= st.expired {
                let msg = format!("too old resource version: {rv} ({})", st.expired + 1);
                let status = status_body(410, "Expired", &msg);
                let _ = w.tx.send(line(&json!({"type": "ERROR", "object": status})));
                drop(w);
            } else {
                for ev in st.history.iter().filter(|e| e.rv > rv) {
                    if let Some(b) = event_for(&w, ev) {
                        let _ = w.tx.send(b);
                    }
                }
                st.watchers.push(w);
            }
        }
    }
    let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        next.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
