//! Route lookup in a [`HostIndex`] of 10, 1,000 and 100,000 routes (half exact names, half
//! wildcards): the cost should not grow with the number of routes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sniway_model::{HostIndex, HostPattern};

fn index(n: usize) -> HostIndex<usize> {
    let mut idx = HostIndex::new();
    for i in 0..n {
        let host = if i % 2 == 0 {
            format!("svc{i}.ns{}.example.com", i % 97)
        } else {
            format!("*.tenant{i}.example.com")
        };
        idx.insert_first(Some(&HostPattern::parse(&host)), i);
    }
    idx
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [10usize, 1_000, 100_000] {
        let idx = index(n);
        let last_exact = (n - 1) / 2 * 2;
        let exact = format!("svc{last_exact}.ns{}.example.com", last_exact % 97);
        let wildcard = format!("a.b.tenant{}.example.com", n - 1);
        let miss = "nothing.here.example.org".to_string();
        for (kind, name) in [("exact", &exact), ("wildcard", &wildcard), ("miss", &miss)] {
            assert_eq!(idx.lookup(name).is_some(), kind != "miss", "{kind} at {n}");
            g.bench_with_input(BenchmarkId::new(kind, n), name, |b, name| {
                b.iter(|| idx.lookup(black_box(name)).copied())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
