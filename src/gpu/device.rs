//! The device: which adapter we run on, with which limits, and the command encoder that
//! collects dispatches until someone needs a result.
//!
//! Adapter choice: a real GPU first (discrete, then integrated, then virtual), else the CPU
//! software adapter (lavapipe). `SEGFEAT_ADAPTER=<substring>` picks by name and
//! `WGPU_BACKEND=vulkan|metal|dx12` restricts the backends (wgpu reads it). We request the
//! adapter's real limits, not wgpu's conservative defaults, because storage bindings of
//! 128 MiB (wgpu's default) are too small for the paper's VGG activations.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::pool::{self, PoolState, PooledBuffer};
use crate::ops::conv3x3::ConvTiling;
use crate::{bail, Result};

/// How to reach a software adapter when there is none; shown in every "no adapter" error.
pub const NO_ADAPTER_HELP: &str = "no GPU adapter found: install a Vulkan driver, for instance the software adapter lavapipe with `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu), or unset SEGFEAT_ADAPTER / WGPU_BACKEND if they exclude every adapter";

/// Knobs for [`Gpu::with_options`]; `Default` is what the CLI uses.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Lower the storage-binding limit on purpose (bytes), so that tests exercise the path
    /// that splits dispatches of tensors larger than one binding with small tensors.
    pub max_binding_bytes: Option<u64>,
    /// Do not print the chosen adapter on stderr.
    pub quiet: bool,
    /// Wait for every dispatch and add its time to a per-kernel table ([`Gpu::profile`]):
    /// the GPU's own, from timestamps, where the adapter has timestamp queries, else the
    /// wall time of its submit and wait ([`Gpu::profile_clock`]). Slow, for finding where
    /// a step's time goes. The environment variable SEGFEAT_PROFILE=1 turns it on too.
    pub profile: bool,
    /// Profile each (entry point, launch) apart: the table's rows then name the number of
    /// invocations and the uniform's words (the kernel's `Params`, which hold the shape),
    /// so that one kernel's time splits by layer. SEGFEAT_PROFILE=shapes turns on both.
    pub profile_shapes: bool,
}

/// Buffers holding the dispatches' uniforms, written through their mapping at creation:
/// one buffer creation per `UNIFORM_CHUNK` bytes of params instead of one per dispatch.
/// A buffer is filled slot by slot, and every buffer used since the last submit is
/// unmapped just before it (a mapped buffer cannot be used by a submitted command);
/// submitted buffers are never written again.
#[derive(Default)]
pub struct UniformArena {
    /// The buffer being filled and the next free byte in it.
    current: Option<(wgpu::Buffer, u64)>,
    /// Buffers filled since the last submit, still mapped.
    full: Vec<wgpu::Buffer>,
}

/// Bytes per uniform arena buffer.
const UNIFORM_CHUNK: u64 = 64 << 10;

impl UniformArena {
    /// Copy `bytes` into a free slot starting at a multiple of `align`: the buffer and the
    /// slot's offset.
    pub fn slot(&mut self, device: &wgpu::Device, bytes: &[u8], align: u64) -> (wgpu::Buffer, u64) {
        let len = bytes.len() as u64;
        let fits = |used: u64| used.div_ceil(align) * align + len <= UNIFORM_CHUNK;
        if !self.current.as_ref().is_some_and(|(_, used)| fits(*used)) {
            if let Some((full, _)) = self.current.take() {
                self.full.push(full);
            }
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("uniforms"),
                size: UNIFORM_CHUNK.max(len),
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            self.current = Some((buffer, 0));
        }
        let (buffer, used) = self
            .current
            .as_mut()
            .expect("a buffer with room was just made");
        let at = used.div_ceil(align) * align;
        buffer
            .slice(at..at + len)
            .get_mapped_range_mut()
            .expect("the arena buffer is mapped until the next submit")
            .copy_from_slice(bytes);
        *used = at + len;
        (buffer.clone(), at)
    }

    /// Unmap every buffer written since the last submit; the next slot starts a new one.
    pub fn unmap_all(&mut self) {
        if let Some((b, _)) = self.current.take() {
            self.full.push(b);
        }
        for b in self.full.drain(..) {
            b.unmap();
        }
    }
}

/// One adapter as `segfeat info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub limits: wgpu::Limits,
    /// Whether the adapter offers wgpu's SUBGROUP feature, and its subgroup sizes.
    pub subgroups: bool,
    pub subgroup_sizes: (u32, u32),
}

impl AdapterReport {
    fn of(a: &wgpu::Adapter) -> Self {
        let info = a.get_info();
        AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            limits: a.limits(),
            subgroups: a.features().contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }
}

/// The GPU every tensor and op lives on. Cheap to clone (shared).
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Rc<GpuInner>,
}

pub(crate) struct GpuInner {
    /// What it was opened with (for [`Gpu::spec`]).
    pub opts: GpuOptions,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterReport,
    /// The largest byte range one storage binding may cover (possibly lowered on purpose).
    pub binding_limit: u64,
    /// Storage binding offsets must be multiples of this (bytes).
    pub alignment: u64,
    /// Where uniform slots may start: the adapter's min_uniform_buffer_offset_alignment,
    /// at least wgpu::MAP_ALIGNMENT.
    pub uniform_alignment: u64,
    /// The uniform arena: every dispatch's params in slots of shared buffers mapped at
    /// creation, unmapped at the next submit (see `UniformArena::slot`).
    pub uniforms: RefCell<UniformArena>,
    pub max_workgroups: u32,
    pub pool: Rc<RefCell<PoolState>>,
    pub modules: RefCell<HashMap<&'static str, wgpu::ShaderModule>>,
    pub pipelines: RefCell<HashMap<&'static str, Rc<wgpu::ComputePipeline>>>,
    /// The compute pass open on `encoder`, which consecutive dispatches share (a pass per
    /// dispatch cost lavapipe 45 to 90 us each, one shared pass 18: wgpu still orders the
    /// dispatches inside it). Ended before any other command is recorded and before the
    /// encoder is finished; declared first, so that it is dropped (ended) first.
    pub pass: RefCell<Option<wgpu::ComputePass<'static>>>,
    pub encoder: RefCell<Option<wgpu::CommandEncoder>>,
    /// Whether the device was opened with wgpu's SUBGROUP feature.
    pub subgroups: bool,
    pub pending: Cell<u32>,
    pub dispatches: Cell<u64>,
    pub conv_tiling: Cell<ConvTiling>,
    /// CPU seconds spent recording dispatches (uniform, bind group, pass) so far.
    pub record_seconds: Cell<f64>,
    /// Per entry point (or entry point and launch, with `profile_shapes`): (dispatches,
    /// seconds), when profiling.
    pub profile: Option<RefCell<HashMap<String, (u64, f64)>>>,
    pub profile_shapes: bool,
    /// When profiling on an adapter with timestamp queries: each profiled dispatch runs in
    /// a pass of its own whose start and end the GPU stamps, so the profile holds the
    /// kernel's own time and not the submit-and-wait around it (about 0.45 ms on a VM's
    /// H200, longer than most kernels there).
    pub timer: Option<GpuTimer>,
}

/// Two timestamp queries and the buffers that bring them back (see `GpuInner::timer`).
pub struct GpuTimer {
    pub queries: wgpu::QuerySet,
    /// Where the queries resolve (QUERY_RESOLVE), then copied to `readback` (MAP_READ).
    pub resolve: wgpu::Buffer,
    pub readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick (`Queue::get_timestamp_period`).
    pub period_ns: f64,
}

impl GpuTimer {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> GpuTimer {
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 2 * wgpu::QUERY_SIZE as u64,
                usage,
                mapped_at_creation: false,
            })
        };
        GpuTimer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("segfeat profile timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer(
                "segfeat timestamps resolved",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "segfeat timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period_ns: queue.get_timestamp_period() as f64,
        }
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn all_adapters(inst: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(inst.enumerate_adapters(backends))
}

/// Every adapter wgpu can see, and the index of the one [`Gpu::new`] would choose.
pub fn list_adapters() -> (Vec<AdapterReport>, Option<usize>) {
    let inst = instance();
    let adapters = all_adapters(&inst);
    let chosen = choose(&adapters);
    (adapters.iter().map(AdapterReport::of).collect(), chosen)
}

fn choose(adapters: &[wgpu::Adapter]) -> Option<usize> {
    let wanted = std::env::var("SEGFEAT_ADAPTER")
        .ok()
        .map(|s| s.to_lowercase());
    adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let name = a.get_info().name.to_lowercase();
            wanted.as_ref().is_none_or(|w| name.contains(w.as_str()))
        })
        .min_by_key(|(i, a)| (rank(a.get_info().device_type), *i))
        .map(|(i, _)| i)
}

/// What [`Gpu::spec`] returns: sent to another thread, it opens a device there.
#[derive(Clone, Debug)]
pub struct GpuSpec {
    opts: GpuOptions,
    tiling: ConvTiling,
}

impl GpuSpec {
    /// Open another device on the same adapter (quietly), with the same conv3x3 tile.
    pub fn open(&self) -> Result<Gpu> {
        let gpu = Gpu::with_options(GpuOptions {
            quiet: true,
            ..self.opts.clone()
        })?;
        gpu.set_conv_tiling(self.tiling)?;
        Ok(gpu)
    }
}

impl Gpu {
    /// Open the preferred adapter (see the module docs), saying on stderr which one.
    pub fn new() -> Result<Gpu> {
        Gpu::with_options(GpuOptions::default())
    }

    pub fn with_options(opts: GpuOptions) -> Result<Gpu> {
        let inst = instance();
        let adapters = all_adapters(&inst);
        let Some(i) = choose(&adapters) else {
            if let (Ok(wanted), false) = (std::env::var("SEGFEAT_ADAPTER"), adapters.is_empty()) {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                bail!(
                    "SEGFEAT_ADAPTER='{wanted}' matches none of the adapters found ({}): name part of one of them, or unset it",
                    names.join(", ")
                );
            }
            bail!("{NO_ADAPTER_HELP}");
        };
        let adapter = &adapters[i];
        let report = AdapterReport::of(adapter);
        let limits = adapter.limits();
        // Subgroups serve one kernel, on CPU adapters (see ConvTiling); ask for them there.
        let subgroups = report.subgroups && report.device_type == "Cpu";
        let env_profile = std::env::var("SEGFEAT_PROFILE");
        let shapes = opts.profile_shapes || env_profile.as_deref() == Ok("shapes");
        let profile = opts.profile || shapes || env_profile.as_deref() == Ok("1");
        // Timestamps time each profiled dispatch on the GPU's clock, where the adapter has them.
        let timestamps = profile && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("segfeat"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = match pollster::block_on(adapter.request_device(&desc)) {
            Ok(dq) => dq,
            Err(e) => bail!(
                "could not open adapter {} ({}): {e}",
                report.name,
                report.backend
            ),
        };
        let mut binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(b) = opts.max_binding_bytes {
            binding_limit = binding_limit.min(b);
        }
        let alignment = limits.min_storage_buffer_offset_alignment as u64;
        if binding_limit < 2 * alignment {
            bail!("storage binding limit of {binding_limit} bytes is below twice the offset alignment ({alignment} bytes)");
        }
        if !opts.quiet {
            eprintln!(
                "segfeat: using adapter \"{}\" ({}, {}); storage binding limit {} MiB",
                report.name,
                report.backend,
                report.device_type,
                binding_limit >> 20
            );
        }
        let timer = timestamps.then(|| GpuTimer::new(&device, &queue));
        Ok(Gpu {
            inner: Rc::new(GpuInner {
                opts,
                device,
                queue,
                binding_limit,
                alignment,
                // Slots are written through the mapping, whose ranges start at multiples of
                // MAP_ALIGNMENT too.
                uniform_alignment: (limits.min_uniform_buffer_offset_alignment as u64)
                    .max(wgpu::MAP_ALIGNMENT),
                uniforms: RefCell::new(UniformArena::default()),
                max_workgroups: limits.max_compute_workgroups_per_dimension,
                pool: Rc::new(RefCell::new(PoolState::default())),
                modules: RefCell::new(HashMap::new()),
                pipelines: RefCell::new(HashMap::new()),
                pass: RefCell::new(None),
                encoder: RefCell::new(None),
                subgroups,
                pending: Cell::new(0),
                dispatches: Cell::new(0),
                record_seconds: Cell::new(0.0),
                conv_tiling: Cell::new(ConvTiling::default_for(&report, subgroups)),
                adapter: report,
                profile: profile.then(|| RefCell::new(HashMap::new())),
                profile_shapes: shapes,
                timer,
            }),
        })
    }

    pub fn adapter(&self) -> &AdapterReport {
        &self.inner.adapter
    }

    /// "name (backend, type), driver ...": the line benchmarks print.
    pub fn describe(&self) -> String {
        let a = &self.inner.adapter;
        format!(
            "{} ({}, {}), driver {}",
            a.name, a.backend, a.device_type, a.driver
        )
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// True on the CPU software adapter (lavapipe).
    pub fn is_cpu(&self) -> bool {
        self.inner.adapter.device_type == "Cpu"
    }

    /// How to open another Gpu like this one on another thread (a Gpu stays on the thread
    /// that opened it): the same adapter, options and conv3x3 tile, so that it computes
    /// the same bits.
    pub fn spec(&self) -> GpuSpec {
        GpuSpec {
            opts: self.inner.opts.clone(),
            tiling: self.conv_tiling(),
        }
    }

    /// The conv3x3 tile this adapter uses (see [`ConvTiling`]).
    pub fn conv_tiling(&self) -> ConvTiling {
        self.inner.conv_tiling.get()
    }

    /// Use another conv3x3 tile from now on: for tests that check each on one adapter,
    /// and benches that compare them. The subgroup tile needs a device with subgroups.
    pub fn set_conv_tiling(&self, t: ConvTiling) -> Result<()> {
        if t == ConvTiling::RowsSubgroup && !self.has_subgroups() {
            bail!(
                "the conv3x3 tile rows_subgroup needs subgroups, which adapter \"{}\" was not opened with (segfeat asks for them on CPU adapters that offer them)",
                self.inner.adapter.name
            );
        }
        self.inner.conv_tiling.set(t);
        Ok(())
    }

    /// Whether the device has subgroup operations (asked for on CPU adapters that offer
    /// them), which `conv3x3_rows_subgroup` needs.
    pub fn has_subgroups(&self) -> bool {
        self.inner.subgroups
    }

    /// The byte range one storage binding may cover here.
    pub fn binding_limit(&self) -> u64 {
        self.inner.binding_limit
    }

    /// Bytes of all buffers the pool has created (in use or free). Flat across training
    /// steps once the first step has run.
    pub fn pool_bytes(&self) -> u64 {
        self.inner.pool.borrow().total_bytes
    }

    /// The most bytes of pooled buffers ever held by live tensors at once since the Gpu
    /// was opened (at most [`Gpu::pool_bytes`]).
    pub fn pool_peak_live_bytes(&self) -> u64 {
        self.inner.pool.borrow().peak_live_bytes
    }

    /// Bytes of pooled buffers currently held by live tensors.
    pub fn pool_live_bytes(&self) -> u64 {
        let p = self.inner.pool.borrow();
        p.total_bytes - p.free_bytes
    }

    /// How the profile times a dispatch: "GPU timestamps" (the kernel alone, on
    /// adapters with timestamp queries) or "wall time" (submit and wait, each dispatch
    /// waited for).
    pub fn profile_clock(&self) -> &'static str {
        if self.inner.timer.is_some() {
            "GPU timestamps"
        } else {
            "wall time"
        }
    }

    /// The profile so far, slowest first: (entry point, dispatches, seconds); empty
    /// unless profiling is on. With [`GpuOptions::profile_shapes`] the first field also
    /// names the launch (invocations and uniform words).
    pub fn profile(&self) -> Vec<(String, u64, f64)> {
        let Some(p) = &self.inner.profile else {
            return Vec::new();
        };
        let mut v: Vec<_> = p
            .borrow()
            .iter()
            .map(|(k, &(n, s))| (k.clone(), n, s))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// CPU seconds spent recording dispatches since the Gpu was opened (creating each
    /// uniform and bind group and encoding the pass; not the GPU's work): the encoding
    /// overhead that benches report as a share of a step.
    pub fn record_seconds(&self) -> f64 {
        self.inner.record_seconds.get()
    }

    /// Dispatches recorded since the Gpu was opened.
    pub fn dispatch_count(&self) -> u64 {
        self.inner.dispatches.get()
    }

    pub(crate) fn alloc(&self, bytes: u64) -> PooledBuffer {
        pool::take(&self.inner.device, &self.inner.pool, bytes)
    }

    /// Run `f` on the open command encoder (opening one if needed), after ending the open
    /// compute pass: copies and clears are recorded between passes, in order.
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        self.end_pass();
        self.with_encoder_no_pass(f)
    }

    /// `with_encoder` for a caller that knows no pass is open.
    pub(crate) fn with_encoder_no_pass<R>(
        &self,
        f: impl FnOnce(&mut wgpu::CommandEncoder) -> R,
    ) -> R {
        let mut slot = self.inner.encoder.borrow_mut();
        let enc = slot.get_or_insert_with(|| {
            self.inner
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("segfeat step"),
                })
        });
        f(enc)
    }

    /// Run `f` on the open compute pass, opening one (and the encoder) if needed.
    pub(crate) fn with_pass<R>(&self, f: impl FnOnce(&mut wgpu::ComputePass<'static>) -> R) -> R {
        let mut slot = self.inner.pass.borrow_mut();
        if slot.is_none() {
            let pass = self.with_encoder_no_pass(|enc| {
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("segfeat dispatches"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
            });
            *slot = Some(pass);
        }
        f(slot.as_mut().expect("a compute pass was just opened"))
    }

    /// End the open compute pass, if any (dropping it ends it on its encoder).
    fn end_pass(&self) {
        self.inner.pass.borrow_mut().take();
    }

    /// Submit everything recorded so far (does not wait for it).
    pub fn flush(&self) {
        self.end_pass();
        self.inner.uniforms.borrow_mut().unmap_all();
        if let Some(enc) = self.inner.encoder.borrow_mut().take() {
            self.inner.queue.submit([enc.finish()]);
        }
        self.inner.pending.set(0);
    }

    /// Submit and wait until the GPU has finished everything.
    pub fn sync(&self) {
        self.flush();
        let _ = self.inner.device.poll(wgpu::PollType::wait_indefinitely());
    }
}
