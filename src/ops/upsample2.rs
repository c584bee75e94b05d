//! upsample2: 2x2 nearest-neighbour upsampling by repetition (shaders/upsample2.wgsl).
//!
//!   x (N, C, H, W) -> y (N, C, 2H, 2W); backward sums dy over each 2x2 block.
//!
//! The output may be a channel slice of a larger tensor ([`forward_into`], [`backward_from`]):
//! [`upsample_concat`], the U-Net's "upsample, then concatenate with the skip", writes the
//! upsampled map straight into the concatenation and never stores it on its own.

use super::concat::{copy_into, split_add};
use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("upsample2", "upsample2_forward");
const BACKWARD: Kernel = k("upsample2", "upsample2_backward");

/// The uniform of the upsampling kernels, field for field the WGSL `Params` of
/// shaders/upsample2.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// The input's (small) height and width.
    h: u32,
    w: u32,
    off_a: u32,
    off_b: u32,
    /// Channels of x, of the tensor the large side is a slice of, and the slice's first.
    c: u32,
    cd: u32,
    c0: u32,
}
/// `y[n,c,i,j] = x[n,c,i/2,j/2]`
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw("upsample2 input")?;
    let y = Tensor::uninit(gpu, &[n, c, 2 * h, 2 * w])?;
    forward_into(gpu, x, &y, 0)?;
    Ok(y)
}

/// Channels c0 .. c0+C of big (N, Cd, 2H, 2W) = upsample2(x (N, C, H, W)).
pub fn forward_into(gpu: &Gpu, x: &Tensor, big: &Tensor, c0: usize) -> Result<()> {
    let (n, c, h, w, cd) = slice_dims(x, big, c0, "upsample2 output")?;
    let (hw, ohw) = (h * w, 4 * h * w);
    for pt in parts(gpu, (n, c, cd, c0), hw, ohw)? {
        let (bx, ox) = gpu.bind(x, pt.x0, pt.planes * hw);
        let (by, oy) = gpu.bind(big, pt.b0, pt.planes / pt.c * pt.cd * ohw);
        // One invocation per input row.
        let total = pt.planes * h;
        gpu.dispatch(
            FORWARD,
            super::words(&Params {
                total: u(total),
                h: u(h),
                w: u(w),
                off_a: ox,
                off_b: oy,
                c: u(pt.c),
                cd: u(pt.cd),
                c0: u(pt.c0),
            }),
            &[(1, bx), (2, by)],
            total,
        )?;
    }
    Ok(())
}

/// `dx[n,c,i,j]` += sum of dy over the 2x2 block (2i.., 2j..)
pub fn backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<()> {
    backward_from(gpu, dy, 0, dx)
}

/// dx (N, C, H, W) += the 2x2 block sums of channels c0 .. c0+C of dbig (N, Cd, 2H, 2W).
pub fn backward_from(gpu: &Gpu, dbig: &Tensor, c0: usize, dx: &Tensor) -> Result<()> {
    let (n, c, h, w, cd) = slice_dims(dx, dbig, c0, "upsample2 output gradient")?;
    let (hw, ohw) = (h * w, 4 * h * w);
    for pt in parts(gpu, (n, c, cd, c0), hw, ohw)? {
        let (bdy, ody) = gpu.bind(dbig, pt.b0, pt.planes / pt.c * pt.cd * ohw);
        let (bdx, odx) = gpu.bind(dx, pt.x0, pt.planes * hw);
        // One invocation per input row.
        let total = pt.planes * h;
        gpu.dispatch(
            BACKWARD,
            super::words(&Params {
                total: u(total),
                h: u(h),
                w: u(w),
                off_a: ody,
                off_b: odx,
                c: u(pt.c),
                cd: u(pt.cd),
                c0: u(pt.c0),
            }),
            &[(1, bdy), (2, bdx)],
            total,
        )?;
    }
    Ok(())
}

/// (N, C, H, W, Cd) after checking that `big` is (N, Cd, 2H, 2W) with room for channels
/// c0 .. c0+C.
fn slice_dims(
    small: &Tensor,
    big: &Tensor,
    c0: usize,
    what: &str,
) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = small.nchw("upsample2 input")?;
    let cd = big.shape().get(1).copied().unwrap_or(0);
    check_shape(big, &[n, cd, 2 * h, 2 * w], what)?;
    if c0 + c > cd {
        bail!(
            "upsample2: channels {c0}..{} do not fit in {what} of {cd} channels",
            c0 + c
        );
    }
    Ok((n, c, h, w, cd))
}

/// One dispatch's share of the work: `planes` planes of x from element `x0`, their
/// images in big from element `b0`, and the (C, Cd, c0) the kernel indexes big with.
struct Part {
    x0: usize,
    b0: usize,
    planes: usize,
    c: usize,
    cd: usize,
    c0: usize,
}

/// How to split the work so that every binding fits: whole samples when they fit (one
/// dispatch for the whole batch, as a rule); otherwise runs of planes, which are
/// contiguous in x, and in big too when they stay within one sample (the kernel then
/// sees plain planes: C = Cd = 1).
fn parts(
    gpu: &Gpu,
    (n, c, cd, c0): (usize, usize, usize, usize),
    hw: usize,
    ohw: usize,
) -> Result<Vec<Part>> {
    let sliced = cd != c || c0 != 0;
    if sliced {
        // Err only says one sample does not fit a binding: then split within samples.
        if let Ok(chunks) = gpu.chunks(n, &[c * hw, cd * ohw]) {
            return Ok(chunks
                .into_iter()
                .map(|(n0, nb)| Part {
                    x0: n0 * c * hw,
                    b0: n0 * cd * ohw,
                    planes: nb * c,
                    c,
                    cd,
                    c0,
                })
                .collect());
        }
    }
    // Runs of planes: within each sample when sliced, over the whole batch when not.
    let runs: Vec<(usize, usize)> = if sliced {
        (0..n).map(|s| (s, 1)).collect()
    } else {
        vec![(0, n)]
    };
    let mut out = Vec::new();
    for (s, ns) in runs {
        for (p0, pb) in gpu.chunks(ns * c, &[hw, ohw])? {
            let xp = s * c + p0;
            let bp = if sliced { s * cd + c0 + p0 } else { xp };
            out.push(Part {
                x0: xp * hw,
                b0: bp * ohw,
                planes: pb,
                c: 1,
                cd: 1,
                c0: 0,
            });
        }
    }
    Ok(out)
}

/// Tape rule: y = upsample2(x).
pub fn upsample2(tape: &Tape, x: &Var) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value)?;
    let (xid, xshape) = (x.id(), x.shape().to_vec());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        backward(gpu, dy, &grads.slot(xid, &xshape)?)
    }))
}

/// Tape rule: y = concat(upsample2(x), skip) along channels, one node: x is upsampled
/// straight into the first channels of y and skip copied after them; the backward sums
/// x's gradient from y's gradient slice and splits skip's off. The same values and
/// gradients as the three ops, bit for bit, with two dispatches each way instead of
/// three and no upsampled map of its own.
pub fn upsample_concat(tape: &Tape, x: &Var, skip: &Var) -> Result<Var> {
    let gpu = tape.gpu();
    let (n, cx, h, w) = x.value.nchw("upsample2 input")?;
    let (sn, cs, sh, sw) = skip.value.nchw("concat input")?;
    if (sn, sh, sw) != (n, 2 * h, 2 * w) {
        bail!(
            "upsample_concat: the skip has shape {:?}, but the upsampled input is ({n}, {cx}, {}, {})",
            skip.shape(),
            2 * h,
            2 * w
        );
    }
    let y = Tensor::uninit(gpu, &[n, cx + cs, 2 * h, 2 * w])?;
    forward_into(gpu, &x.value, &y, 0)?;
    copy_into(gpu, &skip.value, &y, cx)?;
    let (xg, sg) = (x.requires_grad(), skip.requires_grad());
    let (xid, xshape) = (x.id(), x.shape().to_vec());
    let (sid, sshape) = (skip.id(), skip.shape().to_vec());
    Ok(tape.record(y, &[x, skip], move |gpu, dy, grads| {
        if xg {
            backward_from(gpu, dy, 0, &grads.slot(xid, &xshape)?)?;
        }
        if sg {
            split_add(gpu, dy, &grads.slot(sid, &sshape)?, cx)?;
        }
        Ok(())
    }))
}
