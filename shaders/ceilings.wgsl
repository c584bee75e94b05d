// ceilings: the two kernels that measure what an adapter can do at best, so that the
// benchmark reports every kernel as a fraction of the same run's ceilings.
//
// fma_peak: registers only, no memory traffic in the loop. Four independent vec4 chains,
// because one dependent chain waits on the FMA latency (on lavapipe, one chain reaches
// about half of four). 4 chains x 4 lanes x 2 flops = 32 flops per iteration.
// copy: a vec4 load and a vec4 store per invocation; bytes moved = 2 x size.

struct Params {
    total: u32,
    iters: u32,
    _p0: u32,
    _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;

@compute @workgroup_size(64)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let s = f32(i) * 1e-9;
    var a = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
    var b = a + 0.5;
    var c = a + 0.25;
    var d = a + 0.125;
    let m = vec4<f32>(0.999999);
    let k = vec4<f32>(1e-7);
    for (var t = 0u; t < p.iters; t++) {
        a = fma(a, m, k);
        b = fma(b, m, k);
        c = fma(c, m, k);
        d = fma(d, m, k);
    }
    sink[i] = a + b + c + d; // keeps the chains alive
}

@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;

@compute @workgroup_size(64)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    sink[i] = src[i];
}
