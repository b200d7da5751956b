//! Admission policies: which pages that are not cached may be inserted.
//!
//! A cached page is always kept up to date whatever the policy says; admission only
//! decides whether a page *without* an entry gets one. The last stage never inserts.

use crate::error::ConfigError;
use crate::fallible;
use crate::stage::Stage;

/// Decides whether a page that is not cached may enter the cache.
///
/// The sender holds one instance per cache shard, behind that shard's lock, and shows it
/// only the pages of that shard.
pub trait AdmissionPolicy: Send {
    /// Called once for every dirty page the sender processes, before any decision.
    fn observe(&mut self, page: u64, stage: Stage);
    /// Whether `page`, not cached, may be inserted now. Never asked in [`Stage::Last`].
    fn admit(&mut self, page: u64, stage: Stage) -> bool;
    /// Bytes of memory the policy's own state uses (fixed at construction).
    fn memory_bytes(&self) -> usize {
        0
    }
}

/// QEMU before commit 5cc11c46: every page is inserted, including during the bulk stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAlways;

impl AdmissionPolicy for AdmitAlways {
    fn observe(&mut self, _page: u64, _stage: Stage) {}

    fn admit(&mut self, _page: u64, _stage: Stage) -> bool {
        true
    }
}

/// QEMU today (the default): nothing is inserted during the bulk stage, every missed page
/// after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AfterBulk;

impl AdmissionPolicy for AfterBulk {
    fn observe(&mut self, _page: u64, _stage: Stage) {}

    fn admit(&mut self, _page: u64, stage: Stage) -> bool {
        stage != Stage::Bulk
    }
}

/// Admits a page only after the bulk stage and once it has been seen dirty at least
/// `min_passes` times after it (the bulk pass sends every page, so it is not counted): pages
/// written once do not displace the hot set.
///
/// Counts live in a count-min sketch of two rows of saturating `u8` counters with
/// conservative update: memory is fixed, counts never under-estimate, and a collision can
/// only admit a page early. A page processed twice in one pass counts twice.
#[derive(Debug, Clone)]
pub struct Frequency {
    min_passes: u8,
    counters: Vec<u8>,
    row_len: usize,
}

impl Frequency {
    /// A policy admitting pages seen at least `min_passes` times, with `counters` bytes of
    /// counters (at least 2 are used). The counters are one zeroed allocation (`calloc`),
    /// committed by the operating system as they are first written.
    ///
    /// # Errors
    /// [`ConfigError::OutOfMemory`] when the counters cannot be allocated (more than
    /// `isize::MAX` bytes, or more than the allocator can give).
    pub fn new(min_passes: u8, counters: usize) -> Result<Self, ConfigError> {
        let row_len = (counters / 2).max(1);
        let total = row_len
            .checked_mul(2)
            .ok_or(ConfigError::OutOfMemory { bytes: u64::MAX })?;
        Ok(Self {
            min_passes,
            counters: fallible::zeroed(total)?,
            row_len,
        })
    }

    /// The pass threshold.
    pub fn min_passes(&self) -> u8 {
        self.min_passes
    }

    /// How many times `page` has been seen (an over-estimate only on hash collisions),
    /// saturating at 255.
    pub fn count(&self, page: u64) -> u8 {
        let (a, b) = self.cells(page);
        self.counters[a].min(self.counters[b])
    }

    fn cells(&self, page: u64) -> (usize, usize) {
        let h = mix(page);
        let len = self.row_len as u64;
        // Independent halves of one hash pick the cell in each row.
        let a = (h & 0xffff_ffff) % len;
        let b = (h >> 32) % len;
        (a as usize, self.row_len + b as usize)
    }
}

/// SplitMix64 finaliser: spreads page numbers over the counter rows.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl AdmissionPolicy for Frequency {
    fn observe(&mut self, page: u64, stage: Stage) {
        if stage == Stage::Bulk {
            // The bulk pass sends every page: it says nothing about dirtiness.
            return;
        }
        let (a, b) = self.cells(page);
        let current = self.counters[a].min(self.counters[b]);
        let next = current.saturating_add(1);
        // Conservative update: raise only the counters that are at the estimate.
        for cell in [a, b] {
            if self.counters[cell] < next {
                self.counters[cell] = next;
            }
        }
    }

    fn admit(&mut self, page: u64, stage: Stage) -> bool {
        stage != Stage::Bulk && self.count(page) >= self.min_passes
    }

    fn memory_bytes(&self) -> usize {
        self.counters.len()
    }
}

/// Built-in admission policy, as chosen in [`SenderConfig`](crate::SenderConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Admission {
    /// [`AdmitAlways`].
    Always,
    /// [`AfterBulk`] (the default).
    #[default]
    AfterBulk,
    /// [`Frequency`].
    Frequency {
        /// Passes after the bulk stage a page must have been seen dirty in (at least 1;
        /// 1 behaves like [`Admission::AfterBulk`]).
        min_passes: u8,
        /// Counter bytes for the whole sender, split evenly between shards.
        counters: usize,
    },
}

impl Admission {
    /// Builds the policy for one of `shards` shards.
    ///
    /// # Errors
    /// [`ConfigError::OutOfMemory`] when the frequency policy's counters cannot be
    /// allocated (see [`Frequency::new`]).
    pub fn build(self, shards: usize) -> Result<Box<dyn AdmissionPolicy>, ConfigError> {
        Ok(match self {
            Self::Always => Box::new(AdmitAlways),
            Self::AfterBulk => Box::new(AfterBulk),
            Self::Frequency {
                min_passes,
                counters,
            } => Box::new(Frequency::new(min_passes, counters / shards.max(1))?),
        })
    }
}
