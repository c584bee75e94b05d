// concat: concatenation along channels, as copies into / out of a channel slice.
//
//   src is (N, Cs, P)   dst is (N, Cd, P)   with channels c0 .. c0+Cs of dst being src.
//   concat_forward:  dst[n, c0 + c, q]  = src[n, c, q]       (once per input of the concat)
//   concat_backward: dsrc[n, c, q]     += ddst[n, c0 + c, q]  (the split; ADDS)
// Each element is copied or added by one invocation (a run of a plane); deterministic.

struct Params {
    total: u32,
    cs: u32,    // channels of src
    cd: u32,    // channels of dst
    c0: u32,    // first channel of the slice in dst
    hw: u32,
    off_a: u32, // src (forward) / ddst (backward)
    off_b: u32, // dst (forward) / dsrc (backward)
    _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One invocation per run of up to RUN elements of one plane (n, c) of src: it divides
// once for the run, not per element (integer division runs lane by lane on a CPU
// adapter). p.total counts runs: N Cs ceil(hw / RUN).
const RUN: u32 = 16u;

// (element of src where run i of `run` elements starts, its offset in dst, its length).
fn run_of(i: u32, run: u32) -> vec3<u32> {
    let runs = (p.hw + run - 1u) / run;
    let plane = i / runs; // n * Cs + c
    let q = (i % runs) * run;
    let n = plane / p.cs;
    let c = plane % p.cs;
    return vec3<u32>(plane * p.hw + q, (n * p.cd + p.c0 + c) * p.hw + q, min(run, p.hw - q));
}

// concat_forward: 1 src, 2 dst
@compute @workgroup_size(64)
fn concat_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = run_of(i, RUN);
    for (var k = 0u; k < r.z; k++) {
        dst[p.off_b + r.y + k] = src[p.off_a + r.x + k];
    }
}

// concat_backward: 1 ddst (as src), 2 dsrc (as dst)
@compute @workgroup_size(64)
fn concat_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = run_of(i, RUN);
    for (var k = 0u; k < r.z; k++) {
        dst[p.off_b + r.x + k] += src[p.off_a + r.y + k];
    }
}

// concat_forward4 / concat_backward4: the same on vec4s, for planes of a multiple of 4
// elements and offsets that are multiples of 4 (the launcher checks); p.hw, p.off_* and
// p.total count vec4s, and a run is up to RUN4 vec4s. On lavapipe a vec4 load costs about
// half of four scalar ones, and a run's division is shared by 16 elements as before.
const RUN4: u32 = 4u;

@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

// concat_forward4: 1 src4, 2 dst4
@compute @workgroup_size(64)
fn concat_forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = run_of(i, RUN4);
    for (var k = 0u; k < r.z; k++) {
        dst4[p.off_b + r.y + k] = src4[p.off_a + r.x + k];
    }
}

// concat_backward4: 1 ddst (as src4), 2 dsrc (as dst4)
@compute @workgroup_size(64)
fn concat_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let r = run_of(i, RUN4);
    for (var k = 0u; k < r.z; k++) {
        dst4[p.off_b + r.x + k] += src4[p.off_a + r.y + k];
    }
}
