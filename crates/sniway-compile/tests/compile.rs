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
            mode: sniway_compile::Mode::File { gateway_class: class.map(str::to_string) },
            now: "2026-01-01T00:00:00Z".into(),
            ..CompileOptions::default()
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
        c.warnings.iter().any(|w| w.contains("class \"other\", not the served class \"sniway\"")),
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

const CERT_GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
metadata: {name: g}\nspec:\n  gatewayClassName: sniway\n  listeners:\n  - name: t\n    \
protocol: TLS\n    port: 8443\n    tls:\n      mode: Terminate\n      certificateRefs: [{name: c}]\n---\n";

/// A `kubernetes.io/tls` Secret named `c` holding a test pair from `tests/testdata/certs`.
fn cert_secret(pair: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/certs");
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{pair}.{ext}"))).unwrap();
    let indent = |s: String| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\ntype: kubernetes.io/tls\n\
         stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(read("crt")),
        indent(read("key"))
    )
}

fn served_names(c: &Compiled) -> Vec<String> {
    let sets = sniway_compile::certificate_sets(&c.table);
    assert_eq!(sets.len(), 1);
    let set = sets.values().next().unwrap();
    set.0.iter().flat_map(|c| c.dns_names.iter().map(ToString::to_string)).collect()
}

#[test]
fn a_changed_secret_yields_the_new_certificate_and_swaps_into_a_live_listener() {
    let before = build(&format!("{CERT_GATEWAY}{}", cert_secret("ec256-sec1")), None);
    let after = build(&format!("{CERT_GATEWAY}{}", cert_secret("ed25519")), None);
    assert_eq!(served_names(&before), ["bar.example.com"]);
    assert_eq!(served_names(&after), ["*.example.com", "example.com"]);

    // The data plane keeps the live listener and stores the new set into it: a handshake that
    // already loaded the old set keeps it, the next one sees the new one.
    let (_, live) = before.table.sockets[0].listeners.entries()[0];
    let sniway_model::ListenerMode::Terminate(live) = &live.mode else { panic!("not Terminate") };
    let in_flight = live.certificates.load_full();
    for (id, set) in sniway_compile::certificate_sets(&after.table) {
        assert_eq!(id.to_string(), "default/g/t");
        live.certificates.store(set);
    }
    assert_eq!(
        in_flight.select(Some("bar.example.com")).unwrap().dns_names[0].to_string(),
        "bar.example.com"
    );
    let now = live.certificates.load();
    assert_eq!(
        now.select(Some("x.example.com")).unwrap().dns_names[0].to_string(),
        "*.example.com"
    );
}

#[test]
fn passthrough_and_terminate_listeners_share_a_socket_and_route_by_sni() {
    let text = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g}}\nspec:\n  \
         gatewayClassName: sniway\n  listeners:\n  - {{name: p, protocol: TLS, port: 443, hostname: \
         a.example.com, tls: {{mode: Passthrough}}}}\n  - {{name: t, protocol: TLS, port: 443, \
         hostname: \"*.example.com\", tls: {{certificateRefs: [{{name: c}}]}}}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: r}}\nspec:\n  \
         parentRefs: [{{name: g}}]\n  hostnames: [a.example.com, b.example.com]\n  rules:\n  - \
         backendRefs: [{{name: ext.example.net, port: 443}}]\n---\n{}",
        cert_secret("ed25519")
    );
    let c = build(&text, None);
    assert_eq!(c.table.sockets.len(), 1);
    let mode = |sni: &str| match c.table.sockets[0].lookup(sni) {
        Lookup::Route { listener, .. } => listener.mode.name(),
        _ => "none",
    };
    assert_eq!(mode("a.example.com"), "Passthrough");
    assert_eq!(mode("b.example.com"), "Terminate");
    assert_eq!(mode("c.example.com"), "none");
}

#[test]
fn a_listener_policy_sets_the_served_listener_and_is_listed_after_the_routes() {
    let text = format!(
        "{}{ROUTE}---\napiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: a, \
         sectionName: tls}}]\n  timeouts: {{idle: 2m}}\n  limits: {{connectionsPerClient: 8}}\n",
        gateway("a", "sniway", "")
    );
    let c = build(&text, None);
    let l = &c.table.sockets[0].listeners.entries()[0].1;
    assert_eq!(l.settings.idle_timeout, Some(std::time::Duration::from_secs(120)));
    assert_eq!(l.settings.max_connections_per_client, Some(8));
    assert_eq!(l.settings.hello_timeout, None);
    let list = c.status_list();
    let kinds: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Gateway", "TLSRoute", "ListenerPolicy"]);
    let ancestor = &list["items"][2]["status"]["ancestors"][0];
    assert_eq!(ancestor["ancestorRef"]["sectionName"], "tls");
    assert_eq!(ancestor["conditions"][0]["reason"], "Accepted");
}

#[test]
fn a_listener_policy_on_a_gateway_of_another_class_finds_no_target() {
    let text = format!(
        "{}apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: p}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: a}}]\n",
        gateway("a", "other", "")
    );
    let c = build(&text, Some("sniway"));
    let st = c.policies[0].status.as_ref().unwrap();
    let cond = &st.ancestors[0].conditions[0];
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("False", "TargetNotFound"));
    assert!(cond.message.contains("not the served class"), "{}", cond.message);
}

#[test]
fn an_endpoint_slice_with_null_endpoints_and_ports_is_an_empty_slice() {
    let text = |endpoints: &str, ports: &str| {
        format!(
            "{}apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: r}}\n\
             spec:\n  parentRefs: [{{name: a}}]\n  hostnames: [a.example.com]\n  rules:\n  \
             - backendRefs: [{{name: svc, port: 443}}]\n---\napiVersion: v1\nkind: Service\n\
             metadata: {{name: svc}}\nspec:\n  clusterIP: None\n  ports: [{{port: 443}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-abc\n  \
             labels: {{kubernetes.io/service-name: svc}}\naddressType: IPv4\n\
             endpoints: {endpoints}\nports: {ports}\n",
            gateway("a", "sniway", "")
        )
    };
    let render = |c: &Compiled| {
        format!(
            "{}\n{}",
            serde_json::to_string(&c.status_list()).unwrap(),
            serde_json::to_string(&sniway_compile::table_summary(&c.table)).unwrap()
        )
    };
    let null = build(&text("null", "null"), None);
    let empty = build(&text("[]", "[]"), None);
    assert_eq!(render(&null), render(&empty));
    let loaded = load(
        &[Source { name: "t.yaml".into(), text: text("null", "[{port: 443}]") }],
        &LoadOptions::default(),
    )
    .unwrap();
    let slice = &loaded.resources.endpoint_slices[0].spec;
    assert!(slice.endpoints.is_empty());
    assert_eq!(slice.ports.len(), 1);
}

#[test]
fn a_253_character_gateway_name_loads_and_takes_routes_and_254_is_rejected() {
    // One 100-character part and dots: a subdomain, whose parts are not bound to 63 characters.
    let name = format!("{}.{}.{}", "g".repeat(100), "a".repeat(100), "b".repeat(51));
    assert_eq!(name.len(), 253);
    let text = format!(
        "{}{}",
        gateway(&name, "sniway", ""),
        ROUTE.replace("{name: a}", &format!("{{name: {name}}}"))
    );
    let c = build(&text, None);
    let list = c.status_list();
    assert_eq!(list["items"][0]["metadata"]["name"], name.as_str());
    let parent = &list["items"][1]["status"]["parents"][0];
    assert_eq!(parent["parentRef"]["name"], name.as_str());
    let accepted =
        parent["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Accepted").unwrap();
    assert_eq!(accepted["status"], "True", "{accepted}");
    assert!(matches!(c.table.sockets[0].lookup("a.example.com"), Lookup::Route { .. }));

    let long = format!("{name}x");
    let text = gateway(&long, "sniway", "");
    let e = load(&[Source { name: "t.yaml".into(), text }], &LoadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "t.yaml: Gateway default/{long}: metadata.name: {long:?} must be an RFC 1123 \
             subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    );
}

#[test]
fn a_service_name_stays_an_rfc_1035_label() {
    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 1}}]}}\n"
        )
    };
    let try_svc = |name: &str| {
        load(&[Source { name: "t.yaml".into(), text: svc(name) }], &LoadOptions::default())
    };
    try_svc(&"s".repeat(63)).unwrap();
    let e = try_svc(&"s".repeat(64)).unwrap_err().to_string();
    assert!(e.contains("metadata.name: ") && e.contains("must be an RFC 1035 label"), "{e}");
    let e = try_svc("1svc").unwrap_err().to_string();
    assert!(e.contains("must be an RFC 1035 label"), "{e}");
    let e = try_svc("a.b").unwrap_err().to_string();
    assert!(e.contains("must be an RFC 1035 label"), "{e}");
}
