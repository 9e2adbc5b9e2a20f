//! Real TLS clients through the gateway to real TLS backends, routed by SNI.

use std::time::Duration;

use sniway::demo::client::https_get;

use crate::support::*;

async fn two_backends() -> (Tls, Gateway, [sniway::demo::backend::TlsBackend; 2]) {
    let tls = Tls::new();
    let foo_backend = tls.backend("foo", &["foo.example.com"], BackendReply::Demo).await;
    let bar = tls.backend("bar", &["bar.example.com"], BackendReply::Demo).await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("foo", "gw", &["foo.example.com"], &[("foo", 1)]),
        route("bar", "gw", &["bar.example.com"], &[("bar", 1)]),
        service("foo", 443, foo_backend.addr),
        service("bar", 443, bar.addr),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    (tls, gw, [foo_backend, bar])
}

#[tokio::test(flavor = "multi_thread")]
async fn rustls_client_reaches_the_backend_its_sni_names_and_verifies_its_certificate() {
    let (tls, gw, _backends) = two_backends().await;
    for (sni, backend) in
        [("foo.example.com", "foo"), ("bar.example.com", "bar"), ("FOO.example.com", "foo")]
    {
        let answer = https_get(gw.addr, sni, tls.client.clone(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e:#}\n{}", gw.log()));
        assert_eq!(answer.body, format!("{backend} answered {}", sni.to_ascii_lowercase()));
        assert_eq!(
            answer.certificate_cn.as_deref(),
            Some(format!("{backend}.example.com").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_s_client_verifies_the_backend_chain_and_talks_to_it() {
    let (tls, gw, _backends) = two_backends().await;
    let dir = TempDir::new("openssl");
    let ca = tls.ca_file(&dir);
    for (sni, backend) in [("foo.example.com", "foo"), ("bar.example.com", "bar")] {
        let want = format!("{backend} ({sni}): ping");
        let session = openssl_exchange(gw.addr, sni, Some(&ca), "ping", &want).await;
        let (found, all) = (session.replied, session.output);
        assert!(found, "no `{want}` from openssl:\n{all}\n{}", gw.log());
        assert!(
            all.contains(&format!("CN={backend}.example.com"))
                || all.contains(&format!("CN = {backend}.example.com")),
            "{all}"
        );
        assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
    }
}

/// The FSM Gateway passthrough guide, as written but for loopback: a v1alpha2 TLSRoute without
/// hostnames attached by port, an external backend named by host:port, and
/// `curl https://httpbin.org/headers --connect-to httpbin.org:443:$GATEWAY_IP:8000`.
#[tokio::test(flavor = "multi_thread")]
async fn curl_connect_to_reaches_an_https_backend_through_the_fsm_guide_manifests() {
    let tls = Tls::new();
    let httpbin = tls.backend("httpbin", &["httpbin.org"], BackendReply::Demo).await;
    let port = free_port();
    let manifests = fsm_manifests(port, httpbin.addr);
    let gw = Gateway::start(&manifests, port, &["-n", "httpbin"]);
    let dir = TempDir::new("curl");
    let ca = tls.ca_file(&dir);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "15", "--cacert"])
        .arg(&ca)
        .arg("https://httpbin.org/headers")
        .arg("--connect-to")
        .arg(format!("httpbin.org:443:127.0.0.1:{port}"))
        .output()
        .await
        .expect("curl (install curl)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert_eq!(body.trim_end(), "httpbin answered httpbin.org");
}

/// The FSM guide's Gateway and TLSRoute as written, but on `port` and with the route's backend
/// named by its loopback address.
fn fsm_manifests(port: u16, backend: std::net::SocketAddr) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: simple-fsm-gateway
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
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: tcp-route
spec:
  parentRefs:
  - name: simple-fsm-gateway
    port: {port}
  rules:
  - backendRefs:
    - name: {ip}
      port: {bport}
"#,
        ip = backend.ip(),
        bport = backend.port()
    )
}

/// `curl -k https://127.0.0.1:PORT/`: curl sends no SNI for an address.
async fn curl_by_address(port: u16) -> std::process::Output {
    tokio::process::Command::new("curl")
        .args(["-sS", "-k", "--max-time", "15"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .await
        .expect("curl (install curl)")
}

/// FSM-style users connect by address: `curl -k https://GATEWAY_IP:8000/` sends no SNI (RFC 6066
/// §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName"). Closed by default, as
/// the Gateway API requires; with a ListenerPolicy `noSni: {action: Backend}` curl reaches the
/// default backend.
#[tokio::test(flavor = "multi_thread")]
async fn curl_by_address_is_closed_by_default_and_reaches_the_no_sni_backend_a_policy_names() {
    let tls = Tls::new();
    let httpbin = tls.backend("httpbin", &["httpbin.org"], BackendReply::Demo).await;

    let port = free_port();
    let gw = Gateway::start(&fsm_manifests(port, httpbin.addr), port, &["-n", "httpbin"]);
    let out = curl_by_address(port).await;
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (_, metrics) = gw.get("/metrics");
    assert!(metrics.contains("kind=\"no_sni\""), "{metrics}");
    drop(gw);

    let port = free_port();
    let policy = format!(
        r#"---
apiVersion: sniway.io/v1alpha1
kind: ListenerPolicy
metadata:
  name: by-address
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: simple-fsm-gateway}}
  noSni:
    action: Backend
    backendRef: {{name: {ip}, port: {bport}}}
"#,
        ip = httpbin.addr.ip(),
        bport = httpbin.addr.port()
    );
    let manifests = format!("{}{policy}", fsm_manifests(port, httpbin.addr));
    let gw = Gateway::start(&manifests, port, &["-n", "httpbin"]);
    let out = curl_by_address(port).await;
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.starts_with("httpbin answered"), "{body}");
}
