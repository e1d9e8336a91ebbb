//! Where a task's rows go.

use crate::cluster::{CurveSpec, split_of};

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

/// How a task writes Delta data files into its table.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Roll to a new file once the current one reaches this many bytes.
    pub target_file_size_bytes: u64,
    pub stats: StatsSpec,
    /// File name prefix, unique per job, e.g. `part-<job>`; the executor appends the
    /// attempt tag (`-s0-t3-a1`), and files are named `<prefix>-<tag>-<n>.<codec>.parquet`.
    pub file_prefix: String,
    /// Rows are written in the order of this curve's keys (sorted with spilling to local
    /// disk), so that each file covers one stretch of the curve.
    pub sort_by: Option<CurveSpec>,
    /// The table's CHECK constraints and column invariants: every row written must satisfy
    /// each (a row for which one is false or null fails the task, naming it and the row's
    /// values).
    pub checks: Vec<Constraint>,
    /// Timestamp partition columns whose values the table holds in ISO-8601 form
    /// (`TableSnapshot::iso_timestamp_partitions`): new files' values and directories
    /// follow it.
    pub iso_timestamp_partitions: Vec<String>,
    /// The task records change data (see [`crate::change_data`]): its transforms tag the
    /// rows they delete, update or insert, and those are also written as change data files
    /// under `_change_data/`, reported as [`super::TaskOutput::cdc_files`].
    pub change_data: bool,
}

/// A condition every row of a table satisfies: a CHECK constraint (`delta.constraints.<name>`)
/// or a column invariant (`delta.invariants` in the column's metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// `CHECK constraint `<name>`` or `invariant of column `<column>``, for messages.
    pub name: String,
    /// SQL over the table's columns.
    pub expression: String,
}

/// Where a task's rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Delta data files of the task's table (Hive-style partition directories, rolled at
    /// the target size), returned as `adds`.
    DataFiles(FileSpec),
    /// An exchange: each row goes to the partition its [`Route`] gives. The output stays
    /// on the executor that runs the attempt (memory, then local spill).
    Exchange { route: Route, partitions: u32 },
    /// Deletes the object each row's `path` names under the table root (one already gone
    /// counts as deleted); counted in [`super::TaskMetrics::files_deleted`].
    DeleteObjects,
    /// Delta statistics of each input table file (rows tagged with their file ordinal, see
    /// `Input::TableFiles::row_ids`), returned as that file's `add` with the new stats.
    FileStats(StatsSpec),
    /// Rows that replace or leave table rows without rewriting their files: every row
    /// carrying a table row's id ([`crate::merge::FILE_COL`], [`crate::merge::ROW_COL`],
    /// not null) marks that row deleted (reported per file as
    /// [`super::TaskOutput::deleted_rows`]); rows are also written as data files with
    /// `write` (all of them, or those whose [`crate::merge::WRITE_COL`] is true when the rows
    /// have that column), without those columns.
    MarkRows { write: Option<FileSpec> },
    /// Deletion vectors for the rows of [`super::Input::DeletedRows`]: each file's new
    /// vector (its old one and the new rows) is written into one vector file of the attempt,
    /// `<file_prefix>-<attempt tag>-dv/deletion_vector_<uuid>.bin`; every file is reported
    /// removed and, unless no row of it is left, added again with its new vector. With
    /// `rewrite`, the files are rewritten instead (copy-on-write: their remaining rows
    /// written as new data files), where that is cheaper than a vector.
    DeletionVectors {
        file_prefix: String,
        rewrite: Option<FileSpec>,
    },
}

/// How an exchange's map task routes a row to a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `hash(keys) % partitions`, where the keys are SQL expressions over the row (e.g.
    /// partition columns, or a MERGE join key).
    Hash(Vec<String>),
    /// By range of the row's curve key: partition `offset + ` the number of `splits` at or
    /// below it (a Z-order range exchange).
    Range(RangeRoute),
}

/// A range route: see [`Route::Range`].
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRoute {
    pub curve: CurveSpec,
    /// Ascending curve keys.
    pub splits: Vec<u64>,
    pub offset: u32,
}

impl RangeRoute {
    /// The partition of each key.
    pub fn partitions(&self, keys: &[u64]) -> Vec<u32> {
        keys.iter()
            .map(|&k| self.offset + split_of(&self.splits, k))
            .collect()
    }
}

impl Sink {
    pub fn name(&self) -> &'static str {
        match self {
            Sink::DataFiles(_) => "data-files",
            Sink::Exchange { .. } => "exchange",
            Sink::DeleteObjects => "delete-objects",
            Sink::FileStats(_) => "file-stats",
            Sink::MarkRows { .. } => "mark-rows",
            Sink::DeletionVectors { .. } => "deletion-vectors",
        }
    }
}
