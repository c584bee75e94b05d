//! The disease-detection half: metrics on hand-computed confusion matrices (no GPU), the
//! classifier's shapes and gradient, and the whole protocol end to end at a tiny scale on
//! the GPU: JSONL lines, resume (part of the runs, then the rest: the same table as one
//! uninterrupted experiment), shards merged by the report, the report's files, and the
//! command line's train-cls / classify / experiment / report.

mod common;
use common::{gpu, run_cli, scratch};
use std::path::{Path, PathBuf};

use segfeat::data::phantom::PhantomSpec;
use segfeat::data::{Dataset, Group};
use segfeat::nn::checkpoint::{save_unet, SegMeta};
use segfeat::nn::vgg::Pass;
use segfeat::nn::{Unet, Vgg, VggConfig};
use segfeat::ops::{self, Adam};
use segfeat::protocol::experiment::{self, Execution};
use segfeat::protocol::metrics::{auc, mean_std, Paired};
use segfeat::protocol::report::{self, RunRecord};
use segfeat::protocol::{Confusion, Protocol, Shard};
use segfeat::train::cls::{self, ClsTrainOptions};
use segfeat::train::features::Combo;
use segfeat::train::{seg, SegTrainOptions};
use segfeat::{Gpu, Tape, Tensor};

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn metrics_on_hand_computed_confusion_matrices() {
    // 10 positives, 50 negatives; 8 found, 5 false alarms.
    // p_o = 53/60; p_e = (10/60)(13/60) + (50/60)(47/60) = 2480/3600;
    // kappa = (3180 - 2480) / (3600 - 2480) = 700/1120 = 0.625.
    let c = Confusion {
        tp: 8,
        fn_: 2,
        tn: 45,
        fp: 5,
    };
    assert!(close(c.tpr(), 0.8));
    assert!(close(c.tnr(), 0.9));
    assert!(close(c.kappa(), 0.625), "{:?}", c.kappa());

    // Perfect: kappa 1.
    let c = Confusion {
        tp: 20,
        fn_: 0,
        tn: 50,
        fp: 0,
    };
    assert!(close(c.tpr(), 1.0) && close(c.tnr(), 1.0) && close(c.kappa(), 1.0));

    // "Negative" to everything on 20 positives + 50 negatives: TPR 0, TNR 1, and the
    // agreement is exactly what chance gives: kappa 0.
    let c = Confusion::from_pairs((0..70).map(|i| (i < 20, false)));
    assert_eq!((c.tp, c.fn_, c.tn, c.fp), (0, 20, 50, 0));
    assert!(close(c.tpr(), 0.0) && close(c.tnr(), 1.0) && close(c.kappa(), 0.0));

    // "Positive" to everything: TPR 1, TNR 0, kappa 0.
    let c = Confusion::from_pairs((0..70).map(|i| (i < 20, true)));
    assert!(close(c.tpr(), 1.0) && close(c.tnr(), 0.0) && close(c.kappa(), 0.0));

    // Always wrong on a balanced set: p_o = 0, p_e = 1/2, kappa = -1.
    let c = Confusion {
        tp: 0,
        fn_: 10,
        tn: 0,
        fp: 10,
    };
    assert!(close(c.kappa(), -1.0));

    // Chance agreement of 1: only negatives, all called negative. p_o = p_e = 1, kappa is
    // 0/0 and reported as undefined; TPR is undefined (no positives), TNR is 1.
    let c = Confusion {
        tp: 0,
        fn_: 0,
        tn: 10,
        fp: 0,
    };
    assert_eq!(c.kappa(), None);
    assert_eq!(c.tpr(), None);
    assert!(close(c.tnr(), 1.0));
    // Only positives, all called positive: the same on the other side.
    let c = Confusion {
        tp: 7,
        fn_: 0,
        tn: 0,
        fp: 0,
    };
    assert_eq!((c.kappa(), c.tnr()), (None, None));
    assert_eq!(Confusion::default().kappa(), None);

    // Mean and sample standard deviation skip undefined values.
    let (m, s, n) = mean_std([Some(0.5), None, Some(1.0), Some(0.0)]).unwrap();
    assert!((m - 0.5).abs() < 1e-12 && (s - 0.5).abs() < 1e-12 && n == 3);
    assert_eq!(mean_std([None, None]), None);
}

#[test]
fn auc_on_hand_computed_rankings() {
    let t = |v: &[(bool, f64)]| auc(v.iter().copied());
    assert_eq!(t(&[(true, 0.9), (false, 0.1), (false, 0.2)]), Some(1.0));
    assert_eq!(t(&[(true, 0.05), (false, 0.1), (false, 0.2)]), Some(0.0));
    // Ties count one half: every score equal gives 0.5.
    assert_eq!(t(&[(true, 0.3), (true, 0.3), (false, 0.3)]), Some(0.5));
    // Positives 0.8, 0.4; negatives 0.6, 0.4, 0.1: pairs above 1+1+1 + 0+0.5+1 = 4.5 of 6.
    let v = [
        (true, 0.8),
        (true, 0.4),
        (false, 0.6),
        (false, 0.4),
        (false, 0.1),
    ];
    assert!(close(t(&v), 0.75));
    // Order of the input does not matter.
    let mut r = v;
    r.reverse();
    assert_eq!(t(&r), t(&v));
    assert_eq!(t(&[(true, 0.3), (true, 0.4)]), None);
    assert_eq!(t(&[]), None);
}

#[test]
fn paired_differences_have_exact_p_values_and_seeded_intervals() {
    // Three positive differences: 2 of the 8 sign patterns are as far from 0 (all +, all -).
    let a = Paired::of(&[0.1, 0.2, 0.3], 1).unwrap();
    assert!((a.mean - 0.2).abs() < 1e-12);
    assert!((a.p - 0.25).abs() < 1e-12, "{a:?}");
    assert!(a.lo >= 0.1 - 1e-12 && a.hi <= 0.3 + 1e-12 && a.lo <= a.mean && a.mean <= a.hi);
    // Ten positive differences: p = 2 / 1024.
    let ten: Vec<f64> = (1..=10).map(|i| i as f64 / 100.0).collect();
    assert!((Paired::of(&ten, 1).unwrap().p - 2.0 / 1024.0).abs() < 1e-12);
    // Symmetric differences: the mean is 0 and every pattern is as far, p = 1.
    let z = Paired::of(&[0.5, -0.5], 3).unwrap();
    assert_eq!((z.mean, z.p), (0.0, 1.0));
    // [+1, +1, -1, +1]: mean 0.5; patterns with |mean| >= 0.5 are those with at most one
    // sign against the rest: 2 * (1 + 4) = 10 of 16.
    let m = Paired::of(&[1.0, 1.0, -1.0, 1.0], 3).unwrap();
    assert!((m.p - 10.0 / 16.0).abs() < 1e-12, "{m:?}");
    // The same seed gives the same interval; the interval of a constant is that constant.
    assert_eq!(Paired::of(&ten, 7), Paired::of(&ten, 7));
    let c = Paired::of(&[0.3; 5], 9).unwrap();
    assert!((c.lo - 0.3).abs() < 1e-12 && (c.hi - 0.3).abs() < 1e-12);
    // Beyond 16 differences the p-value comes from random sign patterns: all positive
    // differences give the smallest it can be.
    let many: Vec<f64> = (0..20).map(|i| 1.0 + i as f64).collect();
    let pm = Paired::of(&many, 1).unwrap();
    assert!(pm.p > 0.0 && pm.p < 1e-4, "{pm:?}");
    assert_eq!(Paired::of(&[], 1), None);
}

#[test]
fn paired_table_pairs_runs_by_repetition() {
    let rec = |features: &str, k: usize, rep: usize, tp: u64| RunRecord {
        disease: "infarct".into(),
        features: features.into(),
        classifier: "vgg".into(),
        k,
        rep,
        split_seed: rep as u64,
        init_seed: 0,
        confusion: Confusion {
            tp,
            fn_: 10 - tp,
            tn: 10,
            fp: 0,
        },
        final_loss: 0.1,
        seconds: 1.0,
        test: Vec::new(),
        test_patients: Vec::new(),
        test_y: Vec::new(),
        probs: Vec::new(),
        classes: Vec::new(),
        probs_all: Vec::new(),
    };
    let mut runs = Vec::new();
    for rep in 0..4 {
        for k in [1, 3] {
            runs.push(rec("img", k, rep, 2));
            // CONCAT finds 3 more positives in every repetition at k = 1, as many at 3.
            runs.push(rec("concat", k, rep, if k == 1 { 5 } else { 2 }));
        }
    }
    let rows = report::paired(&runs, "img");
    let at = |k: Option<usize>| rows.iter().find(|r| r.k == k).unwrap();
    let k1 = at(Some(1));
    assert_eq!(k1.features, "concat");
    let tpr = k1.tpr.unwrap();
    assert_eq!(tpr.n, 4);
    assert!((tpr.mean - 0.3).abs() < 1e-12 && (tpr.p - 2.0 / 16.0).abs() < 1e-12);
    assert_eq!(at(Some(3)).tpr.unwrap().mean, 0.0);
    // Pooled over the few-positive k present (1 and 3): the mean of the two per repetition.
    assert!((at(None).tpr.unwrap().mean - 0.15).abs() < 1e-12);
    // No probabilities, no AUC.
    assert!(k1.auc.is_none());
}

#[test]
fn class_weights_follow_the_fourth_root_rule() {
    // 1 positive, 50 negatives: w = 1 - (f / sum)^(1/4).
    let mut labels = vec![1u8];
    labels.extend([0u8; 50]);
    let w = cls::class_weights(&labels);
    let want = [
        1.0 - (50.0f64 / 51.0).powf(0.25),
        1.0 - (1.0f64 / 51.0).powf(0.25),
    ];
    assert!((w[0] as f64 - want[0]).abs() < 1e-7, "{w:?} vs {want:?}");
    assert!((w[1] as f64 - want[1]).abs() < 1e-7, "{w:?} vs {want:?}");
    assert!(w[1] > 100.0 * w[0]);
    // A class absent from training gets weight 1, the present one 0.
    assert_eq!(cls::class_weights(&[0, 0, 0]), [0.0, 1.0]);
}

#[test]
fn flags_parse_or_explain() {
    assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
    for bad in ["8/8", "1/0", "x/2", "3"] {
        let e = Shard::parse(bad).unwrap_err().0;
        assert!(e.contains("0 <= I < K"), "{e}");
    }
    assert_eq!(
        Combo::parse_list("IMG, concat,img").unwrap(),
        vec![Combo::Img, Combo::Concat]
    );
    let e = Combo::parse_list("img,edges").unwrap_err().0;
    assert!(e.contains("'edges'") && e.contains("img+concat"), "{e}");
    let p = Protocol {
        positives: vec![1, 11],
        ..Protocol::default()
    };
    assert!(p
        .validate()
        .unwrap_err()
        .0
        .contains("exceeds the training pool"));
    let p = Protocol {
        size: 48,
        ..Protocol::default()
    };
    assert!(p.validate().unwrap_err().0.contains("multiple of 32"));
}

#[test]
fn run_records_round_trip_and_a_torn_last_line_is_skipped() {
    let dir = scratch("proto_jsonl");
    let rec = RunRecord {
        disease: "effusion".into(),
        features: "concat".into(),
        classifier: "vgg".into(),
        k: 3,
        rep: 1,
        split_seed: u64::MAX - 5,
        init_seed: 42,
        confusion: Confusion {
            tp: 8,
            fn_: 2,
            tn: 45,
            fp: 5,
        },
        final_loss: 0.25,
        seconds: 1.5,
        test: vec!["E001_0".into(), "N031_2".into(), "N031_3".into()],
        test_patients: vec!["E001".into(), "N031".into(), "N031".into()],
        test_y: vec![1, 0, 0],
        probs: vec![0.75, 0.5, 0.875],
        classes: Vec::new(),
        probs_all: Vec::new(),
    };
    let v = rec.to_json();
    assert!(close(v["kappa"].as_f64(), 0.625), "{v}");
    // One positive above one of two negatives.
    assert!(close(v["auc"].as_f64(), 0.5), "{v}");
    assert!(close(v["tpr"].as_f64(), 0.8), "{v}");
    assert_eq!(RunRecord::from_json(&v).unwrap(), rec);
    let mut other = rec.clone();
    other.k = 5;
    std::fs::write(
        dir.join("runs.jsonl"),
        format!("{}\n{}\n{{\"disease\":\"eff", v, other.to_json()),
    )
    .unwrap();
    let runs = report::read_runs(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(runs, vec![rec.clone(), other]);
    // A bad line in the middle is an error naming the file and line.
    std::fs::write(dir.join("runs.jsonl"), format!("{v}\nnot json\n{v}\n")).unwrap();
    let e = report::read_runs(std::slice::from_ref(&dir)).unwrap_err().0;
    assert!(e.contains("runs.jsonl line 2"), "{e}");
}

#[test]
fn vgg_shapes_counts_and_gradient() {
    let gpu = gpu();
    let config = VggConfig::new(3, 32, 1.0 / 32.0, 5).unwrap();
    assert_eq!(config.widths, [2, 4, 8, 16, 16]);
    assert_eq!(config.flat(), 16);
    let paper = VggConfig::new(49, 256, 1.0, 4096).unwrap();
    assert_eq!(paper.widths, [64, 128, 256, 512, 512]);
    assert_eq!(paper.flat(), 512 * 8 * 8);
    // VGG-16's 13 convolutions + 3 fully connected layers.
    assert_eq!(paper.param_shapes().len(), 2 * 16);
    assert!(VggConfig::new(3, 40, 1.0, 8).is_err());

    let vgg = Vgg::init(&gpu, config.clone(), 3).unwrap();
    assert_eq!(vgg.param_count() as u64, config.cost().0);
    let mut r = segfeat::nn::init::rng(4);
    let xs: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|_| segfeat::nn::init::normal(&mut r) as f32)
        .collect();
    let x = Tensor::from_slice(&gpu, &[2, 3, 32, 32], &xs).unwrap();
    let y = Tensor::from_slice(&gpu, &[2], &[0.0, 1.0]).unwrap();
    let w = Tensor::from_slice(&gpu, &[2], &[0.3, 0.7]).unwrap();
    let loss_at = |vgg: &Vgg| -> f64 {
        let tape = Tape::new(&gpu);
        let xv = tape.constant(&x);
        let (z, _) = tape
            .no_grad(|| vgg.forward(&tape, &xv, Pass::Eval))
            .unwrap();
        assert_eq!(z.shape(), &[2, 2]);
        let l = ops::softmax_ce::forward(&gpu, &z.value, &y, &w).unwrap().0;
        l.item(&gpu) as f64
    };
    // Analytic gradient of the last fully connected weight (through the tape).
    let tape = Tape::new(&gpu);
    let xv = tape.constant(&x);
    let (z, params) = vgg
        .forward(&tape, &xv, Pass::Train { seed: 0, step: 0 })
        .unwrap();
    let loss = ops::softmax_ce(&tape, &z, &y, &w).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let (fc3, fc3_var) = (&vgg.params[vgg.params.len() - 2], &params[params.len() - 2]);
    assert_eq!(fc3.0, "fc3.weight");
    let g = grads.get(fc3_var).unwrap().to_vec(&gpu);
    // The loss is smooth in fc3's weights (softmax of an affine map), so central
    // differences with h = 1e-2 are accurate to O(h^2) ~ 1e-4 relative; f32 rounding of a
    // loss of order 1 adds about 1e-7 / h = 1e-5.
    let h = 1e-2f32;
    let host: Vec<(String, Vec<usize>, Vec<f32>)> = vgg
        .params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec(&gpu)))
        .collect();
    let shifted = |i: usize, d: f32| -> Vgg {
        Vgg::from_arrays(&gpu, config.clone(), |name| {
            let (_, shape, data) = host.iter().find(|(n, _, _)| n == name)?;
            let mut data = data.clone();
            if name == "fc3.weight" {
                data[i] += d;
            }
            Some((shape.clone(), data))
        })
        .unwrap()
    };
    for i in [0, 3, g.len() - 1] {
        let fd = (loss_at(&shifted(i, h)) - loss_at(&shifted(i, -h))) / (2.0 * h as f64);
        assert!(
            (fd - g[i] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
            "fc3.weight[{i}]: tape {} vs finite difference {fd}",
            g[i]
        );
    }
    // Every parameter receives a gradient.
    assert!(params.iter().all(|p| grads.get(p).is_some()));
}

#[test]
fn classifier_learns_a_separable_toy_problem() {
    // Positives have a bright square; the classifier must find it from 6 + 12 images.
    let gpu = gpu();
    let config = VggConfig::new(1, 32, 1.0 / 16.0, 16).unwrap();
    let vgg = Vgg::init(&gpu, config, 9).unwrap();
    let tensors: Vec<&Tensor> = vgg.params.iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&gpu, &tensors, 1e-3).unwrap();
    let mut r = segfeat::nn::init::rng(10);
    let mut make = |pos: bool| -> Vec<f32> {
        let mut v: Vec<f32> = (0..32 * 32)
            .map(|_| 0.3 * segfeat::nn::init::normal(&mut r) as f32)
            .collect();
        if pos {
            for yy in 10..20 {
                for xx in 12..22 {
                    v[yy * 32 + xx] += 2.0;
                }
            }
        }
        v
    };
    let labels: Vec<f32> = (0..16).map(|i| (i % 2) as f32).collect();
    let xs: Vec<f32> = labels.iter().flat_map(|&l| make(l == 1.0)).collect();
    let x = Tensor::from_slice(&gpu, &[16, 1, 32, 32], &xs).unwrap();
    let y = Tensor::from_slice(&gpu, &[16], &labels).unwrap();
    let w = Tensor::from_slice(&gpu, &[2], &[0.5, 0.5]).unwrap();
    let first = cls::step(
        &gpu,
        &vgg,
        &mut adam,
        &x,
        &y,
        &w,
        Pass::Train { seed: 0, step: 0 },
    )
    .unwrap()
    .item(&gpu);
    let mut last = first;
    for _ in 0..40 {
        last = cls::step(
            &gpu,
            &vgg,
            &mut adam,
            &x,
            &y,
            &w,
            Pass::Train { seed: 0, step: 1 },
        )
        .unwrap()
        .item(&gpu);
    }
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

/// The full phantom at 32x32 and a tiny segmentation network trained on the normal images
/// of its first 30 normal patients (as the demo does), saved for the command line.
fn tiny_seg(gpu: &Gpu, dir: &Path) -> (Dataset, Unet, SegMeta, PathBuf) {
    let data = PhantomSpec {
        size: 32,
        ..PhantomSpec::default()
    }
    .generate()
    .unwrap();
    let normals = data.select(None, &[Group::Normal]).unwrap();
    let patients: Vec<String> = normals.patients().into_iter().take(30).collect();
    let train = data.select(Some(&patients), &[Group::Normal]).unwrap();
    let opts = SegTrainOptions {
        channels: 2,
        size: 32,
        epochs: 1,
        batches_per_epoch: 2,
        batch: 4,
        progress: false,
        ..SegTrainOptions::default()
    };
    let path = dir.join("seg.safetensors");
    let (unet, meta) = seg::train(gpu, &train, &opts, &path, false).unwrap();
    save_unet(gpu, &path, &unet, &meta).unwrap();
    (data, unet, meta, path)
}

fn tiny_protocol() -> Protocol {
    Protocol {
        combos: vec![Combo::Img, Combo::ImgConcat],
        positives: vec![1, 2],
        reps: 2,
        negatives_train: 6,
        negatives_test: 5,
        pool: 2,
        positives_test: 3,
        seed: 7,
        width: 1.0 / 64.0,
        fc: 4,
        size: 32,
        train: ClsTrainOptions {
            batch: 4,
            batches_per_epoch: 2,
            epochs: 2,
            lr: 1e-3,
            ..ClsTrainOptions::default()
        },
        ..Protocol::default()
    }
}

fn file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn protocol_end_to_end_resumes_shards_and_reports() {
    let gpu = gpu();
    let root = scratch("proto_e2e");
    let (data, unet, meta, _) = tiny_seg(&gpu, &root);
    let p = tiny_protocol();
    let runs = p.runs();
    assert_eq!(runs.len(), 2 * 2 * 2 * 2);

    // The splits: disjoint train and test, the right sizes and labels, no image of the
    // segmentation network's training patients among the negatives.
    let cohort = experiment::Cohort::select(&data, &meta, &p).unwrap();
    assert!(cohort.excluded_seg_patients);
    assert_eq!(cohort.negative_patients.len(), 10);
    for &i in &cohort.negatives {
        assert!(!meta.patients.contains(&data.samples[i].patient));
    }
    let experiment::Split {
        train,
        train_y: ty,
        test,
        test_y: sy,
        ..
    } = cohort.split(&p, &runs[0]).unwrap();
    assert_eq!((train.len(), test.len()), (runs[0].k + 6, 3 + 5));
    assert_eq!(ty.iter().filter(|&&l| l == 1).count(), runs[0].k);
    assert_eq!(sy.iter().filter(|&&l| l == 1).count(), 3);
    assert!(train.iter().all(|i| !test.contains(i)));
    let bank_images = cohort.images();
    for (&b, &l) in train.iter().zip(&ty).chain(test.iter().zip(&sy)) {
        let g = data.samples[bank_images[b]].group;
        assert_eq!(l == 1, g == runs[0].disease, "label of {b}");
    }

    // Split by patient: no patient on both sides, the same sizes, the pool's first
    // images from different patients, and an impossible split refused when selecting.
    let pp = Protocol {
        split: experiment::SplitBy::Patient,
        pool: 4,
        ..p.clone()
    };
    let cohort_p = experiment::Cohort::select(&data, &meta, &pp).unwrap();
    let patient = |b: usize| data.samples[bank_images[b]].patient.clone();
    for r in &runs {
        let r = experiment::RunId { k: 2, ..*r };
        let sp = cohort_p.split(&pp, &r).unwrap();
        assert_eq!((sp.train.len(), sp.test.len()), (2 + 6, 3 + 5));
        assert_eq!(sp.train_y.iter().filter(|&&l| l == 1).count(), 2);
        let train_pts: Vec<String> = sp.train.iter().map(|&b| patient(b)).collect();
        for &b in &sp.test {
            assert!(
                !train_pts.contains(&patient(b)),
                "{} on both sides",
                patient(b)
            );
        }
        // The pool of 4 comes from two patients of 3 slices, one image of each first.
        assert_ne!(patient(sp.train[0]), patient(sp.train[1]));
        for (&b, &l) in sp.train.iter().zip(&sp.train_y) {
            assert_eq!(l == 1, data.samples[bank_images[b]].group == r.disease);
        }
    }
    let too_many = Protocol {
        split: experiment::SplitBy::Patient,
        positives_test: 28,
        ..p.clone()
    };
    let err = experiment::Cohort::select(&data, &meta, &too_many)
        .err()
        .expect("no room for 28 test positives after the pool's whole patients")
        .0;
    assert!(err.contains("splitting by patient"), "{err}");

    // One uninterrupted experiment.
    let full = root.join("full");
    let done = experiment::run(&gpu, &unet, &meta, &data, &p, &full, Execution::default()).unwrap();
    assert_eq!(done, runs.len());
    let lines = file(&full, "runs.jsonl");
    assert_eq!(lines.lines().count(), runs.len());
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    for key in [
        "disease",
        "features",
        "k",
        "rep",
        "split_seed",
        "init_seed",
        "tpr",
        "tnr",
        "kappa",
        "tp",
        "fn",
        "tn",
        "fp",
        "seconds",
    ] {
        assert!(
            first.get(key).is_some(),
            "JSONL lines carry '{key}': {first}"
        );
    }
    assert_eq!(
        first["tp"].as_u64().unwrap() + first["fn"].as_u64().unwrap(),
        3
    );
    let summary = file(&full, "summary.csv");
    assert_eq!(summary.lines().count(), 1 + 2 * 2 * 2, "{summary}");
    assert!(summary.starts_with("disease,features,k,reps,tpr_mean"));
    let md = file(&full, "report.md");
    assert!(
        md.contains("## effusion") && md.contains("## septal"),
        "{md}"
    );
    assert!(md.contains("| k | IMG | IMG+CONCAT |"), "{md}");
    // Every test prediction of every run, with its patient: one row each.
    let preds = file(&full, "predictions.csv");
    let mut rdr = csv::Reader::from_reader(preds.as_bytes());
    let head: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        head,
        [
            "disease",
            "features",
            "classifier",
            "k",
            "rep",
            "image",
            "patient",
            "truth",
            "p",
            "class_probs"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let tests: usize = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                v["test_patients"].as_array().unwrap().len(),
                v["test"].as_array().unwrap().len()
            );
            v["test"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(rows.len(), tests);
    for r in &rows {
        assert!(
            r[5].starts_with(&r[6]),
            "image {} of patient {}",
            &r[5],
            &r[6]
        );
    }
    for d in ["effusion", "septal"] {
        let img = image::open(full.join(format!("fig-{d}.png"))).unwrap();
        assert!(img.width() >= 400 && img.height() >= 300);
        let svg = file(&full, &format!("fig-{d}.svg"));
        assert!(
            svg.contains("<svg") && svg.contains("true-negative rate"),
            "{d}"
        );
        // The figure's data: every (metric, series, measured k) once, with its band.
        let data = file(&full, &format!("fig-{d}.csv"));
        let rows: Vec<&str> = data.lines().skip(1).collect();
        assert_eq!(rows.len(), 4 * 2 * 2, "{data}");
        assert!(rows.iter().all(|r| r.split(',').count() == 7), "{data}");
    }
    // Again: nothing left to do, nothing changes.
    assert_eq!(
        experiment::run(&gpu, &unet, &meta, &data, &p, &full, Execution::default()).unwrap(),
        0
    );
    assert_eq!(file(&full, "runs.jsonl"), lines);

    // Part of the runs (shard 0 of 2, then one more run of a torn line), then the rest:
    // the same table.
    let part = root.join("part");
    let half = experiment::run(
        &gpu,
        &unet,
        &meta,
        &data,
        &p,
        &part,
        Execution {
            shard: Some(Shard { index: 0, count: 2 }),
            ..Execution::default()
        },
    )
    .unwrap();
    assert_eq!(half, runs.len() / 2);
    let shard_file = part.join("runs.0-of-2.jsonl");
    let mut torn = std::fs::read_to_string(&shard_file).unwrap();
    torn.push_str("{\"disease\":\"septal\",\"feat");
    std::fs::write(&shard_file, torn).unwrap();
    let rest = experiment::run(&gpu, &unet, &meta, &data, &p, &part, Execution::default()).unwrap();
    assert_eq!(rest, runs.len() / 2);
    assert_eq!(file(&part, "summary.csv"), summary);
    let key = |r: &RunRecord| r.key();
    let mut a = report::read_runs(std::slice::from_ref(&full)).unwrap();
    let mut b = report::read_runs(std::slice::from_ref(&part)).unwrap();
    a.sort_by_key(key);
    b.sort_by_key(key);
    let strip = |v: Vec<RunRecord>| -> Vec<RunRecord> {
        v.into_iter()
            .map(|mut r| {
                r.seconds = 0.0;
                r
            })
            .collect()
    };
    let a = strip(a);
    assert_eq!(a, strip(b), "resumed runs equal uninterrupted ones");

    // Three runs at a time, each on a device of its own: the same runs, bit for bit.
    let par = root.join("par");
    let exec = Execution {
        jobs: 3,
        ..Execution::default()
    };
    let done = experiment::run(&gpu, &unet, &meta, &data, &p, &par, exec).unwrap();
    assert_eq!(done, runs.len());
    assert_eq!(file(&par, "runs.jsonl").lines().count(), runs.len());
    let mut c = report::read_runs(std::slice::from_ref(&par)).unwrap();
    c.sort_by_key(key);
    assert_eq!(
        a,
        strip(c),
        "runs trained at once equal runs trained in turn"
    );
    assert_eq!(file(&par, "summary.csv"), summary);

    // Shards in separate folders, merged by the report.
    let (s0, s1, merged) = (root.join("s0"), root.join("s1"), root.join("merged"));
    for (i, d) in [(0, &s0), (1, &s1)] {
        let exec = Execution {
            shard: Some(Shard { index: i, count: 2 }),
            ..Execution::default()
        };
        experiment::run(&gpu, &unet, &meta, &data, &p, d, exec).unwrap();
    }
    report::write(&[s0.clone(), s1.clone()], &merged).unwrap();
    assert_eq!(file(&merged, "summary.csv"), summary);

    // Other settings in the same folder are refused, naming what differs.
    let other = Protocol {
        seed: 8,
        ..tiny_protocol()
    };
    let e = experiment::run(
        &gpu,
        &unet,
        &meta,
        &data,
        &other,
        &full,
        Execution::default(),
    )
    .unwrap_err()
    .0;
    assert!(e.contains("other settings") && e.contains("seed"), "{e}");
}

#[test]
fn command_line_trains_and_applies_a_classifier() {
    let gpu = gpu();
    let root = scratch("proto_cli");
    let (data, _, _, seg_path) = tiny_seg(&gpu, &root);
    let seg_s = seg_path.display().to_string();
    let cls_path = root.join("cls.safetensors").display().to_string();
    let tiny = [
        "--preset",
        "quick",
        "--width",
        "0.02",
        "--fc",
        "4",
        "--epochs",
        "1",
        "--batches-per-epoch",
        "2",
        "--batch",
        "4",
        "--negatives-train",
        "6",
        "--negatives-test",
        "5",
        "--pool",
        "2",
        "--positives-test",
        "3",
    ];
    let mut args = vec![
        "train-cls",
        "--seg",
        &seg_s,
        "--data",
        "phantom",
        "--disease",
        "effusion",
        "--features",
        "img+seg",
        "--positives",
        "2",
        "--out",
        &cls_path,
    ];
    args.extend(tiny);
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("test (3 positives, 5 negatives): TPR"),
        "{out}"
    );

    // Classify one image of the phantom, written as a PNG.
    let img_path = root.join("one.png");
    let s = data
        .samples
        .iter()
        .find(|s| s.group == Group::Effusion)
        .unwrap();
    let px: Vec<u16> = s.image.iter().map(|&v| (v * 65535.0) as u16).collect();
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(32, 32, px)
        .unwrap()
        .save(&img_path)
        .unwrap();
    let img_s = img_path.display().to_string();
    let (code, out, err) = run_cli(&[
        "classify", "--seg", &seg_s, "--model", &cls_path, "--input", &img_s,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("P(effusion) = "), "{out}");
    let single: f64 = out.split("= ").nth(1).unwrap()[..6].parse().unwrap();
    // A folder of images (and the same image again, by name) into one CSV.
    let many = root.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for (i, s) in data.samples.iter().take(20).enumerate() {
        let px: Vec<u16> = s.image.iter().map(|&v| (v * 65535.0) as u16).collect();
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(32, 32, px)
            .unwrap()
            .save(many.join(format!("{i:02}.png")))
            .unwrap();
    }
    let csv_path = root.join("predictions.csv");
    let (code, out, err) = run_cli(&[
        "classify",
        "--seg",
        &seg_s,
        "--model",
        &cls_path,
        "--input",
        many.to_str().unwrap(),
        &img_s,
        "--csv",
        csv_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["image", "p_effusion", "decision"]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 21);
    assert!(rows[0][0].ends_with("00.png") && rows[20][0].ends_with("one.png"));
    // The image classified alone or among others gets the same probability.
    let again: f64 = rows[20][1].parse().unwrap();
    assert!((again - single).abs() < 1e-4, "{again} vs {single}");
    for r in &rows {
        let p: f64 = r[1].parse().unwrap();
        assert_eq!(&r[2], if p > 0.5 { "effusion" } else { "normal" });
    }

    // A regularised, augmented classifier: its file records the options, classify reads
    // them.
    let reg_path = root.join("cls-reg.safetensors").display().to_string();
    let mut base = vec![
        "train-cls",
        "--seg",
        &seg_s,
        "--data",
        "phantom",
        "--disease",
        "effusion",
        "--features",
        "concat",
        "--positives",
        "2",
        "--out",
        &reg_path,
    ];
    base.extend(tiny);
    let mut args = base.clone();
    args.extend([
        "--bn",
        "--dropout",
        "0.5",
        "--leaky",
        "0.1",
        "--gap",
        "--rotate",
        "10",
        "--noise",
        "0.02",
    ]);
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "{out}{err}");
    let ck = segfeat::nn::checkpoint::load(Path::new(&reg_path)).unwrap();
    assert_eq!(
        ck.metadata["regularisation"],
        "bn=1,dropout=0.5,leaky=0.1,gap=1"
    );
    let training: serde_json::Value = serde_json::from_str(&ck.metadata["training"]).unwrap();
    assert_eq!(
        training["augment"], "rotate=10,noise=0.02",
        "{:?}",
        ck.metadata
    );
    assert!(training["images"].as_array().is_some_and(|a| a.len() > 2));
    assert!(ck.tensors.contains_key("block1.conv1.bn.running"));
    let (code, out, err) = run_cli(&[
        "classify", "--seg", &seg_s, "--model", &reg_path, "--input", &img_s,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("P(effusion) = "), "{out}");
    for (bad, want) in [
        (vec!["--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (vec!["--leaky=-1"], "--leaky must be in [0, 1)"),
        (vec!["--crop", "1"], "--crop must be below 1"),
        (vec!["--flip", "x"], "--flip must be h, v, hv or none"),
        (vec!["--augment", "zoom=2"], "unknown augmentation 'zoom'"),
    ] {
        let mut a = base.clone();
        a.extend(bad);
        let (code, _, err) = run_cli(&a);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(want), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{err}"
        );
    }

    // The experiment and report commands, and bad input as one sentence each.
    let exp = root.join("exp").display().to_string();
    let mut args = vec![
        "experiment",
        "--seg",
        &seg_s,
        "--data",
        "phantom",
        "--features",
        "seg",
        "--positives",
        "1..2",
        "--reps",
        "1",
        "--diseases",
        "septal",
        "--out",
        &exp,
    ];
    args.extend(tiny);
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("## septal"), "{out}");
    assert_eq!(file(Path::new(&exp), "runs.jsonl").lines().count(), 2);
    let (code, out, _) = run_cli(&["report", &exp]);
    assert_eq!(code, 0);
    assert!(out.contains("| k | SEG |"), "{out}");

    let missing = root.join("none").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["report", &missing],
            "is not a folder of experiment results",
        ),
        (
            vec![
                "experiment",
                "--seg",
                &seg_s,
                "--data",
                "phantom",
                "--shard",
                "2/2",
                "--out",
                &exp,
            ],
            "--shard must be I/K",
        ),
        (
            vec![
                "experiment",
                "--seg",
                &seg_s,
                "--data",
                "phantom",
                "--features",
                "edges",
                "--out",
                &exp,
            ],
            "unknown feature combination 'edges'",
        ),
        (
            vec![
                "experiment",
                "--seg",
                &seg_s,
                "--data",
                "phantom",
                "--positives",
                "3..1",
                "--out",
                &exp,
            ],
            "--positives must be a range",
        ),
        (
            vec![
                "train-cls",
                "--seg",
                &seg_s,
                "--data",
                "phantom",
                "--disease",
                "flu",
                "--out",
                &cls_path,
            ],
            "unknown disease 'flu'",
        ),
        (
            vec![
                "classify", "--seg", &seg_s, "--model", &missing, "--input", &img_s,
            ],
            "cannot read checkpoint",
        ),
        (
            vec![
                "classify", "--seg", &seg_s, "--model", &seg_s, "--input", &img_s,
            ],
            "is not a segfeat classifier",
        ),
        (
            vec!["demo", "--preset", "huge"],
            "--preset must be 'quick', 'mid' or 'paper'",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = run_cli(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn regularised_vgg_trains_saves_and_reloads() {
    use segfeat::nn::checkpoint::{load_classifier, save_classifier, ClsMeta};
    use segfeat::nn::vgg::Regularisation;
    use segfeat::train::features::ChannelStats;
    let gpu = gpu();
    let dir = scratch("vgg_reg");
    let mut config = VggConfig::new(2, 32, 1.0 / 16.0, 8).unwrap();
    let plain = config.param_shapes();
    config.reg = Regularisation {
        bn: true,
        dropout: 0.5,
        leaky: 0.01,
        gap: true,
    };
    // Batch norm adds gamma and beta per convolution and hidden layer, one running
    // statistics buffer each; the weights keep their He draws (same seed, same bits).
    assert_eq!(config.param_shapes().len(), plain.len() + 2 * 15);
    assert_eq!(config.buffer_shapes().len(), 15);
    assert_eq!(config.flat(), config.widths[4]);
    let vgg = Vgg::init(&gpu, config.clone(), 3).unwrap();
    assert_eq!(vgg.param_count() as u64, config.cost().0);
    let base = Vgg::init(&gpu, VggConfig::new(2, 32, 1.0 / 16.0, 8).unwrap(), 3).unwrap();
    let w = |v: &Vgg, name: &str| {
        v.params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .to_vec(&gpu)
    };
    assert_eq!(
        w(&vgg, "block2.conv1.weight"),
        w(&base, "block2.conv1.weight")
    );
    assert!(w(&vgg, "block1.conv1.bn.gamma").iter().all(|&g| g == 1.0));

    // Separable inputs: the inference loss goes down; the running statistics move.
    let mut r = segfeat::nn::init::rng(4);
    let labels: Vec<f32> = (0..8).map(|i| (i % 2) as f32).collect();
    let xs: Vec<f32> = (0..8 * 2 * 32 * 32)
        .map(|i| {
            let sample = i / (2 * 32 * 32);
            segfeat::nn::init::normal(&mut r) as f32 + 2.0 * labels[sample]
        })
        .collect();
    let x = Tensor::from_slice(&gpu, &[8, 2, 32, 32], &xs).unwrap();
    let y = Tensor::from_slice(&gpu, &[8], &labels).unwrap();
    let cw = Tensor::from_slice(&gpu, &[2], &[0.5, 0.5]).unwrap();
    let tensors: Vec<&Tensor> = vgg.params.iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&gpu, &tensors, 1e-3).unwrap();
    let run0 = vgg.buffers[0].1.to_vec(&gpu);
    let eval = |v: &Vgg| {
        let tape = Tape::new(&gpu);
        let xv = tape.constant(&x);
        let (z, _) = tape.no_grad(|| v.forward(&tape, &xv, Pass::Eval)).unwrap();
        z.value.to_vec(&gpu)
    };
    let eval_loss = |v: &Vgg| {
        let z = Tensor::from_slice(&gpu, &[8, 2], &eval(v)).unwrap();
        ops::softmax_ce::forward(&gpu, &z, &y, &cw)
            .unwrap()
            .0
            .item(&gpu)
    };
    let first = eval_loss(&vgg);
    for step in 0..60 {
        let pass = Pass::Train { seed: 9, step };
        cls::step(&gpu, &vgg, &mut adam, &x, &y, &cw, pass).unwrap();
    }
    let last = eval_loss(&vgg);
    assert!(last < 0.5 * first, "inference loss {first} -> {last}");
    assert_ne!(vgg.buffers[0].1.to_vec(&gpu), run0);

    // Inference is deterministic (no dropout, running statistics) and survives a save.
    let before = eval(&vgg);
    assert_eq!(eval(&vgg), before);
    let meta = ClsMeta {
        features: Combo::Img,
        stats: ChannelStats::identity(2),
        class_weights: vec![0.5, 0.5],
        disease: "effusion".into(),
        class_names: vec!["normal".into(), "effusion".into()],
        seg: (2, 6, 32),
        training: "test".into(),
        seg_sha256: "0".repeat(64),
    };
    let path = dir.join("cls.safetensors");
    save_classifier(&gpu, &path, &vgg, &meta).unwrap();
    let (back, _) = load_classifier(&gpu, &path).unwrap();
    assert_eq!(back.config, config);
    assert_eq!(eval(&back), before);
}

#[test]
fn linear_svm_separates_and_chooses_c_by_cross_validation() {
    use segfeat::train::svm;
    // Two features, the first separating the classes with a margin, the second noise.
    let mut r = segfeat::nn::init::rng(5);
    let labels: Vec<u8> = (0..40).map(|i| u8::from(i % 4 == 0)).collect();
    let raw: Vec<Vec<f64>> = labels
        .iter()
        .map(|&l| {
            let n = segfeat::nn::init::normal(&mut r);
            vec![
                if l == 1 { 2.0 } else { -2.0 } + 0.3 * n,
                segfeat::nn::init::normal(&mut r),
            ]
        })
        .collect();
    for c in svm::C_GRID {
        let m = svm::fit(&raw, &labels, c).unwrap();
        // The optimum: the primal gradient vanishes (Newton converged), checked on w.
        let cw = segfeat::train::cls::class_weights(&labels);
        let mut g = m.w.clone();
        for (x, &l) in raw.iter().zip(&labels) {
            let xs: Vec<f64> = (0..2).map(|j| (x[j] - m.mean[j]) / m.std[j]).collect();
            let y = if l == 1 { 1.0 } else { -1.0 };
            let f = m.w[0] * xs[0] + m.w[1] * xs[1] + m.b;
            if y * f < 1.0 {
                for j in 0..2 {
                    g[j] += 2.0 * c * cw[l as usize] as f64 * (f - y) * xs[j];
                }
            }
        }
        assert!(
            g.iter().all(|v| v.abs() < 1e-6 * (1.0 + c)),
            "C={c}: gradient {g:?}"
        );
        // Larger C, larger weights.
        assert!(m.w[0] > 0.0);
    }
    let c = svm::choose_c(&raw, &labels, 3);
    assert_eq!(c, svm::choose_c(&raw, &labels, 3), "seeded");
    let m = svm::fit(&raw, &labels, c).unwrap();
    let correct = raw
        .iter()
        .zip(&labels)
        .filter(|(x, &l)| {
            let f = m.w[0] * (x[0] - m.mean[0]) / m.std[0]
                + m.w[1] * (x[1] - m.mean[1]) / m.std[1]
                + m.b;
            (f > 0.0) == (l == 1)
        })
        .count();
    assert_eq!(correct, 40, "C = {c}");
    // Stratified folds: 10 positives, 2 per fold.
    let folds = svm::folds(&labels, 1);
    for f in 0..svm::FOLDS {
        let pos = (0..40).filter(|&i| folds[i] == f && labels[i] == 1).count();
        assert_eq!(pos, 2);
    }
}

#[test]
fn experiment_compares_classifier_kinds() {
    use experiment::ClassifierKind;
    let gpu = gpu();
    let root = scratch("proto_kinds");
    let (data, unet, meta, _) = tiny_seg(&gpu, &root);
    let p = Protocol {
        positives: vec![1],
        reps: 2,
        classifiers: ClassifierKind::ALL.to_vec(),
        ..tiny_protocol()
    };
    assert_eq!(p.runs().len(), 2 * 2 * 2 * 3);
    let out = root.join("exp");
    let exec = Execution {
        shard: None,
        jobs: 1,
        progress: false,
    };
    experiment::run(&gpu, &unet, &meta, &data, &p, &out, exec).unwrap();
    let runs = report::read_runs(std::slice::from_ref(&out)).unwrap();
    assert_eq!(runs.len(), 24);
    for kind in ["vgg", "vgg-reg", "svm"] {
        assert_eq!(
            runs.iter().filter(|r| r.classifier == kind).count(),
            8,
            "{kind}"
        );
    }
    // The settings pin what vgg-reg and the SVM are.
    let settings = file(&out, "experiment.json");
    assert!(
        settings.contains("\"vgg_reg\"") && settings.contains("\"c_grid\""),
        "{settings}"
    );
    // The report compares each kind's CONCAT with its own IMG, and each kind with the
    // paper's VGG on the same features.
    let md = file(&out, "report.md");
    for want in [
        "IMG+CONCAT:VGG-REG",
        "IMG:SVM",
        "Paired difference to IMG:SVM",
        "Paired difference to the paper's VGG on the same features",
    ] {
        assert!(md.contains(want), "report.md lacks {want}");
    }
    let pairs = report::paired_kinds(&runs);
    assert!(pairs
        .iter()
        .any(|r| r.features == "img:svm" && r.baseline == "img"));
    // Run again: nothing left to do.
    assert_eq!(
        experiment::run(&gpu, &unet, &meta, &data, &p, &out, exec).unwrap(),
        0
    );
}

#[test]
fn a_renamed_phantom_runs_the_protocol_with_any_group_names() {
    let dir = scratch("protocol_renamed");
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "phantom",
        "--out",
        d,
        "--size",
        "32",
        "--normal-patients",
        "8",
        "--slices",
        "3..3",
        "--effusion",
        "6",
        "--septal",
        "6",
    ]);
    assert_eq!(code, 0, "{err}");
    // The groups renamed as a user's manifest would name them.
    let manifest = data.join("manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let renamed: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let g = match f[2] {
                "normal" => "Healthy",
                "effusion" => "pneumothorax",
                "septal" => "fracture",
                g => g,
            };
            format!("{},{},{g},{}\n", f[0], f[1], f[3])
        })
        .collect();
    std::fs::write(&manifest, renamed).unwrap();
    let seg = common::tiny_model(&dir, "seg.st", &["--data", d, "--normal", "healthy"]);
    let s = seg.to_str().unwrap();
    let exp = dir.join("exp");
    let (code, out, err) = run_cli(&[
        "experiment",
        "--seg",
        s,
        "--data",
        d,
        "--normal",
        "healthy",
        "--diseases",
        "pneumothorax,fracture",
        "--features",
        "img,concat",
        "--positives",
        "1,2",
        "--reps",
        "1",
        "--preset",
        "quick",
        "--negatives-train",
        "4",
        "--negatives-test",
        "4",
        "--pool",
        "2",
        "--positives-test",
        "2",
        "--epochs",
        "1",
        "--batches-per-epoch",
        "2",
        "--batch",
        "2",
        "--split",
        "image",
        "--out",
        exp.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let runs = report::read_runs(std::slice::from_ref(&exp)).unwrap();
    assert_eq!(runs.len(), 2 * 2 * 2);
    for d in ["pneumothorax", "fracture"] {
        assert_eq!(runs.iter().filter(|r| r.disease == d).count(), 4, "{d}");
        assert!(out.contains(d), "{d} missing from the report: {out}");
    }
    // Without --normal, "Healthy" is a disease of its own and no image is normal.
    let (code, _, err) = run_cli(&[
        "experiment",
        "--seg",
        s,
        "--data",
        d,
        "--diseases",
        "pneumothorax",
        "--positives",
        "1",
        "--reps",
        "1",
        "--preset",
        "quick",
        "--out",
        dir.join("exp2").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn summary_intervals_are_bootstrap_intervals_reproducible_from_their_cell() {
    use segfeat::protocol::metrics::mean_ci;
    let v = [0.2, 0.5, 0.9, 0.4, 0.7];
    let some = |x: &[f64]| x.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    let a = mean_ci(some(&v).into_iter(), "effusion/concat/3/kappa").unwrap();
    let b = mean_ci(some(&v).into_iter(), "effusion/concat/3/kappa").unwrap();
    assert_eq!(a, b);
    let mean = v.iter().sum::<f64>() / 5.0;
    assert!(
        a.0 < mean && mean < a.1 && a.0 >= 0.2 && a.1 <= 0.9,
        "{a:?}"
    );
    // Undefined values are left out; a constant gives a point interval; none gives None.
    let with_none = [Some(0.5), None, Some(0.5)];
    assert_eq!(mean_ci(with_none.into_iter(), "x"), Some((0.5, 0.5)));
    assert_eq!(mean_ci([None, None].into_iter(), "x"), None);
}

#[test]
fn multi_class_kappa_on_hand_computed_matrices() {
    use segfeat::protocol::metrics::MultiConfusion;
    // Truth rows, predictions columns: n = 20, p_o = (5 + 4 + 3) / 20 = 0.6; row sums
    // 8, 6, 6 and column sums 7, 7, 6 give p_e = (56 + 42 + 36) / 400 = 0.335, so
    // kappa = (0.6 - 0.335) / 0.665.
    let m = MultiConfusion {
        counts: vec![vec![5, 2, 1], vec![1, 4, 1], vec![1, 2, 3]],
    };
    assert_eq!(m.total(), 20);
    assert!(close(m.accuracy(), 0.6));
    assert!(close(m.kappa(), (0.6 - 0.335) / 0.665));
    assert!(close(m.recall(1), 4.0 / 6.0));
    assert!(close(m.precision(0), 5.0 / 7.0));
    // Two classes: the same kappa as the two-class matrix.
    let c = Confusion {
        tp: 8,
        fn_: 2,
        tn: 45,
        fp: 5,
    };
    let two = MultiConfusion {
        counts: vec![vec![45, 5], vec![2, 8]],
    };
    assert!(close(two.kappa(), c.kappa().unwrap()));
    // Everything in one class: chance agreement 1, kappa undefined.
    let one = MultiConfusion {
        counts: vec![vec![0, 0], vec![0, 7]],
    };
    assert_eq!(one.kappa(), None);
    // Macro AUC: class 0 perfectly ranked, class 1 inverted, class 2 absent (left out).
    let truth = [0u8, 0, 1, 1];
    let probs = vec![
        vec![0.9, 0.1, 0.0],
        vec![0.8, 0.2, 0.0],
        vec![0.1, 0.05, 0.85],
        vec![0.2, 0.0, 0.8],
    ];
    let a = segfeat::protocol::metrics::macro_auc(&truth, &probs).unwrap();
    // Class 0: 1.0; class 1: its scores 0.05, 0.0 against 0.1, 0.2: 0.0; class 2: no
    // positives, undefined.
    assert!((a - 0.5).abs() < 1e-12, "{a}");
}

/// The small protocol of the multi-class test's commands.
const SMALL: [&str; 16] = [
    "--preset",
    "quick",
    "--negatives-train",
    "6",
    "--negatives-test",
    "6",
    "--pool",
    "4",
    "--positives-test",
    "4",
    "--epochs",
    "1",
    "--batches-per-epoch",
    "2",
    "--batch",
    "4",
];

/// `args` with the `"SMALL"` placeholder replaced by [`SMALL`].
fn with_small<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .flat_map(|&a| {
            if a == "SMALL" {
                SMALL.to_vec()
            } else {
                vec![a]
            }
        })
        .collect()
}

#[test]
fn a_three_class_experiment_counts_every_test_image_once() {
    let dir = scratch("protocol_three_class");
    let seg = common::tiny_model(&dir, "seg.st", &[]);
    let s = seg.to_str().unwrap();
    let exp = dir.join("exp");
    let (code, out, err) = run_cli(&with_small(&[
        "experiment",
        "--seg",
        s,
        "--data",
        "phantom",
        "--classes",
        "normal,effusion,septal",
        "--features",
        "img,concat",
        "--positives",
        "1,3",
        "--reps",
        "2",
        "SMALL",
        "--out",
        exp.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("A multi-class task: classes normal, effusion, septal"),
        "{out}"
    );
    let runs = report::read_runs(std::slice::from_ref(&exp)).unwrap();
    assert_eq!(runs.len(), 2 * 2 * 2);
    for r in &runs {
        assert_eq!(r.disease, "normal+effusion+septal");
        assert_eq!(r.classes, ["normal", "effusion", "septal"]);
        // 6 normal and 4 of each disease tested, each counted once.
        let m = r.matrix().unwrap();
        assert_eq!(m.total(), 6 + 4 + 4);
        let rows: Vec<u64> = m.counts.iter().map(|row| row.iter().sum()).collect();
        assert_eq!(rows, [6, 4, 4]);
        assert!(r
            .probs_all
            .iter()
            .all(|p| (p.iter().sum::<f32>() - 1.0).abs() < 1e-4));
        // Kappa by hand from the matrix.
        let n = m.total() as f64;
        let po = (0..3).map(|i| m.counts[i][i]).sum::<u64>() as f64 / n;
        let pe = (0..3)
            .map(|i| rows[i] as f64 * m.counts.iter().map(|row| row[i]).sum::<u64>() as f64)
            .sum::<f64>()
            / (n * n);
        match r.kappa() {
            Some(k) => assert!((k - (po - pe) / (1.0 - pe)).abs() < 1e-12),
            None => assert!((1.0 - pe).abs() < 1e-12),
        }
        assert_eq!(r.tpr(), None);
    }
    // The same images as the two-class runs: in each repetition, the effusion and normal
    // test images are the ones the two-class effusion run tests.
    let binary = dir.join("binary");
    let (code, _, err) = run_cli(&with_small(&[
        "experiment",
        "--seg",
        s,
        "--data",
        "phantom",
        "--diseases",
        "effusion",
        "--features",
        "img",
        "--positives",
        "1",
        "--reps",
        "2",
        "SMALL",
        "--out",
        binary.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let two = report::read_runs(std::slice::from_ref(&binary)).unwrap();
    for b in &two {
        let m = runs
            .iter()
            .find(|r| r.rep == b.rep && r.k == 1 && r.features == "img")
            .unwrap();
        let of = |r: &RunRecord, y: u8| -> Vec<String> {
            let mut v: Vec<String> = r
                .test
                .iter()
                .zip(&r.test_y)
                .filter(|(_, &t)| t == y)
                .map(|(n, _)| n.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(of(b, 1), of(m, 1), "effusion, rep {}", b.rep);
        assert_eq!(of(b, 0), of(m, 0), "normal, rep {}", b.rep);
        assert_eq!(m.split_seed, b.split_seed);
    }
    // One three-class classifier through train-cls, applied by classify.
    let cls3 = dir.join("cls3.st");
    let (code, out, err) = run_cli(&with_small(&[
        "train-cls",
        "--seg",
        s,
        "--data",
        "phantom",
        "--classes",
        "normal,effusion,septal",
        "--features",
        "concat",
        "--positives",
        "3",
        "SMALL",
        "--out",
        cls3.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test (14 images): accuracy"), "{out}");
    let ck = segfeat::nn::checkpoint::load(&cls3).unwrap();
    assert_eq!(ck.metadata["classes"], "3");
    assert_eq!(
        ck.metadata["class_names"],
        r#"["normal","effusion","septal"]"#
    );
    let ph = dir.join("ph");
    let (code, _, err) = run_cli(&[
        "phantom",
        "--out",
        ph.to_str().unwrap(),
        "--size",
        "32",
        "--normal-patients",
        "2",
        "--slices",
        "2..2",
        "--effusion",
        "2",
        "--septal",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let csv_path = dir.join("c.csv");
    let (code, _, err) = run_cli(&[
        "classify",
        "--seg",
        s,
        "--model",
        cls3.to_str().unwrap(),
        "--input",
        ph.join("images").to_str().unwrap(),
        "--csv",
        csv_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["image", "p_normal", "p_effusion", "p_septal", "decision"]
    );
    for r in rdr.records().map(|r| r.unwrap()) {
        let p: Vec<f64> = (1..4).map(|i| r[i].parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let best = (0..3).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        assert_eq!(&r[4], ["normal", "effusion", "septal"][best]);
    }

    // The SVM is two-class.
    let (code, _, err) = run_cli(&[
        "experiment",
        "--seg",
        s,
        "--data",
        "phantom",
        "--classes",
        "effusion,septal",
        "--classifiers",
        "svm",
        "--out",
        dir.join("exp2").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("two-class"), "{err}");
}
