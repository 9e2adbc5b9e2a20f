//! ListenerSets (GEP-1713): listeners merged into an allowing Gateway, routes attached through
//! `parentRef.kind: ListenerSet`, served like the Gateway's own TLS listeners.

use sniway_compile::{CompileOptions, Compiled, LoadOptions, Source, compile, load};

const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: sniway
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: own, protocol: TLS, port: 443, hostname: own.example.com, tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: team}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - {name: tls, protocol: TLS, port: 443, hostname: team.example.com, tls: {mode: Passthrough}}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: team}
spec:
  clusterIP: 10.0.0.7
  ports: [{port: 443}]
";

fn route(parent: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: r, \
         namespace: team}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: [team.example.com]\n  \
         rules:\n  - backendRefs: [{{name: app, port: 443}}]\n"
    )
}

fn build(text: &str) -> Compiled {
    let loaded =
        load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
    compile(&loaded.resources, &CompileOptions::default())
}

fn accepted(c: &Compiled) -> (String, String) {
    let p = &c.routes[0].status.as_ref().unwrap().parents[0];
    let a = p.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    (a.status.clone(), a.reason.clone())
}

#[test]
fn a_route_attached_to_a_listener_set_is_served_on_its_listener() {
    let c = build(&format!(
        "{BASE}{}",
        route("{group: gateway.networking.k8s.io, kind: ListenerSet, name: extra}")
    ));
    assert_eq!(accepted(&c), ("True".into(), "Accepted".into()));
    let summary = serde_json::to_string(&sniway_compile::table_summary(&c.table)).unwrap();
    assert!(summary.contains("infra/gw/team/extra/tls"), "{summary}");
    assert!(summary.contains("10.0.0.7:443"), "{summary}");
    let ls = c.listener_sets[0].status.as_ref().unwrap();
    assert_eq!(ls.listeners[0].attached_routes, 1);
    let gw = c.gateways[0].status.as_ref().unwrap();
    assert_eq!(gw.attached_listener_sets, Some(1));
    assert_eq!(gw.listeners.len(), 1, "the set's listeners are not the Gateway's");
}

#[test]
fn a_gateway_parent_ref_does_not_reach_a_listener_sets_listeners() {
    // The Gateway's own listener allows all namespaces but not the route's hostname; the
    // set's listener, which would match, is out of reach.
    let text = BASE.replace(
        "hostname: own.example.com, tls: {mode: Passthrough}}",
        "hostname: own.example.com, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: All}}}",
    );
    let c = build(&format!("{text}{}", route("{name: gw, namespace: infra}")));
    assert_eq!(accepted(&c), ("False".into(), "NoMatchingListenerHostname".into()));
    let ls = c.listener_sets[0].status.as_ref().unwrap();
    assert_eq!(ls.listeners[0].attached_routes, 0);
}

#[test]
fn a_listener_set_in_a_namespace_the_gateway_does_not_allow_is_not_allowed() {
    let text = BASE.replace(
        "allowedListeners: {namespaces: {from: All}}",
        "allowedListeners: {namespaces: {from: Same}}",
    );
    let c = build(&text);
    let ls = c.listener_sets[0].status.as_ref().unwrap();
    let a = ls.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert_eq!((a.status.as_str(), a.reason.as_str()), ("False", "NotAllowed"));
    assert!(ls.listeners.is_empty());
    assert_eq!(c.table.sockets[0].listeners.entries().len(), 1);
}

#[test]
fn a_listener_set_listener_on_the_gateways_port_and_hostname_loses_the_conflict() {
    let text = BASE.replace("hostname: team.example.com, tls", "hostname: own.example.com, tls");
    let c = build(&text);
    let gw = c.gateways[0].status.as_ref().unwrap();
    let own = gw.listeners[0].conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert_eq!(own.status, "True");
    let ls = c.listener_sets[0].status.as_ref().unwrap();
    let l = ls.listeners[0].conditions.iter().find(|c| c.type_ == "Conflicted").unwrap();
    assert_eq!((l.status.as_str(), l.reason.as_str()), ("True", "HostnameConflict"));
}

#[test]
fn a_listener_set_without_listeners_is_rejected_by_the_loader() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: x}\nspec:\n  parentRef: {name: gw}\n  listeners: []\n";
    let e = load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.listeners: must have 1 to 64 entries"), "{e}");
}

#[test]
fn a_bind_failure_marks_a_listener_set_listener_pending() {
    let mut c = build(BASE);
    let sock: std::net::SocketAddr = "0.0.0.0:443".parse().unwrap();
    sniway_compile::apply_bind_failures(&mut c, &[(sock, "Address in use".into())]);
    let ls = c.listener_sets[0].status.as_ref().unwrap();
    let p = ls.listeners[0].conditions.iter().find(|c| c.type_ == "Programmed").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "Pending"));
}
