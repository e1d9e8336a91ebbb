//! Task specifications and results: the contract between coordinator and executors.
//!
//! These are plain domain types; `silt-proto` converts them to and from the wire.
//! A task is identified by `(job_id, stage, index)`; every run of it is an *attempt*, and a
//! result is accepted only for the attempt and leader epoch the coordinator currently
//! expects (see `silt-coordinator`).

use std::collections::BTreeMap;

/// Format of a write source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Parquet,
    Csv,
    Json,
    /// The active files of another Delta table (latest version).
    Delta,
}

impl SourceFormat {
    /// Parses `parquet|csv|json|delta`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            "json" | "ndjson" => Ok(Self::Json),
            "delta" => Ok(Self::Delta),
            other => Err(crate::Error::invalid(format!(
                "unknown source format `{other}` (expected parquet, csv, json or delta)"
            ))),
        }
    }

    /// Lower-case name, as accepted by [`SourceFormat::parse`].
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Delta => "delta",
        }
    }
}

/// One unit of source input: a whole file, or some row groups of a Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSplit {
    /// Absolute URL of the file (`file:///…`, `s3://…`).
    pub uri: String,
    pub format: SourceFormat,
    /// Parquet only: row groups to read; empty means the whole file.
    pub row_groups: Vec<u32>,
    /// Constant columns to append to every row (partition values of a Delta source file).
    /// `None` values are nulls. Values are in Delta's partition-value string form.
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Bytes this split covers (for planning and metrics).
    pub size_bytes: u64,
}

/// How data files collect statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSpec {
    /// `delta.dataSkippingNumIndexedCols`: first N leaf columns; -1 means all.
    pub num_indexed_cols: i32,
    /// `delta.dataSkippingStatsColumns`: explicit columns; takes precedence when set.
    pub stats_columns: Option<Vec<String>>,
    /// Prefix length to which string min/max are truncated (Delta default 32).
    pub string_prefix_len: usize,
}

impl Default for StatsSpec {
    fn default() -> Self {
        Self {
            num_indexed_cols: 32,
            stats_columns: None,
            string_prefix_len: 32,
        }
    }
}

/// Everything an executor needs to write Delta data files for a table.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterSpec {
    /// Table root URL.
    pub table_uri: String,
    /// The table schema (Delta `StructType` JSON, as in `metaData.schemaString`), including
    /// partition columns. Rows are conformed to it before writing.
    pub table_schema_json: String,
    /// Partition columns, in table order.
    pub partition_columns: Vec<String>,
    /// Roll to a new file once the current one reaches this many bytes.
    pub target_file_size_bytes: u64,
    pub stats: StatsSpec,
    /// File name prefix, unique per job/stage/task/attempt, e.g. `part-<job>-s0-t3-a1`.
    /// Files are named `<prefix>-<n>.<codec>.parquet`.
    pub file_prefix: String,
}

/// A Delta data file written (an `add`) or to be removed (a `remove`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    /// Path relative to the table root, URL-encoded as in the Delta log.
    pub path: String,
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size_bytes: i64,
    /// Milliseconds since the epoch.
    pub modification_time_ms: i64,
    /// Delta stats JSON (`numRecords`, `minValues`, `maxValues`, `nullCount`), if collected.
    pub stats_json: Option<String>,
    /// Rows in the file (also inside the stats).
    pub num_records: i64,
}

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// Read splits, conform to the table schema, check `check_predicate` on every row
    /// (replaceWhere), write data files directly. Used for unpartitioned tables.
    Write {
        splits: Vec<SourceSplit>,
        /// Delta `StructType` JSON of the source (needed to parse CSV/JSON).
        source_schema_json: String,
        check_predicate: Option<String>,
        writer: WriterSpec,
    },
    /// Map side of an exchange: read splits, conform and check as `Write` does, then
    /// route each row to reducer `hash(partition values) % num_reducers` and write one
    /// Arrow IPC stream per reducer under `shuffle_uri`.
    ShuffleMap {
        splits: Vec<SourceSplit>,
        source_schema_json: String,
        check_predicate: Option<String>,
        /// The table schema and partition columns are taken from here; no data file
        /// is written by a map task.
        writer: WriterSpec,
        num_reducers: u32,
        /// Directory URL for this task attempt's outputs.
        shuffle_uri: String,
    },
    /// Reduce side of an exchange: read this reducer's stream from every map output and
    /// write data files.
    ShuffleReduce {
        /// Map output directories of the accepted map attempts.
        map_outputs: Vec<String>,
        reducer: u32,
        writer: WriterSpec,
    },
    /// Rewrite existing data files keeping only rows for which `predicate` is not true
    /// (replaceWhere on files that match only partly).
    Rewrite {
        files: Vec<DataFile>,
        predicate: String,
        writer: WriterSpec,
    },
}

impl TaskKind {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Write { .. } => "write",
            TaskKind::ShuffleMap { .. } => "shuffle-map",
            TaskKind::ShuffleReduce { .. } => "shuffle-reduce",
            TaskKind::Rewrite { .. } => "rewrite",
        }
    }
}

/// A task attempt as dispatched to an executor.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub job_id: String,
    pub stage: u32,
    pub index: u32,
    pub attempt: u32,
    /// Epoch of the leader that planned the task.
    pub epoch: u64,
    /// Table version the task was planned on (-1: table did not exist).
    pub snapshot_version: i64,
    pub kind: TaskKind,
}

impl TaskSpec {
    /// Human-readable id: `<job>/s<stage>/t<index>/a<attempt>`.
    pub fn display_id(&self) -> String {
        format!(
            "{}/s{}/t{}/a{}",
            self.job_id, self.stage, self.index, self.attempt
        )
    }
}

/// Counters a task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    pub rows_read: u64,
    pub bytes_read: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub files_written: u64,
    /// Rewrite tasks: rows copied unchanged from rewritten files.
    pub rows_copied: u64,
    pub elapsed_ms: u64,
}

/// A successful task's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Data files written.
    pub adds: Vec<DataFile>,
    /// Existing files to remove (rewrite tasks).
    pub removes: Vec<DataFile>,
    /// Shuffle map tasks: the directory holding this attempt's outputs.
    pub shuffle_output: Option<String>,
    pub metrics: TaskMetrics,
}

/// Why a task attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub message: String,
    /// Whether another attempt (elsewhere) may succeed.
    pub retryable: bool,
}

impl From<&crate::Error> for TaskFailure {
    fn from(e: &crate::Error) -> Self {
        TaskFailure {
            message: e.to_string(),
            retryable: e.is_retryable(),
        }
    }
}
