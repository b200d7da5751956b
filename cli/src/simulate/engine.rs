//! The migration model: passes over the dirty set, the convergence rules, the last stage,
//! and the wire between the real [`Sender`] and the real [`Receiver`].

use anyhow::{Context, anyhow, ensure};
use indicatif::ProgressBar;
use xbzrle_policy::wire::{Body, Record};
use xbzrle_policy::{Receiver, Sender, SenderStats};
use xbzrle_workloads::snapshots::SnapshotSeries;

use super::guest::Guest;
use super::memory::{DirtyLog, GuestMemory, Image, PageSource, differing_pages};
use super::result::{
    Check, Converged, Convergence, PassRecord, PolicyResult, StopReason, Table, Verification,
};
use super::settings::{Rule, Settings};
use crate::policy::Policy;

/// The guest runs in steps of at most this much simulated time (1 ms, about 8 raw pages
/// at 32 MiB/s): the granularity of "was the page written before or after it was sent".
const GUEST_QUANTUM: f64 = 1e-3;

/// Records travel in batches of about this many bytes before the receiver applies them.
const WIRE_BATCH: usize = 4 << 20;

/// How many mismatching page numbers a report lists.
const MISMATCHES_LISTED: usize = 16;

/// The migration channel of one policy: its sender, the records on the wire, the
/// destination's receiver and RAM.
struct Channel {
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

impl Channel {
    /// A channel for a guest of `pages` pages, the destination all zeros.
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
        let sent = self.sender.save_page(page, data, &mut self.wire[start..]);
        let len = sent
            .map_err(|e| anyhow!("sending page {page}: {e}"))?
            .record_len;
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

/// One policy's migration in progress (one column of the report's table).
pub(crate) struct Migration<'a> {
    /// The policy migrating.
    policy: Policy,
    /// Link and convergence settings.
    settings: &'a Settings,
    /// Sender, wire, receiver, destination.
    channel: Channel,
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

impl<'a> Migration<'a> {
    /// A migration of a guest of `pages` pages under `policy`; the first pass may start.
    pub(crate) fn new(
        policy: &Policy,
        settings: &'a Settings,
        pages: usize,
    ) -> anyhow::Result<Self> {
        let channel = Channel::new(policy, settings, pages)?;
        policy.first_sync(&channel.sender);
        Ok(Self {
            policy: policy.clone(),
            settings,
            channel,
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
        self.channel.sender.start_pass();
        let dirty_pages = dirty_pages as u64;
        let threshold = self.settings.threshold();
        let dirty_bytes = dirty_pages.saturating_mul(self.settings.page_size as u64);
        // The estimate needs a measured pass after the bulk stage.
        let estimated_bytes =
            (self.passes.len() >= 2).then(|| self.channel.sender.estimate_bytes(dirty_pages));
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
        self.channel.sender.start_last_stage();
    }

    /// Marks the start of a pass that follows a sync with `check`.
    pub(crate) fn begin_pass(&self, check: Option<Check>) -> PassStart {
        PassStart {
            stats: self.channel.sender.stats(),
            start_s: self.now,
            check,
        }
    }

    /// Sends one page; returns the simulated seconds it took on the wire.
    pub(crate) fn send(&mut self, page: u64, data: &[u8]) -> anyhow::Result<f64> {
        let len = self.channel.send(page, data)?;
        let seconds = self.settings.seconds(len);
        self.now += seconds;
        Ok(seconds)
    }

    /// Ends the pass that `start` began: the receiver applies the rest of the wire.
    pub(crate) fn end_pass(&mut self, start: PassStart) -> anyhow::Result<()> {
        self.channel.deliver()?;
        let (before, after) = (&start.stats, self.channel.sender.stats());
        let stage = after.stage.name();
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
        self.channel.deliver()?;
        let stats = self.channel.sender.stats();
        ensure!(
            self.channel.delivered == stats.wire_bytes,
            "policy {}: the receiver applied {} bytes but the sender wrote {}",
            self.policy.name,
            self.channel.delivered,
            stats.wire_bytes
        );
        let mismatched = differing_pages(&self.channel.dest, source);
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
                total_ram_kib: page_kib(self.channel.dest.len() as u64),
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
                pages_compared: source.page_count().max(self.channel.dest.len()) as u64,
                mismatched_pages: mismatched.len() as u64,
                first_mismatches: mismatched.into_iter().take(MISMATCHES_LISTED).collect(),
                allocated_pages: self.channel.dest.allocated_pages() as u64,
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
    let mut migration = Migration::new(policy, settings, pages)?;
    let mut dirty = DirtyLog::new(pages);
    let mut clock = GuestClock { owed: 0.0 };
    let mut send_pass = |migration: &mut Migration<'_>,
                         guest: &mut dyn Guest,
                         dirty: &mut DirtyLog,
                         pages: &[u64],
                         check: Option<Check>,
                         running: bool|
     -> anyhow::Result<()> {
        let start = migration.begin_pass(check);
        for (i, &page) in pages.iter().enumerate() {
            let seconds = migration.send(page, guest.memory().read(page as usize))?;
            if running {
                clock.advance(seconds, guest, dirty);
            }
            if i % 16384 == 0 {
                progress.set_message(format!(
                    "pass {} t={:.1} s",
                    migration.passes(),
                    migration.now()
                ));
            }
        }
        if running {
            clock.flush(guest, dirty);
        }
        progress.inc(1);
        migration.end_pass(start)
    };

    let all: Vec<u64> = (0..pages as u64).collect();
    send_pass(&mut migration, guest, &mut dirty, &all, None, true)?;
    let (last, check, stopped_by) = loop {
        // The guest keeps running during the dirty sync.
        let seconds = settings.sync_time();
        guest.run(seconds, &mut dirty);
        let pages = dirty.take();
        let check = migration.sync(pages.len());
        if let Some(reason) = migration.stop_reason(&check) {
            break (pages, check, reason);
        }
        send_pass(&mut migration, guest, &mut dirty, &pages, Some(check), true)?;
    };
    migration.stop_guest();
    send_pass(&mut migration, guest, &mut dirty, &last, Some(check), false)?;
    let remaining = dirty.len();
    migration.finish(guest.memory(), stopped_by, remaining)
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
    let mut migrations = policies
        .iter()
        .map(|policy| Migration::new(policy, settings, pages))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let image = Image {
        bytes: first,
        page_size,
    };
    for migration in &mut migrations {
        migration.pass(0..pages as u64, &image, None)?;
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
        for migration in &mut migrations {
            let check = migration.sync(changed.len());
            if last {
                migration.stop_guest();
            }
            migration.pass(changed.iter().copied(), &current, Some(check))?;
        }
        progress.inc(1);
    }
    let image = Image {
        bytes: reader.current(),
        page_size,
    };
    migrations
        .into_iter()
        .map(|migration| migration.finish(&image, StopReason::LastSnapshot, 0))
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
        let mut migration = Migration::new(&policy, &settings, 4096).unwrap();
        let memory = GuestMemory::new(4096, 4096);
        migration.pass(0..4096, &memory, None).unwrap();
        let check = migration.sync(2457);
        assert!(check.qemu_rule);
        assert_eq!(
            check.estimated_bytes, None,
            "no pass after the bulk stage yet"
        );
        assert!(!check.estimate_rule);
        let check = migration.sync(2458);
        assert!(!check.qemu_rule);
        assert_eq!(migration.stop_reason(&check), None);
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
        let mut migration = Migration::new(&policy, &settings, pages).unwrap();
        migration.pass(0..pages as u64, &memory, None).unwrap();
        // Pass 1: every page misses and is inserted; pass 2: every page hits.
        for pass in 1..=2u8 {
            let check = migration.sync(pages);
            for page in 0..pages {
                memory.page_mut(page)[7] = pass;
            }
            migration
                .pass(0..pages as u64, &memory, Some(check))
                .unwrap();
        }
        let check = migration.sync(pages);
        // 16 MiB of dirty pages never pass QEMU's rule...
        assert!(!check.qemu_rule);
        // ...but their XBZRLE records (9-byte header, 3-byte payload header, 3-byte delta)
        // pass the estimate.
        assert_eq!(check.estimated_bytes, Some(pages as u64 * 15));
        assert!(check.estimate_rule);
        assert_eq!(
            migration.stop_reason(&check),
            Some(StopReason::EstimateRule)
        );
        migration.stop_guest();
        migration
            .pass(0..pages as u64, &memory, Some(check))
            .unwrap();
        let result = migration
            .finish(&memory, StopReason::EstimateRule, 0)
            .unwrap();
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
        let mut migration = Migration::new(&policy, &settings, 8).unwrap();
        migration.pass(0..8, &memory, None).unwrap();
        // 3000 dirty pages of 4 KiB never pass the 10 MB threshold.
        let mut passes = 0;
        let reason = loop {
            let check = migration.sync(3000);
            if let Some(reason) = migration.stop_reason(&check) {
                break reason;
            }
            migration.pass(0..8, &memory, Some(check)).unwrap();
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
        let mut migration = Migration::new(&policy, &settings, 4).unwrap();
        migration.pass(0..4, &memory, None).unwrap();
        memory.page_mut(3)[9] = 1;
        let result = migration.finish(&memory, StopReason::MaxPasses, 0).unwrap();
        assert!(!result.destination.verified);
        assert_eq!(result.destination.first_mismatches, vec![3]);
    }
}
