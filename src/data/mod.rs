//! Data on the CPU: the phantom generator, folders of PNG images, patient splits and
//! batches. Nothing here touches the GPU: a batch leaves as plain `Vec<f32>`s.

pub mod augment;
pub mod folder;
pub mod phantom;
pub mod volume;

use crate::{bail, Result};

/// The cardiac label scheme, in index order.
pub const CARDIAC_LABELS: [&str; 6] = ["BG", "RA", "LA", "RV", "LV", "Myo"];

/// What an image shows, for the disease-detection protocol: normal, one of the phantom's
/// two diseases, or any other disease a folder's manifest names (`infarct`,
/// `pneumothorax`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Normal,
    Effusion,
    Septal,
    /// A disease named by a manifest: lower case letters, digits, `-` and `_`.
    Named(&'static str),
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Normal => "normal",
            Group::Effusion => "effusion",
            Group::Septal => "septal",
            Group::Named(n) => n,
        }
    }

    /// Parse a group name (case-insensitive; empty is normal). None when the name has
    /// characters other than letters, digits, `-` and `_`.
    pub fn parse(s: &str) -> Option<Group> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "normal" | "" => Some(Group::Normal),
            "effusion" | "pericardial-effusion" => Some(Group::Effusion),
            "septal" | "septal-defect" => Some(Group::Septal),
            _ if t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                Some(Group::Named(intern(t)))
            }
            _ => None,
        }
    }
}

impl Group {
    /// The group naming a multi-class task: its classes' names joined by `+`
    /// (`normal+effusion+septal`), as its runs are recorded.
    pub fn task(classes: &[Group]) -> Group {
        let names: Vec<&str> = classes.iter().map(|c| c.name()).collect();
        Group::Named(intern(names.join("+")))
    }
}

/// One `&'static str` per distinct disease name, so that [`Group`] stays `Copy`. A process
/// sees a handful of names, so the table never grows beyond them.
fn intern(name: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = names.get(name.as_str()) {
        return n;
    }
    let n: &'static str = Box::leak(name.into_boxed_str());
    names.insert(n);
    n
}

/// One image with its label map, both `size x size`, row-major; in a data set of volumes
/// ([`Dataset::depth`]), one patient's volume: `depth` such slices, one after the other.
#[derive(Clone, Debug)]
pub struct Sample {
    /// File stem (`PATIENT_SLICE`), unique in the set.
    pub name: String,
    pub patient: String,
    pub group: Group,
    /// Disease severity in [0, 1] where known (phantom positives), for analysis only.
    pub severity: Option<f32>,
    /// Intensities in [0, 1].
    pub image: Vec<f32>,
    /// Label indices, each < the label count.
    pub label: Vec<u8>,
    /// The size of a pixel (columns, rows) at `size x size`, where the file gives one
    /// (NIfTI's pixdim, usually millimetres).
    pub spacing: Option<(f64, f64)>,
}

/// A set of samples of one size with one label scheme.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub size: usize,
    /// None for 2-D images; Some(D) when every sample is a volume of D slices (the 3-D
    /// networks' input).
    pub depth: Option<usize>,
    pub label_names: Vec<String>,
    /// How the images were brought to [0, 1] (stored in the model's metadata).
    pub normalisation: String,
    /// Where the samples came from (`phantom seed S`, or the folder's path), so that a
    /// model can tell whether a data set is the one it was trained on.
    pub source: String,
    /// Whether a manifest named the patients (then the protocol splits by patient unless
    /// told otherwise).
    pub manifest_patients: bool,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Patient ids in order of first appearance.
    pub fn patients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.samples {
            if !out.contains(&s.patient) {
                out.push(s.patient.clone());
            }
        }
        out
    }

    /// The samples of the given patients (all of them when `patients` is None). Every
    /// named patient must exist.
    pub fn select(&self, patients: Option<&[String]>, groups: &[Group]) -> Result<Dataset> {
        if let Some(ps) = patients {
            let known = self.patients();
            for p in ps {
                if !known.contains(p) {
                    bail!(
                        "patient '{p}' is not in the data (patients: {})",
                        abbreviate(&known)
                    );
                }
            }
        }
        let samples = self
            .samples
            .iter()
            .filter(|s| groups.contains(&s.group))
            .filter(|s| patients.is_none_or(|ps| ps.contains(&s.patient)))
            .cloned()
            .collect();
        Ok(Dataset {
            samples,
            ..self.empty_like()
        })
    }

    fn empty_like(&self) -> Dataset {
        Dataset {
            size: self.size,
            depth: self.depth,
            label_names: self.label_names.clone(),
            normalisation: self.normalisation.clone(),
            source: self.source.clone(),
            manifest_patients: self.manifest_patients,
            samples: Vec::new(),
        }
    }

    /// Pixel count of each label over every sample.
    pub fn label_counts(&self) -> Vec<u64> {
        let mut f = vec![0u64; self.label_names.len()];
        for s in &self.samples {
            for &l in &s.label {
                f[l as usize] += 1;
            }
        }
        f
    }

    /// The paper's class weights, w_l = 1 - f_l / sum_k f_k (a label never seen gets 1).
    pub fn class_weights(&self) -> Vec<f32> {
        let f = self.label_counts();
        let total: u64 = f.iter().sum();
        f.iter()
            .map(|&c| (1.0 - c as f64 / total.max(1) as f64) as f32)
            .collect()
    }

    /// Values per sample: S x S, or D x S x S for volumes.
    pub fn voxels(&self) -> usize {
        self.depth.unwrap_or(1) * self.size * self.size
    }

    /// The volumes' slices as a 2-D data set on the same patients: every slice
    /// (`Slices::All`, named `PATIENT_NN`), or each volume's middle one (`Slices::Middle`,
    /// slice D / 2, named as the volume) for a classifier that sees one image per patient.
    /// The source stays the volumes': a 2-D network trained on one view of them has seen
    /// those patients in every other view (an experiment keeps them out of its tests).
    pub fn slices(&self, which: Slices) -> Result<Dataset> {
        let Some(d) = self.depth else {
            bail!("slices of volumes were asked for, but the data holds 2-D images");
        };
        let px = self.size * self.size;
        let mut samples = Vec::new();
        for s in &self.samples {
            let range = match which {
                Slices::All => 0..d,
                Slices::Middle => d / 2..d / 2 + 1,
            };
            for z in range {
                samples.push(Sample {
                    name: match which {
                        Slices::All => format!("{}_{:02}", s.name, z + 1),
                        Slices::Middle => s.name.clone(),
                    },
                    image: s.image[z * px..(z + 1) * px].to_vec(),
                    label: s.label[z * px..(z + 1) * px].to_vec(),
                    ..s.clone()
                });
            }
        }
        Ok(Dataset {
            depth: None,
            samples,
            ..self.empty_like()
        })
    }

    /// Images (B, 1, S, S) and labels (B, S, S) of the samples at `idx`, as f32; for
    /// volumes (B, 1, D, S, S) and (B, D, S, S).
    pub fn batch(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let px = self.voxels();
        let mut x = Vec::with_capacity(idx.len() * px);
        let mut y = Vec::with_capacity(idx.len() * px);
        for &i in idx {
            x.extend_from_slice(&self.samples[i].image);
            y.extend(self.samples[i].label.iter().map(|&l| l as f32));
        }
        (x, y)
    }
}

/// What samples of this depth are, for messages: "2-D images" or "volumes of D slices".
pub fn describe_depth(depth: Option<usize>) -> String {
    depth.map_or("2-D images".to_string(), |d| {
        format!("volumes of {d} slices")
    })
}

/// Which slices of a volume data set make a 2-D one ([`Dataset::slices`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slices {
    All,
    Middle,
}

impl Slices {
    pub fn parse(s: &str) -> Result<Slices> {
        match s {
            "all" => Ok(Slices::All),
            "middle" => Ok(Slices::Middle),
            _ => bail!("--slices is all or middle, got '{s}'"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Slices::All => "all",
            Slices::Middle => "middle",
        }
    }
}

/// Parse a comma-separated list of patient ids ("" is none).
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn abbreviate(items: &[String]) -> String {
    if items.len() <= 12 {
        items.join(", ")
    } else {
        format!("{}, ... ({} in all)", items[..12].join(", "), items.len())
    }
}

/// Bilinear resampling of a square image to `to x to` (pixel centres aligned, edges clamped).
pub fn resize_bilinear(src: &[f32], from_w: usize, from_h: usize, to: usize) -> Vec<f32> {
    let mut out = vec![0.0; to * to];
    let sx = from_w as f64 / to as f64;
    let sy = from_h as f64 / to as f64;
    for oy in 0..to {
        let fy = ((oy as f64 + 0.5) * sy - 0.5).clamp(0.0, (from_h - 1) as f64);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(from_h - 1);
        let ty = fy - y0 as f64;
        for ox in 0..to {
            let fx = ((ox as f64 + 0.5) * sx - 0.5).clamp(0.0, (from_w - 1) as f64);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(from_w - 1);
            let tx = fx - x0 as f64;
            let p = |x: usize, y: usize| src[y * from_w + x] as f64;
            let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
            let bot = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
            out[oy * to + ox] = (top * (1.0 - ty) + bot * ty) as f32;
        }
    }
    out
}

/// The square a `w x h` image is padded to before resizing, and where the image sits in
/// it: (side, x offset, y offset). The padding is split evenly (the odd pixel after).
pub fn fit_square(w: usize, h: usize) -> (usize, usize, usize) {
    let m = w.max(h);
    (m, (m - w) / 2, (m - h) / 2)
}

fn pad_square<T: Copy>(src: &[T], w: usize, h: usize, pad: T) -> (Vec<T>, usize) {
    let (m, x0, y0) = fit_square(w, h);
    if (w, h) == (m, m) {
        return (src.to_vec(), m);
    }
    let mut out = vec![pad; m * m];
    for y in 0..h {
        out[(y + y0) * m + x0..(y + y0) * m + x0 + w].copy_from_slice(&src[y * w..(y + 1) * w]);
    }
    (out, m)
}

/// Fit a `w x h` image into `size x size` keeping its aspect ratio: pad the short side
/// with `pad` to a square, then resample. Shrinking averages every source pixel over the
/// area it covers (so nothing is skipped and nothing aliases); enlarging is bilinear.
pub fn fit_image(src: &[f32], w: usize, h: usize, size: usize, pad: f32) -> Vec<f32> {
    let (sq, m) = pad_square(src, w, h, pad);
    match m.cmp(&size) {
        std::cmp::Ordering::Equal => sq,
        std::cmp::Ordering::Less => resize_bilinear(&sq, m, m, size),
        std::cmp::Ordering::Greater => resize_area(&sq, m, size),
    }
}

/// Fit a `w x h` label map into `size x size` as [`fit_image`] does (padding with
/// background, 0), by nearest neighbour.
pub fn fit_labels(src: &[u8], w: usize, h: usize, size: usize) -> Vec<u8> {
    let (sq, m) = pad_square(src, w, h, 0);
    resize_nearest(&sq, (m, m), (size, size))
}

/// The inverse of [`fit_labels`]: a `size x size` label map back to the `w x h` of the
/// image it was fitted from (nearest neighbour, the padding cut off).
pub fn unfit_labels(src: &[u8], size: usize, w: usize, h: usize) -> Vec<u8> {
    let (m, x0, y0) = fit_square(w, h);
    let sq = resize_nearest(src, (size, size), (m, m));
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        out.extend_from_slice(&sq[(y + y0) * m + x0..(y + y0) * m + x0 + w]);
    }
    out
}

/// The inverse of [`fit_image`] for maps of values (probabilities): `size x size` back to
/// `w x h`, bilinear, the padding cut off.
pub fn unfit_image(src: &[f32], size: usize, w: usize, h: usize) -> Vec<f32> {
    let (m, x0, y0) = fit_square(w, h);
    let sq = if m == size {
        src.to_vec()
    } else {
        resize_bilinear(src, size, size, m)
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        out.extend_from_slice(&sq[(y + y0) * m + x0..(y + y0) * m + x0 + w]);
    }
    out
}

/// Area-averaging of an `n x n` image down to `to x to` (to < n): each output pixel is the
/// mean of the source over its footprint, partial pixels weighted by their overlap.
/// Separable: rows first, then columns.
pub fn resize_area(src: &[f32], n: usize, to: usize) -> Vec<f32> {
    // For each output index, the (source index, weight) pairs of its footprint.
    let scale = n as f64 / to as f64;
    let taps: Vec<Vec<(usize, f64)>> = (0..to)
        .map(|o| {
            let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
            let mut t = Vec::new();
            let mut i = a.floor() as usize;
            while (i as f64) < b && i < n {
                let w = (b.min(i as f64 + 1.0) - a.max(i as f64)) / scale;
                if w > 0.0 {
                    t.push((i, w));
                }
                i += 1;
            }
            t
        })
        .collect();
    let mut rows = vec![0.0f64; n * to];
    for y in 0..n {
        for (ox, t) in taps.iter().enumerate() {
            rows[y * to + ox] = t.iter().map(|&(x, w)| src[y * n + x] as f64 * w).sum();
        }
    }
    let mut out = vec![0.0f32; to * to];
    for (oy, t) in taps.iter().enumerate() {
        for ox in 0..to {
            out[oy * to + ox] = t.iter().map(|&(y, w)| rows[y * to + ox] * w).sum::<f64>() as f32;
        }
    }
    out
}

/// Nearest-neighbour resampling of a label map from `from_w x from_h` to `to_w x to_h`.
pub fn resize_nearest(
    src: &[u8],
    (from_w, from_h): (usize, usize),
    (to_w, to_h): (usize, usize),
) -> Vec<u8> {
    let mut out = vec![0; to_w * to_h];
    for oy in 0..to_h {
        let y = (((oy as f64 + 0.5) * from_h as f64 / to_h as f64) as usize).min(from_h - 1);
        for ox in 0..to_w {
            let x = (((ox as f64 + 0.5) * from_w as f64 / to_w as f64) as usize).min(from_w - 1);
            out[oy * to_w + ox] = src[y * from_w + x];
        }
    }
    out
}
