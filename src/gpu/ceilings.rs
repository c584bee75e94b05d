//! The adapter's ceilings, measured in the same run as whatever they are compared with:
//! arithmetic (a register-only FMA kernel, GFLOP/s) and memory (a vec4 copy, GB/s).
//! Timing is wall-clock around a submit-and-wait, best of `reps`, after one warm-up.

use std::time::Instant;

use super::kernels::{k, Kernel};
use super::Gpu;
use crate::{Result, Tensor};

const FMA: Kernel = k("ceilings", "fma_peak");
const COPY: Kernel = k("ceilings", "copy");

/// Best wall time in seconds of `f` (recorded, submitted and waited for) over `reps` runs.
pub fn time_best(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    gpu.sync();
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        gpu.sync();
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Launch fma_peak: `threads` invocations of `iters` iterations; sink is (threads * 4).
pub fn fma_chains(gpu: &Gpu, sink: &Tensor, threads: usize, iters: u32) -> Result<()> {
    crate::ops::check_shape(sink, &[threads * 4], "fma sink")?;
    let bufs = [(1, gpu.whole(sink, "fma sink")?)];
    gpu.dispatch(FMA, &[threads as u32, iters, 0, 0], &bufs, threads)
}

/// Launch the copy shader: dst = src (same shape, element count a multiple of 4).
pub fn copy_shader(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<()> {
    crate::ops::check_shape(dst, src.shape(), "copy destination")?;
    let n4 = src.numel() / 4;
    let bufs = [
        (1, gpu.whole(dst, "copy destination")?),
        (2, gpu.whole(src, "copy source")?),
    ];
    gpu.dispatch(COPY, &[n4 as u32, 0, 0, 0], &bufs, n4)
}

/// Wall times in seconds of `f` and of `g` run in turn: g, f, g, f, ..., g (`reps` runs
/// of `f`, each between two of `g`, after one warm-up of each). Returns the times of `f`
/// and, for each, the mean of the two `g` times around it. Both see the same stretch of
/// the machine's time, so their ratio holds still where either alone drifts (a shared
/// 2-core machine measured 2x apart within minutes).
pub fn time_interleaved(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut() -> Result<()>,
    mut g: impl FnMut() -> Result<()>,
) -> Result<Vec<(f64, f64)>> {
    let timed = |h: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t = Instant::now();
        h()?;
        gpu.sync();
        Ok(t.elapsed().as_secs_f64())
    };
    timed(&mut f)?;
    let mut before = timed(&mut g)?;
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let tf = timed(&mut f)?;
        let after = timed(&mut g)?;
        out.push((tf, 0.5 * (before + after)));
        before = after;
    }
    Ok(out)
}

/// The register-only FMA kernel with its output buffer, ready to run again and again.
pub struct FmaCeiling {
    sink: Tensor,
    threads: usize,
    iters: u32,
}

impl FmaCeiling {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let threads = 64 * 2048;
        Ok(Self {
            sink: Tensor::uninit(gpu, &[threads * 4])?,
            threads,
            iters: 2048,
        })
    }

    /// Records and submits one run (does not wait).
    pub fn run(&self, gpu: &Gpu) -> Result<()> {
        fma_chains(gpu, &self.sink, self.threads, self.iters)
    }

    /// GFLOP/s of a run that took `secs`.
    pub fn gflops(&self, secs: f64) -> f64 {
        self.threads as f64 * self.iters as f64 * 32.0 / secs / 1e9
    }
}

/// Register-only FMA throughput in GFLOP/s.
pub fn fma_gflops(gpu: &Gpu, reps: usize) -> Result<f64> {
    let fma = FmaCeiling::new(gpu)?;
    let secs = time_best(gpu, reps, || fma.run(gpu))?;
    Ok(fma.gflops(secs))
}

/// Copy bandwidth in GB/s (bytes read + bytes written), two ways: (copy shader with vec4
/// loads and stores, `copy_buffer_to_buffer`). The benchmark's memory ceiling is the larger:
/// on lavapipe the shader copy is well below what simple kernels reach.
pub fn copy_gbps(gpu: &Gpu, reps: usize) -> Result<(f64, f64)> {
    // 32 MiB each way: larger than the caches, the size of a big U-Net activation.
    let floats = (8usize << 20).min(gpu.binding_limit() as usize / 4);
    let src = Tensor::zeros(gpu, &[floats])?;
    let dst = Tensor::zeros(gpu, &[floats])?;
    let shader = time_best(gpu, reps, || copy_shader(gpu, &src, &dst))?;
    let bytes = floats as u64 * 4;
    let builtin = time_best(gpu, reps, || {
        gpu.with_encoder(|enc| enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, bytes));
        Ok(())
    })?;
    let rate = |secs: f64| 2.0 * bytes as f64 / secs / 1e9;
    Ok((rate(shader), rate(builtin)))
}
