//! f64 CPU references: plain loops, written to be read. Every GPU kernel is tested against
//! these, and every backward here is tested against finite differences of the forward
//! here (kernels-tests/gradients.rs). Layouts are row-major NCHW like the engine's.
#![allow(dead_code, clippy::too_many_arguments)]

/// x (n, cin, h, w), wt (cout, cin, 3, 3), b (cout) -> y (n, cout, h, w); zero padding 1.
pub fn conv3x3(
    x: &[f64],
    wt: &[f64],
    b: &[f64],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; n * cout * h * w];
    for ni in 0..n {
        for co in 0..cout {
            for i in 0..h {
                for j in 0..w {
                    let mut acc = b[co];
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (si, sj) =
                                    (i as isize + ky as isize - 1, j as isize + kx as isize - 1);
                                if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                    continue;
                                }
                                let xv = x[((ni * cin + ci) * h + si as usize) * w + sj as usize];
                                acc += wt[((co * cin + ci) * 3 + ky) * 3 + kx] * xv;
                            }
                        }
                    }
                    y[((ni * cout + co) * h + i) * w + j] = acc;
                }
            }
        }
    }
    y
}

/// The three gradients of conv3x3 given dy (n, cout, h, w): (dx, dw, db).
/// Each y element adds w * dy to the x it read, x * dy to the w it used, dy to b.
pub fn conv3x3_backward(
    dy: &[f64],
    x: &[f64],
    wt: &[f64],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; wt.len()];
    let mut db = vec![0.0; cout];
    for ni in 0..n {
        for co in 0..cout {
            for i in 0..h {
                for j in 0..w {
                    let g = dy[((ni * cout + co) * h + i) * w + j];
                    db[co] += g;
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (si, sj) =
                                    (i as isize + ky as isize - 1, j as isize + kx as isize - 1);
                                if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                    continue;
                                }
                                let xi = ((ni * cin + ci) * h + si as usize) * w + sj as usize;
                                let wi = ((co * cin + ci) * 3 + ky) * 3 + kx;
                                dx[xi] += wt[wi] * g;
                                dw[wi] += x[xi] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// x (n, cin, p), wt (cout, cin), b (cout) -> y (n, cout, p); p = h*w.
pub fn conv1x1(
    x: &[f64],
    wt: &[f64],
    b: &[f64],
    n: usize,
    cin: usize,
    cout: usize,
    p: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; n * cout * p];
    for ni in 0..n {
        for co in 0..cout {
            for q in 0..p {
                let mut acc = b[co];
                for ci in 0..cin {
                    acc += wt[co * cin + ci] * x[(ni * cin + ci) * p + q];
                }
                y[(ni * cout + co) * p + q] = acc;
            }
        }
    }
    y
}

/// (dx, dw, db) of conv1x1 given dy (n, cout, p).
pub fn conv1x1_backward(
    dy: &[f64],
    x: &[f64],
    wt: &[f64],
    n: usize,
    cin: usize,
    cout: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; wt.len()];
    let mut db = vec![0.0; cout];
    for ni in 0..n {
        for co in 0..cout {
            for q in 0..p {
                let g = dy[(ni * cout + co) * p + q];
                db[co] += g;
                for ci in 0..cin {
                    dx[(ni * cin + ci) * p + q] += wt[co * cin + ci] * g;
                    dw[co * cin + ci] += x[(ni * cin + ci) * p + q] * g;
                }
            }
        }
    }
    (dx, dw, db)
}

/// x (n, i), wt (o, i), b (o) -> y (n, o) = x W^T + b.
pub fn linear(x: &[f64], wt: &[f64], b: &[f64], n: usize, i: usize, o: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * o];
    for ni in 0..n {
        for oi in 0..o {
            let mut acc = b[oi];
            for k in 0..i {
                acc += x[ni * i + k] * wt[oi * i + k];
            }
            y[ni * o + oi] = acc;
        }
    }
    y
}

/// (dx, dW, db) of linear given dy (n, o): dx = dy W, dW = dy^T x, db = sum_n dy.
pub fn linear_backward(
    dy: &[f64],
    x: &[f64],
    wt: &[f64],
    n: usize,
    i: usize,
    o: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; n * i];
    let mut dw = vec![0.0; o * i];
    let mut db = vec![0.0; o];
    for ni in 0..n {
        for oi in 0..o {
            let g = dy[ni * o + oi];
            db[oi] += g;
            for k in 0..i {
                dx[ni * i + k] += g * wt[oi * i + k];
                dw[oi * i + k] += g * x[ni * i + k];
            }
        }
    }
    (dx, dw, db)
}

pub fn elu(x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|&v| if v > 0.0 { v } else { v.exp() - 1.0 })
        .collect()
}

/// dx = dy * (x > 0 ? 1 : exp(x))
pub fn elu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| g * if v > 0.0 { 1.0 } else { v.exp() })
        .collect()
}

/// dx = dy * (y > 0 ? 1 : y + 1), the ELU's derivative from its output y = elu(x).
pub fn elu_backward_from_output(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(dy)
        .map(|(&v, &g)| g * if v > 0.0 { 1.0 } else { v + 1.0 })
        .collect()
}

pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

pub fn relu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect()
}

pub fn leaky_relu(x: &[f64], a: f64) -> Vec<f64> {
    x.iter().map(|&v| if v > 0.0 { v } else { a * v }).collect()
}

pub fn leaky_relu_backward(x: &[f64], dy: &[f64], a: f64) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { a * g })
        .collect()
}

/// y = keep ? x / (1 - p) : 0, for a given mask (the same function serves the backward).
pub fn dropout(x: &[f64], keep: &[bool], p: f64) -> Vec<f64> {
    x.iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v / (1.0 - p) } else { 0.0 })
        .collect()
}

/// Mean of each of `planes` planes of `hw` values.
pub fn gap(x: &[f64], planes: usize, hw: usize) -> Vec<f64> {
    (0..planes)
        .map(|q| x[q * hw..(q + 1) * hw].iter().sum::<f64>() / hw as f64)
        .collect()
}

pub fn gap_backward(dy: &[f64], planes: usize, hw: usize) -> Vec<f64> {
    (0..planes * hw).map(|i| dy[i / hw] / hw as f64).collect()
}

const BN_EPS: f64 = 1e-5;

/// Batch normalisation of x (n, c, hw): y, and the batch's mean and biased variance per
/// channel; with `frozen` (mean, var) those are used instead of the batch's.
#[allow(clippy::type_complexity)]
pub fn batchnorm(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    n: usize,
    c: usize,
    hw: usize,
    frozen: Option<(Vec<f64>, Vec<f64>)>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (n * hw) as f64;
    let at = |i: usize, ch: usize, j: usize| x[(i * c + ch) * hw + j];
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..hw {
                s += at(i, ch, j);
            }
        }
        mean[ch] = s / m;
        let mut v = 0.0;
        for i in 0..n {
            for j in 0..hw {
                v += (at(i, ch, j) - mean[ch]).powi(2);
            }
        }
        var[ch] = v / m;
    }
    let (um, uv) = frozen.unwrap_or((mean.clone(), var.clone()));
    let y = (0..n * c * hw)
        .map(|k| {
            let ch = (k / hw) % c;
            gamma[ch] * (x[k] - um[ch]) / (uv[ch] + BN_EPS).sqrt() + beta[ch]
        })
        .collect();
    (y, mean, var)
}

/// Training-mode backward: (dx, dgamma, dbeta).
pub fn batchnorm_backward(
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (_, mean, var) = batchnorm(x, gamma, gamma, n, c, hw, None);
    let m = (n * hw) as f64;
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    let xhat = |k: usize| {
        let ch = (k / hw) % c;
        (x[k] - mean[ch]) * inv[ch]
    };
    let (mut s1, mut s2) = (vec![0.0; c], vec![0.0; c]);
    for (k, &g) in dy.iter().enumerate() {
        let ch = (k / hw) % c;
        s1[ch] += g;
        s2[ch] += g * xhat(k);
    }
    let dx = (0..x.len())
        .map(|k| {
            let ch = (k / hw) % c;
            gamma[ch] * inv[ch] * (dy[k] - s1[ch] / m - xhat(k) * s2[ch] / m)
        })
        .collect();
    (dx, s2, s1)
}

/// Backward with the statistics (mean, var) held constant: (dx, dgamma, dbeta).
pub fn batchnorm_backward_frozen(
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    (mean, var): &(Vec<f64>, Vec<f64>),
    _n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    let dx = (0..x.len())
        .map(|k| {
            let ch = (k / hw) % c;
            dg[ch] += dy[k] * (x[k] - mean[ch]) * inv[ch];
            db[ch] += dy[k];
            gamma[ch] * inv[ch] * dy[k]
        })
        .collect();
    (dx, dg, db)
}

/// x (planes, h, w) -> y (planes, h/2, w/2): the max of each 2x2 block.
pub fn maxpool2(x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(planes * h * w / 4);
    for pl in 0..planes {
        for i in 0..h / 2 {
            for j in 0..w / 2 {
                let (bi, bj) = maxpool2_argmax(x, pl, h, w, i, j);
                y.push(x[(pl * h + bi) * w + bj]);
            }
        }
    }
    y
}

/// Position of the maximum of block (i, j): scanning row-major, strict `>`, so the first
/// of equal maxima wins.
pub fn maxpool2_argmax(
    x: &[f64],
    pl: usize,
    h: usize,
    w: usize,
    i: usize,
    j: usize,
) -> (usize, usize) {
    let mut best = (2 * i, 2 * j);
    for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let (r, c) = (2 * i + di, 2 * j + dj);
        if x[(pl * h + r) * w + c] > x[(pl * h + best.0) * w + best.1] {
            best = (r, c);
        }
    }
    best
}

pub fn maxpool2_backward(x: &[f64], dy: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for pl in 0..planes {
        for i in 0..h / 2 {
            for j in 0..w / 2 {
                let (bi, bj) = maxpool2_argmax(x, pl, h, w, i, j);
                dx[(pl * h + bi) * w + bj] += dy[(pl * (h / 2) + i) * (w / 2) + j];
            }
        }
    }
    dx
}

/// x (planes, h, w) -> y (planes, 2h, 2w) by repetition.
pub fn upsample2(x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut y = vec![0.0; planes * 4 * h * w];
    for pl in 0..planes {
        for i in 0..2 * h {
            for j in 0..2 * w {
                y[(pl * 2 * h + i) * 2 * w + j] = x[(pl * h + i / 2) * w + j / 2];
            }
        }
    }
    y
}

pub fn upsample2_backward(dy: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut dx = vec![0.0; planes * h * w];
    for pl in 0..planes {
        for i in 0..2 * h {
            for j in 0..2 * w {
                dx[(pl * h + i / 2) * w + j / 2] += dy[(pl * 2 * h + i) * 2 * w + j];
            }
        }
    }
    dx
}

/// Stack a (n, ca, p) and b (n, cb, p) along channels.
pub fn concat(a: &[f64], b: &[f64], n: usize, ca: usize, cb: usize, p: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(a.len() + b.len());
    for ni in 0..n {
        y.extend_from_slice(&a[ni * ca * p..(ni + 1) * ca * p]);
        y.extend_from_slice(&b[ni * cb * p..(ni + 1) * cb * p]);
    }
    y
}

/// The split: (da, db) from dy (n, ca + cb, p).
pub fn concat_backward(
    dy: &[f64],
    n: usize,
    ca: usize,
    cb: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>) {
    let c = ca + cb;
    let (mut da, mut db) = (Vec::new(), Vec::new());
    for ni in 0..n {
        da.extend_from_slice(&dy[ni * c * p..(ni * c + ca) * p]);
        db.extend_from_slice(&dy[(ni * c + ca) * p..(ni + 1) * c * p]);
    }
    (da, db)
}

/// Softmax over channels of z (n, c, p).
pub fn softmax(z: &[f64], n: usize, c: usize, p: usize) -> Vec<f64> {
    let mut s = vec![0.0; z.len()];
    for ni in 0..n {
        for q in 0..p {
            let at = |k: usize| (ni * c + k) * p + q;
            let m = (0..c).map(|k| z[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..c).map(|k| (z[at(k)] - m).exp()).sum();
            for k in 0..c {
                s[at(k)] = (z[at(k)] - m).exp() / sum;
            }
        }
    }
    s
}

/// Weighted cross-entropy, normalised by the sum of the true classes' weights:
/// L = sum_p w[y_p] (-log s_p[y_p]) / sum_p w[y_p]. Labels outside 0..c count with weight 0.
pub fn softmax_ce(z: &[f64], labels: &[usize], cw: &[f64], n: usize, c: usize, p: usize) -> f64 {
    let s = softmax(z, n, c, p);
    let (mut l, mut wsum) = (0.0, 0.0);
    for ni in 0..n {
        for q in 0..p {
            let y = labels[ni * p + q];
            if y >= c {
                continue;
            }
            l += cw[y] * -s[(ni * c + y) * p + q].ln();
            wsum += cw[y];
        }
    }
    if wsum > 0.0 {
        l / wsum
    } else {
        0.0
    }
}

/// dL/dz = w[y] (s - onehot(y)) / W, times the incoming gradient dl.
pub fn softmax_ce_backward(
    z: &[f64],
    labels: &[usize],
    cw: &[f64],
    n: usize,
    c: usize,
    p: usize,
    dl: f64,
) -> Vec<f64> {
    let s = softmax(z, n, c, p);
    let wsum: f64 = labels.iter().filter(|&&y| y < c).map(|&y| cw[y]).sum();
    let mut dz = vec![0.0; z.len()];
    if wsum <= 0.0 {
        return dz;
    }
    for ni in 0..n {
        for q in 0..p {
            let y = labels[ni * p + q];
            if y >= c {
                continue;
            }
            for k in 0..c {
                let at = (ni * c + k) * p + q;
                let onehot = if k == y { 1.0 } else { 0.0 };
                dz[at] = dl * cw[y] * (s[at] - onehot) / wsum;
            }
        }
    }
    dz
}

/// One Adam step in place; returns nothing, updates p, m, v.
pub fn adam(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    t: i32,
) {
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] -= lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
    }
}

/// Central finite differences of a scalar function: dF/dx_i ~ (F(x + h e_i) - F(x - h e_i)) / 2h.
pub fn finite_diff(f: &dyn Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let fp = f(&x);
            x[i] = orig - h;
            let fm = f(&x);
            x[i] = orig;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// sum_i a_i b_i: turns a vector function into the scalar F = <r, f(x)> whose gradient is
/// the backward of f applied to dy = r.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// x (n, cin, d, h, w), wt (cout, cin, 3, 3, 3), b (cout) -> y (n, cout, d, h, w); zero
/// padding 1 on every side.
pub fn conv3x3x3(
    x: &[f64],
    wt: &[f64],
    b: &[f64],
    (n, cin, cout): (usize, usize, usize),
    (d, h, w): (usize, usize, usize),
) -> Vec<f64> {
    let mut y = vec![0.0; n * cout * d * h * w];
    for ni in 0..n {
        for co in 0..cout {
            for z in 0..d {
                for i in 0..h {
                    for j in 0..w {
                        let mut acc = b[co];
                        for ci in 0..cin {
                            for (kz, ky, kx) in taps27() {
                                if let Some(xi) =
                                    tap_index((ni, ci, cin), (z, i, j), (kz, ky, kx), (d, h, w))
                                {
                                    acc += wt[(co * cin + ci) * 27 + kz * 9 + ky * 3 + kx] * x[xi];
                                }
                            }
                        }
                        y[(((ni * cout + co) * d + z) * h + i) * w + j] = acc;
                    }
                }
            }
        }
    }
    y
}

/// The 27 taps (kz, ky, kx) in the order the sums run.
fn taps27() -> impl Iterator<Item = (usize, usize, usize)> {
    (0..27).map(|k| (k / 9, (k / 3) % 3, k % 3))
}

/// The index into x (n, cin, d, h, w) that tap (kz, ky, kx) of output voxel (z, i, j)
/// reads, or None in the zero padding.
fn tap_index(
    (ni, ci, cin): (usize, usize, usize),
    (z, i, j): (usize, usize, usize),
    (kz, ky, kx): (usize, usize, usize),
    (d, h, w): (usize, usize, usize),
) -> Option<usize> {
    let (sz, si, sj) = (
        (z + kz).checked_sub(1)?,
        (i + ky).checked_sub(1)?,
        (j + kx).checked_sub(1)?,
    );
    if sz >= d || si >= h || sj >= w {
        return None;
    }
    Some((((ni * cin + ci) * d + sz) * h + si) * w + sj)
}

/// The three gradients of conv3x3x3 given dy (n, cout, d, h, w): (dx, dw, db).
pub fn conv3x3x3_backward(
    dy: &[f64],
    x: &[f64],
    wt: &[f64],
    (n, cin, cout): (usize, usize, usize),
    (d, h, w): (usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; wt.len()];
    let mut db = vec![0.0; cout];
    for ni in 0..n {
        for co in 0..cout {
            for z in 0..d {
                for i in 0..h {
                    for j in 0..w {
                        let g = dy[(((ni * cout + co) * d + z) * h + i) * w + j];
                        db[co] += g;
                        for ci in 0..cin {
                            for (kz, ky, kx) in taps27() {
                                if let Some(xi) =
                                    tap_index((ni, ci, cin), (z, i, j), (kz, ky, kx), (d, h, w))
                                {
                                    let wi = (co * cin + ci) * 27 + kz * 9 + ky * 3 + kx;
                                    dx[xi] += wt[wi] * g;
                                    dw[wi] += x[xi] * g;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// The index in x (planes, d, h, w) of the first maximum, scanning (z, row, column), of
/// the fd x 2 x 2 block of output voxel (z, i, j) of plane pl.
pub fn maxpool3d_argmax(
    x: &[f64],
    pl: usize,
    (d, h, w): (usize, usize, usize),
    fd: usize,
    (z, i, j): (usize, usize, usize),
) -> usize {
    let at = |a: usize, b: usize, c: usize| ((pl * d + a) * h + b) * w + c;
    let mut best = at(fd * z, 2 * i, 2 * j);
    for dz in 0..fd {
        for di in 0..2 {
            for dj in 0..2 {
                let e = at(fd * z + dz, 2 * i + di, 2 * j + dj);
                if x[e] > x[best] {
                    best = e;
                }
            }
        }
    }
    best
}

/// x (planes, d, h, w) -> y (planes, d/fd, h/2, w/2): the max of each fd x 2 x 2 block.
pub fn maxpool3d(
    x: &[f64],
    planes: usize,
    (d, h, w): (usize, usize, usize),
    fd: usize,
) -> Vec<f64> {
    let mut y = Vec::new();
    for pl in 0..planes {
        for z in 0..d / fd {
            for i in 0..h / 2 {
                for j in 0..w / 2 {
                    y.push(x[maxpool3d_argmax(x, pl, (d, h, w), fd, (z, i, j))]);
                }
            }
        }
    }
    y
}

pub fn maxpool3d_backward(
    x: &[f64],
    dy: &[f64],
    planes: usize,
    (d, h, w): (usize, usize, usize),
    fd: usize,
) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    let mut k = 0;
    for pl in 0..planes {
        for z in 0..d / fd {
            for i in 0..h / 2 {
                for j in 0..w / 2 {
                    dx[maxpool3d_argmax(x, pl, (d, h, w), fd, (z, i, j))] += dy[k];
                    k += 1;
                }
            }
        }
    }
    dx
}

/// x (planes, d, h, w) -> y (planes, d fd, 2h, 2w) by repetition.
pub fn upsample3d(
    x: &[f64],
    planes: usize,
    (d, h, w): (usize, usize, usize),
    fd: usize,
) -> Vec<f64> {
    let mut y = Vec::new();
    for pl in 0..planes {
        for z in 0..d * fd {
            for i in 0..2 * h {
                for j in 0..2 * w {
                    y.push(x[((pl * d + z / fd) * h + i / 2) * w + j / 2]);
                }
            }
        }
    }
    y
}

pub fn upsample3d_backward(
    dy: &[f64],
    planes: usize,
    (d, h, w): (usize, usize, usize),
    fd: usize,
) -> Vec<f64> {
    let mut dx = vec![0.0; planes * d * h * w];
    let mut k = 0;
    for pl in 0..planes {
        for z in 0..d * fd {
            for i in 0..2 * h {
                for j in 0..2 * w {
                    dx[((pl * d + z / fd) * h + i / 2) * w + j / 2] += dy[k];
                    k += 1;
                }
            }
        }
    }
    dx
}
