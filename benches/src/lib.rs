//! TPC-DS-style data generation for silt benchmarks (`silt-datagen`).
//!
//! * [`rng`]: deterministic per-(seed, table, unit, purpose) random streams.
//! * [`calendar`], [`scale`]: TPC-DS date/time keys and table cardinalities per scale factor.
//! * [`fact`]: the block structure of the sales tables and the selection of their returns.
//! * [`columns`], [`text`]: batch building and the text values of dimension tables.
//! * [`driver`]: writes any [`driver::TableGenerator`] as Snappy Parquet files in parallel.
//! * [`tables`]: one module per table, plus what several tables share.
//!
//! Output is a pure function of (table, seed, size): thread count, file count, batch size and
//! row group size change only how it is written.

pub mod calendar;
pub mod columns;
pub mod driver;
pub mod error;
pub mod fact;
pub mod rng;
pub mod scale;
pub mod tables;
pub mod text;

pub use error::{Error, Result};
