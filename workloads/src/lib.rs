//! Workloads shared by the benches, the CLI and tests: synthetic page pairs and readers
//! for real guest-RAM snapshots.
pub mod patterns;
pub mod snapshots;
