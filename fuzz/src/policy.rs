//! Target `policy`: a whole migration through `xbzrle-policy`, sender → records → receiver.
//!
//! An input is a small guest (page size, page count, initial content, cache size, ways,
//! shards, frequency-admission parameters) and a sequence of operations: guest writes,
//! zeroed pages, passes (a dirty sync, then the dirty pages, or every page, sent),
//! single page sends in the middle of a pass, and cache resizes. The same sequence runs
//! for every cache organisation (direct-mapped; set-associative with each replacement
//! rule) and every admission policy; a last stage then sends every dirty page.
//!
//! One operation sends a page while the guest writes it between the sender's reads (a
//! [`PageSource`] that applies input-chosen writes after every read), as vCPUs do.
//!
//! Checks: `save_page` and `apply_record` never fail; every record is parsed whole; the
//! receiver's memory ends equal to the guest's; the statistics add up (every page
//! processed is counted once in its action, `wire_bytes` is the sum of the record
//! lengths, the cache never holds more bytes than its budget). For a page written during
//! its send: every byte was read exactly once, the destination page then holds exactly the
//! values read, and the cached copy (if any) equals the destination.
//!
//! Input layout: bytes `page_size - 1` (`u16`, mod 512), `pages - 1` (mod 64), `ways - 1`
//! (mod 8), shard-count log2 (mod 4), frequency `min_passes - 1` (mod 4), frequency
//! counters (`u8`, + 1), cache pages (`u8`, + 1, times the page size, plus a `u8` extra
//! bytes mod the page size), `u16` pattern length `m` and `m` pattern bytes for the
//! initial guest memory; then operations, each an opcode byte (mod 6) and its operands.

use std::cell::RefCell;

use crate::input::Reader;
use xbzrle::PageSource;
use xbzrle_policy::{Action, Admission, CacheKind, Receiver, Replacement, Sender, SenderConfig};
use xbzrle_testkit::ReadLog;

/// The guest and the configuration decoded from an input.
#[derive(Debug, Clone)]
struct Scenario<'a> {
    page_size: usize,
    pages: usize,
    ways: usize,
    shards: usize,
    min_passes: u8,
    counters: usize,
    cache_bytes: u64,
    initial: Vec<u8>,
    ops: &'a [u8],
}

impl<'a> Scenario<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let mut r = Reader::new(data);
        let page_size = 1 + usize::from(r.u16() % 512);
        let pages = 1 + usize::from(r.u8() % 64);
        let ways = 1 + usize::from(r.u8() % 8);
        let shards = 1 << (r.u8() % 4);
        let min_passes = 1 + r.u8() % 4;
        let counters = 1 + usize::from(r.u8());
        let cache_pages = 1 + u64::from(r.u8());
        let cache_bytes = cache_pages * page_size as u64 + u64::from(r.u8()) % page_size as u64;
        let pattern_len = usize::from(r.u16());
        let pattern = r.take(pattern_len);
        let mut initial = vec![0u8; page_size * pages];
        if !pattern.is_empty() {
            for (byte, &p) in initial.iter_mut().zip(pattern.iter().cycle()) {
                *byte = p;
            }
        }
        Self {
            page_size,
            pages,
            ways,
            shards,
            min_passes,
            counters,
            cache_bytes,
            initial,
            ops: r.rest(),
        }
    }

    /// Every cache organisation and admission policy, with this scenario's parameters.
    fn configs(&self) -> Vec<SenderConfig> {
        let caches = [
            CacheKind::DirectMapped,
            CacheKind::SetAssociative {
                ways: self.ways,
                replacement: Replacement::Lru,
            },
            CacheKind::SetAssociative {
                ways: self.ways,
                replacement: Replacement::Lifetime,
            },
            CacheKind::SetAssociative {
                ways: self.ways,
                replacement: Replacement::Frequency,
            },
        ];
        let admissions = [
            Admission::Always,
            Admission::AfterBulk,
            Admission::Frequency {
                min_passes: self.min_passes,
                counters: self.counters,
            },
        ];
        let mut configs = Vec::new();
        for cache in caches {
            for admission in admissions {
                configs.push(
                    SenderConfig::default()
                        .with_page_size(self.page_size)
                        .with_cache_bytes(self.cache_bytes)
                        .with_cache(cache)
                        .with_admission(admission)
                        .with_shards(self.shards),
                );
            }
        }
        configs
    }
}

/// One migration: guest memory with its dirty pages, the sender, the destination.
struct Migration {
    page_size: usize,
    guest: Vec<u8>,
    dirty: Vec<bool>,
    sender: Sender,
    receiver: Receiver,
    dest: Vec<u8>,
    record: Vec<u8>,
    sends: u64,
    wire_bytes: u64,
}

impl Migration {
    fn new(scenario: &Scenario<'_>, config: SenderConfig) -> Self {
        let sender = Sender::new(config.clone())
            .unwrap_or_else(|e| panic!("valid config {config:?} rejected: {e}"));
        let record = vec![0u8; sender.max_record_len()];
        Self {
            page_size: scenario.page_size,
            guest: scenario.initial.clone(),
            dirty: vec![true; scenario.pages],
            receiver: Receiver::new(scenario.page_size).expect("valid page size"),
            dest: vec![0u8; scenario.initial.len()],
            sender,
            record,
            sends: 0,
            wire_bytes: 0,
        }
    }

    fn page(&self, page: usize) -> &[u8] {
        &self.guest[page * self.page_size..][..self.page_size]
    }

    fn page_mut(&mut self, page: usize) -> &mut [u8] {
        self.dirty[page] = true;
        &mut self.guest[page * self.page_size..][..self.page_size]
    }

    /// Sends page `page` and applies its record at the destination.
    fn send(&mut self, page: usize) {
        let data = &self.guest[page * self.page_size..][..self.page_size];
        let sent = self
            .sender
            .save_page(page as u64, data, &mut self.record)
            .unwrap_or_else(|e| panic!("save_page({page}) failed: {e}"));
        self.dirty[page] = false;
        self.sends += 1;
        self.wire_bytes += sent.record_len as u64;
        if sent.action == Action::Skipped {
            assert_eq!(sent.record_len, 0, "a skipped page wrote a record");
            assert!(
                self.page(page) == &self.dest[page * self.page_size..][..self.page_size],
                "page {page} skipped but the destination differs"
            );
            return;
        }
        let applied = self
            .receiver
            .apply_record(&self.record[..sent.record_len], &mut self.dest)
            .unwrap_or_else(|e| panic!("page {page} ({:?}): record rejected: {e}", sent.action));
        assert_eq!(applied.page, page as u64, "record for the wrong page");
        assert_eq!(applied.consumed, sent.record_len, "record not parsed whole");
    }

    /// Sends page `page` while the guest writes it between the sender's reads as `plan`
    /// says (see [`RacingPage`]), and applies its record at the destination.
    fn send_racing(&mut self, page: usize, plan: &[u8]) {
        let range = page * self.page_size..(page + 1) * self.page_size;
        let racing = RacingPage::new(&mut self.guest[range.clone()], plan);
        let sent = self
            .sender
            .save_page(page as u64, &racing, &mut self.record)
            .unwrap_or_else(|e| panic!("save_page({page}) failed: {e}"));
        let log = racing.finish();
        if let Some((at, n)) = log.not_read_once() {
            panic!("page {page} ({:?}): byte {at} read {n} times", sent.action);
        }
        let returned = log.into_returned();
        // The guest's writes after the reads leave the page dirty.
        self.dirty[page] = self.guest[range.clone()] != returned[..];
        self.sends += 1;
        self.wire_bytes += sent.record_len as u64;
        if sent.record_len > 0 {
            self.receiver
                .apply_record(&self.record[..sent.record_len], &mut self.dest)
                .unwrap_or_else(|e| panic!("page {page}: record rejected: {e}"));
        }
        let dest = &self.dest[range];
        assert!(
            dest == returned,
            "page {page} ({:?}): the destination is not what was read",
            sent.action
        );
        if let Some((cached, _)) = self.sender.cached_page(page as u64) {
            assert!(
                cached == dest,
                "page {page} ({:?}): cache and destination disagree",
                sent.action
            );
        }
    }

    /// A dirty sync, then every dirty page (or every page) sent.
    fn pass(&mut self, every_page: bool) {
        self.sender.start_pass();
        for page in 0..self.dirty.len() {
            if every_page || self.dirty[page] {
                self.send(page);
            }
        }
    }

    fn check_stats(&self) {
        let stats = self.sender.stats();
        assert_eq!(stats.pages_processed, self.sends, "pages_processed");
        assert_eq!(
            stats.zero_pages + stats.raw_pages + stats.xbzrle_pages + stats.skipped_pages,
            self.sends,
            "action counts do not add up: {stats:?}"
        );
        assert_eq!(stats.wire_bytes, self.wire_bytes, "wire_bytes");
        assert!(
            stats.cache_allocated_bytes as u64 <= stats.xbzrle_cache.cache_size,
            "cache holds more than its budget: {stats:?}"
        );
    }
}

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let scenario = Scenario::parse(data);
    for config in scenario.configs() {
        let mut m = Migration::new(&scenario, config);
        let mut ops = Reader::new(scenario.ops);
        while !ops.is_empty() {
            match ops.u8() % 6 {
                0 => {
                    let page = usize::from(ops.u8()) % scenario.pages;
                    let at = usize::from(ops.u16()) % scenario.page_size;
                    let len = usize::from(ops.u8());
                    let bytes = ops.take(len);
                    let dst = &mut m.page_mut(page)[at..];
                    let n = bytes.len().min(dst.len());
                    dst[..n].copy_from_slice(&bytes[..n]);
                }
                1 => {
                    let page = usize::from(ops.u8()) % scenario.pages;
                    m.page_mut(page).fill(0);
                }
                2 => {
                    let every_page = ops.u8() & 1 != 0;
                    m.pass(every_page);
                }
                3 => {
                    let page = usize::from(ops.u8()) % scenario.pages;
                    m.send(page);
                }
                4 => {
                    let page = usize::from(ops.u8()) % scenario.pages;
                    let len = usize::from(ops.u8());
                    m.send_racing(page, ops.take(len));
                }
                _ => {
                    let pages = 1 + u64::from(ops.u8());
                    m.sender
                        .resize_cache(pages * scenario.page_size as u64)
                        .expect("a budget of at least one page is valid");
                }
            }
            m.check_stats();
        }
        m.sender.start_last_stage();
        for page in 0..scenario.pages {
            if m.dirty[page] {
                m.send(page);
            }
        }
        m.check_stats();
        assert!(
            m.dest == m.guest,
            "destination differs from the guest after the last stage"
        );
    }
}

/// A guest page that the guest writes between any two reads of the sender, following a
/// plan from the input: before each read's return, one plan byte `n` (mod 4) says how many
/// writes follow, each an offset (`u16`, mod the page size) and a value; an exhausted plan
/// writes nothing more. Records how often each byte was read and what its first read
/// returned; the writes stay in guest memory.
struct RacingPage<'a> {
    state: RefCell<RacingState<'a>>,
}

struct RacingState<'a> {
    memory: &'a mut [u8],
    plan: Reader<'a>,
    log: ReadLog,
}

impl<'a> RacingPage<'a> {
    fn new(memory: &'a mut [u8], plan: &'a [u8]) -> Self {
        Self {
            state: RefCell::new(RacingState {
                log: ReadLog::new(memory),
                memory,
                plan: Reader::new(plan),
            }),
        }
    }

    /// What was read: each byte's read count and the value its first read returned.
    fn finish(self) -> ReadLog {
        self.state.into_inner().log
    }
}

impl PageSource for RacingPage<'_> {
    fn len(&self) -> usize {
        self.state.borrow().memory.len()
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        dst.copy_from_slice(&state.memory[at..at + dst.len()]);
        state.log.record(at, dst);
        let len = state.memory.len();
        for _ in 0..state.plan.u8() % 4 {
            let offset = usize::from(state.plan.u16()) % len;
            state.memory[offset] = state.plan.u8();
        }
    }
}
