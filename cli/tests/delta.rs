//! `xbzrle diff` / `xbzrle apply` end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xbzrle(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xbzrle"))
        .args(args)
        .output()
        .expect("the xbzrle binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

    fn diff(&self, extra: &[&str]) -> Output {
        let (old, new, delta) = (self.path("old"), self.path("new"), self.path("delta"));
        let mut args: Vec<&Path> = vec![Path::new("diff"), &old, &new, Path::new("-o"), &delta];
        args.extend(extra.iter().map(Path::new));
        xbzrle(&args)
    }

    fn apply(&self) -> Output {
        let (old, delta, out) = (self.path("old"), self.path("delta"), self.path("out"));
        xbzrle(&[Path::new("apply"), &old, &delta, Path::new("-o"), &out])
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
        // Never more than the header and a raw record (9-byte header, a whole page even
        // for a short last page) per page.
        let delta = std::fs::read(files.path("delta")).unwrap().len();
        assert!(
            delta <= 36 + (9 + page) * len.div_ceil(page),
            "{len}/{page}: {delta}"
        );
    }
}

#[test]
fn identical_files_give_an_empty_delta() {
    let data = Rng(5).bytes(10_000);
    let files = Files::new(&data, &data);
    assert!(files.diff(&[]).status.success());
    // Header only.
    assert_eq!(std::fs::read(files.path("delta")).unwrap().len(), 36);
    assert!(files.apply().status.success());
    assert_eq!(std::fs::read(files.path("out")).unwrap(), data);
}

#[test]
fn size_mismatch_fails() {
    let files = Files::new(&[1; 100], &[1; 101]);
    let out = files.diff(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("equal size"), "{}", stderr(&out));
    assert!(!files.path("delta").exists());
}

#[test]
fn corrupted_or_truncated_deltas_fail_and_leave_no_output() {
    let mut rng = Rng(77);
    let (old, new) = related_pair(&mut rng, 4096 * 20, 4096);
    let files = Files::new(&old, &new);
    assert!(files.diff(&[]).status.success());
    let delta = std::fs::read(files.path("delta")).unwrap();
    assert!(delta.len() > 200);

    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("header only".into(), delta[..36].to_vec()),
        ("truncated".into(), delta[..delta.len() - 1].to_vec()),
        ("half".into(), delta[..delta.len() / 2].to_vec()),
        ("trailing byte".into(), [&delta[..], &[0]].concat()),
    ];
    // Flip one byte at a time in the header and at spread-out places in the records.
    for at in (0..36).chain((36..delta.len()).step_by(delta.len() / 40)) {
        let mut bad = delta.clone();
        bad[at] ^= 0x41;
        cases.push((format!("byte {at} flipped"), bad));
    }
    for (name, bad) in cases {
        std::fs::write(files.path("delta"), &bad).unwrap();
        let out = files.apply();
        assert!(!out.status.success(), "{name}: accepted");
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
    let out = files.apply();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not the one the delta was made from"));
    std::fs::write(files.path("old"), &old[..4096]).unwrap();
    let out = files.apply();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has 4096 bytes"), "{}", stderr(&out));
    assert!(files.leftovers().is_empty());
}

#[test]
fn missing_input_and_bad_page_size_fail() {
    let files = Files::new(&[0; 10], &[1; 10]);
    let out = files.diff(&["--page-size", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("page size 0"), "{}", stderr(&out));
    std::fs::remove_file(files.path("old")).unwrap();
    let out = files.diff(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reading"), "{}", stderr(&out));
    assert!(files.leftovers().is_empty());
}
