//! `segfeat demo`: the whole method on the built-in phantom, with nothing downloaded.
//!
//! 1. generate the phantom (normal patients, effusion and septal-defect images);
//! 2. train the segmentation network on the normal images of the first `seg_patients`
//!    normal patients (model in `OUT/seg.safetensors`, resumed if there);
//! 3. run the protocol for both diseases and all five combinations in `OUT/experiment`
//!    (resumed if there) and write its report.
//!
//! `quick` shrinks every stage so that it fits a 2-core machine with only the software
//! adapter in 15 minutes: 64x64 images, a U-Net with n = 8 trained for 120 steps, the
//! `quick` classifier at 32x32 trained for 100 steps (half the paper's), k in {1, 3, 10}
//! and 2 repetitions (60 runs). `mid` is the largest scale that fits a few hours there: 45
//! normal patients (30 for the segmentation network) and 45 images of each disease, a
//! U-Net with n = 8 trained for 1,200 steps at 64x64, the classifier with quick's widths
//! at 64x64 (no resizing of the feature maps) for the paper's 200 steps at Adam's default
//! rate 1e-3, k in {1, 2, 3, 5, 7, 10}, 10 repetitions split by patient (600 runs).
//! `paper` is the paper's full scale (a GPU's job).

use std::path::Path;
use std::time::Instant;

use crate::data::phantom::PhantomSpec;
use crate::data::Group;
use crate::nn::Preset;
use crate::protocol::experiment::SplitBy;
use crate::protocol::{experiment, report, Protocol};
use crate::train::cls::ClsTrainOptions;
use crate::train::{seg, SegTrainOptions};
use crate::{Gpu, Result};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoPlan {
    pub phantom: PhantomSpec,
    /// Normal patients (the first ones) that train the segmentation network.
    pub seg_patients: usize,
    pub seg: SegTrainOptions,
    pub protocol: Protocol,
}

impl DemoPlan {
    pub fn new(preset: Preset) -> DemoPlan {
        let (width, fc, size) = preset.shape();
        // The segmentation network sees the images at full size; features are resized to
        // the classifier's input.
        let seg_size = match preset {
            Preset::Paper => 256,
            Preset::Quick | Preset::Mid => 64,
        };
        let phantom = PhantomSpec {
            size: seg_size,
            ..PhantomSpec::default()
        };
        match preset {
            Preset::Paper => DemoPlan {
                phantom,
                seg_patients: 30,
                seg: SegTrainOptions {
                    size: seg_size,
                    ..SegTrainOptions::default()
                },
                protocol: Protocol::default(),
            },
            Preset::Quick => DemoPlan {
                phantom,
                seg_patients: 30,
                seg: SegTrainOptions {
                    channels: 8,
                    size: seg_size,
                    epochs: 6,
                    batches_per_epoch: 20,
                    ..SegTrainOptions::default()
                },
                protocol: Protocol {
                    positives: vec![1, 3, 10],
                    reps: 2,
                    width,
                    fc,
                    size,
                    // Half the paper's 20 epochs: 100 steps per classifier.
                    train: ClsTrainOptions {
                        epochs: 10,
                        ..ClsTrainOptions::default()
                    },
                    ..Protocol::default()
                },
            },
            // Split by patient, the protocol needs whole patients on each side: 15 normal
            // patients outside the segmentation network's 30 (about 160 images for 50 + 50)
            // and 15 patients of 3 slices per disease (a pool of 10 from 4 patients, 20
            // test images from the next 7). The diseases themselves are the default ones.
            Preset::Mid => DemoPlan {
                phantom: PhantomSpec {
                    normal_patients: 45,
                    effusion_images: 45,
                    septal_images: 45,
                    ..phantom
                },
                seg_patients: 30,
                seg: SegTrainOptions {
                    channels: 8,
                    size: seg_size,
                    epochs: 40,
                    batches_per_epoch: 30,
                    ..SegTrainOptions::default()
                },
                protocol: Protocol {
                    positives: vec![1, 2, 3, 5, 7, 10],
                    reps: 10,
                    width,
                    fc,
                    size,
                    train: ClsTrainOptions {
                        lr: preset.cls_lr(),
                        ..ClsTrainOptions::default()
                    },
                    split: SplitBy::Patient,
                    ..Protocol::default()
                },
            },
        }
    }
}

/// Run the demo into `out`, training `jobs` classifiers at a time (see
/// [`crate::gpu::jobs::default_jobs`]); returns the report's Markdown.
pub fn run(gpu: &Gpu, plan: &DemoPlan, out: &Path, jobs: usize, progress: bool) -> Result<String> {
    let t0 = Instant::now();
    let stage = |what: &str| {
        eprintln!(
            "\n== {what} ({} since the start)",
            seg::hms(t0.elapsed().as_secs_f64())
        )
    };
    stage("1/3 phantom");
    let data = plan.phantom.generate()?;
    let normals = data.select(None, &[Group::Normal])?;
    let patients: Vec<String> = normals
        .patients()
        .into_iter()
        .take(plan.seg_patients)
        .collect();
    eprintln!(
        "{} images at {}x{}: {} normal from {} patients, {} effusion, {} septal defect",
        data.samples.len(),
        data.size,
        data.size,
        normals.samples.len(),
        normals.patients().len(),
        data.samples
            .iter()
            .filter(|s| s.group == Group::Effusion)
            .count(),
        data.samples
            .iter()
            .filter(|s| s.group == Group::Septal)
            .count(),
    );

    stage("2/3 segmentation network, on the normal images of the first patients");
    let seg_train = data.select(Some(&patients), &[Group::Normal])?;
    let seg_path = out.join("seg.safetensors");
    let opts = SegTrainOptions {
        progress,
        ..plan.seg.clone()
    };
    eprintln!(
        "n={} at {}x{} on {} images of {} patients, {} epochs of {} batches of {}; model {}",
        opts.channels,
        opts.size,
        opts.size,
        seg_train.samples.len(),
        patients.len(),
        opts.epochs,
        opts.batches_per_epoch,
        opts.batch,
        seg_path.display()
    );
    let (unet, meta) = seg::train(gpu, &seg_train, &opts, &seg_path, true)?;
    let holdout: Vec<String> = normals
        .patients()
        .into_iter()
        .filter(|p| !patients.contains(p))
        .collect();
    let dice = seg::evaluate(
        gpu,
        &unet,
        &data.select(Some(&holdout), &[Group::Normal])?,
        10,
    )?;
    eprintln!(
        "mean Dice on the {} held-out normal patients: {:.3}",
        holdout.len(),
        dice.mean()
    );

    stage("3/3 the few-positive protocol");
    let p = &plan.protocol;
    eprintln!(
        "diseases {}; features {}; k in {:?}; {} repetitions; classifier widths x{} fc {} at {}x{}",
        p.diseases
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(","),
        p.combos
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(","),
        p.positives,
        p.reps,
        p.width,
        p.fc,
        p.size,
        p.size
    );
    let exp = out.join("experiment");
    let exec = experiment::Execution {
        shard: None,
        jobs,
        progress,
    };
    experiment::run(gpu, &unet, &meta, &data, p, &exp, exec)?;
    let md = report::write(std::slice::from_ref(&exp), &exp)?;
    eprintln!(
        "\ndone in {}: report {}",
        seg::hms(t0.elapsed().as_secs_f64()),
        exp.join("report.md").display()
    );
    Ok(md)
}
