//! Synthetic guests: what the workload writes while the migration runs.
//!
//! A [`Guest`] owns its RAM and writes into it when told how much simulated time passed;
//! every page it writes is marked in the [`DirtyLog`]. Everything is deterministic in the
//! seed.

use anyhow::ensure;

use xbzrle_workloads::SplitMix64;

use super::memory::{DirtyLog, GuestMemory};

/// A running guest.
pub(crate) trait Guest {
    /// The guest's RAM.
    fn memory(&self) -> &GuestMemory;
    /// Lets the guest run for `seconds` of simulated time, marking what it writes.
    fn run(&mut self, seconds: f64, dirty: &mut DirtyLog);
}

/// `count` distinct page numbers out of `0..pages` in random order: where the pages of a
/// virtually contiguous buffer land in guest-physical memory (the kernel hands out 4 KiB
/// pages from all over RAM).
///
/// # Panics
/// If `count > pages`.
pub(crate) fn scatter(count: usize, pages: usize, rng: &mut SplitMix64) -> Vec<usize> {
    assert!(count <= pages, "cannot pick {count} of {pages} pages");
    // Partial Fisher-Yates over a virtual identity permutation, stored sparsely.
    let mut swapped = std::collections::HashMap::with_capacity(count);
    let mut picked = Vec::with_capacity(count);
    for i in 0..count {
        let j = i + rng.below((pages - i) as u64) as usize;
        let at_j = *swapped.get(&j).unwrap_or(&j);
        let at_i = *swapped.get(&i).unwrap_or(&i);
        swapped.insert(j, at_i);
        picked.push(at_j);
    }
    picked
}

/// Largest guest the simulator models (its page table alone is 16 bytes per page).
pub(crate) const MAX_GUEST_SIZE: u64 = 64 << 30;

/// Fails unless a guest of `guest_size` bytes can be modelled.
fn check_guest_size(guest_size: u64) -> anyhow::Result<()> {
    ensure!(
        guest_size <= MAX_GUEST_SIZE,
        "--guest-size {guest_size} is above the {MAX_GUEST_SIZE} bytes the simulator models"
    );
    Ok(())
}

/// Fills the RAM that the workload does not own: each page is zero with probability
/// `zero_fraction`, else random static content that is never written again.
fn fill_static(memory: &mut GuestMemory, owned: &[usize], zero_fraction: f64, seed: u64) {
    let mut is_owned = vec![false; memory.len()];
    for &page in owned {
        is_owned[page] = true;
    }
    let mut rng = SplitMix64::new(seed);
    for (page, owned) in is_owned.into_iter().enumerate() {
        let zero = rng.next_f64() < zero_fraction;
        let content_seed = rng.next_u64();
        if !owned && !zero {
            SplitMix64::new(content_seed).fill(memory.page_mut(page));
        }
    }
}

/// Settings of the [`DocGuest`].
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub(crate) struct DocConfig {
    /// Guest RAM size (QEMU commit 5cc11c46 ran a 1 GiB guest).
    #[arg(long, default_value = "1G", value_parser = crate::units::parse_size)]
    pub(crate) guest_size: u64,
    /// Size of the test program's buffer (docs/xbzrle.txt: 16 MiB).
    #[arg(long, default_value = "16M", value_parser = crate::units::parse_size)]
    pub(crate) buffer_size: u64,
    /// Share of the other pages that are zero (the rest is static data); the commit's run
    /// sent 41 % of its pages as duplicates.
    #[arg(long, default_value_t = 0.4)]
    pub(crate) zero_fraction: f64,
    /// Full sweeps over the buffer per second (the recorded dirty1024 guest made about
    /// 2,800 under TCG).
    #[arg(long, default_value_t = 2800.0)]
    pub(crate) sweeps_per_sec: f64,
    /// Seconds the program runs before the migration starts.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Seed of the page placement and the static content.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// Distance between two bytes the test program increments.
pub(crate) const DOC_STRIDE: usize = 1024;

/// The test program of QEMU's docs/xbzrle.txt in a guest of static and zero pages:
///
/// ```c
/// char *buf = calloc(4096, 4096);          /* 16 MiB */
/// while (1) {
///     for (int i = 0; i < 4096 * 4; i++)
///         buf[i * 4096 / 4]++;              /* one byte in every 1024 */
///     printf(".");
/// }
/// ```
///
/// The buffer's pages are scattered over guest RAM. Writes are modelled increment by
/// increment at `sweeps_per_sec`, so a sweep can be cut anywhere by a page send.
#[derive(Debug)]
pub(crate) struct DocGuest {
    /// Guest RAM.
    memory: GuestMemory,
    /// Guest-physical page of each buffer page.
    buffer: Vec<usize>,
    /// Increments per second.
    rate: f64,
    /// Simulated seconds run so far.
    elapsed: f64,
    /// Increments done so far.
    done: u64,
}

impl DocGuest {
    /// Builds the guest and runs the program for the warm-up time.
    pub(crate) fn new(config: &DocConfig, page_size: usize) -> anyhow::Result<Self> {
        check_guest_size(config.guest_size)?;
        let pages = usize::try_from(config.guest_size / page_size as u64)?;
        let buffer_pages = usize::try_from(config.buffer_size / page_size as u64)?;
        ensure!(
            page_size.is_multiple_of(DOC_STRIDE),
            "the page size must be a multiple of {DOC_STRIDE}"
        );
        ensure!(
            buffer_pages >= 1 && buffer_pages <= pages,
            "the buffer ({} bytes) must hold at least one page and fit in the guest ({} bytes)",
            config.buffer_size,
            config.guest_size
        );
        ensure!(
            (0.0..=1.0).contains(&config.zero_fraction),
            "--zero-fraction must be between 0 and 1"
        );
        ensure!(
            config.sweeps_per_sec > 0.0
                && config.sweeps_per_sec.is_finite()
                && (0.0..=3600.0).contains(&config.warmup),
            "--sweeps-per-sec must be positive and finite, --warmup between 0 and 3600 s"
        );
        let mut rng = SplitMix64::new(config.seed);
        let buffer = scatter(buffer_pages, pages, &mut rng);
        let mut memory = GuestMemory::new(page_size, pages);
        fill_static(&mut memory, &buffer, config.zero_fraction, rng.next_u64());
        let counters = buffer_pages * page_size / DOC_STRIDE;
        let mut guest = Self {
            memory,
            buffer,
            rate: config.sweeps_per_sec * counters as f64,
            elapsed: 0.0,
            done: 0,
        };
        // The buffer is calloc'ed: it holds data only once the program has run.
        guest.run(config.warmup, &mut DirtyLog::new(pages));
        Ok(guest)
    }

    /// Number of bytes the program increments per sweep.
    fn counters(&self) -> u64 {
        (self.buffer.len() * self.memory.page_size() / DOC_STRIDE) as u64
    }

    /// Adds `by` to counter `index`.
    fn bump(&mut self, index: u64, by: u8, dirty: &mut DirtyLog) {
        let offset = index as usize * DOC_STRIDE;
        let page_size = self.memory.page_size();
        let page = self.buffer[offset / page_size];
        let byte = &mut self.memory.page_mut(page)[offset % page_size];
        *byte = byte.wrapping_add(by);
        dirty.mark(page);
    }
}

impl Guest for DocGuest {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn run(&mut self, seconds: f64, dirty: &mut DirtyLog) {
        self.elapsed += seconds;
        let target = (self.elapsed * self.rate) as u64;
        let increments = target.saturating_sub(self.done);
        let counters = self.counters();
        let position = self.done % counters;
        self.done = self.done.max(target);
        // Whole sweeps add the same to every counter (mod 256)...
        let sweeps = (increments / counters % 256) as u8;
        if increments >= counters {
            for index in 0..counters {
                self.bump(index, sweeps, dirty);
            }
        }
        // ...then the partial sweep continues from where the program was.
        for step in 0..increments % counters {
            self.bump((position + step) % counters, 1, dirty);
        }
    }
}

/// Settings of the [`ZipfGuest`].
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub(crate) struct ZipfConfig {
    /// Guest RAM size.
    #[arg(long, default_value = "256M", value_parser = crate::units::parse_size)]
    pub(crate) guest_size: u64,
    /// Heap of 64-byte records (make it larger than the cache).
    #[arg(long, default_value = "128M", value_parser = crate::units::parse_size)]
    pub(crate) heap_size: u64,
    /// Record updates per second.
    #[arg(long, default_value_t = 50_000.0)]
    pub(crate) ops_per_sec: f64,
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 0.99)]
    pub(crate) exponent: f64,
    /// Share of the pages outside the heap that are zero (the rest is static data).
    #[arg(long, default_value_t = 0.4)]
    pub(crate) zero_fraction: f64,
    /// Seed of the page placement, the static content and the key draws.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// Bytes of one record of the [`ZipfGuest`].
pub(crate) const RECORD_SIZE: usize = 64;

/// Spreads popularity ranks over the heap (a prime, so a bijection modulo any smaller
/// record count): hot keys are not next to each other.
const RANK_SPREAD: u64 = 0x9E37_79B1;

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    /// `cdf[r]` = P(rank <= r).
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n >= 1` ranks with exponent `s`.
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|rank| {
                total += (rank as f64).powf(-s);
                total
            })
            .collect();
        for value in &mut cdf {
            *value /= total;
        }
        Self { cdf }
    }

    /// One rank.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A key-value store like the recorded `kvstore` guest (`docs/data.md`): a heap of
/// 64-byte records `{u64 key, u64 counter, u64 ts_ns, u32 version, u16 vlen, u16 flags,
/// char value[32]}` scattered over guest RAM; each operation picks a key with Zipf
/// popularity, increments its counter and sets its timestamp; one in eight also bumps
/// the version and rewrites the value text.
#[derive(Debug)]
pub(crate) struct ZipfGuest {
    /// Guest RAM.
    memory: GuestMemory,
    /// Guest-physical page of each heap page.
    heap: Vec<usize>,
    /// Key popularity.
    zipf: Zipf,
    /// Key draws and value rewrites.
    rng: SplitMix64,
    /// Operations per simulated second.
    ops_per_sec: f64,
    /// Simulated seconds run so far.
    elapsed: f64,
    /// Operations done so far.
    done: u64,
}

impl ZipfGuest {
    /// Builds the guest with every record initialised.
    pub(crate) fn new(config: &ZipfConfig, page_size: usize) -> anyhow::Result<Self> {
        check_guest_size(config.guest_size)?;
        let pages = usize::try_from(config.guest_size / page_size as u64)?;
        let heap_pages = usize::try_from(config.heap_size / page_size as u64)?;
        ensure!(
            page_size.is_multiple_of(RECORD_SIZE),
            "the page size must be a multiple of {RECORD_SIZE}"
        );
        ensure!(
            heap_pages >= 1 && heap_pages <= pages,
            "the heap ({} bytes) must hold at least one page and fit in the guest ({} bytes)",
            config.heap_size,
            config.guest_size
        );
        ensure!(
            (0.0..=1.0).contains(&config.zero_fraction),
            "--zero-fraction must be between 0 and 1"
        );
        ensure!(
            (0.0..=1e9).contains(&config.ops_per_sec) && (0.0..=10.0).contains(&config.exponent),
            "--ops-per-sec must be between 0 and 1e9 and --exponent between 0 and 10"
        );
        let mut rng = SplitMix64::new(config.seed);
        let heap = scatter(heap_pages, pages, &mut rng);
        let mut memory = GuestMemory::new(page_size, pages);
        fill_static(&mut memory, &heap, config.zero_fraction, rng.next_u64());
        let records = heap_pages * page_size / RECORD_SIZE;
        let mut guest = Self {
            memory,
            heap,
            zipf: Zipf::new(records, config.exponent),
            rng,
            ops_per_sec: config.ops_per_sec,
            elapsed: 0.0,
            done: 0,
        };
        for rank in 0..records as u64 {
            let record = guest.record_mut(rank, None);
            record[..8].copy_from_slice(&rank.to_le_bytes());
            record[28..30].copy_from_slice(&24u16.to_le_bytes());
            write_value(&mut record[32..], rank, 0);
        }
        Ok(guest)
    }

    /// Number of records in the heap.
    fn records(&self) -> u64 {
        self.zipf.cdf.len() as u64
    }

    /// The record of popularity rank `rank`, marking its page in `dirty`.
    fn record_mut(&mut self, rank: u64, dirty: Option<&mut DirtyLog>) -> &mut [u8] {
        let index =
            (u128::from(rank) * u128::from(RANK_SPREAD) % u128::from(self.records())) as usize;
        let offset = index * RECORD_SIZE;
        let page_size = self.memory.page_size();
        let page = self.heap[offset / page_size];
        if let Some(dirty) = dirty {
            dirty.mark(page);
        }
        let start = offset % page_size;
        &mut self.memory.page_mut(page)[start..start + RECORD_SIZE]
    }
}

/// Writes the value text `u<key>:sc=<counter>:st=ok` (24 bytes) at the start of `out`.
fn write_value(out: &mut [u8], key: u64, counter: u64) {
    out[0] = b'u';
    write_decimal(&mut out[1..8], key);
    out[8..12].copy_from_slice(b":sc=");
    write_decimal(&mut out[12..18], counter);
    out[18..24].copy_from_slice(b":st=ok");
}

/// Writes the low `out.len()` decimal digits of `value`, zero-padded.
fn write_decimal(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl Guest for ZipfGuest {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn run(&mut self, seconds: f64, dirty: &mut DirtyLog) {
        let start = self.elapsed;
        self.elapsed += seconds;
        let target = (self.elapsed * self.ops_per_sec) as u64;
        let ops = target.saturating_sub(self.done);
        for op in 0..ops {
            let rank = self.zipf.sample(&mut self.rng) as u64;
            let rewrite = self.rng.below(8) == 0;
            let now_ns = ((start + seconds * (op + 1) as f64 / ops as f64) * 1e9) as u64;
            let record = self.record_mut(rank, Some(dirty));
            let counter = u64::from_le_bytes(record[8..16].try_into().unwrap_or_default()) + 1;
            record[8..16].copy_from_slice(&counter.to_le_bytes());
            record[16..24].copy_from_slice(&now_ns.to_le_bytes());
            if rewrite {
                let version = u32::from_le_bytes(record[24..28].try_into().unwrap_or_default()) + 1;
                record[24..28].copy_from_slice(&version.to_le_bytes());
                write_value(&mut record[32..], rank, counter);
            }
        }
        self.done = self.done.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_doc() -> DocConfig {
        DocConfig {
            guest_size: 64 * 4096,
            buffer_size: 4 * 4096,
            zero_fraction: 0.5,
            // 16 counters: 2048 increments per second, exact in binary fractions.
            sweeps_per_sec: 128.0,
            warmup: 0.0,
            seed: 3,
        }
    }

    #[test]
    fn scatter_picks_distinct_pages_in_range() {
        let mut rng = SplitMix64::new(9);
        let mut pages = scatter(500, 1000, &mut rng);
        assert!(pages.iter().all(|&p| p < 1000));
        // Not simply the first pages in order.
        assert_ne!(pages, (0..500).collect::<Vec<_>>());
        pages.sort_unstable();
        pages.dedup();
        assert_eq!(pages.len(), 500);
        let mut all = scatter(10, 10, &mut rng);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn doc_guest_increments_one_byte_per_1024() {
        let mut guest = DocGuest::new(&small_doc(), 4096).unwrap();
        let before: Vec<Vec<u8>> = guest
            .buffer
            .iter()
            .map(|&p| guest.memory().read(p).to_vec())
            .collect();
        assert!(before.iter().all(|page| page.iter().all(|&b| b == 0)));
        let mut dirty = DirtyLog::new(guest.memory().len());
        // 1.5 sweeps: 24 increments, counters 0..8 twice and 8..16 once.
        guest.run(1.5 / 128.0, &mut dirty);
        let mut buffer = guest.buffer.clone();
        buffer.sort_unstable();
        assert_eq!(
            dirty.take(),
            buffer.iter().map(|&p| p as u64).collect::<Vec<_>>()
        );
        for (index, &page) in guest.buffer.iter().enumerate() {
            let content = guest.memory().read(page);
            for (offset, &byte) in content.iter().enumerate() {
                let counter = index * 4 + offset / DOC_STRIDE;
                let expected = if offset % DOC_STRIDE != 0 {
                    0
                } else if counter < 8 {
                    2
                } else {
                    1
                };
                assert_eq!(byte, expected, "page {index} offset {offset}");
            }
        }
        // A partial sweep dirties only the pages it reaches: one increment, counter 8.
        guest.run(1.0 / 2048.0, &mut dirty);
        assert_eq!(dirty.take(), vec![guest.buffer[2] as u64]);
    }

    #[test]
    fn doc_guest_whole_sweeps_wrap_modulo_256() {
        let mut guest = DocGuest::new(&small_doc(), 4096).unwrap();
        let mut dirty = DirtyLog::new(guest.memory().len());
        guest.run(2.0, &mut dirty); // exactly 256 sweeps
        for &page in &guest.buffer {
            assert!(guest.memory().read(page).iter().all(|&b| b == 0));
        }
        guest.run(3.0 / 128.0, &mut dirty); // 3 more
        let page = guest.memory().read(guest.buffer[0]);
        assert_eq!((page[0], page[1024], page[1]), (3, 3, 0));
    }

    #[test]
    fn doc_guest_static_pages_are_mixed_and_outside_the_buffer() {
        let guest = DocGuest::new(&small_doc(), 4096).unwrap();
        let memory = guest.memory();
        let others: Vec<usize> = (0..memory.len())
            .filter(|p| !guest.buffer.contains(p))
            .collect();
        let zero = others
            .iter()
            .filter(|&&p| memory.read(p).iter().all(|&b| b == 0))
            .count();
        assert!(zero > 10 && zero < others.len() - 10, "{zero} zero pages");
        // Zero pages cost no memory; the empty buffer pages neither (warm-up 0).
        assert_eq!(memory.allocated_pages(), others.len() - zero);
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = SplitMix64::new(5);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // P(rank 0) = 1 / H(1000) = 0.134; P(rank 1) is half of it.
        assert!((12_500..14_500).contains(&counts[0]), "{}", counts[0]);
        assert!((6_000..7_400).contains(&counts[1]), "{}", counts[1]);
        assert!(counts[999] < 60, "{}", counts[999]);
        assert!(counts.iter().all(|&c| c < 14_500));
    }

    #[test]
    fn zipf_guest_updates_records_in_place() {
        let config = ZipfConfig {
            guest_size: 32 * 4096,
            heap_size: 8 * 4096,
            ops_per_sec: 800.0,
            exponent: 0.99,
            zero_fraction: 0.5,
            seed: 2,
        };
        let mut guest = ZipfGuest::new(&config, 4096).unwrap();
        let before: Vec<Vec<u8>> = guest
            .heap
            .iter()
            .map(|&p| guest.memory().read(p).to_vec())
            .collect();
        let mut dirty = DirtyLog::new(guest.memory().len());
        guest.run(0.125, &mut dirty); // 100 operations
        let written = dirty.take();
        assert!(!written.is_empty() && written.len() <= 8);
        let mut counters = 0u64;
        for (slot, &page) in guest.heap.iter().enumerate() {
            let (old, new) = (&before[slot], guest.memory().read(page));
            assert_eq!(old != new, written.contains(&(page as u64)));
            for (a, b) in old.chunks(RECORD_SIZE).zip(new.chunks(RECORD_SIZE)) {
                // Keys never change; counters only grow.
                assert_eq!(a[..8], b[..8]);
                let count = u64::from_le_bytes(b[8..16].try_into().unwrap());
                counters += count;
                assert_eq!(count == 0, a[16..] == b[16..], "timestamp set iff updated");
            }
        }
        assert_eq!(counters, 100);
    }

    #[test]
    fn value_text_layout() {
        let mut text = [0u8; 24];
        write_value(&mut text, 1234, 42);
        assert_eq!(&text, b"u0001234:sc=000042:st=ok");
    }
}
