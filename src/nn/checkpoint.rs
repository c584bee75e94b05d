//! Checkpoints in the safetensors format (a JSON header, then little-endian f32 data), so
//! that Python's `safetensors` can open them. Files are written to a temporary name beside
//! the target and renamed, so a crash never leaves half a checkpoint.
//!
//! A segmentation model file holds the parameters under the names of
//! [`crate::nn::UnetConfig::param_shapes`] (`enc1.conv1.weight`, ..., `out.bias`) and the
//! metadata keys of [`SegMeta`]; a classifier file the names of
//! [`crate::nn::VggConfig::param_shapes`] (`block1.conv1.weight`, ..., `fc3.bias`) and the keys
//! of [`ClsMeta`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::Dtype;

use crate::nn::unet::VolumeShape;
use crate::nn::vgg::Regularisation;
use crate::nn::{Unet, UnetConfig, Vgg, VggConfig};
use crate::train::features::{ChannelStats, Combo};
use crate::{bail, Error, Gpu, Result};

/// A checkpoint read into host memory.
pub struct Checkpoint {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the file's bytes (see [`sha256_hex`]).
    pub sha256: String,
}

impl Checkpoint {
    pub fn meta(&self, key: &str, path: &Path) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| {
            Error(format!(
                "{}: the checkpoint's metadata has no '{key}'",
                path.display()
            ))
        })
    }

    pub fn meta_usize(&self, key: &str, path: &Path) -> Result<usize> {
        let v = self.meta(key, path)?;
        v.parse().map_err(|_| {
            Error(format!(
                "{}: metadata '{key}' should be a whole number, got '{v}'",
                path.display()
            ))
        })
    }
}

/// The bytes of a safetensors file: an 8-byte little-endian header length, the JSON header
/// (metadata under `__metadata__`, then every tensor's dtype, shape and byte range, all keys
/// sorted, padded with spaces to a multiple of 8), then the tensors' data in the given order.
/// Written here rather than by the `safetensors` crate, whose metadata map has no fixed
/// order: the same training must give the same bytes, so that a checksum confirms it.
pub fn serialize(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        if shape.iter().product::<usize>() != data.len() {
            bail!(
                "tensor '{name}': shape {shape:?} does not hold {} values",
                data.len()
            );
        }
        if name == "__metadata__" || header.contains_key(name) {
            bail!("tensor name '{name}' is reserved or used twice");
        }
        let end = offset + 4 * data.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, data) in tensors {
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Write `tensors` (name, shape, data) and `metadata` to `path` atomically (see
/// [`write_atomic`]), in the byte-for-byte reproducible layout of [`serialize`].
pub fn save(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes =
        serialize(tensors, metadata).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// The environment variable of the crash test hook: `SEGFEAT_ABORT_AT_WRITE_STEP=N` aborts
/// the process (as a kill would) at the N-th step of [`write_atomic`] counted from the
/// process's start. Each file takes three steps: 1. write the temporary file and fsync it
/// (the abort comes half-way through the bytes, leaving a torn temporary), 2. rename it
/// over the target, 3. fsync the folder (the abort comes after the rename). Used by the
/// tests that kill a training at every step of a save and resume it.
pub const ABORT_HOOK: &str = "SEGFEAT_ABORT_AT_WRITE_STEP";

static WRITE_STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Count one write step; true when the crash hook asks to die at this one.
fn abort_here() -> bool {
    let n = WRITE_STEPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    std::env::var(ABORT_HOOK)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        == Some(n)
}

/// The temporary name [`write_atomic`] uses beside `path` (the process id keeps
/// concurrent writers, such as shards sharing a folder, apart).
fn temporary(path: &Path) -> std::path::PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::path::PathBuf::from(tmp)
}

/// Remove temporaries `<path>.tmp<pid>` left beside `path` by killed writers. Call it only
/// while holding the lock of whatever writes `path` (see [`crate::lock`]).
pub fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.strip_prefix(&prefix)
            .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Remove temporaries `*.tmp<pid>` in `dir` whose writer is no longer running, as a killed
/// experiment leaves them (its shards share the folder, so a live writer's are kept).
/// Where running processes cannot be listed (no /proc), nothing is removed.
pub fn remove_dead_temporaries(dir: &Path) {
    let proc = Path::new("/proc/self");
    if !proc.exists() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some((_, pid)) = n.rsplit_once(".tmp") else {
            continue;
        };
        if !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Write `bytes` to a temporary file beside `path`, fsync it, rename it over `path`, and
/// fsync the folder: a reader, or a process killed at any moment, sees the old file or the
/// new one, never half of one, and a rename that returned survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error(format!("cannot create folder {}: {e}", dir.display())))?;
            dir
        }
        None => Path::new("."),
    };
    if path.is_dir() {
        bail!("{} is a folder; name a file to write", path.display());
    }
    let tmp = temporary(path);
    let werr = |e: std::io::Error| Error(format!("cannot write {}: {e}", tmp.display()));
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    if abort_here() {
        let _ = f.write_all(&bytes[..bytes.len() / 2]);
        std::process::abort();
    }
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(werr)?;
    drop(f);
    if abort_here() {
        std::process::abort();
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error(format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })?;
    if abort_here() {
        std::process::abort();
    }
    // Make the rename itself durable. Some file systems cannot fsync a folder; the rename
    // has happened either way, so that is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// SHA-256 of `bytes`, as 64 lowercase hex digits (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Read a safetensors file whose tensors are all f32.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error(format!("cannot read checkpoint {}: {e}", path.display())))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        Error(format!(
            "{} is not a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error(format!("{}: bad header: {e}", path.display())))?;
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = HashMap::new();
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in views {
        if view.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor '{name}' is {:?}; segfeat reads f32 only",
                path.display(),
                view.dtype()
            );
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: tensor '{name}' holds a non-finite value ({} at index {i}); the file is damaged or its training diverged",
                path.display(),
                data[i]
            );
        }
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Checkpoint {
        tensors,
        metadata,
        sha256: sha256_hex(&bytes),
    })
}

/// What a segmentation model carries besides its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct SegMeta {
    pub label_names: Vec<String>,
    /// w_l = 1 - f_l / sum_k f_k over the training pixels.
    pub class_weights: Vec<f32>,
    /// How images were turned into network input (free text, for the reader).
    pub normalisation: String,
    /// Training progress: epochs finished, Adam steps taken, and the epochs planned.
    pub epochs_done: usize,
    pub steps: u64,
    pub epochs_planned: usize,
    /// The training's seed and options, as the command line gave them (free text).
    pub training: String,
    /// The patients whose images trained the network (so that later experiments can
    /// keep them apart from their test sets).
    pub patients: Vec<String>,
    /// The training data's source (see [`crate::data::Dataset::source`]).
    pub data: String,
    /// SHA-256 of the file it was loaded from (empty for a model not yet saved); a
    /// classifier records it, and refuses features from any other model.
    pub sha256: String,
    /// The training images' pixel size (columns, rows) at the network's input, the median
    /// over the images, where the files gave one (NIfTI, DICOM; millimetres in most).
    pub pixel_spacing: Option<(f64, f64)>,
}

pub const ARCHITECTURE: &str = "unet-wong2017";

/// The metadata of a segmentation model file (also carried by its training state).
pub fn unet_metadata(c: &UnetConfig, meta: &SegMeta) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("architecture".into(), ARCHITECTURE.into());
    m.insert("channels".into(), c.channels.to_string());
    m.insert("labels".into(), c.labels.to_string());
    m.insert("size".into(), c.size.to_string());
    m.insert("in_channels".into(), c.in_channels.to_string());
    // 2 for images, 3 for volumes (files written before volumes lack it: 2).
    match &c.volume {
        None => {
            m.insert("dims".into(), "2".into());
        }
        Some(v) => {
            m.insert("dims".into(), "3".into());
            m.insert("depth".into(), v.depth.to_string());
            m.insert("depth_pool".into(), v.describe_pool());
        }
    }
    m.insert("label_names".into(), strings(&meta.label_names));
    m.insert("class_weights".into(), floats(&meta.class_weights));
    m.insert("input_normalisation".into(), meta.normalisation.clone());
    m.insert("epochs_done".into(), meta.epochs_done.to_string());
    m.insert("epochs_planned".into(), meta.epochs_planned.to_string());
    m.insert("steps".into(), meta.steps.to_string());
    m.insert("training".into(), meta.training.clone());
    m.insert("train_patients".into(), strings(&meta.patients));
    m.insert("train_data".into(), meta.data.clone());
    if let Some((sx, sy)) = meta.pixel_spacing {
        m.insert("pixel_spacing".into(), format!("[{sx:?},{sy:?}]"));
    }
    m
}

/// The U-Net's parameters as (name, shape, values), read back from the GPU.
pub fn unet_tensors(gpu: &Gpu, unet: &Unet) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    unet.params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec(gpu)))
        .collect()
}

/// The bytes of the model file [`save_unet`] writes.
pub fn unet_bytes(gpu: &Gpu, unet: &Unet, meta: &SegMeta) -> Result<Vec<u8>> {
    serialize(&unet_tensors(gpu, unet), &unet_metadata(&unet.config, meta))
}

/// Save a U-Net and its metadata (atomically).
pub fn save_unet(gpu: &Gpu, path: &Path, unet: &Unet, meta: &SegMeta) -> Result<()> {
    let bytes =
        unet_bytes(gpu, unet, meta).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Read the configuration and [`SegMeta`] from a checkpoint's metadata (a model file's,
/// or its training state's, which carries the same keys).
pub fn unet_meta_of(ck: &Checkpoint, path: &Path) -> Result<(UnetConfig, SegMeta)> {
    let arch = ck.meta("architecture", path)?;
    if arch != ARCHITECTURE {
        bail!(
            "{}: architecture '{arch}' is not a segfeat segmentation model ({ARCHITECTURE})",
            path.display()
        );
    }
    let mut config = UnetConfig::new(
        ck.meta_usize("channels", path)?,
        ck.meta_usize("labels", path)?,
        ck.meta_usize("size", path)?,
    )
    .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    config.in_channels = ck.meta_usize("in_channels", path)?;
    config.volume = volume_of(ck, path)?;
    config
        .validate()
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let label_names = parse_strings(ck.meta("label_names", path)?, "label_names", path)?;
    let class_weights = parse_floats(ck.meta("class_weights", path)?, "class_weights", path)?;
    if label_names.len() != config.labels || class_weights.len() != config.labels {
        bail!(
            "{}: {} label names and {} class weights for {} labels",
            path.display(),
            label_names.len(),
            class_weights.len(),
            config.labels
        );
    }
    let meta = SegMeta {
        label_names,
        class_weights,
        normalisation: ck.meta("input_normalisation", path)?.to_string(),
        epochs_done: ck.meta_usize("epochs_done", path)?,
        epochs_planned: ck.meta_usize("epochs_planned", path)?,
        steps: ck.meta_usize("steps", path)? as u64,
        training: ck.metadata.get("training").cloned().unwrap_or_default(),
        patients: parse_strings(
            ck.metadata.get("train_patients").map_or("", |s| s.as_str()),
            "train_patients",
            path,
        )?,
        data: ck.metadata.get("train_data").cloned().unwrap_or_default(),
        sha256: ck.sha256.clone(),
        pixel_spacing: match ck.metadata.get("pixel_spacing") {
            None => None,
            Some(t) => match serde_json::from_str::<Vec<f64>>(t).ok().as_deref() {
                Some(&[sx, sy]) if sx > 0.0 && sy > 0.0 => Some((sx, sy)),
                _ => bail!("{}: unreadable pixel_spacing '{t}'", path.display()),
            },
        },
    };
    Ok((config, meta))
}

/// The `dims` entry (absent: 2) and, for 3, the volume's depth and depth pooling.
pub fn volume_of(ck: &Checkpoint, path: &Path) -> Result<Option<VolumeShape>> {
    if !is_3d(ck, path)? {
        return Ok(None);
    }
    Ok(Some(VolumeShape {
        depth: ck.meta_usize("depth", path)?,
        depth_pool: VolumeShape::parse_pool(ck.meta("depth_pool", path)?)
            .map_err(|e| Error(format!("{}: {e}", path.display())))?,
    }))
}

/// Whether a file's `dims` says 3 (absent, as in files written before volumes: 2).
fn is_3d(ck: &Checkpoint, path: &Path) -> Result<bool> {
    match ck.metadata.get("dims").map(String::as_str) {
        None | Some("2") => Ok(false),
        Some("3") => Ok(true),
        Some(d) => bail!("{}: dims is 2 or 3, not '{d}'", path.display()),
    }
}

/// Load a U-Net saved by [`save_unet`], checking its architecture and every tensor.
pub fn load_unet(gpu: &Gpu, path: &Path) -> Result<(Unet, SegMeta)> {
    let ck = load(path)?;
    let (config, meta) = unet_meta_of(&ck, path)?;
    let unet = Unet::from_arrays(gpu, config, |name| ck.tensors.get(name).cloned())
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    Ok((unet, meta))
}

pub const CLASSIFIER_ARCHITECTURE: &str = "vgg16-wong2017";

/// What a classifier file carries besides its weights: the feature combination it reads,
/// how inputs are standardised, and which segmentation network made its features.
#[derive(Clone, Debug, PartialEq)]
pub struct ClsMeta {
    pub features: Combo,
    pub stats: ChannelStats,
    /// One weight per class.
    pub class_weights: Vec<f32>,
    /// What it detects: the disease of a two-class classifier, or the task of a
    /// multi-class one (its class names joined by `+`).
    pub disease: String,
    /// The classes in output order: `["normal", disease]` for two classes.
    pub class_names: Vec<String>,
    /// The segmentation network's (channels, labels, size).
    pub seg: (usize, usize, usize),
    /// Free text: the seed, options and images it was trained on.
    pub training: String,
    /// SHA-256 of the segmentation model file that made its features (empty in files
    /// written before it was recorded).
    pub seg_sha256: String,
}

/// A list of numbers as a JSON array (each f32 written in its shortest round-trip form).
fn floats(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|w| format!("{w:?}")).collect();
    format!("[{}]", items.join(","))
}

/// A list of names as a JSON array.
fn strings(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A metadata list: a JSON array, or (in files written before lists were JSON) a comma
/// list; empty text is an empty list.
fn parse_json_or_commas<T: serde::de::DeserializeOwned>(
    s: &str,
    key: &str,
    path: &Path,
    item: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    let t = s.trim();
    let bad = || Error(format!("{}: unreadable {key} '{s}'", path.display()));
    if t.starts_with('[') {
        return serde_json::from_str(t).map_err(|_| bad());
    }
    if t.is_empty() {
        return Ok(Vec::new());
    }
    t.split(',')
        .map(|x| item(x.trim()).ok_or_else(bad))
        .collect()
}

fn parse_floats(s: &str, key: &str, path: &Path) -> Result<Vec<f32>> {
    let v: Vec<f64> = parse_json_or_commas(s, key, path, |x| x.parse().ok())?;
    Ok(v.into_iter().map(|x| x as f32).collect())
}

fn parse_strings(s: &str, key: &str, path: &Path) -> Result<Vec<String>> {
    parse_json_or_commas(s, key, path, |x| Some(x.to_string()))
}

/// Save a classifier and its metadata (atomically).
pub fn save_classifier(gpu: &Gpu, path: &Path, vgg: &Vgg, meta: &ClsMeta) -> Result<()> {
    let c = &vgg.config;
    let tensors: Vec<_> = vgg
        .params
        .iter()
        .chain(&vgg.buffers)
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec(gpu)))
        .collect();
    let widths: Vec<String> = c.widths.iter().map(|w| w.to_string()).collect();
    let mut m = BTreeMap::new();
    m.insert("architecture".into(), CLASSIFIER_ARCHITECTURE.into());
    m.insert("in_channels".into(), c.in_channels.to_string());
    m.insert("size".into(), c.size.to_string());
    m.insert("widths".into(), format!("[{}]", widths.join(",")));
    m.insert("fc".into(), c.fc.to_string());
    m.insert("classes".into(), c.classes.to_string());
    m.insert("regularisation".into(), c.reg.describe());
    match c.depth {
        None => {
            m.insert("dims".into(), "2".into());
        }
        Some(d) => {
            m.insert("dims".into(), "3".into());
            m.insert("depth".into(), d.to_string());
        }
    }
    m.insert("features".into(), meta.features.name().into());
    m.insert("channel_mean".into(), floats(&meta.stats.mean));
    m.insert("channel_std".into(), floats(&meta.stats.std));
    m.insert("class_weights".into(), floats(&meta.class_weights));
    m.insert("disease".into(), meta.disease.clone());
    m.insert("class_names".into(), strings(&meta.class_names));
    m.insert(
        "seg".into(),
        serde_json::json!({"channels": meta.seg.0, "labels": meta.seg.1, "size": meta.seg.2})
            .to_string(),
    );
    m.insert("training".into(), meta.training.clone());
    m.insert("seg_sha256".into(), meta.seg_sha256.clone());
    save(path, &tensors, &m)
}

/// Load a classifier saved by [`save_classifier`], checking its architecture and tensors.
pub fn load_classifier(gpu: &Gpu, path: &Path) -> Result<(Vgg, ClsMeta)> {
    let ck = load(path)?;
    let arch = ck.meta("architecture", path)?;
    if arch != CLASSIFIER_ARCHITECTURE {
        bail!(
            "{}: architecture '{arch}' is not a segfeat classifier ({CLASSIFIER_ARCHITECTURE})",
            path.display()
        );
    }
    let widths = parse_json_or_commas(ck.meta("widths", path)?, "widths", path, |w| {
        w.parse::<usize>().ok()
    })
    .ok()
    .and_then(|v| <[usize; 5]>::try_from(v).ok())
    .ok_or_else(|| Error(format!("{}: 'widths' must be five numbers", path.display())))?;
    let config = VggConfig {
        in_channels: ck.meta_usize("in_channels", path)?,
        size: ck.meta_usize("size", path)?,
        widths,
        fc: ck.meta_usize("fc", path)?,
        classes: ck.meta_usize("classes", path)?,
        // Absent from files written before the option existed: the paper's network.
        reg: match ck.metadata.get("regularisation") {
            Some(r) => {
                Regularisation::parse(r).map_err(|e| Error(format!("{}: {e}", path.display())))?
            }
            None => Regularisation::default(),
        },
        depth: match is_3d(&ck, path)? {
            true => Some(ck.meta_usize("depth", path)?),
            false => None,
        },
    };
    let vgg = Vgg::from_arrays(gpu, config.clone(), |name| ck.tensors.get(name).cloned())
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let features = Combo::parse(ck.meta("features", path)?)
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let mean = parse_floats(ck.meta("channel_mean", path)?, "channel_mean", path)?;
    let std = parse_floats(ck.meta("channel_std", path)?, "channel_std", path)?;
    let cw = parse_floats(ck.meta("class_weights", path)?, "class_weights", path)?;
    let disease = ck.meta("disease", path)?.to_string();
    // Absent from files written before multi-class classifiers: normal and the disease.
    let class_names = match ck.metadata.get("class_names") {
        Some(c) => parse_strings(c, "class_names", path)?,
        None => vec!["normal".to_string(), disease.clone()],
    };
    if class_names.len() != config.classes {
        bail!(
            "{}: {} class names for {} classes",
            path.display(),
            class_names.len(),
            config.classes
        );
    }
    if mean.len() != config.in_channels
        || std.len() != config.in_channels
        || cw.len() != config.classes
    {
        bail!(
            "{}: channel statistics or class weights do not match {} input channels",
            path.display(),
            config.in_channels
        );
    }
    // {"channels", "labels", "size"}, or "channels,labels,size" in older files.
    let seg_text = ck.meta("seg", path)?;
    let seg: Option<Vec<usize>> = match serde_json::from_str::<serde_json::Value>(seg_text) {
        Ok(v) if v.is_object() => ["channels", "labels", "size"]
            .iter()
            .map(|k| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize))
            .collect(),
        _ => seg_text.split(',').map(|x| x.trim().parse().ok()).collect(),
    };
    let Some([sc, sl, ss]) = seg.and_then(|v| <[usize; 3]>::try_from(v).ok()) else {
        bail!(
            "{}: 'seg' must name the segmentation network's channels, labels and size",
            path.display()
        );
    };
    let meta = ClsMeta {
        features,
        stats: ChannelStats { mean, std },
        class_weights: cw,
        disease,
        class_names,
        seg: (sc, sl, ss),
        training: ck.metadata.get("training").cloned().unwrap_or_default(),
        seg_sha256: ck.metadata.get("seg_sha256").cloned().unwrap_or_default(),
    };
    Ok((vgg, meta))
}
