//! One classifier of the protocol trained and tested on its own (`segfeat train-cls`):
//! the run (repetition, k, combination) of a protocol, with the experiment's cohort, split
//! and seeds, so that it equals that run of an experiment; its file's metadata included.

use crate::data::{Dataset, Group};
use crate::nn::checkpoint::{ClsMeta, SegMeta};
use crate::nn::vgg::Regularisation;
use crate::nn::{Unet, VggConfig};
use crate::protocol::experiment::{init_seed, ClassifierKind, Cohort, Protocol, RunId, Split};
use crate::protocol::metrics::{Confusion, MultiConfusion};
use crate::train::cls::{self, Classifier};
use crate::train::features::{Combo, FeatureBank};
use crate::{Gpu, Result};

/// A trained classifier, what its file records, and its test result in one line.
pub struct Trained {
    pub classifier: Classifier,
    pub meta: ClsMeta,
    pub summary: String,
}

/// Train and test repetition `rep`'s classifier of `p` (one disease, or `p.classes`) with
/// `k` positives on `combo` features of the frozen `unet`, regularised by `reg` (the
/// paper's VGG by default); `seg_name` names the segmentation model in the metadata.
#[allow(clippy::too_many_arguments)]
pub fn train_one(
    gpu: &Gpu,
    unet: &Unet,
    seg_meta: &SegMeta,
    ds: &Dataset,
    p: &Protocol,
    disease: Group,
    (combo, k, rep): (Combo, usize, usize),
    reg: Regularisation,
    seg_name: &str,
) -> Result<Trained> {
    let classes = p.classes.clone();
    let cohort = Cohort::select(ds, seg_meta, p)?;
    let bank_images = cohort.images();
    let images: Vec<&[f32]> = bank_images
        .iter()
        .map(|&i| ds.samples[i].image.as_slice())
        .collect();
    let bank = FeatureBank::compute(gpu, unet, &images, &[combo], p.size, 10, |_| {})?;
    let run = RunId {
        rep,
        disease,
        k,
        combo,
        kind: ClassifierKind::Vgg,
    };
    let Split {
        train,
        train_y,
        test,
        test_y,
        seed: split_seed,
    } = cohort.split(p, &run)?;
    let mut config = VggConfig::new(bank.channels(combo), p.size, p.width, p.fc)?;
    config.depth = bank.depth;
    config.reg = reg;
    if !classes.is_empty() {
        config.classes = classes.len();
    }
    let (params, flops) = config.cost();
    eprintln!(
        "training a {} classifier on {} features ({}x{}{}x{}; {params} parameters, {:.3} GFLOP per {}) with {k} positives and {} negatives",
        disease.name(),
        combo.label(),
        config.in_channels,
        config.depth.map_or(String::new(), |d| format!("{d}x")),
        p.size,
        p.size,
        flops as f64 / 1e9,
        if config.depth.is_some() {
            "volume"
        } else {
            "image"
        },
        p.negatives_train
    );
    let steps = p.train.epochs * p.train.batches_per_epoch;
    let bar = crate::train::progress_bar(
        true,
        steps,
        "training".into(),
        "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  (left {eta})",
    );
    let c = cls::train(
        gpu,
        &config,
        &bank,
        combo,
        &train,
        &train_y,
        &p.train,
        init_seed(split_seed, k),
        |s, loss| {
            bar.set_position(s as u64);
            bar.set_message(format!("loss {loss:.4}"));
        },
    )?;
    bar.finish_and_clear();
    let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.1}%", 100.0 * v));
    let class_names: Vec<String> = if classes.is_empty() {
        vec!["normal".into(), disease.name().into()]
    } else {
        classes.iter().map(|c| c.name().to_string()).collect()
    };
    let summary = if classes.is_empty() {
        let probs = cls::predict(gpu, &c, &bank, &test, 10)?;
        let conf =
            Confusion::from_pairs(test_y.iter().zip(&probs).map(|(&t, &p)| (t == 1, p > 0.5)));
        format!(
            "test ({} positives, {} negatives): TPR {} TNR {} kappa {} (TP {} FN {} TN {} FP {})",
            p.positives_test,
            p.negatives_test,
            pct(conf.tpr()),
            pct(conf.tnr()),
            pct(conf.kappa()),
            conf.tp,
            conf.fn_,
            conf.tn,
            conf.fp
        )
    } else {
        let probs = cls::predict_all(gpu, &c, &bank, &test, 10)?;
        let argmax = |p: &Vec<f32>| (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        let m = MultiConfusion::from_pairs(
            classes.len(),
            test_y
                .iter()
                .zip(&probs)
                .map(|(&t, p)| (t as usize, argmax(p))),
        );
        format!(
            "test ({} images): accuracy {} kappa {}; confusion (rows truth, columns predicted; {}): {:?}",
            test.len(),
            pct(m.accuracy()),
            pct(m.kappa()),
            class_names.join(", "),
            m.counts
        )
    };
    let names: Vec<&str> = train
        .iter()
        .map(|&b| ds.samples[bank_images[b]].name.as_str())
        .collect();
    let cm = ClsMeta {
        features: combo,
        stats: c.stats.clone(),
        class_weights: c.class_weights.clone(),
        disease: disease.name().into(),
        class_names,
        seg: (unet.config.channels, unet.config.labels, unet.config.size),
        seg_sha256: seg_meta.sha256.clone(),
        training: serde_json::json!({
            "seed": p.seed,
            "rep": rep,
            "lr": p.train.lr,
            "batch": p.train.batch,
            "batches_per_epoch": p.train.batches_per_epoch,
            "epochs": p.train.epochs,
            "augment": p.train.augment.describe(),
            "seg": seg_name,
            "images": names,
        })
        .to_string(),
    };
    Ok(Trained {
        classifier: c,
        meta: cm,
        summary,
    })
}

/// Every class's probability for each image file (PNG, JPEG or TIFF): read, fitted to the
/// segmentation network's input keeping its aspect ratio, through the frozen network,
/// then the classifier; for a 3-D network each file is a volume (NIfTI, or a DICOM series
/// folder) read as `volumes` says and stacked to the network's depth. Call it on a few
/// files at a time (their features sit in memory).
pub fn classify_files(
    gpu: &Gpu,
    unet: &Unet,
    classifier: &Classifier,
    files: &[std::path::PathBuf],
    volumes: &crate::data::folder::ReadOptions,
) -> Result<Vec<Vec<f32>>> {
    let mut xs = Vec::with_capacity(files.len());
    for f in files {
        if let Some(v) = &unet.config.volume {
            xs.push(crate::data::folder::read_volume_input(
                f,
                unet.config.size,
                v.depth,
                volumes,
            )?);
            continue;
        }
        let img = crate::limits::open_image(f)
            .map_err(|e| crate::Error(format!("{}: unreadable image: {e}", f.display())))?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let pixels = crate::data::folder::intensities(&img);
        xs.push(crate::data::fit_image(&pixels, w, h, unet.config.size, 0.0));
    }
    let refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
    let size = classifier.vgg.config.size;
    let bank = FeatureBank::compute(gpu, unet, &refs, &[classifier.combo], size, 16, |_| {})?;
    let ids: Vec<usize> = (0..files.len()).collect();
    cls::predict_all(gpu, classifier, &bank, &ids, 16)
}
