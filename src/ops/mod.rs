//! One file per op: its launchers (one per WGSL entry point, usable without the tape) and
//! its tape rule (a function on [`crate::Var`]s that records how to push the output's
//! gradient to the inputs). The WGSL lives beside it in `shaders/<op>.wgsl`.
//!
//! Launcher conventions: shapes are checked first and a wrong one is an error naming the
//! operand; `forward` returns a new tensor; `backward_*` take the gradient tensor to ADD
//! into, as the kernels do.

pub mod adam;
pub mod batchnorm;
pub mod concat;
pub mod conv1x1;
pub mod conv3x3;
pub mod conv3x3x3;
pub mod dropout;
pub mod elementwise;
pub mod elu;
pub mod gap;
pub mod leaky_relu;
pub mod linear;
pub mod maxpool2;
pub mod pool3d;
pub mod reduce;
pub mod relu;
pub mod softmax_ce;
pub mod upsample2;

pub use adam::Adam;
pub use batchnorm::batchnorm;
pub use concat::concat;
pub use conv1x1::conv1x1;
pub use conv3x3::{conv3x3, conv3x3_elu, conv3x3_relu};
pub use conv3x3x3::{conv3x3x3, conv3x3x3_elu, conv3x3x3_relu};
pub use dropout::{dropout, DropoutKey};
pub use elementwise::reshape;
pub use elu::elu;
pub use gap::gap;
pub use leaky_relu::leaky_relu;
pub use linear::linear;
pub use maxpool2::maxpool2;
pub use pool3d::{maxpool3d, upsample3d};
pub use relu::relu;
pub use softmax_ce::{softmax, softmax_ce};
pub use upsample2::{upsample2, upsample_concat};

use crate::{bail, Gpu, Result, Tape, Tensor, Var};

/// An error unless `t` has shape `want`.
pub fn check_shape(t: &Tensor, want: &[usize], what: &str) -> Result<()> {
    if t.shape() != want {
        bail!("{what} must have shape {want:?}, got {:?}", t.shape());
    }
    Ok(())
}

pub(crate) fn u(x: usize) -> u32 {
    x as u32
}

/// A backward launcher of an op with input x, weight w and bias b: (gpu, dy, other, grad).
type Backward3 = fn(&Gpu, &Tensor, &Tensor, &Tensor) -> Result<()>;

/// The forward launcher of such an op: (gpu, x, w, b) -> y.
type Forward3 = fn(&Gpu, &Tensor, &Tensor, &Tensor) -> Result<Tensor>;

/// Its three backward launchers: to the input, to the weight, to the bias (gpu, dy, db).
type Backwards3 = (
    Backward3,
    Backward3,
    fn(&Gpu, &Tensor, &Tensor) -> Result<()>,
);

/// The tape rule shared by conv3x3, conv1x1 and linear, whose output is affine in x, w, b:
/// y = forward(x, w, b); then dx += backward_input(dy, w), dw += backward_weight(dy, x),
/// db += backward_bias(dy), each only for the inputs that require a gradient.
pub(crate) fn affine(
    tape: &Tape,
    (x, w, b): (&Var, &Var, &Var),
    forward: Forward3,
    (backward_input, backward_weight, backward_bias): Backwards3,
) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value, &w.value, &b.value)?;
    let (xv, wv) = (x.value.clone(), w.value.clone());
    let (xg, wg, bg) = (x.requires_grad(), w.requires_grad(), b.requires_grad());
    let (xid, wid, bid) = (x.id(), w.id(), b.id());
    let bshape = b.shape().to_vec();
    Ok(tape.record(y, &[x, w, b], move |gpu, dy, grads| {
        if xg {
            backward_input(gpu, dy, &wv, &grads.slot(xid, xv.shape())?)?;
        }
        if wg {
            backward_weight(gpu, dy, &xv, &grads.slot(wid, wv.shape())?)?;
        }
        if bg {
            backward_bias(gpu, dy, &grads.slot(bid, &bshape)?)?;
        }
        Ok(())
    }))
}

/// A kernel family's uniform struct (`#[repr(C)]`, Pod, mirrored field for field by its
/// WGSL `Params`) as the words `Gpu::dispatch` takes.
pub(crate) fn words<T: bytemuck::Pod>(params: &T) -> &[u32] {
    bytemuck::cast_slice(std::slice::from_ref(params))
}
