//! Domain types and logic shared by the silt coordinator, executors and clients: job
//! requests and SQL statements, task specifications, Delta table access (snapshots,
//! properties, pruning, deletion vectors), reading sources, writing Parquet data files with
//! Delta statistics, schemas, expressions and the exchange format.
//!
//! Nothing here knows gRPC or prost types; nothing here commits to a Delta log.

pub mod change_data;
pub mod cleanup;
pub mod cluster;
pub mod error;
pub mod exchange;
pub mod expr;
pub(crate) mod hash;
pub mod merge;
pub mod partition;
pub mod redact;
pub mod request;
pub mod schema;
pub mod source;
pub mod spill;
pub mod sql;
pub mod storage;
pub mod table;
pub mod task;
pub mod write;

pub use error::{Error, Result};

#[cfg(test)]
pub(crate) mod test_rng {
    /// A seeded xorshift generator (the seed is printed, so a failure can be replayed).
    pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        println!("seed {seed:#x}");
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }
}
