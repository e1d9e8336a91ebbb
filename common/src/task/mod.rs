//! Tasks: the contract between coordinator and executors.
//!
//! These are plain domain types; `silt-proto` converts them to and from the wire.
//! A task is identified by `(job_id, stage, index)`; every run of it is an *attempt*, and a
//! result is accepted only for the attempt and leader epoch the coordinator currently
//! expects (see `silt-coordinator`).
//!
//! A task is composed of parts rather than being one variant per operation: rows come from
//! an [`Input`], pass through [`Transform`]s in order, and end in a [`Sink`]. Every operation
//! (write, exchange map/reduce, DELETE, UPDATE, replaceWhere rewrites, later MERGE and
//! OPTIMIZE) is a combination of these.

mod input;
mod sink;
mod transform;

use std::collections::BTreeMap;

pub use input::{
    Input, MapOutputRef, MergeActionSpec, MergeClauseSpec, MergePass, MergeSpec, SourceFormat,
    SourceSplit, source_row_id,
};
pub use sink::{Constraint, FileSpec, RangeRoute, Route, Sink, StatsSpec};
pub use transform::{Assignment, ChangeRows, Keep, SelectSpec, Transform};

/// The table whose rows a task works on: rows between input and sink have this schema
/// (after a [`Transform::Conform`] for source inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Table root URL.
    pub uri: String,
    /// The table schema (Delta `StructType` JSON, as in `metaData.schemaString`), including
    /// partition columns.
    pub schema_json: String,
    /// Partition columns, in table order.
    pub partition_columns: Vec<String>,
}

/// What one task does: read `input`, apply `transforms` in order, write to `sink`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub table: TableSpec,
    pub input: Input,
    pub transforms: Vec<Transform>,
    pub sink: Sink,
}

impl Task {
    /// Short name for logs: input, transforms and sink, e.g. `files>filter>data-files`.
    pub fn name(&self) -> String {
        let mut parts = vec![self.input.name()];
        parts.extend(self.transforms.iter().map(Transform::name));
        parts.push(self.sink.name());
        parts.join(">")
    }
}

/// A deletion vector descriptor as the Delta log has it (`add.deletionVector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionVector {
    /// `u` (relative path derived from a UUID), `i` (inline) or `p` (absolute path).
    pub storage_type: String,
    pub path_or_inline_dv: String,
    pub offset: Option<i32>,
    pub size_in_bytes: i32,
    /// Rows the vector deletes.
    pub cardinality: i64,
}

/// A Delta data file written (an `add`) or read/removed (an active file).
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
    /// Rows in the file (also inside the stats); -1 when unknown. Rows deleted by the
    /// deletion vector are included.
    pub num_records: i64,
    /// Rows of the file that are deleted (active files of tables with deletion vectors).
    pub deletion_vector: Option<DeletionVector>,
}

impl DataFile {
    /// Rows of the file that are live (not deleted by its deletion vector); `None` when the
    /// file has no row count.
    pub fn live_rows(&self) -> Option<i64> {
        (self.num_records >= 0).then(|| {
            self.num_records - self.deletion_vector.as_ref().map_or(0, |dv| dv.cardinality)
        })
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
    pub task: Task,
}

impl TaskSpec {
    /// Human-readable id: `<job>/s<stage>/t<index>/a<attempt>`.
    pub fn display_id(&self) -> String {
        format!(
            "{}/s{}/t{}/a{}",
            self.job_id, self.stage, self.index, self.attempt
        )
    }

    /// Tag unique per stage, task and attempt, used in the names of what the attempt writes.
    pub fn attempt_tag(&self) -> String {
        attempt_tag(self.stage, self.index, self.attempt)
    }
}

/// [`TaskSpec::attempt_tag`] of an attempt: `s<stage>-t<index>-a<attempt>`.
pub fn attempt_tag(stage: u32, index: u32, attempt: u32) -> String {
    format!("s{stage}-t{index}-a{attempt}")
}

/// How an attempt (its tag) of a job writing files named with `file_prefix` names its data
/// files: they start with this. Executors name files so; the coordinator checks reports
/// against it; cleanup finds an attempt's files by it.
pub fn attempt_data_prefix(file_prefix: &str, tag: &str) -> String {
    format!("{file_prefix}-{tag}")
}

/// … its change data files (under `_change_data/`).
pub fn attempt_change_data_prefix(file_prefix: &str, tag: &str) -> String {
    format!("{}-cdc", attempt_data_prefix(file_prefix, tag))
}

/// … the directory (relative to the table root) of its deletion-vector file.
pub fn attempt_vector_dir(file_prefix: &str, tag: &str) -> String {
    format!("{}-dv", attempt_data_prefix(file_prefix, tag))
}

/// Counters a task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    pub rows_read: u64,
    pub bytes_read: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub files_written: u64,
    /// Table-file inputs: rows written back unchanged from the files read.
    pub rows_copied: u64,
    /// Rows dropped by [`Transform::Filter`] (DELETE, replaceWhere rewrites).
    pub rows_deleted: u64,
    /// Rows changed by [`Transform::Update`].
    pub rows_updated: u64,
    /// Table-file inputs: files read in full (they held a row the touch predicate matched).
    pub files_touched: u64,
    /// Table-file inputs: files scanned for a match that had none (left as they are).
    pub files_skipped: u64,
    /// Time spent finding matches (the scan pass of table-file inputs).
    pub scan_ms: u64,
    /// Exchange inputs: encoded bytes fetched from other executors (the rest were local).
    pub bytes_fetched_remote: u64,
    /// MERGE: source rows inserted.
    pub rows_inserted: u64,
    /// MERGE: of `rows_updated` and `rows_deleted`, those changed by a `WHEN NOT MATCHED BY
    /// SOURCE` clause (the rest were matched).
    pub rows_updated_by_source: u64,
    pub rows_deleted_by_source: u64,
    /// Bytes spilled to local disk by the task's joins and sorts.
    pub bytes_spilled: u64,
    /// MERGE: source rows the task read (a broadcast MERGE's local tasks each read all).
    pub rows_source: u64,
    /// Objects a [`Sink::DeleteObjects`] task deleted.
    pub files_deleted: u64,
    pub elapsed_ms: u64,
}

impl TaskMetrics {
    /// Several tasks' counters added up.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a TaskMetrics>) -> TaskMetrics {
        let mut m = TaskMetrics::default();
        for o in all {
            m.add(o);
        }
        m
    }

    /// Adds another task's counters to these (elapsed and scan times add up too).
    pub fn add(&mut self, o: &TaskMetrics) {
        self.rows_read += o.rows_read;
        self.bytes_read += o.bytes_read;
        self.rows_written += o.rows_written;
        self.bytes_written += o.bytes_written;
        self.files_written += o.files_written;
        self.rows_copied += o.rows_copied;
        self.rows_deleted += o.rows_deleted;
        self.rows_updated += o.rows_updated;
        self.files_touched += o.files_touched;
        self.files_skipped += o.files_skipped;
        self.scan_ms += o.scan_ms;
        self.bytes_fetched_remote += o.bytes_fetched_remote;
        self.rows_inserted += o.rows_inserted;
        self.rows_updated_by_source += o.rows_updated_by_source;
        self.rows_deleted_by_source += o.rows_deleted_by_source;
        self.bytes_spilled += o.bytes_spilled;
        self.rows_source += o.rows_source;
        self.elapsed_ms += o.elapsed_ms;
    }
}

/// A successful task's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Data files written.
    pub adds: Vec<DataFile>,
    /// Change data files written (paths under `_change_data/`; no statistics).
    pub cdc_files: Vec<DataFile>,
    /// Existing files whose rows this task rewrote (to be removed by the commit).
    pub removes: Vec<DataFile>,
    /// Exchange sinks: where this attempt's output is served from.
    pub exchange_output: Option<MapOutput>,
    /// MERGE discovery: ordinals of the target files holding a row a clause changes.
    pub touched_files: Vec<u32>,
    /// Broadcast MERGE: the source rows that matched a target row (a serialized
    /// `RoaringTreemap` of source row ids; empty: none).
    pub matched_source_rows: Vec<u8>,
    /// [`Sink::MarkRows`]: the table rows marked deleted, per file.
    pub deleted_rows: Vec<FileRows>,
    /// [`Transform::Identity`]: the last value generated, per identity column (none: no
    /// value generated).
    pub identity_values: BTreeMap<String, i64>,
    pub metrics: TaskMetrics,
}

/// Rows of one table file: the file's ordinal in the job's plan and a serialized
/// `RoaringTreemap` of positions among its live rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRows {
    pub file: u32,
    pub rows: Vec<u8>,
}

/// A map task attempt's exchange output: where it is, and its encoded bytes per partition
/// (for sizing and skew; 0 where the attempt had no rows for a partition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapOutput {
    pub location: MapOutputRef,
    pub partition_bytes: Vec<u64>,
}

/// Why a task attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub message: String,
    /// Whether another attempt (elsewhere) may succeed.
    pub retryable: bool,
    /// Shuffle endpoints the attempt could not fetch map outputs from (gone or without the
    /// output): the map tasks whose outputs lived there must run again.
    pub lost_map_outputs: Vec<String>,
}

impl From<&crate::Error> for TaskFailure {
    fn from(e: &crate::Error) -> Self {
        TaskFailure {
            message: crate::redact::credentials(&e.to_string()),
            retryable: e.is_retryable(),
            lost_map_outputs: match e {
                crate::Error::FetchFailed { address, .. } => vec![address.clone()],
                _ => Vec::new(),
            },
        }
    }
}
