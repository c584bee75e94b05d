//! The method end to end at toy scale: a U-Net learns to segment normal phantom images,
//! is frozen, and its feature maps train a disease classifier from three positive images;
//! the same classifier on the raw image (IMG) is the baseline the paper compares with.
//!
//! To run:
//!     cargo run --release --example 05_transfer      (about 20 s on 2 cores with lavapipe)
//!
//! Expected output (lavapipe, release build; 14 s on 2 cores). One split and one seed, so
//! the numbers say nothing about which features are better: `segfeat experiment` repeats
//! this over many splits and reports the paired differences with their intervals.
//!     segmentation: n = 4, 32x32, 150 steps on 96 normal images of 8 patients: loss 2.13 -> 0.23
//!     features: 54 images (24 normal, 30 effusion) through the frozen network once
//!     classifier on IMG:    trained on 3 positives + 10 negatives; test TPR 78% TNR 93% kappa 65% AUC 0.84
//!     classifier on CONCAT: trained on 3 positives + 10 negatives; test TPR 41% TNR 14% kappa -42% AUC 0.31

use segfeat::data::phantom::PhantomSpec;
use segfeat::data::Group;
use segfeat::nn::{Unet, UnetConfig, VggConfig};
use segfeat::ops::Adam;
use segfeat::protocol::metrics::{auc, Confusion};
use segfeat::train::cls::{self, ClsTrainOptions};
use segfeat::train::features::{Combo, FeatureBank};
use segfeat::train::seg;
use segfeat::{Gpu, Tensor};

fn main() -> segfeat::Result<()> {
    let gpu = Gpu::new()?;
    let ds = PhantomSpec {
        size: 32,
        normal_patients: 10,
        slices: (12, 12),
        effusion_images: 30,
        septal_images: 0,
        ..PhantomSpec::default()
    }
    .generate()?;

    // 1. The segmentation network, trained on the normal images of 8 patients only.
    let seg_patients: Vec<String> = ds.patients().into_iter().take(8).collect();
    let train = ds.select(Some(&seg_patients), &[Group::Normal])?;
    let unet = Unet::init(&gpu, UnetConfig::new(4, ds.label_names.len(), 32)?, 1)?;
    let tensors: Vec<&Tensor> = unet.params.iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&gpu, &tensors, 1e-3)?;
    let w = train.class_weights();
    let class_w = Tensor::from_slice(&gpu, &[w.len()], &w)?;
    let opts = seg::SegTrainOptions {
        channels: 4,
        size: 32,
        batches_per_epoch: 15,
        batch: 8,
        ..Default::default()
    };
    let (mut first, mut last) = (0.0, 0.0);
    for epoch in 0..10 {
        let order = seg::epoch_order(train.samples.len(), &opts, epoch);
        for idx in order.chunks(opts.batch) {
            last = seg::step(&gpu, &unet, &mut adam, &train, idx, &class_w, None)?;
            if adam.t == 1 {
                first = last;
            }
        }
    }
    println!(
        "segmentation: n = 4, 32x32, {} steps on {} normal images of {} patients: loss {first:.2} -> {last:.2}",
        adam.t,
        train.samples.len(),
        seg_patients.len()
    );

    // 2. Features of the other images, once, through the frozen network.
    let others: Vec<usize> = (0..ds.samples.len())
        .filter(|&i| !seg_patients.contains(&ds.samples[i].patient))
        .collect();
    let images: Vec<&[f32]> = others
        .iter()
        .map(|&i| ds.samples[i].image.as_slice())
        .collect();
    let bank = FeatureBank::compute(
        &gpu,
        &unet,
        &images,
        &[Combo::Img, Combo::Concat],
        32,
        10,
        |_| {},
    )?;
    let truth: Vec<u8> = others
        .iter()
        .map(|&i| (ds.samples[i].group == Group::Effusion) as u8)
        .collect();
    let (neg, pos): (Vec<usize>, Vec<usize>) = (0..others.len()).partition(|&b| truth[b] == 0);
    println!(
        "features: {} images ({} normal, {} effusion) through the frozen network once",
        others.len(),
        neg.len(),
        pos.len()
    );

    // 3. A classifier from 3 positives and 10 negatives, on IMG and on CONCAT; the rest
    //    of the images test it.
    let train_idx: Vec<usize> = pos[..3].iter().chain(&neg[..10]).copied().collect();
    let train_y: Vec<u8> = train_idx.iter().map(|&b| truth[b]).collect();
    let test_idx: Vec<usize> = pos[3..].iter().chain(&neg[10..]).copied().collect();
    for combo in [Combo::Img, Combo::Concat] {
        let config = VggConfig::new(bank.channels(combo), 32, 1.0 / 16.0, 32)?;
        let c = cls::train(
            &gpu,
            &config,
            &bank,
            combo,
            &train_idx,
            &train_y,
            &ClsTrainOptions {
                lr: 1e-3,
                ..Default::default()
            },
            7,
            |_, _| {},
        )?;
        let p = cls::predict(&gpu, &c, &bank, &test_idx, 10)?;
        let pairs: Vec<(bool, f32)> = test_idx
            .iter()
            .zip(&p)
            .map(|(&b, &p)| (truth[b] == 1, p))
            .collect();
        let conf = Confusion::from_pairs(pairs.iter().map(|&(t, p)| (t, p > 0.5)));
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.0}%", 100.0 * v));
        println!(
            "classifier on {:<7} trained on 3 positives + 10 negatives; test TPR {} TNR {} kappa {} AUC {:.2}",
            format!("{}:", combo.label()),
            pct(conf.tpr()),
            pct(conf.tnr()),
            pct(conf.kappa()),
            auc(pairs.iter().map(|&(t, p)| (t, p as f64))).unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
