//! Independent trainings done several at a time, each on a device of its own: the
//! classifier runs of an experiment, the folds of a cross-validation.
//!
//! On a CPU adapter a small training leaves cores idle: its dispatches run one after
//! another, and many are too small to keep every core busy. On 2 cores (BENCHMARKS.md) two
//! quick classifier runs at once each go as fast as one alone; two U-Net trainings at once
//! do 1.25x the work of one for n = 8 at 64x64, and no more than one for n = 16, whose
//! dispatches fill the cores. Each worker opens its own device ([`Gpu::spec`]), so the
//! workers share nothing on the GPU side and every task's result is the same bits whatever
//! the number of workers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::Gpu;
use crate::{Error, Result};

/// Classifier runs to do at once on `gpu` unless told otherwise: 2 on a CPU adapter with at
/// least 2 cores, else 1 (a GPU's trainings are large enough to fill it; unmeasured
/// otherwise). Cross-validation folds default to 1 (see the module docs).
pub fn default_jobs(gpu: &Gpu) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if gpu.is_cpu() && cores >= 2 {
        2
    } else {
        1
    }
}

/// Do every task of `tasks`, `jobs` at a time: the calling thread on `gpu`, the others on
/// scoped threads, each with a device opened from `gpu.spec()`. Workers take the next task
/// in the given order until none is left or one fails; the first error (this thread's
/// first) is returned and the others stop after their current task. `what` names the tasks
/// in the message when another device cannot be opened ("runs", "folds").
pub fn for_each<T: Sync>(
    gpu: &Gpu,
    jobs: usize,
    tasks: &[T],
    what: &str,
    work: impl Fn(&Gpu, &T) -> Result<()> + Sync,
) -> Result<()> {
    let jobs = jobs.clamp(1, tasks.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let worker = |gpu: &Gpu| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let Some(t) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            if let Err(e) = work(gpu, t) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    };
    if jobs == 1 {
        return worker(gpu);
    }
    let spec = gpu.spec();
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let gpu = spec.open().map_err(|e| {
                        stop.store(true, Ordering::Relaxed);
                        Error(format!(
                            "could not open another device for {jobs} {what} at a time (use --jobs 1): {}",
                            e.0
                        ))
                    })?;
                    worker(&gpu)
                })
            })
            .collect();
        let mine = worker(gpu);
        let theirs = others.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error("a worker thread panicked".into())))
        });
        theirs.fold(mine, |acc, r| acc.and(r))
    })
}
