//! Strict multi-document YAML (and JSON) loading into [`Resources`].
//!
//! Each document is read as a generic value first (to learn its `apiVersion` and `kind`), then
//! into our own typed structs through `serde_ignored` (unknown fields become warnings naming
//! their path) and `serde_path_to_error` (type errors name their path). Then `validate.rs`
//! applies what the API server would enforce. Every error names the file, the object and the
//! field path, and all of them are reported, not just the first.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{
    ConfigMapDocument, Document, EndpointSliceDocument, GatewayClassSpec, GatewaySpec,
    HttpRouteSpec, ListenerSetSpec, ReferenceGrantSpec, SecretDocument, ServiceImportSpec,
    ServiceSpec, TlsRouteSpec,
};
use crate::policy::{BackendPolicySpec, ListenerPolicySpec, MULTICLUSTER_GROUP};
use crate::resources::{EndpointSlice, Meta, Object, Resources, RouteVersion, Secret, TlsRoute};
use crate::validate::{self, Findings};
use crate::{GATEWAY_GROUP, api::ObjectMeta};

/// One input file (or standard input).
#[derive(Clone, Debug)]
pub struct Source {
    /// File path, or `<stdin>`; used in messages.
    pub name: String,
    /// The file's text: YAML documents separated by `---`, or JSON.
    pub text: String,
}

/// How to read sources.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Namespace for namespaced objects that name none (like `kubectl apply -n`).
    pub default_namespace: String,
    /// Objects come from an API server that already validated them (a controller's watches):
    /// unknown fields are not reported (the server may serve a newer schema than sniway
    /// reads), `status` and server-set metadata are ignored, and an object sniway's
    /// validation rejects is skipped with a warning naming it and why, instead of failing the
    /// whole load: one bad object never fails a cluster snapshot.
    pub cluster: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { default_namespace: "default".into(), cluster: false }
    }
}

/// A loaded snapshot and what was worth saying about it.
#[derive(Debug)]
pub struct Loaded {
    /// The objects.
    pub resources: Resources,
    /// Unknown fields, ignored kinds, extensions in use; one line each.
    pub warnings: Vec<String>,
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// `Source::name`.
    pub source: String,
    /// `Kind namespace/name`, `Kind name` (cluster-scoped) or `document N` when unnamed.
    pub object: String,
    /// Field path such as `spec.hostnames[0]`; empty for the whole object.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.source, self.object)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The input would be rejected by the API server; every reason, one per line.
#[derive(Clone, Debug, thiserror::Error)]
pub struct LoadError {
    /// Every error found.
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Parses multi-document YAML (and JSON: a JSON file is valid YAML) into a snapshot. Also accepts
/// a `kind: List` (v1) document with `items`. Err when the API server would reject any object.
pub fn load(sources: &[Source], opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut cx = Loader::new(opts);
    for src in sources {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&src.text).enumerate() {
            let label = format!("document {}", i + 1);
            match Value::deserialize(doc) {
                Ok(value) => cx.document(&src.name, &label, value),
                Err(e) => {
                    cx.errors.push(Diagnostic {
                        source: src.name.clone(),
                        object: label,
                        path: String::new(),
                        message: format!("not valid YAML: {e}"),
                    });
                    // The YAML stream cannot be resynchronised after a syntax error.
                    break;
                }
            }
        }
    }
    cx.finish()
}

/// Loads objects already parsed as JSON values, e.g. what a controller's watches return. Each
/// entry is `(source, object)`; `source` names where it came from in messages (such as
/// `cluster`). The per-object rules are those of [`load`]; with [`LoadOptions::cluster`] an
/// object that fails validation is skipped with a warning and the result is always `Ok`.
pub fn load_values(docs: Vec<(String, Value)>, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut cx = Loader::new(opts);
    for (i, (source, value)) in docs.into_iter().enumerate() {
        cx.document(&source, &format!("object {}", i + 1), value);
    }
    cx.finish()
}

impl<'a> Loader<'a> {
    fn new(opts: &'a LoadOptions) -> Self {
        Loader {
            opts,
            res: Resources::default(),
            warnings: Vec::new(),
            errors: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    fn finish(self) -> Result<Loaded, LoadError> {
        if self.errors.is_empty() {
            Ok(Loaded { resources: self.res, warnings: self.warnings })
        } else {
            Err(LoadError { errors: self.errors })
        }
    }
}

struct Loader<'a> {
    opts: &'a LoadOptions,
    res: Resources,
    warnings: Vec<String>,
    errors: Vec<Diagnostic>,
    /// (kind, namespace, name) -> where first seen.
    seen: BTreeMap<(String, String, String), String>,
}

/// Where an object sits, for messages.
struct Ctx<'s> {
    source: &'s str,
    object: String,
}

/// Scope of a kind.
#[derive(PartialEq)]
enum Scope {
    Namespaced,
    Cluster,
}

impl Loader<'_> {
    fn error(&mut self, cx: &Ctx<'_>, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            source: cx.source.to_string(),
            object: cx.object.clone(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, cx: &Ctx<'_>, path: &str, message: &str) {
        let d = Diagnostic {
            source: cx.source.to_string(),
            object: cx.object.clone(),
            path: path.to_string(),
            message: message.to_string(),
        };
        self.warnings.push(d.to_string());
    }

    fn findings(&mut self, cx: &Ctx<'_>, f: Findings) {
        for (p, m) in f.warnings {
            self.warn(cx, &p, &m);
        }
        for (p, m) in f.errors {
            self.error(cx, p, m);
        }
    }

    /// One document. In cluster mode, the errors it raised become one warning and the object
    /// is not kept (each push below checks [`Loader::keep`]).
    fn document(&mut self, source: &str, label: &str, value: Value) {
        let before = self.errors.len();
        self.document_inner(source, label, value);
        if self.opts.cluster && self.errors.len() > before {
            let errs: Vec<Diagnostic> = self.errors.drain(before..).collect();
            let object = format!("{}: {}", errs[0].source, errs[0].object);
            let why: Vec<String> = errs
                .iter()
                .map(|e| {
                    if e.path.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.path, e.message)
                    }
                })
                .collect();
            self.warnings.push(format!("{object}: skipped, invalid: {}", why.join("; ")));
        }
    }

    /// Whether to keep the object being read: always in file mode (errors fail the load), and
    /// in cluster mode only when it raised no error since `before`.
    fn keep(&self, before: usize) -> bool {
        !self.opts.cluster || self.errors.len() == before
    }

    fn document_inner(&mut self, source: &str, label: &str, mut value: Value) {
        let start = self.errors.len();
        if value.is_null() {
            return;
        }
        let unnamed = Ctx { source, object: label.to_string() };
        let Some(map) = value.as_object() else {
            self.error(
                &unnamed,
                "",
                "not a Kubernetes object (expected a mapping with apiVersion and kind)",
            );
            return;
        };
        let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
            let missing = if text("apiVersion").is_none() { "apiVersion" } else { "kind" };
            self.error(&unnamed, missing, "is required");
            return;
        };
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };

        if group.is_empty() && version == "v1" && kind == "List" {
            let items = map.get("items").cloned().unwrap_or(Value::Null);
            match items {
                Value::Array(items) => {
                    for (j, item) in items.into_iter().enumerate() {
                        self.document(source, &format!("{label} (List items[{j}])"), item);
                    }
                }
                Value::Null => {}
                _ => self.error(&unnamed, "items", "must be a list"),
            }
            return;
        }

        let scope = match kind.as_str() {
            "GatewayClass" | "Namespace" => Scope::Cluster,
            _ => Scope::Namespaced,
        };
        let known = match (group.as_str(), kind.as_str()) {
            (GATEWAY_GROUP, "GatewayClass" | "Gateway") => {
                matches!(version.as_str(), "v1" | "v1beta1")
            }
            (GATEWAY_GROUP, "TLSRoute") => {
                matches!(version.as_str(), "v1" | "v1alpha3" | "v1alpha2")
            }
            (GATEWAY_GROUP, "ListenerSet") => version == "v1",
            (GATEWAY_GROUP, "ReferenceGrant" | "HTTPRoute") => {
                matches!(version.as_str(), "v1" | "v1beta1")
            }
            ("", "Service" | "Namespace" | "Secret" | "ConfigMap") => version == "v1",
            (MULTICLUSTER_GROUP, "ServiceImport") => version == "v1alpha1",
            ("discovery.k8s.io", "EndpointSlice") => version == "v1",
            (crate::policy::POLICY_GROUP, "ListenerPolicy" | "BackendPolicy") => {
                version == crate::policy::POLICY_VERSION
            }
            _ => false,
        };

        let meta_name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let meta_ns = map
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let namespace = match scope {
            Scope::Cluster => String::new(),
            Scope::Namespaced => {
                meta_ns.clone().unwrap_or_else(|| self.opts.default_namespace.clone())
            }
        };
        let object = match (&meta_name, scope == Scope::Cluster) {
            (Some(n), true) => format!("{kind} {n}"),
            (Some(n), false) => format!("{kind} {namespace}/{n}"),
            (None, _) => format!("{label} ({kind})"),
        };
        let cx = Ctx { source, object };

        if !known {
            let msg = if matches!(
                group.as_str(),
                GATEWAY_GROUP
                    | ""
                    | "discovery.k8s.io"
                    | crate::policy::POLICY_GROUP
                    | MULTICLUSTER_GROUP
            ) && matches!(
                kind.as_str(),
                "GatewayClass"
                    | "Gateway"
                    | "TLSRoute"
                    | "ReferenceGrant"
                    | "HTTPRoute"
                    | "ListenerSet"
                    | "Service"
                    | "Namespace"
                    | "Secret"
                    | "EndpointSlice"
                    | "ListenerPolicy"
                    | "BackendPolicy"
                    | "ServiceImport"
                    | "ConfigMap"
            ) {
                format!("apiVersion {api_version} of {kind} is not read by sniway; object ignored")
            } else {
                format!("kind {kind} ({api_version}) is not read by sniway; object ignored")
            };
            self.warn(&cx, "", &msg);
            return;
        }

        // Name and namespace, as the API server checks them on create.
        let Some(name) = meta_name else {
            self.error(&cx, "metadata.name", "is required");
            return;
        };
        if let Some(problem) = validate::check_object_name(&kind, &name) {
            self.error(&cx, "metadata.name", problem);
        }
        if scope == Scope::Namespaced && !crate::names::is_dns1123_label(&namespace) {
            self.error(
                &cx,
                "metadata.namespace",
                format!("{namespace:?} is not a valid namespace name (RFC 1123 label)"),
            );
        }
        let dup_key = (kind.clone(), namespace.clone(), name.clone());
        let here = format!("{source} {label}");
        if let Some(first) = self.seen.get(&dup_key) {
            let msg = format!("duplicate object: already defined in {first}");
            self.error(&cx, "", msg);
            return;
        }
        self.seen.insert(dup_key, here);

        // The echo kept for status output: namespace filled in, input status dropped.
        if let Some(map) = value.as_object_mut() {
            map.remove("status");
            // Server bookkeeping nobody reads back from the echo.
            if let Some(Value::Object(m)) = map.get_mut("metadata") {
                m.remove("managedFields");
            }
            if scope == Scope::Namespaced
                && let Some(Value::Object(m)) = map.get_mut("metadata")
            {
                m.insert("namespace".into(), Value::String(namespace.clone()));
            }
        }

        let src = source.to_string();
        match kind.as_str() {
            "GatewayClass" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<GatewayClassSpec>>(&cx, value) else {
                    return;
                };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::gateway_class(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.gateway_classes.push(Object { api_version, meta, spec, raw, source: src });
            }
            "Gateway" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<GatewaySpec>>(&cx, value) else { return };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::gateway(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.gateways.push(Object { api_version, meta, spec, raw, source: src });
            }
            "TLSRoute" => {
                let raw = value.clone();
                let version = match version.as_str() {
                    "v1" => RouteVersion::V1,
                    "v1alpha3" => RouteVersion::V1alpha3,
                    _ => RouteVersion::V1alpha2,
                };
                let Some(doc) = self.typed::<Document<TlsRouteSpec>>(&cx, value) else { return };
                let Some(mut spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                // An API server serves every TLSRoute as v1, including those created as v1alpha2
                // (no hostnames, several rules) and only validated as such: read from a cluster,
                // a route is held to the loosest version's limits.
                let limits = if self.opts.cluster { RouteVersion::V1alpha2 } else { version };
                validate::tls_route(&spec, limits, &mut f);
                self.findings(&cx, f);
                if version != RouteVersion::V1alpha2 {
                    for r in &mut spec.rules {
                        r.matches = None;
                    }
                }
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.tls_routes.push(Object {
                    api_version,
                    meta,
                    spec: TlsRoute { version, spec },
                    raw,
                    source: src,
                });
            }
            "ListenerSet" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<ListenerSetSpec>>(&cx, value) else {
                    return;
                };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::listener_set(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.listener_sets.push(Object { api_version, meta, spec, raw, source: src });
            }
            "HTTPRoute" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<HttpRouteSpec>>(&cx, value) else { return };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::http_route(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.http_routes.push(Object { api_version, meta, spec, raw, source: src });
            }
            "ListenerPolicy" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<ListenerPolicySpec>>(&cx, value) else {
                    return;
                };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::listener_policy(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.listener_policies.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw,
                    source: src,
                });
            }
            "BackendPolicy" => {
                let raw = value.clone();
                let Some(doc) = self.typed::<Document<BackendPolicySpec>>(&cx, value) else {
                    return;
                };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::backend_policy(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.backend_policies.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw,
                    source: src,
                });
            }
            "ServiceImport" => {
                let Some(doc) = self.typed::<Document<ServiceImportSpec>>(&cx, value) else {
                    return;
                };
                let spec = doc.spec.unwrap_or_default();
                let mut f = Findings::default();
                validate::service_import(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.service_imports.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw: Value::Null,
                    source: src,
                });
            }
            "ConfigMap" => {
                let Some(doc) = self.typed::<ConfigMapDocument>(&cx, value) else { return };
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.config_maps.push(Object {
                    api_version,
                    meta,
                    spec: doc.data,
                    raw: Value::Null,
                    source: src,
                });
            }
            "ReferenceGrant" => {
                let Some(doc) = self.typed::<Document<ReferenceGrantSpec>>(&cx, value) else {
                    return;
                };
                let Some(spec) = self.required_spec(&cx, doc.spec) else { return };
                let mut f = Findings::default();
                validate::reference_grant(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.reference_grants.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw: Value::Null,
                    source: src,
                });
            }
            "Service" => {
                let Some(doc) = self.typed::<Document<ServiceSpec>>(&cx, value) else { return };
                let spec = doc.spec.unwrap_or_default();
                let mut f = Findings::default();
                validate::service(&spec, &mut f);
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.services.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw: Value::Null,
                    source: src,
                });
            }
            "EndpointSlice" => {
                let Some(doc) = self.typed::<EndpointSliceDocument>(&cx, value) else { return };
                let mut f = Findings::default();
                validate::endpoint_slice(&doc, &mut f);
                if !doc.metadata.labels.contains_key(crate::backend::SERVICE_NAME_LABEL)
                    && !doc.metadata.labels.contains_key(crate::backend::IMPORT_NAME_LABEL)
                {
                    f.warnings.push((
                        "metadata.labels".into(),
                        format!(
                            "no {} (or {}) label: this slice belongs to no Service (or \
                             ServiceImport)",
                            crate::backend::SERVICE_NAME_LABEL,
                            crate::backend::IMPORT_NAME_LABEL
                        ),
                    ));
                }
                self.findings(&cx, f);
                let meta = meta_of(&doc.metadata, name, namespace);
                let spec = EndpointSlice {
                    address_type: doc.address_type,
                    endpoints: doc.endpoints,
                    ports: doc.ports,
                };
                if !self.keep(start) {
                    return;
                }
                self.res.endpoint_slices.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw: Value::Null,
                    source: src,
                });
            }
            "Namespace" => {
                let Some(doc) = self.typed::<Document<Value>>(&cx, value) else { return };
                let meta = meta_of(&doc.metadata, name, namespace);
                if !self.keep(start) {
                    return;
                }
                self.res.namespaces.push(Object {
                    api_version,
                    meta,
                    spec: (),
                    raw: Value::Null,
                    source: src,
                });
            }
            "Secret" => {
                let Some(doc) = self.typed::<SecretDocument>(&cx, value) else { return };
                let mut data = BTreeMap::new();
                for (k, v) in &doc.data {
                    match base64::engine::general_purpose::STANDARD.decode(v.trim()) {
                        Ok(bytes) => {
                            data.insert(k.clone(), bytes);
                        }
                        // Never echo the value itself.
                        Err(_) => self.error(&cx, format!("data.{k}"), "is not valid base64"),
                    }
                }
                for (k, v) in &doc.string_data {
                    data.insert(k.clone(), v.clone().into_bytes());
                }
                // core/v1 `ValidateSecret`: a `kubernetes.io/tls` Secret must hold both keys
                // (values may be empty).
                if doc.type_.as_deref() == Some(crate::TLS_SECRET_TYPE) {
                    for k in [crate::TLS_CERT_KEY, crate::TLS_PRIVATE_KEY_KEY] {
                        if !data.contains_key(k) {
                            self.error(
                                &cx,
                                format!("data[{k}]"),
                                format!("is required for type {}", crate::TLS_SECRET_TYPE),
                            );
                        }
                    }
                }
                let meta = meta_of(&doc.metadata, name, namespace);
                let spec = Secret { type_: doc.type_, data };
                if !self.keep(start) {
                    return;
                }
                self.res.secrets.push(Object {
                    api_version,
                    meta,
                    spec,
                    raw: Value::Null,
                    source: src,
                });
            }
            _ => {}
        }
    }

    fn required_spec<S>(&mut self, cx: &Ctx<'_>, spec: Option<S>) -> Option<S> {
        if spec.is_none() {
            self.error(cx, "spec", "is required");
        }
        spec
    }

    /// Deserializes `value` into `T`, warning about unknown fields and erroring with a path.
    fn typed<T: DeserializeOwned>(&mut self, cx: &Ctx<'_>, value: Value) -> Option<T> {
        let mut unknown = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(value, &mut note);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        match result {
            Ok(t) => {
                // Cluster mode: the API server validated the object against its own (possibly
                // newer) schema; fields sniway does not read are not worth a warning.
                if self.opts.cluster {
                    unknown.clear();
                }
                for path in unknown {
                    self.warnings
                        .push(format!("{}: {}: unknown field {path}", cx.source, cx.object));
                }
                Some(t)
            }
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                self.error(cx, path, e.into_inner().to_string());
                None
            }
        }
    }
}

fn meta_of(m: &ObjectMeta, name: String, namespace: String) -> Meta {
    Meta {
        name,
        namespace,
        labels: m.labels.clone(),
        generation: m.generation.unwrap_or(1),
        creation_timestamp: m.creation_timestamp.clone(),
    }
}

/// `spec.listeners[0].foo` from a `serde_ignored` path (its own Display prints `listeners.0`).
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() { key.clone() } else { format!("{p}.{key}") }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}
