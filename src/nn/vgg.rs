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
//! software adapter (`quick`). VGG-16's dropout is left out: the paper does not mention it,
//! and with 200 steps of training it would mostly add noise to the comparison.

use crate::nn::init::{he_params, params_from_arrays};
use crate::ops;
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
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || !self.size.is_multiple_of(32) {
            bail!(
                "the classifier's input size must be a positive multiple of 32 (five 2x2 poolings), got {}",
                self.size
            );
        }
        if self.in_channels == 0 || self.fc == 0 || self.widths.contains(&0) {
            bail!("the classifier needs at least one input channel, one channel per block and one fully connected unit");
        }
        if self.classes < 2 {
            bail!("a classifier needs at least 2 classes");
        }
        Ok(())
    }

    /// Inputs of fc1: the last block's channels times (S/32)^2.
    pub fn flat(&self) -> usize {
        let s = self.size / 32;
        self.widths[4] * s * s
    }

    /// (name, shape) of every parameter, in the order the checkpoint and Adam keep them.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut c = self.in_channels;
        for (b, (&w, &n)) in self.widths.iter().zip(&VGG16_CONVS).enumerate() {
            for i in 1..=n {
                out.push((format!("block{}.conv{i}.weight", b + 1), vec![w, c, 3, 3]));
                out.push((format!("block{}.conv{i}.bias", b + 1), vec![w]));
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
        }
        out
    }

    /// Parameter count and forward FLOPs per image (2 per multiply-add, 1 per bias add
    /// and per ReLU output).
    pub fn cost(&self) -> (u64, u64) {
        let (mut params, mut flops) = (0u64, 0u64);
        let mut hw = self.size as u64;
        let mut c = self.in_channels as u64;
        for (&w, &n) in self.widths.iter().zip(&VGG16_CONVS) {
            for _ in 0..n {
                let w = w as u64;
                params += w * c * 9 + w;
                flops += hw * hw * w * (18 * c + 2);
                c = w;
            }
            hw /= 2;
        }
        let fcs = [
            (self.flat(), self.fc),
            (self.fc, self.fc),
            (self.fc, self.classes),
        ];
        for (i, o) in fcs {
            params += (i * o + o) as u64;
            flops += (o * (2 * i + 2)) as u64;
        }
        (params, flops)
    }
}

/// The classifier: its architecture and its parameters on the GPU.
pub struct Vgg {
    pub config: VggConfig,
    /// (name, tensor) in the order of [`VggConfig::param_shapes`].
    pub params: Vec<(String, Tensor)>,
}

impl Vgg {
    /// Fresh weights: He normal (fan-in = Cin x 3 x 3 for convolutions, the input width for
    /// the fully connected layers), zero biases, all drawn from `seed`.
    pub fn init(gpu: &Gpu, config: VggConfig, seed: u64) -> Result<Vgg> {
        config.validate()?;
        let params = he_params(gpu, config.param_shapes(), seed)?;
        Ok(Vgg { config, params })
    }

    /// Rebuild from named host arrays (a checkpoint): every parameter must be present with
    /// its exact shape.
    pub fn from_arrays(
        gpu: &Gpu,
        config: VggConfig,
        get: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Vgg> {
        config.validate()?;
        let params = params_from_arrays(gpu, config.param_shapes(), get)?;
        Ok(Vgg { config, params })
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Forward pass of a batch `x` (B, C, S, S) to the class logits (B, classes), and the
    /// parameter variables (leaves that require gradients when `trainable`).
    pub fn forward(&self, tape: &Tape, x: &Var, trainable: bool) -> Result<(Var, Vec<Var>)> {
        let c = &self.config;
        let shape = x.shape();
        if shape.len() != 4 || shape[1..] != [c.in_channels, c.size, c.size] {
            bail!(
                "the classifier expects input (B, {}, {}, {}), got {:?}",
                c.in_channels,
                c.size,
                c.size,
                shape
            );
        }
        let params = tape.leaves(self.params.iter().map(|(_, t)| t), trainable);
        let mut p = params.chunks(2);
        let mut h = x.clone();
        for &n in &VGG16_CONVS {
            for _ in 0..n {
                let wb = p.next().expect("param_shapes lists every convolution");
                h = ops::conv3x3_relu(tape, &h, &wb[0], &wb[1])?;
            }
            h = ops::maxpool2(tape, &h)?;
        }
        h = ops::reshape(tape, &h, &[shape[0], c.flat()])?;
        for i in 0..3 {
            let wb = p
                .next()
                .expect("param_shapes lists every fully connected layer");
            h = ops::linear(tape, &h, &wb[0], &wb[1])?;
            if i < 2 {
                h = ops::relu(tape, &h)?;
            }
        }
        Ok((h, params))
    }
}
