//! The reverse-mode autodiff tape, micrograd-sized.
//!
//! An op on [`Var`]s computes its output with GPU kernels and, when one of its inputs
//! requires a gradient and recording is on, pushes a `Node`: the id of its output and a
//! closure that, given the output's gradient `dy`, ADDS each input's gradient into the
//! [`Grads`] slot of that input. [`Tape::backward`] walks the nodes newest first, so a
//! node runs only after every use of its output has added its share to `dy` (a tensor
//! used twice, as by the U-Net's skip connections, receives the sum). Each node, with the
//! tensors its closure captured, and its output's gradient are dropped as soon as it has
//! run, which returns their buffers to the pool.
//!
//! The tape knows nothing of WGSL: closures call the ops' launchers.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::gpu::Gpu;
use crate::tensor::Tensor;
use crate::{bail, Result};

/// A tensor as the tape sees it: a value, and an id under which its gradient is kept.
#[derive(Clone, Debug)]
pub struct Var {
    id: usize,
    pub value: Tensor,
    requires_grad: bool,
}

impl Var {
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}

type BackwardFn = Box<dyn FnOnce(&Gpu, &Tensor, &mut Grads) -> Result<()>>;

struct Node {
    output: usize,
    backward: BackwardFn,
}

struct State {
    next_id: usize,
    nodes: Vec<Node>,
    grad_enabled: bool,
}

pub struct Tape {
    gpu: Gpu,
    state: RefCell<State>,
}

/// Gradients by variable id, filled by [`Tape::backward`]. After backward it holds the
/// gradients of the leaves that require them (the parameters).
pub struct Grads {
    gpu: Gpu,
    map: HashMap<usize, Tensor>,
}

impl Grads {
    /// The gradient of `v`, if anything reached it.
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.map.get(&v.id)
    }

    /// The gradient buffer of variable `id`, created as zeros on first use, into which a
    /// backward kernel adds its contribution.
    pub fn slot(&mut self, id: usize, shape: &[usize]) -> Result<Tensor> {
        if let Some(t) = self.map.get(&id) {
            return Ok(t.clone());
        }
        let t = Tensor::zeros(&self.gpu, shape)?;
        self.map.insert(id, t.clone());
        Ok(t)
    }
}

impl Tape {
    pub fn new(gpu: &Gpu) -> Tape {
        Tape {
            gpu: gpu.clone(),
            state: RefCell::new(State {
                next_id: 0,
                nodes: Vec::new(),
                grad_enabled: true,
            }),
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn fresh_id(&self) -> usize {
        let mut s = self.state.borrow_mut();
        s.next_id += 1;
        s.next_id
    }

    /// A leaf that requires a gradient (a parameter).
    pub fn param(&self, t: &Tensor) -> Var {
        Var {
            id: self.fresh_id(),
            value: t.clone(),
            requires_grad: true,
        }
    }

    /// A leaf without gradient (an input image, frozen weights).
    pub fn constant(&self, t: &Tensor) -> Var {
        Var {
            id: self.fresh_id(),
            value: t.clone(),
            requires_grad: false,
        }
    }

    /// Leaves for a network's parameters: [`Tape::param`]s when `trainable`, else
    /// [`Tape::constant`]s (frozen weights).
    pub fn leaves<'a>(
        &self,
        tensors: impl IntoIterator<Item = &'a Tensor>,
        trainable: bool,
    ) -> Vec<Var> {
        tensors
            .into_iter()
            .map(|t| {
                if trainable {
                    self.param(t)
                } else {
                    self.constant(t)
                }
            })
            .collect()
    }

    /// False inside [`Tape::no_grad`]: ops record nothing, so they need not prepare for a
    /// backward pass.
    pub fn is_recording(&self) -> bool {
        self.state.borrow().grad_enabled
    }

    /// Run `f` with recording off: ops compute values only (inference, feature extraction).
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = std::mem::replace(&mut self.state.borrow_mut().grad_enabled, false);
        let r = f();
        self.state.borrow_mut().grad_enabled = before;
        r
    }

    /// Nodes recorded and not yet consumed by backward.
    pub fn len(&self) -> usize {
        self.state.borrow().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every recorded node (a forward pass that will not be differentiated).
    pub fn clear(&self) {
        self.state.borrow_mut().nodes.clear();
    }

    /// Wrap an op's output; record `backward` if any input requires a gradient.
    pub fn record(
        &self,
        value: Tensor,
        inputs: &[&Var],
        backward: impl FnOnce(&Gpu, &Tensor, &mut Grads) -> Result<()> + 'static,
    ) -> Var {
        let id = self.fresh_id();
        let mut s = self.state.borrow_mut();
        let requires_grad = s.grad_enabled && inputs.iter().any(|v| v.requires_grad);
        if requires_grad {
            s.nodes.push(Node {
                output: id,
                backward: Box::new(backward),
            });
        }
        Var {
            id,
            value,
            requires_grad,
        }
    }

    /// Back-propagate from `loss` (seeded with ones): run every recorded node, newest
    /// first, and return the leaves' gradients. The tape is empty afterwards.
    pub fn backward(&self, loss: &Var) -> Result<Grads> {
        if !loss.requires_grad {
            bail!("backward from a value that does not depend on any parameter (was it computed under no_grad?)");
        }
        let mut grads = Grads {
            gpu: self.gpu.clone(),
            map: HashMap::new(),
        };
        let seed = grads.slot(loss.id, loss.shape())?;
        crate::ops::elementwise::fill(&self.gpu, &seed, 1.0)?;
        let nodes = std::mem::take(&mut self.state.borrow_mut().nodes);
        for node in nodes.into_iter().rev() {
            // Every consumer of this output is newer, so its gradient is complete now.
            let Some(dy) = grads.map.remove(&node.output) else {
                continue; // the loss does not depend on this node
            };
            (node.backward)(&self.gpu, &dy, &mut grads)?;
        }
        Ok(grads)
    }
}
