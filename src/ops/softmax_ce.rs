//! softmax_ce: softmax with weighted cross-entropy, and softmax alone
//! (shaders/softmax_ce.wgsl, where the normalisation and the gradient are derived).
//!
//!   pixel-wise:  logits (N, C, H, W), labels (N, H, W)
//!   per-sample:  logits (N, C),       labels (N)
//!   class weights (C); labels are f32 tensors holding class indices.
//!
//!   `loss = sum_p w[y_p] (-log softmax(z_p)[y_p]) / sum_p w[y_p]`      (a (1)-tensor)

use super::{check_shape, reduce, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const SOFTMAX: Kernel = k("softmax_ce", "softmax_forward");
const FORWARD: Kernel = k("softmax_ce", "softmax_ce_forward");
const FINISH: Kernel = k("softmax_ce", "softmax_ce_finish");
const BACKWARD: Kernel = k("softmax_ce", "softmax_ce_backward");

/// The uniform of the softmax kernels, field for field the WGSL `Params` of
/// shaders/softmax_ce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    n: u32,
    /// Classes (labels).
    c: u32,
    /// Pixels per image.
    hw: u32,
    /// Chunk offsets of the logits, the labels, the per-pixel terms (or probabilities)
    /// and the logits' gradient.
    off_z: u32,
    off_y: u32,
    off_l: u32,
    off_dz: u32,
}

impl Params {
    fn new(total: usize, n: usize, c: usize, hw: usize) -> Params {
        Params {
            total: u(total),
            n: u(n),
            c: u(c),
            hw: u(hw),
            ..Params::default()
        }
    }
}
/// (N, C, P) of the logits, with P = H*W or 1.
fn dims(z: &Tensor) -> Result<(usize, usize, usize)> {
    match z.shape()[..] {
        [n, c, h, w] => Ok((n, c, h * w)),
        [n, c] => Ok((n, c, 1)),
        _ => bail!(
            "logits must be (N, C, H, W) or (N, C), got shape {:?}",
            z.shape()
        ),
    }
}

fn check_targets(z: &Tensor, labels: &Tensor, class_w: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, c, hw) = dims(z)?;
    let want: Vec<usize> = if z.shape().len() == 4 {
        vec![n, z.shape()[2], z.shape()[3]]
    } else {
        vec![n]
    };
    check_shape(labels, &want, "labels")?;
    check_shape(class_w, &[c], "class weights")?;
    Ok((n, c, hw))
}

/// Probabilities: softmax over the channel axis, same shape as the logits.
pub fn softmax(gpu: &Gpu, z: &Tensor) -> Result<Tensor> {
    let (n, c, hw) = dims(z)?;
    let probs = Tensor::uninit(gpu, z.shape())?;
    for (n0, nb) in gpu.chunks(n, &[c * hw])? {
        let (bz, oz) = gpu.bind(z, n0 * c * hw, nb * c * hw);
        let (bp, op) = gpu.bind(&probs, n0 * c * hw, nb * c * hw);
        let total = nb * hw;
        let params = Params {
            off_z: oz,
            off_l: op,
            ..Params::new(total, nb, c, hw)
        };
        gpu.dispatch(SOFTMAX, super::words(&params), &[(1, bz), (4, bp)], total)?;
    }
    Ok(probs)
}

/// The loss and the weight sum W (both (1)-tensors; W is what backward divides by).
pub fn forward(
    gpu: &Gpu,
    z: &Tensor,
    labels: &Tensor,
    class_w: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (n, c, hw) = check_targets(z, labels, class_w)?;
    let lterm = Tensor::uninit(gpu, &[n * hw])?;
    let wterm = Tensor::uninit(gpu, &[n * hw])?;
    for (n0, nb) in gpu.chunks(n, &[c * hw, hw])? {
        let (bz, oz) = gpu.bind(z, n0 * c * hw, nb * c * hw);
        let (by, oy) = gpu.bind(labels, n0 * hw, nb * hw);
        let (bl, ol) = gpu.bind(&lterm, n0 * hw, nb * hw);
        let (bw, _) = gpu.bind(&wterm, n0 * hw, nb * hw);
        let total = nb * hw;
        let params = Params {
            off_z: oz,
            off_y: oy,
            off_l: ol,
            ..Params::new(total, nb, c, hw)
        };
        let bufs = [
            (1, bz),
            (2, by),
            (3, gpu.whole(class_w, "class weights")?),
            (5, bl),
            (6, bw),
        ];
        gpu.dispatch(FORWARD, super::words(&params), &bufs, total)?;
    }
    let lsum = reduce::sum(gpu, &lterm)?;
    let wsum = reduce::sum(gpu, &wterm)?;
    let loss = Tensor::uninit(gpu, &[1])?;
    let bufs = [
        (5, gpu.whole(&lsum, "loss sum")?),
        (6, gpu.whole(&wsum, "weight sum")?),
        (7, gpu.whole(&loss, "loss")?),
    ];
    gpu.dispatch(FINISH, super::words(&Params::new(1, 0, 0, 0)), &bufs, 1)?;
    Ok((loss, wsum))
}

/// `dz += dloss * w[y] (softmax(z) - onehot(y)) / W`
pub fn backward(
    gpu: &Gpu,
    z: &Tensor,
    labels: &Tensor,
    class_w: &Tensor,
    dloss: &Tensor,
    wsum: &Tensor,
    dz: &Tensor,
) -> Result<()> {
    let (n, c, hw) = check_targets(z, labels, class_w)?;
    check_shape(dz, z.shape(), "logits gradient")?;
    check_shape(dloss, &[1], "loss gradient")?;
    for (n0, nb) in gpu.chunks(n, &[c * hw, hw])? {
        let (bz, oz) = gpu.bind(z, n0 * c * hw, nb * c * hw);
        let (by, oy) = gpu.bind(labels, n0 * hw, nb * hw);
        let (bdz, odz) = gpu.bind(dz, n0 * c * hw, nb * c * hw);
        let total = nb * hw;
        let params = Params {
            off_z: oz,
            off_y: oy,
            off_dz: odz,
            ..Params::new(total, nb, c, hw)
        };
        let bufs = [
            (1, bz),
            (2, by),
            (3, gpu.whole(class_w, "class weights")?),
            (4, bdz),
            (5, gpu.whole(dloss, "loss gradient")?),
            (6, gpu.whole(wsum, "weight sum")?),
        ];
        gpu.dispatch(BACKWARD, super::words(&params), &bufs, total)?;
    }
    Ok(())
}

/// Tape rule: the weighted cross-entropy loss of `logits` against constant `labels`.
pub fn softmax_ce(tape: &Tape, logits: &Var, labels: &Tensor, class_w: &Tensor) -> Result<Var> {
    let (loss, wsum) = forward(tape.gpu(), &logits.value, labels, class_w)?;
    let (zv, zid) = (logits.value.clone(), logits.id());
    let (labels, class_w) = (labels.clone(), class_w.clone());
    Ok(tape.record(loss, &[logits], move |gpu, dloss, grads| {
        let dz = grads.slot(zid, zv.shape())?;
        backward(gpu, &zv, &labels, &class_w, dloss, &wsum, &dz)
    }))
}
