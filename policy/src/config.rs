//! Sender configuration, migration stages and configuration errors.

use core::fmt;

use crate::admission::Admission;
use crate::cache::CacheKind;

/// Where a migration is in QEMU's sequence of passes over guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The first complete pass: every page is sent raw; XBZRLE has not started. It ends at
    /// [`Sender::end_bulk_stage`](crate::Sender::end_bulk_stage) or at the second
    /// [`Sender::start_pass`](crate::Sender::start_pass), whichever comes first.
    Bulk,
    /// Later passes while the guest runs: cache lookups, XBZRLE, insertions.
    Iterative,
    /// The final pass with the guest stopped: the cache's page data is never written.
    Last,
}

/// Everything a [`Sender`](crate::Sender) needs to know up front.
///
/// `SenderConfig::default()` is QEMU's setup: 4 KiB pages, a 64 MiB direct-mapped cache,
/// nothing admitted during the bulk stage, one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Page size in bytes (1 ..= `u32::MAX`, and at most `isize::MAX` on 32-bit targets).
    /// XBZRLE records carry a u16 delta length, so for pages above 65535 bytes a delta that
    /// does not fit in 65535 bytes goes raw.
    pub page_size: usize,
    /// Page-data budget of the cache in bytes (one page ..= `isize::MAX`). Metadata (about
    /// 24 bytes per slot) is not counted, as in QEMU. A budget the allocator cannot provide
    /// gives [`ConfigError::OutOfMemory`]; see [`Sender::new`](crate::Sender::new).
    pub cache_bytes: u64,
    /// Cache organisation.
    pub cache: CacheKind,
    /// Which pages may enter the cache.
    pub admission: Admission,
    /// Number of independently locked cache shards (a power of two, 1 ..=
    /// [`MAX_SHARDS`]). Page `p`
    /// lives in shard `p mod shards`. The budget is split evenly; with a direct-mapped
    /// cache the mapping stays exactly QEMU's whenever `cache_bytes / page_size >= shards`.
    pub shards: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            page_size: 4096,
            cache_bytes: 64 << 20,
            cache: CacheKind::DirectMapped,
            admission: Admission::AfterBulk,
            shards: 1,
        }
    }
}

impl SenderConfig {
    /// Checks every field; [`Sender::new`](crate::Sender::new) calls this. It allocates
    /// nothing, so it never reports [`ConfigError::OutOfMemory`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_page_size(self.page_size)?;
        check_cache_bytes(self.cache_bytes, self.page_size)?;
        if !self.shards.is_power_of_two() || self.shards > MAX_SHARDS {
            return Err(ConfigError::Shards(self.shards));
        }
        if let CacheKind::SetAssociative { ways, .. } = self.cache
            && ways == 0
        {
            return Err(ConfigError::Ways(ways));
        }
        if let Admission::Frequency {
            min_passes,
            counters,
        } = self.admission
            && (min_passes == 0 || counters == 0 || isize::try_from(counters).is_err())
        {
            return Err(ConfigError::Frequency {
                min_passes,
                counters,
            });
        }
        Ok(())
    }
}

/// Most cache shards a [`SenderConfig`] may ask for. Every shard costs a few small
/// allocations of its own, so the count is bounded by a constant rather than by memory.
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
