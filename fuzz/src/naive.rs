//! Deliberately naive oracles, written from the format description in DESIGN.md §1 and
//! sharing no code with the codec: a decoder, a canonical encoder, and the length of the
//! smallest delta.
#![forbid(unsafe_code)]

/// Longest length QEMU writes in two ULEB128 bytes; pages up to this size allow only
/// 2-byte lengths.
const QEMU_MAX_LEN: usize = 16383;

/// Decodes `delta` onto `page` in place with QEMU's rules, writing each changed run as soon
/// as it has been checked (so on rejection the earlier runs stay written). Returns the page
/// offset just past the last changed run, or `None` when the delta is rejected.
pub fn decode(delta: &[u8], page: &mut [u8]) -> Option<usize> {
    let max_len_bytes = if page.len() <= QEMU_MAX_LEN { 2 } else { 5 };
    let mut pos = 0;
    let mut at = 0;
    while pos < delta.len() {
        let zrun_is_first_field = pos == 0;
        let zrun = read_len(delta, &mut pos, max_len_bytes)?;
        if zrun == 0 && !zrun_is_first_field {
            return None;
        }
        at += zrun;
        if at > page.len() {
            return None;
        }
        let nzrun = read_len(delta, &mut pos, max_len_bytes)?;
        if nzrun == 0 || at + nzrun > page.len() || pos + nzrun > delta.len() {
            return None;
        }
        for _ in 0..nzrun {
            page[at] = delta[pos];
            at += 1;
            pos += 1;
        }
    }
    Some(at)
}

/// Reads one length: at least 2 bytes must be left, at most `max_bytes` ULEB128 bytes are
/// allowed, and the value must fit in `u32`.
fn read_len(delta: &[u8], pos: &mut usize, max_bytes: usize) -> Option<usize> {
    if delta.len() - *pos < 2 {
        return None;
    }
    let mut value: u64 = 0;
    for k in 0..max_bytes {
        let byte = *delta.get(*pos + k)?;
        value += u64::from(byte & 0x7f) << (7 * k);
        if byte < 0x80 {
            *pos += k + 1;
            return usize::try_from(u32::try_from(value).ok()?).ok();
        }
    }
    None
}

/// Appends `value` in full ULEB128.
fn push_len(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The changed runs of `old` → `new` as half-open `(start, end)` byte ranges, maximal.
pub fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in 0..old.len() {
        if old[i] != new[i] {
            match runs.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
    }
    runs
}

/// The canonical delta (maximal runs, full ULEB128); empty when the pages are equal.
pub fn canonical_delta(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut delta = Vec::new();
    let mut prev_end = 0;
    for (start, end) in changed_runs(old, new) {
        push_len(&mut delta, start - prev_end);
        push_len(&mut delta, end - start);
        delta.extend_from_slice(&new[start..end]);
        prev_end = end;
    }
    delta
}

/// Bytes `value` takes in ULEB128.
fn len_bytes(value: usize) -> usize {
    let mut n = 1;
    let mut rest = value >> 7;
    while rest != 0 {
        n += 1;
        rest >>= 7;
    }
    n
}

/// Length of the smallest valid delta from `old` to `new`, by dynamic programming over the
/// changed runs, or `None` when there are more than `max_runs` of them (the search is
/// quadratic).
///
/// Any valid delta is a list of written ranges separated by skipped gaps of equal bytes,
/// and it must write every changed byte. Widening a range past a changed run never makes
/// the delta shorter (each byte costs one byte and can save at most one length byte), so
/// the smallest delta writes unions of consecutive changed runs: `best[j]` is the smallest
/// encoding of runs `0..j`, with the last range covering runs `i..j`.
pub fn min_delta_len(old: &[u8], new: &[u8], max_runs: usize) -> Option<usize> {
    let runs = changed_runs(old, new);
    if runs.len() > max_runs {
        return None;
    }
    let mut best = vec![0usize; runs.len() + 1];
    for j in 1..=runs.len() {
        let end = runs[j - 1].1;
        best[j] = (1..=j)
            .map(|i| {
                let start = runs[i - 1].0;
                let skip = start - if i == 1 { 0 } else { runs[i - 2].1 };
                best[i - 1] + len_bytes(skip) + len_bytes(end - start) + (end - start)
            })
            .min()
            .unwrap_or(usize::MAX);
    }
    Some(best[runs.len()])
}
