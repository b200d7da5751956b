/* Minimal assertion helpers shared by the C tests: count failures, report the first ones. */
#ifndef XBZRLE_TEST_CHECK_H
#define XBZRLE_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond)) {                                                         \
            if (check_failures++ < 20) {                                       \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__,         \
                        __LINE__, #cond);                                      \
                fprintf(stderr, __VA_ARGS__);                                  \
                fputc('\n', stderr);                                           \
            }                                                                  \
        }                                                                      \
    } while (0)

/* Returns 0 when every check passed, 1 otherwise, after printing a summary. */
static inline int check_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

/* malloc that never returns NULL for a size of 0 (the API rejects NULL buffers). */
static inline uint8_t *xmalloc(size_t len) {
    uint8_t *p = (uint8_t *)malloc(len ? len : 1);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    return p;
}

/* Reads a whole file; exits on error. */
static inline uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    long size;
    uint8_t *data;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(2);
    }
    data = xmalloc((size_t)size);
    if (fread(data, 1, (size_t)size, f) != (size_t)size) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* Little-endian reader over a byte buffer; exits when the file is cut short. */
struct reader {
    const uint8_t *data;
    size_t len, pos;
};

static inline const uint8_t *take(struct reader *r, size_t n) {
    const uint8_t *p;
    if (r->len - r->pos < n) {
        fprintf(stderr, "vector file is cut short at byte %zu\n", r->pos);
        exit(2);
    }
    p = r->data + r->pos;
    r->pos += n;
    return p;
}

static inline uint32_t take_u32(struct reader *r) {
    const uint8_t *p = take(r, 4);
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline int32_t take_i32(struct reader *r) {
    uint32_t u = take_u32(r);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Deterministic xorshift generator for the tests. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static inline uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#endif
