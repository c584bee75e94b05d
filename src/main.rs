//! The `segfeat` command line: one subcommand, one function; parsing and messages only.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use segfeat::data::augment::Augment;
use segfeat::data::volume::{Axis, Window};
use segfeat::data::{self, folder, phantom::PhantomSpec, Dataset, Group};
use segfeat::gpu::jobs::default_jobs;
use segfeat::nn::checkpoint;
use segfeat::nn::vgg::Regularisation;
use segfeat::nn::{Preset, UnetConfig};
use segfeat::protocol::experiment::{ClassifierKind, Execution, Regularised, SplitBy};
use segfeat::protocol::{report as reports, Protocol, Shard};
use segfeat::train::cls::{self, ClsTrainOptions};
use segfeat::train::features::Combo;
use segfeat::train::{cv, seg, SegTrainOptions};
use segfeat::{bail, Error, Gpu, Result};

#[derive(Parser)]
#[command(
    name = "segfeat",
    version,
    about = "Disease detection from segmentation features on a hand-written WGSL engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter, the one segfeat would choose, its backend and the limits that matter.
    Info,
    /// Print the U-Net's layers: output shape, parameters and forward FLOPs, with totals.
    Summary {
        /// Channels of the first convolution (n).
        #[arg(long, default_value_t = 16)]
        channels: usize,
        /// Input height and width (a multiple of 16).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Output labels (N).
        #[arg(long, default_value_t = 6)]
        labels: usize,
        /// The 3-D network (3x3x3 convolutions), on volumes of --depth slices.
        #[arg(long = "3d")]
        three_d: bool,
        /// Slices of the 3-D network's input volumes.
        #[arg(long, default_value_t = 16, requires = "three_d")]
        depth: usize,
        /// The 3-D network's depth factor (2 or 1) of each of the four poolings, like
        /// 2,2,1,1. Default: 2 while the depth stays at least 2.
        #[arg(long, requires = "three_d")]
        depth_pool: Option<String>,
    },
    /// Write the synthetic cardiac CT set (normals and both diseases) as a data folder.
    Phantom {
        #[command(flatten)]
        spec: PhantomArgs,
        /// Output folder (gets images/, masks/ and manifest.csv).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the segmentation network on normal images.
    TrainSeg {
        #[command(flatten)]
        data: DataArgs,
        /// Channels of the first convolution (n).
        #[arg(long, default_value_t = 16)]
        channels: usize,
        #[command(flatten)]
        train: TrainArgs,
        /// Patients to train on (comma-separated ids; default: every normal patient).
        #[arg(long)]
        patients: Option<String>,
        /// Model file to write (safetensors), updated after every epoch.
        #[arg(long)]
        out: PathBuf,
        /// Continue the training saved in --out from its last epoch.
        #[arg(long)]
        resume: bool,
    },
    /// Dice of each label, and their mean, of a model on a data set.
    EvalSeg {
        /// Model file (safetensors) written by train-seg.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Patients to evaluate (comma-separated ids; default: every patient).
        #[arg(long)]
        patients: Option<String>,
        /// Also write the per-image and per-label Dice as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// k-fold cross-validation by patient for several n (the paper's Table 1); resumable.
    CvSeg {
        #[command(flatten)]
        data: DataArgs,
        /// The values of n to compare, comma-separated.
        #[arg(long = "channels", default_value = "8,16,32,64")]
        channel_list: String,
        #[arg(long, default_value_t = 4)]
        folds: usize,
        #[command(flatten)]
        train: TrainArgs,
        /// Folds trained at once, each on a device of its own with its own network, Adam
        /// state and activations. On 2 CPU cores, 2 paid for small networks only (1.25x
        /// for n=8 at 64x64, nothing for n=16). Results are the same bits either way.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// Output folder: cv.jsonl (as folds finish), cv.md, cv.csv, one model per fold.
        #[arg(long)]
        out: PathBuf,
    },
    /// Segment one image: an overlay PNG with one colour per label, optionally the probabilities.
    Segment {
        #[arg(long)]
        model: PathBuf,
        /// A grayscale PNG, JPEG or TIFF (any size; fitted to the model's input keeping
        /// its aspect ratio).
        #[arg(long)]
        input: PathBuf,
        /// The overlay PNG to write, at the input's size.
        #[arg(long)]
        out: PathBuf,
        /// Also write the label map at the input's size: a PNG of label indices.
        #[arg(long)]
        label_map: Option<PathBuf>,
        /// Also write the softmax probabilities (labels, H, W) at the input's size as
        /// safetensors.
        #[arg(long)]
        probs: Option<PathBuf>,
    },
    /// Train one disease classifier on segmentation features (k positives + negatives), test it.
    TrainCls {
        /// Segmentation model (safetensors) whose features the classifier reads.
        #[arg(long)]
        seg: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// The disease to detect against normal (effusion, septal, or a manifest's group).
        #[arg(long, required_unless_present = "classes")]
        disease: Option<String>,
        /// Instead of --disease, a multi-class classifier's classes, comma-separated
        /// (`normal,effusion,septal`, or diseases alone): k images of each disease class.
        #[arg(long, conflicts_with = "disease")]
        classes: Option<String>,
        /// Feature combination: img, seg, img+seg, concat or img+concat.
        #[arg(long, default_value = "concat")]
        features: String,
        /// Positive training images (k).
        #[arg(long, default_value_t = 10)]
        positives: usize,
        /// Which random split of the protocol to use (repetition index, from 0); the split
        /// and seeds are those of the experiment's run with this repetition and k.
        #[arg(long, default_value_t = 0)]
        rep: usize,
        #[command(flatten)]
        protocol: ProtocolArgs,
        /// Classifier file to write (safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Probability of disease of one image, from a classifier and its segmentation model.
    Classify {
        /// Segmentation model the classifier was trained on.
        #[arg(long)]
        seg: PathBuf,
        /// Classifier (safetensors) written by train-cls.
        #[arg(long)]
        model: PathBuf,
        /// Grayscale PNG, JPEG or TIFF images, or folders of them (fitted to the
        /// segmentation network's input keeping their aspect ratio); for a 3-D model,
        /// volumes: NIfTI files, DICOM series folders, or folders of NIfTI files (read as
        /// the model's training volumes were, stacked to its depth). Repeatable.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Also write the predictions as CSV: image, P(disease), decision.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// The few-positive protocol: every disease x combination x k x repetition; resumable.
    Experiment {
        /// Segmentation model (trained on normal images only).
        #[arg(long)]
        seg: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Diseases, comma-separated: each is detected against normal (the paper).
        #[arg(long, default_value = "effusion,septal")]
        diseases: String,
        /// Instead of --diseases, one multi-class task: its classes, comma-separated
        /// (`normal,effusion,septal`, or diseases alone); k training images of each
        /// disease class, and the training negatives when normal is a class.
        #[arg(long, conflicts_with = "diseases")]
        classes: Option<String>,
        /// Feature combinations, comma-separated.
        #[arg(long, default_value = "img,seg,img+seg,concat,img+concat")]
        features: String,
        /// Values of k: a range A..B or a comma-separated list.
        #[arg(long, default_value = "1..10")]
        positives: String,
        /// Repetitions (random splits).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        #[command(flatten)]
        protocol: ProtocolArgs,
        /// Run only shard I of K (0 <= I < K): every K-th run, starting at run I.
        #[arg(long)]
        shard: Option<String>,
        /// Classifiers trained at once, each on a device of its own (default: 2 on a CPU
        /// adapter with 2 or more cores, else 1). Results are the same bits either way.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: Option<u32>,
        /// Classifiers run on every combination: vgg (the paper's), vgg-reg (with the
        /// regularisation and augmentation flags below) and svm (linear, on pooled features).
        #[arg(long, default_value = "vgg")]
        classifiers: String,
        /// Output folder: runs.jsonl (as runs finish), summary.csv, report.md, figures.
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge the runs of experiment folders (shards) into one report.
    Report {
        /// Experiment folders (each with runs*.jsonl).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write summary.csv, report.md and the figures (default: the first folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two experiments run on the same patients (a 2-D and a 3-D network, say), run
    /// by run: kappa and AUC of each, and their paired differences with 95% intervals.
    Compare {
        /// The first experiment folder (the baseline).
        first: PathBuf,
        /// The second experiment folder.
        second: PathBuf,
        /// Names of the two in the table, comma-separated.
        #[arg(long, default_value = "A,B")]
        names: String,
        /// Also write the table (Markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The whole method on the built-in phantom: data, segmentation, protocol, report.
    Demo {
        /// Output folder (resumable: run again to continue).
        #[arg(long, default_value = "segfeat-demo")]
        out: PathBuf,
        /// quick: a reduced protocol that fits 2 CPU cores in 15 minutes; mid: the full
        /// protocol at 64x64 with patient splits, an hour or more there; paper: the paper's scale.
        #[arg(long, default_value = "quick")]
        preset: String,
        /// Classifiers trained at once, as for `experiment`.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: Option<u32>,
        #[command(flatten)]
        overrides: DemoOverrides,
    },
}

/// Changes to a demo preset's plan, for ablations (each one is recorded in the experiment's
/// settings or the segmentation model's metadata, so folders of different plans are never
/// mixed).
#[derive(Args, Clone)]
struct DemoOverrides {
    /// The classifier's learning rate.
    #[arg(long)]
    cls_lr: Option<f32>,
    /// Values of k: a range A..B or a comma-separated list.
    #[arg(long)]
    positives: Option<String>,
    /// Repetitions.
    #[arg(long)]
    reps: Option<usize>,
    /// Feature combinations, comma-separated.
    #[arg(long)]
    features: Option<String>,
    /// Epochs of the segmentation network's training.
    #[arg(long)]
    seg_epochs: Option<usize>,
    /// Feed the classifier its inputs as they are, without standardising each channel.
    #[arg(long)]
    no_standardise: bool,
    /// Classifiers run on every combination: vgg, vgg-reg, svm (as for `experiment`).
    #[arg(long)]
    classifiers: Option<String>,
    /// vgg-reg's settings (as for `experiment`).
    #[command(flatten)]
    reg: RegArgs,
}

#[derive(Args, Clone)]
struct ProtocolArgs {
    /// Classifier size: quick (widths / 16, fully connected 32, 32x32), mid (quick's widths at
    /// 64x64, learning rate 1e-3, split by patient) or paper (VGG-16, 4096, 256x256).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Override the preset's width multiplier of VGG-16's block widths.
    #[arg(long)]
    width: Option<f64>,
    /// Override the preset's fully connected width.
    #[arg(long)]
    fc: Option<usize>,
    /// Override the preset's classifier input size (a multiple of 32).
    #[arg(long)]
    cls_size: Option<usize>,
    /// Negative images to train on, per run.
    #[arg(long, default_value_t = 50)]
    negatives_train: usize,
    /// Negative images to test on, per run.
    #[arg(long, default_value_t = 50)]
    negatives_test: usize,
    /// Positive images set aside per repetition for training (k is at most this).
    #[arg(long, default_value_t = 10)]
    pool: usize,
    /// Positive images to test on, per run.
    #[arg(long, default_value_t = 20)]
    positives_test: usize,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 10)]
    batches_per_epoch: usize,
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Adam's learning rate for the classifier (default: the preset's; 1e-4 for quick and
    /// paper, 1e-3 for mid).
    #[arg(long)]
    lr: Option<f32>,
    /// Split each repetition's images by image (the paper) or by patient (no patient on
    /// both sides). Default: patient for a folder whose manifest names patients, and for
    /// the mid preset; image otherwise.
    #[arg(long)]
    split: Option<String>,
    /// Seed of the splits, weights and batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    reg: RegArgs,
}

/// The VGG's regularisation and the classifier's augmentation. For `train-cls` they apply
/// to its classifier (default: none, the paper's); for `experiment` they set the `vgg-reg`
/// classifier (default: batch norm, dropout 0.5, leaky 0.01 and the recommended
/// augmentation; giving any of these flags replaces that whole set).
#[derive(Args, Clone)]
struct RegArgs {
    /// Batch normalisation after every convolution and hidden fully connected layer.
    #[arg(long)]
    bn: bool,
    /// Dropout probability after fc1 and fc2.
    #[arg(long)]
    dropout: Option<f32>,
    /// Leaky ReLU slope for every activation (0: ReLU).
    #[arg(long)]
    leaky: Option<f32>,
    /// Global average pooling in place of flattening before fc1.
    #[arg(long)]
    gap: bool,
    #[command(flatten)]
    augment: AugmentArgs,
}

impl RegArgs {
    fn regularised(&self, default: Regularised) -> Result<Regularised> {
        let given = self.bn
            || self.gap
            || self.dropout.is_some()
            || self.leaky.is_some()
            || self.augment.given();
        if !given {
            return Ok(default);
        }
        let reg = Regularisation {
            bn: self.bn,
            dropout: self.dropout.unwrap_or(0.0),
            leaky: self.leaky.unwrap_or(0.0),
            gap: self.gap,
        };
        reg.validate()?;
        Ok(Regularised {
            reg,
            augment: self.augment.augment()?,
        })
    }
}

impl ProtocolArgs {
    fn protocol(&self) -> Result<Protocol> {
        let preset = Preset::parse(&self.preset)?;
        let (width, fc, size) = preset.shape();
        Ok(Protocol {
            negatives_train: self.negatives_train,
            negatives_test: self.negatives_test,
            pool: self.pool,
            positives_test: self.positives_test,
            seed: self.seed,
            width: self.width.unwrap_or(width),
            fc: self.fc.unwrap_or(fc),
            size: self.cls_size.unwrap_or(size),
            train: ClsTrainOptions {
                batch: self.batch,
                batches_per_epoch: self.batches_per_epoch,
                epochs: self.epochs,
                lr: self.lr.unwrap_or(preset.cls_lr()),
                ..ClsTrainOptions::default()
            },
            split: match &self.split {
                Some(s) => SplitBy::parse(s)?,
                None if preset == Preset::Mid => SplitBy::Patient,
                None => SplitBy::Image,
            },
            ..Protocol::default()
        })
    }
}

/// Parse `A..B` or `a,b,c` into positive counts.
fn parse_counts(s: &str, flag: &str) -> Result<Vec<usize>> {
    let bad = || {
        Error(format!(
            "--{flag} must be a range A..B or a comma-separated list of numbers, got '{s}'"
        ))
    };
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b {
            return Err(bad());
        }
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| bad()))
        .collect()
}

fn parse_diseases(s: &str) -> Result<Vec<Group>> {
    let mut out = Vec::new();
    for d in s.split(',').filter(|d| !d.trim().is_empty()) {
        match Group::parse(d) {
            Some(g) if g != Group::Normal => {
                if !out.contains(&g) {
                    out.push(g)
                }
            }
            _ => bail!(
                "unknown disease '{d}' (effusion, septal, or a group of the data's manifest: letters, digits, '-' and '_')"
            ),
        }
    }
    Ok(out)
}

/// The classes of a multi-class task: `normal` and disease names, in output order.
fn parse_classes(s: &str, normal: &str) -> Result<Vec<Group>> {
    let mut out = Vec::new();
    for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let g = if c.eq_ignore_ascii_case(normal.trim()) {
            Some(Group::Normal)
        } else {
            Group::parse(c)
        };
        let Some(g) = g else {
            bail!(
                "--classes: '{c}' is not normal or a disease name of letters, digits, '-' and '_'"
            );
        };
        if out.contains(&g) {
            bail!("--classes lists {} more than once", g.name());
        }
        out.push(g);
    }
    if out.len() < 2 {
        bail!("--classes needs at least two classes, got '{s}'");
    }
    Ok(out)
}

#[derive(Args, Clone)]
struct DataArgs {
    /// A data folder (images/ and masks/ with matching names: PNG, JPEG or TIFF images with
    /// PNG or TIFF masks, NIfTI volumes or DICOM series folders with label volumes), or
    /// `phantom` for the built-in generator.
    #[arg(long)]
    data: String,
    /// CSV (r,g,b,label) mapping the masks' colours to labels.
    #[arg(long)]
    palette: Option<PathBuf>,
    /// Label names in index order (a folder's masks must use indices below their count).
    #[arg(long, default_value = "BG,RA,LA,RV,LV,Myo")]
    label_names: String,
    /// Seed of the phantom (with --data phantom).
    #[arg(long, default_value_t = 1)]
    phantom_seed: u64,
    /// NIfTI volumes' intensity window mapped to [0, 1], after their rescale slope and
    /// intercept: LO,HI (Hounsfield units for CT) or `auto` (each volume's 0.5th to 99.5th
    /// percentile, for MRI). Default: the model's, when it was trained on volumes, else the
    /// phantom's cardiac window -250,450.
    #[arg(long, allow_hyphen_values = true)]
    window: Option<String>,
    /// The axis NIfTI volumes are sliced along: x, y or z. Default: the model's, else z.
    #[arg(long)]
    axis: Option<String>,
    /// The manifest's name of the normal group (any other group is a disease).
    #[arg(long, default_value = "normal")]
    normal: String,
    /// Read each patient's volume as one sample of this many slices, for the 3-D
    /// networks: with --data phantom the 3-D phantom (one volume per patient); in a folder,
    /// NIfTI volumes and DICOM series cropped to their middle slices or padded with empty
    /// ones, or 2-D images grouped by patient (the manifest's, else the name before its
    /// first `_`) in name order, as slices. Default: the model's, for a 3-D model.
    #[arg(long)]
    depth: Option<usize>,
    /// With --depth, 2-D images made of the volumes' slices instead, for the 2-D networks
    /// on the same patients: `all` of them, or each volume's `middle` one.
    #[arg(long, requires = "depth")]
    slices: Option<String>,
}

impl DataArgs {
    /// How to read volumes: the flags, else what `model_normalisation` (a model's
    /// `input_normalisation`) records, else the defaults.
    fn read_options(&self, model_normalisation: Option<&str>) -> Result<folder::ReadOptions> {
        let recorded = model_normalisation.and_then(folder::ReadOptions::from_normalisation);
        let base = recorded.unwrap_or_default();
        Ok(folder::ReadOptions {
            window: match &self.window {
                Some(w) => Window::parse(w)?,
                None => base.window,
            },
            axis: match &self.axis {
                Some(a) => Axis::parse(a)?,
                None => base.axis,
            },
            normal: self.normal.clone(),
            depth: self.depth,
        })
    }

    /// The data these flags ask for, given the model that will read it (None when the
    /// data trains a new one): a 3-D model reads volumes of its depth, a 2-D model images.
    fn with_model_depth(&self, model: Option<&UnetConfig>) -> Result<DataArgs> {
        let mut a = self.clone();
        match model.map(|c| c.volume.as_ref().map(|v| v.depth)) {
            Some(Some(d)) => {
                if a.slices.is_some() {
                    bail!("the model is 3-D: it reads volumes of {d} slices, not --slices");
                }
                match a.depth {
                    Some(g) if g != d => {
                        bail!("the model reads volumes of {d} slices, but --depth is {g}")
                    }
                    _ => a.depth = Some(d),
                }
            }
            Some(None) if a.depth.is_some() && a.slices.is_none() => bail!(
                "the model is 2-D: it reads images; give --slices all or middle to read the volumes' slices"
            ),
            _ => {}
        }
        Ok(a)
    }
}

/// Say so when data is normalised otherwise than the model's training data was.
fn check_normalisation(data: &str, model: &str, what: &str) {
    if data != model {
        eprintln!(
            "warning: {what}: read as \"{data}\", but the model was trained on \"{model}\"; if the intensities differ, its outputs mean little (give the model's --window and --axis, or retrain)"
        );
    }
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Input height and width (a multiple of 16); images are resized to it.
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    batches_per_epoch: usize,
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = segfeat::train::DEFAULT_LR)]
    lr: f32,
    /// Seed of the weights and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Volumes (--depth): the depth factor (2 or 1) of each of the four poolings, like
    /// 2,2,1,1 (thick slices keep their depth with 1). Default: 2 while the depth stays at
    /// least 2.
    #[arg(long)]
    depth_pool: Option<String>,
    #[command(flatten)]
    augment: AugmentArgs,
}

/// Augmentation ranges (all off by default, as in the paper); see src/data/augment.rs.
#[derive(Args, Clone)]
struct AugmentArgs {
    /// A whole set at once: `recommended` (the README's), `none`, or KEY=VALUE,... with
    /// the keys below; a flag below overrides its key. Default: none.
    #[arg(long)]
    augment: Option<String>,
    /// Rotation range in degrees (uniform in [-R, R]).
    #[arg(long)]
    rotate: Option<f64>,
    /// Zoom range: a factor log-uniform in [1/(1+S), 1+S].
    #[arg(long)]
    scale: Option<f64>,
    /// Stretch range: x by e, y by 1/e, e log-uniform in [1/(1+S), 1+S].
    #[arg(long)]
    stretch: Option<f64>,
    /// Shear range in degrees.
    #[arg(long)]
    shear: Option<f64>,
    /// Translation range, a fraction of the size in each axis.
    #[arg(long)]
    translate: Option<f64>,
    /// Mirror with probability 1/2: h (left-right), v (top-bottom), hv (both) or none.
    #[arg(long)]
    flip: Option<String>,
    /// Crop-and-resize: crop side uniform in [1-C, 1] of the size, resized back.
    #[arg(long)]
    crop: Option<f64>,
    /// Contrast range: a factor in [1-C, 1+C] about the image's mean.
    #[arg(long)]
    contrast: Option<f64>,
    /// Brightness range: an offset in [-B, B].
    #[arg(long)]
    brightness: Option<f64>,
    /// Gamma range: log-uniform in [exp(-G), exp(G)].
    #[arg(long)]
    gamma: Option<f64>,
    /// Noise: Gaussian with standard deviation uniform in [0, N].
    #[arg(long)]
    noise: Option<f64>,
}

impl AugmentArgs {
    /// Whether any augmentation flag was given.
    fn given(&self) -> bool {
        self.augment.is_some()
            || [
                self.rotate,
                self.scale,
                self.stretch,
                self.shear,
                self.translate,
                self.crop,
                self.contrast,
                self.brightness,
                self.gamma,
                self.noise,
            ]
            .iter()
            .any(Option::is_some)
            || self.flip.is_some()
    }

    fn augment(&self) -> Result<Augment> {
        let mut a = Augment::parse(self.augment.as_deref().unwrap_or("none"))?;
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut a.rotate, self.rotate);
        set(&mut a.scale, self.scale);
        set(&mut a.stretch, self.stretch);
        set(&mut a.shear, self.shear);
        set(&mut a.translate, self.translate);
        set(&mut a.crop, self.crop);
        set(&mut a.contrast, self.contrast);
        set(&mut a.brightness, self.brightness);
        set(&mut a.gamma, self.gamma);
        set(&mut a.noise, self.noise);
        if let Some(f) = &self.flip {
            (a.flip_h, a.flip_v) = match f.as_str() {
                "h" => (true, false),
                "v" => (false, true),
                "hv" | "vh" => (true, true),
                "none" => (false, false),
                _ => bail!("--flip must be h, v, hv or none, got '{f}'"),
            };
        }
        a.validate()?;
        Ok(a)
    }
}

impl TrainArgs {
    fn options(&self, channels: usize) -> Result<SegTrainOptions> {
        Ok(SegTrainOptions {
            channels,
            size: self.size,
            epochs: self.epochs,
            batches_per_epoch: self.batches_per_epoch,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            augment: self.augment.augment()?,
            depth_pool: self
                .depth_pool
                .as_deref()
                .map(segfeat::nn::VolumeShape::parse_pool)
                .transpose()?,
            progress: true,
        })
    }
}

#[derive(Args, Clone)]
struct PhantomArgs {
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 40)]
    normal_patients: usize,
    /// Slices per normal patient, as MIN..MAX.
    #[arg(long, default_value = "9..12")]
    slices: String,
    /// Images of pericardial effusion.
    #[arg(long, default_value_t = 30)]
    effusion: usize,
    /// Images of septal defect.
    #[arg(long, default_value_t = 30)]
    septal: usize,
    /// Effusion thickness at severity 0..1, in heart half-lengths (about 50 px at 256).
    #[arg(long, default_value = "0.02..0.2")]
    effusion_thickness: String,
    /// Fraction of the circumference the effusion covers at severity 0..1.
    #[arg(long, default_value = "0.25..1")]
    effusion_coverage: String,
    /// Septal defect width at severity 0..1, in heart half-lengths.
    #[arg(long, default_value = "0.03..0.3")]
    defect_width: String,
    /// The 3-D phantom: one volume of this many slices per patient (and one diseased
    /// patient per disease image), written as NIfTI volumes in Hounsfield units with label
    /// volumes.
    #[arg(long)]
    depth: Option<usize>,
}

fn range<T: std::str::FromStr>(s: &str, flag: &str) -> Result<(T, T)> {
    let parsed = s
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    parsed.ok_or_else(|| Error(format!("--{flag} must be a range MIN..MAX, got '{s}'")))
}

impl PhantomArgs {
    fn spec(&self) -> Result<PhantomSpec> {
        Ok(PhantomSpec {
            size: self.size,
            seed: self.seed,
            normal_patients: self.normal_patients,
            slices: range(&self.slices, "slices")?,
            effusion_images: self.effusion,
            septal_images: self.septal,
            effusion_thickness: range(&self.effusion_thickness, "effusion-thickness")?,
            effusion_coverage: range(&self.effusion_coverage, "effusion-coverage")?,
            defect_width: range(&self.defect_width, "defect-width")?,
            volume_depth: self.depth,
            ..PhantomSpec::default()
        })
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Summary {
            channels,
            size,
            labels,
            three_d,
            depth,
            depth_pool,
        } => summary(
            channels,
            size,
            labels,
            three_d.then_some((depth, depth_pool.as_deref())),
        ),
        Command::Phantom { spec, out } => write_phantom(&spec, &out),
        Command::TrainSeg {
            data,
            channels,
            train,
            patients,
            out,
            resume,
        } => train
            .options(channels)
            .and_then(|o| train_seg(&data, &o, patients.as_deref(), &out, resume)),
        Command::EvalSeg {
            model,
            data,
            patients,
            json,
        } => eval_seg(&model, &data, patients.as_deref(), json.as_deref()),
        Command::CvSeg {
            data,
            channel_list,
            folds,
            train,
            jobs,
            out,
        } => cv_seg(&data, &channel_list, folds, &train, jobs, &out),
        Command::Segment {
            model,
            input,
            out,
            label_map,
            probs,
        } => segment(&model, &input, &out, label_map.as_deref(), probs.as_deref()),
        Command::TrainCls {
            seg,
            data,
            disease,
            classes,
            features,
            positives,
            rep,
            protocol,
            out,
        } => train_cls(
            &seg,
            &data,
            disease.as_deref(),
            classes.as_deref(),
            &features,
            positives,
            rep,
            &protocol,
            &out,
        ),
        Command::Classify {
            seg,
            model,
            input,
            csv,
        } => classify(&seg, &model, &input, csv.as_deref()),
        Command::Experiment {
            seg,
            data,
            diseases,
            classes,
            features,
            positives,
            reps,
            protocol,
            shard,
            jobs,
            classifiers,
            out,
        } => (|| {
            let classes = classes
                .as_deref()
                .map(|c| parse_classes(c, &data.normal))
                .transpose()?;
            let p = Protocol {
                diseases: match &classes {
                    Some(c) => c.iter().copied().filter(|&g| g != Group::Normal).collect(),
                    None => parse_diseases(&diseases)?,
                },
                classes: classes.unwrap_or_default(),
                combos: Combo::parse_list(&features)?,
                positives: parse_counts(&positives, "positives")?,
                reps,
                classifiers: ClassifierKind::parse_list(&classifiers)?,
                regularised: protocol.reg.regularised(Regularised::default())?,
                ..protocol.protocol()?
            };
            let shard = shard.as_deref().map(Shard::parse).transpose()?;
            experiment(&seg, &data, p, protocol.split.is_none(), shard, jobs, &out)
        })(),
        Command::Report { dirs, out } => report(&dirs, out.as_deref()),
        Command::Compare {
            first,
            second,
            names,
            out,
        } => compare(&first, &second, &names, out.as_deref()),
        Command::Demo {
            out,
            preset,
            jobs,
            overrides,
        } => demo(&out, &preset, jobs, &overrides),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Load `--data` at `size`: the phantom, or a folder checked file by file (volumes read
/// as `model_normalisation` records, unless the flags say otherwise).
fn load_data(args: &DataArgs, size: usize, model_normalisation: Option<&str>) -> Result<Dataset> {
    let names = data::parse_list(&args.label_names);
    if names.len() < 2 {
        bail!(
            "--label-names needs at least two names, got '{}'",
            args.label_names
        );
    }
    if args.data == "phantom" {
        if args.palette.is_some() {
            bail!("--palette applies to a data folder, not to --data phantom");
        }
        let spec = PhantomSpec {
            size,
            seed: args.phantom_seed,
            volume_depth: args.depth,
            ..PhantomSpec::default()
        };
        eprintln!(
            "generating the phantom at {}{size}x{size} (seed {})",
            args.depth.map_or(String::new(), |d| format!("{d}x")),
            args.phantom_seed
        );
        return slices_of(spec.generate()?, args);
    }
    let palette = match &args.palette {
        Some(p) => Some(folder::read_palette(p, names.len())?),
        None => None,
    };
    let opts = args.read_options(model_normalisation)?;
    slices_of(
        folder::load_with(Path::new(&args.data), size, &names, palette.as_ref(), &opts)?,
        args,
    )
}

/// The volumes' slices when --slices asks for them, else the data as it is.
fn slices_of(ds: Dataset, args: &DataArgs) -> Result<Dataset> {
    match &args.slices {
        Some(w) => ds.slices(data::Slices::parse(w)?),
        None => Ok(ds),
    }
}

fn compare(first: &Path, second: &Path, names: &str, out: Option<&Path>) -> Result<()> {
    let n = data::parse_list(names);
    let [a, b] = &n[..] else {
        bail!("--names takes two names, comma-separated, got '{names}'");
    };
    let ra = reports::read_runs(&[first.to_path_buf()])?;
    let rb = reports::read_runs(&[second.to_path_buf()])?;
    let md = reports::compare(&ra, &rb, (a, b))?;
    print!("{md}");
    if let Some(p) = out {
        checkpoint::write_atomic(p, md.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn info() -> Result<()> {
    let (adapters, chosen) = segfeat::gpu::device::list_adapters();
    if adapters.is_empty() {
        return Err(Error(segfeat::gpu::device::NO_ADAPTER_HELP.to_string()));
    }
    println!("adapters ({}):", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        println!(
            "{mark} [{i}] {} ({}, {}) driver: {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let Some(c) = chosen else {
        return Err(Error(
            "no adapter matches SEGFEAT_ADAPTER; the list above shows the names to choose from"
                .into(),
        ));
    };
    let a = &adapters[c];
    let l = &a.limits;
    println!("chosen: [{c}] {} on {}", a.name, a.backend);
    println!(
        "  max storage buffer binding size  {} bytes ({} MiB)",
        l.max_storage_buffer_binding_size,
        l.max_storage_buffer_binding_size >> 20
    );
    println!(
        "  max buffer size                  {} bytes ({} MiB)",
        l.max_buffer_size,
        l.max_buffer_size >> 20
    );
    println!(
        "  storage buffers per shader stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  storage offset alignment         {} bytes",
        l.min_storage_buffer_offset_alignment
    );
    println!(
        "  workgroups per dimension         {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  invocations per workgroup        {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  workgroup storage                {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  subgroups                        {}",
        if a.subgroups {
            format!("{} to {} lanes", a.subgroup_sizes.0, a.subgroup_sizes.1)
        } else {
            "not offered".to_string()
        }
    );
    println!(
        "choose another with SEGFEAT_ADAPTER=<part of its name> or WGPU_BACKEND=vulkan|metal|dx12"
    );
    Ok(())
}

fn summary(
    channels: usize,
    size: usize,
    labels: usize,
    volume: Option<(usize, Option<&str>)>,
) -> Result<()> {
    let config = match volume {
        None => UnetConfig::new(channels, labels, size)?,
        Some((depth, pool)) => {
            let mut v = segfeat::nn::VolumeShape::new(depth);
            if let Some(p) = pool {
                v.depth_pool = segfeat::nn::VolumeShape::parse_pool(p)?;
            }
            UnetConfig::new_3d(channels, labels, size, v)?
        }
    };
    let (what, input, shape_head) = match &config.volume {
        None => ("image", format!("1x{size}x{size}"), "output (C,H,W)"),
        Some(v) => (
            "volume",
            format!(
                "1x{}x{size}x{size}, depth pooled {}",
                v.depth,
                v.describe_pool()
            ),
            "output (C,D,H,W)",
        ),
    };
    println!(
        "U-Net (Wong et al. 2017): n={channels}, {labels} labels, input {input}; FLOPs per {what}"
    );
    println!(
        "{:<14} {:<14} {:>18} {:>12} {:>16}",
        "layer", "kind", shape_head, "params", "forward FLOPs"
    );
    let rows = config.summary();
    for r in &rows {
        println!(
            "{:<14} {:<14} {:>18} {:>12} {:>16}",
            r.name,
            r.kind,
            r.shape_str(),
            r.params,
            r.flops
        );
    }
    let params: u64 = rows.iter().map(|r| r.params).sum();
    let flops: u64 = rows.iter().map(|r| r.flops).sum();
    println!(
        "total: {params} parameters ({:.2} MB as f32), {:.3} GFLOP forward per {what}",
        params as f64 * 4.0 / 1e6,
        flops as f64 / 1e9
    );
    println!("FLOPs: 2 per multiply-add, 1 per bias add and per ELU; pooling, upsampling and concatenation count 0");
    println!(
        "feature maps for the classifier: SEG = out ({labels} channels), CONCAT = concat1 ({} channels)",
        config.concat_channels()
    );
    Ok(())
}

fn write_phantom(args: &PhantomArgs, out: &Path) -> Result<()> {
    let spec = args.spec()?;
    let t0 = std::time::Instant::now();
    let ds = spec.generate()?;
    folder::write(&ds, out)?;
    let count = |g: Group| ds.samples.iter().filter(|s| s.group == g).count();
    println!(
        "wrote {} {} ({} normal from {} patients, {} effusion, {} septal defect) at {}x{} to {} in {:.1} s",
        ds.samples.len(),
        match ds.depth {
            Some(d) => format!("volumes of {d} slices"),
            None => "images".into(),
        },
        count(Group::Normal),
        spec.normal_patients,
        count(Group::Effusion),
        count(Group::Septal),
        spec.size,
        spec.size,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn train_seg(
    data_args: &DataArgs,
    opts: &SegTrainOptions,
    patients: Option<&str>,
    out: &Path,
    resume: bool,
) -> Result<()> {
    UnetConfig::new(opts.channels, 2, opts.size)?;
    if let (Some(d), None) = (data_args.depth, &data_args.slices) {
        let mut v = segfeat::nn::VolumeShape::new(d);
        if let Some(p) = opts.depth_pool {
            v.depth_pool = p;
        }
        UnetConfig::new_3d(opts.channels, 2, opts.size, v)?;
    }
    let all = load_data(data_args, opts.size, None)?;
    let list = patients.map(data::parse_list);
    let ds = all.select(list.as_deref(), &[Group::Normal])?;
    if ds.samples.is_empty() {
        bail!("no normal images to train on in {}", data_args.data);
    }
    let gpu = Gpu::new()?;
    eprintln!(
        "training n={} at {}{}x{} on {} normal {} of {} patients, on {}",
        opts.channels,
        ds.depth.map_or(String::new(), |d| format!("{d}x")),
        opts.size,
        opts.size,
        ds.samples.len(),
        if ds.depth.is_some() {
            "volumes"
        } else {
            "images"
        },
        ds.patients().len(),
        gpu.adapter().name
    );
    seg::train(&gpu, &ds, opts, out, resume)?;
    println!("model: {}", out.display());
    Ok(())
}

fn eval_seg(
    model: &Path,
    data_args: &DataArgs,
    patients: Option<&str>,
    json: Option<&Path>,
) -> Result<()> {
    let gpu = Gpu::new()?;
    let (unet, meta) = checkpoint::load_unet(&gpu, model)?;
    let mut args = data_args.with_model_depth(Some(&unet.config))?;
    args.label_names = meta.label_names.join(",");
    let all = load_data(&args, unet.config.size, Some(&meta.normalisation))?;
    check_normalisation(&all.normalisation, &meta.normalisation, "the data");
    let list = patients.map(data::parse_list);
    // Every group, diseases a manifest names included.
    let mut groups: Vec<Group> = Vec::new();
    for s in &all.samples {
        if !groups.contains(&s.group) {
            groups.push(s.group);
        }
    }
    let ds = all.select(list.as_deref(), &groups)?;
    let seen: Vec<String> = ds
        .patients()
        .into_iter()
        .filter(|p| ds.source == meta.data && meta.patients.contains(p))
        .collect();
    if !seen.is_empty() {
        let shown: Vec<&str> = seen.iter().take(8).map(String::as_str).collect();
        eprintln!(
            "note: {} of the {} patients evaluated were in the model's training set ({}{}); pass --patients to hold them out",
            seen.len(),
            ds.patients().len(),
            shown.join(","),
            if seen.len() > 8 { ",..." } else { "" }
        );
    }
    let report = seg::evaluate(&gpu, &unet, &ds, 10)?;
    let what = if ds.depth.is_some() {
        "volumes"
    } else {
        "images"
    };
    println!(
        "Dice and HD95 ({}) on {} {what} of {} patients (mean +- std over {what} where the label is present in truth or prediction; HD95 where in both{}):",
        report.hd95_unit,
        ds.samples.len(),
        ds.patients().len(),
        if ds.depth.is_some() { ", 2-D images only" } else { "" }
    );
    for (l, name) in meta.label_names.iter().enumerate().skip(1) {
        let (m, s, n) = report.label_stats(l);
        let (hm, hs, hn) = report.hd95_stats(l);
        println!("  {name:<6} Dice {m:.4} +- {s:.4}  ({n} {what})   HD95 {hm:.2} +- {hs:.2}  ({hn} {what})");
    }
    println!("  mean   {:.4}", report.mean());
    if let Some(p) = json {
        let mut v = report.to_json();
        v["model"] = serde_json::json!(model.display().to_string());
        v["data"] = serde_json::json!(data_args.data);
        checkpoint::write_atomic(p, format!("{v:#}\n").as_bytes())?;
        println!(
            "wrote {} (the columns of `dice` and `hd95`, per image and per patient, are the labels of `columns`, in order)",
            p.display()
        );
    }
    Ok(())
}

fn cv_seg(
    data_args: &DataArgs,
    channel_list: &str,
    folds: usize,
    train: &TrainArgs,
    jobs: u32,
    out: &Path,
) -> Result<()> {
    let channels: Vec<usize> = channel_list
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&n: &usize| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error(format!(
                "--channels must be a comma-separated list of positive numbers, got '{channel_list}'"
            ))
        })?;
    let opts = train.options(channels[0])?;
    UnetConfig::new(1, 2, opts.size)?;
    let ds = load_data(data_args, opts.size, None)?;
    let gpu = Gpu::new()?;
    let md = cv::run(&gpu, &ds, &channels, folds, &opts, out, jobs as usize)?;
    println!("{md}");
    println!(
        "wrote {} and {}",
        out.join("cv.md").display(),
        out.join("cv.csv").display()
    );
    Ok(())
}

fn segment(
    model: &Path,
    input: &Path,
    out: &Path,
    label_map: Option<&Path>,
    probs: Option<&Path>,
) -> Result<()> {
    for (flag, p) in [
        ("--out", Some(out)),
        ("--label-map", label_map),
        ("--probs", probs),
    ] {
        let Some(p) = p else { continue };
        if p.is_dir() {
            bail!(
                "{flag} {} is a folder; name the file to write (for example {})",
                p.display(),
                p.join("overlay.png").display()
            );
        }
        let same = |a: &Path, b: &Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if same(p, input) || same(p, model) {
            bail!(
                "{flag} {} would overwrite an input; name another file",
                p.display()
            );
        }
    }
    let named: Vec<&Path> = [Some(out), label_map, probs]
        .into_iter()
        .flatten()
        .collect();
    if (1..named.len()).any(|i| named[..i].contains(&named[i])) {
        bail!("--out, --label-map and --probs must name different files");
    }
    if input.is_dir() || segfeat::data::volume::is_nifti(input) {
        return segment_volume(model, input, out, label_map.is_some() || probs.is_some());
    }
    let gpu = Gpu::new()?;
    let (unet, meta) = checkpoint::load_unet(&gpu, model)?;
    if let Some(v) = &unet.config.volume {
        bail!(
            "{} is a 3-D model (volumes of {} slices): give it a volume (a NIfTI file or a DICOM series folder), not the image {}",
            model.display(),
            v.depth,
            input.display()
        );
    }
    let img = segfeat::limits::open_image(input)
        .map_err(|e| Error(format!("{}: unreadable image: {e}", input.display())))?;
    check_normalisation(
        folder::FLAT_NORMALISATION,
        &meta.normalisation,
        &input.display().to_string(),
    );
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = folder::intensities(&img);
    let labels = seg::segment_image(&gpu, &unet, &pixels, w, h)?;
    let rgb = segfeat::protocol::plot::overlay(&pixels, &labels, w, h, &meta.label_names)
        .map_err(|e| Error(format!("cannot draw {}: {e}", out.display())))?;
    let mut png = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error(format!("cannot encode {}: {e}", out.display())))?;
    checkpoint::write_atomic(out, png.get_ref())?;
    let counts = label_counts(&meta.label_names, &labels);
    println!("wrote {} (pixels per label: {})", out.display(), counts);
    if let Some(p) = label_map {
        let map = image::GrayImage::from_raw(w as u32, h as u32, labels.clone())
            .ok_or_else(|| Error("the label map does not match the input's size".into()))?;
        let mut bytes = std::io::Cursor::new(Vec::new());
        map.write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(|e| Error(format!("cannot encode {}: {e}", p.display())))?;
        checkpoint::write_atomic(p, bytes.get_ref())?;
        println!(
            "wrote {} (label indices at {w}x{h}: {})",
            p.display(),
            meta.label_names
                .iter()
                .enumerate()
                .map(|(l, n)| format!("{l} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(p) = probs {
        let at_input = seg::probabilities_at_input(&gpu, &unet, &pixels, w, h)?;
        let mut md = std::collections::BTreeMap::new();
        md.insert(
            "label_names".to_string(),
            serde_json::json!(meta.label_names).to_string(),
        );
        md.insert("source".to_string(), input.display().to_string());
        checkpoint::save(
            p,
            &[(
                "probs".to_string(),
                vec![unet.config.labels, h, w],
                at_input,
            )],
            &md,
        )?;
        println!("wrote {} (probs: labels x {h} x {w})", p.display());
    }
    Ok(())
}

/// "RA 120, LA 98, ...": how many pixels (or voxels) carry each label but the background.
fn label_counts(names: &[String], labels: &[u8]) -> String {
    let counts: Vec<String> = names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(l, n)| {
            format!(
                "{n} {}",
                labels.iter().filter(|&&v| v as usize == l).count()
            )
        })
        .collect();
    counts.join(", ")
}

/// Segment a volume (NIfTI file or DICOM series folder) slice by slice, read as the
/// model's training data was, into a NIfTI label volume of the same voxels.
fn segment_volume(model: &Path, input: &Path, out: &Path, extras: bool) -> Result<()> {
    use segfeat::data::volume;
    if extras {
        bail!("a volume's segmentation is one label volume: give --out LABELS.nii.gz, without --label-map or --probs");
    }
    if !volume::is_nifti(out) {
        bail!(
            "--out {} must name a NIfTI file (.nii or .nii.gz) for the labels of the volume {}",
            out.display(),
            input.display()
        );
    }
    let gpu = Gpu::new()?;
    let (unet, meta) = checkpoint::load_unet(&gpu, model)?;
    let opts = match folder::ReadOptions::from_normalisation(&meta.normalisation) {
        Some(o) => o,
        None => {
            let o = folder::ReadOptions::default();
            check_normalisation(
                &o.describe_volumes(),
                &meta.normalisation,
                &input.display().to_string(),
            );
            o
        }
    };
    let vol = volume::read_volume(input)?;
    let labels = seg::segment_volume(&gpu, &unet, &vol, &opts)?;
    volume::write_nifti_labels(out, vol.dims, vol.spacing, &labels)?;
    let counts = label_counts(&meta.label_names, &labels);
    println!(
        "wrote {} ({}x{}x{} labels, {} slices along {}; voxels per label: {})",
        out.display(),
        vol.dims[0],
        vol.dims[1],
        vol.dims[2],
        match opts.axis {
            volume::Axis::X => vol.dims[0],
            volume::Axis::Y => vol.dims[1],
            volume::Axis::Z => vol.dims[2],
        },
        opts.axis.name(),
        counts
    );
    Ok(())
}

/// Load a segmentation model and the data at its size (label names from the model).
fn seg_and_data(
    gpu: &Gpu,
    seg_path: &Path,
    data_args: &DataArgs,
) -> Result<(segfeat::nn::Unet, checkpoint::SegMeta, Dataset)> {
    let (unet, meta) = checkpoint::load_unet(gpu, seg_path)?;
    let mut args = data_args.with_model_depth(Some(&unet.config))?;
    args.label_names = meta.label_names.join(",");
    let ds = load_data(&args, unet.config.size, Some(&meta.normalisation))?;
    check_normalisation(&ds.normalisation, &meta.normalisation, "the data");
    Ok((unet, meta, ds))
}

#[allow(clippy::too_many_arguments)]
fn train_cls(
    seg_path: &Path,
    data_args: &DataArgs,
    disease: Option<&str>,
    classes: Option<&str>,
    features: &str,
    k: usize,
    rep: usize,
    args: &ProtocolArgs,
    out: &Path,
) -> Result<()> {
    let classes = classes
        .map(|c| parse_classes(c, &data_args.normal))
        .transpose()?
        .unwrap_or_default();
    let (diseases, disease) = if classes.is_empty() {
        let given = disease.unwrap_or_default();
        let diseases = parse_diseases(given)?;
        let [disease] = diseases[..] else {
            bail!("--disease names one disease (effusion or septal), got '{given}'");
        };
        (diseases, disease)
    } else {
        let diseases: Vec<Group> = classes
            .iter()
            .copied()
            .filter(|&g| g != Group::Normal)
            .collect();
        (diseases, Group::task(&classes))
    };
    let combo = Combo::parse(features)?;
    let chosen = args.reg.regularised(Regularised {
        reg: Regularisation::default(),
        augment: Augment::default(),
    })?;
    let p = Protocol {
        diseases,
        classes: classes.clone(),
        combos: vec![combo],
        positives: vec![k],
        reps: rep + 1,
        ..args.protocol()?
    };
    p.validate()?;
    let gpu = Gpu::new()?;
    let (unet, meta, ds) = seg_and_data(&gpu, seg_path, data_args)?;
    let mut p = p;
    if args.split.is_none() && ds.manifest_patients && p.split == SplitBy::Image {
        eprintln!(
            "the manifest names patients: splitting by patient (--split image to split by image)"
        );
        p.split = SplitBy::Patient;
    }
    p.train.augment = chosen.augment;
    let t = segfeat::protocol::single::train_one(
        &gpu,
        &unet,
        &meta,
        &ds,
        &p,
        disease,
        (combo, k, rep),
        chosen.reg,
        &seg_path.display().to_string(),
    )?;
    println!("{}", t.summary);
    let (c, cm) = (t.classifier, t.meta);
    checkpoint::save_classifier(&gpu, out, &c.vgg, &cm)?;
    println!("classifier: {}", out.display());
    Ok(())
}

fn classify(
    seg_path: &Path,
    model: &Path,
    inputs: &[PathBuf],
    csv_out: Option<&Path>,
) -> Result<()> {
    let gpu = Gpu::new()?;
    let (unet, seg_meta) = checkpoint::load_unet(&gpu, seg_path)?;
    let (vgg, meta) = checkpoint::load_classifier(&gpu, model)?;
    let c = &unet.config;
    if meta.seg_sha256.is_empty() {
        eprintln!(
            "note: {} predates recorded checksums, so whether {} is the segmentation model it was trained with cannot be checked",
            model.display(),
            seg_path.display()
        );
    } else if meta.seg_sha256 != seg_meta.sha256 {
        bail!(
            "{} was trained on the features of another segmentation model than {} (SHA-256 {} recorded, {} found): give the model it was trained with",
            model.display(),
            seg_path.display(),
            &meta.seg_sha256[..meta.seg_sha256.len().min(12)],
            &seg_meta.sha256[..12]
        );
    }
    if meta.seg != (c.channels, c.labels, c.size) {
        bail!(
            "{} was trained on features of a segmentation network with n={}, {} labels, {}x{}, but {} has n={}, {} labels, {}x{}",
            model.display(),
            meta.seg.0,
            meta.seg.1,
            meta.seg.2,
            meta.seg.2,
            seg_path.display(),
            c.channels,
            c.labels,
            c.size,
            c.size
        );
    }
    // The images: files as given, folders expanded to their image files in name order;
    // for a 3-D model, volumes: NIfTI files and DICOM series folders, and folders of them.
    let three_d = c.volume.is_some();
    let mut files = Vec::new();
    for p in inputs {
        // For a 3-D model a folder holding NIfTI files is a folder of volumes; any other
        // folder a DICOM series.
        let holds_nifti = p.is_dir()
            && std::fs::read_dir(p).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| segfeat::data::volume::is_nifti(&e.path())))
            });
        if p.is_dir() && (!three_d || holds_nifti) {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error(format!("cannot list {}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    if three_d {
                        return segfeat::data::volume::is_nifti(f);
                    }
                    f.extension().is_some_and(|x| {
                        ["png", "jpg", "jpeg", "tif", "tiff"]
                            .iter()
                            .any(|e| x.eq_ignore_ascii_case(e))
                    })
                })
                .collect();
            if inside.is_empty() {
                bail!(
                    "{} holds no {}",
                    p.display(),
                    if three_d {
                        "NIfTI volumes"
                    } else {
                        "PNG, JPEG or TIFF images"
                    }
                );
            }
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    // Volumes are read as the segmentation model's training data was.
    let volumes =
        folder::ReadOptions::from_normalisation(&seg_meta.normalisation).unwrap_or_default();
    if !three_d {
        check_normalisation(
            folder::FLAT_NORMALISATION,
            &seg_meta.normalisation,
            "the images",
        );
    }
    let classifier = cls::Classifier {
        vgg,
        combo: meta.features,
        stats: meta.stats,
        class_weights: meta.class_weights,
    };
    let mut table = csv::Writer::from_writer(Vec::new());
    let two = meta.class_names.len() == 2;
    let mut head = vec!["image".to_string()];
    if two {
        head.push(format!("p_{}", meta.disease));
    } else {
        head.extend(meta.class_names.iter().map(|c| format!("p_{c}")));
    }
    head.push("decision".into());
    let _ = table.write_record(&head);
    // In chunks, so that thousands of images never sit in memory at once.
    for chunk in files.chunks(16) {
        let probs =
            segfeat::protocol::single::classify_files(&gpu, &unet, &classifier, chunk, &volumes)?;
        for (f, row) in chunk.iter().zip(probs) {
            let mut record = vec![f.display().to_string()];
            let decision = if two {
                let p = row[1];
                let decision = if p > 0.5 { &meta.disease } else { "normal" };
                println!(
                    "{}: P({}) = {p:.4} -> {decision}",
                    f.display(),
                    meta.disease
                );
                record.push(format!("{p}"));
                decision.to_string()
            } else {
                let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                let all: Vec<String> = meta
                    .class_names
                    .iter()
                    .zip(&row)
                    .map(|(c, p)| format!("{c} {p:.4}"))
                    .collect();
                println!(
                    "{}: {} -> {}",
                    f.display(),
                    all.join(", "),
                    meta.class_names[best]
                );
                record.extend(row.iter().map(|p| format!("{p}")));
                meta.class_names[best].clone()
            };
            record.push(decision);
            let _ = table.write_record(&record);
        }
    }
    if let Some(out) = csv_out {
        let bytes = table
            .into_inner()
            .map_err(|e| Error(format!("cannot write {}: {e}", out.display())))?;
        checkpoint::write_atomic(out, &bytes)?;
        println!("wrote {} ({} images)", out.display(), files.len());
    }
    Ok(())
}

/// Run an experiment; `split_default`: no --split was given, so a folder whose manifest
/// names patients is split by patient.
fn experiment(
    seg_path: &Path,
    data_args: &DataArgs,
    mut p: Protocol,
    split_default: bool,
    shard: Option<Shard>,
    jobs: Option<u32>,
    out: &Path,
) -> Result<()> {
    p.validate()?;
    let gpu = Gpu::new()?;
    let (unet, meta, ds) = seg_and_data(&gpu, seg_path, data_args)?;
    if split_default && ds.manifest_patients && p.split == SplitBy::Image {
        eprintln!(
            "the manifest names patients: splitting by patient (--split image to split by image)"
        );
        p.split = SplitBy::Patient;
    }
    let p = &p;
    let exec = Execution {
        shard,
        jobs: jobs.map_or_else(|| default_jobs(&gpu), |j| j as usize),
        progress: true,
    };
    segfeat::protocol::experiment::run(&gpu, &unet, &meta, &ds, p, out, exec)?;
    let md = reports::write(&[out.to_path_buf()], out)?;
    println!("{md}");
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

fn report(dirs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let out = out.unwrap_or(&dirs[0]);
    let md = reports::write(dirs, out)?;
    println!("{md}");
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

fn demo(out: &Path, preset: &str, jobs: Option<u32>, o: &DemoOverrides) -> Result<()> {
    let mut plan = segfeat::protocol::demo::DemoPlan::new(Preset::parse(preset)?);
    let p = &mut plan.protocol;
    if let Some(lr) = o.cls_lr {
        p.train.lr = lr;
    }
    if let Some(k) = &o.positives {
        p.positives = parse_counts(k, "positives")?;
    }
    if let Some(r) = o.reps {
        p.reps = r;
    }
    if let Some(f) = &o.features {
        p.combos = Combo::parse_list(f)?;
    }
    if o.no_standardise {
        p.train.standardise = false;
    }
    if let Some(c) = &o.classifiers {
        p.classifiers = ClassifierKind::parse_list(c)?;
    }
    p.regularised = o.reg.regularised(Regularised::default())?;
    if let Some(e) = o.seg_epochs {
        if e == 0 {
            bail!("--seg-epochs must be at least 1");
        }
        plan.seg.epochs = e;
    }
    plan.protocol.validate()?;
    let gpu = Gpu::new()?;
    let jobs = jobs.map_or_else(|| default_jobs(&gpu), |j| j as usize);
    let md = segfeat::protocol::demo::run(&gpu, &plan, out, jobs, true)?;
    println!("{md}");
    println!(
        "report: {}",
        out.join("experiment").join("report.md").display()
    );
    Ok(())
}
