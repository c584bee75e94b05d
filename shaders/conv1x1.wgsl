// conv1x1: pointwise convolution with bias (the U-Net's final layer: features -> labels).
//
//   x is (N, Cin, P)   w is (Cout, Cin)   b is (Cout)   y is (N, Cout, P), P = H*W
//   y[n,co,q] = b[co] + sum_ci w[co,ci] * x[n,ci,q]
//
// The forward and both gradients work on tiles of 4 channels x 4 pixels per invocation:
// each input value loaded serves four sums instead of one (on lavapipe a load costs as
// much as 20 to 36 multiply-adds). A tile past the last channel or pixel loads the last
// one again (clamped addresses, no branch) and stores only what exists. Every sum keeps
// the serial order of the one-output formula above: deterministic, and the same adds as a
// one-output kernel would do. Backward entry points ADD into their gradient buffers.

struct Params {
    total: u32,  // invocations that do work
    n: u32,      // batch (of this chunk)
    cin: u32,
    cout: u32,
    hw: u32,     // pixels per channel
    off_a: u32,  // element offset of the first storage binding
    off_b: u32,  // element offset of the last storage binding
    per: u32,    // gradient shares: pixels per share
    shares: u32, // conv1x1_backward_shares_sum: the number of shares
}
@group(0) @binding(0) var<uniform> p: Params;

// The 4 indices of a tile starting at `i0`, the ones at or past `end` clamped to end - 1.
fn tile4(i0: u32, end: u32) -> vec4<u32> {
    return min(vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u), vec4<u32>(end - 1u));
}

// (tile of 4 pixels, tile of 4 channels of `c`, sample) of invocation i, the pixels
// fastest: neighbouring invocations read neighbouring pixels.
fn pixel_tile(i: u32, c: u32) -> vec3<u32> {
    let nq = (p.hw + 3u) / 4u;
    let ng = (c + 3u) / 4u;
    return vec3<u32>((i % nq) * 4u, ((i / nq) % ng) * 4u, i / (nq * ng));
}

// conv1x1_forward: 1 x, 2 w, 3 b, 4 y; total = N * ceil(Cout/4) * ceil(P/4)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// y[at + k] = v[k] for the pixels q0 + k that exist.
fn put_y(at: u32, q0: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if (q0 + k < p.hw) { y[at + k] = v[k]; }
    }
}

@compute @workgroup_size(64)
fn conv1x1_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let t = pixel_tile(i, p.cout);
    let q = tile4(t.x, p.hw);
    let co = tile4(t.y, p.cout);
    let xb = p.off_a + t.z * p.cin * p.hw;
    var a0 = vec4<f32>(bias[co.x]);
    var a1 = vec4<f32>(bias[co.y]);
    var a2 = vec4<f32>(bias[co.z]);
    var a3 = vec4<f32>(bias[co.w]);
    let w0 = co * p.cin;
    for (var ci = 0u; ci < p.cin; ci++) {
        let r = xb + ci * p.hw;
        let xv = vec4<f32>(x[r + q.x], x[r + q.y], x[r + q.z], x[r + q.w]);
        a0 += wt[w0.x + ci] * xv;
        a1 += wt[w0.y + ci] * xv;
        a2 += wt[w0.z + ci] * xv;
        a3 += wt[w0.w + ci] * xv;
    }
    let yb = p.off_b + (t.z * p.cout + t.y) * p.hw + t.x;
    put_y(yb, t.x, a0);
    if (t.y + 1u < p.cout) { put_y(yb + p.hw, t.x, a1); }
    if (t.y + 2u < p.cout) { put_y(yb + 2u * p.hw, t.x, a2); }
    if (t.y + 3u < p.cout) { put_y(yb + 3u * p.hw, t.x, a3); }
}

// conv1x1_backward_input: 1 dy, 2 w, 4 dx; total = N * ceil(Cin/4) * ceil(P/4)
//   dx[n,ci,q] += sum_co w[co,ci] * dy[n,co,q]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// dx[at + k] += v[k] for the pixels q0 + k that exist.
fn add_dx(at: u32, q0: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if (q0 + k < p.hw) { dx[at + k] += v[k]; }
    }
}

@compute @workgroup_size(64)
fn conv1x1_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let t = pixel_tile(i, p.cin);
    let q = tile4(t.x, p.hw);
    let ci = tile4(t.y, p.cin);
    let yb = p.off_a + t.z * p.cout * p.hw;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var co = 0u; co < p.cout; co++) {
        let r = yb + co * p.hw;
        let g = vec4<f32>(dy[r + q.x], dy[r + q.y], dy[r + q.z], dy[r + q.w]);
        let w = co * p.cin;
        a0 += wt[w + ci.x] * g;
        a1 += wt[w + ci.y] * g;
        a2 += wt[w + ci.z] * g;
        a3 += wt[w + ci.w] * g;
    }
    let xb = p.off_b + (t.z * p.cin + t.y) * p.hw + t.x;
    add_dx(xb, t.x, a0);
    if (t.y + 1u < p.cin) { add_dx(xb + p.hw, t.x, a1); }
    if (t.y + 2u < p.cin) { add_dx(xb + 2u * p.hw, t.x, a2); }
    if (t.y + 3u < p.cin) { add_dx(xb + 3u * p.hw, t.x, a3); }
}

// The weight and bias gradients sum over every sample and pixel: N*P terms into a few
// sums (the U-Net's last layer: 96 weights and 6 biases over 655,360 pixels at 256x256,
// batch 10). One invocation per sum, looping over all of them, keeps a GPU almost idle
// (73 ms a step on an H200), so they are summed in two steps, as conv3x3's weight gradient:
// the N*P pixels, in (n, q) order, are cut into shares of p.per pixels; each invocation
// sums a tile of gradient elements over one share into `parts` (splits, element), and
// conv1x1_backward_shares_sum adds the shares in split order. Deterministic.

// conv1x1_backward_weight_shares: 1 dy, 2 x (as xin), 4 parts
//   parts[s, co, ci] = sum over share s of dy[n,co,q] * x[n,ci,q]   (off_a: dy, off_b: x)
//   total = splits * ceil(Cout/4) * ceil(Cin/4): 4 output x 4 input channels per invocation
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;

// parts[at + k] = v[k] for the input channels ci0 + k that exist.
fn put_parts(at: u32, ci0: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if (ci0 + k < p.cin) { parts[at + k] = v[k]; }
    }
}

@compute @workgroup_size(64)
fn conv1x1_backward_weight_shares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ngi = (p.cin + 3u) / 4u;
    let ngo = (p.cout + 3u) / 4u;
    let ci0 = (i % ngi) * 4u;
    let co0 = ((i / ngi) % ngo) * 4u;
    let s = i / (ngi * ngo);
    let ci = tile4(ci0, p.cin);
    let co = tile4(co0, p.cout);
    let end = min((s + 1u) * p.per, p.n * p.hw);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    // One sample's run of pixels at a time, so the inner loop is a plain walk.
    var t = s * p.per;
    while (t < end) {
        let n = t / p.hw;
        let q0 = t % p.hw;
        let q1 = min(p.hw, q0 + (end - t));
        let yb = p.off_a + n * p.cout * p.hw + co * p.hw;
        let xb = p.off_b + n * p.cin * p.hw + ci * p.hw;
        for (var q = q0; q < q1; q++) {
            let xv = vec4<f32>(xin[xb.x + q], xin[xb.y + q], xin[xb.z + q], xin[xb.w + q]);
            a0 += dy[yb.x + q] * xv;
            a1 += dy[yb.y + q] * xv;
            a2 += dy[yb.z + q] * xv;
            a3 += dy[yb.w + q] * xv;
        }
        t += q1 - q0;
    }
    let at = (s * p.cout + co0) * p.cin + ci0;
    put_parts(at, ci0, a0);
    if (co0 + 1u < p.cout) { put_parts(at + p.cin, ci0, a1); }
    if (co0 + 2u < p.cout) { put_parts(at + 2u * p.cin, ci0, a2); }
    if (co0 + 3u < p.cout) { put_parts(at + 3u * p.cin, ci0, a3); }
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
//   p.shares = splits
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn conv1x1_backward_shares_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.shares; s++) { acc += sums[s * p.total + i]; }
    grad[i] += acc;
}
