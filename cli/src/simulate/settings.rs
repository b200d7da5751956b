//! What a simulated migration is given: link, cache and convergence settings.

use serde::Serialize;

/// When the source may stop the guest and finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Rule {
    /// QEMU: when the raw dirty set (dirty pages x page size) fits in bandwidth x downtime
    /// limit; XBZRLE's savings never count.
    Qemu,
    /// When the bytes the last stage will send, as the sender estimates them from the
    /// last pass (encoding rate, misses, zero and skipped pages), fit in bandwidth x
    /// downtime limit. Used once a pass after the bulk stage has been measured.
    Estimate,
}

/// Everything a run needs besides the workload and the policies.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Page size in bytes.
    pub(crate) page_size: usize,
    /// Cache budget in bytes.
    pub(crate) cache_size: u64,
    /// Bandwidth limit in bytes per second.
    pub(crate) bandwidth: u64,
    /// Downtime limit in milliseconds.
    pub(crate) downtime_limit_ms: u64,
    /// The rule that stops the guest.
    pub(crate) converge: Rule,
    /// Most passes after the bulk stage before the guest is stopped anyway.
    pub(crate) max_passes: usize,
    /// Simulated seconds after which the guest is stopped anyway.
    pub(crate) max_time_s: f64,
    /// Simulated milliseconds each dirty sync takes.
    pub(crate) sync_time_ms: f64,
}

impl Settings {
    /// Bytes that may be sent within the downtime limit.
    pub(crate) fn threshold(&self) -> u64 {
        let bytes = u128::from(self.bandwidth) * u128::from(self.downtime_limit_ms) / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Seconds the wire needs for `bytes`.
    pub(crate) fn seconds(&self, bytes: usize) -> f64 {
        bytes as f64 / self.bandwidth as f64
    }

    /// Seconds one dirty sync takes.
    pub(crate) fn sync_time(&self) -> f64 {
        self.sync_time_ms / 1000.0
    }
}
