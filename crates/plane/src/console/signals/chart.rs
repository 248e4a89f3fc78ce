//! One small chart: an SVG line over the 15-minute window, drawn on the server (no
//! script), with the latest value and the scale written out.
use std::fmt::Write;

use super::{Series, Signal, Unit, ring::WINDOW_SECS};
use crate::console::html::esc;

const W: f64 = 280.0;
const H: f64 = 64.0;
/// Space above the line for the scale label.
const TOP: f64 = 14.0;

pub fn figure(out: &mut String, signal: &Signal, series: &Series, now: i64) {
    let latest = series.iter().rev().find(|p| p.1.is_finite()).map(|p| p.1);
    let max = series
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let _ = write!(
        out,
        "<figure class=\"chart\" data-signal=\"{}\" data-max=\"{max}\"><figcaption><b>{}</b> <span class=\"value\">{}</span></figcaption>",
        esc(signal.title),
        esc(signal.title),
        latest.map_or("no data".into(), |v| format(signal.unit, v))
    );
    svg(out, signal, series, now);
    let _ = write!(out, "<p class=\"hint\">{}</p></figure>", esc(signal.hint));
}

/// The line scales to the card's width (`preserveAspectRatio="none"`, strokes kept
/// thin); labels are HTML so they do not stretch with it.
fn svg(out: &mut String, signal: &Signal, series: &Series, now: i64) {
    let finite = series.iter().filter(|p| p.1.is_finite()).map(|p| p.1);
    let max = finite.fold(floor(signal.unit), f64::max);
    let start = now - WINDOW_SECS;
    let x = |t: i64| ((t - start) as f64 / WINDOW_SECS as f64 * W).clamp(0.0, W);
    let y = |v: f64| H - (v / max).clamp(0.0, 1.0) * (H - TOP);
    let _ = write!(
        out,
        "<div class=\"plot\"><span class=\"scale\">{}</span>\
         <svg viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{} over 15 minutes\">\
         <line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" vector-effect=\"non-scaling-stroke\"/>\
         <line class=\"grid\" x1=\"0\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\" vector-effect=\"non-scaling-stroke\"/>",
        esc(&format(signal.unit, max)),
        esc(signal.title),
    );
    // Gaps (no data) split the line; a lone point is a short dash.
    let mut segment: Vec<(f64, f64)> = Vec::new();
    let flush = |out: &mut String, segment: &mut Vec<(f64, f64)>| {
        if let [(px, py)] = segment[..] {
            segment.splice(.., [((px - 1.5).max(0.0), py), ((px + 1.5).min(W), py)]);
        }
        if segment.len() >= 2 {
            out.push_str("<polyline vector-effect=\"non-scaling-stroke\" points=\"");
            for (px, py) in segment.iter() {
                let _ = write!(out, "{px:.1},{py:.1} ");
            }
            out.push_str("\"/>");
        }
        segment.clear();
    };
    for &(t, v) in series {
        if t < start {
            continue;
        }
        if v.is_finite() {
            segment.push((x(t), y(v)));
        } else {
            flush(out, &mut segment);
        }
    }
    flush(out, &mut segment);
    if let Some(&(t, v)) = series.iter().rev().find(|p| p.1.is_finite()) {
        let _ = write!(
            out,
            "<title>{} at {}</title>",
            esc(&format(signal.unit, v)),
            esc(&jiff::Timestamp::from_second(t)
                .map(|t| t.to_string())
                .unwrap_or_default())
        );
    }
    out.push_str(
        "</svg><span class=\"axis-labels\"><span>15 min ago</span><span>now</span></span></div>",
    );
}

/// The smallest top of the scale, so a flat zero line sits at the bottom rather than
/// filling the chart.
fn floor(unit: Unit) -> f64 {
    match unit {
        Unit::PerSecond => 1.0,
        Unit::Ratio => 0.05,
        Unit::Millis => 10.0,
    }
}

pub fn format(unit: Unit, v: f64) -> String {
    match unit {
        Unit::PerSecond if v >= 100.0 => format!("{v:.0}/s"),
        Unit::PerSecond => format!("{v:.2}/s"),
        Unit::Ratio => format!("{:.1}%", v * 100.0),
        Unit::Millis if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Unit::Millis => format!("{v:.1} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::signals::SIGNALS;

    #[test]
    fn gaps_split_the_line_and_values_are_formatted() {
        let now = 10_000;
        let series = vec![
            (now - 60, 1.0),
            (now - 50, 2.0),
            (now - 40, f64::NAN),
            (now - 30, 4.0),
        ];
        let mut out = String::new();
        figure(&mut out, &SIGNALS[0], &series, now);
        // Two runs of data: two lines (the lone point drawn as a dash).
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("4.00/s"), "{out}");
        let mut empty = String::new();
        figure(&mut empty, &SIGNALS[3], &Vec::new(), now);
        assert!(empty.contains("no data"));
        assert_eq!(format(Unit::Ratio, 0.015), "1.5%");
        assert_eq!(format(Unit::Millis, 2500.0), "2.50 s");
    }
}
