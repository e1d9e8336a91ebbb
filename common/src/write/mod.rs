//! Writing Delta data files: the rolling per-partition Parquet writer ([`writer`]) and the
//! per-file statistics it collects ([`stats`]).

pub mod stats;
pub mod writer;

pub use writer::DataFileWriter;
