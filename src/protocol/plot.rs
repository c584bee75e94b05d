//! The report's figures, drawn with `plotters` as SVG and PNG (text in DejaVu Sans, built
//! in from the `dejavu` crate, so no system font is needed): one panel per metric, one
//! series per feature combination, each the mean over repetitions with a shaded band
//! (what the band is, the caption says), a marker and a line style of its own, and points
//! only at the k values measured (the x axis is categorical: no line suggests a value at
//! an unmeasured k). The data of every point goes into a CSV beside the figure.

use plotters::coord::Shift;
use plotters::prelude::*;

/// One measured point: k, the mean, and the band around it (low, high), if any.
#[derive(Clone, Debug)]
pub struct Point {
    pub k: usize,
    pub mean: f64,
    pub band: Option<(f64, f64)>,
    /// Repetitions behind the mean.
    pub reps: usize,
}

/// One series of a panel: a name and its points in k order.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A panel: a metric and its series.
#[derive(Clone, Debug)]
pub struct Panel {
    pub metric: String,
    pub series: Vec<Series>,
}

/// A figure: a title, a caption (what the band is, how many repetitions), the measured k
/// values, and panels laid out two by two.
#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    pub caption: String,
    pub ks: Vec<usize>,
    pub panels: Vec<Panel>,
}

/// Colours by series index (colour-blind-safe, Okabe and Ito).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

const PANEL_W: u32 = 560;
const PANEL_H: u32 = 400;
const TITLE_H: u32 = 44;
const CAPTION_H: u32 = 64;
const FONT: &str = "sans-serif";

fn size(f: &Figure) -> (u32, u32) {
    let cols = f.panels.len().clamp(1, 2) as u32;
    let rows = f.panels.len().div_ceil(2).max(1) as u32;
    (cols * PANEL_W, TITLE_H + rows * PANEL_H + CAPTION_H)
}

/// Register the built-in font once (plotters' text needs one for bitmaps).
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// The figure as an SVG document.
pub fn svg(f: &Figure) -> Result<String, String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size(f)).into_drawing_area();
        draw(&root, f)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// The figure as PNG bytes.
pub fn png(f: &Figure) -> Result<Vec<u8>, String> {
    register_font();
    let (w, h) = size(f);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root, f)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let img =
        image::RgbImage::from_raw(w, h, buf).ok_or("the figure's buffer has the wrong size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The figure's data: one row per (panel, series, k).
pub fn csv(f: &Figure) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "metric", "series", "k", "reps", "mean", "band_lo", "band_hi",
    ]);
    for p in &f.panels {
        for s in &p.series {
            for pt in &s.points {
                let (lo, hi) = pt.band.map_or((String::new(), String::new()), |(l, h)| {
                    (format!("{l:.4}"), format!("{h:.4}"))
                });
                let _ = w.write_record([
                    p.metric.clone(),
                    s.name.clone(),
                    pt.k.to_string(),
                    pt.reps.to_string(),
                    format!("{:.4}", pt.mean),
                    lo,
                    hi,
                ]);
            }
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figure) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(TITLE_H);
    top.draw_text(&f.title, &(FONT, 24).into_font().color(&BLACK), (16, 10))
        .map_err(err)?;
    let (grid, bottom) = rest.split_vertically(h - TITLE_H - CAPTION_H);
    // The caption, wrapped at about the figure's width.
    let per_line = (w as usize / 8).max(40);
    let mut line = String::new();
    let mut y = 8;
    for word in f.caption.split_whitespace() {
        if line.len() + word.len() + 1 > per_line {
            bottom
                .draw_text(&line, &(FONT, 15).into_font().color(&BLACK), (16, y))
                .map_err(err)?;
            y += 20;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    bottom
        .draw_text(&line, &(FONT, 15).into_font().color(&BLACK), (16, y))
        .map_err(err)?;
    let rows = f.panels.len().div_ceil(2).max(1);
    let cols = f.panels.len().clamp(1, 2);
    let areas = grid.split_evenly((rows, cols));
    let n = f.ks.len().max(1);
    for (pi, (area, panel)) in areas.iter().zip(&f.panels).enumerate() {
        let x_of = |k: usize| f.ks.iter().position(|&m| m == k).unwrap_or(0) as f64;
        let lowest = panel
            .series
            .iter()
            .flat_map(|s| &s.points)
            .map(|p| p.band.map_or(p.mean, |b| b.0).min(p.mean))
            .fold(0.0f64, f64::min);
        let ylo = if lowest < 0.0 {
            (lowest * 10.0).floor() / 10.0
        } else {
            0.0
        };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.metric, (FONT, 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), ylo..1.02f64)
            .map_err(err)?;
        let ks = f.ks.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_labels(11)
            .x_labels(n)
            .x_label_formatter(&move |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ks.len() {
                    ks[i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y: &f64| format!("{:.0}%", 100.0 * y))
            .x_desc("positive training images (k)")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        for (si, s) in panel.series.iter().enumerate() {
            let c = COLOURS[si % COLOURS.len()];
            let band: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .filter_map(|p| p.band.map(|(lo, hi)| (x_of(p.k), lo, hi)))
                .collect();
            if band.len() > 1 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|&(x, _, hi)| (x, hi)).collect();
                poly.extend(band.iter().rev().map(|&(x, lo, _)| (x, lo)));
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.12).filled())))
                    .map_err(err)?;
            } else if let Some(&(x, lo, hi)) = band.first() {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        c.mix(0.5).stroke_width(6),
                    )))
                    .map_err(err)?;
            }
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (x_of(p.k), p.mean)).collect();
            let style = c.stroke_width(2);
            if si % 2 == 0 {
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                    .map_err(err)?;
            }
            // A marker per series (circle, triangle, cross, then hollow circle and
            // triangle, then a filled square), and in the first panel's legend the
            // series' line and marker.
            let name = s.name.clone();
            macro_rules! markers {
                ($make:expr) => {{
                    let make = $make;
                    let anno = chart
                        .draw_series(pts.iter().map(|&p| EmptyElement::at(p) + make(c, (0, 0))))
                        .map_err(err)?;
                    if pi == 0 {
                        anno.label(name).legend(move |(x, y)| {
                            EmptyElement::at((x, y))
                                + PathElement::new(vec![(-2, 0), (22, 0)], c.stroke_width(2))
                                + make(c, (10, 0))
                        });
                    }
                }};
            }
            match si % 6 {
                0 => markers!(|c: RGBColor, at| Circle::new(at, 4, c.filled())),
                1 => markers!(|c: RGBColor, at| TriangleMarker::new(at, 6, c.filled())),
                2 => markers!(|c: RGBColor, at| Cross::new(at, 5, c.stroke_width(2))),
                3 => markers!(|c: RGBColor, at| Circle::new(at, 5, c.stroke_width(2))),
                4 => markers!(|c: RGBColor, at| TriangleMarker::new(at, 7, c.stroke_width(2))),
                _ => markers!(|c: RGBColor, at: (i32, i32)| Rectangle::new(
                    [(at.0 - 4, at.1 - 4), (at.0 + 4, at.1 + 4)],
                    c.filled()
                )),
            }
        }
        if pi == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .label_font((FONT, 13))
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Colours of the overlay, by label (the chd-ct-mini palette; then the figures' colours).
const LABEL_COLOURS: [[u8; 3]; 6] = [
    [0, 0, 0],
    [255, 255, 0],
    [0, 0, 255],
    [0, 255, 0],
    [255, 0, 0],
    [255, 0, 255],
];

fn label_colour(l: usize) -> [u8; 3] {
    LABEL_COLOURS.get(l).copied().unwrap_or_else(|| {
        let c = COLOURS[(l - LABEL_COLOURS.len()) % COLOURS.len()];
        [c.0, c.1, c.2]
    })
}

/// A segmentation drawn over its image: each labelled pixel mixed 45% with its label's
/// colour (background left gray), at the image's `w x h`, with a legend of the labels'
/// colours and names in a strip below it.
pub fn overlay(
    pixels: &[f32],
    labels: &[u8],
    w: usize,
    h: usize,
    names: &[String],
) -> Result<image::RgbImage, String> {
    const ROW: u32 = 22;
    let per_row = ((w as u32).max(240) / 120).max(1) as usize;
    let rows = (names.len().saturating_sub(1)).div_ceil(per_row).max(1) as u32;
    let (fw, fh) = ((w as u32).max(240), h as u32 + rows * ROW + 6);
    let mut buf = vec![255u8; (fw * fh * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let g = pixels[i].clamp(0.0, 1.0) * 255.0;
            let l = labels[i] as usize;
            let px = if l == 0 {
                [g as u8; 3]
            } else {
                let c = label_colour(l);
                [0, 1, 2].map(|k| (0.55 * g + 0.45 * c[k] as f32) as u8)
            };
            let o = ((y as u32 * fw + x as u32) * 3) as usize;
            buf[o..o + 3].copy_from_slice(&px);
        }
    }
    register_font();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (fw, fh)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        for (j, name) in names.iter().enumerate().skip(1) {
            let (r, c) = ((j - 1) / per_row, (j - 1) % per_row);
            let (x, y) = (6 + c as i32 * 120, h as i32 + 6 + r as i32 * ROW as i32);
            let [cr, cg, cb] = label_colour(j);
            root.draw(&Rectangle::new(
                [(x, y + 2), (x + 14, y + 16)],
                RGBColor(cr, cg, cb).filled(),
            ))
            .map_err(err)?;
            root.draw(&Rectangle::new([(x, y + 2), (x + 14, y + 16)], BLACK))
                .map_err(err)?;
            root.draw_text(
                &format!("{j} {name}"),
                &(FONT, 14).into_font().color(&BLACK),
                (x + 20, y + 2),
            )
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    image::RgbImage::from_raw(fw, fh, buf)
        .ok_or_else(|| "the overlay's buffer has the wrong size".into())
}
