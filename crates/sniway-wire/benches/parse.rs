//! ClientHello parsing: whole hellos as captured, and the same bytes fed in pieces the way the
//! data plane does (the parser is called on every growing prefix until it says complete).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sniway_wire::parse_client_hello;

const CURL: &[u8] = include_bytes!("../tests/data/curl-7.88-sni-capture.example.com.bin");
const CURL_7_RECORDS: &[u8] =
    include_bytes!("../tests/data/curl-7.88-sni-capture.example.com-split-7-records.bin");
const BIG: &[u8] = include_bytes!("../tests/data/openssl-3.0-sni-capture.example.com-62-alpn.bin");
const BIG_196_RECORDS: &[u8] = include_bytes!(
    "../tests/data/openssl-3.0-sni-capture.example.com-62-alpn-split-196-records.bin"
);

fn whole(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_whole");
    for (name, bytes) in [
        ("curl_517B", CURL),
        ("curl_547B_7_records", CURL_7_RECORDS),
        ("openssl_1963B", BIG),
        ("openssl_2938B_196_records", BIG_196_RECORDS),
    ] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| parse_client_hello(black_box(bytes)).unwrap().unwrap())
        });
    }
    g.finish();
}

/// Calls the parser on each prefix ending at a multiple of `step`, then on the whole: the cost of
/// a hello that arrives in `len / step` reads.
fn fed(bytes: &[u8], step: usize) -> usize {
    let mut end = step.min(bytes.len());
    loop {
        match parse_client_hello(black_box(&bytes[..end])).unwrap() {
            Some(h) => return h.record_bytes,
            None => end = (end + step).min(bytes.len()),
        }
    }
}

fn pieces(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_in_pieces");
    for (name, bytes, step) in [
        ("curl_517B_in_2", CURL, 300),
        ("openssl_1963B_in_2", BIG, 1000),
        ("openssl_1963B_in_20", BIG, 100),
        ("openssl_2938B_196_records_in_30", BIG_196_RECORDS, 100),
    ] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| b.iter(|| fed(bytes, step)));
    }
    g.finish();
}

criterion_group!(benches, whole, pieces);
criterion_main!(benches);
