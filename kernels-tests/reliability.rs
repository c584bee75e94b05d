//! Nothing lost, nothing leaked: one regression test per defect of the reliability issue,
//! named after it (`defect1_...` to `defect7_...`), each run through the command line or
//! the library as a user would hit it. Every one of them failed before the fix.
//!
//! The trainings are tiny (the phantom at 32x32, n = 2, two batches of two per epoch), so a
//! `segfeat train-seg` process takes about a second on lavapipe.

mod common;
use common::{gpu, run_cli, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

use segfeat::nn::checkpoint::{self, load_classifier, load_unet, save_classifier, ClsMeta};
use segfeat::nn::{Vgg, VggConfig};
use segfeat::train::features::{ChannelStats, Combo};

fn train(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    common::train_cli(out, extra, env)
}

fn trained(dir: &Path, name: &str) -> PathBuf {
    common::tiny_model(dir, name, &[])
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// A copy of the checkpoint `src` at `dst`, its metadata and tensors changed by `f` (as a
/// damaged or hand-edited file would be).
fn altered(
    src: &Path,
    dst: &Path,
    f: impl FnOnce(&mut std::collections::BTreeMap<String, String>, &mut Tensors),
) {
    let ck = checkpoint::load(src).unwrap();
    let mut md = ck.metadata.clone();
    let mut tensors: Tensors = ck
        .tensors
        .iter()
        .map(|(n, (s, d))| (n.clone(), s.clone(), d.clone()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    f(&mut md, &mut tensors);
    checkpoint::save(dst, &tensors, &md).unwrap();
}

fn cli(args: &[&str]) -> (i32, String) {
    let (code, _, err) = run_cli(args);
    (code, err)
}

/// The error line of a failed command: exit code 1 and one line starting with "error:".
fn one_error_line(code: i32, err: &str) -> String {
    assert_eq!(code, 1, "expected exit code 1, got {code}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line: {err}");
    lines[0].to_string()
}

#[test]
fn defect1_resume_with_other_settings_is_refused_naming_each_difference() {
    let dir = scratch("rel_defect1_resume");
    let out = trained(&dir, "seg.st");
    let before = std::fs::read(&out).unwrap();
    for (flags, named) in [
        (&["--patients", "N001,N002"][..], &["patients"][..]),
        (&["--seed", "2"], &["seed"]),
        (&["--lr", "0.01"], &["lr"]),
        (&["--batch", "3"], &["batch"]),
        (&["--batches-per-epoch", "3"], &["batches_per_epoch"]),
        (&["--channels", "3"], &["channels"]),
        (&["--phantom-seed", "2"], &["data"]),
        (&["--rotate", "10"], &["augment"]),
        (&["--seed", "3", "--lr", "0.002"], &["seed", "lr"]),
    ] {
        let mut f = flags.to_vec();
        f.extend(["--epochs", "3", "--resume"]);
        let (st, err) = train(&out, &f, &[]);
        let line = one_error_line(st.code().unwrap_or(-1), &err);
        for n in named {
            assert!(line.contains(&format!(" {n} ")), "{flags:?}: {line}");
        }
        assert_eq!(
            std::fs::read(&out).unwrap(),
            before,
            "{flags:?} changed the model"
        );
    }
    // The same settings with more epochs resume, and the metadata says so.
    let (st, err) = train(&out, &["--epochs", "3", "--resume"], &[]);
    assert!(st.success(), "{err}");
    let ck = checkpoint::load(&out).unwrap();
    assert_eq!(ck.metadata["epochs_done"], "3");
    let training: serde_json::Value = serde_json::from_str(&ck.metadata["training"]).unwrap();
    assert_eq!(training["epochs"], 3, "{:?}", ck.metadata);
}

#[test]
fn defect1_a_model_that_does_not_name_its_training_patients_is_refused() {
    let dir = scratch("rel_defect1_patients");
    let out = trained(&dir, "seg.st");
    let anon = dir.join("anonymous.st");
    altered(&out, &anon, |md, _| {
        md.remove("train_patients");
    });
    let exp = dir.join("exp");
    let (code, err) = cli(&[
        "experiment",
        "--seg",
        anon.to_str().unwrap(),
        "--data",
        "phantom",
        "--preset",
        "quick",
        "--out",
        exp.to_str().unwrap(),
    ]);
    let line = one_error_line(code, &err);
    assert!(line.contains("training patients"), "{line}");
    assert!(!exp.join("runs.jsonl").exists());
}

#[test]
fn defect2_a_kill_at_every_step_of_a_save_resumes_to_the_same_bits() {
    let dir = scratch("rel_defect2_kill");
    let reference = trained(&dir, "reference.st");
    let want = std::fs::read(&reference).unwrap();
    let want_log = std::fs::read_to_string(seg_log(&reference)).unwrap();
    // Two epochs, three files per save, three steps per file: steps 1 to 18.
    for step in 1..=18 {
        let out = dir.join(format!("killed{step}.st"));
        let (st, _) = train(
            &out,
            &[],
            &[(checkpoint::ABORT_HOOK, step.to_string().as_str())],
        );
        assert!(!st.success(), "step {step}: the hook did not abort");
        let (st, err) = train(&out, &["--resume"], &[]);
        assert!(st.success(), "step {step}: the resume failed: {err}");
        assert!(
            std::fs::read(&out).unwrap() == want,
            "step {step}: the resumed model differs from the uninterrupted one"
        );
        // The log has every epoch once (the seconds differ from run to run).
        let log = std::fs::read_to_string(seg_log(&out)).unwrap();
        let epochs = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
                .collect()
        };
        assert_eq!(epochs(&log), epochs(&want_log), "step {step}");
        let stale: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&format!("killed{step}.st")) && n.contains(".tmp"))
            .collect();
        assert!(stale.is_empty(), "step {step}: temporaries left: {stale:?}");
    }
}

/// The flags of a tiny experiment (one run of the quick classifier for one step).
const TINY_EXPERIMENT: [&str; 26] = [
    "--data",
    "phantom",
    "--preset",
    "quick",
    "--diseases",
    "effusion",
    "--features",
    "img",
    "--positives",
    "1",
    "--reps",
    "1",
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
    "1",
    "--batch",
    "2",
];

#[test]
fn defect2_an_experiment_removes_the_temporaries_of_killed_writers() {
    let dir = scratch("rel_defect2_experiment");
    let model = trained(&dir, "seg.st");
    let exp = dir.join("exp");
    std::fs::create_dir_all(&exp).unwrap();
    // What a writer killed between its write and its rename leaves (pid 4194304 is above
    // Linux's largest, so no process runs under it), and a live writer's (this process).
    let dead = exp.join("report.md.tmp4194304");
    let live = exp.join(format!("summary.csv.tmp{}", std::process::id()));
    std::fs::write(&dead, "half a rep").unwrap();
    std::fs::write(&live, "in progress").unwrap();
    let mut args = vec!["experiment", "--seg", model.to_str().unwrap()];
    args.extend(TINY_EXPERIMENT);
    args.extend(["--out", exp.to_str().unwrap()]);
    let (code, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    assert!(!dead.exists(), "a dead writer's temporary was left");
    assert!(live.exists(), "a live writer's temporary was removed");
    assert_eq!(
        std::fs::read_to_string(exp.join("runs.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

fn seg_log(out: &Path) -> PathBuf {
    segfeat::train::seg::log_path(out)
}

#[test]
fn defect3_non_finite_weights_are_refused_naming_the_tensor() {
    let dir = scratch("rel_defect3_nan");
    let out = trained(&dir, "seg.st");
    let bad = dir.join("nan.st");
    altered(&out, &bad, |_, tensors| {
        let victim = tensors
            .iter()
            .position(|t| t.0 == "enc2.conv1.weight")
            .unwrap();
        tensors[victim].2[5] = f32::NAN;
    });
    let img = dir.join("x.png");
    image::GrayImage::from_pixel(32, 32, image::Luma([90]))
        .save(&img)
        .unwrap();
    let (code, err) = cli(&[
        "segment",
        "--model",
        bad.to_str().unwrap(),
        "--input",
        img.to_str().unwrap(),
        "--out",
        dir.join("o.png").to_str().unwrap(),
    ]);
    let line = one_error_line(code, &err);
    assert!(
        line.contains("'enc2.conv1.weight'") && line.contains("non-finite"),
        "{line}"
    );
    assert!(!dir.join("o.png").exists());

    // A classifier with an infinite weight is refused on loading, too.
    let gpu = gpu();
    let config = VggConfig::new(1, 32, 1.0 / 16.0, 8).unwrap();
    let mut vgg = Vgg::init(&gpu, config, 1).unwrap();
    let mut w = vgg.params[0].1.to_vec(&gpu);
    w[0] = f32::INFINITY;
    let shape = vgg.params[0].1.shape().to_vec();
    vgg.params[0].1 = segfeat::Tensor::from_slice(&gpu, &shape, &w).unwrap();
    let path = dir.join("cls.st");
    save_classifier(&gpu, &path, &vgg, &cls_meta("0".repeat(64))).unwrap();
    let e = load_classifier(&gpu, &path).err().unwrap().0;
    assert!(e.contains(&format!("'{}'", vgg.params[0].0)), "{e}");
}

fn cls_meta(seg_sha256: String) -> ClsMeta {
    ClsMeta {
        features: Combo::Img,
        stats: ChannelStats::identity(1),
        class_weights: vec![0.5, 0.5],
        disease: "effusion".into(),
        class_names: vec!["normal".into(), "effusion".into()],
        seg: (2, 6, 32),
        training: "test".into(),
        seg_sha256,
    }
}

/// A PNG whose header claims `w` x `h` pixels of 16-bit RGBA, with no pixel data: a few
/// dozen bytes that would decode to 8 w h bytes.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]); // 16-bit, RGBA, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn defect4_sizes_are_bounded_before_anything_is_allocated() {
    let dir = scratch("rel_defect4_sizes");
    let out = dir.join("big.st");
    let (st, err) = train(&out, &["--size", "100000"], &[]);
    let line = one_error_line(st.code().unwrap_or(-1), &err);
    assert!(line.contains("100000") && line.contains("4096"), "{line}");
    let (code, err) = cli(&[
        "phantom",
        "--size",
        "100000",
        "--out",
        dir.join("ph").to_str().unwrap(),
    ]);
    let line = one_error_line(code, &err);
    assert!(line.contains("100000"), "{line}");
    // Within the side limit, but over the memory budget (one GiB here).
    let (code, _, err) = {
        let o = Command::new(env!("CARGO_BIN_EXE_segfeat"))
            .args(["phantom", "--size", "4096", "--out"])
            .arg(dir.join("ph"))
            .env(segfeat::limits::BUDGET_VAR, "1")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let line = one_error_line(code, &err);
    assert!(
        line.contains("budget") && line.contains("SEGFEAT_MEMORY_GIB=1"),
        "{line}"
    );

    // A checkpoint whose metadata claims a huge input.
    let model = trained(&dir, "seg.st");
    let huge = dir.join("huge.st");
    altered(&model, &huge, |md, _| {
        md.insert("size".into(), "100000".into());
    });
    let (code, err) = cli(&[
        "eval-seg",
        "--model",
        huge.to_str().unwrap(),
        "--data",
        "phantom",
    ]);
    let line = one_error_line(code, &err);
    assert!(line.contains("100000"), "{line}");

    // Decompression bombs: a header claiming 16384 x 16384 16-bit RGBA (2 GiB decoded)
    // and one claiming a side above the limit, both a few dozen bytes.
    for (w, h) in [(16384, 16384), (100_000, 8)] {
        let bomb = dir.join(format!("bomb{w}.png"));
        std::fs::write(&bomb, png_bomb(w, h)).unwrap();
        let (code, err) = cli(&[
            "segment",
            "--model",
            model.to_str().unwrap(),
            "--input",
            bomb.to_str().unwrap(),
            "--out",
            dir.join("o.png").to_str().unwrap(),
        ]);
        let line = one_error_line(code, &err);
        assert!(line.contains("at most 16384 pixels a side"), "{line}");
    }
}

#[test]
fn defect5_a_second_writer_of_an_experiment_is_refused() {
    let dir = scratch("rel_defect5_lock");
    let model = trained(&dir, "seg.st");
    let exp = dir.join("exp");
    let records = exp.join("runs.jsonl");
    // This process holds the records file, as a first `segfeat experiment` would.
    let held = segfeat::lock::acquire(&records, "test").unwrap();
    // The same lock again, even from this process, is refused; another shard's is not.
    assert!(segfeat::lock::acquire(&records, "test").is_err());
    let shard = segfeat::lock::acquire(&exp.join("runs.1-of-2.jsonl"), "test").unwrap();
    drop(shard);
    let mut args = vec!["experiment", "--seg", model.to_str().unwrap()];
    args.extend(TINY_EXPERIMENT);
    args.extend(["--out", exp.to_str().unwrap()]);
    let (code, err) = cli(&args);
    let line = one_error_line(code, &err);
    assert!(
        line.contains("another process") && line.contains(&format!("pid {}", std::process::id())),
        "{line}"
    );
    assert!(!records.exists() || std::fs::read(&records).unwrap().is_empty());
    drop(held);
}

/// A data folder of one 8x8 image named `a` with its mask, and the given manifest.
fn folder_with_manifest(dir: &Path, manifest: &[u8]) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for n in ["a", "b"] {
        image::GrayImage::from_pixel(8, 8, image::Luma([100]))
            .save(dir.join("images").join(format!("{n}.png")))
            .unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([1]))
            .save(dir.join("masks").join(format!("{n}.png")))
            .unwrap();
    }
    std::fs::write(dir.join("manifest.csv"), manifest).unwrap();
}

fn load_folder(dir: &Path) -> Result<segfeat::data::Dataset, String> {
    let names: Vec<String> = ["BG", "X"].iter().map(|s| s.to_string()).collect();
    segfeat::data::folder::load(dir, 16, &names, None).map_err(|e| e.0)
}

#[test]
fn defect6_repeated_keys_and_bad_numbers_are_refused_and_spreadsheet_csv_is_read() {
    let root = scratch("rel_defect6_tables");
    // A palette mapping one colour twice.
    let pal = root.join("palette.csv");
    std::fs::write(&pal, "r,g,b,label\n0,0,0,0\n255,0,0,1\n0,0,0,1\n").unwrap();
    let e = segfeat::data::folder::read_palette(&pal, 2)
        .err()
        .unwrap()
        .0;
    assert!(e.contains("line 2") && e.contains("line 4"), "{e}");
    // A spreadsheet's palette: byte-order mark, quoted fields, CRLF.
    std::fs::write(
        &pal,
        "\u{feff}\"r\",\"g\",\"b\",\"label\"\r\n\"0\",\"0\",\"0\",\"0\"\r\n\"255\",0,0,\"1\"\r\n",
    )
    .unwrap();
    let p = segfeat::data::folder::read_palette(&pal, 2).unwrap();
    assert_eq!(p.get(&[255, 0, 0]), Some(&1));
    assert_eq!(p.len(), 2);

    // A manifest listing one image twice.
    let d = root.join("dup");
    folder_with_manifest(
        &d,
        b"name,patient,group\na.png,P1,normal\nb.png,P2,normal\na.png,P3,effusion\n",
    );
    let e = load_folder(&d).err().unwrap();
    assert!(
        e.contains("line 2") && e.contains("line 4") && e.contains("a"),
        "{e}"
    );
    // A severity that is not a number.
    let d = root.join("sev");
    folder_with_manifest(
        &d,
        b"name,patient,group,severity\na.png,P1,effusion,abc\nb.png,P2,normal,\n",
    );
    let e = load_folder(&d).err().unwrap();
    assert!(e.contains("line 2") && e.contains("'abc'"), "{e}");
    // A spreadsheet's manifest: BOM, quoted fields with a comma inside, CRLF.
    let d = root.join("bom");
    folder_with_manifest(
        &d,
        b"\xef\xbb\xbfname,patient,group,severity\r\n\"a.png\",\"Doe, J\",effusion,0.5\r\nb.png,P2,normal,\r\n",
    );
    let ds = load_folder(&d).unwrap();
    let a = ds.samples.iter().find(|s| s.name == "a").unwrap();
    assert_eq!(a.patient, "Doe, J");
    assert_eq!(a.severity, Some(0.5));
}

#[test]
fn defect7_the_same_training_gives_the_same_bytes() {
    let dir = scratch("rel_defect7_bytes");
    let a = trained(&dir, "a.st");
    let b = trained(&dir, "b.st");
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(a == b, "two trainings with one seed wrote different bytes");
    // And the safetensors crate reads what segfeat writes.
    let st = safetensors::SafeTensors::deserialize(&a).unwrap();
    assert!(st.names().contains(&"out.bias"));
}

#[test]
fn defect7_repeated_positives_are_refused() {
    let p = segfeat::protocol::experiment::Protocol {
        positives: vec![1, 2, 1],
        ..Default::default()
    };
    let e = p.validate().err().unwrap().0;
    assert!(e.contains("--positives lists 1 more than once"), "{e}");
}

#[test]
fn defect7_an_unwritable_out_is_found_before_training() {
    let dir = scratch("rel_defect7_out");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let out = file.join("seg.st");
    // An epoch of 100,000 batches would take hours: the error must come before it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_segfeat"))
        .args([
            "train-seg",
            "--data",
            "phantom",
            "--size",
            "32",
            "--channels",
            "2",
        ])
        .args(["--batches-per-epoch", "100000", "--batch", "2", "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed().as_secs() > 120 {
            let _ = child.kill();
            panic!("still training after 120 s: the unwritable --out was not found first");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let line = one_error_line(o.status.code().unwrap_or(-1), &err);
    assert!(line.contains("a-file"), "{line}");
}

#[test]
fn defect7_segment_refuses_to_overwrite_its_input_or_write_to_a_folder() {
    let dir = scratch("rel_defect7_segment");
    let model = trained(&dir, "seg.st");
    let img = dir.join("x.png");
    image::GrayImage::from_pixel(32, 32, image::Luma([90]))
        .save(&img)
        .unwrap();
    let before = std::fs::read(&img).unwrap();
    let m = model.to_str().unwrap();
    let i = img.to_str().unwrap();
    let (code, err) = cli(&["segment", "--model", m, "--input", i, "--out", i]);
    assert!(one_error_line(code, &err).contains("overwrite"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before);
    let (code, err) = cli(&[
        "segment",
        "--model",
        m,
        "--input",
        i,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(one_error_line(code, &err).contains("is a folder"), "{err}");
    let (code, err) = cli(&[
        "segment", "--model", m, "--input", i, "--out", "o.png", "--probs", m,
    ]);
    assert!(one_error_line(code, &err).contains("overwrite"), "{err}");
}

#[test]
fn defect7_an_adapter_name_that_matches_nothing_is_named() {
    let dir = scratch("rel_defect7_adapter");
    let (st, err) = train(
        &dir.join("seg.st"),
        &[],
        &[("SEGFEAT_ADAPTER", "no-such-adapter")],
    );
    let line = one_error_line(st.code().unwrap_or(-1), &err);
    assert!(
        line.contains("SEGFEAT_ADAPTER='no-such-adapter' matches none"),
        "{line}"
    );
}

#[test]
fn defect7_a_classifier_refuses_features_of_another_segmentation_model() {
    let dir = scratch("rel_defect7_checksum");
    let seg_a = trained(&dir, "a.st");
    // Same shape, another seed: another model.
    let seg_b = dir.join("b.st");
    let (st, err) = train(&seg_b, &["--seed", "2"], &[]);
    assert!(st.success(), "{err}");
    let gpu = gpu();
    let (_, meta_a) = load_unet(&gpu, &seg_a).unwrap();
    let config = VggConfig::new(1, 32, 1.0 / 16.0, 8).unwrap();
    let vgg = Vgg::init(&gpu, config, 1).unwrap();
    let cls = dir.join("cls.st");
    save_classifier(&gpu, &cls, &vgg, &cls_meta(meta_a.sha256.clone())).unwrap();
    let img = dir.join("x.png");
    image::GrayImage::from_pixel(32, 32, image::Luma([90]))
        .save(&img)
        .unwrap();
    let run = |seg: &Path| {
        cli(&[
            "classify",
            "--seg",
            seg.to_str().unwrap(),
            "--model",
            cls.to_str().unwrap(),
            "--input",
            img.to_str().unwrap(),
        ])
    };
    let (code, err) = run(&seg_b);
    assert!(
        one_error_line(code, &err).contains("another segmentation model"),
        "{err}"
    );
    let (code, err) = run(&seg_a);
    assert_eq!(code, 0, "{err}");
}
