//! What a simulated migration produces: the convergence checks, the passes, QEMU's
//! figures, convergence and the destination check of each policy.

use serde::Serialize;

use super::settings::Rule;

/// The convergence check at a dirty sync.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Check {
    /// Dirty pages x page size.
    pub(crate) dirty_bytes: u64,
    /// Bandwidth x downtime limit.
    pub(crate) threshold_bytes: u64,
    /// Whether QEMU's rule holds.
    pub(crate) qemu_rule: bool,
    /// The sender's estimate of the bytes to send the dirty set now (none until a pass
    /// after the bulk stage has been measured).
    pub(crate) estimated_bytes: Option<u64>,
    /// Whether the estimate rule holds.
    pub(crate) estimate_rule: bool,
}

impl Check {
    /// Whether `rule` holds.
    pub(crate) fn holds(&self, rule: Rule) -> bool {
        match rule {
            Rule::Qemu => self.qemu_rule,
            Rule::Estimate => self.estimate_rule,
        }
    }
}

/// Why the guest was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StopReason {
    /// QEMU's rule held (chosen with `--converge qemu`).
    QemuRule,
    /// The estimate rule held (chosen with `--converge estimate`).
    EstimateRule,
    /// `--max-passes` passes after the first were done.
    MaxPasses,
    /// `--max-time` simulated seconds had passed.
    MaxTime,
    /// A replay ran out of snapshots: the last one is the last stage.
    LastSnapshot,
}

impl StopReason {
    /// Stopped because `rule` held.
    pub(crate) fn converged(rule: Rule) -> Self {
        match rule {
            Rule::Qemu => Self::QemuRule,
            Rule::Estimate => Self::EstimateRule,
        }
    }

    /// For tables.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::QemuRule => "converged (qemu rule)",
            Self::EstimateRule => "converged (estimate rule)",
            Self::MaxPasses => "forced: --max-passes",
            Self::MaxTime => "forced: --max-time",
            Self::LastSnapshot => "last snapshot",
        }
    }
}

/// What one pass sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PassRecord {
    /// 0 for the first pass.
    pub(crate) pass: usize,
    /// The sender's stage: `bulk`, `iterative` or `last`.
    pub(crate) stage: &'static str,
    /// Simulated time at the start of the pass, seconds.
    pub(crate) start_s: f64,
    /// Simulated duration, seconds.
    pub(crate) duration_s: f64,
    /// Dirty pages sent.
    pub(crate) dirty_pages: u64,
    /// Bytes of records sent.
    pub(crate) wire_bytes: u64,
    /// Zero-page records.
    pub(crate) zero_pages: u64,
    /// Raw-page records.
    pub(crate) raw_pages: u64,
    /// XBZRLE records.
    pub(crate) xbzrle_records: u64,
    /// Cached and unchanged: nothing sent.
    pub(crate) skipped_pages: u64,
    /// Cache hits (QEMU's `xbzrle pages`).
    pub(crate) cache_hits: u64,
    /// Cache misses.
    pub(crate) cache_misses: u64,
    /// The convergence check at the sync before this pass (none before the first).
    pub(crate) check: Option<Check>,
}

/// The rows of QEMU's `info migrate` that commit 5cc11c46 compared, plus the two rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Table {
    /// Simulated time from start to end, ms.
    pub(crate) total_time_ms: u64,
    /// Simulated time the guest was stopped, ms.
    pub(crate) downtime_ms: u64,
    /// Bytes of records sent, KiB.
    pub(crate) transferred_ram_kib: u64,
    /// Dirty bytes not sent at the end, KiB.
    pub(crate) remaining_ram_kib: u64,
    /// Guest RAM, KiB.
    pub(crate) total_ram_kib: u64,
    /// Zero-page records.
    pub(crate) duplicate_pages: u64,
    /// Raw-page records.
    pub(crate) normal_pages: u64,
    /// Raw pages x page size, KiB.
    pub(crate) normal_bytes_kib: u64,
    /// Cache budget, bytes.
    pub(crate) cache_size_bytes: u64,
    /// XBZRLE payload bytes (overflows count a page), KiB.
    pub(crate) xbzrle_transferred_kib: u64,
    /// Cache hits.
    pub(crate) xbzrle_pages: u64,
    /// Cache misses.
    pub(crate) xbzrle_cache_miss: u64,
    /// Hits whose delta did not fit a page.
    pub(crate) xbzrle_overflow: u64,
    /// Misses / pages processed in the last pass before the last stage.
    pub(crate) cache_miss_rate: f64,
    /// Hits x page size / XBZRLE bytes in the last pass before the last stage.
    pub(crate) encoding_rate: f64,
}

/// When each rule would first have let the guest stop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Converged {
    /// The pass that would have been the last stage.
    pub(crate) pass: usize,
    /// Simulated time of that sync, seconds.
    pub(crate) time_s: f64,
}

/// Convergence of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Convergence {
    /// First sync at which QEMU's rule held (none: never during the run).
    pub(crate) qemu_rule: Option<Converged>,
    /// First sync at which the estimate rule held.
    pub(crate) estimate_rule: Option<Converged>,
    /// Why the guest was stopped.
    pub(crate) stopped_by: StopReason,
    /// The sender's estimate for the last stage, when it had one.
    pub(crate) last_stage_estimated_bytes: Option<u64>,
    /// Bytes the last stage really sent.
    pub(crate) last_stage_bytes: u64,
}

/// The page-by-page comparison of destination and source at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Verification {
    /// No page differs.
    pub(crate) verified: bool,
    /// Pages compared.
    pub(crate) pages_compared: u64,
    /// Pages that differ.
    pub(crate) mismatched_pages: u64,
    /// The first of them.
    pub(crate) first_mismatches: Vec<u64>,
    /// Destination pages holding memory (the others are zero and cost nothing).
    pub(crate) allocated_pages: u64,
}

/// Everything one policy's run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PolicyResult {
    /// Policy name.
    pub(crate) policy: String,
    /// What the policy is.
    pub(crate) description: String,
    /// QEMU's figures.
    pub(crate) table: Table,
    /// Bytes of records sent (= received and applied).
    pub(crate) wire_bytes: u64,
    /// Of those, bytes sent after the first pass: where policies differ (the first pass
    /// sends every page raw or as a zero page under any policy).
    pub(crate) wire_bytes_after_first_pass: u64,
    /// XBZRLE records sent.
    pub(crate) xbzrle_records: u64,
    /// Hits whose page was unchanged (nothing sent).
    pub(crate) skipped_pages: u64,
    /// Passes between the first pass and the last stage.
    pub(crate) iterative_passes: usize,
    /// Convergence.
    pub(crate) convergence: Convergence,
    /// Destination check.
    pub(crate) destination: Verification,
    /// Pass by pass, first pass to last stage.
    pub(crate) passes: Vec<PassRecord>,
}
