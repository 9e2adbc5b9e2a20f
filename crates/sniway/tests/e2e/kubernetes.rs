//! `sniway controller --serve` and `sniway dataplane` as a user runs them outside a cluster:
//! the real binary, a kubeconfig pointing at a simulated API server (`sniway_testkit::apiserver`,
//! the list/watch, apply and status protocol of a real one), objects applied as kubectl would,
//! and real connections through the listeners.

use std::time::Duration;

use serde_json::Value;
use sniway_testkit::apiserver::ApiServer;

use crate::support::*;

const GW: &str = "gateway.networking.k8s.io/v1";

/// Applies every document of `yaml` in namespace `default` (cluster-scoped kinds keep none).
fn kubectl_apply(server: &ApiServer, yaml: &str) {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let mut v: Value = serde::Deserialize::deserialize(doc).expect("a YAML document");
        if v.is_null() {
            continue;
        }
        let cluster_scoped = matches!(v["kind"].as_str(), Some("GatewayClass" | "Namespace"));
        if !cluster_scoped && v["metadata"]["namespace"].is_null() {
            v["metadata"]["namespace"] = "default".into();
        }
        server.apply(v);
    }
}

const CLASS: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: sniway
spec:
  controllerName: sniway.io/gateway-controller
"#;

/// `gateway` (one of `passthrough_gateway`'s) with `spec.addresses: [ip]`.
fn with_address(gateway: &str, ip: &str) -> String {
    gateway.replace(
        "spec:\n  gatewayClassName",
        &format!("spec:\n  addresses:\n  - type: IPAddress\n    value: {ip}\n  gatewayClassName"),
    )
}

fn condition<'a>(conditions: &'a Value, ty: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == ty)
}

fn is_true(conditions: &Value, ty: &str) -> bool {
    condition(conditions, ty).is_some_and(|c| c["status"] == "True")
}

/// The `supportedFeatures` names of the GatewayClass `sniway`, once it is Accepted.
async fn accepted_class_features(server: &ApiServer) -> Vec<String> {
    let class = server
        .wait_for_object(GW, "GatewayClass", None, "sniway", |o| {
            is_true(&o["status"]["conditions"], "Accepted")
        })
        .await
        .expect("GatewayClass accepted");
    let features = class["status"]["supportedFeatures"].as_array().expect("supportedFeatures");
    features.iter().filter_map(|f| f["name"].as_str().map(String::from)).collect()
}

/// The name a connection for `sni` reached, or "" when it was refused.
async fn reach(gw: &Gateway, tls: &Tls, sni: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&tls.client_hello(sni)).await.unwrap();
    let (got, closed) = read_all_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "connection left open");
    String::from_utf8(got).unwrap()
}

/// `sniway controller --serve` on 127.0.0.1 against `server`, its Lease in `default`, plus
/// `extra`.
fn serve_args(server: &ApiServer, extra: &[&str]) -> Vec<String> {
    let kubeconfig = server.kubeconfig().display().to_string();
    [
        "controller",
        "--serve",
        "--kubeconfig",
        &kubeconfig,
        "--bind-address",
        "127.0.0.1",
        "--admin-address",
        "127.0.0.1:0",
        "--lease-namespace",
        "default",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

async fn start(args: Vec<String>, port: u16) -> Gateway {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Gateway::start_command(&args, port)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_serves_what_the_cluster_holds_and_writes_its_status() {
    let server = ApiServer::start().await.unwrap();
    let tls = Tls::new();
    let web = name_backend("web").await;
    let api = name_backend("api").await;
    let port = free_port();
    kubectl_apply(
        &server,
        &[
            CLASS,
            &passthrough_gateway("gw", port),
            &route("web", "gw", &["web.example.com"], &[("web", 1)]),
            &service("web", 443, web),
            &with_address(&passthrough_gateway("static", free_port()), "192.0.2.10"),
        ]
        .concat(),
    );
    let mut gw = start(serve_args(&server, &["--identity", "e2e-controller"]), port).await;

    assert_eq!(reach(&gw, &tls, "web.example.com").await, "web");
    assert_eq!(reach(&gw, &tls, "api.example.com").await, "", "no route yet");

    // Status, written by the leader: the class with its features, the Gateway with the address
    // it is reached at, the route's parent.
    let features = accepted_class_features(&server).await;
    for f in ["Gateway", "ReferenceGrant", "TLSRoute", "TLSRouteModeMixed", "TLSRouteModeTerminate"]
    {
        assert!(features.iter().any(|x| x == f), "{f} missing from {features:?}");
    }
    assert!(
        !features.iter().any(|x| x == "GatewayInfrastructurePropagation"),
        "--serve provisions nothing to carry infrastructure to: {features:?}"
    );
    let gateway = server
        .wait_for_object(GW, "Gateway", Some("default"), "gw", |o| {
            is_true(&o["status"]["conditions"], "Programmed")
        })
        .await
        .expect("Gateway programmed");
    assert!(is_true(&gateway["status"]["conditions"], "Accepted"));
    assert_eq!(gateway["status"]["addresses"][0]["value"], "127.0.0.1");
    assert_eq!(gateway["status"]["listeners"][0]["attachedRoutes"], 1);
    // --serve binds a Gateway's spec.addresses here: one no interface holds is not usable.
    let unusable = server
        .wait_for_object(GW, "Gateway", Some("default"), "static", |o| {
            condition(&o["status"]["conditions"], "Programmed")
                .is_some_and(|c| c["status"] == "False")
        })
        .await
        .expect("the static-address Gateway's status");
    assert_eq!(
        condition(&unusable["status"]["conditions"], "Programmed").unwrap()["reason"],
        "AddressNotUsable"
    );

    let web_route = server
        .wait_for_object(GW, "TLSRoute", Some("default"), "web", |o| {
            o["status"]["parents"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| is_true(&p["conditions"], "ResolvedRefs")))
        })
        .await
        .expect("route status");
    assert_eq!(web_route["status"]["parents"][0]["controllerName"], "sniway.io/gateway-controller");
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("default"), "sniway-controller");
    assert_eq!(lease.expect("a Lease")["spec"]["holderIdentity"], "e2e-controller");

    // A route applied later is served after the next compile, without a restart.
    kubectl_apply(
        &server,
        &[route("api", "gw", &["api.example.com"], &[("api", 1)]), service("api", 443, api)]
            .concat(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reach(&gw, &tls, "api.example.com").await != "api" {
        assert!(std::time::Instant::now() < deadline, "the new route was never served");
        let _ = tokio::task::block_in_place(|| gw.wait_event("reloaded"));
    }

    // SIGTERM: the Lease is released (another replica may lead at once), then the process
    // drains and exits.
    gw.signal("TERM");
    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "{status:?}\n{}", gw.log());
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("default"), "sniway-controller");
    let holder = &lease.expect("a Lease")["spec"]["holderIdentity"];
    assert!(holder.is_null() || holder == "", "lease still held: {holder}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_plane_serves_its_gateway_only_and_writes_nothing() {
    let server = ApiServer::start().await.unwrap();
    let tls = Tls::new();
    let web = name_backend("web").await;
    let other = name_backend("other").await;
    let port = free_port();
    let other_port = free_port();
    kubectl_apply(
        &server,
        &[
            CLASS,
            // The address is the provisioned Service's, never this host's: the data plane binds
            // --bind-address all the same.
            &with_address(&passthrough_gateway("gw", port), "192.0.2.10"),
            &route("web", "gw", &["web.example.com"], &[("web", 1)]),
            &service("web", 443, web),
            &passthrough_gateway("other", other_port),
            &route("other", "other", &["other.example.com"], &[("other", 1)]),
            &service("other", 443, other),
        ]
        .concat(),
    );
    let kubeconfig = server.kubeconfig().display().to_string();
    let mut gw = start(
        [
            "dataplane",
            "--gateway",
            "default/gw",
            "--kubeconfig",
            &kubeconfig,
            "--bind-address",
            "127.0.0.1",
            "--admin-address",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec(),
        port,
    )
    .await;
    let ready = tokio::task::block_in_place(|| gw.wait_event("ready"));
    let sockets = ready["ready"]["sockets"].as_array().unwrap();
    assert_eq!(sockets.len(), 1, "only its own Gateway's listener: {sockets:?}");

    assert_eq!(reach(&gw, &tls, "web.example.com").await, "web");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", other_port)).await.is_err(),
        "the other Gateway's port is not served here"
    );
    let (code, _) = gw.get("/readyz");
    assert_eq!(code, 200);
    assert!(server.writes().is_empty(), "a data plane wrote: {:?}", server.writes());
    // It reads its own Gateway only: by name, in its namespace.
    let gateway_reads: Vec<_> =
        server.requests().into_iter().filter(|r| r.path.ends_with("/gateways")).collect();
    assert!(!gateway_reads.is_empty());
    for r in &gateway_reads {
        assert_eq!(r.path, "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways");
        assert!(r.query.contains("fieldSelector=metadata.name%3Dgw"), "{}", r.query);
    }

    gw.signal("TERM");
    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "{status:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_provisions_a_data_plane_and_programmed_waits_for_its_replicas() {
    let server = ApiServer::start().await.unwrap();
    let web = name_backend("web").await;
    kubectl_apply(
        &server,
        &[
            CLASS,
            &passthrough_gateway("gw", 8443),
            &route("web", "gw", &["web.example.com"], &[("web", 1)]),
            &service("web", 443, web),
        ]
        .concat(),
    );
    let kubeconfig = server.kubeconfig().display().to_string();
    let mut ctl = start(
        [
            "controller",
            "--kubeconfig",
            &kubeconfig,
            "--admin-address",
            "127.0.0.1:0",
            "--dataplane-image",
            "registry.example.com/sniway:test",
            "--service-type",
            "ClusterIP",
            "--dataplane-arg=--idle-timeout=10m",
        ]
        .map(String::from)
        .to_vec(),
        8443,
    )
    .await;
    let ready = tokio::task::block_in_place(|| ctl.wait_event("ready"));
    assert_eq!(ready["ready"]["sockets"], serde_json::json!([]), "the controller binds nothing");

    // The data plane: a Deployment running `sniway dataplane` for this Gateway, and a Service
    // whose port is the listener's.
    let deployment = server
        .wait_for_object("apps/v1", "Deployment", Some("default"), "gw-sniway", |_| true)
        .await
        .expect("a Deployment for the Gateway");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/sniway:test");
    let args: Vec<&str> =
        container["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.windows(2).any(|w| w == ["--gateway", "default/gw"]), "{args:?}");
    assert!(args.contains(&"--idle-timeout=10m"), "{args:?}");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "Gateway");
    let svc = server
        .wait_for_object("v1", "Service", Some("default"), "gw-sniway", |_| true)
        .await
        .expect("a Service for the Gateway");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8443);
    assert_eq!(svc["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"], "gw");

    // Provisioning carries spec.infrastructure to the objects it makes, and says so.
    let features = accepted_class_features(&server).await;
    assert!(features.iter().any(|x| x == "GatewayInfrastructurePropagation"), "{features:?}");
    assert!(features.is_sorted(), "{features:?}");

    // No kubelet has started a pod: Programmed says so.
    let pending = server
        .wait_for_object(GW, "Gateway", Some("default"), "gw", |o| {
            condition(&o["status"]["conditions"], "Programmed")
                .is_some_and(|c| c["status"] == "False")
        })
        .await
        .expect("Gateway not programmed while no replica is available");
    assert_eq!(
        condition(&pending["status"]["conditions"], "Programmed").unwrap()["reason"],
        "Pending"
    );
    // The controller's own /status shows what it writes, data plane verdict included.
    let (code, body) = ctl.get("/status");
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let shown = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "Gateway" && i["metadata"]["name"] == "gw")
        .expect("the Gateway in /status");
    assert_eq!(
        condition(&shown["status"]["conditions"], "Programmed").unwrap()["reason"],
        "Pending"
    );

    // kube-controller-manager's part: a replica becomes available, the Service gets its IP.
    let mut d = server.get("apps/v1", "Deployment", Some("default"), "gw-sniway").unwrap();
    d["status"] = serde_json::json!({"replicas": 1, "availableReplicas": 1, "readyReplicas": 1});
    server.apply(d);
    let mut s = server.get("v1", "Service", Some("default"), "gw-sniway").unwrap();
    s["spec"]["clusterIP"] = "10.96.0.10".into();
    s["spec"]["clusterIPs"] = serde_json::json!(["10.96.0.10"]);
    server.apply(s);
    let programmed = server
        .wait_for_object(GW, "Gateway", Some("default"), "gw", |o| {
            is_true(&o["status"]["conditions"], "Programmed")
        })
        .await
        .expect("Gateway programmed once its data plane is available");
    assert_eq!(programmed["status"]["addresses"][0]["value"], "10.96.0.10");

    // Its own metrics: compiles, status writes and data planes applied. A pass's report is
    // counted once the pass ends, just after its writes are visible: wait for it, bounded.
    let value = |metrics: &str, series: &str| -> Option<f64> {
        let line = metrics.lines().find(|l| l.starts_with(series))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let success = "sniway_controller_status_writes_total{result=\"success\"} ";
    let applied = "sniway_controller_provision_applies_total{result=\"success\"} ";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (code, metrics) = ctl.get("/metrics");
        assert_eq!(code, 200);
        let counted = |series| value(&metrics, series).is_some_and(|v| v >= 1.0);
        if counted(success) && counted(applied) {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "writes not counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(value(&metrics, "sniway_controller_compiles_total ").is_some_and(|v| v >= 1.0));
    let applies = "sniway_controller_provision_applies_total";
    assert!(
        value(&metrics, &format!("{applies}{{result=\"success\"}} ")).is_some_and(|v| v >= 1.0)
    );
    assert_eq!(value(&metrics, &format!("{applies}{{result=\"failure\"}} ")), Some(0.0));

    // Outside a pod, with no sniway-system namespace (deploy/ not applied), the Lease is in
    // `default`.
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("default"), "sniway-controller");
    assert!(lease.is_some(), "no Lease in default");

    ctl.signal("TERM");
    let status = tokio::task::block_in_place(|| ctl.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "{status:?}\n{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fsm_guides_gateway_and_route_are_served_from_the_cluster() {
    // The guide's objects as an API server with the experimental CRDs serves them: its v1alpha2
    // route (no hostnames, attached by port) read back as v1; its class `fsm` created with
    // sniway's controller name. The backend is an external host (a dotted name matching no
    // Service), here a loopback address instead of httpbin.org.
    let server = ApiServer::start().await.unwrap();
    let tls = Tls::new();
    let backend = name_backend("httpbin").await;
    let port = free_port();
    kubectl_apply(
        &server,
        &format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: fsm
spec:
  controllerName: sniway.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: simple-fsm-gateway
  namespace: httpbin
spec:
  gatewayClassName: fsm
  listeners:
  - protocol: TLS
    port: {port}
    name: foo
    tls:
      mode: Passthrough
    allowedRoutes:
      namespaces:
        from: Same
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: tcp-route
  namespace: httpbin
spec:
  parentRefs:
  - name: simple-fsm-gateway
    port: {port}
  rules:
  - backendRefs:
    - name: {ip}
      port: {backend_port}
"#,
            ip = backend.ip(),
            backend_port = backend.port()
        ),
    );
    let mut gw = start(serve_args(&server, &[]), port).await;
    // No hostnames: every SNI the listener allows.
    assert_eq!(reach(&gw, &tls, "httpbin.org").await, "httpbin");
    assert_eq!(reach(&gw, &tls, "anything.example").await, "httpbin");
    let route = server
        .wait_for_object(GW, "TLSRoute", Some("httpbin"), "tcp-route", |o| {
            o["status"]["parents"].as_array().is_some_and(|p| !p.is_empty())
        })
        .await
        .expect("route status");
    let parent = &route["status"]["parents"][0];
    assert!(is_true(&parent["conditions"], "Accepted"), "{parent}");
    assert!(is_true(&parent["conditions"], "ResolvedRefs"), "{parent}");
    assert_eq!(parent["parentRef"]["port"], port);
    gw.signal("TERM");
    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "{status:?}\n{}", gw.log());
}
