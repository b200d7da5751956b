//! A naive decoder with QEMU's rules that says what it rejected and where.

use crate::QEMU_MAX_LEN;
use crate::uleb128::{self, ReadError};

/// What was wrong with a delta (the rules of QEMU's decoder, `docs/format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Defect {
    /// Fewer than 2 bytes left where a length starts, a length cut by the end of the
    /// delta, or changed-run data past the end of the delta.
    Truncated,
    /// An unchanged run of length 0 other than the very first field.
    ZeroUnchangedRun,
    /// A changed run of length 0.
    ZeroChangedRun,
    /// A length of more ULEB128 bytes than allowed (2 for pages of at most
    /// [`QEMU_MAX_LEN`] bytes, 5 otherwise) or above `u32::MAX`.
    OverlongLength,
    /// A run that reaches past the end of the page.
    RunPastPage,
}

/// The result of [`decode`]: the page offset just past the last changed run, or the
/// defect and the delta offset of the field it was found in.
pub type Outcome = Result<usize, (Defect, usize)>;

/// Decodes `delta` onto `page` in place, byte by byte, with every check of QEMU's decoder in
/// its order. Each changed run is written as soon as it has been checked, so on rejection
/// the runs before the faulty field stay written (as in QEMU).
pub fn decode(delta: &[u8], page: &mut [u8]) -> Outcome {
    let max_len_bytes = if page.len() <= QEMU_MAX_LEN { 2 } else { 5 };
    let (mut i, mut d) = (0, 0);
    while i < delta.len() {
        let zrun_at = i;
        let (zrun, used) = read_len(delta, i, max_len_bytes)?;
        if zrun == 0 && i != 0 {
            return Err((Defect::ZeroUnchangedRun, i));
        }
        i += used;
        if d + zrun > page.len() {
            return Err((Defect::RunPastPage, zrun_at));
        }
        d += zrun;
        let nzrun_at = i;
        let (nzrun, used) = read_len(delta, i, max_len_bytes)?;
        if nzrun == 0 {
            return Err((Defect::ZeroChangedRun, nzrun_at));
        }
        i += used;
        if d + nzrun > page.len() {
            return Err((Defect::RunPastPage, nzrun_at));
        }
        if i + nzrun > delta.len() {
            return Err((Defect::Truncated, i));
        }
        for _ in 0..nzrun {
            page[d] = delta[i];
            d += 1;
            i += 1;
        }
    }
    Ok(d)
}

/// One length at delta offset `at`: at least 2 bytes must be left (a length is always
/// followed by something), at most `max_bytes` ULEB128 bytes, and the value must fit in
/// `u32`.
fn read_len(delta: &[u8], at: usize, max_bytes: usize) -> Result<(usize, usize), (Defect, usize)> {
    if delta.len() - at < 2 {
        return Err((Defect::Truncated, at));
    }
    match uleb128::read(&delta[at..], max_bytes) {
        Ok((value, used)) if value <= u64::from(u32::MAX) => Ok((value as usize, used)),
        Ok(_) | Err(ReadError::TooLong) => Err((Defect::OverlongLength, at)),
        Err(ReadError::Truncated) => Err((Defect::Truncated, at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked deltas on a 64-byte page, one per rule.
    #[test]
    fn every_rule_on_hand_made_deltas() {
        use Defect::*;
        let cases: &[(&[u8], Outcome)] = &[
            (&[], Ok(0)),
            (&[0, 1, 9], Ok(1)),
            (&[0x80, 0x00, 1, 9], Ok(1)),
            (&[63, 1, 9], Ok(64)),
            (&[0], Err((Truncated, 0))),
            (&[0, 2, 9], Err((Truncated, 2))),
            (&[0, 1, 9, 0x84, 0x00], Err((Truncated, 5))),
            (&[0, 1, 9, 0, 1, 9], Err((ZeroUnchangedRun, 3))),
            (&[3, 0, 9], Err((ZeroChangedRun, 1))),
            (&[0x81, 0x80, 0x00, 1, 9], Err((OverlongLength, 0))),
            (&[65, 1, 9], Err((RunPastPage, 0))),
            (&[60, 5, 1, 2, 3, 4, 5], Err((RunPastPage, 1))),
        ];
        for &(delta, want) in cases {
            let mut page = [0u8; 64];
            assert_eq!(decode(delta, &mut page), want, "{delta:02x?}");
        }
        // Longer lengths only above QEMU's limit; never above u32::MAX.
        let delta = [0x80, 0x80, 0x01, 1, 0xaa];
        assert_eq!(
            decode(&delta, &mut vec![0; QEMU_MAX_LEN]),
            Err((OverlongLength, 0))
        );
        assert_eq!(decode(&delta, &mut vec![0; QEMU_MAX_LEN + 2]), Ok(16385));
        let huge = [0x80, 0x80, 0x80, 0x80, 0x10, 1, 0xaa];
        assert_eq!(
            decode(&huge, &mut vec![0; QEMU_MAX_LEN + 1]),
            Err((OverlongLength, 0))
        );
    }

    #[test]
    fn runs_before_a_rejected_field_stay_written() {
        let mut page = [0u8; 16];
        let delta = [2, 3, 1, 2, 3, 0, 1, 9];
        assert_eq!(
            decode(&delta, &mut page),
            Err((Defect::ZeroUnchangedRun, 5))
        );
        assert_eq!(page[..6], [0, 0, 1, 2, 3, 0]);
    }
}
