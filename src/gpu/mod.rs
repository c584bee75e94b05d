//! The GPU: adapter choice and limits (`device`), the buffer pool (`pool`), the one registry
//! of shader sources with its pipeline cache and the dispatch helper (`kernels`).

pub mod ceilings;
pub mod device;
pub mod kernels;
pub mod pool;

pub use device::{AdapterReport, ConvTiling, Gpu, GpuOptions, GpuSpec, GPU_ROWS_MIN_INVOCATIONS};
pub use kernels::{Kernel, SHADERS};
