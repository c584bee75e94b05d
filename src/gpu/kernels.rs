//! The one registry of shader sources (used by the engine and by the tests, so tests
//! exercise the production WGSL), the pipeline cache, and the dispatch helper.
//!
//! Two hardware rules every launcher follows through the helpers here:
//! - No dispatch exceeds the adapter's workgroups-per-dimension limit (65,535 in
//!   practice): `Gpu::dispatch` folds a long 1-D launch into a 2-D or 3-D grid, and the
//!   WGSL prelude's `flat_id` unfolds it.
//! - No binding exceeds the storage-binding limit: a launcher splits a large tensor into
//!   chunks (`Gpu::chunks`) and binds each chunk's byte range (`Gpu::bind`). Binding
//!   offsets must be multiples of the adapter's alignment (256 bytes at most), so the
//!   range starts at the aligned address just below the chunk and the kernel receives the
//!   chunk's element offset inside the binding (the `off_*` fields of each `Params`).

use std::rc::Rc;

use super::Gpu;
use crate::tensor::Tensor;
use crate::{bail, Result};

/// Invocations per workgroup of every 1-D kernel (a multiple of 64, the common SIMD
/// width; on lavapipe a workgroup is one CPU thread's loop, so larger buys nothing).
pub const WG: u64 = 64;

/// Joined onto every shader (WGSL has no `#include`).
pub const PRELUDE: &str = "\
// ---- prelude (src/gpu/kernels.rs) ----
// The launcher folds a 1-D launch of ceil(total/64) workgroups into a grid whose every
// dimension stays under the adapter's limit; this recovers the flat invocation index.
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return ((wid.z * nwg.y + wid.y) * nwg.x + wid.x) * 64u + lid;
}
// ---- end of prelude ----
";

/// Every shader file in `shaders/`, by name.
pub static SHADERS: &[(&str, &str)] = &[
    ("adam", include_str!("../../shaders/adam.wgsl")),
    ("batchnorm", include_str!("../../shaders/batchnorm.wgsl")),
    ("ceilings", include_str!("../../shaders/ceilings.wgsl")),
    ("concat", include_str!("../../shaders/concat.wgsl")),
    ("conv1x1", include_str!("../../shaders/conv1x1.wgsl")),
    ("conv3x3", include_str!("../../shaders/conv3x3.wgsl")),
    ("conv3x3x3", include_str!("../../shaders/conv3x3x3.wgsl")),
    (
        "conv3x3_subgroup",
        include_str!("../../shaders/conv3x3_subgroup.wgsl"),
    ),
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
    ),
    ("dropout", include_str!("../../shaders/dropout.wgsl")),
    ("elu", include_str!("../../shaders/elu.wgsl")),
    ("gap", include_str!("../../shaders/gap.wgsl")),
    ("leaky_relu", include_str!("../../shaders/leaky_relu.wgsl")),
    ("linear", include_str!("../../shaders/linear.wgsl")),
    ("maxpool2", include_str!("../../shaders/maxpool2.wgsl")),
    ("pool3d", include_str!("../../shaders/pool3d.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("relu", include_str!("../../shaders/relu.wgsl")),
    ("softmax_ce", include_str!("../../shaders/softmax_ce.wgsl")),
    ("upsample2", include_str!("../../shaders/upsample2.wgsl")),
];

/// Shaders that extend another one (WGSL has no `#include`): (shader, the shader whose
/// declarations it uses). conv3x3_subgroup uses subgroup built-ins, which naga 30 takes
/// without an `enable` directive (it rejects `enable subgroups;`) but which compile
/// only on a device opened with wgpu's SUBGROUP feature (see [`Gpu::has_subgroups`]).
pub const EXTENSIONS: &[(&str, &str)] = &[("conv3x3_subgroup", "conv3x3")];

/// The full source of a shader as the device compiles it: prelude + file, or for an
/// extension (see [`EXTENSIONS`]) prelude + the file it extends + its own file.
pub fn source(shader: &str) -> Option<String> {
    let file = |name: &str| SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    let own = file(shader)?;
    Some(match EXTENSIONS.iter().find(|(n, _)| *n == shader) {
        Some((_, base)) => format!("{PRELUDE}{}{own}", file(base)?),
        None => format!("{PRELUDE}{own}"),
    })
}

/// One entry point of one shader file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub shader: &'static str,
    pub entry: &'static str,
}

pub const fn k(shader: &'static str, entry: &'static str) -> Kernel {
    Kernel { shader, entry }
}

/// A byte range of a buffer to bind as one storage binding.
pub struct Slice<'a> {
    buf: &'a wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl Gpu {
    fn pipeline(&self, kernel: Kernel) -> Rc<wgpu::ComputePipeline> {
        if let Some(p) = self.inner.pipelines.borrow().get(kernel.entry) {
            return p.clone();
        }
        let dev = &self.inner.device;
        let mut modules = self.inner.modules.borrow_mut();
        let module = modules.entry(kernel.shader).or_insert_with(|| {
            let src = source(kernel.shader).expect("kernel names a registered shader");
            dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        });
        let p = Rc::new(
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: None, // derived from the entry point's own bindings
                module,
                entry_point: Some(kernel.entry),
                compilation_options: Default::default(),
                cache: None,
            }),
        );
        self.inner
            .pipelines
            .borrow_mut()
            .insert(kernel.entry, p.clone());
        p
    }

    /// Bind elements `start .. start+len` of `t`: the slice to bind, and the element offset
    /// of `start` inside it (to pass in the kernel's params).
    pub(crate) fn bind<'a>(&self, t: &'a Tensor, start: usize, len: usize) -> (Slice<'a>, u32) {
        let a = self.inner.alignment;
        let b0 = start as u64 * 4;
        let aligned = b0 / a * a;
        let size = b0 + len as u64 * 4 - aligned;
        debug_assert!(
            size <= self.inner.binding_limit,
            "chunking keeps bindings under the limit"
        );
        let slice = Slice {
            buf: t.buffer(),
            offset: aligned,
            size,
        };
        (slice, ((b0 - aligned) / 4) as u32)
    }

    /// Bind a whole tensor (it must fit one binding).
    pub(crate) fn whole<'a>(&self, t: &'a Tensor, what: &str) -> Result<Slice<'a>> {
        let size = t.numel() as u64 * 4;
        if size > self.inner.binding_limit {
            bail!(
                "{what} of shape {:?} ({size} bytes) exceeds this adapter's storage binding limit of {} bytes and cannot be split here",
                t.shape(),
                self.inner.binding_limit
            );
        }
        Ok(Slice {
            buf: t.buffer(),
            offset: 0,
            size,
        })
    }

    /// Split `n` items (samples, rows, elements) into chunks `(first, count)` such that,
    /// for every buffer whose item holds `per_item[k]` elements, one chunk fits one binding
    /// even when its start has to be aligned down.
    pub(crate) fn chunks(&self, n: usize, per_item: &[usize]) -> Result<Vec<(usize, usize)>> {
        let limit = self.inner.binding_limit;
        if per_item.iter().all(|&e| (n * e) as u64 * 4 <= limit) {
            return Ok(vec![(0, n)]);
        }
        let slack = self.inner.alignment - 4;
        let mut per_chunk = n;
        for &e in per_item {
            let bytes = e as u64 * 4;
            if bytes + slack > limit {
                bail!(
                    "one item of {bytes} bytes (plus {slack} bytes of alignment) exceeds this adapter's storage binding limit of {limit} bytes"
                );
            }
            per_chunk = per_chunk.min(((limit - slack) / bytes.max(1)) as usize);
        }
        Ok((0..n)
            .step_by(per_chunk)
            .map(|s| (s, per_chunk.min(n - s)))
            .collect())
    }

    /// Record one dispatch of `kernel` with `invocations` threads (a 1-D launch folded into
    /// a grid under the per-dimension limit), its params as a uniform at binding 0 and
    /// each `(binding, slice)` of `bufs` at its binding (as the WGSL declares it).
    pub(crate) fn dispatch(
        &self,
        kernel: Kernel,
        params: &[u32],
        bufs: &[(u32, Slice)],
        invocations: usize,
    ) -> Result<()> {
        if invocations == 0 {
            return Ok(());
        }
        if invocations as u64 > u32::MAX as u64 {
            bail!(
                "{} needs {invocations} invocations, more than 2^32 - 1: split the batch",
                kernel.entry
            );
        }
        let t_record = std::time::Instant::now();
        let (x, y, z) = self.grid(invocations as u64)?;
        let pipeline = self.pipeline(kernel);
        let dev = &self.inner.device;
        let mut bytes: Vec<u32> = params.to_vec();
        bytes.resize(params.len().div_ceil(4).max(1) * 4, 0);
        let ubytes: &[u8] = bytemuck::cast_slice(&bytes);
        let (uniform, uoff) =
            self.inner
                .uniforms
                .borrow_mut()
                .slot(dev, ubytes, self.inner.uniform_alignment);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniform,
                offset: uoff,
                size: wgpu::BufferSize::new(ubytes.len() as u64),
            }),
        }];
        for (binding, s) in bufs {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: s.buf,
                    offset: s.offset,
                    size: wgpu::BufferSize::new(s.size),
                }),
            });
        }
        let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let record = |pass: &mut wgpu::ComputePass<'_>| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        };
        if let Some(timer) = &self.inner.timer {
            // Profiling with timestamps: finish what came before, then this dispatch alone
            // in a pass whose start and end the GPU stamps.
            self.sync();
            self.with_encoder_no_pass(|enc| {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.entry),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &timer.queries,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
                });
                record(&mut pass);
                drop(pass);
                enc.resolve_query_set(&timer.queries, 0..2, &timer.resolve, 0);
                enc.copy_buffer_to_buffer(&timer.resolve, 0, &timer.readback, 0, 16);
            });
        } else {
            self.with_pass(record);
        }
        self.inner.dispatches.set(self.inner.dispatches.get() + 1);
        let recorded = self.inner.record_seconds.get() + t_record.elapsed().as_secs_f64();
        self.inner.record_seconds.set(recorded);
        if let Some(profile) = &self.inner.profile {
            // Without timestamps, everything recorded before this dispatch was waited for
            // by the previous one (or is an upload, counted here too).
            let t0 = std::time::Instant::now();
            self.sync();
            let secs = match &self.inner.timer {
                Some(timer) => self.read_timer(timer),
                None => t0.elapsed().as_secs_f64(),
            };
            let mut p = profile.borrow_mut();
            let key = if self.inner.profile_shapes {
                format!(
                    "{} ({invocations} invocations, uniform {params:?})",
                    kernel.entry
                )
            } else {
                kernel.entry.to_string()
            };
            let e = p.entry(key).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += secs;
            return Ok(());
        }
        let pending = self.inner.pending.get() + 1;
        self.inner.pending.set(pending);
        // Bound the size of one command buffer; order is kept across submits.
        if pending >= 4096 {
            self.flush();
        }
        Ok(())
    }

    /// Seconds between the two timestamps of the last profiled dispatch (submitted and
    /// waited for): map the readback buffer, read both ticks, scale by the tick period.
    fn read_timer(&self, timer: &super::device::GpuTimer) -> f64 {
        let slice = timer.readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |r| {
            r.expect("mapping the timestamp readback cannot fail on a live device")
        });
        let _ = self.inner.device.poll(wgpu::PollType::wait_indefinitely());
        let ticks: [u64; 2] = {
            let view = slice
                .get_mapped_range()
                .expect("a mapped timestamp readback can be read");
            let t: &[u64] = bytemuck::cast_slice(&view);
            [t[0], t[1]]
        };
        timer.readback.unmap();
        ticks[1].saturating_sub(ticks[0]) as f64 * timer.period_ns * 1e-9
    }

    /// Fold ceil(invocations / WG) workgroups into (x, y, z), each <= the adapter's limit.
    pub(crate) fn grid(&self, invocations: u64) -> Result<(u32, u32, u32)> {
        let max = self.inner.max_workgroups.min(65_535) as u64;
        let groups = invocations.div_ceil(WG);
        let x = groups.min(max);
        let rest = groups.div_ceil(x);
        let y = rest.min(max);
        let z = rest.div_ceil(y);
        if z > max {
            bail!("a dispatch of {invocations} invocations does not fit the workgroup grid");
        }
        Ok((x as u32, y as u32, z as u32))
    }
}
