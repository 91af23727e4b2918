//! `shoal simulate --plot FILE.svg`: lag seconds (top) and replicas (bottom) over time, one
//! line per policy, on one SVG.

use std::path::{Path, PathBuf};

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

use super::sim::{Run, Which};

/// At most this many points per line: each point is the worst second of its slice.
const POINTS: usize = 1200;

const COLOURS: [RGBColor; 2] = [RGBColor(0, 114, 178), RGBColor(213, 94, 0)];

/// A plot that could not be drawn, with the drawing library's error.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {}: {source}", .path.display())]
pub struct PlotError {
    path: PathBuf,
    #[source]
    source: DrawingAreaErrorKind<std::io::Error>,
}

/// Draws the runs into an SVG file at `path`.
pub fn draw(path: &Path, title: &str, runs: &[(Which, &Run)]) -> Result<(), PlotError> {
    let fail = |source| PlotError {
        path: path.to_path_buf(),
        source,
    };
    let duration = runs
        .iter()
        .map(|(_, r)| r.seconds.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let step = duration.div_ceil(POINTS).max(1);
    let lag_top = runs
        .iter()
        .map(|(_, r)| r.peak_lag_seconds)
        .fold(1.0, f64::max)
        * 1.05;
    let replicas_top = runs
        .iter()
        .flat_map(|(_, r)| r.seconds.iter().map(|s| s.1.max(s.2)))
        .max()
        .unwrap_or(1)
        .max(1)
        + 1;

    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(fail)?;
    let (upper, lower) = root.split_vertically(360);

    let mut lag = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption(
            "lag seconds (oldest unconsumed message)",
            ("sans-serif", 16),
        )
        .build_cartesian_2d(0f64..duration as f64, 0f64..lag_top)
        .map_err(fail)?;
    lag.configure_mesh()
        .x_desc("t (s)")
        .y_desc("lag (s)")
        .draw()
        .map_err(fail)?;
    for (i, (which, run)) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points = run.seconds.chunks(step).enumerate().map(|(j, c)| {
            let worst = c.iter().map(|s| s.0).fold(0.0, f64::max);
            ((j * step) as f64, worst)
        });
        lag.draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(fail)?
            .label(which.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    lag.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;

    let mut reps = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption(
            "replicas: desired (solid) and serving (thin)",
            ("sans-serif", 16),
        )
        .build_cartesian_2d(0f64..duration as f64, 0f64..f64::from(replicas_top))
        .map_err(fail)?;
    reps.configure_mesh()
        .x_desc("t (s)")
        .y_desc("replicas")
        .draw()
        .map_err(fail)?;
    for (i, (which, run)) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for (serving, width) in [(false, 2), (true, 1)] {
            let points = run.timeline.iter().flat_map(|p| {
                let v = if serving { p[2] } else { p[1] } as f64;
                [(p[0] as f64, v)]
            });
            // Steps: hold each value until the next change.
            let mut stepped: Vec<(f64, f64)> = Vec::new();
            for (x, y) in points {
                if let Some(&(_, prev)) = stepped.last() {
                    stepped.push((x, prev));
                }
                stepped.push((x, y));
            }
            if let Some(&(_, y)) = stepped.last() {
                stepped.push((duration as f64, y));
            }
            let series = reps
                .draw_series(LineSeries::new(stepped, colour.stroke_width(width)))
                .map_err(fail)?;
            if !serving {
                series
                    .label(which.name())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
            }
        }
    }
    reps.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}
