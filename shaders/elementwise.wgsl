// elementwise: the small kernels the tape needs, on flat tensors of any shape.
//
//   fill:     x[i]  = value
//   scale:    x[i] *= value                 (in place)
//   add_into: dst[i] += src[i]              (gradient accumulation)
//
// off_a / off_b are the chunk offsets inside the bindings (see src/gpu/kernels.rs).

struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    value: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

// fill: 1 x
@compute @workgroup_size(64)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    x[p.off_a + i] = p.value;
}

// scale: 1 x
@compute @workgroup_size(64)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    x[p.off_a + i] *= p.value;
}

// add_into: 1 dst (as x), 2 src
@compute @workgroup_size(64)
fn add_into(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    x[p.off_a + i] += src[p.off_b + i];
}
