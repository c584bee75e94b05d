//! Detection metrics on a 2x2 confusion matrix (paper, section 3.2): true-positive rate
//! (recall, sensitivity), true-negative rate (specificity) and Cohen's kappa.
//!
//! Degenerate cases, by definition here:
//! - TPR is undefined (None) when the truth has no positives; TNR when it has no negatives.
//! - kappa = (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e the
//!   agreement expected by chance from the margins. It is undefined (None) when p_e = 1,
//!   which happens only when truth and prediction each use a single class, the same one
//!   (so p_o = 1 too; 0/0). A classifier that answers "negative" to everything on a test
//!   set with both classes gets p_o = p_e and so kappa = 0, and a perfectly wrong one
//!   gets a negative kappa.

/// Counts of a two-class test: positives are the diseased images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confusion {
    pub tp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub fp: u64,
}

impl Confusion {
    /// Count (truth, predicted) pairs; `true` is diseased.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Confusion {
        let mut c = Confusion::default();
        for (t, p) in pairs {
            match (t, p) {
                (true, true) => c.tp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fp += 1,
            }
        }
        c
    }

    pub fn total(&self) -> u64 {
        self.tp + self.fn_ + self.tn + self.fp
    }

    /// TP / (TP + FN); None without positives in the truth.
    pub fn tpr(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// TN / (TN + FP); None without negatives in the truth.
    pub fn tnr(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }

    /// Cohen's kappa; None when chance agreement is 1 (see the module notes) or the
    /// matrix is empty.
    pub fn kappa(&self) -> Option<f64> {
        let n = self.total() as f64;
        if n == 0.0 {
            return None;
        }
        let po = (self.tp + self.tn) as f64 / n;
        let (true_pos, pred_pos) = (
            (self.tp + self.fn_) as f64 / n,
            (self.tp + self.fp) as f64 / n,
        );
        let pe = true_pos * pred_pos + (1.0 - true_pos) * (1.0 - pred_pos);
        if (1.0 - pe).abs() < 1e-15 {
            return None;
        }
        Some((po - pe) / (1.0 - pe))
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Mean and sample standard deviation (n - 1; 0 for one value) of the defined values,
/// and how many there were. None when there are none.
pub fn mean_std(values: impl IntoIterator<Item = Option<f64>>) -> Option<(f64, f64, usize)> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt(), v.len()))
}
