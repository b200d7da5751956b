//! QEMU-compatible XBZRLE (XOR-based zero-run-length encoding).
//!
//! A *delta* turns an old page into a new page of the same length. It is a sequence of
//! `zrun nzrun` pairs: `zrun` unchanged bytes to skip, then `nzrun` changed bytes given
//! literally. Lengths are ULEB128; the trailing unchanged run is never encoded, so the
//! empty delta means "unchanged".
//!
//! * [`encode`] writes the **canonical** delta (maximal runs), byte-identical to QEMU's
//!   `xbzrle_encode_buffer`, with an *exact* overflow rule (see [`Encoded::Overflow`]).
//! * [`encode_compact`] writes the smallest delta in the same grammar; QEMU's decoder
//!   accepts it.
//! * [`encode_update`] encodes and refreshes the cached copy in a single pass.
//! * [`decode`] applies a delta in place with QEMU's verdict on every input, leaving the page
//!   untouched on error; [`decode_partial`] is QEMU's single pass (the runs before a fault
//!   stay written); [`validate`] checks a delta without touching any page.
//!
//! The fastest [`Kernel`] the CPU supports is detected once and used by the free
//! functions; every kernel can also be called directly.
//!
//! ```
//! let old = [0u8; 4096];
//! let mut new = old;
//! new[100..108].copy_from_slice(b"modified");
//!
//! let mut delta = [0u8; 4096];
//! let xbzrle::Encoded::Delta(len) = xbzrle::encode(&old, &new, &mut delta) else {
//!     panic!("8 changed bytes fit in a page");
//! };
//! assert_eq!(&delta[..len], b"\x64\x08modified"); // skip 100 bytes, then 8 new ones
//!
//! let mut page = old;
//! assert_eq!(xbzrle::decode(&delta[..len], &mut page), Ok(108));
//! assert_eq!(page, new);
//! ```
//!
//! The crate's `README.md` has a longer example (run as a doctest).
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
mod compact;
mod decode;
mod encode;
mod encoded;
mod format;
mod kernel;
mod source;

pub use decode::{DecodeError, DecodeErrorKind, decode, decode_partial, validate};
#[cfg(feature = "alloc")]
pub use encode::encode_compact;
pub use encode::{encode, encode_update, max_delta_len};
pub use encoded::Encoded;
pub use kernel::{Kernel, KernelUnavailable, UnknownKernel};
pub use source::{LivePage, PageSource, prefetch_slice};

/// The examples of `README.md`, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Longest length QEMU writes (two ULEB128 bytes). Pages up to this size are
/// QEMU-compatible in both directions.
pub const QEMU_MAX_LEN: usize = 0x3fff;
