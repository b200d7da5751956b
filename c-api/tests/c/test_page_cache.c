/* The page cache through the C ABI, as QEMU's migration/page_cache.h uses it: configuration
 * and argument errors, QEMU's lifetime rule step by step with hand-derived outcomes, copies
 * that stay put and can be written, and the set-associative cache keeping pages that collide
 * in the direct-mapped one. */
#include "xbzrle.h"
#include "check.h"

#define PAGE 4096
#define INFO sizeof(xbzrle_page_cache_info) /* the info size every call passes */

static xbzrle_page_cache *make(uint32_t kind, uint64_t pages) {
    xbzrle_page_cache_config c;
    xbzrle_page_cache *cache = NULL;
    xbzrle_page_cache_config_default(&c);
    c.cache_kind = kind;
    c.cache_bytes = pages * PAGE;
    CHECK(xbzrle_page_cache_new(&c, &cache) == XBZRLE_OK && cache != NULL, "new");
    return cache;
}

static int cached(xbzrle_page_cache *cache, uint64_t page, uint64_t age) {
    int hit = -1;
    CHECK(xbzrle_page_cache_is_cached(cache, page * PAGE, age, &hit) == XBZRLE_OK, "lookup");
    return hit;
}

/* QEMU's cache_insert result: 0 stored, -1 refused. */
static int insert(xbzrle_page_cache *cache, uint64_t page, uint8_t fill, uint64_t age) {
    uint8_t data[PAGE];
    uint8_t *copy = (uint8_t *)&copy;
    memset(data, fill, PAGE);
    CHECK(xbzrle_page_cache_insert(cache, page * PAGE, data, PAGE, age, &copy) == XBZRLE_OK,
          "insert");
    if (copy) {
        CHECK(copy[0] == fill && copy[PAGE - 1] == fill, "the copy holds the page");
    }
    return copy ? 0 : -1;
}

static uint8_t *copy_of(xbzrle_page_cache *cache, uint64_t page) {
    uint8_t *data = (uint8_t *)&data;
    CHECK(xbzrle_page_cache_get(cache, page * PAGE, &data) == XBZRLE_OK, "get");
    return data;
}

static void errors(void) {
    xbzrle_page_cache_config c, bad;
    xbzrle_page_cache *cache = (xbzrle_page_cache *)&c;
    uint8_t page[PAGE] = {0}, *out;
    int hit;

    CHECK(xbzrle_page_cache_config_default(NULL) == XBZRLE_ERR_NULL, "default(NULL)");
    CHECK(xbzrle_page_cache_config_default(&c) == XBZRLE_OK, "default");
    CHECK(c.page_size == PAGE && c.cache_bytes == 64u << 20 &&
              c.cache_kind == XBZRLE_CACHE_DIRECT_MAPPED && c.ways == 16 &&
              c.replacement == XBZRLE_REPLACEMENT_FREQUENCY,
          "QEMU's defaults");
    CHECK(xbzrle_page_cache_new(NULL, &cache) == XBZRLE_ERR_NULL && cache == NULL, "NULL config");
    CHECK(xbzrle_page_cache_new(&c, NULL) == XBZRLE_ERR_NULL, "NULL out");

#define BAD(field, value)                                                                  \
    do {                                                                                   \
        bad = c;                                                                           \
        bad.field = value;                                                                 \
        cache = (xbzrle_page_cache *)&c;                                                   \
        CHECK(xbzrle_page_cache_new(&bad, &cache) == XBZRLE_ERR_INVALID_ARGUMENT &&        \
                  cache == NULL,                                                           \
              "config " #field " = " #value " accepted");                                 \
    } while (0)
    BAD(page_size, 0);
    BAD(page_size, (size_t)UINT32_MAX + 1);
    BAD(cache_bytes, PAGE - 1);
    BAD(cache_bytes, (uint64_t)1 << 63);
    BAD(cache_kind, 2);
    c.cache_kind = XBZRLE_CACHE_SET_ASSOCIATIVE;
    BAD(ways, 0);
    BAD(replacement, 3);
#undef BAD
    bad = c;
    bad.cache_bytes = (uint64_t)1 << 60; /* valid, but no allocator gives 1 EiB */
    CHECK(xbzrle_page_cache_new(&bad, &cache) == XBZRLE_ERR_NO_MEMORY && cache == NULL,
          "1 EiB cache");

    xbzrle_page_cache_free(NULL);
    CHECK(xbzrle_page_cache_is_cached(NULL, 0, 0, &hit) == XBZRLE_ERR_NULL, "is_cached(NULL)");
    CHECK(xbzrle_page_cache_get(NULL, 0, &out) == XBZRLE_ERR_NULL, "get(NULL)");
    CHECK(xbzrle_page_cache_insert(NULL, 0, page, PAGE, 0, &out) == XBZRLE_ERR_NULL,
          "insert(NULL)");
    CHECK(xbzrle_page_cache_get_info(NULL, NULL, INFO) == XBZRLE_ERR_NULL, "get_info(NULL)");

    cache = make(XBZRLE_CACHE_DIRECT_MAPPED, 8);
    CHECK(xbzrle_page_cache_insert(cache, 0, NULL, PAGE, 0, &out) == XBZRLE_ERR_NULL, "NULL page");
    CHECK(xbzrle_page_cache_insert(cache, 0, page, PAGE, 0, NULL) == XBZRLE_ERR_NULL, "NULL copy");
    CHECK(xbzrle_page_cache_insert(cache, 0, page, PAGE / 2, 0, &out) ==
              XBZRLE_ERR_INVALID_ARGUMENT,
          "half a page");
    CHECK(xbzrle_page_cache_insert(cache, 100, page, PAGE, 0, &out) ==
              XBZRLE_ERR_INVALID_ARGUMENT,
          "unaligned insert");
    CHECK(xbzrle_page_cache_is_cached(cache, PAGE + 1, 0, &hit) == XBZRLE_ERR_INVALID_ARGUMENT,
          "unaligned lookup");
    CHECK(xbzrle_page_cache_is_cached(cache, 0, 0, NULL) == XBZRLE_ERR_NULL, "NULL flag");
    CHECK(xbzrle_page_cache_get(cache, 0, NULL) == XBZRLE_ERR_NULL, "NULL data");
    xbzrle_page_cache_free(cache);
}

/* QEMU's rules in an 8-slot cache: pages 1 and 9 share slot 1. */
static void qemu_rules(void) {
    xbzrle_page_cache *cache = make(XBZRLE_CACHE_DIRECT_MAPPED, 8);
    xbzrle_page_cache_info info;
    uint8_t *copy;

    CHECK(xbzrle_page_cache_get_info(cache, &info, INFO) == XBZRLE_OK && info.capacity == 8 &&
              info.pages == 0 && info.allocated_bytes == 0 && info.cache_bytes == 8 * PAGE,
          "empty: nothing allocated");
    CHECK(cached(cache, 1, 5) == 0 && copy_of(cache, 1) == NULL, "empty cache: a miss");
    CHECK(insert(cache, 1, 0x11, 5) == 0, "insert into an empty slot");
    CHECK(cached(cache, 1, 5) == 1, "then a hit");
    /* Age 5: 5 + 2 > 5, 6 and the entry is protected from page 9 ... */
    CHECK(insert(cache, 9, 0x99, 5) == -1 && insert(cache, 9, 0x99, 6) == -1, "protected");
    /* ... but a hit in generation 6 renews it: still protected in 7. */
    CHECK(cached(cache, 1, 6) == 1 && insert(cache, 9, 0x99, 7) == -1, "renewed by a hit");
    /* A copy written through the pointer stays written; get does not renew. */
    copy = copy_of(cache, 1);
    CHECK(copy != NULL && copy[0] == 0x11, "copy");
    memset(copy, 0x22, PAGE);
    CHECK(copy_of(cache, 1) == copy && copy_of(cache, 1)[PAGE - 1] == 0x22, "written copy");
    /* Generation 8: 6 + 2 > 8 is false, page 9 replaces page 1 in the same memory. */
    CHECK(insert(cache, 9, 0x99, 8) == 0, "expired entry replaced");
    CHECK(cached(cache, 1, 8) == 0 && copy_of(cache, 1) == NULL, "page 1 is gone");
    CHECK(copy_of(cache, 9) == copy && copy[0] == 0x99, "page 9 took the slot");
    /* The same page is always overwritten, whatever its age. */
    CHECK(insert(cache, 9, 0x33, 8) == 0 && copy[0] == 0x33, "overwrite");
    /* Other slots are independent; page data was allocated once for all of them. */
    CHECK(insert(cache, 2, 0x44, 8) == 0 && insert(cache, 10, 0x55, 9) == -1, "slot 2");
    CHECK(xbzrle_page_cache_get_info(cache, &info, INFO) == XBZRLE_OK && info.pages == 2 &&
              info.allocated_bytes == 8 * PAGE,
          "two pages cached, %zu bytes allocated", info.allocated_bytes);
    xbzrle_page_cache_free(cache);

    /* The slot count is rounded down to a power of two: 12 pages give 8 slots. */
    cache = make(XBZRLE_CACHE_DIRECT_MAPPED, 12);
    CHECK(xbzrle_page_cache_get_info(cache, &info, INFO) == XBZRLE_OK && info.capacity == 8,
          "12 pages -> 8 slots, got %zu", info.capacity);
    CHECK(insert(cache, 3, 1, 0) == 0 && insert(cache, 11, 2, 1) == -1, "11 maps onto 3");
    xbzrle_page_cache_free(cache);
}

/* Pages 0, 16, 32 and 48 share slot 0 of a 16-page direct-mapped cache; all four are used in every
 * generation. The direct-mapped cache keeps one of them, a 16-way cache of the same size
 * all four. */
static void set_associative(void) {
    xbzrle_page_cache *direct = make(XBZRLE_CACHE_DIRECT_MAPPED, 16);
    xbzrle_page_cache *assoc = make(XBZRLE_CACHE_SET_ASSOCIATIVE, 16);
    xbzrle_page_cache *caches[2];
    int hits[2] = {0, 0}, i;
    uint64_t age, p;

    caches[0] = direct;
    caches[1] = assoc;
    for (i = 0; i < 2; i++) {
        for (age = 1; age <= 10; age++) {
            for (p = 0; p < 64; p += 16) {
                if (cached(caches[i], p, age)) {
                    hits[i]++;
                    CHECK(copy_of(caches[i], p)[0] == (uint8_t)p + 1, "content of %u",
                          (unsigned)p);
                } else {
                    insert(caches[i], p, (uint8_t)p + 1, age);
                }
            }
        }
    }
    CHECK(hits[0] == 9 && hits[1] == 36, "hits: direct-mapped %d (expected 9), 16-way %d "
          "(expected 36)", hits[0], hits[1]);
    xbzrle_page_cache_free(direct);
    xbzrle_page_cache_free(assoc);
}

int main(void) {
    errors();
    qemu_rules();
    set_associative();
    return check_summary("test_page_cache");
}
