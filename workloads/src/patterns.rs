//! Synthetic page-pair patterns for benchmarks and tests, plus sets of real page pairs
//! taken from consecutive guest-RAM snapshots.
//!
//! Every pattern is deterministic: the same pattern, seed and length always give the same
//! bytes (a small internal PRNG, no external dependency). The old page is pseudo-random;
//! the new page differs from it exactly as the pattern says. Pages are kept in a
//! [`PageSet`]: two page-aligned buffers (old pages and new pages) of equal length, so that
//! benchmarks see a fixed alignment.

use std::fmt;
use std::io;
use std::path::Path;

use crate::SplitMix64;
use crate::snapshots::SnapshotSeries;

/// Page size of the synthetic benchmarks (and of x86-64 guests).
pub const PAGE_SIZE: usize = 4096;

/// Alignment of every [`PageSet`] buffer.
pub const ALIGNMENT: usize = 4096;

/// How the new page of a synthetic pair differs from the old page.
///
/// Layouts are given for a 4 KiB page; other lengths repeat them with the same period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// The new page equals the old page (the delta is empty).
    Identical,
    /// One changed byte every 1024 bytes, at offsets 0, 1024, 2048, 3072 (QEMU's
    /// `docs/xbzrle.txt` test program and the `dirty1024` guest).
    FourBytes,
    /// One run of 8 changed bytes every 512 bytes (8 runs per 4 KiB page), at offset 264 of
    /// each 512-byte stretch: 8-byte aligned, not 64-byte aligned.
    EightRunsOfEight,
    /// A quarter of the bytes changed, in runs of exactly 16: one run in each 64-byte stretch,
    /// at a pseudo-random offset from 0 to 40 (so runs never touch).
    QuarterRunsOfSixteen,
    /// Every other byte changed, from offset 1: 2048 runs of 1 byte per 4 KiB page, so the
    /// delta (3 bytes per run) overflows a page-sized output buffer although half the page
    /// is unchanged.
    Alternating,
    /// The new page is independent pseudo-random bytes: the delta overflows a page-sized
    /// output buffer.
    Random,
}

impl Pattern {
    /// Every synthetic pattern, sparsest first.
    pub const ALL: &'static [Pattern] = &[
        Pattern::Identical,
        Pattern::FourBytes,
        Pattern::EightRunsOfEight,
        Pattern::QuarterRunsOfSixteen,
        Pattern::Alternating,
        Pattern::Random,
    ];

    /// Short name used in benchmark ids, tables and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::Identical => "identical",
            Pattern::FourBytes => "4-bytes",
            Pattern::EightRunsOfEight => "8x8",
            Pattern::QuarterRunsOfSixteen => "25pct-runs16",
            Pattern::Alternating => "alternating",
            Pattern::Random => "random",
        }
    }

    /// One-line description for tables.
    pub const fn description(self) -> &'static str {
        match self {
            Pattern::Identical => "identical pages",
            Pattern::FourBytes => "4 changed bytes per 4 KiB (one every 1024)",
            Pattern::EightRunsOfEight => "8 runs of 8 changed bytes per 4 KiB",
            Pattern::QuarterRunsOfSixteen => "25% of bytes changed, in runs of 16",
            Pattern::Alternating => "every other byte changed (overflows)",
            Pattern::Random => "random new page (overflows)",
        }
    }

    /// The pattern with this [`name`](Pattern::name), if any.
    pub fn from_name(name: &str) -> Option<Pattern> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Fills `old` with pseudo-random bytes and `new` with the pattern's changes of it.
    /// Deterministic in `seed`.
    ///
    /// # Panics
    /// If `old` and `new` differ in length.
    pub fn fill(self, seed: u64, old: &mut [u8], new: &mut [u8]) {
        assert_eq!(
            old.len(),
            new.len(),
            "old and new must have the same length"
        );
        let mut rng = SplitMix64::new(seed);
        rng.fill(old);
        new.copy_from_slice(old);
        match self {
            Pattern::Identical => {}
            Pattern::FourBytes => {
                for at in (0..new.len()).step_by(1024) {
                    change(&mut rng, &mut new[at..at + 1]);
                }
            }
            Pattern::EightRunsOfEight => {
                for stretch in new.chunks_mut(512) {
                    let end = stretch.len().min(264 + 8);
                    if let Some(run) = stretch.get_mut(264..end) {
                        change(&mut rng, run);
                    }
                }
            }
            Pattern::QuarterRunsOfSixteen => {
                for stretch in new.chunks_mut(64) {
                    // 41 offsets: the run ends at most at byte 56 of its stretch.
                    let start = (rng.next_u64() % 41) as usize;
                    let end = stretch.len().min(start + 16);
                    if let Some(run) = stretch.get_mut(start..end) {
                        change(&mut rng, run);
                    }
                }
            }
            Pattern::Alternating => {
                for byte in new.iter_mut().skip(1).step_by(2) {
                    change(&mut rng, core::slice::from_mut(byte));
                }
            }
            Pattern::Random => rng.fill(new),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Changes every byte of `run` (XOR with a pseudo-random non-zero value).
fn change(rng: &mut SplitMix64, run: &mut [u8]) {
    for byte in run {
        *byte ^= (rng.next_u64() % 255) as u8 + 1;
    }
}

/// A set of page pairs: `len()` old pages and as many new pages, each side one contiguous,
/// [`ALIGNMENT`]-aligned buffer.
#[derive(Debug, Clone)]
pub struct PageSet {
    page_size: usize,
    old: AlignedBytes,
    new: AlignedBytes,
}

impl PageSet {
    /// `pages` pairs of `page_size` bytes following `pattern`; pair `i` uses seed
    /// `seed + i`, so pairs differ from each other.
    ///
    /// # Panics
    /// If `page_size` is 0.
    pub fn synthetic(pattern: Pattern, page_size: usize, pages: usize, seed: u64) -> PageSet {
        assert!(page_size > 0, "page size must not be 0");
        let mut set = PageSet {
            page_size,
            old: AlignedBytes::zeroed(page_size * pages),
            new: AlignedBytes::zeroed(page_size * pages),
        };
        let olds = set.old.as_mut_slice().chunks_exact_mut(page_size);
        let news = set.new.as_mut_slice().chunks_exact_mut(page_size);
        for (i, (old, new)) in olds.zip(news).enumerate() {
            pattern.fill(seed.wrapping_add(i as u64), old, new);
        }
        set
    }

    /// The pages that changed between the first two snapshots of the series in `dir`
    /// (previous snapshot = old page, next = new page), at most `max_pages` of them, picked
    /// evenly over guest-physical addresses. Fails when the series cannot be read or has
    /// fewer than two snapshots.
    ///
    /// # Panics
    /// If `page_size` is 0.
    pub fn from_snapshots(
        dir: impl AsRef<Path>,
        page_size: usize,
        max_pages: usize,
    ) -> io::Result<PageSet> {
        assert!(page_size > 0, "page size must not be 0");
        let series = SnapshotSeries::open(dir)?;
        let mut reader = series.reader();
        reader.advance()?;
        if reader.advance()?.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: needs at least two snapshots", series.dir().display()),
            ));
        }
        let new = reader.current();
        let old = reader.previous().unwrap_or_default();
        let pairs = || old.chunks_exact(page_size).zip(new.chunks_exact(page_size));
        let changed: Vec<usize> = pairs()
            .enumerate()
            .filter(|(_, (o, n))| o != n)
            .map(|(i, _)| i)
            .collect();
        let stride = changed.len().div_ceil(max_pages.max(1)).max(1);
        let picked: Vec<usize> = changed
            .into_iter()
            .step_by(stride)
            .take(max_pages)
            .collect();
        let mut set = PageSet {
            page_size,
            old: AlignedBytes::zeroed(page_size * picked.len()),
            new: AlignedBytes::zeroed(page_size * picked.len()),
        };
        for (slot, &page) in picked.iter().enumerate() {
            let range = page * page_size..(page + 1) * page_size;
            let to = slot * page_size..(slot + 1) * page_size;
            set.old.as_mut_slice()[to.clone()].copy_from_slice(&old[range.clone()]);
            set.new.as_mut_slice()[to].copy_from_slice(&new[range]);
        }
        Ok(set)
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of page pairs.
    pub fn len(&self) -> usize {
        self.old.len / self.page_size
    }

    /// Whether the set holds no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Old page `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn old_page(&self, i: usize) -> &[u8] {
        &self.old.as_slice()[i * self.page_size..(i + 1) * self.page_size]
    }

    /// New page `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn new_page(&self, i: usize) -> &[u8] {
        &self.new.as_slice()[i * self.page_size..(i + 1) * self.page_size]
    }

    /// All old pages, back to back.
    pub fn old_pages(&self) -> &[u8] {
        self.old.as_slice()
    }

    /// All new pages, back to back.
    pub fn new_pages(&self) -> &[u8] {
        self.new.as_slice()
    }

    /// All old pages, back to back, writable (e.g. as a cache refreshed by `encode_update`).
    pub fn old_pages_mut(&mut self) -> &mut [u8] {
        self.old.as_mut_slice()
    }

    /// Total bytes of the old pages (= of the new pages).
    pub fn bytes(&self) -> usize {
        self.old.len
    }
}

/// A byte buffer whose start is [`ALIGNMENT`]-aligned, in safe code: it over-allocates and
/// starts at the first aligned byte.
#[derive(Debug, Clone)]
struct AlignedBytes {
    storage: Vec<u8>,
    len: usize,
}

impl AlignedBytes {
    fn zeroed(len: usize) -> Self {
        Self {
            storage: vec![0; len + ALIGNMENT],
            len,
        }
    }

    fn start(&self) -> usize {
        // `align_offset` of a `u8` pointer to a power-of-two alignment is always below it.
        self.storage.as_ptr().align_offset(ALIGNMENT)
    }

    fn as_slice(&self) -> &[u8] {
        let start = self.start();
        &self.storage[start..start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let start = self.start();
        &mut self.storage[start..start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maximal runs of differing bytes, as (start, length).
    fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
        xbzrle_testkit::canonical_runs(old, new)
            .iter()
            .map(|run| (run.start, run.len))
            .collect()
    }

    fn pair(pattern: Pattern, len: usize) -> (Vec<u8>, Vec<u8>) {
        let (mut old, mut new) = (vec![0; len], vec![0; len]);
        pattern.fill(7, &mut old, &mut new);
        (old, new)
    }

    #[test]
    fn identical_changes_nothing() {
        let (old, new) = pair(Pattern::Identical, PAGE_SIZE);
        assert_eq!(old, new);
        // The old page is pseudo-random, not a constant.
        assert!(old.iter().filter(|&&b| b == 0).count() < 64);
    }

    #[test]
    fn four_bytes_every_1024() {
        let (old, new) = pair(Pattern::FourBytes, PAGE_SIZE);
        assert_eq!(
            changed_runs(&old, &new),
            vec![(0, 1), (1024, 1), (2048, 1), (3072, 1)]
        );
    }

    #[test]
    fn eight_runs_of_eight() {
        let (old, new) = pair(Pattern::EightRunsOfEight, PAGE_SIZE);
        let expected: Vec<(usize, usize)> = (0..8).map(|k| (k * 512 + 264, 8)).collect();
        assert_eq!(changed_runs(&old, &new), expected);
    }

    #[test]
    fn quarter_in_runs_of_sixteen() {
        let (old, new) = pair(Pattern::QuarterRunsOfSixteen, PAGE_SIZE);
        let runs = changed_runs(&old, &new);
        assert_eq!(runs.len(), PAGE_SIZE / 64);
        assert!(runs.iter().all(|&(_, len)| len == 16));
        let changed: usize = runs.iter().map(|&(_, len)| len).sum();
        assert_eq!(changed * 4, PAGE_SIZE);
        // Offsets vary (not all runs at the same place in their 64-byte stretch).
        let mut offsets: Vec<usize> = runs.iter().map(|&(start, _)| start % 64).collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert!(offsets.len() > 10, "{offsets:?}");
    }

    #[test]
    fn alternating_changes_every_odd_byte() {
        let (old, new) = pair(Pattern::Alternating, PAGE_SIZE);
        let expected: Vec<(usize, usize)> = (1..PAGE_SIZE).step_by(2).map(|at| (at, 1)).collect();
        assert_eq!(changed_runs(&old, &new), expected);
    }

    #[test]
    fn random_differs_almost_everywhere() {
        let (old, new) = pair(Pattern::Random, PAGE_SIZE);
        let equal = old.iter().zip(&new).filter(|(o, n)| o == n).count();
        // About 4096/256 = 16 bytes equal by chance.
        assert!(equal < 64, "{equal} equal bytes");
    }

    #[test]
    fn odd_lengths_keep_the_layout_in_bounds() {
        for len in [0, 1, 63, 300, 1025, 4097] {
            for &pattern in Pattern::ALL {
                let (old, new) = pair(pattern, len);
                assert_eq!(old.len(), len);
                assert_eq!(new.len(), len);
            }
        }
        let (old, new) = pair(Pattern::EightRunsOfEight, 270);
        assert_eq!(changed_runs(&old, &new), vec![(264, 6)]);
    }

    #[test]
    fn deterministic_in_seed() {
        let a = PageSet::synthetic(Pattern::QuarterRunsOfSixteen, PAGE_SIZE, 3, 1);
        let b = PageSet::synthetic(Pattern::QuarterRunsOfSixteen, PAGE_SIZE, 3, 1);
        let c = PageSet::synthetic(Pattern::QuarterRunsOfSixteen, PAGE_SIZE, 3, 2);
        assert_eq!(a.new_pages(), b.new_pages());
        assert_ne!(a.new_pages(), c.new_pages());
        // Pairs of one set differ from each other.
        assert_ne!(a.old_page(0), a.old_page(1));
    }

    #[test]
    fn page_set_is_aligned_and_indexed() {
        let set = PageSet::synthetic(Pattern::FourBytes, PAGE_SIZE, 5, 9);
        assert_eq!(set.len(), 5);
        assert_eq!(set.bytes(), 5 * PAGE_SIZE);
        assert_eq!(set.old_pages().as_ptr() as usize % ALIGNMENT, 0);
        assert_eq!(set.new_pages().as_ptr() as usize % ALIGNMENT, 0);
        for i in 0..5 {
            let (mut old, mut new) = (vec![0; PAGE_SIZE], vec![0; PAGE_SIZE]);
            Pattern::FourBytes.fill(9 + i as u64, &mut old, &mut new);
            assert_eq!(set.old_page(i), &old[..]);
            assert_eq!(set.new_page(i), &new[..]);
        }
    }

    #[test]
    fn names_round_trip() {
        for &pattern in Pattern::ALL {
            assert_eq!(Pattern::from_name(pattern.name()), Some(pattern));
        }
        assert_eq!(Pattern::from_name("nope"), None);
    }

    #[test]
    fn snapshot_pairs_are_the_changed_pages() {
        let dir = tempfile::tempdir().unwrap();
        let page = 64;
        let first: Vec<u8> = (0..page * 10).map(|i| (i % 251) as u8).collect();
        let mut second = first.clone();
        for changed_page in [1, 4, 5, 9] {
            second[changed_page * page + 3] ^= 0x55;
        }
        std::fs::write(dir.path().join("snap-00.raw"), &first).unwrap();
        std::fs::write(dir.path().join("snap-01.raw"), &second).unwrap();

        let all = PageSet::from_snapshots(dir.path(), page, 100).unwrap();
        assert_eq!(all.len(), 4);
        for (slot, changed_page) in [1, 4, 5, 9].into_iter().enumerate() {
            let range = changed_page * page..(changed_page + 1) * page;
            assert_eq!(all.old_page(slot), &first[range.clone()]);
            assert_eq!(all.new_page(slot), &second[range]);
        }
        // At most 2: every other changed page.
        let two = PageSet::from_snapshots(dir.path(), page, 2).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two.new_page(1), &second[5 * page..6 * page]);
    }

    #[test]
    fn snapshot_pairs_need_two_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snap-00.raw"), [0u8; 128]).unwrap();
        let err = PageSet::from_snapshots(dir.path(), 64, 10).unwrap_err();
        assert!(err.to_string().contains("two snapshots"), "{err}");
    }
}
