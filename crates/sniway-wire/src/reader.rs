//! A forward-only cursor over a byte slice.
//!
//! Every read returns `None` when fewer bytes remain than it needs, so a parser cannot read past a
//! truncated structure by accident: it has to say what a short read means (in this crate, inside
//! a complete handshake message, always `HelloError::Malformed` naming the structure). Length
//! prefixes are read with [`Reader::sub_u8`] / [`Reader::sub_u16`], which hand back a child
//! reader confined to exactly the prefixed span, so an inner structure can never consume its
//! neighbour's bytes.

/// Cursor over the bytes not yet consumed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `n` bytes, or `None` (consuming nothing) if fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(b)
    }

    /// A big-endian `uint16` (RFC 8446 §3.3: "basic numeric data types ... in network byte
    /// order").
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let (head, tail) = self.rest.split_first_chunk::<2>()?;
        self.rest = tail;
        Some(u16::from_be_bytes(*head))
    }

    /// A big-endian `uint24`, as used by handshake message lengths (RFC 8446 §4).
    pub(crate) fn u24(&mut self) -> Option<u32> {
        let (&[a, b, c], tail) = self.rest.split_first_chunk::<3>()?;
        self.rest = tail;
        Some(u32::from_be_bytes([0, a, b, c]))
    }

    /// A child reader over a vector with a one-byte length prefix (`opaque x<0..2^8-1>`).
    pub(crate) fn sub_u8(&mut self) -> Option<Reader<'a>> {
        let mut probe = *self;
        let len = probe.u8()?;
        let body = probe.take(usize::from(len))?;
        *self = probe;
        Some(Reader::new(body))
    }

    /// A child reader over a vector with a two-byte length prefix (`opaque x<0..2^16-1>`).
    pub(crate) fn sub_u16(&mut self) -> Option<Reader<'a>> {
        let mut probe = *self;
        let len = probe.u16()?;
        let body = probe.take(usize::from(len))?;
        *self = probe;
        Some(Reader::new(body))
    }

    /// Everything not yet consumed; the reader is empty afterwards.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// How many bytes remain.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn integers_are_read_big_endian() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.u24(), Some(0x040506));
        assert!(r.is_empty());
    }

    #[test]
    fn a_short_read_consumes_nothing() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.u24(), None);
        assert_eq!(r.take(3), None);
        assert_eq!(r.left(), 2);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn a_sub_reader_is_confined_to_its_length_prefix() {
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 0xcc]);
        let mut sub = r.sub_u16().expect("prefixed span present");
        assert_eq!(sub.left(), 2);
        assert_eq!(sub.u16(), Some(0xaabb));
        assert_eq!(sub.u8(), None);
        assert_eq!(r.rest(), &[0xcc]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_sub_reader_longer_than_the_input_is_refused_without_consuming() {
        let mut r = Reader::new(&[3, 0xaa, 0xbb]);
        assert!(r.sub_u8().is_none());
        assert_eq!(r.left(), 3);
        let mut empty = Reader::new(&[0]);
        assert_eq!(empty.sub_u8().map(|s| s.left()), Some(0));
    }
}
