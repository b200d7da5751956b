//! `xbzrle stream inspect|verify|rewrite` end to end, on a small migration written with the
//! stream crate's writer the way QEMU writes one.

mod common;

use common::{text, xbzrle};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use xbzrle::Encoded;
use xbzrle_stream::{
    BlockInfo, Configuration, Section, SectionIdentity, SectionKind, StreamWriter,
};

const PAGE: usize = 4096;
const PAGES: usize = 64;
const ID: u32 = 2;

fn ok(args: &[&str]) -> String {
    let out = xbzrle(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn section(kind: SectionKind) -> Section {
    Section {
        kind,
        id: ID,
        identity: (kind == SectionKind::Start).then(|| SectionIdentity {
            name: "ram".into(),
            instance: 0,
            version: 4,
        }),
    }
}

/// A migration of a 64-page guest: a bulk pass (every page: 16 zero pages, the others
/// raw), 4 passes of the 24 hot pages (pages 8..32, 3 bytes written per pass), sent as
/// QEMU would with a cache holding all of them (XBZRLE against the previous version), the
/// last as the END section. With `bad_delta`, one delta is valid but not canonical.
/// Returns the stream and the final guest RAM.
fn migration(bad_delta: bool) -> (Vec<u8>, Vec<u8>) {
    let mut guest: Vec<u8> = (0..PAGES * PAGE)
        .map(|i| (i / PAGE * 7 + i % 251) as u8)
        .collect();
    for page in 40..56 {
        guest[page * PAGE..(page + 1) * PAGE].fill(0);
    }
    let mut w = StreamWriter::new(Vec::new());
    w.header().unwrap();
    w.configuration(&Configuration::new("pc-i440fx-7.2"))
        .unwrap();
    w.begin_section(&section(SectionKind::Start)).unwrap();
    let blocks = [BlockInfo {
        name: "pc.ram".into(),
        len: (PAGES * PAGE) as u64,
        mr_addr: None,
    }];
    w.mem_size(PAGE, &blocks).unwrap();
    w.end_section(true).unwrap();
    w.begin_section(&section(SectionKind::Part)).unwrap();
    for page in 0..PAGES {
        let data = &guest[page * PAGE..(page + 1) * PAGE];
        let offset = (page * PAGE) as u64;
        if data.iter().all(|&b| b == 0) {
            w.zero_page(0, offset, 0).unwrap();
        } else {
            w.page(0, offset, data).unwrap();
        }
    }
    w.end_section(true).unwrap();
    for pass in 1..=4u8 {
        let kind = if pass == 4 {
            SectionKind::End
        } else {
            SectionKind::Part
        };
        w.begin_section(&section(kind)).unwrap();
        for page in 8..32 {
            let old = guest[page * PAGE..(page + 1) * PAGE].to_vec();
            for k in 0..3 {
                guest[page * PAGE + 100 * k + usize::from(pass)] ^= 0x5a;
            }
            let new = &guest[page * PAGE..(page + 1) * PAGE];
            let mut delta = vec![0; PAGE];
            let Encoded::Delta(n) = xbzrle::encode(&old, new, &mut delta) else {
                panic!("3 changed bytes encode");
            };
            let mut delta = delta[..n].to_vec();
            if bad_delta && pass == 2 && page == 10 {
                // The same change, with the first changed run's length 1 written in two
                // ULEB128 bytes (`81 00`): QEMU's decoder accepts it, its encoder never
                // writes it.
                assert_eq!(delta[..2], [pass, 1]);
                delta.splice(1..2, [0x81, 0x00]);
            }
            w.xbzrle_page(0, (page * PAGE) as u64, &delta).unwrap();
        }
        w.end_section(true).unwrap();
    }
    w.raw(&[0x00]).unwrap();
    (w.finish().unwrap(), guest)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn inspect_counts_passes_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, _) = migration(false);
    let file = dir.path().join("m.stream");
    std::fs::write(&file, &stream).unwrap();
    let out = ok(&["stream", "inspect", file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stream_bytes"], stream.len() as u64);
    assert_eq!(v["machine"], "pc-i440fx-7.2");
    assert_eq!(v["ram_sections"]["part"], 4);
    assert_eq!(v["passes"].as_array().unwrap().len(), 5);
    assert_eq!(v["total"]["zero"], 16);
    assert_eq!(v["total"]["page"], 48);
    assert_eq!(v["total"]["xbzrle"], 96);
    assert_eq!(v["last_stage"]["xbzrle"], 24);
    assert_eq!(v["after_first_pass"]["page"], 0);
    assert_eq!(v["dirty_syncs"], 5);
    assert_eq!(v["xbzrle_delta_lengths"]["records"], 96);
    assert_eq!(v["tail"]["bytes"], 1);
    let table = ok(&["stream", "inspect", file.to_str().unwrap()]);
    assert!(table.contains("after the first pass"), "{table}");
}

#[test]
fn verify_rebuilds_ram_and_checks_every_delta() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, guest) = migration(false);
    let file = dir.path().join("m.stream");
    std::fs::write(&file, &stream).unwrap();
    let ram = dir.path().join("ram");
    let report = dir.path().join("verify.json");
    let out = ok(&[
        "stream",
        "verify",
        file.to_str().unwrap(),
        "--dump-ram",
        ram.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("96 / 96"), "{out}");
    assert_eq!(std::fs::read(ram.join("pc.ram")).unwrap(), guest);
    let v = json(&report);
    assert_eq!(v["xbzrle_identical"], 96);
    assert_eq!(v["blocks"][0]["sha256"], sha256(&guest));

    // A valid but non-canonical delta: the RAM is still right, verify fails.
    let (stream, guest) = migration(true);
    std::fs::write(&file, &stream).unwrap();
    let out = xbzrle(&[
        "stream",
        "verify",
        file.to_str().unwrap(),
        "--dump-ram",
        ram.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("95 / 96"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("1 of 96"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(ram.join("pc.ram")).unwrap(), guest);
}

#[test]
fn rewrite_under_every_policy_gives_the_same_ram() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, guest) = migration(false);
    let input = dir.path().join("in.stream");
    std::fs::write(&input, &stream).unwrap();
    for (policy, out_name) in [
        ("qemu", "qemu.stream"),
        ("qemu-pre-5cc11c46", "pre.stream"),
        ("ours", "ours.stream.zst"),
    ] {
        let output = dir.path().join(out_name);
        let report = dir.path().join(format!("{policy}.json"));
        let text = ok(&[
            "stream",
            "rewrite",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            "--policy",
            policy,
            "--cache-size",
            "64K",
            "--json",
            report.to_str().unwrap(),
        ]);
        assert!(text.contains("after the first pass"), "{text}");
        let v = json(&report);
        assert_eq!(v["stream_bytes_in"], stream.len() as u64);
        assert_eq!(v["passes"].as_array().unwrap().len(), 5);
        let ram = dir.path().join(format!("ram-{policy}"));
        ok(&[
            "stream",
            "verify",
            output.to_str().unwrap(),
            "--dump-ram",
            ram.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read(ram.join("pc.ram")).unwrap(),
            guest,
            "{policy}"
        );
        // Raw and XBZRLE records of passes 1-4, worked out by hand from the cache rules:
        // 16 slots of 4 KiB; hot pages 8..32 (24 of them); an entry used in the current
        // or previous dirty sync is not replaced.
        let expected: &[(u64, u64)] = match policy {
            // Direct-mapped, nothing cached in the bulk pass: pass 1 misses all 24 and
            // inserts 8..24 (pages 24..32 share slots 8..16 with pages 8..16, just
            // inserted); from then on 24..32 stay out.
            "qemu" => &[(24, 0), (8, 16), (8, 16), (8, 16)],
            // Every bulk page is looked up and inserted while its slot is free: slots hold
            // pages 0..16 after the bulk pass, at the same sync. Pass 1 hits 8..16 and
            // cannot replace 0..8 (used one sync ago); pass 2 can, pass 3 hits 8..24.
            "qemu-pre-5cc11c46" => &[(16, 8), (16, 8), (8, 16), (8, 16)],
            // One 16-way set: pass 1 fills it with the first 16 misses; the other 8 find
            // every way used in the current sync.
            _ => &[(24, 0), (8, 16), (8, 16), (8, 16)],
        };
        let got: Vec<(u64, u64)> = v["passes"].as_array().unwrap()[1..]
            .iter()
            .map(|p| {
                (
                    p["out"]["page"].as_u64().unwrap(),
                    p["out"]["xbzrle"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{policy}");
    }
}

#[test]
fn malformed_streams_are_errors_with_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut stream, _) = migration(false);
    stream.truncate(stream.len() / 2);
    let file = dir.path().join("cut.stream");
    std::fs::write(&file, &stream).unwrap();
    for command in ["inspect", "verify"] {
        let out = xbzrle(&["stream", command, file.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("is not a valid migration stream: at byte"),
            "{err}"
        );
        assert!(err.contains("truncated"), "{err}");
    }
    let out = xbzrle(&["stream", "rewrite", file.to_str().unwrap(), "/dev/null"]);
    assert!(!out.status.success());
    let out = xbzrle(&["stream", "inspect", "/nonexistent"]);
    assert!(text(&out.stderr).contains("cannot open /nonexistent"));
    let out = xbzrle(&[
        "stream",
        "rewrite",
        "/nonexistent",
        "/dev/null",
        "--policy",
        "nope",
    ]);
    assert!(text(&out.stderr).contains("unknown policy"));
}
