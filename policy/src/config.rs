//! Sender configuration, migration stages and configuration errors.

use core::fmt;

use crate::admission::Admission;
use crate::cache::CacheKind;

/// Where a migration is in QEMU's sequence of passes over guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The first complete pass: every page is sent raw; XBZRLE has not started.
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
    /// Page size in bytes (1 ..= `u32::MAX`). XBZRLE records carry a u16 delta length, so
    /// for pages above 65535 bytes a delta that does not fit in 65535 bytes goes raw.
    pub page_size: usize,
    /// Page-data budget of the cache in bytes (at least one page). Metadata (about 24
    /// bytes per slot) is not counted, as in QEMU.
    pub cache_bytes: u64,
    /// Cache organisation.
    pub cache: CacheKind,
    /// Which pages may enter the cache.
    pub admission: Admission,
    /// Number of independently locked cache shards (a power of two, at least 1). Page `p`
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
    /// Checks every field; [`Sender::new`](crate::Sender::new) calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_page_size(self.page_size)?;
        check_cache_bytes(self.cache_bytes, self.page_size)?;
        if self.shards == 0 || !self.shards.is_power_of_two() {
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
            && (min_passes == 0 || counters == 0)
        {
            return Err(ConfigError::Frequency {
                min_passes,
                counters,
            });
        }
        Ok(())
    }
}

pub(crate) fn check_page_size(page_size: usize) -> Result<(), ConfigError> {
    if page_size == 0 || u32::try_from(page_size).is_err() {
        return Err(ConfigError::PageSize(page_size));
    }
    Ok(())
}

pub(crate) fn check_cache_bytes(cache_bytes: u64, page_size: usize) -> Result<(), ConfigError> {
    if cache_bytes < page_size as u64 || usize::try_from(cache_bytes).is_err() {
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
    /// The page size is 0 or above `u32::MAX`.
    PageSize(usize),
    /// The cache budget is below one page or does not fit in memory.
    CacheBytes {
        /// Requested budget.
        cache_bytes: u64,
        /// Page size.
        page_size: usize,
    },
    /// The shard count is not a power of two.
    Shards(usize),
    /// A set-associative cache needs at least one way.
    Ways(usize),
    /// The frequency policy needs `min_passes >= 1` and at least one counter.
    Frequency {
        /// Requested pass threshold.
        min_passes: u8,
        /// Requested counter count.
        counters: usize,
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
                "cache size {cache_bytes} is below one page ({page_size} bytes) or too large"
            ),
            Self::Shards(n) => write!(f, "shard count {n} is not a power of two"),
            Self::Ways(n) => write!(f, "a set-associative cache needs at least one way, not {n}"),
            Self::Frequency {
                min_passes,
                counters,
            } => write!(
                f,
                "frequency admission needs min_passes >= 1 and counters >= 1 \
                 (got {min_passes} and {counters})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
