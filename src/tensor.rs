//! Tensor: an f32 array in NCHW layout (row-major, last index fastest) living in a pooled
//! GPU buffer. Cloning a Tensor shares the buffer; the buffer goes back to the pool when
//! the last clone is dropped. Data crosses to the CPU only through [`Tensor::to_vec`],
//! which waits for the GPU: call it for logging and metrics, never inside a step.

use std::rc::Rc;

use crate::gpu::pool::PooledBuffer;
use crate::gpu::Gpu;
use crate::{bail, Result};

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    buf: Rc<PooledBuffer>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor whose contents are left as the pool hands them over (to be overwritten).
    pub fn uninit(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let n = numel_of(shape);
        if n == 0 {
            bail!("cannot make a tensor of shape {shape:?}: it has no elements");
        }
        let bytes = n as u64 * 4;
        let max = gpu.inner.device.limits().max_buffer_size;
        if bytes > max {
            bail!("a tensor of shape {shape:?} needs {bytes} bytes, more than this adapter's largest buffer ({max} bytes)");
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            buf: Rc::new(gpu.alloc(bytes)),
        })
    }

    /// A tensor of zeros (a `clear_buffer` command, ordered with the dispatches).
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::uninit(gpu, shape)?;
        gpu.with_encoder(|enc| enc.clear_buffer(t.buffer(), 0, Some(t.numel() as u64 * 4)));
        Ok(t)
    }

    /// Upload `data` (row-major, `shape`'s element count) to a new tensor.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        if numel_of(shape) != data.len() {
            bail!(
                "shape {shape:?} holds {} elements but {} values were given",
                numel_of(shape),
                data.len()
            );
        }
        let t = Tensor::uninit(gpu, shape)?;
        // A staging buffer written at creation, copied by a command recorded in order with
        // the dispatches (Queue::write_buffer would run before commands already recorded).
        let staging = gpu.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: data.len() as u64 * 4,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        staging
            .slice(..)
            .get_mapped_range_mut()
            .expect("a buffer mapped at creation can be written")
            .copy_from_slice(bytemuck::cast_slice(data));
        staging.unmap();
        gpu.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(&staging, 0, t.buffer(), 0, data.len() as u64 * 4)
        });
        Ok(t)
    }

    /// Copy the tensor back to the CPU, waiting for every recorded command.
    pub fn to_vec(&self, gpu: &Gpu) -> Vec<f32> {
        let bytes = self.numel() as u64 * 4;
        let staging = gpu.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.with_encoder(|enc| enc.copy_buffer_to_buffer(self.buffer(), 0, &staging, 0, bytes));
        gpu.flush();
        staging.slice(..).map_async(wgpu::MapMode::Read, |r| {
            r.expect("mapping a readback buffer cannot fail on a live device")
        });
        let _ = gpu.inner.device.poll(wgpu::PollType::wait_indefinitely());
        let view = staging
            .slice(..)
            .get_mapped_range()
            .expect("a mapped readback buffer can be read");
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        staging.unmap();
        out
    }

    /// The one value of a single-element tensor (a loss), read back.
    pub fn item(&self, gpu: &Gpu) -> f32 {
        self.to_vec(gpu)[0]
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        numel_of(&self.shape)
    }

    /// The same buffer seen with another shape of the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape) != self.numel() {
            bail!(
                "cannot reshape {:?} to {shape:?}: element counts differ",
                self.shape
            );
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            buf: self.buf.clone(),
        })
    }

    /// Whether two tensors share one buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.buf, &other.buf)
    }

    /// The GPU buffer behind the tensor (it may be larger than the tensor: sizes are
    /// rounded up to 256 bytes). For benchmarks and interop; ops go through launchers.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }

    /// Shape as (N, C, H, W), with an error naming `what` if it is not 4-D.
    pub fn nchw(&self, what: &str) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => bail!(
                "{what} must be 4-D (N, C, H, W), got shape {:?}",
                self.shape
            ),
        }
    }

    /// Shape as (N, C, D, H, W), with an error naming `what` if it is not 5-D.
    pub fn ncdhw(&self, what: &str) -> Result<(usize, usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, d, h, w] => Ok((n, c, d, h, w)),
            _ => bail!(
                "{what} must be 5-D (N, C, D, H, W), got shape {:?}",
                self.shape
            ),
        }
    }
}
