//! One rule per test: what is refused, what is merely unroutable, and how early.

use sniway_wire::{HelloError, MAX_HELLO_LEN, ServerName, parse_client_hello};

use sniway_testkit::{
    EXT_ALPN, EXT_ECH, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, HelloBuilder, frame, record,
    sni_list,
};

use crate::support::{parse_complete, parse_err};

fn malformed(builder: &HelloBuilder) {
    let stream = builder.records();
    assert!(
        matches!(parse_client_hello(&stream), Err(HelloError::Malformed(_))),
        "{:?}",
        parse_client_hello(&stream)
    );
}

#[test]
fn an_empty_buffer_needs_more_bytes() {
    assert_eq!(parse_client_hello(&[]), Ok(None));
}

#[test]
fn an_http_request_is_not_tls_after_one_byte() {
    assert_eq!(parse_err(b"G"), HelloError::NotTls);
    assert_eq!(parse_err(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), HelloError::NotTls);
}

#[test]
fn an_ssh_banner_is_not_tls_after_one_byte() {
    assert_eq!(parse_err(b"S"), HelloError::NotTls);
    assert_eq!(parse_err(b"SSH-2.0-OpenSSH_9.6\r\n"), HelloError::NotTls);
}

#[test]
fn an_sslv2_client_hello_is_refused_after_four_bytes() {
    // SSLv2-compatible hello as old clients sent it: length 0x2e with the high bit, MSG-CLIENT-HELLO,
    // version 3.1, then cipher specs, session id and challenge lengths and data.
    let mut hello = vec![0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10];
    hello.extend_from_slice(&[0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x00, 0x00, 0x0a]);
    hello.extend_from_slice(&[0x01, 0x00, 0x80, 0x07, 0x00, 0xc0, 0x03, 0x00, 0x80, 0x00, 0x00]);
    hello.extend_from_slice(&[0x04, 0x00, 0xff]);
    hello.extend_from_slice(&[0xab; 16]);
    for len in 0..4 {
        assert_eq!(parse_client_hello(&hello[..len]), Ok(None), "prefix {len}");
    }
    assert_eq!(parse_err(&hello[..4]), HelloError::SslV2);
    assert_eq!(parse_err(&hello), HelloError::SslV2);
    // SSL 2.0 proper (version 0x0002).
    assert_eq!(parse_err(&[0x80, 0x2e, 0x01, 0x00, 0x02]), HelloError::SslV2);
}

#[test]
fn a_high_first_byte_without_the_sslv2_pattern_is_not_tls() {
    assert_eq!(parse_err(&[0xff, 0xff, 0x02]), HelloError::NotTls);
    assert_eq!(parse_err(&[0x80, 0x2e, 0x01, 0x7f]), HelloError::NotTls);
}

#[test]
fn an_alert_record_before_the_hello_is_not_handshake() {
    assert_eq!(parse_err(&record(21, &[2, 40])[..2]), HelloError::NotHandshake);
    assert_eq!(parse_err(&record(21, &[2, 40])), HelloError::NotHandshake);
    assert_eq!(parse_err(&record(23, b"data")), HelloError::NotHandshake);
}

#[test]
fn a_non_handshake_record_between_fragments_is_not_handshake() {
    let message = HelloBuilder::default().sni(b"example.com").message();
    let mut stream = frame(&message[..10], 10);
    let mut rest = frame(&message[10..], 1 << 14);
    stream.extend(record(20, &[1]));
    assert_eq!(parse_err(&stream[..stream.len() - 5]), HelloError::NotHandshake);
    stream.append(&mut rest);
    assert_eq!(parse_err(&stream), HelloError::NotHandshake);
}

#[test]
fn a_handshake_other_than_client_hello_is_refused_from_its_first_byte() {
    // ServerHello (2) where a ClientHello should be.
    assert_eq!(parse_err(&[22, 3, 3, 0, 50, 2]), HelloError::NotClientHello);
    let mut message = HelloBuilder::default().message();
    message[0] = 2;
    assert_eq!(parse_err(&frame(&message, 1)[..6]), HelloError::NotClientHello);
}

#[test]
fn record_versions_outside_ssl3_to_tls13_are_refused() {
    assert_eq!(parse_err(&[22, 2]), HelloError::UnsupportedRecordVersion);
    assert_eq!(parse_err(&[22, 3, 5]), HelloError::UnsupportedRecordVersion);
    let mut stream = HelloBuilder::default().records();
    stream[2] = 0;
    assert!(parse_client_hello(&stream).unwrap().is_some(), "SSL 3.0 record version is fine");
    let mut split = frame(&HelloBuilder::default().message(), 10);
    split[15 + 1] = 4;
    assert_eq!(parse_err(&split), HelloError::UnsupportedRecordVersion);
}

#[test]
fn a_record_longer_than_two_to_the_fourteen_is_refused_from_its_header() {
    assert_eq!(parse_err(&[22, 3, 1, 0x40, 0x01]), HelloError::RecordOverflow);
    assert_eq!(parse_err(&[22, 3, 1, 0xff, 0xff]), HelloError::RecordOverflow);
}

#[test]
fn an_empty_handshake_record_is_malformed() {
    assert!(matches!(parse_err(&[22, 3, 1, 0, 0]), HelloError::Malformed(_)));
}

#[test]
fn an_oversized_handshake_length_is_too_large_as_soon_as_the_header_shows_it() {
    assert_eq!(parse_err(&[22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff]), HelloError::TooLarge);
    assert_eq!(parse_err(&[22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x00]), HelloError::TooLarge);
    // The same header spread over four one-byte records.
    let header = frame(&[1, 0x01, 0x00, 0x00], 1);
    assert_eq!(parse_client_hello(&header[..header.len() - 1]), Ok(None));
    assert_eq!(parse_err(&header), HelloError::TooLarge);
    // The largest message that fits in one record stream: exactly MAX_HELLO_LEN with headers.
    let body = MAX_HELLO_LEN - 4 * 5 - 4;
    let len = u32::try_from(body).unwrap().to_be_bytes();
    assert_eq!(parse_client_hello(&[22, 3, 1, 0x40, 0x00, 1, len[1], len[2], len[3]]), Ok(None));
}

#[test]
fn need_more_is_only_returned_below_the_buffer_cap() {
    // A hello declaring 40000 bytes, sent one byte per record: six bytes of stream per byte of
    // hello, so it can never complete within the cap. (Every prefix would take a while in a debug
    // build, since each call walks every record so far: sample them, and check the end closely.)
    let message = [&[1_u8, 0, 0x9c, 0x40][..], &[0; 40000]].concat();
    let stream = frame(&message, 1);
    let near_cap = MAX_HELLO_LEN - 64;
    for len in (0..near_cap).step_by(397) {
        assert_eq!(parse_client_hello(&stream[..len]), Ok(None), "prefix {len}");
    }
    let verdict = (near_cap..stream.len())
        .find_map(|len| match parse_client_hello(&stream[..len]) {
            Ok(None) => None,
            other => Some((len, other)),
        })
        .expect("a verdict");
    assert_eq!(verdict.1, Err(HelloError::TooLarge));
    assert!(verdict.0 <= MAX_HELLO_LEN, "{}", verdict.0);
}

#[test]
fn a_client_hello_without_sni_has_no_server_name() {
    let hello = parse_complete(&HelloBuilder::default().alpn(&[b"h2"]).records());
    assert_eq!(hello.server_name, ServerName::None);
    assert_eq!(hello.alpn, vec![b"h2".to_vec()]);
}

#[test]
fn a_tls12_hello_without_an_extensions_block_parses() {
    let builder = HelloBuilder { extensions: None, ..HelloBuilder::default() };
    let hello = parse_complete(&builder.records());
    assert_eq!(hello.server_name, ServerName::None);
    assert!(hello.alpn.is_empty() && hello.supported_versions.is_empty());
}

#[test]
fn an_ip_literal_sni_is_invalid_not_an_error() {
    for name in [&b"192.0.2.1"[..], b"10.0.0.1.", b"::1", b"[2001:db8::1]"] {
        let hello = parse_complete(&HelloBuilder::default().sni(name).records());
        assert_eq!(hello.server_name, ServerName::Invalid, "{name:?}");
    }
}

#[test]
fn empty_non_ascii_and_oversized_sni_are_invalid() {
    for name in [&b""[..], "bücher.example".as_bytes(), b"a/b.example", &[b'a'; 256]] {
        let hello = parse_complete(&HelloBuilder::default().sni(name).records());
        assert_eq!(hello.server_name, ServerName::Invalid, "{name:?}");
    }
}

#[test]
fn sni_is_kept_as_sent() {
    let hello = parse_complete(&HelloBuilder::default().sni(b"Api.Example.COM.").records());
    assert_eq!(hello.server_name, ServerName::Host("Api.Example.COM.".into()));
}

#[test]
fn sni_entries_of_unknown_name_types_are_skipped() {
    let list = sni_list(&[(7, b"whatever"), (0, b"example.com"), (9, b"x")]);
    let hello = parse_complete(&HelloBuilder::default().ext(EXT_SERVER_NAME, list).records());
    assert_eq!(hello.server_name, ServerName::Host("example.com".into()));
    let only_unknown = sni_list(&[(7, b"whatever")]);
    let hello =
        parse_complete(&HelloBuilder::default().ext(EXT_SERVER_NAME, only_unknown).records());
    assert_eq!(hello.server_name, ServerName::None);
}

#[test]
fn two_host_names_in_one_sni_list_are_malformed() {
    let list = sni_list(&[(0, b"a.example"), (0, b"b.example")]);
    malformed(&HelloBuilder::default().ext(EXT_SERVER_NAME, list));
}

#[test]
fn broken_sni_extensions_are_malformed() {
    for data in [
        vec![],                             // a server's empty acknowledgement, not a client list
        vec![0, 0],                         // empty list
        vec![0, 5, 0, 0, 2, b'a'],          // list longer than the extension
        vec![0, 4, 0, 0, 2, b'a', b'b', 9], // entry longer than the list... and a trailing byte
        [sni_list(&[(0, b"a.example")]), vec![0]].concat(), // trailing byte after the list
    ] {
        malformed(&HelloBuilder::default().ext(EXT_SERVER_NAME, data));
    }
}

#[test]
fn a_duplicate_extension_is_malformed() {
    malformed(&HelloBuilder::default().sni(b"a.example").sni(b"a.example"));
    malformed(&HelloBuilder::default().ext(0x1234, vec![]).sni(b"a.example").ext(0x1234, vec![1]));
}

#[test]
fn unknown_and_grease_extensions_are_skipped() {
    let builder = HelloBuilder::default()
        .ext(0x0a0a, vec![])
        .sni(b"a.example")
        .ext(0xfafa, vec![0; 10])
        .ext(0x4469, vec![1, 2, 3]);
    assert_eq!(
        parse_complete(&builder.records()).server_name,
        ServerName::Host("a.example".into())
    );
}

#[test]
fn alpn_and_supported_versions_are_read_in_order() {
    let builder = HelloBuilder::default()
        .alpn(&[b"http/1.1", b"h2", b"\x00\xff"])
        .supported_versions(&[0x7a7a, 0x0304, 0x0303]);
    let hello = parse_complete(&builder.records());
    assert_eq!(hello.alpn, vec![b"http/1.1".to_vec(), b"h2".to_vec(), vec![0, 0xff]]);
    assert_eq!(hello.supported_versions, vec![0x7a7a, 0x0304, 0x0303]);
}

#[test]
fn broken_alpn_and_supported_versions_are_malformed() {
    for data in [vec![], vec![0, 0], vec![0, 1, 0], vec![0, 3, 2, b'h'], vec![0, 2, 1, b'h', 0]] {
        malformed(&HelloBuilder::default().ext(EXT_ALPN, data));
    }
    for data in [vec![], vec![0], vec![3, 3, 4, 3], vec![2, 3, 4, 0], vec![4, 3, 4]] {
        malformed(&HelloBuilder::default().ext(EXT_SUPPORTED_VERSIONS, data));
    }
}

#[test]
fn an_encrypted_client_hello_extension_is_reported() {
    let builder = HelloBuilder::default().sni(b"public.example").ext(EXT_ECH, vec![0; 40]);
    let hello = parse_complete(&builder.records());
    assert!(hello.has_ech);
    assert_eq!(hello.server_name, ServerName::Host("public.example".into()));
}

#[test]
fn a_session_id_over_32_bytes_is_malformed() {
    malformed(&HelloBuilder { session_id: vec![0; 33], ..HelloBuilder::default() });
    let empty = HelloBuilder { session_id: vec![], ..HelloBuilder::default() };
    assert!(parse_complete(&empty.records()).server_name == ServerName::None);
}

#[test]
fn empty_or_odd_cipher_suites_are_malformed() {
    malformed(&HelloBuilder { cipher_suites: vec![], ..HelloBuilder::default() });
    malformed(&HelloBuilder { cipher_suites: vec![0x13, 0x01, 0x13], ..HelloBuilder::default() });
}

#[test]
fn empty_compression_methods_are_malformed() {
    malformed(&HelloBuilder { compression: vec![], ..HelloBuilder::default() });
}

#[test]
fn bytes_after_the_extensions_block_are_malformed() {
    malformed(&HelloBuilder { trailing: vec![0], ..HelloBuilder::default().sni(b"a.example") });
    // An extensions block without its length's worth of bytes.
    malformed(&HelloBuilder { extensions: None, trailing: vec![0, 9, 0], ..Default::default() });
    // A lone byte where the extensions length should be.
    malformed(&HelloBuilder { extensions: None, trailing: vec![0], ..Default::default() });
}

#[test]
fn a_truncated_extension_is_malformed() {
    // Block of 3 bytes: a type and half a length.
    malformed(&HelloBuilder {
        extensions: None,
        trailing: vec![0, 3, 0, 0, 0],
        ..Default::default()
    });
}

#[test]
fn a_handshake_length_shorter_than_the_body_is_malformed() {
    let mut message = HelloBuilder::default().sni(b"a.example").message();
    message[3] -= 3;
    let stream = frame(&message[..message.len() - 3], 1 << 14);
    assert!(matches!(parse_err(&stream), HelloError::Malformed(_)));
}
