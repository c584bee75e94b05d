//! Reports of an experiment: read the JSONL runs of one or several folders (shards),
//! summarise them by (disease, combination, k) as mean and standard deviation over
//! repetitions, and write `summary.csv`, `paired.csv`, `predictions.csv`, `report.md` and
//! one figure per disease (`fig-<disease>.png` and `.svg`, with its data in `.csv`; like
//! the paper's Fig. 4: TPR, TNR, kappa and AUC against k, see [`plot`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::nn::checkpoint::write_atomic;
use crate::protocol::metrics::{self, auc, mean_std, Confusion, Paired};
use crate::protocol::plot;
use crate::train::features::Combo;
use crate::{bail, Error, Result};

/// One finished run, as a line of the JSONL file.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub disease: String,
    pub features: String,
    /// The classifier kind: `vgg` (the paper's), `vgg-reg` or `svm`; `vgg` in records
    /// written before kinds existed.
    pub classifier: String,
    pub k: usize,
    pub rep: usize,
    pub split_seed: u64,
    pub init_seed: u64,
    pub confusion: Confusion,
    pub final_loss: f64,
    pub seconds: f64,
    /// The test images by name, their truth (1 = diseased) and P(diseased) of each, in
    /// the same order; empty in records written before they were kept.
    pub test: Vec<String>,
    /// The patient of each test image (empty in records written before they were kept).
    pub test_patients: Vec<String>,
    /// The truth of each test image: 1 = diseased, or in a multi-class run the index of
    /// its class in `classes`.
    pub test_y: Vec<u8>,
    /// P(diseased) of each test image (two-class runs).
    pub probs: Vec<f32>,
    /// A multi-class run's classes, in output order (empty for two-class runs).
    pub classes: Vec<String>,
    /// A multi-class run's probabilities, a row of one per class for each test image.
    pub probs_all: Vec<Vec<f32>>,
}

impl RunRecord {
    /// Whether this is a multi-class run.
    pub fn multi(&self) -> bool {
        !self.classes.is_empty()
    }

    /// A multi-class run's confusion matrix: each test image's truth against its most
    /// probable class.
    pub fn matrix(&self) -> Option<metrics::MultiConfusion> {
        if !self.multi() || self.probs_all.len() != self.test_y.len() {
            return None;
        }
        let argmax =
            |p: &Vec<f32>| (0..p.len()).fold(0, |best, c| if p[c] > p[best] { c } else { best });
        Some(metrics::MultiConfusion::from_pairs(
            self.classes.len(),
            self.test_y
                .iter()
                .zip(&self.probs_all)
                .map(|(&t, p)| (t as usize, argmax(p))),
        ))
    }

    /// TPR of a two-class run (None for multi-class runs).
    pub fn tpr(&self) -> Option<f64> {
        (!self.multi()).then(|| self.confusion.tpr()).flatten()
    }

    /// TNR of a two-class run (None for multi-class runs).
    pub fn tnr(&self) -> Option<f64> {
        (!self.multi()).then(|| self.confusion.tnr()).flatten()
    }

    /// Cohen's kappa: two-class, or over all classes of a multi-class run.
    pub fn kappa(&self) -> Option<f64> {
        match self.matrix() {
            Some(m) => m.kappa(),
            None if self.multi() => None,
            None => self.confusion.kappa(),
        }
    }

    /// Accuracy: the fraction of test images given their true class.
    pub fn accuracy(&self) -> Option<f64> {
        match self.matrix() {
            Some(m) => m.accuracy(),
            None if self.multi() => None,
            None => {
                let c = &self.confusion;
                let n = c.total();
                (n > 0).then(|| (c.tp + c.tn) as f64 / n as f64)
            }
        }
    }

    /// Area under the ROC curve of the test probabilities (None without them); for a
    /// multi-class run the mean of the classes' one-vs-rest AUCs.
    pub fn auc(&self) -> Option<f64> {
        if self.multi() {
            if self.probs_all.len() != self.test_y.len() {
                return None;
            }
            return metrics::macro_auc(&self.test_y, &self.probs_all);
        }
        if self.probs.is_empty() || self.probs.len() != self.test_y.len() {
            return None;
        }
        auc(self
            .test_y
            .iter()
            .zip(&self.probs)
            .map(|(&t, &p)| (t == 1, p as f64)))
    }

    /// The series of tables and figures: the combination for the paper's VGG, else
    /// `combination:kind` (`concat:svm`).
    pub fn series(&self) -> String {
        series_name(&self.features, &self.classifier)
    }

    pub fn key(&self) -> (String, String, usize, usize) {
        (self.disease.clone(), self.series(), self.k, self.rep)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "disease": self.disease,
            "features": self.features,
            "classifier": self.classifier,
            "k": self.k,
            "rep": self.rep,
            "split_seed": self.split_seed,
            "init_seed": self.init_seed,
            "kappa": self.kappa(),
            "auc": self.auc(),
            "final_loss": self.final_loss,
            "seconds": self.seconds,
            "test": self.test,
            "test_patients": self.test_patients,
            "test_y": self.test_y,
        });
        let extra = if self.multi() {
            let m = self.matrix();
            let per_class = |f: fn(&metrics::MultiConfusion, usize) -> Option<f64>| {
                m.as_ref()
                    .map(|m| (0..self.classes.len()).map(|c| f(m, c)).collect::<Vec<_>>())
            };
            json!({
                "classes": self.classes,
                "confusion": m.as_ref().map(|m| m.counts.clone()),
                "accuracy": self.accuracy(),
                "recall": per_class(metrics::MultiConfusion::recall),
                "precision": per_class(metrics::MultiConfusion::precision),
                "probs_all": self.probs_all,
            })
        } else {
            let c = &self.confusion;
            json!({
                "tpr": c.tpr(),
                "tnr": c.tnr(),
                "tp": c.tp,
                "fn": c.fn_,
                "tn": c.tn,
                "fp": c.fp,
                "probs": self.probs,
            })
        };
        if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
            base.extend(more);
        }
        v
    }

    /// Parse a JSONL line; the metrics are recomputed from the confusion counts.
    pub fn from_json(v: &Value) -> std::result::Result<RunRecord, String> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("missing text field '{k}'"))
        };
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or(format!("missing whole-number field '{k}'"))
        };
        let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let classes: Vec<String> = match v.get("classes") {
            None => Vec::new(),
            Some(c) => c
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                .ok_or("field 'classes' must be a list of class names")?,
        };
        let multi = !classes.is_empty();
        // The largest truth a test image may have: 1 (diseased), or the last class.
        let max_y = if multi { classes.len() as u64 - 1 } else { 1 };
        Ok(RunRecord {
            disease: s("disease")?,
            features: s("features")?,
            classifier: match v.get("classifier") {
                None => "vgg".to_string(),
                Some(c) => c
                    .as_str()
                    .ok_or("field 'classifier' must be text")?
                    .to_string(),
            },
            k: n("k")? as usize,
            rep: n("rep")? as usize,
            split_seed: n("split_seed")?,
            init_seed: n("init_seed")?,
            confusion: if multi {
                Confusion::default()
            } else {
                Confusion {
                    tp: n("tp")?,
                    fn_: n("fn")?,
                    tn: n("tn")?,
                    fp: n("fp")?,
                }
            },
            final_loss: f("final_loss"),
            seconds: f("seconds"),
            test: match v.get("test") {
                None => Vec::new(),
                Some(t) => t
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                    .ok_or("field 'test' must be a list of image names")?,
            },
            test_patients: match v.get("test_patients") {
                None => Vec::new(),
                Some(t) => t
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                    .ok_or("field 'test_patients' must be a list of patient ids")?,
            },
            test_y: match v.get("test_y") {
                None => Vec::new(),
                Some(t) => t
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|x| x.as_u64().filter(|&y| y <= max_y).map(|y| y as u8))
                            .collect()
                    })
                    .ok_or(
                        "field 'test_y' must be a list of class indices (0 and 1 for two classes)",
                    )?,
            },
            probs: match v.get("probs") {
                None => Vec::new(),
                Some(t) => t
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_f64().map(|p| p as f32)).collect())
                    .ok_or("field 'probs' must be a list of numbers")?,
            },
            probs_all: match v.get("probs_all") {
                None => Vec::new(),
                Some(t) => t
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|row| {
                                row.as_array()
                                    .filter(|r| r.len() == classes.len())?
                                    .iter()
                                    .map(|x| x.as_f64().map(|p| p as f32))
                                    .collect::<Option<Vec<f32>>>()
                            })
                            .collect()
                    })
                    .ok_or(
                        "field 'probs_all' must hold one probability per class for each test image",
                    )?,
            },
            classes,
        })
    }
}

/// The JSONL files of a folder: `runs.jsonl` and the shards' `runs.I-of-K.jsonl`.
pub fn run_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error(format!("cannot read folder {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("runs") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every run recorded in the folders. A run found twice (the same disease, combination, k
/// and repetition) is kept once. A line that does not parse is an error naming its file
/// and line, except a last line without its newline (a run interrupted while writing),
/// which is skipped.
pub fn read_runs(dirs: &[PathBuf]) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        if !dir.is_dir() {
            bail!("{} is not a folder of experiment results", dir.display());
        }
        for file in run_files(dir)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error(format!("cannot read {}: {e}", file.display())))?;
            let complete = text.ends_with('\n');
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<Value>(line)
                    .map_err(|e| e.to_string())
                    .and_then(|v| RunRecord::from_json(&v));
                match parsed {
                    Ok(r) => {
                        if seen.insert(r.key()) {
                            out.push(r);
                        }
                    }
                    Err(_) if i + 1 == lines.len() && !complete => {}
                    Err(e) => bail!("{} line {}: not a run record: {e}", file.display(), i + 1),
                }
            }
        }
    }
    Ok(out)
}

/// Mean and standard deviation over repetitions of one (disease, combination, k).
#[derive(Clone, Debug)]
pub struct Row {
    pub disease: String,
    pub features: String,
    pub k: usize,
    pub reps: usize,
    pub tpr: Option<(f64, f64, usize)>,
    pub tnr: Option<(f64, f64, usize)>,
    pub kappa: Option<(f64, f64, usize)>,
    pub auc: Option<(f64, f64, usize)>,
    /// Bootstrap 95% intervals of the means over repetitions (TPR, TNR, kappa, AUC, accuracy),
    /// seeded by the cell, so a report reproduces them (see [`metrics::mean_ci`]).
    pub ci: [Option<(f64, f64)>; 5],
    /// Accuracy (the only rate of a multi-class task besides kappa and AUC).
    pub accuracy: Option<(f64, f64, usize)>,
    /// Median final training loss over the repetitions.
    pub loss: Option<f64>,
}

/// The classifier kinds in table order (`vgg` is the paper's).
pub const KINDS: [&str; 3] = ["vgg", "vgg-reg", "svm"];

/// A series' name: the combination for the paper's VGG, else `combination:kind`.
pub fn series_name(features: &str, classifier: &str) -> String {
    if classifier == "vgg" {
        features.to_string()
    } else {
        format!("{features}:{classifier}")
    }
}

/// (combination, kind) of a series name.
fn split_series(series: &str) -> (&str, &str) {
    series.split_once(':').unwrap_or((series, "vgg"))
}

/// Order of series in tables and figures: by kind (the paper's first), then the paper's
/// order of combinations, then any other name.
fn combo_rank(series: &str) -> usize {
    let (combo, kind) = split_series(series);
    let c = Combo::ALL
        .iter()
        .position(|c| c.name() == combo)
        .unwrap_or(Combo::ALL.len());
    let k = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
    k * (Combo::ALL.len() + 1) + c
}

type Metric = fn(&RunRecord) -> Option<f64>;

/// The metrics of a run that the summary's intervals cover, in [`Row::ci`]'s order.
const METRICS: [(&str, Metric); 5] = [
    ("tpr", |r| r.tpr()),
    ("tnr", |r| r.tnr()),
    ("kappa", |r| r.kappa()),
    ("auc", |r| r.auc()),
    ("accuracy", |r| r.accuracy()),
];

/// The runs grouped by (disease, combination, k), in a stable order.
pub fn summarise(runs: &[RunRecord]) -> Vec<Row> {
    let mut groups: BTreeMap<(String, usize, String, usize), Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        let series = r.series();
        groups
            .entry((r.disease.clone(), combo_rank(&series), series, r.k))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((disease, _, features, k), rs)| Row {
            ci: METRICS.map(|(m, f)| {
                metrics::mean_ci(
                    rs.iter().map(|r| f(r)),
                    &format!("{disease}/{features}/{k}/{m}"),
                )
            }),
            disease,
            features,
            k,
            reps: rs.len(),
            tpr: mean_std(rs.iter().map(|r| r.tpr())),
            tnr: mean_std(rs.iter().map(|r| r.tnr())),
            kappa: mean_std(rs.iter().map(|r| r.kappa())),
            auc: mean_std(rs.iter().map(|r| r.auc())),
            accuracy: mean_std(rs.iter().map(|r| r.accuracy())),
            loss: median(rs.iter().map(|r| r.final_loss).filter(|l| l.is_finite())),
        })
        .collect()
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// A disease's rows, its combinations in table order and its k in increasing order.
fn layout<'a>(rows: &'a [Row], disease: &str) -> (Vec<&'a Row>, Vec<String>, Vec<usize>) {
    let dr: Vec<&Row> = rows.iter().filter(|r| r.disease == disease).collect();
    let mut combos: Vec<String> = Vec::new();
    let mut ks: Vec<usize> = Vec::new();
    for r in &dr {
        if !combos.contains(&r.features) {
            combos.push(r.features.clone());
        }
        if !ks.contains(&r.k) {
            ks.push(r.k);
        }
    }
    ks.sort();
    (dr, combos, ks)
}

/// One combination against a baseline at one (disease, k), paired by repetition.
#[derive(Clone, Debug)]
pub struct PairedRow {
    pub disease: String,
    pub features: String,
    pub baseline: String,
    /// The k, or None for the pool of every k in `pooled_ks` (per repetition, the mean
    /// difference over those k).
    pub k: Option<usize>,
    pub kappa: Option<Paired>,
    pub auc: Option<Paired>,
    pub tpr: Option<Paired>,
}

/// The values of k pooled into the "few positives" row of the paired tables.
pub const FEW: [usize; 4] = [1, 2, 3, 5];

/// Every series of the same classifier kind as `baseline` (other than it) against it,
/// per disease and k and pooled over the k of [`FEW`] present, paired by repetition (only
/// repetitions where both have a defined value count). Bootstrap seeds are fixed per
/// cell, so the table is the same every time it is written.
pub fn paired(runs: &[RunRecord], baseline: &str) -> Vec<PairedRow> {
    let kind = split_series(baseline).1;
    paired_by(runs, |series| {
        (series != baseline && split_series(series).1 == kind).then(|| baseline.to_string())
    })
}

/// Every series of another kind than the paper's VGG against the paper's VGG on the same
/// combination (`concat:svm` against `concat`).
pub fn paired_kinds(runs: &[RunRecord]) -> Vec<PairedRow> {
    paired_by(runs, |series| {
        let (combo, kind) = split_series(series);
        (kind != "vgg").then(|| combo.to_string())
    })
}

/// Each series against the baseline `baseline_of` names for it (None: not compared).
fn paired_by(runs: &[RunRecord], baseline_of: impl Fn(&str) -> Option<String>) -> Vec<PairedRow> {
    type Key = (String, String, usize, usize);
    let by: HashMap<Key, &RunRecord> = runs.iter().map(|r| (r.key(), r)).collect();
    let rows = summarise(runs);
    let mut out = Vec::new();
    let mut diseases: Vec<String> = rows.iter().map(|r| r.disease.clone()).collect();
    diseases.dedup();
    for disease in &diseases {
        let (_, combos, ks) = layout(&rows, disease);
        let reps: Vec<usize> = {
            let mut v: Vec<usize> = runs
                .iter()
                .filter(|r| &r.disease == disease)
                .map(|r| r.rep)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        // d_r for one metric at the given k's (averaged over them within a repetition;
        // a repetition counts only when every one of those k has both values).
        let diffs = |c: &str,
                     baseline: &str,
                     kk: &[usize],
                     pick: fn(&RunRecord) -> Option<f64>|
         -> Vec<f64> {
            reps.iter()
                .filter_map(|&rep| {
                    let mut sum = 0.0;
                    for &k in kk {
                        let key = |f: &str| (disease.clone(), f.to_string(), k, rep);
                        let a = pick(by.get(&key(baseline))?)?;
                        let b = pick(by.get(&key(c))?)?;
                        sum += b - a;
                    }
                    Some(sum / kk.len() as f64)
                })
                .collect()
        };
        let few: Vec<usize> = FEW.iter().copied().filter(|k| ks.contains(k)).collect();
        let mut cells: Vec<(Option<usize>, Vec<usize>)> =
            ks.iter().map(|&k| (Some(k), vec![k])).collect();
        if few.len() > 1 {
            cells.push((None, few));
        }
        for c in &combos {
            let Some(baseline) = baseline_of(c).filter(|b| combos.contains(b)) else {
                continue;
            };
            for (k, kk) in &cells {
                let seed = |m: u64| {
                    let mut h = m ^ ((k.unwrap_or(0) as u64) << 8);
                    for b in disease.bytes().chain(c.bytes()) {
                        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
                    }
                    // The paper's comparison (against IMG) keeps its seeds; others mix
                    // in their baseline.
                    if baseline != Combo::Img.name() {
                        for b in baseline.bytes() {
                            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
                        }
                    }
                    h
                };
                out.push(PairedRow {
                    disease: disease.clone(),
                    features: c.clone(),
                    baseline: baseline.clone(),
                    k: *k,
                    kappa: Paired::of(&diffs(c, &baseline, kk, |r| r.kappa()), seed(1)),
                    auc: Paired::of(&diffs(c, &baseline, kk, RunRecord::auc), seed(2)),
                    tpr: Paired::of(&diffs(c, &baseline, kk, |r| r.tpr()), seed(3)),
                });
            }
        }
    }
    out
}

fn csv_cell(v: Option<(f64, f64, usize)>) -> String {
    v.map_or(",".into(), |(m, s, _)| format!("{m:.4},{s:.4}"))
}

fn md_cell(v: Option<(f64, f64, usize)>) -> String {
    v.map_or("n/a".into(), |(m, s, _)| {
        format!("{:.0} ± {:.0}", 100.0 * m, 100.0 * s)
    })
}

/// A Markdown table's title, header row (k, then one column per combination) and rule.
fn table_head(md: &mut String, title: &str, combos: &[String]) {
    md.push_str(&format!("\n{title}\n\n| k |"));
    for c in combos {
        md.push_str(&format!(" {} |", c.to_ascii_uppercase()));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(combos.len()));
    md.push('\n');
}

fn paired_cell(v: Option<Paired>) -> String {
    v.map_or("n/a".into(), |v| {
        format!(
            "{:+.0} [{:+.0}, {:+.0}], {}",
            100.0 * v.mean,
            100.0 * v.lo,
            100.0 * v.hi,
            if v.p < 0.001 {
                "p<0.001".to_string()
            } else {
                format!("p={:.3}", v.p)
            }
        )
    })
}

/// Every test image's prediction of every run, one row each (for ROC curves, other
/// thresholds, per-patient analyses): the run, the image, its patient, the truth (1 =
/// diseased) and P(diseased).
pub fn predictions_csv(runs: &[RunRecord]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut rows: Vec<&RunRecord> = runs.iter().collect();
    rows.sort_by_key(|r| (r.disease.clone(), combo_rank(&r.series()), r.k, r.rep));
    let _ = w.write_record([
        "disease",
        "features",
        "classifier",
        "k",
        "rep",
        "image",
        "patient",
        "truth",
        "p",
        "class_probs",
    ]);
    for r in rows {
        for (i, name) in r.test.iter().enumerate() {
            let Some(y) = r.test_y.get(i) else {
                continue;
            };
            // Two classes: P(diseased). More: every class's probability, in the order of
            // the task's name (`normal+effusion+septal`), and no single p.
            let (p, all) = if r.multi() {
                let Some(row) = r.probs_all.get(i) else {
                    continue;
                };
                let all: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
                (String::new(), all.join(";"))
            } else {
                let Some(p) = r.probs.get(i) else {
                    continue;
                };
                (format!("{p}"), String::new())
            };
            let _ = w.write_record([
                r.disease.as_str(),
                r.features.as_str(),
                r.classifier.as_str(),
                &r.k.to_string(),
                &r.rep.to_string(),
                name,
                r.test_patients.get(i).map_or("", String::as_str),
                &y.to_string(),
                &p,
                &all,
            ]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A multi-class task's classes, and for each combination its confusion matrix summed
/// over repetitions at the largest k with the classes' recall and precision.
fn multi_class_notes(runs: &[&RunRecord], combos: &[String], ks: &[usize]) -> String {
    let Some(classes) = runs.iter().find(|r| r.multi()).map(|r| r.classes.clone()) else {
        return String::new();
    };
    let k = ks.iter().copied().max().unwrap_or(0);
    let mut md = format!(
        "\nA multi-class task: classes {} (each test image is given its most probable class). Confusion matrices at k = {k}, summed over repetitions (rows: truth, columns: predicted), with each class's recall and precision:\n",
        classes.join(", ")
    );
    for c in combos {
        let mut sum = metrics::MultiConfusion {
            counts: vec![vec![0; classes.len()]; classes.len()],
        };
        for r in runs.iter().filter(|r| r.series() == *c && r.k == k) {
            if let Some(m) = r.matrix() {
                for (row, mrow) in sum.counts.iter_mut().zip(&m.counts) {
                    for (a, b) in row.iter_mut().zip(mrow) {
                        *a += b;
                    }
                }
            }
        }
        md.push_str(&format!(
            "\n{}:\n\n| truth \\ predicted | {} | recall |\n|---|{}---|\n",
            c.to_ascii_uppercase(),
            classes.join(" | "),
            "---|".repeat(classes.len())
        ));
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.0}%", 100.0 * v));
        for (i, name) in classes.iter().enumerate() {
            let cells: Vec<String> = sum.counts[i].iter().map(u64::to_string).collect();
            md.push_str(&format!(
                "| {name} | {} | {} |\n",
                cells.join(" | "),
                pct(sum.recall(i))
            ));
        }
        let prec: Vec<String> = (0..classes.len()).map(|i| pct(sum.precision(i))).collect();
        md.push_str(&format!("| precision | {} | |\n", prec.join(" | ")));
    }
    md
}

/// Write summary.csv, paired.csv, predictions.csv, report.md and the figures into `out`
/// from the runs in `dirs`.
/// Returns the Markdown.
pub fn write(dirs: &[PathBuf], out: &Path) -> Result<String> {
    let runs = read_runs(dirs)?;
    let rows = summarise(&runs);
    std::fs::create_dir_all(out)
        .map_err(|e| Error(format!("cannot create folder {}: {e}", out.display())))?;

    let mut csv = String::from(
        "disease,features,k,reps,tpr_mean,tpr_std,tnr_mean,tnr_std,kappa_mean,kappa_std,auc_mean,auc_std,median_final_loss,tpr_ci_lo,tpr_ci_hi,tnr_ci_lo,tnr_ci_hi,kappa_ci_lo,kappa_ci_hi,auc_ci_lo,auc_ci_hi,accuracy_mean,accuracy_std,accuracy_ci_lo,accuracy_ci_hi\n",
    );
    for r in &rows {
        let ci: Vec<String> =
            r.ci.iter()
                .map(|c| c.map_or(",".into(), |(lo, hi)| format!("{lo:.4},{hi:.4}")))
                .collect();
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.disease,
            r.features,
            r.k,
            r.reps,
            csv_cell(r.tpr),
            csv_cell(r.tnr),
            csv_cell(r.kappa),
            csv_cell(r.auc),
            r.loss.map_or(String::new(), |l| format!("{l:.4}")),
            ci[..4].join(","),
            csv_cell(r.accuracy),
            ci[4]
        ));
    }
    write_atomic(&out.join("summary.csv"), csv.as_bytes())?;
    write_atomic(
        &out.join("predictions.csv"),
        predictions_csv(&runs).as_bytes(),
    )?;
    // Each kind's combinations against its own IMG, then each kind against the paper's
    // VGG on the same combination.
    let mut pairs = Vec::new();
    for kind in KINDS {
        pairs.extend(paired(&runs, &series_name(Combo::Img.name(), kind)));
    }
    pairs.extend(paired_kinds(&runs));
    let mut pcsv = String::from("disease,features,baseline,k,metric,n,mean_diff,ci_lo,ci_hi,p\n");
    for r in &pairs {
        for (metric, v) in [("kappa", r.kappa), ("auc", r.auc), ("tpr", r.tpr)] {
            if let Some(v) = v {
                pcsv.push_str(&format!(
                    "{},{},{},{},{metric},{},{:.4},{:.4},{:.4},{:.4}\n",
                    r.disease,
                    r.features,
                    r.baseline,
                    r.k.map_or("few".to_string(), |k| k.to_string()),
                    v.n,
                    v.mean,
                    v.lo,
                    v.hi,
                    v.p
                ));
            }
        }
    }
    write_atomic(&out.join("paired.csv"), pcsv.as_bytes())?;

    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    let mut md = String::from("# Disease detection from segmentation features\n\n");
    md.push_str(&format!(
        "{} classifier runs from {} ({:.0} s of training and testing in all). Each cell is the mean ± standard deviation over repetitions, in percent; kappa is Cohen's (a test image is called diseased when P > 0.5); AUC is the area under the ROC curve of the test probabilities, free of that threshold. Columns are feature combinations, rows the number k of positive training images. The paired tables compare each combination with IMG run by run (same split, same initial-weight seed): the mean difference, its bootstrap 95% confidence interval and the exact sign-flip permutation p-value; `few` pools k = 1, 2, 3, 5 (per repetition, the mean difference over them).\n",
        runs.len(),
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        seconds
    ));
    let mut diseases: Vec<String> = rows.iter().map(|r| r.disease.clone()).collect();
    diseases.dedup();
    for disease in &diseases {
        let (dr, combos, ks) = layout(&rows, disease);
        let cell: HashMap<(&str, usize), &Row> = dr
            .iter()
            .map(|r| ((r.features.as_str(), r.k), *r))
            .collect();
        md.push_str(&format!(
            "\n## {disease}\n\n![{disease}](fig-{disease}.png)\n\n(Also as `fig-{disease}.svg`; its data in `fig-{disease}.csv`.)\n"
        ));
        // A multi-class task (its runs record their classes) has no TPR or TNR: its
        // tables are accuracy, kappa over all classes and the mean one-vs-rest AUC.
        let task_runs: Vec<&RunRecord> = runs.iter().filter(|r| &r.disease == disease).collect();
        let multi = task_runs.iter().any(|r| r.multi());
        if multi {
            md.push_str(&multi_class_notes(&task_runs, &combos, &ks));
        }
        type Pick = fn(&Row) -> Option<(f64, f64, usize)>;
        let metrics: Vec<(&str, Pick)> = if multi {
            vec![
                ("Accuracy (%)", |r| r.accuracy),
                ("Cohen's kappa over all classes (%)", |r| r.kappa),
                ("AUC, mean of the classes' one-vs-rest AUCs (%)", |r| r.auc),
            ]
        } else {
            vec![
                ("True-positive rate (%)", |r| r.tpr),
                ("True-negative rate (%)", |r| r.tnr),
                ("Cohen's kappa (%)", |r| r.kappa),
                ("AUC (%)", |r| r.auc),
            ]
        };
        for (title, pick) in metrics {
            table_head(&mut md, title, &combos);
            for &k in &ks {
                md.push_str(&format!("| {k} |"));
                for c in &combos {
                    let v = cell.get(&(c.as_str(), k)).and_then(|r| pick(r));
                    md.push_str(&format!(" {} |", md_cell(v)));
                }
                md.push('\n');
            }
        }
        // The intervals of kappa and AUC: bootstrap over repetitions, seeded by the cell.
        for (title, i) in [("Cohen's kappa", 2), ("AUC", 3)] {
            table_head(
                &mut md,
                &format!(
                    "{title}, 95% confidence interval of the mean over repetitions (%, bootstrap)"
                ),
                &combos,
            );
            for &k in &ks {
                md.push_str(&format!("| {k} |"));
                for c in &combos {
                    let v = cell.get(&(c.as_str(), k)).and_then(|r| r.ci[i]);
                    md.push_str(&format!(
                        " {} |",
                        v.map_or("n/a".into(), |(lo, hi)| format!(
                            "[{:.0}, {:.0}]",
                            100.0 * lo,
                            100.0 * hi
                        ))
                    ));
                }
                md.push('\n');
            }
        }
        table_head(&mut md, "Median final training loss", &combos);
        for &k in &ks {
            md.push_str(&format!("| {k} |"));
            for c in &combos {
                let v = cell.get(&(c.as_str(), k)).and_then(|r| r.loss);
                md.push_str(&format!(
                    " {} |",
                    v.map_or("n/a".into(), |l| format!("{l:.3}"))
                ));
            }
            md.push('\n');
        }
        let dp: Vec<&PairedRow> = pairs.iter().filter(|r| &r.disease == disease).collect();
        // One table per baseline group: against IMG of each kind, then against the
        // paper's VGG.
        let mut groups: Vec<(String, Vec<&PairedRow>)> = Vec::new();
        for kind in KINDS {
            let base = series_name(Combo::Img.name(), kind);
            let rows: Vec<&PairedRow> = dp.iter().copied().filter(|r| r.baseline == base).collect();
            if !rows.is_empty() {
                groups.push((
                    format!("Paired difference to {}", base.to_ascii_uppercase()),
                    rows,
                ));
            }
        }
        let vs_paper: Vec<&PairedRow> = dp
            .iter()
            .copied()
            .filter(|r| split_series(&r.features).0 == r.baseline)
            .collect();
        if !vs_paper.is_empty() {
            groups.push((
                "Paired difference to the paper's VGG on the same features".into(),
                vs_paper,
            ));
        }
        type PickP = fn(&PairedRow) -> Option<Paired>;
        let paired_metrics: [(&str, PickP); 2] = [("kappa", |r| r.kappa), ("AUC", |r| r.auc)];
        for (group, gp) in &groups {
            for (title, pick) in paired_metrics {
                if gp.iter().all(|r| pick(r).is_none()) {
                    continue;
                }
                let others: Vec<String> = combos
                    .iter()
                    .filter(|c| gp.iter().any(|r| &r.features == *c))
                    .cloned()
                    .collect();
                table_head(
                    &mut md,
                    &format!("{group}, {title} (percentage points: mean [95% CI], p)"),
                    &others,
                );
                let mut kk: Vec<Option<usize>> = ks.iter().map(|&k| Some(k)).collect();
                if gp.iter().any(|r| r.k.is_none()) {
                    kk.push(None);
                }
                for k in kk {
                    md.push_str(&format!(
                        "| {} |",
                        k.map_or("few".to_string(), |k| k.to_string())
                    ));
                    for c in &others {
                        let v = gp
                            .iter()
                            .find(|r| &r.features == c && r.k == k)
                            .and_then(|r| pick(r));
                        md.push_str(&format!(" {} |", paired_cell(v)));
                    }
                    md.push('\n');
                }
            }
        }
        let reps: Vec<usize> = dr.iter().map(|r| r.reps).collect();
        let (lo, hi) = (
            reps.iter().min().copied().unwrap_or(0),
            reps.iter().max().copied().unwrap_or(0),
        );
        md.push_str(&format!(
            "\nRepetitions per cell: {}.\n",
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo} to {hi}")
            }
        ));
        let series =
            |pick: fn(&Row) -> Option<(f64, f64, usize)>, ci: usize| -> Vec<plot::Series> {
                combos
                    .iter()
                    .map(|c| plot::Series {
                        name: c.to_ascii_uppercase(),
                        points: ks
                            .iter()
                            .filter_map(|&k| {
                                let r = cell.get(&(c.as_str(), k))?;
                                let (mean, _, _) = pick(r)?;
                                Some(plot::Point {
                                    k,
                                    mean,
                                    band: r.ci[ci],
                                    reps: r.reps,
                                })
                            })
                            .collect(),
                    })
                    .collect()
            };
        let figure = plot::Figure {
            title: format!("{disease}: mean over repetitions"),
            caption: format!(
                "Each point is the mean over {} repetitions of one feature combination at one measured k; the shaded band is the bootstrap 95% confidence interval of that mean (10,000 resamples of the repetitions, seeded by the cell). Lines join measured k only.",
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo} to {hi}")
                }
            ),
            ks: ks.clone(),
            panels: if multi {
                vec![
                    ("accuracy", series(|r| r.accuracy, 4)),
                    ("Cohen's kappa (all classes)", series(|r| r.kappa, 2)),
                    ("AUC (one-vs-rest mean)", series(|r| r.auc, 3)),
                ]
            } else {
                vec![
                    ("true-positive rate", series(|r| r.tpr, 0)),
                    ("true-negative rate", series(|r| r.tnr, 1)),
                    ("Cohen's kappa", series(|r| r.kappa, 2)),
                    ("AUC", series(|r| r.auc, 3)),
                ]
            }
            .into_iter()
            .map(|(metric, series)| plot::Panel {
                metric: metric.into(),
                series,
            })
            .collect(),
        };
        let stem = out.join(format!("fig-{disease}"));
        let fail =
            |ext: &str, e: String| Error(format!("cannot draw {}.{ext}: {e}", stem.display()));
        let png = plot::png(&figure).map_err(|e| fail("png", e))?;
        write_atomic(&stem.with_extension("png"), &png)?;
        let svg = plot::svg(&figure).map_err(|e| fail("svg", e))?;
        write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
        write_atomic(&stem.with_extension("csv"), plot::csv(&figure).as_bytes())?;
    }
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(md)
}

/// Two experiments run on the same patients (the same split seeds and cohort, other
/// inputs: a 2-D and a 3-D network, say), compared run by run: for each (disease, series,
/// k) the mean kappa and AUC of each, and the mean paired difference (second minus
/// first) over the repetitions with its bootstrap 95% interval and sign-flip p; then the
/// same pooled over every k (per repetition, the mean difference over the k). A pair
/// counts only where both runs exist and their test patients are the same; the table
/// says how many pairs had other test patients (then the two were not run on the same
/// splits). Markdown.
pub fn compare(a: &[RunRecord], b: &[RunRecord], names: (&str, &str)) -> Result<String> {
    type Key = (String, String, usize, usize);
    fn index(runs: &[RunRecord]) -> BTreeMap<Key, &RunRecord> {
        runs.iter().map(|r| (r.key(), r)).collect()
    }
    let (ia, ib) = (index(a), index(b));
    let same_patients = |x: &RunRecord, y: &RunRecord| {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        sorted(&x.test_patients) == sorted(&y.test_patients)
    };
    // (disease, series) -> k -> the pairs (a, b), one per repetition
    type Pairs<'r> = Vec<(&'r RunRecord, &'r RunRecord)>;
    let mut cells: BTreeMap<(String, String), BTreeMap<usize, Pairs>> = BTreeMap::new();
    let mut other_patients = 0;
    for (key, ra) in &ia {
        let Some(rb) = ib.get(key) else { continue };
        if !same_patients(ra, rb) {
            other_patients += 1;
            continue;
        }
        cells
            .entry((key.0.clone(), key.1.clone()))
            .or_default()
            .entry(key.2)
            .or_default()
            .push((ra, rb));
    }
    if cells.is_empty() {
        bail!(
            "the two experiments share no run (disease, features, k and repetition) on the same test patients"
        );
    }
    let (na, nb) = names;
    let mut md = format!(
        "| disease | features | k | pairs | kappa {na} | kappa {nb} | kappa {nb} - {na} (95% CI) | p | AUC {na} | AUC {nb} | AUC {nb} - {na} (95% CI) | p |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let fmt = |p: Option<Paired>| match p {
        Some(p) => (
            format!("{:+.3} ({:+.3}, {:+.3})", p.mean, p.lo, p.hi),
            format!("{:.3}", p.p),
        ),
        None => ("-".into(), "-".into()),
    };
    let mean_of = |v: &[f64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    for ((disease, series), by_k) in &cells {
        let seed_of = |k: usize| {
            let mut h = 0xC0FF_EE00u64 ^ ((k as u64) << 8);
            for c in disease.bytes().chain(series.bytes()) {
                h = (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01B3);
            }
            h
        };
        let mut rows: Vec<(String, Vec<(&RunRecord, &RunRecord)>)> = by_k
            .iter()
            .map(|(k, pairs)| (k.to_string(), pairs.clone()))
            .collect();
        if by_k.len() > 1 {
            rows.push(("all".into(), Vec::new()));
        }
        for (k, pairs) in rows {
            let (ka, kb, kd, aa, ab, ad, n);
            if k == "all" {
                // Per repetition, the mean over the k of the differences (a repetition
                // counts where every k has both values).
                let reps: std::collections::BTreeSet<usize> =
                    by_k.values().flatten().map(|(x, _)| x.rep).collect();
                let per_rep =
                    |pick: fn(&RunRecord) -> Option<f64>| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
                        let (mut va, mut vb, mut vd) = (Vec::new(), Vec::new(), Vec::new());
                        for rep in &reps {
                            let got: Option<Vec<(f64, f64)>> = by_k
                                .values()
                                .map(|ps| {
                                    let (x, y) = ps.iter().find(|(x, _)| x.rep == *rep)?;
                                    Some((pick(x)?, pick(y)?))
                                })
                                .collect();
                            if let Some(g) = got {
                                let m = g.len() as f64;
                                let (sa, sb) =
                                    g.iter().fold((0.0, 0.0), |s, v| (s.0 + v.0, s.1 + v.1));
                                va.push(sa / m);
                                vb.push(sb / m);
                                vd.push((sb - sa) / m);
                            }
                        }
                        (va, vb, vd)
                    };
                let (a1, b1, d1) = per_rep(RunRecord::kappa);
                let (a2, b2, d2) = per_rep(RunRecord::auc);
                n = d1.len();
                (ka, kb, kd) = (mean_of(&a1), mean_of(&b1), Paired::of(&d1, seed_of(0)));
                (aa, ab, ad) = (mean_of(&a2), mean_of(&b2), Paired::of(&d2, seed_of(1)));
            } else {
                let kk: usize = k.parse().unwrap_or(0);
                let both = |pick: fn(&RunRecord) -> Option<f64>| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
                    let v: Vec<(f64, f64)> = pairs
                        .iter()
                        .filter_map(|(x, y)| Some((pick(x)?, pick(y)?)))
                        .collect();
                    (
                        v.iter().map(|p| p.0).collect(),
                        v.iter().map(|p| p.1).collect(),
                        v.iter().map(|p| p.1 - p.0).collect(),
                    )
                };
                let (a1, b1, d1) = both(RunRecord::kappa);
                let (a2, b2, d2) = both(RunRecord::auc);
                n = pairs.len();
                (ka, kb, kd) = (
                    mean_of(&a1),
                    mean_of(&b1),
                    Paired::of(&d1, seed_of(2 * kk + 2)),
                );
                (aa, ab, ad) = (
                    mean_of(&a2),
                    mean_of(&b2),
                    Paired::of(&d2, seed_of(2 * kk + 3)),
                );
            }
            let ((kd, kp), (ad, ap)) = (fmt(kd), fmt(ad));
            md.push_str(&format!(
                "| {disease} | {series} | {k} | {n} | {ka} | {kb} | {kd} | {kp} | {aa} | {ab} | {ad} | {ap} |\n"
            ));
        }
    }
    let paired: usize = cells.values().flat_map(|m| m.values()).map(Vec::len).sum();
    md.push_str(&format!(
        "\n{paired} pairs of runs on the same test patients; {other_patients} pairs left out because their test patients differ; {} runs of {na} and {} of {nb} without a partner.\n",
        ia.len() - paired - other_patients,
        ib.len() - paired - other_patients
    ));
    Ok(md)
}
