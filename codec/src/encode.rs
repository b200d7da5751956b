//! Public encoding entry points; they run the detected [`Kernel`](crate::Kernel).

use crate::encoded::Encoded;
use crate::kernel::Available;
use crate::source::PageSource;

/// The longest canonical or compact delta of a page of `page_len` bytes: an output buffer of
/// this length never overflows (QEMU gives its encoder one page, which a page with many
/// short changed runs overflows). Saturates at `usize::MAX`.
///
/// Every `zrun nzrun` pair after the first covers at least two bytes of the page and costs
/// at most 1.5 bytes of delta per byte covered (its two lengths take no more bytes than the
/// runs they count, plus the changed bytes); the first pair may start with an empty zrun,
/// which costs one byte more. So a delta is at most `(3 * page_len + 3) / 2` bytes, reached
/// by one-byte changed runs between one-byte unchanged runs, starting at offset 0 (on an
/// even length the first run takes two bytes).
///
/// ```
/// let page_len = 4096;
/// let old = vec![0u8; page_len];
/// let new: Vec<u8> = (0..page_len).map(|i| (i % 2) as u8).collect(); // every other byte
/// let mut out = vec![0u8; xbzrle::max_delta_len(page_len)];
/// assert_eq!(xbzrle::encode(&old, &new, &mut out), xbzrle::Encoded::Delta(6144));
/// ```
#[must_use]
pub const fn max_delta_len(page_len: usize) -> usize {
    if page_len == 0 {
        0
    } else {
        // (3n + 3) / 2 = n + (n + 3) / 2 (2n is even), without overflowing before the end.
        page_len.saturating_add(page_len / 2 + (page_len % 2 + 3) / 2)
    }
}

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
#[cfg(feature = "alloc")]
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
