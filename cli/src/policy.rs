//! The cache policies the simulator puts side by side and `xbzrle stream rewrite` re-sends
//! real streams with.
//!
//! A policy is a name from the list below or a spec `CACHE[/ADMISSION]`:
//!
//! * `CACHE`: `direct` (QEMU's direct-mapped cache) or `sa<WAYS>-<REPLACEMENT>`, a
//!   set-associative cache with `lru`, `lifetime` or `frequency` replacement
//!   (e.g. `sa8-frequency`);
//! * `ADMISSION`: `after-bulk` (the default; QEMU since commit 5cc11c46), `always` (every
//!   page may enter, bulk stage included), `no-bulk` (every page may enter and XBZRLE runs
//!   from the first pass: QEMU before commit 5cc11c46) or `freq<K>` (a page enters once
//!   seen dirty in K passes after the bulk stage).
//!
//! Named policies: `qemu-pre-5cc11c46` = `direct/no-bulk`, `qemu` = `direct/after-bulk`,
//! `ours` = [`OURS`].

use std::fmt;
use std::str::FromStr;

use xbzrle_policy::{Admission, CacheKind, Replacement, Sender, SenderConfig};

/// The spec behind the name `ours`: the best of the configurations measured on the
/// workloads and real snapshots (see the crate README for the comparison).
pub(crate) const OURS: &str = "sa16-frequency/after-bulk";

/// The policies of a default run, one column each.
pub(crate) const DEFAULT_POLICIES: &str = "qemu-pre-5cc11c46,qemu,ours";

/// How pages enter the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// QEMU since commit 5cc11c46: nothing during the bulk stage, every miss after it.
    AfterBulk,
    /// Every page, bulk stage included; the bulk stage still sends raw without lookups.
    Always,
    /// QEMU before commit 5cc11c46: no bulk stage at all; from the first pass every page
    /// is looked up (counting misses) and inserted.
    NoBulk,
    /// After the bulk stage, once seen dirty in this many passes.
    Frequency(u8),
}

/// One column of the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The name the user gave (`qemu`, `ours`, `sa8-lru/after-bulk`, …).
    pub(crate) name: String,
    /// Cache organisation.
    pub(crate) cache: CacheKind,
    /// Admission rule.
    pub(crate) entry: Entry,
}

impl Policy {
    /// Whether the sender skips the bulk stage (XBZRLE from the first pass).
    pub(crate) fn without_bulk_stage(&self) -> bool {
        self.entry == Entry::NoBulk
    }

    /// The first dirty sync of a migration, at the start of the bulk pass. A policy
    /// without a bulk stage (QEMU before 5cc11c46) ends it at once with a second sync.
    pub(crate) fn first_sync(&self, sender: &Sender) {
        sender.start_pass();
        if self.without_bulk_stage() {
            sender.start_pass();
        }
    }

    /// The sender configuration for pages of `page_size` bytes, a cache of `cache_bytes`
    /// and a guest of `guest_pages` pages.
    pub(crate) fn config(
        &self,
        page_size: usize,
        cache_bytes: u64,
        guest_pages: usize,
    ) -> SenderConfig {
        let admission = match self.entry {
            Entry::AfterBulk => Admission::AfterBulk,
            Entry::Always | Entry::NoBulk => Admission::Always,
            Entry::Frequency(min_passes) => Admission::Frequency {
                min_passes,
                // One counter byte per guest page (two rows of half that).
                counters: guest_pages.max(1024),
            },
        };
        SenderConfig::default()
            .with_page_size(page_size)
            .with_cache_bytes(cache_bytes)
            .with_cache(self.cache)
            .with_admission(admission)
            .with_shards(1)
    }

    /// One line for people: what the cache and the admission rule are.
    pub(crate) fn describe(&self) -> String {
        let cache = match self.cache {
            CacheKind::DirectMapped => "direct-mapped cache (QEMU)".to_owned(),
            CacheKind::SetAssociative { ways, replacement } => {
                let replacement = match replacement {
                    Replacement::Lru => "LRU".to_owned(),
                    Replacement::Lifetime => "QEMU's lifetime rule".to_owned(),
                    Replacement::Frequency => "lifetime + fewest-hits".to_owned(),
                    other => format!("{other:?}"),
                };
                format!("{ways}-way set-associative cache, {replacement} replacement")
            }
            other => format!("{other:?} cache"),
        };
        let entry = match self.entry {
            Entry::AfterBulk => "admits misses after the bulk stage".to_owned(),
            Entry::Always => "admits every page, bulk stage included".to_owned(),
            Entry::NoBulk => {
                "no bulk stage: XBZRLE lookups and insertions from the first pass".to_owned()
            }
            Entry::Frequency(k) => {
                format!("admits a page once seen dirty in {k} passes after the bulk stage")
            }
        };
        format!("{cache}; {entry}")
    }
}

/// A policy name or spec that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPolicy(String);

impl fmt::Display for BadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown policy `{}`: use qemu-pre-5cc11c46, qemu, ours, or CACHE[/ADMISSION] with \
             CACHE = direct | sa<WAYS>-lru | sa<WAYS>-lifetime | sa<WAYS>-frequency and \
             ADMISSION = after-bulk | always | no-bulk | freq<K>",
            self.0
        )
    }
}

impl std::error::Error for BadPolicy {}

impl FromStr for Policy {
    type Err = BadPolicy;

    fn from_str(name: &str) -> Result<Self, BadPolicy> {
        let name = name.trim();
        let spec = match name {
            "qemu-pre-5cc11c46" => "direct/no-bulk",
            "qemu" => "direct/after-bulk",
            "ours" => OURS,
            spec => spec,
        };
        let bad = || BadPolicy(name.to_owned());
        let (cache, entry) = spec.split_once('/').unwrap_or((spec, "after-bulk"));
        let cache = match cache {
            "direct" => CacheKind::DirectMapped,
            _ => {
                let (ways, replacement) = cache
                    .strip_prefix("sa")
                    .and_then(|rest| rest.split_once('-'))
                    .ok_or_else(bad)?;
                let ways: usize = ways.parse().map_err(|_| bad())?;
                let replacement = match replacement {
                    "lru" => Replacement::Lru,
                    "lifetime" => Replacement::Lifetime,
                    "frequency" => Replacement::Frequency,
                    _ => return Err(bad()),
                };
                if ways == 0 {
                    return Err(bad());
                }
                CacheKind::SetAssociative { ways, replacement }
            }
        };
        let entry = match entry {
            "after-bulk" => Entry::AfterBulk,
            "always" => Entry::Always,
            "no-bulk" => Entry::NoBulk,
            other => {
                let k: u8 = other
                    .strip_prefix("freq")
                    .and_then(|k| k.parse().ok())
                    .ok_or_else(bad)?;
                if k == 0 {
                    return Err(bad());
                }
                Entry::Frequency(k)
            }
        };
        Ok(Self {
            name: name.to_owned(),
            cache,
            entry,
        })
    }
}

/// Parses a comma-separated list of policies (at least one, names unique).
pub(crate) fn parse_list(list: &str) -> anyhow::Result<Vec<Policy>> {
    let policies = list
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<Policy>, _>>()?;
    for (i, policy) in policies.iter().enumerate() {
        anyhow::ensure!(
            !policies[..i].iter().any(|p| p.name == policy.name),
            "policy `{}` is listed twice",
            policy.name
        );
    }
    anyhow::ensure!(!policies.is_empty(), "no policy given");
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_policies() {
        let pre: Policy = "qemu-pre-5cc11c46".parse().unwrap();
        assert_eq!(pre.cache, CacheKind::DirectMapped);
        assert_eq!(pre.entry, Entry::NoBulk);
        assert!(pre.without_bulk_stage());
        let qemu: Policy = "qemu".parse().unwrap();
        assert_eq!(qemu.entry, Entry::AfterBulk);
        assert!(!qemu.without_bulk_stage());
        assert_eq!(
            qemu.config(4096, 1 << 20, 100),
            SenderConfig::default().with_cache_bytes(1 << 20)
        );
        let ours: Policy = "ours".parse().unwrap();
        assert_eq!(ours.name, "ours");
        assert_eq!(
            Policy {
                name: OURS.to_owned(),
                ..ours
            },
            OURS.parse().unwrap()
        );
    }

    #[test]
    fn specs() {
        let policy: Policy = "sa16-lru/freq3".parse().unwrap();
        assert_eq!(
            policy.cache,
            CacheKind::SetAssociative {
                ways: 16,
                replacement: Replacement::Lru
            }
        );
        assert_eq!(policy.entry, Entry::Frequency(3));
        let config = policy.config(4096, 1 << 20, 10_000);
        assert_eq!(
            config.admission,
            Admission::Frequency {
                min_passes: 3,
                counters: 10_000
            }
        );
        assert!(config.validate().is_ok());
        let default_entry: Policy = "sa4-lifetime".parse().unwrap();
        assert_eq!(default_entry.entry, Entry::AfterBulk);
        assert_eq!(
            "direct/always".parse::<Policy>().unwrap().entry,
            Entry::Always
        );
    }

    #[test]
    fn bad_specs() {
        for bad in [
            "",
            "qemu2",
            "sa-lru",
            "sa0-lru",
            "sa8",
            "sa8-mru",
            "direct/",
            "direct/freq0",
            "direct/freq",
            "sa8-lru/sometimes",
        ] {
            let err = bad.parse::<Policy>().unwrap_err();
            assert!(err.to_string().contains("unknown policy"), "{bad}: {err}");
        }
    }

    #[test]
    fn lists() {
        let names: Vec<String> = parse_list(DEFAULT_POLICIES)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["qemu-pre-5cc11c46", "qemu", "ours"]);
        assert!(parse_list("qemu,qemu").is_err());
        assert!(parse_list("qemu,nope").is_err());
    }
}
