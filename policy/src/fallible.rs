//! Allocations that report failure as [`ConfigError::OutOfMemory`] instead of aborting.
//!
//! Rust aborts the process when an infallible allocation (`vec![..]`, `Vec::push`,
//! `Box::new`) fails; the C API's panic boundary cannot catch that. Every allocation whose
//! size comes from a configuration value goes through these helpers. Small allocations of a
//! fixed size (a handful of boxes per shard) do not.

use crate::error::ConfigError;

/// The error for a refused allocation of `count` values of `T`.
fn out_of_memory<T>(count: usize) -> ConfigError {
    let bytes = count.saturating_mul(size_of::<T>());
    ConfigError::OutOfMemory {
        bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
    }
}

/// An empty `Vec` with room for exactly `count` values.
pub(crate) fn with_capacity<T>(count: usize) -> Result<Vec<T>, ConfigError> {
    let mut v = Vec::new();
    v.try_reserve_exact(count)
        .map_err(|_| out_of_memory::<T>(count))?;
    Ok(v)
}

/// `vec![value; count]`, reporting failure. Writes every element, so the memory is
/// committed at once: for metadata, not for lazily committed page data.
pub(crate) fn filled<T: Clone>(count: usize, value: T) -> Result<Vec<T>, ConfigError> {
    let mut v = with_capacity(count)?;
    v.resize(count, value);
    Ok(v)
}

/// Checks that `bytes` bytes can be allocated right now, without committing them: the
/// memory is reserved (`malloc`, never written) and released at once.
pub(crate) fn probe(bytes: usize) -> Result<(), ConfigError> {
    with_capacity::<u8>(bytes).map(drop)
}

/// `vec![0u8; bytes]`: a zeroed allocation (`calloc`), so the operating system commits a
/// page of it only when it is first written.
///
/// Safe Rust has no fallible zeroed allocation, so this [`probe`]s the size first and then
/// makes the zeroed allocation of the same size, which the allocator serves the same way.
/// Only if another thread takes the memory between the two calls (a strict overcommit
/// limit or an address-space limit reached in that instant) can the second one still fail,
/// and that failure aborts the process.
pub(crate) fn zeroed(bytes: usize) -> Result<Vec<u8>, ConfigError> {
    probe(bytes)?;
    Ok(vec![0; bytes])
}
