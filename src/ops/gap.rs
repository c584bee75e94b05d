//! Global average pooling (shaders/gap.wgsl): (N, C, H, W) -> (N, C), each output the
//! mean of its plane. The classifier's `--gap` puts it before the fully connected layers
//! in place of flattening, so that fc1 has C inputs instead of C (S/32)^2.

use super::u;
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("gap", "gap_forward");
const BACKWARD: Kernel = k("gap", "gap_backward");

/// The uniform of the pooling kernels, field for field the WGSL `Params` of
/// shaders/gap.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Invocations: planes (forward) or elements (backward).
    total: u32,
    /// Pixels per plane.
    hw: u32,
    off_a: u32,
    off_b: u32,
}

/// y[n, c] = mean over (h, w) of x[n, c, h, w]
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw("global average pooling input")?;
    let hw = h * w;
    let y = Tensor::uninit(gpu, &[n, c])?;
    // Chunks of whole planes.
    for (s, cnt) in gpu.chunks(n * c, &[hw, 1])? {
        let (bx, ox) = gpu.bind(x, s * hw, cnt * hw);
        let (by, oy) = gpu.bind(&y, s, cnt);
        let prm = Params {
            total: u(cnt),
            hw: u(hw),
            off_a: ox,
            off_b: oy,
        };
        gpu.dispatch(FORWARD, super::words(&prm), &[(1, bx), (2, by)], cnt)?;
    }
    Ok(y)
}

/// dx[n, c, h, w] += dy[n, c] / (H W)
pub fn backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, c, h, w) = dx.nchw("global average pooling input gradient")?;
    super::check_shape(dy, &[n, c], "global average pooling output gradient")?;
    let hw = h * w;
    for (s, cnt) in gpu.chunks(n * c, &[hw, 1])? {
        let (bdy, ody) = gpu.bind(dy, s, cnt);
        let (bdx, odx) = gpu.bind(dx, s * hw, cnt * hw);
        let prm = Params {
            total: u(cnt * hw),
            hw: u(hw),
            off_a: ody,
            off_b: odx,
        };
        gpu.dispatch(
            BACKWARD,
            super::words(&prm),
            &[(1, bdy), (2, bdx)],
            cnt * hw,
        )?;
    }
    Ok(())
}

/// Tape rule: y = gap(x).
pub fn gap(tape: &Tape, x: &Var) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value)?;
    let (xid, shape) = (x.id(), x.shape().to_vec());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        let dx = grads.slot(xid, &shape)?;
        backward(gpu, dy, &dx)
    }))
}
