//! concat: concatenation along channels (shaders/concat.wgsl), as copies into channel
//! slices of the output; backward is the split, adding each slice into its input's gradient.
//!
//!   a (N, Ca, H, W), b (N, Cb, H, W), ... -> y (N, Ca + Cb + ..., H, W)

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("concat", "concat_forward");
const BACKWARD: Kernel = k("concat", "concat_backward");
const FORWARD4: Kernel = k("concat", "concat_forward4");
const BACKWARD4: Kernel = k("concat", "concat_backward4");

/// The uniform of the concatenation kernels, field for field the WGSL `Params` of
/// shaders/concat.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// Channels of the source, of the destination, and the slice's first.
    cs: u32,
    cd: u32,
    c0: u32,
    /// Plane size, in elements (or in vec4s for the vec4 kernels).
    hw: u32,
    /// The source (forward) or the concatenation's gradient (backward), then the other.
    off_a: u32,
    off_b: u32,
    _pad: u32,
}
/// Copy src (N, Cs, H, W) into channels c0 .. c0+Cs of dst (N, Cd, H, W).
pub fn copy_into(gpu: &Gpu, src: &Tensor, dst: &Tensor, c0: usize) -> Result<()> {
    slice_op(gpu, FORWARD, src, dst, c0)
}

/// dsrc (N, Cs, H, W) += channels c0 .. c0+Cs of ddst (N, Cd, H, W).
pub fn split_add(gpu: &Gpu, ddst: &Tensor, dsrc: &Tensor, c0: usize) -> Result<()> {
    slice_op(gpu, BACKWARD, dsrc, ddst, c0)
}

/// Both directions index the same way: `small` is the per-input tensor, `big` the concat.
fn slice_op(gpu: &Gpu, kernel: Kernel, small: &Tensor, big: &Tensor, c0: usize) -> Result<()> {
    let (n, cs, h, w) = small.nchw("concat input")?;
    let (_, cd, _, _) = big.nchw("concat output")?;
    check_shape(big, &[n, cd, h, w], "concat output")?;
    if c0 + cs > cd {
        bail!(
            "concat: channels {c0}..{} do not fit in an output of {cd} channels",
            c0 + cs
        );
    }
    let hw = h * w;
    for (n0, nb) in gpu.chunks(n, &[cs * hw, cd * hw])? {
        let (bs, os) = gpu.bind(small, n0 * cs * hw, nb * cs * hw);
        let (bb, ob) = gpu.bind(big, n0 * cd * hw, nb * cd * hw);
        // On vec4s where the planes and both offsets allow (every U-Net level), the plane
        // size, offsets and runs counting vec4s; else on scalars. One invocation per run of
        // 16 elements of a plane (RUN, and RUN4 vec4s, in shaders/concat.wgsl).
        let forward = kernel == FORWARD;
        let (kernel, q, os, ob, run) = if hw % 4 == 0 && os % 4 == 0 && ob % 4 == 0 {
            let k4 = if forward { FORWARD4 } else { BACKWARD4 };
            (k4, hw / 4, os / 4, ob / 4, 4)
        } else {
            (kernel, hw, os, ob, 16)
        };
        let total = nb * cs * q.div_ceil(run);
        // Forward reads the input (binding 1) and writes the concat (2); backward reads the
        // concat's gradient (1) and adds into the input's gradient (2).
        let ((off_a, off_b), bufs) = if forward {
            ((os, ob), [(1, bs), (2, bb)])
        } else {
            ((ob, os), [(1, bb), (2, bs)])
        };
        let params = Params {
            total: u(total),
            cs: u(cs),
            cd: u(cd),
            c0: u(c0),
            hw: u(q),
            off_a,
            off_b,
            _pad: 0,
        };
        gpu.dispatch(kernel, super::words(&params), &bufs, total)?;
    }
    Ok(())
}

/// y = the inputs stacked along channels, in order.
pub fn forward(gpu: &Gpu, xs: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        bail!("concat needs at least one input");
    };
    let (n, _, h, w) = first.nchw("concat input")?;
    let mut c = 0;
    for (i, x) in xs.iter().enumerate() {
        let (xn, xc, xh, xw) = x.nchw("concat input")?;
        if (xn, xh, xw) != (n, h, w) {
            bail!(
                "concat input {i} has shape {:?}, but input 0 has N, H, W = {n}, {h}, {w}",
                x.shape()
            );
        }
        c += xc;
    }
    let y = Tensor::uninit(gpu, &[n, c, h, w])?;
    let mut c0 = 0;
    for x in xs {
        copy_into(gpu, x, &y, c0)?;
        c0 += x.shape()[1];
    }
    Ok(y)
}

/// Tape rule: y = concat(xs) along channels.
pub fn concat(tape: &Tape, xs: &[&Var]) -> Result<Var> {
    let values: Vec<&Tensor> = xs.iter().map(|v| &v.value).collect();
    let y = forward(tape.gpu(), &values)?;
    // (id, shape, first channel) of each input that wants a gradient
    let mut parts = Vec::new();
    let mut c0 = 0;
    for v in xs {
        if v.requires_grad() {
            parts.push((v.id(), v.shape().to_vec(), c0));
        }
        c0 += v.shape()[1];
    }
    Ok(tape.record(y, xs, move |gpu, dy, grads| {
        for (id, shape, c0) in parts {
            split_add(gpu, dy, &grads.slot(id, &shape)?, c0)?;
        }
        Ok(())
    }))
}
