//! The scalar reference: byte at a time, written to be obviously right. Every other kernel
//! is tested against it.
#![forbid(unsafe_code)]

use crate::encode::Encoded;
use crate::format::DeltaWriter;

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

/// Encode, then refresh the cached copy.
pub(crate) fn encode_update(cached: &mut [u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let result = encode(cached, new, out);
    cached.copy_from_slice(new);
    result
}
