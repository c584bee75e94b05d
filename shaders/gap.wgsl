// gap: global average pooling, (N, C, H, W) -> (N, C).
//
//   y[q] = (1 / HW) sum_{j < HW} x[q HW + j]        q = n C + c, one plane per q
//   dx[q HW + j] += dy[q] / HW
//
// The forward is one invocation per plane, a serial sum in a fixed order (deterministic);
// the backward one invocation per input element. Chunks hold whole planes.

struct Params {
    total: u32, // forward: planes; backward: elements
    hw: u32,
    off_a: u32,
    off_b: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// gap_forward: 1 x, 2 y
@compute @workgroup_size(64)
fn gap_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total) { return; }
    var acc = 0.0;
    let base = p.off_a + q * p.hw;
    for (var j = 0u; j < p.hw; j++) { acc += src[base + j]; }
    dst[p.off_b + q] = acc / f32(p.hw);
}

// gap_backward: 1 dy, 2 dx
@compute @workgroup_size(64)
fn gap_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dst[p.off_b + i] += src[p.off_a + i / p.hw] / f32(p.hw);
}
