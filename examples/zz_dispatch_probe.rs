use segfeat::{ops, Gpu, Tensor};
fn main() {
    let gpu = Gpu::new().unwrap();
    let t = Tensor::zeros(&gpu, &[16]).unwrap();
    for n in [100usize, 1000, 1000] {
        gpu.sync();
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            ops::elementwise::fill(&gpu, &t, 1.0).unwrap();
        }
        gpu.sync();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "{n} tiny dispatches: {:.3} ms total, {:.1} us each (record {:.1} us each so far)",
            s * 1e3,
            s * 1e6 / n as f64,
            gpu.record_seconds() * 1e6 / gpu.dispatch_count() as f64
        );
    }
}
