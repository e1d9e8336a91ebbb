//! DELETE: files whose every row matches are removed without being read; files that may
//! hold a matching row are rewritten by executors without those rows (copy-on-write) or,
//! where the table has deletion vectors enabled, read for the matching rows' positions only
//! (the condition's columns), which deletion vectors then mark; a file found to hold none
//! stays as it is. No matching row: no commit. On a table recording change data, the
//! rewrites record the deleted rows (and once one file is read, files matching whole are
//! read too).

use std::time::Duration;

use silt_common::expr::Predicate;
use silt_common::request::DeleteRequest;
use silt_common::table::TableSnapshot;
use silt_common::task::{DataFile, Keep, Transform};
use url::Url;

use super::dml::{DmlKind, DmlOp};
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{JobError, Operation, Outcome, PlanContext, invalid};
use crate::plan::dv;
use crate::plan::rewrite::{self, live_rows};

/// Loads the table and plans the delete.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: DeleteRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    check_deletable(&snapshot)?;
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
        req.copy_on_write,
        PlanContext { slots, ..plan_ctx },
    )?))
}

/// Tables DML may not change.
pub fn check_deletable(snapshot: &TableSnapshot) -> Result<(), JobError> {
    snapshot.check_writable()?;
    if snapshot.properties.append_only {
        return Err(invalid(
            "the table is append-only (delta.appendOnly = true): rows cannot be deleted or updated; nothing was changed",
        ));
    }
    Ok(())
}

/// Plans a delete: pure, from the snapshot and the compiled condition.
pub fn plan(
    table_url: Url,
    snapshot: TableSnapshot,
    predicate: Option<Predicate>,
    copy_on_write: bool,
    ctx: PlanContext,
) -> Result<DmlOp, JobError> {
    let selection =
        rewrite::select_files(&snapshot, predicate.as_ref())?.recording_changes(&snapshot);
    let mut marked = Vec::new();
    let tasks = match &predicate {
        Some(p) if dv::enabled(&snapshot, copy_on_write) => {
            marked = selection
                .candidates
                .iter()
                .map(|f| f.file.clone())
                .collect::<Vec<DataFile>>();
            // Only the condition's columns are read: rows are marked, not written.
            let table =
                rewrite::with_columns(&DmlOp::table_spec(&table_url, &snapshot), &p.columns());
            rewrite::mark_tasks(
                &table,
                &marked,
                &[Transform::Filter {
                    predicate: p.sql().to_string(),
                    keep: Keep::Matching,
                }],
                None,
                ctx.slots,
            )
        }
        Some(p) if !selection.candidates.is_empty() => rewrite::rewrite_tasks(
            &DmlOp::table_spec(&table_url, &snapshot),
            &selection.candidates,
            Some(p.sql()),
            &rewrite::recording_changes(
                &snapshot,
                vec![Transform::Filter {
                    predicate: p.sql().to_string(),
                    keep: Keep::NotMatching,
                }],
            ),
            &DmlOp::files_out(&snapshot, &ctx),
            ctx.slots,
        ),
        _ => Vec::new(),
    };
    Ok(DmlOp::new(
        DmlKind::Delete,
        table_url,
        snapshot,
        predicate,
        selection,
        tasks,
        ctx,
    )
    .marking(marked))
}

/// The outcome of a finished DELETE: removes (whole files and rewritten ones), adds, Delta's
/// DELETE metrics; nothing to commit when no row matched.
pub fn finish(r: DmlOp, elapsed: Duration) -> Result<Outcome, JobError> {
    let rewritten = r.rewritten_files();
    let removed: Vec<_> = r.selection.whole.iter().cloned().chain(rewritten).collect();
    if removed.is_empty() {
        return Ok(Outcome::Nothing {
            summary: "no row matched the condition; nothing to delete, nothing committed".into(),
            metrics: Default::default(),
        });
    }
    let m = r.task_metrics();
    let mut txn = r.transaction();
    r.fill(&mut txn, &removed, elapsed);
    // Rows of files removed whole come from the log (live rows: minus deletion vectors).
    let whole_rows = live_rows(&r.selection.whole);
    // Rows read and dropped, or (deletion vectors) marked deleted.
    let dropped = if r.marked_files.is_empty() {
        m.rows_deleted
    } else {
        r.marked_rows
    };
    let deleted = whole_rows.map(|w| w + dropped as i64);
    // As Delta Spark: without row counts for the files removed whole, the row metrics
    // are left out.
    if let Some(d) = deleted {
        txn.metric("numDeletedRows", d);
        txn.metric("numCopiedRows", m.rows_copied);
    }
    let what = format!(
        "{} row(s) deleted",
        deleted.map_or("unknown number of".to_string(), |d| d.to_string())
    );
    let summary = DmlOp::summary(&what, removed.len(), r.vectors_written(), &m);
    Ok(r.commit(txn, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::{snapshot, stats};
    use silt_common::task::Input;

    fn ctx() -> PlanContext {
        PlanContext {
            job_id: "j".into(),
            slots: 2,
        }
    }

    fn planned(sql: Option<&str>) -> DmlOp {
        let (a, b) = (stats(10, 0, 10), stats(10, 20, 30));
        planned_on(
            snapshot(&[("1", Some(&a)), ("2", Some(&b)), ("2", None)]),
            sql,
        )
    }

    fn planned_on(snap: TableSnapshot, sql: Option<&str>) -> DmlOp {
        let predicate = sql.map(|s| Predicate::compile(s, &snap.arrow_schema).unwrap());
        plan(
            Url::parse("file:///planner-test/t/").unwrap(),
            snap,
            predicate,
            false,
            ctx(),
        )
        .unwrap()
    }

    fn paths(files: &[silt_common::table::ActiveFile]) -> Vec<&str> {
        files.iter().map(|f| f.file.path.as_str()).collect()
    }

    #[test]
    fn partition_conditions_remove_whole_files_without_tasks() {
        let op = planned(Some("p = 1"));
        assert_eq!(paths(&op.selection.whole), vec!["p=1/f0.parquet"]);
        assert!(op.tasks.is_empty());
        assert_eq!(op.selection.untouched, 2);
    }

    #[test]
    fn statistics_decide_whole_files_and_candidates() {
        let op = planned(Some("id > 15"));
        // f1's ids are 20..30: every row matches; f2 has no statistics: it must be read.
        assert_eq!(paths(&op.selection.whole), vec!["p=2/f1.parquet"]);
        assert_eq!(paths(&op.selection.candidates), vec!["p=2/f2.parquet"]);
        assert_eq!(op.tasks.len(), 1);
        let t = &op.tasks[0];
        match &t.input {
            Input::TableFiles { files, touch, .. } => {
                assert_eq!(files.len(), 1);
                assert_eq!(touch.as_deref(), Some("id > 15"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.transforms,
            vec![Transform::Filter {
                predicate: "id > 15".into(),
                keep: Keep::NotMatching
            }]
        );
    }

    #[test]
    fn tables_recording_changes_read_whole_files_with_the_others() {
        let (a, b) = (stats(10, 0, 10), stats(10, 20, 30));
        let mut snap = snapshot(&[("1", Some(&a)), ("2", Some(&b)), ("2", None)]);
        snap.properties.change_data_feed = true;
        let op = planned_on(snap, Some("id > 15"));
        // f1 matches whole, f2 must be read: once cdc files are written, they hold every
        // change, so f1 is read too.
        assert!(op.selection.whole.is_empty());
        assert_eq!(
            paths(&op.selection.candidates),
            vec!["p=2/f2.parquet", "p=2/f1.parquet"]
        );
        let t = &op.tasks[0];
        assert_eq!(
            t.transforms[0],
            Transform::RecordChanges(silt_common::task::ChangeRows::Table)
        );
        assert!(matches!(&t.sink, silt_common::task::Sink::DataFiles(f) if f.change_data));
        // A condition only whole files match writes no change data: readers derive it.
        let mut snap = snapshot(&[("1", Some(&a)), ("2", Some(&b))]);
        snap.properties.change_data_feed = true;
        let op = planned_on(snap, Some("p = 1"));
        assert_eq!(paths(&op.selection.whole), vec!["p=1/f0.parquet"]);
        assert!(op.tasks.is_empty());
    }

    #[test]
    fn no_condition_removes_everything_and_nothing_matching_plans_nothing() {
        let op = planned(None);
        assert_eq!(op.selection.whole.len(), 3);
        assert!(op.tasks.is_empty());
        let op = planned(Some("id < -5 AND p = 1"));
        assert!(op.selection.whole.is_empty() && op.tasks.is_empty());
    }
}
