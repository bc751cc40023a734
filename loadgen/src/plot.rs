//! SVG line charts (plotters, SVG backend only).

use plotters::prelude::*;
use std::path::Path;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What the x axis counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Any number (e.g. a percentage).
    Continuous,
    /// Whole numbers only (e.g. node counts): labels at integers, half a unit of padding.
    Integer,
}

/// Draws `lines` into an SVG file at `path`. The y axis starts at 0.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    lines: &[Line],
) -> Result<(), String> {
    draw(path, title, x_label, y_label, x_axis, lines).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    lines: &[Line],
) -> Result<(), Box<dyn std::error::Error>> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (mut xmin, mut xmax, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    if !xmin.is_finite() {
        (xmin, xmax) = (0.0, 1.0);
    }
    if xmax <= xmin {
        (xmin, xmax) = (xmin - 1.0, xmax + 1.0);
    }
    if ymax <= 0.0 {
        ymax = 1.0;
    }
    if x_axis == XAxis::Integer {
        (xmin, xmax) = (xmin.floor() - 0.5, xmax.ceil() + 0.5);
    }
    let x_ticks = if x_axis == XAxis::Integer { ((xmax - xmin).round() as usize).clamp(2, 20) } else { 11 };
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(xmin..xmax, 0.0..ymax * 1.3)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .y_label_formatter(&|v| format_si(*v))
        .x_labels(x_ticks)
        .x_label_formatter(&|v| format_x(*v, x_axis))
        .draw()?;
    for (i, l) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(l.points.clone(), color.stroke_width(2)))?
            .label(l.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn format_x(v: f64, axis: XAxis) -> String {
    let r = v.round();
    if (v - r).abs() < 1e-6 {
        format!("{r:.0}")
    } else if axis == XAxis::Integer {
        String::new()
    } else {
        format!("{v:.1}")
    }
}

/// 1234567 → "1.23M", 45000 → "45k".
pub fn format_si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.svg");
        let lines = vec![
            Line { name: "corezk".into(), points: vec![(0.0, 1000.0), (50.0, 5000.0), (100.0, 90000.0)] },
            Line { name: "zookeeper".into(), points: vec![(0.0, 900.0), (100.0, 50000.0)] },
        ];
        line_chart(&p, "Throughput", "reads (%)", "ops/s", XAxis::Continuous, &lines).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.contains("corezk") && svg.contains("zookeeper") && svg.contains("Throughput"));
        // An empty chart still renders.
        line_chart(&p, "empty", "x", "y", XAxis::Integer, &[]).unwrap();
        assert_eq!(format_x(0.6000000001, XAxis::Continuous), "0.6");
        assert_eq!(format_x(3.0, XAxis::Integer), "3");
        assert_eq!(format_x(3.5, XAxis::Integer), "");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(format_si(45_000.0), "45k");
        assert_eq!(format_si(1_234_567.0), "1.23M");
    }
}
