//! The segmentation network end to end on the GPU: it learns the phantom (Dice on held-out
//! patients far above the untrained network's), checkpoints reload bit for bit, a resumed
//! training equals an uninterrupted one, cross-validation resumes (past a torn last line)
//! and gives the same bits with folds trained at once, and the command line turns bad
//! input into one clear message.

mod common;
use common::{gpu, run_cli, scratch};
use std::path::Path;

use segfeat::data::phantom::PhantomSpec;
use segfeat::data::{Dataset, Group};
use segfeat::nn::checkpoint::{load_unet, save_unet};
use segfeat::nn::{Unet, UnetConfig};
use segfeat::train::{cv, seg, SegTrainOptions};
use segfeat::Gpu;

fn phantom(size: usize, patients: usize) -> Dataset {
    PhantomSpec {
        size,
        normal_patients: patients,
        slices: (3, 4),
        effusion_images: 0,
        septal_images: 0,
        ..PhantomSpec::default()
    }
    .generate()
    .unwrap()
}

fn opts(
    channels: usize,
    size: usize,
    epochs: usize,
    batches: usize,
    batch: usize,
) -> SegTrainOptions {
    SegTrainOptions {
        channels,
        size,
        epochs,
        batches_per_epoch: batches,
        batch,
        progress: false,
        ..SegTrainOptions::default()
    }
}

fn weights(gpu: &Gpu, u: &Unet) -> Vec<Vec<f32>> {
    u.params.iter().map(|(_, t)| t.to_vec(gpu)).collect()
}

#[test]
fn training_beats_the_untrained_network_on_held_out_patients() {
    let gpu = gpu();
    let ds = phantom(32, 14);
    let ids = ds.patients();
    let train = ds.select(Some(&ids[..10]), &[Group::Normal]).unwrap();
    let test = ds.select(Some(&ids[10..]), &[Group::Normal]).unwrap();
    let o = opts(4, 32, 4, 30, 10);
    let untrained = Unet::init(&gpu, UnetConfig::new(4, 6, 32).unwrap(), o.seed).unwrap();
    let before = seg::evaluate(&gpu, &untrained, &test, 10).unwrap().mean();
    let dir = scratch("seg_learns");
    let (unet, meta) = seg::train(&gpu, &train, &o, &dir.join("m.safetensors"), false).unwrap();
    let report = seg::evaluate(&gpu, &unet, &test, 10).unwrap();
    let after = report.mean();
    eprintln!("mean Dice on held-out patients: untrained {before:.3}, trained {after:.3}");
    for l in 1..6 {
        eprintln!("  {} {:.3}", report.label_names[l], report.label_stats(l).0);
    }
    assert!(before < 0.25, "untrained mean Dice {before}");
    assert!(
        after > 0.5,
        "trained mean Dice {after} (untrained {before})"
    );
    for l in 1..6 {
        let (m, _, n) = report.label_stats(l);
        assert!(m > 0.25, "label {l}: Dice {m}");
        assert_eq!(n, test.samples.len());
    }
    assert_eq!(meta.epochs_done, 4);
    assert_eq!(meta.steps, 120);
    assert_eq!(meta.patients, ids[..10].to_vec());
    // w_l = 1 - f_l / sum f: the background, most of the image, weighs least.
    let w = &meta.class_weights;
    assert!(w[0] < 0.3 && w[1..].iter().all(|&x| x > 0.9), "{w:?}");
    let sum: f32 = w.iter().sum();
    assert!((sum - 5.0).abs() < 1e-4, "weights sum to N - 1: {sum}");
}

#[test]
fn checkpoints_reload_bit_for_bit() {
    let gpu = gpu();
    let ds = phantom(16, 2);
    let dir = scratch("seg_checkpoint");
    let path = dir.join("model.safetensors");
    let (unet, meta) = seg::train(&gpu, &ds, &opts(2, 16, 1, 2, 3), &path, false).unwrap();
    let (back, meta2) = load_unet(&gpu, &path).unwrap();
    assert_eq!(meta, meta2);
    assert_eq!(back.config, unet.config);
    assert_eq!(weights(&gpu, &unet), weights(&gpu, &back));
    let (x, _) = ds.batch(&[0, 1, 2]);
    let a = seg::logits(&gpu, &unet, &x).unwrap();
    let b = seg::logits(&gpu, &back, &x).unwrap();
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // The metadata a reader needs is there, as text.
    let ck = segfeat::nn::checkpoint::load(&path).unwrap();
    for key in [
        "architecture",
        "channels",
        "labels",
        "size",
        "label_names",
        "class_weights",
        "input_normalisation",
    ] {
        assert!(ck.metadata.contains_key(key), "no {key}");
    }
    // Lists and records in the metadata are JSON.
    assert_eq!(
        ck.metadata["label_names"],
        r#"["BG","RA","LA","RV","LV","Myo"]"#
    );
    let cw: Vec<f64> = serde_json::from_str(&ck.metadata["class_weights"]).unwrap();
    assert_eq!(cw.len(), 6);
    let pts: Vec<String> = serde_json::from_str(&ck.metadata["train_patients"]).unwrap();
    assert!(!pts.is_empty());
    let tr: serde_json::Value = serde_json::from_str(&ck.metadata["training"]).unwrap();
    assert!(tr["seed"].is_u64() && tr["lr"].is_f64(), "{tr}");
    assert!(ck.tensors.contains_key("enc1.conv1.weight"));
    assert_eq!(ck.tensors["out.weight"].0, vec![6, 2, 1, 1]);

    // A corrupt file and a wrong architecture are clear errors.
    std::fs::write(dir.join("bad.safetensors"), b"garbage").unwrap();
    let err = load_unet(&gpu, &dir.join("bad.safetensors"))
        .err()
        .unwrap()
        .0;
    assert!(err.contains("not a valid safetensors file"), "{err}");
    let err = load_unet(&gpu, &dir.join("none.safetensors"))
        .err()
        .unwrap()
        .0;
    assert!(err.contains("cannot read checkpoint"), "{err}");
    // Without --resume an existing model is never overwritten.
    let err = seg::train(&gpu, &ds, &opts(2, 16, 1, 2, 3), &path, false)
        .err()
        .unwrap()
        .0;
    assert!(err.contains("already exists"), "{err}");
    // Resuming with another architecture is refused.
    let err = seg::train(&gpu, &ds, &opts(4, 16, 2, 2, 3), &path, true)
        .err()
        .unwrap()
        .0;
    assert!(err.contains("channels 4 (the file: 2)"), "{err}");
    save_unet(&gpu, &dir.join("copy.safetensors"), &unet, &meta).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn resumed_training_equals_an_uninterrupted_one() {
    let gpu = gpu();
    let ds = phantom(16, 3);
    let dir = scratch("seg_resume");
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    let (full, _) = seg::train(&gpu, &ds, &opts(2, 16, 3, 2, 3), &a, false).unwrap();
    seg::train(&gpu, &ds, &opts(2, 16, 1, 2, 3), &b, false).unwrap();
    let (resumed, meta) = seg::train(&gpu, &ds, &opts(2, 16, 3, 2, 3), &b, true).unwrap();
    assert_eq!(meta.epochs_done, 3);
    assert_eq!(meta.steps, 6);
    assert_eq!(weights(&gpu, &full), weights(&gpu, &resumed));
    let log = std::fs::read_to_string(seg::log_path(&b)).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    // The same seed gives the same weights; another seed does not.
    let (again, _) = seg::train(
        &gpu,
        &ds,
        &opts(2, 16, 3, 2, 3),
        &dir.join("c.safetensors"),
        false,
    )
    .unwrap();
    assert_eq!(weights(&gpu, &full), weights(&gpu, &again));
    let other = SegTrainOptions {
        seed: 2,
        ..opts(2, 16, 3, 2, 3)
    };
    let (diff, _) = seg::train(&gpu, &ds, &other, &dir.join("d.safetensors"), false).unwrap();
    assert_ne!(weights(&gpu, &full), weights(&gpu, &diff));
}

#[test]
fn forward_exposes_seg_and_concat_with_the_summary_shapes() {
    let gpu = gpu();
    let config = UnetConfig::new(3, 6, 32).unwrap();
    let unet = Unet::init(&gpu, config.clone(), 5).unwrap();
    let rows = config.summary();
    assert_eq!(
        unet.param_count() as u64,
        rows.iter().map(|r| r.params).sum::<u64>()
    );
    let tape = segfeat::Tape::new(&gpu);
    let x = tape.constant(&segfeat::Tensor::zeros(&gpu, &[2, 1, 32, 32]).unwrap());
    let out = tape.no_grad(|| unet.forward(&tape, &x, false)).unwrap();
    assert_eq!(out.seg.shape(), &[2, 6, 32, 32]);
    assert_eq!(out.concat.shape(), &[2, 9, 32, 32]);
    assert!(tape.is_empty(), "no_grad records nothing");
    let wrong = tape.constant(&segfeat::Tensor::zeros(&gpu, &[2, 1, 16, 16]).unwrap());
    let err = unet.forward(&tape, &wrong, false).err().unwrap().0;
    assert!(err.contains("expects input (N, 1, 32, 32)"), "{err}");
}

#[test]
fn cross_validation_splits_by_patient_and_resumes() {
    let ids: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let f = cv::folds(&ids, 4, 3).unwrap();
    assert_eq!(f.len(), 4);
    let mut all: Vec<String> = f.concat();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "every patient in exactly one fold");
    assert!(f.iter().all(|x| x.len() >= 2));
    assert!(cv::folds(&ids[..3], 4, 3).is_err());
    assert!(cv::folds(&ids, 1, 3).is_err());

    let gpu = gpu();
    let ds = phantom(16, 4);
    let dir = scratch("seg_cv");
    let o = opts(2, 16, 1, 2, 3);
    let md = cv::run(&gpu, &ds, &[2], 2, &o, &dir, 1).unwrap();
    assert!(
        md.starts_with("| n | RA | LA | RV | LV | Myo | mean |"),
        "{md}"
    );
    assert!(md.contains("| 2 |"), "{md}");
    let jsonl = std::fs::read_to_string(dir.join("cv.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 2);
    let csv = std::fs::read_to_string(dir.join("cv.csv")).unwrap();
    assert!(
        csv.starts_with("channels,label,mean,std,images\n2,RA,"),
        "{csv}"
    );
    // Run again: nothing is retrained, the same table comes out.
    let md2 = cv::run(&gpu, &ds, &[2], 2, &o, &dir, 1).unwrap();
    assert_eq!(md, md2);
    assert_eq!(
        std::fs::read_to_string(dir.join("cv.jsonl")).unwrap(),
        jsonl
    );
    // Killed while writing the second fold's line: the partial line is dropped and that
    // fold evaluated again (its model is finished), which writes the same line.
    let lines: Vec<&str> = jsonl.lines().collect();
    std::fs::write(
        dir.join("cv.jsonl"),
        format!("{}\n{}", lines[0], &lines[1][..25]),
    )
    .unwrap();
    let md_torn = cv::run(&gpu, &ds, &[2], 2, &o, &dir, 1).unwrap();
    assert_eq!(md, md_torn);
    assert_eq!(
        std::fs::read_to_string(dir.join("cv.jsonl")).unwrap(),
        jsonl
    );

    // Both folds at once, each on a device of its own: the same lines (in the order the
    // folds finished) and the same tables, bit for bit.
    let par = scratch("seg_cv_jobs");
    let md3 = cv::run(&gpu, &ds, &[2], 2, &o, &par, 2).unwrap();
    assert_eq!(md, md3);
    let sorted = |text: &str| {
        let mut v: Vec<String> = text.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&std::fs::read_to_string(par.join("cv.jsonl")).unwrap()),
        sorted(&jsonl)
    );
    assert_eq!(std::fs::read_to_string(par.join("cv.csv")).unwrap(), csv);
}

#[test]
fn command_line_reports_bad_input_in_one_sentence() {
    let dir = scratch("seg_cli");
    let d = dir.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "train-seg".into(),
                "--data".into(),
                format!("{d}/nope"),
                "--out".into(),
                format!("{d}/m.safetensors"),
            ],
            "does not exist",
        ),
        (
            vec![
                "train-seg".into(),
                "--data".into(),
                "phantom".into(),
                "--size".into(),
                "40".into(),
                "--out".into(),
                format!("{d}/m.safetensors"),
            ],
            "multiple of 16",
        ),
        (
            vec![
                "eval-seg".into(),
                "--model".into(),
                format!("{d}/none.safetensors"),
                "--data".into(),
                "phantom".into(),
            ],
            "cannot read checkpoint",
        ),
        (
            vec![
                "segment".into(),
                "--model".into(),
                format!("{d}/none.safetensors"),
                "--input".into(),
                "x.png".into(),
                "--out".into(),
                "y.png".into(),
            ],
            "cannot read checkpoint",
        ),
        (
            vec![
                "phantom".into(),
                "--slices".into(),
                "9-12".into(),
                "--out".into(),
                format!("{d}/p"),
            ],
            "--slices must be a range MIN..MAX",
        ),
        (
            vec![
                "cv-seg".into(),
                "--data".into(),
                "phantom".into(),
                "--channels".into(),
                "8,x".into(),
                "--out".into(),
                format!("{d}/cv"),
            ],
            "comma-separated list",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run_cli(&a);
        assert_eq!(code, 1, "{a:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "{a:?}: {err}");
        assert!(lines[0].contains(want), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{a:?}: {err}");
    }
    let (code, out, _) = run_cli(&["summary", "--channels", "16", "--size", "256"]);
    assert_eq!(code, 0);
    assert!(out.contains("concat1") && out.contains("total:"), "{out}");
}

#[test]
fn segment_writes_an_overlay_and_probabilities() {
    let gpu = gpu();
    let ds = phantom(16, 2);
    let dir = scratch("seg_segment");
    let model = dir.join("m.safetensors");
    seg::train(&gpu, &ds, &opts(2, 16, 1, 1, 2), &model, false).unwrap();
    segfeat::data::folder::write(&ds, &dir.join("data")).unwrap();
    let input = dir
        .join("data/images")
        .join(format!("{}.png", ds.samples[0].name));
    let m = model.display().to_string();
    let (i, o, p) = (
        input.display().to_string(),
        dir.join("overlay.png").display().to_string(),
        dir.join("probs.safetensors").display().to_string(),
    );
    let (code, _, err) = run_cli(&[
        "segment", "--model", &m, "--input", &i, "--out", &o, "--probs", &p,
    ]);
    assert_eq!(code, 0, "{err}");
    // The overlay keeps the input's pixels at the top left, a legend strip below.
    let overlay = image::open(&o).unwrap().to_rgb8();
    assert!(overlay.width() >= 16 && overlay.height() > 16);
    let src = image::open(&input).unwrap().to_luma8();
    for (x, y, g) in src.enumerate_pixels() {
        let px = overlay.get_pixel(x, y).0;
        // Background pixels are the input's gray level (labelled ones are mixed).
        if px[0] == px[1] && px[1] == px[2] {
            assert!((px[0] as i32 - g.0[0] as i32).abs() <= 1, "({x}, {y})");
        }
    }
    let ck = segfeat::nn::checkpoint::load(Path::new(&p)).unwrap();
    let (shape, probs) = &ck.tensors["probs"];
    assert_eq!(shape, &vec![6, 16, 16]);
    for px in 0..256 {
        let s: f32 = (0..6).map(|l| probs[l * 256 + px]).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
    // Corrupt input image: one sentence naming the file.
    std::fs::write(dir.join("bad.png"), b"nope").unwrap();
    let b = dir.join("bad.png").display().to_string();
    let (code, _, err) = run_cli(&["segment", "--model", &m, "--input", &b, "--out", &o]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.png: unreadable image"), "{err}");
}

/// A tiny model trained through the command line (see `common::TINY_TRAIN`).
fn tiny_cli_model(dir: &Path) -> std::path::PathBuf {
    common::tiny_model(dir, "seg.st", &[])
}

#[test]
fn eval_seg_json_names_its_columns_in_label_order_with_patients_and_hd95() {
    let dir = scratch("seg_eval_json");
    let model = tiny_cli_model(&dir);
    let json = dir.join("eval.json");
    let (code, out, err) = run_cli(&[
        "eval-seg",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "phantom",
        "--patients",
        "N004,N005",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("HD95 (pixels)"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> = v["label_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(names, ["BG", "RA", "LA", "RV", "LV", "Myo"]);
    assert_eq!(
        v["columns"],
        serde_json::json!(["RA", "LA", "RV", "LV", "Myo"])
    );
    let labels = v["labels"].as_array().unwrap();
    for (i, l) in labels.iter().enumerate() {
        assert_eq!(l["label"], names[i + 1]);
        assert_eq!(l["index"], i + 1);
    }
    let images = v["images"].as_array().unwrap().len();
    assert_eq!(v["dice"].as_array().unwrap().len(), images);
    assert_eq!(v["hd95"].as_array().unwrap().len(), images);
    assert!(v["dice"][0].as_array().unwrap().len() == 5);
    let pts: Vec<&str> = v["per_patient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patient"].as_str().unwrap())
        .collect();
    assert_eq!(pts, ["N004", "N005"]);
    assert_eq!(v["hd95_unit"], "pixels");
}

#[test]
fn segment_writes_the_label_map_and_probabilities_at_the_inputs_size() {
    let dir = scratch("seg_outputs_size");
    let model = tiny_cli_model(&dir);
    let input = dir.join("wide.png");
    image::GrayImage::from_fn(40, 24, |x, y| image::Luma([(x * 5 + y * 3) as u8]))
        .save(&input)
        .unwrap();
    let (map, probs, overlay) = (dir.join("map.png"), dir.join("p.st"), dir.join("o.png"));
    let (code, _, err) = run_cli(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        overlay.to_str().unwrap(),
        "--label-map",
        map.to_str().unwrap(),
        "--probs",
        probs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let m = image::open(&map).unwrap();
    assert_eq!((m.width(), m.height()), (40, 24));
    assert!(m.to_luma8().pixels().all(|p| p.0[0] < 6));
    // The overlay: the input's pixels, then a legend strip below (at least 240 wide).
    let o = image::open(&overlay).unwrap();
    assert_eq!(o.width(), 240);
    assert!(o.height() > 24 + 3 * 20, "{}", o.height());
    let ck = segfeat::nn::checkpoint::load(&probs).unwrap();
    let (shape, values) = &ck.tensors["probs"];
    assert_eq!(shape, &vec![6, 24, 40]);
    // Probabilities sum to 1 at every pixel of the input.
    for px in 0..24 * 40 {
        let s: f32 = (0..6).map(|l| values[l * 24 * 40 + px]).sum();
        assert!((s - 1.0).abs() < 1e-4, "pixel {px}: {s}");
    }
}

#[test]
fn a_volume_is_segmented_into_a_nifti_label_volume_like_its_slices() {
    use segfeat::data::folder::{load_with, ReadOptions};
    use segfeat::data::volume::{read_nifti, Axis, Window};
    let dir = scratch("seg_volume");
    // Phantom patients as volumes of 8-bit values (three 32x32 slices each) with label
    // volumes, in a data folder of NIfTI files.
    let ds = PhantomSpec {
        size: 32,
        normal_patients: 4,
        slices: (3, 3),
        effusion_images: 0,
        septal_images: 0,
        ..PhantomSpec::default()
    }
    .generate()
    .unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let write = |path: &Path, f: &dyn Fn(usize, usize, usize) -> u8| {
        let arr = ndarray::Array3::from_shape_fn((32, 32, 3), |(x, y, z)| f(x, y, z));
        nifti::writer::WriterOptions::new(path)
            .write_nifti(&arr)
            .unwrap();
    };
    for p in ds.patients() {
        let sl: Vec<&segfeat::data::Sample> =
            ds.samples.iter().filter(|s| s.patient == p).collect();
        let v = |x: usize, y: usize, z: usize| (sl[z].image[y * 32 + x] * 255.0).round() as u8;
        write(&data.join(format!("images/{p}.nii.gz")), &v);
        write(&data.join(format!("masks/{p}.nii.gz")), &|x, y, z| {
            sl[z].label[y * 32 + x]
        });
    }
    let read = ReadOptions {
        window: Window::Fixed(0.0, 255.0),
        axis: Axis::Z,
        ..Default::default()
    };
    let names: Vec<String> = segfeat::data::CARDIAC_LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let vols = load_with(&data, 32, &names, None, &read).unwrap();
    assert_eq!(vols.samples.len(), 12);
    let gpu = gpu();
    let model = dir.join("m.st");
    seg::train(&gpu, &vols, &opts(2, 32, 1, 2, 2), &model, false).unwrap();
    let (_, meta) = load_unet(&gpu, &model).unwrap();
    assert!(
        meta.normalisation.contains("window 0,255"),
        "{}",
        meta.normalisation
    );
    // The files' pixel size (the writer's default pixdim of 1) is recorded.
    assert_eq!(meta.pixel_spacing, Some((1.0, 1.0)));

    // The volume through segment: a NIfTI label volume of the same voxels.
    let out = dir.join("labels.nii.gz");
    let m = model.to_str().unwrap();
    let (code, stdout, err) = run_cli(&[
        "segment",
        "--model",
        m,
        "--input",
        data.join("images/N004.nii.gz").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("3 slices along z"), "{stdout}");
    let labels = read_nifti(&out).unwrap();
    assert_eq!(labels.dims, [32, 32, 3]);
    // Each slice as an 8-bit PNG through the 2-D path gives the same label map.
    let sl: Vec<&segfeat::data::Sample> =
        ds.samples.iter().filter(|s| s.patient == "N004").collect();
    for (z, s) in sl.iter().enumerate() {
        let png = dir.join(format!("s{z}.png"));
        image::GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([(s.image[(y * 32 + x) as usize] * 255.0).round() as u8])
        })
        .save(&png)
        .unwrap();
        let map = dir.join(format!("map{z}.png"));
        let (code, _, err) = run_cli(&[
            "segment",
            "--model",
            m,
            "--input",
            png.to_str().unwrap(),
            "--out",
            dir.join(format!("o{z}.png")).to_str().unwrap(),
            "--label-map",
            map.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let want = image::open(&map).unwrap().to_luma8().into_raw();
        let got: Vec<u8> = labels.values[z * 1024..(z + 1) * 1024]
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(got, want, "slice {z}");
    }
    // A volume's labels go to a NIfTI file, and nowhere else.
    let (code, _, err) = run_cli(&[
        "segment",
        "--model",
        m,
        "--input",
        data.join("images/N004.nii.gz").to_str().unwrap(),
        "--out",
        dir.join("x.png").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("must name a NIfTI file"), "{err}");
}
