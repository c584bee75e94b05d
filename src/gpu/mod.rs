//! The GPU: adapter choice and limits (`device`), the buffer pool (`pool`), the one registry
//! of shader sources with its pipeline cache and the dispatch helper (`kernels`), and
//! independent trainings run several at a time on devices of their own (`jobs`).

pub mod ceilings;
pub mod device;
pub mod jobs;
pub mod kernels;
pub mod pool;

pub use crate::ops::conv3x3::{ConvTiling, GPU_ROWS_MIN_INVOCATIONS};
pub use device::{AdapterReport, Gpu, GpuOptions, GpuSpec};
pub use kernels::{Kernel, SHADERS};
