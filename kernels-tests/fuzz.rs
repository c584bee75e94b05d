//! Arbitrary bytes never panic the readers of user files: the palette and manifest CSVs,
//! the folder loader's PNGs, and the checkpoint loader (segmentation models and
//! classifiers). Each target starts from valid files and applies seeded random mutations
//! (bit flips, interesting bytes, insertions, deletions, truncations, repeated ranges, and
//! numbers replaced by huge, negative or non-finite ones); every outcome must be `Ok` or
//! an `Err` with a message, never a panic.
//!
//! `cargo test` runs a short fixed budget (`CASES` per target); run longer on demand with
//! `SEGFEAT_FUZZ_CASES=100000 cargo test --release --test fuzz`, and another sequence with
//! `SEGFEAT_FUZZ_SEED`. An input that panics is saved under the test's scratch folder and
//! named in the failure.

mod common;
use common::{gpu, scratch};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segfeat::data::folder;
use segfeat::nn::checkpoint::{self, load_classifier, load_unet, save_classifier, save_unet};
use segfeat::nn::{Unet, UnetConfig, Vgg, VggConfig};

/// Cases per target in a plain `cargo test`.
const CASES: usize = 250;

fn cases() -> usize {
    std::env::var("SEGFEAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

fn rng(target: u64) -> StdRng {
    let seed = std::env::var("SEGFEAT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(target))
}

const INTERESTING: &[u8] = b"\0\xff,\"\n\r9-.e\xef\xbb\xbf{}[]:";
const NUMBERS: &[&str] = &[
    "18446744073709551615",
    "4294967296",
    "99999999999",
    "-1",
    "1e309",
    "NaN",
    "0",
    "",
];

/// 1 to 4 random mutations of `seed_bytes`.
fn mutate(r: &mut StdRng, seed_bytes: &[u8]) -> Vec<u8> {
    let mut b = seed_bytes.to_vec();
    for _ in 0..r.random_range(1..=4) {
        let n = b.len();
        match r.random_range(0..7) {
            0 if n > 0 => {
                let i = r.random_range(0..n);
                b[i] ^= 1 << r.random_range(0..8);
            }
            1 if n > 0 => {
                let i = r.random_range(0..n);
                b[i] = INTERESTING[r.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = r.random_range(0..=n);
                let k = r.random_range(1..16);
                let ins: Vec<u8> = (0..k).map(|_| r.random()).collect();
                b.splice(i..i, ins);
            }
            3 if n > 0 => {
                let i = r.random_range(0..n);
                let j = (i + r.random_range(1..64)).min(n);
                b.drain(i..j);
            }
            4 if n > 0 => b.truncate(r.random_range(0..n)),
            5 if n > 1 => {
                let i = r.random_range(0..n);
                let j = (i + r.random_range(1..32)).min(n);
                let piece = b[i..j].to_vec();
                let at = r.random_range(0..=n);
                b.splice(at..at, piece);
            }
            _ => {
                // Replace a run of digits with an extreme number.
                let digits: Vec<usize> = (0..n).filter(|&i| b[i].is_ascii_digit()).collect();
                if let Some(&i) = digits.get(r.random_range(0..digits.len().max(1))) {
                    let j = (i..n).find(|&j| !b[j].is_ascii_digit()).unwrap_or(n);
                    let num = NUMBERS[r.random_range(0..NUMBERS.len())]
                        .as_bytes()
                        .to_vec();
                    b.splice(i..j, num);
                }
            }
        }
    }
    b
}

/// Run `check` (true: the input was accepted) on `cases()` mutations of the seeds; fail
/// naming every input that panicked (saved in `dir`), or when the mutations were all
/// accepted or all refused (then they explore only one side of the reader).
fn fuzz(
    name: &str,
    target: u64,
    seeds: &[Vec<u8>],
    dir: &Path,
    mut check: impl FnMut(&[u8]) -> bool,
) {
    let mut r = rng(target);
    let mut panics = Vec::new();
    let mut accepted = 0;
    for case in 0..cases() {
        let input = mutate(&mut r, &seeds[case % seeds.len()]);
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(ok) => accepted += ok as usize,
            Err(_) => {
                let p = dir.join(format!("panic-{name}-{case}.bin"));
                std::fs::write(&p, &input).unwrap();
                panics.push(p.display().to_string());
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{name}: inputs that panicked: {panics:?}"
    );
    assert!(
        accepted > 0 && accepted < cases(),
        "{name}: {accepted} of {} mutated inputs accepted",
        cases()
    );
}

#[test]
#[should_panic(expected = "inputs that panicked")]
fn the_harness_reports_a_reader_that_panics() {
    let dir = scratch("fuzz_selftest");
    fuzz("selftest", 9, &[b"abcdef".to_vec()], &dir, |b| {
        assert!(b.len() <= 6, "a reader that panics on long inputs");
        true
    });
}

#[test]
fn palette_reader_takes_arbitrary_bytes() {
    let dir = scratch("fuzz_palette");
    let seeds = vec![
        b"r,g,b,label\n0,0,0,0\n255,0,0,1\n0,255,0,2\n".to_vec(),
        "\u{feff}\"r\",\"g\",\"b\",\"label\"\r\n\"0\",0,0,\"0\"\r\n"
            .as_bytes()
            .to_vec(),
    ];
    let path = dir.join("palette.csv");
    fuzz("palette", 1, &seeds, &dir, |b| {
        std::fs::write(&path, b).unwrap();
        folder::read_palette(&path, 3).is_ok()
    });
}

fn png(w: u32, h: u32, v: u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([v.wrapping_add((x * y) as u8 % 3)])
    })
    .write_to(&mut out, image::ImageFormat::Png)
    .unwrap();
    out.into_inner()
}

fn names() -> Vec<String> {
    ["BG", "A", "B"].iter().map(|s| s.to_string()).collect()
}

/// A folder of two 8x8 images with masks.
fn small_folder(dir: &Path) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for n in ["p1_a", "p2_b"] {
        std::fs::write(dir.join("images").join(format!("{n}.png")), png(8, 8, 100)).unwrap();
        std::fs::write(dir.join("masks").join(format!("{n}.png")), png(8, 8, 0)).unwrap();
    }
}

#[test]
fn manifest_reader_takes_arbitrary_bytes() {
    let dir = scratch("fuzz_manifest");
    let data = dir.join("data");
    small_folder(&data);
    let seeds = vec![
        b"name,patient,group,severity\np1_a.png,P1,normal,\np2_b.png,P2,effusion,0.5\n".to_vec(),
        b"\xef\xbb\xbfname,patient\r\n\"p1_a\",\"P, 1\"\r\np2_b,P2\r\n".to_vec(),
    ];
    fuzz("manifest", 2, &seeds, &dir, |b| {
        std::fs::write(data.join("manifest.csv"), b).unwrap();
        folder::load(&data, 16, &names(), None).is_ok()
    });
}

#[test]
fn folder_loader_takes_arbitrary_image_bytes() {
    let dir = scratch("fuzz_png");
    let data = dir.join("data");
    small_folder(&data);
    let seeds = vec![png(8, 8, 100), png(5, 9, 1), png(16, 16, 2)];
    let mut i = 0usize;
    fuzz("png", 3, &seeds, &dir, |b| {
        // Alternate between the image and the mask of the first pair.
        let sub = if i.is_multiple_of(2) {
            "images"
        } else {
            "masks"
        };
        i += 1;
        let p = data.join(sub).join("p1_a.png");
        let keep = std::fs::read(&p).unwrap();
        std::fs::write(&p, b).unwrap();
        let ok = folder::load(&data, 16, &names(), None).is_ok();
        std::fs::write(&p, keep).unwrap();
        ok
    });
}

#[test]
fn checkpoint_loader_takes_arbitrary_bytes() {
    let dir = scratch("fuzz_checkpoint");
    let gpu = gpu();
    let unet = Unet::init(&gpu, UnetConfig::new(1, 2, 16).unwrap(), 1).unwrap();
    let meta = checkpoint::SegMeta {
        label_names: vec!["BG".into(), "A".into()],
        class_weights: vec![0.1, 0.9],
        normalisation: "test".into(),
        epochs_done: 1,
        steps: 2,
        epochs_planned: 1,
        training: "seed=1".into(),
        patients: vec!["P1".into()],
        data: "test".into(),
        sha256: String::new(),
        pixel_spacing: Some((0.7, 0.8)),
    };
    let seg = dir.join("seg.st");
    save_unet(&gpu, &seg, &unet, &meta).unwrap();
    let vgg = Vgg::init(&gpu, VggConfig::new(1, 32, 1.0 / 64.0, 2).unwrap(), 1).unwrap();
    let cls = dir.join("cls.st");
    let cm = checkpoint::ClsMeta {
        features: segfeat::train::features::Combo::Img,
        stats: segfeat::train::features::ChannelStats::identity(1),
        class_weights: vec![0.5, 0.5],
        disease: "effusion".into(),
        class_names: vec!["normal".into(), "effusion".into()],
        seg: (1, 2, 16),
        training: "test".into(),
        seg_sha256: String::new(),
    };
    save_classifier(&gpu, &cls, &vgg, &cm).unwrap();
    // Mutations land mostly in the header (the first bytes): cut the seeds' data short.
    let seeds: Vec<Vec<u8>> = [&seg, &cls]
        .iter()
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            b[..(header + 64).min(b.len())].to_vec()
        })
        .chain([std::fs::read(&seg).unwrap()])
        .collect();
    let path = dir.join("fuzzed.st");
    fuzz("checkpoint", 4, &seeds, &dir, |b| {
        std::fs::write(&path, b).unwrap();
        load_unet(&gpu, &path).is_ok() | load_classifier(&gpu, &path).is_ok()
    });
}

#[test]
fn nifti_reader_takes_arbitrary_bytes() {
    let dir = scratch("fuzz_nifti");
    let (nx, ny, nz) = (5usize, 4usize, 3usize);
    let seeds: Vec<Vec<u8>> =
        [
            ndarray::Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| (x + 3 * y + 7 * z) as i16)
                .into_dyn(),
        ]
        .iter()
        .map(|arr| {
            let p = dir.join("seed.nii");
            nifti::writer::WriterOptions::new(&p)
                .write_nifti(arr)
                .unwrap();
            std::fs::read(&p).unwrap()
        })
        .collect();
    let path = dir.join("fuzzed.nii");
    fuzz("nifti", 5, &seeds, &dir, |b| {
        std::fs::write(&path, b).unwrap();
        segfeat::data::volume::read_nifti(&path).is_ok()
    });
}

#[test]
fn dicom_reader_takes_arbitrary_bytes() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{meta::FileMetaTableBuilder, InMemDicomObject};
    let dir = scratch("fuzz_dicom");
    let us = |v: u16| PrimitiveValue::from(v);
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::CT_IMAGE_STORAGE,
    ));
    obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1"));
    for (tag, v) in [
        (tags::ROWS, 4),
        (tags::COLUMNS, 5),
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 16),
        (tags::HIGH_BIT, 15),
        (tags::PIXEL_REPRESENTATION, 1),
    ] {
        obj.put(DataElement::new(tag, VR::US, us(v)));
    }
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"));
    obj.put(DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-100"));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16((0..20u16).collect()),
    ));
    let seed = dir.join("seed.dcm");
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap()
        .write_to_file(&seed)
        .unwrap();
    let seeds = vec![std::fs::read(&seed).unwrap()];
    let series = dir.join("series");
    std::fs::create_dir_all(&series).unwrap();
    fuzz("dicom", 6, &seeds, &dir, |b| {
        std::fs::write(series.join("1.dcm"), b).unwrap();
        segfeat::data::volume::read_dicom_series(&series).is_ok()
    });
}
