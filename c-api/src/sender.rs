//! The sender in C: configuration, lifecycle, per-page decisions and statistics.

use std::ffi::c_int;
use std::ops::ControlFlow;
use std::slice;

use xbzrle::LivePage;
use xbzrle_policy::wire::ZERO_RECORD_LEN;
use xbzrle_policy::{
    Action, Admission, CacheKind, ConfigError, RawReason, Replacement, SaveError, Sender,
    SenderConfig, Sent, Stage,
};

use super::guard::guard;
use super::status::xbzrle_status::{self, *};

/// Bytes of a zero-page record (flag, page number, fill byte), whatever the page size: the
/// output capacity `xbzrle_sender_save_zero_page` needs.
pub const XBZRLE_ZERO_RECORD_LEN: usize = 10;

/// Cache organisation (values of `xbzrle_sender_config.cache_kind`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_cache_kind {
    /// QEMU's direct-mapped cache: slot = page number mod slot count.
    XBZRLE_CACHE_DIRECT_MAPPED = 0,
    /// Set-associative cache with `ways` entries per set and the `replacement` victim rule.
    XBZRLE_CACHE_SET_ASSOCIATIVE = 1,
}

/// Victim choice of a set-associative cache (values of `xbzrle_sender_config.replacement`).
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

/// Sender configuration. Fill it with `xbzrle_sender_config_default`, then change fields.
/// Enumerated fields are `uint32_t` holding the values of the named enums.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_sender_config {
    /// Page size in bytes (1 ..= UINT32_MAX, and at most PTRDIFF_MAX; default 4096).
    pub page_size: usize,
    /// Page-data budget of the cache in bytes: one page ..= PTRDIFF_MAX (default 64 MiB).
    /// Page data is allocated at the first insertion; a budget the allocator cannot
    /// provide gives `XBZRLE_ERR_NO_MEMORY` from `xbzrle_sender_new`.
    pub cache_bytes: u64,
    /// An `xbzrle_cache_kind` (default `XBZRLE_CACHE_DIRECT_MAPPED`).
    pub cache_kind: u32,
    /// Entries per set for `XBZRLE_CACHE_SET_ASSOCIATIVE` (at least 1; ignored otherwise).
    pub ways: u32,
    /// An `xbzrle_replacement` for `XBZRLE_CACHE_SET_ASSOCIATIVE` (ignored otherwise).
    pub replacement: u32,
    /// An `xbzrle_admission` (default `XBZRLE_ADMIT_AFTER_BULK`).
    pub admission: u32,
    /// For `XBZRLE_ADMIT_FREQUENCY`: passes a page must be seen dirty in (1 ..= 255).
    pub admission_min_passes: u32,
    /// For `XBZRLE_ADMIT_FREQUENCY`: counter bytes for the whole sender (1 ..= PTRDIFF_MAX;
    /// allocated by `xbzrle_sender_new`).
    pub admission_counters: usize,
    /// Independently locked cache shards, a power of two, 1 ..= 65536 (default 1). Page `p`
    /// lives in shard `p mod shards`; use more than 1 to call `xbzrle_sender_save_page` from
    /// several threads with little contention.
    pub shards: usize,
}

/// What `xbzrle_sender_save_page` or `xbzrle_sender_save_zero_page` did.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_sent {
    /// The decision.
    pub action: xbzrle_action,
    /// Why the page went raw (`XBZRLE_RAW_NONE` unless `action` is `XBZRLE_ACTION_RAW`).
    pub raw_reason: xbzrle_raw_reason,
    /// Bytes of the record written at the start of the output (0 when skipped).
    pub record_len: usize,
}

/// Sender statistics. The first seven fields are QEMU's `query-migrate` → `xbzrle-cache`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_sender_stats {
    /// `cache-size`: the configured cache budget in bytes.
    pub cache_size: u64,
    /// `bytes`: XBZRLE payload bytes sent; an overflowed page counts as a full page.
    pub bytes: u64,
    /// `pages`: cache hits (pages encoded with XBZRLE, whatever the result).
    pub pages: u64,
    /// `cache-miss`: pages looked up after the bulk stage and not found.
    pub cache_miss: u64,
    /// `cache-miss-rate`: misses / pages processed over the last completed period.
    pub cache_miss_rate: f64,
    /// `encoding-rate`: hits × page size / `bytes` over the last completed period.
    pub encoding_rate: f64,
    /// `overflow`: hits whose delta did not fit, sent raw.
    pub overflow: u64,
    /// Current stage (`XBZRLE_STAGE_ITERATIVE` once `xbzrle_sender_end_bulk_stage` has
    /// been called, unless in the last stage).
    pub stage: xbzrle_stage,
    /// Current generation (number of dirty syncs).
    pub generation: u64,
    /// Pages given to `xbzrle_sender_save_page` or `xbzrle_sender_save_zero_page`
    /// successfully.
    pub pages_processed: u64,
    /// Pages sent as zero-page records (by either save call).
    pub zero_pages: u64,
    /// Pages sent raw (bulk stage, misses, overflows).
    pub raw_pages: u64,
    /// Pages sent as XBZRLE records.
    pub xbzrle_pages: u64,
    /// Cached, unchanged pages: nothing sent.
    pub skipped_pages: u64,
    /// Bytes of every record written, headers included.
    pub wire_bytes: u64,
    /// Pages cached now.
    pub cache_pages: usize,
    /// Pages the cache can hold.
    pub cache_capacity: usize,
    /// Bytes of page data the cache has allocated (never above `cache_size`).
    pub cache_allocated_bytes: usize,
}

/// An opaque sender: QEMU's per-page decisions around a page cache and the codec.
/// Create with `xbzrle_sender_new`, destroy with `xbzrle_sender_free`.
#[allow(non_camel_case_types)]
pub struct xbzrle_sender(Sender);

impl From<ConfigError> for xbzrle_status {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::OutOfMemory { .. } => XBZRLE_ERR_NO_MEMORY,
            _ => XBZRLE_ERR_INVALID_ARGUMENT,
        }
    }
}

impl From<SaveError> for xbzrle_status {
    fn from(e: SaveError) -> Self {
        match e {
            SaveError::WrongPageSize { .. } => XBZRLE_ERR_INVALID_ARGUMENT,
            SaveError::OutputTooSmall { .. } => XBZRLE_ERR_OVERFLOW,
            SaveError::Poisoned => XBZRLE_ERR_POISONED,
            _ => XBZRLE_ERR_PANIC,
        }
    }
}

impl From<Sent> for xbzrle_sent {
    fn from(result: Sent) -> Self {
        let (action, raw_reason) = match result.action {
            Action::Zero => (
                xbzrle_action::XBZRLE_ACTION_ZERO,
                xbzrle_raw_reason::XBZRLE_RAW_NONE,
            ),
            Action::Xbzrle => (
                xbzrle_action::XBZRLE_ACTION_XBZRLE,
                xbzrle_raw_reason::XBZRLE_RAW_NONE,
            ),
            Action::Skipped => (
                xbzrle_action::XBZRLE_ACTION_SKIPPED,
                xbzrle_raw_reason::XBZRLE_RAW_NONE,
            ),
            Action::Raw(reason) => (
                xbzrle_action::XBZRLE_ACTION_RAW,
                match reason {
                    RawReason::Bulk => xbzrle_raw_reason::XBZRLE_RAW_BULK,
                    RawReason::Miss => xbzrle_raw_reason::XBZRLE_RAW_MISS,
                    RawReason::Overflow => xbzrle_raw_reason::XBZRLE_RAW_OVERFLOW,
                    other => unknown_variant(other),
                },
            ),
            other => unknown_variant(other),
        };
        Self {
            action,
            raw_reason,
            record_len: result.record_len,
        }
    }
}

/// A variant the policy crate gained that this C API does not map yet. The two crates are
/// built together, so this never runs; should it, the panic boundary turns it into
/// `XBZRLE_ERR_PANIC`.
fn unknown_variant<T: core::fmt::Debug, U>(variant: T) -> U {
    unreachable!("{variant:?} has no C value")
}

/// Reports the result of a save call: on success writes `*sent` and returns `XBZRLE_OK`,
/// else returns the error's status and leaves `*sent` alone.
///
/// # Safety
/// `sent` must be valid for a write of one `xbzrle_sent`.
unsafe fn report_sent(result: Result<Sent, SaveError>, sent: *mut xbzrle_sent) -> xbzrle_status {
    match result {
        Ok(result) => {
            // SAFETY: the caller guarantees `sent` is writable.
            unsafe { sent.write(result.into()) };
            XBZRLE_OK
        }
        Err(e) => e.into(),
    }
}

/// Turns a C configuration into the policy crate's, rejecting unknown enum values.
fn to_config(c: &xbzrle_sender_config) -> Result<SenderConfig, xbzrle_status> {
    let is = |value: u32, variant: c_int| i64::from(value) == i64::from(variant);
    let replacement = [
        (xbzrle_replacement::XBZRLE_REPLACEMENT_LRU, Replacement::Lru),
        (
            xbzrle_replacement::XBZRLE_REPLACEMENT_LIFETIME,
            Replacement::Lifetime,
        ),
        (
            xbzrle_replacement::XBZRLE_REPLACEMENT_FREQUENCY,
            Replacement::Frequency,
        ),
    ]
    .into_iter()
    .find(|(v, _)| is(c.replacement, *v as c_int))
    .map(|(_, r)| r);
    let cache = if is(
        c.cache_kind,
        xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED as c_int,
    ) {
        CacheKind::DirectMapped
    } else if is(
        c.cache_kind,
        xbzrle_cache_kind::XBZRLE_CACHE_SET_ASSOCIATIVE as c_int,
    ) {
        CacheKind::SetAssociative {
            ways: usize::try_from(c.ways).map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)?,
            replacement: replacement.ok_or(XBZRLE_ERR_INVALID_ARGUMENT)?,
        }
    } else {
        return Err(XBZRLE_ERR_INVALID_ARGUMENT);
    };
    let admission = if is(c.admission, xbzrle_admission::XBZRLE_ADMIT_ALWAYS as c_int) {
        Admission::Always
    } else if is(
        c.admission,
        xbzrle_admission::XBZRLE_ADMIT_AFTER_BULK as c_int,
    ) {
        Admission::AfterBulk
    } else if is(
        c.admission,
        xbzrle_admission::XBZRLE_ADMIT_FREQUENCY as c_int,
    ) {
        Admission::Frequency {
            min_passes: u8::try_from(c.admission_min_passes)
                .map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)?,
            counters: c.admission_counters,
        }
    } else {
        return Err(XBZRLE_ERR_INVALID_ARGUMENT);
    };
    Ok(SenderConfig::default()
        .with_page_size(c.page_size)
        .with_cache_bytes(c.cache_bytes)
        .with_cache(cache)
        .with_admission(admission)
        .with_shards(c.shards))
}

/// Fills `*config` with the defaults (QEMU's setup): 4096-byte pages, a 64 MiB
/// direct-mapped cache, admission after the bulk stage, one shard. Set-associative and
/// frequency fields get usable values (16 ways, FREQUENCY replacement, 2 passes, 1 MiB of
/// counters) so that changing only `cache_kind` or `admission` works.
///
/// Errors: `XBZRLE_ERR_NULL`. Thread-safe.
///
/// # Safety
/// `config` must be NULL or valid for a write of one `xbzrle_sender_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_config_default(
    config: *mut xbzrle_sender_config,
) -> xbzrle_status {
    guard(XBZRLE_ERR_PANIC, || {
        if config.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let d = SenderConfig::default();
        let value = xbzrle_sender_config {
            page_size: d.page_size,
            cache_bytes: d.cache_bytes,
            cache_kind: xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED as u32,
            ways: 16,
            replacement: xbzrle_replacement::XBZRLE_REPLACEMENT_FREQUENCY as u32,
            admission: xbzrle_admission::XBZRLE_ADMIT_AFTER_BULK as u32,
            admission_min_passes: 2,
            admission_counters: 1 << 20,
            shards: d.shards,
        };
        // SAFETY: `config` is non-null and the caller guarantees it is writable.
        unsafe { config.write(value) };
        XBZRLE_OK
    })
}

/// Creates a sender in the bulk stage (generation 0) with an empty cache. The cache
/// metadata (24 to 40 bytes per cached page) and the admission counters are allocated now;
/// the page data is one zeroed allocation made at the first insertion (the operating system
/// commits only the pages written), whose size is checked now: the allocator must be able
/// to provide it at this moment. If it refuses it at the first insertion after all, that
/// page is not cached and is sent raw, and a later insertion tries again. On `XBZRLE_OK`,
/// `*out` is a new handle the caller owns and must release with `xbzrle_sender_free`; on
/// error `*out` is NULL.
///
/// No configuration value crashes the process: sizes that cannot be represented give an
/// error, and memory that cannot be allocated gives `XBZRLE_ERR_NO_MEMORY`.
///
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (a field out of range, e.g.
/// `cache_bytes` above PTRDIFF_MAX, or an unknown enum value), `XBZRLE_ERR_NO_MEMORY` (valid
/// sizes whose memory cannot be allocated, e.g. `cache_bytes` = 2^60). Thread-safe.
///
/// # Safety
/// `config` must be NULL or point to a readable `xbzrle_sender_config`; `out` NULL or valid
/// for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_new(
    config: *const xbzrle_sender_config,
    out: *mut *mut xbzrle_sender,
) -> xbzrle_status {
    guard(XBZRLE_ERR_PANIC, || {
        if out.is_null() {
            return XBZRLE_ERR_NULL;
        }
        // SAFETY: `out` is non-null and the caller guarantees it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller guarantees `config` is NULL or points to a readable config.
        let Some(config) = (unsafe { config.as_ref() }) else {
            return XBZRLE_ERR_NULL;
        };
        let sender = match to_config(config).and_then(|c| Sender::new(c).map_err(Into::into)) {
            Ok(sender) => sender,
            Err(e) => return e,
        };
        let handle = Box::into_raw(Box::new(xbzrle_sender(sender)));
        // SAFETY: as above.
        unsafe { out.write(handle) };
        XBZRLE_OK
    })
}

/// Destroys a sender and its cache. NULL does nothing. Not thread-safe with respect to the
/// handle: no other call may use it during or after this one.
///
/// # Safety
/// `sender` must be NULL or a handle from `xbzrle_sender_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_free(sender: *mut xbzrle_sender) {
    guard((), || {
        if !sender.is_null() {
            // SAFETY: the caller guarantees `sender` came from `Box::into_raw` in
            // `xbzrle_sender_new` and is freed once, with no other use outstanding.
            drop(unsafe { Box::from_raw(sender) });
        }
    })
}

/// Runs `body` on the sender behind `sender`, or returns `XBZRLE_ERR_NULL`.
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
unsafe fn with_sender(
    sender: *const xbzrle_sender,
    body: impl FnOnce(&Sender) -> xbzrle_status,
) -> xbzrle_status {
    guard(XBZRLE_ERR_PANIC, || {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        match unsafe { sender.as_ref() } {
            Some(s) => body(&s.0),
            None => XBZRLE_ERR_NULL,
        }
    })
}

/// Dirty sync at the start of a pass over guest RAM: the generation goes up by one and the
/// rates of the period just ended are computed. Call it before every pass, the first one
/// included; the second call ends the bulk stage (QEMU's "bulk stage" is the first
/// complete pass) unless `xbzrle_sender_end_bulk_stage` already has. In the last stage it
/// only counts a generation.
///
/// Errors: `XBZRLE_ERR_NULL`. Thread-safe (call it between passes).
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_start_pass(sender: *const xbzrle_sender) -> xbzrle_status {
    let body = |s: &Sender| {
        s.start_pass();
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Ends the bulk stage now (QEMU's `xbzrle_started = true`, set when its first complete
/// pass over RAM finishes, e.g. when a pass wraps around the RAM blocks part-way): the next
/// page saved is looked up in the cache (a miss is counted and, if admitted, inserted)
/// instead of going raw as a bulk page. Without this call the bulk stage ends at the second
/// `xbzrle_sender_start_pass`, which ends it in any case: this call can only end it earlier.
///
/// Not a dirty sync: the generation is unchanged (the next `xbzrle_sender_start_pass`
/// counts one as always) and no statistics period ends, so the period in progress covers
/// its bulk pages and its looked-up pages together (`cache_miss_rate` divides its misses by
/// all of its pages, as QEMU's does when `xbzrle_started` flips between two rate updates).
/// Called before the first `xbzrle_sender_start_pass`, the sender has no bulk stage.
/// Idempotent; no effect once the bulk stage is over or in the last stage. The stage can be
/// read back in `xbzrle_sender_stats.stage` (`xbzrle_sender_get_stats`).
///
/// Errors: `XBZRLE_ERR_NULL`. Like the other stage calls it touches no cache shard, so it
/// succeeds on a sender with a poisoned shard (that shard's pages keep reporting
/// `XBZRLE_ERR_POISONED` from the save calls).
///
/// Ownership: borrows the handle for the call. Thread-safe: it may be called while other
/// threads save pages, including in the middle of a pass; a save running at the same time
/// is decided wholly in one stage or the other.
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_end_bulk_stage(
    sender: *const xbzrle_sender,
) -> xbzrle_status {
    let body = |s: &Sender| {
        s.end_bulk_stage();
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Dirty sync that enters the last stage (guest stopped, final pass): from now on the
/// cache is never written. Final: later `xbzrle_sender_start_pass` calls stay in it.
///
/// Errors: `XBZRLE_ERR_NULL`. Thread-safe (call it between passes).
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_start_last_stage(
    sender: *const xbzrle_sender,
) -> xbzrle_status {
    let body = |s: &Sender| {
        s.start_last_stage();
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Changes the cache budget to `cache_bytes` (one page ..= PTRDIFF_MAX), keeping the cached
/// pages that still fit (QEMU's `xbzrle-cache-size` change). The page data never exceeds
/// the budget once the call returns. Waits for `xbzrle_sender_save_page` calls in progress.
///
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (below one page or above
/// PTRDIFF_MAX), `XBZRLE_ERR_NO_MEMORY` (the memory for the new size cannot be allocated).
/// On error the budget is unchanged and so are the cached pages (with several shards, a
/// shard resized before the failure is resized back and may have dropped pages that did
/// not fit the other size). Thread-safe (call it between passes).
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_resize_cache(
    sender: *const xbzrle_sender,
    cache_bytes: u64,
) -> xbzrle_status {
    let body = |s: &Sender| match s.resize_cache(cache_bytes) {
        Ok(()) => XBZRLE_OK,
        Err(e) => e.into(),
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// The output capacity `xbzrle_sender_save_page` needs: the longest record for this page
/// size (header + one page). Returns 0 for NULL. Thread-safe.
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_max_record_len(sender: *const xbzrle_sender) -> usize {
    guard(0, || {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        unsafe { sender.as_ref() }.map_or(0, |s| s.0.max_record_len())
    })
}

/// Decides how to send page number `page` (address / page size) whose current content is
/// `data` (`data_len` = the page size), writes the wire record at the start of `out`
/// (`out_cap` >= `xbzrle_sender_max_record_len`) and updates the cache and statistics:
/// all-zero page → zero record, exactly as `xbzrle_sender_save_zero_page` (which a caller
/// that detects zero pages itself calls instead; see it for the cache effect); bulk stage →
/// raw; not cached → miss, inserted if admitted (not in the last stage), raw; cached →
/// encoded against the cached copy, which becomes `data`: unchanged → skipped, overflow →
/// raw, else an XBZRLE record. `*sent` says which, and the record length.
///
/// Record layout: a flag byte (`0x02` zero page, `0x08` raw page, `0x40` XBZRLE, QEMU's
/// `RAM_SAVE_FLAG_*` values), the page number as a big-endian `uint64_t`, then the body:
/// one fill byte (0) / the page / QEMU's XBZRLE payload (`0x01`, the delta length as a
/// big-endian `uint16_t`, the delta).
///
/// Errors (nothing sent, no state changed): `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`
/// (`data_len` is not the page size), `XBZRLE_ERR_OVERFLOW` (`out_cap` too small),
/// `XBZRLE_ERR_POISONED`.
///
/// Guest memory that vCPUs write: `data` may point straight into guest RAM while vCPUs
/// (or other threads) keep writing the page during the call; no private copy is needed.
/// Each byte of `data` is read exactly once, and the record written and the cache entry
/// left behind both come from that one read (a miss or bulk page is read into the raw
/// record and cached from there; a hit refreshes the cached copy as it compares and takes
/// the delta from the refreshed copy; an overflow sends the refreshed copy). So the
/// destination always holds what the cache holds: each byte is one value the guest page
/// had during the call, and once the guest is stopped and the page is saved again (it is
/// dirty again), the destination equals the source.
///
/// Thread-safe: several threads may save pages at once, provided one page is never given to
/// two calls at the same time and the receiver applies a page's records in the order these
/// calls returned.
///
/// # Safety
/// `sender` must be NULL or a live handle; `data` valid for reads of `data_len` bytes (other
/// threads may write them during the call); `out` valid for writes of `out_cap` bytes, not
/// overlapping `data`; `sent` NULL or valid for a write of one `xbzrle_sent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_save_page(
    sender: *const xbzrle_sender,
    page: u64,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    sent: *mut xbzrle_sent,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if data.is_null() || out.is_null() || sent.is_null() {
            return XBZRLE_ERR_NULL;
        }
        if isize::try_from(data_len).is_err() || isize::try_from(out_cap).is_err() {
            return XBZRLE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller guarantees `data` is readable for `data_len` bytes, which other
        // threads may write (read only through the live page); non-null.
        let data = unsafe { LivePage::from_raw_parts(data, data_len) };
        // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes and does
        // not overlap `data`; it is non-null.
        let out = unsafe { slice::from_raw_parts_mut(out, out_cap) };
        // SAFETY: `sent` is non-null and the caller guarantees it is writable.
        unsafe { report_sent(s.save_page(page, &data, out), sent) }
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Receives the record of one page saved by `xbzrle_sender_save_pages`: the page number,
/// what was decided and the record (`sent->record_len` bytes; none when skipped), valid until
/// the callback returns. Return 0 to go on with the next page, anything else to stop.
#[allow(non_camel_case_types)]
pub type xbzrle_record_fn = Option<
    unsafe extern "C" fn(
        opaque: *mut std::ffi::c_void,
        page: u64,
        sent: *const xbzrle_sent,
        record: *const u8,
    ) -> c_int,
>;

/// Saves `count` pages in the order given (a pass's dirty pages, in the order of the dirty
/// bitmap): page number `pages[i]` with content `data[i]` (`data_len` = the page size each;
/// guest memory that vCPUs may write, as for `xbzrle_sender_save_page`). Exactly what
/// `xbzrle_sender_save_page` does page after page, writing each record into `out`
/// (`out_cap` >= `xbzrle_sender_max_record_len`) and calling `emit(opaque, page, &sent,
/// out)` before the next page, but while it encodes a page it has the CPU load the next page
/// and its cached copy, so that at guest-RAM scale memory latency overlaps the work.
/// `*saved` (optional) is the number of pages saved, also on error: on an error the pages
/// before the failing one were saved and emitted, that one and those after it were not;
/// when `emit` returns nonzero the batch stops after that page, with `XBZRLE_OK`.
///
/// Errors: `XBZRLE_ERR_NULL` (`sender`, `out` or `emit` NULL, or `pages`/`data` NULL with
/// `count` > 0, or a NULL `data[i]`), and those of `xbzrle_sender_save_page`. Thread-safe
/// under the contract of `xbzrle_sender_save_page`.
///
/// # Safety
/// `sender` must be NULL or a live handle; `pages` and `data` NULL or valid for reads of
/// `count` elements; each `data[i]` NULL or valid for reads of `data_len` bytes (other threads
/// may write them); `out` valid for writes of `out_cap` bytes, overlapping no page; `emit` a
/// function that may be called with `opaque`; `saved` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_save_pages(
    sender: *const xbzrle_sender,
    pages: *const u64,
    data: *const *const u8,
    count: usize,
    data_len: usize,
    out: *mut u8,
    out_cap: usize,
    emit: xbzrle_record_fn,
    opaque: *mut std::ffi::c_void,
    saved: *mut usize,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if !saved.is_null() {
            // SAFETY: `saved` is non-null and the caller guarantees it is writable.
            unsafe { saved.write(0) };
        }
        let Some(emit) = emit else {
            return XBZRLE_ERR_NULL;
        };
        if out.is_null() || (count > 0 && (pages.is_null() || data.is_null())) {
            return XBZRLE_ERR_NULL;
        }
        if isize::try_from(data_len).is_err() || isize::try_from(out_cap).is_err() {
            return XBZRLE_ERR_INVALID_ARGUMENT;
        }
        let (pages, data) = if count == 0 {
            (&[][..], &[][..])
        } else {
            // SAFETY: the caller guarantees `pages` is readable for `count` elements; it is
            // non-null (checked above).
            let pages = unsafe { slice::from_raw_parts(pages, count) };
            // SAFETY: the same for `data`.
            (pages, unsafe { slice::from_raw_parts(data, count) })
        };
        if data.iter().any(|d| d.is_null()) {
            return XBZRLE_ERR_NULL;
        }
        // SAFETY: the caller guarantees each `data[i]` is readable for `data_len` bytes,
        // which other threads may write (read only through the live page); all are non-null.
        let live = |d: *const u8| unsafe { LivePage::from_raw_parts(d, data_len) };
        // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes and overlaps no
        // page; it is non-null.
        let out = unsafe { slice::from_raw_parts_mut(out, out_cap) };
        let batch = pages.iter().copied().zip(data.iter().map(|&d| live(d)));
        let mut emitted = 0;
        let result = s.save_pages(batch, out, |page, sent, record| {
            emitted += 1;
            let sent = xbzrle_sent::from(sent);
            // SAFETY: the caller guarantees `emit` may be called with `opaque`; `sent` and
            // `record` are valid for the call.
            let stop = unsafe { emit(opaque, page, &sent, record.as_ptr()) };
            if stop == 0 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        if !saved.is_null() {
            // SAFETY: as above.
            unsafe { saved.write(emitted) };
        }
        match result {
            Ok(_) => XBZRLE_OK,
            Err(e) => e.into(),
        }
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Saves page number `page` (address / page size), which the caller has found to be all
/// zeros (QEMU's `buffer_is_zero` before `save_zero_page` and `xbzrle_cache_zero_page`),
/// without passing or scanning its bytes: exactly what `xbzrle_sender_save_page` does with
/// an all-zero page, through the same code. Writes the zero-page record (flag `0x02`, the
/// page number as a big-endian `uint64_t`, fill byte 0: `XBZRLE_ZERO_RECORD_LEN` bytes) at
/// the start of `out`; `*sent` is `XBZRLE_ACTION_ZERO`, `XBZRLE_RAW_NONE` and the record
/// length. The cache and statistics change as for a zero page given to
/// `xbzrle_sender_save_page`: in the bulk stage a cached copy (only `XBZRLE_ADMIT_ALWAYS`
/// makes one) becomes zeros and nothing is inserted; after it the cached copy becomes zeros,
/// or a missing one is inserted as zeros if admitted, so that a later small write goes as
/// XBZRLE (no hit or miss is counted); in the last stage a cached copy is dropped.
///
/// Errors (nothing sent, no state changed): `XBZRLE_ERR_NULL` (`sender`, `out` or `sent`),
/// `XBZRLE_ERR_INVALID_ARGUMENT` (`out_cap` above PTRDIFF_MAX), `XBZRLE_ERR_OVERFLOW`
/// (`out_cap` below `XBZRLE_ZERO_RECORD_LEN`; `xbzrle_sender_max_record_len` always
/// suffices), `XBZRLE_ERR_POISONED`.
///
/// Ownership: borrows the handle and `out` for the call; nothing is written past the
/// record. Thread-safe under the contract of `xbzrle_sender_save_page`: several threads may
/// save pages at once, provided one page is never given to two save calls at the same time
/// and the receiver applies a page's records in the order these calls returned.
///
/// # Safety
/// `sender` must be NULL or a live handle; `out` NULL or valid for writes of `out_cap`
/// bytes; `sent` NULL or valid for a write of one `xbzrle_sent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_save_zero_page(
    sender: *const xbzrle_sender,
    page: u64,
    out: *mut u8,
    out_cap: usize,
    sent: *mut xbzrle_sent,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if out.is_null() || sent.is_null() {
            return XBZRLE_ERR_NULL;
        }
        if isize::try_from(out_cap).is_err() {
            return XBZRLE_ERR_INVALID_ARGUMENT;
        }
        const { assert!(XBZRLE_ZERO_RECORD_LEN == ZERO_RECORD_LEN) };
        // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes; non-null.
        let out = unsafe { slice::from_raw_parts_mut(out, out_cap) };
        // SAFETY: `sent` is non-null and the caller guarantees it is writable.
        unsafe { report_sent(s.save_zero_page(page, out), sent) }
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Copies the sender's cached copy of page number `page` into `out` (`out_len` = the page
/// size), for inspection and tests: e.g. checking that the cache matches what the receiver
/// holds. `*cached` is 1 and `*age` (optional) the generation of its last use when the page
/// is cached; else `*cached` is 0 and `out` is untouched. Not a use of the entry (its age
/// and hit count do not change).
///
/// Errors: `XBZRLE_ERR_NULL` (`sender`, `out` or `cached`), `XBZRLE_ERR_INVALID_ARGUMENT`
/// (`out_len` is not the page size). Thread-safe; a page saved at the same time is copied
/// before or after that save.
///
/// # Safety
/// `sender` must be NULL or a live handle; `out` NULL or valid for writes of `out_len`
/// bytes; `cached` NULL or valid for a write; `age` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_cached_page(
    sender: *const xbzrle_sender,
    page: u64,
    out: *mut u8,
    out_len: usize,
    cached: *mut c_int,
    age: *mut u64,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if out.is_null() || cached.is_null() {
            return XBZRLE_ERR_NULL;
        }
        if out_len != s.page_size() {
            return XBZRLE_ERR_INVALID_ARGUMENT;
        }
        // SAFETY: the caller guarantees `out` is writable for `out_len` bytes; non-null, and
        // `out_len` is the page size, at most `isize::MAX`.
        let out = unsafe { slice::from_raw_parts_mut(out, out_len) };
        let found = s.copy_cached_page(page, out);
        // SAFETY: `cached` is non-null and the caller guarantees it is writable.
        unsafe { cached.write(c_int::from(found.is_some())) };
        if let (Some(generation), false) = (found, age.is_null()) {
            // SAFETY: `age` is non-null and the caller guarantees it is writable.
            unsafe { age.write(generation) };
        }
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Fills `*stats` with the sender's statistics now. Errors: `XBZRLE_ERR_NULL`.
/// Thread-safe.
///
/// # Safety
/// `sender` must be NULL or a live handle; `stats` NULL or valid for a write of one
/// `xbzrle_sender_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_get_stats(
    sender: *const xbzrle_sender,
    stats: *mut xbzrle_sender_stats,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if stats.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let st = s.stats();
        let q = st.xbzrle_cache;
        let value = xbzrle_sender_stats {
            cache_size: q.cache_size,
            bytes: q.bytes,
            pages: q.pages,
            cache_miss: q.cache_miss,
            cache_miss_rate: q.cache_miss_rate,
            encoding_rate: q.encoding_rate,
            overflow: q.overflow,
            stage: match st.stage {
                Stage::Bulk => xbzrle_stage::XBZRLE_STAGE_BULK,
                Stage::Iterative => xbzrle_stage::XBZRLE_STAGE_ITERATIVE,
                Stage::Last => xbzrle_stage::XBZRLE_STAGE_LAST,
                other => unknown_variant(other),
            },
            generation: st.generation,
            pages_processed: st.pages_processed,
            zero_pages: st.zero_pages,
            raw_pages: st.raw_pages,
            xbzrle_pages: st.xbzrle_pages,
            skipped_pages: st.skipped_pages,
            wire_bytes: st.wire_bytes,
            cache_pages: st.cache_pages,
            cache_capacity: st.cache_capacity,
            cache_allocated_bytes: st.cache_allocated_bytes,
        };
        // SAFETY: `stats` is non-null and the caller guarantees it is writable.
        unsafe { stats.write(value) };
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}

/// Estimated wire bytes to send `dirty_pages` pages now (for a convergence decision: the
/// average record bytes per page of the last completed period). Errors: `XBZRLE_ERR_NULL`.
/// Thread-safe.
///
/// # Safety
/// `sender` must be NULL or a live handle; `bytes` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_estimate_bytes(
    sender: *const xbzrle_sender,
    dirty_pages: u64,
    bytes: *mut u64,
) -> xbzrle_status {
    let body = |s: &Sender| {
        if bytes.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let estimate = s.estimate_bytes(dirty_pages);
        // SAFETY: `bytes` is non-null and the caller guarantees it is writable.
        unsafe { bytes.write(estimate) };
        XBZRLE_OK
    };
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    unsafe { with_sender(sender, body) }
}
