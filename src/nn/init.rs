//! Seeded weight initialisation, on the CPU, so that the same seed gives the same weights
//! on every adapter.

use rand::{Rng, SeedableRng};

/// The generator behind every seeded choice in segfeat (weights, batch order, phantoms).
/// `StdRng` is pinned by Cargo.lock, so a seed means the same numbers for a given build.
pub type SeedRng = rand::rngs::StdRng;

pub fn rng(seed: u64) -> SeedRng {
    SeedRng::seed_from_u64(seed)
}

/// A sample of the standard normal distribution (Box-Muller).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]: the log is finite
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// He (Kaiming) normal initialisation: N(0, 2 / fan_in), the choice for (E)LU networks,
/// whose activations would otherwise shrink layer after layer.
pub fn he_normal(rng: &mut impl Rng, count: usize, fan_in: usize) -> Vec<f32> {
    let std = (2.0 / fan_in as f64).sqrt();
    (0..count).map(|_| (normal(rng) * std) as f32).collect()
}
