//! DELETE (copy-on-write): files whose every row matches are removed without being read;
//! files that may hold a matching row are rewritten by executors without those rows; a file
//! found to hold none stays as it is. No matching row: no commit.

use std::time::Duration;

use serde_json::Map;
use silt_common::expr::Predicate;
use silt_common::request::DeleteRequest;
use silt_common::table::TableSnapshot;
use silt_common::task::{Keep, Transform};
use url::Url;

use super::dml::Rewrite;
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::driver::{JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid};
use crate::plan::rewrite::{self, live_rows};
use crate::txn::{Txn, predicate_parameter};

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
    ctx: PlanContext,
) -> Result<DeleteOp, JobError> {
    let selection = rewrite::select_files(&snapshot, predicate.as_ref())?;
    let tasks = match &predicate {
        Some(p) if !selection.candidates.is_empty() => rewrite::rewrite_tasks(
            &Rewrite::table_spec(&table_url, &snapshot),
            &selection.candidates,
            Some(p.sql()),
            &[Transform::Filter {
                predicate: p.sql().to_string(),
                keep: Keep::NotMatching,
            }],
            &Rewrite::files_out(&snapshot, &ctx),
            ctx.slots,
        ),
        _ => Vec::new(),
    };
    Ok(DeleteOp(Rewrite {
        table_url,
        snapshot,
        predicate,
        selection,
        tasks,
        ctx,
        outputs: Vec::new(),
        rewrite_elapsed: Duration::ZERO,
    }))
}

/// A planned DELETE.
pub struct DeleteOp(pub Rewrite);

impl Operation for DeleteOp {
    fn table_url(&self) -> &Url {
        &self.0.table_url
    }

    fn read_version(&self) -> i64 {
        self.0.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        Ok(self.0.start())
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        self.0.stage_done(result);
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        let r = self.0;
        let rewritten = r.rewritten_files();
        let removed: Vec<_> = r.selection.whole.iter().cloned().chain(rewritten).collect();
        if removed.is_empty() {
            return Ok(Outcome::Nothing {
                summary: "no row matched the condition; nothing to delete, nothing committed"
                    .into(),
                metrics: Default::default(),
            });
        }
        let m = r.task_metrics();
        let mut params = Map::new();
        params.insert(
            "predicate".into(),
            predicate_parameter(r.predicate.as_ref().map(|p| p.sql())),
        );
        let mut txn = Txn::new(&r.ctx.job_id, "DELETE", params);
        r.fill(&mut txn, &removed, elapsed);
        // Rows of files removed whole come from the log (live rows: minus deletion vectors).
        let whole_rows = live_rows(&r.selection.whole);
        let deleted = whole_rows.map(|w| w + m.rows_deleted as i64);
        // As Delta Spark: without row counts for the files removed whole, the row metrics
        // are left out.
        if let Some(d) = deleted {
            txn.metric("numDeletedRows", d);
            txn.metric("numCopiedRows", m.rows_copied);
        }
        let summary = format!(
            "{} row(s) deleted; {} file(s) removed, {} added, {} row(s) copied",
            deleted.map_or("unknown number of".to_string(), |d| d.to_string()),
            removed.len(),
            m.files_written,
            m.rows_copied
        );
        let target = r.target();
        Ok(Outcome::Commit {
            txn,
            target,
            summary,
        })
    }
}
