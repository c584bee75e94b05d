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
    _pad: u32,
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

// conv1x1_backward_weight: 1 dy, 2 x (as xin), 4 dw
//   dw[co,ci] += sum_{n,q} dy[n,co,q] * x[n,ci,q]      (off_a: dy, off_b: x)
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ci = i % p.cin;
    let co = i / p.cin;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let yb = p.off_a + (n * p.cout + co) * p.hw;
        let xb = p.off_b + (n * p.cin + ci) * p.hw;
        for (var q = 0u; q < p.hw; q++) { acc += dy[yb + q] * xin[xb + q]; }
    }
    dw[i] += acc;
}

// conv1x1_backward_bias: 1 dy, 4 db
//   db[co] += sum_{n,q} dy[n,co,q]
@group(0) @binding(4) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let co = flat_id(wid, nwg, lid);
    if (co >= p.total) { return; }
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let yb = p.off_a + (n * p.cout + co) * p.hw;
        for (var q = 0u; q < p.hw; q++) { acc += dy[yb + q]; }
    }
    db[co] += acc;
}
