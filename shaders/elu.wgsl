// elu: exponential linear unit with alpha = 1 (the U-Net's activation).
//
//   y = x            if x > 0
//   y = exp(x) - 1   otherwise
//   dy/dx = 1 if x > 0, else exp(x)     (computed from x, so forward and backward agree exactly)
//         = 1 if y > 0, else y + 1      (from the output: the fused conv3x3 + ELU keeps only y)
//
// Elementwise on any shape. The launcher may split a large tensor into chunks; off_* are
// the element offsets of the chunk inside each binding. Backward ADDS into dx.

struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    slope: f32, // the leaky ReLU's slope (shaders/leaky_relu.wgsl); 0 and unused here
}
@group(0) @binding(0) var<uniform> p: Params;

// elu_forward: 1 x, 2 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn elu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = x[p.off_a + i];
    y[p.off_b + i] = select(exp(v) - 1.0, v, v > 0.0);
}

// elu_backward: 1 x, 3 dy, 4 dx     dx += dy * (x > 0 ? 1 : exp(x))
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn elu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = x[p.off_a + i];
    dx[p.off_c + i] += dy[p.off_b + i] * select(exp(v), 1.0, v > 0.0);
}

// elu_backward_from_output: 1 y, 3 dy, 4 dx     dx += dy * (y > 0 ? 1 : y + 1)
// The derivative from the output, for conv3x3 with the ELU fused into its epilogue, which
// keeps no pre-activation. y > 0 exactly when x > 0, and y + 1 = exp(x) up to rounding.
@compute @workgroup_size(64)
fn elu_backward_from_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = x[p.off_a + i];
    dx[p.off_c + i] += dy[p.off_b + i] * select(v + 1.0, 1.0, v > 0.0);
}

// elu_backward_from_output4: the same on vec4s (4 elements per invocation), for tensors
// whose chunk and offsets are multiples of 4 (the launcher checks); p.total and p.off_*
// count vec4s. On lavapipe a vec4 load costs about half of four scalar ones.
@group(0) @binding(1) var<storage, read> y4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn elu_backward_from_output4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let v = y4[p.off_a + i];
    dx4[p.off_c + i] += dy4[p.off_b + i] * select(v + 1.0, vec4(1.0), v > vec4(0.0));
}
