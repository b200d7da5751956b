//! The migration model: passes over the dirty set, the convergence rules, the last stage,
//! and the wire between the real [`Sender`] and the real [`Receiver`].

use anyhow::{Context, anyhow, ensure};
use indicatif::ProgressBar;
use serde::Serialize;
use xbzrle_policy::wire::{Body, Record};
use xbzrle_policy::{Receiver, Sender, SenderStats, Stage};
use xbzrle_workloads::snapshots::SnapshotSeries;

use super::guest::Guest;
use super::memory::{DirtyLog, GuestMemory, Image, PageSource, differing_pages};
use crate::policy::Policy;

/// The guest runs in steps of at most this much simulated time (1 ms, about 8 raw pages
/// at 32 MiB/s): the granularity of "was the page written before or after it was sent".
const GUEST_QUANTUM: f64 = 1e-3;

/// Records travel in batches of about this many bytes before the receiver applies them.
const WIRE_BATCH: usize = 4 << 20;

/// How many mismatching page numbers a report lists.
const MISMATCHES_LISTED: usize = 16;

/// When the source may stop the guest and finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Rule {
    /// QEMU: when the raw dirty set (dirty pages x page size) fits in bandwidth x downtime
    /// limit; XBZRLE's savings never count.
    Qemu,
    /// When the bytes the last stage will send, as the sender estimates them from the
    /// last pass (encoding rate, misses, zero and skipped pages), fit in bandwidth x
    /// downtime limit. Used once a pass after the bulk stage has been measured.
    Estimate,
}

/// Everything a run needs besides the workload and the policies.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Page size in bytes.
    pub(crate) page_size: usize,
    /// Cache budget in bytes.
    pub(crate) cache_size: u64,
    /// Bandwidth limit in bytes per second.
    pub(crate) bandwidth: u64,
    /// Downtime limit in milliseconds.
    pub(crate) downtime_limit_ms: u64,
    /// The rule that stops the guest.
    pub(crate) converge: Rule,
    /// Most passes after the bulk stage before the guest is stopped anyway.
    pub(crate) max_passes: usize,
    /// Simulated seconds after which the guest is stopped anyway.
    pub(crate) max_time_s: f64,
    /// Simulated milliseconds each dirty sync takes.
    pub(crate) sync_time_ms: f64,
}

impl Settings {
    /// Bytes that may be sent within the downtime limit.
    pub(crate) fn threshold(&self) -> u64 {
        let bytes = u128::from(self.bandwidth) * u128::from(self.downtime_limit_ms) / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Seconds the wire needs for `bytes`.
    fn seconds(&self, bytes: usize) -> f64 {
        bytes as f64 / self.bandwidth as f64
    }

    /// Seconds one dirty sync takes.
    fn sync_time(&self) -> f64 {
        self.sync_time_ms / 1000.0
    }
}

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
    fn converged(rule: Rule) -> Self {
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

/// Sender, wire and receiver with the destination RAM.
struct Link {
    /// The policy's sender.
    sender: Sender,
    /// The destination's receiver.
    receiver: Receiver,
    /// The destination's RAM.
    dest: GuestMemory,
    /// Records sent and not yet applied.
    wire: Vec<u8>,
    /// Bytes parsed and applied by the receiver.
    delivered: u64,
}

impl Link {
    /// A link for a guest of `pages` pages, the destination all zeros.
    fn new(policy: &Policy, settings: &Settings, pages: usize) -> anyhow::Result<Self> {
        let config = policy.config(settings.page_size, settings.cache_size, pages);
        let sender = Sender::new(config).map_err(|e| anyhow!("policy {}: {e}", policy.name))?;
        Ok(Self {
            sender,
            receiver: Receiver::new(settings.page_size)?,
            dest: GuestMemory::new(settings.page_size, pages),
            wire: Vec::with_capacity(WIRE_BATCH + (64 << 10)),
            delivered: 0,
        })
    }

    /// Sends one page: the record goes on the wire. Returns its length.
    fn send(&mut self, page: u64, data: &[u8]) -> anyhow::Result<usize> {
        let start = self.wire.len();
        self.wire.resize(start + self.sender.max_record_len(), 0);
        let sent = self.sender.send_page(page, data, &mut self.wire[start..]);
        let len = sent.map_err(|e| anyhow!("sending page {page}: {e}"))?.len;
        self.wire.truncate(start + len);
        if self.wire.len() >= WIRE_BATCH {
            self.deliver()?;
        }
        Ok(len)
    }

    /// The receiver parses and applies every record on the wire, in order.
    fn deliver(&mut self) -> anyhow::Result<()> {
        let Self {
            receiver,
            dest,
            wire,
            delivered,
            ..
        } = self;
        let page_size = receiver.page_size();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (record, consumed) =
                Record::parse(rest, page_size).context("receiver: malformed record")?;
            let page = usize::try_from(record.page)
                .ok()
                .filter(|&p| p < dest.len())
                .ok_or_else(|| anyhow!("receiver: page {} outside guest RAM", record.page))?;
            let zero = matches!(record.body, Body::Zero { fill: 0 });
            if !zero || dest.is_allocated(page) {
                receiver
                    .apply(&record.body, dest.page_mut(page))
                    .with_context(|| format!("receiver: page {page}"))?;
            }
            if zero {
                dest.release(page);
            }
            *delivered += consumed as u64;
            rest = &rest[consumed..];
        }
        wire.clear();
        Ok(())
    }
}

/// One policy's migration in progress.
pub(crate) struct Column<'a> {
    /// The policy of this column.
    policy: Policy,
    /// Link and convergence settings.
    settings: &'a Settings,
    /// Sender, wire, receiver, destination.
    link: Link,
    /// Simulated seconds since the start.
    now: f64,
    /// When the guest was stopped.
    stopped_at: Option<f64>,
    /// The passes done so far.
    passes: Vec<PassRecord>,
}

/// The state at the start of a pass, to compute what the pass did.
pub(crate) struct PassStart {
    /// Sender statistics before the pass.
    stats: SenderStats,
    /// Simulated time at the start.
    start_s: f64,
    /// The check at the sync before the pass.
    check: Option<Check>,
}

impl<'a> Column<'a> {
    /// A migration of a guest of `pages` pages under `policy`; the first pass may start.
    pub(crate) fn new(
        policy: &Policy,
        settings: &'a Settings,
        pages: usize,
    ) -> anyhow::Result<Self> {
        let link = Link::new(policy, settings, pages)?;
        policy.first_sync(&link.sender);
        Ok(Self {
            policy: policy.clone(),
            settings,
            link,
            now: 0.0,
            stopped_at: None,
            passes: Vec::new(),
        })
    }

    /// Simulated seconds since the start.
    pub(crate) fn now(&self) -> f64 {
        self.now
    }

    /// Passes done so far, the first included.
    pub(crate) fn passes(&self) -> usize {
        self.passes.len()
    }

    /// A dirty sync that found `dirty_pages` pages while the guest runs: takes the sync
    /// time and evaluates both convergence rules.
    pub(crate) fn sync(&mut self, dirty_pages: usize) -> Check {
        self.now += self.settings.sync_time();
        self.link.sender.start_pass();
        let dirty_pages = dirty_pages as u64;
        let threshold = self.settings.threshold();
        let dirty_bytes = dirty_pages.saturating_mul(self.settings.page_size as u64);
        // The estimate needs a measured pass after the bulk stage.
        let estimated_bytes = (self.passes.len() >= 2)
            .then(|| self.link.sender.estimate_last_stage_bytes(dirty_pages));
        Check {
            dirty_bytes,
            threshold_bytes: threshold,
            qemu_rule: dirty_bytes <= threshold,
            estimated_bytes,
            estimate_rule: estimated_bytes.is_some_and(|bytes| bytes <= threshold),
        }
    }

    /// Why the guest should stop after a sync with `check`, if it should.
    pub(crate) fn stop_reason(&self, check: &Check) -> Option<StopReason> {
        if check.holds(self.settings.converge) {
            Some(StopReason::converged(self.settings.converge))
        } else if self.passes.len() > self.settings.max_passes {
            Some(StopReason::MaxPasses)
        } else if self.now >= self.settings.max_time_s {
            Some(StopReason::MaxTime)
        } else {
            None
        }
    }

    /// Stops the guest: the final dirty sync (part of the downtime) and the last stage.
    pub(crate) fn stop_guest(&mut self) {
        self.stopped_at = Some(self.now);
        self.now += self.settings.sync_time();
        self.link.sender.start_last_stage();
    }

    /// Marks the start of a pass that follows a sync with `check`.
    pub(crate) fn begin_pass(&self, check: Option<Check>) -> PassStart {
        PassStart {
            stats: self.link.sender.stats(),
            start_s: self.now,
            check,
        }
    }

    /// Sends one page; returns the simulated seconds it took on the wire.
    pub(crate) fn send(&mut self, page: u64, data: &[u8]) -> anyhow::Result<f64> {
        let len = self.link.send(page, data)?;
        let seconds = self.settings.seconds(len);
        self.now += seconds;
        Ok(seconds)
    }

    /// Ends the pass that `start` began: the receiver applies the rest of the wire.
    pub(crate) fn end_pass(&mut self, start: PassStart) -> anyhow::Result<()> {
        self.link.deliver()?;
        let (before, after) = (&start.stats, self.link.sender.stats());
        let stage = match after.stage {
            Stage::Bulk => "bulk",
            Stage::Iterative => "iterative",
            Stage::Last => "last",
        };
        self.passes.push(PassRecord {
            pass: self.passes.len(),
            stage,
            start_s: start.start_s,
            duration_s: self.now - start.start_s,
            dirty_pages: after.pages_processed - before.pages_processed,
            wire_bytes: after.wire_bytes - before.wire_bytes,
            zero_pages: after.zero_pages - before.zero_pages,
            raw_pages: after.raw_pages - before.raw_pages,
            xbzrle_records: after.xbzrle_pages - before.xbzrle_pages,
            skipped_pages: after.skipped_pages - before.skipped_pages,
            cache_hits: after.xbzrle_cache.pages - before.xbzrle_cache.pages,
            cache_misses: after.xbzrle_cache.cache_miss - before.xbzrle_cache.cache_miss,
            check: start.check,
        });
        Ok(())
    }

    /// Sends `pages` of `source` as one pass, the guest not running.
    pub(crate) fn pass(
        &mut self,
        pages: impl IntoIterator<Item = u64>,
        source: &impl PageSource,
        check: Option<Check>,
    ) -> anyhow::Result<()> {
        let start = self.begin_pass(check);
        for page in pages {
            // Page numbers come from the source's own range.
            self.send(page, source.page(page as usize))?;
        }
        self.end_pass(start)
    }

    /// Compares the destination with `source` and gathers the results.
    pub(crate) fn finish(
        mut self,
        source: &impl PageSource,
        stopped_by: StopReason,
        remaining_pages: usize,
    ) -> anyhow::Result<PolicyResult> {
        self.link.deliver()?;
        let stats = self.link.sender.stats();
        ensure!(
            self.link.delivered == stats.wire_bytes,
            "policy {}: the receiver applied {} bytes but the sender wrote {}",
            self.policy.name,
            self.link.delivered,
            stats.wire_bytes
        );
        let mismatched = differing_pages(&self.link.dest, source);
        let page_kib = |pages: u64| pages * self.settings.page_size as u64 / 1024;
        let cache = stats.xbzrle_cache;
        let first_where = |rule: Rule| {
            self.passes.iter().find_map(|pass| {
                pass.check.filter(|c| c.holds(rule)).map(|_| Converged {
                    pass: pass.pass,
                    time_s: pass.start_s,
                })
            })
        };
        let last = self.passes.last();
        let convergence = Convergence {
            qemu_rule: first_where(Rule::Qemu),
            estimate_rule: first_where(Rule::Estimate),
            stopped_by,
            last_stage_estimated_bytes: last.and_then(|p| p.check).and_then(|c| c.estimated_bytes),
            last_stage_bytes: last.map_or(0, |p| p.wire_bytes),
        };
        let downtime = self.stopped_at.map_or(0.0, |at| self.now - at);
        Ok(PolicyResult {
            description: self.policy.describe(),
            policy: self.policy.name.clone(),
            table: Table {
                total_time_ms: (self.now * 1000.0).round() as u64,
                downtime_ms: (downtime * 1000.0).round() as u64,
                transferred_ram_kib: stats.wire_bytes / 1024,
                remaining_ram_kib: page_kib(remaining_pages as u64),
                total_ram_kib: page_kib(self.link.dest.len() as u64),
                duplicate_pages: stats.zero_pages,
                normal_pages: stats.raw_pages,
                normal_bytes_kib: page_kib(stats.raw_pages),
                cache_size_bytes: cache.cache_size,
                xbzrle_transferred_kib: cache.bytes / 1024,
                xbzrle_pages: cache.pages,
                xbzrle_cache_miss: cache.cache_miss,
                xbzrle_overflow: cache.overflow,
                cache_miss_rate: cache.cache_miss_rate,
                encoding_rate: cache.encoding_rate,
            },
            wire_bytes: stats.wire_bytes,
            wire_bytes_after_first_pass: self.passes.iter().skip(1).map(|p| p.wire_bytes).sum(),
            xbzrle_records: stats.xbzrle_pages,
            skipped_pages: stats.skipped_pages,
            iterative_passes: self.passes.len().saturating_sub(2),
            convergence,
            destination: Verification {
                verified: mismatched.is_empty(),
                pages_compared: source.page_count().max(self.link.dest.len()) as u64,
                mismatched_pages: mismatched.len() as u64,
                first_mismatches: mismatched.into_iter().take(MISMATCHES_LISTED).collect(),
                allocated_pages: self.link.dest.allocated_pages() as u64,
            },
            passes: self.passes,
        })
    }
}

/// Runs the guest for the simulated time it is owed, in quanta.
struct GuestClock {
    /// Simulated seconds the guest has not run yet.
    owed: f64,
}

impl GuestClock {
    /// `seconds` more passed; runs the guest once a quantum is owed.
    fn advance(&mut self, seconds: f64, guest: &mut dyn Guest, dirty: &mut DirtyLog) {
        self.owed += seconds;
        if self.owed >= GUEST_QUANTUM {
            self.flush(guest, dirty);
        }
    }

    /// Runs the guest for everything owed.
    fn flush(&mut self, guest: &mut dyn Guest, dirty: &mut DirtyLog) {
        if self.owed > 0.0 {
            guest.run(self.owed, dirty);
            self.owed = 0.0;
        }
    }
}

/// Migrates a running synthetic guest under `policy`.
pub(crate) fn migrate_guest(
    policy: &Policy,
    guest: &mut dyn Guest,
    settings: &Settings,
    progress: &ProgressBar,
) -> anyhow::Result<PolicyResult> {
    let pages = guest.memory().len();
    let mut column = Column::new(policy, settings, pages)?;
    let mut dirty = DirtyLog::new(pages);
    let mut clock = GuestClock { owed: 0.0 };
    let mut send_pass = |column: &mut Column<'_>,
                         guest: &mut dyn Guest,
                         dirty: &mut DirtyLog,
                         pages: &[u64],
                         check: Option<Check>,
                         running: bool|
     -> anyhow::Result<()> {
        let start = column.begin_pass(check);
        for (i, &page) in pages.iter().enumerate() {
            let seconds = column.send(page, guest.memory().read(page as usize))?;
            if running {
                clock.advance(seconds, guest, dirty);
            }
            if i % 16384 == 0 {
                progress.set_message(format!("pass {} t={:.1} s", column.passes(), column.now()));
            }
        }
        if running {
            clock.flush(guest, dirty);
        }
        progress.inc(1);
        column.end_pass(start)
    };

    let all: Vec<u64> = (0..pages as u64).collect();
    send_pass(&mut column, guest, &mut dirty, &all, None, true)?;
    let (last, check, stopped_by) = loop {
        // The guest keeps running during the dirty sync.
        let seconds = settings.sync_time();
        guest.run(seconds, &mut dirty);
        let pages = dirty.take();
        let check = column.sync(pages.len());
        if let Some(reason) = column.stop_reason(&check) {
            break (pages, check, reason);
        }
        send_pass(&mut column, guest, &mut dirty, &pages, Some(check), true)?;
    };
    column.stop_guest();
    send_pass(&mut column, guest, &mut dirty, &last, Some(check), false)?;
    let remaining = dirty.len();
    column.finish(guest.memory(), stopped_by, remaining)
}

/// Replays a snapshot series under every policy in lockstep: pass 0 sends snapshot 0,
/// pass k the pages that differ between snapshots k - 1 and k, with the content of
/// snapshot k; the last snapshot is the last stage.
pub(crate) fn replay(
    policies: &[Policy],
    series: &SnapshotSeries,
    settings: &Settings,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<PolicyResult>> {
    ensure!(
        series.len() >= 2,
        "{}: a replay needs at least two snapshots",
        series.dir().display()
    );
    let page_size = settings.page_size;
    let mut reader = series.reader();
    reader.advance()?;
    let first = reader.current();
    ensure!(
        !first.is_empty() && first.len().is_multiple_of(page_size),
        "{}: snapshot 0 has {} bytes, not a positive multiple of the page size {page_size}",
        series.dir().display(),
        first.len()
    );
    let pages = first.len() / page_size;
    let mut columns = policies
        .iter()
        .map(|policy| Column::new(policy, settings, pages))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let image = Image {
        bytes: first,
        page_size,
    };
    for column in &mut columns {
        column.pass(0..pages as u64, &image, None)?;
    }
    progress.inc(1);
    while let Some(index) = reader.advance()? {
        let previous = Image {
            bytes: reader.previous().unwrap_or_default(),
            page_size,
        };
        let current = Image {
            bytes: reader.current(),
            page_size,
        };
        let changed: Vec<u64> = (0..pages)
            .filter(|&p| previous.page(p) != current.page(p))
            .map(|p| p as u64)
            .collect();
        let last = index + 1 == series.len();
        for column in &mut columns {
            let check = column.sync(changed.len());
            if last {
                column.stop_guest();
            }
            column.pass(changed.iter().copied(), &current, Some(check))?;
        }
        progress.inc(1);
    }
    let image = Image {
        bytes: reader.current(),
        page_size,
    };
    columns
        .into_iter()
        .map(|column| column.finish(&image, StopReason::LastSnapshot, 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(converge: Rule) -> Settings {
        Settings {
            page_size: 4096,
            cache_size: 1 << 20,
            bandwidth: 32 << 20,
            downtime_limit_ms: 300,
            converge,
            max_passes: 5,
            max_time_s: 100.0,
            sync_time_ms: 10.0,
        }
    }

    #[test]
    fn threshold_is_bandwidth_times_downtime() {
        // 32 MiB/s x 300 ms = 10,066,329 bytes = 2457 pages of 4 KiB.
        assert_eq!(settings(Rule::Qemu).threshold(), 10_066_329);
    }

    #[test]
    fn qemu_rule_counts_raw_pages_and_estimate_waits_for_a_measured_pass() {
        let settings = settings(Rule::Qemu);
        let policy: Policy = "qemu".parse().unwrap();
        let mut column = Column::new(&policy, &settings, 4096).unwrap();
        let memory = GuestMemory::new(4096, 4096);
        column.pass(0..4096, &memory, None).unwrap();
        let check = column.sync(2457);
        assert!(check.qemu_rule);
        assert_eq!(
            check.estimated_bytes, None,
            "no pass after the bulk stage yet"
        );
        assert!(!check.estimate_rule);
        let check = column.sync(2458);
        assert!(!check.qemu_rule);
        assert_eq!(column.stop_reason(&check), None);
    }

    #[test]
    fn estimate_rule_uses_the_measured_pass() {
        let settings = Settings {
            cache_size: 16 << 20,
            ..settings(Rule::Estimate)
        };
        let policy: Policy = "qemu".parse().unwrap();
        let pages = 4096;
        let mut memory = GuestMemory::new(4096, pages);
        for page in 0..pages {
            memory.page_mut(page)[0] = 1;
        }
        let mut column = Column::new(&policy, &settings, pages).unwrap();
        column.pass(0..pages as u64, &memory, None).unwrap();
        // Pass 1: every page misses and is inserted; pass 2: every page hits.
        for pass in 1..=2u8 {
            let check = column.sync(pages);
            for page in 0..pages {
                memory.page_mut(page)[7] = pass;
            }
            column.pass(0..pages as u64, &memory, Some(check)).unwrap();
        }
        let check = column.sync(pages);
        // 16 MiB of dirty pages never pass QEMU's rule...
        assert!(!check.qemu_rule);
        // ...but their XBZRLE records (9-byte header, 3-byte payload header, 3-byte delta)
        // pass the estimate.
        assert_eq!(check.estimated_bytes, Some(pages as u64 * 15));
        assert!(check.estimate_rule);
        assert_eq!(column.stop_reason(&check), Some(StopReason::EstimateRule));
        column.stop_guest();
        column.pass(0..pages as u64, &memory, Some(check)).unwrap();
        let result = column.finish(&memory, StopReason::EstimateRule, 0).unwrap();
        assert!(result.destination.verified);
        assert_eq!(result.convergence.qemu_rule, None);
        assert_eq!(result.convergence.estimate_rule.map(|c| c.pass), Some(3));
        // The final sync is the whole downtime: the last stage finds nothing changed.
        assert_eq!(result.table.downtime_ms, 10);
        assert_eq!(result.passes[1].cache_misses, pages as u64);
        assert_eq!(result.passes[2].cache_hits, pages as u64);
        assert_eq!(result.passes[3].stage, "last");
    }

    #[test]
    fn caps_stop_a_run_that_never_converges() {
        let settings = settings(Rule::Qemu);
        let policy: Policy = "qemu".parse().unwrap();
        let memory = GuestMemory::new(4096, 8);
        let mut column = Column::new(&policy, &settings, 8).unwrap();
        column.pass(0..8, &memory, None).unwrap();
        // 3000 dirty pages of 4 KiB never pass the 10 MB threshold.
        let mut passes = 0;
        let reason = loop {
            let check = column.sync(3000);
            if let Some(reason) = column.stop_reason(&check) {
                break reason;
            }
            column.pass(0..8, &memory, Some(check)).unwrap();
            passes += 1;
        };
        assert_eq!(reason, StopReason::MaxPasses);
        assert_eq!(passes, settings.max_passes);
    }

    #[test]
    fn an_unsent_change_fails_verification() {
        let settings = settings(Rule::Qemu);
        let policy: Policy = "qemu".parse().unwrap();
        let mut memory = GuestMemory::new(4096, 4);
        memory.page_mut(2)[100] = 5;
        let mut column = Column::new(&policy, &settings, 4).unwrap();
        column.pass(0..4, &memory, None).unwrap();
        memory.page_mut(3)[9] = 1;
        let result = column.finish(&memory, StopReason::MaxPasses, 0).unwrap();
        assert!(!result.destination.verified);
        assert_eq!(result.destination.first_mismatches, vec![3]);
    }
}
