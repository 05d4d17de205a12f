//! The PNG of `kefu bench compare`: answer latency against concurrent conversations.
//!
//! plotters draws text with ab_glyph from a TrueType font it is given (no fontconfig, no system
//! library): DejaVu Sans from apt's fonts-dejavu-core, or the file in `KEFU_PLOT_FONT`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plotters::prelude::*;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// One line of the plot: a name and its (concurrency, seconds) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn font_file() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("KEFU_PLOT_FONT") {
        return Ok(PathBuf::from(p));
    }
    FONT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context(
            "no font to draw the plot's text: install DejaVu Sans (apt install fonts-dejavu-core) or set KEFU_PLOT_FONT to a .ttf file",
        )
}

/// plotters keeps registered fonts for the life of the process, so each is read once.
fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = font_file().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{} is not a TrueType font", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Line colours that stay apart on white (matplotlib's first four).
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Writes a 900×560 PNG: seconds against concurrent conversations. The x axis is in doublings
/// (1, 2, 4 … 32 equally spaced), since the interesting steps are 1, 8 and 32.
pub fn latency(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    register_font()?;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    if all.is_empty() {
        bail!("nothing to plot");
    }
    let x_max = all.iter().map(|p| p.0.max(1.0).log2()).fold(1.0, f64::max);
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.3..x_max + 0.3, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("concurrent conversations")
            .y_desc("seconds")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| format!("{:.0}", x.exp2()))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(("sans-serif", 15))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let style = ShapeStyle::from(color).stroke_width(2);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (x.max(1.0).log2(), y))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, ShapeStyle::from(color).filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_the_points() {
        if font_file().is_err() {
            // .ci/run installs the font; a machine without it gets the error message instead.
            eprintln!("skipped: no DejaVu Sans on this machine");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.png");
        let series = vec![
            Series {
                name: "answer p50".into(),
                points: vec![(1.0, 2.0), (8.0, 5.0), (32.0, 19.0)],
            },
            Series {
                name: "first token p50".into(),
                points: vec![(1.0, 0.4), (8.0, 1.5), (32.0, 9.0)],
            },
        ];
        latency(&path, "answer latency", &series).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Width and height from the IHDR chunk.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 900);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 560);
        // Not a blank image: the lines and text leave many distinct bytes after compression.
        assert!(png.len() > 5_000, "{} bytes", png.len());
        assert!(latency(&path, "empty", &[]).is_err());
    }
}
