//! Naive oracles of the XBZRLE format, for the tests, fuzz targets and benches of the
//! xbzrle workspace.
//!
//! Everything here is written from the format description (`docs/format.md`) and shares no
//! code with the codec (this crate does not depend on it): a bug in the codec cannot hide
//! in its own oracle. Every function is deliberately the simplest correct version, byte by
//! byte; none is meant to be fast.
//!
//! * [`uleb128`]: write (minimal or padded), size and read ULEB128 lengths.
//! * [`encode`]: the canonical runs and delta, and the length of the smallest delta.
//! * [`decode`]: a decoder with QEMU's rules that reports what it rejected and where.
//! * [`Rng`]: a tiny deterministic generator for structured test cases.
//! * [`ReadLog`]: the bookkeeping of test doubles of guest memory that changes while it is
//!   read (every byte read once, and what that read returned).
//! * [`limited_alloc`]: a global allocator that refuses large requests on demand, for tests
//!   of allocation failure (the only `unsafe` code here).
//!
//! `tests/qemu_vectors.rs` checks the canonical encoder and the decoder against the outputs
//! recorded from QEMU (`codec/tests/data`), so a disagreement with the codec is the codec's.
#![deny(unsafe_code)]

pub mod decode;
pub mod encode;
pub mod limited_alloc;
mod reads;
mod rng;
pub mod uleb128;

pub use decode::{Defect, Outcome};
pub use encode::{Run, canonical_delta, canonical_runs, smallest_delta_len};
pub use reads::ReadLog;
pub use rng::Rng;

/// Longest length QEMU writes: two ULEB128 bytes (`0x3fff`). For pages of at most this many
/// bytes QEMU's decoder allows only 2-byte lengths.
pub const QEMU_MAX_LEN: usize = 0x3fff;
