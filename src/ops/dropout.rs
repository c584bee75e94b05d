//! Inverted dropout (shaders/dropout.wgsl): in training each element is kept with
//! probability 1 - p and scaled by 1 / (1 - p); at inference it is the identity. The mask
//! is a hash of (seed, step, element index), not a stored tensor: a rerun gives the same
//! bits, and the backward recomputes the mask.

use super::u;
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("dropout", "dropout_forward");
const BACKWARD: Kernel = k("dropout", "dropout_backward");

/// Which mask: the training's seed, the step, and the layer (so that two dropout layers
/// of one step draw different masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u64,
    pub layer: u32,
}

/// Wellons' lowbias32, as in the shader.
pub fn lowbias32(mut v: u32) -> u32 {
    v ^= v >> 16;
    v = v.wrapping_mul(0x7feb_352d);
    v ^= v >> 15;
    v = v.wrapping_mul(0x846c_a68b);
    v ^= v >> 16;
    v
}

/// The two 32-bit keys of the shader's hash for `key`.
pub fn mask_keys(key: DropoutKey) -> (u32, u32) {
    let h = |v: u64, salt: u32| lowbias32(lowbias32(v as u32 ^ salt) ^ (v >> 32) as u32);
    let k0 = lowbias32(h(key.seed, 0x5bd1_e995) ^ h(key.step, 0x27d4_eb2f) ^ key.layer);
    let k1 = lowbias32(k0 ^ 0x68e3_1da4);
    (k0, k1)
}

/// The hash threshold of a drop probability: an element is dropped when its hash is
/// below round(p 2^32).
pub fn threshold(p: f32) -> u32 {
    ((p as f64) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// Whether element `i` is kept under `key` and `p` (the host's copy of the shader's test).
pub fn keeps(key: DropoutKey, p: f32, i: u32) -> bool {
    let (k0, k1) = mask_keys(key);
    lowbias32(lowbias32(i ^ k0) ^ k1) >= threshold(p)
}

fn check(p: f32, n: usize) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("the dropout probability must be in [0, 1), got {p}");
    }
    if n > u32::MAX as usize {
        bail!("dropout on {n} elements: the mask's index is 32 bits");
    }
    Ok(())
}

/// The uniform of the dropout kernels, field for field the WGSL `Params` of
/// shaders/dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    /// Index in the whole tensor of this chunk's first element.
    first: u32,
    /// The mask's hash keys.
    k0: u32,
    k1: u32,
    /// An element is dropped when its hash is below it.
    threshold: u32,
    /// 1 / (1 - p).
    scale: f32,
}

fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    src: &Tensor,
    dst: &Tensor,
    p: f32,
    key: DropoutKey,
) -> Result<()> {
    check(p, src.numel())?;
    let (k0, k1) = mask_keys(key);
    let scale = 1.0 / (1.0 - p);
    for (s, n) in gpu.chunks(src.numel(), &[1])? {
        let (bs, os) = gpu.bind(src, s, n);
        let (bd, od) = gpu.bind(dst, s, n);
        let prm = Params {
            total: u(n),
            off_a: os,
            off_b: od,
            first: u(s),
            k0,
            k1,
            threshold: threshold(p),
            scale,
        };
        gpu.dispatch(kernel, super::words(&prm), &[(1, bs), (2, bd)], n)?;
    }
    Ok(())
}

/// y = mask * x / (1 - p)
pub fn forward(gpu: &Gpu, x: &Tensor, p: f32, key: DropoutKey) -> Result<Tensor> {
    let y = Tensor::uninit(gpu, x.shape())?;
    launch(gpu, FORWARD, x, &y, p, key)?;
    Ok(y)
}

/// dx += mask * dy / (1 - p)
pub fn backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor, p: f32, key: DropoutKey) -> Result<()> {
    super::check_shape(dx, dy.shape(), "input gradient")?;
    launch(gpu, BACKWARD, dy, dx, p, key)
}

/// Tape rule: dropout in training (`key` Some), the identity at inference (None) or
/// when p = 0.
pub fn dropout(tape: &Tape, x: &Var, p: f32, key: Option<DropoutKey>) -> Result<Var> {
    check(p, x.value.numel())?;
    let Some(key) = key.filter(|_| p > 0.0) else {
        return Ok(x.clone());
    };
    let y = forward(tape.gpu(), &x.value, p, key)?;
    let (xid, shape) = (x.id(), x.shape().to_vec());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        let dx = grads.slot(xid, &shape)?;
        backward(gpu, dy, &dx, p, key)
    }))
}
