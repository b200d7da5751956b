//! The sender pipeline at guest-RAM scale: a guest far larger than the CPU caches, a dirty
//! set rewritten in small runs every pass, and every dirty page saved (looked up in the
//! cache, encoded, the cache refreshed, a wire record framed), by the project's
//! [`Sender`] and by QEMU's method as a baseline ([`QemuMethod`]).
//!
//! QEMU's method is written here from its description (no QEMU code): a direct-mapped
//! cache keyed by page number with `CACHED_PAGE_LIFETIME` 2; the zero check first; on a hit
//! the guest page is copied into a buffer, the cached copy is encoded against the buffer and
//! the buffer copied into the cache; on a miss the page is inserted (unless the slot holds
//! another page used within the lifetime) and the cached copy is sent; every record framed
//! as the sender frames its own (flag, page number, payload), so both write the same bytes.
//!
//! Each measured pass first dirties the pages (untimed), then lets every method save them,
//! in a rotating order, so that every method sees the same old and new page versions and a
//! noisy moment of the machine hits all of them.

use std::ops::ControlFlow;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use xbzrle::{Encoded, Kernel, PageSource};
use xbzrle_policy::wire::{FLAG_PAGE, FLAG_XBZRLE, FLAG_ZERO, HEADER_LEN};
use xbzrle_policy::{Admission, CacheKind, Replacement, Sender, SenderConfig};
use xbzrle_workloads::SplitMix64;

/// Page size of the pipeline (x86's).
pub const PAGE: usize = 4096;

/// Runs of 8 bytes rewritten in every dirty page per pass.
const RUNS_PER_PAGE: usize = 8;

/// `len` bytes starting at a page boundary, inside a `Vec` a page longer (a large `Vec`
/// starts 16 bytes past one, which would make every 4 KiB page span two memory pages).
#[derive(Debug)]
struct PageAligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageAligned {
    /// `len` bytes, each `fill`.
    fn new(len: usize, fill: u8) -> Self {
        let bytes = vec![fill; len + PAGE - 1];
        let start = bytes.as_ptr().align_offset(PAGE);
        assert!(start < PAGE, "a byte pointer can be aligned");
        Self { bytes, start, len }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[self.start..][..self.len]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..][..self.len]
    }
}

/// A guest's RAM, page-aligned (as a hypervisor maps it), shared with the saving threads
/// while they save a pass.
#[derive(Debug, Clone)]
pub struct Ram(Arc<PageAligned>);

impl Ram {
    /// Page `page`.
    pub fn page(&self, page: u64) -> &[u8] {
        &self.0.get()[page as usize * PAGE..][..PAGE]
    }
}

/// A guest: its RAM and the pages it keeps dirtying.
#[derive(Debug)]
pub struct Guest {
    ram: Ram,
    /// The dirty set, ascending (the order of a dirty-bitmap walk).
    dirty: Vec<u64>,
    rng: SplitMix64,
}

impl Guest {
    /// `ram_bytes` of random RAM with a dirty set of `dirty_bytes`, spread over it.
    ///
    /// # Panics
    /// If the sizes are not whole pages or the dirty set is larger than the RAM.
    pub fn new(ram_bytes: usize, dirty_bytes: usize, seed: u64) -> Self {
        assert!(ram_bytes.is_multiple_of(PAGE) && dirty_bytes.is_multiple_of(PAGE));
        let (pages, dirty_pages) = (ram_bytes / PAGE, dirty_bytes / PAGE);
        assert!(dirty_pages <= pages, "the dirty set is larger than the RAM");
        let mut rng = SplitMix64::new(seed);
        let mut ram = PageAligned::new(ram_bytes, 0);
        for word in ram.get_mut().chunks_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes()[..word.len()]);
        }
        let mut guest = Self {
            ram: Ram(Arc::new(ram)),
            dirty: Vec::with_capacity(dirty_pages),
            rng,
        };
        // Every `pages / dirty_pages`-th page, shifted by a random amount within its stride.
        let stride = pages / dirty_pages.max(1);
        for i in 0..dirty_pages {
            let offset = (guest.random() % stride as u64) as usize;
            guest.dirty.push((i * stride + offset) as u64);
        }
        guest
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Number of pages of RAM.
    pub fn pages(&self) -> usize {
        self.ram.0.get().len() / PAGE
    }

    /// The dirty set.
    pub fn dirty(&self) -> &[u64] {
        &self.dirty
    }

    /// Page `page`.
    pub fn page(&self, page: u64) -> &[u8] {
        self.ram.page(page)
    }

    /// The RAM, for saving threads.
    pub fn ram(&self) -> &Ram {
        &self.ram
    }

    /// The guest runs: `RUNS_PER_PAGE` runs of 8 bytes rewritten in every dirty page.
    ///
    /// # Panics
    /// If a saving thread still holds the RAM (none does between passes).
    pub fn run(&mut self) {
        let ram = Arc::get_mut(&mut self.ram.0).expect("no saving thread holds the RAM");
        for &page in &self.dirty {
            let base = page as usize * PAGE;
            for _ in 0..RUNS_PER_PAGE {
                let at = base + (self.rng.next_u64() as usize % (PAGE / 8)) * 8;
                let bytes = self.rng.next_u64().to_le_bytes();
                ram.get_mut()[at..at + 8].copy_from_slice(&bytes);
            }
        }
    }
}

/// Bytes between two consecutive 4 KiB allocations of glibc's `malloc` (the page and
/// a 16-byte chunk header). QEMU allocates each cached page on its own (`g_try_malloc`),
/// so its copies lie this far apart, 16-byte aligned: most of them split cache lines and
/// span two memory pages. [`QemuMethod`] lays out its cache the same way.
const MALLOC_CHUNK: usize = PAGE + 16;

/// How [`QemuMethod`] encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuEncoder {
    /// Word at a time, like QEMU's C encoder (the `word` kernel follows its method).
    Word,
    /// This project's fastest kernel (`xbzrle::encode`).
    Library,
}

/// One cache slot of [`QemuMethod`].
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    page: u64,
    age: u64,
    valid: bool,
}

/// QEMU's sender method (see the module documentation).
#[derive(Debug)]
pub struct QemuMethod {
    encoder: QemuEncoder,
    slots: Vec<Slot>,
    data: Vec<u8>,
    scratch: Vec<u8>,
    generation: u64,
}

impl QemuMethod {
    /// A cache of `cache_bytes` (rounded down to a power of two of pages).
    pub fn new(cache_bytes: usize, encoder: QemuEncoder) -> Self {
        let slots = 1 << (cache_bytes / PAGE).max(1).ilog2();
        Self {
            encoder,
            slots: vec![Slot::default(); slots],
            data: vec![0; slots * MALLOC_CHUNK],
            scratch: vec![0; PAGE],
            generation: 0,
        }
    }

    /// A dirty sync.
    pub fn start_pass(&mut self) {
        self.generation += 1;
    }

    /// Saves `data`, page `page`, after the bulk stage; writes the record into `out`
    /// (at least `HEADER_LEN + 3 + PAGE` bytes) and returns its length (0: unchanged).
    pub fn save(&mut self, page: u64, data: &[u8], out: &mut [u8]) -> usize {
        if data.iter().all(|&b| b == 0) {
            header(out, FLAG_ZERO, page);
            out[HEADER_LEN] = 0;
            return HEADER_LEN + 1;
        }
        let index = (page as usize) & (self.slots.len() - 1);
        let slot = &mut self.slots[index];
        let cached = &mut self.data[index * MALLOC_CHUNK..][..PAGE];
        if slot.valid && slot.page == page {
            slot.age = self.generation;
            self.scratch.copy_from_slice(data);
            let delta = &mut out[HEADER_LEN + 3..][..PAGE];
            let encoded = match self.encoder {
                QemuEncoder::Word => Kernel::Word.encode(cached, &self.scratch, delta),
                QemuEncoder::Library => Ok(xbzrle::encode(cached, &self.scratch, delta)),
            }
            .expect("the word kernel runs anywhere");
            return match encoded {
                Encoded::Unchanged => 0,
                Encoded::Delta(n) => {
                    cached.copy_from_slice(&self.scratch);
                    header(out, FLAG_XBZRLE, page);
                    out[HEADER_LEN] = 1;
                    out[HEADER_LEN + 1..HEADER_LEN + 3].copy_from_slice(&(n as u16).to_be_bytes());
                    HEADER_LEN + 3 + n
                }
                Encoded::Overflow => {
                    cached.copy_from_slice(&self.scratch);
                    raw(out, page, cached)
                }
            };
        }
        if !slot.valid || slot.age + 2 <= self.generation {
            *slot = Slot {
                page,
                age: self.generation,
                valid: true,
            };
            cached.copy_from_slice(data);
            raw(out, page, cached)
        } else {
            raw(out, page, data)
        }
    }
}

/// The memory floor of saving a page at guest-RAM scale: the guest page and a cached copy
/// (the slot a direct-mapped cache of the same size would use) are read, one word per cache
/// line, and nothing else is done but asking the CPU for the start of the next page and of
/// its slot ([`FLOOR_PREFETCH_BYTES`]), which reads them sooner than the hardware
/// prefetchers alone. Whatever compares a page with its cached copy loads at least these
/// lines; the time shows how much of a save is waiting for memory.
#[derive(Debug)]
pub struct MemoryFloor {
    cache: PageAligned,
    slots: usize,
}

/// Bytes at the start of the next page, and of its slot, that the floor asks for while it
/// reads the current one. On the machine of BENCHMARKS.md 1536 and 2048 were as fast as
/// each other, asking for nothing 1.1× slower and for 3072 bytes 1.2× slower.
pub const FLOOR_PREFETCH_BYTES: usize = 2048;

impl MemoryFloor {
    /// A cache of `cache_bytes` (rounded down to a power of two of pages), every page
    /// written once so that each one has its own memory (an untouched zeroed allocation
    /// maps every page to one shared zero page).
    pub fn new(cache_bytes: usize) -> Self {
        let slots = 1 << (cache_bytes / PAGE).max(1).ilog2();
        Self {
            cache: PageAligned::new(slots * PAGE, 1),
            slots,
        }
    }

    /// The cache slot of page `page`.
    fn slot(&self, page: u64) -> &[u8] {
        let slot = (page as usize) & (self.slots - 1);
        &self.cache.get()[slot * PAGE..][..PAGE]
    }

    /// Reads `pages` of `guest` and their cache slots, asking for the start of the next
    /// page and slot before reading each one; returns the sum of the words read.
    fn read(&self, guest: &Ram, pages: &mut dyn Iterator<Item = u64>) -> u64 {
        let line_words = |bytes: &[u8]| {
            bytes
                .chunks_exact(LINE)
                .map(|line| u64::from_le_bytes(line[..8].try_into().expect("8 bytes")))
                .fold(0u64, u64::wrapping_add)
        };
        let mut pages = pages.peekable();
        let mut sum = 0u64;
        while let Some(page) = pages.next() {
            if let Some(&next) = pages.peek() {
                guest.page(next).prefetch(0, FLOOR_PREFETCH_BYTES);
                self.slot(next).prefetch(0, FLOOR_PREFETCH_BYTES);
            }
            sum = sum
                .wrapping_add(line_words(guest.page(page)))
                .wrapping_add(line_words(self.slot(page)));
        }
        sum
    }
}

/// Bytes of a CPU cache line.
const LINE: usize = 64;

fn header(out: &mut [u8], flag: u8, page: u64) {
    out[0] = flag;
    out[1..HEADER_LEN].copy_from_slice(&page.to_be_bytes());
}

fn raw(out: &mut [u8], page: u64, data: &[u8]) -> usize {
    header(out, FLAG_PAGE, page);
    out[HEADER_LEN..HEADER_LEN + PAGE].copy_from_slice(data);
    HEADER_LEN + PAGE
}

/// The name of QEMU's cache setup in [`setups`].
pub const DIRECT_MAPPED: &str = "direct-mapped";

/// The two sender setups measured: QEMU's (direct-mapped) and the recommended one
/// (16-way set-associative, frequency replacement), both admitting after the bulk stage.
pub fn setups(cache_bytes: usize, shards: usize) -> [(&'static str, SenderConfig); 2] {
    let config = |cache| {
        SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(cache_bytes as u64)
            .with_cache(cache)
            .with_admission(Admission::AfterBulk)
            .with_shards(shards)
    };
    [
        (DIRECT_MAPPED, config(CacheKind::DirectMapped)),
        (
            "16-way",
            config(CacheKind::SetAssociative {
                ways: 16,
                replacement: Replacement::Frequency,
            }),
        ),
    ]
}

/// How the sender is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// `Sender::save_page` for every page.
    OnePage,
    /// `Sender::save_pages` once for the pages of each thread (the next pages are
    /// prefetched while the current one is encoded).
    Batch,
}

/// A method under measurement.
pub enum Method {
    /// QEMU's method.
    Qemu(QemuMethod),
    /// The project's sender, saving from its workers' threads.
    Sender {
        /// The sender.
        sender: Arc<Sender>,
        /// The saving threads.
        workers: Workers,
        /// How each thread calls it.
        calls: Calls,
    },
    /// The memory floor, from its workers' threads.
    Floor {
        /// The cache it reads.
        floor: Arc<MemoryFloor>,
        /// The reading threads.
        workers: Workers,
    },
    /// A CPU check, from its workers' threads: for every page, [`CPU_CHECK_ENCODES`] times
    /// `xbzrle::encode` of one 4 KiB pair held in the thread's L1 cache (8 runs of 8 bytes,
    /// as a dirty page), so no memory is waited for, in a pass about as long as a sender's.
    /// What two threads gain on it is what the CPUs allow (on a shared machine the second
    /// CPU may be busy, and every pass pays for waking the threads); next to the memory
    /// floor it shows whether two saving threads are held back by the memory or by the
    /// CPUs.
    CpuCheck {
        /// The encoding threads.
        workers: Workers,
    },
}

/// The threads a method saves a pass from: thread `t` of `n` takes the pages `p` with
/// `p % n == t`. One thread is the caller's. Several are threads of their own that live as
/// long as the method, as a hypervisor's migration threads do, thread `t` pinned to CPU
/// `t` (modulo the CPUs): threads started for every pass would be timed starting, and
/// Linux wakes a thread on the CPU of the thread that wakes it, so on a 2-CPU machine an
/// unpinned second thread waited for the first to finish a short pass before it ran
/// (measured with a C loop: 1.1 ms of work each took 2.3 ms from two threads).
pub struct Workers {
    /// The job queue of each thread (none when the caller's thread is the only one).
    jobs: Vec<mpsc::Sender<Job>>,
    results: mpsc::Receiver<u64>,
    handles: Vec<JoinHandle<()>>,
}

/// One thread's share of a pass; returns the bytes it wrote (or a checksum).
type Job = Box<dyn FnOnce() -> u64 + Send>;

impl Workers {
    /// `threads` threads (at least one).
    ///
    /// # Panics
    /// If `threads` is 0.
    pub fn new(threads: usize) -> Self {
        assert!(threads > 0, "at least one thread");
        let (done, results) = mpsc::channel();
        let (mut jobs, mut handles) = (Vec::new(), Vec::new());
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        // A single thread is the caller's: none of its own.
        let own_threads = if threads > 1 { threads } else { 0 };
        for t in 0..own_threads {
            let (queue, received) = mpsc::channel::<Job>();
            let done = done.clone();
            let cpu = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
            handles.push(thread::spawn(move || {
                if let Some(cpu) = cpu {
                    // Left unpinned if the CPU cannot be chosen.
                    core_affinity::set_for_current(cpu);
                }
                for job in received {
                    if done.send(job()).is_err() {
                        break;
                    }
                }
            }));
            jobs.push(queue);
        }
        Self {
            jobs,
            results,
            handles,
        }
    }

    /// Wakes the threads: each runs an empty job. Between two passes of a method they wait
    /// for the other methods' passes, which a migration's threads do not do; a pass is timed
    /// from threads that are awake, as they would be in a migration.
    fn wake(&self) {
        for queue in &self.jobs {
            queue.send(Box::new(|| 0)).expect("saving thread");
        }
        for _ in &self.jobs {
            self.results.recv().expect("saving thread");
        }
    }

    /// Runs `work` on each thread's share of `pages` and returns the sum of what they
    /// return. When it returns, no thread holds anything `work` captured.
    fn run<W>(&self, pages: &Arc<[u64]>, work: W) -> u64
    where
        W: Fn(&mut dyn Iterator<Item = u64>) -> u64 + Send + Sync + 'static,
    {
        if self.jobs.is_empty() {
            return work(&mut pages.iter().copied());
        }
        let work = Arc::new(work);
        let threads = self.jobs.len() as u64;
        for (t, queue) in (0u64..).zip(&self.jobs) {
            let (work, pages) = (Arc::clone(&work), Arc::clone(pages));
            let share = move || work(&mut pages.iter().copied().filter(|p| p % threads == t));
            queue.send(Box::new(share)).expect("saving thread");
        }
        drop(work);
        // A job drops what it captured before its result is sent.
        (0..self.jobs.len())
            .map(|_| self.results.recv().expect("saving thread"))
            .fold(0, u64::wrapping_add)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queues ends the threads.
        self.jobs.clear();
        for handle in self.handles.drain(..) {
            // A thread that panicked has already failed the run that gave it the job.
            let _ = handle.join();
        }
    }
}

impl Method {
    /// A dirty sync.
    pub fn start_pass(&mut self) {
        match self {
            Method::Qemu(q) => q.start_pass(),
            Method::Sender { sender, .. } => sender.start_pass(),
            Method::Floor { .. } | Method::CpuCheck { .. } => {}
        }
    }

    /// Saves `pages` of `guest` (ascending); returns the time taken and the record bytes (0
    /// for the floors, which write none).
    pub fn save_pages(&mut self, guest: &Guest, pages: &Arc<[u64]>) -> (Duration, u64) {
        let mut out = vec![0u8; HEADER_LEN + 3 + PAGE];
        let guest = guest.ram().clone();
        if let Method::Sender { workers, .. }
        | Method::Floor { workers, .. }
        | Method::CpuCheck { workers } = self
        {
            workers.wake();
        }
        let started = Instant::now();
        let bytes = match self {
            Method::Qemu(q) => pages
                .iter()
                .map(|&p| q.save(p, guest.page(p), &mut out) as u64)
                .sum(),
            Method::Sender {
                sender,
                workers,
                calls,
            } => {
                let (sender, calls) = (Arc::clone(sender), *calls);
                workers.run(pages, move |pages| {
                    let mut out = vec![0u8; sender.max_record_len()];
                    match calls {
                        Calls::OnePage => pages
                            .map(|p| {
                                let sent = sender.save_page(p, guest.page(p), &mut out);
                                sent.expect("send").record_len as u64
                            })
                            .sum(),
                        Calls::Batch => {
                            let mut bytes = 0;
                            let batch = pages.map(|p| (p, guest.page(p)));
                            sender
                                .save_pages(batch, &mut out, |_, sent, _| {
                                    bytes += sent.record_len as u64;
                                    ControlFlow::Continue(())
                                })
                                .expect("send");
                            bytes
                        }
                    }
                })
            }
            Method::Floor { floor, workers } => {
                let floor = Arc::clone(floor);
                let sum = workers.run(pages, move |pages| floor.read(&guest, pages));
                std::hint::black_box(sum);
                0
            }
            Method::CpuCheck { workers } => {
                let sum = workers.run(pages, |pages| {
                    let (old, new) = hot_pair();
                    let mut delta = vec![0u8; PAGE];
                    let mut sum = 0u64;
                    for _ in pages.flat_map(|_| 0..CPU_CHECK_ENCODES) {
                        let encoded = xbzrle::encode(&old, std::hint::black_box(&new), &mut delta);
                        sum = sum.wrapping_add(matches!(encoded, Encoded::Delta(_)).into());
                    }
                    sum
                });
                std::hint::black_box(sum);
                0
            }
        };
        (started.elapsed(), bytes)
    }
}

/// Encodes per page of [`Method::CpuCheck`]: 12 take about as long as a sender's save at
/// guest-RAM scale on the machine of BENCHMARKS.md, so that waking the threads weighs the
/// same on both (8 did, before `encode` got faster on 2026-12-02).
pub const CPU_CHECK_ENCODES: usize = 12;

/// The pair [`Method::CpuCheck`] encodes: a random page and a copy with 8 runs of 8 bytes
/// rewritten, as [`Guest::run`] rewrites a dirty page.
fn hot_pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = SplitMix64::new(0x5eed);
    let old: Vec<u8> = (0..PAGE).map(|_| rng.next_u64() as u8).collect();
    let mut new = old.clone();
    for _ in 0..RUNS_PER_PAGE {
        let at = (rng.next_u64() as usize % (PAGE / 8)) * 8;
        new[at..at + 8].copy_from_slice(&(!rng.next_u64()).to_le_bytes());
    }
    (old, new)
}

/// Brings every method to the steady state of a migration of `guest`: a bulk pass over all
/// pages, then two passes over the dirty set (misses insert the hot pages), every method
/// saving the same page versions.
pub fn warm_up(methods: &mut [Method], guest: &mut Guest) {
    let all: Arc<[u64]> = (0..guest.pages() as u64).collect();
    for method in methods.iter_mut() {
        method.start_pass();
        // QEMU's bulk stage sends raw pages without touching its cache: nothing to model;
        // the floors have no state.
        if matches!(method, Method::Sender { .. }) {
            method.save_pages(guest, &all);
        }
    }
    for _ in 0..2 {
        measure_pass(methods, guest, 0);
    }
}

/// One pass: the guest dirties its pages (untimed), then every method saves them, starting
/// with method `first` and going round. Returns each method's time and record bytes.
pub fn measure_pass(
    methods: &mut [Method],
    guest: &mut Guest,
    first: usize,
) -> Vec<(Duration, u64)> {
    guest.run();
    let dirty: Arc<[u64]> = guest.dirty().into();
    let mut results = vec![(Duration::ZERO, 0); methods.len()];
    for k in 0..methods.len() {
        let i = (first + k) % methods.len();
        methods[i].start_pass();
        results[i] = methods[i].save_pages(guest, &dirty);
    }
    results
}
