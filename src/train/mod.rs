//! Training loops. Segmentation: [`seg`] (one training, evaluation, Dice) and [`cv`]
//! (k-fold cross-validation by patient).
//! Classification: [`features`] (the five feature combinations, computed once per image)
//! and [`cls`] (one classifier training, prediction).

pub mod cls;
pub mod cv;
pub mod features;
pub mod seg;
pub mod svm;

pub use seg::{SegTrainOptions, DEFAULT_LR};

/// A progress bar of `len` steps in the style `prefix [=====>    ] pos/len ...` given by
/// `template` (indicatif's syntax); hidden when `show` is false (indicatif also hides it
/// when stderr is not a terminal).
pub fn progress_bar(
    show: bool,
    len: usize,
    prefix: String,
    template: &str,
) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}
