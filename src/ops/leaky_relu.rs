//! Leaky ReLU: y = x for x > 0, else a x, with the slope a >= 0 a parameter
//! (shaders/leaky_relu.wgsl). a = 0 is ReLU. The classifier's `--leaky A` fuses it into
//! the convolutions' epilogue (`conv3x3_act` with [`super::conv3x3::Activation::Leaky`]),
//! whose backward calls [`backward`] with the output y in place of x (right for a >= 0).

use super::elementwise::{unary_backward_with, unary_forward_with};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("leaky_relu", "leaky_relu_forward");
const BACKWARD: Kernel = k("leaky_relu", "leaky_relu_backward");

fn check_slope(slope: f32) -> Result<()> {
    if !(slope >= 0.0 && slope.is_finite()) {
        bail!("the leaky ReLU's slope must be a number >= 0, got {slope}");
    }
    Ok(())
}

/// y = leaky_relu(x; slope)
pub fn forward(gpu: &Gpu, x: &Tensor, slope: f32) -> Result<Tensor> {
    check_slope(slope)?;
    unary_forward_with(gpu, FORWARD, x, slope)
}

/// dx += dy * leaky_relu'(x) (x may be the output y: same sign).
pub fn backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor, slope: f32) -> Result<()> {
    check_slope(slope)?;
    unary_backward_with(gpu, (BACKWARD, None), x, dy, dx, slope)
}

/// Tape rule: y = leaky_relu(x; slope).
pub fn leaky_relu(tape: &Tape, x: &Var, slope: f32) -> Result<Var> {
    let y = forward(tape.gpu(), &x.value, slope)?;
    let (xv, xid) = (x.value.clone(), x.id());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        let dx = grads.slot(xid, xv.shape())?;
        backward(gpu, &xv, dy, &dx, slope)
    }))
}
