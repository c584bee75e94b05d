//! A seeded generator of synthetic cardiac CT four-chamber-view slices.
//!
//! Each pixel is classified analytically (ellipses in the body's frame and in a rotated
//! heart frame), given a Hounsfield value (mean of 2x2 sub-samples, so edges have partial
//! volume), then the slice gets Gaussian noise, a Gaussian blur like a CT's point-spread
//! function, and the window [-250, 450] HU mapped to [0, 1]. The label of a pixel is the
//! structure at its centre: 0 BG, 1 RA, 2 LA, 3 RV, 4 LV, 5 Myo (the LV myocardium, which
//! includes the interventricular septum; the thin RV free wall and the atrial walls are
//! background, as in MM-WHS-style label sets).
//!
//! Anatomy, in the radiological display (patient's left on the image's right, anterior
//! up): a body ellipse with subcutaneous fat and a muscle layer; two lungs; the spine
//! (vertebral body with cortex, spinal canal) and the descending aorta in front of it; a
//! sternum; the heart, its long axis tilted 30 to 60 degrees, apex pointing anterior-left:
//! LV and its myocardium ring, RV wrapped around the septum with a thin wall, LA and RA at
//! the base, split by the interatrial septum, all in epicardial fat inside the pericardium
//! and mediastinal fat. Contrast is the arterial phase: left-heart blood (and the aorta)
//! brighter than right-heart blood.
//!
//! Variation: per patient, body size, heart size, position, rotation, chamber sizes, wall
//! and fat thickness, contrast and noise; per slice, a position z along the body axis that
//! grows the atria above the four-chamber level and the ventricles below it.
//!
//! Diseases (positives come from their own patients, never from the normals):
//! - pericardial effusion: a layer of water-density fluid (0 to 20 HU) between the
//!   epicardial fat and the pericardium, over a sector of the circumference;
//! - septal defect: a gap in the interventricular (or, for a third of the patients, the
//!   interatrial) septum, where the two blood pools meet and mix.
//!
//! Severity s in [0, 1] (drawn per patient) sets the effusion's thickness and coverage or
//! the defect's width between the ranges of [`PhantomSpec`]; s = 0 is the mildest case.

use rand::Rng;

use super::{Dataset, Group, Sample, CARDIAC_LABELS};
use crate::nn::init::{normal, rng, SeedRng};
use crate::{bail, Result};

/// Hounsfield window mapped to [0, 1].
pub const WINDOW_HU: (f64, f64) = (-250.0, 450.0);

pub const NORMALISATION: &str =
    "phantom: Hounsfield units windowed to [-250, 450] and mapped linearly to [0, 1]";

/// What to generate. Defaults follow the paper: 40 normal patients of about 10 slices
/// (the paper had 425 images), and 30 images of each disease from other patients.
#[derive(Clone, Debug)]
pub struct PhantomSpec {
    pub size: usize,
    pub seed: u64,
    pub normal_patients: usize,
    /// Slices per normal patient: uniform in this range (inclusive).
    pub slices: (usize, usize),
    pub effusion_images: usize,
    pub septal_images: usize,
    /// Slices per diseased patient.
    pub positive_slices: usize,
    /// Effusion thickness at severity 0 and 1, in units of the heart's half-length
    /// (about 50 pixels at 256x256).
    pub effusion_thickness: (f64, f64),
    /// Fraction of the circumference covered at severity 0 and 1.
    pub effusion_coverage: (f64, f64),
    /// Septal defect width at severity 0 and 1, in the same units.
    pub defect_width: (f64, f64),
    /// Some(D): one volume of D slices per patient instead of separate slices (the 3-D
    /// phantom; see [`PhantomSpec::generate`]).
    pub volume_depth: Option<usize>,
}

impl Default for PhantomSpec {
    fn default() -> Self {
        PhantomSpec {
            size: 256,
            seed: 1,
            normal_patients: 40,
            slices: (9, 12),
            effusion_images: 30,
            septal_images: 30,
            positive_slices: 3,
            effusion_thickness: (0.02, 0.20),
            effusion_coverage: (0.25, 1.0),
            defect_width: (0.03, 0.30),
            volume_depth: None,
        }
    }
}

impl PhantomSpec {
    pub fn validate(&self) -> Result<()> {
        if self.size < 16 {
            bail!("phantom size must be at least 16 pixels, got {}", self.size);
        }
        crate::limits::check_size("the phantom size", self.size)?;
        // Every image as f32 intensities and u8 labels, at the most slices the range allows.
        let images = (self.normal_patients as u128) * (self.slices.1 as u128)
            + self.effusion_images as u128
            + self.septal_images as u128;
        crate::limits::check_host(
            &format!("a phantom of {images} images at {0}x{0}", self.size),
            images * (self.size as u128).pow(2) * 5,
        )?;
        if self.slices.0 == 0 || self.slices.0 > self.slices.1 {
            bail!(
                "slices per patient must be a range like 9..12 with 1 <= min <= max, got {}..{}",
                self.slices.0,
                self.slices.1
            );
        }
        if self.positive_slices == 0 {
            bail!("slices per diseased patient must be at least 1");
        }
        if let Some(d) = self.volume_depth {
            if d == 0 {
                bail!("a phantom volume needs at least one slice");
            }
            crate::limits::check_size("the phantom's volume depth", d)?;
            let patients = self.normal_patients as u128
                + self.effusion_images as u128
                + self.septal_images as u128;
            crate::limits::check_host(
                &format!("a phantom of {patients} volumes of {d}x{0}x{0}", self.size),
                patients * d as u128 * (self.size as u128).pow(2) * 5,
            )?;
        }
        for (what, (a, b)) in [
            ("effusion thickness", self.effusion_thickness),
            ("effusion coverage", self.effusion_coverage),
            ("defect width", self.defect_width),
        ] {
            if !(a >= 0.0 && b >= a) {
                bail!("{what} must be a range min..max with 0 <= min <= max, got {a}..{b}");
            }
        }
        if self.effusion_coverage.1 > 1.0 {
            bail!(
                "effusion coverage is a fraction of the circumference, at most 1, got {}",
                self.effusion_coverage.1
            );
        }
        Ok(())
    }

    /// Generate the whole set: normals, then effusion, then septal defect patients.
    ///
    /// With `volume_depth` D, each patient is one volume of D slices instead, and each
    /// disease has `effusion_images` (`septal_images`) patients, one volume each. The
    /// normal patients are those of the 2-D set of the same seed (the same draws:
    /// anatomy), and so are the first `effusion_images / positive_slices` effusion
    /// patients (anatomy, disease, severity); every patient's slices at the same D evenly spaced heights z in
    /// [-0.6, 0.6] (so that the extent of a volume says nothing of its disease), and the
    /// disease present only in the slices within a band of z drawn per patient: centred
    /// in [-0.15, 0.15], half-width in [0.25, 0.45] (at D = 8, 3 to 6 of the 8 slices,
    /// always the middle one).
    pub fn generate(&self) -> Result<Dataset> {
        self.validate()?;
        let mut samples = Vec::new();
        let mut master = rng(self.seed);
        for p in 0..self.normal_patients {
            let k = master.random_range(self.slices.0..=self.slices.1);
            let pseed = master.random::<u64>();
            let id = format!("N{:03}", p + 1);
            samples.extend(match self.volume_depth {
                Some(d) => vec![patient_volume(self, &id, Group::Normal, d, pseed)],
                None => patient(self, &id, Group::Normal, k, pseed),
            });
        }
        for (group, images, prefix) in [
            (Group::Effusion, self.effusion_images, "E"),
            (Group::Septal, self.septal_images, "S"),
        ] {
            let mut left = images;
            let mut p = 0;
            while left > 0 {
                // Volumes: one diseased patient per disease image asked for.
                let k = match self.volume_depth {
                    Some(_) => 1,
                    None => left.min(self.positive_slices),
                };
                let pseed = master.random::<u64>();
                p += 1;
                let id = format!("{prefix}{p:03}");
                samples.extend(match self.volume_depth {
                    Some(d) => vec![patient_volume(self, &id, group, d, pseed)],
                    None => patient(self, &id, group, k, pseed),
                });
                left -= k;
            }
        }
        Ok(Dataset {
            size: self.size,
            depth: self.volume_depth,
            label_names: CARDIAC_LABELS.iter().map(|s| s.to_string()).collect(),
            normalisation: NORMALISATION.into(),
            source: match self.volume_depth {
                None => format!("phantom seed {}", self.seed),
                Some(d) => format!("phantom seed {} volumes of {d} slices", self.seed),
            },
            manifest_patients: false,
            samples,
        })
    }
}

/// The k slices of one patient.
fn patient(spec: &PhantomSpec, id: &str, group: Group, k: usize, seed: u64) -> Vec<Sample> {
    let mut r = rng(seed);
    let anatomy = Anatomy::draw(&mut r);
    let (severity, disease) = match group {
        Group::Normal => (None, Disease::None),
        _ => {
            let s: f64 = r.random();
            (Some(s as f32), Disease::draw(spec, group, s, &mut r))
        }
    };
    (0..k)
        .map(|i| {
            // Slices spread over z in [-0.6, 0.6] around the four-chamber level; diseased
            // patients' slices stay nearer to it, where the disease is visible.
            let spread = if group == Group::Normal { 0.6 } else { 0.35 };
            let z = if k == 1 {
                0.0
            } else {
                -spread + 2.0 * spread * i as f64 / (k - 1) as f64
            } + 0.05 * normal(&mut r);
            let (image, label) = render(spec.size, &anatomy, &disease, z, r.random());
            Sample {
                name: format!("{id}_{:02}", i + 1),
                patient: id.to_string(),
                group,
                severity,
                image,
                label,
                spacing: None,
            }
        })
        .collect()
}

/// One patient's volume: `d` slices at evenly spaced heights, the disease only within
/// its band of z (see [`PhantomSpec::generate`]).
fn patient_volume(spec: &PhantomSpec, id: &str, group: Group, d: usize, seed: u64) -> Sample {
    let mut r = rng(seed);
    // The same draws, in the same order, as `patient`: the same anatomy and disease.
    let anatomy = Anatomy::draw(&mut r);
    let (severity, disease) = match group {
        Group::Normal => (None, Disease::None),
        _ => {
            let s: f64 = r.random();
            (Some(s as f32), Disease::draw(spec, group, s, &mut r))
        }
    };
    let centre = uniform(&mut r, -0.15, 0.15);
    let half = uniform(&mut r, 0.25, 0.45);
    let px = spec.size * spec.size;
    let (mut image, mut label) = (Vec::with_capacity(d * px), Vec::with_capacity(d * px));
    for i in 0..d {
        let z = if d == 1 {
            0.0
        } else {
            -0.6 + 1.2 * i as f64 / (d - 1) as f64
        };
        let here = if (z - centre).abs() <= half {
            &disease
        } else {
            &Disease::None
        };
        let (im, lab) = render(spec.size, &anatomy, here, z, r.random());
        image.extend(im);
        label.extend(lab);
    }
    Sample {
        name: id.to_string(),
        patient: id.to_string(),
        group,
        severity,
        image,
        label,
        spacing: None,
    }
}

fn uniform(r: &mut SeedRng, a: f64, b: f64) -> f64 {
    a + (b - a) * r.random::<f64>()
}

/// An axis-aligned ellipse in some frame.
#[derive(Clone, Copy, Debug)]
struct Ellipse {
    cx: f64,
    cy: f64,
    a: f64,
    b: f64,
}

impl Ellipse {
    fn new(cx: f64, cy: f64, a: f64, b: f64) -> Self {
        Ellipse { cx, cy, a, b }
    }
    /// Whether (x, y) lies inside the ellipse grown by `g` on both semi-axes.
    fn inside(&self, x: f64, y: f64, g: f64) -> bool {
        let dx = (x - self.cx) / (self.a + g);
        let dy = (y - self.cy) / (self.b + g);
        dx * dx + dy * dy <= 1.0
    }
    fn scaled(&self, s: f64) -> Ellipse {
        Ellipse {
            a: self.a * s,
            b: self.b * s,
            ..*self
        }
    }
}

/// One patient's body and heart (all lengths in units of half the image width, except
/// the heart's, which are in units of the heart's half-length `heart_scale`).
struct Anatomy {
    body: Ellipse,
    fat: f64,
    muscle: f64,
    lungs: [Ellipse; 2],
    spine: (f64, f64, f64),
    aorta: (f64, f64, f64),
    sternum: Ellipse,
    heart_c: (f64, f64),
    heart_scale: f64,
    tilt: f64,
    lv: Ellipse,
    rv: Ellipse,
    la: Ellipse,
    ra: Ellipse,
    myo: f64,
    rv_wall: f64,
    atrial_wall: f64,
    septum_v: f64,
    septum_t: f64,
    epi_fat: f64,
    fat_phase: f64,
    hu: Hu,
    noise_hu: f64,
}

/// Tissue densities of one patient's scan.
struct Hu {
    left_blood: f64,
    right_blood: f64,
    myo: f64,
    fat: f64,
    muscle: f64,
    soft: f64,
    lung: f64,
    bone: f64,
    fluid: f64,
    chamber_offset: [f64; 4],
}

impl Anatomy {
    fn draw(r: &mut SeedRng) -> Anatomy {
        let j = |r: &mut SeedRng, s: f64| s * normal(r).clamp(-2.5, 2.5);
        let bx = uniform(r, 0.80, 0.93);
        let by = uniform(r, 0.56, 0.70);
        let bcy = 0.03 + j(r, 0.015);
        let body = Ellipse::new(j(r, 0.015), bcy, bx, by);
        let lung = |r: &mut SeedRng, side: f64| {
            Ellipse::new(
                side * uniform(r, 0.40, 0.46),
                bcy - 0.04 + j(r, 0.02),
                uniform(r, 0.25, 0.30),
                by * uniform(r, 0.62, 0.72),
            )
        };
        let lungs = [lung(r, -1.0), lung(r, 1.0)];
        let spine_y = bcy + by - uniform(r, 0.20, 0.24);
        let spine = (j(r, 0.01), spine_y, uniform(r, 0.075, 0.095));
        let aorta = (
            uniform(r, 0.12, 0.17),
            spine_y - uniform(r, 0.10, 0.13),
            uniform(r, 0.04, 0.055),
        );
        let sternum = Ellipse::new(0.0, bcy - by + 0.12, 0.06, 0.03);
        let vary = |r: &mut SeedRng, e: Ellipse| Ellipse {
            cx: e.cx + j(r, 0.03),
            cy: e.cy + j(r, 0.03),
            a: e.a * uniform(r, 0.88, 1.12),
            b: e.b * uniform(r, 0.88, 1.12),
        };
        let left_blood = uniform(r, 300.0, 420.0);
        let hu = Hu {
            left_blood,
            right_blood: left_blood - uniform(r, 60.0, 150.0),
            myo: uniform(r, 80.0, 130.0),
            fat: uniform(r, -115.0, -75.0),
            muscle: uniform(r, 40.0, 60.0),
            soft: uniform(r, 30.0, 55.0),
            lung: uniform(r, -880.0, -780.0),
            bone: uniform(r, 350.0, 600.0),
            fluid: uniform(r, 0.0, 20.0),
            chamber_offset: [j(r, 8.0), j(r, 8.0), j(r, 8.0), j(r, 8.0)],
        };
        Anatomy {
            body,
            fat: uniform(r, 0.03, 0.09),
            muscle: uniform(r, 0.025, 0.04),
            lungs,
            spine,
            aorta,
            sternum,
            heart_c: (0.04 + j(r, 0.03), -0.10 + j(r, 0.025)),
            heart_scale: 0.47 * uniform(r, 0.88, 1.10),
            tilt: uniform(r, 30.0, 60.0).to_radians(),
            lv: vary(r, Ellipse::new(0.22, 0.20, 0.58, 0.22)),
            rv: vary(r, Ellipse::new(0.10, -0.27, 0.52, 0.22)),
            la: vary(r, Ellipse::new(-0.55, 0.22, 0.30, 0.27)),
            ra: vary(r, Ellipse::new(-0.50, -0.30, 0.32, 0.28)),
            myo: uniform(r, 0.09, 0.13),
            rv_wall: uniform(r, 0.025, 0.04),
            atrial_wall: uniform(r, 0.02, 0.03),
            septum_v: -0.02 + j(r, 0.02),
            septum_t: uniform(r, 0.05, 0.08),
            epi_fat: uniform(r, 0.03, 0.08),
            fat_phase: uniform(r, 0.0, std::f64::consts::TAU),
            hu,
            noise_hu: uniform(r, 12.0, 25.0),
        }
    }
}

/// The disease of one patient, in the heart frame.
enum Disease {
    None,
    /// Thickness, the sector's centre angle and half-width (radians).
    Effusion {
        thickness: f64,
        centre: f64,
        half_width: f64,
    },
    /// A gap of `width` centred at `u` along the long axis, in the ventricular or the
    /// atrial septum.
    Defect {
        atrial: bool,
        u: f64,
        width: f64,
    },
}

impl Disease {
    fn draw(spec: &PhantomSpec, group: Group, s: f64, r: &mut SeedRng) -> Disease {
        let lerp = |(a, b): (f64, f64)| a + (b - a) * s;
        match group {
            // The phantom draws only its own two diseases.
            Group::Normal | Group::Named(_) => Disease::None,
            Group::Effusion => Disease::Effusion {
                thickness: lerp(spec.effusion_thickness),
                centre: uniform(r, 0.0, std::f64::consts::TAU),
                half_width: std::f64::consts::PI * lerp(spec.effusion_coverage),
            },
            Group::Septal => {
                let atrial = r.random::<f64>() < 1.0 / 3.0;
                Disease::Defect {
                    atrial,
                    u: if atrial {
                        uniform(r, -0.75, -0.5)
                    } else {
                        uniform(r, -0.05, 0.35)
                    },
                    width: lerp(spec.defect_width),
                }
            }
        }
    }
}

/// One slice's geometry: the patient's anatomy at height z.
struct Slice<'a> {
    a: &'a Anatomy,
    disease: &'a Disease,
    axis: (f64, f64),
    perp: (f64, f64),
    centre: (f64, f64),
    lv: Ellipse,
    rv: Ellipse,
    la: Ellipse,
    ra: Ellipse,
}

const BG: u8 = 0;
const RA: u8 = 1;
const LA: u8 = 2;
const RV: u8 = 3;
const LV: u8 = 4;
const MYO: u8 = 5;

impl<'a> Slice<'a> {
    fn new(a: &'a Anatomy, disease: &'a Disease, z: f64) -> Slice<'a> {
        // Atria grow above the four-chamber level (z > 0), ventricles below it.
        let shrink = |zc: f64| (1.0 - ((z - zc) / 1.4).powi(2)).max(0.05).sqrt();
        let (sa, sv) = (shrink(0.3), shrink(-0.2));
        let tilt = a.tilt + 0.05 * z;
        let axis = (tilt.cos(), -tilt.sin()); // base -> apex: anterior-left
        let perp = (tilt.sin(), tilt.cos()); // towards the left heart (posterior-left)
        let shift = 0.04 * z;
        Slice {
            a,
            disease,
            axis,
            perp,
            centre: (a.heart_c.0, a.heart_c.1 + shift),
            lv: a.lv.scaled(sv),
            rv: a.rv.scaled(sv),
            la: a.la.scaled(sa),
            ra: a.ra.scaled(sa),
        }
    }

    /// (label, HU) at (x, y) in the image frame ([-1, 1]^2, y down).
    fn at(&self, x: f64, y: f64) -> (u8, f64) {
        let a = self.a;
        let hu = &a.hu;
        if !a.body.inside(x, y, 0.0) {
            return (BG, -1000.0);
        }
        if !a.body.inside(x, y, -a.fat) {
            return (BG, hu.fat);
        }
        if !a.body.inside(x, y, -a.fat - a.muscle) {
            return (BG, hu.muscle);
        }
        let (sx, sy, sr) = a.spine;
        let ds = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt();
        if ds < sr {
            return (
                BG,
                if ds > sr - 0.015 {
                    hu.bone + 250.0
                } else {
                    hu.bone
                },
            );
        }
        let dc = ((x - sx).powi(2) + (y - sy - sr - 0.04).powi(2)).sqrt();
        if dc < 0.035 {
            return (BG, 15.0);
        }
        let (ax, ay, ar) = a.aorta;
        if (x - ax).powi(2) + (y - ay).powi(2) < ar * ar {
            return (BG, hu.left_blood);
        }
        if a.sternum.inside(x, y, 0.0) {
            return (BG, hu.bone);
        }
        if let Some(t) = self.heart(x, y) {
            return t;
        }
        if a.lungs.iter().any(|l| l.inside(x, y, 0.0)) {
            return (BG, hu.lung);
        }
        (BG, hu.soft)
    }

    /// The heart and its surroundings in the heart frame, or None outside them.
    fn heart(&self, x: f64, y: f64) -> Option<(u8, f64)> {
        let a = self.a;
        let hu = &a.hu;
        let s = a.heart_scale;
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        let u = (dx * self.axis.0 + dy * self.axis.1) / s;
        let v = (dx * self.perp.0 + dy * self.perp.1) / s;
        let (lb, rb) = (hu.left_blood, hu.right_blood);
        let off = hu.chamber_offset;
        let lv_outer = self.lv.inside(u, v, a.myo);
        let rv_outer = self.rv.inside(u, v, a.rv_wall);

        // Ventricles: LV cavity, its myocardium (the septum included), RV cavity and wall.
        if self.lv.inside(u, v, 0.0) {
            return Some((LV, lb + off[3]));
        }
        if lv_outer {
            // The septum is the myocardium the RV cavity wraps around.
            if let Disease::Defect {
                atrial: false,
                u: du,
                width,
            } = *self.disease
            {
                // Septum: the myocardium with the LV cavity on one side and the RV
                // cavity on the other, within one wall thickness.
                let reach = 1.25 * a.myo;
                let septum = self.lv.inside(u, v + reach, 0.0) && self.rv.inside(u, v - reach, 0.0);
                if septum && (u - du).abs() < width / 2.0 {
                    return Some(self.mixed(v, LV, RV));
                }
            }
            return Some((MYO, hu.myo));
        }
        if self.rv.inside(u, v, 0.0) {
            return Some((RV, rb + off[2]));
        }
        if rv_outer {
            return Some((BG, hu.myo));
        }

        // Atria, split by the interatrial septum, in a thin wall.
        let in_la = self.la.inside(u, v, 0.0);
        let in_ra = self.ra.inside(u, v, 0.0);
        if in_la || in_ra {
            let d = v - a.septum_v;
            if d.abs() < a.septum_t / 2.0 {
                if let Disease::Defect {
                    atrial: true,
                    u: du,
                    width,
                } = *self.disease
                {
                    if (u - du).abs() < width / 2.0 {
                        return Some(self.mixed(v, LA, RA));
                    }
                }
                return Some((BG, hu.myo));
            }
            if d > 0.0 && in_la {
                return Some((LA, lb + off[1]));
            }
            if d < 0.0 && in_ra {
                return Some((RA, rb + off[0]));
            }
        }
        let chambers = [&self.lv, &self.rv, &self.la, &self.ra];
        let grow = [a.myo, a.rv_wall, a.atrial_wall, a.atrial_wall];
        let within = |g: f64| {
            chambers
                .iter()
                .zip(grow)
                .any(|(e, w)| e.inside(u, v, w + g))
        };
        if within(0.0) {
            return Some((BG, hu.myo)); // atrial wall
        }
        // Epicardial fat, thicker in the grooves; then fluid (effusion), the pericardium
        // and the mediastinal fat around it.
        let phi = v.atan2(u);
        let fat = a.epi_fat + 0.04 * (2.0 * phi + a.fat_phase).cos().max(0.0);
        if within(fat) {
            return Some((BG, hu.fat));
        }
        let fluid = match *self.disease {
            Disease::Effusion {
                thickness,
                centre,
                half_width,
            } => {
                let d = angle_between(phi, centre);
                // Full thickness inside the sector, tapering to 0 over 0.4 rad outside it.
                let taper = ((half_width + 0.4 - d) / 0.4).clamp(0.0, 1.0);
                thickness * smooth(taper) * (0.75 + 0.25 * (phi - centre).cos())
            }
            _ => 0.0,
        };
        if fluid > 0.0 && within(fat + fluid) {
            return Some((BG, hu.fluid));
        }
        if within(fat + fluid + 0.025) {
            return Some((BG, hu.myo - 30.0)); // pericardium
        }
        if within(fat + fluid + 0.1) && !a.lungs.iter().any(|l| l.inside(x, y, -0.02)) {
            return Some((BG, hu.fat));
        }
        None
    }

    /// Blood across a septal defect: labelled by the nearer cavity, its density blending
    /// the two pools.
    fn mixed(&self, v: f64, left: u8, right: u8) -> (u8, f64) {
        let hu = &self.a.hu;
        let (lc, rc) = if left == LV {
            (self.lv.cy, self.rv.cy)
        } else {
            (self.la.cy, self.ra.cy)
        };
        let t = ((v - rc) / (lc - rc)).clamp(0.0, 1.0);
        let label = if t >= 0.5 { left } else { right };
        (label, hu.right_blood + t * (hu.left_blood - hu.right_blood))
    }
}

fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(std::f64::consts::TAU);
    d.min(std::f64::consts::TAU - d)
}

fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

/// Render one slice: (image in [0, 1], labels), both size x size.
fn render(size: usize, a: &Anatomy, disease: &Disease, z: f64, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let slice = Slice::new(a, disease, z);
    let mut label = vec![0u8; size * size];
    let mut hu = vec![0f64; size * size];
    let px = 2.0 / size as f64;
    for iy in 0..size {
        for ix in 0..size {
            let (x, y) = (-1.0 + (ix as f64 + 0.5) * px, -1.0 + (iy as f64 + 0.5) * px);
            label[iy * size + ix] = slice.at(x, y).0;
            let mut sum = 0.0;
            for (ox, oy) in [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)] {
                sum += slice.at(x + ox * px, y + oy * px).1;
            }
            hu[iy * size + ix] = sum / 4.0;
        }
    }
    // White noise, then a Gaussian point-spread function: the blur correlates the noise
    // as a CT's does. The white noise is scaled so that the blurred noise has the
    // patient's standard deviation.
    let sigma = (0.8 * size as f64 / 256.0).max(0.5);
    let white = a.noise_hu * 2.0 * std::f64::consts::PI.sqrt() * sigma;
    let mut r = rng(seed);
    for h in hu.iter_mut() {
        *h += white * normal(&mut r);
    }
    let hu = gaussian_blur(&hu, size, sigma);
    let (lo, hi) = WINDOW_HU;
    let image = hu
        .iter()
        .map(|&h| ((h - lo) / (hi - lo)).clamp(0.0, 1.0) as f32)
        .collect();
    (image, label)
}

/// Separable Gaussian blur with clamped edges.
fn gaussian_blur(src: &[f64], size: usize, sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / norm).collect();
    let n = size as isize;
    let pass = |src: &[f64], horizontal: bool| {
        let mut out = vec![0.0; src.len()];
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    let d = k as isize - radius;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, n - 1), y)
                    } else {
                        (x, (y + d).clamp(0, n - 1))
                    };
                    acc += w * src[(sy * n + sx) as usize];
                }
                out[(y * n + x) as usize] = acc;
            }
        }
        out
    };
    pass(&pass(src, true), false)
}
