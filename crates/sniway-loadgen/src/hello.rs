//! Well-formed TLS 1.3 ClientHello records, built with correct lengths for any server name.
//!
//! Two shapes, both in one TLS record:
//! - [`HelloKind::Classic`]: an X25519 key share, padded (RFC 7685) to a 512-byte handshake
//!   message, 517 bytes on the wire, the size curl and OpenSSL 3 send;
//! - [`HelloKind::PostQuantum`]: an X25519MLKEM768 key share (group `0x11ec`, 1216-byte
//!   `key_exchange`, draft-ietf-tls-ecdhe-mlkem) plus X25519, padded to 1800 bytes on the wire.
//!   The client writes it in two writes with `TCP_NODELAY`, so it spans two segments.
//!
//! The key material is a fixed pattern: the gateway only reads the structure, and the backends
//! here are plain TCP servers that skip the record.

/// Which hello to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HelloKind {
    /// About 500 bytes (X25519).
    Classic,
    /// About 1800 bytes (X25519MLKEM768 + X25519), sent in two segments.
    PostQuantum,
}

/// Bytes on the wire of the classic hello.
pub const CLASSIC_LEN: usize = 517;
/// Bytes on the wire of the post-quantum hello.
pub const PQ_LEN: usize = 1800;
/// Where the post-quantum hello is cut into two writes.
pub const PQ_SPLIT: usize = 1000;

fn u16be(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u16::try_from(v).expect("length fits u16").to_be_bytes());
}

fn ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    u16be(out, data.len());
    out.extend_from_slice(data);
}

/// The complete record (header included) of a ClientHello naming `sni`.
pub fn client_hello(sni: &str, kind: HelloKind) -> Vec<u8> {
    let mut exts = Vec::new();
    // server_name: list of one host_name.
    let mut sn = Vec::new();
    u16be(&mut sn, sni.len() + 3);
    sn.push(0);
    u16be(&mut sn, sni.len());
    sn.extend_from_slice(sni.as_bytes());
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    let groups: &[u16] = match kind {
        HelloKind::Classic => &[0x001d, 0x0017, 0x0018, 0x0019],
        HelloKind::PostQuantum => &[0x11ec, 0x001d, 0x0017, 0x0018, 0x0019],
    };
    let mut g = Vec::new();
    u16be(&mut g, groups.len() * 2);
    for x in groups {
        g.extend_from_slice(&x.to_be_bytes());
    }
    ext(&mut exts, 0x000a, &g); // supported_groups
    ext(&mut exts, 0x0023, &[]); // session_ticket
    let mut alpn = Vec::new();
    u16be(&mut alpn, 3 + 9);
    alpn.extend_from_slice(b"\x02h2\x08http/1.1");
    ext(&mut exts, 0x0010, &alpn);
    ext(&mut exts, 0x0016, &[]); // encrypt_then_mac
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    let sigs: &[u16] = &[0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0401];
    let mut s = Vec::new();
    u16be(&mut s, sigs.len() * 2);
    for x in sigs {
        s.extend_from_slice(&x.to_be_bytes());
    }
    ext(&mut exts, 0x000d, &s); // signature_algorithms
    ext(&mut exts, 0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]); // supported_versions: 1.3, 1.2
    ext(&mut exts, 0x002d, &[0x01, 0x01]); // psk_key_exchange_modes: psk_dhe_ke
    let mut shares = Vec::new();
    if kind == HelloKind::PostQuantum {
        shares.extend_from_slice(&0x11ecu16.to_be_bytes());
        u16be(&mut shares, 1216);
        shares.extend((0..1216u32).map(|i| (i.wrapping_mul(131) >> 3) as u8));
    }
    shares.extend_from_slice(&0x001du16.to_be_bytes());
    u16be(&mut shares, 32);
    shares.extend((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(3)));
    let mut ks = Vec::new();
    u16be(&mut ks, shares.len());
    ks.extend_from_slice(&shares);
    ext(&mut exts, 0x0033, &ks); // key_share

    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend((0..32u8).map(|i| i.wrapping_mul(29).wrapping_add(1))); // random
    body.push(32);
    body.extend((0..32u8).map(|i| i.wrapping_mul(13).wrapping_add(5))); // legacy_session_id
    let suites: &[u16] = &[0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0xc02b, 0xc02f, 0x00ff];
    u16be(&mut body, suites.len() * 2);
    for x in suites {
        body.extend_from_slice(&x.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression: null

    // Padding (RFC 7685) brings the record to the target size: 5 (record header) + 4 (handshake
    // header) + body + 2 (extensions length) + extensions + 4 (padding header) + padding.
    let target = match kind {
        HelloKind::Classic => CLASSIC_LEN,
        HelloKind::PostQuantum => PQ_LEN,
    };
    let unpadded = 5 + 4 + body.len() + 2 + exts.len() + 4;
    let pad = target.checked_sub(unpadded).expect("server name too long for the hello size");
    ext(&mut exts, 0x0015, &vec![0u8; pad]);

    u16be(&mut body, exts.len());
    body.extend_from_slice(&exts);
    let mut out = Vec::with_capacity(target);
    out.extend_from_slice(&[0x16, 0x03, 0x01]);
    u16be(&mut out, body.len() + 4);
    out.push(0x01);
    out.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_be_bytes()[1..]);
    out.extend_from_slice(&body);
    debug_assert_eq!(out.len(), target);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sniway_wire::{ServerName, parse_client_hello};

    #[test]
    fn both_hellos_parse_with_their_server_name_and_size() {
        for (kind, len) in [(HelloKind::Classic, CLASSIC_LEN), (HelloKind::PostQuantum, PQ_LEN)] {
            for sni in ["echo.bench.test", "c123.wild.bench.test"] {
                let h = client_hello(sni, kind);
                assert_eq!(h.len(), len);
                let parsed = parse_client_hello(&h).unwrap().expect("complete");
                assert_eq!(parsed.server_name, ServerName::Host(sni.to_string()));
                // Every proper prefix is incomplete, not invalid.
                assert!(parse_client_hello(&h[..PQ_SPLIT.min(len - 1)]).unwrap().is_none());
            }
        }
    }
}
