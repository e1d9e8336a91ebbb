//! Writing Delta data files: the rolling per-partition Parquet writer ([`writer`]), the
//! per-file statistics it collects ([`stats`]), and the same writer fed in curve order
//! through an external sort ([`sorted`]).

pub mod sorted;
pub mod stats;
pub mod writer;

pub use sorted::SortedWriter;
pub use writer::DataFileWriter;
