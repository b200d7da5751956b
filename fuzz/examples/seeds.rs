//! Writes the seed corpora of the codec targets from the golden vectors of
//! `codec/tests/data` (QEMU's own encoder and decoder outputs) plus a few large-page cases.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.
//! It rewrites `fuzz/corpus/<target>/seed-*` deterministically; other files are kept.

use std::fs;
use std::path::Path;

/// Largest page taken from the golden vectors, to keep the corpora small.
const MAX_SEED_PAGE: usize = 4096;
/// Every how many 4096-byte golden records one is kept.
const LARGE_PAGE_STRIDE: usize = 16;
/// Targets whose input is a [`xbzrle_fuzz::input::PagePair`].
const PAIR_TARGETS: &[&str] = &["kernels", "compact", "encode_update", "output_buffer"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../codec/tests/data");
    let corpus = root.join("corpus");

    let mut decode_seeds = Vec::new();
    let decode_file = fs::read(data.join("qemu-decode.bin")).expect("qemu-decode.bin");
    let mut r = Cursor(&decode_file);
    let mut index = 0;
    while !r.0.is_empty() {
        let src_len = r.u32();
        let src = r.take(src_len);
        let dlen = r.u32();
        let before = r.take(dlen);
        r.u32(); // QEMU's verdict: xbzrle-testkit's tests check it against the naive decoder
        r.take(dlen); // QEMU's page after decoding
        if keep(dlen, index) {
            let mut seed = Vec::new();
            let (raw_len, large) = if dlen < 16384 {
                (dlen, 0)
            } else {
                (dlen - 16384, 1)
            };
            seed.extend_from_slice(&u16::try_from(raw_len).expect("golden page").to_le_bytes());
            seed.push(((index % 64) as u8) << 2 | large);
            push_pattern(&mut seed, before);
            seed.extend_from_slice(src);
            decode_seeds.push((format!("seed-qemu-decode-{index:03}"), seed));
        }
        index += 1;
    }
    // Pages of more than 16383 bytes (flag bit 0: length + 16384), where lengths may take
    // more than 2 bytes (including non-minimal ones).
    for (name, delta) in [
        ("large-3byte-zrun", &[0x80, 0x80, 0x01, 0x01, 0xaa][..]),
        ("large-3byte-nzrun", &[0x00, 0x80, 0x80, 0x01][..]),
        (
            "large-4byte-nonminimal",
            &[0x81, 0x80, 0x80, 0x00, 0x01, 0xaa][..],
        ),
        (
            "large-5byte-overflow",
            &[0xff, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x00][..],
        ),
    ] {
        let mut seed = vec![0x01, 0x01, 0x01, 0, 0]; // 16384 + 257 bytes, zero page
        seed.extend_from_slice(delta);
        decode_seeds.push((format!("seed-{name}"), seed));
    }
    write_all(&corpus.join("decode"), &decode_seeds);

    let mut pair_seeds = Vec::new();
    let encode_file = fs::read(data.join("qemu-encode.bin")).expect("qemu-encode.bin");
    let mut r = Cursor(&encode_file);
    let mut index = 0;
    while !r.0.is_empty() {
        let page_len = r.u32();
        let dlen = r.u32();
        let old = r.take(page_len);
        let new = r.take(page_len);
        let ret = r.u32() as i32;
        if ret > 0 {
            r.take(ret as usize);
        }
        if keep(page_len, index) {
            let (mode, param) = match u16::try_from(dlen) {
                Ok(dlen) => (2, dlen),
                Err(_) => (3, 0),
            };
            pair_seeds.push((
                format!("seed-qemu-encode-{index:03}"),
                pair_seed(index, mode, param, old, new),
            ));
        }
        index += 1;
    }
    // A 20000-byte page (3-byte lengths): sparse changes, then every byte changed (an edit
    // script with a run but no run bytes changes every byte).
    let old: Vec<u8> = (0..20000u32).map(|i| (i % 251) as u8).collect();
    let mut sparse = old.clone();
    for i in (0..sparse.len()).step_by(1777) {
        sparse[i] ^= 0x5a;
    }
    pair_seeds.push((
        "seed-large-sparse".into(),
        pair_seed(1, 0, 0, &old, &sparse),
    ));
    let mut all = pair_seed(2, 1, 4, &old, &old);
    all.extend_from_slice(&[0x00, 0xa0, 0x9c, 0x01]); // zrun 0, nzrun 20000
    pair_seeds.push(("seed-large-all".into(), all));
    for target in PAIR_TARGETS {
        write_all(&corpus.join(target), &pair_seeds);
    }

    write_all(&corpus.join("policy"), &policy_seeds());
    write_all(&corpus.join("capi"), &capi_seeds());
}

/// Hand-made migrations for the `policy` target (layout: [`xbzrle_fuzz::policy`]).
fn policy_seeds() -> Vec<(String, Vec<u8>)> {
    // Operations: 0 write(page, u16 offset, len, bytes), 1 zero(page), 2 pass(every page),
    // 3 send(page), 4 resize(pages - 1).
    let write = |page: u8, at: u16, bytes: &[u8]| {
        let mut op = vec![0, page];
        op.extend_from_slice(&at.to_le_bytes());
        op.push(u8::try_from(bytes.len()).expect("short write"));
        op.extend_from_slice(bytes);
        op
    };
    let scenario = |page_size: u16, pages: u8, cache_pages: u8, ops: &[Vec<u8>]| {
        let mut seed = Vec::new();
        seed.extend_from_slice(&(page_size - 1).to_le_bytes());
        // pages - 1, ways - 1, shard log2, min_passes - 1, counters - 1, cache pages - 1,
        // extra cache bytes, then a 5-byte pattern.
        seed.extend_from_slice(&[pages - 1, 1, 1, 1, 63, cache_pages - 1, 3, 5, 0]);
        seed.extend_from_slice(b"guest");
        for op in ops {
            seed.extend_from_slice(op);
        }
        seed
    };
    let busy_passes = |page_size: u16, pages: u8| {
        let mut ops = vec![vec![2, 0]]; // bulk pass
        for round in 0..4u8 {
            ops.push(write(round % pages, u16::from(round) * 3, b"small change"));
            ops.push(write((round + 1) % pages, 0, &[round; 200])); // overflow on small pages
            ops.push(vec![1, (round + 2) % pages]);
            ops.push(vec![3, round % pages]); // mid-pass send
            ops.push(write(round % pages, page_size - 1, &[0xee]));
            ops.push(vec![2, round & 1]);
        }
        ops.push(vec![4, 0]); // shrink to one page
        ops.push(write(1 % pages, 7, b"after resize"));
        ops.push(vec![2, 0]);
        ops.push(write(2 % pages, 1, b"last stage"));
        ops
    };
    vec![
        (
            "seed-policy-64x8".into(),
            scenario(64, 8, 4, &busy_passes(64, 8)),
        ),
        (
            "seed-policy-512x16".into(),
            scenario(512, 16, 8, &busy_passes(512, 16)),
        ),
        (
            "seed-policy-1x64".into(),
            scenario(1, 64, 16, &busy_passes(1, 64)),
        ),
        ("seed-policy-bulk-only".into(), scenario(100, 3, 1, &[])),
    ]
}

/// Seeds of the `capi` target (layout in `xbzrle_fuzz::capi`): each operation once with
/// valid arguments and once with NULLs or negative lengths, and a sender session.
fn capi_seeds() -> Vec<(String, Vec<u8>)> {
    // A page pair: length 4096 (size class 1), pattern seed 3, a 6-byte edit script.
    let pair = [0x00, 0x50, 3, 6, 10, 2, 0xaa, 0xbb, 100, 1];
    let mut encode = vec![0, 0x20];
    encode.extend_from_slice(&pair);
    encode.extend_from_slice(&4096u16.to_le_bytes());
    let mut encode_null = encode.clone();
    encode_null[1] = 0x1f;
    let decode = vec![1, 0x40, 0x00, 0x01, 6, 3, 2, 0x11, 0x22, 0x05, 0x01];
    let mut decode_bad = decode.clone();
    decode_bad[1] = 0x0f;
    let mut size_t = Vec::new();
    for mode in 0..3u8 {
        size_t.extend_from_slice(&[2, mode << 3]);
        size_t.extend_from_slice(&pair);
        size_t.extend_from_slice(&64u16.to_le_bytes());
    }
    let validate = vec![3, 0x20, 0x00, 0x40, 5, 0x00, 0x02, 0x01, 0x02, 0x80];
    let session = vec![4, 0x02, 3, 3, 8, 4, 0xff, 0xff, 1, 40, 2, 1, 2, 9, 0x42];
    let configured = vec![
        4, 0x01, 0x00, 0x01, 0x00, 0x40, 0x00, 0x00, 1, 4, 2, 2, 2, 0x10, 0x00, 1, 4, 3, 2, 5, 1,
        0x07,
    ];
    [
        ("encode-buffer", encode),
        ("encode-buffer-null", encode_null),
        ("decode-buffer", decode),
        ("decode-buffer-bad-args", decode_bad),
        ("encode-size-t", size_t),
        ("validate-decode", validate),
        ("sender-session", session),
        ("sender-configured", configured),
    ]
    .into_iter()
    .map(|(name, bytes)| (format!("seed-capi-{name}"), bytes))
    .collect()
}

/// Whether a golden record with a page of `len` bytes becomes a seed.
fn keep(len: usize, index: usize) -> bool {
    len < MAX_SEED_PAGE || (len == MAX_SEED_PAGE && index.is_multiple_of(LARGE_PAGE_STRIDE))
}

/// A [`xbzrle_fuzz::input::PagePair`] input for `old` → `new` with offsets varied by `index`.
fn pair_seed(index: usize, mode: u8, param: u16, old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut seed = vec![
        (index % 64) as u8,
        (index * 7 % 64) as u8,
        (index * 13 % 64) as u8,
        mode,
    ];
    seed.extend_from_slice(&param.to_le_bytes());
    let raw_len = xbzrle_fuzz::input::page_len_to(old.len()).expect("seed page length");
    seed.extend_from_slice(&raw_len.to_le_bytes());
    push_pattern(&mut seed, old);
    // The canonical delta is an edit script that rebuilds `new` exactly.
    seed.extend_from_slice(&xbzrle_testkit::canonical_delta(old, new));
    seed
}

/// Appends the shortest pattern (of at most 256 bytes, else the whole page) whose
/// repetition is `page`, with its length.
fn push_pattern(seed: &mut Vec<u8>, page: &[u8]) {
    let period = (1..=256.min(page.len()))
        .find(|&p| page.iter().zip(&page[p..]).all(|(a, b)| a == b))
        .unwrap_or(page.len());
    let pattern = &page[..period];
    seed.extend_from_slice(
        &u16::try_from(pattern.len())
            .expect("seed page")
            .to_le_bytes(),
    );
    seed.extend_from_slice(pattern);
}

/// Replaces the `seed-*` files of `dir` with `seeds`.
fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("corpus dir");
    for old in xbzrle_fuzz::input_files(dir).expect("corpus dir") {
        if file_name(&old).starts_with("seed-") {
            fs::remove_file(old).expect("remove old seed");
        }
    }
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("write seed");
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads the golden files' little-endian fields.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> usize {
        let bytes = self.take(4);
        u32::from_le_bytes(bytes.try_into().expect("golden file cut short")) as usize
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(n <= self.0.len(), "golden file cut short");
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
}
