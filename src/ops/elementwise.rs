//! fill, scale, add_into (shaders/elementwise.wgsl) on flat tensors, and `reshape`, the
//! zero-copy view whose backward is an add_into.

use super::u;
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const FILL: Kernel = k("elementwise", "fill");
const SCALE: Kernel = k("elementwise", "scale");
const ADD_INTO: Kernel = k("elementwise", "add_into");

/// The uniform of fill, scale and add_into, field for field the WGSL `Params` of
/// shaders/elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Scalar {
    total: u32,
    off_a: u32,
    off_b: u32,
    /// The value filled or the factor scaled by.
    value: f32,
}

/// The uniform of the activations (elu, relu, leaky_relu), field for field their WGSL
/// `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Unary {
    total: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    /// The leaky ReLU's slope (0 for the others).
    slope: f32,
}
/// `x[i] = value`
pub fn fill(gpu: &Gpu, x: &Tensor, value: f32) -> Result<()> {
    for (s, n) in gpu.chunks(x.numel(), &[1])? {
        let (bx, ox) = gpu.bind(x, s, n);
        let prm = Scalar {
            total: u(n),
            off_a: ox,
            off_b: 0,
            value,
        };
        gpu.dispatch(FILL, super::words(&prm), &[(1, bx)], n)?;
    }
    Ok(())
}

/// `x[i] *= value`
pub fn scale(gpu: &Gpu, x: &Tensor, value: f32) -> Result<()> {
    for (s, n) in gpu.chunks(x.numel(), &[1])? {
        let (bx, ox) = gpu.bind(x, s, n);
        let prm = Scalar {
            total: u(n),
            off_a: ox,
            off_b: 0,
            value,
        };
        gpu.dispatch(SCALE, super::words(&prm), &[(1, bx)], n)?;
    }
    Ok(())
}

/// `dst[i] += src[i]` (same element count; shapes may differ, as for a reshape)
pub fn add_into(gpu: &Gpu, dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.numel() != src.numel() {
        bail!(
            "add_into: destination {:?} and source {:?} differ in element count",
            dst.shape(),
            src.shape()
        );
    }
    for (s, n) in gpu.chunks(dst.numel(), &[1])? {
        let (bd, od) = gpu.bind(dst, s, n);
        let (bs, os) = gpu.bind(src, s, n);
        let prm = Scalar {
            total: u(n),
            off_a: od,
            off_b: os,
            value: 0.0,
        };
        gpu.dispatch(ADD_INTO, super::words(&prm), &[(1, bd), (2, bs)], n)?;
    }
    Ok(())
}

/// The same values seen with another shape (e.g. flattening (N, C, H, W) to (N, C*H*W)
/// before a fully connected layer). Backward adds dy, reshaped back, into dx.
pub fn reshape(tape: &Tape, x: &Var, shape: &[usize]) -> Result<Var> {
    let y = x.value.reshape(shape)?;
    let (xid, xshape) = (x.id(), x.shape().to_vec());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        let dx = grads.slot(xid, &xshape)?;
        add_into(gpu, &dx, dy)
    }))
}

/// y = f(x) for an elementwise kernel with bindings 1 x, 2 y (elu, relu).
pub(crate) fn unary_forward(gpu: &Gpu, kernel: Kernel, x: &Tensor) -> Result<Tensor> {
    unary_forward_with(gpu, kernel, x, 0.0)
}

/// [`unary_forward`] for a kernel with a parameter (the leaky ReLU's slope).
pub(crate) fn unary_forward_with(
    gpu: &Gpu,
    kernel: Kernel,
    x: &Tensor,
    slope: f32,
) -> Result<Tensor> {
    let y = Tensor::uninit(gpu, x.shape())?;
    for (s, n) in gpu.chunks(x.numel(), &[1])? {
        let (bx, ox) = gpu.bind(x, s, n);
        let (by, oy) = gpu.bind(&y, s, n);
        let prm = Unary {
            total: u(n),
            off_a: ox,
            off_b: oy,
            off_c: 0,
            slope,
        };
        gpu.dispatch(kernel, super::words(&prm), &[(1, bx), (2, by)], n)?;
    }
    Ok(y)
}

/// dx += dy * f'(x) for an elementwise kernel with bindings 1 x, 3 dy, 4 dx.
pub(crate) fn unary_backward(
    gpu: &Gpu,
    kernel: Kernel,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    unary_backward_vec4(gpu, kernel, None, x, dy, dx)
}

/// [`unary_backward`], with `kernel4`, a vec4 variant of the kernel (same bindings as
/// vec4 arrays, counts and offsets in vec4s), for each chunk whose length and offsets are
/// multiples of 4: a conv's activations always are.
pub(crate) fn unary_backward_vec4(
    gpu: &Gpu,
    kernel: Kernel,
    kernel4: Option<Kernel>,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    unary_backward_with(gpu, (kernel, kernel4), x, dy, dx, 0.0)
}

/// [`unary_backward_vec4`] for kernels with a parameter (the leaky ReLU's slope).
pub(crate) fn unary_backward_with(
    gpu: &Gpu,
    (kernel, kernel4): (Kernel, Option<Kernel>),
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    slope: f32,
) -> Result<()> {
    super::check_shape(dy, x.shape(), "output gradient")?;
    super::check_shape(dx, x.shape(), "input gradient")?;
    for (s, n) in gpu.chunks(x.numel(), &[1])? {
        let (bx, ox) = gpu.bind(x, s, n);
        let (bdy, ody) = gpu.bind(dy, s, n);
        let (bdx, odx) = gpu.bind(dx, s, n);
        let bufs = [(1, bx), (3, bdy), (4, bdx)];
        let with = |[total, off_a, off_b, off_c]: [u32; 4]| Unary {
            total,
            off_a,
            off_b,
            off_c,
            slope,
        };
        match kernel4 {
            Some(k4) if n % 4 == 0 && ox % 4 == 0 && ody % 4 == 0 && odx % 4 == 0 => gpu.dispatch(
                k4,
                super::words(&with([u(n / 4), ox / 4, ody / 4, odx / 4])),
                &bufs,
                n / 4,
            )?,
            _ => gpu.dispatch(kernel, super::words(&with([u(n), ox, ody, odx])), &bufs, n)?,
        }
    }
    Ok(())
}

/// Tape rule of an elementwise activation: backward adds dy * f'(x) into dx.
pub(crate) fn unary(tape: &Tape, x: &Var, fwd: Kernel, bwd: Kernel) -> Result<Var> {
    let y = unary_forward(tape.gpu(), fwd, &x.value)?;
    let (xv, xid) = (x.value.clone(), x.id());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        let dx = grads.slot(xid, xv.shape())?;
        unary_backward(gpu, bwd, &xv, dy, &dx)
    }))
}
