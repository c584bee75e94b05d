//! Networks built from [`crate::ops`]: the segmentation U-Net, weight initialisation and
//! checkpoint files. Networks know neither WGSL nor the tape's internals: they call ops.

pub mod checkpoint;
pub mod init;
pub mod unet;

pub use checkpoint::Checkpoint;
pub use unet::{Unet, UnetConfig};
