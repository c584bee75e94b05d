//! Networks built from [`crate::ops`]: the segmentation U-Net, the VGG classifier, weight initialisation and
//! checkpoint files. Networks know neither WGSL nor the tape's internals: they call ops.

pub mod checkpoint;
pub mod init;
pub mod unet;
pub mod vgg;

pub use checkpoint::Checkpoint;
pub use unet::{Unet, UnetConfig, VolumeShape};
pub use vgg::{Preset, Vgg, VggConfig};
