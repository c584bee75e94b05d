// ceilings: the two kernels that measure what an adapter can do at best, so that the
// benchmark reports every kernel as a fraction of the same run's ceilings.
//
// fma_peak: registers only, no memory traffic in the loop. Four independent vec4 chains,
// because one dependent chain waits on the FMA latency (on lavapipe, one chain reaches
// about half of four). 4 chains x 4 lanes x 2 flops = 32 flops per iteration.
// copy: a vec4 load and a vec4 store per invocation; bytes moved = 2 x size.
// load_scalar, load_vec4: what a storage load costs where each lane reads its own
// address, as every conv kernel's input loads do (the FMA ceiling's counterpart for
// loads; on lavapipe such a load is a loop over the lanes, see conv3x3_subgroup.wgsl).

struct Params {
    total: u32,
    iters: u32,
    mask: u32, // the load kernels: table elements - 1 (a power of two less one)
    _pad: u32,
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

// ---- load_scalar: 1 sink, 3 table; load_vec4: 1 sink, 2 src ----
// Each invocation makes p.iters loads, at an address that differs per lane and steps by
// 1031 elements, wrapped in a table of p.mask + 1 elements (a power of two, small enough
// to stay in cache: the cost of the load, not of memory), and sums them. The kernels
// bench rates them against the FMA ceiling: "one load costs as much as N FMAs".
@group(0) @binding(3) var<storage, read> table: array<f32>;

@compute @workgroup_size(64)
fn load_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    var acc = 0.0;
    var at = i;
    for (var t = 0u; t < p.iters; t++) {
        acc += table[at & p.mask];
        at += 1031u;
    }
    sink[i] = vec4(acc);
}

@compute @workgroup_size(64)
fn load_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    var acc = vec4(0.0);
    var at = i;
    for (var t = 0u; t < p.iters; t++) {
        acc += src[at & p.mask];
        at += 1031u;
    }
    sink[i] = acc;
}
