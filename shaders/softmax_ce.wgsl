// softmax_ce: softmax with weighted cross-entropy, and softmax alone.
//
//   z (logits) is (N, C, P): P = H*W pixels for segmentation, P = 1 for per-sample
//   classification (logits N x C). y (labels) is (N, P), stored as f32 holding the class
//   index. wc (class weights) is (C).
//
// Normalisation: the loss is the weighted MEAN over pixels, normalised by the sum of the
// weights of the pixels' true classes (PyTorch's CrossEntropyLoss(weight=...) convention):
//
//   s_p    = softmax(z_p)                 s_pc = exp(z_pc - m_p) / sum_k exp(z_pk - m_p)
//   W      = sum_p wc[y_p]
//   L      = (1/W) sum_p wc[y_p] * (-log s_p,y_p)
//          = (1/W) sum_p wc[y_p] * (logsumexp(z_p) - z_p,y_p)
//
// Gradient: d(logsumexp(z_p))/dz_pc = s_pc and dz_p,y_p/dz_pc = [c = y_p], so
//
//   dL/dz_pc = wc[y_p] * (s_pc - [c = y_p]) / W
//
// and the backward entry point adds dL * that into dz (dL: the incoming gradient of L).
// A label outside 0..C-1 gets weight 0 (ignored). If W = 0 the loss and gradient are 0.
// The forward writes per-pixel terms wc*(-log s) and wc; a deterministic sum-reduce
// (reduce.wgsl) adds them up and softmax_ce_finish divides. No atomics anywhere.

struct Params {
    total: u32,
    n: u32,
    c: u32,
    hw: u32,
    off_z: u32,  // logits chunk offset
    off_y: u32,  // labels chunk offset
    off_l: u32,  // per-pixel term / probs chunk offset
    off_dz: u32, // dlogits chunk offset
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> wc: array<f32>;

// Max and sum of exp over the C logits of pixel (n, q); base is z's index of channel 0.
fn max_and_sum(base: u32) -> vec2<f32> {
    var m = z[base];
    for (var c = 1u; c < p.c; c++) { m = max(m, z[base + c * p.hw]); }
    var s = 0.0;
    for (var c = 0u; c < p.c; c++) { s += exp(z[base + c * p.hw] - m); }
    return vec2<f32>(m, s);
}

fn class_weight(label: f32) -> f32 {
    let k = i32(round(label));
    if (k < 0 || k >= i32(p.c)) { return 0.0; }
    return wc[u32(k)];
}

// softmax_forward: 1 z, 4 probs         (one invocation per pixel; probs shaped like z)
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(64)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let q = i % p.hw;
    let n = i / p.hw;
    let zb = p.off_z + n * p.c * p.hw + q;
    let ms = max_and_sum(zb);
    let ob = p.off_l + n * p.c * p.hw + q;
    for (var c = 0u; c < p.c; c++) {
        probs[ob + c * p.hw] = exp(z[zb + c * p.hw] - ms.x) / ms.y;
    }
}

// softmax_ce_forward: 1 z, 2 labels, 3 wc, 5 lterm, 6 wterm    (one invocation per pixel)
//   lterm[n,q] = wc[y] * (logsumexp(z) - z_y),  wterm[n,q] = wc[y]
@group(0) @binding(5) var<storage, read_write> lterm: array<f32>;
@group(0) @binding(6) var<storage, read_write> wterm: array<f32>;

@compute @workgroup_size(64)
fn softmax_ce_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let q = i % p.hw;
    let n = i / p.hw;
    let zb = p.off_z + n * p.c * p.hw + q;
    let label = labels[p.off_y + i];
    let wy = class_weight(label);
    var term = 0.0;
    if (wy != 0.0) {
        let ms = max_and_sum(zb);
        let zy = z[zb + u32(round(label)) * p.hw];
        term = wy * (ms.x + log(ms.y) - zy);
    }
    lterm[p.off_l + i] = term;
    wterm[p.off_l + i] = wy;
}

// softmax_ce_finish: 5 lsum, 6 wsum, 7 loss (one float each, at offset off_l). One invocation.
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(1)
fn softmax_ce_finish() {
    let w = wterm[p.off_l];
    loss[0] = select(0.0, lterm[p.off_l] / w, w > 0.0);
}

// softmax_ce_backward: 1 z, 2 labels, 3 wc, 4 dz, 5 dloss (1 float), 6 wsum (1 float)
//   dz[n,c,q] += dloss * wc[y] * (s_c - [c = y]) / W      (one invocation per pixel)
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
@group(0) @binding(5) var<storage, read> dloss: array<f32>;
@group(0) @binding(6) var<storage, read> wsum: array<f32>;

@compute @workgroup_size(64)
fn softmax_ce_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let q = i % p.hw;
    let n = i / p.hw;
    let label = labels[p.off_y + i];
    let wy = class_weight(label);
    let w = wsum[0];
    if (wy == 0.0 || !(w > 0.0)) { return; } // this pixel contributes nothing
    let scale = dloss[0] * wy / w;
    let zb = p.off_z + n * p.c * p.hw + q;
    let ms = max_and_sum(zb);
    let y = u32(round(label));
    let db = p.off_dz + n * p.c * p.hw + q;
    for (var c = 0u; c < p.c; c++) {
        let s = exp(z[zb + c * p.hw] - ms.x) / ms.y;
        dz[db + c * p.hw] += scale * (s - select(0.0, 1.0, c == y));
    }
}
