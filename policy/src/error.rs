//! Configuration errors, and the checks of the sizes every component shares.

use core::fmt;

/// Most cache shards a [`SenderConfig`](crate::SenderConfig) may ask for. Every shard costs
/// a few small allocations of its own, so the count is bounded by a constant rather than by
/// memory.
pub const MAX_SHARDS: usize = 1 << 16;

pub(crate) fn check_page_size(page_size: usize) -> Result<(), ConfigError> {
    // A page must fit in one slice, so it is also capped at `isize::MAX` (32-bit targets).
    if page_size == 0 || u32::try_from(page_size).is_err() || isize::try_from(page_size).is_err() {
        return Err(ConfigError::PageSize(page_size));
    }
    Ok(())
}

pub(crate) fn check_cache_bytes(cache_bytes: u64, page_size: usize) -> Result<(), ConfigError> {
    // No allocation can exceed `isize::MAX` bytes: a larger budget cannot be represented.
    if cache_bytes < page_size as u64 || isize::try_from(cache_bytes).is_err() {
        return Err(ConfigError::CacheBytes {
            cache_bytes,
            page_size,
        });
    }
    Ok(())
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// The page size is 0 or above `u32::MAX` (or `isize::MAX`).
    PageSize(usize),
    /// The cache budget is below one page or above `isize::MAX` (no allocation can be that
    /// large).
    CacheBytes {
        /// Requested budget.
        cache_bytes: u64,
        /// Page size.
        page_size: usize,
    },
    /// The shard count is not a power of two or above [`MAX_SHARDS`].
    Shards(usize),
    /// A set-associative cache needs at least one way.
    Ways(usize),
    /// The frequency policy needs `min_passes >= 1` and 1 ..= `isize::MAX` counters.
    Frequency {
        /// Requested pass threshold.
        min_passes: u8,
        /// Requested counter count.
        counters: usize,
    },
    /// The sizes are valid but the allocator refused the memory they need (cache metadata,
    /// the reservation of the page data, the admission counters, or scratch space of a
    /// resize). Nothing was created or changed.
    OutOfMemory {
        /// Size of the allocation that failed, in bytes (`u64::MAX` if it does not even
        /// fit in an address).
        bytes: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PageSize(size) => write!(f, "page size {size} is not in 1..=u32::MAX"),
            Self::CacheBytes {
                cache_bytes,
                page_size,
            } => write!(
                f,
                "cache size {cache_bytes} is below one page ({page_size} bytes) \
                 or above isize::MAX"
            ),
            Self::Shards(n) => write!(
                f,
                "shard count {n} is not a power of two in 1..={MAX_SHARDS}"
            ),
            Self::Ways(n) => write!(f, "a set-associative cache needs at least one way, not {n}"),
            Self::Frequency {
                min_passes,
                counters,
            } => write!(
                f,
                "frequency admission needs min_passes >= 1 and counters in 1..=isize::MAX \
                 (got {min_passes} and {counters})"
            ),
            Self::OutOfMemory { bytes } => {
                write!(f, "out of memory: an allocation of {bytes} bytes failed")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
