//! Training loops. Segmentation: [`seg`] (one training, evaluation, Dice) and [`cv`]
//! (k-fold cross-validation by patient).

pub mod cv;
pub mod seg;

pub use seg::{SegTrainOptions, DEFAULT_LR};
