//! C ABI for the xbzrle codec and policy layer: `libxbzrle.so`, `libxbzrle.a` and
//! `include/xbzrle.h` (generated from this crate by cbindgen; see `tests/header.rs`).
//!
//! Every entry point checks its pointers for NULL, reports errors as [`xbzrle_status`] codes
//! (QEMU's drop-in functions return -1) and, unless it cannot panic (the version, status-text
//! and bound functions), runs inside a panic boundary.

mod codec;
mod ffi;
mod kinds;
mod page_cache;
mod receiver;
mod sender;
mod status;

pub use codec::*;
pub use kinds::{
    xbzrle_action, xbzrle_admission, xbzrle_cache_kind, xbzrle_raw_reason, xbzrle_replacement,
    xbzrle_stage,
};
pub use page_cache::*;
pub use receiver::*;
pub use sender::*;
pub use status::{xbzrle_status, xbzrle_strerror};
