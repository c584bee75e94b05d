//! Volumes: NIfTI files (`.nii`, `.nii.gz`) read with the `nifti` crate, turned into the
//! 2-D slices the networks take.
//!
//! - Values are the file's stored values times `scl_slope` plus `scl_inter` (when the
//!   slope is set), so a CT volume is in Hounsfield units.
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
