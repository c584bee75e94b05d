// batchnorm: batch normalisation over (N, C, HW) (HW = 1 for fully connected layers),
// with an affine scale gamma and shift beta per channel. M = N HW values per channel.
//
// Training (batch statistics):
//   mean_c = (1/M) sum x      var_c = (1/M) sum (x - mean_c)^2      (biased, as PyTorch)
//   invstd_c = 1 / sqrt(var_c + eps)   xhat = (x - mean_c) invstd_c   y = gamma_c xhat + beta_c
//   running_mean <- (1 - m) running_mean + m mean_c
//   running_var  <- (1 - m) running_var  + m var_c M / (M - 1)          (unbiased, as PyTorch)
// Inference: the same with mean_c = running_mean, var_c = running_var.
// Backward (training), S1 = sum dy, S2 = sum dy xhat over the channel's M values:
//   dbeta += S1    dgamma += S2    dx += gamma invstd (dy - S1 / M - xhat S2 / M)
// Backward with frozen (running) statistics: dx += gamma invstd dy, dgamma and dbeta as above.
//
// Every sum is serial in a fixed order (deterministic), in two steps so that the work
// spreads over N C invocations: per plane (sample n, channel c; HW contiguous values)
// then per channel over the planes in order of n. A plane's mean and sum of squared
// deviations are combined exactly (Chan et al.): with equal counts HW,
//   mean = (1/N) sum_n mean_n    M2 = sum_n M2_n + HW sum_n (mean_n - mean)^2
// which keeps var free of the cancellation of E[x^2] - E[x]^2.
//
// Chunks of x, y, dy and dx hold whole samples; p.first is the chunk's first plane
// (a multiple of C), so a plane's channel is its index in the chunk modulo C.

struct Params {
    total: u32,
    n: u32,      // samples in the whole batch
    c: u32,
    hw: u32,
    off_x: u32,  // chunk offset of x (or of y for bn_normalise's output, see below)
    off_y: u32,  // chunk offset of y / dx
    off_dy: u32, // chunk offset of dy
    first: u32,  // the chunk's first plane, n0 C
    momentum: f32,
    eps: f32,
    update_running: u32, // bn_channel_stats: 1 to update the running statistics
    accumulate: u32,     // bn_backward_channel: 1 to add into dgamma and dbeta
    frozen: u32,         // bn_backward_input: 1 for frozen statistics (inference mode)
    pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;   // (N C, 2)
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;  // (2, C): mean, invstd
@group(0) @binding(5) var<storage, read_write> running: array<f32>; // (2, C): mean, var
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(10) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(11) var<storage, read_write> sums: array<f32>;  // (2, C): S1, S2

// ---- bn_plane_stats: 1 x, 3 part ----   one invocation per plane of the chunk
@compute @workgroup_size(64)
fn bn_plane_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total) { return; }
    let base = p.off_x + q * p.hw;
    var s = 0.0;
    for (var j = 0u; j < p.hw; j++) { s += x[base + j]; }
    let mean = s / f32(p.hw);
    var m2 = 0.0;
    for (var j = 0u; j < p.hw; j++) { let d = x[base + j] - mean; m2 += d * d; }
    part[(p.first + q) * 2u] = mean;
    part[(p.first + q) * 2u + 1u] = m2;
}

// ---- bn_channel_stats: 3 part, 4 stats, 5 running ----   one invocation per channel
@compute @workgroup_size(64)
fn bn_channel_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) { s += part[(n * p.c + c) * 2u]; }
    let mean = s / f32(p.n);
    var m2 = 0.0;
    var between = 0.0;
    for (var n = 0u; n < p.n; n++) {
        m2 += part[(n * p.c + c) * 2u + 1u];
        let d = part[(n * p.c + c) * 2u] - mean;
        between += d * d;
    }
    let count = f32(p.n * p.hw);
    let var_b = (m2 + f32(p.hw) * between) / count;
    stats[c] = mean;
    stats[p.c + c] = 1.0 / sqrt(var_b + p.eps);
    if (p.update_running != 0u) {
        let unbiased = select(var_b, var_b * count / (count - 1.0), count > 1.0);
        running[c] = (1.0 - p.momentum) * running[c] + p.momentum * mean;
        running[p.c + c] = (1.0 - p.momentum) * running[p.c + c] + p.momentum * unbiased;
    }
}

// ---- bn_running_stats: 4 stats, 5 running ----   inference: stats from the running ones
@compute @workgroup_size(64)
fn bn_running_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    stats[c] = running[c];
    stats[p.c + c] = 1.0 / sqrt(running[p.c + c] + p.eps);
}

// ---- bn_normalise: 1 x, 2 y, 4 stats, 6 gamma, 7 beta ----   one invocation per element
@compute @workgroup_size(64)
fn bn_normalise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let c = (i / p.hw) % p.c;
    let xhat = (x[p.off_x + i] - stats[c]) * stats[p.c + c];
    y[p.off_y + i] = gamma[c] * xhat + beta[c];
}

// ---- bn_backward_plane: 1 x, 8 dy, 3 part, 4 stats ----   per plane: sum dy, sum dy xhat
@compute @workgroup_size(64)
fn bn_backward_plane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total) { return; }
    let c = q % p.c;
    let mean = stats[c];
    let invstd = stats[p.c + c];
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = 0u; j < p.hw; j++) {
        let g = dy[p.off_dy + q * p.hw + j];
        s1 += g;
        s2 += g * (x[p.off_x + q * p.hw + j] - mean) * invstd;
    }
    part[(p.first + q) * 2u] = s1;
    part[(p.first + q) * 2u + 1u] = s2;
}

// ---- bn_backward_channel: 3 part, 11 sums, 9 dgamma, 10 dbeta ----   per channel
@compute @workgroup_size(64)
fn bn_backward_channel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    var s1 = 0.0;
    var s2 = 0.0;
    for (var n = 0u; n < p.n; n++) {
        s1 += part[(n * p.c + c) * 2u];
        s2 += part[(n * p.c + c) * 2u + 1u];
    }
    sums[c] = s1;
    sums[p.c + c] = s2;
    if (p.accumulate != 0u) {
        dbeta[c] += s1;
        dgamma[c] += s2;
    }
}

// ---- bn_backward_input: 1 x, 8 dy, 2 dx (as y), 4 stats, 6 gamma, 11 sums ----
@compute @workgroup_size(64)
fn bn_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let c = (i / p.hw) % p.c;
    let g = dy[p.off_dy + i];
    let k = gamma[c] * stats[p.c + c];
    if (p.frozen != 0u) {
        y[p.off_y + i] += k * g;
        return;
    }
    let m = f32(p.n * p.hw);
    let xhat = (x[p.off_x + i] - stats[c]) * stats[p.c + c];
    y[p.off_y + i] += k * (g - sums[c] / m - xhat * sums[p.c + c] / m);
}
