//! k-fold cross-validation of the segmentation network, split by patient (the paper's
//! Table 1): for each n, each fold's patients are held out in turn, a network is trained on
//! the others and the Dice of every held-out image is kept.
//!
//! Results go to `OUT/cv.jsonl` as each fold finishes (one line per n and fold, with the
//! per-image Dice); run again with the same folder, finished folds are skipped, an
//! interrupted fold resumes from its last epoch (`OUT/n{n}_fold{f}.safetensors`), and a
//! line cut short by a kill is dropped (that fold is evaluated again).
//! `OUT/cv.md` and `OUT/cv.csv` give Dice mean +- std per label over all held-out images.

use std::path::Path;
use std::sync::Mutex;

use rand::seq::SliceRandom;

use super::seg::{self, mean_std, DiceReport, SegTrainOptions};
use crate::data::{Dataset, Group};
use crate::gpu::jobs;
use crate::jsonl::{append_line, repair_tail};
use crate::nn::init::rng;
use crate::{bail, Error, Gpu, Result};

/// Patients of each fold: the patients shuffled by `seed`, then dealt round-robin.
pub fn folds(patients: &[String], k: usize, seed: u64) -> Result<Vec<Vec<String>>> {
    if k < 2 {
        bail!("cross-validation needs at least 2 folds, got {k}");
    }
    if patients.len() < k {
        bail!(
            "{k} folds need at least {k} patients, but the data has {}",
            patients.len()
        );
    }
    let mut p = patients.to_vec();
    p.shuffle(&mut rng(seed ^ 0xF01D));
    let mut out = vec![Vec::new(); k];
    for (i, id) in p.into_iter().enumerate() {
        out[i % k].push(id);
    }
    Ok(out)
}

/// Run (or finish) the cross-validation, training `jobs` folds at a time (each on a device
/// of its own, see [`jobs::for_each`]; a fold's result is the same bits whatever the
/// number); returns the Markdown table.
pub fn run(
    gpu: &Gpu,
    data: &Dataset,
    channels: &[usize],
    k: usize,
    opts: &SegTrainOptions,
    out: &Path,
    jobs: usize,
) -> Result<String> {
    let normals = data.select(None, &[Group::Normal])?;
    let fold_patients = folds(&normals.patients(), k, opts.seed)?;
    std::fs::create_dir_all(out)
        .map_err(|e| Error(format!("cannot create {}: {e}", out.display())))?;
    let jsonl = out.join("cv.jsonl");
    repair_tail(&jsonl, "fold")?;
    let done = read_done(&jsonl)?;
    let mut todo = Vec::new();
    for &n in channels {
        for f in 0..k {
            if done.iter().any(|(dn, df, _)| *dn == n && *df == f) {
                eprintln!("n={n} fold {}/{k}: already in {}", f + 1, jsonl.display());
            } else {
                todo.push((n, f));
            }
        }
    }
    let jobs = jobs.clamp(1, todo.len().max(1));
    if jobs > 1 {
        eprintln!(
            "{jobs} folds at a time, each on a device of its own (epoch lines name their model)"
        );
    }
    // A finished fold: its JSONL line and log line, one fold at a time.
    let done = Mutex::new(done);
    let record = |n: usize, f: usize, test: &[String], report: DiceReport| -> Result<()> {
        let mut done = done
            .lock()
            .map_err(|_| Error("a worker thread panicked while recording a fold".into()))?;
        let line = serde_json::json!({
            "channels": n,
            "fold": f,
            "test_patients": test,
            "images": report.images,
            "dice": report.dice,
            "mean_dice": report.mean(),
        });
        append_line(&jsonl, &line)?;
        eprintln!("n={n} fold {}/{k}: mean Dice {:.3}", f + 1, report.mean());
        done.push((n, f, report));
        Ok(())
    };
    jobs::for_each(gpu, jobs, &todo, "folds", |gpu, &(n, f)| {
        let test = &fold_patients[f];
        eprintln!(
            "n={n} fold {}/{k}: testing on patients {}",
            f + 1,
            test.join(",")
        );
        let train_ids: Vec<String> = fold_patients
            .iter()
            .enumerate()
            .filter(|(g, _)| *g != f)
            .flat_map(|(_, p)| p.clone())
            .collect();
        let train = normals.select(Some(&train_ids), &[Group::Normal])?;
        let test_set = normals.select(Some(test), &[Group::Normal])?;
        let o = SegTrainOptions {
            channels: n,
            // Several folds' bars would overwrite each other; their epoch lines remain.
            progress: opts.progress && jobs == 1,
            ..opts.clone()
        };
        let model = out.join(format!("n{n}_fold{}.safetensors", f + 1));
        let (unet, _) = seg::train(gpu, &train, &o, &model, true)?;
        let report = seg::evaluate(gpu, &unet, &test_set, opts.batch)?;
        record(n, f, test, report)
    })?;
    // Folds finish in any order (and resumed ones come first): the tables take them in
    // (n, fold) order, so the same folds always give the same bits.
    let mut done = done
        .into_inner()
        .map_err(|_| Error("a worker thread panicked while recording a fold".into()))?;
    done.sort_by_key(|(n, f, _)| (*n, *f));
    let (md, csv) = tables(&done, channels, &data.label_names);
    for (name, text) in [("cv.md", &md), ("cv.csv", &csv)] {
        let p = out.join(name);
        std::fs::write(&p, text)
            .map_err(|e| Error(format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(md)
}

/// The folds already in the JSONL file: (n, fold, report).
fn read_done(path: &Path) -> Result<Vec<(usize, usize, DiceReport)>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            Error(format!(
                "{} line {}: not a cv result",
                path.display(),
                i + 1
            ))
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad())?;
        let n = v["channels"].as_u64().ok_or_else(bad)? as usize;
        let f = v["fold"].as_u64().ok_or_else(bad)? as usize;
        let images = v["images"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|s| s.as_str().unwrap_or("").to_string())
            .collect();
        let dice = v["dice"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|r| r.iter().map(|d| d.as_f64()).collect())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<Vec<Option<f64>>>>>()?;
        out.push((
            n,
            f,
            DiceReport {
                label_names: Vec::new(),
                images,
                dice,
                ..DiceReport::default()
            },
        ));
    }
    Ok(out)
}

/// Markdown and CSV tables: one row per n, Dice mean +- std per label over all held-out
/// images of all folds, and the mean over labels.
fn tables(
    done: &[(usize, usize, DiceReport)],
    channels: &[usize],
    labels: &[String],
) -> (String, String) {
    let names = &labels[1..];
    let mut md = format!("| n | {} | mean |\n|---|", names.join(" | "));
    md.push_str(&"---|".repeat(names.len() + 1));
    md.push('\n');
    let mut csv = String::from("channels,label,mean,std,images\n");
    for &n in channels {
        let mut all = DiceReport {
            label_names: labels.to_vec(),
            ..DiceReport::default()
        };
        for (_, _, r) in done.iter().filter(|(dn, _, _)| *dn == n) {
            all.merge(r.clone());
        }
        if all.dice.is_empty() {
            continue;
        }
        md.push_str(&format!("| {n} |"));
        for (l, name) in names.iter().enumerate() {
            let (m, s, c) = all.label_stats(l + 1);
            md.push_str(&format!(" {m:.3} +- {s:.3} |"));
            csv.push_str(&format!("{n},{name},{m:.5},{s:.5},{c}\n"));
        }
        let (m, s, c) = mean_std(all.dice.iter().map(|row| {
            let v: Vec<f64> = row.iter().flatten().copied().collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        }));
        md.push_str(&format!(" {m:.3} +- {s:.3} |\n"));
        csv.push_str(&format!("{n},mean,{m:.5},{s:.5},{c}\n"));
    }
    (md, csv)
}
