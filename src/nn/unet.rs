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
}

impl UnetConfig {
    pub fn new(channels: usize, labels: usize, size: usize) -> Result<UnetConfig> {
        let c = UnetConfig {
            channels,
            labels,
            size,
            in_channels: 1,
        };
        c.validate()?;
        Ok(c)
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
        Ok(())
    }

    /// The network as a list of steps, in forward order.
    pub fn steps(&self) -> Vec<Step> {
        let n = self.channels;
        let mut steps = Vec::new();
        let mut c = self.in_channels;
        for level in 1..=5 {
            let width = n << (level - 1);
            if level > 1 {
                steps.push(Step::MaxPool {
                    name: format!("pool{}", level - 1),
                });
            }
            for i in 1..=2 {
                steps.push(Step::Conv3x3Elu {
                    name: format!("enc{level}.conv{i}"),
                    cin: c,
                    cout: width,
                });
                c = width;
            }
        }
        for level in (1..=4).rev() {
            let width = n << (level - 1);
            steps.push(Step::Upsample {
                name: format!("up{level}"),
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
                });
                c = width;
            }
        }
        steps.push(Step::Conv1x1 {
            name: "out".into(),
            cin: c,
            cout: self.labels,
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
                Step::Conv3x3Elu { name, cin, cout } => {
                    out.push((format!("{name}.weight"), vec![cout, cin, 3, 3]));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                Step::Conv1x1 { name, cin, cout } => {
                    out.push((format!("{name}.weight"), vec![cout, cin, 1, 1]));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                _ => {}
            }
        }
        out
    }

    /// One row per step: output shape (C, H, W) for one image, parameters, forward FLOPs.
    /// FLOPs count 2 per multiply-add of the convolutions plus 1 per bias add and 1 per
    /// ELU output; pooling, upsampling and concatenation move data and count 0.
    pub fn summary(&self) -> Vec<LayerRow> {
        let mut rows = Vec::new();
        let (mut c, mut hw) = (self.in_channels, self.size);
        for s in self.steps() {
            let (params, flops) = match &s {
                Step::Conv3x3Elu { cin, cout, .. } => {
                    c = *cout;
                    let px = (hw * hw) as u64;
                    (
                        (cout * cin * 9 + cout) as u64,
                        px * (*cout as u64) * (2 * 9 * *cin as u64 + 2),
                    )
                }
                Step::Conv1x1 { cin, cout, .. } => {
                    c = *cout;
                    let px = (hw * hw) as u64;
                    (
                        (cout * cin + cout) as u64,
                        px * (*cout as u64) * (2 * *cin as u64 + 1),
                    )
                }
                Step::MaxPool { .. } => {
                    hw /= 2;
                    (0, 0)
                }
                Step::Upsample { .. } => {
                    hw *= 2;
                    (0, 0)
                }
                Step::ConcatSkip { cout, .. } => {
                    c = *cout;
                    (0, 0)
                }
            };
            rows.push(LayerRow {
                name: s.name().to_string(),
                kind: s.kind(),
                shape: [c, hw, hw],
                params,
                flops,
            });
        }
        rows
    }
}

/// One step of the network.
#[derive(Clone, Debug)]
pub enum Step {
    /// 3x3 convolution (zero padding) + bias, then ELU.
    Conv3x3Elu {
        name: String,
        cin: usize,
        cout: usize,
    },
    /// 2x2 max pooling; the map before it is kept for the skip connection.
    MaxPool { name: String },
    /// 2x2 upsampling by repetition.
    Upsample { name: String },
    /// Concatenation of the current map (first) with the newest kept skip map.
    ConcatSkip { name: String, cout: usize },
    /// The final 1x1 convolution to the label logits.
    Conv1x1 {
        name: String,
        cin: usize,
        cout: usize,
    },
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Conv3x3Elu { name, .. }
            | Step::MaxPool { name }
            | Step::Upsample { name }
            | Step::ConcatSkip { name, .. }
            | Step::Conv1x1 { name, .. } => name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Conv3x3Elu { .. } => "conv3x3+elu",
            Step::MaxPool { .. } => "maxpool2",
            Step::Upsample { .. } => "upsample2",
            Step::ConcatSkip { .. } => "concat",
            Step::Conv1x1 { .. } => "conv1x1",
        }
    }
}

/// A row of `segfeat summary`.
#[derive(Clone, Debug)]
pub struct LayerRow {
    pub name: String,
    pub kind: &'static str,
    /// (C, H, W) of the step's output for one image.
    pub shape: [usize; 3],
    pub params: u64,
    pub flops: u64,
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

    /// Forward pass of a batch `x` (N, in_channels, S, S). With `trainable`, the parameters
    /// enter the tape as leaves that require gradients; otherwise as constants (frozen
    /// features; no node is recorded unless `x` itself requires a gradient).
    pub fn forward(&self, tape: &Tape, x: &Var, trainable: bool) -> Result<UnetOutput> {
        let c = &self.config;
        let want = [x.shape()[0], c.in_channels, c.size, c.size];
        if x.shape().len() != 4 || x.shape()[1..] != want[1..] {
            bail!(
                "the network expects input (N, {}, {}, {}), got {:?}",
                c.in_channels,
                c.size,
                c.size,
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
                Step::Conv3x3Elu { .. } => {
                    let (w, b) = (take(), take());
                    ops::conv3x3_elu(tape, &h, w, b)?
                }
                Step::MaxPool { .. } => {
                    skips.push(h.clone());
                    ops::maxpool2(tape, &h)?
                }
                // An Upsample followed by its ConcatSkip (always, in this network) is one
                // op that upsamples straight into the concatenation.
                Step::Upsample { .. } => {
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
                Step::Conv1x1 { .. } => {
                    let (w, b) = (take(), take());
                    ops::conv1x1(tape, &h, w, b)?
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
