//! The autodiff tape: the composite network's parameter gradients from the GPU tape
//! against finite differences of the f64 reference; a tensor used twice gets the sum of
//! its gradients; no_grad records nothing; backward releases what it used; the fused
//! convolution + activation gives what the two ops give, and the fused upsample + concat
//! what the three ops give.
//!
//! Tolerance for GPU-vs-finite-difference gradients: |gpu - fd| <= 2e-6 + 1e-4 |fd|. The
//! GPU runs the whole chain in f32 (loss ~ 1, every kernel exact to ~1e-7 relative), so
//! the gradients carry a few 1e-7 of absolute error; the f64 finite difference is exact
//! to ~1e-9.

mod common;
use common::reference as r;
use common::*;
use segfeat::{ops, Tape};

#[test]
fn composite_gradients_match_finite_differences() {
    let net = Composite {
        n: 2,
        h: 6,
        w: 8,
        a: 3,
        b: 4,
        c: 5,
    };
    let gpu = gpu();
    let data = net.data(7);
    let (tensors, timg, tlab, tcw) = net.upload(&gpu, &data);
    let (params, image, labels, cw) = data;
    let tape = Tape::new(&gpu);
    let vars: Vec<_> = tensors.iter().map(|t| tape.param(t)).collect();
    let loss = net.loss_gpu(&tape, &vars, &timg, &tlab, &tcw);
    let grads = tape.backward(&loss).unwrap();
    assert!(tape.is_empty(), "backward consumes the tape");

    let p64: Vec<Vec<f64>> = params.iter().map(|p| f64s(p)).collect();
    let (img64, cw64) = (f64s(&image), f64s(&cw));
    let want_loss = net.loss_ref(&p64, &img64, &labels, &cw64);
    check(
        "composite loss",
        &loss.value.to_vec(&gpu),
        &[want_loss],
        1e-6,
        1e-5,
    );

    let names = [
        "conv1 weight",
        "conv1 bias",
        "conv2 weight",
        "conv2 bias",
        "conv1x1 weight",
        "conv1x1 bias",
    ];
    for (k, var) in vars.iter().enumerate() {
        let f = |x: &[f64]| {
            let mut p = p64.clone();
            p[k] = x.to_vec();
            net.loss_ref(&p, &img64, &labels, &cw64)
        };
        let fd = r::finite_diff(&f, &p64[k], 1e-6);
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient reached {}", names[k]))
            .to_vec(&gpu);
        check(&format!("d loss / d {}", names[k]), &got, &fd, 2e-6, 1e-4);
    }
}

#[test]
fn a_tensor_used_twice_gets_the_sum_of_both_gradients() {
    let gpu = gpu();
    let (n, c, h, w) = (2, 3, 4, 5);
    let mut g = rng(3);
    let x = rand_vec(&mut g, n * c * h * w);
    let labels: Vec<usize> = (0..n * h * w).map(|i| i % (2 * c)).collect();
    let cw: Vec<f32> = (0..2 * c).map(|k| 0.5 + 0.1 * k as f32).collect();

    let tape = Tape::new(&gpu);
    let xv = tape.param(&up(&gpu, &[n, c, h, w], &x));
    let both = ops::concat(&tape, &[&xv, &xv]).unwrap(); // x used twice
    let tl = up(
        &gpu,
        &[n, h, w],
        &labels.iter().map(|&l| l as f32).collect::<Vec<_>>(),
    );
    let loss = ops::softmax_ce(&tape, &both, &tl, &up(&gpu, &[2 * c], &cw)).unwrap();
    let grads = tape.backward(&loss).unwrap();

    let x64 = f64s(&x);
    let z = r::concat(&x64, &x64, n, c, c, h * w);
    let dz = r::softmax_ce_backward(&z, &labels, &f64s(&cw), n, 2 * c, h * w, 1.0);
    let (da, db) = r::concat_backward(&dz, n, c, c, h * w);
    let want: Vec<f64> = da.iter().zip(&db).map(|(a, b)| a + b).collect();
    check(
        "gradient of x used twice",
        &grads.get(&xv).unwrap().to_vec(&gpu),
        &want,
        atol(2 * c),
        RTOL,
    );
}

#[test]
fn fused_conv_activation_matches_the_two_ops() {
    // y = act(conv3x3(x) + b) as one node (the activation in the kernel's epilogue, its
    // derivative taken from y, the flipped weights packed with the forward's) against
    // conv3x3 then the activation as two nodes: the same values, and the same gradients
    // of sum(y) (backward seeds y with ones) to x, w and b. ReLU's dx and dw are the same
    // bits (the same mask, the same sums); ELU's derivative y + 1 differs from exp(z) only by the
    // rounding of y, so its gradients agree to that. Two shapes: more output channels
    // than input ones, and the other way round (the two packings differ in size).
    let gpu = gpu();
    for (seed, &(n, cin, cout, h, w)) in [(2, 3, 5, 6, 7), (1, 11, 3, 5, 4)].iter().enumerate() {
        let mut g = rng(21 + seed as u64);
        let x = up(&gpu, &[n, cin, h, w], &rand_vec(&mut g, n * cin * h * w));
        let wt = up(&gpu, &[cout, cin, 3, 3], &rand_vec(&mut g, cout * cin * 9));
        let b = up(&gpu, &[cout], &rand_vec(&mut g, cout));
        check_fused(&gpu, &x, &wt, &b, (n, cout, h, w));
    }
}

fn check_fused(
    gpu: &segfeat::Gpu,
    x: &segfeat::Tensor,
    wt: &segfeat::Tensor,
    b: &segfeat::Tensor,
    (n, cout, h, w): (usize, usize, usize, usize),
) {
    type Op = fn(&Tape, &segfeat::Var) -> segfeat::Result<segfeat::Var>;
    type Fused =
        fn(&Tape, &segfeat::Var, &segfeat::Var, &segfeat::Var) -> segfeat::Result<segfeat::Var>;
    let cases: [(&str, Op, Fused, bool); 2] = [
        ("elu", ops::elu, ops::conv3x3_elu, false),
        ("relu", ops::relu, ops::conv3x3_relu, true),
    ];
    let cin = x.shape()[1];
    for (name, act, fused, exact) in cases {
        let run = |fuse: bool| {
            let tape = Tape::new(gpu);
            let (xv, wv, bv) = (tape.param(x), tape.param(wt), tape.param(b));
            let y = if fuse {
                fused(&tape, &xv, &wv, &bv).unwrap()
            } else {
                act(&tape, &ops::conv3x3(&tape, &xv, &wv, &bv).unwrap()).unwrap()
            };
            assert_eq!(tape.len(), if fuse { 1 } else { 2 });
            let grads = tape.backward(&y).unwrap();
            let get = |v| grads.get(v).unwrap().to_vec(gpu);
            (y.value.to_vec(gpu), get(&xv), get(&wv), get(&bv))
        };
        let (two, one) = (run(false), run(true));
        let tag = format!("{name} cin{cin} cout{cout}");
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.0), bits(&two.0), "{tag}: fused forward differs");
        // db is summed in shares by the weight gradient's kernel in the fused node, and in
        // one serial sum per channel by the plain convolution's: the same up to rounding.
        for (what, a, b, scale, same_order) in [
            ("dx", &one.1, &two.1, cout * 9, true),
            ("dw", &one.2, &two.2, n * h * w, true),
            ("db", &one.3, &two.3, n * h * w, false),
        ] {
            if exact && same_order {
                assert_eq!(bits(a), bits(b), "{tag}: fused {what} differs");
            } else {
                check(
                    &format!("{tag} fused {what}"),
                    a,
                    &f64s(b),
                    atol(scale),
                    RTOL,
                );
            }
        }
    }
}

#[test]
fn upsample_concat_matches_the_three_ops() {
    // concat(upsample2(x), skip) as one node against upsample2 then concat: the same bits
    // for the values and for both gradients of sum(elu(y)) (pure copies and the same
    // four-term sums).
    let gpu = gpu();
    let (n, cx, cs, h, w) = (2, 3, 2, 3, 5);
    let mut g = rng(31);
    let x = up(&gpu, &[n, cx, h, w], &rand_vec(&mut g, n * cx * h * w));
    let skip = up(
        &gpu,
        &[n, cs, 2 * h, 2 * w],
        &rand_vec(&mut g, n * cs * 4 * h * w),
    );
    let run = |fuse: bool| {
        let tape = Tape::new(&gpu);
        let (xv, sv) = (tape.param(&x), tape.param(&skip));
        let y = if fuse {
            ops::upsample_concat(&tape, &xv, &sv).unwrap()
        } else {
            let u = ops::upsample2(&tape, &xv).unwrap();
            ops::concat(&tape, &[&u, &sv]).unwrap()
        };
        // A non-uniform gradient into y: ELU's derivative varies per element.
        let z = ops::elu(&tape, &y).unwrap();
        let grads = tape.backward(&z).unwrap();
        let get = |v| grads.get(v).unwrap().to_vec(&gpu);
        (y.value.to_vec(&gpu), get(&xv), get(&sv))
    };
    let (three, one) = (run(false), run(true));
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.0), bits(&three.0), "values differ");
    assert_eq!(bits(&one.1), bits(&three.1), "x gradients differ");
    assert_eq!(bits(&one.2), bits(&three.2), "skip gradients differ");
}

#[test]
fn no_grad_records_nothing() {
    let gpu = gpu();
    let tape = Tape::new(&gpu);
    let w = tape.param(&up(&gpu, &[2, 1, 3, 3], &[0.1; 18]));
    let b = tape.param(&up(&gpu, &[2], &[0.0; 2]));
    let x = tape.constant(&up(&gpu, &[1, 1, 4, 4], &[1.0; 16]));
    let y = tape.no_grad(|| ops::elu(&tape, &ops::conv3x3(&tape, &x, &w, &b).unwrap()).unwrap());
    assert_eq!(tape.len(), 0, "no node recorded under no_grad");
    assert!(!y.requires_grad());
    assert!(
        tape.backward(&y).is_err(),
        "backward from a no-grad value is an error"
    );
    // Recording resumes afterwards.
    let _y = ops::conv3x3(&tape, &x, &w, &b).unwrap();
    assert_eq!(tape.len(), 1);
}

#[test]
fn backward_releases_intermediates() {
    let net = Composite {
        n: 2,
        h: 8,
        w: 8,
        a: 4,
        b: 6,
        c: 3,
    };
    let gpu = gpu();
    let data = net.data(11);
    let (tensors, timg, tlab, tcw) = net.upload(&gpu, &data);
    let tape = Tape::new(&gpu);
    let vars: Vec<_> = tensors.iter().map(|t| tape.param(t)).collect();
    let before = gpu.pool_live_bytes();
    let loss = net.loss_gpu(&tape, &vars, &timg, &tlab, &tcw);
    let during = gpu.pool_live_bytes();
    // The peak counts what was held at once, at most what the pool holds in all.
    let peak = gpu.pool_peak_live_bytes();
    assert!(
        during <= peak && peak <= gpu.pool_bytes(),
        "peak {peak}, live {during}, pool {}",
        gpu.pool_bytes()
    );
    let grads = tape.backward(&loss).unwrap();
    drop(loss);
    // What is left: the parameters' gradients, one pooled buffer each (the pool may hand
    // a request a free buffer up to twice its size).
    let grad_bytes: u64 = vars
        .iter()
        .map(|v| {
            let g = grads.get(v).unwrap();
            let size = g.buffer().size();
            let want = segfeat_bucket(g.numel());
            assert!(want <= size && size <= 2 * want, "{size} bytes for {want}");
            size
        })
        .sum();
    let after = gpu.pool_live_bytes();
    assert!(
        during > before + grad_bytes,
        "the forward pass holds activations"
    );
    assert_eq!(
        after,
        before + grad_bytes,
        "after backward only the parameter gradients stay alive"
    );
}

/// Bytes the pool hands out for `numel` floats (multiples of 256).
fn segfeat_bucket(numel: usize) -> u64 {
    ((numel as u64 * 4).max(4)).div_ceil(256) * 256
}

/// The regularised classifier's head on the tape: conv3x3 -> batch norm (training) ->
/// leaky ReLU -> global average pooling -> linear -> batch norm -> leaky ReLU -> dropout
/// -> linear -> weighted cross-entropy; every parameter's gradient against finite
/// differences of the f64 reference chain (with the GPU's dropout mask).
#[test]
fn regularised_head_gradients_match_finite_differences() {
    use segfeat::ops::DropoutKey;
    let (n, cin, c1, h, w, f, classes) = (4, 2, 3, 5, 6, 5, 2);
    let slope = 0.1;
    let p_drop = 0.3f32;
    let key = DropoutKey {
        seed: 5,
        step: 2,
        layer: 0,
    };
    let gpu = gpu();
    let mut g = rng(11);
    let shapes: Vec<Vec<usize>> = vec![
        vec![c1, cin, 3, 3],
        vec![c1],
        vec![c1], // bn1 gamma
        vec![c1], // bn1 beta
        vec![f, c1],
        vec![f],
        vec![f], // bn2 gamma
        vec![f], // bn2 beta
        vec![classes, f],
        vec![classes],
    ];
    let params: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let v = rand_vec(&mut g, s.iter().product());
            // gammas near 1
            if k == 2 || k == 6 {
                v.iter().map(|x| 1.0 + 0.3 * x).collect()
            } else {
                v
            }
        })
        .collect();
    let image = rand_vec(&mut g, n * cin * h * w);
    let labels: Vec<usize> = vec![0, 1, 1, 0];
    let cw = [0.4f32, 0.6];
    let keep: Vec<bool> = (0..(n * f) as u32)
        .map(|i| ops::dropout::keeps(key, p_drop, i))
        .collect();

    let tensors: Vec<_> = shapes
        .iter()
        .zip(&params)
        .map(|(s, p)| up(&gpu, s, p))
        .collect();
    let tape = Tape::new(&gpu);
    let v: Vec<_> = tensors.iter().map(|t| tape.param(t)).collect();
    let x = tape.constant(&up(&gpu, &[n, cin, h, w], &image));
    let run1 = up(&gpu, &[2, c1], &ops::batchnorm::running_init(c1));
    let run2 = up(&gpu, &[2, f], &ops::batchnorm::running_init(f));
    let z = ops::conv3x3(&tape, &x, &v[0], &v[1]).unwrap();
    let z = ops::batchnorm(&tape, &z, &v[2], &v[3], &run1, true).unwrap();
    let z = ops::leaky_relu(&tape, &z, slope).unwrap();
    let z = ops::gap(&tape, &z).unwrap();
    let z = ops::linear(&tape, &z, &v[4], &v[5]).unwrap();
    let z = ops::batchnorm(&tape, &z, &v[6], &v[7], &run2, true).unwrap();
    let z = ops::leaky_relu(&tape, &z, slope).unwrap();
    let z = ops::dropout(&tape, &z, p_drop, Some(key)).unwrap();
    let z = ops::linear(&tape, &z, &v[8], &v[9]).unwrap();
    let ys: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let loss = ops::softmax_ce(&tape, &z, &up(&gpu, &[n], &ys), &up(&gpu, &[2], &cw)).unwrap();
    let grads = tape.backward(&loss).unwrap();

    let img64 = f64s(&image);
    let cw64 = f64s(&cw);
    let reference = |p: &[Vec<f64>]| -> f64 {
        let a = r::conv3x3(&img64, &p[0], &p[1], n, cin, c1, h, w);
        let a = r::batchnorm(&a, &p[2], &p[3], n, c1, h * w, None).0;
        let a = r::leaky_relu(&a, slope as f64);
        let a = r::gap(&a, n * c1, h * w);
        let a = r::linear(&a, &p[4], &p[5], n, c1, f);
        let a = r::batchnorm(&a, &p[6], &p[7], n, f, 1, None).0;
        let a = r::leaky_relu(&a, slope as f64);
        let a = r::dropout(&a, &keep, p_drop as f64);
        let a = r::linear(&a, &p[8], &p[9], n, f, classes);
        r::softmax_ce(&a, &labels, &cw64, n, classes, 1)
    };
    let p64: Vec<Vec<f64>> = params.iter().map(|p| f64s(p)).collect();
    check(
        "regularised head loss",
        &loss.value.to_vec(&gpu),
        &[reference(&p64)],
        1e-6,
        1e-5,
    );
    let names = [
        "conv w",
        "conv b",
        "bn1 gamma",
        "bn1 beta",
        "fc1 w",
        "fc1 b",
        "bn2 gamma",
        "bn2 beta",
        "fc2 w",
        "fc2 b",
    ];
    for (k, var) in v.iter().enumerate() {
        let fk = |xk: &[f64]| {
            let mut p = p64.clone();
            p[k] = xk.to_vec();
            reference(&p)
        };
        let fd = r::finite_diff(&fk, &p64[k], 1e-6);
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient reached {}", names[k]))
            .to_vec(&gpu);
        check(&format!("d loss / d {}", names[k]), &got, &fd, 2e-6, 1e-4);
    }
}

/// The composite network in 3-D, a mini-U-Net on volumes: conv3x3x3 + ELU (fused) ->
/// maxpool 2x2x2 -> conv3x3x3 + ELU -> upsample 2x2x2 -> concat with the skip -> 1x1x1
/// convolution (the 1x1 on the volume seen as (N, C, D x H, W), as the 3-D U-Net runs it)
/// -> weighted cross-entropy over every voxel; every parameter's gradient from the GPU
/// tape against finite differences of the f64 reference.
#[test]
fn volume_composite_gradients_match_finite_differences() {
    let (n, d, h, w, a, b, c) = (2, 4, 4, 6, 2, 3, 3);
    let v = d * h * w;
    let shapes: Vec<Vec<usize>> = vec![
        vec![a, 1, 3, 3, 3],
        vec![a],
        vec![b, a, 3, 3, 3],
        vec![b],
        vec![c, a + b, 1, 1, 1],
        vec![c],
    ];
    let mut g = rng(17);
    let params: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| {
            let k = s.iter().product();
            rand_vec(&mut g, k).iter().map(|v| v * 0.5).collect()
        })
        .collect();
    let image = rand_vec(&mut g, n * v);
    let labels: Vec<usize> = (0..n * v).map(|i| (i * 7 + i / 5) % c).collect();
    let cw = [0.3f32, 0.9, 0.6];

    let gpu = gpu();
    let tape = Tape::new(&gpu);
    let vars: Vec<_> = params
        .iter()
        .zip(&shapes)
        .map(|(p, s)| tape.param(&up(&gpu, s, p)))
        .collect();
    let x = tape.constant(&up(&gpu, &[n, 1, d, h, w], &image));
    let skip = ops::conv3x3x3_elu(&tape, &x, &vars[0], &vars[1]).unwrap();
    let down = ops::maxpool3d(&tape, &skip, 2).unwrap();
    let mid = ops::conv3x3x3_elu(&tape, &down, &vars[2], &vars[3]).unwrap();
    let upv = ops::upsample3d(&tape, &mid, 2).unwrap();
    let cat = ops::concat(&tape, &[&skip, &upv]).unwrap();
    let flat = ops::reshape(&tape, &cat, &[n, a + b, d * h, w]).unwrap();
    let w2 = ops::reshape(&tape, &vars[4], &[c, a + b, 1, 1]).unwrap();
    let logits = ops::conv1x1(&tape, &flat, &w2, &vars[5]).unwrap();
    let lab: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let loss = ops::softmax_ce(
        &tape,
        &logits,
        &up(&gpu, &[n, d * h, w], &lab),
        &up(&gpu, &[c], &cw),
    )
    .unwrap();
    let grads = tape.backward(&loss).unwrap();

    let p64: Vec<Vec<f64>> = params.iter().map(|p| f64s(p)).collect();
    let (img64, cw64) = (f64s(&image), f64s(&cw));
    let loss_ref = |p: &[Vec<f64>]| {
        let skip = r::elu(&r::conv3x3x3(&img64, &p[0], &p[1], (n, 1, a), (d, h, w)));
        let down = r::maxpool3d(&skip, n * a, (d, h, w), 2);
        let mid = r::elu(&r::conv3x3x3(
            &down,
            &p[2],
            &p[3],
            (n, a, b),
            (d / 2, h / 2, w / 2),
        ));
        let upv = r::upsample3d(&mid, n * b, (d / 2, h / 2, w / 2), 2);
        let cat = r::concat(&skip, &upv, n, a, b, v);
        let logits = r::conv1x1(&cat, &p[4], &p[5], n, a + b, c, v);
        r::softmax_ce(&logits, &labels, &cw64, n, c, v)
    };
    check(
        "volume composite loss",
        &loss.value.to_vec(&gpu),
        &[loss_ref(&p64)],
        1e-6,
        1e-5,
    );
    let names = ["conv1", "bias1", "conv2", "bias2", "conv1x1x1", "bias3"];
    for (k, var) in vars.iter().enumerate() {
        let f = |x: &[f64]| {
            let mut p = p64.clone();
            p[k] = x.to_vec();
            loss_ref(&p)
        };
        let fd = r::finite_diff(&f, &p64[k], 1e-6);
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient reached {}", names[k]))
            .to_vec(&gpu);
        check(&format!("d loss / d {}", names[k]), &got, &fd, 2e-6, 1e-4);
    }
}
