//! Adam (shaders/adam.wgsl): first and second moment per parameter, bias-corrected,
//! updated in place on the GPU. The step count t lives on the CPU; the bias corrections
//! 1 - b^t are computed there in f64 and passed in the uniform.

use super::{check_shape, u};
use crate::gpu::kernels::{k, Kernel};
use crate::{Error, Gpu, Grads, Result, Tensor, Var};

const STEP: Kernel = k("adam", "adam_step");
const STEP2: Kernel = k("adam", "adam_step2");

/// adam_step's uniform, field for field the WGSL `Params` of shaders/adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Elements updated.
    total: u32,
    /// The chunk's offset in its four bindings.
    off: u32,
    /// lr, b1, b2, eps, 1 - b1^t, 1 - b2^t.
    hyper: [f32; 6],
}

/// adam_step2's uniform, field for field the WGSL `Params2` of shaders/adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params2 {
    /// Elements of both parameters.
    total: u32,
    /// Elements of the first.
    n_a: u32,
    /// As in [`Params`].
    hyper: [f32; 6],
}
/// Adam's state for a fixed list of parameters.
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Steps taken so far.
    pub t: u64,
    /// (m, v) per parameter, in the order of the parameter list.
    pub moments: Vec<(Tensor, Tensor)>,
}

impl Adam {
    /// Zeroed moments for each parameter; the usual defaults b1 0.9, b2 0.999, eps 1e-8.
    pub fn new(gpu: &Gpu, params: &[&Tensor], lr: f32) -> Result<Adam> {
        let moments = params
            .iter()
            .map(|p| {
                Ok((
                    Tensor::zeros(gpu, p.shape())?,
                    Tensor::zeros(gpu, p.shape())?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            moments,
        })
    }

    /// One update of every parameter from its gradient (same order as in `new`).
    pub fn step(&mut self, gpu: &Gpu, params: &[&Tensor], grads: &[&Tensor]) -> Result<()> {
        if params.len() != self.moments.len() || grads.len() != params.len() {
            crate::bail!(
                "adam: {} parameters and {} gradients given, but the optimizer holds {}",
                params.len(),
                grads.len(),
                self.moments.len()
            );
        }
        self.t += 1;
        let bc1 = (1.0 - (self.beta1 as f64).powi(self.t as i32)) as f32;
        let bc2 = (1.0 - (self.beta2 as f64).powi(self.t as i32)) as f32;
        let h = [self.lr, self.beta1, self.beta2, self.eps, bc1, bc2];
        let all = params
            .iter()
            .zip(grads)
            .zip(&self.moments)
            .map(|((p, g), (m, v))| {
                check_shape(g, p.shape(), "adam gradient")?;
                check_shape(m, p.shape(), "adam moment")?;
                Ok([*p, *g, m, v])
            })
            .collect::<Result<Vec<_>>>()?;
        // Two parameters per dispatch (a layer's weight and bias, as the networks list
        // them): the small classifier's step is bound by its number of dispatches.
        for pair in all.chunks(2) {
            match pair {
                [a, b] => update_pair(gpu, a, b, h)?,
                [a] => update(gpu, a[0], a[1], a[2], a[3], h)?,
                _ => unreachable!("chunks(2) gives one or two"),
            }
        }
        Ok(())
    }

    /// One update of a network's named parameters from the gradients a backward pass left
    /// on their variables (`vars[i]` is the tape's view of `params[i]`).
    pub fn step_from_tape(
        &mut self,
        gpu: &Gpu,
        params: &[(String, Tensor)],
        vars: &[Var],
        grads: &Grads,
    ) -> Result<()> {
        let gs = vars
            .iter()
            .zip(params)
            .map(|(v, (name, _))| {
                grads
                    .get(v)
                    .ok_or_else(|| Error(format!("no gradient reached parameter {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let ps: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        self.step(gpu, &ps, &gs)
    }
}

/// One Adam update of `p` in place; `h` = [lr, b1, b2, eps, 1 - b1^t, 1 - b2^t].
pub fn update(
    gpu: &Gpu,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: [f32; 6],
) -> Result<()> {
    for (s, n) in gpu.chunks(p.numel(), &[1])? {
        // Four buffers of equal size chunked alike share one offset.
        let (bp, off) = gpu.bind(p, s, n);
        let (bg, _) = gpu.bind(g, s, n);
        let (bm, _) = gpu.bind(m, s, n);
        let (bv, _) = gpu.bind(v, s, n);
        let params = Params {
            total: u(n),
            off,
            hyper: h,
        };
        let bufs = [(1, bp), (2, bg), (3, bm), (4, bv)];
        gpu.dispatch(STEP, super::words(&params), &bufs, n)?;
    }
    Ok(())
}

/// One Adam update of two parameters, each given as [param, grad, m, v], in one dispatch
/// where both are bound whole (else one `update` each, which splits them).
pub fn update_pair(gpu: &Gpu, a: &[&Tensor; 4], b: &[&Tensor; 4], h: [f32; 6]) -> Result<()> {
    let (na, nb) = (a[0].numel(), b[0].numel());
    if (na.max(nb) as u64) * 4 > gpu.binding_limit() {
        update(gpu, a[0], a[1], a[2], a[3], h)?;
        return update(gpu, b[0], b[1], b[2], b[3], h);
    }
    let bufs = a
        .iter()
        .chain(b.iter())
        .enumerate()
        .map(|(k, t)| Ok((k as u32 + 1, gpu.whole(t, "adam parameter or state")?)))
        .collect::<Result<Vec<_>>>()?;
    let params = Params2 {
        total: u(na + nb),
        n_a: u(na),
        hyper: h,
    };
    gpu.dispatch(STEP2, super::words(&params), &bufs, na + nb)
}
