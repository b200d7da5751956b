//! Target `capi`: the C entry points with arbitrary lengths, capacities and NULLs.
//!
//! The C API crate (`xbzrle_capi`) is linked in as a Rust dependency, so its `extern "C"`
//! functions run exactly as a C caller reaches them, with buffers that end at their
//! allocation's end (AddressSanitizer catches a byte past them). Checks, for a sequence of
//! operations read from the input: the drop-in `xbzrle_encode_buffer` /
//! `xbzrle_decode_buffer` return -1 for NULL or negative arguments and otherwise QEMU's
//! conventions with the Rust API's results; the `size_t` codec functions return the
//! status and lengths the Rust API implies and leave the page untouched on a rejected
//! delta; a sender made from an arbitrary configuration either is refused or migrates
//! pages (some zero pages through `xbzrle_sender_save_zero_page`, the bulk stage sometimes
//! ended mid-pass) that a receiver applies to identical memory; arbitrary records given to the
//! receiver are refused without touching memory.
//!
//! Input layout: a sequence of operations, each an opcode byte then its fields (see
//! [`check`]); missing bytes read as zero.

use core::ptr;

use crate::input::{OffsetBuf, Reader, apply_edits, page_len_from};
use xbzrle::Encoded;
use xbzrle_capi::*;

/// Most operations run per input.
const MAX_OPERATIONS: usize = 16;

/// Pointer to `buf`, or NULL when `null` is set.
fn ptr_or_null(buf: &mut OffsetBuf, null: bool) -> *mut u8 {
    if null {
        ptr::null_mut()
    } else {
        buf.as_mut_slice().as_mut_ptr()
    }
}

/// A C `int` length: `len`, or a negative value when `negative` is set.
fn c_len(len: usize, negative: bool) -> i32 {
    if negative {
        -1 - (len as i32 & 0xffff)
    } else {
        len as i32
    }
}

/// Runs the operations of one input; panics on a finding.
pub fn check(data: &[u8]) {
    let mut r = Reader::new(data);
    for _ in 0..MAX_OPERATIONS {
        if r.is_empty() {
            break;
        }
        match r.u8() % 5 {
            0 => encode_buffer(&mut r),
            1 => decode_buffer(&mut r),
            2 => encode_size_t(&mut r),
            3 => decode_size_t(&mut r),
            _ => sender_and_receiver(&mut r),
        }
    }
}

/// An old page and a new page made from the input: a page length, a pattern, an edit script.
fn page_pair(r: &mut Reader<'_>) -> (Vec<u8>, Vec<u8>) {
    let len = page_len_from(r.u16()) & 0x1fff;
    let seed = r.u8();
    let old: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let mut new = old.clone();
    let script_len = usize::from(r.u8());
    apply_edits(r.take(script_len), &mut new);
    (old, new)
}

/// `xbzrle_encode_buffer` against [`xbzrle::encode`].
fn encode_buffer(r: &mut Reader<'_>) {
    let flags = r.u8();
    let (old, new) = page_pair(r);
    let dlen = usize::from(r.u16()) % (2 * old.len() + 8);
    let mut old_buf = OffsetBuf::with_content(usize::from(flags >> 5), &old);
    let mut new_buf = OffsetBuf::with_content(0, &new);
    let mut dst = OffsetBuf::filled(0, dlen, 0xee);
    let (null, negative) = (flags & 7, flags & 0x18);
    // SAFETY: each pointer is NULL or a live buffer of the length passed (or longer: a
    // negative length is passed only with a real buffer, and must be refused).
    let ret = unsafe {
        xbzrle_encode_buffer(
            ptr_or_null(&mut old_buf, null & 1 != 0),
            ptr_or_null(&mut new_buf, null & 2 != 0),
            c_len(old.len(), negative & 8 != 0),
            ptr_or_null(&mut dst, null & 4 != 0),
            c_len(dlen, negative & 0x10 != 0),
        )
    };
    if null != 0 || negative != 0 {
        assert_eq!(ret, -1, "NULL or negative argument accepted");
        return;
    }
    let mut out = vec![0; dlen];
    let expected = match xbzrle::encode(&old, &new, &mut out) {
        Encoded::Unchanged => 0,
        Encoded::Delta(n) => n as i32,
        Encoded::Overflow => -1,
    };
    assert_eq!(ret, expected, "xbzrle_encode_buffer result");
    if let Ok(n @ 1..) = usize::try_from(ret) {
        assert!(dst.as_slice()[..n] == out[..n], "delta bytes differ");
    }
    assert!(
        old_buf.as_slice() == old && new_buf.as_slice() == new,
        "input modified"
    );
}

/// `xbzrle_decode_buffer` against [`xbzrle::decode_partial`] (both QEMU's single pass).
fn decode_buffer(r: &mut Reader<'_>) {
    let flags = r.u8();
    let dlen = usize::from(r.u16() & 0x1fff);
    let src_len = usize::from(r.u8());
    let src = r.take(src_len).to_vec();
    let before: Vec<u8> = (0..dlen).map(|i| i as u8).collect();
    let mut src_buf = OffsetBuf::with_content(0, &src);
    let mut page = OffsetBuf::with_content(usize::from(flags >> 5), &before);
    let (null, negative) = (flags & 3, flags & 0x0c);
    // SAFETY: each pointer is NULL or a live buffer of the length passed.
    let ret = unsafe {
        xbzrle_decode_buffer(
            ptr_or_null(&mut src_buf, null & 1 != 0),
            c_len(src.len(), negative & 4 != 0),
            ptr_or_null(&mut page, null & 2 != 0),
            c_len(dlen, negative & 8 != 0),
        )
    };
    if null != 0 || negative != 0 {
        assert_eq!(ret, -1, "NULL or negative argument accepted");
        assert!(page.as_slice() == before, "page written on a refused call");
        return;
    }
    let mut expected_page = before.clone();
    let expected = xbzrle::decode_partial(&src, &mut expected_page).map_or(-1, |end| end as i32);
    assert_eq!(ret, expected, "xbzrle_decode_buffer result");
    assert!(
        page.as_slice() == expected_page,
        "page differs from xbzrle::decode_partial's"
    );
}

/// The signature of `xbzrle_encode` and `xbzrle_encode_compact`.
type EncodeFn =
    unsafe extern "C" fn(*const u8, *const u8, usize, *mut u8, usize, *mut usize) -> xbzrle_status;

/// `xbzrle_encode_update` with the signature of [`EncodeFn`].
///
/// # Safety
/// As `xbzrle_encode_update`; `cached` must be NULL or writable.
unsafe extern "C" fn encode_update(
    cached: *const u8,
    new: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> xbzrle_status {
    // SAFETY: forwarded to the caller, who passes a writable `cached` or NULL.
    unsafe { xbzrle_encode_update(cached.cast_mut(), new, len, out, cap, out_len) }
}

/// `xbzrle_encode`, `xbzrle_encode_compact` and `xbzrle_encode_update` against the Rust API.
fn encode_size_t(r: &mut Reader<'_>) {
    let flags = r.u8();
    let (old, new) = page_pair(r);
    let cap = usize::from(r.u16()) % (2 * old.len() + 8);
    let mut old_buf = OffsetBuf::with_content(0, &old);
    let new_buf = OffsetBuf::with_content(0, &new);
    let mut out = OffsetBuf::filled(usize::from(flags >> 5), cap, 0x5a);
    let mut out_len = usize::MAX;
    let (null_old, null_out, null_len) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let old_ptr = ptr_or_null(&mut old_buf, null_old);
    let out_ptr = ptr_or_null(&mut out, null_out);
    let len_ptr: *mut usize = if null_len {
        ptr::null_mut()
    } else {
        &mut out_len
    };
    let mode = (flags >> 3) % 3;
    let encode: EncodeFn = match mode {
        0 => xbzrle_encode,
        1 => xbzrle_encode_compact,
        _ => encode_update,
    };
    let new_ptr = new_buf.as_slice().as_ptr();
    // SAFETY: each pointer is NULL or a live buffer of the length passed.
    let status = unsafe { encode(old_ptr, new_ptr, old.len(), out_ptr, cap, len_ptr) };
    if null_old || null_out || null_len {
        assert_eq!(status, xbzrle_status::XBZRLE_ERR_NULL, "NULL accepted");
        assert!(
            old_buf.as_slice() == old,
            "cached page changed on a refused call"
        );
        return;
    }
    let mut expected_out = vec![0; cap];
    let expected = if mode == 1 {
        xbzrle::encode_compact(&old, &new, &mut expected_out)
    } else {
        xbzrle::encode(&old, &new, &mut expected_out)
    };
    match expected {
        Encoded::Unchanged => assert!(status == xbzrle_status::XBZRLE_OK && out_len == 0),
        Encoded::Delta(n) => {
            assert!(
                status == xbzrle_status::XBZRLE_OK && out_len == n,
                "{status:?}"
            );
            assert!(
                out.as_slice()[..n] == expected_out[..n],
                "delta bytes differ"
            );
        }
        Encoded::Overflow => assert_eq!(status, xbzrle_status::XBZRLE_ERR_OVERFLOW),
    }
    let cached_after = if mode == 2 { &new } else { &old };
    assert!(
        old_buf.as_slice() == cached_after.as_slice(),
        "cached page afterwards"
    );
}

/// `xbzrle_validate` and `xbzrle_decode` against the Rust API: a rejected delta leaves the
/// page untouched.
fn decode_size_t(r: &mut Reader<'_>) {
    let flags = r.u8();
    let page_len = page_len_from(r.u16());
    let delta_len = usize::from(r.u8());
    let delta = r.take(delta_len).to_vec();
    let before: Vec<u8> = (0..page_len).map(|i| (i >> 3) as u8).collect();
    let mut page = OffsetBuf::with_content(usize::from(flags >> 5), &before);
    let delta_ptr = if flags & 1 != 0 {
        ptr::null()
    } else {
        delta.as_ptr()
    };
    let page_ptr = ptr_or_null(&mut page, flags & 2 != 0);
    let mut end = usize::MAX;
    let end_ptr: *mut usize = if flags & 4 != 0 {
        ptr::null_mut()
    } else {
        &mut end
    };
    let expected = xbzrle::validate(&delta, page_len);
    // SAFETY: each pointer is NULL or a live buffer of the length passed.
    let validated = unsafe { xbzrle_validate(delta_ptr, delta.len(), page_len, end_ptr) };
    // SAFETY: as above.
    let decoded = unsafe { xbzrle_decode(delta_ptr, delta.len(), page_ptr, page_len, end_ptr) };
    if flags & 1 != 0 {
        assert_eq!(validated, xbzrle_status::XBZRLE_ERR_NULL);
    }
    if flags & 3 != 0 {
        assert_eq!(decoded, xbzrle_status::XBZRLE_ERR_NULL);
        assert!(page.as_slice() == before, "page written on a refused call");
        return;
    }
    let want = match expected {
        Ok(_) => xbzrle_status::XBZRLE_OK,
        Err(_) => xbzrle_status::XBZRLE_ERR_INVALID_DELTA,
    };
    assert_eq!(validated, want, "xbzrle_validate");
    assert_eq!(decoded, want, "xbzrle_decode");
    match expected {
        Ok(offset) => {
            if flags & 4 == 0 {
                assert_eq!(end, offset, "end offset");
            }
            let mut expected_page = before.clone();
            xbzrle::decode(&delta, &mut expected_page).expect("validated");
            assert!(page.as_slice() == expected_page, "decoded page differs");
        }
        Err(_) => assert!(
            page.as_slice() == before,
            "page changed by a rejected delta"
        ),
    }
}

/// A sender from an arbitrary configuration, a few passes of page writes, and a receiver
/// that applies every record (and arbitrary garbage) to its own memory.
fn sender_and_receiver(r: &mut Reader<'_>) {
    let mut config = xbzrle_sender_config {
        struct_size: 0,
        page_size: 0,
        cache_bytes: 0,
        cache_kind: 0,
        ways: 0,
        replacement: 0,
        admission: 0,
        admission_min_passes: 0,
        admission_counters: 0,
        shards: 0,
    };
    // SAFETY: `config` is a live, writable config.
    let status = unsafe { xbzrle_sender_config_default(&mut config) };
    assert_eq!(status, xbzrle_status::XBZRLE_OK);
    let flags = r.u8();
    if flags & 1 != 0 {
        config.page_size = usize::from(r.u16() & 0x1fff);
        config.cache_bytes = u64::from(r.u32()) % (1 << 24);
        config.cache_kind = u32::from(r.u8() % 3);
        config.ways = u32::from(r.u8());
        config.replacement = u32::from(r.u8() % 4);
        config.admission = u32::from(r.u8() % 4);
        config.admission_min_passes = u32::from(r.u8());
        config.admission_counters = usize::from(r.u16());
        config.shards = usize::from(r.u8() % 9);
        // Now and then a struct size the library must refuse (smaller than any version).
        if r.u8().is_multiple_of(16) {
            config.struct_size = usize::from(r.u8());
        }
    } else {
        config.page_size = 64;
        config.cache_bytes = 64 * 16;
    }
    let mut sender = ptr::null_mut();
    // SAFETY: `config` and `sender` are live.
    let status = unsafe { xbzrle_sender_new(&config, &mut sender) };
    if status != xbzrle_status::XBZRLE_OK {
        assert!(sender.is_null(), "handle returned with an error");
        assert_eq!(
            status,
            xbzrle_status::XBZRLE_ERR_INVALID_ARGUMENT,
            "{config:?}"
        );
        return;
    }
    let page_size = config.page_size;
    let pages = 1 + usize::from(r.u8() % 8);
    let mut receiver = ptr::null_mut();
    // SAFETY: `receiver` is a live, writable pointer.
    let status = unsafe { xbzrle_receiver_new(page_size, &mut receiver) };
    assert_eq!(status, xbzrle_status::XBZRLE_OK);
    // SAFETY: the handle is live.
    let max_record = unsafe { xbzrle_sender_max_record_len(sender) };
    let mut source = vec![0u8; pages * page_size];
    let mut dest = OffsetBuf::filled(0, pages * page_size, 0);
    let mut record = OffsetBuf::filled(0, max_record, 0);
    let passes = 1 + r.u8() % 4;
    for pass in 0..passes {
        let sync = if pass + 1 == passes && flags & 2 != 0 {
            xbzrle_sender_start_last_stage
        } else {
            xbzrle_sender_start_pass
        };
        // SAFETY: the handle is live.
        let status = unsafe { sync(sender) };
        assert_eq!(status, xbzrle_status::XBZRLE_OK);
        let script_len = usize::from(r.u8());
        apply_edits(r.take(script_len), &mut source);
        for page in 0..pages {
            let data = &source[page * page_size..][..page_size];
            let mut sent = xbzrle_sent {
                action: xbzrle_action::XBZRLE_ACTION_SKIPPED,
                raw_reason: xbzrle_raw_reason::XBZRLE_RAW_NONE,
                record_len: 0,
            };
            if flags & 4 != 0 && page == pages / 2 {
                // A caller that knows its first round over RAM ends here.
                // SAFETY: the handle is live.
                let status = unsafe { xbzrle_sender_end_bulk_stage(sender) };
                assert_eq!(status, xbzrle_status::XBZRLE_OK);
            }
            let out = record.as_mut_slice().as_mut_ptr();
            let status = if flags & 8 != 0 && data.iter().all(|&b| b == 0) {
                // A QEMU-like caller that found the zero page itself.
                // SAFETY: all buffers are live and of the lengths passed.
                unsafe {
                    xbzrle_sender_save_zero_page(sender, page as u64, out, max_record, &mut sent)
                }
            } else {
                // SAFETY: all buffers are live and of the lengths passed.
                unsafe {
                    xbzrle_sender_save_page(
                        sender,
                        page as u64,
                        data.as_ptr(),
                        page_size,
                        out,
                        max_record,
                        &mut sent,
                    )
                }
            };
            assert_eq!(status, xbzrle_status::XBZRLE_OK);
            if sent.record_len == 0 {
                continue;
            }
            let mut applied_page = u64::MAX;
            let mut consumed = 0;
            // SAFETY: all buffers are live and of the lengths passed.
            let status = unsafe {
                xbzrle_receiver_apply_record(
                    receiver,
                    record.as_slice().as_ptr(),
                    sent.record_len,
                    dest.as_mut_slice().as_mut_ptr(),
                    dest.as_slice().len(),
                    &mut applied_page,
                    &mut consumed,
                )
            };
            assert_eq!(status, xbzrle_status::XBZRLE_OK, "own record refused");
            assert!(applied_page == page as u64 && consumed == sent.record_len);
        }
    }
    assert!(
        dest.as_slice() == source,
        "receiver memory differs from the sender's"
    );

    // Garbage records are refused and leave the memory as it was.
    let garbage_len = usize::from(r.u8());
    let garbage = OffsetBuf::with_content(0, r.take(garbage_len));
    let before = dest.as_slice().to_vec();
    // SAFETY: all buffers are live and of the lengths passed; NULL outputs are allowed.
    let status = unsafe {
        xbzrle_receiver_apply_record(
            receiver,
            garbage.as_slice().as_ptr(),
            garbage.as_slice().len(),
            dest.as_mut_slice().as_mut_ptr(),
            dest.as_slice().len(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != xbzrle_status::XBZRLE_OK {
        assert!(
            dest.as_slice() == before,
            "a refused record changed memory ({status:?})"
        );
    }
    // SAFETY: the handle is live and freed once.
    unsafe { xbzrle_sender_free(sender) };
    // SAFETY: as above.
    unsafe { xbzrle_receiver_free(receiver) };
    // SAFETY: NULL is a no-op.
    unsafe { xbzrle_sender_free(ptr::null_mut()) };
    // SAFETY: NULL is a no-op.
    unsafe { xbzrle_receiver_free(ptr::null_mut()) };
}
