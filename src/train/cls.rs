//! Training the disease classifier on feature maps (paper, sections 2.2 and 3.2): VGG-16
//! (modified for two classes) with weighted cross-entropy, w_l = 1 - (f_l / sum_k f_k)^(1/4)
//! over the training labels, and Adam; the paper's schedule of batch 10, 10 batches per
//! epoch and 20 epochs.
//!
//! Inputs are standardised per channel with statistics of the run's training images
//! ([`ChannelStats`]), which the classifier keeps for inference.
//!
//! Augmentation (off by default) works in feature space: the frozen U-Net's features are
//! computed once per image, and each training input is then moved by a drawn geometric
//! transform, every channel alike (after standardisation, so the area a transform brings
//! in from outside the image reads the channel's mean). The intensity transforms apply
//! to the raw image channel only (IMG, IMG+SEG, IMG+CONCAT), before standardisation.
//! A transform of the features stands in for the features of the transformed image: the
//! U-Net's convolutions commute with translations, and only approximately with the rest.

use rand::seq::SliceRandom;

use crate::data::augment::Augment;
use crate::nn::init::rng;
use crate::nn::vgg::Pass;
use crate::nn::{Vgg, VggConfig};
use crate::ops::{self, Adam};
use crate::train::features::{ChannelStats, Combo, FeatureBank};
use crate::{bail, Gpu, Result, Tape, Tensor};

/// The options of one classifier training; defaults are the paper's.
#[derive(Clone, Debug, PartialEq)]
pub struct ClsTrainOptions {
    pub batch: usize,
    pub batches_per_epoch: usize,
    pub epochs: usize,
    pub lr: f32,
    /// Standardise every input channel by its mean and standard deviation over the run's
    /// training images (the default); off, the inputs go in as they are (an ablation).
    pub standardise: bool,
    /// Augmentation of the training inputs (none by default, as in the paper).
    pub augment: Augment,
}

/// Adam's step size for the classifier. The paper gives none; on the demo's phantom 1e-3
/// and 1e-4 gave kappas within run-to-run noise of each other (see the README), and we
/// keep the more conservative one.
pub const DEFAULT_CLS_LR: f32 = 1e-4;

impl Default for ClsTrainOptions {
    fn default() -> Self {
        ClsTrainOptions {
            batch: 10,
            batches_per_epoch: 10,
            epochs: 20,
            lr: DEFAULT_CLS_LR,
            standardise: true,
            augment: Augment::default(),
        }
    }
}

impl ClsTrainOptions {
    pub fn validate(&self) -> Result<()> {
        self.augment.validate()?;
        if self.batch == 0 || self.batches_per_epoch == 0 || self.epochs == 0 {
            bail!("the classifier's batch, batches per epoch and epochs must all be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!(
                "the learning rate must be a positive number, got {}",
                self.lr
            );
        }
        Ok(())
    }
}

/// The paper's classifier weights: w_l = 1 - (f_l / sum_k f_k)^(1/4), labels 0 (normal)
/// and 1 (diseased). The fourth root keeps the rare positives from dominating as much as
/// plain 1 - f would make them; a class absent from training gets weight 1.
pub fn class_weights(labels: &[u8]) -> [f32; 2] {
    let w = class_weights_of(labels, 2);
    [w[0], w[1]]
}

/// The same rule for `classes` classes (labels 0 to classes - 1): w_c = 1 - (f_c / sum_k
/// f_k)^(1/4).
pub fn class_weights_of(labels: &[u8], classes: usize) -> Vec<f32> {
    let total = labels.len().max(1) as f64;
    (0..classes)
        .map(|c| {
            let f = labels.iter().filter(|&&l| l as usize == c).count() as f64;
            (1.0 - (f / total).powf(0.25)) as f32
        })
        .collect()
}

/// A trained classifier: the network, the combination it reads and how inputs are
/// standardised.
pub struct Classifier {
    pub vgg: Vgg,
    pub combo: Combo,
    pub stats: ChannelStats,
    /// One weight per class (see [`class_weights_of`]).
    pub class_weights: Vec<f32>,
}

/// Train a fresh classifier (weights and batch order from `seed`) on the images `idx` of
/// `bank` with labels `labels` (1 = diseased). `step_done` is called after every step.
#[allow(clippy::too_many_arguments)]
pub fn train(
    gpu: &Gpu,
    config: &VggConfig,
    bank: &FeatureBank,
    combo: Combo,
    idx: &[usize],
    labels: &[u8],
    opts: &ClsTrainOptions,
    seed: u64,
    mut step_done: impl FnMut(usize, f32),
) -> Result<Classifier> {
    opts.validate()?;
    if idx.is_empty() || idx.len() != labels.len() {
        bail!(
            "a classifier needs training images with one label each (got {} images, {} labels)",
            idx.len(),
            labels.len()
        );
    }
    if config.depth != bank.depth {
        bail!(
            "the classifier reads {} but the features are of {}",
            crate::data::describe_depth(config.depth),
            crate::data::describe_depth(bank.depth)
        );
    }
    if config.in_channels != bank.channels(combo) || config.size != bank.size {
        bail!(
            "the classifier takes {}x{}x{} but {} features are {}x{}x{}",
            config.in_channels,
            config.size,
            config.size,
            combo.label(),
            bank.channels(combo),
            bank.size,
            bank.size
        );
    }
    let vgg = Vgg::init(gpu, config.clone(), seed)?;
    let stats = if opts.standardise {
        ChannelStats::compute(bank, combo, idx)?
    } else {
        ChannelStats::identity(bank.channels(combo))
    };
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= config.classes) {
        bail!(
            "a training label is {l}, but the classifier has {} classes",
            config.classes
        );
    }
    let cw = class_weights_of(labels, config.classes);
    let class_w = Tensor::from_slice(gpu, &[config.classes], &cw)?;
    let tensors: Vec<&Tensor> = vgg.params.iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(gpu, &tensors, opts.lr)?;
    let cls = Classifier {
        vgg,
        combo,
        stats,
        class_weights: cw,
    };
    let mut order_rng = rng(seed ^ 0x005E_ED0F_BA7C);
    let mut perm: Vec<usize> = (0..idx.len()).collect();
    let mut queue: Vec<usize> = Vec::new();
    let steps = opts.epochs * opts.batches_per_epoch;
    for s in 0..steps {
        // Batches are drawn from successive shuffles of the training images.
        let mut pick = Vec::with_capacity(opts.batch);
        while pick.len() < opts.batch {
            if queue.is_empty() {
                perm.shuffle(&mut order_rng);
                queue = perm.clone();
                queue.reverse();
            }
            pick.push(queue.pop().expect("refilled above"));
        }
        let ids: Vec<usize> = pick.iter().map(|&p| idx[p]).collect();
        let ys: Vec<f32> = pick.iter().map(|&p| labels[p] as f32).collect();
        let aug = (!opts.augment.is_identity()).then_some((&opts.augment, seed, s as u64));
        let x = inputs(gpu, &cls, bank, &ids, aug)?;
        let y = Tensor::from_slice(gpu, &[ids.len()], &ys)?;
        let pass = Pass::Train {
            seed,
            step: s as u64,
        };
        let loss = step(gpu, &cls.vgg, &mut adam, &x, &y, &class_w, pass)?;
        // The loss is read back only every epoch (a readback waits for the GPU).
        if (s + 1) % opts.batches_per_epoch == 0 || s + 1 == steps {
            let l = loss.item(gpu);
            if !l.is_finite() {
                bail!(
                    "the classifier's loss became {l} at step {}: lower --lr",
                    s + 1
                );
            }
            step_done(s + 1, l);
        }
    }
    Ok(cls)
}

/// One training step: forward, weighted cross-entropy, backward, Adam. Returns the loss
/// as a (1)-tensor on the GPU (reading it back would wait for the step to finish).
pub fn step(
    gpu: &Gpu,
    vgg: &Vgg,
    adam: &mut Adam,
    x: &Tensor,
    y: &Tensor,
    class_w: &Tensor,
    pass: Pass,
) -> Result<Tensor> {
    let tape = Tape::new(gpu);
    let xv = tape.constant(x);
    let (logits, params) = vgg.forward(&tape, &xv, pass)?;
    let loss = ops::softmax_ce(&tape, &logits, y, class_w)?;
    let grads = tape.backward(&loss)?;
    adam.step_from_tape(gpu, &vgg.params, &params, &grads)?;
    Ok(loss.value)
}

/// The standardised inputs of the images `ids`, uploaded as (B, C, S, S) (volumes: (B, C,
/// D, S, S)); with `augment` (ranges, seed, step) each moved by the transform drawn for
/// (seed, step, position), a volume's slices alike.
fn inputs(
    gpu: &Gpu,
    cls: &Classifier,
    bank: &FeatureBank,
    ids: &[usize],
    augment: Option<(&Augment, u64, u64)>,
) -> Result<Tensor> {
    let c = bank.channels(cls.combo);
    let s = bank.size;
    let v = bank.voxels();
    let has_img = cls.combo.parts().0;
    let mut x = Vec::with_capacity(ids.len() * c * v);
    for (j, &i) in ids.iter().enumerate() {
        let start = x.len();
        bank.append_input(i, cls.combo, &mut x)?;
        let t = augment.map(|(a, seed, step)| a.draw([seed, step, j as u64], s));
        if let (Some(t), true) = (&t, has_img) {
            t.intensity(&mut x[start..start + v]);
        }
        cls.stats.apply(&mut x[start..]);
        if let Some(t) = &t {
            let moved = t.warp(&x[start..]);
            x[start..].copy_from_slice(&moved);
        }
    }
    let mut shape = vec![ids.len(), c];
    shape.extend(bank.depth);
    shape.extend([s, s]);
    Tensor::from_slice(gpu, &shape, &x)
}

/// P(diseased) of each image `ids` of `bank` (a two-class classifier), in batches of
/// `batch`.
pub fn predict(
    gpu: &Gpu,
    cls: &Classifier,
    bank: &FeatureBank,
    ids: &[usize],
    batch: usize,
) -> Result<Vec<f32>> {
    if cls.vgg.config.classes != 2 {
        bail!(
            "P(diseased) is a two-class classifier's; this one has {} classes",
            cls.vgg.config.classes
        );
    }
    Ok(predict_all(gpu, cls, bank, ids, batch)?
        .into_iter()
        .map(|p| p[1])
        .collect())
}

/// Every class's probability for each image `ids` of `bank`, in batches of `batch`.
pub fn predict_all(
    gpu: &Gpu,
    cls: &Classifier,
    bank: &FeatureBank,
    ids: &[usize],
    batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let c = cls.vgg.config.classes;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(batch.max(1)) {
        let x = inputs(gpu, cls, bank, chunk, None)?;
        let tape = Tape::new(gpu);
        let xv = tape.constant(&x);
        let (logits, _) = tape.no_grad(|| cls.vgg.forward(&tape, &xv, Pass::Eval))?;
        let p = ops::softmax(gpu, &logits.value)?.to_vec(gpu);
        out.extend(p.chunks(c).map(<[f32]>::to_vec));
    }
    // A non-finite probability is an error, never a decision (NaN > 0.5 is false, so it
    // would silently count as negative).
    if let Some(i) = out.iter().position(|p| p.iter().any(|v| !v.is_finite())) {
        bail!(
            "the classifier's probabilities for image {} of the batch are {:?}: its inputs or weights are not finite; no decision made",
            ids[i],
            out[i]
        );
    }
    Ok(out)
}
