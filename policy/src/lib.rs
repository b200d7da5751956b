#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
//!
//! # Crate layout
//!
//! * [`cache`]: the [`PageCache`] trait with a QEMU-compatible [`DirectMappedCache`] and a
//!   [`SetAssociativeCache`].
//! * [`admission`]: which pages may enter the cache ([`AdmitAlways`], [`AfterBulk`],
//!   [`Frequency`]).
//! * [`Sender`]: QEMU's per-page decision flow, thread-safe; [`Receiver`]: applies records,
//!   leaving the page untouched on bad input.
//! * [`wire`]: the record byte layout; [`stats`]: QEMU's `xbzrle-cache` statistics.

pub mod admission;
pub mod cache;
mod config;
mod error;
mod fallible;
mod receiver;
mod sender;
mod stage;
pub mod stats;
pub mod wire;

pub use admission::{Admission, AdmissionPolicy, AdmitAlways, AfterBulk, Frequency};
pub use cache::{
    CACHED_PAGE_LIFETIME, CacheKind, DirectMappedCache, PageCache, Replacement, SetAssociativeCache,
};
pub use config::SenderConfig;
pub use error::{ConfigError, MAX_SHARDS};
pub use receiver::{Applied, ReceiveError, Receiver};
pub use sender::{Action, RawReason, SaveError, Sender, Sent};
pub use stage::Stage;
pub use stats::{SenderStats, XbzrleCacheStats};
pub use wire::{Body, Record, RecordError};
