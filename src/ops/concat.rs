//! concat: concatenation along channels (shaders/concat.wgsl), as copies into channel
//! slices of the output; backward is the split, adding each slice into its input's gradient.
//!
//!   a (N, Ca, H, W), b (N, Cb, H, W), ... -> y (N, Ca + Cb + ..., H, W)
//!
//! The kernels see each sample as channels of one plane size, so volumes (N, C, D, H, W)
//! concatenate the same way: any spatial shape after (N, C), the same for every input.

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

/// (N, C, the spatial dimensions) of a concatenation operand: 2-D maps or volumes.
fn split_dims<'a>(t: &'a Tensor, what: &str) -> Result<(usize, usize, &'a [usize])> {
    match t.shape() {
        [n, c, rest @ ..] if (2..=3).contains(&rest.len()) => Ok((*n, *c, rest)),
        s => bail!("{what} must be (N, C, H, W) or (N, C, D, H, W), got shape {s:?}"),
    }
}

/// Both directions index the same way: `small` is the per-input tensor, `big` the concat.
fn slice_op(gpu: &Gpu, kernel: Kernel, small: &Tensor, big: &Tensor, c0: usize) -> Result<()> {
    let (n, cs, rest) = split_dims(small, "concat input")?;
    let (_, cd, _) = split_dims(big, "concat output")?;
    let want: Vec<usize> = [n, cd].iter().chain(rest).copied().collect();
    check_shape(big, &want, "concat output")?;
    if c0 + cs > cd {
        bail!(
            "concat: channels {c0}..{} do not fit in an output of {cd} channels",
            c0 + cs
        );
    }
    let hw: usize = rest.iter().product();
    for (n0, nb) in gpu.chunks(n, &[cs * hw, cd * hw])? {
        let (bs, os) = gpu.bind(small, n0 * cs * hw, nb * cs * hw);
        let (bb, ob) = gpu.bind(big, n0 * cd * hw, nb * cd * hw);
        // On vec4s where the planes and both offsets allow (every U-Net level), the plane
        // size, offsets and runs counting vec4s; else on scalars. One invocation per run of
        // 16 elements of a plane (RUN, and RUN4 vec4s, in shaders/concat.wgsl).
        let forward = kernel == FORWARD;
        let (kernel, q, os, ob, run) = if hw.is_multiple_of(4) && os % 4 == 0 && ob % 4 == 0 {
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
    let (n, _, rest) = split_dims(first, "concat input")?;
    let mut c = 0;
    for (i, x) in xs.iter().enumerate() {
        let (xn, xc, xrest) = split_dims(x, "concat input")?;
        if (xn, xrest) != (n, rest) {
            bail!(
                "concat input {i} has shape {:?}, but input 0 has {:?}: all but the channels must agree",
                x.shape(),
                first.shape()
            );
        }
        c += xc;
    }
    let shape: Vec<usize> = [n, c].iter().chain(rest).copied().collect();
    let y = Tensor::uninit(gpu, &shape)?;
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
