//! Where a task's rows come from.

use std::collections::BTreeMap;

use super::{Assignment, DataFile, SelectSpec};
use crate::request::MergeClauseKind;

/// Format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Parquet,
    Csv,
    Json,
    /// The active files of another Delta table.
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
    /// Delta sources: the file's deletion vector (its rows are skipped).
    pub deletion_vector: Option<super::DeletionVector>,
}

/// Where a task's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Source splits, read with the source schema (Delta `StructType` JSON, needed to parse
    /// CSV/JSON). Rows still have the source's shape: follow with [`super::Transform::Conform`].
    Source {
        splits: Vec<SourceSplit>,
        schema_json: String,
    },
    /// Data files of the task's table, read back as complete table rows (partition values
    /// filled in, rows deleted by a deletion vector skipped).
    ///
    /// With `touch`, each file is first scanned for a row for which the predicate is true;
    /// a file without one produces no rows and no action (it stays in the table), a file
    /// with one is read in full and reported in [`super::TaskOutput::removes`]. Without
    /// `touch`, every file is read and reported.
    ///
    /// With `row_ids`, every row also carries [`crate::merge::FILE_COL`] (the file's ordinal:
    /// `row_ids` plus its index in `files`) and [`crate::merge::ROW_COL`] (its position
    /// among the file's live rows), so that a later join can tell rows and files apart.
    TableFiles {
        files: Vec<DataFile>,
        touch: Option<String>,
        row_ids: Option<u32>,
    },
    /// One partition of an exchange: that partition's rows from every map output, fetched
    /// from the executors holding them.
    Exchange {
        map_outputs: Vec<MapOutputRef>,
        partition: u32,
    },
    /// The rows of a MERGE: target rows (`target`, tagged with row ids) joined with source
    /// rows (`source`) on the MERGE condition, each resolved by the first clause that
    /// applies. Both sides are read in full before the join (each is one exchange
    /// partition, sized to fit the task's memory).
    Merge {
        target: Box<Input>,
        source: Box<Input>,
        merge: MergeSpec,
    },
    /// Objects under the table root, as rows of one column `path` (relative to the root):
    /// what VACUUM deletes through [`super::Sink::DeleteObjects`].
    Objects { paths: Vec<String> },
    /// Rows to delete from table files, gathered from earlier tasks' reports
    /// ([`super::TaskOutput::deleted_rows`]): `rows[i]` is a serialized `RoaringTreemap` of
    /// positions among the live rows of `files[i]` (as its deletion vector stood when the
    /// job read it). One row per file (`file`: its index, `rows`: the bitmap), for
    /// [`super::Sink::DeletionVectors`].
    DeletedRows {
        files: Vec<DataFile>,
        rows: Vec<Vec<u8>>,
    },
}

/// A MERGE as its join tasks carry it: names, condition and clauses as SQL, `*` forms
/// already expanded by the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSpec {
    pub target_alias: Option<String>,
    pub source_alias: Option<String>,
    /// Schema of the target rows (the table's at the version read), Delta JSON.
    pub target_schema_json: String,
    /// Schema of the source rows, Delta JSON (after `source_select`).
    pub source_schema_json: String,
    /// A `SELECT` the source's rows go through first (broadcast tasks read the source
    /// themselves and apply it; exchange map tasks apply it as a transform).
    pub source_select: Option<SelectSpec>,
    /// The `ON` condition.
    pub on: String,
    pub clauses: Vec<MergeClauseSpec>,
    pub pass: MergePass,
    /// Rewrite and insert passes record change data (see [`crate::change_data`]): rows
    /// carry their change type, and the target rows a clause updates or deletes are also
    /// emitted as they were.
    pub record_changes: bool,
}

/// One `WHEN … THEN …` clause of a [`MergeSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct MergeClauseSpec {
    pub kind: MergeClauseKind,
    pub condition: Option<String>,
    pub action: MergeActionSpec,
}

/// What a clause does; assignments name output (table) columns.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeActionSpec {
    /// Assigned columns take their expression; the others keep the target's value.
    Update(Vec<Assignment>),
    Delete,
    /// Assigned columns take their expression; the others are null.
    Insert(Vec<Assignment>),
}

/// Which pass of a MERGE a join task runs.
#[derive(Debug, Clone, PartialEq)]
pub enum MergePass {
    /// Finds the target files holding a row that a clause changes (reported as
    /// [`super::TaskOutput::touched_files`]) and fails on a target row matched by several
    /// source rows (unless Delta allows it). Produces no rows.
    Discover,
    /// Produces the MERGE's rows: those of the touched target files (by ordinal), changed,
    /// copied or deleted, and the inserted source rows.
    Rewrite { touched: Vec<u32> },
    /// Broadcast: this task's target files (`TableFiles` with row ids) against the whole
    /// source (`Source`, every split): discovery over the columns ON and the conditions read,
    /// then the rewrite of the files a clause changes (reported as removes); the source rows
    /// that matched are reported ([`super::TaskOutput::matched_source_rows`]). No inserts.
    Local,
    /// Broadcast: the source rows of this task's splits (the first is split `first_split`
    /// of the source) that matched no target row (`matched`: the source rows that did, a
    /// serialized `RoaringTreemap` of source row ids), through the NOT MATCHED clauses.
    Insert { first_split: u32, matched: Vec<u8> },
}

/// The id of a source row in a broadcast MERGE: its split and its position in the split.
pub fn source_row_id(split: u32, row: u64) -> u64 {
    (u64::from(split) << 32) | row
}
/// Where one map task attempt's exchange output lives: on the executor that produced it,
/// served from its shuffle endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MapOutputRef {
    /// `host:port` of the producing executor's shuffle endpoint.
    pub address: String,
    /// The attempt's output id on that executor (unique per job, stage, task and attempt).
    pub map_id: String,
    /// The map task that produced it (stage id and task index), to re-run it when lost.
    pub map_stage: u32,
    pub map_index: u32,
}

impl Input {
    pub fn name(&self) -> &'static str {
        match self {
            Input::Source { .. } => "source",
            Input::TableFiles { .. } => "files",
            Input::Exchange { .. } => "exchange",
            Input::Merge { merge, .. } => match merge.pass {
                MergePass::Discover => "merge-discover",
                MergePass::Rewrite { .. } => "merge",
                MergePass::Local => "merge-local",
                MergePass::Insert { .. } => "merge-insert",
            },
            Input::Objects { .. } => "objects",
            Input::DeletedRows { .. } => "deleted-rows",
        }
    }

    /// The exchange inputs this input reads (the driver points them at re-run map outputs).
    pub fn map_outputs_mut(&mut self) -> Vec<&mut Vec<MapOutputRef>> {
        match self {
            Input::Exchange { map_outputs, .. } => vec![map_outputs],
            Input::Merge { target, source, .. } => {
                let mut all = target.map_outputs_mut();
                all.extend(source.map_outputs_mut());
                all
            }
            Input::Source { .. }
            | Input::TableFiles { .. }
            | Input::Objects { .. }
            | Input::DeletedRows { .. } => Vec::new(),
        }
    }
}
