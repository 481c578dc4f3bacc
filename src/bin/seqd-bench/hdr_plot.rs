//! A latency-by-percentile plot as hand-written SVG, in the style of HdrHistogram's plotter:
//! the x axis is the percentile on a "nines" scale (0, 90, 99, 99.9, 99.99 equally spaced:
//! x = log10(1 / (1 - p))), the y axis the latency in µs on a log scale (so a tail in
//! milliseconds does not flatten a median in tens of µs).

use hdrhistogram::Histogram;
use std::fmt::Write;

/// One curve: a histogram of latencies in µs and how to label it.
pub struct Curve<'a> {
    pub label: String,
    pub color: &'static str,
    pub histogram_us: &'a Histogram<u64>,
}

/// The plot goes up to 99.99% (four nines).
const MAX_NINES: f64 = 4.0;
/// Points per curve along the x axis.
const POINTS: usize = 200;

const WIDTH_PX: f64 = 820.0;
const HEIGHT_PX: f64 = 500.0;
const LEFT_PX: f64 = 80.0;
const RIGHT_PX: f64 = 30.0;
const TOP_PX: f64 = 50.0;
const BOTTOM_PX: f64 = 60.0;

/// The y axis spans whole decades: `10^min_decade ..= 10^max_decade` µs.
struct Frame {
    min_decade: i32,
    max_decade: i32,
}

impl Frame {
    /// The decades around the curves: from the lowest minimum to the highest value plotted.
    fn around(curves: &[Curve]) -> Frame {
        let low_us = curves.iter().map(|c| c.histogram_us.min()).min().unwrap_or(1).max(1);
        let high_us =
            curves.iter().map(|c| c.histogram_us.value_at_quantile(quantile_at(MAX_NINES))).max().unwrap_or(1);
        let min_decade = (low_us as f64).log10().floor() as i32;
        let max_decade = ((high_us as f64).log10().ceil() as i32).max(min_decade + 1);
        Frame { min_decade, max_decade }
    }

    fn plot_width_px() -> f64 {
        WIDTH_PX - LEFT_PX - RIGHT_PX
    }

    fn plot_height_px() -> f64 {
        HEIGHT_PX - TOP_PX - BOTTOM_PX
    }

    fn x_px(&self, nines: f64) -> f64 {
        LEFT_PX + nines / MAX_NINES * Self::plot_width_px()
    }

    fn y_px(&self, latency_us: f64) -> f64 {
        let span = f64::from(self.max_decade - self.min_decade);
        let clamped = latency_us.clamp(self.bottom_us(), self.top_us());
        TOP_PX + Self::plot_height_px() * (1.0 - (clamped.log10() - f64::from(self.min_decade)) / span)
    }

    fn bottom_us(&self) -> f64 {
        10f64.powi(self.min_decade)
    }

    fn top_us(&self) -> f64 {
        10f64.powi(self.max_decade)
    }

    /// Gridlines at 1, 2 and 5 times each power of ten on the axis.
    fn y_ticks_us(&self) -> Vec<f64> {
        let mut ticks: Vec<f64> =
            (self.min_decade..self.max_decade).flat_map(|d| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(d))).collect();
        ticks.push(self.top_us());
        ticks
    }
}

/// The quantile at `nines` on the x axis: 0 -> 0, 1 -> 0.9, 2 -> 0.99, ...
fn quantile_at(nines: f64) -> f64 {
    1.0 - 10f64.powf(-nines)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The whole SVG document.
pub fn percentile_svg(title: &str, curves: &[Curve]) -> String {
    let frame = Frame::around(curves);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="25" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    write_axes(&mut svg, &frame);
    for curve in curves {
        write_curve(&mut svg, &frame, curve);
    }
    write_legend(&mut svg, curves);
    svg.push_str("</svg>\n");
    svg
}

fn write_axes(svg: &mut String, frame: &Frame) {
    let (x0, x1) = (frame.x_px(0.0), frame.x_px(MAX_NINES));
    let (y0, y1) = (frame.y_px(frame.bottom_us()), frame.y_px(frame.top_us()));
    for (nines, label) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%")] {
        let x = frame.x_px(nines);
        let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="#ddd"/>"##);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, y0 + 18.0);
    }
    for latency_us in frame.y_ticks_us() {
        let y = frame.y_px(latency_us);
        let _ = writeln!(svg, r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#ddd"/>"##);
        let _ =
            writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{latency_us:.0}</text>"#, x0 - 8.0, y + 4.0);
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{x0:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        x1 - x0,
        y0 - y1
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT_PX - 15.0
    );
    let y_mid = (y0 + y1) / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{y_mid:.1}" text-anchor="middle" transform="rotate(-90 20 {y_mid:.1})">latency (µs, log scale)</text>"#
    );
}

fn write_curve(svg: &mut String, frame: &Frame, curve: &Curve) {
    let mut points = String::new();
    for i in 0..=POINTS {
        let nines = MAX_NINES * i as f64 / POINTS as f64;
        let latency_us = curve.histogram_us.value_at_quantile(quantile_at(nines)) as f64;
        let _ = write!(points, "{:.1},{:.1} ", frame.x_px(nines), frame.y_px(latency_us));
    }
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
        points.trim_end(),
        curve.color
    );
}

fn write_legend(svg: &mut String, curves: &[Curve]) {
    for (i, curve) in curves.iter().enumerate() {
        let y = TOP_PX + 20.0 + 18.0 * i as f64;
        let x = LEFT_PX + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/>"#,
            x + 25.0,
            curve.color
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x + 32.0, y + 4.0, escape(&curve.label));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_and_decades() {
        assert_eq!(quantile_at(0.0), 0.0);
        assert!((quantile_at(2.0) - 0.99).abs() < 1e-12);
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        histogram.record(35).unwrap();
        histogram.record(4_200).unwrap();
        let frame = Frame::around(&[Curve { label: String::new(), color: "red", histogram_us: &histogram }]);
        assert_eq!((frame.min_decade, frame.max_decade), (1, 4));
        assert_eq!(frame.y_px(10.0), TOP_PX + Frame::plot_height_px());
        assert_eq!(frame.y_px(10_000.0), TOP_PX);
        assert_eq!(frame.y_ticks_us().len(), 3 * 3 + 1);
    }
}
