//! Folders of real images: `DIR/images/*.png` and `DIR/masks/*.png` with matching names.
//!
//! - Images: 8- or 16-bit grayscale PNG (colour PNGs are converted to luma), mapped to
//!   [0, 1] by dividing by the type's maximum (255 or 65535).
//! - Masks: label indices in an 8- or 16-bit grayscale PNG, or, with a palette, RGB colours
//!   mapped through a CSV with header `r,g,b,label`.
//! - Patients: the file name's prefix before the first `_`, unless `DIR/manifest.csv`
//!   (header `name,patient[,group[,severity]]`) names them; `group` is normal or a disease's
//!   name (effusion and septal are the phantom's; any other name of letters, digits, `-`
//!   and `_` is a disease of its own).
//! - Images of another size are resized to the network's input: bilinear for images,
//!   nearest for masks.
//!
//! Every problem is found before anything is trained and reported together, one line per
//! offending file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, Luma};

use super::{resize_bilinear, resize_nearest, Dataset, Group, Sample};
use crate::{bail, Error, Result};

/// RGB colour -> label index.
pub type Palette = HashMap<[u8; 3], u8>;

/// A CSV row: its line number and its fields.
type CsvRow = (u64, Vec<String>);

/// The rows of a CSV file with a header, read strictly: a UTF-8 byte-order mark (as
/// spreadsheets save) and quoted fields are accepted, fields are trimmed, blank lines are
/// skipped. Returns the lowercased header and (line number, fields) of every row.
fn read_csv(path: &Path, what: &str) -> Result<(Vec<String>, Vec<CsvRow>)> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(&bytes[..]);
    let bad = |e: csv::Error| Error(format!("{what} {}: {e}", path.display()));
    let header: Vec<String> = r
        .headers()
        .map_err(bad)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(bad)?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok((header, rows))
}

/// Read a palette CSV (`r,g,b,label`; several colours may map to one label, but a colour
/// may be listed only once).
pub fn read_palette(path: &Path, labels: usize) -> Result<Palette> {
    let (header, rows) = read_csv(path, "palette")?;
    if header != ["r", "g", "b", "label"] {
        bail!(
            "palette {}: the first line must be the header r,g,b,label",
            path.display()
        );
    }
    let mut p = Palette::new();
    let mut seen: HashMap<[u8; 3], u64> = HashMap::new();
    for (line, f) in rows {
        let nums: Option<Vec<u32>> = f.iter().map(|s| s.parse().ok()).collect();
        match nums.as_deref() {
            Some(&[r, g, b, l]) if r < 256 && g < 256 && b < 256 => {
                if l as usize >= labels {
                    bail!(
                        "palette {} line {line}: label {l} is not below the label count {labels}",
                        path.display(),
                    );
                }
                let c = [r as u8, g as u8, b as u8];
                if let Some(first) = seen.insert(c, line) {
                    bail!(
                        "palette {}: colour {r},{g},{b} is listed on line {first} and again on line {line}; list each colour once",
                        path.display()
                    );
                }
                p.insert(c, l as u8);
            }
            _ => bail!(
                "palette {} line {line}: expected r,g,b,label with colours 0-255, got '{}'",
                path.display(),
                f.join(",")
            ),
        }
    }
    if p.is_empty() {
        bail!("palette {} lists no colours", path.display());
    }
    Ok(p)
}

struct ManifestRow {
    patient: String,
    group: Group,
    severity: Option<f32>,
}

/// Read `manifest.csv` (`name,patient[,group[,severity]]`), keyed by the name's stem. A
/// name listed twice, an unknown group or a severity that is not a number is refused,
/// naming the lines.
fn read_manifest(path: &Path) -> Result<HashMap<String, ManifestRow>> {
    let (header, lines) = read_csv(path, "manifest")?;
    if header.is_empty() && lines.is_empty() {
        bail!("{} is empty", path.display());
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(cn), Some(cp)) = (col("name"), col("patient")) else {
        bail!(
            "{}: the header must have the columns name and patient (and optionally group, severity)",
            path.display()
        );
    };
    let (cg, cs) = (col("group"), col("severity"));
    let mut rows = HashMap::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (i, f) in lines {
        let get = |c: usize| f.get(c).map_or("", String::as_str);
        let name = get(cn);
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if stem.is_empty() || get(cp).is_empty() {
            bail!(
                "{} line {i}: a row needs a name and a patient, got '{}'",
                path.display(),
                f.join(",")
            );
        }
        if let Some(first) = seen.insert(stem.clone(), i) {
            bail!(
                "{}: image {stem} is listed on line {first} and again on line {i}; list each image once",
                path.display()
            );
        }
        let group = match cg.map(get) {
            None => Group::Normal,
            Some(g) => Group::parse(g).ok_or_else(|| {
                Error(format!(
                    "{} line {i}: group '{g}' must be normal or a disease name of letters, digits, '-' and '_'",
                    path.display(),
                ))
            })?,
        };
        let severity =
            match cs.map(get).filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(s.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(
                    || {
                        Error(format!(
                    "{} line {i}: severity '{s}' is not a number (leave it empty when unknown)",
                    path.display()
                ))
                    },
                )?),
            };
        rows.insert(
            stem,
            ManifestRow {
                patient: get(cp).to_string(),
                group,
                severity,
            },
        );
    }
    Ok(rows)
}

fn pngs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    out.sort();
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Load `dir` at `size x size` with `labels` labels named `label_names`.
pub fn load(
    dir: &Path,
    size: usize,
    label_names: &[String],
    palette: Option<&Palette>,
) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!("data folder {} does not exist", dir.display());
    }
    let (idir, mdir) = (dir.join("images"), dir.join("masks"));
    for d in [&idir, &mdir] {
        if !d.is_dir() {
            bail!(
                "{} is missing: a data folder holds images/*.png and masks/*.png with matching names",
                d.display()
            );
        }
    }
    let manifest_path = dir.join("manifest.csv");
    let manifest = if manifest_path.exists() {
        Some(read_manifest(&manifest_path)?)
    } else {
        None
    };
    let images = pngs(&idir)?;
    if images.is_empty() {
        bail!("{} holds no .png images", idir.display());
    }
    crate::limits::check_size("the input size", size)?;
    crate::limits::check_host(
        &format!("{} images at {size}x{size}", images.len()),
        images.len() as u128 * (size as u128).pow(2) * 5,
    )?;
    let masks: HashMap<String, PathBuf> = pngs(&mdir)?.into_iter().map(|p| (stem(&p), p)).collect();
    let mut problems = Vec::new();
    let mut samples = Vec::new();
    for ip in &images {
        let name = stem(ip);
        let Some(mp) = masks.get(&name) else {
            problems.push(format!(
                "{}: no mask {}",
                ip.display(),
                mdir.join(format!("{name}.png")).display()
            ));
            continue;
        };
        let (patient, group, severity) = match &manifest {
            Some(m) => match m.get(&name) {
                Some(row) => (row.patient.clone(), row.group, row.severity),
                None => {
                    problems.push(format!(
                        "{}: not listed in {}",
                        ip.display(),
                        manifest_path.display()
                    ));
                    continue;
                }
            },
            None => (
                name.split('_').next().unwrap_or(&name).to_string(),
                Group::Normal,
                None,
            ),
        };
        match load_pair(ip, mp, size, label_names.len(), palette) {
            Ok((image, label)) => samples.push(Sample {
                name,
                patient,
                group,
                severity,
                image,
                label,
            }),
            Err(e) => problems.push(e.0),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        bail!(
            "{n} problem{} in {}:\n  {}",
            if n == 1 { "" } else { "s" },
            dir.display(),
            problems.join("\n  ")
        );
    }
    Ok(Dataset {
        size,
        label_names: label_names.to_vec(),
        normalisation: "PNG intensities divided by the type's maximum (255 or 65535)".into(),
        source: dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        manifest_patients: manifest.is_some(),
        samples,
    })
}

/// A decoded image's gray levels in [0, 1]: 8- and 16-bit grayscale divided by the type's
/// maximum; anything else converted to 16-bit luma first.
pub fn intensities(img: &DynamicImage) -> Vec<f32> {
    match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        other => other
            .to_luma16()
            .as_raw()
            .iter()
            .map(|&v| v as f32 / 65535.0)
            .collect(),
    }
}

fn open(path: &Path, what: &str) -> Result<DynamicImage> {
    crate::limits::open_image(path)
        .map_err(|e| Error(format!("{}: unreadable {what}: {e}", path.display())))
}

/// One image and its mask, checked and resized.
fn load_pair(
    ip: &Path,
    mp: &Path,
    size: usize,
    labels: usize,
    palette: Option<&Palette>,
) -> Result<(Vec<f32>, Vec<u8>)> {
    let img = open(ip, "image")?;
    let mask = open(mp, "mask")?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (mask.width() as usize, mask.height() as usize) != (w, h) {
        bail!(
            "{}: image is {w}x{h} but its mask {} is {}x{}",
            ip.display(),
            mp.display(),
            mask.width(),
            mask.height()
        );
    }
    let pixels = intensities(&img);
    let label = mask_labels(&mask, mp, labels, palette)?;
    let image = if (w, h) == (size, size) {
        pixels
    } else {
        resize_bilinear(&pixels, w, h, size)
    };
    let label = if (w, h) == (size, size) {
        label
    } else {
        resize_nearest(&label, (w, h), (size, size))
    };
    Ok((image, label))
}

fn mask_labels(
    mask: &DynamicImage,
    mp: &Path,
    labels: usize,
    palette: Option<&Palette>,
) -> Result<Vec<u8>> {
    let w = mask.width() as usize;
    let at = |i: usize| format!("pixel ({}, {})", i % w, i / w);
    if let Some(pal) = palette {
        let rgb = mask.to_rgb8();
        let mut out = Vec::with_capacity(rgb.len() / 3);
        for (i, px) in rgb.pixels().enumerate() {
            match pal.get(&px.0) {
                Some(&l) => out.push(l),
                None => bail!(
                    "{}: colour {},{},{} at {} is not in the palette",
                    mp.display(),
                    px.0[0],
                    px.0[1],
                    px.0[2],
                    at(i)
                ),
            }
        }
        return Ok(out);
    }
    let values: Vec<u32> = match mask {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        _ => bail!(
            "{}: a colour mask needs --palette FILE (a CSV r,g,b,label) to map its colours to labels",
            mp.display()
        ),
    };
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if v as usize >= labels {
            bail!(
                "{}: label {v} at {} is not below the label count {labels}",
                mp.display(),
                at(i)
            );
        }
        out.push(v as u8);
    }
    Ok(out)
}

/// Write a dataset in the folder format: 16-bit images, 8-bit label masks and a
/// `manifest.csv` (name, patient, group, severity).
pub fn write(ds: &Dataset, dir: &Path) -> Result<()> {
    let (idir, mdir) = (dir.join("images"), dir.join("masks"));
    for d in [&idir, &mdir] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error(format!("cannot create {}: {e}", d.display())))?;
    }
    let s = ds.size as u32;
    let mut manifest = String::from("name,patient,group,severity\n");
    for smp in &ds.samples {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(
            s,
            s,
            smp.image
                .iter()
                .map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect(),
        )
        .expect("a size x size buffer");
        let mask: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_raw(s, s, smp.label.clone()).expect("a size x size buffer");
        let ip = idir.join(format!("{}.png", smp.name));
        img.save(&ip)
            .map_err(|e| Error(format!("cannot write {}: {e}", ip.display())))?;
        let mp = mdir.join(format!("{}.png", smp.name));
        mask.save(&mp)
            .map_err(|e| Error(format!("cannot write {}: {e}", mp.display())))?;
        manifest.push_str(&format!(
            "{},{},{},{}\n",
            smp.name,
            smp.patient,
            smp.group.name(),
            smp.severity.map(|v| format!("{v:.4}")).unwrap_or_default()
        ));
    }
    let mp = dir.join("manifest.csv");
    std::fs::write(&mp, manifest).map_err(|e| Error(format!("cannot write {}: {e}", mp.display())))
}
