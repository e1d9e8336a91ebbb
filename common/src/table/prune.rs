//! Which data files a predicate can match, decided from the Delta log alone: partition values
//! and per-file statistics (`minValues`, `maxValues`, `nullCount`, `numRecords`).
//!
//! The coordinator uses this to plan DELETE/UPDATE/replaceWhere without reading files it can
//! rule out, and the committer uses it to decide whether a concurrently added file falls into
//! what a job read. Pruning is DataFusion's [`PruningPredicate`] over statistics decoded from
//! the log; it is conservative: a file is ruled out or in only when its statistics prove it.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, StructArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, Operator};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;

use crate::expr::Predicate;
use crate::schema::constant_array;
use crate::task::DataFile;
use crate::{Error, Result};

/// What the log says about a file and a predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No row of the file can satisfy the predicate.
    NoMatch,
    /// Every row of the file satisfies the predicate.
    AllMatch,
    /// Only reading the file tells.
    MayMatch,
}

/// Classifies each file for `predicate` (compiled against `schema`, the table schema).
///
/// Partition-only predicates are decided exactly from partition values. Others use the
/// statistics: a file is `NoMatch` when its min/max/null counts rule out every row, and
/// `AllMatch` when they prove that the predicate holds (and is never null) for every row —
/// only for predicates built from comparisons, ranges, IN lists and null tests of columns
/// against literals, whose columns have no nulls in the file.
pub fn classify(
    predicate: &Predicate,
    schema: &SchemaRef,
    partition_columns: &[String],
    files: &[&DataFile],
) -> Result<Vec<Verdict>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let stats = FileStats::new(files, predicate.input_schema(), schema, partition_columns)?;
    if predicate.only_references(partition_columns) {
        let batch = stats.partition_batch()?;
        let mask = predicate.evaluate(&batch)?;
        return Ok((0..files.len())
            .map(|i| {
                if mask.value(i) {
                    Verdict::AllMatch
                } else {
                    Verdict::NoMatch
                }
            })
            .collect());
    }
    let may = prune(predicate.physical(), predicate.input_schema(), &stats);
    let all = if is_simple(predicate.expr()) {
        match negated(predicate) {
            Some(not) => prune(&not, predicate.input_schema(), &stats)
                .into_iter()
                .enumerate()
                .map(|(i, not_may)| !not_may && stats.no_nulls(i))
                .collect(),
            None => vec![false; files.len()],
        }
    } else {
        vec![false; files.len()]
    };
    Ok(may
        .into_iter()
        .zip(all)
        .map(|(may, all)| match (may, all) {
            (false, _) => Verdict::NoMatch,
            (true, true) => Verdict::AllMatch,
            (true, false) => Verdict::MayMatch,
        })
        .collect())
}

/// `true` where a file may hold a row for which `expr` is true; all `true` when the
/// expression cannot be used for pruning.
fn prune(
    expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    schema: &SchemaRef,
    stats: &FileStats,
) -> Vec<bool> {
    PruningPredicateBuilder::new()
        .with_file_schema(schema.clone())
        .try_build(expr.clone())
        .and_then(|p| p.prune(stats))
        .unwrap_or_else(|_| vec![true; stats.num_files])
}

/// `NOT predicate`, simplified (negations pushed into comparisons), as a physical expression
/// over the predicate's input schema.
fn negated(predicate: &Predicate) -> Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    let df_schema = Arc::new(DFSchema::try_from(predicate.input_schema().as_ref().clone()).ok()?);
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(df_schema.clone())
            .build(),
    );
    let not = simplifier.simplify(!predicate.expr().clone()).ok()?;
    create_physical_expr(
        &not,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .ok()
}

/// Whether the expression is made of comparisons, ranges, IN lists, null tests and boolean
/// connectives over columns and non-null literals: with no null inputs, such an expression
/// is never null, so "its negation cannot hold" means "it holds".
fn is_simple(expr: &Expr) -> bool {
    use datafusion::logical_expr::expr::{Between, BinaryExpr, Cast, InList, TryCast};
    match expr {
        Expr::Column(_) => true,
        Expr::Literal(v, _) => !v.is_null(),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::And
                    | Operator::Or
                    | Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
            ) && is_simple(left)
                && is_simple(right)
        }
        Expr::Between(Between {
            expr, low, high, ..
        }) => is_simple(expr) && is_simple(low) && is_simple(high),
        Expr::InList(InList { expr, list, .. }) => is_simple(expr) && list.iter().all(is_simple),
        Expr::Not(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => is_simple(e),
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => {
            matches!(expr.as_ref(), Expr::Column(_))
        }
        _ => false,
    }
}

/// For each non-null value of `probes` (values of `column`, a data column of `schema`), how
/// many of `files` a point predicate `column = value` reads: all but those whose statistics
/// rule the value out (below the file's minimum, above its maximum, or the column all null
/// in it). The rule [`classify`] applies to such a predicate, with no predicate planned per
/// value (the clustering quality report probes a hundred values per column).
pub fn point_reads(
    column: &str,
    probes: &ArrayRef,
    schema: &SchemaRef,
    partition_columns: &[String],
    files: &[&DataFile],
) -> Result<Vec<usize>> {
    use arrow::array::Scalar;
    use arrow::compute::kernels::cmp::{gt, lt};
    let field = schema
        .field_with_name(column)
        .map_err(|_| Error::internal(format!("column `{column}` not in schema")))?;
    let columns = Arc::new(Schema::new(vec![field.clone()]));
    let stats = FileStats::new(files, &columns, schema, partition_columns)?;
    let c = &stats.columns[0];
    let row_counts = &stats.row_counts;
    let null_counts = c
        .null_counts
        .as_ref()
        .and_then(|n| n.as_any().downcast_ref::<Int64Array>());
    let all_null: Vec<bool> = (0..files.len())
        .map(|i| {
            null_counts.is_some_and(|n| {
                n.is_valid(i)
                    && row_counts.is_valid(i)
                    && u64::try_from(n.value(i)).ok() == Some(row_counts.value(i))
            })
        })
        .collect();
    let mut reads = Vec::with_capacity(probes.len());
    for i in (0..probes.len()).filter(|&i| probes.is_valid(i)) {
        let value = Scalar::new(probes.slice(i, 1));
        // Files whose minimum is above / maximum below the value (null: unknown).
        let above = c.min.as_ref().map(|m| gt(m, &value)).transpose()?;
        let below = c.max.as_ref().map(|m| lt(m, &value)).transpose()?;
        let ruled_out = |b: &Option<BooleanArray>, f: usize| {
            b.as_ref().is_some_and(|b| b.is_valid(f) && b.value(f))
        };
        reads.push(
            (0..files.len())
                .filter(|&f| !all_null[f] && !ruled_out(&above, f) && !ruled_out(&below, f))
                .count(),
        );
    }
    Ok(reads)
}

/// Statistics of a list of files for some columns, as DataFusion's pruning wants them (one
/// "container" per file).
struct FileStats {
    num_files: usize,
    /// Per referenced column: (name, min, max, null counts); min/max typed as the column.
    columns: Vec<ColumnStats>,
    row_counts: UInt64Array,
    schema: SchemaRef,
}

struct ColumnStats {
    name: String,
    min: Option<ArrayRef>,
    max: Option<ArrayRef>,
    null_counts: Option<ArrayRef>,
    is_partition: bool,
}

impl FileStats {
    /// `columns`: the referenced columns (table spelling); `schema`: the table schema.
    fn new(
        files: &[&DataFile],
        columns: &SchemaRef,
        schema: &SchemaRef,
        partition_columns: &[String],
    ) -> Result<Self> {
        let is_partition = |name: &str| {
            partition_columns
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
        };
        let data_fields: Vec<Field> = columns
            .fields()
            .iter()
            .filter(|f| !is_partition(f.name()) && stats_type(f.data_type()))
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let decoded = decode_stats(files, &data_fields);
        let mut out = Vec::new();
        for field in columns.fields() {
            if is_partition(field.name()) {
                let values = partition_values(files, field, partition_columns)?;
                let nulls: Int64Array = (0..files.len())
                    .map(|i| {
                        Some(if values.is_null(i) {
                            files[i].num_records.max(1)
                        } else {
                            0
                        })
                    })
                    .collect();
                out.push(ColumnStats {
                    name: field.name().clone(),
                    min: Some(values.clone()),
                    max: Some(values),
                    null_counts: Some(Arc::new(nulls)),
                    is_partition: true,
                });
                continue;
            }
            let pick = |part: &str| -> Option<ArrayRef> {
                let d = decoded.as_ref()?;
                let s = d
                    .column_by_name(part)?
                    .as_any()
                    .downcast_ref::<StructArray>()?;
                s.column_by_name(field.name()).cloned()
            };
            let max = pick("maxValues").map(|m| widen_timestamp_max(&m));
            out.push(ColumnStats {
                name: field.name().clone(),
                min: pick("minValues"),
                max,
                null_counts: pick("nullCount"),
                is_partition: false,
            });
        }
        let row_counts: UInt64Array = files
            .iter()
            .map(|f| u64::try_from(f.num_records).ok())
            .collect();
        Ok(FileStats {
            num_files: files.len(),
            columns: out,
            row_counts,
            schema: schema.clone(),
        })
    }

    fn find(&self, column: &Column) -> Option<&ColumnStats> {
        self.columns.iter().find(|c| c.name == column.name)
    }

    /// Whether file `i` is known to have no null in any referenced column.
    fn no_nulls(&self, i: usize) -> bool {
        self.columns.iter().all(|c| {
            c.null_counts.as_ref().is_some_and(|n| {
                let n = n.as_any().downcast_ref::<Int64Array>();
                n.is_some_and(|n| n.is_valid(i) && n.value(i) == 0)
            }) && (c.is_partition
                || c.min.as_ref().is_some_and(|m| m.is_valid(i))
                || self.row_counts.is_valid(i) && self.row_counts.value(i) == 0)
        })
    }

    /// One row per file with the referenced partition columns' values (for exact
    /// partition-only predicates).
    fn partition_batch(&self) -> Result<arrow::record_batch::RecordBatch> {
        let mut fields = Vec::new();
        let mut cols = Vec::new();
        for c in self.columns.iter().filter(|c| c.is_partition) {
            let Some(values) = &c.min else { continue };
            let field = self
                .schema
                .field_with_name(&c.name)
                .map_err(|_| Error::internal(format!("column `{}` not in schema", c.name)))?;
            fields.push(field.clone().with_nullable(true));
            cols.push(values.clone());
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.num_files));
        Ok(arrow::record_batch::RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &options,
        )?)
    }
}

impl PruningStatistics for FileStats {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.find(column)?.min.clone()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.find(column)?.max.clone()
    }

    fn num_containers(&self) -> usize {
        self.num_files
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let n = self.find(column)?.null_counts.as_ref()?;
        arrow::compute::cast(n, &DataType::UInt64).ok()
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.row_counts.clone()))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Types whose min/max Delta statistics carry and pruning can use.
fn stats_type(dt: &DataType) -> bool {
    dt.is_primitive()
        || matches!(
            dt,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
}

/// Delta writers truncate timestamp statistics to milliseconds, so a maximum may be up to a
/// millisecond below the true one: widen it.
fn widen_timestamp_max(max: &ArrayRef) -> ArrayRef {
    let DataType::Timestamp(unit, _) = max.data_type() else {
        return max.clone();
    };
    let ms = match unit {
        TimeUnit::Second => return max.clone(),
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    let as_i64 = match arrow::compute::cast(max, &DataType::Int64) {
        Ok(a) => a,
        Err(_) => return max.clone(),
    };
    let Some(values) = as_i64.as_any().downcast_ref::<Int64Array>() else {
        return max.clone();
    };
    let widened: Int64Array = values
        .iter()
        .map(|v| v.map(|v| v.saturating_add(ms)))
        .collect();
    arrow::compute::cast(&(Arc::new(widened) as ArrayRef), max.data_type())
        .unwrap_or_else(|_| max.clone())
}

/// The files' partition values of one column, typed as the column.
fn partition_values(
    files: &[&DataFile],
    field: &Field,
    partition_columns: &[String],
) -> Result<ArrayRef> {
    let key = partition_columns
        .iter()
        .find(|c| c.eq_ignore_ascii_case(field.name()))
        .cloned()
        .unwrap_or_else(|| field.name().clone());
    let parts: Vec<ArrayRef> = files
        .iter()
        .map(|f| {
            let v = f.partition_values.get(&key).cloned().flatten();
            constant_array(field, v.as_deref(), 1)
        })
        .collect::<Result<_>>()?;
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::concat(&refs)?)
}

/// Decodes the files' stats JSON into one struct row per file (`minValues`, `maxValues`,
/// `nullCount` restricted to `fields`). `None` when the statistics cannot be decoded (then
/// nothing is pruned by statistics).
fn decode_stats(files: &[&DataFile], fields: &[Field]) -> Option<StructArray> {
    if fields.is_empty() {
        return None;
    }
    let values = DataType::Struct(fields.to_vec().into());
    let counts = DataType::Struct(
        fields
            .iter()
            .map(|f| Field::new(f.name(), DataType::Int64, true))
            .collect(),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("minValues", values.clone(), true),
        Field::new("maxValues", values, true),
        Field::new("nullCount", counts, true),
    ]));
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(files.len().max(1))
        .build_decoder()
        .ok()?;
    for f in files {
        let line = f.stats_json.as_deref().unwrap_or("{}");
        let line = if line.trim().is_empty() { "{}" } else { line };
        decoder.decode(line.as_bytes()).ok()?;
        decoder.decode(b"\n").ok()?;
    }
    let batch = decoder.flush().ok()??;
    (batch.num_rows() == files.len()).then(|| StructArray::from(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new("p", DataType::Int32, true),
        ]))
    }

    fn file(p: Option<&str>, stats: Option<&str>) -> DataFile {
        let n = stats
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["numRecords"].as_i64())
            .unwrap_or(-1);
        DataFile {
            path: "f.parquet".into(),
            partition_values: BTreeMap::from([("p".to_string(), p.map(str::to_string))]),
            size_bytes: 1,
            modification_time_ms: 0,
            stats_json: stats.map(str::to_string),
            num_records: n,
            deletion_vector: None,
        }
    }

    fn verdicts(sql: &str, files: &[DataFile]) -> Vec<Verdict> {
        let p = Predicate::compile(sql, &schema()).unwrap();
        let refs: Vec<&DataFile> = files.iter().collect();
        classify(&p, &schema(), &["p".to_string()], &refs).unwrap()
    }

    const A: &str = r#"{"numRecords":10,"minValues":{"id":1,"s":"apple","d":"2020-01-01"},"maxValues":{"id":10,"s":"melon","d":"2020-01-31"},"nullCount":{"id":0,"s":2,"d":0}}"#;
    const B: &str = r#"{"numRecords":5,"minValues":{"id":20,"s":"nut","d":"2021-01-01"},"maxValues":{"id":30,"s":"zebra","d":"2021-06-30"},"nullCount":{"id":1,"s":0,"d":0}}"#;

    #[test]
    fn point_reads_agree_with_classifying_each_point_predicate() {
        // Seeded random files: ranges of ids, strings and dates, some with a column all
        // null, without a minimum, or without stats at all; probes inside and outside.
        let seed = 0x9e37_79b9_u64;
        let mut state = seed;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut files = Vec::new();
        for _ in 0..40 {
            let rows = 1 + next(20);
            let lo = next(100) as i64;
            let hi = lo + next(30) as i64;
            let (slo, shi) = (format!("k{:03}", lo), format!("k{:03}", hi));
            let (dlo, dhi) = (format!("2020-01-{:02}", 1 + lo % 28), "2020-02-15");
            let stats = match next(6) {
                0 => None,
                1 => Some(format!(
                    r#"{{"numRecords":{rows},"minValues":{{}},"maxValues":{{}},"nullCount":{{"id":{rows},"s":{rows},"d":{rows}}}}}"#
                )),
                2 => Some(format!(
                    r#"{{"numRecords":{rows},"maxValues":{{"id":{hi},"s":"{shi}","d":"{dhi}"}},"nullCount":{{"id":0,"s":0,"d":0}}}}"#
                )),
                _ => Some(format!(
                    r#"{{"numRecords":{rows},"minValues":{{"id":{lo},"s":"{slo}","d":"{dlo}"}},"maxValues":{{"id":{hi},"s":"{shi}","d":"{dhi}"}},"nullCount":{{"id":1,"s":0,"d":0}}}}"#
                )),
            };
            files.push(file(Some("1"), stats.as_deref()));
        }
        let refs: Vec<&DataFile> = files.iter().collect();
        let ids: Vec<i64> = (0..30).map(|_| next(140) as i64 - 5).collect();
        let probes: [(&str, ArrayRef, Vec<String>); 3] = [
            (
                "id",
                Arc::new(Int64Array::from(ids.clone())),
                ids.iter().map(|v| v.to_string()).collect(),
            ),
            (
                "s",
                Arc::new(arrow::array::StringArray::from_iter_values(
                    ids.iter().map(|v| format!("k{v:03}")),
                )),
                ids.iter().map(|v| format!("'k{v:03}'")).collect(),
            ),
            (
                "d",
                Arc::new(arrow::array::Date32Array::from_iter_values(
                    ids.iter().map(|v| 18262 + (*v as i32).rem_euclid(60)),
                )),
                ids.iter()
                    .map(|v| format!("DATE '2020-01-01' + INTERVAL '{}' DAY", v.rem_euclid(60)))
                    .collect(),
            ),
        ];
        for (column, values, literals) in probes {
            let reads = point_reads(column, &values, &schema(), &["p".to_string()], &refs).unwrap();
            assert_eq!(reads.len(), literals.len());
            assert!(reads.iter().any(|&r| r > 0) && reads.iter().any(|&r| r < files.len() / 2));
            for (i, literal) in literals.iter().enumerate() {
                let expected = verdicts(&format!("{column} = {literal}"), &files)
                    .iter()
                    .filter(|v| **v != Verdict::NoMatch)
                    .count();
                assert_eq!(reads[i], expected, "seed {seed:#x}: {column} = {literal}");
            }
        }
        // A null probe is not a point predicate: it is skipped.
        let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None]));
        let reads = point_reads("id", &with_null, &schema(), &["p".to_string()], &refs).unwrap();
        assert_eq!(reads.len(), 1);
    }

    #[test]
    fn statistics_rule_files_in_and_out() {
        use Verdict::*;
        let files = [
            file(Some("1"), Some(A)),
            file(Some("2"), Some(B)),
            file(Some("1"), None),
        ];
        assert_eq!(verdicts("id > 15", &files), [NoMatch, MayMatch, MayMatch]);
        assert_eq!(verdicts("id >= 1", &files), [AllMatch, MayMatch, MayMatch]);
        assert_eq!(
            verdicts("id BETWEEN 0 AND 10", &files),
            [AllMatch, NoMatch, MayMatch]
        );
        assert_eq!(
            verdicts("id IN (50, 60)", &files),
            [NoMatch, NoMatch, MayMatch]
        );
        // `s` has nulls in A: the predicate is null there, so not every row matches.
        assert_eq!(verdicts("s >= 'a'", &files), [MayMatch, AllMatch, MayMatch]);
        assert_eq!(
            verdicts("d < '2020-06-01'", &files),
            [AllMatch, NoMatch, MayMatch]
        );
        // Functions are never proven to hold everywhere, but may still rule files out.
        assert_eq!(
            verdicts("id + 0 > 100", &files),
            [MayMatch, MayMatch, MayMatch]
        );
        // Partition columns combine with statistics.
        assert_eq!(
            verdicts("p = 2 AND id > 25", &files),
            [NoMatch, MayMatch, NoMatch]
        );
        assert_eq!(
            verdicts("p = 1 OR id > 100", &files),
            [AllMatch, NoMatch, MayMatch]
        );
    }

    #[test]
    fn partition_only_predicates_are_exact() {
        use Verdict::*;
        let files = [
            file(Some("1"), None),
            file(None, None),
            file(Some("3"), None),
        ];
        assert_eq!(verdicts("p = 1", &files), [AllMatch, NoMatch, NoMatch]);
        assert_eq!(verdicts("p IS NULL", &files), [NoMatch, AllMatch, NoMatch]);
        assert_eq!(verdicts("p <> 1", &files), [NoMatch, NoMatch, AllMatch]);
    }

    #[test]
    fn bad_statistics_prune_nothing() {
        let files = [file(Some("1"), Some("{not json")), file(Some("1"), Some(A))];
        assert_eq!(
            verdicts("id > 15", &files),
            [Verdict::MayMatch, Verdict::MayMatch]
        );
    }
}
