//! The recorded QEMU 7.2 migration streams (`docs/data.md`; `$QEMU_STREAMS`, else their
//! default location next to the repository): record counts, rounds, every XBZRLE record
//! the canonical encoding of its pages, guest RAM with the recorded sha256, and a copy
//! through the writer identical to the stream byte for byte.
//!
//! About 300 MB of stream each, so these are ignored by default; run them in release mode:
//! `cargo test --release -p xbzrle-stream --test real_streams -- --ignored`.
//! A missing streams folder fails them (it is not a pass).

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use xbzrle::Encoded;
use xbzrle_stream::{Event, PageBody, StreamReader, decompressing};

fn streams_dir() -> PathBuf {
    let dir = std::env::var_os("QEMU_STREAMS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/qemu-streams"),
        PathBuf::from,
    );
    assert!(
        dir.join("README.md").is_file(),
        "no recorded streams in {} (set QEMU_STREAMS)",
        dir.display()
    );
    dir
}

/// What the recording (`docs/data.md`) and its `parse.json` list for a stream.
struct Expected {
    name: &'static str,
    bytes: u64,
    page: u64,
    zero: u64,
    xbzrle: u64,
    rounds: u64,
    pc_ram_sha256: &'static str,
}

const STREAMS: [Expected; 2] = [
    Expected {
        name: "dirty1024-xbzrle-32M",
        bytes: 292_527_188,
        page: 68_508,
        zero: 48_431,
        xbzrle: 414_112,
        rounds: 118,
        pc_ram_sha256: "85e23973e931f7f576564c696cb5580d8fa637a7e4b25b2edd27e95a8eb45fd9",
    },
    Expected {
        name: "kvstore-short-xbzrle-32M",
        bytes: 239_096_991,
        page: 58_121,
        zero: 29_070,
        xbzrle: 5_546,
        rounds: 3,
        pc_ram_sha256: "7b968dafb1895b58b5317a9a4d62e47703f5edf1d4e7f7bb632ff39eb0c85a79",
    },
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(expected: &Expected) {
    let path = streams_dir().join(format!("{}.stream.zst", expected.name));
    let mut reader = StreamReader::open(&path).unwrap();
    let (mut page, mut zero, mut xbzrle, mut identical) = (0, 0, 0, 0);
    let mut canonical = vec![0u8; 4096];
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::Page(record) = event {
            match record.body {
                PageBody::Zero { .. } => zero += 1,
                PageBody::Page => page += 1,
                PageBody::Xbzrle { delta, before } => {
                    xbzrle += 1;
                    if let Encoded::Delta(n) = xbzrle::encode(before, record.page, &mut canonical)
                        && canonical[..n] == *delta
                    {
                        identical += 1;
                    }
                }
            }
        }
    }
    assert_eq!(reader.offset(), expected.bytes);
    assert_eq!(
        (page, zero, xbzrle),
        (expected.page, expected.zero, expected.xbzrle)
    );
    assert_eq!(identical, expected.xbzrle, "re-encoded byte-identically");
    assert_eq!(reader.rounds(), expected.rounds);
    let ram = reader.ram().unwrap();
    assert_eq!(ram.blocks()[0].name, "pc.ram");
    let mut hasher = HashWriter(Sha256::new());
    ram.write_block(0, &mut hasher).unwrap();
    assert_eq!(hex(&hasher.0.finalize()), expected.pc_ram_sha256);

    // The stream read and written back record by record is the stream.
    let mut input = HashReader(
        decompressing(File::open(&path).unwrap()).unwrap(),
        Sha256::new(),
    );
    let copied = common::copy(&mut input, HashWriter(Sha256::new())).unwrap();
    io::copy(&mut input, &mut io::sink()).unwrap();
    assert_eq!(hex(&copied.0.finalize()), hex(&input.1.finalize()));
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct HashReader<R>(R, Sha256);

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(out)?;
        self.1.update(&out[..n]);
        Ok(n)
    }
}

#[test]
#[ignore = "reads 530 MB of real streams: run with --release -- --ignored"]
fn dirty1024() {
    check(&STREAMS[0]);
}

#[test]
#[ignore = "reads 530 MB of real streams: run with --release -- --ignored"]
fn kvstore_short() {
    check(&STREAMS[1]);
}
