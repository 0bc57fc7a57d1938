//! The benchmarks' SVG plots, drawn with `plotters` (SVG backend only), so every benchmark
//! draws the same way: [`ratio_bars`] (throughput of sqlite-rest against a baseline, one bar
//! per scenario, the baseline at 1) and [`latency_cdf`] (the share of samples at or under a
//! latency, log scale, one line per series). `scripts/bench` and `scripts/bench-replication`
//! write the README's figures with them (`docs/img/`).

use std::path::Path;

use plotters::prelude::*;

/// The colours of the series, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// A horizontal bar per `(label, ratio)` (sqlite-rest's throughput over the baseline's), with
/// the baseline (1.0) marked.
pub fn ratio_bars(path: &Path, title: &str, bars: &[(String, f64)]) -> PlotResult {
    let height = 90 + 46 * bars.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..top, (0..bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("throughput, sqlite-rest / baseline (same run)")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*ratio, SegmentValue::Exact(i + 1)),
            ],
            COLOURS[0].mix(0.8).filled(),
        );
        bar.set_margin(8, 8, 0, 0);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
        Text::new(
            format!("{ratio:.2} ×"),
            (*ratio + top * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 14),
        )
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![
            (1.0, SegmentValue::Exact(0)),
            (1.0, SegmentValue::Exact(bars.len())),
        ],
        BLACK.stroke_width(2),
    )))?;
    root.present()?;
    Ok(())
}

/// One line per `(label, samples in ms)`: for each latency (log scale), the share of samples
/// at or under it. The legend gives each series' p50 and p99.
pub fn latency_cdf(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> PlotResult {
    let root = SVGBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let positive = || {
        series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .filter(|v| *v > 0.0)
    };
    let low = positive().fold(1.0f64, f64::min).max(0.01);
    let high = positive().fold(10.0f64, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((low..high).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("lag, ms (log scale)")
        .y_desc("% of commits")
        .draw()?;
    for (i, (label, samples)) in series.iter().enumerate() {
        let mut sorted: Vec<f64> = samples.iter().map(|v| v.max(low)).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let colour = COLOURS[i % COLOURS.len()];
        let quantile = |q: f64| {
            let at = ((n * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
            sorted.get(at).copied().unwrap_or(0.0)
        };
        let legend = format!(
            "{label}: p50 {:.0} ms, p99 {:.0} ms",
            quantile(0.5),
            quantile(0.99)
        );
        chart
            .draw_series(LineSeries::new(
                sorted
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (*v, (k + 1) as f64 * 100.0 / n)),
                colour.stroke_width(2),
            ))?
            .label(legend)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let bars = dir.path().join("bars.svg");
        ratio_bars(
            &bars,
            "reads",
            &[("(a) one row".into(), 0.8), ("(b) 100 rows".into(), 1.1)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&bars).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("(a) one row") && svg.contains("1.10 ×"));
        let cdf = dir.path().join("cdf.svg");
        latency_cdf(
            &cdf,
            "lag",
            &[("ours".into(), (1..=100).map(f64::from).collect())],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&cdf).unwrap();
        assert!(svg.contains("ours: p50 50 ms, p99 99 ms"), "{svg}");
    }
}
