//! The writer: QEMU's framing out.

use std::io::{self, Write};

use crate::ram::BlockInfo;
use crate::reader::{Configuration, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE, Section};
use crate::{ENCODING_FLAG_XBZRLE, MAGIC, VERSION, flags, marker};

/// Writes a migration stream in QEMU's framing: header, configuration, sections with EOS
/// and footers, RAM records (`be64 offset | flags`, the block name unless the record's
/// block is the previous record's, then `CONTINUE`), and raw bytes for the parts it copies.
///
/// It checks what would make QEMU reject the stream (a page outside its block, a delta
/// longer than a page, a record outside a section) and returns
/// [`io::ErrorKind::InvalidInput`] for it, writing nothing; it does not check the order of
/// sections, which is the caller's.
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    out: W,
    /// Page size, set by [`StreamWriter::mem_size`].
    page_size: usize,
    blocks: Vec<BlockInfo>,
    last_block: Option<usize>,
    /// Id of the section being written.
    section: Option<u32>,
    written: u64,
}

impl<W: Write> StreamWriter<W> {
    /// A writer to `out`; nothing is written yet.
    pub fn new(out: W) -> Self {
        Self {
            out,
            page_size: DEFAULT_PAGE_SIZE,
            blocks: Vec::new(),
            last_block: None,
            section: None,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The header: magic and version 3.
    ///
    /// # Errors
    /// Write errors.
    pub fn header(&mut self) -> io::Result<()> {
        let mut header = [0; 8];
        header[..4].copy_from_slice(&MAGIC.to_be_bytes());
        header[4..].copy_from_slice(&VERSION.to_be_bytes());
        self.put(&header)
    }

    /// The configuration section, as [`Configuration::raw`] holds it.
    ///
    /// # Errors
    /// Write errors.
    pub fn configuration(&mut self, configuration: &Configuration) -> io::Result<()> {
        self.put(&configuration.raw)
    }

    /// A `QEMU_VM_COMMAND`.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for data longer than 65535 bytes; write errors.
    pub fn command(&mut self, command: u16, data: &[u8]) -> io::Result<()> {
        let len = u16::try_from(data.len())
            .map_err(|_| invalid(format!("command data of {} bytes", data.len())))?;
        let mut head = [marker::COMMAND, 0, 0, 0, 0];
        head[1..3].copy_from_slice(&command.to_be_bytes());
        head[3..].copy_from_slice(&len.to_be_bytes());
        self.put(&head)?;
        self.put(data)
    }

    /// A section header; RAM records and [`StreamWriter::end_section`] follow.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when a section is already open, when a START or FULL
    /// section has no identity or a name longer than 255 bytes; write errors.
    pub fn begin_section(&mut self, section: &Section) -> io::Result<()> {
        if let Some(open) = self.section {
            return Err(invalid(format!("section {open} is still open")));
        }
        let mut head = Vec::with_capacity(16);
        head.push(section.kind.marker());
        head.extend_from_slice(&section.id.to_be_bytes());
        if section.kind.has_identity() {
            let identity = section.identity.as_ref().ok_or_else(|| {
                invalid(format!("{} section without a name", section.kind.name()))
            })?;
            head.push(name_len(&identity.name)?);
            head.extend_from_slice(identity.name.as_bytes());
            head.extend_from_slice(&identity.instance.to_be_bytes());
            head.extend_from_slice(&identity.version.to_be_bytes());
        }
        self.put(&head)?;
        self.section = Some(section.id);
        Ok(())
    }

    /// The MEM_SIZE record (total, then each block's name, length and, if present, region
    /// address) for pages of `page_size` bytes; page records may name these blocks by
    /// index from now on.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] outside a section, for a page size that is not a
    /// power of two from [`MIN_PAGE_SIZE`] to [`MAX_PAGE_SIZE`], an empty or too long block
    /// name, or a total that overflows or is not page-aligned; write errors.
    pub fn mem_size(&mut self, page_size: usize, blocks: &[BlockInfo]) -> io::Result<()> {
        self.open_section()?;
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(invalid(format!("unsupported page size {page_size}")));
        }
        self.page_size = page_size;
        let total = blocks
            .iter()
            .try_fold(0u64, |sum, b| sum.checked_add(b.len))
            .filter(|total| total & (self.page_size as u64 - 1) == 0)
            .ok_or_else(|| invalid("MEM_SIZE total overflows or is not page-aligned".into()))?;
        let mut record = Vec::new();
        record.extend_from_slice(&(total | flags::MEM_SIZE).to_be_bytes());
        for block in blocks {
            if block.name.is_empty() {
                return Err(invalid("empty block name".into()));
            }
            record.push(name_len(&block.name)?);
            record.extend_from_slice(block.name.as_bytes());
            record.extend_from_slice(&block.len.to_be_bytes());
            if let Some(addr) = block.mr_addr {
                record.extend_from_slice(&addr.to_be_bytes());
            }
        }
        self.put(&record)?;
        self.blocks = blocks.to_vec();
        self.last_block = None;
        Ok(())
    }

    /// A ZERO record: every byte of the page is `fill`. Returns the record's length.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] outside a section or before
    /// [`StreamWriter::mem_size`], for a block index not in MEM_SIZE, an offset that is not
    /// page-aligned or a page not inside its block; write errors.
    pub fn zero_page(&mut self, block: usize, page_offset: u64, fill: u8) -> io::Result<u64> {
        self.page_record(block, page_offset, flags::ZERO, &[fill], &[])
    }

    /// A PAGE record. Returns the record's length.
    ///
    /// # Errors
    /// As [`StreamWriter::zero_page`], and for data that is not one page.
    pub fn page(&mut self, block: usize, page_offset: u64, data: &[u8]) -> io::Result<u64> {
        if data.len() != self.page_size {
            return Err(invalid(format!(
                "page data of {} bytes, page size {}",
                data.len(),
                self.page_size
            )));
        }
        self.page_record(block, page_offset, flags::PAGE, &[], data)
    }

    /// An XBZRLE record (encoding flag, big-endian length, delta). Returns the record's
    /// length.
    ///
    /// # Errors
    /// As [`StreamWriter::zero_page`], and for a delta longer than a page (QEMU's receiver
    /// rejects it). The delta itself is not checked.
    pub fn xbzrle_page(&mut self, block: usize, page_offset: u64, delta: &[u8]) -> io::Result<u64> {
        let len = u16::try_from(delta.len())
            .ok()
            .filter(|&len| usize::from(len) <= self.page_size)
            .ok_or_else(|| {
                invalid(format!(
                    "XBZRLE delta of {} bytes, longer than a page ({})",
                    delta.len(),
                    self.page_size
                ))
            })?;
        let [hi, lo] = len.to_be_bytes();
        self.page_record(
            block,
            page_offset,
            flags::XBZRLE,
            &[ENCODING_FLAG_XBZRLE, hi, lo],
            delta,
        )
    }

    fn page_record(
        &mut self,
        block: usize,
        page_offset: u64,
        flag: u64,
        head: &[u8],
        body: &[u8],
    ) -> io::Result<u64> {
        self.open_section()?;
        let info = self
            .blocks
            .get(block)
            .ok_or_else(|| invalid(format!("block index {block} is not in MEM_SIZE")))?;
        let inside = page_offset
            .checked_add(self.page_size as u64)
            .is_some_and(|end| end <= info.len);
        if !page_offset.is_multiple_of(self.page_size as u64) || !inside {
            return Err(invalid(format!(
                "page offset {page_offset:#x} is not a page of block `{}` ({} bytes)",
                info.name, info.len
            )));
        }
        let start = self.written;
        let continued = self.last_block == Some(block);
        let word = page_offset | flag | if continued { flags::CONTINUE } else { 0 };
        let mut prefix = Vec::with_capacity(8 + 256 + head.len());
        prefix.extend_from_slice(&word.to_be_bytes());
        if !continued {
            prefix.push(name_len(&info.name)?);
            prefix.extend_from_slice(info.name.as_bytes());
        }
        prefix.extend_from_slice(head);
        self.put(&prefix)?;
        self.put(body)?;
        self.last_block = Some(block);
        Ok(self.written - start)
    }

    /// The EOS record and, if `footer` (every machine type newer than QEMU 2.3 has them),
    /// the footer of the open section.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when no section is open; write errors.
    pub fn end_section(&mut self, footer: bool) -> io::Result<()> {
        let id = self.open_section()?;
        self.put(&flags::EOS.to_be_bytes())?;
        if footer {
            let mut footer = [marker::FOOTER, 0, 0, 0, 0];
            footer[1..].copy_from_slice(&id.to_be_bytes());
            self.put(&footer)?;
        }
        self.section = None;
        Ok(())
    }

    /// Bytes copied as they are (the tail of a stream: device state, EOF, VMDESCRIPTION).
    ///
    /// # Errors
    /// Write errors.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Flushes and returns the output.
    ///
    /// # Errors
    /// Flush errors.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn open_section(&self) -> io::Result<u32> {
        self.section
            .ok_or_else(|| invalid("RAM record outside a section".into()))
    }
}

fn name_len(name: &str) -> io::Result<u8> {
    u8::try_from(name.len()).map_err(|_| invalid(format!("name `{name}` is longer than 255 bytes")))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}
