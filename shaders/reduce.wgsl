// reduce: deterministic sum of a flat tensor.
//
// One pass: each invocation adds up SPAN consecutive elements serially,
//   out[k] = sum_{i in [k*SPAN, min(n, (k+1)*SPAN))} x[i]
// and the launcher repeats passes until one value is left. There are no workgroup
// barriers (they are very slow on CPU adapters) and no atomics, so the order of the
// additions, and therefore the result, is fixed.

const SPAN: u32 = 256u;

struct Params {
    total: u32, // number of partial sums this pass writes
    n: u32,     // number of input elements
    off_a: u32, // chunk offset of x
    off_b: u32, // chunk offset of out
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn sum_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let k = flat_id(wid, nwg, lid);
    if (k >= p.total) { return; }
    let start = k * SPAN;
    let end = min(p.n, start + SPAN);
    var acc = 0.0;
    for (var i = start; i < end; i++) { acc += x[p.off_a + i]; }
    out[p.off_b + k] = acc;
}
