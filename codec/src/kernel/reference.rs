//! The scalar reference: byte at a time, written to be obviously right. Every other kernel
//! is tested against it.
#![forbid(unsafe_code)]

use crate::encoded::Encoded;
use crate::format::DeltaWriter;
use crate::source::PageSource;

/// Canonical encode: maximal runs, byte by byte.
pub(crate) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let mut writer = DeltaWriter::new(out);
    let mut i = 0;
    loop {
        let zrun_start = i;
        while i < old.len() && old[i] == new[i] {
            i += 1;
        }
        if i == old.len() {
            break;
        }
        let nzrun_start = i;
        while i < old.len() && old[i] != new[i] {
            i += 1;
        }
        if writer
            .push(nzrun_start - zrun_start, &new[nzrun_start..i])
            .is_err()
        {
            return Encoded::Overflow;
        }
    }
    if writer.is_empty() {
        Encoded::Unchanged
    } else {
        Encoded::Delta(writer.len())
    }
}

/// Encode and refresh, byte by byte: each byte of `new` is read once and stored into the
/// cached copy, and the changed runs are taken from the refreshed copy.
pub(crate) fn encode_update<S: PageSource + ?Sized>(
    cached: &mut [u8],
    new: &S,
    out: &mut [u8],
) -> Encoded {
    let mut writer = DeltaWriter::new(out);
    let mut zrun_start = 0;
    let mut changed_start = None;
    for i in 0..cached.len() {
        let mut byte = [0u8];
        new.read(i, &mut byte);
        let changed = byte[0] != cached[i];
        cached[i] = byte[0];
        match (changed_start, changed) {
            (None, true) => changed_start = Some(i),
            (Some(start), false) => {
                if writer.push(start - zrun_start, &cached[start..i]).is_err() {
                    new.read(i + 1, &mut cached[i + 1..]);
                    return Encoded::Overflow;
                }
                zrun_start = i;
                changed_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = changed_start
        && writer.push(start - zrun_start, &cached[start..]).is_err()
    {
        return Encoded::Overflow;
    }
    if writer.is_empty() {
        Encoded::Unchanged
    } else {
        Encoded::Delta(writer.len())
    }
}
