//! The simulated API server, driven through a real `kube::Client` and `Api<DynamicObject>`.

use futures::StreamExt;
use kube_client::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use sniway_testkit::apiserver::{ApiServer, plural_of};

fn gateways(client: kube_client::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, "gateways"))
}

fn gateway(name: &str, class: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra", "labels": {"team": "a"}},
        "spec": {"gatewayClassName": class, "listeners": []},
    })
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a valid object")
}

#[test]
fn plurals_follow_the_api_servers_rules() {
    assert_eq!(plural_of("Gateway"), "gateways");
    assert_eq!(plural_of("GatewayClass"), "gatewayclasses");
    assert_eq!(plural_of("ListenerPolicy"), "listenerpolicies");
    assert_eq!(plural_of("Lease"), "leases");
    assert_eq!(plural_of("EndpointSlice"), "endpointslices");
}

#[tokio::test]
async fn objects_are_created_read_listed_replaced_and_deleted_through_kube() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");

    let created = api.create(&PostParams::default(), &obj(gateway("a", "x"))).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let err = api.create(&PostParams::default(), &obj(gateway("a", "x"))).await.unwrap_err();
    assert!(matches!(err, kube_client::Error::Api(s) if s.code == 409));

    api.create(&PostParams::default(), &obj(gateway("b", "y"))).await.unwrap();
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.types.kind, "GatewayList");
    let rv: u64 = all.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, server.resource_version());
    let by_name = api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let by_label = api.list(&ListParams::default().labels("team=b")).await.unwrap();
    assert!(by_label.items.is_empty());

    let mut a = api.get("a").await.unwrap();
    let stale = a.clone();
    a.data["spec"]["gatewayClassName"] = json!("z");
    let replaced = api.replace("a", &PostParams::default(), &a).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    let err = api.replace("a", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(err, kube_client::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert!(matches!(err, kube_client::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));
    assert!(server.get("gateway.networking.k8s.io/v1", "Gateway", Some("infra"), "a").is_none());

    let methods: Vec<(String, u16)> =
        server.writes().iter().map(|w| (w.method.clone(), w.code)).collect();
    let expected =
        [("POST", 201), ("POST", 409), ("POST", 201), ("PUT", 200), ("PUT", 409), ("DELETE", 200)];
    let expected: Vec<(String, u16)> = expected.iter().map(|(m, c)| (m.to_string(), *c)).collect();
    assert_eq!(methods, expected);
}

#[tokio::test]
async fn status_writes_keep_the_generation_and_spec_writes_bump_it() {
    let server = ApiServer::start().await.unwrap();
    server.apply(gateway("a", "x"));
    let api = gateways(server.client().await.unwrap(), "infra");

    let status = json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}]}});
    let pp = PatchParams::apply("sniway.io/gateway-controller").force();
    let after = api.patch_status("a", &pp, &Patch::Apply(&status)).await.unwrap();
    assert_eq!(after.metadata.generation, Some(1));
    assert_eq!(after.data["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(after.data["spec"]["gatewayClassName"], "x");

    // The main resource ignores status; the spec change bumps the generation.
    let mut changed = gateway("a", "y");
    changed["status"] = json!({"conditions": []});
    let after = api.patch("a", &PatchParams::default(), &Patch::Merge(&changed)).await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.data["status"]["conditions"][0]["type"], "Accepted");

    let got = api.get_status("a").await.unwrap();
    assert_eq!(got.data["status"]["conditions"][0]["status"], "True");

    let mut put = got.clone();
    put.data["status"] = json!({"conditions": [{"type": "Accepted", "status": "False"}]});
    let after = api.replace_status("a", &PostParams::default(), &put).await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.data["status"]["conditions"][0]["status"], "False");

    let w = &server.writes()[0];
    assert_eq!(w.method, "PATCH");
    assert_eq!(w.path, "/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways/a/status");
    assert_eq!(w.content_type, "application/apply-patch+yaml");
    assert_eq!(w.field_manager.as_deref(), Some("sniway.io/gateway-controller"));
    assert!(w.force);
    assert_eq!(w.body["status"], status["status"]);
}

#[tokio::test]
async fn an_apply_without_a_field_manager_is_refused() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");
    let err = api
        .patch("a", &PatchParams::default(), &Patch::Apply(&gateway("a", "x")))
        .await
        .unwrap_err();
    assert!(matches!(err, kube_client::Error::Api(s) if s.code == 422));
    let created =
        api.patch("a", &PatchParams::apply("me"), &Patch::Apply(&gateway("a", "x"))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
}

#[tokio::test]
async fn a_watch_replays_from_its_resource_version_and_follows_changes() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");
    server.apply(gateway("a", "x"));
    let rv = server.resource_version().to_string();
    server.apply(gateway("b", "x"));

    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let names = |e: &WatchEvent<DynamicObject>| match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => {
            format!("MODIFIED {}", o.metadata.name.clone().unwrap_or_default())
        }
        WatchEvent::Deleted(o) => {
            format!("DELETED {}", o.metadata.name.clone().unwrap_or_default())
        }
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    };
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(names(&e), "ADDED b");
    server.apply(gateway("a", "y"));
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(names(&e), "MODIFIED a");
    server.remove("gateway.networking.k8s.io/v1", "Gateway", Some("infra"), "b");
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(names(&e), "DELETED b");
    server.bookmark();
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(names(&e), format!("BOOKMARK {}", server.resource_version()));

    server.end_watches();
    assert!(events.next().await.is_none());

    server.expire_resource_versions();
    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(names(&e), "ERROR 410");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_field_selected_watch_sees_only_its_object() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");
    let mut events =
        api.watch(&WatchParams::default().fields("metadata.name=b"), "0").await.unwrap().boxed();
    server.apply(gateway("a", "x"));
    server.apply(gateway("b", "x"));
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.open_watches("gateways"), vec![Some("metadata.name=b".to_string())]);
}

#[tokio::test]
async fn injected_faults_answer_500_then_recover() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");
    server.fail_next("/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways", 2);
    for _ in 0..2 {
        let err = api.list(&ListParams::default()).await.unwrap_err();
        assert!(matches!(err, kube_client::Error::Api(s) if s.code == 500));
    }
    assert!(api.list(&ListParams::default()).await.is_ok());
    let codes: Vec<u16> = server.requests().iter().map(|r| r.code).collect();
    assert_eq!(codes, [500, 500, 200]);
}

#[tokio::test]
async fn cluster_scoped_and_core_objects_have_their_own_paths() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra", "labels": {"a": "b"}}}));
    server.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "apps"}, "spec": {}}));
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let got = ns.get("infra").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["a"], "b");
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::all(client.clone());
    let all = svcs.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 1);
    let in_other: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "other");
    assert!(in_other.list(&ListParams::default()).await.unwrap().items.is_empty());
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/api/v1/namespaces/infra", "/api/v1/services", "/api/v1/namespaces/other/services"]
    );
}

#[tokio::test]
async fn a_watch_ends_after_its_timeout() {
    let server = ApiServer::start().await.unwrap();
    let api = gateways(server.client().await.unwrap(), "infra");
    let mut events = api.watch(&WatchParams::default().timeout(1), "0").await.unwrap().boxed();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), events.next()).await;
    assert!(matches!(ended, Ok(None)), "the stream ends on its own");
}
