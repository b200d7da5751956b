//! A buffered byte source that knows its offset and turns a short read into
//! [`ErrorKind::Truncated`].

use std::io::{self, Read};

use crate::error::{ErrorKind, StreamError};

/// Bytes kept in memory at most. Every field is read whole, so the longest one must fit: a
/// page or a delta ([`crate::MAX_PAGE_SIZE`]), a command (65535 bytes), a tail chunk
/// ([`crate::TAIL_CHUNK`]), a machine name ([`crate::MAX_MACHINE_NAME`]).
const CAPACITY: usize = 256 << 10;
const _: () = assert!(
    CAPACITY >= 2 * crate::MAX_PAGE_SIZE
        && CAPACITY >= 2 * crate::TAIL_CHUNK
        && CAPACITY >= 2 * crate::MAX_MACHINE_NAME
        && CAPACITY >= 2 * u16::MAX as usize
);

pub(crate) struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    /// First unread byte of `buf`.
    start: usize,
    /// End of the valid bytes of `buf`.
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// The input has ended.
    eof: bool,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Offset of the next unread byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes at least `n` bytes (`n <= CAPACITY`) available unless the input ends first;
    /// returns the bytes available.
    fn fill(&mut self, n: usize) -> Result<usize, StreamError> {
        debug_assert!(n <= CAPACITY);
        if self.end - self.start >= n {
            return Ok(self.end - self.start);
        }
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n && !self.eof {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let at = self.offset + (self.end - self.start) as u64;
                    return Err(StreamError::new(at, ErrorKind::Io(err)));
                }
            }
        }
        Ok(self.end - self.start)
    }

    /// The next `n` bytes (`n <= CAPACITY`), consumed; `what` names the field for the
    /// truncation error, which points at `field_start`.
    pub(crate) fn take_at(
        &mut self,
        n: usize,
        what: &'static str,
        field_start: u64,
    ) -> Result<&[u8], StreamError> {
        let available = self.fill(n)?;
        if available < n {
            let before = self.offset - field_start;
            return Err(StreamError::new(
                field_start,
                ErrorKind::Truncated {
                    what,
                    needed: before + n as u64,
                    available: before + available as u64,
                },
            ));
        }
        let bytes = &self.buf[self.start..self.start + n];
        self.start += n;
        self.offset += n as u64;
        Ok(bytes)
    }

    /// Fixed-size big-endian fields.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
        field_start: u64,
    ) -> Result<[u8; N], StreamError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take_at(N, what, field_start)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, StreamError> {
        let at = self.offset;
        Ok(self.array::<1>(what, at)?[0])
    }

    pub(crate) fn be16(&mut self, what: &'static str) -> Result<u16, StreamError> {
        let at = self.offset;
        Ok(u16::from_be_bytes(self.array(what, at)?))
    }

    pub(crate) fn be32(&mut self, what: &'static str) -> Result<u32, StreamError> {
        let at = self.offset;
        Ok(u32::from_be_bytes(self.array(what, at)?))
    }

    pub(crate) fn be64(&mut self, what: &'static str) -> Result<u64, StreamError> {
        let at = self.offset;
        Ok(u64::from_be_bytes(self.array(what, at)?))
    }

    /// The next byte without consuming it; `None` at the end of the input.
    pub(crate) fn peek(&mut self) -> Result<Option<u8>, StreamError> {
        Ok((self.fill(1)? >= 1).then(|| self.buf[self.start]))
    }

    /// Up to `max` bytes (at least one unless the input has ended), consumed.
    pub(crate) fn chunk(&mut self, max: usize) -> Result<&[u8], StreamError> {
        let available = self.fill(1)?;
        let n = available.min(max);
        let bytes = &self.buf[self.start..self.start + n];
        self.start += n;
        self.offset += n as u64;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, to exercise refills.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn fields_and_offsets_across_refills() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * CAPACITY).collect();
        let mut source = Source::new(Trickle(&data, 7));
        assert_eq!(source.u8("x").unwrap(), 0);
        assert_eq!(source.be16("x").unwrap(), 0x0102);
        assert_eq!(source.be32("x").unwrap(), 0x0304_0506);
        assert_eq!(source.be64("x").unwrap(), 0x0708_090a_0b0c_0d0e);
        assert_eq!(source.offset(), 15);
        assert_eq!(source.peek().unwrap(), Some(15));
        // A field that straddles the end of the buffer.
        let skip = CAPACITY - 20;
        assert_eq!(source.take_at(skip, "x", 15).unwrap().len(), skip);
        let big = source.take_at(CAPACITY, "x", 15 + skip as u64).unwrap();
        assert_eq!(big[0], ((15 + skip) % 256) as u8);
        let mut rest = 0;
        loop {
            let chunk = source.chunk(1000).unwrap().len();
            if chunk == 0 {
                break;
            }
            rest += chunk;
        }
        assert_eq!(15 + skip + CAPACITY + rest, data.len());
        assert_eq!(source.offset(), data.len() as u64);
        assert_eq!(source.peek().unwrap(), None);
    }

    #[test]
    fn truncation_points_at_the_field() {
        let mut source = Source::new(&[1u8, 2, 3][..]);
        source.u8("x").unwrap();
        let err = source.be32("the thing").unwrap_err();
        assert_eq!(err.offset(), 1);
        match err.kind() {
            ErrorKind::Truncated {
                what,
                needed,
                available,
            } => assert_eq!((*what, *needed, *available), ("the thing", 4, 2)),
            other => panic!("{other:?}"),
        }
        // Consumed nothing: the bytes are still there.
        assert_eq!(source.be16("x").unwrap(), 0x0203);
    }

    #[test]
    fn read_errors_carry_the_offset() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = Source::new(Failing).u8("x").unwrap_err();
        assert_eq!(err.offset(), 0);
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
}
