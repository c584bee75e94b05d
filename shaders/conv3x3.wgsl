// conv3x3: 3x3 convolution, stride 1, zero padding 1, with bias.
//
//   x  is (N, Cin, H, W)      w is (Cout, Cin, 3, 3)      b is (Cout)
//   y  is (N, Cout, H, W)
//   y[n,co,i,j] = b[co] + sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,i+ky-1,j+kx-1]
//
// The forward and the backward to the input share register-tiled kernels on weights
// packed by conv3x3_pack; which kernel runs for which adapter and shape is the table at
// the top of src/ops/conv3x3.rs. The backward to the weights is register-tiled too (8
// channels x 1 or 4 input channels x 9 taps, rows split in shares summed by a second
// entry point); the bias gradient is one channel per invocation. Every sum
// runs serially in a fixed order, so results are deterministic (no atomics). `*_off` are element offsets of
// the tensor inside its binding: the launcher may bind a byte range that starts before
// the tensor chunk (offsets must be aligned), see src/gpu/kernels.rs.
// Backward entry points ADD into their gradient buffers, never overwrite.
//
// The forward fuses the bias and the activation that always follows a convolution in the
// networks into its epilogue: y = act(conv + b) is written once, and the pre-activation
// never reaches memory. The backward then takes the activation's derivative from y
// (ELU: y + 1 where y <= 0; ReLU: y > 0), see elu_backward_from_output.

struct Params {
    total: u32,          // invocations that do work
    n: u32,              // batch (of this chunk)
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    off_a: u32,          // element offset of the first storage binding
    off_b: u32,          // element offset of the last storage binding
    cq: u32,             // vec4 groups of output channels (packed weights, shares)
    cq_flip: u32,        // conv3x3_pack_both: the flipped packing's vec4 groups
    row_groups: u32,     // tiled/rows: pixel groups per row (columns / 4, or / 8 for rows)
    rows_per_share: u32, // backward weight: image rows per share
    shares: u32,         // backward weight and its sum: the number of shares
    epilogue: u32,       // tiled/rows: bit 0 add bias and overwrite, else add into the
                         //   output; with bit 0, bits 1-2 the fused activation (0 none,
                         //   1 ELU, 2 ReLU, 3 leaky ReLU with `slope`)
    flip: u32,           // conv3x3_pack: 1 to pack the transposed, flipped weights
    bias_grad: u32,      // backward weight and its sum: 1 to sum the bias gradient too
    slope: f32,          // tiled/rows: the leaky ReLU's slope (activation 3)
}
@group(0) @binding(0) var<uniform> p: Params;

// ---- conv3x3_pack: 2 w, 4 packed ----
// Lays the weights out for conv3x3_tiled as (Cin, 9, Cq) vec4s, so that one vec4 load
// serves four output channels; channels past Cout are zero (Cq is even for the tiled
// kernel, which takes the groups in pairs). With p.flip set it packs the
// weights of the transposed, flipped convolution instead (input channels Cout, output
// channels Cin, tap k -> 8 - k): the backward to the input is that convolution of dy.
// Here p.cin and p.cout are the ORIGINAL weight's (Cout, Cin, 3, 3) dimensions.
// One invocation writes one row (input channel c, tap k) of the packing: its Cq x 4
// output channels, so that it divides once, not three times per element (integer
// division has no SIMD instruction on CPUs: lavapipe runs it lane by lane).
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read_write> packed: array<f32>;

// Element (input channel c, tap k, output channel o) of the forward packing, or with
// `flip` of the transposed, flipped one. Zero for the padding channels.
fn pack_value(c: u32, k: u32, o: u32, flip: bool) -> f32 {
    if (!flip) {
        if (o < p.cout) { return wt[(o * p.cin + c) * 9u + k]; }
    } else {
        if (o < p.cin) { return wt[(c * p.cin + o) * 9u + (8u - k)]; }
    }
    return 0.0;
}

@compute @workgroup_size(64)
fn conv3x3_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.total) { return; }
    let flip = p.flip != 0u;
    let c = r / 9u;
    let k = r % 9u;
    let c4 = p.cq * 4u;
    for (var o = 0u; o < c4; o++) { packed[r * c4 + o] = pack_value(c, k, o, flip); }
}

// ---- conv3x3_pack_both: 2 w, 4 packed, 1 flipped ----
// Both layouts of conv3x3_pack in one dispatch, for a convolution whose input needs a
// gradient: invocation r writes row r of the forward packing (p.cq groups) and of the
// flipped one (p.cq_flip groups), each where r is inside it.
@group(0) @binding(1) var<storage, read_write> flipped: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_pack_both(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.total) { return; }
    let c = r / 9u;
    let k = r % 9u;
    if (r < p.cin * 9u) {
        let c4 = p.cq * 4u;
        for (var o = 0u; o < c4; o++) { packed[r * c4 + o] = pack_value(c, k, o, false); }
    }
    if (r < p.cout * 9u) {
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

// ---- conv3x3_tiled: 1 x, 2 packed weights, 3 b, 4 y ----
//   y[n,co,r,c] (= b[co] +) sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,r+ky-1,c+kx-1]
// Register tiling for adapters where storage loads, not arithmetic, cost (lavapipe): one
// invocation computes 8 output channels x 4 adjacent pixels of a row, 32 sums in 8 vec4
// registers. Per input channel and kernel row it loads 6 inputs and 6 weight vec4s for
// 96 multiply-adds (the naive kernel: 2 loads per multiply-add). Each sum still runs over
// (ci, ky, kx) in a fixed order, so results are deterministic. Serves the forward
// (epilogue bit 0: with bias, overwrite) and the backward to the input (0: add into dx;
// x is dy, and the weights are packed flipped).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wq: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn ld(rowb: u32, c: i32) -> f32 {
    if (c < 0 || c >= i32(p.w)) { return 0.0; }
    return x[rowb + u32(c)];
}

@compute @workgroup_size(64)
fn conv3x3_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let pairs = p.cq / 2u; // p.cq is even here: channels in pairs of vec4 groups
    let tx = i % p.row_groups;
    let row = (i / p.row_groups) % p.h;
    let g = (i / (p.row_groups * p.h)) % pairs;
    let n = i / (p.row_groups * p.h * pairs);
    let c0 = i32(tx * 4u);
    var t = zero_8x4();
    for (var ci = 0u; ci < p.cin; ci++) {
        let xb = p.off_a + (n * p.cin + ci) * hw;
        let wb = ci * 9u * p.cq + 2u * g;
        for (var ky = 0u; ky < 3u; ky++) {
            let sy = i32(row) + i32(ky) - 1;
            if (sy < 0 || sy >= i32(p.h)) { continue; }
            let rowb = xb + u32(sy) * p.w;
            let v0 = vec4(ld(rowb, c0 - 1));
            let v1 = vec4(ld(rowb, c0));
            let v2 = vec4(ld(rowb, c0 + 1));
            let v3 = vec4(ld(rowb, c0 + 2));
            let v4 = vec4(ld(rowb, c0 + 3));
            let v5 = vec4(ld(rowb, c0 + 4));
            let k0 = wb + (ky * 3u) * p.cq;
            let k1 = k0 + p.cq;
            let k2 = k1 + p.cq;
            let w0 = wq[k0]; let w1 = wq[k1]; let w2 = wq[k2];
            let u0 = wq[k0 + 1u]; let u1 = wq[k1 + 1u]; let u2 = wq[k2 + 1u];
            t = fma_row_8x4(t, v0, v1, v2, v3, v4, v5, w0, w1, w2, u0, u1, u2);
        }
    }
    store_8x4(n, g, row, tx * 4u, t);
}

// ---- conv3x3_naive: 1 x, 2 w (as wt: (Cout, Cin, 3, 3), not packed), 3 b, 4 y ----
// The first version of this kernel, kept as the start of the progression to the tiled
// kernels (the kernels bench measures both): one invocation per output value, its
// 9 Cin terms summed in (ci, ky, kx) order, every input and weight loaded from storage
// (2 loads per multiply-add). Forward only, y = conv + b; the networks do not use it.
@compute @workgroup_size(64)
fn conv3x3_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let c = i % p.w;
    let r = (i / p.w) % p.h;
    let co = (i / hw) % p.cout;
    let n = i / (hw * p.cout);
    var acc = bias[co];
    for (var ci = 0u; ci < p.cin; ci++) {
        let xb = p.off_a + (n * p.cin + ci) * hw;
        for (var ky = 0u; ky < 3u; ky++) {
            let sy = i32(r) + i32(ky) - 1;
            if (sy < 0 || sy >= i32(p.h)) { continue; }
            for (var kx = 0u; kx < 3u; kx++) {
                let sx = i32(c) + i32(kx) - 1;
                if (sx < 0 || sx >= i32(p.w)) { continue; }
                acc += wt[((co * p.cin + ci) * 3u + ky) * 3u + kx] * x[xb + u32(sy) * p.w + u32(sx)];
            }
        }
    }
    y[p.off_b + i] = acc;
}

// The 8 x 4 tile of conv3x3_tiled: a*, the sums of output channels
// 8g .. 8g+3, b*, of 8g+4 .. 8g+7; *0 .. *3, the four pixels.
struct Tile8x4 { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
                 b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32> }

fn zero_8x4() -> Tile8x4 {
    let z = vec4<f32>(0.0);
    return Tile8x4(z, z, z, z, z, z, z, z);
}

// One kernel row into the tile: inputs v0 .. v5 (the tile's 4 columns and their halo),
// weights w* (channels 8g ..) and u* (8g+4 ..) of taps kx = 0, 1, 2; kx outer, pixels
// inner, the order every conv3x3 tile adds in.
fn fma_row_8x4(t0: Tile8x4, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
               v4: vec4<f32>, v5: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>,
               u0: vec4<f32>, u1: vec4<f32>, u2: vec4<f32>) -> Tile8x4 {
    var t = t0;
    t.a0 = fma(w0, v0, t.a0); t.a1 = fma(w0, v1, t.a1); t.a2 = fma(w0, v2, t.a2); t.a3 = fma(w0, v3, t.a3);
    t.b0 = fma(u0, v0, t.b0); t.b1 = fma(u0, v1, t.b1); t.b2 = fma(u0, v2, t.b2); t.b3 = fma(u0, v3, t.b3);
    t.a0 = fma(w1, v1, t.a0); t.a1 = fma(w1, v2, t.a1); t.a2 = fma(w1, v3, t.a2); t.a3 = fma(w1, v4, t.a3);
    t.b0 = fma(u1, v1, t.b0); t.b1 = fma(u1, v2, t.b1); t.b2 = fma(u1, v3, t.b2); t.b3 = fma(u1, v4, t.b3);
    t.a0 = fma(w2, v2, t.a0); t.a1 = fma(w2, v3, t.a1); t.a2 = fma(w2, v4, t.a2); t.a3 = fma(w2, v5, t.a3);
    t.b0 = fma(u2, v2, t.b0); t.b1 = fma(u2, v3, t.b1); t.b2 = fma(u2, v4, t.b2); t.b3 = fma(u2, v5, t.b3);
    return t;
}

// The 8 x 4 tile's epilogue: its sums at pixels c0 .. c0+3 of `row` of sample n, those
// inside y.
fn store_8x4(n: u32, g: u32, row: u32, c0: u32, t: Tile8x4) {
    let acc = array<vec4<f32>, 8>(t.a0, t.a1, t.a2, t.a3, t.b0, t.b1, t.b2, t.b3);
    let with_bias = (p.epilogue & 1u) != 0u;
    for (var l = 0u; l < 8u; l++) {
        let co = g * 8u + l;
        if (co >= p.cout) { break; }
        let yb = p.off_b + (n * p.cout + co) * p.h * p.w + row * p.w;
        let b = select(0.0, bias[co], with_bias);
        let half = (l / 4u) * 4u; // 0 for a*, 4 for b*
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + j;
            if (c >= p.w) { break; }
            let v = acc[half + j][l % 4u];
            if (with_bias) {
                y[yb + c] = epilogue(v + b);
            } else {
                y[yb + c] += v;
            }
        }
    }
}

// ---- conv3x3_rows: 1 x, 2 packed weights, 3 b, 4 y (CPU adapters) ----
// The same convolution as conv3x3_tiled, tiled for lavapipe: one invocation computes
// 4 output channels x 8 adjacent pixels on each of two adjacent rows (16 vec4 sums). On
// lavapipe (Mesa 25.0) a storage load whose address is not a compile-time constant is
// compiled into a loop over the SIMD lanes with a bounds check and a branch per lane and
// component, so the cost of this kernel is the number of values it loads per
// multiply-add. Per input channel it walks the four input rows r-1 .. r+2 once, loading
// 10 inputs from each, and the 3 weight vec4s of the kernel row each output row needs
// from it: 40 inputs + 18 vec4s (112 values) for 576 multiply-adds. One output row per
// invocation loads 66 values for 288 (measured 5 to 11% slower), three rows 158 for 864
// (4 to 8% slower: 24 vec4 sums spill); conv3x3_tiled (8 x 4)
// 30 per 96 (1.5x slower again); keeping all 9 weight vec4s of an input channel in a
// local array instead of reloading them measured 10% slower than one row (the array is
// indexed by the row, so it lives in memory); 16 pixels of one row spill. Every sum
// still runs over (ci, ky, kx) in the same order as conv3x3_tiled (input rows outside
// the image are skipped, not added as zeros), so the two give the same bits.
// p.row_groups is the number of 8-pixel groups per row; p.cq as in conv3x3_tiled (it may
// include padding groups, which this kernel never reads).
@compute @workgroup_size(64)
fn conv3x3_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let groups = (p.cout + 3u) / 4u;
    let hh = (p.h + 1u) / 2u;
    let tx = i % p.row_groups;
    let rp = (i / p.row_groups) % hh;
    let g = (i / (p.row_groups * hh)) % groups;
    let n = i / (p.row_groups * hh * groups);
    let c0 = i32(tx * 8u);
    let r0 = i32(rp * 2u);
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin; ci++) {
        let xb = p.off_a + (n * p.cin + ci) * hw;
        let wb = ci * 9u * p.cq + g;
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
    let yb = p.off_b + (n * p.cout + g * 4u) * hw + u32(r0) * p.w + tx * 8u;
    store_rows(yb, g * 4u, tx * 8u, a0, a1, a2, a3, a4, a5, a6, a7);
    if (u32(r0) + 1u < p.h) {
        store_rows(yb + p.w, g * 4u, tx * 8u, b0, b1, b2, b3, b4, b5, b6, b7);
    }
}

// conv3x3_rows' epilogue for one output row: the 4 channels (vec4 components) x 8 pixels
// of its tile, starting at element yb (channel co0, column c) of y. Written out without
// loops or array indexing, which lavapipe would otherwise keep in memory and gather from.
fn store_rows(yb: u32, co0: u32, c: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>,
              v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>) {
    let hw = p.h * p.w;
    store8(yb, co0, c, v0.x, v1.x, v2.x, v3.x, v4.x, v5.x, v6.x, v7.x);
    if (co0 + 1u < p.cout) { store8(yb + hw, co0 + 1u, c, v0.y, v1.y, v2.y, v3.y, v4.y, v5.y, v6.y, v7.y); }
    if (co0 + 2u < p.cout) { store8(yb + 2u * hw, co0 + 2u, c, v0.z, v1.z, v2.z, v3.z, v4.z, v5.z, v6.z, v7.z); }
    if (co0 + 3u < p.cout) { store8(yb + 3u * hw, co0 + 3u, c, v0.w, v1.w, v2.w, v3.w, v4.w, v5.w, v6.w, v7.w); }
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

// ---- conv3x3_image4: 1 x, 2 packed weights, 3 b, 4 y (CPU adapters, images of at most 4 x 4) ----
// The deepest levels work on tiny images (the quick classifier's last blocks at 4x4 and
// 2x2, the demo U-Net's bottom at 4x4), where most of conv3x3_rows' 8-pixel rows lie
// outside the image: at 4x4 it loads 112 values per input channel for 288 useful
// multiply-adds. Here one invocation takes a whole image (rows and columns past H and W
// are zeros) for 4 output channels: per input channel its 16 pixels and the 9 weight
// vec4s, 25 loads for up to 576 multiply-adds; output rows past H and columns past W
// are skipped (uniform branches). Every sum runs over (ci, ky, kx) in the same order as
// the other tiles; a tap outside the image adds a product of zero, which leaves a sum
// started at +0 unchanged bit for bit (the other tiles skip such input rows), so all
// tiles still give the same bits. p.total = N * ceil(Cout / 4); p.cq as in conv3x3_tiled.

// The 9 taps' weight vec4s of one input channel, tap ky * 3 + kx.
struct W9 {
    k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>,
    k3: vec4<f32>, k4: vec4<f32>, k5: vec4<f32>,
    k6: vec4<f32>, k7: vec4<f32>, k8: vec4<f32>,
}

// One output row's 4 pixels (columns 0 .. 3), each a vec4 of 4 output channels.
struct Row4 { c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32> }

// Row r of the image at element xb: its pixels (zero past p.w), or zeros past p.h.
fn image_row(xb: u32, r: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (r < p.h) {
        let b = xb + r * p.w;
        v.x = x[b];
        if (p.w > 1u) { v.y = x[b + 1u]; }
        if (p.w > 2u) { v.z = x[b + 2u]; }
        if (p.w > 3u) { v.w = x[b + 3u]; }
    }
    return v;
}

// a + the 9 taps at one pixel, whose neighbourhood is rows u (above), m, d (below) at
// columns l, c, r.
fn taps9(a: vec4<f32>, w: W9, ul: f32, uc: f32, ur: f32, ml: f32, mc: f32, mr: f32,
         dl: f32, dc: f32, dr: f32) -> vec4<f32> {
    var s = fma(w.k0, vec4(ul), a);
    s = fma(w.k1, vec4(uc), s); s = fma(w.k2, vec4(ur), s);
    s = fma(w.k3, vec4(ml), s); s = fma(w.k4, vec4(mc), s); s = fma(w.k5, vec4(mr), s);
    s = fma(w.k6, vec4(dl), s); s = fma(w.k7, vec4(dc), s); s = fma(w.k8, vec4(dr), s);
    return s;
}

// One output row's sums plus one input channel: input rows u, m, d around it.
fn row_taps(o: Row4, w: W9, u: vec4<f32>, m: vec4<f32>, d: vec4<f32>) -> Row4 {
    var s = o;
    s.c0 = taps9(s.c0, w, 0.0, u.x, u.y, 0.0, m.x, m.y, 0.0, d.x, d.y);
    s.c1 = taps9(s.c1, w, u.x, u.y, u.z, m.x, m.y, m.z, d.x, d.y, d.z);
    if (p.w > 2u) { s.c2 = taps9(s.c2, w, u.y, u.z, u.w, m.y, m.z, m.w, d.y, d.z, d.w); }
    if (p.w > 3u) { s.c3 = taps9(s.c3, w, u.z, u.w, 0.0, m.z, m.w, 0.0, d.z, d.w, 0.0); }
    return s;
}

// One output row (element yb: channel co0, column 0) for the 4 channels inside Cout:
// conv3x3_rows' epilogue, whose pixels past the row (here columns 4 to 7, and any past W)
// are not stored.
fn store_row4(yb: u32, co0: u32, s: Row4) {
    let z = vec4<f32>(0.0);
    store_rows(yb, co0, 0u, s.c0, s.c1, s.c2, s.c3, z, z, z, z);
}

@compute @workgroup_size(64)
fn conv3x3_image4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let groups = (p.cout + 3u) / 4u;
    let g = i % groups;
    let n = i / groups;
    let z = vec4<f32>(0.0);
    var o0 = Row4(z, z, z, z); var o1 = o0; var o2 = o0; var o3 = o0;
    for (var ci = 0u; ci < p.cin; ci++) {
        let xb = p.off_a + (n * p.cin + ci) * hw;
        let x0 = image_row(xb, 0u); let x1 = image_row(xb, 1u);
        let x2 = image_row(xb, 2u); let x3 = image_row(xb, 3u);
        let wb = ci * 9u * p.cq + g;
        let w = W9(wq[wb], wq[wb + p.cq], wq[wb + 2u * p.cq],
                   wq[wb + 3u * p.cq], wq[wb + 4u * p.cq], wq[wb + 5u * p.cq],
                   wq[wb + 6u * p.cq], wq[wb + 7u * p.cq], wq[wb + 8u * p.cq]);
        o0 = row_taps(o0, w, z, x0, x1);
        if (p.h > 1u) { o1 = row_taps(o1, w, x0, x1, x2); }
        if (p.h > 2u) { o2 = row_taps(o2, w, x1, x2, x3); }
        if (p.h > 3u) { o3 = row_taps(o3, w, x2, x3, z); }
    }
    let yb = p.off_b + (n * p.cout + g * 4u) * hw;
    store_row4(yb, g * 4u, o0);
    if (p.h > 1u) { store_row4(yb + p.w, g * 4u, o1); }
    if (p.h > 2u) { store_row4(yb + 2u * p.w, g * 4u, o2); }
    if (p.h > 3u) { store_row4(yb + 3u * p.w, g * 4u, o3); }
}

// ---- conv3x3_backward_weight, conv3x3_backward_weight_quad: 1 dy, 2 x (as xin), 4 partial ----
//   dw[co,ci,ky,kx] += sum_{n,r,c} dy[n,co,r,c] * x[n,ci,r+ky-1,c+kx-1]
// Register-tiled like the forward: one invocation owns 8 output channels (the vec4
// groups 2g and 2g+1) x 1 input channel (conv3x3_backward_weight, on GPUs) or 4
// (conv3x3_backward_weight_quad, on CPU adapters) x 9 taps, and walks its share of the
// (n, r) rows along c with a sliding 3x3 window of each input channel: per pixel 8 dy
// loads and 3 x loads per input channel. One input channel keeps 72 sums in 18 vec4
// registers; four keep 288 in 72, which spill: on lavapipe a spill is one vector store
// and load, a storage load a loop over the lanes, so 20 loads per 288 multiply-adds win.
// Measured on lavapipe against the quad: 1 input channel (11 loads per 72) 1.6x slower,
// 2 (14 per 144) 1.15x slower, 8 (32 per 576) 1.4x slower. Input channels past Cin load
// nothing and write nothing. The rows are split into `splits` shares (p.rows_per_share rows each)
// so that even the first layer (1 input channel) has work for every core; each share
// writes its sums to `partial` (splits, Cin, 9, Cq) vec4s, and
// conv3x3_backward_weight_sum adds the shares in a fixed order. With p.bias_grad, the
// invocations of the first input channel (or quad) also sum dy over their share (the bias
// gradient's share: 8 adds per pixel, no extra load) into (splits, Cq) vec4s after
// those. Here p.shares is the number of splits. Both give the same bits.
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<vec4<f32>>;

fn ldx(rowb: u32, ok: bool, c: u32) -> f32 {
    if (!ok || c >= p.w) { return 0.0; }
    return xin[rowb + c];
}

fn ldy(base: u32, co: u32) -> f32 {
    if (co >= p.cout) { return 0.0; }
    return dy[base + co * p.h * p.w];
}

// The 9 taps' sums (tap ky * 3 + kx) of one input channel and one vec4 group of output
// channels. Structs and helpers instead of arrays: their fields are constant-indexed, so
// they stay in registers (an array indexed in a loop would live in memory on lavapipe).
struct Taps {
    t0: vec4<f32>, t1: vec4<f32>, t2: vec4<f32>,
    t3: vec4<f32>, t4: vec4<f32>, t5: vec4<f32>,
    t6: vec4<f32>, t7: vec4<f32>, t8: vec4<f32>,
}

// The 3x3 window of one input channel around the current column c: rows r-1, r, r+1
// (0, 1, 2) at columns c-1 (l), c (m) and c+1 (r).
struct Window {
    l0: f32, m0: f32, r0: f32,
    l1: f32, m1: f32, r1: f32,
    l2: f32, m2: f32, r2: f32,
}

// Where one input channel's three rows start, and whether each exists (zero padding, or
// an input channel past Cin).
struct Rows {
    b0: u32, b1: u32, b2: u32,
    k0: bool, k1: bool, k2: bool,
}

fn zero_taps() -> Taps {
    let z = vec4<f32>(0.0);
    return Taps(z, z, z, z, z, z, z, z, z);
}

// The rows of input channel `ci` (at element xb) around row r; nothing when ci >= Cin.
fn rows_of(xb: u32, ci: u32, r: u32) -> Rows {
    let has = ci < p.cin;
    let ok0 = r >= 1u;
    let ok2 = r + 1u < p.h;
    return Rows(xb + select(0u, (r - 1u) * p.w, ok0), xb + r * p.w,
                xb + select(0u, (r + 1u) * p.w, ok2), has && ok0, has, has && ok2);
}

// The window before column 0: only column 0 loaded (as `r`), so that the first slide
// makes it the middle.
fn window_start(x: Rows) -> Window {
    return Window(0.0, 0.0, ldx(x.b0, x.k0, 0u), 0.0, 0.0, ldx(x.b1, x.k1, 0u),
                  0.0, 0.0, ldx(x.b2, x.k2, 0u));
}

// The window moved to column c: three loads (column c + 1).
fn slide(w: Window, x: Rows, c: u32) -> Window {
    return Window(w.m0, w.r0, ldx(x.b0, x.k0, c + 1u), w.m1, w.r1, ldx(x.b1, x.k1, c + 1u),
                  w.m2, w.r2, ldx(x.b2, x.k2, c + 1u));
}

// a + d x w for each tap: 9 vec4 multiply-adds.
fn add_taps(a: Taps, d: vec4<f32>, w: Window) -> Taps {
    return Taps(fma(d, vec4(w.l0), a.t0), fma(d, vec4(w.m0), a.t1), fma(d, vec4(w.r0), a.t2),
                fma(d, vec4(w.l1), a.t3), fma(d, vec4(w.m1), a.t4), fma(d, vec4(w.r1), a.t5),
                fma(d, vec4(w.l2), a.t6), fma(d, vec4(w.m2), a.t7), fma(d, vec4(w.r2), a.t8));
}

// dy at pixel `base` for output channels co .. co + 3 (zero past Cout).
fn ldy4(base: u32, co: u32) -> vec4<f32> {
    return vec4<f32>(ldy(base, co), ldy(base, co + 1u), ldy(base, co + 2u), ldy(base, co + 3u));
}

// One vec4 group's 9 taps of a weight-gradient share, from element `base` on (taps p.cq
// vec4s apart).
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
fn conv3x3_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let cq2 = (p.cq + 1u) / 2u;
    let ci = i % p.cin;
    let g = (i / p.cin) % cq2;
    let s = i / (p.cin * cq2);
    let co = g * 8u;
    // a: output channels 8g .. 8g+3, b: 8g+4 .. 8g+7 (where that group exists)
    let has_b = 2u * g + 1u < p.cq;
    var a = zero_taps(); var b = zero_taps();
    // The bias gradient's share: the sum of dy over the same pixels (written by ci == 0).
    var sd = vec4<f32>(0.0); var se = vec4<f32>(0.0);
    for (var q = s * p.rows_per_share; q < min((s + 1u) * p.rows_per_share, p.n * p.h); q++) {
        let n = q / p.h;
        let r = q % p.h;
        let x = rows_of(p.off_b + (n * p.cin + ci) * hw, ci, r);
        let yb = p.off_a + n * p.cout * hw + r * p.w;
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
    let base = (s * p.cin + ci) * 9u * p.cq + 2u * g;
    store_taps(base, a);
    if (has_b) { store_taps(base + 1u, b); }
    if (ci == 0u && p.bias_grad != 0u) {
        let bb = p.shares * p.cin * 9u * p.cq + s * p.cq + 2u * g;
        partial[bb] = sd;
        if (has_b) { partial[bb + 1u] = se; }
    }
}

@compute @workgroup_size(64)
fn conv3x3_backward_weight_quad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let cq2 = (p.cq + 1u) / 2u;
    let quads = (p.cin + 3u) / 4u;
    let ci = 4u * (i % quads);
    let g = (i / quads) % cq2;
    let s = i / (quads * cq2);
    let co = g * 8u;
    let has_b = 2u * g + 1u < p.cq;
    var acc = zero_quad();
    for (var q = s * p.rows_per_share; q < min((s + 1u) * p.rows_per_share, p.n * p.h); q++) {
        let n = q / p.h;
        let r = q % p.h;
        let xb = p.off_b + (n * p.cin + ci) * hw;
        let x0 = rows_of(xb, ci, r);
        let x1 = rows_of(xb + hw, ci + 1u, r);
        let x2 = rows_of(xb + 2u * hw, ci + 2u, r);
        let x3 = rows_of(xb + 3u * hw, ci + 3u, r);
        let yb = p.off_a + n * p.cout * hw + r * p.w;
        var w0 = window_start(x0); var w1 = window_start(x1);
        var w2 = window_start(x2); var w3 = window_start(x3);
        for (var c = 0u; c < p.w; c++) {
            w0 = slide(w0, x0, c); w1 = slide(w1, x1, c);
            w2 = slide(w2, x2, c); w3 = slide(w3, x3, c);
            acc = add_quad(acc, ldy4(yb + c, co), ldy4_b(yb + c, co + 4u, has_b), w0, w1, w2, w3,
                           has_b);
        }
    }
    store_quad(s, ci, g, acc);
}

// The sums of a quad kernel's invocation: a*: output channels 8g .. 8g+3, b*: 8g+4 ..
// 8g+7; *0 .. *3: input channels ci .. ci+3; sd, se: the same channels' dy (the bias
// gradient's share).
struct Quad {
    a0: Taps, a1: Taps, a2: Taps, a3: Taps,
    b0: Taps, b1: Taps, b2: Taps, b3: Taps,
    sd: vec4<f32>, se: vec4<f32>,
}

fn zero_quad() -> Quad {
    let z = zero_taps();
    return Quad(z, z, z, z, z, z, z, z, vec4<f32>(0.0), vec4<f32>(0.0));
}

// One pixel into a quad's sums: dy d (channels 8g .. 8g+3) and e (8g+4 .. 8g+7), and the
// windows of the four input channels; e's only where that group exists (`has_b`, uniform
// for an invocation: a layer of at most 4 output channels, the classifier's first
// block, does half the work).
fn add_quad(q: Quad, d: vec4<f32>, e: vec4<f32>, w0: Window, w1: Window, w2: Window,
            w3: Window, has_b: bool) -> Quad {
    var s = q;
    s.a0 = add_taps(q.a0, d, w0); s.a1 = add_taps(q.a1, d, w1);
    s.a2 = add_taps(q.a2, d, w2); s.a3 = add_taps(q.a3, d, w3);
    s.sd = q.sd + d;
    if (has_b) {
        s.b0 = add_taps(q.b0, e, w0); s.b1 = add_taps(q.b1, e, w1);
        s.b2 = add_taps(q.b2, e, w2); s.b3 = add_taps(q.b3, e, w3);
        s.se = q.se + e;
    }
    return s;
}

// dy of the second vec4 group (output channels co .. co + 3) where it exists, else zeros.
fn ldy4_b(base: u32, co: u32, has_b: bool) -> vec4<f32> {
    if (!has_b) { return vec4<f32>(0.0); }
    return ldy4(base, co);
}

// A quad kernel's sums into share s: input channels ci .. ci+3 (those inside Cin), the
// vec4 groups 2g and 2g+1 (the second where it exists), and with p.bias_grad the bias
// share from the invocations of the first quad.
fn store_quad(s: u32, ci: u32, g: u32, q: Quad) {
    let base = (s * p.cin + ci) * 9u * p.cq + 2u * g;
    let has_b = 2u * g + 1u < p.cq;
    let step = 9u * p.cq; // from one input channel's taps to the next's
    store_taps(base, q.a0);
    if (has_b) { store_taps(base + 1u, q.b0); }
    if (ci + 1u < p.cin) {
        store_taps(base + step, q.a1);
        if (has_b) { store_taps(base + step + 1u, q.b1); }
    }
    if (ci + 2u < p.cin) {
        store_taps(base + 2u * step, q.a2);
        if (has_b) { store_taps(base + 2u * step + 1u, q.b2); }
    }
    if (ci + 3u < p.cin) {
        store_taps(base + 3u * step, q.a3);
        if (has_b) { store_taps(base + 3u * step + 1u, q.b3); }
    }
    if (ci == 0u && p.bias_grad != 0u) {
        let bb = p.shares * p.cin * 9u * p.cq + s * p.cq + 2u * g;
        partial[bb] = q.sd;
        if (has_b) { partial[bb + 1u] = q.se; }
    }
}

// ---- conv3x3_backward_weight_sum: 1 partial (as parts), 4 dw, 3 db ----
// dw[co,ci,k] += the shares' sums, added in split order; with p.bias_grad, then also
// db[co] += the bias shares' sums. One invocation per vec4 of the shares, (ci, k, g) for
// the weights (Cin 9 Cq of them), then g for the biases: neighbouring invocations load
// neighbouring vec4s (one load per 4 sums; on a GPU the loads coalesce, where one
// invocation per (co, ci) loaded 9 scalars a stride apart and left all but a few hundred
// lanes idle). p.shares is the number of splits; p.total is Cin 9 Cq, plus Cq with the
// bias gradient.
@group(0) @binding(1) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbw: array<f32>;

@compute @workgroup_size(64)
fn conv3x3_backward_weight_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let nw = p.cin * 9u * p.cq;
    // Shares of split s: the weights' (Cin, 9, Cq) vec4s at s nw, the biases' (Cq) after
    // all the splits' weights, at splits nw + s Cq.
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
    let tap = (i / p.cq) % 9u;
    let ci = i / (9u * p.cq);
    for (var k = 0u; k < 4u; k++) {
        let co = 4u * g + k;
        if (co < p.cout) { dw[(co * p.cin + ci) * 9u + tap] += acc[k]; }
    }
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
