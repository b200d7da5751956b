/*
 * The shims against QEMU's own code, in one process and without building the emulator
 * (interop/qemu-build.sh --check, run by CI). Linked with the shims, libxbzrle.a, QEMU's
 * util library and QEMU's migration/page_cache.c and xbzrle.c compiled with their functions
 * renamed qemu_*:
 *  - the page-cache shim in direct-mapped mode takes QEMU's decisions (lookups, insertions,
 *    refusals, cache_init errors) and holds the same page contents, on random traces;
 *  - in set-associative mode every hit returns the content last stored for the address;
 *  - libxbzrle's xbzrle_encode_buffer writes QEMU's delta wherever QEMU's succeeds, and both
 *    decoders rebuild the same page from it;
 *  - and it prints (asserts nothing about) the time per page of both encoders.
 *
 * Part of the xbzrle project (not QEMU code). SPDX-License-Identifier: MIT OR Apache-2.0
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "migration/page_cache.h"
#include "migration/xbzrle.h"

PageCache *qemu_cache_init(uint64_t new_size, size_t page_size, Error **errp);
void qemu_cache_fini(PageCache *cache);
bool qemu_cache_is_cached(const PageCache *cache, uint64_t addr, uint64_t current_age);
uint8_t *qemu_get_cached_data(const PageCache *cache, uint64_t addr);
int qemu_cache_insert(PageCache *cache, uint64_t addr, const uint8_t *pdata,
                      uint64_t current_age);
int qemu_xbzrle_encode_buffer(uint8_t *old_buf, uint8_t *new_buf, int slen, uint8_t *dst,
                              int dlen);
int qemu_xbzrle_decode_buffer(uint8_t *src, int slen, uint8_t *dst, int dlen);

#define PAGE 4096
#define ADDRESSES 40 /* pages 0..39: many collisions in an 8-slot cache */

static unsigned checks, failures;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        checks++;                                                         \
        if (!(cond) && failures++ < 20) {                                 \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__,        \
                    __LINE__, #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t below(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state % n;
}

static void cache_init_errors(void)
{
    static const uint64_t sizes[] = { 0, PAGE - 1, 3 * PAGE, 100 * PAGE };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sizes); i++) {
        Error *ours = NULL, *theirs = NULL;
        PageCache *a = cache_init(sizes[i], PAGE, &ours);
        PageCache *b = qemu_cache_init(sizes[i], PAGE, &theirs);

        CHECK(!a && !b && ours && theirs, "cache_init(%" PRIu64 ") must fail in both",
              sizes[i]);
        error_free(ours);
        error_free(theirs);
    }
}

/* The ram.c call pattern over random pages and ages: lookup, then insert on a miss; a zero
 * page is a bare insert; a hit refreshes the copy. Returns the hits of the shim. */
static unsigned direct_mapped_trace(uint64_t cache_pages, unsigned calls)
{
    PageCache *ours = cache_init(cache_pages * PAGE, PAGE, &error_abort);
    PageCache *qemu = qemu_cache_init(cache_pages * PAGE, PAGE, &error_abort);
    uint8_t page[PAGE];
    uint64_t age = 1;
    unsigned i, hits = 0;

    for (i = 0; i < calls; i++) {
        uint64_t addr = below(ADDRESSES) * PAGE;
        bool a, b;

        memset(page, (int)(i % 251) + 1, PAGE);
        if (below(10) == 0) {
            age += 1 + below(3);
        }
        if (below(8) == 0) {
            CHECK(cache_insert(ours, addr, page, age) == qemu_cache_insert(qemu, addr, page, age),
                  "zero-page insert %u", i);
            continue;
        }
        a = cache_is_cached(ours, addr, age);
        b = qemu_cache_is_cached(qemu, addr, age);
        CHECK(a == b, "lookup %u of %" PRIx64 ": shim %d, QEMU %d", i, addr, a, b);
        if (a && b) {
            uint8_t *x = get_cached_data(ours, addr), *y = qemu_get_cached_data(qemu, addr);

            hits++;
            CHECK(x && y && !memcmp(x, y, PAGE), "copies differ at call %u", i);
            memcpy(x, page, PAGE);
            memcpy(y, page, PAGE);
        } else if (!a && !b) {
            int r = cache_insert(ours, addr, page, age);

            CHECK(r == qemu_cache_insert(qemu, addr, page, age), "insert %u", i);
            if (r == 0) {
                CHECK(!memcmp(get_cached_data(ours, addr), page, PAGE), "stored copy %u", i);
            }
        }
    }
    cache_fini(ours);
    qemu_cache_fini(qemu);
    return hits;
}

/* Set-associative mode: a hit always returns what was last stored for the address. */
static unsigned set_associative_trace(uint64_t cache_pages, unsigned calls)
{
    static uint8_t stored[ADDRESSES];
    PageCache *cache = cache_init(cache_pages * PAGE, PAGE, &error_abort);
    uint8_t page[PAGE];
    uint64_t age = 1;
    unsigned i, hits = 0;

    for (i = 0; i < calls; i++) {
        uint64_t n = below(ADDRESSES);
        uint8_t fill = (uint8_t)(i % 251) + 1;

        if (below(10) == 0) {
            age += 1 + below(3);
        }
        if (cache_is_cached(cache, n * PAGE, age)) {
            uint8_t *copy = get_cached_data(cache, n * PAGE);

            hits++;
            CHECK(copy && copy[0] == stored[n] && copy[PAGE - 1] == stored[n],
                  "page %" PRIu64 " holds %d, stored %d", n, copy ? copy[0] : -1, stored[n]);
            memset(copy, fill, PAGE);
            stored[n] = fill;
        } else {
            memset(page, fill, PAGE);
            if (cache_insert(cache, n * PAGE, page, age) == 0) {
                stored[n] = fill;
            }
        }
    }
    cache_fini(cache);
    return hits;
}

/* Random page pairs from identical to fully different. */
static void codec(unsigned pairs)
{
    static uint8_t old_page[PAGE] QEMU_ALIGNED(64), new_page[PAGE] QEMU_ALIGNED(64);
    static uint8_t ours[PAGE], theirs[PAGE], a[PAGE], b[PAGE];
    unsigned i, j;

    for (i = 0; i < pairs; i++) {
        unsigned changes = (unsigned)below(i % 4 == 0 ? 4 : 400);
        int n, m;

        for (j = 0; j < PAGE; j++) {
            old_page[j] = (uint8_t)below(4);
        }
        memcpy(new_page, old_page, PAGE);
        for (j = 0; j < changes * (i % 7 == 0 ? 16 : 1); j++) {
            new_page[below(PAGE)] ^= (uint8_t)(1 + below(255));
        }
        n = xbzrle_encode_buffer(old_page, new_page, PAGE, ours, PAGE);
        m = qemu_xbzrle_encode_buffer(old_page, new_page, PAGE, theirs, PAGE);
        if (m >= 0) {
            CHECK(n == m && !memcmp(ours, theirs, (size_t)m), "pair %u: %d vs QEMU's %d", i, n, m);
        } else {
            /* QEMU's overflow check is 2 bytes stricter: ours may still fit. */
            CHECK(n == -1 || n > PAGE - 8, "pair %u: %d where QEMU overflows", i, n);
        }
        if (n > 0) {
            memcpy(a, old_page, PAGE);
            memcpy(b, old_page, PAGE);
            CHECK(xbzrle_decode_buffer(ours, n, a, PAGE) >= 0 &&
                  qemu_xbzrle_decode_buffer(ours, n, b, PAGE) >= 0 &&
                  !memcmp(a, new_page, PAGE) && !memcmp(b, new_page, PAGE),
                  "pair %u: decoding", i);
        }
    }
}

static double seconds(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Nanoseconds per call of an encoder on one page pair, best of 5 rounds. */
static double encode_ns(int (*encode)(uint8_t *, uint8_t *, int, uint8_t *, int),
                        uint8_t *old_page, uint8_t *new_page)
{
    static uint8_t out[PAGE];
    double best = 1e9;
    int round, i, sink = 0;

    for (round = 0; round < 5; round++) {
        double t = seconds();

        for (i = 0; i < 20000; i++) {
            sink += encode(old_page, new_page, PAGE, out, PAGE);
        }
        t = (seconds() - t) * 1e9 / 20000;
        best = t < best ? t : best;
    }
    CHECK(sink != 0, "the encoder produced nothing");
    return best;
}

/* Prints, does not assert: QEMU's encoder (as compiled by QEMU's build) against libxbzrle's
 * on the page changes of the two guests. */
static void codec_speed(void)
{
    static uint8_t old_page[PAGE] QEMU_ALIGNED(64), new_page[PAGE] QEMU_ALIGNED(64);
    static const char *names[] = { "dirty1024 (4 bytes)", "kvstore-like (6 runs of 8)",
                                   "dense (1 in 4 bytes)" };
    int kind, j;

    for (kind = 0; kind < 3; kind++) {
        for (j = 0; j < PAGE; j++) {
            old_page[j] = (uint8_t)below(256);
        }
        memcpy(new_page, old_page, PAGE);
        for (j = 0; j < PAGE; j++) {
            bool change = kind == 0 ? j % 1024 == 0
                        : kind == 1 ? (j / 8) % 85 == 3
                                    : j % 4 == 0;
            new_page[j] += change;
        }
        printf("encode %-27s QEMU 7.2 %7.1f ns/page, libxbzrle %7.1f ns/page\n", names[kind],
               encode_ns(qemu_xbzrle_encode_buffer, old_page, new_page),
               encode_ns(xbzrle_encode_buffer, old_page, new_page));
    }
}

int main(void)
{
    unsigned direct, assoc;

    setenv("XBZRLE_PAGE_CACHE", "direct-mapped", 1);
    cache_init_errors();
    direct = direct_mapped_trace(8, 200000);
    direct_mapped_trace(64, 100000);
    setenv("XBZRLE_PAGE_CACHE", "set-associative", 1);
    setenv("XBZRLE_PAGE_CACHE_WAYS", "4", 1);
    assoc = set_associative_trace(8, 200000);
    CHECK(direct > 10000 && assoc > 10000, "hits: direct-mapped %u, set-associative %u", direct,
          assoc);
    codec(20000);
    codec_speed();
    printf("shim check against QEMU's page_cache.c and xbzrle.c: %u checks, %u failed "
           "(hits: direct-mapped %u, set-associative %u)\n", checks, failures, direct, assoc);
    return failures ? 1 : 0;
}
