//! conv1x1: pointwise convolution with bias (shaders/conv1x1.wgsl).
//!
//!   x (N, Cin, H, W), w (Cout, Cin, 1, 1), b (Cout) -> y (N, Cout, H, W)
//!
//! Split by sample when a batch exceeds one storage binding, as conv3x3.

use super::{affine, check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("conv1x1", "conv1x1_forward");
const BACKWARD_INPUT: Kernel = k("conv1x1", "conv1x1_backward_input");
const WEIGHT_SHARES: Kernel = k("conv1x1", "conv1x1_backward_weight_shares");
const BIAS_SHARES: Kernel = k("conv1x1", "conv1x1_backward_bias_shares");
const SHARES_SUM: Kernel = k("conv1x1", "conv1x1_backward_shares_sum");

fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, cin, h, wd) = x.nchw("conv1x1 input")?;
    let cout = w.shape().first().copied().unwrap_or(0);
    check_shape(w, &[cout, cin, 1, 1], "conv1x1 weight")?;
    Ok((n, cin, h, wd, cout))
}

/// The uniform of every conv1x1 entry point, field for field the WGSL `Params` of
/// shaders/conv1x1.wgsl; each field has one meaning.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Invocations that do work.
    total: u32,
    /// Samples in this chunk.
    n: u32,
    cin: u32,
    cout: u32,
    /// Pixels per channel.
    hw: u32,
    /// Element offsets of the first and the last storage binding.
    off_a: u32,
    off_b: u32,
    /// Gradient shares: pixels per share.
    per: u32,
    /// The sum of the shares: how many there are.
    shares: u32,
}

impl Params {
    fn new(total: usize, n: usize, cin: usize, cout: usize, hw: usize, off: (u32, u32)) -> Params {
        Params {
            total: u(total),
            n: u(n),
            cin: u(cin),
            cout: u(cout),
            hw: u(hw),
            off_a: off.0,
            off_b: off.1,
            ..Params::default()
        }
    }
}

/// y = w x + b at every pixel
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, cin, h, wd, cout) = dims(x, w)?;
    check_shape(b, &[cout], "conv1x1 bias")?;
    let hw = h * wd;
    let y = Tensor::uninit(gpu, &[n, cout, h, wd])?;
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bx, ox) = gpu.bind(x, n0 * cin * hw, nb * cin * hw);
        let (by, oy) = gpu.bind(&y, n0 * cout * hw, nb * cout * hw);
        // Tiles of 4 output channels x 4 pixels (see shaders/conv1x1.wgsl).
        let total = nb * cout.div_ceil(4) * hw.div_ceil(4);
        let params = Params::new(total, nb, cin, cout, hw, (ox, oy));
        let bufs = [
            (1, bx),
            (2, gpu.whole(w, "conv1x1 weight")?),
            (3, gpu.whole(b, "conv1x1 bias")?),
            (4, by),
        ];
        gpu.dispatch(FORWARD, super::words(&params), &bufs, total)?;
    }
    Ok(y)
}

/// dx += w^T dy at every pixel
pub fn backward_input(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, cin, h, wd, cout) = dims(dx, w)?;
    check_shape(dy, &[n, cout, h, wd], "conv1x1 output gradient")?;
    let hw = h * wd;
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * hw, nb * cout * hw);
        let (bdx, odx) = gpu.bind(dx, n0 * cin * hw, nb * cin * hw);
        // Tiles of 4 input channels x 4 pixels.
        let total = nb * cin.div_ceil(4) * hw.div_ceil(4);
        let params = Params::new(total, nb, cin, cout, hw, (ody, odx));
        let bufs = [(1, bdy), (2, gpu.whole(w, "conv1x1 weight")?), (4, bdx)];
        gpu.dispatch(BACKWARD_INPUT, super::words(&params), &bufs, total)?;
    }
    Ok(())
}

/// Pixels per share and the number of shares when `pixels` terms are summed by each of
/// `sums` invocations (see shaders/conv1x1.wgsl): about 2048 invocations on a CPU
/// adapter (every core busy), 16384 on a GPU, but no more shares than pixels in a share,
/// so that the serial second step (one invocation per element over the shares) is no
/// longer than the first.
fn shares(gpu: &Gpu, pixels: usize, sums: usize) -> (usize, usize) {
    let target: usize = if gpu.is_cpu() { 2048 } else { 16384 };
    let balanced = (pixels as f64).sqrt() as usize;
    let want = target.div_ceil(sums).min(balanced).clamp(1, pixels.max(1));
    let per = pixels.div_ceil(want).max(1);
    (per, pixels.div_ceil(per))
}

/// grad += the sum of `splits` shares in `parts` (splits, grad elements), in split order.
fn add_shares(gpu: &Gpu, parts: &Tensor, splits: usize, grad: &Tensor) -> Result<()> {
    let total = grad.numel();
    let params = Params {
        shares: u(splits),
        ..Params::new(total, 0, 0, 0, 0, (0, 0))
    };
    let bufs = [
        (1, gpu.whole(parts, "conv1x1 gradient shares")?),
        (4, gpu.whole(grad, "conv1x1 gradient")?),
    ];
    gpu.dispatch(SHARES_SUM, super::words(&params), &bufs, total)
}

/// dw += sum over samples and pixels of dy x^T
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Result<()> {
    let (n, cin, h, wd, cout) = dims(x, dw)?;
    check_shape(dy, &[n, cout, h, wd], "conv1x1 output gradient")?;
    let hw = h * wd;
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * hw, nb * cout * hw);
        let (bx, ox) = gpu.bind(x, n0 * cin * hw, nb * cin * hw);
        // Tiles of 4 output x 4 input channels per invocation.
        let tiles = cout.div_ceil(4) * cin.div_ceil(4);
        let (per, splits) = shares(gpu, nb * hw, tiles);
        let parts = Tensor::uninit(gpu, &[splits * cout * cin])?;
        let total = splits * tiles;
        let params = Params {
            per: u(per),
            ..Params::new(total, nb, cin, cout, hw, (ody, ox))
        };
        let bufs = [
            (1, bdy),
            (2, bx),
            (4, gpu.whole(&parts, "conv1x1 gradient shares")?),
        ];
        gpu.dispatch(WEIGHT_SHARES, super::words(&params), &bufs, total)?;
        add_shares(gpu, &parts, splits, dw)?;
    }
    Ok(())
}

/// db += sum over samples and pixels of dy
pub fn backward_bias(gpu: &Gpu, dy: &Tensor, db: &Tensor) -> Result<()> {
    let (n, cout, h, wd) = dy.nchw("conv1x1 output gradient")?;
    check_shape(db, &[cout], "conv1x1 bias gradient")?;
    let hw = h * wd;
    for (n0, nb) in gpu.chunks(n, &[cout * hw])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * hw, nb * cout * hw);
        let (per, splits) = shares(gpu, nb * hw, cout);
        let parts = Tensor::uninit(gpu, &[splits * cout])?;
        let total = splits * cout;
        let params = Params {
            per: u(per),
            ..Params::new(total, nb, 0, cout, hw, (ody, 0))
        };
        let bufs = [(1, bdy), (4, gpu.whole(&parts, "conv1x1 gradient shares")?)];
        gpu.dispatch(BIAS_SHARES, super::words(&params), &bufs, total)?;
        add_shares(gpu, &parts, splits, db)?;
    }
    Ok(())
}

/// Tape rule: y = conv1x1(x, w) + b.
pub fn conv1x1(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    affine(
        tape,
        (x, w, b),
        forward,
        (backward_input, backward_weight, backward_bias),
    )
}
