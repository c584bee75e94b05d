//! Shared by the kernel test files: seeded inputs, the tolerance check, and one check per
//! op that runs every entry point of that op against the f64 reference on a given GPU and
//! shape. kernels.rs runs them at awkward shapes; engine.rs runs them again with the
//! storage-binding limit lowered on purpose, so that every launcher's split path is
//! exercised.
//!
//! Tolerance: |gpu - ref| <= atol + rtol * |ref|, with rtol = 1e-5 and atol = 1e-6 * k,
//! where k is the number of f32 terms a kernel adds up for one output (f32 rounding grows
//! with the length of the sum; inputs are uniform in [-1, 1] so terms are O(1)).
//! Backward checks start the gradient buffer at random values, because backward ADDS.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segfeat::ops;
use segfeat::{Gpu, GpuOptions, Tensor};

#[path = "reference.rs"]
pub mod reference;
use reference as r;

pub const RTOL: f64 = 1e-5;

/// atol for outputs that are sums of k products of O(1) values.
pub fn atol(k: usize) -> f64 {
    1e-6 * k.max(1) as f64
}

/// The GPU for tests; without an adapter the test fails and says how to get one.
pub fn gpu() -> Gpu {
    Gpu::with_options(GpuOptions {
        quiet: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh, empty folder for a test's files (under Cargo's target dir).
pub fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run the `segfeat` binary: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segfeat"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The tiny segmentation training the command-line tests share, as flag-value pairs: the
/// phantom at 32x32, n = 2, three patients, two epochs of two batches of two (about a
/// second on lavapipe).
pub const TINY_TRAIN: [(&str, &str); 8] = [
    ("--data", "phantom"),
    ("--size", "32"),
    ("--channels", "2"),
    ("--epochs", "2"),
    ("--batches-per-epoch", "2"),
    ("--batch", "2"),
    ("--patients", "N001,N002,N003"),
    ("--lr", "0.001"),
];

/// Run `segfeat train-seg` with [`TINY_TRAIN`] into `out`, `extra` flags replacing its
/// own (`--resume` stands alone), in the environment `env`: (exit status, stderr).
pub fn train_cli(
    out: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut args = vec!["train-seg".to_string()];
    for (flag, value) in TINY_TRAIN {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_segfeat"))
        .args(&args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).to_string())
}

/// A tiny model trained by [`train_cli`] into `dir/name`, with `extra` flags.
pub fn tiny_model(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let (st, err) = train_cli(&out, extra, &[]);
    assert!(st.success(), "tiny training failed: {err}");
    out
}

/// A GPU whose storage bindings are limited to `bytes`, so that launchers must split.
pub fn gpu_small_bindings(bytes: u64) -> Gpu {
    Gpu::with_options(GpuOptions {
        quiet: true,
        max_binding_bytes: Some(bytes),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn up(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_slice(gpu, shape, data).unwrap()
}

/// Assert |got - want| <= atol + rtol |want| everywhere; on failure print the worst element.
pub fn check(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    let mut bad = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = err - (atol + rtol * w.abs());
        if excess > 0.0 || !g.is_finite() {
            bad += 1;
            if worst.is_none_or(|(_, e)| excess > e) || !g.is_finite() {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {bad} of {} elements out of tolerance (atol {atol:e}, rtol {rtol:e}); worst at [{i}]: gpu {} vs ref {} (|diff| {:e})",
            got.len(),
            got[i],
            want[i],
            (got[i] as f64 - want[i]).abs()
        );
    }
}

fn plus(prior: &[f32], d: &[f64]) -> Vec<f64> {
    prior.iter().zip(d).map(|(&p, &x)| p as f64 + x).collect()
}

pub fn check_conv3x3(gpu: &Gpu, n: usize, cin: usize, cout: usize, h: usize, w: usize, seed: u64) {
    let tag = format!(
        "conv3x3 ({:?}) n{n} cin{cin} cout{cout} {h}x{w}",
        gpu.conv_tiling()
    );
    let mut g = rng(seed);
    let (x, wt, b) = (
        rand_vec(&mut g, n * cin * h * w),
        rand_vec(&mut g, cout * cin * 9),
        rand_vec(&mut g, cout),
    );
    let dy = rand_vec(&mut g, n * cout * h * w);
    let (tx, tw, tb) = (
        up(gpu, &[n, cin, h, w], &x),
        up(gpu, &[cout, cin, 3, 3], &wt),
        up(gpu, &[cout], &b),
    );
    let y = ops::conv3x3::forward(gpu, &tx, &tw, &tb).unwrap();
    let want = r::conv3x3(&f64s(&x), &f64s(&wt), &f64s(&b), n, cin, cout, h, w);
    check(
        &format!("{tag} forward"),
        &y.to_vec(gpu),
        &want,
        atol(cin * 9),
        RTOL,
    );
    // The naive kernel (one output per invocation), the tiled kernels' starting point.
    let naive = ops::conv3x3::forward_naive(gpu, &tx, &tw, &tb).unwrap();
    check(
        &format!("{tag} naive forward"),
        &naive.to_vec(gpu),
        &want,
        atol(cin * 9),
        RTOL,
    );
    // The activations fused into the epilogue (ELU's slope is at most 1, ReLU's 0 or 1,
    // so the convolution's tolerance carries over).
    use ops::conv3x3::Activation;
    for (act, want) in [
        (Activation::Elu, r::elu(&want)),
        (Activation::Relu, r::relu(&want)),
        (Activation::Leaky(0.1), r::leaky_relu(&want, 0.1)),
    ] {
        let y = ops::conv3x3::forward_act(gpu, &tx, &tw, &tb, act).unwrap();
        check(
            &format!("{tag} forward + {act:?}"),
            &y.to_vec(gpu),
            &want,
            atol(cin * 9),
            RTOL,
        );
    }

    let (dx, dw, db) = r::conv3x3_backward(&f64s(&dy), &f64s(&x), &f64s(&wt), n, cin, cout, h, w);
    let tdy = up(gpu, &[n, cout, h, w], &dy);
    let (px, pw, pb) = (
        rand_vec(&mut g, x.len()),
        rand_vec(&mut g, wt.len()),
        rand_vec(&mut g, cout),
    );
    let (tdx, tdw, tdb) = (
        up(gpu, &[n, cin, h, w], &px),
        up(gpu, &[cout, cin, 3, 3], &pw),
        up(gpu, &[cout], &pb),
    );
    ops::conv3x3::backward_input(gpu, &tdy, &tw, &tdx).unwrap();
    ops::conv3x3::backward_weight(gpu, &tdy, &tx, &tdw).unwrap();
    ops::conv3x3::backward_bias(gpu, &tdy, &tdb).unwrap();
    check(
        &format!("{tag} backward_input"),
        &tdx.to_vec(gpu),
        &plus(&px, &dx),
        atol(cout * 9),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n * h * w),
        RTOL,
    );
    check(
        &format!("{tag} backward_bias"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n * h * w),
        RTOL,
    );
    // The weight and bias gradients from one kernel (the fused convolution's backward).
    let (tdw, tdb) = (up(gpu, &[cout, cin, 3, 3], &pw), up(gpu, &[cout], &pb));
    ops::conv3x3::backward_weight_bias(gpu, &tdy, &tx, &tdw, Some(&tdb)).unwrap();
    check(
        &format!("{tag} backward_weight_bias dw"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n * h * w),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight_bias db"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n * h * w),
        RTOL,
    );
}

pub fn check_conv1x1(gpu: &Gpu, n: usize, cin: usize, cout: usize, h: usize, w: usize, seed: u64) {
    let tag = format!("conv1x1 n{n} cin{cin} cout{cout} {h}x{w}");
    let p = h * w;
    let mut g = rng(seed);
    let (x, wt, b) = (
        rand_vec(&mut g, n * cin * p),
        rand_vec(&mut g, cout * cin),
        rand_vec(&mut g, cout),
    );
    let dy = rand_vec(&mut g, n * cout * p);
    let (tx, tw, tb) = (
        up(gpu, &[n, cin, h, w], &x),
        up(gpu, &[cout, cin, 1, 1], &wt),
        up(gpu, &[cout], &b),
    );
    let y = ops::conv1x1::forward(gpu, &tx, &tw, &tb).unwrap();
    let want = r::conv1x1(&f64s(&x), &f64s(&wt), &f64s(&b), n, cin, cout, p);
    check(
        &format!("{tag} forward"),
        &y.to_vec(gpu),
        &want,
        atol(cin),
        RTOL,
    );

    let (dx, dw, db) = r::conv1x1_backward(&f64s(&dy), &f64s(&x), &f64s(&wt), n, cin, cout, p);
    let tdy = up(gpu, &[n, cout, h, w], &dy);
    let (px, pw, pb) = (
        rand_vec(&mut g, x.len()),
        rand_vec(&mut g, wt.len()),
        rand_vec(&mut g, cout),
    );
    let (tdx, tdw, tdb) = (
        up(gpu, &[n, cin, h, w], &px),
        up(gpu, &[cout, cin, 1, 1], &pw),
        up(gpu, &[cout], &pb),
    );
    ops::conv1x1::backward_input(gpu, &tdy, &tw, &tdx).unwrap();
    ops::conv1x1::backward_weight(gpu, &tdy, &tx, &tdw).unwrap();
    ops::conv1x1::backward_bias(gpu, &tdy, &tdb).unwrap();
    check(
        &format!("{tag} backward_input"),
        &tdx.to_vec(gpu),
        &plus(&px, &dx),
        atol(cout),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n * p),
        RTOL,
    );
    check(
        &format!("{tag} backward_bias"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n * p),
        RTOL,
    );
}

pub fn check_linear(gpu: &Gpu, n: usize, i: usize, o: usize, seed: u64) {
    let tag = format!("linear n{n} in{i} out{o}");
    let mut g = rng(seed);
    let (x, wt, b) = (
        rand_vec(&mut g, n * i),
        rand_vec(&mut g, o * i),
        rand_vec(&mut g, o),
    );
    let dy = rand_vec(&mut g, n * o);
    let (tx, tw, tb) = (
        up(gpu, &[n, i], &x),
        up(gpu, &[o, i], &wt),
        up(gpu, &[o], &b),
    );
    let y = ops::linear::forward(gpu, &tx, &tw, &tb).unwrap();
    check(
        &format!("{tag} forward"),
        &y.to_vec(gpu),
        &r::linear(&f64s(&x), &f64s(&wt), &f64s(&b), n, i, o),
        atol(i),
        RTOL,
    );

    let (dx, dw, db) = r::linear_backward(&f64s(&dy), &f64s(&x), &f64s(&wt), n, i, o);
    let tdy = up(gpu, &[n, o], &dy);
    let (px, pw, pb) = (
        rand_vec(&mut g, x.len()),
        rand_vec(&mut g, wt.len()),
        rand_vec(&mut g, o),
    );
    let (tdx, tdw, tdb) = (
        up(gpu, &[n, i], &px),
        up(gpu, &[o, i], &pw),
        up(gpu, &[o], &pb),
    );
    ops::linear::backward_input(gpu, &tdy, &tw, &tdx).unwrap();
    ops::linear::backward_weight(gpu, &tdy, &tx, &tdw).unwrap();
    ops::linear::backward_bias(gpu, &tdy, &tdb).unwrap();
    check(
        &format!("{tag} backward_input"),
        &tdx.to_vec(gpu),
        &plus(&px, &dx),
        atol(o),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n),
        RTOL,
    );
    check(
        &format!("{tag} backward_bias"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n),
        RTOL,
    );
}

/// elu and relu: forward and backward on a tensor of `shape` (inputs spread over [-3, 3]).
pub fn check_activations(gpu: &Gpu, shape: &[usize], seed: u64) {
    let numel: usize = shape.iter().product();
    let mut g = rng(seed);
    let x: Vec<f32> = rand_vec(&mut g, numel).iter().map(|v| 3.0 * v).collect();
    let dy = rand_vec(&mut g, numel);
    let prior = rand_vec(&mut g, numel);
    let (tx, tdy) = (up(gpu, shape, &x), up(gpu, shape, &dy));
    let tag = format!("{shape:?}");

    let y = ops::elu::forward(gpu, &tx).unwrap();
    check(
        &format!("elu_forward {tag}"),
        &y.to_vec(gpu),
        &r::elu(&f64s(&x)),
        atol(1),
        RTOL,
    );
    let tdx = up(gpu, shape, &prior);
    ops::elu::backward(gpu, &tx, &tdy, &tdx).unwrap();
    check(
        &format!("elu_backward {tag}"),
        &tdx.to_vec(gpu),
        &plus(&prior, &r::elu_backward(&f64s(&x), &f64s(&dy))),
        atol(1),
        RTOL,
    );

    // The derivative from the output (the fused conv3x3 + ELU's backward), on the GPU's y.
    let tdx = up(gpu, shape, &prior);
    ops::elu::backward_from_output(gpu, &y, &tdy, &tdx).unwrap();
    check(
        &format!("elu_backward_from_output {tag}"),
        &tdx.to_vec(gpu),
        &plus(&prior, &r::elu_backward(&f64s(&x), &f64s(&dy))),
        atol(1),
        RTOL,
    );

    let y = ops::relu::forward(gpu, &tx).unwrap();
    check(
        &format!("relu_forward {tag}"),
        &y.to_vec(gpu),
        &r::relu(&f64s(&x)),
        0.0,
        0.0,
    );
    let tdx = up(gpu, shape, &prior);
    ops::relu::backward(gpu, &tx, &tdy, &tdx).unwrap();
    check(
        &format!("relu_backward {tag}"),
        &tdx.to_vec(gpu),
        &plus(&prior, &r::relu_backward(&f64s(&x), &f64s(&dy))),
        atol(1),
        RTOL,
    );
    // From the output, as the fused conv3x3 + ReLU calls it.
    let tdx = up(gpu, shape, &prior);
    ops::relu::backward(gpu, &y, &tdy, &tdx).unwrap();
    check(
        &format!("relu_backward from the output {tag}"),
        &tdx.to_vec(gpu),
        &plus(&prior, &r::relu_backward(&f64s(&x), &f64s(&dy))),
        atol(1),
        RTOL,
    );
}

/// maxpool2 and upsample2 on (n, c, h, w) (h, w even). With `ties`, inputs are rounded
/// to a coarse grid so that many blocks hold equal maxima.
pub fn check_pool_upsample(
    gpu: &Gpu,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ties: bool,
    seed: u64,
) {
    let tag = format!("n{n} c{c} {h}x{w} ties={ties}");
    let mut g = rng(seed);
    let mut x = rand_vec(&mut g, n * c * h * w);
    if ties {
        x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
    }
    let planes = n * c;
    let tx = up(gpu, &[n, c, h, w], &x);
    let y = ops::maxpool2::forward(gpu, &tx).unwrap();
    check(
        &format!("maxpool2_forward {tag}"),
        &y.to_vec(gpu),
        &r::maxpool2(&f64s(&x), planes, h, w),
        0.0,
        0.0,
    );
    let dy = rand_vec(&mut g, planes * h * w / 4);
    let prior = rand_vec(&mut g, x.len());
    let tdx = up(gpu, &[n, c, h, w], &prior);
    ops::maxpool2::backward(gpu, &tx, &up(gpu, &[n, c, h / 2, w / 2], &dy), &tdx).unwrap();
    let want = plus(
        &prior,
        &r::maxpool2_backward(&f64s(&x), &f64s(&dy), planes, h, w),
    );
    check(
        &format!("maxpool2_backward {tag}"),
        &tdx.to_vec(gpu),
        &want,
        atol(1),
        RTOL,
    );

    let y = ops::upsample2::forward(gpu, &tx).unwrap();
    check(
        &format!("upsample2_forward {tag}"),
        &y.to_vec(gpu),
        &r::upsample2(&f64s(&x), planes, h, w),
        0.0,
        0.0,
    );
    let dy = rand_vec(&mut g, planes * 4 * h * w);
    let tdx = up(gpu, &[n, c, h, w], &prior);
    ops::upsample2::backward(gpu, &up(gpu, &[n, c, 2 * h, 2 * w], &dy), &tdx).unwrap();
    let want = plus(&prior, &r::upsample2_backward(&f64s(&dy), planes, h, w));
    check(
        &format!("upsample2_backward {tag}"),
        &tdx.to_vec(gpu),
        &want,
        atol(4),
        RTOL,
    );

    // Into and out of a channel slice c0 .. c0+C of a larger (N, C + 3, 2H, 2W) tensor (the
    // U-Net's upsample_concat): the slice as above, the other channels untouched.
    let (cd, c0, ohw) = (c + 3, 2, 4 * h * w);
    let channels = |v: &[f64], from: usize, count: usize| -> Vec<f64> {
        (0..n)
            .flat_map(|ni| v[(ni * cd + from) * ohw..(ni * cd + from + count) * ohw].to_vec())
            .collect()
    };
    let before = rand_vec(&mut g, n * cd * ohw);
    let big = up(gpu, &[n, cd, 2 * h, 2 * w], &before);
    ops::upsample2::forward_into(gpu, &tx, &big, c0).unwrap();
    let mut want = f64s(&before);
    let ups = r::upsample2(&f64s(&x), planes, h, w);
    for ni in 0..n {
        let dst = (ni * cd + c0) * ohw;
        want[dst..dst + c * ohw].copy_from_slice(&ups[ni * c * ohw..(ni + 1) * c * ohw]);
    }
    check(
        &format!("upsample2_forward into channels {c0}.. of {cd} {tag}"),
        &big.to_vec(gpu),
        &want,
        0.0,
        0.0,
    );
    let dbig = rand_vec(&mut g, n * cd * ohw);
    let tdx = up(gpu, &[n, c, h, w], &prior);
    let tdbig = up(gpu, &[n, cd, 2 * h, 2 * w], &dbig);
    ops::upsample2::backward_from(gpu, &tdbig, c0, &tdx).unwrap();
    let slice = channels(&f64s(&dbig), c0, c);
    let want = plus(&prior, &r::upsample2_backward(&slice, planes, h, w));
    check(
        &format!("upsample2_backward from channels {c0}.. of {cd} {tag}"),
        &tdx.to_vec(gpu),
        &want,
        atol(4),
        RTOL,
    );
}

pub fn check_concat(gpu: &Gpu, n: usize, ca: usize, cb: usize, h: usize, w: usize, seed: u64) {
    check_concat_shape(gpu, n, ca, cb, &[h, w], seed);
}

/// concat of (n, ca, spatial...) and (n, cb, spatial...): maps or volumes.
pub fn check_concat_shape(gpu: &Gpu, n: usize, ca: usize, cb: usize, spatial: &[usize], seed: u64) {
    let tag = format!("concat n{n} ca{ca} cb{cb} {spatial:?}");
    let p: usize = spatial.iter().product();
    let shape = |c: usize| -> Vec<usize> { [n, c].iter().chain(spatial).copied().collect() };
    let mut g = rng(seed);
    let (a, b) = (rand_vec(&mut g, n * ca * p), rand_vec(&mut g, n * cb * p));
    let (ta, tb) = (up(gpu, &shape(ca), &a), up(gpu, &shape(cb), &b));
    let y = ops::concat::forward(gpu, &[&ta, &tb]).unwrap();
    assert_eq!(y.shape(), &shape(ca + cb)[..]);
    check(
        &format!("{tag} forward"),
        &y.to_vec(gpu),
        &r::concat(&f64s(&a), &f64s(&b), n, ca, cb, p),
        0.0,
        0.0,
    );
    let dy = rand_vec(&mut g, n * (ca + cb) * p);
    let tdy = up(gpu, &shape(ca + cb), &dy);
    let (pa, pb) = (rand_vec(&mut g, a.len()), rand_vec(&mut g, b.len()));
    let (tda, tdb) = (up(gpu, &shape(ca), &pa), up(gpu, &shape(cb), &pb));
    ops::concat::split_add(gpu, &tdy, &tda, 0).unwrap();
    ops::concat::split_add(gpu, &tdy, &tdb, ca).unwrap();
    let (da, db) = r::concat_backward(&f64s(&dy), n, ca, cb, p);
    check(
        &format!("{tag} backward a"),
        &tda.to_vec(gpu),
        &plus(&pa, &da),
        atol(1),
        RTOL,
    );
    check(
        &format!("{tag} backward b"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(1),
        RTOL,
    );
}

/// Every conv3x3x3 entry point (forward, naive, fused activations, the three backwards,
/// the fused weight and bias gradient) against the f64 reference.
pub fn check_conv3x3x3(
    gpu: &Gpu,
    (n, cin, cout): (usize, usize, usize),
    (d, h, w): (usize, usize, usize),
    seed: u64,
) {
    use ops::conv3x3::Activation;
    use ops::conv3x3x3 as c3;
    let tag = format!("conv3x3x3 n{n} cin{cin} cout{cout} {d}x{h}x{w}");
    let mut g = rng(seed);
    let v = d * h * w;
    let (x, wt, b) = (
        rand_vec(&mut g, n * cin * v),
        rand_vec(&mut g, cout * cin * 27),
        rand_vec(&mut g, cout),
    );
    let dy = rand_vec(&mut g, n * cout * v);
    let (tx, tw, tb) = (
        up(gpu, &[n, cin, d, h, w], &x),
        up(gpu, &[cout, cin, 3, 3, 3], &wt),
        up(gpu, &[cout], &b),
    );
    let want = r::conv3x3x3(&f64s(&x), &f64s(&wt), &f64s(&b), (n, cin, cout), (d, h, w));
    let k = atol(cin * 27);
    let y = c3::forward(gpu, &tx, &tw, &tb).unwrap();
    check(&format!("{tag} forward"), &y.to_vec(gpu), &want, k, RTOL);
    let naive = c3::forward_naive(gpu, &tx, &tw, &tb).unwrap();
    check(
        &format!("{tag} naive forward"),
        &naive.to_vec(gpu),
        &want,
        k,
        RTOL,
    );
    for (act, want) in [
        (Activation::Elu, r::elu(&want)),
        (Activation::Relu, r::relu(&want)),
        (Activation::Leaky(0.1), r::leaky_relu(&want, 0.1)),
    ] {
        let y = c3::forward_act(gpu, &tx, &tw, &tb, act).unwrap();
        check(
            &format!("{tag} forward + {act:?}"),
            &y.to_vec(gpu),
            &want,
            k,
            RTOL,
        );
    }
    let (dx, dw, db) =
        r::conv3x3x3_backward(&f64s(&dy), &f64s(&x), &f64s(&wt), (n, cin, cout), (d, h, w));
    let tdy = up(gpu, &[n, cout, d, h, w], &dy);
    let (px, pw, pb) = (
        rand_vec(&mut g, x.len()),
        rand_vec(&mut g, wt.len()),
        rand_vec(&mut g, cout),
    );
    let (tdx, tdw, tdb) = (
        up(gpu, &[n, cin, d, h, w], &px),
        up(gpu, &[cout, cin, 3, 3, 3], &pw),
        up(gpu, &[cout], &pb),
    );
    c3::backward_input(gpu, &tdy, &tw, &tdx).unwrap();
    c3::backward_weight(gpu, &tdy, &tx, &tdw).unwrap();
    c3::backward_bias(gpu, &tdy, &tdb).unwrap();
    check(
        &format!("{tag} backward_input"),
        &tdx.to_vec(gpu),
        &plus(&px, &dx),
        atol(cout * 27),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n * v),
        RTOL,
    );
    check(
        &format!("{tag} backward_bias"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n * v),
        RTOL,
    );
    let (tdw, tdb) = (up(gpu, &[cout, cin, 3, 3, 3], &pw), up(gpu, &[cout], &pb));
    c3::backward_weight_bias(gpu, &tdy, &tx, &tdw, Some(&tdb)).unwrap();
    check(
        &format!("{tag} backward_weight_bias dw"),
        &tdw.to_vec(gpu),
        &plus(&pw, &dw),
        atol(n * v),
        RTOL,
    );
    check(
        &format!("{tag} backward_weight_bias db"),
        &tdb.to_vec(gpu),
        &plus(&pb, &db),
        atol(n * v),
        RTOL,
    );
}

/// maxpool3d and upsample3d by fd x 2 x 2, forward and backward; with `ties`, values on a
/// coarse grid so that blocks hold equal maxima.
pub fn check_pool3d(
    gpu: &Gpu,
    (n, c): (usize, usize),
    (d, h, w): (usize, usize, usize),
    fd: usize,
    ties: bool,
    seed: u64,
) {
    use ops::pool3d as p3;
    let tag = format!("n{n} c{c} {d}x{h}x{w} by {fd}x2x2 ties={ties}");
    let mut g = rng(seed);
    let planes = n * c;
    let mut x = rand_vec(&mut g, planes * d * h * w);
    if ties {
        x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
    }
    let tx = up(gpu, &[n, c, d, h, w], &x);
    let y = p3::maxpool_forward(gpu, &tx, fd).unwrap();
    assert_eq!(y.shape(), &[n, c, d / fd, h / 2, w / 2]);
    check(
        &format!("maxpool3d_forward {tag}"),
        &y.to_vec(gpu),
        &r::maxpool3d(&f64s(&x), planes, (d, h, w), fd),
        0.0,
        0.0,
    );
    let dy = rand_vec(&mut g, y.numel());
    let prior = rand_vec(&mut g, x.len());
    let tdx = up(gpu, &[n, c, d, h, w], &prior);
    p3::maxpool_backward(gpu, &tx, &up(gpu, y.shape(), &dy), &tdx, fd).unwrap();
    let want = plus(
        &prior,
        &r::maxpool3d_backward(&f64s(&x), &f64s(&dy), planes, (d, h, w), fd),
    );
    check(
        &format!("maxpool3d_backward {tag}"),
        &tdx.to_vec(gpu),
        &want,
        atol(1),
        RTOL,
    );

    let y = p3::upsample_forward(gpu, &tx, fd).unwrap();
    assert_eq!(y.shape(), &[n, c, d * fd, 2 * h, 2 * w]);
    check(
        &format!("upsample3d_forward {tag}"),
        &y.to_vec(gpu),
        &r::upsample3d(&f64s(&x), planes, (d, h, w), fd),
        0.0,
        0.0,
    );
    let dy = rand_vec(&mut g, y.numel());
    let tdx = up(gpu, &[n, c, d, h, w], &prior);
    p3::upsample_backward(gpu, &up(gpu, y.shape(), &dy), &tdx, fd).unwrap();
    let want = plus(
        &prior,
        &r::upsample3d_backward(&f64s(&dy), planes, (d, h, w), fd),
    );
    check(
        &format!("upsample3d_backward {tag}"),
        &tdx.to_vec(gpu),
        &want,
        atol(4 * fd),
        RTOL,
    );
}

/// softmax, softmax_ce forward and backward. `hw` = None is the per-sample form (N, C).
/// Some labels are out of range (ignored, weight 0).
pub fn check_softmax_ce(gpu: &Gpu, n: usize, c: usize, hw: Option<(usize, usize)>, seed: u64) {
    let tag = format!("softmax_ce n{n} c{c} {hw:?}");
    let p = hw.map_or(1, |(h, w)| h * w);
    let (zshape, lshape) = match hw {
        Some((h, w)) => (vec![n, c, h, w], vec![n, h, w]),
        None => (vec![n, c], vec![n]),
    };
    let mut g = rng(seed);
    let z: Vec<f32> = rand_vec(&mut g, n * c * p)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let labels: Vec<usize> = (0..n * p)
        .map(|i| if i % 7 == 3 { c } else { g.random_range(0..c) })
        .collect();
    let cw: Vec<f32> = (0..c).map(|_| g.random_range(0.1f32..1.0)).collect();
    let tz = up(gpu, &zshape, &z);
    let tl = up(
        gpu,
        &lshape,
        &labels.iter().map(|&l| l as f32).collect::<Vec<_>>(),
    );
    let tw = up(gpu, &[c], &cw);

    let s = ops::softmax_ce::softmax(gpu, &tz).unwrap();
    check(
        &format!("{tag} softmax"),
        &s.to_vec(gpu),
        &r::softmax(&f64s(&z), n, c, p),
        atol(c),
        RTOL,
    );

    let (loss, _wsum) = ops::softmax_ce::forward(gpu, &tz, &tl, &tw).unwrap();
    let want = r::softmax_ce(&f64s(&z), &labels, &f64s(&cw), n, c, p);
    check(
        &format!("{tag} loss"),
        &loss.to_vec(gpu),
        &[want],
        atol(c * n * p),
        RTOL,
    );

    let (_, wsum) = ops::softmax_ce::forward(gpu, &tz, &tl, &tw).unwrap();
    let dl = 0.7f32;
    let prior = rand_vec(&mut g, z.len());
    let tdz = up(gpu, &zshape, &prior);
    ops::softmax_ce::backward(gpu, &tz, &tl, &tw, &up(gpu, &[1], &[dl]), &wsum, &tdz).unwrap();
    let want = plus(
        &prior,
        &r::softmax_ce_backward(&f64s(&z), &labels, &f64s(&cw), n, c, p, dl as f64),
    );
    check(
        &format!("{tag} backward"),
        &tdz.to_vec(gpu),
        &want,
        atol(c),
        RTOL,
    );
}

/// Three Adam steps on parameters of `sizes` against the f64 reference.
pub fn check_adam(gpu: &Gpu, sizes: &[usize], seed: u64) {
    // One optimizer over parameters of these sizes (pairs of them share a dispatch), three
    // steps, each parameter against its own reference.
    let mut g = rng(seed);
    let p0: Vec<Vec<f32>> = sizes.iter().map(|&n| rand_vec(&mut g, n)).collect();
    let tp: Vec<Tensor> = sizes
        .iter()
        .zip(&p0)
        .map(|(&n, p)| up(gpu, &[n], p))
        .collect();
    let params: Vec<&Tensor> = tp.iter().collect();
    let mut opt = ops::Adam::new(gpu, &params, 1e-2).unwrap();
    let mut want: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = p0
        .iter()
        .map(|p| (f64s(p), vec![0.0; p.len()], vec![0.0; p.len()]))
        .collect();
    for t in 1..=3 {
        let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| rand_vec(&mut g, n)).collect();
        let tg: Vec<Tensor> = sizes
            .iter()
            .zip(&grads)
            .map(|(&n, d)| up(gpu, &[n], d))
            .collect();
        opt.step(gpu, &params, &tg.iter().collect::<Vec<_>>())
            .unwrap();
        for ((p, m, v), d) in want.iter_mut().zip(&grads) {
            r::adam(p, &f64s(d), m, v, 1e-2, 0.9, 0.999, 1e-8, t);
        }
    }
    for ((t, (p, _, _)), n) in tp.iter().zip(&want).zip(sizes) {
        check(
            &format!("adam n{n} of {sizes:?}"),
            &t.to_vec(gpu),
            p,
            atol(4),
            RTOL,
        );
    }
}

/// fill, scale, add_into and the sum reduction on `numel` elements.
pub fn check_small_ops(gpu: &Gpu, numel: usize, seed: u64) {
    let mut g = rng(seed);
    let a = rand_vec(&mut g, numel);
    let b = rand_vec(&mut g, numel);
    let ta = up(gpu, &[numel], &a);
    ops::elementwise::add_into(gpu, &ta, &up(gpu, &[numel], &b)).unwrap();
    let sum: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| *x as f64 + *y as f64)
        .collect();
    check(
        &format!("add_into n{numel}"),
        &ta.to_vec(gpu),
        &sum,
        atol(1),
        RTOL,
    );
    ops::elementwise::scale(gpu, &ta, -2.5).unwrap();
    let scaled: Vec<f64> = sum.iter().map(|x| x * -2.5).collect();
    check(
        &format!("scale n{numel}"),
        &ta.to_vec(gpu),
        &scaled,
        atol(1),
        RTOL,
    );
    let total = ops::reduce::sum(gpu, &ta).unwrap();
    check(
        &format!("sum_reduce n{numel}"),
        &total.to_vec(gpu),
        &[scaled.iter().sum()],
        atol(numel),
        RTOL,
    );
    ops::elementwise::fill(gpu, &ta, 0.25).unwrap();
    check(
        &format!("fill n{numel}"),
        &ta.to_vec(gpu),
        &vec![0.25; numel],
        0.0,
        0.0,
    );
}

/// The composite network of the tape check, small enough for finite differences:
///   image (N,1,H,W) -> conv3x3(1->A) -> ELU =: skip -> maxpool2 -> conv3x3(A->B) -> ELU
///   (the second convolution with its ELU fused, as in the U-Net; the first as two ops)
///   -> upsample2 -> concat(skip, .) -> conv1x1(A+B -> C) -> softmax_ce(labels, class w)
/// The skip is used twice (by the pool and by the concat), as in the U-Net.
/// Parameters, image, labels and class weights of the composite network.
pub type CompositeData = (Vec<Vec<f32>>, Vec<f32>, Vec<usize>, Vec<f32>);

pub struct Composite {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub a: usize,
    pub b: usize,
    pub c: usize,
}

impl Composite {
    /// Parameter shapes in order: w1, b1, w2, b2, w3, b3.
    pub fn shapes(&self) -> Vec<Vec<usize>> {
        let (a, b, c) = (self.a, self.b, self.c);
        vec![
            vec![a, 1, 3, 3],
            vec![a],
            vec![b, a, 3, 3],
            vec![b],
            vec![c, a + b, 1, 1],
            vec![c],
        ]
    }

    /// Seeded parameters (uniform in [-0.5, 0.5]), image, labels and class weights.
    pub fn data(&self, seed: u64) -> CompositeData {
        let mut g = rng(seed);
        let params = self
            .shapes()
            .iter()
            .map(|s| {
                rand_vec(&mut g, s.iter().product())
                    .iter()
                    .map(|v| v * 0.5)
                    .collect()
            })
            .collect();
        let image = rand_vec(&mut g, self.n * self.h * self.w);
        let labels = (0..self.n * self.h * self.w)
            .map(|_| g.random_range(0..self.c))
            .collect();
        let cw = (0..self.c).map(|_| g.random_range(0.2f32..1.0)).collect();
        (params, image, labels, cw)
    }

    /// Upload `data`'s parameters, image, labels (as f32) and class weights.
    pub fn upload(&self, gpu: &Gpu, data: &CompositeData) -> (Vec<Tensor>, Tensor, Tensor, Tensor) {
        let (params, image, labels, cw) = data;
        let tensors = params
            .iter()
            .zip(self.shapes())
            .map(|(p, s)| up(gpu, &s, p))
            .collect();
        let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        (
            tensors,
            up(gpu, &[self.n, 1, self.h, self.w], image),
            up(gpu, &[self.n, self.h, self.w], &labels),
            up(gpu, &[self.c], cw),
        )
    }

    /// The loss on the GPU tape.
    pub fn loss_gpu(
        &self,
        tape: &segfeat::Tape,
        p: &[segfeat::Var],
        image: &Tensor,
        labels: &Tensor,
        cw: &Tensor,
    ) -> segfeat::Var {
        let x = tape.constant(image);
        let skip = ops::elu(tape, &ops::conv3x3(tape, &x, &p[0], &p[1]).unwrap()).unwrap();
        let down = ops::maxpool2(tape, &skip).unwrap();
        let mid = ops::conv3x3_elu(tape, &down, &p[2], &p[3]).unwrap();
        let upv = ops::upsample2(tape, &mid).unwrap();
        let cat = ops::concat(tape, &[&skip, &upv]).unwrap();
        let logits = ops::conv1x1(tape, &cat, &p[4], &p[5]).unwrap();
        ops::softmax_ce(tape, &logits, labels, cw).unwrap()
    }

    /// The same loss in f64 from the references.
    pub fn loss_ref(&self, p: &[Vec<f64>], image: &[f64], labels: &[usize], cw: &[f64]) -> f64 {
        let (n, h, w, a, b, c) = (self.n, self.h, self.w, self.a, self.b, self.c);
        let skip = r::elu(&r::conv3x3(image, &p[0], &p[1], n, 1, a, h, w));
        let down = r::maxpool2(&skip, n * a, h, w);
        let mid = r::elu(&r::conv3x3(&down, &p[2], &p[3], n, a, b, h / 2, w / 2));
        let upv = r::upsample2(&mid, n * b, h / 2, w / 2);
        let cat = r::concat(&skip, &upv, n, a, b, h * w);
        let logits = r::conv1x1(&cat, &p[4], &p[5], n, a + b, c, h * w);
        r::softmax_ce(&logits, labels, cw, n, c, h * w)
    }
}

/// leaky ReLU, dropout and global average pooling: forward and backward.
pub fn check_regularisers(gpu: &Gpu, shape: &[usize], seed: u64) {
    use ops::dropout::DropoutKey;
    let numel: usize = shape.iter().product();
    let mut g = rng(seed);
    let x: Vec<f32> = rand_vec(&mut g, numel).iter().map(|v| 3.0 * v).collect();
    let dy = rand_vec(&mut g, numel);
    let prior = rand_vec(&mut g, numel);
    let (tx, tdy) = (up(gpu, shape, &x), up(gpu, shape, &dy));
    let tag = format!("{shape:?}");
    for a in [0.0f32, 0.01, 0.3] {
        let y = ops::leaky_relu::forward(gpu, &tx, a).unwrap();
        let want = r::leaky_relu(&f64s(&x), a as f64);
        check(
            &format!("leaky_relu_forward a={a} {tag}"),
            &y.to_vec(gpu),
            &want,
            atol(1),
            RTOL,
        );
        let want_dx = plus(
            &prior,
            &r::leaky_relu_backward(&f64s(&x), &f64s(&dy), a as f64),
        );
        for (what, from) in [("x", &tx), ("the output", &y)] {
            let tdx = up(gpu, shape, &prior);
            ops::leaky_relu::backward(gpu, from, &tdy, &tdx, a).unwrap();
            check(
                &format!("leaky_relu_backward from {what} a={a} {tag}"),
                &tdx.to_vec(gpu),
                &want_dx,
                atol(1),
                RTOL,
            );
        }
    }
    for p in [0.0f32, 0.25, 0.5] {
        let key = DropoutKey {
            seed: seed + 7,
            step: 3,
            layer: 1,
        };
        let y = ops::dropout::forward(gpu, &tx, p, key).unwrap();
        let keep: Vec<bool> = (0..numel as u32)
            .map(|i| ops::dropout::keeps(key, p, i))
            .collect();
        let want = r::dropout(&f64s(&x), &keep, p as f64);
        check(
            &format!("dropout_forward p={p} {tag}"),
            &y.to_vec(gpu),
            &want,
            atol(1),
            RTOL,
        );
        let tdx = up(gpu, shape, &prior);
        ops::dropout::backward(gpu, &tdy, &tdx, p, key).unwrap();
        let want_dx = plus(&prior, &r::dropout(&f64s(&dy), &keep, p as f64));
        check(
            &format!("dropout_backward p={p} {tag}"),
            &tdx.to_vec(gpu),
            &want_dx,
            atol(1),
            RTOL,
        );
        // The same key gives the same bits; another step another mask.
        let again = ops::dropout::forward(gpu, &tx, p, key).unwrap().to_vec(gpu);
        assert_eq!(
            again,
            y.to_vec(gpu),
            "dropout p={p} {tag}: not deterministic"
        );
        if p > 0.0 && numel >= 64 {
            let other = DropoutKey { step: 4, ..key };
            let o = ops::dropout::forward(gpu, &tx, p, other)
                .unwrap()
                .to_vec(gpu);
            assert_ne!(
                o,
                y.to_vec(gpu),
                "dropout p={p} {tag}: step 4 drew step 3's mask"
            );
            let dropped = keep.iter().filter(|k| !**k).count() as f64 / numel as f64;
            assert!(
                (dropped - p as f64).abs()
                    < 4.0 * (p as f64 * (1.0 - p as f64) / numel as f64).sqrt() + 1e-9,
                "dropout p={p} {tag}: dropped a fraction {dropped}"
            );
        }
    }
    if shape.len() == 4 {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let y = ops::gap::forward(gpu, &tx).unwrap();
        check(
            &format!("gap_forward {tag}"),
            &y.to_vec(gpu),
            &r::gap(&f64s(&x), n * c, h * w),
            atol(h * w) / (h * w) as f64,
            RTOL,
        );
        let gdy = rand_vec(&mut g, n * c);
        let tdx = up(gpu, shape, &prior);
        ops::gap::backward(gpu, &up(gpu, &[n, c], &gdy), &tdx).unwrap();
        let want = plus(&prior, &r::gap_backward(&f64s(&gdy), n * c, h * w));
        check(
            &format!("gap_backward {tag}"),
            &tdx.to_vec(gpu),
            &want,
            atol(1),
            RTOL,
        );
    }
}

/// Batch normalisation on `shape` ((N, C, H, W) or (N, C)): training and inference
/// forwards, the running statistics, and both backwards.
pub fn check_batchnorm(gpu: &Gpu, shape: &[usize], seed: u64) {
    let (n, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    let numel = n * c * hw;
    let mut g = rng(seed);
    // An offset and a scale per channel, so that normalising has work to do.
    let x: Vec<f32> = rand_vec(&mut g, numel)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / hw) % c;
            3.0 + ch as f32 + (1.0 + ch as f32 * 0.5) * v
        })
        .collect();
    let gamma: Vec<f32> = rand_vec(&mut g, c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = rand_vec(&mut g, c);
    let run0: Vec<f32> = rand_vec(&mut g, 2 * c)
        .iter()
        .enumerate()
        .map(|(i, v)| if i < c { *v } else { 1.5 + v })
        .collect();
    let dy = rand_vec(&mut g, numel);
    let tag = format!("batchnorm {shape:?}");
    let (tx, tg, tb, tdy) = (
        up(gpu, shape, &x),
        up(gpu, &[c], &gamma),
        up(gpu, &[c], &beta),
        up(gpu, shape, &dy),
    );
    let xf = f64s(&x);
    let (gf, bf) = (f64s(&gamma), f64s(&beta));
    // Training: batch statistics, running averages moved by MOMENTUM.
    let run = up(gpu, &[2, c], &run0);
    let (y, stats) = ops::batchnorm::forward_train(gpu, &tx, &tg, &tb, &run).unwrap();
    let (want, mean, var) = r::batchnorm(&xf, &gf, &bf, n, c, hw, None);
    // (x - mean) / std is O(1) after normalisation; its error is that of the M-term sums.
    check(
        &format!("{tag} forward (training)"),
        &y.to_vec(gpu),
        &want,
        atol(n * hw) * 4.0,
        RTOL * 10.0,
    );
    let m = ops::batchnorm::MOMENTUM as f64;
    let count = (n * hw) as f64;
    let want_run: Vec<f64> = (0..2 * c)
        .map(|i| {
            let (old, batch) = if i < c {
                (run0[i] as f64, mean[i])
            } else {
                (run0[i] as f64, var[i - c] * count / (count - 1.0).max(1.0))
            };
            (1.0 - m) * old + m * batch
        })
        .collect();
    check(
        &format!("{tag} running statistics"),
        &run.to_vec(gpu),
        &want_run,
        atol(n * hw) * 10.0,
        RTOL * 10.0,
    );
    // Backward (training), then inference: the running statistics, which stay as they
    // are, and the frozen backward.
    let (px, pg, pb) = (
        rand_vec(&mut g, numel),
        rand_vec(&mut g, c),
        rand_vec(&mut g, c),
    );
    let backward = |what: &str,
                    stats: &segfeat::Tensor,
                    frozen: bool,
                    want: (Vec<f64>, Vec<f64>, Vec<f64>),
                    atol_dx: f64| {
        let (tdx, tdg, tdb) = (up(gpu, shape, &px), up(gpu, &[c], &pg), up(gpu, &[c], &pb));
        ops::batchnorm::backward(
            gpu,
            &tx,
            &tdy,
            &tg,
            stats,
            frozen,
            Some(&tdx),
            Some((&tdg, &tdb)),
        )
        .unwrap();
        check(
            &format!("{tag} {what} dx"),
            &tdx.to_vec(gpu),
            &plus(&px, &want.0),
            atol_dx,
            RTOL * 10.0,
        );
        check(
            &format!("{tag} {what} dgamma"),
            &tdg.to_vec(gpu),
            &plus(&pg, &want.1),
            atol(n * hw) * 10.0,
            RTOL * 10.0,
        );
        check(
            &format!("{tag} {what} dbeta"),
            &tdb.to_vec(gpu),
            &plus(&pb, &want.2),
            atol(n * hw),
            RTOL,
        );
    };
    let want = r::batchnorm_backward(&xf, &f64s(&dy), &gf, n, c, hw);
    backward("backward", &stats, false, want, atol(n * hw) * 10.0);
    let run = up(gpu, &[2, c], &run0);
    let (y, stats) = ops::batchnorm::forward_inference(gpu, &tx, &tg, &tb, &run).unwrap();
    let frozen = (
        run0[..c].iter().map(|&v| v as f64).collect::<Vec<_>>(),
        run0[c..].iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    let (want, _, _) = r::batchnorm(&xf, &gf, &bf, n, c, hw, Some(frozen.clone()));
    check(
        &format!("{tag} forward (inference)"),
        &y.to_vec(gpu),
        &want,
        atol(1) * 10.0,
        RTOL * 10.0,
    );
    assert_eq!(
        run.to_vec(gpu),
        run0,
        "{tag}: inference moved the running statistics"
    );
    let want = r::batchnorm_backward_frozen(&xf, &f64s(&dy), &gf, &frozen, n, c, hw);
    backward("frozen backward", &stats, true, want, atol(1) * 10.0);
}
