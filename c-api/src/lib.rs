//! C ABI for the xbzrle codec and policy layer: `libxbzrle.so`, `libxbzrle.a` and
//! `include/xbzrle.h` (generated from this crate by cbindgen; see `tests/header.rs`).
//!
//! Every entry point checks its pointers for NULL, runs inside a panic boundary and
//! reports errors as [`xbzrle_status`] codes (QEMU's drop-in functions return -1).

mod codec;
mod guard;
mod page_cache;
mod receiver;
mod sender;
mod status;

pub use codec::*;
pub use page_cache::*;
pub use receiver::*;
pub use sender::*;
pub use status::{xbzrle_status, xbzrle_strerror};
