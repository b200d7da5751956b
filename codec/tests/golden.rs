//! The golden vectors recorded from QEMU's own encoder and decoder (`tests/data/`, see its
//! README): every kernel gives QEMU's bytes, the decoder QEMU's verdict and page.

mod common;

use common::{Encoder, PagePair, check_encoder_at};
use xbzrle::{Encoded, Kernel};

/// One encode record of `qemu-encode.bin`.
struct EncodeRecord<'a> {
    index: usize,
    old: &'a [u8],
    new: &'a [u8],
    dlen: usize,
    /// QEMU's result: `None` for -1 (did not fit, by its conservative rule).
    ret: Option<usize>,
    /// The bytes QEMU wrote when `ret > 0`.
    delta: &'a [u8],
}

/// One decode record of `qemu-decode.bin`.
struct DecodeRecord<'a> {
    index: usize,
    src: &'a [u8],
    before: &'a [u8],
    /// QEMU's result: `None` for -1 (rejected).
    ret: Option<usize>,
    after: &'a [u8],
}

/// Little-endian fields of a golden file, read front to back.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "golden file cut short");
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }

    fn u32(&mut self) -> usize {
        u32::from_le_bytes(self.take(4).try_into().unwrap()) as usize
    }

    /// An i32 result: `None` for -1.
    fn ret(&mut self) -> Option<usize> {
        let ret = i32::from_le_bytes(self.take(4).try_into().unwrap());
        assert!(ret >= -1, "unexpected result {ret}");
        usize::try_from(ret).ok()
    }
}

fn data(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("{path}{name}: {e}"))
}

fn encode_records(file: &[u8]) -> Vec<EncodeRecord<'_>> {
    let mut fields = Fields(file);
    let mut records = Vec::new();
    while !fields.0.is_empty() {
        let page_len = fields.u32();
        let dlen = fields.u32();
        let old = fields.take(page_len);
        let new = fields.take(page_len);
        let ret = fields.ret();
        let delta = fields.take(ret.unwrap_or(0));
        records.push(EncodeRecord {
            index: records.len(),
            old,
            new,
            dlen,
            ret,
            delta,
        });
    }
    records
}

fn decode_records(file: &[u8]) -> Vec<DecodeRecord<'_>> {
    let mut fields = Fields(file);
    let mut records = Vec::new();
    while !fields.0.is_empty() {
        let src_len = fields.u32();
        let src = fields.take(src_len);
        let dlen = fields.u32();
        let before = fields.take(dlen);
        let ret = fields.ret();
        let after = fields.take(dlen);
        records.push(DecodeRecord {
            index: records.len(),
            src,
            before,
            ret,
            after,
        });
    }
    records
}

#[test]
fn every_kernel_matches_qemu_on_every_encode_vector() {
    let file = data("qemu-encode.bin");
    let records = encode_records(&file);
    assert_eq!(records.len(), 285, "README: 285 encode records");
    let mut overflow_that_fits = 0;
    for record in &records {
        let pair = PagePair {
            name: format!("qemu-encode record {}", record.index),
            old: record.old.to_vec(),
            new: record.new.to_vec(),
        };
        // The canonical delta: QEMU's bytes when it succeeded. When it gave up, its rule is
        // conservative (README), so the delta comes from the reference with ample room and
        // must really not fit for an exact encoder to give up too.
        let expected = match record.ret {
            Some(0) => Vec::new(),
            Some(_) => record.delta.to_vec(),
            None => {
                let mut out = vec![0; 2 * record.old.len() + 16];
                match Kernel::Reference.encode(record.old, record.new, &mut out) {
                    Ok(Encoded::Delta(n)) => {
                        overflow_that_fits += usize::from(n <= record.dlen);
                        out[..n].to_vec()
                    }
                    Ok(Encoded::Unchanged) => {
                        // QEMU gives up on identical pages below 2 bytes of room.
                        assert!(record.dlen < 2, "record {}: QEMU gave up", record.index);
                        overflow_that_fits += 1;
                        Vec::new()
                    }
                    other => panic!("record {}: {other:?} with ample room", record.index),
                }
            }
        };
        if record.ret == Some(0) {
            assert!(record.old == record.new, "record {}", record.index);
        }
        for encoder in Encoder::all_canonical() {
            check_encoder_at(encoder, &pair, &expected, record.dlen, record.index);
        }
    }
    // README: "28 of the 91 records with ret = -1 have a canonical delta that would fit"
    // (the empty delta of identical pages included).
    assert_eq!(overflow_that_fits, 28);
    assert_eq!(records.iter().filter(|r| r.ret.is_none()).count(), 91);
}

#[test]
fn compact_deltas_of_the_encode_vectors_decode_and_are_never_longer() {
    let file = data("qemu-encode.bin");
    for record in encode_records(&file) {
        let mut canonical = vec![0; 2 * record.old.len() + 16];
        let mut compact = canonical.clone();
        let canonical_len = match xbzrle::encode(record.old, record.new, &mut canonical) {
            Encoded::Delta(n) => n,
            _ => 0,
        };
        let compact_len = match xbzrle::encode_compact(record.old, record.new, &mut compact) {
            Encoded::Delta(n) => n,
            Encoded::Unchanged => 0,
            Encoded::Overflow => panic!("record {}: overflow with ample room", record.index),
        };
        assert!(compact_len <= canonical_len, "record {}", record.index);
        assert_eq!(compact_len == 0, record.old == record.new);
        let mut page = record.old.to_vec();
        assert_eq!(
            xbzrle::decode(&compact[..compact_len], &mut page).map(|_| ()),
            Ok(()),
            "record {}",
            record.index
        );
        assert!(page == record.new, "record {}: page differs", record.index);
    }
}

#[test]
fn the_decoder_gives_qemus_verdict_and_page_on_every_decode_vector() {
    let file = data("qemu-decode.bin");
    let records = decode_records(&file);
    assert_eq!(records.len(), 280, "README: 280 decode records");
    let rejected = records.iter().filter(|r| r.ret.is_none()).count();
    assert!(rejected > 100 && rejected < 250, "{rejected} rejections");
    for record in &records {
        let context = format!("decode record {}: {:02x?}", record.index, record.src);
        let mut page = record.before.to_vec();
        let got = xbzrle::decode_partial(record.src, &mut page);
        assert_eq!(got.ok(), record.ret, "{context}: verdict ({got:?})");
        assert!(page == record.after, "{context}: page differs");
        // `validate` gives the same verdict without touching anything.
        assert_eq!(
            xbzrle::validate(record.src, record.before.len()),
            got,
            "{context}: validate"
        );
    }
}
