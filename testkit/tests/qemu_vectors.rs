//! The oracles agree with QEMU's recorded behaviour (the golden vectors of
//! `codec/tests/data`), so a disagreement between an oracle and the codec is the codec's.

use std::path::Path;
use xbzrle_testkit::{canonical_delta, decode};

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../codec/tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Little-endian fields of a golden file.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
}

#[test]
fn naive_decoder_matches_qemu_on_every_decode_vector() {
    let file = golden("qemu-decode.bin");
    let mut f = Fields(&file);
    let mut records = 0;
    while !f.0.is_empty() {
        let src_len = f.u32() as usize;
        let src = f.take(src_len);
        let dlen = f.u32() as usize;
        let mut page = f.take(dlen).to_vec();
        let ret = f.u32() as i32;
        let after = f.take(dlen);
        let got = decode::decode(src, &mut page);
        let want = usize::try_from(ret).ok();
        assert_eq!(got.ok(), want, "record {records}: verdict ({got:?})");
        assert!(page == after, "record {records}: page");
        records += 1;
    }
    assert_eq!(records, 280);
}

#[test]
fn naive_encoder_matches_qemu_on_every_encode_vector() {
    let file = golden("qemu-encode.bin");
    let mut f = Fields(&file);
    let mut checked = 0;
    let mut records = 0;
    while !f.0.is_empty() {
        let page_len = f.u32() as usize;
        let _capacity = f.u32();
        let old = f.take(page_len);
        let new = f.take(page_len);
        let ret = f.u32() as i32;
        let delta = canonical_delta(old, new);
        if ret == 0 {
            assert!(delta.is_empty(), "record {records}: pages are equal");
        }
        if let Ok(len @ 1..) = usize::try_from(ret) {
            assert!(delta == f.take(len), "record {records}: delta");
            checked += 1;
        }
        records += 1;
    }
    assert_eq!(records, 285);
    assert!(checked > 150, "only {checked} records with a delta");
}
