//! Public encoding entry points; they run the detected [`Kernel`](crate::Kernel).

use crate::encoded::Encoded;
use crate::kernel::Available;
use crate::source::PageSource;

/// Encodes the canonical delta from `old` to `new` into `out` (byte-identical to QEMU).
///
/// # Panics
/// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
#[inline]
pub fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    Available::best().encode_checked(old, new, out)
}

/// Encodes the smallest delta from `old` to `new` into `out`: same grammar as canonical,
/// never longer, and accepted by QEMU's decoder.
///
/// # Panics
/// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
pub fn encode_compact(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    crate::kernel::check_lengths(old.len(), new.len());
    crate::compact::encode(old, new, out)
}

/// Encodes the canonical delta from `cached` to `new` into `out` and leaves `cached`
/// equal to `new`, in one pass over both pages. On [`Encoded::Overflow`] `cached` is
/// still refreshed.
///
/// `new` is read through [`PageSource`]: a slice, or guest memory that other threads write
/// meanwhile ([`LivePage`](crate::LivePage)). Each byte of `new` is read exactly once, and
/// the delta's bytes are taken from the refreshed copy, so the delta always turns the old
/// `cached` into the new `cached`, whatever happens to `new` during the call.
///
/// # Panics
/// If `cached` and `new` differ in length or are longer than `u32::MAX` bytes.
#[inline]
pub fn encode_update<S: PageSource + ?Sized>(
    cached: &mut [u8],
    new: &S,
    out: &mut [u8],
) -> Encoded {
    Available::best().encode_update_checked(cached, new, out)
}
