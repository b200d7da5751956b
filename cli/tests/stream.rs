//! `xbzrle stream inspect|verify|rewrite` end to end, on a small migration written with the
//! stream crate's writer the way QEMU writes one.

mod common;

use common::{assert_stderr_contains, text, xbzrle};
use std::path::{Path, PathBuf};

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

/// The file `name` of `dir`, holding `bytes`.
fn file_with(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `stream verify FILE` with `--dump-ram DIR/ram` and `--json DIR/verify.json`; returns
/// its output, the dump folder and the report's path.
fn verify_with_dump(dir: &tempfile::TempDir, file: &Path) -> (String, PathBuf, PathBuf) {
    let (ram, report) = (dir.path().join("ram"), dir.path().join("verify.json"));
    let out = ok(&[
        "stream",
        "verify",
        file.to_str().unwrap(),
        "--dump-ram",
        ram.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ]);
    (out, ram, report)
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
    let file = file_with(&dir, "m.stream", &stream);
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
    let file = file_with(&dir, "m.stream", &stream);
    let (out, ram, report) = verify_with_dump(&dir, &file);
    assert!(out.contains("96 / 96"), "{out}");
    assert_eq!(std::fs::read(ram.join("pc.ram")).unwrap(), guest);
    let v = json(&report);
    assert_eq!(v["xbzrle_identical"], 96);
    assert_eq!(v["blocks"][0]["sha256"], sha256(&guest));

    // A valid but non-canonical delta: the RAM is still right, verify fails.
    let (stream, guest) = migration(true);
    std::fs::write(&file, &stream).unwrap();
    let dump = |force: &[&str]| {
        let mut args = vec![
            "stream",
            "verify",
            file.to_str().unwrap(),
            "--dump-ram",
            ram.to_str().unwrap(),
        ];
        args.extend_from_slice(force);
        xbzrle(&args)
    };
    // The dump of the first run is there: refused before reading, without --force.
    let out = dump(&[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--dump-ram") && err.contains("add --force"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let out = dump(&["--force"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("95 / 96"),
        "{}",
        text(&out.stdout)
    );
    assert_stderr_contains(&out, "1 of 96");
    assert_eq!(std::fs::read(ram.join("pc.ram")).unwrap(), guest);
}

#[test]
fn rewrite_under_every_policy_gives_the_same_ram() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, guest) = migration(false);
    let input = file_with(&dir, "in.stream", &stream);
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
    let file = file_with(&dir, "cut.stream", &stream);
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

/// A stream of RAM blocks `(name, length)` with `pages` written as `(block, offset, fill)`
/// PAGE records in one PART section, then END; `xbzrle` records `(block, offset, delta)`
/// in the END section. Returns the stream and the length of every XBZRLE record.
fn blocks_stream(
    blocks: &[(&str, u64)],
    pages: &[(usize, u64, u8)],
    xbzrle: &[(usize, u64, &[u8])],
) -> (Vec<u8>, Vec<u64>) {
    let mut w = StreamWriter::new(Vec::new());
    w.header().unwrap();
    w.begin_section(&section(SectionKind::Start)).unwrap();
    let infos: Vec<BlockInfo> = blocks
        .iter()
        .map(|&(name, len)| BlockInfo {
            name: name.into(),
            len,
            mr_addr: None,
        })
        .collect();
    w.mem_size(PAGE, &infos).unwrap();
    w.end_section(true).unwrap();
    w.begin_section(&section(SectionKind::Part)).unwrap();
    for &(block, offset, fill) in pages {
        w.page(block, offset, &[fill; PAGE]).unwrap();
    }
    w.end_section(true).unwrap();
    w.begin_section(&section(SectionKind::End)).unwrap();
    let lens = xbzrle
        .iter()
        .map(|&(block, offset, delta)| w.xbzrle_page(block, offset, delta).unwrap())
        .collect();
    w.end_section(true).unwrap();
    w.raw(&[0x00]).unwrap();
    (w.finish().unwrap(), lens)
}

#[test]
fn xbzrle_bytes_count_what_qemu_counts() {
    // Records alternating between two blocks name their block, which QEMU 7.2 counts in
    // `xbzrle-cache.bytes` (the whole record but its 8-byte header).
    let deltas: [(usize, u64, &[u8]); 4] = [
        (0, 0, b"\x00\x01\x09"),
        (1, 0, b"\x05\x02ab"),
        (1, 4096, b"\x00\x01\x07"),
        (0, 4096, b"\x10\x01\x01"),
    ];
    let (stream, lens) = blocks_stream(
        &[("pc.ram", 2 * PAGE as u64), ("pc.rom", 2 * PAGE as u64)],
        &[(0, 0, 1), (0, 4096, 1), (1, 0, 2), (1, 4096, 2)],
        &deltas,
    );
    let qemu: u64 = lens.iter().map(|len| len - 8).sum();
    let deltas_plus_3: u64 = deltas.iter().map(|d| d.2.len() as u64 + 3).sum();
    assert_ne!(qemu, deltas_plus_3, "the records name their blocks");
    let dir = tempfile::tempdir().unwrap();
    let file = file_with(&dir, "m.stream", &stream);
    let v: Value = serde_json::from_str(&ok(&[
        "stream",
        "inspect",
        file.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["total"]["xbzrle"], 4);
    assert_eq!(v["total"]["xbzrle_bytes"], qemu);
    assert_eq!(v["last_stage"]["xbzrle_bytes"], qemu);
}

#[test]
fn max_ram_refuses_larger_streams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.stream");
    let fails_with = |args: &[&str], expected: &str| {
        let out = xbzrle(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    // 2 GiB announced, nothing written: refused under --max-ram 1G.
    let (stream, _) = blocks_stream(&[("pc.ram", 2 << 30)], &[], &[]);
    std::fs::write(&file, &stream).unwrap();
    let path = file.to_str().unwrap();
    let out = dir.path().join("out.stream");
    let out = out.to_str().unwrap();
    for args in [
        &["stream", "inspect", path, "--max-ram", "1G"][..],
        &["stream", "verify", path, "--max-ram", "1G"],
        &["stream", "rewrite", path, out, "--max-ram", "1GiB"],
    ] {
        fails_with(
            args,
            "announces more RAM than --max-ram allows: at byte 25: MEM_SIZE announces \
             2147483648 bytes of RAM, above the limit of 1073741824",
        );
    }
    assert!(!Path::new(out).exists());
    ok(&["stream", "inspect", path, "--max-ram", "2G"]);
    // A 60-byte stream announcing 1 TiB: refused by default (64 GiB), before any hashing.
    let (stream, _) = blocks_stream(&[("pc.ram", 1 << 40)], &[], &[]);
    std::fs::write(&file, &stream).unwrap();
    fails_with(
        &[
            "stream",
            "verify",
            path,
            "--dump-ram",
            dir.path().to_str().unwrap(),
        ],
        "above the limit of 68719476736",
    );
    let out = xbzrle(&["stream", "inspect", path, "--max-ram", "1X"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert_stderr_contains(&out, "size suffix");
}

#[test]
fn verify_dumps_unwritten_ram_as_holes() {
    use std::os::unix::fs::MetadataExt;
    // 32 MiB announced, one page written in its last 2 MiB.
    let len = 32u64 << 20;
    let last = len - PAGE as u64;
    let (stream, _) = blocks_stream(&[("pc.ram", len)], &[(0, last, 0xab)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = file_with(&dir, "m.stream", &stream);
    let (_, ram, report) = verify_with_dump(&dir, &file);
    let mut guest = vec![0u8; len as usize];
    guest[last as usize..].fill(0xab);
    let dump = ram.join("pc.ram");
    assert_eq!(std::fs::read(&dump).unwrap(), guest);
    assert_eq!(json(&report)["blocks"][0]["sha256"], sha256(&guest));
    // The 15 chunks never written take no disk space: the file holds about one chunk.
    let on_disk = std::fs::metadata(&dump).unwrap().blocks() * 512;
    assert!(on_disk <= 4 << 20, "{on_disk} bytes on disk");
}

#[test]
fn dumps_of_blocks_never_share_a_file() {
    // `/rom@etc/x` and `_rom@etc_x` were both `_rom@etc_x`; `..` was the folder's parent.
    let names = ["/rom@etc/x", "_rom@etc_x", "..", "100%/x", "pc.ram"];
    let files = [
        "%2From@etc%2Fx",
        "_rom@etc_x",
        "%2E%2E",
        "100%25%2Fx",
        "pc.ram",
    ];
    let blocks: Vec<(&str, u64)> = names.iter().map(|&n| (n, PAGE as u64)).collect();
    let pages: Vec<(usize, u64, u8)> = (0..names.len()).map(|b| (b, 0, b as u8 + 1)).collect();
    let (stream, _) = blocks_stream(&blocks, &pages, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = file_with(&dir, "m.stream", &stream);
    let ram = dir.path().join("ram");
    let args = [
        "stream",
        "verify",
        file.to_str().unwrap(),
        "--dump-ram",
        ram.to_str().unwrap(),
    ];
    ok(&args);
    let mut written: Vec<String> = std::fs::read_dir(&ram)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut expected = files.map(String::from).to_vec();
    expected.sort();
    assert_eq!(written, expected);
    for (block, name) in files.iter().enumerate() {
        assert_eq!(
            std::fs::read(ram.join(name)).unwrap(),
            vec![block as u8 + 1; PAGE],
            "{name}"
        );
    }
    // Existing dumps are replaced only with --force.
    let out = xbzrle(&args);
    assert_stderr_contains(&out, "add --force");
    ok(&[&args[..], &["--force"]].concat());
}

#[test]
fn rewrite_replaces_only_with_force_and_only_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, guest) = migration(false);
    let input = file_with(&dir, "in.stream", &stream);
    let input = input.to_str().unwrap();
    let other = dir.path().join("other.stream");
    let other = other.to_str().unwrap();
    ok(&["stream", "rewrite", input, other, "--policy", "qemu"]);
    let rewritten = std::fs::read(other).unwrap();
    assert_ne!(rewritten, stream);

    // An existing OUT, IN itself included, needs --force; IN is left as it was.
    for out in [other, input] {
        let run = xbzrle(&["stream", "rewrite", input, out, "--policy", "qemu"]);
        assert_eq!(run.status.code(), Some(1));
        let err = text(&run.stderr);
        assert!(err.contains("already exists: add --force"), "{err}");
    }
    assert_eq!(std::fs::read(input).unwrap(), stream);
    // With --force, IN is replaced once it has been read to the end.
    ok(&[
        "stream", "rewrite", input, input, "--policy", "qemu", "--force",
    ]);
    assert_eq!(std::fs::read(input).unwrap(), rewritten);
    let ram = dir.path().join("ram");
    ok(&[
        "stream",
        "verify",
        input,
        "--dump-ram",
        ram.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(ram.join("pc.ram")).unwrap(), guest);

    // A stream that fails half-way leaves no OUT, and an existing one untouched.
    let cut = file_with(&dir, "cut.stream", &stream[..stream.len() / 2]);
    let cut = cut.to_str().unwrap();
    let new = dir.path().join("new.stream");
    for (out, force) in [(new.to_str().unwrap(), false), (other, true)] {
        let mut args = vec!["stream", "rewrite", cut, out];
        if force {
            args.push("--force");
        }
        let run = xbzrle(&args);
        assert_eq!(run.status.code(), Some(1));
    }
    assert!(!new.exists());
    assert_eq!(std::fs::read(other).unwrap(), rewritten);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".xbzrle-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // OUT cannot be standard output: the report goes there.
    let run = xbzrle(&["stream", "rewrite", input, "-"]);
    assert_stderr_contains(&run, "OUT cannot be `-`");
}

#[test]
fn json_files_are_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, _) = migration(false);
    let file = file_with(&dir, "m.stream", &stream);
    let file = file.to_str().unwrap();
    let report = file_with(&dir, "r.json", b"old");
    let report = report.to_str().unwrap();
    let out = dir.path().join("out.stream");
    let out = out.to_str().unwrap();
    for command in [
        &["stream", "inspect", file, "--json", report][..],
        &["stream", "verify", file, "--json", report],
        &["stream", "rewrite", file, out, "--json", report],
    ] {
        // Refused before reading the stream: nothing printed, nothing written.
        let run = xbzrle(command);
        assert_eq!(run.status.code(), Some(1), "{command:?}");
        let err = text(&run.stderr);
        assert!(
            err.contains(&format!("--json {report}: already exists: add --force")),
            "{err}"
        );
        assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
        assert!(!Path::new(out).exists());
        assert_eq!(std::fs::read_to_string(report).unwrap(), "old");
        ok(&[command, &["--force"]].concat());
        assert!(json(Path::new(report)).is_object(), "{command:?}");
        std::fs::write(report, "old").unwrap();
        let _ = std::fs::remove_file(out);
    }
}
