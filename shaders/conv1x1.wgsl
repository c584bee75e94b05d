// conv1x1: pointwise convolution with bias (the U-Net's final layer: features -> labels).
//
//   x is (N, Cin, P)   w is (Cout, Cin)   b is (Cout)   y is (N, Cout, P), P = H*W
//   y[n,co,q] = b[co] + sum_ci w[co,ci] * x[n,ci,q]
//
// One output element per invocation, serial sums in a fixed order (deterministic).
// Backward entry points ADD into their gradient buffers.

struct Params {
    total: u32,
    n: u32,
    cin: u32,
    cout: u32,
    hw: u32,
    off_a: u32, // element offset of the first storage binding
    off_b: u32, // element offset of the last storage binding
    per: u32,   // pixels per share (the gradient shares below)
}
@group(0) @binding(0) var<uniform> p: Params;

// conv1x1_forward: 1 x, 2 w, 3 b, 4 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let q = i % p.hw;
    let co = (i / p.hw) % p.cout;
    let n = i / (p.hw * p.cout);
    var acc = bias[co];
    let xb = p.off_a + n * p.cin * p.hw + q;
    for (var ci = 0u; ci < p.cin; ci++) {
        acc += wt[co * p.cin + ci] * x[xb + ci * p.hw];
    }
    y[p.off_b + i] = acc;
}

// conv1x1_backward_input: 1 dy, 2 w, 4 dx
//   dx[n,ci,q] += sum_co w[co,ci] * dy[n,co,q]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let q = i % p.hw;
    let ci = (i / p.hw) % p.cin;
    let n = i / (p.hw * p.cin);
    var acc = 0.0;
    let yb = p.off_a + n * p.cout * p.hw + q;
    for (var co = 0u; co < p.cout; co++) {
        acc += wt[co * p.cin + ci] * dy[yb + co * p.hw];
    }
    dx[p.off_b + i] += acc;
}

// The weight and bias gradients sum over every sample and pixel: N*P terms into a few
// sums (the U-Net's last layer: 96 weights and 6 biases over 655,360 pixels at 256x256,
// batch 10). One invocation per sum, looping over all of them, keeps a GPU almost idle
// (73 ms a step on an H200), so they are summed in two steps, as conv3x3's weight gradient:
// the N*P pixels, in (n, q) order, are cut into shares of p.per pixels; each invocation
// sums one gradient element over one share into `parts` (splits, element), and
// conv1x1_backward_shares_sum adds the shares in split order. Deterministic.

// conv1x1_backward_weight_shares: 1 dy, 2 x (as xin), 4 parts
//   parts[s, co, ci] = sum over share s of dy[n,co,q] * x[n,ci,q]   (off_a: dy, off_b: x)
//   total = splits * Cout * Cin
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_weight_shares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ci = i % p.cin;
    let co = (i / p.cin) % p.cout;
    let s = i / (p.cin * p.cout);
    let end = min((s + 1u) * p.per, p.n * p.hw);
    var acc = 0.0;
    // One sample's run of pixels at a time, so the inner loop is a plain walk.
    var t = s * p.per;
    while (t < end) {
        let n = t / p.hw;
        let q0 = t % p.hw;
        let q1 = min(p.hw, q0 + (end - t));
        let yb = p.off_a + (n * p.cout + co) * p.hw;
        let xb = p.off_b + (n * p.cin + ci) * p.hw;
        for (var q = q0; q < q1; q++) { acc += dy[yb + q] * xin[xb + q]; }
        t += q1 - q0;
    }
    parts[i] = acc;
}

// conv1x1_backward_bias_shares: 1 dy, 4 parts
//   parts[s, co] = sum over share s of dy[n,co,q]   (off_a: dy); total = splits * Cout
@compute @workgroup_size(64)
fn conv1x1_backward_bias_shares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let co = i % p.cout;
    let s = i / p.cout;
    let end = min((s + 1u) * p.per, p.n * p.hw);
    var acc = 0.0;
    var t = s * p.per;
    while (t < end) {
        let n = t / p.hw;
        let q0 = t % p.hw;
        let q1 = min(p.hw, q0 + (end - t));
        let yb = p.off_a + (n * p.cout + co) * p.hw;
        for (var q = q0; q < q1; q++) { acc += dy[yb + q]; }
        t += q1 - q0;
    }
    parts[i] = acc;
}

// conv1x1_backward_shares_sum: 1 parts (as sums), 4 grad
//   grad[i] += sum over s of sums[s, i], in split order; total = gradient elements,
//   p.n = splits
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_shares_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.n; s++) { acc += sums[s * p.total + i]; }
    grad[i] += acc;
}
