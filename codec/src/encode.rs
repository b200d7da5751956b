//! Public encoding entry points; they run the detected [`Kernel`].

use crate::kernel::Kernel;

/// Outcome of an encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoded {
    /// The pages are identical: the delta is empty and nothing needs to be sent.
    Unchanged,
    /// A delta of this many bytes (at least 2) was written at the start of the output buffer.
    Delta(usize),
    /// The delta is longer than the output buffer; send the page raw. Exact: reported only
    /// when the delta really does not fit (QEMU's encoder also gives up when it fits with
    /// fewer than 2 spare bytes before an unchanged run). Bytes of the output buffer may
    /// have been overwritten, but never past its end.
    Overflow,
}

/// Encodes the canonical delta from `old` to `new` into `out` (byte-identical to QEMU).
///
/// # Panics
/// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
#[inline]
pub fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    Kernel::best().encode_unchecked_availability(old, new, out)
}

/// Encodes the smallest delta from `old` to `new` into `out`: same grammar as canonical,
/// never longer, and accepted by QEMU's decoder.
///
/// # Panics
/// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
pub fn encode_compact(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    crate::kernel::check_lengths(old, new);
    crate::compact::encode(old, new, out)
}

/// Encodes the canonical delta from `cached` to `new` into `out` and leaves `cached`
/// equal to `new`, in one pass over both pages. On [`Encoded::Overflow`] `cached` is
/// still refreshed.
///
/// # Panics
/// If `cached` and `new` differ in length or are longer than `u32::MAX` bytes.
#[inline]
pub fn encode_update(cached: &mut [u8], new: &[u8], out: &mut [u8]) -> Encoded {
    Kernel::best().encode_update_unchecked_availability(cached, new, out)
}
