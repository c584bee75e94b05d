// maxpool2: 2x2 max pooling, stride 2. H and W must be even (the launcher rejects odd ones).
//
//   x is (N, C, H, W)    y is (N, C, H/2, W/2)
//   y[n,c,i,j] = max(x[n,c,2i,2j], x[n,c,2i,2j+1], x[n,c,2i+1,2j], x[n,c,2i+1,2j+1])
//
// Backward routes dy to the position of the maximum; on ties, to the first of the four in
// row-major order (strict > while scanning in that order). One invocation per block adds
// its dy to that element, so no two invocations write the same element and no atomics
// are needed. Backward ADDS into dx.

struct Params {
    total: u32,
    h: u32,     // input height
    w: u32,     // input width
    off_a: u32,
    off_b: u32,
    off_c: u32,
    _p0: u32,
    _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// maxpool2_forward: 1 x, 2 y       (one invocation per output element)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Index (0..3, row-major) of the maximum of the 2x2 block whose top-left is `base`.
fn block_argmax(base: u32) -> u32 {
    var best = x[base];
    var arg = 0u;
    let v1 = x[base + 1u];
    if (v1 > best) { best = v1; arg = 1u; }
    let v2 = x[base + p.w];
    if (v2 > best) { best = v2; arg = 2u; }
    let v3 = x[base + p.w + 1u];
    if (v3 > best) { arg = 3u; }
    return arg;
}

@compute @workgroup_size(64)
fn maxpool2_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ow = p.w / 2u;
    let oh = p.h / 2u;
    let j = i % ow;
    let r = (i / ow) % oh;
    let plane = i / (ow * oh); // n * C + c
    let base = p.off_a + plane * p.h * p.w + 2u * r * p.w + 2u * j;
    let a = block_argmax(base);
    y[p.off_b + i] = x[base + (a / 2u) * p.w + (a % 2u)];
}

// maxpool2_backward: 1 x, 3 dy, 4 dx    (one invocation per 2x2 block, as the forward)
// The block's argmax is computed once and its dy added to that one element, so each dx
// element is written by one invocation at most (and divisions are per block, not per
// element: on a CPU adapter they run lane by lane).
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn maxpool2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ow = p.w / 2u;
    let oh = p.h / 2u;
    let j = i % ow;
    let r = (i / ow) % oh;
    let plane = i / (ow * oh);
    let e = plane * p.h * p.w + 2u * r * p.w + 2u * j; // the block's top-left element
    let a = block_argmax(p.off_a + e);
    dx[p.off_c + e + (a / 2u) * p.w + (a % 2u)] += dy[p.off_b + i];
}
