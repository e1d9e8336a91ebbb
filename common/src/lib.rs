//! Domain types and logic shared by the silt coordinator and executors: task
//! specifications, Delta table access, reading sources, writing Parquet data files with
//! Delta statistics, schemas, predicates and the exchange (shuffle) format.
//!
//! Nothing here knows gRPC or prost types; nothing here commits to a Delta log.

pub mod error;
pub mod partition;
pub mod predicate;
pub mod schema;
pub mod shuffle;
pub mod source;
pub mod stats;
pub mod storage;
pub mod table;
pub mod task;
pub mod writer;

pub use error::{Error, Result};
