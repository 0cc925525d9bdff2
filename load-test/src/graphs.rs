//! SVG graphs (plotters): latency percentiles and throughput against offered load, CPU and memory of every
//! component over time with the steps marked. Several runs share the first two graphs in `compare`.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

use bank_core::load_test_run::RunReport;

const SIZE: (u32, u32) = (1000, 600);

/// Two significant digits (axis labels of a log axis).
fn round2(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        return format!("{v}");
    }
    let scale = 10f64.powi(v.log10().floor() as i32 - 1);
    format!("{}", (v / scale).round() * scale)
}

type Line = (String, Vec<(f64, f64)>);
type Percentile = (&'static str, fn(&bank_core::load_test_run::Latency) -> f64);

/// A linear axis from 0 to a little above the highest value.
fn padded(hi: f64) -> (f64, f64) {
    (0.0, if hi.is_finite() && hi > 0.0 { hi * 1.1 } else { 1.0 })
}

fn bounds(lines: &[Line], f: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    lines
        .iter()
        .flat_map(|l| l.1.iter())
        .map(f)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
}

/// Draws `lines` on log-log axes (`log`) or linear ones; `spans` are shaded x ranges (the measured windows).
fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    log: bool,
    spans: &[(f64, f64)],
) -> anyhow::Result<()> {
    // On log axes both coordinates are drawn as log10 on linear axes and labelled with the values themselves
    // (plotters labels a short log range sparsely).
    let lines: Vec<Line> = lines
        .iter()
        .map(|(n, p)| {
            let pts = p.iter().copied().filter(|(x, y)| !log || (*x > 0.0 && *y > 0.0));
            (n.clone(), if log { pts.map(|(x, y)| (x.log10(), y.log10())).collect() } else { pts.collect() })
        })
        .collect();
    let (x0, x1) = bounds(&lines, |p| p.0);
    let (y0, y1) = bounds(&lines, |p| p.1);
    let (x0, x1) = if log { (x0 - 0.1, x1 + 0.1) } else { padded(x1) };
    let (x0, x1) = if x0.is_finite() && x1.is_finite() { (x0, x1) } else { (0.0, 1.0) };
    let (y0, y1) = if log { (y0 - 0.1, y1 + 0.1) } else { padded(y1) };
    let (y0, y1) = if y0.is_finite() && y1.is_finite() { (y0, y1) } else { (0.0, 1.0) };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 22)).margin(15).x_label_area_size(45).y_label_area_size(70);
    let mut c = b.build_cartesian_2d(x0..x1, y0..y1)?;
    let fmt = |v: &f64| if log { round2(10f64.powf(*v)) } else { format!("{v:.0}") };
    c.configure_mesh().x_desc(x_desc).y_desc(y_desc).x_label_formatter(&fmt).y_label_formatter(&fmt).draw()?;
    c.draw_series(spans.iter().map(|&(a, b)| Rectangle::new([(a, y0), (b, y1)], BLUE.mix(0.08).filled())))?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Percentiles of every latency kind against offered load (one run), or p50/p99 of each run's SLO kind.
pub fn latency(runs: &[&RunReport], path: &Path) -> anyhow::Result<()> {
    let mut lines: Vec<Line> = Vec::new();
    let single = runs.len() == 1;
    for r in runs {
        let mut kinds: Vec<&String> = r.steps.iter().flat_map(|s| s.latency.keys()).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            if !single && *kind != r.config.slo_kind {
                continue;
            }
            let pcts: &[Percentile] = if single {
                &[("p50", |l| l.p50_ms), ("p90", |l| l.p90_ms), ("p99", |l| l.p99_ms), ("p99.9", |l| l.p999_ms)]
            } else {
                &[("p50", |l| l.p50_ms), ("p99", |l| l.p99_ms)]
            };
            for (pname, get) in pcts {
                let pts = r
                    .steps
                    .iter()
                    .filter_map(|s| s.latency.get(kind).filter(|l| l.count > 0).map(|l| (s.offered_rate, get(l))))
                    .collect();
                let name = if single { format!("{kind} {pname}") } else { format!("{} {kind} {pname}", r.id) };
                lines.push((name, pts));
            }
        }
    }
    chart(path, "Latency vs offered load (log scales)", "offered (per second)", "latency (ms)", &lines, true, &[])
}

/// Achieved against offered rate, with the ideal line.
pub fn throughput(runs: &[&RunReport], path: &Path) -> anyhow::Result<()> {
    let mut lines: Vec<Line> = runs
        .iter()
        .map(|r| (format!("{} {}", r.mode, r.id), r.steps.iter().map(|s| (s.offered_rate, s.achieved_rate)).collect()))
        .collect();
    let max = runs.iter().flat_map(|r| r.steps.iter()).map(|s| s.offered_rate).fold(0.0, f64::max);
    lines.push(("achieved = offered".into(), vec![(0.0, 0.0), (max, max)]));
    chart(path, "Throughput: achieved vs offered", "offered (per second)", "achieved (per second)", &lines, false, &[])
}

#[derive(Clone, Copy)]
pub enum Resource {
    Cpu,
    Memory,
}

/// CPU % or RSS of every component over the run; grey lines mark where each measured window began and ended.
pub fn resources(r: &RunReport, path: &Path, what: Resource) -> anyhow::Result<()> {
    let lines: Vec<Line> = r
        .resources
        .iter()
        .map(|(name, s)| {
            let pts = s
                .iter()
                .map(|x| (x.t, if matches!(what, Resource::Cpu) { x.cpu_percent } else { x.rss_mib }))
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let spans: Vec<(f64, f64)> = r.steps.iter().map(|s| (s.start_s, s.end_s)).collect();
    let (title, y) = match what {
        Resource::Cpu => ("CPU per component (100 % = one core); shaded: measured windows", "CPU %"),
        Resource::Memory => ("Memory per component (RSS; PSS for process trees); shaded: measured windows", "MiB"),
    };
    chart(path, title, "seconds since start", y, &lines, false, &spans)
}

/// Where each step's CPU went: one stacked bar per offered rate (CPU µs per completed operation), one colour
/// per component, the load tester on top; each bar's height is written above it, the legend beside the chart.
pub fn cost(r: &RunReport, path: &Path) -> anyhow::Result<()> {
    let mut names: Vec<&str> = r.steps.iter().flat_map(|s| s.cost.keys().map(String::as_str)).collect();
    names.sort_by_key(|n| (*n == bank_core::load_test_run::Step::LOAD_TESTER, *n));
    names.dedup();
    // Segments 0..=last, one per step.
    let last = u32::try_from(r.steps.len().saturating_sub(1)).unwrap_or(u32::MAX);
    let per_op = |s: &bank_core::load_test_run::Step, name: &str| s.cost.get(name).and_then(|c| c.cpu_us_per_op);
    let totals: Vec<f64> = r.steps.iter().map(|s| names.iter().filter_map(|c| per_op(s, c)).sum()).collect();
    let (_, y1) = padded(totals.iter().copied().fold(0.0, f64::max) * 1.05);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, side) = root.split_horizontally(SIZE.0 - 190);
    let mut c = ChartBuilder::on(&plot)
        .caption("CPU per completed operation, by component (stacked)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..y1)?;
    let rates: Vec<f64> = r.steps.iter().map(|s| s.offered_rate).collect();
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            rates.get(*i as usize).map_or(String::new(), |r| format!("{r}/s"))
        }
        SegmentValue::Last => String::new(),
    };
    c.configure_mesh()
        .disable_x_mesh()
        .x_desc("offered rate")
        .y_desc("CPU µs per operation")
        .x_label_formatter(&label)
        .y_label_formatter(&|v: &f64| format!("{v:.0}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    let mut base = vec![0.0; r.steps.len()];
    for (k, name) in names.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let mut bars = Vec::new();
        for (i, s) in r.steps.iter().enumerate() {
            let Some(v) = per_op(s, name) else { continue };
            let (Some(b), Ok(x)) = (base.get_mut(i), u32::try_from(i)) else { continue };
            let mut bar =
                Rectangle::new([(SegmentValue::Exact(x), *b), (SegmentValue::Exact(x + 1), *b + v)], color.filled());
            bar.set_margin(0, 0, 12, 12);
            bars.push(bar);
            *b += v;
        }
        c.draw_series(bars)?;
        // The legend, top to bottom in the order the bars stack from the top.
        let y = 60 + 26 * i32::try_from(names.len() - 1 - k).unwrap_or(0);
        side.draw(&Rectangle::new([(10, y - 8), (28, y + 8)], color.filled()))?;
        side.draw(&Text::new(
            (*name).to_owned(),
            (36, y),
            ("sans-serif", 16).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    let above = ("sans-serif", 16).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
    c.draw_series(totals.iter().enumerate().filter_map(|(i, t)| {
        let x = u32::try_from(i).ok()?;
        (*t > 0.0).then(|| Text::new(format!("{t:.0}"), (SegmentValue::CenterOf(x), *t), above.clone()))
    }))?;
    root.present()?;
    Ok(())
}
