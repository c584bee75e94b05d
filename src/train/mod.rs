//! Training loops. Segmentation: [`seg`] (one training, evaluation, Dice) and [`cv`]
//! (k-fold cross-validation by patient).
//! Classification: [`features`] (the five feature combinations, computed once per image)
//! and [`cls`] (one classifier training, prediction).

pub mod cls;
pub mod cv;
pub mod features;
pub mod seg;

pub use seg::{SegTrainOptions, DEFAULT_LR};
