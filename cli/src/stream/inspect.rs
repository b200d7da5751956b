//! `xbzrle stream inspect FILE [--json OUT]`.

use std::path::PathBuf;

use serde::Serialize;
use xbzrle_stream::{Event, PageBody, SectionKind};

use super::{StreamOptions, TailCollector, TailSummary, Tally, group};
use crate::files;

/// Arguments of `xbzrle stream inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// A migration stream file (plain, or zstd-compressed).
    file: PathBuf,
    /// Print JSON instead of the table (to stdout, or to FILE if given, then the table).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
    /// The limits and --force.
    #[command(flatten)]
    options: StreamOptions,
}

/// A RAM block as MEM_SIZE lists it.
#[derive(Debug, Serialize)]
struct Block {
    name: String,
    bytes: u64,
}

/// RAM sections by type.
#[derive(Debug, Default, Serialize)]
struct SectionCounts {
    start: u64,
    part: u64,
    end: u64,
}

/// One round of QEMU's page search over RAM.
#[derive(Debug, Serialize)]
struct Pass {
    pass: u64,
    /// Dirty syncs proven up to the pass's first record.
    dirty_syncs_at_start: u64,
    #[serde(flatten)]
    tally: Tally,
}

/// Distribution of XBZRLE delta lengths.
#[derive(Debug, Serialize)]
struct DeltaLengths {
    records: u64,
    min: Option<usize>,
    mean: Option<f64>,
    p50: Option<usize>,
    p90: Option<usize>,
    p99: Option<usize>,
    max: Option<usize>,
}

impl DeltaLengths {
    fn from_histogram(histogram: &[u64]) -> Self {
        let records: u64 = histogram.iter().sum();
        let nth = |q: f64| {
            // The smallest length with at least q of the records at or below it.
            let target = ((records as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            histogram.iter().position(|&n| {
                seen += n;
                seen >= target
            })
        };
        let sum: u64 = histogram
            .iter()
            .enumerate()
            .map(|(len, &n)| len as u64 * n)
            .sum();
        let nonempty = records > 0;
        Self {
            records,
            min: histogram.iter().position(|&n| n > 0),
            mean: nonempty.then(|| sum as f64 / records as f64),
            p50: nonempty.then(|| nth(0.5)).flatten(),
            p90: nonempty.then(|| nth(0.9)).flatten(),
            p99: nonempty.then(|| nth(0.99)).flatten(),
            max: histogram.iter().rposition(|&n| n > 0),
        }
    }

    fn describe(&self) -> String {
        let show = |v: Option<usize>| v.map_or("-".into(), |v| v.to_string());
        format!(
            "{} records, min {}, mean {}, p50 {}, p90 {}, p99 {}, max {}",
            group(self.records),
            show(self.min),
            self.mean.map_or("-".into(), |m| format!("{m:.1}")),
            show(self.p50),
            show(self.p90),
            show(self.p99),
            show(self.max)
        )
    }
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
struct Inspection {
    file: String,
    stream_bytes: u64,
    version: u32,
    machine: Option<String>,
    page_size: usize,
    section_footers: bool,
    ram_section_id: Option<u32>,
    blocks: Vec<Block>,
    ram_sections: SectionCounts,
    commands: u64,
    block_names_sent: u64,
    dirty_syncs: u64,
    passes: Vec<Pass>,
    total: Tally,
    after_first_pass: Tally,
    last_stage: Tally,
    xbzrle_delta_lengths: DeltaLengths,
    tail: TailSummary,
}

/// Runs `xbzrle stream inspect`.
pub(crate) fn run(args: &InspectArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        files::check_output_path(path, "--json", args.options.force)?;
    }
    let mut reader = super::open(&args.file, &args.options)?;
    let mut version = 0;
    let mut sections = SectionCounts::default();
    let mut commands = 0;
    let mut names = 0;
    let mut passes: Vec<Pass> = Vec::new();
    let mut last_stage = Tally::default();
    let mut histogram: Vec<u64> = Vec::new();
    let mut tail = TailCollector::default();
    super::for_each_event(&mut reader, &args.file, |event| {
        match event {
            Event::Header { version: v } => version = v,
            Event::Command { .. } => commands += 1,
            Event::SectionStart(section) => match section.kind {
                SectionKind::Start => sections.start += 1,
                SectionKind::Part => sections.part += 1,
                SectionKind::End => sections.end += 1,
                // Never a RAM section: the reader stops at a FULL section before the RAM END.
                SectionKind::Full => {}
            },
            Event::Page(record) => {
                let pass = super::pass_row(&mut passes, record.round, || Pass {
                    pass: record.round,
                    dirty_syncs_at_start: record.dirty_sync,
                    tally: Tally::default(),
                });
                pass.tally.add(&record.body, record.len);
                if record.section == SectionKind::End {
                    last_stage.add(&record.body, record.len);
                }
                names += u64::from(record.named);
                if let PageBody::Xbzrle { delta, .. } = record.body {
                    if histogram.len() <= delta.len() {
                        histogram.resize(delta.len() + 1, 0);
                    }
                    histogram[delta.len()] += 1;
                }
            }
            Event::Tail(chunk) => tail.push(chunk),
            Event::Configuration(_) | Event::MemSize { .. } | Event::SectionEnd { .. } => {}
        }
        Ok(())
    })?;
    let footers = reader.footers().unwrap_or(false);
    let total = passes
        .iter()
        .fold(Tally::default(), |t, p| t.plus(&p.tally));
    let after_first_pass = passes
        .iter()
        .skip(1)
        .fold(Tally::default(), |t, p| t.plus(&p.tally));
    let inspection = Inspection {
        file: args.file.display().to_string(),
        stream_bytes: reader.offset(),
        version,
        machine: reader.configuration().map(|c| c.machine.clone()),
        page_size: reader.page_size(),
        section_footers: footers,
        ram_section_id: reader.ram_section().map(|s| s.id),
        blocks: reader
            .ram()
            .map(|ram| {
                ram.blocks()
                    .iter()
                    .map(|b| Block {
                        name: b.name.clone(),
                        bytes: b.len,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ram_sections: sections,
        commands,
        block_names_sent: names,
        dirty_syncs: reader.dirty_syncs(),
        passes,
        total,
        after_first_pass,
        last_stage,
        xbzrle_delta_lengths: DeltaLengths::from_histogram(&histogram),
        tail: tail.summary(footers),
    };
    match &args.json {
        Some(path) => {
            files::write_json(path, args.options.force, &inspection)?;
            if !files::is_stdio(path) {
                print_table(&inspection);
            }
        }
        None => print_table(&inspection),
    }
    Ok(())
}

fn print_table(i: &Inspection) {
    println!(
        "{}: QEMU migration stream version {}, {} bytes",
        i.file,
        i.version,
        group(i.stream_bytes)
    );
    println!(
        "machine {}, page size {}, section footers: {}",
        i.machine.as_deref().unwrap_or("(no configuration section)"),
        i.page_size,
        if i.section_footers { "yes" } else { "no" }
    );
    let ram: u64 = i.blocks.iter().map(|b| b.bytes).sum();
    println!("RAM blocks: {}, {} bytes", i.blocks.len(), group(ram));
    for block in &i.blocks {
        println!("  {:<28} {:>15}", block.name, group(block.bytes));
    }
    println!(
        "RAM sections (id {}): START {}, PART {}, END {}; commands {}; block names sent {}; \
         dirty syncs proven {}",
        i.ram_section_id.map_or("-".into(), |id| id.to_string()),
        i.ram_sections.start,
        i.ram_sections.part,
        i.ram_sections.end,
        i.commands,
        group(i.block_names_sent),
        i.dirty_syncs
    );
    println!(
        "\n{:>5} {:>6} {:>10} {:>10} {:>10} {:>14} {:>14} {:>14}",
        "pass",
        "syncs",
        "duplicate",
        "normal",
        "xbzrle",
        "normal bytes",
        "xbzrle bytes",
        "record bytes"
    );
    let row = |label: &str, syncs: &str, t: &Tally| {
        println!(
            "{label:>5} {syncs:>6} {:>10} {:>10} {:>10} {:>14} {:>14} {:>14}",
            group(t.zero),
            group(t.page),
            group(t.xbzrle),
            group(t.page * i.page_size as u64),
            group(t.xbzrle_bytes),
            group(t.record_bytes)
        );
    };
    for pass in &i.passes {
        row(
            &pass.pass.to_string(),
            &pass.dirty_syncs_at_start.to_string(),
            &pass.tally,
        );
    }
    row("total", "", &i.total);
    println!("after the first pass:");
    row("", "", &i.after_first_pass);
    println!("last stage (END section):");
    row("", "", &i.last_stage);
    println!(
        "\nXBZRLE delta length: {}",
        i.xbzrle_delta_lengths.describe()
    );
    println!("after the RAM: {}", i.tail.describe());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_length_statistics() {
        let mut histogram = vec![0u64; 16];
        histogram[3] = 1;
        histogram[10] = 8;
        histogram[15] = 1;
        let d = DeltaLengths::from_histogram(&histogram);
        assert_eq!(d.records, 10);
        assert_eq!((d.min, d.max), (Some(3), Some(15)));
        assert_eq!((d.p50, d.p90, d.p99), (Some(10), Some(10), Some(15)));
        assert_eq!(d.mean, Some(9.8));
        let empty = DeltaLengths::from_histogram(&[]);
        assert_eq!((empty.records, empty.min, empty.p50), (0, None, None));
        assert!(empty.describe().starts_with("0 records"));
    }
}
