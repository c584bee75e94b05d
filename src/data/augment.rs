//! Data augmentation: seeded random transforms applied to an image and its label map
//! together, on the CPU beside the training step (a 128x128 image takes well under a
//! millisecond; a training step on the software adapter takes seconds).
//!
//! Geometry is one affine map per image, composed from
//!
//!   output = T + c + R(rotate) * Shear(shear) * diag(zoom * e, zoom / e) * Flip * (input - c - d)
//!
//! with c the image centre, `zoom` from `scale` and crop-and-resize, `e` from `stretch`, d
//! the crop's centre offset and T the translation. Each output pixel samples the input at
//! the inverse map: the image bilinearly, the label map by its nearest pixel, so that the
//! two move together. Outside the input, the image reads 0 (air, or an MRI's background)
//! and the labels 0 (background).
//!
//! Intensity transforms follow, on the image only: contrast about the image's mean,
//! brightness, gamma, Gaussian noise, then a clamp to [0, 1] (the window's range).
//!
//! Every range is a flag (`segfeat train-seg --rotate 15 ...`); all are 0 by default, the
//! paper's setting, under which nothing is drawn and the data goes in untouched.
//! [`Augment::recommended`] is the set documented in the README.

use rand::Rng;

use crate::nn::init::{normal, rng};
use crate::{bail, Result};

/// The range of every transform; 0 (or false) turns it off.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augment {
    /// Rotation, uniform in [-rotate, rotate] degrees.
    pub rotate: f64,
    /// Isotropic zoom by a factor log-uniform in [1 / (1 + scale), 1 + scale].
    pub scale: f64,
    /// Anisotropic stretch: x by e and y by 1 / e, e log-uniform in [1 / (1 + s), 1 + s].
    pub stretch: f64,
    /// Shear, uniform in [-shear, shear] degrees (x shifted in proportion to y).
    pub shear: f64,
    /// Translation in each axis, uniform in [-translate, translate] times the size.
    pub translate: f64,
    /// Mirror left-right with probability 1/2.
    pub flip_h: bool,
    /// Mirror top-bottom with probability 1/2.
    pub flip_v: bool,
    /// Crop a square whose side is uniform in [1 - crop, 1] times the size, at a uniform
    /// position inside the image, and resize it back to the full size.
    pub crop: f64,
    /// Contrast factor uniform in [1 - contrast, 1 + contrast], about the image's mean.
    pub contrast: f64,
    /// Intensity offset uniform in [-brightness, brightness].
    pub brightness: f64,
    /// Gamma log-uniform in [exp(-gamma), exp(gamma)] (applied to the clamped image).
    pub gamma: f64,
    /// Gaussian noise whose standard deviation is uniform in [0, noise].
    pub noise: f64,
}

/// The flag names, in the order `describe` writes them.
const KEYS: [&str; 12] = [
    "rotate",
    "scale",
    "stretch",
    "shear",
    "translate",
    "flip-h",
    "flip-v",
    "crop",
    "contrast",
    "brightness",
    "gamma",
    "noise",
];

impl Augment {
    /// The set the README recommends for cardiac CT and MRI, decided before any
    /// measurement: the ranges of nnU-Net's default augmentation (rotation, zoom 0.87 to
    /// 1.15, gamma about 0.74 to 1.35, contrast 0.75 to 1.25, small noise) with a little
    /// shear, stretch and translation, and without its mirroring: the cardiac labels are
    /// named by side (left and right atria and ventricles), so a mirrored heart would teach
    /// the network a heart that does not exist.
    pub fn recommended() -> Augment {
        Augment {
            rotate: 15.0,
            scale: 0.15,
            stretch: 0.1,
            shear: 5.0,
            translate: 0.1,
            flip_h: false,
            flip_v: false,
            crop: 0.0,
            contrast: 0.25,
            brightness: 0.1,
            gamma: 0.3,
            noise: 0.03,
        }
    }

    /// True when nothing is drawn: the paper's setting.
    pub fn is_identity(&self) -> bool {
        *self == Augment::default()
    }

    /// True when some geometric transform is on (the label map must move too).
    pub fn is_geometric(&self) -> bool {
        self.rotate != 0.0
            || self.scale != 0.0
            || self.stretch != 0.0
            || self.shear != 0.0
            || self.translate != 0.0
            || self.flip_h
            || self.flip_v
            || self.crop != 0.0
    }

    fn values(&self) -> [f64; 12] {
        [
            self.rotate,
            self.scale,
            self.stretch,
            self.shear,
            self.translate,
            self.flip_h as u8 as f64,
            self.flip_v as u8 as f64,
            self.crop,
            self.contrast,
            self.brightness,
            self.gamma,
            self.noise,
        ]
    }

    /// The ranges as `rotate=15,scale=0.15,...` (only those that are on; `none` when
    /// nothing is), as stored in a model's metadata.
    pub fn describe(&self) -> String {
        let on: Vec<String> = KEYS
            .iter()
            .zip(self.values())
            .filter(|(_, v)| *v != 0.0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }

    /// Parse what [`Augment::describe`] writes (also `recommended`).
    pub fn parse(s: &str) -> Result<Augment> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(Augment::default());
        }
        if s == "recommended" {
            return Ok(Augment::recommended());
        }
        let mut a = Augment::default();
        for item in s.split(',') {
            let Some((k, v)) = item.split_once('=') else {
                bail!(
                    "augmentation '{item}' is not KEY=VALUE (keys: {})",
                    KEYS.join(", ")
                );
            };
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| crate::Error(format!("augmentation {k}: '{v}' is not a number")))?;
            match k.trim() {
                "rotate" => a.rotate = v,
                "scale" => a.scale = v,
                "stretch" => a.stretch = v,
                "shear" => a.shear = v,
                "translate" => a.translate = v,
                "flip-h" => a.flip_h = v != 0.0,
                "flip-v" => a.flip_v = v != 0.0,
                "crop" => a.crop = v,
                "contrast" => a.contrast = v,
                "brightness" => a.brightness = v,
                "gamma" => a.gamma = v,
                "noise" => a.noise = v,
                other => bail!("unknown augmentation '{other}' (keys: {})", KEYS.join(", ")),
            }
        }
        a.validate()?;
        Ok(a)
    }

    /// Every range finite and in its domain, with a sentence naming the one that is not.
    pub fn validate(&self) -> Result<()> {
        for (k, v) in KEYS.iter().zip(self.values()) {
            if !(v.is_finite() && v >= 0.0) {
                bail!("--{k} must be a number >= 0, got {v}");
            }
        }
        if self.crop >= 1.0 {
            bail!(
                "--crop must be below 1 (the smallest crop's side is 1 - crop), got {}",
                self.crop
            );
        }
        if self.contrast >= 1.0 {
            bail!(
                "--contrast must be below 1 (the factor is 1 +- contrast), got {}",
                self.contrast
            );
        }
        if self.rotate > 180.0 || self.shear >= 60.0 || self.translate > 0.5 {
            bail!("--rotate is at most 180 degrees, --shear below 60 degrees and --translate at most 0.5 of the size");
        }
        Ok(())
    }

    /// Draw one transform. `key` identifies the image's draw (a training's seed, its step
    /// and the position in the batch): the same key gives the same transform, bit for bit.
    pub fn draw(&self, key: [u64; 3], size: usize) -> Transform {
        let mut r = rng(key[0]
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(key[1].wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            .wrapping_add(key[2].wrapping_mul(0x1656_67B1_9E37_79F9))
            ^ 0xA0761D6478BD642F);
        // Every draw is made whatever the ranges, in a fixed order, so that turning one
        // transform on or off leaves the others' draws as they were (for ablations).
        let mut u = [0.0f64; 14];
        for v in u.iter_mut() {
            *v = r.random_range(-1.0..=1.0);
        }
        let coin = |v: f64| v < 0.0;
        let rot = (u[0] * self.rotate).to_radians();
        let zoom = (u[1] * (1.0 + self.scale).ln()).exp();
        let e = (u[2] * (1.0 + self.stretch).ln()).exp();
        let sh = (u[3] * self.shear).to_radians().tan();
        let s = size as f64;
        let t = [u[4] * self.translate * s, u[5] * self.translate * s];
        let fx = if self.flip_h && coin(u[6]) { -1.0 } else { 1.0 };
        let fy = if self.flip_v && coin(u[7]) { -1.0 } else { 1.0 };
        // Crop side f in [1 - crop, 1], its centre anywhere that keeps it inside.
        let f = 1.0 - self.crop * (u[8] + 1.0) / 2.0;
        let half = (1.0 - f) * s / 2.0;
        let d = [u[9] * half, u[10] * half];
        let crop_zoom = 1.0 / f;
        // A = R * Shear * diag(sx, sy) * Flip
        let (sx, sy) = (zoom * crop_zoom * e * fx, zoom * crop_zoom / e * fy);
        let (c, sn) = (rot.cos(), rot.sin());
        // Shear [[1, sh], [0, 1]] times diag(sx, sy) = [[sx, sh sy], [0, sy]]
        let a = [
            [c * sx, c * sh * sy - sn * sy],
            [sn * sx, sn * sh * sy + c * sy],
        ];
        let contrast = 1.0 + u[11] * self.contrast;
        let brightness = u[12] * self.brightness;
        let gamma = (u[13] * self.gamma).exp();
        let noise = r.random_range(0.0..=1.0) * self.noise;
        let noise_seed = r.random::<u64>();
        Transform {
            size,
            a,
            t,
            d,
            contrast,
            brightness,
            gamma,
            noise,
            noise_seed,
        }
    }
}

/// One drawn transform (see the module's formula).
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub size: usize,
    /// The linear part A.
    pub a: [[f64; 2]; 2],
    /// Translation T, in pixels.
    pub t: [f64; 2],
    /// Crop centre offset d, in input pixels.
    pub d: [f64; 2],
    pub contrast: f64,
    pub brightness: f64,
    pub gamma: f64,
    /// Standard deviation of the noise.
    pub noise: f64,
    pub noise_seed: u64,
}

impl Transform {
    /// The identity (what [`Augment::default`] would draw).
    pub fn identity(size: usize) -> Transform {
        Transform {
            size,
            a: [[1.0, 0.0], [0.0, 1.0]],
            t: [0.0, 0.0],
            d: [0.0, 0.0],
            contrast: 1.0,
            brightness: 0.0,
            gamma: 1.0,
            noise: 0.0,
            noise_seed: 0,
        }
    }

    fn centre(&self) -> f64 {
        (self.size as f64 - 1.0) / 2.0
    }

    /// Where the input point (x, y) (pixel coordinates, x to the right, y down) lands.
    pub fn forward(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let c = self.centre();
        let (u, v) = (x - c - self.d[0], y - c - self.d[1]);
        (
            self.a[0][0] * u + self.a[0][1] * v + c + self.t[0],
            self.a[1][0] * u + self.a[1][1] * v + c + self.t[1],
        )
    }

    /// The input point that lands on the output point (x, y).
    pub fn inverse(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let c = self.centre();
        let [[a, b], [cc, d]] = self.a;
        let det = a * d - b * cc;
        let (u, v) = (x - c - self.t[0], y - c - self.t[1]);
        (
            (d * u - b * v) / det + c + self.d[0],
            (-cc * u + a * v) / det + c + self.d[1],
        )
    }

    /// Move `planes` planes of `size x size` values (an image, or a stack of feature
    /// maps) by the geometry, bilinearly; outside the input they read 0.
    pub fn warp(&self, planes: &[f32]) -> Vec<f32> {
        let s = self.size;
        let mut out = vec![0.0f32; planes.len()];
        for oy in 0..s {
            for ox in 0..s {
                let (x, y) = self.inverse((ox as f64, oy as f64));
                let (x0, y0) = (x.floor(), y.floor());
                let (tx, ty) = (x - x0, y - y0);
                let taps = [
                    (x0, y0, (1.0 - tx) * (1.0 - ty)),
                    (x0 + 1.0, y0, tx * (1.0 - ty)),
                    (x0, y0 + 1.0, (1.0 - tx) * ty),
                    (x0 + 1.0, y0 + 1.0, tx * ty),
                ];
                for (plane, dst) in planes.chunks(s * s).zip(out.chunks_mut(s * s)) {
                    let mut v = 0.0f64;
                    for &(px, py, wgt) in &taps {
                        if wgt != 0.0 && px >= 0.0 && py >= 0.0 && px < s as f64 && py < s as f64 {
                            v += wgt * plane[py as usize * s + px as usize] as f64;
                        }
                    }
                    dst[oy * s + ox] = v as f32;
                }
            }
        }
        out
    }

    /// Move a label map by the geometry, each output pixel taking its nearest input
    /// pixel's label; outside the input, 0 (background).
    pub fn warp_labels(&self, label: &[u8]) -> Vec<u8> {
        let s = self.size;
        let mut out = vec![0u8; label.len()];
        for oy in 0..s {
            for ox in 0..s {
                let (x, y) = self.inverse((ox as f64, oy as f64));
                let (px, py) = (x.round(), y.round());
                if px >= 0.0 && py >= 0.0 && px < s as f64 && py < s as f64 {
                    out[oy * s + ox] = label[py as usize * s + px as usize];
                }
            }
        }
        out
    }

    /// The intensity transforms, in place, on one image in [0, 1].
    pub fn intensity(&self, image: &mut [f32]) {
        if self.contrast == 1.0 && self.brightness == 0.0 && self.gamma == 1.0 && self.noise == 0.0
        {
            return;
        }
        let mean = image.iter().map(|&v| v as f64).sum::<f64>() / image.len().max(1) as f64;
        let mut r = rng(self.noise_seed);
        for v in image.iter_mut() {
            let mut x = (*v as f64 - mean) * self.contrast + mean + self.brightness;
            x = x.clamp(0.0, 1.0).powf(self.gamma);
            if self.noise > 0.0 {
                x += self.noise * normal(&mut r);
            }
            *v = x.clamp(0.0, 1.0) as f32;
        }
    }

    /// An image and its label map, moved together, then the image's intensities.
    pub fn apply(&self, image: &[f32], label: &[u8]) -> (Vec<f32>, Vec<u8>) {
        let mut img = self.warp(image);
        self.intensity(&mut img);
        (img, self.warp_labels(label))
    }
}
