//! Volumes: NIfTI files (`.nii`, `.nii.gz`) read with the `nifti` crate and DICOM series
//! (a folder of slices) read with `dicom-object` and `dicom-pixeldata`, turned into the
//! 2-D slices the networks take.
//!
//! - Values are the file's stored values times `scl_slope` plus `scl_inter` (NIfTI, when
//!   the slope is set) or through RescaleSlope and RescaleIntercept (DICOM), so a CT
//!   volume is in Hounsfield units.
//! - A [`Window`] maps them to [0, 1]: a fixed range (`LO,HI`, by default the phantom's
//!   cardiac window, -250 to 450 HU) clamped at both ends, or `auto`: each volume's 0.5th
//!   to 99.5th percentile (for MRI, whose intensities have no fixed scale).
//! - Slices are taken along one axis ([`Axis`]; by default z, the usual slice direction):
//!   slice k along z is the image of x (columns) and y (rows) at z = k.
//! - Label volumes hold whole numbers below the label count.
//!
//! The header is read and bounded (sides, voxels, memory) before the voxels are.

use std::path::Path;

use crate::{bail, Error, Result};

/// A 3-D volume, x fastest (NIfTI's order): value (x, y, z) at `x + nx * (y + ny * z)`.
#[derive(Clone, Debug)]
pub struct Volume {
    pub values: Vec<f32>,
    pub dims: [usize; 3],
    /// Voxel size along x, y, z (NIfTI's pixdim; millimetres in most files).
    pub spacing: [f64; 3],
}

/// The axis slices are taken along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    X,
    Y,
    Z,
}

impl Axis {
    pub fn parse(s: &str) -> Result<Axis> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x" => Ok(Axis::X),
            "y" => Ok(Axis::Y),
            "z" => Ok(Axis::Z),
            _ => bail!("--axis must be x, y or z, got '{s}'"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Axis::X => "x",
            Axis::Y => "y",
            Axis::Z => "z",
        }
    }
}

/// One slice of a volume: `w x h` values, row-major, and its pixel size (columns, rows).
#[derive(Clone, Debug)]
pub struct Slice {
    pub values: Vec<f32>,
    pub w: usize,
    pub h: usize,
    pub spacing: (f64, f64),
}

impl Volume {
    /// The slices along `axis`, in order.
    pub fn slices(&self, axis: Axis) -> Vec<Slice> {
        let [nx, ny, nz] = self.dims;
        let at = |x: usize, y: usize, z: usize| self.values[x + nx * (y + ny * z)];
        let [sx, sy, sz] = self.spacing;
        match axis {
            Axis::Z => (0..nz)
                .map(|z| Slice {
                    values: (0..ny)
                        .flat_map(|y| (0..nx).map(move |x| (x, y)))
                        .map(|(x, y)| at(x, y, z))
                        .collect(),
                    w: nx,
                    h: ny,
                    spacing: (sx, sy),
                })
                .collect(),
            Axis::Y => (0..ny)
                .map(|y| Slice {
                    values: (0..nz)
                        .flat_map(|z| (0..nx).map(move |x| (x, z)))
                        .map(|(x, z)| at(x, y, z))
                        .collect(),
                    w: nx,
                    h: nz,
                    spacing: (sx, sz),
                })
                .collect(),
            Axis::X => (0..nx)
                .map(|x| Slice {
                    values: (0..nz)
                        .flat_map(|z| (0..ny).map(move |y| (y, z)))
                        .map(|(y, z)| at(x, y, z))
                        .collect(),
                    w: ny,
                    h: nz,
                    spacing: (sy, sz),
                })
                .collect(),
        }
    }
}

/// How stored values become the network's [0, 1] input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// [lo, hi] mapped linearly to [0, 1], clamped outside.
    Fixed(f64, f64),
    /// Each volume's 0.5th to 99.5th percentile, as `Fixed`.
    Auto,
}

impl Default for Window {
    /// The phantom's cardiac CT window.
    fn default() -> Self {
        let (lo, hi) = crate::data::phantom::WINDOW_HU;
        Window::Fixed(lo, hi)
    }
}

impl Window {
    /// `LO,HI` (numbers, LO < HI) or `auto`.
    pub fn parse(s: &str) -> Result<Window> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Window::Auto);
        }
        let v: Option<Vec<f64>> = t.split(',').map(|x| x.trim().parse().ok()).collect();
        match v.as_deref() {
            Some(&[lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => {
                Ok(Window::Fixed(lo, hi))
            }
            _ => bail!(
                "--window must be LO,HI with LO < HI (for example -250,450) or auto, got '{s}'"
            ),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Window::Fixed(lo, hi) => format!("{lo},{hi}"),
            Window::Auto => "auto".into(),
        }
    }

    /// The window's values mapped to [0, 1] (for `Auto`, from these values' percentiles).
    pub fn apply(self, values: &[f32]) -> Vec<f32> {
        let (lo, hi) = match self {
            Window::Fixed(lo, hi) => (lo, hi),
            Window::Auto => {
                let mut s: Vec<f32> = values.to_vec();
                s.sort_by(f32::total_cmp);
                let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize] as f64;
                let (lo, hi) = (q(0.005), q(0.995));
                if hi > lo {
                    (lo, hi)
                } else {
                    (lo, lo + 1.0)
                }
            }
        };
        values
            .iter()
            .map(|&v| ((v as f64 - lo) / (hi - lo)).clamp(0.0, 1.0) as f32)
            .collect()
    }
}

/// Whether `path` names a NIfTI file (`.nii` or `.nii.gz`).
pub fn is_nifti(path: &Path) -> bool {
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

/// The name of a NIfTI file without `.nii` or `.nii.gz`.
pub fn nifti_stem(path: &Path) -> String {
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let lower = n.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) {
            return n[..n.len() - ext.len()].to_string();
        }
    }
    n
}

/// Read a NIfTI volume (3-D, or 4-D with one time point), rescaled by its slope and
/// intercept.
pub fn read_nifti(path: &Path) -> Result<Volume> {
    let bad =
        |e: nifti::NiftiError| Error(format!("{}: unreadable NIfTI volume: {e}", path.display()));
    let header = nifti::NiftiHeader::from_file(path).map_err(bad)?;
    let nd = header.dim[0] as usize;
    if !(2..=7).contains(&nd) {
        bail!(
            "{}: a NIfTI volume has 2 to 7 dimensions, the header says {nd}",
            path.display()
        );
    }
    let dims: Vec<usize> = header.dim[1..=nd].iter().map(|&d| d as usize).collect();
    if dims.contains(&0) || dims[3.min(nd)..].iter().any(|&d| d != 1) {
        bail!(
            "{}: segfeat reads 2-D and 3-D volumes (one time point), the header's dimensions are {dims:?}",
            path.display()
        );
    }
    let [nx, ny] = [dims[0], dims[1]];
    let nz = if nd >= 3 { dims[2] } else { 1 };
    let side = crate::limits::MAX_DECODED_SIDE as usize;
    if nx > side || ny > side || nz > side {
        bail!(
            "{}: a {nx}x{ny}x{nz} volume is above segfeat's limit of {side} voxels a side",
            path.display()
        );
    }
    let dt = header.data_type().map_err(bad)?;
    let voxels = (nx * ny * nz) as u128;
    crate::limits::check_host(
        &format!("{} ({nx}x{ny}x{nz} voxels)", path.display()),
        voxels * (dt.size_of() as u128 + 8),
    )?;
    let obj = nifti::ReaderOptions::new().read_file(path).map_err(bad)?;
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    use nifti::{NiftiObject, NiftiType as T};
    let vol = obj.into_volume();
    let raw: Vec<f64> = match dt {
        T::Uint8 => typed::<u8>(vol, dt, &bad)?,
        T::Int8 => typed::<i8>(vol, dt, &bad)?,
        T::Uint16 => typed::<u16>(vol, dt, &bad)?,
        T::Int16 => typed::<i16>(vol, dt, &bad)?,
        T::Uint32 => typed::<u32>(vol, dt, &bad)?,
        T::Int32 => typed::<i32>(vol, dt, &bad)?,
        T::Uint64 => typed::<u64>(vol, dt, &bad)?,
        T::Int64 => typed::<i64>(vol, dt, &bad)?,
        T::Float32 => typed::<f32>(vol, dt, &bad)?,
        T::Float64 => typed::<f64>(vol, dt, &bad)?,
        other => bail!(
            "{}: NIfTI data type {other:?} is not supported (integers and floats are)",
            path.display()
        ),
    };
    if raw.len() != nx * ny * nz {
        bail!(
            "{}: {} voxels stored for {nx}x{ny}x{nz}",
            path.display(),
            raw.len()
        );
    }
    let scaled = slope != 0.0 && slope.is_finite() && inter.is_finite();
    let mut values = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let v = if scaled {
            v * slope as f64 + inter as f64
        } else {
            v
        };
        if !v.is_finite() {
            let (x, y, z) = (i % nx, i / nx % ny, i / (nx * ny));
            bail!(
                "{}: voxel ({x}, {y}, {z}) is {v}; segfeat needs finite values",
                path.display()
            );
        }
        values.push(v as f32);
    }
    let sp = |i: usize| {
        let s = header.pixdim[i].abs() as f64;
        if s.is_finite() && s > 0.0 {
            s
        } else {
            1.0
        }
    };
    Ok(Volume {
        values,
        dims: [nx, ny, nz],
        spacing: [sp(1), sp(2), sp(3)],
    })
}

fn typed<E: nifti::DataElement + ToF64>(
    vol: nifti::InMemNiftiVolume,
    _dt: nifti::NiftiType,
    bad: impl Fn(nifti::NiftiError) -> Error,
) -> Result<Vec<f64>> {
    Ok(vol
        .into_nifti_typed_data::<E>()
        .map_err(bad)?
        .into_iter()
        .map(ToF64::to_f64)
        .collect())
}

/// A stored element as f64 (64-bit integers lose precision above 2^53, as in every reader
/// that computes in floating point).
trait ToF64 {
    fn to_f64(self) -> f64;
}

macro_rules! to_f64 {
    ($($t:ty),*) => {$(
        impl ToF64 for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
to_f64!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Read a DICOM series: the files of folder `dir` (every regular file; one series), each a
/// single-frame slice (or one multi-frame file, its frames in stored order). Slices are
/// ordered by their position along the slice normal (ImagePositionPatient projected on
/// the cross product of ImageOrientationPatient's two directions), else by
/// InstanceNumber, else by file name. Values are the stored ones through the modality
/// LUT (RescaleSlope and RescaleIntercept), as dicom-pixeldata applies it. x is the
/// column, y the row, z the slice; spacing from PixelSpacing and the distance between
/// slice positions (else SliceThickness, else 1).
pub fn read_dicom_series(dir: &Path) -> Result<Volume> {
    use dicom_dictionary_std::tags;
    use dicom_pixeldata::PixelDecoder;
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.') || n == "DICOMDIR")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: a DICOM series folder holds no files", dir.display());
    }
    struct Slice {
        file: std::path::PathBuf,
        order: (Option<f64>, Option<i64>),
        position: Option<[f64; 3]>,
        rows: usize,
        cols: usize,
        frames: usize,
        values: Vec<f32>,
    }
    let mut slices = Vec::with_capacity(files.len());
    let mut pixel = None;
    let mut thickness = None;
    let side = crate::limits::MAX_DECODED_SIDE as usize;
    let mut total: u128 = 0;
    for f in &files {
        let bytes =
            std::fs::read(f).map_err(|e| Error(format!("cannot read {}: {e}", f.display())))?;
        if let Err(e) = dicom_lengths_fit(&bytes) {
            bail!("{}: not a readable DICOM file: {e}", f.display());
        }
        let obj = dicom_object::open_file(f)
            .map_err(|e| Error(format!("{}: not a readable DICOM file: {e}", f.display())))?;
        let floats = |tag| {
            obj.element(tag)
                .ok()
                .and_then(|e| e.to_multi_float64().ok())
        };
        let whole = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<i64>().ok());
        let (Some(rows), Some(cols)) = (whole(tags::ROWS), whole(tags::COLUMNS)) else {
            bail!("{}: a DICOM image needs Rows and Columns", f.display());
        };
        let frames = whole(tags::NUMBER_OF_FRAMES).unwrap_or(1);
        if rows < 1 || cols < 1 || frames < 1 || rows as usize > side || cols as usize > side {
            bail!(
                "{}: {cols}x{rows} pixels in {frames} frames is outside segfeat's limits (1 to {side} a side)",
                f.display()
            );
        }
        let (rows, cols, frames) = (rows as usize, cols as usize, frames as usize);
        total += (rows * cols * frames) as u128 * 12;
        crate::limits::check_host(&format!("the DICOM series {}", dir.display()), total)?;
        // The pixel module, checked before the decoder sees it (it asserts on some values).
        let (alloc, stored, high, repr, samples) = (
            whole(tags::BITS_ALLOCATED),
            whole(tags::BITS_STORED),
            whole(tags::HIGH_BIT),
            whole(tags::PIXEL_REPRESENTATION),
            whole(tags::SAMPLES_PER_PIXEL).unwrap_or(1),
        );
        let valid = matches!(alloc, Some(8 | 16 | 32))
            && stored.is_some_and(|s| s >= 1 && Some(s) <= alloc)
            && high.is_none_or(|h| h >= 0 && Some(h) < alloc)
            && matches!(repr, Some(0 | 1));
        if !valid {
            bail!(
                "{}: BitsAllocated {alloc:?}, BitsStored {stored:?}, HighBit {high:?} and PixelRepresentation {repr:?} do not describe a pixel segfeat can read",
                f.display()
            );
        }
        if samples != 1 {
            bail!(
                "{}: {samples} samples per pixel; segfeat reads grayscale images",
                f.display()
            );
        }
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            obj.decode_pixel_data()
                .map_err(|e| e.to_string())
                .and_then(|px| px.to_vec::<f32>().map_err(|e| e.to_string()))
        }));
        let values = match decoded {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => bail!("{}: cannot decode its pixels: {e}", f.display()),
            Err(_) => bail!(
                "{}: the DICOM pixel decoder failed on this file (it is damaged or unusual)",
                f.display()
            ),
        };
        if values.len() != rows * cols * frames {
            bail!(
                "{}: {} pixel values for {cols}x{rows} in {frames} frames",
                f.display(),
                values.len()
            );
        }
        let position = floats(tags::IMAGE_POSITION_PATIENT)
            .filter(|p| p.len() == 3)
            .map(|p| [p[0], p[1], p[2]]);
        let normal = floats(tags::IMAGE_ORIENTATION_PATIENT)
            .filter(|o| o.len() == 6)
            .map(|o| {
                [
                    o[1] * o[5] - o[2] * o[4],
                    o[2] * o[3] - o[0] * o[5],
                    o[0] * o[4] - o[1] * o[3],
                ]
            });
        let along = match (position, normal) {
            (Some(p), Some(n)) => Some(p[0] * n[0] + p[1] * n[1] + p[2] * n[2]),
            (Some(p), None) => Some(p[2]),
            _ => None,
        };
        if pixel.is_none() {
            pixel = floats(tags::PIXEL_SPACING).filter(|s| s.len() == 2);
            thickness = floats(tags::SLICE_THICKNESS).and_then(|t| t.first().copied());
        }
        slices.push(Slice {
            file: f.clone(),
            order: (along, whole(tags::INSTANCE_NUMBER)),
            position,
            rows,
            cols,
            frames,
            values,
        });
    }
    let (rows, cols) = (slices[0].rows, slices[0].cols);
    if let Some(s) = slices.iter().find(|s| (s.rows, s.cols) != (rows, cols)) {
        bail!(
            "{}: {}x{} pixels, but {} is {cols}x{rows}: one series has one size",
            s.file.display(),
            s.cols,
            s.rows,
            slices[0].file.display()
        );
    }
    if slices.len() > 1 && slices.iter().any(|s| s.frames > 1) {
        bail!(
            "{}: a series is single-frame files or one multi-frame file, not both",
            dir.display()
        );
    }
    if slices.iter().all(|s| s.order.0.is_some()) {
        slices.sort_by(|a, b| a.order.0.unwrap().total_cmp(&b.order.0.unwrap()));
    } else if slices.iter().all(|s| s.order.1.is_some()) {
        slices.sort_by_key(|s| s.order.1);
    }
    let gaps: Vec<f64> = slices
        .windows(2)
        .filter_map(|w| match (w[0].position, w[1].position) {
            (Some(a), Some(b)) => {
                Some(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt())
            }
            _ => None,
        })
        .collect();
    let sz = if gaps.is_empty() {
        thickness.filter(|t| *t > 0.0).unwrap_or(1.0)
    } else {
        let mut g = gaps;
        g.sort_by(f64::total_cmp);
        g[g.len() / 2]
    };
    // PixelSpacing is (between rows, between columns).
    let (sy, sx) = pixel.map_or((1.0, 1.0), |p| (p[0], p[1]));
    let nz: usize = slices.iter().map(|s| s.frames).sum();
    let mut values = Vec::with_capacity(rows * cols * nz);
    for s in slices {
        values.extend(s.values);
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: pixel {i} of the series is {}; segfeat needs finite values",
            dir.display(),
            values[i]
        );
    }
    let ok = |v: f64| v.is_finite() && v > 0.0;
    Ok(Volume {
        values,
        dims: [cols, rows, nz],
        spacing: [
            if ok(sx) { sx } else { 1.0 },
            if ok(sy) { sy } else { 1.0 },
            if ok(sz) { sz } else { 1.0 },
        ],
    })
}

/// Read a volume: a DICOM series folder, or a NIfTI file.
pub fn read_volume(path: &Path) -> Result<Volume> {
    if path.is_dir() {
        read_dicom_series(path)
    } else {
        read_nifti(path)
    }
}

/// Check, before a DICOM parser sees a file, that every element's declared length fits in
/// what is left of the file: a damaged length would otherwise have the parser allocate
/// and fill gigabytes for a file of a few hundred bytes. Covers the file meta group and
/// data sets in explicit or implicit VR little endian (nearly every file); other transfer
/// syntaxes (big endian, deflated) are left to the parser.
fn dicom_lengths_fit(b: &[u8]) -> std::result::Result<(), String> {
    let start = if b.len() >= 132 && &b[128..132] == b"DICM" {
        132
    } else {
        return Ok(()); // no preamble: let the parser decide what it is
    };
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    const LONG: [&[u8; 2]; 13] = [
        b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV",
    ];
    const KNOWN: &[u8] = b"AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV";
    let mut i = start;
    let mut explicit = true;
    // Inside encapsulated pixel data, items are raw fragments to skip, not data sets.
    let mut fragments = false;
    while i + 8 <= b.len() {
        let (group, elem) = (u16_at(i), u16_at(i + 2));
        let (len, header) = if group == 0xFFFE {
            (u32_at(i + 4), 8)
        } else if explicit || group == 0x0002 {
            let vr = [b[i + 4], b[i + 5]];
            if !KNOWN.chunks(2).any(|k| k == vr) {
                return Err(format!(
                    "element ({group:04X},{elem:04X}) has no known value representation"
                ));
            }
            if LONG.iter().any(|l| **l == vr) {
                if i + 12 > b.len() {
                    return Err(format!("element ({group:04X},{elem:04X}) is cut short"));
                }
                (u32_at(i + 8), 12)
            } else {
                (u16_at(i + 6) as u32, 8)
            }
        } else {
            (u32_at(i + 4), 8)
        };
        let body = i + header;
        if group == 0x0002 && elem == 0x0010 && body + len as usize <= b.len() {
            let ts = String::from_utf8_lossy(&b[body..body + len as usize]);
            let ts = ts.trim_end_matches(['\0', ' ']);
            match ts {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.1" => explicit = true,
                // Encapsulated (compressed) pixel data: little-endian explicit data sets.
                _ if ts.starts_with("1.2.840.10008.1.2.4") || ts == "1.2.840.10008.1.2.5" => {
                    explicit = true
                }
                _ => return Ok(()),
            }
        }
        if len == u32::MAX {
            // Undefined length: a sequence, an item or encapsulated pixel data; its
            // content follows as elements (or fragments).
            if (group, elem) == (0x7FE0, 0x0010) {
                fragments = true;
            }
            i = body;
            continue;
        }
        if body + len as usize > b.len() {
            return Err(format!(
                "element ({group:04X},{elem:04X}) declares {len} bytes, {} are left",
                b.len().saturating_sub(body)
            ));
        }
        if (group, elem) == (0xFFFE, 0xE0DD) {
            fragments = false;
        }
        // A defined-length item of a sequence holds a data set: look inside it.
        let descend = group == 0xFFFE && elem == 0xE000 && !fragments;
        let sequence =
            group != 0xFFFE && (explicit || group == 0x0002) && [b[i + 4], b[i + 5]] == *b"SQ";
        i = if descend || sequence {
            body
        } else {
            body + len as usize
        };
    }
    Ok(())
}

impl Volume {
    /// Put slices taken along `axis` (as [`Volume::slices`] gives them, each `w x h`
    /// row-major) back into a volume of `dims`: the inverse of slicing.
    pub fn from_slices<T: Copy + Default>(
        dims: [usize; 3],
        axis: Axis,
        slices: &[Vec<T>],
    ) -> Vec<T> {
        let [nx, ny, nz] = dims;
        let mut out = vec![T::default(); nx * ny * nz];
        for (k, sl) in slices.iter().enumerate() {
            for (j, &v) in sl.iter().enumerate() {
                let (x, y, z) = match axis {
                    Axis::Z => (j % nx, j / nx, k),
                    Axis::Y => (j % nx, k, j / nx),
                    Axis::X => (k, j % ny, j / ny),
                };
                out[x + nx * (y + ny * z)] = v;
            }
        }
        out
    }
}

/// Write a label volume (x fastest, as [`Volume::values`]) as NIfTI (`.nii` or
/// `.nii.gz`, unsigned 8-bit) with the voxel size `spacing`, through a temporary file
/// renamed into place.
pub fn write_nifti_labels(
    path: &Path,
    dims: [usize; 3],
    spacing: [f64; 3],
    labels: &[u8],
) -> Result<()> {
    write_nifti(path, dims, spacing, labels)
}

/// Write an intensity volume (x fastest) as NIfTI (32-bit float), as
/// [`write_nifti_labels`] does labels.
pub fn write_nifti_f32(
    path: &Path,
    dims: [usize; 3],
    spacing: [f64; 3],
    values: &[f32],
) -> Result<()> {
    write_nifti(path, dims, spacing, values)
}

fn write_nifti<T: Copy + nifti::DataElement + bytemuck::Pod>(
    path: &Path,
    dims: [usize; 3],
    spacing: [f64; 3],
    values: &[T],
) -> Result<()> {
    let [nx, ny, nz] = dims;
    let arr =
        ndarray::Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| values[x + nx * (y + ny * z)]);
    let header = nifti::NiftiHeader {
        pixdim: [
            1.0,
            spacing[0] as f32,
            spacing[1] as f32,
            spacing[2] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        ..Default::default()
    };
    // The writer picks compression from the name: keep the extension on the temporary.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp{}-{name}", std::process::id()));
    nifti::writer::WriterOptions::new(&tmp)
        .reference_header(&header)
        .write_nifti(&arr)
        .map_err(|e| Error(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error(format!("cannot write {}: {e}", path.display()))
    })
}
