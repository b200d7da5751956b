//! Writes the seed corpus of the `stream` target: the first kilobytes of the recorded QEMU
//! 7.2 migration streams (`docs/data.md`), short streams cut from their XBZRLE passes, and two
//! hand-built streams with every optional part (configuration subsections, 1 KiB pages,
//! `x-ignore-shared`, a command, no footers, a device state with its VMDESCRIPTION).
//!
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example stream_seeds [-- STREAMS_DIR]`
//! (default: the streams' default location, `../shared/qemu-streams`). It rewrites
//! `fuzz/corpus/stream/seed-*`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use xbzrle_stream::{
    BlockInfo, Configuration, Event, PageBody, Section, SectionIdentity, SectionKind, StreamReader,
    StreamWriter, decompressing,
};

/// Bytes of a real stream's beginning kept as a seed.
const HEAD: usize = 4096;
/// Largest seed cut from a real stream.
const MAX_SEED: usize = 4096;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let streams = std::env::args_os()
        .nth(1)
        .map_or_else(|| root.join("../../shared/qemu-streams"), PathBuf::from);
    let corpus = root.join("corpus/stream");
    fs::create_dir_all(&corpus).expect("corpus directory");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, short, first_round) in [
        ("dirty1024-xbzrle-32M", "dirty1024", 10),
        ("kvstore-short-xbzrle-32M", "kvstore", 2),
    ] {
        let path = streams.join(format!("{name}.stream.zst"));
        let mut head = Vec::new();
        decompressing(fs::File::open(&path).expect("a recorded stream"))
            .expect("zstd")
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .expect("readable stream");
        seeds.push((format!("seed-real-head-{short}"), head));
        seeds.push((format!("seed-real-xbzrle-{short}"), cut(&path, first_round)));
    }
    seeds.push(("seed-small-1k-pages".into(), small(true)));
    seeds.push(("seed-small-no-footers".into(), small(false)));
    for (name, bytes) in seeds {
        println!("{name}: {} bytes", bytes.len());
        fs::write(corpus.join(name), bytes).expect("seed written");
    }
}

/// The real stream's header, configuration and RAM START section, then its XBZRLE records
/// from round `first_round` on in one PART section, up to [`MAX_SEED`] bytes, then an END
/// section and the EOF marker.
fn cut(path: &Path, first_round: u64) -> Vec<u8> {
    let mut reader = StreamReader::open(path).expect("a recorded stream");
    let mut writer = StreamWriter::new(Vec::new());
    let mut ram_id = 0;
    let mut start_open = false;
    let mut in_part = false;
    while let Some(event) = reader.next_event().expect("a valid stream") {
        match event {
            Event::Header { .. } => writer.header(),
            Event::Configuration(c) => writer.configuration(c),
            Event::SectionStart(section) if section.kind == SectionKind::Start => {
                ram_id = section.id;
                start_open = true;
                writer.begin_section(section)
            }
            Event::MemSize {
                page_size, blocks, ..
            } => writer.mem_size(page_size, blocks),
            Event::SectionEnd { footer } if start_open => {
                start_open = false;
                writer.end_section(footer)
            }
            Event::Page(record) if record.round >= first_round => {
                let PageBody::Xbzrle { delta, .. } = record.body else {
                    continue;
                };
                if !in_part {
                    writer
                        .begin_section(&Section {
                            kind: SectionKind::Part,
                            id: ram_id,
                            identity: None,
                        })
                        .expect("memory");
                    in_part = true;
                }
                if writer.bytes_written() + record.len > (MAX_SEED - 30) as u64 {
                    break;
                }
                writer
                    .xbzrle_page(record.block, record.page_offset, delta)
                    .map(|_| ())
            }
            _ => Ok(()),
        }
        .expect("writing to memory");
    }
    writer.end_section(true).expect("memory");
    writer
        .begin_section(&Section {
            kind: SectionKind::End,
            id: ram_id,
            identity: None,
        })
        .expect("memory");
    writer.end_section(true).expect("memory");
    writer.raw(&[0x00]).expect("memory");
    writer.finish().expect("memory")
}

/// A small stream with every optional part; 1 KiB pages and footers, or 4 KiB pages
/// without.
fn small(kilobyte_pages: bool) -> Vec<u8> {
    let page = if kilobyte_pages { 1024 } else { 4096 };
    let mut configuration = Configuration::new("virt-9.0");
    if kilobyte_pages {
        // configuration/target-page-bits = 10, configuration/capabilities = [x-ignore-shared]
        configuration
            .raw
            .extend_from_slice(b"\x05\x1econfiguration/target-page-bits");
        configuration
            .raw
            .extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 10]);
        configuration
            .raw
            .extend_from_slice(b"\x05\x1aconfiguration/capabilities");
        configuration
            .raw
            .extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        configuration.raw.extend_from_slice(b"\x0fx-ignore-shared");
    }
    let addr = kilobyte_pages.then_some(0x4000_0000);
    let blocks = [
        BlockInfo {
            name: "ram".into(),
            len: 4 * page as u64,
            mr_addr: addr,
        },
        BlockInfo {
            name: "/rom@etc/acpi/tables".into(),
            len: page as u64,
            mr_addr: addr,
        },
    ];
    let id = 2;
    let section = |kind| Section {
        kind,
        id,
        identity: None,
    };
    let footer = kilobyte_pages;
    let mut w = StreamWriter::new(Vec::new());
    let r = (|| -> std::io::Result<Vec<u8>> {
        w.header()?;
        w.configuration(&configuration)?;
        w.command(7, b"ping")?;
        w.begin_section(&Section {
            kind: SectionKind::Start,
            id,
            identity: Some(SectionIdentity {
                name: "ram".into(),
                instance: 0,
                version: 4,
            }),
        })?;
        w.mem_size(page, &blocks)?;
        w.end_section(footer)?;
        w.begin_section(&section(SectionKind::Part))?;
        w.page(0, 0, &vec![0x11; page])?;
        w.zero_page(0, page as u64, 0)?;
        w.zero_page(1, 0, 0x5a)?;
        w.page(0, 2 * page as u64, &vec![0x22; page])?;
        w.end_section(footer)?;
        w.begin_section(&section(SectionKind::Part))?;
        w.xbzrle_page(0, 0, b"\x00\x02ab\x0a\x01c")?;
        w.xbzrle_page(0, 2 * page as u64, b"\x81\x01\x01z")?;
        w.end_section(footer)?;
        w.begin_section(&section(SectionKind::End))?;
        w.xbzrle_page(0, 0, b"\x03\x01d")?;
        w.zero_page(0, 3 * page as u64, 0)?;
        w.end_section(footer)?;
        // Device state: one section of 4 bytes, then EOF and its description.
        let mut tail = vec![
            0x04, 0, 0, 0, 9, 5, b't', b'i', b'm', b'e', b'r', 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        tail.extend_from_slice(&[1, 2, 3, 4]);
        if footer {
            tail.extend_from_slice(&[0x7e, 0, 0, 0, 9]);
        }
        let json = br#"{"page_size":4096,"devices":[{"name":"timer","instance_id":0,"fields":[{"name":"t","size":4}]}]}"#;
        tail.push(0x00);
        tail.push(0x06);
        tail.extend_from_slice(&(json.len() as u32).to_be_bytes());
        tail.extend_from_slice(json);
        w.raw(&tail)?;
        w.finish()
    })();
    r.expect("writing to memory")
}
