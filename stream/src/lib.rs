#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
//!
//! # Crate layout
//!
//! * [`StreamReader`]: the stream as [`Event`]s, RAM rebuilt in a [`Ram`]; errors are
//!   [`StreamError`]s with the byte offset.
//! * [`StreamWriter`]: QEMU's framing out.
//! * [`tail`]: the device state after the RAM sections, walked with the VMDESCRIPTION.
//! * [`marker`], [`flags`]: the format's constants.

mod error;
mod ram;
mod reader;
mod source;
pub mod tail;
mod writer;

pub use error::{ErrorKind, StreamError};
pub use ram::{BlockInfo, Extent, Ram};
pub use reader::{
    Configuration, DEFAULT_PAGE_SIZE, Event, MAX_BLOCKS, MAX_CAPABILITIES, MAX_MACHINE_NAME,
    MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageBody, PageRecord, ReaderOptions, Section, SectionIdentity,
    SectionKind, StreamReader, TAIL_CHUNK, decompressing,
};
pub use writer::StreamWriter;

/// First four bytes of a stream: `QEVM`.
pub const MAGIC: u32 = 0x5145_564d;
/// The stream version QEMU writes (and this crate reads).
pub const VERSION: u32 = 3;
/// First byte of an XBZRLE record's payload.
pub const ENCODING_FLAG_XBZRLE: u8 = 0x01;

/// Top-level marker bytes (QEMU's `QEMU_VM_*`).
pub mod marker {
    /// End of the device state.
    pub const EOF: u8 = 0x00;
    /// First section of an iterable device.
    pub const SECTION_START: u8 = 0x01;
    /// Middle section of an iterable device.
    pub const SECTION_PART: u8 = 0x02;
    /// Last section of an iterable device.
    pub const SECTION_END: u8 = 0x03;
    /// Whole state of a device.
    pub const SECTION_FULL: u8 = 0x04;
    /// A subsection inside a device's state (or the configuration).
    pub const SUBSECTION: u8 = 0x05;
    /// The JSON description of the device state, after EOF.
    pub const VMDESCRIPTION: u8 = 0x06;
    /// The configuration section (machine type), right after the header.
    pub const CONFIGURATION: u8 = 0x07;
    /// A command (postcopy, return path, …).
    pub const COMMAND: u8 = 0x08;
    /// Section footer: this byte and the be32 section id.
    pub const FOOTER: u8 = 0x7e;
}

/// RAM record flags, in the low bits of the record's be64 page offset (QEMU's
/// `RAM_SAVE_FLAG_*`).
pub mod flags {
    /// Obsolete; never written by QEMU since 1.x.
    pub const FULL: u64 = 0x01;
    /// Every byte of the page is the following fill byte.
    pub const ZERO: u64 = 0x02;
    /// The block list (in the first RAM section).
    pub const MEM_SIZE: u64 = 0x04;
    /// The whole page follows.
    pub const PAGE: u64 = 0x08;
    /// End of the section's records.
    pub const EOS: u64 = 0x10;
    /// Same block as the previous page record: no block name follows.
    pub const CONTINUE: u64 = 0x20;
    /// An XBZRLE delta against the receiver's copy of the page follows.
    pub const XBZRLE: u64 = 0x40;
    /// RDMA hook.
    pub const HOOK: u64 = 0x80;
    /// A zlib-compressed page (the `compress` capability).
    pub const COMPRESS_PAGE: u64 = 0x100;
    /// multifd synchronisation (pages travel on other channels).
    pub const MULTIFD_FLUSH: u64 = 0x200;
    /// The flags this crate reads.
    pub const KNOWN: u64 = ZERO | MEM_SIZE | PAGE | EOS | CONTINUE | XBZRLE;
}
