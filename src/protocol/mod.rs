//! The disease-detection experiment (paper, section 3.2): splits, runs, resumable JSONL
//! results, shards, metrics, reports and figures. It trains classifiers through
//! [`crate::train::cls`] and never dispatches a kernel itself.

pub mod demo;
pub mod experiment;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod single;

pub use experiment::{Protocol, RunId, Shard};
pub use metrics::Confusion;
