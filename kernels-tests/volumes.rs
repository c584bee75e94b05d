//! The 3-D pipeline: the 3-D U-Net learns the 3-D phantom (Dice on held-out patients), is
//! the 2-D U-Net slice by slice when its kernels only use their middle plane and nothing
//! pools in depth, reloads with its depth axis, refuses to resume with another one, and
//! the 3-D phantom holds the same patients as the 2-D one.

mod common;
use common::{gpu, run_cli, scratch};

use segfeat::data::phantom::PhantomSpec;
use segfeat::data::{Group, Slices};
use segfeat::nn::checkpoint::load_unet;
use segfeat::nn::{Unet, UnetConfig, VolumeShape};
use segfeat::train::{seg, SegTrainOptions};
use segfeat::{Tape, Tensor};

fn phantom3d(
    size: usize,
    depth: usize,
    normals: usize,
    positives: usize,
) -> segfeat::data::Dataset {
    PhantomSpec {
        size,
        normal_patients: normals,
        effusion_images: positives,
        septal_images: positives,
        positive_slices: 1,
        volume_depth: Some(depth),
        ..PhantomSpec::default()
    }
    .generate()
    .unwrap()
}

#[test]
fn volume_unet_learns_the_3d_phantom() {
    // 20 training volumes of 8 x 32 x 32, 6 held out; n = 8, 5 epochs of 20 batches of 2.
    let gpu = gpu();
    let ds = phantom3d(32, 8, 26, 0);
    assert_eq!(ds.depth, Some(8));
    let ids = ds.patients();
    let train = ds.select(Some(&ids[..20]), &[Group::Normal]).unwrap();
    let test = ds.select(Some(&ids[20..]), &[Group::Normal]).unwrap();
    let o = SegTrainOptions {
        channels: 8,
        size: 32,
        epochs: 5,
        batches_per_epoch: 20,
        batch: 2,
        progress: false,
        ..SegTrainOptions::default()
    };
    let dir = scratch("volume_learns");
    let (unet, _) = seg::train(&gpu, &train, &o, &dir.join("m.safetensors"), false).unwrap();
    assert_eq!(
        unet.config.volume,
        Some(VolumeShape {
            depth: 8,
            depth_pool: [2, 2, 1, 1]
        })
    );
    let report = seg::evaluate(&gpu, &unet, &test, 2).unwrap();
    eprintln!(
        "3-D U-Net, mean Dice on 6 held-out volumes: {:.3}",
        report.mean()
    );
    assert_eq!(report.images.len(), 6, "one row per volume");
    assert!(report.mean() > 0.5, "mean Dice {}", report.mean());
    // Reloaded, it is the same network: the same Dice.
    let (again, _) = load_unet(&gpu, &dir.join("m.safetensors")).unwrap();
    assert_eq!(again.config, unet.config);
    let report2 = seg::evaluate(&gpu, &again, &test, 3).unwrap();
    assert_eq!(report.dice, report2.dice);
    // A resume that asks for another depth pooling is refused, naming it.
    let other = SegTrainOptions {
        depth_pool: Some([2, 1, 1, 1]),
        epochs: 6,
        ..o
    };
    let err = seg::train(&gpu, &train, &other, &dir.join("m.safetensors"), true)
        .err()
        .unwrap()
        .0;
    assert!(
        err.contains("volume depth 8 pooled 2,1,1,1 (the file: depth 8 pooled 2,2,1,1)"),
        "{err}"
    );
}

#[test]
fn a_3d_unet_with_middle_plane_kernels_is_the_2d_unet_slice_by_slice() {
    // Every 3x3x3 kernel zero outside its middle depth plane, which holds the 2-D
    // network's 3x3 kernel, and no pooling in depth: each slice of the volume is then
    // segmented exactly as the 2-D U-Net segments it alone.
    let gpu = gpu();
    let c2 = UnetConfig::new(2, 3, 16).unwrap();
    let v = VolumeShape {
        depth: 3,
        depth_pool: [1; 4],
    };
    let c3 = UnetConfig::new_3d(2, 3, 16, v).unwrap();
    let u2 = Unet::init(&gpu, c2, 9).unwrap();
    let host: Vec<(String, Vec<usize>, Vec<f32>)> = u2
        .params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.to_vec(&gpu)))
        .collect();
    let u3 = Unet::from_arrays(&gpu, c3.clone(), |name| {
        let (_, shape, w) = host.iter().find(|(n, _, _)| n == name)?;
        Some(match shape.len() {
            1 => (shape.clone(), w.clone()),
            _ if shape[2] == 3 => {
                let (co, ci) = (shape[0], shape[1]);
                let mut w3 = vec![0.0; co * ci * 27];
                for k in 0..co * ci {
                    w3[k * 27 + 9..k * 27 + 18].copy_from_slice(&w[k * 9..k * 9 + 9]);
                }
                (vec![co, ci, 3, 3, 3], w3)
            }
            _ => (vec![shape[0], shape[1], 1, 1, 1], w.clone()),
        })
    })
    .unwrap();
    let mut g = common::rng(3);
    let vol = common::rand_vec(&mut g, 3 * 16 * 16);
    let tape = Tape::new(&gpu);
    let x3 = tape.constant(&Tensor::from_slice(&gpu, &[1, 1, 3, 16, 16], &vol).unwrap());
    let y3 = tape.no_grad(|| u3.forward(&tape, &x3, false)).unwrap();
    assert_eq!(y3.seg.shape(), &[1, 3, 3, 16, 16]);
    assert_eq!(y3.concat.shape(), &[1, 6, 3, 16, 16]);
    let x2 = tape.constant(&Tensor::from_slice(&gpu, &[3, 1, 16, 16], &vol).unwrap());
    let y2 = tape.no_grad(|| u2.forward(&tape, &x2, false)).unwrap();
    let (a, b) = (y3.seg.value.to_vec(&gpu), y2.seg.value.to_vec(&gpu));
    // (1, labels, D, H, W) against (D, labels, H, W).
    let px = 256;
    let mut worst = 0.0f32;
    for l in 0..3 {
        for z in 0..3 {
            for p in 0..px {
                let d = (a[(l * 3 + z) * px + p] - b[(z * 3 + l) * px + p]).abs();
                worst = worst.max(d);
            }
        }
    }
    assert!(worst < 1e-5, "largest difference {worst}");
}

#[test]
fn summary_counts_the_3d_network() {
    let v = VolumeShape::new(16);
    assert_eq!(v.depth_pool, [2, 2, 2, 1]);
    assert_eq!(VolumeShape::new(4).depth_pool, [2, 1, 1, 1]);
    assert_eq!(VolumeShape::new(1).depth_pool, [1, 1, 1, 1]);
    let c = UnetConfig::new_3d(8, 6, 64, v).unwrap();
    let rows = c.summary();
    let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
    assert_eq!(row("enc1.conv2").shape, [8, 16, 64, 64]);
    assert_eq!(row("enc1.conv2").kind, "conv3x3x3+elu");
    assert_eq!(row("pool4").kind, "maxpool2x2x1");
    assert_eq!(row("enc5.conv2").shape, [128, 2, 4, 4]);
    assert_eq!(row("concat1").shape, [24, 16, 64, 64]);
    assert_eq!(row("out").shape, [6, 16, 64, 64]);
    // enc1.conv2: 8 x 8 x 27 weights + 8 biases; FLOPs (2 x 27 x 8 + 2) per output voxel.
    assert_eq!(row("enc1.conv2").params, 8 * 8 * 27 + 8);
    assert_eq!(row("enc1.conv2").flops, 16 * 64 * 64 * 8 * (2 * 27 * 8 + 2));
    assert!(UnetConfig::new_3d(
        8,
        6,
        64,
        VolumeShape {
            depth: 12,
            depth_pool: [2, 2, 2, 1]
        }
    )
    .is_err());
    assert!(VolumeShape::parse_pool("2,2,3,1").is_err());
    assert!(VolumeShape::parse_pool("2,2,1").is_err());
    let (code, out, _) = run_cli(&[
        "summary",
        "--3d",
        "--channels",
        "8",
        "--size",
        "64",
        "--depth",
        "16",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("input 1x16x64x64, depth pooled 2,2,2,1"),
        "{out}"
    );
    assert!(out.contains("maxpool2x2x1"), "{out}");
}

#[test]
fn the_3d_phantom_holds_the_2d_phantoms_patients() {
    let spec = PhantomSpec {
        size: 32,
        normal_patients: 3,
        effusion_images: 6,
        septal_images: 6,
        ..PhantomSpec::default()
    };
    let flat = spec.generate().unwrap();
    let vols = PhantomSpec {
        volume_depth: Some(6),
        ..spec
    }
    .generate()
    .unwrap();
    // One volume per disease image: 6 effusion and 6 septal patients, where the 2-D set
    // has 2 of each (3 slices each). The normals and the first 2 effusion patients are the
    // 2-D set's.
    assert_eq!(vols.samples.len(), 3 + 6 + 6);
    for s in &vols.samples {
        assert_eq!(s.image.len(), 6 * 32 * 32);
        assert_eq!(s.label.len(), 6 * 32 * 32);
    }
    for id in ["N001", "N002", "N003", "E001", "E002"] {
        let f = flat.samples.iter().find(|f| f.patient == id).unwrap();
        let v = vols.samples.iter().find(|v| v.patient == id).unwrap();
        assert_eq!((f.group, f.severity), (v.group, v.severity), "{id}");
    }
    // Slices of the volumes: every one, or the middle one of each.
    let all = vols.slices(Slices::All).unwrap();
    assert_eq!(all.samples.len(), 6 * vols.samples.len());
    assert_eq!(all.depth, None);
    let mid = vols.slices(Slices::Middle).unwrap();
    assert_eq!(mid.patients(), vols.patients());
    assert_eq!(
        mid.samples[0].image,
        vols.samples[0].image[3 * 1024..4 * 1024]
    );
    assert!(flat.slices(Slices::All).is_err());
}

#[test]
fn the_command_line_reads_volumes_for_3d_models_only() {
    let dir = scratch("volume_cli");
    let m = dir.join("m.safetensors");
    let m_str = m.to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "train-seg",
        "--data",
        "phantom",
        "--depth",
        "4",
        "--size",
        "16",
        "--channels",
        "2",
        "--epochs",
        "1",
        "--batches-per-epoch",
        "2",
        "--batch",
        "2",
        "--out",
        m_str,
    ]);
    assert_eq!(code, 0, "{err}");
    // eval-seg takes the model's depth; another depth, or slices, are refused.
    let (code, out, err) = run_cli(&["eval-seg", "--model", m_str, "--data", "phantom"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on 100 volumes of 100 patients"), "{out}");
    let (code, _, err) = run_cli(&[
        "eval-seg", "--model", m_str, "--data", "phantom", "--depth", "6",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the model reads volumes of 4 slices, but --depth is 6"),
        "{err}"
    );
    let (code, _, err) = run_cli(&[
        "eval-seg", "--model", m_str, "--data", "phantom", "--depth", "4", "--slices", "all",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("the model is 3-D"), "{err}");
    let (code, _, err) = run_cli(&[
        "train-seg",
        "--data",
        "phantom",
        "--depth",
        "6",
        "--depth-pool",
        "2,2,1,1",
        "--size",
        "16",
        "--channels",
        "2",
        "--epochs",
        "1",
        "--out",
        dir.join("x.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the depth (6) must be divisible by the product of the depth pooling factors 2,2,1,1 (4)"),
        "{err}"
    );
}

#[test]
fn the_3d_classifier_runs_the_protocol_on_the_same_patients_as_the_2d_one() {
    // The 3-D phantom written to disk (NIfTI volumes in Hounsfield units), a 3-D and a 2-D
    // U-Net on the same normal patients, then one experiment each (the 2-D one on each
    // volume's middle slice): `compare` pairs every run with the same test patients.
    let dir = scratch("volume_protocol");
    let data = dir.join("data");
    let p = |x: &str| dir.join(x).to_str().unwrap().to_string();
    let d = data.to_str().unwrap();
    let ok = |args: &[&str]| {
        let (code, out, err) = run_cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    ok(&[
        "phantom",
        "--depth",
        "4",
        "--size",
        "32",
        "--normal-patients",
        "10",
        "--effusion",
        "6",
        "--septal",
        "0",
        "--out",
        d,
    ]);
    let train = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "train-seg",
            "--data",
            d,
            "--depth",
            "4",
            "--size",
            "32",
            "--channels",
            "2",
            "--epochs",
            "1",
            "--batches-per-epoch",
            "2",
            "--batch",
            "2",
            "--patients",
            "N001,N002",
            "--out",
            out,
        ];
        a.extend(extra);
        ok(&a);
    };
    let (s3, s2) = (p("s3.safetensors"), p("s2.safetensors"));
    train(&s3, &[]);
    train(&s2, &["--slices", "all"]);
    let experiment = |seg: &str, out: &str, extra: &[&str]| {
        let mut a = vec![
            "experiment",
            "--seg",
            seg,
            "--data",
            d,
            "--preset",
            "quick",
            "--diseases",
            "effusion",
            "--features",
            "img,concat",
            "--positives",
            "1,2",
            "--reps",
            "2",
            "--pool",
            "2",
            "--positives-test",
            "3",
            "--negatives-train",
            "4",
            "--negatives-test",
            "4",
            "--epochs",
            "1",
            "--batches-per-epoch",
            "2",
            "--batch",
            "4",
            "--jobs",
            "1",
            "--out",
            out,
        ];
        a.extend(extra);
        ok(&a);
    };
    let (e3, e2) = (p("e3"), p("e2"));
    experiment(&s3, &e3, &[]);
    experiment(&s2, &e2, &["--depth", "4", "--slices", "middle"]);
    let runs = std::fs::read_to_string(dir.join("e3").join("runs.jsonl")).unwrap();
    assert_eq!(
        runs.lines().count(),
        8,
        "2 combinations x 2 k x 2 repetitions"
    );
    let table = ok(&["compare", &e2, &e3, "--names", "2-D,3-D"]);
    assert!(table.contains("| effusion | concat | all | 2 |"), "{table}");
    assert!(
        table.contains("8 pairs of runs on the same test patients; 0 pairs left out"),
        "{table}"
    );
    // train-cls and classify on volumes; the file records its depth.
    let c3 = p("c3.safetensors");
    ok(&[
        "train-cls",
        "--seg",
        &s3,
        "--data",
        d,
        "--disease",
        "effusion",
        "--positives",
        "2",
        "--pool",
        "2",
        "--positives-test",
        "3",
        "--negatives-train",
        "4",
        "--negatives-test",
        "4",
        "--preset",
        "quick",
        "--epochs",
        "1",
        "--out",
        &c3,
    ]);
    let ck = segfeat::nn::checkpoint::load(std::path::Path::new(&c3)).unwrap();
    assert_eq!(ck.metadata.get("dims").map(String::as_str), Some("3"));
    assert_eq!(ck.metadata.get("depth").map(String::as_str), Some("4"));
    let images = data.join("images");
    let out = ok(&[
        "classify",
        "--seg",
        &s3,
        "--model",
        &c3,
        "--input",
        images.to_str().unwrap(),
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("P(effusion)")).count(),
        16,
        "{out}"
    );
    // A 2-D image is not a volume.
    let (code, _, err) = run_cli(&[
        "classify",
        "--seg",
        &s3,
        "--model",
        &c3,
        "--input",
        &p("s3.safetensors.log.csv"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("a 3-D network reads volumes"), "{err}");
}

#[test]
fn a_3d_model_segments_a_volume_window_by_window() {
    // 6 slices for a network of depth 4: windows at slices 0..4 and 2..6, the second
    // one's labels standing where they overlap; 3 slices: one window, padded.
    use segfeat::data::folder::ReadOptions;
    use segfeat::data::volume::{Volume, Window};
    let gpu = gpu();
    let c = UnetConfig::new_3d(2, 3, 16, VolumeShape::new(4)).unwrap();
    let unet = Unet::init(&gpu, c, 4).unwrap();
    let mut g = common::rng(8);
    let values = common::rand_vec(&mut g, 16 * 16 * 6);
    let opts = ReadOptions {
        window: Window::Fixed(-1.0, 1.0),
        ..ReadOptions::default()
    };
    let vol = Volume {
        values: values.clone(),
        dims: [16, 16, 6],
        spacing: [1.0; 3],
    };
    let labels = seg::segment_volume(&gpu, &unet, &vol, &opts).unwrap();
    assert_eq!(labels.len(), 6 * 256);
    let x: Vec<f32> = Window::Fixed(-1.0, 1.0).apply(&values);
    let first = seg::predict(&gpu, &unet, &x[..4 * 256], 1).unwrap();
    let last = seg::predict(&gpu, &unet, &x[2 * 256..], 1).unwrap();
    assert_eq!(labels[..2 * 256], first[..2 * 256]);
    assert_eq!(labels[2 * 256..], last[..]);
    let short = Volume {
        values: values[..3 * 256].to_vec(),
        dims: [16, 16, 3],
        spacing: [1.0; 3],
    };
    let labels = seg::segment_volume(&gpu, &unet, &short, &opts).unwrap();
    let mut padded = vec![0.0; 4 * 256];
    padded[..3 * 256].copy_from_slice(&x[..3 * 256]);
    let want = seg::predict(&gpu, &unet, &padded, 1).unwrap();
    assert_eq!(labels, want[..3 * 256]);
}

#[test]
fn the_3d_classifier_counts_what_it_holds() {
    use segfeat::nn::vgg::{Pass, Regularisation};
    use segfeat::nn::{Vgg, VggConfig};
    let gpu = gpu();
    for reg in [
        Regularisation::default(),
        Regularisation {
            bn: true,
            dropout: 0.5,
            leaky: 0.01,
            gap: true,
        },
    ] {
        let mut c = VggConfig::new(3, 32, 0.0625, 8).unwrap();
        c.depth = Some(8);
        c.reg = reg;
        // Depth 8 pooled by 2 in blocks 1 to 3, then 1: fc1 sees 32 channels x 1 x 1 x 1.
        assert_eq!(c.depth_pool(), [2, 2, 2, 1, 1]);
        assert_eq!(c.flat(), 32);
        let vgg = Vgg::init(&gpu, c.clone(), 2).unwrap();
        assert_eq!(vgg.param_count() as u64, c.cost().0);
        assert_eq!(vgg.params[0].1.shape(), &[4, 3, 3, 3, 3]);
        let tape = Tape::new(&gpu);
        let x = tape.constant(&Tensor::zeros(&gpu, &[2, 3, 8, 32, 32]).unwrap());
        let (logits, _) = vgg
            .forward(&tape, &x, Pass::Train { seed: 1, step: 0 })
            .unwrap();
        assert_eq!(logits.shape(), &[2, 2]);
        let wrong = tape.constant(&Tensor::zeros(&gpu, &[2, 3, 32, 32]).unwrap());
        let err = vgg.forward(&tape, &wrong, Pass::Eval).err().unwrap().0;
        assert!(err.contains("expects input (B, 3, 8, 32, 32)"), "{err}");
    }
}

#[test]
fn png_slices_group_into_volumes_by_patient() {
    // The 2-D phantom as PNGs: normal patients of 9 to 12 slices, diseased ones of 3.
    // With --depth 8 each patient is one volume: the middle 8 slices, or 3 between empty
    // ones (2 before, 3 after).
    use segfeat::data::folder;
    let spec = PhantomSpec {
        size: 16,
        normal_patients: 2,
        effusion_images: 3,
        septal_images: 0,
        ..PhantomSpec::default()
    };
    let flat = spec.generate().unwrap();
    let dir = scratch("png_volumes");
    folder::write(&flat, &dir).unwrap();
    let names: Vec<String> = segfeat::data::CARDIAC_LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let opts = folder::ReadOptions {
        depth: Some(8),
        ..folder::ReadOptions::default()
    };
    let vols = folder::load_with(&dir, 16, &names, None, &opts).unwrap();
    assert_eq!(vols.depth, Some(8));
    assert_eq!(
        vols.patients(),
        ["E001", "N001", "N002"],
        "in file-name order"
    );
    let px = 256;
    for v in &vols.samples {
        let slices: Vec<&segfeat::data::Sample> = flat
            .samples
            .iter()
            .filter(|s| s.patient == v.patient)
            .collect();
        let k = slices.len();
        let (skip, before) = if k >= 8 {
            ((k - 8) / 2, 0)
        } else {
            (0, (8 - k) / 2)
        };
        for z in 0..8 {
            let got = &v.label[z * px..(z + 1) * px];
            match (z + skip).checked_sub(before).filter(|&i| i < k) {
                Some(i) => assert_eq!(got, &slices[i].label[..], "{} slice {z}", v.patient),
                None => assert!(
                    got.iter().all(|&l| l == 0),
                    "{} slice {z} is padding",
                    v.patient
                ),
            }
        }
        assert_eq!(v.group, slices[0].group);
    }
}
