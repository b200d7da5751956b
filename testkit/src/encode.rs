//! The naive canonical encoder and the length of the smallest delta.

use crate::uleb128;

/// One `zrun nzrun` pair of the canonical delta: `unchanged` equal bytes are skipped, then
/// `new[start..start + len]` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Equal bytes between the previous changed run (or the page start) and this one.
    pub unchanged: usize,
    /// Page offset of the first changed byte.
    pub start: usize,
    /// Number of changed bytes (at least 1).
    pub len: usize,
}

impl Run {
    /// Page offset just past the run.
    pub fn end(&self) -> usize {
        self.start + self.len
    }
}

/// The maximal runs of bytes that differ between `old` and `new`, in page order, found
/// byte by byte.
///
/// # Panics
/// If the pages differ in length.
pub fn canonical_runs(old: &[u8], new: &[u8]) -> Vec<Run> {
    assert_eq!(old.len(), new.len(), "pages of different lengths");
    let mut runs: Vec<Run> = Vec::new();
    let mut prev_end = 0;
    for i in (0..old.len()).filter(|&i| old[i] != new[i]) {
        match runs.last_mut() {
            Some(run) if run.end() == i => run.len += 1,
            _ => {
                runs.push(Run {
                    unchanged: i - prev_end,
                    start: i,
                    len: 1,
                });
            }
        }
        prev_end = i + 1;
    }
    runs
}

/// The canonical delta from `old` to `new`: one pair per maximal changed run, minimal
/// ULEB128 lengths, no trailing unchanged run (so it is empty when the pages are equal).
/// QEMU's encoder writes exactly these bytes.
///
/// # Panics
/// If the pages differ in length.
pub fn canonical_delta(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut delta = Vec::new();
    for run in canonical_runs(old, new) {
        uleb128::push(&mut delta, run.unchanged);
        uleb128::push(&mut delta, run.len);
        delta.extend_from_slice(&new[run.start..run.end()]);
    }
    delta
}

/// Length of the smallest valid delta from `old` to `new` (the oracle of the compact
/// encoder), by a quadratic dynamic program over the canonical runs.
///
/// A valid delta writes ranges of the new page separated by skipped gaps of equal bytes,
/// and must write every changed byte. Widening a range past a changed run never makes the
/// delta shorter (each byte costs one byte and can save at most one length byte), and a
/// changed run cannot be split (the gap would have length 0), so the smallest delta writes
/// unions of consecutive canonical runs: `best[j]` is the smallest encoding of runs `0..j`,
/// minimised over the first run `i` of its last range.
///
/// # Panics
/// If the pages differ in length.
pub fn smallest_delta_len(old: &[u8], new: &[u8]) -> usize {
    let runs = canonical_runs(old, new);
    let mut best = vec![0usize; runs.len() + 1];
    for j in 1..=runs.len() {
        let end = runs[j - 1].end();
        best[j] = (1..=j)
            .map(|i| {
                let first = runs[i - 1];
                let written = end - first.start;
                best[i - 1] + uleb128::size(first.unchanged) + uleb128::size(written) + written
            })
            .min()
            .expect("the range i = j always exists");
    }
    best[runs.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_delta_of_a_worked_page() {
        // Changes at 0..2, 5 and 200..203 of a 300-byte page.
        let old = vec![0u8; 300];
        let mut new = old.clone();
        new[0..2].copy_from_slice(&[1, 2]);
        new[5] = 3;
        new[200..203].copy_from_slice(&[4, 5, 6]);
        let run = |unchanged, start, len| Run {
            unchanged,
            start,
            len,
        };
        assert_eq!(
            canonical_runs(&old, &new),
            [run(0, 0, 2), run(3, 5, 1), run(194, 200, 3)]
        );
        assert_eq!(
            canonical_delta(&old, &new),
            [0, 2, 1, 2, 3, 1, 3, 0xc2, 0x01, 3, 4, 5, 6]
        );
        assert!(canonical_delta(&old, &old).is_empty());
    }

    #[test]
    fn smallest_delta_of_worked_pages() {
        // Two 1-byte changes 1 byte apart: separate pairs cost 3 + 3 bytes, merged 1 + 1 + 3.
        let old = [0u8; 8];
        let mut new = old;
        new[2] = 1;
        new[4] = 1;
        assert_eq!(canonical_delta(&old, &new).len(), 6);
        assert_eq!(smallest_delta_len(&old, &new), 5);
        // A gap of 4 equal bytes: skipping it (2 more length bytes) beats copying it: 3 + 3.
        let mut new = [0u8; 16];
        new[2] = 1;
        new[7] = 1;
        assert_eq!(smallest_delta_len(&[0; 16], &new), 6);
        // No change: empty.
        assert_eq!(smallest_delta_len(&old, &old), 0);
        // Every other byte of 256: merging all costs 1 + 2 + 255 = 258; 128 separate pairs
        // cost 384.
        let alternating: Vec<u8> = (0..256).map(|i| (i % 2 == 0) as u8).collect();
        assert_eq!(smallest_delta_len(&[0; 256], &alternating), 258);
    }
}
