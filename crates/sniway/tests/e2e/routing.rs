//! Routing decisions counted over real connections: weighted splits, refused shares, SNI rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

/// Opens `n` connections (at most 16 at a time), each sending `hello`, and counts what answered;
/// refused connections count under "".
async fn tally(gw: SocketAddr, hello: &[u8], n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let hello = std::sync::Arc::new(hello.to_vec());
    for batch in 0..n.div_ceil(16) {
        let mut tasks = Vec::new();
        for _ in 0..16.min(n - batch * 16) {
            let hello = hello.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(gw).await.unwrap();
                s.write_all(&hello).await.unwrap();
                let (got, closed) = read_all_until_closed(&mut s, Duration::from_secs(20)).await;
                assert!(closed, "connection left open");
                String::from_utf8(got).unwrap()
            }));
        }
        for t in tasks {
            *counts.entry(t.await.unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

/// |observed - expected| within 6 standard deviations of a binomial count.
fn assert_binomial(observed: usize, n: usize, p: f64, what: &str) {
    let expected = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    let off = (observed as f64 - expected).abs();
    assert!(
        off <= 6.0 * sigma,
        "{what}: {observed} of {n}, expected {expected:.0} ± {:.0}",
        6.0 * sigma
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_split_by_weight_and_weight_zero_gets_none() {
    let tls = Tls::new();
    let (heavy, light, zero) =
        (name_backend("heavy").await, name_backend("light").await, name_backend("zero").await);
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("split", "gw", &["app.example.com"], &[("heavy", 3), ("light", 1), ("zero", 0)]),
        service("heavy", 443, heavy),
        service("light", 443, light),
        service("zero", 443, zero),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let n = 800;
    let counts = tally(gw.addr, &tls.client_hello("app.example.com"), n).await;
    assert_eq!(counts.get("zero"), None, "{counts:?}");
    assert_eq!(counts.get(""), None, "refused connections: {counts:?}\n{}", gw.log());
    assert_eq!(counts.values().sum::<usize>(), n);
    assert_binomial(counts.get("heavy").copied().unwrap_or(0), n, 0.75, "heavy (weight 3 of 4)");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_backend_keeps_its_share_and_those_connections_are_refused() {
    let tls = Tls::new();
    let good = name_backend("good").await;
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("half", "gw", &["app.example.com"], &[("good", 1), ("missing", 1)]),
        service("good", 443, good),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let n = 400;
    let counts = tally(gw.addr, &tls.client_hello("app.example.com"), n).await;
    assert_eq!(counts.values().sum::<usize>(), n);
    assert_binomial(counts.get("").copied().unwrap_or(0), n, 0.5, "refused (invalid half)");
    assert_binomial(counts.get("good").copied().unwrap_or(0), n, 0.5, "good half");
}

/// The TLSRoute guide's multi-hostname route, verbatim: each rule's `matches[].snis` goes to that
/// rule's backend (a v1alpha2 form outside the Gateway API that sniway accepts with a warning).
#[tokio::test(flavor = "multi_thread")]
async fn the_tlsroute_guide_multi_hostname_route_sends_each_sni_to_its_rule_backend() {
    let tls = Tls::new();
    let (api, db, internal) =
        (name_backend("api").await, name_backend("db").await, name_backend("internal").await);
    let port = free_port();
    let route = std::fs::read_to_string(format!(
        "{}/../../examples/tlsroute-guide/multi-hostname.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let gateway =
        passthrough_gateway("tls-gateway", port).replace("name: tls\n", "name: tls-passthrough\n");
    let manifests = [
        gateway,
        format!("---\n{route}"),
        service("api-service", 443, api),
        service("database-service", 5432, db),
        service("internal-service", 443, internal),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    assert!(gw.log().contains("not part of the Gateway API"), "{}", gw.log());
    for (sni, want) in [
        ("api.example.com", "api"),
        ("db.example.com", "db"),
        ("a.internal.example.com", "internal"),
        ("a.b.internal.example.com", "internal"),
        ("internal.example.com", ""),
        ("www.example.com", ""),
    ] {
        let counts = tally(gw.addr, &tls.client_hello(sni), 1).await;
        assert_eq!(counts.get(want), Some(&1), "{sni}: {counts:?}\n{}", gw.log());
    }
}

/// Conformance `TLSRouteHostnameIntersection`, with its golden manifests (four Gateways on one
/// port, each on its own loopback address) served by the binary and checked with real hellos.
#[tokio::test(flavor = "multi_thread")]
async fn hostname_intersection_conformance_routes_and_rejects_as_the_suite_expects() {
    let tls = Tls::new();
    let (one, two) = (name_backend("tls-backend").await, name_backend("tls-backend-2").await);
    let port = free_port();
    let golden = std::fs::read_to_string(format!(
        "{}/../sniway-compile/tests/testdata/tlsroute-hostname-intersection.in.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let manifests = golden
        .replace("protocol: TLS\n    port: 443\n", &format!("protocol: TLS\n    port: {port}\n"))
        .replace("port: 18443", &format!("port: {}", one.port()))
        .replace("port: 18444", &format!("port: {}", two.port()));
    assert_eq!(manifests.matches(&format!("port: {port}\n")).count(), 4, "{manifests}");
    let gw = Gateway::start(&manifests, port, &[]);
    let at = |host: u8| -> SocketAddr { gw.at([127, 0, 0, host], port) };
    let cases = [
        (1, "abc.example.com", "tls-backend"),
        (2, "abc.example.com", "tls-backend"),
        (3, "abc.example.com", "tls-backend"),
        (4, "abc.example.com", "tls-backend"),
        (2, "other.example.com", "tls-backend-2"),
        (3, "other.example.com", "tls-backend-2"),
        (4, "other.example.com", "tls-backend-2"),
        (1, "other.example.com", ""),
        (1, "non.matching.com", ""),
        (2, "non.matching.com", ""),
        (3, "non.matching.com", ""),
        (4, "non.matching.org", ""),
    ];
    for (host, sni, want) in cases {
        let counts = tally(at(host), &tls.client_hello(sni), 1).await;
        assert_eq!(counts.get(want), Some(&1), "gateway x-{host}, {sni}: {counts:?}\n{}", gw.log());
    }
}
