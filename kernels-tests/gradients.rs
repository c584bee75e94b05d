//! Every f64 reference backward against central finite differences of the f64 reference
//! forward. For a vector op y = f(x) we differentiate the scalar F(x) = <r, f(x)> with a
//! random r, whose gradient is exactly the backward of f applied to dy = r.
//! In f64 with h = 1e-6 the central difference is accurate to about 1e-9 here, so the
//! tolerance is |fd - ref| <= 1e-7 + 1e-6 |ref|.

mod common;
use common::reference as r;
use common::*;

const H: f64 = 1e-6;
const FD_ATOL: f64 = 1e-7;
const FD_RTOL: f64 = 1e-6;

fn rv(seed: u64, n: usize) -> Vec<f64> {
    f64s(&rand_vec(&mut rng(seed), n))
}

fn check_fd(what: &str, analytic: &[f64], f: &dyn Fn(&[f64]) -> f64, x: &[f64]) {
    let fd = r::finite_diff(f, x, H);
    assert_eq!(fd.len(), analytic.len(), "{what}: length");
    for (i, (&a, &d)) in analytic.iter().zip(&fd).enumerate() {
        let err = (a - d).abs();
        assert!(
            err <= FD_ATOL + FD_RTOL * d.abs(),
            "{what}: d/dx[{i}] analytic {a} vs finite difference {d} (|diff| {err:e})"
        );
    }
}

#[test]
fn conv3x3_backward_matches_finite_differences() {
    let (n, cin, cout, h, w) = (2, 3, 4, 5, 6);
    let (x, wt, b) = (rv(1, n * cin * h * w), rv(2, cout * cin * 9), rv(3, cout));
    let dy = rv(4, n * cout * h * w);
    let (dx, dw, db) = r::conv3x3_backward(&dy, &x, &wt, n, cin, cout, h, w);
    check_fd(
        "conv3x3 dx",
        &dx,
        &|x| r::dot(&dy, &r::conv3x3(x, &wt, &b, n, cin, cout, h, w)),
        &x,
    );
    check_fd(
        "conv3x3 dw",
        &dw,
        &|wt| r::dot(&dy, &r::conv3x3(&x, wt, &b, n, cin, cout, h, w)),
        &wt,
    );
    check_fd(
        "conv3x3 db",
        &db,
        &|b| r::dot(&dy, &r::conv3x3(&x, &wt, b, n, cin, cout, h, w)),
        &b,
    );
}

#[test]
fn conv3x3x3_backward_matches_finite_differences() {
    let (nc, dhw) = ((2, 2, 3), (3, 4, 3));
    let (x, wt, b) = (rv(41, 2 * 2 * 36), rv(42, 3 * 2 * 27), rv(43, 3));
    let dy = rv(44, 2 * 3 * 36);
    let (dx, dw, db) = r::conv3x3x3_backward(&dy, &x, &wt, nc, dhw);
    let f = |x: &[f64], wt: &[f64], b: &[f64]| r::dot(&dy, &r::conv3x3x3(x, wt, b, nc, dhw));
    check_fd("conv3x3x3 dx", &dx, &|x| f(x, &wt, &b), &x);
    check_fd("conv3x3x3 dw", &dw, &|wt| f(&x, wt, &b), &wt);
    check_fd("conv3x3x3 db", &db, &|b| f(&x, &wt, b), &b);
}

#[test]
fn pool3d_backward_matches_finite_differences() {
    for fd in [1, 2] {
        let (planes, dhw) = (3, (2 * fd, 4, 6));
        let n = planes * dhw.0 * dhw.1 * dhw.2;
        // Distinct values, so that no maximum ties and the max is differentiable.
        let x: Vec<f64> = rv(45, n)
            .iter()
            .enumerate()
            .map(|(i, v)| v + i as f64 * 1e-3)
            .collect();
        let dy = rv(46, n / (4 * fd));
        let dx = r::maxpool3d_backward(&x, &dy, planes, dhw, fd);
        check_fd(
            &format!("maxpool3d by {fd}x2x2 dx"),
            &dx,
            &|x| r::dot(&dy, &r::maxpool3d(x, planes, dhw, fd)),
            &x,
        );
        let small = (dhw.0 / fd, 2, 3);
        let xs = rv(47, planes * small.0 * 6);
        let dy = rv(48, xs.len() * 4 * fd);
        let dx = r::upsample3d_backward(&dy, planes, small, fd);
        check_fd(
            &format!("upsample3d by {fd}x2x2 dx"),
            &dx,
            &|x| r::dot(&dy, &r::upsample3d(x, planes, small, fd)),
            &xs,
        );
    }
}

#[test]
fn conv1x1_backward_matches_finite_differences() {
    let (n, cin, cout, p) = (2, 5, 3, 7);
    let (x, wt, b) = (rv(5, n * cin * p), rv(6, cout * cin), rv(7, cout));
    let dy = rv(8, n * cout * p);
    let (dx, dw, db) = r::conv1x1_backward(&dy, &x, &wt, n, cin, cout, p);
    check_fd(
        "conv1x1 dx",
        &dx,
        &|x| r::dot(&dy, &r::conv1x1(x, &wt, &b, n, cin, cout, p)),
        &x,
    );
    check_fd(
        "conv1x1 dw",
        &dw,
        &|wt| r::dot(&dy, &r::conv1x1(&x, wt, &b, n, cin, cout, p)),
        &wt,
    );
    check_fd(
        "conv1x1 db",
        &db,
        &|b| r::dot(&dy, &r::conv1x1(&x, &wt, b, n, cin, cout, p)),
        &b,
    );
}

#[test]
fn linear_backward_matches_finite_differences() {
    let (n, i, o) = (3, 7, 5);
    let (x, wt, b) = (rv(9, n * i), rv(10, o * i), rv(11, o));
    let dy = rv(12, n * o);
    let (dx, dw, db) = r::linear_backward(&dy, &x, &wt, n, i, o);
    check_fd(
        "linear dx",
        &dx,
        &|x| r::dot(&dy, &r::linear(x, &wt, &b, n, i, o)),
        &x,
    );
    check_fd(
        "linear dW",
        &dw,
        &|wt| r::dot(&dy, &r::linear(&x, wt, &b, n, i, o)),
        &wt,
    );
    check_fd(
        "linear db",
        &db,
        &|b| r::dot(&dy, &r::linear(&x, &wt, b, n, i, o)),
        &b,
    );
}

#[test]
fn activations_backward_match_finite_differences() {
    let x: Vec<f64> = rv(13, 50).iter().map(|v| 3.0 * v).collect();
    let dy = rv(14, 50);
    check_fd(
        "elu",
        &r::elu_backward(&x, &dy),
        &|x| r::dot(&dy, &r::elu(x)),
        &x,
    );
    check_fd(
        "elu from its output",
        &r::elu_backward_from_output(&r::elu(&x), &dy),
        &|x| r::dot(&dy, &r::elu(x)),
        &x,
    );
    check_fd(
        "relu",
        &r::relu_backward(&x, &dy),
        &|x| r::dot(&dy, &r::relu(x)),
        &x,
    );
}

#[test]
fn pool_upsample_concat_backward_match_finite_differences() {
    let (planes, h, w) = (3, 4, 6);
    let x = rv(15, planes * h * w);
    let dy = rv(16, planes * h * w / 4);
    check_fd(
        "maxpool2",
        &r::maxpool2_backward(&x, &dy, planes, h, w),
        &|x| r::dot(&dy, &r::maxpool2(x, planes, h, w)),
        &x,
    );
    let dy = rv(17, planes * 4 * h * w);
    check_fd(
        "upsample2",
        &r::upsample2_backward(&dy, planes, h, w),
        &|x| r::dot(&dy, &r::upsample2(x, planes, h, w)),
        &x,
    );
    let (n, ca, cb, p) = (2, 3, 2, 5);
    let (a, b) = (rv(18, n * ca * p), rv(19, n * cb * p));
    let dy = rv(20, n * (ca + cb) * p);
    let (da, db) = r::concat_backward(&dy, n, ca, cb, p);
    check_fd(
        "concat a",
        &da,
        &|a| r::dot(&dy, &r::concat(a, &b, n, ca, cb, p)),
        &a,
    );
    check_fd(
        "concat b",
        &db,
        &|b| r::dot(&dy, &r::concat(&a, b, n, ca, cb, p)),
        &b,
    );
}

#[test]
fn softmax_ce_backward_matches_finite_differences() {
    for (n, c, p) in [(2, 6, 5), (7, 2, 1)] {
        let z: Vec<f64> = rv(21, n * c * p).iter().map(|v| 3.0 * v).collect();
        // One label out of range: ignored by forward and backward alike.
        let labels: Vec<usize> = (0..n * p)
            .map(|i| if i == 1 { c } else { (i * 5 + 1) % c })
            .collect();
        let cw: Vec<f64> = (0..c).map(|k| 0.2 + 0.15 * k as f64).collect();
        let dl = 1.3;
        let dz = r::softmax_ce_backward(&z, &labels, &cw, n, c, p, dl);
        check_fd(
            "softmax_ce",
            &dz,
            &|z| dl * r::softmax_ce(z, &labels, &cw, n, c, p),
            &z,
        );
    }
}

#[test]
fn leaky_relu_dropout_and_gap_backward_match_finite_differences() {
    // Inputs away from 0, where the leaky ReLU has its kink.
    let x: Vec<f64> = rv(40, 30).iter().map(|v| v + v.signum() * 0.1).collect();
    let dy = rv(41, 30);
    for a in [0.0, 0.01, 0.3] {
        check_fd(
            &format!("leaky_relu a={a}"),
            &r::leaky_relu_backward(&x, &dy, a),
            &|x| r::dot(&dy, &r::leaky_relu(x, a)),
            &x,
        );
    }
    let keep: Vec<bool> = (0..30).map(|i| i % 3 != 1).collect();
    check_fd(
        "dropout",
        &r::dropout(&dy, &keep, 0.4),
        &|x| r::dot(&dy, &r::dropout(x, &keep, 0.4)),
        &x,
    );
    let gdy = rv(42, 5);
    check_fd(
        "gap",
        &r::gap_backward(&gdy, 5, 6),
        &|x| r::dot(&gdy, &r::gap(x, 5, 6)),
        &x,
    );
}

#[test]
fn batchnorm_backward_matches_finite_differences() {
    for (n, c, hw) in [(3, 2, 4), (5, 3, 1), (1, 2, 6)] {
        let x = rv(50, n * c * hw);
        let gamma: Vec<f64> = rv(51, c).iter().map(|v| 1.0 + 0.5 * v).collect();
        let beta = rv(52, c);
        let dy = rv(53, n * c * hw);
        let f =
            |x: &[f64], g: &[f64], b: &[f64]| r::dot(&dy, &r::batchnorm(x, g, b, n, c, hw, None).0);
        let (dx, dg, db) = r::batchnorm_backward(&x, &dy, &gamma, n, c, hw);
        let tag = format!("batchnorm n{n} c{c} hw{hw}");
        check_fd(&format!("{tag} dx"), &dx, &|x| f(x, &gamma, &beta), &x);
        check_fd(&format!("{tag} dgamma"), &dg, &|g| f(&x, g, &beta), &gamma);
        check_fd(&format!("{tag} dbeta"), &db, &|b| f(&x, &gamma, b), &beta);
        // With frozen statistics the mean and variance are constants.
        let frozen = (
            rv(54, c),
            rv(55, c).iter().map(|v| 1.5 + v).collect::<Vec<_>>(),
        );
        let ff = |x: &[f64], g: &[f64], b: &[f64]| {
            r::dot(
                &dy,
                &r::batchnorm(x, g, b, n, c, hw, Some(frozen.clone())).0,
            )
        };
        let (dx, dg, db) = r::batchnorm_backward_frozen(&x, &dy, &gamma, &frozen, n, c, hw);
        check_fd(
            &format!("{tag} frozen dx"),
            &dx,
            &|x| ff(x, &gamma, &beta),
            &x,
        );
        check_fd(
            &format!("{tag} frozen dgamma"),
            &dg,
            &|g| ff(&x, g, &beta),
            &gamma,
        );
        check_fd(
            &format!("{tag} frozen dbeta"),
            &db,
            &|b| ff(&x, &gamma, b),
            &beta,
        );
    }
}
