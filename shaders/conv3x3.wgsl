// conv3x3: 3x3 convolution, stride 1, zero padding 1, with bias.
//
//   x  is (N, Cin, H, W)      w is (Cout, Cin, 3, 3)      b is (Cout)
//   y  is (N, Cout, H, W)
//   y[n,co,i,j] = b[co] + sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,i+ky-1,j+kx-1]
//
// Every entry point computes one output element per invocation with a serial sum in a
// fixed order, so results are deterministic (no atomics). `*_off` are element offsets of
// the tensor inside its binding: the launcher may bind a byte range that starts before
// the tensor chunk (offsets must be aligned), see src/gpu/kernels.rs.
// Backward entry points ADD into their gradient buffers, never overwrite.

struct Params {
    total: u32, // invocations that do work
    n: u32,     // batch (of this chunk)
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    off_a: u32, // element offset of the first storage binding
    off_b: u32, // element offset of the last storage binding
}
@group(0) @binding(0) var<uniform> p: Params;

// conv3x3_forward: 1 x, 2 w, 3 b, 4 y
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; } // guard: the grid may overshoot the tensor
    let hw = p.h * p.w;
    let col = i % p.w;
    let row = (i / p.w) % p.h;
    let co = (i / hw) % p.cout;
    let n = i / (hw * p.cout);
    var acc = bias[co];
    for (var ci = 0u; ci < p.cin; ci++) {
        let xb = p.off_a + (n * p.cin + ci) * hw;
        let wb = (co * p.cin + ci) * 9u;
        for (var ky = 0u; ky < 3u; ky++) {
            let sy = i32(row) + i32(ky) - 1;
            if (sy < 0 || sy >= i32(p.h)) { continue; }
            for (var kx = 0u; kx < 3u; kx++) {
                let sx = i32(col) + i32(kx) - 1;
                if (sx < 0 || sx >= i32(p.w)) { continue; }
                acc += wt[wb + ky * 3u + kx] * x[xb + u32(sy) * p.w + u32(sx)];
            }
        }
    }
    y[p.off_b + i] = acc;
}

// conv3x3_backward_input: 1 dy, 2 w, 4 dx
//   dx[n,ci,i,j] += sum_{co,ky,kx} w[co,ci,ky,kx] * dy[n,co,i-ky+1,j-kx+1]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let col = i % p.w;
    let row = (i / p.w) % p.h;
    let ci = (i / hw) % p.cin;
    let n = i / (hw * p.cin);
    var acc = 0.0;
    for (var co = 0u; co < p.cout; co++) {
        let yb = p.off_a + (n * p.cout + co) * hw;
        let wb = (co * p.cin + ci) * 9u;
        for (var ky = 0u; ky < 3u; ky++) {
            let sy = i32(row) - i32(ky) + 1;
            if (sy < 0 || sy >= i32(p.h)) { continue; }
            for (var kx = 0u; kx < 3u; kx++) {
                let sx = i32(col) - i32(kx) + 1;
                if (sx < 0 || sx >= i32(p.w)) { continue; }
                acc += wt[wb + ky * 3u + kx] * dy[yb + u32(sy) * p.w + u32(sx)];
            }
        }
    }
    dx[p.off_b + i] += acc;
}

// conv3x3_backward_weight: 1 dy, 2 x (as xin), 4 dw
//   dw[co,ci,ky,kx] += sum_{n,i,j} dy[n,co,i,j] * x[n,ci,i+ky-1,j+kx-1]
// One invocation per weight element; p.off_a is dy's offset, p.off_b is x's offset.
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let k = i % 9u;
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    let ci = (i / 9u) % p.cin;
    let co = i / (9u * p.cin);
    // The output rows/cols whose shifted input stays inside the image.
    let r0 = u32(max(0, 1 - ky));
    let r1 = u32(min(i32(p.h), i32(p.h) + 1 - ky));
    let c0 = u32(max(0, 1 - kx));
    let c1 = u32(min(i32(p.w), i32(p.w) + 1 - kx));
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let yb = p.off_a + (n * p.cout + co) * hw;
        let xb = p.off_b + (n * p.cin + ci) * hw;
        for (var r = r0; r < r1; r++) {
            let xr = xb + u32(i32(r) + ky - 1) * p.w;
            for (var c = c0; c < c1; c++) {
                acc += dy[yb + r * p.w + c] * xin[xr + u32(i32(c) + kx - 1)];
            }
        }
    }
    dw[i] += acc;
}

// conv3x3_backward_bias: 1 dy, 4 db
//   db[co] += sum_{n,i,j} dy[n,co,i,j]
@group(0) @binding(4) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let co = flat_id(wid, nwg, lid);
    if (co >= p.total) { return; }
    db[co] += channel_sum(co);
}

fn channel_sum(co: u32) -> f32 {
    let hw = p.h * p.w;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let yb = p.off_a + (n * p.cout + co) * hw;
        for (var q = 0u; q < hw; q++) { acc += dy[yb + q]; }
    }
    return acc;
}
