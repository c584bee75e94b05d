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

/// Area under the ROC curve of scores against truth (`true` is diseased): the probability
/// that a random positive scores above a random negative, ties counting one half (the
/// Mann-Whitney U statistic over n_pos * n_neg). None without both classes.
pub fn auc(pairs: impl IntoIterator<Item = (bool, f64)>) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = pairs.into_iter().map(|(t, s)| (s, t)).collect();
    let n_pos = v.iter().filter(|x| x.1).count();
    let n_neg = v.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || v.iter().any(|x| x.0.is_nan()) {
        return None;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based), tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Counts of a test with C >= 2 classes: `counts[truth][predicted]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiConfusion {
    pub counts: Vec<Vec<u64>>,
}

impl MultiConfusion {
    /// Count (truth, predicted) class pairs of a `classes`-class test.
    pub fn from_pairs(classes: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut counts = vec![vec![0u64; classes]; classes];
        for (t, p) in pairs {
            counts[t][p] += 1;
        }
        MultiConfusion { counts }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The fraction of images whose predicted class is their true class.
    pub fn accuracy(&self) -> Option<f64> {
        let diag: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(diag, self.total())
    }

    /// Recall (sensitivity) of class `c`: correct among the images of class c.
    pub fn recall(&self, c: usize) -> Option<f64> {
        ratio(self.counts[c][c], self.counts[c].iter().sum())
    }

    /// Precision of class `c`: correct among the images predicted as c.
    pub fn precision(&self, c: usize) -> Option<f64> {
        ratio(self.counts[c][c], self.counts.iter().map(|r| r[c]).sum())
    }

    /// Cohen's kappa over all classes: (p_o - p_e) / (1 - p_e), p_o the accuracy and p_e
    /// the sum over classes of (truth share) x (prediction share). None when p_e is 1 or
    /// the matrix is empty. With two classes it equals [`Confusion::kappa`].
    pub fn kappa(&self) -> Option<f64> {
        let n = self.total() as f64;
        if n == 0.0 {
            return None;
        }
        let c = self.counts.len();
        let po = (0..c).map(|i| self.counts[i][i]).sum::<u64>() as f64 / n;
        let pe: f64 = (0..c)
            .map(|i| {
                let row: u64 = self.counts[i].iter().sum();
                let col: u64 = self.counts.iter().map(|r| r[i]).sum();
                row as f64 * col as f64
            })
            .sum::<f64>()
            / (n * n);
        if (1.0 - pe).abs() < 1e-12 {
            return None;
        }
        Some((po - pe) / (1.0 - pe))
    }
}

/// The mean over classes of the one-vs-rest AUC of each class's probability (classes
/// whose AUC is undefined, absent from the truth or alone in it, are left out). `probs`
/// holds one row of C probabilities per image.
pub fn macro_auc(truth: &[u8], probs: &[Vec<f32>]) -> Option<f64> {
    let c = probs.first()?.len();
    let per: Vec<f64> = (0..c)
        .filter_map(|k| {
            auc(truth
                .iter()
                .zip(probs)
                .map(|(&t, p)| (t as usize == k, p[k] as f64)))
        })
        .collect();
    (!per.is_empty()).then(|| per.iter().sum::<f64>() / per.len() as f64)
}

/// splitmix64: a fixed generator, so that intervals never depend on a crate's.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Bootstrap resamples of [`bootstrap_mean`].
pub const RESAMPLES: usize = 10_000;

/// The percentile bootstrap 95% interval of the mean of `values` (not empty): the 2.5th
/// and 97.5th percentiles of the means of [`RESAMPLES`] resamples drawn with `g`.
pub fn bootstrap_mean(values: &[f64], g: &mut SplitMix) -> (f64, f64) {
    let n = values.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            (0..n)
                .map(|_| values[(g.next_u64() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    (
        means[(0.025 * RESAMPLES as f64) as usize],
        means[(0.975 * RESAMPLES as f64) as usize - 1],
    )
}

/// The bootstrap 95% interval of the mean of the defined values, seeded by `key` (the
/// same key gives the same interval); None without values.
pub fn mean_ci(values: impl Iterator<Item = Option<f64>>, key: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    // FNV-1a of the key: a seed per table cell.
    let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    Some(bootstrap_mean(&v, &mut SplitMix(seed)))
}

/// A paired comparison over repetitions: the differences d_r = b_r - a_r, their mean, a
/// seeded percentile-bootstrap 95% confidence interval of the mean (10,000 resamples of
/// the repetitions) and the two-sided p-value of an exact sign-flip permutation test of
/// mean 0 (every one of the 2^n sign patterns when n <= 16, else 100,000 seeded ones).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub p: f64,
}

impl Paired {
    /// None when there are no differences.
    pub fn of(diffs: &[f64], seed: u64) -> Option<Paired> {
        let n = diffs.len();
        if n == 0 {
            return None;
        }
        let mean = diffs.iter().sum::<f64>() / n as f64;
        let mut g = SplitMix(seed ^ 0x9E37_79B9_7F4A_7C15);
        let (lo, hi) = bootstrap_mean(diffs, &mut g);
        let mut next = move || g.next_u64();
        // Sign flips: how often a mean at least as far from 0 arises when each
        // difference's sign is a coin toss. A tolerance keeps ties in floating point.
        let observed = mean.abs() - 1e-12;
        let as_far = |negate: &dyn Fn(usize) -> bool| {
            let m: f64 = diffs
                .iter()
                .enumerate()
                .map(|(i, d)| if negate(i) { -d } else { *d })
                .sum::<f64>()
                / n as f64;
            m.abs() >= observed
        };
        let p = if n <= 16 {
            let all = 1u64 << n;
            (0..all).filter(|&s| as_far(&|i| s >> i & 1 == 1)).count() as f64 / all as f64
        } else {
            const FLIPS: usize = 100_000;
            // The observed pattern counts once, so p is never 0.
            let hits = (0..FLIPS)
                .filter(|_| {
                    let signs: Vec<bool> = (0..n).map(|_| next() >> 63 == 1).collect();
                    as_far(&|i| signs[i])
                })
                .count();
            (1 + hits) as f64 / (FLIPS + 1) as f64
        };
        Some(Paired { n, mean, lo, hi, p })
    }
}
