//! Load and compile of 10,000 TLSRoutes on one listener, through the public API, from generated
//! YAML as `sniway run -f` would read it.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sniway_compile::{CompileOptions, LoadOptions, Source, compile, load};

const ROUTES: usize = 10_000;

fn manifests(routes: usize) -> String {
    let mut y = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sniway}\n\
         spec: {controllerName: sniway.io/gateway-controller}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  \
         gatewayClassName: sniway\n  listeners:\n  - {name: tls, protocol: TLS, port: 443, \
         tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: backend}\nspec:\n  ports: [{port: 443}]\n  \
         clusterIP: 10.0.0.1\n",
    );
    for i in 0..routes {
        let host = if i % 4 == 3 {
            format!("\"*.tenant{i}.example.com\"")
        } else {
            format!("svc{i}.example.com")
        };
        write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: r{i}}}\n\
             spec:\n  parentRefs: [{{name: gw, sectionName: tls}}]\n  hostnames: [{host}]\n  \
             rules:\n  - backendRefs: [{{name: backend, port: 443}}]\n"
        )
        .unwrap();
    }
    y
}

fn bench(c: &mut Criterion) {
    let text = manifests(ROUTES);
    let sources = [Source { name: "routes.yaml".into(), text }];
    let opts = CompileOptions {
        default_bind: "127.0.0.1".parse().unwrap(),
        now: "2026-11-22T00:00:00Z".into(),
        ..Default::default()
    };
    let loaded = load(&sources, &LoadOptions::default()).unwrap();
    assert_eq!(compile(&loaded.resources, &opts).table.route_count(), ROUTES);

    let mut g = c.benchmark_group("tlsroutes_10k");
    g.sample_size(10);
    g.bench_function("load", |b| {
        b.iter(|| load(black_box(&sources), &LoadOptions::default()).unwrap())
    });
    g.bench_function("compile", |b| b.iter(|| compile(black_box(&loaded.resources), &opts)));
    g.bench_function("load_and_compile", |b| {
        b.iter(|| {
            let l = load(black_box(&sources), &LoadOptions::default()).unwrap();
            compile(&l.resources, &opts).table.route_count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
