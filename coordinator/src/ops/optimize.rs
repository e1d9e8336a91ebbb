//! OPTIMIZE (bin-packing compaction): the small files of each partition selected by a
//! partition predicate are rewritten together into files near the target size, with
//! `dataChange = false`; a table with nothing to compact gets no commit. Commits at snapshot
//! isolation, as Delta's OPTIMIZE does: concurrent appends never fail it; a concurrent
//! removal of a file it compacted does.

use std::time::Duration;

use serde_json::Map;
use silt_common::expr::Predicate;
use silt_common::request::OptimizeRequest;
use silt_common::table::{ActiveFile, IsolationLevel, TableSnapshot};
use silt_common::task::{FileSpec, Input, Sink, Task, TaskOutput};
use url::Url;

use super::dml::DmlOp;
use super::{executor_slots, existing_table};
use crate::JobContext;
use crate::commit::ReadRegion;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::plan::compaction::{Bin, CompactionConfig, plan_bins};
use crate::plan::rewrite;
use crate::txn::{Txn, predicate_parameter};

/// Delta's OPTIMIZE target file size when the table sets none.
pub const DEFAULT_OPTIMIZE_TARGET: u64 = 1 << 30;

/// Loads the table and plans the compaction.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: OptimizeRequest,
) -> Result<Box<dyn Operation>, JobError> {
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    snapshot.check_writable()?;
    let slots = executor_slots(ctx).await?;
    Ok(Box::new(plan(
        req,
        table_url,
        snapshot,
        PlanContext { slots, ..plan_ctx },
    )?))
}

/// A planned OPTIMIZE.
pub struct OptimizeOp {
    req: OptimizeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    predicate: Option<Predicate>,
    bins: Vec<Bin>,
    considered: usize,
    outputs: Vec<TaskOutput>,
}

/// Plans a compaction: pure, from the request and the snapshot.
pub fn plan(
    req: OptimizeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
) -> Result<OptimizeOp, JobError> {
    let predicate = req
        .predicate
        .as_deref()
        .map(|p| Predicate::compile(p, &snapshot.arrow_schema))
        .transpose()?;
    if let Some(p) = &predicate
        && !p.only_references(&snapshot.partition_columns)
    {
        let others: Vec<String> = p
            .columns()
            .into_iter()
            .filter(|c| {
                !snapshot
                    .partition_columns
                    .iter()
                    .any(|pc| pc.eq_ignore_ascii_case(c))
            })
            .collect();
        return Err(invalid(format!(
            "OPTIMIZE … WHERE may only use partition columns ({}); `{}` is not one",
            if snapshot.partition_columns.is_empty() {
                "the table has none".to_string()
            } else {
                snapshot.partition_columns.join(", ")
            },
            others.join("`, `")
        )));
    }
    let selection = rewrite::select_files(&snapshot, predicate.as_ref())?;
    let files: Vec<ActiveFile> = selection
        .whole
        .into_iter()
        .chain(selection.candidates)
        .collect();
    let target = req
        .target_size
        .or(snapshot.properties.target_file_size_bytes)
        .unwrap_or(DEFAULT_OPTIMIZE_TARGET);
    if target == 0 {
        return Err(invalid("the target file size must be positive"));
    }
    let mut cfg = CompactionConfig::for_target(target);
    if let Some(min) = req.min_file_size {
        cfg.min_file_size = min;
    }
    let bins = plan_bins(&files, &cfg);
    Ok(OptimizeOp {
        req,
        table_url,
        considered: files.len(),
        snapshot,
        ctx,
        predicate,
        bins,
        outputs: Vec::new(),
    })
}

impl OptimizeOp {
    fn files_out(&self) -> FileSpec {
        FileSpec {
            target_file_size_bytes: self
                .req
                .target_size
                .or(self.snapshot.properties.target_file_size_bytes)
                .unwrap_or(DEFAULT_OPTIMIZE_TARGET),
            ..DmlOp::files_out(&self.snapshot, &self.ctx)
        }
    }
}

impl Operation for OptimizeOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if self.bins.is_empty() {
            return Ok(Vec::new());
        }
        let table = DmlOp::table_spec(&self.table_url, &self.snapshot);
        let files = self.files_out();
        let tasks: Vec<Task> = self
            .bins
            .iter()
            .map(|b| Task {
                table: table.clone(),
                input: Input::TableFiles {
                    files: b.files.iter().map(|f| f.file.clone()).collect(),
                    touch: None,
                    row_ids: None,
                },
                transforms: Vec::new(),
                sink: Sink::DataFiles(files.clone()),
            })
            .collect();
        let note = format!("{} bin(s) of {} file(s)", tasks.len(), self.considered);
        Ok(vec![StagePlan::new("compact", tasks).with_note(note)])
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        self.outputs.extend(result.outputs);
        Ok(Vec::new())
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        let removed: Vec<ActiveFile> = self.bins.iter().flat_map(|b| b.files.clone()).collect();
        if removed.is_empty() {
            return Ok(Outcome::Nothing {
                summary: format!(
                    "nothing to compact ({} file(s) considered); nothing committed",
                    self.considered
                ),
                metrics: Default::default(),
            });
        }
        let adds: Vec<_> = self.outputs.iter().flat_map(|o| &o.adds).collect();
        let mut params = Map::new();
        params.insert(
            "predicate".into(),
            predicate_parameter(self.predicate.as_ref().map(|p| p.sql())),
        );
        params.insert("zOrderBy".into(), serde_json::Value::String("[]".into()));
        let mut txn = Txn::new(&self.ctx.job_id, "OPTIMIZE", params);
        txn.add_files(adds.iter().copied(), false);
        txn.remove_files(&removed, false);
        txn.read_region(ReadRegion::of_condition(
            self.predicate.as_ref(),
            &self.snapshot,
        ));
        txn.read_files(removed.iter().map(|f| f.file.path.as_str()));
        let mut sizes: Vec<i64> = adds.iter().map(|a| a.size_bytes.max(0)).collect();
        sizes.sort_unstable();
        let pct = |q: usize| {
            sizes
                .get((sizes.len().saturating_sub(1)) * q / 100)
                .copied()
        };
        let removed_bytes: i64 = removed.iter().map(|f| f.file.size_bytes.max(0)).sum();
        let added_bytes: i64 = sizes.iter().sum();
        txn.metric("numAddedFiles", adds.len());
        txn.metric("numRemovedFiles", removed.len());
        txn.metric("numAddedBytes", added_bytes);
        txn.metric("numRemovedBytes", removed_bytes);
        for (name, q) in [
            ("minFileSize", 0),
            ("p25FileSize", 25),
            ("p50FileSize", 50),
            ("p75FileSize", 75),
            ("maxFileSize", 100),
        ] {
            txn.metric(name, pct(q).unwrap_or(0));
        }
        txn.metric("numBatches", 1);
        txn.metric("totalConsideredFiles", self.considered);
        txn.metric("totalFilesSkipped", self.considered - removed.len());
        txn.metric(
            "numDeletionVectorsRemoved",
            removed
                .iter()
                .filter(|f| f.file.deletion_vector.is_some())
                .count(),
        );
        txn.metric("executionTimeMs", elapsed.as_millis());
        let summary = format!(
            "{} file(s) compacted into {} ({} -> {} bytes)",
            removed.len(),
            adds.len(),
            removed_bytes,
            added_bytes
        );
        // Delta's OPTIMIZE commits at snapshot isolation: appends never conflict with it.
        let mut properties = self.snapshot.properties.clone();
        properties.isolation_level = IsolationLevel::SnapshotIsolation;
        Ok(Outcome::Commit {
            txn: Box::new(txn),
            target: CommitTarget::on(&self.snapshot, properties),
            summary,
        })
    }
}
