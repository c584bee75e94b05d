//! One file per op: its launchers (one per WGSL entry point, usable without the tape) and
//! its tape rule (a function on [`crate::Var`]s that records how to push the output's
//! gradient to the inputs). The WGSL lives beside it in `shaders/<op>.wgsl`.
//!
//! Launcher conventions: shapes are checked first and a wrong one is an error naming the
//! operand; `forward` returns a new tensor; `backward_*` take the gradient tensor to ADD
//! into, as the kernels do.

pub mod adam;
pub mod concat;
pub mod conv1x1;
pub mod conv3x3;
pub mod elementwise;
pub mod elu;
pub mod linear;
pub mod maxpool2;
pub mod reduce;
pub mod relu;
pub mod softmax_ce;
pub mod upsample2;

pub use adam::Adam;
pub use concat::concat;
pub use conv1x1::conv1x1;
pub use conv3x3::conv3x3;
pub use elementwise::reshape;
pub use elu::elu;
pub use linear::linear;
pub use maxpool2::maxpool2;
pub use relu::relu;
pub use softmax_ce::{softmax, softmax_ce};
pub use upsample2::upsample2;

use crate::{bail, Result, Tensor};

/// An error unless `t` has shape `want`.
pub(crate) fn check_shape(t: &Tensor, want: &[usize], what: &str) -> Result<()> {
    if t.shape() != want {
        bail!("{what} must have shape {want:?}, got {:?}", t.shape());
    }
    Ok(())
}

pub(crate) fn u(x: usize) -> u32 {
    x as u32
}
