//! maxpool2: 2x2 max pooling with stride 2 (shaders/maxpool2.wgsl).
//!
//!   x (N, C, H, W) -> y (N, C, H/2, W/2); H and W must be even.
//!   backward: dy goes to the maximum of each block; on ties, to the first in row-major order.

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("maxpool2", "maxpool2_forward");
const BACKWARD: Kernel = k("maxpool2", "maxpool2_backward");

fn dims(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = x.nchw("maxpool2 input")?;
    if h % 2 != 0 || w % 2 != 0 {
        bail!(
            "maxpool2 needs an even height and width, got {h}x{w} (input shape {:?})",
            x.shape()
        );
    }
    Ok((n, c, h, w))
}

/// The uniform of the max-pool kernels, field for field the WGSL `Params` of
/// shaders/maxpool2.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// The input's height and width.
    h: u32,
    w: u32,
    /// Element offsets of the bindings, in binding order.
    off_a: u32,
    off_b: u32,
    off_c: u32,
    _p0: u32,
    _p1: u32,
}
/// y = max over each 2x2 block of x
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = dims(x)?;
    let (hw, ohw) = (h * w, h * w / 4);
    let y = Tensor::uninit(gpu, &[n, c, h / 2, w / 2])?;
    for (p0, pb) in gpu.chunks(n * c, &[hw, ohw])? {
        let (bx, ox) = gpu.bind(x, p0 * hw, pb * hw);
        let (by, oy) = gpu.bind(&y, p0 * ohw, pb * ohw);
        let total = pb * ohw;
        gpu.dispatch(
            FORWARD,
            super::words(&Params {
                total: u(total),
                h: u(h),
                w: u(w),
                off_a: ox,
                off_b: oy,
                ..Params::default()
            }),
            &[(1, bx), (2, by)],
            total,
        )?;
    }
    Ok(y)
}

/// dx += dy routed to each block's (first) maximum
pub fn backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, c, h, w) = dims(x)?;
    check_shape(dy, &[n, c, h / 2, w / 2], "maxpool2 output gradient")?;
    check_shape(dx, x.shape(), "maxpool2 input gradient")?;
    let (hw, ohw) = (h * w, h * w / 4);
    for (p0, pb) in gpu.chunks(n * c, &[hw, ohw])? {
        let (bx, ox) = gpu.bind(x, p0 * hw, pb * hw);
        let (bdy, ody) = gpu.bind(dy, p0 * ohw, pb * ohw);
        let (bdx, odx) = gpu.bind(dx, p0 * hw, pb * hw);
        // One invocation per 2x2 block (output element).
        let total = pb * ohw;
        let params = Params {
            total: u(total),
            h: u(h),
            w: u(w),
            off_a: ox,
            off_b: ody,
            off_c: odx,
            ..Params::default()
        };
        gpu.dispatch(
            BACKWARD,
            super::words(&params),
            &[(1, bx), (3, bdy), (4, bdx)],
            total,
        )?;
    }
    Ok(())
}

/// Tape rule: y = maxpool2(x).
pub fn maxpool2(tape: &Tape, x: &Var) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value)?;
    let (xv, xid) = (x.value.clone(), x.id());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        backward(gpu, &xv, dy, &grads.slot(xid, xv.shape())?)
    }))
}
