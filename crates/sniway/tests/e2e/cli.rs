//! The command line as a user runs it: `check`, `demo`, and errors.

use std::process::Command;

use crate::support::*;

fn repo_file(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_prints_a_v1_list_with_the_status_of_every_gateway_and_route() {
    let out = Command::new(bin())
        .args(["check", "--no-bind-check", "-o", "json", "-f"])
        .arg(repo_file("examples/demo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["GatewayClass", "Gateway", "TLSRoute", "TLSRoute", "TLSRoute", "TLSRoute"]);
    let class = &items[0]["status"]["conditions"][0];
    assert_eq!((&class["type"], &class["status"]), (&"Accepted".into(), &"True".into()));
    let gw = &items[1];
    let accepted = gw["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["status"], "True");
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 3);
    assert_eq!(gw["status"]["listeners"][1]["name"], "secure");
    assert_eq!(gw["status"]["listeners"][1]["attachedRoutes"], 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("tls.key"),
        "key material in check output"
    );
    for route in &items[2..] {
        assert_eq!(route["status"]["parents"][0]["controllerName"], "sniway.io/gateway-controller");
    }
}

#[test]
fn check_names_the_file_object_and_field_of_an_invalid_manifest() {
    let dir = TempDir::new("invalid");
    let file = dir.write(
        "bad.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata:\n  name: upper\nspec:\n  hostnames: [\"Foo.Example.com\"]\n  rules:\n  - backendRefs:\n    - name: foo\n      port: 443\n",
    );
    let out = Command::new(bin()).args(["check", "-f"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("upper"), "{err}");
    assert!(err.contains("spec.hostnames[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_anything_to_serve_waits_and_serves_once_a_listener_appears() {
    let http_only = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: web\nspec:\n  gatewayClassName: x\n  listeners:\n  - name: http\n    protocol: HTTP\n    port: 80\n";
    let mut gw = Gateway::start(http_only, 80, &[]);
    let log =
        gw.log_when(|l| l.contains("nothing to serve yet") && l.contains("no HTTP data plane"));
    assert_eq!(log.matches("nothing to serve yet").count(), 1, "{log}");
    assert!(log.contains("not served; sniway has no HTTP data plane"), "{log}");
    assert_eq!(gw.get("/readyz").0, 200, "nothing to bind: ready");

    // A listener appears in the file: the gateway reloads and serves it.
    let backend = name_backend("app").await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("app", "gw", &["app.example.com"], &[("app", 1)]),
        service("app", 443, backend),
    ]
    .concat();
    std::fs::write(&gw.file, manifests).unwrap();
    let reloaded = gw.wait_event("reloaded");
    assert_eq!(reloaded["reloaded"]["result"], "success", "{reloaded}");
    let addr: std::net::SocketAddr = reloaded["reloaded"]["sockets"][0]["bound"]
        .as_str()
        .unwrap_or_else(|| panic!("not bound: {reloaded}"))
        .parse()
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(&Tls::new().client_hello("app.example.com")).await.unwrap();
    let (got, _) = read_all_until_closed(&mut s, std::time::Duration::from_secs(10)).await;
    assert_eq!(got, b"app");
    assert_eq!(gw.log().matches("nothing to serve yet").count(), 1, "said once");
}

#[test]
fn demo_shows_each_route_reaching_its_backend() {
    // The demo listens on its documented fixed ports (8443, 9441, 9442, 9480): in a network
    // namespace of its own, so nothing else on the machine can hold them.
    let out = in_own_network(bin()).args(["demo", "--once"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("foo answered foo.example.com"), "{stdout}");
    assert!(stdout.contains("bar answered bar.example.com"), "{stdout}");
    let secure = stdout.lines().find(|l| l.trim_start().starts_with("secure.example.com")).unwrap();
    assert!(secure.contains("plain answered over plain TCP"), "{stdout}");
    assert!(secure.contains("CN=secure.example.com"), "{stdout}");
    assert!(stdout.contains("closed by the gateway"), "{stdout}");
    assert!(stdout.contains("--connect-to foo.example.com:8443:127.0.0.1:8443"), "{stdout}");
    // The `check` command it suggests works as printed, from where the demo ran: no `sniway` on
    // the PATH is assumed.
    let check = stdout.lines().find(|l| l.contains(" check -f ")).expect("a check command");
    let words: Vec<&str> = check.split_whitespace().take_while(|w| *w != "#").collect();
    assert_eq!(words[1..3], ["check", "-f"], "{check}");
    let run = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(run.status.success(), "{check}: {}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("secure.example.com"), "{check}");
}

/// Runs `sniway check -o json` with `args` and returns the parsed List.
fn check_json(args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["check", "-o", "json"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn condition<'a>(conditions: &'a serde_json::Value, ty: &str) -> &'a serde_json::Value {
    conditions.as_array().unwrap().iter().find(|c| c["type"] == ty).unwrap()
}

#[test]
fn check_reads_manifests_from_stdin_with_the_given_namespace() {
    let text = std::fs::read_to_string(repo_file("examples/fsm-passthrough/gateway.yaml")).unwrap()
        + "---\n"
        + &std::fs::read_to_string(repo_file("examples/fsm-passthrough/tcp-route.yaml")).unwrap();
    let list = check_json(&["-n", "httpbin", "-f", "-"], Some(&text));
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["metadata"]["namespace"] == "httpbin"));
    let route = &items[1];
    assert_eq!(route["status"]["parents"][0]["parentRef"]["port"], 8000);
    assert_eq!(
        condition(&route["status"]["parents"][0]["conditions"], "Accepted")["status"],
        "True"
    );
}

#[test]
fn every_bundled_example_loads_and_every_route_is_accepted_with_resolved_refs() {
    for dir in [
        "examples/demo",
        "examples/fsm-passthrough",
        "examples/tlsroute-guide",
        "examples/tls-routing",
    ] {
        // Not bound here: the examples' ports (8443, 443) may be in use on this machine.
        let list = check_json(&["--no-bind-check", "-f", &repo_file(dir)], None);
        let items = list["items"].as_array().unwrap();
        assert!(items.iter().any(|i| i["kind"] == "TLSRoute"), "{dir}: no route");
        for item in items {
            let what = format!("{dir}: {} {}", item["kind"], item["metadata"]["name"]);
            if item["kind"] == "GatewayClass" {
                assert_eq!(
                    condition(&item["status"]["conditions"], "Accepted")["status"],
                    "True",
                    "{what}"
                );
                continue;
            }
            if item["kind"] == "Gateway" {
                assert_eq!(
                    condition(&item["status"]["conditions"], "Programmed")["status"],
                    "True",
                    "{what}"
                );
                continue;
            }
            let parents = item["status"]["parents"].as_array().unwrap();
            assert!(!parents.is_empty(), "{what}: no parent status");
            for p in parents {
                assert_eq!(condition(&p["conditions"], "Accepted")["status"], "True", "{what}");
                assert_eq!(condition(&p["conditions"], "ResolvedRefs")["status"], "True", "{what}");
            }
        }
    }
}

#[test]
fn check_wide_prints_gateway_route_and_backend_tables() {
    let out = Command::new(bin())
        .args(["check", "--no-bind-check", "-o", "wide", "-f"])
        .arg(repo_file("examples/demo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE   NAME ") && lines[0].ends_with("PROGRAMMED   LISTENERS"),
        "{text}"
    );
    let gw = lines.iter().find(|l| l.contains("demo-gateway")).unwrap();
    assert!(gw.contains("127.0.0.1"), "{text}");
    assert!(gw.contains("tls:8443/Passthrough[Accepted=True,Programmed=True]"), "{text}");
    assert!(gw.contains("secure:8443/Terminate[Accepted=True,Programmed=True]"), "{text}");
    let header = lines.iter().find(|l| l.contains("HOSTNAMES")).unwrap();
    let backends_col = header.find("BACKENDS").unwrap();
    let foo = lines.iter().find(|l| l.contains(" foo.example.com ")).unwrap();
    assert_eq!(&foo[backends_col..backends_col + 4], "defa", "aligned under BACKENDS: {text}");
    assert!(foo.contains("(1)=127.0.0.1:9441"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "key material in check output");
}

#[test]
fn check_reports_a_port_held_by_another_process_as_port_unavailable() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = TempDir::new("busy");
    let file = dir.write("gw.yaml", &passthrough_gateway("busy", port));
    let list = check_json(&["--bind-address", "127.0.0.1", "-f", file.to_str().unwrap()], None);
    let gw = &list["items"][0];
    let listener = &gw["status"]["listeners"][0];
    let accepted = condition(&listener["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "PortUnavailable");
    let msg = accepted["message"].as_str().unwrap();
    assert!(msg.starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")), "{msg}");
    assert_eq!(condition(&listener["conditions"], "Programmed")["reason"], "Pending");
    assert_eq!(condition(&gw["status"]["conditions"], "Programmed")["reason"], "Pending");
    assert_eq!(gw["status"]["addresses"], serde_json::json!([]));
    drop(held);
    let list = check_json(&["--bind-address", "127.0.0.1", "-f", file.to_str().unwrap()], None);
    let listener = &list["items"][0]["status"]["listeners"][0];
    assert_eq!(condition(&listener["conditions"], "Programmed")["status"], "True");
}

#[test]
fn check_shows_backend_policy_status_beside_listener_policies() {
    let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sniway
  listeners:
  - {name: tls, protocol: TLS, port: 443, tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [app.example.com]
  rules:
  - backendRefs: [{name: app, port: 443, weight: 100}, {name: app-backup, port: 443, weight: 0}]
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec: {clusterIP: 127.0.0.1, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: app-backup}
spec: {clusterIP: 127.0.0.2, ports: [{port: 443}]}
---
apiVersion: sniway.io/v1alpha1
kind: BackendPolicy
metadata: {name: app-backup}
spec:
  targetRefs: [{group: \"\", kind: Service, name: app-backup}]
  fallback: true
---
apiVersion: sniway.io/v1alpha1
kind: BackendPolicy
metadata: {name: nowhere}
spec:
  targetRefs: [{group: \"\", kind: Service, name: missing}]
  maxConnections: 10
---
apiVersion: sniway.io/v1alpha1
kind: ListenerPolicy
metadata: {name: edge}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  noSni: {action: Alert}
";
    let list = check_json(&["--no-bind-check", "-f", "-"], Some(text));
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Gateway", "TLSRoute", "ListenerPolicy", "BackendPolicy", "BackendPolicy"]);
    let ancestor = &items[3]["status"]["ancestors"][0];
    assert_eq!(ancestor["ancestorRef"]["kind"], "Gateway");
    assert_eq!(ancestor["ancestorRef"]["name"], "gw");
    assert_eq!(condition(&ancestor["conditions"], "Accepted")["reason"], "Accepted");
    let missing = &items[4]["status"]["ancestors"][0];
    assert_eq!(missing["ancestorRef"]["kind"], "Service");
    assert_eq!(condition(&missing["conditions"], "Accepted")["reason"], "TargetNotFound");

    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["check", "--no-bind-check", "-o", "wide", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let wide = String::from_utf8_lossy(&out.stdout);
    assert!(
        wide.lines()
            .any(|l| l.contains("TARGETS") && l.contains("ANCESTORS") && l.ends_with("ACCEPTED")),
        "{wide}"
    );
    let row = wide.lines().find(|l| l.contains(" app-backup ")).unwrap();
    assert!(row.contains("Service/app-backup") && row.contains("Gateway/default/gw"), "{wide}");
    assert!(row.ends_with("True(Accepted)"), "{wide}");
}
