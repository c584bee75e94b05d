//! The linear-SVM baseline on frozen features (Menkovski et al.'s first approach): each
//! image's feature maps pooled per channel (global average and global max), standardised
//! with the run's training images, and a linear classifier trained with the squared hinge
//! loss and L2 regularisation,
//!
//!   min_{w,b}  1/2 |w|^2 + C sum_i s_i max(0, 1 - y_i (w.x_i + b))^2      y_i in {-1, +1}
//!
//! with s_i the class weight of image i (the classifier's fourth-root rule, so that the
//! SVM and the VGG weigh their few positives alike) and the bias not regularised. C is
//! chosen from [`C_GRID`] by 5-fold cross-validation on the run's training images
//! (stratified: the positives spread over the folds), by the pooled out-of-fold balanced
//! accuracy (the mean of TPR and TNR), ties going to the smaller C.
//!
//! The problem is small (2C features, tens of images), so it is solved exactly in f64 on
//! the host by Newton's method on the primal (Chapelle, "Training a support vector machine
//! in the primal", 2007): the squared hinge is differentiable, each step solves one
//! (d+1)-square system by Cholesky, and a handful of steps reach the optimum. No crate is
//! needed for that, and no GPU round trip would pay for itself.

use rand::seq::SliceRandom;

use crate::nn::init::rng;
use crate::train::cls::class_weights;
use crate::train::features::{Combo, FeatureBank};
use crate::{bail, Result};

/// The values of C tried by cross-validation: 10^-4 .. 10^3.
pub const C_GRID: [f64; 8] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0];
/// Folds of the cross-validation.
pub const FOLDS: usize = 5;

/// A trained linear SVM: the pooling's standardisation, the weights and the chosen C.
#[derive(Clone, Debug)]
pub struct Svm {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub w: Vec<f64>,
    pub b: f64,
    pub c: f64,
    /// The training objective's data term per image at the optimum (the squared hinge,
    /// class-weighted, averaged): the "final training loss".
    pub loss: f64,
}

/// The pooled features of image `i`: per channel of `combo`, the mean then the maximum.
pub fn pooled(bank: &FeatureBank, combo: Combo, i: usize) -> Result<Vec<f64>> {
    let mut x = Vec::new();
    bank.append_input(i, combo, &mut x)?;
    let px = bank.voxels();
    let mut out = Vec::with_capacity(2 * x.len() / px.max(1));
    for plane in x.chunks(px) {
        out.push(plane.iter().map(|&v| v as f64).sum::<f64>() / px as f64);
        out.push(
            plane
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64)),
        );
    }
    Ok(out)
}

/// Train on the bank's images `idx` with labels (1 = diseased): C by cross-validation,
/// then the SVM on all of them.
pub fn train(
    bank: &FeatureBank,
    combo: Combo,
    idx: &[usize],
    labels: &[u8],
    seed: u64,
) -> Result<Svm> {
    if idx.is_empty() || idx.len() != labels.len() {
        bail!("the SVM needs training images with one label each");
    }
    let raw: Vec<Vec<f64>> = idx
        .iter()
        .map(|&i| pooled(bank, combo, i))
        .collect::<Result<_>>()?;
    let c = choose_c(&raw, labels, seed);
    fit(&raw, labels, c)
}

/// Decision values w.x + b of the bank's images `idx`, as P(diseased) = sigmoid(value)
/// (monotone, 0.5 at the margin's middle; not calibrated).
pub fn predict(svm: &Svm, bank: &FeatureBank, combo: Combo, idx: &[usize]) -> Result<Vec<f32>> {
    idx.iter()
        .map(|&i| {
            let x = pooled(bank, combo, i)?;
            let f = decision(svm, &x);
            Ok((1.0 / (1.0 + (-f).exp())) as f32)
        })
        .collect()
}

fn decision(svm: &Svm, raw: &[f64]) -> f64 {
    raw.iter()
        .zip(&svm.mean)
        .zip(&svm.std)
        .zip(&svm.w)
        .map(|(((x, m), s), w)| w * (x - m) / s)
        .sum::<f64>()
        + svm.b
}

/// Standardise, then solve the primal for one C.
pub fn fit(raw: &[Vec<f64>], labels: &[u8], c: f64) -> Result<Svm> {
    let d = raw.first().map_or(0, Vec::len);
    let n = raw.len() as f64;
    let mut mean = vec![0.0; d];
    let mut std = vec![0.0; d];
    for x in raw {
        for j in 0..d {
            mean[j] += x[j] / n;
        }
    }
    for x in raw {
        for j in 0..d {
            std[j] += (x[j] - mean[j]).powi(2) / n;
        }
    }
    for s in std.iter_mut() {
        // A constant feature stays 0 after centring; dividing by 1 keeps it so.
        *s = if *s > 1e-24 { s.sqrt() } else { 1.0 };
    }
    let xs: Vec<Vec<f64>> = raw
        .iter()
        .map(|x| (0..d).map(|j| (x[j] - mean[j]) / std[j]).collect())
        .collect();
    let cw = class_weights(labels);
    let s: Vec<f64> = labels.iter().map(|&l| cw[l as usize] as f64).collect();
    let y: Vec<f64> = labels
        .iter()
        .map(|&l| if l == 1 { 1.0 } else { -1.0 })
        .collect();
    let (w, b) = newton(&xs, &y, &s, c)?;
    let loss = xs
        .iter()
        .zip(&y)
        .zip(&s)
        .map(|((x, &yi), &si)| {
            let f: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b;
            si * (1.0 - yi * f).max(0.0).powi(2)
        })
        .sum::<f64>()
        / n;
    Ok(Svm {
        mean,
        std,
        w,
        b,
        c,
        loss,
    })
}

/// The objective of (w, b).
fn objective(xs: &[Vec<f64>], y: &[f64], s: &[f64], c: f64, w: &[f64], b: f64) -> f64 {
    let reg = 0.5 * w.iter().map(|v| v * v).sum::<f64>();
    let data: f64 = xs
        .iter()
        .zip(y)
        .zip(s)
        .map(|((x, &yi), &si)| {
            let f: f64 = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b;
            si * (1.0 - yi * f).max(0.0).powi(2)
        })
        .sum();
    reg + c * data
}

/// Newton's method on the primal with a backtracking line search. Variables (w, b); the
/// Hessian on the active set A = {i : y_i f_i < 1} is diag(1, .., 1, 0) + 2C sum_A s_i
/// x~ x~^T (x~ = (x, 1)), the gradient (w, 0) + 2C sum_A s_i (f_i - y_i) x~.
fn newton(xs: &[Vec<f64>], y: &[f64], s: &[f64], c: f64) -> Result<(Vec<f64>, f64)> {
    let d = xs.first().map_or(0, Vec::len);
    let m = d + 1;
    let mut v = vec![0.0; m]; // (w, b)
    let aug = |x: &[f64], j: usize| if j < d { x[j] } else { 1.0 };
    let mut obj = objective(xs, y, s, c, &v[..d], v[d]);
    for _ in 0..100 {
        let mut g = vec![0.0; m];
        let mut h = vec![0.0; m * m];
        g[..d].copy_from_slice(&v[..d]);
        for j in 0..d {
            h[j * m + j] = 1.0;
        }
        // A tiny ridge on the bias keeps H positive definite when no image is active.
        h[d * m + d] = 1e-12;
        for ((x, &yi), &si) in xs.iter().zip(y).zip(s) {
            let f: f64 = (0..m).map(|j| aug(x, j) * v[j]).sum();
            if yi * f < 1.0 {
                for a in 0..m {
                    g[a] += 2.0 * c * si * (f - yi) * aug(x, a);
                    for bb in 0..m {
                        h[a * m + bb] += 2.0 * c * si * aug(x, a) * aug(x, bb);
                    }
                }
            }
        }
        let step = cholesky_solve(&h, &g, m)?;
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..40 {
            let cand: Vec<f64> = v.iter().zip(&step).map(|(a, d)| a - t * d).collect();
            let o = objective(xs, y, s, c, &cand[..d], cand[d]);
            if o <= obj {
                let done = obj - o <= 1e-12 * obj.abs().max(1e-300);
                v = cand;
                obj = o;
                improved = !done;
                break;
            }
            t *= 0.5;
        }
        if !improved {
            break;
        }
    }
    Ok((v[..d].to_vec(), v[d]))
}

/// Solve H z = g for a symmetric positive definite H (m x m, row-major).
fn cholesky_solve(h: &[f64], g: &[f64], m: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let mut sum = h[i * m + j];
            for k in 0..j {
                sum -= l[i * m + k] * l[j * m + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    bail!(
                        "the SVM's Newton system is not positive definite (non-finite features?)"
                    );
                }
                l[i * m + i] = sum.sqrt();
            } else {
                l[i * m + j] = sum / l[j * m + j];
            }
        }
    }
    let mut z = g.to_vec();
    for i in 0..m {
        for k in 0..i {
            z[i] -= l[i * m + k] * z[k];
        }
        z[i] /= l[i * m + i];
    }
    for i in (0..m).rev() {
        for k in i + 1..m {
            z[i] -= l[k * m + i] * z[k];
        }
        z[i] /= l[i * m + i];
    }
    Ok(z)
}

/// Stratified folds: each class shuffled (seeded) and dealt round-robin, so that every
/// fold gets its share of the positives (with k < 5 positives, some folds get none).
pub fn folds(labels: &[u8], seed: u64) -> Vec<usize> {
    let mut fold = vec![0; labels.len()];
    let mut r = rng(seed ^ 0x5F0_1D5);
    for class in [1u8, 0] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut r);
        for (j, &i) in members.iter().enumerate() {
            fold[i] = j % FOLDS;
        }
    }
    fold
}

/// C from [`C_GRID`] with the best pooled out-of-fold balanced accuracy (smaller C on
/// ties). A fold whose training part lacks a class is skipped (its images get no vote).
pub fn choose_c(raw: &[Vec<f64>], labels: &[u8], seed: u64) -> f64 {
    let fold = folds(labels, seed);
    let mut best = (f64::NEG_INFINITY, C_GRID[0]);
    for &c in &C_GRID {
        let (mut tp, mut pos, mut tn, mut neg) = (0usize, 0usize, 0usize, 0usize);
        for f in 0..FOLDS {
            let tr: Vec<usize> = (0..raw.len()).filter(|&i| fold[i] != f).collect();
            let te: Vec<usize> = (0..raw.len()).filter(|&i| fold[i] == f).collect();
            let trl: Vec<u8> = tr.iter().map(|&i| labels[i]).collect();
            if te.is_empty() || !trl.contains(&0) || !trl.contains(&1) {
                continue;
            }
            let trx: Vec<Vec<f64>> = tr.iter().map(|&i| raw[i].clone()).collect();
            let Ok(svm) = fit(&trx, &trl, c) else {
                continue;
            };
            for &i in &te {
                let said = decision(&svm, &raw[i]) > 0.0;
                if labels[i] == 1 {
                    pos += 1;
                    tp += said as usize;
                } else {
                    neg += 1;
                    tn += !said as usize;
                }
            }
        }
        let rate = |a: usize, b: usize| if b == 0 { 0.5 } else { a as f64 / b as f64 };
        let bacc = 0.5 * (rate(tp, pos) + rate(tn, neg));
        if bacc > best.0 {
            best = (bacc, c);
        }
    }
    best.1
}
