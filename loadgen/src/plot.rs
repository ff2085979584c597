//! `--plot FILE.svg`: the latency distribution (HdrHistogram style: latency by
//! percentile, on a log scale of 1/(1-p)) and the connection ramp over time.

use plotters::prelude::*;

use crate::report::Outcome;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Draws one or more scenarios' latency percentiles (left) and ramps (right).
pub fn draw(path: &str, outcomes: &[Outcome]) -> PlotResult {
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(620);
    latency(&left, outcomes)?;
    ramp(&right, outcomes)?;
    root.present()?;
    Ok(())
}

/// x: 1/(1-p) on a log axis (1 = p0, 10 = p90, 100 = p99, 1000 = p99.9, ...).
fn latency(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    outcomes: &[Outcome],
) -> PlotResult {
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

fn ramp(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    outcomes: &[Outcome],
) -> PlotResult {
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
