/*
 * Records the decisions of QEMU's own page cache: linked together with QEMU's
 * migration/page_cache.c, compiled with its five functions renamed qemu_<name> (see
 * interop/qemu-build.sh --trace), this file defines page_cache.h's functions as calls to them
 * that also write every lookup and insertion, with QEMU's answer, to the file named by
 * XBZRLE_PAGE_CACHE_TRACE (nothing is written when it is unset). The lines (read by
 * c-api/src/page_cache/tests.rs):
 *   s BYTES     a cache of BYTES bytes was created
 *   a AGE       the current age changed to AGE (decimal)
 *   c PAGE R    cache_is_cached(PAGE * page size, AGE) returned R (1 or 0); PAGE in hex
 *   i PAGE R    cache_insert(PAGE * page size, ..., AGE) returned R (0 or -1)
 * Only the first cache of a process is traced, until it is freed: a resize (QEMU creates the
 * new cache, copies the old one into it and frees the old one) ends the trace, whose replay
 * does not model the copy.
 *
 * Part of the xbzrle project (not QEMU code). SPDX-License-Identifier: MIT OR Apache-2.0
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "migration/page_cache.h"

PageCache *qemu_cache_init(uint64_t new_size, size_t page_size, Error **errp);
void qemu_cache_fini(PageCache *cache);
bool qemu_cache_is_cached(const PageCache *cache, uint64_t addr, uint64_t current_age);
uint8_t *qemu_get_cached_data(const PageCache *cache, uint64_t addr);
int qemu_cache_insert(PageCache *cache, uint64_t addr, const uint8_t *pdata,
                      uint64_t current_age);

static FILE *trace_file;
static const PageCache *traced;
static size_t trace_page_size;
static uint64_t trace_age = UINT64_MAX;

static void trace_call(const PageCache *cache, char op, uint64_t addr, uint64_t age, int result)
{
    if (!trace_file || cache != traced) {
        return;
    }
    if (age != trace_age) {
        fprintf(trace_file, "a %" PRIu64 "\n", age);
        trace_age = age;
    }
    fprintf(trace_file, "%c %" PRIx64 " %d\n", op, addr / trace_page_size, result);
}

PageCache *cache_init(uint64_t new_size, size_t page_size, Error **errp)
{
    const char *path = getenv("XBZRLE_PAGE_CACHE_TRACE");
    PageCache *cache = qemu_cache_init(new_size, page_size, errp);

    if (cache && path && !traced) {
        trace_file = fopen(path, "w");
        traced = cache;
        trace_page_size = page_size;
        if (trace_file) {
            fprintf(trace_file, "s %" PRIu64 "\n", new_size);
        }
    }
    return cache;
}

void cache_fini(PageCache *cache)
{
    if (cache == traced && trace_file) {
        fclose(trace_file);
        trace_file = NULL;
    }
    qemu_cache_fini(cache);
}

bool cache_is_cached(const PageCache *cache, uint64_t addr, uint64_t current_age)
{
    bool cached = qemu_cache_is_cached(cache, addr, current_age);

    trace_call(cache, 'c', addr, current_age, cached);
    return cached;
}

uint8_t *get_cached_data(const PageCache *cache, uint64_t addr)
{
    return qemu_get_cached_data(cache, addr);
}

int cache_insert(PageCache *cache, uint64_t addr, const uint8_t *pdata, uint64_t current_age)
{
    int result = qemu_cache_insert(cache, addr, pdata, current_age);

    trace_call(cache, 'i', addr, current_age, result);
    return result;
}
