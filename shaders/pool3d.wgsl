// pool3d: max pooling and nearest upsampling of volumes by 2 in height and width and by
// p.fd (1 or 2) in depth: the 2x2x2 steps of thin-slice volumes, the 2x2x1 steps that
// keep the depth of thick-slice ones.
//
//   maxpool3d:  x (N, C, D, H, W) -> y (N, C, D/fd, H/2, W/2), the max of each block
//   upsample3d: x (N, C, D, H, W) -> y (N, C, D*fd, 2H, 2W),   y[z,i,j] = x[z/fd,i/2,j/2]
//
// Max pooling's backward routes dy to the block's maximum; on ties to the first in
// (z, row, column) order (strict > while scanning in that order, as maxpool2). One
// invocation per block (output element) adds its dy to that one element, and the
// upsampling's backward is one invocation per input element summing its fd x 2 x 2 block
// in the same order: each gradient element is written by one invocation, no atomics.
// Backward entry points ADD into dx. The launcher refuses sizes that do not divide.

struct Params {
    total: u32,
    d: u32,     // depth, height and width of the LARGE side (pool input, upsample output)
    h: u32,
    w: u32,
    fd: u32,    // depth factor: 1 or 2
    off_a: u32, // element offsets of the bindings, in binding order
    off_b: u32,
    off_c: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// The large side's element (within its binding's tensor, offset not added) at the top
// corner of the block of small-side element i (plane, z, r, j of the small side).
fn block_corner(i: u32) -> u32 {
    let ow = p.w / 2u;
    let oh = p.h / 2u;
    let od = p.d / p.fd;
    let j = i % ow;
    let r = (i / ow) % oh;
    let z = (i / (ow * oh)) % od;
    let plane = i / (ow * oh * od);
    return ((plane * p.d + z * p.fd) * p.h + 2u * r) * p.w + 2u * j;
}

// The offset (from the block's corner) of the block's first maximum in x at `base`.
fn block_argmax(base: u32) -> u32 {
    var best = x[base];
    var arg = 0u;
    for (var dz = 0u; dz < p.fd; dz++) {
        for (var dr = 0u; dr < 2u; dr++) {
            for (var dc = 0u; dc < 2u; dc++) {
                let o = (dz * p.h + dr) * p.w + dc;
                let v = x[base + o];
                if (v > best) { best = v; arg = o; }
            }
        }
    }
    return arg;
}

// ---- maxpool3d_forward: 1 x, 2 y (one invocation per output element) ----
@compute @workgroup_size(64)
fn maxpool3d_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let base = p.off_a + block_corner(i);
    y[p.off_b + i] = x[base + block_argmax(base)];
}

// ---- maxpool3d_backward: 1 x, 3 dy, 4 dx (one invocation per output element) ----
@compute @workgroup_size(64)
fn maxpool3d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let e = block_corner(i);
    let a = block_argmax(p.off_a + e);
    dx[p.off_c + e + a] += dy[p.off_b + i];
}

// ---- upsample3d_forward: 1 x, 2 y (one invocation per output element) ----
@compute @workgroup_size(64)
fn upsample3d_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let j = i % p.w;
    let r = (i / p.w) % p.h;
    let z = (i / (p.w * p.h)) % p.d;
    let plane = i / (p.w * p.h * p.d);
    let sd = p.d / p.fd;
    y[p.off_b + i] = x[p.off_a + ((plane * sd + z / p.fd) * (p.h / 2u) + r / 2u) * (p.w / 2u) + j / 2u];
}

// ---- upsample3d_backward: 3 dy, 4 dx (one invocation per input element) ----
//   dx[z,i,j] += sum of dy over its fd x 2 x 2 block, in (z, row, column) order
@compute @workgroup_size(64)
fn upsample3d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let base = p.off_b + block_corner(i);
    var acc = 0.0;
    for (var dz = 0u; dz < p.fd; dz++) {
        for (var dr = 0u; dr < 2u; dr++) {
            let row = base + (dz * p.h + dr) * p.w;
            acc += dy[row];
            acc += dy[row + 1u];
        }
    }
    dx[p.off_c + i] += acc;
}
