//! conv3x3: 3x3 convolution, stride 1, zero padding 1, with bias (shaders/conv3x3.wgsl).
//!
//!   x (N, Cin, H, W), w (Cout, Cin, 3, 3), b (Cout) -> y (N, Cout, H, W)
//!
//! Batches too large for one storage binding are split by sample; the weight gradient of
//! each chunk adds into dw, so a split batch gives the sum over all samples.
//!
//! **Which kernel runs.** A tile has one name, its kernel's: `tiled` (8 output channels x
//! 4 pixels, `conv3x3_tiled`), `rows` (4 x 8 x 2 rows, `conv3x3_rows`), `rows_subgroup`;
//! `gpu` chooses between the first two per launch (BENCHMARKS.md's log calls them 8x4,
//! 4x8 and 4x8sg). The adapter's [`ConvTiling`] (set when the device opens; tests
//! and benches may set another) and the launch's shape choose, in [`tiled`] and
//! [`backward_weight_bias`]; this table is the one place that says so:
//!
//! | kernel (shaders/) | tile per invocation | chosen when | the measurement that chose it (BENCHMARKS.md) |
//! |---|---|---|---|
//! | `conv3x3_rows` | 4 out-channels x 8 pixels x 2 rows | CPU adapters without subgroups (`rows`); GPUs (`gpu`) for launches of >= 65,536 invocations | lavapipe: fewest loads per multiply-add ("conv3x3 tile for CPU adapters"); H200: the fastest forward on large images, 40-60% of the FMA ceiling ("On a GPU: NVIDIA H200") |
//! | `conv3x3_rows_subgroup` | the same, rows loaded as vec4s, halos and weights shared by the subgroup | CPU adapters with subgroups, such as lavapipe (`rows_subgroup`), rows of whole 8-pixel tiles | lavapipe: 1.2-1.6x `conv3x3_rows` ("Subgroup kernels") |
//! | `conv3x3_tiled` | 8 out-channels x 4 pixels | GPUs (`gpu`) below 65,536 invocations of the rows tile; `tiled` when forced | H200: twice the rows tile's invocations, which small images need (31.8 ms step at 256 against 34.3 for `tiled` alone) |
//! | `conv3x3_image4` | a whole image of at most 4 x 4 | CPU tiles at the 4x4 and 2x2 levels | lavapipe: the deepest levels in one invocation per 4 channels ("What a load costs") |
//! | `conv3x3_backward_weight_quad` (`_subgroup` with subgroups) | 8 out x 4 in channels x 9 taps, a share of rows | CPU tiles, from 4 input channels | lavapipe: 68-74% of the ceiling ("The weight gradient over four input channels") |
//! | `conv3x3_backward_weight` | 8 out x 1 in channel x 9 taps, a share of rows | GPUs; CPU tiles below 4 input channels | H200: 21-26% of the ceiling; the four-channel kernel spills there |
//!
//! Removed (their numbers stay in the log, under their old names): `8x4wg`, the `tiled`
//! tile staged in workgroup memory (slower than `gpu` and than `tiled` on the H200: 39.9 against 31.8 and 34.3 ms a step
//! at 256), and `gpuwg`, a weight gradient spread over a workgroup, never measured on a
//! GPU. Every remaining kernel keeps each output's sum in one invocation, in a fixed order.
//!
//! [`conv3x3_act`] fuses the activation that follows every convolution of the networks
//! (ELU in the U-Net, ReLU in the classifier) into the forward's epilogue: y = act(conv +
//! b) is written once and no pre-activation is kept. Its backward turns dy into the
//! pre-activation's gradient with the derivative taken from y, then runs the three
//! convolution backwards on that.

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

/// Under [`ConvTiling::Gpu`], a conv3x3 launch takes the rows tile (4 channels x 8
/// pixels x 2 rows) when that makes at least this many invocations: 65,536 is about half
/// the threads an H200 holds at once (132 multiprocessors x 2,048 / 4); at 128x128 with 32
/// channels (81,920) the rows tile was faster there, at 64x64 with 64 (40,960) not
/// measured, at 32x32 with 128 (20,480) slower.
pub const GPU_ROWS_MIN_INVOCATIONS: usize = 65_536;

/// The shape of the register tile of the 3x3 convolution (forward and gradient to the
/// input), chosen from the adapter's type when the [`Gpu`] opens ([`ConvTiling::default_for`]): the same sums in the
/// same order either way, so both give the same bits (tests check both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvTiling {
    /// 8 output channels x 4 pixels per invocation (`conv3x3_tiled`).
    Tiled,
    /// GPUs: per launch, the rows tile of `Rows` where it makes at least
    /// [`GPU_ROWS_MIN_INVOCATIONS`] invocations (the large images: on an H200 1.3 to 1.6x
    /// faster than `Tiled` at 16 channels of 256x256 and 32 of 128x128), else
    /// `Tiled` (whose 2x more invocations keep a GPU busy on small images, where
    /// the rows tile is 1.3 to 1.4x slower). The weight gradient is the one-input-channel
    /// kernel, as for `Tiled`.
    Gpu,
    /// 4 output channels x 8 pixels per invocation, on each of two rows (`conv3x3_rows`):
    /// CPU adapters, where every value loaded costs a loop over the SIMD lanes and this
    /// tile loads fewer.
    Rows,
    /// The tile of `Rows` loading its rows as vec4s, with the halo columns
    /// from the neighbouring lanes and the weights loaded once per subgroup
    /// (`conv3x3_rows_subgroup`), and a weight gradient sharing its dy loads across the
    /// subgroup: CPU adapters with 8-lane subgroups (lavapipe). Needs a device with
    /// subgroups ([`Gpu::has_subgroups`]).
    RowsSubgroup,
}

impl std::str::FromStr for ConvTiling {
    type Err = crate::Error;

    /// "tiled", "rows", "rows_subgroup" (the kernels' names) or "gpu" (tiled or rows by
    /// launch size), as the benches' SEGFEAT_BENCH_TILING takes it.
    fn from_str(s: &str) -> Result<ConvTiling> {
        match s {
            "tiled" => Ok(ConvTiling::Tiled),
            "gpu" => Ok(ConvTiling::Gpu),
            "rows" => Ok(ConvTiling::Rows),
            "rows_subgroup" => Ok(ConvTiling::RowsSubgroup),
            _ => bail!(
                "a conv3x3 tile is tiled, rows, rows_subgroup or gpu (tiled or rows by launch size), not {s:?}"
            ),
        }
    }
}

impl std::fmt::Display for ConvTiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvTiling::Tiled => "tiled",
            ConvTiling::Gpu => "gpu",
            ConvTiling::Rows => "rows",
            ConvTiling::RowsSubgroup => "rows_subgroup",
        })
    }
}

impl ConvTiling {
    /// The tile a device opens with (the table above): the subgroup tile on CPU adapters
    /// with 8-lane subgroups (lavapipe), the rows tile on other CPU adapters, and the
    /// per-launch choice on GPUs.
    pub fn default_for(adapter: &crate::gpu::AdapterReport, subgroups: bool) -> ConvTiling {
        if subgroups && adapter.subgroup_sizes == (8, 8) {
            ConvTiling::RowsSubgroup
        } else if adapter.device_type == "Cpu" {
            ConvTiling::Rows
        } else {
            ConvTiling::Gpu
        }
    }
}

/// The activation fused into the convolution's epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// y = conv + b
    None,
    /// y = elu(conv + b), alpha = 1
    Elu,
    /// y = max(conv + b, 0)
    Relu,
    /// y = conv + b where positive, else a (conv + b); the slope a >= 0 goes in the
    /// uniform's `slope`
    Leaky(f32),
}

impl Activation {
    /// Bits 1-2 of the kernels' flags (see shaders/conv3x3.wgsl).
    pub(crate) fn flag_bits(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Elu => 1 << 1,
            Activation::Relu => 2 << 1,
            Activation::Leaky(_) => 3 << 1,
        }
    }

    /// The uniform's `slope` (used by `Leaky` only).
    pub(crate) fn slope(self) -> f32 {
        match self {
            Activation::Leaky(a) => a,
            _ => 0.0,
        }
    }
}

const PACK: Kernel = k("conv3x3", "conv3x3_pack");
const PACK_BOTH: Kernel = k("conv3x3", "conv3x3_pack_both");
const TILED: Kernel = k("conv3x3", "conv3x3_tiled");
const NAIVE: Kernel = k("conv3x3", "conv3x3_naive");
const ROWS: Kernel = k("conv3x3", "conv3x3_rows");
const IMAGE4: Kernel = k("conv3x3", "conv3x3_image4");
const ROWS_SUBGROUP: Kernel = k("conv3x3_subgroup", "conv3x3_rows_subgroup");
const BACKWARD_WEIGHT: Kernel = k("conv3x3", "conv3x3_backward_weight");
const BACKWARD_WEIGHT_QUAD: Kernel = k("conv3x3", "conv3x3_backward_weight_quad");
const BACKWARD_WEIGHT_QUAD_SUBGROUP: Kernel =
    k("conv3x3_subgroup", "conv3x3_backward_weight_quad_subgroup");
const SHARE_TARGET_GPU: usize = 16384;
const BACKWARD_WEIGHT_SUM: Kernel = k("conv3x3", "conv3x3_backward_weight_sum");
const BACKWARD_BIAS: Kernel = k("conv3x3", "conv3x3_backward_bias");

/// (N, Cin, H, W, Cout) after checking that x, w and b fit together.
fn dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, cin, h, wd) = x.nchw("conv3x3 input")?;
    let cout = w.shape().first().copied().unwrap_or(0);
    check_shape(w, &[cout, cin, 3, 3], "conv3x3 weight")?;
    Ok((n, cin, h, wd, cout))
}

/// The uniform of every conv3x3 entry point, field for field the WGSL `Params` of
/// shaders/conv3x3.wgsl; each field has one meaning, and an entry point reads the ones it
/// needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Invocations that do work.
    total: u32,
    /// Samples in this chunk.
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    /// Element offsets of the first and the last storage binding.
    off_a: u32,
    off_b: u32,
    /// vec4 groups of output channels (packed weights, weight-gradient shares).
    cq: u32,
    /// conv3x3_pack_both: the flipped packing's vec4 groups.
    cq_flip: u32,
    /// Tiled and rows kernels: pixel groups per row.
    row_groups: u32,
    /// Weight gradient: image rows per share.
    rows_per_share: u32,
    /// Weight gradient and its sum: the number of shares.
    shares: u32,
    /// Tiled and rows kernels: bit 0 add the bias and overwrite (else add into the
    /// output); with it, bits 1-2 the fused activation ([`Activation::flag_bits`]).
    epilogue: u32,
    /// conv3x3_pack: 1 to pack the transposed, flipped weights.
    flip: u32,
    /// Weight gradient and its sum: 1 to sum the bias gradient as well.
    bias_grad: u32,
    /// The leaky ReLU's slope (activation 3).
    slope: f32,
}

impl Params {
    /// The sizes and offsets every entry point reads; the rest zero.
    #[allow(clippy::too_many_arguments)]
    fn new(
        total: usize,
        n: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        (off_a, off_b): (u32, u32),
    ) -> Params {
        Params {
            total: u(total),
            n: u(n),
            cin: u(cin),
            cout: u(cout),
            h: u(h),
            w: u(w),
            off_a,
            off_b,
            cq: u(cout.div_ceil(4)),
            ..Params::default()
        }
    }
}

/// The weights (Cout, Cin, 3, 3) laid out for conv3x3_tiled: (Cin, 9, Cq) vec4s with
/// Cq = 2 ceil(Cout / 8) groups of 4 output channels (the kernel takes them in pairs), or
/// with `flip` those of the transposed, flipped convolution (input Cout, output Cin).
fn pack(gpu: &Gpu, w: &Tensor, flip: bool) -> Result<Tensor> {
    let (cout, cin) = (w.shape()[0], w.shape()[1]);
    let (ci_t, co_t) = if flip { (cout, cin) } else { (cin, cout) };
    // Groups of 4 output channels, taken in pairs by the tiled kernel.
    let cq = 2 * co_t.div_ceil(8);
    let packed = Tensor::uninit(gpu, &[ci_t, 9, cq * 4])?;
    // One invocation per (input channel, tap) row of the packing.
    let rows = ci_t * 9;
    let prm = Params {
        flip: flip as u32,
        cq: u(cq),
        ..Params::new(rows, 0, cin, cout, 0, 0, (0, 0))
    };
    let bufs = [
        (2, gpu.whole(w, "conv3x3 weight")?),
        (4, gpu.whole(&packed, "conv3x3 packed weight")?),
    ];
    gpu.dispatch(PACK, super::words(&prm), &bufs, rows)?;
    Ok(packed)
}

/// Both packings of `w` in one dispatch: (forward, flipped), as two calls of [`pack`]
/// would give them.
fn pack_both(gpu: &Gpu, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let (cout, cin) = (w.shape()[0], w.shape()[1]);
    let (cq, cq_flip) = (2 * cout.div_ceil(8), 2 * cin.div_ceil(8));
    let packed = Tensor::uninit(gpu, &[cin, 9, cq * 4])?;
    let flipped = Tensor::uninit(gpu, &[cout, 9, cq_flip * 4])?;
    let rows = cin.max(cout) * 9;
    let prm = Params {
        cq: u(cq),
        cq_flip: u(cq_flip),
        ..Params::new(rows, 0, cin, cout, 0, 0, (0, 0))
    };
    let bufs = [
        (1, gpu.whole(&flipped, "conv3x3 flipped packed weight")?),
        (2, gpu.whole(w, "conv3x3 weight")?),
        (4, gpu.whole(&packed, "conv3x3 packed weight")?),
    ];
    gpu.dispatch(PACK_BOTH, super::words(&prm), &bufs, rows)?;
    Ok((packed, flipped))
}

/// The tiled convolution of x (N, cin, H, W) with packed weights into y (N, cout, H, W):
/// with `bias`, y = act(conv + b); without, y += conv. The tile is the adapter's
/// [`ConvTiling`].
#[allow(clippy::too_many_arguments)]
fn tiled(
    gpu: &Gpu,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<(&Tensor, Activation)>,
    y: &Tensor,
    cin: usize,
    cout: usize,
) -> Result<()> {
    let (n, _, h, wd) = x.nchw("conv3x3 input")?;
    let hw = h * wd;
    // (kernel, output channels per invocation, pixels per invocation)
    let (tile, chans, pixels) = match gpu.conv_tiling() {
        ConvTiling::Tiled => (TILED, 8, 4),
        ConvTiling::Rows => (ROWS, 4, 8),
        ConvTiling::Gpu
            if n * cout.div_ceil(4) * h.div_ceil(2) * wd.div_ceil(8)
                >= crate::gpu::GPU_ROWS_MIN_INVOCATIONS =>
        {
            (ROWS, 4, 8)
        }
        ConvTiling::Gpu => (TILED, 8, 4),
        ConvTiling::RowsSubgroup => (ROWS_SUBGROUP, 4, 8),
    };
    // The CPU adapters' tiles hand images of at most 4 x 4 to conv3x3_image4.
    let cpu_tile = matches!(
        gpu.conv_tiling(),
        ConvTiling::Rows | ConvTiling::RowsSubgroup
    );
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bx, ox) = gpu.bind(x, n0 * cin * hw, nb * cin * hw);
        let kernel = if cpu_tile && h <= 4 && wd <= 4 {
            // Images of at most 4 x 4 (the deepest levels): a whole image per invocation.
            IMAGE4
        } else if tile == ROWS_SUBGROUP && (wd % 8 != 0 || ox % 4 != 0) {
            // The subgroup kernel loads rows as vec4s: whole 8-pixel tiles from a vec4
            // boundary.
            ROWS
        } else {
            tile
        };
        let (by, oy) = gpu.bind(y, n0 * cout * hw, nb * cout * hw);
        // The rows tile covers two output rows per invocation.
        let total = match kernel {
            TILED => nb * cout.div_ceil(chans) * h * wd.div_ceil(pixels),
            IMAGE4 => nb * cout.div_ceil(4),
            _ => nb * cout.div_ceil(chans) * h.div_ceil(2) * wd.div_ceil(pixels),
        };
        let prm = Params {
            epilogue: bias.map_or(0, |(_, act)| 1 | act.flag_bits()),
            cq: u(2 * cout.div_ceil(8)),
            row_groups: u(wd.div_ceil(pixels)),
            slope: bias.map_or(0.0, |(_, act)| act.slope()),
            ..Params::new(total, nb, cin, cout, h, wd, (ox, oy))
        };
        let bufs = [
            (1, bx),
            (2, gpu.whole(packed, "conv3x3 packed weight")?),
            // Without a bias the kernel reads none; bind the weights as a stand-in.
            (3, gpu.whole(bias.map_or(packed, |b| b.0), "conv3x3 bias")?),
            (4, by),
        ];
        gpu.dispatch(kernel, super::words(&prm), &bufs, total)?;
    }
    Ok(())
}

/// y = conv3x3(x, w) + b by `conv3x3_naive`, one invocation per output value: the
/// kernel a learner starts from, and the kernels bench's baseline for the tiled ones.
pub fn forward_naive(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, cin, h, wd, cout) = dims(x, w)?;
    check_shape(b, &[cout], "conv3x3 bias")?;
    let hw = h * wd;
    let y = Tensor::uninit(gpu, &[n, cout, h, wd])?;
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bx, ox) = gpu.bind(x, n0 * cin * hw, nb * cin * hw);
        let (by, oy) = gpu.bind(&y, n0 * cout * hw, nb * cout * hw);
        let total = nb * cout * hw;
        let prm = Params::new(total, nb, cin, cout, h, wd, (ox, oy));
        let bufs = [
            (1, bx),
            (2, gpu.whole(w, "conv3x3 weight")?),
            (3, gpu.whole(b, "conv3x3 bias")?),
            (4, by),
        ];
        gpu.dispatch(NAIVE, super::words(&prm), &bufs, total)?;
    }
    Ok(y)
}

/// y = conv3x3(x, w) + b
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    forward_act(gpu, x, w, b, Activation::None)
}

/// y = act(conv3x3(x, w) + b), the activation applied in the kernel's epilogue.
pub fn forward_act(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let (_, _, _, _, cout) = dims(x, w)?;
    check_shape(b, &[cout], "conv3x3 bias")?;
    let packed = pack(gpu, w, false)?;
    forward_packed(gpu, x, &packed, b, act, cout)
}

/// The forward on weights already packed (shapes checked by the caller).
fn forward_packed(
    gpu: &Gpu,
    x: &Tensor,
    packed: &Tensor,
    b: &Tensor,
    act: Activation,
    cout: usize,
) -> Result<Tensor> {
    let (n, cin, h, wd) = x.nchw("conv3x3 input")?;
    let y = Tensor::uninit(gpu, &[n, cout, h, wd])?;
    tiled(gpu, x, packed, Some((b, act)), &y, cin, cout)?;
    Ok(y)
}

/// dz += dy * act'(z), the derivative taken from the output y = act(z).
pub fn activation_backward(
    gpu: &Gpu,
    act: Activation,
    y: &Tensor,
    dy: &Tensor,
    dz: &Tensor,
) -> Result<()> {
    match act {
        Activation::None => super::elementwise::add_into(gpu, dz, dy),
        Activation::Elu => super::elu::backward_from_output(gpu, y, dy, dz),
        // relu'(z) = (z > 0) = (y > 0): the ReLU backward works on y as it is.
        Activation::Relu => super::relu::backward(gpu, y, dy, dz),
        // The same for a slope a >= 0: y > 0 exactly when z > 0.
        Activation::Leaky(a) => super::leaky_relu::backward(gpu, y, dy, dz, a),
    }
}

/// dx += conv3x3 transposed (dy, w): the convolution of dy with the flipped, transposed
/// weights.
pub fn backward_input(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Result<()> {
    let (n, cin, h, wd, cout) = dims(dx, w)?;
    check_shape(dy, &[n, cout, h, wd], "conv3x3 output gradient")?;
    let packed = pack(gpu, w, true)?;
    tiled(gpu, dy, &packed, None, dx, cout, cin)
}

/// dw += sum over samples and pixels of dy x (shifted): tiled partial sums over shares of
/// the rows, then their sum in a fixed order.
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Result<()> {
    backward_weight_bias(gpu, dy, x, dw, None)
}

/// dw += sum of dy x (shifted), and with `db`, db += sum of dy: the bias gradient is
/// summed by the weight gradient's kernel from the dy values it loads anyway, and its
/// shares are added by the same second dispatch (two dispatches for both gradients).
pub fn backward_weight_bias(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<()> {
    let (n, cin, h, wd, cout) = dims(x, dw)?;
    check_shape(dy, &[n, cout, h, wd], "conv3x3 output gradient")?;
    if let Some(db) = db {
        check_shape(db, &[cout], "conv3x3 bias gradient")?;
    }
    let bias_grad = db.is_some() as u32;
    let hw = h * wd;
    let cq = cout.div_ceil(4);
    for (n0, nb) in gpu.chunks(n, &[cin * hw, cout * hw])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * hw, nb * cout * hw);
        let (bx, ox) = gpu.bind(x, n0 * cin * hw, nb * cin * hw);
        // Each invocation owns two vec4 groups (8 output channels) of one input channel
        // (GPUs) or of four (CPU adapters, where the loads it saves outweigh the spills;
        // not below four input channels, as in the first layer, where most of its sums
        // would idle: 2x slower measured for one).
        let groups = cq.div_ceil(2);
        let (kernel, per_inv) = match gpu.conv_tiling() {
            ConvTiling::Rows if cin >= 4 => (BACKWARD_WEIGHT_QUAD, 4),
            ConvTiling::RowsSubgroup if cin >= 4 => (BACKWARD_WEIGHT_QUAD_SUBGROUP, 4),
            _ => (BACKWARD_WEIGHT, 1),
        };
        let tiles = cin.div_ceil(per_inv);
        // Enough shares of the rows that there are about 16,384 invocations for a GPU,
        // 2048 to 4096 on a CPU (32 to 64
        // workgroups: every core busy, and shares that fit in half the memory: each share
        // is a copy of dw). But no more shares than
        // pixels in a share (at most sqrt(rows x width) shares): the sum kernel adds the
        // shares serially, one invocation per weight, and small layers (the
        // classifier's) have few weights to spread that over.
        let rows = nb * h;
        let share_bytes = ((cin * 9 + 1) * cq * 16) as u64;
        let fit = (gpu.binding_limit() / share_bytes).max(1) as usize;
        let target = if !gpu.is_cpu() {
            SHARE_TARGET_GPU
        } else if per_inv == 1 {
            4096usize
        } else {
            2048
        };
        let balanced = ((rows * wd) as f64).sqrt() as usize;
        let want = target
            .div_ceil(groups * tiles)
            .min(balanced)
            .clamp(1, rows)
            .min(fit);
        let per = rows.div_ceil(want);
        let splits = rows.div_ceil(per);
        // (splits, Cin, 9, Cq) vec4 weight shares, then (splits, Cq) vec4 bias shares.
        let partial = Tensor::uninit(gpu, &[splits * (cin * 9 + 1) * cq * 4])?;
        let total = splits * tiles * groups;
        let prm = Params {
            shares: u(splits),
            rows_per_share: u(per),
            bias_grad,
            ..Params::new(total, nb, cin, cout, h, wd, (ody, ox))
        };
        let bufs = [
            (1, bdy),
            (2, bx),
            (4, gpu.whole(&partial, "conv3x3 weight-gradient shares")?),
        ];
        gpu.dispatch(kernel, super::words(&prm), &bufs, total)?;
        // One invocation per vec4 of a share: (ci, tap, group) for the weights, then one
        // per group for the biases.
        let total = cin * 9 * cq + db.map_or(0, |_| cq);
        let prm = Params {
            shares: u(splits),
            bias_grad,
            ..Params::new(total, nb, cin, cout, h, wd, (0, 0))
        };
        // Without a bias gradient the kernel writes none, but the binding must exist (and
        // may not alias a buffer bound for reading): a one-element stand-in.
        let stand_in;
        let db = match db {
            Some(db) => db,
            None => {
                stand_in = Tensor::uninit(gpu, &[1])?;
                &stand_in
            }
        };
        let bufs = [
            (1, gpu.whole(&partial, "conv3x3 weight-gradient shares")?),
            (3, gpu.whole(db, "conv3x3 bias gradient")?),
            (4, gpu.whole(dw, "conv3x3 weight gradient")?),
        ];
        gpu.dispatch(BACKWARD_WEIGHT_SUM, super::words(&prm), &bufs, total)?;
    }
    Ok(())
}

/// db += sum over samples and pixels of dy
pub fn backward_bias(gpu: &Gpu, dy: &Tensor, db: &Tensor) -> Result<()> {
    let (n, cout, h, wd) = dy.nchw("conv3x3 output gradient")?;
    check_shape(db, &[cout], "conv3x3 bias gradient")?;
    let hw = h * wd;
    for (n0, nb) in gpu.chunks(n, &[cout * hw])? {
        let (bdy, ody) = gpu.bind(dy, n0 * cout * hw, nb * cout * hw);
        let prm = Params::new(cout, nb, 0, cout, h, wd, (ody, 0));
        let bufs = [(1, bdy), (4, gpu.whole(db, "conv3x3 bias gradient")?)];
        gpu.dispatch(BACKWARD_BIAS, super::words(&prm), &bufs, cout)?;
    }
    Ok(())
}

/// Tape rule: y = conv3x3(x, w) + b: the fused rule below with no activation (one rule
/// per op: the one the networks run).
pub fn conv3x3(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3_act(tape, x, w, b, Activation::None)
}

/// Tape rule: y = act(conv3x3(x, w) + b), one node. The forward writes only y (and packs
/// the flipped weights for the backward in the same dispatch as its own, when x needs a
/// gradient); the backward computes the pre-activation's gradient dz = dy * act'(from y)
/// into a temporary and runs the convolution's backwards on it, the bias gradient
/// inside the weight gradient's kernel.
pub fn conv3x3_act(tape: &Tape, x: &Var, w: &Var, b: &Var, act: Activation) -> Result<Var> {
    let gpu = tape.gpu();
    let (_, _, _, _, cout) = dims(&x.value, &w.value)?;
    check_shape(&b.value, &[cout], "conv3x3 bias")?;
    let xg = x.requires_grad();
    // When the input needs a gradient (and the tape records), the flipped weights the
    // backward will convolve with are packed now, in the same dispatch.
    let (packed, flipped) = if xg && tape.is_recording() {
        let (p, f) = pack_both(gpu, &w.value)?;
        (p, Some(f))
    } else {
        (pack(gpu, &w.value, false)?, None)
    };
    let y = forward_packed(gpu, &x.value, &packed, &b.value, act, cout)?;
    let launchers = FusedBackward {
        input_packed: |gpu, dz, flipped, dx| {
            tiled(gpu, dz, flipped, None, dx, dz.shape()[1], dx.shape()[1])
        },
        input: backward_input,
        weight_bias: backward_weight_bias,
        bias: backward_bias,
    };
    Ok(record_fused(tape, (x, w, b), y, act, flipped, launchers))
}

/// The launchers the backward of a fused convolution + activation calls (conv3x3's or
/// conv3x3x3's): dx += dz convolved with weights packed flipped at the forward
/// (`input_packed`), or with the weights themselves (`input`), dw (and db) from
/// `weight_bias`, db alone from `bias`.
pub(crate) struct FusedBackward {
    pub input_packed: fn(&Gpu, &Tensor, &Tensor, &Tensor) -> Result<()>,
    pub input: fn(&Gpu, &Tensor, &Tensor, &Tensor) -> Result<()>,
    pub weight_bias: fn(&Gpu, &Tensor, &Tensor, &Tensor, Option<&Tensor>) -> Result<()>,
    pub bias: fn(&Gpu, &Tensor, &Tensor) -> Result<()>,
}

/// Record y = act(conv(x, w) + b) on the tape. The backward computes the
/// pre-activation's gradient dz = dy * act'(from y) into a temporary (dy itself without
/// an activation) and runs the convolution's backwards on it, each only for the inputs
/// that need a gradient; `flipped` holds the weights packed for the input gradient when
/// the forward packed them.
pub(crate) fn record_fused(
    tape: &Tape,
    (x, w, b): (&Var, &Var, &Var),
    y: Tensor,
    act: Activation,
    flipped: Option<Tensor>,
    k: FusedBackward,
) -> Var {
    let (xg, wg, bg) = (x.requires_grad(), w.requires_grad(), b.requires_grad());
    let (xv, wv, yv) = (x.value.clone(), w.value.clone(), y.clone());
    let (xid, wid, bid) = (x.id(), w.id(), b.id());
    let bshape = b.shape().to_vec();
    tape.record(y, &[x, w, b], move |gpu, dy, grads| {
        let dz = if act == Activation::None {
            dy.clone()
        } else {
            let dz = Tensor::zeros(gpu, yv.shape())?;
            activation_backward(gpu, act, &yv, dy, &dz)?;
            dz
        };
        if xg {
            let dx = grads.slot(xid, xv.shape())?;
            match &flipped {
                Some(f) => (k.input_packed)(gpu, &dz, f, &dx)?,
                None => (k.input)(gpu, &dz, &wv, &dx)?,
            }
        }
        match (wg, bg) {
            (true, true) => {
                let db = grads.slot(bid, &bshape)?;
                (k.weight_bias)(gpu, &dz, &xv, &grads.slot(wid, wv.shape())?, Some(&db))?
            }
            (true, false) => (k.weight_bias)(gpu, &dz, &xv, &grads.slot(wid, wv.shape())?, None)?,
            (false, true) => (k.bias)(gpu, &dz, &grads.slot(bid, &bshape)?)?,
            (false, false) => {}
        }
        Ok(())
    })
}

/// Tape rule: y = elu(conv3x3(x, w) + b), fused (the U-Net's convolution).
pub fn conv3x3_elu(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3_act(tape, x, w, b, Activation::Elu)
}

/// Tape rule: y = relu(conv3x3(x, w) + b), fused (the classifier's convolution).
pub fn conv3x3_relu(tape: &Tape, x: &Var, w: &Var, b: &Var) -> Result<Var> {
    conv3x3_act(tape, x, w, b, Activation::Relu)
}
