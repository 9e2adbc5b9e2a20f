//! The controller against the simulated API server, through a real kube Client: watching,
//! compiling, status writes (exact, from the server's write log), leader election, recovery.

mod common;

use common::*;

use std::time::Duration;

use serde_json::{Value, json};
use sniway_compile::{Compiled, table_summary};
use sniway_k8s::controller::{ControllerOptions, run};
use sniway_k8s::status::{FIELD_MANAGER, WriteReport};
use sniway_testkit::apiserver::{ApiServer, WAIT_LIMIT, Write};
use tokio::sync::{mpsc, oneshot};

const LEASE: &str = "coordination.k8s.io/v1";
const CLASS_STATUS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/sniway/status";
const GW_STATUS: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways/gw/status";
const ROUTE_STATUS: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/apps/tlsroutes/web/status";
const EC_CERT: &str = include_str!("../../sniway-compile/tests/testdata/certs/ec256-pkcs8.crt");
const EC_KEY: &str = include_str!("../../sniway-compile/tests/testdata/certs/ec256-pkcs8.key");
const RSA_CERT: &str = include_str!("../../sniway-compile/tests/testdata/certs/rsa-pkcs8.crt");
const RSA_KEY: &str = include_str!("../../sniway-compile/tests/testdata/certs/rsa-pkcs8.key");

fn gateway(name: &str, class: &str) -> Value {
    json!({
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"gatewayClassName": class, "listeners": [{
            "name": "tls", "protocol": "TLS", "port": 8443,
            "tls": {"mode": "Passthrough"},
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }]},
    })
}

fn terminating_gateway(secret: &str) -> Value {
    json!({
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "sniway", "listeners": [{
            "name": "tls", "protocol": "TLS", "port": 8443,
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}]},
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }]},
    })
}

fn secret(name: &str, cert: &str, key: &str) -> Value {
    use base64::Engine as _;
    let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "infra"},
        "data": {"tls.crt": encode(cert.as_bytes()), "tls.key": encode(key.as_bytes())},
    })
}

fn route(parents: Value, hostname: &str, backend_ns: Option<&str>) -> Value {
    let mut backend = json!({"name": "api", "port": 443});
    if let Some(ns) = backend_ns {
        backend["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": GW, "kind": "TLSRoute",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"parentRefs": parents, "hostnames": [hostname], "rules": [{"backendRefs": [backend]}]},
    })
}

fn our_parent() -> Value {
    json!([{"name": "gw", "namespace": "infra"}])
}

fn service(ns: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": ns},
        "spec": {"clusterIP": "10.0.0.10", "ports": [{"port": 443}]},
    })
}

fn grant() -> Value {
    json!({
        "apiVersion": GW, "kind": "ReferenceGrant",
        "metadata": {"name": "apps-to-backend", "namespace": "backend"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "TLSRoute", "namespace": "apps"}],
            "to": [{"group": "", "kind": "Service"}],
        },
    })
}

struct Running {
    /// Each compile's table summary.
    tables: mpsc::UnboundedReceiver<Value>,
    reports: mpsc::UnboundedReceiver<WriteReport>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(server: &ApiServer, mut opts: ControllerOptions) -> Running {
        let client = server.client().await.expect("client");
        let (tables_tx, tables) = mpsc::unbounded_channel();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        opts.reports = Some(reports_tx);
        opts.quiet = Duration::from_millis(20);
        opts.max_delay = Duration::from_millis(200);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client,
            opts,
            move |c: &mut Compiled| {
                let _ = tables_tx.send(table_summary(&c.table));
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Running { tables, reports, stop: Some(stop), task }
    }

    /// The next compile whose table summary satisfies `pred`.
    async fn table_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT_LIMIT, async {
            while let Some(c) = self.tables.recv().await {
                if pred(&c) {
                    return Some(c);
                }
            }
            None
        })
        .await;
        found.ok().flatten().expect("a compile satisfying the condition")
    }

    /// The next status pass that wrote nothing and found `unchanged` statuses as desired.
    async fn quiet_pass(&mut self, unchanged: usize) -> WriteReport {
        let found = tokio::time::timeout(WAIT_LIMIT, async {
            while let Some(r) = self.reports.recv().await {
                if r.written.is_empty() && r.failed.is_empty() && r.unchanged == unchanged {
                    return Some(r);
                }
            }
            None
        })
        .await;
        found.ok().flatten().expect("a status pass with nothing to write")
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(WAIT_LIMIT, self.task).await;
    }
}

fn status_writes(writes: &[Write]) -> Vec<(String, String)> {
    writes
        .iter()
        .filter(|w| w.path.ends_with("/status"))
        .map(|w| (w.method.clone(), w.path.clone()))
        .collect()
}

fn summary_has(summary: &Value, needle: &str) -> bool {
    summary.to_string().contains(needle)
}

fn route_parent(server: &ApiServer, controller: &str) -> Value {
    let r = server.get(GW, "TLSRoute", Some("apps"), "web").unwrap_or(Value::Null);
    r["status"]["parents"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["controllerName"] == controller).cloned())
        .unwrap_or(Value::Null)
}

fn seed_basic(server: &ApiServer) {
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    for ns in ["infra", "apps", "backend"] {
        server.apply(namespace(ns));
    }
    server.apply(gateway("gw", "sniway"));
    server.apply(route(our_parent(), "web.example.com", None));
    server.apply(service("apps"));
}

#[tokio::test]
async fn the_initial_list_writes_each_status_once_and_nothing_when_nothing_changed() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "web.example.com")).await;
    let writes = server.wait_for_writes(3).await;
    assert_eq!(
        status_writes(&writes),
        [
            ("PATCH".to_string(), CLASS_STATUS.to_string()),
            ("PATCH".to_string(), GW_STATUS.to_string()),
            ("PUT".to_string(), ROUTE_STATUS.to_string())
        ]
    );
    assert_eq!(condition(&writes[0].body["status"]["conditions"], "Accepted")["status"], "True");
    let gw = &writes[1];
    assert_eq!(gw.content_type, "application/apply-patch+yaml");
    assert_eq!(gw.field_manager.as_deref(), Some(FIELD_MANAGER));
    assert!(gw.force);
    assert_eq!(gw.body["apiVersion"], GW);
    assert_eq!(gw.body["kind"], "Gateway");
    assert_eq!(condition(&gw.body["status"]["conditions"], "Accepted")["status"], "True");
    assert_eq!(gw.body["status"]["listeners"][0]["attachedRoutes"], 1);

    let route_write = &writes[2];
    assert_eq!(route_write.content_type, "application/json");
    let parents = route_write.body["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0]["controllerName"], "sniway.io/gateway-controller");
    assert_eq!(condition(&parents[0]["conditions"], "ResolvedRefs")["status"], "True");

    // Our own writes come back through the watch: a pass that finds both as desired.
    c.quiet_pass(3).await;
    // A change no status depends on (a label) recompiles and writes nothing.
    let mut labelled = service("apps");
    labelled["metadata"]["labels"] = json!({"tier": "api"});
    server.apply(labelled);
    c.quiet_pass(3).await;
    assert_eq!(server.writes().len(), 3, "{:#?}", server.writes());

    // A spec change: the API server bumps metadata.generation, and the status observes it.
    let mut moved = gateway("gw", "sniway");
    moved["spec"]["listeners"][0]["port"] = json!(9443);
    server.apply(moved);
    let writes = server.wait_for_writes(4).await;
    assert_eq!(status_writes(&writes[3..]), [("PATCH".to_string(), GW_STATUS.to_string())]);
    let conds = &writes[3].body["status"]["conditions"];
    assert_eq!(condition(conds, "Accepted")["observedGeneration"], 2);
    c.stop().await;
}

#[tokio::test]
async fn a_route_listed_before_its_backend_resolves_once_the_service_arrives() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    for ns in ["infra", "apps"] {
        server.apply(namespace(ns));
    }
    server.apply(gateway("gw", "sniway"));
    server.apply(route(our_parent(), "web.example.com", None));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    server.wait_for_writes(3).await;
    let before = route_parent(&server, "sniway.io/gateway-controller");
    assert_eq!(condition(&before["conditions"], "ResolvedRefs")["status"], "False");
    assert_eq!(condition(&before["conditions"], "ResolvedRefs")["reason"], "BackendNotFound");
    c.quiet_pass(3).await;

    server.apply(service("apps"));
    let writes = server.wait_for_writes(4).await;
    assert_eq!(status_writes(&writes[3..]), [("PUT".to_string(), ROUTE_STATUS.to_string())]);
    let after = route_parent(&server, "sniway.io/gateway-controller");
    assert_eq!(condition(&after["conditions"], "ResolvedRefs")["status"], "True");
    // Accepted did not change: its transition time is kept.
    assert_eq!(
        condition(&after["conditions"], "Accepted")["lastTransitionTime"],
        condition(&before["conditions"], "Accepted")["lastTransitionTime"]
    );
    c.quiet_pass(3).await;
    assert_eq!(server.writes().len(), 4);
    c.stop().await;
}

#[tokio::test]
async fn a_reference_grant_deleted_later_refuses_the_cross_namespace_backend() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    for ns in ["infra", "apps", "backend"] {
        server.apply(namespace(ns));
    }
    server.apply(gateway("gw", "sniway"));
    server.apply(service("backend"));
    server.apply(grant());
    server.apply(route(our_parent(), "web.example.com", Some("backend")));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "10.0.0.10")).await;
    server.wait_for_writes(3).await;
    let granted = route_parent(&server, "sniway.io/gateway-controller");
    assert_eq!(condition(&granted["conditions"], "ResolvedRefs")["status"], "True");

    server.remove(GW, "ReferenceGrant", Some("backend"), "apps-to-backend");
    c.table_where(|s| !summary_has(s, "10.0.0.10")).await;
    server.wait_for_writes(4).await;
    let refused = route_parent(&server, "sniway.io/gateway-controller");
    assert_eq!(condition(&refused["conditions"], "ResolvedRefs")["reason"], "RefNotPermitted");
    c.stop().await;
}

#[tokio::test]
async fn a_referenced_secret_is_watched_by_name_and_a_rotation_is_served() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    for ns in ["infra", "apps"] {
        server.apply(namespace(ns));
    }
    server.apply(secret("cert", EC_CERT, EC_KEY));
    server.apply(secret("unrelated", RSA_CERT, RSA_KEY));
    server.apply(terminating_gateway("cert"));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "ec8.example.com")).await;
    assert_eq!(server.open_watches("secrets"), [Some("metadata.name=cert".to_string())]);

    server.apply(secret("cert", RSA_CERT, RSA_KEY));
    c.table_where(|s| summary_has(s, "rsa8.example.com") && !summary_has(s, "ec8.example.com"))
        .await;

    // The listener moves to another Secret: its watch starts, the old one stops.
    server.apply(secret("next", EC_CERT, EC_KEY));
    server.apply(terminating_gateway("next"));
    c.table_where(|s| summary_has(s, "ec8.example.com")).await;
    assert!(server.wait_for_watches("secrets", 1).await);
    let watched = server.open_watches("secrets");
    assert_eq!(watched, [Some("metadata.name=next".to_string())]);
    c.stop().await;
}

#[tokio::test]
async fn our_route_parents_are_written_beside_another_controllers_untouched() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    server.apply(class("other-class", "example.com/other"));
    server.apply(gateway("theirs", "other-class"));
    let foreign = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs", "namespace": "infra"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                        "observedGeneration": 1, "lastTransitionTime": "2020-01-01T00:00:00Z"}],
    });
    let mut r = route(
        json!([{"name": "theirs", "namespace": "infra"}, {"name": "gw", "namespace": "infra"}]),
        "web.example.com",
        None,
    );
    r["status"] = json!({"parents": [foreign.clone()]});
    server.apply(r);
    // One conflict on the first status write: read again and retry.
    server.fail_next_with(ROUTE_STATUS, 409, 1);
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.quiet_pass(3).await;
    let route_writes: Vec<Write> =
        server.writes().into_iter().filter(|w| w.path == ROUTE_STATUS).collect();
    let codes: Vec<u16> = route_writes.iter().map(|w| w.code).collect();
    assert_eq!(codes, [409, 200]);
    let stored = server.get(GW, "TLSRoute", Some("apps"), "web").unwrap();
    let parents = stored["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], foreign);
    assert_eq!(parents[1]["controllerName"], "sniway.io/gateway-controller");
    assert_eq!(parents[1]["parentRef"]["name"], "gw");
    // Nothing of the other controller's is written: its class, its Gateway.
    let foreign_writes: Vec<String> = server
        .writes()
        .into_iter()
        .map(|w| w.path)
        .filter(|p| p.contains("/gatewayclasses/other-class") || p.contains("/gateways/theirs"))
        .collect();
    assert_eq!(foreign_writes, Vec::<String>::new());
    c.stop().await;
}

#[tokio::test]
async fn a_gateway_with_a_253_character_name_gets_its_status() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    server.apply(namespace("infra"));
    let name = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    assert_eq!(name.len(), 253);
    server.apply(gateway(&name, "sniway"));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    let writes = server.wait_for_writes(2).await;
    let path =
        format!("/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways/{name}/status");
    assert_eq!(
        status_writes(&writes),
        [("PATCH".to_string(), CLASS_STATUS.to_string()), ("PATCH".to_string(), path)]
    );
    let stored = server.get(GW, "Gateway", Some("infra"), &name).unwrap();
    assert_eq!(condition(&stored["status"]["conditions"], "Accepted")["status"], "True");
    c.quiet_pass(2).await;
    c.stop().await;
}

#[tokio::test]
async fn watches_recover_from_500s_ended_streams_and_expired_resource_versions() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "web.example.com")).await;
    assert!(server.wait_for_watches("tlsroutes", 1).await);

    // Ended streams: the watch resumes from its resourceVersion and misses nothing.
    server.end_watches();
    server.apply(route(our_parent(), "one.example.com", None));
    c.table_where(|s| summary_has(s, "one.example.com")).await;

    // Expired resourceVersions and a failing list: 410, re-list after two 500s.
    let list_path = "/apis/gateway.networking.k8s.io/v1/tlsroutes";
    server.fail_next(list_path, 2);
    server.expire_resource_versions();
    server.apply(route(our_parent(), "two.example.com", None));
    c.table_where(|s| summary_has(s, "two.example.com")).await;
    // The resumed watch met the two 500s, then the 410, then the watcher listed anew.
    let on_path: Vec<(bool, u16)> = server
        .requests()
        .iter()
        .filter(|r| r.path == list_path)
        .map(|r| (r.is_watch(), r.code))
        .collect();
    assert_eq!(on_path.iter().filter(|(_, code)| *code == 500).count(), 2, "{on_path:?}");
    let lists: Vec<u16> = on_path.iter().filter(|(w, _)| !w).map(|(_, c)| *c).collect();
    assert_eq!(lists, [200, 200], "{on_path:?}");
    c.stop().await;
}

#[tokio::test]
async fn no_status_is_written_without_the_lease() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    server.apply(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sniway-leader", "namespace": "infra"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "renewTime": "2099-01-01T00:00:00.000000Z"},
    }));
    let opts = ControllerOptions { lease: Some(lease_opts("b")), ..Default::default() };
    let mut c = Running::start(&server, opts).await;
    c.table_where(|s| summary_has(s, "web.example.com")).await;
    // Three reads of the Lease: at least two full attempts after the compile started.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/infra/leases/sniway-leader";
    assert!(
        server.wait_for_requests(|r| r.iter().filter(|r| r.path == lease_path).count() >= 3).await
    );
    assert_eq!(server.writes(), []);
    assert!(c.reports.try_recv().is_err());
    c.stop().await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_stops() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    let a = Running::start(
        &server,
        ControllerOptions { lease: Some(lease_opts("a")), ..Default::default() },
    )
    .await;
    let statuses = |n: usize| {
        server.wait_for_requests(move |r| {
            r.iter().filter(|r| r.path.ends_with("/status")).count() >= n
        })
    };
    assert!(statuses(3).await);
    let writes = server.writes();
    assert_eq!(
        (writes[0].method.as_str(), writes[0].code),
        ("POST", 201),
        "the Lease is created first"
    );
    let holder = |s: &ApiServer| {
        s.get(LEASE, "Lease", Some("infra"), "sniway-leader")
            .map(|l| l["spec"]["holderIdentity"].clone())
    };
    assert_eq!(holder(&server), Some(json!("a")));

    let mut b = Running::start(
        &server,
        ControllerOptions { lease: Some(lease_opts("b")), ..Default::default() },
    )
    .await;
    b.table_where(|s| summary_has(s, "web.example.com")).await;
    a.stop().await;
    // Released on shutdown: b acquires at its next attempt, and its first pass finds
    // everything as a wrote it.
    b.quiet_pass(3).await;
    assert_eq!(holder(&server), Some(json!("b")));
    assert_eq!(status_writes(&server.writes()).len(), 3);
    // The new leader writes what changes.
    server.remove("v1", "Service", Some("apps"), "api");
    assert!(statuses(4).await);
    let written = status_writes(&server.writes());
    assert_eq!(written[3..], [("PUT".to_string(), ROUTE_STATUS.to_string())]);
    b.stop().await;
    assert_eq!(holder(&server), Some(Value::Null), "released on shutdown");
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leaders_lease_expires() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    // A leader that stopped without releasing: its renewal is older than the lease duration.
    server.apply(json!({
        "apiVersion": LEASE, "kind": "Lease",
        "metadata": {"name": "sniway-leader", "namespace": "infra"},
        "spec": {"holderIdentity": "crashed", "leaseDurationSeconds": 2,
                 "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 3},
    }));
    let mut b = Running::start(
        &server,
        ControllerOptions { lease: Some(lease_opts("b")), ..Default::default() },
    )
    .await;
    b.table_where(|s| summary_has(s, "web.example.com")).await;
    let lease = server
        .wait_for_object(LEASE, "Lease", Some("infra"), "sniway-leader", |l| {
            l["spec"]["holderIdentity"] == "b"
        })
        .await
        .expect("b takes the expired lease");
    assert_eq!(lease["spec"]["leaseTransitions"], 4);
    assert!(
        server
            .wait_for_requests(|r| r.iter().filter(|r| r.path.ends_with("/status")).count() >= 2)
            .await
    );
    b.stop().await;
}

#[tokio::test]
async fn a_kind_the_api_server_does_not_serve_counts_as_empty() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    server.fail_next_with("/apis/gateway.networking.k8s.io/v1/listenersets", 404, 1_000_000);
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "web.example.com")).await;
    assert!(
        server
            .wait_for_requests(|r| r.iter().filter(|r| r.path.ends_with("/status")).count() >= 2)
            .await
    );
    c.stop().await;
}

#[tokio::test]
async fn an_httproute_counts_in_an_http_listeners_attached_routes() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    for ns in ["infra", "apps"] {
        server.apply(namespace(ns));
    }
    server.apply(json!({
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "sniway", "listeners": [{
            "name": "http", "protocol": "HTTP", "port": 8080,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }]},
    }));
    server.apply(json!({
        "apiVersion": GW, "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}],
                 "rules": [{"backendRefs": [{"name": "api", "port": 80}]}]},
    }));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    let gw = server
        .wait_for_object(GW, "Gateway", Some("infra"), "gw", |g| {
            g["status"]["listeners"][0]["attachedRoutes"] == 1
        })
        .await;
    assert!(gw.is_some(), "{:#?}", server.get(GW, "Gateway", Some("infra"), "gw"));
    assert!(server.open_watches("httproutes").len() == 1);
    c.quiet_pass(2).await;
    c.stop().await;
}

fn backend_policy() -> Value {
    json!({
        "apiVersion": "sniway.io/v1alpha1", "kind": "BackendPolicy",
        "metadata": {"name": "api-health", "namespace": "apps"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
            "healthCheck": {"active": {"type": "TLS", "tls": {
                "sni": "api.example.com", "verify": true,
                "caCertificateRefs": [{"kind": "ConfigMap", "name": "api-ca"}],
            }}},
        },
    })
}

fn accepted_of(server: &ApiServer) -> Value {
    let p = server
        .get("sniway.io/v1alpha1", "BackendPolicy", Some("apps"), "api-health")
        .unwrap_or(Value::Null);
    condition(&p["status"]["ancestors"][0]["conditions"], "Accepted").clone()
}

#[tokio::test]
async fn a_backend_policy_gets_its_status_and_its_ca_config_map_is_watched_by_name() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    server.apply(backend_policy());
    server.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unrelated", "namespace": "apps"}, "data": {"x": "y"},
    }));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "web.example.com") && summary_has(s, "api.example.com")).await;
    // The CA ConfigMap does not exist yet: Invalid, on the Gateway whose route uses the Service.
    let found = server
        .wait_for_object("sniway.io/v1alpha1", "BackendPolicy", Some("apps"), "api-health", |p| {
            condition(&p["status"]["ancestors"][0]["conditions"], "Accepted")["reason"] == "Invalid"
        })
        .await;
    assert!(found.is_some(), "{}", accepted_of(&server));
    let p = server.get("sniway.io/v1alpha1", "BackendPolicy", Some("apps"), "api-health").unwrap();
    assert_eq!(p["status"]["ancestors"][0]["ancestorRef"]["name"], "gw");
    assert_eq!(p["status"]["ancestors"][0]["ancestorRef"]["kind"], "Gateway");
    assert!(
        accepted_of(&server)["message"]
            .as_str()
            .unwrap()
            .contains("ConfigMap apps/api-ca not found")
    );
    assert!(server.wait_for_watches("configmaps", 1).await);
    assert_eq!(server.open_watches("configmaps"), [Some("metadata.name=api-ca".to_string())]);

    // It arrives: the policy is Accepted and the table's check names its CA.
    server.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "api-ca", "namespace": "apps"},
        "data": {"ca.crt": EC_CERT},
    }));
    c.table_where(|s| summary_has(s, "apps/api-ca")).await;
    let found = server
        .wait_for_object("sniway.io/v1alpha1", "BackendPolicy", Some("apps"), "api-health", |p| {
            condition(&p["status"]["ancestors"][0]["conditions"], "Accepted")["reason"]
                == "Accepted"
        })
        .await;
    assert!(found.is_some(), "{}", accepted_of(&server));
    c.stop().await;
}

#[tokio::test]
async fn a_service_import_backend_resolves_to_its_labelled_endpoint_slices() {
    let server = ApiServer::start().await.unwrap();
    seed_basic(&server);
    let mut r = route(our_parent(), "remote.example.com", None);
    r["metadata"]["name"] = json!("remote");
    r["spec"]["rules"][0]["backendRefs"] = json!([{
        "group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "api", "port": 443,
    }]);
    server.apply(r);
    server.apply(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": {"name": "api", "namespace": "apps"},
        "spec": {"type": "ClusterSetIP", "ports": [{"port": 443, "protocol": "TCP"}]},
    }));
    server.apply(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "api-remote", "namespace": "apps",
                     "labels": {"multicluster.kubernetes.io/service-name": "api"}},
        "addressType": "IPv4",
        "ports": [{"port": 9443}],
        "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": true}}],
    }));
    let mut c = Running::start(&server, ControllerOptions::default()).await;
    c.table_where(|s| summary_has(s, "remote.example.com") && summary_has(s, "10.1.2.3:9443"))
        .await;
    c.stop().await;
}
