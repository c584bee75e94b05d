//! The classifier of Wong et al. (MICCAI 2017, section 2.2): VGG-16 modified for two
//! classes, fed with feature maps of the frozen segmentation network.
//!
//!   input (C, S, S)  C = channels of the feature combination
//!   block 1: conv 64,  conv 64,           relu after each, maxpool   -> (64,  S/2)
//!   block 2: conv 128, conv 128,          ...                        -> (128, S/4)
//!   block 3: conv 256 x 3                                            -> (256, S/8)
//!   block 4: conv 512 x 3                                            -> (512, S/16)
//!   block 5: conv 512 x 3                                            -> (512, S/32)
//!   fc1 4096, relu; fc2 4096, relu; fc3 2 (the class logits)
//!
//! The widths above are the `paper` preset (at 256x256); `width` scales the five block
//! widths and `fc` sets the hidden fully connected width, so that the same network fits a
//! software adapter (`quick`). VGG-16's dropout is left out by default: the paper does not
//! mention it, and the paper's network is the default.
//!
//! **Volumes.** With `depth` Some(D) the same network reads (C, D, S, S) volumes: 3x3x3
//! convolutions, and poolings that halve the depth too while it is even (D = 8: by 2 in
//! blocks 1 to 3, by 1 in blocks 4 and 5), so fc1 sees the last block's D / 8 x (S/32)^2
//! positions.
//!
//! [`Regularisation`] adds what Menkovski et al.'s network trained from scratch had
//! (batch normalisation, dropout, leaky ReLU), and global average pooling:
//!   conv -> [batch norm] -> ReLU or leaky ReLU          (fused into the conv without bn)
//!   [global average pooling in place of flattening]
//!   fc1 -> [batch norm] -> act -> [dropout]; fc2 the same; fc3

use crate::nn::init::{he_params, params_from_arrays};
use crate::ops;
use crate::ops::conv3x3::Activation;
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

/// VGG-16's block widths and convolutions per block.
pub const VGG16_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];
pub const VGG16_CONVS: [usize; 5] = [2, 2, 3, 3, 3];

/// The architecture: everything needed to rebuild the network from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct VggConfig {
    /// Channels of the input (the feature combination's).
    pub in_channels: usize,
    /// Input height and width (a multiple of 32: five 2x2 poolings).
    pub size: usize,
    /// Width of each of the five blocks.
    pub widths: [usize; 5],
    /// Width of the two hidden fully connected layers.
    pub fc: usize,
    /// Output classes (2: normal, diseased).
    pub classes: usize,
    /// Batch normalisation, dropout, leaky ReLU, global average pooling (all off: the
    /// paper's network).
    pub reg: Regularisation,
    /// None for 2-D inputs; Some(D) for volumes of D slices (3x3x3 convolutions).
    pub depth: Option<usize>,
}

/// The classifier's regularisation options (`--bn`, `--dropout P`, `--leaky A`, `--gap`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regularisation {
    /// Batch normalisation after every convolution and after fc1 and fc2, before the
    /// activation.
    pub bn: bool,
    /// Dropout probability after fc1's and fc2's activations (VGG-16's places); 0 is none.
    pub dropout: f32,
    /// The leaky ReLU's slope for every activation; 0 is ReLU.
    pub leaky: f32,
    /// Global average pooling of the last block in place of flattening it.
    pub gap: bool,
}

impl Regularisation {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        if !(self.leaky >= 0.0 && self.leaky < 1.0) {
            bail!("--leaky must be in [0, 1), got {}", self.leaky);
        }
        Ok(())
    }

    /// `bn=1,dropout=0.5,leaky=0.01,gap=0` (as in a checkpoint's metadata).
    pub fn describe(&self) -> String {
        format!(
            "bn={},dropout={},leaky={},gap={}",
            self.bn as u8, self.dropout, self.leaky, self.gap as u8
        )
    }

    /// Parse [`Regularisation::describe`]'s text.
    pub fn parse(s: &str) -> Result<Regularisation> {
        let mut r = Regularisation::default();
        for item in s.split(',').filter(|i| !i.trim().is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let v = v.trim();
            let num = |v: &str| {
                v.parse::<f32>()
                    .map_err(|_| crate::Error(format!("regularisation {k}: '{v}' is not a number")))
            };
            match k.trim() {
                "bn" => r.bn = num(v)? != 0.0,
                "dropout" => r.dropout = num(v)?,
                "leaky" => r.leaky = num(v)?,
                "gap" => r.gap = num(v)? != 0.0,
                other => bail!("unknown regularisation '{other}' (bn, dropout, leaky, gap)"),
            }
        }
        r.validate()?;
        Ok(r)
    }

    fn activation(&self) -> Activation {
        if self.leaky > 0.0 {
            Activation::Leaky(self.leaky)
        } else {
            Activation::Relu
        }
    }
}

/// How a forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Training: the parameters require gradients, batch normalisation uses the batch's
    /// statistics (and moves the running ones), dropout drops with the mask of
    /// (seed, step).
    Train { seed: u64, step: u64 },
    /// Inference: running statistics, no dropout.
    Eval,
}

/// A named classifier size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The paper's VGG-16: widths 64..512, fully connected 4096, 256x256.
    Paper,
    /// Widths / 16 (4..32), fully connected 32, 32x32: a reduced protocol fits 2 CPU
    /// cores with the software adapter in minutes (`segfeat demo`).
    Quick,
    /// Quick's widths at 64x64, the segmentation network's own size in `segfeat demo
    /// --preset mid`, so feature maps are used at native resolution: the whole protocol
    /// (600 runs of 200 steps, 8.5 s each on lavapipe) fits 2 CPU cores in an hour or two.
    Mid,
}

impl Preset {
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "paper" => Ok(Preset::Paper),
            "quick" => Ok(Preset::Quick),
            "mid" => Ok(Preset::Mid),
            _ => bail!("--preset must be 'quick', 'mid' or 'paper', got '{s}'"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Quick => "quick",
            Preset::Mid => "mid",
        }
    }
    /// (width multiplier, fully connected width, image size).
    pub fn shape(self) -> (f64, usize, usize) {
        match self {
            Preset::Paper => (1.0, 4096, 256),
            Preset::Quick => (0.0625, 32, 32),
            Preset::Mid => (0.0625, 32, 64),
        }
    }

    /// Adam's learning rate for the classifier. The paper gives none. `mid` uses Adam's own
    /// default 1e-3, as the segmentation network does; `quick` and `paper` keep 1e-4,
    /// chosen on 8 demo runs (see RESULTS.md for both measured at the `mid` scale).
    pub fn cls_lr(self) -> f32 {
        match self {
            Preset::Paper | Preset::Quick => crate::train::cls::DEFAULT_CLS_LR,
            Preset::Mid => 1e-3,
        }
    }
}

impl VggConfig {
    /// VGG-16 with its block widths multiplied by `width` (at least 1 channel each).
    pub fn new(in_channels: usize, size: usize, width: f64, fc: usize) -> Result<VggConfig> {
        if !(width > 0.0 && width.is_finite()) {
            bail!("the width multiplier must be a positive number, got {width}");
        }
        let widths = VGG16_WIDTHS.map(|w| ((w as f64 * width).round() as usize).max(1));
        let c = VggConfig {
            in_channels,
            size,
            widths,
            fc,
            classes: 2,
            reg: Regularisation::default(),
            depth: None,
        };
        c.validate()?;
        Ok(c)
    }

    /// The depth factor of each block's pooling: 2 while the depth is even, then 1 (all 1
    /// for 2-D inputs).
    pub fn depth_pool(&self) -> [usize; 5] {
        let mut d = self.depth.unwrap_or(1);
        let mut out = [1; 5];
        for f in &mut out {
            if d.is_multiple_of(2) {
                *f = 2;
                d /= 2;
            }
        }
        out
    }

    /// The last block's depth after its poolings (1 for 2-D inputs).
    fn final_depth(&self) -> usize {
        self.depth.unwrap_or(1) / self.depth_pool().iter().product::<usize>()
    }

    /// An input's shape for `batch` samples: (B, C, S, S) or (B, C, D, S, S).
    pub fn input_shape(&self, batch: usize) -> Vec<usize> {
        let mut s = vec![batch, self.in_channels];
        s.extend(self.depth);
        s.extend([self.size, self.size]);
        s
    }

    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || !self.size.is_multiple_of(32) {
            bail!(
                "the classifier's input size must be a positive multiple of 32 (five 2x2 poolings), got {}",
                self.size
            );
        }
        crate::limits::check_size("the classifier's input size", self.size)?;
        if self.in_channels > 4096 || self.fc > 65536 || self.widths.iter().any(|&w| w > 8192) {
            bail!(
                "the classifier's widths are out of bounds (at most 4096 input channels, 8192 per block, 65536 fully connected units)"
            );
        }
        if self.classes < 2 || self.classes > 256 {
            bail!(
                "a classifier needs between 2 and 256 classes, got {}",
                self.classes
            );
        }
        if self.in_channels == 0 || self.fc == 0 || self.widths.contains(&0) {
            bail!("the classifier needs at least one input channel, one channel per block and one fully connected unit");
        }
        if self.classes < 2 {
            bail!("a classifier needs at least 2 classes");
        }
        if let Some(d) = self.depth {
            if d == 0 {
                bail!("a volume classifier needs at least one slice");
            }
            crate::limits::check_size("the classifier's input depth", d)?;
        }
        self.reg.validate()
    }

    /// Inputs of fc1: the last block's channels times (S/32)^2 (times its depth, for
    /// volumes), or its channels alone after global average pooling.
    pub fn flat(&self) -> usize {
        if self.reg.gap {
            return self.widths[4];
        }
        let s = self.size / 32;
        self.widths[4] * s * s * self.final_depth()
    }

    /// (name, shape) of every parameter, in the order the checkpoint and Adam keep them.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut c = self.in_channels;
        for (b, (&w, &n)) in self.widths.iter().zip(&VGG16_CONVS).enumerate() {
            for i in 1..=n {
                let mut shape = vec![w, c, 3, 3];
                if self.depth.is_some() {
                    shape.push(3);
                }
                out.push((format!("block{}.conv{i}.weight", b + 1), shape));
                out.push((format!("block{}.conv{i}.bias", b + 1), vec![w]));
                if self.reg.bn {
                    out.push((format!("block{}.conv{i}.bn.gamma", b + 1), vec![w]));
                    out.push((format!("block{}.conv{i}.bn.beta", b + 1), vec![w]));
                }
                c = w;
            }
        }
        let fcs = [
            (self.flat(), self.fc),
            (self.fc, self.fc),
            (self.fc, self.classes),
        ];
        for (i, (fan_in, out_n)) in fcs.into_iter().enumerate() {
            out.push((format!("fc{}.weight", i + 1), vec![out_n, fan_in]));
            out.push((format!("fc{}.bias", i + 1), vec![out_n]));
            if self.reg.bn && i < 2 {
                out.push((format!("fc{}.bn.gamma", i + 1), vec![out_n]));
                out.push((format!("fc{}.bn.beta", i + 1), vec![out_n]));
            }
        }
        out
    }

    /// (name, shape) of every buffer: the running statistics (2, C) of each batch
    /// normalisation (row 0 the mean, row 1 the variance); none without `bn`.
    pub fn buffer_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.param_shapes()
            .into_iter()
            .filter_map(|(n, s)| {
                n.strip_suffix(".bn.gamma")
                    .map(|l| (format!("{l}.bn.running"), vec![2, s[0]]))
            })
            .collect()
    }

    /// Parameter count and forward FLOPs per image (2 per multiply-add, 1 per bias add
    /// and per ReLU output).
    pub fn cost(&self) -> (u64, u64) {
        let (mut params, mut flops) = (0u64, 0u64);
        let mut hw = self.size as u64;
        let mut d = self.depth.unwrap_or(1) as u64;
        let taps = if self.depth.is_some() { 27 } else { 9 };
        let mut c = self.in_channels as u64;
        for ((&w, &n), fd) in self.widths.iter().zip(&VGG16_CONVS).zip(self.depth_pool()) {
            for _ in 0..n {
                let w = w as u64;
                params += w * c * taps + w;
                flops += d * hw * hw * w * (2 * taps * c + 2);
                if self.reg.bn {
                    params += 2 * w;
                    flops += d * hw * hw * w * 2;
                }
                c = w;
            }
            hw /= 2;
            d /= fd as u64;
        }
        let fcs = [
            (self.flat(), self.fc),
            (self.fc, self.fc),
            (self.fc, self.classes),
        ];
        for (k, (i, o)) in fcs.into_iter().enumerate() {
            params += (i * o + o) as u64;
            flops += (o * (2 * i + 2)) as u64;
            if self.reg.bn && k < 2 {
                params += 2 * o as u64;
            }
        }
        (params, flops)
    }
}

/// The classifier: its architecture and its parameters on the GPU.
pub struct Vgg {
    pub config: VggConfig,
    /// (name, tensor) in the order of [`VggConfig::param_shapes`].
    pub params: Vec<(String, Tensor)>,
    /// (name, tensor) in the order of [`VggConfig::buffer_shapes`]: state that training
    /// changes but Adam does not (the running statistics).
    pub buffers: Vec<(String, Tensor)>,
}

impl Vgg {
    /// Fresh weights: He normal (fan-in = Cin x 3 x 3 for convolutions, the input width for
    /// the fully connected layers), zero biases, all drawn from `seed`.
    pub fn init(gpu: &Gpu, config: VggConfig, seed: u64) -> Result<Vgg> {
        config.validate()?;
        // Batch normalisation's gamma starts at 1 (he_params makes every 1-D tensor 0
        // and draws nothing for it, so the weights are those of the network without it).
        let mut params = he_params(gpu, config.param_shapes(), seed)?;
        for (name, t) in params.iter_mut() {
            if name.ends_with(".bn.gamma") {
                *t = Tensor::from_slice(gpu, t.shape(), &vec![1.0; t.numel()])?;
            }
        }
        let buffers = config
            .buffer_shapes()
            .into_iter()
            .map(|(n, s)| {
                Ok((
                    n,
                    Tensor::from_slice(gpu, &s, &ops::batchnorm::running_init(s[1]))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Vgg {
            config,
            params,
            buffers,
        })
    }

    /// Rebuild from named host arrays (a checkpoint): every parameter must be present with
    /// its exact shape.
    pub fn from_arrays(
        gpu: &Gpu,
        config: VggConfig,
        get: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Vgg> {
        config.validate()?;
        let params = params_from_arrays(gpu, config.param_shapes(), &get)?;
        let buffers = params_from_arrays(gpu, config.buffer_shapes(), &get)?;
        Ok(Vgg {
            config,
            params,
            buffers,
        })
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Forward pass of a batch `x` (B, C, S, S), or (B, C, D, S, S) for volumes, to the
    /// class logits (B, classes), and the parameter variables (leaves that require
    /// gradients in training).
    pub fn forward(&self, tape: &Tape, x: &Var, pass: Pass) -> Result<(Var, Vec<Var>)> {
        let c = &self.config;
        let shape = x.shape();
        let want = c.input_shape(shape.first().copied().unwrap_or(0));
        if shape != want {
            bail!(
                "the classifier expects input (B, {}), got {:?}",
                want[1..]
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                shape
            );
        }
        let volume = c.depth.is_some();
        let training = matches!(pass, Pass::Train { .. });
        let params = tape.leaves(self.params.iter().map(|(_, t)| t), training);
        // Parameters and running statistics are taken in the order of param_shapes and
        // buffer_shapes.
        let mut at = Cursor {
            params: &params,
            next: 0,
            running: self.buffers.iter().map(|(_, t)| t).collect(),
            next_running: 0,
        };
        let act = c.reg.activation();
        let mut h = x.clone();
        for (&n, fd) in VGG16_CONVS.iter().zip(c.depth_pool()) {
            for _ in 0..n {
                let (w, b) = (at.param(), at.param());
                h = match (c.reg.bn, volume) {
                    (true, false) => {
                        let z = ops::conv3x3(tape, &h, w, b)?;
                        self.norm_act(tape, &z, &mut at, training)?
                    }
                    // Batch norm of a volume: the channel statistics over (N, D x H, W).
                    (true, true) => {
                        let z = ops::conv3x3x3(tape, &h, w, b)?;
                        let z4 = flat4(tape, &z)?;
                        let y = self.norm_act(tape, &z4, &mut at, training)?;
                        ops::reshape(tape, &y, z.shape())?
                    }
                    (false, false) => ops::conv3x3::conv3x3_act(tape, &h, w, b, act)?,
                    (false, true) => ops::conv3x3x3::conv3x3x3_act(tape, &h, w, b, act)?,
                };
            }
            h = if volume {
                ops::maxpool3d(tape, &h, fd)?
            } else {
                ops::maxpool2(tape, &h)?
            };
        }
        h = if c.reg.gap {
            ops::gap(tape, &if volume { flat4(tape, &h)? } else { h })?
        } else {
            ops::reshape(tape, &h, &[shape[0], c.flat()])?
        };
        for i in 0..3u32 {
            let (w, b) = (at.param(), at.param());
            h = ops::linear(tape, &h, w, b)?;
            if i < 2 {
                h = self.norm_act(tape, &h, &mut at, training)?;
                let key = match pass {
                    Pass::Train { seed, step } => Some(ops::DropoutKey {
                        seed,
                        step,
                        layer: i,
                    }),
                    Pass::Eval => None,
                };
                h = ops::dropout(tape, &h, c.reg.dropout, key)?;
            }
        }
        Ok((h, params))
    }

    /// Batch normalisation (when on), then the activation.
    fn norm_act(&self, tape: &Tape, h: &Var, at: &mut Cursor, training: bool) -> Result<Var> {
        let reg = &self.config.reg;
        let h = if reg.bn {
            let (g, b) = (at.param(), at.param());
            ops::batchnorm(tape, h, g, b, at.running(), training)?
        } else {
            h.clone()
        };
        match reg.activation() {
            Activation::Leaky(a) => ops::leaky_relu(tape, &h, a),
            _ => ops::relu(tape, &h),
        }
    }
}

/// A volume (N, C, D, H, W) seen as (N, C, D x H, W), for the ops that reduce over every
/// position of a channel (batch normalisation, global average pooling).
fn flat4(tape: &Tape, h: &Var) -> Result<Var> {
    let s = h.shape();
    ops::reshape(tape, h, &[s[0], s[1], s[2] * s[3], s[4]])
}

/// The forward's place in the parameter and running-statistics lists.
struct Cursor<'a> {
    params: &'a [Var],
    next: usize,
    running: Vec<&'a Tensor>,
    next_running: usize,
}

impl<'a> Cursor<'a> {
    fn param(&mut self) -> &'a Var {
        self.next += 1;
        &self.params[self.next - 1]
    }
    fn running(&mut self) -> &'a Tensor {
        self.next_running += 1;
        self.running[self.next_running - 1]
    }
}
