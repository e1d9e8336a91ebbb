//! TPC-DS-style data generation for silt benchmarks (`silt-datagen`).
//!
//! * [`rng`]: deterministic per-(seed, table, file, purpose) random streams.
//! * [`calendar`], [`scale`]: TPC-DS date/time keys and table cardinalities per scale factor.
//! * [`driver`]: writes any [`driver::TableGenerator`] as Snappy Parquet files in parallel.
//! * [`tables`]: one module per table.
//!
//! Output is a pure function of (table, seed, rows, files): thread count, batch size and row
//! group size change only how it is written.

pub mod calendar;
pub mod driver;
pub mod rng;
pub mod scale;
pub mod tables;
