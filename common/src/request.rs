//! What clients ask for: one request type per table operation, as the CLI flags, `silt sql`
//! and the gRPC job API produce them. The coordinator validates and plans them.

use std::collections::BTreeMap;

use crate::table::TimeTravel;
use crate::task::SourceFormat;

/// Delta write modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Overwrite,
    ErrorIfExists,
    Ignore,
}

impl WriteMode {
    /// Parses `append|overwrite|error|errorifexists|ignore`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Ok(Self::Append),
            "overwrite" => Ok(Self::Overwrite),
            "error" | "errorifexists" => Ok(Self::ErrorIfExists),
            "ignore" => Ok(Self::Ignore),
            other => Err(crate::Error::invalid(format!(
                "unknown write mode `{other}` (expected append, overwrite, error or ignore)"
            ))),
        }
    }

    /// Name as Delta Spark records it in `operationParameters.mode`.
    pub fn delta_name(&self) -> &'static str {
        match self {
            Self::Append => "Append",
            Self::Overwrite => "Overwrite",
            Self::ErrorIfExists => "ErrorIfExists",
            Self::Ignore => "Ignore",
        }
    }
}

/// How a write to a partitioned table brings each partition's rows together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExchangeMode {
    /// The planner decides from the data (see the coordinator's write planning).
    #[default]
    Auto,
    /// Always through an exchange (one writer per partition across the job).
    Always,
    /// Never: every task writes the partitions it sees.
    Never,
}

impl ExchangeMode {
    /// Parses `auto|always|never`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(crate::Error::invalid(format!(
                "unknown exchange mode `{other}` (expected auto, always or never)"
            ))),
        }
    }
}

/// A distributed write (`silt write`, `INSERT INTO` / `INSERT OVERWRITE`).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    pub table_uri: String,
    pub source_uri: String,
    pub format: SourceFormat,
    /// Delta sources: which version to read.
    pub source_version: TimeTravel,
    pub mode: WriteMode,
    pub partition_by: Vec<String>,
    pub replace_where: Option<String>,
    pub dynamic_partition_overwrite: bool,
    pub merge_schema: bool,
    pub overwrite_schema: bool,
    pub txn_app_id: Option<String>,
    pub txn_version: Option<i64>,
    pub target_file_size_bytes: Option<u64>,
    pub properties: BTreeMap<String, String>,
    /// `INSERT … PARTITION (p = v)`: partition columns every new row gets, as `(column, SQL
    /// literal)`; the source must not have them.
    pub static_partitions: Vec<(String, String)>,
    /// Partitioned tables: whether rows go through an exchange.
    pub exchange: ExchangeMode,
}

impl WriteRequest {
    /// An append of `source_uri` (Parquet) into `table_uri`, everything else default.
    pub fn append(table_uri: &str, source_uri: &str) -> Self {
        Self {
            table_uri: table_uri.to_string(),
            source_uri: source_uri.to_string(),
            format: SourceFormat::Parquet,
            source_version: TimeTravel::Latest,
            mode: WriteMode::Append,
            partition_by: Vec::new(),
            replace_where: None,
            dynamic_partition_overwrite: false,
            merge_schema: false,
            overwrite_schema: false,
            txn_app_id: None,
            txn_version: None,
            target_file_size_bytes: None,
            properties: BTreeMap::new(),
            static_partitions: Vec::new(),
            exchange: ExchangeMode::Auto,
        }
    }
}

/// `MERGE INTO table USING source ON condition WHEN …` (parsed; not executed yet).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRequest {
    pub table_uri: String,
    pub target_alias: Option<String>,
    pub source: MergeSource,
    pub source_alias: Option<String>,
    /// The join condition, SQL with its qualifiers (`t.k = s.k`).
    pub on: String,
    /// In the order given: the first clause of a kind whose condition holds wins.
    pub clauses: Vec<MergeClause>,
    /// `WITH SCHEMA EVOLUTION`: `*` actions add new source columns to the table.
    pub schema_evolution: bool,
    /// How source and target rows meet: `auto` broadcasts a source small enough for every
    /// task to hold and exchanges both by key otherwise; `always` / `never` force one.
    pub exchange: ExchangeMode,
    /// Rewrite the target files a clause changes even where the table has deletion vectors
    /// enabled.
    pub copy_on_write: bool,
}

/// What MERGE reads its source rows from.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSource {
    pub format: SourceFormat,
    pub uri: String,
    /// Delta sources: which version.
    pub version: TimeTravel,
    /// `USING (SELECT … FROM <source> [WHERE …])`: the select list and condition.
    pub select: Option<crate::task::SelectSpec>,
}

/// Which rows a clause applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeClauseKind {
    /// A target row matched by a source row.
    Matched,
    /// A source row matching no target row.
    NotMatchedByTarget,
    /// A target row matched by no source row.
    NotMatchedBySource,
}

impl MergeClauseKind {
    pub fn sql(&self) -> &'static str {
        match self {
            Self::Matched => "WHEN MATCHED",
            Self::NotMatchedByTarget => "WHEN NOT MATCHED [BY TARGET]",
            Self::NotMatchedBySource => "WHEN NOT MATCHED BY SOURCE",
        }
    }
}

/// What a clause does to the rows it applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeAction {
    /// `UPDATE SET c = expr, …` as (column, SQL expression).
    Update(Vec<(String, String)>),
    /// `UPDATE SET *`: every target column from the source column of the same name.
    UpdateAll,
    Delete,
    /// `INSERT (c, …) VALUES (expr, …)`; no columns: the table's columns in order.
    Insert {
        columns: Vec<String>,
        values: Vec<String>,
    },
    /// `INSERT *`: every target column from the source column of the same name.
    InsertAll,
}

/// One `WHEN … THEN …` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeClause {
    pub kind: MergeClauseKind,
    /// `AND condition` (SQL with qualifiers); `None`: always.
    pub condition: Option<String>,
    pub action: MergeAction,
}

impl MergeRequest {
    /// Delta's rules for the clause list: at least one clause; actions allowed per kind;
    /// only the last clause of each kind may omit its condition; explicit INSERT lists have
    /// as many values as columns.
    pub fn validate(&self) -> crate::Result<()> {
        if self.clauses.is_empty() {
            return Err(crate::Error::invalid(
                "MERGE needs at least one WHEN clause",
            ));
        }
        for kind in [
            MergeClauseKind::Matched,
            MergeClauseKind::NotMatchedByTarget,
            MergeClauseKind::NotMatchedBySource,
        ] {
            let of_kind: Vec<&MergeClause> =
                self.clauses.iter().filter(|c| c.kind == kind).collect();
            if let Some(pos) = of_kind.iter().position(|c| c.condition.is_none())
                && pos + 1 < of_kind.len()
            {
                return Err(crate::Error::invalid(format!(
                    "only the last {} clause may omit its condition",
                    kind.sql()
                )));
            }
        }
        for c in &self.clauses {
            match (c.kind, &c.action) {
                (MergeClauseKind::NotMatchedByTarget, MergeAction::Insert { columns, values })
                    if !columns.is_empty() && columns.len() != values.len() =>
                {
                    return Err(crate::Error::invalid(format!(
                        "INSERT lists {} column(s) but {} value(s)",
                        columns.len(),
                        values.len()
                    )));
                }
                (
                    MergeClauseKind::NotMatchedByTarget,
                    MergeAction::Insert { .. } | MergeAction::InsertAll,
                ) => {}
                (MergeClauseKind::NotMatchedByTarget, _) => {
                    return Err(crate::Error::invalid(
                        "a WHEN NOT MATCHED [BY TARGET] clause can only INSERT",
                    ));
                }
                (_, MergeAction::Insert { .. } | MergeAction::InsertAll) => {
                    return Err(crate::Error::invalid(format!(
                        "a {} clause cannot INSERT (only UPDATE or DELETE)",
                        c.kind.sql()
                    )));
                }
                (MergeClauseKind::NotMatchedBySource, MergeAction::UpdateAll) => {
                    return Err(crate::Error::invalid(
                        "UPDATE SET * is not allowed in a NOT MATCHED BY SOURCE clause (there is no source row)",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `OPTIMIZE table [WHERE partition_predicate] [ZORDER BY (cols)]`: bin-packing
/// compaction, or multi-dimensional clustering when `zorder_by` names columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizeRequest {
    pub table_uri: String,
    /// Over partition columns only; `None`: every partition.
    pub predicate: Option<String>,
    /// Bytes per output file (default: the table's `delta.targetFileSize`, else 1 GiB).
    pub target_size: Option<u64>,
    /// Files below this size are compacted (default: half the target).
    pub min_file_size: Option<u64>,
    /// Clustering columns (Z-order / Hilbert); empty: compaction.
    pub zorder_by: Vec<String>,
    /// The curve clustering follows.
    pub curve: crate::cluster::Curve,
    /// Recluster every file, not only those no clustering run with these columns wrote.
    pub full: bool,
    /// Commit in batches: after a batch, commit what is done once this long has passed
    /// since the last commit (each batch durable on its own). `None`: one commit.
    pub max_commit_interval_ms: Option<u64>,
    /// `REORG TABLE … APPLY (PURGE)`: rewrite every file with a deletion vector (packed up
    /// to the target size), without its deleted rows; no other file.
    pub purge: bool,
}

/// `DELETE FROM table [WHERE predicate]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRequest {
    pub table_uri: String,
    /// `None`: every row.
    pub predicate: Option<String>,
    /// Rewrite the files holding deleted rows even where the table has deletion vectors
    /// enabled.
    pub copy_on_write: bool,
}

/// `UPDATE table SET column = expr, … [WHERE predicate]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    pub table_uri: String,
    /// `(column, SQL expression)` in the order given.
    pub assignments: Vec<(String, String)>,
    /// `None`: every row.
    pub predicate: Option<String>,
    /// Rewrite the files holding updated rows even where the table has deletion vectors
    /// enabled.
    pub copy_on_write: bool,
}

/// `ALTER TABLE`: table properties set or unset (`SET|UNSET TBLPROPERTIES`), or a column of a
/// column-mapped table renamed or dropped; a metadata-only commit.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterTableRequest {
    pub table_uri: String,
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
    /// `UNSET … IF EXISTS`: unknown keys are not an error.
    pub if_exists: bool,
    /// `RENAME COLUMN` / `DROP COLUMN(S)` (then `set` and `unset` are empty).
    pub column: Option<ColumnChange>,
}

/// A change to a column-mapped table's columns: its files stay as they are (they name
/// columns physically), only the schema changes.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnChange {
    /// `RENAME COLUMN from TO to`.
    Rename { from: String, to: String },
    /// `DROP COLUMN[S] [IF EXISTS] (a, …)`.
    Drop {
        columns: Vec<String>,
        if_exists: bool,
    },
}

/// What `DESCRIBE` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeKind {
    /// `DESCRIBE HISTORY [LIMIT n]`: one row per commit, newest first.
    History { limit: Option<u32> },
    /// `DESCRIBE DETAIL`: one row about the table.
    Detail,
}

/// `DESCRIBE HISTORY|DETAIL table`.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeRequest {
    pub table_uri: String,
    pub kind: DescribeKind,
}

/// `VACUUM table [RETAIN n HOURS] [DRY RUN]`: delete the files no version within the
/// retention needs.
#[derive(Debug, Clone, PartialEq)]
pub struct VacuumRequest {
    pub table_uri: String,
    /// Keep what versions of the last `n` hours need (default: the table's
    /// `delta.deletedFileRetentionDuration`, else 7 days).
    pub retain_hours: Option<f64>,
    /// List the files that would be deleted; delete nothing.
    pub dry_run: bool,
    /// Refuse a retention below the table's (Delta's retention check).
    pub enforce_retention: bool,
}

/// `ANALYZE TABLE table COMPUTE DELTA STATISTICS [FOR COLUMNS (c1, …)]`: per-file statistics
/// recomputed from the data.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeRequest {
    pub table_uri: String,
    /// Only these columns' statistics (the others stay as they are); empty: the columns
    /// the table's statistics settings name.
    pub columns: Vec<String>,
}

/// Any job a client can submit.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRequest {
    Write(WriteRequest),
    Delete(DeleteRequest),
    Update(UpdateRequest),
    AlterTable(AlterTableRequest),
    Describe(DescribeRequest),
    Merge(MergeRequest),
    Optimize(OptimizeRequest),
    Vacuum(VacuumRequest),
    Analyze(AnalyzeRequest),
}

impl JobRequest {
    /// The table the job works on.
    pub fn table_uri(&self) -> &str {
        match self {
            JobRequest::Write(r) => &r.table_uri,
            JobRequest::Delete(r) => &r.table_uri,
            JobRequest::Update(r) => &r.table_uri,
            JobRequest::AlterTable(r) => &r.table_uri,
            JobRequest::Describe(r) => &r.table_uri,
            JobRequest::Merge(r) => &r.table_uri,
            JobRequest::Optimize(r) => &r.table_uri,
            JobRequest::Vacuum(r) => &r.table_uri,
            JobRequest::Analyze(r) => &r.table_uri,
        }
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            JobRequest::Write(_) => "write",
            JobRequest::Delete(_) => "delete",
            JobRequest::Update(_) => "update",
            JobRequest::AlterTable(_) => "alter-table",
            JobRequest::Describe(_) => "describe",
            JobRequest::Merge(_) => "merge",
            JobRequest::Optimize(_) => "optimize",
            JobRequest::Vacuum(_) => "vacuum",
            JobRequest::Analyze(_) => "analyze",
        }
    }
}
