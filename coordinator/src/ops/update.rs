//! UPDATE: every file that may hold a matching row is read; files holding one are rewritten
//! with the assignments applied to the matching rows (a partition column assignment moves
//! rows to their new partition), or, where the table has deletion vectors enabled, only the
//! updated rows are written and their old versions marked deleted; a file found to hold none
//! stays as it is. No matching row: no commit.

use std::time::Duration;

use arrow::datatypes::{DataType, Schema};
use silt_common::expr::{Expression, Predicate};
use silt_common::request::UpdateRequest;
use silt_common::schema::{column_list, type_name};
use silt_common::table::TableSnapshot;
use silt_common::task::{Assignment, Keep, Transform};
use url::Url;

use super::delete::check_deletable;
use super::dml::{DmlKind, DmlOp};
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{JobError, Operation, Outcome, PlanContext, invalid};
use crate::plan::{dv, rewrite};

/// Loads the table and plans the update.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: UpdateRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    check_deletable(&snapshot)?;
    let assignments = resolve_assignments(&req.assignments, &snapshot.arrow_schema)?;
    let predicate = req
        .predicate
        .as_deref()
        .map(|p| Predicate::compile(p, &snapshot.arrow_schema))
        .transpose()?;
    let slots = executor_slots(ctx).await?;
    Ok(Box::new(plan(
        table_url,
        snapshot,
        predicate,
        assignments,
        req.copy_on_write,
        PlanContext { slots, ..plan_ctx },
    )?))
}

/// Checks the assignments against the table schema: known columns (resolved to the table's
/// spelling), each assigned once, expressions that compile and whose type can be stored in
/// the column.
pub fn resolve_assignments(
    assignments: &[(String, String)],
    schema: &std::sync::Arc<Schema>,
) -> Result<Vec<Assignment>, JobError> {
    if assignments.is_empty() {
        return Err(invalid("UPDATE needs at least one assignment"));
    }
    let mut out: Vec<Assignment> = Vec::new();
    for (column, expr) in assignments {
        if column.contains('.') && schema.index_of(column).is_err() {
            return Err(invalid(format!(
                "cannot assign to nested field `{column}`: only top-level columns can be updated"
            )));
        }
        let field = schema
            .fields()
            .iter()
            .find(|f| f.name() == column)
            .or_else(|| {
                schema
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(column))
            })
            .ok_or_else(|| {
                invalid(format!(
                    "unknown column `{column}` in SET (columns: {})",
                    column_list(schema)
                ))
            })?;
        if out.iter().any(|a| &a.column == field.name()) {
            return Err(invalid(format!(
                "column `{}` is assigned more than once",
                field.name()
            )));
        }
        let compiled = Expression::compile(expr, schema)?;
        if !store_assignable(compiled.data_type(), field.data_type()) {
            return Err(invalid(format!(
                "type mismatch in SET: cannot assign `{expr}` of type {} to column `{}` of type {}",
                type_name(compiled.data_type()),
                field.name(),
                type_name(field.data_type())
            )));
        }
        out.push(Assignment {
            column: field.name().clone(),
            expr: expr.clone(),
        });
    }
    Ok(out)
}

/// Whether a value of type `from` may be stored in a column of type `to` (Spark's ANSI store
/// assignment: numbers to numbers, anything to strings, strings to dates and timestamps,
/// dates and timestamps to each other; no strings to numbers or booleans).
pub fn store_assignable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let numeric = |t: &DataType| t.is_numeric();
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let temporal = |t: &DataType| matches!(t, Date32 | Date64 | Timestamp(_, _));
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    from == to
        || *from == Null
        || (numeric(from) && numeric(to))
        || string(to) && !from.is_nested()
        || (string(from) && temporal(to))
        || (temporal(from) && temporal(to))
        || (binary(to) && (binary(from) || string(from)))
        || (from.is_nested() && to.is_nested() && arrow::compute::can_cast_types(from, to))
}

/// Plans an update: pure, from the snapshot, the condition and the checked assignments.
pub fn plan(
    table_url: Url,
    snapshot: TableSnapshot,
    predicate: Option<Predicate>,
    assignments: Vec<Assignment>,
    copy_on_write: bool,
    ctx: PlanContext,
) -> Result<DmlOp, JobError> {
    let selection = rewrite::select_files(&snapshot, predicate.as_ref())?;
    let table = DmlOp::table_spec(&table_url, &snapshot);
    let files_out = DmlOp::files_out(&snapshot, &ctx);
    // Generated columns are computed again from the updated row (rows left alone keep the
    // value they already hold); assigning one directly is refused.
    let generated: Vec<Assignment> = snapshot
        .generated_columns()
        .into_iter()
        .map(|(column, expr)| Assignment { column, expr })
        .collect();
    if let Some(g) = assignments
        .iter()
        .find(|a| generated.iter().any(|g| g.column == a.column))
    {
        return Err(invalid(format!(
            "`{}` is a generated column: its value is computed from the other columns and cannot be assigned; nothing was changed",
            g.column
        )));
    }
    if let Some(c) = snapshot
        .identity_columns()?
        .into_iter()
        .find(|c| assignments.iter().any(|a| a.column == c.name))
    {
        return Err(invalid(format!(
            "`{}` is an identity column: its values cannot be updated; nothing was changed",
            c.name
        )));
    }
    let recompute = (!generated.is_empty()).then(|| Transform::Derive {
        assignments: generated.clone(),
    });
    let transforms = rewrite::recording_changes(
        &snapshot,
        std::iter::once(Transform::Update {
            predicate: predicate.as_ref().map(|p| p.sql().to_string()),
            assignments: assignments.clone(),
        })
        .chain(recompute.clone())
        .collect(),
    );
    // Files where every row matches are read without a scan pass.
    let mut tasks = rewrite::rewrite_tasks(
        &table,
        &selection.whole,
        None,
        &transforms,
        &files_out,
        ctx.slots,
    );
    let mut marked = Vec::new();
    if let Some(p) = &predicate
        && dv::enabled(&snapshot, copy_on_write)
    {
        // Deletion vectors: the matching rows are marked in their files and written anew.
        marked = selection
            .candidates
            .iter()
            .map(|f| f.file.clone())
            .collect();
        tasks.extend(rewrite::mark_tasks(
            &table,
            &marked,
            &[
                Transform::Filter {
                    predicate: p.sql().to_string(),
                    keep: Keep::Matching,
                },
                Transform::Update {
                    predicate: None,
                    assignments: assignments.clone(),
                },
            ]
            .into_iter()
            .chain(recompute)
            .collect::<Vec<_>>(),
            Some(&files_out),
            ctx.slots,
        ));
    } else if let Some(p) = &predicate {
        tasks.extend(rewrite::rewrite_tasks(
            &table,
            &selection.candidates,
            Some(p.sql()),
            &transforms,
            &files_out,
            ctx.slots,
        ));
    }
    Ok(DmlOp::new(
        DmlKind::Update,
        table_url,
        snapshot,
        predicate,
        selection,
        tasks,
        ctx,
    )
    .marking(marked))
}

/// The outcome of a finished UPDATE: the rewritten files replaced, Delta's UPDATE metrics;
/// nothing to commit when no row matched.
pub fn finish(r: DmlOp, elapsed: Duration) -> Result<Outcome, JobError> {
    let removed = r.rewritten_files();
    let m = r.task_metrics();
    if removed.is_empty() || m.rows_updated == 0 {
        return Ok(Outcome::Nothing {
            summary: "no row matched the condition; nothing to update, nothing committed".into(),
            metrics: Default::default(),
        });
    }
    let mut txn = r.transaction();
    r.fill(&mut txn, &removed, elapsed);
    txn.metric("numUpdatedRows", m.rows_updated);
    txn.metric("numCopiedRows", m.rows_copied);
    let what = format!("{} row(s) updated", m.rows_updated);
    let summary = DmlOp::summary(&what, removed.len(), r.vectors_written(), &m);
    Ok(r.commit(txn, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::{snapshot, stats};
    use silt_common::task::Input;

    #[test]
    fn whole_files_are_read_without_a_scan_pass() {
        let (a, b) = (stats(10, 0, 10), stats(10, 20, 30));
        let snap = snapshot(&[("1", Some(&a)), ("2", Some(&b))]);
        let assignments =
            resolve_assignments(&[("S".into(), "upper(s)".into())], &snap.arrow_schema).unwrap();
        assert_eq!(assignments[0].column, "s", "the table's spelling");
        let predicate = Predicate::compile("p = 1 OR id > 25", &snap.arrow_schema).unwrap();
        let op = plan(
            Url::parse("file:///planner-test/t/").unwrap(),
            snap,
            Some(predicate),
            assignments,
            false,
            PlanContext {
                job_id: "j".into(),
                slots: 1,
            },
        )
        .unwrap();
        let touches: Vec<Option<&str>> = op
            .tasks
            .iter()
            .map(|t| match &t.input {
                Input::TableFiles { touch, .. } => touch.as_deref(),
                other => panic!("{other:?}"),
            })
            .collect();
        // p=1 matches whole (no scan); p=2 may match (scan for id > 25 first).
        assert_eq!(touches, vec![None, Some("p = 1 OR id > 25")]);
    }

    #[test]
    fn assignments_are_checked_against_the_schema() {
        let snap = snapshot(&[]);
        let schema = &snap.arrow_schema;
        let err = |a: &[(&str, &str)]| {
            let a: Vec<(String, String)> = a
                .iter()
                .map(|(c, e)| (c.to_string(), e.to_string()))
                .collect();
            resolve_assignments(&a, schema).unwrap_err().to_string()
        };
        assert!(err(&[("nope", "1")]).contains("unknown column `nope` in SET"));
        assert!(err(&[("id", "'x'")]).contains("type mismatch"));
        assert!(err(&[("id", "1"), ("ID", "2")]).contains("more than once"));
        assert!(err(&[("s.x", "1")]).contains("nested field"));
        assert!(err(&[("id", "nope + 1")]).contains("unknown column `nope`"));
        assert!(err(&[]).contains("at least one assignment"));
        // Numbers into numbers, anything into strings, strings into dates.
        for (c, e) in [("id", "1.5"), ("s", "id + 1"), ("p", "NULL")] {
            let a = vec![(c.to_string(), e.to_string())];
            assert!(resolve_assignments(&a, schema).is_ok(), "{c} = {e}");
        }
        assert!(store_assignable(&DataType::Utf8, &DataType::Date32));
        assert!(!store_assignable(&DataType::Utf8, &DataType::Boolean));
    }
}
