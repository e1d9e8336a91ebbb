//! The silt executor: registers with a coordinator, pulls tasks, runs them and reports
//! their results. Executors read sources and write data files and exchange outputs; they
//! never write to `_delta_log` and never commit.
//!
//! Code map: [`runtime`] (registration, heartbeats, polling, cancellation — the gRPC client
//! side), [`tasks`] (running a task: input → transforms → sink, on `silt-common`),
//! [`shuffle`] (map outputs kept on this executor, its shuffle endpoint, fetching from
//! others), [`workdir`] (the executor's local scratch directory, and deleting those of
//! executors that were killed), [`faults`] (test-only fault injection at named points of an
//! attempt).

pub mod faults;
pub mod runtime;
pub mod shuffle;
pub mod tasks;
pub mod workdir;

pub use runtime::{ExecutorConfig, run_executor};
