//! What the API server would reject is an error naming the file, the object and the field path;
//! what it would silently drop is a warning.

use sniway_compile::{LoadError, LoadOptions, Loaded, Source, load};

fn try_load(text: &str) -> Result<Loaded, LoadError> {
    load(&[Source { name: "x.yaml".into(), text: text.into() }], &LoadOptions::default())
}

fn errors(text: &str) -> String {
    match try_load(text) {
        Ok(_) => panic!("expected a load error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const GATEWAY: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sniway
  listeners:
  - {name: tls, protocol: TLS, port: 443, tls: {mode: Passthrough}}
";

fn route(version: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/{version}\nkind: TLSRoute\nmetadata: {{name: foo}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n{spec}"
    )
}

const RULE: &str = "  rules:\n  - backendRefs: [{name: svc, port: 443}]\n";

#[test]
fn a_v1_tlsroute_without_hostnames_is_rejected() {
    let e = errors(&route("v1", RULE));
    assert_eq!(
        e,
        "x.yaml: TLSRoute default/foo: spec.hostnames: is required in TLSRoute v1: at least one \
         hostname"
    );
}

#[test]
fn a_v1alpha2_tlsroute_without_hostnames_loads() {
    try_load(&route("v1alpha2", RULE)).unwrap();
}

#[test]
fn a_v1_tlsroute_with_two_rules_is_rejected() {
    let spec =
        format!("  hostnames: [a.example.com]\n{RULE}  - backendRefs: [{{name: b, port: 1}}]\n");
    let e = errors(&route("v1", &spec));
    assert!(
        e.contains("TLSRoute default/foo: spec.rules: must have exactly 1 entries, found 2"),
        "{e}"
    );
    // v1alpha2 allows up to 16 rules.
    try_load(&route("v1alpha2", &spec)).unwrap();
}

#[test]
fn an_uppercase_hostname_is_rejected_with_file_object_and_path() {
    let e = errors(&route("v1", &format!("  hostnames: [Foo.example.com]\n{RULE}")));
    assert_eq!(
        e,
        "x.yaml: TLSRoute default/foo: spec.hostnames[0]: \"Foo.example.com\" must be lowercase \
         (RFC 1123 subdomain)"
    );
}

#[test]
fn an_ip_hostname_is_rejected_in_v1_and_a_bare_star_everywhere() {
    let e = errors(&route("v1", &format!("  hostnames: [\"10.0.0.1\"]\n{RULE}")));
    assert!(e.contains("spec.hostnames[0]: \"10.0.0.1\" is an IP address"), "{e}");
    let e = errors(&route("v1alpha2", &format!("  hostnames: [\"*\"]\n{RULE}")));
    assert!(e.contains("spec.hostnames[0]: \"*\" is not a valid hostname"), "{e}");
}

#[test]
fn a_tls_listener_without_tls_mode_is_rejected() {
    let e = errors(&GATEWAY.replace(", tls: {mode: Passthrough}", ""));
    assert_eq!(
        e,
        "x.yaml: Gateway default/gw: spec.listeners[0].tls: a TLS listener must set tls.mode \
         (Passthrough or Terminate)"
    );
}

#[test]
fn a_terminate_listener_needs_certificate_refs_or_options() {
    let e = errors(&GATEWAY.replace("{mode: Passthrough}", "{}"));
    assert!(
        e.contains("spec.listeners[0].tls: certificateRefs or options must be specified"),
        "{e}"
    );
}

#[test]
fn duplicate_listener_names_are_rejected() {
    let text = format!(
        "{GATEWAY}  - {{name: tls, protocol: TLS, port: 444, tls: {{mode: Passthrough}}}}\n"
    );
    let e = errors(&text);
    assert!(e.contains("spec.listeners[1].name: listener name \"tls\" is not unique"), "{e}");
}

#[test]
fn a_port_out_of_range_is_rejected() {
    let e = errors(&GATEWAY.replace("port: 443", "port: 70000"));
    assert!(
        e.contains("Gateway default/gw: spec.listeners[0].port: port 70000 is out of range"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_names_its_path() {
    let e = errors(&GATEWAY.replace("port: 443", "port: https"));
    assert!(
        e.starts_with("x.yaml: Gateway default/gw: spec.listeners[0].port: invalid type"),
        "{e}"
    );
}

#[test]
fn tls_on_tcp_and_hostname_on_tcp_are_rejected() {
    let e = errors(&GATEWAY.replace("protocol: TLS", "protocol: TCP, hostname: a.example.com"));
    assert!(e.contains("spec.listeners[0].hostname: must not be set for protocol TCP"), "{e}");
    assert!(e.contains("spec.listeners[0].tls: must not be set for protocol TCP"), "{e}");
}

#[test]
fn a_service_backend_ref_without_port_and_a_weight_out_of_range_are_rejected() {
    let spec =
        "  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: svc, weight: 2000000}]\n";
    let e = errors(&route("v1", spec));
    assert!(
        e.contains("spec.rules[0].backendRefs[0].port: is required for a Service reference"),
        "{e}"
    );
    assert!(e.contains("spec.rules[0].backendRefs[0].weight: 2000000 is out of range"), "{e}");
}

#[test]
fn repeated_parents_need_distinct_section_names_in_v1() {
    let spec = format!("  hostnames: [a.example.com]\n{RULE}");
    let text = route("v1", &spec).replace("[{name: gw}]", "[{name: gw}, {name: gw, port: 443}]");
    let e = errors(&text);
    assert!(e.contains("spec.parentRefs[0]: sectionName must be set and unique"), "{e}");
}

#[test]
fn an_ip_address_gateway_address_must_be_an_ip() {
    let text = GATEWAY.replace("  listeners:", "  addresses: [{value: not-an-ip}]\n  listeners:");
    let e = errors(&text);
    assert!(e.contains("spec.addresses[0].value: \"not-an-ip\" must be an IP address"), "{e}");
}

#[test]
fn unknown_fields_are_warnings_naming_their_path() {
    let text = GATEWAY.replace("port: 443,", "port: 443, foo: 1,");
    let loaded = try_load(&text).unwrap();
    assert_eq!(
        loaded.warnings,
        ["x.yaml: Gateway default/gw: unknown field spec.listeners[0].foo"]
    );
}

#[test]
fn other_kinds_are_one_warning_each_and_empty_documents_are_skipped() {
    let text = "---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c}\n---\n";
    let loaded = try_load(text).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("Pod default/c: kind Pod (v1) is not read"));
}

#[test]
fn every_error_is_reported_one_per_line_and_unnamed_objects_name_their_document() {
    let text = format!(
        "{GATEWAY}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nspec: {{}}\n"
    );
    let text = text.replace("port: 443", "port: 0");
    let e = errors(&text);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(lines[0].contains("Gateway default/gw: spec.listeners[0].port"), "{e}");
    assert_eq!(lines[1], "x.yaml: document 2 (Gateway): metadata.name: is required");
}

#[test]
fn duplicate_objects_are_rejected_across_versions() {
    let spec = format!("  hostnames: [a.example.com]\n{RULE}");
    let text = format!("{}\n---\n{}", route("v1", &spec), route("v1alpha2", &spec));
    let e = errors(&text);
    assert!(
        e.contains("TLSRoute default/foo: duplicate object: already defined in x.yaml document 1"),
        "{e}"
    );
}

#[test]
fn a_list_and_json_input_load_and_namespaces_default() {
    let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service",
        "metadata":{"name":"svc"},"spec":{"ports":[{"port":443}]}}]}"#;
    let loaded = load(
        &[Source { name: "l.json".into(), text: json.into() }],
        &LoadOptions { default_namespace: "apps".into(), ..LoadOptions::default() },
    )
    .unwrap();
    assert_eq!(loaded.resources.services[0].meta.namespace, "apps");
}

#[test]
fn secret_data_never_appears_in_debug_output_or_errors() {
    let text =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {tls.key: c2VjcmV0LWtleQ==}\n";
    let loaded = try_load(text).unwrap();
    let dbg = format!("{:?}", loaded.resources);
    assert!(!dbg.contains("secret-key") && !dbg.contains("c2VjcmV0"), "{dbg}");
    let e = errors(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {tls.key: \"%%notbase64\"}\n",
    );
    assert!(!e.contains("notbase64"), "{e}");
    assert!(e.contains("data.tls.key: is not valid base64"), "{e}");
}

#[test]
fn the_snis_extension_is_accepted_on_v1alpha2_with_a_warning() {
    let spec = "  rules:\n  - matches: [{snis: [api.example.com]}]\n    backendRefs: [{name: a, port: 443}]\n";
    let loaded = try_load(&route("v1alpha2", spec)).unwrap();
    assert!(
        loaded.warnings[0]
            .contains("spec.rules[0].matches: `matches[].snis` is not part of the Gateway API")
    );
}

#[test]
fn a_tls_secret_needs_both_keys_as_the_api_server_requires() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n\
                stringData: {tls.crt: c2VjcmV0LWNlcnQ=}\n";
    let e = errors(text);
    assert!(e.contains("data[tls.key]: is required for type kubernetes.io/tls"), "{e}");
    assert!(!e.contains("c2VjcmV0"), "{e}");
    // Empty values are admitted (compile reports them on the listener); other types need no keys.
    try_load(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n\
         data: {tls.crt: \"\", tls.key: \"\"}\n",
    )
    .unwrap();
    try_load("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\n").unwrap();
}

// === ListenerPolicy ===

fn policy(spec: &str) -> String {
    format!(
        "apiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata: {{name: edge}}\nspec:\n{spec}"
    )
}

const TARGET: &str =
    "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n";

#[test]
fn a_listener_policy_loads_with_its_durations_and_limits() {
    let text = policy(&format!(
        "{TARGET}  timeouts: {{hello: 500ms, idle: 1h30m}}\n  keepalive: {{idle: 2m, count: 5}}\n  \
         limits: {{connections: 100}}\n"
    ));
    let loaded = try_load(&text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let p = &loaded.resources.listener_policies[0];
    assert_eq!(p.meta.key(), "default/edge");
    let t = p.spec.timeouts.as_ref().unwrap();
    assert_eq!(t.hello.unwrap().0, std::time::Duration::from_millis(500));
    assert_eq!(t.idle.unwrap().0, std::time::Duration::from_secs(5400));
    assert_eq!(p.spec.keepalive.as_ref().unwrap().count, Some(5));
    assert_eq!(p.spec.limits.as_ref().unwrap().connections, Some(100));
    assert_eq!(p.raw["metadata"]["namespace"], "default");
}

#[test]
fn a_listener_policy_with_a_bad_duration_is_rejected_naming_the_field() {
    let e = errors(&policy(&format!("{TARGET}  timeouts: {{idle: 1.5s}}\n")));
    assert!(e.starts_with("x.yaml: ListenerPolicy default/edge: spec.timeouts.idle: "), "{e}");
    assert!(e.contains("\"1.5s\" is not a Gateway API duration"), "{e}");
}

#[test]
fn a_listener_policy_with_a_wrong_type_is_rejected_naming_the_field() {
    let e = errors(&policy(&format!("{TARGET}  limits: {{connections: -1}}\n")));
    assert!(e.contains("ListenerPolicy default/edge: spec.limits.connections: "), "{e}");
    let e = errors(&policy(&format!("{TARGET}  keepalive: {{count: many}}\n")));
    assert!(e.contains("spec.keepalive.count: "), "{e}");
}

#[test]
fn a_listener_policy_needs_one_to_sixteen_target_refs() {
    let e = errors(&policy("  targetRefs: []\n"));
    assert!(e.contains("spec.targetRefs: must have 1 to 16 entries, found 0"), "{e}");
    let many: String = (0..17)
        .map(|i| format!("  - {{group: gateway.networking.k8s.io, kind: Gateway, name: g{i}}}\n"))
        .collect();
    let e = errors(&policy(&format!("  targetRefs:\n{many}")));
    assert!(e.contains("spec.targetRefs: must have 1 to 16 entries, found 17"), "{e}");
    let e = errors(&policy("  timeouts: {idle: 1s}\n"));
    assert!(e.contains("ListenerPolicy default/edge: spec: missing field `targetRefs`"), "{e}");
}

#[test]
fn a_listener_policy_target_with_an_invalid_section_name_is_rejected() {
    let e = errors(&policy(
        "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: Bad_Name}\n",
    ));
    assert!(e.contains("spec.targetRefs[0].sectionName: \"Bad_Name\" is not a valid"), "{e}");
}

#[test]
fn unknown_listener_policy_fields_are_warnings_naming_their_path() {
    let text = policy(&format!("{TARGET}  frobnicate: {{mode: Off}}\n  timeouts: {{helo: 1s}}\n"));
    let loaded = try_load(&text).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "x.yaml: ListenerPolicy default/edge: unknown field spec.frobnicate",
            "x.yaml: ListenerPolicy default/edge: unknown field spec.timeouts.helo",
        ]
    );
}

#[test]
fn another_version_of_listener_policy_is_ignored_with_a_warning() {
    let text = policy(TARGET).replace("v1alpha1", "v1beta9");
    let loaded = try_load(&text).unwrap();
    assert!(loaded.resources.listener_policies.is_empty());
    assert!(
        loaded.warnings[0].contains("apiVersion sniway.io/v1beta9 of ListenerPolicy is not read")
    );
}

#[test]
fn an_unknown_protocol_matching_the_crd_pattern_loads() {
    for proto in ["INVALID", "example.com/Custom", "Foo.example.com/Custom", "a/b/c", "tcp-2"] {
        let text = GATEWAY.replace(
            "protocol: TLS, port: 443, tls: {mode: Passthrough}",
            &format!("protocol: \"{proto}\", port: 443"),
        );
        try_load(&text).unwrap_or_else(|e| panic!("{proto}: {e}"));
    }
}

#[test]
fn a_protocol_not_matching_the_crd_pattern_is_rejected_naming_the_field() {
    let long = "P".repeat(256);
    for proto in ["bad_proto", "-TLS", "HTTP/2", "example.com/", "example.com/a-b", &long] {
        let text = GATEWAY.replace(
            "protocol: TLS, port: 443, tls: {mode: Passthrough}",
            &format!("protocol: \"{proto}\", port: 443"),
        );
        let e = errors(&text);
        assert_eq!(
            e,
            format!(
                "x.yaml: Gateway default/gw: spec.listeners[0].protocol: {proto:?} is not a \
                 valid protocol"
            )
        );
    }
}
