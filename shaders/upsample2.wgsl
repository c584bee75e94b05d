// upsample2: 2x2 nearest-neighbour upsampling by repetition (the U-Net's expanding path).
//
//   x is (N, C, H, W)    y is (N, C, 2H, 2W)      y[n,c,i,j] = x[n,c,i/2,j/2]
//   backward: dx[n,c,i,j] += sum of dy over the 2x2 block it was copied to.
// y may be a channel slice c0 .. c0+C of a larger (N, Cd, 2H, 2W) tensor: the U-Net
// upsamples straight into its concatenation buffer, and the backward reads the slice of
// the concatenation's gradient (plain upsampling: Cd = C, c0 = 0).
// Each element is written by one invocation (one per input row, walking it): deterministic,
// no atomics.

struct Params {
    total: u32,
    h: u32,     // input (small) height
    w: u32,     // input (small) width
    off_a: u32,
    off_b: u32,
    c: u32,     // channels of x
    cd: u32,    // channels of the tensor y is a slice of
    c0: u32,    // first channel of the slice
}
@group(0) @binding(0) var<uniform> p: Params;

// upsample2_forward: 1 x, 2 y     (one invocation per input row: its 2 output rows)
// One invocation walks a whole row so that it divides once for the row, not several
// times per element (integer division runs lane by lane on a CPU adapter).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn upsample2_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ow = 2u * p.w;
    let row = i % p.h;
    let plane = i / p.h;
    let out = p.off_b + (((plane / p.c) * p.cd + p.c0 + plane % p.c) * 2u * p.h + 2u * row) * ow;
    let src = p.off_a + i * p.w;
    for (var col = 0u; col < p.w; col++) {
        let v = x[src + col];
        let o = out + 2u * col;
        y[o] = v;
        y[o + 1u] = v;
        y[o + ow] = v;
        y[o + ow + 1u] = v;
    }
}

// upsample2_backward: 1 dy, 2 dx     (one invocation per input row, as the forward)
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn upsample2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ow = 2u * p.w;
    let row = i % p.h;
    let plane = i / p.h;
    let big = (plane / p.c) * p.cd + p.c0 + plane % p.c;
    let b0 = p.off_a + (big * 2u * p.h + 2u * row) * ow;
    let d0 = p.off_b + i * p.w;
    for (var col = 0u; col < p.w; col++) {
        let b = b0 + 2u * col;
        dx[d0 + col] += (dy[b] + dy[b + 1u]) + (dy[b + ow] + dy[b + ow + 1u]);
    }
}
