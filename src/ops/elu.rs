//! ELU with alpha = 1: y = x if x > 0 else exp(x) - 1 (shaders/elu.wgsl).
//! Elementwise on any shape; large tensors are split into chunks of one binding each.

use super::elementwise::{unary, unary_backward, unary_backward_vec4, unary_forward};
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("elu", "elu_forward");
const BACKWARD: Kernel = k("elu", "elu_backward");
const BACKWARD_FROM_OUTPUT: Kernel = k("elu", "elu_backward_from_output");
const BACKWARD_FROM_OUTPUT4: Kernel = k("elu", "elu_backward_from_output4");

/// y = elu(x)
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    unary_forward(gpu, FORWARD, x)
}

/// dx += dy * elu'(x)
pub fn backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    unary_backward(gpu, BACKWARD, x, dy, dx)
}

/// dx += dy * elu'(x), with the derivative taken from the output y = elu(x): 1 where
/// y > 0, else y + 1. For conv3x3 with the ELU fused, which keeps no pre-activation.
pub fn backward_from_output(gpu: &Gpu, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    unary_backward_vec4(
        gpu,
        BACKWARD_FROM_OUTPUT,
        Some(BACKWARD_FROM_OUTPUT4),
        y,
        dy,
        dx,
    )
}

/// Tape rule: y = elu(x).
pub fn elu(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, x, FORWARD, BACKWARD)
}
