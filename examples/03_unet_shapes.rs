//! The U-Net of Wong et al. (2017) layer by layer: every step's output shape, parameters
//! and forward FLOPs, where the skip connections leave and rejoin, and the two feature
//! maps the classifier reads (SEG and CONCAT), checked against a real forward pass.
//!
//! To run:
//!     cargo run --example 03_unet_shapes
//!
//! Expected output (any adapter; the shapes and counts do not depend on it):
//!     U-Net with n = 4 channels at the first level, 6 labels, input 1x64x64
//!     step           kind          output (C,H,W)     params   forward FLOPs   skip
//!     enc1.conv1     conv3x3+elu          4x64x64         40          327680
//!     enc1.conv2     conv3x3+elu          4x64x64        148         1212416
//!     pool1          maxpool2             4x32x32          0               0
//!     ...
//!     enc5.conv2     conv3x3+elu           64x4x4      36928         1181696
//!     up4            upsample2             64x8x8          0               0
//!     concat4        concat                96x8x8          0               0   joins enc4.conv2
//!     ...
//!     concat1        concat              12x64x64          0               0   joins enc1.conv2
//!     dec1.conv1     conv3x3+elu          4x64x64        436         3571712
//!     dec1.conv2     conv3x3+elu          4x64x64        148         1212416
//!     out            conv1x1              6x64x64         30          221184
//!     total: 122978 parameters, 0.028 GFLOP forward per image
//!     forward pass on the GPU: SEG [2, 6, 64, 64], CONCAT [2, 12, 64, 64], as listed
//!
//! CONCAT (concat1: the upsampled level-2 features beside the level-1 ones, 3n channels)
//! and SEG (the final 1x1 convolution's label logits) are the maps the disease classifier
//! reads (examples/05_transfer.rs).

use segfeat::nn::unet::Step;
use segfeat::nn::{Unet, UnetConfig};
use segfeat::{Gpu, Tape, Tensor};

fn main() -> segfeat::Result<()> {
    let config = UnetConfig::new(4, 6, 64)?;
    println!(
        "U-Net with n = {} channels at the first level, {} labels, input 1x{}x{}",
        config.channels, config.labels, config.size, config.size
    );
    println!(
        "{:<14} {:<12} {:>15} {:>10} {:>15}   skip",
        "step", "kind", "output (C,H,W)", "params", "forward FLOPs"
    );
    // The encoder keeps the map before each pooling; each concatenation takes the newest
    // kept map back (a stack): that is the whole of the U-Net's skip wiring.
    let steps = config.steps();
    let rows = config.summary();
    let mut kept: Vec<String> = Vec::new();
    let mut last = String::new();
    for (step, row) in steps.iter().zip(&rows) {
        let skip = match step {
            Step::MaxPool { .. } => {
                kept.push(last.clone());
                String::new()
            }
            Step::ConcatSkip { .. } => format!("joins {}", kept.pop().unwrap_or_default()),
            _ => String::new(),
        };
        println!(
            "{:<14} {:<12} {:>15} {:>10} {:>15}   {skip}",
            row.name,
            row.kind,
            format!("{}x{}x{}", row.shape[0], row.shape[1], row.shape[2]),
            row.params,
            row.flops
        );
        last = row.name.clone();
    }
    let params: u64 = rows.iter().map(|r| r.params).sum();
    let flops: u64 = rows.iter().map(|r| r.flops).sum();
    println!(
        "total: {params} parameters, {:.3} GFLOP forward per image",
        flops as f64 / 1e9
    );

    // The same network on the GPU: its outputs have the shapes the table lists.
    let gpu = Gpu::new()?;
    let unet = Unet::init(&gpu, config.clone(), 1)?;
    let x = vec![0.5f32; 2 * 64 * 64];
    let tape = Tape::new(&gpu);
    let xv = tape.constant(&Tensor::from_slice(&gpu, &[2, 1, 64, 64], &x)?);
    let out = tape.no_grad(|| unet.forward(&tape, &xv, false))?;
    let concat = rows.iter().find(|r| r.name == "concat1").map(|r| &r.shape);
    assert_eq!(Some(&out.concat.shape()[1..].to_vec()), concat);
    println!(
        "forward pass on the GPU: SEG {:?}, CONCAT {:?}, as listed",
        out.seg.shape(),
        out.concat.shape()
    );
    Ok(())
}
