//! linear: fully connected layer, y = x W^T + b (shaders/linear.wgsl).
//!
//!   x (N, I), W (O, I), b (O) -> y (N, O)
//!
//! W may exceed one storage binding (VGG-16's first fully connected layer at 256x256 is
//! 4096 x 32768 floats): it is then split by output rows, and each chunk's contribution to
//! dx adds into dx.

use super::{affine, check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("linear", "linear_forward");
const BACKWARD_INPUT: Kernel = k("linear", "linear_backward_input");
const BACKWARD_WEIGHT: Kernel = k("linear", "linear_backward_weight");
const BACKWARD_BIAS: Kernel = k("linear", "linear_backward_bias");

fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let [n, i] = x.shape()[..] else {
        bail!("linear input must be 2-D (N, I), got shape {:?}", x.shape());
    };
    let o = w.shape().first().copied().unwrap_or(0);
    check_shape(w, &[o, i], "linear weight")?;
    Ok((n, i, o))
}

/// The uniform of the linear kernels, field for field the WGSL `Params` of
/// shaders/linear.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// Samples.
    n: u32,
    /// In features.
    i: u32,
    /// Out features (all of them).
    o: u32,
    /// First output row of this chunk, and the chunk's rows.
    o0: u32,
    ob: u32,
    /// Element offset of W's (or dW's) chunk inside its binding.
    off_w: u32,
    _pad: u32,
}

impl Params {
    fn new(
        total: usize,
        n: usize,
        i: usize,
        o: usize,
        (o0, ob): (usize, usize),
        off_w: u32,
    ) -> Params {
        Params {
            total: u(total),
            n: u(n),
            i: u(i),
            o: u(o),
            o0: u(o0),
            ob: u(ob),
            off_w,
            _pad: 0,
        }
    }
}

/// y = x W^T + b
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, i, o) = dims(x, w)?;
    check_shape(b, &[o], "linear bias")?;
    let y = Tensor::uninit(gpu, &[n, o])?;
    for (o0, ob) in gpu.chunks(o, &[i])? {
        let (bw, ow) = gpu.bind(w, o0 * i, ob * i);
        // 4 samples per invocation (see shaders/linear.wgsl).
        let total = n.div_ceil(4) * ob;
        let params = Params::new(total, n, i, o, (o0, ob), ow);
        let bufs = [
            (1, gpu.whole(x, "linear input")?),
            (2, bw),
            (3, gpu.whole(b, "linear bias")?),
            (4, gpu.whole(&y, "linear output")?),
        ];
        gpu.dispatch(FORWARD, super::words(&params), &bufs, total)?;
    }
    Ok(y)
}

/// dx += dy W
pub fn backward_input(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, i, o) = dims(dx, w)?;
    check_shape(dy, &[n, o], "linear output gradient")?;
    for (o0, ob) in gpu.chunks(o, &[i])? {
        let (bw, ow) = gpu.bind(w, o0 * i, ob * i);
        let total = n.div_ceil(4) * i;
        let params = Params::new(total, n, i, o, (o0, ob), ow);
        let bufs = [
            (1, gpu.whole(dy, "linear output gradient")?),
            (2, bw),
            (4, gpu.whole(dx, "linear input gradient")?),
        ];
        gpu.dispatch(BACKWARD_INPUT, super::words(&params), &bufs, total)?;
    }
    Ok(())
}

/// dW += dy^T x
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Result<()> {
    let (n, i, o) = dims(x, dw)?;
    check_shape(dy, &[n, o], "linear output gradient")?;
    for (o0, ob) in gpu.chunks(o, &[i])? {
        let (bw, ow) = gpu.bind(dw, o0 * i, ob * i);
        let total = ob * i;
        let params = Params::new(total, n, i, o, (o0, ob), ow);
        let bufs = [
            (1, gpu.whole(dy, "linear output gradient")?),
            (3, gpu.whole(x, "linear input")?),
            (4, bw),
        ];
        gpu.dispatch(BACKWARD_WEIGHT, super::words(&params), &bufs, total)?;
    }
    Ok(())
}

/// db += sum over samples of dy
pub fn backward_bias(gpu: &Gpu, dy: &Tensor, db: &Tensor) -> Result<()> {
    let [n, o] = dy.shape()[..] else {
        bail!(
            "linear output gradient must be 2-D (N, O), got shape {:?}",
            dy.shape()
        );
    };
    check_shape(db, &[o], "linear bias gradient")?;
    let params = Params::new(o, n, 0, o, (0, o), 0);
    let bufs = [
        (1, gpu.whole(dy, "linear output gradient")?),
        (4, gpu.whole(db, "linear bias gradient")?),
    ];
    gpu.dispatch(BACKWARD_BIAS, super::words(&params), &bufs, o)
}

/// Tape rule: y = x W^T + b.
pub fn linear(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    affine(
        tape,
        (x, w, b),
        forward,
        (backward_input, backward_weight, backward_bias),
    )
}
