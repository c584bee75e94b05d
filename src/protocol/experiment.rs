//! The few-positive protocol (paper, section 3.2).
//!
//! Negatives are the normal images of patients the segmentation network was not trained
//! on. In repetition r they are shuffled and split into `negatives_train` (50) and
//! `negatives_test` (50); each disease's images are shuffled and split into a training
//! pool of `pool` (10) and `positives_test` (20). For every k in `positives`, a classifier
//! is trained on the first k images of the pool plus the training negatives, and tested on
//! the test positives plus the test negatives. Within a repetition every k and every
//! feature combination sees the same split and the same initial-weight seed, so the
//! combinations are compared on equal terms.
//!
//! Runs are enumerated in a fixed order (repetition, disease, k, combination). Each
//! finished run is appended as one JSON line to `runs.jsonl` (`runs.I-of-K.jsonl` for shard
//! I of K), and a run already in any `runs*.jsonl` of the folder is skipped, so a killed
//! experiment loses at most the run in progress. `experiment.json` pins the settings that
//! determine a run's result; starting again with other settings is refused.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rand::seq::SliceRandom;
use serde_json::{json, Value};

use crate::data::augment::Augment;
use crate::data::{Dataset, Group};
use crate::gpu::jobs;
use crate::jsonl::{append_line, repair_tail};
use crate::nn::checkpoint::{write_atomic, SegMeta};
use crate::nn::init::rng;
use crate::nn::vgg::Regularisation;
use crate::nn::{Unet, VggConfig};
use crate::protocol::metrics::Confusion;
use crate::protocol::report::{self, RunRecord};
use crate::train::cls::{self, ClsTrainOptions};
use crate::train::features::{Combo, FeatureBank};
use crate::train::svm;
use crate::{bail, Error, Gpu, Result};

/// Everything that defines an experiment; defaults are the paper's.
#[derive(Clone, Debug)]
pub struct Protocol {
    pub diseases: Vec<Group>,
    pub combos: Vec<Combo>,
    /// The values of k (positive training images).
    pub positives: Vec<usize>,
    pub reps: usize,
    pub negatives_train: usize,
    pub negatives_test: usize,
    /// Positives set aside for training (k is at most this).
    pub pool: usize,
    pub positives_test: usize,
    pub seed: u64,
    /// The classifier: width multiplier, fully connected width, input size.
    pub width: f64,
    pub fc: usize,
    pub size: usize,
    pub train: ClsTrainOptions,
    /// How images are split between training and testing.
    pub split: SplitBy,
    /// The classifiers run on every combination (the paper's VGG by default).
    pub classifiers: Vec<ClassifierKind>,
    /// What `vgg-reg` adds to the paper's VGG.
    pub regularised: Regularised,
    /// Empty for the paper's protocol (each disease against normal). Otherwise the
    /// classes of one multi-class task (normal and diseases, or diseases alone): every
    /// run trains one C-way classifier on k images of each disease class (and the
    /// training negatives when normal is a class) and tests it on each class's test
    /// images. `diseases` then lists the disease classes.
    pub classes: Vec<Group>,
}

/// A classifier of the protocol, run on each feature combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassifierKind {
    /// The paper's VGG.
    Vgg,
    /// The VGG with batch normalisation, dropout, leaky ReLU and augmentation
    /// ([`Regularised`]).
    VggReg,
    /// A linear SVM on pooled features (src/train/svm.rs).
    Svm,
}

impl ClassifierKind {
    pub const ALL: [ClassifierKind; 3] = [
        ClassifierKind::Vgg,
        ClassifierKind::VggReg,
        ClassifierKind::Svm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::Vgg => "vgg",
            ClassifierKind::VggReg => "vgg-reg",
            ClassifierKind::Svm => "svm",
        }
    }

    /// Parse a comma-separated list (`vgg,vgg-reg,svm`).
    pub fn parse_list(s: &str) -> Result<Vec<ClassifierKind>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some(k) = Self::ALL.into_iter().find(|k| k.name() == part) else {
                bail!("unknown classifier '{part}' (vgg, vgg-reg or svm)");
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
        if out.is_empty() {
            bail!("--classifiers needs at least one of vgg, vgg-reg and svm");
        }
        Ok(out)
    }
}

/// The regularised VGG's settings. The defaults were fixed before any run of it, each
/// for a stated reason: batch normalisation, dropout and leaky ReLU as in Menkovski et
/// al.'s network trained from scratch; dropout 0.5 at VGG-16's own places (after fc1 and
/// fc2); the leaky slope 0.01 of Maas et al. (2013), PyTorch's default; the README's
/// recommended augmentation. Global average pooling is not among them (neither paper
/// uses it) and stays off.
#[derive(Clone, Debug, PartialEq)]
pub struct Regularised {
    pub reg: Regularisation,
    pub augment: Augment,
}

impl Default for Regularised {
    fn default() -> Self {
        Regularised {
            reg: Regularisation {
                bn: true,
                dropout: 0.5,
                leaky: 0.01,
                gap: false,
            },
            augment: Augment::recommended(),
        }
    }
}

/// How a repetition splits the images between training and testing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitBy {
    /// Image by image, as the paper describes: neighbouring slices of one patient can sit
    /// on both sides.
    Image,
    /// Patient by patient: no patient has images on both sides (negatives and each
    /// disease's positives alike). The training pool takes one image of each of its
    /// patients before a second of any, so the first k positives come from k patients where
    /// the pool has them.
    Patient,
}

impl SplitBy {
    pub fn parse(s: &str) -> Result<SplitBy> {
        match s {
            "image" => Ok(SplitBy::Image),
            "patient" => Ok(SplitBy::Patient),
            _ => bail!("--split must be 'image' or 'patient', got '{s}'"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SplitBy::Image => "image",
            SplitBy::Patient => "patient",
        }
    }
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            diseases: vec![Group::Effusion, Group::Septal],
            combos: Combo::ALL.to_vec(),
            positives: (1..=10).collect(),
            reps: 10,
            negatives_train: 50,
            negatives_test: 50,
            pool: 10,
            positives_test: 20,
            seed: 1,
            width: 1.0,
            fc: 4096,
            size: 256,
            train: ClsTrainOptions::default(),
            split: SplitBy::Image,
            classifiers: vec![ClassifierKind::Vgg],
            regularised: Regularised::default(),
            classes: Vec::new(),
        }
    }
}

/// One classifier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunId {
    pub rep: usize,
    pub disease: Group,
    pub k: usize,
    pub combo: Combo,
    pub kind: ClassifierKind,
}

impl RunId {
    pub fn key(&self) -> (String, String, usize, usize) {
        (
            self.disease.name().to_string(),
            report::series_name(self.combo.name(), self.kind.name()),
            self.k,
            self.rep,
        )
    }
}

/// A shard I of K (0 <= I < K): the runs whose index in the fixed order is I mod K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parse `I/K`.
    pub fn parse(s: &str) -> Result<Shard> {
        let parsed = s
            .split_once('/')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count > 0 && index < count => Ok(Shard { index, count }),
            _ => bail!("--shard must be I/K with 0 <= I < K (for example 0/8), got '{s}'"),
        }
    }
}

/// Mix seeds and indices into one seed (splitmix64 steps).
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// The seed of a run's initial weights and batch order: the same for every combination
/// (and disease) of a repetition and k.
pub fn init_seed(split_seed: u64, k: usize) -> u64 {
    mix(&[split_seed, k as u64, 7])
}

fn disease_code(g: Group) -> u64 {
    match g {
        Group::Normal => 0,
        Group::Effusion => 1,
        Group::Septal => 2,
        // FNV-1a of the name: the same code in every process.
        Group::Named(n) => n.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
        }),
    }
}

impl Protocol {
    pub fn validate(&self) -> Result<()> {
        if self.diseases.is_empty() || self.diseases.contains(&Group::Normal) {
            bail!("--diseases must name at least one disease (effusion, septal, or a group of the data's manifest)");
        }
        if self.combos.is_empty() {
            bail!("--features needs at least one combination");
        }
        if self.positives.is_empty() || self.positives.contains(&0) {
            bail!("--positives must list numbers of at least 1");
        }
        if let Some(k) = first_repeat(&self.positives) {
            bail!("--positives lists {k} more than once; each k is run once per repetition");
        }
        if let Some(c) = first_repeat(&self.combos) {
            bail!("--features lists {} more than once", c.name());
        }
        if let Some(d) = first_repeat(&self.diseases) {
            bail!("--diseases lists {} more than once", d.name());
        }
        if !self.classes.is_empty() {
            if self.classes.len() < 2 {
                bail!("--classes needs at least two classes");
            }
            if let Some(c) = first_repeat(&self.classes) {
                bail!("--classes lists {} more than once", c.name());
            }
            let diseases: Vec<Group> = self
                .classes
                .iter()
                .copied()
                .filter(|&c| c != Group::Normal)
                .collect();
            if diseases != self.diseases {
                bail!("a multi-class protocol's diseases are its classes other than normal");
            }
            if self.classifiers.contains(&ClassifierKind::Svm) {
                bail!("the linear SVM is two-class: run --classes with vgg or vgg-reg");
            }
        }
        if let Some(&k) = self.positives.iter().find(|&&k| k > self.pool) {
            bail!(
                "k = {k} positives exceeds the training pool of {} (--pool)",
                self.pool
            );
        }
        if self.reps == 0 {
            bail!("--reps must be at least 1");
        }
        if self.negatives_train == 0 || self.negatives_test == 0 || self.positives_test == 0 {
            bail!("the training negatives and the test sets must not be empty");
        }
        VggConfig::new(1, self.size, self.width, self.fc)?;
        if self.classifiers.is_empty() {
            bail!("--classifiers needs at least one of vgg, vgg-reg and svm");
        }
        self.regularised.reg.validate()?;
        self.regularised.augment.validate()?;
        self.train.validate()
    }

    /// Every run in the fixed order: repetition, disease, k, combination, classifier.
    pub fn runs(&self) -> Vec<RunId> {
        let mut out = Vec::new();
        let tasks = if self.classes.is_empty() {
            self.diseases.clone()
        } else {
            vec![Group::task(&self.classes)]
        };
        for rep in 0..self.reps {
            for &disease in &tasks {
                for &k in &self.positives {
                    for &combo in &self.combos {
                        for &kind in &self.classifiers {
                            out.push(RunId {
                                rep,
                                disease,
                                k,
                                combo,
                                kind,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The settings a run's result depends on (beyond its id), as pinned in
    /// experiment.json.
    pub fn settings(&self, seg: &Unet, seg_meta: &SegMeta, data: &Dataset) -> Value {
        let mut v = json!({
            "negatives_train": self.negatives_train,
            "negatives_test": self.negatives_test,
            "pool": self.pool,
            "positives_test": self.positives_test,
            "seed": self.seed,
            "classifier": {
                "width": self.width,
                "fc": self.fc,
                "size": self.size,
                "batch": self.train.batch,
                "batches_per_epoch": self.train.batches_per_epoch,
                "epochs": self.train.epochs,
                "lr": self.train.lr,
            },
            "segmentation": {
                "channels": seg.config.channels,
                "labels": seg.config.labels,
                "size": seg.config.size,
                "steps": seg_meta.steps,
                "train_data": seg_meta.data,
                "sha256": seg_meta.sha256,
            },
            "data": data.source,
        });
        // Written only when they are not the defaults, so that experiments pinned before
        // the options existed (split by image, standardised inputs) still resume.
        if self.split != SplitBy::Image {
            v["split"] = json!(self.split.name());
        }
        if !self.train.standardise {
            v["classifier"]["standardise"] = json!(false);
        }
        if !self.train.augment.is_identity() {
            v["classifier"]["augment"] = json!(self.train.augment.describe());
        }
        if !self.classes.is_empty() {
            v["classes"] = json!(self.classes.iter().map(|c| c.name()).collect::<Vec<_>>());
        }
        if self.classifiers.contains(&ClassifierKind::VggReg) {
            v["vgg_reg"] = json!({
                "regularisation": self.regularised.reg.describe(),
                "augment": self.regularised.augment.describe(),
            });
        }
        if self.classifiers.contains(&ClassifierKind::Svm) {
            v["svm"] = json!({
                "pooling": "mean,max",
                "c_grid": svm::C_GRID.to_vec(),
                "folds": svm::FOLDS,
            });
        }
        v
    }
}

/// The images of an experiment: negatives, then each disease's positives, as indices into
/// the data set (and, in the same order, into the feature bank).
pub struct Cohort {
    pub negatives: Vec<usize>,
    /// (disease, its image indices).
    pub positives: Vec<(Group, Vec<usize>)>,
    /// Patients of the negatives.
    pub negative_patients: Vec<String>,
    /// Whether the data is the segmentation network's own (its training patients were
    /// excluded); when false, no patient could be excluded.
    pub excluded_seg_patients: bool,
    /// Name and patient of every image, in bank order (see [`Cohort::images`]).
    pub names: Vec<String>,
    pub patients: Vec<String>,
}

impl Cohort {
    /// Choose the images: negatives from normal patients the segmentation network did not
    /// see (when the data is the one it was trained on), every image of each disease.
    pub fn select(data: &Dataset, seg_meta: &SegMeta, p: &Protocol) -> Result<Cohort> {
        let same = data.source == seg_meta.data;
        let negatives: Vec<usize> = (0..data.samples.len())
            .filter(|&i| {
                let s = &data.samples[i];
                s.group == Group::Normal && !(same && seg_meta.patients.contains(&s.patient))
            })
            .collect();
        let mut negative_patients: Vec<String> = Vec::new();
        for &i in &negatives {
            let pt = &data.samples[i].patient;
            if !negative_patients.contains(pt) {
                negative_patients.push(pt.clone());
            }
        }
        let need = p.negatives_train + p.negatives_test;
        if negatives.len() < need {
            bail!(
                "the protocol needs {need} negative images ({} to train, {} to test) but the data has {} normal images from {} patients outside the segmentation network's training set: lower --negatives-train/--negatives-test or add normal patients",
                p.negatives_train,
                p.negatives_test,
                negatives.len(),
                negative_patients.len()
            );
        }
        let mut positives = Vec::new();
        for &d in &p.diseases {
            let idx: Vec<usize> = (0..data.samples.len())
                .filter(|&i| data.samples[i].group == d)
                .collect();
            if idx.is_empty() {
                let mut groups: Vec<&str> = Vec::new();
                for s in &data.samples {
                    if s.group != Group::Normal && !groups.contains(&s.group.name()) {
                        groups.push(s.group.name());
                    }
                }
                bail!(
                    "unknown disease '{}': no image of the data belongs to it (its diseases: {})",
                    d.name(),
                    if groups.is_empty() {
                        "none".to_string()
                    } else {
                        groups.join(", ")
                    }
                );
            }
            let need = p.pool + p.positives_test;
            if idx.len() < need {
                bail!(
                    "the protocol needs {need} images of {} ({} for the training pool, {} to test) but the data has {}: lower --pool/--positives-test",
                    d.name(),
                    p.pool,
                    p.positives_test,
                    idx.len()
                );
            }
            positives.push((d, idx));
        }
        let mut cohort = Cohort {
            negatives,
            positives,
            negative_patients,
            excluded_seg_patients: same,
            names: Vec::new(),
            patients: Vec::new(),
        };
        for i in cohort.images() {
            cohort.names.push(data.samples[i].name.clone());
            cohort.patients.push(data.samples[i].patient.clone());
        }
        if p.split == SplitBy::Patient {
            // Every repetition's split must be possible; find out now, not at run 500.
            for rep in 0..p.reps {
                for &disease in &p.diseases {
                    let r = RunId {
                        rep,
                        disease,
                        k: 1,
                        combo: Combo::Img,
                        kind: ClassifierKind::Vgg,
                    };
                    cohort.split(p, &r)?;
                }
            }
        }
        Ok(cohort)
    }

    /// Every image index, in bank order.
    pub fn images(&self) -> Vec<usize> {
        let mut v = self.negatives.clone();
        for (_, idx) in &self.positives {
            v.extend(idx);
        }
        v
    }

    /// Bank positions of (training images, their labels, test images, their labels) for
    /// run `r`, with the split seed.
    pub fn split(&self, p: &Protocol, r: &RunId) -> Result<Split> {
        let split_seed = mix(&[p.seed, r.rep as u64]);
        if !p.classes.is_empty() {
            return self.split_classes(p, r, split_seed);
        }
        let (neg_train, neg_test) = self.negatives_split(p, r, split_seed)?;
        let (pool, pos_test) = self.positives_split(p, r, r.disease, split_seed)?;
        let mut train: Vec<usize> = pool[..r.k].to_vec();
        let mut train_y = vec![1u8; r.k];
        train.extend(&neg_train);
        train_y.extend(std::iter::repeat_n(0u8, neg_train.len()));
        let mut test = pos_test;
        let mut test_y = vec![1u8; test.len()];
        test.extend(&neg_test);
        test_y.extend(std::iter::repeat_n(0u8, neg_test.len()));
        Ok(Split {
            train,
            train_y,
            test,
            test_y,
            seed: split_seed,
        })
    }

    /// A multi-class run's split: class c's images labelled c, in class order; each
    /// disease's images drawn exactly as its two-class runs draw them (k of its pool to
    /// train, its test images to test), normal's as the negatives are.
    fn split_classes(&self, p: &Protocol, r: &RunId, split_seed: u64) -> Result<Split> {
        let (mut train, mut train_y, mut test, mut test_y) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (c, &class) in p.classes.iter().enumerate() {
            let (tr, te) = if class == Group::Normal {
                self.negatives_split(p, r, split_seed)?
            } else {
                let (pool, te) = self.positives_split(p, r, class, split_seed)?;
                (pool[..r.k].to_vec(), te)
            };
            train_y.extend(std::iter::repeat_n(c as u8, tr.len()));
            test_y.extend(std::iter::repeat_n(c as u8, te.len()));
            train.extend(tr);
            test.extend(te);
        }
        Ok(Split {
            train,
            train_y,
            test,
            test_y,
            seed: split_seed,
        })
    }

    /// The negatives of a repetition: (training, test) bank positions.
    fn negatives_split(
        &self,
        p: &Protocol,
        r: &RunId,
        split_seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let neg: Vec<usize> = (0..self.negatives.len()).collect();
        let want = (p.negatives_train, p.negatives_test);
        let seed = mix(&[split_seed, 0]);
        self.two_sides(p.split, neg, seed, want, false, "normal", r.rep)
    }

    /// A disease's images in a repetition: (training pool, test) bank positions.
    fn positives_split(
        &self,
        p: &Protocol,
        r: &RunId,
        disease: Group,
        split_seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut offset = self.negatives.len();
        let mut pos = Vec::new();
        let mut code = 0;
        for (d, idx) in &self.positives {
            if *d == disease {
                pos = (offset..offset + idx.len()).collect();
                code = disease_code(*d);
                break;
            }
            offset += idx.len();
        }
        let want = (p.pool, p.positives_test);
        let seed = mix(&[split_seed, code]);
        self.two_sides(p.split, pos, seed, want, true, disease.name(), r.rep)
    }

    /// `items` split into sides of `want.0` and `want.1` with a generator seeded by
    /// `seed`: shuffled images, or whole patients (see [`Cohort::by_patient`]).
    #[allow(clippy::too_many_arguments)]
    fn two_sides(
        &self,
        split: SplitBy,
        mut items: Vec<usize>,
        seed: u64,
        want: (usize, usize),
        interleave: bool,
        what: &str,
        rep: usize,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let r = &mut rng(seed);
        match split {
            SplitBy::Image => {
                items.shuffle(r);
                Ok((
                    items[..want.0].to_vec(),
                    items[want.0..want.0 + want.1].to_vec(),
                ))
            }
            SplitBy::Patient => self.by_patient(&items, r, want, interleave, what, rep),
        }
    }

    /// Split the bank positions `items` by patient: patients in a random order, whole
    /// patients to the first side until it has `want.0` images, then whole patients to the
    /// second until it has `want.1`; images of a patient beyond a side's count are used on
    /// neither. With `interleave`, the first side lists one image of each of its patients
    /// before a second image of any.
    fn by_patient(
        &self,
        items: &[usize],
        rng: &mut impl rand::Rng,
        want: (usize, usize),
        interleave: bool,
        what: &str,
        rep: usize,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut order: Vec<&str> = Vec::new();
        for &i in items {
            let pt = self.patients[i].as_str();
            match order.iter().position(|&o| o == pt) {
                Some(g) => groups[g].push(i),
                None => {
                    order.push(pt);
                    groups.push(vec![i]);
                }
            }
        }
        groups.shuffle(rng);
        for g in &mut groups {
            g.shuffle(rng);
        }
        let mut next = 0;
        let mut side = |n: usize| -> Option<Vec<Vec<usize>>> {
            let mut taken = Vec::new();
            let mut count = 0;
            while count < n {
                let g = groups.get(next)?;
                count += g.len();
                taken.push(g.clone());
                next += 1;
            }
            Some(taken)
        };
        let short = |side: &str, n: usize| {
            Error(format!(
                "splitting by patient, repetition {} cannot find whole {what} patients for {n} {side} images ({} images from {} patients, {} + {} wanted): lower the counts, add patients, or use --split image",
                rep + 1,
                items.len(),
                order.len(),
                want.0,
                want.1
            ))
        };
        let first = side(want.0).ok_or_else(|| short("training", want.0))?;
        let second = side(want.1).ok_or_else(|| short("test", want.1))?;
        let flat = |gs: Vec<Vec<usize>>, n: usize, interleave: bool| -> Vec<usize> {
            let mut out = Vec::new();
            if interleave {
                let longest = gs.iter().map(Vec::len).max().unwrap_or(0);
                for j in 0..longest {
                    out.extend(gs.iter().filter_map(|g| g.get(j)));
                }
            } else {
                out = gs.concat();
            }
            out.truncate(n);
            out
        };
        Ok((flat(first, want.0, interleave), flat(second, want.1, false)))
    }
}

/// One run's images: bank positions and labels (1 = diseased) of the training and test
/// images, and the repetition's split seed.
pub struct Split {
    pub train: Vec<usize>,
    pub train_y: Vec<u8>,
    pub test: Vec<usize>,
    pub test_y: Vec<u8>,
    pub seed: u64,
}

/// The first value that occurs twice in `v`.
fn first_repeat<T: PartialEq + Copy>(v: &[T]) -> Option<T> {
    v.iter()
        .enumerate()
        .find(|(i, x)| v[..*i].contains(x))
        .map(|(_, &x)| x)
}

/// The JSONL file this process appends to.
pub fn runs_file(out: &Path, shard: Option<Shard>) -> PathBuf {
    match shard {
        Some(s) => out.join(format!("runs.{}-of-{}.jsonl", s.index, s.count)),
        None => out.join("runs.jsonl"),
    }
}

/// How [`run`] executes an experiment; nothing here changes a run's result.
#[derive(Clone, Copy, Debug)]
pub struct Execution {
    /// Only this shard's runs.
    pub shard: Option<Shard>,
    /// Runs trained at once, each on a device of its own opened on a thread of its own
    /// (see [`jobs::default_jobs`]). Each run's result is the same bits whatever the number.
    pub jobs: usize,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            shard: None,
            jobs: 1,
            progress: false,
        }
    }
}

/// Run (the missing runs of) an experiment into `out`, then write its report. Returns the
/// number of runs done by this call.
pub fn run(
    gpu: &Gpu,
    seg: &Unet,
    seg_meta: &SegMeta,
    data: &Dataset,
    p: &Protocol,
    out: &Path,
    exec: Execution,
) -> Result<usize> {
    p.validate()?;
    let seg_depth = seg.config.volume.as_ref().map(|v| v.depth);
    if data.depth != seg_depth {
        bail!(
            "the segmentation network takes {} but the data holds {}",
            crate::data::describe_depth(seg_depth),
            crate::data::describe_depth(data.depth)
        );
    }
    if data.size != seg.config.size {
        bail!(
            "the data is {}x{} but the segmentation network takes {}x{}",
            data.size,
            data.size,
            seg.config.size,
            seg.config.size
        );
    }
    if seg_meta.patients.is_empty() {
        bail!(
            "the segmentation model does not name its training patients, so its training images cannot be kept out of the test sets: retrain it with this version of segfeat"
        );
    }
    let cohort = Cohort::select(data, seg_meta, p)?;
    std::fs::create_dir_all(out)
        .map_err(|e| Error(format!("cannot create folder {}: {e}", out.display())))?;
    // One writer per records file, for the whole call (shards write files of their own).
    let path = runs_file(out, exec.shard);
    let _lock = crate::lock::acquire(&path, "an experiment's records")?;
    crate::nn::checkpoint::remove_dead_temporaries(out);
    pin_settings(out, &p.settings(seg, seg_meta, data))?;
    let done: HashSet<_> = report::read_runs(&[out.to_path_buf()])?
        .iter()
        .map(RunRecord::key)
        .collect();
    let todo: Vec<RunId> = p
        .runs()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| exec.shard.is_none_or(|s| i % s.count == s.index))
        .map(|(_, r)| r)
        .filter(|r| !done.contains(&r.key()))
        .collect();
    let note = if cohort.excluded_seg_patients {
        "patients outside the segmentation network's training set"
    } else {
        "patients of a data set other than the segmentation network's: none could be excluded"
    };
    eprintln!(
        "experiment in {}: {} negative images from {} {note}; {} runs to do{}",
        out.display(),
        cohort.negatives.len(),
        cohort.negative_patients.len(),
        todo.len(),
        if done.is_empty() {
            String::new()
        } else {
            format!(" ({} already in the JSONL)", done.len())
        }
    );
    if todo.is_empty() {
        report::write(&[out.to_path_buf()], out)?;
        return Ok(0);
    }

    // Features: once per image for the whole experiment.
    let images: Vec<&[f32]> = cohort
        .images()
        .iter()
        .map(|&i| data.samples[i].image.as_slice())
        .collect();
    let bar = progress_bar(exec.progress, images.len(), "features");
    let t0 = Instant::now();
    let bank = FeatureBank::compute(gpu, seg, &images, &p.combos, p.size, 10, |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    eprintln!(
        "features of {} images computed in {:.1} s ({:.0} MB on the host)",
        images.len(),
        t0.elapsed().as_secs_f64(),
        bank.bytes() as f64 / 1e6
    );

    repair_tail(&path, "run")?;
    let bar = progress_bar(exec.progress, todo.len(), "runs");
    let started = Instant::now();
    let jobs = exec.jobs.clamp(1, todo.len());
    if jobs > 1 {
        eprintln!("{jobs} runs at a time, each on a device of its own");
    }
    // A finished run: its JSONL line, its log line and the report, one run at a time (the
    // lock holds the count of runs finished).
    let finished = Mutex::new(0usize);
    let record = |rec: RunRecord, what: String| -> Result<()> {
        let mut n = finished
            .lock()
            .map_err(|_| Error("a worker thread panicked while recording a run".into()))?;
        *n += 1;
        append_line(&path, &rec.to_json())?;
        bar.inc(1);
        let left = started.elapsed().as_secs_f64() / *n as f64 * (todo.len() - *n) as f64;
        let scores = if rec.multi() {
            format!(
                "accuracy {} kappa {}",
                pct(rec.accuracy()),
                pct(rec.kappa())
            )
        } else {
            format!(
                "TPR {} TNR {} kappa {}",
                pct(rec.tpr()),
                pct(rec.tnr()),
                pct(rec.kappa())
            )
        };
        bar.suspend(|| {
            eprintln!(
                "run {}/{}: {what}: {scores} ({:.1} s; experiment left {})",
                *n,
                todo.len(),
                rec.seconds,
                crate::train::seg::hms(left)
            )
        });
        report::write(&[out.to_path_buf()], out).map(drop)
    };
    // The bar's message: the step and loss of every run in progress, by name.
    let live = Mutex::new(BTreeMap::<String, String>::new());
    let show = |what: &str, msg: Option<String>| {
        if let Ok(mut live) = live.lock() {
            match msg {
                Some(m) => live.insert(what.to_string(), m),
                None => live.remove(what),
            };
            bar.set_message(live.values().cloned().collect::<Vec<_>>().join(" | "));
        }
    };
    jobs::for_each(gpu, jobs, &todo, "runs", |gpu, r| {
        let (rec, what) = one_run(gpu, &cohort, &bank, p, r, &show)?;
        show(&what, None);
        record(rec, what)
    })?;
    bar.finish_and_clear();
    Ok(todo.len())
}

/// Train and test one run's classifier, telling `show` its progress: its record, and what
/// to call it in the log.
fn one_run(
    gpu: &Gpu,
    cohort: &Cohort,
    bank: &FeatureBank,
    p: &Protocol,
    r: &RunId,
    show: &dyn Fn(&str, Option<String>),
) -> Result<(RunRecord, String)> {
    let t0 = Instant::now();
    let steps = p.train.epochs * p.train.batches_per_epoch;
    let Split {
        train,
        train_y,
        test,
        test_y,
        seed: split_seed,
    } = cohort.split(p, r)?;
    let init_seed = init_seed(split_seed, r.k);
    let what = format!(
        "{} {} k={} rep {}",
        r.disease.name(),
        report::series_name(r.combo.name(), r.kind.name()),
        r.k,
        r.rep + 1
    );
    let mut last_loss = f32::NAN;
    let multi = !p.classes.is_empty();
    let mut probs_all = Vec::new();
    let probs = match r.kind {
        ClassifierKind::Svm => {
            show(&what, Some(format!("{what}: choosing C")));
            let model = svm::train(bank, r.combo, &train, &train_y, init_seed)?;
            last_loss = model.loss as f32;
            svm::predict(&model, bank, r.combo, &test)?
        }
        ClassifierKind::Vgg | ClassifierKind::VggReg => {
            let mut config = VggConfig::new(bank.channels(r.combo), p.size, p.width, p.fc)?;
            config.depth = bank.depth;
            if multi {
                config.classes = p.classes.len();
            }
            let mut opts = p.train.clone();
            if r.kind == ClassifierKind::VggReg {
                config.reg = p.regularised.reg;
                opts.augment = p.regularised.augment.clone();
            }
            let cls = cls::train(
                gpu,
                &config,
                bank,
                r.combo,
                &train,
                &train_y,
                &opts,
                init_seed,
                |s, loss| {
                    last_loss = loss;
                    show(
                        &what,
                        Some(format!("{what}: step {s}/{steps}, loss {loss:.4}")),
                    );
                },
            )?;
            if multi {
                probs_all = cls::predict_all(gpu, &cls, bank, &test, 10)?;
                Vec::new()
            } else {
                cls::predict(gpu, &cls, bank, &test, 10)?
            }
        }
    };
    let confusion = if multi {
        Confusion::default()
    } else {
        Confusion::from_pairs(
            test_y
                .iter()
                .zip(&probs)
                .map(|(&t, &pr)| (t == 1, pr > 0.5)),
        )
    };
    let test_names = test.iter().map(|&i| cohort.names[i].clone()).collect();
    let rec = RunRecord {
        disease: r.disease.name().to_string(),
        features: r.combo.name().to_string(),
        classifier: r.kind.name().to_string(),
        k: r.k,
        rep: r.rep,
        split_seed,
        init_seed,
        confusion,
        final_loss: last_loss as f64,
        seconds: t0.elapsed().as_secs_f64(),
        test: test_names,
        test_patients: test.iter().map(|&i| cohort.patients[i].clone()).collect(),
        test_y,
        probs,
        classes: p.classes.iter().map(|c| c.name().to_string()).collect(),
        probs_all,
    };
    Ok((rec, what))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.0}%", 100.0 * v))
}

fn progress_bar(progress: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    crate::train::progress_bar(
        progress,
        len,
        what.to_string(),
        // The time left before the message, which is cut to the terminal's width.
        "{prefix} [{bar:30}] {pos}/{len} (left {eta})  {wide_msg}",
    )
}

/// Write experiment.json, or check that the one there holds the same settings.
fn pin_settings(out: &Path, settings: &Value) -> Result<()> {
    let path = out.join("experiment.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
        let mut old: Value = serde_json::from_str(&text)
            .map_err(|e| Error(format!("{} is not valid JSON: {e}", path.display())))?;
        // Folders pinned before models were checksummed: the rest of the settings decide.
        if let Some(seg) = old.get_mut("segmentation").and_then(Value::as_object_mut) {
            if !seg.contains_key("sha256") {
                seg.insert("sha256".into(), settings["segmentation"]["sha256"].clone());
            }
        }
        if let Some(key) = first_difference(&old, settings, "") {
            if key == "segmentation.sha256" {
                bail!(
                    "{} holds an experiment on another segmentation model (its SHA-256 differs from the one recorded): use another --out, or the model it was run with",
                    out.display()
                );
            }
            bail!(
                "{} holds an experiment with other settings ({key} differs): use another --out, or remove the folder to start over",
                out.display()
            );
        }
        return Ok(());
    }
    write_atomic(&path, format!("{settings:#}\n").as_bytes())
}

fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in y {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match x.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(w, v, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(here),
                }
            }
            x.keys().find(|k| !y.contains_key(*k)).cloned()
        }
        _ if a == b => None,
        // Numbers written by an older run may differ only in representation (1 vs 1.0).
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ => Some(if at.is_empty() {
            "the settings".into()
        } else {
            at.to_string()
        }),
    }
}
