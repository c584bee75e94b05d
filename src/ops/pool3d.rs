//! pool3d: 2x2 max pooling and 2x2 nearest upsampling of volumes, by 1 or 2 in depth
//! (shaders/pool3d.wgsl): 2x2x2 for thin-slice volumes, 2x2x1 for thick-slice ones, whose
//! few slices would not survive four halvings.
//!
//!   maxpool3d:  x (N, C, D, H, W) -> y (N, C, D/fd, H/2, W/2); the size must divide.
//!   upsample3d: x (N, C, D, H, W) -> y (N, C, D fd, 2H, 2W) by repetition.
//!
//! Max pooling's backward sends dy to the block's first maximum in (slice, row, column)
//! order; the upsampling's sums dy over each block in the same order.

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

const POOL: Kernel = k("pool3d", "maxpool3d_forward");
const POOL_BACKWARD: Kernel = k("pool3d", "maxpool3d_backward");
const UP: Kernel = k("pool3d", "upsample3d_forward");
const UP_BACKWARD: Kernel = k("pool3d", "upsample3d_backward");

/// The uniform of the pool3d kernels, field for field the WGSL `Params` of
/// shaders/pool3d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    /// Depth, height and width of the large side (the pooling's input, the upsampling's
    /// output).
    d: u32,
    h: u32,
    w: u32,
    /// The depth factor, 1 or 2.
    fd: u32,
    /// Element offsets of the bindings, in binding order.
    off_a: u32,
    off_b: u32,
    off_c: u32,
}

fn check_factor(fd: usize) -> Result<()> {
    if fd != 1 && fd != 2 {
        bail!("a volume's pooling factor in depth is 1 or 2, got {fd}");
    }
    Ok(())
}

/// (N, C, D, H, W) of the pooling input `x`, checked to divide by (fd, 2, 2).
fn pool_dims(x: &Tensor, fd: usize) -> Result<(usize, usize, usize, usize, usize)> {
    check_factor(fd)?;
    let (n, c, d, h, w) = x.ncdhw("maxpool3d input")?;
    if d % fd != 0 || h % 2 != 0 || w % 2 != 0 {
        bail!(
            "maxpool3d by {fd}x2x2 needs a depth divisible by {fd} and an even height and width, got {d}x{h}x{w}"
        );
    }
    Ok((n, c, d, h, w))
}

/// One dispatch per chunk of planes, `per_invocation_plane` invocations per plane; the
/// bindings are (slot, tensor, elements per plane), and each one's element offset goes to
/// the uniform field of its slot (1: `off_a`, 2 and 3: `off_b`, 4: `off_c`).
fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    planes: usize,
    (d, h, w, fd): (usize, usize, usize, usize),
    per_invocation_plane: usize,
    bufs: &[(u32, &Tensor, usize)],
) -> Result<()> {
    let per: Vec<usize> = bufs.iter().map(|b| b.2).collect();
    for (p0, pb) in gpu.chunks(planes, &per)? {
        let mut offs = [0u32; 3];
        let mut slices = Vec::new();
        for &(slot, t, e) in bufs {
            let (s, o) = gpu.bind(t, p0 * e, pb * e);
            offs[match slot {
                1 => 0,
                2 | 3 => 1,
                _ => 2,
            }] = o;
            slices.push((slot, s));
        }
        let total = pb * per_invocation_plane;
        let prm = Params {
            total: u(total),
            d: u(d),
            h: u(h),
            w: u(w),
            fd: u(fd),
            off_a: offs[0],
            off_b: offs[1],
            off_c: offs[2],
        };
        gpu.dispatch(kernel, super::words(&prm), &slices, total)?;
    }
    Ok(())
}

/// y = the max of each fd x 2 x 2 block of x
pub fn maxpool_forward(gpu: &Gpu, x: &Tensor, fd: usize) -> Result<Tensor> {
    let (n, c, d, h, w) = pool_dims(x, fd)?;
    let (big, small) = (d * h * w, d / fd * (h / 2) * (w / 2));
    let y = Tensor::uninit(gpu, &[n, c, d / fd, h / 2, w / 2])?;
    launch(
        gpu,
        POOL,
        n * c,
        (d, h, w, fd),
        small,
        &[(1, x, big), (2, &y, small)],
    )?;
    Ok(y)
}

/// dx += dy routed to each block's (first) maximum
pub fn maxpool_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor, fd: usize) -> Result<()> {
    let (n, c, d, h, w) = pool_dims(x, fd)?;
    check_shape(
        dy,
        &[n, c, d / fd, h / 2, w / 2],
        "maxpool3d output gradient",
    )?;
    check_shape(dx, x.shape(), "maxpool3d input gradient")?;
    let (big, small) = (d * h * w, d / fd * (h / 2) * (w / 2));
    launch(
        gpu,
        POOL_BACKWARD,
        n * c,
        (d, h, w, fd),
        small,
        &[(1, x, big), (3, dy, small), (4, dx, big)],
    )
}

/// y[z,i,j] = x[z/fd, i/2, j/2]
pub fn upsample_forward(gpu: &Gpu, x: &Tensor, fd: usize) -> Result<Tensor> {
    check_factor(fd)?;
    let (n, c, d, h, w) = x.ncdhw("upsample3d input")?;
    let (small, big) = (d * h * w, d * fd * 4 * h * w);
    let y = Tensor::uninit(gpu, &[n, c, d * fd, 2 * h, 2 * w])?;
    launch(
        gpu,
        UP,
        n * c,
        (d * fd, 2 * h, 2 * w, fd),
        big,
        &[(1, x, small), (2, &y, big)],
    )?;
    Ok(y)
}

/// dx[z,i,j] += the sum of dy over the block it was copied to
pub fn upsample_backward(gpu: &Gpu, dy: &Tensor, dx: &Tensor, fd: usize) -> Result<()> {
    check_factor(fd)?;
    let (n, c, d, h, w) = dx.ncdhw("upsample3d input gradient")?;
    check_shape(
        dy,
        &[n, c, d * fd, 2 * h, 2 * w],
        "upsample3d output gradient",
    )?;
    let (small, big) = (d * h * w, d * fd * 4 * h * w);
    launch(
        gpu,
        UP_BACKWARD,
        n * c,
        (d * fd, 2 * h, 2 * w, fd),
        small,
        &[(3, dy, big), (4, dx, small)],
    )
}

/// Tape rule: y = maxpool3d(x) by fd x 2 x 2.
pub fn maxpool3d(tape: &Tape, x: &Var, fd: usize) -> Result<Var> {
    let y = maxpool_forward(tape.gpu(), &x.value, fd)?;
    let (xv, xid) = (x.value.clone(), x.id());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        maxpool_backward(gpu, &xv, dy, &grads.slot(xid, xv.shape())?, fd)
    }))
}

/// Tape rule: y = upsample3d(x) by fd x 2 x 2.
pub fn upsample3d(tape: &Tape, x: &Var, fd: usize) -> Result<Var> {
    let y = upsample_forward(tape.gpu(), &x.value, fd)?;
    let (xshape, xid, xg) = (x.shape().to_vec(), x.id(), x.requires_grad());
    Ok(tape.record(y, &[x], move |gpu, dy, grads| {
        if xg {
            upsample_backward(gpu, dy, &grads.slot(xid, &xshape)?, fd)?;
        }
        Ok(())
    }))
}
