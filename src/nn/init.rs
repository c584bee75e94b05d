//! Seeded weight initialisation, drawn on the CPU so that the same seed gives the same
//! weights on every adapter, and the parameter lists of both networks built from it or
//! from a checkpoint.

use rand::{Rng, SeedableRng};

use crate::{bail, Gpu, Result, Tensor};

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

/// Fresh parameters for (name, shape) lists in order, uploaded: every weight (2-D or
/// more) He normal with fan-in = the product of all but its first dimension (Cin x 3 x 3
/// for a 3x3 convolution, Cin for a 1x1 or a fully connected layer), every bias zero, all
/// drawn from `seed`.
pub fn he_params(
    gpu: &Gpu,
    shapes: Vec<(String, Vec<usize>)>,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let mut r = rng(seed);
    let mut params = Vec::new();
    for (name, shape) in shapes {
        let count: usize = shape.iter().product();
        let data = if shape.len() > 1 {
            he_normal(&mut r, count, shape[1..].iter().product())
        } else {
            vec![0.0; count]
        };
        params.push((name, Tensor::from_slice(gpu, &shape, &data)?));
    }
    Ok(params)
}

/// Parameters for (name, shape) lists from named host arrays (a checkpoint): every one
/// must be present with its exact shape.
pub fn params_from_arrays(
    gpu: &Gpu,
    shapes: Vec<(String, Vec<usize>)>,
    get: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
) -> Result<Vec<(String, Tensor)>> {
    let mut params = Vec::new();
    for (name, shape) in shapes {
        let Some((s, data)) = get(&name) else {
            bail!("the checkpoint has no tensor '{name}' (expected shape {shape:?})");
        };
        if s != shape {
            bail!("tensor '{name}' has shape {s:?} in the checkpoint, but this architecture needs {shape:?}");
        }
        params.push((name, Tensor::from_slice(gpu, &shape, &data)?));
    }
    Ok(params)
}
