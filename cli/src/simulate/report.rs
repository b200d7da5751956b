//! The simulator's output: the table for people and the JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use super::result::{Converged, PolicyResult};
use super::settings::{Rule, Settings};
use crate::units::format_size;

/// The column other policies are compared with besides the first one.
const QEMU_POLICY: &str = "qemu";

/// The workload of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkloadInfo {
    /// `xbzrle-doc`, `zipf` or `replay`.
    pub(crate) name: String,
    /// One line for people.
    pub(crate) description: String,
    /// The workload's settings.
    pub(crate) parameters: serde_json::Value,
}

/// How one policy did against another.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// The policy.
    pub(crate) policy: String,
    /// The policy it is compared with.
    pub(crate) baseline: String,
    /// Baseline cache misses / policy cache misses.
    pub(crate) cache_miss_reduction: Option<f64>,
    /// Policy XBZRLE pages / baseline XBZRLE pages.
    pub(crate) xbzrle_pages_gain: Option<f64>,
    /// 1 - policy bytes / baseline bytes: the share of bytes saved.
    pub(crate) transferred_saving: Option<f64>,
    /// The same for the bytes sent after the first pass.
    pub(crate) transferred_after_first_pass_saving: Option<f64>,
}

/// Everything `xbzrle simulate` reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// [`crate::JSON_SCHEMA_VERSION`].
    pub(crate) schema_version: u32,
    /// The workload.
    pub(crate) workload: WorkloadInfo,
    /// Link, cache and convergence settings.
    pub(crate) settings: Settings,
    /// One entry per policy, in column order.
    pub(crate) policies: Vec<PolicyResult>,
    /// Every policy against the first column and against `qemu` (those right of it).
    pub(crate) comparisons: Vec<Comparison>,
    /// Real seconds the simulation took.
    pub(crate) wall_time_s: f64,
}

impl Report {
    /// The report, with the comparisons worked out.
    pub(crate) fn new(
        workload: WorkloadInfo,
        settings: Settings,
        policies: Vec<PolicyResult>,
        wall_time_s: f64,
    ) -> Self {
        let ratio = |a: u64, b: u64| (b != 0).then(|| a as f64 / b as f64);
        let compare = |policy: &PolicyResult, baseline: &PolicyResult| Comparison {
            policy: policy.policy.clone(),
            baseline: baseline.policy.clone(),
            cache_miss_reduction: ratio(
                baseline.table.xbzrle_cache_miss,
                policy.table.xbzrle_cache_miss,
            ),
            xbzrle_pages_gain: ratio(policy.table.xbzrle_pages, baseline.table.xbzrle_pages),
            transferred_saving: ratio(policy.wire_bytes, baseline.wire_bytes).map(|r| 1.0 - r),
            transferred_after_first_pass_saving: ratio(
                policy.wire_bytes_after_first_pass,
                baseline.wire_bytes_after_first_pass,
            )
            .map(|r| 1.0 - r),
        };
        // Every column against the first one and against `qemu`.
        let mut comparisons = Vec::new();
        let baselines = policies
            .first()
            .into_iter()
            .chain(policies.iter().skip(1).find(|p| p.policy == QEMU_POLICY));
        for baseline in baselines {
            comparisons.extend(
                policies
                    .iter()
                    .skip_while(|p| p.policy != baseline.policy)
                    .skip(1)
                    .map(|policy| compare(policy, baseline)),
            );
        }
        Self {
            schema_version: crate::JSON_SCHEMA_VERSION,
            workload,
            settings,
            policies,
            comparisons,
            wall_time_s,
        }
    }

    /// The policies whose destination RAM differs from the source.
    pub(crate) fn failures(&self) -> impl Iterator<Item = &PolicyResult> {
        self.policies.iter().filter(|p| !p.destination.verified)
    }

    /// The table for people.
    pub(crate) fn render(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workload: {} ({})",
            self.workload.name, self.workload.description
        );
        let _ = writeln!(
            out,
            "link: {}/s, downtime limit {} ms, dirty sync {} ms; cache {}; guest stopped by the {} rule \
             (or after {} passes / {} s)",
            format_size(s.bandwidth),
            s.downtime_limit_ms,
            s.sync_time_ms,
            format_size(s.cache_size),
            match s.converge {
                Rule::Qemu => "qemu",
                Rule::Estimate => "estimate",
            },
            s.max_passes,
            s.max_time_s
        );
        out.push('\n');
        let policies = &self.policies;
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |label: &str, cell: &dyn Fn(&PolicyResult) -> String| {
            rows.push((label.to_owned(), policies.iter().map(cell).collect()));
        };
        add("", &|p| p.policy.clone());
        add("total time (ms)", &|p| p.table.total_time_ms.to_string());
        add("downtime (ms)", &|p| p.table.downtime_ms.to_string());
        add("transferred ram (KiB)", &|p| {
            p.table.transferred_ram_kib.to_string()
        });
        add("remaining ram (KiB)", &|p| {
            p.table.remaining_ram_kib.to_string()
        });
        add("total ram (KiB)", &|p| p.table.total_ram_kib.to_string());
        add("duplicate (pages)", &|p| {
            p.table.duplicate_pages.to_string()
        });
        add("normal (pages)", &|p| p.table.normal_pages.to_string());
        add("normal bytes (KiB)", &|p| {
            p.table.normal_bytes_kib.to_string()
        });
        add("cache size (bytes)", &|p| {
            p.table.cache_size_bytes.to_string()
        });
        add("xbzrle transferred (KiB)", &|p| {
            p.table.xbzrle_transferred_kib.to_string()
        });
        add("xbzrle pages", &|p| p.table.xbzrle_pages.to_string());
        add("xbzrle cache miss", &|p| {
            p.table.xbzrle_cache_miss.to_string()
        });
        add("xbzrle overflow", &|p| p.table.xbzrle_overflow.to_string());
        add("cache-miss-rate", &|p| {
            format!("{:.4}", p.table.cache_miss_rate)
        });
        add("encoding-rate", &|p| {
            format!("{:.2}", p.table.encoding_rate)
        });
        add("---", &|_| String::new());
        let converged = |c: Option<Converged>| {
            c.map_or_else(
                || "never".to_owned(),
                |c| format!("pass {} @ {:.1} s", c.pass, c.time_s),
            )
        };
        add("transferred after 1st pass (KiB)", &|p| {
            (p.wire_bytes_after_first_pass / 1024).to_string()
        });
        add("xbzrle records sent", &|p| p.xbzrle_records.to_string());
        add("skipped (unchanged) pages", &|p| {
            p.skipped_pages.to_string()
        });
        add("passes after the first", &|p| {
            p.iterative_passes.to_string()
        });
        add("qemu rule holds from", &|p| {
            converged(p.convergence.qemu_rule)
        });
        add("estimate rule holds from", &|p| {
            converged(p.convergence.estimate_rule)
        });
        add("guest stopped by", &|p| {
            p.convergence.stopped_by.describe().to_owned()
        });
        add("last stage estimated (KiB)", &|p| {
            p.convergence
                .last_stage_estimated_bytes
                .map_or_else(|| "-".to_owned(), |b| (b / 1024).to_string())
        });
        add("last stage sent (KiB)", &|p| {
            (p.convergence.last_stage_bytes / 1024).to_string()
        });
        add("destination RAM", &|p| {
            if p.destination.verified {
                "identical".to_owned()
            } else {
                format!("{} PAGES DIFFER", p.destination.mismatched_pages)
            }
        });
        let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
        let width = rows
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(String::len))
            .max()
            .unwrap_or(0)
            + 3;
        for (label, cells) in &rows {
            if label == "---" {
                let _ = writeln!(out, "{}", "-".repeat(label_width + width * cells.len()));
                continue;
            }
            let _ = write!(out, "{label:<label_width$}");
            for cell in cells {
                let _ = write!(out, "{cell:>width$}");
            }
            out.push('\n');
        }
        out.push('\n');
        for policy in policies {
            let _ = writeln!(out, "{}: {}", policy.policy, policy.description);
        }
        if !self.comparisons.is_empty() {
            out.push('\n');
            let _ = writeln!(
                out,
                "{:<40}{:>14}{:>14}{:>17}{:>20}",
                "comparison", "cache misses", "xbzrle pages", "transferred ram", "after 1st pass"
            );
            for c in &self.comparisons {
                let label = format!("{} vs {}", c.policy, c.baseline);
                let misses = c
                    .cache_miss_reduction
                    .map_or_else(|| "-".to_owned(), |r| format!("/{r:.2}"));
                let pages = c
                    .xbzrle_pages_gain
                    .map_or_else(|| "-".to_owned(), |r| format!("x{r:.2}"));
                let percent = |saving: Option<f64>| {
                    saving.map_or_else(|| "-".to_owned(), |r| format!("{:+.1}%", -100.0 * r))
                };
                let (bytes, after) = (
                    percent(c.transferred_saving),
                    percent(c.transferred_after_first_pass_saving),
                );
                let _ = writeln!(
                    out,
                    "{label:<40}{misses:>14}{pages:>14}{bytes:>17}{after:>20}"
                );
            }
        }
        out
    }
}
