/* The sender and receiver through the C ABI: configuration, QEMU's decisions step by step
 * with the exact record bytes, statistics, error paths, hostile records, and whole
 * migrations under several cache and admission configurations. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "xbzrle.h"
#include "check.h"

#define PAGE 4096
#define HDR 9 /* record header: flag + big-endian u64 page number */
#define STATS sizeof(xbzrle_sender_stats) /* the stats size every call passes */

static void fill_random(uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = (uint8_t)(rng_next() | 1); /* never an all-zero page */
    }
}

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void config_errors(void) {
    xbzrle_sender_config c, bad;
    xbzrle_sender *s = (xbzrle_sender *)&c; /* must be overwritten with NULL on error */
    xbzrle_receiver *r = (xbzrle_receiver *)&c;

    CHECK(xbzrle_sender_config_default(NULL) == XBZRLE_ERR_NULL, "default(NULL)");
    CHECK(xbzrle_sender_config_default(&c) == XBZRLE_OK, "default");
    CHECK(c.struct_size == sizeof c && c.page_size == 4096 && c.cache_bytes == 64u << 20 &&
              c.cache_kind == XBZRLE_CACHE_DIRECT_MAPPED &&
              c.admission == XBZRLE_ADMIT_AFTER_BULK && c.shards == 1,
          "QEMU defaults");
    CHECK(xbzrle_sender_new(NULL, &s) == XBZRLE_ERR_NULL && s == NULL, "new(NULL config)");
    CHECK(xbzrle_sender_new(&c, NULL) == XBZRLE_ERR_NULL, "new(NULL out)");

#define BAD(field, value)                                                                  \
    do {                                                                                   \
        bad = c;                                                                           \
        bad.field = value;                                                                 \
        s = (xbzrle_sender *)&c;                                                           \
        CHECK(xbzrle_sender_new(&bad, &s) == XBZRLE_ERR_INVALID_ARGUMENT && s == NULL,     \
              "config " #field " = " #value " accepted");                                 \
    } while (0)
    BAD(struct_size, 0); /* not filled in by xbzrle_sender_config_default */
    BAD(struct_size, sizeof c - 1);
    BAD(page_size, 0);
    BAD(page_size, (size_t)UINT32_MAX + 1);
    BAD(cache_bytes, 4095);
    BAD(shards, 0);
    BAD(shards, 3);
    BAD(cache_kind, 7);
    BAD(admission, 9);
    c.cache_kind = XBZRLE_CACHE_SET_ASSOCIATIVE;
    BAD(ways, 0);
    BAD(replacement, 3);
    c.admission = XBZRLE_ADMIT_FREQUENCY;
    BAD(admission_min_passes, 0);
    BAD(admission_min_passes, 256);
    BAD(admission_counters, 0);
#undef BAD

    CHECK(xbzrle_receiver_new(0, &r) == XBZRLE_ERR_INVALID_ARGUMENT && r == NULL, "rx page 0");
    CHECK(xbzrle_receiver_new(PAGE, NULL) == XBZRLE_ERR_NULL, "rx NULL out");

    /* Freeing NULL does nothing; every call on a NULL handle is an error. */
    xbzrle_sender_free(NULL);
    xbzrle_receiver_free(NULL);
    CHECK(xbzrle_sender_start_pass(NULL) == XBZRLE_ERR_NULL, "start_pass(NULL)");
    CHECK(xbzrle_sender_start_last_stage(NULL) == XBZRLE_ERR_NULL, "last_stage(NULL)");
    CHECK(xbzrle_sender_end_bulk_stage(NULL) == XBZRLE_ERR_NULL, "end_bulk_stage(NULL)");
    {
        uint8_t out[XBZRLE_ZERO_RECORD_LEN];
        xbzrle_sent sent;
        CHECK(xbzrle_sender_save_zero_page(NULL, 0, out, sizeof out, &sent) == XBZRLE_ERR_NULL,
              "save_zero_page(NULL)");
        CHECK(xbzrle_sender_save_zero_page(NULL, 0, NULL, 0, NULL) == XBZRLE_ERR_NULL,
              "save_zero_page(NULL, NULL, NULL)");
    }
    CHECK(xbzrle_sender_resize_cache(NULL, 1 << 20) == XBZRLE_ERR_NULL, "resize(NULL)");
    CHECK(xbzrle_sender_max_record_len(NULL) == 0, "max_record_len(NULL)");
    CHECK(xbzrle_sender_get_stats(NULL, NULL, STATS) == XBZRLE_ERR_NULL,
          "stats(NULL)");
    CHECK(xbzrle_sender_estimate_bytes(NULL, 1, NULL) == XBZRLE_ERR_NULL, "estimate(NULL)");
    CHECK(xbzrle_receiver_peek(NULL, (const uint8_t *)"x", 1, NULL, NULL) == XBZRLE_ERR_NULL,
          "peek(NULL)");
}

/* Sizes no machine can provide or no address can hold: an error code, never a crash (a
 * failed allocation in Rust aborts the process, which no panic boundary catches). */
#define HUGE_CACHE ((uint64_t)1 << 60) /* beyond any address space */
static void huge_sizes(void) {
    xbzrle_sender_config c, bad;
    xbzrle_sender *s = NULL;
    xbzrle_receiver *r = NULL;
    xbzrle_sender_stats before, after;
    xbzrle_sent sent;
    uint8_t page[PAGE];
    uint8_t *out;
    size_t cap;
    int kind, shards;
    const char *text;

    text = xbzrle_strerror(XBZRLE_ERR_NO_MEMORY);
    CHECK(text != NULL && strcmp(text, xbzrle_strerror(XBZRLE_ERR_INVALID_ARGUMENT)) != 0 &&
              strcmp(text, xbzrle_strerror(12345)) != 0,
          "NO_MEMORY has its own description");

#define EXPECT(status, field, value)                                                       \
    do {                                                                                   \
        bad = c;                                                                           \
        bad.field = value;                                                                 \
        s = (xbzrle_sender *)&c;                                                           \
        CHECK(xbzrle_sender_new(&bad, &s) == (status) && s == NULL,                        \
              "config " #field " = " #value " (kind %d, shards %zu): not " #status,         \
              (int)c.cache_kind, c.shards);                                                \
    } while (0)
    for (kind = 0; kind < 2; kind++) {
        for (shards = 1; shards <= 4; shards *= 4) {
            xbzrle_sender_config_default(&c);
            c.cache_kind = (uint32_t)kind; /* direct-mapped, then 16-way set-associative */
            c.shards = (size_t)shards;
            /* Valid but impossible: no memory. */
            EXPECT(XBZRLE_ERR_NO_MEMORY, cache_bytes, HUGE_CACHE);
            EXPECT(XBZRLE_ERR_NO_MEMORY, cache_bytes, (uint64_t)PTRDIFF_MAX);
            /* Not representable as an allocation: invalid. */
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, cache_bytes, (uint64_t)PTRDIFF_MAX + 1);
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, cache_bytes, UINT64_MAX);
            /* Huge pages: invalid above UINT32_MAX; 4 GiB pages with a 2^60 cache: no
             * memory. */
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, page_size, SIZE_MAX);
            bad = c;
            bad.page_size = UINT32_MAX;
            bad.cache_bytes = HUGE_CACHE;
            s = (xbzrle_sender *)&c;
            CHECK(xbzrle_sender_new(&bad, &s) == XBZRLE_ERR_NO_MEMORY && s == NULL,
                  "4 GiB pages, 2^60 cache (kind %d)", kind);
            /* Shard counts. */
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, shards, SIZE_MAX);
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, shards, (SIZE_MAX >> 1) + 1);
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, shards, (size_t)1 << 17);
            /* Frequency counters. */
            c.admission = XBZRLE_ADMIT_FREQUENCY;
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, admission_counters, SIZE_MAX);
            EXPECT(XBZRLE_ERR_INVALID_ARGUMENT, admission_counters, (size_t)PTRDIFF_MAX + 1);
#if SIZE_MAX > 0xffffffffu
            EXPECT(XBZRLE_ERR_NO_MEMORY, admission_counters, (size_t)1 << 60);
            EXPECT(XBZRLE_ERR_NO_MEMORY, admission_counters, (size_t)PTRDIFF_MAX);
#endif
        }
    }
#undef EXPECT

    /* The receiver allocates nothing per page: the largest page size is fine. */
    r = (xbzrle_receiver *)&c;
    CHECK(xbzrle_receiver_new(SIZE_MAX, &r) == XBZRLE_ERR_INVALID_ARGUMENT && r == NULL,
          "rx page SIZE_MAX");
    r = (xbzrle_receiver *)&c;
    CHECK(xbzrle_receiver_new((size_t)UINT32_MAX + 1, &r) == XBZRLE_ERR_INVALID_ARGUMENT &&
              r == NULL,
          "rx page UINT32_MAX + 1");
    CHECK(xbzrle_receiver_new(UINT32_MAX, &r) == XBZRLE_OK && r != NULL, "rx page UINT32_MAX");
    xbzrle_receiver_free(r);

    /* Resize to huge: an error, and the cache keeps its budget and its pages. */
    xbzrle_sender_config_default(&c);
    c.cache_bytes = 16 * PAGE;
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK && s != NULL, "sender_new");
    cap = xbzrle_sender_max_record_len(s);
    out = xmalloc(cap);
    fill_random(page, PAGE);
    xbzrle_sender_start_pass(s);
    xbzrle_sender_start_pass(s);
    CHECK(xbzrle_sender_save_page(s, 3, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.raw_reason == XBZRLE_RAW_MISS,
          "miss inserts");
    CHECK(xbzrle_sender_get_stats(s, &before, STATS) == XBZRLE_OK && before.cache_pages == 1 &&
              before.cache_allocated_bytes == 16 * PAGE,
          "cache allocated at the first insertion");
    CHECK(xbzrle_sender_resize_cache(s, HUGE_CACHE) == XBZRLE_ERR_NO_MEMORY, "resize 2^60");
    CHECK(xbzrle_sender_resize_cache(s, (uint64_t)PTRDIFF_MAX) == XBZRLE_ERR_NO_MEMORY,
          "resize PTRDIFF_MAX");
    CHECK(xbzrle_sender_resize_cache(s, UINT64_MAX) == XBZRLE_ERR_INVALID_ARGUMENT,
          "resize UINT64_MAX");
    CHECK(xbzrle_sender_get_stats(s, &after, STATS) == XBZRLE_OK &&
              after.cache_size == before.cache_size &&
              after.cache_capacity == before.cache_capacity && after.cache_pages == 1 &&
              after.cache_allocated_bytes == before.cache_allocated_bytes,
          "failed resize changed the cache: size %llu capacity %zu pages %zu",
          (unsigned long long)after.cache_size, after.cache_capacity, after.cache_pages);
    page[100] ^= 0x5a;
    CHECK(xbzrle_sender_save_page(s, 3, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_XBZRLE,
          "still cached after the failed resize: action %d", sent.action);
    CHECK(xbzrle_sender_resize_cache(s, 64 * PAGE) == XBZRLE_OK, "resize that fits");
    free(out);
    xbzrle_sender_free(s);
}

/* QEMU's decisions on a 4-page direct-mapped cache, with records checked byte by byte
 * against the wire layout (flag, big-endian page number, body). */
static void decisions(void) {
    xbzrle_sender_config c;
    xbzrle_sender *s = NULL;
    xbzrle_receiver *r = NULL;
    xbzrle_sent sent;
    xbzrle_sender_stats st;
    uint8_t page[PAGE], zero[PAGE], dest[PAGE], before[PAGE];
    uint8_t *out;
    size_t cap, consumed = 0;
    uint64_t number = 0, estimate = 0;

    xbzrle_sender_config_default(&c);
    c.cache_bytes = 4 * PAGE;
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK && s != NULL, "sender_new");
    CHECK(xbzrle_receiver_new(PAGE, &r) == XBZRLE_OK && r != NULL, "receiver_new");
    cap = xbzrle_sender_max_record_len(s);
    CHECK(cap >= HDR + PAGE, "max_record_len %zu", cap);
    out = xmalloc(cap);
    fill_random(page, PAGE);
    memset(zero, 0, PAGE);

    /* Bulk stage: raw, and nothing is inserted. */
    CHECK(xbzrle_sender_start_pass(s) == XBZRLE_OK, "pass 1");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, &sent) == XBZRLE_OK, "save");
    CHECK(sent.action == XBZRLE_ACTION_RAW && sent.raw_reason == XBZRLE_RAW_BULK &&
              sent.record_len == HDR + PAGE,
          "bulk page: action %d reason %d len %zu", sent.action, sent.raw_reason,
          sent.record_len);
    CHECK(out[0] == 0x08 && be64(out + 1) == 7 && memcmp(out + HDR, page, PAGE) == 0,
          "raw record bytes");
    CHECK(xbzrle_receiver_peek(r, out, sent.record_len, &number, &consumed) == XBZRLE_OK &&
              number == 7 && consumed == sent.record_len,
          "peek raw record");
    memset(dest, 0x33, PAGE);
    CHECK(xbzrle_receiver_apply_page(r, out, sent.record_len, dest, PAGE, &consumed) ==
                  XBZRLE_OK &&
              memcmp(dest, page, PAGE) == 0,
          "apply raw record");
    CHECK(xbzrle_sender_save_page(s, 8, zero, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_ZERO && sent.record_len == HDR + 1 &&
              out[0] == 0x02 && be64(out + 1) == 8 && out[HDR] == 0,
          "zero page record");
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK && st.stage == XBZRLE_STAGE_BULK &&
              st.raw_pages == 1 && st.zero_pages == 1 && st.cache_pages == 0 &&
              st.wire_bytes == HDR + PAGE + HDR + 1,
          "bulk stats: stage %d raw %llu zero %llu cached %zu", st.stage,
          (unsigned long long)st.raw_pages, (unsigned long long)st.zero_pages, st.cache_pages);

    /* Second pass: a miss (inserted, raw), then a hit that is unchanged (skipped). */
    CHECK(xbzrle_sender_start_pass(s) == XBZRLE_OK, "pass 2");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_RAW && sent.raw_reason == XBZRLE_RAW_MISS,
          "miss");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_SKIPPED && sent.record_len == 0,
          "unchanged hit is skipped");

    /* One changed byte at offset 5: delta 05 01 xx in an XBZRLE payload 01 00 03. */
    page[5] ^= 0xff;
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_XBZRLE && sent.record_len == HDR + 3 + 3,
          "xbzrle record: action %d len %zu", sent.action, sent.record_len);
    CHECK(out[0] == 0x40 && be64(out + 1) == 7 && out[HDR] == 0x01 && out[HDR + 1] == 0 &&
              out[HDR + 2] == 3 && out[HDR + 3] == 5 && out[HDR + 4] == 1 &&
              out[HDR + 5] == page[5],
          "xbzrle record bytes");
    CHECK(xbzrle_receiver_apply_page(r, out, sent.record_len, dest, PAGE, NULL) == XBZRLE_OK &&
              memcmp(dest, page, PAGE) == 0,
          "apply xbzrle record");

    /* Every byte changed: the delta does not fit in a page, the page goes raw. */
    fill_random(page, PAGE);
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_RAW && sent.raw_reason == XBZRLE_RAW_OVERFLOW,
          "overflow goes raw");
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK &&
              st.stage == XBZRLE_STAGE_ITERATIVE &&
              st.pages == 3 && st.cache_miss == 1 && st.overflow == 1 &&
              st.xbzrle_pages == 1 && st.skipped_pages == 1 && st.cache_pages == 1 &&
              st.bytes == 3 + 3 + PAGE && st.generation == 2 && st.cache_size == 4 * PAGE,
          "iterative stats: hits %llu misses %llu overflow %llu bytes %llu",
          (unsigned long long)st.pages, (unsigned long long)st.cache_miss,
          (unsigned long long)st.overflow, (unsigned long long)st.bytes);

    /* Save-page errors change nothing. */
    CHECK(xbzrle_sender_save_page(NULL, 7, page, PAGE, out, cap, &sent) == XBZRLE_ERR_NULL,
          "NULL sender");
    CHECK(xbzrle_sender_save_page(s, 7, NULL, PAGE, out, cap, &sent) == XBZRLE_ERR_NULL,
          "NULL data");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, NULL, cap, &sent) == XBZRLE_ERR_NULL,
          "NULL out");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap, NULL) == XBZRLE_ERR_NULL,
          "NULL sent");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE - 1, out, cap, &sent) ==
              XBZRLE_ERR_INVALID_ARGUMENT,
          "short page");
    CHECK(xbzrle_sender_save_page(s, 7, page, PAGE, out, cap - 1, &sent) == XBZRLE_ERR_OVERFLOW,
          "small output");
    CHECK(xbzrle_sender_get_stats(s, NULL, STATS) == XBZRLE_ERR_NULL,
          "stats NULL out");
    {
        /* A caller built with a larger (later) struct gets this version's fields and the
         * size filled in; one smaller than any version is refused. */
        struct {
            xbzrle_sender_stats stats;
            uint8_t later_fields[32];
        } larger;
        memset(&larger, 0xA5, sizeof larger);
        CHECK(xbzrle_sender_get_stats(s, &larger.stats, sizeof larger) == XBZRLE_OK &&
                  larger.stats.struct_size == sizeof(xbzrle_sender_stats) &&
                  larger.later_fields[0] == 0xA5 && larger.later_fields[31] == 0xA5,
              "stats into a larger struct: size %zu", larger.stats.struct_size);
        CHECK(xbzrle_sender_get_stats(s, &st, sizeof st - 1) == XBZRLE_ERR_INVALID_ARGUMENT,
              "stats into a smaller struct");
    }
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK && st.pages_processed == 6,
          "errors are not counted: %llu", (unsigned long long)st.pages_processed);

    /* Resize, estimate, last stage. */
    CHECK(xbzrle_sender_resize_cache(s, 100) == XBZRLE_ERR_INVALID_ARGUMENT, "resize below page");
    CHECK(xbzrle_sender_resize_cache(s, 8 * PAGE) == XBZRLE_OK, "resize");
    CHECK(xbzrle_sender_estimate_bytes(s, 10, NULL) == XBZRLE_ERR_NULL, "estimate NULL out");
    CHECK(xbzrle_sender_estimate_bytes(s, 10, &estimate) == XBZRLE_OK && estimate > 0,
          "estimate");
    CHECK(xbzrle_sender_start_last_stage(s) == XBZRLE_OK, "last stage");
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK && st.stage == XBZRLE_STAGE_LAST &&
              st.cache_size == 8 * PAGE && st.generation == 3,
          "last-stage stats");

    /* Hostile records: each is rejected and leaves the page exactly as it was. */
    memcpy(before, dest, PAGE);
    {
        uint8_t rec[HDR + 3 + 8] = {0x40, 0, 0, 0, 0, 0, 0, 0, 7, 0x01, 0x00, 0x03, 5, 1, 9};
        size_t rec_len = HDR + 6;
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) == XBZRLE_OK,
              "well-formed record");
        memcpy(before, dest, PAGE);
        rec[HDR + 4] = 0; /* changed run of length 0 */
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_DELTA,
              "zero-length run");
        rec[HDR + 4] = 1;
        rec[HDR + 3] = 0xff; /* 3-byte length */
        rec[HDR + 4] = 0xff;
        rec[HDR + 5] = 0x03;
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_DELTA,
              "overlong length");
        rec[HDR] = 0x02; /* wrong encoding flag */
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_RECORD,
              "encoding flag");
        rec[HDR] = 0x01;
        rec[HDR + 1] = 0x10; /* delta length 4099 > page */
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_RECORD,
              "delta longer than page");
        rec[HDR + 1] = 0;
        rec[0] = 0x77; /* unknown flag */
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_RECORD,
              "unknown flag");
        rec[0] = 0x40;
        CHECK(xbzrle_receiver_apply_page(r, rec, HDR + 2, dest, PAGE, NULL) ==
                  XBZRLE_ERR_INVALID_RECORD,
              "truncated record");
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, dest, PAGE - 1, NULL) ==
                  XBZRLE_ERR_INVALID_ARGUMENT,
              "short destination");
        CHECK(xbzrle_receiver_apply_page(r, rec, rec_len, NULL, PAGE, NULL) == XBZRLE_ERR_NULL,
              "NULL destination");
        CHECK(xbzrle_receiver_apply_page(r, NULL, rec_len, dest, PAGE, NULL) == XBZRLE_ERR_NULL,
              "NULL record");
        CHECK(xbzrle_receiver_apply_record(r, rec, rec_len, dest, PAGE, NULL, NULL) ==
                  XBZRLE_ERR_PAGE_OUT_OF_RANGE,
              "page 7 outside a 1-page memory");
        CHECK(xbzrle_receiver_apply_record(r, rec, rec_len, NULL, PAGE, NULL, NULL) ==
                  XBZRLE_ERR_NULL,
              "NULL memory");
        CHECK(memcmp(before, dest, PAGE) == 0, "a rejected record modified the page");
    }

    /* Random records: never a crash; memory is unchanged whenever a record is rejected. */
    {
        uint8_t memory[4 * 64], copy[4 * 64], rec[64];
        xbzrle_receiver *small = NULL;
        int i, accepted = 0;
        CHECK(xbzrle_receiver_new(64, &small) == XBZRLE_OK, "64-byte receiver");
        for (i = 0; i < 20000; i++) {
            size_t len = (size_t)(rng_next() % sizeof rec), j;
            xbzrle_status status;
            for (j = 0; j < len; j++) {
                rec[j] = (uint8_t)(rng_next() % 3 ? rng_next() % 8 : rng_next());
            }
            if (len > 0) {
                static const uint8_t flags[] = {0x02, 0x08, 0x40, 0x40, 0x13};
                rec[0] = flags[rng_next() % 5];
            }
            if (len > HDR) {
                memset(rec + 1, 0, 7); /* page numbers 0..4: mostly inside the memory */
                rec[8] = (uint8_t)(rng_next() % 5);
                rec[HDR] = rng_next() % 4 ? 0x01 : rec[HDR];
            }
            fill_random(memory, sizeof memory);
            memcpy(copy, memory, sizeof memory);
            status = xbzrle_receiver_apply_record(small, rec, len, memory, sizeof memory, NULL,
                                                  NULL);
            if (status == XBZRLE_OK) {
                accepted++;
            } else {
                CHECK(memcmp(copy, memory, sizeof memory) == 0, "rejected record wrote");
                CHECK(status == XBZRLE_ERR_INVALID_RECORD || status == XBZRLE_ERR_INVALID_DELTA ||
                          status == XBZRLE_ERR_PAGE_OUT_OF_RANGE,
                      "status %d", status);
            }
        }
        CHECK(accepted > 0, "no random record was accepted; the generator is too weak");
        printf("random records: %d of 20000 accepted\n", accepted);
        xbzrle_receiver_free(small);
    }

    free(out);
    xbzrle_sender_free(s);
    xbzrle_receiver_free(r);
}

static int stats_equal(const xbzrle_sender_stats *a, const xbzrle_sender_stats *b) {
    return a->cache_size == b->cache_size && a->bytes == b->bytes && a->pages == b->pages &&
           a->cache_miss == b->cache_miss && a->cache_miss_rate == b->cache_miss_rate &&
           a->encoding_rate == b->encoding_rate && a->overflow == b->overflow &&
           a->stage == b->stage && a->generation == b->generation &&
           a->pages_processed == b->pages_processed && a->zero_pages == b->zero_pages &&
           a->raw_pages == b->raw_pages && a->xbzrle_pages == b->xbzrle_pages &&
           a->skipped_pages == b->skipped_pages && a->wire_bytes == b->wire_bytes &&
           a->cache_pages == b->cache_pages && a->cache_capacity == b->cache_capacity &&
           a->cache_allocated_bytes == b->cache_allocated_bytes;
}

static xbzrle_sender_stats get_stats(const xbzrle_sender *s) {
    xbzrle_sender_stats st;
    memset(&st, 0, sizeof st);
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK, "get_stats");
    return st;
}

/* xbzrle_sender_end_bulk_stage: the bulk stage ends mid-pass without a dirty sync. */
static void end_bulk_stage(void) {
    xbzrle_sender_config c;
    xbzrle_sender *s = NULL;
    xbzrle_sent sent;
    xbzrle_sender_stats st;
    uint8_t page[PAGE];
    uint8_t *out;
    size_t cap;

    xbzrle_sender_config_default(&c);
    c.cache_bytes = 4 * PAGE;
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK && s != NULL, "sender_new");
    if (!s) {
        return;
    }
    cap = xbzrle_sender_max_record_len(s);
    out = xmalloc(cap);
    fill_random(page, PAGE);

    CHECK(xbzrle_sender_start_pass(s) == XBZRLE_OK, "pass 1");
    CHECK(xbzrle_sender_save_page(s, 0, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_RAW && sent.raw_reason == XBZRLE_RAW_BULK,
          "bulk page before the end of the bulk stage");
    st = get_stats(s);
    CHECK(st.stage == XBZRLE_STAGE_BULK && st.generation == 1 && st.cache_miss == 0 &&
              st.cache_pages == 0,
          "bulk: stage %d generation %llu", st.stage, (unsigned long long)st.generation);

    /* Mid-pass: the very next page is looked up, counted as a miss and inserted. */
    CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK, "end_bulk_stage");
    st = get_stats(s);
    CHECK(st.stage == XBZRLE_STAGE_ITERATIVE && st.generation == 1,
          "not a dirty sync: stage %d generation %llu", st.stage,
          (unsigned long long)st.generation);
    CHECK(xbzrle_sender_save_page(s, 1, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_RAW && sent.raw_reason == XBZRLE_RAW_MISS,
          "first page after end_bulk_stage: action %d reason %d", sent.action,
          sent.raw_reason);
    st = get_stats(s);
    CHECK(st.cache_miss == 1 && st.cache_pages == 1, "miss counted %llu, cached %zu",
          (unsigned long long)st.cache_miss, st.cache_pages);
    page[17] ^= 0x11;
    CHECK(xbzrle_sender_save_page(s, 1, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_XBZRLE,
          "a hit in the same pass");

    /* Idempotent. */
    CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK, "end_bulk_stage again");
    st = get_stats(s);
    CHECK(st.stage == XBZRLE_STAGE_ITERATIVE && st.generation == 1 && st.cache_miss == 1 &&
              st.pages == 1 && st.pages_processed == 3,
          "second call changed something");
    CHECK(xbzrle_sender_start_pass(s) == XBZRLE_OK, "pass 2");
    CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK, "end_bulk_stage after the bulk stage");
    st = get_stats(s);
    CHECK(st.stage == XBZRLE_STAGE_ITERATIVE && st.generation == 2,
          "pass 2: stage %d generation %llu", st.stage, (unsigned long long)st.generation);

    /* No effect in the last stage. */
    CHECK(xbzrle_sender_start_last_stage(s) == XBZRLE_OK, "last stage");
    CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK, "end_bulk_stage in the last stage");
    st = get_stats(s);
    CHECK(st.stage == XBZRLE_STAGE_LAST && st.generation == 3, "last: stage %d", st.stage);
    CHECK(xbzrle_sender_save_page(s, 2, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.raw_reason == XBZRLE_RAW_MISS && get_stats(s).cache_pages == 1,
          "last stage inserts nothing");
    free(out);
    xbzrle_sender_free(s);

    /* Before the first pass: no bulk stage at all. */
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK, "sender_new");
    if (!s) {
        return;
    }
    out = xmalloc(cap);
    CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK && xbzrle_sender_start_pass(s) ==
              XBZRLE_OK,
          "end_bulk_stage before the first pass");
    CHECK(get_stats(s).stage == XBZRLE_STAGE_ITERATIVE, "no bulk stage");
    CHECK(xbzrle_sender_save_page(s, 0, page, PAGE, out, cap, &sent) == XBZRLE_OK &&
              sent.raw_reason == XBZRLE_RAW_MISS,
          "first page is a miss");
    free(out);
    xbzrle_sender_free(s);
}

/* xbzrle_sender_save_zero_page against xbzrle_sender_save_page on a zero page: the same
 * action, record, statistics and later behaviour, in every stage, for several cache and
 * admission configurations. */
static void save_zero_page(void) {
    static const uint32_t kinds[] = {XBZRLE_CACHE_DIRECT_MAPPED, XBZRLE_CACHE_SET_ASSOCIATIVE};
    static const uint32_t admissions[] = {XBZRLE_ADMIT_ALWAYS, XBZRLE_ADMIT_AFTER_BULK,
                                          XBZRLE_ADMIT_FREQUENCY};
    /* Situations: dirty syncs before the zero page ('p' pass, 'e' end_bulk_stage, 'l' last
     * stage, 's' save page 3 with busy content). */
    static const char *const situations[] = {"p", "ps", "pse", "pp", "pps", "ppsp", "ppspsp",
                                             "ppsl", "ppl", "psl"};
    uint8_t busy[PAGE], zero[PAGE], poke[PAGE];
    uint8_t *out_a, *out_b;
    size_t k, a, i, cap;
    int stages_seen[3] = {0, 0, 0};

    fill_random(busy, PAGE);
    memset(zero, 0, PAGE);
    memcpy(poke, zero, PAGE);
    poke[9] = 0x42;
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (a = 0; a < sizeof admissions / sizeof admissions[0]; a++) {
            for (i = 0; i < sizeof situations / sizeof situations[0]; i++) {
                xbzrle_sender_config c;
                xbzrle_sender *sa = NULL, *sb = NULL; /* sa scans, sb is told */
                xbzrle_sent ra, rb;
                xbzrle_sender_stats st_a, st_b;
                const char *step;
                int round;

                xbzrle_sender_config_default(&c);
                c.cache_bytes = 4 * PAGE;
                c.cache_kind = kinds[k];
                c.ways = 2;
                c.admission = admissions[a];
                c.admission_min_passes = 2;
                c.admission_counters = 64;
                CHECK(xbzrle_sender_new(&c, &sa) == XBZRLE_OK &&
                          xbzrle_sender_new(&c, &sb) == XBZRLE_OK,
                      "senders");
                if (!sa || !sb) {
                    return;
                }
                cap = xbzrle_sender_max_record_len(sa);
                out_a = xmalloc(cap);
                out_b = xmalloc(cap);
                for (step = situations[i]; *step; step++) {
                    const xbzrle_sender *both[2];
                    int j;
                    both[0] = sa;
                    both[1] = sb;
                    for (j = 0; j < 2; j++) {
                        switch (*step) {
                        case 'p':
                            xbzrle_sender_start_pass(both[j]);
                            break;
                        case 'e':
                            xbzrle_sender_end_bulk_stage(both[j]);
                            break;
                        case 'l':
                            xbzrle_sender_start_last_stage(both[j]);
                            break;
                        default:
                            xbzrle_sender_save_page(both[j], 3, busy, PAGE, out_a, cap, &ra);
                        }
                    }
                }
                st_a = get_stats(sa);
                stages_seen[st_a.stage] = 1;
                for (round = 0; round < 3; round++) {
                    memset(out_a, 0xee, cap);
                    memset(out_b, 0xee, cap);
                    if (round == 0) {
                        CHECK(xbzrle_sender_save_page(sa, 3, zero, PAGE, out_a, cap, &ra) ==
                                      XBZRLE_OK &&
                                  xbzrle_sender_save_zero_page(sb, 3, out_b, cap, &rb) ==
                                      XBZRLE_OK,
                              "zero page saves");
                        CHECK(rb.action == XBZRLE_ACTION_ZERO &&
                                  rb.raw_reason == XBZRLE_RAW_NONE &&
                                  rb.record_len == XBZRLE_ZERO_RECORD_LEN && out_b[0] == 0x02 &&
                                  be64(out_b + 1) == 3 && out_b[HDR] == 0 &&
                                  out_b[XBZRLE_ZERO_RECORD_LEN] == 0xee,
                              "zero record: action %d len %zu", rb.action, rb.record_len);
                    } else {
                        /* A small write into the page afterwards: XBZRLE only if the cache
                         * entry became zeros, on both senders alike. */
                        CHECK(xbzrle_sender_save_page(sa, 3, poke, PAGE, out_a, cap, &ra) ==
                                      XBZRLE_OK &&
                                  xbzrle_sender_save_page(sb, 3, poke, PAGE, out_b, cap, &rb) ==
                                      XBZRLE_OK,
                              "later saves");
                        xbzrle_sender_start_pass(sa);
                        xbzrle_sender_start_pass(sb);
                    }
                    CHECK(ra.action == rb.action && ra.raw_reason == rb.raw_reason &&
                              ra.record_len == rb.record_len &&
                              memcmp(out_a, out_b, ra.record_len) == 0,
                          "kind %u admission %u situation %s round %d: action %d/%d len "
                          "%zu/%zu",
                          kinds[k], admissions[a], situations[i], round, ra.action, rb.action,
                          ra.record_len, rb.record_len);
                    st_a = get_stats(sa);
                    st_b = get_stats(sb);
                    CHECK(stats_equal(&st_a, &st_b),
                          "kind %u admission %u situation %s round %d: statistics differ "
                          "(zero %llu/%llu, cached %zu/%zu)",
                          kinds[k], admissions[a], situations[i], round,
                          (unsigned long long)st_a.zero_pages,
                          (unsigned long long)st_b.zero_pages, st_a.cache_pages,
                          st_b.cache_pages);
                }
                free(out_a);
                free(out_b);
                xbzrle_sender_free(sa);
                xbzrle_sender_free(sb);
            }
        }
    }
    CHECK(stages_seen[XBZRLE_STAGE_BULK] && stages_seen[XBZRLE_STAGE_ITERATIVE] &&
              stages_seen[XBZRLE_STAGE_LAST],
          "a stage is not covered");

    /* The cache effect itself: after the bulk stage a missing entry becomes a zero page,
     * so a small write then goes as a 3-byte delta. */
    {
        xbzrle_sender_config c;
        xbzrle_sender *s = NULL;
        xbzrle_sent sent;
        uint8_t out[HDR + 3 + PAGE];
        xbzrle_sender_config_default(&c);
        c.cache_bytes = 4 * PAGE;
        CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK, "sender_new");
        if (!s) {
            return;
        }
        xbzrle_sender_start_pass(s);
        xbzrle_sender_start_pass(s);
        CHECK(xbzrle_sender_save_zero_page(s, 5, out, sizeof out, &sent) == XBZRLE_OK &&
                  get_stats(s).cache_pages == 1 && get_stats(s).cache_miss == 0,
              "zero page inserted, no lookup counted");
        xbzrle_sender_start_pass(s);
        CHECK(xbzrle_sender_save_page(s, 5, poke, PAGE, out, sizeof out, &sent) == XBZRLE_OK &&
                  sent.action == XBZRLE_ACTION_XBZRLE && sent.record_len == HDR + 3 + 3,
              "small write into the zero page: action %d len %zu", sent.action,
              sent.record_len);
        xbzrle_sender_free(s);
    }
}

/* Error paths of xbzrle_sender_save_zero_page: nothing written, nothing counted. */
static void save_zero_page_errors(void) {
    xbzrle_sender_config c;
    xbzrle_sender *s = NULL;
    xbzrle_sent sent;
    xbzrle_sender_stats before, after;
    uint8_t out[XBZRLE_ZERO_RECORD_LEN + 4];
    size_t i;

    xbzrle_sender_config_default(&c);
    c.cache_bytes = 4 * PAGE;
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK, "sender_new");
    if (!s) {
        return;
    }
    xbzrle_sender_start_pass(s);
    xbzrle_sender_start_pass(s);
    before = get_stats(s);
    memset(out, 0xee, sizeof out);
    sent.action = XBZRLE_ACTION_SKIPPED;
    sent.record_len = 12345;
    CHECK(xbzrle_sender_save_zero_page(s, 1, NULL, sizeof out, &sent) == XBZRLE_ERR_NULL,
          "NULL out");
    CHECK(xbzrle_sender_save_zero_page(s, 1, out, sizeof out, NULL) == XBZRLE_ERR_NULL,
          "NULL sent");
    CHECK(xbzrle_sender_save_zero_page(s, 1, out, XBZRLE_ZERO_RECORD_LEN - 1, &sent) ==
              XBZRLE_ERR_OVERFLOW,
          "output one byte too small");
    CHECK(xbzrle_sender_save_zero_page(s, 1, out, 0, &sent) == XBZRLE_ERR_OVERFLOW,
          "empty output");
    CHECK(xbzrle_sender_save_zero_page(s, 1, out, SIZE_MAX, &sent) ==
              XBZRLE_ERR_INVALID_ARGUMENT,
          "out_cap above PTRDIFF_MAX");
    for (i = 0; i < sizeof out; i++) {
        CHECK(out[i] == 0xee, "a failed call wrote out[%zu]", i);
    }
    CHECK(sent.action == XBZRLE_ACTION_SKIPPED && sent.record_len == 12345,
          "a failed call wrote *sent");
    after = get_stats(s);
    CHECK(stats_equal(&before, &after) && after.cache_pages == 0,
          "a failed call changed the sender");

    /* Exactly the record length is enough, and nothing past it is written. */
    CHECK(xbzrle_sender_save_zero_page(s, 1, out, XBZRLE_ZERO_RECORD_LEN, &sent) == XBZRLE_OK &&
              sent.action == XBZRLE_ACTION_ZERO &&
              sent.record_len == XBZRLE_ZERO_RECORD_LEN,
          "exact output");
    CHECK(out[XBZRLE_ZERO_RECORD_LEN] == 0xee && out[XBZRLE_ZERO_RECORD_LEN + 3] == 0xee,
          "wrote past the record");
    after = get_stats(s);
    CHECK(after.zero_pages == 1 && after.pages_processed == 1 && after.cache_pages == 1 &&
              after.wire_bytes == XBZRLE_ZERO_RECORD_LEN,
          "zero page counted: zero %llu processed %llu",
          (unsigned long long)after.zero_pages, (unsigned long long)after.pages_processed);
    xbzrle_sender_free(s);
}

/* A whole migration of `pages` pages: bulk pass, dirtying passes, last stage; the
 * destination must end equal to the source. */
static int is_zero(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static void migrate(const char *name, const xbzrle_sender_config *c, size_t pages,
                    int end_bulk_mid_pass) {
    size_t page_size = c->page_size, mem_len = pages * page_size, cap, p;
    uint8_t *src = xmalloc(mem_len), *dst = xmalloc(mem_len), *dirty = xmalloc(pages), *wire;
    xbzrle_sender *s = NULL;
    xbzrle_receiver *r = NULL;
    xbzrle_sender_stats st;
    uint64_t caller_zero = 0;
    int pass;

    CHECK(xbzrle_sender_new(c, &s) == XBZRLE_OK, "%s: sender", name);
    CHECK(xbzrle_receiver_new(page_size, &r) == XBZRLE_OK, "%s: receiver", name);
    if (!s || !r) {
        return;
    }
    cap = xbzrle_sender_max_record_len(s);
    wire = xmalloc(cap);
    fill_random(src, mem_len);
    memset(dst, 0, mem_len);
    memset(dirty, 1, pages);
    for (pass = 0; pass < 8; pass++) {
        if (pass == 7) {
            CHECK(xbzrle_sender_start_last_stage(s) == XBZRLE_OK, "%s: last", name);
        } else {
            CHECK(xbzrle_sender_start_pass(s) == XBZRLE_OK, "%s: pass", name);
        }
        for (p = 0; p < pages; p++) {
            xbzrle_sent sent;
            size_t consumed = 0;
            uint64_t number = 0;
            if (!dirty[p]) {
                continue;
            }
            dirty[p] = 0;
            if (pass == 0 && p == pages / 2 && end_bulk_mid_pass) {
                CHECK(xbzrle_sender_end_bulk_stage(s) == XBZRLE_OK, "%s: end bulk", name);
            }
            if (p % 2 == 0 && is_zero(src + p * page_size, page_size)) {
                /* The caller detected the zero page itself. */
                CHECK(xbzrle_sender_save_zero_page(s, p, wire, cap, &sent) == XBZRLE_OK &&
                          sent.action == XBZRLE_ACTION_ZERO,
                      "%s: save zero", name);
                caller_zero++;
            } else {
                CHECK(xbzrle_sender_save_page(s, p, src + p * page_size, page_size, wire, cap,
                                              &sent) == XBZRLE_OK,
                      "%s: save", name);
            }
            if (sent.record_len > 0) {
                CHECK(xbzrle_receiver_apply_record(r, wire, sent.record_len, dst, mem_len,
                                                   &number, &consumed) == XBZRLE_OK &&
                          number == p && consumed == sent.record_len,
                      "%s: apply page %zu", name, p);
            }
        }
        /* Dirty a hot set often and the rest rarely; small writes, a few rewrites, zeros. */
        for (p = 0; p < pages && pass < 7; p++) {
            uint64_t roll = rng_next() % 100;
            uint8_t *page = src + p * page_size;
            if ((p % 8 == 0 && roll < 70) || roll < 5) {
                size_t k, writes = 1 + (size_t)(rng_next() % 6);
                for (k = 0; k < writes; k++) {
                    page[rng_next() % page_size] = (uint8_t)rng_next();
                }
                dirty[p] = 1;
            } else if (roll < 7) {
                fill_random(page, page_size);
                dirty[p] = 1;
            } else if (roll < 8) {
                memset(page, 0, page_size);
                dirty[p] = 1;
            }
        }
    }
    CHECK(memcmp(src, dst, mem_len) == 0, "%s: destination differs from source", name);
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK && st.xbzrle_pages > 0,
          "%s: no XBZRLE",
          name);
    CHECK(caller_zero > 0 && st.zero_pages >= caller_zero, "%s: zero pages %llu of %llu", name,
          (unsigned long long)caller_zero, (unsigned long long)st.zero_pages);
    printf("%s: %llu pages, %llu xbzrle, %llu raw, %llu zero, %llu skipped, %llu misses\n", name,
           (unsigned long long)st.pages_processed, (unsigned long long)st.xbzrle_pages,
           (unsigned long long)st.raw_pages, (unsigned long long)st.zero_pages,
           (unsigned long long)st.skipped_pages, (unsigned long long)st.cache_miss);
    xbzrle_sender_free(s);
    xbzrle_receiver_free(r);
    free(src);
    free(dst);
    free(dirty);
    free(wire);
}

/* Several channels at once: thread t saves and applies the dirty pages p with p % THREADS == t
 * through one shared sender (4 shards) and one shared receiver. */
enum { THREADS = 4, MT_PAGES = 256 };

struct channel {
    const xbzrle_sender *sender;
    const xbzrle_receiver *receiver;
    const uint8_t *src;
    uint8_t *dst;
    const uint8_t *dirty;
    size_t first, errors, saved;
};

static void *channel_run(void *arg) {
    struct channel *ch = (struct channel *)arg;
    size_t cap = xbzrle_sender_max_record_len(ch->sender), p;
    uint8_t *wire = xmalloc(cap);
    for (p = ch->first; p < MT_PAGES; p += THREADS) {
        xbzrle_sent sent;
        if (!ch->dirty[p]) {
            continue;
        }
        if (xbzrle_sender_save_page(ch->sender, p, ch->src + p * PAGE, PAGE, wire, cap, &sent) !=
                XBZRLE_OK ||
            (sent.record_len > 0 &&
             xbzrle_receiver_apply_record(ch->receiver, wire, sent.record_len, ch->dst,
                                          (size_t)MT_PAGES * PAGE, NULL, NULL) != XBZRLE_OK)) {
            ch->errors++;
        }
        ch->saved++;
    }
    free(wire);
    return NULL;
}

static void threaded_migration(void) {
    xbzrle_sender_config c;
    xbzrle_sender *s = NULL;
    xbzrle_receiver *r = NULL;
    xbzrle_sender_stats st;
    uint8_t *src = xmalloc((size_t)MT_PAGES * PAGE), *dst = xmalloc((size_t)MT_PAGES * PAGE);
    uint8_t dirty[MT_PAGES];
    size_t p, saved = 0;
    int pass, t;

    xbzrle_sender_config_default(&c);
    c.cache_bytes = 128 * PAGE;
    c.cache_kind = XBZRLE_CACHE_SET_ASSOCIATIVE;
    c.ways = 8;
    c.shards = THREADS;
    CHECK(xbzrle_sender_new(&c, &s) == XBZRLE_OK, "threaded sender");
    CHECK(xbzrle_receiver_new(PAGE, &r) == XBZRLE_OK, "threaded receiver");
    if (!s || !r) {
        return;
    }
    fill_random(src, (size_t)MT_PAGES * PAGE);
    memset(dst, 0, (size_t)MT_PAGES * PAGE);
    memset(dirty, 1, sizeof dirty);
    for (pass = 0; pass < 6; pass++) {
        pthread_t threads[THREADS];
        struct channel ch[THREADS];
        CHECK((pass == 5 ? xbzrle_sender_start_last_stage(s) : xbzrle_sender_start_pass(s)) ==
                  XBZRLE_OK,
              "threaded sync");
        for (t = 0; t < THREADS; t++) {
            ch[t].sender = s;
            ch[t].receiver = r;
            ch[t].src = src;
            ch[t].dst = dst;
            ch[t].dirty = dirty;
            ch[t].first = (size_t)t;
            ch[t].errors = 0;
            ch[t].saved = 0;
            CHECK(pthread_create(&threads[t], NULL, channel_run, &ch[t]) == 0, "spawn");
        }
        for (t = 0; t < THREADS; t++) {
            pthread_join(threads[t], NULL);
            CHECK(ch[t].errors == 0, "channel %d: %zu errors", t, ch[t].errors);
            saved += ch[t].saved;
        }
        memset(dirty, 0, sizeof dirty);
        for (p = 0; p < MT_PAGES && pass < 5; p++) {
            if (p < 64 || rng_next() % 10 == 0) {
                src[p * PAGE + rng_next() % PAGE] ^= (uint8_t)(1 + rng_next() % 255);
                dirty[p] = 1;
            }
        }
    }
    CHECK(memcmp(src, dst, (size_t)MT_PAGES * PAGE) == 0, "threaded: destination differs");
    CHECK(xbzrle_sender_get_stats(s, &st, STATS) == XBZRLE_OK && st.pages_processed == saved &&
              st.xbzrle_pages > 0,
          "threaded stats: %llu processed of %zu", (unsigned long long)st.pages_processed, saved);
    printf("threaded: %zu pages over %d channels, %llu xbzrle\n", saved, THREADS,
           (unsigned long long)st.xbzrle_pages);
    xbzrle_sender_free(s);
    xbzrle_receiver_free(r);
    free(src);
    free(dst);
}

/* xbzrle_sender_save_pages: the same records as xbzrle_sender_save_page page after page,
 * a callback that stops the batch, and an error in the middle. */
struct batch_log {
    xbzrle_sender *single;
    uint8_t *ram;
    uint8_t *single_out;
    size_t single_cap;
    size_t emitted;
    size_t stop_after;
    int mismatches;
};

static int batch_emit(void *opaque, uint64_t page, const xbzrle_sent *sent,
                      const uint8_t *record) {
    struct batch_log *log = opaque;
    xbzrle_sent single;
    log->emitted++;
    if (log->single) {
        if (xbzrle_sender_save_page(log->single, page, log->ram + page * PAGE, PAGE,
                                    log->single_out, log->single_cap, &single) != XBZRLE_OK ||
            single.action != sent->action || single.raw_reason != sent->raw_reason ||
            single.record_len != sent->record_len ||
            memcmp(record, log->single_out, sent->record_len) != 0) {
            log->mismatches++;
        }
    }
    return log->stop_after != 0 && log->emitted == log->stop_after;
}

static void save_pages_batch(void) {
    enum { PAGES = 24 };
    xbzrle_sender_config c;
    xbzrle_sender *batch, *single;
    uint8_t *ram = xmalloc(PAGES * PAGE);
    const uint8_t *data[PAGES];
    uint64_t pages[PAGES];
    size_t cap, saved, i, n;
    uint8_t *out;
    struct batch_log log;
    int pass;
    xbzrle_sender_config_default(&c);
    c.cache_bytes = 8 * PAGE;
    CHECK(xbzrle_sender_new(&c, &batch) == XBZRLE_OK && xbzrle_sender_new(&c, &single) == XBZRLE_OK,
          "new");
    cap = xbzrle_sender_max_record_len(batch);
    out = xmalloc(cap);
    fill_random(ram, PAGES * PAGE);
    memset(&log, 0, sizeof log);
    log.single = single;
    log.ram = ram;
    log.single_out = xmalloc(cap);
    log.single_cap = cap;
    for (pass = 0; pass < 5; pass++) {
        xbzrle_sender_start_pass(batch);
        xbzrle_sender_start_pass(single);
        for (i = 0, n = 0; i < PAGES; i++) {
            ram[i * PAGE + (size_t)pass * 7] ^= 0x5a;
            if ((i + (size_t)pass) % 4 != 0) {
                pages[n] = i;
                data[n] = ram + i * PAGE;
                n++;
            }
        }
        log.emitted = 0;
        CHECK(xbzrle_sender_save_pages(batch, pages, data, n, PAGE, out, cap, batch_emit, &log,
                                       &saved) == XBZRLE_OK && saved == n && log.emitted == n,
              "pass %d: batch of %zu saved %zu", pass, n, saved);
    }
    CHECK(log.mismatches == 0, "%d records differ from single saves", log.mismatches);

    /* The callback stops the batch after 3 pages. */
    log.single = NULL;
    log.emitted = 0;
    log.stop_after = 3;
    CHECK(xbzrle_sender_save_pages(batch, pages, data, PAGES / 2, PAGE, out, cap, batch_emit, &log,
                                   &saved) == XBZRLE_OK && saved == 3 && log.emitted == 3,
          "stopped batch saved %zu", saved);

    /* A NULL page in the middle: the arguments are checked first, so nothing is saved. */
    log.emitted = 0;
    log.stop_after = 0;
    data[2] = NULL;
    CHECK(xbzrle_sender_save_pages(batch, pages, data, PAGES / 2, PAGE, out, cap, batch_emit, &log,
                                   &saved) == XBZRLE_ERR_NULL &&
              saved == 0 && log.emitted == 0,
          "NULL page: saved %zu, emitted %zu", saved, log.emitted);
    data[2] = ram;
    CHECK(xbzrle_sender_save_pages(batch, pages, data, 4, PAGE - 1, out, cap, batch_emit, &log,
                                   &saved) == XBZRLE_ERR_INVALID_ARGUMENT && saved == 0,
          "wrong page size: saved %zu", saved);
    CHECK(xbzrle_sender_save_pages(batch, pages, data, 4, PAGE, out, cap, NULL, &log, &saved) ==
              XBZRLE_ERR_NULL,
          "NULL callback");
    CHECK(xbzrle_sender_save_pages(batch, NULL, NULL, 0, PAGE, out, cap, batch_emit, &log,
                                   &saved) == XBZRLE_OK && saved == 0,
          "empty batch");
    xbzrle_sender_free(batch);
    xbzrle_sender_free(single);
    free(out);
    free(log.single_out);
    free(ram);
}

int main(void) {
    xbzrle_sender_config c;
    config_errors();
    huge_sizes();
    decisions();
    end_bulk_stage();
    save_zero_page();
    save_zero_page_errors();
    save_pages_batch();

    xbzrle_sender_config_default(&c);
    c.cache_bytes = 64 * PAGE;
    migrate("direct-mapped, after bulk", &c, 256, 0);
    migrate("direct-mapped, after bulk, bulk ended mid-pass", &c, 256, 1);
    c.cache_kind = XBZRLE_CACHE_SET_ASSOCIATIVE;
    c.ways = 4;
    c.replacement = XBZRLE_REPLACEMENT_LIFETIME;
    c.admission = XBZRLE_ADMIT_FREQUENCY;
    c.admission_min_passes = 2;
    c.admission_counters = 1024;
    migrate("4-way lifetime, frequency", &c, 256, 1);
    c.replacement = XBZRLE_REPLACEMENT_LRU;
    c.admission = XBZRLE_ADMIT_ALWAYS;
    c.shards = 4;
    migrate("4-way LRU, always, 4 shards", &c, 256, 0);
    c.page_size = 1000; /* odd page size */
    c.cache_bytes = 32 * 1000;
    c.replacement = XBZRLE_REPLACEMENT_FREQUENCY;
    migrate("1000-byte pages", &c, 100, 1);
    threaded_migration();
    return check_summary("test_policy");
}
