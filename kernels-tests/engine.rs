//! The engine around the kernels: tensors larger than one storage binding (with the limit
//! lowered on purpose, so every launcher's split path runs at test sizes), dispatches of
//! more than 65,535 workgroups, bit-for-bit determinism, a buffer pool that stays flat
//! across training steps, and errors that name what is wrong.

mod common;
use common::reference as r;
use common::*;
use segfeat::{ops, Gpu, Tape, Tensor};

/// 2 KiB bindings: every check below uses tensors larger than that, so the launchers must
/// split them by sample, by plane, by row or by element, with unaligned chunk starts.
const SMALL: u64 = 2048;

#[test]
fn ops_split_across_bindings_match_reference() {
    let gpu = gpu_small_bindings(SMALL);
    assert_eq!(gpu.binding_limit(), SMALL);
    check_conv3x3(&gpu, 6, 3, 4, 7, 9, 100);
    check_conv1x1(&gpu, 5, 6, 4, 5, 8, 101);
    check_linear(&gpu, 3, 40, 37, 102);
    check_activations(&gpu, &[3, 1000], 103);
    check_pool_upsample(&gpu, 4, 3, 8, 6, true, 104);
    check_concat(&gpu, 4, 3, 2, 5, 6, 105);
    check_concat(&gpu, 4, 3, 2, 8, 6, 110); // vec4 where a chunk's offsets allow
    check_softmax_ce(&gpu, 5, 6, Some((5, 7)), 106);
    check_softmax_ce(&gpu, 300, 2, None, 107);
    // A parameter too large for one binding paired with a small one: one split update each.
    check_adam(&gpu, &[3000, 5], 108);
    check_small_ops(&gpu, 5000, 109);
    check_regularisers(&gpu, &[3, 4, 11, 13], 111);
    check_batchnorm(&gpu, &[5, 3, 9, 7], 112);
    // Volumes: 2,048-byte bindings hold at most 4 samples of 2 x 2 x 4 x 8 (one 3x3x3 weight
    // gradient's shares split too).
    check_conv3x3x3(&gpu, (5, 2, 3), (2, 4, 8), 113);
    check_pool3d(&gpu, (4, 3), (2, 4, 4), 2, true, 114);
    check_concat_shape(&gpu, 4, 3, 2, &[2, 5, 6], 115);
}

#[test]
fn split_path_really_splits() {
    // The same conv on a normal and on a small-binding GPU: the latter needs more dispatches.
    let count = |gpu: &Gpu| {
        let x = Tensor::zeros(gpu, &[6, 3, 7, 9]).unwrap();
        let w = Tensor::zeros(gpu, &[4, 3, 3, 3]).unwrap();
        let b = Tensor::zeros(gpu, &[4]).unwrap();
        let before = gpu.dispatch_count();
        ops::conv3x3::forward(gpu, &x, &w, &b).unwrap();
        gpu.dispatch_count() - before
    };
    // One dispatch packs the weights, then one tiled convolution per chunk.
    assert_eq!(count(&gpu()), 2);
    assert!(count(&gpu_small_bindings(SMALL)) >= 4);
}

#[test]
fn one_sample_larger_than_a_binding_is_a_clear_error() {
    let gpu = gpu_small_bindings(SMALL);
    let x = Tensor::zeros(&gpu, &[1, 4, 16, 16]).unwrap(); // 4 KiB per sample
    let err = ops::maxpool2::forward(&gpu, &x).map(|_| ()).and(
        ops::conv3x3::forward(
            &gpu,
            &x,
            &Tensor::zeros(&gpu, &[2, 4, 3, 3]).unwrap(),
            &Tensor::zeros(&gpu, &[2]).unwrap(),
        )
        .map(|_| ()),
    );
    let msg = err.unwrap_err().0;
    assert!(
        msg.contains("exceeds this adapter's storage binding limit"),
        "{msg}"
    );
}

#[test]
fn volume_launches_of_more_than_65535_workgroups() {
    // upsample3d by 2x2x2 to 16 x 512 x 520 (4,259,840 outputs: 66,560 workgroups of 64),
    // folded into a 2-D grid, then the naive 3x3x3 convolution (one invocation per output)
    // of that volume.
    let gpu = gpu();
    let (d, h, w) = (8, 256, 260);
    let x = rand_vec(&mut rng(6), d * h * w);
    let tx = up(&gpu, &[1, 1, d, h, w], &x);
    let y = ops::pool3d::upsample_forward(&gpu, &tx, 2).unwrap();
    check(
        "upsample3d over 66,560 workgroups",
        &y.to_vec(&gpu),
        &r::upsample3d(&f64s(&x), 1, (d, h, w), 2),
        0.0,
        0.0,
    );
    let big = y.to_vec(&gpu);
    let wt = rand_vec(&mut rng(7), 27);
    let b = [0.25f32];
    let (tw, tb) = (up(&gpu, &[1, 1, 3, 3, 3], &wt), up(&gpu, &[1], &b));
    let want = r::conv3x3x3(
        &f64s(&big),
        &f64s(&wt),
        &f64s(&b),
        (1, 1, 1),
        (2 * d, 2 * h, 2 * w),
    );
    let y = ops::conv3x3x3::forward_naive(&gpu, &y, &tw, &tb).unwrap();
    check(
        "conv3x3x3_naive over 66,560 workgroups",
        &y.to_vec(&gpu),
        &want,
        atol(27),
        RTOL,
    );
}

#[test]
fn dispatch_of_more_than_65535_workgroups() {
    let gpu = gpu();
    // 64 invocations per workgroup: this needs 65,538 workgroups, folded into a 2-D grid.
    let n = 65_535 * 64 + 150;
    let mut g = rng(5);
    let x = rand_vec(&mut g, n);
    let tx = up(&gpu, &[n], &x);
    let y = ops::elu::forward(&gpu, &tx).unwrap();
    check(
        "elu over 65,538 workgroups",
        &y.to_vec(&gpu),
        &r::elu(&f64s(&x)),
        atol(1),
        RTOL,
    );
    let total = ops::reduce::sum(&gpu, &y).unwrap().item(&gpu) as f64;
    let want: f64 = y.to_vec(&gpu).iter().map(|&v| v as f64).sum();
    assert!(
        (total - want).abs() <= atol(n) + RTOL * want.abs(),
        "sum {total} vs {want}"
    );
}

/// `steps` Adam steps of the composite network; returns the parameters and the pool's
/// total bytes after each step.
fn train(gpu: &Gpu, steps: usize) -> (Vec<Vec<f32>>, Vec<u64>) {
    let net = Composite {
        n: 3,
        h: 8,
        w: 12,
        a: 4,
        b: 6,
        c: 3,
    };
    let (tensors, timg, tlab, tcw) = net.upload(gpu, &net.data(21));
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let mut adam = ops::Adam::new(gpu, &refs, 1e-2).unwrap();
    let tape = Tape::new(gpu);
    let mut pool = Vec::new();
    for _ in 0..steps {
        let vars: Vec<_> = tensors.iter().map(|t| tape.param(t)).collect();
        let loss = net.loss_gpu(&tape, &vars, &timg, &tlab, &tcw);
        let grads = tape.backward(&loss).unwrap();
        let gs: Vec<&Tensor> = vars.iter().map(|v| grads.get(v).unwrap()).collect();
        adam.step(gpu, &refs, &gs).unwrap();
        gpu.flush();
        pool.push(gpu.pool_bytes());
    }
    (tensors.iter().map(|t| t.to_vec(gpu)).collect(), pool)
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let (a, _) = train(&gpu(), 5);
    let (b, _) = train(&gpu(), 5);
    let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn pool_memory_is_flat_across_training_steps() {
    let gpu = gpu();
    let (_, pool) = train(&gpu, 50);
    assert!(pool[1] > 0);
    assert_eq!(
        pool[49], pool[1],
        "pool bytes after step 50 equal those after step 2"
    );
}

#[test]
fn wrong_shapes_are_errors_that_name_the_operand() {
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[1, 3, 4, 4]).unwrap();
    let w = Tensor::zeros(&gpu, &[2, 4, 3, 3]).unwrap();
    let b = Tensor::zeros(&gpu, &[2]).unwrap();
    let e = ops::conv3x3::forward(&gpu, &x, &w, &b).unwrap_err().0;
    assert!(
        e.contains("conv3x3 weight must have shape [2, 3, 3, 3]"),
        "{e}"
    );
    let e = Tensor::from_slice(&gpu, &[2, 3], &[1.0; 5]).unwrap_err().0;
    assert!(e.contains("holds 6 elements but 5 values"), "{e}");
    let e = x.reshape(&[5, 5]).unwrap_err().0;
    assert!(e.contains("cannot reshape"), "{e}");
    let e = ops::linear::forward(&gpu, &x, &w, &b).unwrap_err().0;
    assert!(e.contains("linear input must be 2-D"), "{e}");
    let e = Tensor::zeros(&gpu, &[0, 3]).unwrap_err().0;
    assert!(e.contains("no elements"), "{e}");
    // The fused ops check what they fuse.
    let big = Tensor::zeros(&gpu, &[1, 4, 8, 8]).unwrap();
    let e = ops::upsample2::forward_into(&gpu, &x, &big, 2)
        .unwrap_err()
        .0;
    assert!(
        e.contains("channels 2..5 do not fit in upsample2 output of 4 channels"),
        "{e}"
    );
    let tape = segfeat::Tape::new(&gpu);
    let (xv, skip) = (tape.constant(&x), tape.constant(&x));
    let e = ops::upsample_concat(&tape, &xv, &skip).unwrap_err().0;
    assert!(
        e.contains("upsample_concat: the skip has shape [1, 3, 4, 4]"),
        "{e}"
    );
    let e = ops::conv3x3_elu(&tape, &xv, &tape.constant(&w), &tape.constant(&b))
        .unwrap_err()
        .0;
    assert!(
        e.contains("conv3x3 weight must have shape [2, 3, 3, 3]"),
        "{e}"
    );
}

#[test]
fn info_lists_the_chosen_adapter_and_limits() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segfeat"))
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "segfeat info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("chosen:") && text.contains("max storage buffer binding size"),
        "{text}"
    );
}

#[test]
fn no_matching_adapter_says_how_to_get_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segfeat"))
        .arg("info")
        .env("SEGFEAT_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SEGFEAT_ADAPTER"), "{err}");
}

#[test]
fn ceiling_kernels_compute_what_they_claim() {
    use segfeat::gpu::ceilings::{copy_shader, fma_chains, load_loop};
    let gpu = gpu();
    // fma_peak: four chains x <- x * 0.999999 + 1e-7 from seeds derived from the index.
    let (threads, iters) = (130, 37u32);
    let sink = Tensor::uninit(&gpu, &[threads * 4]).unwrap();
    fma_chains(&gpu, &sink, threads, iters).unwrap();
    let mut want = Vec::new();
    for i in 0..threads {
        let s = i as f64 * 1e-9;
        for lane in 0..4 {
            let a0 = s + lane as f64;
            let total: f64 = [0.0, 0.5, 0.25, 0.125]
                .iter()
                .map(|off| (0..iters).fold(a0 + off, |x, _| x * 0.999999 + 1e-7))
                .sum();
            want.push(total);
        }
    }
    check(
        "fma_peak",
        &sink.to_vec(&gpu),
        &want,
        atol(4 * iters as usize),
        RTOL,
    );
    // copy: dst = src.
    let x = rand_vec(&mut rng(9), 4 * 1000);
    let dst = Tensor::zeros(&gpu, &[x.len()]).unwrap();
    copy_shader(&gpu, &up(&gpu, &[x.len()], &x), &dst).unwrap();
    check("copy", &dst.to_vec(&gpu), &f64s(&x), 0.0, 0.0);
    // load_scalar, load_vec4: each invocation sums table[(i + 1031 t) mod len], t < iters.
    let table = rand_vec(&mut rng(10), 64);
    let t = up(&gpu, &[64], &table);
    for (vec4, len) in [(false, 64usize), (true, 16)] {
        let sink = Tensor::uninit(&gpu, &[threads * 4]).unwrap();
        load_loop(&gpu, &t, &sink, threads, iters, vec4).unwrap();
        let mut want = Vec::new();
        for i in 0..threads {
            let at = |k: u32| (i + 1031 * k as usize) % len;
            for lane in 0..4 {
                want.push(if vec4 {
                    (0..iters).map(|k| table[4 * at(k) + lane] as f64).sum()
                } else {
                    (0..iters).map(|k| table[at(k)] as f64).sum()
                });
            }
        }
        let name = if vec4 { "load_vec4" } else { "load_scalar" };
        check(name, &sink.to_vec(&gpu), &want, atol(iters as usize), RTOL);
    }
    // A table whose length is not a power of two is refused, not wrapped wrongly.
    let odd = Tensor::zeros(&gpu, &[48]).unwrap();
    let sink = Tensor::uninit(&gpu, &[threads * 4]).unwrap();
    let err = load_loop(&gpu, &odd, &sink, threads, iters, false).unwrap_err();
    assert!(err.to_string().contains("power of two"), "{err}");
}

#[test]
fn profiling_times_every_dispatch_by_kernel() {
    let gpu = Gpu::with_options(segfeat::GpuOptions {
        quiet: true,
        profile: true,
        ..Default::default()
    })
    .unwrap();
    let x = Tensor::zeros(&gpu, &[2, 3, 8, 8]).unwrap();
    let w = Tensor::zeros(&gpu, &[4, 3, 3, 3]).unwrap();
    let b = Tensor::zeros(&gpu, &[4]).unwrap();
    for _ in 0..3 {
        ops::conv3x3::forward(&gpu, &x, &w, &b).unwrap();
    }
    ops::elu::forward(&gpu, &x).unwrap();
    let p = gpu.profile();
    assert_eq!(p.len(), 3, "{p:?}");
    let entry = match gpu.conv_tiling() {
        segfeat::gpu::ConvTiling::Tiled => "conv3x3_tiled",
        // A 2 x 4 x 8 x 8 output is far below the rows tile's threshold.
        segfeat::gpu::ConvTiling::Gpu => "conv3x3_tiled",
        segfeat::gpu::ConvTiling::Rows => "conv3x3_rows",
        segfeat::gpu::ConvTiling::RowsSubgroup => "conv3x3_rows_subgroup",
    };
    let conv = p.iter().find(|e| e.0 == entry).unwrap();
    assert_eq!(conv.1, 3);
    assert!(conv.2 > 0.0);
    assert!(self::gpu().profile().is_empty(), "off unless asked for");
    // The clock measures the kernel: 64 times the work takes several times as long (with
    // timestamps, the launch's overhead is not in either). lavapipe has timestamps.
    use segfeat::gpu::ceilings::fma_chains;
    let threads = 64 * 64;
    let sink = Tensor::uninit(&gpu, &[threads * 4]).unwrap();
    let mut fma_secs = Vec::new();
    for iters in [64, 4096] {
        let before: f64 = gpu.profile().iter().map(|e| e.2).sum();
        fma_chains(&gpu, &sink, threads, iters).unwrap();
        fma_secs.push(gpu.profile().iter().map(|e| e.2).sum::<f64>() - before);
    }
    assert!(
        fma_secs[1] > 4.0 * fma_secs[0] && fma_secs[0] > 0.0,
        "{} timed 64 and 4096 iterations as {fma_secs:?} s",
        gpu.profile_clock()
    );
    // By launch: two shapes of the same kernel are two rows, each naming its launch.
    let gpu = Gpu::with_options(segfeat::GpuOptions {
        quiet: true,
        profile_shapes: true,
        ..Default::default()
    })
    .unwrap();
    let small = Tensor::zeros(&gpu, &[1, 3, 8, 8]).unwrap();
    let large = Tensor::zeros(&gpu, &[2, 3, 8, 8]).unwrap();
    ops::elu::forward(&gpu, &small).unwrap();
    ops::elu::forward(&gpu, &large).unwrap();
    ops::elu::forward(&gpu, &large).unwrap();
    let p = gpu.profile();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().all(|e| e.0.starts_with("elu_forward")), "{p:?}");
    let counts: Vec<u64> = p.iter().map(|e| e.1).collect();
    assert!(counts.contains(&1) && counts.contains(&2), "{p:?}");
    assert!(p.iter().any(|e| e.0.contains("384 invocations")), "{p:?}");
}

#[test]
fn many_dispatches_in_one_submit_stay_in_order() {
    // 600 dependent dispatches recorded without a submit: they share one compute pass and
    // take their params from several uniform arena buffers (256 slots of 256 bytes each at
    // most); every 97th, an upload (a copy, which ends the pass) is added in too. Each add
    // must see the one before it.
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[5, 7]).unwrap();
    let one = up(&gpu, &[5, 7], &[1.0; 35]);
    let mut want = 0.0;
    for k in 0..600 {
        ops::elementwise::add_into(&gpu, &x, &one).unwrap();
        want += 1.0;
        if k % 97 == 0 {
            let two = up(&gpu, &[5, 7], &[2.0; 35]);
            ops::elementwise::add_into(&gpu, &x, &two).unwrap();
            ops::elementwise::scale(&gpu, &x, 0.5).unwrap();
            want = (want + 2.0) * 0.5;
        }
    }
    check("600 adds", &x.to_vec(&gpu), &[want; 35], 0.0, 0.0);
}

#[test]
fn gpu_tiling_takes_the_rows_tile_for_large_launches_only() {
    use segfeat::gpu::{ConvTiling, GPU_ROWS_MIN_INVOCATIONS};
    let gpu = Gpu::with_options(segfeat::GpuOptions {
        quiet: true,
        profile: true,
        ..Default::default()
    })
    .unwrap();
    let mut g = rng(91);
    // A 1 x 4 x 256 x 4096 output makes 1 x 1 x 128 x 512 rows-tile invocations (sample x
    // channel groups of 4 x row pairs x 8-pixel groups): exactly the threshold; 4 rows
    // fewer, below it.
    let (cin, cout, w) = (2, 4, 4096);
    let large_h = 2 * GPU_ROWS_MIN_INVOCATIONS / (w / 8);
    let wt = up(&gpu, &[cout, cin, 3, 3], &rand_vec(&mut g, cout * cin * 9));
    let b = up(&gpu, &[cout], &rand_vec(&mut g, cout));
    for (h, entry) in [(large_h, "conv3x3_rows"), (large_h - 4, "conv3x3_tiled")] {
        let x = up(&gpu, &[1, cin, h, w], &rand_vec(&mut g, cin * h * w));
        let mut outs = Vec::new();
        for tiling in [ConvTiling::Gpu, ConvTiling::Tiled] {
            gpu.set_conv_tiling(tiling).unwrap();
            let before = gpu.profile();
            let y = ops::conv3x3::forward(&gpu, &x, &wt, &b).unwrap();
            outs.push(y.to_vec(&gpu));
            if tiling == ConvTiling::Gpu {
                let count =
                    |p: &[(String, u64, f64)]| p.iter().find(|e| e.0 == entry).map_or(0, |e| e.1);
                assert_eq!(
                    count(&gpu.profile()) - count(&before),
                    1,
                    "height {h}: expected one {entry} launch"
                );
            }
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(bits(&outs[0]) == bits(&outs[1]), "height {h}: tiles differ");
    }
}
