//! Deterministic sum of all elements (shaders/reduce.wgsl): passes of serial sums over
//! spans of 256 elements until one value is left.

use super::u;
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tensor};

const SUM: Kernel = k("reduce", "sum_reduce");

/// The uniform of the sum kernel, field for field the WGSL `Params` of shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Partial sums this pass writes.
    total: u32,
    /// Input elements.
    n: u32,
    off_a: u32,
    off_b: u32,
}
/// Elements summed by one invocation (SPAN in the shader).
pub const SPAN: usize = 256;

/// The sum of every element of `x`, as a one-element tensor (no readback).
pub fn sum(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let mut cur = x.clone();
    loop {
        let n = cur.numel();
        let parts = n.div_ceil(SPAN);
        let out = Tensor::uninit(gpu, &[parts])?;
        // Chunks of whole spans so that each partial sum sees its full span.
        for (s, cnt) in gpu.chunks(parts, &[SPAN, 1])? {
            let first = s * SPAN;
            let len = (cnt * SPAN).min(n - first);
            let (bx, ox) = gpu.bind(&cur, first, len);
            let (bo, oo) = gpu.bind(&out, s, cnt);
            let prm = Params {
                total: u(cnt),
                n: u(len),
                off_a: ox,
                off_b: oo,
            };
            gpu.dispatch(SUM, super::words(&prm), &[(1, bx), (2, bo)], cnt)?;
        }
        if parts == 1 {
            return Ok(out);
        }
        cur = out;
    }
}
