//! A tiny graph on the autodiff tape, its gradients, and the finite-difference check.
//!
//!   loss = softmax_ce(conv1x1(elu(conv3x3(x, w1, b1)), w2, b2), labels)
//!
//! To run:
//!     cargo run --example 02_tape
//!
//! Example output (lavapipe):
//!     loss 0.6898  (tape recorded 4 nodes)
//!     param        |grad|_max   max |tape - finite difference|
//!     w1           0.0196       1.3e-5
//!     b1           0.0140       6.5e-6
//!     w2           0.0216       8.9e-6
//!     b2           0.0519       1.2e-6
//! Finite differences here are taken on the GPU in f32 with h = 1e-2, so agreement is to
//! about 1e-5; the kernel tests do the exact check against f64 references.

use segfeat::{ops, Gpu, Tape, Tensor};

fn main() -> segfeat::Result<()> {
    let gpu = Gpu::new()?;
    let (n, h, w, hidden, classes) = (2, 4, 4, 3, 2);
    let x: Vec<f32> = (0..n * h * w)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
        .collect();
    let labels: Vec<f32> = (0..n * h * w).map(|i| (i % classes) as f32).collect();
    let shapes = [
        vec![hidden, 1, 3, 3],
        vec![hidden],
        vec![classes, hidden, 1, 1],
        vec![classes],
    ];
    let names = ["w1", "b1", "w2", "b2"];
    let init: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            (0..s.iter().product())
                .map(|i| (((i * 13 + k * 5) % 17) as f32 - 8.0) / 20.0)
                .collect()
        })
        .collect();

    let x_t = Tensor::from_slice(&gpu, &[n, 1, h, w], &x)?;
    let labels_t = Tensor::from_slice(&gpu, &[n, h, w], &labels)?;
    let cw = Tensor::from_slice(&gpu, &[classes], &[1.0, 1.0])?;

    // The loss as a function of the parameter values, on a given tape.
    let loss_of =
        |tape: &Tape, p: &[Vec<f32>]| -> segfeat::Result<(segfeat::Var, Vec<segfeat::Var>)> {
            let vars = p
                .iter()
                .zip(&shapes)
                .map(|(v, s)| Ok(tape.param(&Tensor::from_slice(&gpu, s, v)?)))
                .collect::<segfeat::Result<Vec<_>>>()?;
            let xv = tape.constant(&x_t);
            let hid = ops::elu(tape, &ops::conv3x3(tape, &xv, &vars[0], &vars[1])?)?;
            let logits = ops::conv1x1(tape, &hid, &vars[2], &vars[3])?;
            Ok((ops::softmax_ce(tape, &logits, &labels_t, &cw)?, vars))
        };

    let tape = Tape::new(&gpu);
    let (loss, vars) = loss_of(&tape, &init)?;
    println!(
        "loss {:.4}  (tape recorded {} nodes)",
        loss.value.item(&gpu),
        tape.len()
    );
    let grads = tape.backward(&loss)?;

    println!("param        |grad|_max   max |tape - finite difference|");
    let eps = 1e-2f32;
    for (k, var) in vars.iter().enumerate() {
        let g = grads
            .get(var)
            .expect("every parameter reaches the loss")
            .to_vec(&gpu);
        let mut worst = 0.0f32;
        for i in 0..g.len() {
            let mut p = init.clone();
            p[k][i] += eps;
            let plus = tape.no_grad(|| loss_of(&tape, &p))?.0.value.item(&gpu);
            p[k][i] -= 2.0 * eps;
            let minus = tape.no_grad(|| loss_of(&tape, &p))?.0.value.item(&gpu);
            worst = worst.max(((plus - minus) / (2.0 * eps) - g[i]).abs());
        }
        let gmax = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!("{:<12} {gmax:<12.4} {worst:.1e}", names[k]);
    }
    Ok(())
}
