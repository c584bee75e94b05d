//! Line charts as PNG, drawn directly into an RGB image (text from the public-domain 8x8
//! bitmap font of the `font8x8` crate): the report's figures, one panel per metric,
//! one line per feature combination, values in [0, 1] (kappa may dip below 0).

use font8x8::legacy::BASIC_LEGACY;
use image::{Rgb, RgbImage};

/// One line of a panel: (x, y) points in x order.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Colours by series index (colour-blind-safe, Okabe and Ito).
const COLOURS: [[u8; 3]; 7] = [
    [0, 114, 178],
    [230, 159, 0],
    [0, 158, 115],
    [213, 94, 0],
    [204, 121, 167],
    [86, 180, 233],
    [0, 0, 0],
];

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 320;
const LEFT: i32 = 56;
const RIGHT: i32 = 16;
const TOP: i32 = 28;
const BOTTOM: i32 = 44;
const TITLE_H: u32 = 28;
const LEGEND_H: u32 = 28;

/// A figure: a title, panels side by side (each a title and its series, sharing the x
/// label), and a legend of the first panel's series below.
pub fn figure(title: &str, panels: &[(&str, Vec<Series>)], xlabel: &str) -> RgbImage {
    let w = PANEL_W * panels.len().max(1) as u32;
    let h = TITLE_H + PANEL_H + LEGEND_H;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    text(&mut img, 12, 8, title, [0, 0, 0], 2);
    for (i, (name, series)) in panels.iter().enumerate() {
        panel(
            &mut img,
            (i as u32 * PANEL_W) as i32,
            TITLE_H as i32,
            name,
            series,
            xlabel,
        );
    }
    if let Some((_, series)) = panels.first() {
        let mut x = 12;
        let y = (TITLE_H + PANEL_H + 8) as i32;
        for (i, s) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            line(&mut img, (x, y + 4), (x + 24, y + 4), c);
            marker(&mut img, x + 12, y + 4, c);
            text(&mut img, x + 30, y, &s.name, [0, 0, 0], 1);
            x += 30 + 8 * s.name.len() as i32 + 20;
        }
    }
    img
}

fn panel(img: &mut RgbImage, x0: i32, y0: i32, name: &str, series: &[Series], xlabel: &str) {
    let (px0, px1) = (x0 + LEFT, x0 + PANEL_W as i32 - RIGHT);
    let (py0, py1) = (y0 + TOP, y0 + PANEL_H as i32 - BOTTOM);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let (mut xmin, mut xmax) = (
        xs.iter().cloned().fold(f64::INFINITY, f64::min),
        xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    if !xmin.is_finite() {
        (xmin, xmax) = (0.0, 1.0);
    }
    if xmax - xmin < 1.0 {
        (xmin, xmax) = (xmin - 0.5, xmax + 0.5);
    }
    let lowest = ys.iter().cloned().fold(0.0, f64::min);
    let ymin = (lowest / 0.2).floor() * 0.2;
    let ymax = 1.0;
    let sx = |x: f64| px0 + ((x - xmin) / (xmax - xmin) * (px1 - px0) as f64).round() as i32;
    let sy = |y: f64| py1 - ((y - ymin) / (ymax - ymin) * (py1 - py0) as f64).round() as i32;

    text(img, x0 + LEFT, y0 + 8, name, [0, 0, 0], 1);
    // Grid and y ticks every 0.2.
    let mut t = ymin;
    while t <= ymax + 1e-9 {
        let y = sy(t);
        line(img, (px0, y), (px1, y), [225, 225, 225]);
        let label = format!("{t:.1}");
        text(
            img,
            px0 - 8 * label.len() as i32 - 6,
            y - 4,
            &label,
            [60, 60, 60],
            1,
        );
        t += 0.2;
    }
    // x ticks at whole numbers (every other one when crowded).
    let step = if xmax - xmin > 12.0 { 2.0 } else { 1.0 };
    let mut t = xmin.ceil();
    while t <= xmax + 1e-9 {
        let x = sx(t);
        line(img, (x, py1), (x, py1 + 4), [0, 0, 0]);
        let label = format!("{t:.0}");
        text(
            img,
            x - 4 * label.len() as i32,
            py1 + 8,
            &label,
            [60, 60, 60],
            1,
        );
        t += step;
    }
    line(img, (px0, py0), (px0, py1), [0, 0, 0]);
    line(img, (px0, py1), (px1, py1), [0, 0, 0]);
    let lw = 8 * xlabel.len() as i32;
    text(img, (px0 + px1 - lw) / 2, py1 + 24, xlabel, [0, 0, 0], 1);
    for (i, s) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        for pair in s.points.windows(2) {
            line(
                img,
                (sx(pair[0].0), sy(pair[0].1)),
                (sx(pair[1].0), sy(pair[1].1)),
                c,
            );
        }
        for &(x, y) in &s.points {
            marker(img, sx(x), sy(y), c);
        }
    }
}

fn put(img: &mut RgbImage, x: i32, y: i32, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

/// A line two pixels wide (steps along the longer axis).
fn line(img: &mut RgbImage, (x0, y0): (i32, i32), (x1, y1): (i32, i32), c: [u8; 3]) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for i in 0..=n {
        let x = x0 + ((x1 - x0) as f64 * i as f64 / n as f64).round() as i32;
        let y = y0 + ((y1 - y0) as f64 * i as f64 / n as f64).round() as i32;
        put(img, x, y, c);
        if (x1 - x0).abs() >= (y1 - y0).abs() {
            put(img, x, y + 1, c);
        } else {
            put(img, x + 1, y, c);
        }
    }
}

fn marker(img: &mut RgbImage, x: i32, y: i32, c: [u8; 3]) {
    for dy in -3..=3 {
        for dx in -3..=3 {
            put(img, x + dx, y + dy, c);
        }
    }
}

/// ASCII text with its top-left corner at (x, y), each font pixel `scale` pixels wide.
fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, c: [u8; 3], scale: i32) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = BASIC_LEGACY[if (ch as u32) < 128 {
            ch as usize
        } else {
            b'?' as usize
        }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                img,
                                x + (i as i32 * 8 + col) * scale + dx,
                                y + row as i32 * scale + dy,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The figure as PNG bytes.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}
