//! Training-step benchmark of the segmentation U-Net: forward, weighted cross-entropy,
//! backward and Adam on one batch, as `segfeat train-seg` runs it, at several input sizes.
//! Prints ms per step, images/s, GFLOP/s (3x the forward FLOPs of `segfeat summary`, the
//! usual estimate for forward + backward), the pool's memory against what a step needs at
//! least, then the same step in PyTorch (`benches/torch_reference.py`) and the ratio, when
//! a Python with PyTorch is found. Not a test.
//!
//! To run:
//!     cargo bench --bench unet                         # n=16, batch 10, at 128 and 256
//!     SEGFEAT_BENCH_SIZES=64,128 cargo bench --bench unet
//!     SEGFEAT_BENCH_CHANNELS=8 SEGFEAT_BENCH_BATCH=4 SEGFEAT_BENCH_REPS=3 cargo bench --bench unet
//!     SEGFEAT_PROFILE=1 SEGFEAT_BENCH_SIZES=64 cargo bench --bench unet   # time per kernel
//!     SEGFEAT_PROFILE=shapes SEGFEAT_BENCH_SIZES=64 cargo bench --bench unet   # per kernel and launch
//!     SEGFEAT_BENCH_TILING=rows cargo bench --bench unet   # another conv3x3 tile (gpu, tiled, rows, rows_subgroup)
//!     SEGFEAT_TORCH_PYTHON=.venv-torch/bin/python cargo bench --bench unet  # PyTorch's Python
//!     SEGFEAT_TORCH_PYTHON=none cargo bench --bench unet  # no PyTorch comparison
//!     SEGFEAT_BENCH_AUGMENT=0 cargo bench --bench unet    # no augmentation timing
//!     SEGFEAT_BENCH_DEPTH=16 SEGFEAT_BENCH_SIZES=64 SEGFEAT_BENCH_CHANNELS=8 SEGFEAT_BENCH_BATCH=2 \
//!         cargo bench --bench unet     # the 3-D U-Net on 16 x 64 x 64 volumes (PyTorch: Conv3d)
//!     SEGFEAT_BENCH_DEPTH_POOL=2,2,1,1  # with SEGFEAT_BENCH_DEPTH: other depth poolings
//!
//! PyTorch runs on the CPU with all cores when the adapter is a CPU one, on CUDA otherwise
//! (`SEGFEAT_TORCH_DEVICE=cpu|cuda` overrides), in the same run, so the ratio is same-day.
//!
//! Timing: wall clock of whole steps (each ends by reading the loss back, as training
//! does), best of REPS after one warm-up step; phantom images, so the data is realistic.

use std::process::Command;
use std::time::Instant;

use segfeat::data::augment::Augment;
use segfeat::data::phantom::PhantomSpec;
use segfeat::nn::{Unet, UnetConfig, VolumeShape};
use segfeat::ops::Adam;
use segfeat::train::seg;
use segfeat::{Gpu, Result, Tensor};

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() -> Result<()> {
    let gpu = Gpu::new()?;
    let sizes = env_list("SEGFEAT_BENCH_SIZES", "128,256");
    let n = env_list("SEGFEAT_BENCH_CHANNELS", "16")[0];
    let batch = env_list("SEGFEAT_BENCH_BATCH", "10")[0];
    let reps = env_list("SEGFEAT_BENCH_REPS", "2")[0].max(1);
    // Volumes of this many slices (the 3-D U-Net), or None for 2-D images.
    let depth = env_list("SEGFEAT_BENCH_DEPTH", "").first().copied();
    let volume = match depth {
        None => None,
        Some(d) => {
            let mut v = VolumeShape::new(d);
            if let Ok(p) = std::env::var("SEGFEAT_BENCH_DEPTH_POOL") {
                v.depth_pool = VolumeShape::parse_pool(&p)?;
            }
            Some(v)
        }
    };
    if let Ok(tile) = std::env::var("SEGFEAT_BENCH_TILING") {
        gpu.set_conv_tiling(tile.parse()?)?;
    }
    println!("adapter: {}", gpu.describe());
    println!("conv3x3 tile (channels x pixels): {}", gpu.conv_tiling());
    match &volume {
        None => println!(
            "U-Net n={n}, batch {batch}: forward + backward + Adam, best of {reps} after a warm-up"
        ),
        Some(v) => println!(
            "3-D U-Net n={n}, batch {batch}, volumes of {} slices (depth pooled {}): forward + backward + Adam, best of {reps} after a warm-up; images/s counts volumes",
            v.depth,
            v.describe_pool()
        ),
    }
    println!(
        "{:>6} {:>12} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>11} {:>9}",
        "size",
        "first ms",
        "ms/step",
        "images/s",
        "GFLOP/s",
        "GFLOP/step",
        "pool MiB",
        "peak MiB",
        "need MiB",
        "dispatches",
        "record %"
    );
    let mut ours = Vec::new();
    let mut augment_rows = Vec::new();
    for &size in &sizes {
        let config = match &volume {
            None => UnetConfig::new(n, 6, size)?,
            Some(v) => UnetConfig::new_3d(n, 6, size, v.clone())?,
        };
        let flops: u64 = config.summary().iter().map(|r| r.flops).sum();
        let step_flops = 3.0 * flops as f64 * batch as f64;
        let data = PhantomSpec {
            size,
            normal_patients: if volume.is_some() { batch } else { 2 },
            slices: (batch.div_ceil(2), batch.div_ceil(2)),
            effusion_images: 0,
            septal_images: 0,
            volume_depth: depth,
            ..PhantomSpec::default()
        }
        .generate()?;
        let unet = Unet::init(&gpu, config, 1)?;
        let tensors: Vec<&Tensor> = unet.params.iter().map(|(_, t)| t).collect();
        let mut adam = Adam::new(&gpu, &tensors, 1e-3)?;
        let class_w = Tensor::from_slice(&gpu, &[6], &data.class_weights())?;
        let idx: Vec<usize> = (0..batch).map(|i| i % data.samples.len()).collect();
        let mut best = f64::INFINITY;
        // Dispatches per step, and the CPU time spent recording them (in the best step).
        let (mut per_step, mut record) = (0, 0.0);
        // The first step of the first size also compiles every pipeline the step uses.
        let mut first = 0.0;
        for rep in 0..=reps {
            let (d0, r0) = (gpu.dispatch_count(), gpu.record_seconds());
            let t0 = Instant::now();
            seg::step(&gpu, &unet, &mut adam, &data, &idx, &class_w, None)?;
            let secs = t0.elapsed().as_secs_f64();
            if rep == 0 {
                first = secs;
            }
            if rep > 0 && secs < best {
                best = secs;
                per_step = gpu.dispatch_count() - d0;
                record = gpu.record_seconds() - r0;
            }
        }
        println!(
            "{:>6} {:>12.1} {:>12.1} {:>10.2} {:>10.2} {:>12.2} {:>10.1} {:>10.1} {:>10.1} {:>11} {:>8.1}%",
            size,
            first * 1e3,
            best * 1e3,
            batch as f64 / best,
            step_flops / best / 1e9,
            step_flops / 1e9,
            gpu.pool_bytes() as f64 / MIB,
            gpu.pool_peak_live_bytes() as f64 / MIB,
            needed_bytes(&unet.config, batch) as f64 / MIB,
            per_step,
            100.0 * record / best
        );
        let params: u64 = unet.config.summary().iter().map(|r| r.params).sum();
        ours.push((size, best, params));
        // Augmentation's cost: plain and augmented steps in turn (the recommended set,
        // drawn and applied on the CPU before each step), best of each.
        if std::env::var("SEGFEAT_BENCH_AUGMENT").as_deref() != Ok("0") && volume.is_none() {
            let aug = Augment::recommended();
            let (mut plain, mut augmented, mut alone) =
                (f64::INFINITY, f64::INFINITY, f64::INFINITY);
            for rep in 0..reps {
                // The augmentation alone: draw and apply for the batch's images.
                let t0 = Instant::now();
                for (j, &i) in idx.iter().enumerate() {
                    let t = aug.draw([1, rep as u64, j as u64], size);
                    std::hint::black_box(t.apply(&data.samples[i].image, &data.samples[i].label));
                }
                alone = alone.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                seg::step(&gpu, &unet, &mut adam, &data, &idx, &class_w, None)?;
                plain = plain.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                seg::step(
                    &gpu,
                    &unet,
                    &mut adam,
                    &data,
                    &idx,
                    &class_w,
                    Some((&aug, 1)),
                )?;
                augmented = augmented.min(t0.elapsed().as_secs_f64());
            }
            augment_rows.push((size, plain, augmented, alone));
        }
        let profile = gpu.profile();
        if !profile.is_empty() {
            let total: f64 = profile.iter().map(|p| p.2).sum();
            println!(
                "  per kernel over all {} steps (each dispatch waited for; timed by {}):",
                reps + 1,
                gpu.profile_clock()
            );
            // Every kernel (about 25); SEGFEAT_PROFILE=shapes splits each by launch: the
            // 40 longest.
            let rows = if std::env::var("SEGFEAT_PROFILE").as_deref() == Ok("shapes") {
                40
            } else {
                usize::MAX
            };
            for (entry, count, secs) in profile.iter().take(rows) {
                println!(
                    "  {entry:<38} {count:>6} dispatches {:>9.1} ms {:>5.1}%",
                    secs * 1e3,
                    100.0 * secs / total
                );
            }
        }
    }
    println!(
        "first ms: the warm-up step, which at the first size also builds every pipeline \
         (shader compilation) the step uses"
    );
    println!(
        "pool MiB: every buffer the pool holds (free ones too, the smaller sizes' among them); \
         peak MiB: the most held by live tensors at once so far (the largest size's step)"
    );
    println!(
        "need MiB: parameters, their gradients and Adam's two moments (4 floats per \
         parameter), plus the activations backward reads (the input and every step's output \
         but the upsampling's, which the concatenation holds), for the batch"
    );
    if !augment_rows.is_empty() {
        println!();
        println!(
            "augmentation (--augment recommended, on the CPU before the step), plain and \
             augmented steps in turn, best of {reps} each (SEGFEAT_BENCH_AUGMENT=0 skips):"
        );
        println!(
            "{:>6} {:>12} {:>14} {:>10} {:>18} {:>8}",
            "size", "plain ms", "augmented ms", "slowdown", "augment alone ms", "share"
        );
        for (size, plain, augmented, alone) in &augment_rows {
            println!(
                "{size:>6} {:>12.1} {:>14.1} {:>9.1}% {:>18.2} {:>7.2}%",
                plain * 1e3,
                augmented * 1e3,
                100.0 * (augmented / plain - 1.0),
                alone * 1e3,
                100.0 * alone / plain
            );
        }
        println!(
            "augment alone: drawing and applying the transforms of one batch (image and labels), \
             the work the augmented step adds; share: that over the plain step"
        );
    }
    torch_comparison(&gpu, n, batch, reps, volume.as_ref(), &ours);
    Ok(())
}

const MIB: f64 = (1 << 20) as f64;

/// The least memory a training step can hold: parameters, gradients and Adam's m and v,
/// plus the activations the backward pass reads (in f32).
fn needed_bytes(config: &UnetConfig, batch: usize) -> u64 {
    let rows = config.summary();
    let params: u64 = rows.iter().map(|r| r.params).sum();
    let input = (config.in_channels * config.voxels()) as u64;
    let acts: u64 = rows
        .iter()
        .filter(|r| !r.kind.starts_with("upsample"))
        .map(|r| r.shape.iter().product::<usize>() as u64)
        .sum();
    4 * (4 * params + batch as u64 * (input + acts))
}

/// Runs `benches/torch_reference.py` for the same sizes and prints both times and the
/// ratio. Says how to install PyTorch when the Python it finds has none.
fn torch_comparison(
    gpu: &Gpu,
    n: usize,
    batch: usize,
    reps: usize,
    volume: Option<&VolumeShape>,
    ours: &[(usize, f64, u64)],
) {
    let python = std::env::var("SEGFEAT_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    if python == "none" || ours.is_empty() {
        return;
    }
    let device = std::env::var("SEGFEAT_TORCH_DEVICE")
        .unwrap_or_else(|_| if gpu.is_cpu() { "cpu" } else { "cuda" }.into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_reference.py");
    let sizes: Vec<String> = ours.iter().map(|o| o.0.to_string()).collect();
    println!();
    println!("PyTorch, same step, same run ({python} {script}, device {device}):");
    let mut cmd = Command::new(&python);
    cmd.arg(script);
    if let Some(v) = volume {
        cmd.args(["--depth", &v.depth.to_string()])
            .args(["--depth-pool", &v.describe_pool()]);
    }
    let out = cmd
        .args(["--sizes", &sizes.join(",")])
        .args(["--channels", &n.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--reps", &reps.to_string()])
        .args(["--device", &device])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            println!(
                "  not compared: {}",
                err.lines().last().unwrap_or("the script failed")
            );
            println!("{TORCH_HINT}");
            return;
        }
        Err(e) => {
            println!("  not compared: cannot run {python}: {e}");
            println!("{TORCH_HINT}");
            return;
        }
    };
    for header in out.lines().filter_map(|l| l.strip_prefix("# ")) {
        println!("  {header}");
    }
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>14}",
        "size", "segfeat ms", "PyTorch ms", "segfeat/torch", "torch peak MiB"
    );
    for line in out.lines() {
        let Some(fields) = line.strip_prefix("torch ") else {
            continue;
        };
        let get = |key: &str| {
            fields
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let (Some(size), Some(ms), Some(params)) = (get("size"), get("ms"), get("params")) else {
            println!("  unreadable line from the script: {line}");
            continue;
        };
        let Some(&(_, secs, our_params)) = ours.iter().find(|o| o.0 as f64 == size) else {
            continue;
        };
        if params as u64 != our_params {
            println!(
                "  size {size}: PyTorch's network has {params} parameters, segfeat's {our_params}: \
                 not the same network, no ratio"
            );
            continue;
        }
        let peak = get("peak_mib").filter(|p| p.is_finite());
        println!(
            "{:>6} {:>14.1} {:>14.1} {:>13.2}x {:>14}",
            size,
            secs * 1e3,
            ms,
            secs * 1e3 / ms,
            peak.map_or("-".into(), |p| format!("{p:.1}"))
        );
    }
}

const TORCH_HINT: &str = "  To compare, install PyTorch and point the bench at its Python:
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch
    SEGFEAT_TORCH_PYTHON=.venv-torch/bin/python cargo bench --bench unet
  (SEGFEAT_TORCH_PYTHON=none skips the comparison.)";
