// adam: one Adam step (Kingma & Ba, 2015) with bias correction, in place.
//
//   m = b1 m + (1 - b1) g
//   v = b2 v + (1 - b2) g^2
//   param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//
// The hyper-parameters and the two bias corrections (computed on the CPU in f64 from the
// step count t) come in the uniform. Elementwise; off is the chunk offset, the same for
// the four buffers because they have the same size and the same chunking.

struct Params {
    total: u32,
    off: u32,
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f32, // 1 - b1^t
    bc2: f32, // 1 - b2^t
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let i = p.off + t;
    let g = grad[i];
    let mi = p.b1 * m[i] + (1.0 - p.b1) * g;
    let vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= p.lr * (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);
}
