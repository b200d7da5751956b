//! `--plot FILE`: an SVG of the bytes sent and the dirty pages of every pass, per policy.

use std::path::Path;

use anyhow::ensure;
use plotters::prelude::*;

use super::result::PolicyResult;

/// Fails unless `path` names an SVG file that can be written (replacing a file only if
/// `force`).
pub(crate) fn check_path(path: &Path, force: bool) -> anyhow::Result<()> {
    ensure!(
        path.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg")),
        "--plot writes SVG: give a file name ending in .svg (not {})",
        path.display()
    );
    crate::files::check_output_path(path, "--plot", force)
}

/// Draws the two charts (wire bytes per pass, dirty pages per pass) into an SVG file
/// ([`crate::files::write_file`]). `threshold` (bandwidth x downtime limit) is drawn as a
/// line on the bytes chart.
pub(crate) fn draw(
    path: &Path,
    force: bool,
    title: &str,
    policies: &[PolicyResult],
    threshold: u64,
) -> anyhow::Result<()> {
    check_path(path, force)?;
    let passes = policies.iter().map(|p| p.passes.len()).max().unwrap_or(1);
    let max_bytes = policies
        .iter()
        .flat_map(|p| &p.passes)
        .map(|pass| pass.wire_bytes)
        .max()
        .unwrap_or(1)
        .max(threshold)
        .max(2);
    let max_pages = policies
        .iter()
        .flat_map(|p| &p.passes)
        .map(|pass| pass.dirty_pages)
        .max()
        .unwrap_or(1)
        .max(2);

    let mut svg = String::new();
    let scales = Scales {
        passes,
        max_bytes,
        max_pages,
        threshold,
    };
    render(&mut svg, title, policies, &scales)?;
    crate::files::write_file(path, force, svg.as_bytes())
}

/// Axis ranges of the charts.
struct Scales {
    /// Most passes of any policy.
    passes: usize,
    /// Largest bytes of a pass (or the threshold).
    max_bytes: u64,
    /// Largest dirty pages of a pass.
    max_pages: u64,
    /// Bandwidth x downtime limit.
    threshold: u64,
}

/// Line colours (matplotlib's tab10), distinct on white.
const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// Renders the charts into `svg`.
fn render(
    svg: &mut String,
    title: &str,
    policies: &[PolicyResult],
    scales: &Scales,
) -> anyhow::Result<()> {
    let Scales {
        passes,
        max_bytes,
        max_pages,
        threshold,
    } = *scales;
    let root = SVGBackend::with_string(svg, (1100, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(430);
    let x_range = 0..passes.max(2) - 1;

    let mut bytes = ChartBuilder::on(&top)
        .caption("wire bytes per pass (log scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), (1u64..max_bytes * 2).log_scale())?;
    bytes
        .configure_mesh()
        .x_desc("pass (0 = first pass; the last one is the last stage)")
        .y_desc("bytes")
        .draw()?;
    let mut pages = ChartBuilder::on(&bottom)
        .caption("dirty pages sent per pass (log scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, (1u64..max_pages * 2).log_scale())?;
    pages
        .configure_mesh()
        .x_desc("pass")
        .y_desc("pages")
        .draw()?;

    for (index, policy) in policies.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let style = color.stroke_width(2);
        bytes
            .draw_series(LineSeries::new(
                policy
                    .passes
                    .iter()
                    .map(|pass| (pass.pass, pass.wire_bytes.max(1))),
                style,
            ))?
            .label(policy.policy.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        pages.draw_series(LineSeries::new(
            policy
                .passes
                .iter()
                .map(|pass| (pass.pass, pass.dirty_pages.max(1))),
            style,
        ))?;
    }
    let limit = BLACK.stroke_width(1);
    bytes
        .draw_series(LineSeries::new(
            [(0, threshold.max(1)), (passes.max(2) - 1, threshold.max(1))],
            limit,
        ))?
        .label("bandwidth x downtime limit")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], limit));
    bytes
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
