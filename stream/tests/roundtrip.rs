//! What the reader makes of well-formed streams, and the writer's framing read back.

mod common;

use std::io::{self, Write};

use common::{Bytes, PAGE, RAM_ID, Seen, copy, read_all};
use xbzrle_stream::{
    BlockInfo, Configuration, Event, PageBody, Section, SectionIdentity, SectionKind, StreamReader,
    StreamWriter,
};

fn seen(offset: u64, kind: &'static str, named: bool, page: u64, round: u64, sync: u64) -> Seen {
    Seen {
        offset,
        kind,
        block: "pc.ram".into(),
        named,
        page_offset: page,
        round,
        dirty_sync: sync,
    }
}

#[test]
fn records_rounds_and_dirty_syncs() {
    let bytes = Bytes::complete();
    let (records, tail) = read_all(&bytes.0).unwrap();
    // Offsets from the layout: prologue, PART header (5), records.
    let first = Bytes::prologue(4).part(RAM_ID).0.len() as u64;
    let page = 8 + 7 + PAGE as u64; // header, named block, page
    let zero = 8 + 1;
    let second = first + page + zero + (8 + PAGE as u64) + 8 + 5 + 5;
    let end = second + (8 + 7 + 3 + 3) + 8 + 5 + 5;
    assert_eq!(
        records,
        [
            seen(first, "page", true, 0, 0, 1),
            seen(first + page, "zero", false, 4096, 0, 1),
            seen(first + page + zero, "page", false, 8192, 0, 1),
            // Back to page 0: the search wrapped (round 1), and page 0 was sent since the
            // last sync, so a sync happened in between.
            seen(second, "xbzrle", true, 0, 1, 2),
            // The END section starts with a sync of its own.
            seen(end, "xbzrle", false, 8192, 1, 3),
        ]
    );
    assert_eq!(tail, [0]);

    let mut reader = StreamReader::new(&bytes.0[..]);
    while reader.next_event().unwrap().is_some() {}
    assert_eq!(reader.offset(), bytes.0.len() as u64);
    assert_eq!((reader.rounds(), reader.dirty_syncs()), (2, 3));
    assert_eq!(reader.footers(), Some(true));
    assert_eq!(reader.configuration().unwrap().machine, "pc-i440fx-7.2");
    assert_eq!(reader.ram_section().unwrap().id, RAM_ID);
    let ram = reader.ram().unwrap();
    let mut page0 = vec![1u8; PAGE];
    page0[0] = 9;
    assert_eq!(ram.page(0, 0), &page0[..]);
    assert_eq!(ram.page(0, 4096), &[0; PAGE][..]);
    let mut page2 = vec![3u8; PAGE];
    page2[5..7].copy_from_slice(b"ab");
    assert_eq!(ram.page(0, 8192), &page2[..]);
    assert_eq!(ram.page(0, 12288), &[0; PAGE][..], "never sent");
}

#[test]
fn events_carry_the_pages_before_and_after() {
    let bytes = Bytes::complete().0;
    let mut reader = StreamReader::new(&bytes[..]);
    let mut kinds = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        kinds.push(match event {
            Event::Header { version } => {
                assert_eq!(version, 3);
                "header"
            }
            Event::Configuration(_) => "configuration",
            Event::SectionStart(section) => section.kind.name(),
            Event::MemSize {
                total,
                page_size,
                blocks,
            } => {
                assert_eq!((total, page_size), (4 * PAGE as u64, PAGE));
                assert_eq!(blocks[0].name, "pc.ram");
                "mem_size"
            }
            Event::Page(r) => {
                if let PageBody::Xbzrle { delta, before } = r.body {
                    let mut after = before.to_vec();
                    xbzrle::decode(delta, &mut after).unwrap();
                    assert_eq!(after, r.page);
                    assert_ne!(before, r.page);
                }
                "page"
            }
            Event::SectionEnd { footer } => {
                assert!(footer);
                "eos"
            }
            Event::Tail(_) => "tail",
            Event::Command { .. } => "command",
        });
    }
    assert_eq!(
        kinds,
        [
            "header",
            "configuration",
            "START",
            "mem_size",
            "eos",
            "PART",
            "page",
            "page",
            "page",
            "eos",
            "PART",
            "page",
            "eos",
            "END",
            "page",
            "eos",
            "tail"
        ]
    );
}

/// A stream that names a block exactly when it changes, with every optional part: the
/// configuration's subsections (8 KiB pages, x-ignore-shared, uuid), a command, two
/// blocks, no footers, a tail.
fn rich_stream() -> Vec<u8> {
    const P: u64 = 8192;
    Bytes::new()
        .header()
        .configuration("virt-9.0")
        .u8(0x05)
        .str8(b"configuration/target-page-bits")
        .be32(1)
        .be32(13)
        .u8(0x05)
        .str8(b"configuration/capabilities")
        .be32(1)
        .be32(1)
        .str8(b"x-ignore-shared")
        .u8(0x05)
        .str8(b"configuration/uuid")
        .be32(1)
        .raw(&[0x11; 16])
        .u8(0x08)
        .be16(7)
        .be16(3)
        .raw(b"cmd")
        .start(1, "ram", 4)
        .be64((3 * P) | 0x04)
        .str8(b"mach-virt.ram")
        .be64(2 * P)
        .be64(0x4000_0000)
        .str8(b"rom")
        .be64(P)
        .be64(0)
        .be64(0x10)
        .part(1)
        .record(P, 0x08, Some("mach-virt.ram"))
        .raw(&[5; 8192])
        .record(0, 0x02, Some("rom"))
        .u8(0xee)
        .record(P, 0x40, Some("mach-virt.ram"))
        .u8(1)
        .be16(3)
        .raw(b"\x00\x01\x06")
        .be64(0x10)
        .end(1)
        .record(0, 0x02, None)
        .u8(0)
        .be64(0x10)
        .raw(b"\x04device state\x00\x06\x00\x00\x00\x02{}")
        .0
}

#[test]
fn configuration_subsections_commands_blocks_and_no_footers() {
    let bytes = rich_stream();
    let mut reader = StreamReader::new(&bytes[..]);
    let mut command = None;
    let mut numbers = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::Command { command: c, data } => command = Some((c, data.to_vec())),
            Event::Page(r) => numbers.push((r.block_name.to_owned(), r.page_number, r.named)),
            Event::SectionEnd { footer } => assert!(!footer),
            _ => {}
        }
    }
    let configuration = reader.configuration().unwrap();
    assert_eq!(configuration.machine, "virt-9.0");
    assert_eq!(configuration.target_page_bits, Some(13));
    assert_eq!(configuration.capabilities, ["x-ignore-shared"]);
    assert_eq!(configuration.uuid, Some([0x11; 16]));
    assert_eq!(reader.page_size(), 8192);
    assert_eq!(reader.footers(), Some(false));
    assert_eq!(command, Some((7, b"cmd".to_vec())));
    let ram = reader.ram().unwrap();
    assert_eq!(ram.blocks()[0].mr_addr, Some(0x4000_0000));
    assert_eq!(ram.blocks()[1].mr_addr, Some(0));
    // Page numbers run on from one block to the next.
    assert_eq!(
        numbers,
        [
            ("mach-virt.ram".to_owned(), 1, true),
            ("rom".to_owned(), 2, true),
            ("mach-virt.ram".to_owned(), 1, true),
            ("mach-virt.ram".to_owned(), 0, false),
        ]
    );
    assert!(
        ram.page(1, 0).iter().all(|&b| b == 0xee),
        "ZERO with a fill byte"
    );
    assert!(ram.page(0, 0).iter().all(|&b| b == 0), "ZERO with fill 0");
    let mut expected = vec![5u8; 8192];
    expected[0] = 6;
    assert_eq!(ram.page(0, 8192), &expected[..]);
}

#[test]
fn copies_are_byte_identical() {
    for bytes in [rich_stream(), conforming_complete()] {
        let copied = copy(&bytes[..], Vec::new()).unwrap();
        assert_eq!(copied, bytes);
    }
}

/// [`Bytes::complete`] with block names only where the block changes.
fn conforming_complete() -> Vec<u8> {
    Bytes::prologue(4)
        .part(RAM_ID)
        .page(0, Some("pc.ram"), 1)
        .zero(4096, None, 0)
        .eos(RAM_ID)
        .end(RAM_ID)
        .xbzrle(0, None, b"\x00\x01\x09")
        .eos(RAM_ID)
        .u8(0x00)
        .0
}

#[test]
fn zstd_files_are_read_on_the_fly() {
    let plain = Bytes::complete().0;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&zstd::encode_all(&plain[..], 3).unwrap())
        .unwrap();
    let mut compressed = StreamReader::open(file.path()).unwrap();
    let mut records = 0;
    while let Some(event) = compressed.next_event().unwrap() {
        records += usize::from(matches!(event, Event::Page(_)));
    }
    assert_eq!(records, 5);
    assert_eq!(
        compressed.offset(),
        plain.len() as u64,
        "offsets are uncompressed"
    );
    // A plain file opens the same way.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&plain).unwrap();
    let (expected, _) = read_all(&plain).unwrap();
    let mut reader = StreamReader::open(file.path()).unwrap();
    let mut again = 0;
    while let Some(event) = reader.next_event().unwrap() {
        again += usize::from(matches!(event, Event::Page(_)));
    }
    assert_eq!(again, expected.len());
    assert!(StreamReader::open("/nonexistent/stream").is_err());
}

#[test]
fn zero_pages_cost_no_memory() {
    let bytes = Bytes::prologue(1024)
        .part(RAM_ID)
        .zero(0, Some("pc.ram"), 0)
        .zero(4096, None, 0)
        .eos(RAM_ID)
        .0;
    let mut reader = StreamReader::new(&bytes[..]);
    while let Ok(Some(_)) = reader.next_event() {}
    assert_eq!(reader.ram().unwrap().allocated_bytes(), 0);
    let bytes = Bytes::prologue(1024)
        .part(RAM_ID)
        .zero(0, Some("pc.ram"), 0xaa)
        .eos(RAM_ID)
        .0;
    let mut reader = StreamReader::new(&bytes[..]);
    while let Ok(Some(_)) = reader.next_event() {}
    let ram = reader.ram().unwrap();
    assert!(ram.allocated_bytes() > 0);
    assert!(ram.page(0, 0).iter().all(|&b| b == 0xaa));
}

#[test]
fn dirty_syncs_need_a_repeated_page() {
    // Pages 0 and 2, then 1 (a later page after a wrap cannot be proven a new sync) and
    // 0 again (a repeat: a sync).
    let bytes = Bytes::prologue(4)
        .part(RAM_ID)
        .page(0, Some("pc.ram"), 1)
        .page(8192, None, 1)
        .eos(RAM_ID)
        .part(RAM_ID)
        .page(4096, None, 1)
        .page(12288, None, 1)
        .page(0, None, 2)
        .eos(RAM_ID)
        .end(RAM_ID)
        .eos(RAM_ID)
        .0;
    let (records, _) = read_all(&bytes).unwrap();
    let rounds: Vec<_> = records.iter().map(|r| (r.round, r.dirty_sync)).collect();
    assert_eq!(rounds, [(0, 1), (0, 1), (1, 1), (1, 1), (2, 2)]);
}

fn ram_start() -> Section {
    Section {
        kind: SectionKind::Start,
        id: RAM_ID,
        identity: Some(SectionIdentity {
            name: "ram".into(),
            instance: 0,
            version: 4,
        }),
    }
}

fn block(name: &str, len: u64) -> BlockInfo {
    BlockInfo {
        name: name.into(),
        len,
        mr_addr: None,
    }
}

#[test]
fn writer_refuses_what_qemu_would_reject() {
    let invalid = |r: io::Result<u64>| {
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    };
    let mut w = StreamWriter::new(Vec::new());
    w.header().unwrap();
    invalid(w.zero_page(0, 0, 0));
    assert!(w.end_section(true).is_err(), "no section open");
    assert!(
        w.mem_size(4096, &[block("a", 4096)]).is_err(),
        "outside a section"
    );
    w.begin_section(&ram_start()).unwrap();
    assert!(w.begin_section(&ram_start()).is_err(), "already open");
    invalid(w.zero_page(0, 0, 0)); // before MEM_SIZE
    assert!(w.mem_size(3000, &[block("a", 3000)]).is_err(), "page size");
    assert!(w.mem_size(4096, &[block("", 4096)]).is_err(), "empty name");
    assert!(
        w.mem_size(4096, &[block(&"x".repeat(256), 4096)]).is_err(),
        "long name"
    );
    assert!(
        w.mem_size(4096, &[block("a", 100)]).is_err(),
        "unaligned total"
    );
    let before = w.bytes_written();
    w.mem_size(4096, &[block("a", 2 * 4096), block("b", 4096)])
        .unwrap();
    assert!(w.bytes_written() > before);
    let before = w.bytes_written();
    invalid(w.zero_page(2, 0, 0)); // no block 2
    invalid(w.zero_page(0, 8192, 0)); // past the block
    invalid(w.zero_page(0, 100, 0)); // not page-aligned
    invalid(w.zero_page(0, !4095, 0));
    invalid(w.page(0, 0, &[0; 100]));
    invalid(w.xbzrle_page(0, 0, &[0; 4097]));
    assert_eq!(w.bytes_written(), before, "nothing written on errors");
    assert!(w.command(1, &vec![0; 70_000]).is_err());
    let nameless = Section {
        identity: None,
        ..ram_start()
    };
    w.end_section(true).unwrap();
    assert!(w.begin_section(&nameless).is_err(), "START without a name");
}

#[test]
fn writer_names_blocks_only_when_they_change() {
    let mut w = StreamWriter::new(Vec::new());
    w.header().unwrap();
    w.configuration(&Configuration::new("pc")).unwrap();
    w.begin_section(&ram_start()).unwrap();
    w.mem_size(4096, &[block("a", 2 * 4096), block("bb", 4096)])
        .unwrap();
    w.end_section(true).unwrap();
    w.begin_section(&Section {
        kind: SectionKind::Part,
        id: RAM_ID,
        identity: None,
    })
    .unwrap();
    let lengths = [
        w.zero_page(0, 0, 0).unwrap(),
        w.zero_page(0, 4096, 0).unwrap(),
        w.zero_page(1, 0, 0).unwrap(),
        w.xbzrle_page(1, 0, b"\x00\x01\x07").unwrap(),
        w.page(0, 0, &[1; 4096]).unwrap(),
    ];
    assert_eq!(
        lengths,
        [8 + 2 + 1, 8 + 1, 8 + 3 + 1, 8 + 3 + 3, 8 + 2 + 4096]
    );
    w.end_section(true).unwrap();
    w.begin_section(&Section {
        kind: SectionKind::End,
        id: RAM_ID,
        identity: None,
    })
    .unwrap();
    w.end_section(true).unwrap();
    let bytes = w.finish().unwrap();
    let (records, _) = read_all(&bytes).unwrap();
    let named: Vec<_> = records
        .iter()
        .map(|r| (r.block.as_str(), r.named))
        .collect();
    assert_eq!(
        named,
        [
            ("a", true),
            ("a", false),
            ("bb", true),
            ("bb", false),
            ("a", true)
        ]
    );
}
