//! What happens to rows between a task's input and its sink. Expressions are SQL text,
//! compiled by the executor against the task's table schema (see [`crate::expr`]).

/// Which rows a [`Transform::Filter`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Rows for which the predicate is true.
    Matching,
    /// Rows for which the predicate is not true (false or null): DELETE keeps these.
    NotMatching,
}

/// `column = expression` of an UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Column name as spelled in the table schema.
    pub column: String,
    /// SQL expression over the row's columns; cast to the column's type.
    pub expr: String,
}

/// A source's `SELECT`: its output columns as (name, SQL over the source's columns) — none:
/// every column as it is — and its `WHERE` condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SelectSpec {
    pub columns: Vec<Assignment>,
    pub filter: Option<String>,
}

/// What a [`Transform::RecordChanges`] step makes of the rows reaching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRows {
    /// New rows: every one is recorded as inserted.
    Inserted,
    /// The table's rows: recorded only where the next step that changes rows changes them
    /// (a [`Keep::NotMatching`] filter records the rows it drops as deleted, an update the
    /// rows it changes before and after); steps after that one change the rows it wrote
    /// without recording anything more (an UPDATE's generated columns computed again).
    Table,
}

/// One step between input and sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Cast source rows to the table schema (schema enforcement: missing nullable columns
    /// become null, types are cast safely, NOT NULL is checked).
    Conform,
    /// Every row must satisfy the predicate, else the task fails with a data violation
    /// (new rows of a `replaceWhere` overwrite).
    Check { predicate: String },
    /// Keeps some rows; dropped rows count as deleted.
    Filter { predicate: String, keep: Keep },
    /// Sets columns to expressions on the rows for which `predicate` is true (all rows
    /// without one); changed rows count as updated. Every expression sees the row before
    /// any assignment.
    Update {
        predicate: Option<String>,
        assignments: Vec<Assignment>,
    },
    /// Sets computed columns on every row (generated columns, static partition values):
    /// nothing counts as updated, and rows only recorded as change data (deleted, or as they
    /// were before an update) are left as they were.
    Derive { assignments: Vec<Assignment> },
    /// Fills the nulls of identity column `column` with generated values, in the order the
    /// rows come: `first`, then on by `stride` (see [`crate::table::identity`]); the last
    /// value is reported in [`super::TaskOutput::identity_values`].
    Identity {
        column: String,
        first: i64,
        stride: i64,
    },
    /// Source rows through a `SELECT` (compiled against `input_schema_json`, the source's
    /// schema): the rows its condition holds for, as its columns.
    Select {
        input_schema_json: String,
        select: SelectSpec,
    },
    /// Change data (see [`crate::change_data`]): from here on rows carry their change type,
    /// for a sink that also writes change data files.
    RecordChanges(ChangeRows),
}

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Conform => "conform",
            Transform::Check { .. } => "check",
            Transform::Filter { .. } => "filter",
            Transform::Update { .. } => "update",
            Transform::Derive { .. } => "derive",
            Transform::Identity { .. } => "identity",
            Transform::Select { .. } => "select",
            Transform::RecordChanges(_) => "record-changes",
        }
    }
}
