//! The controller provisioning data planes against the simulated API server, through a real
//! kube Client. The simulated server has no garbage collector, no kube-controller-manager and no
//! kubelet: the tests play their parts (a Service's cluster IP and load balancer ingress, a
//! Deployment's available replicas).

mod common;

use common::*;

use std::time::Duration;

use serde_json::{Value, json};
use sniway_compile::Compiled;
use sniway_k8s::controller::{ControllerOptions, run};
use sniway_k8s::provision::{self, ProvisionOptions};
use sniway_k8s::provisioner::ProvisionReport;
use sniway_k8s::snapshot::SnapshotOptions;
use sniway_testkit::apiserver::{ApiServer, WAIT_LIMIT};
use tokio::sync::{mpsc, oneshot};

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const BINDING_PATH: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sniway-dataplane";

fn listener(name: &str, port: u16) -> Value {
    json!({
        "name": name, "protocol": "TLS", "port": port,
        "tls": {"mode": "Passthrough"},
        "allowedRoutes": {"namespaces": {"from": "All"}},
    })
}

fn gateway(name: &str, class: &str, listeners: Value) -> Value {
    json!({
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"gatewayClassName": class, "listeners": listeners},
    })
}

fn seed(server: &ApiServer) {
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    server.apply(class("other", "example.com/other"));
    server.apply(namespace("infra"));
    server.apply(gateway("gw", "sniway", json!([listener("tls", 8443)])));
    server.apply(gateway("theirs", "other", json!([listener("tls", 8443)])));
}

struct Running {
    compiles: mpsc::UnboundedReceiver<()>,
    reports: mpsc::UnboundedReceiver<ProvisionReport>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(server: &ApiServer, mut opts: ControllerOptions) -> Running {
        let client = server.client().await.expect("client");
        let (compiles_tx, compiles) = mpsc::unbounded_channel();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        opts.provision_reports = Some(reports_tx);
        opts.quiet = Duration::from_millis(20);
        opts.max_delay = Duration::from_millis(200);
        opts.retry_failed_provisioning = Duration::from_millis(200);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client,
            opts,
            move |_: &mut Compiled| {
                let _ = compiles_tx.send(());
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Running { compiles, reports, stop: Some(stop), task }
    }

    fn provisioning() -> ControllerOptions {
        ControllerOptions { provision: Some(ProvisionOptions::default()), ..Default::default() }
    }

    /// The next provisioning report satisfying `pred`.
    async fn report_where(&mut self, pred: impl Fn(&ProvisionReport) -> bool) -> ProvisionReport {
        let found = tokio::time::timeout(WAIT_LIMIT, async {
            while let Some(r) = self.reports.recv().await {
                if pred(&r) {
                    return Some(r);
                }
            }
            None
        })
        .await;
        found.ok().flatten().expect("a provisioning pass satisfying the condition")
    }

    async fn compiled(&mut self) {
        let got = tokio::time::timeout(WAIT_LIMIT, self.compiles.recv()).await;
        assert!(matches!(got, Ok(Some(()))), "a compile");
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(WAIT_LIMIT, self.task).await;
    }
}

/// (apiVersion, kind) of every provisioned object.
const PROVISIONED: [(&str, &str); 4] = [
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
];

fn programmed(gw: &Value) -> (Value, Value) {
    let c = condition(&gw["status"]["conditions"], "Programmed");
    (c["status"].clone(), c["reason"].clone())
}

async fn gateway_where(server: &ApiServer, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    match server.wait_for_object(GW, "Gateway", Some("infra"), name, pred).await {
        Some(g) => g,
        None => panic!(
            "Gateway {name} as expected: {:#?}",
            server.get(GW, "Gateway", Some("infra"), name)
        ),
    }
}

/// Plays kube-controller-manager: sets `status.availableReplicas` of a Deployment.
fn set_available(server: &ApiServer, name: &str, n: i32) {
    let mut d = server.get("apps/v1", "Deployment", Some("infra"), name).expect("deployment");
    d["status"] = json!({"replicas": 1, "availableReplicas": n, "readyReplicas": n});
    server.apply(d);
}

/// Plays the API server's allocator and the cloud's load balancer on a Service.
fn set_service(server: &ApiServer, name: &str, cluster_ip: &str, ingress: Option<Value>) {
    let mut s = server.get("v1", "Service", Some("infra"), name).expect("service");
    s["spec"]["clusterIP"] = json!(cluster_ip);
    s["spec"]["clusterIPs"] = json!([cluster_ip]);
    if let Some(i) = ingress {
        s["status"] = json!({"loadBalancer": {"ingress": i}});
    }
    server.apply(s);
}

async fn wait_gone(server: &ApiServer, api_version: &str, kind: &str, name: &str) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if server.get(api_version, kind, Some("infra"), name).is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn binding_subjects(server: &ApiServer) -> Value {
    server.get(RBAC, "ClusterRoleBinding", None, "sniway-dataplane").expect("binding")["subjects"]
        .clone()
}

#[tokio::test]
async fn a_gateway_of_our_class_gets_its_data_plane_bound_owned_and_labelled() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    let mut c = Running::start(&server, Running::provisioning()).await;
    let report = c.report_where(|r| !r.applied.is_empty()).await;
    assert_eq!(report.applied, ["infra/gw"]);
    assert_eq!(report.failed, Vec::<String>::new());
    assert_eq!(report.binding, Some(vec![("infra".to_string(), "gw-sniway".to_string())]));

    let gw = server.get(GW, "Gateway", Some("infra"), "gw").unwrap();
    let uid = gw["metadata"]["uid"].as_str().unwrap().to_string();
    for (api_version, kind) in PROVISIONED {
        let o = server
            .get(api_version, kind, Some("infra"), "gw-sniway")
            .unwrap_or_else(|| panic!("{kind} gw-sniway"));
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels[provision::GATEWAY_NAME_LABEL], "gw", "{kind}");
        assert_eq!(labels[provision::GATEWAY_CLASS_LABEL], "sniway", "{kind}");
        assert_eq!(labels[provision::MANAGED_BY_LABEL], "sniway", "{kind}");
        assert_eq!(labels[provision::INSTANCE_LABEL], "gw-sniway", "{kind}");
        let owners = o["metadata"]["ownerReferences"].as_array().expect("owners");
        assert_eq!(owners.len(), 1, "{kind}");
        assert_eq!(owners[0]["uid"], uid.as_str(), "{kind}");
        assert_eq!(owners[0]["kind"], "Gateway", "{kind}");
        assert_eq!(owners[0]["name"], "gw", "{kind}");
        assert_eq!(owners[0]["controller"], true, "{kind}");
        // Nothing for the other controller's Gateway.
        assert_eq!(server.get(api_version, kind, Some("infra"), "theirs-sniway"), None, "{kind}");
    }
    let svc = server.get("v1", "Service", Some("infra"), "gw-sniway").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 8443);
    assert_eq!(
        binding_subjects(&server),
        json!([{"kind": "ServiceAccount", "name": "gw-sniway", "namespace": "infra"}])
    );
    let binding = server.get(RBAC, "ClusterRoleBinding", None, "sniway-dataplane").unwrap();
    assert_eq!(binding["roleRef"]["name"], "sniway-dataplane");

    // Every provisioning write is a forced server-side apply; the binding comes before any
    // Deployment.
    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| !w.path.ends_with("/status") && w.method != "DELETE")
        .collect();
    let paths: Vec<&str> = writes.iter().map(|w| w.path.as_str()).collect();
    let binding_at = paths.iter().position(|p| *p == BINDING_PATH).expect("binding written");
    let deployment_at =
        paths.iter().position(|p| p.contains("/deployments/")).expect("deployment written");
    assert!(binding_at < deployment_at, "{paths:#?}");
    for w in &writes {
        assert_eq!(w.content_type, "application/apply-patch+yaml", "{}", w.path);
        assert_eq!(w.field_manager.as_deref(), Some("sniway.io/gateway-controller"), "{}", w.path);
        assert!(w.force, "{}", w.path);
    }
    c.stop().await;
}

#[tokio::test]
async fn programmed_waits_for_an_available_replica_and_addresses_follow_the_service() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    let mut c = Running::start(&server, Running::provisioning()).await;
    c.report_where(|r| !r.applied.is_empty()).await;

    // No kubelet runs the pods: Programmed stays False, and says why.
    let gw = gateway_where(&server, "gw", |g| programmed(g).0 == "False").await;
    assert_eq!(programmed(&gw), (json!("False"), json!("Pending")));
    let msg = condition(&gw["status"]["conditions"], "Programmed")["message"].as_str().unwrap();
    assert!(msg.contains("infra/gw-sniway"), "{msg}");
    assert_eq!(condition(&gw["status"]["conditions"], "Accepted")["status"], "True");
    let l = &gw["status"]["listeners"][0];
    assert_eq!(condition(&l["conditions"], "Programmed")["status"], "False");
    assert_eq!(condition(&l["conditions"], "Programmed")["reason"], "Pending");
    assert_eq!(condition(&l["conditions"], "Accepted")["status"], "True");
    assert_eq!(gw["status"]["addresses"], json!([]), "the Service has no address yet");

    // The API server gives the Service its cluster IP: the Gateway's address.
    set_service(&server, "gw-sniway", "10.96.0.5", None);
    let gw = gateway_where(&server, "gw", |g| {
        g["status"]["addresses"] == json!([{"type": "IPAddress", "value": "10.96.0.5"}])
    })
    .await;
    assert_eq!(programmed(&gw).0, "False");

    // kube-controller-manager reports an available replica: Programmed.
    set_available(&server, "gw-sniway", 1);
    let gw = gateway_where(&server, "gw", |g| programmed(g).0 == "True").await;
    assert_eq!(programmed(&gw), (json!("True"), json!("Programmed")));
    let l = &gw["status"]["listeners"][0];
    assert_eq!(condition(&l["conditions"], "Programmed")["status"], "True");

    // The load balancer's ingress replaces the cluster IP.
    set_service(
        &server,
        "gw-sniway",
        "10.96.0.5",
        Some(json!([{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}])),
    );
    gateway_where(&server, "gw", |g| {
        g["status"]["addresses"]
            == json!([{"type": "IPAddress", "value": "203.0.113.9"},
                      {"type": "Hostname", "value": "lb.example.com"}])
    })
    .await;

    // The replica goes away: Pending again.
    set_available(&server, "gw-sniway", 0);
    gateway_where(&server, "gw", |g| programmed(g) == (json!("False"), json!("Pending"))).await;

    // None of this was a reason to apply the data plane again.
    let applies = server
        .writes()
        .iter()
        .filter(|w| w.path.contains("/deployments/") && w.field_manager.is_some())
        .count();
    assert_eq!(applies, 1);
    c.stop().await;
}

#[tokio::test]
async fn a_listener_added_or_moved_updates_the_services_ports() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    let mut c = Running::start(&server, Running::provisioning()).await;
    c.report_where(|r| r.applied == ["infra/gw"]).await;
    let ports = |s: &Value| -> Vec<i64> {
        s["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect()
    };
    let svc = |pred: Box<dyn Fn(&Value) -> bool>| {
        server.wait_for_object("v1", "Service", Some("infra"), "gw-sniway", pred)
    };

    server.apply(gateway("gw", "sniway", json!([listener("tls", 8443), listener("more", 9443)])));
    let s = svc(Box::new(move |s| ports(s) == [8443, 9443])).await;
    assert!(s.is_some(), "{:#?}", server.get("v1", "Service", Some("infra"), "gw-sniway"));

    server.apply(gateway("gw", "sniway", json!([listener("tls", 8444), listener("more", 9443)])));
    let s = svc(Box::new(move |s| ports(s) == [8444, 9443])).await;
    assert!(s.is_some(), "{:#?}", server.get("v1", "Service", Some("infra"), "gw-sniway"));
    // The Deployment (applied after the Service) opens the same ports and the admin port.
    let container_ports = |d: &Value| -> Vec<i64> {
        d["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_i64())
            .collect()
    };
    let d = server
        .wait_for_object("apps/v1", "Deployment", Some("infra"), "gw-sniway", |d| {
            container_ports(d) == [8444, 9443, 9901]
        })
        .await;
    assert!(d.is_some(), "{:#?}", server.get("apps/v1", "Deployment", Some("infra"), "gw-sniway"));
    c.stop().await;
}

#[tokio::test]
async fn a_deleted_or_reclassed_gateway_loses_its_data_plane_and_its_binding() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    server.apply(gateway("second", "sniway", json!([listener("tls", 8443)])));
    let mut c = Running::start(&server, Running::provisioning()).await;
    c.report_where(|r| r.applied.len() == 2).await;
    assert_eq!(binding_subjects(&server).as_array().map(Vec::len), Some(2));

    // Deleted: the controller prunes (there is no garbage collector here).
    server.remove(GW, "Gateway", Some("infra"), "gw");
    let r = c.report_where(|r| !r.pruned.is_empty()).await;
    let mut pruned: Vec<&str> = r.pruned.iter().map(|p| p.kind).collect();
    pruned.sort();
    assert_eq!(pruned, ["Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]);
    for (api_version, kind) in PROVISIONED {
        assert!(wait_gone(&server, api_version, kind, "gw-sniway").await, "{kind}");
        assert!(server.get(api_version, kind, Some("infra"), "second-sniway").is_some(), "{kind}");
    }
    assert_eq!(
        binding_subjects(&server),
        json!([{"kind": "ServiceAccount", "name": "second-sniway", "namespace": "infra"}])
    );

    // Moved to another controller's class: no longer ours, pruned too.
    server.apply(gateway("second", "other", json!([listener("tls", 8443)])));
    for (api_version, kind) in PROVISIONED {
        assert!(wait_gone(&server, api_version, kind, "second-sniway").await, "{kind}");
    }
    assert_eq!(binding_subjects(&server), json!([]));
    c.stop().await;
}

#[tokio::test]
async fn a_gateway_with_a_253_character_name_gets_its_data_plane() {
    let server = ApiServer::start().await.unwrap();
    server.apply(class("sniway", "sniway.io/gateway-controller"));
    server.apply(namespace("infra"));
    let name = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    assert_eq!(name.len(), 253);
    server.apply(gateway(&name, "sniway", json!([listener("tls", 8443)])));
    let mut c = Running::start(&server, Running::provisioning()).await;
    let r = c.report_where(|r| !r.applied.is_empty()).await;
    assert_eq!(r.applied, [format!("infra/{name}")]);
    let object = provision::object_name(&name);
    assert!(object.len() <= 63 && object.ends_with("-sniway"), "{object}");
    for (api_version, kind) in PROVISIONED {
        let o = server.get(api_version, kind, Some("infra"), &object).expect(kind);
        let label = o["metadata"]["labels"][provision::GATEWAY_NAME_LABEL].as_str().unwrap();
        assert_eq!(label, provision::label_value(&name));
        assert!(label.len() <= 63);
    }
    // Its status follows its data plane too.
    set_available(&server, &object, 1);
    set_service(&server, &object, "10.96.0.6", None);
    gateway_where(&server, &name, |g| programmed(g).0 == "True").await;
    c.stop().await;
}

#[tokio::test]
async fn nothing_is_provisioned_without_the_lease() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    server.apply(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sniway-leader", "namespace": "infra"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "renewTime": "2099-01-01T00:00:00.000000Z"},
    }));
    let opts = ControllerOptions { lease: Some(lease_opts("b")), ..Running::provisioning() };
    let mut c = Running::start(&server, opts).await;
    c.compiled().await;
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/infra/leases/sniway-leader";
    assert!(
        server.wait_for_requests(|r| r.iter().filter(|r| r.path == lease_path).count() >= 3).await
    );
    assert_eq!(server.writes(), []);
    assert!(c.reports.try_recv().is_err());
    // The Deployments are watched all the same, by label.
    assert_eq!(server.open_watches("deployments").len(), 1);
    c.stop().await;
}

#[tokio::test]
async fn a_data_plane_writes_nothing_at_all() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    let opts = ControllerOptions {
        snapshot: SnapshotOptions {
            gateway: Some(("infra".into(), "gw".into())),
            ..SnapshotOptions::default()
        },
        write_status: false,
        provision: None,
        lease: Some(lease_opts("pod")),
        ..Default::default()
    };
    let mut c = Running::start(&server, opts).await;
    c.compiled().await;
    // A change is compiled, and still nothing is written.
    server.apply(gateway("gw", "sniway", json!([listener("tls", 9443)])));
    c.compiled().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.writes(), []);
    assert!(server.requests().iter().all(|r| r.method == "GET"), "{:#?}", server.requests());
    assert!(server.open_watches("deployments").is_empty());
    c.stop().await;
}

#[tokio::test]
async fn failures_are_retried_and_never_hold_up_status() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    // The binding fails twice: no Deployment may come before it.
    server.fail_next(BINDING_PATH, 2);
    // The Deployment's apply keeps failing for a while (each retry backs off).
    let deployment_path = "/apis/apps/v1/namespaces/infra/deployments/gw-sniway";
    server.fail_next(deployment_path, 3);
    let mut c = Running::start(&server, Running::provisioning()).await;
    let first = c.report_where(|_| true).await;
    assert_eq!(first.failed, ["ClusterRoleBinding", "infra/gw"]);
    assert_eq!(first.applied, Vec::<String>::new());
    // Status is written meanwhile: Pending.
    gateway_where(&server, "gw", |g| programmed(g) == (json!("False"), json!("Pending"))).await;
    c.report_where(|r| r.applied == ["infra/gw"]).await;
    assert!(server.get("apps/v1", "Deployment", Some("infra"), "gw-sniway").is_some());
    let codes: Vec<(String, u16)> = server
        .writes()
        .iter()
        .filter(|w| w.path == BINDING_PATH || w.path == deployment_path)
        .map(|w| (w.path.rsplit('/').nth(1).unwrap_or_default().to_string(), w.code))
        .collect();
    let as_ref: Vec<(&str, u16)> = codes.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    assert_eq!(
        as_ref,
        [
            ("clusterrolebindings", 500),
            ("clusterrolebindings", 500),
            ("clusterrolebindings", 201),
            ("deployments", 500),
            ("deployments", 500),
            ("deployments", 500),
            ("deployments", 201),
        ]
    );
    c.stop().await;
}

#[tokio::test]
async fn a_data_plane_deleted_by_hand_is_applied_again() {
    let server = ApiServer::start().await.unwrap();
    seed(&server);
    let mut c = Running::start(&server, Running::provisioning()).await;
    c.report_where(|r| !r.applied.is_empty()).await;
    server
        .wait_for_object("apps/v1", "Deployment", Some("infra"), "gw-sniway", |_| true)
        .await
        .expect("provisioned");

    // Someone deletes the Deployment; the Gateway did not change, the controller restores it.
    assert!(server.remove("apps/v1", "Deployment", Some("infra"), "gw-sniway"));
    let report = c.report_where(|r| r.applied.iter().any(|k| k == "infra/gw")).await;
    assert_eq!(report.failed, Vec::<String>::new());
    server
        .wait_for_object("apps/v1", "Deployment", Some("infra"), "gw-sniway", |_| true)
        .await
        .expect("the Deployment applied again");
    c.stop().await;
}
