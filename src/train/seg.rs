//! Training and evaluating the segmentation network (paper, sections 2.1 and 3.1): pixel-
//! wise softmax with weighted cross-entropy, w_l = 1 - f_l / sum_k f_k over the training
//! pixels, and Adam; batches drawn from per-epoch shuffles of the training images.
//!
//! After every epoch the model is written (atomically) to `out`, Adam's state to
//! `<out>.state.safetensors` and a line to `<out>.log.csv`; `resume` continues from there,
//! and gives the same weights, bit for bit, as an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::data::augment::Augment;
use crate::data::Dataset;
use crate::nn::checkpoint::{self, SegMeta};
use crate::nn::init::rng;
use crate::nn::unet::VolumeShape;
use crate::nn::{Unet, UnetConfig};
use crate::ops::{self, Adam};
use crate::{bail, Error, Gpu, Result, Tape, Tensor};

/// The options of one training; defaults are the paper's (batch 10, 100 batches per
/// epoch, 20 epochs, n = 16, 256x256).
#[derive(Clone, Debug)]
pub struct SegTrainOptions {
    pub channels: usize,
    pub size: usize,
    pub epochs: usize,
    pub batches_per_epoch: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Augmentation of every training image and its label map (none by default, as in
    /// the paper), drawn from (seed, step, position in the batch); a volume's slices all
    /// move by the same in-plane transform.
    pub augment: Augment,
    /// Volumes: the depth factor of each pooling (None: [`VolumeShape::new`]'s default).
    pub depth_pool: Option<[usize; 4]>,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

impl Default for SegTrainOptions {
    fn default() -> Self {
        SegTrainOptions {
            channels: 16,
            size: 256,
            epochs: 20,
            batches_per_epoch: 100,
            batch: 10,
            lr: DEFAULT_LR,
            seed: 1,
            augment: Augment::default(),
            depth_pool: None,
            progress: true,
        }
    }
}

/// Adam's step size. The paper does not give one; 1e-3 (Kingma and Ba's default) trains
/// the He-initialised ELU U-Net stably with the weighted loss, see the README.
pub const DEFAULT_LR: f32 = 1e-3;

impl SegTrainOptions {
    /// The training's options as a JSON record (the model's `training` metadata).
    fn describe(&self) -> String {
        serde_json::json!({
            "seed": self.seed,
            "lr": self.lr,
            "batch": self.batch,
            "batches_per_epoch": self.batches_per_epoch,
            "epochs": self.epochs,
            "augment": self.augment.describe(),
        })
        .to_string()
    }
}

/// Where the training state and log of a model file live.
pub fn state_path(out: &Path) -> PathBuf {
    sibling(out, ".state.safetensors")
}
pub fn log_path(out: &Path) -> PathBuf {
    sibling(out, ".log.csv")
}
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Train on `data` (normal images only, as the caller chose them), writing to `out`.
///
/// Each epoch ends with three atomic writes, in this order: the training state (weights,
/// Adam's moments and step, the model's metadata and the whole log), the model, the log.
/// The state alone can restore the other two, so a process killed at any moment leaves a
/// resumable training: `resume` continues from the last state written (the last complete
/// epoch, or the one before when the kill came while the state was being written), and
/// gives the same weights, bit for bit, as an uninterrupted run. A resume refuses, naming
/// each difference, settings that differ from the training it continues.
pub fn train(
    gpu: &Gpu,
    data: &Dataset,
    opts: &SegTrainOptions,
    out: &Path,
    resume: bool,
) -> Result<(Unet, SegMeta)> {
    if data.samples.is_empty() {
        bail!("no training images (check --patients and the data folder)");
    }
    if data.size != opts.size {
        bail!(
            "the data is {}x{} but the network's input is {}x{}",
            data.size,
            data.size,
            opts.size,
            opts.size
        );
    }
    if data.depth.is_none() && opts.depth_pool.is_some() {
        bail!("a depth pooling applies to volumes (give --depth), not to 2-D images");
    }
    opts.augment.validate()?;
    if opts.batch == 0 || opts.batches_per_epoch == 0 || opts.epochs == 0 {
        bail!("batch, batches per epoch and epochs must all be at least 1");
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!(
            "the learning rate must be a positive number, got {}",
            opts.lr
        );
    }
    let config = network_for(data, opts)?;
    check_memory(gpu, &config, opts.batch)?;
    // One training per model file; taking the lock also finds an unwritable --out now,
    // not after the first epoch.
    let _lock = crate::lock::acquire(out, "a segmentation model in training")?;
    let (sp, lp) = (state_path(out), log_path(out));
    for p in [out, &sp, &lp] {
        checkpoint::remove_stale_temporaries(p);
    }
    let have = out.exists() || sp.exists();
    if have && !resume {
        bail!(
            "{} already exists: pass --resume to continue its training, or remove it and {}",
            if out.exists() { out } else { &sp }.display(),
            sp.display()
        );
    }
    let (unet, mut meta, mut adam, mut log) = if have {
        resume_from(gpu, out, &config, opts, data)?
    } else {
        let unet = Unet::init(gpu, config, opts.seed)?;
        let tensors: Vec<&Tensor> = unet.params.iter().map(|(_, t)| t).collect();
        let adam = Adam::new(gpu, &tensors, opts.lr)?;
        let meta = SegMeta {
            label_names: data.label_names.clone(),
            class_weights: data.class_weights(),
            normalisation: data.normalisation.clone(),
            epochs_done: 0,
            steps: 0,
            epochs_planned: opts.epochs,
            training: opts.describe(),
            patients: data.patients(),
            data: data.source.clone(),
            sha256: String::new(),
            pixel_spacing: median_spacing(data),
        };
        let _ = std::fs::remove_file(&lp);
        (unet, meta, adam, LOG_HEADER.to_string())
    };
    // The metadata describes the whole training, however many resumes it took.
    meta.epochs_planned = opts.epochs;
    meta.training = opts.describe();
    if meta.epochs_done >= opts.epochs {
        eprintln!(
            "{}: already trained for {} epochs; nothing to do",
            out.display(),
            meta.epochs_done
        );
        meta.sha256 = file_sha256(out)?;
        return Ok((unet, meta));
    }
    let class_w = Tensor::from_slice(gpu, &[unet.config.labels], &meta.class_weights)?;
    let started = Instant::now();
    let first_epoch = meta.epochs_done;
    for epoch in first_epoch..opts.epochs {
        let t0 = Instant::now();
        let order = epoch_order(data.samples.len(), opts, epoch);
        let bar = super::progress_bar(
            opts.progress,
            opts.batches_per_epoch,
            format!("epoch {}/{}", epoch + 1, opts.epochs),
            "{prefix} [{bar:30}] {pos}/{len} batches  {msg}  (epoch left {eta})",
        );
        let mut loss_sum = 0.0f64;
        for (i, idx) in order.chunks(opts.batch).enumerate() {
            let aug = (!opts.augment.is_identity()).then_some((&opts.augment, opts.seed));
            let loss = step(gpu, &unet, &mut adam, data, idx, &class_w, aug)?;
            if !loss.is_finite() {
                bail!(
                    "the loss became {loss} at epoch {} batch {}: lower --lr",
                    epoch + 1,
                    i + 1
                );
            }
            loss_sum += loss as f64;
            let secs = t0.elapsed().as_secs_f64();
            let done_img = (i + 1) * opts.batch;
            let ips = done_img as f64 / secs;
            let steps_total = (opts.epochs - first_epoch) * opts.batches_per_epoch;
            let steps_done = (epoch - first_epoch) * opts.batches_per_epoch + i + 1;
            let left = started.elapsed().as_secs_f64() / steps_done as f64
                * (steps_total - steps_done) as f64;
            bar.set_message(format!(
                "loss {loss:.4}  {ips:.1} img/s  training left {}",
                hms(left)
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        meta.epochs_done = epoch + 1;
        meta.steps = adam.t;
        let mean = loss_sum / opts.batches_per_epoch as f64;
        let secs = t0.elapsed().as_secs_f64();
        log.push_str(&format!(
            "{},{},{mean:.6},{secs:.2},{:.2}\n",
            epoch + 1,
            adam.t,
            (opts.batches_per_epoch * opts.batch) as f64 / secs
        ));
        // The weights are read back once and serve both files.
        let weights = checkpoint::unet_tensors(gpu, &unet);
        save_state(gpu, out, &unet, &weights, &adam, &meta, &log)?;
        let model =
            checkpoint::serialize(&weights, &checkpoint::unet_metadata(&unet.config, &meta))
                .map_err(|e| Error(format!("{}: {e}", out.display())))?;
        checkpoint::write_atomic(out, &model)?;
        checkpoint::write_atomic(&lp, log.as_bytes())?;
        eprintln!(
            "epoch {}/{}: mean loss {mean:.4}, {:.1} img/s, {} (saved {})",
            epoch + 1,
            opts.epochs,
            (opts.batches_per_epoch * opts.batch) as f64 / secs,
            hms(secs),
            out.display()
        );
    }
    meta.sha256 = file_sha256(out)?;
    Ok((unet, meta))
}

/// The network `opts` ask for on `data`: 2-D for images, 3-D for volumes (their depth,
/// pooled by `opts.depth_pool` or the default factors).
pub fn network_for(data: &Dataset, opts: &SegTrainOptions) -> Result<UnetConfig> {
    let labels = data.label_names.len();
    match data.depth {
        None => UnetConfig::new(opts.channels, labels, opts.size),
        Some(d) => {
            let mut v = VolumeShape::new(d);
            if let Some(p) = opts.depth_pool {
                v.depth_pool = p;
            }
            UnetConfig::new_3d(opts.channels, labels, opts.size, v)
        }
    }
}

/// The SHA-256 of the model file, as [`SegMeta::sha256`] records it.
fn file_sha256(out: &Path) -> Result<String> {
    let bytes =
        std::fs::read(out).map_err(|e| Error(format!("cannot read {}: {e}", out.display())))?;
    Ok(checkpoint::sha256_hex(&bytes))
}

/// The median pixel size of the images, where every image has one.
fn median_spacing(data: &Dataset) -> Option<(f64, f64)> {
    let sp: Option<Vec<(f64, f64)>> = data.samples.iter().map(|s| s.spacing).collect();
    let sp = sp.filter(|v| !v.is_empty())?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some((
        median(sp.iter().map(|s| s.0).collect()),
        median(sp.iter().map(|s| s.1).collect()),
    ))
}

const LOG_HEADER: &str = "epoch,steps,mean_loss,seconds,images_per_s\n";

/// Refuse a training whose tensors cannot fit: the largest one (the last level's
/// concatenation, batch x 3n x S x S) against the adapter's largest buffer, and an
/// estimate of all of them (activations and their gradients, about 48 n S^2 values per
/// image, measured from the tape's buffers at n = 16, rounded up) against the host-memory
/// budget of [`crate::limits`].
fn check_memory(gpu: &Gpu, c: &UnetConfig, batch: usize) -> Result<()> {
    let (b, n, s2) = (batch as u128, c.channels as u128, c.voxels() as u128);
    let what = format!(
        "a training step of n={} at {}{}x{} with batch {batch}",
        c.channels,
        c.volume
            .as_ref()
            .map_or(String::new(), |v| format!("{}x", v.depth)),
        c.size,
        c.size
    );
    crate::limits::check_buffer(&what, b * 3 * n * s2, gpu.adapter().limits.max_buffer_size)?;
    crate::limits::check_host(&what, b * 48 * n * s2 * 4)
}
/// The image indices of one epoch: `batches_per_epoch * batch` draws from successive
/// shuffles of all images, seeded by (seed, epoch), so a resumed run sees the same order.
pub fn epoch_order(n: usize, opts: &SegTrainOptions, epoch: usize) -> Vec<usize> {
    let mut r = rng(opts
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64 + 1));
    let want = opts.batches_per_epoch * opts.batch;
    let mut out = Vec::with_capacity(want);
    let mut perm: Vec<usize> = (0..n).collect();
    while out.len() < want {
        perm.shuffle(&mut r);
        out.extend(perm.iter().take(want - out.len()));
    }
    out
}

/// One training step: forward, weighted cross-entropy, backward, Adam. Returns the loss.
/// With `augment` (ranges, seed), each image and its label map are first moved by a
/// transform drawn from (seed, Adam's step, position in the batch), so that a resumed
/// training draws the same transforms.
pub fn step(
    gpu: &Gpu,
    unet: &Unet,
    adam: &mut Adam,
    data: &Dataset,
    idx: &[usize],
    class_w: &Tensor,
    augment: Option<(&Augment, u64)>,
) -> Result<f32> {
    let s = data.size;
    let px = s * s;
    let (xs, ys) = match augment {
        None => data.batch(idx),
        Some((aug, seed)) => {
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for (j, &i) in idx.iter().enumerate() {
                // One transform per sample: a volume's slices move together.
                let t = aug.draw([seed, adam.t, j as u64], s);
                let sample = &data.samples[i];
                for (im, lab) in sample.image.chunks(px).zip(sample.label.chunks(px)) {
                    let (img, lab) = t.apply(im, lab);
                    xs.extend(img);
                    ys.extend(lab.iter().map(|&l| l as f32));
                }
            }
            (xs, ys)
        }
    };
    let tape = Tape::new(gpu);
    let b = idx.len();
    let x = tape.constant(&Tensor::from_slice(gpu, &unet.config.input_shape(b), &xs)?);
    // The loss sees a volume's slices as one tall image: (B, labels, D x S, S).
    let rows = unet.config.depth() * s;
    let y = Tensor::from_slice(gpu, &[b, rows, s], &ys)?;
    let out = unet.forward(&tape, &x, true)?;
    let logits = match unet.config.volume {
        None => out.seg.clone(),
        Some(_) => ops::reshape(&tape, &out.seg, &[b, unet.config.labels, rows, s])?,
    };
    let loss = ops::softmax_ce(&tape, &logits, &y, class_w)?;
    let grads = tape.backward(&loss)?;
    adam.step_from_tape(gpu, &unet.params, &out.params, &grads)?;
    Ok(loss.value.item(gpu))
}

/// Seconds as h:mm:ss.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The training state beside the model: the weights (`w.<param>`), Adam's moments
/// (`m.<param>`, `v.<param>`), and the model's metadata with Adam's step (`adam_t`) and the
/// whole log so far (`log`): everything a resume needs, in one file.
fn save_state(
    gpu: &Gpu,
    out: &Path,
    unet: &Unet,
    weights: &[(String, Vec<usize>, Vec<f32>)],
    adam: &Adam,
    meta: &SegMeta,
    log: &str,
) -> Result<()> {
    let mut tensors = Vec::new();
    for ((name, shape, w), (m, v)) in weights.iter().zip(&adam.moments) {
        tensors.push((format!("w.{name}"), shape.clone(), w.clone()));
        tensors.push((format!("m.{name}"), shape.clone(), m.to_vec(gpu)));
        tensors.push((format!("v.{name}"), shape.clone(), v.to_vec(gpu)));
    }
    let mut md = checkpoint::unet_metadata(&unet.config, meta);
    md.insert("adam_t".to_string(), adam.t.to_string());
    md.insert("log".to_string(), log.to_string());
    checkpoint::save(&state_path(out), &tensors, &md)
}

/// The items of a training's description: a JSON record (see
/// `SegTrainOptions::describe`), or `key=value` words in files written before.
fn described(training: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<serde_json::Value>(training) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => training
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Every way this training differs from the one recorded in `meta` (epochs aside: a
/// resume may extend a training), as "what: asked (the file: recorded)".
pub fn resume_differences(
    config: &UnetConfig,
    meta: &SegMeta,
    wanted: &UnetConfig,
    opts: &SegTrainOptions,
    data: &Dataset,
) -> Vec<String> {
    let mut d = Vec::new();
    let mut differ = |what: &str, asked: String, file: String| {
        if asked != file {
            d.push(format!("{what} {asked} (the file: {file})"));
        }
    };
    differ(
        "channels",
        wanted.channels.to_string(),
        config.channels.to_string(),
    );
    differ("size", wanted.size.to_string(), config.size.to_string());
    let volume = |c: &UnetConfig| {
        c.volume.as_ref().map_or("2-D".to_string(), |v| {
            format!("depth {} pooled {}", v.depth, v.describe_pool())
        })
    };
    differ("volume", volume(wanted), volume(config));
    differ(
        "labels",
        data.label_names.join(","),
        meta.label_names.join(","),
    );
    differ("data", data.source.clone(), meta.data.clone());
    let (mut asked, mut file) = (data.patients(), meta.patients.clone());
    asked.sort();
    file.sort();
    differ("patients", asked.join(","), file.join(","));
    let rec = described(&meta.training);
    let now = opts.describe();
    let now = described(&now);
    for key in ["seed", "lr", "batch", "batches_per_epoch", "augment"] {
        let (a, mut f) = (
            now.get(key).map_or("", String::as_str),
            rec.get(key).map(String::as_str),
        );
        // Files written before augmentation existed trained without it.
        if key == "augment" && f.is_none() && rec.contains_key("seed") {
            f = Some("none");
        }
        match f {
            None => differ(key, a.to_string(), "not recorded".into()),
            // Learning rates compare as numbers (1e-3 and 0.001 are one rate).
            Some(f) if key == "lr" && a.parse::<f32>().ok() == f.parse::<f32>().ok() => {}
            Some(f) => differ(key, a.to_string(), f.to_string()),
        }
    }
    d
}

fn resume_from(
    gpu: &Gpu,
    out: &Path,
    wanted: &UnetConfig,
    opts: &SegTrainOptions,
    data: &Dataset,
) -> Result<(Unet, SegMeta, Adam, String)> {
    let sp = state_path(out);
    if !sp.exists() {
        bail!(
            "cannot resume {}: its training state {} is missing (remove the model to start again)",
            out.display(),
            sp.display()
        );
    }
    let st = checkpoint::load(&sp).map_err(|e| {
        Error(format!(
            "cannot resume {}: its training state is unreadable ({e})",
            out.display()
        ))
    })?;
    let (config, mut meta) = match checkpoint::unet_meta_of(&st, &sp) {
        Ok(v) => v,
        // A state written before states carried the weights: the model holds them.
        Err(_) if !st.metadata.contains_key("architecture") => {
            let (unet, meta) = checkpoint::load_unet(gpu, out)?;
            if st.meta_usize("epochs_done", &sp)? != meta.epochs_done
                || st.meta_usize("adam_t", &sp)? as u64 != meta.steps
            {
                bail!(
                    "{} and {} are from different epochs (written before segfeat's saves were crash-safe); remove both to start again",
                    out.display(),
                    sp.display()
                );
            }
            (unet.config.clone(), meta)
        }
        Err(e) => return Err(e),
    };
    if meta.patients.is_empty() {
        bail!(
            "cannot resume {}: it does not name its training patients, so the training it continues is unknown; remove it and {} to start again",
            out.display(),
            sp.display()
        );
    }
    let diff = resume_differences(&config, &meta, wanted, opts, data);
    if !diff.is_empty() {
        bail!(
            "cannot resume {}: this training differs from the one it continues in {}; give the file's settings, or train into another --out",
            out.display(),
            diff.join("; ")
        );
    }
    let weights = |prefix: &str| {
        let st = &st;
        let prefix = prefix.to_string();
        move |name: &str| st.tensors.get(&format!("{prefix}.{name}")).cloned()
    };
    let unet = if st.tensors.keys().any(|k| k.starts_with("w.")) {
        Unet::from_arrays(gpu, config, weights("w"))
            .map_err(|e| Error(format!("{}: {e}", sp.display())))?
    } else {
        checkpoint::load_unet(gpu, out)?.0
    };
    let t: u64 = st.meta_usize("adam_t", &sp)? as u64;
    let tensors: Vec<&Tensor> = unet.params.iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(gpu, &tensors, opts.lr)?;
    adam.t = t;
    for ((name, p), (m, v)) in unet.params.iter().zip(adam.moments.iter_mut()) {
        for (prefix, slot) in [("m", m), ("v", v)] {
            let key = format!("{prefix}.{name}");
            let Some((shape, data)) = st.tensors.get(&key) else {
                bail!("{}: no tensor '{key}'", sp.display());
            };
            if shape != p.shape() {
                bail!("{}: tensor '{key}' has the wrong shape", sp.display());
            }
            *slot = Tensor::from_slice(gpu, shape, data)?;
        }
    }
    meta.steps = t;
    meta.sha256 = String::new();
    // The log as the state recorded it; an older state's log is the file itself.
    let log = match st.metadata.get("log") {
        Some(l) => l.clone(),
        None => std::fs::read_to_string(log_path(out)).unwrap_or_else(|_| LOG_HEADER.into()),
    };
    // A kill after the state's write leaves the model or the log an epoch behind:
    // restore them from the state.
    let model = checkpoint::unet_bytes(gpu, &unet, &meta)?;
    if std::fs::read(out).ok().as_deref() != Some(&model[..]) {
        eprintln!(
            "note: {} was behind its training state (a save was interrupted); restored it from {}",
            out.display(),
            sp.display()
        );
        checkpoint::write_atomic(out, &model)?;
    }
    let lp = log_path(out);
    if std::fs::read_to_string(&lp).ok().as_deref() != Some(log.as_str()) {
        checkpoint::write_atomic(&lp, log.as_bytes())?;
    }
    eprintln!(
        "resuming {} after epoch {} ({} steps)",
        out.display(),
        meta.epochs_done,
        t
    );
    Ok((unet, meta, adam, log))
}

/// Predicted label maps (argmax of the logits) of `images` (count x S x S, or count x D x
/// S x S for a 3-D network), in batches.
pub fn predict(gpu: &Gpu, unet: &Unet, images: &[f32], batch: usize) -> Result<Vec<u8>> {
    let px = unet.config.voxels();
    let labels = unet.config.labels;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1) * px) {
        let logits = logits(gpu, unet, chunk)?;
        let b = chunk.len() / px;
        for i in 0..b {
            for p in 0..px {
                let mut best = 0;
                for l in 1..labels {
                    if logits[(i * labels + l) * px + p] > logits[(i * labels + best) * px + p] {
                        best = l;
                    }
                }
                out.push(best as u8);
            }
        }
    }
    Ok(out)
}

/// The label logits (B, labels, S, S) of a batch of images (B x S x S values), on the GPU;
/// for a 3-D network, of volumes, as (B, labels, D x S, S) (the same values in the same
/// order: each label's volume is its slices one after the other).
fn logits_tensor(gpu: &Gpu, unet: &Unet, images: &[f32]) -> Result<Tensor> {
    let c = &unet.config;
    let b = images.len() / c.voxels();
    let tape = Tape::new(gpu);
    let x = tape.constant(&Tensor::from_slice(gpu, &c.input_shape(b), images)?);
    let out = tape.no_grad(|| unet.forward(&tape, &x, false))?;
    out.seg
        .value
        .reshape(&[b, c.labels, c.depth() * c.size, c.size])
}

/// The label logits (B, labels, S, S) of a batch of images, read back.
pub fn logits(gpu: &Gpu, unet: &Unet, images: &[f32]) -> Result<Vec<f32>> {
    Ok(logits_tensor(gpu, unet, images)?.to_vec(gpu))
}

/// Softmax probabilities (B, labels, S, S) of a batch, read back.
pub fn probabilities(gpu: &Gpu, unet: &Unet, images: &[f32]) -> Result<Vec<f32>> {
    let z = logits_tensor(gpu, unet, images)?;
    Ok(ops::softmax_ce::softmax(gpu, &z)?.to_vec(gpu))
}

/// Dice and the 95th-percentile Hausdorff distance of every label (1.., background
/// excluded) on every image.
#[derive(Clone, Debug, Default)]
pub struct DiceReport {
    pub label_names: Vec<String>,
    pub images: Vec<String>,
    /// The patient of each image (empty in cross-validation records).
    pub patients: Vec<String>,
    /// dice[image][label - 1]; None where the label is absent from both the truth and the
    /// prediction (Dice is undefined there, and such images are left out of the mean).
    pub dice: Vec<Vec<Option<f64>>>,
    /// hd95[image][label - 1] (see [`hd95`]); None where the label is absent from the
    /// truth or the prediction. Empty in cross-validation records.
    pub hd95: Vec<Vec<Option<f64>>>,
    /// The unit of `hd95`: "mm" when every image's pixel spacing is known, else "pixels".
    pub hd95_unit: String,
}

impl DiceReport {
    /// (mean, std, images counted) of label `l` (1-based as in the label scheme).
    pub fn label_stats(&self, l: usize) -> (f64, f64, usize) {
        mean_std(self.dice.iter().filter_map(|d| d[l - 1]))
    }
    /// The mean over labels of each label's mean Dice.
    pub fn mean(&self) -> f64 {
        let n = self.label_names.len();
        (1..n).map(|l| self.label_stats(l).0).sum::<f64>() / (n - 1) as f64
    }
    /// The report as JSON: `label_names` (all, in index order), `columns` (the labels of
    /// every row of `dice` and `hd95`, background excluded, in order), per-label means
    /// (`labels`), per image (`images`, `patients`, `dice`, `hd95`) and per patient
    /// (`per_patient`: each label's mean over the patient's images).
    pub fn to_json(&self) -> serde_json::Value {
        let labels: Vec<serde_json::Value> = (1..self.label_names.len())
            .map(|l| {
                let (m, s, n) = self.label_stats(l);
                let (hm, hs, hn) = self.hd95_stats(l);
                serde_json::json!({
                    "label": self.label_names[l], "index": l,
                    "dice_mean": m, "dice_std": s, "dice_images": n,
                    "hd95_mean": hm, "hd95_std": hs, "hd95_images": hn,
                })
            })
            .collect();
        let mut patients: Vec<&String> = Vec::new();
        for p in &self.patients {
            if !patients.contains(&p) {
                patients.push(p);
            }
        }
        let per_patient: Vec<serde_json::Value> = patients
            .iter()
            .map(|&pt| {
                let rows: Vec<usize> = (0..self.images.len())
                    .filter(|&i| &self.patients[i] == pt)
                    .collect();
                let mean_of = |m: &Vec<Vec<Option<f64>>>, l: usize| {
                    mean_std(rows.iter().filter_map(|&i| m[i][l])).0
                };
                let n = self.label_names.len() - 1;
                serde_json::json!({
                    "patient": pt,
                    "images": rows.len(),
                    "dice": (0..n).map(|l| mean_of(&self.dice, l)).collect::<Vec<_>>(),
                    "hd95": (0..n).map(|l| mean_of(&self.hd95, l)).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "label_names": self.label_names,
            "columns": &self.label_names[1..],
            "labels": labels,
            "mean_dice": self.mean(),
            "hd95_unit": self.hd95_unit,
            "images": self.images,
            "patients": self.patients,
            "dice": self.dice,
            "hd95": self.hd95,
            "per_patient": per_patient,
        })
    }

    /// (mean, std, images counted) of label `l`'s HD95.
    pub fn hd95_stats(&self, l: usize) -> (f64, f64, usize) {
        mean_std(self.hd95.iter().filter_map(|d| d[l - 1]))
    }
    pub fn merge(&mut self, other: DiceReport) {
        self.images.extend(other.images);
        self.patients.extend(other.patients);
        self.dice.extend(other.dice);
        self.hd95.extend(other.hd95);
    }
}

/// The 95th-percentile symmetric Hausdorff distance of label `l` between two `w`-wide
/// label maps: the distances from every boundary pixel of each region to the nearest
/// boundary pixel of the other, pooled, and their 95th percentile (nearest rank). A
/// boundary pixel is one of the region with a 4-neighbour outside it (or on the image's
/// edge). Distances use the pixel size `spacing` (columns, rows). None when the label is
/// absent from either map.
pub fn hd95(truth: &[u8], pred: &[u8], w: usize, l: u8, spacing: (f64, f64)) -> Option<f64> {
    let boundary = |m: &[u8]| -> Vec<(usize, usize)> {
        let h = m.len() / w;
        let at = |x: usize, y: usize| m[y * w + x] == l;
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                at(x, y)
                    && (x == 0
                        || y == 0
                        || x + 1 == w
                        || y + 1 == h
                        || !at(x - 1, y)
                        || !at(x + 1, y)
                        || !at(x, y - 1)
                        || !at(x, y + 1))
            })
            .collect()
    };
    let (a, b) = (boundary(truth), boundary(pred));
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let nearest = |p: (usize, usize), set: &[(usize, usize)]| {
        set.iter()
            .map(|q| {
                let dx = (p.0 as f64 - q.0 as f64) * spacing.0;
                let dy = (p.1 as f64 - q.1 as f64) * spacing.1;
                dx * dx + dy * dy
            })
            .fold(f64::INFINITY, f64::min)
            .sqrt()
    };
    let mut d: Vec<f64> = a.iter().map(|&p| nearest(p, &b)).collect();
    d.extend(b.iter().map(|&p| nearest(p, &a)));
    d.sort_by(f64::total_cmp);
    let rank = ((0.95 * d.len() as f64).ceil() as usize).clamp(1, d.len());
    Some(d[rank - 1])
}

/// Mean, sample standard deviation and count of the values.
pub fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64, usize) {
    let v: Vec<f64> = values.collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt(), n)
}

/// Dice 2|A and B| / (|A| + |B|) of label `l` between two label maps.
pub fn dice(truth: &[u8], pred: &[u8], l: u8) -> Option<f64> {
    let (mut a, mut b, mut both) = (0u64, 0u64, 0u64);
    for (&t, &p) in truth.iter().zip(pred) {
        a += (t == l) as u64;
        b += (p == l) as u64;
        both += (t == l && p == l) as u64;
    }
    (a + b > 0).then(|| 2.0 * both as f64 / (a + b) as f64)
}

/// Segment every image of `data` and compare with its labels. A volume is one row of the
/// report (its Dice over all its voxels); HD95 is computed for 2-D images only (a volume's
/// row holds None: the slice thickness it would need is not known for every source).
pub fn evaluate(gpu: &Gpu, unet: &Unet, data: &Dataset, batch: usize) -> Result<DiceReport> {
    let model_depth = unet.config.volume.as_ref().map(|v| v.depth);
    if data.depth != model_depth {
        bail!(
            "the model takes {} but the data holds {}",
            crate::data::describe_depth(model_depth),
            crate::data::describe_depth(data.depth)
        );
    }
    if data.size != unet.config.size {
        bail!(
            "the data is {}x{} but the model's input is {}x{}",
            data.size,
            data.size,
            unet.config.size,
            unet.config.size
        );
    }
    if data.label_names.len() != unet.config.labels {
        bail!(
            "the data has {} labels but the model {}",
            data.label_names.len(),
            unet.config.labels
        );
    }
    let px = data.voxels();
    let mm = data.samples.iter().all(|s| s.spacing.is_some());
    let mut report = DiceReport {
        label_names: data.label_names.clone(),
        hd95_unit: if mm { "mm" } else { "pixels" }.into(),
        ..DiceReport::default()
    };
    let idx: Vec<usize> = (0..data.samples.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (xs, _) = data.batch(chunk);
        let pred = predict(gpu, unet, &xs, chunk.len())?;
        for (k, &i) in chunk.iter().enumerate() {
            let s = &data.samples[i];
            let p = &pred[k * px..(k + 1) * px];
            report.images.push(s.name.clone());
            report.patients.push(s.patient.clone());
            report.dice.push(
                (1..unet.config.labels)
                    .map(|l| dice(&s.label, p, l as u8))
                    .collect(),
            );
            let spacing = if mm {
                s.spacing.unwrap_or((1.0, 1.0))
            } else {
                (1.0, 1.0)
            };
            report.hd95.push(
                (1..unet.config.labels)
                    .map(|l| match data.depth {
                        None => hd95(&s.label, p, data.size, l as u8, spacing),
                        Some(_) => None,
                    })
                    .collect(),
            );
        }
    }
    Ok(report)
}

/// Segment one image of any size (`w x h` values in [0, 1]): fitted to the network's
/// input keeping its aspect ratio, predicted, and the label map brought back to `w x h`.
pub fn segment_image(
    gpu: &Gpu,
    unet: &Unet,
    pixels: &[f32],
    w: usize,
    h: usize,
) -> Result<Vec<u8>> {
    let s = unet.config.size;
    let x = crate::data::fit_image(pixels, w, h, s, 0.0);
    Ok(crate::data::unfit_labels(
        &predict(gpu, unet, &x, 1)?,
        s,
        w,
        h,
    ))
}

/// The softmax probabilities (labels, h, w) of one image of any size, at its size.
pub fn probabilities_at_input(
    gpu: &Gpu,
    unet: &Unet,
    pixels: &[f32],
    w: usize,
    h: usize,
) -> Result<Vec<f32>> {
    let s = unet.config.size;
    let x = crate::data::fit_image(pixels, w, h, s, 0.0);
    Ok(probabilities(gpu, unet, &x)?
        .chunks(s * s)
        .flat_map(|plane| crate::data::unfit_image(plane, s, w, h))
        .collect())
}

/// Segment a volume: window it as `opts` says, slice it along `opts.axis`, fit each slice
/// to the network, predict, bring each label map back to its slice's size, and put the
/// slices back together: the label of every voxel, in the volume's order.
pub fn segment_volume(
    gpu: &Gpu,
    unet: &Unet,
    volume: &crate::data::volume::Volume,
    opts: &crate::data::folder::ReadOptions,
) -> Result<Vec<u8>> {
    use crate::data::{fit_image, unfit_labels, volume::Volume};
    let s = unet.config.size;
    let windowed = Volume {
        values: opts.window.apply(&volume.values),
        ..volume.clone()
    };
    let slices = windowed.slices(opts.axis);
    let mut out = Vec::new();
    let Some(v) = &unet.config.volume else {
        for sl in &slices {
            let x = fit_image(&sl.values, sl.w, sl.h, s, 0.0);
            let pred = predict(gpu, unet, &x, 1)?;
            out.push(unfit_labels(&pred, s, sl.w, sl.h));
        }
        return Ok(Volume::from_slices(volume.dims, opts.axis, &out));
    };
    // A 3-D network sees D slices at once: windows of D consecutive slices from the
    // first on, the last one ending at the last slice (where windows overlap, the later
    // window's labels stand); a volume of fewer than D slices between empty ones.
    let (d, px) = (v.depth, s * s);
    let fitted: Vec<Vec<f32>> = slices
        .iter()
        .map(|sl| fit_image(&sl.values, sl.w, sl.h, s, 0.0))
        .collect();
    let k = fitted.len();
    let mut labels: Vec<Vec<u8>> = vec![Vec::new(); k];
    let starts: Vec<isize> = if k <= d {
        vec![-(((d - k) / 2) as isize)]
    } else {
        let mut v: Vec<isize> = (0..k - d).step_by(d).map(|i| i as isize).collect();
        v.push((k - d) as isize);
        v
    };
    for start in starts {
        let mut x = vec![0.0f32; d * px];
        for z in 0..d {
            let i = start + z as isize;
            if i >= 0 && (i as usize) < k {
                x[z * px..(z + 1) * px].copy_from_slice(&fitted[i as usize]);
            }
        }
        let pred = predict(gpu, unet, &x, 1)?;
        for z in 0..d {
            let i = start + z as isize;
            if i >= 0 && (i as usize) < k {
                labels[i as usize] = pred[z * px..(z + 1) * px].to_vec();
            }
        }
    }
    for (sl, lab) in slices.iter().zip(&labels) {
        out.push(unfit_labels(lab, s, sl.w, sl.h));
    }
    Ok(Volume::from_slices(volume.dims, opts.axis, &out))
}
