//! segfeat: disease detection from segmentation features (Wong et al., MICCAI 2017) on a
//! hand-written WGSL compute engine.
//!
//! How data flows through the engine:
//!
//! 1. [`Gpu`] opens an adapter (a real GPU first, else lavapipe) with its real limits.
//! 2. [`Tensor`]s are f32 NCHW arrays in pooled GPU buffers; uploads and readbacks are
//!    explicit, and readbacks happen only when asked.
//! 3. [`ops`] launch the WGSL kernels of `shaders/` (one file per op, forward and backward
//!    together) into one command encoder that is submitted when a result is needed.
//! 4. The [`Tape`] records, for ops on [`Var`]s, how to push gradients back; `backward`
//!    runs those rules newest first, and every backward kernel ADDS into its gradient.
//! 5. [`ops::Adam`] updates the parameters in place on the GPU.
//!
//! Above the engine: [`data`] makes and reads images on the CPU (the phantom, folders of
//! PNGs), [`nn`] holds the networks and their checkpoints, [`train`] the training loops and the
//! classifier's features, [`protocol`] the few-positive experiment and its reports.

pub mod data;
pub mod error;
pub mod gpu;
pub mod jsonl;
pub mod limits;
pub mod lock;
pub mod nn;
pub mod ops;
pub mod protocol;
pub mod tape;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use tape::{Grads, Tape, Var};
pub use tensor::Tensor;
