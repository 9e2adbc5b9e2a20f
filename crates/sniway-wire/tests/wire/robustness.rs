//! Random and mutated input: never a panic, and non-TLS input is refused within a few bytes.

use sniway_wire::{MAX_HELLO_LEN, parse_client_hello};

use crate::support::{XorShift, fixtures};

#[test]
fn random_bytes_never_panic_and_are_refused_within_four_bytes_unless_they_look_like_tls() {
    let mut rng = XorShift::new(0x5eed_0001);
    for _ in 0..20_000 {
        let len = rng.below(300);
        let buf: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        let result = parse_client_hello(&buf);
        assert!(!matches!(result, Ok(Some(_))), "random bytes parsed as a hello: {buf:?}");
        if buf.len() >= 4 && buf[0] != 22 {
            assert!(parse_client_hello(&buf[..4]).is_err(), "{:?}", &buf[..4]);
        }
    }
}

#[test]
fn random_bytes_behind_a_handshake_record_header_never_panic() {
    let mut rng = XorShift::new(0x5eed_0002);
    for _ in 0..20_000 {
        let len = rng.below(600);
        let mut buf = vec![22, 3, 1 + rng.byte() % 3];
        buf.extend((0..len).map(|_| rng.byte()));
        // Often a plausible record length and a ClientHello type, to get past the first checks.
        if buf.len() > 5 && rng.below(2) == 0 {
            buf[3] = 0;
            buf[4] = u8::try_from((len - 2).min(255)).unwrap();
            buf[5] = 1;
        }
        let _ = parse_client_hello(&buf);
    }
}

#[test]
fn twenty_thousand_mutated_fixtures_never_panic() {
    let fixtures = fixtures();
    let mut rng = XorShift::new(0x5eed_0003);
    let mut outcomes = [0_usize; 3];
    for _ in 0..20_000 {
        let fixture = &fixtures[rng.below(fixtures.len())];
        let mut buf = fixture.bytes.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(buf.len());
            match rng.below(6) {
                0 => buf[at] ^= 1 << rng.below(8),
                1 => buf[at] = rng.byte(),
                2 => buf[at] = 0,
                3 => buf[at] = 0xff,
                4 => {
                    buf.remove(at);
                }
                _ => buf.insert(at, rng.byte()),
            }
            if buf.is_empty() {
                break;
            }
        }
        match parse_client_hello(&buf) {
            Ok(None) => {
                assert!(buf.len() < MAX_HELLO_LEN);
                outcomes[0] += 1;
            }
            Ok(Some(hello)) => {
                assert!(hello.record_bytes <= buf.len());
                outcomes[1] += 1;
            }
            Err(_) => outcomes[2] += 1,
        }
    }
    // The mutations reach every outcome, so the test is exercising the parser, not one early exit.
    assert!(outcomes.iter().all(|&n| n > 100), "{outcomes:?}");
}
