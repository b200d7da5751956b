//! The C enumerations of the sender and the page cache, and their conversions from the
//! `uint32_t` fields of the C structs and to and from the policy crate's types: written once
//! for both objects.

use xbzrle_policy::{Admission, CacheKind, Replacement, Stage};

use crate::ffi::Status;
use crate::status::xbzrle_status::XBZRLE_ERR_INVALID_ARGUMENT;

/// Cache organisation (values of the `cache_kind` field of `xbzrle_sender_config` and
/// `xbzrle_page_cache_config`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_cache_kind {
    /// QEMU's direct-mapped cache: slot = page number mod slot count.
    XBZRLE_CACHE_DIRECT_MAPPED = 0,
    /// Set-associative cache with `ways` entries per set and the `replacement` victim rule.
    XBZRLE_CACHE_SET_ASSOCIATIVE = 1,
}

/// Victim choice of a set-associative cache (values of the `replacement` field of
/// `xbzrle_sender_config` and `xbzrle_page_cache_config`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_replacement {
    /// Evict the least recently used entry.
    XBZRLE_REPLACEMENT_LRU = 0,
    /// QEMU's rule: entries used within the last 2 generations are protected; evict the
    /// least recently used of the others, or do not insert.
    XBZRLE_REPLACEMENT_LIFETIME = 1,
    /// Protect like LIFETIME; among the others evict the entry with the fewest (decayed) hits.
    XBZRLE_REPLACEMENT_FREQUENCY = 2,
}

/// Which pages may enter the cache (values of `xbzrle_sender_config.admission`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_admission {
    /// Every page, also during the bulk stage (QEMU before commit 5cc11c46).
    XBZRLE_ADMIT_ALWAYS = 0,
    /// Every page after the bulk stage (QEMU's rule; the default).
    XBZRLE_ADMIT_AFTER_BULK = 1,
    /// Pages seen dirty in at least `admission_min_passes` passes after the bulk stage,
    /// counted in `admission_counters` bytes of counters.
    XBZRLE_ADMIT_FREQUENCY = 2,
}

/// Where a migration is.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_stage {
    /// The first complete pass, until `xbzrle_sender_end_bulk_stage` or else the second
    /// `xbzrle_sender_start_pass`: pages go raw.
    XBZRLE_STAGE_BULK = 0,
    /// Later passes while the guest runs: cache lookups, XBZRLE, insertions.
    XBZRLE_STAGE_ITERATIVE = 1,
    /// The final pass with the guest stopped: the cache is never written.
    XBZRLE_STAGE_LAST = 2,
}

/// What the sender decided for a page.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_action {
    /// All-zero page: a zero-page record was written.
    XBZRLE_ACTION_ZERO = 0,
    /// A raw-page record was written (see `xbzrle_raw_reason`).
    XBZRLE_ACTION_RAW = 1,
    /// An XBZRLE record was written.
    XBZRLE_ACTION_XBZRLE = 2,
    /// Cached and unchanged: nothing was written, nothing needs to be sent.
    XBZRLE_ACTION_SKIPPED = 3,
}

/// Why a page went raw.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_raw_reason {
    /// The page did not go raw.
    XBZRLE_RAW_NONE = 0,
    /// Bulk stage: XBZRLE has not started.
    XBZRLE_RAW_BULK = 1,
    /// The page was not cached (a cache miss).
    XBZRLE_RAW_MISS = 2,
    /// The delta did not fit in a page (an overflow).
    XBZRLE_RAW_OVERFLOW = 3,
}

/// The enumerations read from `uint32_t` fields: every value, for [`from_c`].
trait CEnum: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn value(self) -> u32;
}

/// The enumeration value `value`, or `XBZRLE_ERR_INVALID_ARGUMENT`.
fn from_c<E: CEnum>(value: u32) -> Status<E> {
    E::ALL
        .iter()
        .copied()
        .find(|e| e.value() == value)
        .ok_or(XBZRLE_ERR_INVALID_ARGUMENT)
}

macro_rules! c_enum {
    ($name:ident: $($variant:ident),* $(,)?) => {
        impl CEnum for $name {
            const ALL: &'static [Self] = &[$($name::$variant),*];
            fn value(self) -> u32 {
                self as u32
            }
        }
    };
}

c_enum!(xbzrle_cache_kind: XBZRLE_CACHE_DIRECT_MAPPED, XBZRLE_CACHE_SET_ASSOCIATIVE);
c_enum!(
    xbzrle_replacement: XBZRLE_REPLACEMENT_LRU,
    XBZRLE_REPLACEMENT_LIFETIME,
    XBZRLE_REPLACEMENT_FREQUENCY,
);
c_enum!(xbzrle_admission: XBZRLE_ADMIT_ALWAYS, XBZRLE_ADMIT_AFTER_BULK, XBZRLE_ADMIT_FREQUENCY);

/// `ways` of a default configuration: the recommended set-associative cache, for a caller that
/// changes only `cache_kind`.
pub(crate) const DEFAULT_WAYS: u32 = 16;

/// `replacement` of a default configuration (see [`DEFAULT_WAYS`]).
pub(crate) const DEFAULT_REPLACEMENT: xbzrle_replacement =
    xbzrle_replacement::XBZRLE_REPLACEMENT_FREQUENCY;

/// The cache organisation of a C configuration's `cache_kind`, `ways` and `replacement`.
pub(crate) fn cache_kind(kind: u32, ways: u32, replacement: u32) -> Status<CacheKind> {
    Ok(match from_c(kind)? {
        xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED => CacheKind::DirectMapped,
        xbzrle_cache_kind::XBZRLE_CACHE_SET_ASSOCIATIVE => CacheKind::SetAssociative {
            ways: usize::try_from(ways).map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)?,
            replacement: match from_c(replacement)? {
                xbzrle_replacement::XBZRLE_REPLACEMENT_LRU => Replacement::Lru,
                xbzrle_replacement::XBZRLE_REPLACEMENT_LIFETIME => Replacement::Lifetime,
                xbzrle_replacement::XBZRLE_REPLACEMENT_FREQUENCY => Replacement::Frequency,
            },
        },
    })
}

/// The admission policy of a C configuration's `admission`, `admission_min_passes` and
/// `admission_counters`.
pub(crate) fn admission(admission: u32, min_passes: u32, counters: usize) -> Status<Admission> {
    Ok(match from_c(admission)? {
        xbzrle_admission::XBZRLE_ADMIT_ALWAYS => Admission::Always,
        xbzrle_admission::XBZRLE_ADMIT_AFTER_BULK => Admission::AfterBulk,
        xbzrle_admission::XBZRLE_ADMIT_FREQUENCY => Admission::Frequency {
            min_passes: u8::try_from(min_passes).map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)?,
            counters,
        },
    })
}

/// A variant the policy crate gained that this C API does not map yet. The two crates are
/// built together, so this never runs; should it, the panic boundary turns it into
/// `XBZRLE_ERR_PANIC`.
pub(crate) fn unknown_variant<T: core::fmt::Debug, U>(variant: T) -> U {
    unreachable!("{variant:?} has no C value")
}

impl From<Stage> for xbzrle_stage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Bulk => xbzrle_stage::XBZRLE_STAGE_BULK,
            Stage::Iterative => xbzrle_stage::XBZRLE_STAGE_ITERATIVE,
            Stage::Last => xbzrle_stage::XBZRLE_STAGE_LAST,
            other => unknown_variant(other),
        }
    }
}
