//! The RAM blocks a stream rebuilds: allocated lazily in chunks, so that memory follows the
//! pages the stream writes rather than the size it announces.

use std::io::{self, Write};

/// One RAM block as MEM_SIZE lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockInfo {
    /// The block's id string (`pc.ram`, `/rom@etc/acpi/tables`, …).
    pub name: String,
    /// Its used length in bytes.
    pub len: u64,
    /// The guest-physical address of its memory region, present only when the stream was
    /// written with the `x-ignore-shared` capability (listed in the configuration).
    pub mr_addr: Option<u64>,
}

/// Bytes allocated at once for a block's contents (a multiple of every supported page size).
const CHUNK_BYTES: u64 = 2 << 20;

/// What every page and chunk never written reads as (in the zero-initialised data segment:
/// no memory until read, and then the system's shared zero page).
static ZEROS: [u8; CHUNK_BYTES as usize] = [0; CHUNK_BYTES as usize];

/// A piece of a block's contents ([`Ram::extents`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent<'a> {
    /// A chunk the stream wrote to.
    Data(&'a [u8]),
    /// A chunk never written: zeros, from a shared static buffer (nothing allocated).
    Zeros(&'a [u8]),
}

impl<'a> Extent<'a> {
    /// The bytes, of either kind.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Self::Data(bytes) | Self::Zeros(bytes) => bytes,
        }
    }
}

/// The contents of the RAM blocks, in MEM_SIZE order. A page never written reads as zeros
/// and costs no memory; the rest is held in zeroed 2 MiB chunks allocated on first write.
#[derive(Debug)]
pub struct Ram {
    page_size: usize,
    blocks: Vec<BlockInfo>,
    /// Per block: its first page in the concatenation of all blocks, and its chunks.
    storage: Vec<Storage>,
}

#[derive(Debug)]
struct Storage {
    first_page: u64,
    chunks: Vec<Option<Box<[u8]>>>,
}

impl Ram {
    /// Tables for `blocks` with pages of `page_size` bytes; `Err(bytes)` if the allocator
    /// refuses the chunk tables. No block content is allocated yet.
    pub(crate) fn new(blocks: Vec<BlockInfo>, page_size: usize) -> Result<Self, u64> {
        let mut storage = Vec::new();
        storage
            .try_reserve_exact(blocks.len())
            .map_err(|_| (blocks.len() * size_of::<Storage>()) as u64)?;
        let mut first_page = 0u64;
        for block in &blocks {
            let count = usize::try_from(block.len.div_ceil(CHUNK_BYTES)).map_err(|_| u64::MAX)?;
            let mut chunks = Vec::new();
            chunks
                .try_reserve_exact(count)
                .map_err(|_| (count * size_of::<Option<Box<[u8]>>>()) as u64)?;
            chunks.resize_with(count, || None);
            storage.push(Storage { first_page, chunks });
            first_page += block.len.div_ceil(page_size as u64);
        }
        Ok(Self {
            page_size,
            blocks,
            storage,
        })
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The blocks, in MEM_SIZE order.
    pub fn blocks(&self) -> &[BlockInfo] {
        &self.blocks
    }

    /// Pages of all blocks together (a partial last page of a block counts as one).
    pub fn total_pages(&self) -> u64 {
        self.storage.last().map_or(0, |last| {
            last.first_page
                + self.blocks[self.blocks.len() - 1]
                    .len
                    .div_ceil(self.page_size as u64)
        })
    }

    /// Page number of the page at `page_offset` of block `block` in the concatenation of
    /// all blocks in MEM_SIZE order (block `i` starts where block `i - 1` ends, rounded up
    /// to a page). For QEMU's usual layout, with the main RAM block first, this is the page's
    /// RAM address divided by the page size.
    ///
    /// # Panics
    /// If `block` is out of range.
    pub fn page_number(&self, block: usize, page_offset: u64) -> u64 {
        self.storage[block].first_page + page_offset / self.page_size as u64
    }

    /// The page at `page_offset` of block `block` (zeros if never written).
    ///
    /// # Panics
    /// If `block` is out of range or the page is not entirely inside the block (the reader
    /// has checked both for every record it returns).
    pub fn page(&self, block: usize, page_offset: u64) -> &[u8] {
        let (chunk, at) = Self::locate(page_offset);
        match &self.storage[block].chunks[chunk] {
            Some(data) => &data[at..at + self.page_size],
            None => &ZEROS[..self.page_size],
        }
    }

    /// Whether the page was never written (or only with zero pages).
    fn is_unallocated(&self, block: usize, page_offset: u64) -> bool {
        let (chunk, _) = Self::locate(page_offset);
        self.storage[block].chunks[chunk].is_none()
    }

    /// The page, writable, its chunk allocated (zeroed) if needed; `Err(bytes)` if the
    /// allocator refuses the chunk.
    pub(crate) fn page_mut(&mut self, block: usize, page_offset: u64) -> Result<&mut [u8], u64> {
        let (chunk, at) = Self::locate(page_offset);
        let chunk_len = chunk_len(self.blocks[block].len, chunk);
        let slot = &mut self.storage[block].chunks[chunk];
        let data = match slot {
            Some(data) => data,
            None => {
                let mut data = Vec::new();
                data.try_reserve_exact(chunk_len)
                    .map_err(|_| chunk_len as u64)?;
                data.resize(chunk_len, 0);
                slot.insert(data.into_boxed_slice())
            }
        };
        Ok(&mut data[at..at + self.page_size])
    }

    /// Sets every byte of the page to `fill` (a ZERO record); a zero fill of a page never
    /// written allocates nothing. `Err(bytes)` as [`Ram::page_mut`].
    pub(crate) fn fill_page(
        &mut self,
        block: usize,
        page_offset: u64,
        fill: u8,
    ) -> Result<(), u64> {
        if fill == 0 && self.is_unallocated(block, page_offset) {
            return Ok(());
        }
        self.page_mut(block, page_offset)?.fill(fill);
        Ok(())
    }

    /// Chunk index and offset inside it.
    fn locate(page_offset: u64) -> (usize, usize) {
        let chunk = (page_offset / CHUNK_BYTES) as usize;
        let at = (page_offset % CHUNK_BYTES) as usize;
        (chunk, at)
    }

    /// The contents of block `block` (its used length), in order, in pieces of at most
    /// 2 MiB: the chunks written, and zeros for the others.
    ///
    /// # Panics
    /// If `block` is out of range.
    pub fn extents(&self, block: usize) -> impl Iterator<Item = Extent<'_>> {
        let len = self.blocks[block].len;
        self.storage[block]
            .chunks
            .iter()
            .enumerate()
            .map(move |(index, chunk)| match chunk {
                Some(data) => Extent::Data(data),
                None => Extent::Zeros(&ZEROS[..chunk_len(len, index)]),
            })
    }

    /// Writes the whole block `block` (its used length) to `out`.
    ///
    /// # Panics
    /// If `block` is out of range.
    pub fn write_block(&self, block: usize, out: &mut impl Write) -> io::Result<()> {
        self.extents(block)
            .try_for_each(|extent| out.write_all(extent.bytes()))
    }

    /// Bytes of block contents allocated so far (chunks written at least once).
    pub fn allocated_bytes(&self) -> u64 {
        self.storage
            .iter()
            .flat_map(|s| s.chunks.iter().flatten())
            .map(|c| c.len() as u64)
            .sum()
    }
}

/// Length of chunk `index` of a block of `len` bytes.
fn chunk_len(len: u64, index: usize) -> usize {
    let start = index as u64 * CHUNK_BYTES;
    (len - start).min(CHUNK_BYTES) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, len: u64) -> BlockInfo {
        BlockInfo {
            name: name.to_owned(),
            len,
            mr_addr: None,
        }
    }

    #[test]
    fn lazy_pages_and_dump() {
        let len = CHUNK_BYTES + 3 * 4096;
        let mut ram = Ram::new(vec![block("a", len), block("b", 4096)], 4096).unwrap();
        assert_eq!(ram.total_pages(), len / 4096 + 1);
        assert_eq!(ram.page_number(1, 0), len / 4096);
        assert_eq!(ram.page_number(0, 8192), 2);
        ram.fill_page(0, 0, 0).unwrap();
        assert_eq!(ram.allocated_bytes(), 0, "a zero page costs nothing");
        let last = len - 4096;
        ram.page_mut(0, last).unwrap()[5] = 9;
        assert_eq!(ram.allocated_bytes(), 3 * 4096, "the short last chunk");
        ram.fill_page(1, 0, 0xaa).unwrap();
        assert!(ram.page(1, 0).iter().all(|&b| b == 0xaa));
        assert_eq!(ram.page(0, 4096), &[0; 4096][..]);
        let mut out = Vec::new();
        ram.write_block(0, &mut out).unwrap();
        assert_eq!(out.len() as u64, len);
        assert_eq!(out[last as usize + 5], 9);
        assert_eq!(out.iter().map(|&b| u64::from(b)).sum::<u64>(), 9);
        let extents: Vec<_> = ram.extents(0).collect();
        assert!(matches!(extents[..], [Extent::Zeros(z), Extent::Data(d)]
            if z.len() as u64 == CHUNK_BYTES && d.len() == 3 * 4096));
    }

    #[test]
    fn huge_tables_fail_cleanly() {
        // More chunk entries than any allocator can give.
        let err = Ram::new(vec![block("huge", u64::MAX / 2)], 4096).unwrap_err();
        assert!(err > 0);
    }
}
