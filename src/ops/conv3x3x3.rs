//! conv3x3x3: 3x3x3 convolution of volumes, stride 1, zero padding 1, with bias
//! (shaders/conv3x3x3.wgsl).
//!
//!   x (N, Cin, D, H, W), w (Cout, Cin, 3, 3, 3), b (Cout) -> y (N, Cout, D, H, W)
//!
//! The kernels are conv3x3's with a sum over the depth taps around their loops (the
//! shader's header says how): the forward and the backward to the input run
//! `conv3x3x3_rows` (4 output channels x 8 pixels x 2 rows of one slice per invocation) on
//! packed weights on every adapter, the weight gradient `conv3x3x3_backward_weight` (8
//! output channels x one (input channel, depth tap) x 9 taps; GPU tiles) or
//! `conv3x3x3_backward_weight_trio` (the three depth taps of an input channel at once; the
//! CPU adapters' tiles, `Rows` and `RowsSubgroup`) over shares of the (sample, slice, row)
//! rows, then their sum. The bias gradient alone is conv3x3's kernel
//! on the volume seen as (N, Cout, D x H, W). Batches too large for one storage binding are
//! split by sample, as in 2-D. [`conv3x3x3_act`] fuses the activation as
//! [`super::conv3x3::conv3x3_act`] does.

use super::conv3x3::{record_fused, Activation, ConvTiling, FusedBackward};
use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{Gpu, Result, Tape, Tensor, Var};

const PACK: Kernel = k("conv3x3x3", "conv3x3x3_pack");
const PACK_BOTH: Kernel = k("conv3x3x3", "conv3x3x3_pack_both");
const NAIVE: Kernel = k("conv3x3x3", "conv3x3x3_naive");
const ROWS: Kernel = k("conv3x3x3", "conv3x3x3_rows");
const BACKWARD_WEIGHT: Kernel = k("conv3x3x3", "conv3x3x3_backward_weight");
const BACKWARD_WEIGHT_TRIO: Kernel = k("conv3x3x3", "conv3x3x3_backward_weight_trio");
const BACKWARD_WEIGHT_SUM: Kernel = k("conv3x3x3", "conv3x3x3_backward_weight_sum");

/// (N, Cin, D, H, W, Cout) after checking that x and w fit together.
fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (n, cin, d, h, wd) = x.ncdhw("conv3x3x3 input")?;
    let cout = w.shape().first().copied().unwrap_or(0);
    check_shape(w, &[cout, cin, 3, 3, 3], "conv3x3x3 weight")?;
    Ok((n, cin, d, h, wd, cout))
}

/// The uniform of every conv3x3x3 entry point, field for field the WGSL `Params` of
/// shaders/conv3x3x3.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Invocations that do work.
    total: u32,
    /// Samples in this chunk.
    n: u32,
    cin: u32,
    cout: u32,
    d: u32,
    h: u32,
    w: u32,
    /// Element offsets of the first and the last storage binding.
    off_a: u32,
    off_b: u32,
    /// vec4 groups of output channels (packed weights, weight-gradient shares).
    cq: u32,
    /// conv3x3x3_pack_both: the flipped packing's vec4 groups.
    cq_flip: u32,
    /// The rows kernel: 8-pixel groups per row.
    row_groups: u32,
    /// Weight gradient: (sample, slice, row) rows per share.
    rows_per_share: u32,
    /// Weight gradient and its sum: the number of shares.
    shares: u32,
    /// The rows kernel: bit 0 add the bias and overwrite (else add into the output); with
    /// it, bits 1-2 the fused activation.
    epilogue: u32,
    /// conv3x3x3_pack: 1 to pack the transposed, flipped weights.
    flip: u32,
    /// Weight gradient and its sum: 1 to sum the bias gradient as well.
    bias_grad: u32,
    /// The leaky ReLU's slope (activation 3).
    slope: f32,
}

impl Params {
    /// The sizes and offsets every entry point reads; the rest zero.
    fn new(
        total: usize,
        (n, cin, cout): (usize, usize, usize),
        (d, h, w): (usize, usize, usize),
        (off_a, off_b): (u32, u32),
    ) -> Params {
        Params {
            total: u(total),
            n: u(n),
            cin: u(cin),
            cout: u(cout),
            d: u(d),
            h: u(h),
            w: u(w),
            off_a,
            off_b,
            cq: u(cout.div_ceil(4)),
            ..Params::default()
        }
    }
}

/// The weights (Cout, Cin, 3, 3, 3) as (Cin, 27, Cq) vec4s for the rows kernel, or with
/// `flip` those of the transposed, flipped convolution (input Cout, output Cin).
fn pack(gpu: &Gpu, w: &Tensor, flip: bool) -> Result<Tensor> {
    let (cout, cin) = (w.shape()[0], w.shape()[1]);
    let (ci_t, co_t) = if flip { (cout, cin) } else { (cin, cout) };
    let cq = co_t.div_ceil(4);
    let packed = Tensor::uninit(gpu, &[ci_t, 27, cq * 4])?;
    let rows = ci_t * 27;
    let prm = Params {
        flip: flip as u32,
        cq: u(cq),
        ..Params::new(rows, (0, cin, cout), (0, 0, 0), (0, 0))
    };
    let bufs = [
        (2, gpu.whole(w, "conv3x3x3 weight")?),
        (4, gpu.whole(&packed, "conv3x3x3 packed weight")?),
    ];
    gpu.dispatch(PACK, super::words(&prm), &bufs, rows)?;
    Ok(packed)
}

/// Both packings of `w` in one dispatch: (forward, flipped).
fn pack_both(gpu: &Gpu, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let (cout, cin) = (w.shape()[0], w.shape()[1]);
    let (cq, cq_flip) = (cout.div_ceil(4), cin.div_ceil(4));
    let packed = Tensor::uninit(gpu, &[cin, 27, cq * 4])?;
    let flipped = Tensor::uninit(gpu, &[cout, 27, cq_flip * 4])?;
    let rows = cin.max(cout) * 27;
    let prm = Params {
        cq: u(cq),
        cq_flip: u(cq_flip),
        ..Params::new(rows, (0, cin, cout), (0, 0, 0), (0, 0))
    };
    let bufs = [
        (1, gpu.whole(&flipped, "conv3x3x3 flipped packed weight")?),
        (2, gpu.whole(w, "conv3x3x3 weight")?),
        (4, gpu.whole(&packed, "conv3x3x3 packed weight")?),
    ];
    gpu.dispatch(PACK_BOTH, super::words(&prm), &bufs, rows)?;
    Ok((packed, flipped))
}

/// The rows kernel: x (N, cin, D, H, W) with packed weights into y (N, cout, D, H, W);
/// with `bias`, y = act(conv + b), without, y += conv.
fn rows(
    gpu: &Gpu,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<(&Tensor, Activation)>,
    y: &Tensor,
    cout: usize,
) -> Result<()> {
    let (n, cin, d, h, wd) = x.ncdhw("conv3x3x3 input")?;
    let v = d * h * wd;
    for (n0, nb) in gpu.chunks(n, &[cin * v, cout * v])? {
        let (bx, ox) = gpu.bind(x, n0 * cin * v, nb * cin * v);
        let (by, oy) = gpu.bind(y, n0 * cout * v, nb * cout * v);
        let total = nb * cout.div_ceil(4) * d * h.div_ceil(2) * wd.div_ceil(8);
        let prm = Params {
            epilogue: bias.map_or(0, |(_, act)| 1 | act.flag_bits()),
            cq: u(cout.div_ceil(4)),
            row_groups: u(wd.div_ceil(8)),
            slope: bias.map_or(0.0, |(_, act)| act.slope()),
            ..Params::new(total, (nb, cin, cout), (d, h, wd), (ox, oy))
        };
        let bufs = [
            (1, bx),
            (2, gpu.whole(packed, "conv3x3x3 packed weight")?),
            // Without a bias the kernel reads none; bind the weights as a stand-in.
            (
                3,
                gpu.whole(bias.map_or(packed, |b| b.0), "conv3x3x3 bias")?,
            ),
            (4, by),
        ];
        gpu.dispatch(ROWS, super::words(&prm), &bufs, total)?;
    }
    Ok(())
}

/// y = conv3x3x3(x, w) + b by `conv3x3x3_naive`, one invocation per output value (the
/// kernels bench's baseline for the tiled kernel).
pub fn forward_naive(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, cin, d, h, wd, cout) = dims(x, w)?;
    check_shape(b, &[cout], "conv3x3x3 bias")?;
    let v = d * h * wd;
    let y = Tensor::uninit(gpu, &[n, cout, d, h, wd])?;
    for (n0, nb) in gpu.chunks(n, &[cin * v, cout * v])? {
        let (bx, ox) = gpu.bind(x, n0 * cin * v, nb * cin * v);
        let (by, oy) = gpu.bind(&y, n0 * cout * v, nb * cout * v);
        let total = nb * cout * v;
        let prm = Params::new(total, (nb, cin, cout), (d, h, wd), (ox, oy));
        let bufs = [
            (1, bx),
            (2, gpu.whole(w, "conv3x3x3 weight")?),
            (3, gpu.whole(b, "conv3x3x3 bias")?),
            (4, by),
        ];
        gpu.dispatch(NAIVE, super::words(&prm), &bufs, total)?;
    }
    Ok(y)
}

/// y = conv3x3x3(x, w) + b
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    forward_act(gpu, x, w, b, Activation::None)
}

/// y = act(conv3x3x3(x, w) + b), the activation applied in the kernel's epilogue.
pub fn forward_act(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let (n, _, d, h, wd, cout) = dims(x, w)?;
    check_shape(b, &[cout], "conv3x3x3 bias")?;
    let packed = pack(gpu, w, false)?;
    let y = Tensor::uninit(gpu, &[n, cout, d, h, wd])?;
    rows(gpu, x, &packed, Some((b, act)), &y, cout)?;
    Ok(y)
}

/// dx += conv3x3x3 transposed (dy, w): the convolution of dy with the flipped, transposed
/// weights.
pub fn backward_input(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, cin, d, h, wd, cout) = dims(dx, w)?;
    check_shape(dy, &[n, cout, d, h, wd], "conv3x3x3 output gradient")?;
    let packed = pack(gpu, w, true)?;
    rows(gpu, dy, &packed, None, dx, cin)
}

/// dw += sum over samples and voxels of dy x (shifted).
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Result<()> {
    backward_weight_bias(gpu, dy, x, dw, None)
}

/// dw += sum of dy x (shifted), and with `db`, db += sum of dy (summed by the weight
/// gradient's kernel from the dy values it loads anyway): shares of the rows, then their
/// sum in a fixed order.
pub fn backward_weight_bias(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<()> {
    let (n, cin, d, h, wd, cout) = dims(x, dw)?;
    check_shape(dy, &[n, cout, d, h, wd], "conv3x3x3 output gradient")?;
    if let Some(db) = db {
        check_shape(db, &[cout], "conv3x3x3 bias gradient")?;
    }
    let bias_grad = db.is_some() as u32;
    let v = d * h * wd;
    let cq = cout.div_ceil(4);
    for (n0, nb) in gpu.chunks(n, &[cin * v, cout * v])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * v, nb * cout * v);
        let (bx, ox) = gpu.bind(x, n0 * cin * v, nb * cin * v);
        // Invocations per share: one per (input channel, depth tap, pair of vec4 groups),
        // or on CPU adapters' tiles one per (input channel, pair) for all three depth taps
        // (`conv3x3x3_backward_weight_trio`: each dy load serves three slices; the same
        // sums in the same order).
        let trio = matches!(
            gpu.conv_tiling(),
            ConvTiling::Rows | ConvTiling::RowsSubgroup
        );
        let (kernel, per_share) = if trio {
            (BACKWARD_WEIGHT_TRIO, cin * cq.div_ceil(2))
        } else {
            (BACKWARD_WEIGHT, cin * 3 * cq.div_ceil(2))
        };
        // Shares as in conv3x3: about 4,096 invocations on a CPU adapter, 16,384 on a
        // GPU, no more shares than sqrt(rows x width) (the sum adds them serially), and
        // each share (a copy of dw) within one binding.
        let rows_n = nb * d * h;
        let share_bytes = ((cin * 27 + 1) * cq * 16) as u64;
        let fit = (gpu.binding_limit() / share_bytes).max(1) as usize;
        let target = if gpu.is_cpu() { 4096usize } else { 16384 };
        let balanced = ((rows_n * wd) as f64).sqrt() as usize;
        let want = target
            .div_ceil(per_share)
            .min(balanced)
            .clamp(1, rows_n)
            .min(fit);
        let per = rows_n.div_ceil(want);
        let splits = rows_n.div_ceil(per);
        let partial = Tensor::uninit(gpu, &[splits * (cin * 27 + 1) * cq * 4])?;
        let total = splits * per_share;
        let prm = Params {
            shares: u(splits),
            rows_per_share: u(per),
            bias_grad,
            ..Params::new(total, (nb, cin, cout), (d, h, wd), (ody, ox))
        };
        let bufs = [
            (1, bdy),
            (2, bx),
            (4, gpu.whole(&partial, "conv3x3x3 weight-gradient shares")?),
        ];
        gpu.dispatch(kernel, super::words(&prm), &bufs, total)?;
        let total = cin * 27 * cq + db.map_or(0, |_| cq);
        let prm = Params {
            shares: u(splits),
            bias_grad,
            ..Params::new(total, (nb, cin, cout), (d, h, wd), (0, 0))
        };
        // Without a bias gradient the kernel writes none, but the binding must exist.
        let stand_in;
        let db = match db {
            Some(db) => db,
            None => {
                stand_in = Tensor::uninit(gpu, &[1])?;
                &stand_in
            }
        };
        let bufs = [
            (1, gpu.whole(&partial, "conv3x3x3 weight-gradient shares")?),
            (3, gpu.whole(db, "conv3x3x3 bias gradient")?),
            (4, gpu.whole(dw, "conv3x3x3 weight gradient")?),
        ];
        gpu.dispatch(BACKWARD_WEIGHT_SUM, super::words(&prm), &bufs, total)?;
    }
    Ok(())
}

/// db += sum over samples and voxels of dy: conv3x3's bias gradient on the volume seen as
/// (N, Cout, D x H, W).
pub fn backward_bias(gpu: &Gpu, dy: &Tensor, db: &Tensor) -> Result<()> {
    let (n, cout, d, h, wd) = dy.ncdhw("conv3x3x3 output gradient")?;
    super::conv3x3::backward_bias(gpu, &dy.reshape(&[n, cout, d * h, wd])?, db)
}

/// Tape rule: y = act(conv3x3x3(x, w) + b), one node, as [`super::conv3x3::conv3x3_act`]:
/// the flipped weights packed with the forward's when x needs a gradient; the backward
/// turns dy into the pre-activation's gradient (from y), then runs the convolution's
/// backwards on it.
pub fn conv3x3x3_act(tape: &Tape, x: &Var, w: &Var, b: &Var, act: Activation) -> Result<Var> {
    let gpu = tape.gpu();
    let (n, _, d, h, wd, cout) = dims(&x.value, &w.value)?;
    check_shape(&b.value, &[cout], "conv3x3x3 bias")?;
    let xg = x.requires_grad();
    let (packed, flipped) = if xg && tape.is_recording() {
        let (p, f) = pack_both(gpu, &w.value)?;
        (p, Some(f))
    } else {
        (pack(gpu, &w.value, false)?, None)
    };
    let y = Tensor::uninit(gpu, &[n, cout, d, h, wd])?;
    rows(gpu, &x.value, &packed, Some((&b.value, act)), &y, cout)?;
    let launchers = FusedBackward {
        input_packed: |gpu, dz, flipped, dx| rows(gpu, dz, flipped, None, dx, dx.shape()[1]),
        input: backward_input,
        weight_bias: backward_weight_bias,
        bias: backward_bias,
    };
    Ok(record_fused(tape, (x, w, b), y, act, flipped, launchers))
}

/// Tape rule: y = conv3x3x3(x, w) + b.
pub fn conv3x3x3(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3x3_act(tape, x, w, b, Activation::None)
}

/// Tape rule: y = elu(conv3x3x3(x, w) + b), fused (the 3-D U-Net's convolution).
pub fn conv3x3x3_elu(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3x3_act(tape, x, w, b, Activation::Elu)
}

/// Tape rule: y = relu(conv3x3x3(x, w) + b), fused (the 3-D classifier's convolution).
pub fn conv3x3x3_relu(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3x3_act(tape, x, w, b, Activation::Relu)
}
