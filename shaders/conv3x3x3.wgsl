// conv3x3x3: 3x3x3 convolution, stride 1, zero padding 1, with bias (volumes).
//
//   x  is (N, Cin, D, H, W)      w is (Cout, Cin, 3, 3, 3)      b is (Cout)
//   y  is (N, Cout, D, H, W)
//   y[n,co,z,i,j] = b[co] + sum_{ci,kz,ky,kx} w[co,ci,kz,ky,kx] * x[n,ci,z+kz-1,i+ky-1,j+kx-1]
//
// A 3-D convolution is the sum over kz of three 2-D convolutions, of the slices z-1, z and
// z+1 with the weights' planes kz = 0, 1, 2. The kernels here are conv3x3.wgsl's, with
// that sum added around their loops:
// - conv3x3x3_rows is conv3x3_rows (4 output channels x 8 pixels x 2 rows per
//   invocation) on one output slice z, its input-channel loop walking (ci, kz). Per input
//   channel and depth tap it loads 40 inputs and 18 weight vec4s for 576 multiply-adds.
//   It serves the forward and, on weights packed flipped, the backward to the input.
// - conv3x3x3_backward_weight is conv3x3_backward_weight (8 output channels x 9 taps of
//   one input channel, a sliding 3x3 window along each row) with the input channel's
//   place taken by a pair (ci, kz): its rows are (n, z, r), and the input slice it reads
//   is z + kz - 1. Shares of the rows are summed by conv3x3x3_backward_weight_sum.
// Every sum runs serially in the order (ci, kz, ky, kx) (the backward to the weights:
// (n, z, r, c)), so results are deterministic. `off_*` are element offsets inside a
// binding (src/gpu/kernels.rs). Backward entry points ADD into their gradients.

struct Params {
    total: u32,          // invocations that do work
    n: u32,              // batch (of this chunk)
    cin: u32,
    cout: u32,
    d: u32,
    h: u32,
    w: u32,
    off_a: u32,          // element offset of the first storage binding
    off_b: u32,          // element offset of the last storage binding
    cq: u32,             // vec4 groups of output channels (packed weights, shares)
    cq_flip: u32,        // conv3x3x3_pack_both: the flipped packing's vec4 groups
    row_groups: u32,     // rows: 8-pixel groups per row
    rows_per_share: u32, // backward weight: (n, z, r) rows per share
    shares: u32,         // backward weight and its sum: the number of shares
    epilogue: u32,       // rows: bit 0 add bias and overwrite, else add into the output;
                         //   with bit 0, bits 1-2 the fused activation (0 none, 1 ELU,
                         //   2 ReLU, 3 leaky ReLU with `slope`)
    flip: u32,           // conv3x3x3_pack: 1 to pack the transposed, flipped weights
    bias_grad: u32,      // backward weight and its sum: 1 to sum the bias gradient too
    slope: f32,          // rows: the leaky ReLU's slope (activation 3)
}
@group(0) @binding(0) var<uniform> p: Params;

// ---- conv3x3x3_pack: 2 w, 4 packed ----
// The weights as (Cin, 27, Cq) vec4s (tap kz * 9 + ky * 3 + kx), channels past Cout zero;
// with p.flip those of the transposed, flipped convolution (input channels Cout, output
// channels Cin, tap k -> 26 - k), whose forward is the backward to the input. p.cin and
// p.cout are the ORIGINAL weight's. One invocation writes one (channel, tap) row.
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read_write> packed: array<f32>;

fn pack_value(c: u32, k: u32, o: u32, flip: bool) -> f32 {
    if (!flip) {
        if (o < p.cout) { return wt[(o * p.cin + c) * 27u + k]; }
    } else {
        if (o < p.cin) { return wt[(c * p.cin + o) * 27u + (26u - k)]; }
    }
    return 0.0;
}

@compute @workgroup_size(64)
fn conv3x3x3_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.total) { return; }
    let c4 = p.cq * 4u;
    for (var o = 0u; o < c4; o++) { packed[r * c4 + o] = pack_value(r / 27u, r % 27u, o, p.flip != 0u); }
}

// ---- conv3x3x3_pack_both: 2 w, 4 packed, 1 flipped ----
// Both packings in one dispatch, for a convolution whose input needs a gradient.
@group(0) @binding(1) var<storage, read_write> flipped: array<f32>;

@compute @workgroup_size(64)
fn conv3x3x3_pack_both(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.total) { return; }
    let c = r / 27u;
    let k = r % 27u;
    if (r < p.cin * 27u) {
        let c4 = p.cq * 4u;
        for (var o = 0u; o < c4; o++) { packed[r * c4 + o] = pack_value(c, k, o, false); }
    }
    if (r < p.cout * 27u) {
        let c4 = p.cq_flip * 4u;
        for (var o = 0u; o < c4; o++) { flipped[r * c4 + o] = pack_value(c, k, o, true); }
    }
}

// The forward's epilogue: the conv sum plus its bias, through the fused activation.
fn epilogue(v: f32) -> f32 {
    switch ((p.epilogue >> 1u) & 3u) {
        case 1u: { return select(exp(v) - 1.0, v, v > 0.0); }
        case 2u: { return max(v, 0.0); }
        case 3u: { return select(p.slope * v, v, v > 0.0); }
        default: { return v; }
    }
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wq: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn ld(rowb: u32, c: i32) -> f32 {
    if (c < 0 || c >= i32(p.w)) { return 0.0; }
    return x[rowb + u32(c)];
}

// ---- conv3x3x3_naive: 1 x, 2 w (as wt, not packed), 3 b, 4 y ----
// One invocation per output value, its 27 Cin terms summed in (ci, kz, ky, kx) order,
// every input and weight loaded from storage (2 loads per multiply-add): the kernel a
// learner starts from, and the kernels bench's baseline. Forward only, y = conv + b.
@compute @workgroup_size(64)
fn conv3x3x3_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let j = i % p.w;
    let r = (i / p.w) % p.h;
    let z = (i / (p.w * p.h)) % p.d;
    let co = (i / (p.w * p.h * p.d)) % p.cout;
    let n = i / (p.w * p.h * p.d * p.cout);
    let hw = p.h * p.w;
    var acc = bias[co];
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var kz = 0u; kz < 3u; kz++) {
            let sz = i32(z) + i32(kz) - 1;
            if (sz < 0 || sz >= i32(p.d)) { continue; }
            for (var ky = 0u; ky < 3u; ky++) {
                let sy = i32(r) + i32(ky) - 1;
                if (sy < 0 || sy >= i32(p.h)) { continue; }
                let rowb = p.off_a + ((n * p.cin + ci) * p.d + u32(sz)) * hw + u32(sy) * p.w;
                for (var kx = 0u; kx < 3u; kx++) {
                    let sx = i32(j) + i32(kx) - 1;
                    if (sx < 0 || sx >= i32(p.w)) { continue; }
                    acc += wt[((co * p.cin + ci) * 27u + kz * 9u + ky * 3u + kx)] * x[rowb + u32(sx)];
                }
            }
        }
    }
    y[p.off_b + i] = acc;
}

// ---- conv3x3x3_rows: 1 x, 2 packed weights, 3 b, 4 y ----
// conv3x3_rows on output slice z: 4 output channels x 8 adjacent pixels on each of two
// adjacent rows (16 vec4 sums), the input-channel loop over (ci, kz), input slices outside
// the volume skipped (as input rows outside the image are). Invocation order (fastest
// first): pixel group, row pair, slice, channel group, sample. p.row_groups is the number
// of 8-pixel groups per row; p.cq the packing's vec4 groups.
@compute @workgroup_size(64)
fn conv3x3x3_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let dhw = p.d * hw;
    let groups = (p.cout + 3u) / 4u;
    let hh = (p.h + 1u) / 2u;
    let tx = i % p.row_groups;
    let rp = (i / p.row_groups) % hh;
    let z = (i / (p.row_groups * hh)) % p.d;
    let g = (i / (p.row_groups * hh * p.d)) % groups;
    let n = i / (p.row_groups * hh * p.d * groups);
    let c0 = i32(tx * 8u);
    let r0 = i32(rp * 2u);
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var kz = 0u; kz < 3u; kz++) {
            let sz = i32(z) + i32(kz) - 1;
            if (sz < 0 || sz >= i32(p.d)) { continue; }
            let xb = p.off_a + (n * p.cin + ci) * dhw + u32(sz) * hw;
            let wb = (ci * 27u + kz * 9u) * p.cq + g;
            for (var t = 0; t < 4; t++) {
                let sy = r0 + t - 1;
                if (sy < 0 || sy >= i32(p.h)) { continue; }
                let rowb = xb + u32(sy) * p.w;
                let v0 = vec4(ld(rowb, c0 - 1)); let v1 = vec4(ld(rowb, c0));
                let v2 = vec4(ld(rowb, c0 + 1)); let v3 = vec4(ld(rowb, c0 + 2));
                let v4 = vec4(ld(rowb, c0 + 3)); let v5 = vec4(ld(rowb, c0 + 4));
                let v6 = vec4(ld(rowb, c0 + 5)); let v7 = vec4(ld(rowb, c0 + 6));
                let v8 = vec4(ld(rowb, c0 + 7)); let v9 = vec4(ld(rowb, c0 + 8));
                if (t <= 2) {
                    let k0 = wb + u32(t * 3) * p.cq;
                    let w0 = wq[k0]; let w1 = wq[k0 + p.cq]; let w2 = wq[k0 + 2u * p.cq];
                    a0 = fma(w0, v0, a0); a1 = fma(w0, v1, a1); a2 = fma(w0, v2, a2); a3 = fma(w0, v3, a3);
                    a4 = fma(w0, v4, a4); a5 = fma(w0, v5, a5); a6 = fma(w0, v6, a6); a7 = fma(w0, v7, a7);
                    a0 = fma(w1, v1, a0); a1 = fma(w1, v2, a1); a2 = fma(w1, v3, a2); a3 = fma(w1, v4, a3);
                    a4 = fma(w1, v5, a4); a5 = fma(w1, v6, a5); a6 = fma(w1, v7, a6); a7 = fma(w1, v8, a7);
                    a0 = fma(w2, v2, a0); a1 = fma(w2, v3, a1); a2 = fma(w2, v4, a2); a3 = fma(w2, v5, a3);
                    a4 = fma(w2, v6, a4); a5 = fma(w2, v7, a5); a6 = fma(w2, v8, a6); a7 = fma(w2, v9, a7);
                }
                if (t >= 1) {
                    let k0 = wb + u32((t - 1) * 3) * p.cq;
                    let w0 = wq[k0]; let w1 = wq[k0 + p.cq]; let w2 = wq[k0 + 2u * p.cq];
                    b0 = fma(w0, v0, b0); b1 = fma(w0, v1, b1); b2 = fma(w0, v2, b2); b3 = fma(w0, v3, b3);
                    b4 = fma(w0, v4, b4); b5 = fma(w0, v5, b5); b6 = fma(w0, v6, b6); b7 = fma(w0, v7, b7);
                    b0 = fma(w1, v1, b0); b1 = fma(w1, v2, b1); b2 = fma(w1, v3, b2); b3 = fma(w1, v4, b3);
                    b4 = fma(w1, v5, b4); b5 = fma(w1, v6, b5); b6 = fma(w1, v7, b6); b7 = fma(w1, v8, b7);
                    b0 = fma(w2, v2, b0); b1 = fma(w2, v3, b1); b2 = fma(w2, v4, b2); b3 = fma(w2, v5, b3);
                    b4 = fma(w2, v6, b4); b5 = fma(w2, v7, b5); b6 = fma(w2, v8, b6); b7 = fma(w2, v9, b7);
                }
            }
        }
    }
    let yb = p.off_b + (n * p.cout + g * 4u) * dhw + z * hw + u32(r0) * p.w + tx * 8u;
    store_rows(yb, g * 4u, tx * 8u, a0, a1, a2, a3, a4, a5, a6, a7);
    if (u32(r0) + 1u < p.h) {
        store_rows(yb + p.w, g * 4u, tx * 8u, b0, b1, b2, b3, b4, b5, b6, b7);
    }
}

// One output row of the tile: 4 channels (vec4 components, a volume apart) x 8 pixels
// from element yb (channel co0, column c). Written out without loops or array indexing,
// which lavapipe would otherwise keep in memory.
fn store_rows(yb: u32, co0: u32, c: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>,
              v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>) {
    let dhw = p.d * p.h * p.w;
    store8(yb, co0, c, v0.x, v1.x, v2.x, v3.x, v4.x, v5.x, v6.x, v7.x);
    if (co0 + 1u < p.cout) { store8(yb + dhw, co0 + 1u, c, v0.y, v1.y, v2.y, v3.y, v4.y, v5.y, v6.y, v7.y); }
    if (co0 + 2u < p.cout) { store8(yb + 2u * dhw, co0 + 2u, c, v0.z, v1.z, v2.z, v3.z, v4.z, v5.z, v6.z, v7.z); }
    if (co0 + 3u < p.cout) { store8(yb + 3u * dhw, co0 + 3u, c, v0.w, v1.w, v2.w, v3.w, v4.w, v5.w, v6.w, v7.w); }
}

// 8 adjacent outputs of channel co from column c on, those inside the row.
fn store8(i: u32, co: u32, c: u32, v0: f32, v1: f32, v2: f32, v3: f32, v4: f32, v5: f32,
          v6: f32, v7: f32) {
    let with_bias = (p.epilogue & 1u) != 0u;
    var b = 0.0;
    if (with_bias) { b = bias[co]; }
    if (c + 8u <= p.w) {
        store1(i, v0, b, with_bias); store1(i + 1u, v1, b, with_bias);
        store1(i + 2u, v2, b, with_bias); store1(i + 3u, v3, b, with_bias);
        store1(i + 4u, v4, b, with_bias); store1(i + 5u, v5, b, with_bias);
        store1(i + 6u, v6, b, with_bias); store1(i + 7u, v7, b, with_bias);
        return;
    }
    store1(i, v0, b, with_bias); // c < p.w always: the tile starts inside the row
    if (c + 1u < p.w) { store1(i + 1u, v1, b, with_bias); }
    if (c + 2u < p.w) { store1(i + 2u, v2, b, with_bias); }
    if (c + 3u < p.w) { store1(i + 3u, v3, b, with_bias); }
    if (c + 4u < p.w) { store1(i + 4u, v4, b, with_bias); }
    if (c + 5u < p.w) { store1(i + 5u, v5, b, with_bias); }
    if (c + 6u < p.w) { store1(i + 6u, v6, b, with_bias); }
}

fn store1(i: u32, v: f32, b: f32, with_bias: bool) {
    if (with_bias) {
        y[i] = epilogue(v + b);
    } else {
        y[i] += v;
    }
}

// ---- conv3x3x3_backward_weight: 1 dy, 2 x (as xin), 4 partial ----
//   dw[co,ci,kz,ky,kx] += sum_{n,z,r,c} dy[n,co,z,r,c] * x[n,ci,z+kz-1,r+ky-1,c+kx-1]
// One invocation owns 8 output channels (vec4 groups 2g, 2g+1) x one (ci, kz) pair x 9
// taps (18 vec4 sums) and walks its share of the (n, z, r) rows along c with a sliding
// 3x3 window of input slice z + kz - 1 (rows whose slice lies outside the volume add
// nothing): per pixel 8 dy loads and 3 x loads for 72 multiply-adds. Shares go to
// `partial` as (splits, Cin, 27, Cq) vec4s; with p.bias_grad the invocations of (ci, kz)
// = (0, 1), whose input slice always exists, also sum dy into (splits, Cq) vec4s after
// those. Invocation order (fastest first): (ci, kz), channel pair, share.
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<vec4<f32>>;

fn ldx(rowb: u32, ok: bool, c: u32) -> f32 {
    if (!ok || c >= p.w) { return 0.0; }
    return xin[rowb + c];
}

fn ldy(base: u32, co: u32) -> f32 {
    if (co >= p.cout) { return 0.0; }
    return dy[base + co * p.d * p.h * p.w];
}

fn ldy4(base: u32, co: u32) -> vec4<f32> {
    return vec4<f32>(ldy(base, co), ldy(base, co + 1u), ldy(base, co + 2u), ldy(base, co + 3u));
}

// The 9 in-plane taps' sums (tap ky * 3 + kx) of one (ci, kz) and one vec4 group.
struct Taps {
    t0: vec4<f32>, t1: vec4<f32>, t2: vec4<f32>,
    t3: vec4<f32>, t4: vec4<f32>, t5: vec4<f32>,
    t6: vec4<f32>, t7: vec4<f32>, t8: vec4<f32>,
}

// The 3x3 window around column c: rows r-1, r, r+1 (0, 1, 2), columns c-1, c, c+1.
struct Window {
    l0: f32, m0: f32, r0: f32,
    l1: f32, m1: f32, r1: f32,
    l2: f32, m2: f32, r2: f32,
}

// Where the three input rows start, and whether each exists.
struct Rows {
    b0: u32, b1: u32, b2: u32,
    k0: bool, k1: bool, k2: bool,
}

fn zero_taps() -> Taps {
    let z = vec4<f32>(0.0);
    return Taps(z, z, z, z, z, z, z, z, z);
}

// The rows around row r of the slice at element xb; none when the slice does not exist.
fn rows_of(xb: u32, has: bool, r: u32) -> Rows {
    let ok0 = r >= 1u;
    let ok2 = r + 1u < p.h;
    return Rows(xb + select(0u, (r - 1u) * p.w, ok0), xb + r * p.w,
                xb + select(0u, (r + 1u) * p.w, ok2), has && ok0, has, has && ok2);
}

fn window_start(x: Rows) -> Window {
    return Window(0.0, 0.0, ldx(x.b0, x.k0, 0u), 0.0, 0.0, ldx(x.b1, x.k1, 0u),
                  0.0, 0.0, ldx(x.b2, x.k2, 0u));
}

fn slide(w: Window, x: Rows, c: u32) -> Window {
    return Window(w.m0, w.r0, ldx(x.b0, x.k0, c + 1u), w.m1, w.r1, ldx(x.b1, x.k1, c + 1u),
                  w.m2, w.r2, ldx(x.b2, x.k2, c + 1u));
}

fn add_taps(a: Taps, d: vec4<f32>, w: Window) -> Taps {
    return Taps(fma(d, vec4(w.l0), a.t0), fma(d, vec4(w.m0), a.t1), fma(d, vec4(w.r0), a.t2),
                fma(d, vec4(w.l1), a.t3), fma(d, vec4(w.m1), a.t4), fma(d, vec4(w.r1), a.t5),
                fma(d, vec4(w.l2), a.t6), fma(d, vec4(w.m2), a.t7), fma(d, vec4(w.r2), a.t8));
}

fn store_taps(base: u32, a: Taps) {
    partial[base] = a.t0;
    partial[base + p.cq] = a.t1;
    partial[base + 2u * p.cq] = a.t2;
    partial[base + 3u * p.cq] = a.t3;
    partial[base + 4u * p.cq] = a.t4;
    partial[base + 5u * p.cq] = a.t5;
    partial[base + 6u * p.cq] = a.t6;
    partial[base + 7u * p.cq] = a.t7;
    partial[base + 8u * p.cq] = a.t8;
}

@compute @workgroup_size(64)
fn conv3x3x3_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let dhw = p.d * hw;
    let cq2 = (p.cq + 1u) / 2u;
    let ck = i % (p.cin * 3u); // ci * 3 + kz
    let ci = ck / 3u;
    let kz = ck % 3u;
    let g = (i / (p.cin * 3u)) % cq2;
    let s = i / (p.cin * 3u * cq2);
    let co = g * 8u;
    let has_b = 2u * g + 1u < p.cq;
    var a = zero_taps(); var b = zero_taps();
    var sd = vec4<f32>(0.0); var se = vec4<f32>(0.0);
    let rows = p.n * p.d * p.h;
    for (var q = s * p.rows_per_share; q < min((s + 1u) * p.rows_per_share, rows); q++) {
        let r = q % p.h;
        let z = (q / p.h) % p.d;
        let n = q / (p.h * p.d);
        let sz = i32(z) + i32(kz) - 1;
        let has = sz >= 0 && sz < i32(p.d);
        let xs = p.off_b + (n * p.cin + ci) * dhw + u32(select(0, sz, has)) * hw;
        let x = rows_of(xs, has, r);
        let yb = p.off_a + n * p.cout * dhw + z * hw + r * p.w;
        var w = window_start(x);
        for (var c = 0u; c < p.w; c++) {
            w = slide(w, x, c);
            let d = ldy4(yb + c, co);
            a = add_taps(a, d, w);
            sd += d;
            if (has_b) {
                let e = ldy4(yb + c, co + 4u);
                b = add_taps(b, e, w);
                se += e;
            }
        }
    }
    // Tap kz * 9 + (ky * 3 + kx) of input channel ci: the pair's 9 taps are consecutive.
    let base = ((s * p.cin + ci) * 27u + kz * 9u) * p.cq + 2u * g;
    store_taps(base, a);
    if (has_b) { store_taps(base + 1u, b); }
    if (ck == 1u && p.bias_grad != 0u) {
        let bb = p.shares * p.cin * 27u * p.cq + s * p.cq + 2u * g;
        partial[bb] = sd;
        if (has_b) { partial[bb + 1u] = se; }
    }
}

// ---- conv3x3x3_backward_weight_trio: 1 dy, 2 x (as xin), 4 partial (CPU adapters) ----
// The same sums as conv3x3x3_backward_weight, for the three depth taps of one input
// channel at once: the three input slices z-1, z, z+1 each keep a sliding window, and
// each dy value loaded serves all three (per pixel 8 dy loads and 9 x loads for 216
// multiply-adds, against 8 and 3 for 72), in 54 vec4 sums (which spill on lavapipe: as
// conv3x3_backward_weight_quad, the loads saved outweigh it). Every sum runs over the
// same rows and columns in the same order as conv3x3x3_backward_weight's, so the two give
// the same bits. Invocation order: input channel, channel pair, share.
struct Trio {
    a0: Taps, a1: Taps, a2: Taps,
    b0: Taps, b1: Taps, b2: Taps,
    sd: vec4<f32>, se: vec4<f32>,
}

fn zero_trio() -> Trio {
    let z = zero_taps();
    return Trio(z, z, z, z, z, z, vec4<f32>(0.0), vec4<f32>(0.0));
}

// The rows around row r of input slice z + kz - 1 of channel ci of sample n (none outside
// the volume).
fn slice_rows(n: u32, ci: u32, z: u32, kz: u32, r: u32) -> Rows {
    let sz = i32(z) + i32(kz) - 1;
    let has = sz >= 0 && sz < i32(p.d);
    let hw = p.h * p.w;
    let xs = p.off_b + (n * p.cin + ci) * p.d * hw + u32(select(0, sz, has)) * hw;
    return rows_of(xs, has, r);
}

@compute @workgroup_size(64)
fn conv3x3x3_backward_weight_trio(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let dhw = p.d * hw;
    let cq2 = (p.cq + 1u) / 2u;
    let ci = i % p.cin;
    let g = (i / p.cin) % cq2;
    let s = i / (p.cin * cq2);
    let co = g * 8u;
    let has_b = 2u * g + 1u < p.cq;
    var t = zero_trio();
    let rows = p.n * p.d * p.h;
    for (var q = s * p.rows_per_share; q < min((s + 1u) * p.rows_per_share, rows); q++) {
        let r = q % p.h;
        let z = (q / p.h) % p.d;
        let n = q / (p.h * p.d);
        let x0 = slice_rows(n, ci, z, 0u, r);
        let x1 = slice_rows(n, ci, z, 1u, r);
        let x2 = slice_rows(n, ci, z, 2u, r);
        let yb = p.off_a + n * p.cout * dhw + z * hw + r * p.w;
        var w0 = window_start(x0); var w1 = window_start(x1); var w2 = window_start(x2);
        for (var c = 0u; c < p.w; c++) {
            w0 = slide(w0, x0, c); w1 = slide(w1, x1, c); w2 = slide(w2, x2, c);
            let d = ldy4(yb + c, co);
            t.a0 = add_taps(t.a0, d, w0); t.a1 = add_taps(t.a1, d, w1);
            t.a2 = add_taps(t.a2, d, w2);
            t.sd += d;
            if (has_b) {
                let e = ldy4(yb + c, co + 4u);
                t.b0 = add_taps(t.b0, e, w0); t.b1 = add_taps(t.b1, e, w1);
                t.b2 = add_taps(t.b2, e, w2);
                t.se += e;
            }
        }
    }
    let base = (s * p.cin + ci) * 27u * p.cq + 2u * g;
    let step = 9u * p.cq; // from one depth tap's 9 taps to the next's
    store_taps(base, t.a0); store_taps(base + step, t.a1); store_taps(base + 2u * step, t.a2);
    if (has_b) {
        store_taps(base + 1u, t.b0); store_taps(base + step + 1u, t.b1);
        store_taps(base + 2u * step + 1u, t.b2);
    }
    if (ci == 0u && p.bias_grad != 0u) {
        let bb = p.shares * p.cin * 27u * p.cq + s * p.cq + 2u * g;
        partial[bb] = t.sd;
        if (has_b) { partial[bb + 1u] = t.se; }
    }
}

// ---- conv3x3x3_backward_weight_sum: 1 partial (as parts), 4 dw, 3 db ----
// dw[co,ci,k] += the shares' sums in split order; with p.bias_grad also db[co] += the bias
// shares'. One invocation per vec4 of a share: (ci, tap, g), then g for the biases.
@group(0) @binding(1) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbw: array<f32>;

@compute @workgroup_size(64)
fn conv3x3x3_backward_weight_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let nw = p.cin * 27u * p.cq;
    var base = i;
    var stride = nw;
    if (i >= nw) {
        base = p.shares * nw + (i - nw);
        stride = p.cq;
    }
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < p.shares; s++) {
        acc += parts[base + s * stride];
    }
    if (i >= nw) {
        let g = i - nw;
        for (var k = 0u; k < 4u; k++) {
            let co = 4u * g + k;
            if (co < p.cout) { dbw[co] += acc[k]; }
        }
        return;
    }
    let g = i % p.cq;
    let tap = (i / p.cq) % 27u;
    let ci = i / (27u * p.cq);
    for (var k = 0u; k < 4u; k++) {
        let co = 4u * g + k;
        if (co < p.cout) { dw[(co * p.cin + ci) * 27u + tap] += acc[k]; }
    }
}
