//! The compact encoder: the smallest delta in the canonical grammar.
//!
//! A delta writes ranges of the new page separated by skipped gaps of equal bytes. The
//! smallest one writes unions of consecutive canonical changed runs: widening a range into
//! an equal byte costs that byte and saves at most one length byte, so it never helps
//! strictly; splitting a changed run would need a zero-length gap, which is invalid. What
//! is left is to choose which gaps between canonical runs to copy rather than skip.
//!
//! A range covering runs `a..=b` costs `uleb(gap before a) + uleb(L) + L`, with
//! `L = end(b) - start(a)`. Because `uleb(L)` depends on the whole range, a choice made
//! gap by gap is not always the smallest; a dynamic program over the runs is:
//! `best[j] = min over a < j of best[a] + uleb(gap(a)) + uleb(L(a, j)) + L(a, j)`.
//! For a fixed ULEB128 size of `L` the term to minimise is `best[a] + uleb(gap(a)) -
//! start(a)` over a sliding window of `a`, kept in a monotone deque per size (5 sizes for
//! `u32` lengths), so the program runs in linear time. Ties keep the gap skipped, so the
//! result equals the canonical delta whenever merging saves nothing.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use crate::encoded::Encoded;
use crate::format::{DeltaWriter, MAX_ULEB128_LEN, read_uleb128, uleb128_len};
use crate::kernel::Available;

/// One maximal changed run: `new[start..end]` differs from `old` at every byte.
#[derive(Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
}

/// Encodes the smallest delta from `old` to `new` into `out` (see the module docs).
/// Lengths must already have been checked (equal, at most `u32::MAX`).
pub(crate) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let runs = changed_runs(old, new);
    if runs.is_empty() {
        return Encoded::Unchanged;
    }
    let group_starts = smallest_grouping(&runs);
    let mut writer = DeltaWriter::new(out);
    let mut prev_end = 0;
    for (i, &first) in group_starts.iter().enumerate() {
        let last = group_starts.get(i + 1).map_or(runs.len(), |&next| next) - 1;
        let (start, end) = (runs[first].start, runs[last].end);
        if writer.push(start - prev_end, &new[start..end]).is_err() {
            return Encoded::Overflow;
        }
        prev_end = end;
    }
    Encoded::Delta(writer.len())
}

/// The canonical runs, found with the fastest kernel: the canonical delta is written to a
/// scratch buffer that always fits (each run costs at most `2 * its length + gap + 1`
/// bytes, so the whole delta at most `2 * page + 1`) and read back.
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<Run> {
    let mut scratch = vec![0u8; 2 * old.len() + 1];
    let len = match Available::best().encode_checked(old, new, &mut scratch) {
        Encoded::Delta(len) => len,
        Encoded::Unchanged | Encoded::Overflow => return Vec::new(),
    };
    let mut runs = Vec::new();
    let (mut at, mut page_offset) = (0, 0);
    while at < len {
        let (zrun, used) = read_len(&scratch[at..len]);
        at += used;
        let (nzrun, used) = read_len(&scratch[at..len]);
        at += used + nzrun;
        let start = page_offset + zrun;
        page_offset = start + nzrun;
        runs.push(Run {
            start,
            end: page_offset,
        });
    }
    runs
}

/// Reads a length from a delta this crate wrote (so it is well formed and fits in `u32`):
/// its value and size.
fn read_len(bytes: &[u8]) -> (usize, usize) {
    let (value, used) = read_uleb128(bytes, MAX_ULEB128_LEN)
        .expect("the canonical encoder writes well-formed lengths");
    (value as usize, used)
}

/// ULEB128 size of a length, for run lengths and gaps (at most `u32::MAX`).
fn uleb(value: usize) -> usize {
    uleb128_len(u32::try_from(value).expect("lengths fit in u32"))
}

/// Indices of the runs that start a written range in the smallest delta, in order.
fn smallest_grouping(runs: &[Run]) -> Vec<usize> {
    let gap = |a: usize| runs[a].start - if a == 0 { 0 } else { runs[a - 1].end };
    // best[j]: smallest encoding of runs 0..j; from[j]: first run of its last range.
    let mut best = vec![0usize; runs.len() + 1];
    let mut from = vec![0usize; runs.len() + 1];
    // key(a) + L(a, j) = best[a] + uleb(gap(a)) + L(a, j) since L = end(j-1) - start(a);
    // stored with `+ start(a)` moved to the other side, as a signed quantity.
    let key = |best: &[usize], a: usize| (best[a] + uleb(gap(a))) as i64 - runs[a].start as i64;
    let mut windows: [SizeWindow; MAX_ULEB128_LEN] =
        core::array::from_fn(|size| SizeWindow::new(size + 1));
    for j in 1..=runs.len() {
        let end = runs[j - 1].end;
        let mut choice: Option<(usize, usize)> = None; // (cost, first run)
        for window in &mut windows {
            window.slide(runs, end, j, |a| key(&best, a));
            if let Some((first, k)) = window.min() {
                let cost =
                    usize::try_from(k + end as i64).expect("costs are positive") + window.size;
                // Prefer the later start on ties: fewer gaps copied.
                if choice.is_none_or(|(c, f)| cost < c || (cost == c && first > f)) {
                    choice = Some((cost, first));
                }
            }
        }
        let (cost, first) = choice.expect("run j-1 alone is always a candidate");
        best[j] = cost;
        from[j] = first;
    }
    let mut starts = Vec::new();
    let mut j = runs.len();
    while j > 0 {
        starts.push(from[j]);
        j = from[j];
    }
    starts.reverse();
    starts
}

/// The candidate first runs `a` whose range to the current run has a length of ULEB128
/// size `size`, as a monotone deque of `(a, key(a))` with increasing keys.
struct SizeWindow {
    size: usize,
    /// Smallest length of this size.
    min_len: usize,
    /// Smallest length of the next size (`usize::MAX` for the largest).
    max_len_excl: usize,
    /// Next run to consider for entry.
    next: usize,
    deque: VecDeque<(usize, i64)>,
}

impl SizeWindow {
    fn new(size: usize) -> Self {
        let bound = |size: usize| {
            if size == 1 {
                1
            } else {
                1usize << (7 * (size - 1))
            }
        };
        Self {
            size,
            min_len: bound(size),
            max_len_excl: if size == MAX_ULEB128_LEN {
                usize::MAX
            } else {
                bound(size + 1)
            },
            next: 0,
            deque: VecDeque::new(),
        }
    }

    /// Updates the window for ranges ending at `end` (the end of run `j - 1`): enters the
    /// runs `a < j` whose length reached this size, drops those that outgrew it.
    fn slide(&mut self, runs: &[Run], end: usize, j: usize, key: impl Fn(usize) -> i64) {
        while self.next < j && end - runs[self.next].start >= self.min_len {
            let a = self.next;
            self.next += 1;
            if end - runs[a].start >= self.max_len_excl {
                continue; // skipped this size entirely
            }
            let k = key(a);
            while self.deque.back().is_some_and(|&(_, back)| back >= k) {
                self.deque.pop_back();
            }
            self.deque.push_back((a, k));
        }
        while self
            .deque
            .front()
            .is_some_and(|&(a, _)| end - runs[a].start >= self.max_len_excl)
        {
            self.deque.pop_front();
        }
    }

    /// The candidate with the smallest key (the latest of equals).
    fn min(&self) -> Option<(usize, i64)> {
        self.deque.front().copied()
    }
}
