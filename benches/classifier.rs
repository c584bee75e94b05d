//! Training-step benchmark of the classifier (VGG-16 and its `quick` reduction): forward,
//! weighted cross-entropy, backward and Adam on one batch of random features, as every run
//! of the protocol does 200 times. Prints ms per step, the seconds one run's 200 steps
//! take, GFLOP/s (3x the forward FLOPs), dispatches per step and the share of the step
//! spent recording them. Not a test.
//!
//! To run:
//!     cargo bench --bench classifier                      # quick preset, IMG and IMG+CONCAT (n=8)
//!     SEGFEAT_BENCH_PRESET=paper cargo bench --bench classifier
//!     SEGFEAT_BENCH_CHANNELS=1,49 SEGFEAT_BENCH_SIZE=32 SEGFEAT_BENCH_WIDTH=0.0625 SEGFEAT_PROFILE=1 cargo bench --bench classifier
//!     SEGFEAT_BENCH_TILING=rows cargo bench --bench classifier   # another conv3x3 tile (gpu, tiled, rows, rows_subgroup)
//!     SEGFEAT_BENCH_REG=bn=1,dropout=0.5,leaky=0.01 cargo bench --bench classifier   # the regularised VGG
//!
//! Timing: wall clock of whole steps (each ends by reading the loss back), best of REPS
//! after one warm-up step.

use std::time::Instant;

use segfeat::nn::init::{normal, rng};
use segfeat::nn::vgg::Regularisation;
use segfeat::nn::{Preset, Vgg, VggConfig};
use segfeat::ops::Adam;
use segfeat::train::cls;
use segfeat::{Gpu, Result, Tensor};

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn main() -> Result<()> {
    let gpu = Gpu::new()?;
    let preset = Preset::parse(&env("SEGFEAT_BENCH_PRESET", "quick"))?;
    let (width, fc, size) = preset.shape();
    let width: f64 = env("SEGFEAT_BENCH_WIDTH", &width.to_string())
        .parse()
        .unwrap_or(width);
    let size: usize = env("SEGFEAT_BENCH_SIZE", &size.to_string())
        .parse()
        .unwrap_or(size);
    let batch: usize = env("SEGFEAT_BENCH_BATCH", "10").parse().unwrap_or(10);
    let reps: usize = env("SEGFEAT_BENCH_REPS", "3").parse().unwrap_or(3).max(1);
    let channels: Vec<usize> = env("SEGFEAT_BENCH_CHANNELS", "1,25")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if let Ok(tile) = std::env::var("SEGFEAT_BENCH_TILING") {
        gpu.set_conv_tiling(tile.parse()?)?;
    }
    let reg = Regularisation::parse(&env("SEGFEAT_BENCH_REG", ""))?;
    println!("adapter: {}", gpu.describe());
    println!("conv3x3 tile (channels x pixels): {}", gpu.conv_tiling());
    println!(
        "classifier preset {} (widths x{width}, fc {fc}, regularisation {}) at {size}x{size}, batch {batch}: best of {reps} after a warm-up",
        preset.name(),
        reg.describe()
    );
    println!(
        "{:>9} {:>12} {:>10} {:>12} {:>10} {:>12} {:>12} {:>11} {:>9}",
        "channels",
        "params",
        "ms/step",
        "s/200 steps",
        "GFLOP/s",
        "pool MiB",
        "peak MiB",
        "dispatches",
        "record %"
    );
    for c in channels {
        let mut config = VggConfig::new(c, size, width, fc)?;
        config.reg = reg;
        let (params, flops) = config.cost();
        let step_flops = 3.0 * flops as f64 * batch as f64;
        let vgg = Vgg::init(&gpu, config, 1)?;
        let tensors: Vec<&Tensor> = vgg.params.iter().map(|(_, t)| t).collect();
        let mut adam = Adam::new(&gpu, &tensors, 1e-4)?;
        let mut r = rng(2);
        let xs: Vec<f32> = (0..batch * c * size * size)
            .map(|_| normal(&mut r) as f32)
            .collect();
        let x = Tensor::from_slice(&gpu, &[batch, c, size, size], &xs)?;
        let ys: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
        let y = Tensor::from_slice(&gpu, &[batch], &ys)?;
        let w = Tensor::from_slice(&gpu, &[2], &[0.5, 0.5])?;
        let mut best = f64::INFINITY;
        // Dispatches per step, and the CPU time spent recording them (in the best step).
        let (mut per_step, mut record) = (0, 0.0);
        for rep in 0..=reps {
            let (d0, r0) = (gpu.dispatch_count(), gpu.record_seconds());
            let t0 = Instant::now();
            cls::step(
                &gpu,
                &vgg,
                &mut adam,
                &x,
                &y,
                &w,
                segfeat::nn::vgg::Pass::Train { seed: 1, step: 0 },
            )?
            .item(&gpu);
            let secs = t0.elapsed().as_secs_f64();
            if rep > 0 && secs < best {
                best = secs;
                per_step = gpu.dispatch_count() - d0;
                record = gpu.record_seconds() - r0;
            }
        }
        println!(
            "{:>9} {:>12} {:>10.1} {:>12.1} {:>10.2} {:>12.1} {:>12.1} {:>11} {:>8.1}%",
            c,
            params,
            best * 1e3,
            best * 200.0,
            step_flops / best / 1e9,
            gpu.pool_bytes() as f64 / (1 << 20) as f64,
            gpu.pool_peak_live_bytes() as f64 / (1 << 20) as f64,
            per_step,
            100.0 * record / best
        );
        let profile = gpu.profile();
        if !profile.is_empty() {
            let total: f64 = profile.iter().map(|p| p.2).sum();
            println!(
                "  per kernel so far (each dispatch waited for; timed by {}):",
                gpu.profile_clock()
            );
            // SEGFEAT_PROFILE=shapes splits each kernel by launch: more rows.
            let rows = if std::env::var("SEGFEAT_PROFILE").as_deref() == Ok("shapes") {
                40
            } else {
                14
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
    Ok(())
}
