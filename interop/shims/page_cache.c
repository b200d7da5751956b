/*
 * Replaces QEMU's migration/page_cache.c: QEMU 7.2's migration/page_cache.h on top of
 * libxbzrle's page cache (xbzrle_page_cache_*). QEMU's ram.c keeps its own logic (bulk stage,
 * zero pages, copies); only the cache underneath changes.
 *
 * Which cache (read at every cache_init, i.e. when a migration starts or the cache is resized):
 *   XBZRLE_PAGE_CACHE=direct-mapped    (default) QEMU's decisions exactly
 *   XBZRLE_PAGE_CACHE=set-associative  XBZRLE_PAGE_CACHE_WAYS ways (default 16) per set,
 *                                      the project's replacement (lifetime protection, then
 *                                      fewest decayed hits)
 * cache_init reports the choice on stderr. As in QEMU 7.2, the cache size must be at least one
 * page and a power of two of pages.
 *
 * XBZRLE_PAGE_CACHE_DUMP=FILE: cache_fini first writes every cached page below 4 GiB of
 * ram_addr space to FILE, as a little-endian u64 page number followed by the page (used by
 * interop/migrate.py to tell, for a page that differs after a migration, whether the
 * destination holds what the source's cache says was sent).
 *
 * Part of the xbzrle project (not QEMU code). SPDX-License-Identifier: MIT OR Apache-2.0
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qmp/qerror.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/host-utils.h"
#include "migration/page_cache.h"
#include "trace/trace-migration.h"
#include <xbzrle.h>

struct PageCache {
    xbzrle_page_cache *cache;
    size_t page_size;
};

/* Fills the cache kind and ways from the environment. */
static bool kind_from_env(xbzrle_page_cache_config *config, Error **errp)
{
    const char *kind = getenv("XBZRLE_PAGE_CACHE");
    const char *ways = getenv("XBZRLE_PAGE_CACHE_WAYS");
    unsigned int value;

    if (!kind || !strcmp(kind, "direct-mapped")) {
        config->cache_kind = XBZRLE_CACHE_DIRECT_MAPPED;
    } else if (!strcmp(kind, "set-associative")) {
        config->cache_kind = XBZRLE_CACHE_SET_ASSOCIATIVE;
    } else {
        error_setg(errp, "XBZRLE_PAGE_CACHE=%s: expected direct-mapped or set-associative",
                   kind);
        return false;
    }
    if (ways) {
        if (qemu_strtoui(ways, NULL, 10, &value) < 0 || value == 0) {
            error_setg(errp, "XBZRLE_PAGE_CACHE_WAYS=%s: expected a positive number", ways);
            return false;
        }
        config->ways = value;
    }
    return true;
}

PageCache *cache_init(uint64_t new_size, size_t page_size, Error **errp)
{
    xbzrle_page_cache_config config;
    xbzrle_page_cache_info info;
    xbzrle_status status;
    PageCache *cache;

    if (new_size < page_size) {
        error_setg(errp, QERR_INVALID_PARAMETER_VALUE, "cache size", "at least one page");
        return NULL;
    }
    if (!is_power_of_2(new_size / page_size)) {
        error_setg(errp, QERR_INVALID_PARAMETER_VALUE, "cache size",
                   "a power of two of pages");
        return NULL;
    }
    xbzrle_page_cache_config_default(&config);
    config.page_size = page_size;
    config.cache_bytes = new_size;
    if (!kind_from_env(&config, errp)) {
        return NULL;
    }
    cache = g_try_new0(PageCache, 1);
    if (!cache) {
        error_setg(errp, "Failed to allocate cache");
        return NULL;
    }
    cache->page_size = page_size;
    status = xbzrle_page_cache_new(&config, &cache->cache);
    if (status != XBZRLE_OK) {
        error_setg(errp, "Failed to create the page cache: %s", xbzrle_strerror(status));
        g_free(cache);
        return NULL;
    }
    xbzrle_page_cache_get_info(cache->cache, &info, sizeof(xbzrle_page_cache_info));
    trace_migration_pagecache_init(info.capacity);
    if (config.cache_kind == XBZRLE_CACHE_DIRECT_MAPPED) {
        info_report("xbzrle page cache: direct-mapped, %" PRIu64 " bytes, %zu pages",
                    info.cache_bytes, info.capacity);
    } else {
        info_report("xbzrle page cache: set-associative, %u ways, %" PRIu64 " bytes, %zu pages",
                    config.ways, info.cache_bytes, info.capacity);
    }
    return cache;
}

/* Writes the cached pages (see XBZRLE_PAGE_CACHE_DUMP above). */
static void dump(const PageCache *cache, const char *path)
{
    FILE *f = fopen(path, "wb");
    uint64_t addr;

    if (!f) {
        error_report("xbzrle page cache: cannot write %s: %s", path, strerror(errno));
        return;
    }
    for (addr = 0; addr < (UINT64_C(1) << 32); addr += cache->page_size) {
        uint8_t *data = NULL;
        uint64_t page = cpu_to_le64(addr / cache->page_size);

        if (xbzrle_page_cache_get(cache->cache, addr, &data) == XBZRLE_OK && data) {
            fwrite(&page, sizeof(page), 1, f);
            fwrite(data, 1, cache->page_size, f);
        }
    }
    fclose(f);
}

void cache_fini(PageCache *cache)
{
    const char *path = getenv("XBZRLE_PAGE_CACHE_DUMP");

    g_assert(cache);
    if (path) {
        dump(cache, path);
    }
    xbzrle_page_cache_free(cache->cache);
    g_free(cache);
}

/* A failed call breaks the cache's contract (QEMU passes page-aligned addresses and pages):
 * report it once and treat the page as not cached, so it goes raw. */
static bool ok(xbzrle_status status, const char *what)
{
    if (status != XBZRLE_OK) {
        error_report_once("xbzrle page cache: %s failed: %s", what, xbzrle_strerror(status));
        return false;
    }
    return true;
}

bool cache_is_cached(const PageCache *cache, uint64_t addr, uint64_t current_age)
{
    int cached = 0;

    return ok(xbzrle_page_cache_is_cached(cache->cache, addr, current_age, &cached),
              "lookup") && cached;
}

uint8_t *get_cached_data(const PageCache *cache, uint64_t addr)
{
    uint8_t *data = NULL;

    return ok(xbzrle_page_cache_get(cache->cache, addr, &data), "get") ? data : NULL;
}

int cache_insert(PageCache *cache, uint64_t addr, const uint8_t *pdata, uint64_t current_age)
{
    uint8_t *copy = NULL;

    if (!ok(xbzrle_page_cache_insert(cache->cache, addr, pdata, cache->page_size,
                                     current_age, &copy), "insert")) {
        return -1;
    }
    if (!copy) {
        return -1;
    }
    return 0;
}
