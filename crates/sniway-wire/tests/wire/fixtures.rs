//! Real ClientHellos, fed in every way a socket and a client could deliver them.

use sniway_wire::{ClientHello, HelloError, MAX_HELLO_LEN, ServerName, parse_client_hello};

use sniway_testkit::{frame, handshake_bytes, large_hello, record};

use crate::support::{Fixture, XorShift, fixtures, parse_complete, parse_err};

fn check(fixture: &Fixture, hello: &ClientHello) {
    let name = fixture.name;
    assert_eq!(hello.server_name, fixture.server_name, "{name}");
    let alpn: Vec<&[u8]> = hello.alpn.iter().map(Vec::as_slice).collect();
    let expected: Vec<&[u8]> = fixture.alpn.iter().map(|p| p.as_bytes()).collect();
    assert_eq!(alpn, expected, "{name}");
    assert_eq!(hello.legacy_version, fixture.legacy_version, "{name}");
    assert_eq!(hello.supported_versions, fixture.supported_versions, "{name}");
    assert!(!hello.has_ech, "{name}");
}

/// Same facts, ignoring where the records ended.
fn same_facts(a: &ClientHello, b: &ClientHello) -> bool {
    ClientHello { record_bytes: 0, ..a.clone() } == ClientHello { record_bytes: 0, ..b.clone() }
}

#[test]
fn every_fixture_parses_with_the_expected_sni_and_alpn() {
    for fixture in fixtures() {
        let hello = parse_complete(fixture.bytes);
        check(&fixture, &hello);
        assert_eq!(hello.record_bytes, fixture.bytes.len(), "{}", fixture.name);
    }
}

#[test]
fn the_split_fixtures_really_are_split_and_carry_the_same_hello_as_their_source() {
    let all = fixtures();
    for fixture in &all {
        let handshake = handshake_bytes(fixture.bytes);
        assert_eq!(
            fixture.bytes.len() - handshake.len(),
            5 * fixture.records,
            "{}: record count",
            fixture.name
        );
    }
    for (split, source) in [
        (1, 0), // curl, 7 records
        (4, 3), // openssl 62 ALPN, 196 records
    ] {
        assert_eq!(handshake_bytes(all[split].bytes), handshake_bytes(all[source].bytes));
    }
}

#[test]
fn at_least_one_fixture_is_over_1500_bytes() {
    assert!(fixtures().iter().any(|f| f.records == 1 && f.bytes.len() > 1500));
}

/// Feeding growing prefixes is how the data plane reads a hello, so this also covers every split
/// of the byte stream into reads: the parser keeps no state, only the prefix matters.
#[test]
fn every_strict_prefix_of_every_fixture_needs_more_bytes() {
    for fixture in fixtures() {
        for len in 0..fixture.bytes.len() {
            assert_eq!(
                parse_client_hello(&fixture.bytes[..len]),
                Ok(None),
                "{} prefix {len}",
                fixture.name
            );
        }
    }
}

#[test]
fn bytes_after_the_hello_do_not_change_the_result() {
    let mut rng = XorShift::new(7);
    for fixture in fixtures() {
        let expected = parse_complete(fixture.bytes);
        let mut stream = fixture.bytes.to_vec();
        // A client may pipeline: change_cipher_spec, early data, or anything at all.
        stream.extend(record(20, &[1]));
        stream.extend(record(23, &[0xee; 100]));
        stream.extend((0..300).map(|_| rng.byte()));
        for len in fixture.bytes.len()..=stream.len() {
            assert_eq!(parse_complete(&stream[..len]), expected, "{} len {len}", fixture.name);
        }
    }
}

#[test]
fn reframing_every_fixture_into_records_of_1_to_64_bytes_and_larger_parses_the_same() {
    let sizes = (1..=64).chain([100, 255, 256, 1000, 1500, 4096, 16384]);
    for fixture in fixtures() {
        let expected = parse_complete(fixture.bytes);
        let handshake = handshake_bytes(fixture.bytes);
        for size in sizes.clone() {
            let stream = frame(&handshake, size);
            let hello = parse_complete(&stream);
            assert!(same_facts(&hello, &expected), "{} size {size}", fixture.name);
            assert_eq!(hello.record_bytes, stream.len(), "{} size {size}", fixture.name);
        }
    }
}

#[test]
fn every_prefix_of_fixtures_reframed_into_small_records_needs_more_bytes() {
    let mut handshakes: Vec<(&str, Vec<u8>)> =
        fixtures().iter().map(|f| (f.name, handshake_bytes(f.bytes))).collect();
    // The split fixtures carry the same handshake bytes as their sources.
    handshakes.sort_by(|a, b| a.1.cmp(&b.1));
    handshakes.dedup_by(|a, b| a.1 == b.1);
    for (name, handshake) in handshakes {
        for size in [1, 2, 3, 7, 64] {
            let stream = frame(&handshake, size);
            for len in 0..stream.len() {
                assert_eq!(
                    parse_client_hello(&stream[..len]),
                    Ok(None),
                    "{name} size {size} prefix {len}"
                );
            }
        }
    }
}

#[test]
fn a_synthetic_20_kib_post_quantum_hello_parses_in_every_framing_that_fits_the_cap() {
    let builder = large_hello(20 * 1024);
    let handshake = builder.message();
    assert!(handshake.len() >= 20 * 1024 - 8, "{}", handshake.len());
    let reference = parse_complete(&builder.records());
    assert_eq!(reference.server_name, ServerName::Host("pq.example.com".into()));
    assert_eq!(reference.alpn, vec![b"h2".to_vec()]);
    assert_eq!(reference.supported_versions, vec![0x0304]);

    for size in (1..=64).chain([100, 1000, 4096, 16384]) {
        let stream = frame(&handshake, size);
        if stream.len() > MAX_HELLO_LEN {
            // One- and two-byte records add 500% and 250% of header overhead.
            assert_eq!(parse_err(&stream), HelloError::TooLarge, "size {size}");
            continue;
        }
        let hello = parse_complete(&stream);
        assert!(same_facts(&hello, &reference), "size {size}");
        assert_eq!(hello.record_bytes, stream.len());
    }
}

#[test]
fn every_prefix_of_the_20_kib_hello_needs_more_bytes() {
    for size in [16384, 1000] {
        let stream = frame(&large_hello(20 * 1024).message(), size);
        for len in 0..stream.len() {
            assert_eq!(parse_client_hello(&stream[..len]), Ok(None), "size {size} prefix {len}");
        }
        parse_complete(&stream);
    }
}

#[test]
fn a_16_kib_hello_fits_the_cap_even_in_two_byte_records() {
    let handshake = large_hello(16 * 1024).message();
    let stream = frame(&handshake, 2);
    assert!(stream.len() < MAX_HELLO_LEN);
    assert_eq!(parse_complete(&stream).server_name, ServerName::Host("pq.example.com".into()));
}
