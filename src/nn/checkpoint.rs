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

use safetensors::tensor::{Dtype, TensorView};

use crate::nn::vgg::Regularisation;
use crate::nn::{Unet, UnetConfig, Vgg, VggConfig};
use crate::train::features::{ChannelStats, Combo};
use crate::{bail, Error, Gpu, Result};

/// A checkpoint read into host memory.
pub struct Checkpoint {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
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

/// Write `tensors` (name, shape, data) and `metadata` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path` (so a
/// reader sees the old file or the new one, never half of one).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error(format!("cannot create folder {}: {e}", dir.display())))?;
    }
    // The process id keeps concurrent writers (shards sharing a folder) apart.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .map_err(|e| Error(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        Error(format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })
}

/// A process killed while appending to a JSON Lines file can leave a last line without
/// its newline: cut it, so the next line starts clean (the `what`, a run or a fold, that
/// was being recorded is simply done again).
pub fn repair_tail(path: &Path, what: &str) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    eprintln!(
        "note: {} ended in a partial line (a {what} was interrupted while writing); it is dropped and that {what} done again",
        path.display()
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error(format!("cannot open {}: {e}", path.display())))?;
    f.set_len(keep as u64)
        .map_err(|e| Error(format!("cannot truncate {}: {e}", path.display())))
}

/// Append `v` as one line of the JSON Lines file at `path` (created if missing), and
/// flush it to disk before returning: a result recorded is a result kept.
pub fn append_line(path: &Path, v: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error(format!("cannot open {}: {e}", path.display())))?;
    writeln!(f, "{v}")
        .and_then(|_| f.sync_data())
        .map_err(|e| Error(format!("cannot append to {}: {e}", path.display())))
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
    for (name, view) in st.tensors() {
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
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Checkpoint { tensors, metadata })
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
}

pub const ARCHITECTURE: &str = "unet-wong2017";

/// Save a U-Net and its metadata (atomically).
pub fn save_unet(gpu: &Gpu, path: &Path, unet: &Unet, meta: &SegMeta) -> Result<()> {
    let c = &unet.config;
    let tensors: Vec<_> = unet
        .params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec(gpu)))
        .collect();
    let mut m = BTreeMap::new();
    m.insert("architecture".into(), ARCHITECTURE.into());
    m.insert("channels".into(), c.channels.to_string());
    m.insert("labels".into(), c.labels.to_string());
    m.insert("size".into(), c.size.to_string());
    m.insert("in_channels".into(), c.in_channels.to_string());
    m.insert("label_names".into(), meta.label_names.join(","));
    m.insert(
        "class_weights".into(),
        meta.class_weights
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    m.insert("input_normalisation".into(), meta.normalisation.clone());
    m.insert("epochs_done".into(), meta.epochs_done.to_string());
    m.insert("epochs_planned".into(), meta.epochs_planned.to_string());
    m.insert("steps".into(), meta.steps.to_string());
    m.insert("training".into(), meta.training.clone());
    m.insert("train_patients".into(), meta.patients.join(","));
    m.insert("train_data".into(), meta.data.clone());
    save(path, &tensors, &m)
}

/// Load a U-Net saved by [`save_unet`], checking its architecture and every tensor.
pub fn load_unet(gpu: &Gpu, path: &Path) -> Result<(Unet, SegMeta)> {
    let ck = load(path)?;
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
    let unet = Unet::from_arrays(gpu, config.clone(), |name| ck.tensors.get(name).cloned())
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let label_names: Vec<String> = ck
        .meta("label_names", path)?
        .split(',')
        .map(str::to_string)
        .collect();
    let class_weights = ck
        .meta("class_weights", path)?
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error(format!("{}: unreadable class_weights", path.display())))?;
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
        patients: crate::data::parse_list(
            ck.metadata.get("train_patients").map_or("", |s| s.as_str()),
        ),
        data: ck.metadata.get("train_data").cloned().unwrap_or_default(),
    };
    Ok((unet, meta))
}

pub const CLASSIFIER_ARCHITECTURE: &str = "vgg16-wong2017";

/// What a classifier file carries besides its weights: the feature combination it reads,
/// how inputs are standardised, and which segmentation network made its features.
#[derive(Clone, Debug, PartialEq)]
pub struct ClsMeta {
    pub features: Combo,
    pub stats: ChannelStats,
    pub class_weights: [f32; 2],
    pub disease: String,
    /// The segmentation network's (channels, labels, size).
    pub seg: (usize, usize, usize),
    /// Free text: the seed, options and images it was trained on.
    pub training: String,
}

fn floats(v: &[f32]) -> String {
    v.iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_floats(s: &str, key: &str, path: &Path) -> Result<Vec<f32>> {
    s.split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error(format!("{}: unreadable {key}", path.display())))
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
    m.insert("widths".into(), widths.join(","));
    m.insert("fc".into(), c.fc.to_string());
    m.insert("classes".into(), c.classes.to_string());
    m.insert("regularisation".into(), c.reg.describe());
    m.insert("features".into(), meta.features.name().into());
    m.insert("channel_mean".into(), floats(&meta.stats.mean));
    m.insert("channel_std".into(), floats(&meta.stats.std));
    m.insert("class_weights".into(), floats(&meta.class_weights));
    m.insert("disease".into(), meta.disease.clone());
    m.insert(
        "seg".into(),
        format!("{},{},{}", meta.seg.0, meta.seg.1, meta.seg.2),
    );
    m.insert("training".into(), meta.training.clone());
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
    let widths = ck
        .meta("widths", path)?
        .split(',')
        .map(|w| w.trim().parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()
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
    };
    let vgg = Vgg::from_arrays(gpu, config.clone(), |name| ck.tensors.get(name).cloned())
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let features = Combo::parse(ck.meta("features", path)?)
        .map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let mean = parse_floats(ck.meta("channel_mean", path)?, "channel_mean", path)?;
    let std = parse_floats(ck.meta("channel_std", path)?, "channel_std", path)?;
    let cw = parse_floats(ck.meta("class_weights", path)?, "class_weights", path)?;
    if mean.len() != config.in_channels || std.len() != config.in_channels || cw.len() != 2 {
        bail!(
            "{}: channel statistics or class weights do not match {} input channels",
            path.display(),
            config.in_channels
        );
    }
    let seg: Vec<usize> = ck
        .meta("seg", path)?
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let [sc, sl, ss] = seg[..] else {
        bail!("{}: 'seg' must be channels,labels,size", path.display());
    };
    let meta = ClsMeta {
        features,
        stats: ChannelStats { mean, std },
        class_weights: [cw[0], cw[1]],
        disease: ck.meta("disease", path)?.to_string(),
        seg: (sc, sl, ss),
        training: ck.metadata.get("training").cloned().unwrap_or_default(),
    };
    Ok((vgg, meta))
}
