//! Sender statistics: QEMU's `xbzrle-cache` figures plus totals.

use crate::config::Stage;

/// The figures QEMU reports under `query-migrate` → `xbzrle-cache`, with QEMU's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
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
pub struct SenderStats {
    /// QEMU's figures.
    pub xbzrle_cache: XbzrleCacheStats,
    /// Current stage.
    pub stage: Stage,
    /// Current generation (dirty-sync count).
    pub generation: u64,
    /// Pages given to [`Sender::send_page`](crate::Sender::send_page) or
    /// [`Sender::send_zero_page`](crate::Sender::send_zero_page) successfully.
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
