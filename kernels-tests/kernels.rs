//! Every kernel entry point against the f64 reference at awkward shapes: channels not a
//! multiple of 4, H != W, batch 1, sizes that are not multiples of the workgroup (64).
//! The checks themselves are in common.rs; the tolerance rule is stated there.

mod common;
use common::*;
use segfeat::gpu::ConvTiling;
use segfeat::{ops, Tensor};

#[test]
fn conv3x3_all_entry_points() {
    // Every register tile this device can run, whichever it would pick: they share the
    // launcher and must all match the reference.
    let gpu = gpu();
    for tiling in tilings(&gpu) {
        gpu.set_conv_tiling(tiling).unwrap();
        for (i, &(n, cin, cout, h, w)) in [
            (1, 1, 1, 1, 1),
            (1, 3, 5, 7, 5),
            (2, 5, 3, 4, 9),
            (3, 6, 7, 10, 3),
            (2, 16, 16, 8, 8),
            (1, 3, 9, 5, 37),
            // Rows of whole 8-pixel tiles, which the subgroup tile loads as vec4s: 9 tiles
            // a row (subgroups straddle rows: halos from lanes and from loads), 2 a row,
            // and 8 (one subgroup a row) with an odd height.
            (2, 5, 6, 5, 72),
            (1, 3, 9, 6, 16),
            (2, 4, 8, 7, 64),
            // 32 input channels: 8 quads, one subgroup of the weight gradient's (sharing
            // its dy loads), with 12 output channels (a partial second group).
            (2, 32, 12, 5, 8),
            // 48 input channels over two samples of 18 rows (shares across samples).
            (2, 48, 16, 18, 20),
            // Images of at most 4 x 4, a whole one per invocation on CPU adapters.
            (3, 7, 9, 4, 4),
            (2, 4, 6, 2, 3),
            (2, 5, 4, 4, 1),
        ]
        .iter()
        .enumerate()
        {
            check_conv3x3(&gpu, n, cin, cout, h, w, 10 + i as u64);
        }
    }
}

#[test]
fn conv3x3_tilings_agree_bit_for_bit() {
    // The tiles add the same products in the same order, so a model trained on a GPU
    // and evaluated on lavapipe sees the same convolution (the second shape has rows of
    // whole 8-pixel tiles, which the subgroup tile takes).
    let gpu = gpu();
    // The third has many rows and columns, and a last chunk of one input channel.
    // The last three are the CPU tiles' whole-image kernel's: 4x4, 3x2 and 1x4 images.
    for (n, cin, cout, h, w) in [
        (2, 5, 11, 6, 21),
        (2, 5, 11, 7, 40),
        (1, 9, 8, 17, 33),
        (3, 6, 9, 4, 4),
        (2, 5, 7, 3, 2),
        (2, 3, 5, 1, 4),
    ] {
        tilings_agree(&gpu, n, cin, cout, h, w);
    }
}

#[test]
fn conv3x3_weight_gradient_subgroup_sharing_is_bit_for_bit() {
    // The CPU tiles' weight gradients take the same shares, so the subgroup kernel, which
    // shares dy loads between aligned groups of 8, 4 or 2 lanes (Cin a multiple of 32; 16
    // or 48; 8 or 24), must give the four-input-channel kernel's bits: here with 8, 4 and
    // 2 lanes to a group, none (12 input channels: 3 quads), a partial second group of
    // output channels (12), none at all (4), and a single pixel column.
    let gpu = gpu();
    if !gpu.has_subgroups() {
        // No subgroups (every GPU: segfeat asks for them on CPU adapters only): then the
        // subgroup kernel must never be chosen, and asking for it must be refused.
        assert_ne!(gpu.conv_tiling(), ConvTiling::RowsSubgroup);
        let e = gpu
            .set_conv_tiling(ConvTiling::RowsSubgroup)
            .expect_err("the subgroup tile refused without subgroups");
        assert!(e.0.contains("needs subgroups"), "{e}");
        return;
    }
    for (i, &(n, cin, cout, h, w)) in [
        (2, 32, 12, 5, 8),
        (2, 16, 16, 9, 7),
        (3, 48, 4, 6, 5),
        (2, 8, 12, 7, 9),
        (2, 24, 16, 5, 6),
        (2, 12, 8, 6, 6),
        (1, 16, 20, 11, 1),
    ]
    .iter()
    .enumerate()
    {
        let mut g = rng(90 + i as u64);
        let x = up(&gpu, &[n, cin, h, w], &rand_vec(&mut g, n * cin * h * w));
        let dy = up(&gpu, &[n, cout, h, w], &rand_vec(&mut g, n * cout * h * w));
        let grads = |tiling| {
            gpu.set_conv_tiling(tiling).unwrap();
            let dw = Tensor::zeros(&gpu, &[cout, cin, 3, 3]).unwrap();
            let db = Tensor::zeros(&gpu, &[cout]).unwrap();
            ops::conv3x3::backward_weight_bias(&gpu, &dy, &x, &dw, Some(&db)).unwrap();
            let bits = |t: &Tensor| {
                t.to_vec(&gpu)
                    .iter()
                    .map(|f| f.to_bits())
                    .collect::<Vec<_>>()
            };
            (bits(&dw), bits(&db))
        };
        let quad = grads(ConvTiling::Rows);
        let shared = grads(ConvTiling::RowsSubgroup);
        assert!(
            quad == shared,
            "weight or bias gradient differs between rows and rows_subgroup at (N, Cin, Cout, H, W) = {:?}",
            (n, cin, cout, h, w)
        );
    }
}

fn tilings_agree(gpu: &segfeat::Gpu, n: usize, cin: usize, cout: usize, h: usize, w: usize) {
    let mut g = rng(7);
    let x = up(gpu, &[n, cin, h, w], &rand_vec(&mut g, n * cin * h * w));
    let wt = up(gpu, &[cout, cin, 3, 3], &rand_vec(&mut g, cout * cin * 9));
    let b = up(gpu, &[cout], &rand_vec(&mut g, cout));
    let dy = up(gpu, &[n, cout, h, w], &rand_vec(&mut g, n * cout * h * w));
    let mut outs = Vec::new();
    for tiling in tilings(gpu) {
        gpu.set_conv_tiling(tiling).unwrap();
        let y = ops::conv3x3::forward(gpu, &x, &wt, &b).unwrap().to_vec(gpu);
        let dx = Tensor::zeros(gpu, &[n, cin, h, w]).unwrap();
        ops::conv3x3::backward_input(gpu, &dy, &wt, &dx).unwrap();
        outs.push((y, dx.to_vec(gpu)));
    }
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for (t, out) in tilings(gpu).iter().zip(&outs).skip(1) {
        assert_eq!(
            bits(&outs[0].0),
            bits(&out.0),
            "forward differs between tilings tiled and {t}"
        );
        assert_eq!(
            bits(&outs[0].1),
            bits(&out.1),
            "input gradient differs between tilings tiled and {t}"
        );
    }
}

/// The conv3x3 tiles this device can run: the subgroup tile where the device has
/// subgroups. lavapipe (CI's adapter) has them, so there all four are checked.
fn tilings(gpu: &segfeat::Gpu) -> Vec<ConvTiling> {
    let mut t = vec![ConvTiling::Tiled, ConvTiling::Gpu, ConvTiling::Rows];
    if gpu.has_subgroups() {
        t.push(ConvTiling::RowsSubgroup);
    }
    t
}

#[test]
fn conv3x3x3_all_entry_points() {
    // One adapter-independent tile (conv3x3x3_rows) at awkward shapes: channels not a
    // multiple of 4 or 8, depth 1 and 2 (every depth tap at the padding), rows of one
    // pixel and of more than one 8-pixel group, odd heights, batch 1 and 3.
    let gpu = gpu();
    // The forward's tile is the same everywhere; the weight gradient's is per tiling
    // (one depth tap per invocation, or the CPU tiles' three).
    for tiling in tilings(&gpu) {
        gpu.set_conv_tiling(tiling).unwrap();
        for (i, &(n, cin, cout, d, h, w)) in [
            (1, 1, 1, 1, 1, 1),
            (1, 3, 5, 2, 3, 5),
            (2, 5, 3, 3, 4, 9),
            (3, 2, 7, 4, 5, 3),
            (1, 8, 8, 4, 8, 8),
            (2, 4, 9, 5, 3, 17),
            // 12 output channels over 6 input ones: a partial second pair of vec4 groups.
            (2, 6, 12, 3, 6, 10),
        ]
        .iter()
        .enumerate()
        {
            check_conv3x3x3(&gpu, (n, cin, cout), (d, h, w), 40 + i as u64);
        }
    }
}

#[test]
fn conv3x3x3_weight_gradient_kernels_agree_bit_for_bit() {
    // One depth tap per invocation (GPU tiles) and three (CPU tiles): the same sums in the
    // same order, so the same bits, bias gradient included.
    let gpu = gpu();
    let (n, cin, cout, d, h, w) = (2, 5, 11, 5, 6, 13);
    let mut g = rng(77);
    let x = up(
        &gpu,
        &[n, cin, d, h, w],
        &rand_vec(&mut g, n * cin * d * h * w),
    );
    let dy = up(
        &gpu,
        &[n, cout, d, h, w],
        &rand_vec(&mut g, n * cout * d * h * w),
    );
    let mut got = Vec::new();
    for tiling in [ConvTiling::Tiled, ConvTiling::Rows] {
        gpu.set_conv_tiling(tiling).unwrap();
        let dw = Tensor::zeros(&gpu, &[cout, cin, 3, 3, 3]).unwrap();
        let db = Tensor::zeros(&gpu, &[cout]).unwrap();
        ops::conv3x3x3::backward_weight_bias(&gpu, &dy, &x, &dw, Some(&db)).unwrap();
        got.push((dw.to_vec(&gpu), db.to_vec(&gpu)));
    }
    assert!(got[0] == got[1], "the two weight-gradient kernels differ");
}

#[test]
fn pool3d_and_upsample3d() {
    let gpu = gpu();
    for (i, &(n, c, d, h, w, fd)) in [
        (1, 1, 2, 2, 2, 2),
        (2, 3, 4, 6, 8, 2),
        (2, 3, 3, 6, 8, 1),
        (1, 5, 1, 4, 10, 1),
        (3, 2, 6, 2, 4, 2),
    ]
    .iter()
    .enumerate()
    {
        for ties in [false, true] {
            check_pool3d(&gpu, (n, c), (d, h, w), fd, ties, 60 + i as u64);
        }
    }
    // Sizes that do not divide, and a factor other than 1 or 2, are refused.
    let x = up(&gpu, &[1, 1, 3, 4, 4], &[0.0; 48]);
    assert!(ops::pool3d::maxpool_forward(&gpu, &x, 2).is_err());
    assert!(ops::pool3d::maxpool_forward(&gpu, &x, 3).is_err());
    assert!(ops::pool3d::upsample_forward(&gpu, &x, 0).is_err());
    let x = up(&gpu, &[1, 1, 2, 3, 4], &[0.0; 24]);
    assert!(ops::pool3d::maxpool_forward(&gpu, &x, 1).is_err());
}

#[test]
fn concat_of_volumes() {
    // The concatenation indexes planes only: volumes (N, C, D, H, W) join like maps.
    let gpu = gpu();
    check_concat_shape(&gpu, 2, 3, 2, &[4, 5, 6], 70);
    check_concat_shape(&gpu, 3, 1, 4, &[2, 4, 8], 71);
    let a = up(&gpu, &[1, 2, 2, 4, 4], &[0.0; 64]);
    let b = up(&gpu, &[1, 2, 4, 4, 2], &[0.0; 64]);
    let err = ops::concat::forward(&gpu, &[&a, &b]).unwrap_err().0;
    assert!(err.contains("all but the channels must agree"), "{err}");
}

#[test]
fn conv1x1_all_entry_points() {
    let gpu = gpu();
    for (i, &(n, cin, cout, h, w)) in [
        (1, 1, 1, 1, 1),
        (1, 7, 6, 5, 3),
        (3, 48, 6, 4, 6),
        (2, 5, 9, 9, 7),
        // Whole 4x4 tiles only, and the U-Net's last layer (16 -> 6 channels).
        (2, 8, 4, 4, 4),
        (2, 16, 6, 8, 8),
    ]
    .iter()
    .enumerate()
    {
        check_conv1x1(&gpu, n, cin, cout, h, w, 20 + i as u64);
    }
}

#[test]
fn linear_all_entry_points() {
    let gpu = gpu();
    for (i, &(n, inp, out)) in [
        (1, 1, 1),
        (1, 13, 2),
        (10, 67, 5),
        (3, 130, 65),
        (4, 9, 7),
        (8, 5, 3),
    ]
    .iter()
    .enumerate()
    {
        check_linear(&gpu, n, inp, out, 30 + i as u64);
    }
}

#[test]
fn elu_and_relu() {
    let gpu = gpu();
    // Element counts that are multiples of 4 (780, 384) take the vec4 kernel of the ELU
    // backward from the output and of the ReLU backward; the others their scalar ones.
    for (i, shape) in [
        vec![1],
        vec![1, 3, 5, 7],
        vec![2, 5, 6, 13],
        vec![3, 65],
        vec![2, 4, 6, 8],
    ]
    .iter()
    .enumerate()
    {
        check_activations(&gpu, shape, 40 + i as u64);
    }
}

#[test]
fn leaky_relu_dropout_and_gap() {
    let gpu = gpu();
    for (i, shape) in [
        vec![1, 1, 1, 1],
        vec![1, 3, 5, 7],
        vec![2, 5, 6, 13],
        vec![3, 65],
    ]
    .iter()
    .enumerate()
    {
        check_regularisers(&gpu, shape, 60 + i as u64);
    }
}

#[test]
fn batchnorm_training_and_inference() {
    let gpu = gpu();
    for (i, shape) in [
        vec![2, 3, 4, 5],
        vec![5, 1, 3, 3],
        vec![10, 7],
        vec![3, 4, 1, 1],
        vec![4, 2, 9, 11],
    ]
    .iter()
    .enumerate()
    {
        check_batchnorm(&gpu, shape, 70 + i as u64);
    }
}

#[test]
fn maxpool2_and_upsample2() {
    let gpu = gpu();
    for (i, &(n, c, h, w, ties)) in [
        (1, 1, 2, 2, false),
        (1, 3, 6, 10, false),
        (2, 5, 8, 4, true),
        (3, 2, 14, 6, true),
    ]
    .iter()
    .enumerate()
    {
        check_pool_upsample(&gpu, n, c, h, w, ties, 50 + i as u64);
    }
}

#[test]
fn maxpool2_rejects_odd_sizes() {
    let gpu = gpu();
    for shape in [[1, 2, 5, 4], [1, 2, 4, 7]] {
        let x = segfeat::Tensor::zeros(&gpu, &shape).unwrap();
        let err = segfeat::ops::maxpool2::forward(&gpu, &x).unwrap_err();
        assert!(err.0.contains("even height and width"), "{err}");
    }
}

#[test]
fn concat_forward_and_split() {
    let gpu = gpu();
    // Planes of a multiple of 4 elements (6x10, 8x8) take the vec4 kernels, with a
    // last run shorter than the others at 6x10; the others the scalar ones.
    for (i, &(n, ca, cb, h, w)) in [
        (1, 1, 1, 1, 1),
        (1, 3, 5, 7, 3),
        (2, 16, 8, 6, 10),
        (3, 6, 2, 5, 5),
        (2, 4, 3, 8, 8),
    ]
    .iter()
    .enumerate()
    {
        check_concat(&gpu, n, ca, cb, h, w, 60 + i as u64);
    }
}

#[test]
fn softmax_and_weighted_cross_entropy() {
    let gpu = gpu();
    check_softmax_ce(&gpu, 1, 2, None, 70);
    check_softmax_ce(&gpu, 10, 2, None, 71);
    check_softmax_ce(&gpu, 1, 6, Some((5, 7)), 72);
    check_softmax_ce(&gpu, 3, 6, Some((8, 9)), 73);
    check_softmax_ce(&gpu, 2, 3, Some((17, 16)), 74);
}

#[test]
fn adam_matches_reference() {
    let gpu = gpu();
    for (i, n) in [1, 63, 1000].iter().enumerate() {
        check_adam(&gpu, &[*n], 80 + i as u64);
    }
    // Several parameters: the first two share a dispatch (adam_step2), the third is
    // updated alone.
    check_adam(&gpu, &[1000, 1, 63], 85);
}

#[test]
fn fill_scale_add_and_sum() {
    let gpu = gpu();
    for (i, n) in [1, 255, 256, 257, 70_001].iter().enumerate() {
        check_small_ops(&gpu, *n, 90 + i as u64);
    }
}
