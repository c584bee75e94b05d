//! One 3x3 convolution on the GPU next to its f64 CPU reference.
//!
//! To run:
//!     cargo run --example 01_conv_on_gpu
//!
//! Example output (lavapipe):
//!     segfeat: using adapter "llvmpipe (LLVM 15.0.6, 256 bits)" (Vulkan, Cpu); storage binding limit 128 MiB
//!     conv3x3: x (1, 2, 4, 5), w (3, 2, 3, 3), b (3) -> y [1, 3, 4, 5]
//!     y[0,0,:,:]      gpu (f32)        cpu (f64)
//!       [0, 0]      -0.57427   -0.57426875
//!       [0, 1]      -1.75271   -1.75270793
//!     ...
//!     largest |gpu - cpu| over all 60 outputs: 5.2e-7

#[path = "../kernels-tests/reference.rs"]
mod reference;

use rand::{Rng, SeedableRng};
use segfeat::{ops, Gpu, Tensor};

fn main() -> segfeat::Result<()> {
    let gpu = Gpu::new()?;
    let (n, cin, cout, h, w) = (1, 2, 3, 4, 5);
    // Seeded inputs, uniform in [-1, 1].
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut rand = |k: usize| {
        (0..k)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    let (x, wt, b) = (rand(n * cin * h * w), rand(cout * cin * 9), rand(cout));

    // GPU: upload, dispatch conv3x3_forward, read back.
    let y = ops::conv3x3::forward(
        &gpu,
        &Tensor::from_slice(&gpu, &[n, cin, h, w], &x)?,
        &Tensor::from_slice(&gpu, &[cout, cin, 3, 3], &wt)?,
        &Tensor::from_slice(&gpu, &[cout], &b)?,
    )?;
    let gpu_y = y.to_vec(&gpu);

    // CPU: the plain f64 loops every kernel test compares against.
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let cpu_y = reference::conv3x3(&f(&x), &f(&wt), &f(&b), n, cin, cout, h, w);

    println!(
        "conv3x3: x ({n}, {cin}, {h}, {w}), w ({cout}, {cin}, 3, 3), b ({cout}) -> y {:?}",
        y.shape()
    );
    println!("y[0,0,:,:]      gpu (f32)        cpu (f64)");
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            println!("  [{i}, {j}]  {:>12.5}  {:>12.8}", gpu_y[k], cpu_y[k]);
        }
    }
    let worst = gpu_y
        .iter()
        .zip(&cpu_y)
        .map(|(g, c)| (*g as f64 - c).abs())
        .fold(0.0, f64::max);
    println!(
        "largest |gpu - cpu| over all {} outputs: {worst:.1e}",
        gpu_y.len()
    );
    Ok(())
}
