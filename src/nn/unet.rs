//! The segmentation network of Wong et al. (MICCAI 2017, section 2.1, Fig. 2): a U-Net
//! with ELU activations and zero-padded 3x3 convolutions, so sizes are kept.
//!
//!   level 1 (S x S)       conv n, conv n ------------------------- concat1 (3n) -> conv n, conv n -> 1x1 -> SEG (N)
//!     pool                                                            up
//!   level 2 (S/2)         conv 2n, conv 2n -------------- concat2 (6n) -> conv 2n, conv 2n
//!     ...                 ...                                      ...
//!   level 5 (S/16)        conv 16n, conv 16n  (the bottom: four poolings)
//!
//! Each expanding level upsamples by repetition, concatenates the contracting path's map of
//! the same level (upsampled channels first, then the skip), and applies two convolutions
//! that halve the upsampled channel count. The network is described once, as a list of
//! [`Step`]s: `forward` interprets it and `segfeat summary` prints it, so the two cannot
//! disagree.
//!
//! **Volumes.** With a [`VolumeShape`] the same network takes (N, C, D, S, S) volumes: every
//! 3x3 convolution is 3x3x3 ([`ops::conv3x3x3`]), the final 1x1 is 1x1x1, and each pooling
//! halves the height and width and divides the depth by its level's factor, 2 or 1 (thin
//! slices pool 2x2x2; thick slices keep their few slices with 2x2x1), the upsampling
//! multiplying back by the same factors.

use crate::nn::init::{he_params, params_from_arrays};
use crate::ops;
use crate::{bail, Gpu, Result, Tape, Tensor, Var};

/// The architecture: everything needed to rebuild the network from a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetConfig {
    /// Channels of the first convolution (the paper's n: 8, 16, 32 or 64).
    pub channels: usize,
    /// Output labels (N; 6 for the cardiac set).
    pub labels: usize,
    /// Input height and width, divisible by 16.
    pub size: usize,
    /// Input channels (1 for CT).
    pub in_channels: usize,
    /// None for 2-D images; for volumes, their depth and the pooling's depth factors.
    pub volume: Option<VolumeShape>,
}

/// The depth axis of a 3-D network: the input's slices, and the depth factor (2 or 1) of
/// each of the four poolings, whose product divides the depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeShape {
    pub depth: usize,
    pub depth_pool: [usize; 4],
}

impl VolumeShape {
    /// `depth` slices pooled by the default factors: 2 at each pooling while the depth
    /// stays at least 2 after it (16 slices: 2,2,2,1; 4 thick slices: 2,1,1,1; 1: none).
    pub fn new(depth: usize) -> VolumeShape {
        let mut depth_pool = [1; 4];
        let mut d = depth;
        for f in &mut depth_pool {
            if d.is_multiple_of(2) && d / 2 >= 2 {
                *f = 2;
                d /= 2;
            }
        }
        VolumeShape { depth, depth_pool }
    }

    /// "2,2,2,1", as metadata and `--depth-pool` write the factors.
    pub fn describe_pool(&self) -> String {
        self.depth_pool
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Four factors, each 1 or 2, like "2,2,1,1".
    pub fn parse_pool(s: &str) -> Result<[usize; 4]> {
        let v: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut out = [1; 4];
        if v.len() != 4 {
            bail!("the depth pooling is four factors, one per pooling, like 2,2,1,1; got {s:?}");
        }
        for (o, f) in out.iter_mut().zip(&v) {
            *o = match *f {
                "1" => 1,
                "2" => 2,
                _ => bail!("a depth pooling factor is 1 or 2, got {f:?} in {s:?}"),
            };
        }
        Ok(out)
    }

    fn validate(&self) -> Result<()> {
        if self.depth == 0 {
            bail!("a volume needs at least one slice");
        }
        crate::limits::check_size("the volume depth", self.depth)?;
        if let Some(f) = self.depth_pool.iter().find(|&&f| f != 1 && f != 2) {
            bail!("a depth pooling factor is 1 or 2, got {f}");
        }
        let product: usize = self.depth_pool.iter().product();
        if !self.depth.is_multiple_of(product) {
            bail!(
                "the depth ({}) must be divisible by the product of the depth pooling factors {} ({product})",
                self.depth,
                self.describe_pool()
            );
        }
        Ok(())
    }
}

impl UnetConfig {
    pub fn new(channels: usize, labels: usize, size: usize) -> Result<UnetConfig> {
        let c = UnetConfig {
            channels,
            labels,
            size,
            in_channels: 1,
            volume: None,
        };
        c.validate()?;
        Ok(c)
    }

    /// The 3-D network on volumes of `volume.depth` slices of `size` x `size`.
    pub fn new_3d(
        channels: usize,
        labels: usize,
        size: usize,
        volume: VolumeShape,
    ) -> Result<UnetConfig> {
        let c = UnetConfig {
            volume: Some(volume),
            ..UnetConfig::new(channels, labels, size)?
        };
        c.validate()?;
        Ok(c)
    }

    /// The depth of an input: 1 for 2-D images.
    pub fn depth(&self) -> usize {
        self.volume.as_ref().map_or(1, |v| v.depth)
    }

    /// Values per input channel of one sample: S x S, or D x S x S.
    pub fn voxels(&self) -> usize {
        self.depth() * self.size * self.size
    }

    /// The input's shape for `batch` samples: (B, C, S, S) or (B, C, D, S, S).
    pub fn input_shape(&self, batch: usize) -> Vec<usize> {
        self.sample_shape(batch, self.in_channels)
    }

    /// (B, C, [D,] S, S): a map of this network's resolution with `channels` channels.
    pub fn sample_shape(&self, batch: usize, channels: usize) -> Vec<usize> {
        let mut s = vec![batch, channels];
        if let Some(v) = &self.volume {
            s.push(v.depth);
        }
        s.extend([self.size, self.size]);
        s
    }

    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || !self.size.is_multiple_of(16) {
            bail!(
                "the input size must be a positive multiple of 16 (four 2x2 poolings), got {}",
                self.size
            );
        }
        crate::limits::check_size("the input size", self.size)?;
        if self.channels == 0 || self.channels > 1024 {
            bail!(
                "the channel count n must be between 1 and 1024, got {}",
                self.channels
            );
        }
        if self.in_channels > 1024 {
            bail!(
                "the network takes at most 1024 input channels, got {}",
                self.in_channels
            );
        }
        if self.labels > 256 {
            bail!(
                "label maps hold at most 256 labels (one byte per pixel), got {}",
                self.labels
            );
        }
        if self.labels < 2 {
            bail!(
                "a segmentation needs at least 2 labels, got {}",
                self.labels
            );
        }
        if self.in_channels == 0 {
            bail!("the network needs at least one input channel");
        }
        if let Some(v) = &self.volume {
            v.validate()?;
        }
        Ok(())
    }

    /// The network as a list of steps, in forward order.
    pub fn steps(&self) -> Vec<Step> {
        let n = self.channels;
        let mut steps = Vec::new();
        let mut c = self.in_channels;
        let volume = self.volume.is_some();
        // The depth factor of pooling k (1..=4), for volumes.
        let fd = |k: usize| self.volume.as_ref().map(|v| v.depth_pool[k - 1]);
        for level in 1..=5 {
            let width = n << (level - 1);
            if level > 1 {
                steps.push(Step::MaxPool {
                    name: format!("pool{}", level - 1),
                    depth: fd(level - 1),
                });
            }
            for i in 1..=2 {
                steps.push(Step::Conv3x3Elu {
                    name: format!("enc{level}.conv{i}"),
                    cin: c,
                    cout: width,
                    volume,
                });
                c = width;
            }
        }
        for level in (1..=4).rev() {
            let width = n << (level - 1);
            steps.push(Step::Upsample {
                name: format!("up{level}"),
                depth: fd(level),
            });
            steps.push(Step::ConcatSkip {
                name: format!("concat{level}"),
                cout: c + width,
            });
            c += width;
            for i in 1..=2 {
                steps.push(Step::Conv3x3Elu {
                    name: format!("dec{level}.conv{i}"),
                    cin: c,
                    cout: width,
                    volume,
                });
                c = width;
            }
        }
        steps.push(Step::Conv1x1 {
            name: "out".into(),
            cin: c,
            cout: self.labels,
            volume,
        });
        steps
    }

    /// The channels of the CONCAT feature map: the last concatenation's (3n: the
    /// upsampled level-2 features, 2n, beside the level-1 ones, n).
    pub fn concat_channels(&self) -> usize {
        self.steps()
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::ConcatSkip { cout, .. } => Some(*cout),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// (name, shape) of every parameter, in the order the checkpoint and Adam keep them.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for s in self.steps() {
            match s {
                Step::Conv3x3Elu {
                    name,
                    cin,
                    cout,
                    volume,
                } => {
                    let k = if volume { 3 } else { 2 };
                    let shape = [cout, cin].into_iter().chain([3; 3].into_iter().take(k));
                    out.push((format!("{name}.weight"), shape.collect()));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                Step::Conv1x1 {
                    name,
                    cin,
                    cout,
                    volume,
                } => {
                    let k = if volume { 3 } else { 2 };
                    let shape = [cout, cin].into_iter().chain([1; 3].into_iter().take(k));
                    out.push((format!("{name}.weight"), shape.collect()));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                _ => {}
            }
        }
        out
    }

    /// One row per step: output shape (C, H, W) or (C, D, H, W) for one sample,
    /// parameters, forward FLOPs. FLOPs count 2 per multiply-add of the convolutions plus
    /// 1 per bias add and 1 per ELU output; pooling, upsampling and concatenation move
    /// data and count 0.
    pub fn summary(&self) -> Vec<LayerRow> {
        let mut rows = Vec::new();
        let (mut c, mut hw, mut d) = (self.in_channels, self.size, self.depth());
        let taps = if self.volume.is_some() { 27 } else { 9 };
        for s in self.steps() {
            let px = (d * hw * hw) as u64;
            let (params, flops) = match &s {
                Step::Conv3x3Elu { cin, cout, .. } => {
                    c = *cout;
                    (
                        (cout * cin * taps + cout) as u64,
                        px * (*cout as u64) * (2 * taps as u64 * *cin as u64 + 2),
                    )
                }
                Step::Conv1x1 { cin, cout, .. } => {
                    c = *cout;
                    (
                        (cout * cin + cout) as u64,
                        px * (*cout as u64) * (2 * *cin as u64 + 1),
                    )
                }
                Step::MaxPool { depth, .. } => {
                    hw /= 2;
                    d /= depth.unwrap_or(1);
                    (0, 0)
                }
                Step::Upsample { depth, .. } => {
                    hw *= 2;
                    d *= depth.unwrap_or(1);
                    (0, 0)
                }
                Step::ConcatSkip { cout, .. } => {
                    c = *cout;
                    (0, 0)
                }
            };
            let mut shape = vec![c];
            if self.volume.is_some() {
                shape.push(d);
            }
            shape.extend([hw, hw]);
            rows.push(LayerRow {
                name: s.name().to_string(),
                kind: s.kind(),
                shape,
                params,
                flops,
            });
        }
        rows
    }
}

/// One step of the network. `volume` and `depth` say whether it works on volumes, and
/// by which depth factor a volume's pooling or upsampling goes.
#[derive(Clone, Debug)]
pub enum Step {
    /// 3x3 convolution (3x3x3 on volumes; zero padding) + bias, then ELU.
    Conv3x3Elu {
        name: String,
        cin: usize,
        cout: usize,
        volume: bool,
    },
    /// 2x2 max pooling (fd x 2 x 2 on volumes, `depth: Some(fd)`); the map before it is
    /// kept for the skip connection.
    MaxPool { name: String, depth: Option<usize> },
    /// 2x2 upsampling by repetition (fd x 2 x 2 on volumes).
    Upsample { name: String, depth: Option<usize> },
    /// Concatenation of the current map (first) with the newest kept skip map.
    ConcatSkip { name: String, cout: usize },
    /// The final 1x1 (1x1x1) convolution to the label logits.
    Conv1x1 {
        name: String,
        cin: usize,
        cout: usize,
        volume: bool,
    },
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Conv3x3Elu { name, .. }
            | Step::MaxPool { name, .. }
            | Step::Upsample { name, .. }
            | Step::ConcatSkip { name, .. }
            | Step::Conv1x1 { name, .. } => name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Conv3x3Elu { volume: false, .. } => "conv3x3+elu",
            Step::Conv3x3Elu { volume: true, .. } => "conv3x3x3+elu",
            Step::MaxPool { depth: None, .. } => "maxpool2",
            Step::MaxPool { depth: Some(2), .. } => "maxpool2x2x2",
            Step::MaxPool { depth: Some(_), .. } => "maxpool2x2x1",
            Step::Upsample { depth: None, .. } => "upsample2",
            Step::Upsample { depth: Some(2), .. } => "upsample2x2x2",
            Step::Upsample { depth: Some(_), .. } => "upsample2x2x1",
            Step::ConcatSkip { .. } => "concat",
            Step::Conv1x1 { volume: false, .. } => "conv1x1",
            Step::Conv1x1 { volume: true, .. } => "conv1x1x1",
        }
    }
}

/// A row of `segfeat summary`.
#[derive(Clone, Debug)]
pub struct LayerRow {
    pub name: String,
    pub kind: &'static str,
    /// (C, H, W), or (C, D, H, W) for volumes, of the step's output for one sample.
    pub shape: Vec<usize>,
    pub params: u64,
    pub flops: u64,
}

impl LayerRow {
    /// The shape as `CxHxW` (or `CxDxHxW`).
    pub fn shape_str(&self) -> String {
        self.shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    }
}

/// The U-Net: its architecture and its parameters on the GPU.
pub struct Unet {
    pub config: UnetConfig,
    /// (name, tensor) in the order of [`UnetConfig::param_shapes`].
    pub params: Vec<(String, Tensor)>,
}

/// What a forward pass gives: the two feature maps the classifier can use, by name, and
/// the parameter variables (for their gradients).
pub struct UnetOutput {
    /// The final 1x1 convolution's output (N, labels, S, S): the label logits ("SEG").
    pub seg: Var,
    /// The last concatenation (N, 3n, S, S): upsampled level-2 features and level-1
    /// features side by side ("CONCAT").
    pub concat: Var,
    /// One variable per parameter, in the order of `Unet::params`.
    pub params: Vec<Var>,
}

impl Unet {
    /// Fresh weights: He normal for every convolution (fan-in = Cin x 3 x 3, or Cin for the
    /// 1x1), zero biases, all drawn from `seed`.
    pub fn init(gpu: &Gpu, config: UnetConfig, seed: u64) -> Result<Unet> {
        config.validate()?;
        let params = he_params(gpu, config.param_shapes(), seed)?;
        Ok(Unet { config, params })
    }

    /// Rebuild from named host arrays (a checkpoint): every parameter must be present with
    /// its exact shape.
    pub fn from_arrays(
        gpu: &Gpu,
        config: UnetConfig,
        get: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Unet> {
        config.validate()?;
        let params = params_from_arrays(gpu, config.param_shapes(), get)?;
        Ok(Unet { config, params })
    }

    /// Total parameter count.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Forward pass of a batch `x` (N, in_channels, S, S), or (N, in_channels, D, S, S) for
    /// a 3-D network. With `trainable`, the parameters enter the tape as leaves that
    /// require gradients; otherwise as constants (frozen features; no node is recorded
    /// unless `x` itself requires a gradient).
    pub fn forward(&self, tape: &Tape, x: &Var, trainable: bool) -> Result<UnetOutput> {
        let c = &self.config;
        let want = c.input_shape(x.shape().first().copied().unwrap_or(0));
        if x.shape() != want || want[0] == 0 {
            bail!(
                "the network expects input (N, {}), got {:?}",
                want[1..]
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                x.shape()
            );
        }
        let params = tape.leaves(self.params.iter().map(|(_, t)| t), trainable);
        let mut next = params.iter();
        let mut take = || next.next().expect("param_shapes lists every parameter");
        let mut h = x.clone();
        let mut skips: Vec<Var> = Vec::new();
        let mut concat = None;
        let steps = c.steps();
        let mut steps = steps.iter().peekable();
        while let Some(step) = steps.next() {
            h = match step {
                Step::Conv3x3Elu { volume: false, .. } => {
                    let (w, b) = (take(), take());
                    ops::conv3x3_elu(tape, &h, w, b)?
                }
                Step::Conv3x3Elu { volume: true, .. } => {
                    let (w, b) = (take(), take());
                    ops::conv3x3x3_elu(tape, &h, w, b)?
                }
                Step::MaxPool { depth: None, .. } => {
                    skips.push(h.clone());
                    ops::maxpool2(tape, &h)?
                }
                Step::MaxPool {
                    depth: Some(fd), ..
                } => {
                    skips.push(h.clone());
                    ops::maxpool3d(tape, &h, *fd)?
                }
                // Volumes: the upsampled map, then its concatenation with the skip.
                Step::Upsample {
                    depth: Some(fd), ..
                } => ops::upsample3d(tape, &h, *fd)?,
                // An Upsample followed by its ConcatSkip (always, in this network) is one
                // op that upsamples straight into the concatenation.
                Step::Upsample { depth: None, .. } => {
                    match steps.next_if(|s| matches!(s, Step::ConcatSkip { .. })) {
                        Some(Step::ConcatSkip { .. }) => {
                            let skip = skips.pop().expect("one skip kept per pooling");
                            let y = ops::upsample_concat(tape, &h, &skip)?;
                            // The last concatenation (concat1, at full resolution) is
                            // the CONCAT feature map: each one replaces the one before.
                            concat = Some(y.clone());
                            y
                        }
                        _ => ops::upsample2(tape, &h)?,
                    }
                }
                Step::ConcatSkip { .. } => {
                    let skip = skips.pop().expect("one skip kept per pooling");
                    let y = ops::concat(tape, &[&h, &skip])?;
                    concat = Some(y.clone());
                    y
                }
                Step::Conv1x1 { volume: false, .. } => {
                    let (w, b) = (take(), take());
                    ops::conv1x1(tape, &h, w, b)?
                }
                // 1x1x1 is the 1x1 convolution of the volume seen as (N, C, D x S, S).
                Step::Conv1x1 { volume: true, .. } => {
                    let (w, b) = (take(), take());
                    let (n, cin, d, s) = (h.shape()[0], h.shape()[1], h.shape()[2], c.size);
                    let cout = w.shape()[0];
                    let flat = ops::reshape(tape, &h, &[n, cin, d * s, s])?;
                    let w2 = ops::reshape(tape, w, &[cout, cin, 1, 1])?;
                    let y = ops::conv1x1(tape, &flat, &w2, b)?;
                    ops::reshape(tape, &y, &[n, cout, d, s, s])?
                }
            };
        }
        Ok(UnetOutput {
            seg: h,
            concat: concat.expect("the U-Net has a concat1 step"),
            params,
        })
    }
}
