//! Data on the CPU (no GPU needed): the phantom's anatomy and diseases, folders of PNGs
//! with every bad input the loader must report, Dice, and the U-Net's summary.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgb};
use segfeat::data::folder::{self, read_palette};
use segfeat::data::phantom::PhantomSpec;
use segfeat::data::{Group, CARDIAC_LABELS};
use segfeat::nn::UnetConfig;
use segfeat::train::seg::{dice, mean_std};

fn names() -> Vec<String> {
    CARDIAC_LABELS.iter().map(|s| s.to_string()).collect()
}

fn small_spec(size: usize) -> PhantomSpec {
    PhantomSpec {
        size,
        normal_patients: 4,
        slices: (3, 4),
        effusion_images: 4,
        septal_images: 6,
        positive_slices: 2,
        ..PhantomSpec::default()
    }
}

/// A fresh, empty folder under target/.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether label `a` touches label `b` (4-neighbourhood) anywhere in the map.
fn touches(label: &[u8], size: usize, a: u8, b: u8) -> bool {
    for y in 0..size {
        for x in 0..size {
            if label[y * size + x] != a {
                continue;
            }
            let n = [
                (x > 0).then(|| label[y * size + x - 1]),
                (x + 1 < size).then(|| label[y * size + x + 1]),
                (y > 0).then(|| label[(y - 1) * size + x]),
                (y + 1 < size).then(|| label[(y + 1) * size + x]),
            ];
            if n.contains(&Some(b)) {
                return true;
            }
        }
    }
    false
}

#[test]
fn phantom_is_seeded_and_organised_by_patient() {
    let a = small_spec(48).generate().unwrap();
    let b = small_spec(48).generate().unwrap();
    assert_eq!(a.samples.len(), b.samples.len());
    for (x, y) in a.samples.iter().zip(&b.samples) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.image, y.image);
        assert_eq!(x.label, y.label);
    }
    let other = PhantomSpec {
        seed: 2,
        ..small_spec(48)
    }
    .generate()
    .unwrap();
    assert_ne!(a.samples[0].image, other.samples[0].image);

    let count = |g: Group| a.samples.iter().filter(|s| s.group == g).count();
    assert_eq!(count(Group::Effusion), 4);
    assert_eq!(count(Group::Septal), 6);
    let normals = a.select(None, &[Group::Normal]).unwrap();
    assert_eq!(normals.patients().len(), 4);
    let n = normals.samples.len();
    assert!((12..=16).contains(&n), "{n} normal slices");
    // Diseased patients are not normal patients.
    for s in a.samples.iter().filter(|s| s.group != Group::Normal) {
        assert!(!normals.patients().contains(&s.patient));
        assert!(s.severity.is_some_and(|v| (0.0..=1.0).contains(&v)));
        assert!(s.name.starts_with(&format!("{}_", s.patient)));
    }
}

#[test]
fn phantom_shows_every_structure_and_is_not_a_threshold() {
    let ds = small_spec(96).generate().unwrap();
    for s in ds.samples.iter().filter(|s| s.group == Group::Normal) {
        assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
        for l in 0..6u8 {
            let px = s.label.iter().filter(|&&v| v == l).count();
            assert!(px >= 10, "{}: label {l} has only {px} pixels", s.name);
        }
        // The septa and the LV myocardium separate the blood pools (RA meets RV at the
        // tricuspid valve, as in real label maps).
        for (a, b) in [(4, 3), (2, 1), (4, 2)] {
            assert!(!touches(&s.label, 96, a, b), "{}: {a} touches {b}", s.name);
        }
        // Left-heart blood is brighter than right-heart blood.
        let mean = |l: u8| {
            let v: Vec<f64> = s
                .label
                .iter()
                .zip(&s.image)
                .filter(|(&x, _)| x == l)
                .map(|(_, &i)| i as f64)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(
            mean(4) > mean(3) + 0.03,
            "{}: LV not brighter than RV",
            s.name
        );
        assert!(
            mean(2) > mean(1) + 0.03,
            "{}: LA not brighter than RA",
            s.name
        );
        // Not thresholding: background pixels as bright as the LV exist (the aorta, bone).
        let lv = mean(4);
        let bright_bg = s
            .label
            .iter()
            .zip(&s.image)
            .filter(|(&l, &i)| l == 0 && (i as f64) > lv - 0.05)
            .count();
        assert!(bright_bg >= 10, "{}: no bright background", s.name);
    }
}

#[test]
fn septal_defects_join_the_blood_pools() {
    let spec = PhantomSpec {
        defect_width: (0.3, 0.3),
        ..small_spec(96)
    };
    let ds = spec.generate().unwrap();
    for s in ds.samples.iter().filter(|s| s.group == Group::Septal) {
        let ventricles = touches(&s.label, 96, 4, 3);
        let atria = touches(&s.label, 96, 2, 1);
        assert!(
            ventricles || atria,
            "{}: a wide defect must let LV meet RV or LA meet RA",
            s.name
        );
    }
}

#[test]
fn effusion_adds_water_density_around_the_heart() {
    // The same patient seed with and without effusion differs only around the heart:
    // compare the mean intensity of background pixels near the heart.
    let base = PhantomSpec {
        effusion_thickness: (0.0, 0.0),
        ..small_spec(64)
    };
    let thick = PhantomSpec {
        effusion_thickness: (0.25, 0.25),
        effusion_coverage: (1.0, 1.0),
        ..small_spec(64)
    };
    let (a, b) = (base.generate().unwrap(), thick.generate().unwrap());
    let mut changed = 0;
    for (x, y) in a.samples.iter().zip(&b.samples) {
        if x.group != Group::Effusion {
            assert_eq!(x.image, y.image, "{}: only effusion images change", x.name);
            continue;
        }
        let diff = x
            .image
            .iter()
            .zip(&y.image)
            .filter(|(p, q)| (*p - *q).abs() > 0.05)
            .count();
        assert!(
            diff > 40,
            "{}: an effusion of 0.25 changed {diff} pixels",
            x.name
        );
        changed += 1;
    }
    assert_eq!(changed, 4);
}

#[test]
fn phantom_round_trips_through_a_folder() {
    let ds = small_spec(32).generate().unwrap();
    let dir = scratch("phantom_folder");
    folder::write(&ds, &dir).unwrap();
    let mut back = folder::load(&dir, 32, &names(), None).unwrap();
    assert_eq!(back.samples.len(), ds.samples.len());
    back.samples.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ds = ds;
    ds.samples.sort_by(|a, b| a.name.cmp(&b.name));
    for (x, y) in ds.samples.iter().zip(&back.samples) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.patient, y.patient);
        assert_eq!(x.group, y.group);
        assert_eq!(x.label, y.label);
        for (p, q) in x.image.iter().zip(&y.image) {
            assert!((p - q).abs() <= 0.5 / 65535.0 + 1e-7);
        }
    }
    // Loading at another size resizes: bilinear images, nearest masks.
    let big = folder::load(&dir, 64, &names(), None).unwrap();
    assert_eq!(big.samples[0].image.len(), 64 * 64);
    assert_eq!(
        big.samples[0].label[64 * 10 + 20],
        ds.samples[0].label[32 * 5 + 10]
    );
}

fn gray8(path: &Path, w: u32, h: u32, v: u8) {
    ImageBuffer::<Luma<u8>, _>::from_raw(w, h, vec![v; (w * h) as usize])
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn bad_folders_report_every_offending_file() {
    let dir = scratch("bad_folder");
    let (i, m) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&i).unwrap();
    std::fs::create_dir_all(&m).unwrap();
    // good
    gray8(&i.join("p1_01.png"), 8, 8, 100);
    gray8(&m.join("p1_01.png"), 8, 8, 2);
    // image without mask
    gray8(&i.join("p1_02.png"), 8, 8, 100);
    // size mismatch
    gray8(&i.join("p2_01.png"), 8, 8, 100);
    gray8(&m.join("p2_01.png"), 6, 8, 1);
    // label >= N
    gray8(&i.join("p2_02.png"), 8, 8, 100);
    gray8(&m.join("p2_02.png"), 8, 8, 9);
    // unreadable image
    std::fs::write(i.join("p3_01.png"), b"not a png").unwrap();
    gray8(&m.join("p3_01.png"), 8, 8, 0);
    // colour mask without a palette
    gray8(&i.join("p3_02.png"), 8, 8, 100);
    ImageBuffer::<Rgb<u8>, _>::from_raw(8, 8, vec![255u8; 192])
        .unwrap()
        .save(m.join("p3_02.png"))
        .unwrap();

    let err = folder::load(&dir, 16, &names(), None).unwrap_err().0;
    assert!(err.starts_with("5 problems in"), "{err}");
    for (file, what) in [
        ("p1_02.png", "no mask"),
        ("p2_01.png", "is 8x8 but its mask"),
        (
            "p2_02.png",
            "label 9 at pixel (0, 0) is not below the label count 6",
        ),
        ("p3_01.png", "unreadable image"),
        ("p3_02.png", "needs --palette"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(file) && l.contains(what)),
            "no line about {file} ({what}) in:\n{err}"
        );
    }
    assert!(!err.contains("p1_01"), "{err}");

    let missing = folder::load(&dir.join("nope"), 16, &names(), None)
        .unwrap_err()
        .0;
    assert!(missing.contains("does not exist"), "{missing}");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let no_masks = folder::load(&dir.join("empty"), 16, &names(), None)
        .unwrap_err()
        .0;
    assert!(
        no_masks.contains("images") && no_masks.contains("is missing"),
        "{no_masks}"
    );
}

#[test]
fn palettes_map_colours_and_reject_unknown_ones() {
    let dir = scratch("palette");
    let pal = dir.join("pal.csv");
    std::fs::write(&pal, "r,g,b,label\n0,0,0,0\n255,0,0,4\n0,255,255,0\n").unwrap();
    let p = read_palette(&pal, 6).unwrap();
    assert_eq!(p.len(), 3);
    let (i, m) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&i).unwrap();
    std::fs::create_dir_all(&m).unwrap();
    let mut mask = vec![0u8; 4 * 4 * 3];
    mask[0] = 255; // (0,0) red -> LV
    mask[4] = 255; // (1,0) cyan -> BG
    mask[5] = 255;
    gray8(&i.join("a_1.png"), 4, 4, 10);
    ImageBuffer::<Rgb<u8>, _>::from_raw(4, 4, mask.clone())
        .unwrap()
        .save(m.join("a_1.png"))
        .unwrap();
    let ds = folder::load(&dir, 4, &names(), Some(&p)).unwrap();
    assert_eq!(&ds.samples[0].label[..3], &[4, 0, 0]);
    assert_eq!(ds.samples[0].patient, "a");

    mask[9] = 7; // (3,0) an unknown colour
    ImageBuffer::<Rgb<u8>, _>::from_raw(4, 4, mask)
        .unwrap()
        .save(m.join("a_1.png"))
        .unwrap();
    let err = folder::load(&dir, 4, &names(), Some(&p)).unwrap_err().0;
    assert!(
        err.contains("a_1.png")
            && err.contains("colour 7,0,0 at pixel (3, 0) is not in the palette"),
        "{err}"
    );

    std::fs::write(&pal, "r,g,b,label\n1,2,3,6\n").unwrap();
    let err = read_palette(&pal, 6).unwrap_err().0;
    assert!(err.contains("line 2") && err.contains("label 6"), "{err}");
    std::fs::write(&pal, "red,green\n").unwrap();
    assert!(read_palette(&pal, 6).unwrap_err().0.contains("header"));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/palettes/chd-ct-mini.csv");
    let chd = read_palette(&shipped, 6).unwrap();
    assert_eq!(chd.get(&[255, 255, 0]), Some(&1));
    assert_eq!(chd.get(&[128, 128, 128]), Some(&0));
}

#[test]
fn manifest_names_patients_and_groups() {
    let dir = scratch("manifest");
    let (i, m) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&i).unwrap();
    std::fs::create_dir_all(&m).unwrap();
    for n in ["x_1", "y_2"] {
        gray8(&i.join(format!("{n}.png")), 4, 4, 10);
        gray8(&m.join(format!("{n}.png")), 4, 4, 1);
    }
    std::fs::write(
        dir.join("manifest.csv"),
        "name,patient,group\nx_1.png,alice,normal\ny_2,bob,effusion\n",
    )
    .unwrap();
    let ds = folder::load(&dir, 4, &names(), None).unwrap();
    assert_eq!(ds.samples[0].patient, "alice");
    assert_eq!(ds.samples[1].patient, "bob");
    assert_eq!(ds.samples[1].group, Group::Effusion);
    assert!(ds.manifest_patients);
    // Any disease name of letters, digits, '-' and '_' is a group of its own.
    std::fs::write(
        dir.join("manifest.csv"),
        "name,patient,group\nx_1,alice,normal\ny_2,bob,Pneumothorax\n",
    )
    .unwrap();
    let ds = folder::load(&dir, 4, &names(), None).unwrap();
    assert_eq!(ds.samples[1].group, Group::parse("pneumothorax").unwrap());
    assert_eq!(ds.samples[1].group.name(), "pneumothorax");
    std::fs::write(
        dir.join("manifest.csv"),
        "name,patient,group\nx_1,alice,normal\ny_2,bob,flu?\n",
    )
    .unwrap();
    let err = folder::load(&dir, 4, &names(), None).unwrap_err().0;
    assert!(
        err.contains("line 3: group 'flu?' must be normal or a disease name"),
        "{err}"
    );
    std::fs::write(dir.join("manifest.csv"), "name,patient\nx_1,alice\n").unwrap();
    let err = folder::load(&dir, 4, &names(), None).unwrap_err().0;
    assert!(err.contains("y_2.png: not listed in"), "{err}");
}

#[test]
fn dice_on_hand_computed_maps() {
    let truth = [1, 1, 1, 0, 2, 0];
    let pred = [1, 1, 0, 1, 0, 0];
    // label 1: |A| = 3, |B| = 3, both = 2 -> 4/6
    assert!((dice(&truth, &pred, 1).unwrap() - 4.0 / 6.0).abs() < 1e-12);
    // label 2: in the truth only -> 0
    assert_eq!(dice(&truth, &pred, 2), Some(0.0));
    // label 3: nowhere -> undefined
    assert_eq!(dice(&truth, &pred, 3), None);
    assert_eq!(dice(&truth, &truth, 1), Some(1.0));
    let (m, s, n) = mean_std([0.5, 1.0, 0.0].into_iter());
    assert_eq!(n, 3);
    assert!((m - 0.5).abs() < 1e-12 && (s - 0.5).abs() < 1e-12);
}

#[test]
fn summary_counts_parameters_and_flops() {
    let c = UnetConfig::new(16, 6, 256).unwrap();
    let rows = c.summary();
    let params: u64 = rows.iter().map(|r| r.params).sum();
    let by_shapes: usize = c
        .param_shapes()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(params as usize, by_shapes);
    // enc1.conv1: 1 -> 16 channels: 16*1*9 weights + 16 biases; 256^2 * 16 * (18 + 2) FLOPs.
    assert_eq!(rows[0].name, "enc1.conv1");
    assert_eq!(rows[0].params, 160);
    assert_eq!(rows[0].flops, 65536 * 16 * 20);
    let concat = rows.iter().find(|r| r.name == "concat1").unwrap();
    assert_eq!(concat.shape, [48, 256, 256]);
    let bottom = rows.iter().find(|r| r.name == "enc5.conv2").unwrap();
    assert_eq!(bottom.shape, [256, 16, 16]);
    assert_eq!(rows.last().unwrap().shape, [6, 256, 256]);
    // Two 3x3 convolutions on each of 5 contracting and 4 expanding levels, and the 1x1.
    assert_eq!(c.param_shapes().len(), 2 * 19);
    for (size, n) in [(250, 16), (0, 16), (256, 0)] {
        assert!(UnetConfig::new(n, 6, size).is_err());
    }
}

// ---- augmentation (src/data/augment.rs) ----

use segfeat::data::augment::{Augment, Transform};

/// A size x size image that is 1 on the square [x0, x0 + w) x [y0, y0 + w), and its label
/// map (label 3 there, 0 elsewhere).
fn square(size: usize, x0: usize, y0: usize, w: usize) -> (Vec<f32>, Vec<u8>) {
    let mut img = vec![0.0f32; size * size];
    let mut lab = vec![0u8; size * size];
    for y in y0..y0 + w {
        for x in x0..x0 + w {
            img[y * size + x] = 1.0;
            lab[y * size + x] = 3;
        }
    }
    (img, lab)
}

/// The centroid of the pixels where `on` holds.
fn centroid(size: usize, on: impl Fn(usize) -> bool) -> (f64, f64, usize) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0);
    for i in (0..size * size).filter(|&i| on(i)) {
        sx += (i % size) as f64;
        sy += (i / size) as f64;
        n += 1;
    }
    (sx / n as f64, sy / n as f64, n)
}

#[test]
fn augmentation_moves_image_and_labels_together() {
    let size = 48;
    let (img, lab) = square(size, 14, 18, 8); // centre (17.5, 21.5)
    let ranges = Augment {
        rotate: 30.0,
        scale: 0.2,
        stretch: 0.1,
        shear: 8.0,
        translate: 0.1,
        flip_h: true,
        flip_v: true,
        crop: 0.2,
        ..Augment::default()
    };
    for step in 0..12u64 {
        let t = ranges.draw([7, step, 0], size);
        let (im2, lab2) = t.apply(&img, &lab);
        let want = t.forward((17.5, 21.5));
        let (lx, ly, ln) = centroid(size, |i| lab2[i] == 3);
        let (ix, iy, _) = centroid(size, |i| im2[i] >= 0.5);
        // The labelled square lands where the transform sends its centre (within the
        // rounding of a few dozen pixels), and the image's square with it.
        assert!(
            ln > 20,
            "step {step}: the square left the image ({ln} pixels)"
        );
        for (what, (x, y)) in [("labels", (lx, ly)), ("image", (ix, iy))] {
            assert!(
                (x - want.0).abs() < 1.0 && (y - want.1).abs() < 1.0,
                "step {step}: {what} centroid ({x:.2}, {y:.2}), transform sends the centre to ({:.2}, {:.2})",
                want.0,
                want.1
            );
        }
        // The image (bilinear) and the labels (nearest) agree on almost every pixel.
        let disagree = (0..size * size)
            .filter(|&i| (im2[i] >= 0.5) != (lab2[i] == 3))
            .count();
        assert!(
            disagree * 10 < ln,
            "step {step}: {disagree} pixels disagree of {ln}"
        );
        // Forward and inverse are inverses.
        let back = t.inverse(want);
        assert!((back.0 - 17.5).abs() < 1e-9 && (back.1 - 21.5).abs() < 1e-9);
    }
}

#[test]
fn augmentation_translation_and_identity_are_exact() {
    let size = 16;
    let (img, lab) = square(size, 3, 5, 4);
    // Identity parameters through the sampling path give the input back, bit for bit.
    let id = Transform::identity(size);
    assert_eq!(id.apply(&img, &lab), (img.clone(), lab.clone()));
    let zero_ranges = Augment {
        flip_h: false,
        ..Augment::default()
    };
    assert_eq!(
        zero_ranges.draw([1, 2, 3], size).apply(&img, &lab),
        (img.clone(), lab.clone())
    );
    // A whole-pixel translation shifts both maps by that many pixels.
    let t = Transform {
        t: [2.0, -1.0],
        ..Transform::identity(size)
    };
    let (im2, lab2) = t.apply(&img, &lab);
    let (want_img, want_lab) = square(size, 5, 4, 4);
    assert_eq!(im2, want_img);
    assert_eq!(lab2, want_lab);
}

#[test]
fn augmentation_is_seeded_and_ranges_are_independent() {
    let size = 32;
    let mut g = 0u32;
    let img: Vec<f32> = (0..size * size)
        .map(|_| {
            g = g.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (g >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    let lab: Vec<u8> = img.iter().map(|&v| (v * 5.0) as u8).collect();
    let all = Augment::recommended();
    let a = all.draw([3, 10, 1], size).apply(&img, &lab);
    let b = all.draw([3, 10, 1], size).apply(&img, &lab);
    assert_eq!(a, b, "the same key gives the same bits");
    let c = all.draw([3, 11, 1], size).apply(&img, &lab);
    assert_ne!(a.0, c.0, "another step draws another transform");
    // Turning a transform off leaves the others' draws unchanged.
    let rot_only = Augment {
        rotate: all.rotate,
        ..Augment::default()
    };
    let (t_all, t_rot) = (all.draw([3, 10, 1], size), rot_only.draw([3, 10, 1], size));
    let angle = |t: &Transform| t.a[1][0].atan2(t.a[0][0]);
    assert!((angle(&t_all) - angle(&t_rot)).abs() < 1e-12);
    // Intensities stay in [0, 1]; labels keep their set of values.
    assert!(a.0.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(a.1.iter().all(|&l| l < 5));
    // describe and parse round-trip; bad ranges are one sentence.
    assert_eq!(Augment::parse(&all.describe()).unwrap(), all);
    assert_eq!(Augment::parse("none").unwrap(), Augment::default());
    for bad in ["rotate=-1", "crop=1", "zoom=2", "gamma=x", "rotate"] {
        let e = Augment::parse(bad).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{bad}: {e}");
    }
}

// ---- Volumes, windows and fitting -------------------------------------------------

use segfeat::data::volume::{read_nifti, Axis, Window};
use segfeat::data::{fit_image, fit_labels, resize_area, unfit_image, unfit_labels};

/// Write `values` (indexed [x][y][z] in a (nx, ny, nz) array) as a NIfTI file with the
/// `nifti` crate's writer, stored as `T` with the given slope and intercept.
fn write_nifti<T: nifti::DataElement + bytemuck::Pod + Copy>(
    path: &Path,
    dims: [usize; 3],
    values: &[T],
    slope: f32,
    inter: f32,
) {
    let [nx, ny, nz] = dims;
    let arr =
        ndarray::Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| values[x + nx * (y + ny * z)]);
    let header = nifti::NiftiHeader {
        scl_slope: slope,
        scl_inter: inter,
        pixdim: [1.0, 0.8, 0.7, 5.0, 1.0, 1.0, 1.0, 1.0],
        ..Default::default()
    };
    nifti::writer::WriterOptions::new(path)
        .reference_header(&header)
        .write_nifti(&arr)
        .unwrap();
    // The writer stores slope 1 and intercept 0 whatever the reference says: set them in
    // the header (bytes 112 to 119 of NIfTI-1, little-endian here) of an uncompressed file.
    if (slope, inter) != (1.0, 0.0) {
        assert!(!path.to_string_lossy().ends_with(".gz"));
        let mut b = std::fs::read(path).unwrap();
        b[112..116].copy_from_slice(&slope.to_le_bytes());
        b[116..120].copy_from_slice(&inter.to_le_bytes());
        std::fs::write(path, b).unwrap();
    }
}

/// Write one slice of a CT series with the `dicom-object` crate: signed 16-bit values of a
/// `w x h` image (row-major) with a rescale (slope, intercept), at position z = 5 k mm,
/// pixel spacing 0.7 mm between rows and 0.8 mm between columns.
fn write_dicom(path: &Path, (w, h): (usize, usize), values: &[i16], rescale: (f64, f64), k: usize) {
    use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{meta::FileMetaTableBuilder, InMemDicomObject};
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let us = |v: u16| PrimitiveValue::from(v);
    let ds = |v: String| PrimitiveValue::from(v);
    let z = 5.0 * k as f64;
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::CT_IMAGE_STORAGE,
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        format!("2.25.{}", 7000 + k),
    ));
    obj.put(DataElement::new(tags::MODALITY, VR::CS, "CT"));
    obj.put(DataElement::new(
        tags::INSTANCE_NUMBER,
        VR::IS,
        ds(format!("{}", 10 - k)),
    ));
    obj.put(DataElement::new(tags::ROWS, VR::US, us(h as u16)));
    obj.put(DataElement::new(tags::COLUMNS, VR::US, us(w as u16)));
    obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, us(1)));
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, us(16)));
    obj.put(DataElement::new(tags::BITS_STORED, VR::US, us(16)));
    obj.put(DataElement::new(tags::HIGH_BIT, VR::US, us(15)));
    obj.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, us(1)));
    obj.put(DataElement::new(
        tags::RESCALE_SLOPE,
        VR::DS,
        ds(format!("{}", rescale.0)),
    ));
    obj.put(DataElement::new(
        tags::RESCALE_INTERCEPT,
        VR::DS,
        ds(format!("{}", rescale.1)),
    ));
    obj.put(DataElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        dicom_value!(Strs, ["0".to_string(), "0".to_string(), format!("{z}")]),
    ));
    obj.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        dicom_value!(Strs, ["1", "0", "0", "0", "1", "0"]),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        dicom_value!(Strs, ["0.7", "0.8"]),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(values.iter().map(|&v| v as u16).collect()),
    ));
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap()
        .write_to_file(path)
        .unwrap();
}

#[test]
fn nifti_and_dicom_volumes_give_the_same_slices_labels_and_patients_as_pngs() {
    let root = scratch("nifti_vs_png");
    let (nx, ny, nz) = (12usize, 9usize, 3usize);
    let n = nx * ny * nz;
    // HU = 2 raw - 100, even values in [0, 254]: windowed to [0, 255] they are k / 255,
    // exactly what an 8-bit PNG of k gives.
    let hu: Vec<i32> = (0..n).map(|i| (i * 37 % 128) as i32 * 2).collect();
    let raw: Vec<i16> = hu.iter().map(|&h| ((h + 100) / 2) as i16).collect();
    let labels: Vec<u8> = (0..n).map(|i| ((i / 5) % 3) as u8).collect();
    let vdir = root.join("vol");
    std::fs::create_dir_all(vdir.join("images")).unwrap();
    std::fs::create_dir_all(vdir.join("masks")).unwrap();
    write_nifti(&vdir.join("images/P7.nii"), [nx, ny, nz], &raw, 2.0, -100.0);
    write_nifti(
        &vdir.join("masks/P7.nii.gz"),
        [nx, ny, nz],
        &labels,
        1.0,
        0.0,
    );
    // The same data as PNG slices.
    let pdir = root.join("png");
    std::fs::create_dir_all(pdir.join("images")).unwrap();
    std::fs::create_dir_all(pdir.join("masks")).unwrap();
    for z in 0..nz {
        let at = |x: u32, y: u32| x as usize + nx * (y as usize + ny * z);
        ImageBuffer::from_fn(nx as u32, ny as u32, |x, y| Luma([hu[at(x, y)] as u8]))
            .save(pdir.join(format!("images/P7_z{z:03}.png")))
            .unwrap();
        ImageBuffer::from_fn(nx as u32, ny as u32, |x, y| Luma([labels[at(x, y)]]))
            .save(pdir.join(format!("masks/P7_z{z:03}.png")))
            .unwrap();
    }
    let names: Vec<String> = ["BG", "A", "B"].iter().map(|s| s.to_string()).collect();
    let opts = folder::ReadOptions {
        window: Window::Fixed(0.0, 255.0),
        axis: Axis::Z,
        ..Default::default()
    };
    for size in [16, 8] {
        let v = folder::load_with(&vdir, size, &names, None, &opts).unwrap();
        let p = folder::load(&pdir, size, &names, None).unwrap();
        assert_eq!(v.samples.len(), nz);
        for (a, b) in v.samples.iter().zip(&p.samples) {
            assert_eq!((&a.name, &a.patient), (&b.name, &b.patient));
            assert_eq!(a.image, b.image, "{} at {size}", a.name);
            assert_eq!(a.label, b.label, "{} at {size}", a.name);
        }
        // The pixel size at the network's size: the padded square of 12 over `size`.
        let sp = v.samples[0].spacing.unwrap();
        assert!((sp.0 - 0.8 * 12.0 / size as f64).abs() < 1e-6, "{sp:?}");
        assert!((sp.1 - 0.7 * 12.0 / size as f64).abs() < 1e-6, "{sp:?}");
        assert!(
            v.normalisation.contains("window 0,255"),
            "{}",
            v.normalisation
        );
    }
    // The same volume as DICOM series (slices written in reverse name order, sorted back by
    // position), with the rescale in the DICOM tags; its labels as a DICOM series too.
    let ddir = root.join("dicom");
    for z in 0..nz {
        let at = |i: usize| i + nx * ny * z;
        let name = format!("{}.dcm", (b'c' - z as u8) as char);
        let img: Vec<i16> = (0..nx * ny).map(|i| raw[at(i)]).collect();
        let lab: Vec<i16> = (0..nx * ny).map(|i| labels[at(i)] as i16).collect();
        write_dicom(
            &ddir.join("images/P7").join(&name),
            (nx, ny),
            &img,
            (2.0, -100.0),
            z,
        );
        write_dicom(
            &ddir.join("masks/P7").join(&name),
            (nx, ny),
            &lab,
            (1.0, 0.0),
            z,
        );
    }
    for size in [16, 8] {
        let d = folder::load_with(&ddir, size, &names, None, &opts).unwrap();
        let p = folder::load(&pdir, size, &names, None).unwrap();
        assert_eq!(d.samples.len(), nz);
        for (a, b) in d.samples.iter().zip(&p.samples) {
            assert_eq!((&a.name, &a.patient), (&b.name, &b.patient));
            assert_eq!(a.image, b.image, "DICOM {} at {size}", a.name);
            assert_eq!(a.label, b.label, "DICOM {} at {size}", a.name);
        }
        let sp = d.samples[0].spacing.unwrap();
        assert!((sp.0 - 0.8 * 12.0 / size as f64).abs() < 1e-6, "{sp:?}");
        assert!((sp.1 - 0.7 * 12.0 / size as f64).abs() < 1e-6, "{sp:?}");
    }
    let dv = segfeat::data::volume::read_dicom_series(&ddir.join("images/P7")).unwrap();
    assert_eq!(dv.dims, [nx, ny, nz]);
    assert!((dv.spacing[2] - 5.0).abs() < 1e-9, "{:?}", dv.spacing);
    assert!(dv.values.iter().zip(&hu).all(|(&a, &b)| a == b as f32));

    // Rescale slope and intercept are applied: the stored HU come back.
    let vol = read_nifti(&vdir.join("images/P7.nii")).unwrap();
    assert_eq!(vol.dims, [nx, ny, nz]);
    assert!(vol.values.iter().zip(&hu).all(|(&a, &b)| a == b as f32));
    // Slices along x and y have the other shapes.
    assert_eq!(vol.slices(Axis::X).len(), nx);
    assert_eq!(
        (vol.slices(Axis::Y)[0].w, vol.slices(Axis::Y)[0].h),
        (nx, nz)
    );
    assert_eq!(vol.slices(Axis::X)[2].values[1], hu[2 + nx] as f32);
    // A label volume with a label out of range is refused naming the voxel.
    let bad: Vec<u8> = labels.iter().map(|&l| if l == 2 { 3 } else { l }).collect();
    write_nifti(&vdir.join("masks/P7.nii.gz"), [nx, ny, nz], &bad, 1.0, 0.0);
    let e = folder::load_with(&vdir, 16, &names, None, &opts)
        .err()
        .unwrap()
        .0;
    assert!(e.contains("voxel (") && e.contains("holds 3"), "{e}");
}

#[test]
fn windows_map_known_values() {
    let w = Window::Fixed(-250.0, 450.0);
    assert_eq!(
        w.apply(&[-250.0, 100.0, 450.0, 1000.0, -1000.0]),
        vec![0.0, 0.5, 1.0, 1.0, 0.0]
    );
    assert_eq!(Window::parse("-250, 450").unwrap(), w);
    assert_eq!(Window::default(), w);
    for bad in ["450,-250", "1", "a,b", "1,1", "nan,2"] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
    // auto: the 0.5th and 99.5th percentiles of 0..=1000 are 5 and 995.
    let v: Vec<f32> = (0..=1000).map(|i| i as f32).collect();
    let a = Window::Auto.apply(&v);
    assert_eq!(
        (a[5], a[500], a[995], a[0], a[1000]),
        (0.0, 0.5, 1.0, 0.0, 1.0)
    );
}

#[test]
fn fitting_keeps_the_aspect_ratio_and_averages_when_shrinking() {
    // A 4x2 image into 4x4: one padding row above and below.
    let img = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let f = fit_image(&img, 4, 2, 4, 0.0);
    assert_eq!(&f[..4], &[0.0; 4]);
    assert_eq!(&f[4..12], &img);
    assert_eq!(&f[12..], &[0.0; 4]);
    // A checkerboard shrunk by 4 is its mean everywhere (skipping pixels would give 0 or 1).
    let cb: Vec<f32> = (0..64 * 64)
        .map(|i| ((i % 64 + i / 64) % 2) as f32)
        .collect();
    assert!(fit_image(&cb, 64, 64, 16, 0.0)
        .iter()
        .all(|&v| (v - 0.5).abs() < 1e-6));
    // Area averaging at a fractional scale keeps the mean and every output is a weighted
    // mean of its footprint: 3x3 to 2x2.
    let r = resize_area(&[0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0, 24.0], 3, 2);
    let want = [
        (0.0 + 3.0 * 0.5 + 9.0 * 0.5 + 12.0 * 0.25) / 2.25,
        (6.0 + 3.0 * 0.5 + 15.0 * 0.5 + 12.0 * 0.25) / 2.25,
        (18.0 + 9.0 * 0.5 + 21.0 * 0.5 + 12.0 * 0.25) / 2.25,
        (24.0 + 15.0 * 0.5 + 21.0 * 0.5 + 12.0 * 0.25) / 2.25,
    ];
    for (a, b) in r.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-5, "{r:?} vs {want:?}");
    }
    // Labels: fitted and brought back at a whole scale, a map is unchanged.
    let lab: Vec<u8> = (0..6 * 3).map(|i| (i % 4) as u8).collect();
    let fitted = fit_labels(&lab, 6, 3, 12);
    assert_eq!(unfit_labels(&fitted, 12, 6, 3), lab);
    let back = unfit_image(&fit_image(&img, 4, 2, 4, 0.0), 4, 4, 2);
    assert!(
        back.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-5),
        "{back:?}"
    );
}

#[test]
fn hd95_on_hand_made_maps() {
    use segfeat::train::seg::hd95;
    let w = 8;
    let mut a = vec![0u8; w * 4];
    let mut b = vec![0u8; w * 4];
    a[w + 1] = 1;
    b[w + 4] = 1;
    assert_eq!(hd95(&a, &b, w, 1, (1.0, 1.0)), Some(3.0));
    assert_eq!(hd95(&a, &b, w, 1, (0.5, 2.0)), Some(1.5));
    assert_eq!(hd95(&a, &a, w, 2, (1.0, 1.0)), None);
    // A row of 20 pixels, and the same row plus one stray pixel 10 rows away: 41 boundary
    // distances, 40 of them 0; the 95th percentile (rank 39) is 0, the maximum 10.
    let w = 20;
    let mut t = vec![0u8; w * 12];
    t[..w].fill(1);
    let mut p = t.clone();
    p[10 * w + 5] = 1;
    assert_eq!(hd95(&t, &p, w, 1, (1.0, 1.0)), Some(0.0));
}
