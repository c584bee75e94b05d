// relu: rectified linear unit (the VGG classifier's activation).
//
//   y = max(x, 0)        dy/dx = 1 if x > 0 else 0   (0 at x = 0, as in PyTorch)
//
// Elementwise on any shape; off_* are chunk offsets inside each binding. Backward ADDS.

struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    slope: f32, // the leaky ReLU's slope (shaders/leaky_relu.wgsl); 0 and unused here
}
@group(0) @binding(0) var<uniform> p: Params;

// relu_forward: 1 x, 2 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    y[p.off_b + i] = max(x[p.off_a + i], 0.0);
}

// relu_backward: 1 x, 3 dy, 4 dx     dx += dy * (x > 0)
// Also right with the output y = relu(x) in place of x (y > 0 exactly when x > 0): the
// fused conv3x3 + ReLU, which keeps no pre-activation, passes y.
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dx[p.off_c + i] += select(0.0, dy[p.off_b + i], x[p.off_a + i] > 0.0);
}

// relu_backward4: the same on vec4s (4 elements per invocation), for tensors whose chunk
// and offsets are multiples of 4 (the launcher checks); p.total and p.off_* count vec4s.
// On lavapipe a vec4 load costs about half of four scalar ones.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn relu_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dx4[p.off_c + i] += select(vec4(0.0), dy4[p.off_b + i], x4[p.off_a + i] > vec4(0.0));
}
