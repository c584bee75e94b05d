//! The classifier's inputs (paper, section 2.2): the image, the frozen segmentation
//! network's feature maps, or both side by side.
//!
//!   IMG         the image                                    1 channel
//!   SEG         the final 1x1 convolution's output (logits)  N channels (labels)
//!   IMG+SEG     image, then SEG                              1 + N
//!   CONCAT      the last upsampling-concatenation layer       3n
//!   IMG+CONCAT  image, then CONCAT                           1 + 3n
//!
//! [`FeatureBank::compute`] runs the U-Net once per image (no-grad) and keeps SEG and
//! CONCAT on the host, so every classifier run of an experiment reuses them. Combinations
//! are assembled per batch from the parts, never stored twice.

use crate::data::resize_bilinear;
use crate::nn::Unet;
use crate::{bail, Gpu, Result, Tape, Tensor};

/// A feature combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Combo {
    Img,
    Seg,
    ImgSeg,
    Concat,
    ImgConcat,
}

impl Combo {
    /// The five combinations, in the paper's order.
    pub const ALL: [Combo; 5] = [
        Combo::Img,
        Combo::Seg,
        Combo::ImgSeg,
        Combo::Concat,
        Combo::ImgConcat,
    ];

    /// The flag spelling: img, seg, img+seg, concat, img+concat.
    pub fn name(self) -> &'static str {
        match self {
            Combo::Img => "img",
            Combo::Seg => "seg",
            Combo::ImgSeg => "img+seg",
            Combo::Concat => "concat",
            Combo::ImgConcat => "img+concat",
        }
    }

    /// The paper's spelling: IMG, SEG, IMG+SEG, CONCAT, IMG+CONCAT.
    pub fn label(self) -> String {
        self.name().to_ascii_uppercase()
    }

    pub fn parse(s: &str) -> Result<Combo> {
        let t = s.trim().to_ascii_lowercase();
        Combo::ALL
            .into_iter()
            .find(|c| c.name() == t)
            .ok_or_else(|| {
                crate::Error(format!(
                "unknown feature combination '{s}' (choose from img, seg, img+seg, concat, img+concat)"
            ))
            })
    }

    /// A comma-separated list of combinations (duplicates removed, order kept).
    pub fn parse_list(s: &str) -> Result<Vec<Combo>> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let c = Combo::parse(part)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            bail!("--features needs at least one combination");
        }
        Ok(out)
    }

    /// (image, SEG, CONCAT): which parts the combination stacks.
    pub fn parts(self) -> (bool, bool, bool) {
        match self {
            Combo::Img => (true, false, false),
            Combo::Seg => (false, true, false),
            Combo::ImgSeg => (true, true, false),
            Combo::Concat => (false, false, true),
            Combo::ImgConcat => (true, false, true),
        }
    }
}

/// Per image: the image and the segmentation network's SEG and CONCAT maps, all resized
/// to the classifier's input size, on the host.
pub struct FeatureBank {
    /// Classifier input size (S x S).
    pub size: usize,
    /// None for images; Some(D) for volumes (each map then D x S x S, slice after slice).
    pub depth: Option<usize>,
    /// Channels of SEG (the label count N) and of CONCAT (3n).
    pub seg_channels: usize,
    pub concat_channels: usize,
    /// Per image: 1 x S x S.
    img: Vec<Vec<f32>>,
    /// Per image: N x S x S (empty when not computed).
    seg: Vec<Vec<f32>>,
    /// Per image: 3n x S x S (empty when not computed).
    concat: Vec<Vec<f32>>,
}

impl FeatureBank {
    /// Run the frozen `unet` once on every image (each at the network's size, row-major)
    /// in batches of `batch`, keep the parts `combos` need, and resize them to `size`
    /// (bilinear, per channel). `progress` is called with the images done so far. For a
    /// 3-D network every "image" is a volume, resized slice by slice in-plane.
    pub fn compute(
        gpu: &Gpu,
        unet: &Unet,
        images: &[&[f32]],
        combos: &[Combo],
        size: usize,
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<FeatureBank> {
        let s = unet.config.size;
        let px = unet.config.voxels();
        let depth = unet.config.volume.as_ref().map(|v| v.depth);
        let d = depth.unwrap_or(1);
        for (i, im) in images.iter().enumerate() {
            if im.len() != px {
                bail!(
                    "image {i} has {} values; the segmentation network takes {}{s}x{s}",
                    im.len(),
                    depth.map_or(String::new(), |d| format!("{d}x"))
                );
            }
        }
        let need_seg = combos.iter().any(|c| c.parts().1);
        let need_concat = combos.iter().any(|c| c.parts().2);
        let mut bank = FeatureBank {
            size,
            depth,
            seg_channels: unet.config.labels,
            concat_channels: unet.config.concat_channels(),
            img: images.iter().map(|im| resize_to(im, s, d, size)).collect(),
            seg: Vec::new(),
            concat: Vec::new(),
        };
        if !(need_seg || need_concat) {
            progress(images.len());
            return Ok(bank);
        }
        for chunk in images.chunks(batch.max(1)) {
            let b = chunk.len();
            let mut x = Vec::with_capacity(b * px);
            for im in chunk {
                x.extend_from_slice(im);
            }
            let tape = Tape::new(gpu);
            let x = tape.constant(&Tensor::from_slice(gpu, &unet.config.input_shape(b), &x)?);
            let out = tape.no_grad(|| unet.forward(&tape, &x, false))?;
            if need_seg {
                let v = out.seg.value.to_vec(gpu);
                let per = bank.seg_channels * px;
                for i in 0..b {
                    let img = &v[i * per..(i + 1) * per];
                    bank.seg
                        .push(resize_to(img, s, bank.seg_channels * d, size));
                }
            }
            if need_concat {
                let v = out.concat.value.to_vec(gpu);
                let per = bank.concat_channels * px;
                for i in 0..b {
                    let img = &v[i * per..(i + 1) * per];
                    bank.concat
                        .push(resize_to(img, s, bank.concat_channels * d, size));
                }
            }
            progress(bank.seg.len().max(bank.concat.len()));
        }
        Ok(bank)
    }

    /// Images in the bank.
    pub fn len(&self) -> usize {
        self.img.len()
    }

    pub fn is_empty(&self) -> bool {
        self.img.is_empty()
    }

    /// Values per channel of an input: S x S, or D x S x S.
    pub fn voxels(&self) -> usize {
        self.depth.unwrap_or(1) * self.size * self.size
    }

    /// Channels of a combination's input.
    pub fn channels(&self, combo: Combo) -> usize {
        let (i, s, c) = combo.parts();
        usize::from(i) + usize::from(s) * self.seg_channels + usize::from(c) * self.concat_channels
    }

    /// Host bytes held.
    pub fn bytes(&self) -> usize {
        let count = |v: &Vec<Vec<f32>>| v.iter().map(Vec::len).sum::<usize>();
        4 * (count(&self.img) + count(&self.seg) + count(&self.concat))
    }

    /// Append the input of image `i` for `combo` to `out`: its parts stacked along the
    /// channel axis (C x S x S), image first.
    pub fn append_input(&self, i: usize, combo: Combo, out: &mut Vec<f32>) -> Result<()> {
        let (use_img, use_seg, use_concat) = combo.parts();
        if use_img {
            out.extend_from_slice(&self.img[i]);
        }
        for (used, part, name) in [
            (use_seg, &self.seg, "SEG"),
            (use_concat, &self.concat, "CONCAT"),
        ] {
            if used {
                let Some(v) = part.get(i) else {
                    bail!("the feature bank was computed without {name}");
                };
                out.extend_from_slice(v);
            }
        }
        Ok(())
    }
}

/// Resize each of `channels` square maps (planes) from `from` to `to` (a copy when equal).
fn resize_to(maps: &[f32], from: usize, channels: usize, to: usize) -> Vec<f32> {
    if from == to {
        return maps.to_vec();
    }
    let px = from * from;
    let mut out = Vec::with_capacity(channels * to * to);
    for c in 0..channels {
        out.extend(resize_bilinear(&maps[c * px..(c + 1) * px], from, from, to));
    }
    out
}

/// Per-channel mean and standard deviation, by which inputs are standardised before the
/// classifier (the parts differ in scale by orders of magnitude: intensities in [0, 1],
/// logits in the tens). Computed on a run's training images only.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ChannelStats {
    /// Statistics over the inputs of `idx` (each C x S x S).
    pub fn compute(bank: &FeatureBank, combo: Combo, idx: &[usize]) -> Result<ChannelStats> {
        let c = bank.channels(combo);
        let px = bank.voxels();
        let (mut s1, mut s2) = (vec![0f64; c], vec![0f64; c]);
        let mut x = Vec::with_capacity(c * px);
        for &i in idx {
            x.clear();
            bank.append_input(i, combo, &mut x)?;
            for ch in 0..c {
                for &v in &x[ch * px..(ch + 1) * px] {
                    s1[ch] += v as f64;
                    s2[ch] += (v as f64) * (v as f64);
                }
            }
        }
        let n = (idx.len() * px).max(1) as f64;
        let mean: Vec<f32> = s1.iter().map(|s| (s / n) as f32).collect();
        let std = s1
            .iter()
            .zip(&s2)
            .map(|(a, b)| {
                let var = (b / n - (a / n) * (a / n)).max(0.0);
                // A constant channel (a label never predicted) stays at zero, unscaled.
                if var > 1e-12 {
                    var.sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        Ok(ChannelStats { mean, std })
    }

    /// Statistics that leave `channels` channels as they are.
    pub fn identity(channels: usize) -> ChannelStats {
        ChannelStats {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Standardise one input (C x S x S) in place.
    pub fn apply(&self, x: &mut [f32]) {
        let px = x.len() / self.mean.len().max(1);
        for (ch, chunk) in x.chunks_mut(px).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for v in chunk {
                *v = (*v - m) / s;
            }
        }
    }
}
