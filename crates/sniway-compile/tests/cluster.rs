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
