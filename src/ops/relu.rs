//! ReLU: y = max(x, 0); its derivative at 0 is taken as 0 (shaders/relu.wgsl).
//! Elementwise on any shape; large tensors are split into chunks of one binding each.

use super::elementwise::{unary, unary_backward_vec4, unary_forward};
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const FORWARD: Kernel = k("relu", "relu_forward");
const BACKWARD: Kernel = k("relu", "relu_backward");
const BACKWARD4: Kernel = k("relu", "relu_backward4");

/// y = relu(x)
pub fn forward(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    unary_forward(gpu, FORWARD, x)
}

/// dx += dy * relu'(x) (on vec4s where the element count and offsets allow, as for
/// every activation of the classifier's convolutions).
pub fn backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    unary_backward_vec4(gpu, BACKWARD, Some(BACKWARD4), x, dy, dx)
}

/// Tape rule: y = relu(x).
pub fn relu(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, x, FORWARD, BACKWARD)
}
