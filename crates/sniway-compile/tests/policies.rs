//! BackendPolicy and ListenerPolicy as the data plane reads them: what the table summary (and
//! so the golden files) cannot show, such as CA certificates and shared settings.

use std::sync::Arc;

use sniway_compile::{CompileOptions, Compiled, LoadOptions, Source, compile, load};
use sniway_model::settings::{Probe, Unmatched};
use sniway_model::{Backend, Lookup, WeightedBackend};

fn build(text: &str) -> Compiled {
    let loaded =
        load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
    compile(&loaded.resources, &CompileOptions::default())
}

fn load_errors(text: &str) -> String {
    match load(&[Source { name: "t.yaml".into(), text: text.into() }], &LoadOptions::default()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n\
spec:\n  gatewayClassName: sniway\n  listeners:\n  - {name: tls, protocol: TLS, port: 443, tls: {mode: Passthrough}}\n---\n";

fn route(name: &str, host: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n  - backendRefs: [{backend}]\n---\n"
    )
}

fn backend_of<'a>(c: &'a Compiled, host: &str) -> &'a WeightedBackend {
    match c.table.sockets[0].lookup(host) {
        Lookup::Route { route, .. } => &route.backends[0],
        other => panic!("{host}: {other:?}"),
    }
}

fn ca_pem() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/certs/ca.crt"))
        .unwrap()
}

fn config_map(name: &str, pem: &str) -> String {
    let body: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n  ca.crt: |\n{body}---\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {clusterIP: 127.0.0.9, ports: [{port: 443}]}\n---\n";

#[test]
fn a_tls_check_carries_the_pem_of_its_ca_config_map() {
    let pem = ca_pem();
    let text = format!(
        "{GATEWAY}{}{SERVICE}{}apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: \"\", kind: Service, name: app}}]\n  healthCheck:\n    active:\n      \
         type: TLS\n      tls: {{sni: app.example.com, verify: true, caCertificateRefs: [{{kind: ConfigMap, name: ca}}]}}\n",
        route("r", "app.example.com", "{name: app, port: 443}"),
        config_map("ca", &pem)
    );
    let c = build(&text);
    let check = backend_of(&c, "app.example.com").settings.active_health.clone().unwrap();
    match check.probe {
        Probe::Tls { sni, verify, ca_pem, ca_sources } => {
            assert_eq!(sni.as_deref(), Some("app.example.com"));
            assert!(verify);
            assert_eq!(ca_pem, [pem]);
            assert_eq!(ca_sources, ["default/ca"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tls_check_whose_ca_is_missing_still_verifies_against_nothing() {
    let text = format!(
        "{GATEWAY}{}{SERVICE}apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: \"\", kind: Service, name: app}}]\n  healthCheck:\n    active:\n      \
         type: TLS\n      tls: {{sni: app.example.com, verify: true, caCertificateRefs: [{{kind: ConfigMap, name: gone}}]}}\n",
        route("r", "app.example.com", "{name: app, port: 443}"),
    );
    let c = build(&text);
    let check = backend_of(&c, "app.example.com").settings.active_health.clone().unwrap();
    assert!(
        matches!(check.probe, Probe::Tls { verify: true, ref ca_pem, .. } if ca_pem.is_empty())
    );
    let st = c.backend_policies[0].status.as_ref().unwrap();
    assert_eq!(st.ancestors[0].conditions[0].reason, "Invalid");
    assert!(st.ancestors[0].conditions[0].message.contains("ConfigMap default/gone not found"));
}

#[test]
fn every_route_to_a_service_shares_one_settings_value() {
    let text = format!(
        "{GATEWAY}{}{}{SERVICE}apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: \"\", kind: Service, name: app}}]\n  fallback: true\n",
        route("r1", "a.example.com", "{name: app, port: 443}"),
        route("r2", "b.example.com", "{name: app, port: 443}"),
    );
    let c = build(&text);
    let (a, b) = (backend_of(&c, "a.example.com"), backend_of(&c, "b.example.com"));
    assert!(a.settings.fallback);
    assert!(Arc::ptr_eq(&a.settings, &b.settings));
}

#[test]
fn a_backend_policy_reaches_service_import_backends() {
    let text = format!(
        "{GATEWAY}{}apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {{name: remote}}\n\
         spec: {{type: ClusterSetIP, ports: [{{port: 443}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: remote-a, labels: \
         {{multicluster.kubernetes.io/service-name: remote}}}}\naddressType: IPv4\nports: [{{port: 9443}}]\n\
         endpoints: [{{addresses: [127.0.0.7]}}]\n---\n\
         apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: multicluster.x-k8s.io, kind: ServiceImport, name: remote}}]\n  \
         failover: {{attempts: 2}}\n",
        route(
            "r",
            "a.example.com",
            "{group: multicluster.x-k8s.io, kind: ServiceImport, name: remote, port: 443}"
        ),
    );
    let c = build(&text);
    let b = backend_of(&c, "a.example.com");
    assert!(
        matches!(&b.backend, Backend::Endpoints { addrs, .. } if addrs == &["127.0.0.7:9443".parse().unwrap()])
    );
    assert_eq!(b.settings.failover_attempts, Some(2));
    let st = c.backend_policies[0].status.as_ref().unwrap();
    assert_eq!(st.ancestors[0].ancestor_ref.kind, "Gateway");
    assert_eq!(st.ancestors[0].conditions[0].reason, "Accepted");
}

#[test]
fn a_cross_namespace_service_import_needs_a_grant() {
    let text = format!(
        "{GATEWAY}{}apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {{name: remote, namespace: other}}\n\
         spec: {{ips: [10.9.9.9], ports: [{{port: 443}}]}}\n",
        route(
            "r",
            "a.example.com",
            "{group: multicluster.x-k8s.io, kind: ServiceImport, name: remote, namespace: other, port: 443}"
        ),
    );
    let c = build(&text);
    assert!(
        matches!(&backend_of(&c, "a.example.com").backend, Backend::Invalid { reason, .. } if reason == "RefNotPermitted")
    );
}

#[test]
fn a_listener_policy_default_backend_is_the_listeners_default_route() {
    let text = format!(
        "{GATEWAY}{SERVICE}apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: lp}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  \
         noSni: {{action: Backend, backendRef: {{name: app, port: 443}}}}\n  noMatch: {{action: Alert}}\n",
    );
    let c = build(&text);
    let (_, l) = c.table.sockets[0].listeners.entries()[0];
    assert_eq!(l.settings.no_sni, Some(Unmatched::Backend));
    assert_eq!(l.settings.no_match, Some(Unmatched::Alert));
    let d = l.defaults.no_sni.as_ref().unwrap();
    assert_eq!(d.id.to_string(), "default/lp#0");
    assert!(matches!(&d.backends[0].backend, Backend::Endpoints { addrs, .. } if addrs.len() == 1));
    assert!(l.defaults.no_match.is_none());
}

#[test]
fn no_sni_on_a_socket_of_several_hostname_listeners_is_a_warning() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n\
spec:\n  gatewayClassName: sniway\n  listeners:\n  - {name: a, protocol: TLS, port: 443, hostname: a.example.com, tls: {mode: Passthrough}}\n  \
- {name: b, protocol: TLS, port: 443, hostname: b.example.com, tls: {mode: Passthrough}}\n---\n\
apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {name: lp}\n\
spec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: a}]\n  noSni: {action: Alert}\n";
    let c = build(text);
    assert!(
        c.warnings.iter().any(|w| w.contains("noSni Alert never applies")
            && w.contains("several listeners, none without hostname")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_lone_hostname_listener_takes_clients_without_sni_without_a_warning() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n\
spec:\n  gatewayClassName: sniway\n  listeners:\n  - {name: a, protocol: TLS, port: 443, hostname: a.example.com, tls: {mode: Passthrough}}\n---\n\
apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {name: lp}\n\
spec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  noSni: {action: Alert}\n";
    let c = build(text);
    assert!(!c.warnings.iter().any(|w| w.contains("noSni")), "{:?}", c.warnings);
}

#[test]
fn optional_proxy_protocol_without_trusted_peers_is_refused() {
    let e = load_errors(&format!(
        "{GATEWAY}apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: lp}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  \
         proxyProtocol: {{mode: Optional}}\n"
    ));
    assert!(e.contains("spec.proxyProtocol.trustedCIDRs: is required with mode Optional"), "{e}");
}

#[test]
fn malformed_trusted_cidrs_are_refused_with_their_path() {
    let e = load_errors(&format!(
        "{GATEWAY}apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: lp}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  \
         proxyProtocol: {{mode: Required, trustedCIDRs: [10.0.0.0/33]}}\n"
    ));
    assert!(
        e.contains("spec.proxyProtocol.trustedCIDRs[0]: \"10.0.0.0/33\" is not an IP network"),
        "{e}"
    );
}

#[test]
fn a_backend_action_without_a_backend_ref_is_refused() {
    let e = load_errors(&format!(
        "{GATEWAY}apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: lp}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  \
         noMatch: {{action: Backend}}\n"
    ));
    assert!(e.contains("spec.noMatch.backendRef: is required with action Backend"), "{e}");
}

#[test]
fn backend_policy_limits_are_enforced_with_their_paths() {
    let e = load_errors(
        "apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p}\n\
spec:\n  targetRefs: [{group: \"\", kind: Service, name: app}]\n  failover: {attempts: 11}\n  \
healthCheck:\n    active: {type: TCP, healthyThreshold: 0, interval: 0s, tls: {sni: a.example.com}}\n",
    );
    for want in [
        "spec.failover.attempts: 11 is out of range 1..10",
        "spec.healthCheck.active.healthyThreshold: 0 is out of range 1..100",
        "spec.healthCheck.active.interval: must be longer than 0s",
        "spec.healthCheck.active.tls: is only allowed with type TLS",
    ] {
        assert!(e.contains(want), "{want}\n{e}");
    }
    let e = load_errors(
        "apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p}\n\
spec:\n  targetRefs: [{group: \"\", kind: Service, name: app}]\n  \
healthCheck:\n    active: {type: TLS, tls: {verify: true, caCertificateRefs: [{kind: Secret, name: x}]}}\n---\n\
apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {name: q}\n\
spec:\n  targetRefs: [{group: \"\", kind: Service, name: app}]\n  \
healthCheck:\n    active: {type: TLS, tls: {sni: \"*.example.com\"}}\n",
    );
    for want in [
        "spec.healthCheck.active.tls.sni: \"*.example.com\" is a wildcard",
        "caCertificateRefs[0].kind: \"Secret\" is not supported",
        "spec.healthCheck.active.tls.sni: is required with verify: true",
    ] {
        assert!(e.contains(want), "{want}\n{e}");
    }
}

#[test]
fn a_kernel_relay_is_accepted_with_a_warning() {
    let loaded = load(
        &[Source {
            name: "t.yaml".into(),
            text: "apiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p}\n\
spec:\n  targetRefs: [{group: \"\", kind: Service, name: app}]\n  relay: Kernel\n"
                .into(),
        }],
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(loaded.warnings.iter().any(|w| w.contains("spec.relay: Kernel is accepted")));
    assert_eq!(loaded.resources.backend_policies.len(), 1);
}

#[test]
fn an_invalid_backend_policy_from_a_cluster_is_skipped_with_a_warning() {
    let v: serde_json::Value = serde_json::json!({
        "apiVersion": "sniway.io/v1alpha1", "kind": "BackendPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "app"}],
                 "failover": {"attempts": 0}},
    });
    let loaded = sniway_compile::load_values(
        vec![("cluster".into(), v)],
        &LoadOptions { cluster: true, ..LoadOptions::default() },
    )
    .unwrap();
    assert!(loaded.resources.backend_policies.is_empty());
    assert!(
        loaded.warnings[0].contains("skipped, invalid: spec.failover.attempts"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn two_listener_policies_setting_proxy_protocol_conflict_and_the_older_wins() {
    let policy = |name: &str, created: &str, cidr: &str| {
        format!(
            "apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: {name}, creationTimestamp: \"{created}\"}}\n\
             spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  \
             proxyProtocol: {{mode: Required, trustedCIDRs: [\"{cidr}\"]}}\n  relay: Copy\n---\n"
        )
    };
    let text = format!(
        "{GATEWAY}{}{}",
        policy("a-newer", "2026-02-01T00:00:00Z", "192.0.2.0/24"),
        policy("b-older", "2026-01-01T00:00:00Z", "10.0.0.0/8")
    );
    let c = build(&text);
    let (_, l) = c.table.sockets[0].listeners.entries()[0];
    let pp = l.settings.proxy_protocol.as_ref().unwrap();
    assert_eq!(pp.trusted_cidrs[0].to_string(), "10.0.0.0/8");
    let newer = c.policies.iter().find(|p| p.key == "default/a-newer").unwrap();
    let cond = &newer.status.as_ref().unwrap().ancestors[0].conditions[0];
    assert_eq!(cond.reason, "Conflicted");
    assert!(cond.message.contains("proxyProtocol, relay"), "{}", cond.message);
    assert!(cond.message.contains("ListenerPolicy default/b-older"), "{}", cond.message);
}
