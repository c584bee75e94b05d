//! Batch normalisation (shaders/batchnorm.wgsl) over (N, C, H, W) or (N, C): per channel,
//! normalise by the batch's mean and variance in training (and move the running averages
//! towards them), by the running averages at inference; then scale by gamma and shift by
//! beta. The running statistics are a (2, C) tensor (row 0 the mean, row 1 the unbiased
//! variance), kept beside the parameters and saved with them; Adam never sees it.

use super::u;
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const PLANE_STATS: Kernel = k("batchnorm", "bn_plane_stats");
const CHANNEL_STATS: Kernel = k("batchnorm", "bn_channel_stats");
const RUNNING_STATS: Kernel = k("batchnorm", "bn_running_stats");
const NORMALISE: Kernel = k("batchnorm", "bn_normalise");
const BACKWARD_PLANE: Kernel = k("batchnorm", "bn_backward_plane");
const BACKWARD_CHANNEL: Kernel = k("batchnorm", "bn_backward_channel");
const BACKWARD_INPUT: Kernel = k("batchnorm", "bn_backward_input");

/// Added to the variance (PyTorch's default).
pub const EPS: f32 = 1e-5;
/// Weight of a batch in the running averages (PyTorch's default).
pub const MOMENTUM: f32 = 0.1;

/// Running statistics of `c` channels at their start: mean 0, variance 1.
pub fn running_init(c: usize) -> Vec<f32> {
    let mut v = vec![0.0; 2 * c];
    v[c..].fill(1.0);
    v
}

/// (N, C, HW) of a (N, C, H, W) or (N, C) input.
fn dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.shape()[..] {
        [n, c, h, w] => Ok((n, c, h * w)),
        [n, c] => Ok((n, c, 1)),
        _ => bail!(
            "batch normalisation takes (N, C, H, W) or (N, C), got {:?}",
            x.shape()
        ),
    }
}

fn check(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: &Tensor,
) -> Result<(usize, usize, usize)> {
    let (n, c, hw) = dims(x)?;
    super::check_shape(gamma, &[c], "batch normalisation gamma")?;
    super::check_shape(beta, &[c], "batch normalisation beta")?;
    super::check_shape(running, &[2, c], "batch normalisation running statistics")?;
    if n == 0 || c == 0 || hw == 0 {
        bail!("batch normalisation of an empty tensor {:?}", x.shape());
    }
    Ok((n, c, hw))
}

/// The uniform of the batch-norm kernels, field for field the WGSL `Params` of
/// shaders/batchnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// Samples in the whole batch, channels, pixels per plane.
    n: u32,
    c: u32,
    hw: u32,
    /// Chunk offsets of x (or y for bn_normalise's output), of y / dx, and of dy.
    off_x: u32,
    off_y: u32,
    off_dy: u32,
    /// The chunk's first plane, n0 C.
    first: u32,
    momentum: f32,
    eps: f32,
    /// bn_channel_stats: 1 to update the running statistics.
    update_running: u32,
    /// bn_backward_channel: 1 to add into dgamma and dbeta.
    accumulate: u32,
    /// bn_backward_input: 1 for frozen statistics (inference mode).
    frozen: u32,
    pad: u32,
}

/// The sizes and offsets every entry point reads; the switches off.
fn params(
    total: usize,
    n: usize,
    c: usize,
    hw: usize,
    [off_x, off_y, off_dy]: [u32; 3],
    first: usize,
) -> Params {
    Params {
        total: u(total),
        n: u(n),
        c: u(c),
        hw: u(hw),
        off_x,
        off_y,
        off_dy,
        first: u(first),
        momentum: MOMENTUM,
        eps: EPS,
        update_running: 0,
        accumulate: 0,
        frozen: 0,
        pad: 0,
    }
}

/// Normalise `x` with `stats` (2, C: mean, 1 / std) into a new tensor.
fn normalise(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
) -> Result<Tensor> {
    let (n, c, hw) = dims(x)?;
    let y = Tensor::uninit(gpu, x.shape())?;
    for (s, cnt) in gpu.chunks(n, &[c * hw])? {
        let (bx, ox) = gpu.bind(x, s * c * hw, cnt * c * hw);
        let (by, oy) = gpu.bind(&y, s * c * hw, cnt * c * hw);
        let total = cnt * c * hw;
        let prm = params(total, n, c, hw, [ox, oy, 0], s * c);
        let bufs = [
            (1, bx),
            (2, by),
            (4, gpu.whole(stats, "statistics")?),
            (6, gpu.whole(gamma, "gamma")?),
            (7, gpu.whole(beta, "beta")?),
        ];
        gpu.dispatch(NORMALISE, super::words(&prm), &bufs, total)?;
    }
    Ok(y)
}

/// Training mode: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's
/// statistics, which are returned (2, C: mean, 1 / std) for the backward; the running
/// averages move towards them.
pub fn forward_train(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (n, c, hw) = check(x, gamma, beta, running)?;
    let part = Tensor::uninit(gpu, &[n * c, 2])?;
    for (s, cnt) in gpu.chunks(n, &[c * hw])? {
        let (bx, ox) = gpu.bind(x, s * c * hw, cnt * c * hw);
        let prm = params(cnt * c, n, c, hw, [ox, 0, 0], s * c);
        let bufs = [(1, bx), (3, gpu.whole(&part, "plane statistics")?)];
        gpu.dispatch(PLANE_STATS, super::words(&prm), &bufs, cnt * c)?;
    }
    let stats = Tensor::uninit(gpu, &[2, c])?;
    let prm = Params {
        update_running: 1,
        ..params(c, n, c, hw, [0, 0, 0], 0)
    };
    let bufs = [
        (3, gpu.whole(&part, "plane statistics")?),
        (4, gpu.whole(&stats, "statistics")?),
        (5, gpu.whole(running, "running statistics")?),
    ];
    gpu.dispatch(CHANNEL_STATS, super::words(&prm), &bufs, c)?;
    let y = normalise(gpu, x, gamma, beta, &stats)?;
    Ok((y, stats))
}

/// The (2, C) statistics that inference uses: the running mean and 1 / sqrt(var + eps).
pub fn running_stats(gpu: &Gpu, running: &Tensor) -> Result<Tensor> {
    let c = running.shape().get(1).copied().unwrap_or(0);
    super::check_shape(running, &[2, c], "batch normalisation running statistics")?;
    let stats = Tensor::uninit(gpu, &[2, c])?;
    let prm = params(c, 1, c, 1, [0, 0, 0], 0);
    let bufs = [
        (4, gpu.whole(&stats, "statistics")?),
        (5, gpu.whole(running, "running statistics")?),
    ];
    gpu.dispatch(RUNNING_STATS, super::words(&prm), &bufs, c)?;
    Ok(stats)
}

/// Inference mode: y = gamma (x - running mean) / sqrt(running var + eps) + beta, and the
/// statistics it used.
pub fn forward_inference(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: &Tensor,
) -> Result<(Tensor, Tensor)> {
    check(x, gamma, beta, running)?;
    let stats = running_stats(gpu, running)?;
    let y = normalise(gpu, x, gamma, beta, &stats)?;
    Ok((y, stats))
}

/// The gradients, each ADDED into its tensor where given: dx (with `frozen`, the
/// statistics were the running ones and are constants), dgamma and dbeta.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    frozen: bool,
    dx: Option<&Tensor>,
    dgamma_dbeta: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    let (n, c, hw) = dims(x)?;
    super::check_shape(dy, x.shape(), "batch normalisation output gradient")?;
    super::check_shape(stats, &[2, c], "batch normalisation statistics")?;
    let part = Tensor::uninit(gpu, &[n * c, 2])?;
    for (s, cnt) in gpu.chunks(n, &[c * hw])? {
        let (bx, ox) = gpu.bind(x, s * c * hw, cnt * c * hw);
        let (bdy, ody) = gpu.bind(dy, s * c * hw, cnt * c * hw);
        let prm = params(cnt * c, n, c, hw, [ox, 0, ody], s * c);
        let bufs = [
            (1, bx),
            (8, bdy),
            (3, gpu.whole(&part, "plane sums")?),
            (4, gpu.whole(stats, "statistics")?),
        ];
        gpu.dispatch(BACKWARD_PLANE, super::words(&prm), &bufs, cnt * c)?;
    }
    let sums = Tensor::uninit(gpu, &[2, c])?;
    // Without dgamma and dbeta to add into, the sums alone (bound to scratch tensors).
    let scratch;
    let (dg, db, flag) = match dgamma_dbeta {
        Some((dg, db)) => {
            super::check_shape(dg, &[c], "gamma gradient")?;
            super::check_shape(db, &[c], "beta gradient")?;
            (dg, db, 1)
        }
        None => {
            scratch = Tensor::uninit(gpu, &[c])?;
            (&scratch, &scratch, 0)
        }
    };
    let prm = Params {
        accumulate: flag,
        ..params(c, n, c, hw, [0, 0, 0], 0)
    };
    let bufs = [
        (3, gpu.whole(&part, "plane sums")?),
        (11, gpu.whole(&sums, "channel sums")?),
        (9, gpu.whole(dg, "gamma gradient")?),
        (10, gpu.whole(db, "beta gradient")?),
    ];
    gpu.dispatch(BACKWARD_CHANNEL, super::words(&prm), &bufs, c)?;
    let Some(dx) = dx else { return Ok(()) };
    super::check_shape(dx, x.shape(), "batch normalisation input gradient")?;
    for (s, cnt) in gpu.chunks(n, &[c * hw])? {
        let (bx, ox) = gpu.bind(x, s * c * hw, cnt * c * hw);
        let (bdy, ody) = gpu.bind(dy, s * c * hw, cnt * c * hw);
        let (bdx, odx) = gpu.bind(dx, s * c * hw, cnt * c * hw);
        let total = cnt * c * hw;
        let prm = Params {
            frozen: frozen as u32,
            ..params(total, n, c, hw, [ox, odx, ody], s * c)
        };
        let bufs = [
            (1, bx),
            (8, bdy),
            (2, bdx),
            (4, gpu.whole(stats, "statistics")?),
            (6, gpu.whole(gamma, "gamma")?),
            (11, gpu.whole(&sums, "channel sums")?),
        ];
        gpu.dispatch(BACKWARD_INPUT, super::words(&prm), &bufs, total)?;
    }
    Ok(())
}

/// Tape rule: batch normalisation of `x` with parameters gamma and beta; with `training`
/// the batch's statistics (and `running` is updated), else the running ones.
pub fn batchnorm(
    tape: &Tape,
    x: &Var,
    gamma: &Var,
    beta: &Var,
    running: &Tensor,
    training: bool,
) -> Result<Var> {
    let gpu = tape.gpu();
    let (y, stats) = if training {
        forward_train(gpu, &x.value, &gamma.value, &beta.value, running)?
    } else {
        forward_inference(gpu, &x.value, &gamma.value, &beta.value, running)?
    };
    let (xv, gv) = (x.value.clone(), gamma.value.clone());
    let (xg, pg) = (
        x.requires_grad(),
        gamma.requires_grad() || beta.requires_grad(),
    );
    let (xid, gid, bid) = (x.id(), gamma.id(), beta.id());
    Ok(tape.record(y, &[x, gamma, beta], move |gpu, dy, grads| {
        let dx = if xg {
            Some(grads.slot(xid, xv.shape())?)
        } else {
            None
        };
        let c = gv.numel();
        let dgb = if pg {
            Some((grads.slot(gid, &[c])?, grads.slot(bid, &[c])?))
        } else {
            None
        };
        backward(
            gpu,
            &xv,
            dy,
            &gv,
            &stats,
            !training,
            dx.as_ref(),
            dgb.as_ref().map(|(g, b)| (g, b)),
        )
    }))
}
