//! Backends through the real binary: connect failover across a Service's endpoints when one is
//! a closed port and one a blackholed address, passive ejection, active TCP and TLS checks
//! configured by a BackendPolicy (an endpoint killed and restarted; a backend with the wrong
//! certificate), the fallback backend of the guide's weight-0 example, and the health view in
//! `/metrics` and `/status`.
//!
//! The blackholed address lives in a network namespace the test makes (as root, with iproute2):
//! a veth pair whose far end, in the new namespace, has no address, so the gateway's ARP
//! requests for it are never answered and every SYN is dropped; a connect to it waits out the
//! connect timeout. Progress is counted through `/metrics`, never timed.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// A network namespace with one end of a veth pair whose other end is here with `local`/30;
/// the address after `local` is blackholed. Removed on drop.
struct Blackhole {
    netns: String,
    link: String,
    /// The unanswered address.
    pub addr: IpAddr,
}

impl Blackhole {
    fn new() -> Blackhole {
        let id = std::process::id() % 10_000;
        let netns = format!("sniway-bh-{id}");
        let link = format!("snwbh{id}a");
        let peer = format!("snwbh{id}b");
        // A /30 out of 10.254.0.0/16, by process id, so that runs side by side do not share one.
        let (hi, lo) = ((id / 64) % 256, (id % 64) * 4);
        let local = format!("10.254.{hi}.{}", lo + 1);
        let addr: IpAddr = format!("10.254.{hi}.{}", lo + 2).parse().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("iproute2 `ip` (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "ip {}: {} (the blackhole test runs as root)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let bh = Blackhole { netns: netns.clone(), link: link.clone(), addr };
        run(&["netns", "add", &netns]);
        run(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        run(&["link", "set", &peer, "netns", &netns]);
        run(&["addr", "add", &format!("{local}/30"), "dev", &link]);
        run(&["link", "set", &link, "up"]);
        run(&["-n", &netns, "link", "set", &peer, "up"]);
        bh
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// The sum of every sample of `name` whose labels include each of `want`.
fn sum(body: &str, name: &str, want: &[&str]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A backend answering every connection with `NAME\n` and then what it reads; aborting the
/// task closes its listening socket (connections to it are then refused).
async fn named_echo(name: &'static str, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if w.write_all(format!("{name}\n").as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    })
}

/// Sends a ClientHello for `sni` through the gateway and returns the first line the backend
/// wrote, checking the hello reached it unchanged.
async fn reached(gw: SocketAddr, hello: &[u8]) -> String {
    let within = std::time::Duration::from_secs(20);
    tokio::time::timeout(within, async {
        let mut s = tokio::net::TcpStream::connect(gw).await.expect("connect to the gateway");
        s.write_all(hello).await.unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).await.expect("read") == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let mut echoed = vec![0u8; hello.len()];
        s.read_exact(&mut echoed).await.expect("the hello echoed");
        assert_eq!(echoed, hello, "the backend received the hello unchanged");
        String::from_utf8(line).unwrap()
    })
    .await
    .expect("answered in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_and_a_blackholed_endpoint_are_ejected_and_every_connection_succeeds() {
    let blackhole = Blackhole::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().port();
    let _live = named_echo("live", listener).await;
    // 127.0.0.3 on the live endpoint's port: nothing listens there (refused).
    let closed: IpAddr = [127, 0, 0, 3].into();
    let live: IpAddr = [127, 0, 0, 1].into();
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("app", "gw", &["app.example"], &[("app", 1)]),
        service_endpoints("app", 443, target, &[closed, blackhole.addr, live]),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &["--connect-timeout", "1s"]);
    let tls = Tls::new();
    let hello = tls.client_hello("app.example");
    const N: usize = 15;
    for i in 0..N {
        assert_eq!(reached(gw.addr, &hello).await, "live", "connection {i}");
    }
    let (code, body) = gw.get("/metrics");
    assert_eq!(code, 200);
    // Three failed connects eject each dead endpoint; after that no connection tries it, so none
    // waits the connect timeout again.
    let failures = "sniway_backend_connect_failures_total";
    assert_eq!(sum(&body, failures, &["reason=\"refused\""]), 3.0, "{body}");
    assert_eq!(sum(&body, failures, &["reason=\"timeout\""]), 3.0, "{body}");
    let attempts = sum(&body, "sniway_backend_connect_attempts_total", &[]);
    assert_eq!(attempts, (N + 6) as f64, "{body}");
    assert_eq!(sum(&body, "sniway_backend_ejections_total", &[]), 2.0, "{body}");
    let unhealthy = |ip: IpAddr| {
        let e = format!("endpoint=\"{}\"", SocketAddr::new(ip, target));
        sum(&body, "sniway_backend_endpoint_healthy", &[&e])
    };
    assert_eq!(unhealthy(closed), 0.0);
    assert_eq!(unhealthy(blackhole.addr), 0.0);
    assert_eq!(unhealthy(live), 1.0);
    // `/status` shows the same.
    let (code, status) = gw.get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let endpoints = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["endpoints"].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    let healthy = |ip: IpAddr| {
        let a = SocketAddr::new(ip, target).to_string();
        endpoints.iter().find(|e| e["address"] == a.as_str()).map(|e| e["healthy"].clone())
    };
    assert_eq!(healthy(live), Some(serde_json::Value::Bool(true)), "{status}");
    assert_eq!(healthy(closed), Some(serde_json::Value::Bool(false)), "{status}");
    assert_eq!(healthy(blackhole.addr), Some(serde_json::Value::Bool(false)), "{status}");
}

/// A BackendPolicy for Service `svc` with `health` as its `healthCheck` and `extra` spec lines.
fn backend_policy(name: &str, svc: &str, health: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: sniway.io/v1alpha1
kind: BackendPolicy
metadata:
  name: {name}
spec:
  targetRefs:
  - {{group: "", kind: Service, name: {svc}}}
{health}{extra}"#
    )
}

const FAST_TCP_CHECK: &str = "  healthCheck:
    active: {type: TCP, interval: 100ms, timeout: 100ms, healthyThreshold: 1, unhealthyThreshold: 1}
";

/// Polls `/metrics` (bounded) until `cond` holds on it; returns that exposition.
fn wait_metrics(gw: &Gateway, what: &str, cond: impl Fn(&str) -> bool) -> String {
    for _ in 0..300 {
        let (code, body) = gw.get("/metrics");
        assert_eq!(code, 200);
        if cond(&body) {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: not within 15 s\n{}", gw.log());
}

fn healthy_gauge(body: &str, endpoint: SocketAddr) -> Option<f64> {
    let e = format!("endpoint=\"{endpoint}\"");
    body.lines()
        .find(|l| l.starts_with("sniway_backend_endpoint_healthy{") && l.contains(&e))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Binds `ip` on `port` (0: any), retrying briefly while a closed socket lets go of it.
async fn bind(ip: [u8; 4], port: u16) -> TcpListener {
    let addr = SocketAddr::from((ip, port));
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_and_restarted_is_ejected_and_readmitted_by_active_checks() {
    let a = bind([127, 0, 0, 1], 0).await;
    let target = a.local_addr().unwrap().port();
    let _a = named_echo("a", a).await;
    let b_addr = SocketAddr::from(([127, 0, 0, 2], target));
    let b = named_echo("b", bind([127, 0, 0, 2], target).await).await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("app", "gw", &["app.example"], &[("app", 1)]),
        service_endpoints("app", 443, target, &[[127, 0, 0, 1].into(), [127, 0, 0, 2].into()]),
        backend_policy("app-health", "app", FAST_TCP_CHECK, ""),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let hello = Tls::new().client_hello("app.example");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(reached(gw.addr, &hello).await);
    }
    assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()), "{seen:?}");
    b.abort();
    let body = wait_metrics(&gw, "b failed by checks", |m| healthy_gauge(m, b_addr) == Some(0.0));
    let failed_before = sum(&body, "sniway_backend_connect_failures_total", &[]);
    for _ in 0..8 {
        assert_eq!(reached(gw.addr, &hello).await, "a");
    }
    let (_, body) = gw.get("/metrics");
    assert_eq!(
        sum(&body, "sniway_backend_connect_failures_total", &[]),
        failed_before,
        "no connection tried the endpoint the checks failed"
    );
    let _b = named_echo("b", bind([127, 0, 0, 2], target).await).await;
    wait_metrics(&gw, "b readmitted", |m| healthy_gauge(m, b_addr) == Some(1.0));
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(reached(gw.addr, &hello).await);
    }
    assert!(seen.contains(&"b".to_string()), "b takes connections again: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_backend_gets_traffic_only_while_the_primary_is_down() {
    let primary = bind([127, 0, 0, 1], 0).await;
    let primary_addr = primary.local_addr().unwrap();
    let first = named_echo("primary", primary).await;
    let backup = bind([127, 0, 0, 1], 0).await;
    let backup_addr = backup.local_addr().unwrap();
    let _backup = named_echo("backup", backup).await;
    let port = free_port();
    // The guide's example: the backup keeps weight 0 and is marked as a fallback.
    let manifests = [
        passthrough_gateway("gw", port),
        route("app", "gw", &["app.example"], &[("app-primary", 100), ("app-backup", 0)]),
        service("app-primary", 443, primary_addr),
        service("app-backup", 443, backup_addr),
        backend_policy("primary-health", "app-primary", FAST_TCP_CHECK, ""),
        backend_policy("backup", "app-backup", "", "  fallback: true\n"),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let hello = Tls::new().client_hello("app.example");
    for _ in 0..5 {
        assert_eq!(reached(gw.addr, &hello).await, "primary");
    }
    first.abort();
    wait_metrics(&gw, "primary down", |m| healthy_gauge(m, primary_addr) == Some(0.0));
    for _ in 0..5 {
        assert_eq!(reached(gw.addr, &hello).await, "backup");
    }
    let _primary = named_echo("primary", bind([127, 0, 0, 1], primary_addr.port()).await).await;
    wait_metrics(&gw, "primary back", |m| healthy_gauge(m, primary_addr) == Some(1.0));
    for _ in 0..5 {
        assert_eq!(reached(gw.addr, &hello).await, "primary", "the traffic is given back");
    }
    let (_, body) = gw.get("/metrics");
    let fallback = sum(&body, "sniway_backend_fallback_connections_total", &[]);
    assert_eq!(fallback, 5.0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifying_tls_check_fails_a_backend_with_the_wrong_certificate() {
    let tls = Tls::new();
    let good = tls.backend("good", &["app.example"], sniway::demo::backend::Reply::Demo).await;
    let target = good.addr.port();
    let impostor_pki = sniway::demo::pki::Pki::new("another CA").unwrap();
    let leaf = impostor_pki.leaf(&["app.example"]).unwrap();
    let wrong_addr = SocketAddr::from(([127, 0, 0, 2], target));
    let _wrong = sniway::demo::backend::start(
        "wrong",
        wrong_addr,
        &leaf,
        sniway::demo::backend::Reply::Demo,
    )
    .await
    .unwrap();
    let port = free_port();
    let ca = tls.pki.ca_pem().replace('\n', "\n    ");
    let check = "  healthCheck:
    active:
      type: TLS
      interval: 100ms
      timeout: 500ms
      unhealthyThreshold: 1
      tls: {sni: app.example, verify: true, caCertificateRefs: [{kind: ConfigMap, name: app-ca}]}
";
    let manifests = [
        passthrough_gateway("gw", port),
        route("app", "gw", &["app.example"], &[("app", 1)]),
        service_endpoints("app", 443, target, &[[127, 0, 0, 1].into(), [127, 0, 0, 2].into()]),
        backend_policy("app-tls", "app", check, ""),
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-ca\ndata:\n  ca.crt: |\n    {ca}\n"
        ),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let body = wait_metrics(&gw, "both checked", |m| {
        sum(m, "sniway_backend_health_checks_total", &["result=\"failure\""]) >= 1.0
            && sum(m, "sniway_backend_health_checks_total", &["result=\"success\""]) >= 1.0
    });
    assert_eq!(healthy_gauge(&body, good.addr), Some(1.0), "{body}");
    assert_eq!(healthy_gauge(&body, wrong_addr), Some(0.0), "{body}");
    for _ in 0..6 {
        let answer = sniway::demo::client::https_get(
            gw.addr,
            "app.example",
            tls.client.clone(),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("every connection reaches the backend with the right certificate");
        assert!(answer.body.contains("good"), "{}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_name_service_follows_its_dns_answer_once_the_ttl_has_passed() {
    let one = bind([127, 0, 0, 1], 0).await;
    let target = one.local_addr().unwrap().port();
    let _one = named_echo("one", one).await;
    let _two = named_echo("two", bind([127, 0, 0, 2], target).await).await;
    let dns = sniway_testkit::dns::DnsServer::start([127, 0, 0, 1].into(), 2).await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: ext
spec:
  parentRefs:
  - name: gw
  hostnames: ["ext.example"]
  rules:
  - backendRefs:
    - name: ext
      port: {target}
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: backend.test
"#
        ),
    ]
    .concat();
    let server = dns.addr.to_string();
    let gw = Gateway::start(&manifests, port, &["--dns-server", &server]);
    let hello = Tls::new().client_hello("ext.example");
    for _ in 0..5 {
        assert_eq!(reached(gw.addr, &hello).await, "one");
    }
    assert_eq!(dns.queries(), 1, "one query for five connections");
    dns.set_answer([127, 0, 0, 2].into());
    assert_eq!(reached(gw.addr, &hello).await, "one", "the answer is kept for its TTL");
    assert_eq!(dns.queries(), 1);
    let mut switched = false;
    for _ in 0..100 {
        let before = dns.queries();
        if reached(gw.addr, &hello).await == "two" {
            assert_eq!(dns.queries(), before + 1, "the new answer came from a new query");
            switched = true;
            break;
        }
        assert_eq!(dns.queries(), 1, "the old answer only while it was cached");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(switched, "the changed answer was never followed");
}
