//! The streaming reader: QEMU's framing and RAM records in, [`Event`]s out.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::{ErrorKind, StreamError};
use crate::ram::{BlockInfo, Ram};
use crate::source::Source;
use crate::{ENCODING_FLAG_XBZRLE, MAGIC, VERSION, flags, marker};

/// Page size when the configuration does not say (x86's 4 KiB).
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// Smallest page size a `configuration/target-page-bits` subsection may give (1 KiB).
pub const MIN_PAGE_SIZE: usize = 1 << 10;
/// Largest page size a `configuration/target-page-bits` subsection may give (64 KiB).
pub const MAX_PAGE_SIZE: usize = 1 << 16;
/// Most RAM blocks a MEM_SIZE record may list.
pub const MAX_BLOCKS: usize = 4096;
/// Longest machine name in the configuration.
pub const MAX_MACHINE_NAME: usize = 4096;
/// Most capability names in the configuration.
pub const MAX_CAPABILITIES: usize = 1024;
/// Longest tail chunk one [`Event::Tail`] carries.
pub const TAIL_CHUNK: usize = 64 << 10;

/// Sanity limits of a [`StreamReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Most RAM (sum of the block lengths) a MEM_SIZE record may announce. The reader
    /// allocates tables in proportion to it before any page arrives (a bit per page and
    /// 8 KiB per GiB: 40 KiB per GiB with 4 KiB pages); page contents are allocated as
    /// they are written. Default: 1 TiB.
    pub max_ram_bytes: u64,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            max_ram_bytes: 1 << 40,
        }
    }
}

/// The four section types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `0x01`: the first section of an iterable device (with its name).
    Start,
    /// `0x02`: a middle section of an iterable device.
    Part,
    /// `0x03`: the last section of an iterable device (the guest is stopped).
    End,
    /// `0x04`: the whole state of a device (with its name).
    Full,
}

impl SectionKind {
    /// The marker byte.
    pub fn marker(self) -> u8 {
        match self {
            Self::Start => marker::SECTION_START,
            Self::Part => marker::SECTION_PART,
            Self::End => marker::SECTION_END,
            Self::Full => marker::SECTION_FULL,
        }
    }

    /// Name as in QEMU's sources.
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Part => "PART",
            Self::End => "END",
            Self::Full => "FULL",
        }
    }

    /// Whether the header carries the section's name, instance and version.
    pub fn has_identity(self) -> bool {
        matches!(self, Self::Start | Self::Full)
    }
}

/// Name, instance and version of a section (START and FULL headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SectionIdentity {
    /// Device id string (`ram`, `cpu`, …).
    pub name: String,
    /// Instance id.
    pub instance: u32,
    /// Version id (`ram` is 4).
    pub version: u32,
}

/// A section header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Section {
    /// Its type.
    pub kind: SectionKind,
    /// Section id (assigned by the source; `ram` is 2 in QEMU 7.2, 1 in 10.0).
    pub id: u32,
    /// Present for START and FULL.
    pub identity: Option<SectionIdentity>,
}

/// The configuration section (machine type and its subsections).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Configuration {
    /// Machine type (`pc-i440fx-7.2`).
    pub machine: String,
    /// `configuration/target-page-bits`, present when the target's page size is not its
    /// minimum one.
    pub target_page_bits: Option<u32>,
    /// `configuration/capabilities`: migration capabilities both sides must share.
    pub capabilities: Vec<String>,
    /// `configuration/uuid` (the `validate-uuid` capability).
    pub uuid: Option<[u8; 16]>,
    /// The section's bytes as they were in the stream, marker included.
    pub raw: Vec<u8>,
}

impl Configuration {
    /// A configuration with just a machine type, no subsections.
    ///
    /// # Panics
    /// If `machine` is longer than [`MAX_MACHINE_NAME`].
    pub fn new(machine: &str) -> Self {
        assert!(machine.len() <= MAX_MACHINE_NAME, "machine name too long");
        let mut raw = vec![marker::CONFIGURATION];
        raw.extend_from_slice(&(machine.len() as u32).to_be_bytes());
        raw.extend_from_slice(machine.as_bytes());
        Self {
            machine: machine.to_owned(),
            target_page_bits: None,
            capabilities: Vec::new(),
            uuid: None,
            raw,
        }
    }
}

/// What a page record carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageBody<'a> {
    /// `ZERO`: every byte of the page is `fill` (QEMU sends 0).
    Zero {
        /// Fill byte.
        fill: u8,
    },
    /// `PAGE`: the page's bytes.
    Page,
    /// `XBZRLE`: a delta against the page before.
    Xbzrle {
        /// The delta.
        delta: &'a [u8],
        /// The page before the delta was applied.
        before: &'a [u8],
    },
}

/// A page record, already applied to the reader's [`Ram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRecord<'a> {
    /// Stream offset of the record's first byte.
    pub offset: u64,
    /// Bytes of the record (header, block name if any, payload).
    pub len: u64,
    /// Index of the block in MEM_SIZE order.
    pub block: usize,
    /// The block's name.
    pub block_name: &'a str,
    /// Whether the record names its block (no `CONTINUE` flag).
    pub named: bool,
    /// Offset of the page inside its block.
    pub page_offset: u64,
    /// Page number in all blocks together ([`Ram::page_number`]).
    pub page_number: u64,
    /// The section the record is in.
    pub section: SectionKind,
    /// Round of QEMU's page search over RAM, from 0: a new round starts at a record whose
    /// (block, offset) is not after the previous record's, where the search wrapped around
    /// the block list. Round 0 is QEMU's bulk stage; XBZRLE starts with round 1.
    pub round: u64,
    /// Dirty syncs so far, as far as the stream proves them (see [`StreamReader`]): 1 for
    /// the records after the setup's sync, one more at each sync inferred since, including
    /// the one that starts the END section.
    pub dirty_sync: u64,
    /// What the record carried.
    pub body: PageBody<'a>,
    /// The page after the record.
    pub page: &'a [u8],
}

/// One step of a stream, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The header (magic checked).
    Header {
        /// Stream version (3).
        version: u32,
    },
    /// The configuration section.
    Configuration(&'a Configuration),
    /// A `QEMU_VM_COMMAND` (`0x08`) between sections.
    Command {
        /// Command number.
        command: u16,
        /// Its payload.
        data: &'a [u8],
    },
    /// A `ram` section begins (its records follow, then [`Event::SectionEnd`]).
    SectionStart(&'a Section),
    /// The MEM_SIZE record: the RAM blocks ([`StreamReader::ram`] is available from now on).
    MemSize {
        /// Total RAM announced (the sum of the block lengths).
        total: u64,
        /// Page size of the records.
        page_size: usize,
        /// The blocks.
        blocks: &'a [BlockInfo],
    },
    /// A ZERO, PAGE or XBZRLE record, applied.
    Page(PageRecord<'a>),
    /// The EOS record that ends a `ram` section, and its footer if the stream has footers.
    SectionEnd {
        /// Whether a footer followed.
        footer: bool,
    },
    /// A piece of everything after the RAM END section (device state, EOF marker,
    /// VMDESCRIPTION), in order, at most [`TAIL_CHUNK`] bytes; see [`crate::tail`].
    Tail(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    TopLevel,
    Ram,
    Tail,
    Done,
}

/// Reads a QEMU migration stream as [`Event`]s, rebuilding the RAM blocks as it goes.
///
/// Memory: the RAM being rebuilt (allocated lazily, see [`Ram`]), tables of a bit per page
/// plus 8 KiB per GiB of announced RAM (40 KiB per GiB with 4 KiB pages), a 256 KiB input
/// buffer and a few pages; nothing grows with the stream's length. The input is read once,
/// front to back.
///
/// What it accepts: version 3 streams as QEMU writes them for precopy migration to a file
/// or socket: the header, an optional configuration section (subsections
/// `target-page-bits`, `capabilities`, `uuid`, each at most once), commands, the `ram`
/// START/PART/END sections with or without footers, then anything (the device state, which
/// has no length fields, the EOF marker and the VMDESCRIPTION JSON) as an opaque tail.
/// Inside `ram`: MEM_SIZE (with `mr_addr` fields when the configuration lists
/// `x-ignore-shared`), ZERO, PAGE, XBZRLE, EOS, with or without CONTINUE. Everything else
/// is an error with the offset of the field: compressed or multifd streams, postcopy
/// page-size fields, iterable sections other than `ram`, device sections before the RAM
/// END.
///
/// Dirty syncs cannot be seen in a stream; [`PageRecord::dirty_sync`] counts the ones it
/// proves: between two syncs QEMU sends a page at most once, so a page sent again means
/// a sync happened since its previous send; the reader places it right before the record
/// that repeats the page (QEMU synced at some section boundary between the two). The END
/// section starts with a sync of its own. This is the fewest syncs consistent with the
/// stream; QEMU may have made more, which a stream cannot show.
///
/// After an error the reader is finished: further calls return `Ok(None)`.
pub struct StreamReader<R> {
    src: Source<R>,
    options: ReaderOptions,
    state: State,
    page_size: usize,
    configuration: Option<Configuration>,
    /// Whether any section or command came yet (the configuration must come first).
    sections_begun: bool,
    /// The `ram` START section, once seen.
    ram_start: Option<Section>,
    ram_ended: bool,
    /// The section being read.
    section: Option<Section>,
    footers: Option<bool>,
    ram: Option<Ram>,
    /// The index in MEM_SIZE order of every block, by name.
    block_index: HashMap<String, usize>,
    current_block: Option<usize>,
    last_position: Option<(usize, u64)>,
    round: u64,
    dirty_sync: u64,
    sent: PageSet,
    /// Scratch: the payload of the event being returned (an XBZRLE delta, command data, a
    /// tail chunk) and the page before an XBZRLE record.
    delta: Vec<u8>,
    before: Vec<u8>,
}

impl<R> std::fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("state", &self.state)
            .field("page_size", &self.page_size)
            .field("round", &self.round)
            .field("dirty_sync", &self.dirty_sync)
            .finish_non_exhaustive()
    }
}

impl StreamReader<Box<dyn Read + Send>> {
    /// Opens a stream file, plain or zstd-compressed (told by its first bytes), with the
    /// default options.
    ///
    /// # Errors
    /// The file cannot be opened or read, or its zstd header is invalid.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(path, ReaderOptions::default())
    }

    /// [`StreamReader::open`] with `options`.
    ///
    /// # Errors
    /// As [`StreamReader::open`].
    pub fn open_with(path: impl AsRef<Path>, options: ReaderOptions) -> io::Result<Self> {
        let file = File::open(path)?;
        Ok(Self::with_options(decompressing(file)?, options))
    }
}

/// `input`, decompressed on the fly if it starts with a zstd frame.
///
/// # Errors
/// Reading the first bytes fails, or the zstd decoder cannot be set up.
pub fn decompressing(input: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = io::Cursor::new(head[..got].to_vec()).chain(input);
    if head[..got] == ZSTD_MAGIC {
        Ok(Box::new(zstd::stream::read::Decoder::new(whole)?))
    } else {
        Ok(Box::new(whole))
    }
}

impl<R: Read> StreamReader<R> {
    /// A reader of the uncompressed stream `input` with the default options.
    pub fn new(input: R) -> Self {
        Self::with_options(input, ReaderOptions::default())
    }

    /// A reader of the uncompressed stream `input`.
    pub fn with_options(input: R, options: ReaderOptions) -> Self {
        Self {
            src: Source::new(input),
            options,
            state: State::Header,
            page_size: DEFAULT_PAGE_SIZE,
            configuration: None,
            sections_begun: false,
            ram_start: None,
            ram_ended: false,
            section: None,
            footers: None,
            ram: None,
            block_index: HashMap::new(),
            current_block: None,
            last_position: None,
            round: 0,
            dirty_sync: 0,
            sent: PageSet::default(),
            delta: Vec::new(),
            before: Vec::new(),
        }
    }

    /// Offset of the next byte to read in the uncompressed stream.
    pub fn offset(&self) -> u64 {
        self.src.offset()
    }

    /// Page size: 4 KiB unless the configuration says otherwise.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The configuration section, once read.
    pub fn configuration(&self) -> Option<&Configuration> {
        self.configuration.as_ref()
    }

    /// Whether sections carry footers (known after the first section).
    pub fn footers(&self) -> Option<bool> {
        self.footers
    }

    /// The `ram` START section, once read.
    pub fn ram_section(&self) -> Option<&Section> {
        self.ram_start.as_ref()
    }

    /// The RAM rebuilt so far (after MEM_SIZE).
    pub fn ram(&self) -> Option<&Ram> {
        self.ram.as_ref()
    }

    /// The rebuilt RAM, consuming the reader.
    pub fn into_ram(self) -> Option<Ram> {
        self.ram
    }

    /// Rounds of the page search started so far ([`PageRecord::round`] + 1 after a page).
    pub fn rounds(&self) -> u64 {
        if self.last_position.is_some() {
            self.round + 1
        } else {
            0
        }
    }

    /// Dirty syncs inferred so far ([`PageRecord::dirty_sync`]).
    pub fn dirty_syncs(&self) -> u64 {
        self.dirty_sync
    }

    /// The next event; `Ok(None)` at the end of the input (after the tail).
    ///
    /// # Errors
    /// A malformed or unsupported stream, or a read error; see [`ErrorKind`]. The reader
    /// is finished afterwards.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, StreamError> {
        let step = match self.state {
            State::Header => self.header(),
            State::TopLevel => self.top_level(),
            State::Ram => self.ram_record(),
            State::Tail => self.tail_step(),
            State::Done => return Ok(None),
        };
        match step {
            Ok(step) => Ok(self.event(step)),
            Err(err) => {
                self.state = State::Done;
                Err(err)
            }
        }
    }

    /// Turns what a step found into the event that borrows from `self`.
    fn event(&mut self, step: Step) -> Option<Event<'_>> {
        Some(match step {
            Step::End => return None,
            Step::Header(version) => Event::Header { version },
            Step::Configuration => Event::Configuration(self.configuration.as_ref()?),
            Step::Command(command, len) => Event::Command {
                command,
                data: &self.delta[..len],
            },
            Step::SectionStart => Event::SectionStart(self.section.as_ref()?),
            Step::MemSize(total) => Event::MemSize {
                total,
                page_size: self.page_size,
                blocks: self.ram.as_ref()?.blocks(),
            },
            Step::Page(page) => {
                let ram = self.ram.as_ref()?;
                Event::Page(PageRecord {
                    offset: page.offset,
                    len: page.len,
                    block: page.block,
                    block_name: &ram.blocks()[page.block].name,
                    named: page.named,
                    page_offset: page.page_offset,
                    page_number: page.page_number,
                    section: page.section,
                    round: self.round,
                    dirty_sync: self.dirty_sync,
                    body: match page.body {
                        StepBody::Zero(fill) => PageBody::Zero { fill },
                        StepBody::Page => PageBody::Page,
                        StepBody::Xbzrle => PageBody::Xbzrle {
                            delta: &self.delta,
                            before: &self.before,
                        },
                    },
                    page: ram.page(page.block, page.page_offset),
                })
            }
            Step::SectionEnd(footer) => Event::SectionEnd { footer },
            Step::Tail(len) => Event::Tail(&self.delta[..len]),
        })
    }

    fn header(&mut self) -> Result<Step, StreamError> {
        let magic = self.src.be32("the header")?;
        if magic != MAGIC {
            return Err(StreamError::new(0, ErrorKind::BadMagic(magic)));
        }
        let version = self.src.be32("the header")?;
        if version != VERSION {
            return Err(StreamError::new(4, ErrorKind::UnsupportedVersion(version)));
        }
        self.state = State::TopLevel;
        Ok(Step::Header(version))
    }

    fn top_level(&mut self) -> Result<Step, StreamError> {
        let at = self.src.offset();
        if self.ram_ended {
            self.state = State::Tail;
            return self.tail_step();
        }
        let Some(marker) = self.src.peek()? else {
            return Err(StreamError::new(
                at,
                ErrorKind::Truncated {
                    what: "the next section (the stream ends before the RAM END section)",
                    needed: 1,
                    available: 0,
                },
            ));
        };
        let unexpected =
            |what: String| Err(StreamError::new(at, ErrorKind::UnexpectedSection(what)));
        match marker {
            marker::CONFIGURATION => {
                if self.sections_begun || self.configuration.is_some() {
                    return unexpected("configuration section after the first section".into());
                }
                self.read_configuration()?;
                Ok(Step::Configuration)
            }
            marker::COMMAND => {
                self.sections_begun = true;
                self.src.u8("a command")?;
                let command = self.src.be16("a command")?;
                let len = usize::from(self.src.be16("a command")?);
                let data = self.src.take_at(len, "a command", at)?;
                self.delta.clear();
                self.delta.extend_from_slice(data);
                Ok(Step::Command(command, len))
            }
            marker::SECTION_START | marker::SECTION_PART | marker::SECTION_END => {
                self.sections_begun = true;
                self.ram_section_header(at)
            }
            marker::SECTION_FULL => {
                let section = self.section_header(at)?;
                let name = section.identity.map(|i| i.name).unwrap_or_default();
                unexpected(format!(
                    "device section `{name}` before the RAM END section (device state has no \
                     length fields; only a tail after the RAM sections is supported)"
                ))
            }
            marker::EOF => unexpected("EOF marker before the RAM END section".into()),
            marker::FOOTER => unexpected("section footer outside a section".into()),
            marker::SUBSECTION => unexpected("subsection marker at the top level".into()),
            other => Err(StreamError::new(at, ErrorKind::UnknownSectionType(other))),
        }
    }

    /// Reads a section header: marker, id and, for START and FULL, name, instance and
    /// version.
    fn section_header(&mut self, at: u64) -> Result<Section, StreamError> {
        let kind = match self.src.u8("a section header")? {
            marker::SECTION_START => SectionKind::Start,
            marker::SECTION_PART => SectionKind::Part,
            marker::SECTION_END => SectionKind::End,
            _ => SectionKind::Full,
        };
        let id = self.src.be32("a section header")?;
        let identity = if kind.has_identity() {
            let len = usize::from(self.src.u8("a section header")?);
            let name = self.src.take_at(len, "a section name", at)?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| {
                StreamError::new(at, ErrorKind::BadValue("section name is not UTF-8".into()))
            })?;
            let instance = self.src.be32("a section header")?;
            let version = self.src.be32("a section header")?;
            Some(SectionIdentity {
                name,
                instance,
                version,
            })
        } else {
            None
        };
        Ok(Section { kind, id, identity })
    }

    fn ram_section_header(&mut self, at: u64) -> Result<Step, StreamError> {
        let section = self.section_header(at)?;
        let unsupported =
            |what: String| Err(StreamError::new(at, ErrorKind::UnsupportedSection(what)));
        let unexpected = |what: &str| {
            Err(StreamError::new(
                at,
                ErrorKind::UnexpectedSection(what.to_owned()),
            ))
        };
        match (&section.identity, &self.ram_start) {
            (Some(identity), _) if identity.name != "ram" => {
                return unsupported(format!(
                    "START of the iterable section `{}` (only `ram` is supported)",
                    identity.name
                ));
            }
            (Some(identity), None) => {
                if identity.version != 4 {
                    return Err(StreamError::new(
                        at,
                        ErrorKind::UnsupportedRamVersion(identity.version),
                    ));
                }
                self.ram_start = Some(section.clone());
                self.dirty_sync = 1;
            }
            (Some(_), Some(_)) => return unexpected("second START section of `ram`"),
            (None, None) => return unexpected("PART or END section before the RAM START"),
            (None, Some(start)) if start.id != section.id => {
                return unsupported(format!(
                    "{} section of section id {}, which is not `ram` (id {})",
                    section.kind.name(),
                    section.id,
                    start.id
                ));
            }
            (None, Some(_)) => {
                if section.kind == SectionKind::End {
                    // The last stage starts with a sync of its own.
                    self.new_dirty_sync();
                }
            }
        }
        self.section = Some(section);
        self.state = State::Ram;
        Ok(Step::SectionStart)
    }

    fn read_configuration(&mut self) -> Result<(), StreamError> {
        let at = self.src.offset();
        let mut raw = Vec::new();
        raw.push(self.src.u8("the configuration")?);
        let len = self.src.be32("the configuration")?;
        raw.extend_from_slice(&len.to_be_bytes());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_MACHINE_NAME {
            return Err(bad_value(
                at,
                format!("machine name of {len} bytes (at most {MAX_MACHINE_NAME})"),
            ));
        }
        let name = self.src.take_at(len, "the machine name", at)?;
        raw.extend_from_slice(name);
        let machine = String::from_utf8(name.to_vec())
            .map_err(|_| bad_value(at, "machine name is not UTF-8".into()))?;
        let mut configuration = Configuration {
            machine,
            target_page_bits: None,
            capabilities: Vec::new(),
            uuid: None,
            raw: Vec::new(),
        };
        // The subsections read so far (at most the three known ones): QEMU writes each at
        // most once, and a repeat would make `raw` grow with the stream.
        let mut seen: Vec<String> = Vec::new();
        while self.src.peek()? == Some(marker::SUBSECTION) {
            let sub_at = self.src.offset();
            raw.push(self.src.u8("a configuration subsection")?);
            let name_len = self.src.u8("a configuration subsection")?;
            raw.push(name_len);
            let name = self
                .src
                .take_at(name_len.into(), "a configuration subsection", sub_at)?;
            raw.extend_from_slice(name);
            let name = String::from_utf8_lossy(name).into_owned();
            let version = self.src.be32("a configuration subsection")?;
            raw.extend_from_slice(&version.to_be_bytes());
            if seen.contains(&name) {
                return Err(bad_value(
                    sub_at,
                    format!("configuration subsection `{name}` given twice"),
                ));
            }
            seen.push(name.clone());
            match name.as_str() {
                "configuration/target-page-bits" => {
                    let bits = self.src.be32("configuration/target-page-bits")?;
                    raw.extend_from_slice(&bits.to_be_bytes());
                    let size = 1usize.checked_shl(bits).unwrap_or(0);
                    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size) {
                        return Err(bad_value(
                            sub_at,
                            format!(
                                "target page bits {bits}: page sizes from {MIN_PAGE_SIZE} to \
                                 {MAX_PAGE_SIZE} bytes are supported"
                            ),
                        ));
                    }
                    configuration.target_page_bits = Some(bits);
                    self.page_size = size;
                }
                "configuration/capabilities" => {
                    let count = self.src.be32("configuration/capabilities")?;
                    raw.extend_from_slice(&count.to_be_bytes());
                    if count as usize > MAX_CAPABILITIES {
                        return Err(bad_value(
                            sub_at,
                            format!("{count} capabilities (at most {MAX_CAPABILITIES})"),
                        ));
                    }
                    for _ in 0..count {
                        let cap_at = self.src.offset();
                        let len = self.src.u8("a capability name")?;
                        raw.push(len);
                        let cap = self.src.take_at(len.into(), "a capability name", cap_at)?;
                        raw.extend_from_slice(cap);
                        configuration
                            .capabilities
                            .push(String::from_utf8_lossy(cap).into_owned());
                    }
                }
                "configuration/uuid" => {
                    let uuid = self.src.array::<16>("configuration/uuid", sub_at)?;
                    raw.extend_from_slice(&uuid);
                    configuration.uuid = Some(uuid);
                }
                _ => {
                    return Err(StreamError::new(
                        sub_at,
                        ErrorKind::UnknownConfigurationSubsection(name),
                    ));
                }
            }
        }
        configuration.raw = raw;
        self.configuration = Some(configuration);
        Ok(())
    }

    fn ignore_shared(&self) -> bool {
        self.configuration
            .as_ref()
            .is_some_and(|c| c.capabilities.iter().any(|cap| cap == "x-ignore-shared"))
    }

    /// Reads one RAM record of the current section.
    fn ram_record(&mut self) -> Result<Step, StreamError> {
        let at = self.src.offset();
        let header = self.src.be64("a RAM record header")?;
        let page_mask = self.page_size as u64 - 1;
        let record_flags = header & page_mask;
        let address = header & !page_mask;
        if record_flags & !flags::KNOWN != 0 {
            return Err(StreamError::new(
                at,
                ErrorKind::UnsupportedRamFlags(record_flags),
            ));
        }
        let bad_combination = || StreamError::new(at, ErrorKind::BadFlagCombination(record_flags));
        let section_kind = self.section.as_ref().map_or(SectionKind::Part, |s| s.kind);
        match record_flags & !flags::CONTINUE {
            flags::MEM_SIZE if record_flags & flags::CONTINUE == 0 => self.mem_size(at, address),
            flags::EOS if record_flags & flags::CONTINUE == 0 => self.end_of_section(),
            flags::ZERO | flags::PAGE | flags::XBZRLE => {
                self.page_record(at, record_flags, address, section_kind)
            }
            _ => Err(bad_combination()),
        }
    }

    fn mem_size(&mut self, at: u64, total: u64) -> Result<Step, StreamError> {
        let in_start = self
            .section
            .as_ref()
            .is_some_and(|s| s.kind == SectionKind::Start);
        if self.ram.is_some() || !in_start {
            return Err(StreamError::new(
                at,
                ErrorKind::MemSizeOrder("MEM_SIZE outside the first RAM section or given twice"),
            ));
        }
        if total > self.options.max_ram_bytes {
            return Err(StreamError::new(
                at,
                ErrorKind::RamTooLarge {
                    announced: total,
                    limit: self.options.max_ram_bytes,
                },
            ));
        }
        let with_addr = self.ignore_shared();
        let mut blocks: Vec<BlockInfo> = Vec::new();
        let mut block_index = HashMap::new();
        let mut sum = 0u64;
        while sum < total {
            let block_at = self.src.offset();
            if blocks.len() == MAX_BLOCKS {
                return Err(StreamError::new(
                    block_at,
                    ErrorKind::BadMemSize(format!("more than {MAX_BLOCKS} blocks")),
                ));
            }
            let name = self.block_name(block_at)?;
            if block_index.insert(name.clone(), blocks.len()).is_some() {
                return Err(StreamError::new(
                    block_at,
                    ErrorKind::BadBlockName(format!("`{name}` is listed twice")),
                ));
            }
            let len = self.src.be64("a MEM_SIZE block length")?;
            let mr_addr = if with_addr {
                Some(self.src.be64("a MEM_SIZE region address")?)
            } else {
                None
            };
            if len > total - sum {
                return Err(StreamError::new(
                    block_at,
                    ErrorKind::BadMemSize(format!(
                        "block `{name}` of {len} bytes exceeds the {} bytes left of the \
                         total {total}",
                        total - sum
                    )),
                ));
            }
            sum += len;
            blocks.push(BlockInfo { name, len, mr_addr });
        }
        let page_size = self.page_size;
        let ram = Ram::new(blocks, page_size)
            .map_err(|bytes| StreamError::new(at, ErrorKind::OutOfMemory(bytes)))?;
        self.sent = PageSet::new(ram.total_pages())
            .map_err(|bytes| StreamError::new(at, ErrorKind::OutOfMemory(bytes)))?;
        self.before = vec![0; page_size];
        self.ram = Some(ram);
        self.block_index = block_index;
        Ok(Step::MemSize(total))
    }

    /// A block name: u8 length and that many bytes, UTF-8, no NUL, not empty.
    fn block_name(&mut self, at: u64) -> Result<String, StreamError> {
        let len = self.src.u8("a block name")?;
        let name = self.src.take_at(len.into(), "a block name", at)?;
        let bad = |what: &str| StreamError::new(at, ErrorKind::BadBlockName(what.to_owned()));
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.contains(&0) {
            return Err(bad("contains a NUL byte"));
        }
        String::from_utf8(name.to_vec()).map_err(|_| bad("not UTF-8"))
    }

    fn end_of_section(&mut self) -> Result<Step, StreamError> {
        let section = self.section.take().ok_or_else(|| {
            StreamError::new(
                self.src.offset(),
                ErrorKind::UnexpectedSection("EOS".into()),
            )
        })?;
        if section.kind == SectionKind::Start && self.ram.is_none() {
            return Err(StreamError::new(
                self.src.offset() - 8,
                ErrorKind::MemSizeOrder("the RAM START section ends without MEM_SIZE"),
            ));
        }
        let at = self.src.offset();
        let next = self.src.peek()?;
        let footers = *self.footers.get_or_insert(next == Some(marker::FOOTER));
        if footers {
            if next.is_none() {
                return Err(StreamError::new(
                    at,
                    ErrorKind::Truncated {
                        what: "a section footer",
                        needed: 5,
                        available: 0,
                    },
                ));
            }
            if next != Some(marker::FOOTER) {
                return Err(StreamError::new(
                    at,
                    ErrorKind::BadFooter(format!(
                        "expected the footer of section {}, found {:#04x}",
                        section.id,
                        next.unwrap_or_default()
                    )),
                ));
            }
            self.src.u8("a section footer")?;
            let id = self.src.be32("a section footer")?;
            if id != section.id {
                return Err(StreamError::new(
                    at,
                    ErrorKind::BadFooter(format!(
                        "footer of section {id} ends section {}",
                        section.id
                    )),
                ));
            }
        }
        if section.kind == SectionKind::End {
            self.ram_ended = true;
        }
        self.state = State::TopLevel;
        Ok(Step::SectionEnd(footers))
    }

    fn page_record(
        &mut self,
        at: u64,
        record_flags: u64,
        page_offset: u64,
        section: SectionKind,
    ) -> Result<Step, StreamError> {
        if self.ram.is_none() {
            return Err(StreamError::new(
                at,
                ErrorKind::MemSizeOrder("page record before MEM_SIZE"),
            ));
        }
        let named = record_flags & flags::CONTINUE == 0;
        let block = if named {
            let name_at = self.src.offset();
            let name = self.block_name(name_at)?;
            let index = *self
                .block_index
                .get(&name)
                .ok_or_else(|| StreamError::new(name_at, ErrorKind::UnknownBlock(name)))?;
            self.current_block = Some(index);
            index
        } else {
            self.current_block
                .ok_or_else(|| StreamError::new(at, ErrorKind::ContinueWithoutBlock))?
        };
        let page_size = self.page_size;
        let ram = self.ram.as_mut().expect("checked above");
        let out_of_memory = |bytes| StreamError::new(at, ErrorKind::OutOfMemory(bytes));
        let info = &ram.blocks()[block];
        if page_offset
            .checked_add(page_size as u64)
            .is_none_or(|end| end > info.len)
        {
            return Err(StreamError::new(
                at,
                ErrorKind::PageOutsideBlock {
                    block: info.name.clone(),
                    page_offset,
                    block_len: info.len,
                },
            ));
        }
        let body = match record_flags & !flags::CONTINUE {
            flags::ZERO => {
                let fill = self.src.u8("a ZERO record")?;
                ram.fill_page(block, page_offset, fill)
                    .map_err(out_of_memory)?;
                StepBody::Zero(fill)
            }
            flags::PAGE => {
                let data = self.src.take_at(page_size, "a PAGE record", at)?;
                ram.page_mut(block, page_offset)
                    .map_err(out_of_memory)?
                    .copy_from_slice(data);
                StepBody::Page
            }
            _ => {
                let payload_at = self.src.offset();
                let encoding = self.src.u8("an XBZRLE record")?;
                if encoding != ENCODING_FLAG_XBZRLE {
                    return Err(StreamError::new(
                        payload_at,
                        ErrorKind::BadXbzrleEncoding(encoding),
                    ));
                }
                let len = usize::from(self.src.be16("an XBZRLE record")?);
                if len > page_size {
                    return Err(StreamError::new(
                        payload_at,
                        ErrorKind::DeltaTooLong { len, page_size },
                    ));
                }
                let delta_at = self.src.offset();
                let delta = self.src.take_at(len, "an XBZRLE delta", at)?;
                let page = ram.page_mut(block, page_offset).map_err(out_of_memory)?;
                self.before.copy_from_slice(page);
                // All or nothing: a delta that does not apply leaves the page as it was.
                xbzrle::decode(delta, page)
                    .map_err(|e| StreamError::new(delta_at, ErrorKind::BadDelta(e)))?;
                self.delta.clear();
                self.delta.extend_from_slice(delta);
                StepBody::Xbzrle
            }
        };
        let position = (block, page_offset);
        if self.last_position.is_some_and(|last| position <= last) {
            self.round += 1;
        }
        self.last_position = Some(position);
        let page_number = self
            .ram
            .as_ref()
            .expect("checked above")
            .page_number(block, page_offset);
        if !self.sent.insert(page_number) {
            self.new_dirty_sync();
            self.sent.insert(page_number);
        }
        Ok(Step::Page(StepPage {
            offset: at,
            len: self.src.offset() - at,
            block,
            named,
            page_offset,
            page_number,
            section,
            body,
        }))
    }

    fn new_dirty_sync(&mut self) {
        self.dirty_sync += 1;
        self.sent.clear();
    }

    fn tail_step(&mut self) -> Result<Step, StreamError> {
        let chunk = self.src.chunk(TAIL_CHUNK)?;
        if chunk.is_empty() {
            self.state = State::Done;
            return Ok(Step::End);
        }
        self.delta.clear();
        self.delta.extend_from_slice(chunk);
        Ok(Step::Tail(chunk.len()))
    }
}

fn bad_value(at: u64, what: String) -> StreamError {
    StreamError::new(at, ErrorKind::BadValue(what))
}

/// What a step of the reader found; [`StreamReader::event`] makes the event.
enum Step {
    End,
    Header(u32),
    Configuration,
    /// Command number and payload length (payload in the scratch buffer).
    Command(u16, usize),
    SectionStart,
    MemSize(u64),
    Page(StepPage),
    SectionEnd(bool),
    /// Chunk length (bytes in the scratch buffer).
    Tail(usize),
}

struct StepPage {
    offset: u64,
    len: u64,
    block: usize,
    named: bool,
    page_offset: u64,
    page_number: u64,
    section: SectionKind,
    body: StepBody,
}

enum StepBody {
    Zero(u8),
    Page,
    Xbzrle,
}

/// The pages sent since the last inferred dirty sync: a bitmap, cleared word by word.
#[derive(Debug, Default)]
struct PageSet {
    words: Vec<u64>,
    /// Indices of the words that are not zero.
    touched: Vec<usize>,
}

impl PageSet {
    /// A set for pages `0..pages`; `Err(bytes)` if the allocator refuses it.
    fn new(pages: u64) -> Result<Self, u64> {
        let count = usize::try_from(pages.div_ceil(64)).map_err(|_| u64::MAX)?;
        let mut words = Vec::new();
        words
            .try_reserve_exact(count)
            .map_err(|_| (count as u64).saturating_mul(8))?;
        words.resize(count, 0);
        Ok(Self {
            words,
            touched: Vec::new(),
        })
    }

    /// Adds `page`; false if it was already there.
    fn insert(&mut self, page: u64) -> bool {
        let (word, bit) = ((page / 64) as usize, 1u64 << (page % 64));
        let Some(slot) = self.words.get_mut(word) else {
            return true;
        };
        if *slot & bit != 0 {
            return false;
        }
        if *slot == 0 {
            self.touched.push(word);
        }
        *slot |= bit;
        true
    }

    fn clear(&mut self) {
        for word in self.touched.drain(..) {
            self.words[word] = 0;
        }
    }
}
