//! Sender configuration.

use crate::admission::Admission;
use crate::cache::CacheKind;
use crate::error::{ConfigError, MAX_SHARDS, check_cache_bytes, check_page_size};

/// Everything a [`Sender`](crate::Sender) needs to know up front.
///
/// `SenderConfig::default()` is QEMU's setup: 4 KiB pages, a 64 MiB direct-mapped cache,
/// nothing admitted during the bulk stage, one shard. Change it with the `with_*` methods
/// (or by assigning the fields): the struct may gain fields, so it cannot be written as a
/// literal outside this crate.
///
/// ```
/// use xbzrle_policy::{CacheKind, Replacement, SenderConfig};
///
/// let config = SenderConfig::default()
///     .with_cache_bytes(256 << 20)
///     .with_cache(CacheKind::SetAssociative { ways: 16, replacement: Replacement::Frequency })
///     .with_shards(2);
/// assert_eq!(config.page_size, 4096);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// This configuration with pages of `page_size` bytes.
    #[must_use]
    pub fn with_page_size(self, page_size: usize) -> Self {
        Self { page_size, ..self }
    }

    /// This configuration with a page-data budget of `cache_bytes`.
    #[must_use]
    pub fn with_cache_bytes(self, cache_bytes: u64) -> Self {
        Self {
            cache_bytes,
            ..self
        }
    }

    /// This configuration with the cache organisation `cache`.
    #[must_use]
    pub fn with_cache(self, cache: CacheKind) -> Self {
        Self { cache, ..self }
    }

    /// This configuration with the admission policy `admission`.
    #[must_use]
    pub fn with_admission(self, admission: Admission) -> Self {
        Self { admission, ..self }
    }

    /// This configuration with `shards` cache shards.
    #[must_use]
    pub fn with_shards(self, shards: usize) -> Self {
        Self { shards, ..self }
    }

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
