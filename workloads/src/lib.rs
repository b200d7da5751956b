//! Workloads shared by the benches, the CLI and tests: synthetic page pairs and readers
//! for real guest-RAM snapshots.
pub mod patterns;
mod rng;
pub mod snapshots;

pub use rng::SplitMix64;
