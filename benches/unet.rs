//! Training-step benchmark of the segmentation U-Net: forward, weighted cross-entropy,
//! backward and Adam on one batch, as `segfeat train-seg` runs it, at several input sizes.
//! Prints ms per step, images/s, GFLOP/s (3x the forward FLOPs of `segfeat summary`, the
//! usual estimate for forward + backward) and the pool's memory. Not a test.
//!
//! To run:
//!     cargo bench --bench unet                         # n=16, batch 10, at 128 and 256
//!     SEGFEAT_BENCH_SIZES=64,128 cargo bench --bench unet
//!     SEGFEAT_BENCH_CHANNELS=8 SEGFEAT_BENCH_BATCH=4 SEGFEAT_BENCH_REPS=3 cargo bench --bench unet
//!     SEGFEAT_PROFILE=1 SEGFEAT_BENCH_SIZES=64 cargo bench --bench unet   # time per kernel
//!     SEGFEAT_BENCH_TILING=8x4 cargo bench --bench unet   # the other conv3x3 tile
//!
//! Timing: wall clock of whole steps (each ends by reading the loss back, as training
//! does), best of REPS after one warm-up step; phantom images, so the data is realistic.

use std::time::Instant;

use segfeat::data::phantom::PhantomSpec;
use segfeat::nn::{Unet, UnetConfig};
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
    if let Ok(tile) = std::env::var("SEGFEAT_BENCH_TILING") {
        gpu.set_conv_tiling(tile.parse()?);
    }
    println!("adapter: {}", gpu.describe());
    println!("conv3x3 tile (channels x pixels): {}", gpu.conv_tiling());
    println!(
        "U-Net n={n}, batch {batch}: forward + backward + Adam, best of {reps} after a warm-up"
    );
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>12} {:>12} {:>11} {:>9}",
        "size",
        "ms/step",
        "images/s",
        "GFLOP/s",
        "GFLOP/step",
        "pool MiB",
        "dispatches",
        "record %"
    );
    for size in sizes {
        let config = UnetConfig::new(n, 6, size)?;
        let flops: u64 = config.summary().iter().map(|r| r.flops).sum();
        let step_flops = 3.0 * flops as f64 * batch as f64;
        let data = PhantomSpec {
            size,
            normal_patients: 2,
            slices: (batch.div_ceil(2), batch.div_ceil(2)),
            effusion_images: 0,
            septal_images: 0,
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
        for rep in 0..=reps {
            let (d0, r0) = (gpu.dispatch_count(), gpu.record_seconds());
            let t0 = Instant::now();
            seg::step(&gpu, &unet, &mut adam, &data, &idx, &class_w)?;
            let secs = t0.elapsed().as_secs_f64();
            if rep > 0 && secs < best {
                best = secs;
                per_step = gpu.dispatch_count() - d0;
                record = gpu.record_seconds() - r0;
            }
        }
        println!(
            "{:>6} {:>12.1} {:>10.2} {:>10.2} {:>12.2} {:>12.1} {:>11} {:>8.1}%",
            size,
            best * 1e3,
            batch as f64 / best,
            step_flops / best / 1e9,
            step_flops / 1e9,
            gpu.pool_bytes() as f64 / (1 << 20) as f64,
            per_step,
            100.0 * record / best
        );
        let profile = gpu.profile();
        if !profile.is_empty() {
            let total: f64 = profile.iter().map(|p| p.2).sum();
            println!(
                "  per kernel over all {} steps (each dispatch waited for):",
                reps + 1
            );
            for (entry, count, secs) in profile.iter().take(12) {
                println!(
                    "  {entry:<32} {count:>6} dispatches {:>9.1} ms {:>5.1}%",
                    secs * 1e3,
                    100.0 * secs / total
                );
            }
        }
    }
    Ok(())
}
