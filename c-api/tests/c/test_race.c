/*
 * The sender on guest memory that vCPUs write during the call, with POSIX threads, as a
 * hypervisor uses it: "vCPU" threads keep writing the guest pages (toggling bytes, now and
 * then rewriting a whole page so that deltas overflow, or zeroing a page) while migration
 * threads call xbzrle_sender_save_page straight on guest memory, pass after pass, and a
 * receiver applies every record with xbzrle_receiver_apply_record. A spinning thread makes
 * the scheduler preempt the saving threads inside calls. After every save the sender's
 * cached copy must equal the destination page (xbzrle_sender_cached_page); at the end the
 * writers stop, the last stage resends every page, and source and destination must be
 * equal - in every one of many short migrations, for every cache setup, with one shard and
 * one saving thread and with two shards and two saving threads.
 *
 * Usage: test_race [migrations per setup] (default 8).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <time.h>
#include <xbzrle.h>

#include "check.h"

#define PAGE 4096u
#define PAGES 16u
/* Wall time each migration's channels keep saving: long enough for the scheduler to
 * preempt them many times (its time slices are milliseconds). */
#define MIGRATION_NS 120000000ll

struct migration {
    uint8_t *guest;       /* source RAM, written by the vCPUs through volatile stores */
    uint8_t *destination; /* destination RAM */
    struct xbzrle_sender *sender;
    struct xbzrle_receiver *receiver;
    unsigned channels;
    /* Written while threads run: accessed with __atomic builtins until they are joined. */
    int stop;
    int vcpus_running;
    /* Saves after which the cached copy differed from the destination. */
    unsigned desynchronised;
    int failed;
};

struct worker {
    struct migration *m;
    unsigned index;
    uint64_t rng;
};

static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A vCPU: writes guest memory until told to stop. Its writes often put back a value the
 * page held before (a toggled byte, one of two half-page patterns): a cache entry that
 * missed a write then looks up to date, so a sender whose cache and record came from two
 * different reads leaves the destination wrong for good. */
static void *vcpu(void *arg) {
    struct worker *w = arg;
    volatile uint8_t *guest = w->m->guest;
    __atomic_fetch_add(&w->m->vcpus_running, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&w->m->stop, __ATOMIC_SEQ_CST)) {
        uint64_t r = next_random(&w->rng);
        size_t page = (size_t)(r % PAGES) * PAGE;
        uint8_t pattern = (r >> 40) & 1 ? 0xA5 : 0x5A;
        switch ((r >> 8) % 16) {
        case 0: /* the page rewritten with one of two patterns: an overflow when cached */
            for (size_t i = 0; i < PAGE; i++) {
                guest[page + i] = (uint8_t)(pattern ^ i);
            }
            break;
        case 1: /* a zero page */
            for (size_t i = 0; i < PAGE; i++) {
                guest[page + i] = 0;
            }
            break;
        default: /* one of a few bytes toggled */
            guest[page + (size_t)((r >> 16) % 4) * (PAGE / 4)] ^= 1;
            break;
        }
    }
    return NULL;
}

/* Keeps a core busy so that saving threads get preempted in the middle of calls. */
static void *spinner(void *arg) {
    struct migration *m = arg;
    volatile uint64_t n = 0;
    while (!__atomic_load_n(&m->stop, __ATOMIC_SEQ_CST)) {
        n++;
    }
    return NULL;
}

/* Saves `page` from guest memory, applies the record to the destination and checks that
 * the sender's cached copy (if any) is what the destination now holds. */
static int save(struct migration *m, uint64_t page, uint8_t *out, size_t out_cap) {
    struct xbzrle_sent sent;
    enum xbzrle_status st = xbzrle_sender_save_page(m->sender, page, m->guest + page * PAGE,
                                                    PAGE, out, out_cap, &sent);
    if (st != XBZRLE_OK) {
        fprintf(stderr, "save_page(%llu): %s\n", (unsigned long long)page, xbzrle_strerror(st));
        return -1;
    }
    if (sent.record_len > 0) {
        uint64_t applied_page;
        size_t consumed;
        st = xbzrle_receiver_apply_record(m->receiver, out, sent.record_len, m->destination,
                                          (size_t)PAGES * PAGE, &applied_page, &consumed);
        if (st != XBZRLE_OK || applied_page != page || consumed != sent.record_len) {
            fprintf(stderr, "apply_record(%llu): %s\n", (unsigned long long)page,
                    xbzrle_strerror(st));
            return -1;
        }
    }
    uint8_t cached_copy[PAGE];
    int cached = 0;
    st = xbzrle_sender_cached_page(m->sender, page, cached_copy, PAGE, &cached, NULL);
    if (st != XBZRLE_OK) {
        fprintf(stderr, "cached_page(%llu): %s\n", (unsigned long long)page, xbzrle_strerror(st));
        return -1;
    }
    if (cached && memcmp(cached_copy, m->destination + page * PAGE, PAGE) != 0) {
        __atomic_fetch_add(&m->desynchronised, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000ll + t.tv_nsec;
}

/* A migration channel: once the vCPUs run, saves its pages (page % channels == index) in
 * random order for MIGRATION_NS. */
static void *channel(void *arg) {
    struct worker *w = arg;
    struct migration *m = w->m;
    size_t out_cap = xbzrle_sender_max_record_len(m->sender);
    uint8_t *out = xmalloc(out_cap);
    while (__atomic_load_n(&m->vcpus_running, __ATOMIC_SEQ_CST) < 2) {
        /* The vCPUs have not started yet. */
    }
    long long end = now_ns() + MIGRATION_NS;
    for (unsigned i = 0; now_ns() < end; i++) {
        uint64_t page = next_random(&w->rng) % PAGES;
        page = page - page % m->channels + w->index;
        if (page >= PAGES) {
            continue;
        }
        if (save(m, page, out, out_cap) != 0) {
            __atomic_store_n(&m->failed, 1, __ATOMIC_SEQ_CST);
            break;
        }
        /* Channel 0 makes a dirty sync now and then (a new pass). */
        if (w->index == 0 && i % (PAGES * 2) == 0) {
            xbzrle_sender_start_pass(m->sender);
        }
    }
    free(out);
    return NULL;
}

/* One migration under `config` with `channels` saving threads; returns the number of
 * destination pages that differ from the source at the end plus the number of saves that
 * left the cache and the destination apart (or PAGES + 1 on an error). */
static unsigned migrate(const struct xbzrle_sender_config *config, unsigned channels,
                        uint64_t seed) {
    struct migration m;
    memset(&m, 0, sizeof m);
    m.channels = channels;
    m.guest = xmalloc((size_t)PAGES * PAGE);
    m.destination = xmalloc((size_t)PAGES * PAGE);
    memset(m.destination, 0, (size_t)PAGES * PAGE);
    for (size_t i = 0; i < (size_t)PAGES * PAGE; i++) {
        m.guest[i] = (uint8_t)next_random(&seed);
    }
    if (xbzrle_sender_new(config, &m.sender) != XBZRLE_OK ||
        xbzrle_receiver_new(PAGE, &m.receiver) != XBZRLE_OK) {
        fprintf(stderr, "cannot create the sender or the receiver\n");
        exit(2);
    }
    xbzrle_sender_start_pass(m.sender);
    struct worker vcpus[2], channel_workers[2];
    pthread_t vcpu_threads[2], channel_threads[2], spin;
    for (unsigned i = 0; i < 2; i++) {
        vcpus[i] = (struct worker){&m, i, seed + 101 * i};
        pthread_create(&vcpu_threads[i], NULL, vcpu, &vcpus[i]);
    }
    pthread_create(&spin, NULL, spinner, &m);
    for (unsigned i = 0; i < channels; i++) {
        channel_workers[i] = (struct worker){&m, i, seed * 7 + i};
        pthread_create(&channel_threads[i], NULL, channel, &channel_workers[i]);
    }
    for (unsigned i = 0; i < channels; i++) {
        pthread_join(channel_threads[i], NULL);
    }
    __atomic_store_n(&m.stop, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < 2; i++) {
        pthread_join(vcpu_threads[i], NULL);
    }
    pthread_join(spin, NULL);

    /* The guest is stopped: the last stage resends every page. */
    unsigned differing = 0;
    size_t out_cap = xbzrle_sender_max_record_len(m.sender);
    uint8_t *out = xmalloc(out_cap);
    xbzrle_sender_start_last_stage(m.sender);
    for (uint64_t page = 0; page < PAGES && !m.failed; page++) {
        if (save(&m, page, out, out_cap) != 0) {
            m.failed = 1;
        }
    }
    for (size_t page = 0; page < PAGES; page++) {
        differing += memcmp(m.guest + page * PAGE, m.destination + page * PAGE, PAGE) != 0;
    }
    free(out);
    xbzrle_sender_free(m.sender);
    xbzrle_receiver_free(m.receiver);
    free(m.guest);
    free(m.destination);
    if (differing) {
        fprintf(stderr, "%u pages differ after the last stage\n", differing);
    }
    if (m.desynchronised) {
        fprintf(stderr, "%u saves left the cache and the destination apart\n", m.desynchronised);
    }
    return m.failed ? PAGES + 1 : differing + m.desynchronised;
}

int main(int argc, char **argv) {
    unsigned migrations = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 8;
    struct setup {
        const char *name;
        uint32_t cache_kind, admission;
        uint64_t cache_pages;
    } setups[] = {
        {"direct-mapped 16 slots, after-bulk", XBZRLE_CACHE_DIRECT_MAPPED,
         XBZRLE_ADMIT_AFTER_BULK, 16},
        {"direct-mapped 8 slots, after-bulk", XBZRLE_CACHE_DIRECT_MAPPED,
         XBZRLE_ADMIT_AFTER_BULK, 8},
        {"direct-mapped 8 slots, admit always", XBZRLE_CACHE_DIRECT_MAPPED, XBZRLE_ADMIT_ALWAYS,
         8},
        {"4-way set-associative 8 pages, after-bulk", XBZRLE_CACHE_SET_ASSOCIATIVE,
         XBZRLE_ADMIT_AFTER_BULK, 8},
        {"4-way set-associative 8 pages, frequency", XBZRLE_CACHE_SET_ASSOCIATIVE,
         XBZRLE_ADMIT_FREQUENCY, 8},
    };
    for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
        for (unsigned channels = 1; channels <= 2; channels++) {
            struct xbzrle_sender_config config;
            xbzrle_sender_config_default(&config);
            config.page_size = PAGE;
            config.cache_kind = setups[s].cache_kind;
            config.ways = 4;
            config.admission = setups[s].admission;
            config.admission_min_passes = 1;
            config.cache_bytes = setups[s].cache_pages * PAGE;
            config.shards = channels;
            unsigned wrong_migrations = 0;
            for (unsigned i = 0; i < migrations; i++) {
                wrong_migrations += migrate(&config, channels, 1000 * s + 10 * channels + i) != 0;
            }
            printf("%s, %u shard(s) and saving thread(s): %u of %u migrations went wrong\n",
                   setups[s].name, channels, wrong_migrations, migrations);
            CHECK(wrong_migrations == 0, "%s, %u channel(s): %u of %u migrations went wrong",
                  setups[s].name, channels, wrong_migrations, migrations);
        }
    }
    return check_summary("test_race");
}
