//! The one error type of `silt-common`.
//!
//! Every variant says whether retrying the same work elsewhere can help
//! ([`Error::is_retryable`]): bad input is deterministic and fails a job at once,
//! storage and transport faults are retried by the scheduler.

use std::fmt;

/// Errors raised by shared silt logic (reading sources, writing data files, schemas,
/// predicates, table access).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong (missing source, unknown column, bad option value).
    #[error("{0}")]
    InvalidInput(String),
    /// Source schema does not fit the table schema (names the columns and types).
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    /// A predicate that does not parse or does not type-check against the schema.
    #[error("invalid predicate `{predicate}`: {reason}")]
    InvalidPredicate { predicate: String, reason: String },
    /// New rows that violate the `replaceWhere` predicate, or other data-level violations
    /// (nulls in a NOT NULL column). Deterministic.
    #[error("data violation: {0}")]
    DataViolation(String),
    /// A file that exists but cannot be decoded (corrupt Parquet, malformed CSV). Deterministic.
    #[error("cannot read {path}: {reason}")]
    CorruptFile { path: String, reason: String },
    /// The table uses a feature silt cannot safely write (reader/writer features).
    #[error("unsupported table: {0}")]
    Unsupported(String),
    /// Object store access failed (possibly transient).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Arrow compute or IPC failure.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet encoding or decoding failure.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// DataFusion planning or execution failure.
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Delta log access or commit failure.
    #[error("delta: {0}")]
    Delta(#[from] deltalake_core::DeltaTableError),
    /// An exchange partition could not be fetched from the executor holding a map output
    /// (gone, or no longer holding it): the map task must run again.
    #[error("cannot fetch map output {map_id} from {address}: {reason}")]
    FetchFailed {
        address: String,
        map_id: String,
        reason: String,
    },
    /// A broken internal invariant; a bug in silt.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether running the same work again (on another executor) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ObjectStore(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
            ),
            Error::Delta(_) | Error::Internal(_) | Error::FetchFailed { .. } => true,
            _ => false,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::InvalidInput(msg.to_string())
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(msg: impl fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

/// Result alias for `silt-common`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
