//! Decoding fuzzer bytes into structured inputs.
//!
//! The layouts are plain byte formats (not `arbitrary`'s) so that seed files can be written
//! from the golden vectors by `examples/seeds.rs`, and every byte string is a valid input:
//! a field past the end of the data reads as zero.

/// Reads little-endian fields from the front of the fuzzer's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Next byte, or 0 past the end.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// Next little-endian `u16`; missing bytes read as 0.
    pub fn u16(&mut self) -> u16 {
        let lo = self.u8();
        let hi = self.u8();
        u16::from_le_bytes([lo, hi])
    }

    /// Next little-endian `u32`; missing bytes read as 0.
    pub fn u32(&mut self) -> u32 {
        let lo = self.u16();
        let hi = self.u16();
        u32::from(lo) | u32::from(hi) << 16
    }

    /// Next `n` bytes, or fewer at the end.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A byte buffer that starts `offset` bytes into its own allocation and ends exactly at
/// the allocation's end, so an access past the end is caught by AddressSanitizer and the
/// start has a chosen misalignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetBuf {
    bytes: Vec<u8>,
    offset: usize,
}

impl OffsetBuf {
    /// `len` bytes of `fill` starting `offset` bytes into the allocation.
    pub fn filled(offset: usize, len: usize, fill: u8) -> Self {
        Self {
            bytes: vec![fill; offset + len],
            offset,
        }
    }

    /// A copy of `content` starting `offset` bytes into the allocation.
    pub fn with_content(offset: usize, content: &[u8]) -> Self {
        let mut buf = Self::filled(offset, content.len(), 0);
        buf.as_mut_slice().copy_from_slice(content);
        buf
    }

    /// The usable bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.offset..]
    }

    /// The usable bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.offset..]
    }
}

/// How the output capacity of an encode is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// One page, as QEMU passes.
    Page,
    /// The canonical delta's length plus a small signed slack (-4..=4): the tight cases.
    CanonicalPlus(i8),
    /// A fixed number of bytes.
    Fixed(u16),
    /// Twice the page plus 64: always enough.
    Ample,
}

impl Capacity {
    /// Decodes a mode byte and a parameter.
    pub fn from_fields(mode: u8, param: u16) -> Self {
        match mode % 4 {
            0 => Capacity::Page,
            1 => Capacity::CanonicalPlus((param % 9) as i8 - 4),
            2 => Capacity::Fixed(param),
            _ => Capacity::Ample,
        }
    }

    /// The capacity in bytes for a page of `page_len` whose canonical delta has
    /// `canonical_len` bytes.
    pub fn bytes(self, page_len: usize, canonical_len: usize) -> usize {
        match self {
            Capacity::Page => page_len,
            Capacity::CanonicalPlus(slack) => canonical_len.saturating_add_signed(slack.into()),
            Capacity::Fixed(n) => n.into(),
            Capacity::Ample => 2 * page_len + 64,
        }
    }
}

/// An old page, a new page and an output buffer for the encoder targets.
///
/// Layout (all integers little-endian):
///
/// | bytes | field |
/// |---|---|
/// | 1 | `old` start offset (mod 64) |
/// | 1 | `new` start offset (mod 64) |
/// | 1 | output start offset (mod 64) |
/// | 1 | capacity mode (see [`Capacity::from_fields`]) |
/// | 2 | capacity parameter |
/// | 2 | page length (see [`page_len_from`]) |
/// | 2 | `m`, the length of the old page's pattern |
/// | `m` | the pattern, repeated over the old page (all zero if `m` is 0) |
/// | rest | edit script turning the old page into the new one (see [`apply_edits`]) |
#[derive(Debug, Clone)]
pub struct PagePair {
    /// The old (cached) page.
    pub old: OffsetBuf,
    /// The new page.
    pub new: OffsetBuf,
    /// Start offset of the output buffer.
    pub out_offset: usize,
    /// How the output capacity is chosen.
    pub capacity: Capacity,
}

impl PagePair {
    /// Decodes the fuzzer's bytes; every byte string gives a pair.
    pub fn parse(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let old_offset = usize::from(r.u8() % 64);
        let new_offset = usize::from(r.u8() % 64);
        let out_offset = usize::from(r.u8() % 64);
        let mode = r.u8();
        let param = r.u16();
        let page_len = page_len_from(r.u16());
        let pattern_len = usize::from(r.u16());
        let pattern = r.take(pattern_len);
        let mut old = vec![0u8; page_len];
        if !pattern.is_empty() {
            for (byte, &p) in old.iter_mut().zip(pattern.iter().cycle()) {
                *byte = p;
            }
        }
        let mut new = old.clone();
        apply_edits(r.rest(), &mut new);
        Self {
            old: OffsetBuf::with_content(old_offset, &old),
            new: OffsetBuf::with_content(new_offset, &new),
            out_offset,
            capacity: Capacity::from_fields(mode, param),
        }
    }

    /// Page length in bytes.
    pub fn page_len(&self) -> usize {
        self.old.as_slice().len()
    }

    /// The output capacity for this pair, given its canonical delta length.
    pub fn capacity_bytes(&self, canonical_len: usize) -> usize {
        self.capacity.bytes(self.page_len(), canonical_len)
    }
}

/// Page length from a `u16`: the top 2 bits pick a size class so that most inputs are
/// small pages (fast) while every length up to 16383 (QEMU's limit) and the 3-byte length
/// range above it stay reachable: low 10 bits, low 12 bits, low 14 bits, or 16384 plus
/// the low 12 bits.
pub fn page_len_from(raw: u16) -> usize {
    let raw = usize::from(raw);
    match raw >> 14 {
        0 => raw & 0x3ff,
        1 => raw & 0xfff,
        2 => raw & 0x3fff,
        _ => 16384 + (raw & 0xfff),
    }
}

/// The `u16` that [`page_len_from`] maps to `len`, if any.
pub fn page_len_to(len: usize) -> Option<u16> {
    let raw = match len {
        0..16384 => len | 0x8000,
        16384..20480 => (len - 16384) | 0xc000,
        _ => return None,
    };
    u16::try_from(raw).ok()
}

/// Applies an edit script to `page`, leniently: the script has the delta grammar (pairs of
/// ULEB128 skip and run lengths, each run followed by its bytes) but any byte string is
/// accepted. Lengths are read with up to 5 bytes and saturate; a skip past the page ends
/// the script; a run is clipped to the page; when the script runs out of run bytes, the
/// rest of the run gets `old + 1` (a guaranteed change). So a golden vector's canonical
/// delta reproduces its new page exactly, and a short script can change a long run.
pub fn apply_edits(script: &[u8], page: &mut [u8]) {
    let mut r = Reader::new(script);
    let mut at = 0usize;
    while !r.is_empty() {
        at = at.saturating_add(read_lenient_len(&mut r));
        let run = read_lenient_len(&mut r);
        if at >= page.len() {
            return;
        }
        let end = at.saturating_add(run).min(page.len());
        let given = r.take(end - at);
        for (i, byte) in page[at..end].iter_mut().enumerate() {
            *byte = match given.get(i) {
                Some(&b) => b,
                None => byte.wrapping_add(1),
            };
        }
        at = end;
    }
}

/// A ULEB128 length of up to 5 bytes; missing bytes end it.
fn read_lenient_len(r: &mut Reader<'_>) -> usize {
    let mut value = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = r.u8();
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}
