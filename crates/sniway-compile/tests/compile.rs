//! Compile behaviour checked through the table the data plane reads and through status.

use sniway_compile::{CompileOptions, Compiled, LoadOptions, Source, compile, load};
use sniway_model::Lookup;

fn build(text: &str, class: Option<&str>) -> Compiled {
    let loaded =
        load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
    compile(
        &loaded.resources,
        &CompileOptions {
            default_bind: "0.0.0.0".parse().unwrap(),
            gateway_class: class.map(str::to_string),
            now: "2026-01-01T00:00:00Z".into(),
        },
    )
}

fn gateway(name: &str, class: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  \
         gatewayClassName: {class}\n{extra}  listeners:\n  - {{name: tls, protocol: TLS, port: 443, \
         tls: {{mode: Passthrough}}}}\n---\n"
    )
}

const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: r}\n\
spec:\n  parentRefs: [{name: a}]\n  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: ext.example.net, port: 443}]\n";

#[test]
fn a_gateway_class_narrows_which_gateways_are_served_and_statused() {
    let text = format!("{}{ROUTE}", gateway("a", "other", ""));
    let c = build(&text, Some("sniway"));
    assert!(c.table.sockets.is_empty());
    assert!(c.gateways[0].status.is_none());
    assert!(c.routes[0].status.as_ref().unwrap().parents.is_empty());
    assert!(
        c.warnings.iter().any(|w| w.contains("has class \"other\", not the served class")),
        "{:?}",
        c.warnings
    );
    // Without a class every Gateway is served.
    let c = build(&text, None);
    assert_eq!(c.table.sockets.len(), 1);
}

#[test]
fn a_specific_address_overlapping_the_unspecified_one_on_a_port_is_port_unavailable() {
    let text = format!(
        "{}{}",
        gateway("a", "x", ""),
        gateway("b", "x", "  addresses: [{value: 127.0.0.1}]\n")
    );
    let c = build(&text, None);
    let list = c.status_list();
    let b = &list["items"][1]["status"]["listeners"][0]["conditions"][0];
    assert_eq!(b["reason"], "PortUnavailable", "{b}");
    assert!(b["message"].as_str().unwrap().contains("default/a"), "{b}");
    assert_eq!(c.table.sockets.len(), 1);
}

#[test]
fn the_table_routes_the_intersected_name_and_refuses_others() {
    let text = format!("{}{ROUTE}", gateway("a", "x", ""));
    let c = build(&text, None);
    let s = &c.table.sockets[0];
    match s.lookup("A.Example.com.") {
        Lookup::Route { route, .. } => {
            assert_eq!(route.backends[0].backend.name(), "default/ext.example.net:443")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.lookup("b.example.com"), Lookup::NoRoute { .. }));
}

#[test]
fn status_list_is_a_v1_list_with_gateways_before_routes_and_namespace_filled_in() {
    let text = format!("{ROUTE}---\n{}", gateway("a", "x", ""));
    let list = build(&text, None).status_list();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Gateway");
    assert_eq!(list["items"][1]["kind"], "TLSRoute");
    assert_eq!(list["items"][1]["metadata"]["namespace"], "default");
    let parent = &list["items"][1]["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "sniway.io/gateway-controller");
    assert_eq!(parent["parentRef"]["group"], "gateway.networking.k8s.io");
    assert_eq!(parent["parentRef"]["kind"], "Gateway");
    assert!(parent["parentRef"].get("namespace").is_none());
}
