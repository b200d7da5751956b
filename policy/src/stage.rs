//! Where a migration is: the stage and the dirty-sync count (generation), kept in one
//! atomic word so that every page is processed wholly in one stage and one generation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where a migration is in QEMU's sequence of passes over guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The first complete pass: every page is sent raw; XBZRLE has not started. It ends at
    /// [`Sender::end_bulk_stage`](crate::Sender::end_bulk_stage) or at the second
    /// [`Sender::start_pass`](crate::Sender::start_pass), whichever comes first.
    Bulk,
    /// Later passes while the guest runs: cache lookups, XBZRLE, insertions.
    Iterative,
    /// The final pass with the guest stopped: the cache's page data is never written.
    Last,
}

impl Stage {
    /// Short lowercase name: `"bulk"`, `"iterative"` or `"last"`.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Bulk => "bulk",
            Stage::Iterative => "iterative",
            Stage::Last => "last",
        }
    }
}

/// Bit 0 of the word: last stage.
const LAST_BIT: u64 = 1;
/// Bit 1 of the word: the bulk stage was ended explicitly.
const BULK_ENDED_BIT: u64 = 2;
/// Bits 2.. of the word: the generation.
const GENERATION_SHIFT: u32 = 2;
/// One dirty sync in the word.
const ONE_GENERATION: u64 = 1 << GENERATION_SHIFT;

/// The stage and generation of a sender, changed by its stage calls from any thread.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU64);

/// The stage and generation at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) stage: Stage,
    pub(crate) generation: u64,
}

impl Progress {
    /// Stage and generation now, read together.
    pub(crate) fn now(&self) -> Snapshot {
        let word = self.0.load(Relaxed);
        let generation = word >> GENERATION_SHIFT;
        // Last stage once entered; else the bulk stage until it is ended or the second
        // dirty sync, whichever comes first.
        let stage = if word & LAST_BIT != 0 {
            Stage::Last
        } else if word & BULK_ENDED_BIT != 0 || generation >= 2 {
            Stage::Iterative
        } else {
            Stage::Bulk
        };
        Snapshot { stage, generation }
    }

    /// A dirty sync: the generation goes up by one.
    pub(crate) fn sync(&self) {
        self.0.fetch_add(ONE_GENERATION, Relaxed);
    }

    /// Ends the bulk stage (no effect once it is over).
    pub(crate) fn end_bulk_stage(&self) {
        self.0.fetch_or(BULK_ENDED_BIT, Relaxed);
    }

    /// A dirty sync that enters the last stage, for good.
    pub(crate) fn sync_into_last_stage(&self) {
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |w| Some((w + ONE_GENERATION) | LAST_BIT));
    }
}
