// conv3x3 on CPU adapters with 8-lane subgroups (lavapipe): conv3x3_rows with vec4 input
// loads and weight loads shared across the subgroup. Compiled as the prelude +
// shaders/conv3x3.wgsl + this file (src/gpu/kernels.rs), so it uses that file's Params,
// bindings and epilogue (`store_rows`); it uses subgroup built-ins, so it exists only on
// devices opened with wgpu's SUBGROUP feature.
//
// Why: on lavapipe the 8 invocations of a subgroup are the 8 lanes of one AVX2 vector,
// and a storage load whose address the compiler cannot prove uniform is a loop over the
// lanes, with per lane a mask test, the buffer's base and size reloaded, and per
// component a bounds check, branch, load and insert: about 16 instructions for a scalar
// per lane, 34 for a vec4. conv3x3_rows loads per input channel 40 scalar inputs and 18
// weight vec4s per lane (every lane fetching the same weights). Here:
// - each row of a tile is two aligned vec4 loads (its 8 columns); the column before and
//   the column after come from the neighbouring lanes (subgroupShuffleUp/Down, one
//   register permute each), which hold the neighbouring tiles of the same row, or are
//   loaded by the lanes at a subgroup's edges;
// - where the 8 lanes of a subgroup own the same 4 output channels (every subgroup at
//   every U-Net level from 16x16 up), lane k loads tap k, lane 0 tap 8 as well, and
//   subgroupBroadcast hands every lane all nine.
// Per input channel a lane then loads 8 vec4s of input and 2 of weights, where
// conv3x3_rows loads 40 scalars and 18 vec4s: 1.5 to 1.9x faster measured.
//
// Every sum runs over (ci, ky, kx) in the same order as conv3x3_rows and conv3x3_tiled,
// so the three give the same bits. Where a subgroup's lanes do not share the channel
// group and sample (or its size is not 8), it loads its weights lane by lane; where a
// neighbouring lane does not hold the neighbouring tile, the halo is loaded: the kernel
// is right for any subgroup layout, and fast for lavapipe's.

// The 10 inputs of one row a tile reads (columns c0-1 .. c0+8).
struct Row10 { v0: f32, v1: f32, v2: f32, v3: f32, v4: f32, v5: f32, v6: f32, v7: f32, v8: f32, v9: f32 }

// The 8 vec4 sums of one output row of a tile (4 channels x 8 pixels).
struct Sums8 { s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>, s4: vec4<f32>, s5: vec4<f32>, s6: vec4<f32>, s7: vec4<f32> }

// One kernel row (taps w0, w1, w2 = kx 0, 1, 2) of one input row into 8 sums, kx outer,
// pixels inner, as conv3x3_rows adds them.
fn fma_row(a: Sums8, x: Row10, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>) -> Sums8 {
    var s = a;
    s.s0 = fma(w0, vec4(x.v0), s.s0); s.s1 = fma(w0, vec4(x.v1), s.s1);
    s.s2 = fma(w0, vec4(x.v2), s.s2); s.s3 = fma(w0, vec4(x.v3), s.s3);
    s.s4 = fma(w0, vec4(x.v4), s.s4); s.s5 = fma(w0, vec4(x.v5), s.s5);
    s.s6 = fma(w0, vec4(x.v6), s.s6); s.s7 = fma(w0, vec4(x.v7), s.s7);
    s.s0 = fma(w1, vec4(x.v1), s.s0); s.s1 = fma(w1, vec4(x.v2), s.s1);
    s.s2 = fma(w1, vec4(x.v3), s.s2); s.s3 = fma(w1, vec4(x.v4), s.s3);
    s.s4 = fma(w1, vec4(x.v5), s.s4); s.s5 = fma(w1, vec4(x.v6), s.s5);
    s.s6 = fma(w1, vec4(x.v7), s.s6); s.s7 = fma(w1, vec4(x.v8), s.s7);
    s.s0 = fma(w2, vec4(x.v2), s.s0); s.s1 = fma(w2, vec4(x.v3), s.s1);
    s.s2 = fma(w2, vec4(x.v4), s.s2); s.s3 = fma(w2, vec4(x.v5), s.s3);
    s.s4 = fma(w2, vec4(x.v6), s.s4); s.s5 = fma(w2, vec4(x.v7), s.s5);
    s.s6 = fma(w2, vec4(x.v8), s.s6); s.s7 = fma(w2, vec4(x.v9), s.s7);
    return s;
}

// ---- conv3x3_rows_subgroup: 1 x (as vec4s), 2 packed weights, 3 b, 4 y ----
// The tile and invocation order of conv3x3_rows (4 output channels x 8 pixels x 2 rows;
// p.cq is conv3x3_tiled's group count, p.row_groups the 8-pixel groups per row), for rows of a
// multiple of 8 pixels starting on a vec4 boundary (the launcher checks; other shapes
// take conv3x3_rows). Invocations past p.total run the tile of the last one and store
// nothing, so that every lane of a subgroup runs the loop and the shuffles read live
// lanes.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn conv3x3_rows_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(subgroup_invocation_id) lane: u32,
                         @builtin(subgroup_size) sg_size: u32) {
    let id = flat_id(wid, nwg, lid);
    let live = id < p.total;
    let i = min(id, p.total - 1u);
    let hw = p.h * p.w;
    let groups = (p.cout + 3u) / 4u;
    let hh = (p.h + 1u) / 2u;
    let tx = i % p.row_groups;
    let rp = (i / p.row_groups) % hh;
    let gn = i / (p.row_groups * hh); // (sample, channel group)
    let g = gn % groups;
    let n = gn / groups;
    let r0 = rp * 2u;
    // Weights: shared where every lane owns the same channel group and sample.
    let same = subgroupAll(subgroupBroadcast(gn, 0u) == gn);
    let share = sg_size == 8u && same;
    let kl = min(lane, 7u) * p.cq; // the tap this lane loads for the subgroup
    // Halo columns: from the neighbouring lane where it holds the neighbouring tile of the
    // same row (the tile's first / last column), else loaded (subgroup edges), or zero
    // padding at the image's edges.
    let has_left = tx > 0u;
    let has_right = tx + 1u < p.row_groups;
    // (The shuffles run in every lane, outside the short-circuiting &&.)
    let before = subgroupShuffleUp(i, 1u);
    let after = subgroupShuffleDown(i, 1u);
    let left_lane = lane > 0u && before + 1u == i;
    let right_lane = lane + 1u < sg_size && after == i + 1u;
    var a = Sums8(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
    var b = a;
    for (var ci = 0u; ci < p.cin; ci++) {
        let xq = (p.off_a + (n * p.cin + ci) * hw) / 4u + tx * 2u; // vec4 of the tile in row 0
        let wb = ci * 9u * p.cq + g;
        var k0: vec4<f32>; var k1: vec4<f32>; var k2: vec4<f32>;
        var k3: vec4<f32>; var k4: vec4<f32>; var k5: vec4<f32>;
        var k6: vec4<f32>; var k7: vec4<f32>; var k8: vec4<f32>;
        if (share) {
            let mine = wq[wb + kl];
            var last = vec4(0.0);
            if (lane == 0u) { last = wq[wb + 8u * p.cq]; }
            k0 = subgroupBroadcast(mine, 0u); k1 = subgroupBroadcast(mine, 1u);
            k2 = subgroupBroadcast(mine, 2u); k3 = subgroupBroadcast(mine, 3u);
            k4 = subgroupBroadcast(mine, 4u); k5 = subgroupBroadcast(mine, 5u);
            k6 = subgroupBroadcast(mine, 6u); k7 = subgroupBroadcast(mine, 7u);
            k8 = subgroupBroadcast(last, 0u);
        } else {
            k0 = wq[wb]; k1 = wq[wb + p.cq]; k2 = wq[wb + 2u * p.cq];
            k3 = wq[wb + 3u * p.cq]; k4 = wq[wb + 4u * p.cq]; k5 = wq[wb + 5u * p.cq];
            k6 = wq[wb + 6u * p.cq]; k7 = wq[wb + 7u * p.cq]; k8 = wq[wb + 8u * p.cq];
        }
        // Input rows r0-1 .. r0+2; output row r0 (a) takes kernel rows 0, 1, 2 from the
        // first three, row r0+1 (b) from the last three. Rows outside the image are
        // skipped, as in conv3x3_rows; they are loaded all the same (clamped), so that
        // every lane reaches the shuffles in row_of.
        let wq4 = p.w / 4u;
        let last = p.h - 1u;
        let x0 = row_of(xq + (max(r0, 1u) - 1u) * wq4, has_left, has_right, left_lane, right_lane);
        let x1 = row_of(xq + r0 * wq4, has_left, has_right, left_lane, right_lane);
        let x2 = row_of(xq + min(r0 + 1u, last) * wq4, has_left, has_right, left_lane, right_lane);
        let x3 = row_of(xq + min(r0 + 2u, last) * wq4, has_left, has_right, left_lane, right_lane);
        if (r0 >= 1u) { a = fma_row(a, x0, k0, k1, k2); }
        a = fma_row(a, x1, k3, k4, k5);
        b = fma_row(b, x1, k0, k1, k2);
        if (r0 + 1u < p.h) {
            a = fma_row(a, x2, k6, k7, k8);
            b = fma_row(b, x2, k3, k4, k5);
        }
        if (r0 + 2u < p.h) { b = fma_row(b, x3, k6, k7, k8); }
    }
    if (!live) { return; }
    let yb = p.off_b + (n * p.cout + g * 4u) * hw + r0 * p.w + tx * 8u;
    store_rows(yb, g * 4u, tx * 8u, a.s0, a.s1, a.s2, a.s3, a.s4, a.s5, a.s6, a.s7);
    if (r0 + 1u < p.h) {
        store_rows(yb + p.w, g * 4u, tx * 8u, b.s0, b.s1, b.s2, b.s3, b.s4, b.s5, b.s6, b.s7);
    }
}

// The 10 inputs of a tile's row whose 8 columns are the vec4s q and q+1: two vec4 loads,
// the halo columns from the neighbouring lanes' tiles where they hold them. Called in
// uniform control flow (the shuffles read the neighbouring lanes).
fn row_of(q: u32, has_left: bool, has_right: bool, left_lane: bool, right_lane: bool) -> Row10 {
    let lo = x4[q];
    let hi = x4[q + 1u];
    let from_left = subgroupShuffleUp(hi.w, 1u);
    let from_right = subgroupShuffleDown(lo.x, 1u);
    var left = 0.0;
    var right = 0.0;
    if (has_left) {
        if (left_lane) { left = from_left; } else { left = x4[q - 1u].w; }
    }
    if (has_right) {
        if (right_lane) { right = from_right; } else { right = x4[q + 2u].x; }
    }
    return Row10(left, lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w, right);
}

// ---- conv3x3_backward_weight_quad_subgroup: 1 dy, 2 x (as xin), 4 partial ----
// conv3x3_backward_weight_quad with the dy loads shared between lanes. Invocation i owns
// input-channel quad i % quads of (channel group, share) i / quads, so an aligned group
// of m lanes, m the largest power of two dividing the number of quads (at most the
// subgroup's 8), owns the same 8 output channels and rows and needs the same 8 dy values
// at each pixel: each lane loads 8 / m of them and the group's shuffles hand every lane
// all eight. Per pixel 1 dy load instead of 8 where Cin is a multiple of 32 (m = 8; with
// the 12 input loads, 13 instead of 20), 2 where Cin is 16 or 48 (m = 4), 4 where Cin is
// 8 or 24 (m = 2); none shared where the number of quads is odd. Groups whose lanes
// differ in (channel group, share) load dy lane by lane. Same sums in the same order as
// the quad kernel. Invocations past p.total (whole groups of them, p.total being a
// multiple of the quads) run the last one's walk and store nothing, so that every lane
// reaches the shuffles.
@compute @workgroup_size(64)
fn conv3x3_backward_weight_quad_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                                         @builtin(num_workgroups) nwg: vec3<u32>,
                                         @builtin(local_invocation_index) lid: u32,
                                         @builtin(subgroup_invocation_id) lane: u32,
                                         @builtin(subgroup_size) sg_size: u32) {
    let id = flat_id(wid, nwg, lid);
    let live = id < p.total;
    let i = min(id, p.total - 1u);
    let hw = p.h * p.w;
    let cq2 = (p.cq + 1u) / 2u;
    let quads = (p.cin + 3u) / 4u;
    let ci = 4u * (i % quads);
    let gs = i / quads; // (channel group, share)
    let g = gs % cq2;
    let s = gs / cq2;
    let co = g * 8u;
    let has_b = 2u * g + 1u < p.cq;
    let m = min(quads & (~quads + 1u), 8u); // the lowest set bit of quads
    let j = lane & (m - 1u); // this lane's place in its group
    let first = lane - j; // the group's first lane
    let same = subgroupAll(subgroupShuffle(gs, first) == gs);
    let share = sg_size == 8u && m >= 2u && same;
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
            var d: vec4<f32>;
            var e: vec4<f32>;
            if (share && m == 8u) {
                // Lane j loads output channel co + j.
                let mine = ldy(yb + c, co + min(lane, 7u));
                d = vec4(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
                         subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
                e = vec4(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
                         subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
            } else if (share && m == 4u) {
                // Lane j loads output channels co + 2j and co + 2j + 1.
                let u0 = ldy(yb + c, co + 2u * j);
                let u1 = ldy(yb + c, co + 2u * j + 1u);
                d = vec4(subgroupShuffle(u0, first), subgroupShuffle(u1, first),
                         subgroupShuffle(u0, first + 1u), subgroupShuffle(u1, first + 1u));
                e = vec4(subgroupShuffle(u0, first + 2u), subgroupShuffle(u1, first + 2u),
                         subgroupShuffle(u0, first + 3u), subgroupShuffle(u1, first + 3u));
            } else if (share) {
                // m = 2: lane j loads output channels co + 4j .. co + 4j + 3.
                let u = ldy4(yb + c, co + 4u * j);
                d = subgroupShuffle(u, first);
                e = subgroupShuffle(u, first + 1u);
            } else {
                d = ldy4(yb + c, co);
                e = ldy4_b(yb + c, co + 4u, has_b);
            }
            acc = add_quad(acc, d, e, w0, w1, w2, w3, has_b);
        }
    }
    if (!live) { return; }
    store_quad(s, ci, g, acc);
}
