//! Guest RAM and the dirty log of the simulator.

/// Guest-physical memory of whole pages, allocated lazily: a page that was never written
/// (or was released) holds no memory and reads as zeros.
#[derive(Debug)]
pub(crate) struct GuestMemory {
    /// One entry per page; `None` = never written, all zeros.
    pages: Vec<Option<Box<[u8]>>>,
    /// What an unallocated page reads as.
    zero: Box<[u8]>,
}

impl GuestMemory {
    /// `pages` zero pages of `page_size` bytes, none allocated.
    pub(crate) fn new(page_size: usize, pages: usize) -> Self {
        let mut table = Vec::new();
        table.resize_with(pages, || None);
        Self {
            pages: table,
            zero: vec![0; page_size].into_boxed_slice(),
        }
    }

    /// Page size in bytes.
    pub(crate) fn page_size(&self) -> usize {
        self.zero.len()
    }

    /// Number of pages.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// The content of `page` (zeros if it was never written).
    ///
    /// # Panics
    /// If `page` is not below [`len`](Self::len).
    pub(crate) fn read(&self, page: usize) -> &[u8] {
        self.pages[page].as_deref().unwrap_or(&self.zero)
    }

    /// `page`, writable; allocates it (zeroed) on first use.
    ///
    /// # Panics
    /// If `page` is not below [`len`](Self::len).
    pub(crate) fn page_mut(&mut self, page: usize) -> &mut [u8] {
        let size = self.zero.len();
        self.pages[page].get_or_insert_with(|| vec![0; size].into_boxed_slice())
    }

    /// Whether `page` holds memory.
    pub(crate) fn is_allocated(&self, page: usize) -> bool {
        self.pages.get(page).is_some_and(Option::is_some)
    }

    /// Makes `page` zero again and frees its memory.
    pub(crate) fn release(&mut self, page: usize) {
        if let Some(slot) = self.pages.get_mut(page) {
            *slot = None;
        }
    }

    /// Number of pages holding memory.
    pub(crate) fn allocated_pages(&self) -> usize {
        self.pages.iter().filter(|p| p.is_some()).count()
    }
}

/// Anything the destination can be compared with page by page.
pub(crate) trait PageSource {
    /// Number of pages.
    fn page_count(&self) -> usize;
    /// The content of `page`.
    fn page(&self, page: usize) -> &[u8];
}

impl PageSource for GuestMemory {
    fn page_count(&self) -> usize {
        self.len()
    }

    fn page(&self, page: usize) -> &[u8] {
        self.read(page)
    }
}

/// A flat image (a RAM snapshot) seen as pages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image<'a> {
    /// The bytes; a multiple of the page size long.
    pub(crate) bytes: &'a [u8],
    /// Page size in bytes.
    pub(crate) page_size: usize,
}

impl PageSource for Image<'_> {
    fn page_count(&self) -> usize {
        self.bytes.len() / self.page_size
    }

    fn page(&self, page: usize) -> &[u8] {
        &self.bytes[page * self.page_size..(page + 1) * self.page_size]
    }
}

/// The pages `dest` and `source` disagree on, in increasing order (all pages of the longer
/// one past the end of the shorter one count as different).
pub(crate) fn differing_pages(dest: &GuestMemory, source: &impl PageSource) -> Vec<u64> {
    let common = dest.len().min(source.page_count());
    let longer = dest.len().max(source.page_count());
    (0..common)
        .filter(|&p| dest.read(p) != source.page(p))
        .chain(common..longer)
        .map(|p| p as u64)
        .collect()
}

/// QEMU's dirty bitmap: which pages the guest wrote since the last sync.
#[derive(Debug, Clone)]
pub(crate) struct DirtyLog {
    /// One bit per page.
    words: Vec<u64>,
    /// Bits set.
    count: usize,
}

impl DirtyLog {
    /// A clean log for `pages` pages.
    pub(crate) fn new(pages: usize) -> Self {
        Self {
            words: vec![0; pages.div_ceil(64)],
            count: 0,
        }
    }

    /// Records a write to `page`.
    ///
    /// # Panics
    /// If `page` is beyond the pages of the log.
    pub(crate) fn mark(&mut self, page: usize) {
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        if self.words[word] & bit == 0 {
            self.words[word] |= bit;
            self.count += 1;
        }
    }

    /// Number of dirty pages.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The dirty pages in increasing order; the log is clean afterwards (a dirty sync).
    pub(crate) fn take(&mut self) -> Vec<u64> {
        let mut pages = Vec::with_capacity(self.count);
        for (index, word) in self.words.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                pages.push(index as u64 * 64 + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
        }
        self.count = 0;
        pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_lazy_and_zero() {
        let mut memory = GuestMemory::new(64, 10);
        assert_eq!(memory.allocated_pages(), 0);
        assert_eq!(memory.read(3), &[0; 64][..]);
        memory.page_mut(3)[5] = 7;
        assert!(memory.is_allocated(3));
        assert!(!memory.is_allocated(4));
        assert_eq!(memory.allocated_pages(), 1);
        assert_eq!(memory.read(3)[5], 7);
        memory.release(3);
        assert_eq!(memory.allocated_pages(), 0);
        assert_eq!(memory.read(3), &[0; 64][..]);
    }

    #[test]
    fn differing_pages_compares_content_not_allocation() {
        let mut a = GuestMemory::new(8, 4);
        let mut b = GuestMemory::new(8, 4);
        // An allocated all-zero page equals an unallocated one.
        a.page_mut(0);
        b.page_mut(2)[1] = 1;
        assert_eq!(differing_pages(&a, &b), vec![2]);
        a.page_mut(2)[1] = 1;
        assert!(differing_pages(&a, &b).is_empty());
        let image = [0u8; 40];
        let image = Image {
            bytes: &image,
            page_size: 8,
        };
        // Page 2 differs, and page 4 exists only in the image.
        assert_eq!(differing_pages(&a, &image), vec![2, 4]);
    }

    #[test]
    fn dirty_log_takes_sorted_unique_pages() {
        let mut log = DirtyLog::new(200);
        for page in [130, 5, 64, 5, 199, 63] {
            log.mark(page);
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.take(), vec![5, 63, 64, 130, 199]);
        assert_eq!(log.len(), 0);
        assert!(log.take().is_empty());
        log.mark(0);
        assert_eq!(log.take(), vec![0]);
    }
}
