//! The silt executor: registers with a coordinator, pulls tasks, runs them and reports
//! their results. Executors read sources and write data files and exchange outputs; they
//! never write to `_delta_log` and never commit.
//!
//! Code map: [`runtime`] (registration, heartbeats, polling, cancellation — the only gRPC
//! code), [`tasks`] (what each task kind does, on `silt-common`).

pub mod runtime;
pub mod tasks;

pub use runtime::{ExecutorConfig, run_executor};
