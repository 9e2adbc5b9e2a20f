//! Backends: balancing, connect failover across endpoints and backends, passive and active
//! health, fallback backends, DNS re-resolution by TTL, and health state across tables; with
//! real TCP and TLS backends on loopback. Progress is observed through counters (the proxy's
//! metrics and health view, the DNS server's query count), never through elapsed time.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sniway_model::settings::{
    ActiveHealthCheck, LoadBalancer, PassiveHealthCheck, Probe, WhenAllUnhealthy,
};
use sniway_model::{Backend, BackendSettings, RoutingTable, WeightedBackend};
use sniway_proxy::ProxyConfig;
use sniway_testkit::TestCa;
use sniway_testkit::dns::DnsServer;
use support::tls::tls_backend;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A backend with fixed endpoints, a weight and settings.
fn backend(name: &str, weight: u32, addrs: &[SocketAddr], s: BackendSettings) -> WeightedBackend {
    WeightedBackend {
        weight,
        backend: Backend::endpoints(name, addrs.to_vec()),
        settings: Arc::new(s),
    }
}

fn table(backends: Vec<WeightedBackend>) -> Arc<RoutingTable> {
    mk_table(vec![(None, mk_route("r", backends))])
}

fn tcp_check(interval_ms: u64) -> ActiveHealthCheck {
    ActiveHealthCheck {
        probe: Probe::Tcp,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(500),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
    }
}

/// The value of the sample whose line starts with `series` (`name{labels}`), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn failures(r: &Running, backend: &str, reason: &str) -> f64 {
    let series = format!(
        "sniway_backend_connect_failures_total{{backend=\"{backend}\",reason=\"{reason}\"}}"
    );
    metric(&r.proxy.metrics_text(), &series)
}

fn attempts(r: &Running, backend: &str) -> f64 {
    let series = format!("sniway_backend_connect_attempts_total{{backend=\"{backend}\"}}");
    metric(&r.proxy.metrics_text(), &series)
}

/// The health view of endpoint `addr` of `backend`.
fn endpoint_view(r: &Running, backend: &str, addr: SocketAddr) -> serde_json::Value {
    let all = r.proxy.backend_health();
    all.as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["backend"] == backend)
        .flat_map(|b| b["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["address"] == addr.to_string())
        .unwrap_or(serde_json::Value::Null)
}

/// Polls `cond` every 20 ms until it holds; fails after `WAIT`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {WAIT:?}");
}

/// An address where nothing listens, on 127.0.0.3, where no other test binds (a port freed on
/// 127.0.0.1 may be taken again by a test running beside this one).
async fn closed_port() -> SocketAddr {
    let addr = dead_addr().await;
    SocketAddr::new([127, 0, 0, 3].into(), addr.port())
}

/// An echo backend (as `echo_backend`) on `addr` whose listening socket closes when the
/// returned task is aborted.
async fn stoppable_echo(name: &str, addr: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
    let mut bound = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                bound = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let listener = bound.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    (addr, serve_echo(listener, name))
}

/// An address whose SYNs are dropped: a listener that never accepts, with its accept queue
/// filled, so a connect to it hangs until the connect timeout. Returns what keeps it so.
fn blackhole() -> (SocketAddr, Vec<std::net::TcpStream>, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).expect("bind");
    s.listen(0).expect("listen");
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let f = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        f.set_nonblocking(true).unwrap();
        let _ = f.connect(&addr.into());
        fillers.push(f.into());
    }
    // Let the kernel settle the fillers' handshakes.
    std::thread::sleep(Duration::from_millis(50));
    (addr, fillers, s)
}

#[tokio::test]
async fn a_failed_connect_is_retried_on_the_next_endpoint_with_the_hello_replayed() {
    let dead = closed_port().await;
    let live = echo_backend("live").await;
    let r = start(table(vec![backend("b", 1, &[dead, live], Default::default())])).await;
    for i in 0..8 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live", "connection {i}");
    }
    assert!(failures(&r, "b", "refused") >= 1.0, "the dead endpoint was tried");
}

#[tokio::test]
async fn consecutive_failed_connects_eject_an_endpoint_and_no_later_connection_tries_it() {
    let dead = closed_port().await;
    let live = echo_backend("live").await;
    let r = start(table(vec![backend("b", 1, &[dead, live], Default::default())])).await;
    for _ in 0..20 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live");
    }
    // The default passive check: 3 failed connects eject for 30 s; none after that.
    assert_eq!(failures(&r, "b", "refused"), 3.0);
    let text = r.proxy.metrics_text();
    let labels = format!("{{backend=\"b\",endpoint=\"{dead}\"}}");
    assert_eq!(metric(&text, &format!("sniway_backend_ejections_total{labels}")), 1.0);
    assert_eq!(metric(&text, &format!("sniway_backend_endpoint_healthy{labels}")), 0.0);
    let view = endpoint_view(&r, "b", dead);
    assert_eq!(view["healthy"], false, "{view}");
    assert!(view["ejectedForMs"].as_u64().is_some(), "{view}");
}

#[tokio::test]
async fn a_blackholed_endpoint_times_out_once_per_attempt_and_every_connection_succeeds() {
    let (hole, _fillers, _keep) = blackhole();
    let live = echo_backend("live").await;
    let config =
        ProxyConfig { connect_timeout: Duration::from_millis(300), ..ProxyConfig::default() };
    let t = table(vec![backend("b", 1, &[hole, live], Default::default())]);
    let r = start_with(t, config, Duration::from_secs(1)).await;
    for i in 0..12 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live", "connection {i}");
    }
    // Three timeouts eject it; after that no connection waits for it.
    assert_eq!(failures(&r, "b", "timeout"), 3.0);
    assert_eq!(attempts(&r, "b"), 15.0);
}

#[tokio::test]
async fn failover_moves_to_another_backend_of_the_route_when_every_endpoint_fails() {
    let dead = closed_port().await;
    let other = echo_backend("other").await;
    let r = start(table(vec![
        backend("first", 1, &[dead], Default::default()),
        backend("second", 1, &[other], Default::default()),
    ]))
    .await;
    for _ in 0..12 {
        assert_eq!(which_backend(r.addr, "a.example").await, "other");
    }
    assert_eq!(failures(&r, "first", "refused"), 3.0, "ejected after three");
    let text = r.proxy.metrics_text();
    assert_eq!(metric(&text, "sniway_backend_failovers_total{backend=\"first\"}"), 3.0);
}

#[tokio::test]
async fn an_invalid_backend_keeps_its_share_refused_without_failover() {
    let good = echo_backend("good").await;
    let fallback = BackendSettings { fallback: true, ..Default::default() };
    let r =
        start(table(vec![mk_invalid("missing", 1), backend("backup", 0, &[good], fallback)])).await;
    for _ in 0..3 {
        let mut s = connect(r.addr).await;
        s.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
        assert_closed_silently(&mut s).await;
    }
    assert_eq!(attempts(&r, "backup"), 0.0);
}

#[tokio::test]
async fn weight_zero_without_fallback_never_gets_traffic() {
    let dead = closed_port().await;
    let spare = echo_backend("spare").await;
    let r = start(table(vec![
        backend("primary", 1, &[dead], Default::default()),
        backend("spare", 0, &[spare], Default::default()),
    ]))
    .await;
    for _ in 0..4 {
        let mut s = connect(r.addr).await;
        s.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
        assert_closed_silently(&mut s).await;
    }
    assert_eq!(attempts(&r, "spare"), 0.0);
}

#[tokio::test]
async fn the_fallback_backend_serves_only_while_the_primaries_are_down_and_gives_traffic_back() {
    let primary_addr = closed_port().await;
    let backup = echo_backend("backup").await;
    let check = BackendSettings { active_health: Some(tcp_check(30)), ..Default::default() };
    let fallback = BackendSettings { fallback: true, ..Default::default() };
    let r = start(table(vec![
        backend("primary", 100, &[primary_addr], check),
        backend("backup", 0, &[backup], fallback),
    ]))
    .await;
    for _ in 0..6 {
        assert_eq!(which_backend(r.addr, "a.example").await, "backup");
    }
    let text = r.proxy.metrics_text();
    assert_eq!(metric(&text, "sniway_backend_fallback_connections_total{backend=\"backup\"}"), 6.0);
    // The primary comes back: the active check readmits it and it takes every connection again.
    let (_, _task) = stoppable_echo("primary", primary_addr).await;
    until("primary readmitted", || endpoint_view(&r, "primary", primary_addr)["healthy"] == true)
        .await;
    for _ in 0..6 {
        assert_eq!(which_backend(r.addr, "a.example").await, "primary");
    }
    let text = r.proxy.metrics_text();
    assert_eq!(metric(&text, "sniway_backend_fallback_connections_total{backend=\"backup\"}"), 6.0);
}

#[tokio::test]
async fn refuse_when_all_unhealthy_makes_no_attempt_and_fail_open_still_tries() {
    let dead = closed_port().await;
    let passive =
        PassiveHealthCheck { consecutive_failures: 1, ejection_time: Duration::from_secs(60) };
    let refuse = BackendSettings {
        passive_health: Some(passive),
        when_all_unhealthy: Some(WhenAllUnhealthy::Refuse),
        failover_attempts: Some(1),
        ..Default::default()
    };
    let open = BackendSettings { when_all_unhealthy: None, ..refuse.clone() };
    let refusing = start(table(vec![backend("b", 1, &[dead], refuse)])).await;
    let opening = start(table(vec![backend("b", 1, &[dead], open)])).await;
    for r in [&refusing, &opening] {
        for _ in 0..3 {
            let mut s = connect(r.addr).await;
            s.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
            assert_closed_silently(&mut s).await;
        }
    }
    assert_eq!(attempts(&refusing, "b"), 1.0, "ejected after one failure, then refused");
    assert_eq!(attempts(&opening, "b"), 3.0, "fail open tries the ejected endpoint anyway");
    let closed = "sniway_connections_closed_total{listener=\"default/gw/any\",route=\"default/r#0\",backend=\"b\",reason=\"unhealthy\"}";
    assert_eq!(metric(&refusing.proxy.metrics_text(), closed), 2.0);
}

#[tokio::test]
async fn an_endpoint_failed_by_active_checks_gets_no_connection_until_it_passes_again() {
    let (a, task) = stoppable_echo("a", "127.0.0.1:0".parse().unwrap()).await;
    let b = echo_backend("b").await;
    let s = BackendSettings { active_health: Some(tcp_check(30)), ..Default::default() };
    let r = start(table(vec![backend("svc", 1, &[a, b], s)])).await;
    until("first check", || endpoint_view(&r, "svc", a)["activeCheck"] == "passing").await;
    task.abort();
    until("a failed by checks", || endpoint_view(&r, "svc", a)["activeCheck"] == "failing").await;
    for _ in 0..8 {
        assert_eq!(which_backend(r.addr, "a.example").await, "b");
    }
    assert_eq!(failures(&r, "svc", "refused"), 0.0, "no connection tried the failed endpoint");
    let (_, _task) = stoppable_echo("a", a).await;
    until("a passing again", || endpoint_view(&r, "svc", a)["healthy"] == true).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(which_backend(r.addr, "a.example").await);
    }
    assert!(seen.iter().any(|n| n == "a"), "{seen:?}");
    let text = r.proxy.metrics_text();
    let checks = "sniway_backend_health_checks_total{backend=\"svc\",result=\"failure\"}";
    assert!(metric(&text, checks) >= 1.0, "{text}");
}

#[tokio::test]
async fn a_passing_active_check_readmits_an_ejected_endpoint_at_once() {
    let (a, task) = stoppable_echo("a", "127.0.0.1:0".parse().unwrap()).await;
    let passive =
        PassiveHealthCheck { consecutive_failures: 1, ejection_time: Duration::from_secs(300) };
    // Checks far apart, unhealthy only after many failures: the ejection is passive.
    let check = ActiveHealthCheck { unhealthy_threshold: 100, ..tcp_check(50) };
    let s = BackendSettings {
        active_health: Some(check),
        passive_health: Some(passive),
        failover_attempts: Some(1),
        ..Default::default()
    };
    task.abort();
    let r = start(table(vec![backend("svc", 1, &[a], s)])).await;
    let mut c = connect(r.addr).await;
    c.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
    assert_closed_silently(&mut c).await;
    assert!(endpoint_view(&r, "svc", a)["ejectedForMs"].is_u64());
    let (_, _task) = stoppable_echo("a", a).await;
    until("readmitted", || endpoint_view(&r, "svc", a)["healthy"] == true).await;
    assert_eq!(which_backend(r.addr, "a.example").await, "a");
}

#[tokio::test]
async fn tls_probes_expect_a_server_hello_and_with_verify_the_right_certificate() {
    let ca = TestCa::new("backend CA");
    let other = TestCa::new("another CA");
    let (_, good_cfg) = ca.backend_config(&["app.example"]);
    let (_, wrong_cfg) = other.backend_config(&["app.example"]);
    let good = tls_backend("good", good_cfg).await;
    let wrong = tls_backend("wrong", wrong_cfg).await;
    let plain = echo_backend("plain").await;
    let probe = |verify| Probe::Tls {
        sni: Some("app.example".into()),
        verify,
        ca_pem: vec![ca.pem()],
        ca_sources: vec!["default/app-ca".into()],
    };
    let check = |verify| BackendSettings {
        active_health: Some(ActiveHealthCheck { probe: probe(verify), ..tcp_check(30) }),
        ..Default::default()
    };
    let t = mk_table(vec![
        (
            Some("hello.example"),
            mk_route("h", vec![backend("hello", 1, &[good, wrong, plain], check(false))]),
        ),
        (
            Some("verify.example"),
            mk_route("v", vec![backend("verify", 1, &[good, wrong], check(true))]),
        ),
    ]);
    let r = start(t).await;
    let state = |b: &str, a| endpoint_view(&r, b, a)["activeCheck"].clone();
    until("every endpoint checked", || {
        [state("hello", good), state("hello", wrong), state("hello", plain)]
            .iter()
            .chain([state("verify", good), state("verify", wrong)].iter())
            .all(|s| !s.is_null())
    })
    .await;
    assert_eq!(state("hello", good), "passing");
    assert_eq!(state("hello", wrong), "passing", "without verify any ServerHello passes");
    assert_eq!(state("hello", plain), "failing", "no ServerHello from a plain TCP server");
    assert_eq!(state("verify", good), "passing");
    assert_eq!(state("verify", wrong), "failing", "a certificate from another CA fails");
}

#[tokio::test]
async fn least_connections_and_two_choices_send_the_next_connection_to_the_idle_endpoint() {
    for lb in [LoadBalancer::LeastConnections, LoadBalancer::PowerOfTwoChoices] {
        let a = echo_backend("a").await;
        let b = echo_backend("b").await;
        let s = BackendSettings { load_balancer: Some(lb), ..Default::default() };
        let r = start(table(vec![backend("svc", 1, &[a, b], s)])).await;
        // Connections held open: each new one goes to the endpoint with fewer.
        let mut held = Vec::new();
        let mut names = Vec::new();
        for _ in 0..6 {
            let mut c = connect(r.addr).await;
            c.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
            names.push(read_line(&mut c).await);
            held.push(c);
        }
        for pair in names.chunks(2) {
            assert_ne!(pair[0], pair[1], "{lb:?}: {names:?}");
        }
        drop(held);
    }
}

#[tokio::test]
async fn round_robin_takes_endpoints_in_turn() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let r = start(table(vec![backend("svc", 1, &[a, b], Default::default())])).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(which_backend(r.addr, "a.example").await);
    }
    assert!(seen[0] != seen[1] && seen[0] == seen[2] && seen[1] == seen[3], "{seen:?}");
}

#[tokio::test]
async fn endpoint_health_survives_a_reload_and_an_endpoint_that_leaves_forgets_it() {
    let dead = closed_port().await;
    let live = echo_backend("live").await;
    let passive =
        PassiveHealthCheck { consecutive_failures: 1, ejection_time: Duration::from_secs(300) };
    let s = BackendSettings { passive_health: Some(passive), ..Default::default() };
    let r = start(table(vec![backend("b", 1, &[dead, live], s.clone())])).await;
    for _ in 0..4 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live");
    }
    assert_eq!(failures(&r, "b", "refused"), 1.0);
    // A new table with the same backend (another route name): the ejection holds.
    let again =
        mk_table(vec![(None, mk_route("r2", vec![backend("b", 1, &[dead, live], s.clone())]))]);
    r.proxy.install(again);
    for _ in 0..4 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live");
    }
    assert_eq!(failures(&r, "b", "refused"), 1.0, "still ejected after the reload");
    // Without the endpoint, then with it again: it starts afresh, healthy.
    r.proxy.install(table(vec![backend("b", 1, &[live], s.clone())]));
    assert!(endpoint_view(&r, "b", dead).is_null());
    let gauge = format!("sniway_backend_endpoint_healthy{{backend=\"b\",endpoint=\"{dead}\"}}");
    assert!(!r.proxy.metrics_text().contains(&gauge), "the gauge of an endpoint that left is gone");
    r.proxy.install(table(vec![backend("b", 1, &[dead, live], s)]));
    for _ in 0..4 {
        assert_eq!(which_backend(r.addr, "a.example").await, "live");
    }
    assert_eq!(failures(&r, "b", "refused"), 2.0, "tried again once, then ejected again");
}

#[tokio::test]
async fn the_active_checker_stops_when_no_table_uses_its_backend() {
    let a = echo_backend("a").await;
    let other = echo_backend("other").await;
    let s = BackendSettings { active_health: Some(tcp_check(20)), ..Default::default() };
    let r = start(table(vec![backend("svc", 1, &[a], s)])).await;
    let checks = |r: &Running| {
        metric(
            &r.proxy.metrics_text(),
            "sniway_backend_health_checks_total{backend=\"svc\",result=\"success\"}",
        )
    };
    until("checks run", || checks(&r) >= 2.0).await;
    r.proxy.install(table(vec![backend("other", 1, &[other], Default::default())]));
    assert_eq!(which_backend(r.addr, "a.example").await, "other");
    // At most the round under way finishes; then the count stays.
    let after = checks(&r);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(checks(&r) <= after + 1.0, "{} checks after removal", checks(&r) - after);
}

#[tokio::test]
async fn dns_backends_follow_a_changed_answer_after_its_ttl_and_not_before() {
    // Two backends on the same port of 127.0.0.1 and 127.0.0.2.
    let (one, _t1) = stoppable_echo("one", "127.0.0.1:0".parse().unwrap()).await;
    let (two, _t2) =
        stoppable_echo("two", SocketAddr::new([127, 0, 0, 2].into(), one.port())).await;
    let dns = DnsServer::start(Ipv4Addr::new(127, 0, 0, 1), 2).await;
    let config = ProxyConfig { dns_server: Some(dns.addr), ..ProxyConfig::default() };
    let b = WeightedBackend::new(
        1,
        Backend::Dns { name: "ext".into(), host: "backend.test.".into(), port: two.port() },
    );
    let r = start_with(table(vec![b]), config, Duration::from_secs(1)).await;
    for _ in 0..5 {
        assert_eq!(which_backend(r.addr, "a.example").await, "one");
    }
    assert_eq!(dns.queries(), 1, "resolved once for five connections");
    dns.set_answer(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(which_backend(r.addr, "a.example").await, "one", "the cached answer holds");
    assert_eq!(dns.queries(), 1);
    // Once the TTL has passed, the next connection asks again and follows the new answer.
    let mut switched = false;
    for _ in 0..100 {
        let before = dns.queries();
        let name = which_backend(r.addr, "a.example").await;
        if name == "two" {
            assert_eq!(before + 1, dns.queries(), "a new answer only from a new query");
            switched = true;
            break;
        }
        assert_eq!(dns.queries(), 1, "the old answer only while cached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the new answer was never used");
    assert_eq!(dns.queries(), 2);
}

#[tokio::test]
async fn a_policy_connect_timeout_and_attempts_bound_each_connection() {
    let holes: Vec<_> = (0..3).map(|_| blackhole()).collect();
    let addrs: Vec<SocketAddr> = holes.iter().map(|h| h.0).collect();
    // The proxy's default would wait a minute per attempt; the policy's 200 ms applies.
    let config = ProxyConfig { connect_timeout: Duration::from_secs(60), ..ProxyConfig::default() };
    let s = BackendSettings {
        connect_timeout: Some(Duration::from_millis(200)),
        failover_attempts: Some(2),
        passive_health: Some(PassiveHealthCheck {
            consecutive_failures: 0,
            ejection_time: Duration::from_secs(30),
        }),
        ..Default::default()
    };
    let r =
        start_with(table(vec![backend("b", 1, &addrs, s)]), config, Duration::from_secs(1)).await;
    for i in 1..=3 {
        let mut c = connect(r.addr).await;
        c.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
        assert_closed_silently(&mut c).await;
        assert_eq!(attempts(&r, "b"), (2 * i) as f64, "two attempts per connection");
        assert_eq!(failures(&r, "b", "timeout"), (2 * i) as f64);
    }
}

#[tokio::test]
async fn with_a_healthy_primary_the_fallback_backend_gets_nothing() {
    let primary = echo_backend("primary").await;
    let backup = echo_backend("backup").await;
    let fallback = BackendSettings { fallback: true, ..Default::default() };
    // Even with a weight of its own, a fallback backend is not in the weighted choice.
    let r = start(table(vec![
        backend("primary", 1, &[primary], Default::default()),
        backend("backup", 5, &[backup], fallback),
    ]))
    .await;
    for _ in 0..10 {
        assert_eq!(which_backend(r.addr, "a.example").await, "primary");
    }
    assert_eq!(attempts(&r, "backup"), 0.0);
}

#[tokio::test]
async fn only_a_backend_sent_the_same_proxy_header_takes_over() {
    use sniway_model::settings::ProxyProtocolVersion;
    let dead = closed_port().await;
    let plain = echo_backend("plain").await;
    let v1 = echo_backend("v1").await;
    let with = |version, fallback| BackendSettings {
        proxy_protocol: Some(version),
        fallback,
        ..Default::default()
    };
    let r = start(table(vec![
        backend("primary", 1, &[dead], with(ProxyProtocolVersion::V1, false)),
        backend("plain", 0, &[plain], with(ProxyProtocolVersion::Off, true)),
        backend("v1", 0, &[v1], with(ProxyProtocolVersion::V1, true)),
    ]))
    .await;
    for _ in 0..4 {
        let mut c = connect(r.addr).await;
        c.write_all(&sniway_testkit::hello("a.example")).await.unwrap();
        assert_eq!(read_line(&mut c).await, "v1");
        // The header prepared for the chosen backend reached the one that takes it.
        assert_eq!(&read_exact(&mut c, 6).await, b"PROXY ");
    }
    assert_eq!(attempts(&r, "plain"), 0.0, "never sent a header it does not expect");
}
