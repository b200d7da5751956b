//! `xbzrle diff` / `xbzrle apply` end to end.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Bytes of a delta file around its records: the 12-byte header (magic, version, page
/// size), the end-of-records byte and the 24-byte summary.
const FRAMING: usize = 12 + 1 + 24;

/// Runs the binary with `args`, feeding `stdin` (an empty standard input if `None`).
fn run<S: AsRef<OsStr>>(args: &[S], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xbzrle"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the xbzrle binary runs");
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.unwrap_or_default().to_vec();
    // A thread, so that a command writing lots to stdout before reading stdin cannot block.
    let feeder = std::thread::spawn(move || {
        // The command may exit without reading everything (an error): a broken pipe is fine.
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn xbzrle<S: AsRef<OsStr>>(args: &[S]) -> Output {
    run(args, None)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed with exit status 1 and a one-line `xbzrle: error:` message
/// containing `expected`.
fn assert_fails_with(out: &Output, expected: &str) {
    let message = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.starts_with("xbzrle: error: "), "{message}");
    assert!(message.contains(expected), "no `{expected}` in {message}");
    assert!(!message.contains("panicked"), "{message}");
}

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A temporary folder with OLD and NEW written, and paths for DELTA and OUT.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(old: &[u8], new: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), old).unwrap();
        std::fs::write(dir.path().join("new"), new).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `diff old new -o delta EXTRA...`
    fn diff(&self, extra: &[&str]) -> Output {
        let (old, new, delta) = (self.path("old"), self.path("new"), self.path("delta"));
        let mut args: Vec<&OsStr> = vec!["diff".as_ref(), old.as_ref(), new.as_ref()];
        args.extend(["-o".as_ref(), delta.as_os_str()]);
        args.extend(extra.iter().map(OsStr::new));
        xbzrle(&args)
    }

    /// `apply old delta -o OUTPUT EXTRA...`
    fn apply_to(&self, output: &Path, extra: &[&str]) -> Output {
        let (old, delta) = (self.path("old"), self.path("delta"));
        let mut args: Vec<&OsStr> = vec!["apply".as_ref(), old.as_ref(), delta.as_ref()];
        args.extend(["-o".as_ref(), output.as_os_str()]);
        args.extend(extra.iter().map(OsStr::new));
        xbzrle(&args)
    }

    /// `apply old delta -o out`
    fn apply(&self) -> Output {
        self.apply_to(&self.path("out"), &[])
    }

    /// Files in the folder besides old, new and delta (a leftover temporary file or OUT).
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !["old", "new", "delta"].contains(&n.as_str()))
            .collect()
    }
}

/// NEW = OLD with some pages changed a little, some a lot, some zeroed.
fn related_pair(rng: &mut Rng, len: usize, page: usize) -> (Vec<u8>, Vec<u8>) {
    let old = rng.bytes(len);
    let mut new = old.clone();
    for start in (0..len).step_by(page) {
        let end = len.min(start + page);
        match rng.next() % 5 {
            0 => {}
            1 => new[start..end].fill(0),
            2 => new[start..end].copy_from_slice(&rng.bytes(end - start)),
            _ => {
                for _ in 0..1 + rng.next() % 20 {
                    let at = start + (rng.next() as usize) % (end - start);
                    new[at] = new[at].wrapping_add(1 + (rng.next() % 255) as u8);
                }
            }
        }
    }
    (old, new)
}

/// A pair whose delta has several records, and that delta (from a file-to-file diff).
fn pair_and_delta(seed: u64) -> (Files, Vec<u8>) {
    let (old, new) = related_pair(&mut Rng(seed), 4096 * 20 + 100, 4096);
    let files = Files::new(&old, &new);
    let out = files.diff(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let delta = std::fs::read(files.path("delta")).unwrap();
    assert!(delta.len() > 200);
    (files, delta)
}

/// CRC-32 (IEEE), bit by bit: an oracle independent of the crc32fast crate the tool uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A record of the wire format, written from its description: flag, big-endian page
/// number, body.
fn record(flag: u8, page: u64, body: &[u8]) -> Vec<u8> {
    [&[flag][..], &page.to_be_bytes(), body].concat()
}

#[test]
fn round_trips_random_files() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (len, page) in [
        (0, 4096),
        (1, 4096),
        (4096 * 7, 4096),
        (4096 * 5 + 123, 4096),
        (70_000, 512),
        (200_000, 65536),
        (1000, 1),
    ] {
        let (old, new) = related_pair(&mut rng, len, page);
        let files = Files::new(&old, &new);
        let page_arg = page.to_string();
        let out = files.diff(&["--page-size", &page_arg]);
        assert!(out.status.success(), "{len}/{page}: {}", stderr(&out));
        let out = files.apply();
        assert!(out.status.success(), "{len}/{page}: {}", stderr(&out));
        assert_eq!(
            std::fs::read(files.path("out")).unwrap(),
            new,
            "{len}/{page}"
        );
        // Never more than the framing and a raw record (9-byte header, a whole page even
        // for a short last page) per page.
        let delta = std::fs::read(files.path("delta")).unwrap();
        assert!(
            delta.len() <= FRAMING + (9 + page) * len.div_ceil(page),
            "{len}/{page}: {}",
            delta.len()
        );
        // The summary at the end, checked against an independent CRC-32.
        let summary = &delta[delta.len() - 24..];
        assert_eq!(delta[delta.len() - 25], 0, "end of records");
        assert_eq!(summary[..8], (len as u64).to_be_bytes());
        assert_eq!(summary[8..12], crc32(&old).to_be_bytes());
        assert_eq!(summary[12..16], crc32(&new).to_be_bytes());
    }
}

#[test]
fn identical_files_give_an_empty_delta() {
    let data = Rng(5).bytes(10_000);
    let files = Files::new(&data, &data);
    assert!(files.diff(&[]).status.success());
    let delta = std::fs::read(files.path("delta")).unwrap();
    assert_eq!(delta.len(), FRAMING);
    assert_eq!(&delta[..12], b"XBZDELT2\0\0\x10\0");
    assert!(files.apply().status.success());
    assert_eq!(std::fs::read(files.path("out")).unwrap(), data);
}

#[test]
fn size_mismatch_fails() {
    let files = Files::new(&[1; 100], &[1; 101]);
    let out = files.diff(&[]);
    assert_fails_with(&out, "old has 100 bytes and");
    assert!(stderr(&out).contains("equal size"));
    assert!(!files.path("delta").exists());

    // Through standard input the sizes are found out while streaming: NEW shorter, longer.
    let files = Files::new(&[1; 5000], &[]);
    let (old, delta) = (files.path("old"), files.path("delta"));
    for (new_len, expected) in [
        (4999, "standard input ends after 4999 bytes but"),
        (5001, "ends after 5000 bytes but standard input is longer"),
    ] {
        let args: [&OsStr; 6] = [
            "diff".as_ref(),
            old.as_ref(),
            "-".as_ref(),
            "-o".as_ref(),
            delta.as_ref(),
            "-f".as_ref(),
        ];
        let out = run(&args, Some(&vec![1; new_len]));
        assert_fails_with(&out, expected);
        assert!(!files.path("delta").exists());
    }
}

#[test]
fn corrupted_or_truncated_deltas_fail_and_leave_no_output() {
    let (files, delta) = pair_and_delta(77);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("header only".into(), delta[..12].to_vec()),
        ("no summary".into(), delta[..delta.len() - 25].to_vec()),
        ("truncated".into(), delta[..delta.len() - 1].to_vec()),
        ("half".into(), delta[..delta.len() / 2].to_vec()),
        ("trailing byte".into(), [&delta[..], &[0]].concat()),
    ];
    // Flip one byte at a time in the header, at spread-out places in the records, and in
    // the end-of-records byte and the summary.
    let records = 12..delta.len() - 25;
    for at in (0..12)
        .chain(records.clone().step_by(records.len() / 40))
        .chain(delta.len() - 25..delta.len())
    {
        let mut bad = delta.clone();
        bad[at] ^= 0x41;
        cases.push((format!("byte {at} flipped"), bad));
    }
    for (name, bad) in cases {
        std::fs::write(files.path("delta"), &bad).unwrap();
        let out = files.apply();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.starts_with("xbzrle: error: "), "{name}: {message}");
        assert!(!message.contains("panicked"), "{name}: {message}");
        assert!(
            files.leftovers().is_empty(),
            "{name}: {:?}",
            files.leftovers()
        );
    }
}

#[test]
fn apply_to_the_wrong_old_file_fails() {
    let mut rng = Rng(3);
    let (old, new) = related_pair(&mut rng, 4096 * 4, 4096);
    let files = Files::new(&old, &new);
    assert!(files.diff(&[]).status.success());
    let mut other = old.clone();
    other[5] ^= 1;
    std::fs::write(files.path("old"), &other).unwrap();
    assert_fails_with(&files.apply(), "not the one the delta was made from");
    // Shorter: found at the first record past its end or at the end.
    std::fs::write(files.path("old"), &old[..4096]).unwrap();
    assert_fails_with(&files.apply(), "4096 bytes");
    // Longer.
    std::fs::write(files.path("old"), [&old[..], &[0]].concat()).unwrap();
    assert_fails_with(&files.apply(), "the old file has 16385 bytes");
    assert!(files.leftovers().is_empty());
}

#[test]
fn missing_input_fails_and_bad_page_size_is_a_usage_error() {
    let files = Files::new(&[0; 10], &[1; 10]);
    for size in ["0", "32M", "x"] {
        let out = files.diff(&["--page-size", size]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--page-size"), "{}", stderr(&out));
    }
    let out = files.diff(&["--page-size", "0"]);
    assert!(
        stderr(&out).contains("page size 0 is not in"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(files.path("old")).unwrap();
    assert_fails_with(&files.diff(&[]), "opening");
    assert!(files.leftovers().is_empty());
}

#[test]
fn unsupported_versions_are_named() {
    let (files, delta) = pair_and_delta(8);
    for (version, expected) in [
        (b'3', "unsupported delta file version 3 "),
        (b'9', "unsupported delta file version 9 "),
        (0xff, "unsupported delta file version byte 0xff"),
    ] {
        let mut bad = delta.clone();
        bad[7] = version;
        std::fs::write(files.path("delta"), &bad).unwrap();
        assert_fails_with(&files.apply(), expected);
    }
    let mut bad = delta;
    bad[0] = b'Y';
    std::fs::write(files.path("delta"), &bad).unwrap();
    assert_fails_with(&files.apply(), "not an xbzrle delta file");
    assert!(files.leftovers().is_empty());
}

#[test]
fn version_1_files_are_still_read() {
    // 10 bytes in 4-byte pages: page 1 is raw, page 2 (2 bytes long) is XBZRLE.
    let old = b"abcdefghij".to_vec();
    let new = b"abcdWXYZiQ".to_vec();
    let mut delta = b"XBZDELT1".to_vec();
    delta.extend_from_slice(&4u32.to_be_bytes());
    delta.extend_from_slice(&10u64.to_be_bytes());
    delta.extend_from_slice(&crc32(&old).to_be_bytes());
    delta.extend_from_slice(&crc32(&new).to_be_bytes());
    delta.extend_from_slice(&2u64.to_be_bytes());
    delta.extend(record(0x08, 1, b"WXYZ"));
    // XBZRLE payload: 0x01, length 3, then skip 1 byte and write 1 byte (`Q`).
    delta.extend(record(0x40, 2, b"\x01\x00\x03\x01\x01Q"));
    let files = Files::new(&old, &new);
    std::fs::write(files.path("delta"), &delta).unwrap();
    let out = files.apply();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(files.path("out")).unwrap(), new);

    // The same in version 2.
    let mut v2 = b"XBZDELT2\0\0\0\x04".to_vec();
    v2.extend_from_slice(&delta[36..]);
    v2.push(0);
    v2.extend_from_slice(&delta[12..36]);
    std::fs::write(files.path("delta"), &v2).unwrap();
    let out = files.apply_to(&files.path("out"), &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(files.path("out")).unwrap(), new);
}

#[test]
fn a_record_cannot_write_past_the_end_of_the_file() {
    // 10 bytes in 8-byte pages: page 1 has 2 real bytes and 6 of padding.
    let old = vec![1u8; 10];
    let mut new = old.clone();
    new[8..].copy_from_slice(&[5, 6]);
    let mut delta = b"XBZDELT2\0\0\0\x08".to_vec();
    delta.extend(record(0x08, 1, &[5, 6, 9, 9, 9, 9, 9, 9]));
    delta.push(0);
    delta.extend_from_slice(&10u64.to_be_bytes());
    delta.extend_from_slice(&crc32(&old).to_be_bytes());
    delta.extend_from_slice(&crc32(&new).to_be_bytes());
    delta.extend_from_slice(&1u64.to_be_bytes());
    let files = Files::new(&old, &new);
    std::fs::write(files.path("delta"), &delta).unwrap();
    assert_fails_with(&files.apply(), "past the end of the file");
    // With zero padding the same record is fine.
    let at = 12 + 9 + 2;
    delta[at..at + 6].fill(0);
    std::fs::write(files.path("delta"), &delta).unwrap();
    let out = files.apply();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(files.path("out")).unwrap(), new);
}

#[test]
fn an_existing_output_needs_force_and_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let (files, delta) = pair_and_delta(11);
    let out_path = files.path("out");
    std::fs::write(&out_path, b"precious").unwrap();
    std::fs::set_permissions(&out_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_fails_with(&files.apply(), "already exists: add --force");
    assert_eq!(std::fs::read(&out_path).unwrap(), b"precious");
    let out = files.diff(&[]);
    assert_fails_with(&out, "already exists: add --force");
    assert_eq!(std::fs::read(files.path("delta")).unwrap(), delta);

    let out = files.apply_to(&out_path, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&out_path).unwrap(),
        std::fs::read(files.path("new")).unwrap()
    );
    let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert!(files.diff(&["-f"]).status.success());
    assert_eq!(files.leftovers(), ["out"]);
}

#[test]
fn dash_means_standard_input_and_output() {
    let (files, delta) = pair_and_delta(21);
    let (old, new) = (
        std::fs::read(files.path("old")).unwrap(),
        std::fs::read(files.path("new")).unwrap(),
    );
    let old_path = files.path("old");
    let delta_path = files.path("delta");

    // diff OLD - -o -: NEW from stdin, the delta to stdout, the same bytes as file to file.
    let out = run(
        &[
            "diff".as_ref(),
            old_path.as_os_str(),
            "-".as_ref(),
            "-o".as_ref(),
            "-".as_ref(),
        ],
        Some(&new),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, delta);
    // diff - NEW -o -: OLD from stdin.
    let new_path = files.path("new");
    let args: [&OsStr; 5] = [
        "diff".as_ref(),
        "-".as_ref(),
        new_path.as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ];
    let out = run(&args, Some(&old));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, delta);

    // apply OLD - -o -: the delta from stdin, NEW to stdout.
    let args: [&OsStr; 5] = [
        "apply".as_ref(),
        old_path.as_ref(),
        "-".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ];
    let out = run(&args, Some(&delta));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, new);
    // apply - DELTA -o OUT: OLD from stdin.
    let out_path = files.path("out");
    let args: [&OsStr; 5] = [
        "apply".as_ref(),
        "-".as_ref(),
        delta_path.as_ref(),
        "-o".as_ref(),
        out_path.as_ref(),
    ];
    let out = run(&args, Some(&old));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&out_path).unwrap(), new);
    // No file named `-` anywhere.
    assert_eq!(files.leftovers(), ["out"]);

    // Both inputs from stdin: a usage error.
    for command in ["diff", "apply"] {
        let out = xbzrle(&[command, "-", "-", "-o", "-"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("only one input can be `-`"));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_device_node_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let (files, _) = pair_and_delta(31);
    let null = Path::new("/dev/null");
    assert!(
        std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // No --force needed: nothing is replaced.
    let out = files.apply_to(null, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (old, new) = (files.path("old"), files.path("new"));
    let out = xbzrle(&[
        "diff".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        null.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(files.leftovers().is_empty());
    // /dev/full fails to write: an error, not a replaced device.
    let full = Path::new("/dev/full");
    if full.exists() {
        let out = files.apply_to(full, &[]);
        assert_fails_with(&out, "writing /dev/full");
        assert!(
            std::fs::metadata(full)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

#[test]
fn a_fifo_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let (files, _) = pair_and_delta(41);
    let fifo = files.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let child = Command::new(env!("CARGO_BIN_EXE_xbzrle"))
        .arg("apply")
        .args([files.path("old"), files.path("delta")])
        .arg("-o")
        .arg(&fifo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the reading end lets the writer's open return.
    let mut received = Vec::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_end(&mut received)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(received, std::fs::read(files.path("new")).unwrap());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(files.leftovers(), ["fifo"]);
}

#[test]
fn a_symlink_is_written_through_not_replaced() {
    let (files, _) = pair_and_delta(51);
    let new = std::fs::read(files.path("new")).unwrap();
    let sub = files.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let (target, link) = (sub.join("target"), files.path("link"));
    std::fs::write(&target, b"old contents").unwrap();
    std::os::unix::fs::symlink("sub/target", &link).unwrap();

    // An existing file behind the link: --force needed, then the target is replaced.
    assert_fails_with(&files.apply_to(&link, &[]), "already exists");
    let out = files.apply_to(&link, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("sub/target"));
    assert_eq!(std::fs::read(&target).unwrap(), new);
    // The temporary file was made next to the target, and is gone.
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1);

    // A link to a device: written through.
    let to_null = files.path("to-null");
    std::os::unix::fs::symlink("/dev/null", &to_null).unwrap();
    let out = files.apply_to(&to_null, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_link(&to_null).unwrap(),
        Path::new("/dev/null")
    );

    // A dangling link: refused, nothing created (as GNU cp does).
    let dangling = files.path("dangling");
    std::os::unix::fs::symlink("sub/missing", &dangling).unwrap();
    assert_fails_with(
        &files.apply_to(&dangling, &[]),
        "symbolic link to a missing file",
    );
    assert!(!sub.join("missing").exists());
    assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());

    // A folder: refused.
    assert_fails_with(&files.apply_to(&sub, &["--force"]), "is a folder");
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1);
}

/// Writes a sparse file of `len` bytes, zero except `patches` (offset, bytes).
fn sparse_file(path: &Path, len: u64, patches: &[(u64, &[u8])]) {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    for &(at, bytes) in patches {
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(bytes).unwrap();
    }
}

#[test]
fn files_larger_than_the_memory_limit_stream() {
    // Address-space limit of the command; each file is 4 times as large, so a command that
    // held one file in memory would fail.
    const LIMIT: u64 = 64 << 20;
    const LEN: u64 = 4 * LIMIT + 12345;
    let dir = tempfile::tempdir().unwrap();
    let (old, new, delta) = (
        dir.path().join("old"),
        dir.path().join("new"),
        dir.path().join("d"),
    );
    let old_patches: [(u64, &[u8]); 2] = [(1000, b"old bytes"), (LEN - 5, b"tail!")];
    let new_patches: [(u64, &[u8]); 3] =
        [(1000, b"new bytes"), (100 << 20, b"xyz"), (LEN - 1, b"?")];
    sparse_file(&old, LEN, &old_patches);
    sparse_file(&new, LEN, &new_patches);
    let limited = |args: &[&OsStr]| {
        let script = format!("ulimit -v {} && exec \"$0\" \"$@\"", LIMIT >> 10);
        Command::new("sh")
            .args([
                "-c".as_ref(),
                script.as_str().as_ref(),
                OsStr::new(env!("CARGO_BIN_EXE_xbzrle")),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The limit is in force in the command `sh` executes.
    let limits = limited(&["--version".as_ref()]).wait_with_output().unwrap();
    assert!(limits.status.success(), "{}", stderr(&limits));
    let check = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -v {} && exec cat /proc/self/limits", LIMIT >> 10),
        ])
        .output()
        .unwrap();
    let limits = String::from_utf8_lossy(&check.stdout);
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max address space") && l.contains(&LIMIT.to_string())),
        "{limits}"
    );

    let out = limited(&[
        "diff".as_ref(),
        old.as_ref(),
        new.as_ref(),
        "-o".as_ref(),
        delta.as_ref(),
    ])
    .wait_with_output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 of 65540 pages changed"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::metadata(&delta).unwrap().len() < 20_000);

    // apply to standard output, compared with NEW as it arrives.
    let mut child = limited(&[
        "apply".as_ref(),
        old.as_ref(),
        delta.as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
    ]);
    let mut stdout = child.stdout.take().unwrap();
    let mut expected = std::io::BufReader::new(std::fs::File::open(&new).unwrap());
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        expected.read_exact(&mut want[..n]).unwrap();
        assert!(
            got[..n] == want[..n],
            "output differs from NEW near byte {total}"
        );
        total += n as u64;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(total, LEN);
}

#[test]
fn help_shows_examples() {
    for command in ["diff", "apply", "bench", "simulate"] {
        let out = xbzrle(&[command, "--help"]);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains(&format!("Examples:\n  xbzrle {command} ")),
            "{command}: {help}"
        );
    }
    let out = xbzrle(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:\n  xbzrle simulate "));
}
