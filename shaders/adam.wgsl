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
    let u = adam_one(grad[i], m[i], v[i], p.lr, p.b1, p.b2, p.eps, p.bc1, p.bc2);
    m[i] = u.x;
    v[i] = u.y;
    param[i] -= u.z;
}

// One element's step: (new m, new v, the amount to subtract from the parameter).
fn adam_one(g: f32, m0: f32, v0: f32, lr: f32, b1: f32, b2: f32, eps: f32, bc1: f32,
            bc2: f32) -> vec3<f32> {
    let mi = b1 * m0 + (1.0 - b1) * g;
    let vi = b2 * v0 + (1.0 - b2) * g * g;
    return vec3(mi, vi, lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
}

// adam_step2: the same step on two parameters in one dispatch (a layer's weight and bias,
// say): invocations 0 .. p2.n_a - 1 update the first (bindings 1-4), the rest the second
// (bindings 5-8). Eight storage bindings, WebGPU's default limit. For the small
// classifier, whose step is bound by its number of dispatches.
struct Params2 {
    total: u32, // elements of both (each bound whole)
    n_a: u32,   // elements of the first
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
}
@group(0) @binding(0) var<uniform> p2: Params2;
@group(0) @binding(5) var<storage, read_write> param_b: array<f32>;
@group(0) @binding(6) var<storage, read> grad_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> m_b: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_b: array<f32>;

@compute @workgroup_size(64)
fn adam_step2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p2.total) { return; }
    if (t < p2.n_a) {
        let i = t;
        let u = adam_one(grad[i], m[i], v[i], p2.lr, p2.b1, p2.b2, p2.eps, p2.bc1, p2.bc2);
        m[i] = u.x;
        v[i] = u.y;
        param[i] -= u.z;
    } else {
        let i = t - p2.n_a;
        let u = adam_one(grad_b[i], m_b[i], v_b[i], p2.lr, p2.b1, p2.b2, p2.eps, p2.bc1, p2.bc2);
        m_b[i] = u.x;
        v_b[i] = u.y;
        param_b[i] -= u.z;
    }
}
