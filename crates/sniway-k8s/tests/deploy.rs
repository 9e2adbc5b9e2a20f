//! `deploy/` and the Dockerfile, checked for what a real API server (and `kubectl apply -k`)
//! would require of them, and the RBAC checked against the controller's table of kinds.

use sniway_compile::names::is_dns1123_subdomain;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sniway_k8s::kinds;
use sniway_k8s::provision::{self, ProvisionOptions};

const NAMESPACE: &str = "sniway-system";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

/// Every file under `dir`, relative to it, with `/` separators.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("under the base");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn is_yaml(f: &str) -> bool {
    f.ends_with(".yaml") || f.ends_with(".yml")
}

fn parse_docs(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{origin}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// (file, object) for every object of every manifest in deploy/ but the kustomize files.
fn objects() -> Vec<(String, Value)> {
    let dir = deploy_dir();
    let mut out = Vec::new();
    for f in files(&dir).into_iter().filter(|f| is_yaml(f)) {
        if f == "kustomization.yaml" || f == "kustomizeconfig.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&f)).expect("readable");
        for doc in parse_docs(&text, &f) {
            out.push((f.clone(), doc));
        }
    }
    assert!(out.len() >= 8, "deploy/ holds too few objects: {}", out.len());
    out
}

fn kustomization() -> Value {
    let text =
        std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).expect("kustomization");
    let mut docs = parse_docs(&text, "kustomization.yaml");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| kind_of(o) == kind && name_of(o) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Kinds that are cluster-scoped (everything else in deploy/ is namespaced).
const CLUSTER_SCOPED: &[&str] =
    &["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "GatewayClass"];

#[test]
fn every_object_in_deploy_has_an_api_version_a_kind_and_a_valid_name() {
    for (file, o) in objects() {
        let api_version = o["apiVersion"].as_str().unwrap_or_default();
        assert!(!api_version.is_empty(), "{file}: no apiVersion");
        assert!(!kind_of(&o).is_empty(), "{file}: no kind");
        let name = name_of(&o);
        assert!(is_dns1123_subdomain(name), "{file}: {} name {name:?}", kind_of(&o));
    }
}

#[test]
fn namespaced_objects_name_the_sniway_namespace_and_cluster_scoped_ones_none() {
    let objects = objects();
    find(&objects, "Namespace", NAMESPACE);
    for (file, o) in &objects {
        let ns = o["metadata"].get("namespace");
        if CLUSTER_SCOPED.contains(&kind_of(o)) {
            assert!(ns.is_none(), "{file}: cluster-scoped {} has a namespace", kind_of(o));
        } else {
            assert_eq!(ns.and_then(Value::as_str), Some(NAMESPACE), "{file}: {}", kind_of(o));
        }
    }
}

/// What the API server checks of a Deployment's pod template, plus the security sniway
/// promises: selector matching the template, named containers with images, probes on a
/// declared port, non-root with a read-only root filesystem.
fn check_deployment(origin: &str, d: &Value) {
    let spec = &d["spec"];
    let selector = spec["selector"]["matchLabels"].as_object().expect("matchLabels");
    assert!(!selector.is_empty(), "{origin}: empty selector");
    let labels = spec["template"]["metadata"]["labels"].as_object().expect("template labels");
    for (k, v) in selector {
        assert_eq!(labels.get(k), Some(v), "{origin}: selector {k}={v} not on the template");
    }
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert!(!containers.is_empty(), "{origin}: no container");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{origin}");
    for c in containers {
        let name = c["name"].as_str().unwrap_or_default();
        assert!(!name.is_empty(), "{origin}: a container without a name");
        assert!(c["image"].as_str().is_some_and(|i| !i.is_empty()), "{origin}: {name}: no image");
        let ports: Vec<&Value> = c["ports"].as_array().into_iter().flatten().collect();
        let declared = |p: &Value| {
            ports.iter().any(|q| match p {
                Value::String(s) => q["name"].as_str() == Some(s),
                Value::Number(n) => q["containerPort"].as_u64() == n.as_u64(),
                _ => false,
            })
        };
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = &c[probe]["httpGet"]["port"];
            assert!(!port.is_null(), "{origin}: {name}: no {probe}");
            assert!(declared(port), "{origin}: {name}: {probe} on undeclared port {port}");
        }
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{origin}: {name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{origin}: {name}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{origin}: {name}");
        let added = strings(&sc["capabilities"]["add"]);
        assert!(added.iter().all(|c| *c == "NET_BIND_SERVICE"), "{origin}: {name}: {added:?}");
    }
    if let Some(sa) = pod["serviceAccountName"].as_str() {
        assert!(is_dns1123_subdomain(sa), "{origin}: serviceAccountName {sa:?}");
    }
}

#[test]
fn the_controller_deployment_is_one_the_api_server_accepts_and_runs_unprivileged() {
    let objects = objects();
    let d = find(&objects, "Deployment", "sniway-controller");
    check_deployment("deploy/deployment.yaml", d);
    let pod = &d["spec"]["template"]["spec"];
    let sa = pod["serviceAccountName"].as_str().expect("serviceAccountName");
    find(&objects, "ServiceAccount", sa);
    let c = &pod["containers"][0];
    assert_eq!(strings(&c["args"]).first(), Some(&"controller"));
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?, e)))
        .collect();
    assert_eq!(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    // The data planes run the controller's image, which is also the provisioning default.
    assert_eq!(env["SNIWAY_DATAPLANE_IMAGE"]["value"], c["image"]);
    assert_eq!(c["image"], ProvisionOptions::default().image.as_str());
}

#[test]
fn a_provisioned_data_plane_passes_the_same_checks_as_the_controller() {
    let gateway = serde_json::json!({
        "metadata": {"name": "edge", "namespace": "apps", "uid": "u1"},
        "spec": {"gatewayClassName": "sniway", "listeners": [{"name": "tls", "port": 443}]},
    });
    let p = provision::desired(&gateway, &ProvisionOptions::default()).expect("provisionable");
    let d = serde_json::to_value(&p.deployment).expect("serialises");
    check_deployment("provisioned Deployment", &d);
    let sa = d["spec"]["template"]["spec"]["serviceAccountName"].clone();
    assert_eq!(
        sa,
        serde_json::to_value(&p.service_account).expect("serialises")["metadata"]["name"]
    );
}

#[test]
fn the_gateway_class_names_sniways_controller() {
    let objects = objects();
    let class = find(&objects, "GatewayClass", "sniway");
    assert_eq!(class["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(
        class["spec"]["controllerName"],
        sniway_compile::status::conditions::CONTROLLER_NAME
    );
    assert_eq!(provision::FIELD_MANAGER, sniway_compile::status::conditions::CONTROLLER_NAME);
}

/// One permission: (apiGroup, resource, verb, resource name), the name empty for any.
type Grant = (String, String, String, String);

/// The permissions a role's rules grant.
fn grants(origin: &str, role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let rules = role["rules"].as_array().expect("rules");
    for rule in rules {
        let obj = rule.as_object().expect("a rule is a map");
        for key in obj.keys() {
            assert!(
                ["apiGroups", "resources", "verbs", "resourceNames"].contains(&key.as_str()),
                "{origin}: rule field {key} (nonResourceURLs) is not expected"
            );
        }
        let (groups, resources, verbs) =
            (strings(&rule["apiGroups"]), strings(&rule["resources"]), strings(&rule["verbs"]));
        assert!(!groups.is_empty() && !resources.is_empty() && !verbs.is_empty(), "{origin}");
        let names = match rule.get("resourceNames") {
            // An empty list would grant every name: spelt out, it is a mistake.
            Some(n) => {
                let names = strings(n);
                assert!(!names.is_empty(), "{origin}: empty resourceNames in {rule}");
                names
            }
            None => vec![""],
        };
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    assert!(![g, r, v].contains(&&"*"), "{origin}: a wildcard in {rule}");
                    for n in &names {
                        out.insert((g.to_string(), r.to_string(), v.to_string(), n.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Kinds the controller writes only under one name, and that name.
const NAMED: &[(kinds::Kind, &str)] =
    &[(kinds::CLUSTER_ROLE_BINDING, provision::DATAPLANE_BINDING)];

fn needed(kinds: &[kinds::Kind]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for k in kinds {
        let name = NAMED.iter().find(|(n, _)| n == k).map_or("", |(_, name)| name);
        for v in k.verbs {
            out.insert((k.group.to_string(), k.plural.to_string(), v.to_string(), name.into()));
        }
        for v in k.status_verbs {
            let status = format!("{}/status", k.plural);
            out.insert((k.group.to_string(), status, v.to_string(), name.into()));
        }
    }
    out
}

/// Whether `holder` holds `g`: a grant of the same verb on the same resource, for any name or
/// for that name (RBAC's `Covers`, without wildcards, which deploy/ has none of).
fn holds(holder: &BTreeSet<Grant>, g: &Grant) -> bool {
    let (group, resource, verb, _) = g;
    holder.contains(g)
        || holder.contains(&(group.clone(), resource.clone(), verb.clone(), String::new()))
}

#[test]
fn the_rbac_grants_exactly_what_the_table_of_kinds_needs() {
    let objects = objects();
    let cluster = grants("ClusterRole", find(&objects, "ClusterRole", "sniway-controller"));
    let role = find(&objects, "Role", "sniway-leader-election");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    let local = grants("Role", role);

    // The Role holds the Lease, in the controller's namespace only.
    assert_eq!(local, needed(&[kinds::LEASE]));
    let rest: Vec<kinds::Kind> =
        kinds::ALL.iter().copied().filter(|k| *k != kinds::LEASE).collect();
    assert_eq!(rest.len() + 1, kinds::ALL.len());
    let want = needed(&rest);
    let missing: Vec<_> = want.difference(&cluster).collect();
    let extra: Vec<_> = cluster.difference(&want).collect();
    assert!(missing.is_empty(), "the ClusterRole lacks {missing:?}");
    assert!(extra.is_empty(), "the ClusterRole grants more than kinds::ALL needs: {extra:?}");
}

#[test]
fn the_controller_writes_only_the_dataplane_binding_among_cluster_role_bindings() {
    let objects = objects();
    let cluster = grants("ClusterRole", find(&objects, "ClusterRole", "sniway-controller"));
    let k = kinds::CLUSTER_ROLE_BINDING;
    assert!(kinds::ALL.contains(&k));
    let on_bindings: BTreeSet<(&str, &str)> = cluster
        .iter()
        .filter(|(g, r, _, _)| *g == k.group && r.starts_with(k.plural))
        .map(|(_, _, v, n)| (v.as_str(), n.as_str()))
        .collect();
    let want: BTreeSet<(&str, &str)> =
        k.verbs.iter().map(|v| (*v, provision::DATAPLANE_BINDING)).collect();
    assert_eq!(on_bindings, want);
    // Server-side apply, which the API server authorizes by the binding's name (create
    // included), is all the controller needs: no list, watch or delete.
    for v in ["list", "watch", "delete", "deletecollection"] {
        assert!(!k.verbs.contains(&v), "{v}");
    }
    // The binding is the controller's: shipping it too would make `kubectl apply -k` and the
    // controller fight over its subjects.
    assert!(
        !objects.iter().any(|(_, o)| kind_of(o) == "ClusterRoleBinding"
            && name_of(o) == provision::DATAPLANE_BINDING),
        "deploy/ ships the ClusterRoleBinding the controller keeps"
    );
}

#[test]
fn the_dataplane_role_grants_exactly_the_reads_of_the_data_plane() {
    let objects = objects();
    let role = find(&objects, "ClusterRole", provision::DATAPLANE_ROLE);
    let granted = grants("ClusterRole sniway-dataplane", role);
    let mut want = BTreeSet::new();
    for k in kinds::WATCHED.iter().chain([&kinds::SECRET, &kinds::CONFIG_MAP]) {
        for v in ["get", "list", "watch"] {
            want.insert((k.group.to_string(), k.plural.to_string(), v.to_string(), String::new()));
        }
    }
    let missing: Vec<_> = want.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&want).collect();
    assert!(missing.is_empty(), "the data plane's ClusterRole lacks {missing:?}");
    assert!(extra.is_empty(), "the data plane's ClusterRole grants more than it reads: {extra:?}");
}

#[test]
fn the_controller_may_bind_the_dataplane_role_without_the_bind_verb() {
    // RBAC's privilege-escalation prevention: a subject may create or update a binding to a
    // role whose every permission it holds at the binding's scope (here the cluster), else
    // only with `bind` on that role. The controller's ClusterRole holds them all, cluster-wide.
    let objects = objects();
    let controller = grants("ClusterRole", find(&objects, "ClusterRole", "sniway-controller"));
    let binding = find(&objects, "ClusterRoleBinding", "sniway-controller");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole", "held cluster-wide");
    let dataplane = grants("ClusterRole", find(&objects, "ClusterRole", provision::DATAPLANE_ROLE));
    let not_held: Vec<&Grant> = dataplane.iter().filter(|g| !holds(&controller, g)).collect();
    assert!(not_held.is_empty(), "binding sniway-dataplane would need `bind`: {not_held:?}");
    for (_, resource, verb, _) in &controller {
        assert!(
            !["bind", "escalate", "impersonate"].contains(&verb.as_str()),
            "the controller may {verb} {resource}"
        );
    }
    // What the controller applies refers to that role.
    let b = serde_json::to_value(provision::dataplane_binding(&[])).expect("serialises");
    assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(b["roleRef"]["kind"], "ClusterRole");
    assert_eq!(b["roleRef"]["name"], provision::DATAPLANE_ROLE);
    assert_eq!(b["metadata"]["name"], provision::DATAPLANE_BINDING);
}

#[test]
fn the_role_bindings_give_the_controllers_service_account_its_roles() {
    let objects = objects();
    for (binding, role_kind, role_name) in [
        ("ClusterRoleBinding", "ClusterRole", "sniway-controller"),
        ("RoleBinding", "Role", "sniway-leader-election"),
    ] {
        let b = find(&objects, binding, role_name);
        assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], role_name);
        find(&objects, role_kind, role_name);
        let subjects = b["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{binding}");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], "sniway-controller");
        assert_eq!(subjects[0]["namespace"], NAMESPACE);
    }
}

#[test]
fn the_crds_in_deploy_define_the_kinds_the_controller_reads() {
    let objects = objects();
    let crds: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| kind_of(o) == "CustomResourceDefinition")
        .collect();
    assert!(!crds.is_empty());
    for crd in crds {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        assert_eq!(name_of(crd), format!("{plural}.{group}"), "a CRD's name is plural.group");
        let k = kinds::ALL.iter().find(|k| k.group == group && k.plural == plural);
        let k = k.unwrap_or_else(|| panic!("CRD {plural}.{group} is no kind of kinds::ALL"));
        let versions: Vec<&str> = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(versions.contains(&k.version), "{plural}.{group} serves {versions:?}");
    }
}

#[test]
fn the_kustomization_lists_every_file_of_deploy_and_nothing_missing() {
    let k = kustomization();
    assert_eq!(k["kind"], "Kustomization");
    // A kustomize `namespace:` would also be set on GatewayClass, a kind kustomize does not know
    // as cluster-scoped.
    assert!(k.get("namespace").is_none(), "no kustomize namespace override");
    let resources = strings(&k["resources"]);
    let configurations = strings(&k["configurations"]);
    let listed: BTreeSet<&str> = resources.iter().chain(&configurations).copied().collect();
    assert_eq!(listed.len(), resources.len() + configurations.len(), "a file listed twice");
    for f in &listed {
        assert!(deploy_dir().join(f).is_file(), "kustomization.yaml lists {f}, which is absent");
    }
    for f in files(&deploy_dir()).into_iter().filter(|f| is_yaml(f)) {
        if f != "kustomization.yaml" {
            assert!(listed.contains(f.as_str()), "kustomization.yaml does not list {f}");
        }
    }
    // The Namespace comes first, the GatewayClass (needing the Gateway API CRDs) last.
    assert_eq!(resources.first(), Some(&"namespace.yaml"));
    assert_eq!(resources.last(), Some(&"gatewayclass.yaml"));
}

#[test]
fn the_image_override_reaches_the_data_plane_image_variable() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomizeconfig.yaml")).expect("read");
    let config = parse_docs(&text, "kustomizeconfig.yaml").remove(0);
    let paths: Vec<&str> = config["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "Deployment")
        .filter_map(|i| i["path"].as_str())
        .collect();
    assert_eq!(paths, ["spec/template/spec/containers[]/env[]/value"]);
}

/// The stages of a Dockerfile: (FROM line, instructions after it).
fn stages(text: &str) -> Vec<(String, Vec<String>)> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            joined.push(std::mem::take(&mut cur));
        }
    }
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for ins in joined {
        if ins.starts_with("FROM ") {
            out.push((ins, Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(ins);
        }
    }
    out
}

/// The binary `cargo build --release -p sniway` writes, from crates/sniway/Cargo.toml.
fn binary_path() -> String {
    let manifest =
        std::fs::read_to_string(root().join("crates/sniway/Cargo.toml")).expect("manifest");
    let bin = manifest
        .split("[[bin]]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("name = ")))
        .map(|n| n.trim_matches('"').to_string())
        .expect("a [[bin]] name in crates/sniway/Cargo.toml");
    format!("target/release/{bin}")
}

#[test]
fn the_dockerfile_builds_the_locked_binary_and_ships_it_alone_as_a_non_root_user() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let stages = stages(&text);
    assert_eq!(stages.len(), 2, "a builder and a runtime stage");
    let (from_build, build) = &stages[0];
    assert!(from_build.starts_with("FROM rust:1-slim-bookworm AS "), "{from_build}");
    let alias = from_build.rsplit(' ').next().expect("alias");
    let run = build.iter().find(|i| i.contains("cargo build")).expect("a cargo build");
    for flag in ["--release", "--locked", "-p sniway"] {
        assert!(run.contains(flag), "{run} lacks {flag}");
    }
    assert!(run.contains(&binary_path()), "{run} does not take {}", binary_path());

    let (from_run, runtime) = &stages[1];
    assert!(from_run.starts_with("FROM gcr.io/distroless/cc-debian12:nonroot"), "{from_run}");
    let copies: Vec<&String> = runtime.iter().filter(|i| i.starts_with("COPY")).collect();
    assert_eq!(copies.len(), 1, "the binary only: {copies:?}");
    assert!(copies[0].starts_with(&format!("COPY --from={alias} ")), "{}", copies[0]);
    assert!(runtime.contains(&"USER 65532:65532".to_string()), "{runtime:?}");
    let entry = runtime.iter().find(|i| i.starts_with("ENTRYPOINT")).expect("ENTRYPOINT");
    let dest = copies[0].rsplit(' ').next().expect("destination");
    assert!(entry.contains(dest), "{entry} does not run {dest}");
}

#[test]
fn the_docker_context_leaves_out_target_but_keeps_what_the_build_embeds() {
    let text = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    assert!(ignored.contains(&"target"), "{ignored:?}");
    // Files the crates embed at build time (include_str!/include_bytes! outside tests and
    // benches) must stay in the context.
    let crates = root().join("crates");
    for f in files(&crates).into_iter().filter(|f| f.ends_with(".rs") && f.contains("/src/")) {
        let src = std::fs::read_to_string(crates.join(&f)).expect("source");
        for part in src.split("include_").skip(1) {
            let Some(path) = part.split('"').nth(1) else { continue };
            let from_crate_dir = Path::new("crates").join(&f);
            let resolved = normalise(&from_crate_dir.parent().expect("parent").join(path));
            let top = resolved.split('/').next().unwrap_or_default().to_string();
            assert!(!ignored.contains(&top.as_str()), "{f} embeds {resolved}, ignored by docker");
        }
    }
}

/// `a/b/../c` as `a/c`.
fn normalise(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// `v` read as the typed object `K` and written back: a field the API does not know, or a value
/// of the wrong type, does not survive (what `kubectl apply --validate=strict` refuses).
fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
    let typed: K = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", kind_of(v), name_of(v)));
    serde_json::to_value(typed).expect("serialises")
}

#[test]
fn every_core_object_in_deploy_has_only_fields_its_api_defines() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let mut checked = BTreeSet::new();
    for (file, o) in objects() {
        let back = match kind_of(&o) {
            "Namespace" => round_trip::<Namespace>(&o),
            "ServiceAccount" => round_trip::<ServiceAccount>(&o),
            "ClusterRole" => round_trip::<ClusterRole>(&o),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&o),
            "Role" => round_trip::<Role>(&o),
            "RoleBinding" => round_trip::<RoleBinding>(&o),
            "Deployment" => round_trip::<Deployment>(&o),
            "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(&o),
            // Not a core kind: its schema is the Gateway API's CRD.
            "GatewayClass" => continue,
            other => panic!("{file}: unexpected kind {other}"),
        };
        assert_eq!(
            back,
            o,
            "{file}: {} {} changes when read as its type",
            kind_of(&o),
            name_of(&o)
        );
        checked.insert(kind_of(&o).to_string());
    }
    assert_eq!(checked.len(), 8, "{checked:?}");
}
