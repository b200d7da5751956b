//! Shared test support: one harness for every encoder implementation.
//!
//! * Structured page pairs ([`Pattern`], [`page_pairs`], [`seed_pairs`], [`pair_strategy`]):
//!   random, sparse, alternating, all-different, identical, runs of every interesting
//!   length at the start, across a 64-byte block, at the page end, and periodic runs.
//! * [`Placed`]: a slice at a chosen address alignment (0..64) inside a larger buffer whose
//!   surrounding guard bytes are checked, so out-of-bounds writes are caught.
//! * The expected deltas come from the naive oracles of `xbzrle-testkit` (written from the
//!   format description, sharing no code with the crate).
//! * [`check_kernel`], [`check_encoder`], [`check_capacities`]: the checks every encoder must
//!   pass (exact bytes, exact overflow, no write past the capacity, output independent of
//!   the prior buffer contents, `encode_update` refreshes the cached copy).
//!
//! Used by several test binaries, each needing a different subset.
#![allow(dead_code)]

use proptest::prelude::*;
use xbzrle::{Encoded, Kernel};
use xbzrle_testkit::{Rng, canonical_delta};

/// Page lengths every implementation is tested with.
pub(crate) const PAGE_LENGTHS: &[usize] = &[0, 1, 7, 8, 63, 64, 65, 4095, 4096, 4097, 16384, 65536];

/// Run lengths around the 64-byte block and the ULEB128 size steps.
pub(crate) const RUN_LENGTHS: &[usize] = &[1, 63, 64, 65, 127, 128, 129, 16383, 16384];

/// Number of pointer alignments: every `align` in `0..ALIGNMENTS` is meaningful.
pub(crate) const ALIGNMENTS: usize = 64;

/// Value of the guard bytes around every [`Placed`] buffer.
pub(crate) const SENTINEL: u8 = 0xA5;

const GUARD: usize = 64;

/// A shape of change between an old and a new page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// No byte changes.
    Identical,
    /// Every byte changes.
    AllDifferent,
    /// The new page is independent random bytes (about 1 byte in 256 stays equal).
    Random,
    /// About 1 byte in 200 changes, at random places.
    Sparse,
    /// Bytes at odd offsets change.
    AlternatingOdd,
    /// Bytes at even offsets change.
    AlternatingEven,
    /// Changed and unchanged runs, both `run` bytes long, alternating; the first run is a
    /// changed one when `changed_first`. The last run is cut by the page end.
    Periodic { run: usize, changed_first: bool },
    /// One changed run of `run` bytes at offset 0.
    RunAtStart(usize),
    /// One changed run of `run` bytes that crosses a 64-byte block boundary (it starts
    /// `run / 2 + 1` bytes before one, rounded to stay in the page).
    RunAcrossBlock(usize),
    /// One changed run of `run` bytes ending at the page end.
    RunAtEnd(usize),
    /// Alternating changed and unchanged runs with lengths drawn from [`RUN_LENGTHS`] and
    /// from 1..=8.
    RandomRuns,
    /// Changed runs of 1..=300 bytes separated by unchanged gaps of 1..=4 bytes (where the
    /// compact encoder merges runs).
    ShortGaps,
}

impl Pattern {
    /// Patterns that are meaningful for a page of `len` bytes (runs no longer than the page).
    pub(crate) fn for_len(len: usize) -> Vec<Pattern> {
        let mut out = vec![
            Pattern::Identical,
            Pattern::AllDifferent,
            Pattern::Random,
            Pattern::Sparse,
            Pattern::AlternatingOdd,
            Pattern::AlternatingEven,
            Pattern::RandomRuns,
            Pattern::ShortGaps,
        ];
        for &run in RUN_LENGTHS.iter().filter(|&&run| run <= len.max(1)) {
            out.push(Pattern::Periodic {
                run,
                changed_first: true,
            });
            out.push(Pattern::Periodic {
                run,
                changed_first: false,
            });
            out.push(Pattern::RunAtStart(run));
            out.push(Pattern::RunAcrossBlock(run));
            out.push(Pattern::RunAtEnd(run));
        }
        out
    }

    /// Which bytes change, for a page of `len` bytes.
    fn changed_mask(self, len: usize, rng: &mut Rng) -> Vec<bool> {
        let mut mask = vec![false; len];
        let mut set = |range: core::ops::Range<usize>| {
            let end = range.end.min(len);
            let start = range.start.min(end);
            mask[start..end].iter_mut().for_each(|m| *m = true);
        };
        match self {
            Pattern::Identical | Pattern::Random => {}
            Pattern::AllDifferent => set(0..len),
            Pattern::Sparse => {
                for _ in 0..len / 200 + 1 {
                    if len > 0 {
                        let at = rng.below(len);
                        set(at..at + 1);
                    }
                }
            }
            Pattern::AlternatingOdd | Pattern::AlternatingEven => {
                let first = usize::from(self == Pattern::AlternatingOdd);
                for at in (first..len).step_by(2) {
                    set(at..at + 1);
                }
            }
            Pattern::Periodic { run, changed_first } => {
                let mut at = if changed_first { 0 } else { run };
                while at < len {
                    set(at..at + run);
                    at += 2 * run;
                }
            }
            Pattern::RunAtStart(run) => set(0..run),
            Pattern::RunAcrossBlock(run) => {
                let boundary = (run / 2 + 1).next_multiple_of(64);
                let start = (boundary - run / 2 - 1).min(len.saturating_sub(run));
                set(start..start + run);
            }
            Pattern::RunAtEnd(run) => set(len.saturating_sub(run)..len),
            Pattern::RandomRuns | Pattern::ShortGaps => {
                let mut at = 0;
                let mut changed = rng.below(2) == 0;
                while at < len {
                    let run = match (self, changed) {
                        (Pattern::ShortGaps, true) => 1 + rng.below(300),
                        (Pattern::ShortGaps, false) => 1 + rng.below(4),
                        _ if rng.below(2) == 0 => RUN_LENGTHS[rng.below(RUN_LENGTHS.len())],
                        _ => 1 + rng.below(8),
                    };
                    if changed {
                        set(at..at + run);
                    }
                    at += run;
                    changed = !changed;
                }
            }
        }
        mask
    }
}

/// An old page and a new page of the same length, with a name for failure messages.
#[derive(Clone)]
pub(crate) struct PagePair {
    pub(crate) name: String,
    pub(crate) old: Vec<u8>,
    pub(crate) new: Vec<u8>,
}

impl core::fmt::Debug for PagePair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The pages can be large: show the name and the canonical delta's head only.
        let delta = canonical_delta(&self.old, &self.new);
        write!(
            f,
            "PagePair({}, delta[{}] = {:02x?}{})",
            self.name,
            delta.len(),
            &delta[..delta.len().min(48)],
            if delta.len() > 48 { "…" } else { "" }
        )
    }
}

impl PagePair {
    /// Builds the pair for `pattern` on a page of `len` bytes; the old page is random bytes.
    pub(crate) fn new(pattern: Pattern, len: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ (len as u64).rotate_left(32));
        let mut old = vec![0; len];
        rng.fill(&mut old);
        let mut new = old.clone();
        if pattern == Pattern::Random {
            rng.fill(&mut new);
        } else {
            let mask = pattern.changed_mask(len, &mut rng);
            for (byte, changed) in new.iter_mut().zip(mask) {
                if changed {
                    *byte ^= rng.flip();
                }
            }
        }
        Self {
            name: format!("{pattern:?} len={len} seed={seed:#x}"),
            old,
            new,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.old.len()
    }
}

/// Every [`Pattern`] at one page length.
pub(crate) fn page_pairs(len: usize, seed: u64) -> Vec<PagePair> {
    Pattern::for_len(len)
        .into_iter()
        .map(|pattern| PagePair::new(pattern, len, seed))
        .collect()
}

/// The seed table: every pattern at every length of [`PAGE_LENGTHS`], plus three random
/// lengths below 9000.
pub(crate) fn seed_pairs() -> Vec<PagePair> {
    let mut rng = Rng::new(0x5eed);
    let mut lengths = PAGE_LENGTHS.to_vec();
    lengths.extend((0..3).map(|_| rng.below(9000)));
    lengths
        .into_iter()
        .flat_map(|len| page_pairs(len, 0xC0DEC))
        .collect()
}

/// Proptest strategy: a pattern valid for a random length in `0..=max_len`, with a random seed.
pub(crate) fn pair_strategy(max_len: usize) -> impl Strategy<Value = PagePair> {
    (0..=max_len, any::<u64>(), any::<prop::sample::Index>()).prop_map(|(len, seed, pick)| {
        let patterns = Pattern::for_len(len);
        PagePair::new(*pick.get(&patterns), len, seed)
    })
}

/// A slice of `len` bytes whose address is `align` bytes past a multiple of 64, inside a
/// buffer with [`SENTINEL`] guard bytes on both sides.
pub(crate) struct Placed {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Placed {
    /// A copy of `data` at alignment `align % 64`.
    pub(crate) fn new(data: &[u8], align: usize) -> Self {
        let mut placed = Self::filled(data.len(), align, 0);
        placed.get_mut().copy_from_slice(data);
        placed
    }

    /// `len` bytes of `fill` at alignment `align % 64`.
    pub(crate) fn filled(len: usize, align: usize, fill: u8) -> Self {
        let mut buf = vec![SENTINEL; len + 3 * GUARD];
        let misalignment = buf.as_ptr() as usize % 64;
        let start = GUARD + (64 + align % 64 - misalignment) % 64;
        buf[start..start + len].fill(fill);
        Self { buf, start, len }
    }

    pub(crate) fn get(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn get_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// Panics unless every guard byte still holds [`SENTINEL`].
    pub(crate) fn assert_guards(&self, context: &dyn core::fmt::Display) {
        let before = &self.buf[..self.start];
        let after = &self.buf[self.start + self.len..];
        if let Some(i) = before.iter().rposition(|&b| b != SENTINEL) {
            panic!(
                "{context}: byte written {} before the slice",
                self.start - i
            );
        }
        if let Some(i) = after.iter().position(|&b| b != SENTINEL) {
            panic!(
                "{context}: byte written at slice offset {} (capacity {})",
                self.len + i,
                self.len
            );
        }
    }
}

/// The alignments used for (old, new, out) in round `align`: old at `align`, new and out at
/// other alignments, so that every alignment and many relative offsets are covered.
pub(crate) fn alignments(align: usize) -> (usize, usize, usize) {
    (align % 64, (align * 5 + 1) % 64, (align * 3 + 7) % 64)
}

/// An encoder implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoder {
    /// `kernel.encode`: canonical output.
    Canonical(Kernel),
    /// `kernel.encode_update`: canonical output, and the cached copy becomes the new page.
    Update(Kernel),
    /// `xbzrle::encode_compact`.
    Compact,
}

impl Encoder {
    /// The canonical and update flavours of every available kernel.
    pub(crate) fn all_canonical() -> Vec<Encoder> {
        Kernel::available()
            .flat_map(|k| [Encoder::Canonical(k), Encoder::Update(k)])
            .collect()
    }

    /// Runs the encoder with `old`, `new` and an output of `capacity` bytes (prior contents
    /// `fill`) at the alignments of round `align`. Checks the guards of every buffer, that
    /// `new` is untouched, that `old` is untouched (or, for `Update`, equals `new`), and
    /// returns the result and the written delta bytes.
    pub(crate) fn run(
        self,
        pair: &PagePair,
        capacity: usize,
        align: usize,
        fill: u8,
    ) -> (Encoded, Vec<u8>) {
        let (old_align, new_align, out_align) = alignments(align);
        let mut old = Placed::new(&pair.old, old_align);
        let new = Placed::new(&pair.new, new_align);
        let mut out = Placed::filled(capacity, out_align, fill);
        let result = match self {
            Encoder::Canonical(kernel) => kernel.encode(old.get(), new.get(), out.get_mut()),
            Encoder::Update(kernel) => {
                kernel.encode_update(old.get_mut(), new.get(), out.get_mut())
            }
            Encoder::Compact => Ok(xbzrle::encode_compact(old.get(), new.get(), out.get_mut())),
        }
        .unwrap_or_else(|e| panic!("{self:?}: {e}"));
        let context = format!(
            "{self:?} on {} capacity={capacity} align={align}",
            pair.name
        );
        out.assert_guards(&format_args!("{context}: output"));
        old.assert_guards(&format_args!("{context}: old"));
        new.assert_guards(&format_args!("{context}: new"));
        assert!(new.get() == pair.new, "{context}: new page modified");
        let old_expected = if matches!(self, Encoder::Update(_)) {
            &pair.new
        } else {
            &pair.old
        };
        assert!(
            old.get() == old_expected,
            "{context}: old/cached page wrong afterwards"
        );
        let written = match result {
            Encoded::Delta(n) => {
                assert!(
                    n <= capacity,
                    "{context}: Delta({n}) longer than the capacity"
                );
                out.get()[..n].to_vec()
            }
            _ => Vec::new(),
        };
        (result, written)
    }
}

/// The result an exact encoder must give when its delta is `expected` and the capacity is
/// `capacity`.
pub(crate) fn expected_result(expected: &[u8], capacity: usize) -> Encoded {
    if expected.is_empty() {
        Encoded::Unchanged
    } else if expected.len() > capacity {
        Encoded::Overflow
    } else {
        Encoded::Delta(expected.len())
    }
}

/// Checks one encoder at one capacity: the exact result for `expected`, the exact bytes,
/// nothing written outside the output, the same result and bytes whatever the prior
/// contents of the output (0x00 and 0xFF).
pub(crate) fn check_encoder_at(
    encoder: Encoder,
    pair: &PagePair,
    expected: &[u8],
    capacity: usize,
    align: usize,
) {
    for fill in [0x00, 0xFF] {
        check_encoder_with_fill(encoder, pair, expected, capacity, align, fill);
    }
}

/// [`check_encoder_at`] with one prior content `fill` of the output buffer.
pub(crate) fn check_encoder_with_fill(
    encoder: Encoder,
    pair: &PagePair,
    expected: &[u8],
    capacity: usize,
    align: usize,
    fill: u8,
) {
    let want = expected_result(expected, capacity);
    let (got, bytes) = encoder.run(pair, capacity, align, fill);
    let context =
        || format!("{encoder:?} on {pair:?} capacity={capacity} align={align} fill={fill:#x}");
    assert_eq!(got, want, "{}", context());
    if let Encoded::Delta(_) = got {
        assert!(
            bytes == expected,
            "{}: bytes differ:\n got {bytes:02x?}\nwant {expected:02x?}",
            context()
        );
    }
}

/// Checks one encoder with an ample capacity (the expected length plus 64).
pub(crate) fn check_encoder(encoder: Encoder, pair: &PagePair, expected: &[u8], align: usize) {
    check_encoder_at(encoder, pair, expected, expected.len() + 64, align);
}

/// Checks one encoder at each capacity of `capacities`.
pub(crate) fn check_capacities(
    encoder: Encoder,
    pair: &PagePair,
    expected: &[u8],
    capacities: impl IntoIterator<Item = usize>,
    align: usize,
) {
    for capacity in capacities {
        check_encoder_at(encoder, pair, expected, capacity, align);
    }
}

/// Every capacity from 0 to `len + 1`.
pub(crate) fn all_capacities(len: usize) -> core::ops::RangeInclusive<usize> {
    0..=len + 1
}

/// Capacities around the edges of a delta of `len` bytes: 0..=3, `len - 3 ..= len + 1`,
/// the page length and a few values in between.
pub(crate) fn edge_capacities(len: usize, page_len: usize) -> Vec<usize> {
    let mut caps: Vec<usize> = (0..=3).chain(len.saturating_sub(3)..=len + 1).collect();
    caps.extend([len / 2, len / 3, page_len, page_len.saturating_sub(1)]);
    caps.sort_unstable();
    caps.dedup();
    caps
}

/// The full check for one kernel on one pair at one alignment round: canonical `encode` and
/// `encode_update` against the oracle with an ample capacity, and at the edge capacities.
pub(crate) fn check_kernel(kernel: Kernel, pair: &PagePair, align: usize) {
    let expected = canonical_delta(&pair.old, &pair.new);
    for encoder in [Encoder::Canonical(kernel), Encoder::Update(kernel)] {
        check_encoder(encoder, pair, &expected, align);
        check_capacities(
            encoder,
            pair,
            &expected,
            edge_capacities(expected.len(), pair.len()),
            align,
        );
    }
}

/// Alignment rounds used for a page of `len` bytes by [`check_kernel_on_seed_pairs`]: all 64
/// up to 4097 bytes, four rounds for larger pages (to keep debug tests fast).
pub(crate) fn alignment_rounds(len: usize) -> Vec<usize> {
    if len <= 4097 {
        (0..ALIGNMENTS).collect()
    } else {
        vec![0, 1, 33, 63]
    }
}

/// [`check_kernel`] for every pair of [`seed_pairs`]: with an ample capacity at every
/// [`alignment_rounds`] round, the output prefilled with 0x00 and 0xFF alternately, and at the
/// edge capacities on one round per pair.
pub(crate) fn check_kernel_on_seed_pairs(kernel: Kernel) {
    for (i, pair) in seed_pairs().iter().enumerate() {
        let expected = canonical_delta(&pair.old, &pair.new);
        for align in alignment_rounds(pair.len()) {
            let fill = if align % 2 == 0 { 0x00 } else { 0xFF };
            for encoder in [Encoder::Canonical(kernel), Encoder::Update(kernel)] {
                check_encoder_with_fill(encoder, pair, &expected, expected.len() + 64, align, fill);
            }
        }
        let align = i % ALIGNMENTS;
        for encoder in [Encoder::Canonical(kernel), Encoder::Update(kernel)] {
            let caps = edge_capacities(expected.len(), pair.len());
            check_capacities(encoder, pair, &expected, caps, align);
        }
    }
}
