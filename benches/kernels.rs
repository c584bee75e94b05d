//! Kernel benchmark: achieved GFLOP/s (conv, linear) or GB/s (the memory-bound kernels)
//! next to the adapter's ceilings measured in the same run (register-only FMA; buffer
//! copy, the faster of a copy shader and copy_buffer_to_buffer), and their ratio. Not a test: it asserts nothing about speed.
//!
//! To run:
//!     cargo bench --bench kernels                 # all shapes (minutes on lavapipe)
//!     SEGFEAT_BENCH_QUICK=1 cargo bench --bench kernels   # the two smallest conv shapes
//!     SEGFEAT_BENCH_REPS=5 cargo bench --bench kernels    # best of 5 instead of 2
//!     SEGFEAT_BENCH_TILING=rows cargo bench --bench kernels  # another conv3x3 tile (gpu, tiled, rows, rows_subgroup)
//!                                                           # (default: the adapter's)
//!     SEGFEAT_BENCH_CONVS=16:16:256,32:32:128 cargo bench --bench kernels
//!         # only these conv3x3 shapes (cin:cout:size), and none of the other kernels
//!     SEGFEAT_BENCH_CONVS3D=8:8:16:64 cargo bench --bench kernels
//!         # only these conv3x3x3 shapes (cin:cout:depth:size), and none of the other kernels
//!
//! Timing: wall clock around submit-and-wait, best of REPS after one warm-up; one dispatch
//! (or one split set of dispatches) per measurement, so per-dispatch overhead is included.
//! The arithmetic kernels (conv3x3, conv1x1, linear) run in turn with the FMA ceiling
//! kernel, max(REPS, 5) rounds, each round rated against the two ceiling runs around it;
//! the table gives the median of those ratios, and the ratio against the fastest FMA run
//! of the whole bench (a lower bound). This machine's speed drifts 2x within minutes, and
//! a ceiling measured at another moment would rate the kernel by the machine's mood. The
//! memory-bound kernels are rated against the higher of the copy ceiling measured before
//! and after them.
//! Before the kernels, the cost of a storage load whose address differs per lane (scalar
//! and vec4, from a table that stays in cache), in turn with the FMA ceiling and told as
//! "one load costs as much as N FMAs": on lavapipe the number that shapes every tile;
//! and what a tiny dispatch costs (what bounds the small classifier's step).
//! FLOPs count 2 per multiply-add of the mathematical op (zero padding not subtracted).
//! Bytes count each input read once and each output written once (the minimum traffic).

use segfeat::gpu::ceilings::{
    copy_gbps, fma_gflops, time_best, time_interleaved, FmaCeiling, LoadCeiling,
};
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
    /// What the row is rated against: the FMA ceiling measured in turn with it (GFLOP/s
    /// rows), or None for the copy ceiling (GB/s rows).
    paired_fma: Option<f64>,
}

fn main() -> Result<()> {
    let gpu = Gpu::new()?;
    let reps: usize = std::env::var("SEGFEAT_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let quick = std::env::var("SEGFEAT_BENCH_QUICK").is_ok();
    if let Ok(tile) = std::env::var("SEGFEAT_BENCH_TILING") {
        gpu.set_conv_tiling(tile.parse()?)?;
    }
    // The ceilings are short kernels, and this machine's speed drifts over minutes: take
    // the best of at least 10 now, again after the kernels, and rate the table against
    // the higher of the two (the conservative ratio).
    // On a GPU one kernel takes well under the submit-and-wait around it (about 0.45 ms on
    // an H200 behind its VM): each timed run records the kernel `inner` times into one
    // submit, and the row shows the time per kernel.
    let inner: usize = if gpu.is_cpu() { 1 } else { 20 };
    let ceiling_reps = reps.max(10);
    let fma = fma_gflops(&gpu, ceiling_reps)?;
    let (copy_shader, copy_builtin) = copy_gbps(&gpu, ceiling_reps)?;
    let copy = copy_shader.max(copy_builtin);
    println!("adapter: {}", gpu.describe());
    println!("conv3x3 tile (channels x pixels): {}", gpu.conv_tiling());
    println!(
        "ceilings: register FMA {fma:.1} GFLOP/s; buffer copy {copy:.2} GB/s (copy shader {copy_shader:.2}, copy_buffer_to_buffer {copy_builtin:.2}); best of {ceiling_reps}"
    );
    if inner > 1 {
        println!("each kernel row: best time per kernel of {inner} recorded into one submit");
    }
    let mut rows: Vec<Row> = Vec::new();
    // GFLOP/s rows: `work` FLOPs, `ceiling` the FMA ceiling's GFLOP/s measured in turn
    // with the kernel. GB/s rows (ceiling None): `work` bytes, rated against the copy ceiling.
    let mut push = |kernel: &str, shape: String, secs: f64, work: f64, ceiling: Option<f64>| {
        let row = Row {
            kernel: kernel.into(),
            shape,
            ms: secs * 1e3,
            rate: work / secs / 1e9,
            unit: if ceiling.is_some() { "GFLOP/s" } else { "GB/s" },
            paired_fma: ceiling,
        };
        println!(
            "{:<26} {:<24} {:>9.2} ms {:>8.2} {:<7} {:>6.1}% of ceiling",
            row.kernel,
            row.shape,
            row.ms,
            row.rate,
            row.unit,
            100.0 * row.rate / ceiling.unwrap_or(copy)
        );
        rows.push(row);
    };
    // Arithmetic kernels run in turn with the FMA ceiling (g f g f ... g), at least 5
    // rounds: the ratio of the two is what the targets are about, and on a machine whose
    // speed drifts it only holds still when both are measured in the same seconds. Each
    // round rates the kernel against the mean of the two ceiling runs around it; the row
    // shows the kernel's best time and the median of the rounds' ratios (as the ceiling,
    // the GFLOP/s that ratio implies for the best time).
    let fma_kernel = FmaCeiling::new(&gpu)?;
    let paired_reps = reps.max(5);
    let fastest_fma = std::cell::Cell::new(fma);
    let paired = |f: &mut dyn FnMut() -> Result<()>| -> Result<(f64, Option<f64>)> {
        let rounds = time_interleaved(
            &gpu,
            paired_reps,
            || (0..inner).try_for_each(|_| f()),
            || fma_kernel.run(&gpu),
        )?;
        let rounds: Vec<(f64, f64)> = rounds
            .into_iter()
            .map(|(tf, tg)| (tf / inner as f64, tg))
            .collect();
        let best = rounds.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let best_ceiling = rounds.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        fastest_fma.set(fastest_fma.get().max(fma_kernel.gflops(best_ceiling)));
        // A round's ratio of rates is (ceiling time / kernel time) x (kernel work /
        // ceiling work); the row's ceiling is the FMA rate at which the kernel's best time
        // has the median of those ratios.
        let mut ratios: Vec<f64> = rounds.iter().map(|&(tf, tg)| tg / tf).collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        Ok((best, Some(fma_kernel.gflops(best * median))))
    };

    // What a storage load costs where every lane reads its own address (as the conv
    // kernels' input loads do), in turn with the FMA ceiling: the median round's ratio of
    // FMA rate to load rate is "one load costs as much as N FMAs".
    let mut load_costs = Vec::new();
    for vec4 in [false, true] {
        let loads = LoadCeiling::new(&gpu, vec4)?;
        let rounds = time_interleaved(
            &gpu,
            paired_reps,
            || loads.run(&gpu),
            || fma_kernel.run(&gpu),
        )?;
        let mut ratios: Vec<f64> = rounds
            .iter()
            .map(|&(tl, tf)| fma_kernel.fmas_per_sec(tf) / loads.loads_per_sec(tl))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let best = rounds.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        load_costs.push(format!(
            "{} {:.2} G/s ({:.0} FMAs each)",
            if vec4 { "vec4" } else { "scalar" },
            loads.loads_per_sec(best) / 1e9,
            ratios[ratios.len() / 2]
        ));
    }
    println!(
        "storage loads, a different address per lane (cached table, in turn with the FMA ceiling, median of {paired_reps}): {}",
        load_costs.join("; ")
    );
    // What one dispatch costs beyond its work: 1000 fills of 16 floats recorded into one
    // submit (the recording is the CPU's share: uniform slot, bind group, dispatch).
    let tiny = Tensor::zeros(&gpu, &[16])?;
    let (record0, count0) = (gpu.record_seconds(), gpu.dispatch_count());
    let per_1000 = time_best(&gpu, reps, || {
        for _ in 0..1000 {
            ops::elementwise::fill(&gpu, &tiny, 1.0)?;
        }
        Ok(())
    })?;
    let recorded = (gpu.record_seconds() - record0) / (gpu.dispatch_count() - count0) as f64;
    println!(
        "dispatch overhead: {:.1} us per tiny dispatch, of which {:.1} us recording (best of {reps} x 1000)",
        per_1000 * 1e3,
        recorded * 1e6
    );

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
    let only_convs = std::env::var("SEGFEAT_BENCH_CONVS").ok();
    if let Some(list) = &only_convs {
        convs = parse_convs(list)?;
    }
    // conv3x3x3 at the 3-D U-Net's levels (n = 8, 16 x 64 x 64 volumes, 2x2x2 pooling),
    // batch 2: (cin, cout, depth, size).
    let mut convs3d = vec![
        (1, 8, 16, 64),
        (8, 8, 16, 64),
        (16, 16, 8, 32),
        (32, 32, 4, 16),
        (64, 64, 2, 8),
    ];
    let only_convs3d = std::env::var("SEGFEAT_BENCH_CONVS3D").ok();
    if let Some(list) = &only_convs3d {
        convs3d = parse_convs3d(list)?;
        convs.clear();
    } else if only_convs.is_some() || quick {
        convs3d.clear();
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
        // The naive kernel first (one output per invocation, 2 loads per multiply-add):
        // where the tiled kernels started.
        let (t, c) = paired(&mut || ops::conv3x3::forward_naive(&gpu, &x, &w, &b).map(|_| ()))?;
        push("conv3x3_naive_forward", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || ops::conv3x3::forward(&gpu, &x, &w, &b).map(|_| ()))?;
        push("conv3x3_forward", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || ops::conv3x3::backward_input(&gpu, &dy, &w, &dx))?;
        push("conv3x3_backward_input", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || ops::conv3x3::backward_weight(&gpu, &dy, &x, &dw))?;
        push("conv3x3_backward_weight", shape, t, flops, c);
    }

    let n3 = 2;
    for (cin, cout, d, s) in convs3d {
        let x = filled(&gpu, &[n3, cin, d, s, s], 0.5)?;
        let w = filled(&gpu, &[cout, cin, 3, 3, 3], 0.01)?;
        let b = filled(&gpu, &[cout], 0.0)?;
        let dy = filled(&gpu, &[n3, cout, d, s, s], 0.1)?;
        let dx = Tensor::zeros(&gpu, &[n3, cin, d, s, s])?;
        let dw = Tensor::zeros(&gpu, &[cout, cin, 3, 3, 3])?;
        let flops = 2.0 * (n3 * cout * cin * 27 * d * s * s) as f64;
        let shape = format!("{n3}x{cin}->{cout} @{d}x{s}x{s}");
        use ops::conv3x3x3 as c3;
        let (t, c) = paired(&mut || c3::forward_naive(&gpu, &x, &w, &b).map(|_| ()))?;
        push("conv3x3x3_naive_forward", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || c3::forward(&gpu, &x, &w, &b).map(|_| ()))?;
        push("conv3x3x3_forward", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || c3::backward_input(&gpu, &dy, &w, &dx))?;
        push("conv3x3x3_backward_input", shape.clone(), t, flops, c);
        let (t, c) = paired(&mut || c3::backward_weight(&gpu, &dy, &x, &dw))?;
        push("conv3x3x3_backward_weight", shape, t, flops, c);
    }

    if only_convs.is_some() || only_convs3d.is_some() {
        return ceilings_again(&gpu, ceiling_reps, fastest_fma.get(), copy, &rows);
    }

    // The other kernels at a U-Net level-1 activation: 10 x 16 x 128 x 128.
    let (c, s) = (16, 128);
    let act = [n, c, s, s];
    let bytes = (n * c * s * s * 4) as f64;
    let x = filled(&gpu, &act, 0.3)?;
    let dy = filled(&gpu, &act, 0.1)?;
    let dx = Tensor::zeros(&gpu, &act)?;
    let shape = format!("{n}x{c}x{s}x{s}");
    let t = time_per_run(&gpu, reps, inner, || {
        ops::elu::forward(&gpu, &x).map(|_| ())
    })?;
    push("elu_forward", shape.clone(), t, 2.0 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || ops::elu::backward(&gpu, &x, &dy, &dx))?;
    push("elu_backward", shape.clone(), t, 4.0 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || {
        ops::relu::forward(&gpu, &x).map(|_| ())
    })?;
    push("relu_forward", shape.clone(), t, 2.0 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || {
        ops::maxpool2::forward(&gpu, &x).map(|_| ())
    })?;
    push("maxpool2_forward", shape.clone(), t, 1.25 * bytes, None);
    let pooled = filled(&gpu, &[n, c, s / 2, s / 2], 0.1)?;
    let t = time_per_run(&gpu, reps, inner, || {
        ops::maxpool2::backward(&gpu, &x, &pooled, &dx)
    })?;
    push("maxpool2_backward", shape.clone(), t, 3.25 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || {
        ops::upsample2::forward(&gpu, &pooled).map(|_| ())
    })?;
    push(
        "upsample2_forward",
        format!("{n}x{c}x{}x{} ->2x", s / 2, s / 2),
        t,
        1.25 * bytes,
        None,
    );
    let t = time_per_run(&gpu, reps, inner, || {
        ops::upsample2::backward(&gpu, &dy, &pooled)
    })?;
    push(
        "upsample2_backward",
        format!("{n}x{c}x{s}x{s} ->1/2"),
        t,
        1.5 * bytes,
        None,
    );
    let t = time_per_run(&gpu, reps, inner, || {
        ops::concat::forward(&gpu, &[&x, &dy]).map(|_| ())
    })?;
    push(
        "concat_forward",
        format!("2 x {shape}"),
        t,
        4.0 * bytes,
        None,
    );
    let both = filled(&gpu, &[n, 2 * c, s, s], 0.1)?;
    let t = time_per_run(&gpu, reps, inner, || {
        ops::concat::split_add(&gpu, &both, &dx, c)
    })?;
    push("concat_backward", shape.clone(), t, 3.0 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || {
        ops::elementwise::add_into(&gpu, &dx, &dy)
    })?;
    push("add_into", shape.clone(), t, 3.0 * bytes, None);
    let t = time_per_run(&gpu, reps, inner, || ops::reduce::sum(&gpu, &x).map(|_| ()))?;
    push("sum_reduce", shape.clone(), t, bytes, None);
    let params = n * c * s * s;
    let (m, v) = (Tensor::zeros(&gpu, &act)?, Tensor::zeros(&gpu, &act)?);
    let h = [1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001];
    let t = time_per_run(&gpu, reps, inner, || {
        ops::adam::update(&gpu, &dx, &dy, &m, &v, h)
    })?;
    push(
        "adam_step",
        format!("{params} params"),
        t,
        7.0 * bytes,
        None,
    );

    // Segmentation loss on 6 labels at 128x128, and the 1x1 conv feeding it (48 -> 6).
    let logits = filled(&gpu, &[n, 6, s, s], 0.2)?;
    let labels = filled(&gpu, &[n, s, s], 2.0)?;
    let cw = filled(&gpu, &[6], 0.5)?;
    let lb = (n * 6 * s * s * 4) as f64;
    let t = time_per_run(&gpu, reps, inner, || {
        ops::softmax_ce::forward(&gpu, &logits, &labels, &cw).map(|_| ())
    })?;
    push(
        "softmax_ce_forward",
        format!("{n}x6x{s}x{s}"),
        t,
        lb * (1.0 + 3.0 / 6.0),
        None,
    );
    let (_, wsum) = ops::softmax_ce::forward(&gpu, &logits, &labels, &cw)?;
    let one = filled(&gpu, &[1], 1.0)?;
    let dz = Tensor::zeros(&gpu, &[n, 6, s, s])?;
    let t = time_per_run(&gpu, reps, inner, || {
        ops::softmax_ce::backward(&gpu, &logits, &labels, &cw, &one, &wsum, &dz)
    })?;
    push(
        "softmax_ce_backward",
        format!("{n}x6x{s}x{s}"),
        t,
        lb * (3.0 + 1.0 / 6.0),
        None,
    );
    let x48 = filled(&gpu, &[n, 48, s, s], 0.1)?;
    let w1 = filled(&gpu, &[6, 48, 1, 1], 0.1)?;
    let b1 = filled(&gpu, &[6], 0.0)?;
    let (t, c) = paired(&mut || ops::conv1x1::forward(&gpu, &x48, &w1, &b1).map(|_| ()))?;
    push(
        "conv1x1_forward",
        format!("{n}x48->6 @{s}x{s}"),
        t,
        2.0 * (n * 48 * 6 * s * s) as f64,
        c,
    );

    // VGG's fully connected layers at the quick-ish size: 10 x 8192 -> 1024.
    let (fi, fo) = (8192, 1024);
    let xf = filled(&gpu, &[n, fi], 0.1)?;
    let wf = filled(&gpu, &[fo, fi], 0.01)?;
    let bf = filled(&gpu, &[fo], 0.0)?;
    let (t, c) = paired(&mut || ops::linear::forward(&gpu, &xf, &wf, &bf).map(|_| ()))?;
    push(
        "linear_forward",
        format!("{n}x{fi}->{fo}"),
        t,
        2.0 * (n * fi * fo) as f64,
        c,
    );

    ceilings_again(&gpu, ceiling_reps, fastest_fma.get(), copy, &rows)
}

/// Measures the ceilings again and prints the Markdown table for BENCHMARKS.md. GFLOP/s
/// rows get two ratios: against the FMA ceiling measured in turn with them (median of
/// the rounds), and against the fastest FMA run of the whole bench (`fma`, which already
/// covers every run so far; the lower bound). GB/s rows are rated against the higher of
/// the copy ceiling's two measurements (before and after the kernels).
fn ceilings_again(gpu: &Gpu, ceiling_reps: usize, fma: f64, copy: f64, rows: &[Row]) -> Result<()> {
    let fma_end = fma_gflops(gpu, ceiling_reps)?;
    let fma_hi = fma.max(fma_end);
    let (shader_end, builtin_end) = copy_gbps(gpu, ceiling_reps)?;
    let copy_hi = copy.max(shader_end.max(builtin_end));
    println!(
        "\nceilings again after the kernels: register FMA {fma_end:.1} GFLOP/s; buffer copy {:.2} GB/s",
        shader_end.max(builtin_end)
    );
    println!("fastest FMA run of the whole bench: {fma_hi:.1} GFLOP/s; GB/s rows are rated against the higher copy ceiling, {copy_hi:.2} GB/s");
    println!("\nMarkdown rows for BENCHMARKS.md:");
    println!("| kernel | shape | ms | achieved | % of FMA in turn | % of fastest FMA | % of copy |\n|---|---|---|---|---|---|---|");
    for r in rows {
        let (turn, fastest, of_copy) = match r.paired_fma {
            Some(f) => (
                format!("{:.1}% (of {f:.1})", 100.0 * r.rate / f),
                format!("{:.1}%", 100.0 * r.rate / fma_hi),
                String::new(),
            ),
            None => (
                String::new(),
                String::new(),
                format!("{:.1}%", 100.0 * r.rate / copy_hi),
            ),
        };
        println!(
            "| {} | {} | {:.2} | {:.2} {} | {turn} | {fastest} | {of_copy} |",
            r.kernel, r.shape, r.ms, r.rate, r.unit,
        );
    }
    Ok(())
}

/// Parses SEGFEAT_BENCH_CONVS: comma-separated `cin:cout:size` triples.
fn parse_convs(list: &str) -> Result<Vec<(usize, usize, usize)>> {
    list.split(',')
        .map(|item| {
            let v: Vec<usize> = item
                .trim()
                .split(':')
                .map(|f| f.parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .unwrap_or_default();
            match v[..] {
                [cin, cout, size] if cin > 0 && cout > 0 && size > 0 => Ok((cin, cout, size)),
                _ => Err(segfeat::Error(format!(
                    "SEGFEAT_BENCH_CONVS: `{item}` is not cin:cout:size with three positive integers"
                ))),
            }
        })
        .collect()
}

/// Best wall time of `f` per run, where each timed submit records `inner` runs of it.
/// Parses SEGFEAT_BENCH_CONVS3D: comma-separated `cin:cout:depth:size` quadruples.
fn parse_convs3d(list: &str) -> Result<Vec<(usize, usize, usize, usize)>> {
    list.split(',')
        .map(|item| {
            let v: Vec<usize> = item
                .split(':')
                .filter_map(|p| p.trim().parse().ok())
                .filter(|&p| p > 0)
                .collect();
            match v[..] {
                [a, b, c, d] => Ok((a, b, c, d)),
                _ => segfeat::bail!(
                    "SEGFEAT_BENCH_CONVS3D: `{item}` is not cin:cout:depth:size with four positive integers"
                ),
            }
        })
        .collect()
}

fn time_per_run(
    gpu: &Gpu,
    reps: usize,
    inner: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let t = time_best(gpu, reps, || (0..inner).try_for_each(|_| f()))?;
    Ok(t / inner as f64)
}
