// dropout: inverted dropout with a mask that is a pure function of (key, element index),
// so a rerun gives the same bits and the backward recomputes the mask instead of storing
// it.
//
//   keep_i = hash(hash(i ^ k0) ^ k1) >= threshold     threshold = round(p 2^32)
//   y_i    = keep_i ? x_i / (1 - p) : 0               dx_i += keep_i ? dy_i / (1 - p) : 0
//
// hash is Wellons' lowbias32 (an invertible 32-bit mixer); k0 and k1 come from the
// training's seed and step (src/ops/dropout.rs, `mask_keys`, the same function on the
// host). i is the element's index in the whole tensor (p.first + the chunk's index), so
// chunking a large tensor does not change the mask. At inference dropout is the
// identity and no kernel runs.

struct Params {
    total: u32,
    off_a: u32,
    off_b: u32,
    first: u32,     // index in the whole tensor of this chunk's first element
    k0: u32,
    k1: u32,
    threshold: u32, // drop when the hash is below it
    scale: f32,     // 1 / (1 - p)
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn lowbias32(v0: u32) -> u32 {
    var v = v0;
    v ^= v >> 16u;
    v *= 0x7feb352du;
    v ^= v >> 15u;
    v *= 0x846ca68bu;
    v ^= v >> 16u;
    return v;
}

fn keep(i: u32) -> bool {
    return lowbias32(lowbias32(i ^ p.k0) ^ p.k1) >= p.threshold;
}

// dropout_forward: 1 x, 2 y          y = keep ? x * scale : 0
@compute @workgroup_size(64)
fn dropout_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dst[p.off_b + i] = select(0.0, src[p.off_a + i] * p.scale, keep(p.first + i));
}

// dropout_backward: 1 dy, 2 dx       dx += keep ? dy * scale : 0
@compute @workgroup_size(64)
fn dropout_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dst[p.off_b + i] += select(0.0, src[p.off_a + i] * p.scale, keep(p.first + i));
}
