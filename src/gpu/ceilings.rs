//! The adapter's ceilings, measured in the same run as whatever they are compared with:
//! arithmetic (a register-only FMA kernel, GFLOP/s), memory (a vec4 copy, GB/s) and the
//! cost of a storage load whose address differs per lane, rated in FMAs ([`LoadCeiling`]).
//! Timing is wall-clock around a submit-and-wait, best of `reps`, after one warm-up.

use std::time::Instant;

use super::kernels::{k, Kernel};
use super::Gpu;
use crate::{bail, Result, Tensor};

const FMA: Kernel = k("ceilings", "fma_peak");
const COPY: Kernel = k("ceilings", "copy");
const LOAD_SCALAR: Kernel = k("ceilings", "load_scalar");
const LOAD_VEC4: Kernel = k("ceilings", "load_vec4");

/// The uniform of the ceiling kernels, field for field the WGSL `Params` of
/// shaders/ceilings.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Invocations.
    total: u32,
    /// Multiply-adds or loads per invocation.
    iters: u32,
    /// The load kernels: the table's element count less one (a power of two less one).
    mask: u32,
    _pad: u32,
}
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
    let prm = Params {
        total: threads as u32,
        iters,
        mask: 0,
        _pad: 0,
    };
    gpu.dispatch(FMA, crate::ops::words(&prm), &bufs, threads)
}

/// Launch load_scalar (or with `vec4`, load_vec4): `threads` invocations of `iters` loads
/// each from `table`, whose element count (of floats, or of vec4s) must be a power of two;
/// sink is (threads * 4).
pub fn load_loop(
    gpu: &Gpu,
    table: &Tensor,
    sink: &Tensor,
    threads: usize,
    iters: u32,
    vec4: bool,
) -> Result<()> {
    crate::ops::check_shape(sink, &[threads * 4], "load sink")?;
    let elems = if vec4 {
        table.numel() / 4
    } else {
        table.numel()
    };
    if !elems.is_power_of_two() || (vec4 && !table.numel().is_multiple_of(4)) {
        bail!(
            "load table of {} floats is not a power of two {}",
            table.numel(),
            if vec4 { "of vec4s" } else { "of floats" }
        );
    }
    let (kernel, binding) = if vec4 {
        (LOAD_VEC4, 2)
    } else {
        (LOAD_SCALAR, 3)
    };
    let bufs = [
        (1, gpu.whole(sink, "load sink")?),
        (binding, gpu.whole(table, "load table")?),
    ];
    let prm = Params {
        total: threads as u32,
        iters,
        mask: elems as u32 - 1,
        _pad: 0,
    };
    gpu.dispatch(kernel, crate::ops::words(&prm), &bufs, threads)
}

/// The load kernels with their table and sink, ready to run again and again: what one
/// storage load costs where every lane reads its own address (as a conv kernel's input
/// loads do), measured in turn with the FMA ceiling and told in FMAs.
pub struct LoadCeiling {
    table: Tensor,
    sink: Tensor,
    threads: usize,
    iters: u32,
    vec4: bool,
}

impl LoadCeiling {
    /// A 1 MiB table: small enough to stay in a CPU's cache, so that the loads' own cost
    /// is measured and not memory's.
    pub fn new(gpu: &Gpu, vec4: bool) -> Result<Self> {
        let threads = 64 * 2048;
        Ok(Self {
            table: Tensor::zeros(gpu, &[1 << 18])?,
            sink: Tensor::uninit(gpu, &[threads * 4])?,
            threads,
            iters: 256,
            vec4,
        })
    }

    /// Records and submits one run (does not wait).
    pub fn run(&self, gpu: &Gpu) -> Result<()> {
        load_loop(
            gpu,
            &self.table,
            &self.sink,
            self.threads,
            self.iters,
            self.vec4,
        )
    }

    /// Loads per second (one per invocation per iteration) of a run that took `secs`.
    pub fn loads_per_sec(&self, secs: f64) -> f64 {
        self.threads as f64 * self.iters as f64 / secs
    }
}

/// Launch the copy shader: dst = src (same shape, element count a multiple of 4).
pub fn copy_shader(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<()> {
    crate::ops::check_shape(dst, src.shape(), "copy destination")?;
    let n4 = src.numel() / 4;
    let bufs = [
        (1, gpu.whole(dst, "copy destination")?),
        (2, gpu.whole(src, "copy source")?),
    ];
    let prm = Params {
        total: n4 as u32,
        iters: 0,
        mask: 0,
        _pad: 0,
    };
    gpu.dispatch(COPY, crate::ops::words(&prm), &bufs, n4)
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
    /// 8.6 GFLOP on a CPU adapter (about 80 ms on lavapipe); eight times the invocations on
    /// a GPU, enough to fill one (a million invocations, about 1 ms at 60 TFLOP/s) so that
    /// the submit-and-wait around it stays a small share.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let threads = if gpu.is_cpu() { 64 * 2048 } else { 64 * 16384 };
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

    /// Scalar FMAs per second (each lane of each vec4 chain) of a run that took `secs`.
    pub fn fmas_per_sec(&self, secs: f64) -> f64 {
        self.threads as f64 * self.iters as f64 * 16.0 / secs
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
    // 32 MiB each way on a CPU adapter: larger than the caches, the size of a big U-Net
    // activation. 256 MiB on a GPU: several times a large L2 (60 MB on an H200), and long
    // enough that the submit-and-wait around it is a small share.
    let bytes_each_way: usize = if gpu.is_cpu() { 32 << 20 } else { 256 << 20 };
    let floats = (bytes_each_way / 4).min(gpu.binding_limit() as usize / 4);
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
