//! Errors of the data generator library.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that cannot be honoured (bad size, file count, batch size, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The output directory already holds generated files and overwriting was not asked for.
    #[error(
        "{dir} already holds {count} part file(s) (e.g. {example}); pass --overwrite to replace them"
    )]
    OutputExists {
        dir: PathBuf,
        count: usize,
        example: PathBuf,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A generator produced a different number of rows than it planned (a bug).
    #[error("{table}: generated {got} rows for file {file}, planned {planned}")]
    RowCount {
        table: &'static str,
        file: usize,
        got: u64,
        planned: u64,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
