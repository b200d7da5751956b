/* The codec through the C ABI: QEMU's golden vectors via the drop-in functions, the size_t
 * API, compact encoding, and every error path. Usage: test_codec ENCODE_BIN DECODE_BIN */
#include "xbzrle.h"
#include "check.h"

#define GUARD 32
#define CANARY 0xA5

/* Test oracle, written independently of the library: the canonical delta, byte by byte. */
static size_t put_uleb(uint8_t *p, size_t v) {
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) {
            b |= 0x80;
        }
        p[n++] = b;
    } while (v);
    return n;
}

static size_t naive_encode(const uint8_t *old, const uint8_t *new_, size_t len, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < len) {
        size_t zstart = i, nzstart;
        while (i < len && old[i] == new_[i]) {
            i++;
        }
        if (i == len) {
            break;
        }
        nzstart = i;
        while (i < len && old[i] != new_[i]) {
            i++;
        }
        o += put_uleb(out + o, nzstart - zstart);
        o += put_uleb(out + o, i - nzstart);
        memcpy(out + o, new_ + nzstart, i - nzstart);
        o += i - nzstart;
    }
    return o;
}

static int canary_intact(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i] != CANARY) {
            return 0;
        }
    }
    return 1;
}

static void encode_vectors(const char *path) {
    size_t len, records = 0, exact_overflow_fits = 0;
    struct reader r;
    r.data = read_file(path, &len);
    r.len = len;
    r.pos = 0;
    while (r.pos < r.len) {
        uint32_t page_len = take_u32(&r), dlen = take_u32(&r);
        size_t align = records % 8, naive_len, out_len = 12345, compact_len = 12345;
        uint8_t *old = xmalloc(page_len + align), *new_ = xmalloc(page_len + align);
        uint8_t *dst = xmalloc(dlen + GUARD), *oracle = xmalloc(2 * (size_t)page_len + 16);
        uint8_t *page;
        const uint8_t *delta;
        int32_t ret;
        int ours;
        xbzrle_status st;

        /* Inputs at every alignment: records are placed at offset 0..7. */
        memcpy(old + align, take(&r, page_len), page_len);
        memcpy(new_ + align, take(&r, page_len), page_len);
        ret = take_i32(&r);
        delta = ret > 0 ? take(&r, (size_t)ret) : NULL;
        naive_len = naive_encode(old + align, new_ + align, page_len, oracle);
        if (ret > 0) {
            CHECK(naive_len == (size_t)ret && memcmp(oracle, delta, naive_len) == 0,
                  "oracle disagrees with QEMU on record %zu", records);
        }

        memset(dst, CANARY, dlen + GUARD);
        ours = xbzrle_encode_buffer(old + align, new_ + align, (int)page_len, dst, (int)dlen);
        CHECK(canary_intact(dst + dlen, GUARD), "record %zu wrote past dst + dlen", records);
        if (ret >= 0) {
            CHECK(ours == ret, "record %zu: ours %d, QEMU %d", records, ours, (int)ret);
            CHECK(ret == 0 || memcmp(dst, delta, (size_t)ret) == 0, "record %zu: bytes differ",
                  records);
        } else if (ours != -1) {
            /* Exact overflow: allowed only with the canonical delta, and only if it fits. */
            exact_overflow_fits++;
            CHECK((size_t)ours == naive_len && naive_len <= dlen &&
                      memcmp(dst, oracle, naive_len) == 0,
                  "record %zu: QEMU -1, ours %d, canonical %zu, dlen %u", records, ours,
                  naive_len, dlen);
        }

        /* The size_t API gives the same verdict. */
        memset(dst, CANARY, dlen + GUARD);
        st = xbzrle_encode(old + align, new_ + align, page_len, dst, dlen, &out_len);
        CHECK(canary_intact(dst + dlen, GUARD), "record %zu: xbzrle_encode overran", records);
        if (ours == -1) {
            CHECK(st == XBZRLE_ERR_OVERFLOW && out_len == 0, "record %zu: status %d", records,
                  (int)st);
        } else {
            CHECK(st == XBZRLE_OK && out_len == (size_t)ours &&
                      memcmp(dst, oracle, out_len) == 0,
                  "record %zu: status %d len %zu", records, (int)st, out_len);
        }

        /* One-pass encode + refresh: the same verdict, and the cached copy becomes `new`. */
        page = xmalloc(page_len);
        memcpy(page, old + align, page_len);
        memset(dst, CANARY, dlen + GUARD);
        st = xbzrle_encode_update(page, new_ + align, page_len, dst, dlen, &out_len);
        CHECK(canary_intact(dst + dlen, GUARD), "record %zu: encode_update overran", records);
        CHECK(memcmp(page, new_ + align, page_len) == 0, "record %zu: cache not refreshed",
              records);
        if (ours == -1) {
            CHECK(st == XBZRLE_ERR_OVERFLOW, "record %zu: update status %d", records, (int)st);
        } else {
            CHECK(st == XBZRLE_OK && out_len == (size_t)ours &&
                      memcmp(dst, oracle, out_len) == 0,
                  "record %zu: update status %d len %zu", records, (int)st, out_len);
        }
        free(page);

        /* Compact: never longer than canonical; QEMU's decoder semantics rebuild `new`. */
        memset(dst, CANARY, dlen + GUARD);
        st = xbzrle_encode_compact(old + align, new_ + align, page_len, dst, dlen,
                                   &compact_len);
        CHECK(canary_intact(dst + dlen, GUARD), "record %zu: compact overran", records);
        if (st == XBZRLE_OK) {
            CHECK(compact_len <= naive_len, "record %zu: compact %zu > canonical %zu", records,
                  compact_len, naive_len);
            page = xmalloc(page_len);
            memcpy(page, old + align, page_len);
            CHECK(xbzrle_decode_buffer(dst, (int)compact_len, page, (int)page_len) >= 0,
                  "record %zu: compact delta rejected", records);
            CHECK(memcmp(page, new_ + align, page_len) == 0,
                  "record %zu: compact delta does not rebuild the page", records);
            free(page);
        } else {
            CHECK(st == XBZRLE_ERR_OVERFLOW && naive_len > 0,
                  "record %zu: compact status %d", records, (int)st);
        }
        free(old);
        free(new_);
        free(dst);
        free(oracle);
        records++;
    }
    CHECK(records == 285, "expected 285 encode records, read %zu", records);
    printf("encode vectors: %zu records, %zu QEMU overflows where the delta fits exactly\n",
           records, exact_overflow_fits);
    free((void *)r.data);
}

static void decode_vectors(const char *path) {
    size_t len, records = 0;
    struct reader r;
    r.data = read_file(path, &len);
    r.len = len;
    r.pos = 0;
    while (r.pos < r.len) {
        uint32_t src_len = take_u32(&r), dlen;
        uint8_t *src = xmalloc(src_len), *page, *page2;
        const uint8_t *before, *after;
        size_t end = 99999, vend = 99999;
        int32_t ret;
        int ours;
        xbzrle_status st;

        memcpy(src, take(&r, src_len), src_len);
        dlen = take_u32(&r);
        before = take(&r, dlen);
        ret = take_i32(&r);
        after = take(&r, dlen);
        page = xmalloc(dlen);
        page2 = xmalloc(dlen);
        memcpy(page, before, dlen);
        memcpy(page2, before, dlen);

        ours = xbzrle_decode_buffer(src, (int)src_len, page, (int)dlen);
        CHECK(ours == ret, "decode record %zu: ours %d, QEMU %d", records, ours, (int)ret);
        CHECK(memcmp(page, after, dlen) == 0, "decode record %zu: page differs", records);

        st = xbzrle_decode(src, src_len, page2, dlen, &end);
        if (ret >= 0) {
            CHECK(st == XBZRLE_OK && end == (size_t)ret && memcmp(page2, after, dlen) == 0,
                  "decode record %zu: xbzrle_decode status %d", records, (int)st);
        } else {
            CHECK(st == XBZRLE_ERR_INVALID_DELTA && memcmp(page2, before, dlen) == 0,
                  "decode record %zu: xbzrle_decode status %d or page touched", records,
                  (int)st);
        }
        st = xbzrle_validate(src, src_len, dlen, &vend);
        CHECK(ret >= 0 ? (st == XBZRLE_OK && vend == (size_t)ret)
                       : st == XBZRLE_ERR_INVALID_DELTA,
              "decode record %zu: validate status %d", records, (int)st);
        free(src);
        free(page);
        free(page2);
        records++;
    }
    CHECK(records == 280, "expected 280 decode records, read %zu", records);
    printf("decode vectors: %zu records\n", records);
    free((void *)r.data);
}

static void error_paths(void) {
    static const int all_codes[] = {
        XBZRLE_OK,           XBZRLE_ERR_NULL,         XBZRLE_ERR_INVALID_ARGUMENT,
        XBZRLE_ERR_OVERFLOW, XBZRLE_ERR_INVALID_DELTA, XBZRLE_ERR_INVALID_RECORD,
        XBZRLE_ERR_PANIC,    XBZRLE_ERR_POISONED,     XBZRLE_ERR_PAGE_OUT_OF_RANGE,
    };
    uint8_t a[64] = {0}, b[64] = {0}, out[256], tiny[2];
    size_t n = 777, i;
    int code;
    const char *unknown = xbzrle_strerror(-9999);

    b[10] = 1;
    /* Drop-ins: NULL and negative arguments give -1. */
    CHECK(xbzrle_encode_buffer(NULL, b, 64, out, 256) == -1, "NULL old_buf");
    CHECK(xbzrle_encode_buffer(a, NULL, 64, out, 256) == -1, "NULL new_buf");
    CHECK(xbzrle_encode_buffer(a, b, 64, NULL, 256) == -1, "NULL dst");
    CHECK(xbzrle_encode_buffer(a, b, -1, out, 256) == -1, "negative slen");
    CHECK(xbzrle_encode_buffer(a, b, 64, out, -5) == -1, "negative dlen");
    CHECK(xbzrle_encode_buffer(a, b, 64, out, 256) == 3, "one changed byte: 0a 01 01");
    CHECK(out[0] == 10 && out[1] == 1 && out[2] == 1, "bytes of the one-byte delta");
    /* Tiny output buffers: the 3-byte delta fits only from dlen 3. */
    CHECK(xbzrle_encode_buffer(a, b, 64, out, 0) == -1, "dlen 0");
    CHECK(xbzrle_encode_buffer(a, b, 64, out, 2) == -1, "dlen 2");
    CHECK(xbzrle_encode_buffer(a, b, 64, out, 3) == 3, "dlen 3 exact fit");
    CHECK(xbzrle_encode_buffer(a, a, 64, out, 0) == 0, "identical pages, dlen 0");
    CHECK(xbzrle_encode_buffer(a, b, 0, out, 16) == 0, "empty pages");

    CHECK(xbzrle_decode_buffer(NULL, 3, a, 64) == -1, "NULL src");
    CHECK(xbzrle_decode_buffer(out, 3, NULL, 64) == -1, "NULL dst");
    CHECK(xbzrle_decode_buffer(out, -3, a, 64) == -1, "negative slen");
    CHECK(xbzrle_decode_buffer(out, 3, a, -64) == -1, "negative dlen");
    CHECK(xbzrle_decode_buffer(out, 3, a, 10) == -1, "run past a 10-byte page");
    CHECK(xbzrle_decode_buffer(out, 2, a, 64) == -1, "truncated delta");
    CHECK(xbzrle_decode_buffer(out, 3, a, 64) == 11 && a[10] == 1, "valid delta applies");
    a[10] = 0;
    CHECK(xbzrle_decode_buffer(out, 0, a, 64) == 0, "empty delta");

    /* Native API: every NULL, and out-of-range lengths. */
    CHECK(xbzrle_encode(NULL, b, 64, out, 256, &n) == XBZRLE_ERR_NULL && n == 0, "NULL old");
    CHECK(xbzrle_encode(a, NULL, 64, out, 256, &n) == XBZRLE_ERR_NULL, "NULL new");
    CHECK(xbzrle_encode(a, b, 64, NULL, 256, &n) == XBZRLE_ERR_NULL, "NULL out");
    CHECK(xbzrle_encode(a, b, 64, out, 256, NULL) == XBZRLE_ERR_NULL, "NULL out_len");
    CHECK(xbzrle_encode_compact(NULL, b, 64, out, 256, &n) == XBZRLE_ERR_NULL, "compact NULL");
    CHECK(xbzrle_encode_compact(a, b, 64, out, 256, NULL) == XBZRLE_ERR_NULL,
          "compact NULL out_len");
    CHECK(xbzrle_encode_update(NULL, b, 64, out, 256, &n) == XBZRLE_ERR_NULL, "update NULL");
    CHECK(xbzrle_encode_update(a, b, 64, NULL, 256, &n) == XBZRLE_ERR_NULL, "update NULL out");
    CHECK(xbzrle_encode_update(a, b, 64, out, 256, NULL) == XBZRLE_ERR_NULL && a[10] == 0,
          "update NULL out_len leaves the cache alone");
    CHECK(xbzrle_encode(a, b, (size_t)UINT32_MAX + 1, out, 256, &n) ==
              XBZRLE_ERR_INVALID_ARGUMENT,
          "page above UINT32_MAX");
    CHECK(xbzrle_encode(a, b, 64, out, SIZE_MAX, &n) == XBZRLE_ERR_INVALID_ARGUMENT,
          "capacity above PTRDIFF_MAX");
    CHECK(xbzrle_encode(a, b, 64, tiny, sizeof tiny, &n) == XBZRLE_ERR_OVERFLOW && n == 0,
          "overflow");
    CHECK(xbzrle_decode(NULL, 3, a, 64, NULL) == XBZRLE_ERR_NULL, "decode NULL delta");
    CHECK(xbzrle_decode(out, 3, NULL, 64, NULL) == XBZRLE_ERR_NULL, "decode NULL page");
    CHECK(xbzrle_decode(out, SIZE_MAX, a, 64, NULL) == XBZRLE_ERR_INVALID_ARGUMENT,
          "decode delta_len above PTRDIFF_MAX");
    CHECK(xbzrle_validate(NULL, 3, 64, NULL) == XBZRLE_ERR_NULL, "validate NULL");
    CHECK(xbzrle_validate(out, 3, 64, NULL) == XBZRLE_OK, "validate with NULL end");

    /* Garbage: random deltas never crash; the verdicts of the three decoders agree, and
     * xbzrle_decode leaves the page untouched when it rejects. */
    for (code = 0; code < 20000; code++) {
        uint8_t garbage[24], page[48], copy[48];
        size_t glen = (size_t)(rng_next() % sizeof garbage), plen = (size_t)(rng_next() % 48);
        size_t vend = 0, dend = 0;
        int qemu;
        xbzrle_status v, d;
        for (i = 0; i < glen; i++) {
            /* Small values make well-formed prefixes likely. */
            garbage[i] = (uint8_t)(rng_next() % 4 == 0 ? rng_next() : rng_next() % 8);
        }
        for (i = 0; i < sizeof page; i++) {
            page[i] = (uint8_t)rng_next();
        }
        memcpy(copy, page, sizeof page);
        v = xbzrle_validate(garbage, glen, plen, &vend);
        d = xbzrle_decode(garbage, glen, page, plen, &dend);
        CHECK(v == d && (v == XBZRLE_OK || v == XBZRLE_ERR_INVALID_DELTA), "garbage verdicts");
        CHECK(v != XBZRLE_OK || vend == dend, "garbage end offsets");
        CHECK(d == XBZRLE_OK || memcmp(page, copy, sizeof page) == 0, "rejected but touched");
        CHECK(memcmp(page + plen, copy + plen, sizeof page - plen) == 0, "wrote past page");
        memcpy(page, copy, sizeof page);
        qemu = xbzrle_decode_buffer(garbage, (int)glen, page, (int)plen);
        CHECK(v == XBZRLE_OK ? qemu == (int)vend : qemu == -1, "garbage drop-in verdict");
        CHECK(memcmp(page + plen, copy + plen, sizeof page - plen) == 0, "drop-in wrote past");
    }

    /* Status descriptions: static, distinct, and a generic one for unknown codes. */
    CHECK(unknown != NULL && strlen(unknown) > 0, "strerror(unknown)");
    for (i = 0; i < sizeof all_codes / sizeof all_codes[0]; i++) {
        const char *text = xbzrle_strerror(all_codes[i]);
        CHECK(text != NULL && strlen(text) > 0 && strcmp(text, unknown) != 0, "strerror(%d)",
              all_codes[i]);
        CHECK(all_codes[i] == -(int)i, "codes are 0, -1, -2, ...: %d", all_codes[i]);
        CHECK(i == 0 || strcmp(text, xbzrle_strerror(all_codes[i - 1])) != 0,
              "strerror(%d) equals its neighbour", all_codes[i]);
    }
}

/* The bound of xbzrle_max_delta_len is reached (one-byte runs between one-byte gaps) and
 * never overflows. */
static void delta_bound(void) {
    enum { LEN = 4095 };
    static uint8_t old[LEN], new_page[LEN], out[LEN * 2];
    size_t i, len = 0;
    for (i = 0; i < LEN; i++) {
        new_page[i] = (uint8_t)(i % 2 == 0);
    }
    CHECK(xbzrle_max_delta_len(LEN) == (3 * LEN + 3) / 2, "bound %zu",
          xbzrle_max_delta_len(LEN));
    CHECK(xbzrle_max_delta_len(0) == 0, "bound of an empty page");
    CHECK(xbzrle_encode(old, new_page, LEN, out, xbzrle_max_delta_len(LEN), &len) == XBZRLE_OK &&
              len == xbzrle_max_delta_len(LEN),
          "worst-case delta %zu", len);
    CHECK(xbzrle_encode(old, new_page, LEN, out, xbzrle_max_delta_len(LEN) - 1, &len) ==
              XBZRLE_ERR_OVERFLOW,
          "one byte less overflows");
}

static void version_and_kernel(void) {
    char expected[32];
    const char *kernel = xbzrle_kernel_name();
    snprintf(expected, sizeof expected, "%d.%d.%d", XBZRLE_VERSION_MAJOR, XBZRLE_VERSION_MINOR,
             XBZRLE_VERSION_PATCH);
    CHECK(strcmp(xbzrle_version_string(), XBZRLE_VERSION_STRING) == 0, "version string %s",
          xbzrle_version_string());
    CHECK(strcmp(expected, XBZRLE_VERSION_STRING) == 0, "macros disagree: %s", expected);
    CHECK(xbzrle_version_number() == XBZRLE_VERSION_NUMBER, "version number %u",
          (unsigned)xbzrle_version_number());
    CHECK(kernel != NULL && strlen(kernel) > 0 && kernel == xbzrle_kernel_name(),
          "kernel name");
    printf("libxbzrle %s, kernel %s\n", xbzrle_version_string(), kernel);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s qemu-encode.bin qemu-decode.bin\n", argv[0]);
        return 2;
    }
    encode_vectors(argv[1]);
    decode_vectors(argv[2]);
    error_paths();
    delta_bound();
    version_and_kernel();
    return check_summary("test_codec");
}
