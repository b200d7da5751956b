//! Sender statistics: QEMU's `xbzrle-cache` figures plus totals.

use crate::stage::Stage;

/// The figures QEMU reports under `query-migrate` → `xbzrle-cache`, with QEMU's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct XbzrleCacheStats {
    /// `cache-size`: the configured cache budget in bytes.
    pub cache_size: u64,
    /// `bytes`: XBZRLE bytes sent (payload: encoding flag, length and delta; the record
    /// header is not counted, as QEMU does not count its 8-byte page header); an
    /// overflowed page counts as a full page.
    pub bytes: u64,
    /// `pages`: cache hits, i.e. pages encoded with XBZRLE, whatever the result (delta,
    /// skip or overflow).
    pub pages: u64,
    /// `cache-miss`: pages looked up after the bulk stage and not found.
    pub cache_miss: u64,
    /// `cache-miss-rate`: misses / pages processed, over the last completed period.
    pub cache_miss_rate: f64,
    /// `encoding-rate`: hits × page size / `bytes`, over the last completed period
    /// (0 when that period had no hit or no byte).
    pub encoding_rate: f64,
    /// `overflow`: hits whose delta did not fit, sent raw.
    pub overflow: u64,
}

/// Everything the sender counts. Totals run from creation; rates cover the last completed
/// *period*, which ends at every [`Sender::start_pass`](crate::Sender::start_pass) and
/// [`Sender::start_last_stage`](crate::Sender::start_last_stage) (a dirty sync), provided
/// pages were processed in it. QEMU also ends periods at dirty syncs, but at most once a
/// second; this crate has no clock. [`Sender::end_bulk_stage`](crate::Sender::end_bulk_stage)
/// is not a dirty sync and ends no period.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SenderStats {
    /// QEMU's figures.
    pub xbzrle_cache: XbzrleCacheStats,
    /// Current stage.
    pub stage: Stage,
    /// Current generation (dirty-sync count).
    pub generation: u64,
    /// Pages given to [`Sender::save_page`](crate::Sender::save_page) or
    /// [`Sender::save_zero_page`](crate::Sender::save_zero_page) successfully.
    pub pages_processed: u64,
    /// Pages sent as zero-page records (by either call).
    pub zero_pages: u64,
    /// Pages sent raw: bulk stage, cache misses and overflows.
    pub raw_pages: u64,
    /// Pages sent as XBZRLE records.
    pub xbzrle_pages: u64,
    /// Hits whose page had not changed: nothing sent.
    pub skipped_pages: u64,
    /// Bytes of every record written, headers included.
    pub wire_bytes: u64,
    /// Pages cached now.
    pub cache_pages: usize,
    /// Pages the cache can hold.
    pub cache_capacity: usize,
    /// Bytes of page data the cache has allocated (never above `cache_size`).
    pub cache_allocated_bytes: usize,
}

/// What the sender counts, per shard (behind the shard's lock, so no shared atomic is
/// written per page) and summed over the shards for [`SenderStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) processed: u64,
    pub(crate) zero: u64,
    pub(crate) raw: u64,
    pub(crate) xbzrle: u64,
    pub(crate) skipped: u64,
    pub(crate) wire_bytes: u64,
    /// QEMU's `bytes`: XBZRLE payloads, a full page per overflow.
    pub(crate) xbzrle_bytes: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) overflow: u64,
}

impl core::ops::AddAssign for Counters {
    fn add_assign(&mut self, other: Self) {
        self.processed += other.processed;
        self.zero += other.zero;
        self.raw += other.raw;
        self.xbzrle += other.xbzrle;
        self.skipped += other.skipped;
        self.wire_bytes += other.wire_bytes;
        self.xbzrle_bytes += other.xbzrle_bytes;
        self.hits += other.hits;
        self.misses += other.misses;
        self.overflow += other.overflow;
    }
}

/// The statistics periods: the totals when the previous period ended, and the rates of
/// the last completed one (QEMU's `cache-miss-rate` and `encoding-rate`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Periods {
    /// Totals at the end of the previous period.
    ended_at: Counters,
    cache_miss_rate: f64,
    encoding_rate: f64,
    /// Pages and wire bytes of the last completed period (for [`Periods::estimate`]).
    last_pages: u64,
    last_wire_bytes: u64,
}

impl Periods {
    /// Ends the period in progress at `totals`, unless no page was processed in it.
    pub(crate) fn end(&mut self, totals: Counters, page_size: usize) {
        let since = |now: u64, then: u64| now - then;
        let ended = self.ended_at;
        let pages = since(totals.processed, ended.processed);
        if pages == 0 {
            return;
        }
        self.cache_miss_rate = since(totals.misses, ended.misses) as f64 / pages as f64;
        let hits = since(totals.hits, ended.hits);
        let bytes = since(totals.xbzrle_bytes, ended.xbzrle_bytes);
        self.encoding_rate = if hits == 0 || bytes == 0 {
            0.0
        } else {
            (hits * page_size as u64) as f64 / bytes as f64
        };
        self.last_pages = pages;
        self.last_wire_bytes = since(totals.wire_bytes, ended.wire_bytes);
        self.ended_at = totals;
    }

    /// `cache-miss-rate` and `encoding-rate` of the last completed period.
    pub(crate) fn rates(&self) -> (f64, f64) {
        (self.cache_miss_rate, self.encoding_rate)
    }

    /// Estimated wire bytes for `dirty_pages` pages: the average per processed page over
    /// the last completed period, else over the period in progress (`totals` now), else
    /// `raw_record_len` per page.
    pub(crate) fn estimate(&self, totals: Counters, dirty_pages: u64, raw_record_len: u64) -> u64 {
        let (pages, bytes) = if self.last_pages != 0 {
            (self.last_pages, self.last_wire_bytes)
        } else {
            (
                totals.processed - self.ended_at.processed,
                totals.wire_bytes - self.ended_at.wire_bytes,
            )
        };
        if pages == 0 {
            return dirty_pages.saturating_mul(raw_record_len);
        }
        let estimate = u128::from(dirty_pages) * u128::from(bytes) / u128::from(pages);
        u64::try_from(estimate).unwrap_or(u64::MAX)
    }
}
