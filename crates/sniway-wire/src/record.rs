//! The TLS record layer, just enough to find the first handshake message (RFC 8446 §5.1).
//!
//! ```text
//!   buf:  [hdr|fragment][hdr|fragment][hdr|frag...    records, any sizes, any segmentation
//!              \_______________\___________\
//!   message:   [type|len24|ClientHello body ...]      fragments coalesced, header checked early
//! ```
//!
//! A handshake message may be fragmented over any number of records ("handshake messages MAY be
//! fragmented across several TLSPlaintext records", RFC 8446 §5.1), so the hello is reassembled
//! from the fragments. Checks that the first bytes can decide are made as soon as those bytes are
//! present (content type, record version, record length, handshake type and length), so a client
//! that is not speaking TLS is turned away after a byte or two rather than at the deadline.

use std::borrow::Cow;

use crate::{HelloError, MAX_HELLO_LEN, reader::Reader};

/// `ContentType.handshake` (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// `ContentType.change_cipher_spec`.
const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
/// `ContentType.alert`.
const CONTENT_ALERT: u8 = 21;
/// `ContentType.application_data`.
const CONTENT_APPLICATION_DATA: u8 = 23;
/// `ContentType.heartbeat` (RFC 6520).
const CONTENT_HEARTBEAT: u8 = 24;

/// `ContentType`, `legacy_record_version` and `length` (RFC 8446 §5.1).
const RECORD_HEADER_LEN: usize = 5;
/// "The length MUST NOT exceed 2^14 bytes" for TLSPlaintext (RFC 8446 §5.1).
const MAX_PLAINTEXT_LEN: usize = 1 << 14;
/// `msg_type` and a `uint24` length (RFC 8446 §4).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// `HandshakeType.client_hello` (RFC 8446 §4).
pub(crate) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// SSL 2.0 `MSG-CLIENT-HELLO`.
const SSL2_CLIENT_HELLO: u8 = 1;

/// The first handshake message, reassembled from the records at the start of a buffer.
#[derive(Debug)]
pub(crate) struct HandshakeMessage<'a> {
    /// The whole handshake message, header (type and length) included. Borrowed when it came in
    /// one record, which is what clients almost always send.
    pub(crate) message: Cow<'a, [u8]>,
    /// How many bytes of the buffer the records carrying the message occupy.
    pub(crate) record_bytes: usize,
}

/// Finds the first handshake message in `buf`, which must start with a TLS handshake record.
///
/// `Ok(None)` means more bytes are needed, and is only returned while `buf.len()` is below
/// [`MAX_HELLO_LEN`]: the records carrying a hello, headers included, must fit in that many bytes,
/// so a caller that buffers up to the limit always gets a verdict.
///
/// The message is only complete once the whole record carrying its last byte has arrived.
pub(crate) fn first_handshake_message(
    buf: &[u8],
) -> Result<Option<HandshakeMessage<'_>>, HelloError> {
    match buf.first() {
        None => return Ok(None),
        Some(&CONTENT_HANDSHAKE) => {}
        Some(_) => return not_a_handshake_record(buf).map_or(Ok(None), Err),
    }

    // First pass: walk the record headers and check them, without copying anything.
    let mut header = HandshakeHeader::default();
    let mut pos = 0;
    let mut fragments = 0_usize;
    let mut have = 0_usize;
    let total = loop {
        // Records are never empty, so one starting here would end past the limit.
        if pos + RECORD_HEADER_LEN + 1 > MAX_HELLO_LEN {
            return Err(HelloError::TooLarge);
        }
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(payload_len) = record_header(rest)? else { return Ok(None) };
        let start = pos + RECORD_HEADER_LEN;
        let end = start + payload_len;
        if end > MAX_HELLO_LEN {
            return Err(HelloError::TooLarge);
        }
        let payload = buf.get(start..end.min(buf.len())).unwrap_or_default();
        header.feed(payload)?;
        if payload.len() < payload_len {
            return Ok(None);
        }
        pos = end;
        fragments += 1;
        have += payload_len;
        if let Some(total) = header.message_len()
            && have >= total
        {
            break total;
        }
    };

    let message = if fragments == 1 {
        let one = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + total);
        Cow::Borrowed(one.ok_or(HelloError::Malformed("record"))?)
    } else {
        // Second pass: coalesce the fragments, whose headers were checked above.
        let mut records = Reader::new(buf.get(..pos).unwrap_or_default());
        let mut message = Vec::with_capacity(have);
        while !records.is_empty() {
            records.take(3).ok_or(HelloError::Malformed("record"))?;
            let mut fragment = records.sub_u16().ok_or(HelloError::Malformed("record"))?;
            message.extend_from_slice(fragment.rest());
        }
        message.truncate(total);
        Cow::Owned(message)
    };
    Ok(Some(HandshakeMessage { message, record_bytes: pos }))
}

/// Checks the (possibly partial) record header at the start of `rest`, which follows a handshake
/// record or starts the buffer with a handshake content type. Returns the declared payload
/// length, or `None` if the header is not complete yet.
fn record_header(rest: &[u8]) -> Result<Option<usize>, HelloError> {
    let mut r = Reader::new(rest);
    match r.u8() {
        None => return Ok(None),
        Some(CONTENT_HANDSHAKE) => {}
        Some(_) => return Err(HelloError::NotHandshake),
    }
    // legacy_record_version: TLS 1.3 clients send 0x0301 ("or 0x0303 for compatibility"), older
    // ones anything from SSL 3.0 (0x0300) up; each byte is checked as soon as it is here.
    match r.u8() {
        None => return Ok(None),
        Some(0x03) => {}
        Some(_) => return Err(HelloError::UnsupportedRecordVersion),
    }
    match r.u8() {
        None => return Ok(None),
        Some(0x00..=0x04) => {}
        Some(_) => return Err(HelloError::UnsupportedRecordVersion),
    }
    let Some(len) = r.u16() else { return Ok(None) };
    let len = usize::from(len);
    if len == 0 {
        // "Implementations MUST NOT send zero-length fragments of Handshake types" (§5.1).
        return Err(HelloError::Malformed("empty handshake record"));
    }
    if len > MAX_PLAINTEXT_LEN {
        return Err(HelloError::RecordOverflow);
    }
    Ok(Some(len))
}

/// Classifies a buffer whose first byte is not a handshake record's. `None` means the bytes so
/// far cannot tell yet (at most the first four are needed).
fn not_a_handshake_record(buf: &[u8]) -> Option<HelloError> {
    let mut r = Reader::new(buf);
    match r.u8()? {
        // An SSL 2.0 record header is a two-byte length with the high bit set, then the message
        // type and the client version: 0x0002 for SSL 2.0, 0x03xx for the "SSLv2-compatible"
        // hello of RFC 5246 §E.2. RFC 8446 §D.5 rules it out ("MUST NOT ... accept any SSL
        // version 2.0 compatible CLIENT-HELLO").
        0x80..=0xff => {
            r.u8()?;
            if r.u8()? != SSL2_CLIENT_HELLO {
                return Some(HelloError::NotTls);
            }
            match r.u8()? {
                0x00 | 0x03 => Some(HelloError::SslV2),
                _ => Some(HelloError::NotTls),
            }
        }
        // Another TLS record type first: TLS, but not the start of a handshake.
        CONTENT_CHANGE_CIPHER_SPEC
        | CONTENT_ALERT
        | CONTENT_APPLICATION_DATA
        | CONTENT_HEARTBEAT => match r.u8()? {
            0x03 => Some(HelloError::NotHandshake),
            _ => Some(HelloError::NotTls),
        },
        _ => Some(HelloError::NotTls),
    }
}

/// The four-byte handshake header, gathered from fragments as they arrive so that a wrong type or
/// an oversized length is refused before the rest of the message is read.
#[derive(Debug, Default)]
struct HandshakeHeader {
    bytes: [u8; HANDSHAKE_HEADER_LEN],
    filled: usize,
}

impl HandshakeHeader {
    /// Takes the header bytes still missing from the front of `fragment` and checks what is
    /// known.
    fn feed(&mut self, fragment: &[u8]) -> Result<(), HelloError> {
        for &b in fragment {
            let Some(slot) = self.bytes.get_mut(self.filled) else { break };
            *slot = b;
            self.filled += 1;
        }
        let [msg_type, ..] = self.bytes;
        if self.filled >= 1 && msg_type != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::NotClientHello);
        }
        if let Some(total) = self.message_len() {
            // The message and at least one record header must fit under the cap.
            if total + RECORD_HEADER_LEN > MAX_HELLO_LEN {
                return Err(HelloError::TooLarge);
            }
        }
        Ok(())
    }

    /// Length of the whole message, header included, once the header is complete.
    fn message_len(&self) -> Option<usize> {
        if self.filled < HANDSHAKE_HEADER_LEN {
            return None;
        }
        let [_, a, b, c] = self.bytes;
        let body = usize::try_from(u32::from_be_bytes([0, a, b, c])).ok()?;
        Some(HANDSHAKE_HEADER_LEN + body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![content_type, 3, 1];
        out.extend_from_slice(&u16::try_from(payload.len()).expect("short").to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_message_in_one_record_is_borrowed() {
        let buf = record(CONTENT_HANDSHAKE, &[1, 0, 0, 2, 0xaa, 0xbb]);
        let msg = first_handshake_message(&buf).expect("valid").expect("complete");
        assert!(matches!(msg.message, Cow::Borrowed(_)));
        assert_eq!(&*msg.message, &[1, 0, 0, 2, 0xaa, 0xbb]);
        assert_eq!(msg.record_bytes, buf.len());
    }

    #[test]
    fn fragments_are_coalesced_and_trailing_records_ignored() {
        let mut buf = record(CONTENT_HANDSHAKE, &[1, 0]);
        buf.extend(record(CONTENT_HANDSHAKE, &[0, 2, 0xaa]));
        buf.extend(record(CONTENT_HANDSHAKE, &[0xbb]));
        let end = buf.len();
        buf.extend(record(CONTENT_APPLICATION_DATA, &[9, 9]));
        let msg = first_handshake_message(&buf).expect("valid").expect("complete");
        assert_eq!(&*msg.message, &[1, 0, 0, 2, 0xaa, 0xbb]);
        assert_eq!(msg.record_bytes, end);
    }

    #[test]
    fn the_handshake_type_is_checked_from_the_first_fragment_byte() {
        let buf = [CONTENT_HANDSHAKE, 3, 1, 0x40, 0x00, 2];
        assert_eq!(first_handshake_message(&buf).unwrap_err(), HelloError::NotClientHello);
    }

    #[test]
    fn a_record_header_declaring_more_than_two_to_the_fourteen_is_refused() {
        let buf = [CONTENT_HANDSHAKE, 3, 1, 0x40, 0x01];
        assert_eq!(first_handshake_message(&buf).unwrap_err(), HelloError::RecordOverflow);
        let buf = [CONTENT_HANDSHAKE, 3, 1, 0x40, 0x00];
        assert!(first_handshake_message(&buf).expect("valid so far").is_none());
    }

    #[test]
    fn an_empty_handshake_record_is_malformed() {
        let buf = [CONTENT_HANDSHAKE, 3, 1, 0, 0];
        assert!(matches!(first_handshake_message(&buf), Err(HelloError::Malformed(_))));
    }
}
