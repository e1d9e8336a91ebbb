//! MERGE's join: the query a MERGE join task runs over its target and source rows, built
//! from a [`MergeSpec`], and what the task makes of the query's rows.
//!
//! The coordinator builds the same query to check a MERGE before any task runs
//! ([`MergeQuery::validate`]: unknown or ambiguous columns, columns of the wrong side, type
//! errors); executors run it ([`MergeQuery::execute`]) with DataFusion under their memory
//! limit.
//!
//! The query joins the target rows (tagged with [`FILE_COL`] and [`ROW_COL`]) with the source
//! rows on `ON`, flattens both sides into one namespace (`__t_<column>`, `__s_<column>`,
//! every reference of the user's expressions resolved to one side as Spark resolves them),
//! and computes for each joined row the code of the first clause that applies, in clause
//! order within its kind (matched, not matched by target, not matched by source), or
//! [`COPY`] / [`NOTHING`]. The rewrite pass then computes every output column with a `CASE`
//! on that code.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Ident, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;
use roaring::RoaringTreemap;

use crate::change_data;
use crate::expr::{Expression, Predicate};
use crate::request::MergeClauseKind;
use crate::spill::Budget;
use crate::task::{MergeActionSpec, MergePass, MergeSpec, SelectSpec, TaskMetrics};
use crate::{Error, Result};

/// Target rows: the ordinal of the file a row comes from.
pub const FILE_COL: &str = "__silt_file";
/// Target rows: the row's position among its file's live rows.
pub const ROW_COL: &str = "__silt_row";
/// Whether a row of a [`crate::task::Sink::MarkRows`] is also written (deletion-vector
/// rewrites: a deleted target row is marked but not written; an inserted one written only).
pub const WRITE_COL: &str = "__silt_write";
/// Qualifiers that always name the target and the source (for expressions silt writes, such
/// as the expansion of `UPDATE SET *`), whatever the aliases.
pub const TARGET_QUALIFIER: &str = "__silt_target";
pub const SOURCE_QUALIFIER: &str = "__silt_source";
/// Source rows: the row's id (see [`crate::task::source_row_id`]; also tells a joined source
/// row from a missing one).
pub const SRC_COL: &str = "__silt_srow";
const TARGET_TABLE: &str = "__silt_target";
const SOURCE_TABLE: &str = "__silt_source";
const T: &str = "__t";
const S: &str = "__s";
const ACTION: &str = "__a";
const T_FILE: &str = "__t_file";
const T_ROW: &str = "__t_row";
const S_SRC: &str = "__s_srow";
const MATCHED: &str = "__m";

/// Action code of a target row no clause changes (copied if its file is rewritten).
pub const COPY: i64 = -1;
/// Action code of a source row no clause inserts.
pub const NOTHING: i64 = -2;

/// The target rows' schema: the table's columns and the two row id columns.
pub fn target_row_schema(table: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(FILE_COL, DataType::UInt32, false));
    fields.push(Field::new(ROW_COL, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// Appends the row id columns to a batch of one file's rows.
pub fn tag_rows(batch: &RecordBatch, file: u32, first_row: u64) -> Result<RecordBatch> {
    let n = batch.num_rows();
    append_columns(
        batch,
        vec![
            (
                Field::new(FILE_COL, DataType::UInt32, false),
                Arc::new(arrow::array::UInt32Array::from(vec![file; n])),
            ),
            (
                Field::new(ROW_COL, DataType::UInt64, false),
                Arc::new(arrow::array::UInt64Array::from_iter_values(
                    first_row..first_row + n as u64,
                )),
            ),
        ],
    )
}

/// `batch` with `extra` columns after its own.
fn append_columns(batch: &RecordBatch, extra: Vec<(Field, ArrayRef)>) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    for (field, column) in extra {
        fields.push(field);
        columns.push(column);
    }
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// Appends the source row id column to a batch of one source split's rows.
pub fn tag_source_rows(batch: &RecordBatch, split: u32, first_row: u64) -> Result<RecordBatch> {
    let n = batch.num_rows() as u64;
    let ids = (first_row..first_row + n).map(|r| crate::task::source_row_id(split, r));
    with_source_ids(batch, arrow::array::UInt64Array::from_iter_values(ids))
}

fn with_source_ids(batch: &RecordBatch, ids: arrow::array::UInt64Array) -> Result<RecordBatch> {
    append_columns(
        batch,
        vec![(Field::new(SRC_COL, DataType::UInt64, false), Arc::new(ids))],
    )
}

/// The columns the discovery of matches reads, of the target and of the source: those of ON
/// and of the clauses' conditions (spelled as the schemas spell them, in schema order).
pub fn discovery_columns(spec: &MergeSpec) -> Result<(Vec<String>, Vec<String>)> {
    let (target, source) = spec_schemas(spec)?;
    // Every condition is part of the query (NOT MATCHED ones too, though no discovered row
    // is unmatched by the target).
    let conditions = spec.clauses.iter().filter_map(|c| c.condition.as_deref());
    Names::of(spec, &target, &source)
        .columns_read(std::iter::once(spec.on.as_str()).chain(conditions))
}

/// A MERGE source's `SELECT`, compiled against the source's columns.
pub struct SourceProjection {
    columns: Vec<(String, Expression)>,
    filter: Option<Predicate>,
    schema: SchemaRef,
}

impl SourceProjection {
    /// Compiles `select` against `input` (the source's schema); names and types are checked
    /// here.
    pub fn compile(input: &SchemaRef, select: &SelectSpec) -> Result<SourceProjection> {
        let columns: Vec<(String, Expression)> = if select.columns.is_empty() {
            input
                .fields()
                .iter()
                .map(|f| {
                    Ok((
                        f.name().clone(),
                        Expression::compile(&quote(f.name()), input)?,
                    ))
                })
                .collect::<Result<_>>()?
        } else {
            select
                .columns
                .iter()
                .map(|a| Ok((a.column.clone(), Expression::compile(&a.expr, input)?)))
                .collect::<Result<_>>()?
        };
        let mut seen = HashSet::new();
        for (name, _) in &columns {
            if !seen.insert(name.to_lowercase()) {
                return Err(Error::invalid(format!(
                    "the MERGE source's SELECT names column `{name}` twice"
                )));
            }
        }
        let filter = select
            .filter
            .as_deref()
            .map(|f| Predicate::compile(f, input))
            .transpose()?;
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, e)| Field::new(name, e.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(SourceProjection {
            columns,
            filter,
            schema,
        })
    }

    /// The rows' schema after the `SELECT`.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows of `batch` the condition holds for, as the select list; a source row id
    /// column passes through.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let batch = match &self.filter {
            Some(p) => filter_record_batch(batch, &p.evaluate(batch)?)?,
            None => batch.clone(),
        };
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns = self
            .columns
            .iter()
            .map(|(_, e)| e.evaluate(&batch))
            .collect::<Result<Vec<_>>>()?;
        if let Ok(i) = batch.schema().index_of(SRC_COL) {
            fields.push(batch.schema().field(i).clone());
            columns.push(batch.column(i).clone());
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }
}

/// A task's target rows for a MERGE query: in memory, or streamed (a broadcast MERGE's
/// rewrite streams its files through the join).
pub enum TargetRows {
    Batches(Vec<RecordBatch>),
    Stream(SendableRecordBatchStream),
}

impl TargetRows {
    /// Target rows pulled from `stream` (batches of `schema`) as the join consumes them.
    pub fn stream(
        schema: SchemaRef,
        stream: futures::stream::BoxStream<'static, Result<RecordBatch>>,
    ) -> TargetRows {
        use futures::TryStreamExt;
        let stream = stream.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
        TargetRows::Stream(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A stream handed to DataFusion once.
/// A stream of rows a DataFusion table yields once.
pub(crate) struct OnceStream {
    schema: SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl OnceStream {
    pub(crate) fn new(schema: SchemaRef, stream: SendableRecordBatchStream) -> Self {
        Self {
            schema,
            stream: std::sync::Mutex::new(Some(stream)),
        }
    }
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceStream").finish()
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some(s) => s,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(datafusion::error::DataFusionError::Internal(
                        "a one-time row stream executed twice".into(),
                    ))
                }),
            )),
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn flat(side: Side, column: &str) -> String {
    match side {
        Side::Target => format!("__t_{column}"),
        Side::Source => format!("__s_{column}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Target,
    Source,
}

/// How resolved references are written: `"__t"."c"` inside the join, `"__t_c"` above it.
#[derive(Clone, Copy)]
enum Form {
    Qualified,
    Flat,
}

/// The names a MERGE expression may use.
struct Names<'a> {
    target_alias: Option<&'a str>,
    source_alias: Option<&'a str>,
    target: &'a Schema,
    source: &'a Schema,
}

fn find<'s>(schema: &'s Schema, name: &str) -> Option<&'s Field> {
    let lower = name.to_lowercase();
    schema
        .fields()
        .iter()
        .find(|f| f.name() == name)
        .or_else(|| {
            schema
                .fields()
                .iter()
                .find(|f| f.name().to_lowercase() == lower)
        })
        .map(|f| f.as_ref())
}

/// The target's and the source's row schemas of a spec.
fn spec_schemas(spec: &MergeSpec) -> Result<(SchemaRef, SchemaRef)> {
    Ok((
        crate::schema::delta_json_to_arrow(&spec.target_schema_json)?,
        crate::schema::delta_json_to_arrow(&spec.source_schema_json)?,
    ))
}

impl<'a> Names<'a> {
    /// The names of `spec`'s expressions, over its two sides' schemas.
    fn of(spec: &'a MergeSpec, target: &'a Schema, source: &'a Schema) -> Names<'a> {
        Names {
            target_alias: spec.target_alias.as_deref(),
            source_alias: spec.source_alias.as_deref(),
            target,
            source,
        }
    }

    /// The target's and the source's columns `exprs` read (schema spelling and order).
    fn columns_read<'e>(
        &self,
        exprs: impl IntoIterator<Item = &'e str>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let both = [Side::Target, Side::Source];
        let resolved = exprs
            .into_iter()
            .map(|e| self.resolve(e, &both, "condition", Form::Flat))
            .collect::<Result<Vec<_>>>()?;
        let used = |side: Side| -> Vec<String> {
            self.schema(side)
                .fields()
                .iter()
                .filter(|f| {
                    let name = quote(&flat(side, f.name()));
                    resolved.iter().any(|r| r.contains(&name))
                })
                .map(|f| f.name().clone())
                .collect()
        };
        Ok((used(Side::Target), used(Side::Source)))
    }

    fn schema(&self, side: Side) -> &Schema {
        match side {
            Side::Target => self.target,
            Side::Source => self.source,
        }
    }

    fn side_name(&self, side: Side) -> String {
        match side {
            Side::Target => match self.target_alias {
                Some(a) => format!("target `{a}`"),
                None => "the target".into(),
            },
            Side::Source => match self.source_alias {
                Some(a) => format!("source `{a}`"),
                None => "the source".into(),
            },
        }
    }

    /// Which side and column `parts` name (qualified or not), and how many leading parts
    /// that took.
    fn lookup(&self, parts: &[Ident]) -> std::result::Result<(Side, String, usize), String> {
        let alias_is = |a: Option<&str>, q: &str| a.is_some_and(|a| a.eq_ignore_ascii_case(q));
        if parts.len() >= 2 {
            let q = parts[0].value.as_str();
            for (side, alias, reserved) in [
                (Side::Target, self.target_alias, TARGET_QUALIFIER),
                (Side::Source, self.source_alias, SOURCE_QUALIFIER),
            ] {
                if alias_is(alias, q) || q == reserved {
                    return match find(self.schema(side), &parts[1].value) {
                        Some(f) => Ok((side, f.name().clone(), 2)),
                        None => Err(format!(
                            "unknown column `{q}.{}`: {} has no such column (columns: {})",
                            parts[1].value,
                            self.side_name(side),
                            columns_of(self.schema(side))
                        )),
                    };
                }
            }
        }
        let name = &parts[0].value;
        match (find(self.target, name), find(self.source, name)) {
            (Some(t), None) => Ok((Side::Target, t.name().clone(), 1)),
            (None, Some(s)) => Ok((Side::Source, s.name().clone(), 1)),
            (Some(_), Some(_)) => Err(format!(
                "column `{name}` is ambiguous: both {} and {} have it; qualify it",
                self.side_name(Side::Target),
                self.side_name(Side::Source)
            )),
            (None, None) => {
                let whole = parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                Err(format!(
                    "unknown column `{whole}` (target columns: {}; source columns: {})",
                    columns_of(self.target),
                    columns_of(self.source)
                ))
            }
        }
    }

    /// `sql` with every column reference resolved to one side, written in `form`. `allowed`
    /// are the sides the expression may read; `what` names it in errors.
    fn resolve(&self, sql: &str, allowed: &[Side], what: &str, form: Form) -> Result<String> {
        let err = |reason: String| Error::invalid(format!("MERGE {what} `{sql}`: {reason}"));
        let mut expr = Parser::new(&DatabricksDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| err(format!("syntax error: {e}")))?;
        let outcome = visit_expressions_mut(&mut expr, |e| {
            let parts: Vec<Ident> = match e {
                SqlExpr::Identifier(i) => vec![i.clone()],
                SqlExpr::CompoundIdentifier(p) => p.clone(),
                SqlExpr::Value(v) => {
                    // Databricks reads "x" as a string; DataFusion would read a name.
                    if let Value::DoubleQuotedString(s) = &v.value {
                        v.value = Value::SingleQuotedString(s.clone());
                    }
                    return ControlFlow::Continue(());
                }
                _ => return ControlFlow::Continue(()),
            };
            let (side, column, used) = match self.lookup(&parts) {
                Ok(r) => r,
                Err(reason) => return ControlFlow::Break(reason),
            };
            if !allowed.contains(&side) {
                let written = parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                return ControlFlow::Break(format!(
                    "`{written}` is a column of {}, which this clause cannot read",
                    self.side_name(side)
                ));
            }
            let mut out = match form {
                Form::Qualified => vec![
                    Ident::with_quote('"', if side == Side::Target { T } else { S }),
                    Ident::with_quote('"', column.as_str()),
                ],
                Form::Flat => vec![Ident::with_quote('"', flat(side, &column))],
            };
            // Struct fields, spelled as the schema spells them where it knows them.
            let mut dt = find(self.schema(side), &column)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null);
            for p in &parts[used..] {
                let child = match &dt {
                    DataType::Struct(children) => children
                        .iter()
                        .find(|c| c.name().eq_ignore_ascii_case(&p.value))
                        .cloned(),
                    _ => None,
                };
                match child {
                    Some(c) => {
                        out.push(Ident::with_quote('"', c.name().as_str()));
                        dt = c.data_type().clone();
                    }
                    None => {
                        out.push(p.clone());
                        dt = DataType::Null;
                    }
                }
            }
            *e = if out.len() == 1 {
                SqlExpr::Identifier(out.remove(0))
            } else {
                SqlExpr::CompoundIdentifier(out)
            };
            ControlFlow::Continue(())
        });
        if let ControlFlow::Break(reason) = outcome {
            return Err(err(reason));
        }
        Ok(expr.to_string())
    }
}

fn columns_of(schema: &Schema) -> String {
    const MAX: usize = 20;
    let mut names: Vec<String> = schema
        .fields()
        .iter()
        .take(MAX)
        .map(|f| format!("`{}`", f.name()))
        .collect();
    if schema.fields().len() > MAX {
        names.push("…".into());
    }
    names.join(", ")
}

/// The SQL type a value is cast to before it is stored in a column of type `dt`, where
/// DataFusion's SQL has one (others are cast when rows are conformed to the table).
fn sql_type(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        _ => return None,
    })
}

/// The target columns `on` reads (table spelling, schema order): what an insert-only MERGE
/// needs of the target's rows.
pub fn target_columns_of(
    on: &str,
    target_alias: Option<&str>,
    source_alias: Option<&str>,
    target: &Schema,
    source: &Schema,
) -> Result<Vec<String>> {
    let names = Names {
        target_alias,
        source_alias,
        target,
        source,
    };
    Ok(names.columns_read([on])?.0)
}

/// The target columns a rewrite that marks changed rows in deletion vectors needs of the
/// target's rows (table spelling, schema order): those ON, the conditions and the assigned
/// expressions read, and those an UPDATE clause leaves as they were. Unchanged rows are not
/// written, so no other column is. All of them when an expression cannot be resolved here
/// (the query itself then reports it).
pub fn target_columns_marking(spec: &MergeSpec, output: &Schema) -> Result<Vec<String>> {
    let (target, source) = spec_schemas(spec)?;
    let names = Names::of(spec, &target, &source);
    let mut texts: Vec<&str> = vec![spec.on.as_str()];
    let mut kept: HashSet<String> = HashSet::new();
    for c in &spec.clauses {
        texts.extend(c.condition.as_deref());
        match &c.action {
            MergeActionSpec::Update(list) | MergeActionSpec::Insert(list) => {
                texts.extend(list.iter().map(|a| a.expr.as_str()));
            }
            MergeActionSpec::Delete => {}
        }
        if let MergeActionSpec::Update(list) = &c.action {
            for f in output.fields() {
                if !list.iter().any(|a| a.column.eq_ignore_ascii_case(f.name())) {
                    kept.insert(f.name().to_lowercase());
                }
            }
        }
    }
    let mut wanted: HashSet<String> = kept;
    for t in texts {
        match names.columns_read([t]) {
            Ok((cols, _)) => wanted.extend(cols.into_iter().map(|c| c.to_lowercase())),
            Err(_) => {
                return Ok(target.fields().iter().map(|f| f.name().clone()).collect());
            }
        }
    }
    Ok(target
        .fields()
        .iter()
        .filter(|f| wanted.contains(&f.name().to_lowercase()))
        .map(|f| f.name().clone())
        .collect())
}

/// The query of one MERGE join task and how to read its rows.
#[derive(Debug, Clone)]
pub struct MergeQuery {
    sql: String,
    /// Per clause code: its kind and whether it deletes.
    codes: Vec<(MergeClauseKind, bool)>,
    /// Several source rows may match one target row (the only matched clause is an
    /// unconditional DELETE, as Delta allows).
    duplicates_allowed: bool,
    output: SchemaRef,
    /// Change data: per output column, the position of the target's value before the
    /// statement among the preimage columns the rewrite query adds after its own (`None`: a
    /// column the target lacks); empty when changes are not recorded.
    preimage: Vec<Option<usize>>,
    target_rows: SchemaRef,
    source_rows: SchemaRef,
}

impl MergeQuery {
    /// Builds the query of `spec`'s pass; `output` is the schema of the rows the rewrite
    /// writes (the table's, with new columns under schema evolution). Pure: name errors
    /// (unknown, ambiguous, wrong side) are found here.
    pub fn build(spec: &MergeSpec, output: &Schema) -> Result<MergeQuery> {
        Self::build_shape(spec, output, None, false)
    }

    /// The query of a rewrite (exchange `Rewrite` pass, or a broadcast task's local rewrite
    /// when `local`) whose changed target rows are marked in deletion vectors: target rows no
    /// clause can change are not written, so without NOT MATCHED BY SOURCE clauses only the
    /// matched target rows (and the source rows, for inserts) come out of the join.
    pub fn build_marking(spec: &MergeSpec, output: &Schema, local: bool) -> Result<MergeQuery> {
        Self::build_shape(spec, output, local.then_some(false), true)
    }

    /// The rewrite query of a broadcast MERGE's local pass: the source joined to the rows of
    /// the task's touched files (all of them kept), no inserts.
    pub fn build_local_rewrite(spec: &MergeSpec, output: &Schema) -> Result<MergeQuery> {
        Self::build_shape(spec, output, Some(false), false)
    }

    /// `local_discover`: `None`: the shape `spec.pass` says; `Some(false)`: the local
    /// rewrite.
    fn build_shape(
        spec: &MergeSpec,
        output: &Schema,
        local: Option<bool>,
        marking: bool,
    ) -> Result<MergeQuery> {
        let (target, source) = spec_schemas(spec)?;
        let names = Names::of(spec, &target, &source);
        let both = [Side::Target, Side::Source];
        let on = names.resolve(&spec.on, &both, "ON condition", Form::Qualified)?;
        // Deletion-vector rewrites do not record change data (tables recording it are
        // rewritten copy-on-write).
        let record_changes = spec.record_changes && !marking;

        // The clause code of each row, first applicable clause first.
        let mut arms: [Vec<String>; 3] = Default::default();
        let mut codes = Vec::new();
        for (code, c) in spec.clauses.iter().enumerate() {
            let (slot, allowed): (usize, &[Side]) = match c.kind {
                MergeClauseKind::Matched => (0, &both),
                MergeClauseKind::NotMatchedByTarget => (1, &[Side::Source]),
                MergeClauseKind::NotMatchedBySource => (2, &[Side::Target]),
            };
            let cond = match &c.condition {
                Some(cond) => names.resolve(
                    cond,
                    allowed,
                    &format!("{} condition", c.kind.sql()),
                    Form::Flat,
                )?,
                None => "TRUE".into(),
            };
            arms[slot].push(format!("WHEN ({cond}) THEN {code}"));
            codes.push((c.kind, matches!(c.action, MergeActionSpec::Delete)));
        }
        let case = |arms: &[String], default: i64| {
            if arms.is_empty() {
                default.to_string()
            } else {
                format!("CASE {} ELSE {default} END", arms.join(" "))
            }
        };
        let action = format!(
            "CASE WHEN {tf} IS NOT NULL AND {ss} IS NOT NULL THEN {m} WHEN {tf} IS NULL THEN {n} ELSE {b} END",
            tf = quote(T_FILE),
            ss = quote(S_SRC),
            m = case(&arms[0], COPY),
            n = case(&arms[1], NOTHING),
            b = case(&arms[2], COPY),
        );

        let has = |k: MergeClauseKind| spec.clauses.iter().any(|c| c.kind == k);
        let by_source = has(MergeClauseKind::NotMatchedBySource);
        let tt = format!("{} AS {}", quote(TARGET_TABLE), quote(T));
        let st = format!("{} AS {}", quote(SOURCE_TABLE), quote(S));
        // Exchange passes hold both sides; broadcast passes build on the (small) source and
        // stream the target through.
        let (discover, from) = match (&spec.pass, local) {
            (MergePass::Discover, _) => (
                true,
                format!("{tt} {} {st}", if by_source { "LEFT JOIN" } else { "JOIN" }),
            ),
            (MergePass::Local, None) => (
                true,
                format!(
                    "{st} {} {tt}",
                    if by_source { "RIGHT JOIN" } else { "JOIN" }
                ),
            ),
            (_, Some(_)) if marking && !by_source => (false, format!("{st} JOIN {tt}")),
            (_, Some(_)) => (false, format!("{st} RIGHT JOIN {tt}")),
            (MergePass::Rewrite { .. }, None) if marking && !by_source => (
                false,
                if has(MergeClauseKind::NotMatchedByTarget) {
                    format!("{tt} RIGHT JOIN {st}")
                } else {
                    format!("{tt} JOIN {st}")
                },
            ),
            (MergePass::Insert { .. }, None) => (false, format!("{st} LEFT JOIN {tt}")),
            (MergePass::Rewrite { .. }, None) => (
                false,
                format!(
                    "{tt} {} {st}",
                    if has(MergeClauseKind::NotMatchedByTarget) {
                        "FULL JOIN"
                    } else {
                        "LEFT JOIN"
                    }
                ),
            ),
        };
        let mut inner_cols: Vec<String> = Vec::new();
        for (side, schema) in [(Side::Target, &target), (Side::Source, &source)] {
            let q = if side == Side::Target { T } else { S };
            for f in schema.fields() {
                inner_cols.push(format!(
                    "{}.{} AS {}",
                    quote(q),
                    quote(f.name()),
                    quote(&flat(side, f.name()))
                ));
            }
        }
        inner_cols.push(format!(
            "{}.{} AS {}",
            quote(T),
            quote(FILE_COL),
            quote(T_FILE)
        ));
        inner_cols.push(format!(
            "{}.{} AS {}",
            quote(T),
            quote(ROW_COL),
            quote(T_ROW)
        ));
        inner_cols.push(format!(
            "{}.{} AS {}",
            quote(S),
            quote(SRC_COL),
            quote(S_SRC)
        ));
        let joined = format!(
            "SELECT *, {action} AS {a} FROM (SELECT {cols} FROM {from} ON ({on})) AS \"__j\"",
            a = quote(ACTION),
            cols = inner_cols.join(", "),
        );

        let select = if discover {
            format!(
                "{}, {}, {} IS NOT NULL AS {}, {}, {}",
                quote(T_FILE),
                quote(T_ROW),
                quote(S_SRC),
                quote(MATCHED),
                quote(ACTION),
                quote(S_SRC)
            )
        } else {
            let mut outs = Vec::new();
            for f in output.fields() {
                let mut branches = Vec::new();
                for (code, c) in spec.clauses.iter().enumerate() {
                    let (assignments, scope, insert): (_, &[Side], bool) = match &c.action {
                        MergeActionSpec::Delete => continue,
                        MergeActionSpec::Update(a) => (
                            a,
                            if c.kind == MergeClauseKind::Matched {
                                &both[..]
                            } else {
                                &[Side::Target][..]
                            },
                            false,
                        ),
                        MergeActionSpec::Insert(a) => (a, &[Side::Source][..], true),
                    };
                    let assigned = assignments
                        .iter()
                        .find(|a| a.column.eq_ignore_ascii_case(f.name()));
                    let value = match assigned {
                        Some(a) => {
                            let what = format!("{} value for `{}`", c.kind.sql(), a.column);
                            let v = names.resolve(&a.expr, scope, &what, Form::Flat)?;
                            match sql_type(f.data_type()) {
                                Some(t) => format!("CAST(({v}) AS {t})"),
                                None => format!("({v})"),
                            }
                        }
                        None if insert => "NULL".into(),
                        None => continue,
                    };
                    branches.push(format!("WHEN {code} THEN {value}"));
                }
                let base = match find(&target, f.name()) {
                    Some(t) => quote(&flat(Side::Target, t.name())),
                    None => "NULL".into(),
                };
                let value = if branches.is_empty() {
                    base
                } else {
                    format!(
                        "CASE {} {} ELSE {base} END",
                        quote(ACTION),
                        branches.join(" ")
                    )
                };
                outs.push(format!("{value} AS {}", quote(f.name())));
            }
            outs.push(quote(ACTION));
            outs.push(quote(T_FILE));
            outs.push(quote(T_ROW));
            outs.push(quote(S_SRC));
            if record_changes {
                // The target's values before the statement, for its change data.
                outs.extend(
                    target
                        .fields()
                        .iter()
                        .map(|f| quote(&flat(Side::Target, f.name()))),
                );
            }
            outs.join(", ")
        };
        let preimage = if record_changes && !discover {
            output
                .fields()
                .iter()
                .map(|f| find(&target, f.name()).and_then(|t| target.index_of(t.name()).ok()))
                .collect()
        } else {
            Vec::new()
        };
        let matched_clauses: Vec<&crate::task::MergeClauseSpec> = spec
            .clauses
            .iter()
            .filter(|c| c.kind == MergeClauseKind::Matched)
            .collect();
        let duplicates_allowed = matched_clauses.len() == 1
            && matched_clauses[0].condition.is_none()
            && matches!(matched_clauses[0].action, MergeActionSpec::Delete);
        let mut source_rows: Vec<Field> =
            source.fields().iter().map(|f| f.as_ref().clone()).collect();
        source_rows.push(Field::new(SRC_COL, DataType::UInt64, false));
        Ok(MergeQuery {
            sql: format!("SELECT {select} FROM ({joined}) AS \"__r\""),
            codes,
            duplicates_allowed,
            output: Arc::new(output.clone()),
            preimage,
            target_rows: target_row_schema(&target),
            source_rows: Arc::new(Schema::new(source_rows)),
        })
    }

    /// The query text (for logs and tests).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Plans the query over no rows: type errors and unknown functions surface here, before
    /// any task runs.
    pub async fn validate(&self) -> Result<()> {
        let ctx = self.context(None)?;
        self.register(&ctx, TargetRows::Batches(Vec::new()), Vec::new())?;
        let df = ctx
            .sql(&self.sql)
            .await
            .map_err(|e| self.planning_error(e))?;
        df.create_physical_plan()
            .await
            .map_err(|e| self.planning_error(e))?;
        Ok(())
    }

    fn planning_error(&self, e: datafusion::error::DataFusionError) -> Error {
        let root = e.find_root().to_string();
        let first = root.lines().next().unwrap_or_default();
        Error::invalid(format!("invalid MERGE: {first}"))
    }

    fn context(&self, budget: Option<&Budget>) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(8192);
        let runtime = match budget {
            Some(budget) => budget.runtime()?,
            None => RuntimeEnvBuilder::new().build_arc()?,
        };
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }

    fn register(
        &self,
        ctx: &SessionContext,
        target: TargetRows,
        source: Vec<RecordBatch>,
    ) -> Result<()> {
        match target {
            TargetRows::Batches(target) => {
                let target_schema = target
                    .first()
                    .map_or_else(|| self.target_rows.clone(), |b| b.schema());
                ctx.register_table(
                    TARGET_TABLE,
                    Arc::new(MemTable::try_new(target_schema, vec![target])?),
                )?;
            }
            TargetRows::Stream(stream) => {
                let schema = stream.schema();
                let part: Arc<dyn PartitionStream> =
                    Arc::new(OnceStream::new(schema.clone(), stream));
                ctx.register_table(
                    TARGET_TABLE,
                    Arc::new(StreamingTable::try_new(schema, vec![part])?),
                )?;
            }
        }
        // Rows without ids (exchange passes) are numbered here: they only need to differ.
        let mut next = 0u64;
        let source = source
            .iter()
            .map(|b| {
                if b.schema().index_of(SRC_COL).is_ok() {
                    return Ok(b.clone());
                }
                let n = b.num_rows() as u64;
                let ids = arrow::array::UInt64Array::from_iter_values(next..next + n);
                next += n;
                with_source_ids(b, ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let source_schema = source
            .first()
            .map_or_else(|| self.source_rows.clone(), |b| b.schema());
        ctx.register_table(
            SOURCE_TABLE,
            Arc::new(MemTable::try_new(source_schema, vec![source])?),
        )?;
        Ok(())
    }

    /// Runs the query over one task's rows within `budget` (spilling past it, or failing
    /// rather than exhausting the executor where a join cannot spill). Returns the rows and
    /// the plan (for its metrics).
    pub async fn execute(
        &self,
        target: TargetRows,
        source: Vec<RecordBatch>,
        budget: &Budget,
    ) -> Result<(SendableRecordBatchStream, Arc<dyn ExecutionPlan>)> {
        let ctx = self.context(Some(budget))?;
        self.register(&ctx, target, source)?;
        let df = ctx
            .sql(&self.sql)
            .await
            .map_err(|e| self.planning_error(e))?;
        let plan = df.create_physical_plan().await?;
        let stream = execute_stream(plan.clone(), ctx.task_ctx())?;
        Ok((stream, plan))
    }

    /// A [`MergeRows`] reading this query's rows.
    pub fn rows(&self, touched: &[u32]) -> MergeRows<'_> {
        MergeRows {
            query: self,
            touched: touched.iter().copied().collect(),
            matched: Vec::new(),
            matched_sources: RoaringTreemap::new(),
            excluded_sources: None,
            marking: false,
        }
    }

    /// A [`MergeRows`] for an insert pass: source rows in `matched` (a serialized
    /// `RoaringTreemap`) matched a target row and are not inserted.
    pub fn insert_rows(&self, matched: &[u8]) -> Result<MergeRows<'_>> {
        let set = if matched.is_empty() {
            RoaringTreemap::new()
        } else {
            RoaringTreemap::deserialize_from(matched)
                .map_err(|e| Error::internal(format!("bad matched source rows: {e}")))?
        };
        Ok(MergeRows {
            excluded_sources: Some(set),
            ..self.rows(&[])
        })
    }
}

/// Bytes the plan's operators spilled to disk.
pub fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan.children().into_iter().map(spilled_bytes).sum::<u64>()
}

/// Reads the rows of a [`MergeQuery`]: the discovery pass's matches, or the rewrite pass's
/// rows to write.
pub struct MergeRows<'a> {
    query: &'a MergeQuery,
    /// Rewrite: ordinals of the target files being rewritten. Discovery: the files found.
    touched: HashSet<u32>,
    /// Discovery: target rows (file, row) seen matched.
    matched: Vec<RoaringTreemap>,
    /// Discovery: source rows seen matched.
    matched_sources: RoaringTreemap,
    /// Insert pass: source rows not to insert (they matched).
    excluded_sources: Option<RoaringTreemap>,
    /// Rewrite with deletion vectors: see [`MergeRows::marking`].
    marking: bool,
}

fn int64(a: &ArrayRef) -> Result<arrow::array::Int64Array> {
    Ok(cast(a, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// A target row matched by several source rows where Delta forbids it.
fn duplicate_match() -> Error {
    Error::invalid(
        "MERGE failed: a target row matched more than one source row, so it would be changed in conflicting ways; Delta allows that only when the only WHEN MATCHED clause is an unconditional DELETE (deduplicate the source); nothing was changed",
    )
}

impl MergeRows<'_> {
    /// Notes that target row `row` of file `file` matched; false if it had already.
    fn note_match(&mut self, file: u32, row: u64) -> bool {
        let i = file as usize;
        if self.matched.len() <= i {
            self.matched.resize_with(i + 1, RoaringTreemap::new);
        }
        self.matched[i].insert(row)
    }

    /// Rewrite with deletion vectors: the rows [`MergeRows::rewrite`] returns are the target
    /// rows a clause changes (with their ids, written unless deleted) and the inserted rows
    /// (without ids), each with [`WRITE_COL`]; rows no clause changes are left where they are.
    pub fn marking(mut self) -> Self {
        self.marking = true;
        self
    }

    /// Discovery: notes the files with a changed row; fails on a target row matched twice
    /// where Delta forbids it.
    pub fn discover(&mut self, batch: &RecordBatch) -> Result<()> {
        let files = batch.column(0).as_primitive::<UInt32Type>();
        let rows = batch.column(1).as_primitive::<UInt64Type>();
        let matched = batch.column(2).as_boolean();
        let action = int64(batch.column(3))?;
        let sources = batch.column(4).as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let file = files.value(i);
            if matched.value(i) {
                self.matched_sources.insert(sources.value(i));
            }
            if matched.value(i)
                && !self.note_match(file, rows.value(i))
                && !self.query.duplicates_allowed
            {
                return Err(duplicate_match());
            }
            if action.value(i) >= 0 {
                self.touched.insert(file);
            }
        }
        Ok(())
    }

    /// Discovery: the source rows that matched a target row.
    pub fn matched_sources(&self) -> &RoaringTreemap {
        &self.matched_sources
    }

    /// Discovery: the source rows that matched a target row (a serialized `RoaringTreemap`).
    pub fn matched_source_rows(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.matched_sources.serialized_size());
        self.matched_sources
            .serialize_into(&mut out)
            .map_err(|e| Error::internal(format!("cannot serialize matched rows: {e}")))?;
        Ok(out)
    }

    /// Discovery: the files found to hold a changed row, in ascending order.
    pub fn touched_files(&self) -> Vec<u32> {
        let mut t: Vec<u32> = self.touched.iter().copied().collect();
        t.sort_unstable();
        t
    }

    /// Rewrite: the rows of `batch` to write (output schema), counted into `metrics` (a
    /// target row deleted by several matches, where Delta allows them, counts once).
    pub fn rewrite(
        &mut self,
        batch: &RecordBatch,
        metrics: &mut TaskMetrics,
    ) -> Result<RecordBatch> {
        let n_out = self.query.output.fields().len();
        let action = int64(batch.column(n_out))?;
        let files = batch.column(n_out + 1).as_primitive::<UInt32Type>();
        let rows = batch.column(n_out + 2).as_primitive::<UInt64Type>();
        let sources = batch.column(n_out + 3).as_primitive::<UInt64Type>();
        let mut keep = BooleanBuilder::with_capacity(batch.num_rows());
        let mut write = BooleanBuilder::with_capacity(batch.num_rows());
        // Change data: each row's change type as written, and how its target row before
        // the statement is recorded (if it is).
        let recording = !self.query.preimage.is_empty();
        let mut written_as: Vec<Option<&'static str>> = Vec::new();
        let mut before_as: Vec<Option<&'static str>> = Vec::new();
        for i in 0..batch.num_rows() {
            if recording {
                written_as.push(None);
                before_as.push(None);
            }
            let a = action.value(i);
            // Marking rewrites run without a discovery pass: matches are checked and the
            // matched source rows noted here.
            let mut fresh = true;
            if self.marking && !files.is_null(i) && !sources.is_null(i) {
                fresh = self.note_match(files.value(i), rows.value(i));
                self.matched_sources.insert(sources.value(i));
                if !fresh && !self.query.duplicates_allowed {
                    return Err(duplicate_match());
                }
            }
            let kept = if files.is_null(i) {
                // A source row that matched nothing (here, nor elsewhere if excluded).
                let excluded = self
                    .excluded_sources
                    .as_ref()
                    .is_some_and(|x| x.contains(sources.value(i)));
                if a == NOTHING || excluded {
                    false
                } else {
                    metrics.rows_inserted += 1;
                    if recording {
                        written_as[i] = Some(change_data::INSERT);
                    }
                    true
                }
            } else if !self.touched.contains(&files.value(i)) {
                false
            } else if a == COPY {
                // Marking: the row stays where it is.
                metrics.rows_copied += u64::from(!self.marking);
                !self.marking
            } else {
                let (kind, delete) = self
                    .query
                    .codes
                    .get(a as usize)
                    .copied()
                    .ok_or_else(|| Error::internal(format!("MERGE action code {a}")))?;
                let by_source = kind == MergeClauseKind::NotMatchedBySource;
                let repeated = self.query.duplicates_allowed
                    && !by_source
                    && if self.marking {
                        !fresh
                    } else {
                        !self.note_match(files.value(i), rows.value(i))
                    };
                if repeated {
                    // Another match of a target row already deleted.
                } else if delete {
                    metrics.rows_deleted += 1;
                    metrics.rows_deleted_by_source += u64::from(by_source);
                    if recording {
                        before_as[i] = Some(change_data::DELETE);
                    }
                } else {
                    metrics.rows_updated += 1;
                    metrics.rows_updated_by_source += u64::from(by_source);
                    if recording {
                        before_as[i] = Some(change_data::UPDATE_PREIMAGE);
                        written_as[i] = Some(change_data::UPDATE_POSTIMAGE);
                    }
                }
                if self.marking {
                    // Marked deleted, and written anew unless deleted.
                    write.append_value(!delete && !repeated);
                    keep.append_value(true);
                    continue;
                }
                !delete
            };
            write.append_value(kept);
            keep.append_value(kept);
        }
        let keep = keep.finish();
        if !self.marking {
            let projected = batch.project(&(0..n_out).collect::<Vec<_>>())?;
            if recording {
                return self.with_changes(batch, &projected, &keep, written_as, before_as);
            }
            return Ok(filter_record_batch(&projected, &keep)?);
        }
        // The output columns, then the target row's id (null for inserts) and whether to
        // write the row.
        let mut fields: Vec<Field> = batch.schema().fields()[..n_out]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(FILE_COL, DataType::UInt32, true));
        fields.push(Field::new(ROW_COL, DataType::UInt64, true));
        fields.push(Field::new(WRITE_COL, DataType::Boolean, false));
        let mut columns: Vec<ArrayRef> = batch.columns()[..n_out].to_vec();
        columns.push(batch.column(n_out + 1).clone());
        columns.push(batch.column(n_out + 2).clone());
        columns.push(Arc::new(write.finish()));
        let marked = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(filter_record_batch(&marked, &keep)?)
    }
}

impl MergeRows<'_> {
    /// Change data of a rewrite: the rows `keep` selects from `projected` (the output
    /// columns), tagged `written_as`, then the target rows before the statement of those
    /// `before_as` records (from the query's preimage columns), tagged so.
    fn with_changes(
        &self,
        batch: &RecordBatch,
        projected: &RecordBatch,
        keep: &arrow::array::BooleanArray,
        written_as: Vec<Option<&'static str>>,
        before_as: Vec<Option<&'static str>>,
    ) -> Result<RecordBatch> {
        let written = change_data::tag(projected, None)?;
        let mut columns = written.columns().to_vec();
        let last = columns.len() - 1;
        columns[last] = Arc::new(arrow::array::StringArray::from(written_as));
        let written = filter_record_batch(&RecordBatch::try_new(written.schema(), columns)?, keep)?;
        let recorded: arrow::array::BooleanArray =
            before_as.iter().map(|t| Some(t.is_some())).collect();
        if recorded.true_count() == 0 {
            return Ok(written);
        }
        let n_out = self.query.output.fields().len();
        let first_pre = n_out + 4;
        let n = recorded.true_count();
        let schema = written.schema();
        let mut before: Vec<ArrayRef> = Vec::with_capacity(n_out + 1);
        for (f, pre) in schema.fields().iter().zip(&self.query.preimage) {
            before.push(match pre {
                Some(p) => cast(
                    &arrow::compute::filter(batch.column(first_pre + p), &recorded)?,
                    f.data_type(),
                )?,
                None => arrow::array::new_null_array(f.data_type(), n),
            });
        }
        let types = arrow::array::StringArray::from(before_as);
        before.push(arrow::compute::filter(&types, &recorded)?);
        let before = RecordBatch::try_new_with_options(
            schema,
            before,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        Ok(arrow::compute::concat_batches(
            &written.schema(),
            [&written, &before],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Assignment, MergeClauseSpec};

    fn spec(on: &str, clauses: Vec<MergeClauseSpec>) -> MergeSpec {
        let schema = |cols: &[(&str, DataType)]| {
            crate::schema::arrow_to_delta_json(&Schema::new(
                cols.iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            ))
            .unwrap()
        };
        MergeSpec {
            target_alias: Some("t".into()),
            source_alias: Some("s".into()),
            target_schema_json: schema(&[("id", DataType::Int64), ("v", DataType::Utf8)]),
            source_schema_json: schema(&[("id", DataType::Int64), ("w", DataType::Utf8)]),
            source_select: None,
            on: on.into(),
            clauses,
            pass: MergePass::Rewrite { touched: vec![] },
            record_changes: false,
        }
    }

    fn update(cond: Option<&str>, column: &str, expr: &str) -> MergeClauseSpec {
        MergeClauseSpec {
            kind: MergeClauseKind::Matched,
            condition: cond.map(str::to_string),
            action: MergeActionSpec::Update(vec![Assignment {
                column: column.into(),
                expr: expr.into(),
            }]),
        }
    }

    fn output() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ])
    }

    #[test]
    fn names_resolve_to_one_side_as_spark_resolves_them() {
        let ok = MergeQuery::build(
            &spec("t.id = s.id", vec![update(None, "v", "w")]),
            &output(),
        )
        .unwrap();
        // Unqualified `w` is the source's (only it has one); `v` keeps the target's value.
        assert!(
            ok.sql().contains("CAST((\"__s_w\") AS VARCHAR)"),
            "{}",
            ok.sql()
        );
        assert!(
            ok.sql().contains("ELSE \"__t_v\" END AS \"v\""),
            "{}",
            ok.sql()
        );
        let err = |on: &str, clauses| {
            MergeQuery::build(&spec(on, clauses), &output())
                .unwrap_err()
                .to_string()
        };
        assert!(err("id = s.id", vec![]).contains("ambiguous"));
        assert!(err("t.id = s.nope", vec![]).contains("unknown column `s.nope`"));
        let insert_reading_target = MergeClauseSpec {
            kind: MergeClauseKind::NotMatchedByTarget,
            condition: Some("t.v = 'x'".into()),
            action: MergeActionSpec::Insert(vec![]),
        };
        assert!(err("t.id = s.id", vec![insert_reading_target]).contains("cannot read"));
        let by_source_reading_source = MergeClauseSpec {
            kind: MergeClauseKind::NotMatchedBySource,
            condition: Some("s.w = 'x'".into()),
            action: MergeActionSpec::Delete,
        };
        assert!(err("t.id = s.id", vec![by_source_reading_source]).contains("cannot read"));
    }

    #[test]
    fn discovery_reads_only_the_condition_columns() {
        let s = spec("t.id = s.id", vec![update(Some("s.w <> t.v"), "v", "s.w")]);
        let (target, source) = discovery_columns(&s).unwrap();
        assert_eq!(target, vec!["id", "v"]);
        assert_eq!(source, vec!["id", "w"]);
        let s = spec("t.id = s.id", vec![update(None, "v", "s.w")]);
        let (target, source) = discovery_columns(&s).unwrap();
        assert_eq!(
            (target, source),
            (vec!["id".to_string()], vec!["id".to_string()])
        );
    }
}
