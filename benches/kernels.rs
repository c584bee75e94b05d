//! Kernel benchmark: achieved GFLOP/s (conv, linear) or GB/s (the memory-bound kernels)
//! next to the adapter's ceilings measured in the same run (register-only FMA; buffer
//! copy, the faster of a copy shader and copy_buffer_to_buffer), and their ratio. Not a test: it asserts nothing about speed.
//!
//! To run:
//!     cargo bench --bench kernels                 # all shapes (minutes on lavapipe)
//!     SEGFEAT_BENCH_QUICK=1 cargo bench --bench kernels   # the two smallest conv shapes
//!     SEGFEAT_BENCH_REPS=5 cargo bench --bench kernels    # best of 5 instead of 2
//!     SEGFEAT_BENCH_TILING=8x4 cargo bench --bench kernels  # the other conv3x3 tile
//!                                                           # (default: the adapter's)
//!
//! Timing: wall clock around submit-and-wait, best of REPS after one warm-up; one dispatch
//! (or one split set of dispatches) per measurement, so per-dispatch overhead is included.
//! FLOPs count 2 per multiply-add of the mathematical op (zero padding not subtracted).
//! Bytes count each input read once and each output written once (the minimum traffic).

use segfeat::gpu::ceilings::{copy_gbps, fma_gflops, time_best};
use segfeat::{ops, Gpu, Result, Tensor};

fn filled(gpu: &Gpu, shape: &[usize], v: f32) -> Result<Tensor> {
    let t = Tensor::uninit(gpu, shape)?;
    ops::elementwise::fill(gpu, &t, v)?;
    Ok(t)
}

struct Row {
    kernel: String,
    shape: String,
    ms: f64,
    rate: f64,
    unit: &'static str,
    ratio: f64,
}

fn main() -> Result<()> {
    let gpu = Gpu::new()?;
    let reps: usize = std::env::var("SEGFEAT_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let quick = std::env::var("SEGFEAT_BENCH_QUICK").is_ok();
    if let Ok(tile) = std::env::var("SEGFEAT_BENCH_TILING") {
        gpu.set_conv_tiling(tile.parse()?);
    }
    // The ceilings are short kernels, and this machine's speed drifts over minutes: take
    // the best of at least 10 now, again after the kernels, and rate the table against
    // the higher of the two (the conservative ratio).
    let ceiling_reps = reps.max(10);
    let fma = fma_gflops(&gpu, ceiling_reps)?;
    let (copy_shader, copy_builtin) = copy_gbps(&gpu, ceiling_reps)?;
    let copy = copy_shader.max(copy_builtin);
    println!("adapter: {}", gpu.describe());
    println!("conv3x3 tile (channels x pixels): {}", gpu.conv_tiling());
    println!(
        "ceilings: register FMA {fma:.1} GFLOP/s; buffer copy {copy:.2} GB/s (copy shader {copy_shader:.2}, copy_buffer_to_buffer {copy_builtin:.2}); best of {ceiling_reps}"
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |kernel: &str, shape: String, secs: f64, work: f64, is_flops: bool| {
        let (rate, unit, ceil) = if is_flops {
            (work / secs / 1e9, "GFLOP/s", fma)
        } else {
            (work / secs / 1e9, "GB/s", copy)
        };
        let row = Row {
            kernel: kernel.into(),
            shape,
            ms: secs * 1e3,
            rate,
            unit,
            ratio: rate / ceil,
        };
        println!(
            "{:<26} {:<24} {:>9.2} ms {:>8.2} {:<7} {:>6.1}% of ceiling",
            row.kernel,
            row.shape,
            row.ms,
            row.rate,
            row.unit,
            100.0 * row.ratio
        );
        rows.push(row);
    };

    // conv3x3 at the U-Net's shapes, batch 10: (cin, cout, size)
    let mut convs = vec![
        (1, 16, 256),
        (16, 16, 256),
        (32, 32, 128),
        (128, 128, 32),
        (256, 256, 16),
    ];
    if quick {
        convs = vec![(128, 128, 32), (256, 256, 16)];
    }
    let n = 10;
    for (cin, cout, s) in convs {
        let x = filled(&gpu, &[n, cin, s, s], 0.5)?;
        let w = filled(&gpu, &[cout, cin, 3, 3], 0.01)?;
        let b = filled(&gpu, &[cout], 0.0)?;
        let dy = filled(&gpu, &[n, cout, s, s], 0.1)?;
        let dx = Tensor::zeros(&gpu, &[n, cin, s, s])?;
        let dw = Tensor::zeros(&gpu, &[cout, cin, 3, 3])?;
        let flops = 2.0 * (n * cout * cin * 9 * s * s) as f64;
        let shape = format!("{n}x{cin}->{cout} @{s}x{s}");
        let t = time_best(&gpu, reps, || {
            ops::conv3x3::forward(&gpu, &x, &w, &b).map(|_| ())
        })?;
        push("conv3x3_forward", shape.clone(), t, flops, true);
        let t = time_best(&gpu, reps, || {
            ops::conv3x3::backward_input(&gpu, &dy, &w, &dx)
        })?;
        push("conv3x3_backward_input", shape.clone(), t, flops, true);
        let t = time_best(&gpu, reps, || {
            ops::conv3x3::backward_weight(&gpu, &dy, &x, &dw)
        })?;
        push("conv3x3_backward_weight", shape, t, flops, true);
    }

    // The other kernels at a U-Net level-1 activation: 10 x 16 x 128 x 128.
    let (c, s) = (16, 128);
    let act = [n, c, s, s];
    let bytes = (n * c * s * s * 4) as f64;
    let x = filled(&gpu, &act, 0.3)?;
    let dy = filled(&gpu, &act, 0.1)?;
    let dx = Tensor::zeros(&gpu, &act)?;
    let shape = format!("{n}x{c}x{s}x{s}");
    let t = time_best(&gpu, reps, || ops::elu::forward(&gpu, &x).map(|_| ()))?;
    push("elu_forward", shape.clone(), t, 2.0 * bytes, false);
    let t = time_best(&gpu, reps, || ops::elu::backward(&gpu, &x, &dy, &dx))?;
    push("elu_backward", shape.clone(), t, 4.0 * bytes, false);
    let t = time_best(&gpu, reps, || ops::relu::forward(&gpu, &x).map(|_| ()))?;
    push("relu_forward", shape.clone(), t, 2.0 * bytes, false);
    let t = time_best(&gpu, reps, || ops::maxpool2::forward(&gpu, &x).map(|_| ()))?;
    push("maxpool2_forward", shape.clone(), t, 1.25 * bytes, false);
    let pooled = filled(&gpu, &[n, c, s / 2, s / 2], 0.1)?;
    let t = time_best(&gpu, reps, || {
        ops::maxpool2::backward(&gpu, &x, &pooled, &dx)
    })?;
    push("maxpool2_backward", shape.clone(), t, 3.25 * bytes, false);
    let t = time_best(&gpu, reps, || {
        ops::upsample2::forward(&gpu, &pooled).map(|_| ())
    })?;
    push(
        "upsample2_forward",
        format!("{n}x{c}x{}x{} ->2x", s / 2, s / 2),
        t,
        1.25 * bytes,
        false,
    );
    let t = time_best(&gpu, reps, || ops::upsample2::backward(&gpu, &dy, &pooled))?;
    push(
        "upsample2_backward",
        format!("{n}x{c}x{s}x{s} ->1/2"),
        t,
        1.5 * bytes,
        false,
    );
    let t = time_best(&gpu, reps, || {
        ops::concat::forward(&gpu, &[&x, &dy]).map(|_| ())
    })?;
    push(
        "concat_forward",
        format!("2 x {shape}"),
        t,
        4.0 * bytes,
        false,
    );
    let both = filled(&gpu, &[n, 2 * c, s, s], 0.1)?;
    let t = time_best(&gpu, reps, || ops::concat::split_add(&gpu, &both, &dx, c))?;
    push("concat_backward", shape.clone(), t, 3.0 * bytes, false);
    let t = time_best(&gpu, reps, || ops::elementwise::add_into(&gpu, &dx, &dy))?;
    push("add_into", shape.clone(), t, 3.0 * bytes, false);
    let t = time_best(&gpu, reps, || ops::reduce::sum(&gpu, &x).map(|_| ()))?;
    push("sum_reduce", shape.clone(), t, bytes, false);
    let params = n * c * s * s;
    let (m, v) = (Tensor::zeros(&gpu, &act)?, Tensor::zeros(&gpu, &act)?);
    let h = [1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001];
    let t = time_best(&gpu, reps, || ops::adam::update(&gpu, &dx, &dy, &m, &v, h))?;
    push(
        "adam_step",
        format!("{params} params"),
        t,
        7.0 * bytes,
        false,
    );

    // Segmentation loss on 6 labels at 128x128, and the 1x1 conv feeding it (48 -> 6).
    let logits = filled(&gpu, &[n, 6, s, s], 0.2)?;
    let labels = filled(&gpu, &[n, s, s], 2.0)?;
    let cw = filled(&gpu, &[6], 0.5)?;
    let lb = (n * 6 * s * s * 4) as f64;
    let t = time_best(&gpu, reps, || {
        ops::softmax_ce::forward(&gpu, &logits, &labels, &cw).map(|_| ())
    })?;
    push(
        "softmax_ce_forward",
        format!("{n}x6x{s}x{s}"),
        t,
        lb * (1.0 + 3.0 / 6.0),
        false,
    );
    let (_, wsum) = ops::softmax_ce::forward(&gpu, &logits, &labels, &cw)?;
    let one = filled(&gpu, &[1], 1.0)?;
    let dz = Tensor::zeros(&gpu, &[n, 6, s, s])?;
    let t = time_best(&gpu, reps, || {
        ops::softmax_ce::backward(&gpu, &logits, &labels, &cw, &one, &wsum, &dz)
    })?;
    push(
        "softmax_ce_backward",
        format!("{n}x6x{s}x{s}"),
        t,
        lb * (3.0 + 1.0 / 6.0),
        false,
    );
    let x48 = filled(&gpu, &[n, 48, s, s], 0.1)?;
    let w1 = filled(&gpu, &[6, 48, 1, 1], 0.1)?;
    let b1 = filled(&gpu, &[6], 0.0)?;
    let t = time_best(&gpu, reps, || {
        ops::conv1x1::forward(&gpu, &x48, &w1, &b1).map(|_| ())
    })?;
    push(
        "conv1x1_forward",
        format!("{n}x48->6 @{s}x{s}"),
        t,
        2.0 * (n * 48 * 6 * s * s) as f64,
        true,
    );

    // VGG's fully connected layers at the quick-ish size: 10 x 8192 -> 1024.
    let (fi, fo) = (8192, 1024);
    let xf = filled(&gpu, &[n, fi], 0.1)?;
    let wf = filled(&gpu, &[fo, fi], 0.01)?;
    let bf = filled(&gpu, &[fo], 0.0)?;
    let t = time_best(&gpu, reps, || {
        ops::linear::forward(&gpu, &xf, &wf, &bf).map(|_| ())
    })?;
    push(
        "linear_forward",
        format!("{n}x{fi}->{fo}"),
        t,
        2.0 * (n * fi * fo) as f64,
        true,
    );

    let fma_end = fma_gflops(&gpu, ceiling_reps)?;
    let (shader_end, builtin_end) = copy_gbps(&gpu, ceiling_reps)?;
    let (fma_hi, copy_hi) = (fma.max(fma_end), copy.max(shader_end.max(builtin_end)));
    println!(
        "\nceilings again after the kernels: register FMA {fma_end:.1} GFLOP/s; buffer copy {:.2} GB/s",
        shader_end.max(builtin_end)
    );
    println!(
        "the table below rates every kernel against the higher of the two: FMA {fma_hi:.1} GFLOP/s, copy {copy_hi:.2} GB/s"
    );
    for r in &mut rows {
        r.ratio = r.rate / if r.unit == "GFLOP/s" { fma_hi } else { copy_hi };
    }
    println!("\nMarkdown rows for BENCHMARKS.md:");
    println!("| kernel | shape | ms | achieved | % of ceiling |\n|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.2} {} | {:.1}% |",
            r.kernel,
            r.shape,
            r.ms,
            r.rate,
            r.unit,
            100.0 * r.ratio
        );
    }
    Ok(())
}
