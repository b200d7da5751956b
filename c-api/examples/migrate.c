/*
 * migrate.c: a QEMU-like live migration of a buffer of "guest RAM" through libxbzrle.
 *
 * The source side runs a sender over dirty pages pass after pass while a dirtying loop keeps
 * writing to the RAM (the running guest); records go over an in-memory "wire" to the
 * receiving side, which applies them to its copy. After the last stage (guest stopped) both
 * copies must be identical. Prints QEMU-style xbzrle-cache statistics.
 *
 * Like QEMU's migration/ram.c, the caller checks every dirty page for zeros itself
 * (buffer_is_zero) and sends a zero page with xbzrle_sender_save_zero_page, and it ends the
 * bulk stage itself when its walk over RAM wraps around for the first time
 * (xbzrle_started): the guest keeps running during a pass, so the walk goes on from page 0
 * with the pages written meanwhile, which are then already looked up in the cache.
 *
 * Build:  cc -std=c99 migrate.c $(pkg-config --cflags --libs xbzrle) -o migrate
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xbzrle.h>

enum { PAGE_SIZE = 4096, RAM_PAGES = 1024, HOT_PAGES = 96, CACHE_PAGES = 128, PASSES = 10 };

static uint64_t seed = 0x2545f4914f6cdd1du;
static uint64_t next_random(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

/* The guest: a hot working set (the first HOT_PAGES pages) written most passes, the rest
 * touched rarely. */
static void guest_runs(uint8_t *ram, uint8_t *dirty) {
    size_t p, k;
    for (p = 0; p < RAM_PAGES; p++) {
        uint64_t roll = next_random() % 1000;
        uint8_t *page = ram + p * PAGE_SIZE;
        if ((p < HOT_PAGES && roll < 800) || roll < 20) { /* a few small writes */
            size_t writes = 1 + next_random() % 16, at = next_random() % PAGE_SIZE;
            for (k = 0; k < writes; k++) {
                page[(at + k * 64) % PAGE_SIZE] = (uint8_t)next_random();
            }
            dirty[p] = 1;
        } else if (roll < 25) { /* the whole page rewritten */
            for (k = 0; k < PAGE_SIZE; k++) {
                page[k] = (uint8_t)next_random();
            }
            dirty[p] = 1;
        } else if (roll < 27) { /* freed: zeroed */
            memset(page, 0, PAGE_SIZE);
            dirty[p] = 1;
        }
    }
}

/* QEMU's buffer_is_zero. */
static int buffer_is_zero(const uint8_t *p, size_t len) {
    size_t i;
    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static int fail(const char *what, xbzrle_status status) {
    fprintf(stderr, "migrate: %s: %s\n", what, xbzrle_strerror(status));
    return 1;
}

int main(void) {
    const size_t ram_len = (size_t)RAM_PAGES * PAGE_SIZE;
    uint8_t *src = malloc(ram_len), *dst = calloc(ram_len, 1), *dirty = malloc(RAM_PAGES);
    uint8_t *wire = NULL;
    size_t wire_cap, wire_len, p, k, step;
    unsigned long long zero_pages = 0;
    xbzrle_sender_config config;
    xbzrle_sender *sender = NULL;
    xbzrle_receiver *receiver = NULL;
    xbzrle_sender_stats stats;
    xbzrle_status status;
    int pass, rc = 0;

    if (!src || !dst || !dirty) {
        return 1;
    }
    for (k = 0; k < ram_len; k++) {
        src[k] = (uint8_t)next_random();
    }
    memset(dirty, 1, RAM_PAGES); /* the bulk stage sends everything */

    xbzrle_sender_config_default(&config);
    config.page_size = PAGE_SIZE;
    config.cache_bytes = (uint64_t)CACHE_PAGES * PAGE_SIZE;
    if ((status = xbzrle_sender_new(&config, &sender)) != XBZRLE_OK) {
        return fail("xbzrle_sender_new", status);
    }
    if ((status = xbzrle_receiver_new(PAGE_SIZE, &receiver)) != XBZRLE_OK) {
        xbzrle_sender_free(sender);
        return fail("xbzrle_receiver_new", status);
    }
    /* One pass's records are buffered on the wire; a pass walks RAM at most twice, so
     * 2 * RAM_PAGES records always fit. */
    wire_cap = (size_t)2 * RAM_PAGES * xbzrle_sender_max_record_len(sender);
    wire = malloc(wire_cap);
    if (!wire) {
        return 1;
    }
    printf("libxbzrle %s, kernel %s\n", xbzrle_version_string(), xbzrle_kernel_name());

    for (pass = 0; pass <= PASSES && rc == 0; pass++) {
        int last = pass == PASSES;
        size_t sent_pages = 0, offset = 0;
        /* Dirty sync: a new pass, or the last stage with the guest stopped. */
        status = last ? xbzrle_sender_start_last_stage(sender) : xbzrle_sender_start_pass(sender);
        if (status != XBZRLE_OK) {
            rc = fail("sync", status);
            break;
        }
        wire_len = 0;
        /* The walk over RAM: one lap, then (guest running) a second lap for the pages the
         * guest wrote behind the walk during the first. */
        for (step = 0; step < (last ? 1u : 2u) * RAM_PAGES && rc == 0; step++) {
            xbzrle_sent sent;
            uint8_t *page;
            p = step % RAM_PAGES;
            if (step == RAM_PAGES) {
                /* The walk wrapped around: the first complete pass over RAM is over, QEMU
                 * sets xbzrle_started. Later calls have no effect. */
                if ((status = xbzrle_sender_end_bulk_stage(sender)) != XBZRLE_OK) {
                    rc = fail("xbzrle_sender_end_bulk_stage", status);
                    break;
                }
            }
            if (!last && step == RAM_PAGES / 2) {
                guest_runs(src, dirty); /* the guest keeps running during the pass */
            }
            if (!dirty[p]) {
                continue;
            }
            dirty[p] = 0;
            page = src + p * PAGE_SIZE;
            if (buffer_is_zero(page, PAGE_SIZE)) {
                /* Zero page found by the caller: no need to pass the bytes again. */
                status = xbzrle_sender_save_zero_page(sender, p, wire + wire_len,
                                                      wire_cap - wire_len, &sent);
                zero_pages++;
            } else {
                status = xbzrle_sender_save_page(sender, p, page, PAGE_SIZE, wire + wire_len,
                                                 wire_cap - wire_len, &sent);
            }
            if (status != XBZRLE_OK) {
                rc = fail("saving a page", status);
                break;
            }
            wire_len += sent.record_len;
            sent_pages += sent.action != XBZRLE_ACTION_SKIPPED;
        }
        /* The destination consumes the stream record by record. */
        while (rc == 0 && offset < wire_len) {
            size_t consumed = 0;
            status = xbzrle_receiver_apply_record(receiver, wire + offset, wire_len - offset, dst,
                                                  ram_len, NULL, &consumed);
            if (status != XBZRLE_OK) {
                rc = fail("xbzrle_receiver_apply_record", status);
                break;
            }
            offset += consumed;
        }
        xbzrle_sender_get_stats(sender, &stats, sizeof(xbzrle_sender_stats));
        printf("pass %2d%s: %4zu pages sent, %8zu wire bytes | xbzrle pages %llu, "
               "cache-miss %llu, overflow %llu, zero %llu, encoding-rate %.1f\n",
               pass, last ? " (last)" : "", sent_pages, wire_len,
               (unsigned long long)stats.xbzrle_pages, (unsigned long long)stats.cache_miss,
               (unsigned long long)stats.overflow, (unsigned long long)stats.zero_pages,
               stats.encoding_rate);
        if (!last) {
            guest_runs(src, dirty);
        }
    }

    if (rc == 0 && memcmp(src, dst, ram_len) != 0) {
        fprintf(stderr, "migrate: destination RAM differs from source\n");
        rc = 1;
    }
    if (rc == 0 && stats.xbzrle_pages == 0) {
        fprintf(stderr, "migrate: no page went as XBZRLE\n");
        rc = 1;
    }
    if (rc == 0 && (zero_pages == 0 || stats.zero_pages != zero_pages)) {
        fprintf(stderr, "migrate: %llu zero pages sent, the sender counted %llu\n", zero_pages,
                (unsigned long long)stats.zero_pages);
        rc = 1;
    }
    if (rc == 0) {
        printf("migrate: OK, %zu bytes of RAM identical on both sides\n", ram_len);
    }
    xbzrle_sender_free(sender);
    xbzrle_receiver_free(receiver);
    free(src);
    free(dst);
    free(dirty);
    free(wire);
    return rc;
}
