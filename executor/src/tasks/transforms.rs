//! Transforms, compiled once per task against the table schema and applied batch by batch.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use silt_common::change_data::{self, CHANGE_TYPE_COL};
use silt_common::expr::{Expression, Predicate};
use silt_common::merge::{self, SourceProjection};
use silt_common::schema::{cast_array, conform_batch, delta_json_to_arrow};
use silt_common::task::{ChangeRows, Keep, TaskMetrics, Transform};
use silt_common::{Error, Result};

enum Step {
    Conform,
    Check(Predicate),
    /// The last flag: the rows it drops are recorded as deleted (change data).
    Filter(Predicate, Keep, bool),
    Update {
        predicate: Option<Predicate>,
        /// (column index in the table schema, expression)
        assignments: Vec<(usize, Expression)>,
        /// The rows it changes are recorded before and after (change data).
        record: bool,
    },
    Select(SourceProjection),
    RecordChanges(ChangeRows),
    /// (column index in the table schema, expression)
    Derive(Vec<(usize, Expression)>),
}

/// A task's transforms, ready to apply.
pub struct Pipeline {
    steps: Vec<Step>,
    schema: SchemaRef,
    /// The table schema with every top-level column nullable: rows that only mark table
    /// rows deleted (`WRITE_COL` false) carry no values, and the writer checks NOT NULL on
    /// the rows it writes.
    marking_schema: SchemaRef,
}

impl Pipeline {
    /// Compiles the transforms against the table schema (bad expressions fail here, before
    /// any row is read).
    pub fn compile(transforms: &[Transform], schema: &SchemaRef) -> Result<Self> {
        // Whether the next step that changes rows records its changes (a
        // `RecordChanges(Table)` came before it, and no other changing step since).
        let mut recording = false;
        let steps = transforms
            .iter()
            .map(|t| {
                Ok(match t {
                    Transform::Conform => Step::Conform,
                    Transform::Check { predicate } => {
                        Step::Check(Predicate::compile(predicate, schema)?)
                    }
                    Transform::Filter { predicate, keep } => {
                        let record = recording && *keep == Keep::NotMatching;
                        recording &= !record;
                        Step::Filter(Predicate::compile(predicate, schema)?, *keep, record)
                    }
                    Transform::RecordChanges(rows) => {
                        recording = *rows == ChangeRows::Table;
                        Step::RecordChanges(*rows)
                    }
                    Transform::Update {
                        predicate,
                        assignments,
                    } => Step::Update {
                        record: std::mem::take(&mut recording),
                        predicate: predicate
                            .as_deref()
                            .map(|p| Predicate::compile(p, schema))
                            .transpose()?,
                        assignments: compile_assignments(assignments, schema)?,
                    },
                    Transform::Derive { assignments } => {
                        Step::Derive(compile_assignments(assignments, schema)?)
                    }
                    Transform::Select {
                        input_schema_json,
                        select,
                    } => Step::Select(SourceProjection::compile(
                        &delta_json_to_arrow(input_schema_json)?,
                        select,
                    )?),
                })
            })
            .collect::<Result<_>>()?;
        let marking_schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        Ok(Self {
            steps,
            schema: schema.clone(),
            marking_schema,
        })
    }

    /// The leading filter, which an input may apply while reading (late materialization),
    /// then skipping it with [`Pipeline::apply_from`].
    pub fn leading_filter(&self) -> Option<(&Predicate, Keep)> {
        match self.steps.first() {
            Some(Step::Filter(p, keep, _)) => Some((p, *keep)),
            _ => None,
        }
    }

    /// Applies every step to a batch; `None` when no row is left.
    pub fn apply(
        &self,
        batch: RecordBatch,
        metrics: &mut TaskMetrics,
    ) -> Result<Option<RecordBatch>> {
        self.apply_from(0, batch, metrics)
    }

    /// Whether there are no steps (rows pass as they are).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the steps from `first` on (earlier ones were applied while reading).
    pub fn apply_from(
        &self,
        first: usize,
        batch: RecordBatch,
        metrics: &mut TaskMetrics,
    ) -> Result<Option<RecordBatch>> {
        let mut batch = batch;
        for step in &self.steps[first.min(self.steps.len())..] {
            if batch.num_rows() == 0 {
                return Ok(None);
            }
            batch = match step {
                Step::Conform => {
                    let rows: Vec<usize> = (0..batch.num_columns())
                        .filter(|&i| !is_row_id(batch.schema().field(i).name()))
                        .collect();
                    let schema = if batch.schema().index_of(merge::WRITE_COL).is_ok() {
                        &self.marking_schema
                    } else {
                        &self.schema
                    };
                    with_row_ids(conform_batch(&batch.project(&rows)?, schema)?, &batch)?
                }
                Step::Check(p) => {
                    check_all_match(p, &batch)?;
                    batch
                }
                Step::Filter(p, keep, record) => {
                    let matching = p.evaluate(&batch)?;
                    let mask = match keep {
                        Keep::Matching => matching,
                        Keep::NotMatching => not(&matching)?,
                    };
                    let kept = mask.true_count();
                    metrics.rows_deleted += (batch.num_rows() - kept) as u64;
                    if kept == batch.num_rows() {
                        batch
                    } else if *record {
                        // The dropped rows stay, recorded as deleted.
                        let deleted = filter_record_batch(&batch, &not(&mask)?)?;
                        let deleted = with_change_type(&deleted, change_data::DELETE)?;
                        let kept = filter_record_batch(&batch, &mask)?;
                        arrow::compute::concat_batches(&batch.schema(), [&kept, &deleted])?
                    } else {
                        filter_record_batch(&batch, &mask)?
                    }
                }
                Step::Update {
                    predicate,
                    assignments,
                    record,
                } => self.update(batch, predicate.as_ref(), assignments, *record, metrics)?,
                Step::Select(projection) => projection.apply(&batch)?,
                Step::Derive(assignments) => self.derive(batch, assignments)?,
                Step::RecordChanges(rows) => {
                    let base = match batch.schema().index_of(CHANGE_TYPE_COL) {
                        Ok(i) => batch.project(
                            &(0..batch.num_columns())
                                .filter(|&c| c != i)
                                .collect::<Vec<_>>(),
                        )?,
                        Err(_) => batch,
                    };
                    let change = match rows {
                        ChangeRows::Inserted => Some(change_data::INSERT),
                        ChangeRows::Table => None,
                    };
                    change_data::tag(&base, change)?
                }
            };
        }
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// Sets the assigned columns on the rows the predicate selects; every expression sees
    /// the row as it was before the update. `record`: the changed rows are recorded as
    /// updated (after), and their rows before the update are added (recorded as before).
    fn update(
        &self,
        batch: RecordBatch,
        predicate: Option<&Predicate>,
        assignments: &[(usize, Expression)],
        record: bool,
        metrics: &mut TaskMetrics,
    ) -> Result<RecordBatch> {
        let mask = match predicate {
            Some(p) => p.evaluate(&batch)?,
            None => BooleanArray::from(vec![true; batch.num_rows()]),
        };
        let n = mask.true_count();
        metrics.rows_updated += n as u64;
        if n == 0 {
            return Ok(batch);
        }
        let updated = self.assign(&batch, &mask, assignments)?;
        if !record {
            return Ok(updated);
        }
        let after = with_change_type_where(&updated, &mask, change_data::UPDATE_POSTIMAGE)?;
        let before = filter_record_batch(&batch, &mask)?;
        let before = with_change_type(&before, change_data::UPDATE_PREIMAGE)?;
        let before = RecordBatch::try_new(after.schema(), before.columns().to_vec())?;
        Ok(arrow::compute::concat_batches(
            &after.schema(),
            [&after, &before],
        )?)
    }

    /// Sets computed columns on every row but those only recorded as change data (deleted,
    /// or before an update).
    fn derive(
        &self,
        batch: RecordBatch,
        assignments: &[(usize, Expression)],
    ) -> Result<RecordBatch> {
        let mask: BooleanArray = match batch.column_by_name(CHANGE_TYPE_COL) {
            Some(types) => types
                .as_string::<i32>()
                .iter()
                .map(|t| {
                    Some(!matches!(
                        t,
                        Some(change_data::DELETE) | Some(change_data::UPDATE_PREIMAGE)
                    ))
                })
                .collect(),
            None => BooleanArray::from(vec![true; batch.num_rows()]),
        };
        if mask.true_count() == 0 {
            return Ok(batch);
        }
        self.assign(&batch, &mask, assignments)
    }

    /// `batch` with the assignments' values where `mask` is true (each expression sees the
    /// rows as they were); NOT NULL checked again.
    fn assign(
        &self,
        batch: &RecordBatch,
        mask: &BooleanArray,
        assignments: &[(usize, Expression)],
    ) -> Result<RecordBatch> {
        let n = mask.true_count();
        let width = self.schema.fields().len();
        let mut columns: Vec<ArrayRef> = batch.columns()[..width.min(batch.num_columns())].to_vec();
        for (idx, expr) in assignments {
            let field = self.schema.field(*idx);
            let value = cast_array(&expr.evaluate(batch)?, field.data_type(), field.name())?;
            let old = &batch.columns()[*idx];
            columns[*idx] = if n == batch.num_rows() {
                value
            } else {
                zip(mask, &value, old)?
            };
        }
        // Re-checks NOT NULL columns (an assignment may set a null).
        let nullable = Arc::new(arrow::datatypes::Schema::new(
            self.schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let updated = RecordBatch::try_new(nullable, columns)?;
        with_row_ids(conform_batch(&updated, &self.schema)?, batch)
    }
}

/// Assignments compiled against the table schema: (column index, expression).
fn compile_assignments(
    assignments: &[silt_common::task::Assignment],
    schema: &SchemaRef,
) -> Result<Vec<(usize, Expression)>> {
    assignments
        .iter()
        .map(|a| {
            let idx = schema
                .index_of(&a.column)
                .map_err(|_| Error::invalid(format!("unknown column `{}`", a.column)))?;
            Ok((idx, Expression::compile(&a.expr, schema)?))
        })
        .collect()
}

/// Whether a column is one the transforms carry along unchanged: the row-id columns of a
/// marking rewrite, the change type of change data.
fn is_row_id(name: &str) -> bool {
    [
        merge::FILE_COL,
        merge::ROW_COL,
        merge::WRITE_COL,
        CHANGE_TYPE_COL,
    ]
    .contains(&name)
}

/// `batch` (carrying [`CHANGE_TYPE_COL`]) with every row's change type set to `change`.
fn with_change_type(batch: &RecordBatch, change: &str) -> Result<RecordBatch> {
    let mask = BooleanArray::from(vec![true; batch.num_rows()]);
    with_change_type_where(batch, &mask, change)
}

/// `batch` (carrying [`CHANGE_TYPE_COL`]) with the change type set to `change` where `mask`
/// is true.
fn with_change_type_where(
    batch: &RecordBatch,
    mask: &BooleanArray,
    change: &str,
) -> Result<RecordBatch> {
    let i = batch
        .schema()
        .index_of(CHANGE_TYPE_COL)
        .map_err(|_| Error::internal("rows whose changes are recorded lack their change type"))?;
    let value = arrow::array::StringArray::new_scalar(change);
    let mut columns = batch.columns().to_vec();
    columns[i] = zip(mask, &value, &batch.column(i))?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `table` (the table's columns, transformed) followed by `batch`'s row-id columns (see
/// `silt_common::merge`), unchanged.
fn with_row_ids(table: RecordBatch, batch: &RecordBatch) -> Result<RecordBatch> {
    let ids: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| is_row_id(batch.schema().field(i).name()))
        .collect();
    if ids.is_empty() {
        return Ok(table);
    }
    let mut fields: Vec<_> = table.schema().fields().iter().cloned().collect();
    let mut columns = table.columns().to_vec();
    for i in ids {
        fields.push(batch.schema().fields()[i].clone());
        columns.push(batch.column(i).clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// Every row must satisfy the predicate (new rows of a replaceWhere overwrite).
fn check_all_match(p: &Predicate, batch: &RecordBatch) -> Result<()> {
    let mask = p.evaluate(batch)?;
    let bad = batch.num_rows() - mask.true_count();
    if bad > 0 {
        return Err(Error::DataViolation(format!(
            "{bad} new row(s) do not satisfy the replaceWhere predicate `{}`",
            p.sql()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use silt_common::task::Assignment;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("c"),
                    Some("d"),
                ])),
            ],
        )
        .unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<i64> {
        b.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn filter_keeps_rows_where_the_condition_is_not_true() {
        let p = Pipeline::compile(
            &[Transform::Filter {
                predicate: "s <> 'a'".into(),
                keep: Keep::NotMatching,
            }],
            &schema(),
        )
        .unwrap();
        let mut m = TaskMetrics::default();
        let out = p.apply(batch(), &mut m).unwrap().unwrap();
        // `s` is null in row 2: the condition is null there, so the row stays.
        assert_eq!(ids(&out), vec![1, 2]);
        assert_eq!(m.rows_deleted, 2);
    }

    #[test]
    fn update_sees_old_values_and_counts_rows() {
        let p = Pipeline::compile(
            &[Transform::Update {
                predicate: Some("id >= 2".into()),
                assignments: vec![
                    Assignment {
                        column: "id".into(),
                        expr: "id * 10".into(),
                    },
                    Assignment {
                        column: "s".into(),
                        expr: "concat(s, cast(id as varchar))".into(),
                    },
                ],
            }],
            &schema(),
        )
        .unwrap();
        let mut m = TaskMetrics::default();
        let out = p.apply(batch(), &mut m).unwrap().unwrap();
        assert_eq!(ids(&out), vec![1, 20, 30, 40]);
        let s = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(s.value(0), "a");
        assert_eq!(s.value(2), "c3");
        assert_eq!(m.rows_updated, 3);
    }

    fn change_types(b: &RecordBatch) -> Vec<Option<String>> {
        b.column_by_name(CHANGE_TYPE_COL)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .map(|t| t.map(str::to_string))
            .collect()
    }

    #[test]
    fn recorded_filters_keep_dropped_rows_as_deleted() {
        let p = Pipeline::compile(
            &[
                Transform::RecordChanges(ChangeRows::Table),
                Transform::Filter {
                    predicate: "id % 2 = 0".into(),
                    keep: Keep::NotMatching,
                },
            ],
            &schema(),
        )
        .unwrap();
        let mut m = TaskMetrics::default();
        let out = p.apply(batch(), &mut m).unwrap().unwrap();
        assert_eq!(ids(&out), vec![1, 3, 2, 4]);
        assert_eq!(
            change_types(&out),
            vec![None, None, Some("delete".into()), Some("delete".into())]
        );
        assert_eq!(m.rows_deleted, 2);
        // Rows recorded must not be filtered while reading.
        assert!(p.leading_filter().is_none());
    }

    #[test]
    fn recorded_updates_add_before_images_once() {
        // Computed columns (an UPDATE's generated column computed again) change the rows
        // written, without counting or recording more.
        let p = Pipeline::compile(
            &[
                Transform::RecordChanges(ChangeRows::Table),
                Transform::Update {
                    predicate: Some("id >= 3".into()),
                    assignments: vec![Assignment {
                        column: "s".into(),
                        expr: "'u'".into(),
                    }],
                },
                Transform::Derive {
                    assignments: vec![Assignment {
                        column: "id".into(),
                        expr: "id * 10".into(),
                    }],
                },
            ],
            &schema(),
        )
        .unwrap();
        let mut m = TaskMetrics::default();
        let out = p.apply(batch(), &mut m).unwrap().unwrap();
        // Rows as they were before the update are left as they were.
        assert_eq!(ids(&out), vec![10, 20, 30, 40, 3, 4]);
        let s = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Some("a"), None, Some("u"), Some("u"), Some("c"), Some("d")]
        );
        let post = Some("update_postimage".to_string());
        let pre = Some("update_preimage".to_string());
        assert_eq!(
            change_types(&out),
            vec![None, None, post.clone(), post, pre.clone(), pre]
        );
        assert_eq!(m.rows_updated, 2);
    }

    #[test]
    fn new_rows_are_recorded_as_inserted() {
        let p = Pipeline::compile(
            &[
                Transform::Conform,
                Transform::RecordChanges(ChangeRows::Inserted),
            ],
            &schema(),
        )
        .unwrap();
        let out = p
            .apply(batch(), &mut TaskMetrics::default())
            .unwrap()
            .unwrap();
        assert_eq!(change_types(&out), vec![Some("insert".to_string()); 4]);
    }

    #[test]
    fn update_to_null_in_a_not_null_column_is_a_data_violation() {
        let p = Pipeline::compile(
            &[Transform::Update {
                predicate: None,
                assignments: vec![Assignment {
                    column: "id".into(),
                    expr: "NULL".into(),
                }],
            }],
            &schema(),
        )
        .unwrap();
        let e = p.apply(batch(), &mut TaskMetrics::default()).unwrap_err();
        assert!(matches!(e, Error::DataViolation(_)), "{e}");
    }
}
