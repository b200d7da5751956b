//! The page cache in C, with the semantics of QEMU's `migration/page_cache.h`: the object a
//! replacement for QEMU's `page_cache.c` is a thin layer over.
//!
//! Keys are guest addresses, as in QEMU (a multiple of the page size; page number = address
//! / page size). Ages are QEMU's dirty-sync counts.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use xbzrle::PageSource;
use xbzrle_policy::{PageCache, SenderConfig};

use crate::ffi::{self, Status, Versioned, VersionedInput};
use crate::kinds::{DEFAULT_REPLACEMENT, DEFAULT_WAYS, cache_kind, xbzrle_cache_kind};
use crate::status::xbzrle_status::{self, *};

/// Page-cache configuration. Fill it with `xbzrle_page_cache_config_default`, then change
/// fields. Enumerated fields are `uint32_t` holding the values of the named enums.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_page_cache_config {
    /// `sizeof(xbzrle_page_cache_config)` of the header the caller was compiled with, set by
    /// `xbzrle_page_cache_config_default`: later versions of the library may add fields at
    /// the end, and give them their defaults for a caller built with this one.
    pub struct_size: usize,
    /// Page size in bytes (1 ..= UINT32_MAX, and at most PTRDIFF_MAX; default 4096).
    pub page_size: usize,
    /// Page-data budget in bytes: one page ..= PTRDIFF_MAX (default 64 MiB, QEMU's). The
    /// slot count is the largest power of two of pages that fits (set-associative: of
    /// sets, times the ways). Page data is allocated at the first insertion.
    pub cache_bytes: u64,
    /// An `xbzrle_cache_kind` (default `XBZRLE_CACHE_DIRECT_MAPPED`, QEMU's cache).
    pub cache_kind: u32,
    /// Entries per set for `XBZRLE_CACHE_SET_ASSOCIATIVE` (at least 1; default 16; ignored
    /// otherwise).
    pub ways: u32,
    /// An `xbzrle_replacement` for `XBZRLE_CACHE_SET_ASSOCIATIVE` (default
    /// `XBZRLE_REPLACEMENT_FREQUENCY`; ignored otherwise).
    pub replacement: u32,
}

/// What a page cache holds (`xbzrle_page_cache_get_info`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xbzrle_page_cache_info {
    /// Bytes `xbzrle_page_cache_get_info` filled in: the smaller of the caller's
    /// `sizeof(xbzrle_page_cache_info)` and the library's.
    pub struct_size: usize,
    /// Page size in bytes.
    pub page_size: usize,
    /// The configured budget in bytes.
    pub cache_bytes: u64,
    /// Pages the cache can hold.
    pub capacity: usize,
    /// Pages cached now.
    pub pages: usize,
    /// Bytes of page data allocated (0 before the first insertion, then `capacity` pages).
    pub allocated_bytes: usize,
}

/// An opaque page cache with the semantics of QEMU's `migration/page_cache.h`: direct-mapped
/// (QEMU's decisions exactly) or set-associative. Create with `xbzrle_page_cache_new`,
/// destroy with `xbzrle_page_cache_free`.
///
/// The differences from QEMU 7.2's `page_cache.c`, none of which QEMU's `ram.c` can see:
/// the budget is rounded down to a power of two of pages (QEMU 7.2 refuses other sizes);
/// addresses must be multiples of the page size (QEMU's always are); an empty slot never
/// counts as holding address UINT64_MAX; `xbzrle_page_cache_get` gives NULL for a page that is
/// not cached (QEMU's `get_cached_data` returns the slot's data whichever page it holds, and
/// `ram.c` only asks for cached pages); and an age within 2 of UINT64_MAX protects its entry
/// for ever (QEMU's sum wraps around).
#[allow(non_camel_case_types)]
pub struct xbzrle_page_cache {
    cache: Box<dyn PageCache>,
    /// Set when a panic was caught during a call: the cache may be inconsistent.
    poisoned: bool,
}

// SAFETY: `#[repr(C)]` with `struct_size` first.
unsafe impl Versioned for xbzrle_page_cache_config {
    const FIRST_SIZE: usize = size_of::<Self>();
}

// SAFETY: every field is an integer (any byte pattern is valid).
unsafe impl VersionedInput for xbzrle_page_cache_config {}

// SAFETY: `#[repr(C)]` with `struct_size` first (only written, never read from C).
unsafe impl Versioned for xbzrle_page_cache_info {
    const FIRST_SIZE: usize = size_of::<Self>();
}

impl xbzrle_page_cache_config {
    /// The defaults (see `xbzrle_page_cache_config_default`): the sender's page size and
    /// budget, QEMU's.
    fn defaults() -> Self {
        let sender = SenderConfig::default();
        Self {
            struct_size: size_of::<Self>(),
            page_size: sender.page_size,
            cache_bytes: sender.cache_bytes,
            cache_kind: xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED as u32,
            ways: DEFAULT_WAYS,
            replacement: DEFAULT_REPLACEMENT as u32,
        }
    }
}

impl xbzrle_page_cache {
    fn new(c: &xbzrle_page_cache_config) -> Status<Self> {
        let kind = cache_kind(c.cache_kind, c.ways, c.replacement)?;
        // The sender's cache settings, checked by the sender's rules.
        SenderConfig::default()
            .with_page_size(c.page_size)
            .with_cache_bytes(c.cache_bytes)
            .with_cache(kind)
            .validate()?;
        let cache = kind.build(c.page_size, c.cache_bytes)?;
        Ok(Self {
            cache,
            poisoned: false,
        })
    }

    /// The page number of `addr`, which must be a multiple of the page size.
    fn page(&self, addr: u64) -> Status<u64> {
        let size = self.cache.page_size() as u64;
        if addr.is_multiple_of(size) {
            Ok(addr / size)
        } else {
            Err(XBZRLE_ERR_INVALID_ARGUMENT)
        }
    }
}

/// Runs `body` on the live cache behind `cache` behind the panic boundary: `XBZRLE_ERR_NULL`
/// for NULL, `XBZRLE_ERR_POISONED` after an earlier caught panic; a panic in `body` poisons
/// the cache and gives `XBZRLE_ERR_PANIC`.
///
/// # Safety
/// `cache` must be NULL or a live handle with no other call on it running.
unsafe fn with_cache(
    cache: *mut xbzrle_page_cache,
    body: impl FnOnce(&mut xbzrle_page_cache) -> Status,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `cache` is NULL or a live, unshared handle.
        let cache = unsafe { ffi::handle_mut(cache) }?;
        if cache.poisoned {
            return Err(XBZRLE_ERR_POISONED);
        }
        catch_unwind(AssertUnwindSafe(|| body(&mut *cache))).unwrap_or_else(|_| {
            cache.poisoned = true;
            Err(XBZRLE_ERR_PANIC)
        })
    })
}

/// Fills `*config` with the defaults: 4096-byte pages, a 64 MiB direct-mapped cache (QEMU's
/// setup); 16 ways and FREQUENCY replacement for when `cache_kind` is changed to
/// `XBZRLE_CACHE_SET_ASSOCIATIVE`. Errors: `XBZRLE_ERR_NULL`. Thread-safe.
///
/// # Safety
/// `config` must be NULL or valid for a write of one `xbzrle_page_cache_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_config_default(
    config: *mut xbzrle_page_cache_config,
) -> xbzrle_status {
    // SAFETY: the caller guarantees `config` is NULL or writable.
    ffi::call(|| unsafe { ffi::write(config, xbzrle_page_cache_config::defaults()) })
}

/// Creates an empty page cache (QEMU's `cache_init`). Its metadata is allocated now, its
/// page data at the first insertion. On `XBZRLE_OK`, `*out` is a new handle the caller owns
/// and must release with `xbzrle_page_cache_free`; on error `*out` is NULL. Errors:
/// `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`config->struct_size` below the first
/// version's size, page size 0 or above UINT32_MAX, a budget below one page or above
/// PTRDIFF_MAX, an unknown kind or replacement, 0 ways), `XBZRLE_ERR_NO_MEMORY`.
/// `config->struct_size` (set by `xbzrle_page_cache_config_default`) says how many bytes of
/// `*config` are read; fields beyond it take their defaults. Thread-safe.
///
/// # Safety
/// `config` must be NULL or readable for `config->struct_size` bytes; `out` NULL or valid
/// for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_new(
    config: *const xbzrle_page_cache_config,
    out: *mut *mut xbzrle_page_cache,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        unsafe { ffi::write(out, ptr::null_mut()) }?;
        // SAFETY: the caller guarantees `config` is NULL or readable for its `struct_size`.
        let config = unsafe { ffi::read_versioned(config, xbzrle_page_cache_config::defaults()) }?;
        let handle = Box::into_raw(Box::new(xbzrle_page_cache::new(&config)?));
        // SAFETY: as above.
        unsafe { ffi::write(out, handle) }
    })
}

/// Destroys a page cache and its page data (QEMU's `cache_fini`); every pointer from
/// `xbzrle_page_cache_get` or `xbzrle_page_cache_insert` becomes invalid. NULL does nothing.
///
/// # Safety
/// `cache` must be NULL or a handle from `xbzrle_page_cache_new` not yet freed, with no
/// other call on it running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_free(cache: *mut xbzrle_page_cache) {
    ffi::call(|| {
        if !cache.is_null() {
            // SAFETY: the caller guarantees `cache` came from `Box::into_raw` in
            // `xbzrle_page_cache_new` and is freed once, with no other use outstanding.
            drop(unsafe { Box::from_raw(cache) });
        }
        Ok(())
    });
}

/// Looks up the page at guest address `addr` (QEMU's `cache_is_cached`): `*cached` becomes 1
/// when it is cached, and then its age becomes `current_age`; 0 otherwise. Errors:
/// `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`addr` not a multiple of the page
/// size), `XBZRLE_ERR_POISONED`.
///
/// Not thread-safe: calls on one cache must not overlap (QEMU holds its XBZRLE lock).
///
/// # Safety
/// `cache` must be NULL or a live handle; `cached` NULL or valid for a write of one `int`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_is_cached(
    cache: *mut xbzrle_page_cache,
    addr: u64,
    current_age: u64,
    cached: *mut c_int,
) -> xbzrle_status {
    let lookup = |c: &mut xbzrle_page_cache| {
        ffi::non_null(cached)?;
        let hit = c.cache.hit(c.page(addr)?, current_age).is_some();
        // SAFETY: the caller guarantees `cached` is NULL or writable.
        unsafe { ffi::write(cached, c_int::from(hit)) }
    };
    // SAFETY: forwarded contract.
    unsafe { with_cache(cache, lookup) }
}

/// The cached copy of the page at guest address `addr` (QEMU's `get_cached_data`), without
/// touching its age: `*data` points to its page-size bytes, or is NULL when the page is not
/// cached. The caller may read and write the copy (QEMU refreshes it after encoding) until
/// the entry is replaced by another page or the cache is freed. Errors: `XBZRLE_ERR_NULL`,
/// `XBZRLE_ERR_INVALID_ARGUMENT` (`addr` not a multiple of the page size),
/// `XBZRLE_ERR_POISONED`.
///
/// Not thread-safe: calls on one cache must not overlap, nor any use of a copy with a call
/// that could replace it.
///
/// # Safety
/// `cache` must be NULL or a live handle; `data` NULL or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_get(
    cache: *mut xbzrle_page_cache,
    addr: u64,
    data: *mut *mut u8,
) -> xbzrle_status {
    let get = |c: &mut xbzrle_page_cache| {
        ffi::non_null(data)?;
        let page = c.page(addr)?;
        let copy = c
            .cache
            .get_mut(page)
            .map_or(ptr::null_mut(), <[u8]>::as_mut_ptr);
        // SAFETY: the caller guarantees `data` is NULL or writable.
        unsafe { ffi::write(data, copy) }
    };
    // SAFETY: forwarded contract.
    unsafe { with_cache(cache, get) }
}

/// Stores the `len` bytes at `page` (one page) as the copy of the page at guest address
/// `addr`, with age `current_age` (QEMU's `cache_insert`). A copy of the same address is
/// overwritten. Otherwise the direct-mapped cache refuses when the page's slot holds another
/// page whose age + 2 > `current_age` (QEMU's CACHED_PAGE_LIFETIME); the set-associative
/// cache refuses when its replacement rule finds no victim in the page's set. `*copy` is
/// the cached copy on success (as `xbzrle_page_cache_get` would return), NULL when the page
/// was not stored (also when its page data could not be allocated: the page is then simply
/// not cached, as in QEMU). Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`len`
/// is not the page size, `addr` not a multiple of it), `XBZRLE_ERR_POISONED`.
///
/// Not thread-safe: calls on one cache must not overlap.
///
/// `page` may be guest memory that vCPUs write during the call (QEMU passes guest RAM): each
/// byte is read once, and the cached copy holds what was read, which `*copy` then points to
/// (QEMU sends that copy).
///
/// # Safety
/// `cache` must be NULL or a live handle; `page` NULL or readable for `len` bytes and not
/// inside this cache's page data; `copy` NULL or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_insert(
    cache: *mut xbzrle_page_cache,
    addr: u64,
    page: *const u8,
    len: usize,
    current_age: u64,
    copy: *mut *mut u8,
) -> xbzrle_status {
    let insert = |c: &mut xbzrle_page_cache| {
        ffi::non_null(copy)?;
        // SAFETY: the caller guarantees `page` is NULL or readable for `len` bytes, not
        // inside the cache's page data (written below); vCPUs may write it meanwhile.
        let source = unsafe { ffi::borrow_live(page, len) }?;
        let number = c.page(addr)?;
        if len != c.cache.page_size() {
            return Err(XBZRLE_ERR_INVALID_ARGUMENT);
        }
        // The slot is claimed as zeros (in place, same replacement rule), then the guest
        // page is read into it once: `page` is never seen through a Rust reference.
        let slot = if c.cache.insert_zero(number, current_age) {
            c.cache.get_mut(number)
        } else {
            None
        };
        let cached = slot.map_or(ptr::null_mut(), |slot| {
            source.read(0, slot);
            slot.as_mut_ptr()
        });
        // SAFETY: the caller guarantees `copy` is NULL or writable.
        unsafe { ffi::write(copy, cached) }
    };
    // SAFETY: forwarded contract.
    unsafe { with_cache(cache, insert) }
}

/// Fills `*info` (`info_size` = `sizeof(xbzrle_page_cache_info)` of the caller's header)
/// with the cache's page size, budget, capacity, cached pages and allocated page data: as
/// many fields as both versions of the struct have, `info->struct_size` = the bytes filled
/// in. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`info_size` below the first
/// version's size), `XBZRLE_ERR_POISONED`. Not thread-safe (see
/// `xbzrle_page_cache_is_cached`).
///
/// # Safety
/// `cache` must be NULL or a live handle; `info` NULL or valid for writes of `info_size`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_page_cache_get_info(
    cache: *mut xbzrle_page_cache,
    info: *mut xbzrle_page_cache_info,
    info_size: usize,
) -> xbzrle_status {
    let describe = |c: &mut xbzrle_page_cache| {
        let cache = &c.cache;
        let value = xbzrle_page_cache_info {
            struct_size: size_of::<xbzrle_page_cache_info>(),
            page_size: cache.page_size(),
            cache_bytes: cache.configured_bytes(),
            capacity: cache.capacity(),
            pages: cache.len(),
            allocated_bytes: cache.allocated_bytes(),
        };
        // SAFETY: the caller guarantees `info` is NULL or writable for `info_size` bytes.
        unsafe { ffi::write_versioned(info, info_size, value) }
    };
    // SAFETY: forwarded contract.
    unsafe { with_cache(cache, describe) }
}

#[cfg(test)]
mod tests;
