// upsample2: 2x2 nearest-neighbour upsampling by repetition (the U-Net's expanding path).
//
//   x is (N, C, H, W)    y is (N, C, 2H, 2W)      y[n,c,i,j] = x[n,c,i/2,j/2]
//   backward: dx[n,c,i,j] += sum of dy over the 2x2 block it was copied to.
// y may be a channel slice c0 .. c0+C of a larger (N, Cd, 2H, 2W) tensor: the U-Net
// upsamples straight into its concatenation buffer, and the backward reads the slice of
// the concatenation's gradient (plain upsampling: Cd = C, c0 = 0).
// Both are gathers (one invocation per written element): deterministic, no atomics.

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

// upsample2_forward: 1 x, 2 y     (one invocation per output element)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn upsample2_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ow = 2u * p.w;
    let oh = 2u * p.h;
    let col = i % ow;
    let row = (i / ow) % oh;
    let plane = i / (ow * oh);
    let out = ((plane / p.c) * p.cd + p.c0 + plane % p.c) * oh * ow + row * ow + col;
    y[p.off_b + out] = x[p.off_a + (plane * p.h + row / 2u) * p.w + col / 2u];
}

// upsample2_backward: 1 dy, 2 dx     (one invocation per input element)
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn upsample2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let col = i % p.w;
    let row = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let ow = 2u * p.w;
    let big = (plane / p.c) * p.cd + p.c0 + plane % p.c;
    let b = p.off_a + (big * 2u * p.h + 2u * row) * ow + 2u * col;
    dx[p.off_b + i] += (dy[b] + dy[b + 1u]) + (dy[b + ow] + dy[b + ow + 1u]);
}
