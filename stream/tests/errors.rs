//! Every way a stream can be malformed: a clear error at the right byte offset, never a
//! panic, nothing read after it.

mod common;

use std::io::{self, Read};

use common::{Bytes, PAGE, RAM_ID, error_of, read_all};
use xbzrle_stream::{ErrorKind, ReaderOptions, StreamReader};

/// `(stream so far, offset where the bad field starts)`.
fn at(bytes: Bytes) -> (Bytes, u64) {
    let offset = bytes.0.len() as u64;
    (bytes, offset)
}

/// The first error `reader` gives.
fn first_error(mut reader: StreamReader<impl Read>) -> xbzrle_stream::StreamError {
    loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream was accepted"),
            Err(err) => return err,
        }
    }
}

/// The stream up to a PART section of RAM, with `pages` pages of `pc.ram`.
fn in_part(pages: u64) -> Bytes {
    Bytes::prologue(pages).part(RAM_ID)
}

#[test]
fn the_complete_stream_is_accepted() {
    let (records, tail) = read_all(&Bytes::complete().0).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(tail, [0x00]);
}

#[test]
fn truncated_anywhere() {
    let full = Bytes::complete().0;
    // Every proper prefix is refused; none panics; the error points inside the prefix.
    // (The last byte is the device state's EOF marker: the tail is opaque to the reader,
    // so the prefix without it is a valid RAM stream with an empty tail.)
    for len in 0..full.len() - 1 {
        let err = error_of(&full[..len]);
        assert!(
            matches!(err.kind(), ErrorKind::Truncated { .. }),
            "prefix of {len} bytes: {err}"
        );
        assert!(err.offset() <= len as u64, "prefix of {len} bytes: {err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn truncation_reports_the_field() {
    let (good, offset) = at(in_part(4));
    let mut bytes = good.page(0, Some("pc.ram"), 1).0;
    bytes.truncate(bytes.len() - 10);
    let err = error_of(&bytes);
    assert_eq!(err.offset(), offset);
    match err.kind() {
        ErrorKind::Truncated {
            what,
            needed,
            available,
        } => {
            assert_eq!(*what, "a PAGE record");
            assert_eq!(*needed, (8 + 1 + 6 + PAGE) as u64);
            assert_eq!(*available, (8 + 1 + 6 + PAGE - 10) as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn header() {
    let err = error_of(&Bytes::new().be32(0x5145_564e).be32(3).0);
    assert!(matches!(err.kind(), ErrorKind::BadMagic(0x5145_564e)));
    assert_eq!(err.offset(), 0);
    assert!(
        err.to_string().contains("not a QEMU migration stream"),
        "{err}"
    );
    let err = error_of(&Bytes::new().be32(0x5145_564d).be32(2).0);
    assert!(matches!(err.kind(), ErrorKind::UnsupportedVersion(2)));
    assert_eq!(err.offset(), 4);
}

#[test]
fn unknown_and_misplaced_sections() {
    let (good, offset) = at(Bytes::new().header());
    let err = error_of(&good.clone().u8(0x09).0);
    assert!(matches!(err.kind(), ErrorKind::UnknownSectionType(0x09)));
    assert_eq!(err.offset(), offset);

    for (marker, what) in [(0x00, "EOF marker"), (0x7e, "footer"), (0x05, "subsection")] {
        let err = error_of(&good.clone().u8(marker).0);
        assert!(
            matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains(what)),
            "{err}"
        );
        assert_eq!(err.offset(), offset);
    }

    // PART before START; a second START; configuration after a section.
    let err = error_of(&good.clone().part(RAM_ID).0);
    assert!(
        matches!(err.kind(), ErrorKind::UnexpectedSection(_)),
        "{err}"
    );
    let (twice, offset) = at(Bytes::prologue(1));
    let err = error_of(&twice.clone().start(RAM_ID, "ram", 4).0);
    assert!(matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains("second START")));
    assert_eq!(err.offset(), offset);
    let err = error_of(&twice.clone().configuration("pc").0);
    assert!(matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains("configuration")));

    // A device section before the RAM END, EOF before the RAM END, and the end of input.
    let full = twice.clone().u8(0x04).be32(9).str8(b"cpu").be32(0).be32(1);
    let err = error_of(&full.0);
    assert!(matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains("`cpu`")));
    assert_eq!(err.offset(), offset);
    let err = error_of(&twice.clone().u8(0x00).0);
    assert!(matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains("EOF")));
    let err = error_of(&twice.0);
    assert!(matches!(err.kind(), ErrorKind::Truncated { .. }));
    assert_eq!(err.offset(), offset);
}

#[test]
fn iterable_sections_other_than_ram() {
    let (good, offset) = at(Bytes::new().header());
    let err = error_of(&good.clone().start(3, "block", 1).0);
    assert!(matches!(err.kind(), ErrorKind::UnsupportedSection(s) if s.contains("`block`")));
    assert_eq!(err.offset(), offset);
    let err = error_of(&good.start(RAM_ID, "ram", 3).0);
    assert!(matches!(err.kind(), ErrorKind::UnsupportedRamVersion(3)));
    let (part, offset) = at(Bytes::prologue(1));
    let err = error_of(&part.part(RAM_ID + 1).0);
    assert!(matches!(err.kind(), ErrorKind::UnsupportedSection(s) if s.contains("not `ram`")));
    assert_eq!(err.offset(), offset);
}

#[test]
fn configuration() {
    let (good, offset) = at(Bytes::new().header());
    let err = error_of(&good.clone().u8(0x07).be32(1 << 20).0);
    assert!(matches!(err.kind(), ErrorKind::BadValue(s) if s.contains("machine name")));
    assert_eq!(err.offset(), offset);
    let err = error_of(&good.clone().u8(0x07).be32(2).raw(b"\xff\xfe").0);
    assert!(matches!(err.kind(), ErrorKind::BadValue(s) if s.contains("UTF-8")));

    let (config, sub) = at(good.configuration("pc"));
    let err = error_of(
        &config
            .clone()
            .u8(0x05)
            .str8(b"configuration/novel")
            .be32(1)
            .0,
    );
    assert!(
        matches!(err.kind(), ErrorKind::UnknownConfigurationSubsection(s) if s == "configuration/novel")
    );
    assert_eq!(err.offset(), sub);
    for bits in [9, 17, 64, u32::MAX] {
        let bytes = config
            .clone()
            .u8(0x05)
            .str8(b"configuration/target-page-bits")
            .be32(1)
            .be32(bits);
        let err = error_of(&bytes.0);
        assert!(
            matches!(err.kind(), ErrorKind::BadValue(s) if s.contains("page bits")),
            "{bits}: {err}"
        );
        assert_eq!(err.offset(), sub);
    }
    let err = error_of(
        &config
            .u8(0x05)
            .str8(b"configuration/capabilities")
            .be32(1)
            .be32(1_000_000)
            .0,
    );
    assert!(matches!(err.kind(), ErrorKind::BadValue(s) if s.contains("capabilities")));
}

#[test]
fn a_configuration_subsection_given_twice() {
    // QEMU writes each subsection at most once; repeats would grow the configuration with
    // the stream.
    let config = Bytes::new().header().configuration("pc");
    let uuid = |b: Bytes| b.u8(0x05).str8(b"configuration/uuid").be32(1).raw(&[7; 16]);
    let caps = |b: Bytes| {
        b.u8(0x05)
            .str8(b"configuration/capabilities")
            .be32(1)
            .be32(1)
            .str8(b"xbzrle")
    };
    let bits = |b: Bytes| {
        b.u8(0x05)
            .str8(b"configuration/target-page-bits")
            .be32(1)
            .be32(12)
    };
    for sub in [uuid, caps, bits] {
        let (once, offset) = at(sub(config.clone()));
        // Once is fine (then a RAM section must follow: the stream is cut there).
        assert!(matches!(
            error_of(&once.0).kind(),
            ErrorKind::Truncated { .. }
        ));
        let err = error_of(&sub(once).0);
        assert!(
            matches!(err.kind(), ErrorKind::BadValue(s) if s.contains("given twice")),
            "{err}"
        );
        assert_eq!(err.offset(), offset);
    }
}

#[test]
fn unknown_ram_flags() {
    for flag in [0x01, 0x80, 0x100, 0x200, 0x400, 0x800] {
        let (good, offset) = at(in_part(4));
        let err = error_of(&good.be64(flag).0);
        assert!(
            matches!(err.kind(), ErrorKind::UnsupportedRamFlags(f) if *f == flag),
            "{flag:#x}: {err}"
        );
        assert_eq!(err.offset(), offset);
    }
    let err = error_of(&in_part(4).be64(0x200).0);
    assert!(err.to_string().contains("multifd"), "{err}");
    let err = error_of(&in_part(4).be64(0x100).0);
    assert!(err.to_string().contains("COMPRESS_PAGE"), "{err}");
}

#[test]
fn bad_flag_combinations() {
    for flags in [0x00, 0x20, 0x0a, 0x42, 0x48, 0x30, 0x24, 0x12, 0x14] {
        let (good, offset) = at(in_part(4));
        let err = error_of(&good.be64(flags).0);
        assert!(
            matches!(err.kind(), ErrorKind::BadFlagCombination(f) if *f == flags),
            "{flags:#x}: {err}"
        );
        assert_eq!(err.offset(), offset);
    }
}

#[test]
fn block_names() {
    for (name, what) in [
        (&b""[..], "empty"),
        (b"pc\0ram", "NUL"),
        (b"pc.r\xffm", "UTF-8"),
    ] {
        let (good, offset) = at(in_part(4).be64(0x08));
        let err = error_of(&good.str8(name).0);
        assert!(
            matches!(err.kind(), ErrorKind::BadBlockName(s) if s.contains(what)),
            "{err}"
        );
        assert_eq!(err.offset(), offset);
    }
    let (good, offset) = at(in_part(4).be64(0x08));
    let err = error_of(&good.str8(b"pc.rom").0);
    assert!(matches!(err.kind(), ErrorKind::UnknownBlock(s) if s == "pc.rom"));
    assert_eq!(err.offset(), offset);
    // CONTINUE before any block was named.
    let (good, offset) = at(in_part(4));
    let err = error_of(&good.zero(0, None, 0).0);
    assert!(matches!(err.kind(), ErrorKind::ContinueWithoutBlock));
    assert_eq!(err.offset(), offset);
}

#[test]
fn mem_size() {
    let start = Bytes::new().header().start(RAM_ID, "ram", 4);
    // Lengths that overshoot the total.
    let (good, offset) = at(start.clone().be64(8192 | 0x04).str8(b"a").be64(4096));
    let err = error_of(&good.str8(b"b").be64(8192).0);
    assert!(
        matches!(err.kind(), ErrorKind::BadMemSize(s) if s.contains("`b`")),
        "{err}"
    );
    assert_eq!(err.offset(), offset);
    // The same name twice.
    let (good, offset) = at(start.clone().be64(8192 | 0x04).str8(b"a").be64(4096));
    let err = error_of(&good.str8(b"a").be64(4096).0);
    assert!(matches!(err.kind(), ErrorKind::BadBlockName(s) if s.contains("twice")));
    assert_eq!(err.offset(), offset);
    // Endless empty blocks.
    let mut many = start.clone().be64(4096 | 0x04);
    for i in 0..=xbzrle_stream::MAX_BLOCKS {
        many = many.str8(format!("b{i}").as_bytes()).be64(0);
    }
    let err = error_of(&many.0);
    assert!(
        matches!(err.kind(), ErrorKind::BadMemSize(s) if s.contains("blocks")),
        "{err}"
    );
    // An absurd total, before anything is allocated.
    let (good, offset) = at(start.clone());
    let err = error_of(&good.be64((1 << 62) | 0x04).str8(b"pc.ram").be64(1 << 62).0);
    assert!(
        matches!(err.kind(), ErrorKind::RamTooLarge { announced, .. } if *announced == 1 << 62)
    );
    assert_eq!(err.offset(), offset);
    let options = ReaderOptions {
        max_ram_bytes: 1 << 20,
    };
    let small = start.clone().mem_size(&[("pc.ram", 2 << 20)]).eos(RAM_ID);
    let err = first_error(StreamReader::with_options(&small.0[..], options));
    assert!(matches!(err.kind(), ErrorKind::RamTooLarge { limit, .. } if *limit == 1 << 20));
    // MEM_SIZE in a PART section, twice, or missing.
    let err = error_of(&in_part(4).mem_size(&[("x", 4096)]).0);
    assert!(matches!(err.kind(), ErrorKind::MemSizeOrder(_)));
    let (good, offset) = at(start.clone().mem_size(&[("x", 4096)]));
    let err = error_of(&good.mem_size(&[("y", 4096)]).0);
    assert!(matches!(err.kind(), ErrorKind::MemSizeOrder(_)));
    assert_eq!(err.offset(), offset);
    let (good, offset) = at(start.clone());
    let err = error_of(&good.page(0, Some("pc.ram"), 1).0);
    assert!(matches!(err.kind(), ErrorKind::MemSizeOrder(s) if s.contains("before MEM_SIZE")));
    assert_eq!(err.offset(), offset);
    let err = error_of(&start.eos(RAM_ID).0);
    assert!(matches!(err.kind(), ErrorKind::MemSizeOrder(s) if s.contains("without MEM_SIZE")));
}

#[test]
fn pages_outside_their_block() {
    for offset_in_block in [4 * PAGE as u64, 1 << 40, !(PAGE as u64 - 1)] {
        let (good, offset) = at(in_part(4));
        let err = error_of(&good.zero(offset_in_block, Some("pc.ram"), 0).0);
        assert!(
            matches!(err.kind(), ErrorKind::PageOutsideBlock { page_offset, block_len, .. }
                if *page_offset == offset_in_block && *block_len == 4 * PAGE as u64),
            "{err}"
        );
        assert_eq!(err.offset(), offset);
    }
    // A block whose length is not a whole number of pages: its last partial page is out.
    let bytes = Bytes::new()
        .header()
        .start(RAM_ID, "ram", 4)
        .mem_size(&[("odd", 8192), ("rest", 4096)])
        .eos(RAM_ID)
        .part(RAM_ID)
        .page(8192, Some("odd"), 1);
    assert!(matches!(
        error_of(&bytes.0).kind(),
        ErrorKind::PageOutsideBlock { .. }
    ));
}

#[test]
fn xbzrle_records() {
    let base = in_part(4).page(0, Some("pc.ram"), 1);
    // Wrong encoding flag.
    let (good, offset) = at(base.clone().record(0, 0x40, None));
    let err = error_of(&good.u8(0x02).be16(2).raw(b"\x00\x01").0);
    assert!(matches!(err.kind(), ErrorKind::BadXbzrleEncoding(2)));
    assert_eq!(err.offset(), offset);
    // A delta longer than a page.
    let (good, offset) = at(base.clone().record(0, 0x40, None));
    let err = error_of(&good.u8(0x01).be16(4097).raw(&[0; 4097]).0);
    assert!(matches!(
        err.kind(),
        ErrorKind::DeltaTooLong {
            len: 4097,
            page_size: 4096
        }
    ));
    assert_eq!(err.offset(), offset);
    // Deltas that do not apply: run past the page, zero-length run, truncated pair,
    // three-byte length.
    for delta in [
        &b"\x80\x20\x01\x00"[..],
        b"\x00\x00",
        b"\x05",
        b"\x80\x80\x01\x01\x00",
    ] {
        let (good, offset) = at(base
            .clone()
            .record(0, 0x40, None)
            .u8(0x01)
            .be16(delta.len() as u16));
        let err = error_of(&good.raw(delta).0);
        assert!(
            matches!(err.kind(), ErrorKind::BadDelta(_)),
            "{delta:?}: {err}"
        );
        assert_eq!(err.offset(), offset, "points at the delta");
        assert!(err.to_string().contains("does not apply"), "{err}");
    }
    // A delta cut short by the end of the stream: the error points at the record.
    let (good, offset) = at(base);
    let err = error_of(
        &good
            .record(0, 0x40, None)
            .u8(0x01)
            .be16(10)
            .raw(b"\x00\x01")
            .0,
    );
    assert!(matches!(
        err.kind(),
        ErrorKind::Truncated {
            what: "an XBZRLE delta",
            ..
        }
    ));
    assert_eq!(err.offset(), offset);
}

#[test]
fn footers() {
    // The first section has a footer, a later one does not.
    let (good, offset) = at(Bytes::prologue(4).part(RAM_ID).be64(0x10));
    let err = error_of(&good.clone().part(RAM_ID).0);
    assert!(matches!(err.kind(), ErrorKind::BadFooter(_)), "{err}");
    assert_eq!(err.offset(), offset);
    // A footer naming another section.
    let err = error_of(&good.footer(RAM_ID + 1).0);
    assert!(matches!(err.kind(), ErrorKind::BadFooter(s) if s.contains("footer of section 3")));
    assert_eq!(err.offset(), offset);
    // No footers at all is fine; then a footer is out of place.
    let plain = Bytes::new()
        .header()
        .start(RAM_ID, "ram", 4)
        .mem_size(&[("pc.ram", 4096)])
        .be64(0x10);
    let (records, _) = read_all(&plain.clone().end(RAM_ID).be64(0x10).u8(0).0).unwrap();
    assert!(records.is_empty());
    let (plain, offset) = at(plain.part(RAM_ID).be64(0x10));
    let err = error_of(&plain.footer(RAM_ID).0);
    assert!(matches!(err.kind(), ErrorKind::UnexpectedSection(s) if s.contains("footer")));
    assert_eq!(err.offset(), offset);
}

#[test]
fn read_errors_and_the_end_after_an_error() {
    struct FailsAfter(Vec<u8>);
    impl Read for FailsAfter {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("cable unplugged"));
            }
            let n = out.len().min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let good = Bytes::prologue(4);
    let mut reader = StreamReader::new(FailsAfter(good.0.clone()));
    let err = loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream was accepted"),
            Err(err) => break err,
        }
    };
    assert!(matches!(err.kind(), ErrorKind::Io(_)));
    assert_eq!(err.offset(), good.0.len() as u64);
    assert!(err.to_string().contains("cable unplugged"));
    assert!(std::error::Error::source(&err).is_some());
    assert!(
        reader.next_event().unwrap().is_none(),
        "finished after an error"
    );
}

#[test]
fn corrupt_zstd_is_a_read_error() {
    let mut compressed = zstd::encode_all(&Bytes::complete().0[..], 3).unwrap();
    let middle = compressed.len() / 2;
    compressed[middle..].iter_mut().for_each(|b| *b ^= 0x5a);
    let input = xbzrle_stream::decompressing(io::Cursor::new(compressed)).unwrap();
    let err = first_error(StreamReader::new(input));
    assert!(
        matches!(err.kind(), ErrorKind::Io(_) | ErrorKind::Truncated { .. }),
        "{err}"
    );
}
