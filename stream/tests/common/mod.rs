//! Hand-built streams for the tests: every field spelled out, so that a test can break
//! exactly one.

#![allow(dead_code, unreachable_pub, missing_docs)]

use xbzrle_stream::{Event, PageBody, StreamError, StreamReader};

pub const PAGE: usize = 4096;
pub const RAM_ID: u32 = 2;

/// A stream under construction.
#[derive(Debug, Default, Clone)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    pub fn be16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn be32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn be64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// u8 length + bytes.
    pub fn str8(self, s: &[u8]) -> Self {
        self.u8(s.len() as u8).raw(s)
    }

    pub fn header(self) -> Self {
        self.be32(0x5145_564d).be32(3)
    }

    pub fn configuration(self, machine: &str) -> Self {
        self.u8(0x07)
            .be32(machine.len() as u32)
            .raw(machine.as_bytes())
    }

    pub fn start(self, id: u32, name: &str, version: u32) -> Self {
        self.u8(0x01)
            .be32(id)
            .str8(name.as_bytes())
            .be32(0)
            .be32(version)
    }

    pub fn part(self, id: u32) -> Self {
        self.u8(0x02).be32(id)
    }

    pub fn end(self, id: u32) -> Self {
        self.u8(0x03).be32(id)
    }

    pub fn footer(self, id: u32) -> Self {
        self.u8(0x7e).be32(id)
    }

    /// EOS record and the footer of section `id`.
    pub fn eos(self, id: u32) -> Self {
        self.be64(0x10).footer(id)
    }

    /// MEM_SIZE with `blocks` (name, length).
    pub fn mem_size(self, blocks: &[(&str, u64)]) -> Self {
        let total: u64 = blocks.iter().map(|b| b.1).sum();
        let mut s = self.be64(total | 0x04);
        for (name, len) in blocks {
            s = s.str8(name.as_bytes()).be64(*len);
        }
        s
    }

    /// A page record header: offset | flags, and the block name unless `block` is None
    /// (then CONTINUE is set).
    pub fn record(self, offset: u64, flags: u64, block: Option<&str>) -> Self {
        match block {
            Some(name) => self.be64(offset | flags).str8(name.as_bytes()),
            None => self.be64(offset | flags | 0x20),
        }
    }

    pub fn zero(self, offset: u64, block: Option<&str>, fill: u8) -> Self {
        self.record(offset, 0x02, block).u8(fill)
    }

    pub fn page(self, offset: u64, block: Option<&str>, fill: u8) -> Self {
        self.record(offset, 0x08, block).raw(&[fill; PAGE])
    }

    pub fn xbzrle(self, offset: u64, block: Option<&str>, delta: &[u8]) -> Self {
        self.record(offset, 0x40, block)
            .u8(0x01)
            .be16(delta.len() as u16)
            .raw(delta)
    }

    /// Header, configuration, the RAM START section with one block `pc.ram` of `pages`
    /// pages.
    pub fn prologue(pages: u64) -> Self {
        Self::new()
            .header()
            .configuration("pc-i440fx-7.2")
            .start(RAM_ID, "ram", 4)
            .mem_size(&[("pc.ram", pages * PAGE as u64)])
            .eos(RAM_ID)
    }

    /// A complete small stream: two passes over 4 pages, END, an empty device state.
    pub fn complete() -> Self {
        Self::prologue(4)
            .part(RAM_ID)
            .page(0, Some("pc.ram"), 1)
            .zero(4096, None, 0)
            .page(8192, None, 3)
            .eos(RAM_ID)
            .part(RAM_ID)
            .xbzrle(0, Some("pc.ram"), b"\x00\x01\x09")
            .eos(RAM_ID)
            .end(RAM_ID)
            .xbzrle(8192, None, b"\x05\x02ab")
            .eos(RAM_ID)
            .u8(0x00)
    }
}

/// A page record as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub offset: u64,
    pub kind: &'static str,
    pub block: String,
    pub named: bool,
    pub page_offset: u64,
    pub round: u64,
    pub dirty_sync: u64,
}

/// Reads `bytes` to the end; the page records and the tail, or the first error.
pub fn read_all(bytes: &[u8]) -> Result<(Vec<Seen>, Vec<u8>), StreamError> {
    let mut reader = StreamReader::new(bytes);
    let mut seen = Vec::new();
    let mut tail = Vec::new();
    while let Some(event) = reader.next_event()? {
        match event {
            Event::Page(r) => seen.push(Seen {
                offset: r.offset,
                kind: match r.body {
                    PageBody::Zero { .. } => "zero",
                    PageBody::Page => "page",
                    PageBody::Xbzrle { .. } => "xbzrle",
                },
                block: r.block_name.to_owned(),
                named: r.named,
                page_offset: r.page_offset,
                round: r.round,
                dirty_sync: r.dirty_sync,
            }),
            Event::Tail(chunk) => tail.extend_from_slice(chunk),
            _ => {}
        }
    }
    Ok((seen, tail))
}

/// The error reading `bytes` gives.
pub fn error_of(bytes: &[u8]) -> StreamError {
    match read_all(bytes) {
        Ok(_) => panic!("the stream was accepted"),
        Err(err) => err,
    }
}

/// Reads `input` and writes every event back with a [`StreamWriter`]: page records as they
/// came (ZERO fill, PAGE data, XBZRLE delta), the rest copied. For a stream that names a
/// block exactly when it changes (as QEMU does), the copy is the stream byte for byte.
pub fn copy<W: std::io::Write>(
    input: impl std::io::Read,
    out: W,
) -> Result<W, Box<dyn std::error::Error>> {
    use xbzrle_stream::StreamWriter;
    let mut reader = StreamReader::new(input);
    let mut writer = StreamWriter::new(out);
    while let Some(event) = reader.next_event()? {
        match event {
            Event::Header { .. } => writer.header()?,
            Event::Configuration(c) => writer.configuration(c)?,
            Event::Command { command, data } => writer.command(command, data)?,
            Event::SectionStart(section) => writer.begin_section(section)?,
            Event::MemSize {
                page_size, blocks, ..
            } => writer.mem_size(page_size, blocks)?,
            Event::Page(r) => {
                let len = match r.body {
                    PageBody::Zero { fill } => writer.zero_page(r.block, r.page_offset, fill)?,
                    PageBody::Page => writer.page(r.block, r.page_offset, r.page)?,
                    PageBody::Xbzrle { delta, .. } => {
                        writer.xbzrle_page(r.block, r.page_offset, delta)?
                    }
                };
                assert_eq!(
                    len, r.len,
                    "record at {} re-written with another length",
                    r.offset
                );
            }
            Event::SectionEnd { footer } => writer.end_section(footer)?,
            Event::Tail(bytes) => writer.raw(bytes)?,
        }
    }
    Ok(writer.finish()?)
}
