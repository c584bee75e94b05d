//! upsample2: 2x2 nearest-neighbour upsampling by repetition (shaders/upsample2.wgsl).
//!
//!   x (N, C, H, W) -> y (N, C, 2H, 2W); backward sums dy over each 2x2 block.

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("upsample2", "upsample2_forward");
const BACKWARD: Kernel = k("upsample2", "upsample2_backward");

/// y[n,c,i,j] = x[n,c,i/2,j/2]
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw("upsample2 input")?;
    let (hw, ohw) = (h * w, 4 * h * w);
    let y = Tensor::uninit(gpu, &[n, c, 2 * h, 2 * w])?;
    for (p0, pb) in gpu.chunks(n * c, &[hw, ohw])? {
        let (bx, ox) = gpu.bind(x, p0 * hw, pb * hw);
        let (by, oy) = gpu.bind(&y, p0 * ohw, pb * ohw);
        let total = pb * ohw;
        gpu.dispatch(
            FORWARD,
            &[u(total), u(h), u(w), ox, oy, 0, 0, 0],
            &[(1, bx), (2, by)],
            total,
        )?;
    }
    Ok(y)
}

/// dx[n,c,i,j] += sum of dy over the 2x2 block (2i.., 2j..)
pub fn backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, c, h, w) = dx.nchw("upsample2 input gradient")?;
    check_shape(dy, &[n, c, 2 * h, 2 * w], "upsample2 output gradient")?;
    let (hw, ohw) = (h * w, 4 * h * w);
    for (p0, pb) in gpu.chunks(n * c, &[hw, ohw])? {
        let (bdy, ody) = gpu.bind(dy, p0 * ohw, pb * ohw);
        let (bdx, odx) = gpu.bind(dx, p0 * hw, pb * hw);
        let total = pb * hw;
        gpu.dispatch(
            BACKWARD,
            &[u(total), u(h), u(w), ody, odx, 0, 0, 0],
            &[(1, bdy), (2, bdx)],
            total,
        )?;
    }
    Ok(())
}

/// Tape rule: y = upsample2(x).
pub fn upsample2(tape: &Tape, x: &Var) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value)?;
    let (xid, xshape) = (x.id(), x.shape().to_vec());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        backward(gpu, dy, &grads.slot(xid, &xshape)?)
    }))
}
