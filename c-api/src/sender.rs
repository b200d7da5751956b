//! The sender in C: configuration, lifecycle, per-page decisions and statistics.

use std::ffi::{c_int, c_void};
use std::ops::ControlFlow;

use xbzrle_policy::wire::ZERO_RECORD_LEN;
use xbzrle_policy::{Action, RawReason, SaveError, Sender, SenderConfig, SenderStats, Sent};

use crate::ffi::{self, Status, Versioned, VersionedInput};
use crate::kinds::{
    DEFAULT_REPLACEMENT, DEFAULT_WAYS, admission, cache_kind, unknown_variant, xbzrle_action,
    xbzrle_admission, xbzrle_cache_kind, xbzrle_raw_reason, xbzrle_stage,
};
use crate::status::xbzrle_status::{self, *};

/// Bytes of a zero-page record (flag, page number, fill byte), whatever the page size: the
/// output capacity `xbzrle_sender_save_zero_page` needs.
pub const XBZRLE_ZERO_RECORD_LEN: usize = 10;

/// Sender configuration. Fill it with `xbzrle_sender_config_default`, then change fields.
/// Enumerated fields are `uint32_t` holding the values of the named enums.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_sender_config {
    /// `sizeof(xbzrle_sender_config)` of the header the caller was compiled with, set by
    /// `xbzrle_sender_config_default`: later versions of the library may add fields at the
    /// end, and give them their defaults for a caller built with this one.
    pub struct_size: usize,
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

/// Sender statistics. After `struct_size`, the first seven fields are QEMU's
/// `query-migrate` → `xbzrle-cache`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_sender_stats {
    /// Bytes `xbzrle_sender_get_stats` filled in: the smaller of the caller's
    /// `sizeof(xbzrle_sender_stats)` and the library's (later versions may add fields at the
    /// end).
    pub struct_size: usize,
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

// SAFETY: `#[repr(C)]` with `struct_size` first.
unsafe impl Versioned for xbzrle_sender_config {
    const FIRST_SIZE: usize = size_of::<Self>();
}

// SAFETY: every field is an integer (any byte pattern is valid).
unsafe impl VersionedInput for xbzrle_sender_config {}

// SAFETY: `#[repr(C)]` with `struct_size` first (only written, never read from C).
unsafe impl Versioned for xbzrle_sender_stats {
    const FIRST_SIZE: usize = size_of::<Self>();
}

impl xbzrle_sender_config {
    /// The defaults: QEMU's setup, and usable values for the set-associative and frequency
    /// fields (see `xbzrle_sender_config_default`).
    fn defaults() -> Self {
        let d = SenderConfig::default();
        Self {
            struct_size: size_of::<Self>(),
            page_size: d.page_size,
            cache_bytes: d.cache_bytes,
            cache_kind: xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED as u32,
            ways: DEFAULT_WAYS,
            replacement: DEFAULT_REPLACEMENT as u32,
            admission: xbzrle_admission::XBZRLE_ADMIT_AFTER_BULK as u32,
            admission_min_passes: 2,
            admission_counters: 1 << 20,
            shards: d.shards,
        }
    }

    /// The policy crate's configuration, rejecting unknown enumeration values.
    fn to_config(self) -> Status<SenderConfig> {
        Ok(SenderConfig::default()
            .with_page_size(self.page_size)
            .with_cache_bytes(self.cache_bytes)
            .with_cache(cache_kind(self.cache_kind, self.ways, self.replacement)?)
            .with_admission(admission(
                self.admission,
                self.admission_min_passes,
                self.admission_counters,
            )?)
            .with_shards(self.shards))
    }
}

impl From<SenderStats> for xbzrle_sender_stats {
    fn from(st: SenderStats) -> Self {
        let q = st.xbzrle_cache;
        Self {
            struct_size: size_of::<Self>(),
            cache_size: q.cache_size,
            bytes: q.bytes,
            pages: q.pages,
            cache_miss: q.cache_miss,
            cache_miss_rate: q.cache_miss_rate,
            encoding_rate: q.encoding_rate,
            overflow: q.overflow,
            stage: st.stage.into(),
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
        }
    }
}

impl From<Sent> for xbzrle_sent {
    fn from(sent: Sent) -> Self {
        use xbzrle_raw_reason::*;
        let (action, raw_reason) = match sent.action {
            Action::Zero => (xbzrle_action::XBZRLE_ACTION_ZERO, XBZRLE_RAW_NONE),
            Action::Xbzrle => (xbzrle_action::XBZRLE_ACTION_XBZRLE, XBZRLE_RAW_NONE),
            Action::Skipped => (xbzrle_action::XBZRLE_ACTION_SKIPPED, XBZRLE_RAW_NONE),
            Action::Raw(reason) => (
                xbzrle_action::XBZRLE_ACTION_RAW,
                match reason {
                    RawReason::Bulk => XBZRLE_RAW_BULK,
                    RawReason::Miss => XBZRLE_RAW_MISS,
                    RawReason::Overflow => XBZRLE_RAW_OVERFLOW,
                    other => unknown_variant(other),
                },
            ),
            other => unknown_variant(other),
        };
        Self {
            action,
            raw_reason,
            record_len: sent.record_len,
        }
    }
}

/// The sender behind a handle.
///
/// # Safety
/// `sender` is NULL or a live handle from `xbzrle_sender_new`.
unsafe fn sender<'a>(sender: *const xbzrle_sender) -> Status<&'a Sender> {
    // SAFETY: the caller's contract.
    Ok(&unsafe { ffi::handle(sender) }?.0)
}

/// An opaque sender: QEMU's per-page decisions around a page cache and the codec.
/// Create with `xbzrle_sender_new`, destroy with `xbzrle_sender_free`.
#[allow(non_camel_case_types)]
pub struct xbzrle_sender(Sender);

impl From<SaveError> for xbzrle_status {
    fn from(e: SaveError) -> Self {
        match e {
            SaveError::WrongPageSize { .. } => XBZRLE_ERR_INVALID_ARGUMENT,
            SaveError::OutputTooSmall { .. } => XBZRLE_ERR_OVERFLOW,
            SaveError::Poisoned => XBZRLE_ERR_POISONED,
            other => unknown_variant(other),
        }
    }
}

/// Fills `*config` with the defaults (QEMU's setup): 4096-byte pages, a 64 MiB
/// direct-mapped cache, admission after the bulk stage, one shard. Set-associative and
/// frequency fields get usable values (16 ways, FREQUENCY replacement, 2 passes, 1 MiB of
/// counters) so that changing only `cache_kind` or `admission` works; `struct_size` is this
/// header's `sizeof(xbzrle_sender_config)`.
///
/// Errors: `XBZRLE_ERR_NULL`. Thread-safe.
///
/// # Safety
/// `config` must be NULL or valid for a write of one `xbzrle_sender_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_config_default(
    config: *mut xbzrle_sender_config,
) -> xbzrle_status {
    // SAFETY: the caller guarantees `config` is NULL or writable.
    ffi::call(|| unsafe { ffi::write(config, xbzrle_sender_config::defaults()) })
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
/// `cache_bytes` above PTRDIFF_MAX, an unknown enum value, or a `struct_size` below the
/// first version's), `XBZRLE_ERR_NO_MEMORY` (valid
/// sizes whose memory cannot be allocated, e.g. `cache_bytes` = 2^60). Thread-safe.
///
/// `config->struct_size` must be set (by `xbzrle_sender_config_default`): the fields of the
/// caller's version are read, and later fields take their defaults.
///
/// # Safety
/// `config` must be NULL or point to a readable `xbzrle_sender_config` of
/// `config->struct_size` bytes; `out` NULL or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_new(
    config: *const xbzrle_sender_config,
    out: *mut *mut xbzrle_sender,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        unsafe { ffi::write(out, std::ptr::null_mut()) }?;
        // SAFETY: the caller guarantees `config` is NULL or readable for its `struct_size`.
        let config = unsafe { ffi::read_versioned(config, xbzrle_sender_config::defaults()) }?;
        let sender = Sender::new(config.to_config()?)?;
        let handle = Box::into_raw(Box::new(xbzrle_sender(sender)));
        // SAFETY: as above.
        unsafe { ffi::write(out, handle) }
    })
}

/// Destroys a sender and its cache. NULL does nothing. Not thread-safe with respect to the
/// handle: no other call may use it during or after this one.
///
/// # Safety
/// `sender` must be NULL or a handle from `xbzrle_sender_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_free(sender: *mut xbzrle_sender) {
    ffi::call(|| {
        if !sender.is_null() {
            // SAFETY: the caller guarantees `sender` came from `Box::into_raw` in
            // `xbzrle_sender_new` and is freed once, with no other use outstanding.
            drop(unsafe { Box::from_raw(sender) });
        }
        Ok(())
    });
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        unsafe { self::sender(sender) }?.start_pass();
        Ok(())
    })
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        unsafe { self::sender(sender) }?.end_bulk_stage();
        Ok(())
    })
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        unsafe { self::sender(sender) }?.start_last_stage();
        Ok(())
    })
}

/// Changes the cache budget to `cache_bytes` (one page ..= PTRDIFF_MAX), keeping the cached
/// pages that still fit (QEMU's `xbzrle-cache-size` change). The page data never exceeds
/// the budget once the call returns. Waits for `xbzrle_sender_save_page` calls in progress.
///
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (below one page or above
/// PTRDIFF_MAX), `XBZRLE_ERR_NO_MEMORY` (the memory for the new size cannot be allocated).
/// On error the budget is unchanged: with several shards, a shard resized before the
/// failure is resized back (it may have dropped pages that did not fit the other size);
/// should even that allocation fail, that shard keeps the new budget, so the page data stays
/// within the larger of the two budgets and the cache still matches the receiver.
/// Thread-safe (call it between passes).
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_resize_cache(
    sender: *const xbzrle_sender,
    cache_bytes: u64,
) -> xbzrle_status {
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    ffi::call(|| Ok(unsafe { self::sender(sender) }?.resize_cache(cache_bytes)?))
}

/// The output capacity `xbzrle_sender_save_page` needs: the longest record for this page
/// size (header + one page). Returns 0 for NULL. Thread-safe.
///
/// # Safety
/// `sender` must be NULL or a live handle from `xbzrle_sender_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_max_record_len(sender: *const xbzrle_sender) -> usize {
    // SAFETY: the caller guarantees `sender` is NULL or a live handle.
    ffi::call_or(0, || Ok(unsafe { self::sender(sender) }?.max_record_len()))
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let s = unsafe { self::sender(sender) }?;
        ffi::non_null(sent)?;
        // SAFETY: the caller guarantees `data` is NULL or readable for `data_len` bytes,
        // which other threads may write.
        let data = unsafe { ffi::borrow_live(data, data_len) }?;
        // SAFETY: the caller guarantees `out` is NULL or writable for `out_cap` bytes,
        // overlapping no page.
        let out = unsafe { ffi::borrow_mut(out, out_cap) }?;
        let result = s.save_page(page, &data, out)?;
        // SAFETY: the caller guarantees `sent` is NULL or writable.
        unsafe { ffi::write(sent, result.into()) }
    })
}

/// Receives the record of one page saved by `xbzrle_sender_save_pages`: the page number,
/// what was decided and the record (`sent->record_len` bytes; none when skipped), valid until
/// the callback returns. Return 0 to go on with the next page, anything else to stop.
#[allow(non_camel_case_types)]
pub type xbzrle_record_fn = Option<
    unsafe extern "C" fn(
        opaque: *mut c_void,
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
/// `*saved` (optional) is the number of pages saved, also on error; when `emit` returns
/// nonzero the batch stops after that page, with `XBZRLE_OK`.
///
/// Errors: the arguments are checked before any page is saved (`*saved` = 0):
/// `XBZRLE_ERR_NULL` (`sender`, `out` or `emit` NULL, or `pages`/`data` NULL with `count` >
/// 0, or a NULL `data[i]`), `XBZRLE_ERR_INVALID_ARGUMENT` (`data_len` or `out_cap` above
/// PTRDIFF_MAX). Then the errors of `xbzrle_sender_save_page` for a page: the pages before
/// it were saved and emitted, that one and those after it were not. Thread-safe under the
/// contract of `xbzrle_sender_save_page`.
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
    opaque: *mut c_void,
    saved: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `saved` is NULL or writable.
        unsafe { ffi::write_optional(saved, 0) };
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let s = unsafe { self::sender(sender) }?;
        let emit = emit.ok_or(XBZRLE_ERR_NULL)?;
        let (pages, data) = if count == 0 {
            (&[][..], &[][..])
        } else {
            // SAFETY: the caller guarantees `pages` is NULL or readable for `count` elements.
            let pages = unsafe { ffi::borrow(pages, count) }?;
            // SAFETY: the same for `data`.
            (pages, unsafe { ffi::borrow(data, count) }?)
        };
        ffi::length(data_len)?;
        data.iter().try_for_each(|&d| ffi::non_null(d))?;
        // SAFETY: the caller guarantees every `data[i]` is readable for `data_len` bytes
        // (at most `isize::MAX`), which other threads may write; all are non-null.
        let live = |d: *const u8| unsafe { xbzrle::LivePage::from_raw_parts(d, data_len) };
        // SAFETY: the caller guarantees `out` is NULL or writable for `out_cap` bytes,
        // overlapping no page.
        let out = unsafe { ffi::borrow_mut(out, out_cap) }?;
        let mut emitted = 0;
        let batch = pages.iter().copied().zip(data.iter().map(|&d| live(d)));
        let result = s.save_pages(batch, out, |page, sent, record| {
            emitted += 1;
            let sent = xbzrle_sent::from(sent);
            // SAFETY: the caller guarantees `emit` may be called with `opaque`; `sent` and
            // `record` are valid for the call.
            match unsafe { emit(opaque, page, &sent, record.as_ptr()) } {
                0 => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        });
        // SAFETY: as above.
        unsafe { ffi::write_optional(saved, emitted) };
        result.map(drop).map_err(Into::into)
    })
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
    const { assert!(XBZRLE_ZERO_RECORD_LEN == ZERO_RECORD_LEN) };
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let s = unsafe { self::sender(sender) }?;
        ffi::non_null(sent)?;
        // SAFETY: the caller guarantees `out` is NULL or writable for `out_cap` bytes.
        let out = unsafe { ffi::borrow_mut(out, out_cap) }?;
        let result = s.save_zero_page(page, out)?;
        // SAFETY: the caller guarantees `sent` is NULL or writable.
        unsafe { ffi::write(sent, result.into()) }
    })
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let s = unsafe { self::sender(sender) }?;
        ffi::non_null(cached)?;
        // SAFETY: the caller guarantees `out` is NULL or writable for `out_len` bytes.
        let out = unsafe { ffi::borrow_mut(out, out_len) }?;
        if out.len() != s.page_size() {
            return Err(XBZRLE_ERR_INVALID_ARGUMENT);
        }
        let found = s.copy_cached_page(page, out);
        if let Some(generation) = found {
            // SAFETY: the caller guarantees `age` is NULL or writable.
            unsafe { ffi::write_optional(age, generation) };
        }
        // SAFETY: the caller guarantees `cached` is NULL or writable.
        unsafe { ffi::write(cached, c_int::from(found.is_some())) }
    })
}

/// Fills `*stats` (`stats_size` = `sizeof(xbzrle_sender_stats)` of the caller's header)
/// with the sender's statistics now: as many fields as both the caller's and the library's
/// versions of the struct have, and `stats->struct_size` = the bytes filled in. Errors:
/// `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`stats_size` below the first version's
/// size). Thread-safe.
///
/// # Safety
/// `sender` must be NULL or a live handle; `stats` NULL or valid for writes of `stats_size`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_sender_get_stats(
    sender: *const xbzrle_sender,
    stats: *mut xbzrle_sender_stats,
    stats_size: usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let stats_now = unsafe { self::sender(sender) }?.stats();
        // SAFETY: the caller guarantees `stats` is NULL or writable for `stats_size` bytes.
        unsafe { ffi::write_versioned(stats, stats_size, stats_now.into()) }
    })
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
    ffi::call(|| {
        // SAFETY: the caller guarantees `sender` is NULL or a live handle.
        let estimate = unsafe { self::sender(sender) }?.estimate_bytes(dirty_pages);
        // SAFETY: the caller guarantees `bytes` is NULL or writable.
        unsafe { ffi::write(bytes, estimate) }
    })
}
