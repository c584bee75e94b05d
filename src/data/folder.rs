//! Data folders: `DIR/images/` and `DIR/masks/` with matching names.
//!
//! - 2-D images: PNG, JPEG or TIFF, grayscale (colour is converted to luma), mapped to
//!   [0, 1] by dividing by the type's maximum (255 or 65535). Their masks: label indices in
//!   an 8- or 16-bit grayscale PNG or TIFF, or, with a palette, RGB colours mapped through a
//!   CSV with header `r,g,b,label`.
//! - Volumes: NIfTI (`NAME.nii`, `NAME.nii.gz`) or a DICOM series (a folder `NAME/` of
//!   its files), with a label volume of the same name in `masks/` (NIfTI, or a DICOM
//!   series of label values; a NIfTI mask of a DICOM series must be in the series' voxel
//!   order: x the column, y the row, z the slice in position order); rescaled, windowed and sliced as [`ReadOptions`] says (see
//!   [`super::volume`]); slice k is named `NAME_z00k` (the axis's letter).
//! - Patients: a 2-D file's name up to its first `_`, a volume's name, unless
//!   `DIR/manifest.csv` (header `name,patient[,group[,severity]]`) names them (a row may name
//!   a volume, for all its slices, or one slice); `group` is the normal group (`normal`, or
//!   the name given as [`ReadOptions::normal`]) or a disease's name (effusion and septal are
//!   the phantom's; any other name of letters, digits, `-` and `_` is a disease of its own).
//! - Every image is fitted to the network's input keeping its aspect ratio (padded to a
//!   square with 0, then area-averaged when shrinking, bilinear when enlarging; masks by
//!   nearest neighbour): see [`super::fit_image`].
//!
//! Every problem is found before anything is trained and reported together, one line per
//! offending file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, Luma};

use super::volume::{is_nifti, nifti_stem, read_volume, Axis, Volume, Window};
use super::{fit_image, fit_labels, fit_square, Dataset, Group, Sample};
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
fn read_manifest(path: &Path, normal: &str) -> Result<HashMap<String, ManifestRow>> {
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
            Some(g) if g.trim().eq_ignore_ascii_case(normal.trim()) => Group::Normal,
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

/// The extensions of 2-D image files (masks: the lossless ones, PNG and TIFF).
const FLAT: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// The image files of a folder, sorted: 2-D files and NIfTI volumes.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            is_volume(p)
                || p.extension()
                    .is_some_and(|x| FLAT.iter().any(|f| x.eq_ignore_ascii_case(f)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `p` is a volume: a NIfTI file or a folder (a DICOM series).
fn is_volume(p: &Path) -> bool {
    is_nifti(p) || p.is_dir()
}

/// The name that pairs an image with its mask: the file name without its extension
/// (`.nii.gz` counted as one), or a DICOM series' folder name.
fn key(p: &Path) -> String {
    if p.is_dir() {
        p.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    } else if is_nifti(p) {
        nifti_stem(p)
    } else {
        p.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    }
}

/// How volumes become network input: the intensity window and the slicing axis (2-D
/// files are divided by their type's maximum).
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub window: Window,
    pub axis: Axis,
    /// The manifest's name of the normal group (`normal` by default; any case).
    pub normal: String,
    /// Some(D): each volume is one sample of D slices (the 3-D networks' input), its
    /// middle D slices when it has more, padded with empty slices (intensity 0, label 0)
    /// at both ends when it has fewer; in a folder of 2-D images, each patient's images
    /// in name order are its slices. None: every slice is a sample.
    pub depth: Option<usize>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            window: Window::default(),
            axis: Axis::Z,
            normal: "normal".into(),
            depth: None,
        }
    }
}

impl ReadOptions {
    /// What the model's `input_normalisation` records for volumes read this way.
    pub fn describe_volumes(&self) -> String {
        format!(
            "volumes (NIfTI, DICOM): stored values rescaled by their slope and intercept, window {} mapped to [0, 1], slices along {}",
            self.window.describe(),
            self.axis.name()
        )
    }
}

impl ReadOptions {
    /// The options a model's `input_normalisation` records (see
    /// [`ReadOptions::describe_volumes`]), if it was trained on volumes.
    pub fn from_normalisation(s: &str) -> Option<ReadOptions> {
        let w = s.split("window ").nth(1)?.split(" mapped").next()?;
        let a = s.split("slices along ").nth(1)?.get(..1)?;
        Some(ReadOptions {
            window: Window::parse(w).ok()?,
            axis: Axis::parse(a).ok()?,
            ..ReadOptions::default()
        })
    }
}

/// How 2-D image files become network input.
pub const FLAT_NORMALISATION: &str = "PNG intensities divided by the type's maximum (255 or 65535)";

/// One slice or 2-D image, fitted to the network's size.
struct Loaded {
    name: String,
    image: Vec<f32>,
    label: Vec<u8>,
    /// Pixel size at the network's size (columns, rows), where the file gives one.
    spacing: Option<(f64, f64)>,
}

/// Load `dir` at `size x size` with `labels` labels named `label_names`, volumes read
/// with the default [`ReadOptions`].
pub fn load(
    dir: &Path,
    size: usize,
    label_names: &[String],
    palette: Option<&Palette>,
) -> Result<Dataset> {
    load_with(dir, size, label_names, palette, &ReadOptions::default())
}

/// Load `dir` at `size x size`: images (PNG, JPEG, TIFF, or NIfTI volumes, sliced) and
/// their masks (PNG or TIFF label maps, or NIfTI label volumes) with matching names.
pub fn load_with(
    dir: &Path,
    size: usize,
    label_names: &[String],
    palette: Option<&Palette>,
    opts: &ReadOptions,
) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!("data folder {} does not exist", dir.display());
    }
    let (idir, mdir) = (dir.join("images"), dir.join("masks"));
    for d in [&idir, &mdir] {
        if !d.is_dir() {
            bail!(
                "{} is missing: a data folder holds images/ and masks/ with matching names (PNG, JPEG or TIFF images with PNG or TIFF masks, or NIfTI volumes with NIfTI label volumes)",
                d.display()
            );
        }
    }
    let manifest_path = dir.join("manifest.csv");
    let manifest = if manifest_path.exists() {
        Some(read_manifest(&manifest_path, &opts.normal)?)
    } else {
        None
    };
    let images = image_files(&idir)?;
    if images.is_empty() {
        bail!(
            "{} holds no images (.png, .jpg, .tif, .nii, .nii.gz, or DICOM series folders)",
            idir.display()
        );
    }
    crate::limits::check_size("the input size", size)?;
    let mut problems = Vec::new();
    let mut masks: HashMap<String, PathBuf> = HashMap::new();
    for p in image_files(&mdir)? {
        if let Some(other) = masks.insert(key(&p), p.clone()) {
            problems.push(format!(
                "{} and {}: two masks for one image",
                other.display(),
                p.display()
            ));
        }
    }
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut samples = Vec::new();
    let mut volumes = false;
    let mut flat = false;
    let mut bytes: u128 = 0;
    for ip in &images {
        let name = key(ip);
        if let Some(first) = seen.insert(name.clone(), ip) {
            problems.push(format!(
                "{} and {}: two images with one name",
                first.display(),
                ip.display()
            ));
            continue;
        }
        let Some(mp) = masks.get(&name) else {
            problems.push(format!(
                "{}: no mask {} (or .nii.gz, .tif)",
                ip.display(),
                mdir.join(if is_volume(ip) {
                    format!("{name}.nii.gz")
                } else {
                    format!("{name}.png")
                })
                .display()
            ));
            continue;
        };
        let lossy = |p: &Path| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
        };
        if lossy(mp) {
            problems.push(format!(
                "{}: a mask must be lossless (PNG, TIFF or NIfTI); JPEG changes label values",
                mp.display()
            ));
            continue;
        }
        let loaded = if is_volume(ip) {
            volumes = true;
            load_volume_pair(ip, mp, size, label_names.len(), opts).map(|slices| match opts.depth {
                Some(d) => vec![stack(&name, slices, d, size)],
                None => slices,
            })
        } else {
            flat = true;
            load_pair(ip, mp, size, label_names.len(), palette).map(|(image, label)| {
                vec![Loaded {
                    name: name.clone(),
                    image,
                    label,
                    spacing: None,
                }]
            })
        };
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                problems.push(e.0);
                continue;
            }
        };
        bytes += loaded.iter().map(|l| l.label.len() as u128).sum::<u128>() * 5;
        crate::limits::check_host(
            &format!("the images of {} at {size}x{size}", dir.display()),
            bytes,
        )?;
        for l in loaded {
            // A manifest names a slice, or its volume for all of its slices.
            let row = manifest
                .as_ref()
                .map(|m| m.get(&l.name).or_else(|| m.get(&name)));
            let (patient, group, severity) = match row {
                Some(Some(row)) => (row.patient.clone(), row.group, row.severity),
                Some(None) => {
                    problems.push(format!(
                        "{}: not listed in {}",
                        ip.display(),
                        manifest_path.display()
                    ));
                    break;
                }
                None if is_volume(ip) => (name.clone(), Group::Normal, None),
                None => (
                    name.split('_').next().unwrap_or(&name).to_string(),
                    Group::Normal,
                    None,
                ),
            };
            samples.push(Sample {
                name: l.name,
                patient,
                group,
                severity,
                image: l.image,
                label: l.label,
                spacing: l.spacing,
            });
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
    let normalisation = match (flat, volumes) {
        (true, true) => format!("{FLAT_NORMALISATION}; {}", opts.describe_volumes()),
        (false, true) => opts.describe_volumes(),
        _ => FLAT_NORMALISATION.into(),
    };
    if let (Some(d), true) = (opts.depth, flat) {
        if volumes {
            bail!(
                "{}: --depth takes either volumes (NIfTI, DICOM) or 2-D slices grouped by patient, not both",
                dir.display()
            );
        }
        samples =
            group_slices(samples, d, size).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    }
    Ok(Dataset {
        size,
        depth: opts.depth,
        label_names: label_names.to_vec(),
        normalisation,
        source: dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        manifest_patients: manifest.is_some(),
        samples,
    })
}

/// A NIfTI volume and its label volume, windowed, sliced and fitted: one [`Loaded`] per
/// slice, named `NAME_<axis><index>` (`case7_z004`).
fn load_volume_pair(
    ip: &Path,
    mp: &Path,
    size: usize,
    labels: usize,
    opts: &ReadOptions,
) -> Result<Vec<Loaded>> {
    if !is_volume(mp) {
        bail!(
            "{}: the mask of a volume must be a label volume (NIfTI, or a DICOM series folder), not {}",
            ip.display(),
            mp.display()
        );
    }
    let vol = read_volume(ip)?;
    let lab = read_volume(mp)?;
    if vol.dims != lab.dims {
        bail!(
            "{}: the volume is {:?} voxels but its label volume {} is {:?}",
            ip.display(),
            vol.dims,
            mp.display(),
            lab.dims
        );
    }
    let [nx, ny, _] = lab.dims;
    for (i, &v) in lab.values.iter().enumerate() {
        if v.fract() != 0.0 || v < 0.0 || v as usize >= labels {
            let (x, y, z) = (i % nx, i / nx % ny, i / (nx * ny));
            bail!(
                "{}: voxel ({x}, {y}, {z}) holds {v}, not a label below the label count {labels}",
                mp.display()
            );
        }
    }
    let windowed = Volume {
        values: opts.window.apply(&vol.values),
        ..vol
    };
    let name = key(ip);
    Ok(windowed
        .slices(opts.axis)
        .into_iter()
        .zip(lab.slices(opts.axis))
        .enumerate()
        .map(|(k, (img, lab))| {
            let scale = fit_square(img.w, img.h).0 as f64 / size as f64;
            Loaded {
                name: format!("{name}_{}{k:03}", opts.axis.name()),
                image: fit_image(&img.values, img.w, img.h, size, 0.0),
                label: fit_labels(
                    &lab.values.iter().map(|&v| v as u8).collect::<Vec<_>>(),
                    lab.w,
                    lab.h,
                    size,
                ),
                spacing: Some((img.spacing.0 * scale, img.spacing.1 * scale)),
            }
        })
        .collect())
}

/// One volume (a NIfTI file or a DICOM series folder) as a 3-D network's input: read as
/// `opts` says (rescale, window, axis), each slice fitted to `size` x `size`, stacked to
/// `depth` slices (its middle ones, or padded with empty slices), D x S x S values.
pub fn read_volume_input(
    path: &Path,
    size: usize,
    depth: usize,
    opts: &ReadOptions,
) -> Result<Vec<f32>> {
    if !is_volume(path) {
        bail!(
            "{}: a 3-D network reads volumes (NIfTI files or DICOM series folders)",
            path.display()
        );
    }
    let vol = read_volume(path)?;
    let values = opts.window.apply(&vol.values);
    let slices: Vec<Loaded> = Volume { values, ..vol }
        .slices(opts.axis)
        .into_iter()
        .map(|img| Loaded {
            name: String::new(),
            image: fit_image(&img.values, img.w, img.h, size, 0.0),
            label: vec![0; size * size],
            spacing: None,
        })
        .collect();
    Ok(stack(&key(path), slices, depth, size).image)
}

/// 2-D slices as volumes: each patient's slices in name order, stacked as [`stack`]
/// does (the middle `d`, or padded). The volume is diseased when any slice is, with the
/// highest severity; slices of two different diseases in one patient are refused.
fn group_slices(samples: Vec<Sample>, d: usize, size: usize) -> Result<Vec<Sample>> {
    let mut order: Vec<String> = Vec::new();
    let mut by: HashMap<String, Vec<Sample>> = HashMap::new();
    for s in samples {
        if !by.contains_key(&s.patient) {
            order.push(s.patient.clone());
        }
        by.entry(s.patient.clone()).or_default().push(s);
    }
    let mut out = Vec::with_capacity(order.len());
    for patient in order {
        let mut slices = by.remove(&patient).unwrap_or_default();
        slices.sort_by(|a, b| a.name.cmp(&b.name));
        let mut group = Group::Normal;
        for s in &slices {
            if s.group != Group::Normal {
                if group != Group::Normal && group != s.group {
                    bail!(
                        "patient {patient} has slices of two diseases ({} and {}); a volume has one",
                        group.name(),
                        s.group.name()
                    );
                }
                group = s.group;
            }
        }
        let severity = slices
            .iter()
            .filter_map(|s| s.severity)
            .fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.max(v))));
        let spacing = slices.first().and_then(|s| s.spacing);
        let loaded = slices
            .into_iter()
            .map(|s| Loaded {
                name: s.name,
                image: s.image,
                label: s.label,
                spacing: s.spacing,
            })
            .collect();
        let v = stack(&patient, loaded, d, size);
        out.push(Sample {
            name: patient.clone(),
            patient,
            group,
            severity,
            image: v.image,
            label: v.label,
            spacing,
        });
    }
    Ok(out)
}

/// A volume's fitted slices as one sample of `d` slices: the middle `d` of them, or all of
/// them between empty slices (intensity 0, label 0) split evenly before and after.
fn stack(name: &str, slices: Vec<Loaded>, d: usize, size: usize) -> Loaded {
    let k = slices.len();
    let spacing = slices.first().and_then(|l| l.spacing);
    let (skip, before) = if k >= d {
        ((k - d) / 2, 0)
    } else {
        (0, (d - k) / 2)
    };
    let px = size * size;
    let mut image = vec![0.0; before * px];
    let mut label = vec![0u8; before * px];
    for l in slices.into_iter().skip(skip).take(d) {
        image.extend(l.image);
        label.extend(l.label);
    }
    image.resize(d * px, 0.0);
    label.resize(d * px, 0);
    Loaded {
        name: name.to_string(),
        image,
        label,
        spacing,
    }
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
    Ok((
        fit_image(&pixels, w, h, size, 0.0),
        fit_labels(&label, w, h, size),
    ))
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
/// `manifest.csv` (name, patient, group, severity); a data set of volumes as NIfTI
/// volumes in Hounsfield units (the phantom's window) and NIfTI label volumes.
pub fn write(ds: &Dataset, dir: &Path) -> Result<()> {
    let (idir, mdir) = (dir.join("images"), dir.join("masks"));
    for d in [&idir, &mdir] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error(format!("cannot create {}: {e}", d.display())))?;
    }
    let s = ds.size as u32;
    let mut manifest = String::from("name,patient,group,severity\n");
    for smp in &ds.samples {
        if let Some(d) = ds.depth {
            // Volumes: NIfTI in Hounsfield units (the window read back by default maps
            // them to the same [0, 1] intensities), labels as a label volume.
            let (lo, hi) = super::phantom::WINDOW_HU;
            let hu: Vec<f32> = smp
                .image
                .iter()
                .map(|&v| (lo + v as f64 * (hi - lo)) as f32)
                .collect();
            let dims = [ds.size, ds.size, d];
            let ip = idir.join(format!("{}.nii.gz", smp.name));
            super::volume::write_nifti_f32(&ip, dims, [1.0; 3], &hu)?;
            let mp = mdir.join(format!("{}.nii.gz", smp.name));
            super::volume::write_nifti_labels(&mp, dims, [1.0; 3], &smp.label)?;
            manifest.push_str(&format!(
                "{},{},{},{}\n",
                smp.name,
                smp.patient,
                smp.group.name(),
                smp.severity.map(|v| format!("{v:.4}")).unwrap_or_default()
            ));
            continue;
        }
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
