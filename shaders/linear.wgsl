// linear: fully connected layer, y = x W^T + b.
//
//   x is (N, I)   W is (O, I)   b is (O)   y is (N, O)
//   y[n,o] = b[o] + sum_k x[n,k] * W[o,k]
//
// A weight matrix can be larger than one storage binding (VGG's first fully connected
// layer is 4096 x 32768 floats, 512 MiB), so the launcher splits W by output rows:
// this dispatch sees rows o0 .. o0+ob of W (starting at element off_w of its binding).
// x, y and their gradients are small and bound whole.
// Serial sums in a fixed order (deterministic); backward entry points ADD. The forward and
// the input gradient take 4 samples per invocation (a vec4 of sums): each weight loaded
// serves 4 samples, so W, the large operand, is read N/4 times instead of N times (the
// sums over k, or o, keep their order).

struct Params {
    total: u32,
    n: u32,
    i: u32,     // in features
    o: u32,     // out features (all of them)
    o0: u32,    // first output row of this chunk
    ob: u32,    // output rows in this chunk
    off_w: u32, // element offset of W's (or dW's) chunk inside its binding
    _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// linear_forward: 1 x, 2 W, 3 b, 4 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Sample n0 + j of a block of 4, clamped to the last sample (whose sums are then
// computed twice and stored once).
fn sample(n0: u32, j: u32) -> u32 {
    return min(n0 + j, p.n - 1u);
}

// total = ceil(N / 4) * ob: one invocation per (block of 4 samples, output row).
@compute @workgroup_size(64)
fn linear_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let o = t % p.ob;
    let n0 = 4u * (t / p.ob);
    var acc = vec4<f32>(bias[p.o0 + o]);
    let wb = p.off_w + o * p.i;
    let x0 = sample(n0, 0u) * p.i;
    let x1 = sample(n0, 1u) * p.i;
    let x2 = sample(n0, 2u) * p.i;
    let x3 = sample(n0, 3u) * p.i;
    for (var k = 0u; k < p.i; k++) {
        acc += vec4<f32>(x[x0 + k], x[x1 + k], x[x2 + k], x[x3 + k]) * wt[wb + k];
    }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) { y[(n0 + j) * p.o + p.o0 + o] = acc[j]; }
    }
}

// linear_backward_input: 1 dy, 2 W, 4 dx
//   dx[n,k] += sum_{o in chunk} dy[n,o] * W[o,k]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// total = ceil(N / 4) * I: one invocation per (block of 4 samples, input feature).
@compute @workgroup_size(64)
fn linear_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let k = t % p.i;
    let n0 = 4u * (t / p.i);
    let y0 = sample(n0, 0u) * p.o + p.o0;
    let y1 = sample(n0, 1u) * p.o + p.o0;
    let y2 = sample(n0, 2u) * p.o + p.o0;
    let y3 = sample(n0, 3u) * p.o + p.o0;
    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < p.ob; o++) {
        acc += vec4<f32>(dy[y0 + o], dy[y1 + o], dy[y2 + o], dy[y3 + o]) * wt[p.off_w + o * p.i + k];
    }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) { dx[(n0 + j) * p.i + k] += acc[j]; }
    }
}

// linear_backward_weight: 1 dy, 3 x (as xin), 4 dW
//   dW[o,k] += sum_n dy[n,o] * x[n,k]
@group(0) @binding(3) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(64)
fn linear_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let k = t % p.i;
    let o = t / p.i;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) { acc += dy[n * p.o + p.o0 + o] * xin[n * p.i + k]; }
    dw[p.off_w + t] += acc;
}

// linear_backward_bias: 1 dy, 4 db
//   db[o] += sum_n dy[n,o]
@group(0) @binding(4) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn linear_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) { acc += dy[n * p.o + o]; }
    db[o] += acc;
}
