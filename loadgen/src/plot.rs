//! `--plot FILE.svg`: the latency distribution (HdrHistogram style: latency by
//! percentile, on a log scale of 1/(1-p)) and the connection ramp over time on
//! top; below, the per-second samples: what the scenario did each second
//! (messages, else pongs, else connections opened), that second's p50 and p99
//! latency, and its errors, so a ramp, a stall or a pause is seen at a glance.

use plotters::prelude::*;

use crate::report::Outcome;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Draws one or more scenarios: latency percentiles and ramps on top, the
/// per-second rate, latency and errors below; one colour per scenario.
pub fn draw(path: &str, outcomes: &[Outcome]) -> PlotResult {
    let root = SVGBackend::new(path, (1500, 950)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(500);
    let (left, right) = top.split_horizontally(760);
    latency(&left, outcomes)?;
    ramp(&right, outcomes)?;
    let panels = bottom.split_evenly((1, 3));
    per_second_rate(&panels[0], outcomes)?;
    per_second_latency(&panels[1], outcomes)?;
    per_second_errors(&panels[2], outcomes)?;
    root.present()?;
    Ok(())
}

/// The last second sampled by any scenario (at least 1).
fn last_second(outcomes: &[Outcome]) -> f64 {
    outcomes
        .iter()
        .filter_map(|o| o.report.series.last().map(|s| s.t as f64 + 1.0))
        .fold(1.0, f64::max)
}

fn per_second_rate(area: &Area<'_>, outcomes: &[Outcome]) -> PlotResult {
    let series: Vec<(String, Vec<(f64, f64)>)> = outcomes
        .iter()
        .map(|o| {
            let points = o
                .report
                .series
                .iter()
                .map(|s| (s.t as f64, s.rate() as f64))
                .collect();
            (o.name.clone(), points)
        })
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "per second: messages (else pongs, else connects)",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last_second(outcomes), 0f64..max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()?;
    draw_lines(&mut chart, series)
}

/// p99 (thick) and p50 (thin) of each second, on a log axis: message latency
/// (hold: ping to pong), or for connect, connect + upgrade.
fn per_second_latency(area: &Area<'_>, outcomes: &[Outcome]) -> PlotResult {
    let mut lines = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        // Echo, fan-out or (hold) ping-to-pong latency; else connect + upgrade.
        let messages = !o.report.latency.is_empty() || !o.report.pong_latency.is_empty();
        let pick = |s: &crate::series::Sample, q: f64| {
            let h = if messages { &s.latency } else { &s.handshake };
            h.quantile(q).map(|v| (s.t as f64, v as f64 / 1000.0))
        };
        let p99: Vec<(f64, f64)> = o
            .report
            .series
            .iter()
            .filter_map(|s| pick(s, 0.99))
            .collect();
        let p50: Vec<(f64, f64)> = o
            .report
            .series
            .iter()
            .filter_map(|s| pick(s, 0.5))
            .collect();
        lines.push((i, format!("{} p99", o.name), p99, 2));
        lines.push((i, format!("{} p50", o.name), p50, 1));
    }
    let values = || lines.iter().flat_map(|l| l.2.iter().map(|&(_, y)| y));
    let lo = values().fold(f64::INFINITY, f64::min);
    let hi = values().fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        ((lo * 0.8).max(0.001), (hi * 1.25).max(lo * 2.0))
    } else {
        (0.001, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption("per second: latency p99 (thick), p50", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..last_second(outcomes), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()?;
    for (i, name, points, width) in lines {
        let color = Palette99::pick(i).to_rgba();
        let style = if width > 1 {
            color.stroke_width(2)
        } else {
            color.mix(0.6).stroke_width(1)
        };
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// Failed connects, missed pongs, mismatched echoes and dropped connections
/// of each second.
fn per_second_errors(area: &Area<'_>, outcomes: &[Outcome]) -> PlotResult {
    let series: Vec<(String, Vec<(f64, f64)>)> = outcomes
        .iter()
        .map(|o| {
            let points = o
                .report
                .series
                .iter()
                .map(|s| (s.t as f64, s.counts.errors() as f64))
                .collect();
            (o.name.clone(), points)
        })
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("per second: errors", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..last_second(outcomes), 0f64..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("errors")
        .draw()?;
    draw_lines(&mut chart, series)
}

/// x: 1/(1-p) on a log axis (1 = p0, 10 = p90, 100 = p99, 1000 = p99.9, ...).
fn latency(area: &Area<'_>, outcomes: &[Outcome]) -> PlotResult {
    let mut series = Vec::new();
    let mut max_ms: f64 = 0.001;
    for o in outcomes.iter().filter(|o| !o.report.latency.is_empty()) {
        let h = &o.report.latency;
        let points: Vec<(f64, f64)> = (0..=60)
            .map(|i| {
                // 60 steps from p0 to p99.9999.
                let x = 10f64.powf(i as f64 / 10.0);
                let q = 1.0 - 1.0 / x;
                (x, h.value_at_quantile(q) as f64 / 1000.0)
            })
            .collect();
        max_ms = max_ms.max(h.max() as f64 / 1000.0);
        series.push((o.name.clone(), points));
    }
    let mut chart = ChartBuilder::on(area)
        .caption("latency by percentile", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..1e6f64).log_scale(), 0f64..max_ms * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("p{}", trim(p))
        })
        .draw()?;
    draw_lines(&mut chart, series)
}

fn ramp(area: &Area<'_>, outcomes: &[Outcome]) -> PlotResult {
    let max_t = outcomes
        .iter()
        .filter_map(|o| o.report.ramp.last().map(|r| r.0))
        .fold(0.1f64, f64::max);
    let max_open = outcomes
        .iter()
        .flat_map(|o| o.report.ramp.iter().map(|r| r.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("open connections", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_t, 0f64..max_open * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("connections")
        .draw()?;
    let series = outcomes
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                o.report.ramp.iter().map(|&(t, n)| (t, n as f64)).collect(),
            )
        })
        .collect();
    draw_lines(&mut chart, series)
}

/// One coloured line per named series, with a legend.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> PlotResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// "99.9" rather than "99.90000000001".
fn trim(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
