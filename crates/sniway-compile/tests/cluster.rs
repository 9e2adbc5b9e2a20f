//! Cluster mode: objects as a controller's watches return them (JSON values the API server
//! already validated) load with `load_values`; one bad object never fails the snapshot.

use serde_json::{Value, json};
use sniway_compile::{LoadOptions, load_values};

fn cluster() -> LoadOptions {
    LoadOptions { cluster: true, ..LoadOptions::default() }
}

fn gateway(name: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": "infra",
            "generation": 3,
            "uid": "0b6f1c4e-1111-2222-3333-444455556666",
            "resourceVersion": "12345",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
        },
        "spec": {
            "gatewayClassName": "sniway",
            "listeners": [{"name": "tls", "protocol": "TLS", "port": 443, "tls": {"mode": "Passthrough"}}],
            "someFutureField": {"x": 1}
        },
        "status": {"conditions": [{"type": "Accepted", "status": "Unknown", "reason": "Pending"}]}
    })
}

#[test]
fn a_cluster_object_with_server_metadata_status_and_unknown_fields_loads_without_warnings() {
    let loaded = load_values(vec![("cluster".into(), gateway("gw"))], &cluster()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let gw = &loaded.resources.gateways[0];
    assert_eq!(gw.meta.generation, 3);
    assert_eq!(gw.meta.key(), "infra/gw");
    assert!(gw.raw.get("status").is_none(), "input status must not be echoed");
    assert!(gw.raw["metadata"].get("managedFields").is_none());
}

#[test]
fn the_same_object_in_file_mode_warns_about_the_unknown_field() {
    let loaded =
        load_values(vec![("f.json".into(), gateway("gw"))], &LoadOptions::default()).unwrap();
    assert!(
        loaded.warnings.iter().any(|w| w.contains("unknown field spec.someFutureField")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn an_invalid_cluster_object_is_skipped_with_a_warning_naming_it_and_the_reason() {
    let mut bad = gateway("bad");
    bad["spec"]["listeners"][0]["port"] = json!(0);
    let loaded =
        load_values(vec![("cluster".into(), bad), ("cluster".into(), gateway("good"))], &cluster())
            .unwrap();
    let names: Vec<String> = loaded.resources.gateways.iter().map(|g| g.meta.key()).collect();
    assert_eq!(names, ["infra/good"]);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert!(w.contains("Gateway infra/bad") && w.contains("skipped"), "{w}");
    assert!(w.contains("spec.listeners[0].port"), "{w}");
}

#[test]
fn an_object_of_the_wrong_shape_is_skipped_in_cluster_mode_and_fails_in_file_mode() {
    let mut bad = gateway("bad");
    bad["spec"]["listeners"] = json!("not a list");
    let docs = vec![("cluster".into(), bad)];
    let loaded = load_values(docs.clone(), &cluster()).unwrap();
    assert!(loaded.resources.gateways.is_empty());
    assert_eq!(loaded.warnings.len(), 1);
    assert!(load_values(docs, &LoadOptions::default()).is_err());
}

#[test]
fn a_cluster_secret_with_base64_data_loads_its_decoded_bytes() {
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "infra", "resourceVersion": "1"},
        "type": "Opaque",
        "data": {"k": "aGVsbG8="}
    });
    let loaded = load_values(vec![("cluster".into(), secret)], &cluster()).unwrap();
    assert_eq!(loaded.resources.secrets[0].spec.data["k"], b"hello");
}

// === Selection by controller name, class status, addresses ===

use sniway_compile::{
    CONTROLLER_NAME, CompileOptions, Compiled, Mode, SUPPORTED_FEATURES, Source, compile, load,
};

fn class(name: &str, controller: &str, generation: i64) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {name}, \
         generation: {generation}}}\nspec: {{controllerName: {controller}}}\n---\n"
    )
}

fn gw(name: &str, class: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, \
         namespace: infra}}\nspec:\n  gatewayClassName: {class}\n{extra}  listeners:\n  - {{name: \
         http, protocol: HTTP, port: 8080}}\n---\n"
    )
}

fn build(text: &str, opts: CompileOptions) -> Compiled {
    let loaded =
        load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
    compile(&loaded.resources, &opts)
}

fn file() -> CompileOptions {
    CompileOptions::default()
}

fn cluster_opts(gateway: Option<(&str, &str)>) -> CompileOptions {
    CompileOptions {
        mode: Mode::Cluster { gateway: gateway.map(|(n, g)| (n.into(), g.into())) },
        ..CompileOptions::default()
    }
}

fn served(c: &Compiled) -> Vec<&str> {
    c.gateways.iter().filter(|g| g.status.is_some()).map(|g| g.key.as_str()).collect()
}

fn cond<'a>(conditions: &'a serde_json::Value, t: &str) -> (&'a str, &'a str) {
    let c = conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .unwrap_or_else(|| panic!("no {t} in {conditions}"));
    (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
}

fn gateway_status(c: &Compiled, key: &str) -> serde_json::Value {
    let g = c.gateways.iter().find(|g| g.key == key).unwrap();
    serde_json::to_value(g.status.as_ref().unwrap()).unwrap()
}

#[test]
fn in_file_mode_a_gateway_of_another_controllers_class_is_not_served() {
    let text = format!(
        "{}{}{}{}",
        class("mine", CONTROLLER_NAME, 1),
        class("theirs", "example.com/other", 1),
        gw("a", "mine", ""),
        gw("b", "theirs", "")
    ) + &gw("c", "undeclared", "");
    let c = build(&text, file());
    assert_eq!(served(&c), ["infra/a", "infra/c"]);
    assert!(
        c.warnings.iter().any(|w| w.contains("infra/b") && w.contains("example.com/other")),
        "{:?}",
        c.warnings
    );
    let missing: Vec<&String> =
        c.warnings.iter().filter(|w| w.contains("GatewayClass undeclared is not in")).collect();
    assert_eq!(missing.len(), 1, "{:?}", c.warnings);
}

#[test]
fn a_class_missing_from_the_input_is_warned_about_once_however_many_gateways_use_it() {
    let text = gw("a", "seed", "") + &gw("b", "seed", "");
    let c = build(&text, file());
    assert_eq!(served(&c), ["infra/a", "infra/b"]);
    let n = c.warnings.iter().filter(|w| w.contains("GatewayClass seed is not in")).count();
    assert_eq!(n, 1, "{:?}", c.warnings);
}

#[test]
fn in_cluster_mode_only_gateways_of_an_existing_class_of_ours_are_served() {
    let text = format!(
        "{}{}{}{}",
        class("mine", CONTROLLER_NAME, 1),
        class("theirs", "example.com/other", 1),
        gw("a", "mine", ""),
        gw("b", "theirs", "")
    ) + &gw("c", "undeclared", "");
    let c = build(&text, cluster_opts(None));
    assert_eq!(served(&c), ["infra/a"]);
}

#[test]
fn in_cluster_mode_a_single_gateway_data_plane_serves_only_that_gateway() {
    let text = format!(
        "{}{}{}",
        class("mine", CONTROLLER_NAME, 1),
        gw("a", "mine", ""),
        gw("b", "mine", "")
    );
    let c = build(&text, cluster_opts(Some(("infra", "b"))));
    assert_eq!(served(&c), ["infra/b"]);
}

#[test]
fn our_class_is_accepted_at_its_generation_with_the_sorted_feature_list() {
    let text =
        format!("{}{}", class("mine", CONTROLLER_NAME, 4), class("theirs", "example.com/other", 1));
    let c = build(&text, file());
    let keys: Vec<&str> = c.gateway_classes.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["mine", "theirs"]);
    assert!(c.gateway_classes[1].status.is_none());
    let st = serde_json::to_value(c.gateway_classes[0].status.as_ref().unwrap()).unwrap();
    assert_eq!(cond(&st["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(st["conditions"][0]["observedGeneration"], 4);
    let names: Vec<&str> = st["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert_eq!(names, SUPPORTED_FEATURES);
    for f in ["Gateway", "TLSRoute", "TLSRouteModeTerminate", "TLSRouteModeMixed", "ReferenceGrant"]
    {
        assert!(names.contains(&f), "{f} missing from {names:?}");
    }
    // Classes come first in the status list.
    assert_eq!(c.status_list()["items"][0]["kind"], "GatewayClass");
}

#[test]
fn an_unsupported_address_type_is_not_accepted() {
    let extra =
        "  addresses:\n  - {type: test/fake-invalid-type, value: fake}\n  - {value: 10.0.0.1}\n";
    let c = build(&gw("a", "x", extra), file());
    let st = gateway_status(&c, "infra/a");
    assert_eq!(cond(&st["conditions"], "Accepted"), ("False", "UnsupportedAddress"));
}

#[test]
fn an_address_outside_the_usable_set_is_accepted_but_not_programmed() {
    let extra = "  addresses:\n  - {value: 10.0.0.9}\n  - {value: 10.0.0.1}\n";
    let opts = CompileOptions {
        usable_addresses: Some(["10.0.0.1".parse().unwrap()].into_iter().collect()),
        ..CompileOptions::default()
    };
    let c = build(&gw("a", "x", extra), opts.clone());
    let st = gateway_status(&c, "infra/a");
    assert_eq!(cond(&st["conditions"], "Accepted"), ("True", "Accepted"));
    assert_eq!(cond(&st["conditions"], "Programmed"), ("False", "AddressNotUsable"));
    assert_eq!(st["addresses"], json!([]));

    // The test then removes the unusable address.
    let c = build(&gw("a", "x", "  addresses:\n  - {value: 10.0.0.1}\n"), opts);
    let st = gateway_status(&c, "infra/a");
    assert_eq!(cond(&st["conditions"], "Programmed"), ("True", "Programmed"));
    assert_eq!(st["addresses"], json!([{"type": "IPAddress", "value": "10.0.0.1"}]));
    let l = &st["listeners"][0];
    assert_eq!(cond(&l["conditions"], "Accepted").0, "True");
    assert_eq!(cond(&l["conditions"], "ResolvedRefs").0, "True");
}

#[test]
fn an_ip_address_without_a_value_is_assigned_and_a_controller_can_replace_it() {
    let mut c = build(&gw("a", "x", "  addresses:\n  - {type: IPAddress}\n"), file());
    let st = gateway_status(&c, "infra/a");
    assert_eq!(cond(&st["conditions"], "Programmed"), ("True", "Programmed"));
    assert_eq!(st["addresses"], json!([{"type": "IPAddress", "value": "0.0.0.0"}]));
    let lb = sniway_compile::status::GatewayStatusAddress {
        type_: "IPAddress".into(),
        value: "203.0.113.7".into(),
    };
    assert!(c.set_gateway_addresses("infra", "a", vec![lb.clone()]));
    assert!(!c.set_gateway_addresses("infra", "nope", vec![lb]));
    let st = gateway_status(&c, "infra/a");
    assert_eq!(st["addresses"], json!([{"type": "IPAddress", "value": "203.0.113.7"}]));
}

#[test]
fn an_infrastructure_parameters_ref_is_invalid_parameters() {
    let extra = "  infrastructure:\n    labels: {key2: value2}\n    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}\n";
    let c = build(&gw("a", "x", extra), file());
    let st = gateway_status(&c, "infra/a");
    assert_eq!(cond(&st["conditions"], "Accepted"), ("False", "InvalidParameters"));
    assert!(c.table.sockets.is_empty());
}

#[test]
fn an_infrastructure_label_key_the_api_server_rejects_is_a_load_error() {
    let extra = "  infrastructure:\n    labels: {\"bad key\": v}\n";
    let e = load(
        &[Source { name: "t.yaml".into(), text: gw("a", "x", extra) }],
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("spec.infrastructure.labels[bad key]"), "{e}");
}

#[test]
fn http_and_tls_listeners_on_one_port_are_a_protocol_conflict() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a, namespace: infra}\nspec:\n  gatewayClassName: x\n  listeners:\n  - {name: http, protocol: HTTP, port: 443}\n  - {name: tls, protocol: TLS, port: 443, tls: {mode: Passthrough}}\n";
    let c = build(text, file());
    let st = gateway_status(&c, "infra/a");
    for l in st["listeners"].as_array().unwrap() {
        assert_eq!(cond(&l["conditions"], "Accepted"), ("False", "ProtocolConflict"), "{l}");
        assert_eq!(l["supportedKinds"], json!([]));
    }
    assert!(c.table.sockets.is_empty());
}

#[test]
fn an_http_listener_binds_no_socket_and_a_tls_listener_of_another_gateway_keeps_the_port() {
    let tls = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: t, namespace: infra}\nspec:\n  gatewayClassName: x\n  listeners:\n  - {name: tls, protocol: TLS, port: 8080, tls: {mode: Passthrough}}\n";
    let c = build(&(gw("a", "x", "") + tls), file());
    assert_eq!(c.table.sockets.len(), 1);
    let st = gateway_status(&c, "infra/t");
    assert_eq!(cond(&st["listeners"][0]["conditions"], "Accepted"), ("True", "Accepted"));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("listener http is HTTP: accepted for status, not served"))
    );
}

#[test]
fn every_condition_carries_its_own_objects_generation() {
    let text = format!(
        "{}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g, namespace: infra, generation: 3}}\nspec:\n  gatewayClassName: mine\n  listeners:\n  - {{name: tls, protocol: TLS, port: 443, tls: {{mode: Passthrough}}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: r, namespace: infra, generation: 5}}\nspec:\n  parentRefs: [{{name: g}}]\n  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{{name: svc, port: 443}}]\n---\napiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: p, namespace: infra, generation: 7}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: g}}]\n",
        class("mine", CONTROLLER_NAME, 2)
    );
    let c = build(&text, cluster_opts(None));
    let list = c.status_list();
    let mut seen = 0;
    for item in list["items"].as_array().unwrap() {
        let want = item["metadata"]["generation"].as_i64().unwrap();
        let mut conds = Vec::new();
        let st = &item["status"];
        conds.extend(st["conditions"].as_array().into_iter().flatten());
        for l in st["listeners"].as_array().into_iter().flatten() {
            conds.extend(l["conditions"].as_array().unwrap());
        }
        for p in st["parents"].as_array().into_iter().flatten() {
            conds.extend(p["conditions"].as_array().unwrap());
        }
        for a in st["ancestors"].as_array().into_iter().flatten() {
            conds.extend(a["conditions"].as_array().unwrap());
        }
        assert!(!conds.is_empty(), "{item}");
        for c in conds {
            assert_eq!(c["observedGeneration"].as_i64(), Some(want), "{item}");
            seen += 1;
        }
    }
    assert!(seen >= 9, "{seen}");
}

#[test]
fn a_cluster_snapshot_loads_and_compiles_with_our_class() {
    let docs = vec![
        (
            "cluster".to_string(),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                   "metadata": {"name": "sniway", "generation": 1, "uid": "u"},
                   "spec": {"controllerName": CONTROLLER_NAME}}),
        ),
        ("cluster".to_string(), {
            let mut g = gateway("gw");
            g["spec"]["gatewayClassName"] = json!("sniway");
            g
        }),
    ];
    let loaded = load_values(docs, &cluster()).unwrap();
    let c = compile(&loaded.resources, &cluster_opts(None));
    assert_eq!(served(&c), ["infra/gw"]);
    assert_eq!(c.table.sockets.len(), 1);
    assert!(c.gateway_classes[0].status.is_some());
}

#[test]
fn a_route_created_as_v1alpha2_and_served_as_v1_loads_with_no_hostnames_and_two_rules() {
    // The FSM guide's route: v1alpha2, no hostnames. The API server stores and serves it as v1
    // without validating it again, so a watch returns a v1 object v1 itself would refuse.
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "TLSRoute",
        "metadata": {"name": "tcp-route", "namespace": "httpbin", "generation": 1},
        "spec": {
            "parentRefs": [{"name": "simple-fsm-gateway", "port": 8000}],
            "rules": [
                {"backendRefs": [{"name": "httpbin.org", "port": 443}]},
                {"backendRefs": [{"name": "other.example", "port": 443}]}
            ]
        }
    });
    let loaded = load_values(vec![("cluster".into(), route.clone())], &cluster()).unwrap();
    assert_eq!(loaded.resources.tls_routes.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // A file holding the same v1 object is refused, as an API server would refuse it.
    assert!(load_values(vec![("f.json".into(), route)], &LoadOptions::default()).is_err());
}
