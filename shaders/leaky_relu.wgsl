// leaky_relu: the leaky rectified linear unit (the regularised classifier's activation).
//
//   y = x if x > 0 else a x        dy/dx = 1 if x > 0 else a   (a at x = 0)
//
// a (the slope, p.slope) is >= 0, so y > 0 exactly when x > 0 and the backward is also
// right given the output y in place of x (the fused conv3x3 + leaky ReLU passes y).
// Elementwise on any shape; off_* are chunk offsets inside each binding. Backward ADDS.

struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    slope: f32,
}
@group(0) @binding(0) var<uniform> p: Params;

// leaky_relu_forward: 1 x, 2 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn leaky_relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = x[p.off_a + i];
    y[p.off_b + i] = select(p.slope * v, v, v > 0.0);
}

// leaky_relu_backward: 1 x (or y), 3 dy, 4 dx     dx += dy * (x > 0 ? 1 : a)
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn leaky_relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let g = dy[p.off_b + i];
    dx[p.off_c + i] += select(p.slope * g, g, x[p.off_a + i] > 0.0);
}
