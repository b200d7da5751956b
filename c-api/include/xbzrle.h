/*
 * xbzrle.h: C API of the xbzrle toolkit (QEMU-compatible XBZRLE delta codec, page cache
 * and migration policy). SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * GENERATED from c-api/src by cbindgen: do not edit. Regenerate with
 *   XBZRLE_BLESS=1 cargo test -p xbzrle-capi --test header committed_header
 *
 * Conventions:
 * - Native functions return xbzrle_status: XBZRLE_OK (0) or a negative error code;
 *   xbzrle_strerror() describes a code. QEMU's drop-in functions return -1 on error.
 * - NULL for a required pointer gives XBZRLE_ERR_NULL (or -1), never a crash; every
 *   xbzrle_*_free(NULL) does nothing. No panic crosses the boundary (XBZRLE_ERR_PANIC).
 * - Buffers passed in are borrowed for the call only; handles are owned by the caller from
 *   *_new until *_free.
 */

#ifndef XBZRLE_H
#define XBZRLE_H

#include <stddef.h>
#include <stdint.h>

#define XBZRLE_VERSION_MAJOR 0
#define XBZRLE_VERSION_MINOR 1
#define XBZRLE_VERSION_PATCH 0
#define XBZRLE_VERSION_STRING "0.1.0"
/** (MAJOR << 16) | (MINOR << 8) | PATCH, as returned by xbzrle_version_number(). */
#define XBZRLE_VERSION_NUMBER ((XBZRLE_VERSION_MAJOR << 16) | (XBZRLE_VERSION_MINOR << 8) | XBZRLE_VERSION_PATCH)


/**
 * Bytes of a zero-page record (flag, page number, fill byte), whatever the page size: the
 * output capacity `xbzrle_sender_save_zero_page` needs.
 */
#define XBZRLE_ZERO_RECORD_LEN 10

/**
 * Result of a native (non-QEMU) entry point: `XBZRLE_OK` (0) or a negative error code.
 *
 * The values are stable: codes are only ever added, never renumbered.
 */
typedef enum xbzrle_status {
    /**
     * Success.
     */
    XBZRLE_OK = 0,
    /**
     * A required pointer argument (handle, buffer or out-parameter) is NULL.
     */
    XBZRLE_ERR_NULL = -1,
    /**
     * A length, size or configuration value is out of range.
     */
    XBZRLE_ERR_INVALID_ARGUMENT = -2,
    /**
     * The output buffer is too small: for an encode, the delta does not fit (send the page raw).
     */
    XBZRLE_ERR_OVERFLOW = -3,
    /**
     * The delta is malformed or does not fit the page; the page was not modified.
     */
    XBZRLE_ERR_INVALID_DELTA = -4,
    /**
     * The wire record is malformed; the page was not modified.
     */
    XBZRLE_ERR_INVALID_RECORD = -5,
    /**
     * An internal error (a caught panic). A handle involved may now report
     * `XBZRLE_ERR_POISONED`; it can still be freed.
     */
    XBZRLE_ERR_PANIC = -6,
    /**
     * A cache was left inconsistent by an earlier internal error: the page cache, or the
     * sender's cache shard of this page. The migration must restart with a new object (free
     * this one).
     */
    XBZRLE_ERR_POISONED = -7,
    /**
     * The record's page lies outside the destination memory; nothing was written.
     */
    XBZRLE_ERR_PAGE_OUT_OF_RANGE = -8,
    /**
     * The sizes asked for are valid but the memory they need cannot be allocated (cache
     * metadata, the cache's page-data reservation, admission counters, resize space).
     * Nothing was created or changed; try smaller sizes. (A size that cannot be
     * represented at all, such as a cache above `PTRDIFF_MAX` bytes, is
     * `XBZRLE_ERR_INVALID_ARGUMENT` instead.)
     */
    XBZRLE_ERR_NO_MEMORY = -9,
} xbzrle_status;

/**
 * What the sender decided for a page.
 */
typedef enum xbzrle_action {
    /**
     * All-zero page: a zero-page record was written.
     */
    XBZRLE_ACTION_ZERO = 0,
    /**
     * A raw-page record was written (see `xbzrle_raw_reason`).
     */
    XBZRLE_ACTION_RAW = 1,
    /**
     * An XBZRLE record was written.
     */
    XBZRLE_ACTION_XBZRLE = 2,
    /**
     * Cached and unchanged: nothing was written, nothing needs to be sent.
     */
    XBZRLE_ACTION_SKIPPED = 3,
} xbzrle_action;

/**
 * Why a page went raw.
 */
typedef enum xbzrle_raw_reason {
    /**
     * The page did not go raw.
     */
    XBZRLE_RAW_NONE = 0,
    /**
     * Bulk stage: XBZRLE has not started.
     */
    XBZRLE_RAW_BULK = 1,
    /**
     * The page was not cached (a cache miss).
     */
    XBZRLE_RAW_MISS = 2,
    /**
     * The delta did not fit in a page (an overflow).
     */
    XBZRLE_RAW_OVERFLOW = 3,
} xbzrle_raw_reason;

/**
 * Where a migration is.
 */
typedef enum xbzrle_stage {
    /**
     * The first complete pass, until `xbzrle_sender_end_bulk_stage` or else the second
     * `xbzrle_sender_start_pass`: pages go raw.
     */
    XBZRLE_STAGE_BULK = 0,
    /**
     * Later passes while the guest runs: cache lookups, XBZRLE, insertions.
     */
    XBZRLE_STAGE_ITERATIVE = 1,
    /**
     * The final pass with the guest stopped: the cache is never written.
     */
    XBZRLE_STAGE_LAST = 2,
} xbzrle_stage;

/**
 * Cache organisation (values of the `cache_kind` field of `xbzrle_sender_config` and
 * `xbzrle_page_cache_config`).
 */
typedef enum xbzrle_cache_kind {
    /**
     * QEMU's direct-mapped cache: slot = page number mod slot count.
     */
    XBZRLE_CACHE_DIRECT_MAPPED = 0,
    /**
     * Set-associative cache with `ways` entries per set and the `replacement` victim rule.
     */
    XBZRLE_CACHE_SET_ASSOCIATIVE = 1,
} xbzrle_cache_kind;

/**
 * Victim choice of a set-associative cache (values of the `replacement` field of
 * `xbzrle_sender_config` and `xbzrle_page_cache_config`).
 */
typedef enum xbzrle_replacement {
    /**
     * Evict the least recently used entry.
     */
    XBZRLE_REPLACEMENT_LRU = 0,
    /**
     * QEMU's rule: entries used within the last 2 generations are protected; evict the
     * least recently used of the others, or do not insert.
     */
    XBZRLE_REPLACEMENT_LIFETIME = 1,
    /**
     * Protect like LIFETIME; among the others evict the entry with the fewest (decayed) hits.
     */
    XBZRLE_REPLACEMENT_FREQUENCY = 2,
} xbzrle_replacement;

/**
 * Which pages may enter the cache (values of `xbzrle_sender_config.admission`).
 */
typedef enum xbzrle_admission {
    /**
     * Every page, also during the bulk stage (QEMU before commit 5cc11c46).
     */
    XBZRLE_ADMIT_ALWAYS = 0,
    /**
     * Every page after the bulk stage (QEMU's rule; the default).
     */
    XBZRLE_ADMIT_AFTER_BULK = 1,
    /**
     * Pages seen dirty in at least `admission_min_passes` passes after the bulk stage,
     * counted in `admission_counters` bytes of counters.
     */
    XBZRLE_ADMIT_FREQUENCY = 2,
} xbzrle_admission;

/**
 * An opaque page cache with the semantics of QEMU's `migration/page_cache.h`: direct-mapped
 * (QEMU's decisions exactly) or set-associative. Create with `xbzrle_page_cache_new`,
 * destroy with `xbzrle_page_cache_free`.
 *
 * The differences from QEMU 7.2's `page_cache.c`, none of which QEMU's `ram.c` can see:
 * the budget is rounded down to a power of two of pages (QEMU 7.2 refuses other sizes);
 * addresses must be multiples of the page size (QEMU's always are); an empty slot never
 * counts as holding address UINT64_MAX; `xbzrle_page_cache_get` gives NULL for a page that is
 * not cached (QEMU's `get_cached_data` returns the slot's data whichever page it holds, and
 * `ram.c` only asks for cached pages); and an age within 2 of UINT64_MAX protects its entry
 * for ever (QEMU's sum wraps around).
 */
typedef struct xbzrle_page_cache xbzrle_page_cache;

/**
 * An opaque receiver: applies the sender's records to destination pages. Stateless apart
 * from the page size. Create with `xbzrle_receiver_new`, destroy with
 * `xbzrle_receiver_free`.
 */
typedef struct xbzrle_receiver xbzrle_receiver;

/**
 * An opaque sender: QEMU's per-page decisions around a page cache and the codec.
 * Create with `xbzrle_sender_new`, destroy with `xbzrle_sender_free`.
 */
typedef struct xbzrle_sender xbzrle_sender;

/**
 * Page-cache configuration. Fill it with `xbzrle_page_cache_config_default`, then change
 * fields. Enumerated fields are `uint32_t` holding the values of the named enums.
 */
typedef struct xbzrle_page_cache_config {
    /**
     * `sizeof(xbzrle_page_cache_config)` of the header the caller was compiled with, set by
     * `xbzrle_page_cache_config_default`: later versions of the library may add fields at
     * the end, and give them their defaults for a caller built with this one.
     */
    size_t struct_size;
    /**
     * Page size in bytes (1 ..= UINT32_MAX, and at most PTRDIFF_MAX; default 4096).
     */
    size_t page_size;
    /**
     * Page-data budget in bytes: one page ..= PTRDIFF_MAX (default 64 MiB, QEMU's). The
     * slot count is the largest power of two of pages that fits (set-associative: of
     * sets, times the ways). Page data is allocated at the first insertion.
     */
    uint64_t cache_bytes;
    /**
     * An `xbzrle_cache_kind` (default `XBZRLE_CACHE_DIRECT_MAPPED`, QEMU's cache).
     */
    uint32_t cache_kind;
    /**
     * Entries per set for `XBZRLE_CACHE_SET_ASSOCIATIVE` (at least 1; default 16; ignored
     * otherwise).
     */
    uint32_t ways;
    /**
     * An `xbzrle_replacement` for `XBZRLE_CACHE_SET_ASSOCIATIVE` (default
     * `XBZRLE_REPLACEMENT_FREQUENCY`; ignored otherwise).
     */
    uint32_t replacement;
} xbzrle_page_cache_config;

/**
 * What a page cache holds (`xbzrle_page_cache_get_info`).
 */
typedef struct xbzrle_page_cache_info {
    /**
     * Bytes `xbzrle_page_cache_get_info` filled in: the smaller of the caller's
     * `sizeof(xbzrle_page_cache_info)` and the library's.
     */
    size_t struct_size;
    /**
     * Page size in bytes.
     */
    size_t page_size;
    /**
     * The configured budget in bytes.
     */
    uint64_t cache_bytes;
    /**
     * Pages the cache can hold.
     */
    size_t capacity;
    /**
     * Pages cached now.
     */
    size_t pages;
    /**
     * Bytes of page data allocated (0 before the first insertion, then `capacity` pages).
     */
    size_t allocated_bytes;
} xbzrle_page_cache_info;

/**
 * Sender configuration. Fill it with `xbzrle_sender_config_default`, then change fields.
 * Enumerated fields are `uint32_t` holding the values of the named enums.
 */
typedef struct xbzrle_sender_config {
    /**
     * `sizeof(xbzrle_sender_config)` of the header the caller was compiled with, set by
     * `xbzrle_sender_config_default`: later versions of the library may add fields at the
     * end, and give them their defaults for a caller built with this one.
     */
    size_t struct_size;
    /**
     * Page size in bytes (1 ..= UINT32_MAX, and at most PTRDIFF_MAX; default 4096).
     */
    size_t page_size;
    /**
     * Page-data budget of the cache in bytes: one page ..= PTRDIFF_MAX (default 64 MiB).
     * Page data is allocated at the first insertion; a budget the allocator cannot
     * provide gives `XBZRLE_ERR_NO_MEMORY` from `xbzrle_sender_new`.
     */
    uint64_t cache_bytes;
    /**
     * An `xbzrle_cache_kind` (default `XBZRLE_CACHE_DIRECT_MAPPED`).
     */
    uint32_t cache_kind;
    /**
     * Entries per set for `XBZRLE_CACHE_SET_ASSOCIATIVE` (at least 1; ignored otherwise).
     */
    uint32_t ways;
    /**
     * An `xbzrle_replacement` for `XBZRLE_CACHE_SET_ASSOCIATIVE` (ignored otherwise).
     */
    uint32_t replacement;
    /**
     * An `xbzrle_admission` (default `XBZRLE_ADMIT_AFTER_BULK`).
     */
    uint32_t admission;
    /**
     * For `XBZRLE_ADMIT_FREQUENCY`: passes a page must be seen dirty in (1 ..= 255).
     */
    uint32_t admission_min_passes;
    /**
     * For `XBZRLE_ADMIT_FREQUENCY`: counter bytes for the whole sender (1 ..= PTRDIFF_MAX;
     * allocated by `xbzrle_sender_new`).
     */
    size_t admission_counters;
    /**
     * Independently locked cache shards, a power of two, 1 ..= 65536 (default 1). Page `p`
     * lives in shard `p mod shards`; use more than 1 to call `xbzrle_sender_save_page` from
     * several threads with little contention.
     */
    size_t shards;
} xbzrle_sender_config;

/**
 * What `xbzrle_sender_save_page` or `xbzrle_sender_save_zero_page` did.
 */
typedef struct xbzrle_sent {
    /**
     * The decision.
     */
    enum xbzrle_action action;
    /**
     * Why the page went raw (`XBZRLE_RAW_NONE` unless `action` is `XBZRLE_ACTION_RAW`).
     */
    enum xbzrle_raw_reason raw_reason;
    /**
     * Bytes of the record written at the start of the output (0 when skipped).
     */
    size_t record_len;
} xbzrle_sent;

/**
 * Receives the record of one page saved by `xbzrle_sender_save_pages`: the page number,
 * what was decided and the record (`sent->record_len` bytes; none when skipped), valid until
 * the callback returns. Return 0 to go on with the next page, anything else to stop.
 */
typedef int (*xbzrle_record_fn)(void *opaque,
                                uint64_t page,
                                const struct xbzrle_sent *sent,
                                const uint8_t *record);

/**
 * Sender statistics. After `struct_size`, the first seven fields are QEMU's
 * `query-migrate` → `xbzrle-cache`.
 */
typedef struct xbzrle_sender_stats {
    /**
     * Bytes `xbzrle_sender_get_stats` filled in: the smaller of the caller's
     * `sizeof(xbzrle_sender_stats)` and the library's (later versions may add fields at the
     * end).
     */
    size_t struct_size;
    /**
     * `cache-size`: the configured cache budget in bytes.
     */
    uint64_t cache_size;
    /**
     * `bytes`: XBZRLE payload bytes sent; an overflowed page counts as a full page.
     */
    uint64_t bytes;
    /**
     * `pages`: cache hits (pages encoded with XBZRLE, whatever the result).
     */
    uint64_t pages;
    /**
     * `cache-miss`: pages looked up after the bulk stage and not found.
     */
    uint64_t cache_miss;
    /**
     * `cache-miss-rate`: misses / pages processed over the last completed period.
     */
    double cache_miss_rate;
    /**
     * `encoding-rate`: hits × page size / `bytes` over the last completed period.
     */
    double encoding_rate;
    /**
     * `overflow`: hits whose delta did not fit, sent raw.
     */
    uint64_t overflow;
    /**
     * Current stage (`XBZRLE_STAGE_ITERATIVE` once `xbzrle_sender_end_bulk_stage` has
     * been called, unless in the last stage).
     */
    enum xbzrle_stage stage;
    /**
     * Current generation (number of dirty syncs).
     */
    uint64_t generation;
    /**
     * Pages given to `xbzrle_sender_save_page` or `xbzrle_sender_save_zero_page`
     * successfully.
     */
    uint64_t pages_processed;
    /**
     * Pages sent as zero-page records (by either save call).
     */
    uint64_t zero_pages;
    /**
     * Pages sent raw (bulk stage, misses, overflows).
     */
    uint64_t raw_pages;
    /**
     * Pages sent as XBZRLE records.
     */
    uint64_t xbzrle_pages;
    /**
     * Cached, unchanged pages: nothing sent.
     */
    uint64_t skipped_pages;
    /**
     * Bytes of every record written, headers included.
     */
    uint64_t wire_bytes;
    /**
     * Pages cached now.
     */
    size_t cache_pages;
    /**
     * Pages the cache can hold.
     */
    size_t cache_capacity;
    /**
     * Bytes of page data the cache has allocated (never above `cache_size`).
     */
    size_t cache_allocated_bytes;
} xbzrle_sender_stats;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Drop-in for QEMU's `xbzrle_encode_buffer`: writes the canonical delta from `old_buf` to
 * `new_buf` (both `slen` bytes) into `dst` (capacity `dlen`).
 *
 * Returns 0 when the pages are identical, -1 when the delta does not fit in `dlen` bytes
 * (send the page raw) or an argument is NULL or negative, otherwise the delta length.
 * The delta is byte-identical to QEMU's. Differences: any `slen` and any alignment are
 * accepted, and the overflow rule is exact (QEMU also gives -1 when the delta fits with
 * fewer than 2 spare bytes before an unchanged run); identical pages give 0 for any
 * `dlen`. Nothing is written at or past `dst + dlen`; on -1, bytes before it may have been.
 *
 * Ownership: borrows all buffers for the duration of the call. Thread-safe; the buffers
 * must not be modified by another thread during the call.
 *
 * # Safety
 * `old_buf` and `new_buf` must be valid for reads of `slen` bytes, `dst` valid for writes
 * of `dlen` bytes, and `dst` must not overlap `old_buf` or `new_buf`.
 */
int xbzrle_encode_buffer(uint8_t *old_buf, uint8_t *new_buf, int slen, uint8_t *dst, int dlen);

/**
 * Drop-in for QEMU's `xbzrle_decode_buffer`: applies the delta `src` (`slen` bytes) in
 * place to the page `dst` (`dlen` bytes).
 *
 * Returns -1 when the delta is invalid for this page (QEMU's verdict on every input) or an
 * argument is NULL or negative, otherwise the offset just past the last changed run (0 for
 * the empty delta). As in QEMU, when -1 is returned for a malformed delta the runs before
 * the fault have already been written; use `xbzrle_decode` to leave the page untouched.
 * Never reads past `src + slen` nor writes past `dst + dlen`.
 *
 * Ownership: borrows both buffers for the duration of the call. Thread-safe; the buffers
 * must not be modified by another thread during the call.
 *
 * # Safety
 * `src` must be valid for reads of `slen` bytes, `dst` valid for reads and writes of
 * `dlen` bytes, and they must not overlap.
 */
int xbzrle_decode_buffer(uint8_t *src, int slen, uint8_t *dst, int dlen);

/**
 * Writes the canonical delta (byte-identical to QEMU) from `old_page` to `new_page` (both
 * `page_len` bytes, at most `UINT32_MAX`) into `out` (capacity `out_cap`).
 *
 * On `XBZRLE_OK`, `*out_len` is the delta length (0 = identical pages, nothing to send).
 * `XBZRLE_ERR_OVERFLOW` (exact: the delta really needs more than `out_cap` bytes) means
 * send the page raw; `*out_len` is then 0 and `out` may have been partly written, never
 * past `out + out_cap`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`.
 *
 * Ownership: borrows all buffers for the call. Thread-safe.
 *
 * # Safety
 * `old_page` and `new_page` must be valid for reads of `page_len` bytes, `out` valid for
 * writes of `out_cap` bytes without overlapping them, `out_len` valid for a write.
 */
enum xbzrle_status xbzrle_encode(const uint8_t *old_page,
                                 const uint8_t *new_page,
                                 size_t page_len,
                                 uint8_t *out,
                                 size_t out_cap,
                                 size_t *out_len);

/**
 * Like `xbzrle_encode`, but writes the smallest delta in the same grammar (unchanged gaps
 * are copied inside a changed run when that is cheaper) from `old_page` to `new_page`
 * (both `page_len` bytes, at most `UINT32_MAX`) into `out` (capacity `out_cap`). Never
 * longer than the canonical delta; QEMU's decoder accepts it.
 *
 * On `XBZRLE_OK`, `*out_len` is the delta length (0 = identical pages, nothing to send).
 * `XBZRLE_ERR_OVERFLOW` (exact: even the smallest delta needs more than `out_cap` bytes)
 * means send the page raw; `*out_len` is then 0 and `out` may have been partly written,
 * never past `out + out_cap`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`.
 *
 * Ownership: borrows all buffers for the duration of the call and keeps no pointer to
 * them. Thread-safe; no other thread may write `old_page` or `new_page`, or access `out`,
 * during the call.
 *
 * # Safety
 * `old_page` and `new_page` must be valid for reads of `page_len` bytes, `out` valid for
 * writes of `out_cap` bytes without overlapping them, `out_len` valid for a write.
 */
enum xbzrle_status xbzrle_encode_compact(const uint8_t *old_page,
                                         const uint8_t *new_page,
                                         size_t page_len,
                                         uint8_t *out,
                                         size_t out_cap,
                                         size_t *out_len);

/**
 * Like `xbzrle_encode` (canonical delta from `cached` to `new_page` into `out`), and
 * leaves `cached` equal to `new_page`, in one pass over both pages: the sender's cache
 * refresh without a separate copy. `cached` is refreshed on `XBZRLE_ERR_OVERFLOW` too;
 * on any other error it is untouched.
 *
 * `new_page` may be guest memory that vCPUs or other threads write during the call: each
 * of its bytes is read exactly once, and the delta's bytes are taken from the refreshed
 * `cached`, so the delta always turns the old `cached` into the new `cached` (each byte is
 * one value `new_page` held during the call). No private copy of the page is needed.
 *
 * Ownership: borrows all buffers for the call. Thread-safe; no other thread may access
 * `cached` or `out` during the call.
 *
 * # Safety
 * `cached` must be valid for reads and writes of `page_len` bytes, `new_page` valid for
 * reads of `page_len` bytes (it may be written concurrently), `out` valid for writes of
 * `out_cap` bytes, none of them overlapping; `out_len` valid for a write.
 */
enum xbzrle_status xbzrle_encode_update(uint8_t *cached,
                                        const uint8_t *new_page,
                                        size_t page_len,
                                        uint8_t *out,
                                        size_t out_cap,
                                        size_t *out_len);

/**
 * Checks the delta `delta` (`delta_len` bytes) against a page of `page_len` bytes without
 * touching any page. On `XBZRLE_OK`, `*end` (if `end` is not NULL) is the offset just past
 * the last changed run. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_DELTA`.
 *
 * Ownership: borrows `delta` for the call. Thread-safe.
 *
 * # Safety
 * `delta` must be valid for reads of `delta_len` bytes; `end` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_validate(const uint8_t *delta,
                                   size_t delta_len,
                                   size_t page_len,
                                   size_t *end);

/**
 * Applies the delta `delta` (`delta_len` bytes) in place to `page` (`page_len` bytes).
 * The delta is validated first: on any error the page is left untouched. On `XBZRLE_OK`,
 * `*end` (if `end` is not NULL) is the offset just past the last changed run.
 * Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`, `XBZRLE_ERR_INVALID_DELTA`.
 *
 * Ownership: borrows both buffers for the call. Thread-safe.
 *
 * # Safety
 * `delta` must be valid for reads of `delta_len` bytes, `page` valid for reads and writes
 * of `page_len` bytes without overlapping `delta`; `end` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_decode(const uint8_t *delta,
                                 size_t delta_len,
                                 uint8_t *page,
                                 size_t page_len,
                                 size_t *end);

/**
 * The longest delta (canonical or compact) of a page of `page_len` bytes,
 * `(3 * page_len + 3) / 2` (0 for an empty page; saturates at `SIZE_MAX`): an output
 * buffer of this size never gives `XBZRLE_ERR_OVERFLOW` from `xbzrle_encode`,
 * `xbzrle_encode_compact` or `xbzrle_encode_update`. Thread-safe.
 */
size_t xbzrle_max_delta_len(size_t page_len);

/**
 * Name of the encoding kernel this CPU runs (`"reference"`, `"avx2"`, …), detected once.
 *
 * Returns a static NUL-terminated string (never NULL, never to be freed). Thread-safe.
 */
const char *xbzrle_kernel_name(void);

/**
 * The library's version, `"MAJOR.MINOR.PATCH"`, as built (compare with
 * `XBZRLE_VERSION_STRING` from the header you compiled against).
 *
 * Returns a static NUL-terminated string (never NULL, never to be freed). Thread-safe.
 */
const char *xbzrle_version_string(void);

/**
 * The library's version as `(MAJOR << 16) | (MINOR << 8) | PATCH`, comparable with
 * `XBZRLE_VERSION_NUMBER` from the header. Thread-safe.
 */
uint32_t xbzrle_version_number(void);

/**
 * Fills `*config` with the defaults: 4096-byte pages, a 64 MiB direct-mapped cache (QEMU's
 * setup); 16 ways and FREQUENCY replacement for when `cache_kind` is changed to
 * `XBZRLE_CACHE_SET_ASSOCIATIVE`. Errors: `XBZRLE_ERR_NULL`. Thread-safe.
 *
 * # Safety
 * `config` must be NULL or valid for a write of one `xbzrle_page_cache_config`.
 */
enum xbzrle_status xbzrle_page_cache_config_default(struct xbzrle_page_cache_config *config);

/**
 * Creates an empty page cache (QEMU's `cache_init`). Its metadata is allocated now, its
 * page data at the first insertion. On `XBZRLE_OK`, `*out` is a new handle the caller owns
 * and must release with `xbzrle_page_cache_free`; on error `*out` is NULL. Errors:
 * `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`config->struct_size` below the first
 * version's size, page size 0 or above UINT32_MAX, a budget below one page or above
 * PTRDIFF_MAX, an unknown kind or replacement, 0 ways), `XBZRLE_ERR_NO_MEMORY`.
 * `config->struct_size` (set by `xbzrle_page_cache_config_default`) says how many bytes of
 * `*config` are read; fields beyond it take their defaults. Thread-safe.
 *
 * # Safety
 * `config` must be NULL or readable for `config->struct_size` bytes; `out` NULL or valid
 * for a write of one pointer.
 */
enum xbzrle_status xbzrle_page_cache_new(const struct xbzrle_page_cache_config *config,
                                         struct xbzrle_page_cache **out);

/**
 * Destroys a page cache and its page data (QEMU's `cache_fini`); every pointer from
 * `xbzrle_page_cache_get` or `xbzrle_page_cache_insert` becomes invalid. NULL does nothing.
 *
 * # Safety
 * `cache` must be NULL or a handle from `xbzrle_page_cache_new` not yet freed, with no
 * other call on it running.
 */
void xbzrle_page_cache_free(struct xbzrle_page_cache *cache);

/**
 * Looks up the page at guest address `addr` (QEMU's `cache_is_cached`): `*cached` becomes 1
 * when it is cached, and then its age becomes `current_age`; 0 otherwise. Errors:
 * `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`addr` not a multiple of the page
 * size), `XBZRLE_ERR_POISONED`.
 *
 * Not thread-safe: calls on one cache must not overlap (QEMU holds its XBZRLE lock).
 *
 * # Safety
 * `cache` must be NULL or a live handle; `cached` NULL or valid for a write of one `int`.
 */
enum xbzrle_status xbzrle_page_cache_is_cached(struct xbzrle_page_cache *cache,
                                               uint64_t addr,
                                               uint64_t current_age,
                                               int *cached);

/**
 * The cached copy of the page at guest address `addr` (QEMU's `get_cached_data`), without
 * touching its age: `*data` points to its page-size bytes, or is NULL when the page is not
 * cached. The caller may read and write the copy (QEMU refreshes it after encoding) until
 * the entry is replaced by another page or the cache is freed. Errors: `XBZRLE_ERR_NULL`,
 * `XBZRLE_ERR_INVALID_ARGUMENT` (`addr` not a multiple of the page size),
 * `XBZRLE_ERR_POISONED`.
 *
 * Not thread-safe: calls on one cache must not overlap, nor any use of a copy with a call
 * that could replace it.
 *
 * # Safety
 * `cache` must be NULL or a live handle; `data` NULL or valid for a write of one pointer.
 */
enum xbzrle_status xbzrle_page_cache_get(struct xbzrle_page_cache *cache,
                                         uint64_t addr,
                                         uint8_t **data);

/**
 * Stores the `len` bytes at `page` (one page) as the copy of the page at guest address
 * `addr`, with age `current_age` (QEMU's `cache_insert`). A copy of the same address is
 * overwritten. Otherwise the direct-mapped cache refuses when the page's slot holds another
 * page whose age + 2 > `current_age` (QEMU's CACHED_PAGE_LIFETIME); the set-associative
 * cache refuses when its replacement rule finds no victim in the page's set. `*copy` is
 * the cached copy on success (as `xbzrle_page_cache_get` would return), NULL when the page
 * was not stored (also when its page data could not be allocated: the page is then simply
 * not cached, as in QEMU). Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`len`
 * is not the page size, `addr` not a multiple of it), `XBZRLE_ERR_POISONED`.
 *
 * Not thread-safe: calls on one cache must not overlap.
 *
 * `page` may be guest memory that vCPUs write during the call (QEMU passes guest RAM): each
 * byte is read once, and the cached copy holds what was read, which `*copy` then points to
 * (QEMU sends that copy).
 *
 * # Safety
 * `cache` must be NULL or a live handle; `page` NULL or readable for `len` bytes and not
 * inside this cache's page data; `copy` NULL or valid for a write of one pointer.
 */
enum xbzrle_status xbzrle_page_cache_insert(struct xbzrle_page_cache *cache,
                                            uint64_t addr,
                                            const uint8_t *page,
                                            size_t len,
                                            uint64_t current_age,
                                            uint8_t **copy);

/**
 * Fills `*info` (`info_size` = `sizeof(xbzrle_page_cache_info)` of the caller's header)
 * with the cache's page size, budget, capacity, cached pages and allocated page data: as
 * many fields as both versions of the struct have, `info->struct_size` = the bytes filled
 * in. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`info_size` below the first
 * version's size), `XBZRLE_ERR_POISONED`. Not thread-safe (see
 * `xbzrle_page_cache_is_cached`).
 *
 * # Safety
 * `cache` must be NULL or a live handle; `info` NULL or valid for writes of `info_size`
 * bytes.
 */
enum xbzrle_status xbzrle_page_cache_get_info(struct xbzrle_page_cache *cache,
                                              struct xbzrle_page_cache_info *info,
                                              size_t info_size);

/**
 * Creates a receiver for pages of `page_size` bytes (1 ..= UINT32_MAX, and at most
 * PTRDIFF_MAX). The receiver allocates no page-sized memory, so a large page size costs
 * nothing. On `XBZRLE_OK`, `*out` is a new handle the caller owns and must release with
 * `xbzrle_receiver_free`; on error `*out` is NULL. Errors: `XBZRLE_ERR_NULL`,
 * `XBZRLE_ERR_INVALID_ARGUMENT` (e.g. `page_size` 0 or SIZE_MAX). Thread-safe.
 *
 * # Safety
 * `out` must be NULL or valid for a write of one pointer.
 */
enum xbzrle_status xbzrle_receiver_new(size_t page_size, struct xbzrle_receiver **out);

/**
 * Destroys a receiver. NULL does nothing. No other call may use the handle during or after
 * this one.
 *
 * # Safety
 * `receiver` must be NULL or a handle from `xbzrle_receiver_new` not yet freed.
 */
void xbzrle_receiver_free(struct xbzrle_receiver *receiver);

/**
 * Reads the header of the record at the start of `record` (`record_len` bytes available)
 * without applying it: `*page` (optional) is its page number and `*consumed` (optional)
 * its length in bytes. Use it to find the destination page before
 * `xbzrle_receiver_apply_page`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_RECORD`.
 * Thread-safe.
 *
 * # Safety
 * `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
 * `page` and `consumed` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_receiver_peek(const struct xbzrle_receiver *receiver,
                                        const uint8_t *record,
                                        size_t record_len,
                                        uint64_t *page,
                                        size_t *consumed);

/**
 * Applies the record at the start of `record` to `dest`, the one page it is for
 * (`dest_len` = the page size; find it with `xbzrle_receiver_peek`). `*consumed`
 * (optional) is the record's length. On any error `dest` is left exactly as it was.
 * Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`dest_len` is not the page
 * size), `XBZRLE_ERR_INVALID_RECORD`, `XBZRLE_ERR_INVALID_DELTA`.
 *
 * Thread-safe: several threads may apply records at once to different pages.
 *
 * # Safety
 * `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
 * `dest` readable and writable for `dest_len` bytes, not overlapping `record`; `consumed`
 * NULL or valid for a write.
 */
enum xbzrle_status xbzrle_receiver_apply_page(const struct xbzrle_receiver *receiver,
                                              const uint8_t *record,
                                              size_t record_len,
                                              uint8_t *dest,
                                              size_t dest_len,
                                              size_t *consumed);

/**
 * Applies the record at the start of `record` to guest memory `memory` (`memory_len`
 * bytes; page `p` is at `memory + p * page_size`). `*page` and `*consumed` (optional) are
 * the record's page number and length. On any error `memory` is left exactly as it was.
 * Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_RECORD`, `XBZRLE_ERR_INVALID_DELTA`,
 * `XBZRLE_ERR_PAGE_OUT_OF_RANGE`.
 *
 * Thread-safe: several threads may apply records at once to different pages of one
 * memory, provided no two calls are for the same page.
 *
 * # Safety
 * `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
 * `memory` readable and writable for `memory_len` bytes, not overlapping `record`;
 * `page` and `consumed` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_receiver_apply_record(const struct xbzrle_receiver *receiver,
                                                const uint8_t *record,
                                                size_t record_len,
                                                uint8_t *memory,
                                                size_t memory_len,
                                                uint64_t *page,
                                                size_t *consumed);

/**
 * Fills `*config` with the defaults (QEMU's setup): 4096-byte pages, a 64 MiB
 * direct-mapped cache, admission after the bulk stage, one shard. Set-associative and
 * frequency fields get usable values (16 ways, FREQUENCY replacement, 2 passes, 1 MiB of
 * counters) so that changing only `cache_kind` or `admission` works; `struct_size` is this
 * header's `sizeof(xbzrle_sender_config)`.
 *
 * Errors: `XBZRLE_ERR_NULL`. Thread-safe.
 *
 * # Safety
 * `config` must be NULL or valid for a write of one `xbzrle_sender_config`.
 */
enum xbzrle_status xbzrle_sender_config_default(struct xbzrle_sender_config *config);

/**
 * Creates a sender in the bulk stage (generation 0) with an empty cache. The cache
 * metadata (24 to 40 bytes per cached page) and the admission counters are allocated now;
 * the page data is one zeroed allocation made at the first insertion (the operating system
 * commits only the pages written), whose size is checked now: the allocator must be able
 * to provide it at this moment. If it refuses it at the first insertion after all, that
 * page is not cached and is sent raw, and a later insertion tries again. On `XBZRLE_OK`,
 * `*out` is a new handle the caller owns and must release with `xbzrle_sender_free`; on
 * error `*out` is NULL.
 *
 * No configuration value crashes the process: sizes that cannot be represented give an
 * error, and memory that cannot be allocated gives `XBZRLE_ERR_NO_MEMORY`.
 *
 * Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (a field out of range, e.g.
 * `cache_bytes` above PTRDIFF_MAX, an unknown enum value, or a `struct_size` below the
 * first version's), `XBZRLE_ERR_NO_MEMORY` (valid
 * sizes whose memory cannot be allocated, e.g. `cache_bytes` = 2^60). Thread-safe.
 *
 * `config->struct_size` must be set (by `xbzrle_sender_config_default`): the fields of the
 * caller's version are read, and later fields take their defaults.
 *
 * # Safety
 * `config` must be NULL or point to a readable `xbzrle_sender_config` of
 * `config->struct_size` bytes; `out` NULL or valid for a write of one pointer.
 */
enum xbzrle_status xbzrle_sender_new(const struct xbzrle_sender_config *config,
                                     struct xbzrle_sender **out);

/**
 * Destroys a sender and its cache. NULL does nothing. Not thread-safe with respect to the
 * handle: no other call may use it during or after this one.
 *
 * # Safety
 * `sender` must be NULL or a handle from `xbzrle_sender_new` not yet freed.
 */
void xbzrle_sender_free(struct xbzrle_sender *sender);

/**
 * Dirty sync at the start of a pass over guest RAM: the generation goes up by one and the
 * rates of the period just ended are computed. Call it before every pass, the first one
 * included; the second call ends the bulk stage (QEMU's "bulk stage" is the first
 * complete pass) unless `xbzrle_sender_end_bulk_stage` already has. In the last stage it
 * only counts a generation.
 *
 * Errors: `XBZRLE_ERR_NULL`. Thread-safe (call it between passes).
 *
 * # Safety
 * `sender` must be NULL or a live handle from `xbzrle_sender_new`.
 */
enum xbzrle_status xbzrle_sender_start_pass(const struct xbzrle_sender *sender);

/**
 * Ends the bulk stage now (QEMU's `xbzrle_started = true`, set when its first complete
 * pass over RAM finishes, e.g. when a pass wraps around the RAM blocks part-way): the next
 * page saved is looked up in the cache (a miss is counted and, if admitted, inserted)
 * instead of going raw as a bulk page. Without this call the bulk stage ends at the second
 * `xbzrle_sender_start_pass`, which ends it in any case: this call can only end it earlier.
 *
 * Not a dirty sync: the generation is unchanged (the next `xbzrle_sender_start_pass`
 * counts one as always) and no statistics period ends, so the period in progress covers
 * its bulk pages and its looked-up pages together (`cache_miss_rate` divides its misses by
 * all of its pages, as QEMU's does when `xbzrle_started` flips between two rate updates).
 * Called before the first `xbzrle_sender_start_pass`, the sender has no bulk stage.
 * Idempotent; no effect once the bulk stage is over or in the last stage. The stage can be
 * read back in `xbzrle_sender_stats.stage` (`xbzrle_sender_get_stats`).
 *
 * Errors: `XBZRLE_ERR_NULL`. Like the other stage calls it touches no cache shard, so it
 * succeeds on a sender with a poisoned shard (that shard's pages keep reporting
 * `XBZRLE_ERR_POISONED` from the save calls).
 *
 * Ownership: borrows the handle for the call. Thread-safe: it may be called while other
 * threads save pages, including in the middle of a pass; a save running at the same time
 * is decided wholly in one stage or the other.
 *
 * # Safety
 * `sender` must be NULL or a live handle from `xbzrle_sender_new`.
 */
enum xbzrle_status xbzrle_sender_end_bulk_stage(const struct xbzrle_sender *sender);

/**
 * Dirty sync that enters the last stage (guest stopped, final pass): from now on the
 * cache is never written. Final: later `xbzrle_sender_start_pass` calls stay in it.
 *
 * Errors: `XBZRLE_ERR_NULL`. Thread-safe (call it between passes).
 *
 * # Safety
 * `sender` must be NULL or a live handle from `xbzrle_sender_new`.
 */
enum xbzrle_status xbzrle_sender_start_last_stage(const struct xbzrle_sender *sender);

/**
 * Changes the cache budget to `cache_bytes` (one page ..= PTRDIFF_MAX), keeping the cached
 * pages that still fit (QEMU's `xbzrle-cache-size` change). The page data never exceeds
 * the budget once the call returns. Waits for `xbzrle_sender_save_page` calls in progress.
 *
 * Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (below one page or above
 * PTRDIFF_MAX), `XBZRLE_ERR_NO_MEMORY` (the memory for the new size cannot be allocated).
 * On error the budget is unchanged: with several shards, a shard resized before the
 * failure is resized back (it may have dropped pages that did not fit the other size);
 * should even that allocation fail, that shard keeps the new budget, so the page data stays
 * within the larger of the two budgets and the cache still matches the receiver.
 * Thread-safe (call it between passes).
 *
 * # Safety
 * `sender` must be NULL or a live handle from `xbzrle_sender_new`.
 */
enum xbzrle_status xbzrle_sender_resize_cache(const struct xbzrle_sender *sender,
                                              uint64_t cache_bytes);

/**
 * The output capacity `xbzrle_sender_save_page` needs: the longest record for this page
 * size (header + one page). Returns 0 for NULL. Thread-safe.
 *
 * # Safety
 * `sender` must be NULL or a live handle from `xbzrle_sender_new`.
 */
size_t xbzrle_sender_max_record_len(const struct xbzrle_sender *sender);

/**
 * Decides how to send page number `page` (address / page size) whose current content is
 * `data` (`data_len` = the page size), writes the wire record at the start of `out`
 * (`out_cap` >= `xbzrle_sender_max_record_len`) and updates the cache and statistics:
 * all-zero page → zero record, exactly as `xbzrle_sender_save_zero_page` (which a caller
 * that detects zero pages itself calls instead; see it for the cache effect); bulk stage →
 * raw; not cached → miss, inserted if admitted (not in the last stage), raw; cached →
 * encoded against the cached copy, which becomes `data`: unchanged → skipped, overflow →
 * raw, else an XBZRLE record. `*sent` says which, and the record length.
 *
 * Record layout: a flag byte (`0x02` zero page, `0x08` raw page, `0x40` XBZRLE, QEMU's
 * `RAM_SAVE_FLAG_*` values), the page number as a big-endian `uint64_t`, then the body:
 * one fill byte (0) / the page / QEMU's XBZRLE payload (`0x01`, the delta length as a
 * big-endian `uint16_t`, the delta).
 *
 * Errors (nothing sent, no state changed): `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`
 * (`data_len` is not the page size), `XBZRLE_ERR_OVERFLOW` (`out_cap` too small),
 * `XBZRLE_ERR_POISONED`.
 *
 * Guest memory that vCPUs write: `data` may point straight into guest RAM while vCPUs
 * (or other threads) keep writing the page during the call; no private copy is needed.
 * Each byte of `data` is read exactly once, and the record written and the cache entry
 * left behind both come from that one read (a miss or bulk page is read into the raw
 * record and cached from there; a hit refreshes the cached copy as it compares and takes
 * the delta from the refreshed copy; an overflow sends the refreshed copy). So the
 * destination always holds what the cache holds: each byte is one value the guest page
 * had during the call, and once the guest is stopped and the page is saved again (it is
 * dirty again), the destination equals the source.
 *
 * Thread-safe: several threads may save pages at once, provided one page is never given to
 * two calls at the same time and the receiver applies a page's records in the order these
 * calls returned.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `data` valid for reads of `data_len` bytes (other
 * threads may write them during the call); `out` valid for writes of `out_cap` bytes, not
 * overlapping `data`; `sent` NULL or valid for a write of one `xbzrle_sent`.
 */
enum xbzrle_status xbzrle_sender_save_page(const struct xbzrle_sender *sender,
                                           uint64_t page,
                                           const uint8_t *data,
                                           size_t data_len,
                                           uint8_t *out,
                                           size_t out_cap,
                                           struct xbzrle_sent *sent);

/**
 * Saves `count` pages in the order given (a pass's dirty pages, in the order of the dirty
 * bitmap): page number `pages[i]` with content `data[i]` (`data_len` = the page size each;
 * guest memory that vCPUs may write, as for `xbzrle_sender_save_page`). Exactly what
 * `xbzrle_sender_save_page` does page after page, writing each record into `out`
 * (`out_cap` >= `xbzrle_sender_max_record_len`) and calling `emit(opaque, page, &sent,
 * out)` before the next page, but while it encodes a page it has the CPU load the next page
 * and its cached copy, so that at guest-RAM scale memory latency overlaps the work.
 * `*saved` (optional) is the number of pages saved, also on error; when `emit` returns
 * nonzero the batch stops after that page, with `XBZRLE_OK`.
 *
 * Errors: the arguments are checked before any page is saved (`*saved` = 0):
 * `XBZRLE_ERR_NULL` (`sender`, `out` or `emit` NULL, or `pages`/`data` NULL with `count` >
 * 0, or a NULL `data[i]`), `XBZRLE_ERR_INVALID_ARGUMENT` (`data_len` or `out_cap` above
 * PTRDIFF_MAX). Then the errors of `xbzrle_sender_save_page` for a page: the pages before
 * it were saved and emitted, that one and those after it were not. Thread-safe under the
 * contract of `xbzrle_sender_save_page`.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `pages` and `data` NULL or valid for reads of
 * `count` elements; each `data[i]` NULL or valid for reads of `data_len` bytes (other threads
 * may write them); `out` valid for writes of `out_cap` bytes, overlapping no page; `emit` a
 * function that may be called with `opaque`; `saved` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_sender_save_pages(const struct xbzrle_sender *sender,
                                            const uint64_t *pages,
                                            const uint8_t *const *data,
                                            size_t count,
                                            size_t data_len,
                                            uint8_t *out,
                                            size_t out_cap,
                                            xbzrle_record_fn emit,
                                            void *opaque,
                                            size_t *saved);

/**
 * Saves page number `page` (address / page size), which the caller has found to be all
 * zeros (QEMU's `buffer_is_zero` before `save_zero_page` and `xbzrle_cache_zero_page`),
 * without passing or scanning its bytes: exactly what `xbzrle_sender_save_page` does with
 * an all-zero page, through the same code. Writes the zero-page record (flag `0x02`, the
 * page number as a big-endian `uint64_t`, fill byte 0: `XBZRLE_ZERO_RECORD_LEN` bytes) at
 * the start of `out`; `*sent` is `XBZRLE_ACTION_ZERO`, `XBZRLE_RAW_NONE` and the record
 * length. The cache and statistics change as for a zero page given to
 * `xbzrle_sender_save_page`: in the bulk stage a cached copy (only `XBZRLE_ADMIT_ALWAYS`
 * makes one) becomes zeros and nothing is inserted; after it the cached copy becomes zeros,
 * or a missing one is inserted as zeros if admitted, so that a later small write goes as
 * XBZRLE (no hit or miss is counted); in the last stage a cached copy is dropped.
 *
 * Errors (nothing sent, no state changed): `XBZRLE_ERR_NULL` (`sender`, `out` or `sent`),
 * `XBZRLE_ERR_INVALID_ARGUMENT` (`out_cap` above PTRDIFF_MAX), `XBZRLE_ERR_OVERFLOW`
 * (`out_cap` below `XBZRLE_ZERO_RECORD_LEN`; `xbzrle_sender_max_record_len` always
 * suffices), `XBZRLE_ERR_POISONED`.
 *
 * Ownership: borrows the handle and `out` for the call; nothing is written past the
 * record. Thread-safe under the contract of `xbzrle_sender_save_page`: several threads may
 * save pages at once, provided one page is never given to two save calls at the same time
 * and the receiver applies a page's records in the order these calls returned.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `out` NULL or valid for writes of `out_cap`
 * bytes; `sent` NULL or valid for a write of one `xbzrle_sent`.
 */
enum xbzrle_status xbzrle_sender_save_zero_page(const struct xbzrle_sender *sender,
                                                uint64_t page,
                                                uint8_t *out,
                                                size_t out_cap,
                                                struct xbzrle_sent *sent);

/**
 * Copies the sender's cached copy of page number `page` into `out` (`out_len` = the page
 * size), for inspection and tests: e.g. checking that the cache matches what the receiver
 * holds. `*cached` is 1 and `*age` (optional) the generation of its last use when the page
 * is cached; else `*cached` is 0 and `out` is untouched. Not a use of the entry (its age
 * and hit count do not change).
 *
 * Errors: `XBZRLE_ERR_NULL` (`sender`, `out` or `cached`), `XBZRLE_ERR_INVALID_ARGUMENT`
 * (`out_len` is not the page size). Thread-safe; a page saved at the same time is copied
 * before or after that save.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `out` NULL or valid for writes of `out_len`
 * bytes; `cached` NULL or valid for a write; `age` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_sender_cached_page(const struct xbzrle_sender *sender,
                                             uint64_t page,
                                             uint8_t *out,
                                             size_t out_len,
                                             int *cached,
                                             uint64_t *age);

/**
 * Fills `*stats` (`stats_size` = `sizeof(xbzrle_sender_stats)` of the caller's header)
 * with the sender's statistics now: as many fields as both the caller's and the library's
 * versions of the struct have, and `stats->struct_size` = the bytes filled in. Errors:
 * `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`stats_size` below the first version's
 * size). Thread-safe.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `stats` NULL or valid for writes of `stats_size`
 * bytes.
 */
enum xbzrle_status xbzrle_sender_get_stats(const struct xbzrle_sender *sender,
                                           struct xbzrle_sender_stats *stats,
                                           size_t stats_size);

/**
 * Estimated wire bytes to send `dirty_pages` pages now (for a convergence decision: the
 * average record bytes per page of the last completed period). Errors: `XBZRLE_ERR_NULL`.
 * Thread-safe.
 *
 * # Safety
 * `sender` must be NULL or a live handle; `bytes` NULL or valid for a write.
 */
enum xbzrle_status xbzrle_sender_estimate_bytes(const struct xbzrle_sender *sender,
                                                uint64_t dirty_pages,
                                                uint64_t *bytes);

/**
 * Describes a status code.
 *
 * Returns a static NUL-terminated English string (never NULL, never to be freed); an
 * unknown code gives a generic description. Thread-safe.
 */
const char *xbzrle_strerror(int code);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* XBZRLE_H */
